"""Taking files into the spool: DICOM Part 10 as they are, everything else converted first.

A Part 10 file is checked as ``acrnema-bridge dump`` reads it
(:func:`bridge.acrnema.elements.decode`, every length against the bytes) before it is
spooled: a truncated or odd-length file that receivers would abort on is refused with
the reason instead of being retried for ever.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bridge.acrnema.elements import decode
from bridge.dicom.batch import looks_like_dataset
from bridge.dicom.core import ConvertOptions, convert
from bridge.errors import BridgeError, ConversionError
from bridge.lenient import lenient
from bridge.spool.store import ObjectInfo, Spool

__all__ = ["IngestResult", "dataset_bytes", "describe_object", "ingest_file", "object_info"]


@dataclass
class IngestResult:
    """What happened to one file handed to ``spool add``."""

    source: str
    status: str  # spooled | skipped | failed
    object_ids: list[int] = field(default_factory=list)
    """Every object the file stands for, newly stored or already in the spool."""
    already: list[int] = field(default_factory=list)
    """Those of ``object_ids`` whose identical content was already in the spool."""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def object_info(ds: Dataset, source: str | None) -> ObjectInfo:
    meta = ds.file_meta
    return ObjectInfo(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(meta.TransferSyntaxUID),
        modality=str(ds.get("Modality") or ""),
        source=source,
    )


def dataset_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    with lenient():
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _part10_ready(data: bytes) -> Dataset | None:
    """The header of a Part 10 file that can be sent as it is, or None."""
    if data[128:132] != b"DICM":
        return None
    try:
        with lenient():
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError):
        return None
    meta = ds.file_meta
    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        return None
    if (
        "TransferSyntaxUID" not in meta
        or meta.get("MediaStorageSOPInstanceUID") != ds.SOPInstanceUID
    ):
        return None
    return ds


def describe_object(path: Path, data: bytes) -> ObjectInfo:
    """What the spool's row of a stored Part 10 file says, read from the file itself.

    Raises :class:`ConversionError` (naming ``path``) for a file that is not a whole,
    sendable Part 10 object: used by ``spool rebuild``.
    """
    header = _part10_ready(data)
    if header is None:
        raise ConversionError(
            "not a Part 10 file with SOP Class and Instance UIDs", source=str(path)
        )
    decode(data, source=str(path))  # every length checked against the bytes, as dump does
    return object_info(header, str(path))


def ingest_file(spool: Spool, path: Path, options: ConvertOptions | None = None) -> IngestResult:
    """Spool one file; a bad file is reported, never raised (SpoolError is raised)."""
    result = IngestResult(str(path), "failed")
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.error = f"{path}: cannot read: {exc.strerror or exc}"
        return result
    header = _part10_ready(data)
    if header is None and data[128:132] == b"DICM":
        result.error = f"{path}: not a Part 10 file with SOP Class and Instance UIDs"
        return result
    if header is not None:
        try:
            decode(data, source=str(path))  # as `acrnema-bridge dump` reads it
        except BridgeError as exc:
            result.error = str(exc)
            return result
        _put(spool, result, data, object_info(header, str(path)))
        return result
    if not looks_like_dataset(data):
        result.status = "skipped"
        result.warnings.append("not an ACR-NEMA or DICOM data set")
        return result
    try:
        converted = convert(data, source=str(path), options=options)
    except BridgeError as exc:
        result.error = str(exc)
        return result
    result.warnings = converted.warnings
    for ds in converted.datasets:
        _put(spool, result, dataset_bytes(ds), object_info(ds, str(path)))
    return result


def _put(spool: Spool, result: IngestResult, data: bytes, info: ObjectInfo) -> None:
    object_id, new = spool.add(data, info)
    result.object_ids.append(object_id)
    if not new:
        result.already.append(object_id)
    result.status = "spooled" if len(result.already) < len(result.object_ids) else "skipped"

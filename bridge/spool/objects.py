"""What the spool stores: Part 10 objects and the row that describes each.

The spool takes DICOM Part 10 bytes and an :class:`~bridge.spool.store.ObjectInfo`; these
helpers make both from a pydicom data set (:func:`dataset_bytes`, :func:`object_info`),
tell a Part 10 file that can be sent as it is (:func:`part10_header`), and describe a
stored file again from its bytes (:func:`describe_object`, for ``spool rebuild``).
Nothing here converts: turning ACR-NEMA into DICOM is :mod:`bridge.dicom`'s work, and
taking a file of either kind into the spool is :func:`bridge.ingest.ingest_file`.
"""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bridge.acrnema.elements import decode
from bridge.errors import ConversionError
from bridge.lenient import lenient
from bridge.spool.store import ObjectInfo

__all__ = ["dataset_bytes", "describe_object", "object_info", "part10_header"]


def object_info(ds: Dataset, source: str | None) -> ObjectInfo:
    """The spool's row of a Part 10 data set (``ds`` has its file meta)."""
    meta = ds.file_meta
    return ObjectInfo(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(meta.TransferSyntaxUID),
        modality=str(ds.get("Modality") or ""),
        source=source,
    )


def dataset_bytes(ds: Dataset) -> bytes:
    """``ds`` as the bytes of a Part 10 file."""
    buffer = io.BytesIO()
    with lenient():
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def part10_header(data: bytes) -> Dataset | None:
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
    header = part10_header(data)
    if header is None:
        raise ConversionError(
            "not a Part 10 file with SOP Class and Instance UIDs", source=str(path)
        )
    decode(data, source=str(path))  # every length checked against the bytes, as dump does
    return object_info(header, str(path))

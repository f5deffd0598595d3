"""Taking files into the spool: DICOM Part 10 as they are, everything else converted first.

This is the service layer's step between conversion and storage (``acrnema-bridge spool
add``, ``send``, :func:`bridge.ingest_file`): read a file, turn it into Part 10 objects
(as it is, or through :func:`bridge.convert`), then :meth:`Spool.add` each. The spool
itself stores and never converts (:mod:`bridge.spool` imports nothing from
:mod:`bridge.dicom`).

A Part 10 file is checked as ``acrnema-bridge dump`` reads it
(:func:`bridge.acrnema.elements.decode`, every length against the bytes) before it is
spooled: a truncated or odd-length file that receivers would abort on is refused with
the reason instead of being retried for ever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from bridge.acrnema.elements import decode
from bridge.batch import looks_like_dataset
from bridge.dicom.core import ConvertOptions, convert
from bridge.errors import BridgeError
from bridge.spool.objects import dataset_bytes, object_info, part10_header
from bridge.spool.store import ObjectInfo, Spool

__all__ = ["IngestResult", "IngestStatus", "ingest_file"]


class IngestStatus(enum.StrEnum):
    """What became of a file handed to ``spool add`` (the strings of ``--json``)."""

    SPOOLED = "spooled"  # at least one of its objects is new in the spool
    SKIPPED = "skipped"  # everything it holds was in the spool already, or nothing to spool
    FAILED = "failed"  # it could not be read or converted (``error`` says why)


@dataclass
class IngestResult:
    """What happened to one file handed to ``spool add``."""

    source: str
    status: IngestStatus | str  # an IngestStatus; a name as a string is converted to one
    object_ids: list[int] = field(default_factory=list)
    """Every object the file stands for, newly stored or already in the spool."""
    already: list[int] = field(default_factory=list)
    """Those of ``object_ids`` whose identical content was already in the spool."""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        self.status = IngestStatus(self.status)  # "failed" -> IngestStatus.FAILED


def ingest_file(spool: Spool, path: Path, options: ConvertOptions | None = None) -> IngestResult:
    """Spool one file; a bad file is reported, never raised (SpoolError is raised)."""
    result = IngestResult(str(path), IngestStatus.FAILED)
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.error = f"{path}: cannot read: {exc.strerror or exc}"
        return result
    header = part10_header(data)
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
        result.status = IngestStatus.SKIPPED
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
    result.status = (
        IngestStatus.SPOOLED
        if len(result.already) < len(result.object_ids)
        else IngestStatus.SKIPPED
    )

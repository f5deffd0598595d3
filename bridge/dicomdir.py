"""The DICOMDIR of a ``convert`` output tree (PS3.10 section 8, PS3.3 Annex F), in linear time.

The tree ``OUT/PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx`` is already the PATIENT / STUDY /
SERIES / instance hierarchy, and its names are valid File IDs, so the directory records
are built from the folders in sorted order, without searching: one PATIENT record per
patient folder, one STUDY per study folder, one SERIES per series folder, one leaf record
(IMAGE, RT STRUCTURE SET...) per file. What the records need of a file comes from the
batch that wrote it (:func:`record_values`), or from its header, read once (no pixels);
it is kept in ``OUT/.acrnema-bridge/dicomdir.json`` with the file's size, modification
time and inode: a later run (a resume, or a batch that added files) reads only the files
it has not seen or that changed, and gives the very DICOMDIR a build from nothing gives.

The file is written in explicit VR little endian with defined lengths, so every record's
size is known before any offset is: the offsets of (0004,1400), (0004,1420), (0004,1200)
and (0004,1202) are computed, not searched for. Nothing comes from the clock, and the
File-set UID is derived from the File IDs and SOP Instance UIDs the set holds: the same
tree gives the same DICOMDIR, byte for byte, on every run.

Type 1 record keys the instance lacks get generated values (docs/conversion.md,
"DICOMDIR"), so every readable instance has its record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import secrets
import stat as stat_module
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian

from bridge.dicom import uids

__all__ = ["CACHE", "FILE_SET_ID", "DicomdirResult", "record_values", "write_dicomdir"]

log = logging.getLogger(__name__)

CACHE = Path(".acrnema-bridge") / "dicomdir.json"
"""Where, under OUT, what the records need of each file is kept for the next run."""
FILE_SET_ID = "ACRNEMA_BRIDGE"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
PLACEHOLDER_DATE = "19000101"
"""Study Date of a STUDY record whose instance has no date at all: a placeholder."""
PLACEHOLDER_TIME = "000000"
_CACHE_VERSION = 1

# leaf record type and the keys it takes, by SOP Class UID; any other class is an IMAGE
_LEAF_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "1.2.840.10008.5.1.4.1.1.481.2": ("RT DOSE", ("InstanceNumber", "DoseSummationType")),
    "1.2.840.10008.5.1.4.1.1.481.3": (
        "RT STRUCTURE SET",
        ("InstanceNumber", "StructureSetLabel", "StructureSetDate", "StructureSetTime"),
    ),
    "1.2.840.10008.5.1.4.1.1.481.5": (
        "RT PLAN",
        ("InstanceNumber", "RTPlanLabel", "RTPlanDate", "RTPlanTime"),
    ),
}
_IMAGE = ("IMAGE", ("InstanceNumber",))

_PATIENT_KEYS = ("PatientName", "PatientID")
_STUDY_KEYS = (
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "StudyInstanceUID",
    "StudyID",
    "AccessionNumber",
)
_SERIES_KEYS = ("Modality", "SeriesInstanceUID", "SeriesNumber")
# what is read of each file: the record keys, and where missing dates and times come from
_READ = sorted(
    {
        *_PATIENT_KEYS,
        *_STUDY_KEYS,
        *_SERIES_KEYS,
        *(key for _, keys in _LEAF_TYPES.values() for key in keys),
        "InstanceNumber",
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "ContentDate",
        "ContentTime",
    }
)
_RECORD_KEYS = {
    *_PATIENT_KEYS,
    *_STUDY_KEYS,
    *_SERIES_KEYS,
    *(key for _, keys in _LEAF_TYPES.values() for key in keys),
    "InstanceNumber",
    "ReferencedFileID",
    "ReferencedSOPClassUIDInFile",
    "ReferencedSOPInstanceUIDInFile",
    "ReferencedTransferSyntaxUIDInFile",
}
_VR = {key: (tag_for_keyword(key) or 0, dictionary_VR(key)) for key in _RECORD_KEYS}
_READ_TAGS: list[int] = [tag_for_keyword(key) or 0 for key in _READ]
# a Type 1 key the instance lacks gets the first of these it has, else the placeholder
_DATE_SOURCES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_TIME_SOURCES = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")


@dataclass(frozen=True)
class DicomdirResult:
    """What :func:`write_dicomdir` did."""

    path: Path
    instances: int  # leaf records written
    read: int  # files whose header was read (the others were known from the last run)
    left_out: list[str] = field(default_factory=list)  # "PATH: reason", one per file


@dataclass(frozen=True)
class _Instance:
    """One file of the tree: its File ID and the values its records need (as strings)."""

    parts: tuple[str, str, str, str]  # PTxxxxxx, STxxxxxx, SExxxxxx, IMxxxxxx
    values: dict[str, str]


def write_dicomdir(out: Path, known: Mapping[str, dict[str, str]] | None = None) -> DicomdirResult:
    """Write OUT/DICOMDIR indexing every instance under OUT; linear in their number.

    ``known`` maps output paths (as the batch reports them: absolute, ``str(OUT / FILE_ID)``) to
    their :func:`record_values`, for the files this run wrote: those are not read again,
    nor are files the last run recorded that have not changed since.

    Files that cannot be read as DICOM, and a second file with a SOP Instance UID already
    recorded, are left out, each with the reason. Raises :class:`OSError` when the
    DICOMDIR cannot be written (nothing half written is left).
    """
    cache = _load_cache(out / CACHE)
    seen: dict[str, dict[str, object]] = {}
    instances: list[_Instance] = []
    left_out: list[str] = []
    placed: dict[str, str] = {}
    read = 0
    for path in sorted(out.glob("PT*/ST*/SE*/IM*")):
        try:
            stat = path.stat()
        except OSError as exc:
            left_out.append(f"{path}: {exc.strerror or exc}")
            continue
        if not stat_module.S_ISREG(stat.st_mode):
            continue
        file_id = "/".join(path.relative_to(out).parts)
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        values = known.get(str(path.absolute())) if known else None
        if values is None:
            values = _known(cache.get(file_id), stamp)
        if values is None:
            read += 1
            try:
                values = _read_values(path)
            except _UNREADABLE as exc:
                left_out.append(f"{path}: {_reason(exc)}")
                continue
        seen[file_id] = {"stat": stamp, "values": values}
        uid = values.get("SOPInstanceUID", "")
        if not uid or not values.get("SOPClassUID") or not values.get("TransferSyntaxUID"):
            left_out.append(f"{path}: no SOP Instance UID, SOP Class UID or transfer syntax")
            continue
        if uid in placed:
            left_out.append(f"{path}: same SOP Instance UID as {placed[uid]}")
            continue
        placed[uid] = file_id
        parts = path.relative_to(out).parts
        instances.append(_Instance((parts[0], parts[1], parts[2], parts[3]), values))
    data = encode_dicomdir(instances)
    _replace_atomic(out / "DICOMDIR", data)
    try:
        payload = {"version": _CACHE_VERSION, "files": seen}
        _replace_atomic(out / CACHE, json.dumps(payload, separators=(",", ":")).encode())
    except OSError as exc:  # only the next run's speed depends on it
        log.warning("DICOMDIR cache %s not written: %s", out / CACHE, exc.strerror or exc)
    log.info("DICOMDIR: %d instances, %d headers read", len(instances), read)
    return DicomdirResult(out / "DICOMDIR", len(instances), read, left_out)


_UNREADABLE = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, struct.error)


def _known(entry: object, stamp: list[int]) -> dict[str, str] | None:
    """The values the last run kept for a file, if it has not changed since."""
    if not isinstance(entry, dict) or entry.get("stat") != stamp:
        return None
    values = entry.get("values")
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        return None
    return values


def _reason(exc: Exception) -> str:
    if isinstance(exc, InvalidDicomError):
        return "not a DICOM file"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _load_cache(path: Path) -> dict[str, dict[str, object]]:
    """What the last run kept, or nothing when it is missing, unreadable or older."""
    try:
        payload = json.loads(path.read_bytes())
        if payload.get("version") == _CACHE_VERSION and isinstance(payload.get("files"), dict):
            files: dict[str, dict[str, object]] = payload["files"]
            return files
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _read_values(path: Path) -> dict[str, str]:
    return record_values(dcmread(path, stop_before_pixels=True, specific_tags=_READ_TAGS))


def record_values(ds: Dataset) -> dict[str, str]:
    """What the DICOMDIR records of ``ds`` need: header values as strings (multiple values
    joined by ``\\``), empty ones left out, and the transfer syntax of its file meta.

    The batch calls it on each instance it writes and passes the result on
    (``ReportEntry.dicomdir``), so that the DICOMDIR need not read the file again.
    """
    values = {}
    for key in _READ:
        text = _text(ds.get(key))
        if text:
            values[key] = text
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        values["TransferSyntaxUID"] = str(syntax)
    return values


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


# ---------------------------------------------------------------- records and their bytes


def encode_dicomdir(instances: Sequence[_Instance]) -> bytes:
    """The DICOMDIR file of ``instances``, sorted by File ID (as :func:`write_dicomdir` gives).

    Records are listed depth first (each PATIENT followed by its studies, each STUDY by
    its series, each SERIES by its instances); a record's next-record offset points to
    its next sibling, its lower-level offset to its first child, 0 where there is none.
    """
    records: list[tuple[str, bytes]] = []  # record type, body (after the first 4 keys)
    children: list[list[int]] = []  # record index -> its children's record indices
    roots: list[int] = []
    stack: list[int] = []  # the open PATIENT / STUDY / SERIES records
    previous: tuple[str, ...] = ()
    rank = 0
    for inst in instances:
        for depth in range(3):
            if previous[: depth + 1] != inst.parts[: depth + 1]:
                del stack[depth:]
                kind = ("PATIENT", "STUDY", "SERIES")[depth]
                body = _body(_level_values(depth, inst), inst.values)
                stack.append(_add(records, children, roots, stack, kind, body, depth))
                if depth == 2:
                    rank = 0
        rank += 1
        kind, keys = _LEAF_TYPES.get(inst.values["SOPClassUID"], _IMAGE)
        leaf = {key: inst.values.get(key, "") for key in keys}
        leaf["InstanceNumber"] = inst.values.get("InstanceNumber") or str(rank)
        for key in ("StructureSetLabel", "RTPlanLabel"):
            if key in leaf and not leaf[key]:
                leaf[key] = "UNNAMED"
        if "DoseSummationType" in leaf and not leaf["DoseSummationType"]:
            leaf["DoseSummationType"] = "PLAN"
        reference = {
            "ReferencedFileID": "\\".join(inst.parts),
            "ReferencedSOPClassUIDInFile": inst.values["SOPClassUID"],
            "ReferencedSOPInstanceUIDInFile": inst.values["SOPInstanceUID"],
            "ReferencedTransferSyntaxUIDInFile": inst.values["TransferSyntaxUID"],
        }
        body = _body({**reference, **leaf}, inst.values)
        _add(records, children, roots, stack, kind, body, 3)
        previous = inst.parts

    file_set_uid = _file_set_uid(instances)
    preamble = _preamble(file_set_uid)
    head = _dataset_head(FILE_SET_ID)
    start = len(preamble) + len(head) + 12  # + (0004,1220) SQ header
    offsets, position = [], start
    for kind, body in records:
        offsets.append(position)
        position += 8 + _record_head_size(kind) + len(body)
    lower = [offsets[c[0]] if c else 0 for c in children]
    following = [0] * len(records)
    for siblings in [roots, *children]:
        for a, b in itertools.pairwise(siblings):
            following[a] = offsets[b]
    items = b"".join(
        _item(_record_head(kind, following[i], lower[i]) + body)
        for i, (kind, body) in enumerate(records)
    )
    first_root, last_root = (offsets[roots[0]], offsets[roots[-1]]) if roots else (0, 0)
    head = _dataset_head(FILE_SET_ID, first_root, last_root)
    sequence = struct.pack("<HH2sHL", 0x0004, 0x1220, b"SQ", 0, len(items))
    return preamble + head + sequence + items


def _add(
    records: list[tuple[str, bytes]],
    children: list[list[int]],
    roots: list[int],
    stack: list[int],
    kind: str,
    body: bytes,
    depth: int,
) -> int:
    index = len(records)
    records.append((kind, body))
    children.append([])
    (children[stack[depth - 1]] if depth else roots).append(index)
    return index


def _level_values(depth: int, inst: _Instance) -> dict[str, str]:
    """The keys of the PATIENT (0), STUDY (1) or SERIES (2) record, Type 1 ones filled."""
    v = inst.values
    if depth == 0:
        # the folder name is made from the Patient ID: an ID for the ID-less
        return {
            "PatientName": v.get("PatientName", ""),
            "PatientID": v.get("PatientID") or inst.parts[0],
        }
    if depth == 1:
        return {
            "StudyDate": next((v[k] for k in _DATE_SOURCES if v.get(k)), PLACEHOLDER_DATE),
            "StudyTime": next((v[k] for k in _TIME_SOURCES if v.get(k)), PLACEHOLDER_TIME),
            "StudyDescription": v.get("StudyDescription", ""),
            "StudyInstanceUID": v.get("StudyInstanceUID", ""),
            "StudyID": v.get("StudyID") or inst.parts[1],
            "AccessionNumber": v.get("AccessionNumber", ""),
        }
    return {
        "Modality": v.get("Modality") or "OT",
        "SeriesInstanceUID": v.get("SeriesInstanceUID", ""),
        "SeriesNumber": v.get("SeriesNumber") or "0",
    }


def _body(keys: dict[str, str], values: dict[str, str]) -> bytes:
    """A record's elements after (0004,1430), in the instance's character set.

    Plain ASCII, the usual case, is encoded here; other text goes through pydicom's
    writer, which knows the character sets (and their escape sequences).
    """
    charset = values.get("SpecificCharacterSet", "")
    present = {key: value for key, value in keys.items() if value or key not in _OPTIONAL}
    if not charset and all(value.isascii() for value in present.values()):
        return b"".join(_element(key, value) for key, value in sorted(present.items(), key=_tag))
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    for key, value in present.items():
        setattr(ds, key, value.split("\\") if "\\" in value else value)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


_OPTIONAL = {"StudyInstanceUID", "SeriesInstanceUID"}  # left out when empty, never in ours


def _tag(item: tuple[str, str]) -> int:
    return _VR[item[0]][0]


def _element(key: str, value: str) -> bytes:
    """One short-form explicit VR little endian element of an ASCII text value."""
    tag, vr = _VR[key]
    data = value.encode("ascii")
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(data)) + data


def _record_head_size(kind: str) -> int:
    return 12 + 10 + 12 + 8 + len(_pad(kind))


def _record_head(kind: str, following: int, lower: int) -> bytes:
    """(0004,1400) next record, (0004,1410) in use, (0004,1420) lower level, (0004,1430)."""
    text = _pad(kind)
    return (
        struct.pack("<HH2sHL", 0x0004, 0x1400, b"UL", 4, following)
        + struct.pack("<HH2sHH", 0x0004, 0x1410, b"US", 2, 0xFFFF)
        + struct.pack("<HH2sHL", 0x0004, 0x1420, b"UL", 4, lower)
        + struct.pack("<HH2sH", 0x0004, 0x1430, b"CS", len(text))
        + text
    )


def _item(body: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body


def _pad(text: str) -> bytes:
    data = text.encode("ascii")
    return data + b" " if len(data) % 2 else data


def _dataset_head(file_set_id: str, first: int = 0, last: int = 0) -> bytes:
    """File-set ID, the first and last root record offsets, the consistency flag."""
    text = _pad(file_set_id)
    return (
        struct.pack("<HH2sH", 0x0004, 0x1130, b"CS", len(text))
        + text
        + struct.pack("<HH2sHL", 0x0004, 0x1200, b"UL", 4, first)
        + struct.pack("<HH2sHL", 0x0004, 0x1202, b"UL", 4, last)
        + struct.pack("<HH2sHH", 0x0004, 0x1212, b"US", 2, 0)
    )


def _preamble(file_set_uid: str) -> bytes:
    """128 zero bytes, ``DICM`` and the File Meta Information."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MEDIA_STORAGE_DIRECTORY)
    meta.MediaStorageSOPInstanceUID = UID(file_set_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(uids.IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = uids.IMPLEMENTATION_VERSION_NAME
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + fp.getvalue()


def _file_set_uid(instances: Iterable[_Instance]) -> str:
    """A 2.25 UID from the sorted File IDs and SOP Instance UIDs of the set."""
    digest = hashlib.sha256()
    for inst in sorted(instances, key=lambda i: i.parts):
        digest.update(f"{'/'.join(inst.parts)}\x1f{inst.values['SOPInstanceUID']}\n".encode())
    return uids.derived_uid("file-set", digest.hexdigest())


def _replace_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, fsync, rename.

    The temporary file is made with mode 0666, which the kernel reduces by the umask, as
    for any file the user makes (``cp`` gives the same); mkstemp would make it 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

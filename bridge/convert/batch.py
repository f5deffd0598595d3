"""The batch runner behind ``acrnema-bridge convert``: many inputs, parallel, resumable.

Layout of the output folder::

    OUT/PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx   patient / study / series / instance
    OUT/DICOMDIR                              with --dicomdir
    OUT/.acrnema-bridge/index/<sha256>.json   which outputs each input gave (for re-runs)

Directory and file names are DICOM File IDs (at most 8 characters of A-Z, 0-9), derived
from the Patient ID and the UIDs, so the tree can be indexed by a DICOMDIR as it is and
the same input always lands at the same path. Every file is written atomically: to a
temporary file in the target folder, flushed to disk, then renamed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import get_entry
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bridge.convert.core import ConvertOptions, check_input_size, convert
from bridge.convert.uids import content_key
from bridge.errors import BridgeError, ConversionError
from bridge.lenient import lenient

__all__ = ["ReportEntry", "iter_inputs", "looks_like_dataset", "run_batch", "write_dicomdir"]

INDEX_DIR = Path(".acrnema-bridge") / "index"


@dataclass
class ReportEntry:
    """One line of the ``--report`` JSON: what happened to one input."""

    source: str
    status: str  # converted | skipped | failed
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def iter_inputs(paths: Iterable[Path], exclude: Path | None = None) -> Iterator[Path]:
    """Files named, and files under folders named (recursively, in sorted order)."""
    skip = exclude.resolve() if exclude is not None else None
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                here = Path(root)
                if skip is not None and (here.resolve() == skip or skip in here.resolve().parents):
                    dirs[:] = []
                    continue
                dirs.sort()
                for name in sorted(files):
                    yield here / name
        else:
            yield path


def looks_like_dataset(data: bytes) -> bool:
    """Whether the bytes start like a DICOM file or an ACR-NEMA / DICOM data set."""
    if data[128:132] == b"DICM" or data[:4] == b"DICM":
        return True
    if len(data) < 8:
        return False
    for order in ("<", ">"):
        group, elem = struct.unpack_from(order + "HH", data, 0)
        command_group = group == 0 and elem in (0x0000, 0x0001, 0x0002)
        if (group & 1 or group > 0x7FE0 or group == 0) and not command_group:
            continue
        if elem != 0:
            try:
                get_entry(group << 16 | elem)
            except KeyError:
                continue
        if data[4:6].isalpha() and data[4:6].isupper():
            return True  # explicit VR
        (length,) = struct.unpack_from(order + "L", data, 4)
        if length <= len(data) - 8:
            return True
    return False


def _file_id(prefix: str, key: str) -> str:
    return prefix + hashlib.sha1(key.encode()).hexdigest()[:6].upper()


def _replace_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``path`` as a whole or not at all: temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, ds: Dataset) -> None:
    buffer = io.BytesIO()  # pydicom writes element by element: one write() is cheaper
    ds.save_as(buffer, enforce_file_format=True)
    _replace_atomic(path, buffer.getbuffer())


def _place(out: Path, ds: Dataset) -> Path:
    """The output path of one instance; a different instance already there is kept."""
    folder = (
        out
        / _file_id("PT", str(ds.get("PatientID") or ""))
        / _file_id("ST", str(ds.StudyInstanceUID))
        / _file_id("SE", str(ds.SeriesInstanceUID))
    )
    uid = str(ds.SOPInstanceUID)
    for attempt in range(64):
        path = folder / _file_id("IM", uid if attempt == 0 else f"{uid}#{attempt}")
        if not path.exists():
            return path
        try:
            there = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            if str(there.get("SOPInstanceUID", "")) == uid:
                return path
        except (InvalidDicomError, OSError, ValueError):
            return path  # a broken leftover of ours: replace it
    raise ConversionError(f"no free file name for instance {uid}", source=str(folder))


def convert_file(source: Path, out: Path, options: ConvertOptions, overwrite: bool) -> ReportEntry:
    """Convert one input file; never raises for a bad input."""
    entry = ReportEntry(str(source), "failed")
    try:
        check_input_size(source.stat().st_size, source=str(source), options=options)
        data = source.read_bytes()
    except ConversionError as exc:
        entry.error = str(exc)
        return entry
    except OSError as exc:
        entry.error = f"{source}: cannot read: {exc.strerror or exc}"
        return entry
    digest = content_key(data)
    index = out / INDEX_DIR / f"{digest}.json"
    if not overwrite and index.exists():
        try:
            previous = json.loads(index.read_text())
            outputs = [str(out / p) for p in previous["outputs"]]
            if outputs and all(Path(p).exists() for p in outputs):
                entry.status, entry.outputs = "skipped", outputs
                entry.warnings = ["already converted (use --overwrite to convert again)"]
                return entry
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable index entry: convert again
    if not looks_like_dataset(data):
        entry.status = "skipped"
        entry.warnings = ["not an ACR-NEMA or DICOM data set"]
        return entry
    try:
        result = convert(data, source=str(source), options=options, key=digest)
        entry.warnings = result.warnings
        for ds in result.datasets:
            path = _place(out, ds)
            with lenient():
                _write_atomic(path, ds)
            entry.outputs.append(str(path))
    except BridgeError as exc:
        entry.error = str(exc)
        return entry
    except OSError as exc:
        entry.error = f"{source}: cannot write output: {exc}"
        return entry
    except Exception as exc:  # a bug must cost one file, never the batch
        entry.error = f"{source}: internal error, please report: {exc!r}"
        return entry
    relative = [str(Path(p).relative_to(out)) for p in entry.outputs]
    index.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=index.parent)
    with os.fdopen(fd, "w") as fp:
        json.dump({"source": str(source), "outputs": relative}, fp)
    os.replace(tmp, index)
    entry.status = "converted"
    return entry


def _convert_chunk(
    paths: list[Path], out: Path, options: ConvertOptions, overwrite: bool
) -> list[ReportEntry]:
    return [convert_file(path, out, options, overwrite) for path in paths]


def run_batch(
    inputs: list[Path],
    out: Path,
    *,
    options: ConvertOptions,
    jobs: int = 1,
    overwrite: bool = False,
    progress: Callable[[ReportEntry, int, int], None] | None = None,
) -> list[ReportEntry]:
    """Convert every input; the report keeps the order of ``inputs``.

    With ``jobs`` > 1 the inputs go to worker processes in small chunks (a few files
    each), so the parent wakes up per chunk rather than per file.
    """
    out.mkdir(parents=True, exist_ok=True)
    total = len(inputs)
    results: list[ReportEntry] = []
    if jobs <= 1 or total <= 1:
        for path in inputs:
            results.append(convert_file(path, out, options, overwrite))
            if progress:
                progress(results[-1], len(results), total)
        return results
    size = max(1, min(8, total // (jobs * 8)))
    chunks = [inputs[i : i + size] for i in range(0, total, size)]
    by_chunk: list[list[ReportEntry]] = [[] for _ in chunks]
    done = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(_convert_chunk, chunk, out, options, overwrite): n
            for n, chunk in enumerate(chunks)
        }
        for future in concurrent.futures.as_completed(futures):
            n = futures[future]
            try:
                by_chunk[n] = future.result()
            except Exception as exc:  # a worker died: report its files, keep going
                reason = f"worker process failed: {exc!r}"
                by_chunk[n] = [ReportEntry(str(p), "failed", error=reason) for p in chunks[n]]
            for entry in by_chunk[n]:
                done += 1
                if progress:
                    progress(entry, done, total)
    return [entry for chunk in by_chunk for entry in chunk]


def write_dicomdir(out: Path) -> tuple[int, list[str]]:
    """Write OUT/DICOMDIR indexing every instance under OUT.

    Returns how many instances it indexes, and why others were left out. pydicom's
    :class:`~pydicom.fileset.FileSet` builds the directory records; the files stay where
    the converter put them (their paths are already valid File IDs). Directory records
    need Series Number and Instance Number, which ACR-NEMA files often lack and which
    the converter leaves empty in the instance (they are Type 2 there); such records get
    0 and the instance's rank in its series by path (docs/conversion.md, "DICOMDIR").
    """
    from pydicom.filebase import DicomFileLike
    from pydicom.fileset import FileSet

    fs = FileSet()
    fs.ID = "ACRNEMA_BRIDGE"
    placed: dict[str, list[str]] = {}
    left_out: list[str] = []
    rank: dict[Path, int] = {}
    for path in sorted(out.glob("PT*/ST*/SE*/IM*")):
        if not path.is_file():
            continue
        rank[path.parent] = rank.get(path.parent, 0) + 1
        try:
            ds = dcmread(path, stop_before_pixels=True)
            uid = str(ds.SOPInstanceUID)
            if uid in placed:
                left_out.append(f"{path}: same SOP Instance UID as {'/'.join(placed[uid])}")
                continue
            if not ds.get("SeriesNumber"):
                ds.SeriesNumber = 0
            if not ds.get("InstanceNumber"):
                ds.InstanceNumber = rank[path.parent]
            instance = fs.add(ds)
        except (ValueError, KeyError, AttributeError, InvalidDicomError, OSError) as exc:
            left_out.append(f"{path}: {exc}")
            continue
        placed[str(instance.SOPInstanceUID)] = list(path.relative_to(out).parts)
    for instance in fs:
        instance.node._record.ReferencedFileID = placed[str(instance.SOPInstanceUID)]
    buffer = io.BytesIO()
    fs._write_dicomdir(DicomFileLike(buffer))
    _replace_atomic(out / "DICOMDIR", buffer.getbuffer())
    return len(placed), left_out

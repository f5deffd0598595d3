"""The batch runner behind ``acrnema-bridge convert``: many inputs, parallel, resumable.

Layout of the output folder::

    OUT/PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx   patient / study / series / instance
    OUT/DICOMDIR                              with --dicomdir
    OUT/.acrnema-bridge/index/<sha256>.json   which outputs each input gave (for re-runs)
    OUT/.acrnema-bridge/instances.jsonl       which SOP Instance UIDs and paths are taken

Directory and file names are DICOM File IDs (at most 8 characters of A-Z, 0-9), derived
from the Patient ID and the UIDs, so the tree can be indexed by a DICOMDIR as it is and
the same input always lands at the same path. Every file is written atomically: to a
temporary file in the target folder, flushed to disk, then renamed. Workers write their
outputs under temporary names; the batch process alone places them, in input order
(:class:`_Claims`): different data sets never share an output, whatever their UIDs.

A batch stops cleanly when asked (:class:`StopRequest`; ``convert`` asks on SIGINT and
SIGTERM): the inputs being converted finish, no other starts, every worker process has
exited when :func:`run_batch` returns, and the inputs not converted are ``pending``.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import io
import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import struct
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import get_entry
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bridge.dicom.core import ConvertOptions, check_input_size, convert, reassign_instance_uid
from bridge.dicom.pixels import Repair
from bridge.dicom.uids import content_key, dataset_key, derived_uid
from bridge.dicomdir import record_values, write_dicomdir
from bridge.errors import BridgeError, ConfigError, ConversionError
from bridge.lenient import lenient

__all__ = [
    "WORKER_DIED",
    "ConvertStatus",
    "ReportEntry",
    "Staged",
    "StopRequest",
    "current_umask",
    "iter_inputs",
    "looks_like_dataset",
    "prepare_folder",
    "run_batch",
    "write_dicomdir",
]

log = logging.getLogger("bridge.dicom.batch")  # the name users' log filters know

INDEX_DIR = Path(".acrnema-bridge") / "index"


class ConvertStatus(enum.StrEnum):
    """What became of one input of ``convert`` (the strings of the ``--report`` JSON)."""

    CONVERTED = "converted"  # its outputs are written and indexed
    SKIPPED = "skipped"  # converted by an earlier run, or not a data set (``warnings`` say)
    FAILED = "failed"  # it could not be read or converted (``error`` says why)
    PENDING = "pending"  # not converted yet (no space, or the batch stopped): a re-run does


@dataclass
class ReportEntry:
    """One line of the ``--report`` JSON: what happened to one input."""

    source: str
    status: ConvertStatus  # a name given as a string is converted to its member
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    no_space: bool = False  # stopped by a full output file system (not in the JSON)
    repairs: list[Repair] = field(default_factory=list)  # {kind, name, reason} in the JSON
    written: int = 0  # output files this input wrote (not in the JSON): the summary's count
    key: str = ""  # content_key of the input (not in the JSON)
    staged: list[Staged] = field(default_factory=list)  # written, not yet placed (not in JSON)
    # output path -> what its DICOMDIR records need (bridge.dicomdir; not in the JSON)
    dicomdir: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = ConvertStatus(self.status)  # "failed" -> ConvertStatus.FAILED

    def to_json(self) -> dict[str, object]:
        entry = asdict(self)
        for internal in ("no_space", "written", "key", "staged", "dicomdir"):
            del entry[internal]
        return entry


@dataclass(frozen=True)
class Staged:
    """One output a worker has written under a temporary name, for the batch to place.

    The batch, not the worker, decides where it goes and whether its SOP Instance UID is
    still free (:class:`_Claims`), in input order, so that the outcome never depends on
    which worker finished first.
    """

    temporary: str  # .tmp-* file in the output's series folder
    uid: str  # its SOP Instance UID
    key: str  # uids.dataset_key of its data set
    values: dict[str, str] = field(default_factory=dict)  # for its DICOMDIR records


def iter_inputs(
    paths: Iterable[Path],
    exclude: Path | None = None,
    on_loop: Callable[[Path, Path], None] | None = None,
) -> Iterator[Path]:
    """Files named, and files under folders named (recursively, in sorted order).

    Symbolic links to folders are followed. A folder met a second time (a link that
    loops back, or two links to one folder) is not walked again: ``on_loop(path, first)``
    is told once for each such link, with the path it was first walked as.
    """
    skip = exclude.resolve() if exclude is not None else None
    walked: dict[tuple[int, int], Path] = {}
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path, followlinks=True):
                here = Path(root)
                if skip is not None and (here.resolve() == skip or skip in here.resolve().parents):
                    dirs[:] = []
                    continue
                info = here.stat()
                first = walked.setdefault((info.st_dev, info.st_ino), here)
                if first != here:
                    dirs[:] = []
                    if on_loop is not None:
                        on_loop(here, first)
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


def _replace_atomic(
    path: Path, data: bytes | memoryview | Callable[[BinaryIO], None], *, sync: bool = True
) -> None:
    """Write ``path`` as a whole or not at all: temporary file, fsync, rename.

    ``data`` is the bytes, or a function that writes them to the open file.
    """
    tmp = _write_temporary(path.parent, data, sync=sync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_temporary(
    folder: Path,
    data: bytes | memoryview | Callable[[BinaryIO], None],
    *,
    sync: bool = True,
    run: str = "",
) -> Path:
    """A new ``.tmp-*`` file in ``folder`` holding ``data``, with the mode ``cp`` would give.

    mkstemp makes it 0600; it gets 0666 less the umask, as any file the user makes. The
    name carries the batch's ``run``, so that what a killed worker leaves behind is found
    and removed at the end of the batch (:func:`_sweep`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(run), dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        # pydicom writes element by element: a large buffer makes that a few write()s,
        # while the pixel data, larger than the buffer, is written without a copy
        with os.fdopen(fd, "wb", buffering=_WRITE_BUFFER) as fp:
            if callable(data):
                data(fp)
            else:
                fp.write(data)
            fp.flush()
            if sync:
                os.fsync(fp.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _tmp_prefix(run: str) -> str:
    return f".tmp-{run[:16]}-" if run else ".tmp-"


def _sweep(out: Path, run: str) -> int:
    """Remove the temporary files of ``run`` left under ``out``; how many there were.

    Called when every result of the batch is placed: what is left of this run was
    written by a worker that was killed (SIGKILL, a cluster worker lost) before its
    result came back; its input was redone, or is reported pending. Only this run's
    files are touched: another batch writing into the same tree keeps its own.
    """
    pattern = f"{_tmp_prefix(run)}*"
    left = [*out.glob(f"PT*/ST*/SE*/{pattern}"), *(out / INDEX_DIR).glob(pattern)]
    for path in left:
        path.unlink(missing_ok=True)
    if left:
        log.info("removed %d temporary files of killed workers under %s", len(left), out)
    return len(left)


def current_umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting it back."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_WRITE_BUFFER = 1 << 18


def _series_folder(out: Path, ds: Dataset) -> Path:
    """The folder of one instance: patient / study / series File IDs."""
    return (
        out
        / _file_id("PT", str(ds.get("PatientID") or ""))
        / _file_id("ST", str(ds.StudyInstanceUID))
        / _file_id("SE", str(ds.SeriesInstanceUID))
    )


REGISTRY = Path(".acrnema-bridge") / "instances.jsonl"
"""One JSON line per placed output: SOP Instance UID, data set key, path, source."""


class _Claims:
    """Who holds which SOP Instance UID and path in OUT: owned by the batch alone.

    Workers write each output under a temporary name (:class:`Staged`); the batch places
    the entries in input order (:func:`run_batch`), so a run with one worker or many, or
    a second run, decides the same way (docs/conversion.md, "Duplicate SOP Instance
    UIDs"):

    * a data set whose SOP Instance UID is free takes it, and the path made from it;
    * the same data set again (the same key: another encoding, or a copy) maps to the
      output already there, and the entry says whose it is; nothing is written twice;
    * a different data set with a UID already used gets a new UID derived from the old
      one and its content, the old one kept in Original Attributes, and a warning.

    What was placed is appended to :data:`REGISTRY`, so a re-run knows it too.
    """

    def __init__(self, out: Path) -> None:
        self.out = out.absolute()  # the workers' temporary files have absolute paths
        self.uids: dict[str, dict[str, tuple[str, str]]] = {}  # uid -> key -> (path, source)
        self.paths: dict[str, str] = {}  # relative path -> uid
        self.this_run: set[tuple[str, str]] = set()  # (uid, key) placed in this run
        self.inputs: dict[str, ReportEntry] = {}  # input content key -> entry, this run
        self.registry = out / REGISTRY
        with contextlib.suppress(OSError):
            for line in self.registry.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    item = json.loads(line)
                    self._remember(item["uid"], item["key"], item["path"], item["source"])

    def _remember(self, uid: str, key: str, path: str, source: str) -> None:
        self.uids.setdefault(uid, {})[key] = (path, source)
        self.paths[path] = uid

    def place(self, entry: ReportEntry) -> ReportEntry:
        """Place the staged outputs of ``entry``; the entry as the report gives it."""
        first = self.inputs.get(entry.key) if entry.key else None
        if first is not None and first.status is ConvertStatus.CONVERTED:
            # the same bytes again in this run (a copy under another name)
            _discard(entry.staged)
            entry.staged, entry.status = [], ConvertStatus.SKIPPED
            entry.outputs, entry.written, entry.repairs = list(first.outputs), 0, []
            entry.warnings = [f"same bytes as {first.source}, converted in this run"]
            return entry
        if entry.status is not ConvertStatus.CONVERTED:
            return entry
        placed: list[Path] = []
        try:
            for staged in entry.staged:
                path, note, wrote, values = self._place_one(entry, staged)
                entry.outputs.append(str(path))
                entry.dicomdir[str(path)] = values
                if wrote:
                    placed.append(path)
                if note:
                    entry.warnings.append(note)
            relative = [str(Path(p).relative_to(self.out)) for p in entry.outputs]
            payload = json.dumps({"source": entry.source, "outputs": relative}).encode()
            _replace_atomic(self.out / INDEX_DIR / f"{entry.key}.json", payload, sync=False)
        except (OSError, ValueError, InvalidDicomError) as exc:
            _discard(entry.staged)
            for path in placed:
                path.unlink(missing_ok=True)
            entry.outputs, entry.written, entry.staged = [], 0, []
            if isinstance(exc, OSError) and _no_space(exc):
                entry.status, entry.no_space = ConvertStatus.PENDING, True
                entry.error = f"{entry.source}: not converted: no space left on {self.out}"
            else:
                entry.status = ConvertStatus.FAILED
                entry.error = f"{entry.source}: cannot place output: {exc}"
            return entry
        entry.staged, entry.written = [], len(placed)
        self.inputs[entry.key] = entry
        return entry

    def _place_one(
        self, entry: ReportEntry, staged: Staged
    ) -> tuple[Path, str, bool, dict[str, str]]:
        """Path, warning ("" for none), whether it was written, and its DICOMDIR values."""
        temporary = Path(staged.temporary)
        uid, note, values = staged.uid, "", staged.values
        holders = self.uids.get(uid, {})
        if staged.key not in holders and (holders or self._foreign(temporary, uid)):
            new_uid = derived_uid("instance-again", uid, staged.key)
            with lenient():
                ds = dcmread(temporary)
                reassign_instance_uid(ds, new_uid, "SOP Instance UID already used")
                rewritten = _write_temporary(temporary.parent, _saver(ds))
            values = record_values(ds)
            temporary.unlink(missing_ok=True)
            temporary = rewritten
            others = [s for _, s in holders.values()] or ["an earlier output"]
            note = (
                f"SOP Instance UID {uid} already used by another data set ({others[0]}): "
                f"given {new_uid}, the old UID kept in Original Attributes"
            )
            log.warning("%s: %s", entry.source, note)
            uid, holders = new_uid, self.uids.get(new_uid, {})
        known = holders.get(staged.key)
        if known is not None:
            path = self.out / known[0]
            if (uid, staged.key) in self.this_run and known[1] != entry.source:
                temporary.unlink(missing_ok=True)  # already written in this run
                same = f"the same data set as {known[1]} (in another encoding): its output"
                return path, (note + "; " if note else "") + same, False, values
        else:
            path = self._free_path(temporary.parent, uid)
        os.replace(temporary, path)
        relative = str(path.relative_to(self.out))
        if known is None:
            line = {"uid": uid, "key": staged.key, "path": relative, "source": entry.source}
            self.registry.parent.mkdir(parents=True, exist_ok=True)
            with self.registry.open("a") as fp:
                fp.write(json.dumps(line) + "\n")
        self._remember(uid, staged.key, relative, entry.source)
        self.this_run.add((uid, staged.key))
        return path, note, True, values

    def _foreign(self, temporary: Path, uid: str) -> bool:
        """Whether the file at ``uid``'s path, unknown to the registry (a tree written
        before it existed), holds another data set with the same SOP Instance UID."""
        path = temporary.parent / _file_id("IM", uid)
        if str(path.relative_to(self.out)) in self.paths or not path.is_file():
            return False
        try:
            there = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except (InvalidDicomError, OSError, ValueError):
            return False  # a broken leftover: replaced
        if str(there.get("SOPInstanceUID", "")) != uid:
            return False
        return path.read_bytes() != temporary.read_bytes()

    def _free_path(self, folder: Path, uid: str) -> Path:
        """``uid``'s File ID in ``folder``, or the next free one when another UID hashes
        to the same name."""
        for attempt in range(64):
            path = folder / _file_id("IM", uid if attempt == 0 else f"{uid}#{attempt}")
            holder = self.paths.get(str(path.relative_to(self.out)))
            if holder == uid:
                return path
            if holder is None:
                if not path.exists():
                    return path
                try:
                    there = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                    if str(there.get("SOPInstanceUID", "")) == uid:
                        return path
                except (InvalidDicomError, OSError, ValueError):
                    return path  # a broken leftover of ours: replace it
        raise ConversionError(f"no free file name for instance {uid}", source=str(folder))


def _saver(ds: Dataset) -> Callable[[BinaryIO], None]:
    """A function that writes ``ds`` as a Part 10 file to the file it is given.

    pydicom writes each element's value into a buffer of its own before the file; native
    Pixel Data is handed to it as a stream over its bytes instead (no copy), which it
    writes to the file in chunks: for a 512x512 slice one buffer the size of the pixel
    data fewer (docs/benchmarks.md, "Cluster"). The data set is left as it was.
    """

    def save(fp: BinaryIO) -> None:
        element = ds.get(0x7FE00010)
        value = element.value if element is not None else None
        if element is None or not isinstance(value, bytes) or element.is_undefined_length:
            ds.save_as(fp, enforce_file_format=True)
            return
        element.value = io.BytesIO(value)  # shares the bytes: nothing is copied
        try:
            ds.save_as(fp, enforce_file_format=True)
        finally:
            element.value = value

    return save


def _discard(staged: list[Staged]) -> None:
    for item in staged:
        Path(item.temporary).unlink(missing_ok=True)


def _root_os_error(exc: OSError) -> OSError:
    """The OSError that started it: pydicom re-raises write errors as a new OSError
    (``raise type(exc)(message) from exc``) without the errno, and with a traceback in
    the message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            return cause
        cause = cause.__cause__
    return exc


def _no_space(exc: OSError) -> bool:
    return _root_os_error(exc).errno in (errno.ENOSPC, errno.EDQUOT)


def convert_file(
    source: Path, out: Path, options: ConvertOptions, overwrite: bool, run: str = ""
) -> ReportEntry:
    """Convert one input file; never raises for a bad input.

    ``run`` names the batch in the temporary files' names (:func:`_sweep`).

    When the output file system is full the entry is ``pending`` with ``no_space`` set,
    and the outputs this attempt wrote are removed again: the tree holds whole inputs
    only, and a later run converts this input again.
    """
    entry = ReportEntry(str(source), ConvertStatus.FAILED)
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
    entry.key = digest
    index = out / INDEX_DIR / f"{digest}.json"
    if not overwrite and index.exists():
        try:
            previous = json.loads(index.read_text())
            outputs = [str(out / p) for p in previous["outputs"]]
            if outputs and all(Path(p).exists() for p in outputs):
                entry.status, entry.outputs = ConvertStatus.SKIPPED, outputs
                entry.warnings = ["already converted (use --overwrite to convert again)"]
                return entry
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable index entry: convert again
    if not looks_like_dataset(data):
        entry.status = ConvertStatus.SKIPPED
        entry.warnings = ["not an ACR-NEMA or DICOM data set"]
        return entry
    entry.key = digest
    try:
        result = convert(data, source=str(source), options=options, key=digest)
        del data  # the datasets hold what is needed; the input can go before writing
        entry.warnings = result.warnings
        entry.repairs = result.repairs
        for ds in result.datasets:
            key = dataset_key(ds)
            with lenient():
                temporary = _write_temporary(_series_folder(out, ds), _saver(ds), run=run)
            entry.staged.append(
                Staged(str(temporary), str(ds.SOPInstanceUID), key, record_values(ds))
            )
    except BridgeError as exc:
        _discard(entry.staged)
        entry.staged, entry.error = [], str(exc)
        return entry
    except OSError as exc:
        _discard(entry.staged)
        entry.staged = []
        if _no_space(exc):
            entry.status, entry.no_space = ConvertStatus.PENDING, True
            entry.error = f"{source}: not converted: no space left on {out}"
        else:
            root = _root_os_error(exc)
            entry.error = f"{source}: cannot write output: {root.strerror or root}"
        return entry
    except Exception as exc:  # a bug must cost one file, never the batch
        _discard(entry.staged)
        entry.staged = []
        # convert() names the element of any error of its own: this is the writing
        entry.error = (
            f"{source}: cannot write the converted objects: unexpected "
            f"{type(exc).__name__}: {exc} (a bug: please report it)"
        )
        return entry
    entry.status = ConvertStatus.CONVERTED
    return entry


def prepare_folder(folder: Path, what: str = "output folder") -> None:
    """Make ``folder`` if need be and check that a file can be made in it.

    Raises :class:`ConfigError` (a usage error) naming the folder and the reason: not a
    folder (a file, or a path through one), read-only file system, permission denied. So
    an output folder that cannot be written is one error before any work, not one failure
    per input. A full file system is not refused here: the batch stops on it and reports
    the inputs it could not convert as ``pending``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError) as exc:  # mkdir: a file is in the way
        raise ConfigError(f"cannot write to the {what} {folder}: not a folder") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and folder.is_dir():
            return
        raise ConfigError(f"cannot write to the {what} {folder}: {exc.strerror or exc}") from exc


class StopRequest:
    """A request to stop a running batch; :meth:`request` is safe in a signal handler.

    The batch finishes the inputs being converted (each worker its current one), starts
    no other, ends its worker processes and returns; the inputs not converted are
    ``pending`` with the reason. :meth:`request` records the signal and writes one byte
    to a pipe the batch waits on, so the batch sees it at once, whatever it waits for.
    Close it (or use it as a context manager) to free the pipe.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def request(self, signum: int) -> None:
        """Ask the batch to stop because of ``signum`` (the first request names it)."""
        if self.signum is None:
            self.signum = signum
        with contextlib.suppress(OSError):  # full (already woken) or closed
            os.write(self._write, b"\0")

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def reason(self) -> str:
        """``"SIGTERM"``: the name of the signal that asked, for messages."""
        if self.signum is None:
            return "nothing"
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    def fileno(self) -> int:
        """The end to wait on: readable once a stop is requested."""
        return self._read

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> StopRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_batch(
    inputs: list[Path],
    out: Path,
    *,
    options: ConvertOptions,
    jobs: int = 1,
    overwrite: bool = False,
    progress: Callable[[ReportEntry, int, int], None] | None = None,
    stop: StopRequest | None = None,
    cluster: str | None = None,
) -> list[ReportEntry]:
    """Convert every input; the report keeps the order of ``inputs``.

    With ``cluster`` (a Dask scheduler's address) the inputs are converted by that
    cluster's workers instead of local processes (:mod:`bridge.cluster`); everything
    else (placement, report, full disk, stop) is the same.

    With ``jobs`` > 1 the inputs go to worker processes in small chunks (a few files
    each); each result comes back as soon as it is done, and is placed (its outputs given
    their final names, :class:`_Claims`) and reported to ``progress`` in input order. A
    worker that dies is replaced, and the inputs it had in hand and had not finished are
    retried once, each alone; an input whose worker dies again fails with
    :data:`WORKER_DIED`.

    When the output file system is full, no further input is started; the inputs that
    met the full disk and those never started are ``pending`` in the result, so a run
    after space is freed converts them.

    When ``stop`` is requested, the inputs being converted finish, no other starts, and
    every worker has exited before this returns (one still converting after
    :data:`STOP_GRACE_S` is killed); the inputs not converted are ``pending``, so a run
    of the same command converts them. An output folder that cannot be written raises
    :class:`ConfigError` before any input is converted (:func:`prepare_folder`).
    """
    prepare_folder(out)
    out = out.absolute()  # a cluster's workers have working folders of their own
    run = uuid.uuid4().hex  # this run's name on its temporary files (see _sweep)
    total = len(inputs)
    entries: list[ReportEntry | None] = [None] * total
    count = 0
    claims = _Claims(out)
    arrived: dict[int, ReportEntry] = {}
    following = 0  # the next input to place: results are placed in input order
    full = False  # placing an output met a full disk

    def place(index: int) -> None:
        nonlocal count, full
        entry = claims.place(arrived.pop(index))
        full |= entry.no_space
        entries[index] = entry
        count += 1
        if progress:
            progress(entry, count, total)

    def finish(index: int, entry: ReportEntry) -> bool:
        """Record one result; False when the batch must stop (no space left)."""
        arrived[index] = entry
        return not entry.no_space

    def flush() -> bool:
        """Place the results that are next in input order; False when the disk is full.

        Results are placed (:class:`_Claims`) in input order, whatever order the workers
        finish in, so duplicate UIDs are resolved the same way with any ``jobs``.
        """
        nonlocal following
        while following in arrived:
            place(following)
            following += 1
        return not full

    if cluster is not None:
        from bridge.cluster import run_on_cluster

        run_on_cluster(
            cluster,
            inputs,
            out,
            options,
            overwrite,
            run,
            lambda index, entry: finish(index, entry) and flush(),
            stopped=lambda: stop is not None and stop.requested,
            failed_entry=lambda i, why: ReportEntry(
                str(inputs[i]), ConvertStatus.FAILED, error=f"{inputs[i]}: {why}"
            ),
        )
    elif jobs <= 1 or total <= 1:
        for index, path in enumerate(inputs):
            if stop is not None and stop.requested:
                break
            entry = convert_file(path, out, options, overwrite, run)
            if not finish(index, entry) or not flush():
                break
    else:
        _Pool(inputs, out, options, overwrite, jobs, finish, stop, flush, run).run()
    for index in sorted(arrived):  # after an input that was never finished (pending)
        place(index)
    _sweep(out, run)
    if stop is not None and stop.requested:
        stopped = f"not converted: the batch was stopped by {stop.reason}"
    else:
        stopped = f"not attempted: the batch stopped, no space left on {out}"
    return [
        entry
        if entry is not None
        else ReportEntry(str(inputs[i]), ConvertStatus.PENDING, error=stopped)
        for i, entry in enumerate(entries)
    ]


WORKER_DIED = "worker process died while converting it"
STOP_GRACE_S = 10.0
"""How long a stopping batch waits for a worker to finish the input it is converting."""
_PARENT_CHECK_S = 1.0  # how often an idle worker checks that the batch is still there
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker(
    conn: Connection, out: Path, options: ConvertOptions, overwrite: bool, run: str
) -> None:
    """A worker process: convert the chunks it is sent, one result message per input.

    SIGTERM (from the parent stopping the batch, or sent to the whole process group)
    lets the input being converted finish and its result go, then the worker exits:
    no half-written output, no orphan. SIGINT is the parent's to handle. Both arrive
    blocked (the parent blocks them around the fork) until these handlers are in place.
    """
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    parent = os.getppid()
    while not stopping:
        if not conn.poll(_PARENT_CHECK_S):
            if os.getppid() != parent:
                return  # the batch is gone: nobody to work for
            continue
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, path in chunk:
            if stopping:
                return
            conn.send((index, convert_file(path, out, options, overwrite, run)))


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    in_hand: list[int] = field(default_factory=list)


class _Pool:
    """Worker processes, each with its own pipe, so the parent knows who holds what.

    (concurrent.futures' pool cannot say which inputs a dead worker held: one death
    breaks the whole pool and fails every pending input.)
    """

    def __init__(
        self,
        inputs: list[Path],
        out: Path,
        options: ConvertOptions,
        overwrite: bool,
        jobs: int,
        finish: Callable[[int, ReportEntry], bool],
        stop: StopRequest | None = None,
        flush: Callable[[], bool] | None = None,
        run: str = "",
    ) -> None:
        self.inputs, self.out, self.options, self.overwrite = inputs, out, options, overwrite
        self.jobs, self.finish, self.stop, self.flush = jobs, finish, stop, flush
        self.run_id = run
        size = max(1, min(8, len(inputs) // (jobs * 8)))
        indices = list(range(len(inputs)))
        self.queue = deque(indices[i : i + size] for i in range(0, len(indices), size))
        self.deaths: dict[int, int] = {}
        self.workers: list[_Worker] = []
        self.stopping = False  # no space left: start nothing new
        # fork: a worker starts in milliseconds with everything imported; the batch
        # parent runs no other threads.
        self.context = multiprocessing.get_context("fork")

    def run(self) -> None:
        try:
            while True:
                if self.stop is not None and self.stop.requested:
                    self._wind_down()
                    return
                self._feed()
                # what came back is placed once the idle workers have new work
                if self.flush is not None and not self.flush():
                    self.stopping = True
                busy = [w for w in self.workers if w.in_hand]
                if not busy:
                    return
                waiting: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
                if self.stop is not None:
                    waiting.append(self.stop)
                ready = set(multiprocessing.connection.wait(waiting))
                for worker in busy:
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._collect(worker)
        finally:
            self._stop_all()

    def _wind_down(self) -> None:
        """Stop: each worker finishes the input it is converting, sends it and exits.

        A worker still at work after :data:`STOP_GRACE_S` is killed. What the workers
        held and did not finish stays unrecorded: ``pending`` in the result.
        """
        for worker in self.workers:
            if worker.in_hand:
                worker.process.terminate()  # SIGTERM: see _worker
            else:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        deadline = time.monotonic() + STOP_GRACE_S
        busy = [w for w in self.workers if w.in_hand and w.process.is_alive()]
        while busy and (left := deadline - time.monotonic()) > 0:
            waiting: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            multiprocessing.connection.wait(waiting, timeout=left)
            for worker in busy:
                self._take_results(worker)
            busy = [w for w in busy if w.in_hand and w.process.is_alive()]
        for worker in busy:
            log.warning(
                "convert worker %d still converting %.0f s after the stop: killed",
                worker.process.pid,
                STOP_GRACE_S,
            )
            worker.process.kill()
        for worker in self.workers:
            if worker.in_hand:  # exited or killed: what it sent just before is in the pipe
                worker.process.join()
                self._take_results(worker)

    def _start(self) -> _Worker:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(
            target=_worker,
            args=(child_end, self.out, self.options, self.overwrite, self.run_id),
            name="acrnema-bridge convert worker",
            daemon=True,
        )
        # the worker starts with SIGINT and SIGTERM blocked, so that none reaches it before
        # it has its own handlers (it would run the parent's); the parent gets them after
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child_end.close()
        worker = _Worker(process, parent_end)
        self.workers.append(worker)
        return worker

    def _feed(self) -> None:
        """Give every idle worker a chunk, starting workers as needed."""
        for worker in list(self.workers):
            if not worker.in_hand and not worker.process.is_alive():
                self._forget(worker)  # died idle: nothing of ours lost
        idle = [w for w in self.workers if not w.in_hand]
        while self.queue and not self.stopping:
            if not idle:
                if len(self.workers) >= self.jobs:
                    return
                idle.append(self._start())
            worker, chunk = idle.pop(), self.queue.popleft()
            try:
                worker.conn.send([(i, self.inputs[i]) for i in chunk])
            except OSError:  # died between the check and the send: the chunk never left
                self.queue.appendleft(chunk)
                self._forget(worker)
                continue
            worker.in_hand = list(chunk)

    def _take_results(self, worker: _Worker) -> None:
        """Record the results a worker has sent, without waiting for more."""
        while worker.in_hand:
            try:
                if not worker.conn.poll():
                    break
                index, entry = worker.conn.recv()
            except (EOFError, OSError):
                break
            worker.in_hand.remove(index)
            if not self.finish(index, entry):
                self.stopping = True

    def _collect(self, worker: _Worker) -> None:
        """Take the results a worker sent; if it died, retry or fail what it still held."""
        self._take_results(worker)
        if not worker.in_hand or worker.process.is_alive():
            return
        worker.process.join()
        cause = _cause(worker.process.exitcode)
        for index in worker.in_hand:
            self.deaths[index] = self.deaths.get(index, 0) + 1
            if self.deaths[index] > 1:
                error = f"{self.inputs[index]}: {WORKER_DIED} ({cause}, also on the retry)"
                if not self.finish(
                    index, ReportEntry(str(self.inputs[index]), ConvertStatus.FAILED, error=error)
                ):
                    self.stopping = True
            else:
                self.queue.appendleft([index])  # alone: a poison input costs only itself
        log.warning(
            "convert worker %d died (%s) holding %d inputs: retried once",
            worker.process.pid,
            cause,
            len(worker.in_hand),
        )
        worker.in_hand = []
        self._forget(worker)

    def _forget(self, worker: _Worker) -> None:
        worker.conn.close()
        worker.process.join(timeout=5)
        self.workers.remove(worker)

    def _stop_all(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):  # already gone
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers.clear()


def _cause(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"

"""The durable store-and-forward spool: SQLite in WAL mode plus one fsync'd file per object.

The spool is the single source of truth of the bridge. Its promise: an object that
:meth:`Spool.put` accepted is never lost, and leaves the spool only once every
destination has accepted it (docs/forwarding.md).

Layout of a spool folder::

    spool.db, spool.db-wal      SQLite database (WAL mode, synchronous=FULL)
    owner.lock                  held (flock) by the one process that delivers and recovers
    objects/<ab>/<id>.dcm       one Part 10 file per object
    tmp/                        files being written
    lost+found/                 files recovery found and did not understand (never deleted)

**Private.** The spool holds PHI: its folders are made 0700 and its files 0600 whatever
the umask (SQLite gives ``-wal`` and ``-shm`` the mode of ``spool.db``). **Only a spool
is opened.** ``Spool(path, create=False)`` refuses a path that is not a spool (missing,
a file, a folder of other things) with :class:`SpoolPathError`; ``create=True`` makes a
missing (or empty) folder a new spool but refuses the other two.

**One owner.** Delivering (claim, done, fail, retry) and recovery belong to one process
at a time: the *owner*, which holds an exclusive ``flock`` on ``owner.lock`` for its life
(its content names the pid, host, command and start time). A second owner is refused
with :class:`SpoolBusyError` naming the first. :meth:`Spool.put` and the read-only
queries work alongside an owner from any process.

Durability of :meth:`Spool.put`: the file is written to ``tmp/`` under an exclusive
``flock`` on its descriptor, fsync'd, hard-linked into ``objects/`` (never over an
existing file), the folder fsync'd, the row committed (a commit in WAL mode with
synchronous=FULL is fsync'd), and only then is the ``tmp/`` name removed and the flock
released. So, for a file in ``objects/`` the database does not know:

* locked: a put in progress; recovery leaves it alone;
* two names (its ``tmp/`` twin still there): a put that died before its commit, nobody
  was answered for it; recovery moves it to ``lost+found/``;
* one name: it was committed once and the database lost its row (a lost ``-wal`` file, a
  database restored from a copy): the spool refuses to start, ``spool rebuild`` mends it.

Delivery state, one row per object and destination::

    ready --claim--> in_flight --done--> done
      ^                 |  \\--fail--> failed (quarantine, with the reason)
      |                 \\--retry (next_attempt = now + backoff)--+
      +-------------------------------------------------------+
    failed --retry_failed--> ready        in_flight --recover--> ready
    ready --claim, file gone--> failed

``done``, ``fail`` and ``retry`` change only ``in_flight`` rows. A done object's file is
removed once every destination is done, unless retention keeps it for re-sending.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import (
    BridgeError,
    SpoolBusyError,
    SpoolDamagedError,
    SpoolError,
    SpoolPathError,
)

__all__ = [
    "STATES",
    "Delivery",
    "DeliveryState",
    "Hold",
    "Job",
    "ObjectInfo",
    "RebuildReport",
    "Spool",
    "SpoolBusyError",
    "SpoolDamagedError",
    "SpoolError",
    "SpoolPathError",
]

log = logging.getLogger(__name__)


class DeliveryState(enum.StrEnum):
    """Where one delivery (an object for one destination) stands; the database's strings."""

    READY = "ready"  # waiting to be sent, from ``next_attempt`` on
    IN_FLIGHT = "in_flight"  # claimed by a forwarder; back to ready at start-up after a crash
    DONE = "done"  # delivered (or skipped by a filter)
    FAILED = "failed"  # quarantined with ``last_error``; ``spool retry`` makes it ready


STATES = tuple(DeliveryState)
"""Every delivery state, in the order of the life of a delivery."""
LOCK_NAME = "owner.lock"
LOST_FOUND = "lost+found"
_OBJECT_NAME = re.compile(r"objects/([0-9a-f]{2})/([0-9]+)\.dcm")
_LOW_SPACE = 1 << 20  # below this, a database I/O error is taken for a full disk
_CHUNK = 500  # ids per IN (...) list, well below SQLite's limit on bound parameters
_PRUNE_CHUNK = 5000  # history rows deleted per commit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT,
    received REAL NOT NULL,
    file TEXT
);
CREATE INDEX IF NOT EXISTS objects_sha ON objects (sha256);
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    added REAL NOT NULL,
    held_since REAL,
    held_reason TEXT,
    held_next REAL,
    last_success REAL
);
CREATE TABLE IF NOT EXISTS deliveries (
    object_id INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ready', 'in_flight', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (object_id, destination)
);
DROP INDEX IF EXISTS deliveries_queue;
CREATE INDEX IF NOT EXISTS deliveries_claim
    ON deliveries (destination, state, next_attempt, object_id);
"""


_HOLD_COLUMNS = (("held_since", "REAL"), ("held_reason", "TEXT"), ("held_next", "REAL"))
# a destination's latest delivery, kept here because pruning deletes the rows it came from
_DESTINATION_COLUMNS = (*_HOLD_COLUMNS, ("last_success", "REAL"))


@dataclass(frozen=True)
class Hold:
    """A destination held after a permanent failure (docs/forwarding.md, "Held
    destinations"): why, since when, and when it is tried next (seconds since the epoch)."""

    reason: str
    since: float
    next_attempt: float


@dataclass(frozen=True)
class ObjectInfo:
    """What the forwarder needs to know of a spooled object without reading it."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str = ""
    source: str | None = None


@dataclass(frozen=True)
class Job:
    """One claimed delivery: an object on its way to one destination."""

    object_id: int
    destination: str
    path: Path
    info: ObjectInfo
    attempts: int
    sha256: str = ""
    """The object's sha256 as stored by :meth:`Spool.put` (hex), to check before sending."""
    lost: int = 0
    """Attempts of this delivery that ended with the association lost while it was sent."""


@dataclass(frozen=True)
class Delivery:
    """One row of ``spool list``."""

    object_id: int
    destination: str
    state: DeliveryState
    attempts: int
    next_attempt: float
    last_error: str | None
    sop_instance_uid: str
    modality: str
    source: str | None
    received: float


@dataclass(frozen=True)
class RebuildReport:
    """What :meth:`Spool.rebuild` did."""

    objects: int
    """Object files re-indexed (each with a ready delivery per destination)."""
    unreadable: tuple[tuple[str, str], ...]
    """(file, reason) of every object file that could not be read: moved to lost+found/."""
    destinations: tuple[str, ...]
    set_aside: tuple[str, ...]
    """Names the old database files were moved to (never deleted)."""
    old_database: str
    """``readable``, ``missing``, or why the old database could not be read."""


def _object_file(object_id: int) -> str:
    """Where the object ``object_id`` is stored, relative to the spool folder."""
    return f"objects/{object_id % 256:02x}/{object_id}.dcm"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_dir(path: Path) -> None:
    """Make the folder ``path`` (its parent exists) or keep it; either way mode 0700."""
    path.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(OSError):  # not ours: it still works, only less private
        os.chmod(path, 0o700)


def _private_file(path: Path) -> None:
    """Create the file ``path`` if missing; either way mode 0600 (the spool holds PHI)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _not_a_spool(root: Path) -> str | None:
    """Why ``root`` is not a spool, or None: it is one (or an empty folder, for a new one)."""
    try:
        is_dir = stat.S_ISDIR(root.stat().st_mode)
    except FileNotFoundError:
        return "no such folder"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not is_dir:
        return "a file, not a folder"
    with contextlib.suppress(OSError):
        if (root / "spool.db").exists() or (root / "objects").is_dir():
            return None
        if next(root.iterdir(), None) is not None:
            return "a folder of other files, without spool.db"
    return "an empty folder"


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the spool's disk"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the spool folder is read-only or not writable"
    return exc.strerror or str(exc)


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` if nobody holds one; False if somebody does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _default_command() -> str:
    """What this process is, for the owner lock: the program and its command."""
    words = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"]
    words += [w for w in sys.argv[1:3] if not w.startswith("-")]
    return " ".join(words)


class _OwnerLock:
    """The exclusive ``flock`` on ``owner.lock``, held until :meth:`release` or exit."""

    def __init__(self, root: Path, command: str) -> None:
        self.fd: int | None = None
        path = root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool {root}: {LOCK_NAME}: {_describe_os_error(exc)}") from exc
        if not _try_lock(fd):
            holder = self._holder(fd)
            os.close(fd)
            raise SpoolBusyError(f"spool {root} is in use by {holder}")
        self.fd = fd
        self.thread = threading.get_ident()
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        with contextlib.suppress(OSError):  # the lock counts, its content only informs
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            owner = {}
        if not isinstance(owner, dict) or "pid" not in owner:
            return "another process (it has not written its name yet)"
        where = "" if owner.get("host") == socket.gethostname() else f" on {owner.get('host')}"
        return (
            f"pid {owner['pid']}{where} ({owner.get('command', '?')}, "
            f"since {owner.get('since', '?')})"
        )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __del__(self) -> None:
        self.release()


class Spool:
    """A spool folder. Thread-safe: each thread gets its own SQLite connection.

    ``owner`` (the command, e.g. ``"acrnema-bridge forward"``) takes the owner lock
    before the database is opened and checks the database against ``objects/``: a busy
    spool raises :class:`SpoolBusyError`, a damaged one :class:`SpoolDamagedError`.
    Without it the spool can take objects and answer queries; :meth:`recover` takes the
    lock itself.

    ``create=False`` opens only an existing spool (a folder with ``spool.db`` or
    ``objects/``) and raises :class:`SpoolPathError` for anything else, creating nothing:
    what a query or an operator command wants, so that a mistyped path is not an empty
    spool. ``create=True`` (the default, for code that makes its own spool) makes a
    missing or empty folder a spool, and refuses a file or a folder of other things.
    """

    _owner: _OwnerLock | None

    def __init__(
        self,
        root: Path | str,
        *,
        retention_days: float = 0.0,
        reserve_bytes: int = 64 << 20,
        owner: str | None = None,
        create: bool = True,
    ) -> None:
        self._setup(Path(root), retention_days, reserve_bytes, create=create)
        if owner is not None:
            self._owner = _OwnerLock(self.root, owner)
        try:
            self._open_database(fresh_ok=False)
            if owner is not None:
                self._check_database()
        except BaseException:
            self.close()
            raise

    def _setup(
        self, root: Path, retention_days: float, reserve_bytes: int, *, create: bool
    ) -> None:
        self.root = root
        self.retention_days = retention_days
        self.reserve_bytes = reserve_bytes
        self._local = threading.local()
        self._owner = None
        self._tmp_serial = 0
        self._tmp_lock = threading.Lock()
        why = _not_a_spool(root)
        if why is not None and not (create and why in ("no such folder", "an empty folder")):
            raise SpoolPathError(
                f"{root} is not a spool ({why}): give the spool's folder (--spool or [spool] path)"
            )
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            for folder in (self.root, self.root / "objects", self.root / "tmp"):
                _private_dir(folder)
        except OSError as exc:
            raise SpoolError(f"spool {self.root}: {_describe_os_error(exc)}") from exc

    def _damaged(self, problem: str) -> SpoolDamagedError:
        return SpoolDamagedError(
            f"spool {self.root}: {problem}; nothing was started or changed: run "
            f"`acrnema-bridge spool rebuild --spool {self.root}` (it keeps the old database)"
        )

    def _object_files(self) -> Iterator[Path]:
        """Every file under ``objects/`` (whatever its name), folder by folder."""
        objects = self.root / "objects"
        with contextlib.suppress(FileNotFoundError):
            for folder in sorted(objects.iterdir()):
                if not folder.is_dir():
                    yield folder
                    continue
                with contextlib.suppress(FileNotFoundError):
                    yield from sorted(folder.iterdir())

    def _open_database(self, *, fresh_ok: bool) -> None:
        """Open (or create) the database; refuse a missing or empty one over objects."""
        path = self.root / "spool.db"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        holds_objects = next(self._object_files(), None) is not None
        if size <= 0 and holds_objects and not fresh_ok:
            what = "missing" if size < 0 else "empty (0 bytes)"
            raise self._damaged(f"the database spool.db is {what} but objects/ holds files")
        try:
            _private_file(path)  # before SQLite makes it (and -wal, -shm like it) 0644
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(self.root / f"spool.db{suffix}", 0o600)
            db = self._db()
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if "objects" not in tables and holds_objects and not fresh_ok:
                raise self._damaged(
                    "the database spool.db holds no tables (its -wal file lost?) "
                    "but objects/ holds files"
                )
            db.executescript(_SCHEMA)  # runs in a transaction of its own
            columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
            if "lost" not in columns:  # a spool made before the column existed
                db.execute("ALTER TABLE deliveries ADD COLUMN lost INTEGER NOT NULL DEFAULT 0")
            held = {row[1] for row in db.execute("PRAGMA table_info(destinations)")}
            for column, kind in _DESTINATION_COLUMNS:  # a spool made before these columns
                if column not in held:
                    db.execute(f"ALTER TABLE destinations ADD COLUMN {column} {kind}")
        except OSError as exc:
            raise SpoolError(f"spool {self.root}: {_describe_os_error(exc)}") from exc
        except sqlite3.DatabaseError as exc:
            raise self._database_error(exc, holds_objects) from exc

    def _database_error(self, exc: sqlite3.Error, holds_objects: bool = True) -> SpoolError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) and holds_objects:
            return self._damaged(f"the database spool.db is damaged ({exc})")
        return SpoolError(f"spool {self.root}: {self._db_problem(exc)}")

    def _check_database(self) -> None:
        """The owner's check: the database is whole and knows every committed object.

        An object file with a single name that no row knows was committed once (a put
        removes its ``tmp/`` name only after its commit): the database lost rows.
        """
        db = self._db()
        try:
            verdict = [r[0] for r in db.execute("PRAGMA quick_check")]
            if verdict != ["ok"]:
                raise self._damaged(f"the database spool.db fails its check ({verdict[0]})")
            known = {r[0] for r in db.execute("SELECT file FROM objects WHERE file IS NOT NULL")}
            forgotten = []
            for path in self._object_files():
                relative = path.relative_to(self.root).as_posix()
                match = _OBJECT_NAME.fullmatch(relative)
                if match is None or relative in known:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_nlink != 1:
                        continue  # a put in progress or one that died: recovery's business
                    row = db.execute(
                        "SELECT file FROM objects WHERE id = ?", (int(match[2]),)
                    ).fetchone()
                    if row is None:  # read again: it may have been committed meanwhile
                        forgotten.append(relative)
        except sqlite3.DatabaseError as exc:
            raise self._database_error(exc) from exc
        if forgotten:
            shown = ", ".join(forgotten[:3]) + (", ..." if len(forgotten) > 3 else "")
            raise self._damaged(
                f"the database spool.db does not know {len(forgotten)} object file(s) that "
                f"were stored ({shown}): it lost rows (a lost -wal file?)"
            )

    # ------------------------------------------------------------------ plumbing

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "spool.db", timeout=30.0, isolation_level=None)
            # before anything creates the file: a new spool can give freed pages back
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def _db_problem(self, exc: sqlite3.Error) -> str:
        """A database error in words; a full disk is called so, whatever SQLite says."""
        code = getattr(exc, "sqlite_errorcode", None)
        full = code == sqlite3.SQLITE_FULL
        if not full and code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
            with contextlib.suppress(OSError):
                fs = os.statvfs(self.root)
                full = fs.f_bavail * fs.f_frsize < _LOW_SPACE
        if full:
            return "no space left on the spool's disk"
        return f"database: {exc}"

    @contextlib.contextmanager
    def _transaction(self, what: str | None = None) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; a database error becomes a :class:`SpoolError`.

        ``what`` starts the error's message (default: the spool's folder).
        """
        what = what or f"spool {self.root}"
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"{what}: {self._db_problem(exc)}") from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SpoolError(f"{what}: {self._db_problem(exc)}") from exc
            raise

    def close(self) -> None:
        """Close this thread's database connection.

        On the thread that took the owner lock, release it too (a forwarder thread
        closing its own connection does not end the ownership).
        """
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        owner = self._owner
        if owner is not None and owner.thread == threading.get_ident():
            owner.release()
            self._owner = None

    def path_of(self, relative: str) -> Path:
        return self.root / relative

    # ------------------------------------------------------------------ ownership

    @property
    def owned(self) -> bool:
        """Whether this object holds the owner lock."""
        return self._owner is not None

    def acquire(self, command: str | None = None) -> None:
        """Become the spool's owner (see the module docstring); idempotent.

        Raises :class:`SpoolBusyError` when another process (or Spool object) owns it
        and :class:`SpoolDamagedError` when the database is not fit to deliver from.
        """
        if self._owner is not None:
            return
        self._owner = _OwnerLock(self.root, command or _default_command())
        try:
            self._check_database()
        except BaseException:
            self._owner.release()
            self._owner = None
            raise

    # ------------------------------------------------------------------ start-up

    def recover(self) -> dict[str, int]:
        """Make the spool consistent after a crash; run once before forwarding.

        Takes the owner lock if this object does not hold it yet. Object files no row
        knows, of no put in progress, go to ``lost+found/`` with a WARNING (never
        deleted); files of removals a crash interrupted (their row says removed) go;
        ``tmp/`` files of dead writers go (nobody was answered for them); deliveries
        left ``in_flight`` go back to ``ready``. Files a live writer holds are skipped.
        """
        self.acquire()
        lost_found, finished = self._sweep_objects()
        stale = self._sweep_tmp()
        requeued = 0
        in_flight = (
            self._db()
            .execute("SELECT 1 FROM deliveries WHERE state = 'in_flight' LIMIT 1")
            .fetchone()
        )
        if in_flight is not None:  # no write lock taken (nor waited for) without need
            with self._transaction() as db:
                requeued = db.execute(
                    "UPDATE deliveries SET state = 'ready', next_attempt = 0, updated = ? "
                    "WHERE state = 'in_flight'",
                    (time.time(),),
                ).rowcount
        return {
            "requeued": requeued,
            "lost_found": lost_found,
            "removed": finished,
            "tmp_removed": stale,
        }

    def _sweep_objects(self) -> tuple[int, int]:
        db = self._db()
        known = {r[0] for r in db.execute("SELECT file FROM objects WHERE file IS NOT NULL")}
        moved = finished = 0
        for path in self._object_files():
            relative = path.relative_to(self.root).as_posix()
            if relative in known:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, IsADirectoryError):
                continue
            try:
                if not _try_lock(fd):
                    log.debug("spool %s: %s is being written: left alone", self.root, relative)
                    continue
                match = _OBJECT_NAME.fullmatch(relative)
                row = None
                if match is not None:  # read again under the file's lock
                    row = db.execute(
                        "SELECT file FROM objects WHERE id = ?", (int(match[2]),)
                    ).fetchone()
                if row is not None and row[0] == relative:
                    continue  # committed since the first read
                if row is not None and row[0] is None and os.fstat(fd).st_nlink == 1:
                    path.unlink()  # its row says removed: a removal a crash interrupted
                    finished += 1
                    continue
                target = self._to_lost_found(path, relative)
                log.warning(
                    "spool %s: %s is not in the database: moved to %s (never deleted; "
                    "`acrnema-bridge spool add` it if it is wanted)",
                    self.root,
                    relative,
                    target.relative_to(self.root),
                )
                moved += 1
            finally:
                os.close(fd)
        return moved, finished

    def _to_lost_found(self, path: Path, relative: str) -> Path:
        folder = self.root / LOST_FOUND
        _private_dir(folder)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{relative.replace('/', '-')}"
        target = folder / base
        n = 0
        while target.exists():
            n += 1
            target = folder / f"{base}.{n}"
        os.rename(path, target)
        with contextlib.suppress(OSError):
            os.chmod(target, 0o600)  # whatever it is, it came from the spool: PHI
        _fsync_dir(folder)
        return target

    def _sweep_tmp(self) -> int:
        removed = 0
        for path in sorted((self.root / "tmp").iterdir()):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, IsADirectoryError):
                continue
            try:
                if _try_lock(fd):  # no live writer: nobody was answered for it
                    path.unlink(missing_ok=True)
                    removed += 1
            finally:
                os.close(fd)
        return removed

    # ------------------------------------------------------------------ rebuild

    @classmethod
    def rebuild(
        cls,
        root: Path | str,
        destinations: Iterable[str],
        describe: Callable[[Path, bytes], ObjectInfo],
        *,
        command: str = "acrnema-bridge spool rebuild",
        retention_days: float = 0.0,
    ) -> tuple[Spool, RebuildReport]:
        """Make a new database from the object files; return the spool (owned) and a report.

        Takes the owner lock, moves the old database files aside (``spool.db.damaged-*``,
        never deleted), reads the destinations it registered if it still can, and
        indexes every ``objects/<ab>/<id>.dcm`` under its own id: ``describe(path, data)``
        reads what the row needs from the file (raising for a file it cannot read, which
        goes to ``lost+found/``). Every object gets a ready delivery for every destination
        of the old database and of ``destinations``.
        """
        spool = cls.__new__(cls)
        spool._setup(Path(root), retention_days, 64 << 20, create=False)
        spool._owner = _OwnerLock(spool.root, command)
        try:
            old, state = spool._old_destinations()
            aside = spool._set_aside()
            spool._open_database(fresh_ok=True)
            count, unreadable = spool._reindex(describe)
            spool._sweep_tmp()
            names = sorted(set(old) | set(destinations))
            spool.register(names)
        except BaseException:
            spool.close()
            raise
        report = RebuildReport(count, tuple(unreadable), tuple(names), tuple(aside), state)
        log.warning(
            "spool %s rebuilt: %d objects re-indexed, %d unreadable (in %s/), old database %s",
            spool.root,
            count,
            len(unreadable),
            LOST_FOUND,
            state,
        )
        return spool, report

    def _old_destinations(self) -> tuple[list[str], str]:
        path = self.root / "spool.db"
        if not path.exists():
            return [], "missing"
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                names = [r[0] for r in db.execute("SELECT name FROM destinations")]
            finally:
                db.close()
        except sqlite3.Error as exc:
            return [], f"unreadable ({exc})"
        return names, "readable"

    def _set_aside(self) -> list[str]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = []
        for suffix in ("", "-wal", "-shm"):  # SQLite finds the three by these names
            source = self.root / f"spool.db{suffix}"
            if source.exists():
                target = self.root / f"spool.db.damaged-{stamp}{suffix}"
                os.rename(source, target)
                moved.append(target.name)
        _fsync_dir(self.root)
        return moved

    def _reindex(
        self, describe: Callable[[Path, bytes], ObjectInfo]
    ) -> tuple[int, list[tuple[str, str]]]:
        count = 0
        unreadable: list[tuple[str, str]] = []
        with self._transaction() as db:
            for path in self._object_files():
                relative = path.relative_to(self.root).as_posix()
                match = _OBJECT_NAME.fullmatch(relative)
                try:
                    if match is None or int(match[2]) % 256 != int(match[1], 16):
                        raise ValueError("not named objects/<ab>/<id>.dcm")
                    with open(path, "rb") as fp:
                        fcntl.flock(fp.fileno(), fcntl.LOCK_EX)  # a put in progress ends
                        data = fp.read()
                        received = os.fstat(fp.fileno()).st_mtime
                    info = describe(path, data)
                except (OSError, ValueError, BridgeError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                    target = self._to_lost_found(path, relative)
                    unreadable.append((relative, f"{reason or exc}; moved to {target.name}"))
                    log.warning("spool %s: %s cannot be read: %s", self.root, relative, reason)
                    continue
                db.execute(
                    "INSERT INTO objects (id, sop_instance_uid, sop_class_uid, transfer_syntax, "
                    "modality, size, sha256, source, received, file) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        int(match[2]),
                        info.sop_instance_uid,
                        info.sop_class_uid,
                        info.transfer_syntax,
                        info.modality,
                        len(data),
                        hashlib.sha256(data).hexdigest(),
                        info.source,
                        received,
                        relative,
                    ),
                )
                count += 1
        return count, unreadable

    # ------------------------------------------------------------------ destinations

    def register(self, names: Iterable[str]) -> int:
        """Register destinations; every stored object not yet removed gets a delivery.

        Returns how many deliveries were added. Objects put later get a delivery for every
        registered destination.
        """
        now = time.time()
        added = 0
        with self._transaction() as db:
            for name in names:
                db.execute(
                    "INSERT OR IGNORE INTO destinations (name, added) VALUES (?, ?)", (name, now)
                )
                added += db.execute(
                    "INSERT OR IGNORE INTO deliveries (object_id, destination, state, updated) "
                    "SELECT id, ?, 'ready', ? FROM objects WHERE file IS NOT NULL",
                    (name, now),
                ).rowcount
        return added

    def destinations(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT name FROM destinations ORDER BY name")]

    def destination_report(self) -> list[dict[str, object]]:
        """Every registered destination: its counts per state, last success and last error.

        ``last_success`` is the time of its latest delivery done (kept on the destination,
        so pruned history does not lose it); ``last_error`` the time
        and text of the latest delivery that recorded an error (None: never); ``held``
        its :class:`Hold` as a dict (``reason``, ``since``, ``next_attempt``) or None.
        """
        db = self._db()
        report: list[dict[str, object]] = []
        for name in self.destinations():
            done = db.execute(
                "SELECT last_success FROM destinations WHERE name = ?", (name,)
            ).fetchone()[0]
            if done is None:  # a spool made before the column: its rows, while they last
                done = db.execute(
                    "SELECT MAX(updated) FROM deliveries WHERE destination = ? AND state = 'done'",
                    (name,),
                ).fetchone()[0]
            error = db.execute(
                "SELECT updated, last_error FROM deliveries WHERE destination = ? "
                "AND last_error IS NOT NULL AND state != 'done' "
                "ORDER BY updated DESC LIMIT 1",
                (name,),
            ).fetchone()
            hold = self.hold_of(name)
            report.append(
                {
                    "name": name,
                    "counts": self.counts(name),
                    "last_success": done,
                    "last_error": (None if error is None else {"time": error[0], "text": error[1]}),
                    "held": None if hold is None else hold.__dict__,
                }
            )
        return report

    def hold(self, name: str, reason: str, next_attempt: float, *, now: float) -> Hold | None:
        """Record ``name`` as held (a permanent failure); return the hold as recorded.

        A destination already held keeps its ``since``. None if ``name`` is not
        registered (dropped meanwhile).
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE destinations SET held_since = COALESCE(held_since, ?), held_reason = ?, "
                "held_next = ? WHERE name = ?",
                (now, reason, next_attempt, name),
            )
        return self.hold_of(name)

    def unhold(self, name: str) -> None:
        """``name`` is no longer held (it answered, or it failed in a way that passes)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE destinations SET held_since = NULL, held_reason = NULL, held_next = NULL "
                "WHERE name = ?",
                (name,),
            )

    def hold_of(self, name: str) -> Hold | None:
        """The hold recorded for ``name``, if it is held."""
        row = (
            self._db()
            .execute(
                "SELECT held_reason, held_since, held_next FROM destinations "
                "WHERE name = ? AND held_since IS NOT NULL",
                (name,),
            )
            .fetchone()
        )
        return None if row is None else Hold(row[0] or "", row[1], row[2] or row[1])

    def drop_destination(self, name: str) -> tuple[int, int]:
        """Unregister ``name``: its deliveries end; return (deliveries ended, files freed).

        Object files no other destination still needs are removed (as after a delivery,
        retention permitting). Raises :class:`SpoolError` for a name not registered.
        Works alongside an owner: a forwarder still sending for ``name`` finds its
        deliveries gone and records nothing.
        """
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM destinations WHERE name = ?", (name,)).fetchone() is None:
                known = ", ".join(self.destinations()) or "none"
                raise SpoolError(f"spool {self.root}: no destination {name} (registered: {known})")
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT object_id FROM deliveries WHERE destination = ?", (name,)
                )
            ]
            db.execute("DELETE FROM deliveries WHERE destination = ?", (name,))
            db.execute("DELETE FROM destinations WHERE name = ?", (name,))
        freed = 0
        if self.retention_days <= 0:
            freed = self._remove_delivered(ids)
        log.warning(
            "spool %s: destination %s dropped: %d deliveries ended, %d files freed",
            self.root,
            name,
            len(ids),
            freed,
        )
        return len(ids), freed

    # ------------------------------------------------------------------ ingest

    def put(self, data: bytes, info: ObjectInfo) -> int:
        """Store one Part 10 object durably; return its id.

        Returns only after the file and its row are on disk. Putting the same bytes again
        while the first copy is still spooled returns the first copy's id. Raises
        :class:`SpoolError` (disk full, read-only) and leaves the spool as it was.
        """
        return self.add(data, info)[0]

    def add(self, data: bytes, info: ObjectInfo) -> tuple[int, bool]:
        """:meth:`put`, and whether the object is new (False: the same bytes are spooled)."""
        digest = hashlib.sha256(data).hexdigest()
        try:
            existing = (
                self._db()
                .execute("SELECT id FROM objects WHERE sha256 = ? AND file IS NOT NULL", (digest,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.root}: {self._db_problem(exc)}") from exc
        if existing is not None:
            return int(existing[0]), False
        self._check_space(len(data), info)
        what = f"cannot store {info.sop_instance_uid}"
        try:
            fd, tmp = self._locked_tmp(digest)
        except OSError as exc:
            raise SpoolError(f"{what}: {_describe_os_error(exc)}") from exc
        final: Path | None = None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            now = time.time()
            with self._transaction(what) as db:
                cursor = db.execute(
                    "INSERT INTO objects (sop_instance_uid, sop_class_uid, transfer_syntax, "
                    "modality, size, sha256, source, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        info.sop_instance_uid,
                        info.sop_class_uid,
                        info.transfer_syntax,
                        info.modality,
                        len(data),
                        digest,
                        info.source,
                        now,
                    ),
                )
                object_id = int(cursor.lastrowid or 0)
                relative = _object_file(object_id)
                target = self.root / relative
                _private_dir(target.parent)
                try:
                    os.link(tmp, target)  # never over an existing file, unlike a rename
                except FileExistsError:
                    raise SpoolError(
                        f"{what}: {relative} already exists and the database does not know "
                        f"it; run `acrnema-bridge spool rebuild --spool {self.root}`"
                    ) from None
                final = target
                _fsync_dir(target.parent)
                db.execute("UPDATE objects SET file = ? WHERE id = ?", (relative, object_id))
                db.execute(
                    "INSERT INTO deliveries (object_id, destination, state, updated) "
                    "SELECT ?, name, 'ready', ? FROM destinations",
                    (object_id, now),
                )
            final = None  # committed: the object is the spool's now
        except OSError as exc:
            raise SpoolError(f"{what}: {_describe_os_error(exc)}") from exc
        except sqlite3.Error as exc:
            raise SpoolError(f"{what}: {self._db_problem(exc)}") from exc
        finally:
            if final is not None:  # linked but not committed: nobody is answered for it
                final.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
            os.close(fd)  # releases the flock: recovery may look at the file from now on
        return object_id, True

    def _locked_tmp(self, digest: str) -> tuple[int, Path]:
        """Create a file in ``tmp/`` and hold an exclusive flock on it.

        A recovery that took the file away between its creation and the flock (it could
        not know a writer was about to lock it) is noticed, and another name is used.
        """
        while True:
            with self._tmp_lock:
                self._tmp_serial += 1
                serial = self._tmp_serial
            tmp = self.root / "tmp" / f"{digest[:16]}.{os.getpid()}.{serial}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)  # whatever the umask: the object is PHI
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    return fd, tmp
            except FileNotFoundError:
                pass
            os.close(fd)

    def _check_space(self, size: int, info: ObjectInfo) -> None:
        """Refuse an object that would eat into the reserve the database needs to work.

        With the disk full, even marking deliveries done would fail; keeping a reserve
        lets the forwarder go on emptying the spool while new objects are refused.
        """
        try:
            fs = os.statvfs(self.root)
        except OSError as exc:
            raise SpoolError(f"spool {self.root}: {_describe_os_error(exc)}") from exc
        free = fs.f_bavail * fs.f_frsize
        if free - size < self.reserve_bytes:
            raise SpoolError(
                f"cannot store {info.sop_instance_uid}: no space left on the spool's disk "
                f"({free} bytes free, {size} needed, {self.reserve_bytes} kept in reserve)"
            )

    # ------------------------------------------------------------------ delivery

    def claim(self, destination: str, *, now: float, limit: int = 16) -> list[Job]:
        """Move up to ``limit`` due deliveries of ``destination`` to ``in_flight``.

        A delivery whose object file is gone (purged, or missing from disk) is never
        handed out: it is quarantined with the reason, and claiming goes on.
        """
        rows: list[sqlite3.Row] = []
        gone: list[tuple[int, str]] = []
        with self._transaction() as db:
            while len(rows) < limit:
                batch = db.execute(
                    "SELECT d.object_id, d.attempts, d.lost, o.file, o.sha256, "
                    "o.sop_instance_uid, o.sop_class_uid, o.transfer_syntax, o.modality, "
                    "o.source FROM deliveries d JOIN objects o ON o.id = d.object_id "
                    "WHERE d.destination = ? AND d.state = 'ready' AND d.next_attempt <= ? "
                    "ORDER BY d.next_attempt, d.object_id LIMIT ?",
                    (destination, now, limit - len(rows)),
                ).fetchall()
                if not batch:
                    break
                for row in batch:
                    if row["file"] is None:
                        reason = "its file was removed from the spool (purged) before delivery"
                    elif not (self.root / row["file"]).is_file():
                        reason = f"spool file missing: {self.root / row['file']}"
                    else:
                        rows.append(row)
                        db.execute(
                            "UPDATE deliveries SET state = 'in_flight', updated = ? "
                            "WHERE object_id = ? AND destination = ?",
                            (now, row["object_id"], destination),
                        )
                        continue
                    gone.append((int(row["object_id"]), reason))
                    db.execute(
                        "UPDATE deliveries SET state = 'failed', last_error = ?, updated = ? "
                        "WHERE object_id = ? AND destination = ?",
                        (reason, now, row["object_id"], destination),
                    )
        for object_id, reason in gone:
            log.warning("%s: object %d quarantined: %s", destination, object_id, reason)
        return [
            Job(
                int(row["object_id"]),
                destination,
                self.root / row["file"],
                ObjectInfo(
                    row["sop_instance_uid"],
                    row["sop_class_uid"],
                    row["transfer_syntax"],
                    row["modality"],
                    row["source"],
                ),
                int(row["attempts"]),
                str(row["sha256"]),
                int(row["lost"]),
            )
            for row in rows
        ]

    def done(
        self, jobs: Sequence[Job], *, note: str | None = None, unlink: bool = True
    ) -> list[Path]:
        """Mark deliveries done, in one transaction; free files whose every delivery is done.

        One commit (one fsync) for the whole batch, whatever its size: the forwarder calls
        it once per batch, after every response of the batch has arrived. Objects whose
        every delivery is now done lose their file (retention permitting) in the same
        commit; the files themselves are removed after it, here, or by the caller when
        ``unlink`` is False (the forwarder does it off its send path). Returns those
        files. A crash between the commit and the removal leaves files whose row says
        removed: :meth:`recover` removes them.

        Like :meth:`fail` and :meth:`retry`, it changes only rows still ``in_flight``:
        a worker whose claim a recovery took back cannot overwrite the row.
        """
        if not jobs:
            return []
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "UPDATE deliveries SET state = 'done', attempts = attempts + 1, last_error = ?, "
                "updated = ? WHERE object_id = ? AND destination = ? AND state = 'in_flight'",
                [(note, now, j.object_id, j.destination) for j in jobs],
            )
            db.executemany(
                "UPDATE destinations SET last_success = ? WHERE name = ?",
                [(now, name) for name in {j.destination for j in jobs}],
            )
            freed = []
            if self.retention_days <= 0:
                freed = self._free_delivered(db, [j.object_id for j in jobs])
        if unlink:
            self.unlink(freed)
        return freed

    def unlink(self, files: Iterable[Path]) -> None:
        """Remove object files whose rows already say removed (from :meth:`done`)."""
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def retry(self, job: Job, reason: str, next_attempt: float, *, lost: bool = False) -> None:
        """A transient failure: back to ``ready``, not before ``next_attempt``.

        ``lost`` says the association was lost while this object was being sent; such
        attempts are counted apart (:attr:`Job.lost`), so that an object a receiver keeps
        aborting on can be told from a receiver that is down.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = 'ready', attempts = attempts + 1, "
                "lost = lost + ?, next_attempt = ?, last_error = ?, updated = ? "
                "WHERE object_id = ? AND destination = ? AND state = 'in_flight'",
                (int(lost), next_attempt, reason, time.time(), job.object_id, job.destination),
            )

    def fail(self, job: Job, reason: str) -> None:
        """A permanent failure: quarantine the delivery with the reason."""
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, "
                "last_error = ?, updated = ? WHERE object_id = ? AND destination = ? "
                "AND state = 'in_flight'",
                (reason, time.time(), job.object_id, job.destination),
            )

    def _free_delivered(
        self,
        db: sqlite3.Connection,
        object_ids: Iterable[int] | None,
        older_than: float | None = None,
    ) -> list[Path]:
        """In ``db``'s open transaction: mark removed the files of objects (of
        ``object_ids``, or all) whose every delivery is done, received before
        ``older_than`` if given; return those files, to unlink once committed."""
        query = (
            "SELECT o.id, o.file FROM objects o WHERE o.file IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM deliveries d WHERE d.object_id = o.id) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.object_id = o.id "
            "AND d.state != 'done')"
        )
        params: list[object] = []
        if older_than is not None:
            query += " AND o.received <= ?"
            params.append(older_than)
        rows: list[sqlite3.Row] = []
        if object_ids is None:
            rows = db.execute(query, params).fetchall()
        else:
            ids = sorted(set(object_ids))
            for at in range(0, len(ids), _CHUNK):
                chunk = ids[at : at + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows += db.execute(f"{query} AND o.id IN ({marks})", params + chunk).fetchall()
        db.executemany("UPDATE objects SET file = NULL WHERE id = ?", [(r[0],) for r in rows])
        return [self.root / r[1] for r in rows]

    def _remove_delivered(
        self, object_ids: Iterable[int] | None, older_than: float | None = None
    ) -> int:
        """Remove the files of objects whose every delivery is done (one commit); how many."""
        with self._transaction() as db:
            freed = self._free_delivered(db, object_ids, older_than)
        self.unlink(freed)
        return len(freed)

    def prune_history(self, older_than: float) -> int:
        """Delete the rows of delivered objects last delivered before ``older_than``.

        Only objects whose file is already gone and whose every delivery is done (none
        quarantined, none waiting) lose their rows, and never the newest object (SQLite
        would hand its id out again, and ids name files). A file that is still on disk
        (a removal not done yet) keeps its row until it is gone, so no file is ever left
        that the database does not know. Deletes in chunks (one commit each), so a
        forwarder working alongside waits at most one chunk. Returns how many objects.
        """
        db = self._db()
        ids = [
            r[0]
            for r in db.execute(
                "SELECT o.id FROM objects o WHERE o.file IS NULL "
                "AND o.id < (SELECT MAX(id) FROM objects) "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.object_id = o.id "
                "AND (d.state != 'done' OR d.updated > ?))",
                (older_than,),
            )
        ]
        gone = [i for i in ids if not (self.root / _object_file(i)).exists()]
        pruned = 0
        for at in range(0, len(gone), _PRUNE_CHUNK):
            chunk = gone[at : at + _PRUNE_CHUNK]
            with self._transaction() as tx:
                # ON DELETE CASCADE takes the object's deliveries along
                pruned += tx.executemany(
                    "DELETE FROM objects WHERE id = ? AND file IS NULL", [(i,) for i in chunk]
                ).rowcount
        return pruned

    def reclaim(self, *, full: bool = False) -> int:
        """Give the database's free pages back to the file system; return bytes freed.

        A spool made by this version frees them with ``PRAGMA incremental_vacuum``, which
        costs about what the pruning cost. A spool made before has no auto-vacuum: with
        ``full`` (``spool purge``) it is converted once by ``VACUUM``, which rewrites the
        whole database (it needs free space as large as the database, and deliveries
        wait while it runs); without, nothing is done for it. Either way the WAL is then
        checkpointed and truncated, so the file shrinks now and not at the next
        checkpoint.
        """
        db = self._db()
        path = self.root / "spool.db"
        before = path.stat().st_size
        try:
            mode = db.execute("PRAGMA auto_vacuum").fetchone()[0]
            if mode == 0 and full:
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("VACUUM")
            elif mode != 0:
                # executescript steps it to the end: execute() would free one page only
                db.executescript("PRAGMA incremental_vacuum;")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.root}: {self._db_problem(exc)}") from exc
        return max(0, before - path.stat().st_size)

    def housekeeping(self, now: float | None = None) -> tuple[int, int]:
        """What the owner does now and then: remove the files of delivered objects past
        ``retention_days``, delete their history rows (:meth:`prune_history`) and give
        the space back (:meth:`reclaim`). Returns (files removed, objects pruned)."""
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        removed = self._remove_delivered(None, older_than=cutoff)
        pruned = self.prune_history(cutoff)
        if pruned:
            self.reclaim()
        return removed, pruned

    # ------------------------------------------------------------------ operator

    def retry_failed(self, destination: str | None = None) -> int:
        """Move quarantined deliveries back to ``ready``; return how many.

        Deliveries of purged objects (their file is gone) stay quarantined.
        """
        query = (
            "UPDATE deliveries SET state = 'ready', attempts = 0, lost = 0, next_attempt = 0, "
            "updated = ? "
            "WHERE state = 'failed' "
            "AND object_id IN (SELECT id FROM objects WHERE file IS NOT NULL)"
        )
        params: tuple[object, ...] = (time.time(),)
        if destination is not None:
            query += " AND destination = ?"
            params += (destination,)
        with self._transaction() as db:
            return db.execute(query, params).rowcount

    def purge(self, *, older_than_days: float | None = None, failed: bool = False) -> int:
        """Remove delivered objects past retention; with ``failed``, quarantined ones too.

        Returns how many objects' files were removed. The history of delivered objects
        past retention goes too (:meth:`prune_history`), and the space it held is given
        back to the file system (:meth:`reclaim` with ``full``). Quarantined objects keep
        their rows (marked purged), so ``spool list`` still says what failed and why.
        """
        days = self.retention_days if older_than_days is None else older_than_days
        cutoff = time.time() - days * 86400
        removed = self._remove_delivered(None, older_than=cutoff)
        if failed:
            with self._transaction() as tx:
                rows = tx.execute(
                    "SELECT DISTINCT o.id, o.file FROM objects o "
                    "JOIN deliveries d ON d.object_id = o.id "
                    "WHERE d.state = 'failed' AND o.file IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.object_id = o.id "
                    "AND x.state IN ('ready', 'in_flight'))"
                ).fetchall()
                ids = [(row["id"],) for row in rows]
                tx.executemany("UPDATE objects SET file = NULL WHERE id = ?", ids)
                tx.executemany(
                    "UPDATE deliveries SET last_error = 'purged: ' || COALESCE(last_error, '') "
                    "WHERE object_id = ? AND state = 'failed'",
                    ids,
                )
            self.unlink(self.root / row["file"] for row in rows)
            removed += len(rows)
        self.prune_history(cutoff)
        self.reclaim(full=True)
        return removed

    def deliveries(
        self, *, state: str | None = None, destination: str | None = None
    ) -> list[Delivery]:
        """Every delivery (of ``state``, of ``destination``), by object and destination."""
        return list(self.each_delivery(state=state, destination=destination))

    def each_delivery(
        self, *, state: str | None = None, destination: str | None = None
    ) -> Iterator[Delivery]:
        """:meth:`deliveries`, one at a time: memory stays flat however long the history
        (``spool list``). Holds a read transaction until exhausted or closed."""
        query = (
            "SELECT d.object_id, d.destination, d.state, d.attempts, d.next_attempt, d.last_error, "
            "o.sop_instance_uid, o.modality, o.source, o.received FROM deliveries d "
            "JOIN objects o ON o.id = d.object_id WHERE 1 = 1"
        )
        params: list[object] = []
        if state is not None:
            query += " AND d.state = ?"
            params.append(state)
        if destination is not None:
            query += " AND d.destination = ?"
            params.append(destination)
        query += " ORDER BY d.object_id, d.destination"
        cursor = self._db().execute(query, params)
        try:
            while rows := cursor.fetchmany(256):
                for row in rows:
                    yield Delivery(row[0], row[1], DeliveryState(row[2]), *row[3:])
        finally:
            cursor.close()

    def counts(self, destination: str | None = None) -> dict[str, int]:
        """Deliveries per state (for one destination, or all); the keys are
        :class:`DeliveryState` members, every state present."""
        query = "SELECT state, COUNT(*) FROM deliveries"
        params: tuple[object, ...] = ()
        if destination is not None:
            query += " WHERE destination = ?"
            params = (destination,)
        result: dict[str, int] = dict.fromkeys(STATES, 0)
        for state, count in self._db().execute(query + " GROUP BY state", params):
            result[state] = count
        return result

    def next_due(self, destination: str) -> float | None:
        """When the earliest ready delivery of ``destination`` is due, if any."""
        row = (
            self._db()
            .execute(
                "SELECT MIN(next_attempt) FROM deliveries "
                "WHERE destination = ? AND state = 'ready'",
                (destination,),
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def stats(self) -> dict[str, object]:
        """Figures for ``spool stats``: per destination and state, bytes, oldest waiting."""
        db = self._db()
        per_destination: dict[str, dict[str, int]] = {}
        for name, state, count in db.execute(
            "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"
        ):
            per_destination.setdefault(name, dict.fromkeys(STATES, 0))[state] = count
        objects, stored, size = db.execute(
            "SELECT COUNT(*), COUNT(file), "
            "COALESCE(SUM(CASE WHEN file IS NOT NULL THEN size END), 0) FROM objects"
        ).fetchone()
        oldest = db.execute(
            "SELECT MIN(o.received) FROM deliveries d JOIN objects o ON o.id = d.object_id "
            "WHERE d.state IN ('ready', 'in_flight')"
        ).fetchone()[0]
        return {
            "objects": objects,
            "stored": stored,
            "bytes": size,
            "oldest_waiting_s": None if oldest is None else max(0.0, time.time() - oldest),
            "destinations": per_destination,
        }

    def queue_report(self, now: float | None = None) -> dict[str, dict[str, float | int | None]]:
        """Every registered destination's queue for the status server, cheaply: deliveries
        ``ready``, ``in_flight`` and ``failed``, and ``oldest_waiting_s`` (seconds since
        the oldest object still ready or in flight was spooled; None: none).

        Each figure is a range of the claim index (destination, state): the delivered
        history, however long, is never read."""
        now = time.time() if now is None else now
        db = self._db()
        report: dict[str, dict[str, float | int | None]] = {}
        for name in self.destinations():
            row: dict[str, float | int | None] = {}
            for state in (DeliveryState.READY, DeliveryState.IN_FLIGHT, DeliveryState.FAILED):
                row[state.value] = db.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE destination = ? AND state = ?",
                    (name, state.value),
                ).fetchone()[0]
            oldest = db.execute(
                "SELECT MIN(o.received) FROM deliveries d JOIN objects o ON o.id = d.object_id "
                "WHERE d.destination = ? AND d.state IN ('ready', 'in_flight')",
                (name,),
            ).fetchone()[0]
            row["oldest_waiting_s"] = None if oldest is None else max(0.0, now - oldest)
            report[name] = row
        return report

    def free_bytes(self) -> int:
        """Bytes free for this process on the spool's disk."""
        fs = os.statvfs(self.root)
        return fs.f_bavail * fs.f_frsize

    def writable(self) -> str | None:
        """Why the spool cannot take an object now; None: it can (``/healthz``).

        Checks what :meth:`put` needs: room above the reserve, a file created in
        ``tmp/`` (its name starts with ``healthz``; removed at once), and the database's
        write lock (taken and given back without a change)."""
        try:
            free = self.free_bytes()
            if free < self.reserve_bytes:
                return f"{free} bytes free, below the reserve of {self.reserve_bytes}"
            probe = self.root / "tmp" / f"healthz.{os.getpid()}.{threading.get_ident()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"healthz")
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            return _describe_os_error(exc)
        try:
            with self._transaction():
                pass
        except SpoolError as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------ status page

    def recent_objects(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` objects spooled last, newest first, for the status page: ``id``,
        ``sop_instance_uid``, ``modality``, ``size``, ``received`` (seconds since the
        epoch) and ``file`` (relative; None once removed). A range of the primary key."""
        rows = self._db().execute(
            "SELECT id, sop_instance_uid, modality, size, received, file FROM objects "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [dict(row) for row in rows]

    def quarantined(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` deliveries quarantined last (of every destination), newest first:
        ``object_id``, ``destination``, ``last_error``, ``updated``, ``attempts``,
        ``sop_instance_uid``, ``modality`` and ``file``. Ranges of the claim index."""
        found: list[dict[str, Any]] = []
        for name in self.destinations():
            found += [
                dict(row)
                for row in self._db().execute(
                    "SELECT d.object_id, d.destination, d.last_error, d.updated, d.attempts, "
                    "o.sop_instance_uid, o.modality, o.file FROM deliveries d "
                    "JOIN objects o ON o.id = d.object_id "
                    "WHERE d.destination = ? AND d.state = 'failed' "
                    "ORDER BY d.updated DESC LIMIT ?",
                    (name, limit),
                )
            ]
        return sorted(found, key=lambda row: row["updated"], reverse=True)[:limit]

    def last_outcomes(self) -> dict[str, dict[str, Any]]:
        """Per registered destination: ``last_success`` (time of its latest delivery
        done; None: never), ``last_error`` and ``last_error_time`` (the latest error of
        a delivery not done; None: none) and ``held`` (:class:`Hold` or None). Unlike
        :meth:`destination_report` it reads only the undelivered rows."""
        db = self._db()
        report: dict[str, dict[str, Any]] = {}
        for name in self.destinations():
            success = db.execute(
                "SELECT last_success FROM destinations WHERE name = ?", (name,)
            ).fetchone()[0]
            errors = [
                db.execute(
                    "SELECT updated, last_error FROM deliveries WHERE destination = ? "
                    "AND state = ? AND last_error IS NOT NULL ORDER BY updated DESC LIMIT 1",
                    (name, state.value),
                ).fetchone()
                for state in (DeliveryState.READY, DeliveryState.IN_FLIGHT, DeliveryState.FAILED)
            ]
            latest = max((e for e in errors if e is not None), key=lambda e: e[0], default=None)
            report[name] = {
                "last_success": success,
                "last_error_time": None if latest is None else latest[0],
                "last_error": None if latest is None else latest[1],
                "held": self.hold_of(name),
            }
        return report

    def requeue(self, object_id: int, destination: str) -> bool:
        """Move one quarantined delivery back to ``ready`` (the status page's action);
        False if it is not quarantined or its object's file was purged."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE deliveries SET state = 'ready', attempts = 0, lost = 0, "
                "next_attempt = 0, updated = ? WHERE object_id = ? AND destination = ? "
                "AND state = 'failed' "
                "AND object_id IN (SELECT id FROM objects WHERE file IS NOT NULL)",
                (time.time(), object_id, destination),
            ).rowcount
        return bool(changed)

"""The durable store-and-forward spool: SQLite in WAL mode plus one fsync'd file per object.

The spool is the single source of truth of the bridge. Its promise: an object that
:meth:`Spool.put` accepted is never lost, and leaves the spool only once every
destination has accepted it (docs/forwarding.md).

Layout of a spool folder::

    spool.db, spool.db-wal      SQLite database (WAL mode, synchronous=FULL)
    objects/<ab>/<id>.dcm       one Part 10 file per object
    tmp/                        files being written; emptied at start-up

Durability of :meth:`Spool.put`: the file is written to ``tmp/``, fsync'd, renamed into
``objects/``, the folder fsync'd, and only then is the row committed (a commit in WAL mode
with synchronous=FULL is fsync'd). A crash before the commit leaves an orphan file, which
start-up removes: the caller never got an answer for it.

Delivery state, one row per object and destination::

    ready --claim--> in_flight --done--> done
      ^                 |  \\--fail--> failed (quarantine, with the reason)
      |                 \\--retry (next_attempt = now + backoff)--+
      +-------------------------------------------------------+
    failed --retry_failed--> ready        in_flight --start-up--> ready

A done object's file is removed once every destination is done, unless retention keeps
it for re-sending.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError

__all__ = ["STATES", "Delivery", "Job", "ObjectInfo", "Spool", "SpoolError"]

STATES = ("ready", "in_flight", "done", "failed")

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
    added REAL NOT NULL
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
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries (destination, state, next_attempt);
"""


class SpoolError(BridgeError):
    """The spool cannot take or give an object (disk full, read-only, corrupt database)."""


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
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    sop_instance_uid: str
    modality: str
    source: str | None
    received: float


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the spool's disk"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the spool folder is read-only or not writable"
    return exc.strerror or str(exc)


class Spool:
    """A spool folder. Thread-safe: each thread gets its own SQLite connection."""

    def __init__(
        self, root: Path | str, *, retention_days: float = 0.0, reserve_bytes: int = 64 << 20
    ) -> None:
        self.root = Path(root)
        self.retention_days = retention_days
        self.reserve_bytes = reserve_bytes
        self._local = threading.local()
        try:
            for folder in (self.root, self.root / "objects", self.root / "tmp"):
                folder.mkdir(parents=True, exist_ok=True)
            db = self._db()
            db.executescript(_SCHEMA)  # runs in a transaction of its own
            columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
            if "lost" not in columns:  # a spool made before the column existed
                db.execute("ALTER TABLE deliveries ADD COLUMN lost INTEGER NOT NULL DEFAULT 0")
        except OSError as exc:
            raise SpoolError(f"spool {self.root}: {_describe_os_error(exc)}") from exc
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.root}: database: {exc}") from exc

    # ------------------------------------------------------------------ plumbing

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "spool.db", timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; a database error becomes a :class:`SpoolError`."""
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.root}: database: {exc}") from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SpoolError(f"spool {self.root}: database: {exc}") from exc
            raise

    def close(self) -> None:
        """Close this thread's database connection."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def path_of(self, relative: str) -> Path:
        return self.root / relative

    # ------------------------------------------------------------------ start-up

    def recover(self) -> dict[str, int]:
        """Make the spool consistent after a crash; run once before forwarding.

        Deliveries left ``in_flight`` go back to ``ready``; files being written when the
        process died (``tmp/``) and object files without a row are removed (their put()
        never returned, so nobody was told they were stored). Returns what was done.
        """
        with self._transaction() as db:
            requeued = db.execute(
                "UPDATE deliveries SET state = 'ready', next_attempt = 0, updated = ? "
                "WHERE state = 'in_flight'",
                (time.time(),),
            ).rowcount
            known = {
                row[0] for row in db.execute("SELECT file FROM objects WHERE file IS NOT NULL")
            }
        removed = 0
        for tmp in (self.root / "tmp").iterdir():
            tmp.unlink(missing_ok=True)
            removed += 1
        for path in (self.root / "objects").glob("*/*.dcm"):
            if str(path.relative_to(self.root)) not in known:
                path.unlink(missing_ok=True)
                removed += 1
        return {"requeued": requeued, "orphans_removed": removed}

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

    # ------------------------------------------------------------------ ingest

    def put(self, data: bytes, info: ObjectInfo) -> int:
        """Store one Part 10 object durably; return its id.

        Returns only after the file and its row are on disk. Putting the same bytes again
        while the first copy is still spooled returns the first copy's id. Raises
        :class:`SpoolError` (disk full, read-only) and leaves the spool as it was.
        """
        digest = hashlib.sha256(data).hexdigest()
        existing = (
            self._db()
            .execute("SELECT id FROM objects WHERE sha256 = ? AND file IS NOT NULL", (digest,))
            .fetchone()
        )
        if existing is not None:
            return int(existing[0])
        self._check_space(len(data), info)
        tmp = self.root / "tmp" / f"{digest[:16]}.{os.getpid()}.{threading.get_ident()}"
        try:
            with open(tmp, "wb") as fp:
                fp.write(data)
                fp.flush()
                os.fsync(fp.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SpoolError(
                f"cannot store {info.sop_instance_uid}: {_describe_os_error(exc)}"
            ) from exc
        now = time.time()
        try:
            with self._transaction() as db:
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
                relative = f"objects/{object_id % 256:02x}/{object_id}.dcm"
                final = self.root / relative
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
                db.execute("UPDATE objects SET file = ? WHERE id = ?", (relative, object_id))
                db.execute(
                    "INSERT INTO deliveries (object_id, destination, state, updated) "
                    "SELECT ?, name, 'ready', ? FROM destinations",
                    (object_id, now),
                )
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SpoolError(
                f"cannot store {info.sop_instance_uid}: {_describe_os_error(exc)}"
            ) from exc
        except sqlite3.Error as exc:
            tmp.unlink(missing_ok=True)
            raise SpoolError(f"cannot store {info.sop_instance_uid}: database: {exc}") from exc
        return object_id

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
        """Move up to ``limit`` due deliveries of ``destination`` to ``in_flight``."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT d.object_id, d.attempts, d.lost, o.file, o.sha256, o.sop_instance_uid, "
                "o.sop_class_uid, o.transfer_syntax, o.modality, o.source FROM deliveries d "
                "JOIN objects o ON o.id = d.object_id "
                "WHERE d.destination = ? AND d.state = 'ready' AND d.next_attempt <= ? "
                "ORDER BY d.next_attempt, d.object_id LIMIT ?",
                (destination, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET state = 'in_flight', updated = ? "
                "WHERE object_id = ? AND destination = ?",
                [(now, row["object_id"], destination) for row in rows],
            )
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

    def done(self, jobs: Sequence[Job], *, note: str | None = None) -> None:
        """Mark deliveries done; remove files whose every delivery is done."""
        if not jobs:
            return
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "UPDATE deliveries SET state = 'done', attempts = attempts + 1, last_error = ?, "
                "updated = ? WHERE object_id = ? AND destination = ?",
                [(note, now, j.object_id, j.destination) for j in jobs],
            )
        if self.retention_days <= 0:
            self._remove_delivered([j.object_id for j in jobs])

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
                "WHERE object_id = ? AND destination = ?",
                (int(lost), next_attempt, reason, time.time(), job.object_id, job.destination),
            )

    def fail(self, job: Job, reason: str) -> None:
        """A permanent failure: quarantine the delivery with the reason."""
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, "
                "last_error = ?, updated = ? WHERE object_id = ? AND destination = ?",
                (reason, time.time(), job.object_id, job.destination),
            )

    def _remove_delivered(self, object_ids: Iterable[int], older_than: float | None = None) -> int:
        """Remove the files of objects whose every delivery is done; return how many."""
        removed = 0
        db = self._db()
        for object_id in set(object_ids):
            row = db.execute(
                "SELECT o.file, o.received, "
                "(SELECT COUNT(*) FROM deliveries d WHERE d.object_id = o.id) AS total, "
                "(SELECT COUNT(*) FROM deliveries d WHERE d.object_id = o.id AND d.state = 'done') "
                "AS finished FROM objects o WHERE o.id = ?",
                (object_id,),
            ).fetchone()
            if row is None or row["file"] is None or row["total"] == 0:
                continue
            if row["finished"] != row["total"]:
                continue
            if older_than is not None and row["received"] > older_than:
                continue
            with self._transaction() as tx:
                tx.execute("UPDATE objects SET file = NULL WHERE id = ?", (object_id,))
            (self.root / row["file"]).unlink(missing_ok=True)
            removed += 1
        return removed

    # ------------------------------------------------------------------ operator

    def retry_failed(self, destination: str | None = None) -> int:
        """Move quarantined deliveries back to ``ready``; return how many."""
        query = (
            "UPDATE deliveries SET state = 'ready', attempts = 0, lost = 0, next_attempt = 0, "
            "updated = ? "
            "WHERE state = 'failed'"
        )
        params: tuple[object, ...] = (time.time(),)
        if destination is not None:
            query += " AND destination = ?"
            params += (destination,)
        with self._transaction() as db:
            return db.execute(query, params).rowcount

    def purge(self, *, older_than_days: float | None = None, failed: bool = False) -> int:
        """Remove delivered objects past retention; with ``failed``, quarantined ones too.

        Returns how many objects' files were removed. Rows stay, so ``spool list`` still
        shows what went where.
        """
        days = self.retention_days if older_than_days is None else older_than_days
        cutoff = time.time() - days * 86400
        db = self._db()
        ids = [r[0] for r in db.execute("SELECT id FROM objects WHERE file IS NOT NULL")]
        removed = self._remove_delivered(ids, older_than=cutoff)
        if failed:
            rows = db.execute(
                "SELECT DISTINCT o.id, o.file FROM objects o "
                "JOIN deliveries d ON d.object_id = o.id "
                "WHERE d.state = 'failed' AND o.file IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.object_id = o.id "
                "AND x.state IN ('ready', 'in_flight'))"
            ).fetchall()
            for row in rows:
                with self._transaction() as tx:
                    tx.execute("UPDATE objects SET file = NULL WHERE id = ?", (row["id"],))
                    tx.execute(
                        "UPDATE deliveries SET last_error = 'purged: ' || COALESCE(last_error, '') "
                        "WHERE object_id = ? AND state = 'failed'",
                        (row["id"],),
                    )
                (self.root / row["file"]).unlink(missing_ok=True)
                removed += 1
        return removed

    def deliveries(
        self, *, state: str | None = None, destination: str | None = None
    ) -> list[Delivery]:
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
        return [Delivery(*row) for row in self._db().execute(query, params)]

    def counts(self, destination: str | None = None) -> dict[str, int]:
        """Deliveries per state (for one destination, or all)."""
        query = "SELECT state, COUNT(*) FROM deliveries"
        params: tuple[object, ...] = ()
        if destination is not None:
            query += " WHERE destination = ?"
            params = (destination,)
        result = dict.fromkeys(STATES, 0)
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

"""Years of service (issue 11, item 9): claim cost, commits per batch, history, streaming.

The spool must cost the same per object at any backlog and any age: the claim query is
served by an index (no sort of every ready row), a batch is recorded with one commit,
delivered history is pruned after ``retention_days`` and its space given back, and
``spool list`` streams. The timings themselves are in ``bench/spool.py``; these tests
check the mechanisms (query plans, commits, rows, bytes, memory).
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from bridge.cli import main
from bridge.spool.store import ObjectInfo, Spool

A, B = "PACS@127.0.0.1:104", "BACKUP@127.0.0.1:105"


def info(n: int) -> ObjectInfo:
    return ObjectInfo(f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", "CT")


def payload(n: int) -> bytes:
    return n.to_bytes(4, "little") * 64


def statements(spool: Spool) -> list[str]:
    """Every SQL statement this thread's connection runs from now on (values bound)."""
    seen: list[str] = []
    spool._db().set_trace_callback(seen.append)
    return seen


def bulk_history(spool: Spool, count: int, destination: str = A, *, state: str = "done") -> None:
    """``count`` objects with one delivery each, in one transaction, without files when
    ``done`` (delivered and removed, as history is): a large spool in a second."""
    now = time.time()
    with spool._transaction() as db:
        start = db.execute("SELECT COALESCE(MAX(id), 0) FROM objects").fetchone()[0] + 1
        db.executemany(
            "INSERT INTO objects (id, sop_instance_uid, sop_class_uid, transfer_syntax, "
            "modality, size, sha256, source, received, file) VALUES (?, ?, ?, ?, 'CT', 256, "
            "?, 'bulk', ?, NULL)",
            [
                (i, f"1.2.826.0.1.3680043.2.1143.{i}", "1.2.840.10008.5.1.4.1.1.2",
                 "1.2.840.10008.1.2.1", f"{i:064x}", now - 10)
                for i in range(start, start + count)
            ],
        )  # fmt: skip
        db.execute("INSERT OR IGNORE INTO destinations (name, added) VALUES (?, ?)", (A, now))
        db.executemany(
            "INSERT INTO deliveries (object_id, destination, state, attempts, updated) "
            "VALUES (?, ?, ?, 1, ?)",
            [(i, destination, state, now - 10) for i in range(start, start + count)],
        )


# ------------------------------------------------------------------ claim


def test_the_claim_query_is_served_by_an_index_without_a_sort(tmp_path: Path) -> None:
    """Finding: each claim sorted every ready row (a temporary B-tree in the plan), so
    draining a backlog was quadratic. The plan must walk an index in the ORDER BY's
    order and stop at the LIMIT."""
    spool = Spool(tmp_path)
    spool.register([A, B])
    for n in range(3):
        spool.put(payload(n), info(n))
    seen = statements(spool)
    jobs = spool.claim(A, now=time.time(), limit=2)
    assert len(jobs) == 2
    [query] = [s for s in seen if s.lstrip().upper().startswith("SELECT")][:1]
    plan = [row[3] for row in spool._db().execute("EXPLAIN QUERY PLAN " + query)]
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("INDEX deliveries_claim" in step for step in plan), plan
    spool.close()


def test_a_spool_made_before_gets_the_claim_index(tmp_path: Path) -> None:
    """An existing spool (the old index, no claim index) is given the index on open."""
    spool = Spool(tmp_path)
    db = spool._db()
    db.execute("DROP INDEX deliveries_claim")
    db.execute("CREATE INDEX deliveries_queue ON deliveries (destination, state, next_attempt)")
    spool.close()
    again = Spool(tmp_path, create=False)
    names = {r[0] for r in again._db().execute("SELECT name FROM sqlite_master")}
    assert "deliveries_claim" in names and "deliveries_queue" not in names
    again.close()


# ------------------------------------------------------------------ done


def test_a_batch_is_recorded_with_one_commit(tmp_path: Path) -> None:
    """Finding: ``done`` committed (and fsync'd) once per object to free its file. A
    batch is now one commit; the files are removed after it, or by the caller."""
    spool = Spool(tmp_path)
    spool.register([A])
    for n in range(20):
        spool.put(payload(n), info(n))
    jobs = spool.claim(A, now=time.time(), limit=20)
    seen = statements(spool)
    spool.done(jobs)
    assert [s for s in seen if s.strip().upper() == "COMMIT"] == ["COMMIT"]
    assert spool.counts(A)["done"] == 20
    assert not any(j.path.exists() for j in jobs)
    spool.close()


def test_files_freed_by_a_batch_may_be_removed_later_and_recovery_removes_them(
    tmp_path: Path,
) -> None:
    """The forwarder removes a batch's files off its send path: their rows say removed
    once the batch's commit is done, so a crash before the removal loses nothing and
    leaves nothing behind."""
    spool = Spool(tmp_path)
    spool.register([A])
    for n in range(20):
        spool.put(payload(n), info(n))
    jobs = spool.claim(A, now=time.time(), limit=20)
    freed = spool.done(jobs, unlink=False)
    assert sorted(freed) == sorted(j.path for j in jobs)
    assert all(p.exists() for p in freed)  # the caller removes them
    spool.close()
    after_crash = Spool(tmp_path, owner="test")
    assert after_crash.recover()["removed"] == 20
    assert not any(p.exists() for p in freed)
    assert after_crash.counts(A)["done"] == 20
    after_crash.close()


def test_done_frees_only_objects_every_destination_has(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A, B])
    spool.put(payload(1), info(1))
    [job_a] = spool.claim(A, now=time.time())
    assert spool.done([job_a]) == []
    assert job_a.path.exists()
    [job_b] = spool.claim(B, now=time.time())
    assert spool.done([job_b]) == [job_b.path]
    assert not job_b.path.exists()
    spool.close()


# ------------------------------------------------------------------ history


def test_purge_prunes_delivered_history_and_gives_the_space_back(tmp_path: Path) -> None:
    """Finding: rows of delivered objects were never deleted (about 457 bytes each for
    ever; ``spool purge`` kept them, nothing vacuumed)."""
    spool = Spool(tmp_path)
    spool.register([A])
    bulk_history(spool, 20000)
    bulk_history(spool, 3, state="ready")  # waiting: never pruned
    spool._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    grown = (tmp_path / "spool.db").stat().st_size
    assert spool.purge(older_than_days=0) == 0  # no files to remove: history only
    counts = spool.counts(A)
    assert counts == {"ready": 3, "in_flight": 0, "done": 0, "failed": 0}
    shrunk = (tmp_path / "spool.db").stat().st_size
    assert shrunk < grown / 4, (grown, shrunk)
    assert spool._db().execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    spool.close()


def test_purge_converts_a_spool_without_auto_vacuum_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    db = spool._db()
    db.execute("PRAGMA auto_vacuum=NONE")
    db.execute("VACUUM")
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    bulk_history(spool, 20000)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    grown = (tmp_path / "spool.db").stat().st_size
    spool.purge(older_than_days=0)
    assert (tmp_path / "spool.db").stat().st_size < grown / 4
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    spool.close()


def test_history_is_kept_for_retention_days_then_pruned(tmp_path: Path) -> None:
    spool = Spool(tmp_path, retention_days=7)
    spool.register([A])
    for n in range(4):
        spool.put(payload(n), info(n))
    spool.done(spool.claim(A, now=time.time(), limit=4))
    assert spool.housekeeping() == (0, 0)  # younger than 7 days: files and rows stay
    assert spool.counts(A)["done"] == 4
    later = time.time() + 8 * 86400
    removed, pruned = spool.housekeeping(now=later)
    assert removed == 4
    assert pruned == 3  # the newest row stays: SQLite would hand its id out again
    assert [d.sop_instance_uid for d in spool.deliveries()] == ["1.2.3.3"]
    assert not any((tmp_path / "objects").rglob("*.dcm"))
    newest = spool.put(payload(9), info(9))
    assert newest == 5  # ids are never reused: they name files
    spool.close()


def test_history_keeps_rows_whose_file_is_still_on_disk(tmp_path: Path) -> None:
    """A removal not done yet (the forwarder unlinks after its commit) keeps its row,
    so no file is ever left that the database does not know."""
    spool = Spool(tmp_path)
    spool.register([A])
    for n in range(3):
        spool.put(payload(n), info(n))
    jobs = spool.claim(A, now=time.time(), limit=3)
    freed = spool.done(jobs, unlink=False)
    assert spool.prune_history(time.time() + 1) == 0  # files still there
    spool.unlink(freed[:1])
    assert spool.prune_history(time.time() + 1) == 1
    spool.unlink(freed)
    assert spool.prune_history(time.time() + 1) == 1  # the newest stays
    spool.close()
    owner = Spool(tmp_path, owner="test")  # the owner's check finds nothing unknown
    owner.close()


def test_quarantined_history_is_not_pruned(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    for n in range(3):
        spool.put(payload(n), info(n))
    first, *rest = spool.claim(A, now=time.time(), limit=3)
    spool.fail(first, "refused")
    spool.done(rest)
    assert spool.purge(older_than_days=0, failed=True) == 1
    assert [(d.object_id, d.state) for d in spool.deliveries()] == [(1, "failed"), (3, "done")]
    spool.close()


# ------------------------------------------------------------------ spool list


def test_spool_list_streams_in_flat_memory(tmp_path: Path) -> None:
    """Finding: ``spool list`` built a list of every row (0.64 KB a row) before printing."""
    spool = Spool(tmp_path)
    spool.register([A])
    bulk_history(spool, 30000)
    spool.close()
    out, err = io.StringIO(), io.StringIO()

    class Sink(io.StringIO):
        def write(self, text: str) -> int:  # count, keep nothing
            return len(text)

    tracemalloc.start()
    try:
        with redirect_stdout(Sink()), redirect_stderr(err):
            assert main(["spool", "list", "--spool", str(tmp_path)]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "30000 deliveries" in err.getvalue()
    assert peak < 4 << 20, f"spool list peaked at {peak / 1e6:.1f} MB for 30000 rows"
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(["spool", "list", "--json", "--state", "done", "--spool", str(tmp_path)]) == 0
    rows = json.loads(out.getvalue())
    assert len(rows) == 30000 and rows[0]["state"] == "done" and rows[0]["object_id"] == 1


def test_spool_list_json_of_nothing_is_an_empty_list(tmp_path: Path) -> None:
    Spool(tmp_path).close()
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(["spool", "list", "--json", "--spool", str(tmp_path)]) == 0
    assert json.loads(out.getvalue()) == []

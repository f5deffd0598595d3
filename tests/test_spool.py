"""The durable spool (bridge.spool): states, durability, recovery, retention, full disks."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header
from pydicom import dcmread

from bridge.ingest import ingest_file
from bridge.spool.store import ObjectInfo, Spool, SpoolError

A, B = "PACS@127.0.0.1:104", "BACKUP@127.0.0.1:105"


def info(n: int, modality: str = "CT") -> ObjectInfo:
    return ObjectInfo(f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", modality)


def payload(n: int, size: int = 1024) -> bytes:
    return n.to_bytes(4, "little") * (size // 4)


def test_put_is_durable_and_idempotent(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    first = spool.put(payload(1), info(1))
    assert spool.put(payload(1), info(1)) == first  # same bytes while still spooled
    second = spool.put(payload(2), info(2))
    assert second != first
    [job] = spool.claim(A, now=time.time(), limit=1)
    assert job.path.read_bytes() == payload(1)
    assert spool.counts(A) == {"ready": 1, "in_flight": 1, "done": 0, "failed": 0}
    # a second process sees the same committed state
    other = Spool(tmp_path)
    assert other.counts(A)["in_flight"] == 1


def test_every_destination_gets_every_object(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(payload(1), info(1))  # before any destination is known
    assert spool.register([A, B]) == 2  # backfilled for both
    spool.put(payload(2), info(2))
    assert spool.counts(A)["ready"] == 2 and spool.counts(B)["ready"] == 2


def test_file_removed_only_when_every_destination_is_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A, B])
    spool.put(payload(1), info(1))
    [job_a] = spool.claim(A, now=time.time())
    spool.done([job_a])
    assert job_a.path.exists()  # B still waits for it
    [job_b] = spool.claim(B, now=time.time())
    spool.done([job_b])
    assert not job_b.path.exists()
    assert spool.stats()["stored"] == 0


def test_retention_keeps_delivered_objects_until_purge(tmp_path: Path) -> None:
    spool = Spool(tmp_path, retention_days=7)
    spool.register([A])
    spool.put(payload(1), info(1))
    [job] = spool.claim(A, now=time.time())
    spool.done([job])
    assert job.path.exists()
    assert spool.purge() == 0  # younger than 7 days
    assert spool.purge(older_than_days=0) == 1
    assert not job.path.exists()


def test_retry_waits_for_its_time_and_failed_waits_for_the_operator(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(payload(1), info(1))
    spool.put(payload(2), info(2))
    now = time.time()
    first, second = spool.claim(A, now=now)
    spool.retry(first, "connection refused", now + 60)
    spool.fail(second, "0x0122 SOP Class not supported")
    assert spool.claim(A, now=now) == []
    assert spool.next_due(A) == pytest.approx(now + 60)
    [again] = spool.claim(A, now=now + 61)
    assert again.object_id == first.object_id and again.attempts == 1
    [failed] = spool.deliveries(state="failed")
    assert failed.last_error == "0x0122 SOP Class not supported"
    assert spool.retry_failed() == 1
    assert [j.object_id for j in spool.claim(A, now=now)] == [second.object_id]


def test_recover_requeues_in_flight_and_removes_stale_tmp_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(payload(1), info(1))
    spool.claim(A, now=time.time())
    (tmp_path / "tmp" / "half-written").write_bytes(b"x" * 10)
    owner = Spool(tmp_path)
    result = owner.recover()  # unknown object files: tests/test_spool_recovery.py
    assert result == {"requeued": 1, "lost_found": 0, "removed": 0, "tmp_removed": 1}
    assert spool.counts(A) == {"ready": 1, "in_flight": 0, "done": 0, "failed": 0}
    owner.close()


def test_ingest_converts_acr_nema_and_keeps_dicom_as_it_is(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.register([A])
    acr = tmp_path / "slice.acr"
    acr.write_bytes(encode(header() + [(0x7FE00010, "b", np.zeros((8, 8), "<u2").tobytes())]))
    result = ingest_file(spool, acr)
    assert result.status == "spooled" and len(result.object_ids) == 1
    [job] = spool.claim(A, now=time.time())
    converted = dcmread(job.path)
    assert converted.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert job.info.sop_instance_uid == converted.SOPInstanceUID and job.info.modality == "CT"
    # a Part 10 file goes in byte for byte
    part10 = tmp_path / "copy.dcm"
    part10.write_bytes(job.path.read_bytes())
    spool.done([job])
    again = ingest_file(spool, part10)
    [job2] = spool.claim(A, now=time.time())
    assert again.status == "spooled" and job2.path.read_bytes() == part10.read_bytes()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert ingest_file(spool, text).status == "skipped"
    broken = tmp_path / "broken.acr"
    broken.write_bytes(acr.read_bytes()[:-50])
    failed = ingest_file(spool, broken)
    assert failed.status == "failed" and "broken.acr" in (failed.error or "")


# ------------------------------------------------------------------ full and read-only disks


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real file system that fills up (needs root to mount)."""
    with peers.tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


def test_full_disk_is_a_clear_error_and_damages_nothing(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool", reserve_bytes=100_000)
    spool.register([A])
    kept = spool.put(payload(1, 300_000), info(1))
    with pytest.raises(SpoolError, match=r"no space left|disk is full"):
        for n in range(2, 10):
            spool.put(payload(n, 300_000), info(n))
    assert list((small_disk / "spool" / "tmp").iterdir()) == []
    jobs = spool.claim(A, now=time.time(), limit=10)
    assert kept in [j.object_id for j in jobs]
    for job in jobs:  # whatever was accepted is whole, and can still be delivered
        n = int(job.info.sop_instance_uid.split(".")[-1])
        assert job.path.read_bytes() == payload(n, 300_000)
    spool.done(jobs)
    assert spool.stats()["stored"] == 0


def test_full_disk_without_reserve_still_fails_cleanly(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool", reserve_bytes=0)
    spool.register([A])
    with pytest.raises(SpoolError, match=r"no space left|disk is full"):
        for n in range(1, 10):
            spool.put(payload(n, 300_000), info(n))
    assert list((small_disk / "spool" / "tmp").iterdir()) == []


def test_read_only_spool_is_a_clear_error_and_damages_nothing(small_disk: Path) -> None:
    root = small_disk / "spool"
    spool = Spool(root, reserve_bytes=0)
    spool.register([A])
    spool.put(payload(1), info(1))
    spool.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(SpoolError, match=r"read-only|readonly|unable to open"):
            Spool(root, reserve_bytes=0).put(payload(2), info(2))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    reopened = Spool(root, reserve_bytes=0)
    [job] = reopened.claim(A, now=time.time())
    assert job.path.read_bytes() == payload(1)
    assert os.access(job.path, os.R_OK)


def test_claimed_job_carries_sha256_and_lost_count(tmp_path: Path) -> None:
    import hashlib

    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(payload(1), info(1))
    [job] = spool.claim(A, now=0.0 + time.time())
    assert job.sha256 == hashlib.sha256(payload(1)).hexdigest()
    assert job.lost == 0
    spool.retry(job, "association lost while sending", 0.0, lost=True)
    [job] = spool.claim(A, now=time.time())
    spool.retry(job, "association rejected", 0.0)
    [job] = spool.claim(A, now=time.time())
    assert (job.attempts, job.lost) == (2, 1)


def test_spool_made_before_the_lost_column_opens(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "spool.db")
    db.executescript(
        "CREATE TABLE deliveries (object_id INTEGER NOT NULL, destination TEXT NOT NULL, "
        "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT, updated REAL NOT NULL, "
        "PRIMARY KEY (object_id, destination));"
    )
    db.close()
    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(payload(1), info(1))
    [job] = spool.claim(A, now=time.time())
    assert job.lost == 0

"""Recovery that cannot delete acknowledged data: lost+found, damaged databases, rebuild,
guarded state changes, `spool add` validation and batches that survive their parts."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import peers
import pytest
from pydicom import dcmread
from test_spool_owner import A, cli, dest, info, part10_files, reap, start

from bridge.cli import main
from bridge.spool.store import Spool, SpoolDamagedError, SpoolError

__all__ = ["reap"]  # the fixture, imported for its use here


def object_files(spool: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(spool)): p.read_bytes() for p in sorted(spool.glob("objects/*/*.dcm"))
    }


# ------------------------------------------------------------------ lost+found


def test_recovery_moves_unknown_files_to_lost_and_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(b"a" * 100, info(1))
    spool.claim(A, now=time.time())
    # a put that died between placing its file and committing its row: the file still has
    # its second name in tmp/ (a hard link), and nobody was answered for it
    crashed_tmp = tmp_path / "tmp" / "deadbeef.1.1"
    crashed_tmp.write_bytes(b"never committed")
    crashed = tmp_path / "objects" / "02" / "2.dcm"
    crashed.parent.mkdir(exist_ok=True)
    os.link(crashed_tmp, crashed)
    foreign = tmp_path / "objects" / "ff" / "notes.txt"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(b"not ours")
    (tmp_path / "tmp" / "half-written").write_bytes(b"x" * 10)
    spool.close()
    with caplog.at_level(logging.WARNING, logger="bridge.spool.store"):
        owner = Spool(tmp_path, owner="test")
        result = owner.recover()
    assert result["requeued"] == 1 and result["lost_found"] == 2
    assert owner.counts(A) == {"ready": 1, "in_flight": 0, "done": 0, "failed": 0}
    assert not crashed.exists() and not foreign.exists()
    kept = {p.read_bytes() for p in (tmp_path / "lost+found").iterdir()}
    assert kept == {b"never committed", b"not ours"}  # moved, never deleted
    assert list((tmp_path / "tmp").iterdir()) == []  # stale tmp files of dead writers go
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("lost+found" in w for w in warnings) == 2, warnings
    owner.close()


def test_an_unknown_committed_object_stops_the_owner(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(b"a" * 100, info(1))
    spool.close()
    lost = tmp_path / "objects" / "07" / "7.dcm"  # stored once, then forgotten by the db
    lost.parent.mkdir(exist_ok=True)
    lost.write_bytes(b"acknowledged object")
    with pytest.raises(SpoolDamagedError, match=r"objects/07/7\.dcm.*spool rebuild"):
        Spool(tmp_path, owner="test")
    assert lost.read_bytes() == b"acknowledged object"


# ------------------------------------------------------------------ guarded state changes


def test_state_changes_touch_only_in_flight_rows(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(b"a" * 100, info(1))
    [stale] = spool.claim(A, now=time.time())
    spool.recover()  # the owner restarted: the row is ready again
    for change in (
        lambda: spool.done([stale]),
        lambda: spool.fail(stale, "stale"),
        lambda: spool.retry(stale, "stale", time.time() + 60),
    ):
        change()
        assert spool.counts(A) == {"ready": 1, "in_flight": 0, "done": 0, "failed": 0}
    assert stale.path.exists()
    spool.close()


def test_claim_quarantines_rows_whose_file_is_gone_and_goes_on(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    ids = [spool.put(bytes([n]) * 100, info(n)) for n in range(1, 5)]
    by_id = {j.object_id: j for j in spool.claim(A, now=time.time())}
    spool.retry(by_id[ids[0]], "again", 0.0)
    spool.retry(by_id[ids[1]], "again", 0.0)
    by_id[ids[0]].path.unlink()  # a row without its file
    jobs = spool.claim(A, now=time.time(), limit=1)
    assert [j.object_id for j in jobs] == [ids[1]]  # the one after it, never the gone one
    [failed] = spool.deliveries(state="failed")
    assert failed.object_id == ids[0] and "missing" in (failed.last_error or "")
    spool.close()


def test_retry_after_purge_leaves_purged_objects_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register([A])
    spool.put(b"a" * 100, info(1))
    [job] = spool.claim(A, now=time.time())
    spool.fail(job, "0122 SOP class not supported")
    assert spool.purge(failed=True) == 1
    assert spool.retry_failed() == 0
    assert spool.claim(A, now=time.time()) == []
    spool.close()


def test_purge_failed_then_retry_does_not_block_healthy_images(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """The documented `purge --failed` then `retry` sequence, then new healthy images."""
    spool = str(tmp_path / "spool")
    refused = tmp_path / "poison" / "private.dcm"
    refused.parent.mkdir()
    ds = peers.write_secondary_capture(refused)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.3.4.5.6.7"  # storescp refuses
    ds.save_as(refused, enforce_file_format=True)
    assert cli("spool", "add", str(refused.parent), "--spool", spool).returncode == 0
    first = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", spool)
    assert first.returncode == 1 and "quarantined 1" in first.stderr, first.stderr
    assert cli("spool", "purge", "--failed", "--spool", spool).returncode == 0
    assert cli("spool", "retry", "--spool", spool).returncode == 0
    healthy = part10_files(tmp_path / "healthy", 4)
    assert cli("spool", "add", str(tmp_path / "healthy"), "--spool", spool).returncode == 0
    final = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", spool)
    assert "Traceback" not in final.stderr, final.stderr
    assert set(storescp.received()) == set(healthy)
    assert "delivered 4 now; waiting 0, quarantined 1" in final.stderr, final.stderr


# ------------------------------------------------------------------ damaged databases


def _spool_in_child(spool: Path, files: Path, *, checkpoint: bool) -> None:
    """Spool every file of ``files`` in a child process that ends without closing the
    database (as kill -9 would) unless ``checkpoint``."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from bridge.spool.store import Spool\n"
        "from bridge.ingest import ingest_file\n"
        "spool = Spool(sys.argv[1])\n"
        "for path in sorted(Path(sys.argv[2]).iterdir()):\n"
        "    assert ingest_file(spool, path).status == 'spooled'\n"
        "if sys.argv[3] == '1':\n"
        "    spool.close()\n"
        "    sys.exit(0)\n"
        "os._exit(0)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(spool), str(files), "1" if checkpoint else "0"],
        check=True,
        timeout=120,
    )


def _damage(spool: Path, how: str) -> None:
    db = spool / "spool.db"
    if how == "empty":
        db.write_bytes(b"")
    elif how == "missing":
        db.unlink()
    elif how == "garbage":
        db.write_bytes(random.Random(7).randbytes(db.stat().st_size))
    elif how == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif how == "wal-removed":
        (spool / "spool.db-wal").unlink()


@pytest.mark.parametrize("how", ["empty", "missing", "garbage", "truncated", "wal-removed"])
def test_damaged_database_stops_everything_until_rebuild(
    tmp_path: Path, storescp: peers.StoreSCPPeer, how: str
) -> None:
    spool = tmp_path / "spool"
    made = part10_files(tmp_path / "in", 6)
    _spool_in_child(spool, tmp_path / "in", checkpoint=how != "wal-removed")
    if how == "truncated":  # enough pages that half the file cuts into the tables
        extra = part10_files(tmp_path / "extra", 60)
        _spool_in_child(spool, tmp_path / "extra", checkpoint=True)
        made.update(extra)
    before = object_files(spool)
    assert len(before) == len(made)
    _damage(spool, how)
    refused = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", str(spool))
    assert refused.returncode == 1, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "acrnema-bridge spool rebuild" in lines[0], refused.stderr
    assert object_files(spool) == before  # nothing deleted, nothing moved
    assert storescp.received() == {}
    rebuilt = cli("spool", "rebuild", "--dest", dest(storescp), "--spool", str(spool))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"{len(made)} objects re-indexed" in rebuilt.stderr, rebuilt.stderr
    if how != "missing":
        assert list(spool.glob("spool.db.damaged-*")), "the damaged database was not kept"
    assert object_files(spool) == before
    final = cli("forward", "--until-empty", "--dest", dest(storescp), "--spool", str(spool))
    assert final.returncode == 0, final.stderr
    assert set(storescp.received()) == set(made)


def test_add_refuses_a_spool_whose_database_is_gone(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    part10_files(tmp_path / "in", 2)
    _spool_in_child(spool, tmp_path / "in", checkpoint=True)
    before = object_files(spool)
    (spool / "spool.db").write_bytes(b"")
    more = part10_files(tmp_path / "more", 1)
    added = cli("spool", "add", str(tmp_path / "more"), "--spool", str(spool))
    assert added.returncode == 1 and "spool rebuild" in added.stderr, added.stderr
    assert object_files(spool) == before and len(more) == 1


def test_rebuild_reports_unreadable_files_and_keeps_them(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    part10_files(tmp_path / "in", 3)
    _spool_in_child(spool, tmp_path / "in", checkpoint=True)
    broken = sorted(spool.glob("objects/*/*.dcm"))[0]
    content = broken.read_bytes()[:300]
    broken.write_bytes(content)
    (spool / "spool.db").unlink()
    rebuilt = cli("spool", "rebuild", "--dest", A, "--spool", str(spool))
    assert rebuilt.returncode == 1, rebuilt.stderr
    assert "2 objects re-indexed" in rebuilt.stderr and broken.name in rebuilt.stderr
    assert [p.read_bytes() for p in (spool / "lost+found").iterdir()] == [content]
    check = Spool(spool, owner="test")
    assert check.counts(A)["ready"] == 2
    check.close()


def test_rows_without_files_are_quarantined_and_the_rest_delivered(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    spool = tmp_path / "spool"
    made = part10_files(tmp_path / "in", 4)
    _spool_in_child(spool, tmp_path / "in", checkpoint=True)
    gone = sorted(spool.glob("objects/*/*.dcm"))[:2]
    gone_uids = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in gone}
    for path in gone:
        path.unlink()
    result = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", str(spool))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert set(storescp.received()) == set(made) - gone_uids
    assert "quarantined 2" in result.stderr


# ------------------------------------------------------------------ kill -9


@pytest.mark.slow
def test_kill_9_in_a_loop_leaves_a_consistent_spool(
    tmp_path: Path, storescp: peers.StoreSCPPeer, reap: list[subprocess.Popen[str]]
) -> None:
    spool = tmp_path / "spool"
    rng = random.Random(9)
    made: dict[str, Path] = {}
    for round_ in range(6):
        batch = part10_files(tmp_path / f"in{round_}", 25)
        made.update(batch)
        adder = start("spool", "add", str(tmp_path / f"in{round_}"), "--spool", str(spool))
        reap.append(adder)
        time.sleep(rng.uniform(0.3, 1.2))
        adder.send_signal(signal.SIGKILL)
        adder.wait()
        forward = start("forward", "--dest", dest(storescp), "--spool", str(spool))
        reap.append(forward)
        time.sleep(rng.uniform(0.5, 1.5))
        forward.send_signal(signal.SIGKILL)
        forward.wait()
    # every file a killed adder may or may not have stored: add them all again
    folders = [str(tmp_path / f"in{r}") for r in range(6)]
    again = cli("spool", "add", *folders, "--spool", str(spool))
    assert again.returncode == 0, again.stderr
    final = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", str(spool))
    assert final.returncode == 0, final.stderr
    assert set(storescp.received()) == set(made)
    check = Spool(spool, owner="test")
    assert check.counts()["failed"] == 0 and check.counts()["ready"] == 0
    db = sqlite3.connect(spool / "spool.db")
    for (relative,) in db.execute("SELECT file FROM objects WHERE file IS NOT NULL"):
        assert (spool / relative).exists()
    db.close()
    check.close()


# ------------------------------------------------------------------ spool add


def test_spool_add_validates_part10_and_recognises_identical_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    [(_, good)] = part10_files(folder, 1).items()
    data = good.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[:-100])
    (folder / "odd.dcm").write_bytes(data[:-1])
    spool = tmp_path / "spool"
    assert main(["spool", "add", str(good), "--spool", str(spool)]) == 0
    capsys.readouterr()
    (folder / "z-copy.dcm").write_bytes(data)
    status = main(["spool", "add", str(folder), "--spool", str(spool)])
    err = capsys.readouterr().err
    assert status == 1
    assert "truncated.dcm" in err and "odd.dcm" in err and "runs past the end" in err
    assert "z-copy.dcm: already in the spool (object 1)" in err
    assert "0 files spooled (0 objects), 2 skipped, 2 failed" in err
    check = Spool(spool)
    assert check.stats()["objects"] == 1
    check.close()


def test_the_same_acrnema_file_added_twice_is_spooled_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corpus_file: Callable[[str], Path]
) -> None:
    """Finding: conversion stamped the current time into the data set, so the content
    hash of a re-added ACR-NEMA file never matched and it was sent twice."""
    source = corpus_file("r01")
    spool = tmp_path / "spool"
    assert main(["spool", "add", str(source), "--spool", str(spool)]) == 0
    time.sleep(1.1)  # a wall-clock value in the output would differ now
    capsys.readouterr()
    assert main(["spool", "add", str(source), "--spool", str(spool)]) == 0
    err = capsys.readouterr().err
    assert f"{source}: already in the spool (object 1)" in err
    check = Spool(spool)
    assert check.stats()["objects"] == 1
    check.close()


@pytest.fixture
def big_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 72 MiB tmpfs (the spool keeps 64 MiB in reserve): root needed to mount."""
    with peers.tmpfs(tmp_path / "disk", "72m") as mount:
        yield mount


def test_spool_add_goes_on_past_a_full_disk_and_a_bad_file(
    tmp_path: Path, big_tmpfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = big_tmpfs / "spool"
    first = part10_files(tmp_path / "first", 1)
    assert main(["spool", "add", str(tmp_path / "first"), "--spool", str(spool)]) == 0
    before = object_files(spool)
    folder = tmp_path / "batch"
    small = part10_files(folder, 3)  # sc0000 .. sc0002, about 9 KB each
    big = folder / "sc0001-big.dcm"  # sorted between the first and second small file
    ds = peers.write_secondary_capture(big)
    ds.Rows = ds.Columns = 512
    ds.PixelData = bytes(512 * 512 * 2)
    ds.save_as(big, enforce_file_format=True)
    (folder / "sc0001-cut.dcm").write_bytes(next(iter(small.values())).read_bytes()[:-10])
    # another writer fills the disk: what is left is the reserve plus room for the small ones
    filler = big_tmpfs / "filler"
    fs = os.statvfs(big_tmpfs)
    free = fs.f_bavail * fs.f_frsize
    os.posix_fallocate(os.open(filler, os.O_WRONLY | os.O_CREAT), 0, free - (64 << 20) - 200_000)
    capsys.readouterr()
    status = main(["spool", "add", str(folder), "--spool", str(spool)])
    err = capsys.readouterr().err
    assert status == 1
    assert "sc0001-big.dcm" in err and "no space left on the spool's disk" in err, err
    assert "disk I/O error" not in err
    assert "sc0001-cut.dcm" in err
    assert "3 files spooled (3 objects), 0 skipped, 2 failed" in err, err
    check = Spool(spool)
    assert check.stats()["objects"] == 4
    check.close()
    after = object_files(spool)
    for name, content in before.items():  # nothing spooled earlier is harmed
        assert after[name] == content
    assert len(first) == 1


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with peers.tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def test_a_database_write_on_a_full_disk_says_no_space(small_tmpfs: Path) -> None:
    spool = Spool(small_tmpfs / "spool", reserve_bytes=0)
    spool.register([A])
    kept = spool.put(b"k" * 3000, info(0))
    fd = os.open(small_tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.ftruncate(fd, os.fstat(fd).st_size - 4096)  # room for the file, not the database
        with pytest.raises(SpoolError) as refused:
            spool.put(b"y" * 100, info(1))
    finally:
        os.close(fd)
    assert "no space left on the spool's disk" in str(refused.value)
    assert "disk I/O error" not in str(refused.value)
    assert "database or disk is full" not in str(refused.value)
    (small_tmpfs / "filler").unlink()  # the other writer gives the space back
    [job] = spool.claim(A, now=time.time())
    assert job.object_id == kept and job.path.read_bytes() == b"k" * 3000
    spool.close()

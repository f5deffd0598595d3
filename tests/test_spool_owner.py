"""One owner per spool: the owner lock, and writers that work alongside an owner safely.

Process-level tests run ``.venv/bin/acrnema-bridge`` as subprocesses against a real
storescp; the helpers here are shared with ``test_spool_recovery.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import peers
import pytest

import bridge.spool.store as store
from bridge.spool.store import ObjectInfo, Spool, SpoolBusyError

BIN = str(Path(sys.executable).with_name("acrnema-bridge"))
A = "PACS@127.0.0.1:104"


def info(n: int) -> ObjectInfo:
    return ObjectInfo(f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1", "OT")


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``acrnema-bridge ARGS`` to the end; generous timeout only to catch a hang."""
    return subprocess.run(
        [BIN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str]:
    """Wait for a process (SIGKILL after ``timeout``); return its status and stderr."""
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"{process.args} did not end within {timeout} s: {err[-2000:]}")
    return process.returncode, err


def dest(server: peers.StoreSCPPeer) -> str:
    return f"{server.ae_title}@{server.host}:{server.port}"


def part10_files(folder: Path, count: int) -> dict[str, Path]:
    """``count`` valid Secondary Capture files; SOP Instance UID -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for n in range(count):
        path = folder / f"sc{n:04d}.dcm"
        made[str(peers.write_secondary_capture(path).SOPInstanceUID)] = path
    return made


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end are killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


# ------------------------------------------------------------------ the lock, in one process


def test_second_owner_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = Spool(tmp_path, owner="acrnema-bridge forward")
    with pytest.raises(SpoolBusyError) as refused:
        Spool(tmp_path, owner="acrnema-bridge run")
    message = str(refused.value)
    assert f"spool {tmp_path} is in use by pid {os.getpid()}" in message
    assert "acrnema-bridge forward" in message and "since" in message
    # recover() takes the lock itself, so a second process cannot recover either
    with pytest.raises(SpoolBusyError):
        Spool(tmp_path).recover()
    # writers and readers work alongside the owner
    other = Spool(tmp_path)
    other.register([A])
    other.put(b"x" * 100, info(1))
    assert other.counts(A)["ready"] == 1
    other.close()
    first.close()  # releases the lock
    second = Spool(tmp_path, owner="acrnema-bridge run")
    assert second.recover()["requeued"] == 0
    second.close()


def test_recover_takes_the_lock_and_close_releases_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.recover()  # as Forwarder.run() does: the lock is taken here
    with pytest.raises(SpoolBusyError):
        Spool(tmp_path, owner="acrnema-bridge forward")
    # a close() from another thread (a forwarder thread ending) keeps the lock
    closer = threading.Thread(target=spool.close)
    closer.start()
    closer.join()
    with pytest.raises(SpoolBusyError):
        Spool(tmp_path, owner="acrnema-bridge forward")
    spool.close()
    Spool(tmp_path, owner="acrnema-bridge forward").close()


def test_a_put_in_progress_survives_an_owners_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put held between its file's arrival in objects/ and its commit is left alone."""
    writer = Spool(tmp_path)
    writer.register([A])
    linked, go = threading.Event(), threading.Event()
    real_fsync_dir = store._fsync_dir

    def held(path: Path) -> None:
        real_fsync_dir(path)
        if path.parent.name == "objects":  # the object's file is in place, not committed
            linked.set()
            go.wait(30)

    monkeypatch.setattr(store, "_fsync_dir", held)
    ids: list[int] = []
    putter = threading.Thread(target=lambda: ids.append(writer.put(b"y" * 4096, info(1))))
    putter.start()
    try:
        assert linked.wait(30)
        [in_progress] = list((tmp_path / "objects").glob("*/*.dcm"))
        finished = threading.Event()
        owner = Spool(tmp_path, owner="acrnema-bridge forward")

        def recover() -> None:
            owner.recover()
            finished.set()

        recovering = threading.Thread(target=recover)
        recovering.start()
        recovered = finished.wait(20)
        assert in_progress.read_bytes() == b"y" * 4096, "recovery removed a put in progress"
        assert not (tmp_path / "lost+found").exists() or not any(
            (tmp_path / "lost+found").iterdir()
        )
    finally:
        go.set()
        putter.join()
    recovering.join()
    assert recovered, "recovery waited for a put in progress instead of skipping it"
    [job] = owner.claim(A, now=time.time())
    assert job.object_id == ids[0] and job.path == in_progress
    assert job.path.read_bytes() == b"y" * 4096
    owner.close()
    writer.close()


def test_put_never_overwrites_an_object_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.put(b"a" * 100, info(1))
    foreign = tmp_path / "objects" / f"{(first + 1) % 256:02x}" / f"{first + 1}.dcm"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(b"an object the database lost track of")
    with pytest.raises(store.SpoolError, match=r"already exists"):
        spool.put(b"b" * 100, info(2))
    assert foreign.read_bytes() == b"an object the database lost track of"
    assert list((tmp_path / "tmp").iterdir()) == []


# ------------------------------------------------------------------ processes


def test_two_forward_processes_the_second_is_refused_at_once(
    tmp_path: Path, storescp: peers.StoreSCPPeer, reap: list[subprocess.Popen[str]]
) -> None:
    spool = tmp_path / "spool"
    made = part10_files(tmp_path / "in", 3)
    added = cli("spool", "add", str(tmp_path / "in"), "--spool", str(spool))
    assert added.returncode == 0, added.stderr
    first = start("forward", "--dest", dest(storescp), "--spool", str(spool))
    reap.append(first)
    deadline = time.monotonic() + 60
    while set(storescp.received()) != set(made):  # the first owner is at work
        assert first.poll() is None and time.monotonic() < deadline, first.stderr
        time.sleep(0.1)
    second = start("forward", "--dest", dest(storescp), "--until-empty", "--spool", str(spool))
    reap.append(second)
    status, err = finish(second, 60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 1, err
    assert len(lines) == 1, err
    assert f"is in use by pid {first.pid} (acrnema-bridge forward, since " in lines[0]
    # the read-only and adding commands work alongside the owner
    assert cli("spool", "stats", "--spool", str(spool)).returncode == 0
    assert cli("spool", "list", "--spool", str(spool)).returncode == 0
    more = part10_files(tmp_path / "more", 2)
    added = cli("spool", "add", str(tmp_path / "more"), "--spool", str(spool))
    assert added.returncode == 0, added.stderr
    deadline = time.monotonic() + 60
    while set(storescp.received()) != set(made) | set(more):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    status, err = finish(first, 30)
    assert status == 0, err


@pytest.mark.slow
def test_spool_add_while_owners_start_and_restart(
    tmp_path: Path, storescp: peers.StoreSCPPeer, reap: list[subprocess.Popen[str]]
) -> None:
    """Nothing a `spool add` was answered for is lost, duplicated or falsely quarantined
    while owners start (each runs recovery) again and again."""
    spool = tmp_path / "spool"
    Spool(spool).close()
    made = part10_files(tmp_path / "in", 200)
    adder = start("spool", "add", str(tmp_path / "in"), "--spool", str(spool))
    reap.append(adder)
    recoveries = refused = 0
    forwards = 0
    while adder.poll() is None:
        # an owner in this process: recovery in a tight loop ...
        try:
            owner = Spool(spool, owner="test recovery loop")
        except SpoolBusyError:
            refused += 1
        else:
            owner.recover()
            owner.close()
            recoveries += 1
        # ... and now and then a real forward process, which also recovers at start-up
        if recoveries % 25 == 0 and forwards < 6:
            forwards += 1
            forward = start(
                "forward", "--dest", dest(storescp), "--timeout", "1", "--spool", str(spool)
            )
            reap.append(forward)
            status, err = finish(forward, 60)
            assert status in (0, 1) and "Traceback" not in err, err
    status, err = finish(adder)
    assert status == 0, err
    assert "200 files spooled (200 objects), 0 skipped, 0 failed" in err
    assert recoveries > 20  # the race was really run
    lost_found = spool / "lost+found"
    assert not lost_found.exists() or not any(lost_found.iterdir())
    final = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", str(spool))
    assert final.returncode == 0, final.stderr
    received = storescp.received()
    assert set(received) == set(made)  # every acknowledged object delivered
    check = Spool(spool)
    # each once: no duplicate rows (ids are never reused, and each forward's start prunes
    # the history delivered before it, so the highest id counts the rows ever made)
    assert check._db().execute("SELECT MAX(id) FROM objects").fetchone()[0] == 200
    counts = check.counts()
    assert counts["ready"] == counts["in_flight"] == counts["failed"] == 0
    assert counts["done"] == check.stats()["objects"]
    check.close()

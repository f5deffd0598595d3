"""The send loop in the steady state (issue 11, item 9), against a real storescp.

One spool commit per batch, delivered files removed off the send path, pynetdicom's
internals checked once per association, a DUL thread that waits for responses instead
of polling for them; and the durability promise kept: an object is marked done only
after its success status arrived, so a kill -9 may re-send, never lose.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peers
import pytest
from test_fastpath import part10
from test_spool_owner import cli, dest, part10_files, reap, start

from bridge.forward import fastpath
from bridge.forward.runner import Forwarder
from bridge.forward.scu import Destination, Sender
from bridge.forward.tcp import TunedAssociationSocket
from bridge.spool.store import ObjectInfo, Spool

__all__ = ["reap"]  # the fixture, imported for its use here


def destination(storescp: peers.StoreSCPPeer) -> Destination:
    return Destination(storescp.ae_title, storescp.host, storescp.port)


def test_pynetdicom_hooks_are_checked_once_per_association(
    tmp_path: Path, storescp: peers.StoreSCPPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: the fast path looked up every pynetdicom internal it relies on before
    every object. Once per association is enough: the association does not change."""
    calls: list[object] = []
    original = fastpath.hook_problems

    def counted(assoc: Any = None) -> list[str]:
        calls.append(assoc)
        return original(assoc)

    monkeypatch.setattr(fastpath, "hook_problems", counted)
    items = [part10(tmp_path, 64, 64, n) for n in range(6)]
    sender = Sender(destination(storescp))
    try:
        first = sender.send(items[:3])
        second = sender.send(items[3:])
    finally:
        sender.close()
    assert [r.status for r in first + second] == [0] * 6
    assert sender.fast_sends == 6 and sender.associations_opened == 1
    assert len(calls) == 1
    assert set(storescp.received()) == {i.sop_instance_uid for i in items}


@pytest.fixture
def idle_polls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts ``ready`` answers of "nothing yet" given while the association's reactor
    is paused for a batch: the DUL thread's idle polls during the batch."""
    counter = [0]
    original = TunedAssociationSocket.ready

    def ready(self: TunedAssociationSocket) -> bool:
        answer = bool(original.fget(self))  # type: ignore[attr-defined]
        if not answer and not self.assoc._reactor_checkpoint.is_set():
            counter[0] += 1
        return answer

    monkeypatch.setattr(TunedAssociationSocket, "ready", property(ready))
    yield counter


def test_the_dul_thread_waits_for_responses_instead_of_polling(
    tmp_path: Path, storescp: peers.StoreSCPPeer, idle_polls: list[int]
) -> None:
    """Finding: during a batch pynetdicom's DUL thread polled the socket every 0.1 ms
    (set so to notice each response sooner), competing with the sending thread for the
    interpreter lock. It now sleeps in poll() until a response arrives, waking at most
    every 20 ms when none does."""
    items = [part10(tmp_path, 512, 512, n) for n in range(41)]
    sender = Sender(destination(storescp))
    try:
        sender.send(items[:1])  # the association is open before the timed batch
        started = time.monotonic()
        results = sender.send(items[1:])
        elapsed = time.monotonic() - started
    finally:
        sender.close()
    assert [r.status for r in results] == [0] * 40
    allowed = elapsed / 0.02 + 10  # a wake-up per 20 ms without data, and slack
    assert idle_polls[0] <= allowed, f"{idle_polls[0]} idle polls in {elapsed:.3f} s"


def test_a_forward_run_records_batches_and_leaves_no_delivered_file(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    spool = Spool(tmp_path / "spool")
    items = [part10(tmp_path, 32, 32, n) for n in range(10)]
    for item in items:
        info = ObjectInfo(item.sop_instance_uid, item.sop_class_uid, item.transfer_syntax)
        spool.put(item.path.read_bytes(), info)
    commits: list[str] = []
    lock = threading.Lock()

    class Counting(Spool):
        def done(self, jobs: Any, **kw: Any) -> list[Path]:
            with lock:
                commits.append(f"done {len(jobs)}")
            return super().done(jobs, **kw)

    counting = Counting(tmp_path / "spool")
    forwarder = Forwarder(counting, [destination(storescp)], batch=4)
    summary = forwarder.run(threading.Event(), until_empty=True, timeout=60)
    assert summary.delivered == {destination(storescp).name: 10}
    assert commits == ["done 4", "done 4", "done 2"]
    assert not any((tmp_path / "spool" / "objects").rglob("*.dcm"))  # unlinker drained
    assert set(storescp.received()) == {i.sop_instance_uid for i in items}
    counting.close()
    spool.close()


@pytest.mark.slow
def test_kill_9_mid_forward_may_resend_but_never_loses(
    tmp_path: Path, storescp: peers.StoreSCPPeer, reap: list[subprocess.Popen[str]]
) -> None:
    """With one commit per batch, a kill -9 between a batch's responses and its commit
    leaves those objects ``in_flight``: they are sent again, never marked done unsent."""
    made = part10_files(tmp_path / "in", 400)
    spool = tmp_path / "spool"
    added = cli("spool", "add", str(tmp_path / "in"), "--spool", str(spool))
    assert added.returncode == 0, added.stderr
    forward = start("forward", "--dest", dest(storescp), "--spool", str(spool))
    reap.append(forward)
    deadline = time.monotonic() + 60
    while len(list(storescp.out_dir.glob("*.dcm"))) < 100:  # past the first batch of 64
        assert forward.poll() is None, forward.communicate()
        assert time.monotonic() < deadline, "storescp received too little"
        time.sleep(0.005)
    forward.send_signal(signal.SIGKILL)
    forward.wait()
    db = sqlite3.connect(spool / "spool.db")
    rows = db.execute(
        "SELECT o.sop_instance_uid, d.state FROM deliveries d JOIN objects o ON o.id = d.object_id"
    ).fetchall()
    db.close()
    received = set(storescp.received())
    done = {uid for uid, state in rows if state == "done"}
    assert len(rows) == len(made)  # every object still has its delivery
    assert done <= received, "marked done but never received"
    assert 0 < len(done) < len(made)  # killed mid-run, after a batch was recorded
    final = cli("forward", "--dest", dest(storescp), "--until-empty", "--spool", str(spool))
    assert final.returncode == 0, final.stderr
    assert set(storescp.received()) == set(made)
    check = Spool(spool, owner="test")
    counts = check.counts()  # the first run's history was pruned at the start (retention 0)
    assert counts["ready"] == counts["in_flight"] == counts["failed"] == 0
    assert not any((spool / "objects").rglob("*.dcm"))
    check.close()

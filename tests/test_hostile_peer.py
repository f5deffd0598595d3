"""The forwarder against a hostile DICOM peer (tests/hostile_peer.py) and a healthy storescp.

Findings of issue 9 reproduced here: a PACS that stops reading during a large object,
sends a PDU header and goes silent, trickles its response, or sends garbage hung the
sender for ever (a blocking write in the fast path, pynetdicom's DUL thread waiting for
the rest of a PDU); ``--timeout`` and SIGTERM were ignored and nothing was logged. Now
every exchange has deadlines, each problem is logged with the destination and the
delivery goes back to ``ready`` with the reason, a stop or timeout ends the run within a
few seconds whatever the peer does, and a healthy destination keeps receiving meanwhile.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import peers
import pytest
from hostile_peer import HostilePeer, Mode
from pydicom import dcmread
from test_forward import dest, fill_spool
from test_scu import cts, write_ct

from bridge.forward import tcp
from bridge.forward.runner import STOP_GRACE_S, Forwarder, RetryPolicy
from bridge.forward.scu import Destination, Sender, echo
from bridge.forward.status import Outcome, Result
from bridge.spool.store import Job, ObjectInfo, Spool

HOSTILE = [Mode.STOP_READING, Mode.SILENT_AFTER_HEADER, Mode.TRICKLE, Mode.GARBAGE]
SHORT = {"connect_timeout": 2.0, "acse_timeout": 2.0, "dimse_timeout": 3.0, "network_timeout": 1.0}
# what the forwarder says about each peer (the delivery's reason and a WARNING line)
SYMPTOM = {
    Mode.STOP_READING: "it stopped reading",
    Mode.SILENT_AFTER_HEADER: "of a PDU body within the network timeout",
    Mode.TRICKLE: "of a PDU header within the network timeout",
    Mode.GARBAGE: "unknown PDU type 0x99 (garbage)",
}
# A stop, a timeout: the workers get STOP_GRACE_S to finish, then their connections are
# shut down and run() waits as long again; 1.5 s more for a busy machine.
STOP_BOUND = 2 * STOP_GRACE_S + 1.5


def big_object(spool: Spool, tmp_path: Path) -> str:
    """A 16 MB CT object, more than the kernel buffers of both ends hold, put in the spool."""
    item = write_ct(tmp_path / "big.dcm", size=2900)
    info = ObjectInfo(item.sop_instance_uid, item.sop_class_uid, item.transfer_syntax, "CT")
    spool.put(item.path.read_bytes(), info)
    return item.sop_instance_uid


def hostile_spool(tmp_path: Path, mode: Mode) -> tuple[Spool, set[str]]:
    spool = Spool(tmp_path / "spool")
    uids = set()
    if mode is Mode.STOP_READING:  # sent first: the peer stops reading in its middle
        uids.add(big_object(spool, tmp_path))
    return spool, uids | fill_spool(spool, tmp_path / "src", 4)


def open_sockets() -> set[str]:
    """The sockets this process has open (``socket:[inode]``), from /proc/self/fd."""
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile (e.g. the one listdir used)
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def peer_for(mode: Mode) -> HostilePeer:
    # a trickle faster than the network timeout: only a bound on the whole PDU stops it
    return HostilePeer(mode, interval=0.3, lifetime=60)


def test_the_hostile_peer_behaves_for_a_real_sender(tmp_path: Path) -> None:
    items = cts(tmp_path, 3)
    with HostilePeer(Mode.BEHAVE, lifetime=30) as peer:
        target = Destination(peer.ae_title, peer.host, peer.port)
        assert echo(target) >= 0
        with Sender(target) as sender:
            results = sender.send(items)
    assert [r.outcome for r in results] == [Outcome.DONE] * 3
    assert peer.stored == [i.sop_instance_uid for i in items]


@pytest.mark.parametrize("mode", HOSTILE, ids=lambda m: m.value)
def test_hostile_peer_is_logged_retried_and_the_healthy_destination_receives(
    mode: Mode, tmp_path: Path, storescp: peers.StoreSCPPeer, caplog: pytest.LogCaptureFixture
) -> None:
    spool, uids = hostile_spool(tmp_path, mode)
    with peer_for(mode) as peer:
        hostile = Destination(peer.ae_title, peer.host, peer.port, **SHORT)
        healthy = dest(storescp)
        # max_lost 0: this test is about the retry; the quarantine has tests of its own
        policy = RetryPolicy(base=0.2, cap=0.5, max_lost=0)
        retried: list[str] = []  # the reasons of the hostile destination's retries

        def seen(name: str, _job: Job, result: Result) -> None:
            if name == hostile.name and result.outcome is Outcome.RETRY:
                retried.append(result.reason)

        forwarder = Forwarder(spool, [hostile, healthy], policy=policy, on_result=seen)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="bridge.forward"):
            forwarder.run(threading.Event(), timeout=6.0)
        elapsed = time.monotonic() - started
    assert elapsed < 6.0 + STOP_BOUND
    assert peer.requests and not peer.stored  # it was sent to, and never answered
    assert set(storescp.received()) == uids  # the healthy destination got everything
    assert spool.counts(healthy.name)["done"] == len(uids)
    counts = spool.counts(hostile.name)
    assert counts == {"ready": len(uids), "in_flight": 0, "done": 0, "failed": 0}
    tried = [r for r in spool.deliveries(destination=hostile.name) if r.attempts]
    assert tried and all(r.last_error for r in tried)
    assert any(SYMPTOM[mode] in reason for reason in retried), retried
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and hostile.name in r.getMessage()
    ]
    assert any(SYMPTOM[mode] in line for line in logged), logged


@pytest.mark.parametrize("mode", HOSTILE, ids=lambda m: m.value)
def test_timeout_ends_the_run_within_seconds_whatever_the_peer_does(
    mode: Mode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool, uids = hostile_spool(tmp_path, mode)
    sockets = open_sockets()
    with peer_for(mode) as peer:
        hostile = Destination(peer.ae_title, peer.host, peer.port)  # 30-60 s timeouts
        forwarder = Forwarder(spool, [hostile])
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="bridge.forward"):
            forwarder.run(threading.Event(), timeout=2.0)
        elapsed = time.monotonic() - started
        assert peer.requests
    assert elapsed < 2.0 + STOP_BOUND
    assert open_sockets() <= sockets  # every connection closed, not only shut down
    counts = spool.counts(hostile.name)
    assert counts == {"ready": len(uids), "in_flight": 0, "done": 0, "failed": 0}
    rows = spool.deliveries(destination=hostile.name)
    assert all(r.last_error for r in rows), "every delivery says why it is not done"
    # The peer's own symptom ends an exchange before the stop can, for a peer that answers
    # at once (garbage); the others still hold an object when the stop comes.
    stopped = [r for r in rows if "forwarding stopped" in (r.last_error or "")]
    if mode is not Mode.GARBAGE:
        assert stopped, [r.last_error for r in rows]
    # due again at once: the stop was not the objects' fault
    assert all(r.next_attempt <= time.time() for r in stopped)
    assert any(hostile.name in r.getMessage() for r in caplog.records)


def test_stop_event_interrupts_a_stalled_write(tmp_path: Path) -> None:
    spool, _ = hostile_spool(tmp_path, Mode.STOP_READING)
    stop = threading.Event()
    with peer_for(Mode.STOP_READING) as peer:
        forwarder = Forwarder(spool, [Destination(peer.ae_title, peer.host, peer.port)])
        timer = threading.Timer(1.5, stop.set)
        timer.start()
        started = time.monotonic()
        try:
            forwarder.run(stop)
        finally:
            timer.join()
        elapsed = time.monotonic() - started
        assert peer.requests
    assert elapsed < 1.5 + STOP_BOUND
    assert spool.counts()["in_flight"] == 0


@pytest.mark.parametrize("how", ["sigterm", "timeout"])
@pytest.mark.parametrize("mode", [Mode.STOP_READING, Mode.TRICKLE], ids=lambda m: m.value)
def test_forward_command_obeys_sigterm_and_timeout(mode: Mode, how: str, tmp_path: Path) -> None:
    spool, uids = hostile_spool(tmp_path, mode)
    spool.close()
    with peer_for(mode) as peer:
        argv = [
            sys.executable, "-m", "bridge.cli", "forward", "--spool", str(tmp_path / "spool"),
            "--dest", peer.address,
        ]  # fmt: skip
        if how == "timeout":
            argv += ["--timeout", "3"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not peer.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert peer.requests, "the forwarder never reached the peer"
            time.sleep(0.5)  # well into the stalled exchange
            asked = time.monotonic()
            if how == "sigterm":
                process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=30)
            ended = time.monotonic()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if how == "sigterm":
        assert ended - asked < STOP_BOUND + 1.0, err  # + the interpreter's exit
        assert process.returncode == 0, err  # a clean stop
        assert "SIGTERM: stopping" in err
    else:
        assert ended - asked < 3.0 + STOP_BOUND + 1.0, err
        assert process.returncode == 1, err  # objects remain
    assert peer.address in err  # the summary line, and the log
    counts = Spool(tmp_path / "spool").counts()
    assert counts["in_flight"] == 0 and counts["ready"] == len(uids)


def test_peer_aborting_on_one_object_marks_only_that_one_lost(tmp_path: Path) -> None:
    items = cts(tmp_path, 4)
    poison = items[1].sop_instance_uid
    with (
        HostilePeer(Mode.ABORT_ON, abort_uid=poison, lifetime=30) as peer,
        Sender(Destination(peer.ae_title, peer.host, peer.port, **SHORT)) as sender,
    ):
        results = sender.send(items)
        again = sender.send(items[2:])  # a new association: the rest go through
    assert [r.outcome for r in results] == [Outcome.DONE] + [Outcome.RETRY] * 3
    assert [r.lost for r in results] == [False, True, False, False]
    assert [r.outcome for r in again] == [Outcome.DONE, Outcome.DONE]
    assert peer.stored == [items[0].sop_instance_uid] + [i.sop_instance_uid for i in items[2:]]


def test_object_the_peer_keeps_aborting_on_is_quarantined_after_max_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    uids = fill_spool(spool, tmp_path / "src", 6)
    poison = sorted(uids)[2]
    with HostilePeer(Mode.ABORT_ON, abort_uid=poison, lifetime=60) as peer:
        target = Destination(peer.ae_title, peer.host, peer.port, **SHORT)
        policy = RetryPolicy(base=0.1, cap=0.2, max_attempts=0, max_lost=3)
        forwarder = Forwarder(spool, [target], policy=policy)
        forwarder.run(threading.Event(), until_empty=True, timeout=30)
    assert sorted(peer.stored) == sorted(uids - {poison})
    assert peer.requests.count(poison) == 3
    [failed] = spool.deliveries(state="failed")
    assert failed.sop_instance_uid == poison
    assert "association lost 3 times while sending this object" in (failed.last_error or "")
    assert spool.counts(target.name) == {"ready": 0, "in_flight": 0, "done": 5, "failed": 1}


def test_a_pdu_length_beyond_the_read_bound_drops_the_connection(tmp_path: Path) -> None:
    garbage = b"\x04\x00\xff\xff\xff\xf0"  # a P-DATA-TF announcing almost 4 GB
    with HostilePeer(Mode.GARBAGE, garbage=garbage, lifetime=30) as peer:
        target = Destination(peer.ae_title, peer.host, peer.port, **SHORT)
        with Sender(target) as sender:
            [result] = sender.send(cts(tmp_path, 1))
    assert result.outcome is Outcome.RETRY and result.lost
    assert f"more than {tcp.MAX_PDU_READ}" in result.reason


def test_socket_deadline_hook_is_in_place(storescp: peers.StoreSCPPeer, tmp_path: Path) -> None:
    """What the deadlines rely on in pynetdicom 3.0.x (bridge/forward/tcp.py): our socket
    is the association's, and once connected it has the network timeout (pynetdicom
    clears it). If this fails, re-read tcp.py against the installed pynetdicom."""
    assert tcp.hook_problems() == []
    target = Destination(storescp.ae_title, storescp.host, storescp.port, network_timeout=7.0)
    with Sender(target) as sender:
        assert all(r.ok for r in sender.send(cts(tmp_path, 1)))
        wrapper = sender._assoc.dul.socket
        assert isinstance(wrapper, tcp.TunedAssociationSocket)
        assert wrapper.socket.gettimeout() == 7.0
    received = storescp.received()
    assert len(received) == 1
    assert dcmread(next(iter(received.values()))).Modality == "CT"

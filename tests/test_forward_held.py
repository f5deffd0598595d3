"""Permanent failures are told apart (issue 11, item 3); unserved destinations are named
(item 2).

Findings: an association rejected permanently (a called AE title the PACS does not
know) or a host name that does not exist was retried for ever as a transient failure,
so ``send`` never returned and nothing said the destination could not work; a
destination registered in the spool that no forwarder served was never mentioned.

Real peers: DCMTK ``dcmqrscp`` (it checks the called AE title, and rejects an
association beyond its limit as transient), DCMTK ``storescp --refuse``; the host name
is under the reserved ``.invalid`` TLD, which never resolves (RFC 2606).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import peers
import pytest
from pynetdicom import AE

from bridge.forward.runner import Forwarder, RetryPolicy
from bridge.forward.scu import Destination, Item, Sender
from bridge.spool.store import Hold, ObjectInfo, Spool

DEADLINE_S = 90.0  # only to catch the old behaviour: waiting for ever
UNKNOWN_HOST = "pacs.acrnema-bridge-test.invalid"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _report(spool: Path) -> dict[str, dict[str, object]]:
    """``spool destinations --json`` as another process sees it, by name."""
    done = _cli("spool", "destinations", "--json", "--spool", str(spool))
    assert done.returncode == 0, done.stderr
    return {d["name"]: d for d in json.loads(done.stdout)}


def _lines(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "sc.dcm"
    path.parent.mkdir()
    peers.write_secondary_capture(path)
    return path


@pytest.fixture
def dcmqrscp(tmp_path: Path, loopback_shim: Path) -> Iterator[peers.StoreSCPPeer]:
    server = peers.start_dcmqrscp(tmp_path / "qr", loopback_shim, max_associations=1)
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ classification


def test_rejections_are_classified_per_ps3_8() -> None:
    from bridge.forward.status import classify_rejection

    called = classify_rejection(1, 1, 7)
    assert called.permanent
    assert called.text == "rejected-permanent, service-user: called-AE-title-not-recognized"
    assert classify_rejection(1, 1, 3).permanent  # calling AE title not recognized
    assert classify_rejection(1, 2, 2).permanent  # protocol version not supported
    assert not classify_rejection(2, 1, 7).permanent  # the peer says: try again
    assert not classify_rejection(2, 3, 2).permanent  # local limit exceeded
    # load passes, whatever the result says (DCMTK: permanent + temporary congestion)
    assert not classify_rejection(1, 3, 1).permanent
    assert not classify_rejection(9, 9, 9).permanent  # outside the table: as before
    assert classify_rejection(9, 9, 9).text == "result 9, source 9: reason 9"


# ------------------------------------------------------------------ held destinations


def test_send_to_an_unknown_called_ae_returns_and_the_hold_is_visible(
    tmp_path: Path, image: Path, dcmqrscp: peers.StoreSCPPeer
) -> None:
    spool = tmp_path / "spool"
    dest = f"WRONG@127.0.0.1:{dcmqrscp.port}"
    done = _cli("send", str(image), "--dest", dest, "--spool", str(spool))
    assert done.returncode == 1, done.stderr
    errors = _lines(done.stderr, "ERROR")
    assert len(errors) == 1, done.stderr  # one ERROR line, not one per object or retry
    assert dest in errors[0] and "called-AE-title-not-recognized" in errors[0]
    said = [line for line in done.stderr.splitlines() if line.startswith(f"{dest}: held")]
    assert len(said) == 1 and "called-AE-title-not-recognized" in said[0], done.stderr
    assert "Traceback" not in done.stderr

    entry = _report(spool)[dest]  # from another process
    held = entry["held"]
    assert isinstance(held, dict), entry
    assert "rejected-permanent" in held["reason"] and "called-AE" in held["reason"]
    assert held["next_attempt"] >= held["since"] + 250  # forward.hold_retry, 300 s
    assert entry["counts"] == {"ready": 1, "in_flight": 0, "done": 0, "failed": 0}
    text = _cli("spool", "destinations", "--spool", str(spool))
    assert "HELD since" in text.stdout and "called-AE-title-not-recognized" in text.stdout


def test_an_unresolvable_host_is_held_not_retried_for_ever(
    tmp_path: Path, image: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # in-process: the CLI may refuse such a host before it starts; run does not (a name
    # server down at boot must not stop the link), and a name can stop resolving later
    destination = Destination("PACS", UNKNOWN_HOST, 104)
    name = destination.name
    root = tmp_path / "spool"
    spool = Spool(root, owner="test", create=True)
    try:
        spool.register([name])
        spool.put(image.read_bytes(), ObjectInfo("1.2.3.4", "1.2.840.10008.5.1.4.1.1.7", "1.2"))
        forwarder = Forwarder(spool, [destination], policy=RetryPolicy(max_attempts=1))
        caplog.set_level(logging.INFO, logger="bridge")
        started = time.monotonic()
        summary = forwarder.run(threading.Event(), until_empty=True, timeout=DEADLINE_S)
        assert time.monotonic() - started < DEADLINE_S / 2  # returned: not the timeout
        assert f"cannot resolve {UNKNOWN_HOST}" in summary.held[name]
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and f"cannot resolve {UNKNOWN_HOST}" in errors[0], errors
        assert not any(r.exc_info for r in caplog.records)  # no traceback
        assert spool.counts(name) == {"ready": 1, "in_flight": 0, "done": 0, "failed": 0}
    finally:
        spool.close()
    held = _report(root)[name]["held"]  # from another process
    assert isinstance(held, dict) and f"cannot resolve {UNKNOWN_HOST}" in held["reason"]


def test_a_held_destination_is_tried_on_the_slow_schedule_and_released(
    tmp_path: Path, loopback_shim: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refusing = peers.start_storescp(tmp_path / "refusing", loopback_shim, extra=["--refuse"])
    port = refusing.port
    destination = Destination("STORESCP", "127.0.0.1", port, connect_timeout=30, acse_timeout=30)
    name = destination.name
    spool = Spool(tmp_path / "spool", owner="test", create=True)
    spool.register([name])
    image = tmp_path / "sc.dcm"
    ds = peers.write_secondary_capture(image)
    info = ObjectInfo(ds.SOPInstanceUID, ds.SOPClassUID, ds.file_meta.TransferSyntaxUID, "OT")
    spool.put(image.read_bytes(), info)
    # max_attempts 1 would quarantine a transient failure at once: a hold never does
    policy = RetryPolicy(max_attempts=1, hold_retry=1.0)
    forwarder = Forwarder(spool, [destination], policy=policy)
    stop = threading.Event()
    worker = threading.Thread(target=forwarder.run, args=(stop,), name="test-forwarder")
    caplog.set_level(logging.INFO, logger="bridge")
    worker.start()
    try:
        tries: list[float] = []
        deadline = time.monotonic() + 30
        while len(tries) < 3 and time.monotonic() < deadline:
            hold = spool.hold_of(name)
            if hold is not None and hold.next_attempt not in tries:
                tries.append(hold.next_attempt)
            time.sleep(0.05)
        # tried again, on the hold_retry schedule
        assert len(tries) == 3, (tries, spool.destination_report(), caplog.text)
        assert tries[2] - tries[0] >= 1.5
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "held" in errors[0].getMessage(), errors
        assert "rejected-permanent" in errors[0].getMessage()
        assert spool.counts(name) == {"ready": 1, "in_flight": 0, "done": 0, "failed": 0}

        refusing.stop()  # the PACS is mended: the next try delivers and ends the hold
        mended = peers.start_storescp(tmp_path / "mended", loopback_shim, port=port)
        try:
            deadline = time.monotonic() + 30
            while spool.counts(name)["done"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert spool.counts(name)["done"] == 1
            assert ds.SOPInstanceUID in mended.received()
            assert spool.hold_of(name) is None
            assert any("no longer held" in r.getMessage() for r in caplog.records)
            assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
        finally:
            stop.set()
            worker.join(30)
            mended.stop()
    finally:
        stop.set()
        worker.join(30)
        refusing.stop()
        spool.close()
    assert not worker.is_alive()
    assert forwarder.summary.held == {}


def test_a_rejection_read_after_the_close_is_still_a_rejection(
    tmp_path: Path, loopback_shim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding (while testing holds): DCMTK sends its A-ASSOCIATE-RJ and closes at once;
    when pynetdicom's reactor handles both before the requesting thread looks (a loaded
    machine: 17 of 60 requests), pynetdicom reports a failed connection, and the bridge
    called a permanent rejection "closed the connection" (transient). The requesting
    thread is slowed here so that the reactor always wins (fault injection on the real
    stack, as load does)."""
    from pynetdicom.acse import ACSE

    send_request = ACSE.send_request

    def slow_send_request(self: ACSE) -> None:
        send_request(self)
        time.sleep(0.5)  # the reactor connects, sends, reads the RJ and closes meanwhile

    monkeypatch.setattr(ACSE, "send_request", slow_send_request)
    refusing = peers.start_storescp(tmp_path / "refusing", loopback_shim, extra=["--refuse"])
    try:
        destination = Destination("STORESCP", "127.0.0.1", refusing.port)
        with Sender(destination) as sender:
            [result] = sender.send([Item.from_file(_image(tmp_path))])
    finally:
        refusing.stop()
    assert result.hold, result
    assert "rejected-permanent, service-user: no-reason-given" in result.reason


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "one.dcm"
    peers.write_secondary_capture(path)
    return path


# --------------------------------------------------------- transient stays transient


def test_a_transient_rejection_is_retried_not_held(
    tmp_path: Path, image: Path, dcmqrscp: peers.StoreSCPPeer
) -> None:
    spool = tmp_path / "spool"
    dest = f"{dcmqrscp.ae_title}@127.0.0.1:{dcmqrscp.port}"
    assert _cli("spool", "add", str(image), "--spool", str(spool)).returncode == 0
    ae = AE("OCCUPIER")
    ae.add_requested_context("1.2.840.10008.1.1")
    busy = ae.associate("127.0.0.1", dcmqrscp.port, ae_title=dcmqrscp.ae_title)
    assert busy.is_established  # the one association dcmqrscp allows
    try:
        time.sleep(0.5)  # dcmqrscp counts its child once it has forked
        done = _cli(
            "forward", "--until-empty", "--timeout", "4", "--dest", dest, "--spool", str(spool)
        )
    finally:
        busy.release()
    assert done.returncode == 1, done.stderr  # stopped by --timeout, the object remains
    assert "held" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert _report(spool)[dest]["held"] is None
    # the failure at WARNING, once per interval (the stop may record the last error)
    tries = _lines(done.stderr, f"WARNING bridge.forward.runner: {dest}: deliveries failing")
    assert tries, done.stderr
    assert all("rejected-transient" in t and "local-limit-exceeded" in t for t in tries)
    delivered = _cli("forward", "--until-empty", "--dest", dest, "--spool", str(spool))
    assert delivered.returncode == 0, delivered.stderr


def test_a_refused_connection_is_retried_not_held(tmp_path: Path, image: Path) -> None:
    spool = tmp_path / "spool"
    dest = f"PACS@127.0.0.1:{peers.free_port()}"  # nothing listens: connection refused
    done = _cli("send", str(image), "--timeout", "3", "--dest", dest, "--spool", str(spool))
    assert done.returncode == 1, done.stderr
    assert "held" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    entry = _report(spool)[dest]
    assert entry["held"] is None and entry["counts"]["ready"] == 1
    # the failure at WARNING, once per interval (the stop may record the last error)
    tries = _lines(done.stderr, f"WARNING bridge.forward.runner: {dest}: deliveries failing")
    assert tries and all(f"cannot connect to {dest}" in t for t in tries), done.stderr


# ----------------------------------------------------------- unserved destinations

OLD = "OLD@127.0.0.1:104"


def _spool_for_old(root: Path) -> None:
    spool = Spool(root, owner="test", create=True)
    try:
        spool.register([OLD])
        spool.put(
            b"x" * 64, ObjectInfo("1.2.3.4", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1")
        )
    finally:
        spool.close()


def test_forward_warns_about_registered_destinations_it_does_not_serve(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    _spool_for_old(spool)
    new = f"NEW@127.0.0.1:{peers.free_port()}"
    done = _cli("forward", "--timeout", "1", "--dest", new, "--spool", str(spool))
    warned = _lines(done.stderr, "not served by this process")
    assert len(warned) == 1, done.stderr
    assert " WARNING " in warned[0] and OLD in warned[0]
    assert "drop-destination" in warned[0] and "1 deliveries wait" in warned[0]
    assert new not in warned[0]


@pytest.mark.parametrize("dests", [[], ["--dest", "NEW@127.0.0.1:9"]], ids=["none", "other"])
def test_run_warns_about_registered_destinations_it_does_not_serve(
    tmp_path: Path, dests: list[str]
) -> None:
    spool = tmp_path / "spool"
    _spool_for_old(spool)
    port = peers.free_port()
    with peers.bridge_service(port, "--spool", str(spool), *dests) as service:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    warned = _lines(stderr, "not served by this process")
    assert len(warned) == 1, stderr
    assert " WARNING " in warned[0] and OLD in warned[0]


def test_a_spool_made_before_holds_gets_the_hold_columns(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    _spool_for_old(root)
    with sqlite3.connect(root / "spool.db") as db:  # the destinations table of before
        for column in ("held_since", "held_reason", "held_next"):
            db.execute(f"ALTER TABLE destinations DROP COLUMN {column}")
    spool = Spool(root, owner="test")
    try:
        assert spool.hold_of(OLD) is None
        assert spool.hold(OLD, "rejected", 2.0e9, now=1.0e9) == Hold("rejected", 1.0e9, 2.0e9)
        assert spool.hold(OLD, "again", 3.0e9, now=2.0e9) == Hold("again", 1.0e9, 3.0e9)
        assert spool.destination_report()[0]["held"] == {
            "reason": "again",
            "since": 1.0e9,
            "next_attempt": 3.0e9,
        }
        spool.unhold(OLD)
        assert spool.hold_of(OLD) is None
    finally:
        spool.close()

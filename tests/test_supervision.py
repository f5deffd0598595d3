"""Supervision, seen from outside (issue 11, item 1): what an operator's log shows.

* A thread that dies of an uncaught exception, in ``run`` or ``forward``, is one ERROR
  record of the log (one JSON line in JSON mode), never a raw traceback on stderr.
* A spool on a real tmpfs that fills while the scanner sends and the PACS is down: the
  scanner is told failure for what could not be spooled and success only for what was;
  once space is freed and the PACS starts, every image acknowledged is delivered, with
  the same service process still running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import peers
import pytest
from hostile_peer import HostilePeer, Mode

from bridge.forward.runner import STOP_GRACE_S
from bridge.spool.store import Spool
from bridge.testing.phantom import phantom_images

# The child runs the real command line; the one thing the test changes is that each
# forwarding worker's body raises at once, as a bug in it would: an exception that no code
# of the worker catches, so it reaches threading.excepthook.
CRASHING_WORKERS = """
import sys
from bridge.forward import runner

def crash(self, destination, until_empty):
    raise RuntimeError("worker bug, injected by the test")

runner.Forwarder._serve = crash
from bridge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _child(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKERS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _json_lines(err: str) -> list[dict[str, object]]:
    """Every log record of ``err``; a line that is not a JSON object fails the test,
    except the CLI's own summary lines (``run: ...``, ``acrnema-bridge: ...``)."""
    records = []
    for line in err.splitlines():
        if not line.strip() or line.startswith(("run: ", "acrnema-bridge: ", "PACS@")):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}\n--- stderr:\n{err}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _crash_record(records: list[dict[str, object]]) -> dict[str, object]:
    crashes = [r for r in records if "worker bug" in str(r.get("message", ""))]
    assert crashes, records
    record = crashes[0]
    assert record["level"] in ("ERROR", "CRITICAL")
    assert "forward-PACS@" in str(record["message"])  # the thread is named
    assert "RuntimeError" in str(record.get("exception", ""))
    return record


def test_a_thread_crash_in_run_is_one_json_error_line(tmp_path: Path) -> None:
    """Finding: an exception escaping a worker thread of `run` printed Python's raw
    'Exception in thread ...' traceback on stderr, around the JSON log lines."""
    port, pacs = peers.free_port(), peers.free_port()
    service = _child(
        [
            "--log-format",
            "json",
            "run",
            "--port",
            f"tcp-listen://127.0.0.1:{port}",
            "--spool",
            str(tmp_path / "spool"),
            "--dest",
            f"PACS@127.0.0.1:{pacs}",
        ]
    )
    try:
        _, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert "Exception in thread" not in err
    _crash_record(_json_lines(err))
    # forwarding ended on its own: the service stopped taking images and says so (exit 1)
    assert service.returncode == 1, err


def test_a_thread_crash_in_forward_is_one_json_error_line(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    peers.write_secondary_capture(tmp_path / "sc.dcm")
    added = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "spool", "add", "--spool", str(spool)]
        + [str(tmp_path / "sc.dcm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    forward = _child(
        ["--log-format", "json", "forward", "--spool", str(spool), "--until-empty"]
        + ["--dest", f"PACS@127.0.0.1:{peers.free_port()}", "--timeout", "30"]
    )
    try:
        _, err = forward.communicate(timeout=60)
    finally:
        if forward.poll() is None:
            forward.kill()
            forward.communicate()
    assert "Exception in thread" not in err
    _crash_record(_json_lines(err))
    assert forward.returncode == 1, err


def test_a_thread_crash_in_text_mode_is_an_error_record(tmp_path: Path) -> None:
    port, pacs = peers.free_port(), peers.free_port()
    service = _child(
        ["run", "--port", f"tcp-listen://127.0.0.1:{port}", "--spool", str(tmp_path / "s")]
        + ["--dest", f"PACS@127.0.0.1:{pacs}"]
    )
    try:
        _, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert "Exception in thread" not in err
    lines = err.splitlines()
    crash = [n for n, line in enumerate(lines) if "worker bug" in line]
    assert crash, err
    first = lines[crash[0]]
    # the record's line: its timestamp, then its level and logger
    assert first.split(" ", 1)[1].startswith("ERROR bridge") and "forward-PACS@" in first, err


def test_an_uncaught_error_in_the_main_thread_is_one_json_record(tmp_path: Path) -> None:
    """The same for the command's own thread: a bug there is logged, exit status 1."""
    script = CRASHING_WORKERS.replace(
        "runner.Forwarder._serve = crash",
        "from bridge import service\nservice.Bridge.run = lambda self, stop, **_: 1 / 0",
    )
    port = peers.free_port()
    done = subprocess.run(
        [sys.executable, "-c", script, "--log-format", "json", "run"]
        + ["--port", f"tcp-listen://127.0.0.1:{port}", "--spool", str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    records = _json_lines(done.stderr)
    [bug] = [r for r in records if "internal error" in str(r["message"])]
    assert bug["level"] == "CRITICAL" and "ZeroDivisionError" in str(bug["exception"])
    assert done.returncode == 1, done.stderr


# ------------------------------------------------------------ a full spool disk, end to end

RESERVE = 64 << 20  # what the spool keeps free for its database (Spool reserve_bytes)
IMAGE = 512  # 512 x 512 CT slices: about 0.5 MiB each once converted


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g} s")
        time.sleep(0.2)


def test_a_full_spool_disk_and_a_pacs_down_end_with_every_acknowledged_image_delivered(
    tmp_path: Path, loopback_shim: Path
) -> None:
    """A real tmpfs as the spool, filled by another writer while the scanner sends and
    the PACS is down: the scanner hears failure for each image that could not be spooled
    and success only for spooled ones; then the space is freed and the PACS started, the
    scanner resends what it kept, and every image acknowledged arrives at the PACS, with
    the same service process running throughout."""
    with peers.tmpfs(tmp_path / "disk", "72m") as disk:
        spool_dir = disk / "spool"
        port, pacs_port = peers.free_port(), peers.free_port()
        dest = f"STORESCP@127.0.0.1:{pacs_port}"
        images = phantom_images(8, rows=IMAGE)
        with peers.bridge_service(
            port, "--spool", str(spool_dir), "--dest", dest, "--backoff-cap", "1"
        ) as service:
            with peers.scanner_on(port, response_timeout=60.0) as scanner:
                first = scanner.send(images[:2])  # the PACS is down: spooled, waiting
                assert all(r.ok for r in first), [r.errors for r in first]
                # another writer fills the disk: room left for about two more images
                filler = disk / "filler"
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, free - RESERVE - int(2.5 * (1 << 20)))
                finally:
                    os.close(fd)
                second = scanner.send(images[2:])
                stored = [r for r in second if r.ok]
                refused = [i for i, r in zip(images[2:], second, strict=True) if not r.ok]
                assert stored and refused, [(r.ok, r.errors) for r in second]
                for result in second:
                    if not result.ok:  # told the truth: out of resources, with the reason
                        # (the link's error comment holds the start of the reason only)
                        assert any("A700" in e and "spool" in e for e in result.errors), (
                            result.errors
                        )
                assert service.poll() is None, "the service died on a full disk"
                filler.unlink()  # the space comes back
                pacs = peers.start_storescp(tmp_path / "pacs", loopback_shim, port=pacs_port)
                try:
                    third = scanner.send(refused)  # what the scanner kept, sent again
                    assert all(r.ok for r in third), [r.errors for r in third]
                    acknowledged = len(first) + len(stored) + len(third)
                    assert acknowledged == len(images)
                    _wait_for(
                        lambda: len(pacs.received()) >= acknowledged, "delivery of every image"
                    )
                finally:
                    pacs.stop()
            assert service.poll() is None, "the service was restarted or died"
            service.send_signal(signal.SIGTERM)
            _, err = service.communicate(timeout=60)
        assert service.returncode == 0, err
        assert "Traceback" not in err
        spool = Spool(spool_dir)
        try:
            rows = spool.deliveries(destination=dest)
        finally:
            spool.close()
    # one spool object per acknowledged image, none for a refused attempt; each one
    # delivered and at the PACS
    assert len(rows) == acknowledged
    assert {r.state for r in rows} == {"done"}
    assert {r.sop_instance_uid for r in rows} == set(pacs.received())


# ----------------------------------------------------------------------------- signals


def _sc_folder(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        peers.write_secondary_capture(folder / f"sc{n}.dcm")
    return folder


def _wait_in(log: Path, text: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r} in: {log.read_text(errors='replace')}"
        time.sleep(0.05)


def test_sighup_never_stops_forward(tmp_path: Path) -> None:
    """SIGHUP is logged and ignored by `forward` as by `run`; SIGTERM still stops it."""
    spool = tmp_path / "spool"
    source = _sc_folder(tmp_path / "src", 1)
    add = [sys.executable, "-m", "bridge.cli", "spool", "add", str(source), "--spool", str(spool)]
    assert subprocess.run(add, capture_output=True, timeout=60).returncode == 0
    dest = f"DOWN@127.0.0.1:{peers.free_port()}"  # nobody there: forward keeps retrying
    log = tmp_path / "forward.log"
    with log.open("w") as sink:
        forward = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "-v", "forward", "--spool", str(spool)]
            + ["--dest", dest, "--backoff-cap", "1"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    try:
        _wait_in(log, dest, forward)  # its forwarder runs: the handlers are in place
        forward.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert forward.poll() is None, "SIGHUP stopped forward"
        forward.send_signal(signal.SIGTERM)
        forward.wait(timeout=60)
    finally:
        if forward.poll() is None:
            forward.kill()
            forward.wait()
    err = log.read_text()
    assert forward.returncode == 0, err
    assert "SIGHUP ignored" in err and "Traceback" not in err


@pytest.mark.parametrize("mode", [Mode.SILENT_AFTER_HEADER, Mode.TRICKLE], ids=lambda m: m.value)
def test_sigterm_ends_send_within_seconds_with_a_hung_pacs(tmp_path: Path, mode: Mode) -> None:
    """`send` to a PACS that hangs in the middle of an exchange stops on SIGTERM within
    seconds (the forwarder's stop grace), the objects left ready in the spool."""
    source = _sc_folder(tmp_path / "src", 3)
    spool = tmp_path / "spool"
    with HostilePeer(mode, interval=0.3, lifetime=60) as pacs:
        send = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "send", str(source), "--spool", str(spool)]
            + ["--dest", pacs.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not pacs.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pacs.requests, "send never reached the PACS"
            time.sleep(0.5)  # well into the hung exchange
            asked = time.monotonic()
            send.send_signal(signal.SIGTERM)
            _, err = send.communicate(timeout=60)
            took = time.monotonic() - asked
        finally:
            if send.poll() is None:
                send.kill()
                send.communicate()
    assert took < 2 * STOP_GRACE_S + 5, f"send took {took:.1f} s to stop: {err}"
    assert "SIGTERM: stopping" in err and "Traceback" not in err
    assert send.returncode == 1, err  # the objects are still to be delivered
    left = Spool(spool)
    try:
        counts = left.counts(pacs.address)
    finally:
        left.close()
    assert counts["in_flight"] == 0 and counts["ready"] == 3, counts

"""Logs fit for unattended use (issue 12, item 4), checked on real processes.

Every test here runs the real ``acrnema-bridge`` (``run`` or ``forward``) as a child
process, against the real DCMTK ``storescp`` and the scanner emulator where images
travel, and reads what the process wrote: timestamps on text lines, a log file reopened
on SIGHUP after logrotate's rename, plain lines for the journal, one summary line per
destination while it is down, an image followed by its SOP Instance UID, JSON lines only
in JSON mode, and a scanner's normal end of session at INFO.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peers
import pytest
from test_forward import fill_spool

from bridge.forward.runner import Forwarder, RetryPolicy
from bridge.forward.scu import Destination
from bridge.spool.store import Spool
from bridge.testing.phantom import phantom_images

LEVELS = "DEBUG|INFO|WARNING|ERROR|CRITICAL"
RECORD = re.compile(rf"\b({LEVELS}) (bridge|pynetdicom|pydicom|py\.warnings)[\w.]*: ")
STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) " + rf"({LEVELS}) ")


@contextlib.contextmanager
def service(
    port: int,
    *args: str,
    before: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    stderr: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """``acrnema-bridge BEFORE... run --port tcp-listen://127.0.0.1:PORT ARGS...``; yields
    once its link port listens; killed if still running when the block ends. Its stderr
    goes to the file ``stderr``, else to a temporary one that ``communicate`` reads."""
    argv = [sys.executable, "-m", "bridge.cli", *before, "run"]
    argv += ["--port", f"tcp-listen://127.0.0.1:{port}", *args]
    options: dict[str, Any] = {
        "stdout": subprocess.DEVNULL,
        "env": {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    }
    sink = stderr.open("w") if stderr is not None else None
    process: subprocess.Popen[str] = (
        subprocess.Popen(argv, stderr=sink, text=True, **options)
        if sink is not None
        else peers.LoggedProcess(argv, **options)
    )
    try:
        deadline = time.monotonic() + 30
        while not peers._port_open("127.0.0.1", port):
            assert process.poll() is None, "run exited before listening"
            assert time.monotonic() < deadline, "run: no listener"
            time.sleep(0.05)
        time.sleep(0.3)  # its signal handlers are in place once it serves
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
        for file in (sink, getattr(process, "log", None)):
            if file is not None:
                file.close()


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then what it wrote on stderr (empty when that went to a file)."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return err or ""


def wait_for(path: Path, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        assert time.monotonic() < deadline, f"no {text!r} in {path}:\n{content}"
        time.sleep(0.05)


def records(text: str) -> list[str]:
    """The log records among ``text``'s lines (not the CLI's closing summary)."""
    return [line for line in text.splitlines() if RECORD.search(line)]


# --------------------------------------------------------------------------- timestamps


def test_text_lines_carry_an_iso_8601_timestamp_with_offset_and_milliseconds(
    tmp_path: Path,
) -> None:
    """Finding: text log lines had no time at all ("INFO bridge.service: ...")."""
    port = peers.free_port()
    started = datetime.now(UTC)
    with service(port, "--spool", str(tmp_path / "spool")) as run:
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [result] = scanner.send(phantom_images(1, rows=64))
        err = stop(run)
    assert result.ok, result.errors
    lines = records(err)
    assert len(lines) >= 3, err
    for line in lines:
        match = STAMPED.match(line)
        assert match, f"no ISO 8601 timestamp: {line!r}"
        when = datetime.fromisoformat(match.group(1))
        assert when.tzinfo is not None
        assert started - timedelta(seconds=5) <= when <= datetime.now(UTC), line


# ------------------------------------------------------------------ log file and SIGHUP


def test_sighup_reopens_the_log_file_after_logrotate_renamed_it(tmp_path: Path) -> None:
    """Finding: there was no log file, and SIGHUP could reopen nothing. Now ``--log-file``
    writes there and SIGHUP reopens it: logrotate renames the file, sends SIGHUP, and the
    lines that follow go to a new file of the same name; no line is lost."""
    port = peers.free_port()
    log = tmp_path / "bridge.log"
    rotated = tmp_path / "bridge.log.1"
    spool = tmp_path / "spool"
    with service(port, "--spool", str(spool), before=("--log-file", str(log))) as run:
        wait_for(log, "serving the link")
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            first = scanner.send(phantom_images(2, rows=64))
        wait_for(log, "message 2 stored")
        log.rename(rotated)
        run.send_signal(signal.SIGHUP)
        wait_for(log, "reopened")  # a fresh file, made by the service
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            second = scanner.send(phantom_images(3, rows=64))
        wait_for(log, "message 3 stored")
        err = stop(run)
    assert all(r.ok for r in first + second)
    old, new = rotated.read_text(), log.read_text()
    assert "message 1 stored" in old and "message 2 stored" in old
    # the second session's messages are numbered 1 to 3 again: each is in the new file only
    assert new.count("stored: 1 object") == 3, new
    assert old.count("stored: 1 object") == 2, old
    assert "SIGHUP ignored" not in old + new
    assert not records(err), f"log records on stderr although --log-file was given:\n{err}"
    for line in records(old) + records(new):
        assert STAMPED.match(line), line


def test_sighup_reopens_the_log_file_of_forward_from_the_settings(tmp_path: Path) -> None:
    """``[logging] file`` (here ``BRIDGE_LOGGING_FILE``) works as ``--log-file`` does, for
    ``forward`` too."""
    spool = tmp_path / "spool"
    source = tmp_path / "src"
    source.mkdir()
    peers.write_secondary_capture(source / "sc.dcm")
    add = [sys.executable, "-m", "bridge.cli", "spool", "add", str(source), "--spool", str(spool)]
    assert subprocess.run(add, capture_output=True, timeout=60).returncode == 0
    log = tmp_path / "forward.log"
    dest = f"DOWN@127.0.0.1:{peers.free_port()}"
    forward = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "-v", "forward", "--spool", str(spool)]
        + ["--dest", dest, "--backoff-cap", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BRIDGE_LOGGING_FILE": str(log)},
    )
    try:
        wait_for(log, dest)
        log.rename(tmp_path / "forward.log.1")
        forward.send_signal(signal.SIGHUP)
        wait_for(log, "reopened")
        assert forward.poll() is None
        forward.send_signal(signal.SIGTERM)
        forward.communicate(timeout=60)
    finally:
        if forward.poll() is None:
            forward.kill()
            forward.communicate()
    assert forward.returncode == 0
    assert "stopping" in log.read_text()


# ---------------------------------------------------------------------------- journal


@pytest.mark.parametrize("matching", [True, False], ids=["journal", "other-stream"])
def test_under_systemd_lines_are_plain_with_a_priority(tmp_path: Path, matching: bool) -> None:
    """Finding: under systemd every line would carry a second timestamp. When
    ``JOURNAL_STREAM`` names stderr's own device and inode, lines are plain, each (the
    command's own lines too) with the ``<N>`` syslog priority prefix that the journal
    reads; any other stream (a
    terminal, a pipe, a file that is not the journal's) keeps its timestamps."""
    port = peers.free_port()
    err_file = tmp_path / "stderr.txt"
    err_file.touch()
    st = err_file.stat()
    stream = f"{st.st_dev}:{st.st_ino}" if matching else f"{st.st_dev}:{st.st_ino + 1}"
    env = {"JOURNAL_STREAM": stream}
    with service(port, "--spool", str(tmp_path / "spool"), env=env, stderr=err_file) as run:
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [result] = scanner.send(phantom_images(1, rows=64))
        stop(run)
    assert result.ok
    lines = records(err_file.read_text())
    assert lines, err_file.read_text()
    for line in lines:
        if matching:
            assert re.match(rf"^<[0-7]>({LEVELS}) ", line), line
        else:
            assert STAMPED.match(line), line
    if matching:
        assert any(line.startswith("<6>INFO ") for line in lines), lines
        # the command's own lines too: the stop and the closing summary
        text = err_file.read_text()
        assert "\n<6>acrnema-bridge: SIGTERM: stopping\n" in text, text
        assert "\n<6>run: 1 images stored" in text, text


# ------------------------------------------------------------------ a destination down


def test_a_destination_down_is_one_summary_line_per_interval_not_one_per_object(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Finding: while a destination was down, every object's every retry was a line, and
    every association attempt a few more (pynetdicom's own): 20 objects for 12 s with
    retries capped at 1 s made about 700 lines, a gigabyte over a weekend. Now the first
    failure is one WARNING line (reason, objects waiting, next attempt), then one line
    per interval (60 s) while it lasts; the count does not grow with the objects."""
    spool = tmp_path / "spool"
    source = tmp_path / "src"
    source.mkdir()
    count = 20
    for n in range(count):
        peers.write_secondary_capture(source / f"sc{n}.dcm")
    add = [sys.executable, "-m", "bridge.cli", "spool", "add", str(source), "--spool", str(spool)]
    assert subprocess.run(add, capture_output=True, timeout=60).returncode == 0
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    storescp.stop()  # the PACS is down
    forward = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "-v", "forward", "--spool", str(spool)]
        + ["--dest", dest, "--backoff-cap", "1", "--timeout", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = records(forward.stderr)
    about = [line for line in lines if dest in line or "pynetdicom" in line]
    assert len(about) <= 6, f"{len(about)} lines for {count} objects:\n" + "\n".join(about[:20])
    [first] = [line for line in about if " WARNING " in line]
    assert f"{count} objects waiting" in first and "next attempt" in first, first
    assert "cannot connect" in first, first  # the reason


def test_an_outage_is_one_line_per_interval_then_one_when_it_ends(
    tmp_path: Path, loopback_shim: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PACS down for a few intervals, then started: the forwarder says it is failing,
    then once per interval (with the tries since the last line), then that it delivers
    again; the objects' many retries are not lines of their own."""
    spool = Spool(tmp_path / "spool")
    count = 15
    uids = fill_spool(spool, tmp_path / "src", count)
    port = peers.free_port()
    pacs = Destination("STORESCP", "127.0.0.1", port)
    policy = RetryPolicy(base=0.1, cap=0.3)
    forwarder = Forwarder(spool, [pacs], policy=policy, report_every=1.0)
    stop = threading.Event()
    worker = threading.Thread(target=forwarder.run, args=(stop,), kwargs={"timeout": 60})
    server = None
    try:
        with caplog.at_level(logging.DEBUG, logger="bridge.forward"):
            worker.start()
            time.sleep(3.5)  # down for three intervals and a half
            server = peers.start_storescp(tmp_path / "pacs", loopback_shim, port=port)
            deadline = time.monotonic() + 30
            while spool.counts(pacs.name)["done"] < count:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.1)
            stop.set()
            worker.join(timeout=30)
    finally:
        stop.set()
        worker.join(timeout=30)
        if server is not None:
            server.stop()
        spool.close()
    assert set(server.received()) == uids
    mine = [r for r in caplog.records if pacs.name in r.getMessage()]
    shown = [
        r.getMessage()
        for r in mine
        if r.levelno >= logging.INFO
        and "delivered" not in r.getMessage()
        and "association open" not in r.getMessage()
    ]
    retries = [r for r in mine if r.levelno == logging.DEBUG and "retry in" in r.getMessage()]
    assert len(retries) > 3 * count  # the objects were retried many times...
    assert "deliveries failing" in shown[0] and f"{count} objects waiting" in shown[0]
    still = [line for line in shown if "still failing" in line]
    assert 2 <= len(still) <= 4, shown  # ...and said so once a second
    assert all("tries failed since the last line" in line for line in still)
    assert "delivering again" in shown[-1], shown
    assert len(shown) == len(still) + 2, shown
    delivered = [r for r in mine if "delivered to" in r.getMessage()]
    assert len(delivered) == count and all(r.levelno == logging.INFO for r in delivered)


# ------------------------------------------------------------- one image by its UID


def test_grep_uid_follows_one_image_from_the_link_to_the_pacs(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Finding: the INFO lines of ``run`` named a link message number, never the image,
    and a delivery was not logged at all: nothing followed one image to the PACS."""
    port = peers.free_port()
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    log = tmp_path / "run.log"
    spool = str(tmp_path / "spool")
    with service(port, "--spool", spool, "--dest", dest, before=("--log-file", str(log))) as run:
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            results = scanner.send(phantom_images(3, rows=64))
        deadline = time.monotonic() + 30
        while len(storescp.received()) < 3:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for uid in storescp.received():
            wait_for(log, f"{uid} delivered to {dest}")
        stop(run)
    assert all(r.ok for r in results)
    content = log.read_text()
    for uid in storescp.received():
        trail = [line for line in content.splitlines() if uid in line]
        stages = ["received", "converted", "spooled", f"delivered to {dest}"]
        for stage in stages:
            assert any(stage in line for line in trail), f"{uid}: no {stage!r} in:\n{trail}"
        assert all(" INFO " in line for line in trail), trail
        # in order: link message, conversion, spool, delivery
        firsts = [next(i for i, ln in enumerate(trail) if stage in ln) for stage in stages]
        assert firsts == sorted(firsts), trail


# --------------------------------------------------------------------------- JSON mode


def test_json_mode_writes_nothing_but_json_lines(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Finding: in JSON mode the stop line ("SIGTERM: stopping") and the closing summary
    were plain text among the JSON records. Now every line of stderr is a JSON object,
    pynetdicom's records included."""
    port = peers.free_port()
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    spool = str(tmp_path / "spool")
    json_mode = ("-vv", "--log-format", "json")
    with service(port, "--spool", spool, "--dest", dest, before=json_mode) as run:
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [result] = scanner.send(phantom_images(1, rows=64))
        deadline = time.monotonic() + 30
        while not storescp.received():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        err = stop(run)
    assert result.ok
    entries = []
    for line in err.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= set(entry)
        entries.append(entry)
    loggers = {str(e["logger"]) for e in entries}
    assert any(name.startswith("pynetdicom") for name in loggers), loggers  # -vv: its lines
    messages = " ".join(str(e["message"]) for e in entries)
    assert "SIGTERM" in messages and "images stored" in messages


def test_json_mode_carries_library_warnings_and_python_warnings(tmp_path: Path) -> None:
    """pydicom and pynetdicom log through the standard ``logging`` tree and pydicom also
    warns with ``warnings.warn``: both reach the bridge's handler as JSON records, and no
    library writes to stderr on its own."""
    script = (
        "import argparse, logging, warnings\n"
        "import pydicom, pynetdicom\n"
        "from bridge.cli import _setup_logging\n"
        "from bridge.settings import LoggingSettings\n"
        "_setup_logging(argparse.Namespace(verbose=0), LoggingSettings(format='json'))\n"
        "warnings.warn('a pydicom-style warning', UserWarning)\n"
        "logging.getLogger('pydicom').error('pydicom error')\n"
        "try:\n"
        "    raise ValueError('bad PDU')\n"
        "except ValueError:\n"
        "    logging.getLogger('pynetdicom.dul').exception('DUL failed')\n"
        "logging.getLogger('pynetdicom.acse').error('Association Aborted')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    by_logger = {e["logger"]: e for e in entries}
    assert "a pydicom-style warning" in by_logger["py.warnings"]["message"]
    assert by_logger["pydicom"]["level"] == "ERROR"
    assert "ValueError: bad PDU" in by_logger["pynetdicom.dul"]["exception"]
    # pynetdicom's plain ERROR lines repeat what the bridge says with the destination's
    # name; they show with -vv only
    assert "pynetdicom.acse" not in by_logger


# ------------------------------------------------------- normal operation is not WARNING


def test_a_scanner_ending_its_session_normally_is_info(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Finding: every normal end of a scanner session logged "WARNING link down: the
    peer is gone", and the start line "serving the link on ..." was a WARNING too: an
    operator watching WARNING saw noise at every image batch."""
    port = peers.free_port()
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    with service(port, "--spool", str(tmp_path / "spool"), "--dest", dest) as run:
        for _ in range(2):
            with peers.scanner_on(port, response_timeout=30.0) as scanner:
                [result] = scanner.send(phantom_images(1, rows=64))
            assert result.ok
            time.sleep(0.5)  # the service sees the scanner go
        err = stop(run)
    lines = records(err)
    assert any("serving the link" in line and " INFO " in line for line in lines), err
    assert any("link down" in line and " INFO " in line for line in lines), err
    noisy = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    assert not noisy, "\n".join(noisy)

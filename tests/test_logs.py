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
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Scanner
from bridge.ports import open_port
from bridge.profile import Profile, profile_from_mapping, to_toml
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
    stdout: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """``acrnema-bridge BEFORE... run --port tcp-listen://127.0.0.1:PORT ARGS...``; yields
    once its link port listens; killed if still running when the block ends. Its stderr
    goes to the file ``stderr``, else to a temporary one that ``communicate`` reads; its
    stdout to the file ``stdout``, else nowhere."""
    argv = [sys.executable, "-m", "bridge.cli", *before, "run"]
    argv += ["--port", f"tcp-listen://127.0.0.1:{port}", *args]
    out = stdout.open("w") if stdout is not None else None
    options: dict[str, Any] = {
        "stdout": out if out is not None else subprocess.DEVNULL,
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
        for file in (sink, out, getattr(process, "log", None)):
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


def _spool_files(spool: Path, source: Path, count: int) -> list[str]:
    """Write ``count`` Secondary Captures into ``source`` and ``spool add`` them; their
    SOP Instance UIDs."""
    source.mkdir()
    uids = [
        str(peers.write_secondary_capture(source / f"sc{n}.dcm").SOPInstanceUID)
        for n in range(count)
    ]
    add = [sys.executable, "-m", "bridge.cli", "spool", "add", str(source), "--spool", str(spool)]
    assert subprocess.run(add, capture_output=True, timeout=60).returncode == 0
    return uids


def _lines(text: str, log_format: str) -> list[str]:
    """The lines of a log file; in JSON mode each must be one JSON object (its message)."""
    if log_format == "text":
        return text.splitlines()
    return [str(json.loads(line)["message"]) for line in text.splitlines()]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_with_a_log_file_run_writes_its_own_lines_there_across_a_rotation(
    tmp_path: Path, storescp: peers.StoreSCPPeer, log_format: str
) -> None:
    """Finding: with ``--log-file`` the log records went to the file but the command's own
    lines (the stop, the closing summary) still went to stderr. Now everything ``run``
    logs is in the file, and logrotate's move-then-SIGHUP loses or doubles no line:
    each image's lines are in the old file or the new one, once; the stop and the summary,
    said after the rotation, once in the new file; nothing on stderr or stdout."""
    port = peers.free_port()
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    log, rotated = tmp_path / "run.log", tmp_path / "run.log.1"
    err_file, out_file = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    before = ("--log-file", str(log), "--log-format", log_format)
    args = ("--spool", str(tmp_path / "spool"), "--dest", dest)
    images = phantom_images(5, rows=64)  # five slices, five SOP Instance UIDs
    with service(port, *args, before=before, stderr=err_file, stdout=out_file) as run:
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            first = scanner.send(images[:2])
        wait_for(log, "message 2 stored")
        log.rename(rotated)
        run.send_signal(signal.SIGHUP)
        wait_for(log, "reopened")
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            second = scanner.send(images[2:])
        deadline = time.monotonic() + 30
        while len(storescp.received()) < 5:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for uid in storescp.received():  # its line in the old file or the new one
            while f"{uid} delivered" not in rotated.read_text() + log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        stop(run)
    assert all(r.ok for r in first + second)
    assert err_file.read_text() == "", "stderr although --log-file was given"
    assert out_file.read_text() == ""
    old = _lines(rotated.read_text(), log_format)
    new = _lines(log.read_text(), log_format)
    for uid in storescp.received():
        said = [line for line in old + new if uid in line and "delivered to" in line]
        assert len(said) == 1, (uid, said)
    assert sum("stored: 1 object" in line for line in old) == 2, old
    assert sum("stored: 1 object" in line for line in new) == 3, new
    assert sum("message 3 stored" in line for line in new) == 1, new
    for text in ("SIGTERM: stopping", "run: 5 images stored"):
        assert sum(text in line for line in new) == 1, (text, new)
        assert not any(text in line for line in old), (text, old)
    if log_format == "text":
        assert all(STAMPED.match(line) for line in new), new


def test_with_a_log_file_forward_writes_its_own_lines_there_across_a_rotation(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """``forward`` with ``[logging] file``: the deliveries before logrotate's rename are in
    the old file, those after it (objects spooled meanwhile) in the new one, each once;
    the stop line and the per-destination summary in the new file; stderr stays empty."""
    spool = tmp_path / "spool"
    early = _spool_files(spool, tmp_path / "src1", 3)
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    log, rotated = tmp_path / "forward.log", tmp_path / "forward.log.1"
    err_file = tmp_path / "stderr.txt"
    with err_file.open("w") as sink:
        forward = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "-v", "forward", "--spool", str(spool)]
            + ["--dest", dest],
            stdout=sink,
            stderr=sink,
            text=True,
            env={**os.environ, "BRIDGE_LOGGING_FILE": str(log), "PYTHONUNBUFFERED": "1"},
        )
        try:
            for uid in early:
                wait_for(log, f"{uid} delivered")
            log.rename(rotated)
            forward.send_signal(signal.SIGHUP)
            wait_for(log, "reopened")
            late = _spool_files(spool, tmp_path / "src2", 2)
            for uid in late:
                wait_for(log, f"{uid} delivered")
            forward.send_signal(signal.SIGTERM)
            forward.communicate(timeout=60)
        finally:
            if forward.poll() is None:
                forward.kill()
                forward.communicate()
    assert forward.returncode == 0
    assert err_file.read_text() == "", "stderr although [logging] file was given"
    old, new = rotated.read_text().splitlines(), log.read_text().splitlines()
    for uid in early + late:
        said = [line for line in old + new if uid in line and "delivered to" in line]
        assert len(said) == 1, (uid, said)
        assert all(uid not in line for line in (new if uid in early else old)), uid
    for text in ("SIGTERM: stopping", f"{dest}: delivered 5 now"):
        assert sum(text in line for line in new) == 1, (text, new)
    assert all(STAMPED.match(line) for line in new), new


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


def test_under_systemd_json_lines_carry_the_priority_too(tmp_path: Path) -> None:
    """Finding: in JSON mode under systemd the lines had no ``<N>`` prefix, so the journal
    filed them all at its default priority (info) and ``journalctl -p err`` could not pick
    the errors out. Now each JSON line, the command's own too, starts with the priority of
    its level, which the journal strips (``SyslogLevelPrefix=``, on by default) and keeps
    as the entry's PRIORITY; what follows is the JSON object."""
    port = peers.free_port()
    err_file = tmp_path / "stderr.txt"
    err_file.touch()
    st = err_file.stat()
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    json_mode = ("--log-format", "json")
    spool = str(tmp_path / "spool")
    with service(port, "--spool", spool, env=env, stderr=err_file, before=json_mode) as run:
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [result] = scanner.send(phantom_images(1, rows=64))
        stop(run)
    assert result.ok
    levels = {f"<{n}>": name for name, n in (("DEBUG", 7), ("INFO", 6), ("WARNING", 4))}
    levels |= {"<3>": "ERROR", "<2>": "CRITICAL"}
    messages = []
    lines = err_file.read_text().splitlines()
    assert lines
    for line in lines:
        match = re.match(r"^(<[0-7]>)(\{.*)$", line)
        assert match, f"no priority prefix: {line!r}"
        entry = json.loads(match.group(2))
        assert entry["level"] == levels[match.group(1)], line
        messages.append(entry["message"])
    assert "acrnema-bridge: SIGTERM: stopping" in messages, messages
    assert any(m.startswith("run: 1 images stored") for m in messages), messages


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


def _only_json(what: str, text: str) -> list[dict[str, Any]]:
    """The JSON values of ``text``, one a line (objects; a ``--json`` list's items); a line
    that is not one fails the test."""
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{what}: not a JSON line: {line!r}")
        items = entry if isinstance(entry, list) else [entry]
        assert all(isinstance(e, dict) for e in items), f"{what}: not JSON objects: {line!r}"
        entries += items
    return entries


def _cli_json(*args: str, status: int = 0) -> list[dict[str, Any]]:
    """``acrnema-bridge --log-format json ARGS...``: its lines, stdout's then stderr's,
    each of which must be a JSON object; the exit status must be ``status``."""
    argv = [sys.executable, "-m", "bridge.cli", "--log-format", "json", *args]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    what = " ".join(args)
    assert done.returncode == status, f"{what}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return _only_json(f"{what} (stdout)", done.stdout) + _only_json(f"{what} (stderr)", done.stderr)


def test_json_mode_every_command_of_a_service_or_cron_writes_only_json(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Finding: in JSON mode only ``run``'s stderr was JSON; ``emulate``, ``send``,
    ``spool ...``, ``status`` and ``echo`` wrote plain lines (results, progress, counts)
    and ``--json`` documents spread over several lines, so a log shipper reading a cron
    job's or a service's output choked on them. Every command that runs under a service
    manager or cron, its results on stdout and its messages on stderr, writes JSON
    objects, one a line, in JSON mode (usage errors too)."""
    port, status_port = peers.free_port(), peers.free_port()
    url = f"http://127.0.0.1:{status_port}"
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    spool = str(tmp_path / "spool")
    listen = ("--status-listen", f"127.0.0.1:{status_port}")
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    json_mode = ("--log-format", "json")
    seen: dict[str, list[dict[str, Any]]] = {}
    with service(
        port, "--spool", spool, "--dest", dest, *listen, before=json_mode, stdout=out, stderr=err
    ) as run:
        link = f"tcp://127.0.0.1:{port}"
        seen["emulate"] = _cli_json("emulate", "--port", link, "--phantom", "2", "--size", "64")
        deadline = time.monotonic() + 30
        while len(storescp.received()) < 2:
            assert time.monotonic() < deadline, "2 objects at the PACS"
            time.sleep(0.1)
        seen["status"] = _cli_json("status", "--url", url)
        seen["status --json"] = _cli_json("status", "--url", url, "--json")
        for action in ("stats", "list", "destinations"):
            seen[action] = _cli_json("spool", action, "--spool", spool)
            seen[action + " --json"] = _cli_json("spool", action, "--spool", spool, "--json")
        seen["retry"] = _cli_json("spool", "retry", "--spool", spool)
        seen["purge"] = _cli_json("spool", "purge", "--spool", spool)
        seen["echo"] = _cli_json("echo", dest)
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)
        assert run.returncode == 0, err.read_text()
    seen["run"] = _only_json("run (stdout)", out.read_text()) + _only_json(
        "run (stderr)", err.read_text()
    )
    files = [str(p) for p in storescp.received().values()]
    other = str(tmp_path / "other")
    seen["send"] = _cli_json("send", *files, "--spool", other, "--dest", dest)
    seen["add"] = _cli_json("spool", "add", *files, "--spool", str(tmp_path / "third"))
    seen["forward"] = _cli_json("forward", "--until-empty", "--spool", other, "--dest", dest)
    seen["drop"] = _cli_json("spool", "drop-destination", dest, "--yes", "--spool", other)
    seen["rebuild"] = _cli_json("spool", "rebuild", "--spool", other, "--dest", dest)
    seen["no server"] = _cli_json("status", "--url", url, status=1)
    seen["usage"] = _cli_json("echo", dest, "--count", "0", status=2)
    # the results are there, as JSON: the counts, the health, the deliveries
    assert any("2 of 2 images stored" in str(e.get("message")) for e in seen["emulate"])
    assert any(e.get("status") == "healthy" for e in seen["status"]), seen["status"]
    assert any(e.get("status") == "healthy" for e in seen["status --json"])
    assert any(e.get("objects") == 2 for e in seen["stats --json"]), seen["stats --json"]
    listed = [e for e in seen["list"] if e.get("sop_instance_uid")]
    assert len(listed) == 2, seen["list"]
    assert any("success" in str(e.get("message")) for e in seen["echo"])
    assert any("--count" in str(e.get("message")) for e in seen["usage"])


# ------------------------------------------------------- normal operation is not WARNING


@contextlib.contextmanager
def _scanner(port: int, profile: Profile) -> Iterator[Scanner]:
    """An emulated scanner speaking ``profile`` to the service's link port."""
    link = open_port(f"tcp://127.0.0.1:{port}")
    try:
        scanner = Scanner(Endpoint(link, profile), attempts=1, response_timeout=30.0)
        yield scanner
        scanner.close(timeout=2.0)
    finally:
        link.close()


@pytest.mark.parametrize("session", ["pdus", "none"])
def test_a_scanner_ending_its_session_normally_is_info(
    tmp_path: Path, storescp: peers.StoreSCPPeer, session: str
) -> None:
    """Finding: every normal end of a scanner session logged "WARNING link down: the
    peer is gone", and the start line "serving the link on ..." was a WARNING too: an
    operator watching WARNING saw noise at every image batch. Finding (after
    ``session.mode = "none"`` came): with no session layer the session never leaves OPEN,
    so every scanner going away between images was a WARNING again; it is INFO unless
    part of a message had arrived. Finding: the start line "status server on URL" was a
    WARNING too (so that ``forward``, quiet below WARNING, showed it); it is the CLI's own
    line now, at INFO, shown whatever the level."""
    port = peers.free_port()
    dest = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    profile = profile_from_mapping({"name": f"session-{session}", "session": {"mode": session}})
    profile_file = tmp_path / "profile.toml"
    profile_file.write_text(to_toml(profile))
    spool = str(tmp_path / "spool")
    listen = f"127.0.0.1:{peers.free_port()}"
    options = ("--spool", spool, "--dest", dest, "--profile", str(profile_file))
    with service(port, *options, "--status-listen", listen) as run:
        for _ in range(2):
            with _scanner(port, profile) as scanner:
                [result] = scanner.send(phantom_images(1, rows=64))
            assert result.ok
            time.sleep(0.5)  # the service sees the scanner go
        err = stop(run)
    lines = records(err)
    assert any("serving the link" in line and " INFO " in line for line in lines), err
    assert any("link down" in line and " INFO " in line for line in lines), err
    assert f"status server on http://{listen}" in err, err
    noisy = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    assert not noisy, "\n".join(noisy)

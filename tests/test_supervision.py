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
import subprocess
import sys
from pathlib import Path

import peers
import pytest

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
    assert first.startswith("ERROR bridge") and "forward-PACS@" in first, err


def test_an_uncaught_error_in_the_main_thread_is_one_json_record(tmp_path: Path) -> None:
    """The same for the command's own thread: a bug there is logged, exit status 1."""
    script = CRASHING_WORKERS.replace(
        "runner.Forwarder._serve = crash",
        "from bridge import service\nservice.Bridge.run = lambda self, stop: 1 / 0",
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

"""Where the log lines of ``acrnema-bridge`` go and how they look (part of the CLI).

The library only logs (stdlib ``logging``, a ``NullHandler`` on ``bridge``); this module
installs the one handler a command writes through, chosen once at start-up:

* **text** on stderr, each line ``2026-12-06T14:03:07.412+01:00 LEVEL logger: message``:
  local time in ISO 8601 with its UTC offset and milliseconds, so lines from a night
  unattended can be put beside a PACS's or a scanner's;
* **the journal**: when systemd runs the service, ``JOURNAL_STREAM`` holds the device and
  inode of the stream it gave as stderr; if they are stderr's own, the journal adds its
  own timestamp, so the line is plain, with the ``<N>`` syslog priority prefix the
  journal reads (``journalctl -p warning`` then works), JSON lines too; a stderr
  redirected elsewhere (``2>file``) keeps its timestamps;
* **a file** (``--log-file FILE`` or ``[logging] file``), timestamped as text, appended
  to, and reopened on SIGHUP (:func:`reopen_log_file`): logrotate renames the file and
  sends SIGHUP, and the next line starts the new file; a line is written whole to one
  file or the other, never lost between them; the CLI's own lines (:func:`say`) go
  there too, and stderr stays empty;
* **JSON** (``--log-format json`` / ``[logging] format = "json"``): one object a line,
  ``time`` (UTC), ``level``, ``logger``, ``message`` and ``exception`` when there is one,
  on stderr or in the file; the CLI's own lines (the stop, the closing summary, errors,
  progress) are JSON objects too (:func:`say`), and so are the results on stdout (an
  echo's round trip, ``spool list`` rows, ``status``: :func:`output`, with the values as
  fields; a ``--json`` answer on one line: :func:`document`), so every line a service or
  a cron job writes parses. A usage error (exit 2) is a JSON line too when the format
  is asked for by ``--log-format json`` or ``BRIDGE_LOGGING_FORMAT=json`` (the settings
  file is not read yet then).

Libraries log through the same handler: pydicom's and pynetdicom's loggers propagate to
the root, and Python warnings (``warnings.warn``, which pydicom uses) are captured into
the ``py.warnings`` logger, so nothing but this handler writes log lines. pynetdicom's
own records repeat, without the destination's name, what the forwarder reports itself
(an association requested, refused, aborted), once per attempt: below ``-vv`` only its
records that carry an exception (a failure inside pynetdicom) pass.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TextIO

from bridge.errors import ConfigError

__all__ = [
    "JOURNAL_PRIORITY",
    "JsonFormatter",
    "ReopeningFileHandler",
    "document",
    "journal_stream",
    "json_mode",
    "output",
    "reopen_log_file",
    "reset",
    "say",
    "setup",
    "usage_error",
]

log = logging.getLogger("bridge.cli")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
"""Log level -> syslog priority (RFC 5424), the ``<N>`` prefix a journal line starts with."""


class _State:
    """What :func:`setup` chose, for :func:`say` and :func:`reopen_log_file`."""

    json = False
    journal = False
    file_handler: ReopeningFileHandler | None = None


_state = _State()


def reset() -> None:
    """Forget an earlier command's choice (``main`` runs several in one test process)."""
    _state.json = False
    _state.journal = False
    _state.file_handler = None


def setup(*, level: int, format: str, verbose: int, file: Path | None = None) -> None:
    """Install the command's handler on the root logger (once a process: if the root
    already has handlers, say a test runner's, they are left alone and so is the rest).

    ``verbose`` 2 (``-vv``) lets pydicom's and pynetdicom's own records through."""
    _state.json = format == "json"
    _state.journal = journal_stream(sys.stderr)
    _state.file_handler = None
    if verbose < 2:
        # pydicom logs every ACR-NEMA value form it meets; the converter reports them itself.
        logging.getLogger("pydicom").setLevel(logging.ERROR)
    root = logging.getLogger()
    if root.handlers:
        return
    handler: logging.Handler
    if file is not None:
        handler = _state.file_handler = ReopeningFileHandler(file)
        formatter: logging.Formatter = _TextFormatter(TEXT_FORMAT)
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = _JournalFormatter() if _state.journal else _TextFormatter(TEXT_FORMAT)
    if _state.json:
        formatter = JsonFormatter(priority=_state.journal and file is None)
    handler.setFormatter(formatter)
    if verbose < 2:
        handler.addFilter(_quiet_pynetdicom)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def _quiet_pynetdicom(record: logging.LogRecord) -> bool:
    """pynetdicom's records pass only with an exception (module docstring)."""
    if record.name == "pynetdicom" or record.name.startswith("pynetdicom."):
        return record.exc_info is not None or record.levelno >= logging.CRITICAL
    return True


def journal_stream(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal's: ``JOURNAL_STREAM`` (``DEVICE:INODE``, set by
    systemd for a service whose output goes to the journal) names its file."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = wanted.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # no file behind it, or no variable
        return False


class _TextFormatter(logging.Formatter):
    """Text lines with the local time in ISO 8601, UTC offset and milliseconds."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat("T", "milliseconds")


class _JournalFormatter(logging.Formatter):
    """Plain lines for the journal, each (a traceback's too) with its syslog priority."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{JOURNAL_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message; for the
    journal (``priority``), after the ``<N>`` syslog priority prefix, which the journal
    takes off and keeps as the entry's priority (a traceback is a field, so a record is
    one line and one prefix)."""

    def __init__(self, *, priority: bool = False) -> None:
        super().__init__()
        self.priority = priority

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record.created, record.levelname, record.name, record.getMessage())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        prefix = f"<{JOURNAL_PRIORITY.get(record.levelno, 6)}>" if self.priority else ""
        return prefix + json.dumps(entry)


def _entry(created: float, level: str, logger: str, message: str) -> dict[str, str]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    millis = int(created * 1000) % 1000
    return {"time": f"{stamp}.{millis:03d}Z", "level": level, "logger": logger, "message": message}


class ReopeningFileHandler(logging.FileHandler):
    """A log file, appended to, that :meth:`reopen` closes and opens again by name."""

    def __init__(self, path: Path) -> None:
        try:
            super().__init__(path, mode="a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"logging.file {path}: cannot open: {exc.strerror or exc} "
                "(give a writable file: --log-file, or file in [logging])"
            ) from exc
        self.path = path

    def reopen(self) -> None:
        """Write to a file of the same name from now on (a new one after a rename);
        if it cannot be opened, keep writing to the old one and say so."""
        failure: OSError | None = None
        self.acquire()
        try:
            stream = self._open()
        except OSError as exc:
            failure = exc
        else:
            old, self.stream = self.stream, stream
            if old is not None:
                old.close()
        finally:
            self.release()
        if failure is not None:
            log.error("cannot reopen the log file %s (kept the old one): %s", self.path, failure)
        else:
            log.info("log file %s reopened (SIGHUP)", self.path)


def reopen_log_file() -> Path | None:
    """Reopen the log file, if there is one, and return its path (else None).

    Safe from a signal handler: the work is done on a short thread of its own, which
    waits for a line being written to finish."""
    handler = _state.file_handler
    if handler is None:
        return None
    threading.Thread(target=handler.reopen, name="log-reopen", daemon=True).start()
    return handler.path


def say(text: str, *, level: int = logging.INFO, blank: bool = False) -> None:
    """One of the CLI's own lines (a stop, a summary, an error): in the log file if there
    is one, as a record of ``bridge.cli`` (timestamped, or JSON), whatever the level
    the log is set to; else on stderr: as it is, or, in JSON mode, a JSON object like
    the log records'; for the journal, with its syslog priority. ``blank``: start on a
    fresh line if stderr is a terminal (after an echoed ^C)."""
    handler = _state.file_handler
    if handler is not None:  # the file's lock and formatter, so a rotation splits no line
        handler.handle(logging.LogRecord("bridge.cli", level, __file__, 0, text, None, None))
        return
    if _state.json:
        entry = _entry(time.time(), logging.getLevelName(level), "bridge.cli", text)
        prefix = f"<{JOURNAL_PRIORITY.get(level, 6)}>" if _state.journal else ""
        sys.stderr.write(prefix + json.dumps(entry) + "\n")
    elif _state.journal:
        sys.stderr.write(f"<{JOURNAL_PRIORITY.get(level, 6)}>{text}\n")
    else:
        fresh = blank and sys.stderr.isatty()
        sys.stderr.write(("\n" if fresh else "") + text + "\n")
    sys.stderr.flush()


def json_mode() -> bool:
    """Whether the command writes JSON lines (``--log-format json``)."""
    return _state.json


def output(text: str, **fields: object) -> None:
    """One line of a command's result on stdout (an echo's round trip, a ``spool list``
    row): as it is, or, in JSON mode, a JSON object like the log records' with
    ``fields`` added (the values a program wants, not only the sentence)."""
    if _state.json:
        entry: dict[str, object] = {
            **_entry(time.time(), "INFO", "bridge.cli", text),
            **fields,
        }
        text = json.dumps(entry)
    sys.stdout.write(text + "\n")


def document(data: object) -> None:
    """A ``--json`` answer on stdout: indented for a reader, or on one line in JSON mode
    (one line, one object: what a log shipper reads)."""
    sys.stdout.write(json.dumps(data, indent=None if _state.json else 2) + "\n")


def usage_error(text: str, argv: list[str]) -> bool:
    """Say a usage error found before the settings are read as a JSON line, if ``argv``
    (``--log-format json``) or ``BRIDGE_LOGGING_FORMAT`` asks for JSON; else False (the
    caller writes it as text)."""
    wanted = os.environ.get("BRIDGE_LOGGING_FORMAT", "")
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            wanted = argv[i + 1]
        elif arg.startswith("--log-format="):
            wanted = arg.partition("=")[2]
    if wanted != "json":
        return False
    _state.json = True
    say(text, level=logging.ERROR)
    return True

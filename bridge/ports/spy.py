"""``spy+URL``: any port, with everything that crosses it recorded to a trace file.

``spy+tcp://127.0.0.1:5104?trace=link.bin`` opens ``tcp://127.0.0.1:5104`` (the
``trace`` option is taken out before the inner URL is opened) and records every buffer
sent and received, and every change of the READY lines, to ``link.bin``. Without
``trace`` the file is ``acrnema-trace-YYYYmmdd-HHMMSS.bin`` in the current directory;
its path is logged at INFO. Each record is written and flushed as it happens, so a
crash loses nothing and memory stays bounded.

Trace format (all numbers big-endian)::

    b"ACRNEMA-BRIDGE TRACE 1\\n"          magic line, once
    then records, each:
      float64  time (seconds since the Unix epoch)
      uint8    direction: 0 out (sent), 1 in (received), 2 line (READY lines)
      uint32   word count N
      N x uint16  the words
      N x uint8   their parity lines (0 or 1)

A *line* record holds one word: bit 0 this side's READY, bit 1 the peer's READY as the
port saw it, bit 2 set when the call that made the record raised
:class:`~bridge.ports.base.LinkLost`. One is written when the port opens, when any of
the three changes, and when it closes. :func:`read_trace` yields the records;
:func:`format_trace` gives one text line per record (``acrnema-bridge`` can print it).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import parse_qsl, urlencode

import numpy as np

from bridge.acrnema.physical import WordBuffer
from bridge.errors import PortIOError, PortURLError
from bridge.ports._buffers import as_buffer
from bridge.ports.base import LinkLost, PortError, WordPort

__all__ = [
    "MAGIC",
    "SentTap",
    "SpyPort",
    "TraceRecord",
    "TraceWriter",
    "format_trace",
    "open_spy",
    "read_trace",
    "split_spy_url",
]

log = logging.getLogger(__name__)

MAGIC = b"ACRNEMA-BRIDGE TRACE 1\n"
DIRECTIONS = ("out", "in", "line")
LINE_READY, LINE_PEER_READY, LINE_DOWN = 1, 2, 4
_HEADER = struct.Struct(">dBI")
_T = TypeVar("_T")


@dataclass(frozen=True)
class TraceRecord:
    """One record of a trace: when, which way, and the words with their parity."""

    time: float
    direction: str
    buffer: WordBuffer

    @property
    def line_state(self) -> tuple[bool, bool, bool]:
        """For a line record: (this side READY, peer READY, LinkLost raised)."""
        word = int(self.buffer.words[0]) if len(self.buffer.words) else 0
        return bool(word & LINE_READY), bool(word & LINE_PEER_READY), bool(word & LINE_DOWN)


class TraceWriter:
    """Appends records to a trace file, one flushed write each; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._file.write(MAGIC)
            self._file.flush()
        except OSError as exc:
            raise PortIOError(f"cannot write the trace {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def write(self, direction: str, buffer: WordBuffer) -> None:
        buffer = as_buffer(buffer)
        count = len(buffer.words)
        record = b"".join(
            (
                _HEADER.pack(time.time(), DIRECTIONS.index(direction), count),
                buffer.words.astype(">u2").tobytes(),
                (buffer.parity & 1).astype(np.uint8).tobytes(),
            )
        )
        with self._lock:
            if self._file.closed:
                return
            try:
                self._file.write(record)
                self._file.flush()
            except OSError as exc:
                raise PortIOError(f"cannot write the trace {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._file.close()


class SpyPort(WordPort):
    """``port``, recording what crosses it to ``trace``."""

    def __init__(
        self, port: WordPort, trace: str | Path, url: str | None = None, *, sent: bool = True
    ) -> None:
        self.port = port
        self.url = url if url is not None else f"spy+{port.url}"
        self.trace = TraceWriter(trace)
        self.sent = sent  # record the words sent (False: something below records them)
        self._ready = True
        self._line: int | None = None
        self._closed = False
        log.info("%s: tracing to %s", self.url, self.trace.path)
        self._note(down=False)

    @property
    def peer_ready(self) -> bool:
        return self.port.peer_ready

    def send(self, buffer: WordBuffer) -> None:
        buffer = as_buffer(buffer)
        self._call(lambda: self.port.send(buffer))
        if self.sent and len(buffer.words):
            self.trace.write("out", buffer)

    def recv(self, timeout: float) -> WordBuffer:
        buffer = self._call(lambda: self.port.recv(timeout))
        if len(buffer.words):
            self.trace.write("in", buffer)
        return buffer

    def set_ready(self, ready: bool) -> None:
        self._call(lambda: self.port.set_ready(ready))
        self._ready = ready
        self._note(down=False)

    def wait_peer(self, timeout: float) -> bool:
        return self._call(lambda: self.port.wait_peer(timeout))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.port.close()
        finally:
            self._ready = False
            self._note(down=False)
            self.trace.close()

    def _call(self, action: Callable[[], _T]) -> _T:
        try:
            result = action()
        except LinkLost:
            self._note(down=True)
            raise
        self._note(down=False)
        return result

    def _note(self, *, down: bool) -> None:
        """A line record if the READY lines or the link's state changed."""
        word = (
            (LINE_READY if self._ready else 0)
            | (LINE_PEER_READY if self.port.peer_ready else 0)
            | (LINE_DOWN if down else 0)
        )
        if word != self._line:
            self._line = word
            self.trace.write("line", WordBuffer(np.array([word], np.uint16), np.zeros(1, np.uint8)))


class SentTap(WordPort):
    """``port``, recording only the words sent, to another port's trace: below a fault
    layer, so that a :class:`SpyPort` above it (made with ``sent=False``) traces both ways
    on the wire's side of the faults (``emulate --vcd``)."""

    def __init__(self, port: WordPort, trace: TraceWriter) -> None:
        self.port = port
        self.url = port.url
        self.trace = trace

    @property
    def peer_ready(self) -> bool:
        return self.port.peer_ready

    def send(self, buffer: WordBuffer) -> None:
        buffer = as_buffer(buffer)
        self.port.send(buffer)
        if len(buffer.words):
            self.trace.write("out", buffer)

    def recv(self, timeout: float) -> WordBuffer:
        return self.port.recv(timeout)

    def set_ready(self, ready: bool) -> None:
        self.port.set_ready(ready)

    def wait_peer(self, timeout: float) -> bool:
        return self.port.wait_peer(timeout)

    def close(self) -> None:
        self.port.close()


def split_spy_url(url: str) -> tuple[str, str | None]:
    """``spy+URL?trace=FILE`` -> (URL without ``trace``, FILE or None)."""
    if not url.startswith("spy+"):
        raise PortError(f"{url}: not a spy+ URL")
    inner = url[len("spy+") :]
    base, sep, query = inner.partition("?")
    trace: str | None = None
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "trace":
            trace = value
        else:
            kept.append((name, value))
    if sep and kept:
        base += "?" + urlencode(kept)
    if not base:
        raise PortURLError(f"{url}: give the port to trace, as in spy+loop://demo")
    return base, trace


def default_trace_path() -> Path:
    return Path(time.strftime("acrnema-trace-%Y%m%d-%H%M%S.bin"))


def open_spy(url: str, opener: Callable[[str], WordPort]) -> SpyPort:
    """Open ``spy+URL``: the inner port through ``opener``, traced."""
    inner_url, trace = split_spy_url(url)
    path = Path(trace) if trace else default_trace_path()
    port = opener(inner_url)
    try:
        return SpyPort(port, path, url)
    except BaseException:
        port.close()
        raise


def read_trace(path: str | Path) -> Iterator[TraceRecord]:
    """The records of a trace file, one at a time; a truncated last record is skipped."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise PortError(f"cannot read the trace {path}: {exc}") from exc
    try:
        if handle.read(len(MAGIC)) != MAGIC:
            raise PortError(f"{path}: not an acrnema-bridge trace")
        while True:
            header = handle.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                log.warning("%s: truncated record at the end", path)
                return
            when, direction, count = _HEADER.unpack(header)
            if direction >= len(DIRECTIONS):
                raise PortError(f"{path}: bad record direction {direction}")
            body = handle.read(3 * count)
            if len(body) < 3 * count:
                log.warning("%s: truncated record at the end", path)
                return
            words = np.frombuffer(body, dtype=">u2", count=count).astype(np.uint16)
            parity = np.frombuffer(body, dtype=np.uint8, offset=2 * count).copy()
            yield TraceRecord(when, DIRECTIONS[direction], WordBuffer(words, parity))
    finally:
        handle.close()


def format_trace(path: str | Path, words: int = 8) -> Iterator[str]:
    """One text line per record: seconds since the first record, direction, count, and
    the first ``words`` words in hex (``READY`` states for line records)."""
    start: float | None = None
    for record in read_trace(path):
        if start is None:
            start = record.time
        count = len(record.buffer.words)
        head = f"{record.time - start:12.6f} {record.direction:<4} {count:>8}"
        if record.direction == "line":
            ready, peer, down = record.line_state
            text = f"ready={int(ready)} peer={int(peer)}" + (" link-down" if down else "")
        else:
            text = " ".join(f"{int(w):04X}" for w in record.buffer.words[:words])
            if count > words:
                text += " ..."
        yield f"{head}  {text}"

"""Byte streams: what the byte-stream ports run over (a device, a TCP connection, a pty).

A :class:`ByteStream` is raw bytes in and out, one connection at a time, with no
encoding and no thread. Two kinds of port are built on one:

* :class:`bridge.ports.driver.StreamWordPort` carries the raw word stream over it
  (``serial://``, ``rs485://``, ``ftdi://``, ``tcp://``, ``tcp-listen://``, ``pty://``);
* :class:`bridge.ports.box.BoxPort` speaks the interface-box protocol over it
  (``box+serial://`` and the others, docs/box-protocol.md).

:func:`bridge.ports.registry.open_byte_stream` opens one by URL (the same URLs and
options as the ports of the same schemes); :func:`pipe_pair` gives the two ends of an
in-process byte pipe, for the emulators and the benchmark. Errors from the methods
(``OSError`` and ``ValueError``, which covers ``serial.SerialException``) mean the
current stream is lost; the port that uses the stream wraps them.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod

__all__ = ["RETRY_S", "ByteStream", "PipeStream", "ReopeningStream", "pipe_pair"]

RETRY_S = 0.2
"""Seconds after a failed open before a :class:`ReopeningStream` tries again."""


class ByteStream(ABC):
    """Raw bytes over one connection (or device) at a time; reads and writes may happen
    in two threads at once (one reading, one writing)."""

    url: str = ""
    #: seconds without progress after which a writer gives up (the peer counts as gone)
    write_timeout: float = 5.0
    #: whether a reader may make a stream available (a listener accepts the next one)
    accept_in_recv: bool = False

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether there is a stream now (a device open, a connection made)."""

    @abstractmethod
    def connect(self, timeout: float) -> bool:
        """Make a stream available within ``timeout`` (open, connect, accept); True when
        there is one."""

    @abstractmethod
    def read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        """Up to ``max_bytes``, waiting at most ``timeout``: b"" for none, None at EOF."""

    @abstractmethod
    def write_some(self, data: memoryview, timeout: float) -> int:
        """Write a prefix of ``data``, waiting at most ``timeout``; how many bytes."""

    def abort(self) -> None:  # noqa: B027 - optional: most streams need nothing here
        """Make pending reads and writes on the current stream return now (any thread)."""

    def finish(self, timeout: float) -> None:  # noqa: B027 - optional, as abort
        """End the current stream after what was written (the caller is done writing),
        within ``timeout``: what was written must not be lost by the end of the stream.
        Called by a port's ``close`` after its goodbye, before :meth:`abort`."""

    @abstractmethod
    def disconnect(self) -> None:
        """Release the current stream; :meth:`connect` may make another one."""

    @abstractmethod
    def release(self) -> None:
        """Release everything (called once, when the user closes)."""


class ReopeningStream(ByteStream):
    """A stream that opens its own connection (a device, a TCP connection) in :meth:`connect`.

    After a failed open, :meth:`connect` waits (at most its ``timeout``) until ``RETRY_S``
    have passed before it tries again, so a port that calls it in a loop neither spins nor
    hammers a device or host that is not there. The failure is logged at DEBUG by the
    subclass's module logger; it is not an error (the caller keeps trying).
    """

    _next_try = 0.0

    @abstractmethod
    def _open(self, timeout: float) -> None:
        """Open the connection within ``timeout``; OSError or ValueError when it cannot."""

    def _open_failed(self) -> str:
        """What failed, for the DEBUG record of a failed open (``"connect"``...)."""
        return "open"

    def connect(self, timeout: float) -> bool:
        if self.connected:
            return True
        wait = self._next_try - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            if self._next_try > time.monotonic():
                return False
        try:
            self._open(timeout)
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            self._next_try = time.monotonic() + RETRY_S
            log = logging.getLogger(type(self).__module__)
            log.debug("%s: %s: %s", self.url, self._open_failed(), exc)
            return False
        return True


class _Pipe:
    """What two :class:`PipeStream` ends share: a byte buffer each way."""

    def __init__(self, capacity: int) -> None:
        self.cond = threading.Condition()
        self.buffers = (bytearray(), bytearray())  # bytes waiting for end 0, for end 1
        self.closed = [False, False]
        self.capacity = capacity


class PipeStream(ByteStream):
    """One end of an in-process byte pipe (:func:`pipe_pair`); bounded, thread-safe.

    Closing (:meth:`disconnect` or :meth:`release`) one end is EOF for the other.
    """

    def __init__(self, pipe: _Pipe, side: int, url: str) -> None:
        self._pipe = pipe
        self._side = side
        self.url = url

    @property
    def connected(self) -> bool:
        return not self._pipe.closed[self._side]

    def connect(self, timeout: float) -> bool:
        return self.connected

    def read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        pipe = self._pipe
        buffer = pipe.buffers[self._side]
        with pipe.cond:
            if not buffer:
                pipe.cond.wait_for(lambda: buffer or any(pipe.closed), max(0.0, timeout))
            if pipe.closed[self._side]:
                raise OSError(f"{self.url}: closed")
            if not buffer:
                return None if pipe.closed[1 - self._side] else b""
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
            pipe.cond.notify_all()
            return data

    def write_some(self, data: memoryview, timeout: float) -> int:
        pipe = self._pipe
        buffer = pipe.buffers[1 - self._side]
        deadline = time.monotonic() + max(0.0, timeout)
        with pipe.cond:
            while True:
                if any(pipe.closed):
                    raise OSError(f"{self.url}: the other end is closed")
                room = pipe.capacity - len(buffer)
                if room > 0:
                    part = data[:room]
                    buffer += part
                    pipe.cond.notify_all()
                    return len(part)
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0
                pipe.cond.wait(left)

    def disconnect(self) -> None:
        with self._pipe.cond:
            self._pipe.closed[self._side] = True
            self._pipe.cond.notify_all()

    def release(self) -> None:
        self.disconnect()


def pipe_pair(capacity: int = 1 << 18, name: str = "pipe") -> tuple[PipeStream, PipeStream]:
    """Both ends of a new in-process byte pipe holding ``capacity`` bytes each way."""
    pipe = _Pipe(capacity)
    return PipeStream(pipe, 0, f"{name}/a"), PipeStream(pipe, 1, f"{name}/b")

"""The raw word stream: words, parity and the READY line over any byte stream.

``tcp://``, ``tcp-listen://``, ``serial://``, ``rs485://``, ``ftdi://`` and ``pty://``
carry the link of :mod:`bridge.ports.base` over a byte stream in this encoding (our own,
chosen for the emulated paths; docs/ports.md). Each *unit* is 3 bytes, the third being
the flags:

* ``HI LO 00`` or ``HI LO 01``: a data word ``HI << 8 | LO``; its parity line is the
  flags' bit 0;
* ``00 00 80|s<<1|r``: a line-state unit; ``r`` is the sender's READY and ``s`` says
  whether the sender sees the receiver's READY asserted;
* anything else: an invalid unit, dropped and counted.

Line-state units are sent when a stream opens, on every READY change, every
:data:`ANNOUNCE_INTERVAL_S` while the peer is not seen READY, and in answer to a unit
whose ``s`` bit is wrong about us (the peer thinks our READY is not what it is). So two
sides find each other whichever opens first, a side that restarts without ever dropping
READY (a serial peer re-powered) is answered, and a lost line-state unit is repaired by
the next announcement; the answer rule cannot ping-pong, because an answer always
carries the right ``s`` bit.

The encoding has no resynchronisation: it relies on a byte stream that loses and adds
nothing (TCP, a pty, a clean USB CDC link). A real serial line to the interface box uses
the interface-box protocol (``box+`` URLs, :mod:`bridge.ports.box`), not this;
over a noisy UART a lost byte would make everything after it unreadable (invalid units
and wrong words).

:func:`encode_words` and :class:`WordStreamDecoder` work on whole buffers with numpy
(no Python loop per word). Encode plus decode of 1 Mi words (3 MiB of stream) measured
450 to 1300 MB/s of words (2 bytes a word) on the 2-core development box, varying from
run to run with the state of the memory allocator (``python -m bridge.ports.wordstream``
measures it); the aim was 50 MB/s. :class:`StreamWordPort` implements
the rules of :mod:`bridge.ports.base` over a :class:`~bridge.ports.bytestream.ByteStream`
(each byte-stream module has its stream class); it starts no thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from bridge.acrnema.physical import WordBuffer
from bridge.ports._buffers import WordQueue, as_buffer, empty_buffer
from bridge.ports.base import MAX_RECV_WORDS, LinkDown, PortError, WordPort
from bridge.ports.bytestream import ByteStream

__all__ = [
    "ANNOUNCE_INTERVAL_S",
    "UNIT_BYTES",
    "LineState",
    "StreamWordPort",
    "WordStreamDecoder",
    "encode_line_state",
    "encode_words",
]

log = logging.getLogger(__name__)

UNIT_BYTES = 3
ANNOUNCE_INTERVAL_S = 0.2
"""How often a side that does not see its peer READY re-sends its line state."""

_LINE = 0x80
_UNIT = np.dtype([("word", ">u2"), ("flags", "u1")])
_ENCODE_CHUNK = 1 << 20  # words encoded at a time: the temporary stays at 3 MiB
_INVALID_FILL = 0xFF  # completes a unit cut short by a write stall: an invalid unit
_ANSWER_STALL_S = 0.2  # an answer or announcement does not hold up a reader longer


@dataclass(frozen=True)
class LineState:
    """A line-state unit: the sender's READY, and whether it sees the receiver READY."""

    ready: bool
    sees_ready: bool = False


def encode_words(buffer: WordBuffer) -> bytes:
    """The data units carrying ``buffer`` (parity values other than 0/1 use bit 0)."""
    buffer = as_buffer(buffer)
    units = np.empty(len(buffer.words), dtype=_UNIT)
    units["word"] = buffer.words
    units["flags"] = buffer.parity & 1
    return units.tobytes()


def encode_line_state(ready: bool, sees_ready: bool = False) -> bytes:
    """The line-state unit for this side's READY and its view of the peer's READY."""
    return bytes((0, 0, _LINE | (2 if sees_ready else 0) | (1 if ready else 0)))


class WordStreamDecoder:
    """Incremental decoder: bytes split anywhere in, words and line states out, in order.

    A partial unit at the end of the input is kept for the next :meth:`feed`; invalid
    units are dropped and counted in :attr:`invalid`.
    """

    def __init__(self) -> None:
        self._partial = b""
        self.invalid = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete unit kept for the next call."""
        return len(self._partial)

    def reset(self) -> None:
        """Forget a partial unit (the stream it came from is gone)."""
        self._partial = b""

    def feed(self, data: bytes | bytearray | memoryview) -> list[WordBuffer | LineState]:
        """Decode ``data``; consecutive data units come out as one buffer."""
        buf = self._partial + bytes(data) if self._partial else bytes(data)
        count = len(buf) // UNIT_BYTES
        self._partial = buf[count * UNIT_BYTES :]
        if count == 0:
            return []
        units = np.frombuffer(buf, dtype=_UNIT, count=count)
        flags = units["flags"]
        if int(flags.max()) <= 1:  # the usual case: data units only
            return [WordBuffer(units["word"].astype(np.uint16), flags.copy())]
        is_data = flags <= 1
        is_line = ((flags & 0xFC) == _LINE) & (units["word"] == 0)
        self.invalid += count - int(np.count_nonzero(is_data | is_line))
        events: list[WordBuffer | LineState] = []
        start = 0
        for index in [*np.flatnonzero(is_line).tolist(), count]:
            keep = is_data[start:index]
            if np.any(keep):
                part = units[start:index][keep]
                events.append(WordBuffer(part["word"].astype(np.uint16), part["flags"].copy()))
            if index < count:
                flag = int(flags[index])
                events.append(LineState(ready=bool(flag & 1), sees_ready=bool(flag & 2)))
            start = index + 1
        return events


class StreamWordPort(WordPort):
    """The rules of :mod:`bridge.ports.base` over a byte stream, without a thread.

    The stream is a :class:`~bridge.ports.bytestream.ByteStream` (a device, a TCP
    connection or listener, a pty); a subclass makes one and passes it in, and the port
    announces itself on it at once if it is connected. Reads and writes may happen in two
    threads at once (one receiving, one sending). Errors from the stream (``OSError`` and
    ``ValueError``, which covers ``serial.SerialException``) mean it is lost:
    :class:`LinkDown`.
    """

    #: a slice of waiting: how quickly a reader notices close() from another thread
    _SLICE_S = 0.05
    _READ_BYTES = UNIT_BYTES * (1 << 18)
    _MAX_QUEUED = 4 * MAX_RECV_WORDS  # stop reading the stream when this many wait

    def __init__(self, url: str, stream: ByteStream) -> None:
        self.url = url
        self.stream = stream
        self.decoder = WordStreamDecoder()
        self.discarded = 0  # words discarded: arrived while a READY line was down
        self._queue = WordQueue()
        self._read_lock = threading.Lock()  # the reading side: decoder, queue, stream
        self._write_lock = threading.RLock()  # whole units go out together
        self._state = threading.Lock()
        self._ready = True
        self._peer_ready = False
        self._drop_unreported = False
        self._connected = False
        self._closed = False
        self._gen = 0  # bumped each time a stream is lost
        self._read_gen = 0  # the stream the decoder and the queue belong to
        self._released_gen = 0
        self._carry = b""
        self._answer_due = False
        self._clear_queue = False
        self._last_announce = -1e9
        if stream.connected:
            self._stream_up()

    @property
    def write_timeout(self) -> float:
        """Seconds without progress after which a write gives up and the peer counts as
        gone (the stream's ``write_timeout``)."""
        return self.stream.write_timeout

    @write_timeout.setter
    def write_timeout(self, value: float) -> None:
        self.stream.write_timeout = value

    # ------------------------------------------------------------ the byte stream

    @property
    def _connect_in_recv(self) -> bool:
        return self.stream.accept_in_recv

    def _connect(self, timeout: float) -> bool:
        return self.stream.connect(timeout)

    def _read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        return self.stream.read_some(max_bytes, timeout)

    def _write_some(self, data: memoryview, timeout: float) -> int:
        return self.stream.write_some(data, timeout)

    def _abort_stream(self) -> None:
        self.stream.abort()

    def _disconnect(self) -> None:
        self.stream.disconnect()

    def _release(self) -> None:
        self.stream.release()

    # ------------------------------------------------------------------ WordPort API

    @property
    def peer_ready(self) -> bool:
        return self._peer_ready and self._connected and not self._closed

    @property
    def connected(self) -> bool:
        """Whether there is a byte stream now (a TCP connection, an open device)."""
        return self._connected

    def send(self, buffer: WordBuffer) -> None:
        self._check_open()
        if self._read_lock.acquire(blocking=False):  # learn of a dropped READY
            try:
                self._pump(0.0)
            finally:
                self._read_lock.release()
        self._check_link()
        buffer = as_buffer(buffer)
        if not len(buffer.words):
            return
        gen = self._gen
        with self._write_lock:
            self._flush_answer(gen)
            for start in range(0, len(buffer.words), _ENCODE_CHUNK):
                part = WordBuffer(
                    buffer.words[start : start + _ENCODE_CHUNK],
                    buffer.parity[start : start + _ENCODE_CHUNK],
                )
                if not self._write_units(encode_words(part), gen, self.write_timeout):
                    self._peer_gone(f"peer took nothing for {self.write_timeout:g} s")
                    raise LinkDown(f"{self.url}: the peer stopped reading")

    def recv(self, timeout: float) -> WordBuffer:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._read_lock:
            self._pump(0.0)
            while True:
                self._check_link()
                if len(self._queue):
                    return self._queue.take(MAX_RECV_WORDS)
                left = deadline - time.monotonic()
                if left <= 0:
                    return empty_buffer()
                self._pump(min(left, self._SLICE_S))
                self._check_open()

    def set_ready(self, ready: bool) -> None:
        self._check_open()
        with self._state:
            self._ready = ready
            if not ready:
                self._clear_queue = True  # no side takes words while a READY line is down
        gen = self._gen
        if self._connected:
            # LinkDown: the stream is gone; a new one starts with our state
            with self._write_lock, contextlib.suppress(LinkDown):
                self._write_line_state(gen)

    def wait_peer(self, timeout: float) -> bool:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._read_lock:
            while True:
                self._check_open()
                left = deadline - time.monotonic()
                if not self._connected:
                    self._reap()
                    if self._try_connect(max(0.0, min(left, 1.0))):
                        self._stream_up()
                    elif left <= 0:
                        return False
                    continue
                self._pump(0.0)
                if self.peer_ready:
                    self._drop_unreported = False
                    return True
                if left <= 0:
                    return False
                self._pump(min(left, self._SLICE_S))

    def close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
        if self._connected:  # say goodbye: the peer sees READY drop
            try:
                if self._write_lock.acquire(timeout=0.5):
                    try:
                        self._ready = False
                        self._write_units(self._line_state(), self._gen, 0.2, closing=True)
                    finally:
                        self._write_lock.release()
            except LinkDown:
                pass
        self._abort_stream()
        with self._read_lock, self._write_lock:
            self._connected = False
            self._peer_ready = False
            self._queue.clear()
            try:
                self._release()
            except (OSError, ValueError) as exc:
                log.debug("%s: closing: %s", self.url, exc)
        log.debug("%s: closed", self.url)

    def drop_connection(self) -> None:
        """Drop the current byte stream (a TCP connection); the peer sees it lost."""
        self._check_open()
        self._lost("dropped on request")

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise PortError(f"{self.url}: the port is closed")

    def _check_link(self) -> None:
        if self._drop_unreported:
            self._drop_unreported = False
            raise LinkDown(f"{self.url}: the peer dropped READY")
        if not self._ready:
            raise LinkDown(f"{self.url}: this side's READY is dropped")
        if not self._connected:
            raise LinkDown(f"{self.url}: not connected")
        if not self._peer_ready:
            raise LinkDown(f"{self.url}: the peer is not READY")

    def _line_state(self) -> bytes:
        return encode_line_state(self._ready, self._peer_ready)

    def _stream_up(self) -> None:
        """A new stream: fresh decoder and queue, then tell the peer our READY."""
        with self._state:
            self._connected = True
            self._peer_ready = False
            self._read_gen = self._released_gen = self._gen
        self.decoder.reset()
        self._queue.clear()
        self._carry = b""
        log.debug("%s: stream up", self.url)
        with self._write_lock, contextlib.suppress(LinkDown):  # lost at once: wait_peer retries
            self._write_line_state(self._gen)

    def _lost(self, reason: str, exc: BaseException | None = None) -> None:
        """The stream is gone (any thread); the reader releases it later."""
        with self._state:
            if not self._connected or self._closed:
                return
            self._connected = False
            self._gen += 1
            if self._peer_ready:
                self._drop_unreported = True
            self._peer_ready = False
        log.info("%s: connection lost: %s", self.url, reason if exc is None else exc)
        self._abort_stream()

    def _peer_gone(self, reason: str) -> None:
        with self._state:
            if self._peer_ready:
                log.info("%s: %s", self.url, reason)
            self._peer_ready = False

    def _try_connect(self, timeout: float) -> bool:
        """:meth:`_connect`, with a failure logged and counted as no stream yet."""
        try:
            return self._connect(timeout)
        except (OSError, ValueError) as exc:
            log.debug("%s: no stream: %s", self.url, exc)
            time.sleep(min(timeout, self._SLICE_S))
            return False

    def _reap(self) -> None:
        """Release a lost stream (caller holds the read lock)."""
        if self._released_gen != self._gen:
            with self._write_lock:
                self._released_gen = self._gen
                try:
                    self._disconnect()
                except (OSError, ValueError) as exc:
                    log.debug("%s: releasing the stream: %s", self.url, exc)

    def _pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` and act on it (caller holds the read lock)."""
        if self._read_gen != self._gen:  # the stream went: what it brought is void
            self._read_gen = self._gen
            self.decoder.reset()
            self._queue.clear()
        if self._clear_queue:
            self._clear_queue = False
            self.discarded += self._queue.clear()
        if not self._connected:
            self._reap()
            if not (self._connect_in_recv and self._try_connect(0.0)):
                return
            self._stream_up()
        gen = self._gen
        if not self._peer_ready and time.monotonic() - self._last_announce > ANNOUNCE_INTERVAL_S:
            self._answer_due = True
        wait = timeout
        while len(self._queue) < self._MAX_QUEUED:
            try:
                data = self._read_some(self._READ_BYTES, wait)
            except (OSError, ValueError) as exc:
                self._lost("read failed", exc)
                return
            if data is None:
                self._lost("end of stream")
                return
            if not data:
                break
            self._handle(self.decoder.feed(data))
            wait = 0.0
        if self._answer_due and self._write_lock.acquire(blocking=False):
            try:
                self._flush_answer(gen)
            except LinkDown:
                pass
            finally:
                self._write_lock.release()

    def _handle(self, events: list[WordBuffer | LineState]) -> None:
        for event in events:
            if isinstance(event, LineState):
                with self._state:
                    if self._peer_ready and not event.ready:
                        self._drop_unreported = True
                        self.discarded += self._queue.clear()
                        log.info("%s: the peer dropped READY", self.url)
                    elif event.ready and not self._peer_ready:
                        log.info("%s: the peer is READY", self.url)
                    self._peer_ready = event.ready
                    if event.sees_ready != self._ready:
                        self._answer_due = True
            elif self._ready and self._peer_ready:
                self._queue.put(event)
            else:  # no side takes words while a READY line is down
                self.discarded += len(event.words)
                if not self._ready:
                    self._answer_due = True

    def _flush_answer(self, gen: int) -> None:
        """Send our line state if an answer or an announcement is due (write lock held)."""
        if self._answer_due:
            self._write_line_state(gen, stall_timeout=_ANSWER_STALL_S)

    def _write_line_state(self, gen: int, stall_timeout: float = 1.0) -> None:
        """Send our line state (write lock held); a stalled peer misses it, and the
        answer rule repairs that once it reads again."""
        self._answer_due = False
        self._last_announce = time.monotonic()
        self._write_units(self._line_state(), gen, min(self.write_timeout, stall_timeout))

    def _write_units(
        self, data: bytes, gen: int, stall_timeout: float, *, closing: bool = False
    ) -> bool:
        """Write ``data`` (whole units) after any carry; False if the stream stalled.

        The write lock is held. A unit cut short by a stall is completed with
        :data:`_INVALID_FILL` bytes before the next write, so the receiver drops it as
        invalid and the stream stays aligned.
        """
        if self._carry:
            data = self._carry + data
            self._carry = b""
        view = memoryview(data)
        done = 0
        last_progress = time.monotonic()
        while done < len(view):
            if gen != self._gen or not self._connected:
                raise LinkDown(f"{self.url}: the connection was lost")
            if self._closed and not closing:
                raise PortError(f"{self.url}: the port was closed")
            try:
                written = self._write_some(view[done:], self._SLICE_S)
            except (OSError, ValueError) as exc:
                self._lost("write failed", exc)
                raise LinkDown(f"{self.url}: the connection was lost: {exc}") from exc
            now = time.monotonic()
            if written:
                done += written
                last_progress = now
            elif now - last_progress > stall_timeout:
                left = (len(view) - done) % UNIT_BYTES
                self._carry = bytes([_INVALID_FILL]) * left
                return False
        return True


def _measure(words: int = 1 << 20, rounds: int = 20) -> float:
    """MB/s of words (2 bytes a word) through encode + decode."""
    rng = np.random.default_rng(1)
    buffer = WordBuffer(
        rng.integers(0, 1 << 16, words, dtype=np.uint16),
        rng.integers(0, 2, words, dtype=np.uint8),
    )
    decoder = WordStreamDecoder()
    decoder.feed(encode_words(buffer))  # warm up: the first round pays for page faults
    start = time.perf_counter()
    for _ in range(rounds):
        decoder.feed(encode_words(buffer))
    elapsed = time.perf_counter() - start
    return 2 * words * rounds / elapsed / 1e6


if __name__ == "__main__":  # pragma: no cover - a measurement, not a test
    logging.basicConfig(level=logging.INFO)
    log.info("raw word stream encode + decode: %.0f MB/s of words", _measure())

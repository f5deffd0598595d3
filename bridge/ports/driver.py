"""The one threaded driver: any word engine over any byte stream, lifecycle written once.

A :class:`~bridge.engine.WordEngine` (the raw word stream of
:mod:`bridge.wordstream`, the interface-box host of :mod:`bridge.box.host`, or a
plug-in's) knows a protocol and nothing of I/O. A
:class:`~bridge.ports.bytestream.ByteStream` (a device, a TCP connection or listener, a
pty, an in-process pipe) moves bytes and knows no protocol. :class:`EnginePort` joins the
two into a :class:`~bridge.ports.base.WordPort` and keeps its rules (module doc of
:mod:`bridge.ports.base`); everything about threads and time is here, once:

* **no thread of its own**: reads and writes happen in the caller's threads. One thread
  at a time reads (the *read lock*: the stream's input, connecting, releasing); one at a
  time writes (the *write lock*: the engine's output goes out whole and in order); a
  condition guards the engine, the words waiting and the state below, and wakes a sender
  waiting for credit when the reader brings some;
* **connect and reconnect**: :meth:`~EnginePort.wait_peer` (re)opens the stream every
  ``retry`` seconds until its timeout (a listener also accepts in ``recv``), then the
  engine greets (:meth:`~bridge.engine.WordEngine.connect`);
* **generations**: each lost stream bumps a counter, so a writer that started on the old
  stream stops instead of writing on the next one; a lost stream is released by the
  reader, never under a writer's feet;
* **stalls**: a write that makes no progress for its stall time asks the engine what
  that means (:meth:`~bridge.engine.WordEngine.write_stalled`): bytes to complete a
  cut unit first on the next write (*carry*; the stream stays), or None (the stream is
  lost). A ``send`` that gets nothing taken for the stream's ``write_timeout`` means the
  peer stopped reading: :class:`~bridge.ports.base.LinkLost`;
* **goodbye on close**: the engine's goodbye (READY dropped) is written, within 0.2 s,
  after every word sent before it, and the stream is ended so that nothing written is
  lost (:meth:`~bridge.ports.bytestream.ByteStream.finish`: a socket half-closes and
  drains its input, up to 0.2 s) before it is released;
* **words before a drop**: words that arrived while both READY lines were up are
  delivered by ``recv`` before it reports the peer's drop or the stream's end (``send``
  raises at once: the peer is gone);
* **errors**: ``OSError`` and ``ValueError`` from the stream (which covers
  ``serial.SerialException``) mean the stream is lost: ``LinkLost``, raised ``from`` the
  original; an engine's :class:`~bridge.ports.base.PortError` (a box that cannot serve
  this host) drops the stream and is raised as it is.

:class:`StreamWordPort` is the raw word stream on it (``tcp://``, ``serial://``,
``pty://``...); :class:`bridge.ports.box.BoxPort` is the interface box (``box+``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import ClassVar

from bridge.acrnema.physical import WordBuffer
from bridge.engine import PeerReady, StreamGone, WordEngine, WordsArrived
from bridge.ports._buffers import WordQueue, as_buffer, empty_buffer
from bridge.ports.base import MAX_RECV_WORDS, LinkLost, PortError, WordPort
from bridge.ports.bytestream import ByteStream
from bridge.wordstream import WordStreamEngine

__all__ = ["RETRY_S", "EnginePort", "StreamWordPort"]

log = logging.getLogger(__name__)

RETRY_S = 0.2
"""Seconds between attempts to (re)open a stream in ``wait_peer``, by default."""
_GOODBYE_STALL_S = 0.2


class EnginePort(WordPort):
    """A :class:`~bridge.ports.base.WordPort`: ``engine`` run over ``stream`` (module doc)."""

    #: a slice of waiting: how quickly a reader notices close() from another thread
    _SLICE_S = 0.05
    #: what the stream leads to, for messages ("the interface box", "the byte stream")
    what: ClassVar[str] = "the byte stream"
    #: the level a lost stream is logged at
    lost_level: ClassVar[int] = logging.INFO

    def __init__(
        self, url: str, stream: ByteStream, engine: WordEngine, *, retry: float = RETRY_S
    ) -> None:
        self.url = url
        self.stream = stream
        self.engine = engine
        self.retry = retry
        self.discarded = 0  # words discarded here: arrived while a READY line was down
        self._queue = WordQueue()
        self._read_lock = threading.Lock()  # the reading side: the stream's input
        self._write_lock = threading.Lock()  # the stream's output, whole and in order
        self._cond = threading.Condition()  # the engine, the queue and the state below
        self._closed = False
        self._connected = False
        self._drop_unreported = False
        self._drop_text = ""
        self._before_drop = 0  # words queued ahead of the unreported drop: recv gives them first
        self._down_reason = f"{self.what} on {stream.url} is not connected yet"
        self._gen = 0  # bumped each time the stream is lost
        self._released_gen = 0
        self._next_try = 0.0
        self._carry = b""  # written before the next output (write lock held)
        if stream.connected:
            with self._read_lock:
                self._stream_up()

    # ------------------------------------------------------------------ WordPort API

    @property
    def peer_ready(self) -> bool:
        with self._cond:
            return not self._closed and self._connected and self.engine.down_reason() is None

    @property
    def connected(self) -> bool:
        """Whether there is a byte stream now (a TCP connection, an open device)."""
        return self._connected

    @property
    def write_timeout(self) -> float:
        """Seconds without progress after which a write gives up and the peer counts as
        gone (the stream's ``write_timeout``)."""
        return self.stream.write_timeout

    @write_timeout.setter
    def write_timeout(self, value: float) -> None:
        self.stream.write_timeout = value

    def send(self, buffer: WordBuffer) -> None:
        self._check_open()
        if self._read_lock.acquire(blocking=False):  # learn of a dropped READY
            try:
                self._pump(0.0)
            finally:
                self._read_lock.release()
        with self._cond:
            self._check_link()
        buffer = as_buffer(buffer)
        total = len(buffer.words)
        done = 0
        last_progress = time.monotonic()
        while done < total:
            with self._write_lock:  # the words go out with the timeout of data
                with self._cond:
                    self._check_link()
                    part = WordBuffer(buffer.words[done:], buffer.parity[done:])
                    sent = self.engine.send_words(part, boundary=True)
                flowed = not sent or self._write_out(self.stream.write_timeout)
            if not flowed:
                self._peer_stalled()
            if sent:
                done += sent
                last_progress = time.monotonic()
                with contextlib.suppress(LinkLost):  # output others queued meanwhile
                    self._flush(wait=False)
                continue
            if time.monotonic() - last_progress > self.stream.write_timeout:
                self._peer_stalled()
            self._wait_for_input(self._SLICE_S)

    def recv(self, timeout: float) -> WordBuffer:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._read_lock:
            self._pump(0.0)
            while True:
                with self._cond:
                    if self._before_drop:  # words the peer sent before it went: first
                        buffer = self._queue.take(min(self._before_drop, MAX_RECV_WORDS))
                        self._before_drop -= len(buffer.words)
                        self.engine.consumed(len(buffer.words), time.monotonic())
                        break
                    self._check_link()
                    if len(self._queue):
                        buffer = self._queue.take(MAX_RECV_WORDS)
                        self.engine.consumed(len(buffer.words), time.monotonic())
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    return empty_buffer()
                self._pump(min(left, self._SLICE_S))
                self._check_open()
        with contextlib.suppress(LinkLost):  # credit: it goes with the next stream's start
            self._flush(wait=False)
        return buffer

    def set_ready(self, ready: bool) -> None:
        self._check_open()
        with self._cond:
            self.engine.set_ready(ready, time.monotonic())
            if not ready:  # no side takes words while a READY line is down
                self._discard_queue()
        with contextlib.suppress(LinkLost):  # the stream is gone: a new one starts with it
            self._flush(wait=True)

    def wait_peer(self, timeout: float) -> bool:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._read_lock:
            while True:
                self._check_open()
                now = time.monotonic()
                left = deadline - now
                if not self._connected:
                    self._reap()
                    if now < self._next_try:
                        if left <= 0:
                            return False
                        time.sleep(min(left, self._next_try - now))
                        continue
                    if self._try_connect(max(0.0, min(left, 1.0))):
                        self._stream_up()
                    else:
                        self._next_try = time.monotonic() + self.retry
                        if left <= 0:
                            return False
                    continue
                self._pump(0.0)
                with self._cond:
                    if self.peer_ready:
                        self._drop_unreported = False
                        if self._before_drop:  # the caller starts afresh: not for it now
                            self.discarded += len(self._queue.take(self._before_drop).words)
                            self.engine.consumed(self._before_drop, time.monotonic())
                            self._before_drop = 0
                        return True
                if left <= 0:
                    return False
                self._pump(min(left, self._SLICE_S))

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            goodbye = self._connected
            if goodbye:  # the peer sees READY drop
                self.engine.goodbye(time.monotonic())
        if goodbye and self._write_lock.acquire(timeout=0.5):
            try:
                with self._cond:
                    data, gen = self.engine.data_to_send(), self._gen
                self._write(data, gen, _GOODBYE_STALL_S, closing=True)
                with self._cond:
                    still = gen == self._gen and self._connected
                if still:  # what went before the goodbye is not lost when the stream ends
                    self.stream.finish(_GOODBYE_STALL_S)
            except LinkLost:
                pass
            finally:
                self._write_lock.release()
        self.stream.abort()
        with self._read_lock, self._write_lock, self._cond:
            self._connected = False
            self.engine.disconnect()
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

    # ------------------------------------------------------------------ for subclasses

    def _on_event(self, event: object) -> None:
        """An engine event the driver does not know (condition held): log it, say."""

    def _release(self) -> None:
        """Release the stream for good."""
        self.stream.release()

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise PortError(f"{self.url}: the port is closed")

    def _check_link(self) -> None:
        """LinkLost unless words can flow (condition held); a drop is told once."""
        self._check_open()
        if self._before_drop:  # told by recv, after the words that came before it
            raise LinkLost(f"{self.url}: {self._drop_text}")
        if self._drop_unreported:
            self._drop_unreported = False
            raise LinkLost(f"{self.url}: {self._drop_text}")
        if not self.engine.ready:
            raise LinkLost(f"{self.url}: this side's READY is dropped")
        if not self._connected:
            raise LinkLost(f"{self.url}: {self._down_reason}")
        reason = self.engine.down_reason()
        if reason is not None:
            raise LinkLost(f"{self.url}: {reason}")

    def _discard_queue(self) -> None:
        """Forget the words waiting (condition held); they count as taken."""
        count = self._queue.clear()
        self._before_drop = 0
        self.discarded += count
        self.engine.consumed(count, time.monotonic())

    def _peer_stalled(self) -> None:
        """The peer took nothing for a whole ``write_timeout``: it counts as gone."""
        timeout = self.stream.write_timeout
        with self._cond:
            self.engine.peer_stalled()
        log.info("%s: the peer took nothing for %g s", self.url, timeout)
        raise LinkLost(f"{self.url}: the peer stopped reading (nothing taken for {timeout:g} s)")

    def _try_connect(self, timeout: float) -> bool:
        try:
            return self.stream.connect(timeout)
        except (OSError, ValueError) as exc:
            log.debug("%s: no stream: %s", self.url, exc)
            return False

    def _reap(self) -> None:
        """Release a lost stream (read lock held)."""
        if self._released_gen != self._gen:
            with self._write_lock:
                self._released_gen = self._gen
                try:
                    self.stream.disconnect()
                except (OSError, ValueError) as exc:
                    log.debug("%s: releasing the stream: %s", self.url, exc)

    def _stream_up(self) -> None:
        """A new stream (read lock held): the engine greets."""
        with self._write_lock, self._cond:
            self._carry = b""
            self._connected = True
            self._released_gen = self._gen
            self._queue.clear()
            self._before_drop = 0
            self.engine.connect(time.monotonic())
        log.debug("%s: stream up", self.url)
        with contextlib.suppress(LinkLost):  # lost at once: wait_peer tries again
            self._flush(wait=True)

    def _lost(self, reason: str) -> None:
        """The stream is gone (any thread); the reader releases it later."""
        with self._cond:
            if not self._connected or self._closed:
                return
            self._connected = False
            self._gen += 1
            self.engine.disconnect()
            self._down_reason = (
                f"{self.what} on {self.stream.url} is gone ({reason}); "
                f"wait_peer() opens it again every {self.retry:g} s"
            )
            if not self._drop_unreported:  # told once, even if a new stream came meanwhile
                self._drop_unreported = True
                self._drop_text = self._down_reason
                self._before_drop = len(self._queue)  # they came first: recv gives them
            self._cond.notify_all()
        log.log(self.lost_level, "%s: %s", self.url, self._down_reason)
        self.stream.abort()

    def _pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` and act on it (read lock held)."""
        if not self._connected:
            self._reap()
            if self._before_drop:  # words of the lost stream first, then the next one
                return
            if not (self.stream.accept_in_recv and self._try_connect(0.0)):
                return
            self._stream_up()
        wait = timeout
        while True:
            try:
                data = self.stream.read_some(self.engine.read_bytes, wait)
            except (OSError, ValueError) as exc:
                self._lost(f"read failed: {exc}")
                return
            if data is None:
                self._lost("end of stream")
                return
            if not self._act(data):
                return
            if not data or len(self._queue) >= self.engine.max_queued:
                break
            wait = 0.0
        with contextlib.suppress(LinkLost):  # recorded by _lost: the caller learns of it
            self._flush(wait=False)

    def _act(self, data: bytes) -> bool:
        """Feed ``data`` and the time to the engine, act on its events; False if lost."""
        gone: str | None = None
        fatal: PortError | None = None
        with self._cond:
            now = time.monotonic()
            peer = self.engine.peer_ready  # as the events go: words follow its changes
            try:
                events = [*self.engine.receive(data, now), *self.engine.handle_timer(now)]
            except PortError as exc:
                events, fatal = [], exc
            for event in events:
                if isinstance(event, WordsArrived):
                    if self.engine.ready and peer:
                        self._queue.put(event.buffer)
                    else:  # no side takes words while a READY line is down
                        self.discarded += len(event.buffer.words)
                        self.engine.consumed(len(event.buffer.words), now)
                elif isinstance(event, PeerReady):
                    peer = event.ready
                    if event.ready:
                        log.info("%s: the peer is READY", self.url)
                    else:
                        log.info("%s: the peer dropped READY", self.url)
                        if not self._drop_unreported:  # the words before it come first
                            self._before_drop = len(self._queue)
                        self._drop_unreported = True
                        self._drop_text = "the peer dropped READY"
                elif isinstance(event, StreamGone):
                    gone = event.reason
                else:
                    self._on_event(event)
            self._cond.notify_all()
        if fatal is not None:
            self._lost(str(fatal))
            raise fatal
        if gone is not None:
            self._lost(gone)
            return False
        return True

    def _wait_for_input(self, timeout: float) -> None:
        """Wait for something from the peer: read it ourselves, or let the reader do it."""
        if self._read_lock.acquire(blocking=False):
            try:
                self._pump(timeout)
            finally:
                self._read_lock.release()
        else:
            with self._cond:
                self._cond.wait(timeout)

    def _flush(self, *, wait: bool) -> None:
        """Write the engine's output; ``wait``: for the write lock too."""
        stall = self.engine.control_stall_s
        if stall is None:
            stall = self.stream.write_timeout
        while True:
            if not self._write_lock.acquire(blocking=wait):
                return
            try:
                self._write_out(stall)
            finally:
                self._write_lock.release()
            with self._cond:  # another thread may have added bytes while we held the lock
                if not self.engine.has_output or not self._connected:
                    return
            wait = False

    def _write_out(self, stall: float) -> bool:
        """Write the engine's output until it has none (write lock held); False if the
        peer stalled and the engine kept the stream."""
        while True:
            with self._cond:
                data, gen = self.engine.data_to_send(), self._gen
            if not data:
                return True
            if not self._write(data, gen, stall):
                return False

    def _write(self, data: bytes, gen: int, stall: float, *, closing: bool = False) -> bool:
        """Write ``data`` after any carry (write lock held): True when all went, False
        when it stalled and the engine keeps the stream; LinkLost when it is lost."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        view = memoryview(data)
        done = 0
        last_progress = time.monotonic()
        while done < len(view):
            if gen != self._gen or not self._connected:
                raise LinkLost(f"{self.url}: {self._down_reason}")
            if self._closed and not closing:
                raise PortError(f"{self.url}: the port was closed")
            try:
                written = self.stream.write_some(view[done:], self._SLICE_S)
            except (OSError, ValueError) as exc:
                self._lost(f"write failed: {exc}")
                raise LinkLost(f"{self.url}: {self._down_reason}") from exc
            now = time.monotonic()
            if written:
                done += written
                last_progress = now
            elif now - last_progress > stall:
                with self._cond:
                    carry = self.engine.write_stalled(len(view) - done)
                if carry is None:
                    self._lost(f"it took nothing for {stall:g} s")
                    raise LinkLost(f"{self.url}: {self._down_reason}")
                self._carry = carry
                return False
        return True


class StreamWordPort(EnginePort):
    """The raw word stream (:mod:`bridge.wordstream`) over a byte stream.

    What ``tcp://``, ``tcp-listen://``, ``serial://``, ``rs485://``, ``ftdi://`` and
    ``pty://`` open. The stream's public attributes are the port's too (``address`` of a
    listener, ``device`` of a pty or a serial device).
    """

    def __init__(self, url: str, stream: ByteStream) -> None:
        self.words = WordStreamEngine(url)
        #: the decoder (its ``invalid`` count)
        self.decoder = self.words.decoder
        super().__init__(url, stream, self.words, retry=self._SLICE_S)

    def __getattr__(self, name: str) -> object:
        if name.startswith("_") or name in ("stream", "engine"):
            raise AttributeError(name)
        return getattr(self.stream, name)

"""``loop://NAME``: an in-process pair of ports joined back to back, with a fault hook.

The first :func:`open_loop` of a name is end A, the second end B; a third is an error
until both ends are closed, which frees the name. :func:`loop_pair` opens both ends at
once. The two ends may be used from different threads (one lock and condition per
pair); nothing here starts a thread.

Each end drives its own READY line and sees the other's, as on the cable
(docs/link-profile.md, section 1.2). When an end drops READY or closes, the words on
their way to it are discarded (it takes nothing while its READY is down); the words it
sent before reach the other end first, which then raises
:class:`~bridge.ports.base.LinkLost` as :mod:`bridge.ports.base` says.

``hook``: a callable ``hook(buffer, direction) -> buffer``, ``direction`` ``"a->b"`` or
``"b->a"``, applied to every buffer in transit (in the sending thread); it may return a
changed buffer (flipped bits, fewer words). :func:`bridge.ports.faults.hook` builds one
from a fault spec. A pair holds at most :data:`MAX_IN_TRANSIT` words each way: a sender
waits for room (up to ``write_timeout``, then the peer counts as gone for that call).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from bridge.acrnema.physical import WordBuffer
from bridge.ports._buffers import WordQueue, as_buffer, empty_buffer
from bridge.ports._url import parse_url
from bridge.ports.base import MAX_RECV_WORDS, LinkLost, PortError, WordPort

__all__ = ["MAX_IN_TRANSIT", "Hook", "LoopPort", "active_names", "loop_pair", "open_loop"]

log = logging.getLogger(__name__)

Hook = Callable[[WordBuffer, str], WordBuffer]
MAX_IN_TRANSIT = 16 * MAX_RECV_WORDS

_names_lock = threading.Lock()
_links: dict[str, _Link] = {}
_anonymous = itertools.count(1)


class _Link:
    """What the two ends share: the queues each way, the READY lines, the hook."""

    def __init__(self, name: str, hook: Hook | None) -> None:
        self.name = name
        self.hook = hook
        self.cond = threading.Condition()
        self.queues = (WordQueue(), WordQueue())  # words waiting at end 0 (A), end 1 (B)
        self.ready = [False, False]
        self.open = [False, False]
        self.closed = [False, False]
        self.unreported_drop = [False, False]  # end i has not yet been told of a drop
        self.before_drop = [0, 0]  # words waiting at end i that came before that drop

    def drop(self, side: int) -> None:
        """End ``side``'s READY goes down (lock held): it takes nothing more, so the words
        waiting for it are discarded; the words it sent before are delivered first."""
        peer = 1 - side
        if self.ready[side] and self.open[side] and not self.unreported_drop[peer]:
            self.unreported_drop[peer] = True
            self.before_drop[peer] = len(self.queues[peer])
        self.ready[side] = False
        self.queues[side].clear()
        self.before_drop[side] = 0
        self.cond.notify_all()


class LoopPort(WordPort):
    """One end of a ``loop://`` pair."""

    write_timeout: float = 5.0

    def __init__(self, link: _Link, side: int) -> None:
        self._link = link
        self._side = side
        self._peer = 1 - side
        self.url = f"loop://{link.name}"
        self.end = "ab"[side]
        self._direction = "a->b" if side == 0 else "b->a"

    @property
    def name(self) -> str:
        return self._link.name

    @property
    def hook(self) -> Hook | None:
        """The pair's fault hook (shared by both ends); settable."""
        return self._link.hook

    @hook.setter
    def hook(self, hook: Hook | None) -> None:
        with self._link.cond:
            self._link.hook = hook

    @property
    def peer_ready(self) -> bool:
        link = self._link
        return link.open[self._peer] and link.ready[self._peer] and not link.closed[self._side]

    def send(self, buffer: WordBuffer) -> None:
        link = self._link
        buffer = as_buffer(buffer)
        with link.cond:
            self._check()
            hook = link.hook
        if hook is not None:
            buffer = as_buffer(hook(buffer, self._direction))
        if not len(buffer.words):
            return
        queue = link.queues[self._peer]
        deadline = time.monotonic() + self.write_timeout
        with link.cond:
            while True:
                self._check()
                if len(queue) + len(buffer.words) <= MAX_IN_TRANSIT or not len(queue):
                    queue.put(buffer)
                    link.cond.notify_all()
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkLost(f"{self.url}: the peer took nothing for {self.write_timeout} s")
                link.cond.wait(left)

    def recv(self, timeout: float) -> WordBuffer:
        link = self._link
        queue = link.queues[self._side]
        deadline = time.monotonic() + max(0.0, timeout)
        with link.cond:
            while True:
                before = link.before_drop[self._side]
                if before:  # words the peer sent before its drop: first
                    buffer = queue.take(min(before, MAX_RECV_WORDS))
                    link.before_drop[self._side] -= len(buffer.words)
                    link.cond.notify_all()
                    return buffer
                self._check()
                if len(queue):
                    buffer = queue.take(MAX_RECV_WORDS)
                    link.cond.notify_all()  # room for a waiting sender
                    return buffer
                left = deadline - time.monotonic()
                if left <= 0:
                    return empty_buffer()
                link.cond.wait(left)

    def set_ready(self, ready: bool) -> None:
        link = self._link
        with link.cond:
            self._check_open()
            if ready:
                link.ready[self._side] = True
                link.cond.notify_all()
            else:
                link.drop(self._side)

    def wait_peer(self, timeout: float) -> bool:
        link = self._link
        with link.cond:
            self._check_open()
            seen = link.cond.wait_for(
                lambda: self.peer_ready or link.closed[self._side], max(0.0, timeout)
            )
            self._check_open()
            if seen:
                link.unreported_drop[self._side] = False
                if link.before_drop[self._side]:  # the caller starts afresh
                    link.queues[self._side].take(link.before_drop[self._side])
                    link.before_drop[self._side] = 0
            return bool(seen)

    def close(self) -> None:
        link = self._link
        with link.cond:
            if link.closed[self._side]:
                return
            link.drop(self._side)
            link.closed[self._side] = True
            link.open[self._side] = False
            both_closed = all(link.closed) or not any(link.open)
        if both_closed:
            with _names_lock:
                if _links.get(link.name) is link:
                    del _links[link.name]
        log.debug("%s: end %s closed", self.url, self.end)

    def _check_open(self) -> None:
        if self._link.closed[self._side]:
            raise PortError(f"{self.url}: end {self.end} is closed")

    def _check(self) -> None:
        """LinkLost unless both READY lines are up (lock held); a drop is told once."""
        self._check_open()
        link = self._link
        if link.before_drop[self._side]:  # recv tells it, after the words before it
            raise LinkLost(f"{self.url}: the peer dropped READY")
        if link.unreported_drop[self._side]:
            link.unreported_drop[self._side] = False
            raise LinkLost(f"{self.url}: the peer dropped READY")
        if not link.ready[self._side]:
            raise LinkLost(f"{self.url}: this side's READY is dropped")
        if not self.peer_ready:
            gone = "closed" if link.closed[self._peer] else "not READY"
            raise LinkLost(f"{self.url}: the peer is {gone}")


def _open_end(name: str, hook: Hook | None, *, new: bool = False) -> LoopPort:
    with _names_lock:
        link = _links.get(name)
        if link is None:
            link = _links[name] = _Link(name, hook)
            side = 0
        elif new:
            raise PortError(f"loop://{name} is already in use")
        elif not link.open[1] and not link.closed[1]:
            side = 1
            if hook is not None:
                link.hook = hook
        else:
            raise PortError(f"loop://{name} already has two ends")
        with link.cond:
            link.open[side] = True
            link.ready[side] = True
            link.cond.notify_all()
    log.debug("loop://%s: end %s open", name, "ab"[side])
    return LoopPort(link, side)


def open_loop(url: str, hook: Hook | None = None) -> LoopPort:
    """Open ``loop://NAME``: end A the first time, end B the second."""
    name = parse_url(url, "loop", {}).location  # checked whole before anything opens
    if not name:
        raise PortError(f"{url}: give a name, as in loop://demo")
    return _open_end(name, hook)


def loop_pair(name: str | None = None, hook: Hook | None = None) -> tuple[LoopPort, LoopPort]:
    """Both ends of a new ``loop://`` pair (a fresh name when ``name`` is None)."""
    if name is None:
        with _names_lock:
            while True:
                name = f"pair-{next(_anonymous)}"
                if name not in _links:
                    break
    a = _open_end(name, hook, new=True)
    return a, _open_end(name, None)


def active_names() -> list[str]:
    """The names with at least one end open (a leak check for tests)."""
    with _names_lock:
        return sorted(_links)

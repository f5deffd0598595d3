"""One end of the link at work: a :class:`~bridge.acrnema.stack.LinkStack` over a port.

The stack is sans-I/O; this is the loop that gives it a port and a clock. The service
(``acrnema-bridge run``), the emulator's roles and the benchmark all drive the link
through :meth:`Endpoint.poll`: send what is due, wait for words until the next deadline
(or the caller's timeout), feed them in, fire timers, and return the events.

Losing the link, either way, ends in the same place: a fresh stack, an
:class:`~bridge.acrnema.session.Aborted` event for a connection that was open, and a
:class:`~bridge.acrnema.stack.LinkDown` event with the reason. It is logged at INFO
when no connection was open or being made and no message was arriving (a scanner that
released its connection, then dropped READY or closed the line, has ended its session
normally), at WARNING otherwise.

* the peer dropped READY or the connection went (the port raises
  :class:`bridge.ports.base.LinkLost`, or the peer is found not READY): the words it
  sent before (the port gives them first; its last ACK may be one) go to the stack,
  then reset, and wait for the peer to be READY again;
* the peer was found not READY at the start of a poll and came back while we waited
  (a drop the port had not reported yet is forgotten by ``wait_peer``, as the base rules
  say): reset too if any word went either way since the stack last started, because
  the peer started afresh (an interface box unplugged and plugged back while this side
  was not polling: docs/box-protocol.md, section 10);
* our data link gave up on a frame (retry limit): drop our READY for
  ``session.abort_quiet_s`` so that the peer resets too, discard whatever arrives in the
  meantime, reset, and raise READY again (docs/link-profile.md, section 1.2).

For the status server (:mod:`bridge.status`), the endpoint keeps whether the link is up
(the peer READY), since when, when words last arrived, and the frame counts of every
stack it ran (:meth:`Endpoint.link_figures`); another thread may read them at any time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from bridge.acrnema.session import NoSession, SessionState
from bridge.acrnema.stack import Aborted, LinkDown, LinkStack, StackEvent
from bridge.ports import base
from bridge.profile import REFERENCE, Profile

__all__ = ["FRAME_KINDS", "Endpoint"]

log = logging.getLogger("bridge.endpoint")  # the name users' log filters know

FRAME_KINDS = ("sent", "received", "damaged", "retransmitted")
"""The kinds of :meth:`Endpoint.frame_counts` (``acrnema_bridge_link_frames_total``)."""


def _frame_counts(stack: LinkStack) -> dict[str, int]:
    link = stack.datalink
    return {
        "sent": link.frames_sent,
        "received": link.frames_received,
        "damaged": link.damaged_frames,
        "retransmitted": link.retransmissions,
    }


class Endpoint:
    """A link stack driven over a port."""

    def __init__(
        self,
        port: base.WordPort,
        profile: Profile = REFERENCE,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.profile = profile
        self.stack = LinkStack(profile)
        self.clock = clock
        self.words_in = 0
        self.words_out = 0
        self.resets = 0
        self._pending: list[StackEvent] = []  # events met by drain(), for the next poll()
        self._used = False  # words went either way since the stack last started
        self.up = False
        """Whether the peer was READY at the last poll (the link is up)."""
        self.up_changed = time.monotonic()
        """When :attr:`up` last changed (:func:`time.monotonic`); the start if never."""
        self.last_words = 0.0
        """When words last arrived (:func:`time.monotonic`); 0: never."""
        self._frames_before = dict.fromkeys(FRAME_KINDS, 0)  # of the stacks reset so far
        self._frames_lock = threading.Lock()  # a reader never sees a stack counted twice

    def flush(self) -> None:
        """Put on the wire whatever the stack has to send now."""
        buffer = self.stack.transmit(self.clock())
        if len(buffer.words):
            self._used = True
            self.port.send(buffer)
            self.words_out += len(buffer.words)

    def poll(self, timeout: float) -> list[StackEvent]:
        """One turn of the loop, waiting at most ``timeout`` seconds for words."""
        events, self._pending = self._pending, []
        if not self.port.peer_ready:
            if self.up:  # what the peer sent before it went belongs to this stack
                return events + self._take_the_rest("the peer is gone")
            self._set_up(False)
            if not self.port.wait_peer(timeout):
                self._pending = events
                return []
        if not self.up:
            self._set_up(True)
            if self._used:  # the peer went and came back: it starts afresh, so do we
                return events + self._lost("the peer's READY dropped and came back")
        try:
            self.flush()
            now = self.clock()
            deadline = self.stack.next_deadline()
            wait = timeout if deadline is None else min(timeout, max(0.0, deadline - now))
            buffer = self.port.recv(wait)
            now = self.clock()
            if len(buffer.words):
                self._used = True
                self.words_in += len(buffer.words)
                self.last_words = now
                events += self.stack.receive(buffer.words, buffer.parity, now)
            events += self.stack.handle_timer(now)
            if not self.stack.down:
                self.flush()
        except base.LinkLost as exc:
            return events + self._take_the_rest(f"the peer is gone: {exc}")
        if self.stack.down:
            self._recover()
        return events

    def _take_the_rest(self, reason: str) -> list[StackEvent]:
        """The link went: feed the stack the words that came before the drop (the port
        gives them before it reports it; the scanner's last ACK may be one), then reset."""
        events: list[StackEvent] = []
        try:
            while len((buffer := self.port.recv(0.0)).words):
                now = self.clock()
                self.words_in += len(buffer.words)
                self.last_words = now
                events += self.stack.receive(buffer.words, buffer.parity, now)
        except base.LinkLost as exc:
            reason = f"the peer is gone: {exc}"
        return events + self._lost(reason)

    def _lost(self, reason: str) -> list[StackEvent]:
        # between sessions a scanner going away is its normal end; during one it is not.
        # With no session layer (session.mode "none") there are no sessions, and no
        # RELEASE tells the end: a scanner that drops READY right after acknowledging its
        # last response (the ACK is heard first: _take_the_rest) has ended normally.
        # Between messages (nothing half received) is then its normal end.
        session = self.stack.session
        if isinstance(session, NoSession):
            idle = True
        else:
            idle = session.state in (SessionState.IDLE, SessionState.QUIET)
        level = logging.INFO if idle and not self.stack.receiving else logging.WARNING
        log.log(level, "link down: %s", reason)
        events: list[StackEvent] = list(self.stack.session.link_lost(self.clock(), reason))
        self._reset_stack()
        self._set_up(False)
        self._used = False
        self.resets += 1
        return [*events, LinkDown(reason)]

    def _recover(self) -> None:
        """After a data link failure: drop READY so that the peer resets too, then reset."""
        quiet = self.profile.session.abort_quiet_s
        log.warning("data link failed: dropping READY for %.2f s and resetting", quiet)
        self.port.set_ready(False)
        end = self.clock() + quiet
        while (left := end - self.clock()) > 0:
            try:
                self.port.recv(min(left, 0.05))  # what arrives now belongs to the old link
            except base.LinkLost:
                time.sleep(min(left, 0.05))
        self._reset_stack()
        self._used = False
        self.resets += 1
        self.port.set_ready(True)

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.up_changed = time.monotonic()

    def _reset_stack(self) -> None:
        """A fresh stack; the old one's frame counts are kept in the totals."""
        with self._frames_lock:
            for kind, count in _frame_counts(self.stack).items():
                self._frames_before[kind] += count
            self.stack.reset()

    def frame_counts(self) -> dict[str, int]:
        """Frames since the endpoint was made, by kind (:data:`FRAME_KINDS`), over every
        stack reset; safe to call from any thread."""
        with self._frames_lock:
            now = _frame_counts(self.stack)
            return {kind: self._frames_before[kind] + now[kind] for kind in FRAME_KINDS}

    def abort(self, reason: int) -> None:
        """Abort the connection, if any, and put the ABORT on the wire (best effort)."""
        self.stack.abort(reason, self.clock())
        with contextlib.suppress(base.LinkLost):
            self.flush()

    def drain(self, timeout: float) -> bool:
        """Poll until everything sent is acknowledged; False if ``timeout`` passed first
        or the link went down. The events met on the way come out of the next poll()."""
        end = self.clock() + timeout
        while not self.stack.idle:
            left = end - self.clock()
            if left <= 0:
                return False
            events = self.poll(min(left, 0.05))
            self._pending += events
            if any(isinstance(event, (LinkDown, Aborted)) for event in events):
                return False
        return True

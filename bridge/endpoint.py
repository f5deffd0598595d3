"""One end of the link at work: a :class:`~bridge.acrnema.stack.LinkStack` over a port.

The stack is sans-I/O; this is the loop that gives it a port and a clock. The service
(``acrnema-bridge run``), the emulator's roles and the benchmark all drive the link
through :meth:`Endpoint.poll`: send what is due, wait for words until the next deadline
(or the caller's timeout), feed them in, fire timers, and return the events.

Losing the link, either way, ends in the same place: a fresh stack, an
:class:`~bridge.acrnema.session.Aborted` event for a connection that was open, and a
:class:`~bridge.acrnema.stack.LinkDown` event with the reason.

* the peer dropped READY or the connection went (the port raises
  :class:`bridge.ports.base.LinkDown`): reset, and wait for the peer to be READY again;
* the peer was found not READY at the start of a poll and came back while we waited
  (a drop the port had not reported yet is forgotten by ``wait_peer``, as the base rules
  say): reset too if any word went either way since the stack last started, because
  the peer started afresh (an interface box unplugged and plugged back while this side
  was not polling: docs/box-protocol.md, section 10);
* our data link gave up on a frame (retry limit): drop our READY for
  ``session.abort_quiet_s`` so that the peer resets too, discard whatever arrives in the
  meantime, reset, and raise READY again (docs/link-profile.md, section 1.2).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.acrnema.commands import Message
from bridge.acrnema.stack import (
    Aborted,
    ConnectRequested,
    LinkDown,
    LinkStack,
    MessageArrived,
    MessageLost,
    MessageUnreadable,
    Released,
    StackEvent,
)
from bridge.ports import base
from bridge.profile import REFERENCE, Profile

__all__ = ["Answer", "Endpoint", "Responder", "ResponderStats", "StoreHandler"]

log = logging.getLogger(__name__)


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
            if not self.port.wait_peer(timeout):
                self._pending = events
                return []
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
                events += self.stack.receive(buffer.words, buffer.parity, now)
            events += self.stack.handle_timer(now)
            if not self.stack.down:
                self.flush()
        except base.LinkDown as exc:
            return events + self._lost(f"the peer is gone: {exc}")
        if self.stack.down:
            self._recover()
        return events

    def _lost(self, reason: str) -> list[StackEvent]:
        log.warning("link down: %s", reason)
        events: list[StackEvent] = list(self.stack.session.link_lost(self.clock(), reason))
        self.stack.reset()
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
            except base.LinkDown:
                time.sleep(min(left, 0.05))
        self.stack.reset()
        self._used = False
        self.resets += 1
        self.port.set_ready(True)

    def abort(self, reason: int) -> None:
        """Abort the connection, if any, and put the ABORT on the wire (best effort)."""
        self.stack.abort(reason, self.clock())
        with contextlib.suppress(base.LinkDown):
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


@dataclass(frozen=True)
class Answer:
    """A handler's answer to a store request: a status name of the profile, and a comment."""

    status: str
    comment: str = ""


StoreHandler = Callable[[Message], Answer]


@dataclass
class ResponderStats:
    """What a :class:`Responder` has done so far."""

    connections: int = 0
    stored: int = 0
    refused: int = 0
    echoes: int = 0
    unknown: int = 0
    lost: int = 0  # messages that never arrived whole (link lost, bad packets, timeout)
    link_resets: int = 0
    bytes_in: int = 0
    last_error: str = ""


class Responder:
    """The receiving side of the link: accepts a connection and answers requests.

    The service (``acrnema-bridge run``) and the emulator's receiver role differ only in
    their store handler. A response goes out only after the handler returns, so a
    handler that makes the object durable first gives the scanner a success only for an
    image that is safe. Echo is answered with success; find, get, cancel and unknown
    command codes with ``cannot_understand`` (the code logged as it came).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        on_store: StoreHandler,
        *,
        ae_title: str = "",
        grace: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_store = on_store
        self.ae_title = ae_title
        self.table = endpoint.stack.commands
        self.grace = endpoint.profile.transport.reassembly_timeout_s if grace is None else grace
        self.stats = ResponderStats()

    def serve(self, stop: threading.Event, *, until: Callable[[], bool] | None = None) -> None:
        """Answer until ``stop`` is set (or ``until()`` is true).

        On ``stop`` a message that has started to arrive is finished (for at most
        ``grace`` seconds) and answered; then an open connection is aborted, so nothing
        is ever half-stored and the scanner keeps any image it was not told is stored.
        """
        stopping_since: float | None = None
        while True:
            if stop.is_set() or (until is not None and until()):
                now = self.endpoint.clock()
                stopping_since = now if stopping_since is None else stopping_since
                busy = self.endpoint.stack.receiving and not self.endpoint.stack.down
                if not busy or now - stopping_since > self.grace:
                    if busy:
                        log.warning("stopping: a message still arriving is refused")
                    self.endpoint.abort(5)
                    self.endpoint.drain(1.0)
                    return
            for event in self.endpoint.poll(0.05):
                self._handle(event)

    def _handle(self, event: StackEvent) -> None:
        stack, now = self.endpoint.stack, self.endpoint.clock()
        if isinstance(event, ConnectRequested):
            log.info("connection from %s to %s", event.calling, event.called)
            stack.accept(now)
            self.stats.connections += 1
        elif isinstance(event, MessageArrived):
            self._request(event.message)
        elif isinstance(event, MessageUnreadable):
            self.stats.refused += 1
            self.stats.last_error = event.reason
            log.warning("message refused: %s", event.reason)
            if event.message is not None and not event.message.command.is_response:
                status = "out_of_resources" if event.too_large else "cannot_understand"
                self._answer(event.message, Answer(status, event.reason))
        elif isinstance(event, MessageLost):
            self.stats.lost += 1
            self.stats.last_error = event.reason
            log.warning("message lost: %s", event.reason)
        elif isinstance(event, LinkDown):
            self.stats.link_resets += 1
            self.stats.last_error = event.reason
        elif isinstance(event, Aborted):
            log.info("connection aborted: %s", event.text)
        elif isinstance(event, Released):
            log.info("connection released")

    def _request(self, message: Message) -> None:
        command = message.command
        known = self.table.name(command.field)
        if command.is_response:
            log.warning("unexpected response %04XH ignored", command.field)
            return
        if known is None or known[0] not in ("store", "echo"):
            self.stats.unknown += 1
            what = known[0] if known else "unknown"
            log.warning("%s command %04XH answered cannot_understand", what, command.field)
            self._answer(message, Answer("cannot_understand", f"command {command.field:04X}H"))
            return
        if known[0] == "echo":
            self.stats.echoes += 1
            self._answer(message, Answer("success"))
            return
        self.stats.bytes_in += len(message.data)
        if not self.table.has_data_set(command) or not message.data:
            self._answer(message, Answer("cannot_understand", "store request without a data set"))
            return
        answer = self.on_store(message)
        if answer.status == "success":
            self.stats.stored += 1
        else:
            self.stats.refused += 1
            self.stats.last_error = answer.comment
        self._answer(message, answer)

    def _answer(self, request: Message, answer: Answer) -> None:
        stack = self.endpoint.stack
        if not stack.session.is_open:
            return  # the connection went while the handler ran: the scanner keeps its image
        code = self.table.statuses.get(answer.status, self.table.status("cannot_understand"))
        stack.send(
            self.table.make_response(request.command, code, answer.comment), self.endpoint.clock()
        )
        with contextlib.suppress(base.LinkDown):
            self.endpoint.flush()

"""The answering role of the link: accept a connection, answer each request.

:class:`Responder` drives an :class:`~bridge.link.endpoint.Endpoint` and hands every store
request to a store handler, a function from the request :class:`Message` to an
:class:`Answer`. The service (``acrnema-bridge run``, :class:`bridge.service.Bridge`) and
the emulator's receiver role (:class:`bridge.link.receiver.FolderWriter`) differ only in
that handler. The requesting role, its counterpart, is :mod:`bridge.link.requester`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

from bridge.acrnema.commands import Message
from bridge.acrnema.stack import (
    Aborted,
    ConnectRequested,
    DataObjectArrived,
    LinkDown,
    MessageArrived,
    MessageLost,
    MessageUnreadable,
    Released,
    StackEvent,
)
from bridge.link.endpoint import Endpoint
from bridge.ports import base
from bridge.profile import LinkStatus

__all__ = ["Answer", "Responder", "ResponderStats", "StoreHandler"]

log = logging.getLogger("bridge.endpoint")  # the name users' log filters know


@dataclass(frozen=True)
class Answer:
    """A handler's answer to a store request: a status name of the profile, and a comment."""

    status: LinkStatus | str  # a LinkStatus, or a name the profile adds
    comment: str = ""


StoreHandler = Callable[[Message], Answer]


@dataclass
class _GroupCopy:
    """An SPI group copy in progress (GCBEGIN answered, GCEND not yet)."""

    expected: int  # data objects announced by GCBEGIN (0001,0081)
    stored: int = 0
    failure: Answer | None = None  # the first store that failed: GCEND answers with it
    awaiting: Message | None = None  # a SEND answered whose data set is still to come


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

    The dialect knobs of the profile (docs/link-profile.md, "Dialect knobs: messages")
    change three answers. CANCEL is answered with the status ``application.cancel_answer``
    names (and whatever group copy was in progress is dropped), or not at all (``none``).
    With ``application.spi_commands``, a store request carrying an SPI command in group
    0001 is a step of a group copy: GCBEGIN opens it (with the number of data objects),
    READY and SEND are answered with success, each data set goes to the store handler as
    it arrives (in the SEND request, or after its reply with
    ``application.data_set_after_reply``), and GCEND is answered with success only when
    every announced data set was stored; otherwise with the first failure, or
    ``not_stored``. A step out of order is answered ``cannot_understand``.

    ``accepted``: the logical addresses allowed to send requests (docs/link.md, "Accepted
    peers"); when given, a request whose connection's calling address or whose Initiator
    (0000,0200) is another one is answered ``not_stored``, logged at WARNING, and never
    reaches the store handler. Empty: every address is accepted.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        on_store: StoreHandler,
        *,
        ae_title: str = "",
        grace: float | None = None,
        accepted: Collection[str] = (),
    ) -> None:
        self.endpoint = endpoint
        self.on_store = on_store
        self.ae_title = ae_title
        self.table = endpoint.stack.commands
        self.grace = endpoint.profile.transport.reassembly_timeout_s if grace is None else grace
        self.accepted = frozenset(address.strip() for address in accepted)
        self.stats = ResponderStats()
        self._group: _GroupCopy | None = None

    def serve(self, stop: threading.Event, *, until: Callable[[], bool] | None = None) -> None:
        """Answer until ``stop`` is set (or ``until()`` is true).

        On ``stop`` a message that has started to arrive is finished (for at most
        ``grace`` seconds) and answered; then an open connection is aborted, so nothing
        is ever half-stored and the scanner keeps any image it was not told is stored.
        An SPI group copy under way counts as a message arriving: its GCEND is awaited and
        answered (within the same ``grace``), so a receiver stopped by ``until`` after the
        last data set still tells the scanner the group was stored.
        """
        stopping_since: float | None = None
        while True:
            if stop.is_set() or (until is not None and until()):
                now = self.endpoint.clock()
                stopping_since = now if stopping_since is None else stopping_since
                busy = not self.endpoint.stack.down and (
                    self.endpoint.stack.receiving or self._group is not None
                )
                if not busy or now - stopping_since > self.grace:
                    if busy:
                        log.warning("stopping: a message or group copy still arriving is refused")
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
        elif isinstance(event, DataObjectArrived):
            self._data_object(event.data)
        elif isinstance(event, MessageUnreadable):
            self.stats.refused += 1
            self.stats.last_error = event.reason
            log.warning("message refused: %s", event.reason)
            self._object_failed(event.message, event.reason, event.too_large)
            if event.message is not None and not event.message.command.is_response:
                status = (
                    LinkStatus.OUT_OF_RESOURCES if event.too_large else LinkStatus.CANNOT_UNDERSTAND
                )
                self._answer(event.message, Answer(status, event.reason))
        elif isinstance(event, MessageLost):
            self.stats.lost += 1
            self.stats.last_error = event.reason
            log.warning("message lost: %s", event.reason)
            self._object_failed(None, event.reason, False)
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
        refusal = self._source_refused(message)
        if refusal is not None:
            self.stats.refused += 1
            self.stats.last_error = refusal
            log.warning("message %d refused: %s", command.message_id, refusal)
            self._answer(message, Answer(LinkStatus.NOT_STORED, refusal))
            return
        params = self.table.params
        if (
            known is not None
            and known[0] == "cancel"
            and params.cancel_answer != "cannot_understand"
        ):
            self._cancel(message)
            return
        spi = params.spi_commands and command.spi_command is not None
        if known is not None and known[0] == "store" and spi:
            self._spi(message)
            return
        if known is None or known[0] not in ("store", "echo"):
            self.stats.unknown += 1
            what = known[0] if known else "unknown"
            log.warning("%s command %04XH answered cannot_understand", what, command.field)
            self._answer(
                message, Answer(LinkStatus.CANNOT_UNDERSTAND, f"command {command.field:04X}H")
            )
            return
        if known[0] == "echo":
            self.stats.echoes += 1
            self._answer(message, Answer(LinkStatus.SUCCESS))
            return
        if not self.table.has_data_set(command) or not message.data:
            self.stats.bytes_in += len(message.data)
            self._answer(
                message, Answer(LinkStatus.CANNOT_UNDERSTAND, "store request without a data set")
            )
            return
        self._answer(message, self._store(message))

    def _store(self, message: Message) -> Answer:
        """The store handler's answer to ``message``, counted."""
        self.stats.bytes_in += len(message.data)
        answer = self.on_store(message)
        if answer.status == LinkStatus.SUCCESS:
            self.stats.stored += 1
        else:
            self.stats.refused += 1
            self.stats.last_error = answer.comment
        return answer

    def _cancel(self, message: Message) -> None:
        """CANCEL under ``application.cancel_answer``: drop any group copy, answer or not."""
        if self._group is not None:
            log.warning("group copy cancelled after %d data set(s) stored", self._group.stored)
        self._group = None
        answer = self.table.params.cancel_answer
        log.info("cancel %d: %s", message.command.message_id, f"answered {answer}")
        if answer != "none":
            self._answer(message, Answer(answer))

    def _spi(self, message: Message) -> None:
        """One step of an SPI group copy (GCBEGIN, READY, SEND, GCEND: evidence N3)."""
        command = message.command
        spi = self.table.spi_name(command.spi_command)
        name = None if spi is None or spi[1] else spi[0]
        group = self._group
        if name == "gcbegin" and group is None:
            self._group = _GroupCopy(max(1, command.spi_objects or 1))
            self._answer(message, Answer(LinkStatus.SUCCESS))
        elif name == "ready" and group is not None:
            self._answer(message, Answer(LinkStatus.SUCCESS))
        elif name == "send" and group is not None and group.awaiting is None:
            if self.table.params.data_set_after_reply:
                group.awaiting = message
                self.endpoint.stack.expect_data_object()
                self._answer(message, Answer(LinkStatus.SUCCESS))
            elif not message.data:
                self._answer(
                    message, Answer(LinkStatus.CANNOT_UNDERSTAND, "SEND without a data set")
                )
            else:
                self._stored(group, self._store(message))
                self._answer(message, group.failure or Answer(LinkStatus.SUCCESS))
        elif name == "gcend" and group is not None and group.awaiting is None:
            self._group = None
            if group.failure is None and group.stored < group.expected:
                group.failure = Answer(
                    LinkStatus.NOT_STORED,
                    f"{group.stored} of {group.expected} data sets stored",
                )
            self._answer(message, group.failure or Answer(LinkStatus.SUCCESS))
        else:
            what = "unknown" if spi is None else spi[0]
            self.stats.unknown += 1
            log.warning("SPI %s command %04XH out of order", what, command.spi_command or 0)
            self._answer(
                message,
                Answer(
                    LinkStatus.CANNOT_UNDERSTAND, f"SPI command {command.spi_command or 0:04X}H"
                ),
            )

    def _stored(self, group: _GroupCopy, answer: Answer) -> None:
        if answer.status == LinkStatus.SUCCESS:
            group.stored += 1
        elif group.failure is None:
            group.failure = answer

    def _object_failed(self, message: Message | None, reason: str, too_large: bool) -> None:
        """A message that never arrived whole while a data set was awaited: it was that."""
        group = self._group
        if message is None and group is not None and group.awaiting is not None:
            group.awaiting = None
            status = LinkStatus.OUT_OF_RESOURCES if too_large else LinkStatus.CANNOT_UNDERSTAND
            group.failure = group.failure or Answer(status, reason)

    def _data_object(self, data: bytes) -> None:
        """The data set of an answered SEND (``application.data_set_after_reply``)."""
        group = self._group
        if group is None or group.awaiting is None:
            self.stats.refused += 1
            log.warning("a data set nobody asked for is dropped (%d bytes)", len(data))
            return
        request, group.awaiting = group.awaiting, None
        self._stored(group, self._store(Message(request.command, data)))

    def _source_refused(self, message: Message) -> str | None:
        """Why ``message`` is refused for where it comes from; None: it is accepted."""
        if not self.accepted:
            return None
        calling = self.endpoint.stack.session.calling.strip()
        initiator = message.command.initiator.strip()
        if not calling and not initiator:
            return "no source address: not accepted (link.accepted_peers)"
        for address, what in ((calling, "calling address"), (initiator, "Initiator")):
            if address and address not in self.accepted:
                return f"{what} {address!r} is not accepted (link.accepted_peers)"
        return None

    def _answer(self, request: Message, answer: Answer) -> None:
        stack = self.endpoint.stack
        if not stack.session.is_open:
            return  # the connection went while the handler ran: the scanner keeps its image
        code = self.table.params.statuses.get(
            answer.status, self.table.status(LinkStatus.CANNOT_UNDERSTAND)
        )
        stack.send(
            self.table.make_response(request.command, code, answer.comment), self.endpoint.clock()
        )
        with contextlib.suppress(base.LinkLost):
            self.endpoint.flush()

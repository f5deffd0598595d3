"""The link stack: physical words up to application messages, one object per link end.

:class:`LinkStack` composes the layers of the reference profile (docs/link-profile.md)
for one end of the 50-pin link, the bridge's or the emulator's alike::

    application   bridge.acrnema.commands   Message <-> command group + data set bytes
    session       bridge.acrnema.session    CONNECT / ACCEPT / DATA / RELEASE / ABORT PDUs
    transport     bridge.acrnema.transport  PDUs <-> packets (segments, reassembly)
    data link     bridge.acrnema.datalink   packets <-> CRC frames, ACK/NAK, retransmission
    physical      bridge.acrnema.physical   frames <-> 16-bit words with a parity line

It is sans-I/O like each layer: words off the wire go in with :meth:`LinkStack.receive`,
words for the wire come out of :meth:`LinkStack.transmit`, the user's calls
(:meth:`connect`, :meth:`send`, ...) queue PDUs, and time is passed in
(:meth:`handle_timer`, :meth:`next_deadline`). Every parameter comes from a
:class:`~bridge.profile.Profile`: each layer takes its section of it as its parameters.

The dialect knobs of ``[application]`` (docs/link-profile.md, "Dialect knobs: messages")
act here for every user of the stack: (0000,0001) Length to End written and checked, an
SPI group 0001 read as part of the command, and a message refused (reported as
:class:`MessageUnreadable` with what was read, so that a request can be answered) when
it lacks a required Length to End, carries a Recognition Code not accepted, or a station
ID longer than ``station_id_length``. For the SPI flow where the data set follows the
reply, :meth:`LinkStack.expect_data_object` says that the next message is a bare data
set (reported as :class:`DataObjectArrived`), and :meth:`LinkStack.send_data_object`
sends one.

The dialect knobs of the profile (docs/link-profile.md section 8) choose the layers:
:class:`~bridge.acrnema.transport.NoTransport` for ``transport.mode = "none"``,
:class:`~bridge.acrnema.session.NoSession` for ``session.mode = "none"``; byte orders
that differ, or ``auto``, are converted element by element (:func:`to_wire`,
:func:`from_wire`, :func:`detect_orders`).

A data link failure (a frame unacknowledged ``retry_limit`` times) leaves the stack
unusable: it reports :class:`LinkDown` and the owner of the port drops READY, waits
``session.abort_quiet_s``, and calls :meth:`reset` (:mod:`bridge.endpoint` does this).
Both ends then start again from sequence number 0: that is how the reference profile
re-synchronises (section 1.2: a READY line that drops means that side is gone). These
rules are the stack's state table, :data:`STACK_TABLE` (UP and DOWN; the one idiom of
:mod:`bridge.acrnema.table`): a user call while DOWN is a local protocol error.
"""

from __future__ import annotations

import enum
import logging
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bridge.acrnema import datalink as dl
from bridge.acrnema.commands import CommandTable, Message, decode_message, encode_message
from bridge.acrnema.datalink import DataLink, LinkProtocolError
from bridge.acrnema.elements import vr_for
from bridge.acrnema.physical import WordBuffer
from bridge.acrnema.session import (
    Aborted,
    Connected,
    ConnectRequested,
    DataIndication,
    NoSession,
    Rejected,
    Released,
    Session,
    SessionEvent,
)
from bridge.acrnema.table import Rule, Table
from bridge.acrnema.transport import (
    MessageReceived,
    MessageRefused,
    NoTransport,
    ReassemblyTimedOut,
    Transport,
    TransportError,
)
from bridge.profile import REFERENCE, Profile

log = logging.getLogger(__name__)

__all__ = [
    "STACK_TABLE",
    "Aborted",
    "ConnectRequested",
    "Connected",
    "DataObjectArrived",
    "LinkDown",
    "LinkStack",
    "MessageArrived",
    "MessageLost",
    "MessageUnreadable",
    "Rejected",
    "Released",
    "StackAction",
    "StackEvent",
    "StackInput",
    "StackState",
    "detect_orders",
    "from_wire",
    "to_wire",
]


class StackState(enum.Enum):
    UP = "up"
    DOWN = "down"  # the data link failed: reset() first


class StackInput(enum.Enum):
    CALL = "connect(), accept(), reject(), release(), send()"
    ABORT = "abort()"
    WORDS = "words"  # receive()
    TIMER = "timer"  # handle_timer()
    LINK_FAILED = "data link failed"
    RESET = "reset()"


class StackAction(enum.Enum):
    PASS = enum.auto()  # to the layers
    ABORT_QUIETLY = enum.auto()  # the session aborts; nothing goes to a failed link
    DROP = enum.auto()
    GO_DOWN = enum.auto()
    RESTART = enum.auto()


def _stack_error(reason: str, remote: bool) -> LinkProtocolError:
    return LinkProtocolError(reason, layer="stack", remote=remote)


_U, _D, _SI, _SA = StackState.UP, StackState.DOWN, StackInput, StackAction

STACK_TABLE: Table[StackState, StackInput, StackAction] = Table(
    "stack",
    StackState,
    StackInput,
    {
        (_U, _SI.CALL): Rule(_SA.PASS, _U, "to the session"),
        (_U, _SI.ABORT): Rule(_SA.PASS, _U, "abort the session, send its ABORT"),
        (_U, _SI.WORDS): Rule(_SA.PASS, _U, "up through the layers"),
        (_U, _SI.TIMER): Rule(_SA.PASS, _U, "the layers' timers"),
        (_U, _SI.LINK_FAILED): Rule(
            _SA.GO_DOWN, _D, "drop the partial message, report Aborted and LinkDown"
        ),
        (_U, _SI.RESET): Rule(_SA.RESTART, _U, "new layers, sequence numbers from 0"),
        (_D, _SI.ABORT): Rule(_SA.ABORT_QUIETLY, _D, "abort the session, send nothing"),
        (_D, _SI.WORDS): Rule(_SA.DROP, _D, "drop"),
        (_D, _SI.TIMER): Rule(_SA.DROP, _D, "nothing is due"),
        (_D, _SI.RESET): Rule(_SA.RESTART, _U, "new layers, sequence numbers from 0"),
    },
    _stack_error,
    reason="the link is {state}: reset() first",
)
"""The stack as a whole: a failed data link takes it DOWN until :meth:`LinkStack.reset`."""

del _U, _D, _SI, _SA


@dataclass(frozen=True)
class MessageArrived:
    """An application message arrived whole on the open connection."""

    message: Message


@dataclass(frozen=True)
class MessageUnreadable:
    """A message that cannot be taken: too large, or its command group is malformed.

    ``message`` holds what could be read of it (the command group and the start of the
    data set) when that much was readable, so that the application can answer it.
    """

    reason: str
    message: Message | None = None
    too_large: bool = False


@dataclass(frozen=True)
class MessageLost:
    """Part of a message arrived and the rest never will (broken packet order, timeout)."""

    reason: str


@dataclass(frozen=True)
class LinkDown:
    """The data link gave up on a frame: the link must be reset (see the module doc)."""

    reason: str


@dataclass(frozen=True)
class DataObjectArrived:
    """A data set sent after its request's reply arrived whole (after
    :meth:`LinkStack.expect_data_object`): the bytes in the link's encoding."""

    data: bytes


StackEvent = (
    SessionEvent | MessageArrived | MessageUnreadable | MessageLost | LinkDown | DataObjectArrived
)


def _swap_words(data: bytes) -> bytes:
    """Each byte pair swapped (an odd length padded): little-endian words <-> big."""
    if len(data) % 2:
        data += b"\x00"
    return np.frombuffer(data, dtype="<u2").astype(">u2").tobytes()


# Byte orders by kind of value (docs/link-profile.md, section 8): text values follow
# physical.text_byte_order, numbers wider than a word physical.binary_byte_order, and
# 16-bit numbers are one word either way. Which kind an element is comes from the data
# dictionary (bridge.acrnema.elements.vr_for); an element it does not know is words.
_TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
_WIDE_VRS = {"UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "OL": 4, "OF": 4, "OD": 8}
_CANON_HEAD = {"big": struct.Struct(">HHI"), "little": struct.Struct("<HHI")}
_WORDS_HEAD = struct.Struct(">HHHH")


def _value_to_wire(value: bytes, vr: str, text: str, binary: str, canon: str) -> bytes:
    """One value from its implicit VR encoding in ``canon`` order to wire words."""
    if vr in _TEXT_VRS:
        return value if text == "big" else _swap_words(value)
    width = _WIDE_VRS.get(vr, 2)
    whole = len(value) - len(value) % width
    order = ">" if canon == "big" else "<"
    numbers = np.frombuffer(value[:whole], dtype=f"{order}u{width}")
    words = numbers.astype(f">u{width}").view(">u2").reshape(-1, width // 2)
    if binary == "little":
        words = words[:, ::-1]
    rest = value[whole:]
    return words.tobytes() + (rest if canon == "big" else _swap_words(rest))


def _value_from_wire(value: bytes, vr: str, text: str, binary: str, canon: str) -> bytes:
    """One value from wire words to its implicit VR encoding in ``canon`` order."""
    if vr in _TEXT_VRS:
        return value if text == "big" else _swap_words(value)
    width = _WIDE_VRS.get(vr, 2)
    whole = len(value) - len(value) % width
    words = np.frombuffer(value[:whole], dtype=">u2").reshape(-1, width // 2)
    if binary == "little":
        words = words[:, ::-1]
    numbers = np.ascontiguousarray(words).view(f">u{width}")
    order = ">" if canon == "big" else "<"
    rest = value[whole:]
    return numbers.astype(f"{order}u{width}").tobytes() + (
        rest if canon == "big" else _swap_words(rest)
    )


def to_wire(data: bytes, text: str, binary: str, canon: str) -> bytes:
    """A message encoded implicit VR in ``canon`` order as the link carries it with the
    given text and binary byte orders (element by element; the inverse of
    :func:`from_wire`). A length past the end, or undefined, ends the walk: the rest
    travels as words."""
    out: list[bytes] = []
    head, pos = _CANON_HEAD[canon], 0
    while pos + 8 <= len(data):
        group, element, length = head.unpack_from(data, pos)
        if length > len(data) - pos - 8:
            break
        high, low = length >> 16, length & 0xFFFF
        out.append(
            _WORDS_HEAD.pack(group, element, *((high, low) if binary == "big" else (low, high)))
        )
        value = data[pos + 8 : pos + 8 + length]
        out.append(_value_to_wire(value, vr_for(group << 16 | element), text, binary, canon))
        pos += 8 + length
    out.append(_value_to_wire(data[pos:], "UN", text, binary, canon))
    return b"".join(out)


def from_wire(data: bytes, text: str, binary: str, canon: str) -> bytes:
    """Wire words (as bytes, most significant first) back to the implicit VR encoding in
    ``canon`` order (the inverse of :func:`to_wire`)."""
    out: list[bytes] = []
    head, pos = _CANON_HEAD[canon], 0
    while pos + 8 <= len(data):
        group, element, first, second = _WORDS_HEAD.unpack_from(data, pos)
        length = first << 16 | second if binary == "big" else second << 16 | first
        if length > len(data) - pos - 8:
            break
        out.append(head.pack(group, element, length))
        value = data[pos + 8 : pos + 8 + length]
        out.append(_value_from_wire(value, vr_for(group << 16 | element), text, binary, canon))
        pos += 8 + length
    out.append(_value_from_wire(data[pos:], "UN", text, binary, canon))
    return b"".join(out)


def _command_parses(data: bytes, binary: str) -> bool:
    """Whether ``data`` (wire words) reads as a command group with ``binary`` order:
    group 0000 elements in ascending order, each length even and within the data."""
    pos, previous = 0, -1
    while pos + 8 <= len(data):
        group, element, first, second = _WORDS_HEAD.unpack_from(data, pos)
        if group != 0:
            break
        length = first << 16 | second if binary == "big" else second << 16 | first
        if element <= previous or length % 2 or length > len(data) - pos - 8:
            return False
        previous, pos = element, pos + 8 + length
    return previous >= 0


_PLAINTEXT = (b"ACR-NEMA", b"SPI ")  # Recognition Codes seen (N2): known plaintext


def detect_orders(data: bytes) -> tuple[str, str]:
    """(text, binary) byte orders of a message as it came off the link (``auto``).

    Binary: the order in which the command group's 32-bit lengths read as a valid
    command group (group 0000, ascending elements, even lengths inside the message);
    big when both do. Text: the Recognition Code (0000,0010), which begins "ACR-NEMA"
    or "SPI " read one way round or the other; without one, equal to the binary order.
    """
    binary = (
        "big" if _command_parses(data, "big") or not _command_parses(data, "little") else "little"
    )
    pos = 0
    while pos + 8 <= len(data):
        group, element, first, second = _WORDS_HEAD.unpack_from(data, pos)
        length = first << 16 | second if binary == "big" else second << 16 | first
        if group != 0 or length > len(data) - pos - 8:
            break
        if element == 0x0010:
            value = data[pos + 8 : pos + 8 + length]
            if value.startswith(_PLAINTEXT):
                return "big", binary
            if _swap_words(value).startswith(_PLAINTEXT):
                return "little", binary
            break
        pos += 8 + length
    return binary, binary


class LinkStack:
    """One end of the link, all layers."""

    def __init__(self, profile: Profile = REFERENCE) -> None:
        self.profile = profile
        self.commands = CommandTable(profile.application)
        self._order = profile.physical.binary_byte_order
        self._text = profile.physical.text_byte_order
        # equal, given orders: the whole message swapped or not (the reference path);
        # otherwise element by element (to_wire, from_wire), "auto" detected per message
        self._plain = self._text == self._order != "auto"
        self._canon = "big" if self._order == "auto" else self._order  # messages up here
        self._seen = ("big", "big")  # auto: the orders the peer last used, ours to answer in
        self.state = StackState.DOWN  # (DOWN, reset()) builds the layers
        self.reset()

    def _enter(self, cause: StackInput) -> StackAction:
        """Take the rule of :data:`STACK_TABLE` for ``cause``: its action."""
        rule = STACK_TABLE.rule(self.state, cause)
        self.state = rule.next_state
        return rule.action

    @property
    def down(self) -> bool:
        """The data link failed: :meth:`reset` first."""
        return self.state is StackState.DOWN

    def reset(self) -> None:
        """Start again from nothing: new sequence numbers, no partial message, no session."""
        self._enter(StackInput.RESET)
        physical = self.profile.physical
        packets = self.profile.transport.mode == "packets"
        self.datalink = DataLink(self.profile.datalink, physical.parity, units=not packets)
        self.transport = (
            Transport(self.profile.transport, physical.binary_byte_order)
            if packets
            else NoTransport(self.profile.transport)
        )
        pdus = self.profile.session.mode == "pdus"
        self.session = Session(self.profile.session) if pdus else NoSession(self.profile.session)
        self._next_message_id = 1
        self._objects_expected = 0  # bare data sets to come (the SPI data-after-reply flow)

    # ------------------------------------------------------------------ user calls

    def _up(self) -> None:
        self._enter(StackInput.CALL)

    def _put(self, pdu: bytes | None) -> None:
        if pdu:  # None or b"": nothing to send (NoSession)
            self.datalink.send(self.transport.packets(pdu)[1])

    def connect(self, calling: str, called: str, now: float) -> None:
        self._up()
        self._put(self.session.connect(calling, called, now))

    def accept(self, now: float) -> None:
        self._up()
        self._put(self.session.accept(now))

    def reject(self, reason: int, now: float) -> None:
        self._up()
        self._put(self.session.reject(reason, now))

    def release(self, now: float) -> None:
        self._up()
        self._put(self.session.release(now))

    def abort(self, reason: int, now: float) -> None:
        action = self._enter(StackInput.ABORT)
        pdu = self.session.abort(reason, now)
        if action is StackAction.PASS:
            self._put(pdu)

    def next_message_id(self) -> int:
        """A Message ID (0000,0110) for a new request, 1 to 65535."""
        value = self._next_message_id
        self._next_message_id = value % 0xFFFF + 1
        return value

    def send(self, message: Message, now: float) -> None:
        """Send an application message on the open connection."""
        self._up()
        written = self.profile.application.length_to_end_written
        if not self._plain:
            text, binary = self._orders(*self._seen)
            canon = encode_message(message, self._canon, length_to_end=written)
            self._put(self.session.send(to_wire(canon, text, binary, self._canon), now))
            return
        data = encode_message(message, self._order, length_to_end=written)
        if self._order == "little":
            data = _swap_words(data)
        self._put(self.session.send(data, now))

    def send_data_object(self, data: bytes, now: float) -> None:
        """Send a bare data set (link encoding) as its own message: the SPI flow in which
        the data set follows the reply (``application.data_set_after_reply``)."""
        self._up()
        self._put(self.session.send(_swap_words(data) if self._order == "little" else data, now))

    def expect_data_object(self) -> None:
        """The next message to arrive is a bare data set (call it before the reply that
        asks for it goes out); it is reported as :class:`DataObjectArrived`."""
        self._objects_expected += 1

    # ------------------------------------------------------------------ the wire

    def transmit(self, now: float) -> WordBuffer:
        """Words to put on the wire now."""
        return self.datalink.transmit(now)

    @property
    def idle(self) -> bool:
        """Nothing waits to be sent or acknowledged."""
        return self.datalink.idle

    @property
    def receiving(self) -> bool:
        """Part of a message has arrived."""
        return self.transport.receiving

    def receive(
        self, words: npt.ArrayLike, parity_line: npt.ArrayLike | None, now: float
    ) -> list[StackEvent]:
        """Words off the wire; the events they complete."""
        if self._enter(StackInput.WORDS) is StackAction.DROP:
            return []
        events: list[StackEvent] = []
        for item in self.datalink.receive(words, parity_line, now):
            if isinstance(item, dl.LinkFailed):
                events += self._link_failed(item, now)
                break
            if isinstance(item, dl.DataLost):  # ack_mode none: nothing will be resent
                self.transport.reset()
                events.append(MessageLost(f"data link: {item.reason}"))
                continue
            for event in self.transport.receive(item.data, now, item.last):
                events += self._transport_event(event, now)
        return events

    def _link_failed(self, failed: dl.LinkFailed, now: float) -> list[StackEvent]:
        self._enter(StackInput.LINK_FAILED)
        self.transport.reset()
        reason = f"data link failed: frame {failed.sequence}, {failed.reason}"
        return [*self.session.link_lost(now, reason), LinkDown(reason)]

    def _transport_event(self, event: object, now: float) -> list[StackEvent]:
        if isinstance(event, MessageReceived):
            session_events, replies = self.session.receive(event.data, now)
            for pdu in replies:
                self._put(pdu)
            out: list[StackEvent] = []
            for item in session_events:
                out.append(self._message(item.data) if isinstance(item, DataIndication) else item)
            return out
        if isinstance(event, MessageRefused):
            head = event.first_segment
            message = None
            if self._objects_expected:
                self._objects_expected -= 1
            elif self.profile.session.mode == "none":
                message = self._readable(head)
            elif head[:2] == self._pdu_code("data"):
                message = self._readable(head[2:])
            limit = self.profile.transport.max_message_bytes
            return [MessageUnreadable(f"message over {limit} bytes refused", message, True)]
        if isinstance(event, (ReassemblyTimedOut, TransportError)) and self._objects_expected:
            self._objects_expected -= 1  # that was the data set awaited
        if isinstance(event, ReassemblyTimedOut):
            return [MessageLost(f"message {event.message_id}: reassembly timed out")]
        if isinstance(event, TransportError):
            return [MessageLost(event.reason)]
        raise AssertionError(f"unknown transport event {event!r}")

    def _pdu_code(self, name: str) -> bytes:
        return self.profile.session.pdu_types[name].to_bytes(2, "big")

    def _orders(self, text: str, binary: str) -> tuple[str, str]:
        """The profile's (text, binary) orders, each ``auto`` one taken from these."""
        return (
            text if self._text == "auto" else self._text,
            binary if self._order == "auto" else self._order,
        )

    def _decode(self, data: bytes) -> Message:
        if not self._plain:
            if "auto" in (self._text, self._order):
                self._seen = self._orders(*detect_orders(data))
                log.debug("byte orders detected: text %s, binary %s", *self._seen)
            text, binary = self._orders(*self._seen)
            ap = self.profile.application
            return decode_message(
                from_wire(data, text, binary, self._canon),
                self._canon,
                spi=bool(ap.spi_commands),
                length_to_end=ap.length_to_end_written or ap.length_to_end_required,
            )
        if self._order == "little":
            data = _swap_words(data)
        ap = self.profile.application
        return decode_message(
            data,
            self._order,
            spi=bool(ap.spi_commands),
            length_to_end=ap.length_to_end_written or ap.length_to_end_required,
        )

    def _refusal(self, message: Message) -> str | None:
        """Why the dialect knobs refuse ``message``; None: they take it."""
        ap, command = self.profile.application, message.command
        if ap.length_to_end_required and command.length_to_end is None:
            return "no (0000,0001) Length to End (application.length_to_end_required)"
        accepted = {code.strip() for code in ap.accepted_recognition_codes}
        if accepted and command.recognition_code.strip() not in accepted:
            return (
                f"Recognition Code {command.recognition_code!r} is not accepted "
                "(application.accepted_recognition_codes)"
            )
        for what, address in (("Initiator", command.initiator), ("Receiver", command.receiver)):
            if ap.station_id_length and len(address) > ap.station_id_length:
                return (
                    f"{what} {address!r} is longer than {ap.station_id_length} characters "
                    "(application.station_id_length)"
                )
        return None

    def _readable(self, data: bytes) -> Message | None:
        try:
            return self._decode(data)
        except LinkProtocolError:
            return None

    def _message(self, data: bytes) -> StackEvent:
        if self._objects_expected:
            self._objects_expected -= 1
            return DataObjectArrived(_swap_words(data) if self._order == "little" else data)
        try:
            message = self._decode(data)
        except LinkProtocolError as exc:
            return MessageUnreadable(exc.reason)
        refusal = self._refusal(message)
        return MessageArrived(message) if refusal is None else MessageUnreadable(refusal, message)

    # ------------------------------------------------------------------ time

    def handle_timer(self, now: float) -> list[StackEvent]:
        if self._enter(StackInput.TIMER) is StackAction.DROP:
            return []
        events: list[StackEvent] = []
        for item in self.datalink.handle_timer(now):
            if isinstance(item, dl.LinkFailed):
                return self._link_failed(item, now)
        for event in self.transport.handle_timer(now):
            events += self._transport_event(event, now)
        session_events, pdus = self.session.handle_timer(now)
        for pdu in pdus:
            self._put(pdu)
        return events + list(session_events)

    def next_deadline(self) -> float | None:
        if self.down:
            return None
        times = [
            t
            for t in (
                self.datalink.next_deadline(),
                self.transport.next_deadline(),
                self.session.next_deadline(),
            )
            if t is not None
        ]
        return min(times) if times else None

"""A passive observer of the link: words in, frames, packets and messages out.

Unlike :class:`~bridge.acrnema.stack.LinkStack`, which is one *end* of the link and
answers what it receives, the observer sits on the wire and answers nothing: it is fed
the words of both directions (from a ``spy+`` trace or a logic-analyser capture) and
reports, per direction and with the time of each, every frame (good, damaged, or a
retransmission of one already taken), every packet, and every session PDU and
application message, through the same layers the link uses
(:class:`~bridge.acrnema.framing.FrameDecoder`, :class:`~bridge.acrnema.transport.Transport`,
:func:`~bridge.acrnema.commands.decode_message`). Damage is reported, never raised.

Delivery follows the data link's receiver rules (docs/link-profile.md §2): DATA frames
are put in order by sequence number within the window and taken once; a frame whose
number is already taken, or which was seen damaged before, counts as retransmitted. A
frame numbered 0 far outside the window means both ends restarted (a link reset): the
observer restarts that direction and reports where it lost step. Where the data set
follows the reply (``application.data_set_after_reply``, the SPI flow), the bare data set
after a SEND is reported as that SEND's message, with its data set.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from bridge.acrnema.commands import CommandTable, Message
from bridge.acrnema.datalink import frame_decoder
from bridge.acrnema.framing import (
    LAST,
    Frame,
    FrameDamaged,
    FrameDecoder,
    FrameType,
)
from bridge.acrnema.physical import parity_bits
from bridge.acrnema.stack import LinkStack, _swap_words
from bridge.acrnema.transport import (
    HEADER_BYTES,
    MessageReceived,
    MessageRefused,
    NoTransport,
    ReassemblyTimedOut,
    Transport,
    TransportError,
)
from bridge.errors import LinkProtocolError
from bridge.profile import REFERENCE, Profile

__all__ = ["Observed", "Observer", "Tally"]


@dataclass(frozen=True)
class Observed:
    """One thing seen on the wire: ``layer`` is frame, packet, message or sync."""

    time: float  # seconds (trace) or nanoseconds (capture), as fed
    direction: str
    layer: str
    text: str
    message: Message | None = None


@dataclass
class Tally:
    """Counts of one direction."""

    words: int = 0
    bad_parity: int = 0
    frames_good: int = 0
    frames_damaged: int = 0
    frames_retransmitted: int = 0
    acks: int = 0
    naks: int = 0
    packets: int = 0
    messages: int = 0


@dataclass
class _Direction:
    decoder: FrameDecoder
    transport: Transport
    tally: Tally = field(default_factory=Tally)
    expected: int = 0
    ahead: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # payload, flags
    damaged: set[int] = field(default_factory=set)
    stream: bytearray = field(default_factory=bytearray)  # packet bytes not yet shown
    awaiting: Message | None = None  # an SPI SEND whose data set follows the reply


class Observer:
    """Watches both directions of one link with the layers of ``profile``."""

    def __init__(self, profile: Profile = REFERENCE, directions: tuple[str, ...] = ("A", "B")):
        self.profile = profile
        self.commands = CommandTable(profile.application)
        self._pdu_names = {code: name for name, code in profile.session.pdu_types.items()}
        self._modulo = 1 << profile.datalink.sequence_bits
        self._dirs = {d: self._new() for d in directions}
        # the application layer's reading of a message (byte orders, auto included): the
        # stack's own, so that the observer reads what an end of the link would
        self._reader = LinkStack(profile)

    def _new(self) -> _Direction:
        p = self.profile
        packets = p.transport.mode == "packets"
        decoder = frame_decoder(p.datalink, p.physical.parity, units=not packets)
        order = p.physical.binary_byte_order
        transport = (
            Transport(p.transport, "big" if order == "auto" else order)
            if packets
            else NoTransport(p.transport)
        )
        return _Direction(decoder, transport)

    def tally(self, direction: str) -> Tally:
        return self._dirs[direction].tally

    def restart(self, direction: str) -> None:
        """Forget a direction's partial frames and messages (its end was reset)."""
        tally = self._dirs[direction].tally
        self._dirs[direction] = self._new()
        self._dirs[direction].tally = tally

    def feed(
        self,
        direction: str,
        words: npt.ArrayLike,
        parity: npt.ArrayLike | None,
        times: npt.ArrayLike | float,
    ) -> list[Observed]:
        """Words of one direction with their parity bits and times (one per word, or one
        for all); what they complete, in order."""
        state = self._dirs[direction]
        w = np.asarray(words, np.uint16).reshape(-1)
        par = (
            parity_bits(w, self.profile.physical.parity)
            if parity is None
            else np.asarray(parity, np.uint8).reshape(-1)
        )
        t = np.broadcast_to(np.asarray(times, np.float64), w.shape)
        state.tally.words += len(w)
        if self.profile.physical.parity != "none":
            state.tally.bad_parity += int(
                (parity_bits(w, self.profile.physical.parity) != par).sum()
            )
        out: list[Observed] = []
        # cut before each start word, so that each frame gets the time of its last word
        if self.profile.datalink.delimiting == "start_word":
            cuts = np.flatnonzero(w == self.profile.datalink.start_word)
        else:
            cuts = np.zeros(0, np.intp)
        bounds = [0, *cuts[cuts > 0].tolist(), len(w)]
        for lo, hi in itertools.pairwise(bounds):
            if hi <= lo:
                continue
            now = float(t[hi - 1])
            for item in state.decoder.feed(w[lo:hi], par[lo:hi]):
                out += self._frame(direction, state, item, now)
        return out

    def _frame(
        self, direction: str, state: _Direction, item: Frame | FrameDamaged, now: float
    ) -> list[Observed]:
        tally = state.tally
        if isinstance(item, FrameDamaged):
            tally.frames_damaged += 1
            kind = item.kind.name if item.kind is not None else "?"
            number = "?" if item.sequence is None else str(item.sequence)
            if item.kind is FrameType.DATA and item.sequence is not None:
                state.damaged.add(item.sequence)
            return [
                Observed(now, direction, "frame", f"DAMAGED {kind} seq {number}: {item.reason}")
            ]
        if item.type is not FrameType.DATA:
            if item.type is FrameType.ACK:
                tally.acks += 1
            else:
                tally.naks += 1
            tally.frames_good += 1
            return [Observed(now, direction, "frame", f"{item.type.name} seq {item.sequence}")]
        seq = item.sequence
        words = len(item.payload) // 2
        distance = (seq - state.expected) % self._modulo
        out: list[Observed] = []
        if distance >= self._modulo // 2 or seq in state.ahead:
            tally.frames_retransmitted += 1
            return [Observed(now, direction, "frame", f"DATA seq {seq}, {words} words (again)")]
        if distance >= self.profile.datalink.window:
            if seq != 0:
                tally.frames_damaged += 1
                text = f"DATA seq {seq} outside the window (expected {state.expected}): dropped"
                return [Observed(now, direction, "sync", text)]
            self.restart(direction)
            state = self._dirs[direction]
            out.append(Observed(now, direction, "sync", "DATA seq 0: the link restarted"))
        again = seq in state.damaged
        state.damaged.discard(seq)
        if again:
            tally.frames_retransmitted += 1
        else:
            tally.frames_good += 1
        note = " (again, after damage)" if again else ""
        out.append(Observed(now, direction, "frame", f"DATA seq {seq}, {words} words{note}"))
        state.ahead[seq] = (item.payload, item.flags)
        while state.expected in state.ahead:
            payload, flags = state.ahead.pop(state.expected)
            state.expected = (state.expected + 1) % self._modulo
            out += self._payload(direction, state, payload, now, bool(flags & LAST))
        return out

    def _payload(
        self, direction: str, state: _Direction, payload: bytes, now: float, ends: bool = False
    ) -> list[Observed]:
        out: list[Observed] = []
        if self.profile.transport.mode == "packets":
            state.stream += payload
        length = ">HH" if self.profile.physical.binary_byte_order == "little" else ">I"
        while len(state.stream) >= HEADER_BYTES:
            message_id, flags = struct.unpack_from(">HH", state.stream)
            if length == ">I":
                size = struct.unpack_from(">I", state.stream, 4)[0]
            else:
                low, high = struct.unpack_from(">HH", state.stream, 4)
                size = high << 16 | low
            padded = HEADER_BYTES + size + (size & 1)
            if size > self.profile.transport.max_segment_bytes:
                state.stream.clear()  # the transport reports it below
                break
            if len(state.stream) < padded:
                break
            del state.stream[:padded]
            state.tally.packets += 1
            last = " (last)" if flags & 0x8000 else ""
            out.append(
                Observed(
                    now,
                    direction,
                    "packet",
                    f"message {message_id} segment {flags & 0x7FFF}{last}, {size} bytes",
                )
            )
        for event in state.transport.receive(payload, now, ends):
            if isinstance(event, MessageReceived):
                state.tally.messages += 1
                out.append(self._pdu(direction, event.data, now))
            elif isinstance(event, MessageRefused):
                out.append(Observed(now, direction, "sync", "message over the size limit refused"))
            elif isinstance(event, ReassemblyTimedOut):
                out.append(
                    Observed(now, direction, "sync", f"message {event.message_id} timed out")
                )
            elif isinstance(event, TransportError):
                out.append(Observed(now, direction, "sync", f"transport: {event.reason}"))
        return out

    def _pdu(self, direction: str, data: bytes, now: float) -> Observed:
        if self.profile.session.mode == "none":
            return self._message(direction, data, now)
        if len(data) < 2:
            return Observed(now, direction, "sync", "session PDU shorter than its type word")
        code = struct.unpack_from(">H", data)[0]
        name = self._pdu_names.get(code)
        body = data[2:]
        if name is None:
            return Observed(now, direction, "sync", f"unknown session PDU type {code:#06x}")
        if name != "data":
            return Observed(
                now, direction, "message", f"{name.upper()} {self._pdu_detail(name, body)}".rstrip()
            )
        return self._message(direction, body, now)

    def _message(self, direction: str, body: bytes, now: float) -> Observed:
        state = self._dirs[direction]
        if state.awaiting is not None:
            # the bare data set of the SEND before it (application.data_set_after_reply),
            # read as the stack reads one; reported as that SEND with its data set
            data = _swap_words(body) if self._reader._order == "little" else body
            message, state.awaiting = replace(state.awaiting, data=data), None
            return Observed(now, direction, "message", self.describe(message), message)
        try:
            message = self._reader._decode(body)
        except LinkProtocolError as exc:
            return Observed(now, direction, "sync", f"unreadable message: {exc.reason}")
        ap, c = self.profile.application, message.command
        if (
            ap.data_set_after_reply
            and c.spi_command == ap.spi_commands["send"][0]
            and c.data_set_type != ap.data_set_none
            and not message.data
        ):
            state.awaiting = message
        return Observed(now, direction, "message", self.describe(message), message)

    def _pdu_detail(self, name: str, body: bytes) -> str:
        size = self.profile.session.address_length
        step = size + size % 2
        if name in ("connect", "accept"):
            count = 2 if name == "connect" else 1
            names = [
                body[i * step : i * step + size].decode("ascii", "replace").rstrip()
                for i in range(count)
            ]
            return " -> ".join(names)
        if name in ("reject", "abort") and len(body) >= 2:
            return f"reason {struct.unpack_from('>H', body)[0]}"
        return ""

    def describe(self, message: Message) -> str:
        c = message.command
        known = self.commands.name(c.field)
        what = (
            f"{known[0]} {'response' if known[1] else 'request'}"
            if known
            else f"command {c.field:#06x}"
        )
        parts = [f"DATA {what}", f"id {c.message_id}"]
        if c.responded_to is not None:
            parts.append(f"to {c.responded_to}")
        if c.status is not None:
            parts.append(f"status {c.status:#06x} ({self.commands.status_name(c.status)})")
        if message.data:
            parts.append(f"data set {len(message.data)} bytes")
        return ", ".join(parts)

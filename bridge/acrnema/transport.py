"""Transport layer of the reference link profile: packets carrying message segments.

ACR-NEMA's transport layer moved "packets" [S16]; their format is not documented, so
this is our choice (docs/link-profile.md, section 3). A message (one session PDU) is cut
into segments of at most ``max_segment_bytes``; each segment travels in one packet::

    word 0      message ID (16 bits, new for each message the sender starts)
    word 1      last << 15 | segment index (from 0)
    words 2-3   segment length in bytes, 32 bits (high word first when the binary byte
                order is big, low word first when it is little)
    words 4..   the segment, padded to a whole word with one zero byte

Packets are data link payload and may span frames: the data link delivers them in order,
exactly once, so the receiver reads the payloads it gets as one stream of packets.

Reassembly rules (all chosen): segments of a message come with consecutive indices from
0, one message at a time; a packet that breaks the order drops the partial message and is
reported (:class:`TransportError`, a remote protocol error); a message that grows past
``max_message_bytes`` is refused (:class:`MessageRefused`, carrying its first segment so
the application can answer it) and the rest of its segments are skipped; a message
incomplete ``reassembly_timeout`` seconds after its first segment is dropped
(:class:`ReassemblyTimedOut`). Nothing partial is ever passed up.

Sans-I/O: :meth:`Transport.packets` turns a message into bytes for
:meth:`bridge.acrnema.datalink.DataLink.send`, :meth:`Transport.receive` takes what the
data link delivered, and time is passed in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bridge.acrnema.datalink import LinkProtocolError

__all__ = [
    "HEADER_BYTES",
    "MessageReceived",
    "MessageRefused",
    "ReassemblyTimedOut",
    "Transport",
    "TransportError",
    "TransportEvent",
    "TransportParams",
]

HEADER_BYTES = 8
LAST = 0x8000
MAX_INDEX = 0x7FFF


@dataclass(frozen=True)
class TransportParams:
    """The transport's part of the profile (bridge.profile.Transport maps onto it)."""

    max_segment_bytes: int = 65536
    max_message_bytes: int = 512 << 20
    reassembly_timeout: float = 30.0  # seconds
    binary_byte_order: str = "big"

    def __post_init__(self) -> None:
        if self.max_segment_bytes < 2 or self.max_segment_bytes % 2:
            raise ValueError(f"max_segment_bytes {self.max_segment_bytes}: even, at least 2")
        if self.max_message_bytes < 1:
            raise ValueError(f"max_message_bytes {self.max_message_bytes}: at least 1")
        if self.binary_byte_order not in ("big", "little"):
            raise ValueError(f"binary_byte_order {self.binary_byte_order!r}: big or little")


@dataclass(frozen=True)
class MessageReceived:
    """A whole message, reassembled."""

    message_id: int
    data: bytes


@dataclass(frozen=True)
class MessageRefused:
    """A message longer than ``max_message_bytes``; its first segment, to answer it."""

    message_id: int
    size: int  # bytes received when it was refused
    first_segment: bytes


@dataclass(frozen=True)
class ReassemblyTimedOut:
    """A message whose segments stopped coming; what had arrived is dropped."""

    message_id: int
    size: int


@dataclass(frozen=True)
class TransportError:
    """The peer broke the packet rules; the partial message, if any, is dropped."""

    reason: str


TransportEvent = MessageReceived | MessageRefused | ReassemblyTimedOut | TransportError


@dataclass
class _Partial:
    message_id: int
    started: float
    next_index: int = 0
    size: int = 0
    pieces: list[bytes] = field(default_factory=list)
    refused: bool = False


class Transport:
    """One end of the transport layer: packets out, messages in."""

    def __init__(self, params: TransportParams | None = None) -> None:
        self.params = params or TransportParams()
        self._length = ">I" if self.params.binary_byte_order == "big" else ">HH"
        self._next_id = 0
        self._stream = bytearray()  # received payload not yet parsed into packets
        self._partial: _Partial | None = None

    # ------------------------------------------------------------------ sending

    def _pack_length(self, size: int) -> bytes:
        if self._length == ">I":
            return struct.pack(">I", size)
        return struct.pack(">HH", size & 0xFFFF, size >> 16)  # low word first

    def _unpack_length(self, raw: bytes | bytearray) -> int:
        if self._length == ">I":
            return int(struct.unpack(">I", raw)[0])
        low, high = struct.unpack(">HH", raw)
        return int(high) << 16 | int(low)

    def packets(self, message: bytes) -> tuple[int, bytes]:
        """The message ID chosen for ``message`` and its packets, ready for the data link.

        Raises :class:`LinkProtocolError` (local) for a message the profile forbids.
        """
        p = self.params
        if len(message) > p.max_message_bytes:
            raise LinkProtocolError(
                f"message of {len(message)} bytes is over the limit of {p.max_message_bytes}",
                layer="transport",
            )
        count = max(1, -(-len(message) // p.max_segment_bytes))
        if count > MAX_INDEX + 1:
            raise LinkProtocolError(f"message needs {count} segments", layer="transport")
        message_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF
        view = memoryview(message)
        out: list[bytes] = []
        for index in range(count):
            segment = view[index * p.max_segment_bytes : (index + 1) * p.max_segment_bytes]
            flags = index | (LAST if index == count - 1 else 0)
            out.append(struct.pack(">HH", message_id, flags) + self._pack_length(len(segment)))
            out.append(bytes(segment))
            if len(segment) % 2:
                out.append(b"\x00")
        return message_id, b"".join(out)

    # ------------------------------------------------------------------ receiving

    @property
    def receiving(self) -> bool:
        """Part of a message (or of a packet) has arrived and the rest has not."""
        return self._partial is not None or bool(self._stream)

    def receive(self, payload: bytes, now: float) -> list[TransportEvent]:
        """Data link payload, in order; returns the messages it completed."""
        self._stream += payload
        events: list[TransportEvent] = []
        while len(self._stream) >= HEADER_BYTES:
            message_id, flags = struct.unpack_from(">HH", self._stream)
            size = self._unpack_length(self._stream[4:8])
            if size > self.params.max_segment_bytes:
                events.append(self._broken(f"segment of {size} bytes announced"))
                self._stream.clear()  # the packet stream is out of step: drop what is held
                break
            padded = size + (size & 1)
            if len(self._stream) < HEADER_BYTES + padded:
                break
            segment = bytes(self._stream[HEADER_BYTES : HEADER_BYTES + size])
            del self._stream[: HEADER_BYTES + padded]
            events += self._segment(message_id, flags & MAX_INDEX, bool(flags & LAST), segment, now)
        return events

    def _broken(self, reason: str) -> TransportError:
        self._partial = None
        return TransportError(reason)

    def _segment(
        self, message_id: int, index: int, last: bool, segment: bytes, now: float
    ) -> list[TransportEvent]:
        partial = self._partial
        if partial is None:
            if index != 0:
                return [self._broken(f"message {message_id}: segment {index} without segment 0")]
            partial = self._partial = _Partial(message_id, now)
        elif message_id != partial.message_id or index != partial.next_index:
            got = f"message {message_id} segment {index}"
            want = f"message {partial.message_id} segment {partial.next_index}"
            error = self._broken(f"{got} while {want} was due; partial message dropped")
            if index == 0:  # a new message starts: keep it, report the one broken off
                return [error, *self._segment(message_id, index, last, segment, now)]
            return [error]
        partial.next_index += 1
        partial.size += len(segment)
        event: TransportEvent | None = None
        if not partial.refused:
            if partial.size > self.params.max_message_bytes:
                partial.refused = True
                first = partial.pieces[0] if partial.pieces else segment
                event = MessageRefused(message_id, partial.size, first)
                partial.pieces.clear()
            else:
                partial.pieces.append(segment)
        if last:
            self._partial = None
            if not partial.refused:
                data = partial.pieces[0] if len(partial.pieces) == 1 else b"".join(partial.pieces)
                event = MessageReceived(message_id, data)
        return [] if event is None else [event]

    # ------------------------------------------------------------------ time and reset

    def handle_timer(self, now: float) -> list[TransportEvent]:
        """Drop a message whose reassembly has taken longer than the timeout."""
        partial = self._partial
        if partial is not None and now >= partial.started + self.params.reassembly_timeout:
            self._partial = None
            return [ReassemblyTimedOut(partial.message_id, partial.size)]
        return []

    def next_deadline(self) -> float | None:
        if self._partial is None:
            return None
        return self._partial.started + self.params.reassembly_timeout

    def reset(self) -> None:
        """Forget everything received (the link under it was lost or reset)."""
        self._stream.clear()
        self._partial = None

"""Data link layer of the reference link profile: sliding window, ACK/NAK, retransmission.

Sans-I/O (STYLE rule 1): one :class:`DataLink` per end of the link, for the bridge and
the emulator alike. Payload bytes go in with :meth:`DataLink.send`, words to put on the
wire come out of :meth:`DataLink.transmit`, words off the wire go in with
:meth:`DataLink.receive`, and time is passed in (:meth:`handle_timer`,
:meth:`next_deadline`). No sockets, threads or sleeps.

Rules (our reconstruction, docs/link-profile.md section 2, all *chosen*):

* payloads are cut into DATA frames of at most ``max_payload_words`` words, numbered
  modulo 2^``sequence_bits``; a new frame is sent only while it is fewer than ``window``
  numbers after the oldest unacknowledged one;
* the receiver ACKs every good DATA frame by number (also a duplicate, whose ACK may have
  been lost), NAKs a damaged frame whose number it could read, buffers frames that
  arrive ahead of a gap, and delivers payloads in order, exactly once;
* the sender retransmits a frame at once on a NAK, and when it is not ACKed within
  ``ack_timeout``; after ``retry_limit`` retransmissions of one frame the link has failed
  (:class:`LinkFailed`), and the layer then refuses to work (:class:`LinkProtocolError`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.acrnema.framing import Frame, FrameDamaged, FrameDecoder, FrameType, encode_frame
from bridge.acrnema.physical import Words, parity_bits
from bridge.errors import BridgeError

__all__ = [
    "DataLink",
    "DataReceived",
    "DatalinkParams",
    "LinkFailed",
    "LinkProtocolError",
]


class LinkProtocolError(BridgeError):
    """The data link cannot go on (its retry limit was used up, or it was misused)."""


@dataclass(frozen=True)
class DatalinkParams:
    """The data link's part of the profile (bridge.profile.Datalink maps onto it)."""

    max_payload_words: int = 256
    sequence_bits: int = 8
    window: int = 8
    ack_timeout: float = 0.050  # seconds
    retry_limit: int = 8
    start_word: int = 0xA5C3
    crc_init: int = 0xFFFF
    parity: str = "odd"


@dataclass(frozen=True)
class DataReceived:
    """A payload that arrived in order; ``data`` is whole words (even length)."""

    data: bytes


@dataclass(frozen=True)
class LinkFailed:
    """A frame went unacknowledged ``retry_limit`` times: the link is down."""

    sequence: int
    reason: str


Event = DataReceived | LinkFailed


@dataclass
class _Outstanding:
    sequence: int
    words: Words
    sent_at: float | None = None
    retries: int = 0


@dataclass
class DataLink:
    """One end of the data link."""

    params: DatalinkParams = field(default_factory=DatalinkParams)
    failed: bool = False

    def __post_init__(self) -> None:
        p = self.params
        self._modulo = 1 << p.sequence_bits
        if not 1 <= p.window < self._modulo // 2:
            raise ValueError(f"window {p.window} must be 1 to {self._modulo // 2 - 1}")
        self._decoder = FrameDecoder(p.max_payload_words, p.start_word, p.crc_init, p.parity)
        self._queue: deque[bytes] = deque()  # payload pieces not yet framed
        self._flight: dict[int, _Outstanding] = {}  # sequence -> frame in the window
        self._next_seq = 0
        self._expected = 0  # next sequence number the receiver delivers
        self._ahead: dict[int, bytes] = {}  # frames received beyond a gap
        self._control: list[Words] = []  # ACK and NAK frames to send
        self.retransmissions = 0

    # ------------------------------------------------------------------ sending

    def send(self, payload: bytes) -> None:
        """Queue payload bytes (an odd length is padded with one zero byte)."""
        self._check()
        size = self.params.max_payload_words * 2
        for start in range(0, len(payload), size):
            self._queue.append(payload[start : start + size])

    def _frame(self, kind: FrameType, sequence: int, payload: bytes = b"") -> Words:
        p = self.params
        return encode_frame(kind, sequence, payload, start_word=p.start_word, crc_init=p.crc_init)

    def transmit(self, now: float) -> tuple[Words, npt.NDArray[np.uint8]]:
        """Words (and their parity line) to put on the wire now."""
        out: list[Words] = list(self._control)
        self._control.clear()
        while self._queue and self._span() < self.params.window:
            sequence = self._next_seq
            self._next_seq = (self._next_seq + 1) % self._modulo
            words = self._frame(FrameType.DATA, sequence, self._queue.popleft())
            self._flight[sequence] = _Outstanding(sequence, words)
        for frame in self._flight.values():
            if frame.sent_at is None:
                frame.sent_at = now
                out.append(frame.words)
        words = np.concatenate(out) if out else np.zeros(0, dtype=np.uint16)
        return words, parity_bits(words, self.params.parity)

    def _span(self) -> int:
        """Frames from the oldest unacknowledged one to the next new one.

        The window bounds this span, not the number of unacknowledged frames: a frame
        lost again and again must not let the numbers wrap around onto it.
        """
        if not self._flight:
            return 0
        oldest = next(iter(self._flight))  # dicts keep insertion order: the oldest first
        return (self._next_seq - oldest) % self._modulo

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing unacknowledged, no ACK/NAK waiting to go out."""
        return not self._queue and not self._flight and not self._control

    # ------------------------------------------------------------------ receiving

    def receive(
        self, words: npt.ArrayLike, parity_line: npt.ArrayLike | None, now: float
    ) -> list[Event]:
        """Words off the wire; returns payloads delivered in order."""
        self._check()
        events: list[Event] = []
        for item in self._decoder.feed(words, parity_line):
            if isinstance(item, FrameDamaged):
                if item.sequence is not None:
                    self._control.append(self._frame(FrameType.NAK, item.sequence))
                continue
            events += self._on_frame(item, now)
        return events

    def _on_frame(self, frame: Frame, now: float) -> list[Event]:
        if frame.type is FrameType.ACK:
            self._flight.pop(frame.sequence, None)
            return []
        if frame.type is FrameType.NAK:
            outstanding = self._flight.get(frame.sequence)
            if outstanding is not None:
                return self._retransmit(outstanding)
            return []
        self._control.append(self._frame(FrameType.ACK, frame.sequence))
        distance = (frame.sequence - self._expected) % self._modulo
        if distance >= self._modulo // 2:
            return []  # a duplicate of a delivered frame: its ACK went out again
        self._ahead.setdefault(frame.sequence, frame.payload)
        delivered: list[Event] = []
        while self._expected in self._ahead:
            delivered.append(DataReceived(self._ahead.pop(self._expected)))
            self._expected = (self._expected + 1) % self._modulo
        return delivered

    # ------------------------------------------------------------------ time

    def _retransmit(self, frame: _Outstanding) -> list[Event]:
        if frame.retries >= self.params.retry_limit:
            self.failed = True
            return [LinkFailed(frame.sequence, f"no ACK after {frame.retries} retransmissions")]
        frame.retries += 1
        frame.sent_at = None  # transmit() sends it again
        self.retransmissions += 1
        return []

    def handle_timer(self, now: float) -> list[Event]:
        """Retransmit frames whose ACK is overdue; LinkFailed past the retry limit."""
        self._check()
        events: list[Event] = []
        for frame in list(self._flight.values()):
            if frame.sent_at is not None and now - frame.sent_at >= self.params.ack_timeout:
                events += self._retransmit(frame)
                if self.failed:
                    break
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called, if anything waits for an ACK."""
        times = [f.sent_at for f in self._flight.values() if f.sent_at is not None]
        return min(times) + self.params.ack_timeout if times else None

    def _check(self) -> None:
        if self.failed:
            raise LinkProtocolError("data link: the link has failed (retry limit used up)")

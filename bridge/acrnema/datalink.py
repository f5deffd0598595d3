"""Data link layer of the reference link profile: sliding window, ACK/NAK, retransmission.

Sans-I/O (STYLE rule 1): one :class:`DataLink` per end of the link, for the bridge and
the emulator alike. Payload bytes go in with :meth:`DataLink.send`, words to put on the
wire come out of :meth:`DataLink.transmit`, words off the wire go in with
:meth:`DataLink.receive`, and time is passed in (:meth:`handle_timer`,
:meth:`next_deadline`). No sockets, threads or sleeps. Frames are encoded and decoded by
:mod:`bridge.acrnema.framing`, which documents the layout::

    0xA5C3 | type << 12 | seq | word count | payload words | CRC-16/CCITT-FALSE

with the CRC over the header and payload words (most significant byte first) and the
parity line of :mod:`bridge.acrnema.physical` on every word; a parity error in any word
or a CRC mismatch damages the frame, and the decoder hunts for the next start word.
Each end keeps the headers of its last :data:`HISTORY_FRAMES` frames in
:attr:`DataLink.history` for error reports (never payload bytes).

Rules (our reconstruction, docs/link-profile.md section 2, all *chosen*):

* payloads are cut into DATA frames of at most ``max_payload_words`` words, numbered
  modulo 2^``sequence_bits``; a new frame is sent only while it is fewer than ``window``
  numbers after the oldest unacknowledged one;
* the receiver ACKs every good DATA frame by number (also a duplicate, whose ACK may have
  been lost), NAKs a damaged DATA frame whose number it could read, buffers frames that
  arrive ahead of a gap (within ``window`` numbers of the next one due; a frame beyond
  that is a leftover of a reset link and is dropped unacknowledged), and delivers
  payloads in order, exactly once;
* retransmission is *selective*: the sender resends only the frame that was NAKed or
  whose ACK is overdue (``ack_timeout``), never the whole window; after
  ``retry_limit`` retransmissions of one frame the link has failed (:class:`LinkFailed`),
  and the layer then refuses further work (:class:`LinkProtocolError`).

Dialect knobs (docs/link-profile.md section 8): the frame check and delimiting are the
framing's (:class:`~bridge.acrnema.framing.CheckWord`); with ``ack_mode = "none"`` the
sender sends every frame at once and keeps none, the receiver acknowledges nothing and
reports a damaged or missing frame as :class:`DataLost`, then drops frames up to the
next that begins a unit. Frames then carry unit marks (FIRST, LAST in header bits 8
and 9), as they also do with ``units`` (``transport.mode = "none"``), where
:attr:`DataReceived.last` tells the transport where a message ends.

The rules are two state tables of the one idiom (:mod:`bridge.acrnema.table`),
``(state, input) -> Rule(action, next state, description)``, from which the docs'
diagrams are generated (:func:`state_diagram`): :data:`LINK_TABLE` for the link as a
whole and :data:`FRAME_TABLE` for each DATA frame in the sender's window (the retry
limit is a guard in it: ``NAK_SPENT``, ``TIMEOUT_SPENT``). A pair missing from a table
is a local protocol error (:class:`LinkProtocolError`); the machine stays as it was.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.acrnema.framing import (
    FIRST,
    LAST,
    CheckWord,
    Frame,
    FrameDamaged,
    FrameDecoder,
    FrameType,
    encode_frame,
)
from bridge.acrnema.physical import ParityLine, WordBuffer, Words, parity_bits
from bridge.acrnema.table import Rule, Table, state_diagram
from bridge.errors import LinkProtocolError
from bridge.profile import DatalinkSection

__all__ = [
    "FRAME_TABLE",
    "LINK_TABLE",
    "DataLink",
    "DataLost",
    "DataReceived",
    "Event",
    "FrameAction",
    "FrameInput",
    "FrameRecord",
    "FrameState",
    "LinkAction",
    "LinkFailed",
    "LinkInput",
    "LinkProtocolError",
    "LinkState",
    "frame_decoder",
    "state_diagram",
]


log = logging.getLogger(__name__)

HISTORY_FRAMES = 64  # frames each end remembers for error reports


@dataclass(frozen=True)
class DataReceived:
    """A payload that arrived in order; ``data`` is whole words (even length)."""

    data: bytes
    last: bool = False  # units marked: the frame ended a unit of send() (a message)


@dataclass(frozen=True)
class LinkFailed:
    """A frame went unacknowledged ``retry_limit`` times: the link is down."""

    sequence: int
    reason: str


@dataclass(frozen=True)
class DataLost:
    """With ``ack_mode = "none"``: frames were damaged or missing and are not resent.

    What the sender sent since the last unit boundary is incomplete; the receiver drops
    frames until the next one that begins a unit (:data:`~bridge.acrnema.framing.FIRST`).
    """

    reason: str


Event = DataReceived | LinkFailed | DataLost


@dataclass(frozen=True)
class FrameRecord:
    """One frame in :attr:`DataLink.history`: headers only, never payload bytes."""

    at: float
    direction: str  # "out" or "in"
    kind: str  # DATA, ACK, NAK or DAMAGED
    sequence: int | None
    words: int
    note: str = ""


# ---------------------------------------------------------------------- state tables


class LinkState(enum.Enum):
    OPEN = "open"
    FAILED = "failed"


class LinkInput(enum.Enum):
    SEND = "send"  # send(): payload from the layer above
    TRANSMIT = "transmit"  # transmit(): the wire can take words
    WORDS = "words"  # receive(): words off the wire
    TIMER = "timer"  # handle_timer(): time has passed
    GIVE_UP = "give up"  # a frame used up its retries


class FrameState(enum.Enum):
    UNSENT = "unsent"  # framed, waiting for transmit() (first time or again)
    WAIT_ACK = "wait ack"  # on the wire, its ACK timer running
    DONE = "done"  # acknowledged, out of the window


class FrameInput(enum.Enum):
    TRANSMIT = "transmit"
    ACK = "ack"
    NAK = "nak"  # NAK, the frame has retries left
    NAK_SPENT = "nak, no retries left"  # NAK after retry_limit retransmissions
    TIMEOUT = "timeout"  # ACK overdue, retries left
    TIMEOUT_SPENT = "timeout, no retries left"


class LinkAction(enum.Enum):
    QUEUE = enum.auto()
    PUT_ON_WIRE = enum.auto()
    DECODE = enum.auto()
    TIME_OUT = enum.auto()
    REPORT_FAILED = enum.auto()
    STAY_SILENT = enum.auto()


class FrameAction(enum.Enum):
    SEND = enum.auto()  # on the wire, ACK timer started
    RELEASE = enum.auto()  # out of the window
    IGNORE = enum.auto()
    RESEND = enum.auto()  # counted as a retransmission, waits for transmit() again
    GIVE_UP = enum.auto()  # the link fails (LinkFailed)


def _local(reason: str, remote: bool) -> LinkProtocolError:
    """The data link's error for a pair not in its tables (every input is local)."""
    return LinkProtocolError(reason, remote=remote)


_L, _LI, _LA = LinkState, LinkInput, LinkAction

LINK_TABLE: Table[LinkState, LinkInput, LinkAction] = Table(
    "data link",
    LinkState,
    LinkInput,
    {
        (_L.OPEN, _LI.SEND): Rule(_LA.QUEUE, _L.OPEN, "queue payload"),
        (_L.OPEN, _LI.TRANSMIT): Rule(_LA.PUT_ON_WIRE, _L.OPEN, "frame and put on wire"),
        (_L.OPEN, _LI.WORDS): Rule(_LA.DECODE, _L.OPEN, "decode, ACK/NAK, deliver"),
        (_L.OPEN, _LI.TIMER): Rule(_LA.TIME_OUT, _L.OPEN, "time out overdue frames"),
        (_L.OPEN, _LI.GIVE_UP): Rule(_LA.REPORT_FAILED, _L.FAILED, "report LinkFailed"),
        (_L.FAILED, _LI.TRANSMIT): Rule(_LA.STAY_SILENT, _L.FAILED, "stay silent"),
    },
    _local,
    reason="{input} while the link is {state}",
)
"""The link as a whole; a failed link only answers ``transmit()`` (with nothing)."""

_F, _FI, _FA = FrameState, FrameInput, FrameAction

FRAME_TABLE: Table[FrameState, FrameInput, FrameAction] = Table(
    "data link frame",
    FrameState,
    FrameInput,
    {
        (_F.UNSENT, _FI.TRANSMIT): Rule(_FA.SEND, _F.WAIT_ACK, "put on wire, start timer"),
        (_F.UNSENT, _FI.ACK): Rule(_FA.RELEASE, _F.DONE, "release"),
        (_F.UNSENT, _FI.NAK): Rule(_FA.IGNORE, _F.UNSENT, "ignore"),
        (_F.UNSENT, _FI.NAK_SPENT): Rule(_FA.IGNORE, _F.UNSENT, "ignore"),
        (_F.WAIT_ACK, _FI.ACK): Rule(_FA.RELEASE, _F.DONE, "release"),
        (_F.WAIT_ACK, _FI.NAK): Rule(_FA.RESEND, _F.UNSENT, "resend"),
        (_F.WAIT_ACK, _FI.NAK_SPENT): Rule(_FA.GIVE_UP, _F.WAIT_ACK, "give the link up"),
        (_F.WAIT_ACK, _FI.TIMEOUT): Rule(_FA.RESEND, _F.UNSENT, "resend"),
        (_F.WAIT_ACK, _FI.TIMEOUT_SPENT): Rule(_FA.GIVE_UP, _F.WAIT_ACK, "give the link up"),
        (_F.DONE, _FI.ACK): Rule(_FA.IGNORE, _F.DONE, "ignore"),
        (_F.DONE, _FI.NAK): Rule(_FA.IGNORE, _F.DONE, "ignore"),
        (_F.DONE, _FI.NAK_SPENT): Rule(_FA.IGNORE, _F.DONE, "ignore"),
    },
    _local,
    reason="frame {where}: {input} while {state}",
)
"""One DATA frame in the sender's window. The guard "retries left" splits NAK and
TIMEOUT: a frame retransmitted ``retry_limit`` times gets ``NAK_SPENT`` or
``TIMEOUT_SPENT`` instead, which give the link up (the frame stays as it was). ACK and
NAK for a number not in the window (an ACK of an earlier copy, a NAK of a damaged ACK
frame) meet a frame in ``DONE`` and are ignored."""

del _L, _LI, _LA, _F, _FI, _FA

# the frame actions and guards as plain names: an enum's class attribute costs a
# descriptor call, and these are looked at for every frame
_SEND, _RESEND, _RELEASE, _GIVE_UP = (
    FrameAction.SEND,
    FrameAction.RESEND,
    FrameAction.RELEASE,
    FrameAction.GIVE_UP,
)
_SPENT = {FrameInput.NAK: FrameInput.NAK_SPENT, FrameInput.TIMEOUT: FrameInput.TIMEOUT_SPENT}


# ---------------------------------------------------------------------- the layer


@dataclass
class _Outstanding:
    sequence: int
    words: Words
    state: FrameState = FrameState.UNSENT
    sent_at: float = 0.0
    retries: int = 0


_DONE = _Outstanding(-1, np.zeros(0, dtype=np.uint16), FrameState.DONE)


def frame_decoder(p: DatalinkSection, parity: str, *, units: bool) -> FrameDecoder:
    """The decoder of the frames of ``[datalink]`` ``p`` with the ``[physical]`` parity:
    the profile's frame type codes and frame check, and, where frames carry FIRST and
    LAST (``ack_mode`` none, or ``units``: no transport), those marks. One place, so that
    an end of the link (:class:`DataLink`) and a passive observer of the wire
    (:mod:`bridge.capture.observe`) read frames alike."""
    codes = {kind: p.frame_types[kind.name.lower()] for kind in FrameType}
    check = CheckWord(p.crc, p.crc_init, p.crc_poly, p.crc_refin, p.crc_refout, p.crc_xorout)
    marks = p.ack_mode == "none" or units
    return FrameDecoder(
        p.max_payload_words,
        p.start_word,
        p.crc_init,
        parity,
        codes,
        check,
        p.delimiting,
        FIRST | LAST if marks else 0,
    )


@dataclass
class DataLink:
    """One end of the data link: the profile's ``[datalink]`` section as its parameters,
    with the parity of ``[physical]`` (the frames' words carry the parity line)."""

    params: DatalinkSection = field(default_factory=DatalinkSection)
    parity: str = "odd"
    units: bool = False  # mark where each send() begins and ends (transport.mode none)

    def __post_init__(self) -> None:
        p = self.params
        modulo = 1 << p.sequence_bits
        if not 1 <= p.window < modulo // 2:
            raise ValueError(f"window {p.window} must be 1 to {modulo // 2 - 1}")
        if not 1 <= p.max_payload_words <= 0xFFFF:
            raise ValueError(f"max_payload_words {p.max_payload_words}: 1 to 65535")
        if p.ack_timeout <= 0 or p.retry_limit < 0:
            raise ValueError("ack_timeout must be positive and retry_limit not negative")
        self.state = LinkState.OPEN
        self._modulo = modulo
        self._decoder = frame_decoder(p, self.parity, units=self.units)
        self._codes = self._decoder.codes  # the sender frames as the receiver reads
        self._check = self._decoder.check
        self._unacked = p.ack_mode == "none"
        self._marks = self._decoder.flags != 0  # frames carry FIRST and LAST
        self._queue: deque[bytes] = deque()  # payload pieces not yet framed
        self._flags: deque[int] = deque()  # units marked: FIRST, LAST of each queued piece
        self._lost = False  # ack_mode none: dropping frames until one begins a unit
        self._flight: dict[int, _Outstanding] = {}  # sequence -> frame in the window
        self._next_seq = 0
        self._expected = 0  # next sequence number the receiver delivers
        self._ahead: dict[int, tuple[bytes, int]] = {}  # frames beyond a gap, with flags
        self._control: list[tuple[FrameType, int]] = []  # ACK and NAK frames to send
        self.history: deque[FrameRecord] = deque(maxlen=HISTORY_FRAMES)
        self._replies: dict[tuple[FrameType, int], Words] = {}
        self.retransmissions = 0
        self.damaged_frames = 0
        self.frames_sent = 0  # every frame put on the wire: DATA (new and resent), ACK, NAK
        self.frames_received = 0  # every intact frame taken off the wire

    @property
    def failed(self) -> bool:
        return self.state is LinkState.FAILED

    def _enter(self, cause: LinkInput) -> None:
        """Apply ``cause`` to the link's table; a pair not in it is a local error."""
        self.state = LINK_TABLE.rule(self.state, cause).next_state

    def _step(self, frame: _Outstanding, cause: FrameInput, now: float) -> list[Event]:
        """Apply ``cause`` to one frame's table (NAK and TIMEOUT become their ``_SPENT``
        inputs once the frame has used its retries: the guard of the table)."""
        if frame.retries >= self.params.retry_limit:
            cause = _SPENT.get(cause, cause)
        rule = FRAME_TABLE.rule(frame.state, cause, where=frame.sequence)
        action = rule.action
        if action is _GIVE_UP:
            self._enter(LinkInput.GIVE_UP)
            failed = LinkFailed(frame.sequence, f"no ACK after {frame.retries} retransmissions")
            log.info("data link failed: frame %d, %s", failed.sequence, failed.reason)
            return [failed]
        frame.state = rule.next_state
        if action is _SEND:
            frame.sent_at = now
        elif action is _RESEND:
            frame.retries += 1
            self.retransmissions += 1
        elif action is _RELEASE:
            del self._flight[frame.sequence]
        return []

    # ------------------------------------------------------------------ sending

    def send(self, payload: bytes) -> None:
        """Queue payload bytes (an odd length is padded with one zero byte)."""
        self._enter(LinkInput.SEND)
        size = self.params.max_payload_words * 2
        if not self._marks:
            for start in range(0, len(payload), size):
                self._queue.append(payload[start : start + size])
            return
        # marked units: the receiver can start again at a unit's first frame (ack_mode
        # none) and knows where a message ends (transport none); an empty unit is a frame
        ends = range(size, len(payload) + size, size) if payload else [size]
        for end in ends:
            self._queue.append(payload[end - size : end])
            self._flags.append((FIRST if end == size else 0) | (LAST if end >= len(payload) else 0))

    def _frame(self, kind: FrameType, sequence: int, payload: bytes = b"", flags: int = 0) -> Words:
        p = self.params
        return encode_frame(
            kind,
            sequence,
            payload,
            start_word=p.start_word,
            crc_init=p.crc_init,
            codes=self._codes,
            check=self._check,
            delimiting=p.delimiting,
            flags=flags,
        )

    def _reply(self, kind: FrameType, sequence: int) -> Words:
        """An ACK or NAK frame; there are only 2 x 2^sequence_bits of them, encoded once."""
        words = self._replies.get((kind, sequence))
        if words is None:
            words = self._replies[kind, sequence] = self._frame(kind, sequence)
        return words

    def transmit(self, now: float) -> WordBuffer:
        """Words (and their parity line) to put on the wire now: ACK/NAK first, then
        new frames while the window allows, then frames to resend."""
        self._enter(LinkInput.TRANSMIT)
        if self.failed:
            return WordBuffer(np.zeros(0, dtype=np.uint16), np.zeros(0, dtype=np.uint8))
        out: list[Words] = []
        for kind, sequence in self._control:
            out.append(self._reply(kind, sequence))
            self.history.append(FrameRecord(now, "out", kind.name, sequence, len(out[-1])))
        self._control.clear()
        if self._unacked:
            out += self._send_unacked(now)
        while self._queue and self._span() < self.params.window:
            sequence = self._next_seq
            self._next_seq = (self._next_seq + 1) % self._modulo
            flags = self._flags.popleft() if self._marks else 0
            words = self._frame(FrameType.DATA, sequence, self._queue.popleft(), flags)
            self._flight[sequence] = _Outstanding(sequence, words)
        for frame in self._flight.values():
            if frame.state is FrameState.UNSENT:
                self._step(frame, FrameInput.TRANSMIT, now)
                out.append(frame.words)
                note = f"resend {frame.retries}" if frame.retries else ""
                self.history.append(
                    FrameRecord(now, "out", "DATA", frame.sequence, len(frame.words), note)
                )
        self.frames_sent += len(out)
        words = np.concatenate(out) if out else np.zeros(0, dtype=np.uint16)
        return WordBuffer(words, parity_bits(words, self.parity))

    def _send_unacked(self, now: float) -> list[Words]:
        """ack_mode none: every queued piece framed and sent at once, never kept."""
        out = []
        while self._queue:
            sequence = self._next_seq
            self._next_seq = (self._next_seq + 1) % self._modulo
            flags = self._flags.popleft()
            out.append(self._frame(FrameType.DATA, sequence, self._queue.popleft(), flags))
            note = "first" if flags & FIRST else ""
            self.history.append(FrameRecord(now, "out", "DATA", sequence, len(out[-1]), note))
        return out

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
        """Words off the wire, split anywhere; returns payloads delivered in order.

        Without ``parity_line`` the words are taken to carry correct parity.
        """
        self._enter(LinkInput.WORDS)
        words = np.asarray(words, dtype=np.uint16)
        line = parity_bits(words, self.parity) if parity_line is None else parity_line
        line = np.asarray(line, dtype=np.uint8)
        if line.shape != words.shape:
            raise LinkProtocolError(f"{line.size} parity bits for {words.size} words")
        return self._decode(words, line, now)

    def _decode(self, words: Words, parity_line: ParityLine, now: float) -> list[Event]:
        events: list[Event] = []
        for item in self._decoder.feed(words, parity_line):
            if isinstance(item, FrameDamaged):
                self.damaged_frames += 1
                self.history.append(
                    FrameRecord(now, "in", "DAMAGED", item.sequence, 0, item.reason)
                )
                log.debug("damaged frame (sequence %s): %s", item.sequence, item.reason)
                if self._unacked:
                    events += self._lose(f"damaged frame: {item.reason}")
                elif item.sequence is not None and item.kind is FrameType.DATA:
                    self._control.append((FrameType.NAK, item.sequence))
                continue
            self.frames_received += 1
            size = len(item.payload) // 2 + 4
            self.history.append(FrameRecord(now, "in", item.type.name, item.sequence, size))
            if self._unacked:
                if item.type is FrameType.DATA:
                    events += self._on_unacked(item)
                continue  # an ACK or NAK means nothing without acknowledgements
            if item.type is FrameType.DATA:
                events += self._on_data(item)
            else:
                cause = FrameInput.ACK if item.type is FrameType.ACK else FrameInput.NAK
                events += self._step(self._flight.get(item.sequence, _DONE), cause, now)
                if self.failed:
                    break
        return events

    def _on_data(self, frame: Frame) -> list[Event]:
        self._control.append((FrameType.ACK, frame.sequence))
        distance = (frame.sequence - self._expected) % self._modulo
        if distance >= self._modulo // 2:
            return []  # a duplicate of a delivered frame: its ACK went out again
        if distance >= self.params.window:
            # beyond the receive window: no sender that follows the rules sends it, so it
            # is a leftover of a link that was reset; taking it could corrupt the stream
            self._control.pop()
            return []
        self._ahead.setdefault(frame.sequence, (frame.payload, frame.flags))
        delivered: list[Event] = []
        while self._expected in self._ahead:
            payload, flags = self._ahead.pop(self._expected)
            delivered.append(DataReceived(payload, bool(flags & LAST)))
            self._expected = (self._expected + 1) % self._modulo
        return delivered

    def _lose(self, reason: str) -> list[Event]:
        """ack_mode none: report a loss once, then drop frames up to a unit's first."""
        if self._lost:
            return []
        self._lost = True
        log.info("data link: %s; nothing is resent (ack_mode none)", reason)
        return [DataLost(reason)]

    def _on_unacked(self, frame: Frame) -> list[Event]:
        """ack_mode none: deliver in sequence; a gap in the numbers is a loss."""
        events: list[Event] = []
        if frame.sequence != self._expected:
            events += self._lose(
                f"frames {self._expected} to {(frame.sequence - 1) % self._modulo} missing"
            )
        self._expected = (frame.sequence + 1) % self._modulo
        if self._lost and frame.flags & FIRST:
            self._lost = False
        if not self._lost:
            events.append(DataReceived(frame.payload, bool(frame.flags & LAST)))
        return events

    # ------------------------------------------------------------------ time

    def handle_timer(self, now: float) -> list[Event]:
        """Resend frames whose ACK is overdue; LinkFailed past the retry limit."""
        self._enter(LinkInput.TIMER)
        events: list[Event] = []
        for frame in list(self._flight.values()):
            overdue = now >= frame.sent_at + self.params.ack_timeout  # as next_deadline()
            if frame.state is FrameState.WAIT_ACK and overdue:
                events += self._step(frame, FrameInput.TIMEOUT, now)
                if self.failed:
                    break
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called, if anything waits for an ACK.

        Frames waiting to be resent have no deadline: call :meth:`transmit` first.
        """
        if self.failed:
            return None
        times = [f.sent_at for f in self._flight.values() if f.state is FrameState.WAIT_ACK]
        return min(times) + self.params.ack_timeout if times else None

"""The raw word stream: words, parity and the READY line over any byte stream.

``tcp://``, ``tcp-listen://``, ``serial://``, ``rs485://``, ``ftdi://`` and ``pty://``
carry the link of :mod:`bridge.ports.base` over a byte stream in this encoding (our own,
chosen for the emulated paths; docs/ports.md). Each *unit* is 3 bytes, the third being
the flags:

* ``HI LO 00`` or ``HI LO 01``: a data word ``HI << 8 | LO``; its parity line is the
  flags' bit 0;
* ``00 00 80|s<<1|r``: a line-state unit; ``r`` is the sender's READY and ``s`` says
  whether the sender sees the receiver's READY asserted;
* anything else: an invalid unit, dropped and counted.

Line-state units are sent when a stream opens, on every READY change, every
:data:`ANNOUNCE_INTERVAL_S` while the peer is not seen READY, and in answer to a unit
whose ``s`` bit is wrong about us (the peer thinks our READY is not what it is). So two
sides find each other whichever opens first, a side that restarts without ever dropping
READY (a serial peer re-powered) is answered, and a lost line-state unit is repaired by
the next announcement; the answer rule cannot ping-pong, because an answer always
carries the right ``s`` bit.

The encoding has no resynchronisation: it relies on a byte stream that loses and adds
nothing (TCP, a pty, a clean USB CDC link). A real serial line to the interface box uses
the interface-box protocol (``box+`` URLs, :mod:`bridge.box`), not this;
over a noisy UART a lost byte would make everything after it unreadable (invalid units
and wrong words).

:func:`encode_words` and :class:`WordStreamDecoder` work on whole buffers with numpy
(no Python loop per word). Encode plus decode of 1 Mi words (3 MiB of stream) measured
450 to 1300 MB/s of words (2 bytes a word) on the 2-core development box, varying from
run to run with the state of the memory allocator (``python -m bridge.wordstream``
measures it); the aim was 50 MB/s. :class:`WordStreamEngine` is the encoding as a sans-I/O
engine of the one shape (:mod:`bridge.engine`): no thread, no stream, no sleep (``time``
is used only by the measurement below). The one threaded driver runs it over any
:class:`~bridge.ports.bytestream.ByteStream`: :class:`bridge.ports.driver.StreamWordPort`
keeps the rules of :mod:`bridge.ports.base`.

This module is pure protocol code, so it lives beside :mod:`bridge.engine` and
:mod:`bridge.box`, apart from the drivers in ``bridge/ports/`` (a test reads its imports).
It was ``bridge.ports.wordstream``; that path still gives every name, with a
:class:`DeprecationWarning` (:func:`bridge._renamed.moved_module`).
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

import numpy as np

from bridge._renamed import old_name
from bridge.acrnema.physical import WordBuffer, as_buffer
from bridge.acrnema.table import Rule, Table
from bridge.engine import MAX_RECV_WORDS, Outgoing, PeerReady, WordsArrived
from bridge.errors import PortError

__all__ = [
    "ANNOUNCE_INTERVAL_S",
    "LINE_TABLE",
    "UNIT_BYTES",
    "LineAction",
    "LineInput",
    "LineStateUnit",
    "WordStreamDecoder",
    "WordStreamEngine",
    "WordStreamState",
    "encode_line_state",
    "encode_words",
]

log = logging.getLogger(__name__)

UNIT_BYTES = 3
ANNOUNCE_INTERVAL_S = 0.2
"""How often a side that does not see its peer READY re-sends its line state."""

_LINE = 0x80
_UNIT = np.dtype([("word", ">u2"), ("flags", "u1")])
_ENCODE_CHUNK = 1 << 20  # words encoded at a time: the temporary stays at 3 MiB
_INVALID_FILL = 0xFF  # completes a unit cut short by a write stall: an invalid unit
_ANSWER_STALL_S = 0.2  # an answer or announcement does not hold up a reader longer


@dataclass(frozen=True)
class LineStateUnit:
    """A line-state unit: the sender's READY, and whether it sees the receiver READY."""

    ready: bool
    sees_ready: bool = False


def encode_words(buffer: WordBuffer) -> bytes:
    """The data units carrying ``buffer`` (parity values other than 0/1 use bit 0)."""
    buffer = as_buffer(buffer)
    units = np.empty(len(buffer.words), dtype=_UNIT)
    units["word"] = buffer.words
    units["flags"] = buffer.parity & 1
    return units.tobytes()


def encode_line_state(ready: bool, sees_ready: bool = False) -> bytes:
    """The line-state unit for this side's READY and its view of the peer's READY."""
    return bytes((0, 0, _LINE | (2 if sees_ready else 0) | (1 if ready else 0)))


class WordStreamDecoder:
    """Incremental decoder: bytes split anywhere in, words and line states out, in order.

    A partial unit at the end of the input is kept for the next :meth:`feed`; invalid
    units are dropped and counted in :attr:`invalid`.
    """

    def __init__(self) -> None:
        self._partial = b""
        self.invalid = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete unit kept for the next call."""
        return len(self._partial)

    def reset(self) -> None:
        """Forget a partial unit (the stream it came from is gone)."""
        self._partial = b""

    def feed(self, data: bytes | bytearray | memoryview) -> list[WordBuffer | LineStateUnit]:
        """Decode ``data``; consecutive data units come out as one buffer."""
        buf = self._partial + bytes(data) if self._partial else bytes(data)
        count = len(buf) // UNIT_BYTES
        self._partial = buf[count * UNIT_BYTES :]
        if count == 0:
            return []
        units = np.frombuffer(buf, dtype=_UNIT, count=count)
        flags = units["flags"]
        if int(flags.max()) <= 1:  # the usual case: data units only
            return [WordBuffer(units["word"].astype(np.uint16), flags.copy())]
        is_data = flags <= 1
        is_line = ((flags & 0xFC) == _LINE) & (units["word"] == 0)
        self.invalid += count - int(np.count_nonzero(is_data | is_line))
        events: list[WordBuffer | LineStateUnit] = []
        start = 0
        for index in [*np.flatnonzero(is_line).tolist(), count]:
            keep = is_data[start:index]
            if np.any(keep):
                part = units[start:index][keep]
                events.append(WordBuffer(part["word"].astype(np.uint16), part["flags"].copy()))
            if index < count:
                flag = int(flags[index])
                events.append(LineStateUnit(ready=bool(flag & 1), sees_ready=bool(flag & 2)))
            start = index + 1
        return events


class WordStreamState(enum.Enum):
    DOWN = "down"  # no byte stream
    WAITING = "waiting"  # a stream, the peer not seen READY
    UP = "up"  # a stream, the peer seen READY


class LineInput(enum.Enum):
    CONNECT = "connect()"
    DISCONNECT = "disconnect()"
    PEER_READY = "line state: READY"
    PEER_READY_ASKS = "line state: READY, wrong about ours"
    PEER_NOT_READY = "line state: not READY"
    PEER_NOT_READY_ASKS = "line state: not READY, wrong about ours"
    WORDS = "words, our READY up"
    WORDS_NOT_READY = "words, our READY down"
    SET_READY = "set_ready()"
    GOODBYE = "goodbye()"
    ANNOUNCE = "announce timer"
    PEER_STALLED = "peer stalled"


class LineAction(enum.Enum):
    GREET = enum.auto()  # forget the old stream, send our line state
    FORGET = enum.auto()
    NOTE_READY = enum.auto()  # set our READY; nothing to tell without a stream
    SEND_LINE_STATE = enum.auto()
    SET_READY = enum.auto()  # set our READY, send our line state
    DROP_READY = enum.auto()  # drop our READY, send our line state
    REPORT_PEER = enum.auto()  # report PeerReady
    REPORT_PEER_AND_ANSWER = enum.auto()
    ANSWER = enum.auto()  # our line state after this input
    TAKE_WORDS = enum.auto()
    DISCARD = enum.auto()
    DISCARD_AND_ANSWER = enum.auto()
    NOTE_STALL = enum.auto()
    IGNORE = enum.auto()


def _line_rules() -> dict[tuple[WordStreamState, LineInput], Rule[WordStreamState, LineAction]]:
    S, I, A = WordStreamState, LineInput, LineAction  # noqa: E741
    rules = {
        (S.DOWN, I.SET_READY): Rule(A.NOTE_READY, S.DOWN, "note our READY"),
        (S.DOWN, I.GOODBYE): Rule(A.IGNORE, S.DOWN, "nothing to tell"),
        (S.DOWN, I.PEER_STALLED): Rule(A.IGNORE, S.DOWN, "ignore"),
        (S.WAITING, I.PEER_READY): Rule(A.REPORT_PEER, S.UP, "report PeerReady"),
        (S.WAITING, I.PEER_READY_ASKS): Rule(
            A.REPORT_PEER_AND_ANSWER, S.UP, "report PeerReady, answer"
        ),
        (S.WAITING, I.PEER_NOT_READY): Rule(A.IGNORE, S.WAITING, "ignore"),
        (S.WAITING, I.PEER_NOT_READY_ASKS): Rule(A.ANSWER, S.WAITING, "answer"),
        (S.WAITING, I.WORDS): Rule(A.DISCARD, S.WAITING, "discard (the peer is not READY)"),
        (S.WAITING, I.ANNOUNCE): Rule(A.SEND_LINE_STATE, S.WAITING, "send our line state"),
        (S.WAITING, I.PEER_STALLED): Rule(A.IGNORE, S.WAITING, "ignore"),
        (S.UP, I.PEER_READY): Rule(A.IGNORE, S.UP, "ignore"),
        (S.UP, I.PEER_READY_ASKS): Rule(A.ANSWER, S.UP, "answer"),
        (S.UP, I.PEER_NOT_READY): Rule(A.REPORT_PEER, S.WAITING, "report PeerReady"),
        (S.UP, I.PEER_NOT_READY_ASKS): Rule(
            A.REPORT_PEER_AND_ANSWER, S.WAITING, "report PeerReady, answer"
        ),
        (S.UP, I.WORDS): Rule(A.TAKE_WORDS, S.UP, "report WordsArrived"),
        (S.UP, I.PEER_STALLED): Rule(A.NOTE_STALL, S.WAITING, "the peer is gone: log it"),
    }
    for state in S:
        rules[state, I.CONNECT] = Rule(
            A.GREET, S.WAITING, "forget the old stream, send our line state"
        )
        rules[state, I.DISCONNECT] = Rule(A.FORGET, S.DOWN, "forget the stream")
    for state in (S.WAITING, S.UP):
        rules[state, I.WORDS_NOT_READY] = Rule(
            A.DISCARD_AND_ANSWER, state, "discard, answer (our READY is down)"
        )
        rules[state, I.SET_READY] = Rule(A.SET_READY, state, "send our line state")
        rules[state, I.GOODBYE] = Rule(A.DROP_READY, state, "drop READY, send our line state")
    return rules


def _line_error(reason: str, remote: bool) -> PortError:
    return PortError(f"raw word stream: {reason}")


LINE_TABLE: Table[WordStreamState, LineInput, LineAction] = Table(
    "raw word stream", WordStreamState, LineInput, _line_rules(), _line_error
)
"""The line-state rules of the module doc as a table of the one idiom
(:mod:`bridge.acrnema.table`). A line-state unit is an input by the peer's READY and
by whether its ``s`` bit is wrong about ours (the peer asks for an answer); words by
our READY (while it is down, no side takes words and the peer is told). Answers of one
:meth:`WordStreamEngine.receive` go out as one line-state unit. Without a stream the
engine reads nothing and has no timer, and the announcement is due only while the peer
is not seen READY: the pairs left out cannot arise (were one looked up, it would be a
:class:`~bridge.errors.PortError`)."""


class WordStreamEngine(Outgoing):
    """The raw word stream as an engine of the one shape (:mod:`bridge.engine`), sans-I/O.

    It keeps the line-state rules of the module doc: a line-state unit when a stream
    starts (:meth:`connect`), on every READY change (:meth:`set_ready`), every
    :data:`ANNOUNCE_INTERVAL_S` while the peer is not seen READY (:meth:`handle_timer`),
    and in answer to a unit whose ``s`` bit is wrong about us (:meth:`receive`). Words
    that arrive while a READY line is down are dropped and counted in :attr:`discarded`
    (no side takes words then). :class:`bridge.ports.driver.StreamWordPort` runs it over
    a byte stream.
    """

    max_queued = 4 * MAX_RECV_WORDS  # the driver stops reading the stream beyond this
    read_bytes = UNIT_BYTES * (1 << 18)
    control_stall_s: float | None = _ANSWER_STALL_S  # a stalled peer misses an answer;
    # the answer rule repairs that once it reads again

    def __init__(self, name: str = "wordstream") -> None:
        super().__init__()
        self.name = name
        self.decoder = WordStreamDecoder()
        self.ready = True
        self.state = WordStreamState.DOWN
        self.discarded = 0
        self._last_announce = -1e9

    @property
    def connected(self) -> bool:
        return self.state is not WordStreamState.DOWN

    @property
    def peer_ready(self) -> bool:
        """The other side's READY, as last learnt."""
        return self.state is WordStreamState.UP

    def _apply(
        self, cause: LineInput, now: float, words: WordBuffer | None = None, ready: bool = False
    ) -> tuple[list[WordsArrived | PeerReady], bool]:
        """Take the rule of :data:`LINE_TABLE` for ``cause``: the events, and whether an
        answer (our line state) is due."""
        rule = LINE_TABLE.rule(self.state, cause)
        A = LineAction
        action = rule.action
        self.state = rule.next_state
        if action is A.GREET or action is A.FORGET:
            self.decoder.reset()
            self._out.clear()
            if action is A.GREET:
                self._line_state(now)
        elif action is A.NOTE_READY:
            self.ready = ready
        elif action in (A.SEND_LINE_STATE, A.SET_READY, A.DROP_READY):
            if action is not A.SEND_LINE_STATE:
                self.ready = ready and action is A.SET_READY
            self._line_state(now)
        elif action is A.REPORT_PEER or action is A.REPORT_PEER_AND_ANSWER:
            return [PeerReady(self.peer_ready)], action is A.REPORT_PEER_AND_ANSWER
        elif action is A.ANSWER:
            return [], True
        elif action is A.TAKE_WORDS:
            assert words is not None
            return [WordsArrived(words)], False
        elif action is A.DISCARD or action is A.DISCARD_AND_ANSWER:
            assert words is not None
            self.discarded += len(words.words)
            return [], action is A.DISCARD_AND_ANSWER
        elif action is A.NOTE_STALL:
            log.info("%s: the peer took nothing for a whole write timeout", self.name)
        return [], False

    # ------------------------------------------------------------------ the stream

    def connect(self, now: float) -> None:
        """A new stream: forget the old one, tell the peer our READY."""
        self._apply(LineInput.CONNECT, now)

    def disconnect(self) -> None:
        """The stream is gone: a partial unit and unsent bytes go with it."""
        self._apply(LineInput.DISCONNECT, 0.0)

    def _line_state(self, now: float) -> None:
        self._last_announce = now
        self._out += encode_line_state(self.ready, self.peer_ready)

    # ------------------------------------------------------------------ bytes in

    def receive(
        self, data: bytes | bytearray | memoryview, now: float
    ) -> list[WordsArrived | PeerReady]:
        """Decode ``data``: words (while both READY lines are up) and READY changes."""
        if not self.connected or not len(data):
            return []
        events: list[WordsArrived | PeerReady] = []
        answer = False
        for item in self.decoder.feed(data):
            if isinstance(item, LineStateUnit):
                asks = item.sees_ready != self.ready
                if item.ready:
                    cause = LineInput.PEER_READY_ASKS if asks else LineInput.PEER_READY
                else:
                    cause = LineInput.PEER_NOT_READY_ASKS if asks else LineInput.PEER_NOT_READY
                new, answers = self._apply(cause, now)
            else:
                cause = LineInput.WORDS if self.ready else LineInput.WORDS_NOT_READY
                new, answers = self._apply(cause, now, item)
            events += new
            answer |= answers
        if answer:
            self._line_state(now)
        return events

    def handle_timer(self, now: float) -> list[WordsArrived | PeerReady]:
        """Announce our line state again while the peer is not seen READY."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._apply(LineInput.ANNOUNCE, now)
        return []

    def next_deadline(self) -> float | None:
        if not self.connected or self.peer_ready:
            return None
        return self._last_announce + ANNOUNCE_INTERVAL_S

    # ------------------------------------------------------------------ words, lines

    @property
    def link_up(self) -> bool:
        return self.connected and self.ready and self.peer_ready

    def send_words(self, buffer: WordBuffer, *, boundary: bool = True) -> int:
        """Encode up to :data:`_ENCODE_CHUNK` words of ``buffer`` (the temporary stays
        small); how many. Nothing while the link is not up."""
        if not self.link_up:
            return 0
        n = min(len(buffer.words), _ENCODE_CHUNK)
        self._out += encode_words(WordBuffer(buffer.words[:n], buffer.parity[:n]))
        return n

    def consumed(self, count: int, now: float) -> None:
        """Nothing to do: the raw word stream has no credit."""

    def set_ready(self, ready: bool, now: float) -> None:
        self._apply(LineInput.SET_READY, now, ready=ready)

    def goodbye(self, now: float) -> None:
        """The port closes: the peer sees READY drop."""
        self._apply(LineInput.GOODBYE, now)

    def peer_stalled(self) -> None:
        self._apply(LineInput.PEER_STALLED, 0.0)

    def write_stalled(self, unwritten: int) -> bytes | None:
        """The stream stays; a unit cut short is completed with :data:`_INVALID_FILL`
        bytes before the next write, so the receiver drops it as invalid and the stream
        stays aligned."""
        return bytes([_INVALID_FILL]) * (unwritten % UNIT_BYTES)

    def down_reason(self) -> str | None:
        return None if self.peer_ready else "the peer is not READY"


_RENAMED = {"LineState": "LineStateUnit"}
"""Old names (deprecated) of classes renamed so that no name means two things."""


def __getattr__(name: str) -> object:
    """``LineState`` is :class:`LineStateUnit` (deprecated, with a warning)."""
    return old_name(__name__, _RENAMED, globals(), name)


def _measure(words: int = 1 << 20, rounds: int = 20) -> float:
    """MB/s of words (2 bytes a word) through encode + decode."""
    rng = np.random.default_rng(1)
    buffer = WordBuffer(
        rng.integers(0, 1 << 16, words, dtype=np.uint16),
        rng.integers(0, 2, words, dtype=np.uint8),
    )
    decoder = WordStreamDecoder()
    decoder.feed(encode_words(buffer))  # warm up: the first round pays for page faults
    start = time.perf_counter()
    for _ in range(rounds):
        decoder.feed(encode_words(buffer))
    elapsed = time.perf_counter() - start
    return 2 * words * rounds / elapsed / 1e6


if __name__ == "__main__":  # pragma: no cover - a measurement, not a test
    logging.basicConfig(level=logging.INFO)
    log.info("raw word stream encode + decode: %.0f MB/s of words", _measure())

"""The one shape of a sans-I/O protocol engine (STYLE rule 13), and the word-link events.

An *engine* is a protocol with no I/O of its own (h2's ``data_to_send()``, aioquic's
timers): it is given the bytes that arrived and the time, and returns typed events; it
hands out the bytes it wants written; it says when it next needs to be woken up. It owns
no socket, device, thread or sleep, so the same engine runs in a unit test (fed bytes by
hand, time made up), in the emulator and in the service:

* :meth:`Engine.receive` ``(data, now) -> events``: act on bytes from the other side;
* :meth:`Engine.data_to_send` ``() -> bytes``: what to write now (and forget);
* :meth:`Engine.handle_timer` ``(now) -> events``: retries, keep-alives, silence;
* :meth:`Engine.next_deadline` ``() -> float | None``: when ``handle_timer`` has work.

:class:`WordEngine` is that shape for the engines that carry the 50-pin link's words and
READY lines over a byte stream: the raw word stream (:mod:`bridge.wordstream`) and
the interface-box host (:mod:`bridge.box.host`). One threaded driver,
:class:`bridge.ports.driver.EnginePort`, runs any of them over any byte stream
(docs/ports.md, "Engines and the driver"); it understands the events below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.acrnema.physical import WordBuffer

__all__ = [
    "MAX_RECV_WORDS",
    "Engine",
    "LinkEvent",
    "Outgoing",
    "PeerReady",
    "StreamGone",
    "WordEngine",
    "WordsArrived",
]

MAX_RECV_WORDS = 1 << 20
"""The most words one :meth:`bridge.ports.base.WordPort.recv` returns (memory stays
bounded); an engine sizes what its driver queues by it."""


@dataclass(frozen=True)
class PeerReady:
    """The other side's READY line changed (as the engine learnt it)."""

    ready: bool


@dataclass(frozen=True)
class WordsArrived:
    """Words from the link, in order."""

    buffer: WordBuffer


@dataclass(frozen=True)
class StreamGone:
    """The engine gave up on the byte stream (no answer, silence): release it."""

    reason: str


LinkEvent = PeerReady | WordsArrived | StreamGone


class Outgoing:
    """The bytes an engine queues for writing, and the two engine methods that hand them
    out: an engine class inherits it and appends to ``self._out``."""

    def __init__(self) -> None:
        self._out = bytearray()

    def data_to_send(self) -> bytes:
        """The bytes to write now (and forget)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def has_output(self) -> bool:
        """Whether :meth:`data_to_send` has bytes."""
        return bool(self._out)


class Engine(Protocol):
    """A sans-I/O protocol: bytes and the time in, events and bytes out."""

    def receive(self, data: bytes | bytearray | memoryview, now: float) -> Sequence[object]:
        """Act on bytes from the other side; the events they bring."""

    def data_to_send(self) -> bytes:
        """The bytes to write now (and forget)."""

    def handle_timer(self, now: float) -> Sequence[object]:
        """What is due at ``now`` (retries, keep-alives, silence); the events."""

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has something to do next (None: nothing)."""


class WordEngine(Engine, Protocol):
    """An engine carrying words and READY lines over one byte stream at a time.

    The driver tells it of a new stream (:meth:`connect`) and of a lost one
    (:meth:`disconnect`), queues words (:meth:`send_words`) and reports words taken
    (:meth:`consumed`). It decides nothing about threads or waiting: the engine says what
    the link is (:attr:`ready`, :attr:`peer_ready`, :attr:`link_up`, :meth:`down_reason`)
    and what a write that stalls means (:meth:`write_stalled`).
    """

    @property
    def ready(self) -> bool:
        """This side's READY, as the user set it."""

    @property
    def peer_ready(self) -> bool:
        """The other side's READY, as last learnt."""

    @property
    def max_queued(self) -> int:
        """The driver stops reading the stream while this many words wait to be taken."""

    @property
    def read_bytes(self) -> int:
        """Bytes the driver asks the stream for at a time."""

    @property
    def control_stall_s(self) -> float | None:
        """Seconds a write of the engine's own output (answers, credits) may stall;
        None: the stream's ``write_timeout``."""

    @property
    def has_output(self) -> bool:
        """Whether :meth:`data_to_send` has bytes."""

    @property
    def link_up(self) -> bool:
        """Whether words can go both ways now."""

    def connect(self, now: float) -> None:
        """A new byte stream: forget the old one, queue the greeting."""

    def disconnect(self) -> None:
        """The byte stream is gone."""

    def send_words(self, buffer: WordBuffer, *, boundary: bool = True) -> int:
        """Queue the first words of ``buffer`` (within any credit); how many."""

    def consumed(self, count: int, now: float) -> None:
        """``count`` words that arrived were taken (or discarded)."""

    def set_ready(self, ready: bool, now: float) -> None:
        """Drive this side's READY line."""

    def goodbye(self, now: float) -> None:
        """The port closes: queue what tells the other side (READY dropped), if anything."""

    def peer_stalled(self) -> None:
        """The other side took nothing for the stream's ``write_timeout``: it is gone."""

    def write_stalled(self, unwritten: int) -> bytes | None:
        """A write stalled with ``unwritten`` bytes left: the bytes to write before the
        next output to keep the stream readable (the stream stays), or None (the stream
        is lost)."""

    def down_reason(self) -> str | None:
        """Why words cannot flow on a connected stream with both READY lines wanted
        (starting up, restarting, peer not READY); None when they can."""

"""The 50-pin bus as lines over time: words to edges, and edges back to words.

A pure model (no files, no I/O) of what the physical section of a link profile
(:class:`~bridge.profile.PhysicalSection`, docs/link-profile.md §1 and §1.3) puts on the
wire. Both ways go through one representation, :class:`Changes`:

* ``times``: int64 nanoseconds, increasing; ``states``: uint64, one row per time, bit
  ``i`` the *asserted* state of line ``lines[i]`` from that time until the next row.
  Lines are :attr:`PhysicalSection.bus_lines`, so D0-D15 are always bits 0-15 and a
  word is ``states & 0xFFFF``. Electrical levels (what a probe shows) differ from the
  asserted state only by ``physical.active_low`` (and a probe's own inversion, which
  :mod:`bridge.capture.channels` undoes).

:func:`synthesise` turns words (with their parity bit, the side that drives them and the
earliest time each may go out) into changes, with the handshake of ``physical.handshake``
and the profile's setup, hold and turnaround times plus a modelled propagation delay
(:attr:`Timing.hop_ns`); :class:`WordRecovery` is the reverse, fed changes chunk by chunk
(a capture is never held whole) and returning the words with their times, direction and
parity, the handshake's phase durations, and every place it lost sync.

The handshake modes are one seam: :data:`MODES` maps a mode to its phases (the edges of
one word's cycle); synthesis and recovery both read it. Four-phase interlocked
(REQ up, ACK up, REQ down, ACK down), two-phase transition (REQ toggles, ACK toggles) and
strobe (REQ pulses for ``hold_ns``, no ACK). The data and parity lines are sampled where
REQ is asserted (four-phase, strobe) or changes (two-phase).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from bridge.acrnema.physical import parity_bits
from bridge.profile import PhysicalSection

__all__ = [
    "MODES",
    "BusCarry",
    "Changes",
    "Recovered",
    "SyncLoss",
    "Timing",
    "WordRecovery",
    "cycle_ns",
    "electrical",
    "synthesise",
]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
SIDE_A, SIDE_B = 0, 1


class Changes(NamedTuple):
    """Line states over time (see the module doc): row ``i`` holds from ``times[i]``."""

    times: I64
    states: U64

    @staticmethod
    def empty() -> Changes:
        return Changes(np.zeros(0, np.int64), np.zeros(0, np.uint64))


@dataclass(frozen=True)
class Mode:
    """A handshake mode: the edges of one word's cycle, as (line, asserted after)."""

    name: str
    phases: tuple[tuple[str, str], ...]  # (line, "up" | "down" | "toggle")


MODES = {
    "four-phase": Mode(
        "four-phase",
        (("REQ", "up"), ("ACK", "up"), ("REQ", "down"), ("ACK", "down")),
    ),
    "two-phase": Mode("two-phase", (("REQ", "toggle"), ("ACK", "toggle"))),
    "strobe": Mode("strobe", (("REQ", "up"), ("REQ", "down"))),
}
"""The handshake modes of ``physical.handshake``; the phase names of the report are
``"<line> <edge> -> <next line> <edge>"``."""


@dataclass(frozen=True)
class Timing:
    """What the profile does not say about time: the propagation delay of one hop
    (driver, cable, receiver; ~35-55 ns for 1980s EIA-485 parts plus 5 ns/m of cable,
    evidence note §4.3). Each causal edge (REQ seen, ACK answered) costs one hop."""

    hop_ns: int = 50


def cycle_ns(ph: PhysicalSection, timing: Timing | None = None) -> int:
    """Nanoseconds per word on a busy bus, in ``ph.handshake`` mode.

    four-phase: setup + hold + 4 hops; two-phase: setup + hold + 2 hops; strobe:
    setup + hold (fixed timing, no answer awaited)."""
    hops = {"four-phase": 4, "two-phase": 2, "strobe": 0}[ph.handshake]
    return ph.setup_ns + ph.hold_ns + hops * (timing or Timing()).hop_ns


def _bit(lines: tuple[str, ...], name: str) -> int:
    return lines.index(name) if name in lines else -1


def _mask(bit: int) -> np.uint64:
    return np.uint64(0) if bit < 0 else np.uint64(1 << bit)


def byte_parity(words: npt.NDArray[np.uint16], parity: str) -> tuple[U64, U64]:
    """The parity line of the low byte and of the high byte of each word."""
    low = parity_bits((words & 0xFF).astype(np.uint16), parity)
    high = parity_bits((words >> 8).astype(np.uint16), parity)
    return low.astype(np.uint64), high.astype(np.uint64)


def synthesise(
    ph: PhysicalSection,
    words: npt.ArrayLike,
    parity: npt.ArrayLike,
    sides: npt.ArrayLike,
    earliest_ns: npt.ArrayLike,
    *,
    perr: npt.ArrayLike | None = None,
    ready: Iterable[tuple[int, bool, bool]] = (),
    ready_after: Sequence[int] | None = None,
    timing: Timing | None = None,
    carry: BusCarry | None = None,
) -> Changes:
    """The bus carrying ``words`` (uint16) with their recorded parity bit (a wrong one is
    put on the wire as it was: a damaged word stays damaged), each driven by side
    ``sides`` (0 = A, the initiator; 1 = B) no earlier than ``earliest_ns``.

    ``perr``: words the receiver flagged (PERR with its answer); ``ready``: (time,
    READY_A, READY_B) events; ``ready_after``: for each event, how many of ``words`` come
    before it (the event is then no earlier than the end of that word's cycle). The bus
    is handed over, with ``turnaround_ns`` of quiet, whenever the driving side changes;
    DIR is asserted while A owns it, BREQ while B does.
    ``carry``: the bus as a previous call left it (for a long stream synthesised in
    chunks); it is updated for the next call.
    """
    lines = ph.bus_lines
    w = np.asarray(words, np.uint16).reshape(-1)
    n = len(w)
    par = np.asarray(parity, np.uint8).reshape(-1).astype(np.uint64)
    side = np.asarray(sides, np.uint8).reshape(-1)
    early = np.asarray(earliest_ns, np.int64).reshape(-1)
    flags = np.zeros(n, bool) if perr is None else np.asarray(perr, bool).reshape(-1)
    if not len(par) == len(side) == len(early) == len(flags) == n:
        raise ValueError("words, parity, sides and times must have one entry per word")
    timing = timing or Timing()
    hop, setup, hold = timing.hop_ns, ph.setup_ns, ph.hold_ns
    cycle, turn = cycle_ns(ph, timing), ph.turnaround_ns
    # start of each word: t_k = max(e_k, t_{k-1} + d_{k-1}), d = cycle (+ turnaround before
    # a word of the other side); as s_k = t_k - D_k, a running maximum
    carry = carry if carry is not None else BusCarry()
    initial = np.uint64(carry.state)
    carry_free_at_entry = carry.free_ns
    switch = np.zeros(n, bool)
    switch[1:] = side[1:] != side[:-1]
    if n and carry.side is not None:
        switch[0] = side[0] != carry.side
    gap = np.full(n, cycle, np.int64) + np.where(switch, turn, 0)  # before word k
    if n:
        gap[0] = gap[0] if carry.free_ns is not None else 0
        first = carry.free_ns - cycle if carry.free_ns is not None else 0
        before = np.cumsum(gap)
        early = early.copy()
        start = np.maximum.accumulate(np.concatenate([[first], early - before]))[1:] + before
    else:
        start = early
    # the data, parity and direction lines of each word
    base = w.astype(np.uint64)
    if ph.parity != "none":
        if ph.parity_lines == 1:
            base |= par << np.uint64(_bit(lines, "PARITY"))
        else:
            low, high = byte_parity(w, ph.parity)
            wrong = (parity_bits(w, ph.parity).astype(np.uint64) ^ par) & np.uint64(1)
            base |= (low ^ wrong) << np.uint64(_bit(lines, "PARITY"))
            base |= high << np.uint64(_bit(lines, "PARITY_HI"))
    owner = np.where(side == SIDE_A, _mask(_bit(lines, "DIR")), _mask(_bit(lines, "BREQ")))
    base |= owner
    req, ack = _mask(_bit(lines, "REQ")), _mask(_bit(lines, "ACK"))
    perr_bit = _mask(_bit(lines, "PERR"))
    perr_on = np.where(flags, perr_bit, np.uint64(0))
    # the rows of each word: times (n, k) and the handshake/perr bits of each row
    if ph.handshake == "four-phase":
        offsets = [0, setup, setup + hop, setup + 2 * hop + hold, setup + 3 * hop + hold]
        hs: list[np.uint64 | int] = [0, req, req | ack, ack, 0]
        pe = [0, 0, 1, 1, 0]
        extra = np.zeros(n, np.uint64)
    elif ph.handshake == "two-phase":
        offsets = [0, setup, setup + hop]
        # REQ and ACK levels before word k: both equal k % 2
        level = ((np.arange(n) + carry.index) % 2).astype(np.uint64)
        extra = np.where(level == 1, req | ack, np.uint64(0))
        hs = [0, req, req | ack]  # XORed onto the levels
        pe = [0, 0, 1]
    else:  # strobe
        offsets = [0, setup, setup + hold]
        hs = [0, req, 0]
        pe = [0, 1, 0]
        extra = np.zeros(n, np.uint64)
    k = len(offsets)
    times = start[:, None] + np.asarray(offsets, np.int64)[None, :]
    states = np.empty((n, k), np.uint64)
    for j in range(k):
        row = base | (extra ^ np.uint64(int(hs[j])))
        states[:, j] = row | perr_on if pe[j] else row
    # hand-overs: the old owner lets go (direction lines) when the last word's cycle ends
    rows_t = [times.reshape(-1)]
    rows_s = [states.reshape(-1)]
    idx = np.flatnonzero(switch)
    if len(idx):
        direction = _mask(_bit(lines, "DIR")) | _mask(_bit(lines, "BREQ"))
        prev_start = np.where(idx > 0, start[np.maximum(idx - 1, 0)], (carry.free_ns or 0) - cycle)
        prev_state = np.where(idx > 0, states[np.maximum(idx - 1, 0), -1], np.uint64(carry.state))
        rows_t.append(prev_start + cycle)
        rows_s.append((prev_state & ~direction) | owner[idx])
    if n:
        carry.free_ns = int(start[-1] + cycle)
        carry.side = int(side[-1])
        carry.index += n
        carry.state = int(states[-1, -1])
    t_all, s_all = _merge(rows_t, rows_s)
    free_before = carry_free_at_entry
    events = list(ready)
    if ready_after is not None:
        if len(ready_after) != len(events):
            raise ValueError("ready_after needs one count per READY event")
        ends = start + cycle if n else np.zeros(0, np.int64)
        events = [
            (max(t, int(ends[k - 1]) if k > 0 else (free_before or 0)), a, b)
            for (t, a, b), k in zip(events, ready_after, strict=True)
        ]
    ready_before = carry.ready  # the READY lines as the previous call left them
    if events:
        carry.ready = (events[-1][1], events[-1][2])
    return _with_ready(lines, Changes(t_all, s_all), events, initial, ready_before)


@dataclass
class BusCarry:
    """Where a synthesis left the bus: when it is free, who drove it last, words so far."""

    free_ns: int | None = None
    side: int | None = None
    index: int = 0
    state: int = 0
    ready: tuple[bool, bool] | None = None  # READY_A, READY_B as last set


def _merge(rows_t: list[I64], rows_s: list[U64]) -> tuple[I64, U64]:
    """The words' rows (``rows_t[0]``, in time order as the cycles lay them out) with the
    few hand-over rows (``rows_t[1]``, if any) put in time order, a hand-over after the
    word rows at the same time (as a stable sort would put them)."""
    t, s = rows_t[0], rows_s[0]
    if len(t) > 1 and bool((t[1:] < t[:-1]).any()):  # not laid out in order: sort all
        t_all, s_all = np.concatenate(rows_t), np.concatenate(rows_s)
        order = np.argsort(t_all, kind="stable")
        return t_all[order], s_all[order]
    if len(rows_t) == 1:
        return t, s
    extra_t, extra_s = rows_t[1], rows_s[1]
    order = np.argsort(extra_t, kind="stable")
    extra_t, extra_s = extra_t[order], extra_s[order]
    at = np.searchsorted(t, extra_t, side="right")
    return np.insert(t, at, extra_t), np.insert(s, at, extra_s)


def _with_ready(
    lines: tuple[str, ...],
    bus: Changes,
    ready: list[tuple[int, bool, bool]],
    initial: np.uint64 | None = None,
    before: tuple[bool, bool] | None = None,
) -> Changes:
    """``bus`` with the READY lines of the ``ready`` events merged in (if the bus has them);
    ``before``: the READY lines until the first event (a previous chunk's last), which
    hold from the first row on, not as an event after the rows at its time (that would be
    a zero-width drop of READY where a chunk begins)."""
    a, b = _bit(lines, "READY_A"), _bit(lines, "READY_B")
    if a < 0:
        return bus
    held = np.uint64(0)
    if before is not None:
        held = (_mask(a) if before[0] else np.uint64(0)) | (_mask(b) if before[1] else np.uint64(0))
    if not ready:
        return Changes(bus.times, bus.states | held) if held else bus
    r_t = np.array([t for t, _, _ in ready], np.int64)
    r_s = np.array(
        [(_mask(a) if ra else 0) | (_mask(b) if rb else 0) for _, ra, rb in ready], np.uint64
    )
    # the READY events (few) go in among the bus rows (many) by binary search, not by
    # sorting them all: an event follows the rows at or before its time
    order = np.argsort(r_t, kind="stable")
    r_t, r_s = r_t[order], r_s[order]
    at = np.searchsorted(bus.times, r_t, side="right")
    start = np.uint64(0) if initial is None else initial
    # each bus row carries the READY lines of the last event before it (none: ``held``)
    between = np.diff(np.concatenate([[0], at, [len(bus.times)]]))
    bus_ready = np.repeat(np.concatenate([np.array([held], np.uint64), r_s]), between)
    event_bus = np.concatenate([np.array([start], np.uint64), bus.states])[at]
    times = np.insert(bus.times, at, r_t)
    merged: U64 = np.insert(bus.states | bus_ready, at, event_bus | r_s).astype(np.uint64)
    return Changes(times, merged)


def electrical(ph: PhysicalSection, states: U64) -> U64:
    """Asserted states -> electrical levels (``physical.active_low`` lines inverted)."""
    mask = np.uint64(0)
    for name in ph.active_low:
        mask |= _mask(_bit(ph.bus_lines, name))
    return states ^ mask


# ------------------------------------------------------------------ recovery


@dataclass(frozen=True)
class SyncLoss:
    """A place where the handshake or the framing lost step: when, and why."""

    time_ns: int
    reason: str


@dataclass
class Recovered:
    """Words recovered from one chunk of changes."""

    times: I64  # when each word was sampled (ns)
    words: npt.NDArray[np.uint16]
    parity: npt.NDArray[np.uint8]  # the word parity bit the layers expect (bad = wrong)
    sides: npt.NDArray[np.uint8]  # 0 = A drove it, 1 = B
    perr: npt.NDArray[np.bool_]
    losses: list[SyncLoss] = field(default_factory=list)


HIST_NS = 1 << 17  # phase durations below this are counted exactly, 1 ns bins


class WordRecovery:
    """Changes (in line space, chunk by chunk) -> words, phase durations, sync losses.

    Glitches: a line that changes and changes back within ``glitch_ns`` is taken not to
    have changed. Only rows at least ``glitch_ns`` before the end of a chunk are
    decided; the rest are kept for the next :meth:`feed` (and :meth:`finish`).
    """

    def __init__(self, ph: PhysicalSection, glitch_ns: int = 0) -> None:
        self.ph = ph
        self.lines = ph.bus_lines
        self.mode = MODES[ph.handshake]
        self.glitch_ns = glitch_ns
        self._bits = [(_bit(self.lines, line), edge) for line, edge in self.mode.phases]
        self._code_bits, self._edge_table = self._edges()
        k = len(self._bits)
        self._ended = np.array([(i - 1) % k for i in range(k)], np.int8)  # phase i closes i-1
        self._pattern = np.zeros(0, np.int8)  # see _cycle
        self._held = Changes.empty()
        self._prev: np.uint64 | None = None  # the state before the held rows
        self._expect = 0  # index of the phase expected next
        self.phase_names = [
            f"{a} {ea} -> {b} {eb}"
            for (a, ea), (b, eb) in zip(
                self.mode.phases, self.mode.phases[1:] + self.mode.phases[:1], strict=True
            )
        ]
        self.hist = np.zeros((len(self.phase_names), HIST_NS), np.int64)
        self.over: list[list[int]] = [[] for _ in self.phase_names]
        self.minimum = [np.iinfo(np.int64).max] * len(self.phase_names)
        self.maximum = [0] * len(self.phase_names)
        self._last_event: int | None = None  # time of the last handshake edge taken
        self.words = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._timeout_ns = int(ph.handshake_timeout_ms * 1e6)

    def _edges(self) -> tuple[tuple[int, int], npt.NDArray[np.int8] | None]:
        """The handshake lines' bits (at most two: REQ, ACK) and the phase of each
        (lines changed, levels after) pair, indexed ``changed << 2 | levels`` (bit 0: the
        first line, bit 1: the second); -1 where no single phase fits (both changed, or
        an edge no phase names). No table (None) if a line is missing from the bus."""
        lines = list(dict.fromkeys(bit for bit, _ in self._bits))
        if len(lines) > 2 or min(lines) < 0:
            return (0, -1), None
        if len(lines) == 1:
            lines.append(-1)  # none: its bit of the code stays 0
        table = np.full(16, -1, np.int8)
        for index, (bit, edge) in enumerate(self._bits):
            j = lines.index(bit)
            for levels in range(4):
                up = bool(levels >> j & 1)
                if edge == "toggle" or (edge == "up") == up:
                    table[(1 << j) << 2 | levels] = index
        return (lines[0], lines[1]), table

    # -- glitches

    def _deglitch(self, ch: Changes, prev: np.uint64) -> Changes:
        w = self.glitch_ns
        if w <= 0 or len(ch.times) < 2 or not (np.diff(ch.times) < w).any():
            return ch
        states = ch.states.copy()
        before = np.concatenate([[prev], states[:-1]])
        changed = states ^ before
        # a line can only glitch if it changes at both ends of a run of rows closer than
        # w to each other (a row and the next): only those lines are looked at
        close = np.flatnonzero(np.diff(ch.times) < w)
        suspects = int(np.bitwise_or.reduce(changed[close])) & int(
            np.bitwise_or.reduce(changed[close + 1])
        )
        for bit in range(len(self.lines)):
            if not suspects >> bit & 1:
                continue
            m = np.uint64(1 << bit)
            rows = np.flatnonzero(changed & m)
            if len(rows) < 2:
                continue
            t = ch.times[rows]
            short = np.zeros(len(rows), bool)
            short[:-1] = (t[1:] - t[:-1]) < w
            if not short.any():
                continue
            keep = ~short
            value = (states & m) != 0
            col = np.zeros(len(states), bool)
            start_value = bool(prev & m)
            marks = np.full(len(states), -1)
            marks[rows[keep]] = rows[keep]
            last = np.maximum.accumulate(marks)
            col = np.where(last >= 0, value[np.maximum(last, 0)], start_value)
            states = np.where(col, states | m, states & ~m)
        return Changes(ch.times, states)

    # -- feeding

    def feed(self, chunk: Changes, *, final: bool = False) -> Recovered:
        """Take a chunk of changes; the words decided so far."""
        if len(self._held.times):
            chunk = Changes(
                np.concatenate([self._held.times, chunk.times]),
                np.concatenate([self._held.states, chunk.states]),
            )
        empty = Recovered(
            np.zeros(0, np.int64),
            np.zeros(0, np.uint16),
            np.zeros(0, np.uint8),
            np.zeros(0, np.uint8),
            np.zeros(0, bool),
        )
        if not len(chunk.times):
            return empty
        if self._prev is None:
            self._prev = chunk.states[0]
        ch = self._deglitch(chunk, self._prev)
        # the rows decided now: all of them at the end, else those glitch_ns before the end
        if final:
            cut = len(ch.times)
        else:
            cut = int(np.searchsorted(ch.times, ch.times[-1] - self.glitch_ns, "left"))
            cut = max(cut, 0)
        prev = self._prev
        if cut == 0:
            self._held = chunk
            return empty
        times, states = ch.times[:cut], ch.states[:cut]
        result, keep_from = self._words(times, states, prev, final)
        # a word whose answer is not in this chunk yet: its rows wait for the next one
        cut = keep_from if keep_from is not None else cut
        self._held = Changes(chunk.times[cut:], chunk.states[cut:])
        self._prev = ch.states[cut - 1]
        return result

    def finish(self) -> Recovered:
        """The rows still held: decide them (the end of the capture)."""
        return self.feed(Changes.empty(), final=True)

    # -- handshake edges to words

    def _events(
        self, times: I64, states: U64, prev: np.uint64
    ) -> tuple[I64, npt.NDArray[np.int8], npt.NDArray[np.intp]]:
        """(time, phase index, row) of every handshake edge, in time order.

        The handshake lines (REQ, ACK) as a two-bit code a row; the rows where it changes;
        which phase each change is, by a table of (lines changed, levels after). Rows where
        both lines change at once, or an edge no phase names, go the general way:
        :meth:`_events_by_line`."""
        table = self._edge_table
        if table is None or not len(states):
            return self._events_by_line(times, states, prev)
        b0, b1 = self._code_bits
        st = np.concatenate([np.array([prev], np.uint64), states])
        if b1 < 0:  # one handshake line (strobe)
            code = ((st >> np.uint64(b0)) & np.uint64(1)).astype(np.uint8)
        elif b1 == b0 + 1:
            code = ((st >> np.uint64(b0)) & np.uint64(3)).astype(np.uint8)
        else:
            code = ((st >> np.uint64(b0)) & np.uint64(1)).astype(np.uint8)
            code |= (((st >> np.uint64(b1)) & np.uint64(1)) << np.uint64(1)).astype(np.uint8)
        change = code[1:] ^ code[:-1]
        rows = np.flatnonzero(change)
        phase = table.take(((change[rows] << 2) | code[1:][rows]).astype(np.intp))
        if (phase < 0).any():  # both lines at once, or an edge of no phase
            return self._events_by_line(times, states, prev)
        return times[rows], phase, rows

    def _events_by_line(
        self, times: I64, states: U64, prev: np.uint64
    ) -> tuple[I64, npt.NDArray[np.int8], npt.NDArray[np.intp]]:
        """:meth:`_events`, one pass per handshake line (REQ, ACK): its column, where it
        changes, and which phase each change is; the lines' edges are merged by row (phase
        order within a row)."""
        per_line: dict[int, list[tuple[int, str]]] = {}
        for index, (bit, edge) in enumerate(self._bits):
            per_line.setdefault(bit, []).append((index, edge))
        rows_all, phase_all = [], []
        for bit, phases in per_line.items():
            col = ((states >> np.uint64(bit)) & np.uint64(1)).astype(np.int8)
            first = np.int8(int(prev) >> bit & 1)
            change = np.empty(len(col), np.int8)
            change[0] = col[0] - first
            np.subtract(col[1:], col[:-1], out=change[1:])
            rows = np.flatnonzero(change)
            rising = change[rows] > 0
            phase = np.empty(len(rows), np.int8)
            for index, edge in phases:
                if edge == "up":
                    phase[rising] = index
                elif edge == "down":
                    phase[~rising] = index
                else:
                    phase[:] = index
            rows_all.append(rows)
            phase_all.append(phase)
        r = np.concatenate(rows_all)
        p = np.concatenate(phase_all)
        if len(rows_all) > 1:
            # two sorted runs: a stable sort merges them in linear time; equal rows keep
            # the lines' order, then the phase order decides
            order = np.argsort(r * len(self._bits) + p, kind="stable")
            r, p = r[order], p[order]
        return times[r], p, r

    def _words(
        self, times: I64, states: U64, prev: np.uint64, final: bool
    ) -> tuple[Recovered, int | None]:
        """The words of these rows; and the row from which to hold the rest back (a
        word's first edge, whose answer is not among them), or None."""
        ev_t, ev_p, ev_r = self._events(times, states, prev)
        keep_from: int | None = None
        unanswered = len(ev_p) and ev_p[-1] == 0 and ev_r[-1] > 0
        if unanswered and not final and self.mode.name != "strobe":
            keep_from = int(ev_r[-1])
            ev_t, ev_p, ev_r = ev_t[:-1], ev_p[:-1], ev_r[:-1]
        k = len(self._bits)
        losses: list[SyncLoss] = []
        # expected phase of each event if nothing went wrong: a running count from the
        # carried expectation; an event that is not the expected one loses sync and the
        # count restarts from it. Vectorised: find the first mismatch, restart, repeat
        # (mismatches are rare in a good capture).
        good = np.zeros(len(ev_p), bool)
        pos, expect = 0, self._expect
        while pos < len(ev_p):
            span = ev_p[pos:]
            want = self._cycle(expect, len(span))
            bad = np.flatnonzero(span != want)
            if not len(bad):
                good[pos:] = True
                expect = int((expect + len(span)) % k)
                break
            first = int(bad[0])
            good[pos : pos + first] = True
            at = pos + first
            got = int(ev_p[at])
            losses.append(
                SyncLoss(
                    int(ev_t[at]),
                    f"handshake out of step: {self._edge_name(got)} while waiting for "
                    f"{self._edge_name(int(want[first]))}",
                )
            )
            if got == 0:  # a new word starts here
                pos, expect = at, 0
            else:
                pos, expect = at + 1, (got + 1) % k
        self._expect = expect
        # a word: a good phase-0 event followed by a good phase-1 event (the answer); for
        # strobe the strobe itself (its phase 1 is its own end)
        zero = np.flatnonzero(good & (ev_p == 0))
        nxt = zero + 1
        answered = nxt < len(ev_p)
        answered[answered] = good[nxt[answered]] & (ev_p[nxt[answered]] == 1)
        if self.mode.name == "strobe":
            answered[:] = True
        # an unanswered last strobe edge of the chunk: its answer may come in the next
        # chunk; the word is taken now (its data were sampled at the edge)
        if len(zero) and not answered[-1] and nxt[-1] >= len(ev_p):
            answered[-1] = True
        take = zero[answered]
        rows = ev_r[take]
        st = states[rows]
        words = (st & np.uint64(0xFFFF)).astype(np.uint16)
        parity = self._parity(words, st)
        sides = self._sides(st)
        perr_bit = _bit(self.lines, "PERR")
        perr = (st & _mask(perr_bit)) != 0 if perr_bit >= 0 else np.zeros(len(rows), bool)
        if self.mode.name == "four-phase" and perr_bit >= 0:
            # PERR goes with ACK: look at the row of the answer
            ans = ev_r[np.minimum(take + 1, len(ev_r) - 1)]
            perr = (states[ans] & _mask(perr_bit)) != 0
        self._phases(ev_t, ev_p, good, losses)
        t = ev_t[take]
        if len(t):
            self.words += len(t)
            self.first_ns = int(t[0]) if self.first_ns is None else self.first_ns
            self.last_ns = int(t[-1])
        return Recovered(t, words, parity, sides, perr, losses), keep_from

    def _cycle(self, start: int, n: int) -> npt.NDArray[np.int8]:
        """The phases ``start``, ``start + 1``, ... (mod the phase count), ``n`` of them: a
        view of one repeating pattern, not computed each time."""
        k = len(self._bits)
        if len(self._pattern) < start + n:
            self._pattern = (np.arange(2 * (start + n) + k) % k).astype(np.int8)
        return self._pattern[start : start + n]

    def _edge_name(self, index: int) -> str:
        line, edge = self.mode.phases[index]
        return f"{line} {'changing' if edge == 'toggle' else edge}"

    def _parity(self, words: npt.NDArray[np.uint16], st: U64) -> npt.NDArray[np.uint8]:
        ph = self.ph
        if ph.parity == "none":
            return np.zeros(len(words), np.uint8)
        line: npt.NDArray[np.uint8] = (
            (st >> np.uint64(_bit(self.lines, "PARITY"))) & np.uint64(1)
        ).astype(np.uint8)
        if ph.parity_lines == 1:
            return line
        high = ((st >> np.uint64(_bit(self.lines, "PARITY_HI"))) & np.uint64(1)).astype(np.uint8)
        low_ok, high_ok = byte_parity(words, ph.parity)
        bad = (low_ok.astype(np.uint8) != line) | (high_ok.astype(np.uint8) != high)
        word: npt.NDArray[np.uint8] = parity_bits(words, ph.parity) ^ bad.astype(np.uint8)
        return word

    def _sides(self, st: U64) -> npt.NDArray[np.uint8]:
        d = _bit(self.lines, "DIR")
        if d >= 0:
            side: npt.NDArray[np.uint8] = ((st & _mask(d)) == 0).astype(np.uint8)
        else:
            side = ((st & _mask(_bit(self.lines, "BREQ"))) != 0).astype(np.uint8)
        return side

    def _phases(
        self,
        ev_t: I64,
        ev_p: npt.NDArray[np.int8],
        good: npt.NDArray[np.bool_],
        losses: list[SyncLoss],
    ) -> None:
        """Durations between consecutive good edges, by the phase they close."""
        everything = bool(good.all())
        t = ev_t if everything else ev_t[good]
        p = ev_p if everything else ev_p[good]
        if self._last_event is not None and len(t):
            prev_t = np.concatenate([[self._last_event], t[:-1]])
            # the first edge after a sync loss has no meaningful predecessor
        elif len(t):
            prev_t = np.concatenate([[t[0]], t[:-1]])
        else:
            return
        d = t - prev_t
        phase = self._ended.take(p.astype(np.intp))  # the phase that ended here
        valid = np.ones(len(d), bool)
        if self._last_event is None:
            valid[0] = False
        # a gap across a lost step is not a phase
        for loss in losses:
            valid[
                np.searchsorted(t, loss.time_ns, "left") : np.searchsorted(t, loss.time_ns, "right")
                + 1
            ] = False
        self._last_event = int(t[-1])
        if not self._count_phases(d, phase, valid):
            self._count_phases_by_phase(d, phase, valid)
        # the answer edge of a word (phase 0 -> 1) over the timeout: the peer stalled
        answer = valid & (phase == 0) & (d > self._timeout_ns)
        for at in t[answer]:
            losses.append(SyncLoss(int(at), "answer later than physical.handshake_timeout_ms"))

    def _count_phases(
        self, d: I64, phase: npt.NDArray[np.int8], valid: npt.NDArray[np.bool_]
    ) -> bool:
        """Count the durations ``d`` (of ``phase``, where ``valid``) in one histogram pass,
        if all are below :data:`HIST_NS` and span under 4,096 ns (a steady handshake);
        False (nothing counted) if not."""
        if not valid.all():
            d, phase = d[valid], phase[valid]
        if not len(d):
            return True
        low, high = int(d.min()), int(d.max())
        if high >= HIST_NS or high - low >= 4096:
            return False
        k = len(self._bits)
        counts = np.bincount((d - low) * k + phase, minlength=(high - low + 1) * k)
        counts = counts.reshape(-1, k)
        self.hist[:, low : high + 1] += counts.T
        for i in range(k):
            seen = np.flatnonzero(counts[:, i])
            if len(seen):
                self.minimum[i] = min(self.minimum[i], low + int(seen[0]))
                self.maximum[i] = max(self.maximum[i], low + int(seen[-1]))
        return True

    def _count_phases_by_phase(
        self, d: I64, phase: npt.NDArray[np.int8], valid: npt.NDArray[np.bool_]
    ) -> None:
        """Count the durations ``d`` phase by phase (any range: those from
        :data:`HIST_NS` on are kept in a list)."""
        for i in range(len(self._bits)):
            sel = d[valid & (phase == i)]
            if not len(sel):
                continue
            self.minimum[i] = min(self.minimum[i], int(sel.min()))
            self.maximum[i] = max(self.maximum[i], int(sel.max()))
            small = sel[sel < HIST_NS]
            counts = np.bincount(small)
            self.hist[i, : len(counts)] += counts
            big = sel[sel >= HIST_NS]
            if len(big):
                self.over[i].extend(int(x) for x in big[: 10000 - len(self.over[i])])

    def phase_stats(self) -> dict[str, dict[str, int | None]]:
        """min/median/max nanoseconds of each phase (median exact below ~131 us)."""
        out: dict[str, dict[str, int | None]] = {}
        for i, name in enumerate(self.phase_names):
            counts = self.hist[i]
            total = int(counts.sum()) + len(self.over[i])
            if not total:
                out[name] = {"count": 0, "min": None, "median": None, "max": None}
                continue
            half = (total - 1) // 2
            cum = np.cumsum(counts)
            if half < cum[-1]:
                median = int(np.searchsorted(cum, half, "right"))
            else:
                median = sorted(self.over[i])[min(half - int(cum[-1]), len(self.over[i]) - 1)]
            out[name] = {
                "count": total,
                "min": self.minimum[i],
                "median": median,
                "max": self.maximum[i],
            }
        return out

"""Profile fitting: what a link profile must say, inferred from a capture of the bus alone.

``acrnema-bridge profile fit CAPTURE --out PROFILE.toml`` (docs/capture.md, "Fitting a
profile"). The probes may be named anything, in any order, some inverted; no channel map
is needed (one given with ``--map`` is taken as it is). The search space and the method,
step by step, each step narrowing the next:

1. **Handshake** (:func:`_handshake`): two probes whose edges strictly alternate, with the
   same count, are REQ (the one that moves first) and ACK; the edges between which the
   other probes change tell four-phase (data change after every second ACK edge) from
   two-phase (after every ACK edge); one probe pulsing alone is a strobe. REQ's level
   before its first edge is its idle level (inverted when high).
2. **Words**: every probe sampled where REQ is asserted (or toggles, two-phase).
3. **Data, parity and direction lines** (:func:`_classify`): the probes that change
   between words at the normal word pace are data or parity; those that change only
   across the long gaps where the bus changes hands are direction lines (DIR, BREQ).
   The XOR of all 18 (or 17) busiest probes being constant means two (or one) parity
   lines. Probes that never change are ground or unused.
4. **Polarity** of the data and parity lines: the commonest word the receiving side
   sends is the zero word (group 0000 of every command, ACK lengths, padding): its
   levels are the lines' idle levels. The parity sense (odd or even) is read from the
   zero word's parity level; it cannot be told from an inverted parity probe, and need
   not be (both decode alike).
5. **Frames and bit order** (:func:`_frames`, :func:`_bit_order`): the start word is
   a frequent word, sent by both sides, two words after which the word is a function of
   the distance to the next start word (the length field: distance - 4 with a check
   word, - 3 without). Without one (``length_only``, :func:`_walk`) the bit orders the
   Recognition Code allows are tried until one walks each side's words as frames back
   to back, every header a frame type, with a check that fits.
   Known plaintext then constrains which probe is which bit: the length field (the
   distance), the header (a DATA frame's sequence number counts 0, 1, 2...; the type in
   bits 12-15; bits 10-11 zero) and the parity positions. Probes and positions that the
   constraints cannot tell apart form classes; every assignment within the classes (at
   most :data:`MAX_CANDIDATES`) is scored on the payloads: "ACR-NEMA" as text in either
   byte order, the command group's element numbers, and command field values of the
   profile's command table. The best scoring order wins; its margin over the next gives
   the confidence.
6. **Check word** (:func:`fit_check`): an additive sum, CRC-16 with any polynomial (all
   65,536 tried at once with numpy on the XOR of two frames of equal length, where init
   and final XOR cancel by linearity), then init (all 65,536 at once) and the final XOR
   from one more frame, for each reflection; or no check word.
7. **Acknowledgement**: frames with no payload going back (type ACK) mean selective
   acknowledgement; none seen, ``ack_mode = "none"``.
8. **Transport, session, byte orders**: every combination of ``transport.mode``,
   ``session.mode`` and the text and binary byte orders is tried by decoding the capture
   with the passive observer (:class:`~bridge.capture.observe.Observer`); the one that
   yields the most messages and converted images wins.
9. **Control lines** (:func:`_control_lines`): of the probes that change, but not with
   the words, the one pulsing within the cycle of each word damaged on the wire (wrong
   parity) and of no other is PERR; two at one level at every word are the READY pair,
   in an order edges cannot tell. Words damaged on the wire are allowed: steps 5-7 read
   the words before the first one (:func:`_before_damage`).

9. **Timing** (:func:`_timing`): setup, hold and turnaround from the edges of the
   prefix (the median, or for turnaround the least, plus :data:`TIMING_MARGIN`), the
   handshake timeout from the slowest answer.
10. **Frame type codes, sequence bits, window, payload size** (:func:`_link_keys`), from
    the frames as the fitted bit order reads them: the DATA code is the type of frames
    with a payload, ACK of empty frames; step 5 takes the DATA header to be the
    reference's first, then any type code with 8 down to 2 sequence bits
    (:func:`_header_guesses`); the sequence bits from the numbers' wrap, the window from
    where a side waits for an ACK, the payload size from payloads cut at one length.

Memory is bounded whatever the capture's length: steps 1-10 read the first ``max_words``
words (:data:`MAX_WORDS`, at most :data:`ROWS_PER_WORD` rows of changes each); step 8
decodes the whole capture streaming, as ``capture decode`` does.

What the fit cannot tell, or did not find, it says (:attr:`Fit.unfitted`): such keys keep
the reference value. Limits (docs/capture.md): the capture should start at the start of
the link (the first frames numbered from 0), hold a few frames each way, and be free of
glitches longer than ``glitch_ns``. With
``--map`` the map's bit order and polarities are taken as they are, and every line it
names is kept in the fitted map.
"""

from __future__ import annotations

import itertools
import logging
import math
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.acrnema.commands import Message
from bridge.capture.bus import Changes
from bridge.capture.channels import ChannelMap
from bridge.errors import CaptureError
from bridge.profile import (
    OPTIONAL_LINES,
    REFERENCE,
    SPI_COMMANDS,
    ApplicationSection,
    DatalinkSection,
    Profile,
    validate,
)

__all__ = ["Finding", "Fit", "fit_capture", "fit_check", "fit_toml"]

log = logging.getLogger(__name__)

MAX_WORDS = 50_000  # words of the capture the fit reads (the start of it; --max-words)
ROWS_PER_WORD = 8  # rows of changes read per word of the prefix, at most (four-phase: ~5)
MAX_CANDIDATES = 4_000  # bit orders scored, at most
MAX_REFINE = 2_000  # bit orders tried against the check word, best scored first
MAX_CRC_SEARCHES = 24  # all-polynomial CRC searches per strategy (each up to ~1 s)
READY_TAIL_WORDS = 64  # words at the end a READY line may have dropped before
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Finding:
    """One fitted key: its value, the evidence, and how sure the fit is."""

    key: str  # "physical.handshake", "channels"
    value: Any
    evidence: str
    confidence: str  # high | medium | low


@dataclass
class Fit:
    """What :func:`fit_capture` found."""

    profile: Profile
    cmap: ChannelMap
    findings: list[Finding] = field(default_factory=list)
    unfitted: list[str] = field(default_factory=list)
    channel_notes: dict[str, str] = field(default_factory=dict)  # probe -> evidence


# ------------------------------------------------------------------ reading


def _deglitch(ch: Changes, n: int, width: int) -> Changes:
    """Each probe's changes undone within ``width`` ns taken not to have happened (the
    level before the pulse holds), as ``capture decode --glitch-ns`` reads a line."""
    if width <= 0 or len(ch.times) < 3 or not (np.diff(ch.times) < width).any():
        return ch
    states = ch.states.copy()
    for bit in range(n):
        rows = _edges(states, bit)
        if len(rows) < 2:
            continue
        t = ch.times[rows]
        short = np.zeros(len(rows), bool)
        short[:-1] = (t[1:] - t[:-1]) < width
        if not short.any():
            continue
        marks = np.full(len(states), -1)
        marks[rows[~short]] = rows[~short]
        last = np.maximum.accumulate(marks)
        m = np.uint64(1 << bit)
        value = (states & m) != 0
        col = np.where(last >= 0, value[np.maximum(last, 0)], value[0])
        states = np.where(col, states | m, states & ~m)
    return Changes(ch.times, states)


def _shortest_pulse(ch: Changes, probes: Sequence[str]) -> tuple[int, str] | None:
    """The shortest time any probe held a level between two of its changes, and where."""
    best: tuple[int, str] | None = None
    for bit, name in enumerate(probes):
        t = ch.times[_edges(ch.states, bit)]
        if len(t) >= 2:
            k = int(np.argmin(np.diff(t)))
            width = int(t[k + 1] - t[k])
            if best is None or width < best[0]:
                best = (width, f"{name} at {int(t[k])} ns")
    return best


def _read(path: str | Path, max_words: int = MAX_WORDS) -> tuple[list[str], Changes]:
    """All probes' levels (bit i = probe i), the first ``ROWS_PER_WORD * max_words`` rows
    (and the rest of the block that reaches them): the fit's memory is bounded by this
    prefix, whatever the length of the capture."""
    from bridge.capture.decode import open_capture

    with open_capture(path) as reader:
        probes = list(reader.probes)
        if not probes:
            raise CaptureError(f"{path}: no probes")
        if len(probes) > 64:
            raise CaptureError(f"{path}: {len(probes)} probes; the fit reads at most 64")
        times, states, rows = [], [], 0
        for chunk in reader.changes(probes):
            times.append(chunk.times)
            states.append(chunk.states)
            rows += len(chunk.times)
            if rows > ROWS_PER_WORD * max_words:
                break
    if not rows:
        raise CaptureError(f"{path}: no changes")
    return probes, Changes(np.concatenate(times), np.concatenate(states))


def _col(states: U64, bit: int) -> npt.NDArray[np.uint8]:
    return ((states >> np.uint64(bit)) & np.uint64(1)).astype(np.uint8)


def _edges(states: U64, bit: int) -> npt.NDArray[np.intp]:
    c = _col(states, bit)
    return np.flatnonzero(c[1:] != c[:-1]) + 1


# ------------------------------------------------------------------ step 1: handshake


@dataclass(frozen=True)
class _Handshake:
    mode: str
    req: int
    ack: int | None
    req_inverted: bool
    ack_inverted: bool
    sample_rows: npt.NDArray[np.intp]
    evidence: str


def _alternate(a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]) -> bool:
    """Whether the edges of a and b strictly alternate, a first."""
    if not len(a) or abs(len(a) - len(b)) > 1 or len(b) > len(a):
        return False
    n = len(b)
    if (a[:n] >= b).any():
        return False
    return not (len(a) > n + 0 and n and (a[1 : n + 1] <= b[: len(a[1 : n + 1])]).any())


def _handshake(states: U64, nprobes: int, probes: Sequence[str]) -> _Handshake:
    edges = {i: _edges(states, i) for i in range(nprobes)}
    busy = sorted((i for i in edges if len(edges[i]) >= 4), key=lambda i: -len(edges[i]))
    if not busy:
        raise CaptureError("no probe changes more than 3 times: no handshake to follow")
    others_changed = np.zeros(len(states), bool)
    for x, y in itertools.permutations(busy[:6], 2):
        if not _alternate(edges[x], edges[y]):
            continue
        if len(edges[y]) < 0.98 * len(edges[x]):
            continue
        # which ACK edges are followed (before the next REQ edge) by other probes changing
        mask = np.uint64(0)
        for i in range(nprobes):
            if i not in (x, y):
                mask |= np.uint64(1 << i)
        diff = (states[1:] ^ states[:-1]) & mask
        others_changed[1:] = diff != 0
        change_rows = np.flatnonzero(others_changed)
        ey, ex = edges[y], edges[x]
        nxt = np.searchsorted(ex, ey)  # the next REQ edge after each ACK edge
        hit = np.zeros(len(ey), bool)
        valid = nxt < len(ex)
        lo = np.searchsorted(change_rows, ey[valid])
        hi = np.searchsorted(change_rows, ex[nxt[valid]])
        hit[valid] = hi > lo
        even, odd = int(hit[0::2].sum()), int(hit[1::2].sum())
        first_x = int(_col(states, x)[0])
        first_y = int(_col(states, y)[0])
        if min(even, odd) <= 0.1 * max(even, odd, 1):
            # four-phase: data change after ACK's return edge only
            sample = ex[0::2]
            evidence = (
                f"{probes[x]} and {probes[y]} alternate strictly ({len(ex)} and {len(ey)} "
                f"edges, {probes[x]} first); other lines change after every second "
                f"{probes[y]} edge ({even} vs {odd}): four-phase"
            )
            return _Handshake("four-phase", x, y, bool(first_x), bool(first_y), sample, evidence)
        evidence = (
            f"{probes[x]} and {probes[y]} alternate strictly ({len(ex)} and {len(ey)} edges, "
            f"{probes[x]} first); other lines change after every {probes[y]} edge "
            f"({even} and {odd}): two-phase"
        )
        return _Handshake("two-phase", x, y, bool(first_x), bool(first_y), ex, evidence)
    # strobe: the busiest probe, pulsing (an even number of edges, short asserted spells)
    x = busy[0]
    ex = edges[x]
    idle = int(_col(states, x)[0])
    evidence = (
        f"no two probes alternate; {probes[x]}, the busiest ({len(ex)} edges), pulses alone "
        f"from idle level {idle}: strobe"
    )
    return _Handshake("strobe", x, None, bool(idle), False, ex[0::2], evidence)


# ------------------------------------------------------------------ step 3: lines


@dataclass(frozen=True)
class _Lines:
    data: list[int]  # probe indices carrying data or parity (16 + parity_lines), any order
    parity_lines: int
    direction: list[int]  # probe indices changing only where the bus changes hands
    other: list[int]  # other probes that change (READY? PERR?)
    unused: list[int]  # constant probes
    evidence: str


def _classify(
    sampled: U64, times: npt.NDArray[np.int64], states: U64, hs: _Handshake, n: int
) -> _Lines:
    words = len(sampled)
    gaps = np.diff(times)
    long_gap = gaps > 1.5 * np.median(gaps) if len(gaps) else np.zeros(0, bool)
    paced, across, changes = {}, {}, {}
    skip = {hs.req} | ({hs.ack} if hs.ack is not None else set())
    rows = hs.sample_rows[:words]
    rows = rows[rows > 0]
    for i in range(n):
        if i in skip:
            continue
        c = _col(sampled, i)
        flips = c[1:] != c[:-1]
        paced[i] = int((flips & ~long_gap).sum())
        across[i] = int((flips & long_gap).sum())
        changes[i] = len(_edges(states, i))
        # data and parity are set up before the edge that samples them; a probe that
        # changes at that very edge (PERR in strobe mode, raised with the REQ pulse of a
        # damaged word) keeps the XOR of the data constant as a parity line would, but
        # is not one
        full = _col(states, i)
        at_edge = int((full[rows] != full[rows - 1]).sum())
        if at_edge and at_edge * 2 >= paced[i]:  # each pulse: up with the edge, down after
            paced[i] = 0
    ranked = sorted(paced, key=lambda i: -paced[i])
    parity_lines, off = None, 0
    # the XOR constant over every word; failing that, over all but 1% (words damaged on
    # the wire, which their receiver answers with PERR); failing that, no parity line
    for tolerant, k in itertools.product((False, True), (2, 1, 0)):
        top = ranked[: 16 + k]
        if len(top) < 16 + k or min(paced[i] for i in top) < 2:
            continue
        if k == 0:
            if tolerant:
                parity_lines = 0
                break
            continue
        x = np.zeros(words, np.uint8)
        for i in top:
            x ^= _col(sampled, i)
        off = int(min(np.count_nonzero(x), np.count_nonzero(x == 0)))
        if off <= (words // 100 if tolerant else 0):
            parity_lines = k
            break
    if parity_lines is None:
        raise CaptureError(
            f"fewer than 16 probes change between words ({sum(1 for v in paced.values() if v)}"
            f"): not a 16-bit data bus, or too short a capture"
        )
    data = ranked[: 16 + parity_lines]
    rest = [i for i in ranked[16 + parity_lines :]]
    direction = [i for i in rest if across[i] > 0 and paced[i] == 0]
    other = [i for i in rest if i not in direction and changes[i] > 0]
    unused = [i for i in rest if changes[i] == 0]
    evidence = (
        f"{len(data)} probes change between words at the word pace (at least "
        f"{min(paced[i] for i in data)} times)"
        + (
            f", their XOR constant over {words} words"
            + (f" but {off} (damaged on the wire)" if off else "")
            + f": {parity_lines} parity line(s)"
            if parity_lines
            else ", no XOR of 17 constant: no parity line"
        )
    )
    return _Lines(data, parity_lines, direction, other, unused, evidence)


# ------------------------------------------------------------------ step 5: frames


def _bits(u: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.uint8]:
    return ((u >> np.uint64(k)) & np.uint64(1)).astype(np.uint8)


def _pack(sampled: U64, data: Sequence[int]) -> npt.NDArray[np.uint64]:
    """The data probes' levels as one number per word, bit k = probe ``data[k]``."""
    out = np.zeros(len(sampled), np.uint64)
    for k, i in enumerate(data):
        out |= _bits(sampled, i).astype(np.uint64) << np.uint64(k)
    return out


@dataclass
class _Frames:
    """Where the frames are in each side's words. Without a start word (``length_only``)
    a frame's "start" is the place before its header, its gap one more than its words."""

    starts: dict[int, npt.NDArray[np.intp]]  # side -> positions of the start word
    gaps: dict[int, npt.NDArray[np.int64]]  # side -> words to the next start (-1: last)
    start_raw: int | None  # None: length_only
    evidence: str


_LONGEST_PAYLOAD = 4096  # words: a frame running past the prefix read, at most


def _walk(true: dict[int, npt.NDArray[np.uint16]], check_words: int) -> _Frames | None:
    """Frames back to back from each side's first word (``length_only``): each header's
    type a frame type, bits 10-11 zero, the last frame ending with the side's words, or
    running past them when its payload is of a possible size (the prefix the fit reads
    may end inside a frame)."""
    codes = set(range(1, 16))  # any type code: the check word tells a wrong walk
    starts, gaps = {}, {}
    total = 0
    for side, words in true.items():
        p, pos, lens = 0, [], []
        while p + 2 <= len(words):
            head, length = int(words[p]), int(words[p + 1])
            size = 2 + length + check_words
            if head >> 12 not in codes or head & 0x0C00:
                return None
            if p + size > len(words):
                if length > _LONGEST_PAYLOAD:
                    return None
                p = len(words)  # the prefix ends inside this frame
                break
            pos.append(p - 1)
            lens.append(size + 1)
            p += size
        if p + 1 < len(words) or not pos:
            return None
        starts[side] = np.array(pos, np.intp)
        gaps[side] = np.array(lens, np.int64)
        total += len(pos)
    evidence = f"{total} frames back to back, each header's length reaching the next header"
    return _Frames(starts, gaps, None, evidence)


def _frames(u: dict[int, npt.NDArray[np.uint64]]) -> _Frames | None:
    """The start word: a frequent word after which, 2 words on, a function of the gap."""
    counts: Counter[int] = Counter()
    for side in u:
        counts.update(Counter(int(v) for v in u[side]))
    # the replying side sends few payload words: its frequent words first, then both sides'
    back_counts = Counter(int(v) for v in u[1])
    candidates = [v for v, _ in back_counts.most_common(16)]
    candidates += [v for v, _ in counts.most_common(64) if v not in candidates]
    best: tuple[float, int] | None = None
    for value in candidates:
        count = counts[value]
        if value == 0 or count < 2:
            continue
        seen: dict[int, int] = {}
        back: dict[int, int] = {}
        good = total = 0
        for words in u.values():
            pos = np.flatnonzero(words == value)
            for a, b in itertools.pairwise(pos.tolist()):
                if a + 2 >= len(words):
                    continue
                gap, lw = b - a, int(words[a + 2])
                total += 1
                if seen.setdefault(gap, lw) == lw and back.setdefault(lw, gap) == gap:
                    good += 1
        if total < 2 or not all((words == value).any() for words in u.values()):
            continue  # both sides send frames
        score = good / total * math.log(total + 1)
        score *= 1 + sum(len(words) > 0 and int(words[0]) == value for words in u.values())
        if good / total > 0.9 and (best is None or score > best[0]):
            best = (score, value)
    if best is None:
        return None
    value = best[1]
    starts, gaps = {}, {}
    for side, words in u.items():
        pos = np.flatnonzero(words == value)
        starts[side] = pos
        g = np.full(len(pos), -1, np.int64)
        g[:-1] = np.diff(pos)
        gaps[side] = g
    n = sum(len(p) for p in starts.values())
    return _Frames(starts, gaps, value, f"{n} frames, the word two on a function of the gap")


# ------------------------------------------------------------------ bit order


def _positions(parity_lines: int) -> list[str]:
    return [f"D{j}" for j in range(16)] + (
        ["PARITY"] if parity_lines == 1 else ["PARITY", "PARITY_HI"] if parity_lines == 2 else []
    )


def _expand(values: npt.NDArray[np.int64], parity_lines: int) -> npt.NDArray[np.uint8]:
    """Known true words -> one column per position (data bits, then parity as XOR)."""
    v = values.astype(np.int64)
    cols = [((v >> j) & 1).astype(np.uint8) for j in range(16)]
    low = np.zeros(len(v), np.uint8)
    high = np.zeros(len(v), np.uint8)
    for j in range(8):
        low ^= cols[j]
        high ^= cols[j + 8]
    if parity_lines == 1:
        cols.append(low ^ high)
    elif parity_lines == 2:
        cols += [low, high]
    return np.stack(cols, axis=1) if len(v) else np.zeros((0, len(cols)), np.uint8)


def _consistent(
    raw: npt.NDArray[np.uint64],
    known: npt.NDArray[np.int64],
    mask: npt.NDArray[np.uint8],
    m: int,
    parity_lines: int,
) -> npt.NDArray[np.bool_]:
    """ok[k, j]: raw column k agrees with position j on every row where j is known."""
    truth = _expand(known, parity_lines)
    ok = np.ones((m, m), bool)
    for k in range(m):
        col = _bits(raw, k)
        bad = (col[:, None] != truth) & (mask != 0)
        ok[k] &= ~bad.any(axis=0)
    return ok


_CODES = (b"ACR-NEMA 2.0", b"ACR-NEMA 1.0", b"ACR-NEMA")


def _text_rows(
    u: dict[int, npt.NDArray[np.uint64]], m: int, parity_lines: int
) -> list[list[list[tuple[int, int]]]]:
    """Where the Recognition Code seems to be, as (raw word, true word) rows.

    A window of words carries a text when each probe's bits over the window (its
    signature) and each position's bits over the text are the same multiset: the bit
    order is unknown, but not what a text looks like to each bit. Tried for each text,
    in both byte orders: the two orders have the same signatures (a byte swap is a bit
    order too), so each is an alternative, its matches the rows; for the first text
    found."""
    for text in _CODES:
        alternatives = []
        for order in (">u2", "<u2"):
            target = np.frombuffer(text, order).astype(np.int64)
            k = len(target)
            tsig = np.zeros(m, np.int64)
            truth = _expand(target, parity_lines)
            for i in range(k):
                tsig |= truth[i].astype(np.int64) << i
            want = np.sort(tsig)
            found: list[list[tuple[int, int]]] = []
            for words in u.values():
                if len(words) < k:
                    continue
                bits = np.stack([_bits(words, c) for c in range(m)], axis=1).astype(np.int64)
                sig = np.zeros((len(words) - k + 1, m), np.int64)
                for i in range(k):
                    sig |= bits[i : len(words) - k + 1 + i] << i
                hits = np.flatnonzero((np.sort(sig, axis=1) == want).all(axis=1))
                for p in hits[:8].tolist():
                    found.append([(int(words[p + i]), int(target[i])) for i in range(k)])
            if found:
                alternatives.append(found)
        if alternatives:
            return alternatives
    return []


def _with_text(
    ok: npt.NDArray[np.bool_], u: dict[int, npt.NDArray[np.uint64]], m: int, parity_lines: int
) -> list[npt.NDArray[np.bool_]]:
    """``ok`` narrowed by the Recognition Code, one matrix per byte order it allows
    (``ok`` itself when the text is not found or contradicts ``ok``)."""
    out = []
    for alternative in _text_rows(u, m, parity_lines):
        more = ok.copy()
        for rows in alternative:
            narrower = more & _consistent(
                np.array([r for r, _ in rows], np.uint64),
                np.array([t for _, t in rows], np.int64),
                np.ones((len(rows), m), np.uint8),
                m,
                parity_lines,
            )
            if narrower.any(axis=1).all():
                more = narrower
        if more.any(axis=1).all() and (more != ok).any():
            out.append(more)
    return out or [ok]


def _matchings(ok: npt.NDArray[np.bool_]) -> Iterator[list[int]]:
    """Every bijection raw column k -> position, within ``ok`` (depth first)."""
    m = len(ok)
    order = sorted(range(m), key=lambda k: int(ok[k].sum()))
    used = [False] * m
    perm = [-1] * m

    def walk(i: int) -> Iterator[list[int]]:
        if i == m:
            yield list(perm)
            return
        k = order[i]
        for j in np.flatnonzero(ok[k]).tolist():
            if not used[j]:
                used[j] = True
                perm[k] = j
                yield from walk(i + 1)
                used[j] = False

    yield from walk(0)


def _true_words(raw: npt.NDArray[np.uint64], perm: Sequence[int]) -> npt.NDArray[np.uint16]:
    out = np.zeros(len(raw), np.uint64)
    for k, j in enumerate(perm):
        if j < 16:
            out |= _bits(raw, k).astype(np.uint64) << np.uint64(j)
    return out.astype(np.uint16)


_TEXT = (b"ACR-NEMA", b"CA-RENAM")


def _payload_score(payloads: Sequence[bytes], commands: set[int]) -> int:
    """Known plaintext in frame payloads: the Recognition Code as text, either byte order,
    command group element numbers, command field values of the profile's table."""
    score = 0
    for data in payloads:
        for text in _TEXT:
            score += 4 * data.count(text)
        for element in (0x0000, 0x0010, 0x0100, 0x0110, 0x0800):
            score += data.count(struct.pack(">HH", 0, element))
        at = data.find(b"\x00\x00\x01\x00")
        if at >= 0 and at % 2 == 0 and at + 10 <= len(data):
            value = struct.unpack_from(">H", data, at + 8)[0]
            score += 4 if value in commands else 0
    return score


# ------------------------------------------------------------------ check word


def _reflect_all(values: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    out = np.zeros_like(values)
    for b in range(16):
        out |= ((values >> b) & 1) << (15 - b)
    return out


def _crc_all_polys(data: bytes, refin: bool) -> npt.NDArray[np.uint32]:
    """The CRC register (init 0, no final XOR, no output reflection) of ``data`` for every
    polynomial 0..65535 at once (reflected input: the reflected register of ``crc16``)."""
    polys = np.arange(1 << 16, dtype=np.uint32)
    reg = np.zeros(1 << 16, np.uint32)
    if refin:
        rp = _reflect_all(polys)
        for byte in data:
            reg ^= np.uint32(byte)
            for _ in range(8):
                reg = np.where(reg & 1, (reg >> 1) ^ rp, reg >> 1)
        return _reflect_all(reg)  # as crc16 returns it, before refout
    for byte in data:
        reg ^= np.uint32(byte << 8)
        for _ in range(8):
            reg = np.where(reg & 0x8000, ((reg << 1) ^ polys) & 0xFFFF, (reg << 1) & 0xFFFF)
    return reg


def fit_check(
    frames: Sequence[tuple[bytes, int]],
    cache: dict[tuple[bytes, bool], npt.NDArray[np.uint32]] | None = None,
) -> tuple[dict[str, Any], str] | None:
    """The frame check of ``frames`` ((covered bytes, check word) each): a dict of
    datalink keys and the evidence, or None when no CRC-16 or sum fits. ``cache`` keeps
    the all-polynomial registers between calls (the refinement calls this for many bit
    orders).

    Sums first; CRC-16: for two frames of equal length the XOR of their checks is the
    CRC (init 0, no final XOR) of the XOR of their bytes, for every polynomial at once;
    each surviving polynomial and reflection gets its init by trying all 65,536 on a
    frame of another length, the final XOR following; every frame must then agree.
    """
    from bridge.acrnema.framing import crc16

    if not frames:
        return None
    sums = [int(np.frombuffer(c, ">u2").sum(dtype=np.uint64)) & 0xFFFF for c, _ in frames]
    if all(s == w for s, (_, w) in zip(sums, frames, strict=True)):
        return {"crc": "sum-16"}, f"the last word is the 16-bit sum on {len(frames)} frames"
    by_len: dict[int, list[tuple[bytes, int]]] = {}
    for f in frames:
        by_len.setdefault(len(f[0]), []).append(f)
    pairs = sorted(
        ((x, y) for v in by_len.values() for x, y in itertools.pairwise(v[:4]) if x[0] != y[0]),
        key=lambda p: len(p[0][0]),
    )[:3]
    if not pairs:
        return None
    (a, ca), _ = pairs[0]
    distinct = sorted(by_len, key=lambda n: -len(by_len[n]))
    cache = cache if cache is not None else {}
    for refin, refout in ((False, False), (True, True), (False, True), (True, False)):
        polys: npt.NDArray[np.bool_] | None = None
        for (x, cx), (y, cy) in pairs:
            xored = bytes(i ^ j for i, j in zip(x, y, strict=True))
            reg = cache.get((xored, refin))
            if reg is None:
                if len(cache) >= 4 * MAX_CRC_SEARCHES:
                    return None  # the budget is spent: this order is not tried for a CRC
                reg = cache[xored, refin] = _crc_all_polys(xored, refin)
            want = cx ^ cy
            if refout:
                want = int(f"{want:016b}"[::-1], 2)
            hit = reg == want
            polys = hit if polys is None else polys & hit
        assert polys is not None
        for poly in np.flatnonzero(polys).tolist()[:64]:
            if poly == 0:
                continue
            # init: crc16(first, init) ^ xorout == check; with a second length, both
            init_xor = [(init, _crc(a, poly, init, refin, refout, 0) ^ ca) for init in (0, 0xFFFF)]
            other = [by_len[n][0] for n in distinct if n != len(a)]
            found = None
            candidates = init_xor if not other else None
            if other:
                o, co = other[0]
                inits = _inits(a, o, ca, co, poly, refin, refout)
                candidates = [(i, _crc(a, poly, i, refin, refout, 0) ^ ca) for i in inits]
                # equivalent pairs: the catalogues' usual values first
                candidates.sort(key=lambda c: (c[1] not in (0, 0xFFFF), c[0] not in (0, 0xFFFF)))
            for init, xorout in candidates or []:
                # a few frames bit by bit, then the link's own CRC on every frame
                if all(
                    _crc(c, poly, init, refin, refout, xorout) == w for c, w in frames[:8]
                ) and all(crc16(c, poly, init, refin, refout, xorout) == w for c, w in frames):
                    found = (init, xorout)
                    break
            if found is None:
                continue
            init, xorout = found
            kind = (
                "crc-16/ccitt-false"
                if (poly, refin, refout, xorout) == (0x1021, False, False, 0)
                else "crc-16"
            )
            keys: dict[str, Any] = {"crc": kind, "crc_init": init}
            if kind == "crc-16":
                keys.update(crc_poly=poly, crc_refin=refin, crc_refout=refout, crc_xorout=xorout)
            lengths = len(by_len)
            ev = (
                f"CRC-16 poly {poly:#06x} init {init:#06x} refin {refin} refout {refout} "
                f"xorout {xorout:#06x} checks all {len(frames)} frames ({lengths} lengths)"
            )
            if lengths < 2:
                ev += "; one frame length only: init and final XOR not told apart"
            return keys, ev
    return None


def _reflect(value: int) -> int:
    return int(f"{value:016b}"[::-1], 2)


def _crc(data: bytes, poly: int, init: int, refin: bool, refout: bool, xorout: int) -> int:
    """CRC-16 bit by bit, as :func:`bridge.acrnema.framing.crc16` computes it (no table
    to build per polynomial: the fit tries many)."""
    if refin:
        crc, rp = _reflect(init), _reflect(poly)
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ rp if crc & 1 else crc >> 1
        crc = _reflect(crc)
    else:
        crc = init
        for byte in data:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ poly) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    if refout:
        crc = _reflect(crc)
    return crc ^ xorout


def _inits(a: bytes, o: bytes, ca: int, co: int, poly: int, refin: bool, refout: bool) -> list[int]:
    """Every init for which frames ``a`` and ``o`` (of different lengths) need the same
    final XOR: crc(a, init) ^ ca == crc(o, init) ^ co, all 65,536 inits at once."""

    # crc(m, init) = crc(m, 0) ^ T_len(init), T linear: build T from the 16 unit inits
    def table(m: bytes) -> npt.NDArray[np.uint32]:
        base = _crc(m, poly, 0, refin, refout, 0)
        units = [_crc(m, poly, 1 << b, refin, refout, 0) ^ base for b in range(16)]
        inits = np.arange(1 << 16, dtype=np.uint32)
        out = np.full(1 << 16, base, np.uint32)
        for b, unit in enumerate(units):
            out ^= np.where(inits >> b & 1, np.uint32(unit), np.uint32(0))
        return out

    diff = table(a) ^ np.uint32(ca) ^ table(o) ^ np.uint32(co)
    return np.flatnonzero(diff == 0).tolist()[:4096]


# ------------------------------------------------------------------ the link's own keys

_HEADERS: tuple[tuple[int | None, int], ...] = ((REFERENCE.datalink.frame_types["data"], 8),)
TIMING_MARGIN = 1.25  # fitted setup, hold, turnaround = measured x this, up to 10 ns
TIMEOUT_FACTOR = 10  # handshake_timeout_ms at least this x the slowest answer seen


def _header_guesses() -> tuple[tuple[int | None, int], ...]:
    """What a DATA header is taken to say while the bit order is fitted: the reference's
    (type code 1, sequence numbers of 8 bits) first; then any type code (its four bits
    left out of the constraints) with 8 down to 2 sequence bits, the numbers wrapping at
    2^bits (a wrong width contradicts the headers at the first wrap)."""
    return _HEADERS + tuple((None, bits) for bits in range(8, 1, -1))


def _ceil10(value: float) -> int:
    return max(10, math.ceil(value / 10.0) * 10)


def _spread(d: npt.NDArray[np.int64]) -> str:
    return f"min {int(d.min())}, median {int(np.median(d))}, max {int(d.max())} ns over {len(d)}"


def _timing(
    ch: Changes, hs: _Handshake, data: Sequence[int], dirp: int
) -> tuple[dict[str, Any], list[Finding], list[str]]:
    """``physical`` timing keys from the phase durations of the prefix: (keys, findings,
    not fitted). A tap at one point of the cable sees each edge once, so:

    * setup: a data line's last change -> REQ asserted (changes in the same word only);
    * hold: ACK asserted -> REQ released (four-phase), ACK's edge -> the next word's data
      (two-phase), REQ's pulse (strobe); this includes the sender's seeing of ACK (one
      hop), which cannot be told apart from its hold at one tap: an upper bound, safe;
    * turnaround: DIR's change -> the new owner's first data change (the least: later
      ones also wait for the new owner's own work);
    * handshake timeout: the slowest answer (REQ edge -> ACK edge).

    Setup and hold are the median x :data:`TIMING_MARGIN`, turnaround the least seen x
    the same, rounded up to 10 ns: the bridge, when it drives, is then never faster than
    the scanner was (an analyser's sample period and the line-to-line skew of 1980s
    EIA-485 receivers, 10-20 ns, blur each edge), at the cost of at most a quarter of
    the word rate in those phases."""
    t, st = ch.times, ch.states
    ex = _edges(st, hs.req)
    ey = _edges(st, hs.ack) if hs.ack is not None else np.zeros(0, np.intp)
    dmask = np.uint64(0)
    for i in data:
        dmask |= np.uint64(1 << i)
    drows = np.flatnonzero(((st[1:] ^ st[:-1]) & dmask) != 0) + 1
    hedges = np.sort(np.concatenate([ex, ey]))
    keys: dict[str, Any] = {}
    found: list[Finding] = []
    missing: list[str] = []
    # setup: the last data change before each REQ assertion, after the handshake edge before
    asserted = hs.sample_rows[hs.sample_rows < len(t)]
    last = np.searchsorted(drows, asserted) - 1
    prev = np.searchsorted(hedges, asserted) - 1
    ok = last >= 0
    prev_row = np.where(prev >= 0, hedges[np.maximum(prev, 0)], -1)
    ok &= drows[np.maximum(last, 0)] >= prev_row
    setup = t[asserted[ok]] - t[drows[last[ok]]]
    # hold
    if hs.mode == "four-phase":
        up, down = ey[0::2], ex[1::2]
        k = min(len(up), len(down))
        hold = t[down[:k]] - t[up[:k]]
        what = "ACK asserted -> REQ released"
    elif hs.mode == "two-phase":
        nxt = np.searchsorted(drows, ey, "right")
        valid = nxt < len(drows)
        rows = drows[np.minimum(nxt, len(drows) - 1)]
        req_next = np.searchsorted(ex, ey, "right")
        before = np.where(req_next < len(ex), ex[np.minimum(req_next, len(ex) - 1)], len(t))
        valid &= rows < before
        hold = t[rows[valid]] - t[ey[valid]]
        what = "ACK's edge -> the next word's data"
    else:
        k = min(len(ex[0::2]), len(ex[1::2]))
        hold = t[ex[1::2][:k]] - t[ex[0::2][:k]]
        what = "REQ's pulse"
    for key, d, how in (
        ("setup_ns", setup, "a data line's last change -> REQ asserted"),
        ("hold_ns", hold, what if hs.mode == "strobe" else what + " (and one hop)"),
    ):
        if not len(d) or d.min() <= 0:
            missing.append(f"physical.{key}: no {how} measured in the prefix read")
            continue
        keys[key] = _ceil10(float(np.median(d)) * TIMING_MARGIN)
        evidence = f"{how}: {_spread(d)}; the median + {TIMING_MARGIN - 1:.0%}, up to 10 ns"
        found.append(Finding(f"physical.{key}", keys[key], evidence, "medium"))
    # turnaround: DIR's edge -> the first data change after it, before the next word's REQ
    de = _edges(st, dirp)
    nxt = np.searchsorted(drows, de, "right")
    req_next = np.searchsorted(asserted, de, "right")
    valid = (nxt < len(drows)) & (req_next < len(asserted))
    rows = drows[np.minimum(nxt, max(len(drows) - 1, 0))] if len(drows) else nxt
    valid &= rows < np.where(valid, asserted[np.minimum(req_next, len(asserted) - 1)], 0)
    turn = t[rows[valid]] - t[de[valid]] if len(drows) else np.zeros(0, np.int64)
    if len(turn) and turn.min() > 0:
        keys["turnaround_ns"] = _ceil10(float(turn.min()) * TIMING_MARGIN)
        found.append(
            Finding(
                "physical.turnaround_ns",
                keys["turnaround_ns"],
                f"DIR's change -> the new owner's first data: {_spread(turn)}; the least "
                f"+ {TIMING_MARGIN - 1:.0%} (the others also wait for the new owner's work)",
                "medium",
            )
        )
    else:
        missing.append("physical.turnaround_ns: no hand-over of the bus followed by data")
    # handshake timeout: the slowest answer, TIMEOUT_FACTOR times, never below the reference
    if len(ey):
        if hs.mode == "four-phase":
            pairs = [(ex[0::2], ey[0::2]), (ex[1::2], ey[1::2])]
        else:
            pairs = [(ex, ey)]
        answers = np.concatenate([t[b[: min(len(a), len(b))]] - t[a[: len(b)]] for a, b in pairs])
        slowest = float(answers.max()) / 1e6 if len(answers) else 0.0
        timeout = max(REFERENCE.physical.handshake_timeout_ms, TIMEOUT_FACTOR * slowest)
        keys["handshake_timeout_ms"] = float(f"{timeout:.6g}")
        found.append(
            Finding(
                "physical.handshake_timeout_ms",
                keys["handshake_timeout_ms"],
                f"answers (REQ edge -> ACK edge): {_spread(answers)}; at least "
                f"{TIMEOUT_FACTOR} x the slowest, never below the reference's "
                f"{REFERENCE.physical.handshake_timeout_ms:g} ms",
                "medium",
            )
        )
    else:
        missing.append("physical.handshake_timeout_ms: strobe mode, nothing answers an edge")
    return keys, found, missing


@dataclass(frozen=True)
class _FrameSeen:
    """A frame as the fitted bit order reads it: where, which side, its header, length."""

    at: int  # index of its first word among all the words of the prefix
    side: int
    code: int  # type code, header bits 12-15
    seq: int  # header bits 0-7
    length: int  # payload words


def _frames_seen(
    true: dict[int, npt.NDArray[np.uint16]],
    frames: _Frames,
    sides: npt.NDArray[np.uint8],
    check_words: int,
) -> list[_FrameSeen]:
    """Every frame of the prefix whose length field reaches the next frame (or the end)."""
    out = []
    for side in (0, 1):
        where = np.flatnonzero(sides == side)
        words = true[side]
        for p, gap in zip(frames.starts[side], frames.gaps[side], strict=True):
            if p + 2 >= len(words):
                continue
            head, length = int(words[p + 1]), int(words[p + 2])
            if gap >= 0 and gap != 3 + length + check_words:
                continue
            out.append(_FrameSeen(int(where[p + 1]), side, head >> 12, head & 0xFF, length))
    return sorted(out, key=lambda f: f.at)


def _link_keys(seen: Sequence[_FrameSeen]) -> tuple[dict[str, Any], list[Finding], list[str]]:
    """``datalink`` keys from the frames seen: the type codes of DATA (frames with a
    payload) and ACK (empty frames of another code), and NAK when seen; the sequence
    bits from the numbers' wrap; the window from the most DATA frames a side had
    unacknowledged where it then waited for an ACK; ``max_payload_words`` from the
    payloads cut at one length. (keys, findings, not fitted)"""
    keys: dict[str, Any] = {}
    found: list[Finding] = []
    missing: list[str] = []
    data_codes = Counter(f.code for f in seen if f.length > 0)
    if not data_codes:
        missing.append("datalink.frame_types, sequence_bits, window: no DATA frame read")
        return keys, found, missing
    data = data_codes.most_common(1)[0][0]
    empty = Counter(f.code for f in seen if f.length == 0 and f.code != data).most_common()
    codes = dict(REFERENCE.datalink.frame_types)
    codes["data"] = data
    how = [f"DATA {data}: {data_codes[data]} frames with a payload"]
    if empty:
        codes["ack"] = empty[0][0]
        how.append(f"ACK {codes['ack']}: {empty[0][1]} empty frames")
    else:
        missing.append("datalink.frame_types.ack: no empty frame (no ACK) seen; chosen")
    if len(empty) > 1:
        codes["nak"] = empty[1][0]
        how.append(f"NAK {codes['nak']}: {empty[1][1]} empty frames of a third code")
    else:
        missing.append(
            "datalink.frame_types.nak: no NAK on a clean capture (a damaged frame draws "
            "one); chosen, distinct from DATA and ACK"
        )
    for kind in ("ack", "nak"):  # a code chosen must not collide with one seen
        taken = {v for k, v in codes.items() if k != kind}
        if codes[kind] in taken:
            codes[kind] = next(c for c in range(1, 16) if c not in taken)
    keys["frame_types"] = codes
    found.append(
        Finding(
            "datalink.frame_types",
            codes,
            "frames seen: " + "; ".join(how),
            "high" if empty else "medium",
        )
    )
    # sequence bits: the DATA numbers of each side wrapping to 0 after 2^bits - 1
    top, wraps = 0, 0
    for side in (0, 1):
        numbers = [f.seq for f in seen if f.side == side and f.code == data]
        top = max([top, *numbers])
        wraps += sum(1 for a, b in itertools.pairwise(numbers) if b == 0 and a > 0 and a > b)
    bits = top.bit_length()
    if wraps and top + 1 == 1 << bits and 2 <= bits <= 8:
        keys["sequence_bits"] = bits
        found.append(
            Finding(
                "datalink.sequence_bits",
                bits,
                f"DATA frames seen numbered 0..{top}, then 0 again ({wraps} wrap(s))",
                "high",
            )
        )
    else:
        missing.append(
            f"datalink.sequence_bits: no wrap of the DATA numbers among the frames read "
            f"(up to {top}: at least {max(bits, 2)} bits); the reference's "
            f"{REFERENCE.datalink.sequence_bits} kept"
        )
    # window: DATA frames a side has out, and whether it waits for an ACK at the most
    if empty:
        ack = codes["ack"]
        best, stalls = 0, 0
        for side in (0, 1):
            out: set[int] = set()
            most, at_most = 0, list[int]()
            for f in seen:
                if f.side == side and f.code == data:
                    out.add(f.seq)
                    if len(out) > most:
                        most, at_most = len(out), []
                    if len(out) == most:
                        at_most.append(f.at)
                elif f.side != side and f.code == ack:
                    out.discard(f.seq)
            later = [f.at for f in seen if f.side == side and f.code == data]
            waited = sum(1 for a in at_most if any(b > a for b in later))
            if most > best:
                best, stalls = most, waited
        if stalls >= 2:
            keys["window"] = best
            found.append(
                Finding(
                    "datalink.window",
                    best,
                    f"frames seen: a side had {best} DATA frames unacknowledged {stalls} "
                    f"times and sent more only after an ACK",
                    "medium",
                )
            )
        else:
            missing.append(
                f"datalink.window: at most {best} DATA frames seen unacknowledged, not "
                f"often enough to tell the window; the reference's "
                f"{REFERENCE.datalink.window} kept"
            )
    else:
        missing.append("datalink.window: nothing acknowledged, no window to see")
    most = 2 ** (keys.get("sequence_bits", REFERENCE.datalink.sequence_bits) - 1) - 1
    if keys.get("window", REFERENCE.datalink.window) > most:  # the numbers allow no more
        keys["window"] = most
        found.append(
            Finding(
                "datalink.window",
                most,
                f"chosen: the most {keys['sequence_bits']} sequence bits allow (a window "
                f"of half the numbers, less one)",
                "low",
            )
        )
    # payload size: DATA payloads cut at one length
    lengths = [f.length for f in seen if f.code == data and f.length > 0]
    cut = max(lengths)
    if lengths.count(cut) >= 2 and min(lengths) < cut:
        keys["max_payload_words"] = cut
        found.append(
            Finding(
                "datalink.max_payload_words",
                cut,
                f"frames seen: {lengths.count(cut)} DATA payloads of {cut} words, the "
                f"other {len(lengths) - lengths.count(cut)} shorter (messages cut at {cut})",
                "medium",
            )
        )
    else:
        keep = max(cut, REFERENCE.datalink.max_payload_words)
        keys["max_payload_words"] = keep
        missing.append(
            f"datalink.max_payload_words: the longest payload seen, {cut} words, is not "
            f"a cut (fewer than two of that length); {keep} kept"
        )
    return keys, found, missing


# ------------------------------------------------------------------ the fit


def _find(fit: Fit, key: str, value: Any, evidence: str, confidence: str) -> None:
    fit.findings.append(Finding(key, value, evidence, confidence))


def fit_capture(
    path: str | Path,
    cmap: ChannelMap | None = None,
    glitch_ns: int = 0,
    max_words: int = MAX_WORDS,
) -> Fit:
    """Fit a profile to the capture ``path`` (see the module doc), each probe's pulses
    shorter than ``glitch_ns`` taken out first; a :class:`~bridge.errors.CaptureError`
    saying which step failed and why when it cannot (and the shortest pulse on any probe,
    in case glitches are to blame).

    Memory: the lines, orders and checks are fitted on the first ``max_words`` words
    (at most ``ROWS_PER_WORD * max_words`` rows of changes); the upper layers are then
    chosen by decoding the whole capture, streaming, so the memory does not grow with
    the capture's length."""
    probes, raw = _read(path, max_words)
    ch = _deglitch(raw, len(probes), glitch_ns)
    try:
        return _fit(path, probes, ch, cmap, max_words)
    except CaptureError as exc:
        shortest = _shortest_pulse(ch, probes)
        if shortest is None:
            raise
        raise CaptureError(
            f"{exc} (the shortest pulse on any probe after the glitch filter of {glitch_ns} ns: "
            f"{shortest[0]} ns, {shortest[1]}; if that is a glitch, a larger --glitch-ns "
            f"may help)"
        ) from exc


def _fit(
    path: str | Path,
    probes: list[str],
    ch: Changes,
    cmap: ChannelMap | None,
    max_words: int = MAX_WORDS,
) -> Fit:
    n = len(probes)
    states = ch.states
    hs = _handshake(states, n, probes)
    rows = hs.sample_rows[:max_words]
    if len(rows) < 16:
        raise CaptureError(f"{path}: only {len(rows)} words: too short a capture to fit")
    sampled = states[rows]
    times = ch.times[rows]
    lines = _classify(sampled, times, states, hs, n)
    damaged = _parity_damage(sampled, lines.data, lines.parity_lines)
    sampled, times = _before_damage(path, sampled, times, damaged)
    if not lines.direction:
        raise CaptureError(
            f"{path}: no probe changes only where the bus changes hands: no DIR or BREQ line "
            f"found (the profile needs one)"
        )
    if cmap is not None:
        lines = _mapped_lines(lines, cmap, probes)
    # the direction line: the one with the most changes; side A drives the first word
    dirp = max(lines.direction, key=lambda i: len(_edges(states, i)))
    dcol = _bits(sampled, dirp)
    sides = (dcol != dcol[0]).astype(np.uint8)  # 0 = A (the first word's side)
    m = len(lines.data)
    raw_all = _pack(sampled, lines.data)
    by_side = {s: raw_all[sides == s] for s in (0, 1)}
    if not len(by_side[1]):
        raise CaptureError(f"{path}: only one side ever drives the bus: no replies to fit from")
    if cmap is None:
        # polarity: the receiving side's commonest word is the zero word
        zero = Counter(int(v) for v in by_side[1]).most_common(1)[0][0]
    else:
        zero = _mapped_zero(raw_all, lines, cmap, probes)
    u = {s: by_side[s] ^ np.uint64(zero) for s in (0, 1)}
    fit = Fit(REFERENCE, ChannelMap({}))
    ph_keys: dict[str, Any] = {"handshake": hs.mode, "parity_lines": max(lines.parity_lines, 1)}
    _find(fit, "physical.handshake", hs.mode, hs.evidence, "high")
    # ---- frames and bit order: by a start word, else frames back to back (length_only)
    chosen, why = None, []
    for strategy in ("start_word", "length_only"):
        try:
            chosen = _refine(u, m, lines.parity_lines, strategy, cmap is not None)
        except CaptureError as exc:
            why.append(str(exc))
            continue
        break
    if chosen is None:
        raise CaptureError(f"{path}: " + "; ".join(why))
    rank, score, check_words, perm, true, check_found, frames, ranked, count = chosen
    runner = next((r[0] for r in ranked[rank + 1 :]), None)
    bit_conf = "high" if check_found is not None else "medium" if score else "low"
    bit_evidence = (
        f"bit order: of {count} assignment(s) agreeing with the length fields and DATA headers, "
        f"number {rank + 1} by payload plaintext score ({score}; next {runner})"
        + (", the first whose frames' check words fit a check" if check_found else "")
    )
    positions = _positions(lines.parity_lines)
    start_word = (
        None
        if frames.start_raw is None
        else int(_true_words(np.array([frames.start_raw], np.uint64), perm)[0])
    )
    # ---- the parity sense and inversions
    zero_parity = [(zero >> k) & 1 for k in range(m)]
    line_of = {k: positions[perm[k]] for k in range(m)}
    parity = "none"
    if lines.parity_lines:
        k_par = next(k for k in range(m) if line_of[k] == "PARITY")
        parity = "odd" if zero_parity[k_par] else "even"
    channels: dict[str, tuple[str, bool]] = {}
    par_level = {line_of[k]: zero_parity[k] for k in range(m) if line_of[k].startswith("PARITY")}
    for k, i in enumerate(lines.data):
        name = line_of[k]
        if name == "PARITY_HI":  # the same sense as PARITY: inverted if its level differs
            inverted = par_level["PARITY_HI"] != par_level["PARITY"]
        else:
            inverted = bool(zero_parity[k]) if not name.startswith("PARITY") else False
        channels[name] = (probes[i], inverted)
        fit.channel_notes[probes[i]] = (
            f"{name}: {bit_evidence}; idle level {zero_parity[k]} in the zero word"
        )
    channels["REQ"] = (probes[hs.req], hs.req_inverted)
    fit.channel_notes[probes[hs.req]] = f"REQ: {hs.evidence}"
    if hs.ack is not None:
        channels["ACK"] = (probes[hs.ack], hs.ack_inverted)
        fit.channel_notes[probes[hs.ack]] = f"ACK: {hs.evidence}"
    dir_inverted = not bool(dcol[0])  # DIR asserted while A (the first word's side) drives
    channels["DIR"] = (probes[dirp], dir_inverted)
    fit.channel_notes[probes[dirp]] = (
        f"DIR: changes only across the {int((np.diff(dcol) != 0).sum())} long gaps where the "
        f"bus changes hands; asserted while the side of the first word (A) drives"
    )
    ph_keys["control_lines"] = ["DIR"]
    ph_keys["parity"] = parity
    end = int(rows[-1]) + 1  # the timing of the words fitted, not of the rows read past them
    prefix = Changes(ch.times[:end], ch.states[:end])
    timing, timing_found, timing_missing = _timing(prefix, hs, lines.data, dirp)
    ph_keys.update(timing)
    taken = {probe for probe, _ in channels.values()}
    for name, (probe, inverted) in (cmap.lines if cmap is not None else {}).items():
        if name not in channels and probe not in taken and probe in probes:
            channels[name] = (probe, inverted)  # the map's, as given (READY, BREQ, PERR...)
            fit.channel_notes[probe] = f"{name}: as the channel map (--map) says"
    breq = [
        i
        for i in lines.direction
        if i != dirp and ((_bits(sampled, i) != dcol).all() or (_bits(sampled, i) == dcol).all())
    ]
    if breq and "BREQ" not in channels:
        i = breq[0]
        channels["BREQ"] = (probes[i], bool(_bits(sampled[:1], i)[0]))
        fit.channel_notes[probes[i]] = (
            f"BREQ: changes only where the bus changes hands, with DIR in every one of "
            f"{len(sampled)} words; taken as asserted while B drives; low: the capture shows "
            f"neither line idle, so which of the two is DIR and which BREQ cannot be told "
            f"(either way decodes alike)"
        )
    known = _control_lines(fit, channels, ph_keys, probes, states, ch.times, rows, lines, damaged)
    for i in lines.direction:
        if i != dirp and i not in breq[:1] and i not in known:
            fit.unfitted.append(
                f"probe {probes[i]}: changes only where the bus changes hands (BREQ, the "
                f"complement of DIR?): left out, DIR suffices to decode"
            )
    for i in lines.other:
        if i in known:
            continue
        fit.unfitted.append(
            f"probe {probes[i]}: changes {len(_edges(states, i))} times, not with the words "
            f"(READY or PERR?): not identified, left out of the map"
        )
    if lines.unused:
        fit.unfitted.append(
            "constant probes (ground, unused, or lines never asserted such as PERR on a "
            "clean link): " + ", ".join(probes[i] for i in lines.unused)
        )
    _find(
        fit,
        "physical.parity",
        parity,
        lines.evidence
        + (
            f"; the zero word's parity level {'1: odd' if parity == 'odd' else '0: even'} "
            f"(odd with an inverted probe reads as even: either decodes alike)"
            if lines.parity_lines
            else ""
        ),
        "high",
    )
    if lines.parity_lines:
        _find(fit, "physical.parity_lines", lines.parity_lines, lines.evidence, "high")
    if lines.parity_lines == 2:
        # the reference has no pins for PARITY_HI: those of a line this bus lacks
        controls = tuple(ph_keys["control_lines"])
        bus = replace(REFERENCE.physical, control_lines=controls, parity_lines=2).bus_lines
        spare = next(n for n in REFERENCE.physical.pins if n not in bus)
        pair = REFERENCE.physical.pins[spare]
        ph_keys["pins"] = {"PARITY_HI": pair}
        _find(
            fit,
            "physical.pins",
            {"PARITY_HI": list(pair)},
            f"the reference has no pins for PARITY_HI: those of {spare}, not on this bus "
            f"(a logic analyser does not see pins: check them on the connector)",
            "low",
        )
    _find(
        fit,
        "physical.control_lines",
        ph_keys["control_lines"],
        "; ".join(
            fit.channel_notes[channels["READY_A" if name == "READY" else name][0]]
            for name in _mapped_controls(channels)
        ),
        "medium",
    )
    fit.cmap = ChannelMap(channels)
    # ---- data link: start word, check
    if start_word is not None:
        dl: dict[str, Any] = {"start_word": start_word, "delimiting": "start_word"}
        _find(fit, "datalink.start_word", start_word, frames.evidence, bit_conf)
    else:
        dl = {"delimiting": "length_only"}
    _find(fit, "datalink.delimiting", dl["delimiting"], frames.evidence, bit_conf)
    if check_found is not None:
        keys, evidence = check_found
        dl.update(keys)
        for key, value in keys.items():
            _find(fit, f"datalink.{key}", value, evidence, "high")
    else:
        dl["crc"] = "none"
        _find(fit, "datalink.crc", "none", "the length field is the distance - 3", "high")
    # ---- frame type codes, sequence bits, window, payload size: from the frames seen
    link, link_found, link_missing = _link_keys(_frames_seen(true, frames, sides, check_words))
    dl.update(link)
    # ---- acknowledgement: frames of no payload going back
    heads = [int(true[1][p + 1]) for p in frames.starts[1] if p + 1 < len(true[1])]
    ack_code = dl.get("frame_types", REFERENCE.datalink.frame_types)["ack"]
    ack_frames = sum(1 for h in heads if h >> 12 == ack_code)
    dl["ack_mode"] = "selective" if ack_frames else "none"
    _find(
        fit,
        "datalink.ack_mode",
        dl["ack_mode"],
        f"{ack_frames} ACK frames (type code {ack_code} in the header) of {len(heads)} from side B",
        "high" if ack_frames or len(heads) >= 2 else "low",
    )
    base = _profile(ph_keys, dl, {}, {})
    # ---- text byte order: the Recognition Code read one way round or the other
    payloads = b"".join(
        _true_words(p, perm).astype(">u2").tobytes() for p in _payload_rows(u, frames, check_words)
    )
    big, little = payloads.count(_TEXT[0]), payloads.count(_TEXT[1])
    text_order = "big" if big > little else "little" if little > big else None
    if text_order is not None:
        _find(
            fit,
            "physical.text_byte_order",
            text_order,
            f'"ACR-NEMA" read {big} times with the first character on D15-D8, {little} times '
            f"on D7-D0",
            "high" if min(big, little) == 0 else "medium",
        )
    else:
        fit.unfitted.append(
            'physical.text_byte_order: no "ACR-NEMA" in the frames read; chosen by decoding'
        )
    # ---- transport, session, binary byte order: decode with each, keep the best
    best = _upper_layers(base, fit.cmap, path, text_order)
    application = _application(fit, best[0], path)
    if application.spi_commands:  # group 0001 is no data set: decode again knowing it
        best = _upper_layers(replace(base, application=application), fit.cmap, path, text_order)
    fit.profile = replace(best[0], application=application)
    for key, value in best[1].items():
        _find(fit, key, value, best[2], best[3])
    fit.findings.insert(
        0,
        Finding(
            "channels",
            None,
            f"{len(channels)} lines mapped from {n} probes",
            bit_conf,
        ),
    )
    fit.findings += timing_found + link_found
    fit.unfitted += timing_missing + link_missing
    fit.unfitted += [
        "physical.pins, signalling, ground_pins, active_low: a logic analyser sees levels, "
        "not pins: which pins carry a line, differential or single-ended, and which are "
        "ground are read on the connector with a meter (docs/capture.md, phase 1: electrical "
        "survey); polarity is in the channel map's 'inverted'",
        "application.commands (but cancel), statuses, data_set_*: the reference's",
    ]
    return fit


_Chosen = tuple[
    int,
    int,
    int,
    list[int],
    dict[int, npt.NDArray[np.uint16]],
    tuple[dict[str, Any], str] | None,
    _Frames,
    list[tuple[int, int, list[int]]],
    int,
]


def _refine(
    u: dict[int, npt.NDArray[np.uint64]], m: int, parity_lines: int, strategy: str, mapped: bool
) -> _Chosen:
    """:func:`_refine_with` for each DATA header guess in turn (the reference's first):
    the first that fits."""
    guesses = _header_guesses() if strategy == "start_word" and not mapped else _HEADERS[:1]
    first: CaptureError | None = None
    for header in guesses:
        try:
            return _refine_with(u, m, parity_lines, strategy, mapped, header)
        except CaptureError as exc:
            log.debug("fit: DATA header %s: %s", header, exc)
            first = first or exc
    assert first is not None
    raise first


def _refine_with(
    u: dict[int, npt.NDArray[np.uint64]],
    m: int,
    parity_lines: int,
    strategy: str,
    mapped: bool,
    header: tuple[int | None, int],
) -> _Chosen:
    """The best scoring bit order whose frames' check words fit a check (a wrong order
    among bits the constraints could not tell apart breaks the check): (rank, score,
    check words, order, true words, check, frames, ranked orders, how many)."""
    frames = _frames(u) if strategy == "start_word" else None
    if strategy == "start_word" and frames is None:
        raise CaptureError(
            "no start word (no frequent word on both sides followed, two words on, by a "
            "length matching the distance to the next)"
        )
    if mapped:
        identity = list(range(m))
        ranked, count = [(0, 1, identity), (0, 0, identity)], 1
    elif frames is not None:
        ranked, count = _bit_order(u, frames, parity_lines, header)
    else:
        ranked, count = _text_only(u, parity_lines)
    cache: dict[tuple[bytes, bool], npt.NDArray[np.uint32]] = {}
    for rank, (score, check_words, perm) in enumerate(ranked[:MAX_REFINE]):
        true = {s: _true_words(u[s], perm) for s in (0, 1)}
        found_frames = frames
        if frames is None:  # length_only: the bit order must walk the frames
            if not check_words:
                continue  # length_only needs a check
            found_frames = _walk(true, check_words)
            if found_frames is None:
                continue
        assert found_frames is not None
        found = None
        if check_words:
            found = fit_check(_covered(true, found_frames, check_words), cache)
            if found is None:
                continue
        return rank, score, check_words, perm, true, found, found_frames, ranked, count
    if frames is None:
        raise CaptureError(
            f"no bit order of {min(len(ranked), MAX_REFINE)} tried walks frames back to back "
            f"(length_only) with a check that fits"
        )
    raise CaptureError(
        f"with start word frames: of {min(len(ranked), MAX_REFINE)} bit orders agreeing with "
        f"the frames' length fields and headers, none makes the frames' last word a 16-bit "
        f"sum or a CRC-16 (any polynomial, init, reflection, final XOR) over header and payload"
    )


# ------------------------------------------------------------------ control lines


def _parity_damage(sampled: U64, data: Sequence[int], parity_lines: int) -> npt.NDArray[np.bool_]:
    """The words damaged on the wire: the XOR of their data and parity probes is not the
    usual one (none can be told without a parity line)."""
    x = np.zeros(len(sampled), np.uint8)
    if not parity_lines:
        return x.astype(bool)
    for i in data:
        x ^= _bits(sampled, i)
    usual = np.uint8(np.count_nonzero(x) * 2 > len(x))
    return np.asarray(x != usual)


def _before_damage(
    path: str | Path, sampled: U64, times: npt.NDArray[np.int64], damaged: npt.NDArray[np.bool_]
) -> tuple[U64, npt.NDArray[np.int64]]:
    """The words before the first damaged one: the frames, bit order and check are fitted
    from those (a damaged length field or header would contradict the others); the
    decoding steps, and PERR, read the whole capture."""
    bad = np.flatnonzero(damaged)
    if not len(bad):
        return sampled, times
    first = int(bad[0])
    if first < 64:
        raise CaptureError(
            f"{path}: word {first} is already damaged (its parity is wrong): too few clean "
            f"words before it to fit frames from (the fit needs the clean start of a link)"
        )
    log.warning(
        "fit: %d damaged words; frames fitted from the %d before the first", len(bad), first
    )
    return sampled[:first], times[:first]


def _mapped_controls(channels: dict[str, tuple[str, bool]]) -> list[str]:
    """The control lines mapped, as ``physical.control_lines`` lists them (READY: both)."""
    pair = "READY_A" in channels and "READY_B" in channels
    return [n for n in OPTIONAL_LINES if n in channels or (n == "READY" and pair)]


def _control_lines(
    fit: Fit,
    channels: dict[str, tuple[str, bool]],
    ph_keys: dict[str, Any],
    probes: Sequence[str],
    states: U64,
    times: npt.NDArray[np.int64],
    rows: npt.NDArray[np.intp],
    lines: _Lines,
    damaged: npt.NDArray[np.bool_],
) -> set[int]:
    """PERR and READY_A/READY_B among the probes that change, but not with the words,
    from their edges (docs/capture.md, "Control lines"); with BREQ (mapped before) into
    ``physical.control_lines``. Adds each to ``channels`` with its evidence (in
    ``fit.channel_notes``); the probe indices identified.

    PERR: a probe that leaves its idle level within the cycle of every word whose parity
    is wrong, and of no other. READY: a probe at one level through every word (the link
    is up only while both are asserted) that changes outside them; two such make the
    pair, whose order edges alone cannot tell (either assignment decodes alike): one
    may drop alone (a side resetting its link) or rise later (a side starting later), but
    neither says whose it is."""
    known: set[int] = set()
    if not len(rows):
        return known
    mapped = {p for p, _ in channels.values()}
    candidates = [i for i in lines.other + lines.direction if probes[i] not in mapped]
    sampled = states[rows]
    for i in candidates:
        col = _col(states, i)
        idle = int(np.count_nonzero(_col(sampled, i)) * 2 > len(rows))
        # whether the probe left its idle level within each word's cycle
        left = np.maximum.reduceat((col != idle).astype(np.uint8), rows).astype(bool)
        hits = int(np.count_nonzero(left & damaged))
        if hits and hits == int(np.count_nonzero(damaged)) == int(np.count_nonzero(left)):
            if "PERR" in channels:
                continue
            channels["PERR"] = (probes[i], bool(idle))
            fit.channel_notes[probes[i]] = (
                f"PERR: pulses within the cycle of each of the {hits} word(s) whose parity is "
                f"wrong, and of no other of {len(rows)}; idle level {idle}; "
                + ("high" if hits >= 2 else "medium: one damaged word only")
            )
            known.add(i)
    ready = []
    for i in candidates:
        if i in known:
            continue
        # the same level at every word (but the last few: a side's last frames, an ACK,
        # an answer, an abort, may be on the bus after the other side closed)
        level = _col(sampled, i)[: max(1, len(rows) - READY_TAIL_WORDS)]
        if (level == level[0]).all():
            ready.append((i, int(level[0])))
    if len(ready) == 2:
        (a, level_a), (b, level_b) = ready
        ea, eb = _edges(states, a), _edges(states, b)
        together = len(ea) == len(eb) and bool((ea == eb).all())
        how = (
            f"both change at the same {len(ea)} instant(s), outside the words"
            if together
            else f"they change apart ({len(ea)} and {len(eb)} edges, the first at "
            f"{int(times[ea[0]])} and {int(times[eb[0]])} ns)"
        )
        note = (
            f"READY pair: {probes[a]} and {probes[b]} are at one level at every one of "
            f"{len(rows)} words (words pass only while both READY lines are asserted) "
            f"and {how}; low: which is READY_A and which READY_B cannot be told from this "
            f"capture's edges; either assignment decodes alike (decoding does not read READY)"
        )
        channels["READY_A"] = (probes[a], not level_a)
        channels["READY_B"] = (probes[b], not level_b)
        fit.channel_notes[probes[a]] = "READY_A (or READY_B): " + note
        fit.channel_notes[probes[b]] = "READY_B (or READY_A): " + note
        fit.unfitted.append(
            f"READY_A/READY_B order: {probes[a]} and {probes[b]} are the two READY lines, "
            f"identified as a pair; which is which cannot be told from this capture (mapped "
            f"in the order found); either assignment decodes alike"
        )
        known |= {a, b}
    ph_keys["control_lines"] = _mapped_controls(channels)
    return known


def _mapped_lines(lines: _Lines, cmap: ChannelMap, probes: Sequence[str]) -> _Lines:
    """The data, parity and direction probes as the channel map names them."""
    index = {name: i for i, name in enumerate(probes)}
    want = [f"D{j}" for j in range(16)] + ["PARITY", "PARITY_HI"][: lines.parity_lines]
    missing = [name for name in want if name not in cmap.lines]
    direction = [cmap.lines[n][0] for n in ("DIR", "BREQ") if n in cmap.lines]
    if missing or not direction:
        raise CaptureError(
            f"the channel map lacks line(s) {', '.join(missing or ['DIR or BREQ'])} "
            f"that the capture shows"
        )
    unknown = [cmap.lines[n][0] for n in want if cmap.lines[n][0] not in index]
    if unknown:
        raise CaptureError(f"the channel map names probe(s) not in the capture: {unknown}")
    return replace(
        lines,
        data=[index[cmap.lines[n][0]] for n in want],
        direction=[index[p] for p in direction if p in index],
    )


def _mapped_zero(
    raw: npt.NDArray[np.uint64], lines: _Lines, cmap: ChannelMap, probes: Sequence[str]
) -> int:
    """The raw levels of the zero word under the map: each data probe's inversion; each
    parity probe's level for a zero word (its inversion, and 1 for odd parity)."""
    zero = 0
    for j in range(16):
        zero |= int(cmap.lines[f"D{j}"][1]) << j
    data = raw ^ np.uint64(zero)
    xor = np.zeros(len(raw), np.uint8)
    for j in range(16):
        xor ^= _bits(data, j)
    for k, name in enumerate(["PARITY", "PARITY_HI"][: lines.parity_lines]):
        level = _bits(raw, 16 + k) ^ np.uint8(cmap.lines[name][1])
        if k == 0 and lines.parity_lines == 2:
            xor_k = np.zeros(len(raw), np.uint8)
            for j in range(8):
                xor_k ^= _bits(data, j)
        elif k == 1:
            xor_k = np.zeros(len(raw), np.uint8)
            for j in range(8, 16):
                xor_k ^= _bits(data, j)
        else:
            xor_k = xor
        odd = int(np.count_nonzero(level != xor_k) > len(raw) // 2)
        zero |= (int(cmap.lines[name][1]) ^ odd) << (16 + k)
    return zero


def _text_only(
    u: dict[int, npt.NDArray[np.uint64]], parity_lines: int
) -> tuple[list[tuple[int, int, list[int]]], int]:
    """Bit orders from the Recognition Code alone (no start word to find frames by):
    every assignment its signature allows, for the frame walk to test."""
    m = 16 + parity_lines
    alternatives = _with_text(np.ones((m, m), bool), u, m, parity_lines)
    perms = itertools.chain.from_iterable(_matchings(alt) for alt in alternatives)
    out = [(0, 1, perm) for perm in itertools.islice(perms, MAX_REFINE)]
    return out, len(out)


def _covered(
    true: dict[int, npt.NDArray[np.uint16]], frames: _Frames, check_words: int
) -> list[tuple[bytes, int]]:
    out = []
    for side in (0, 1):
        words = true[side]
        for p, gap in zip(frames.starts[side], frames.gaps[side], strict=True):
            if gap < 0 or p + 2 >= len(words):
                continue
            length = int(words[p + 2])
            end = p + 3 + length
            if end + check_words > len(words) or gap != 3 + length + check_words:
                continue
            body = words[p + 1 : end].astype(">u2").tobytes()
            out.append((body, int(words[end]) if check_words else 0))
            if len(out) >= 64:
                return out
    return out


def _bit_order(
    u: dict[int, npt.NDArray[np.uint64]],
    frames: _Frames,
    parity_lines: int,
    header: tuple[int | None, int] = (REFERENCE.datalink.frame_types["data"], 8),
) -> tuple[list[tuple[int, int, list[int]]], int]:
    """The assignments (payload score, check words per frame, position of each raw
    column) agreeing with the frames' length fields and headers, best first; how many.
    ``header``: the DATA type code (None: unknown, its bits not used) and the sequence
    bits the DATA headers are taken to count with (see :func:`_header_guesses`)."""
    m = 16 + parity_lines
    commands = {code for pair in REFERENCE.application.commands.values() for code in pair}
    results = []
    for check_words in (1, 0):
        known, masks, raws = [], [], []
        for side in (0, 1):
            words = u[side]
            seq = 0
            for p, gap in zip(frames.starts[side], frames.gaps[side], strict=True):
                if gap < 0 or p + 2 >= len(words):
                    continue
                length = int(gap) - 3 - check_words
                if length < 0:
                    break
                full = np.ones(m, np.uint8)
                raws.append(words[p + 2])
                known.append(length)
                masks.append(full)
                if length > 0:
                    # a DATA frame: type 1, sequence counting from 0 each way, bits 10-11 zero
                    head = (header[0] or 0) << 12 | seq
                    mask = np.ones(m, np.uint8)
                    mask[8:10] = 0  # unit marks may be there
                    mask[16:] = 0
                    if header[0] is None:
                        mask[12:16] = 0
                    raws.append(words[p + 1])
                    known.append(head)
                    masks.append(mask)
                    seq = (seq + 1) % (1 << header[1])
        if len(known) < 2:
            continue
        ok = _consistent(
            np.array(raws, np.uint64),
            np.array(known, np.int64),
            np.array(masks),
            m,
            parity_lines,
        )
        if not ok.any(axis=1).all():
            continue
        payloads = _payload_rows(u, frames, check_words)
        count = 0
        scored: list[tuple[int, list[int]]] = []
        # the Recognition Code as known plaintext where its bit signature is found
        for perm in itertools.chain.from_iterable(
            _matchings(alt) for alt in _with_text(ok, u, m, parity_lines)
        ):
            count += 1
            if count > MAX_CANDIDATES:
                break
            texts = [_true_words(p, perm).astype(">u2").tobytes() for p in payloads]
            scored.append((_payload_score(texts, commands), perm))
        if not scored:
            continue
        scored.sort(key=lambda s: -s[0])
        results.append((scored[0][0], check_words, scored, count))
    if not results:
        raise CaptureError(
            "no assignment of the data probes to D0-D15 agrees with the frames' length "
            "fields and headers"
        )
    ranked = sorted(
        (
            (score, check_words, perm)
            for _, check_words, scored, _ in results
            for score, perm in scored
        ),
        key=lambda r: -r[0],
    )
    return ranked, sum(r[3] for r in results)


def _payload_rows(
    u: dict[int, npt.NDArray[np.uint64]], frames: _Frames, check_words: int
) -> list[npt.NDArray[np.uint64]]:
    out = []
    for side in (0, 1):
        for p, gap in zip(frames.starts[side], frames.gaps[side], strict=True):
            if gap > 3 + check_words:
                out.append(u[side][p + 3 : p + gap - check_words])
            if len(out) > 24:
                return out
    return out


def _profile(
    ph: dict[str, Any], dl: dict[str, Any], tr: dict[str, Any], se: dict[str, Any]
) -> Profile:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in ph.items()}
    if "pins" in fields:
        fields["pins"] = {**REFERENCE.physical.pins, **fields["pins"]}
    physical = replace(REFERENCE.physical, **fields)
    datalink: DatalinkSection = replace(REFERENCE.datalink, **dl)
    return replace(
        REFERENCE,
        name="fitted",
        physical=physical,
        datalink=datalink,
        transport=replace(REFERENCE.transport, **tr),
        session=replace(REFERENCE.session, **se),
    )


def _upper_layers(
    base: Profile, cmap: ChannelMap, path: str | Path, text_order: str | None
) -> tuple[Profile, dict[str, Any], str, str]:
    """Decode with every transport/session/byte-order combination; the best."""
    import tempfile

    from bridge.capture.decode import decode_capture

    tried = []
    for transport, session, text, binary in itertools.product(
        ("packets", "none"),
        ("pdus", "none"),
        (text_order,) if text_order else ("big", "little"),
        ("big", "little"),
    ):
        p = replace(
            base,
            physical=replace(base.physical, text_byte_order=text, binary_byte_order=binary),
            transport=replace(base.transport, mode=transport),
            session=replace(base.session, mode=session),
        )
        if validate(p):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = decode_capture(path, tmp, p, cmap)
            except Exception as exc:  # a wrong guess may fail anywhere
                log.debug("fit: %s/%s/%s/%s: %s", transport, session, text, binary, exc)
                continue
        r = result.report
        good = sum(1 for msg in r["messages"] if msg["text"].startswith(("DATA", "CONNECT")))
        score = (len(result.images), good, -len(result.problems), -r["sync_lost_count"])
        tried.append((score, p, (transport, session, text, binary)))
    if not tried:
        raise CaptureError(f"{path}: no transport/session/byte order decodes the capture")
    tried.sort(key=lambda t: t[0], reverse=True)
    (images, good, _, _), profile, (transport, session, text, binary) = tried[0]
    runner = tried[1][0] if len(tried) > 1 else None
    confidence = "high" if images and (runner is None or tried[0][0] > runner) else "low"
    evidence = (
        f"of {len(tried)} combinations decoded, this one gives {images} image(s) and {good} "
        f"messages (the next best: {runner[0] if runner else 0} image(s), "
        f"{runner[1] if runner else 0} messages)"
    )
    keys = {
        "transport.mode": transport,
        "session.mode": session,
        "physical.binary_byte_order": binary,
    }
    if text_order is None:
        keys["physical.text_byte_order"] = text
    return profile, keys, evidence, confidence


# ------------------------------------------------------------------ the application layer

MAX_MESSAGES = 2_000  # messages the application fit reads (the start of the capture)
# group 0001 is read into the command while the messages are looked at: any valid SPI
# table does (only its presence matters to the reader); the codes are fitted from them
_PROBE_SPI = {name: (0x7FF0 + i, 0xFFF0 + i) for i, name in enumerate(SPI_COMMANDS)}
_Found = dict[str, tuple[Any, str, str]]  # key -> (value, evidence, confidence)


@dataclass(frozen=True)
class _Seen:
    """The messages of a capture, as the application fit reads them."""

    messages: list[tuple[str, Message]]  # (side, message), in order; data: its first byte
    unreadable: list[str]  # the side of each message no command could be read from
    scanner: str  # the side that sends the store requests (A when none is seen)

    @property
    def receiver(self) -> str:
        return "B" if self.scanner == "A" else "A"

    def side(self, side: str) -> list[Message]:
        return [m for d, m in self.messages if d == side]


def _observed(profile: Profile, cmap: ChannelMap, path: str | Path) -> _Seen:
    """The messages of the capture decoded with ``profile``, group 0001 and (0000,0001)
    kept in each command as they came (nothing refused, no data set joined)."""
    from bridge.capture.decode import _observe, open_capture, words_of
    from bridge.capture.observe import Observer

    probe = replace(
        profile,
        application=replace(
            profile.application,
            spi_commands=_PROBE_SPI,
            data_set_after_reply=False,
            length_to_end_written=False,
            length_to_end_required=False,
            accepted_recognition_codes=(),
        ),
    )
    observer = Observer(probe)
    messages: list[tuple[str, Message]] = []
    unreadable: list[str] = []
    with open_capture(path) as reader:
        for rec in words_of(reader, probe, cmap):
            for item in _observe(observer, rec):
                if item.message is not None:
                    # only whether a data set came is read: its first byte stands for it,
                    # so memory stays bounded by MAX_MESSAGES commands, not images
                    kept = replace(item.message, data=item.message.data[:1])
                    messages.append((item.direction, kept))
                elif item.layer == "sync" and item.text.startswith("unreadable message"):
                    unreadable.append(item.direction)
            if len(messages) >= MAX_MESSAGES:
                break
    store = profile.application.commands["store"][0]
    senders = Counter(d for d, m in messages if m.command.field == store)
    scanner = senders.most_common(1)[0][0] if senders else "A"
    return _Seen(messages, unreadable, scanner)


def _application(fit: Fit, profile: Profile, path: str | Path) -> ApplicationSection:
    """The ``[application]`` keys a receiver needs to talk to the capture's scanner, read
    from its messages (module doc, step 9); the findings, and what the capture cannot
    show, go to ``fit``. Keys not found keep the reference's value."""
    ap = profile.application
    try:
        seen = _observed(profile, fit.cmap, path)
    except CaptureError as exc:  # the layers below were fitted by decoding: unlikely
        fit.unfitted.append(f"[application]: the messages could not be read again ({exc})")
        return ap
    if not seen.messages:
        fit.unfitted.append("[application]: no message read: the reference's keys kept")
        return ap
    found: _Found = {}
    _fit_recognition(seen, found, fit.unfitted)
    _fit_length_to_end(seen, found, fit.unfitted)
    _fit_spi(seen, ap, found, fit.unfitted)
    _fit_cancel(seen, ap, found, fit.unfitted)
    fit.unfitted.append(
        "application.station_id_length: station IDs are read without their padding, so "
        "the length they are padded to does not show"
    )
    keys = {key: value for key, (value, _, _) in found.items()}
    if "commands" in keys:
        keys["commands"] = {**ap.commands, **keys["commands"]}
    application = replace(ap, **keys)
    problems = validate(replace(profile, application=application))
    if problems:  # no consistent dialect explains the capture: say so, keep the reference's
        fit.unfitted.append("[application]: the keys read disagree: " + "; ".join(problems))
        return ap
    for key, (value, evidence, confidence) in found.items():
        if isinstance(value, dict):  # command tables: written as [request, response]
            value = {name: list(pair) for name, pair in value.items()}
        _find(fit, f"application.{key}", value, evidence, confidence)
    return application


def _fit_recognition(seen: _Seen, found: _Found, unfitted: list[str]) -> None:
    """(0000,0010) Recognition Code: what the receiving side wrote (the scanner went on
    with it), else what the scanner writes."""
    codes = {
        side: Counter(m.command.recognition_code for m in seen.side(side))
        for side in (seen.scanner, seen.receiver)
    }
    said = "; ".join(
        f"side {side} ({'scanner' if side == seen.scanner else 'receiver'}) wrote "
        + ", ".join(f'"{code}" {n} times' for code, n in c.items())
        for side, c in codes.items()
    )
    written = [c for c in (codes[seen.receiver], codes[seen.scanner]) if c and "" not in c]
    if not written:
        unfitted.append(
            f"application.recognition_code: not every message carries (0000,0010) ({said})"
        )
        return
    code = written[0].most_common(1)[0][0]
    alike = all(set(c) == {code} for c in codes.values())
    found["recognition_code"] = (code, said, "high" if alike else "medium")
    unfitted.append(
        f"application.accepted_recognition_codes: the capture shows the codes used "
        f"({', '.join(sorted({k for c in codes.values() for k in c}))}), not which others "
        f"either end would refuse; kept empty (every code taken)"
    )


def _fit_length_to_end(seen: _Seen, found: _Found, unfitted: list[str]) -> None:
    """(0000,0001) Length to End: written when the messages carry it; required only
    shows as its absence (a scanner message without it)."""
    has = {
        side: (sum(1 for m in seen.side(side) if _has_length_to_end(m)), len(seen.side(side)))
        for side in (seen.scanner, seen.receiver)
    }
    said = "; ".join(
        f"(0000,0001) in {n} of {total} messages from side {side}"
        f" ({'scanner' if side == seen.scanner else 'receiver'})"
        for side, (n, total) in has.items()
    )
    (s_has, s_all), (r_has, r_all) = has[seen.scanner], has[seen.receiver]
    written = bool(s_has or r_has)
    sure = (r_has and r_has == r_all) or (not written and s_all + r_all >= 4)
    found["length_to_end_written"] = (written, said, "high" if sure else "medium")
    if s_has < s_all:
        found["length_to_end_required"] = (
            False,
            f"{said}: requiring it would refuse the scanner's messages without it",
            "high",
        )
    else:
        unfitted.append(
            f"application.length_to_end_required: every message from the scanner carries "
            f"(0000,0001) ({s_has} of {s_all}); whether it refuses one without it, a "
            f"capture cannot show: kept false (messages taken either way)"
        )


def _has_length_to_end(message: Message) -> bool:
    return any(tag == 0x0000_0001 for tag, _ in message.command.other)


def _fit_spi(seen: _Seen, ap: ApplicationSection, found: _Found, unfitted: list[str]) -> None:
    """The SPI command group (0001,xxxx): request codes named by their place in a group
    copy (GCBEGIN first, with (0001,0081); SEND with a data set; GCEND last; READY the
    other), and whether SEND's data set comes after its reply."""
    spi = [m.command for m in seen.side(seen.scanner) if m.command.spi_command is not None]
    requests = [c for c in spi if not c.spi_command or not c.spi_command & 0x8000]
    replies = {
        c.spi_command for c in (m.command for m in seen.side(seen.receiver)) if c.spi_command
    }
    if not spi and not replies:
        n = len(seen.messages)
        found["data_set_after_reply"] = (
            False,
            f"no message of {n} carries group 0001 (SPI): the data set is in the request",
            "high" if n >= 4 else "medium",
        )
        return
    order = list(dict.fromkeys(c.spi_command for c in requests))
    sends = [c for c in requests if c.data_set_type != ap.data_set_none]
    roles: dict[str, int | None] = {
        "gcbegin": next((c.spi_command for c in requests if c.spi_objects is not None), None),
        "send": sends[0].spi_command if sends else None,
        "gcend": requests[-1].spi_command if requests else None,
    }
    rest = [code for code in order if code not in roles.values()]
    roles["ready"] = rest[0] if len(rest) == 1 else None
    codes = ", ".join(f"{c:#06x}" for c in order)
    if None in roles.values() or len(set(roles.values())) != 4:
        unfitted.append(
            f"application.spi_commands: group 0001 seen, with request codes {codes}, but "
            f"not a whole group copy (GCBEGIN, READY, SEND, GCEND): not fitted"
        )
        return
    table = {name: (code, code | 0x8000) for name, code in roles.items() if code is not None}
    answered = all(code | 0x8000 in replies for code, _ in table.values())
    found["spi_commands"] = (
        {name: table[name] for name in SPI_COMMANDS},
        f"(0001,0018) request codes in order {codes}: the first with (0001,0081) is GCBEGIN, "
        f"the one with a data set SEND, the last GCEND, the other READY; "
        + ("each answered with its code | 0x8000" if answered else "not every one answered"),
        "high" if answered else "medium",
    )
    texts = Counter(c.spi_recognition_code for c in spi)
    if texts:
        text = texts.most_common(1)[0][0]
        keep = text == ap.spi_recognition_code.strip()
        found["spi_recognition_code"] = (
            ap.spi_recognition_code if keep else text,
            "(0001,0010) "
            + ", ".join(f'"{t}" {n} times' for t, n in texts.items())
            + (" (padded to even length)" if keep and text != ap.spi_recognition_code else ""),
            "high" if len(texts) == 1 else "medium",
        )
    bare = sum(1 for c in sends if c.data_set_type != ap.data_set_none) - sum(
        1 for m in seen.side(seen.scanner) if m.command.spi_command and m.data
    )
    after = seen.unreadable.count(seen.scanner)
    found["data_set_after_reply"] = (
        bare > 0,
        f"{len(sends)} SEND request(s) with a data set type of data: {bare} carry none and "
        f"{after} message(s) with no command follow from the scanner (the data sets)",
        "high" if bare == after or not bare else "medium",
    )


def _fit_cancel(seen: _Seen, ap: ApplicationSection, found: _Found, unfitted: list[str]) -> None:
    """The answer to CANCEL (0FFF): the response to it, with its status, or none."""
    request = ap.commands["cancel"][0]
    sent = [(i, m) for i, (d, m) in enumerate(seen.messages) if m.command.field == request]
    if not sent:
        unfitted.append(
            f"application.cancel_answer, commands.cancel: no CANCEL ({request:04X}H) in the "
            f"capture, so how it is answered does not show"
        )
        return
    i, cancel = sent[0]
    side = seen.messages[i][0]
    later = [(d, m) for d, m in seen.messages[i + 1 :] if d != side]
    answer = next(
        (m for _, m in later if m.command.responded_to == cancel.command.message_id), None
    )
    if answer is None:
        found["cancel_answer"] = (
            "none",
            f"CANCEL id {cancel.command.message_id} had no response; {len(later)} message(s) "
            f"from the other side came after it",
            "medium" if later else "low",
        )
        return
    names = [name for name, code in ap.statuses.items() if code == answer.command.status]
    if not names:
        unfitted.append(
            f"application.cancel_answer: CANCEL answered with status "
            f"{answer.command.status or 0:#06x}, not in application.statuses"
        )
        return
    evidence = (
        f"CANCEL id {cancel.command.message_id} answered with command field "
        f"{answer.command.field:#06x}, status {answer.command.status or 0:#06x} ({names[0]})"
    )
    found["cancel_answer"] = (names[0], evidence, "high")
    found["commands"] = ({"cancel": (request, answer.command.field)}, evidence, "high")


# ------------------------------------------------------------------ output


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return f"{v:#06x}" if v > 9 else str(v)
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        ints = [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
        if ints and len(ints) == len(v) and max(ints) > 9:  # a code pair: all hexadecimal
            return "[" + ", ".join(f"{x:#06x}" for x in ints) + "]"
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


_DECIMAL = {  # counts and times, written in decimal (codes and words in hexadecimal)
    "setup_ns",
    "hold_ns",
    "turnaround_ns",
    "handshake_timeout_ms",
    "sequence_bits",
    "window",
    "max_payload_words",
}


def fit_toml(fit: Fit, source: str) -> str:
    """The fitted profile as TOML: each fitted key with its evidence and confidence in a
    comment; the channel map in ``[channels]``; what was not fitted at the top."""
    out = [
        f"# Link profile fitted by 'acrnema-bridge profile fit' from {source}",
        "# Each fitted key: its evidence and a confidence (high, medium, low).",
        "# Keys not written keep the reference profile's value.",
        "# NOT FITTED:",
    ]
    out += [f"#   - {line}" for line in fit.unfitted]
    out += ['name = "fitted"', ""]
    sections: dict[str, list[Finding]] = {}
    for f in fit.findings:
        if "." in f.key:
            sections.setdefault(f.key.split(".", 1)[0], []).append(f)
    for section in ("physical", "datalink", "transport", "session", "application"):
        items = sections.get(section, [])
        if not items:
            continue
        out.append(f"[{section}]")
        seen = set()
        for f in items:
            key = f.key.split(".", 1)[1]
            if key in seen:
                continue
            seen.add(key)
            evidence = f.evidence.replace("\n", " ")
            value = str(f.value) if key in _DECIMAL else _value(f.value)
            out.append(f"{key} = {value}  # {f.confidence}: {evidence}")
        out.append("")
    out.append("# which probe carries which line (capture decode reads this table)")
    out.append("[channels]")
    for line, (probe, inverted) in fit.cmap.lines.items():
        note = fit.channel_notes.get(probe, "")
        out.append(f'"{probe}" = {{ line = "{line}", inverted = {_value(inverted)} }}  # {note}')
    return "\n".join(out) + "\n"

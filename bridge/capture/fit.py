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

What the fit cannot tell, or did not find, it says (:attr:`Fit.unfitted`): such keys keep
the reference value. Limits (docs/capture.md): the capture should start at the start of
the link (the first frames numbered from 0), hold a few frames each way, and be free of
glitches longer than ``glitch_ns``; frame type codes are the reference ones. With
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

from bridge.capture.bus import Changes
from bridge.capture.channels import ChannelMap
from bridge.errors import CaptureError
from bridge.profile import (
    OPTIONAL_LINES,
    REFERENCE,
    DatalinkSection,
    Profile,
    validate,
)

__all__ = ["Finding", "Fit", "fit_capture", "fit_check", "fit_toml"]

log = logging.getLogger(__name__)

MAX_WORDS = 200_000  # words of the capture the fit reads (the start of it)
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


def _read(path: str | Path) -> tuple[list[str], Changes]:
    """All probes' levels (bit i = probe i), the first :data:`MAX_WORDS`-ish rows."""
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
            if rows > 8 * MAX_WORDS:
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
    for i in range(n):
        if i in skip:
            continue
        c = _col(sampled, i)
        flips = c[1:] != c[:-1]
        paced[i] = int((flips & ~long_gap).sum())
        across[i] = int((flips & long_gap).sum())
        changes[i] = len(_edges(states, i))
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


def _walk(true: dict[int, npt.NDArray[np.uint16]], check_words: int) -> _Frames | None:
    """Frames back to back from each side's first word (``length_only``): each header's
    type a frame type, bits 10-11 zero, the last frame ending with the side's words."""
    codes = set(REFERENCE.datalink.frame_types.values())
    starts, gaps = {}, {}
    total = 0
    for side, words in true.items():
        p, pos, lens = 0, [], []
        while p + 2 <= len(words):
            head, length = int(words[p]), int(words[p + 1])
            size = 2 + length + check_words
            if head >> 12 not in codes or head & 0x0C00 or p + size > len(words):
                return None
            pos.append(p - 1)
            lens.append(size + 1)
            p += size
        if p != len(words) or not pos:
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


# ------------------------------------------------------------------ the fit


def _find(fit: Fit, key: str, value: Any, evidence: str, confidence: str) -> None:
    fit.findings.append(Finding(key, value, evidence, confidence))


def fit_capture(path: str | Path, cmap: ChannelMap | None = None, glitch_ns: int = 0) -> Fit:
    """Fit a profile to the capture ``path`` (see the module doc), each probe's pulses
    shorter than ``glitch_ns`` taken out first; a :class:`~bridge.errors.CaptureError`
    saying which step failed and why when it cannot (and the shortest pulse on any probe,
    in case glitches are to blame)."""
    probes, raw = _read(path)
    ch = _deglitch(raw, len(probes), glitch_ns)
    try:
        return _fit(path, probes, ch, cmap)
    except CaptureError as exc:
        shortest = _shortest_pulse(ch, probes)
        if shortest is None:
            raise
        raise CaptureError(
            f"{exc} (the shortest pulse on any probe after the glitch filter of {glitch_ns} ns: "
            f"{shortest[0]} ns, {shortest[1]}; if that is a glitch, a larger --glitch-ns "
            f"may help)"
        ) from exc


def _fit(path: str | Path, probes: list[str], ch: Changes, cmap: ChannelMap | None) -> Fit:
    n = len(probes)
    states = ch.states
    hs = _handshake(states, n, probes)
    rows = hs.sample_rows[:MAX_WORDS]
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
    # ---- acknowledgement: frames of no payload going back
    heads = [int(true[1][p + 1]) for p in frames.starts[1] if p + 1 < len(true[1])]
    ack_code = REFERENCE.datalink.frame_types["ack"]
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
    fit.profile = best[0]
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
    fit.unfitted += [
        "physical.setup_ns, hold_ns, turnaround_ns, handshake_timeout_ms: timing, not "
        "needed to decode (the capture report gives the phase durations)",
        "physical.active_low, pins, signalling, ground_pins: a logic analyser sees levels "
        "only; polarity is in the channel map's 'inverted'",
        "datalink.frame_types, max_payload_words, window, sequence_bits: the reference's",
        "application keys (commands, statuses, Length to End, SPI): the reference's",
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
        ranked, count = _bit_order(u, frames, parity_lines)
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
    u: dict[int, npt.NDArray[np.uint64]], frames: _Frames, parity_lines: int
) -> tuple[list[tuple[int, int, list[int]]], int]:
    """The assignments (payload score, check words per frame, position of each raw
    column) agreeing with the frames' length fields and headers, best first; how many."""
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
                    head = REFERENCE.datalink.frame_types["data"] << 12 | seq
                    mask = np.ones(m, np.uint8)
                    mask[8:10] = 0  # unit marks may be there
                    mask[16:] = 0
                    raws.append(words[p + 1])
                    known.append(head)
                    masks.append(mask)
                    seq = (seq + 1) & 0xFF
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


# ------------------------------------------------------------------ output


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:#06x}" if v > 9 else str(v)
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


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
    for section in ("physical", "datalink", "transport", "session"):
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
            out.append(f"{key} = {_value(f.value)}  # {f.confidence}: {evidence}")
        out.append("")
    out.append("# which probe carries which line (capture decode reads this table)")
    out.append("[channels]")
    for line, (probe, inverted) in fit.cmap.lines.items():
        note = fit.channel_notes.get(probe, "")
        out.append(f'"{probe}" = {{ line = "{line}", inverted = {_value(inverted)} }}  # {note}')
    return "\n".join(out) + "\n"

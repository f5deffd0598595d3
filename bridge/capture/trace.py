"""``spy+`` traces read back: printed layer by layer, or exported as a VCD of the bus.

:func:`show_trace` replays a trace (:func:`bridge.ports.spy.read_trace`) through the
:class:`~bridge.capture.observe.Observer`: each record's words (a ``!`` after a word
whose parity line is wrong), READY line changes, and below them the frames, packets and
messages they completed, with seconds since the first record. :func:`export_vcd` puts
the same words on the modelled bus (:func:`bridge.capture.bus.synthesise`) and writes
the VCD; the side that recorded the trace (``A``, the initiator such as the emulated
scanner, or ``B``, the bridge) decides which side drove each word. Both read the trace a
block of records at a time: memory stays bounded whatever the trace's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bridge.acrnema.physical import parity_bits
from bridge.capture.bus import SIDE_A, SIDE_B, BusCarry, Changes, Timing, electrical, synthesise
from bridge.capture.observe import Observer
from bridge.capture.vcd import write_vcd
from bridge.ports.spy import TraceRecord, read_trace
from bridge.profile import REFERENCE, Profile

__all__ = ["export_vcd", "show_trace", "vcd_comments"]

BATCH_WORDS = 1 << 17  # words synthesised at a time: about 100 MB at the peak


def _hex(words: np.ndarray, parity: np.ndarray, good: np.ndarray, limit: int) -> str:
    shown = len(words) if limit <= 0 else min(limit, len(words))
    text = " ".join(
        f"{int(w):04X}{'' if ok else '!'}"
        for w, ok in zip(words[:shown], good[:shown], strict=True)
    )
    return text + (" ..." if shown < len(words) else "")


def show_trace(path: str | Path, profile: Profile = REFERENCE, words: int = 8) -> Iterator[str]:
    """Text lines: each record, then what it completed, indented by layer."""
    observer = Observer(profile, ("out", "in"))
    start: float | None = None
    indent = {"frame": 2, "packet": 4, "message": 6, "sync": 2}
    up = True
    for record in read_trace(path):
        start = record.time if start is None else start
        at = f"{record.time - start:12.6f}"
        if record.direction == "line":
            ready, peer, down = record.line_state
            yield f"{at} line  ready={int(ready)} peer={int(peer)}" + (" link-down" if down else "")
            now_up = ready and peer and not down
            if up and not now_up:
                observer.restart("out")
                observer.restart("in")
            up = now_up
            continue
        w, p = record.buffer.words, record.buffer.parity
        good = (
            np.ones(len(w), bool)
            if profile.physical.parity == "none"
            else parity_bits(w, profile.physical.parity) == p
        )
        yield f"{at} {record.direction:<4}  {len(w)} words: {_hex(w, p, good, words)}"
        for item in observer.feed(record.direction, w, p, record.time):
            pad = " " * indent[item.layer]
            label = "LOST SYNC " if item.layer == "sync" else f"{item.layer} "
            yield f"{item.time - start:12.6f} {record.direction:<4}  {pad}{label}{item.text}"
    for name in ("out", "in"):
        t = observer.tally(name)
        yield (
            f"{name}: {t.words} words ({t.bad_parity} bad parity), frames {t.frames_good} good, "
            f"{t.frames_damaged} damaged, {t.frames_retransmitted} retransmitted; "
            f"{t.packets} packets, {t.messages} messages"
        )


def vcd_comments(profile: Profile, timing: Timing) -> list[str]:
    """The VCD's header comments: the profile's bus, pins, grounds and timing."""
    ph = profile.physical
    pins = ", ".join(
        f"{name} {ph.pins[name][0]}/{ph.pins[name][1]}" for name in ph.bus_lines if name in ph.pins
    )
    return [
        f"acrnema-bridge bus of profile {profile.name}: handshake {ph.handshake}, "
        f"parity {ph.parity} on {ph.parity_lines} line(s), signalling {ph.signalling}",
        f"timing: setup {ph.setup_ns} ns, hold {ph.hold_ns} ns, turnaround {ph.turnaround_ns} ns, "
        f"modelled hop {timing.hop_ns} ns",
        f"active low: {', '.join(ph.active_low) or 'none'}; ground pins: "
        f"{', '.join(map(str, ph.ground_pins)) or 'none'}",
        f"pins (+/-): {pins}",
    ]


def _batches(path: str | Path, side: int, t0: list[float]) -> Iterator[list[TraceRecord]]:
    batch: list[TraceRecord] = []
    size = 0
    for record in read_trace(path):
        if not t0:
            t0.append(record.time)
        batch.append(record)
        size += len(record.buffer.words)
        if size >= BATCH_WORDS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def trace_changes(
    path: str | Path, profile: Profile, side: str = "B", timing: Timing | None = None
) -> Iterator[Changes]:
    """The bus (asserted line states) carrying the words of the trace, batch by batch."""
    ph = profile.physical
    mine = SIDE_A if side == "A" else SIDE_B
    carry = BusCarry()
    t0: list[float] = []
    for batch in _batches(path, mine, t0):
        words, parity, sides, early, perr = [], [], [], [], []
        ready: list[tuple[int, bool, bool]] = []
        after: list[int] = []
        count = 0
        for record in batch:
            ns = round((record.time - t0[0]) * 1e9)
            if record.direction == "line":
                me, peer, _down = record.line_state
                a, b = (me, peer) if mine == SIDE_A else (peer, me)
                ready.append((ns, a, b))
                after.append(count)
                continue
            n = len(record.buffer.words)
            count += n
            words.append(record.buffer.words)
            parity.append(record.buffer.parity)
            driver = mine if record.direction == "out" else 1 - mine
            sides.append(np.full(n, driver, np.uint8))
            early.append(np.full(n, ns, np.int64))
            flagged = np.zeros(n, bool)
            if ph.parity != "none":  # the receiver checks every word it takes
                flagged = parity_bits(record.buffer.words, ph.parity) != record.buffer.parity
            perr.append(flagged)
        if not words and not ready:
            continue

        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        yield synthesise(
            ph,
            joined(words, np.uint16),
            joined(parity, np.uint8),
            joined(sides, np.uint8),
            joined(early, np.int64),
            perr=joined(perr, np.bool_),
            ready=ready,
            ready_after=after,
            timing=timing,
            carry=carry,
        )


def export_vcd(
    path: str | Path,
    out: str | Path,
    profile: Profile = REFERENCE,
    side: str = "B",
    timing: Timing | None = None,
) -> int:
    """Write the VCD of the bus carrying the trace ``path``; the rows (times) written."""
    ph = profile.physical
    levels = (
        Changes(c.times, electrical(ph, c.states))
        for c in trace_changes(path, profile, side, timing)
    )
    return write_vcd(
        out,
        ph.bus_lines,
        levels,
        comments=vcd_comments(profile, timing or Timing()),
        idle_ns=max(ph.hold_ns, ph.turnaround_ns),
    )

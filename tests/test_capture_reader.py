"""The capture reader's fast paths give what the plain reading gives.

``capture decode`` reads a VCD a block at a time with a fast path for the shape writers
give (one token a line, each change a toggle, 8-9 digit timestamps) and falls back to a
general parse for the rest; word recovery finds the handshake's edges with a table over
REQ and ACK and counts phase durations in one histogram pass, each with a general way
beside it. These tests hold each fast path to the plain answer: the VCD against a reader
written token by token in Python, over captures the emulator writes and reshaped ones
(spaces, CRLF, other timestamp lengths, a timescale, a repeated level, probes not read),
read in blocks of many sizes; the edges, durations and glitch filter against the general
way or a line-by-line model, on random buses.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from emulated import emulate_vcd
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.capture.bus import HIST_NS, Changes, WordRecovery
from bridge.capture.vcd import VcdReader
from bridge.errors import CaptureError
from bridge.profile import profile_from_mapping

MODES = ("four-phase", "two-phase", "strobe")


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small emulator capture in each handshake mode."""
    out = {}
    for mode in MODES:
        tmp = tmp_path_factory.mktemp(mode)
        out[mode], _ = emulate_vcd(tmp, f'[physical]\nhandshake = "{mode}"', images=1, size=32)
    return out


def _plain(path: Path, selected: list[str]) -> tuple[list[int], list[int]]:
    """The changes of ``selected`` (bit i = selected[i]) read token by token: a row a
    time at which a selected probe changes, the state after the last change at it."""
    reader = VcdReader(path)
    ids, scale = dict(reader.ids), reader.scale
    reader.close()
    bit_of = {ids[name]: i for i, name in enumerate(selected)}
    body = path.read_bytes().decode("ascii").split("$enddefinitions", 1)[1]
    tokens = body.split()[1:]  # after its $end
    rows: dict[int, int] = {}
    state, time, skip = 0, -1, False
    for token in tokens:
        if skip:
            skip = token != "$end"
        elif token == "$comment":
            skip = True
        elif token.startswith("#"):
            time = int(token[1:])
        elif not token.startswith("$") and token[1:] in bit_of:
            bit = bit_of[token[1:]]
            state = state | 1 << bit if token[0] == "1" else state & ~(1 << bit)
            rows[time] = state
    times = [int(np.int64(t) * scale) if scale != 1 else t for t in rows]
    return times, list(rows.values())


def _read(path: Path, selected: list[str], block: int | None) -> tuple[list[int], list[int]]:
    """The reader's changes: one row a time, however the blocks fall (a block cut among
    the changes of one time gave two rows, the first a state the bus never had)."""
    with VcdReader(path) as reader:
        chunks = list(reader.changes(selected, **({} if block is None else {"block": block})))
    times = np.concatenate([c.times for c in chunks]).tolist()
    states = np.concatenate([c.states for c in chunks]).tolist()
    assert all(a < b for a, b in itertools.pairwise(times)), "two rows at one time"
    return times, states


def _retimed(text: str, shift: int) -> str:
    return re.sub(r"(?m)^#(\d+)$", lambda m: f"#{int(m.group(1)) + shift}", text)


def _shapes(vcd: Path, tmp: Path) -> dict[str, Path]:
    """The capture as other writers might put it."""
    text = vcd.read_text()
    head, body = text.split("$enddefinitions $end\n", 1)
    lines = body.split("\n")
    at = next(i for i, line in enumerate(lines) if i > 400 and not line.startswith("#"))
    shapes = {
        "as written": text,
        "spaces": head + "$enddefinitions $end\n" + body.replace("\n", " "),
        "crlf": head + "$enddefinitions $end\n" + body.replace("\n", "\r\n"),
        "100 ps": head.replace("1 ns", "100 ps") + "$enddefinitions $end\n" + body,
        "9 digits": _retimed(text, 123_456_789),
        "8 and 9 digits": _retimed(text, 99_999_000),
        "11 digits": _retimed(text, 98_765_432_100),
        "a level repeated": head
        + "$enddefinitions $end\n"
        + "\n".join(lines[: at + 1] + [lines[at]] + lines[at + 1 :]),
        "a comment": head
        + "$enddefinitions $end\n"
        + "\n".join(lines[:at] + ["$comment probe 3 loose $end"] + lines[at:]),
    }
    out = {}
    for name, content in shapes.items():
        path = tmp / (name.replace(" ", "-") + ".vcd")
        path.write_text(content)
        out[name] = path
    return out


@pytest.mark.parametrize("mode", MODES)
def test_the_vcd_reader_gives_the_changes_a_plain_reading_gives(
    captures: dict[str, Path], tmp_path: Path, mode: str
) -> None:
    ph = profile_from_mapping({"physical": {"handshake": mode}}).physical
    every = list(ph.bus_lines)
    some = [name for name in every if name not in ("D7", "READY_B")]  # probes not read
    for name, path in _shapes(captures[mode], tmp_path).items():
        for selected in (every, some):
            expected = _plain(path, selected)
            assert len(expected[0]) > 1000, name
            for block in (None, 4096, 333, 64):
                assert _read(path, selected, block) == expected, (name, len(selected), block)


@pytest.mark.parametrize("digits", ["12:456789", "12/456789", "1234:6789", "12345678:"])
def test_a_bad_timestamp_is_an_error_naming_its_byte_in_any_block(
    captures: dict[str, Path], tmp_path: Path, digits: str
) -> None:
    text = _retimed(captures["four-phase"].read_text(), 123_456_789)
    at = text.index("\n#", len(text) // 2) + 1
    end = text.index("\n", at)
    bad = tmp_path / "bad.vcd"
    bad.write_text(text[:at] + "#" + digits + text[end:])
    for block in (None, 4096, 333):  # the byte counted from the file's start
        with pytest.raises(CaptureError, match=f"bad timestamp at byte {at}$"):
            _read(bad, ["REQ", "ACK"], block)


def _bus(draw: st.DrawFn, lines: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    """Random rows of REQ, ACK (strobe: no ACK, DIR) and D3 in any combination; the
    state before them."""
    n = draw(st.integers(1, 60))
    req = lines.index("REQ")
    other = lines.index("ACK" if "ACK" in lines else "DIR")
    picks = draw(st.lists(st.integers(0, 7), min_size=n + 1, max_size=n + 1))
    states = np.array(
        [(p & 1) << req | (p >> 1 & 1) << other | (p >> 2 & 1) << 3 for p in picks], np.uint64
    )
    steps = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    return np.cumsum(np.array(steps, np.int64)), states[1:], states[0]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), mode=st.sampled_from(MODES))
def test_the_edge_table_finds_the_edges_the_line_by_line_way_finds(
    data: st.DataObject, mode: str
) -> None:
    ph = profile_from_mapping({"physical": {"handshake": mode}}).physical
    times, states, prev = data.draw(st.composite(lambda draw: _bus(draw, ph.bus_lines))())
    recovery = WordRecovery(ph)
    fast = recovery._events(times, states, prev)
    plain = recovery._events_by_line(times, states, prev)
    for a, b in zip(fast, plain, strict=True):
        assert a.dtype == b.dtype
        assert np.array_equal(a, b)


@settings(max_examples=300, deadline=None)
@given(
    durations=st.lists(
        st.one_of(st.integers(0, 300), st.integers(0, 3 * HIST_NS)), min_size=0, max_size=80
    ),
    offset=st.sampled_from([0, HIST_NS - 150, 4 * HIST_NS]),
    phases=st.lists(st.integers(0, 3), min_size=80, max_size=80),
    valid=st.lists(st.booleans(), min_size=80, max_size=80),
)
def test_phase_durations_counted_at_once_equal_those_counted_phase_by_phase(
    durations: list[int], offset: int, phases: list[int], valid: list[bool]
) -> None:
    ph = profile_from_mapping({}).physical
    n = len(durations)
    d = offset + np.array(durations, np.int64)
    phase = np.array(phases[:n], np.int8)
    ok = np.array(valid[:n], bool)
    at_once, by_phase = WordRecovery(ph), WordRecovery(ph)
    for _ in range(2):  # twice: the second adds to what the first counted
        if not at_once._count_phases(d, phase, ok):
            at_once._count_phases_by_phase(d, phase, ok)
        by_phase._count_phases_by_phase(d, phase, ok)
    assert np.array_equal(at_once.hist, by_phase.hist)
    assert at_once.minimum == by_phase.minimum
    assert at_once.maximum == by_phase.maximum
    assert at_once.over == by_phase.over


def _deglitched(times: np.ndarray, states: np.ndarray, prev: int, w: int, nbits: int) -> list[int]:
    """The glitch rule line by line: a change followed by the next change of its line
    less than ``w`` later is dropped; a line holds the level of its last kept change."""
    out = [0] * len(states)
    for bit in range(nbits):
        level = [int(s) >> bit & 1 for s in states]
        before = [prev >> bit & 1, *level[:-1]]
        rows = [i for i in range(len(states)) if level[i] != before[i]]
        kept = [
            r
            for j, r in enumerate(rows)
            if j + 1 == len(rows) or times[rows[j + 1]] - times[r] >= w
        ]
        held = prev >> bit & 1
        for i in range(len(states)):
            if i in kept:
                held = level[i]
            out[i] |= held << bit
    return out


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.integers(0, 25), min_size=2, max_size=50),
    picks=st.lists(st.integers(0, 255), min_size=50, max_size=50),
    prev=st.integers(0, 255),
    w=st.integers(1, 20),
)
def test_the_glitch_filter_looking_only_at_suspect_lines_equals_the_rule(
    steps: list[int], picks: list[int], prev: int, w: int
) -> None:
    ph = profile_from_mapping({}).physical
    times = np.cumsum(np.array(steps, np.int64))
    states = np.array(picks[: len(times)], np.uint64)
    got = WordRecovery(ph, glitch_ns=w)._deglitch(Changes(times, states), np.uint64(prev))
    assert got.states.tolist() == _deglitched(times, states, prev, w, 8)

"""The interface box's PIO programs (firmware/pio/*.pio) under an emulator.

Each program is assembled with adafruit-circuitpython-pioasm (import ``adafruit_pioasm``)
and run on one emulated state machine with rp2040-pio-emulator (import ``pioemu``), with
a model of the peer on the pins: words, parity and the handshake's phases (docs/link-
profile.md, section 1.1) in both directions, a peer that never answers (the program
waits; the timeout is the C core's), parity errors, throttling by a full FIFO, and the
bus-direction sequence. Pins are those of firmware/rp2040/board.h.

No ``from __future__ import annotations`` here: pioemu reads the input source's type
hint at run time and needs the real ``State`` class, not a string.
"""

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import peers
import pytest

try:  # installed by `make venv` (pip install --no-deps, see the Makefile)
    import adafruit_pioasm as pioasm
    import pioemu
except ImportError:  # pragma: no cover - depends on the environment
    _why = (
        "the PIO assembler/emulator is not installed (pip install --no-deps "
        "rp2040-pio-emulator adafruit-circuitpython-pioasm)"
    )
    if os.environ.get(peers.REQUIRE_PEERS_ENV) == "1":
        pytest.fail(f"{_why} (and {peers.REQUIRE_PEERS_ENV}=1 forbids skipping)", pytrace=False)
    pytest.skip(_why, allow_module_level=True)
State = pioemu.State

PIO_DIR = Path(__file__).resolve().parents[1] / "firmware" / "pio"
D_MASK = 0xFFFF
WORD17 = 0x1FFFF  # D0-D15 and PARITY on GP0-GP16
PARITY, REQ, ACK, PERR, DE_OWN, DE_ANS = 16, 17, 18, 19, 20, 21


def program(name: str):  # type: ignore[no-untyped-def]
    return pioasm.Program((PIO_DIR / f"{name}.pio").read_text(encoding="utf-8"))


def ones(value: int) -> int:
    return bin(value).count("1")


def odd_parity_line(word: int) -> int:
    """The PARITY line under odd parity: the 17 bits hold an odd number of ones."""
    return 0 if ones(word) % 2 else 1


def with_parity(word: int, good: bool = True, mode: str = "odd") -> int:
    line = odd_parity_line(word) if mode == "odd" else 1 - odd_parity_line(word)
    return word | (line if good else 1 - line) << PARITY


def bit(value: int, n: int) -> int:
    return (value >> n) & 1


def run(
    prog,  # type: ignore[no-untyped-def]
    state: State,
    peer: Callable[[State], int] | None,
    until: Callable[[State], bool],
    max_cycles: int = 5000,
    **config: object,
) -> list[State]:
    """The states after each step, until ``until`` holds or ``max_cycles`` passed."""
    kwargs = dict(config)
    if "wrap" in prog.pio_kwargs:
        kwargs.setdefault("wrap_top", prog.pio_kwargs["wrap"])
        kwargs.setdefault("wrap_target", prog.pio_kwargs.get("wrap_target", 0))
    side = prog.pio_kwargs.get("sideset_pin_count", 0)
    steps: Iterator[tuple[State, State]] = pioemu.emulate(
        list(prog.assembled),
        initial_state=state,
        input_source=peer,
        stop_when=lambda _op, s: until(s) or s.clock > state.clock + max_cycles,
        side_set_count=side,
        **kwargs,
    )
    return [after for _before, after in steps]


# --- acr_send -----------------------------------------------------------------------

SEND_CONFIG = {"out_base": 0, "out_count": 17, "side_set_base": REQ, "jmp_pin": PERR}


def send_word(word17: int, setup: int, hold: int) -> int:
    return word17 | setup << 17 | hold << 24


class Receiver:
    """The peer as receiver: samples on REQ, answers ACK (PERR on bad odd parity)."""

    def __init__(self, ack_after: int = 3, release_after: int = 2) -> None:
        self.ack_after, self.release_after = ack_after, release_after
        self.never_ack = False
        self.never_release = False
        self.ack = self.perr = 0
        self.count = 0
        self.words: list[int] = []
        self.ack_edges: list[int] = []  # clocks at which ACK rose

    def __call__(self, state: State) -> int:
        req = bit(state.pin_values, REQ)
        if req and not self.ack:
            self.count += 1
            if self.count >= self.ack_after and not self.never_ack:
                sample = state.pin_values & WORD17
                self.words.append(sample)
                self.perr = int(ones(sample) % 2 == 0)  # odd parity: an even count is bad
                self.ack, self.count = 1, 0
                self.ack_edges.append(state.clock)
        elif not req and self.ack:
            self.count += 1
            if self.count >= self.release_after and not self.never_release:
                self.ack = self.perr = self.count = 0
        return self.ack << ACK | self.perr << PERR


def send_state(words: list[int]) -> State:
    return State(
        pin_directions=(1 << 18) - 1,  # D0-D15, PARITY, REQ driven by the machine
        transmit_fifo=deque(words),
    )


def test_send_words_parity_and_phases() -> None:
    prog = program("acr_send")
    words = [0x0000, 0xFFFF, 0xA5C3, 0x1234, 0x8001]
    good = [with_parity(w) for w in words]
    good[3] = with_parity(words[3], good=False)  # the peer answers PERR to this one
    setup, hold = 10, 5
    peer = Receiver()
    trace = run(
        prog,
        send_state([send_word(w, setup, hold) for w in good]),
        peer,
        until=lambda s: (
            len(peer.words) == len(words)
            and s.program_counter == 0
            and not s.transmit_fifo
            and not peer.ack
        ),
        **SEND_CONFIG,
    )
    assert peer.words == good  # words and their PARITY line, in order
    end = trace[-1]
    assert [(-x) & 0xFFFF_FFFF for x in end.receive_fifo] == [3]  # PERR: word index 3
    assert bit(end.pin_values, REQ) == 0

    # the handshake's phases, from the pins
    data_since, prev_data, prev_req = 0, None, 0
    rises: list[int] = []
    falls: list[int] = []
    for s in trace:
        data, req = s.pin_values & WORD17, bit(s.pin_values, REQ)
        if data != prev_data:
            assert req == 0, "data changed while REQ asserted"
            prev_data, data_since = data, s.clock
        if req and not prev_req:
            rises.append(s.clock)
            assert s.clock - data_since >= setup + 2, "setup time too short"
        if prev_req and not req:
            falls.append(s.clock)
        prev_req = req
    assert len(rises) == len(falls) == len(words)
    for fall, ack in zip(falls, peer.ack_edges, strict=True):
        assert fall - ack >= hold + 2, "REQ dropped before the hold time"


def test_send_waits_for_the_next_word_until_ack_drops() -> None:
    prog = program("acr_send")
    peer = Receiver(release_after=40)  # a slow receiver
    words = [send_word(with_parity(w), 0, 0) for w in (0x0101, 0x0202)]
    trace = run(prog, send_state(words), peer, until=lambda s: len(peer.words) == 2, **SEND_CONFIG)
    second = next(s for s in trace if s.pin_values & D_MASK == 0x0202)
    first_ack_fall = next(
        s.clock for s in trace if s.clock > peer.ack_edges[0] and not bit(s.pin_values, ACK)
    )
    assert second.clock > first_ack_fall  # step 6: the next word only after ACK dropped


@pytest.mark.parametrize("stall", ["never_ack", "never_release"])
def test_send_stalls_in_the_phase_the_core_times_out(stall: str) -> None:
    prog = program("acr_send")
    peer = Receiver()
    setattr(peer, stall, True)
    word = with_parity(0x5A5A)
    trace = run(
        prog,
        send_state([send_word(word, 1, 1), send_word(with_parity(1), 1, 1)]),
        peer,
        until=lambda s: False,
        max_cycles=3000,
        **SEND_CONFIG,
    )
    end = trace[-1]
    assert end.clock > 3000  # ran the whole time, waiting
    if stall == "never_ack":  # step 2: REQ and the data held, waiting for ACK
        assert end.program_counter == prog.public_labels["ack_assert"]
        assert bit(end.pin_values, REQ) == 1
        assert end.pin_values & WORD17 == word
        assert peer.words == []
    else:  # step 4: REQ dropped, waiting for ACK to drop
        assert end.program_counter == prog.public_labels["ack_release"]
        assert bit(end.pin_values, REQ) == 0
        assert peer.words == [word]
    assert len(end.transmit_fifo) == 1  # the next word is not lost, only waiting


# --- acr_recv -----------------------------------------------------------------------

RECV_CONFIG = {
    "side_set_base": ACK,
    "set_base": ACK,
    "set_count": 2,
    "shift_isr_right": False,
    "shift_osr_right": False,
}


class Sender:
    """The peer as sender: data, setup, REQ, wait ACK, hold, drop REQ, wait ACK low."""

    def __init__(self, words: list[int], setup: int = 2, hold: int = 1) -> None:
        self.words = deque(words)
        self.setup, self.hold = setup, hold
        self.keep_req_after: int | None = None  # a stuck sender: REQ never drops
        self.phase, self.count, self.data, self.req = "next", 0, 0, 0
        self.answers: list[tuple[int, int]] = []  # (word, PERR seen with its ACK)
        self.sent = 0

    def __call__(self, state: State) -> int:
        ack, perr = bit(state.pin_values, ACK), bit(state.pin_values, PERR)
        if self.phase == "next" and self.words and not ack:
            self.data, self.phase, self.count = self.words.popleft(), "setup", 0
        elif self.phase == "setup":
            self.count += 1
            if self.count >= self.setup:
                self.req, self.phase = 1, "wait_ack"
        elif self.phase == "wait_ack" and ack:
            self.answers.append((self.data, perr))
            self.phase, self.count = "hold", 0
        elif self.phase == "hold":
            self.count += 1
            stuck = self.keep_req_after is not None and self.sent >= self.keep_req_after
            if self.count >= self.hold and not stuck:
                self.req, self.phase = 0, "wait_release"
        elif self.phase == "wait_release" and not ack:
            self.phase = "next"
            self.sent += 1
        return self.data | self.req << REQ


def recv_state(entry: int, x: int = 0, fifo: deque[int] | None = None) -> State:
    return State(program_counter=entry, x_register=x, receive_fifo=fifo or deque())


def receive(
    prog,  # type: ignore[no-untyped-def]
    peer: Sender,
    state: State,
    max_cycles: int = 20_000,
) -> tuple[list[int], State]:
    """Run, taking words out of the RX FIFO as the core would; (words, last state)."""
    got: list[int] = []

    def done() -> bool:
        return not peer.words and peer.phase == "next"

    while True:
        trace = run(
            prog,
            state,
            peer,
            until=lambda s: len(s.receive_fifo) == 4 or done(),
            max_cycles=max_cycles,
            **RECV_CONFIG,
        )
        state = trace[-1] if trace else state
        got += list(state.receive_fifo)
        state = dataclasses.replace(state, receive_fifo=deque())
        if done() or state.clock > max_cycles:
            return got, state


@pytest.mark.parametrize("mode", ["odd", "even"])
def test_receive_words_and_check_parity(mode: str) -> None:
    prog = program("acr_recv")
    words = [0x0000, 0xFFFF, 0xA5C3, 0x1234, 0x8001, 0x7FFF, 0x0100]
    bad = {2, 5}
    sent = [with_parity(w, i not in bad, mode) for i, w in enumerate(words)]
    peer = Sender(sent)
    x = 0 if mode == "odd" else 1
    got, _ = receive(prog, peer, recv_state(prog.public_labels["start_check"], x))
    assert got == sent  # bits 0-15 the word, bit 16 its PARITY line
    assert [perr for _w, perr in peer.answers] == [int(i in bad) for i in range(len(words))]


def test_receive_without_parity_never_sends_perr() -> None:
    prog = program("acr_recv")
    sent = [with_parity(w, good=False) for w in (1, 2, 3, 0xFFFF)]
    peer = Sender(sent)
    got, _ = receive(prog, peer, recv_state(prog.public_labels["start_nocheck"]))
    assert got == sent
    assert [perr for _w, perr in peer.answers] == [0, 0, 0, 0]


@pytest.mark.parametrize("entry", ["start_check", "start_nocheck"])
def test_receive_throttles_the_sender_while_the_fifo_is_full(entry: str) -> None:
    prog = program("acr_recv")
    sent = [with_parity(w) for w in range(1, 7)]
    peer = Sender(sent)
    state = recv_state(prog.public_labels[entry])
    trace = run(prog, state, peer, until=lambda s: False, max_cycles=3000, **RECV_CONFIG)
    end = trace[-1]
    assert list(end.receive_fifo) == sent[:4]  # the core took nothing: FIFO full
    assert len(peer.answers) == 4  # the fifth word is waiting for its ACK ...
    assert peer.req == 1 and bit(end.pin_values, ACK) == 0  # ... with REQ up, ACK held back
    assert prog.assembled[end.program_counter] & 0xE000 == 0x8000  # stalled on `push`
    # the core drains the FIFO: the handshake goes on, nothing was lost
    got, _ = receive(prog, peer, dataclasses.replace(end, receive_fifo=deque()))
    assert sent[:4] + got == sent
    assert len(peer.answers) == 6


def test_receive_stalls_with_ack_while_req_stays_up() -> None:
    prog = program("acr_recv")
    peer = Sender([with_parity(0x4242), with_parity(0x4343)])
    peer.keep_req_after = 0  # the sender never drops REQ after the first word
    state = recv_state(prog.public_labels["start_check"])
    trace = run(prog, state, peer, until=lambda s: False, max_cycles=2000, **RECV_CONFIG)
    end = trace[-1]
    assert end.program_counter == prog.public_labels["good_ack"]  # phase REQ_RELEASE
    assert bit(end.pin_values, ACK) == 1
    assert list(end.receive_fifo) == [with_parity(0x4242)]


def test_receive_restart_never_takes_a_word_twice() -> None:
    """Started (after a timeout) while REQ is still up, it waits for REQ to drop."""
    prog = program("acr_recv")
    held = with_parity(0x1111)
    peer = Sender([with_parity(0x2222)])
    peer.phase, peer.data, peer.req = "hold", held, 1  # mid-handshake of `held`
    peer.keep_req_after = 0
    state = recv_state(prog.public_labels["start_check"])
    trace = run(prog, state, peer, until=lambda s: False, max_cycles=500, **RECV_CONFIG)
    assert list(trace[-1].receive_fifo) == []
    assert all(bit(s.pin_values, ACK) == 0 for s in trace)
    peer.keep_req_after = None  # REQ drops at last: the next word comes in
    got, _ = receive(prog, peer, trace[-1])
    assert got == [with_parity(0x2222)]


# --- acr_bus ------------------------------------------------------------------------

BUS_CONFIG = {"out_base": 0, "out_count": 18, "side_set_base": DE_OWN}


def bus_command(prog, target: str, drive: bool) -> int:  # type: ignore[no-untyped-def]
    return ((1 << 18) - 1 if drive else 0) | prog.public_labels[target] << 18


def test_bus_turns_round_with_the_drivers_off() -> None:
    prog = program("acr_bus")
    commands = deque(
        [
            bus_command(prog, "own", True),
            bus_command(prog, "answer", False),
            bus_command(prog, "idle", False),
        ]
    )
    state = State(program_counter=prog.public_labels["idle"], pin_directions=0b11 << DE_OWN)
    trace = [state]
    while commands:
        state = dataclasses.replace(trace[-1], transmit_fifo=deque([commands.popleft()]))
        start = state.clock
        trace += run(
            prog,
            state,
            None,
            until=lambda s, start=start: not s.transmit_fifo and s.clock > start + 6,
            **BUS_CONFIG,
        )
    de = [(s.pin_values >> DE_OWN) & 3 for s in trace]
    dirs = [s.pin_directions & ((1 << 18) - 1) for s in trace]
    for i in range(1, len(trace)):
        if dirs[i] != dirs[i - 1]:  # pins turned round only with both drivers off
            assert de[i - 1] == 0 and de[i] == 0, (i, de[i - 1], de[i])
    phases = [(d, e) for d, e in zip(dirs, de, strict=True)]
    compact = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert compact == [
        (0, 0),  # idle
        ((1 << 18) - 1, 0),  # pins to outputs first ...
        ((1 << 18) - 1, 1),  # ... then DE_OWN: the box drives D0-D15, PARITY, REQ
        ((1 << 18) - 1, 0),  # DE_OWN off first ...
        (0, 0),  # ... then the pins to inputs
        (0, 2),  # DE_ANS: the box answers (ACK, PERR)
        (0, 0),  # idle: nothing driven
    ]


# --- two-phase and strobe (physical.handshake; docs/box-protocol.md, CONFIGURE) ------


class TwoPhaseReceiver:
    """The peer as a two-phase receiver: a word at each change of REQ, ACK follows it."""

    def __init__(self, answer_after: int = 3) -> None:
        self.answer_after = answer_after
        self.never_answer_after: int | None = None
        self.ack = self.count = 0
        self.words: list[int] = []
        self.answers: list[int] = []  # clocks at which ACK changed

    def __call__(self, state: State) -> int:
        req = bit(state.pin_values, REQ)
        stuck = self.never_answer_after is not None and len(self.words) >= self.never_answer_after
        if req != self.ack and not stuck:
            self.count += 1
            if self.count >= self.answer_after:
                self.words.append(state.pin_values & WORD17)
                self.ack, self.count = req, 0
                self.answers.append(state.clock)
        return self.ack << ACK


def test_two_phase_send_changes_req_once_a_word() -> None:
    prog = program("acr_send_2ph")
    words = [with_parity(w) for w in (0x0000, 0xFFFF, 0xA5C3, 0x1234, 0x8001)]
    setup, hold = 6, 4
    peer = TwoPhaseReceiver()
    trace = run(
        prog,
        send_state([send_word(w, setup, hold) for w in words]),
        peer,
        until=lambda s: len(peer.words) == len(words) and not s.transmit_fifo,
        **SEND_CONFIG,
    )
    assert peer.words == words  # each word and its PARITY line, in order
    edges, prev_req, prev_data, data_since = [], 0, None, 0
    for s in trace:
        data, req = s.pin_values & WORD17, bit(s.pin_values, REQ)
        if data != prev_data:
            prev_data, data_since = data, s.clock
        if req != prev_req:
            edges.append(s.clock)
            assert s.clock - data_since >= setup + 2, "setup time too short"
        prev_req = req
    assert len(edges) == len(words)  # one REQ transition a word, no return to zero
    for edge, answer in zip(edges[1:], peer.answers, strict=False):
        assert edge - answer >= hold + 2, "data changed before the hold time"


def test_two_phase_send_stalls_where_the_core_times_out() -> None:
    prog = program("acr_send_2ph")
    words = [send_word(with_parity(w), 1, 1) for w in (0x0101, 0x0202, 0x0303)]
    for stall, label, req in ((0, "ack_rise", 1), (1, "ack_fall", 0)):
        peer = TwoPhaseReceiver()
        peer.never_answer_after = stall
        end = run(
            prog, send_state(words), peer, until=lambda s: False, max_cycles=2000, **SEND_CONFIG
        )[-1]
        assert end.program_counter == prog.public_labels[label]
        assert bit(end.pin_values, REQ) == req


class TwoPhaseSender:
    """The peer as a two-phase sender: data, setup, change REQ, wait for ACK to follow."""

    def __init__(self, words: list[int], setup: int = 2) -> None:
        self.words = deque(words)
        self.setup = setup
        self.phase, self.count, self.data, self.req = "next", 0, 0, 0
        self.sent = 0

    def __call__(self, state: State) -> int:
        ack = bit(state.pin_values, ACK)
        if self.phase == "next" and self.words and ack == self.req:
            self.data, self.phase, self.count = self.words.popleft(), "setup", 0
        elif self.phase == "setup":
            self.count += 1
            if self.count >= self.setup:
                self.req, self.phase = 1 - self.req, "wait"
        elif self.phase == "wait" and ack == self.req:
            self.phase, self.sent = "next", self.sent + 1
        return self.data | self.req << REQ


def test_two_phase_receive_answers_each_change_and_throttles() -> None:
    prog = program("acr_recv_2ph")
    words = [with_parity(w) for w in (0x0000, 0xFFFF, 0xA5C3, 0x1234, 0x8001, 0x7FFF)]
    peer = TwoPhaseSender(words)
    state = recv_state(prog.public_labels["start"])
    # the FIFO holds 4: the fifth word waits (ACK held back) until the core reads
    trace = run(prog, state, peer, until=lambda s: False, max_cycles=3000, **RECV_CONFIG)
    end = trace[-1]
    assert list(end.receive_fifo) == words[:4] and peer.sent == 4
    assert all(bit(s.pin_values, PERR) == 0 for s in trace)  # never driven
    state = dataclasses.replace(end, receive_fifo=deque())
    end = run(prog, state, peer, until=lambda s: peer.sent == 6, **RECV_CONFIG)[-1]
    assert list(end.receive_fifo) == words[4:]
    assert bit(end.pin_values, ACK) == peer.req  # ACK follows REQ


def test_strobe_send_pulses_req_with_the_configured_timing() -> None:
    prog = program("acr_send_strobe")
    words = [with_parity(w) for w in (0x1111, 0x2222, 0x3333)]
    setup, hold = 5, 7
    rises: list[tuple[int, int]] = []
    widths: list[int] = []
    state = send_state([send_word(w, setup, hold) for w in words])
    trace = run(prog, state, None, until=lambda s: False, max_cycles=200, **SEND_CONFIG)
    prev_req, rose, prev_data, data_since = 0, 0, None, 0
    for s in trace:
        data, req = s.pin_values & WORD17, bit(s.pin_values, REQ)
        if data != prev_data:
            assert req == 0, "data changed during the strobe"
            prev_data, data_since = data, s.clock
        if req and not prev_req:
            rises.append((data, s.clock - data_since))
            rose = s.clock
        if prev_req and not req:
            widths.append(s.clock - rose)
        prev_req = req
    assert [d for d, _ in rises] == words  # no answer needed: every word goes out
    assert all(lead >= setup + 2 for _, lead in rises)
    assert widths == [hold + 2] * len(words)


def test_strobe_receive_takes_a_word_at_each_rising_edge() -> None:
    prog = program("acr_recv_strobe")
    words = [with_parity(w) for w in (0x1111, 0xFFFF, 0x0000)]
    schedule = deque(words)
    current = {"data": 0, "req": 0, "t": 0}

    def strobe(state: State) -> int:  # 4 cycles setup, 4 high, 4 low
        current["t"] += 1
        phase = current["t"] % 12
        if phase == 1 and schedule:
            current["data"] = schedule.popleft()
        current["req"] = int(4 <= phase < 8)
        return current["data"] | current["req"] << REQ

    end = run(
        prog,
        recv_state(prog.public_labels["start"]),
        strobe,
        until=lambda s: len(s.receive_fifo) == 3,
        **RECV_CONFIG,
    )[-1]
    assert list(end.receive_fifo) == words
    assert bit(end.pin_values, ACK) == 0 and bit(end.pin_values, PERR) == 0

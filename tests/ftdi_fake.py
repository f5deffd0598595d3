"""A fake cable, FT2232H and scanner at the controller boundary of ``ftdi-gpio://``.

* :class:`Cable`: the 24 link lines; each is driven by side ``a``, side ``b``, both
  (recorded as contention) or nobody (it then reads deasserted: the bias
  docs/ftdi-gpio.md asks for). Every time a side starts driving a line the cable checks
  the rules of docs/link-profile.md, section 1.2 (nothing but READY before the other
  side's READY is seen; D0-D15, PARITY and REQ only by the bus owner; ACK and PERR only
  by the other side; no line of the other side) and records what breaks them in
  ``violations``.
* :class:`FtdiPins`: one side's FT2232H and EIA-485 transceivers on the cable, wired as
  :mod:`bridge.ports.ftdi_gpio` documents; it is a
  :class:`~bridge.ports.ftdi_gpio.GpioBus`. Each call is one *step* of the cable.
* :class:`FakeScanner`: the other side's interface logic, step-wise: at each step it
  makes at most one change to its lines (one edge of the handshake, one bus turn). It
  plays side A (the scanner) by default, or side B; it sends the words queued with
  :meth:`FakeScanner.send`, answers words as receiver into ``received``, and injects a
  parity error (send with the wrong parity bit), a stall (no ACK, ACK never released,
  REQ never released) and a READY drop.

Nothing here starts a thread; :class:`Cable` has a lock so that two ports in two
threads can share one (the back-to-back test).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from bridge.acrnema.physical import parity_bits
from bridge.ports.ftdi_gpio import CONTROL_BITS, ENABLE_BITS, ENABLED_LINES
from bridge.profile import REFERENCE, Profile

DATA = tuple(f"D{i}" for i in range(16))
BUS = (*DATA, "PARITY", "REQ")  # driven by the bus owner
ANSWER = ("ACK", "PERR")  # driven by the other side
LINES = (*BUS, *ANSWER, "DIR", "READY_A", "READY_B", "BREQ")
OWN = {"a": ("READY_A", "DIR"), "b": ("READY_B", "BREQ")}  # lines only one side drives
# (port, bit) of each line on an FT2232H of ftdi-gpio://
LINE_BIT = {**{f"D{i}": (0, i) for i in range(16)}, **{n: (1, b) for n, b in CONTROL_BITS.items()}}
BIT_LINE = {where: line for line, where in LINE_BIT.items()}
ENABLE_OF = {line: de for de, lines in ENABLED_LINES.items() for line in lines}


class Cable:
    """The link lines between side ``a`` and side ``b``, with a rule check."""

    def __init__(self, profile: Profile = REFERENCE) -> None:
        self.active_low = frozenset(profile.physical.active_low)
        self.lock = threading.RLock()
        self.drivers: dict[str, dict[str, bool]] = {line: {} for line in LINES}
        self.step = 0
        self.listeners: list[Callable[[], None]] = []
        self.violations: list[str] = []
        self.contention: list[tuple[int, str]] = []
        self.drive_log: list[tuple[int, str, str]] = []  # (step, side, line) a drive began

    def level(self, line: str) -> bool:
        """The electrical level (True: + above -); undriven lines read deasserted."""
        with self.lock:
            levels = set(self.drivers[line].values())
            if not levels:
                return line in self.active_low
            return min(levels)  # two drivers at odds: the low one wins (either would do)

    def asserted(self, line: str) -> bool:
        return self.level(line) != (line in self.active_low)

    def driven_by(self, line: str, side: str) -> bool:
        with self.lock:
            return side in self.drivers[line]

    def word(self) -> int:
        return sum(1 << i for i, line in enumerate(DATA) if self.asserted(line))

    def drive(self, side: str, line: str, level: bool | None) -> None:
        """Side ``side`` drives ``line`` at ``level`` (None: stops driving it)."""
        with self.lock:
            drivers = self.drivers[line]
            if level is None:
                drivers.pop(side, None)
                return
            if side not in drivers:
                self.drive_log.append((self.step, side, line))
                self._check(side, line)
                if drivers:
                    self.contention.append((self.step, line))
            drivers[side] = level

    def tick(self) -> None:
        """One step: every listener (a fake scanner) may change its lines."""
        with self.lock:
            self.step += 1
            for listener in self.listeners:
                listener()

    def _check(self, side: str, line: str) -> None:
        peer = "b" if side == "a" else "a"
        where = f"step {self.step}: side {side} drives {line}"
        if line in OWN[peer]:
            self.violations.append(f"{where}: a line of side {peer}")
        if line == f"READY_{side.upper()}":
            return
        peer_ready = f"READY_{peer.upper()}"
        if not (self.asserted(peer_ready) and self.driven_by(peer_ready, peer)):
            self.violations.append(f"{where} before {peer_ready} is asserted")
        dir_by_a = self.driven_by("DIR", "a")
        dir_on, breq_on = self.asserted("DIR"), self.asserted("BREQ")
        owner = {"a": dir_by_a and dir_on, "b": dir_by_a and not dir_on and breq_on}
        if line in BUS and not owner[side]:
            self.violations.append(f"{where} without owning the bus (DIR {dir_on}, BREQ {breq_on})")
        if line in ANSWER and not owner[peer]:
            self.violations.append(f"{where} while side {peer} does not own the bus")


class FtdiPins:
    """One side's FT2232H (two 16-bit MPSSE ports) and transceivers: a ``GpioBus``."""

    def __init__(self, cable: Cable, side: str, *, yield_gil: bool = False) -> None:
        self.cable = cable
        self.side = side
        self.latch = [0, 0]
        self.outputs = [0, 0]
        self.closed = False
        self.reads = 0  # one USB round trip each on the FT2232H (two bulk transfers)
        self.writes = 0  # one bulk transfer each
        self._yield = yield_gil  # let another thread's port run between our calls

    def read(self, port: int) -> int:
        self.reads += 1
        self._call()
        with self.cable.lock:
            return self.levels(port)

    def write(self, port: int, value: int) -> None:
        assert 0 <= value <= 0xFFFF, value
        self.latch[port] = value
        self.writes += 1
        self._update()
        self._call()

    def set_direction(self, port: int, outputs: int) -> None:
        self.outputs[port] = outputs
        self.writes += 1
        self._update()
        self._call()

    def close(self) -> None:
        self.outputs = [0, 0]  # pyftdi's close resets the port: every pin an input
        self._update()
        self.closed = True

    def output(self, port: int, bit: int) -> bool:
        return bool(self.outputs[port] >> bit & 1)

    def pin(self, port: int, bit: int) -> bool:
        """What the FTDI puts on a pin: its latch as an output, its pull-up as an input."""
        return bool(self.latch[port] >> bit & 1) if self.output(port, bit) else True

    def enabled(self, de: str) -> bool:
        """An enable is on when its pin drives high (an input is pulled down: off)."""
        bit = ENABLE_BITS[de]
        return self.output(1, bit) and bool(self.latch[1] >> bit & 1)

    def levels(self, port: int) -> int:
        """The 16 pins of ``port`` as the FTDI reads them."""
        value = 0
        for bit in range(16):
            line = BIT_LINE.get((port, bit))
            if self.output(port, bit):
                high = bool(self.latch[port] >> bit & 1)
            elif line is None:
                high = port == 0 or bit not in ENABLE_BITS.values()  # enables: pull-downs
            elif self.enabled(ENABLE_OF[line]):
                high = True  # our transceiver drives the pair: its receiver is off
            else:
                high = self.cable.level(line)
            value |= high << bit
        return value

    def _update(self) -> None:
        """Drive the cable from the pins, through the transceivers."""
        with self.cable.lock:
            for de, lines in ENABLED_LINES.items():
                on = self.enabled(de) and not self.closed
                for line in lines:
                    port, bit = LINE_BIT[line]
                    if on and not self.output(port, bit):
                        self.cable.violations.append(
                            f"step {self.cable.step}: side {self.side}: {de} on while the "
                            f"FTDI pin of {line} is an input"
                        )
                    self.cable.drive(self.side, line, self.pin(port, bit) if on else None)

    def _call(self) -> None:
        assert not self.closed, "the port used its bus after closing it"
        self.cable.tick()
        if self._yield:
            time.sleep(0)


class FakeScanner:
    """The other side's interface on the cable, one edge per step (module docstring)."""

    def __init__(
        self, cable: Cable, *, role: str = "a", profile: Profile = REFERENCE, ready: bool = True
    ) -> None:
        self.cable = cable
        self.side = role
        self.peer = "b" if role == "a" else "a"
        self.parity = profile.physical.parity
        self.active_low = frozenset(profile.physical.active_low)
        self.ready = ready
        self.queue: deque[tuple[int, int]] = deque()
        self.received: list[tuple[int, int, bool]] = []  # word, parity line, bad parity
        self.sent: list[tuple[int, bool]] = []  # word, PERR seen with its ACK
        self.stall: tuple[str, int] | None = None  # (phase, word index): stop there
        self.drop_ready_after: int | None = None  # words (both ways) before READY drops
        self.hand_over = True  # side A: give the bus on BREQ between words
        self.steps = 0
        self.state = "off"
        self.tx: tuple[int, int] | None = None  # the word being sent, and its parity bit
        self.tx_phase = ""
        self.tx_perr = False
        self.rx: tuple[int, int, bool] | None = None  # the word taken, not yet released
        cable.listeners.append(self.step)

    # -- what a test asks for --------------------------------------------------------

    def send(self, words: Iterable[int], parity: Iterable[int] | None = None) -> None:
        """Queue words; ``parity`` None: the profile's parity (give it to inject errors)."""
        words = list(words)
        bits = parity_bits(words, self.parity).tolist() if parity is None else list(parity)
        self.queue.extend(zip(words, bits, strict=True))

    def set_ready(self, ready: bool) -> None:
        with self.cable.lock:
            self.ready = ready
            if not ready:
                self._release_all()
                self._reset()
                self._set(f"READY_{self.side.upper()}", False)

    def detach(self) -> None:
        with self.cable.lock:
            self.cable.listeners.remove(self.step)

    @property
    def words(self) -> list[int]:
        return [word for word, _, _ in self.received]

    # -- one step ----------------------------------------------------------------------

    def step(self) -> None:
        self.steps += 1
        if not self.ready:
            return
        me, peer = self.side.upper(), self.peer.upper()
        if not self._on(f"READY_{me}"):
            self._set(f"READY_{me}", True)
            return
        if not self.cable.asserted(f"READY_{peer}"):
            if self.state != "off":
                self._release_all()
                self._reset()
            return
        done = len(self.received) + len(self.sent)
        if self.drop_ready_after is not None and done >= self.drop_ready_after:
            self.drop_ready_after = None
            self.set_ready(False)
            return
        if self.side == "a":
            self._step_a()
        else:
            self._step_b()

    def _step_a(self) -> None:
        c = self.cable
        if self.state == "off":  # take the bus: DIR first, the data lines a step later
            self._set("DIR", True)
            self.state = "turn-own"
        elif self.state == "turn-own":
            self._drive_bus()
            self.state = "own"
        elif self.state == "own":
            if self.hand_over and self.tx is None and c.asserted("BREQ"):
                self._release_bus()
                self.state = "turn-give"
            else:
                self._sender()
        elif self.state == "turn-give":
            self._set("DIR", False)
            self.state = "granted"
        elif self.state == "granted":
            if self.rx is None and not c.asserted("BREQ"):
                self._release(ANSWER)
                self._set("DIR", True)
                self.state = "turn-own"
            else:
                self._receiver()

    def _step_b(self) -> None:
        c = self.cable
        dir_on = c.asserted("DIR") and c.driven_by("DIR", "a")
        if self.state == "off":
            self._set("BREQ", False)
            self.state = "idle"
        elif self.state == "idle":
            if dir_on and self.queue and self.rx is None:
                self._set("BREQ", True)
                self.state = "asking"
            elif dir_on:
                self._receiver()
        elif self.state == "asking":
            if not c.asserted("DIR") and self.rx is None:
                self._release(ANSWER)
                self.state = "turn-own"
            else:
                self._receiver()
        elif self.state == "turn-own":
            self._drive_bus()
            self.state = "own"
        elif self.state == "own":
            if self.tx is None and not self.queue:
                self._release_bus()
                self.state = "turn-give"
            else:
                self._sender()
        elif self.state == "turn-give":
            self._set("BREQ", False)
            self.state = "wait-dir"
        elif self.state == "wait-dir" and dir_on:  # ask again only after A took it back
            self.state = "idle"

    # -- the word handshake, one edge a step ------------------------------------------

    def _sender(self) -> None:
        c = self.cable
        index = len(self.sent)
        if self.tx is None:
            if self.queue and not c.asserted("ACK"):
                word, bit = self.tx = self.queue[0]
                for i, line in enumerate(DATA):
                    self._set(line, bool(word >> i & 1))
                self._set("PARITY", bool(bit))
                self.tx_phase = "setup"
        elif self.tx_phase == "setup":
            self._set("REQ", True)
            self.tx_phase = "req"
        elif self.tx_phase == "req" and c.asserted("ACK"):
            self.tx_perr = c.asserted("PERR")
            if self.stall == ("req-release", index):
                self.tx_phase = "stalled"
                return
            self._set("REQ", False)
            self.tx_phase = "release"
        elif self.tx_phase == "release" and not c.asserted("ACK"):
            self.queue.popleft()
            self.sent.append((self.tx[0], self.tx_perr))
            self.tx = None

    def _receiver(self) -> None:
        c = self.cable
        index = len(self.received)
        if self.rx is None:
            if c.asserted("REQ") and self.stall != ("ack", index):
                word, bit = c.word(), int(c.asserted("PARITY"))
                bad = self.parity != "none" and int(parity_bits([word], self.parity)[0]) != bit
                self.rx = (word, bit, bad)
                self._set("ACK", True)
                self._set("PERR", bad)
        elif not c.asserted("REQ") and self.stall != ("ack-release", index):
            self._set("ACK", False)
            self._set("PERR", False)
            self.received.append(self.rx)
            self.rx = None

    # -- lines -------------------------------------------------------------------------

    def _reset(self) -> None:
        self.state = "off"
        self.tx = None
        self.tx_phase = ""
        self.tx_perr = False
        self.rx = None

    def _on(self, line: str) -> bool:
        return self.cable.driven_by(line, self.side) and self.cable.asserted(line)

    def _set(self, line: str, asserted: bool) -> None:
        self.cable.drive(self.side, line, asserted != (line in self.active_low))

    def _release(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.cable.drive(self.side, line, None)

    def _drive_bus(self) -> None:
        for line in BUS:
            self._set(line, False)

    def _release_bus(self) -> None:
        self._release(BUS)

    def _release_all(self) -> None:
        self._release(line for line in LINES if not line.startswith("READY"))

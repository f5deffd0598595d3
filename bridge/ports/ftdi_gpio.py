"""``ftdi-gpio://``: the 50-pin link driven directly from an FT2232H's GPIO pins.

Bring-up only. The host runs the word handshake of docs/link-profile.md, section 1.1
itself, one USB round trip at a time, so this port is slow: use it for line walks,
single words and small transfers, and the interface box for real traffic. The rate,
computed (docs/ftdi-gpio.md, "Rate", has the whole arithmetic):

* a *read* of a port is a USB round trip (pyftdi's ``GpioMpsseController`` sends
  GET_BITS and SEND_IMMEDIATE, then waits for the reply: two bulk transfers), a *write*
  one bulk transfer;
* a word costs the sender 2 reads (ACK up, ACK down) and 2 to 4 writes (data and parity
  when they change, REQ up, REQ down), the receiver 3 reads (REQ up, the data, REQ down;
  4 when the sender is slow) and 2 writes (ACK up, ACK down): 6 to 10 transfers;
* the FT2232H is a high-speed USB device (125 us microframes): at one transfer per
  microframe that is 0.75 to 1.25 ms a word, **at most 800 to 1,300 words/s**; from
  Python through libusb a write takes 0.125 to 0.5 ms and a read 0.25 to 1 ms, so 0.75
  to 5 ms a word: **about 200 to 1,000 words/s (0.4 to 2 KB/s)**;
* a 512 x 512 x 16-bit CT slice (262,144 words, 512 KiB) takes 4.4 to 22 minutes (3.3 at
  the ceiling); through the interface box, at the 8 MB/s design rate, 65 ms.

URL: ``ftdi-gpio://DEVICE[/1]?role=a|b&profile=FILE``, DEVICE being a pyftdi device
selector (``ftdi:2232h``, ``ftdi:2232h:FT1234AB``, ``ftdi://ftdi:2232h/1`` is then
``ftdi-gpio://ftdi:2232h/1``). Interface 1 (port A, ADBUS+ACBUS) carries D0-D15 and
interface 2 (port B, BDBUS+BCBUS) the other link lines and the transceiver enables:

==========  ======  ==============================================================
FTDI pin    bit     signal
==========  ======  ==============================================================
ADBUS0-7    A0-7    D0-D7
ACBUS0-7    A8-15   D8-D15
BDBUS0      B0      PARITY
BDBUS1      B1      REQ
BDBUS2      B2      ACK
BDBUS3      B3      DIR
BDBUS4      B4      READY_A
BDBUS5      B5      READY_B
BDBUS6      B6      PERR
BDBUS7      B7      BREQ
BCBUS0      B8      DE_BUS: drive D0-D15, PARITY, REQ (this side owns the bus)
BCBUS1      B9      DE_ACK: drive ACK, PERR (the other side owns the bus)
BCBUS2      B10     DE_READY_A: drive READY_A (role a)
BCBUS3      B11     DE_READY_B: drive READY_B (role b)
BCBUS4      B12     DE_DIR: drive DIR (role a)
BCBUS5      B13     DE_BREQ: drive BREQ (role b)
BCBUS6-7    B14-15  unused (inputs)
==========  ======  ==============================================================

Each line goes through an external EIA-485 transceiver whose DE and /RE are tied
together to the enable named above (high: drive the pair from the FTDI pin; low:
receive the pair onto it); the board is the same for both roles. A line is asserted
(and a data bit is 1) when its FTDI pin is high, except for the lines the profile lists
in ``physical.active_low``. Role ``a`` is the initiator (normally the scanner), role
``b`` (the default) the responder (normally the bridge).

Bus direction (docs/link-profile.md, section 1.2): the port opens with every pin an
input except its own READY (asserted) and the six enables (off); nothing else is
driven until the other side's READY has been seen. Then side A drives DIR, asserted,
and owns the bus; side B asks for it with BREQ only while it sees DIR asserted, and owns
it when DIR then drops. A bus owner drives D0-D15, PARITY and REQ (``turnaround_ns``
after the direction changed), the other side ACK and PERR (from the first REQ it
answers, so that the two never drive them at once); a driver group is switched on pins
first, enable second, and off enable first, pins second.

:meth:`FtdiGpioPort.send` and :meth:`FtdiGpioPort.recv` keep the rules of
:mod:`bridge.ports.base`. A handshake timeout (an edge not answered within
``handshake_timeout_ms``) is *reported*, as the profile says: logged, counted in
``stats["handshake_timeouts"]`` and kept in ``errors`` as a :class:`HandshakeTimeout`
naming the word index and the phase; the rest of the buffer being sent is dropped and
the data link's retransmission recovers the frame. The bring-up calls
:meth:`~FtdiGpioPort.write_word` and :meth:`~FtdiGpioPort.read_word` raise it instead.
The port only sees the lines while one of its methods runs: a READY drop that is over
between two calls goes unseen (the profile's link reset holds READY down for a second).
"""

from __future__ import annotations

import collections
import enum
import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from bridge.acrnema.physical import WordBuffer, parity_bits
from bridge.acrnema.table import Rule, Table
from bridge.errors import ConfigError, HandshakeTimeout
from bridge.ports._buffers import WordQueue, as_buffer
from bridge.ports._url import parse_url
from bridge.ports.base import MAX_RECV_WORDS, LinkLost, PortError, PortUnavailableError, WordPort
from bridge.profile import REFERENCE, Profile, load_profile

__all__ = [
    "BUS_TABLES",
    "CONTROL_BITS",
    "CONTROL_PORT",
    "DATA_PORT",
    "ENABLED_LINES",
    "ENABLE_BITS",
    "PHASES",
    "RATE_NOTE",
    "BusAction",
    "BusInput",
    "BusState",
    "FtdiGpioPort",
    "GpioBus",
    "HandshakeTimeout",
    "PyftdiBus",
    "line_walk",
    "open_ftdi_gpio",
]

log = logging.getLogger(__name__)

RATE_NOTE = (
    "ftdi-gpio:// is for bring-up (line walks, single words, small transfers): the host "
    "runs every handshake phase as a USB round trip, about 200 to 1,000 words/s (0.4 to "
    "2 KB/s; at most about 1,300), so a 512 KiB CT slice takes 4 to 22 minutes "
    "(docs/ftdi-gpio.md)."
)
"""One sentence on what ``ftdi-gpio://`` is for and how fast it is, for ``--help``."""

DATA_PORT = 0  # FT2232H interface 1 (A): ADBUS0-7 = D0-D7, ACBUS0-7 = D8-D15
CONTROL_PORT = 1  # FT2232H interface 2 (B): the other link lines and the enables

CONTROL_BITS: Mapping[str, int] = {
    "PARITY": 0,
    "REQ": 1,
    "ACK": 2,
    "DIR": 3,
    "READY_A": 4,
    "READY_B": 5,
    "PERR": 6,
    "BREQ": 7,
}
"""Port B bit (BDBUS0-7) of each link line other than D0-D15."""

ENABLE_BITS: Mapping[str, int] = {
    "DE_BUS": 8,
    "DE_ACK": 9,
    "DE_READY_A": 10,
    "DE_READY_B": 11,
    "DE_DIR": 12,
    "DE_BREQ": 13,
}
"""Port B bit (BCBUS0-5) of each transceiver enable (DE and /RE tied; high = drive)."""

ENABLED_LINES: Mapping[str, tuple[str, ...]] = {
    "DE_BUS": (*(f"D{i}" for i in range(16)), "PARITY", "REQ"),
    "DE_ACK": ("ACK", "PERR"),
    "DE_READY_A": ("READY_A",),
    "DE_READY_B": ("READY_B",),
    "DE_DIR": ("DIR",),
    "DE_BREQ": ("BREQ",),
}
"""The lines whose transceivers each enable switches to driving."""

PHASES: Mapping[str, str] = HandshakeTimeout.PHASES
"""What the port waited for in each phase a :class:`HandshakeTimeout` names."""

_ALL = 0xFFFF
_ENABLES = sum(1 << bit for bit in ENABLE_BITS.values())
_LINKS = 0xFF  # port B bits that are link lines (active_low applies to them)
_ERRORS_KEPT = 32
_SPIN_NS = 200_000  # waits up to this are busy waits; longer ones sleep


class GpioBus(Protocol):
    """The controller boundary: two 16-bit GPIO ports of an FT2232H in MPSSE mode.

    Values are pin levels (bit n = pin n high). Pins set as inputs are high impedance;
    a write changes the output latch, which input pins take when they become outputs.
    A bus may raise :class:`~bridge.ports.base.LinkLost` when the device is lost.
    """

    def read(self, port: int) -> int:
        """The levels of all 16 pins of ``port`` (one USB round trip)."""
        ...

    def write(self, port: int, value: int) -> None:
        """Set the output latch of ``port``; output pins follow (one USB write)."""
        ...

    def set_direction(self, port: int, outputs: int) -> None:
        """Make the pins in the mask ``outputs`` outputs (driving the latch), the rest
        inputs."""
        ...

    def close(self) -> None:
        """Release the device (every pin an input); idempotent."""
        ...


def _pyftdi() -> tuple[ModuleType, tuple[type[BaseException], ...]]:
    """pyftdi's gpio module and the exceptions that mean "the device failed"."""
    try:
        gpio = importlib.import_module("pyftdi.gpio")
        usbtools = importlib.import_module("pyftdi.usbtools")
    except ImportError as exc:
        raise PortUnavailableError(
            "ftdi-gpio:// ports need pyftdi: pip install acrnema-bridge[ftdi]"
        ) from exc
    return gpio, (OSError, ValueError, usbtools.UsbToolsError)


class PyftdiBus:
    """:class:`GpioBus` over two pyftdi ``GpioMpsseController`` (interfaces 1 and 2)."""

    def __init__(self, device: str, *, frequency: float = 1e6) -> None:
        gpio, self._failures = _pyftdi()
        self.device = device
        self._latch = [0, 0]
        self._controllers: list[Any] = []
        try:
            for interface in (1, 2):
                controller = gpio.GpioMpsseController()
                self._controllers.append(controller)
                url = f"ftdi://{device}/{interface}"
                controller.configure(url, direction=0, initial=0, frequency=frequency)
                if controller.width != 16:
                    raise PortError(
                        f"{url}: a {controller.width}-bit port; ftdi-gpio:// needs an "
                        "FT2232H (two 16-bit MPSSE ports)"
                    )
        except self._failures as exc:
            self.close()
            raise PortError(
                f"ftdi://{device}: cannot open both MPSSE ports of an FT2232H: {exc}"
            ) from exc
        except PortError:
            self.close()
            raise

    def read(self, port: int) -> int:
        try:
            return int(self._controllers[port].read(1)[0])
        except self._failures as exc:
            raise LinkLost(f"ftdi://{self.device}: the device was lost: {exc}") from exc

    def write(self, port: int, value: int) -> None:
        self._latch[port] = value
        try:
            self._controllers[port].write(value)
        except self._failures as exc:
            raise LinkLost(f"ftdi://{self.device}: the device was lost: {exc}") from exc

    def set_direction(self, port: int, outputs: int) -> None:
        controller = self._controllers[port]
        try:
            controller.set_direction(_ALL, outputs)
            controller.write(self._latch[port])  # MPSSE applies direction with SET_BITS
        except self._failures as exc:
            raise LinkLost(f"ftdi://{self.device}: the device was lost: {exc}") from exc

    def close(self) -> None:
        controllers, self._controllers = self._controllers, []
        for controller in controllers:
            try:
                controller.close()  # resets the port: every pin an input
            except self._failures as exc:
                log.debug("ftdi://%s: close: %s", self.device, exc)


def line_walk(parity: str = "odd") -> WordBuffer:
    """A walking one then a walking zero over D0-D15 (32 words), with their parity."""
    ones = np.array([1 << i for i in range(16)], dtype=np.uint16)
    words = np.concatenate([ones, ~ones]).astype(np.uint16)
    return WordBuffer(words, parity_bits(words, parity))


class BusState(enum.Enum):
    """Who has the data bus, as this side drives its lines (docs/link-profile.md, 1.2)."""

    OFF = "off"  # every driver off but READY: the link is down or not found yet
    IDLE = "idle"  # B: the bus is A's, no word coming
    OWNER = "owner"  # this side drives D0-D15, PARITY and REQ
    RECEIVER = "receiver"  # the other side owns the bus: this side answers (ACK, PERR)


class BusInput(enum.Enum):
    PEER_FOUND = "both READY"
    BREQ = "BREQ asserted"  # A: B asks for the bus
    NO_BREQ = "BREQ released"
    DIR = "DIR asserted"  # B: A owns the bus
    NO_DIR = "DIR dropped"
    GRANTED = "DIR dropped after our BREQ"  # B: the bus is ours
    SENT = "words sent"  # B: give the bus back
    LINK_DOWN = "a READY dropped"
    DEVICE_LOST = "device lost"


class BusAction(enum.Enum):
    ESTABLISH = enum.auto()  # drive DIR (A, asserted) or BREQ (B, not)
    HAND_OVER = enum.auto()  # A: data lines off, DIR dropped
    TAKE_BACK = enum.auto()  # A: stop answering, DIR up, drive the data lines
    TAKE_BUS = enum.auto()  # B: stop answering, drive the data lines
    GIVE_BACK = enum.auto()  # B: data lines off (if owner), BREQ dropped
    STOP_ANSWERING = enum.auto()  # ACK and PERR off
    ALL_OFF = enum.auto()
    FORGET = enum.auto()  # the device is gone: no pin can be driven
    NONE = enum.auto()  # nothing to drive


def _bus_rules(role: str) -> dict[tuple[BusState, BusInput], Rule[BusState, BusAction]]:
    S, I, A = BusState, BusInput, BusAction  # noqa: E741
    rules: dict[tuple[BusState, BusInput], Rule[BusState, BusAction]] = {}
    if role == "a":
        rules.update(
            {
                (S.OFF, I.PEER_FOUND): Rule(A.ESTABLISH, S.OWNER, "drive DIR and the data lines"),
                (S.OWNER, I.BREQ): Rule(A.HAND_OVER, S.RECEIVER, "data lines off, drop DIR"),
                (S.OWNER, I.NO_BREQ): Rule(A.NONE, S.OWNER, "keep the bus"),
                (S.RECEIVER, I.BREQ): Rule(A.NONE, S.RECEIVER, "answer words"),
                (S.RECEIVER, I.NO_BREQ): Rule(
                    A.TAKE_BACK, S.OWNER, "ACK and PERR off, DIR up, drive the data lines"
                ),
            }
        )
    else:
        rules.update(
            {
                (S.OFF, I.PEER_FOUND): Rule(A.ESTABLISH, S.IDLE, "drive BREQ (not asserted)"),
                (S.IDLE, I.DIR): Rule(A.NONE, S.RECEIVER, "answer words"),
                (S.IDLE, I.NO_DIR): Rule(A.NONE, S.IDLE, "wait"),
                (S.RECEIVER, I.DIR): Rule(A.NONE, S.RECEIVER, "answer words"),
                (S.RECEIVER, I.NO_DIR): Rule(A.STOP_ANSWERING, S.IDLE, "ACK and PERR off"),
                (S.OWNER, I.DIR): Rule(A.NONE, S.OWNER, "keep the bus"),
                (S.OWNER, I.NO_DIR): Rule(A.NONE, S.OWNER, "keep the bus"),
                (S.OWNER, I.SENT): Rule(A.GIVE_BACK, S.IDLE, "data lines off, drop BREQ"),
            }
        )
        for state in (S.IDLE, S.RECEIVER):
            rules[state, I.GRANTED] = Rule(
                A.TAKE_BUS, S.OWNER, "ACK and PERR off, drive the data lines"
            )
            rules[state, I.SENT] = Rule(A.GIVE_BACK, state, "drop BREQ")
    has = {state for state, _ in rules}
    for state in [s for s in S if s in has]:  # the states this side has (A is never IDLE)
        rules[state, I.LINK_DOWN] = Rule(A.ALL_OFF, S.OFF, "every driver off but READY")
        rules[state, I.DEVICE_LOST] = Rule(A.FORGET, S.OFF, "forget the bus")
    return rules


def _bus_error(reason: str, remote: bool) -> PortError:
    return PortError(reason)


BUS_TABLES: dict[str, Table[BusState, BusInput, BusAction]] = {
    role: Table(
        f"bus, side {role}",
        BusState,
        BusInput,
        _bus_rules(role),
        _bus_error,
        reason="{where}: bus: {input} while {state}",
    )
    for role in ("a", "b")
}
"""Bus direction (docs/link-profile.md, section 1.2) for each side, as state tables of
the one idiom (:mod:`bridge.acrnema.table`). The port samples the lines and gives the
input its state asks about: in OFF only whether both READY lines are up, then A follows
BREQ and B follows DIR; B's own turn (BREQ, the grant, giving the bus back) comes from
:meth:`FtdiGpioPort.send`. A pair left out cannot arise (were one looked up, it would be
a :class:`~bridge.errors.PortError`)."""


class FtdiGpioPort(WordPort):
    """One end of the link on an FT2232H's GPIO pins, the handshake run by the host."""

    def __init__(
        self,
        bus: GpioBus,
        *,
        profile: Profile = REFERENCE,
        role: str = "b",
        url: str = "ftdi-gpio://",
    ) -> None:
        if role not in ("a", "b"):
            raise PortError(f"{url}: role a or b, got {role!r}")
        ph = profile.physical
        self.url = url
        self.role = role
        self.profile = profile
        self._bus = bus
        self._parity = ph.parity
        self._timeout_ms = ph.handshake_timeout_ms
        self._timeout_ns = int(ph.handshake_timeout_ms * 1e6)
        self._setup_ns, self._hold_ns, self._turn_ns = ph.setup_ns, ph.hold_ns, ph.turnaround_ns
        self._invert = (
            sum(1 << i for i in range(16) if f"D{i}" in ph.active_low),
            sum(1 << b for name, b in CONTROL_BITS.items() if name in ph.active_low),
        )
        me, peer = ("A", "B") if role == "a" else ("B", "A")
        self._ready_bit = 1 << CONTROL_BITS[f"READY_{me}"]
        self._peer_ready_bit = 1 << CONTROL_BITS[f"READY_{peer}"]
        self._arb = 1 << CONTROL_BITS["DIR" if role == "a" else "BREQ"]
        self._de_ready = 1 << ENABLE_BITS[f"DE_READY_{me}"]
        self._de_arb = 1 << ENABLE_BITS["DE_DIR" if role == "a" else "DE_BREQ"]
        self._req, self._ack = 1 << CONTROL_BITS["REQ"], 1 << CONTROL_BITS["ACK"]
        self._perr, self._par = 1 << CONTROL_BITS["PERR"], 1 << CONTROL_BITS["PARITY"]
        self._dir, self._breq = 1 << CONTROL_BITS["DIR"], 1 << CONTROL_BITS["BREQ"]
        self._de_bus, self._de_ack = 1 << ENABLE_BITS["DE_BUS"], 1 << ENABLE_BITS["DE_ACK"]
        # logical output latches (1 = asserted / data bit 1) and direction masks
        self._out = [0, 0]
        self._outputs = [0, 0]
        self._last_b = 0  # the last sample of port B, logical
        self._stuck_req = False  # REQ not released after our ACK: wait for it to drop
        self._state = BusState.OFF
        self._bus_table = BUS_TABLES[role]
        self._ready = False
        self._peer_up = False
        self._unreported_drop = False
        self._closed = False
        self._closing = False
        self._gone: LinkLost | None = None
        self._rx = WordQueue()
        self._lock = threading.RLock()
        self.errors: collections.deque[HandshakeTimeout] = collections.deque(maxlen=_ERRORS_KEPT)
        """The last handshake timeouts, oldest first."""
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "words_sent",
                "words_received",
                "parity_errors_received",  # words taken with bad parity (we drove PERR)
                "parity_errors_reported",  # words sent that the peer flagged with PERR
                "handshake_timeouts",
                "bus_turns",  # times this side took the bus
                "samples",  # reads of port B
            ),
            0,
        )
        try:
            self._power_up()
        except BaseException:
            bus.close()
            raise
        log.info("%s: open as side %s", self.url, me)

    # -- WordPort ------------------------------------------------------------------

    @property
    def peer_ready(self) -> bool:
        return self._peer_up and not self._closed

    def send(self, buffer: WordBuffer) -> None:
        buffer = as_buffer(buffer)
        with self._lock:
            self._check()
            if not len(buffer.words):
                return
            try:
                self._send_words(buffer)
            except HandshakeTimeout as exc:
                self._report(exc)
            self._release_bus()

    def recv(self, timeout: float) -> WordBuffer:
        deadline = time.monotonic_ns() + int(max(0.0, timeout) * 1e9)
        with self._lock:
            self._check()
            while len(self._rx) < MAX_RECV_WORDS:
                try:
                    took = self._poll_once()
                except HandshakeTimeout as exc:
                    self._report(exc)
                    took = True
                if time.monotonic_ns() >= deadline or (not took and len(self._rx)):
                    break
            return self._rx.take(MAX_RECV_WORDS)

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            self._check_open()
            if ready == self._ready:
                return
            if ready:
                self._ready = True
                self._write_b(self._out[1] | self._ready_bit)
            else:
                self._step(BusInput.LINK_DOWN)
                self._ready = False
                self._write_b(self._out[1] & ~self._ready_bit)
                self._rx.clear()
            log.debug("%s: READY %s", self.url, "asserted" if ready else "dropped")

    def wait_peer(self, timeout: float) -> bool:
        deadline = time.monotonic_ns() + int(max(0.0, timeout) * 1e9)
        with self._lock:
            self._check_open()
            if self._gone is not None:
                raise PortError(f"{self.url}: {self._gone}; close and reopen the port")
            while True:
                try:
                    self._sample(strict=False)
                except LinkLost as exc:
                    raise PortError(f"{self.url}: {exc}; close and reopen the port") from exc
                if self._peer_up:
                    self._unreported_drop = False
                    if self._ready and self._state is BusState.OFF:
                        self._step(BusInput.PEER_FOUND)
                    return True
                if time.monotonic_ns() >= deadline:
                    return False

    def close(self) -> None:
        self._closing = True  # a call polling in another thread stops at its next sample
        with self._lock:
            if self._closed:
                return
            try:
                if self._gone is None:
                    self._step(BusInput.LINK_DOWN)
                    self._write_b(self._out[1] & ~self._ready_bit)
                    self._set_outputs(1, 0)
            except LinkLost as exc:
                log.debug("%s: close: %s", self.url, exc)
            finally:
                self._closed = True
                self._peer_up = False
                self._bus.close()
            log.info("%s: closed", self.url)

    # -- bring-up ------------------------------------------------------------------

    def write_word(self, word: int, parity: int | None = None) -> bool:
        """Send one word (``parity`` None: the profile's parity of ``word``); True when the
        peer flagged it with PERR. Raises :class:`HandshakeTimeout` and
        :class:`~bridge.ports.base.LinkLost`."""
        bit = int(parity_bits([word], self._parity)[0]) if parity is None else parity
        buffer = WordBuffer(np.array([word], np.uint16), np.array([bit], np.uint8))
        with self._lock:
            self._check()
            flagged = self.stats["parity_errors_reported"]
            try:
                self._send_words(buffer)
            finally:
                self._release_bus()
            return self.stats["parity_errors_reported"] > flagged

    def read_word(self, timeout: float) -> tuple[int, int] | None:
        """The next word and its parity line, or None when none came within ``timeout``.
        Raises :class:`HandshakeTimeout` (the word is then still returned by the next
        call) and :class:`~bridge.ports.base.LinkLost`."""
        deadline = time.monotonic_ns() + int(max(0.0, timeout) * 1e9)
        with self._lock:
            self._check()
            while not len(self._rx):
                if not self._poll_once() and time.monotonic_ns() >= deadline:
                    return None
            buffer = self._rx.take(1)
            return int(buffer.words[0]), int(buffer.parity[0])

    def lines(self) -> dict[str, bool]:
        """Every line as this side sees it now (asserted / data bit 1), and the enables."""
        with self._lock:
            self._check_open()
            data = self._read(DATA_PORT)
            b = self._sample(strict=False)
            seen = {f"D{i}": bool(data >> i & 1) for i in range(16)}
            seen.update({name: bool(b >> bit & 1) for name, bit in CONTROL_BITS.items()})
            seen.update({name: bool(b >> bit & 1) for name, bit in ENABLE_BITS.items()})
            return seen

    # -- pins ----------------------------------------------------------------------

    def _read(self, port: int) -> int:
        if self._closing:
            raise PortError(f"{self.url}: closed")
        return self._bus.read(port) ^ self._invert[port]

    def _write(self, port: int, value: int) -> None:
        if value != self._out[port]:
            self._out[port] = value
            self._bus.write(port, value ^ self._invert[port])

    def _write_b(self, value: int) -> None:
        self._write(CONTROL_PORT, value)

    def _set_outputs(self, port: int, mask: int) -> None:
        if mask != self._outputs[port]:
            self._outputs[port] = mask
            self._bus.set_direction(port, mask)

    def _drive(self, lines: int, enable: int, value: int) -> None:
        """Start driving port B ``lines`` (with ``value``) and the transceivers of
        ``enable``: latch, then pins, then enable."""
        self._write_b(self._out[1] & ~lines | value & lines)
        self._set_outputs(CONTROL_PORT, self._outputs[1] | lines)
        self._write_b(self._out[1] | enable)

    def _undrive(self, lines: int, enable: int) -> None:
        """Stop driving: enable off, lines deasserted, then the pins inputs."""
        self._write_b(self._out[1] & ~enable & ~lines)
        self._set_outputs(CONTROL_PORT, self._outputs[1] & ~lines)

    def _power_up(self) -> None:
        """Every pin an input but the enables (off) and our READY (asserted)."""
        self._bus.set_direction(DATA_PORT, 0)
        self._bus.set_direction(CONTROL_PORT, 0)
        self._bus.write(DATA_PORT, self._invert[0])
        self._bus.write(CONTROL_PORT, self._invert[1])  # everything deasserted
        self._set_outputs(CONTROL_PORT, _ENABLES)
        self._ready = True
        self._drive(self._ready_bit, self._de_ready, self._ready_bit)
        self._sample(strict=False)
        self._unreported_drop = False

    # -- the bus state ---------------------------------------------------------------

    def _sample(self, strict: bool = True) -> int:
        """Read port B; notice the peer's READY coming and going. A drop turns every
        driver off and (``strict``) raises LinkLost, once."""
        try:
            b = self._read(CONTROL_PORT)
        except LinkLost as exc:
            self._lost_device(exc)
            raise
        self.stats["samples"] += 1
        self._last_b = b
        up = bool(b & self._peer_ready_bit)
        if up != self._peer_up:
            self._peer_up = up
            log.info("%s: the peer %s", self.url, "is READY" if up else "dropped READY")
            if not up:
                self._step(BusInput.LINK_DOWN)
                self._rx.clear()
                self._unreported_drop = True
        if strict and not up:
            self._check()
        return b

    def _lost_device(self, exc: LinkLost) -> None:
        self._gone = exc
        self._peer_up = False
        self._step(BusInput.DEVICE_LOST)
        self._rx.clear()

    def _step(self, cause: BusInput) -> None:
        """Take the rule of this side's :data:`BUS_TABLES` table for ``cause``: drive
        the lines its action says (the next state is set first; ``ALL_OFF`` looks at the
        state it leaves)."""
        rule = self._bus_table.rule(self._state, cause, where=self.url)
        old, self._state = self._state, rule.next_state
        action = rule.action
        A = BusAction
        if action is A.ALL_OFF:  # every driver off but READY: what a side does when down
            if old is BusState.OWNER:
                self._release_data()
            self._undrive(self._ack | self._perr, self._de_ack)
            self._undrive(self._arb, self._de_arb)
        elif action is A.ESTABLISH:  # both READY: drive DIR (A, asserted) or BREQ (B, not)
            if self.role == "a":
                self._drive(self._arb, self._de_arb, self._arb)
                self._take_data()
            else:
                self._drive(self._arb, self._de_arb, 0)
            if self.role == "b":
                self._arbitrate(self._sample())
            log.debug("%s: bus established, %s", self.url, self._state.value)
        elif action is A.HAND_OVER:
            self._release_data()
            self._write_b(self._out[1] & ~self._dir)
        elif action is A.TAKE_BACK:
            self._undrive(self._ack | self._perr, self._de_ack)
            self._write_b(self._out[1] | self._dir)
            self._take_data()
        elif action is A.TAKE_BUS:
            self._undrive(self._ack | self._perr, self._de_ack)
            self._take_data()
        elif action is A.GIVE_BACK:
            if old is BusState.OWNER:
                self._release_data()
            self._write_b(self._out[1] & ~self._breq)
        elif action is A.STOP_ANSWERING:
            self._undrive(self._ack | self._perr, self._de_ack)

    def _take_data(self) -> None:
        """Drive D0-D15, PARITY and REQ (deasserted), ``turnaround_ns`` after the turn."""
        self._pause(self._turn_ns)
        self._write(DATA_PORT, 0)
        self._set_outputs(DATA_PORT, _ALL)
        self._drive(self._req | self._par, self._de_bus, self._parity_of(0) * self._par)
        self.stats["bus_turns"] += 1

    def _release_data(self) -> None:
        self._write_b(self._out[1] & ~self._de_bus)
        self._set_outputs(DATA_PORT, 0)
        self._undrive(self._req | self._par, 0)

    def _arbitrate(self, b: int) -> None:
        """Follow DIR and BREQ (docs/link-profile.md, section 1.2), between words: the
        input the state asks about, sampled in ``b``."""
        if self._state is BusState.OFF:
            if self._ready and self._peer_up:
                self._step(BusInput.PEER_FOUND)
        elif self.role == "a":
            self._step(BusInput.BREQ if b & self._breq else BusInput.NO_BREQ)
        else:
            self._step(BusInput.DIR if b & self._dir else BusInput.NO_DIR)

    def _acquire_bus(self, count: int) -> None:
        """Own the bus, receiving what the peer sends meanwhile."""
        if self._state is BusState.OFF:
            self._arbitrate(self._sample())
        if self.role == "a":  # wait for B to give the bus back
            self._wait_bus(lambda b: not b & self._breq, "bus-return", count)
            self._arbitrate(self._last_b)
            return
        if self._state is BusState.OWNER:
            return
        self._wait_bus(lambda b: bool(b & self._dir), "dir", count)
        self._write_b(self._out[1] | self._breq)
        self._wait_bus(lambda b: not b & self._dir, "grant", count)
        self._step(BusInput.GRANTED)

    def _wait_bus(self, done: Callable[[int], bool], phase: str, count: int) -> None:
        """Until ``done(port B)``, taking the words that come; the clock restarts with
        each word."""
        start = time.monotonic_ns()
        while not done(b := self._sample()):
            if self._offered(b):
                self._receive_word(b)
                start = time.monotonic_ns()
            elif time.monotonic_ns() - start > self._timeout_ns:
                raise HandshakeTimeout(self.url, True, 0, count, phase, self._timeout_ms)
            else:
                self._arbitrate(b)

    def _release_bus(self) -> None:
        """After sending: B gives the bus back; A hands it over if B asks."""
        if self._gone is not None or self._state is BusState.OFF:
            return
        if self.role == "b":
            self._step(BusInput.SENT)
        self._arbitrate(self._sample())

    # -- the word handshake (docs/link-profile.md, section 1.1) --------------------

    def _send_words(self, buffer: WordBuffer) -> None:
        count = len(buffer.words)
        self._acquire_bus(count)
        pairs = zip(buffer.words.tolist(), buffer.parity.tolist(), strict=True)
        for index, (word, bit) in enumerate(pairs):
            if self._last_b & self._ack:
                self._wait(self._ack, False, True, index, count, "ack-idle")
            self._write(DATA_PORT, word)
            par = self._par if bit else 0
            self._write_b(self._out[1] & ~self._par | par)
            self._pause(self._setup_ns)
            self._write_b(self._out[1] | self._req)
            b = self._wait(self._ack, True, True, index, count, "ack")
            if b & self._perr:
                self.stats["parity_errors_reported"] += 1
                log.debug("%s: the peer flagged word %d of %d with PERR", self.url, index, count)
            self._pause(self._hold_ns)
            self._write_b(self._out[1] & ~self._req)
            self.stats["words_sent"] += 1
            self._wait(self._ack, False, True, index, count, "ack-release")

    def _poll_once(self) -> bool:
        """One look at the bus: follow the direction; take a word if one is offered."""
        b = self._sample()
        self._arbitrate(b)
        if self._offered(b):
            self._receive_word(b)
            return True
        return False

    def _offered(self, b: int) -> bool:
        """Whether the peer offers a word: REQ asserted, and seen deasserted since the
        last word whose REQ was not released (a stuck REQ is not a stream of words)."""
        if not b & self._req:
            self._stuck_req = False
            return False
        return self._state is BusState.RECEIVER and not self._stuck_req

    def _receive_word(self, b: int) -> None:
        word = self._read(DATA_PORT)
        bit = 1 if b & self._par else 0
        bad = self._parity != "none" and int(parity_bits([word], self._parity)[0]) != bit
        index = self.stats["words_received"]
        answer = self._ack | (self._perr if bad else 0)
        if self._outputs[1] & self._ack:
            self._write_b(self._out[1] | answer)
        else:  # the first word since the bus turned: the peer has stopped driving ACK
            self._drive(self._ack | self._perr, self._de_ack, answer)
        self._rx.put(WordBuffer(np.array([word], np.uint16), np.array([bit], np.uint8)))
        self.stats["words_received"] += 1
        if bad:
            self.stats["parity_errors_received"] += 1
            log.debug("%s: word %d came with bad parity: PERR", self.url, index)
        try:
            self._wait(self._req, False, False, index, None, "req-release")
        except HandshakeTimeout:
            self._stuck_req = True
            raise
        finally:
            if self._state is BusState.RECEIVER:
                self._write_b(self._out[1] & ~self._ack & ~self._perr)

    def _wait(
        self, line: int, level: bool, sending: bool, index: int, count: int | None, phase: str
    ) -> int:
        """Sample port B until ``line`` is at ``level``; a timeout returns the handshake
        lines to idle and raises :class:`HandshakeTimeout`."""
        deadline = time.monotonic_ns() + self._timeout_ns
        while bool((b := self._sample()) & line) != level:
            if time.monotonic_ns() > deadline:
                idle = self._req if sending else self._ack | self._perr
                self._write_b(self._out[1] & ~idle)
                raise HandshakeTimeout(self.url, sending, index, count, phase, self._timeout_ms)
        return b

    # -- helpers -------------------------------------------------------------------

    def _parity_of(self, word: int) -> int:
        return int(parity_bits([word], self._parity)[0])

    @staticmethod
    def _pause(ns: int) -> None:
        end = time.perf_counter_ns() + ns
        if ns > _SPIN_NS:
            time.sleep(ns / 1e9)
        while time.perf_counter_ns() < end:
            pass

    def _report(self, exc: HandshakeTimeout) -> None:
        self.stats["handshake_timeouts"] += 1
        self.errors.append(exc)
        log.warning("%s", exc)

    def _check_open(self) -> None:
        if self._closed:
            raise PortError(f"{self.url}: closed")

    def _check(self) -> None:
        """LinkLost unless both READY lines are up; a drop is told once."""
        self._check_open()
        if self._gone is not None:
            raise LinkLost(f"{self.url}: {self._gone}")
        if self._unreported_drop:
            self._unreported_drop = False
            raise LinkLost(f"{self.url}: the peer dropped READY")
        if not self._ready:
            raise LinkLost(f"{self.url}: this side's READY is dropped")
        if not self._peer_up:
            raise LinkLost(f"{self.url}: the peer is not READY")


def _role(text: str) -> str:
    role = text.lower()
    if role not in ("a", "b"):
        raise ValueError("a (initiator, the scanner's side) or b (responder, the bridge's)")
    return role


def open_ftdi_gpio(
    url: str, *, profile: Profile | None = None, bus: GpioBus | None = None
) -> FtdiGpioPort:
    """Open ``ftdi-gpio://DEVICE[/1]?role=a|b&profile=FILE`` (module docstring).

    The link profile is ``?profile=FILE`` if given, else ``profile``, else the reference.
    ``bus`` replaces the FT2232H (tests: a fake device at the controller boundary).
    """
    parts = parse_url(url, "ftdi-gpio", {"role": _role, "profile": str})
    device, slash, interface = parts.location.rpartition("/")
    if not slash:
        device, interface = parts.location, ""
    if interface not in ("", "1"):
        raise PortError(
            f"{url}: give the device's interface 1 (or none): interface 1 (A) carries "
            "D0-D15 and interface 2 (B) the other lines"
        )
    if "profile" in parts.options:
        try:
            profile = load_profile(Path(parts.options["profile"]))
        except ConfigError as exc:
            raise PortError(f"{url}: {exc}") from exc
    if bus is None:
        bus = PyftdiBus(device or "ftdi:2232h")
    return FtdiGpioPort(
        bus, profile=profile or REFERENCE, role=parts.options.get("role", "b"), url=url
    )

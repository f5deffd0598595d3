"""``ftdi-gpio://``: the host-run handshake against a fake device at the controller boundary.

The port talks to a :class:`~bridge.ports.ftdi_gpio.GpioBus`; here that is
:class:`ftdi_fake.FtdiPins` on a :class:`ftdi_fake.Cable` whose other end is a
:class:`ftdi_fake.FakeScanner` (or a second port, back to back). Every rig checks at
the end that no line was driven against the rules of docs/link-profile.md, section 1.2,
and that the two sides never drove a line at once. The pyftdi adapter is tested against
a stub controller, and, when pyftdi's git-only virtual USB backend is available
(``BRIDGE_PYFTDI_TESTS``), against a virtual FT2232H.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from ftdi_fake import BUS, Cable, FakeScanner, FtdiPins

from bridge.acrnema.physical import WordBuffer, parity_bits
from bridge.ports import ftdi_gpio
from bridge.ports.base import LinkLost, PortError, PortUnavailableError
from bridge.ports.ftdi_gpio import (
    PHASES,
    RATE_NOTE,
    FtdiGpioPort,
    HandshakeTimeout,
    PyftdiBus,
    line_walk,
    open_ftdi_gpio,
)
from bridge.profile import REFERENCE, Profile

TIMEOUT_MS = 2000.0  # the rigs' handshake timeout: never reached by a fake that answers
STALL_MS = 30.0  # in the tests that wait for a timeout


def profile(**physical: Any) -> Profile:
    physical.setdefault("handshake_timeout_ms", TIMEOUT_MS)
    return dataclasses.replace(
        REFERENCE, physical=dataclasses.replace(REFERENCE.physical, **physical)
    )


def words(count: int, seed: int = 0, parity: str = "odd") -> WordBuffer:
    values = np.random.default_rng(seed).integers(0, 1 << 16, count, dtype=np.uint16)
    return WordBuffer(values, parity_bits(values, parity))


def receive(port: FtdiGpioPort, count: int, timeout: float = 5.0) -> WordBuffer:
    parts = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < count:
        assert time.monotonic() < deadline, f"only {got} of {count} words arrived"
        part = port.recv(0.05)
        parts.append(part)
        got += len(part.words)
    return WordBuffer(
        np.concatenate([p.words for p in parts]), np.concatenate([p.parity for p in parts])
    )


@dataclass
class Rig:
    cable: Cable
    pins: FtdiPins
    scanner: FakeScanner
    port: FtdiGpioPort

    def pins_driven(self, side: str) -> set[str]:
        return {line for line, drivers in self.cable.drivers.items() if side in drivers}


@contextmanager
def rig(
    role: str = "b", ready: bool = True, connect: bool = True, **physical: Any
) -> Iterator[Rig]:
    """A port of ``role`` on a fake FT2232H, the fake scanner playing the other side."""
    prof = profile(**physical)
    cable = Cable(prof)
    pins = FtdiPins(cable, role)
    scanner = FakeScanner(cable, role="a" if role == "b" else "b", profile=prof, ready=ready)
    port = open_ftdi_gpio(f"ftdi-gpio://ftdi:2232h/1?role={role}", profile=prof, bus=pins)
    try:
        if connect:
            assert port.wait_peer(1.0)
        yield Rig(cable, pins, scanner, port)
    finally:
        port.close()
    assert pins.closed
    assert cable.violations == []
    assert cable.contention == []


# -- opening, direction, nothing driven too early -----------------------------------


def test_opens_driving_only_its_ready_until_the_peer_is_seen() -> None:
    with rig(ready=False, connect=False) as r:
        assert r.pins_driven("b") == {"READY_B"}
        assert r.cable.asserted("READY_B")
        assert r.pins.outputs[0] == 0  # every data pin an input
        assert not r.port.peer_ready
        assert not r.port.wait_peer(0.02)
        assert r.pins_driven("b") == {"READY_B"}
        with pytest.raises(LinkLost, match="not READY"):
            r.port.send(words(3))
        with pytest.raises(LinkLost, match="not READY"):
            r.port.recv(0.0)
        r.scanner.ready = True
        assert r.port.wait_peer(1.0)
        assert r.pins_driven("b") == {"READY_B", "BREQ"}  # BREQ, deasserted
        assert not r.cable.asserted("BREQ")
        r.port.recv(0.01)  # side A takes the bus meanwhile
        assert r.cable.asserted("DIR")
        assert r.pins.outputs[0] == 0
        assert r.pins_driven("b") == {"READY_B", "BREQ"}


def test_the_data_pins_are_driven_only_while_the_port_owns_the_bus() -> None:
    with rig() as r:
        r.port.send(words(4))
        assert r.pins.outputs[0] == 0  # given back
        assert not r.cable.asserted("BREQ")
        starts = [line for _, side, line in r.cable.drive_log if side == "b"]
        assert set(BUS) <= set(starts)
        assert r.cable.violations == []  # every drive checked against DIR, BREQ, READY


# -- words both ways ----------------------------------------------------------------


def test_words_to_the_scanner_with_their_parity() -> None:
    sent = words(50, seed=1)
    with rig() as r:
        r.port.send(sent)
        assert r.scanner.words == sent.words.tolist()
        assert [bit for _, bit, _ in r.scanner.received] == sent.parity.tolist()
        assert not any(bad for _, _, bad in r.scanner.received)
        assert r.port.stats["words_sent"] == 50
        assert r.port.stats["parity_errors_reported"] == 0
        assert r.port.stats["handshake_timeouts"] == 0


def test_words_from_the_scanner_with_their_parity() -> None:
    sent = words(50, seed=2)
    with rig() as r:
        r.scanner.send(sent.words.tolist())
        got = receive(r.port, 50)
        assert got.words.tolist() == sent.words.tolist()
        assert got.parity.tolist() == sent.parity.tolist()
        assert [perr for _, perr in r.scanner.sent] == [False] * 50
        assert r.port.stats["parity_errors_received"] == 0


def test_both_ways_at_once_the_port_receives_while_it_waits_for_the_bus() -> None:
    ours, theirs = words(30, seed=3), words(30, seed=4)
    with rig() as r:
        r.scanner.send(theirs.words.tolist())
        r.port.send(ours)  # asks with BREQ while side A is sending
        got = receive(r.port, 30)
        assert r.scanner.words == ours.words.tolist()
        assert got.words.tolist() == theirs.words.tolist()
        assert r.port.stats["bus_turns"] == 1


def test_role_a_against_a_fake_bridge() -> None:
    ours, theirs = words(20, seed=5), words(20, seed=6)
    with rig(role="a") as r:
        assert r.cable.asserted("DIR")  # side A owns the bus once both are READY
        r.port.send(ours)
        r.scanner.send(theirs.words.tolist())
        got = receive(r.port, 20)
        r.port.send(ours)  # the bus came back to side A
        assert got.words.tolist() == theirs.words.tolist()
        assert r.scanner.words == ours.words.tolist() * 2


def test_active_low_lines_are_inverted_at_the_pins() -> None:
    low = ("D0", "D9", "PARITY", "REQ", "ACK", "DIR", "READY_A", "READY_B", "PERR", "BREQ")
    ours, theirs = words(20, seed=7), words(20, seed=8)
    with rig(active_low=low) as r:
        assert not r.pins.latch[1] >> 5 & 1  # READY_B asserted = pin low
        r.port.send(ours)
        r.scanner.send(theirs.words.tolist())
        got = receive(r.port, 20)
        assert r.scanner.words == ours.words.tolist()
        assert got.words.tolist() == theirs.words.tolist()
        assert r.port.stats["parity_errors_received"] == 0


def test_parity_none_never_flags_a_word() -> None:
    sent = WordBuffer(np.array([1, 2, 3], np.uint16), np.zeros(3, np.uint8))
    with rig(parity="none") as r:
        r.port.send(sent)
        r.scanner.send([7, 8], parity=[1, 0])
        got = receive(r.port, 2)
        assert got.words.tolist() == [7, 8]
        assert r.port.stats["parity_errors_received"] == 0
        assert not any(bad for _, _, bad in r.scanner.received)


def test_line_walk_reaches_the_scanner_and_lines_shows_the_cable() -> None:
    walk = line_walk()
    assert len(walk.words) == 32
    with rig() as r:
        assert all(r.port.write_word(w) is False for w in walk.words.tolist())
        assert r.scanner.words == walk.words.tolist()
        seen = r.port.lines()
        assert seen["READY_A"] and seen["READY_B"] and seen["DIR"]
        assert not seen["DE_BUS"] and not seen["BREQ"]
        r.scanner.send([0x1234])
        assert r.port.read_word(1.0) == (0x1234, int(parity_bits([0x1234])[0]))
        assert r.port.read_word(0.0) is None


# -- parity errors ------------------------------------------------------------------


def test_a_word_with_bad_parity_from_the_scanner_gets_perr_and_still_counts() -> None:
    sent = words(10, seed=9)
    bits = sent.parity.copy()
    bits[4] ^= 1
    with rig() as r:
        r.scanner.send(sent.words.tolist(), parity=bits.tolist())
        got = receive(r.port, 10)
        assert got.words.tolist() == sent.words.tolist()  # frames stay aligned
        assert got.parity.tolist() == bits.tolist()  # the line as it came, for the stack
        assert [perr for _, perr in r.scanner.sent] == [i == 4 for i in range(10)]
        assert r.port.stats["parity_errors_received"] == 1


def test_the_peer_flags_a_word_we_send_with_bad_parity() -> None:
    sent = words(6, seed=10)
    bits = sent.parity.copy()
    bits[2] ^= 1
    with rig() as r:
        r.port.send(WordBuffer(sent.words, bits))
        assert [bad for _, _, bad in r.scanner.received] == [i == 2 for i in range(6)]
        assert r.port.stats["parity_errors_reported"] == 1
        assert r.port.write_word(0x00FF, parity=0) is True  # 8 ones: odd parity wants 1
        assert r.port.write_word(0x00FF) is False


# -- handshake timeouts ---------------------------------------------------------------


def test_a_stall_without_ack_is_reported_with_the_word_index_and_phase() -> None:
    with rig(handshake_timeout_ms=STALL_MS) as r:
        r.scanner.stall = ("ack", 3)
        start = time.monotonic()
        r.port.send(words(10, seed=11))  # reported, not raised: the data link retransmits
        assert time.monotonic() - start >= STALL_MS / 1e3
        assert r.port.stats["handshake_timeouts"] == 1
        error = r.port.errors[-1]
        assert isinstance(error, PortError)
        assert (error.index, error.phase, error.sending) == (3, "ack", True)
        assert "sending word 3 of 10" in str(error)
        assert PHASES["ack"] in str(error)
        assert f"{STALL_MS:g} ms" in str(error)
        assert len(r.scanner.received) == 3  # the rest of the buffer was dropped
        assert not r.cable.asserted("REQ") and not r.cable.asserted("BREQ")
        with pytest.raises(HandshakeTimeout, match=r"word 0 of 1.*phase 'ack'"):
            r.port.write_word(0x5555)
        r.scanner.stall = None  # the scanner answers again: the link recovers
        r.port.send(words(5, seed=12))
        assert len(r.scanner.received) == 3 + 5  # the two timed-out words never arrived


def test_ack_never_released_is_a_timeout_in_phase_ack_release() -> None:
    with rig(handshake_timeout_ms=STALL_MS) as r:
        r.scanner.stall = ("ack-release", 0)
        r.port.send(words(3))
        error = r.port.errors[-1]
        assert (error.index, error.phase) == (0, "ack-release")
        assert "ACK deasserted after REQ was deasserted" in str(error)


def test_req_never_released_is_reported_by_the_receiver_and_the_word_kept() -> None:
    sent = words(5, seed=13)
    with rig(handshake_timeout_ms=STALL_MS) as r:
        r.scanner.stall = ("req-release", 2)
        r.scanner.send(sent.words.tolist())
        got = receive(r.port, 3)
        assert got.words.tolist() == sent.words[:3].tolist()
        error = r.port.errors[-1]
        assert (error.index, error.phase, error.sending) == (2, "req-release", False)
        assert "receiving word 2:" in str(error)
        assert not r.cable.asserted("ACK")  # back to idle


def test_no_bus_grant_is_a_timeout_in_phase_grant() -> None:
    with rig(handshake_timeout_ms=STALL_MS) as r:
        r.scanner.hand_over = False
        r.port.send(words(4))
        assert r.port.errors[-1].phase == "grant"
        assert "DIR deasserted (the bus handed over) after BREQ" in str(r.port.errors[-1])
        assert not r.cable.asserted("BREQ")
        assert r.scanner.received == []


# -- READY --------------------------------------------------------------------------


def test_the_scanner_dropping_ready_mid_send_is_link_down() -> None:
    with rig() as r:
        r.scanner.drop_ready_after = 5
        with pytest.raises(LinkLost, match="dropped READY"):
            r.port.send(words(20))
        assert r.pins_driven("b") == {"READY_B"}  # every other driver off at once
        assert r.pins.outputs[0] == 0
        with pytest.raises(LinkLost, match="not READY"):  # again on every call
            r.port.recv(0.0)
        assert not r.port.peer_ready
        assert not r.port.wait_peer(0.01)
        r.scanner.set_ready(True)
        assert r.port.wait_peer(1.0)
        r.port.send(words(3, seed=14))
        assert r.scanner.words[-3:] == words(3, seed=14).words.tolist()


def test_a_drop_while_receiving_is_told_once() -> None:
    with rig() as r:
        r.scanner.drop_ready_after = 4
        r.scanner.send(range(10))
        got: list[int] = []
        deadline = time.monotonic() + 2.0
        with pytest.raises(LinkLost, match="dropped READY"):
            while time.monotonic() < deadline:
                got += r.port.recv(0.01).words.tolist()
        assert got == list(range(len(got))) and len(got) <= 4
        with pytest.raises(LinkLost, match="not READY"):
            r.port.recv(0.0)


def test_words_not_yet_returned_are_discarded_when_ready_drops() -> None:
    with rig(handshake_timeout_ms=STALL_MS) as r:
        r.scanner.hand_over = False
        r.scanner.send(range(5))
        r.port.send(words(2))  # waits in vain for the bus, taking the scanner's words
        assert r.port.errors[-1].phase == "grant"
        assert len(r.scanner.sent) == 5
        r.scanner.set_ready(False)
        with pytest.raises(LinkLost, match="dropped READY"):
            r.port.recv(0.0)
        r.scanner.set_ready(True)
        assert r.port.wait_peer(1.0)
        assert r.port.recv(0.01).words.tolist() == []  # nothing from the old link


def test_our_ready_drop_releases_everything_and_the_scanner_sees_it() -> None:
    with rig() as r:
        r.port.send(words(2))
        r.port.set_ready(False)
        assert not r.cable.asserted("READY_B")
        assert r.pins_driven("b") == {"READY_B"}
        with pytest.raises(LinkLost, match="this side's READY"):
            r.port.recv(0.0)
        r.port.set_ready(True)
        r.port.send(words(2, seed=15))
        assert r.scanner.words[-2:] == words(2, seed=15).words.tolist()


def test_a_lost_device_is_link_down_then_reopen() -> None:
    class Unplugged(FtdiPins):
        gone = False

        def read(self, port: int) -> int:
            if self.gone:
                raise LinkLost("ftdi://ftdi:2232h: the device was lost: [Errno 19]")
            return super().read(port)

    cable = Cable(profile())
    FakeScanner(cable, profile=profile())
    pins = Unplugged(cable, "b")
    port = open_ftdi_gpio("ftdi-gpio://ftdi:2232h", profile=profile(), bus=pins)
    try:
        assert port.wait_peer(1.0)
        pins.gone = True
        with pytest.raises(LinkLost, match="device was lost"):
            port.recv(0.01)
        with pytest.raises(LinkLost, match="device was lost"):
            port.send(words(1))
        with pytest.raises(PortError, match="close and reopen"):
            port.wait_peer(0.01)
    finally:
        port.close()
    assert pins.closed


def test_close_releases_the_pins_and_is_idempotent() -> None:
    with rig() as r:
        r.port.close()
        r.port.close()
        assert r.pins.outputs == [0, 0]
        assert r.pins_driven("b") == set()
        with pytest.raises(PortError, match="closed"):
            r.port.recv(0.0)
        with pytest.raises(PortError, match="closed"):
            r.port.set_ready(True)


# -- two ports back to back -----------------------------------------------------------


def test_two_ports_back_to_back_in_two_threads() -> None:
    prof = profile()
    cable = Cable(prof)
    a_pins, b_pins = FtdiPins(cable, "a", yield_gil=True), FtdiPins(cable, "b", yield_gil=True)
    a = open_ftdi_gpio("ftdi-gpio://ftdi:2232h?role=a", profile=prof, bus=a_pins)
    b = open_ftdi_gpio("ftdi-gpio://ftdi:2232h", profile=prof, bus=b_pins)
    to_b, to_a = words(40, seed=16), words(40, seed=17)
    results: dict[str, Any] = {}

    def side(name: str, port: FtdiGpioPort, out: WordBuffer) -> None:
        try:
            assert port.wait_peer(5.0)
            port.send(WordBuffer(out.words[:20], out.parity[:20]))
            got = receive(port, 10)
            port.send(WordBuffer(out.words[20:], out.parity[20:]))
            results[name] = [got, receive(port, 40 - len(got.words))]
        except BaseException as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=side, args=("a", a, to_b), name="ftdi-a"),
        threading.Thread(target=side, args=("b", b, to_a), name="ftdi-b"),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20.0)
    finally:
        a.close()
        b.close()
    for name, sent in (("a", to_a), ("b", to_b)):
        result = results[name]
        assert not isinstance(result, BaseException), result
        assert np.concatenate([p.words for p in result]).tolist() == sent.words.tolist()
    assert a.stats["handshake_timeouts"] == b.stats["handshake_timeouts"] == 0
    assert cable.violations == []
    assert cable.contention == []


# -- the rate of the fake path ---------------------------------------------------------


def test_rate_of_the_fake_path(record_property: Any) -> None:
    """Words/s through the fake device: only the Python cost, no USB (docs/ftdi-gpio.md)."""
    count = 2000
    with rig() as r:
        r.port.recv(0.0)  # the bus settled: side A owns it
        calls = r.pins.reads, r.pins.writes
        start = time.perf_counter()
        r.port.send(words(count, seed=18))
        send_rate = count / (time.perf_counter() - start)
        sending = (r.pins.reads - calls[0]) / count, (r.pins.writes - calls[1]) / count
        r.port.recv(0.0)
        calls = r.pins.reads, r.pins.writes
        r.scanner.send(words(count, seed=19).words.tolist())
        start = time.perf_counter()
        receive(r.port, count, timeout=30.0)
        recv_rate = count / (time.perf_counter() - start)
        receiving = (r.pins.reads - calls[0]) / count, (r.pins.writes - calls[1]) / count
        assert len(r.scanner.received) == count
    for name, value in (
        ("send_words_per_s", round(send_rate)),
        ("recv_words_per_s", round(recv_rate)),
        ("send_reads_writes_per_word", sending),
        ("recv_reads_writes_per_word", receiving),
    ):
        record_property(name, value)
    sys.stderr.write(
        f"\nftdi-gpio fake path: send {send_rate:.0f} words/s ({sending[0]:.2f} reads, "
        f"{sending[1]:.2f} writes a word), receive {recv_rate:.0f} words/s "
        f"({receiving[0]:.2f} reads, {receiving[1]:.2f} writes a word)\n"
    )
    assert sending[0] >= 2 and receiving[0] >= 3  # the arithmetic of docs/ftdi-gpio.md


def test_rate_note_is_one_line_for_help() -> None:
    assert "\n" not in RATE_NOTE and "words/s" in RATE_NOTE and "bring-up" in RATE_NOTE
    assert "words/s" in (ftdi_gpio.__doc__ or "")


# -- URL ------------------------------------------------------------------------------


def test_url_options(tmp_path: Path) -> None:
    cable = Cable()
    site = tmp_path / "site.toml"
    site.write_text('[physical]\nactive_low = ["REQ"]\nhandshake_timeout_ms = 5\n')
    port = open_ftdi_gpio(
        f"ftdi-gpio://ftdi:2232h/1?role=A&profile={site}", bus=FtdiPins(cable, "a")
    )
    try:
        assert port.role == "a"
        assert port.profile.physical.active_low == ("REQ",)
        assert port.url.startswith("ftdi-gpio://")
    finally:
        port.close()
    bad = {
        "ftdi-gpio://ftdi:2232h/2": "interface 1",
        "ftdi-gpio://ftdi:2232h?role=c": "option role",
        "ftdi-gpio://ftdi:2232h?speed=1": "unknown option",
        "ftdi://ftdi:2232h/1": "not a ftdi-gpio:// URL",
        f"ftdi-gpio://ftdi:2232h?profile={tmp_path / 'missing.toml'}": "cannot read",
    }
    for url, message in bad.items():
        with pytest.raises(PortError, match=message):
            open_ftdi_gpio(url, bus=FtdiPins(Cable(), "b"))


def test_missing_pyftdi_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyftdi", None)  # import pyftdi.* raises ImportError
    monkeypatch.setitem(sys.modules, "pyftdi.gpio", None)
    with pytest.raises(PortUnavailableError, match=r"pip install acrnema-bridge\[ftdi\]"):
        open_ftdi_gpio("ftdi-gpio://ftdi:2232h/1")


# -- the pyftdi adapter, against a stub controller --------------------------------------


class _StubController:
    opened: ClassVar[list[str]] = []
    fail: ClassVar[str | None] = None
    width: ClassVar[int] = 16

    def __init__(self) -> None:
        self.direction = 0
        self.value = 0
        self.pins = 0

    def configure(self, url: str, **kwargs: Any) -> None:
        if self.fail == "open" and url.endswith("/2"):
            raise OSError("No such FTDI port: 2")
        assert kwargs["direction"] == 0
        self.opened.append(url)

    def set_direction(self, pins: int, direction: int) -> None:
        self.direction = direction & pins

    def write(self, value: int) -> None:
        self.value = value

    def read(self, count: int) -> tuple[int, ...]:
        if self.fail == "read":
            raise OSError("[Errno 19] No such device")
        return (self.pins,) * count

    def close(self) -> None:
        self.opened.append("closed")


def _stub_pyftdi(monkeypatch: pytest.MonkeyPatch) -> type[_StubController]:
    class Stub(_StubController):
        opened: ClassVar[list[str]] = []

    gpio = types.ModuleType("pyftdi.gpio")
    gpio.GpioMpsseController = Stub  # type: ignore[attr-defined]
    usbtools = types.ModuleType("pyftdi.usbtools")
    usbtools.UsbToolsError = type("UsbToolsError", (Exception,), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyftdi.gpio", gpio)
    monkeypatch.setitem(sys.modules, "pyftdi.usbtools", usbtools)
    return Stub


def test_pyftdi_bus_opens_both_interfaces_and_wraps_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stub = _stub_pyftdi(monkeypatch)
    bus = PyftdiBus("ftdi:2232h:FT1234")
    assert stub.opened == ["ftdi://ftdi:2232h:FT1234/1", "ftdi://ftdi:2232h:FT1234/2"]
    bus.write(1, 0x0130)
    bus.set_direction(1, 0x3F10)
    controller = bus._controllers[1]
    assert (controller.direction, controller.value) == (0x3F10, 0x0130)
    controller.pins = 0x00A5
    assert bus.read(1) == 0x00A5
    stub.fail = "read"
    with pytest.raises(LinkLost, match="device was lost") as lost:
        bus.read(0)
    assert isinstance(lost.value.__cause__, OSError)
    bus.close()
    bus.close()
    stub.fail = "open"
    stub.opened = []
    with pytest.raises(PortError, match="cannot open both MPSSE ports"):
        PyftdiBus("ftdi:232h")
    assert stub.opened == ["ftdi://ftdi:232h/1", "closed", "closed"]
    stub.fail = None
    stub.width = 8
    with pytest.raises(PortError, match="needs an FT2232H"):
        PyftdiBus("ftdi:4232h")


# -- optional: pyftdi's virtual FT2232H (git-only backend) --------------------------------

VIRTUAL_ENV = "BRIDGE_PYFTDI_TESTS"
FT2232H_YAML = b"""
devices:
  - bus: 1
    address: 1
    descriptor: {vid: 0x403, pid: 0x6010, version: 0x700,
                 manufacturer: FTDI, product: FT2232H, serialnumber: FTVIRT2}
    configurations:
      - interfaces:
        - repeat: 2
"""


def _virtual_backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    """pyftdi's virtual USB backend's loader class, or skip saying what is missing."""
    where = os.environ.get(VIRTUAL_ENV)
    reason = (
        f"pyftdi's virtual USB backend is only in its git repository: set {VIRTUAL_ENV} to "
        "<pyftdi checkout>/pyftdi/tests (needs pyftdi, pyusb and ruamel.yaml)"
    )
    if not where or not (Path(where) / "backend" / "usbvirt.py").is_file():
        pytest.skip(reason)
    for module in ("pyftdi", "usb", "ruamel.yaml"):
        pytest.importorskip(module, reason=reason)
    usbtools = pytest.importorskip("pyftdi.usbtools")
    monkeypatch.syspath_prepend(where)
    monkeypatch.setattr(usbtools.UsbTools, "BACKENDS", ("backend.usbvirt",))
    return usbtools.UsbTools.find_backend().create_loader()


class VirtualPins(FtdiPins):
    """A port's FT2232H as pyftdi's virtual device, through :class:`PyftdiBus`: the
    cable is copied onto the virtual input pins before each read, and the virtual output
    pins onto the cable after each write."""

    def __init__(self, cable: Cable, side: str, real: PyftdiBus, vports: list[Any]) -> None:
        super().__init__(cable, side)
        self.real = real
        self.vports = vports

    def read(self, port: int) -> int:
        self._call()
        with self.cable.lock:
            expected = self.levels(port)
            for bit in range(16):
                if not self.output(port, bit):
                    self.vports[port][bit].set(True, bool(expected >> bit & 1))
        value = self.real.read(port)
        assert value == expected, (port, hex(value), hex(expected))
        return value

    def write(self, port: int, value: int) -> None:
        self.real.write(port, value)
        super().write(port, value)
        self._compare(port)

    def set_direction(self, port: int, outputs: int) -> None:
        self.real.set_direction(port, outputs)
        super().set_direction(port, outputs)
        self._compare(port)

    def close(self) -> None:
        self.real.close()
        super().close()

    def _compare(self, port: int) -> None:
        """The virtual device's output pins show what we asked for."""
        mask = self.outputs[port]
        assert self.vports[port].gpio & mask == self.latch[port] & mask


def test_virtual_ft2232h_through_pyftdi(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = _virtual_backend(monkeypatch)()
    loader.load(io.BytesIO(FT2232H_YAML))
    try:
        vftdi = loader.get_virtual_ftdi(1, 1)
        prof = profile()
        cable = Cable(prof)
        scanner = FakeScanner(cable, profile=prof)
        real = PyftdiBus("ftdi:2232h")
        pins = VirtualPins(cable, "b", real, [vftdi.get_port(1), vftdi.get_port(2)])
        port = open_ftdi_gpio("ftdi-gpio://ftdi:2232h/1", profile=prof, bus=pins)
        try:
            assert port.wait_peer(5.0)
            sent, theirs = words(8, seed=20), words(8, seed=21)
            start = time.perf_counter()
            port.send(sent)
            rate = 8 / (time.perf_counter() - start)
            scanner.send(theirs.words.tolist())
            got = receive(port, 8, timeout=20.0)
        finally:
            port.close()
        assert scanner.words == sent.words.tolist()
        assert got.words.tolist() == theirs.words.tolist()
        assert cable.violations == [] and cable.contention == []
        sys.stderr.write(f"\nftdi-gpio on the virtual FT2232H: send {rate:.0f} words/s\n")
    finally:
        loader.unload()

"""The bench the hardware tests run on: a real one, or the emulated interface box.

* Real bench: ``BRIDGE_HW_URL`` is the bridge side (for example
  ``box+serial:///dev/ttyACM0``) and ``BRIDGE_HW_PEER_URL`` the other end of the 50-pin
  cable (a second box running the emulator's receiver role, for example
  ``box+serial:///dev/ttyACM1``). ``BRIDGE_HW_PROFILE`` names a profile file if the
  bench does not use the reference profile. The unplug test asks the operator to pull
  and replug the adapter (run ``pytest -s``), ``BRIDGE_HW_UNPLUG_S`` seconds each.
* Emulated bench: ``BRIDGE_HW_EMULATED=1`` (what ``make test`` sets): the bridge side is
  a ``box+serial://`` port on one end of a real pty pair, the emulated box
  (:mod:`bridge.testing.box`) on the other, and the peer is the far end of the box's
  line side. Every test runs; none skips.
* Neither: every test skips, saying which variables to set (docs/hardware.md, "Running
  hwtests on a bench").
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bridge.acrnema.physical import WordBuffer
from bridge.ports import open_port
from bridge.ports.base import WordPort
from bridge.profile import Profile, load_profile
from bridge.service import Bridge
from bridge.spool.store import Spool
from bridge.testing.ports import receive

HW_URL, PEER_URL = os.environ.get("BRIDGE_HW_URL"), os.environ.get("BRIDGE_HW_PEER_URL")
EMULATED = os.environ.get("BRIDGE_HW_EMULATED") == "1"


@dataclass
class Bench:
    """The two ends of the cable, and how to pull the plug on the bridge's side."""

    bridge: WordPort
    peer: WordPort
    profile: Profile
    unplug: Callable[[], None]
    replug: Callable[[], None]
    link_s: float = 5.0  # how long the two sides may take to find each other
    unplug_s: float = 10.0
    image_rows: int = 256
    extra: dict[str, object] = field(default_factory=dict)

    def ends(self, direction: str) -> tuple[WordPort, WordPort]:
        """(sender, receiver) for "bridge to peer" or "peer to bridge"."""
        return (
            (self.bridge, self.peer)
            if direction == "bridge to peer"
            else (
                self.peer,
                self.bridge,
            )
        )

    def wait_both(self) -> None:
        deadline = time.monotonic() + self.link_s
        while not (self.bridge.peer_ready and self.peer.peer_ready):
            assert time.monotonic() < deadline, "the two ends did not find each other"
            self.bridge.wait_peer(0.02)
            self.peer.wait_peer(0.02)


def words(count: int, seed: int = 0) -> WordBuffer:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 1 << 16, count, dtype=np.uint16)
    from bridge.acrnema.physical import parity_bits

    return WordBuffer(values, parity_bits(values, "odd"))


def receive_exactly(port: WordPort, count: int, timeout: float = 10.0) -> WordBuffer:
    """``count`` words from ``port``, failing on fewer within ``timeout`` or on more."""
    buffer, _ = receive(port, count, timeout)
    assert len(buffer.words) == count, f"{len(buffer.words)} words arrived, {count} were sent"
    return buffer


def _operator(what: str) -> Callable[[], None]:
    def ask() -> None:
        print(f"\n>>> {what} (waiting up to {_unplug_s():g} s)", file=sys.__stderr__, flush=True)

    return ask


def _unplug_s() -> float:
    return float(os.environ.get("BRIDGE_HW_UNPLUG_S", "60"))


@pytest.fixture
def bench() -> Iterator[Bench]:
    if HW_URL and PEER_URL:
        profile = load_profile(os.environ.get("BRIDGE_HW_PROFILE"))
        bridge, peer = open_port(HW_URL), open_port(PEER_URL)
        try:
            b = Bench(
                bridge,
                peer,
                profile,
                _operator(f"unplug the adapter of {HW_URL} now"),
                _operator(f"plug the adapter of {HW_URL} back in"),
                link_s=30.0,
                unplug_s=_unplug_s(),
                image_rows=512,
            )
            b.wait_both()
            yield b
        finally:
            bridge.close()
            peer.close()
        return
    if not EMULATED:
        pytest.skip(
            "no bench: set BRIDGE_HW_URL and BRIDGE_HW_PEER_URL for a real one, or "
            "BRIDGE_HW_EMULATED=1 for the emulated interface box (docs/hardware.md)"
        )
    from bridge.testing.box import emulated_bench

    with emulated_bench() as emulated:
        bridge = open_port(emulated.bridge_url)
        try:
            b = Bench(
                bridge,
                emulated.peer_port,
                emulated.profile,
                emulated.unplug,
                lambda: _replug(emulated),
            )
            b.wait_both()
            yield b
        finally:
            bridge.close()


def _replug(emulated: object) -> None:
    """Put a fresh emulated box in (the bridge side then finds it by itself)."""
    emulated.replug()  # type: ignore[attr-defined]


@contextlib.contextmanager
def service_running(bench: Bench, spool_dir: Path) -> Iterator[Bridge]:
    """``acrnema-bridge run`` on the bench's bridge side (spool only, no forwarding)."""
    spool = Spool(spool_dir)
    bridge = Bridge(bench.bridge, spool, profile=bench.profile)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="hw-bridge")
    thread.start()
    try:
        yield bridge
    finally:
        stop.set()
        thread.join(timeout=60)
        spool.close()
        assert not thread.is_alive(), "the service did not stop"

"""The service's own promises (``acrnema-bridge run``, :mod:`bridge.service`).

* One image can never take the service down: any exception while converting or spooling
  it is answered to the scanner with a failure status, and the next image is served.
* Forwarding that ends on its own stops the service (exit non-zero), instead of the
  service acknowledging images that nothing will ever forward.
"""

from __future__ import annotations

import functools
import resource
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import peers
import pytest
from hostile_peer import HostilePeer, Mode

from bridge import service as service_module
from bridge.acrnema.elements import IMPLICIT_BE, encode
from bridge.forward.runner import RetryPolicy
from bridge.forward.scu import Destination
from bridge.lenient import lenient
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Image, Scanner
from bridge.ports.loop import loop_pair
from bridge.service import Bridge
from bridge.spool.store import Job, Spool, SpoolError
from bridge.testing.phantom import PhantomSpec, phantom_dataset, phantom_images

SIZE = 512  # a 1990s CT slice: 512 KiB of pixels, several PDUs on the wire


def frame_bomb() -> Image:
    """An image of 250 KB whose header claims two million frames of one 1-bit pixel.

    Converted frame by frame as the header says, it needs tens of GB of memory.
    """
    ds = phantom_dataset(PhantomSpec(rows=64, columns=64))
    ds.Rows = ds.Columns = 1
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.NumberOfFrames = 2_000_000
    ds.PixelData = bytes(2_000_000 // 8)
    with lenient():
        return Image("frame bomb", encode(ds, IMPLICIT_BE))


def _serve(bridge: Bridge) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="bridge-under-test")
    thread.start()
    return stop, thread


@pytest.fixture
def loop_bridge(tmp_path: Path) -> Iterator[tuple[Bridge, Scanner]]:
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool")
    bridge = Bridge(bridge_port, spool)
    stop, thread = _serve(bridge)
    scanner = Scanner(Endpoint(scanner_port), attempts=1, response_timeout=30.0)
    try:
        yield bridge, scanner
    finally:
        scanner.close(timeout=2.0)
        stop.set()
        thread.join(timeout=30)
        scanner_port.close()
        bridge_port.close()
        spool.close()
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (MemoryError(), "out_of_resources A700H"),
        (AttributeError("'NoneType' object has no attribute 'x'"), "cannot_understand C000H"),
        (RecursionError("maximum recursion depth exceeded"), "cannot_understand C000H"),
    ],
)
def test_any_error_while_storing_costs_that_image_only(
    loop_bridge: tuple[Bridge, Scanner],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    status: str,
) -> None:
    bridge, scanner = loop_bridge
    real_convert = service_module.convert
    calls = []

    def convert_failing_once(data: bytes, **kw: object) -> object:
        calls.append(len(data))
        if len(calls) == 1:
            raise error
        return real_convert(data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "convert", convert_failing_once)
    first, second = scanner.send(phantom_images(2, rows=64))
    assert not first.ok and status in first.errors[0]
    assert second.ok, second.errors
    assert bridge.stats.failed == 1 and bridge.stats.images == 1


def test_forwarding_that_ends_on_its_own_stops_the_service(tmp_path: Path) -> None:
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool")
    pacs = Destination("PACS", "127.0.0.1", peers.free_port())
    bridge = Bridge(bridge_port, spool, [pacs], policy=RetryPolicy(base=0.1, cap=0.2))
    died = threading.Event()

    def forwarder_that_dies(stop: threading.Event, **kw: object) -> object:
        died.set()
        raise RuntimeError("database disk image is malformed")

    bridge.forwarder.run = forwarder_that_dies  # type: ignore[method-assign]
    stop, thread = _serve(bridge)
    try:
        assert died.wait(10)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the service went on without its forwarder"
        assert stop.is_set()
        assert bridge.failure is not None and "malformed" in bridge.failure
    finally:
        stop.set()
        thread.join(timeout=30)
        scanner_port.close()
        bridge_port.close()
        spool.close()


class _LockedSpool(Spool):
    """A spool whose queue another process keeps locked: every claim fails."""

    def claim(self, destination: str, *, now: float, limit: int = 16) -> list[Job]:
        raise SpoolError(f"spool {self.root}: database: database is locked")


def test_a_forwarder_that_cannot_go_on_stops_the_service(tmp_path: Path) -> None:
    scanner_port, bridge_port = loop_pair()
    spool = _LockedSpool(tmp_path / "spool")
    pacs = Destination("PACS", "127.0.0.1", peers.free_port())
    policy = RetryPolicy(base=0.05, cap=0.1, give_up_after=0.5)
    bridge = Bridge(bridge_port, spool, [pacs], policy=policy)
    stop, thread = _serve(bridge)
    try:
        thread.join(timeout=30)
        assert not thread.is_alive(), "the service went on without its forwarder"
        assert stop.is_set()
        assert bridge.failure is not None
        assert "cannot go on" in bridge.failure and "database is locked" in bridge.failure
    finally:
        stop.set()
        thread.join(timeout=30)
        scanner_port.close()
        bridge_port.close()
        spool.close()


def _limit_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_frame_bomb_is_refused_and_the_service_stays_up(tmp_path: Path) -> None:
    """The run command under a 2 GiB address-space cap: the bomb costs one answer."""
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    cap = functools.partial(_limit_memory, 2 << 30)
    with peers.bridge_service(port, "--spool", str(spool_dir), preexec_fn=cap) as service:
        with peers.scanner_on(port, response_timeout=300.0) as scanner:
            bomb, good = scanner.send([frame_bomb(), *phantom_images(1, rows=64)])
        assert service.poll() is None, "the service died"
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=60)
    assert not bomb.ok
    assert good.ok, good.errors
    assert service.returncode == 0, err
    assert "Traceback" not in err
    assert len(list((spool_dir / "objects").rglob("*.dcm"))) == 1


@pytest.mark.parametrize("mode", [Mode.STOP_READING, Mode.SILENT_AFTER_HEADER, Mode.TRICKLE])
def test_sigterm_ends_run_within_seconds_whatever_the_pacs_does(tmp_path: Path, mode: Mode) -> None:
    """Finding: a PACS that stopped reading, went silent after a PDU header or trickled
    its answer hung the forwarder for ever, and `run` ignored SIGTERM (kill -9 needed)."""
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    with HostilePeer(mode, interval=0.3, lifetime=90) as pacs:
        dest = f"{pacs.ae_title}@{pacs.host}:{pacs.port}"
        with peers.bridge_service(port, "--spool", str(spool_dir), "--dest", dest) as service:
            with peers.scanner_on(port, response_timeout=30.0) as scanner:
                results = scanner.send(phantom_images(2, rows=SIZE))
            deadline = time.monotonic() + 20  # until the PACS holds an object
            while not pacs.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pacs.requests, "the forwarder never reached the PACS"
            time.sleep(1.0)  # the exchange is now stuck on the PACS
            stopping = time.monotonic()
            service.send_signal(signal.SIGTERM)
            _, err = service.communicate(timeout=30)
            took = time.monotonic() - stopping
    assert all(r.ok for r in results)
    assert service.returncode == 0, err
    assert took < 10, f"run took {took:.1f} s to stop"
    assert "Traceback" not in err
    spool = Spool(spool_dir)
    try:
        counts = spool.counts(f"{pacs.ae_title}@{pacs.host}:{pacs.port}")
    finally:
        spool.close()
    assert counts["ready"] + counts["done"] == 2 and counts["in_flight"] == 0


def test_sighup_never_stops_the_service(tmp_path: Path) -> None:
    """Finding (issue 11): SIGHUP killed `run`. Now it is logged and ignored; the service
    goes on storing, and SIGTERM still stops it cleanly."""
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    with peers.bridge_service(port, "--spool", str(spool_dir)) as service:
        time.sleep(0.5)  # the service has installed its handlers once it listens
        service.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert service.poll() is None, "SIGHUP stopped the service"
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [result] = scanner.send(phantom_images(1, rows=64))
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=60)
    assert result.ok, result.errors
    assert service.returncode == 0, err
    assert "SIGHUP ignored" in err


def test_the_service_keeps_a_bounded_number_of_commit_times() -> None:
    # a service runs for years: one entry per image for its whole life is a leak
    from bridge.service import COMMIT_TIMES_KEPT, BridgeStats

    stats = BridgeStats()
    for n in range(COMMIT_TIMES_KEPT + 500):
        stats.commit_seconds.append(float(n))
    assert len(stats.commit_seconds) == COMMIT_TIMES_KEPT
    assert stats.commit_seconds[-1] == COMMIT_TIMES_KEPT + 499.0  # the latest are kept

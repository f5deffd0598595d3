"""The link end to end: emulated scanner -> link -> bridge service -> real DCMTK storescp.

The cases of the link issue: occasional corruption repaired by retransmission, persistent
corruption never reaching the PACS, a disconnect mid-message, stalls, a real pty pair
through pyserial, the service's failure answers, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import peers
from emulated import emulate_processes
from pydicom import dcmread

from bridge.acrnema.commands import Command, Message
from bridge.acrnema.stack import MessageArrived
from bridge.forward.runner import RetryPolicy
from bridge.forward.scu import Destination
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Image, ImageResult, Scanner
from bridge.ports import open_port
from bridge.ports.base import WordPort
from bridge.ports.faults import FaultSpec, FaultyPort
from bridge.ports.loop import loop_pair
from bridge.service import Bridge
from bridge.spool.store import Spool
from bridge.testing.phantom import PhantomSpec, phantom_images, phantom_pixels

SIZE = 512  # the slices of a 1990s CT: 512 KiB of pixels each


@dataclass
class Run:
    results: list[ImageResult]
    bridge: Bridge
    scanner_endpoint: Endpoint
    fault_stats: dict[str, int]

    @property
    def stored(self) -> list[ImageResult]:
        return [r for r in self.results if r.ok]


@contextlib.contextmanager
def bridge_running(
    bridge_port: WordPort, spool: Spool, destinations: list[Destination]
) -> Iterator[Bridge]:
    bridge = Bridge(bridge_port, spool, destinations, policy=RetryPolicy(base=0.1, cap=0.5))
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="bridge-under-test")
    thread.start()
    try:
        yield bridge
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the service did not stop"


def send_study(
    tmp_path: Path,
    images: list[Image],
    destinations: list[Destination],
    *,
    faults: str | None = None,
    attempts: int = 3,
    ports: tuple[WordPort, WordPort] | None = None,
) -> Run:
    scanner_port, bridge_port = ports or loop_pair()
    faulty = FaultyPort(scanner_port, FaultSpec.parse(faults)) if faults else scanner_port
    spool = Spool(tmp_path / "spool")
    try:
        with bridge_running(bridge_port, spool, destinations) as bridge:
            endpoint = Endpoint(faulty)
            scanner = Scanner(endpoint, attempts=attempts, response_timeout=30.0)
            results = scanner.send(images)
            scanner.close(timeout=2.0)
            if destinations:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    counts = spool.counts(destinations[0].name)
                    if not counts["ready"] and not counts["in_flight"]:
                        break
                    time.sleep(0.1)
    finally:
        faulty.close()
        bridge_port.close()
        spool.close()
    return Run(results, bridge, endpoint, dict(getattr(faulty, "stats", {})))


def pixels_identical(received: dict[str, Path], count: int) -> int:
    """How many received objects carry exactly the pixels of their phantom slice."""
    same = 0
    for path in received.values():
        ds = dcmread(path)
        expected = phantom_pixels(
            PhantomSpec(
                rows=SIZE, columns=SIZE, slice_index=int(ds.InstanceNumber) - 1, slices=count
            )
        )
        same += bool(np.array_equal(ds.pixel_array, expected))
    return same


def destination(server: peers.StoreSCPPeer) -> Destination:
    return Destination(server.ae_title, server.host, server.port)


def test_occasional_corruption_is_repaired_a_study_arrives_pixel_identical(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    count = 20
    run = send_study(
        tmp_path,
        phantom_images(count, rows=SIZE),
        [destination(storescp)],
        faults="flip=1e-4,seed=11",
    )
    assert [r.ok for r in run.results] == [True] * count, [r.errors for r in run.results]
    assert run.fault_stats["flips"] > 100  # the wire really was noisy ...
    damaged = run.bridge.endpoint.stack.datalink.damaged_frames
    resent = run.scanner_endpoint.stack.datalink.retransmissions
    assert damaged > 0 and resent > 0  # ... the CRC and parity saw it, retransmission fixed it
    received = storescp.received()
    assert len(received) == count
    assert pixels_identical(received, count) == count


def test_persistent_corruption_never_reaches_the_pacs(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    count = 2
    run = send_study(
        tmp_path,
        phantom_images(count, rows=SIZE),
        [destination(storescp)],
        faults="flip=0.05,seed=5",
        attempts=2,
    )
    received = storescp.received()
    assert pixels_identical(received, count) == len(received)  # whatever arrived is intact
    assert len(received) == len(run.stored)
    for result in run.results:
        if not result.ok:  # a clear error on the scanner's side ...
            assert result.errors and all(e for e in result.errors)
            assert any("link down" in e or "CONNECT" in e or "aborted" in e for e in result.errors)
    assert not all(r.ok for r in run.results)
    stats = run.bridge.responder.stats  # ... and on the bridge's
    assert stats.link_resets + stats.lost > 0 and stats.last_error


def test_disconnect_mid_message_stores_nothing_partial_and_the_resend_succeeds(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    count = 3
    # about 1.3 images in: the second image is cut off half way
    run = send_study(
        tmp_path,
        phantom_images(count, rows=SIZE),
        [destination(storescp)],
        faults="disconnect=350000",
    )
    assert run.fault_stats["disconnects"] == 1
    assert all(r.ok for r in run.results), [r.errors for r in run.results]
    cut = [r for r in run.results if r.attempts > 1]
    assert len(cut) == 1 and "link down" in cut[0].errors[0]
    assert run.bridge.stats.images == count  # the cut copy was never stored
    received = storescp.received()
    assert len(received) == count and pixels_identical(received, count) == count


def test_stall_times_out_is_reported_and_does_not_hang(tmp_path: Path) -> None:
    count = 2
    start = time.monotonic()
    run = send_study(tmp_path, phantom_images(count, rows=128), [], faults="stall=2,at=20000")
    assert time.monotonic() - start < 30
    assert run.fault_stats["stalls"] == 1
    assert all(r.ok for r in run.results), [r.errors for r in run.results]
    stalled = [r for r in run.results if r.attempts > 1]
    assert stalled and "link down" in stalled[0].errors[0]
    assert run.bridge.stats.images == count


def test_the_whole_path_over_a_real_pty_pair_through_pyserial(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    socat = peers.require_tool("socat")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        ports = (open_port(f"serial://{a}"), open_port(f"rs485://{b}"))
        count = 3
        run = send_study(
            tmp_path, phantom_images(count, rows=SIZE), [destination(storescp)], ports=ports
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert all(r.ok for r in run.results), [r.errors for r in run.results]
    received = storescp.received()
    assert len(received) == count and pixels_identical(received, count) == count


# ---------------------------------------------------------------------- failure answers


def test_an_image_that_cannot_be_converted_is_refused_and_the_scanner_keeps_it(
    tmp_path: Path,
) -> None:
    good = phantom_images(1, rows=64)
    garbage = Image("not a data set", b"\x00\x00\x00\x00" * 64)
    run = send_study(tmp_path, [garbage, *good], [], attempts=1)
    assert [r.ok for r in run.results] == [False, True]
    assert "store failed: cannot_understand C000H (cannot convert" in run.results[0].errors[0]
    assert run.bridge.stats.failed == 1 and run.bridge.stats.images == 1


def test_a_spool_that_cannot_take_the_image_answers_out_of_resources(tmp_path: Path) -> None:
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool", reserve_bytes=1 << 60)  # "the disk is nearly full"
    try:
        with bridge_running(bridge_port, spool, []) as bridge:
            scanner = Scanner(Endpoint(scanner_port), attempts=1)
            [result] = scanner.send(phantom_images(1, rows=64))
            scanner.close(timeout=2.0)
    finally:
        scanner_port.close()
        bridge_port.close()
        spool.close()
    assert not result.ok
    assert "out_of_resources A700H" in result.errors[0]
    assert bridge.stats.failed == 1
    assert not list((tmp_path / "spool" / "objects").rglob("*.dcm"))


def test_echo_and_unknown_commands_are_answered(tmp_path: Path) -> None:
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool")
    answers = {}
    try:
        with bridge_running(bridge_port, spool, []):
            endpoint = Endpoint(scanner_port)
            scanner = Scanner(endpoint)
            assert scanner._connect() is None
            table = endpoint.stack.commands
            for field in (table.request("echo"), table.request("find"), 0x0777):
                command = Command(
                    field, endpoint.stack.next_message_id(), table.params.data_set_none
                )
                endpoint.stack.send(Message(command), endpoint.clock())
                deadline = time.monotonic() + 10
                while field not in answers and time.monotonic() < deadline:
                    for event in endpoint.poll(0.05):
                        if isinstance(event, MessageArrived):
                            answers[field] = event.message.command.status
            scanner.close(timeout=2.0)
    finally:
        scanner_port.close()
        bridge_port.close()
        spool.close()
    assert answers == {0x0030: 0x0000, 0x0020: 0xC000, 0x0777: 0xC000}


# ---------------------------------------------------------------------- the commands


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


def test_run_stops_cleanly_on_sigterm_and_never_half_stores(tmp_path: Path) -> None:
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    service = subprocess.Popen(
        _cli("run", "--port", f"tcp-listen://127.0.0.1:{port}", "--spool", str(spool_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not peers._port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        scanner_port = open_port(f"tcp://127.0.0.1:{port}")
        stored: list[ImageResult] = []
        endpoint = Endpoint(scanner_port)
        scanner = Scanner(endpoint, attempts=1, response_timeout=10.0, link_timeout=1.0)
        images = phantom_images(7, rows=SIZE)

        def on_result(result: ImageResult) -> None:
            stored.append(result)
            if len(stored) == 3:
                service.send_signal(signal.SIGTERM)  # while image 4 is on its way

        results = scanner.send(images, on_result)
        scanner_port.close()
        _, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, err
    ok = [r for r in results if r.ok]
    assert 3 <= len(ok) < len(images)
    assert all(not r.ok for r in results[len(ok) :])  # after the stop, nothing is acknowledged
    objects = list((spool_dir / "objects").rglob("*.dcm"))
    assert len(objects) == len(ok)  # every acknowledged image, and nothing half-stored
    assert not list((spool_dir / "tmp").iterdir())
    assert "SIGTERM" in err


def test_emulate_scanner_and_receiver_commands_over_tcp(tmp_path: Path) -> None:
    out = tmp_path / "received"
    scanner, code, err = emulate_processes(out, images=3, size=64)
    assert scanner.returncode == 0, scanner.stderr
    assert "3 of 3 images stored" in scanner.stderr
    assert code == 0, err
    files = sorted(out.glob("IMG*.acr"))
    assert len(files) == 3

"""The interface box from the host: BoxPort (box+ URLs) against the emulated box.

The sans-I/O pair back to back first (BoxHost and BoxModel: handshake, gaps, repeats,
retries), then the real path: BoxPort over a real pty through pyserial to the emulated
box, whose line side is ``loop://`` (words and parity both ways, credits throttling
without loss, READY, a version mismatch, unplug and replug, socat's pty pair going away),
the service storing a study from the emulated scanner over that path, and the same study
with the firmware's own C core (libboxcore.so, ctypes) playing the box. The port
conformance suite runs over a ``box+`` port too (tests/test_ports.py, kind ``box``).
"""

from __future__ import annotations

import contextlib
import gc
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import peers
import pytest
from test_ports import no_port_leak  # noqa: F401 - the descriptor and loop:// leak check

from bridge.acrnema.physical import WordBuffer, parity_bits
from bridge.forward.runner import RetryPolicy
from bridge.forward.scu import Destination
from bridge.link.endpoint import Endpoint
from bridge.link.requester import ImageResult, Scanner
from bridge.ports import LinkLost, PortError, PortUnavailableError, WordPort, open_port, registry
from bridge.ports import boxproto as bp
from bridge.ports.box import (
    TRANSITIONS,
    BoxError,
    BoxGone,
    BoxHost,
    BoxPort,
    BoxUp,
    BoxVersionError,
    HostState,
    PeerReady,
    WordsArrived,
    open_box,
    split_box_url,
)
from bridge.ports.bytestream import PipeStream, pipe_pair
from bridge.ports.loop import loop_pair
from bridge.profile import REFERENCE, Profile, profile_from_mapping, to_toml
from bridge.service import Bridge
from bridge.spool.store import Spool
from bridge.testing import ports as kit
from bridge.testing.box import (
    EMULATED_CAPABILITIES,
    BoxModel,
    EmulatedBox,
    FirmwareCore,
    emulated_bench,
)
from bridge.testing.phantom import phantom_images
from bridge.testing.store_scp import EmbeddedStore

pytest.importorskip("serial")

ROOT = Path(__file__).resolve().parents[1]
LINK_S = 5.0


def words(count: int, seed: int = 0, *, good_parity: bool = False) -> WordBuffer:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 1 << 16, count, dtype=np.uint16)
    parity = parity_bits(values, "odd") if good_parity else rng.integers(0, 2, count, np.uint8)
    return WordBuffer(values, parity.astype(np.uint8))


def receive(port: WordPort, count: int, timeout: float = 20.0) -> WordBuffer:
    return kit.receive(port, count, timeout)[0]


def same(a: WordBuffer, b: WordBuffer) -> bool:
    return np.array_equal(a.words, b.words) and np.array_equal(a.parity, b.parity)


def wait_both(a: WordPort, b: WordPort, timeout: float = LINK_S) -> None:
    """Both ends see each other (wait_peer on each forgets a drop not yet reported)."""
    deadline = time.monotonic() + timeout
    while not (a.wait_peer(0.02) & b.wait_peer(0.02)):
        assert time.monotonic() < deadline, "the two ends did not find each other"


@contextlib.contextmanager
def bridge_side(url: str) -> Iterator[BoxPort]:
    port = open_port(url)
    assert isinstance(port, BoxPort)
    try:
        yield port
    finally:
        port.close()


@contextlib.contextmanager
def box_on_pty(core: BoxModel | None = None) -> Iterator[tuple[EmulatedBox, WordPort]]:
    """An emulated box on a new pty, its line side one end of loop://; yields the box and
    the line's other end (the scanner's)."""
    line, peer = loop_pair()
    line.set_ready(False)
    try:
        with EmulatedBox(line, "pty://", core=core) as box:
            yield box, peer
            assert box.error is None
    finally:
        line.close()
        peer.close()


# --- sans-I/O: BoxHost and BoxModel back to back --------------------------------------


class Wire:
    """A BoxHost and a BoxModel joined in memory; frames can be held back or repeated."""

    def __init__(self, host: BoxHost, box: BoxModel) -> None:
        self.host, self.box, self.now = host, box, 0.0
        self.events: list[object] = []

    def run(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            out = self.host.data_to_send()
            if out:
                self.box.feed(out, self.now)
            self.box.poll(self.now)
            back = self.box.output(1 << 20, self.now)
            self.events += self.host.receive(back, self.now)
            if not out and not back:
                return


def test_the_transition_table_covers_every_box_message_in_every_state() -> None:
    box_types = [t for t in bp.MsgType if t & 0x80]
    for state in (HostState.HELLO, HostState.STARTING, HostState.UP):
        for kind in box_types:
            handler, _ = TRANSITIONS[(state, kind)]
            assert hasattr(BoxHost, handler)


def test_handshake_words_gaps_and_repeats_back_to_back() -> None:
    host, box = BoxHost("test"), BoxModel()
    wire = Wire(host, box)
    host.connect(0.0)
    with pytest.raises(BoxError, match="lacks capability ROLE_B"):  # an emulated line side
        wire.run()
    host = BoxHost("test", duplex=True)
    wire = Wire(host, box)
    host.connect(0.0)
    wire.run()
    assert host.state is HostState.UP and [type(e) for e in wire.events] == [BoxUp]
    box.set_peer_ready(True, 0.0)
    wire.run()
    assert wire.events[-1] == PeerReady(True) and host.link_up
    assert host.credit == box.info.out_words
    sent = words(5000, seed=1)
    assert host.send_words(sent) == 5000
    wire.run()
    assert same(box.line_take(10_000, 0.0), sent)

    first, second = words(100, seed=2, good_parity=True), words(50, seed=3, good_parity=True)
    box.line_put(first, 0.0)
    box.poll(0.0)
    lost_frame = box.output(1 << 20, 0.0)  # never reaches the host
    box.line_put(second, 0.0)
    box.poll(0.0)
    frame = box.output(1 << 20, 0.0)
    events = host.receive(frame, 0.0)
    arrived = [e for e in events if isinstance(e, WordsArrived)]
    assert len(arrived) == 1 and same(arrived[0].buffer, second)
    assert host.stats["gaps"] == 1 and host.stats["lost_words"] == 100
    assert host.stats["lost_frames"] >= 1 and lost_frame
    asked = bp.BoxFrameDecoder(sender="host").feed(host.data_to_send())
    assert [e.message for e in asked if isinstance(e, bp.BoxFrame)] == [bp.Query(bp.MsgType.STATS)]
    assert not [e for e in host.receive(frame, 0.0) if isinstance(e, WordsArrived)]
    assert host.stats["repeated_words"] == 50


def test_no_answer_is_retried_then_the_box_is_gone() -> None:
    host = BoxHost("test", reply_timeout=1.0, attempts=3)
    host.connect(0.0)
    assert host.data_to_send().startswith(b"\0")
    assert host.handle_timer(0.5) == []
    assert host.handle_timer(1.1) == [] and host.stats["resent_requests"] == 1
    assert host.handle_timer(2.2) == [] and host.stats["resent_requests"] == 2
    assert host.handle_timer(3.1) == [BoxGone("nothing from the box for 3 s")]
    assert host.state is HostState.DOWN
    host.connect(10.0)
    host.handle_timer(11.1)
    host._last_rx = 12.1  # something came, but no INFO
    host.handle_timer(12.2)
    events = host.handle_timer(13.3)
    assert events == [BoxGone("no INFO to HELLO within 1 s, 3 tries")]


# --- the real path: BoxPort over a pty to the emulated box ------------------------------


def test_words_and_parity_both_ways() -> None:
    with emulated_bench() as (url, peer), bridge_side(url) as port:
        wait_both(port, peer)
        assert port.info is not None and port.info.board == "emulated box"
        for count, seed in ((1, 1), (7, 2), (20_000, 3)):
            sent = words(count, seed)
            port.send(sent)
            assert same(receive(peer, count), sent)
            back = words(count, seed + 100)
            peer.send(back)
            assert same(receive(port, count), back)  # the parity line as it came, bad or not
        port.query_stats()
        deadline = time.monotonic() + LINK_S
        while "box_words_in" not in port.stats and time.monotonic() < deadline:
            port.recv(0.05)
        stats = port.stats
        assert stats["box_words_in"] == stats["words_in"] == 20_008
        assert stats["box_words_out"] == stats["words_out"] == 20_008
        assert stats["box_perr_in"] > 0 and stats["error_parity"] > 0  # bad ones reported
        assert stats["gaps"] == stats["bad_frames"] == stats["over_credit"] == 0


def test_over_tcp_to_an_emulated_box() -> None:
    line, peer = loop_pair()
    line.set_ready(False)
    try:
        with EmulatedBox(line, "tcp-listen://127.0.0.1:0") as box:
            url = box.host_url()
            assert url.startswith("box+tcp://127.0.0.1:") and url.endswith("?duplex=1")
            with bridge_side(url) as port:
                wait_both(port, peer)
                port.send(words(500, seed=4))
                assert same(receive(peer, 500), words(500, seed=4))
                peer.send(words(500, seed=5))
                assert same(receive(port, 500), words(500, seed=5))
            assert box.error is None
    finally:
        line.close()
        peer.close()


def test_credits_throttle_both_ways_without_loss() -> None:
    core = BoxModel(out_words=1024, in_words=1024)
    with box_on_pty(core) as (box, peer), bridge_side(box.host_url(window="512")) as port:
        wait_both(port, peer)
        count = 100_000
        sent = words(count, seed=5, good_parity=True)
        join = threading.Thread(target=port.send, args=(sent,))
        join.start()
        try:
            got = receive(peer, count)
        finally:
            join.join(30)
        assert same(got, sent)
        assert box.counters["overflow_words"] == 0 and "error_overflow" not in port.stats

        back = words(count, seed=6, good_parity=True)
        peer.send(back)  # the loop takes it all at once; the box takes 1024 at a time
        time.sleep(0.3)  # the host reads nothing yet: the box's in ring fills and stays full
        assert core.max_in_ring == 1024
        parts = []
        for _ in range(20):  # small reads, slowly: the host's 512-word credit paces the box
            parts.append(port.recv(0.05))
        rest = receive(port, count - sum(len(p.words) for p in parts))
        got = WordBuffer(
            np.concatenate([p.words for p in [*parts, rest]]),
            np.concatenate([p.parity for p in [*parts, rest]]),
        )
        assert same(got, back)
        stats = port.stats
        assert stats["over_credit"] == stats["gaps"] == stats["discarded"] == 0
        assert core.max_in_ring <= 1024


def test_ready_lines_and_link_down() -> None:
    with emulated_bench() as (url, peer), bridge_side(url) as port:
        wait_both(port, peer)
        peer.set_ready(False)
        with pytest.raises(LinkLost, match="the peer dropped READY"):
            port.recv(LINK_S)
        assert not port.peer_ready and not port.wait_peer(0.1)
        peer.set_ready(True)
        wait_both(port, peer)
        port.set_ready(False)
        with pytest.raises(LinkLost):
            peer.recv(LINK_S)
        with pytest.raises(LinkLost, match="this side's READY"):
            port.send(words(3))
        port.set_ready(True)
        wait_both(port, peer)
        port.send(words(3, seed=9))
        assert same(receive(peer, 3), words(3, seed=9))


def test_a_box_of_another_protocol_version_is_refused_clearly() -> None:
    with box_on_pty(BoxModel(version=2)) as (box, _), bridge_side(box.host_url()) as port:
        with pytest.raises(BoxVersionError, match=r"box protocol version 2.*speaks 1 to 1"):
            port.wait_peer(LINK_S)
        assert not port.connected


def test_a_box_wired_otherwise_or_without_duplex_is_refused_clearly() -> None:
    pins = list(BoxModel().info.pins)
    pins[bp.LINES.index("READY_A")] = (45, 46)
    with box_on_pty(BoxModel(pins=tuple(pins))) as (box, _):
        with bridge_side(box.host_url()) as port, pytest.raises(BoxError) as info:
            port.wait_peer(LINK_S)
        assert "READY_A on pins 45/46 (profile: 41/42)" in str(info.value)
        url = box.host_url().replace("?duplex=1", "")
        with bridge_side(url) as port, pytest.raises(BoxError, match=r"ROLE_B.*duplex=1"):
            port.wait_peer(LINK_S)


def test_unplug_is_a_clear_error_and_replug_brings_the_link_back() -> None:
    with emulated_bench() as bench, bridge_side(bench.bridge_url) as port:
        peer = bench.peer_port
        wait_both(port, peer)
        device = bench.bridge_url.split("://", 1)[1].split("?")[0]
        bench.unplug()
        with pytest.raises(LinkLost) as info:
            port.recv(LINK_S)
        assert device in str(info.value) and "is gone" in str(info.value)
        with pytest.raises(LinkLost, match="is gone"):
            port.send(words(2))  # again, until the box is back
        assert not port.wait_peer(0.3)
        bench.replug()
        assert port.wait_peer(LINK_S)
        wait_both(port, peer)
        port.send(words(64, seed=11))
        assert same(receive(peer, 64), words(64, seed=11))
        peer.send(words(64, seed=12))
        assert same(receive(port, 64), words(64, seed=12))
        assert port.stats["handshakes"] == 2


def test_a_box_that_stops_answering_is_gone() -> None:
    host_end, box_end = pipe_pair()
    line, peer = loop_pair()
    line.set_ready(False)
    box = EmulatedBox(line, box_end).start()
    port = BoxPort("box+pipe://test", host_end, duplex=True, reply_timeout=0.2)
    try:
        wait_both(port, peer)
        box.stop()  # the box hangs: its end of the pipe stays open, nothing answers
        port.set_ready(False)
        assert not port.wait_peer(1.0)
        with pytest.raises(LinkLost, match=r"gone \(no REPLY to LINE_SET within 0.2 s, 3 tries"):
            port.recv(0.1)
    finally:
        port.close()
        box.stop()
        box_end.release()
        line.close()
        peer.close()


def _start_socat(a: Path, b: Path) -> subprocess.Popen[bytes]:
    socat = peers.require_tool("socat")
    process = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        assert time.monotonic() < deadline and process.poll() is None, "socat did not start"
        time.sleep(0.02)
    return process


def _stop_socat(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(5)


def test_socat_pty_pair_unplugged_and_replugged(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    socat = _start_socat(a, b)
    line, peer = loop_pair()
    line.set_ready(False)
    try:
        with (
            EmulatedBox(line, f"serial://{b}") as box,
            bridge_side(f"box+serial://{a}?duplex=1") as port,
        ):
            wait_both(port, peer)
            _stop_socat(socat)
            with pytest.raises(LinkLost, match=re.escape(f"serial://{a}")):
                port.recv(LINK_S)
            socat = _start_socat(a, b)
            assert port.wait_peer(LINK_S)
            wait_both(port, peer)
            port.send(words(100, seed=13))
            assert same(receive(peer, 100), words(100, seed=13))
            assert box.error is None
    finally:
        _stop_socat(socat)
        line.close()
        peer.close()


def test_urls() -> None:
    assert split_box_url("box+serial:///dev/x?baud=9600&duplex=1&window=8") == (
        "serial:///dev/x?baud=9600",
        {"duplex": True, "window": 8},
    )
    with pytest.raises(PortError, match="role"):
        split_box_url("box+tcp://h:1?role=c")
    with pytest.raises(PortError, match="give the byte stream"):
        open_box("box+")
    with pytest.raises(PortError, match="not a byte stream"):
        open_box("box+loop://x")
    with pytest.raises(PortError, match="unknown port"):
        open_port("box+carrier://x")
    with pytest.raises(PortError, match=r"unknown option 'speed'.*box\+ options: profile"):
        open_port("box+tcp://127.0.0.1:1?speed=3&connect_timeout=0.1")
    with pytest.raises(PortError, match="profile"):
        open_port("box+pty://?profile=/no/such/profile.toml")
    port = open_port("box+pty://?reply_timeout=0.1")
    try:
        assert not port.wait_peer(0.2) and not port.peer_ready
        with pytest.raises(LinkLost):
            port.recv(0.05)
    finally:
        port.close()
    with pytest.raises(PortError, match="closed"):
        port.recv(0.05)


def test_the_profile_from_the_url_configures_the_box() -> None:
    site = profile_from_mapping({"physical": {"parity": "even", "active_low": ["REQ"]}})
    with emulated_bench(site) as (url, peer), bridge_side(url) as port:
        assert "profile=" in url
        wait_both(port, peer)
        assert port.host.configure.parity is bp.Parity.EVEN
        assert port.host.configure.active_low == 1 << bp.LINES.index("REQ")
        with pytest.raises(PortError, match="a profile in the URL and another"):
            open_box(url, REFERENCE)


def test_open_port_carries_the_profile_to_a_box_port() -> None:
    """open_port(url, profile=...) configures the box, as --profile does."""
    site = profile_from_mapping({"physical": {"parity": "even", "active_low": ["REQ"]}})
    with emulated_bench(site) as (url, peer):
        base, _, query = url.partition("?")
        bare = base + "?" + "&".join(o for o in query.split("&") if not o.startswith("profile="))
        with open_port(bare, profile=site) as port:
            assert isinstance(port, BoxPort)
            wait_both(port, peer)
            assert port.host.configure.parity is bp.Parity.EVEN
            assert port.host.configure.active_low == 1 << bp.LINES.index("REQ")
        with pytest.raises(PortError, match="a profile in the URL and another"):
            open_port(url, profile=REFERENCE)


_PIPES: dict[str, PipeStream] = {}


def pipe_factory(url: str) -> PipeStream:
    """A plug-in's byte-stream scheme, ``pipe://NAME``."""
    return _PIPES.pop(url.partition("://")[2].partition("?")[0])


def test_box_prefix_composes_with_a_plug_in_byte_stream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """box+ is handled once: any byte-stream scheme, a plug-in's too, and spy+ before it."""
    entry = EntryPoint("pipe", f"{__name__}:pipe_factory", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    host_end, box_end = pipe_pair()
    _PIPES["box"] = host_end
    line, peer = loop_pair()
    line.set_ready(False)
    box = EmulatedBox(line, box_end).start()
    try:
        trace = tmp_path / "t.bin"
        with open_port(f"spy+box+pipe://box?duplex=1&trace={trace}") as port:
            wait_both(port, peer)
            port.send(words(300, seed=6))
            assert same(receive(peer, 300), words(300, seed=6))
        assert box.error is None
    finally:
        box.stop()
        box_end.release()
        line.close()
        peer.close()


# --- the full path -------------------------------------------------------------------


def _send_study(
    tmp_path: Path,
    url: str,
    peer: WordPort,
    *,
    count: int = 3,
    destinations: list[Destination] | None = None,
    after: Callable[[ImageResult], None] | None = None,
) -> Bridge:
    spool = Spool(tmp_path / "spool")
    port = open_port(url)
    policy = RetryPolicy(base=0.1, cap=0.5)
    bridge = Bridge(port, spool, destinations or [], policy=policy)
    stop = threading.Event()

    def serve() -> None:
        try:
            bridge.run(stop)
        finally:
            spool.close()  # this thread's database connection

    thread = threading.Thread(target=serve, name="bridge-under-test")
    thread.start()
    try:
        scanner = Scanner(Endpoint(peer), attempts=2, response_timeout=20.0, link_timeout=10)
        results = scanner.send(phantom_images(count, rows=128), after)
        scanner.close(timeout=2.0)
        if destinations:
            deadline = time.monotonic() + 30
            while spool.counts()["done"] < count and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
        port.close()
    try:
        assert not thread.is_alive(), "the service did not stop"
        assert all(r.ok for r in results), [r.errors for r in results]
        assert bridge.stats.images == count  # each image stored once
        assert spool.stats()["objects"] == count
        if destinations:
            assert spool.counts()["done"] == count
    finally:
        spool.close()
        gc.collect()  # the database connections of the forwarder's threads, which ended
    return bridge


def test_full_path_service_over_a_pty_to_the_emulated_box_and_scanner(tmp_path: Path) -> None:
    with emulated_bench() as (url, peer):
        _send_study(tmp_path, url, peer)


def test_an_unplug_mid_study_loses_nothing_and_forwarding_goes_on(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "pacs") as pacs, emulated_bench() as bench:
        unplugged: list[float] = []

        def after(result: ImageResult) -> None:
            if not unplugged:  # after the first image: pull the plug, put it back
                unplugged.append(time.monotonic())
                bench.unplug()
                time.sleep(0.3)
                bench.replug()

        destination = Destination(pacs.ae_title, "127.0.0.1", pacs.port)
        bridge = _send_study(
            tmp_path,
            bench.bridge_url,
            bench.peer_port,
            count=4,
            destinations=[destination],
            after=after,
        )
        assert unplugged and bridge.endpoint.resets >= 1
        assert pacs.wait_for(4, 10) and len(pacs.received) == 4


@pytest.fixture(scope="module")
def libboxcore() -> str:
    if shutil.which("make") is None or (shutil.which("cc") or shutil.which("gcc")) is None:
        peers.unavailable(
            "no C compiler: libboxcore.so not built", require_env="BRIDGE_REQUIRE_PEERS"
        )
    done = subprocess.run(
        ["make", "-C", str(ROOT / "firmware"), "lib"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return str(ROOT / "firmware" / "build" / "libboxcore.so")


def test_firmware_in_the_loop_stores_the_study(tmp_path: Path, libboxcore: str) -> None:
    with emulated_bench(firmware=True) as bench:
        assert bench.box is not None and isinstance(bench.box.core, FirmwareCore)
        _send_study(tmp_path, bench.bridge_url, bench.peer_port)
        counters = bench.box.counters
        assert counters["words_in"] > 0 and counters["words_out"] > 0
        assert counters["overflow_words"] == counters["lost_words"] == 0


def test_firmware_box_without_the_library(tmp_path: Path) -> None:
    with pytest.raises(PortUnavailableError, match=r"make -C firmware lib"):
        FirmwareCore(str(tmp_path / "libboxcore.so"))


# The bus-shape knobs (docs/box-protocol.md, CONFIGURE's bus-shape fields): each one an
# image round trip through the emulated box with the knob set, or a clear refusal.
_SHAPES = {
    "no-READY": {"control_lines": ["DIR", "BREQ", "PERR"]},
    "no-PERR": {"control_lines": ["DIR", "BREQ", "READY"]},
    "no-DIR": {"control_lines": ["BREQ", "READY", "PERR"]},
    "no-BREQ": {"control_lines": ["DIR", "READY", "PERR"]},
    "parity-per-byte": {"parity_lines": 2, "pins": {"PARITY_HI": [49, 50]}},
    "two-phase": {"handshake": "two-phase", "control_lines": ["DIR", "BREQ", "READY"]},
    "strobe": {"handshake": "strobe", "control_lines": ["DIR", "BREQ", "READY"]},
    "all": {
        "handshake": "two-phase",
        "control_lines": ["DIR"],
        "parity_lines": 2,
        "parity": "even",
        "pins": {"PARITY_HI": [49, 50]},
    },
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_each_bus_shape_knob_round_trips_images_through_the_box(tmp_path: Path, shape: str) -> None:
    site = profile_from_mapping({"physical": _SHAPES[shape]})
    assert bp.Configure.from_profile(site.physical).shape()  # the knob reaches CONFIGURE
    with emulated_bench(site) as bench:
        _send_study(tmp_path, bench.bridge_url, bench.peer_port, count=1)
        assert bench.box is not None
        assert (
            bench.box.core.config.shape()
            == bp.Configure.from_profile(  # type: ignore[attr-defined]
                site.physical
            ).shape()
        )


def test_the_firmware_core_runs_every_bus_shape_knob_at_once(
    tmp_path: Path, libboxcore: str
) -> None:
    """Two-phase, no READY/BREQ/PERR, even parity on two lines, through the C core: it
    took the shape (its READY_B is never driven while it is up) and the images arrive."""
    site = profile_from_mapping({"physical": _SHAPES["all"]})
    seen: list[tuple[bool, int]] = []
    with emulated_bench(site, firmware=True) as bench:
        core = bench.box.core if bench.box is not None else None
        assert isinstance(core, FirmwareCore)

        def after(result: ImageResult) -> None:
            seen.append((core.ready, core.lib.boxsim_lines(core.sim)))

        _send_study(tmp_path, bench.bridge_url, bench.peer_port, count=1, after=after)
    ready_b = 1 << bp.LINES.index("READY_B")
    assert seen and all(ready and not lines & ready_b for ready, lines in seen)


@pytest.mark.parametrize("mode", ["two-phase", "strobe"])
@pytest.mark.parametrize("firmware", [False, True])
def test_a_handshake_with_perr_is_refused_with_the_reason(
    mode: str, firmware: bool, request: pytest.FixtureRequest
) -> None:
    """Two-phase and strobe have no per-word answer: PERR cannot be on such a bus."""
    if firmware:
        request.getfixturevalue("libboxcore")
    site = profile_from_mapping({"physical": {"handshake": mode}})
    with (
        emulated_bench(site, firmware=firmware) as bench,
        bridge_side(bench.bridge_url) as port,
        pytest.raises(BoxError) as info,
    ):
        port.wait_peer(LINK_S)
    assert (
        f"the box refuses handshake={mode}: {mode}: no PERR answer; control_lines must omit PERR"
        in str(info.value)
    )


def test_a_board_without_the_handshake_refuses_it() -> None:
    board = BoxModel(capabilities=EMULATED_CAPABILITIES & ~bp.Capability.STROBE)
    site = profile_from_mapping(
        {"physical": {"handshake": "strobe", "control_lines": ["DIR", "BREQ", "READY"]}}
    )
    with box_on_pty(board) as (box, _), tempfile.TemporaryDirectory() as folder:
        url = box.host_url() + "&profile=" + str(_profile_file(site, Path(folder)))
        with bridge_side(url) as port, pytest.raises(BoxError) as info:
            port.wait_peer(LINK_S)
    assert "the box refuses handshake=strobe: strobe handshake: not on this board" in str(
        info.value
    )


def _profile_file(profile: Profile, folder: Path) -> Path:
    path = folder / "profile.toml"
    path.write_text(to_toml(profile), encoding="utf-8")
    return path


def _drain(model: BoxModel) -> list[bp.BoxMessage]:
    decoder = bp.BoxFrameDecoder(sender="box")
    out = []
    while data := model.output(4096, 0.0):
        out += [e.message for e in decoder.feed(data) if isinstance(e, bp.BoxFrame)]
    return out


def test_an_older_box_firmware_is_too_old_for_a_bus_shape(tmp_path: Path) -> None:
    old = BoxModel(capabilities=EMULATED_CAPABILITIES & ~bp.Capability.SHAPE)
    site = profile_from_mapping({"physical": {"handshake": "two-phase"}})
    with box_on_pty(old) as (box, _):
        url = box.host_url() + "&profile=" + str(_profile_file(site, tmp_path))
        with bridge_side(url) as port, pytest.raises(BoxError) as info:
            port.wait_peer(LINK_S)
    assert "the box firmware is too old for handshake=two-phase" in str(info.value)


def test_a_configure_field_the_box_does_not_know_is_refused_by_name() -> None:
    """A newer host's field (tag 9) reaches a box that knows fields 1-3 only."""
    model = BoxModel()
    model.feed(bp.encode_frame(bp.Configure(duplex=True, extra=bytes([9, 1, 1])), 0), 0.0)
    replies = [m for m in _drain(model) if isinstance(m, bp.Reply)]
    assert replies == [
        bp.Reply(
            bp.MsgType.CONFIGURE, 0, bp.Status.UNKNOWN_FIELD, 9,
            "a CONFIGURE field this firmware does not know",
        )
    ]  # fmt: skip

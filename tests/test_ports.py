"""Ports: one conformance suite over every port kind, then what is special to each.

The conformance suite is the shipped kit (``bridge.testing.ports``: ``PortConformance``,
as plug-in authors and hwtests/ use it); here it runs on each kind in ``KINDS``:
``loop``, ``tcp`` (tcp-listen on 127.0.0.1 port 0 and tcp connect), ``serial`` and
``rs485`` (a pty: ``pty://`` on the master, the slave opened through pyserial),
``spy+loop``, ``spy+tcp`` and ``box`` (``box+serial://`` over a pty to the emulated
interface box, whose line side is ``loop://``: ``bridge.testing.box.emulated_bench``).
Every test fails if it leaves a file descriptor (socket, pty, device, trace file) or a
``loop://`` name open; conftest.py fails one that leaves a thread running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.acrnema.physical import WordBuffer
from bridge.engine import PeerReady, WordsArrived
from bridge.ports import (
    LinkLost,
    PortError,
    PortUnavailableError,
    WordPort,
    available_schemes,
    format_trace,
    loop_pair,
    open_port,
    read_trace,
    registry,
)
from bridge.ports import loop as loop_module
from bridge.ports.bytestream import PipeStream, pipe_pair
from bridge.ports.driver import StreamWordPort
from bridge.ports.spy import SpyPort, split_spy_url
from bridge.profile import REFERENCE
from bridge.testing.feeding import check_feeding
from bridge.testing.ports import (
    PortConformance,
    check_port_pair,
    receive,
    same,
    wait_both,
    words,
)
from bridge.wordstream import (
    LineStateUnit,
    WordStreamDecoder,
    WordStreamEngine,
    encode_line_state,
    encode_words,
)

KINDS = ["loop", "tcp", "serial", "rs485", "spy+loop", "spy+tcp", "box"]
STREAM_KINDS = {"tcp", "serial", "rs485", "spy+tcp"}
LINK_S = 5.0  # how long two sides may take to find each other


def expect_down(action: Callable[[], Any]) -> None:
    with pytest.raises(LinkLost):
        action()


# ------------------------------------------------------------------------ fixtures


def _open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the directory listing's own descriptor
        fds.add(int(name))
    return fds


@pytest.fixture(autouse=True)
def no_port_leak() -> Iterator[None]:
    """Fail a test that leaves a descriptor or a loop:// name open."""
    fds = _open_fds() if os.path.isdir("/proc/self/fd") else None
    names = set(loop_module.active_names())
    yield
    leaked_names = set(loop_module.active_names()) - names
    assert not leaked_names, f"loop:// names left open: {sorted(leaked_names)}"
    if fds is not None:
        leaked = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in _open_fds() - fds}
        assert not leaked, f"descriptors left open: {leaked}"


@dataclass
class Pair:
    kind: str
    a: WordPort
    b: WordPort
    traces: list[Path] = field(default_factory=list)
    cleanup: list[Callable[[], object]] = field(default_factory=list)

    def close(self) -> None:
        self.a.close()
        self.b.close()
        for step in self.cleanup:
            step()


_names = iter(range(1 << 30))


def open_pair(kind: str, tmp_path: Path) -> Pair:
    """Two connected ends of ``kind`` (A, B), not yet waited for."""
    name = f"conformance-{next(_names)}"
    if kind == "loop":
        return Pair(kind, open_port(f"loop://{name}"), open_port(f"loop://{name}"))
    if kind == "spy+loop":
        trace = tmp_path / f"{name}.bin"
        a = open_port(f"spy+loop://{name}?trace={trace}")
        return Pair(kind, a, open_port(f"loop://{name}"), [trace])
    if kind in ("tcp", "spy+tcp"):
        if kind == "tcp":
            a = open_port("tcp-listen://127.0.0.1:0")
            address = a.address  # type: ignore[attr-defined]
            traces = []
        else:
            trace = tmp_path / f"{name}.bin"
            a = open_port(f"spy+tcp-listen://127.0.0.1:0?trace={trace}")
            address = a.port.address  # type: ignore[attr-defined]
            traces = [trace]
        try:
            b = open_port(f"tcp://127.0.0.1:{address[1]}")
        except BaseException:
            a.close()
            raise
        return Pair(kind, a, b, traces)
    if kind == "box":
        pytest.importorskip("serial")
        from bridge.testing.box import emulated_bench

        bench = contextlib.ExitStack()
        url, peer = bench.enter_context(emulated_bench())
        try:
            return Pair(kind, open_port(url), peer, cleanup=[bench.close])
        except BaseException:
            bench.close()
            raise
    if kind in ("serial", "rs485"):
        pytest.importorskip("serial")
        master = open_port("pty://")
        try:
            device = master.device  # type: ignore[attr-defined]
            return Pair(kind, open_port(f"{kind}://{device}?baud=115200"), master)
        except BaseException:
            master.close()
            raise
    raise AssertionError(kind)


def listener_of(link: Pair) -> Any:
    return link.a.port if isinstance(link.a, SpyPort) else link.a


# --------------------------------------------------------------- conformance suite


class TestConformance(PortConformance):
    """The shipped conformance kit (bridge.testing.ports) over every kind of port."""

    @pytest.fixture(autouse=True, params=KINDS)
    def _kind(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind, self.tmp_path = request.param, tmp_path

    @contextlib.contextmanager
    def open_pair(self) -> Iterator[tuple[WordPort, WordPort]]:
        link = open_pair(self.kind, self.tmp_path)
        try:
            yield link.a, link.b
        finally:
            link.close()


def test_the_kit_runs_as_a_function_on_any_pair() -> None:
    """check_port_pair: the same checks, called on a factory of pairs (no subclass)."""

    @contextlib.contextmanager
    def loop_ends() -> Iterator[tuple[WordPort, WordPort]]:
        a, b = loop_pair()
        try:
            yield a, b
        finally:
            a.close()
            b.close()

    check_port_pair(loop_ends)


def test_the_kit_names_the_check_that_fails() -> None:
    """A port that breaks a rule fails the kit, and the message names the rule."""

    class Deaf(WordPort):  # loses every word it is given
        def __init__(self, port: WordPort) -> None:
            self.port = port

        def send(self, buffer: WordBuffer) -> None:
            self.port.send(WordBuffer(buffer.words[:0], buffer.parity[:0]))

        def recv(self, timeout: float) -> WordBuffer:
            return self.port.recv(min(timeout, 0.05))

        def set_ready(self, ready: bool) -> None:
            self.port.set_ready(ready)

        @property
        def peer_ready(self) -> bool:
            return self.port.peer_ready

        def wait_peer(self, timeout: float) -> bool:
            return self.port.wait_peer(timeout)

        def close(self) -> None:
            self.port.close()

    @contextlib.contextmanager
    def deaf_ends() -> Iterator[tuple[WordPort, WordPort]]:
        a, b = loop_pair()
        try:
            yield Deaf(a), b
        finally:
            a.close()
            b.close()

    with pytest.raises(AssertionError, match="check_small_transfer_both_ways: only 0 of 10"):
        check_port_pair(deaf_ends)


# ------------------------------------------------------------------ per kind


@pytest.mark.parametrize("kind", ["loop", "spy+loop"])
def test_words_in_transit_arrive_before_the_drop(kind: str, tmp_path: Path) -> None:
    """Words sent before a drop come first, then the drop (tests/test_port_close_order.py)."""
    link = open_pair(kind, tmp_path)
    try:
        wait_both(link.a, link.b)
        link.a.send(words(100))
        link.a.set_ready(False)
        got, _ = receive(link.b, 100)
        assert same(got, words(100))
        expect_down(lambda: link.b.recv(0.1))
        link.a.set_ready(True)
        wait_both(link.a, link.b)
        assert len(link.b.recv(0.1).words) == 0
    finally:
        link.close()


@pytest.mark.parametrize("kind", ["tcp", "spy+tcp"])
def test_tcp_reconnects_after_the_listener_drops_the_connection(kind: str, tmp_path: Path) -> None:
    link = open_pair(kind, tmp_path)
    try:
        wait_both(link.a, link.b)
        listener_of(link).drop_connection()
        expect_down(lambda: link.b.recv(LINK_S))
        expect_down(lambda: link.a.recv(0.1))
        wait_both(link.a, link.b)
        link.b.send(words(8, seed=21))
        got, _ = receive(link.a, 8)
        assert same(got, words(8, seed=21))
        link.a.send(words(9, seed=22))
        got, _ = receive(link.b, 9)
        assert same(got, words(9, seed=22))
    finally:
        link.close()


def test_tcp_client_before_the_listener() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port_number = probe.getsockname()[1]
    probe.close()
    client = open_port(f"tcp://127.0.0.1:{port_number}?connect_timeout=0.2")
    try:
        assert not client.wait_peer(0.3)
        expect_down(lambda: client.recv(0.1))
        listener = open_port(f"tcp-listen://127.0.0.1:{port_number}")
        try:
            wait_both(client, listener)
            client.send(words(4, seed=23))
            got, _ = receive(listener, 4)
            assert same(got, words(4, seed=23))
        finally:
            listener.close()
    finally:
        client.close()


def test_tcp_listener_accepts_the_next_connection() -> None:
    listener = open_port("tcp-listen://127.0.0.1:0")
    address = listener.address  # type: ignore[attr-defined]
    try:
        first = open_port(f"tcp://127.0.0.1:{address[1]}")
        wait_both(listener, first)
        first.close()
        expect_down(lambda: listener.recv(LINK_S))
        second = open_port(f"tcp://127.0.0.1:{address[1]}")
        try:
            wait_both(listener, second)
            second.send(words(3, seed=24))
            got, _ = receive(listener, 3)
            assert same(got, words(3, seed=24))
        finally:
            second.close()
    finally:
        listener.close()


def test_tcp_urls() -> None:
    with pytest.raises(PortError, match="HOST:PORT"):
        open_port("tcp://127.0.0.1")
    with pytest.raises(PortError, match="unknown option 'speed'"):
        open_port("tcp://127.0.0.1:1?speed=3")
    with pytest.raises(PortError, match="write_timeout"):
        open_port("tcp-listen://127.0.0.1:0?write_timeout=-1")
    with pytest.raises(PortError, match="cannot resolve"):
        open_port("tcp://no-such-host.invalid:5104?connect_timeout=0.1")
    listener = open_port("tcp-listen://127.0.0.1:0")
    try:
        taken = listener.address[1]  # type: ignore[attr-defined]
        with pytest.raises(PortError, match="cannot listen"):
            open_port(f"tcp-listen://127.0.0.1:{taken}")
    finally:
        listener.close()


def test_a_peer_that_stops_reading_counts_as_gone() -> None:
    listener = open_port("tcp-listen://127.0.0.1:0?write_timeout=0.3")
    address = listener.address  # type: ignore[attr-defined]
    client = open_port(f"tcp://127.0.0.1:{address[1]}")
    try:
        wait_both(listener, client)
        start = time.monotonic()
        with pytest.raises(LinkLost, match="stopped reading"):
            for _ in range(200):  # far more than the socket buffers hold
                listener.send(words(1 << 18))
        assert time.monotonic() - start < 20
        assert not listener.peer_ready
    finally:
        listener.close()
        client.close()


@pytest.mark.parametrize("kind", ["serial", "rs485"])
def test_serial_end_reopens_and_finds_the_peer(kind: str, tmp_path: Path) -> None:
    link = open_pair(kind, tmp_path)
    try:
        wait_both(link.a, link.b)
        device = link.b.device  # type: ignore[attr-defined]
        link.a.close()
        expect_down(lambda: link.b.recv(LINK_S))
        link.a = open_port(f"{kind}://{device}")
        wait_both(link.a, link.b)
        link.b.send(words(6, seed=31))
        got, _ = receive(link.a, 6)
        assert same(got, words(6, seed=31))
    finally:
        link.close()


def test_serial_restart_without_dropping_ready_is_answered(tmp_path: Path) -> None:
    """A peer that comes back without the other side having seen it go (power cut)."""
    pytest.importorskip("serial")
    master = open_port("pty://")
    device = master.device  # type: ignore[attr-defined]
    try:
        first = open_port(f"serial://{device}")
        wait_both(first, master)
        first._closed = True  # type: ignore[attr-defined] # vanish without a goodbye
        first._release()  # type: ignore[attr-defined]
        second = open_port(f"serial://{device}")
        try:
            wait_both(second, master)
            second.send(words(5, seed=32))
            got, _ = receive(master, 5)
            assert same(got, words(5, seed=32))
        finally:
            second.close()
    finally:
        master.close()


def test_rs485_on_a_pty_falls_back_to_plain_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.ports.serial")
    link = open_pair("rs485", tmp_path)
    link.close()
    assert "plain mode" in caplog.text


def test_serial_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("serial")
    with pytest.raises(PortError, match="cannot open"):
        open_port(f"serial://{tmp_path}/no-such-device")
    with pytest.raises(PortError, match="give a device"):
        open_port("serial://")
    with pytest.raises(PortError, match="baud"):
        open_port(f"serial://{tmp_path}/x?baud=fast")
    monkeypatch.setitem(sys.modules, "serial", None)  # pyserial not installed
    with pytest.raises(PortUnavailableError, match=re.escape("acrnema-bridge[serial]")):
        open_port("serial:///dev/ttyUSB0")
    with pytest.raises(PortUnavailableError, match=re.escape("acrnema-bridge[serial]")):
        open_port("rs485:///dev/ttyUSB0")


def test_ftdi_without_pyftdi(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("serial")
    monkeypatch.setitem(sys.modules, "pyftdi", None)
    monkeypatch.setitem(sys.modules, "pyftdi.serialext", None)
    with pytest.raises(PortUnavailableError, match=re.escape("acrnema-bridge[ftdi]")):
        open_port("ftdi://ftdi:232h/1?baud=3000000")


def test_pty_url() -> None:
    with pytest.raises(PortError, match="serial://"):
        open_port("pty:///dev/pts/3")


# ------------------------------------------------------------------------ loop


def test_loop_names() -> None:
    a = open_port("loop://names")
    b = open_port("loop://names")
    try:
        assert (a.end, b.end) == ("a", "b")  # type: ignore[attr-defined]
        with pytest.raises(PortError, match="two ends"):
            open_port("loop://names")
        with pytest.raises(PortError, match="in use"):
            loop_pair("names")
    finally:
        a.close()
        assert "names" in loop_module.active_names()
        b.close()
    assert "names" not in loop_module.active_names()
    with pytest.raises(PortError, match="give a name"):
        open_port("loop://")
    with pytest.raises(PortError, match="no options"):
        open_port("loop://x?hook=1")


def test_loop_hook_sees_every_buffer_with_its_direction() -> None:
    seen: list[tuple[str, int]] = []

    def hook(buffer: WordBuffer, direction: str) -> WordBuffer:
        seen.append((direction, len(buffer.words)))
        return WordBuffer(buffer.words ^ np.uint16(1), buffer.parity)

    a, b = loop_pair(hook=hook)
    try:
        a.send(words(4, seed=41))
        b.send(words(2, seed=42))
        got, _ = receive(b, 4)
        assert np.array_equal(got.words, words(4, seed=41).words ^ 1)
        receive(a, 2)
        assert seen == [("a->b", 4), ("b->a", 2)]
        a.hook = None
        a.send(words(4, seed=41))
        got, _ = receive(b, 4)
        assert same(got, words(4, seed=41))
    finally:
        a.close()
        b.close()


def test_loop_recv_wakes_up_when_the_peer_closes() -> None:
    a, b = loop_pair()
    try:
        closer = threading.Timer(0.1, a.close)
        closer.start()
        start = time.monotonic()
        expect_down(lambda: b.recv(5))
        assert time.monotonic() - start < 2
        closer.join()
    finally:
        a.close()
        b.close()


def test_opening_loop_does_not_import_serial() -> None:
    code = (
        "import sys\n"
        "from bridge.ports import open_port\n"
        "a = open_port('loop://x'); b = open_port('loop://x'); a.close(); b.close()\n"
        "assert 'serial' not in sys.modules, 'serial imported'\n"
        "assert 'pyftdi' not in sys.modules, 'pyftdi imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -------------------------------------------------------------------- registry


def test_available_schemes() -> None:
    schemes = available_schemes()
    for scheme in ("loop", "tcp", "tcp-listen", "serial", "rs485", "ftdi", "pty"):
        assert scheme in schemes


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(PortError, match=r"unknown port.*loop://.*tcp://") as info:
        open_port("carrier-pigeon://home")
    assert "spy+" in str(info.value)
    with pytest.raises(PortError, match="unknown port"):
        open_port("no-scheme-here")


def fake_factory(url: str) -> WordPort:
    a, b = loop_pair()
    b.close()
    a.url = url
    return a


def test_entry_points_add_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint("fake", f"{__name__}:fake_factory", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    assert "fake" in available_schemes()
    port = open_port("fake://thing")
    try:
        assert port.url == "fake://thing"
    finally:
        port.close()


_PIPES: dict[str, PipeStream] = {}


def pipe_factory(url: str) -> PipeStream:
    """A plug-in's byte-stream scheme: ``pipe://NAME``, one end of a pipe made by a test."""
    return _PIPES.pop(url.partition("://")[2])


@contextlib.contextmanager
def plug_in_pipes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WordPort, WordPort]]:
    entry = EntryPoint("pipe", f"{__name__}:pipe_factory", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    _PIPES["left"], _PIPES["right"] = pipe_pair(name="plug-in")
    a = open_port("pipe://left")
    try:
        b = open_port("pipe://right")
        try:
            yield a, b
        finally:
            b.close()
    finally:
        a.close()


def test_a_plug_in_byte_stream_carries_the_raw_word_stream_and_passes_the_kit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheme whose factory gives a ByteStream gets the one driver, and the kit."""
    with plug_in_pipes(monkeypatch) as (a, _):
        assert isinstance(a, StreamWordPort) and a.url == "pipe://left"
    check_port_pair(lambda: plug_in_pipes(monkeypatch))


def test_open_port_passes_options_and_the_profile_to_the_factory() -> None:
    seen: list[tuple[WordBuffer, str]] = []

    def hook(buffer: WordBuffer, direction: str) -> WordBuffer:
        seen.append((buffer, direction))
        return buffer

    a = open_port("loop://options", hook=hook)
    b = open_port("loop://options", profile=REFERENCE)  # a port without a profile: ignored
    try:
        a.send(words(3, seed=71))
        receive(b, 3)
        assert [d for _, d in seen] == ["a->b"]
    finally:
        a.close()
        b.close()
    with pytest.raises(PortError, match="takes no option speed"):
        open_port("loop://options", speed=3)
    listener = open_port("tcp-listen://127.0.0.1:0", profile=REFERENCE)
    listener.close()


def test_the_old_factories_and_class_names_still_work() -> None:
    from bridge.ports import pty, serial
    from bridge.ports import socket as tcp

    assert tcp.TcpPort is tcp.TcpListenPort is serial.SerialPort is pty.PtyPort
    assert callable(serial.open_serial) and callable(serial.open_rs485)
    assert callable(serial.open_ftdi) and callable(pty.open_pty) and callable(tcp.open_tcp)
    listener = tcp.open_tcp_listen("tcp-listen://127.0.0.1:0")
    try:
        client = tcp.open_tcp(f"tcp://127.0.0.1:{listener.address[1]}")  # type: ignore[attr-defined]
        try:
            wait_both(listener, client)
            assert isinstance(client, StreamWordPort)
        finally:
            client.close()
    finally:
        listener.close()


def test_prefixes_are_not_schemes_of_their_own() -> None:
    """box+ and spy+ compose with any scheme: no box+SCHEME entries are listed."""
    assert not [s for s in available_schemes() if "+" in s]
    assert set(registry.BYTE_STREAMS) == {"tcp", "tcp-listen", "serial", "rs485", "ftdi", "pty"}


def test_a_broken_entry_point_is_a_port_error(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint("tcp", "no.such.module:factory", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    with pytest.raises(PortError, match="cannot load"):
        open_port("tcp://127.0.0.1:1")


# ------------------------------------------------------------------------- spy


def test_spy_records_the_traffic(tmp_path: Path) -> None:
    trace = tmp_path / "t.bin"
    a = open_port(f"spy+loop://spied?trace={trace}")
    b = open_port("loop://spied")
    try:
        wait_both(a, b)
        a.send(words(20, seed=51))
        b.send(words(3, seed=52))
        receive(a, 3)
        b.set_ready(False)
        expect_down(lambda: a.recv(0.1))
    finally:
        a.close()
        b.close()
    records = list(read_trace(trace))
    data = [(r.direction, len(r.buffer.words)) for r in records if r.direction != "line"]
    assert data == [("out", 20), ("in", 3)]
    out = next(r for r in records if r.direction == "out")
    assert same(out.buffer, words(20, seed=51))
    lines = [r.line_state for r in records if r.direction == "line"]
    assert lines[0] == (True, False, False)  # opened before its peer
    assert (True, True, False) in lines
    assert (True, False, True) in lines  # the peer dropped READY
    assert lines[-1][0] is False  # closed
    times = [r.time for r in records]
    assert times == sorted(times)
    text = list(format_trace(trace, words=2))
    assert len(text) == len(records)
    assert re.search(r"out\s+20\s+[0-9A-F]{4} [0-9A-F]{4} \.\.\.$", "\n".join(text), re.M)
    assert any("ready=1 peer=0 link-down" in line for line in text)


def test_spy_default_trace_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = open_port("spy+loop://default-trace")
    a.close()
    (found,) = tmp_path.glob("acrnema-trace-*.bin")
    assert re.fullmatch(r"acrnema-trace-\d{8}-\d{6}\.bin", found.name)
    assert [r.direction for r in read_trace(found)] == ["line", "line"]


def test_spy_url_keeps_the_inner_options() -> None:
    assert split_spy_url("spy+tcp://h:1?write_timeout=2&trace=x.bin") == (
        "tcp://h:1?write_timeout=2",
        "x.bin",
    )
    assert split_spy_url("spy+loop://a") == ("loop://a", None)
    with pytest.raises(PortError):
        split_spy_url("spy+")


def test_read_trace_rejects_other_files_and_stops_at_a_cut(tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"not a trace\n")
    with pytest.raises(PortError, match="not an acrnema-bridge trace"):
        list(read_trace(other))
    trace = tmp_path / "cut.bin"
    a, b = loop_pair()
    spy = SpyPort(a, trace)
    spy.send(words(10))
    spy.close()
    b.close()
    whole = trace.read_bytes()
    trace.write_bytes(whole[:-5])
    assert [r.direction for r in read_trace(trace)] == ["line", "out"]


# ------------------------------------------------------------------ wordstream


def test_wordstream_unit_layout() -> None:
    data = encode_words(
        WordBuffer(np.array([0x1234, 0xFFFF], np.uint16), np.array([1, 0], np.uint8))
    )
    assert data == bytes([0x12, 0x34, 0x01, 0xFF, 0xFF, 0x00])
    assert encode_line_state(True) == b"\x00\x00\x81"
    assert encode_line_state(False, sees_ready=True) == b"\x00\x00\x82"


@given(
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 1)), max_size=200),
    st.lists(st.integers(1, 7), min_size=1, max_size=20),
)
def test_wordstream_roundtrip_split_anywhere(units: list[tuple[int, int]], cuts: list[int]) -> None:
    buffer = WordBuffer(
        np.array([w for w, _ in units], np.uint16), np.array([p for _, p in units], np.uint8)
    )
    data = encode_words(buffer)
    decoder = WordStreamDecoder()
    out: list[WordBuffer] = []
    position = 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        events = decoder.feed(data[position : position + cut])
        out += [e for e in events if isinstance(e, WordBuffer)]
        position += cut
        if position >= len(data):
            break
    got_words = np.concatenate([b.words for b in out]) if out else np.zeros(0, np.uint16)
    got_parity = np.concatenate([b.parity for b in out]) if out else np.zeros(0, np.uint8)
    assert np.array_equal(got_words, buffer.words)
    assert np.array_equal(got_parity, buffer.parity)
    assert decoder.pending_bytes == 0 and decoder.invalid == 0


def _merged(events: list[WordBuffer | LineStateUnit]) -> list[object]:
    """Events with consecutive word buffers as one (feeding may split them anywhere)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, LineStateUnit):
            out.append(event)
            continue
        units = tuple(zip(event.words.tolist(), event.parity.tolist(), strict=True))
        if out and isinstance(out[-1], tuple):
            out[-1] = out[-1] + units
        else:
            out.append(units)
    return out


def test_wordstream_fed_every_way_and_with_a_trailing_partial_unit() -> None:
    data = encode_words(words(3, seed=61)) + encode_line_state(True) + encode_words(words(2, 62))
    events = check_feeding(
        WordStreamDecoder,
        WordStreamDecoder.feed,
        data,
        trailing=b"\x12",
        held=lambda decoder: decoder.pending_bytes == 1,
        normalise=_merged,
    )
    whole = WordStreamDecoder().feed(data)
    assert [type(e).__name__ for e in whole] == ["WordBuffer", "LineStateUnit", "WordBuffer"]
    assert same(whole[0], words(3, seed=61))  # type: ignore[arg-type]
    assert whole[1] == LineStateUnit(ready=True, sees_ready=False)
    assert same(whole[2], words(2, seed=62))  # type: ignore[arg-type]
    assert events == _merged(whole)


def test_wordstream_invalid_units_are_dropped_and_counted() -> None:
    good = encode_words(words(4, seed=63))
    bad = bytes([0x12, 0x34, 0x02, 0x00, 0x01, 0x81, 0xAB, 0xCD, 0xFF])  # 3 invalid units
    decoder = WordStreamDecoder()
    events = decoder.feed(good[:6] + bad + good[6:] + encode_line_state(False, True))
    assert decoder.invalid == 3
    assert len(events) == 2
    assert same(events[0], words(4, seed=63))  # type: ignore[arg-type]
    assert events[1] == LineStateUnit(ready=False, sees_ready=True)


def test_wordstream_decodes_large_buffers_whole() -> None:
    # the rate is measured by `python -m bridge.wordstream` (docs/ports.md), not held here
    buffer = words(1 << 18)
    decoder = WordStreamDecoder()
    for _ in range(3):
        events = decoder.feed(encode_words(buffer))
        assert len(events) == 1 and same(events[0], buffer)  # type: ignore[arg-type]
    assert decoder.invalid == 0


def test_stream_port_is_the_base_of_the_byte_stream_ports(tmp_path: Path) -> None:
    link = open_pair("tcp", tmp_path)
    try:
        assert isinstance(link.a, StreamWordPort) and isinstance(link.b, StreamWordPort)
    finally:
        link.close()


# ------------------------------------------------------------- the word stream engine


def test_the_word_stream_engine_alone_greets_answers_announces_and_pads() -> None:
    """Sans-I/O: the line-state rules, fed by hand with a made-up clock."""
    engine = WordStreamEngine("test")
    assert engine.receive(encode_line_state(True), 0.0) == []  # no stream: nothing
    engine.connect(10.0)
    assert engine.data_to_send() == encode_line_state(True, False)  # the greeting
    assert engine.next_deadline() == pytest.approx(10.2)
    assert engine.handle_timer(10.1) == [] and not engine.has_output
    engine.handle_timer(10.25)  # announced again while the peer is not seen
    assert engine.data_to_send() == encode_line_state(True, False)
    events = engine.receive(encode_line_state(True, sees_ready=False), 10.3)
    assert [type(e).__name__ for e in events] == ["PeerReady"] and engine.peer_ready
    assert engine.data_to_send() == encode_line_state(True, True)  # it was wrong about us
    assert engine.next_deadline() is None and engine.down_reason() is None
    data = encode_words(words(4, seed=81))
    events = engine.receive(data[:5], 10.4) + engine.receive(data[5:], 10.4)
    got = [e.buffer for e in events if isinstance(e, WordsArrived)]
    assert same(
        WordBuffer(np.concatenate([g.words for g in got]), np.concatenate([g.parity for g in got])),
        words(4, seed=81),
    )
    assert engine.send_words(words(2, seed=82)) == 2
    assert engine.data_to_send() == encode_words(words(2, seed=82))
    assert engine.write_stalled(5) == b"\xff\xff"  # 5 left: the unit cut short needs 2
    engine.set_ready(False, 10.5)
    assert engine.data_to_send() == encode_line_state(False, True)
    assert engine.send_words(words(2)) == 0  # nothing goes while our READY is down
    engine.receive(encode_words(words(3)), 10.6)
    assert engine.discarded == 3 and engine.data_to_send() == encode_line_state(False, True)
    events = engine.receive(encode_line_state(False, sees_ready=False), 10.7)
    assert events == [PeerReady(False)] and engine.down_reason() == "the peer is not READY"
    engine.disconnect()
    assert not engine.has_output and engine.next_deadline() is None


def test_a_reopening_stream_waits_between_tries_then_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tcp:// and serial:// share ReopeningStream.connect: after a failed open it tries
    again no sooner than RETRY_S later, waiting for that within its timeout, and then
    connects (a real refused connect on 127.0.0.1, then a listener)."""
    from bridge.ports import bytestream
    from bridge.ports.socket import TcpStream

    def refused_stream() -> tuple[TcpStream, int]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        url = f"tcp://127.0.0.1:{port}"
        stream = TcpStream(url, "127.0.0.1", port, connect_timeout=1.0, write_timeout=1.0)
        assert not stream.connected  # refused: nothing listens yet
        return stream, port

    monkeypatch.setattr(bytestream, "RETRY_S", 3600.0)
    stream, port = refused_stream()
    with socket.create_server(("127.0.0.1", port)):
        assert not stream.connect(0.0) and not stream.connect(0.01)  # not due: no try
        assert not stream.connected
    stream.release()

    monkeypatch.setattr(bytestream, "RETRY_S", 0.05)
    stream, port = refused_stream()
    with socket.create_server(("127.0.0.1", port)) as listener:
        assert stream.connect(30.0)  # waits until the next try is due, then connects
        listener.accept()[0].close()
    stream.release()

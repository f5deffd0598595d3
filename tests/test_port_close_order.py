"""Words sent before a side closes or drops READY arrive before the drop is reported.

The finding: with ``session.mode = "none"`` a scanner that acknowledges its last response
and closes at once lost that acknowledgement now and then: the receiving port read the
words and the READY drop behind them in one go, and the drop threw the words away, so
the service logged the response as unacknowledged. A word put on the wire while both
READY lines were up has been handed over; the drop behind it must not unsay it.

The ends are used from one thread, and the receiver reads only after the sender has
closed (or dropped READY): the words and the drop are both waiting, which is the losing
order every time, not now and then. Over ``loop://``, ``tcp://`` and a pty (``pty://``
with ``serial://`` on its slave), through the interface box (``box+serial://`` to an
emulated box on a pty, its core the Python :class:`~bridge.testing.box.BoxModel` or the
firmware's C core; the sender is the scanner's end of the box's line), and with the link
stack on top (:class:`Endpoint` with ``session.mode = "none"``, the acknowledgement of
the last response).

Through the box, the same finding had two causes: the box core sent the LINE_STATE that
reports the peer's drop ahead of the words it had taken from the line before it, and the
emulated box's loop told its core of the drop before it took the line's waiting words;
the host discards words that come after the drop (docs/box-protocol.md, section 6).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import peers
import pytest

from bridge.acrnema.stack import LinkDown
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Image, Scanner
from bridge.link.responder import Answer, Responder
from bridge.ports import LinkLost, WordPort, open_port
from bridge.profile import REFERENCE, LinkStatus
from bridge.testing.box import emulated_bench
from bridge.testing.ports import LINK_S, receive, same, wait_both, words

KINDS = ["loop", "tcp", "pty", "box", "box-firmware"]
_names = itertools.count()
ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _build_libboxcore() -> str:
    """``make -C firmware lib`` once (as tests/test_box.py's fixture does)."""
    done = subprocess.run(
        ["make", "-C", str(ROOT / "firmware"), "lib"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return str(ROOT / "firmware" / "build" / "libboxcore.so")


def libboxcore() -> None:
    if shutil.which("make") is None or (shutil.which("cc") or shutil.which("gcc")) is None:
        peers.unavailable(
            "no C compiler: libboxcore.so not built", require_env="BRIDGE_REQUIRE_PEERS"
        )
    _build_libboxcore()


@contextlib.contextmanager
def pair(kind: str) -> Iterator[tuple[WordPort, WordPort]]:
    """Two ends (sender, receiver), found by each other; both closed when left."""
    if kind == "loop":
        name = f"close-order-{next(_names)}"
        a, b = open_port(f"loop://{name}"), open_port(f"loop://{name}")
    elif kind == "tcp":
        b = open_port("tcp-listen://127.0.0.1:0")
        try:
            a = open_port(f"tcp://127.0.0.1:{b.address[1]}")  # type: ignore[attr-defined]
        except BaseException:
            b.close()
            raise
    elif kind.startswith("box"):  # the scanner's end of the emulated box's line sends
        pytest.importorskip("serial")
        if kind == "box-firmware":
            libboxcore()
        with emulated_bench(firmware=kind == "box-firmware") as bench:
            port = open_port(bench.bridge_url)
            try:
                wait_both(bench.peer_port, port)
                # as a scanner starts: the bench's power-up READY drop is not for it
                assert bench.peer_port.wait_peer(LINK_S)
                yield bench.peer_port, port
            finally:
                bench.peer_port.close()
                port.close()
        return
    else:
        pytest.importorskip("serial")
        b = open_port("pty://")
        try:
            a = open_port(f"serial://{b.device}?baud=115200")  # type: ignore[attr-defined]
        except BaseException:
            b.close()
            raise
    try:
        wait_both(a, b)
        yield a, b
    finally:
        a.close()
        b.close()


def expect_lost(port: WordPort) -> None:
    with pytest.raises(LinkLost):
        port.recv(LINK_S)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [3, 1000])  # a pty holds 4 KiB
def test_words_sent_before_close_arrive_before_the_drop(kind: str, count: int) -> None:
    with pair(kind) as (a, b):
        sent = words(count, seed=count)
        a.send(sent)
        a.close()
        got, _ = receive(b, count)
        assert same(got, sent)
        expect_lost(b)
        expect_lost(b)  # and again on each call, as before


@pytest.mark.parametrize("kind", KINDS)
def test_words_sent_before_a_ready_drop_arrive_before_it(kind: str) -> None:
    with pair(kind) as (a, b):
        sent = words(7, seed=1)
        a.send(sent)
        a.set_ready(False)
        got, _ = receive(b, 7)
        assert same(got, sent)
        expect_lost(b)
        with pytest.raises(LinkLost):
            b.send(words(2))
        a.set_ready(True)
        wait_both(a, b)
        assert len(b.recv(0.1).words) == 0  # nothing from before the drop comes twice
        a.send(words(4, seed=2))
        got, _ = receive(b, 4)
        assert same(got, words(4, seed=2))


@pytest.mark.parametrize("kind", KINDS)
def test_words_to_a_side_that_drops_its_own_ready_are_discarded(kind: str) -> None:
    """The other way round is unchanged: a side whose READY is down takes nothing."""
    with pair(kind) as (a, b):
        a.send(words(7, seed=3))
        with contextlib.suppress(LinkLost):
            b.recv(0.2)  # the words reach b's side (read, not yet taken)
        b.set_ready(False)
        b.set_ready(True)
        wait_both(a, b)
        with contextlib.suppress(LinkLost):
            b.recv(0.2)
        with contextlib.suppress(LinkLost):
            a.recv(0.2)  # a is told of b's short drop
        a.send(words(4, seed=4))
        got, _ = receive(b, 4)
        assert same(got, words(4, seed=4))


NO_SESSION = dataclasses.replace(
    REFERENCE, session=dataclasses.replace(REFERENCE.session, mode="none")
)


@pytest.mark.parametrize("mode", ["pdus", "none"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_frame_the_scanner_sent_before_it_closed_is_heard(kind: str, mode: str) -> None:
    """Scanner and Responder as the emulator and run use them: one image, then the
    scanner releases (reference mode: RELEASE, whose reply it acknowledges last) and
    closes at once. The service hears every frame it sent, the last ACK included."""
    profile = dataclasses.replace(
        REFERENCE, session=dataclasses.replace(REFERENCE.session, mode=mode)
    )
    with pair(kind) as (scanner_port, service_port):
        service = Endpoint(service_port, profile)
        responder = Responder(service, lambda message: Answer(LinkStatus.SUCCESS))
        stop = threading.Event()
        thread = threading.Thread(
            target=responder.serve, args=(stop,), kwargs={"until": lambda: service.resets > 0}
        )
        thread.start()
        try:
            scanner = Scanner(Endpoint(scanner_port, profile), attempts=1, response_timeout=20.0)
            results = scanner.send([Image("one", b"\x08\x00\x10\x00\x00\x00\x00\x00")])
            assert results[0].ok, results[0].errors
            scanner.close(timeout=5.0)
            scanner_port.close()
            thread.join(timeout=30)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        sent = scanner.endpoint.frame_counts()["sent"]
        assert service.frame_counts()["received"] == sent, "a frame sent before close was lost"


@pytest.mark.parametrize("kind", KINDS)
def test_the_last_acknowledgement_before_close_reaches_the_sender(kind: str) -> None:
    """session.mode none: the service's response is acknowledged even when the scanner
    closes right after acknowledging it."""
    with pair(kind) as (scanner_port, service_port):
        scanner, service = Endpoint(scanner_port, NO_SESSION), Endpoint(service_port, NO_SESSION)
        service.stack.send_data_object(b"a response", service.clock())
        service.poll(0.0)  # sends it; the service polls all the time, as run does
        while not scanner.stack.datalink.idle or not scanner.words_in:
            scanner.poll(0.05)  # takes the frame and sends its ACK
        scanner_port.close()  # at once, as a scanner done with its last image does
        events = []
        for _ in range(200):
            events += service.poll(0.05)
            if any(isinstance(event, LinkDown) for event in events):
                break
        assert any(isinstance(event, LinkDown) for event in events)
        assert service.frame_counts()["received"] == 1, "the response went unacknowledged"


def test_tcp_close_with_input_unread_still_delivers_what_was_sent() -> None:
    """Closing a socket with input not yet read makes the kernel reset the connection
    and throw away what it has not sent yet; close must not lose the words before it."""
    with pair("tcp") as (a, b):
        count = 200_000  # more than the peer's receive window takes before it reads
        sent = words(count, seed=5)
        a.send(sent)
        b.set_ready(True)  # a line-state unit a never reads: input unread at close
        a.close()
        got, _ = receive(b, count)
        assert same(got, sent)
        expect_lost(b)

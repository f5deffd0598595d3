"""Who may hold the link (issue 11, item 4, "fail closed"): a ``tcp-listen://`` port that
no idle or silent connection can block, its allow-list of peer IP addresses, and the
link's accepted logical addresses (``[link] accepted_peers``).

Every test uses real sockets on loopback (127.0.0.1, and 127.0.0.2 as a second source
address), the emulated scanner (:class:`bridge.link.requester.Scanner`) and, end to end,
a real ``acrnema-bridge run`` (``peers.bridge_service``, ``peers.scanner_on``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bridge.errors import PortURLError
from bridge.ports import open_port
from bridge.ports.base import WordPort
from bridge.ports.wordstream import encode_line_state
from bridge.testing.ports import receive, same, wait_both, words

HANG_S = 10.0  # generous: only catches a hang


def _raw_client(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A plain TCP connection to ``127.0.0.1:port`` from ``source`` that says nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _closed_by_listener(sock: socket.socket, timeout: float = HANG_S) -> bool:
    """Whether the listener closes ``sock`` within ``timeout`` (what it sends is read and
    dropped: its line-state announcements)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(4096):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def _pump_until(port: WordPort, done: threading.Event) -> None:
    """Keep a listener reading (what a service does) until ``done``."""
    while not done.is_set():
        with contextlib.suppress(Exception):
            port.wait_peer(0.05)


@contextlib.contextmanager
def _reading(port: WordPort) -> Iterator[None]:
    done = threading.Event()
    thread = threading.Thread(target=_pump_until, args=(port, done), name="listener-reader")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=HANG_S)


# ----------------------------------------------------------------- tcp-listen: silence


def test_a_silent_connection_does_not_block_the_scanner() -> None:
    """Finding (issue 11): one TCP connection that says nothing blocked the link for as
    long as it stayed open. Now a connection never heard from gives way to the next one
    at once (default options), and the scanner's link comes up."""
    listener = open_port("tcp-listen://127.0.0.1:0")
    number = listener.address[1]  # type: ignore[attr-defined]
    silent = _raw_client(number)
    client = None
    try:
        assert not listener.wait_peer(0.5)  # the silent one is accepted, and says nothing
        client = open_port(f"tcp://127.0.0.1:{number}")
        wait_both(listener, client, timeout=HANG_S)
        client.send(words(5, seed=1))
        got, _ = receive(listener, 5)
        assert same(got, words(5, seed=1))
        assert _closed_by_listener(silent)
    finally:
        silent.close()
        if client is not None:
            client.close()
        listener.close()


def test_a_silent_connection_alone_is_closed_after_the_idle_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = open_port("tcp-listen://127.0.0.1:0?idle_timeout=0.5")
    silent = _raw_client(listener.address[1])  # type: ignore[attr-defined]
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.ports.socket"), _reading(listener):
            assert _closed_by_listener(silent)
        assert any(
            r.levelno == logging.WARNING and "sent nothing" in r.getMessage()
            for r in caplog.records
        ), caplog.text
    finally:
        silent.close()
        listener.close()


def test_a_second_connection_is_refused_while_the_first_is_live(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = open_port("tcp-listen://127.0.0.1:0?idle_timeout=30")
    number = listener.address[1]  # type: ignore[attr-defined]
    first = open_port(f"tcp://127.0.0.1:{number}")
    second = None
    try:
        wait_both(listener, first, timeout=HANG_S)
        with caplog.at_level(logging.WARNING, logger="bridge.ports.socket"):
            second = _raw_client(number)
            with _reading(listener):
                assert _closed_by_listener(second), "the second connection was left waiting"
        assert any("refused a second connection" in r.getMessage() for r in caplog.records)
        first.send(words(7, seed=2))  # the first one still holds the link
        got, _ = receive(listener, 7)
        assert same(got, words(7, seed=2))
    finally:
        if second is not None:
            second.close()
        first.close()
        listener.close()


def test_a_connection_quiet_for_the_idle_timeout_gives_way_to_a_new_one() -> None:
    """A peer that said READY once and then nothing (a half-open connection of a scanner
    that restarted) does not keep the restarted scanner out."""
    listener = open_port("tcp-listen://127.0.0.1:0?idle_timeout=0.5")
    number = listener.address[1]  # type: ignore[attr-defined]
    stale = _raw_client(number)
    client = None
    try:
        stale.sendall(encode_line_state(True, True))
        deadline = time.monotonic() + HANG_S
        while not listener.peer_ready:
            assert time.monotonic() < deadline
            listener.wait_peer(0.05)
        time.sleep(0.6)  # nothing more from it: it is quiet
        client = open_port(f"tcp://127.0.0.1:{number}")
        wait_both(listener, client, timeout=HANG_S)
        client.send(words(3, seed=3))
        got, _ = receive(listener, 3)
        assert same(got, words(3, seed=3))
        assert _closed_by_listener(stale)
    finally:
        stale.close()
        if client is not None:
            client.close()
        listener.close()


# ----------------------------------------------------------------- tcp-listen: allow


def test_a_peer_not_on_the_allow_list_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = open_port("tcp-listen://127.0.0.1:0?allow=127.0.0.1,10.0.0.5")
    number = listener.address[1]  # type: ignore[attr-defined]
    stranger = _raw_client(number, source="127.0.0.2")
    client = None
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.ports.socket"), _reading(listener):
            assert _closed_by_listener(stranger)
        assert any(
            r.levelno == logging.WARNING and "127.0.0.2" in r.getMessage() for r in caplog.records
        ), caplog.text
        client = open_port(f"tcp://127.0.0.1:{number}")
        wait_both(listener, client, timeout=HANG_S)
    finally:
        stranger.close()
        if client is not None:
            client.close()
        listener.close()


def test_listen_options_are_checked() -> None:
    good = open_port("tcp-listen://127.0.0.1:0?allow=10.0.0.0/24,::1&idle_timeout=2.5")
    good.close()
    for bad in ("allow=", "allow=not-an-address", "allow=10.0.0.1/8", "idle_timeout=0"):
        with pytest.raises(PortURLError):
            open_port(f"tcp-listen://127.0.0.1:0?{bad}")

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
from pathlib import Path

import peers
import pytest

from bridge.acrnema.commands import Command, Message
from bridge.acrnema.stack import MessageArrived
from bridge.errors import PortURLError, SettingsError
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Scanner
from bridge.ports import open_port
from bridge.ports.base import WordPort
from bridge.ports.loop import loop_pair
from bridge.service import Bridge
from bridge.settings import load
from bridge.spool.store import Spool
from bridge.testing.phantom import phantom_images
from bridge.testing.ports import receive, same, wait_both, words
from bridge.wordstream import encode_line_state

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


# ----------------------------------------------------------------- accepted peers


def _store_answers(
    tmp_path: Path, accepted: tuple[str, ...], calling: str, initiator: str
) -> dict[str, object]:
    """Connect as ``calling``, send one store request naming ``initiator`` and an echo;
    what the bridge answered and how many objects it spooled."""
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool")
    bridge = Bridge(bridge_port, spool, [], accepted_peers=accepted)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="bridge-under-test")
    thread.start()
    answers: dict[str, object] = {}
    try:
        endpoint = Endpoint(scanner_port)
        scanner = Scanner(endpoint, calling=calling)
        assert scanner._connect() is None
        table = endpoint.stack.commands
        [image] = phantom_images(1, rows=64)
        requests = {
            "store": Command(
                table.request("store"),
                endpoint.stack.next_message_id(),
                table.params.data_set_present,
                initiator=initiator,
                receiver="ACRNEMA_BRIDGE",
            ),
            "echo": Command(
                table.request("echo"),
                endpoint.stack.next_message_id(),
                table.params.data_set_none,
                initiator=initiator,
            ),
        }
        for name, command in requests.items():
            data = image.data if name == "store" else b""
            endpoint.stack.send(Message(command, data), endpoint.clock())
            deadline = time.monotonic() + HANG_S
            while name not in answers and time.monotonic() < deadline:
                for event in endpoint.poll(0.05):
                    if isinstance(event, MessageArrived):
                        answers[name] = event.message.command
        scanner.close(timeout=2.0)
    finally:
        stop.set()
        thread.join(timeout=60)
        scanner_port.close()
        bridge_port.close()
        answers["spooled"] = _objects(spool)
        spool.close()
    return answers


def _objects(spool: Spool) -> int:
    return len(list(spool.root.joinpath("objects").rglob("*.dcm")))


@pytest.mark.parametrize(
    ("calling", "initiator"),
    [("SCANNER", "SCANNER"), ("CT1", "SCANNER"), ("SCANNER", "CT1")],
    ids=["stranger", "initiator-not-accepted", "calling-not-accepted"],
)
def test_a_message_from_an_address_not_accepted_is_refused_and_never_spooled(
    calling: str, initiator: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge.endpoint"):
        answers = _store_answers(tmp_path, ("CT1", "CT2"), calling, initiator)
    store, echo = answers["store"], answers["echo"]
    assert isinstance(store, Command) and isinstance(echo, Command)
    assert store.status == 0xA900, store
    assert "not accepted" in store.error_comment
    assert echo.status == 0xA900
    assert answers["spooled"] == 0
    assert any(
        r.levelno == logging.WARNING and "not accepted" in r.getMessage() for r in caplog.records
    ), caplog.text


def test_a_message_from_an_accepted_address_is_stored(tmp_path: Path) -> None:
    answers = _store_answers(tmp_path, ("CT1", "CT2"), "CT2", "CT2")
    store = answers["store"]
    assert isinstance(store, Command) and store.status == 0x0000, store
    assert answers["spooled"] == 1


def test_by_default_every_address_is_accepted(tmp_path: Path) -> None:
    answers = _store_answers(tmp_path, (), "ANYONE", "ANYONE")
    store = answers["store"]
    assert isinstance(store, Command) and store.status == 0x0000, store


# ----------------------------------------------------------------- the service, end to end


def test_run_serves_the_scanner_past_a_silent_connection(tmp_path: Path) -> None:
    """Finding (issue 11), end to end: ``acrnema-bridge run`` on ``tcp-listen://`` with a
    silent connection made first; the emulated scanner connecting next stores its image."""
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    with peers.bridge_service(port, "--spool", str(spool_dir)) as service:
        silent = _raw_client(port)
        try:
            time.sleep(0.5)  # let the service accept the silent connection first
            with peers.scanner_on(port, response_timeout=30.0, link_timeout=HANG_S) as scanner:
                [stored] = scanner.send(phantom_images(1, rows=64))
            assert _closed_by_listener(silent)
        finally:
            silent.close()
        service.terminate()
        _, err = service.communicate(timeout=60)
    assert stored.ok, stored.errors
    assert "it has sent nothing; replaced by a newer connection" in err, err
    assert len(list((spool_dir / "objects").rglob("*.dcm"))) == 1


def test_run_refuses_a_scanner_whose_address_is_not_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``acrnema-bridge run`` with ``[link] accepted_peers`` from its settings file: the
    emulated scanner calling as another address is refused (A900H, WARNING) and nothing of
    it is spooled; the accepted one stores its image."""
    port = peers.free_port()
    config = tmp_path / "bridge.toml"
    config.write_text('[link]\naccepted_peers = ["CT1"]\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(config))
    spool_dir = tmp_path / "spool"
    with peers.bridge_service(port, "--spool", str(spool_dir)) as service:
        with peers.scanner_on(port, calling="CT2", response_timeout=30.0) as stranger:
            [refused] = stranger.send(phantom_images(1, rows=64))
        with peers.scanner_on(port, calling="CT1", response_timeout=30.0) as scanner:
            [stored] = scanner.send(phantom_images(1, rows=64))
        service.terminate()
        _, err = service.communicate(timeout=60)
    assert stored.ok, stored.errors
    assert not refused.ok
    assert "not_stored A900H" in refused.errors[0], refused.errors
    assert "WARNING" in err and "calling address 'CT2' is not accepted" in err, err
    assert len(list((spool_dir / "objects").rglob("*.dcm"))) == 1


def test_accepted_peers_is_a_checked_link_setting(tmp_path: Path) -> None:
    assert load(env={}).link.accepted_peers == ()
    env = {"BRIDGE_LINK_ACCEPTED_PEERS": "CT1, CT2"}
    assert load(env=env).link.accepted_peers == ("CT1", "CT2")
    config = tmp_path / "bridge.toml"
    config.write_text('[link]\naccepted_peers = ["CT1", "SEVENTEEN_LETTERS"]\n')
    with pytest.raises(SettingsError, match=r"link\.accepted_peers.*SEVENTEEN_LETTERS"):
        load(config, env={})

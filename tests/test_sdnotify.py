"""systemd's notifications (issue 12, item 5): ``run`` under ``Type=notify``.

Seen from a real unix datagram socket as ``$NOTIFY_SOCKET`` (a path, and an abstract
``@name``), with a real ``run`` process: READY=1 once the link port listens, WATCHDOG=1
pings at half of ``$WATCHDOG_USEC``, STOPPING=1 on SIGTERM; no pings while the link loop
is stuck (another process holds the spool database's write lock while a scanner sends)
and none once forwarding failed (the spool's disk filled by another writer, a real
tmpfs), so that systemd restarts a service that stops working.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import peers
import pytest

from bridge.sdnotify import Notifier, Watchdog, encode, watchdog_period

DEADLINE_S = 60.0  # only to catch hangs

# ------------------------------------------------------------------ the manager's socket


class ManagerSocket:
    """The service manager's end of ``$NOTIFY_SOCKET``: a real unix datagram socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[tuple[float, dict[str, str]]] = []  # (arrival, fields)

    def read(self, seconds: float) -> None:
        """Collect what arrives in the next ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def wait_for(
        self,
        found: Callable[[dict[str, str]], bool],
        what: str,
        service: subprocess.Popen[str] | None = None,
        start: int = 0,
    ) -> int:
        """The index of the first message from ``start`` on that ``found`` accepts."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            for i in range(start, len(self.messages)):
                if found(self.messages[i][1]):
                    return i
            if service is not None and service.poll() is not None:
                self.read(0.5)  # what it sent before it ended
                if any(found(m) for _, m in self.messages[start:]):
                    continue
                pytest.fail(f"run ended ({service.returncode}) before {what}: {self.messages}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {DEADLINE_S:g} s: {self.messages}")
            self.read(0.2)

    def pings(self, start: int = 0, end: int | None = None) -> list[int]:
        return [
            i
            for i, (_, m) in enumerate(self.messages[start:end], start)
            if m.get("WATCHDOG") == "1"
        ]

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ManagerSocket]:
    """An abstract-namespace socket, unique to the test."""
    sock = ManagerSocket(f"@acrnema-bridge-test-{uuid.uuid4().hex}")
    try:
        yield sock
    finally:
        sock.close()


def _run(
    port: int, spool: Path, notify: str, watchdog_usec: int, *args: str, **env: str
) -> subprocess.Popen[str]:
    """``acrnema-bridge run`` as systemd starts it: ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    environ.update(
        NOTIFY_SOCKET=notify,
        WATCHDOG_USEC=str(watchdog_usec),
        PYTHONUNBUFFERED="1",
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "--port", f"tcp-listen://127.0.0.1:{port}"]
        + ["--spool", str(spool), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def _end(service: subprocess.Popen[str]) -> str:
    """Wait for ``service`` to end (killed if it hangs); its stderr."""
    try:
        return service.communicate(timeout=DEADLINE_S)[1]
    except subprocess.TimeoutExpired:
        service.kill()
        return service.communicate()[1] + "\n[killed: it did not end]"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ run under systemd


def test_run_reports_ready_once_listening_pings_and_reports_stopping(tmp_path: Path) -> None:
    """A path as $NOTIFY_SOCKET: READY=1 arrives when the link port already accepts
    connections, with a STATUS naming it; WATCHDOG=1 pings follow; SIGTERM gives
    STOPPING=1 and exit status 0."""
    manager = ManagerSocket(str(tmp_path / "notify"))
    port = peers.free_port()
    service = _run(port, tmp_path / "spool", manager.address, 400_000)
    try:
        ready = manager.wait_for(lambda m: m.get("READY") == "1", "READY=1", service)
        assert _listening(port), "READY=1 came before the link port listened"
        assert f"tcp-listen://127.0.0.1:{port}" in manager.messages[ready][1]["STATUS"]
        manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "a ping", service, ready + 1)
        second = manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "pings", service, ready + 1)
        manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "pings", service, second + 1)
        service.send_signal(signal.SIGTERM)
        stopping = manager.wait_for(lambda m: m.get("STOPPING") == "1", "STOPPING=1", service)
        err = _end(service)
        manager.read(0.3)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
        manager.close()
    assert service.returncode == 0, err
    assert manager.messages[stopping][1]["STATUS"] == "stopping"  # no problem to report
    assert manager.pings(stopping) == []
    assert [m.get("READY") for _, m in manager.messages].count("1") == 1


def test_no_pings_while_the_link_loop_is_stuck(tmp_path: Path, manager: ManagerSocket) -> None:
    """Another process holds the spool database's write lock while a scanner sends: the
    link loop waits inside the store (the database's 30 s timeout) and does not go round.
    After one watchdog period the service says it is unhealthy and pings no more; once
    the lock is released the image is stored, the status is restored and pings resume."""
    port = peers.free_port()
    spool = tmp_path / "spool"
    service = _run(port, spool, manager.address, 1_000_000)  # pings every 0.5 s
    lock = None
    scanner = None
    try:
        ready = manager.wait_for(lambda m: m.get("READY") == "1", "READY=1", service)
        serving = manager.messages[ready][1]["STATUS"]
        lock = sqlite3.connect(spool / "spool.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # what a long write elsewhere would do
        scanner = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "emulate", "--port", f"tcp://127.0.0.1:{port}"]
            + ["--phantom", "1", "--size", "64", "--attempts", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stuck = manager.wait_for(
            lambda m: "link loop" in m.get("STATUS", ""), "an unhealthy status", service, ready
        )
        assert manager.messages[stuck][1]["STATUS"].startswith("unhealthy: ")
        manager.read(2.5)  # five ping intervals, still stuck
        assert service.poll() is None
        assert manager.pings(stuck) == [], manager.messages[stuck:]
        lock.rollback()
        lock.close()
        lock = None
        sent = scanner.communicate(timeout=DEADLINE_S)[1]
        assert scanner.returncode == 0, sent  # stored once the lock went
        back = manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "a ping", service, stuck)
        # the first ping after the stall restores the status line
        assert manager.messages[back][1].get("STATUS") == serving
        service.send_signal(signal.SIGTERM)
        err = _end(service)
    finally:
        if lock is not None:
            lock.close()
        for process in (scanner, service):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    assert service.returncode == 0, err
    assert "1 images stored" in err


def test_no_pings_once_forwarding_failed(tmp_path: Path, manager: ManagerSocket) -> None:
    """The spool's disk (a real tmpfs) is filled by another writer while the PACS is
    unreachable: the forwarder cannot record its retries, fails after give_up_after, and
    the service stops itself. No ping follows the failure; STOPPING=1 names it; exit 1."""
    sc = tmp_path / "sc.dcm"
    peers.write_secondary_capture(sc)
    with peers.tmpfs(tmp_path / "disk", "72m") as disk:  # the spool keeps 64 MiB in reserve
        spool = disk / "spool"
        added = subprocess.run(
            [sys.executable, "-m", "bridge.cli", "spool", "add", "--spool", str(spool), str(sc)],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        assert added.returncode == 0, added.stderr
        service = _run(
            peers.free_port(),
            spool,
            manager.address,
            1_000_000,
            "--dest",
            f"PACS@127.0.0.1:{peers.free_port()}",  # nobody listens: retries, written down
            BRIDGE_FORWARD_GIVE_UP_AFTER="1s",
            BRIDGE_FORWARD_BACKOFF_BASE="0.1s",
            BRIDGE_FORWARD_BACKOFF_CAP="0.2s",
        )
        try:
            ready = manager.wait_for(lambda m: m.get("READY") == "1", "READY=1", service)
            manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "a ping", service, ready)
            _fill(disk)
            failed = manager.wait_for(
                lambda m: m.get("STATUS", "").startswith(("unhealthy: ", "stopping: ")),
                "the failure",
                service,
                ready,
            )
            err = _end(service)
            manager.read(0.3)
        finally:
            if service.poll() is None:
                service.kill()
                service.communicate()
    assert service.returncode == 1, err
    assert "forwarding" in err and "no space left" in manager.messages[failed][1]["STATUS"]
    assert manager.pings(failed) == [], manager.messages[failed:]
    stopping = [m for _, m in manager.messages[failed:] if m.get("STOPPING") == "1"]
    assert len(stopping) == 1 and "forwarding" in stopping[0]["STATUS"], manager.messages


def _fill(disk: Path) -> None:
    """Another writer takes every free byte of ``disk``."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        stat = os.statvfs(disk)
        os.posix_fallocate(fd, 0, max(1, stat.f_bavail * stat.f_frsize - (1 << 20)))
        os.lseek(fd, 0, os.SEEK_END)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # full
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0


# ------------------------------------------------------------------ the notifier itself


def test_encode_is_one_line_per_field() -> None:
    assert encode(READY=1, STATUS="serving") == b"READY=1\nSTATUS=serving"
    assert encode(STATUS="two\nlines") == b"STATUS=two lines"  # no field can be forged


def test_watchdog_period_is_for_this_process_only() -> None:
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 30.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_period(mine) == 2.0
    assert watchdog_period({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_period({}) is None


def test_a_notifier_without_a_manager_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier.from_environment({}).notify(READY=1)
    vsock = Notifier("vsock:2:1234")  # a kind of socket the bridge does not speak
    assert not vsock.enabled and not vsock.notify(READY=1)
    assert "not a unix socket path" in caplog.text


def test_a_manager_that_went_away_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = ManagerSocket(str(tmp_path / "gone"))
    notifier = Notifier(manager.address)
    try:
        assert notifier.notify(STATUS="one")
        manager.read(0.5)
        assert manager.messages[0][1] == {"STATUS": "one"}
        manager.close()
        assert not notifier.notify(STATUS="two")  # no listener any more: no exception
        assert "cannot notify the service manager" in caplog.text
    finally:
        notifier.close()
        manager.close()


def test_the_watchdog_pings_only_while_healthy(manager: ManagerSocket) -> None:
    """In process, with the real socket: pings while healthy, one STATUS and silence
    while unhealthy, pings with the ready status again after; STOPPING=1 at the stop."""
    problem: list[str | None] = [None]
    stop = threading.Event()
    watchdog = Watchdog(Notifier(manager.address, watchdog=0.2), stop, lambda: problem[0])
    try:
        watchdog.ready("serving")
        manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "a ping")
        problem[0] = "the link loop has not gone round for 9 s"
        sick = manager.wait_for(lambda m: m.get("STATUS", "").startswith("unhealthy"), "STATUS")
        manager.read(0.6)  # six ping intervals
        assert manager.pings(sick) == []
        assert [m.get("STATUS") for _, m in manager.messages[sick:]] == [
            "unhealthy: the link loop has not gone round for 9 s"
        ]  # said once
        problem[0] = None
        back = manager.wait_for(lambda m: m.get("WATCHDOG") == "1", "a ping", start=sick)
        assert manager.messages[back][1]["STATUS"] == "serving"
        stop.set()
        manager.wait_for(lambda m: m.get("STOPPING") == "1", "STOPPING=1")
    finally:
        stop.set()
        watchdog.close()
    stops = [m for _, m in manager.messages if m.get("STOPPING") == "1"]
    assert stops == [{"STOPPING": "1", "STATUS": "stopping"}]  # close() sends it once only

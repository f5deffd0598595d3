"""``tcp://HOST:PORT`` and ``tcp-listen://HOST:PORT``: the link over TCP.

For an emulator in another process or on another bench PC (ARCHITECTURE.md). Both carry
the raw word stream of :mod:`bridge.wordstream`, with Nagle's algorithm off
(``TCP_NODELAY``), and start no thread; :class:`TcpStream` and :class:`TcpListenStream`
are the same connections as plain byte streams (``box+tcp://`` speaks the interface-box
protocol over one, to a box or an emulated box in another process).

``tcp://HOST:PORT`` connects when opened; a refused or failed first attempt is not an
error (the peer may start later): :meth:`~bridge.ports.base.WordPort.wait_peer`
(re)connects, retrying every 0.2 s until its timeout, also after the connection was
lost. ``tcp-listen://HOST:PORT`` binds and listens when opened (port 0 picks a free
port: see :attr:`TcpListenPort.address`) and serves one connection at a time;
``wait_peer`` and ``recv`` accept the next one when the current one is gone. No silent
or idle connection keeps the scanner out (:class:`TcpListenStream`: the rule for a
second connection, the idle timeout and the allow-list).

Options (``?name=value``): ``write_timeout`` (seconds without progress before the peer
counts as gone, default 5), ``connect_timeout`` (``tcp://`` only: one attempt, default
3), ``idle_timeout`` (``tcp-listen://`` only: seconds of silence after which a connection
gives way, default 10) and ``allow`` (``tcp-listen://`` only: the peer IP addresses or
networks accepted, comma-separated; default any). A hostname that does not resolve, or an
address that cannot be bound, is a :class:`~bridge.ports.base.PortError`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import select
import socket
import time
from urllib.parse import urlsplit

from bridge.errors import PortURLError
from bridge.ports._url import IPNetwork, ip_networks, parse_url, positive_seconds, seconds
from bridge.ports.base import PortError
from bridge.ports.bytestream import ByteStream, ReopeningStream
from bridge.ports.driver import StreamWordPort

__all__ = [
    "TcpListenPort",
    "TcpListenStream",
    "TcpPort",
    "TcpStream",
    "open_tcp",
    "open_tcp_listen",
    "open_tcp_listen_stream",
    "open_tcp_stream",
]

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 10.0
"""``tcp-listen://``: seconds a connection may stay silent before it gives way (docs/ports.md)."""
_SEND_MAX = 1 << 20
_WARN_EVERY_S = 60.0  # a refused peer that retries is a WARNING once a minute


def _host_port(url: str, location: str) -> tuple[str, int]:
    """``HOST:PORT`` of a socket URL; a bad one is a usage error naming what to write."""
    try:
        parts = urlsplit("//" + location)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise PortURLError(f"{url}: {exc} (write HOST:PORT, as in tcp://127.0.0.1:5104)") from exc
    if not host or port is None or parts.path:
        raise PortURLError(f"{url}: write HOST:PORT, as in tcp://127.0.0.1:5104")
    try:
        host.encode("idna")
    except UnicodeError:
        raise PortURLError(f"{url}: {host!r} is not a host name") from None
    return host, port


class _SocketStream(ByteStream):
    """One connected socket at a time."""

    def __init__(self, url: str, write_timeout: float) -> None:
        self.url = url
        self.write_timeout = write_timeout
        self._sock: socket.socket | None = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _use(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock

    def read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        sock = self._sock
        if sock is None:
            raise OSError("no connection")
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            readable, _, _ = select.select([sock], [], [], timeout)
            if not readable:
                return b""
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                return b""
        return data if data else None

    def write_some(self, data: memoryview, timeout: float) -> int:
        sock = self._sock
        if sock is None:
            raise OSError("no connection")
        try:
            return sock.send(data[:_SEND_MAX])
        except BlockingIOError:
            pass
        _, writable, _ = select.select([], [sock], [], timeout)
        if not writable:
            return 0
        try:
            return sock.send(data[:_SEND_MAX])
        except BlockingIOError:
            return 0

    def abort(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self, timeout: float) -> None:
        """Send FIN after the data, then read and drop the peer's bytes until its end of
        stream (or ``timeout``): a socket closed with input unread, or that gets input
        once closed, is reset by the kernel, and a reset throws away whatever the kernel
        had not sent yet, the last words and the goodbye among them."""
        sock = self._sock
        if sock is None:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            while True:
                try:
                    if not sock.recv(_SEND_MAX):
                        return  # the peer's end of stream: it has read ours
                    continue
                except BlockingIOError:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                select.select([sock], [], [], left)

    def disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class TcpStream(_SocketStream, ReopeningStream):
    """``tcp://HOST:PORT`` as a byte stream: connects, and reconnects in :meth:`connect`."""

    def __init__(
        self, url: str, host: str, port: int, *, connect_timeout: float, write_timeout: float
    ) -> None:
        super().__init__(url, write_timeout)
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise PortError(f"{url}: cannot resolve {host}: {exc}") from exc
        if not self.connect(connect_timeout):
            log.info("%s: not connected yet; waiting for the peer retries", url)

    def _open(self, timeout: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=max(timeout, 0.01))
        self._use(sock)
        log.info("%s: connected", self.url)

    def _open_failed(self) -> str:
        return "connect"

    def release(self) -> None:
        self.disconnect()


class TcpListenStream(_SocketStream):
    """``tcp-listen://HOST:PORT`` as a byte stream: one accepted connection at a time.

    A connection holds the port only while it is *live*: something arrived on it within
    the last ``idle_timeout`` seconds. A connection that sends nothing within
    ``idle_timeout`` of being accepted is closed; a newcomer while one is open replaces
    the current connection unless that one is live, and is refused (closed at once)
    otherwise; a peer whose IP address is not in ``allow`` (when given) is refused.
    Each refusal or replacement is a WARNING (docs/ports.md, "Who holds a tcp-listen
    port").
    """

    accept_in_recv = True

    def __init__(
        self,
        url: str,
        host: str,
        port: int,
        *,
        write_timeout: float,
        idle_timeout: float = IDLE_TIMEOUT_S,
        allow: tuple[IPNetwork, ...] = (),
    ) -> None:
        super().__init__(url, write_timeout)
        self.idle_timeout = idle_timeout
        self.allow = allow
        self._peer = ""  # the current connection's peer address, for messages
        self._accepted_at = 0.0
        self._heard: float | None = None  # when something last arrived on it
        self._ending: str | None = None  # why the current connection gives way
        self._pending: tuple[socket.socket, str] | None = None  # the one replacing it
        self._warned: dict[str, float] = {}  # peer -> when a refusal was last a WARNING
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._listener = socket.create_server((host, port), family=family, backlog=1)
        except OSError as exc:
            raise PortError(f"{url}: cannot listen on {host}:{port}: {exc}") from exc
        self._listener.setblocking(False)
        name = self._listener.getsockname()
        self.address: tuple[str, int] = (str(name[0]), int(name[1]))
        log.info("%s: listening on %s:%d", url, *self.address)

    def connect(self, timeout: float) -> bool:
        if self._sock is not None:
            return True
        if self._pending is not None:
            (sock, peer), self._pending = self._pending, None
            self._take(sock, peer)
            return True
        readable, _, _ = select.select([self._listener], [], [], timeout)
        if not readable:
            return False
        accepted = self._accept()
        if accepted is None:
            return False
        self._take(*accepted)
        return True

    def read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        sock = self._sock
        if sock is None:
            raise OSError("no connection")
        if self._ending is None:
            data = self._recv(sock, max_bytes)
            if data != b"":
                return data
            wait = max(0.0, min(timeout, self._silence_left()))
            readable, _, _ = select.select([sock, self._listener], [], [], wait)
            if self._listener in readable:
                self._newcomer()
            if self._ending is None and sock in readable:
                data = self._recv(sock, max_bytes)
                if data != b"":
                    return data
            if self._ending is None and self._silence_left() <= 0:
                self._give_way(f"it sent nothing within {self.idle_timeout:g} s: closed")
        return None if self._ending is not None else b""

    def disconnect(self) -> None:
        super().disconnect()
        self._ending = None

    def release(self) -> None:
        self.disconnect()
        if self._pending is not None:
            self._pending[0].close()
            self._pending = None
        self._listener.close()

    # ------------------------------------------------------------------ helpers

    def _recv(self, sock: socket.socket, max_bytes: int) -> bytes | None:
        """Bytes that arrived, b"" for none yet, None at EOF."""
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            return b""
        if not data:
            return None
        self._heard = time.monotonic()
        return data

    def _silence_left(self) -> float:
        """Seconds before a connection that has sent nothing is closed (inf: it spoke)."""
        if self._heard is not None:
            return math.inf
        return self._accepted_at + self.idle_timeout - time.monotonic()

    def _live(self) -> bool:
        """Whether the current connection was heard from within ``idle_timeout``."""
        heard = self._heard
        return heard is not None and time.monotonic() - heard < self.idle_timeout

    def _take(self, sock: socket.socket, peer: str) -> None:
        self._use(sock)
        self._peer = peer
        self._accepted_at = time.monotonic()
        self._heard = None
        self._ending = None
        log.info("%s: accepted a connection from %s", self.url, peer)

    def _accept(self) -> tuple[socket.socket, str] | None:
        """The next connection waiting, if its peer is allowed (else it is closed)."""
        try:
            sock, address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        peer = str(address[0])
        if self.allow and not _allowed(peer, self.allow):
            sock.close()
            self._warn(peer, "%s: refused a connection from %s: not in allow=", peer)
            return None
        return sock, peer

    def _newcomer(self) -> None:
        """A connection arrived while one is open: refuse it, or let it replace this one."""
        accepted = self._accept()
        if accepted is None:
            return
        sock, peer = accepted
        if self._live():
            sock.close()
            self._warn(
                peer,
                "%s: refused a second connection from %s: the one from %s is active",
                peer,
                self._peer,
            )
            return
        if self._heard is None:
            why = "it has sent nothing"
        else:
            why = f"nothing from it for {time.monotonic() - self._heard:.1f} s"
        self._pending = sock, peer
        self._give_way(f"{why}; replaced by a newer connection from {peer}")

    def _give_way(self, why: str) -> None:
        """End the current connection (reads report EOF until the driver releases it)."""
        log.warning("%s: the connection from %s ends: %s", self.url, self._peer, why)
        self._ending = why
        self.abort()

    def _warn(self, peer: str, message: str, *args: object) -> None:
        """``message`` at WARNING, at most once a minute per peer (DEBUG in between)."""
        now = time.monotonic()
        if len(self._warned) > 256:
            self._warned.clear()
        last = self._warned.get(peer)
        level = (
            logging.DEBUG if last is not None and now - last < _WARN_EVERY_S else logging.WARNING
        )
        if level == logging.WARNING:
            self._warned[peer] = now
        log.log(level, message, self.url, *args)


def _allowed(peer: str, allow: tuple[IPNetwork, ...]) -> bool:
    """Whether the IP address ``peer`` is in one of the networks of ``allow``."""
    try:
        address = ipaddress.ip_address(peer.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allow)


TcpPort = TcpListenPort = StreamWordPort
"""The ports of ``tcp://`` and ``tcp-listen://``: the one :class:`StreamWordPort` (the old
class names; the stream's ``address``, ``host`` and ``port`` are the port's)."""


def open_tcp_stream(url: str) -> TcpStream:
    """The byte stream of ``tcp://HOST:PORT[?...]`` (for ``box+tcp://``)."""
    parsed = parse_url(
        url,
        "tcp",
        {"connect_timeout": seconds, "write_timeout": seconds},
        location=_host_port,
    )
    host, port = _host_port(url, parsed.location)
    return TcpStream(
        url,
        host,
        port,
        connect_timeout=parsed.options.get("connect_timeout", 3.0),
        write_timeout=parsed.options.get("write_timeout", 5.0),
    )


def open_tcp_listen_stream(url: str) -> TcpListenStream:
    """The byte stream of ``tcp-listen://HOST:PORT[?...]`` (port 0: any free port)."""
    parsed = parse_url(
        url,
        "tcp-listen",
        {"write_timeout": seconds, "idle_timeout": positive_seconds, "allow": ip_networks},
        location=_host_port,
    )
    host, port = _host_port(url, parsed.location)
    return TcpListenStream(
        url,
        host,
        port,
        write_timeout=parsed.options.get("write_timeout", 5.0),
        idle_timeout=parsed.options.get("idle_timeout", IDLE_TIMEOUT_S),
        allow=parsed.options.get("allow", ()),
    )


def open_tcp(url: str) -> StreamWordPort:
    """The port of ``tcp://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_tcp_stream(url))


def open_tcp_listen(url: str) -> StreamWordPort:
    """The port of ``tcp-listen://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_tcp_listen_stream(url))

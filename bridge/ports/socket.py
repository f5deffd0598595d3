"""``tcp://HOST:PORT`` and ``tcp-listen://HOST:PORT``: the link over TCP.

For an emulator in another process or on another bench PC (ARCHITECTURE.md). Both carry
the raw word stream of :mod:`bridge.ports.wordstream`, with Nagle's algorithm off
(``TCP_NODELAY``), and start no thread; :class:`TcpStream` and :class:`TcpListenStream`
are the same connections as plain byte streams (``box+tcp://`` speaks the interface-box
protocol over one, to a box or an emulated box in another process).

``tcp://HOST:PORT`` connects when opened; a refused or failed first attempt is not an
error (the peer may start later): :meth:`~bridge.ports.base.WordPort.wait_peer`
(re)connects, retrying every 0.2 s until its timeout, also after the connection was
lost. ``tcp-listen://HOST:PORT`` binds and listens when opened (port 0 picks a free
port: see :attr:`TcpListenPort.address`) and serves one connection at a time;
``wait_peer`` and ``recv`` accept the next one when the current one is gone.

Options (``?name=value``): ``write_timeout`` (seconds without progress before the peer
counts as gone, default 5), ``connect_timeout`` (``tcp://`` only: one attempt, default
3). A hostname that does not resolve, or an address that cannot be bound, is a
:class:`~bridge.ports.base.PortError`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from urllib.parse import urlsplit

from bridge.ports._url import parse_url, seconds
from bridge.ports.base import PortError
from bridge.ports.bytestream import ByteStream
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

RETRY_S = 0.2
_SEND_MAX = 1 << 20


def _host_port(url: str, location: str) -> tuple[str, int]:
    try:
        parts = urlsplit("//" + location)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise PortError(f"{url}: {exc}") from exc
    if not host or port is None or parts.path:
        raise PortError(f"{url}: write HOST:PORT, as in tcp://127.0.0.1:5104")
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

    def disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class TcpStream(_SocketStream):
    """``tcp://HOST:PORT`` as a byte stream: connects, and reconnects in :meth:`connect`."""

    def __init__(
        self, url: str, host: str, port: int, *, connect_timeout: float, write_timeout: float
    ) -> None:
        super().__init__(url, write_timeout)
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._next_try = 0.0
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise PortError(f"{url}: cannot resolve {host}: {exc}") from exc
        if not self.connect(connect_timeout):
            log.info("%s: not connected yet; waiting for the peer retries", url)

    def connect(self, timeout: float) -> bool:
        if self._sock is not None:
            return True
        wait = self._next_try - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            if self._next_try > time.monotonic():
                return False
        try:
            sock = socket.create_connection((self.host, self.port), timeout=max(timeout, 0.01))
        except OSError as exc:
            self._next_try = time.monotonic() + RETRY_S
            log.debug("%s: connect: %s", self.url, exc)
            return False
        self._use(sock)
        log.info("%s: connected", self.url)
        return True

    def release(self) -> None:
        self.disconnect()


class TcpListenStream(_SocketStream):
    """``tcp-listen://HOST:PORT`` as a byte stream: one accepted connection at a time."""

    accept_in_recv = True

    def __init__(self, url: str, host: str, port: int, *, write_timeout: float) -> None:
        super().__init__(url, write_timeout)
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
        readable, _, _ = select.select([self._listener], [], [], timeout)
        if not readable:
            return False
        try:
            sock, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        self._use(sock)
        log.info("%s: accepted a connection from %s", self.url, peer)
        return True

    def release(self) -> None:
        self.disconnect()
        self._listener.close()


TcpPort = TcpListenPort = StreamWordPort
"""The ports of ``tcp://`` and ``tcp-listen://``: the one :class:`StreamWordPort` (the old
class names; the stream's ``address``, ``host`` and ``port`` are the port's)."""


def open_tcp_stream(url: str) -> TcpStream:
    """The byte stream of ``tcp://HOST:PORT[?...]`` (for ``box+tcp://``)."""
    parsed = parse_url(url, "tcp", {"connect_timeout": seconds, "write_timeout": seconds})
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
    parsed = parse_url(url, "tcp-listen", {"write_timeout": seconds})
    host, port = _host_port(url, parsed.location)
    return TcpListenStream(url, host, port, write_timeout=parsed.options.get("write_timeout", 5.0))


def open_tcp(url: str) -> StreamWordPort:
    """The port of ``tcp://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_tcp_stream(url))


def open_tcp_listen(url: str) -> StreamWordPort:
    """The port of ``tcp-listen://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_tcp_listen_stream(url))

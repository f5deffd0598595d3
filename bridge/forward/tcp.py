"""The association socket: deadlines on every read and write, TCP tuning, interruption.

**Deadlines.** pynetdicom 3.0 gives its socket the network timeout when it creates it,
then clears it once connected (``AssociationSocket.connect`` calls ``settimeout(None)``),
so every later read and write may block for ever: its DUL thread reads a PDU header and
then waits for the rest of the PDU with no limit, and a write to a peer that stopped
reading never returns. :class:`TunedAssociationSocket` fixes that for the associations
the bridge requests:

* once connected, the socket gets ``settimeout(network_timeout)``: any single blocking
  call (a write that can make no progress, a read that gets nothing) ends with
  ``TimeoutError`` after ``network_timeout`` seconds; pynetdicom treats that as a closed
  connection (event 17: A-P-ABORT to the user, the association is gone);
* :meth:`~TunedAssociationSocket.recv`, the DUL's only read path, must get all the bytes
  it asks for (a PDU header, then a PDU body) within ``network_timeout`` *in total*, so a
  peer that trickles a response at one byte a second cannot keep the association alive;
  and it refuses a PDU longer than :data:`MAX_PDU_READ` (a memory bound against a
  garbage length);
* the connect itself (and a TLS handshake) is bounded by pynetdicom's
  ``connection_timeout``.

**Interruption.** :meth:`TunedAssociationSocket.interrupt` may be called from any
thread: it shuts the connection down (both directions), which wakes a thread blocked in a
read or write of that socket at once; a socket interrupted before its connect finished
is shut down as soon as the connect returns. The Sender uses it to stop within a few
seconds whatever the peer does.

**TCP tuning** (``tuned``), why: a DICOM receiver left as shipped (DCMTK ``storescp``,
Debian's Orthanc) writes its C-STORE response in pieces with Nagle's algorithm on, so
the second piece waits until the sender acknowledges the first; a sender with the
default delayed ACK holds that ACK for about 40 ms, once per object. A sender cannot
configure the receiver, so it must acknowledge at once. Measured with
:class:`bridge.forward.scu.Sender` on a 2-core loopback box, 100 CT objects of 512 KB
into DCMTK 3.6.7 ``storescp`` as shipped, one association, median of 3 runs: default
sockets 14.5 objects/s; ``TCP_NODELAY`` only 20.9; ``TCP_NODELAY`` plus ``TCP_QUICKACK``
re-armed after every receive 254 (DCMTK ``storescu`` as shipped: 22). The reference
measurements are in ``shared/reference/dicom-gateway-anchors.md`` ("Addendum").
What: ``TCP_NODELAY`` once the connection is up and ``TCP_QUICKACK`` after every read.
Linux clears ``TCP_QUICKACK`` by itself (it is a mode, not a setting), and setting it
also sends any ACK the kernel was holding back, so it is re-armed after each
:meth:`~TunedAssociationSocket.recv` (which pynetdicom calls twice per PDU: the 6-byte
header, then the body). ``TCP_QUICKACK`` exists on Linux only; elsewhere only
``TCP_NODELAY`` is set.

How it hooks pynetdicom (pinned ``pynetdicom>=3.0,<4`` in ``pyproject.toml``; written
against 3.0.4). pynetdicom 3 has no option for socket options or read deadlines, so this
module relies on these internals, and :func:`hook_problems` checks each of them (the
test suite fails, and :func:`make_ae` falls back to plain sockets with a warning, if one
changes):

1. ``ApplicationEntity.associate()`` creates its socket by calling
   ``self._create_socket(assoc, address, tls_args)`` (private) and uses the
   :class:`~pynetdicom.transport.AssociationSocket` it returns. :class:`TunedAE`
   overrides that method, doing what the original does: construct the socket with
   ``AssociationSocket(assoc, address=address)`` and set its ``tls_args`` property.
2. ``AssociationSocket.connect(primitive)`` (public) connects, leaving the connected
   socket (a :class:`socket.socket` or :class:`ssl.SSLSocket`) in the public ``socket``
   attribute, or ``None`` on failure; it clears the socket's timeout.
3. ``AssociationSocket.recv(nr_bytes) -> bytearray`` (public) is the only read path of
   the upper layer: ``DULServiceProvider._read_pdu_data`` calls ``self.socket.recv(6)``
   then ``self.socket.recv(pdu_length)`` and treats ``OSError`` (``TimeoutError``
   included) and a short read as a closed connection.
4. ``AssociationSocket.send`` writes with ``socket.send`` (so the socket's timeout
   bounds each write) and treats any exception as a closed connection.
5. ``AssociationSocket._shutdown_socket()`` (private) is how pynetdicom shuts down and
   closes the connection (``close()`` and the state machine's abort actions call it);
   it is overridden so that the close happens even when the shutdown fails.
6. ``Association.network_timeout`` (public) holds the AE's network timeout.
7. ``AssociationSocket.ready`` (public property) is how the DUL thread's loop
   (``DULServiceProvider._is_transport_event``) asks whether a PDU is waiting; it
   answers at once, so the loop polls. :attr:`TunedAssociationSocket.wait_for_data`
   makes it wait for data instead, for as long as the fast path has a batch on the
   wire (:mod:`bridge.forward.fastpath`): the DUL thread then sleeps in ``poll`` and
   wakes when a response arrives, instead of polling and competing for the
   interpreter lock with the thread that sends.

The storage commitment listener in :mod:`bridge.forward.scu` is an acceptor and keeps
pynetdicom's own sockets: it receives one small request per batch.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import select
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from pynetdicom import AE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

__all__ = [
    "DEFAULT_NETWORK_TIMEOUT",
    "MAX_PDU_READ",
    "QUICKACK_SUPPORTED",
    "TunedAE",
    "TunedAssociationSocket",
    "hook_problems",
    "make_ae",
    "shutdown",
    "tune_connected",
]

LOGGER = logging.getLogger(__name__)

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
QUICKACK_SUPPORTED = _TCP_QUICKACK is not None and sys.platform.startswith("linux")
"""True where ``TCP_QUICKACK`` exists (Linux); elsewhere only ``TCP_NODELAY`` is set."""

DEFAULT_NETWORK_TIMEOUT: Final = 60.0
"""Seconds for one read or write when the association has no network timeout."""
MAX_PDU_READ: Final = 64 << 20
"""The longest PDU the bridge reads (bytes): a longer length is treated as garbage."""
_READ_CHUNK = 1 << 16


def tune_connected(sock: socket.socket) -> None:
    """Set ``TCP_NODELAY`` (and arm ``TCP_QUICKACK`` where supported) on ``sock``."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quickack(sock)
    except OSError as exc:  # e.g. a socket the peer already closed
        LOGGER.debug("cannot tune socket %r: %s", sock, exc)


def _quickack(sock: socket.socket) -> None:
    if QUICKACK_SUPPORTED:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)  # type: ignore[arg-type]


def shutdown(sock: socket.socket | None) -> None:
    """Shut ``sock`` down both ways, from any thread: blocked reads and writes return.

    For a TLS socket the plain socket's shutdown is used: ``SSLSocket.shutdown`` also
    drops the SSL object, which the thread blocked in it may still be using.
    """
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):  # not connected, already closed
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class TunedAssociationSocket(AssociationSocket):
    """An :class:`~pynetdicom.transport.AssociationSocket` with deadlines on every read
    and write, interruptible from another thread, and (``tuned``) Nagle and delayed ACK
    off. See the module docstring."""

    tuned: bool = True
    label: str = "peer"
    """Names the peer in log lines and in :attr:`failure` (the destination's name)."""
    failure: str | None = None
    """The first problem the reads found (deadline, size, garbage), for the Sender."""
    wait_for_data: float = 0.0
    """Seconds :attr:`ready` waits for data to arrive (0: it answers at once, as
    pynetdicom's does). Set while a batch is on the wire (module docstring, item 7)."""
    _interrupted: bool = False
    _header_next: bool = True  # pynetdicom reads a 6-byte header, then the body

    @property
    def ready(self) -> bool:
        """Whether data is waiting; first waits up to :attr:`wait_for_data` for some."""
        wait = self.wait_for_data
        sock = self.socket
        if wait > 0 and sock is not None and not isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):  # the original reports them
                poller = select.poll()
                poller.register(sock, select.POLLIN | select.POLLPRI)
                poller.poll(math.ceil(wait * 1000))
        return bool(super().ready)

    def _limit(self) -> float:
        value = self.assoc.network_timeout
        return float(value) if value is not None and value > 0 else DEFAULT_NETWORK_TIMEOUT

    def connect(self, primitive: Any) -> None:
        super().connect(primitive)
        sock = self.socket
        if sock is None:
            return
        # pynetdicom cleared the timeout: every blocking call would wait for ever
        sock.settimeout(self._limit())
        if self.tuned:
            tune_connected(sock)
        if self._interrupted:  # interrupted while connecting
            shutdown(sock)

    def _shutdown_socket(self) -> None:
        """Shut down and close, the close even when the shutdown fails.

        pynetdicom's version skips the close when the shutdown raises, which it does
        once :meth:`interrupt` has shut the socket down and the peer has closed its
        end: the descriptor would stay open until garbage collection.
        """
        sock = self.socket
        if sock is None:
            return
        shutdown(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def interrupt(self) -> None:
        """Shut the connection down now (any thread); a connect in progress is shut down
        as soon as it returns. Every read or write of the socket then fails at once."""
        self._interrupted = True
        shutdown(self.socket)

    def _fail(self, reason: str) -> str:
        """Log ``reason``; keep the first one as :attr:`failure`; return it."""
        LOGGER.warning("%s", reason)
        if self.failure is None:
            self.failure = reason
        return reason

    def recv(self, nr_bytes: int) -> bytearray:
        """All ``nr_bytes`` within the network timeout; fewer only if the peer closed.

        Raises ``TimeoutError`` when the deadline passes and ``OSError`` for a length
        above :data:`MAX_PDU_READ`; pynetdicom's DUL treats both as a closed connection.
        """
        sock = self.socket
        if sock is None:
            raise OSError("the association socket is closed")
        if nr_bytes > MAX_PDU_READ:
            raise OSError(
                self._fail(
                    f"{self.label} announced a PDU of {nr_bytes} bytes "
                    f"(more than {MAX_PDU_READ}): garbage, connection dropped"
                )
            )
        header = self._header_next
        limit = self._limit()
        deadline = time.monotonic() + limit
        data = bytearray()
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN)
        except (ValueError, OSError) as exc:  # closed under us
            raise OSError(f"the association socket is closed: {exc}") from exc
        while len(data) < nr_bytes:
            buffered = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            left = deadline - time.monotonic()
            if not buffered and (left <= 0 or not poller.poll(math.ceil(left * 1000))):
                raise TimeoutError(
                    self._fail(
                        f"{self.label} sent {len(data)} of {nr_bytes} bytes of a PDU "
                        f"{'header' if header else 'body'} within the network timeout "
                        f"({limit:g} s): silent or trickling peer, connection dropped"
                    )
                )
            chunk = sock.recv(min(nr_bytes - len(data), _READ_CHUNK))
            if not chunk:  # closed by the peer: the caller sees a short read
                break
            data += chunk
        if header and len(data) == nr_bytes and not 0x01 <= data[0] <= 0x07:
            # pynetdicom aborts on it (event 19) and reads no body; keep the reason
            self._fail(f"{self.label} sent an unknown PDU type 0x{data[0]:02X} (garbage)")
        else:
            self._header_next = not header
        if self.tuned:
            with contextlib.suppress(OSError):  # closed under us: the caller sees that
                _quickack(sock)
        return data


class TunedAE(AE):
    """A pynetdicom application entity whose requested associations use
    :class:`TunedAssociationSocket`: deadlines always, TCP tuning if ``tuned``.

    ``on_socket`` (if set) is called with each new socket before it connects, so that
    its owner can :meth:`~TunedAssociationSocket.interrupt` it from another thread.
    """

    tuned: bool = True
    label: str = "peer"
    on_socket: Callable[[TunedAssociationSocket], None] | None = None

    def _create_socket(
        self,
        assoc: Any,
        address: Any,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        sock = TunedAssociationSocket(assoc, address=address)
        sock.tuned = self.tuned
        sock.label = self.label
        sock.tls_args = tls_args
        if self.on_socket is not None:
            self.on_socket(sock)
        return sock


def hook_problems() -> list[str]:
    """What, if anything, in the installed pynetdicom no longer fits this adapter.

    An empty list means every internal named in the module docstring is present with
    the expected signature and use.
    """
    problems: list[str] = []

    def expect(owner: type, name: str, params: list[str]) -> None:
        member = inspect.getattr_static(owner, name, None)
        if member is None or not callable(member):
            problems.append(f"{owner.__name__}.{name} is missing")
            return
        got = list(inspect.signature(member).parameters)
        if got[: len(params)] != params:
            problems.append(f"{owner.__name__}.{name}{tuple(got)} != {tuple(params)}")

    def uses(function: Any, what: str, *needles: str) -> None:
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            problems.append(f"cannot read the source of {what}")
            return
        for needle in needles:
            if needle not in source:
                problems.append(f"{what} no longer contains {needle!r}")

    expect(AE, "_create_socket", ["self", "assoc", "address", "tls_args"])
    expect(AssociationSocket, "__init__", ["self", "assoc", "client_socket", "address"])
    expect(AssociationSocket, "connect", ["self", "primitive"])
    expect(AssociationSocket, "recv", ["self", "nr_bytes"])
    expect(AssociationSocket, "send", ["self", "bytestream"])
    expect(AssociationSocket, "_shutdown_socket", ["self"])
    if not isinstance(inspect.getattr_static(AssociationSocket, "tls_args", None), property):
        problems.append("AssociationSocket.tls_args is not a property")
    if not isinstance(inspect.getattr_static(AssociationSocket, "ready", None), property):
        problems.append("AssociationSocket.ready is not a property")
    uses(
        DULServiceProvider._is_transport_event,
        "DULServiceProvider._is_transport_event",
        "self.socket.ready",
    )
    uses(AE.associate, "ApplicationEntity.associate", "self._create_socket(")
    uses(
        DULServiceProvider._read_pdu_data,
        "DULServiceProvider._read_pdu_data",
        "self.socket.recv(6)",
        "self.socket.recv(pdu_length)",
        "except (OSError, TimeoutError)",
    )
    uses(AssociationSocket.send, "AssociationSocket.send", "self.socket.send(", "except Exception")
    uses(AssociationSocket.close, "AssociationSocket.close", "self._shutdown_socket()")
    from pynetdicom.association import Association

    if not isinstance(inspect.getattr_static(Association, "network_timeout", None), property):
        problems.append("Association.network_timeout is not a property")
    return problems


_PROBLEMS: list[str] | None = None


def make_ae(
    ae_title: str,
    *,
    tuned: bool = True,
    label: str = "peer",
    on_socket: Callable[[TunedAssociationSocket], None] | None = None,
) -> AE:
    """A pynetdicom ``AE`` called ``ae_title`` whose requested associations use
    :class:`TunedAssociationSocket` (deadlines; tuning if ``tuned``); ``label`` names
    the peer in logs and ``on_socket`` sees each new socket (see :class:`TunedAE`).

    If the installed pynetdicom no longer has the internals this adapter relies on, a
    plain ``AE`` is returned and a warning is logged once, so forwarding keeps working
    (without deadlines and slowly) rather than failing; the test suite fails then.
    """
    global _PROBLEMS
    if _PROBLEMS is None:
        _PROBLEMS = hook_problems()
        if _PROBLEMS:
            LOGGER.warning(
                "socket deadlines and TCP tuning disabled, pynetdicom internals changed: %s",
                "; ".join(_PROBLEMS),
            )
    if _PROBLEMS:
        return AE(ae_title=ae_title)
    ae = TunedAE(ae_title=ae_title)
    ae.tuned = tuned
    ae.label = label
    ae.on_socket = on_socket
    return ae

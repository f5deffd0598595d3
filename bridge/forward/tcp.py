"""TCP tuning for pynetdicom associations: Nagle off, delayed ACKs off.

Why: a DICOM receiver left as shipped (DCMTK ``storescp``, Debian's Orthanc) writes its
C-STORE response in pieces with Nagle's algorithm on, so the second piece waits until
the sender acknowledges the first; a sender with the default delayed ACK holds that
ACK for about 40 ms, once per object. A sender cannot configure the receiver, so it
must acknowledge at once. Measured with :class:`bridge.forward.scu.Sender` on a 2-core
loopback box, 100 CT objects of 512 KB into DCMTK 3.6.7 ``storescp`` as shipped, one
association, median of 3 runs: default sockets 14.5 objects/s; ``TCP_NODELAY`` only
20.9; ``TCP_NODELAY`` plus ``TCP_QUICKACK`` re-armed after every receive 254 (DCMTK
``storescu`` as shipped: 22). The reference measurements are in
``shared/reference/dicom-gateway-anchors.md`` ("Addendum").

What: :class:`TunedAssociationSocket` sets ``TCP_NODELAY`` once the connection is up and
sets ``TCP_QUICKACK`` after every read. Linux clears ``TCP_QUICKACK`` by itself (it is a
mode, not a setting), and setting it also sends any ACK the kernel was holding back, so
it is re-armed after each :meth:`~pynetdicom.transport.AssociationSocket.recv` (which
pynetdicom calls twice per PDU: the 6-byte header, then the body). ``TCP_QUICKACK`` exists
on Linux only; elsewhere only ``TCP_NODELAY`` is set. :func:`make_ae` returns an
application entity that uses the tuned socket for every association it requests.

How it hooks pynetdicom (pinned ``pynetdicom>=3.0,<4`` in ``pyproject.toml``; written
against 3.0.4). pynetdicom 3 has no option for socket options, so this module relies on
these internals, and :func:`hook_problems` checks each of them (the test suite fails,
and :func:`make_ae` falls back to plain sockets with a warning, if one changes):

1. ``ApplicationEntity.associate()`` creates its socket by calling
   ``self._create_socket(assoc, address, tls_args)`` (private) and uses the
   :class:`~pynetdicom.transport.AssociationSocket` it returns. :class:`TunedAE`
   overrides that method, doing what the original does: construct the socket with
   ``AssociationSocket(assoc, address=address)`` and set its ``tls_args`` property.
2. ``AssociationSocket.connect(primitive)`` (public) connects, leaving the connected
   socket (a :class:`socket.socket` or :class:`ssl.SSLSocket`) in the public ``socket``
   attribute, or ``None`` on failure.
3. ``AssociationSocket.recv(nr_bytes) -> bytearray`` (public) is the only read path of
   the upper layer (``DULServiceProvider._read_pdu_data``).

Only the requesting side is tuned. The storage commitment listener in
:mod:`bridge.forward.scu` is an acceptor: it receives one small request per batch and
answers it with one PDU, which Nagle never delays.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import ssl
import sys
from typing import Any

from pynetdicom import AE
from pynetdicom.transport import AssociationSocket

__all__ = [
    "QUICKACK_SUPPORTED",
    "TunedAE",
    "TunedAssociationSocket",
    "hook_problems",
    "make_ae",
    "tune_connected",
]

LOGGER = logging.getLogger(__name__)

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
QUICKACK_SUPPORTED = _TCP_QUICKACK is not None and sys.platform.startswith("linux")
"""True where ``TCP_QUICKACK`` exists (Linux); elsewhere only ``TCP_NODELAY`` is set."""


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


class TunedAssociationSocket(AssociationSocket):
    """An :class:`~pynetdicom.transport.AssociationSocket` with Nagle and delayed ACK off."""

    def connect(self, primitive: Any) -> None:
        super().connect(primitive)
        sock = self.socket
        if sock is not None:
            tune_connected(sock)

    def recv(self, nr_bytes: int) -> bytearray:
        data: bytearray = super().recv(nr_bytes)
        sock = self.socket
        if sock is not None:
            with contextlib.suppress(OSError):  # closed under us: the caller sees that
                _quickack(sock)
        return data


class TunedAE(AE):
    """A pynetdicom application entity whose requested associations use tuned sockets."""

    def _create_socket(
        self,
        assoc: Any,
        address: Any,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        sock = TunedAssociationSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock


def hook_problems() -> list[str]:
    """What, if anything, in the installed pynetdicom no longer fits this adapter.

    An empty list means every internal named in the module docstring is present with
    the expected signature.
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

    expect(AE, "_create_socket", ["self", "assoc", "address", "tls_args"])
    expect(AssociationSocket, "__init__", ["self", "assoc", "client_socket", "address"])
    expect(AssociationSocket, "connect", ["self", "primitive"])
    expect(AssociationSocket, "recv", ["self", "nr_bytes"])
    if not isinstance(inspect.getattr_static(AssociationSocket, "tls_args", None), property):
        problems.append("AssociationSocket.tls_args is not a property")
    try:
        source = inspect.getsource(AE.associate)
    except (OSError, TypeError):
        problems.append("cannot read the source of ApplicationEntity.associate")
    else:
        if "self._create_socket(" not in source:
            problems.append("ApplicationEntity.associate no longer calls self._create_socket")
    return problems


_PROBLEMS: list[str] | None = None


def make_ae(ae_title: str, *, tuned: bool = True) -> AE:
    """A pynetdicom ``AE`` called ``ae_title``; with ``tuned``, one that uses tuned sockets.

    If the installed pynetdicom no longer has the internals this adapter relies on, a
    plain ``AE`` is returned and a warning is logged once, so forwarding keeps working
    (slowly) rather than failing.
    """
    global _PROBLEMS
    if tuned:
        if _PROBLEMS is None:
            _PROBLEMS = hook_problems()
            if _PROBLEMS:
                LOGGER.warning(
                    "TCP tuning disabled, pynetdicom internals changed: %s", "; ".join(_PROBLEMS)
                )
        if not _PROBLEMS:
            return TunedAE(ae_title=ae_title)
    return AE(ae_title=ae_title)

"""A hostile DICOM Storage SCP for the tests: it accepts an association, then misbehaves.

A test double written from PS3.8 (not a DICOM implementation): a threaded TCP server on
127.0.0.1 that answers an A-ASSOCIATE-RQ with an A-ASSOCIATE-AC accepting every proposed
presentation context (with its first transfer syntax), reassembles the P-DATA-TF PDUs of
each request, and then, depending on its :class:`Mode`:

``BEHAVE``
    answers every C-STORE-RQ (and C-ECHO-RQ) with Success, releases on request;
``STOP_READING``
    stops reading once a C-STORE data set has started (receive buffer shrunk to a few
    KB before the connection is accepted), so the sender's writes stall mid-object;
``SILENT_AFTER_HEADER``
    answers a complete request with the 6-byte header of a P-DATA-TF PDU only, then
    sends nothing more (it keeps reading);
``TRICKLE``
    sends the C-STORE response one byte every ``interval`` seconds (1 s by default);
``GARBAGE``
    answers a complete request with ``garbage`` (by default an unknown PDU type);
``ABORT_ON``
    sends an A-ABORT and closes the connection as soon as a C-STORE-RQ command names
    ``abort_uid`` (that object's data set may still be on the wire); others BEHAVE.

It stops by itself after ``lifetime`` seconds, and :meth:`HostilePeer.stop` (or leaving
the ``with`` block) shuts every connection down and joins every thread it started.
``requests`` lists the SOP Instance UIDs of the C-STORE commands received, ``stored``
those answered with Success, ``connections`` counts accepted connections.
"""

from __future__ import annotations

import contextlib
import enum
import select
import socket
import struct
import threading
import time
from types import TracebackType

__all__ = ["HostilePeer", "Mode"]

LOOPBACK = "127.0.0.1"
_APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
_IMPLEMENTATION_UID = b"1.2.826.0.1.3680043.10.1999.1"  # a test double's own
_MAX_PDU = 16384
_POLL = 0.05


class Mode(enum.Enum):
    """How the peer misbehaves after accepting the association (module docstring)."""

    BEHAVE = "behave"
    STOP_READING = "stop-reading"
    SILENT_AFTER_HEADER = "silent-after-header"
    TRICKLE = "trickle"
    GARBAGE = "garbage"
    ABORT_ON = "abort-on"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBL", kind, 0, len(body)) + body


def _even(uid: bytes) -> bytes:
    return uid + b"\x00" if len(uid) % 2 else uid


def _element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHL", group, elem, len(value)) + value


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set, implicit VR little endian, with its group length (PS3.7 6.3)."""
    body = b"".join(_element(0x0000, e, v) for e, v in elements)
    return _element(0x0000, 0x0000, struct.pack("<L", len(body))) + body


def parse_command(data: bytes) -> dict[int, bytes]:
    """Element number -> value of a group 0000 command set (implicit VR LE)."""
    elements: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        _group, elem, length = struct.unpack_from("<HHL", data, pos)
        elements[elem] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return elements


def associate_ac(rq: bytes) -> bytes:
    """The A-ASSOCIATE-AC for an A-ASSOCIATE-RQ's body: every context accepted."""
    called, calling = rq[4:20], rq[20:36]
    items = [_item(0x10, _APPLICATION_CONTEXT)]
    pos = 68
    while pos + 4 <= len(rq):
        kind, _, length = struct.unpack_from(">BBH", rq, pos)
        body = rq[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if kind != 0x20:
            continue
        context_id = body[0]
        syntaxes = []
        sub = 4
        while sub + 4 <= len(body):
            sub_kind, _, sub_length = struct.unpack_from(">BBH", body, sub)
            if sub_kind == 0x40:
                syntaxes.append(body[sub + 4 : sub + 4 + sub_length])
            sub += 4 + sub_length
        accepted = bytes([context_id, 0, 0, 0]) + _item(0x40, syntaxes[0])
        items.append(_item(0x21, accepted))
    user = _item(0x51, struct.pack(">L", _MAX_PDU)) + _item(0x52, _IMPLEMENTATION_UID)
    items.append(_item(0x50, user))
    header = struct.pack(">HH", 1, 0) + called + calling + bytes(32)
    return _pdu(0x02, header + b"".join(items))


def response(command: dict[int, bytes], context_id: int, status: int = 0x0000) -> bytes:
    """The P-DATA-TF PDU of the response to a C-STORE-RQ or C-ECHO-RQ command."""
    field = struct.unpack("<H", command[0x0100])[0]
    message_id = command[0x0110]
    elements = [(0x0002, command[0x0002]), (0x0100, struct.pack("<H", field | 0x8000))]
    elements += [(0x0120, message_id), (0x0800, struct.pack("<H", 0x0101))]
    elements += [(0x0900, struct.pack("<H", status))]
    if 0x1000 in command:
        elements.append((0x1000, command[0x1000]))
    pdv = bytes([context_id, 0x03]) + _command(elements)
    return _pdu(0x04, struct.pack(">L", len(pdv)) + pdv)


class _Closed(Exception):
    """The connection ended (peer closed, or the server is stopping)."""


class HostilePeer:
    """A misbehaving Storage SCP on 127.0.0.1 (module docstring); use it with ``with``."""

    def __init__(
        self,
        mode: Mode,
        *,
        abort_uid: str | None = None,
        interval: float = 1.0,
        garbage: bytes = b"\x99\x00\x00\x00\x00\x04junk",
        lifetime: float = 60.0,
        ae_title: str = "HOSTILE",
    ) -> None:
        self.mode = mode
        self.abort_uid = abort_uid
        self.interval = interval
        self.garbage = garbage
        self.lifetime = lifetime
        self.ae_title = ae_title
        self.requests: list[str] = []
        self.stored: list[str] = []
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mode is Mode.STOP_READING:  # inherited by accepted sockets: a small window
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(8)
        self.host = LOOPBACK
        self.port: int = self._listener.getsockname()[1]
        self._started = time.monotonic()
        self._spawn(self._accept, "hostile-accept")

    # -- lifecycle

    def __enter__(self) -> HostilePeer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _expired(self) -> bool:
        return self._stop.is_set() or time.monotonic() - self._started > self.lifetime

    def stop(self) -> None:
        """Close the listener and every connection; join every thread."""
        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5.0)
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    @property
    def address(self) -> str:
        """``AE@127.0.0.1:PORT``, as the bridge names a destination."""
        return f"{self.ae_title}@{self.host}:{self.port}"

    # -- server

    def _accept(self) -> None:
        number = 0
        while not self._expired():
            ready, _, _ = select.select([self._listener], [], [], _POLL)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            number += 1
            with self._lock:
                self._sockets.append(conn)
                self.connections += 1
            self._spawn(self._serve, f"hostile-conn-{number}", conn)

    def _idle(self) -> None:
        """Do nothing (no reads, no writes) until stopped or expired."""
        while not self._expired():
            time.sleep(_POLL)

    def _read(self, conn: socket.socket, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            if self._expired():
                raise _Closed
            ready, _, _ = select.select([conn], [], [], _POLL)
            if not ready:
                continue
            try:
                chunk = conn.recv(n - len(data))
            except OSError as exc:
                raise _Closed from exc
            if not chunk:
                raise _Closed
            data += chunk
        return bytes(data)

    def _read_pdu(self, conn: socket.socket) -> tuple[int, bytes]:
        kind, _, length = struct.unpack(">BBL", self._read(conn, 6))
        return kind, self._read(conn, length)

    def _serve(self, conn: socket.socket) -> None:
        try:
            kind, body = self._read_pdu(conn)
            if kind != 0x01:
                return
            conn.sendall(associate_ac(body))
            self._transfer(conn)
        except (_Closed, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _transfer(self, conn: socket.socket) -> None:
        command = bytearray()
        dataset = bytearray()
        parsed: dict[int, bytes] | None = None
        while True:
            kind, body = self._read_pdu(conn)
            if kind == 0x05:  # A-RELEASE-RQ
                conn.sendall(_pdu(0x06, bytes(4)))
                return
            if kind != 0x04:  # an A-ABORT, or anything else: drop the connection
                return
            pos = 0
            while pos + 6 <= len(body):
                (length,) = struct.unpack_from(">L", body, pos)
                context_id, control = body[pos + 4], body[pos + 5]
                fragment = body[pos + 6 : pos + 4 + length]
                pos += 4 + length
                if control & 0x01:
                    command += fragment
                    if not control & 0x02:
                        continue
                    parsed = parse_command(bytes(command))
                    command.clear()
                    if not self._on_command(conn, parsed):
                        return
                    if parsed.get(0x0800) == struct.pack("<H", 0x0101):
                        self._answer(conn, parsed, context_id)  # no data set (C-ECHO)
                        parsed = None
                    continue
                dataset += fragment
                if self.mode is Mode.STOP_READING:
                    self._idle()
                    return
                if control & 0x02 and parsed is not None:
                    dataset.clear()
                    self._answer(conn, parsed, context_id)
                    parsed = None

    def _on_command(self, conn: socket.socket, command: dict[int, bytes]) -> bool:
        """React to a complete command set; False when the connection is to end."""
        uid = command.get(0x1000, b"").rstrip(b"\x00").decode("ascii", "replace")
        if struct.unpack("<H", command.get(0x0100, b"\x00\x00"))[0] == 0x0001:
            with self._lock:
                self.requests.append(uid)
            if self.mode is Mode.ABORT_ON and uid == self.abort_uid:
                conn.sendall(_pdu(0x07, bytes([0, 0, 0, 0])))  # A-ABORT, service user
                return False
        return True

    def _answer(self, conn: socket.socket, command: dict[int, bytes], context_id: int) -> None:
        reply = response(command, context_id)
        if self.mode is Mode.SILENT_AFTER_HEADER:
            conn.sendall(reply[:6])
            self._drain(conn)
        elif self.mode is Mode.TRICKLE:
            for byte in reply:
                conn.sendall(bytes([byte]))
                if self._stop.wait(self.interval) or self._expired():
                    raise _Closed
        elif self.mode is Mode.GARBAGE:
            conn.sendall(self.garbage)
            self._drain(conn)
        else:
            conn.sendall(reply)
        uid = command.get(0x1000, b"").rstrip(b"\x00").decode("ascii", "replace")
        if uid:
            with self._lock:
                self.stored.append(uid)

    def _drain(self, conn: socket.socket) -> None:
        """Read and ignore everything until the connection ends."""
        while True:
            self._read(conn, 1)

"""A faster C-STORE: the stored file's bytes go out as pre-built P-DATA-TF PDUs.

pynetdicom negotiates the association and decodes the responses; only the sending of a
C-STORE request is done here. pynetdicom's own path reads a file in small chunks, builds
one P-DATA primitive per fragment and pushes each through its DUL state machine, one
``send()`` each: on a fast receiver that costs more CPU than the receiver itself. Here
the command set is encoded directly (implicit VR little endian, PS3.7 6.3 and 9.3.1.1),
the data set is sliced from the file after its file meta group, both are cut into PDV
items no larger than the peer's maximum PDU length (PS3.8 9.3.5), and the whole request
goes out through one write loop with deadlines (:func:`write_within`): the whole request
within the exchange's deadline, and no more than the network timeout without progress,
so a receiver that stops reading mid-object cannot hold the sender for ever.

It relies on these pynetdicom 3.0.x internals, checked by :func:`hook_problems` (a test
fails if they change; at run time the Sender then falls back to ``send_c_store``):

* ``Association._reactor_checkpoint`` (threading.Event) and ``Association._is_paused``:
  the pause handshake ``send_c_store`` uses so the association's reactor does not take
  the response off the DIMSE queue;
* ``Association.dimse.msg_queue``: the queue of complete DIMSE messages,
  ``(context_id, message)``, with ``(None, None)`` put there when the association is
  aborted or the connection closed (what ``DIMSEServiceProvider.get_msg`` reads); read
  here with a timeout of what is left of the exchange's deadline; the response's
  ``MessageIDBeingRespondedTo`` and ``Status``;
* ``Association.dul.socket.socket``: the connected socket, written only by this thread
  while the association is in data transfer (the DUL thread only reads then); its
  timeout is set (:mod:`bridge.forward.tcp`), so it is in non-blocking mode internally
  and :func:`write_within` waits for it with ``poll``;
* ``Association.acse.is_aborted()``: whether an A-ABORT or A-P-ABORT indication waits
  for the user; looked at every 0.2 s of a wait, because an abort after a PDU that
  pynetdicom could not decode (its action AA-8) puts nothing on the DIMSE queue;
* ``Association.acceptor.maximum_length``: the peer's Maximum Length Received;
* ``Association._handle_no_response()``: what ``send_c_store`` does on a timeout;
* ``Association.dul.socket``: the association's socket object; when it is the bridge's
  :class:`~bridge.forward.tcp.TunedAssociationSocket`, its ``wait_for_data`` is set
  while a batch is sent (:func:`pause`), so the DUL thread waits for the responses in
  ``poll`` instead of polling for them.
"""

from __future__ import annotations

import math
import queue
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from bridge.errors import NoResponse
from bridge.forward.tcp import TunedAssociationSocket

__all__ = [
    "DEFAULT_MAX_PDU",
    "NoResponse",
    "build_request",
    "command_set",
    "dataset_offset",
    "exchange",
    "hook_problems",
    "pause",
    "pdata_pdus",
    "resume",
    "send_store",
    "write_within",
]

DEFAULT_MAX_PDU = 1 << 20  # when the peer says 0 (no limit)
_ELEMENT = struct.Struct("<HHL")
_PRIORITY_MEDIUM = 0x0000
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def command_set(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    """The C-STORE-RQ command set, implicit VR little endian, with its group length."""
    body = b"".join(
        _ELEMENT.pack(0x0000, elem, len(value)) + value
        for elem, value in (
            (0x0002, _uid(sop_class)),
            (0x0100, struct.pack("<H", 0x0001)),  # C-STORE-RQ
            (0x0110, struct.pack("<H", message_id)),
            (0x0700, struct.pack("<H", _PRIORITY_MEDIUM)),
            (0x0800, struct.pack("<H", 0x0000)),  # a data set follows
            (0x1000, _uid(sop_instance)),
        )
    )
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(body)) + body


def dataset_offset(data: bytes | memoryview) -> int:
    """Where the data set starts in a Part 10 file (after preamble, DICM and group 0002).

    Raises ``ValueError`` when the file meta group cannot be walked.
    """
    if bytes(data[128:132]) != b"DICM":
        raise ValueError("not a Part 10 file (no DICM at offset 128)")
    pos = 132
    while pos + 8 <= len(data):
        group, _elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            return pos
        vr = bytes(data[pos + 4 : pos + 6])
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + length
    if pos == len(data):
        return pos
    raise ValueError("file meta group runs past the end of the file")


def pdata_pdus(
    context_id: int, payload: bytes | memoryview, *, command: bool, max_pdu: int
) -> list[bytes | memoryview]:
    """P-DATA-TF PDUs carrying ``payload`` as one message part, each within ``max_pdu``.

    ``max_pdu`` is the peer's Maximum Length Received: the length of a PDU's variable
    field, i.e. one PDV item of 4 + 2 + fragment bytes. Returns header and fragment
    pieces to be joined or written with one ``sendmsg``.
    """
    limit = max_pdu if max_pdu > 0 else DEFAULT_MAX_PDU
    step = limit - 6
    if step <= 0:
        raise ValueError(f"maximum PDU length {max_pdu} too small")
    view = memoryview(payload)
    pieces: list[bytes | memoryview] = []
    start = 0
    total = len(view)
    while True:
        fragment = view[start : start + step]
        start += len(fragment)
        control = (0x01 if command else 0x00) | (0x02 if start >= total else 0x00)
        item_length = 2 + len(fragment)
        header = struct.pack(
            ">BBLLBB", 0x04, 0x00, 4 + item_length, item_length, context_id, control
        )
        pieces += [header, fragment]
        if start >= total:
            return pieces


def hook_problems(assoc: Any | None = None) -> list[str]:
    """What is missing of the pynetdicom internals this module relies on."""
    from pynetdicom.association import Association

    problems = []
    if not callable(getattr(Association, "_handle_no_response", None)):
        problems.append("Association._handle_no_response is missing")
    if assoc is not None:
        for path in (
            "_reactor_checkpoint",
            "_is_paused",
            "dimse.msg_queue",
            "acse.is_aborted",
            "dul.socket.socket",
            "dimse_timeout",
            "network_timeout",
            "acceptor.maximum_length",
        ):
            target: Any = assoc
            try:
                for part in path.split("."):
                    target = getattr(target, part)
            except AttributeError:
                problems.append(f"Association.{path} is missing")
    return problems


def build_request(
    assoc: Any, context_id: int, data: bytes, sop_class: str, sop_instance: str, message_id: int
) -> bytes:
    """The bytes of one C-STORE-RQ (command and data set PDUs) from a Part 10 file."""
    max_pdu = int(assoc.acceptor.maximum_length or 0)
    offset = dataset_offset(data)
    pieces = pdata_pdus(
        context_id, command_set(sop_class, sop_instance, message_id), command=True, max_pdu=max_pdu
    )
    pieces += pdata_pdus(context_id, memoryview(data)[offset:], command=False, max_pdu=max_pdu)
    return b"".join(pieces)


def write_within(
    sock: socket.socket, data: bytes | memoryview, *, deadline: float, stall: float
) -> None:
    """Write all of ``data`` by ``deadline`` (monotonic), never ``stall`` s without progress.

    Raises ``TimeoutError`` saying which limit was hit, or the ``OSError`` of the write
    (e.g. the peer closed the connection, or another thread shut it down).
    """
    view = memoryview(data)
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    sent = 0
    while sent < len(view):
        now = time.monotonic()
        wait = min(stall, deadline - now)
        if wait <= 0:
            raise TimeoutError(
                f"request not written within the DIMSE timeout ({sent} of {len(view)} bytes)"
            )
        if not poller.poll(math.ceil(wait * 1000)):
            if time.monotonic() >= deadline:
                continue  # reported above, with the deadline as the reason
            raise TimeoutError(
                f"the peer took no data for {stall:g} s (network timeout; "
                f"{sent} of {len(view)} bytes written): it stopped reading"
            )
        try:  # never blocks, whatever the socket's mode: poll above does the waiting
            sent += sock.send(view[sent:], _DONTWAIT)
        except BlockingIOError:  # poll said writable, the buffer filled in between
            continue


def exchange(
    assoc: Any,
    request: bytes,
    message_id: int,
    while_waiting: Callable[[], None] | None = None,
    *,
    timeout: float | None = None,
) -> int | None:
    """Send a request built by :func:`build_request`; return the response status.

    The request must be written, and its response received, within ``timeout`` seconds
    (default: the association's DIMSE timeout; the same bound pynetdicom's own
    ``send_c_store`` gives, whose wait starts when the request is queued), and no write
    may go ``network_timeout`` seconds without progress. ``while_waiting`` runs after
    the request is sent and before the response is awaited, so the next request can be
    prepared while the receiver stores this one. No response in time, or a lost
    association, raises :class:`NoResponse` with the reason; a failed write raises
    ``OSError`` (``TimeoutError`` when a limit was hit). Either way the caller treats
    the association as unusable. A response without a status gives ``None``.
    """
    limit = float(timeout if timeout is not None else assoc.dimse_timeout or 60.0)
    stall = float(assoc.network_timeout or limit)
    deadline = time.monotonic() + limit
    pause(assoc)
    write_within(assoc.dul.socket.socket, request, deadline=deadline, stall=stall)
    if while_waiting is not None:
        while_waiting()
    messages = assoc.dimse.msg_queue
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise queue.Empty
            _context, response = messages.get(timeout=min(left, _ABORT_POLL))
        except queue.Empty:
            # an abort that puts nothing on the queue (pynetdicom's AA-8, after a PDU it
            # could not decode) shows as an A-P-ABORT waiting for the paused reactor
            if time.monotonic() < deadline and not assoc.acse.is_aborted():
                continue
            response = None
        if response is None:
            if assoc.acse.is_aborted("a-abort"):
                why = "the peer aborted the association (A-ABORT)"
            elif assoc.acse.is_aborted("a-p-abort"):
                why = "the connection closed or the peer sent an invalid PDU (A-P-ABORT)"
            elif time.monotonic() >= deadline:
                why = f"no response within the DIMSE timeout ({limit:g} s)"
            else:
                why = "the association was lost"
            resume(assoc)
            assoc._handle_no_response()
            raise NoResponse(why)
        if getattr(response, "MessageIDBeingRespondedTo", None) == message_id:
            status = getattr(response, "Status", None)
            return None if status is None else int(status)


def send_store(
    assoc: Any,
    context_id: int,
    data: bytes,
    sop_class: str,
    sop_instance: str,
    message_id: int,
) -> int | None:
    """Send one C-STORE-RQ from a Part 10 file's bytes; return the status (see
    :func:`exchange`)."""
    request = build_request(assoc, context_id, data, sop_class, sop_instance, message_id)
    return exchange(assoc, request, message_id)


_WAIT_FOR_DATA = 0.02  # seconds: the DUL thread's longest wait for data while paused
_ABORT_POLL = 0.2  # seconds: how often a wait for a response looks for an abort


def pause(assoc: Any) -> None:
    """Pause the association's reactor (as ``send_c_store`` does) until :func:`resume`:
    the responses stay on the DIMSE queue for us. Pausing once per batch instead of once
    per object saves the reactor's 1 ms poll each time.

    The DUL thread is made quiet too: with the bridge's socket it waits in ``poll`` for
    the next response (up to :data:`_WAIT_FOR_DATA` at a time, so that it still sees
    its own queue) instead of polling every millisecond, so it wakes when a response
    arrives and otherwise leaves the interpreter to the thread that sends.
    """
    if not assoc._reactor_checkpoint.is_set() and assoc._is_paused:
        return
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    sock = assoc.dul.socket
    if isinstance(sock, TunedAssociationSocket):
        sock.wait_for_data = _WAIT_FOR_DATA


def resume(assoc: Any) -> None:
    """Undo :func:`pause` (harmless when not paused)."""
    sock = assoc.dul.socket
    if isinstance(sock, TunedAssociationSocket):
        sock.wait_for_data = 0.0
    assoc._reactor_checkpoint.set()

"""Session layer of the reference link profile: connect, accept, reject, release, abort.

ACR-NEMA used logical addresses [S5]; DICOM kept only a minimal ACSE subset on its
point-to-point stack [S4]. The PDUs below are our reconstruction (docs/link-profile.md,
section 4, all *chosen*). Every transport message starts with a PDU type word:

    CONNECT        calling address, called address (each ``address_length`` characters,
                   space padded, padded to a whole word)
    ACCEPT         called address
    REJECT         reason word: 1 called address unknown, 2 busy, 3 no reason given
    DATA           one application message
    RELEASE        (nothing)
    RELEASE_REPLY  (nothing)
    ABORT          reason word

One connection at a time on a link. The rules are one state table, ``(state, input) ->
(action, next state)`` (:data:`SESSION_TABLE`, drawn in the docs by
:func:`bridge.acrnema.datalink.state_diagram`). A user call not allowed in the current
state raises :class:`~bridge.acrnema.datalink.LinkProtocolError` (local); a PDU not
allowed in it is a remote protocol error: the session sends ABORT (reason 4) and reports
:class:`Aborted`.

Sans-I/O: calls return the transport messages to send (``bytes``), :meth:`Session.receive`
takes a whole transport message, and time is passed in.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.acrnema.datalink import LinkProtocolError

__all__ = [
    "ABORT_REASONS",
    "REJECT_REASONS",
    "SESSION_TABLE",
    "Aborted",
    "ConnectRequested",
    "Connected",
    "DataIndication",
    "Rejected",
    "Released",
    "Session",
    "SessionEvent",
    "SessionInput",
    "SessionParams",
    "SessionState",
]

REJECT_REASONS = {1: "called address unknown", 2: "busy", 3: "no reason given"}
ABORT_REASONS = {
    1: "user abort",
    2: "timeout",
    3: "link lost",
    4: "protocol error",
    5: "shutting down",
}


@dataclass(frozen=True)
class SessionParams:
    """The session's part of the profile (bridge.profile.Session maps onto it)."""

    pdu_types: Mapping[str, int]
    address_length: int = 16
    connect_timeout: float = 10.0
    release_timeout: float = 10.0
    abort_quiet: float = 1.0
    idle_timeout: float = 300.0


class SessionState(enum.Enum):
    IDLE = "idle"
    AWAIT_ACCEPT = "await accept"  # CONNECT sent
    AWAIT_DECISION = "await decision"  # CONNECT received, the user decides
    OPEN = "open"
    AWAIT_RELEASE_REPLY = "await release reply"  # RELEASE sent
    QUIET = "quiet"  # after an ABORT: the link is ignored for abort_quiet


class SessionInput(enum.Enum):
    # calls of the user of the session
    CONNECT = "connect()"
    ACCEPT = "accept()"
    REJECT = "reject()"
    SEND = "send()"
    RELEASE = "release()"
    ABORT = "abort()"
    # PDUs from the peer
    CONNECT_PDU = "CONNECT"
    ACCEPT_PDU = "ACCEPT"
    REJECT_PDU = "REJECT"
    DATA_PDU = "DATA"
    RELEASE_PDU = "RELEASE"
    RELEASE_REPLY_PDU = "RELEASE_REPLY"
    ABORT_PDU = "ABORT"
    # time
    TIMEOUT = "timeout"
    QUIET_OVER = "quiet over"


S, I = SessionState, SessionInput  # noqa: E741  (short names keep the table readable)

SESSION_TABLE: Mapping[tuple[SessionState, SessionInput], tuple[str, SessionState]] = {
    (S.IDLE, I.CONNECT): ("send CONNECT, start connect timer", S.AWAIT_ACCEPT),
    (S.IDLE, I.CONNECT_PDU): ("report ConnectRequested", S.AWAIT_DECISION),
    (S.IDLE, I.ABORT_PDU): ("ignore", S.IDLE),
    (S.IDLE, I.ABORT): ("ignore", S.IDLE),
    (S.AWAIT_ACCEPT, I.ACCEPT_PDU): ("report Connected", S.OPEN),
    (S.AWAIT_ACCEPT, I.REJECT_PDU): ("report Rejected", S.IDLE),
    (S.AWAIT_ACCEPT, I.TIMEOUT): ("send ABORT, report Aborted", S.QUIET),
    (S.AWAIT_DECISION, I.ACCEPT): ("send ACCEPT", S.OPEN),
    (S.AWAIT_DECISION, I.REJECT): ("send REJECT", S.IDLE),
    (S.OPEN, I.SEND): ("send DATA", S.OPEN),
    (S.OPEN, I.DATA_PDU): ("report DataIndication", S.OPEN),
    (S.OPEN, I.RELEASE): ("send RELEASE, start release timer", S.AWAIT_RELEASE_REPLY),
    (S.OPEN, I.RELEASE_PDU): ("send RELEASE_REPLY, report Released", S.IDLE),
    (S.OPEN, I.TIMEOUT): ("send RELEASE, start release timer", S.AWAIT_RELEASE_REPLY),
    (S.AWAIT_RELEASE_REPLY, I.DATA_PDU): ("report DataIndication", S.AWAIT_RELEASE_REPLY),
    (S.AWAIT_RELEASE_REPLY, I.RELEASE_REPLY_PDU): ("report Released", S.IDLE),
    (S.AWAIT_RELEASE_REPLY, I.RELEASE_PDU): ("send RELEASE_REPLY, report Released", S.IDLE),
    (S.AWAIT_RELEASE_REPLY, I.TIMEOUT): ("send ABORT, report Aborted", S.QUIET),
    (S.QUIET, I.QUIET_OVER): ("listen again", S.IDLE),
    (S.QUIET, I.CONNECT_PDU): ("report ConnectRequested", S.AWAIT_DECISION),
    (S.QUIET, I.ABORT): ("ignore", S.QUIET),
}
"""The session. Besides these pairs: ``abort()`` from any state but IDLE and QUIET, and an
ABORT PDU in any state but IDLE, go to QUIET (the ABORT PDU reported as :class:`Aborted`);
in QUIET every PDU but CONNECT is ignored (a CONNECT is never a leftover of the aborted
connection, and taking it spares the peer a connect timeout when its quiet time ended a
little before ours). Any other PDU is a remote protocol error (ABORT, reason 4)."""

del S, I


@dataclass(frozen=True)
class ConnectRequested:
    calling: str
    called: str


@dataclass(frozen=True)
class Connected:
    called: str


@dataclass(frozen=True)
class Rejected:
    reason: int

    @property
    def text(self) -> str:
        return REJECT_REASONS.get(self.reason, f"reason {self.reason}")


@dataclass(frozen=True)
class DataIndication:
    data: bytes  # one application message


@dataclass(frozen=True)
class Released:
    pass


@dataclass(frozen=True)
class Aborted:
    reason: int
    remote: bool  # the peer aborted (or broke the protocol), rather than this side
    detail: str = ""

    @property
    def text(self) -> str:
        text = ABORT_REASONS.get(self.reason, f"reason {self.reason}")
        return f"{text}: {self.detail}" if self.detail else text


SessionEvent = ConnectRequested | Connected | Rejected | DataIndication | Released | Aborted


class Session:
    """One end of the session layer."""

    def __init__(self, params: SessionParams) -> None:
        self.params = params
        self.state = SessionState.IDLE
        self._codes = dict(params.pdu_types)
        self._inputs = {
            code: SessionInput[f"{name.upper()}_PDU"] for name, code in params.pdu_types.items()
        }
        self._deadline: float | None = None  # connect, release or quiet timer
        self._last_traffic = 0.0
        self._opened_here = False
        self.calling = ""  # addresses of the open (or opening) connection
        self.called = ""

    # ------------------------------------------------------------------ table

    def _enter(self, cause: SessionInput, *, remote: bool = False) -> str:
        try:
            action, self.state = SESSION_TABLE[self.state, cause]
        except KeyError:
            raise LinkProtocolError(
                f"{cause.value} while {self.state.value}", layer="session", remote=remote
            ) from None
        return action

    # ------------------------------------------------------------------ encoding

    def _pdu(self, kind: str, body: bytes = b"") -> bytes:
        return struct.pack(">H", self._codes[kind]) + body

    def _address(self, text: str) -> bytes:
        size = self.params.address_length
        raw = text.encode("ascii", "replace")
        if len(raw) > size:
            raise LinkProtocolError(
                f"address {text!r} is longer than {size} characters", layer="session"
            )
        raw = raw.ljust(size, b" ")
        return raw + b" " if size % 2 else raw

    def _read_address(self, body: bytes, index: int) -> str:
        size = self.params.address_length + self.params.address_length % 2
        raw = body[index * size : (index + 1) * size]
        if len(raw) < size:
            raise ValueError("short address")
        return raw[: self.params.address_length].decode("ascii", "replace").rstrip(" ")

    # ------------------------------------------------------------------ user calls

    def connect(self, calling: str, called: str, now: float) -> bytes:
        """Ask the peer for a connection: the CONNECT PDU to send."""
        body = self._address(calling) + self._address(called)
        self._enter(SessionInput.CONNECT)
        self.calling, self.called, self._opened_here = calling, called, True
        self._deadline = now + self.params.connect_timeout
        return self._pdu("connect", body)

    def accept(self, now: float) -> bytes:
        self._enter(SessionInput.ACCEPT)
        self._last_traffic = now
        return self._pdu("accept", self._address(self.called))

    def reject(self, reason: int, now: float) -> bytes:
        self._enter(SessionInput.REJECT)
        return self._pdu("reject", struct.pack(">H", reason))

    def send(self, message: bytes, now: float) -> bytes:
        """One application message as a DATA PDU."""
        self._enter(SessionInput.SEND)
        self._last_traffic = now
        return self._pdu("data") + message

    def release(self, now: float) -> bytes:
        self._enter(SessionInput.RELEASE)
        self._deadline = now + self.params.release_timeout
        return self._pdu("release")

    def abort(self, reason: int, now: float) -> bytes | None:
        """Close at once; the ABORT PDU to send, or None when there is nothing to abort."""
        if self.state in (SessionState.IDLE, SessionState.QUIET):
            self._enter(SessionInput.ABORT)
            return None
        self._quiet(now)
        return self._pdu("abort", struct.pack(">H", reason))

    def _quiet(self, now: float) -> None:
        self.state = SessionState.QUIET
        self._deadline = now + self.params.abort_quiet

    def link_lost(self, now: float, reason: str = "the link went down") -> list[SessionEvent]:
        """The link under the session went down: an open connection is aborted."""
        if self.state in (SessionState.IDLE, SessionState.QUIET):
            return []
        self.state = SessionState.IDLE
        self._deadline = None
        return [Aborted(3, remote=False, detail=reason)]

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    # ------------------------------------------------------------------ receiving

    def receive(self, message: bytes, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        """A transport message from the peer: the events, and PDUs to send in reply."""
        if len(message) < 2:
            return self._violation("PDU shorter than its type word", now)
        code = struct.unpack_from(">H", message)[0]
        cause = self._inputs.get(code)
        if cause is None:
            return self._violation(f"unknown PDU type {code:#06x}", now)
        if self.state is SessionState.QUIET and cause is not SessionInput.CONNECT_PDU:
            return [], []
        if cause is SessionInput.ABORT_PDU:
            if self.state is SessionState.IDLE:
                return [], []
            reason = struct.unpack_from(">H", message, 2)[0] if len(message) >= 4 else 0
            self._quiet(now)
            return [Aborted(reason, remote=True)], []
        body = message[2:]
        try:
            action = self._enter(cause, remote=True)
        except LinkProtocolError as exc:
            return self._violation(exc.reason, now)
        self._last_traffic = now
        try:
            return self._act(action, body, now)
        except (ValueError, struct.error) as exc:
            return self._violation(f"malformed {cause.value} PDU: {exc}", now)

    def _act(self, action: str, body: bytes, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        if action == "report ConnectRequested":
            self.calling = self._read_address(body, 0)
            self.called = self._read_address(body, 1)
            self._opened_here = False
            self._deadline = None
            return [ConnectRequested(self.calling, self.called)], []
        if action == "report Connected":
            self._deadline = None
            return [Connected(self._read_address(body, 0))], []
        if action == "report Rejected":
            self._deadline = None
            reason = struct.unpack_from(">H", body)[0] if len(body) >= 2 else 3
            return [Rejected(reason)], []
        if action == "report DataIndication":
            return [DataIndication(body)], []
        if action == "send RELEASE_REPLY, report Released":
            self._deadline = None
            return [Released()], [self._pdu("release_reply")]
        if action == "report Released":
            self._deadline = None
            return [Released()], []
        raise AssertionError(f"no action {action!r}")  # the table and this code disagree

    def _violation(self, reason: str, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        """A PDU the rules do not allow: ABORT (reason 4), so the peer knows too."""
        if self.state is SessionState.QUIET:
            return [], []
        if self.state is not SessionState.IDLE:
            self._quiet(now)
        return [Aborted(4, remote=True, detail=reason)], [self._pdu("abort", struct.pack(">H", 4))]

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        if self.state is SessionState.OPEN and self._opened_here:
            return self._last_traffic + self.params.idle_timeout
        return self._deadline

    def handle_timer(self, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return [], []
        state = self.state
        if state is SessionState.QUIET:
            self._enter(SessionInput.QUIET_OVER)
            self._deadline = None
            return [], []
        action = self._enter(SessionInput.TIMEOUT)
        if action == "send RELEASE, start release timer":  # idle connection
            self._deadline = now + self.params.release_timeout
            return [], [self._pdu("release")]
        what = "ACCEPT" if state is SessionState.AWAIT_ACCEPT else "RELEASE_REPLY"
        self._quiet(now)
        return [Aborted(2, remote=False, detail=f"no {what} in time")], [
            self._pdu("abort", struct.pack(">H", 2))
        ]

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

One connection at a time on a link. The rules are one state table of the one idiom
(:mod:`bridge.acrnema.table`), ``(state, input) -> Rule(action, next state,
description)`` (:data:`SESSION_TABLE`, drawn in the docs by
:func:`bridge.acrnema.table.state_diagram`): user calls, PDUs, timers, the link going
down, and a PDU the table does not allow. A user call not allowed in the current state
raises :class:`~bridge.acrnema.datalink.LinkProtocolError` (local) and changes nothing; a
PDU not allowed in it is a remote protocol error (the input ``BAD_PDU``): the session
sends ABORT (reason 4) and reports :class:`Aborted`.

Sans-I/O: calls return the transport messages to send (``bytes``), :meth:`Session.receive`
takes a whole transport message, and time is passed in.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from bridge.acrnema.datalink import LinkProtocolError
from bridge.acrnema.table import Rule, Table
from bridge.profile import SessionSection

__all__ = [
    "ABORT_REASONS",
    "REJECT_REASONS",
    "SESSION_TABLE",
    "Aborted",
    "ConnectRequested",
    "Connected",
    "DataIndication",
    "NoSession",
    "Rejected",
    "Released",
    "Session",
    "SessionAction",
    "SessionEvent",
    "SessionInput",
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


class SessionState(enum.Enum):
    IDLE = "idle"
    AWAIT_ACCEPT = "await accept"  # CONNECT sent
    AWAIT_DECISION = "await decision"  # CONNECT received, the user decides
    OPEN = "open"
    AWAIT_RELEASE_REPLY = "await release reply"  # RELEASE sent
    QUIET = "quiet"  # after an ABORT: the link is ignored for abort_quiet_s


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
    # the layer below, and the peer breaking the rules
    LINK_LOST = "link lost"
    BAD_PDU = "PDU not allowed here, or unreadable"


class SessionAction(enum.Enum):
    SEND_CONNECT = enum.auto()
    SEND_ACCEPT = enum.auto()
    SEND_REJECT = enum.auto()
    SEND_DATA = enum.auto()
    SEND_RELEASE = enum.auto()
    SEND_ABORT = enum.auto()
    REPORT_CONNECT_REQUESTED = enum.auto()
    REPORT_CONNECTED = enum.auto()
    REPORT_REJECTED = enum.auto()
    REPORT_DATA = enum.auto()
    REPLY_RELEASED = enum.auto()
    REPORT_RELEASED = enum.auto()
    REPORT_ABORTED = enum.auto()
    ABORT_PROTOCOL_ERROR = enum.auto()
    ABORT_TIMED_OUT = enum.auto()
    REPORT_LINK_LOST = enum.auto()
    LISTEN = enum.auto()
    IGNORE = enum.auto()


def _session_error(reason: str, remote: bool) -> LinkProtocolError:
    """The session's error for a pair not in its table (a PDU's is answered with ABORT)."""
    return LinkProtocolError(reason, layer="session", remote=remote)


S, I, A = SessionState, SessionInput, SessionAction  # noqa: E741  (short names: a readable table)
_BUSY = (S.AWAIT_ACCEPT, S.AWAIT_DECISION, S.OPEN, S.AWAIT_RELEASE_REPLY)  # a connection
_PDUS = (I.ACCEPT_PDU, I.REJECT_PDU, I.DATA_PDU, I.RELEASE_PDU, I.RELEASE_REPLY_PDU, I.ABORT_PDU)

SESSION_TABLE: Table[SessionState, SessionInput, SessionAction] = Table(
    "session",
    SessionState,
    SessionInput,
    {
        (S.IDLE, I.CONNECT): Rule(
            A.SEND_CONNECT, S.AWAIT_ACCEPT, "send CONNECT, start connect timer"
        ),
        (S.IDLE, I.CONNECT_PDU): Rule(
            A.REPORT_CONNECT_REQUESTED, S.AWAIT_DECISION, "report ConnectRequested"
        ),
        (S.IDLE, I.ABORT_PDU): Rule(A.IGNORE, S.IDLE, "ignore"),
        (S.IDLE, I.ABORT): Rule(A.IGNORE, S.IDLE, "ignore"),
        (S.AWAIT_ACCEPT, I.ACCEPT_PDU): Rule(A.REPORT_CONNECTED, S.OPEN, "report Connected"),
        (S.AWAIT_ACCEPT, I.REJECT_PDU): Rule(A.REPORT_REJECTED, S.IDLE, "report Rejected"),
        (S.AWAIT_ACCEPT, I.TIMEOUT): Rule(A.ABORT_TIMED_OUT, S.QUIET, "send ABORT, report Aborted"),
        (S.AWAIT_DECISION, I.ACCEPT): Rule(A.SEND_ACCEPT, S.OPEN, "send ACCEPT"),
        (S.AWAIT_DECISION, I.REJECT): Rule(A.SEND_REJECT, S.IDLE, "send REJECT"),
        (S.OPEN, I.SEND): Rule(A.SEND_DATA, S.OPEN, "send DATA"),
        (S.OPEN, I.DATA_PDU): Rule(A.REPORT_DATA, S.OPEN, "report DataIndication"),
        (S.OPEN, I.RELEASE): Rule(
            A.SEND_RELEASE, S.AWAIT_RELEASE_REPLY, "send RELEASE, start release timer"
        ),
        (S.OPEN, I.RELEASE_PDU): Rule(
            A.REPLY_RELEASED, S.IDLE, "send RELEASE_REPLY, report Released"
        ),
        (S.OPEN, I.TIMEOUT): Rule(
            A.SEND_RELEASE, S.AWAIT_RELEASE_REPLY, "send RELEASE, start release timer"
        ),
        (S.AWAIT_RELEASE_REPLY, I.DATA_PDU): Rule(
            A.REPORT_DATA, S.AWAIT_RELEASE_REPLY, "report DataIndication"
        ),
        (S.AWAIT_RELEASE_REPLY, I.RELEASE_REPLY_PDU): Rule(
            A.REPORT_RELEASED, S.IDLE, "report Released"
        ),
        (S.AWAIT_RELEASE_REPLY, I.RELEASE_PDU): Rule(
            A.REPLY_RELEASED, S.IDLE, "send RELEASE_REPLY, report Released"
        ),
        (S.AWAIT_RELEASE_REPLY, I.TIMEOUT): Rule(
            A.ABORT_TIMED_OUT, S.QUIET, "send ABORT, report Aborted"
        ),
        (S.QUIET, I.QUIET_OVER): Rule(A.LISTEN, S.IDLE, "listen again"),
        (S.QUIET, I.CONNECT_PDU): Rule(
            A.REPORT_CONNECT_REQUESTED, S.AWAIT_DECISION, "report ConnectRequested"
        ),
        (S.QUIET, I.ABORT): Rule(A.IGNORE, S.QUIET, "ignore"),
        # a connection is aborted from any state that has one
        **{(state, I.ABORT): Rule(A.SEND_ABORT, S.QUIET, "send ABORT") for state in _BUSY},
        **{
            (state, I.ABORT_PDU): Rule(A.REPORT_ABORTED, S.QUIET, "report Aborted")
            for state in _BUSY
        },
        # in QUIET every PDU but CONNECT is a leftover of the aborted connection
        **{(S.QUIET, pdu): Rule(A.IGNORE, S.QUIET, "ignore") for pdu in _PDUS},
        # the link under the session went down
        (S.IDLE, I.LINK_LOST): Rule(A.IGNORE, S.IDLE, "ignore"),
        (S.QUIET, I.LINK_LOST): Rule(A.IGNORE, S.QUIET, "ignore"),
        **{
            (state, I.LINK_LOST): Rule(A.REPORT_LINK_LOST, S.IDLE, "report Aborted")
            for state in _BUSY
        },
        # a PDU not in this table, or unreadable: a remote protocol error
        (S.IDLE, I.BAD_PDU): Rule(
            A.ABORT_PROTOCOL_ERROR, S.IDLE, "send ABORT (protocol error), report Aborted"
        ),
        **{
            (state, I.BAD_PDU): Rule(
                A.ABORT_PROTOCOL_ERROR, S.QUIET, "send ABORT (protocol error), report Aborted"
            )
            for state in _BUSY
        },
        (S.QUIET, I.BAD_PDU): Rule(A.IGNORE, S.QUIET, "ignore"),
    },
    _session_error,
)
"""The session. Entering QUIET (from another state) starts the quiet timer of
``abort_quiet_s``. A CONNECT in QUIET is taken: it is never a leftover of the aborted
connection, and taking it spares the peer a connect timeout when its quiet time ended a
little before ours. A user call not in the table raises :class:`LinkProtocolError`
(local) and changes nothing; a PDU not in it (or unreadable) is the input ``BAD_PDU``."""

del S, I, A


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
    """One end of the session layer; its parameters are the profile's ``[session]`` section."""

    def __init__(self, params: SessionSection) -> None:
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

    def _rule(
        self, cause: SessionInput, *, remote: bool = False
    ) -> Rule[SessionState, SessionAction]:
        return SESSION_TABLE.rule(self.state, cause, remote=remote)

    def _do(
        self,
        rule: Rule[SessionState, SessionAction],
        now: float,
        body: bytes = b"",
        detail: str = "",
    ) -> tuple[list[SessionEvent], list[bytes]]:
        """Go to the rule's state and do its action: the events and the PDUs to send.
        ``body``: the PDU's body (received) or the user's (to send); ``detail``: why."""
        old, self.state = self.state, rule.next_state
        if self.state is SessionState.QUIET and old is not SessionState.QUIET:
            self._deadline = now + self.params.abort_quiet_s  # entering QUIET
        action = rule.action
        A = SessionAction
        if action is A.IGNORE:
            return [], []
        if action is A.SEND_CONNECT:
            self._opened_here = True
            self._deadline = now + self.params.connect_timeout_s
            return [], [self._pdu("connect", body)]
        if action is A.SEND_ACCEPT:
            self._last_traffic = now
            return [], [self._pdu("accept", self._address(self.called))]
        if action is A.SEND_REJECT:
            return [], [self._pdu("reject", body)]
        if action is A.SEND_DATA:
            self._last_traffic = now
            return [], [self._pdu("data") + body]
        if action is A.SEND_RELEASE:
            self._deadline = now + self.params.release_timeout_s
            return [], [self._pdu("release")]
        if action is A.SEND_ABORT:
            return [], [self._pdu("abort", body)]
        if action is A.REPORT_CONNECT_REQUESTED:
            self.calling = self._read_address(body, 0)
            self.called = self._read_address(body, 1)
            self._opened_here = False
            self._deadline = None
            return [ConnectRequested(self.calling, self.called)], []
        if action is A.REPORT_CONNECTED:
            self._deadline = None
            return [Connected(self._read_address(body, 0))], []
        if action is A.REPORT_REJECTED:
            self._deadline = None
            reason = struct.unpack_from(">H", body)[0] if len(body) >= 2 else 3
            return [Rejected(reason)], []
        if action is A.REPORT_DATA:
            return [DataIndication(body)], []
        if action is A.REPLY_RELEASED:
            self._deadline = None
            return [Released()], [self._pdu("release_reply")]
        if action is A.REPORT_RELEASED:
            self._deadline = None
            return [Released()], []
        if action is A.REPORT_ABORTED:
            reason = struct.unpack_from(">H", body)[0] if len(body) >= 2 else 0
            return [Aborted(reason, remote=True)], []
        if action is A.ABORT_PROTOCOL_ERROR:
            return [Aborted(4, remote=True, detail=detail)], [
                self._pdu("abort", struct.pack(">H", 4))
            ]
        if action is A.ABORT_TIMED_OUT:
            what = "ACCEPT" if old is SessionState.AWAIT_ACCEPT else "RELEASE_REPLY"
            return [Aborted(2, remote=False, detail=f"no {what} in time")], [
                self._pdu("abort", struct.pack(">H", 2))
            ]
        if action is A.REPORT_LINK_LOST:
            self._deadline = None
            return [Aborted(3, remote=False, detail=detail)], []
        if action is A.LISTEN:
            self._deadline = None
            return [], []
        raise AssertionError(f"no action {action!r}")  # a member without code above

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
        rule = self._rule(SessionInput.CONNECT)
        self.calling, self.called = calling, called
        return self._do(rule, now, body)[1][0]

    def accept(self, now: float) -> bytes:
        return self._do(self._rule(SessionInput.ACCEPT), now)[1][0]

    def reject(self, reason: int, now: float) -> bytes:
        return self._do(self._rule(SessionInput.REJECT), now, struct.pack(">H", reason))[1][0]

    def send(self, message: bytes, now: float) -> bytes:
        """One application message as a DATA PDU."""
        return self._do(self._rule(SessionInput.SEND), now, message)[1][0]

    def release(self, now: float) -> bytes:
        return self._do(self._rule(SessionInput.RELEASE), now)[1][0]

    def abort(self, reason: int, now: float) -> bytes | None:
        """Close at once; the ABORT PDU to send, or None when there is nothing to abort."""
        _, pdus = self._do(self._rule(SessionInput.ABORT), now, struct.pack(">H", reason))
        return pdus[0] if pdus else None

    def link_lost(self, now: float, reason: str = "the link went down") -> list[SessionEvent]:
        """The link under the session went down: an open connection is aborted."""
        return self._do(self._rule(SessionInput.LINK_LOST), now, detail=reason)[0]

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
        try:
            rule = self._rule(cause, remote=True)
        except LinkProtocolError as exc:
            return self._violation(exc.reason, now)
        if rule.action not in (SessionAction.IGNORE, SessionAction.REPORT_ABORTED):
            self._last_traffic = now
        try:
            return self._do(rule, now, message[2:])
        except (ValueError, struct.error) as exc:
            return self._violation(f"malformed {cause.value} PDU: {exc}", now)

    def _violation(self, reason: str, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        """A PDU the rules do not allow: ABORT (reason 4), so the peer knows too."""
        return self._do(self._rule(SessionInput.BAD_PDU, remote=True), now, detail=reason)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        if self.state is SessionState.OPEN and self._opened_here:
            return self._last_traffic + self.params.idle_timeout_s
        return self._deadline

    def handle_timer(self, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return [], []
        quiet = self.state is SessionState.QUIET
        return self._do(self._rule(SessionInput.QUIET_OVER if quiet else SessionInput.TIMEOUT), now)


class NoSession(Session):
    """``session.mode = "none"``: no session layer, messages directly on the transport.

    Evidence section 4 (N3, N5, N7): real peers may carry their addresses only in the
    command group (Initiator, Receiver) and have no connect/accept exchange at all. Then
    every transport message is one application message; the "connection" is always
    open, :meth:`connect` and :meth:`release` send nothing and report
    :class:`Connected` and :class:`Released` at the next :meth:`handle_timer` (so the
    callers' waits end), and :meth:`abort` has nothing to tell the peer. Calls return
    ``b""`` for "no PDU"; the stack sends only non-empty ones.
    """

    def __init__(self, params: SessionSection) -> None:
        super().__init__(params)
        self.state = SessionState.OPEN
        self._pending: list[SessionEvent] = []

    def connect(self, calling: str, called: str, now: float) -> bytes:
        self.calling, self.called = calling, called
        self._pending.append(Connected(called))
        return b""

    def accept(self, now: float) -> bytes:
        return b""

    def reject(self, reason: int, now: float) -> bytes:
        return b""

    def send(self, message: bytes, now: float) -> bytes:
        return message

    def release(self, now: float) -> bytes:
        self._pending.append(Released())
        return b""

    def abort(self, reason: int, now: float) -> bytes | None:
        return None

    def link_lost(self, now: float, reason: str = "the link went down") -> list[SessionEvent]:
        return [Aborted(3, remote=False, detail=reason)]

    def receive(self, message: bytes, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        return [DataIndication(message)], []

    def next_deadline(self) -> float | None:
        return float("-inf") if self._pending else None

    def handle_timer(self, now: float) -> tuple[list[SessionEvent], list[bytes]]:
        events, self._pending = self._pending, []
        return events, []

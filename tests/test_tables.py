"""Every state table walked whole (STYLE rule 14): each (state, input) pair of each machine.

A pair in the table does what the table says (the next state, and the action's effect:
its events and what goes on the wire); a pair not in the table is the layer's protocol
error, local (raised) or remote (reported) as the layer distinguishes, and leaves the
machine in a defined state. The machines are sans-I/O, so the walk takes milliseconds.
The docs' tables and diagrams are compared with the ones rendered from the code.
"""

from __future__ import annotations

import enum
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.acrnema.datalink import (
    FRAME_TABLE,
    LINK_TABLE,
    DataLink,
    FrameAction,
    FrameInput,
    FrameState,
    LinkAction,
    LinkFailed,
    LinkInput,
    LinkProtocolError,
    LinkState,
    _Outstanding,
)
from bridge.acrnema.session import (
    SESSION_TABLE,
    Aborted,
    Connected,
    ConnectRequested,
    DataIndication,
    Rejected,
    Released,
    Session,
    SessionAction,
    SessionInput,
    SessionState,
)
from bridge.acrnema.table import Rule, Table, markdown_table, state_diagram
from bridge.profile import REFERENCE, DatalinkSection, TransportSection

DOCS = Path(__file__).resolve().parent.parent / "docs"


# ---------------------------------------------------------------------- the idiom


class _S(enum.Enum):
    A = "a"
    B = "b"


class _I(enum.Enum):
    GO = "go"
    STOP = "stop"


class _Err(Exception):
    def __init__(self, reason: str, remote: bool) -> None:
        super().__init__(reason)
        self.remote = remote


def test_a_table_maps_pairs_to_rules_and_a_missing_pair_is_the_layers_error() -> None:
    table: Table[_S, _I, str] = Table(
        "toy",
        _S,
        _I,
        {(_S.A, _I.GO): Rule("move", _S.B, "go over")},
        _Err,
        reason="{where}: {input} while {state}",
    )
    rule = table.rule(_S.A, _I.GO)
    assert rule == Rule("move", _S.B, "go over") and tuple(rule) == ("move", _S.B)
    assert len(table) == 1 and (_S.A, _I.GO) in table and (_S.B, _I.GO) not in table
    assert list(table.pairs()) == [(_S.A, _I.GO), (_S.A, _I.STOP), (_S.B, _I.GO), (_S.B, _I.STOP)]
    with pytest.raises(_Err, match=r"^x: stop while b$") as info:
        table.rule(_S.B, _I.STOP, remote=True, where="x")
    assert info.value.remote is True
    with pytest.raises(TypeError):
        Table("toy", _S, _I, {(_I.GO, _S.A): Rule("move", _S.B, "")}, _Err)  # type: ignore[dict-item]
    assert state_diagram(table) == "stateDiagram-v2\n    A --> B: go / go over"
    assert markdown_table(table).splitlines()[2] == "| A | go | `move` | B | go over |"
    assert markdown_table(table).endswith("Every other pair (3 of them) is a protocol error.\n")


# ---------------------------------------------------------------------- data link


def _failed_link() -> DataLink:
    link = DataLink(DatalinkSection(ack_timeout_ms=10.0, retry_limit=0))
    link.send(b"x")
    link.transmit(0.0)
    assert link.handle_timer(0.01) == [LinkFailed(0, "no ACK after 0 retransmissions")]
    return link


def _link_in(state: LinkState) -> DataLink:
    return _failed_link() if state is LinkState.FAILED else DataLink(DatalinkSection())


def _feed_link(link: DataLink, cause: LinkInput) -> object:
    if cause is LinkInput.SEND:
        link.send(b"xy")
        return None
    if cause is LinkInput.TRANSMIT:
        return link.transmit(1.0)
    if cause is LinkInput.WORDS:
        return link.receive(np.zeros(0, dtype=np.uint16), None, 1.0)
    if cause is LinkInput.TIMER:
        return link.handle_timer(1.0)
    link._enter(LinkInput.GIVE_UP)  # only a frame out of retries gives up (walked below)
    return None


@pytest.mark.parametrize("pair", list(LINK_TABLE.pairs()), ids=str)
def test_every_pair_of_the_link_table(pair: tuple[LinkState, LinkInput]) -> None:
    state, cause = pair
    link = _link_in(state)
    assert link.state is state
    if pair not in LINK_TABLE:
        with pytest.raises(LinkProtocolError) as info:
            _feed_link(link, cause)
        assert info.value.layer == "datalink" and info.value.remote is False
        assert link.state is state  # the machine stays as it was
        return
    rule = LINK_TABLE[pair]
    out = _feed_link(link, cause)
    assert link.state is rule.next_state
    if rule.action is LinkAction.QUEUE:
        assert not link.idle
    elif rule.action is LinkAction.STAY_SILENT:
        assert out is not None and out.words.size == 0  # type: ignore[attr-defined]
    elif rule.action in (LinkAction.DECODE, LinkAction.TIME_OUT):
        assert out == []
    elif rule.action is LinkAction.PUT_ON_WIRE:
        assert out is not None
    else:
        assert rule.action is LinkAction.REPORT_FAILED and link.failed


_BASE_INPUT = {FrameInput.NAK_SPENT: FrameInput.NAK, FrameInput.TIMEOUT_SPENT: FrameInput.TIMEOUT}


@pytest.mark.parametrize("pair", list(FRAME_TABLE.pairs()), ids=str)
def test_every_pair_of_the_frame_table(pair: tuple[FrameState, FrameInput]) -> None:
    """Each input is fed as the layer sees it: NAK and TIMEOUT to a frame that has used
    its retries, so the guard (``_SPENT``) is walked through the layer's own choice."""
    state, cause = pair
    params = DatalinkSection(retry_limit=2)
    link = DataLink(params)
    frame = _Outstanding(5, np.zeros(6, dtype=np.uint16), state, sent_at=0.5)
    if state is not FrameState.DONE:
        link._flight[5] = frame  # a frame in the window (DONE ones have left it)
    frame.retries = params.retry_limit if cause in _BASE_INPUT else 1
    fed = _BASE_INPUT.get(cause, cause)
    if pair not in FRAME_TABLE:
        with pytest.raises(LinkProtocolError, match=r"^datalink \(local\): frame 5: ") as info:
            link._step(frame, fed, 1.0)
        assert info.value.remote is False
        assert frame.state is state and frame.retries == (2 if cause in _BASE_INPUT else 1)
        assert link.state is LinkState.OPEN
        return
    rule = FRAME_TABLE[pair]
    events = link._step(frame, fed, 1.0)
    assert frame.state is rule.next_state
    action = rule.action
    assert (events != []) == (action is FrameAction.GIVE_UP)
    if action is FrameAction.GIVE_UP:
        assert link.state is LinkState.FAILED and events == [
            LinkFailed(5, "no ACK after 2 retransmissions")
        ]
    else:
        assert link.state is LinkState.OPEN
    assert frame.sent_at == (1.0 if action is FrameAction.SEND else 0.5)
    assert link.retransmissions == (1 if action is FrameAction.RESEND else 0)
    assert frame.retries == (1 if cause not in _BASE_INPUT else 2) + (action is FrameAction.RESEND)
    in_window = 5 in link._flight
    assert in_window == (state is not FrameState.DONE and action is not FrameAction.RELEASE)


def test_a_nak_past_the_retry_limit_gives_the_link_up_through_the_table() -> None:
    link = DataLink(DatalinkSection(retry_limit=1))
    link.send(b"ab")
    link.transmit(0.0)
    from bridge.acrnema.framing import FrameType, encode_frame

    assert link.receive(encode_frame(FrameType.NAK, 0), None, 0.001) == []  # resend 1
    link.transmit(0.002)
    assert link.receive(encode_frame(FrameType.NAK, 0), None, 0.003) == [
        LinkFailed(0, "no ACK after 1 retransmissions")
    ]
    assert link.failed


# ---------------------------------------------------------------------- session

SESSION_PARAMS = REFERENCE.session
_KIND = {code: name for name, code in SESSION_PARAMS.pdu_types.items()}


def _pdu(kind: str, body: bytes = b"") -> bytes:
    return struct.pack(">H", SESSION_PARAMS.pdu_types[kind]) + body


def _addr(text: str) -> bytes:
    return text.encode().ljust(SESSION_PARAMS.address_length, b" ")


_PDU_IN = {
    SessionInput.CONNECT_PDU: _pdu("connect", _addr("CT") + _addr("BRIDGE")),
    SessionInput.ACCEPT_PDU: _pdu("accept", _addr("BRIDGE")),
    SessionInput.REJECT_PDU: _pdu("reject", struct.pack(">H", 2)),
    SessionInput.DATA_PDU: _pdu("data", b"message"),
    SessionInput.RELEASE_PDU: _pdu("release"),
    SessionInput.RELEASE_REPLY_PDU: _pdu("release_reply"),
    SessionInput.ABORT_PDU: _pdu("abort", struct.pack(">H", 1)),
    SessionInput.BAD_PDU: struct.pack(">H", 0xFFFF),  # a PDU type nobody knows
}
_LOCAL = [c for c in SessionInput if c not in _PDU_IN]  # calls, timers, the link below

_EXPECT: dict[SessionAction, tuple[list[type], list[str]]] = {
    SessionAction.SEND_CONNECT: ([], ["connect"]),
    SessionAction.SEND_ACCEPT: ([], ["accept"]),
    SessionAction.SEND_REJECT: ([], ["reject"]),
    SessionAction.SEND_DATA: ([], ["data"]),
    SessionAction.SEND_RELEASE: ([], ["release"]),
    SessionAction.SEND_ABORT: ([], ["abort"]),
    SessionAction.REPORT_CONNECT_REQUESTED: ([ConnectRequested], []),
    SessionAction.REPORT_CONNECTED: ([Connected], []),
    SessionAction.REPORT_REJECTED: ([Rejected], []),
    SessionAction.REPORT_DATA: ([DataIndication], []),
    SessionAction.REPLY_RELEASED: ([Released], ["release_reply"]),
    SessionAction.REPORT_RELEASED: ([Released], []),
    SessionAction.REPORT_ABORTED: ([Aborted], []),
    SessionAction.ABORT_PROTOCOL_ERROR: ([Aborted], ["abort"]),
    SessionAction.ABORT_TIMED_OUT: ([Aborted], ["abort"]),
    SessionAction.REPORT_LINK_LOST: ([Aborted], []),
    SessionAction.LISTEN: ([], []),
    SessionAction.IGNORE: ([], []),
}
"""What each action does, as events (their types) and PDUs sent (their kinds)."""


def _session_in(state: SessionState) -> Session:
    session = Session(SESSION_PARAMS)
    session.state = state
    session._deadline = 0.5  # every timer due at 1.0
    return session


def _feed_session(
    session: Session, cause: SessionInput, now: float
) -> tuple[list[object], list[bytes]]:
    """``cause`` as the session's user, the peer, the clock or the link below gives it."""

    def one(pdu: bytes | None) -> tuple[list[object], list[bytes]]:
        return [], [] if pdu is None else [pdu]

    if cause in _PDU_IN:
        events, pdus = session.receive(_PDU_IN[cause], now)
        return list(events), pdus
    if cause is SessionInput.CONNECT:
        return one(session.connect("CT", "BRIDGE", now))
    if cause is SessionInput.ACCEPT:
        return one(session.accept(now))
    if cause is SessionInput.REJECT:
        return one(session.reject(2, now))
    if cause is SessionInput.SEND:
        return one(session.send(b"message", now))
    if cause is SessionInput.RELEASE:
        return one(session.release(now))
    if cause is SessionInput.ABORT:
        return one(session.abort(1, now))
    if cause is SessionInput.LINK_LOST:
        return list(session.link_lost(now, "gone")), []
    # the timers: handle_timer gives QUIET_OVER in QUIET and TIMEOUT elsewhere; the other
    # pair of each state is reached through the table step it would use
    quiet = session.state is SessionState.QUIET
    if (cause is SessionInput.QUIET_OVER) == quiet:
        events, pdus = session.handle_timer(now)
        return list(events), pdus
    events, pdus = session._do(session._rule(cause), now)
    return list(events), pdus


def _shape(result: tuple[list[object], list[bytes]]) -> tuple[list[type], list[str]]:
    events, pdus = result
    return [type(e) for e in events], [_KIND[struct.unpack_from(">H", p)[0]] for p in pdus]


def test_every_session_action_is_used_and_has_an_expectation() -> None:
    assert {rule.action for rule in SESSION_TABLE.values()} == set(SessionAction) == set(_EXPECT)


@pytest.mark.parametrize("pair", list(SESSION_TABLE.pairs()), ids=str)
def test_every_pair_of_the_session_table(pair: tuple[SessionState, SessionInput]) -> None:
    state, cause = pair
    session = _session_in(state)
    if pair in SESSION_TABLE:
        rule = SESSION_TABLE[pair]
        assert _shape(_feed_session(session, cause, 1.0)) == _EXPECT[rule.action]
        assert session.state is rule.next_state
        return
    if cause in _LOCAL:  # a call of the user (or the clock, the link): raised, nothing changes
        with pytest.raises(LinkProtocolError) as info:
            _feed_session(session, cause, 1.0)
        assert info.value.layer == "session" and info.value.remote is False
        assert str(info.value) == f"session (local): {cause.value} while {state.value}"
        assert session.state is state and session._deadline == 0.5
        return
    # a PDU the table does not allow: a remote protocol error, answered with ABORT
    events, pdus = _feed_session(session, cause, 1.0)
    assert events == [
        Aborted(4, remote=True, detail=f"{cause.value} while {state.value}")
    ] and pdus == [_pdu("abort", struct.pack(">H", 4))]
    assert session.state is SESSION_TABLE[state, SessionInput.BAD_PDU].next_state


@pytest.mark.parametrize("state", list(SessionState), ids=str)
def test_a_malformed_pdu_is_a_remote_protocol_error_in_every_state(state: SessionState) -> None:
    session = _session_in(state)
    events, pdus = session.receive(b"\x00", 1.0)
    rule = SESSION_TABLE[state, SessionInput.BAD_PDU]
    assert _shape((list(events), pdus)) == _EXPECT[rule.action]
    assert session.state is rule.next_state
    if rule.action is SessionAction.ABORT_PROTOCOL_ERROR:
        assert events == [Aborted(4, remote=True, detail="PDU shorter than its type word")]


def test_entering_quiet_starts_the_quiet_timer_once() -> None:
    session = _session_in(SessionState.OPEN)
    assert session.abort(1, 2.0) is not None and session.next_deadline() == 2.0 + (
        SESSION_PARAMS.abort_quiet_s
    )
    assert session.abort(1, 2.5) is None  # (QUIET, abort()) ignores: the timer stays
    assert session.next_deadline() == 2.0 + SESSION_PARAMS.abort_quiet_s


# ---------------------------------------------------------------------- the docs


def test_the_docs_diagrams_are_rendered_from_the_tables() -> None:
    from bridge.cli.profile import doc_block

    text = (DOCS / "link-profile.md").read_text()
    assert "<!-- diagrams:start -->\n" + doc_block("diagrams") + "<!-- diagrams:end -->" in text
    for table in (LINK_TABLE, FRAME_TABLE, SESSION_TABLE):
        assert state_diagram(table) in text


# ---------------------------------------------------------------------- box host

from bridge.box import protocol as bp  # noqa: E402
from bridge.box.host import (  # noqa: E402
    HOST_TABLE,
    TRANSITIONS,
    BoxError,
    BoxGone,
    BoxHost,
    BoxUp,
    HostInput,
    HostState,
)
from bridge.engine import PeerReady, WordsArrived  # noqa: E402
from bridge.testing.box import BoxModel  # noqa: E402


def _shuttle(host: BoxHost, box: BoxModel, until: HostState | None = None) -> None:
    """Bytes both ways in memory; frames from the box fed one by one, stopping at ``until``."""
    for _ in range(20):
        out = host.data_to_send()
        if out:
            box.feed(out, 0.0)
        box.poll(0.0)
        back = box.output(1 << 20, 0.0)
        if not out and not back:
            return
        for frame in back.split(b"\0")[:-1]:
            host.receive(frame + b"\0", 0.0)
            if host.state is until:
                return


def _host_in(state: HostState) -> tuple[BoxHost, BoxModel]:
    host, box = BoxHost("walk", duplex=True), BoxModel()
    if state is not HostState.DOWN:
        host.connect(0.0)
        if state is not HostState.HELLO:
            _shuttle(host, box, state)
    assert host.state is state
    return host, box


def _frame(host: BoxHost, message: bp.Message) -> bytes:
    return bp.encode_frame(message, host._box_seq or 0)


def _feed_host(host: BoxHost, box: BoxModel, cause: HostInput) -> list[object]:
    """``cause`` as the box, the driver or the clock gives it to the host."""
    words = np.arange(4, dtype=np.uint16)
    messages: dict[HostInput, bp.Message] = {
        HostInput.INFO: box.info,
        HostInput.REPLY: bp.Reply(bp.MsgType.QUERY, 0xEE),  # to no request: old, ignored
        HostInput.LINE_STATE: bp.LineState(0, ready=host.ready, peer_ready=True),
        HostInput.LINE_STATE_FORGOT: bp.LineState(0, ready=not host.ready),
        HostInput.STATS: bp.Stats(),
        HostInput.ERROR: bp.ErrorReport(bp.ErrorCode.PARITY),
        HostInput.WORDS_IN: bp.WordsIn(host._in_pos, words, np.ones(4, np.uint8)),
        HostInput.BOX_CREDITS: bp.BoxCredits(0, 100),
    }
    if cause in messages:
        return list(host.receive(_frame(host, messages[cause]), 1.0))
    if cause is HostInput.REPLY_LAST:  # answer every start-up request; the last is the guard
        events: list[object] = []
        for seq in sorted(host._starting, key=lambda s: s != host._reset_seq):
            request = host._pending[seq]
            events = list(host.receive(_frame(host, bp.Reply(request.message.TYPE, seq)), 1.0))
        return events
    if cause is HostInput.CONNECT:
        host.connect(1.0)
        return []
    if cause is HostInput.DISCONNECT:
        host.disconnect()
        return []
    if cause is HostInput.SILENCE:
        return list(host.handle_timer(host._last_rx + host.silence + 1.0))
    # NO_ANSWER: a request out of tries, the box otherwise heard from
    if host.state is HostState.UP:
        host.set_ready(True, 0.0)  # a LINE_SET to wait for
    for request in [host._hello, *host._pending.values()]:
        if request is not None:
            request.tries, request.sent = host.attempts, 0.0
    host._last_rx = 1.0
    return list(host.handle_timer(1.5))


_HOST_EVENTS: dict[str, list[type]] = {
    "_on_info": [],
    "_ignore": [],
    "_on_reply": [],
    "_on_last_reply": [BoxUp],
    "_on_line_state": [PeerReady],
    "_on_box_restarted": [BoxGone],
    "_on_credits": [],
    "_on_error": [],
    "_on_stats": [],
    "_on_stale_words": [],
    "_on_words": [WordsArrived],
    "_gone": [BoxGone],
    "_start": [],
    "_stop": [],
}
"""The events each handler reports in the walk (words before RESET's REPLY are stale)."""


def _reachable(state: HostState, cause: HostInput) -> bool:
    """Whether the host's own choice of input (its guards, DOWN reading nothing) can give
    ``cause`` in ``state``: the walk feeds those through the public calls."""
    if cause in (HostInput.CONNECT, HostInput.DISCONNECT):
        return True
    if state is HostState.DOWN:
        return False
    if cause is HostInput.REPLY_LAST:
        return state is HostState.STARTING
    if cause is HostInput.LINE_STATE_FORGOT:
        return state is HostState.UP
    return True


@pytest.mark.parametrize("pair", list(HOST_TABLE.pairs()), ids=str)
def test_every_pair_of_the_box_host_table(pair: tuple[HostState, HostInput]) -> None:
    state, cause = pair
    host, box = _host_in(state)
    if pair not in HOST_TABLE:
        assert not _reachable(state, cause)
        with pytest.raises(BoxError, match=f"^walk: {cause.value} while {state.value}$"):
            host._apply(cause, None, 1.0)
        assert host.state is state
        if state is HostState.DOWN:  # and the public calls: no stream, nothing read or due
            assert host.receive(_frame(host, bp.Stats()), 1.0) == []
            assert host.handle_timer(1e9) == [] and host.state is HostState.DOWN
        return
    rule = HOST_TABLE[pair]
    assert _reachable(state, cause)
    events = _feed_host(host, box, cause)
    assert host.state is rule.next_state
    name = rule.action.__name__
    expected = _HOST_EVENTS[name]
    if name == "_on_words" and state is HostState.STARTING:
        expected = []  # before the REPLY to RESET: stale
    assert [type(e) for e in events] == expected
    if name == "_start":
        assert host.data_to_send().startswith(b"\0")


def test_the_old_transitions_name_is_the_tables_message_rows() -> None:
    for (state, kind), (handler, target) in TRANSITIONS.items():
        assert getattr(BoxHost, handler) is HOST_TABLE[state, HostInput[kind.name]].action
        assert target is HOST_TABLE[state, HostInput[kind.name]].next_state


# ---------------------------------------------------------------------- link stack

from bridge.acrnema.stack import (  # noqa: E402
    STACK_TABLE,
    LinkDown,
    LinkStack,
    StackAction,
    StackInput,
    StackState,
)


def _stack_in(state: StackState) -> LinkStack:
    stack = LinkStack()
    if state is StackState.DOWN:
        params = DatalinkSection(ack_timeout_ms=10.0, retry_limit=0)
        stack.datalink = DataLink(params)
        stack.connect("CT", "BRIDGE", 0.0)
        stack.transmit(0.0)
        events = stack.handle_timer(1.0)
        assert isinstance(events[-1], LinkDown)
    assert stack.state is state
    return stack


def _feed_stack(stack: LinkStack, cause: StackInput) -> list[object]:
    if cause is StackInput.CALL:
        stack.connect("CT", "BRIDGE", 2.0)
        return []
    if cause is StackInput.ABORT:
        stack.abort(1, 2.0)
        return []
    if cause is StackInput.WORDS:
        return list(stack.receive(np.zeros(3, dtype=np.uint16), None, 2.0))
    if cause is StackInput.TIMER:
        return list(stack.handle_timer(2.0))
    if cause is StackInput.RESET:
        stack.reset()
        return []
    # LINK_FAILED: a frame out of retries
    stack.datalink = DataLink(DatalinkSection(ack_timeout_ms=10.0, retry_limit=0))
    stack.datalink.send(b"xy")
    stack.transmit(2.0)
    return list(stack.handle_timer(3.0))


@pytest.mark.parametrize("pair", list(STACK_TABLE.pairs()), ids=str)
def test_every_pair_of_the_stack_table(pair: tuple[StackState, StackInput]) -> None:
    state, cause = pair
    stack = _stack_in(state)
    if pair not in STACK_TABLE:
        if cause is StackInput.LINK_FAILED:  # the data link is not even asked while DOWN
            assert _feed_stack(stack, cause) == [] and stack.state is state
            with pytest.raises(LinkProtocolError, match=r"^stack \(local\): the link is down"):
                stack._link_failed(LinkFailed(0, "walk"), 3.0)
        else:
            with pytest.raises(LinkProtocolError) as info:
                _feed_stack(stack, cause)
            assert str(info.value) == "stack (local): the link is down: reset() first"
        assert stack.state is state
        return
    rule = STACK_TABLE[pair]
    before = stack.datalink.idle
    events = _feed_stack(stack, cause)
    assert stack.state is rule.next_state
    if rule.action is StackAction.GO_DOWN:
        assert isinstance(events[-1], LinkDown)
    elif rule.action is StackAction.DROP:
        assert events == []
    elif rule.action is StackAction.ABORT_QUIETLY:
        assert stack.datalink.idle == before  # nothing went to the failed link
    elif rule.action is StackAction.RESTART:
        assert stack.session.state is SessionState.IDLE and stack.datalink.idle
    elif cause is StackInput.CALL:
        assert not stack.datalink.idle  # the session's CONNECT is on its way


# ---------------------------------------------------------------------- transport

from bridge.acrnema.transport import (  # noqa: E402
    REASSEMBLY_TABLE,
    MessageReceived,
    MessageRefused,
    ReassemblyAction,
    ReassemblyInput,
    ReassemblyState,
    ReassemblyTimedOut,
    Transport,
    TransportError,
)

_TP = TransportSection(max_segment_bytes=16, max_message_bytes=12, reassembly_timeout_s=5.0)


def _packet(message_id: int, index: int, segment: bytes, *, last: bool = False) -> bytes:
    flags = index | (0x8000 if last else 0)
    pad = b"\0" if len(segment) % 2 else b""
    return struct.pack(">HHI", message_id, flags, len(segment)) + segment + pad


_SEGMENT_IN = {  # message 7 is the one under way (10 bytes so far; 14, refused)
    ReassemblyInput.FIRST: _packet(9, 0, b"abcd"),
    ReassemblyInput.FIRST_LAST: _packet(9, 0, b"abcd", last=True),
    ReassemblyInput.FIRST_OVER: _packet(9, 0, b"x" * 14),
    ReassemblyInput.FIRST_LAST_OVER: _packet(9, 0, b"x" * 14, last=True),
    ReassemblyInput.NEXT: _packet(7, 1, b"kl"),
    ReassemblyInput.NEXT_LAST: _packet(7, 1, b"kl", last=True),
    ReassemblyInput.NEXT_OVER: _packet(7, 1, b"klmn"),
    ReassemblyInput.NEXT_LAST_OVER: _packet(7, 1, b"klmn", last=True),
    ReassemblyInput.STRAY: _packet(7, 5, b"zz"),
    ReassemblyInput.BAD_LENGTH: struct.pack(">HHI", 7, 1, 17) + b"\0" * 18,
}

_REASSEMBLY_EVENTS: dict[ReassemblyAction, list[type]] = {
    ReassemblyAction.START: [],
    ReassemblyAction.START_REFUSED: [MessageRefused],
    ReassemblyAction.DELIVER_ONE: [MessageReceived],
    ReassemblyAction.REFUSE_ONE: [MessageRefused],
    ReassemblyAction.APPEND: [],
    ReassemblyAction.DELIVER: [MessageReceived],
    ReassemblyAction.REFUSE: [MessageRefused],
    ReassemblyAction.REFUSE_LAST: [MessageRefused],
    ReassemblyAction.SKIP: [],
    ReassemblyAction.SKIP_LAST: [],
    ReassemblyAction.BREAK: [TransportError],
    ReassemblyAction.BREAK_STREAM: [TransportError],
    ReassemblyAction.TIME_OUT: [ReassemblyTimedOut],
    ReassemblyAction.FORGET: [],
}


def _transport_in(state: ReassemblyState) -> Transport:
    transport = Transport(_TP)
    if state is ReassemblyState.RECEIVING:
        assert transport.receive(_packet(7, 0, b"0123456789"), 0.0) == []
    elif state is ReassemblyState.REFUSED:
        assert [type(e) for e in transport.receive(_packet(7, 0, b"x" * 14), 0.0)] == [
            MessageRefused
        ]
    assert transport.state is state
    return transport


def _reachable_segment(state: ReassemblyState, cause: ReassemblyInput) -> bool:
    if cause.name.startswith("NEXT"):  # a message under way, and a refused one is over
        return state is ReassemblyState.RECEIVING or (
            state is ReassemblyState.REFUSED and cause.name.endswith("OVER")
        )
    return cause is not ReassemblyInput.TIMEOUT or state is not ReassemblyState.IDLE


@pytest.mark.parametrize("pair", list(REASSEMBLY_TABLE.pairs()), ids=str)
def test_every_pair_of_the_reassembly_table(pair: tuple[ReassemblyState, ReassemblyInput]) -> None:
    state, cause = pair
    transport = _transport_in(state)
    if pair not in REASSEMBLY_TABLE:
        assert not _reachable_segment(state, cause)
        with pytest.raises(LinkProtocolError) as info:
            transport._apply(cause, 1.0)
        assert info.value.layer == "transport" and info.value.remote is True
        assert transport.state is state
        if cause in _SEGMENT_IN:  # the same segment is taken for an input in the table
            message_id, flags, size = struct.unpack_from(">HHI", _SEGMENT_IN[cause])
            taken = transport._classify(message_id, flags & 0x7FFF, flags >= 0x8000, size)
            assert (state, taken) in REASSEMBLY_TABLE
            transport.receive(_SEGMENT_IN[cause], 1.0)
            assert transport.state is REASSEMBLY_TABLE[state, taken].next_state
        return
    assert _reachable_segment(state, cause)
    rule = REASSEMBLY_TABLE[pair]
    if cause in _SEGMENT_IN:
        events = transport.receive(_SEGMENT_IN[cause], 1.0)
    elif cause is ReassemblyInput.TIMEOUT:
        assert transport.handle_timer(4.9) == []
        events = transport.handle_timer(5.0)
    else:
        transport.reset()
        events = []
    assert transport.state is rule.next_state
    expected = list(_REASSEMBLY_EVENTS.get(rule.action, []))
    if rule.action is ReassemblyAction.BREAK_AND_RESTART:
        expected = [
            TransportError,
            *_REASSEMBLY_EVENTS[REASSEMBLY_TABLE[ReassemblyState.IDLE, cause].action],
        ]
    assert [type(e) for e in events] == expected
    assert (transport._partial is None) == (transport.state is ReassemblyState.IDLE)
    assert (transport.state is ReassemblyState.REFUSED) == bool(
        transport._partial and transport._partial.refused
    )


# ---------------------------------------------------------------------- raw word stream

from bridge.acrnema.physical import WordBuffer  # noqa: E402
from bridge.errors import PortError  # noqa: E402
from bridge.wordstream import (  # noqa: E402
    ANNOUNCE_INTERVAL_S,
    LINE_TABLE,
    LineAction,
    LineInput,
    WordStreamEngine,
    WordStreamState,
    encode_line_state,
    encode_words,
)

_WORDS = encode_words(WordBuffer(np.arange(5, dtype=np.uint16), np.ones(5, dtype=np.uint8)))

_LINE_EFFECT: dict[LineAction, tuple[list[type], bool]] = {
    LineAction.GREET: ([], True),
    LineAction.FORGET: ([], False),
    LineAction.NOTE_READY: ([], False),
    LineAction.SEND_LINE_STATE: ([], True),
    LineAction.SET_READY: ([], True),
    LineAction.DROP_READY: ([], True),
    LineAction.REPORT_PEER: ([PeerReady], False),
    LineAction.REPORT_PEER_AND_ANSWER: ([PeerReady], True),
    LineAction.ANSWER: ([], True),
    LineAction.TAKE_WORDS: ([WordsArrived], False),
    LineAction.DISCARD: ([], False),
    LineAction.DISCARD_AND_ANSWER: ([], True),
    LineAction.NOTE_STALL: ([], False),
    LineAction.IGNORE: ([], False),
}
"""Each action: the events it reports, and whether a line-state unit goes out."""


def _engine_in(state: WordStreamState) -> WordStreamEngine:
    engine = WordStreamEngine("walk")
    if state is not WordStreamState.DOWN:
        engine.connect(0.0)
    if state is WordStreamState.UP:
        engine.receive(encode_line_state(True, True), 0.0)
    engine.data_to_send()
    assert engine.state is state
    return engine


def _feed_engine(engine: WordStreamEngine, cause: LineInput) -> list[object]:
    asks = {
        LineInput.PEER_READY: (True, engine.ready),
        LineInput.PEER_READY_ASKS: (True, not engine.ready),
        LineInput.PEER_NOT_READY: (False, engine.ready),
        LineInput.PEER_NOT_READY_ASKS: (False, not engine.ready),
    }
    if cause in asks:
        return list(engine.receive(encode_line_state(*asks[cause]), 1.0))
    if cause in (LineInput.WORDS, LineInput.WORDS_NOT_READY):
        engine.ready = cause is LineInput.WORDS
        return list(engine.receive(_WORDS, 1.0))
    if cause is LineInput.CONNECT:
        engine.connect(1.0)
    elif cause is LineInput.DISCONNECT:
        engine.disconnect()
    elif cause is LineInput.SET_READY:
        engine.set_ready(False, 1.0)
    elif cause is LineInput.GOODBYE:
        engine.goodbye(1.0)
    elif cause is LineInput.ANNOUNCE:
        return list(engine.handle_timer(engine._last_announce + ANNOUNCE_INTERVAL_S))
    else:
        engine.peer_stalled()
    return []


@pytest.mark.parametrize("pair", list(LINE_TABLE.pairs()), ids=str)
def test_every_pair_of_the_word_stream_table(pair: tuple[WordStreamState, LineInput]) -> None:
    state, cause = pair
    engine = _engine_in(state)
    if pair not in LINE_TABLE:
        with pytest.raises(PortError, match=f"^raw word stream: {cause.value} while "):
            engine._apply(cause, 1.0)
        assert engine.state is state
        # and the public path does not give it: no stream (nothing read, no timer), or the
        # announcement not due while the peer is READY
        assert _feed_engine(engine, cause) == [] and engine.data_to_send() == b""
        assert engine.state is state and engine.discarded == 0
        return
    rule = LINE_TABLE[pair]
    events = _feed_engine(engine, cause)
    assert engine.state is rule.next_state
    expected_events, line_state = _LINE_EFFECT[rule.action]
    assert [type(e) for e in events] == expected_events
    out = engine.data_to_send()
    assert (out[-3:-1] == b"\0\0" and out[-1] & 0x80 != 0) is line_state, out
    if rule.action in (LineAction.DISCARD, LineAction.DISCARD_AND_ANSWER):
        assert engine.discarded == 5
    if rule.action is LineAction.DROP_READY:
        assert engine.ready is False


# ---------------------------------------------------------------------- ftdi-gpio bus

from ftdi_fake import Cable, FtdiPins  # noqa: E402

from bridge.ports.ftdi_gpio import (  # noqa: E402
    BUS_TABLES,
    BusAction,
    BusInput,
    BusState,
    FtdiGpioPort,
)

_BUS_PATH = {  # how each state is reached from OFF, through the table itself
    ("a", BusState.OFF): [],
    ("a", BusState.OWNER): [BusInput.PEER_FOUND],
    ("a", BusState.RECEIVER): [BusInput.PEER_FOUND, BusInput.BREQ],
    ("b", BusState.OFF): [],
    ("b", BusState.IDLE): [BusInput.PEER_FOUND],
    ("b", BusState.RECEIVER): [BusInput.PEER_FOUND, BusInput.DIR],
    ("b", BusState.OWNER): [BusInput.PEER_FOUND, BusInput.GRANTED],
}


def _bus_pairs() -> list[tuple[str, BusState, BusInput]]:
    """Every pair of each side's table, in the states that side has (A is never IDLE)."""
    pairs = [(role, s, i) for role, table in BUS_TABLES.items() for s, i in table.pairs()]
    assert {(r, s) for r, table in BUS_TABLES.items() for s, _ in table} <= set(_BUS_PATH)
    return [(role, s, i) for role, s, i in pairs if (role, s) in _BUS_PATH]


@pytest.mark.parametrize("walk", _bus_pairs(), ids=str)
def test_every_pair_of_the_bus_tables(walk: tuple[str, BusState, BusInput]) -> None:
    """Each side's bus table on the fake FT2232H (the other side's READY asserted on the
    cable): a pair in the table drives what its action says, which the enables show; a
    pair not in it raises PortError and changes nothing."""
    role, state, cause = walk
    table = BUS_TABLES[role]
    cable = Cable()
    other = "b" if role == "a" else "a"
    cable.drive(other, f"READY_{other.upper()}", True)
    pins = FtdiPins(cable, role)
    port = FtdiGpioPort(pins, role=role, url=f"ftdi-gpio://walk?role={role}")
    try:
        assert port.wait_peer(0.0)  # it finds the bus: start again from OFF
        port._step(BusInput.LINK_DOWN)
        assert port._state is BusState.OFF
        for step in _BUS_PATH[role, state]:
            port._step(step)
        assert port._state is state
        if (state, cause) not in table:
            with pytest.raises(PortError, match=f"bus: {cause.value} while {state.value}$"):
                port._step(cause)
            assert port._state is state
            return
        rule = table[state, cause]
        port._step(cause)
        assert port._state is rule.next_state
        if rule.action is not BusAction.FORGET:  # (a lost device: nothing can be driven)
            assert pins.enabled("DE_BUS") is (rule.next_state is BusState.OWNER)
            arb = "DE_DIR" if role == "a" else "DE_BREQ"
            assert pins.enabled(arb) is (rule.next_state is not BusState.OFF)
        if role == "a" and rule.next_state is not BusState.OFF:
            assert cable.asserted("DIR") is (rule.next_state is BusState.OWNER)
    finally:
        port.close()


# ---------------------------------------------------------------------- every table in the docs

_DOC_TABLES = [
    ("box-protocol.md", "host-table", HOST_TABLE),
    ("link-profile.md", "reassembly-table", REASSEMBLY_TABLE),
    ("link-profile.md", "stack-table", STACK_TABLE),
    ("ports.md", "line-table", LINE_TABLE),
    ("ftdi-gpio.md", "bus-table-a", BUS_TABLES["a"]),
    ("ftdi-gpio.md", "bus-table-b", BUS_TABLES["b"]),
]
"""Tables shown in the docs as Markdown (the link's data link and session tables are
the Mermaid diagrams of link-profile.md, checked above)."""


@pytest.mark.parametrize("doc, name, table", _DOC_TABLES, ids=[n for _, n, _ in _DOC_TABLES])
def test_the_docs_tables_are_rendered_from_the_code(
    doc: str, name: str, table: Table[Any, Any, Any]
) -> None:
    text = (DOCS / doc).read_text()
    block = text.split(f"<!-- {name}:start -->\n")[1].split(f"<!-- {name}:end -->")[0]
    assert block == markdown_table(table), f"paste markdown_table({table.name}) into {doc}"


def _package_tables() -> list[Table[Any, Any, Any]]:
    """Every table of the idiom in the package's modules that hold machines."""
    import bridge.acrnema.datalink
    import bridge.acrnema.session
    import bridge.acrnema.stack
    import bridge.acrnema.transport
    import bridge.box.host
    import bridge.ports.ftdi_gpio
    import bridge.wordstream

    modules = [
        bridge.acrnema.datalink,
        bridge.acrnema.session,
        bridge.acrnema.stack,
        bridge.acrnema.transport,
        bridge.box.host,
        bridge.wordstream,
        bridge.ports.ftdi_gpio,
    ]
    found = []
    for module in modules:
        for value in vars(module).values():
            tables = value.values() if isinstance(value, dict) else [value]
            found += [t for t in tables if isinstance(t, Table)]
    return found


def test_every_machine_is_walked_and_drawn() -> None:
    """Every table of the idiom in the package is walked above and shown in the docs."""
    drawn = {id(t) for _, _, t in _DOC_TABLES} | {
        id(LINK_TABLE),
        id(FRAME_TABLE),
        id(SESSION_TABLE),
    }
    found = _package_tables()
    assert found and {id(t) for t in found} == drawn
    from bridge.cli.profile import machines

    assert sorted(id(m.table) for m in machines()) == sorted(id(t) for t in found)


def test_profile_diagrams_draws_every_machine(capsys: pytest.CaptureFixture[str]) -> None:
    """``acrnema-bridge profile diagrams`` draws every table, not only the link's."""
    from bridge.cli import main

    assert main(["profile", "diagrams"]) == 0
    out = capsys.readouterr().out
    tables = _package_tables()
    assert len(tables) == 9
    for table in tables:
        assert "```mermaid\n" + state_diagram(table) + "\n```" in out, table.name
    assert out.count("```mermaid") == len(tables)


def _blocks() -> list[tuple[str, str]]:
    from bridge.cli.profile import machines

    return sorted({(m.block, m.doc) for m in machines()})


@pytest.mark.parametrize(("block", "doc"), _blocks(), ids=[b for b, _ in _blocks()])
def test_profile_diagrams_block_prints_each_generated_block_of_the_docs(
    block: str, doc: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``profile diagrams --block NAME`` prints what the docs hold between NAME's markers."""
    from bridge.cli import main

    assert main(["profile", "diagrams", "--block", block]) == 0
    out = capsys.readouterr().out
    text = (DOCS / doc).read_text()
    assert f"<!-- {block}:start -->\n{out}<!-- {block}:end -->" in text, (
        f"run: acrnema-bridge profile diagrams --block {block}, and paste into docs/{doc}"
    )


def test_profile_diagrams_refuses_an_unknown_block(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["profile", "diagrams", "--block", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err

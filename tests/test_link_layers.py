"""Transport, session and application layers, and the composed stack, sans-I/O.

Golden vectors (tests/vectors/{transport,session,application}/) pin each format; decoders
are fed whole, byte by byte and with trailing data; layer pairs run back to back on a
fake clock; Hypothesis round-trips the codecs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.acrnema.commands import (
    Command,
    CommandTable,
    Message,
    decode_message,
    encode_message,
)
from bridge.acrnema.datalink import LinkProtocolError, state_diagram
from bridge.acrnema.session import (
    SESSION_TABLE,
    Aborted,
    Connected,
    ConnectRequested,
    DataIndication,
    Rejected,
    Released,
    Session,
    SessionState,
)
from bridge.acrnema.stack import (
    LinkDown,
    LinkStack,
    MessageArrived,
    MessageUnreadable,
)
from bridge.acrnema.transport import (
    MessageReceived,
    MessageRefused,
    ReassemblyTimedOut,
    Transport,
    TransportError,
)
from bridge.profile import REFERENCE, TransportSection, profile_from_mapping

VECTORS = Path(__file__).parent / "vectors"
SESSION_PARAMS = REFERENCE.session
TABLE = LinkStack(REFERENCE).commands


def _load(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((VECTORS / name).read_text())


# ---------------------------------------------------------------------- transport

TRANSPORT = _load("transport/packets.json")["cases"]


@pytest.mark.parametrize("case", TRANSPORT, ids=[c["name"] for c in TRANSPORT])
def test_transport_golden_packets(case: dict) -> None:  # type: ignore[type-arg]
    params = TransportSection(max_segment_bytes=case["max_segment_bytes"])
    order = case["binary_byte_order"]
    message = bytes.fromhex(case["message"])
    message_id, packets = Transport(params, order).packets(message)
    assert (message_id, packets.hex()) == (case["message_id"], case["packets"])
    raw = bytes.fromhex(case["packets"])
    whole = Transport(params, order).receive(raw, 0.0)
    assert whole == [MessageReceived(case["message_id"], message)]
    receiver, events = Transport(params, order), []
    for i in range(len(raw)):  # byte by byte
        events += receiver.receive(raw[i : i + 1], 0.0)
    assert events == whole
    assert not receiver.receiving


def test_transport_keeps_trailing_data_for_the_next_message() -> None:
    sender, receiver = Transport(), Transport()
    first, second = sender.packets(b"first")[1], sender.packets(b"second message")[1]
    events = receiver.receive(first + second[:5], 0.0)
    assert events == [MessageReceived(0, b"first")]
    assert receiver.receiving
    assert receiver.receive(second[5:], 0.0) == [MessageReceived(1, b"second message")]


def test_transport_refuses_an_oversized_message_and_goes_on() -> None:
    params = TransportSection(max_segment_bytes=4, max_message_bytes=8)
    receiver = Transport(params)
    big = Transport(TransportSection(max_segment_bytes=4)).packets(b"0123456789ABCDEF")[1]
    events = receiver.receive(big, 0.0)
    assert events == [MessageRefused(0, 12, b"0123")]
    follow = Transport(params).packets(b"ok")[1]
    assert receiver.receive(follow, 0.0) == [MessageReceived(0, b"ok")]


def test_transport_sender_refuses_an_oversized_message() -> None:
    with pytest.raises(LinkProtocolError, match="over the limit"):
        Transport(TransportSection(max_message_bytes=4)).packets(b"12345")


def test_transport_reports_broken_order_and_keeps_the_new_message() -> None:
    sender = Transport(TransportSection(max_segment_bytes=2))
    one = sender.packets(b"aabb")[1]  # two packets of 10 bytes each
    two = sender.packets(b"cc")[1]
    receiver = Transport()
    events = receiver.receive(one[:10] + two, 0.0)
    assert isinstance(events[0], TransportError)
    assert "partial message dropped" in events[0].reason
    assert events[1:] == [MessageReceived(1, b"cc")]


def test_transport_segment_without_its_start() -> None:
    one = Transport(TransportSection(max_segment_bytes=2)).packets(b"aabb")[1]
    events = Transport().receive(one[10:], 0.0)
    assert events == [TransportError("message 0: segment 1 without segment 0")]


def test_transport_absurd_segment_length_is_an_error_not_a_wait() -> None:
    events = Transport(TransportSection(max_segment_bytes=16)).receive(
        bytes.fromhex("0000800000100000") + b"x" * 8, 0.0
    )
    assert isinstance(events[0], TransportError)


def test_transport_reassembly_timeout() -> None:
    params = TransportSection(max_segment_bytes=2, reassembly_timeout_s=5.0)
    one = Transport(params).packets(b"aabb")[1]
    receiver = Transport(params)
    receiver.receive(one[:10], 100.0)
    assert receiver.next_deadline() == 105.0
    assert receiver.handle_timer(104.9) == []
    assert receiver.handle_timer(105.0) == [ReassemblyTimedOut(0, 2)]
    assert not receiver.receiving


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
    segment=st.integers(1, 64).map(lambda n: 2 * n),
    cuts=st.lists(st.integers(1, 50), max_size=20),
    order=st.sampled_from(["big", "little"]),
)
def test_transport_round_trip(
    messages: list[bytes], segment: int, cuts: list[int], order: str
) -> None:
    params = TransportSection(max_segment_bytes=segment)
    sender, receiver = Transport(params, order), Transport(params, order)
    stream = b"".join(sender.packets(m)[1] for m in messages)
    events, pos = [], 0
    for cut in [*cuts, len(stream)]:
        events += receiver.receive(stream[pos : pos + cut], 0.0)
        pos += cut
    events += receiver.receive(stream[pos:], 0.0)
    assert [e.data for e in events if isinstance(e, MessageReceived)] == messages


# ---------------------------------------------------------------------- session

PDUS = {p["name"]: bytes.fromhex(p["pdu"]) for p in _load("session/pdus.json")["pdus"]}


def _pair() -> tuple[Session, Session]:
    return Session(SESSION_PARAMS), Session(SESSION_PARAMS)


def test_session_golden_pdus_and_a_whole_connection() -> None:
    a, b = _pair()
    connect = a.connect("SCANNER", "ACRNEMA_BRIDGE", 0.0)
    assert connect == PDUS["CONNECT SCANNER -> ACRNEMA_BRIDGE"]
    assert b.receive(connect, 0.0) == ([ConnectRequested("SCANNER", "ACRNEMA_BRIDGE")], [])
    accept = b.accept(0.0)
    assert accept == PDUS["ACCEPT ACRNEMA_BRIDGE"]
    assert a.receive(accept, 0.0) == ([Connected("ACRNEMA_BRIDGE")], [])
    data = a.send(b"hi", 0.0)
    assert data == PDUS["DATA 'hi'"]
    assert b.receive(data, 0.0) == ([DataIndication(b"hi")], [])
    release = a.release(0.0)
    assert release == PDUS["RELEASE"]
    events, replies = b.receive(release, 0.0)
    assert events == [Released()] and b.state is SessionState.IDLE
    assert a.receive(replies[0], 0.0) == ([Released()], [])
    assert a.state is SessionState.IDLE


def test_session_reject() -> None:
    a, b = _pair()
    b.receive(a.connect("S", "NOBODY", 0.0), 0.0)
    reject = b.reject(2, 0.0)
    assert reject == PDUS["REJECT reason 2 (busy)"]
    events, _ = a.receive(reject, 0.0)
    assert isinstance(events[0], Rejected) and events[0].text == "busy"
    assert a.state is SessionState.IDLE


def test_session_connect_timeout_aborts_and_goes_quiet() -> None:
    a, _ = _pair()
    a.connect("S", "B", 0.0)
    assert a.next_deadline() == SESSION_PARAMS.connect_timeout_s
    events, pdus = a.handle_timer(SESSION_PARAMS.connect_timeout_s)
    assert isinstance(events[0], Aborted) and events[0].reason == 2
    assert pdus == [PDUS["ABORT reason 2 (timeout)"]]
    assert a.state is SessionState.QUIET
    a.handle_timer(SESSION_PARAMS.connect_timeout_s + SESSION_PARAMS.abort_quiet_s)
    assert a.state is SessionState.IDLE


def test_session_peer_abort_and_quiet_time_but_connect_still_taken() -> None:
    a, b = _pair()
    b.receive(a.connect("S", "B", 0.0), 0.0)
    a.receive(b.accept(0.0), 0.0)
    abort = a.abort(1, 0.0)
    assert abort is not None
    events, _ = b.receive(abort, 0.0)
    assert events == [Aborted(1, remote=True)] and b.state is SessionState.QUIET
    assert b.receive(PDUS["DATA 'hi'"], 0.1) == ([], [])  # a leftover: ignored
    events, _ = b.receive(Session(SESSION_PARAMS).connect("S", "B", 0.2), 0.2)
    assert events == [ConnectRequested("S", "B")]


def test_session_pdu_out_of_place_is_a_remote_protocol_error() -> None:
    a, b = _pair()
    events, replies = b.receive(PDUS["DATA 'hi'"], 0.0)  # DATA with no connection
    assert isinstance(events[0], Aborted) and events[0].remote and events[0].reason == 4
    assert replies == [PDUS["ABORT reason 2 (timeout)"][:2] + b"\x00\x04"]
    events, _ = a.receive(b"\x00\x63", 0.0)  # unknown type
    assert "unknown PDU type" in events[0].text  # type: ignore[union-attr]


def test_session_call_out_of_place_is_a_local_error() -> None:
    a, _ = _pair()
    with pytest.raises(LinkProtocolError, match="send\\(\\) while idle"):
        a.send(b"x", 0.0)


def test_session_idle_connection_is_released_by_its_opener() -> None:
    a, b = _pair()
    b.receive(a.connect("S", "B", 0.0), 0.0)
    a.receive(b.accept(0.0), 0.0)
    assert a.next_deadline() == SESSION_PARAMS.idle_timeout_s
    assert b.next_deadline() is None  # only the side that opened it releases it
    _, pdus = a.handle_timer(SESSION_PARAMS.idle_timeout_s)
    assert pdus == [PDUS["RELEASE"]]


def test_session_table_is_drawn_from_the_table() -> None:
    diagram = state_diagram(SESSION_TABLE)  # type: ignore[arg-type]
    assert diagram.startswith("stateDiagram-v2")
    assert diagram.count("-->") == len(SESSION_TABLE)
    assert "AWAIT_ACCEPT --> OPEN: ACCEPT / report Connected" in diagram


# ---------------------------------------------------------------------- application

MESSAGES = _load("application/messages.json")["messages"]


@pytest.mark.parametrize("case", MESSAGES, ids=[c["name"] for c in MESSAGES])
def test_application_golden_messages(case: dict) -> None:  # type: ignore[type-arg]
    raw = bytes.fromhex(case["bytes"])
    message = decode_message(raw, case["byte_order"])
    assert message.data.hex() == case["data"]
    for key, value in case["command"].items():
        assert getattr(message.command, key) == value, key
    assert encode_message(message, case["byte_order"]) == raw


def test_application_message_with_trailing_data_set() -> None:
    raw = bytes.fromhex(MESSAGES[0]["bytes"])
    assert decode_message(raw + b"\x08\x00\x10\x00", "big").data == b"\x08\x00\x10\x00"


def test_application_group_length_ends_the_command_even_before_group_0000_data() -> None:
    raw = bytes.fromhex(MESSAGES[0]["bytes"])
    junk = bytes(16)  # a "data set" that starts like command elements
    assert decode_message(raw + junk, "big").data == junk


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "no Command Field"),
        (bytes.fromhex("00000100000000ff0001"), "runs past the command group"),
        (bytes.fromhex("0000000000000004000000ff"), "Group Length 255 runs past"),
        (bytes.fromhex("0000011000000002000100000100000000020001"), "out of order"),
        (bytes.fromhex("000001000000000100"), "1 bytes, not 2"),
    ],
)
def test_application_malformed_command(raw: bytes, reason: str) -> None:
    with pytest.raises(LinkProtocolError, match=reason) as info:
        decode_message(raw, "big")
    assert info.value.remote and info.value.layer == "application"


def test_application_unknown_command_elements_are_kept() -> None:
    command = Command(0x0030, 3, other=((0x0001, b"\x00\x00\x00\x10"),))
    back = decode_message(encode_message(Message(command), "big"), "big")
    assert back.command.other == ((0x0001, b"\x00\x00\x00\x10"),)


@settings(max_examples=80, deadline=None)
@given(
    field=st.integers(0, 0xFFFF),
    message_id=st.integers(0, 0xFFFF),
    status=st.none() | st.integers(0, 0xFFFF),
    initiator=st.text(alphabet="ABCXYZ_0123456789", max_size=16),
    data=st.binary(max_size=64),
    order=st.sampled_from(["big", "little"]),
)
def test_application_round_trip(
    field: int, message_id: int, status: int | None, initiator: str, data: bytes, order: str
) -> None:
    command = Command(field, message_id, 0x0000, status=status, initiator=initiator)
    message = Message(command, b"\x08\x00" + data if data else b"")
    assert decode_message(encode_message(message, order), order) == message


def test_command_table_response_swaps_addresses() -> None:
    request = TABLE.make_request("store", 9, initiator="CT", receiver="BRIDGE", data=b"xx")
    response = TABLE.make_response(request.command, TABLE.status("not_stored"), "disk")
    assert response.command.field == 0x8001 and response.command.responded_to == 9
    assert (response.command.initiator, response.command.receiver) == ("BRIDGE", "CT")
    assert TABLE.status_name(0xA900) == "not_stored"
    assert TABLE.name(0x8030) == ("echo", True) and TABLE.name(0x1234) is None


# ---------------------------------------------------------------------- the stack


def _wire(a: LinkStack, b: LinkStack, now: float, flip: float = 0.0, rng=None) -> list:  # type: ignore[no-untyped-def,type-arg]
    events = []
    for sender, receiver in ((a, b), (b, a)):
        words, parity = sender.transmit(now)
        if flip and len(words):
            words = words.copy()
            hits = np.flatnonzero(rng.random(len(words)) < flip)
            words[hits] ^= np.uint16(1) << rng.integers(0, 16, len(hits)).astype(np.uint16)
        got = receiver.receive(words, parity, now)
        events += [(receiver, e) for e in got]
    return events


def _run(a: LinkStack, b: LinkStack, until, flip: float = 0.0, limit: float = 30.0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    now, seen = 0.0, []
    while now < limit:
        seen += _wire(a, b, now, flip, rng)
        for end in (a, b):
            seen += [(end, e) for e in end.handle_timer(now)]
        for end, event in seen:
            if isinstance(event, ConnectRequested) and end.session.state.name == "AWAIT_DECISION":
                end.accept(now)
        if until(seen):
            return seen
        deadlines = [d for d in (a.next_deadline(), b.next_deadline()) if d is not None]
        now = min([now + 0.002, *deadlines])
    raise AssertionError(f"not done by t={limit}: {seen[-5:]}")


def _connected(a: LinkStack, b: LinkStack) -> None:
    a.connect("CT", "BRIDGE", 0.0)
    _run(a, b, lambda seen: any(isinstance(e, Connected) for _, e in seen))


@pytest.mark.parametrize(
    "profile",
    [
        REFERENCE,
        profile_from_mapping(
            {
                "physical": {"text_byte_order": "little", "binary_byte_order": "little"},
                "datalink": {"frame_types": {"data": 9, "ack": 10, "nak": 11}},
                "application": {"commands": {"store": [0x0101, 0x8101]}},
            }
        ),
    ],
    ids=["reference", "little-endian, other codes"],
)
def test_stack_back_to_back_carries_a_large_message_through_noise(profile) -> None:  # type: ignore[no-untyped-def]
    a, b = LinkStack(profile), LinkStack(profile)
    _connected(a, b)
    data = bytes(range(256)) * 600  # 150 KiB: several segments and hundreds of frames
    request = a.commands.make_request("store", 5, initiator="CT", receiver="BRIDGE", data=data)
    a.send(request, 0.0)
    seen = _run(a, b, lambda s: any(isinstance(e, MessageArrived) for _, e in s), flip=2e-4)
    arrived = [e for _, e in seen if isinstance(e, MessageArrived)]
    assert arrived[0].message == request
    assert a.datalink.retransmissions > 0  # the noise did hit, and was repaired


def test_stack_refuses_an_oversized_message_with_its_command() -> None:
    small = profile_from_mapping(
        {"transport": {"max_segment_bytes": 1024, "max_message_bytes": 2048}}
    )
    a, b = LinkStack(small), LinkStack(small)
    _connected(a, b)
    request = a.commands.make_request("store", 8, initiator="CT", receiver="B", data=b"x" * 5000)
    data = a.transport.params  # the sender's own limit would refuse it: lift it for this message
    a.transport.params = dataclasses.replace(data, max_message_bytes=1 << 20)
    a.send(request, 0.0)
    seen = _run(a, b, lambda s: any(isinstance(e, MessageUnreadable) for _, e in s))
    refused = next(e for _, e in seen if isinstance(e, MessageUnreadable))
    assert refused.too_large and refused.message is not None
    assert refused.message.command.message_id == 8


def test_stack_link_failure_is_reported_once_and_the_stack_goes_quiet() -> None:
    a, b = LinkStack(), LinkStack()
    _connected(a, b)
    a.send(a.commands.make_request("echo", 1, initiator="CT", receiver="B"), 0.0)
    now, events = 0.0, []
    for _ in range(200):  # b never hears a thing
        a.transmit(now)
        events += a.handle_timer(now)
        now += 0.06
    downs = [e for e in events if isinstance(e, LinkDown)]
    assert len(downs) == 1 and "retransmissions" in downs[0].reason
    assert any(isinstance(e, Aborted) and e.reason == 3 for e in events)
    assert a.down and a.next_deadline() is None
    with pytest.raises(LinkProtocolError, match="reset"):
        a.send(Message(Command(0x0030)), now)
    a.reset()
    assert not a.down and a.session.state is SessionState.IDLE


def test_the_layers_take_every_time_from_the_profile() -> None:
    profile = profile_from_mapping(
        {
            "physical": {"parity": "even"},
            "datalink": {"ack_timeout_ms": 20.0},
            "session": {"connect_timeout_s": 3.0},
        }
    )
    stack = LinkStack(profile)
    assert stack.datalink.params is profile.datalink and stack.datalink.params.ack_timeout == 0.020
    assert stack.datalink.parity == "even"
    assert stack.transport.params is profile.transport
    assert stack.session.params is profile.session
    assert stack.session.params.connect_timeout_s == 3.0
    assert stack.commands.params is profile.application
    stack.connect("CT", "B", 0.0)
    assert stack.next_deadline() == 3.0  # the CONNECT waits for its answer
    stack.transmit(0.0)
    assert stack.next_deadline() == 0.020  # and its frame for its ACK


def test_the_command_table_takes_the_application_section_itself() -> None:
    section = profile_from_mapping(
        {
            "application": {
                "commands": {"echo": [0x0031, 0x8031]},
                "statuses": {"busy": 0xA701},
                "data_set_none": 0x0111,
                "recognition_code": "SITE 1",
            }
        }
    ).application
    table = CommandTable(section)
    assert table.params is section
    assert table.request("echo") == 0x0031 and table.name(0x8031) == ("echo", True)
    assert table.status("busy") == 0xA701 and table.status_name(0xA701) == "busy"
    request = table.make_request("echo", 4, initiator="CT", receiver="B")
    assert request.command.data_set_type == 0x0111 and not table.has_data_set(request.command)
    assert request.command.recognition_code == "SITE 1"
    assert CommandTable().params is REFERENCE.application


def test_the_docs_diagrams_are_the_generated_ones() -> None:
    from bridge.cli.profile import doc_block

    text = (Path(__file__).parent.parent / "docs" / "link-profile.md").read_text()
    block = text.split("<!-- diagrams:start -->\n")[1].split("<!-- diagrams:end -->")[0]
    assert block == doc_block("diagrams"), (
        "run: acrnema-bridge profile diagrams --block diagrams, and paste into the docs"
    )

"""The dialect knobs of the data link, transport and session (issue 13, item 4).

Each knob (docs/link-profile.md, "Dialect knobs: data link, transport, session") is
checked three ways: its profile key validates and round-trips through ``to_toml``; the
layer it changes works on its own (frames whole, word by word, with trailing data,
damaged); and an image sent by the emulated scanner under the non-reference setting
arrives pixel-exact at a real DCMTK ``storescp`` through the bridge service over
``loop://``, both ends reading the same profile, alone and combined.
"""

from __future__ import annotations

import binascii
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import peers
import pytest
from crc_model import bitwise
from emulated import emulate_processes
from pydicom import dcmread

from bridge.acrnema.commands import encode_message
from bridge.acrnema.datalink import DataLink, DataLost, DataReceived
from bridge.acrnema.framing import CheckWord, Frame, FrameDamaged, FrameDecoder, FrameType, crc16
from bridge.acrnema.session import NoSession
from bridge.acrnema.stack import LinkStack, MessageLost, detect_orders, from_wire, to_wire
from bridge.errors import ProfileError
from bridge.forward.runner import RetryPolicy
from bridge.forward.scu import Destination
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Scanner
from bridge.ports.loop import loop_pair
from bridge.profile import REFERENCE, Profile, load_profile, profile_from_mapping, to_toml
from bridge.service import Bridge
from bridge.spool.store import Spool
from bridge.testing.phantom import PhantomSpec, phantom_images, phantom_pixels

ROWS = 128  # small slices: the knobs, not the throughput, are under test
CHECK = b"123456789"  # the check input of the CRC catalogues

# (name, poly, init, refin, refout, xorout, check value) from the CRC-16 catalogue
CATALOGUE = [
    ("CRC-16/CCITT-FALSE", 0x1021, 0xFFFF, False, False, 0x0000, 0x29B1),
    ("CRC-16/XMODEM", 0x1021, 0x0000, False, False, 0x0000, 0x31C3),
    ("CRC-16/KERMIT", 0x1021, 0x0000, True, True, 0x0000, 0x2189),
    ("CRC-16/X-25", 0x1021, 0xFFFF, True, True, 0xFFFF, 0x906E),
    ("CRC-16/ARC", 0x8005, 0x0000, True, True, 0x0000, 0xBB3D),
    ("CRC-16/MODBUS", 0x8005, 0xFFFF, True, True, 0x0000, 0x4B37),
    ("CRC-16/UMTS", 0x8005, 0x0000, False, False, 0x0000, 0xFEE8),
    ("CRC-16/DNP", 0x3D65, 0x0000, True, True, 0xFFFF, 0xEA82),
    ("CRC-16/GENIBUS", 0x1021, 0xFFFF, False, False, 0xFFFF, 0xD64E),
]


def profile(**sections: dict[str, Any]) -> Profile:
    """The reference with ``sections`` merged over it, as a TOML file would be."""
    return profile_from_mapping({"name": "knobs", **sections})


# ---------------------------------------------------------------------- profile keys


def test_the_reference_profile_keeps_its_link_behaviour() -> None:
    dl, se = REFERENCE.datalink, REFERENCE.session
    assert (dl.crc, dl.delimiting, dl.ack_mode, se.mode) == (
        "crc-16/ccitt-false",
        "start_word",
        "selective",
        "pdus",
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("datalink", "crc", "crc-32", "datalink.crc: one of"),
        ("datalink", "delimiting", "stuffing", "datalink.delimiting: one of"),
        ("datalink", "ack_mode", "cumulative", "datalink.ack_mode: one of"),
        ("datalink", "crc_poly", 0x10000, "datalink.crc_poly: 1 to 65535"),
        ("datalink", "crc_xorout", -1, "datalink.crc_xorout: 0 to 65535"),
        ("datalink", "crc_refin", 1, "datalink.crc_refin: expected true or false"),
        ("session", "mode", "lines_only", "session.mode: one of"),
        ("transport", "mode", "frames", "transport.mode: one of"),
    ],
)
def test_each_knob_is_validated_naming_its_key(
    section: str, key: str, value: object, message: str
) -> None:
    with pytest.raises(ProfileError, match=message.replace(".", r"\.")):
        profile(**{section: {key: value}})


def test_length_only_without_a_check_is_refused() -> None:
    with pytest.raises(ProfileError, match="length_only needs a check"):
        profile(datalink={"delimiting": "length_only", "crc": "none"})


def test_the_knobs_round_trip_through_toml(tmp_path: Path) -> None:
    custom = profile(
        datalink={
            "crc": "crc-16",
            "crc_poly": 0x8005,
            "crc_init": 0,
            "crc_refin": True,
            "crc_refout": True,
            "crc_xorout": 0xFFFF,
            "delimiting": "length_only",
            "ack_mode": "none",
        },
        transport={"mode": "none"},
        session={"mode": "none"},
    )
    text = to_toml(custom)
    assert "crc_refin = true" in text and "crc_poly = 0x8005" in text
    path = tmp_path / "p.toml"
    path.write_text(text)
    assert load_profile(path) == custom


# ---------------------------------------------------------------------- the check


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e[0] for e in CATALOGUE])
def test_generic_crc16_matches_the_catalogue(entry: tuple[Any, ...]) -> None:
    _, poly, init, refin, refout, xorout, expected = entry
    assert crc16(CHECK, poly, init, refin, refout, xorout) == expected


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e[0] for e in CATALOGUE])
def test_generic_crc16_of_whole_words_equals_the_bit_by_bit_model(entry: tuple[Any, ...]) -> None:
    _, poly, init, refin, refout, xorout, _ = entry
    data = np.random.default_rng(5).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert crc16(data, poly, init, refin, refout, xorout) == bitwise(
        data, poly, init, refin, refout, xorout
    )


def test_the_reference_check_is_crc_hqx() -> None:
    data = bytes(range(256)) * 4
    assert CheckWord()(data) == binascii.crc_hqx(data, 0xFFFF)
    assert CheckWord("crc-16", 0xFFFF)(data) == binascii.crc_hqx(data, 0xFFFF)


def test_the_generic_crc_is_fast_enough_for_a_slice() -> None:
    data = bytes(512 * 512 * 2)  # one 512 x 512 slice
    start = time.process_time()
    crc16(data, 0x8005, 0, True, True, 0)
    assert time.process_time() - start < 5.0  # generous: only catches a per-bit loop


# ---------------------------------------------------------------------- frames

FRAME_KNOBS = [
    {},
    {"crc": "crc-16", "crc_poly": 0x8005, "crc_init": 0, "crc_refin": True, "crc_refout": True},
    {"crc": "sum-16"},
    {"crc": "none"},
    {"delimiting": "length_only"},
    {"delimiting": "length_only", "crc": "sum-16"},
]


def _decoder_for(dl: Any) -> tuple[FrameDecoder, Any]:
    link = DataLink(dl, "odd")
    return link._decoder, link._frame


@pytest.mark.parametrize(
    "knobs", FRAME_KNOBS, ids=lambda k: ",".join(map(str, k.values())) or "ref"
)
def test_frames_decode_whole_word_by_word_and_with_trailing_data(knobs: dict[str, Any]) -> None:
    dl = profile(datalink=knobs).datalink
    payloads = [bytes(range(i, i + 2 * i)) for i in (1, 5, 0, 30)]
    decoder, frame = _decoder_for(dl)
    stream = np.concatenate([frame(FrameType.DATA, s, p) for s, p in enumerate(payloads)])
    whole = decoder.feed(stream)
    assert [f.payload for f in whole if isinstance(f, Frame)] == [
        p + b"\0" * (len(p) % 2) for p in payloads
    ]
    decoder, _ = _decoder_for(dl)
    one_by_one = [e for w in stream for e in decoder.feed([w])]
    assert one_by_one == whole
    decoder, _ = _decoder_for(dl)
    assert decoder.feed(np.concatenate([stream, stream[:2]])) == whole
    assert decoder.pending_words == 2


@pytest.mark.parametrize(
    "knobs", [k for k in FRAME_KNOBS if k.get("crc") != "none"], ids=lambda k: str(k) or "ref"
)
def test_a_corrupted_frame_is_damaged_and_the_next_one_still_arrives(
    knobs: dict[str, Any],
) -> None:
    dl = profile(datalink=knobs).datalink
    decoder, frame = _decoder_for(dl)
    first, second = frame(FrameType.DATA, 0, b"abcdefgh"), frame(FrameType.DATA, 1, b"ijkl")
    first = first.copy()
    first[-2] ^= 0x0101  # a payload word changed, parity recomputed by feed(): only the check
    events = decoder.feed(np.concatenate([first, second]))
    assert isinstance(events[0], FrameDamaged) and events[0].reason == "CRC mismatch"
    assert [e for e in events if isinstance(e, Frame)] == [Frame(FrameType.DATA, 1, b"ijkl")]
    assert len(events) == 2  # length_only reports the damage once, not once a word


def test_length_only_frames_carry_no_start_word() -> None:
    dl = profile(datalink={"delimiting": "length_only"}).datalink
    _, frame = _decoder_for(dl)
    words = frame(FrameType.DATA, 3, b"xy")
    assert list(words[:3]) == [1 << 12 | 3, 1, 0x7879] and len(words) == 4


def test_without_a_check_the_frame_has_no_trailer() -> None:
    _, frame = _decoder_for(profile(datalink={"crc": "none"}).datalink)
    assert len(frame(FrameType.DATA, 0, b"xy")) == 4  # start, header, count, payload


# ---------------------------------------------------------------------- acknowledgement


def _pair(dl: Any) -> tuple[DataLink, DataLink]:
    return DataLink(dl, "odd"), DataLink(dl, "odd")


def test_ack_mode_none_sends_everything_at_once_and_never_acknowledges() -> None:
    dl = profile(datalink={"ack_mode": "none", "max_payload_words": 4}).datalink
    sender, receiver = _pair(dl)
    data = bytes(range(100))
    sender.send(data)
    words = sender.transmit(0.0)
    assert sender.idle and sender.next_deadline() is None  # nothing kept, nothing awaited
    events = receiver.receive(words.words, words.parity, 0.0)
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == data
    assert len(receiver.transmit(0.0).words) == 0  # no ACK goes back


def test_ack_mode_none_reports_a_damaged_frame_and_resumes_at_the_next_unit() -> None:
    dl = profile(datalink={"ack_mode": "none", "max_payload_words": 4}).datalink
    sender, receiver = _pair(dl)
    sender.send(b"A" * 24)  # three frames
    sender.send(b"B" * 8)  # one frame, a unit of its own
    out = sender.transmit(0.0)
    words = out.words.copy()
    words[12] ^= 1  # a payload word of the second frame; its parity line now disagrees
    events = receiver.receive(words, out.parity, 0.0)
    lost = [e for e in events if isinstance(e, DataLost)]
    got = [e.data for e in events if isinstance(e, DataReceived)]
    assert len(lost) == 1 and "parity" in lost[0].reason
    assert got == [b"A" * 8, b"B" * 8]  # the rest of the damaged unit is dropped
    assert len(receiver.transmit(0.0).words) == 0  # and nothing is NAKed


def test_ack_mode_none_reports_a_missing_frame() -> None:
    dl = profile(datalink={"ack_mode": "none", "max_payload_words": 4}).datalink
    sender, receiver = _pair(dl)
    frames = []
    for piece in (b"1" * 8, b"2" * 8, b"3" * 8):
        sender.send(piece)
        frames.append(sender.transmit(0.0))
    events = receiver.receive(frames[0].words, None, 0.0)
    events += receiver.receive(frames[2].words, None, 0.0)  # frame 1 never came
    assert isinstance(events[1], DataLost) and "frames 1 to 1 missing" in events[1].reason
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"1" * 8, b"3" * 8]


def test_a_stack_with_ack_mode_none_reports_the_lost_message() -> None:
    custom = profile(datalink={"ack_mode": "none"}, session={"mode": "none"})
    scanner, bridge = LinkStack(custom), LinkStack(custom)
    table = scanner.commands
    first = table.make_request("echo", 1, initiator="CT", receiver="BRIDGE")
    second = table.make_request("echo", 2, initiator="CT", receiver="BRIDGE")
    scanner.send(first, 0.0)
    broken = scanner.transmit(0.0)
    scanner.send(second, 0.0)
    good = scanner.transmit(0.0)
    words = broken.words.copy()
    words[5] ^= 0x0100
    events = bridge.receive(words, broken.parity, 0.0)
    events += bridge.receive(good.words, good.parity, 0.0)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["MessageLost", "MessageArrived"], events
    assert isinstance(events[0], MessageLost)
    assert events[1].message.command.message_id == 2  # type: ignore[union-attr]


# ---------------------------------------------------------------------- transport


def _exchange(a: LinkStack, b: LinkStack) -> list[Any]:
    """Words back and forth until both ends are idle; what arrived at ``b``."""
    got: list[Any] = []
    for _ in range(1000):
        out = a.transmit(0.0)
        got += b.receive(out.words, out.parity, 0.0)
        back = b.transmit(0.0)
        a.receive(back.words, back.parity, 0.0)
        if a.idle and b.idle:
            return got
    raise AssertionError("the ends never went idle")


def test_without_packets_the_frames_mark_where_a_message_ends() -> None:
    custom = profile(transport={"mode": "none"}, datalink={"max_payload_words": 8})
    sender, receiver = LinkStack(custom), LinkStack(custom)
    for stack in (sender, receiver):
        stack.session.state = stack.session.state.OPEN
    big = sender.commands.make_request(
        "store", 3, initiator="CT", receiver="BRIDGE", data=bytes(range(200))
    )
    sender.send(big, 0.0)
    sender.send(sender.commands.make_request("echo", 4, initiator="CT", receiver="B"), 0.0)
    got = _exchange(sender, receiver)
    assert [e.message.command.message_id for e in got] == [3, 4]  # type: ignore[union-attr]
    assert got[0].message.data == bytes(range(200))  # type: ignore[union-attr]
    # no packet header: the frames' payload is the session PDU itself
    reference = LinkStack(REFERENCE)
    reference.session.state = reference.session.state.OPEN
    reference.send(big, 0.0)
    plain = LinkStack(custom)
    plain.session.state = plain.session.state.OPEN
    plain.send(big, 0.0)
    ref_words, plain_words = reference.transmit(0.0).words, plain.transmit(0.0).words
    data_pdu = custom.session.pdu_types["data"]
    assert ref_words[3:5].tolist() == [0, 0x8000]  # message ID 0, segment 0 (last)
    assert plain_words[3] == data_pdu  # the DATA PDU's type word, straight away


def test_without_packets_an_oversized_message_is_refused_and_the_next_arrives() -> None:
    custom = profile(
        transport={"mode": "none", "max_segment_bytes": 64, "max_message_bytes": 256},
        session={"mode": "none"},
    )
    sender, receiver = LinkStack(custom), LinkStack(custom)
    big = sender.commands.make_request("store", 5, initiator="CT", receiver="B", data=bytes(400))
    sender.transport.params = dataclasses.replace(custom.transport, max_message_bytes=4096)
    sender.send(big, 0.0)
    sender.send(sender.commands.make_request("echo", 6, initiator="CT", receiver="B"), 0.0)
    out = sender.transmit(0.0)
    events = receiver.receive(out.words, out.parity, 0.0)
    assert [type(e).__name__ for e in events] == ["MessageUnreadable", "MessageArrived"]
    assert events[0].too_large and events[0].message.command.message_id == 5  # type: ignore[union-attr]
    assert events[1].message.command.message_id == 6  # type: ignore[union-attr]


# ---------------------------------------------------------------------- session


def test_without_a_session_layer_a_message_is_the_transport_message() -> None:
    custom = profile(session={"mode": "none"})
    stack = LinkStack(custom)
    assert isinstance(stack.session, NoSession) and stack.session.is_open
    message = stack.commands.make_request("echo", 7, initiator="CT", receiver="BRIDGE")
    stack.send(message, 0.0)
    other = LinkStack(custom)
    out = stack.transmit(0.0)
    (arrived,) = other.receive(out.words, out.parity, 0.0)
    assert arrived.message.command.message_id == 7  # type: ignore[union-attr]
    # the transport message is the command group itself: no PDU type word before it
    reference = LinkStack(REFERENCE)
    reference.session.state = reference.session.state.OPEN
    reference.send(message, 0.0)
    assert len(reference.transmit(0.0).words) == len(out.words) + 1


# ---------------------------------------------------------------------- byte orders

ORDERS = [(t, b) for t in ("big", "little") for b in ("big", "little")]


def _image_message(binary: str) -> Any:
    table = LinkStack(REFERENCE).commands
    (image,) = phantom_images(1, rows=16, byte_order=binary)
    return table.make_request("store", 9, initiator="CT", receiver="BRIDGE", data=image.data)


@pytest.mark.parametrize(("text", "binary"), ORDERS)
def test_wire_encoding_round_trips_and_detects_its_orders(text: str, binary: str) -> None:
    canon = encode_message(_image_message(binary), binary)
    wire = to_wire(canon, text, binary, binary)
    assert from_wire(wire, text, binary, binary) == canon
    assert detect_orders(wire) == (text, binary)
    # the recognition code's characters in text order; a 32-bit length in binary order
    code = b"ACR-NEMA" if text == "big" else b"CA-RENAM"
    assert code in wire
    head = wire[:12]  # (0000,0000) UL: tag words, length words, value words
    assert head[4:8] == (b"\0\0\0\x04" if binary == "big" else b"\0\x04\0\0")


@pytest.mark.parametrize("order", ["big", "little"])
def test_equal_orders_element_by_element_equal_the_whole_message_swap(order: str) -> None:
    canon = encode_message(_image_message(order), order)
    whole = canon if order == "big" else np.frombuffer(canon, "<u2").astype(">u2").tobytes()
    assert to_wire(canon, order, order, order) == whole


def test_mixed_orders_swap_only_the_text() -> None:
    canon = encode_message(_image_message("big"), "big")
    wire = to_wire(canon, "little", "big", "big")
    differs = np.flatnonzero(np.frombuffer(wire, np.uint8) != np.frombuffer(canon, np.uint8))
    assert len(differs) > 0
    pixels = canon.rindex(b"\x7f\xe0\x00\x10")  # (7FE0,0010) Pixel Data onwards: words
    assert differs.max() < pixels


def test_a_stack_with_auto_orders_reads_each_peer_and_answers_in_its_orders() -> None:
    auto = profile(physical={"text_byte_order": "auto", "binary_byte_order": "auto"})
    for text, binary in ORDERS:
        sender = profile(
            physical={"text_byte_order": text, "binary_byte_order": binary},
            session={"mode": "none"},
        )
        scanner = LinkStack(sender)
        bridge = LinkStack(dataclasses.replace(auto, session=sender.session))
        scanner.send(_image_message(binary), 0.0)
        out = scanner.transmit(0.0)
        (arrived,) = bridge.receive(out.words, out.parity, 0.0)
        assert arrived.message.command.message_id == 9  # type: ignore[union-attr]
        reply = bridge.commands.make_response(arrived.message.command, 0)  # type: ignore[union-attr]
        bridge.send(reply, 0.0)
        back = bridge.transmit(0.0)
        events = scanner.receive(back.words, back.parity, 0.0)
        (answer,) = [e for e in events if type(e).__name__ == "MessageArrived"]
        assert answer.message.command.responded_to == 9  # type: ignore[union-attr]


# ---------------------------------------------------------------------- end to end

ROUND_TRIPS = {
    "crc-arc": {
        "datalink": {
            "crc": "crc-16",
            "crc_poly": 0x8005,
            "crc_init": 0,
            "crc_refin": True,
            "crc_refout": True,
        }
    },
    "sum-16": {"datalink": {"crc": "sum-16"}},
    "no-check": {"datalink": {"crc": "none"}},
    "length-only": {"datalink": {"delimiting": "length_only"}},
    "ack-none": {"datalink": {"ack_mode": "none"}},
    "no-session": {"session": {"mode": "none"}},
    "no-packets": {"transport": {"mode": "none"}},
    "no-packets-no-ack": {"transport": {"mode": "none"}, "datalink": {"ack_mode": "none"}},
    "combined": {
        "transport": {"mode": "none"},
        "datalink": {
            "delimiting": "length_only",
            "crc": "crc-16",
            "crc_poly": 0x3D65,
            "crc_init": 0,
            "crc_refin": True,
            "crc_refout": True,
            "crc_xorout": 0xFFFF,
            "ack_mode": "none",
        },
        "session": {"mode": "none"},
    },
    "text-little-binary-big": {
        "physical": {"text_byte_order": "little", "binary_byte_order": "big"},
    },
    "text-big-binary-little": {
        "physical": {"text_byte_order": "big", "binary_byte_order": "little"},
        "datalink": {"crc": "sum-16"},
    },
    "combined-little": {
        "physical": {"text_byte_order": "little", "binary_byte_order": "little"},
        "datalink": {"crc": "sum-16", "delimiting": "length_only"},
        "session": {"mode": "none"},
    },
}


@pytest.mark.peers
@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_an_image_arrives_pixel_exact_under_the_knobs(
    name: str, tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    custom = dataclasses.replace(profile(**ROUND_TRIPS[name]), name=name)
    _round_trip(custom, custom, tmp_path, storescp)


@pytest.mark.peers
@pytest.mark.parametrize(("text", "binary"), ORDERS)
def test_a_bridge_with_auto_byte_orders_takes_images_in_any_orders(
    text: str, binary: str, tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    scanner = profile(physical={"text_byte_order": text, "binary_byte_order": binary})
    bridge = profile(physical={"text_byte_order": "auto", "binary_byte_order": "auto"})
    _round_trip(scanner, bridge, tmp_path, storescp)


def _round_trip(
    custom: Profile, bridge_profile: Profile, tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Two phantom slices from the emulated scanner (``custom``) through the bridge
    service (``bridge_profile``) to storescp; each must arrive pixel-exact."""
    count = 2
    order = custom.physical.binary_byte_order
    images = phantom_images(count, rows=ROWS, byte_order=order)
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool")
    dest = Destination(storescp.ae_title, storescp.host, storescp.port)
    bridge = Bridge(
        bridge_port,
        spool,
        [dest],
        policy=RetryPolicy(base=0.1, cap=0.5),
        profile=bridge_profile,
    )
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="bridge-knobs")
    thread.start()
    try:
        endpoint = Endpoint(scanner_port, custom)
        scanner = Scanner(endpoint, attempts=1, response_timeout=30.0)
        results = scanner.send(images)
        scanner.close(timeout=2.0)
        assert [r.ok for r in results] == [True] * count, [r.errors for r in results]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(storescp.received()) < count:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
        scanner_port.close()
        bridge_port.close()
        spool.close()
    assert not thread.is_alive()
    received = storescp.received()
    assert len(received) == count
    for path in received.values():
        ds = dcmread(path)
        spec = PhantomSpec(
            rows=ROWS, columns=ROWS, slice_index=int(ds.InstanceNumber) - 1, slices=count
        )
        assert np.array_equal(ds.pixel_array, phantom_pixels(spec))
        assert ds.Modality == "CT"  # a text value read in the right text order ("TC" not)


def test_the_emulate_command_sends_its_phantom_in_the_reference_order_on_auto(
    tmp_path: Path,
) -> None:
    """A sender with ``auto`` has nothing to detect from: ``emulate`` encodes its images
    big-endian, as the stack then sends them, and a receiver on auto stores them whole."""
    auto = tmp_path / "auto.toml"
    auto.write_text('[physical]\ntext_byte_order = "auto"\nbinary_byte_order = "auto"\n')
    out = tmp_path / "received"
    scanner, code, err = emulate_processes(out, images=1, size=64, profile=auto)
    assert scanner.returncode == 0, scanner.stderr
    assert code == 0, err
    (stored,) = sorted(out.glob("IMG*.acr"))
    (sent,) = phantom_images(1, rows=64, byte_order="big")
    assert stored.read_bytes() == sent.data

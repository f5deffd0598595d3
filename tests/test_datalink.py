"""The data link (bridge.acrnema.datalink): two ends back to back over a faulty wire."""

from __future__ import annotations

import binascii
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.acrnema.datalink import (
    FRAME_TABLE,
    LINK_TABLE,
    DataLink,
    DataReceived,
    FrameState,
    LinkFailed,
    LinkInput,
    LinkProtocolError,
    LinkState,
    state_diagram,
)
from bridge.acrnema.framing import Frame, FrameDecoder, FrameType, encode_frame
from bridge.acrnema.physical import parity_bits
from bridge.profile import DatalinkSection

VECTORS = Path(__file__).parent / "vectors" / "datalink" / "frames.json"


class Wire:
    """Moves words between two ends, flipping bits and losing words at given rates."""

    def __init__(self, flip: float = 0.0, drop: float = 0.0, seed: int = 0) -> None:
        self.flip, self.drop = flip, drop
        self.rng = np.random.default_rng(seed)

    def carry(self, words: np.ndarray, parity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        words, parity = words.copy(), parity.copy()
        if self.flip and len(words):
            hits = self.rng.random(len(words)) < self.flip
            bits = self.rng.integers(0, 17, len(words))
            for i in np.flatnonzero(hits):
                if bits[i] == 16:
                    parity[i] ^= 1
                else:
                    words[i] ^= np.uint16(1 << int(bits[i]))
        if self.drop and len(words):
            keep = self.rng.random(len(words)) >= self.drop
            words, parity = words[keep], parity[keep]
        return words, parity


def run(
    message: bytes, wire: Wire, params: DatalinkSection | None = None, limit: float = 60.0
) -> tuple[bytes, list[object], DataLink]:
    """Send ``message`` from a to b on a fake clock; return what b received."""
    params = params or DatalinkSection()
    a, b = DataLink(params), DataLink(params)
    a.send(message)
    now, received, events = 0.0, b"", []
    while now < limit and not (a.idle and b.idle):
        for sender, receiver in ((a, b), (b, a)):
            words, parity = sender.transmit(now)
            got = receiver.receive(*wire.carry(words, parity), now)
            events += got
            received += b"".join(
                e.data for e in got if isinstance(e, DataReceived) and receiver is b
            )
        # the fake clock ticks, and stops at every deadline, as an event loop would
        deadlines = [d for d in (a.next_deadline(), b.next_deadline()) if d is not None]
        now = min([now + 0.005, *deadlines])
        for end in (a, b):
            events += end.handle_timer(now)
        if any(isinstance(e, LinkFailed) for e in events):
            break
    return received, events, a


def test_clean_wire_delivers_a_multi_frame_message_once() -> None:
    message = bytes(range(256)) * 40  # 10,240 bytes: 20 frames of 256 words
    received, events, sender = run(message, Wire())
    assert received == message
    assert sender.retransmissions == 0 and not any(isinstance(e, LinkFailed) for e in events)


@pytest.mark.parametrize(("flip", "drop"), [(1e-3, 0.0), (0.0, 1e-3), (2e-3, 1e-3)])
def test_noisy_wire_still_delivers_in_order_exactly_once(flip: float, drop: float) -> None:
    message = np.random.default_rng(4).bytes(64_000)
    received, events, sender = run(message, Wire(flip, drop, seed=7))
    assert received == message
    assert sender.retransmissions > 0  # the noise really hit
    assert not any(isinstance(e, LinkFailed) for e in events)


def test_broken_wire_fails_after_the_retry_limit_at_the_deadlines() -> None:
    params = DatalinkSection(ack_timeout_ms=50.0, retry_limit=3)
    a = DataLink(params)
    a.send(b"hello")
    a.transmit(0.0)
    assert a.next_deadline() == pytest.approx(0.05)
    assert a.handle_timer(0.04) == []
    events = []
    now = 0.05
    for _ in range(4):
        events += a.handle_timer(now)
        a.transmit(now)
        now += 0.06
    assert events == [LinkFailed(0, "no ACK after 3 retransmissions")]
    assert a.retransmissions == 3
    with pytest.raises(LinkProtocolError):
        a.send(b"more")
    # the last frames stay on record for the error report: headers, no payload
    assert [(r.direction, r.kind, r.sequence, r.note) for r in a.history] == [
        ("out", "DATA", 0, ""),
        ("out", "DATA", 0, "resend 1"),
        ("out", "DATA", 0, "resend 2"),
        ("out", "DATA", 0, "resend 3"),
    ]


def test_a_dead_wire_back_to_back_fails_in_retry_limit_plus_one_timeouts() -> None:
    params = DatalinkSection(ack_timeout_ms=50.0, retry_limit=4)
    received, events, sender = run(b"lost" * 100, Wire(drop=1.0), params)
    assert received == b""
    assert [e for e in events if isinstance(e, LinkFailed)] == [
        LinkFailed(0, "no ACK after 4 retransmissions")
    ]
    assert sender.failed and sender.retransmissions == 4
    sent = [r.at for r in sender.history if r.kind == "DATA"]
    assert np.diff(sent) == pytest.approx([0.05] * 4)  # one resend per timeout, no sooner


def test_window_bounds_frames_in_flight() -> None:
    a = DataLink(DatalinkSection(max_payload_words=4, window=3))
    a.send(bytes(80))  # 10 frames of 4 words
    words, _ = a.transmit(0.0)
    assert len(words) == 3 * (1 + 2 + 4 + 1)  # start, header 2, payload 4, CRC: 3 frames


@settings(max_examples=30, deadline=None)
@given(
    message=st.binary(min_size=0, max_size=3000).map(lambda b: b + b"\x00" * (len(b) % 2)),
    seed=st.integers(0, 1000),
)
def test_any_message_round_trips_over_a_noisy_wire(message: bytes, seed: int) -> None:
    params = DatalinkSection(max_payload_words=64, window=4)
    received, _, _ = run(message, Wire(flip=5e-3, drop=2e-3, seed=seed), params)
    assert received == message


def test_sequence_numbers_wrap_safely_when_one_frame_is_lost_again_and_again() -> None:
    # 4-bit sequence numbers wrap every 16 frames; a lossy wire keeps some frames
    # unacknowledged while later ones are acknowledged: numbers must never be reused
    # while an older frame with the same number is still in flight.
    params = DatalinkSection(max_payload_words=4, sequence_bits=4, window=7)
    message = np.random.default_rng(9).bytes(8 * 600)  # 600 frames, 37 wraps
    received, _, sender = run(message, Wire(flip=2e-2, drop=1e-2, seed=11), params)
    assert received == message
    assert sender.retransmissions > 0


# ---------------------------------------------------------------- golden vectors


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit: polynomial 0x1021, init 0xFFFF, no reflection."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1 ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def test_crc_hqx_with_init_ffff_is_ccitt_false() -> None:
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1 == crc16_ccitt_false(b"123456789")


def load_vectors() -> list[dict[str, object]]:
    frames: list[dict[str, object]] = json.loads(VECTORS.read_text())["frames"]
    return frames


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda v: str(v["name"]))
def test_golden_frames(vector: dict[str, object]) -> None:
    words = np.array([int(w, 16) for w in str(vector["words"]).split()], dtype=np.uint16)
    line = np.array([int(c) for c in str(vector["parity_odd"])], dtype=np.uint8)
    kind, sequence = FrameType[str(vector["type"])], int(str(vector["sequence"]))
    payload = bytes.fromhex(str(vector["payload"]))
    assert encode_frame(kind, sequence, payload).tolist() == words.tolist()
    assert parity_bits(words, "odd").tolist() == line.tolist()
    covered = words[1:-1].astype(">u2").tobytes()  # header and payload, D15-D8 first
    assert crc16_ccitt_false(covered) == int(words[-1])
    padded = payload + b"\x00" * (len(payload) % 2)
    assert FrameDecoder().feed(words, line) == [Frame(kind, sequence, padded)]


# ---------------------------------------------------------------- one end, by hand


def data_frames(count: int, size: int = 8) -> tuple[np.ndarray, list[bytes]]:
    payloads = [bytes([n]) * size for n in range(count)]
    words = np.concatenate([encode_frame(FrameType.DATA, n, p) for n, p in enumerate(payloads)])
    return words, payloads


def delivered(events: list[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, DataReceived)]


def test_receiver_takes_words_whole_one_by_one_and_amid_garbage() -> None:
    words, payloads = data_frames(5)
    whole = DataLink()
    assert delivered(whole.receive(words, None, 0.0)) == payloads
    single = DataLink()
    got: list[object] = []
    for word in words:
        got += single.receive(word[None], parity_bits(word[None]), 0.0)
    assert delivered(got) == payloads
    garbage = np.array([0x0000, 0xA5C3, 0x1FFF, 0xA5C3, 0x1001], dtype=np.uint16)
    noisy = DataLink()
    stream = np.concatenate([garbage, words, garbage])
    assert delivered(noisy.receive(stream, None, 0.0)) == payloads
    # two false starts before the frames, one after; the last 0xA5C3 0x1001 waits for more
    assert [r.kind for r in noisy.history] == ["DAMAGED"] * 2 + ["DATA"] * 5 + ["DAMAGED"]
    acks, _ = noisy.transmit(0.0)
    decoded = FrameDecoder().feed(acks)
    assert [(f.type, f.sequence) for f in decoded if isinstance(f, Frame)] == [
        (FrameType.ACK, n) for n in range(5)
    ]


def test_a_large_read_is_decoded_whole() -> None:
    rng = np.random.default_rng(5)
    payloads = [rng.bytes(512) for _ in range(3000)]  # sequence numbers wrap, in order
    words = np.concatenate(
        [encode_frame(FrameType.DATA, n % 256, p) for n, p in enumerate(payloads)]
    )
    b = DataLink(DatalinkSection(window=127))
    got: list[bytes] = []
    for start in range(0, 3000, 100):  # 100 frames a read, as a fast port might deliver
        frame_len = len(words) // 3000
        chunk = words[start * frame_len : (start + 100) * frame_len]
        got += delivered(b.receive(chunk, None, 0.0))
        b.transmit(0.0)
    assert got == payloads


def test_a_parity_line_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(LinkProtocolError, match="2 parity bits for 3 words"):
        DataLink().receive(np.zeros(3, dtype=np.uint16), np.zeros(2, dtype=np.uint8), 0.0)


def test_duplicates_are_acked_again_but_delivered_once() -> None:
    words, payloads = data_frames(3)
    b = DataLink()
    assert delivered(b.receive(words, None, 0.0)) == payloads
    b.transmit(0.0)
    assert b.receive(words, None, 0.1) == []  # every frame again: ACKs lost
    acks = FrameDecoder().feed(b.transmit(0.1).words)
    assert [f.sequence for f in acks if isinstance(f, Frame)] == [0, 1, 2]


def test_frames_ahead_of_a_gap_wait_for_it() -> None:
    words, payloads = data_frames(3)
    frame_len = len(words) // 3
    b = DataLink()
    assert b.receive(words[frame_len:], None, 0.0) == []  # frame 0 lost
    assert delivered(b.receive(words[:frame_len], None, 0.1)) == payloads


def test_a_nak_resends_only_the_damaged_frame() -> None:
    a = DataLink(DatalinkSection(max_payload_words=4, window=4))
    a.send(bytes(range(32)))  # 4 frames
    first = a.transmit(0.0)
    assert len(FrameDecoder(max_payload_words=4).feed(first.words)) == 4
    assert a.receive(encode_frame(FrameType.NAK, 2), None, 0.01) == []
    again = FrameDecoder(max_payload_words=4).feed(a.transmit(0.01).words)
    assert [(f.type, f.sequence) for f in again if isinstance(f, Frame)] == [(FrameType.DATA, 2)]
    assert a.retransmissions == 1
    # a second NAK before the resend went out is not another retry
    a.receive(encode_frame(FrameType.NAK, 1), None, 0.02)
    a.receive(encode_frame(FrameType.NAK, 1), None, 0.02)
    assert a.retransmissions == 2
    # ACKs for numbers outside the window are ignored
    assert a.receive(encode_frame(FrameType.ACK, 99), None, 0.03) == []


def test_timer_deadlines_move_with_each_resend() -> None:
    a = DataLink(DatalinkSection(ack_timeout_ms=50.0, retry_limit=2))
    assert a.next_deadline() is None
    a.send(b"hi")
    a.transmit(1.0)
    assert a.next_deadline() == pytest.approx(1.05)
    assert a.handle_timer(1.049) == [] and a.retransmissions == 0
    assert a.handle_timer(a.next_deadline() or 0.0) == [] and a.retransmissions == 1
    assert a.next_deadline() is None  # waiting for transmit(), not for the wire
    a.transmit(1.07)
    assert a.next_deadline() == pytest.approx(1.12)
    a.receive(encode_frame(FrameType.ACK, 0), None, 1.08)
    assert a.next_deadline() is None and a.idle


# ---------------------------------------------------------------- state tables


def test_state_tables_are_closed_and_drawn() -> None:
    for (state, _), (_, target) in LINK_TABLE.items():
        assert isinstance(state, LinkState) and isinstance(target, LinkState)
    for (state, _), (_, target) in FRAME_TABLE.items():
        assert isinstance(state, FrameState) and isinstance(target, FrameState)
    diagram = state_diagram(LINK_TABLE)
    assert diagram.startswith("stateDiagram-v2")
    assert "OPEN --> FAILED: give up / report LinkFailed" in diagram
    assert len(state_diagram(FRAME_TABLE).splitlines()) == len(FRAME_TABLE) + 1


def test_a_pair_not_in_the_table_is_a_local_protocol_error() -> None:
    a = DataLink(DatalinkSection(ack_timeout_ms=10.0, retry_limit=0))
    a.send(b"x")
    a.transmit(0.0)
    assert a.handle_timer(0.01) == [LinkFailed(0, "no ACK after 0 retransmissions")]
    assert a.state is LinkState.FAILED and a.next_deadline() is None
    assert a.transmit(0.02).words.size == 0  # (FAILED, transmit) is in the table
    for call in (lambda: a.send(b"y"), lambda: a.handle_timer(1.0)):
        with pytest.raises(LinkProtocolError) as info:
            call()
        assert info.value.layer == "datalink" and info.value.remote is False
        assert str(info.value).startswith("datalink (local): ")
    assert (LinkState.FAILED, LinkInput.WORDS) not in LINK_TABLE
    with pytest.raises(LinkProtocolError, match="words while the link is failed"):
        a.receive(np.zeros(1, dtype=np.uint16), None, 1.0)


@pytest.mark.parametrize(
    "kwargs", [{"window": 0}, {"window": 128}, {"max_payload_words": 0}, {"ack_timeout_ms": 0.0}]
)
def test_params_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DataLink(DatalinkSection(**kwargs))  # type: ignore[arg-type]


# ---------------------------------------------------------------- throughput


def throughput(flip: float, size: int = 4_000_000, **params: int) -> tuple[float, int]:
    """Payload MB/s back to back on one core (both ends), fake clock; and resends."""
    p = DatalinkSection(**params)  # type: ignore[arg-type]
    a, b = DataLink(p), DataLink(p)
    wire = Wire(flip=flip, seed=3)
    message = np.random.default_rng(1).bytes(size)
    a.send(message)
    now, got, start = 0.0, 0, time.perf_counter()
    while not (a.idle and b.idle):
        words = a.transmit(now)
        for event in b.receive(*(wire.carry(*words) if flip else words), now):
            got += len(event.data) if isinstance(event, DataReceived) else 0
        words = b.transmit(now)
        a.receive(*(wire.carry(*words) if flip else words), now)
        now += 0.001
        a.handle_timer(now)
        b.handle_timer(now)
    assert got == size
    return size / (time.perf_counter() - start) / 1e6, a.retransmissions


def test_throughput_smoke() -> None:
    rate, resends = throughput(0.0, size=200_000)
    assert rate > 0 and resends == 0


if __name__ == "__main__":  # python tests/test_datalink.py: the figures for the report
    for flip in (0.0, 1e-5, 1e-4):
        for window, words in ((8, 256), (32, 256), (32, 1024)):
            rate, resends = throughput(flip, window=window, max_payload_words=words)
            line = f"flip {flip:g}/word  window {window:2}  frame {words:4} words: "
            sys.stdout.write(
                f"{line}{rate:5.1f} MB/s  ({rate / 8:.2f} x 8 MB/s), {resends} resends\n"
            )

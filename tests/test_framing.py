"""Physical words with parity, and data link framing (bridge.acrnema.physical/framing)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.acrnema.framing import Frame, FrameDamaged, FrameDecoder, FrameType, encode_frame
from bridge.acrnema.physical import bad_parity, bytes_from_words, parity_bits, words_from_bytes
from bridge.testing.feeding import check_feeding

RNG = np.random.default_rng(8)


@pytest.mark.parametrize("order", ["big", "little"])
def test_words_round_trip_and_byte_order(order: str) -> None:
    words = words_from_bytes(b"ACR-NEMA", order)
    first = 0x4143 if order == "big" else 0x4341
    assert int(words[0]) == first
    assert bytes_from_words(words, order) == b"ACR-NEMA"


def test_parity_counts_the_17_bits() -> None:
    words = np.array([0x0000, 0x0001, 0x8001, 0xFFFF], dtype=np.uint16)
    assert parity_bits(words, "odd").tolist() == [1, 0, 1, 1]
    assert parity_bits(words, "even").tolist() == [0, 1, 0, 0]
    line = parity_bits(words, "odd")
    line[2] ^= 1
    assert bad_parity(words, line, "odd").tolist() == [2]
    assert bad_parity(words, line, "none").tolist() == []


def frames(*payloads: bytes) -> np.ndarray:
    return np.concatenate([encode_frame(FrameType.DATA, n, p) for n, p in enumerate(payloads)])


def test_frames_decode_whole_word_by_word_and_amid_garbage() -> None:
    payloads = [b"first frame", b"", bytes(range(200)), b"x"]
    stream = frames(*payloads)
    expected = [
        Frame(FrameType.DATA, n, p + b"\x00" * (len(p) % 2)) for n, p in enumerate(payloads)
    ]
    check_feeding(
        FrameDecoder,
        FrameDecoder.feed,
        stream,
        expected=expected,
        trailing=frames(b"next")[:3],  # the start of the next frame: held back
        held=lambda decoder: decoder.pending_words > 0,
    )
    decoder = FrameDecoder()
    events = [e for w in stream for e in decoder.feed([w])]
    assert events == expected and decoder.pending_words == 0
    garbage = np.array([0x1234, 0xA5C3, 0xF000], dtype=np.uint16)  # a false start, too
    events = FrameDecoder().feed(np.concatenate([garbage, stream, garbage[:1]]))
    assert [e for e in events if isinstance(e, Frame)] == expected


def test_damage_is_reported_and_the_next_frame_still_arrives() -> None:
    first, second = (
        encode_frame(FrameType.DATA, 1, b"damaged"),
        encode_frame(FrameType.DATA, 2, b"ok"),
    )
    flipped = first.copy()
    flipped[4] ^= 0x0010  # a payload bit, with parity recomputed: only the CRC can tell
    events = FrameDecoder().feed(np.concatenate([flipped, second]))
    assert events[0] == FrameDamaged("CRC mismatch", 1, FrameType.DATA)
    assert events[-1] == Frame(FrameType.DATA, 2, b"ok")
    stream = np.concatenate([first, second])
    line = parity_bits(stream, "odd")
    line[3] ^= 1  # a parity error on the wire
    events = FrameDecoder().feed(stream, line)
    assert events[0] == FrameDamaged("parity error in word 3", 1, FrameType.DATA)
    assert events[-1] == Frame(FrameType.DATA, 2, b"ok")


def test_lost_words_do_not_lose_the_following_frames() -> None:
    stream = frames(b"one", b"two", b"three")
    cut = np.delete(stream, [5])  # a word of the first frame is lost
    events = FrameDecoder().feed(cut)
    good = [e for e in events if isinstance(e, Frame)]
    assert [g.payload for g in good][-2:] == [b"two\x00", b"three\x00"]


def test_oversized_length_is_an_unreadable_header() -> None:
    frame = encode_frame(FrameType.ACK, 7)
    frame[2] = 9999
    events = FrameDecoder(max_payload_words=256).feed(frame)
    assert events == [FrameDamaged("unreadable frame header")]


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(
        st.binary(max_size=512).map(lambda b: b + b"\x00" * (len(b) % 2)), max_size=6
    ),
    split=st.integers(1, 50),
)
def test_any_payloads_round_trip_in_any_chunks(payloads: list[bytes], split: int) -> None:
    stream = frames(*payloads) if payloads else np.zeros(0, dtype=np.uint16)
    decoder = FrameDecoder()
    events = []
    for start in range(0, len(stream), split):
        events += decoder.feed(stream[start : start + split])
    assert events == [Frame(FrameType.DATA, n, p) for n, p in enumerate(payloads)]


@settings(max_examples=100, deadline=None)
@given(flips=st.lists(st.integers(0, 10_000), max_size=5), seed=st.integers(0, 2**16))
def test_random_bit_flips_never_deliver_a_corrupt_frame(flips: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    payloads = [rng.bytes(64) for _ in range(8)]
    stream = frames(*payloads)
    line = parity_bits(stream, "odd")
    for flip in flips:
        stream[flip % len(stream)] ^= 1 << (flip % 16)
    for event in FrameDecoder().feed(stream, line):
        if isinstance(event, Frame):
            assert event.payload == payloads[event.sequence]

"""The physical word model (bridge.acrnema.physical): byte order and parity, vectorised."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.acrnema.physical import (
    WordBuffer,
    bad_parity,
    bytes_from_words,
    parity_bits,
    words_from_bytes,
)


def reference_parity(word: int, parity: str) -> int:
    """One word's parity line, counted bit by bit (the slow, obvious way)."""
    ones = bin(word).count("1") & 1
    return ones ^ 1 if parity == "odd" else ones


@pytest.mark.parametrize(
    ("order", "first_word"), [("big", 0xA5C3), ("little", 0xC3A5)], ids=["big", "little"]
)
def test_byte_order_puts_the_first_byte_on_d15_d8_or_d7_d0(order: str, first_word: int) -> None:
    words = words_from_bytes(b"\xa5\xc3\x01\x02", order)
    assert words.dtype == np.uint16
    assert int(words[0]) == first_word
    assert int(words[1]) == (0x0102 if order == "big" else 0x0201)


@pytest.mark.parametrize("order", ["big", "little"])
def test_odd_length_is_padded_with_a_zero_byte(order: str) -> None:
    words = words_from_bytes(bytearray(b"abc"), order)
    assert len(words) == 2
    assert bytes_from_words(words, order) == b"abc\x00"


def test_memoryview_input_and_a_non_native_view() -> None:
    data = memoryview(b"\x00\x01\x00\x02\x00\x03")[2:]
    assert words_from_bytes(data).tolist() == [2, 3]


@pytest.mark.parametrize("order", ["bigg", "BIG", ""])
def test_unknown_byte_order_is_refused(order: str) -> None:
    with pytest.raises(ValueError, match="byte order"):
        words_from_bytes(b"ab", order)
    with pytest.raises(ValueError, match="byte order"):
        bytes_from_words(np.zeros(1, dtype=np.uint16), order)


def test_parity_over_a_whole_buffer_matches_bit_counting() -> None:
    words = np.random.default_rng(1).integers(0, 1 << 16, 5000, dtype=np.uint16)
    for parity in ("odd", "even"):
        expected = [reference_parity(int(w), parity) for w in words]
        assert parity_bits(words, parity).tolist() == expected
    assert parity_bits(words, "none").tolist() == [0] * len(words)
    # odd parity: word plus parity line always hold an odd number of ones
    line = parity_bits(words, "odd")
    ones = np.unpackbits(words.view(np.uint8)).reshape(-1, 16).sum(axis=1) + line
    assert np.all(ones % 2 == 1)


def test_an_idle_bus_is_never_a_valid_word_under_odd_parity() -> None:
    idle = np.zeros(3, dtype=np.uint16)
    assert bad_parity(idle, np.zeros(3, dtype=np.uint8), "odd").tolist() == [0, 1, 2]
    assert bad_parity(idle, np.zeros(3, dtype=np.uint8), "even").tolist() == []


def test_bad_parity_names_every_flipped_word_and_bit() -> None:
    rng = np.random.default_rng(2)
    words = rng.integers(0, 1 << 16, 1000, dtype=np.uint16)
    line = parity_bits(words, "odd")
    damaged, flipped = words.copy(), [3, 500, 999]
    damaged[flipped[:2]] ^= np.uint16(1 << 7)  # a data bit
    line[flipped[2]] ^= 1  # the parity line itself
    assert bad_parity(damaged, line, "odd").tolist() == flipped
    assert bad_parity(damaged, line, "none").tolist() == []


def test_unknown_parity_is_refused() -> None:
    with pytest.raises(ValueError, match="parity"):
        parity_bits(np.zeros(1, dtype=np.uint16), "mark")


def test_word_buffer_unpacks_like_a_pair() -> None:
    words = words_from_bytes(b"ok")
    buffer = WordBuffer(words, parity_bits(words))
    got_words, got_parity = buffer
    assert got_words is buffer.words and got_parity is buffer.parity


@given(data=st.binary(max_size=400), order=st.sampled_from(["big", "little"]))
def test_bytes_round_trip_through_words(data: bytes, order: str) -> None:
    padded = data + b"\x00" * (len(data) % 2)
    words = words_from_bytes(data, order)
    assert bytes_from_words(words, order) == padded
    assert bad_parity(words, parity_bits(words, "odd"), "odd").size == 0

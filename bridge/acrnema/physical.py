"""Physical layer of the reference link profile: 16-bit words with a parity bit each.

What travels on the 50-pin link is a sequence of 16-bit words on D0-D15 plus one parity
line (docs/link-profile.md, section 1: the width is inferred, the parity line and its
sense are chosen). This module converts between bytes and words and computes and checks
parity, over whole buffers with numpy: nothing here is done per word in Python.

Byte order: ``"big"`` puts the first byte of each pair on D15-D8 (the reference
profile's choice for text), ``"little"`` on D7-D0. Parity: ``"odd"`` (the reference
profile: the 17 bits of a word and its parity line hold an odd number of ones, so an
all-zeros bus is never a valid word; an undriven bus read as all ones by fail-safe
receivers would be, see docs/hardware.md section 3), ``"even"`` or ``"none"``. Both
come from the profile's :class:`~bridge.profile.PhysicalSection` (``parity``,
``text_byte_order``, ``binary_byte_order``), which the callers pass in.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "BYTE_ORDERS",
    "PARITIES",
    "ParityLine",
    "WordBuffer",
    "Words",
    "as_buffer",
    "bad_parity",
    "bytes_from_words",
    "parity_bits",
    "words_from_bytes",
]

Words = npt.NDArray[np.uint16]
ParityLine = npt.NDArray[np.uint8]

BYTE_ORDERS = ("big", "little")
PARITIES = ("odd", "even", "none")

# the parity line of every word value (64 KiB each): one table look-up a word
_EVEN: ParityLine = np.zeros(1 << 16, dtype=np.uint8)
for _bit in range(16):
    _EVEN ^= ((np.arange(1 << 16) >> _bit) & 1).astype(np.uint8)
_ODD: ParityLine = _EVEN ^ np.uint8(1)
_TABLES = {"odd": _ODD, "even": _EVEN}


class WordBuffer(NamedTuple):
    """Words and the parity line that goes with each, as they travel on the wire."""

    words: Words
    parity: ParityLine


def as_buffer(buffer: WordBuffer) -> WordBuffer:
    """``buffer`` with the dtypes every port uses (uint16 words, uint8 parity of 0/1)."""
    words = np.asarray(buffer.words, dtype=np.uint16).reshape(-1)
    parity = np.asarray(buffer.parity, dtype=np.uint8).reshape(-1)
    if len(words) != len(parity):
        raise ValueError(f"{len(words)} words but {len(parity)} parity bits")
    return WordBuffer(words, parity)


def _dtype(byte_order: str) -> str:
    if byte_order == "big":
        return ">u2"
    if byte_order == "little":
        return "<u2"
    raise ValueError(f"byte order {byte_order!r}: big or little")


def _check_parity_name(parity: str) -> None:
    if parity not in PARITIES:
        raise ValueError(f"parity {parity!r}: odd, even or none")


def words_from_bytes(data: bytes | bytearray | memoryview, byte_order: str = "big") -> Words:
    """Bytes as 16-bit words; an odd-length input is padded with one zero byte."""
    dtype = _dtype(byte_order)
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\x00"
    return np.frombuffer(raw, dtype=dtype).astype(np.uint16)


def bytes_from_words(words: npt.ArrayLike, byte_order: str = "big") -> bytes:
    """The bytes carried by ``words`` (the inverse of :func:`words_from_bytes`)."""
    return np.asarray(words, dtype=np.uint16).astype(_dtype(byte_order)).tobytes()


def parity_bits(words: npt.ArrayLike, parity: str = "odd") -> ParityLine:
    """The parity line's value for each word: odd parity makes the 17 bits' count odd."""
    _check_parity_name(parity)
    words = np.asarray(words, dtype=np.uint16)
    if parity == "none":
        return np.zeros(len(words), dtype=np.uint8)
    line: ParityLine = _TABLES[parity][words]
    return line


def bad_parity(
    words: npt.ArrayLike, parity_line: npt.ArrayLike, parity: str = "odd"
) -> npt.NDArray[np.intp]:
    """Indices of the words whose parity line does not match (empty with parity none)."""
    if parity == "none":
        return np.zeros(0, dtype=np.intp)
    expected = parity_bits(words, parity)
    return np.flatnonzero(expected != np.asarray(parity_line, dtype=np.uint8))

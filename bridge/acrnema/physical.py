"""Physical layer of the reference link profile: 16-bit words with a parity bit each.

What travels on the 50-pin link is a sequence of 16-bit words on D0-D15 plus one parity
line (docs/link-profile.md, section 1: the width is inferred, the parity line and its
sense are chosen). This module converts between bytes and words and computes and checks
parity, over whole buffers with numpy: nothing here is done per word in Python.

Byte order: ``"big"`` puts the first byte of each pair on D15-D8 (the reference
profile's choice for text), ``"little"`` on D7-D0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Words", "bad_parity", "bytes_from_words", "parity_bits", "words_from_bytes"]

Words = npt.NDArray[np.uint16]

# parity of every byte value: 1 where the number of set bits is odd
_BYTE_PARITY = np.array([bin(v).count("1") & 1 for v in range(256)], dtype=np.uint8)


def words_from_bytes(data: bytes | bytearray | memoryview, byte_order: str = "big") -> Words:
    """Bytes as 16-bit words; an odd-length input is padded with one zero byte."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\x00"
    dtype = ">u2" if byte_order == "big" else "<u2"
    return np.frombuffer(raw, dtype=dtype).astype(np.uint16)


def bytes_from_words(words: Words, byte_order: str = "big") -> bytes:
    """The bytes carried by ``words`` (the inverse of :func:`words_from_bytes`)."""
    dtype = ">u2" if byte_order == "big" else "<u2"
    return np.asarray(words, dtype=np.uint16).astype(dtype).tobytes()


def parity_bits(words: Words, parity: str = "odd") -> npt.NDArray[np.uint8]:
    """The parity line's value for each word: odd parity makes the 17 bits' count odd."""
    words = np.asarray(words, dtype=np.uint16)
    ones: npt.NDArray[np.uint8] = _BYTE_PARITY[words & 0xFF] ^ _BYTE_PARITY[words >> 8]
    if parity == "odd":
        return ones ^ np.uint8(1)
    if parity == "even":
        return ones
    if parity == "none":
        return np.zeros(len(words), dtype=np.uint8)
    raise ValueError(f"parity {parity!r}: odd, even or none")


def bad_parity(
    words: Words, parity_line: npt.ArrayLike, parity: str = "odd"
) -> npt.NDArray[np.intp]:
    """Indices of the words whose parity line does not match (empty with parity none)."""
    if parity == "none":
        return np.zeros(0, dtype=np.intp)
    expected = parity_bits(words, parity)
    return np.flatnonzero(expected != np.asarray(parity_line, dtype=np.uint8))

"""Data link framing of the reference link profile: frames of 16-bit words with a CRC.

The ACR-NEMA data link moved "frames" [S16]; their format is not documented, so this is
our choice (docs/link-profile.md, section 2)::

    word 0        start word (0xA5C3 in the reference profile)
    word 1        type << 12 | sequence number (8 bits); bits 8-11 zero
    word 2        payload length in words (0 .. max_payload_words)
    words 3..     payload
    last word     CRC-16/CCITT-FALSE (binascii.crc_hqx, init 0xFFFF) over words 1..n,
                  each word taken most significant byte first

Each word also carries the parity line (bridge.acrnema.physical); a frame with a parity
error in any of its words is as damaged as one with a bad CRC.

:class:`FrameDecoder` is sans-I/O: words go in as they arrive (any amount, split
anywhere), frames and damage reports come out. After garbage or lost words it hunts for
the next start word, so a frame is never lost because an earlier one was damaged. The
acknowledgement and retransmission rules (the data link's state machine) build on these
events and are the next part of the link issue.
"""

from __future__ import annotations

import binascii
import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.acrnema.physical import Words, bad_parity, parity_bits

__all__ = ["Frame", "FrameDamaged", "FrameDecoder", "FrameType", "encode_frame"]

HEADER_WORDS = 3


class FrameType(enum.IntEnum):
    DATA = 1
    ACK = 2
    NAK = 3


@dataclass(frozen=True)
class Frame:
    """A frame that arrived whole: CRC and parity good."""

    type: FrameType
    sequence: int
    payload: bytes  # the payload words, most significant byte first


@dataclass(frozen=True)
class FrameDamaged:
    """A frame that arrived damaged; ``sequence`` when its header could be read."""

    reason: str
    sequence: int | None = None
    kind: FrameType | None = None  # as its header said, when the header could be read


def encode_frame(
    kind: FrameType,
    sequence: int,
    payload: bytes = b"",
    *,
    start_word: int = 0xA5C3,
    crc_init: int = 0xFFFF,
    codes: Mapping[FrameType, int] | None = None,
) -> Words:
    """The words of one frame (payload padded to whole words with a zero byte).

    ``codes`` gives the type code of each frame type (the profile's
    ``datalink.frame_types``); by default the reference codes, DATA 1, ACK 2, NAK 3.
    """
    if len(payload) % 2:
        payload += b"\x00"
    code = int(kind) if codes is None else codes[kind]
    covered = struct.pack(">HH", code << 12 | (sequence & 0xFF), len(payload) // 2) + payload
    crc = binascii.crc_hqx(covered, crc_init)
    raw = struct.pack(">H", start_word) + covered + struct.pack(">H", crc)
    return np.frombuffer(raw, dtype=">u2").astype(np.uint16)


@dataclass
class FrameDecoder:
    """Turns a stream of words (and their parity line) into frames and damage reports.

    Each call works on the held and new words as one buffer: one byte string for the CRC
    and payload slices, one parity check over all words, one search for start words, and
    per frame only a header read and a CRC (``binascii.crc_hqx``): linear in the input,
    however it is split.
    """

    max_payload_words: int = 256
    start_word: int = 0xA5C3
    crc_init: int = 0xFFFF
    parity: str = "odd"
    codes: Mapping[FrameType, int] | None = None  # as encode_frame()
    _words: Words = field(default_factory=lambda: np.zeros(0, dtype=np.uint16))
    _parity: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    def __post_init__(self) -> None:
        codes = self.codes or {kind: int(kind) for kind in FrameType}
        self._kinds = {code: kind for kind, code in codes.items()}

    def feed(
        self, words: npt.ArrayLike, parity_line: npt.ArrayLike | None = None
    ) -> list[Frame | FrameDamaged]:
        """Add words as they arrived; return every frame now complete.

        Without ``parity_line`` the words are taken to carry correct parity.
        """
        new = np.asarray(words, dtype=np.uint16)
        line = parity_bits(new, self.parity) if parity_line is None else parity_line
        line = np.asarray(line, dtype=np.uint8)
        if len(self._words):
            buf = np.concatenate([self._words, new])
            par = np.concatenate([self._parity, line])
        else:
            buf, par = new, line
        n = len(buf)
        raw = buf.astype(">u2").tobytes()
        if self.parity == "none":
            bad_before = None
        else:  # bad_before[i]: words with a parity error among the first i
            mask = parity_bits(buf, self.parity) != par
            bad_before = np.concatenate([[0], np.cumsum(mask)]) if mask.any() else None
        starts = np.flatnonzero(buf == self.start_word)
        events: list[Frame | FrameDamaged] = []
        pos = 0
        while True:
            # hunt: the first start word at or after pos
            i = int(np.searchsorted(starts, pos))
            if i == len(starts):
                pos = n
                break
            pos = int(starts[i])
            if n - pos < HEADER_WORDS:
                break
            head, count = struct.unpack_from(">HH", raw, 2 * pos + 2)
            kind, sequence = self._kinds.get(head >> 12), head & 0xFF
            if kind is None or head & 0x0F00 or count > self.max_payload_words:
                events.append(FrameDamaged("unreadable frame header"))
                pos += 1  # hunt for the next start word
                continue
            total = HEADER_WORDS + count + 1
            if n - pos < total:
                break
            end = pos + total
            if bad_before is not None and bad_before[end] != bad_before[pos]:
                bad = bad_parity(buf[pos:end], par[pos:end], self.parity)
                first = int(bad[0])
                events.append(FrameDamaged(f"parity error in word {first}", sequence, kind))
                pos += 1
                continue
            crc = struct.unpack_from(">H", raw, 2 * end - 2)[0]
            if binascii.crc_hqx(raw[2 * pos + 2 : 2 * end - 2], self.crc_init) != crc:
                events.append(FrameDamaged("CRC mismatch", sequence, kind))
                pos += 1
                continue
            events.append(Frame(kind, sequence, raw[2 * (pos + HEADER_WORDS) : 2 * end - 2]))
            pos = end
        self._words = buf[pos:]
        self._parity = par[pos:]
        return events

    @property
    def pending_words(self) -> int:
        """Words held back waiting for the rest of a frame."""
        return len(self._words)

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


def _crc(words: Words, init: int) -> int:
    return binascii.crc_hqx(np.asarray(words, dtype=">u2").tobytes(), init)


def encode_frame(
    kind: FrameType,
    sequence: int,
    payload: bytes = b"",
    *,
    start_word: int = 0xA5C3,
    crc_init: int = 0xFFFF,
) -> Words:
    """The words of one frame (payload padded to whole words with a zero byte)."""
    if len(payload) % 2:
        payload += b"\x00"
    body = np.frombuffer(payload, dtype=">u2").astype(np.uint16)
    header = np.array([int(kind) << 12 | (sequence & 0xFF), len(body)], dtype=np.uint16)
    covered = np.concatenate([header, body])
    crc = np.array([_crc(covered, crc_init)], dtype=np.uint16)
    return np.concatenate([np.array([start_word], dtype=np.uint16), covered, crc])


@dataclass
class FrameDecoder:
    """Turns a stream of words (and their parity line) into frames and damage reports."""

    max_payload_words: int = 256
    start_word: int = 0xA5C3
    crc_init: int = 0xFFFF
    parity: str = "odd"
    _words: Words = field(default_factory=lambda: np.zeros(0, dtype=np.uint16))
    _parity: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    def feed(
        self, words: npt.ArrayLike, parity_line: npt.ArrayLike | None = None
    ) -> list[Frame | FrameDamaged]:
        """Add words as they arrived; return every frame now complete.

        Without ``parity_line`` the words are taken to carry correct parity.
        """
        new = np.asarray(words, dtype=np.uint16)
        line = parity_bits(new, self.parity) if parity_line is None else parity_line
        self._words = np.concatenate([self._words, new])
        self._parity = np.concatenate([self._parity, np.asarray(line, dtype=np.uint8)])
        events: list[Frame | FrameDamaged] = []
        while True:
            starts = np.flatnonzero(self._words == self.start_word)
            if len(starts) == 0:
                self._drop(len(self._words))
                return events
            self._drop(int(starts[0]))
            if len(self._words) < HEADER_WORDS:
                return events
            head, count = int(self._words[1]), int(self._words[2])
            kind, sequence = head >> 12, head & 0xFF
            if kind not in (1, 2, 3) or head & 0x0F00 or count > self.max_payload_words:
                events.append(FrameDamaged("unreadable frame header"))
                self._drop(1)  # hunt for the next start word
                continue
            total = HEADER_WORDS + count + 1
            if len(self._words) < total:
                return events
            frame = self._words[:total]
            bad = bad_parity(frame, self._parity[:total], self.parity)
            if len(bad):
                events.append(FrameDamaged(f"parity error in word {int(bad[0])}", sequence))
                self._drop(1)
                continue
            if _crc(frame[1:-1], self.crc_init) != int(frame[-1]):
                events.append(FrameDamaged("CRC mismatch", sequence))
                self._drop(1)
                continue
            payload = frame[HEADER_WORDS:-1].astype(">u2").tobytes()
            events.append(Frame(FrameType(kind), sequence, payload))
            self._drop(total)

    def _drop(self, count: int) -> None:
        self._words = self._words[count:]
        self._parity = self._parity[count:]

    @property
    def pending_words(self) -> int:
        """Words held back waiting for the rest of a frame."""
        return len(self._words)

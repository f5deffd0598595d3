"""Data link framing of the reference link profile: frames of 16-bit words with a CRC.

The ACR-NEMA data link moved "frames" [S16]; their format is not documented, so this is
our choice (docs/link-profile.md, section 2)::

    word 0        start word (0xA5C3 in the reference profile)
    word 1        type << 12 | sequence number (8 bits); bits 8-11 zero
    word 2        payload length in words (0 .. max_payload_words)
    words 3..     payload
    last word     CRC-16/CCITT-FALSE (binascii.crc_hqx, init 0xFFFF) over words 1..n,
                  each word taken most significant byte first

The frame check and the delimiting are dialect knobs of the profile (``datalink.crc``,
``datalink.delimiting``; docs/link-profile.md, "Dialect knobs"): :class:`Check` is the
trailer (CRC-16/CCITT-FALSE, any CRC-16 by its polynomial, init, reflections and final
XOR, an additive 16-bit sum, or none), and with ``delimiting = "length_only"`` a frame
has no start word: it begins where the previous one ended, and after damage the decoder
slides one word at a time until a readable header with a good check.

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

__all__ = [
    "FIRST",
    "LAST",
    "Check",
    "Frame",
    "FrameDamaged",
    "FrameDecoder",
    "FrameType",
    "crc16",
    "encode_frame",
]

HEADER_WORDS = 3
FIRST = 0x0100  # header flag (ack_mode none, transport none): the frame begins a unit
LAST = 0x0200  # header flag (ack_mode none, transport none): the frame ends a unit of send()


def _reflect16(value: int) -> int:
    return int(f"{value:016b}"[::-1], 2)


def _word_table(poly: int, reflected: bool) -> list[int]:
    """The register after 16 shifts of each 16-bit value: one look-up a word.

    For a 16-bit CRC a whole word leaves the register in one step, so the next register
    is ``table[register ^ word]`` (``word`` little-endian when reflected). Built with
    numpy over all 65,536 values at once.
    """
    reg = np.arange(1 << 16, dtype=np.uint32)
    if reflected:
        rpoly = np.uint32(_reflect16(poly))
        for _ in range(16):
            reg = np.where(reg & 1, (reg >> 1) ^ rpoly, reg >> 1)
    else:
        for _ in range(16):
            reg = np.where(reg & 0x8000, ((reg << 1) ^ poly) & 0xFFFF, (reg << 1) & 0xFFFF)
    return [int(v) for v in reg.astype(np.uint16)]


_TABLES: dict[tuple[int, bool], list[int]] = {}


def crc16(
    data: bytes,
    poly: int = 0x1021,
    init: int = 0xFFFF,
    refin: bool = False,
    refout: bool = False,
    xorout: int = 0,
) -> int:
    """CRC-16 of ``data`` in the Rocksoft model (the parameters of the CRC catalogues).

    The defaults are CRC-16/CCITT-FALSE; polynomial 0x1021 without input reflection
    takes ``binascii.crc_hqx`` (C speed), every other CRC a table of one entry a word.
    """
    if not refin and poly == 0x1021:
        crc = binascii.crc_hqx(data, init)
    else:
        table = _TABLES.get((poly, refin))
        if table is None:
            table = _TABLES[poly, refin] = _word_table(poly, refin)
        even = len(data) - len(data) % 2
        words = np.frombuffer(data[:even], dtype="<u2" if refin else ">u2").tolist()
        crc = _reflect16(init) if refin else init
        for word in words:
            crc = table[crc ^ word]
        if even != len(data):  # an odd byte: eight single shifts
            crc = _byte_step(crc, data[-1], poly, refin)
        if refin:
            crc = _reflect16(crc)
    if refout:
        crc = _reflect16(crc)
    return crc ^ xorout


def _byte_step(crc: int, byte: int, poly: int, refin: bool) -> int:
    if refin:
        crc ^= byte
        rpoly = _reflect16(poly)
        for _ in range(8):
            crc = (crc >> 1) ^ rpoly if crc & 1 else crc >> 1
        return crc
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ poly) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@dataclass(frozen=True)
class Check:
    """The frame's trailer: ``kind`` is a ``datalink.crc`` value of the profile.

    ``crc-16/ccitt-false`` (the reference: ``binascii.crc_hqx`` from ``init``),
    ``crc-16`` (any CRC-16: ``poly``, ``init``, ``refin``, ``refout``, ``xorout``),
    ``sum-16`` (the 16-bit words added modulo 2^16, from 0), ``none`` (no trailer word).
    """

    kind: str = "crc-16/ccitt-false"
    init: int = 0xFFFF
    poly: int = 0x1021
    refin: bool = False
    refout: bool = False
    xorout: int = 0

    @property
    def words(self) -> int:
        """Words the trailer takes: 0 or 1."""
        return 0 if self.kind == "none" else 1

    def __call__(self, covered: bytes) -> int:
        """The check word over ``covered`` (whole words, most significant byte first)."""
        if self.kind == "crc-16/ccitt-false":
            return binascii.crc_hqx(covered, self.init)
        if self.kind == "crc-16":
            return crc16(covered, self.poly, self.init, self.refin, self.refout, self.xorout)
        if self.kind == "sum-16":
            return int(np.frombuffer(covered, dtype=">u2").sum(dtype=np.uint64)) & 0xFFFF
        if self.kind == "none":
            return 0
        raise ValueError(f"frame check {self.kind!r}: crc-16/ccitt-false, crc-16, sum-16 or none")


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
    flags: int = 0  # header bits 8-11 (FIRST, LAST when units are marked, else 0)


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
    check: Check | None = None,
    delimiting: str = "start_word",
    flags: int = 0,
) -> Words:
    """The words of one frame (payload padded to whole words with a zero byte).

    ``codes`` gives the type code of each frame type (the profile's
    ``datalink.frame_types``); by default the reference codes, DATA 1, ACK 2, NAK 3.
    ``check`` is the trailer (by default CRC-16/CCITT-FALSE from ``crc_init``);
    ``delimiting`` ``"length_only"`` leaves out the start word; ``flags`` are header
    bits 8-11 (zero but for the unit marks :data:`FIRST` and :data:`LAST`, which
    ``ack_mode = "none"`` and ``transport.mode = "none"`` use).
    """
    if len(payload) % 2:
        payload += b"\x00"
    check = check or Check(init=crc_init)
    code = int(kind) if codes is None else codes[kind]
    head = code << 12 | flags | (sequence & 0xFF)
    covered = struct.pack(">HH", head, len(payload) // 2) + payload
    lead = struct.pack(">H", start_word) if delimiting == "start_word" else b""
    trailer = struct.pack(">H", check(covered)) if check.words else b""
    raw = lead + covered + trailer
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
    check: Check | None = None  # as encode_frame(); None: CRC-16/CCITT-FALSE from crc_init
    delimiting: str = "start_word"  # or "length_only": no start word (module doc)
    flags: int = 0  # header bits 8-11 a frame may carry (FIRST, LAST: unit marks)
    _words: Words = field(default_factory=lambda: np.zeros(0, dtype=np.uint16))
    _parity: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    def __post_init__(self) -> None:
        codes = self.codes or {kind: int(kind) for kind in FrameType}
        self._kinds = {code: kind for kind, code in codes.items()}
        self._check = self.check or Check(init=self.crc_init)
        if self.delimiting not in ("start_word", "length_only"):
            raise ValueError(f"delimiting {self.delimiting!r}: start_word or length_only")
        self._hunting = False  # length_only: sliding after damage, reported once

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
        lead = 1 if self.delimiting == "start_word" else 0
        header, trailer = lead + 2, self._check.words
        if lead:
            starts = np.flatnonzero(buf == self.start_word)
        allowed = ~self.flags & 0x0F00
        events: list[Frame | FrameDamaged] = []
        pos = 0
        while True:
            if lead:  # hunt: the first start word at or after pos
                i = int(np.searchsorted(starts, pos))
                if i == len(starts):
                    pos = n
                    break
                pos = int(starts[i])
            if n - pos < header:
                break
            head, count = struct.unpack_from(">HH", raw, 2 * (pos + lead))
            kind, sequence = self._kinds.get(head >> 12), head & 0xFF
            if kind is None or head & allowed or count > self.max_payload_words:
                self._damaged(events, FrameDamaged("unreadable frame header"))
                pos += 1  # hunt for the next start word (length_only: slide one word)
                continue
            total = header + count + trailer
            if n - pos < total:
                break
            end = pos + total
            if bad_before is not None and bad_before[end] != bad_before[pos]:
                bad = bad_parity(buf[pos:end], par[pos:end], self.parity)
                first = int(bad[0])
                reason = f"parity error in word {first}"
                self._damaged(events, FrameDamaged(reason, sequence, kind))
                pos += 1
                continue
            if trailer:
                crc = struct.unpack_from(">H", raw, 2 * end - 2)[0]
                if self._check(raw[2 * (pos + lead) : 2 * end - 2]) != crc:
                    self._damaged(events, FrameDamaged("CRC mismatch", sequence, kind))
                    pos += 1
                    continue
            payload = raw[2 * (pos + header) : 2 * (end - trailer)]
            events.append(Frame(kind, sequence, payload, head & 0x0F00))
            self._hunting = False
            pos = end
        self._words = buf[pos:]
        self._parity = par[pos:]
        return events

    def _damaged(self, events: list[Frame | FrameDamaged], damage: FrameDamaged) -> None:
        """Report ``damage``; with length_only only the first of a run of slides, since
        every word after a damaged frame is tried as a header until one fits."""
        if self.delimiting == "start_word" or not self._hunting:
            events.append(damage)
        self._hunting = self.delimiting == "length_only"

    @property
    def pending_words(self) -> int:
        """Words held back waiting for the rest of a frame."""
        return len(self._words)

"""The interface-box protocol: framed messages between the host and the box's firmware.

The interface box (ARCHITECTURE.md, "Hardware paths"; docs/hardware.md) runs the 50-pin
link's word handshake; the host talks to it over a byte stream (USB CDC, or a full-duplex
RS-485/RS-422 UART) with this protocol, our own design (docs/box-protocol.md, where every
byte layout has a table and a worked example). In short:

* a frame is ``COBS(body) 0x00``; ``body`` is ``type seq payload crc32`` with the CRC-32
  of ``zlib.crc32`` (CRC-32/ISO-HDLC) over type, seq and payload, little-endian;
* multi-byte fields are little-endian; a message type with bit 7 set comes from the box;
* word streams (WORDS_OUT to the box, WORDS_IN from it) carry a 32-bit stream position,
  so a lost frame on an unreliable UART shows as a gap; CREDITS carry a cumulative limit
  (words with a position below it may be sent), so a lost CREDITS frame is repaired by
  the next one.

This module is the codec only (sans-I/O): messages are frozen dataclasses,
:func:`encode_frame` makes the bytes of one frame, :func:`decode_frame` finds the next
frame in a buffer and says how many bytes it consumed, and :class:`BoxFrameDecoder` takes
bytes split anywhere and returns :class:`BoxFrame` and :class:`BadFrame` events, holding at
most one frame's worth of bytes. The firmware's C core (``firmware/src/proto.c``) is the
other implementation; both are checked against ``tests/vectors/box/*.json``.

Speed: COBS runs on numpy arrays for bodies of :data:`_SMALL` bytes and more (one zero
search, one scatter or insert), the word payload is packed with numpy, and the CRC is
``zlib.crc32``; ``python -m bridge.box.protocol`` measures encode plus decode.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Self, overload

import numpy as np

from bridge._renamed import old_name
from bridge.acrnema.physical import ParityLine, Words
from bridge.errors import BoxProtocolError
from bridge.profile import LINE_NAMES, PhysicalSection

__all__ = [
    "CAPABILITIES_ALL",
    "LINES",
    "MAX_BODY",
    "MIN_BODY",
    "PROTOCOL_VERSION",
    "REASON_MAX",
    "Absent",
    "BadFrame",
    "BadFrameReason",
    "BoxCredits",
    "BoxFrame",
    "BoxFrameDecoder",
    "BoxMessage",
    "BoxProtocolError",
    "Bus",
    "Capability",
    "ConfigField",
    "Configure",
    "ErrorCode",
    "ErrorReport",
    "Handshake",
    "Hello",
    "HostCredits",
    "Info",
    "LineSet",
    "LineState",
    "MsgType",
    "Parity",
    "Phase",
    "Query",
    "Reply",
    "Reset",
    "Role",
    "Stats",
    "Status",
    "Unknown",
    "WordsIn",
    "WordsOut",
    "cobs_decode",
    "cobs_encode",
    "decode_body",
    "decode_frame",
    "encode_body",
    "encode_frame",
    "max_words_for",
    "position_add",
    "position_delta",
    "words_messages",
]

PROTOCOL_VERSION = 1
MIN_BODY = 6  # type, seq, CRC-32
MAX_BODY = 0xFFFF  # the protocol's largest body; each side announces its own limit
LINES = LINE_NAMES  # bit i of a line mask is LINES[i] (D0-D15, PARITY, REQ, ...)
WORDS_HEADER = 8  # offset u32, count u16, flags u8, reserved u8
_SMALL = 192  # COBS of shorter inputs in plain Python (numpy's fixed cost is ~20 us)


class MsgType(enum.IntEnum):
    """Message type codes: bit 7 clear from the host, set from the box."""

    HELLO = 0x01
    CONFIGURE = 0x02
    RESET = 0x03
    LINE_SET = 0x04
    QUERY = 0x05
    WORDS_OUT = 0x10
    HOST_CREDITS = 0x11
    INFO = 0x81
    REPLY = 0x82
    LINE_STATE = 0x84
    STATS = 0x85
    ERROR = 0x86
    WORDS_IN = 0x90
    BOX_CREDITS = 0x91


class Status(enum.IntEnum):
    """REPLY status."""

    OK = 0
    UNSUPPORTED_VERSION = 1
    BAD_PARAMETER = 2
    BUSY = 3  # refused in the box's present state (CONFIGURE while READY is asserted)
    UNKNOWN_TYPE = 4
    UNKNOWN_FIELD = 5  # CONFIGURE carried a field the box does not know (detail: its tag)


class Parity(enum.IntEnum):
    NONE = 0
    ODD = 1
    EVEN = 2


class Role(enum.IntEnum):
    """Which side of the link the box plays (docs/link-profile.md, section 1.2)."""

    B = 0  # the responder: asks for the bus with BREQ (the normal place of the bridge)
    A = 1  # the initiator: drives DIR (bench use, to stand in for a scanner)


class Bus(enum.IntEnum):
    """Who has the data bus, as the box sees it."""

    IDLE = 0  # nobody drives D0-D15
    PEER = 1  # the other side drives it; the box answers (ACK, PERR)
    OWN = 2  # the box drives it
    TURNAROUND = 3  # changing hands (waiting turnaround_ns or the peer's release)
    DUPLEX = 4  # emulation only: words flow both ways, no bus arbitration


class Capability(enum.IntFlag):
    ROLE_B = 1
    ROLE_A = 2
    PERR = 4  # the box checks parity and drives PERR itself
    DUPLEX = 8  # CONFIGURE may ask for duplex (an emulated line side only)
    POLARITY = 16  # per-line active-low mask honoured
    SHAPE = 32  # reads CONFIGURE's bus-shape fields (an older box ignores them)
    PARITY_BYTES = 64  # PARITY_HI on the SPARE pair: parity per byte on two lines
    TWO_PHASE = 128  # runs the two-phase handshake
    STROBE = 256  # runs the strobe handshake


CAPABILITIES_ALL = Capability(511)
_NO_CAPABILITIES = Capability(0)


class ErrorCode(enum.IntEnum):
    PARITY = 1  # detail: 0 a word received had bad parity (PERR sent), 1 the peer sent PERR
    TIMEOUT = 2  # detail: Phase; offset: the word; value: words discarded
    OVERFLOW = 3  # WORDS_OUT beyond the box's room: offset first dropped, value count
    BAD_FRAME = 4  # detail: BadFrameReason; offset: bad frames so far; value: frame bytes
    LOST_WORDS = 5  # a WORDS_OUT gap: offset expected position, value position received
    LOST_FRAMES = 6  # a seq gap in frames from the host: offset expected, value received
    BUS = 7  # the peer broke the bus rules (detail: Bus state the box was in)


class Phase(enum.IntEnum):
    """Where a handshake stopped (the steps of docs/link-profile.md, section 1.1)."""

    ACK_ASSERT = 1  # sender waiting for ACK after asserting REQ (step 2)
    ACK_RELEASE = 2  # sender waiting for ACK to drop after dropping REQ (step 4)
    REQ_RELEASE = 3  # receiver waiting for REQ to drop after asserting ACK (step 3)
    TURNAROUND = 4  # the peer did not hand the bus over


class BadFrameReason(enum.IntEnum):
    COBS = 1  # not a valid COBS encoding
    CRC = 2
    TOO_LONG = 3  # more bytes than the receiver's max body before a delimiter
    TOO_SHORT = 4  # a body under MIN_BODY bytes
    BAD_LENGTH = 5  # a payload length that does not fit the message type
    WRONG_DIRECTION = 6  # a message type the receiver's side never receives
    BAD_VALUE = 7  # a field out of range (only raised when encoding)


def _u8(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"{what}: 0 to 255, got {value}")
    return value


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"{what}: 0 to 65535, got {value}")
    return value


def _u32(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"{what}: 0 to 2**32-1, got {value}")
    return value


def _need(payload: bytes | memoryview, size: int, kind: MsgType) -> None:
    if len(payload) < size:
        raise BoxProtocolError(
            BadFrameReason.BAD_LENGTH,
            f"{kind.name}: payload of {len(payload)} bytes, at least {size} needed",
        )


def position_add(position: int, count: int) -> int:
    """The 32-bit stream position ``count`` words after ``position`` (it wraps to 0)."""
    return (position + count) & 0xFFFF_FFFF


def position_delta(a: int, b: int) -> int:
    """``a - b`` between two 32-bit stream positions, as a signed number (serial arithmetic)."""
    d = (a - b) & 0xFFFF_FFFF
    return d - (1 << 32) if d & 0x8000_0000 else d


# --- messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Host to box, first: the protocol versions the host speaks and its largest body."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    min_version: int = PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION
    max_body: int = MAX_BODY

    def payload(self) -> bytes:
        return struct.pack(
            "<BBH",
            _u8(self.min_version, "min_version"),
            _u8(self.max_version, "max_version"),
            _u16(self.max_body, "max_body"),
        )

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Hello:
        _need(p, 4, cls.TYPE)
        return cls(*struct.unpack_from("<BBH", p))


_INFO = struct.Struct("<BBBBIIIHHI")  # 24 bytes, then 50 bytes of pin map, then the name
_PIN_MAP_BYTES = 2 * len(LINES)


def _reference_pin_map() -> tuple[tuple[int, int], ...]:
    return tuple((2 * n - 1, 2 * n) for n in range(1, len(LINES) + 1))


@dataclass(frozen=True)
class Info:
    """Box to host, the answer to HELLO (or QUERY): what this box is and can do."""

    TYPE: ClassVar[MsgType] = MsgType.INFO
    version: int = PROTOCOL_VERSION
    firmware: tuple[int, int, int] = (0, 0, 0)
    capabilities: Capability = _NO_CAPABILITIES
    out_words: int = 0  # ring toward the line (WORDS_OUT room)
    in_words: int = 0  # ring toward the host (WORDS_IN)
    max_body: int = 0  # largest body the box accepts
    max_words: int = 0  # most words in one WORDS frame
    build: int = 0  # e.g. the first 8 hex digits of the firmware's git commit
    pins: tuple[tuple[int, int], ...] = field(default_factory=_reference_pin_map)
    board: str = ""

    def payload(self) -> bytes:
        if len(self.pins) != len(LINES):
            raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"pins: {len(LINES)} pairs needed")
        name = self.board.encode("ascii")
        if len(name) > 32:
            raise BoxProtocolError(BadFrameReason.BAD_VALUE, "board: at most 32 characters")
        head = _INFO.pack(
            _u8(self.version, "version"),
            *(_u8(v, "firmware") for v in self.firmware),
            _u32(int(self.capabilities), "capabilities"),
            _u32(self.out_words, "out_words"),
            _u32(self.in_words, "in_words"),
            _u16(self.max_body, "max_body"),
            _u16(self.max_words, "max_words"),
            _u32(self.build, "build"),
        )
        pins = bytes(_u8(p, "pins") for pair in self.pins for p in pair)
        return head + pins + name

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Info:
        _need(p, _INFO.size + _PIN_MAP_BYTES, cls.TYPE)
        v, f0, f1, f2, caps, out_w, in_w, max_body, max_words, build = _INFO.unpack_from(p)
        raw = bytes(p[_INFO.size : _INFO.size + _PIN_MAP_BYTES])
        pins = tuple((raw[i], raw[i + 1]) for i in range(0, len(raw), 2))
        name = bytes(p[_INFO.size + _PIN_MAP_BYTES :]).decode("ascii", "replace")
        return cls(
            v, (f0, f1, f2), Capability(caps), out_w, in_w, max_body, max_words, build, pins, name
        )


REASON_MAX = 64  # bytes of a REPLY's reason, at most
_CONFIGURE = struct.Struct("<BBHIIHHII")  # 24 bytes, then the bus-shape fields


class Handshake(enum.IntEnum):
    """CONFIGURE's ``HANDSHAKE`` field: ``physical.handshake``."""

    FOUR_PHASE = 0
    TWO_PHASE = 1
    STROBE = 2


class ConfigField(enum.IntEnum):
    """Tags of CONFIGURE's bus-shape fields (tag u8, length u8, value), after offset 24."""

    HANDSHAKE = 1  # u8: Handshake
    ABSENT_LINES = 2  # u8: Absent bits, the control lines the bus lacks
    PARITY_LINES = 3  # u8: 1 or 2


class Absent(enum.IntFlag):
    """CONFIGURE's ``ABSENT_LINES`` bits: ``physical.control_lines`` turned round."""

    DIR = 1
    BREQ = 2
    READY = 4  # READY_A and READY_B
    PERR = 8


_NO_LINES_ABSENT = Absent(0)


class _ConfigureFieldError(BoxProtocolError):
    """A CONFIGURE bus-shape field out of range; ``field`` is its tag (REPLY's detail)."""

    def __init__(self, field: int, text: str) -> None:
        super().__init__(BadFrameReason.BAD_VALUE, text)
        self.field = field


def _shape_fields(p: bytes | memoryview) -> tuple[dict[int, int], bytes]:
    """The bus-shape fields after CONFIGURE's fixed part: known values, unknown raw."""
    known: dict[int, int] = {}
    unknown = bytearray()
    i = 0
    while i < len(p):
        if len(p) - i < 2 or len(p) - i - 2 < p[i + 1]:
            raise BoxProtocolError(BadFrameReason.BAD_LENGTH, "CONFIGURE: a field overruns")
        tag, size = p[i], p[i + 1]
        value = bytes(p[i + 2 : i + 2 + size])
        if tag not in ConfigField.__members__.values():
            unknown += bytes(p[i : i + 2 + size])
        else:
            v = value[0] if size == 1 else -1
            ok = {
                ConfigField.HANDSHAKE: v in (0, 1, 2),
                ConfigField.ABSENT_LINES: 0 <= v <= 15,
                ConfigField.PARITY_LINES: v in (1, 2),
            }[ConfigField(tag)]
            if not ok:
                raise _ConfigureFieldError(
                    tag, f"CONFIGURE: field {ConfigField(tag).name} out of range: {value.hex()}"
                )
            known[tag] = v
        i += 2 + size
    return known, bytes(unknown)


@dataclass(frozen=True)
class Configure:
    """Host to box: the physical layer's parameters (bridge.profile.PhysicalSection) and role."""

    TYPE: ClassVar[MsgType] = MsgType.CONFIGURE
    parity: Parity = Parity.ODD
    role: Role = Role.B
    duplex: bool = False  # emulated line side only (Capability.DUPLEX)
    active_low: int = 0  # bit i: line LINES[i] is asserted with + below -
    handshake_timeout_us: int = 100_000
    setup_ns: int = 100
    hold_ns: int = 100
    turnaround_ns: int = 1000
    max_burst_words: int = 0  # most words sent in one bus tenure (0: no limit)
    # the bus-shape fields (sent only when they differ from the reference bus)
    handshake: Handshake = Handshake.FOUR_PHASE
    absent_lines: Absent = _NO_LINES_ABSENT  # control lines the bus lacks
    parity_bytes: bool = False  # parity per byte: PARITY on D0-D7, PARITY_HI on D8-D15
    extra: bytes = b""  # fields this codec does not know, raw (tag, length, value)

    def shape(self) -> dict[ConfigField, str]:
        """The bus-shape fields that differ from the reference, as the profile says them."""
        out: dict[ConfigField, str] = {}
        if self.handshake:
            out[ConfigField.HANDSHAKE] = (
                f"handshake={self.handshake.name.lower().replace('_', '-')}"
            )
        if self.absent_lines:
            names = "/".join(str(a.name) for a in Absent if self.absent_lines & a)
            out[ConfigField.ABSENT_LINES] = f"control_lines without {names}"
        if self.parity_bytes:
            out[ConfigField.PARITY_LINES] = "parity_lines=2"
        return out

    def payload(self) -> bytes:
        shape = b""
        if self.handshake:
            shape += bytes([ConfigField.HANDSHAKE, 1, int(self.handshake)])
        if self.absent_lines:
            shape += bytes([ConfigField.ABSENT_LINES, 1, int(self.absent_lines)])
        if self.parity_bytes:
            shape += bytes([ConfigField.PARITY_LINES, 1, 2])
        return self._fixed() + shape + self.extra

    def _fixed(self) -> bytes:
        return _CONFIGURE.pack(
            _u8(int(self.parity), "parity"),
            _u8(int(self.role), "role"),
            int(self.duplex),
            _u32(self.active_low, "active_low"),
            _u32(self.handshake_timeout_us, "handshake_timeout_us"),
            _u16(self.setup_ns, "setup_ns"),
            _u16(self.hold_ns, "hold_ns"),
            _u32(self.turnaround_ns, "turnaround_ns"),
            _u32(self.max_burst_words, "max_burst_words"),
        )

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Configure:
        _need(p, _CONFIGURE.size, cls.TYPE)
        par, role, flags, low, timeout, setup, hold, turn, burst = _CONFIGURE.unpack_from(p)
        try:
            parity, side = Parity(par), Role(role)
        except ValueError as exc:
            raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"CONFIGURE: {exc}") from exc
        known, extra = _shape_fields(memoryview(p)[_CONFIGURE.size :])
        return cls(
            parity, side, bool(flags & 1), low, timeout, setup, hold, turn, burst,
            Handshake(known.get(ConfigField.HANDSHAKE, 0)),
            Absent(known.get(ConfigField.ABSENT_LINES, 0)),
            known.get(ConfigField.PARITY_LINES, 1) == 2,
            extra,
        )  # fmt: skip

    @classmethod
    def from_profile(
        cls,
        physical: PhysicalSection,
        *,
        role: Role = Role.B,
        duplex: bool = False,
        max_burst_words: int = 0,
    ) -> Configure:
        """The CONFIGURE that sets a box up for a profile's physical layer."""
        mask = 0
        for name in physical.active_low:
            mask |= 1 << LINES.index(name)
        absent = Absent(0)
        for a in Absent:
            if a.name not in physical.control_lines:
                absent |= a
        return cls(
            parity=Parity[physical.parity.upper()],
            role=role,
            duplex=duplex,
            active_low=mask,
            handshake_timeout_us=max(1, round(physical.handshake_timeout_ms * 1000)),
            setup_ns=physical.setup_ns,
            hold_ns=physical.hold_ns,
            turnaround_ns=physical.turnaround_ns,
            max_burst_words=max_burst_words,
            handshake=Handshake[physical.handshake.upper().replace("-", "_")],
            absent_lines=absent,
            parity_bytes=physical.parity_lines == 2 and physical.parity != "none",
        )


@dataclass(frozen=True)
class Reset:
    """Host to box: drop buffered words, release the bus, restart both streams at 0."""

    TYPE: ClassVar[MsgType] = MsgType.RESET
    defaults: bool = False  # also restore the power-up configuration and drop READY

    def payload(self) -> bytes:
        return bytes([int(self.defaults)])

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Reset:
        _need(p, 1, cls.TYPE)
        return cls(bool(p[0] & 1))


@dataclass(frozen=True)
class LineSet:
    """Host to box: assert or drop the box's own READY line."""

    TYPE: ClassVar[MsgType] = MsgType.LINE_SET
    ready: bool

    def payload(self) -> bytes:
        return bytes([int(self.ready), 0, 0, 0])

    @classmethod
    def parse(cls, p: bytes | memoryview) -> LineSet:
        _need(p, 4, cls.TYPE)
        return cls(bool(p[0] & 1))


@dataclass(frozen=True)
class Query:
    """Host to box: send the report ``what`` (INFO, LINE_STATE, STATS or BOX_CREDITS)."""

    TYPE: ClassVar[MsgType] = MsgType.QUERY
    what: int

    def payload(self) -> bytes:
        return bytes([_u8(int(self.what), "what")])

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Query:
        _need(p, 1, cls.TYPE)
        code = p[0]
        return cls(MsgType(code) if code in _TYPE_CODES else code)


_WORDS = struct.Struct("<IHBB")


def _words_payload(offset: int, words: Words, parity: ParityLine, flags: int) -> bytes:
    n = len(words)
    if n != len(parity):
        raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"{n} words, {len(parity)} parity bits")
    head = _WORDS.pack(_u32(offset, "offset"), _u16(n, "word count"), flags, 0)
    body = np.asarray(words, dtype="<u2").tobytes()
    bits = np.packbits(np.asarray(parity, dtype=np.uint8), bitorder="little").tobytes()
    return head + body + bits


def _words_parse(p: bytes | memoryview, kind: MsgType) -> tuple[int, Words, ParityLine, int]:
    _need(p, WORDS_HEADER, kind)
    offset, n, flags, _ = _WORDS.unpack_from(p)
    size = WORDS_HEADER + 2 * n + (n + 7) // 8
    if len(p) != size:
        raise BoxProtocolError(
            BadFrameReason.BAD_LENGTH,
            f"{kind.name}: {n} words need a payload of {size} bytes, got {len(p)}",
        )
    words = np.frombuffer(p, dtype="<u2", count=n, offset=WORDS_HEADER).astype(np.uint16)
    packed = np.frombuffer(p, dtype=np.uint8, offset=WORDS_HEADER + 2 * n)
    parity = np.unpackbits(packed, count=n, bitorder="little")
    return offset, words, parity, flags


class _WordsMessage:
    """Equality for the two word messages (their numpy fields compare element-wise)."""

    offset: int
    words: Words
    parity: ParityLine

    def _key(self) -> tuple[object, ...]:
        return (type(self), self.offset, getattr(self, "boundary", False))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _WordsMessage) or self._key() != other._key():
            return NotImplemented if not isinstance(other, _WordsMessage) else False
        return bool(
            np.array_equal(self.words, other.words) and np.array_equal(self.parity, other.parity)
        )

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True, eq=False)
class WordsOut(_WordsMessage):
    """Host to box: words (and the parity line of each) to put on the link, in order."""

    TYPE: ClassVar[MsgType] = MsgType.WORDS_OUT
    offset: int  # stream position of the first word (mod 2**32)
    words: Words
    parity: ParityLine
    boundary: bool = False  # the bus may change hands after the last word

    def payload(self) -> bytes:
        return _words_payload(self.offset, self.words, self.parity, int(self.boundary))

    @classmethod
    def parse(cls, p: bytes | memoryview) -> WordsOut:
        offset, words, parity, flags = _words_parse(p, cls.TYPE)
        return cls(offset, words, parity, bool(flags & 1))


@dataclass(frozen=True, eq=False)
class WordsIn(_WordsMessage):
    """Box to host: words (and their parity line) that arrived from the link, in order."""

    TYPE: ClassVar[MsgType] = MsgType.WORDS_IN
    offset: int
    words: Words
    parity: ParityLine

    def payload(self) -> bytes:
        return _words_payload(self.offset, self.words, self.parity, 0)

    @classmethod
    def parse(cls, p: bytes | memoryview) -> WordsIn:
        offset, words, parity, _ = _words_parse(p, cls.TYPE)
        return cls(offset, words, parity)


_CREDITS = struct.Struct("<II")


@dataclass(frozen=True)
class _Credits:
    """The two credit messages: one layout, a type code each."""

    TYPE: ClassVar[MsgType]
    received: int  # the next position of the other side's words this side expects
    limit: int

    def payload(self) -> bytes:
        return _CREDITS.pack(_u32(self.received, "received"), _u32(self.limit, "limit"))

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Self:
        _need(p, _CREDITS.size, cls.TYPE)
        return cls(*_CREDITS.unpack_from(p))


@dataclass(frozen=True)
class HostCredits(_Credits):
    """Host to box: WORDS_IN may go up to (not including) stream position ``limit``;
    ``received`` is the next WORDS_IN position the host expects."""

    TYPE: ClassVar[MsgType] = MsgType.HOST_CREDITS


@dataclass(frozen=True)
class BoxCredits(_Credits):
    """Box to host: WORDS_OUT may go up to (not including) stream position ``limit``;
    ``received`` is the next WORDS_OUT position the box expects."""

    TYPE: ClassVar[MsgType] = MsgType.BOX_CREDITS


@dataclass(frozen=True)
class Reply:
    """Box to host: the outcome of CONFIGURE, RESET, LINE_SET (or of a refused request)."""

    TYPE: ClassVar[MsgType] = MsgType.REPLY
    request: int  # the request's type code
    request_seq: int
    status: Status = Status.OK
    detail: int = 0  # UNKNOWN_FIELD, BAD_PARAMETER of CONFIGURE: the field's tag
    reason: str = ""  # why, in ASCII (after the 4 bytes; an older box sends none)

    def payload(self) -> bytes:
        return bytes(
            [_u8(int(self.request), "request"), _u8(self.request_seq, "request_seq"),
             _u8(int(self.status), "status"), _u8(self.detail, "detail")]
        ) + self.reason.encode("ascii")[:REASON_MAX]  # fmt: skip

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Reply:
        _need(p, 4, cls.TYPE)
        request = MsgType(p[0]) if p[0] in _TYPE_CODES else p[0]
        try:
            status = Status(p[2])
        except ValueError as exc:
            raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"REPLY: {exc}") from exc
        reason = bytes(p[4 : 4 + REASON_MAX]).decode("ascii", "replace")
        return cls(request, p[1], status, p[3], reason)


_LINE_STATE = struct.Struct("<IBBH")


@dataclass(frozen=True)
class LineState:
    """Box to host: the levels of all 25 lines, who has the bus, READY on both sides."""

    TYPE: ClassVar[MsgType] = MsgType.LINE_STATE
    levels: int  # bit i: line LINES[i] asserted (logical level, active_low applied)
    bus: Bus = Bus.IDLE
    ready: bool = False  # the box's own READY
    peer_ready: bool = False
    role: Role = Role.B

    def payload(self) -> bytes:
        flags = int(self.ready) | int(self.peer_ready) << 1 | int(self.role) << 2
        return _LINE_STATE.pack(_u32(self.levels, "levels"), int(self.bus), flags, 0)

    @classmethod
    def parse(cls, p: bytes | memoryview) -> LineState:
        _need(p, _LINE_STATE.size, cls.TYPE)
        levels, bus, flags, _ = _LINE_STATE.unpack_from(p)
        try:
            where = Bus(bus)
        except ValueError as exc:
            raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"LINE_STATE: {exc}") from exc
        return cls(levels, where, bool(flags & 1), bool(flags & 2), Role(flags >> 2 & 1))

    def line(self, name: str) -> bool:
        """Whether line ``name`` (one of :data:`LINES`) is asserted."""
        return bool(self.levels >> LINES.index(name) & 1)


STATS_FIELDS = (
    "words_out",  # words the peer took (handshakes completed)
    "words_in",  # words taken from the peer
    "perr_out",  # words the peer flagged with PERR
    "perr_in",  # words received with bad parity (PERR sent)
    "timeouts",  # handshake timeouts
    "bad_frames",  # frames from the host dropped (CRC, COBS, length, direction)
    "lost_words",  # positions skipped in WORDS_OUT (gaps)
    "overflow_words",  # WORDS_OUT words dropped for lack of room
    "lost_frames",  # seq numbers skipped by the host's frames
    "discarded_words",  # words dropped by the box (timeout, peer gone, RESET)
    "errors_dropped",  # ERROR reports not sent (queue full)
)
_STATS = struct.Struct("<" + "I" * len(STATS_FIELDS))


@dataclass(frozen=True)
class Stats:
    """Box to host: counters since power-up (each mod 2**32); see STATS_FIELDS."""

    TYPE: ClassVar[MsgType] = MsgType.STATS
    words_out: int = 0
    words_in: int = 0
    perr_out: int = 0
    perr_in: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    lost_words: int = 0
    overflow_words: int = 0
    lost_frames: int = 0
    discarded_words: int = 0
    errors_dropped: int = 0

    def payload(self) -> bytes:
        return _STATS.pack(*(_u32(getattr(self, f), f) for f in STATS_FIELDS))

    @classmethod
    def parse(cls, p: bytes | memoryview) -> Stats:
        _need(p, _STATS.size, cls.TYPE)
        return cls(*_STATS.unpack_from(p))


_ERROR = struct.Struct("<BBHII")


@dataclass(frozen=True)
class ErrorReport:
    """Box to host: something went wrong (the ERROR message; the meaning by ``code``)."""

    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: ErrorCode
    detail: int = 0
    offset: int = 0
    value: int = 0

    def payload(self) -> bytes:
        return _ERROR.pack(
            _u8(int(self.code), "code"),
            _u8(int(self.detail), "detail"),
            0,
            _u32(self.offset, "offset"),
            _u32(self.value, "value"),
        )

    @classmethod
    def parse(cls, p: bytes | memoryview) -> ErrorReport:
        _need(p, _ERROR.size, cls.TYPE)
        code, detail, _, offset, value = _ERROR.unpack_from(p)
        try:
            kind = ErrorCode(code)
        except ValueError as exc:
            raise BoxProtocolError(BadFrameReason.BAD_VALUE, f"ERROR: {exc}") from exc
        return cls(kind, detail, offset, value)


@dataclass(frozen=True)
class Unknown:
    """A message of a type this codec does not know (a newer peer): kept, not parsed."""

    code: int
    payload_bytes: bytes

    def payload(self) -> bytes:
        return self.payload_bytes


BoxMessage = (
    Hello
    | Info
    | Configure
    | Reset
    | LineSet
    | Query
    | WordsOut
    | WordsIn
    | HostCredits
    | BoxCredits
    | Reply
    | LineState
    | Stats
    | ErrorReport
    | Unknown
)
_PARSERS: dict[int, Callable[[bytes | memoryview], BoxMessage]] = {
    int(MsgType.HELLO): Hello.parse,
    int(MsgType.INFO): Info.parse,
    int(MsgType.CONFIGURE): Configure.parse,
    int(MsgType.RESET): Reset.parse,
    int(MsgType.LINE_SET): LineSet.parse,
    int(MsgType.QUERY): Query.parse,
    int(MsgType.WORDS_OUT): WordsOut.parse,
    int(MsgType.WORDS_IN): WordsIn.parse,
    int(MsgType.HOST_CREDITS): HostCredits.parse,
    int(MsgType.BOX_CREDITS): BoxCredits.parse,
    int(MsgType.REPLY): Reply.parse,
    int(MsgType.LINE_STATE): LineState.parse,
    int(MsgType.STATS): Stats.parse,
    int(MsgType.ERROR): ErrorReport.parse,
}
_TYPE_CODES = frozenset(int(t) for t in MsgType)


def max_words_for(max_body: int) -> int:
    """The most words one WORDS frame can carry within a body of ``max_body`` bytes."""
    room = max_body - MIN_BODY - WORDS_HEADER  # for 2n + ceil(n/8) bytes
    if room <= 0:
        return 0
    n = min(0xFFFF, room * 8 // 17 + 1)
    while 2 * n + (n + 7) // 8 > room:
        n -= 1
    return n


@overload
def words_messages(
    kind: type[WordsOut],
    offset: int,
    words: Words,
    parity: ParityLine,
    *,
    max_words: int,
    boundary: bool = False,
) -> list[WordsOut]: ...


@overload
def words_messages(
    kind: type[WordsIn],
    offset: int,
    words: Words,
    parity: ParityLine,
    *,
    max_words: int,
    boundary: bool = False,
) -> list[WordsIn]: ...


def words_messages(
    kind: type[WordsOut] | type[WordsIn],
    offset: int,
    words: Words,
    parity: ParityLine,
    *,
    max_words: int,
    boundary: bool = False,
) -> list[WordsOut] | list[WordsIn]:
    """``words`` cut into messages of at most ``max_words``; ``boundary`` on the last only."""
    if max_words < 1:
        raise BoxProtocolError(BadFrameReason.BAD_VALUE, "max_words must be at least 1")
    n = len(words)
    starts = range(0, max(n, 1), max_words)
    if kind is WordsOut:
        return [
            WordsOut(
                position_add(offset, s),
                words[s : s + max_words],
                parity[s : s + max_words],
                boundary and s + max_words >= n,
            )
            for s in starts
        ]
    return [
        WordsIn(position_add(offset, s), words[s : s + max_words], parity[s : s + max_words])
        for s in starts
    ]


# --- COBS ----------------------------------------------------------------------------


def _cobs_encode_small(data: bytes) -> bytes:
    out = bytearray()
    parts = data.split(b"\0")
    last = len(parts) - 1
    for i, seg in enumerate(parts):
        while len(seg) >= 254:
            out.append(255)
            out += seg[:254]
            seg = seg[254:]
            if not seg and i == last:
                return bytes(out)
        out.append(len(seg) + 1)
        out += seg
    return bytes(out)


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS (Cheshire and Baker) of ``data``: no zero byte in the result.

    A run of 254 non-zero bytes that ends the data is encoded ``FF <254 bytes>`` with no
    final ``01`` (as the ``cobs`` package and Wikipedia's examples do); the decoder
    accepts both forms.
    """
    data = bytes(data)
    n = len(data)
    if n < _SMALL:
        return _cobs_encode_small(data)
    a = np.frombuffer(data, dtype=np.uint8)
    zeros = np.flatnonzero(a == 0)
    starts = np.empty(len(zeros) + 1, dtype=np.int64)
    starts[0] = 0
    starts[1:] = zeros + 1
    lengths = np.empty_like(starts)
    lengths[:-1] = zeros
    lengths[-1] = n
    lengths -= starts
    if int(lengths.max()) < 254:  # the usual case: codes replace the zeros, one prefix byte
        out = np.empty(n + 1, dtype=np.uint8)
        out[1:] = a
        out[starts] = lengths + 1
        return out.tobytes()
    full, rest = np.divmod(lengths, 254)
    codes = full + 1
    if rest[-1] == 0 and full[-1] > 0:
        codes[-1] -= 1  # a final run of k*254 bytes needs no closing code
    segment = np.repeat(np.arange(len(lengths)), codes)
    k = np.arange(len(segment)) - np.repeat(np.cumsum(codes) - codes, codes)
    at = (starts - np.arange(len(starts)))[segment] + 254 * k
    values = np.where(k < full[segment], 255, rest[segment] + 1).astype(np.uint8)
    return np.insert(a[a != 0], at, values).tobytes()


def _cobs_error(text: str) -> BoxProtocolError:
    return BoxProtocolError(BadFrameReason.COBS, text)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """The bytes that :func:`cobs_encode` turned into ``data``; BoxProtocolError if invalid."""
    enc = bytes(data)
    m = len(enc)
    if m == 0:
        raise _cobs_error("empty COBS block")
    if enc.find(0) >= 0:
        raise _cobs_error("zero byte inside a COBS block")
    codes: list[int] = []
    add = codes.append
    p = 0
    while p < m:  # the chain of code bytes: one step per zero (or 254-byte run) of data
        add(p)
        p += enc[p]
    if p != m:
        raise _cobs_error(f"code byte at {codes[-1]} runs {p - m} bytes past the end")
    if len(codes) < 16:
        out = bytearray()
        last = len(codes) - 1
        for j, at in enumerate(codes):
            code = enc[at]
            out += enc[at + 1 : at + code]
            if code < 255 and j < last:
                out.append(0)
        return bytes(out)
    # Every code byte but the first stands where the decoded data has its zero, unless
    # the code before it was 255 (a run of 254 with no zero): then it is just dropped.
    pos = np.asarray(codes, dtype=np.intp)
    full = np.frombuffer(enc, dtype=np.uint8)[pos[:-1]] == 255
    e = np.frombuffer(enc, dtype=np.uint8).copy()
    e[pos] = 0
    if not full.any():
        return e[1:].tobytes()
    keep = np.ones(m, dtype=bool)
    keep[0] = False
    keep[pos[1:][full]] = False
    return e[keep].tobytes()


# --- frames --------------------------------------------------------------------------


def encode_body(message: BoxMessage, seq: int) -> bytes:
    """``type seq payload crc32`` of ``message`` (before COBS)."""
    code = message.code if isinstance(message, Unknown) else int(message.TYPE)
    head = bytes([_u8(code, "type"), _u8(seq, "seq")]) + message.payload()
    if len(head) + 4 > MAX_BODY:
        raise BoxProtocolError(BadFrameReason.TOO_LONG, f"a body of {len(head) + 4} bytes")
    return head + struct.pack("<I", zlib.crc32(head))


def encode_frame(message: BoxMessage, seq: int) -> bytes:
    """The bytes of one frame on the wire: COBS of the body, then the 0x00 delimiter."""
    return cobs_encode(encode_body(message, seq)) + b"\0"


def decode_body(body: bytes | memoryview) -> tuple[int, BoxMessage]:
    """``(seq, message)`` of a body (after COBS); BoxProtocolError when it is not valid."""
    if len(body) < MIN_BODY:
        raise BoxProtocolError(BadFrameReason.TOO_SHORT, f"a body of {len(body)} bytes")
    view = memoryview(body)
    (crc,) = struct.unpack_from("<I", view, len(view) - 4)
    if zlib.crc32(view[:-4]) != crc:
        raise BoxProtocolError(BadFrameReason.CRC, "CRC-32 mismatch")
    code, seq = view[0], view[1]
    payload = view[2:-4]
    parser = _PARSERS.get(code)
    if parser is None:
        return seq, Unknown(code, bytes(payload))
    return seq, parser(payload)


@dataclass(frozen=True)
class BoxFrame:
    """A frame that arrived whole and valid."""

    seq: int
    message: BoxMessage
    size: int  # bytes it took on the wire, delimiter included


@dataclass(frozen=True)
class BadFrame:
    """Bytes up to a delimiter that were not a valid frame (dropped)."""

    reason: BadFrameReason
    size: int  # bytes dropped, delimiter included
    text: str = ""


FrameSender = Literal["host", "box"]
"""Which end sent a box-protocol frame (a decoder told so rejects frames of the other)."""


def _wire_limit(max_body: int) -> int:
    """The longest COBS encoding of a body of ``max_body`` bytes (no delimiter)."""
    return max_body + max_body // 254 + 1


def _check_sender(message: BoxMessage, sender: FrameSender | None) -> BadFrame | None:
    if sender is None or isinstance(message, Unknown):
        return None
    from_box = int(message.TYPE) & 0x80 != 0
    if from_box != (sender == "box"):
        return BadFrame(
            BadFrameReason.WRONG_DIRECTION, 0, f"{message.TYPE.name} does not come from {sender}"
        )
    return None


def _frame_from(
    block: bytes | memoryview, size: int, max_body: int, sender: FrameSender | None
) -> BoxFrame | BadFrame | None:
    if len(block) == 0:
        return None  # an empty frame: a delimiter alone is a sync/keep-alive, no event
    if len(block) > _wire_limit(max_body):
        return BadFrame(BadFrameReason.TOO_LONG, size, f"{len(block)} bytes before a delimiter")
    try:
        body = cobs_decode(block)
        if len(body) > max_body:
            raise BoxProtocolError(BadFrameReason.TOO_LONG, f"a body of {len(body)} bytes")
        seq, message = decode_body(body)
    except BoxProtocolError as exc:
        return BadFrame(exc.reason, size, str(exc))
    wrong = _check_sender(message, sender)
    if wrong is not None:
        return BadFrame(wrong.reason, size, wrong.text)
    return BoxFrame(seq, message, size)


def decode_frame(
    buf: bytes | bytearray | memoryview,
    start: int = 0,
    *,
    max_body: int = MAX_BODY,
    sender: FrameSender | None = None,
) -> tuple[BoxFrame | BadFrame | None, int]:
    """The first frame in ``buf[start:]`` and how many bytes it consumed.

    ``(None, 0)``: no delimiter yet (feed more bytes), unless more than a frame's worth is
    waiting, which is a ``BadFrame(TOO_LONG)`` consuming all of it. ``(None, k)``: ``k``
    bytes of empty frames (lone delimiters) skipped. ``sender`` ("host" or "box") makes a
    message type the other side sends a ``BadFrame(WRONG_DIRECTION)``.
    """
    data = memoryview(buf)[start:]
    skipped = 0
    while skipped < len(data) and data[skipped] == 0:
        skipped += 1
    if skipped:
        return None, skipped
    end = bytes(data[: _wire_limit(max_body) + 1]).find(0)
    if end < 0:
        if len(data) > _wire_limit(max_body):
            return BadFrame(BadFrameReason.TOO_LONG, len(data), "no delimiter"), len(data)
        return None, 0
    return _frame_from(data[:end], end + 1, max_body, sender), end + 1


class BoxFrameDecoder:
    """Bytes in, split anywhere, :class:`BoxFrame` and :class:`BadFrame` events out.

    Holds at most one frame's worth of bytes (``max_body`` plus the COBS overhead): a
    longer run without a delimiter is reported once as ``BadFrame(TOO_LONG)`` and the
    bytes up to the next delimiter are dropped (resynchronisation at the delimiter).
    """

    def __init__(self, *, max_body: int = MAX_BODY, sender: FrameSender | None = None) -> None:
        if not MIN_BODY <= max_body <= MAX_BODY:
            raise ValueError(f"max_body: {MIN_BODY} to {MAX_BODY}, got {max_body}")
        self.max_body = max_body
        self.sender: FrameSender | None = sender
        self._limit = _wire_limit(max_body)
        self._buf = bytearray()
        self._discarding = 0  # bytes dropped so far of an over-long frame (0: not dropping)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget held bytes (for example after re-opening the port)."""
        self._buf.clear()
        self._discarding = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[BoxFrame | BadFrame]:
        """Add bytes as they arrived; return the events of every frame they complete."""
        events: list[BoxFrame | BadFrame] = []
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if self._discarding:
            end = bytes(view).find(0)
            if end < 0:
                self._discarding += len(view)
                return events
            view = view[end + 1 :]
            self._discarding = 0
        buf = self._buf
        buf += view
        pos = 0
        n = len(buf)
        while pos < n:
            end = buf.find(0, pos)
            if end < 0:
                break
            if end > pos:
                block = memoryview(buf)[pos:end]
                event = _frame_from(block, end + 1 - pos, self.max_body, self.sender)
                block.release()
                if event is not None:
                    events.append(event)
            pos = end + 1
        del buf[:pos]
        if len(buf) > self._limit:
            events.append(BadFrame(BadFrameReason.TOO_LONG, len(buf), "no delimiter"))
            self._discarding = len(buf)
            buf.clear()
        return events


def _measure(words_total: int = 1 << 20, max_body: int = 4096) -> dict[str, float]:
    """MB/s of words (2 bytes a word) through encode plus decode, for four kinds of data."""
    import time

    rng = np.random.default_rng(1)
    kinds = {
        "random words": rng.integers(0, 1 << 16, words_total),
        "12-bit pixels": rng.integers(0, 1 << 12, words_total),
        "small values": rng.integers(0, 64, words_total),
        "all zero": np.zeros(words_total, dtype=np.int64),
    }
    results: dict[str, float] = {}
    for label, values in kinds.items():
        words = values.astype(np.uint16)
        parity = rng.integers(0, 2, words_total).astype(np.uint8)
        t0 = time.perf_counter()
        msgs = words_messages(WordsOut, 0, words, parity, max_words=max_words_for(max_body))
        wire = b"".join([encode_frame(m, i & 0xFF) for i, m in enumerate(msgs)])
        events = BoxFrameDecoder(max_body=max_body).feed(wire)
        elapsed = time.perf_counter() - t0
        back = [
            e.message.words
            for e in events
            if isinstance(e, BoxFrame) and isinstance(e.message, WordsOut)
        ]
        if not np.array_equal(np.concatenate(back), words):  # pragma: no cover
            raise AssertionError(f"{label}: round trip failed")
        results[label] = 2 * words_total / elapsed / 1e6
    return results


if __name__ == "__main__":  # pragma: no cover - a measurement, not a test
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, rate in _measure().items():
        logging.getLogger(__name__).info("%-14s encode + decode: %6.1f MB/s of words", name, rate)


_RENAMED = {
    "Frame": "BoxFrame",
    "FrameDecoder": "BoxFrameDecoder",
    "Message": "BoxMessage",
    "Sender": "FrameSender",
}
"""Old names (deprecated) of classes renamed so that no name means two things."""


def __getattr__(name: str) -> object:
    """An old name of a renamed class, with a DeprecationWarning."""
    return old_name(__name__, _RENAMED, globals(), name)

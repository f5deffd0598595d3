"""The link profile: every parameter of the 50-pin link that the standard would fix.

The physical, data link, transport and session layers of ACR-NEMA 300 are not publicly
documented (``shared/reference/acrnema-standard.md``, sections 1-3). The project defines
a *reference profile*, its own reconstruction, rule by rule in ``docs/link-profile.md``
(each rule tagged sourced, inferred or chosen); this module holds its parameters, one
frozen dataclass per layer, and each layer of :mod:`bridge.acrnema` takes its section as
its parameters (one definition of each; a value a layer needs in other units, such as
:attr:`DatalinkSection.ack_timeout` in seconds, is a property of the section). A site
fits the bridge to what its scanner really does with a TOML profile file that overrides
any subset of them::

    name = "ct-room-2"
    [physical]
    parity = "even"
    [datalink]
    max_payload_words = 512
    [application.commands]
    echo = [0x0031, 0x8031]

:func:`load_profile` merges such a file over :data:`REFERENCE` (tables such as
``physical.pins`` or ``application.commands`` key by key) and validates the result; a
:class:`ProfileError` (a :class:`~bridge.errors.ConfigError`) lists every problem, each
naming its key. :func:`to_toml` writes a whole profile back out, so that loading its
output gives the same profile (``acrnema-bridge profile show``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bridge._renamed import old_name
from bridge.errors import ConfigError, ProfileError

__all__ = [
    "LINE_NAMES",
    "MAX_SEGMENTS",
    "REFERENCE",
    "ApplicationSection",
    "DatalinkSection",
    "LinkStatus",
    "PhysicalSection",
    "Profile",
    "ProfileError",
    "SessionSection",
    "TransportSection",
    "load_profile",
    "profile_from_mapping",
    "to_toml",
    "validate",
]

Pair = tuple[int, int]

DATA_LINES = tuple(f"D{i}" for i in range(16))
# The lines of the reference profile, pair n (1-25) carrying LINE_NAMES[n - 1].
LINE_NAMES = (
    *DATA_LINES,
    "PARITY",  # odd parity over D0-D15, driven with the data
    "REQ",  # sender: data and parity are valid
    "ACK",  # receiver: word taken (or refused, with PERR)
    "DIR",  # bus direction: asserted while side A owns D0-D15, PARITY and REQ
    "READY_A",  # side A (the initiator, normally the scanner) is powered and initialised
    "READY_B",  # side B (the responder, normally the bridge) is powered and initialised
    "PERR",  # receiver, with ACK: the word it took had bad parity
    "BREQ",  # side B asks side A for the bus (DIR is driven by side A only)
    "SPARE",
)
CONTROL_LINES = ("REQ", "ACK", "DIR", "READY_A", "READY_B", "BREQ")
OPTIONAL_LINES = ("DIR", "BREQ", "READY", "PERR")  # physical.control_lines: a subset
HANDSHAKES = ("four-phase", "two-phase", "strobe")
SIGNALLING = ("differential", "single_ended")
PARITY_LINES = ("PARITY", "PERR")  # required unless parity is "none"
# the values of the data link, transport and session dialect knobs (the first: reference)
DATALINK_CHECKS = ("crc-16/ccitt-false", "crc-16", "sum-16", "none")
DATALINK_DELIMITINGS = ("start_word", "length_only")
DATALINK_ACK_MODES = ("selective", "none")
TRANSPORT_MODES = ("packets", "none")
SESSION_MODES = ("pdus", "none")


def _freeze(obj: object, *names: str) -> None:
    """Make the mapping fields ``names`` of a frozen dataclass read-only copies."""
    for name in names:
        object.__setattr__(obj, name, MappingProxyType(dict(getattr(obj, name))))


def _reference_pins() -> Mapping[str, Pair]:
    """Pair n (1-25) on pins 2n-1 (+) and 2n (-), lines in the order of LINE_NAMES."""
    return {name: (2 * n - 1, 2 * n) for n, name in enumerate(LINE_NAMES, 1)}


@dataclass(frozen=True)
class PhysicalSection:
    """Lines, polarities, parity, handshake timing, word byte order (link-profile.md §1)."""

    pins: Mapping[str, Pair] = field(default_factory=_reference_pins)  # line: (+, -) pins
    active_low: tuple[str, ...] = ()  # lines asserted by driving + below -
    parity: str = "odd"  # odd | even | none
    text_byte_order: str = "big"  # "big": the first character of a pair on D15-D8
    binary_byte_order: str = "big"  # "big": 32-bit values high word first
    setup_ns: int = 100  # data and parity stable before REQ is asserted
    hold_ns: int = 100  # data and parity held after ACK is seen
    turnaround_ns: int = 1000  # bus handed over: the new owner waits this before driving
    handshake_timeout_ms: float = 100.0  # an edge not answered within this: timeout
    # the bus's shape (link-profile.md §1.3): handshake mode, optional lines, parity lines
    handshake: str = "four-phase"  # four-phase | two-phase | strobe
    control_lines: tuple[str, ...] = OPTIONAL_LINES  # of DIR, BREQ, READY, PERR
    parity_lines: int = 1  # 1: PARITY over D0-D15; 2: PARITY over D0-D7, PARITY_HI D8-D15
    signalling: str = "differential"  # differential | single_ended (pair: signal, return)
    ground_pins: tuple[int, ...] = ()  # pins tied to signal ground, no line on them

    def __post_init__(self) -> None:
        _freeze(self, "pins")

    @property
    def bus_lines(self) -> tuple[str, ...]:
        """The lines this bus has, in a fixed order: data, parity, handshake, control."""
        lines = list(DATA_LINES)
        if self.parity != "none":
            lines += ["PARITY", "PARITY_HI"][: self.parity_lines]
        lines += ["REQ"] if self.handshake == "strobe" else ["REQ", "ACK"]
        for name in OPTIONAL_LINES:
            if name in self.control_lines:
                if name == "READY":
                    lines += ["READY_A", "READY_B"]
                elif name != "PERR" or self.parity != "none":
                    lines.append(name)
        return tuple(lines)


def _reference_frame_types() -> Mapping[str, int]:
    return {"data": 1, "ack": 2, "nak": 3}


@dataclass(frozen=True)
class DatalinkSection:
    """Frames, CRC, acknowledgement and retransmission (link-profile.md §2).

    Frame: start word; header word ``type << 12 | sequence`` (bits 8-11 zero); payload
    word count; payload; CRC-16 over the header, count and payload words.
    """

    start_word: int = 0xA5C3
    frame_types: Mapping[str, int] = field(default_factory=_reference_frame_types)  # 1-15
    sequence_bits: int = 8  # low bits of the header word, at most 8
    max_payload_words: int = 256
    crc: str = "crc-16/ccitt-false"  # polynomial 0x1021, as binascii.crc_hqx computes
    crc_init: int = 0xFFFF
    window: int = 8  # DATA frames sent and not yet acknowledged, at most
    ack_timeout_ms: float = 50.0  # no ACK within this: send the frame again
    retry_limit: int = 8  # retransmissions of one frame before the link has failed
    # dialect knobs (link-profile.md, "Dialect knobs: data link, transport, session")
    delimiting: str = "start_word"  # start_word | length_only (no start word)
    crc_poly: int = 0x1021  # crc = "crc-16": the generic CRC-16's parameters
    crc_refin: bool = False
    crc_refout: bool = False
    crc_xorout: int = 0x0000
    ack_mode: str = "selective"  # selective (ACK/NAK, window) | none (no ACK, no resend)

    def __post_init__(self) -> None:
        _freeze(self, "frame_types")

    @property
    def ack_timeout(self) -> float:
        """``ack_timeout_ms`` in seconds, as the data link's clock counts."""
        return self.ack_timeout_ms / 1000


MAX_SEGMENTS = 1 << 15  # the segment index of a packet header has 15 bits


@dataclass(frozen=True)
class TransportSection:
    """Packets carrying message segments, and reassembly (link-profile.md §3).

    Packet: message ID word; ``last << 15 | segment index`` word; segment length in
    bytes (two words, in ``physical.binary_byte_order``); the segment, padded to words.
    """

    max_segment_bytes: int = 65536  # message bytes in one packet
    max_message_bytes: int = 512 << 20  # a longer message is refused, not reassembled
    reassembly_timeout_s: float = 30.0  # an incomplete message older than this is dropped
    # dialect knob (link-profile.md, "Dialect knobs: data link, transport, session")
    mode: str = "packets"  # packets | none (no packet header: the frames mark a message)


def _reference_pdu_types() -> Mapping[str, int]:
    return {
        "connect": 1,
        "accept": 2,
        "reject": 3,
        "data": 4,
        "release": 5,
        "release_reply": 6,
        "abort": 7,
    }


@dataclass(frozen=True)
class SessionSection:
    """Connect, accept, reject, release, abort; logical addresses (link-profile.md §4).

    Every transport message starts with a session PDU type word; a ``data`` PDU carries
    one application message (command group 0000, then the data set if any).
    """

    pdu_types: Mapping[str, int] = field(default_factory=_reference_pdu_types)
    address_length: int = 16  # characters of a logical address (an AE title has 16)
    connect_timeout_s: float = 10.0  # CONNECT sent, no ACCEPT or REJECT within this: abort
    release_timeout_s: float = 10.0  # RELEASE sent, no reply within this: abort
    abort_quiet_s: float = 1.0  # after an ABORT, ignore the link this long before a CONNECT
    idle_timeout_s: float = 300.0  # no traffic on a connection this long: release it
    # dialect knob (link-profile.md, "Dialect knobs: data link, transport, session")
    mode: str = "pdus"  # pdus | none (application messages directly on the transport)

    def __post_init__(self) -> None:
        _freeze(self, "pdu_types")


def _reference_commands() -> Mapping[str, Pair]:
    # DICOM-compatible codes (request, response); 0 = no response (C-CANCEL has none).
    return {
        "store": (0x0001, 0x8001),
        "get": (0x0010, 0x8010),
        "find": (0x0020, 0x8020),
        "echo": (0x0030, 0x8030),
        "cancel": (0x0FFF, 0x0000),
    }


class LinkStatus(enum.StrEnum):
    """The status names of the reference profile's ``application.statuses`` table.

    Members are their names as strings (``LinkStatus.SUCCESS == "success"``), so the
    table's keys, the TOML profile and an :class:`~bridge.link.responder.Answer` keep
    plain names; a profile may add names of its own, which stay strings.
    """

    SUCCESS = "success"
    CANCEL = "cancel"
    PENDING = "pending"
    OUT_OF_RESOURCES = "out_of_resources"
    NOT_STORED = "not_stored"
    CANNOT_UNDERSTAND = "cannot_understand"


def _reference_statuses() -> Mapping[str, int]:
    return {
        LinkStatus.SUCCESS: 0x0000,
        LinkStatus.CANCEL: 0xFE00,
        LinkStatus.PENDING: 0xFF00,
        LinkStatus.OUT_OF_RESOURCES: 0xA700,
        LinkStatus.NOT_STORED: 0xA900,
        LinkStatus.CANNOT_UNDERSTAND: 0xC000,
    }


@dataclass(frozen=True)
class ApplicationSection:
    """Command table, Data Set Type values, status codes (link-profile.md §5)."""

    commands: Mapping[str, Pair] = field(default_factory=_reference_commands)
    statuses: Mapping[str, int] = field(default_factory=_reference_statuses)
    data_set_none: int = 0x0101  # (0000,0800): no data set follows
    data_set_identifier: int = 0x0102  # (0000,0800): an identifier follows (find, get)
    data_set_present: int = 0x0000  # (0000,0800) we send when a data set follows
    recognition_code: str = "ACR-NEMA 2.0"  # (0000,0010) of messages we send
    # Dialect knobs (link-profile.md, "Dialect knobs: messages"); the defaults are the
    # reference's behaviour.
    length_to_end_written: bool = False  # (0000,0001) Length to End in messages we send
    length_to_end_required: bool = False  # a message without (0000,0001) is refused
    cancel_answer: str = "cannot_understand"  # status name answering CANCEL, or "none"
    accepted_recognition_codes: tuple[str, ...] = ()  # (0000,0010) taken; empty: any
    station_id_length: int = 0  # (0000,0200)/(0000,0300) written padded to this; 0: as is
    spi_commands: Mapping[str, Pair] = field(default_factory=dict)  # (0001,0018); empty: off
    spi_recognition_code: str = "SPI Release 1 "  # (0001,0010) of SPI messages we send
    data_set_after_reply: bool = False  # SPI: the data set follows the SEND reply

    def __post_init__(self) -> None:
        _freeze(self, "commands", "statuses", "spi_commands")


@dataclass(frozen=True)
class Profile:
    """A whole link profile, one part per layer."""

    name: str = "reference"
    physical: PhysicalSection = field(default_factory=PhysicalSection)
    datalink: DatalinkSection = field(default_factory=DatalinkSection)
    transport: TransportSection = field(default_factory=TransportSection)
    session: SessionSection = field(default_factory=SessionSection)
    application: ApplicationSection = field(default_factory=ApplicationSection)


REFERENCE = Profile()

_SECTIONS: dict[str, type] = {
    "physical": PhysicalSection,
    "datalink": DatalinkSection,
    "transport": TransportSection,
    "session": SessionSection,
    "application": ApplicationSection,
}
# fields written in hexadecimal by to_toml (codes rather than quantities)
_HEX = (
    {"start_word", "crc_init", "crc_poly", "crc_xorout", "commands", "statuses"}
    | {"spi_commands"}
    | {f.name for f in dataclasses.fields(ApplicationSection) if f.name.startswith("data_set_")}
)


class _Invalid(Exception):
    """A value of the wrong type (internal: becomes one problem of a ProfileError)."""


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise _Invalid(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise _Invalid(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Invalid(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise _Invalid(f"{where}: expected a list of {len(args)}, got {list(value)!r}")
        return tuple(
            _coerce(h, item, f"{where}[{i}]")
            for i, (h, item) in enumerate(zip(args, value, strict=True))
        )
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise _Invalid(f"{where}: expected a table, got {value!r}")
        return {key: _coerce(args[1], item, f"{where}.{key}") for key, item in value.items()}
    raise TypeError(f"no coercion for {hint!r}")  # a programming error, not a user's


def profile_from_mapping(data: Mapping[str, Any], *, source: str = "<profile>") -> Profile:
    """A profile from parsed TOML: the reference with ``data`` merged over it, validated.

    Scalars and lists replace the reference value; tables (``physical.pins``,
    ``datalink.frame_types``, ``application.commands``, ``application.statuses``) are
    merged key by key. Raises :class:`ProfileError` listing every problem.
    """
    problems: list[str] = []
    # [channels]: the channel map a fitted profile carries (profile fit, capture decode)
    unknown = sorted(set(data) - set(_SECTIONS) - {"name", "channels"})
    if unknown:
        problems.append(f"unknown section(s) {', '.join(unknown)}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        base = getattr(REFERENCE, name)
        given = data.get(name, {})
        if not isinstance(given, Mapping):
            problems.append(f"{name}: must be a table, got {given!r}")
            given = {}
        hints = typing.get_type_hints(cls)
        extra = sorted(set(given) - set(hints))
        if extra:
            problems.append(f"{name}: unknown key(s) {', '.join(extra)}")
        values: dict[str, Any] = {}
        for key in hints.keys() & given.keys():
            try:
                value = _coerce(hints[key], given[key], f"{name}.{key}")
            except _Invalid as exc:
                problems.append(str(exc))
                continue
            if isinstance(value, dict):
                value = {**getattr(base, key), **value}
            values[key] = value
        sections[name] = dataclasses.replace(base, **values)
    profile_name = data.get("name", "custom" if data else REFERENCE.name)
    if not isinstance(profile_name, str):
        problems.append(f"name: expected a string, got {profile_name!r}")
        profile_name = "custom"
    if problems:  # type errors first: checking the merged values would only repeat them
        raise ProfileError(source, problems)
    profile = Profile(name=profile_name, **sections)
    problems = validate(profile)
    if problems:
        raise ProfileError(source, problems)
    return profile


def _within(problems: list[str], key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        problems.append(f"{key}: {low:g} to {high:g}, got {value!r}")


def _validate_physical(ph: PhysicalSection, problems: list[str]) -> None:
    _validate_bus(ph, problems)
    required = ph.bus_lines
    missing = [n for n in required if n not in ph.pins]
    if missing:
        problems.append(f"physical.pins: missing line(s) {', '.join(missing)}")
    used: dict[int, str] = {pin: "a ground pin" for pin in ph.ground_pins}
    for name, pair in ph.pins.items():
        key = f"physical.pins.{name}"
        if name not in required and name in _OFF_BUS_IGNORED:
            continue  # a line this bus does not have: its pins are free
        if re.fullmatch(r"D\d+", name) and name not in DATA_LINES:
            problems.append(f"{key}: the data lines are D0-D15 (16 lines)")
        if not all(1 <= p <= 50 for p in pair) or pair[0] == pair[1]:
            problems.append(f"{key}: a pair of two different pins 1-50, got {list(pair)}")
            continue
        for pin in pair:
            if pin in used:
                problems.append(f"{key}: pin {pin} is already used by {used[pin]}")
            used[pin] = name
    for name in ph.active_low:
        if name not in ph.pins:
            problems.append(f"physical.active_low: {name} is not a line of physical.pins")
    if len(set(ph.active_low)) != len(ph.active_low):
        problems.append("physical.active_low: a line is listed twice")
    if ph.parity not in ("odd", "even", "none"):
        problems.append(f"physical.parity: odd, even or none, got {ph.parity!r}")
    for key in ("text_byte_order", "binary_byte_order"):  # may differ (link-profile.md §8)
        if getattr(ph, key) not in ("big", "little", "auto"):
            problems.append(f"physical.{key}: big, little or auto, got {getattr(ph, key)!r}")
    _within(problems, "physical.setup_ns", ph.setup_ns, 1, 1_000_000)
    _within(problems, "physical.hold_ns", ph.hold_ns, 1, 1_000_000)
    _within(problems, "physical.turnaround_ns", ph.turnaround_ns, 1, 1_000_000)
    _within(problems, "physical.handshake_timeout_ms", ph.handshake_timeout_ms, 0.001, 3.6e6)


# lines of the reference pin map that a bus without them leaves unconnected
_OFF_BUS_IGNORED = frozenset({"SPARE", "PARITY", "PARITY_HI", "ACK", *CONTROL_LINES, "PERR"})


def _validate_bus(ph: PhysicalSection, problems: list[str]) -> None:
    """The bus's shape: handshake, optional lines, parity lines, signalling, grounds."""
    if ph.handshake not in HANDSHAKES:
        problems.append(f"physical.handshake: {', '.join(HANDSHAKES)}; got {ph.handshake!r}")
    for name in ph.control_lines:
        if name not in OPTIONAL_LINES:
            problems.append(
                f"physical.control_lines: {name!r} is not one of {', '.join(OPTIONAL_LINES)}"
            )
    if len(set(ph.control_lines)) != len(ph.control_lines):
        problems.append("physical.control_lines: a line is listed twice")
    if "DIR" not in ph.control_lines and "BREQ" not in ph.control_lines:
        problems.append(
            "physical.control_lines: DIR or BREQ is needed (without either, which side "
            "drives the bus is not on the wire)"
        )
    if ph.parity_lines not in (1, 2):
        problems.append(f"physical.parity_lines: 1 or 2, got {ph.parity_lines!r}")
    if ph.signalling not in SIGNALLING:
        problems.append(f"physical.signalling: {', '.join(SIGNALLING)}; got {ph.signalling!r}")
    for pin in ph.ground_pins:
        if not 1 <= pin <= 50:
            problems.append(f"physical.ground_pins: pins 1-50, got {pin}")
    if len(set(ph.ground_pins)) != len(ph.ground_pins):
        problems.append("physical.ground_pins: a pin is listed twice")


def _codes(
    problems: list[str],
    key: str,
    codes: Mapping[str, int],
    reference: Mapping[str, int],
    high: int,
    noun: str,
) -> None:
    """A table of type codes (``frame_types``, ``pdu_types``): exactly the kinds of the
    ``reference`` table, each code in 1..``high``, no two kinds (``noun`` types) sharing a
    code."""
    if set(codes) != set(reference):
        problems.append(f"{key}: exactly {', '.join(sorted(reference))}")
    for kind, code in codes.items():
        _within(problems, f"{key}.{kind}", code, 1, high)
    if len(set(codes.values())) != len(codes):
        problems.append(f"{key}: two {noun} types share a code")


def _validate_datalink(dl: DatalinkSection, problems: list[str]) -> None:
    _within(problems, "datalink.start_word", dl.start_word, 0, 0xFFFF)
    _codes(problems, "datalink.frame_types", dl.frame_types, _reference_frame_types(), 15, "frame")
    _within(problems, "datalink.sequence_bits", dl.sequence_bits, 2, 8)
    if 2 <= dl.sequence_bits <= 8:
        _within(problems, "datalink.window", dl.window, 1, 2 ** (dl.sequence_bits - 1) - 1)
    _within(problems, "datalink.max_payload_words", dl.max_payload_words, 1, 0xFFFF)
    if dl.crc not in DATALINK_CHECKS:
        problems.append(f"datalink.crc: one of {', '.join(DATALINK_CHECKS)}, got {dl.crc!r}")
    _within(problems, "datalink.crc_init", dl.crc_init, 0, 0xFFFF)
    _within(problems, "datalink.ack_timeout_ms", dl.ack_timeout_ms, 0.001, 3.6e6)
    _within(problems, "datalink.retry_limit", dl.retry_limit, 1, 1000)
    if dl.delimiting not in DATALINK_DELIMITINGS:
        problems.append(
            f"datalink.delimiting: one of {', '.join(DATALINK_DELIMITINGS)}, got {dl.delimiting!r}"
        )
    _within(problems, "datalink.crc_poly", dl.crc_poly, 1, 0xFFFF)
    _within(problems, "datalink.crc_xorout", dl.crc_xorout, 0, 0xFFFF)
    if dl.ack_mode not in DATALINK_ACK_MODES:
        problems.append(
            f"datalink.ack_mode: one of {', '.join(DATALINK_ACK_MODES)}, got {dl.ack_mode!r}"
        )
    if dl.delimiting == "length_only" and dl.crc == "none":
        problems.append(
            "datalink.delimiting: length_only needs a check (datalink.crc not none) to find "
            "the frames again after damage"
        )


def _validate_transport(tr: TransportSection, problems: list[str]) -> None:
    if tr.max_segment_bytes % 2:
        problems.append("transport.max_segment_bytes: must be even (whole words)")
    _within(problems, "transport.max_segment_bytes", tr.max_segment_bytes, 2, 2**32 - 2)
    _within(problems, "transport.max_message_bytes", tr.max_message_bytes, 2, 2**32 - 2)
    if tr.max_message_bytes < tr.max_segment_bytes:
        problems.append("transport.max_message_bytes: at least transport.max_segment_bytes")
    elif tr.max_message_bytes > MAX_SEGMENTS * tr.max_segment_bytes:
        problems.append(
            f"transport.max_message_bytes: more than {MAX_SEGMENTS} segments "
            f"(15-bit segment index) of transport.max_segment_bytes"
        )
    _within(problems, "transport.reassembly_timeout_s", tr.reassembly_timeout_s, 0.001, 86400)
    if tr.mode not in TRANSPORT_MODES:
        problems.append(f"transport.mode: one of {', '.join(TRANSPORT_MODES)}, got {tr.mode!r}")


def _validate_session(se: SessionSection, problems: list[str]) -> None:
    _codes(problems, "session.pdu_types", se.pdu_types, _reference_pdu_types(), 0xFFFF, "PDU")
    _within(problems, "session.address_length", se.address_length, 1, 64)
    for key in ("connect_timeout_s", "release_timeout_s", "abort_quiet_s", "idle_timeout_s"):
        _within(problems, f"session.{key}", getattr(se, key), 0.001, 86400)
    if se.mode not in SESSION_MODES:
        problems.append(f"session.mode: one of {', '.join(SESSION_MODES)}, got {se.mode!r}")


def _validate_application(ap: ApplicationSection, problems: list[str]) -> None:
    codes: dict[int, str] = {}
    for name, (request, response) in ap.commands.items():
        key = f"application.commands.{name}"
        if not 1 <= request <= 0x7FFF:
            problems.append(f"{key}: request code 0x0001 to 0x7FFF, got {request:#06x}")
            continue
        if response not in (0, request | 0x8000):
            problems.append(
                f"{key}: response {response:#06x} is neither 0 (none) nor "
                f"request | 0x8000 ({request | 0x8000:#06x})"
            )
        for code in (request, response) if response else (request,):
            if code in codes:
                problems.append(f"{key}: code {code:#06x} is also {codes[code]}")
            codes[code] = name
    for name in ("store", "echo"):
        if name not in ap.commands:
            problems.append(f"application.commands: {name} is required")
    if LinkStatus.SUCCESS not in ap.statuses:
        problems.append("application.statuses: success is required")
    seen: dict[int, str] = {}
    for name, code in ap.statuses.items():
        _within(problems, f"application.statuses.{name}", code, 0, 0xFFFF)
        if code in seen:
            problems.append(f"application.statuses.{name}: code {code:#06x} is also {seen[code]}")
        seen[code] = name
    data_set = {
        key: getattr(ap, key)
        for key in ("data_set_none", "data_set_identifier", "data_set_present")
    }
    for key, code in data_set.items():
        _within(problems, f"application.{key}", code, 0, 0xFFFF)
    if len(set(data_set.values())) != len(data_set):
        problems.append("application.data_set_present: the data set types must differ")
    if not re.fullmatch(r"[ -~]{1,16}", ap.recognition_code):
        problems.append("application.recognition_code: 1 to 16 printable ASCII characters")
    _validate_dialect(ap, problems)


SPI_COMMANDS = ("gcbegin", "ready", "send", "gcend")  # the SPI group copy (evidence N3)


def _validate_dialect(ap: ApplicationSection, problems: list[str]) -> None:
    """The dialect knobs of ``[application]`` (link-profile.md, "Dialect knobs: messages")."""
    if ap.cancel_answer != "none" and ap.cancel_answer not in ap.statuses:
        problems.append(
            f"application.cancel_answer: a status name of application.statuses or none, "
            f"got {ap.cancel_answer!r}"
        )
    if ap.cancel_answer != "none" and "cancel" not in ap.commands:
        problems.append("application.cancel_answer: application.commands has no cancel")
    for text in ap.accepted_recognition_codes:
        if not re.fullmatch(r"[ -~]{1,16}", text):
            problems.append(
                f"application.accepted_recognition_codes: {text!r} is not 1 to 16 printable "
                "ASCII characters"
            )
    if ap.accepted_recognition_codes and ap.recognition_code not in (ap.accepted_recognition_codes):
        problems.append(
            "application.recognition_code: not among application.accepted_recognition_codes "
            "(we would refuse our own messages)"
        )
    _within(problems, "application.station_id_length", ap.station_id_length, 0, 16)
    if ap.spi_commands:
        if set(ap.spi_commands) != set(SPI_COMMANDS):
            problems.append(f"application.spi_commands: exactly {', '.join(SPI_COMMANDS)}")
        seen: dict[int, str] = {}
        for name, (request, response) in ap.spi_commands.items():
            key = f"application.spi_commands.{name}"
            if not 1 <= request <= 0x7FFF or response != request | 0x8000:
                problems.append(
                    f"{key}: request 0x0001 to 0x7FFF and response request | 0x8000, "
                    f"got [{request:#06x}, {response:#06x}]"
                )
            for code in (request, response):
                if code in seen:
                    problems.append(f"{key}: code {code:#06x} is also {seen[code]}")
                seen[code] = name
        if not re.fullmatch(r"[ -~]{1,16}", ap.spi_recognition_code):
            problems.append("application.spi_recognition_code: 1 to 16 printable ASCII characters")
    if ap.data_set_after_reply and not ap.spi_commands:
        problems.append(
            "application.data_set_after_reply: needs application.spi_commands (the group end's "
            "reply is the only answer after the data sets are stored)"
        )


def validate(profile: Profile) -> list[str]:
    """Every inconsistency of ``profile``, each naming its key; empty when valid."""
    problems: list[str] = []
    if not profile.name:
        problems.append("name: must not be empty")
    _validate_physical(profile.physical, problems)
    _validate_datalink(profile.datalink, problems)
    _validate_transport(profile.transport, problems)
    _validate_session(profile.session, problems)
    _validate_application(profile.application, problems)
    return problems


def load_profile(path: str | Path | None = None) -> Profile:
    """The reference profile (``path`` None), or the TOML file ``path`` merged over it."""
    if path is None:
        return REFERENCE
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return profile_from_mapping(data, source=str(path))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any, *, hex_ints: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"0x{value:04X}" if hex_ints and value >= 0 else str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v, hex_ints=hex_ints) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(profile: Profile) -> str:
    """The whole profile as TOML; :func:`load_profile` of the result gives ``profile``."""
    lines = [
        "# acrnema-bridge link profile. The reference profile is the project's own",
        "# reconstruction of the ACR-NEMA 300 link, not the standard's text:",
        "# see docs/link-profile.md for each rule and whether it is sourced or chosen.",
        f"name = {_toml_string(profile.name)}",
    ]
    for name in _SECTIONS:
        section = getattr(profile, name)
        tables: list[tuple[str, Mapping[str, Any]]] = []
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, Mapping):
                tables.append((f.name, value))
            else:
                lines.append(f"{f.name} = {_toml_value(value, hex_ints=f.name in _HEX)}")
        for table, items in tables:
            lines += ["", f"[{name}.{table}]"]
            lines += [
                f"{_toml_key(key)} = {_toml_value(v, hex_ints=table in _HEX)}"
                for key, v in items.items()
            ]
    return "\n".join(lines) + "\n"


_RENAMED = {
    "Physical": "PhysicalSection",
    "Datalink": "DatalinkSection",
    "Transport": "TransportSection",
    "Session": "SessionSection",
    "Application": "ApplicationSection",
}
"""Old names (deprecated) of classes renamed so that no name means two things."""


def __getattr__(name: str) -> object:
    """An old name of a renamed class, with a DeprecationWarning."""
    return old_name(__name__, _RENAMED, globals(), name)

"""The link profile: every parameter of the 50-pin link that the standard would fix.

The physical, data link, transport and session layers of ACR-NEMA 300 are not publicly
documented (``shared/reference/acrnema-standard.md``, sections 1-3). The project defines
a *reference profile*, its own reconstruction, rule by rule in ``docs/link-profile.md``;
this module holds its parameters. A site fits the bridge to what its scanner really does
with a TOML profile file that overrides any subset of them::

    [physical]
    parity = "even"
    [datalink]
    max_payload_words = 512
    [application.commands]
    store = [0x0001, 0x8001]

:func:`load_profile` merges such a file over :data:`REFERENCE` and validates the result
(a :class:`~bridge.errors.ConfigError` names the key); :func:`to_toml` writes a profile
back out (``acrnema-bridge profile show``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

__all__ = [
    "REFERENCE",
    "Application",
    "Datalink",
    "Physical",
    "Profile",
    "Session",
    "Transport",
    "load_profile",
    "profile_from_mapping",
    "to_toml",
]

LINE_NAMES = (
    *(f"D{i}" for i in range(16)),
    "PARITY",
    "REQ",
    "ACK",
    "DIR",
    "READY_A",
    "READY_B",
    "PERR",
    "SPARE1",
    "SPARE2",
)


def _reference_pins() -> dict[str, tuple[int, int]]:
    """Pair n (1-25) on pins 2n-1 (+) and 2n (-), lines in the order of LINE_NAMES."""
    return {name: (2 * n - 1, 2 * n) for n, name in enumerate(LINE_NAMES, 1)}


@dataclass(frozen=True)
class Physical:
    """Lines, polarities, parity and word byte order (docs/link-profile.md, section 1)."""

    pins: dict[str, tuple[int, int]] = field(default_factory=_reference_pins)
    active_low: tuple[str, ...] = ()
    parity: str = "odd"  # odd | even | none
    text_byte_order: str = "big"  # first character of a pair on D15-D8
    binary_byte_order: str = "little"  # low word first for 32-bit values
    handshake_timeout_ms: float = 100.0
    setup_ns: int = 100
    hold_ns: int = 100


@dataclass(frozen=True)
class Datalink:
    """Frames, CRC, acknowledgement and retransmission (section 2)."""

    start_word: int = 0xA5C3
    max_payload_words: int = 256
    crc: str = "crc-16/ccitt-false"
    crc_init: int = 0xFFFF
    sequence_bits: int = 8
    window: int = 8
    ack_timeout_ms: float = 50.0
    retry_limit: int = 8


@dataclass(frozen=True)
class Transport:
    """Packets carrying message segments, and reassembly (section 3)."""

    max_segment_bytes: int = 65536
    max_message_bytes: int = 512 << 20
    reassembly_timeout_s: float = 30.0


@dataclass(frozen=True)
class Session:
    """Connect, accept, reject, release, abort (section 4)."""

    address_length: int = 16
    connect_timeout_s: float = 10.0
    release_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0


def _reference_commands() -> dict[str, tuple[int, int]]:
    # DICOM-compatible codes (request, response); C-CANCEL has no response.
    return {
        "store": (0x0001, 0x8001),
        "get": (0x0010, 0x8010),
        "find": (0x0020, 0x8020),
        "echo": (0x0030, 0x8030),
        "cancel": (0x0FFF, 0x0000),
    }


def _reference_statuses() -> dict[str, int]:
    return {
        "success": 0x0000,
        "cancel": 0xFE00,
        "pending": 0xFF00,
        "out_of_resources": 0xA700,
        "cannot_understand": 0xC000,
        "not_stored": 0xA900,
    }


@dataclass(frozen=True)
class Application:
    """The command table, Data Set Type values and status codes (section 5)."""

    commands: dict[str, tuple[int, int]] = field(default_factory=_reference_commands)
    statuses: dict[str, int] = field(default_factory=_reference_statuses)
    data_set_none: int = 0x0101
    data_set_present: int = 0x0000
    recognition_code: str = "ACR-NEMA 2.0"


@dataclass(frozen=True)
class Profile:
    """A whole link profile."""

    name: str = "reference"
    physical: Physical = field(default_factory=Physical)
    datalink: Datalink = field(default_factory=Datalink)
    transport: Transport = field(default_factory=Transport)
    session: Session = field(default_factory=Session)
    application: Application = field(default_factory=Application)


REFERENCE = Profile()

_SECTIONS: dict[str, type] = {
    "physical": Physical,
    "datalink": Datalink,
    "transport": Transport,
    "session": Session,
    "application": Application,
}


def _coerce(where: str, default: Any, value: Any) -> Any:
    """``value`` converted to the type of ``default``, or a ConfigError naming ``where``."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        merged = dict(default)
        sample = next(iter(default.values())) if default else None
        for key, item in value.items():
            merged[key] = _coerce(f"{where}.{key}", merged.get(key, sample), item)
        return merged
    raise ConfigError(f"{where}: unsupported setting")


def profile_from_mapping(data: Mapping[str, Any], *, source: str = "<profile>") -> Profile:
    """A profile from parsed TOML: the reference with ``data`` merged over it, validated."""
    unknown = set(data) - set(_SECTIONS) - {"name"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        base = getattr(REFERENCE, name)
        given = data.get(name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table")
        fields = {f.name for f in dataclasses.fields(cls)}
        extra = set(given) - fields
        if extra:
            raise ConfigError(f"{source}: [{name}] unknown key(s) {', '.join(sorted(extra))}")
        values = {
            key: _coerce(f"{source}: {name}.{key}", getattr(base, key), value)
            for key, value in given.items()
        }
        sections[name] = dataclasses.replace(base, **values)
    profile_name = data.get("name", "custom" if data else "reference")
    if not isinstance(profile_name, str):
        raise ConfigError(f"{source}: name must be a string")
    profile = Profile(name=profile_name, **sections)
    problems = validate(profile)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return profile


def validate(profile: Profile) -> list[str]:
    """Every inconsistency of ``profile``, each naming its key; empty when valid."""
    problems: list[str] = []
    ph, dl, tr, se, ap = (
        profile.physical,
        profile.datalink,
        profile.transport,
        profile.session,
        profile.application,
    )
    data_lines = [f"D{i}" for i in range(16)]
    missing = [n for n in (*data_lines, "PARITY", "REQ", "ACK") if n not in ph.pins]
    if missing:
        problems.append(f"physical.pins: missing {', '.join(missing)}")
    used: dict[int, str] = {}
    for name, pair in ph.pins.items():
        if len(pair) != 2 or any(not 1 <= p <= 50 for p in pair) or pair[0] == pair[1]:
            problems.append(f"physical.pins.{name}: two different pins 1-50, got {list(pair)}")
            continue
        for pin in pair:
            if pin in used:
                problems.append(f"physical.pins.{name}: pin {pin} already used by {used[pin]}")
            used[pin] = name
    if len(ph.pins) > 25:
        problems.append(f"physical.pins: {len(ph.pins)} lines, the connector has 25 pairs")
    for name in ph.active_low:
        if name not in ph.pins:
            problems.append(f"physical.active_low: {name} is not a line of physical.pins")
    if ph.parity not in ("odd", "even", "none"):
        problems.append(f"physical.parity: odd, even or none, got {ph.parity!r}")
    for key in ("text_byte_order", "binary_byte_order"):
        if getattr(ph, key) not in ("big", "little"):
            problems.append(f"physical.{key}: big or little, got {getattr(ph, key)!r}")
    for key in ("handshake_timeout_ms", "setup_ns", "hold_ns"):
        if getattr(ph, key) <= 0:
            problems.append(f"physical.{key}: must be positive")
    if not 0 <= dl.start_word <= 0xFFFF:
        problems.append("datalink.start_word: a 16-bit value")
    if not 1 <= dl.max_payload_words <= 65535:
        problems.append("datalink.max_payload_words: 1 to 65535")
    if dl.crc != "crc-16/ccitt-false":
        problems.append(f"datalink.crc: only crc-16/ccitt-false is implemented, got {dl.crc!r}")
    if not 0 <= dl.crc_init <= 0xFFFF:
        problems.append("datalink.crc_init: a 16-bit value")
    if not 2 <= dl.sequence_bits <= 16:
        problems.append("datalink.sequence_bits: 2 to 16")
    elif not 1 <= dl.window < 2 ** (dl.sequence_bits - 1):
        problems.append(f"datalink.window: 1 to {2 ** (dl.sequence_bits - 1) - 1} for these bits")
    if dl.ack_timeout_ms <= 0 or dl.retry_limit < 1:
        problems.append("datalink.ack_timeout_ms must be positive, retry_limit at least 1")
    if tr.max_segment_bytes < 2 or tr.max_segment_bytes % 2:
        problems.append("transport.max_segment_bytes: an even number of at least 2")
    if tr.max_message_bytes < tr.max_segment_bytes:
        problems.append("transport.max_message_bytes: at least max_segment_bytes")
    if tr.reassembly_timeout_s <= 0:
        problems.append("transport.reassembly_timeout_s: must be positive")
    if not 1 <= se.address_length <= 64:
        problems.append("session.address_length: 1 to 64")
    for key in ("connect_timeout_s", "release_timeout_s", "idle_timeout_s"):
        if getattr(se, key) <= 0:
            problems.append(f"session.{key}: must be positive")
    codes: dict[int, str] = {}
    for name, pair in ap.commands.items():
        if len(pair) != 2 or not all(0 <= c <= 0xFFFF for c in pair):
            problems.append(f"application.commands.{name}: [request, response] 16-bit codes")
            continue
        request, response = pair
        if response and response != request | 0x8000:
            problems.append(
                f"application.commands.{name}: response {response:#06x} is not "
                f"request | 0x8000 ({request | 0x8000:#06x})"
            )
        for code in (c for c in pair if c):
            if code in codes:
                problems.append(f"application.commands.{name}: code {code:#06x} also {codes[code]}")
            codes[code] = name
    for name in ("store", "echo"):
        if name not in ap.commands:
            problems.append(f"application.commands: {name} is required")
    for name, code in ap.statuses.items():
        if not 0 <= code <= 0xFFFF:
            problems.append(f"application.statuses.{name}: a 16-bit value")
    if ap.data_set_none == ap.data_set_present:
        problems.append("application.data_set_none: must differ from data_set_present")
    return problems


def load_profile(path: Path | None) -> Profile:
    """The reference profile, or ``path``'s TOML merged over it."""
    if path is None:
        return REFERENCE
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return profile_from_mapping(data, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"0x{value:04X}" if value > 0xFF else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(profile: Profile) -> str:
    """The profile as TOML; ``load`` of the result gives the same profile."""
    lines = [f"name = {_toml_value(profile.name)}"]
    for name in _SECTIONS:
        section = getattr(profile, name)
        tables: list[tuple[str, dict[str, Any]]] = []
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, dict):
                tables.append((f.name, value))
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        for table, items in tables:
            lines += ["", f"[{name}.{table}]"]
            lines += [f"{key} = {_toml_value(v)}" for key, v in items.items()]
    return "\n".join(lines) + "\n"

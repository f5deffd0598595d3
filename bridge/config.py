"""Typed, validated configuration: defaults < TOML file < ``BRIDGE_*`` environment < CLI.

The TOML file (``--config FILE`` or ``$BRIDGE_CONFIG``)::

    [spool]
    path = "/var/spool/acrnema-bridge"
    retention_days = 0          # keep delivered objects this long for re-sending

    [forward]
    calling_ae = "ACRNEMA_BRIDGE"
    max_pdu = 0                 # bytes; 0 = unlimited
    connect_timeout = 10.0      # seconds
    acse_timeout = 30.0
    dimse_timeout = 60.0
    network_timeout = 60.0
    idle_timeout = 10.0         # close an unused association after this long
    backoff_base = 1.0          # first retry after about this long
    backoff_cap = 30.0          # retries never wait longer than this
    max_attempts = 0            # quarantine after this many attempts; 0 = never
    max_lost = 3                # quarantine an object lost on the wire this often; 0 = never
    give_up_after = 300.0       # a worker failing this long without a success stops the process
    tcp_tuning = true           # TCP_NODELAY and TCP_QUICKACK (docs/forwarding.md)
    commitment_port = 0         # where N-EVENT-REPORTs arrive on a new association; 0 = none
    commitment_timeout = 60.0   # how long to wait for a Storage Commitment report

    [[destination]]
    ae_title = "PACS"
    host = "10.0.0.5"
    port = 104
    modalities = ["CT", "MR"]   # optional filter
    commitment = false          # Storage Commitment before an object counts as delivered
    tls = { ca_file = "ca.pem", cert_file = "me.pem", key_file = "me.key" }  # optional

Environment: ``BRIDGE_SPOOL``, ``BRIDGE_RETENTION_DAYS``, ``BRIDGE_CALLING_AE``,
``BRIDGE_MAX_PDU``, ``BRIDGE_BACKOFF_CAP``, ``BRIDGE_MAX_ATTEMPTS``. ``acrnema-bridge config
show`` prints the effective result.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

__all__ = ["Config", "DestinationConfig", "ForwardConfig", "SpoolConfig", "load"]


@dataclass(frozen=True)
class SpoolConfig:
    path: Path = Path("spool")
    retention_days: float = 0.0


@dataclass(frozen=True)
class DestinationConfig:
    ae_title: str
    host: str
    port: int
    modalities: tuple[str, ...] = ()
    commitment: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class ForwardConfig:
    calling_ae: str = "ACRNEMA_BRIDGE"
    max_pdu: int = 0
    connect_timeout: float = 10.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    idle_timeout: float = 10.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    max_attempts: int = 0
    max_lost: int = 3
    give_up_after: float = 300.0
    tcp_tuning: bool = True
    commitment_port: int = 0
    commitment_timeout: float = 60.0


@dataclass(frozen=True)
class Config:
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    destinations: tuple[DestinationConfig, ...] = ()
    source: str = "defaults"

    def as_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
            return value

        return {
            "source": self.source,
            "spool": plain(self.spool),
            "forward": plain(self.forward),
            "destination": [plain(d) for d in self.destinations],
        }


_ENV = {
    "BRIDGE_SPOOL": ("spool", "path"),
    "BRIDGE_RETENTION_DAYS": ("spool", "retention_days"),
    "BRIDGE_CALLING_AE": ("forward", "calling_ae"),
    "BRIDGE_MAX_PDU": ("forward", "max_pdu"),
    "BRIDGE_BACKOFF_CAP": ("forward", "backoff_cap"),
    "BRIDGE_MAX_ATTEMPTS": ("forward", "max_attempts"),
}


def _coerce(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Build a frozen dataclass from a mapping, checking names and types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = str(fields[name].type)
        try:
            if kind == "Path" or kind.startswith("Path |"):
                out[name] = None if value is None else Path(str(value))
            elif kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("1", "true", "yes")
                out[name] = bool(value)
            elif kind == "int":
                if isinstance(value, bool):
                    raise ValueError(value)
                out[name] = int(value)
            elif kind == "float":
                out[name] = float(value)
            elif kind == "str":
                if not isinstance(value, str):
                    raise ValueError(value)
                out[name] = value
            elif kind.startswith("tuple"):
                if not isinstance(value, (list, tuple)):
                    raise ValueError(value)
                out[name] = tuple(str(v) for v in value)
            else:
                out[name] = value
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {name} = {value!r} is not a valid {kind}") from exc
    try:
        return cls(**out)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _check(config: Config) -> Config:
    f = config.forward
    if not 0 < len(f.calling_ae.strip()) <= 16:
        raise ConfigError(f"forward.calling_ae {f.calling_ae!r}: 1 to 16 characters")
    for name in ("connect_timeout", "acse_timeout", "dimse_timeout", "network_timeout"):
        if getattr(f, name) <= 0:
            raise ConfigError(f"forward.{name} must be positive")
    if f.backoff_base <= 0 or f.backoff_cap < f.backoff_base:
        raise ConfigError("forward.backoff_base must be positive and at most backoff_cap")
    if f.max_attempts < 0 or f.max_pdu < 0 or f.max_lost < 0:
        raise ConfigError(
            "forward.max_attempts, forward.max_lost and forward.max_pdu cannot be negative"
        )
    if not f.give_up_after > 0:
        raise ConfigError("forward.give_up_after must be a positive number of seconds")
    if config.spool.retention_days < 0:
        raise ConfigError("spool.retention_days cannot be negative")
    for d in config.destinations:
        if not 0 < len(d.ae_title) <= 16 or not 0 < d.port < 65536 or not d.host:
            raise ConfigError(f"destination {d.name}: AE title 1-16 characters, host, port 1-65535")
    return config


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The effective configuration from the file (if any) and the environment."""
    env = os.environ if env is None else env
    if path is None and env.get("BRIDGE_CONFIG"):
        path = Path(env["BRIDGE_CONFIG"])
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        source = str(path)
        unknown = set(data) - {"spool", "forward", "destination"}
        if unknown:
            raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    sections: dict[str, dict[str, Any]] = {
        "spool": dict(data.get("spool", {})),
        "forward": dict(data.get("forward", {})),
    }
    for var, (section, key) in _ENV.items():
        if var in env:
            sections[section][key] = env[var]
            source += f" + ${var}"
    destinations = []
    for n, raw in enumerate(data.get("destination", []), 1):
        raw = dict(raw)
        tls = raw.pop("tls", None) or {}
        for key in ("ca_file", "cert_file", "key_file"):
            if key in tls:
                raw[f"tls_{key}"] = tls[key]
        destinations.append(_coerce(DestinationConfig, raw, f"{source}: destination {n}"))
    return _check(
        Config(
            spool=_coerce(SpoolConfig, sections["spool"], f"{source}: [spool]"),
            forward=_coerce(ForwardConfig, sections["forward"], f"{source}: [forward]"),
            destinations=tuple(destinations),
            source=source,
        )
    )

"""The settings tree: one frozen dataclass per TOML table, one field per key.

The field types and their ``metadata`` are the schema the loader (:mod:`bridge.settings.loader`)
coerces and checks against: ``unit`` names the unit of a duration (``"s"`` or ``"d"``),
``choices`` the values a text key may take. Defaults here are the defaults everywhere: the
forwarder, the commands and ``config show`` read them from this one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DestinationSettings",
    "ForwardSettings",
    "LinkSettings",
    "LoggingSettings",
    "Settings",
    "SpoolSettings",
    "StatusSettings",
    "TlsFiles",
]

_SECONDS = {"unit": "s"}
_DAYS = {"unit": "d"}
LOG_LEVELS = ("auto", "debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LinkSettings:
    """``[link]``: the port the scanner's link arrives on and how it is spoken (``run``)."""

    port: str | None = None
    """Port URL (docs/ports.md), e.g. ``tcp-listen://0.0.0.0:4010``; ``--port`` wins."""
    profile: Path | None = None
    """Link profile file (docs/link-profile.md); none: the built-in reference profile."""
    ae_title: str = "ACRNEMA_BRIDGE"
    """The bridge's logical address on the link."""
    accept_repairs: bool = False
    """Store an image whose conversion would change its pixels (pixel data longer than the
    image, an unusual Bits Allocated), repaired, each repair logged at WARNING with its
    SOP Instance UID; false: answer it with a failure status, the scanner keeps it
    (docs/conversion.md, "Repairs"); ``--accept-repairs`` sets it."""
    accepted_peers: tuple[str, ...] = ()
    """Logical addresses allowed to send (calling address and Initiator); others are
    refused with not_stored; none: every address (docs/link.md, "Accepted peers")."""


@dataclass(frozen=True)
class SpoolSettings:
    """``[spool]``: the durable store-and-forward queue."""

    path: Path = Path("spool")
    retention_days: float = field(default=0.0, metadata=_DAYS)
    """Days a delivered object's file (for re-sending) and its history rows are kept;
    0: the file goes at once, the rows at the next housekeeping (docs/forwarding.md)."""


@dataclass(frozen=True)
class ForwardSettings:
    """``[forward]``: how every destination is served (docs/forwarding.md)."""

    calling_ae: str = "ACRNEMA_BRIDGE"
    max_pdu: int = 0
    connect_timeout: float = field(default=10.0, metadata=_SECONDS)
    acse_timeout: float = field(default=30.0, metadata=_SECONDS)
    dimse_timeout: float = field(default=60.0, metadata=_SECONDS)
    network_timeout: float = field(default=60.0, metadata=_SECONDS)
    idle_timeout: float = field(default=10.0, metadata=_SECONDS)
    backoff_base: float = field(default=1.0, metadata=_SECONDS)
    backoff_cap: float = field(default=30.0, metadata=_SECONDS)
    max_attempts: int = 0
    max_lost: int = 3
    give_up_after: float = field(default=300.0, metadata=_SECONDS)
    tcp_tuning: bool = True
    commitment_host: str = "127.0.0.1"
    """The address the Storage Commitment listener binds (``0.0.0.0``: every interface);
    the default takes reports from this machine only."""
    commitment_port: int = 0
    """The port the listener binds, for N-EVENT-REPORTs on a new association; 0: none."""
    commitment_timeout: float = field(default=60.0, metadata=_SECONDS)
    commitment_callback_host: str = ""
    """The address the PACS is configured to send its reports to (its entry for the
    bridge), when it is not ``commitment_host`` (NAT, a bind to ``0.0.0.0``); empty: the
    same. Logged at start and named when reports do not arrive."""
    commitment_callback_port: int = 0
    """The port the PACS is configured to send its reports to; 0: ``commitment_port``."""
    hold_retry: float = field(default=300.0, metadata=_SECONDS)
    """How long a held destination (association rejected permanently, host name unknown)
    waits between tries; its objects wait meanwhile."""


@dataclass(frozen=True)
class TlsFiles:
    """A destination's ``tls = {...}`` table (PS3.15 B.1); ``ca_file`` is required."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = False


@dataclass(frozen=True)
class DestinationSettings:
    """One ``[[destination]]``: a DICOM node the spool is forwarded to."""

    ae_title: str
    host: str
    port: int
    modalities: tuple[str, ...] = ()
    commitment: bool = False
    tls: TlsFiles | None = None
    commitment_callers: tuple[str, ...] = ()
    """The calling AE titles the commitment listener accepts this PACS's reports from;
    empty: its ``ae_title``. Any other caller is refused (A-ASSOCIATE-RJ)."""

    @property
    def name(self) -> str:
        """``AE@HOST:PORT``, the destination's key in the spool (as ``Destination.name``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    # The flat names of bridge.config.DestinationConfig, kept for scripts that read them.
    @property
    def tls_ca_file(self) -> Path | None:
        return self.tls.ca_file if self.tls else None

    @property
    def tls_cert_file(self) -> Path | None:
        return self.tls.cert_file if self.tls else None

    @property
    def tls_key_file(self) -> Path | None:
        return self.tls.key_file if self.tls else None


@dataclass(frozen=True)
class LoggingSettings:
    """``[logging]``: the log lines, on stderr or in a file (``-v`` lowers the level further)."""

    level: str = field(default="auto", metadata={"choices": LOG_LEVELS})
    """``auto``: INFO for ``run`` (a service says more), WARNING for the other commands."""
    format: str = field(default="text", metadata={"choices": LOG_FORMATS})
    file: Path | None = None
    """Write the log lines to this file (appended to) instead of stderr; SIGHUP reopens
    it, for logrotate; ``--log-file`` wins. None: stderr (the journal under systemd)."""


@dataclass(frozen=True)
class StatusSettings:
    """``[status]``: the status server of ``run`` and ``forward`` (docs/operations.md).

    Off unless ``listen`` is set. Any address outside loopback needs credentials
    (``token_file``, or ``user`` and ``password_file``) and TLS (``cert_file`` and
    ``key_file``) or ``insecure = true``; otherwise the service refuses to start."""

    listen: str = ""
    """``HOST:PORT`` to serve ``/``, ``/metrics`` and ``/healthz`` on, e.g.
    ``127.0.0.1:8104``; empty: no status server. ``--status-listen`` sets it."""
    max_wait: float = field(default=3600.0, metadata=_SECONDS)
    """``/healthz`` is unhealthy when an object has waited longer than this for a
    destination; 0: not checked."""
    max_link_down: float = field(default=0.0, metadata=_SECONDS)
    """``/healthz`` (``run``) is unhealthy when the link has been down (no peer READY)
    longer than this; 0: not checked (a scanner that connects only to send)."""
    token_file: Path | None = None
    """A file holding the bearer token every request must carry
    (``Authorization: Bearer TOKEN``)."""
    user: str = ""
    """The basic-auth user name (with ``password_file``)."""
    password_file: Path | None = None
    """A file holding the basic-auth password of ``user``."""
    cert_file: Path | None = None
    """The server's TLS certificate chain (PEM); with ``key_file``: HTTPS."""
    key_file: Path | None = None
    """The private key of ``cert_file`` (PEM)."""
    insecure: bool = False
    """Allow plain HTTP on an address outside loopback (credentials still required)."""


@dataclass(frozen=True)
class Settings:
    """The effective settings of one process, and where each value came from.

    ``origins`` maps each dotted key (``forward.max_pdu``; ``destination`` for the whole
    list) to ``default``, ``file PATH``, ``env $NAME`` or ``flag --name``.
    """

    link: LinkSettings = field(default_factory=LinkSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    destinations: tuple[DestinationSettings, ...] = ()
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    source: str = "defaults"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origin(self, key: str) -> str:
        """Where the value of the dotted ``key`` came from (``default`` if never set)."""
        return self.origins.get(key, "default")

    def as_dict(self) -> dict[str, Any]:
        """The tree as plain JSON values, with ``origin`` for every key."""
        return {
            "source": self.source,
            "link": _plain(self.link),
            "spool": _plain(self.spool),
            "forward": _plain(self.forward),
            "destination": [_plain(d) for d in self.destinations],
            "logging": _plain(self.logging),
            "status": _plain(self.status),
            "origin": {key: self.origin(key) for key in keys()},
        }


TABLES: dict[str, type] = {
    "link": LinkSettings,
    "spool": SpoolSettings,
    "forward": ForwardSettings,
    "logging": LoggingSettings,
    "status": StatusSettings,
}
"""The single tables of the file, by name."""

ARRAYS: dict[str, type] = {"destination": DestinationSettings}
"""The arrays of tables (``[[destination]]``)."""


def keys() -> list[str]:
    """Every dotted key of the tree, in file order; ``destination`` stands for the list."""
    out = [f"{t}.{f.name}" for t, cls in TABLES.items() for f in dataclasses.fields(cls)]
    return out + list(ARRAYS)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value

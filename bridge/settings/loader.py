"""The one loader of the settings tree: defaults < TOML file < ``BRIDGE_*`` env < flags.

Every table is strict: a key the tree does not have is a problem naming where it was
written, the key and the nearest known key (:mod:`difflib`). Every problem of every source
is collected and raised at once in one :class:`SettingsError`, so a site fixes its file in
one round. Values are read in the units users write: durations are seconds (``forward.*``)
or days (``spool.retention_days``) as numbers, or a number with a unit (``"90s"``,
``"5min"``, ``"2h"``, ``"7d"``, ``"500ms"``); environment values are text and read the same
way.

Pure: the only I/O is reading the one file it is given.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError, SettingsError
from bridge.settings.tree import ARRAYS, TABLES, DestinationSettings, Settings, TlsFiles, keys
from bridge.status.model import exposure_problem, listen_address

__all__ = ["LEGACY_ENV", "SettingsError", "check_file", "load"]

LEGACY_ENV: dict[str, str] = {
    "BRIDGE_SPOOL": "spool.path",
    "BRIDGE_RETENTION_DAYS": "spool.retention_days",
    "BRIDGE_CALLING_AE": "forward.calling_ae",
    "BRIDGE_MAX_PDU": "forward.max_pdu",
    "BRIDGE_BACKOFF_CAP": "forward.backoff_cap",
    "BRIDGE_MAX_ATTEMPTS": "forward.max_attempts",
}
"""The short variables of the first releases; every key also has ``BRIDGE_<TABLE>_<KEY>``
(``BRIDGE_FORWARD_DIMSE_TIMEOUT``), which wins when both are set."""

_UNITS_S = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*")
_AE_MAX = 16

Flags = Mapping[str, tuple[Any, str]]
"""Flag values by dotted key: ``{"forward.max_lost": (0, "--max-lost")}``."""


class _Bad(Exception):
    """One value of the wrong type or out of range (becomes one problem)."""


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    flags: Flags | None = None,
    destinations: Sequence[DestinationSettings] | None = None,
    destinations_flag: str = "--dest",
) -> Settings:
    """The effective settings. ``path`` defaults to ``$BRIDGE_CONFIG`` (none: no file);
    ``env`` to :data:`os.environ`; ``flags`` are the command line's values by dotted key;
    ``destinations`` (from ``--dest``) replace the file's list. Raises
    :class:`SettingsError` listing every problem."""
    env = os.environ if env is None else env
    if path is None and env.get("BRIDGE_CONFIG"):
        path = Path(env["BRIDGE_CONFIG"])
    problems: list[str] = []
    failed: set[str] = set()  # keys whose value could not be read: left at the default
    raw: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in TABLES}
    sources = []
    listed: tuple[DestinationSettings, ...] = ()
    origins: dict[str, str] = {}
    if path is not None:
        label = f"file {path}"
        sources.append(str(path))
        data = _read(path)
        for name, value in data.items():
            if name in TABLES:
                if isinstance(value, dict):
                    raw[name].update({k: (v, label) for k, v in value.items()})
                else:
                    problems.append(f"{label}: [{name}]: must be a table, got {value!r}")
            elif name in ARRAYS:
                listed = _destinations(value, label, problems, failed)
                origins["destination"] = label
            else:
                known = [*TABLES, *ARRAYS]
                problems.append(f"{label}: [{name}]: {_unknown(name, known, 'table')}")
    for var, key in _env_keys(env):
        table, _, name = key.partition(".")
        raw[table][name] = (env[var], f"env ${var}")
        sources.append(f"${var}")
    for key, (value, flag) in (flags or {}).items():
        table, _, name = key.partition(".")
        raw[table][name] = (value, f"flag {flag}")
    if flags:
        sources.append("flags")
    if destinations is not None:
        listed = tuple(destinations)
        origins["destination"] = f"flag {destinations_flag}"
    tables = {}
    for name, cls in TABLES.items():
        tables[name] = _table(cls, raw[name], f"{name}.", problems, f"[{name}]", failed)
        origins.update({f"{name}.{k}": label for k, (_, label) in raw[name].items()})
    settings = Settings(
        **tables,
        destinations=listed,
        source=" + ".join(sources) or "defaults",
        origins={k: v for k, v in origins.items() if k in set(keys())},
    )
    problems += _check(settings, failed)
    if problems:
        raise SettingsError(problems)
    return settings


def check_file(path: Path) -> list[str]:
    """Every problem of the settings file ``path`` alone (no environment, no flags)."""
    try:
        load(path, env={})
    except SettingsError as exc:
        return exc.problems
    except ConfigError as exc:
        return [str(exc)]
    return []


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _env_keys(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, dotted key)`` for every settings variable set (empty means unset).

    A ``BRIDGE_<TABLE>_...`` variable whose rest is no key of the table is kept, so that
    the table check reports it as unknown with the nearest key."""
    found = [(var, key) for var, key in LEGACY_ENV.items() if env.get(var)]
    for var in sorted(env):
        for table in TABLES:
            prefix = f"BRIDGE_{table.upper()}_"
            if var.startswith(prefix) and env[var]:
                found.append((var, f"{table}.{var[len(prefix) :].lower()}"))
    return found


def _unknown(name: str, known: Sequence[str], what: str = "key") -> str:
    """``unknown key; did you mean 'ca_file'?`` (difflib), or the known names."""
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if near:
        return f"unknown {what}; did you mean {near[0]!r}?"
    return f"unknown {what} (known: {', '.join(known)})"


def _table(
    cls: type,
    raw: Mapping[str, tuple[Any, str]],
    prefix: str,
    problems: list[str],
    where: str,
    failed: set[str],
) -> Any:
    """An instance of the dataclass ``cls`` from ``raw`` (value, label by key); ``prefix``
    is the dotted path printed before each key. Unknown keys and unreadable values add a
    problem each (the latter's dotted key to ``failed``) and are left at their default, so
    the checks between values still run; None when a required key is missing."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name, (value, label) in raw.items():
        field = fields.get(name)
        if field is None:
            problems.append(f"{label}: {prefix}{name}: {_unknown(name, list(fields))}")
            continue
        try:
            if field.type == "TlsFiles | None":
                if not isinstance(value, dict):
                    raise _Bad("must be a table { ca_file = ... }")
                nested = {k: (v, label) for k, v in value.items()}
                before = len(problems)
                out[name] = _table(TlsFiles, nested, f"{prefix}{name}.", problems, label, failed)
                if len(problems) > before:  # reported: no second problem about the table
                    failed.add(f"{prefix}{name}")
            else:
                out[name] = _coerce(value, field)
        except _Bad as exc:
            problems.append(f"{label}: {prefix}{name} = {value!r}: {exc}")
            failed.add(f"{prefix}{name}")
    missing = [
        name
        for name, field in fields.items()
        if name not in out and field.default is field.default_factory is dataclasses.MISSING
    ]
    for name in missing:
        if name not in raw:
            problems.append(f"{where}: {prefix}{name}: required")
    return None if missing else cls(**out)


def _destinations(
    value: Any, label: str, problems: list[str], failed: set[str]
) -> tuple[DestinationSettings, ...]:
    if not isinstance(value, list) or not all(isinstance(d, dict) for d in value):
        problems.append(f"{label}: destination: must be [[destination]] tables")
        return ()
    out = []
    for n, table in enumerate(value, 1):
        raw = {k: (v, label) for k, v in table.items()}
        made = _table(DestinationSettings, raw, f"destination[{n}].", problems, label, failed)
        if made is not None:
            out.append(made)
    return tuple(out)


def _coerce(value: Any, field: dataclasses.Field[Any]) -> Any:
    kind = str(field.type)
    if value is None or (kind.endswith("| None") and value == ""):
        if kind.endswith("| None"):
            return None
        raise _Bad("a value is required")
    base = kind.removesuffix(" | None")
    if base == "str":
        if not isinstance(value, str):
            raise _Bad("expected text")
        choices = field.metadata.get("choices")
        if choices is not None:
            value = value.strip().lower()
            if value not in choices:
                raise _Bad(f"one of {', '.join(choices)}")
        return value
    if base == "Path":
        if not isinstance(value, (str, Path)) or not str(value):
            raise _Bad("expected a file or folder name")
        return Path(value)
    if base == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("1", "0", "true", "false", "yes", "no"):
            return value.lower() in ("1", "true", "yes")
        raise _Bad("expected true or false")
    if base == "int":
        if isinstance(value, bool):
            raise _Bad("expected a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise _Bad("expected a whole number")
    if base == "float":
        return _duration(value, field.metadata.get("unit"))
    if base == "tuple[str, ...]":
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _Bad("expected a list of text values")
        return tuple(value)
    raise _Bad(f"cannot read a {kind}")  # pragma: no cover - a field type the loader lacks


def _duration(value: Any, unit: str | None) -> float:
    """A number, or with ``unit`` a number with a unit suffix, in ``unit``."""
    if isinstance(value, bool):
        raise _Bad("expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is not None:
            number, suffix = float(match[1]), match[2]
            if not suffix:
                return number
            if unit is not None and suffix in _UNITS_S:
                return number * _UNITS_S[suffix] / _UNITS_S[unit]
    units = f", or with a unit ({', '.join(_UNITS_S)})" if unit else ""
    raise _Bad(f"expected a number{' of seconds' if unit == 's' else ''}{units}")


def _check(settings: Settings, failed: set[str]) -> list[str]:
    """The rules between and within values, each problem naming where the value came from.

    A key in ``failed`` holds its default (its own problem is already reported): rules on
    it are skipped, so that one mistake is reported once."""
    problems: list[str] = []

    def bad(key: str, message: str, shown: str | None = None) -> None:
        """``shown``: the key as printed, when it is not the origin's key (a destination)."""
        if key in failed or (key == "forward.backoff_base" and "forward.backoff_cap" in failed):
            return
        problems.append(f"{settings.origin(key)}: {shown or key}: {message}")

    f = settings.forward
    for key, title in (
        ("forward.calling_ae", f.calling_ae),
        ("link.ae_title", settings.link.ae_title),
    ):
        reason = _ae_problem(title)
        if reason:
            bad(key, reason)
    for title in settings.link.accepted_peers:
        reason = _ae_problem(title)
        if reason:
            bad("link.accepted_peers", reason)
    for name in (
        "connect_timeout",
        "acse_timeout",
        "dimse_timeout",
        "network_timeout",
        "idle_timeout",
        "commitment_timeout",
        "backoff_base",
        "backoff_cap",
        "give_up_after",
        "hold_retry",
    ):
        if not getattr(f, name) > 0:
            bad(f"forward.{name}", "must be a positive number of seconds")
    # a --backoff-cap below the base lowers the first wait too (as it always did); in the
    # file or the environment, base above cap is a mistake worth naming
    cap_flag = settings.origin("forward.backoff_cap").startswith("flag")
    if 0 < f.backoff_cap < f.backoff_base and not cap_flag:
        bad("forward.backoff_base", f"must be at most backoff_cap ({f.backoff_cap:g} s)")
    for name in ("max_attempts", "max_lost"):
        if getattr(f, name) < 0:
            bad(f"forward.{name}", "cannot be negative (0 = never)")
    if f.max_pdu != 0 and not 4096 <= f.max_pdu <= 0xFFFFFFFF:
        bad("forward.max_pdu", "0 (no limit) or 4096 to 4294967295 bytes")
    if not 0 <= f.commitment_port <= 65535:
        bad("forward.commitment_port", "0 (none) or a TCP port 1-65535")
    if not f.commitment_host or any(c.isspace() for c in f.commitment_host):
        bad("forward.commitment_host", "a host name or address to listen on")
    if not 0 <= f.commitment_callback_port <= 65535:
        bad("forward.commitment_callback_port", "0 (commitment_port) or a TCP port 1-65535")
    if any(c.isspace() for c in f.commitment_callback_host):
        bad("forward.commitment_callback_host", "a host name or address the PACS calls")
    if settings.spool.retention_days < 0:
        bad("spool.retention_days", "cannot be negative")
    if settings.link.port is not None and "://" not in settings.link.port:
        bad("link.port", "a port URL such as tcp-listen://0.0.0.0:4010 (docs/ports.md)")
    seen: set[str] = set()
    for n, d in enumerate(settings.destinations, 1):
        key = f"destination[{n}]"
        reason = _ae_problem(d.ae_title)
        if reason:
            bad("destination", reason, f"{key}.ae_title")
        if not d.host or any(c.isspace() for c in d.host):
            bad("destination", f"a host name or address, got {d.host!r}", f"{key}.host")
        if not 0 < d.port < 65536:
            bad("destination", f"a TCP port 1-65535, got {d.port}", f"{key}.port")
        for title in d.commitment_callers:
            reason = _ae_problem(title)
            if reason:
                bad("destination", reason, f"{key}.commitment_callers")
        if d.name in seen:
            bad("destination", f"{d.name} is listed twice", key)
        seen.add(d.name)
        if d.tls is not None and f"{key}.tls" not in failed:
            if d.tls.ca_file is None:
                bad("destination", "required (the CA certificates)", f"{key}.tls.ca_file")
            if d.tls.key_file is not None and d.tls.cert_file is None:
                bad("destination", "needs cert_file", f"{key}.tls.key_file")
    problems += _status_problems(settings, bad)
    return problems


def _status_problems(settings: Settings, bad: Callable[[str, str], None]) -> list[str]:
    """The rules of ``[status]``: a listen address, and none outside loopback without
    credentials and TLS (or ``insecure``); each problem goes through ``bad``."""
    s = settings.status
    for name in ("max_wait", "max_link_down"):
        if getattr(s, name) < 0:
            bad(f"status.{name}", "cannot be negative (0 = not checked)")
    if bool(s.user) != (s.password_file is not None):
        bad("status.user", "user and password_file go together (basic auth)")
    if (s.cert_file is None) != (s.key_file is None):
        bad("status.cert_file", "cert_file and key_file go together (TLS)")
    if not s.listen:
        return []
    try:
        host, _ = listen_address(s.listen)
    except ValueError as exc:
        bad("status.listen", str(exc))
        return []
    credentials = s.token_file is not None or s.password_file is not None
    tls = s.cert_file is not None and s.key_file is not None
    problem = exposure_problem(host, credentials=credentials, tls=tls, insecure=s.insecure)
    if problem is not None:
        bad("status.listen", problem)
    return []


def _ae_problem(title: str) -> str | None:
    """PS3.5 Table 6.2-1, AE: 1-16 characters, not only spaces, no backslash or controls."""
    if not title.strip() or len(title) > _AE_MAX:
        return f"an AE title of 1 to {_AE_MAX} characters, got {title!r}"
    if "\\" in title or not title.isascii() or not title.isprintable():
        return f"printable ASCII except backslash, got {title!r}"
    return None

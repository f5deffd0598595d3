"""Port URLs: ``scheme://location?name=value&...``, with options checked once.

Every factory of ours reads its URL with :func:`parse_url` before it opens anything, so a
URL can be checked whole without opening it: under :func:`check_only`, :func:`parse_url`
stops the factory once the options and their values are good
(:func:`bridge.ports.registry.check_url`; a command checks its port that way before it
creates a spool or opens a port).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bridge.errors import PortURLError

__all__ = [
    "PortURL",
    "check_only",
    "flag",
    "ip_networks",
    "parse_url",
    "positive_int",
    "positive_seconds",
    "seconds",
]

_checking: ContextVar[bool] = ContextVar("checking", default=False)


class _Checked(Exception):
    """Raised by :func:`parse_url` inside :func:`check_only`: the URL is good, stop.

    A signal, not an error (no :class:`~bridge.errors.BridgeError`, so no factory takes it
    for a failure); it never leaves this module."""


def check_only(factory: Callable[[str], object], url: str) -> bool:
    """Run ``factory(url)`` only as far as its :func:`parse_url`: the URL's options and
    their values are checked (a bad one raises :class:`PortURLError`) and nothing opens.

    False if the factory returned without reading its URL with :func:`parse_url` (then
    it opened something: a bug for our factories, the caller says so)."""
    token = _checking.set(True)
    try:
        factory(url)
    except _Checked:
        return True
    finally:
        _checking.reset(token)
    return False


@dataclass(frozen=True)
class PortURL:
    """A port URL taken apart; ``options`` holds converted values."""

    url: str
    scheme: str
    location: str
    options: dict[str, Any]


def parse_url(
    url: str,
    scheme: str,
    options: Mapping[str, Callable[[str], Any]],
    *,
    location: Callable[[str, str], object] | None = None,
) -> PortURL:
    """Split ``url``; each option's text goes through its converter (a bad one: PortError).

    ``location(url, text)`` checks the part before the options (``HOST:PORT``, say) and
    raises :class:`PortURLError` for a bad one; it runs under :func:`check_only` too, so
    a URL that could never open is a usage error before anything is created."""
    head, sep, rest = url.partition("://")
    if not sep or head != scheme:
        raise PortURLError(f"{url}: not a {scheme}:// URL")
    where, _, query = rest.partition("?")
    values: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        if not options:
            raise PortURLError(f"{url}: {scheme}:// takes no options")
        if name not in options:
            known = ", ".join(options)
            raise PortURLError(f"{url}: unknown option {name!r} (known: {known})")
        try:
            values[name] = options[name](text)
        except ValueError as exc:
            raise PortURLError(f"{url}: option {name}={text!r}: {exc}") from exc
    if location is not None:
        location(url, where)
    parsed = PortURL(url, scheme, where, values)
    if _checking.get():
        raise _Checked(url)
    return parsed


def seconds(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("seconds, 0 or more") from None
    if not value >= 0:
        raise ValueError("seconds, 0 or more")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds above 0."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("seconds, above 0")
    return value


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated IP addresses or networks (``127.0.0.1,10.0.0.0/24``), at least one."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise ValueError("IP addresses or networks, separated by commas")
    try:
        return tuple(ipaddress.ip_network(part) for part in parts)
    except ValueError as exc:
        raise ValueError(f"IP addresses or networks, separated by commas: {exc}") from exc


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("a whole number above 0") from None
    if value <= 0:
        raise ValueError("a whole number above 0")
    return value


def flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("1 or 0")

"""Ports chosen by URL: ``open_port("tcp://127.0.0.1:5104")``.

A scheme names a *factory*, ``factory(url: str) -> WordPort``, found in the entry
point group ``acrnema_bridge.ports`` (pyproject.toml's
``[project.entry-points."acrnema_bridge.ports"]``), so another package can add a port
without touching this one (docs/ports.md). Our own schemes are also in a built-in
table, used when the package metadata is not installed (running from a source tree);
an entry point of the same name wins. ``spy+URL`` wraps any of them
(:mod:`bridge.ports.spy`). A factory's module is imported only when its scheme is
opened, so optional libraries (pyserial, pyftdi) load only for their ports.

:func:`open_byte_stream` opens the plain byte stream under a URL of the byte-stream
schemes (:data:`BYTE_STREAMS`: serial, rs485, ftdi, tcp, tcp-listen, pty), with the same
options as the port of that scheme; ``box+SCHEME://`` (:mod:`bridge.ports.box`) speaks
the interface-box protocol over one, and the emulated box serves it on one.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import cast

from bridge.ports.base import PortError, WordPort
from bridge.ports.bytestream import ByteStream

__all__ = [
    "BUILTIN",
    "BYTE_STREAMS",
    "ENTRY_POINT_GROUP",
    "available_schemes",
    "open_byte_stream",
    "open_port",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "acrnema_bridge.ports"
BUILTIN = {
    "loop": "bridge.ports.loop:open_loop",
    "tcp": "bridge.ports.socket:open_tcp",
    "tcp-listen": "bridge.ports.socket:open_tcp_listen",
    "serial": "bridge.ports.serial:open_serial",
    "rs485": "bridge.ports.serial:open_rs485",
    "ftdi": "bridge.ports.serial:open_ftdi",
    "pty": "bridge.ports.pty:open_pty",
    "ftdi-gpio": "bridge.ports.ftdi_gpio:open_ftdi_gpio",
    "box+serial": "bridge.ports.box:open_box",
    "box+rs485": "bridge.ports.box:open_box",
    "box+ftdi": "bridge.ports.box:open_box",
    "box+tcp": "bridge.ports.box:open_box",
    "box+tcp-listen": "bridge.ports.box:open_box",
    "box+pty": "bridge.ports.box:open_box",
}
BYTE_STREAMS = {
    "serial": "bridge.ports.serial:open_serial_stream",
    "rs485": "bridge.ports.serial:open_rs485_stream",
    "ftdi": "bridge.ports.serial:open_ftdi_stream",
    "tcp": "bridge.ports.socket:open_tcp_stream",
    "tcp-listen": "bridge.ports.socket:open_tcp_listen_stream",
    "pty": "bridge.ports.pty:open_pty_stream",
}
"""Byte streams by scheme (:func:`open_byte_stream`): what ``box+SCHEME://`` runs over."""

Factory = Callable[[str], WordPort]


def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception as exc:  # broken metadata of some other package: use ours
        log.warning("cannot read the %s entry points: %s", ENTRY_POINT_GROUP, exc)
        return {}


def _table() -> dict[str, str]:
    return {**BUILTIN, **_entry_points()}


def available_schemes() -> list[str]:
    """The URL schemes :func:`open_port` knows (each also as ``spy+SCHEME``)."""
    return sorted(_table())


def _factory(scheme: str, target: str) -> Factory:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr) if attr else module
    except (ImportError, AttributeError) as exc:
        raise PortError(f"{scheme}:// ports: cannot load {target}: {exc}") from exc
    return cast(Factory, factory)


def open_port(url: str) -> WordPort:
    """Open the port ``url`` names (docs/ports.md lists the schemes and options)."""
    if url.startswith("spy+"):
        from bridge.ports.spy import open_spy

        return open_spy(url, open_port)
    scheme, sep, _ = url.partition("://")
    table = _table()
    if not sep or scheme not in table:
        known = ", ".join(f"{name}://" for name in sorted(table))
        raise PortError(f"{url}: unknown port; known: {known}, and spy+ before any of them")
    port = _factory(scheme, table[scheme])(url)
    if not isinstance(port, WordPort):
        raise PortError(f"{url}: {table[scheme]} did not return a WordPort")
    return port


def open_byte_stream(url: str) -> ByteStream:
    """The byte stream ``url`` names (``serial:///dev/ttyACM0``, ``tcp://HOST:PORT``...)."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in BYTE_STREAMS:
        known = ", ".join(f"{name}://" for name in BYTE_STREAMS)
        raise PortError(f"{url}: not a byte stream; known: {known}")
    module_name, _, attr = BYTE_STREAMS[scheme].partition(":")
    module = importlib.import_module(module_name)
    stream = getattr(module, attr)(url)
    if not isinstance(stream, ByteStream):  # pragma: no cover - our own table
        raise PortError(f"{url}: {BYTE_STREAMS[scheme]} did not return a ByteStream")
    return stream

"""Ports chosen by URL: ``open_port("tcp://127.0.0.1:5104")``.

One table of schemes: each scheme names one *factory*, ``factory(url, **options)``,
that returns either a :class:`~bridge.ports.base.WordPort` (``loop://``,
``ftdi-gpio://``: the words move directly) or a
:class:`~bridge.ports.bytestream.ByteStream` (``tcp://``, ``serial://``, a pty...: the
raw word stream runs over it, :class:`bridge.ports.driver.StreamWordPort`). Our schemes
are in :data:`BUILTIN`, the one table; other packages add schemes in the entry point
group ``acrnema_bridge.ports`` (in their pyproject.toml,
``[project.entry-points."acrnema_bridge.ports"]``), and an entry point of the same name
wins (docs/ports.md, "Adding a port"). A factory's module
is imported only when its scheme is opened, so optional libraries (pyserial, pyftdi)
load only for their ports.

Prefixes compose with any scheme, each handled once here (:data:`PREFIXES`):
``spy+URL`` traces any port (:mod:`bridge.ports.spy`); ``faults+URL?flip=...`` breaks
any port on purpose (:mod:`bridge.ports.faults`); ``box+URL`` speaks the interface-box
protocol over the byte stream of any byte-stream scheme (:mod:`bridge.ports.box`), a
plug-in's too. They nest (``spy+faults+box+serial://...?flip=1e-4``): each takes its own
query items and leaves the others to the URL inside it.

:func:`open_port` takes typed settings beside the URL: ``profile`` (a link profile)
reaches the ports that use one (``box+``, ``ftdi-gpio://``) and is ignored by the others;
other keyword options go to the scheme's factory (a factory that does not take one is a
:class:`~bridge.ports.base.PortError`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from bridge.errors import PortURLError
from bridge.ports.base import PortError, WordPort
from bridge.ports.bytestream import ByteStream
from bridge.profile import Profile

__all__ = [
    "BUILTIN",
    "BYTE_STREAMS",
    "ENTRY_POINT_GROUP",
    "PREFIXES",
    "available_schemes",
    "check_scheme",
    "check_url",
    "open_byte_stream",
    "open_port",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "acrnema_bridge.ports"
BUILTIN = {
    "loop": "bridge.ports.loop:open_loop",
    "tcp": "bridge.ports.socket:open_tcp_stream",
    "tcp-listen": "bridge.ports.socket:open_tcp_listen_stream",
    "serial": "bridge.ports.serial:open_serial_stream",
    "rs485": "bridge.ports.serial:open_rs485_stream",
    "ftdi": "bridge.ports.serial:open_ftdi_stream",
    "pty": "bridge.ports.pty:open_pty_stream",
    "ftdi-gpio": "bridge.ports.ftdi_gpio:open_ftdi_gpio",
}
"""Our schemes and their factories (``module:function``)."""
BYTE_STREAMS = {scheme: target for scheme, target in BUILTIN.items() if "_stream" in target}
"""Our schemes whose factory gives a byte stream (what ``box+SCHEME://`` runs over)."""

Factory = Callable[..., WordPort | ByteStream]


def _open_spy(url: str, profile: Profile | None, options: dict[str, Any]) -> WordPort:
    from bridge.ports.spy import open_spy

    return open_spy(url, lambda inner: open_port(inner, profile=profile, **options))


def _open_faults(url: str, profile: Profile | None, options: dict[str, Any]) -> WordPort:
    from bridge.ports.faults import open_faults

    return open_faults(url, lambda inner: open_port(inner, profile=profile, **options))


def _open_box(url: str, profile: Profile | None, options: dict[str, Any]) -> WordPort:
    from bridge.ports.box import open_box

    if options:
        raise PortURLError(f"{url}: box+ ports take no options {sorted(options)}")
    return open_box(url, profile)


PREFIXES: dict[str, Callable[[str, Profile | None, dict[str, Any]], WordPort]] = {
    "spy+": _open_spy,
    "faults+": _open_faults,
    "box+": _open_box,
}
"""Prefixes that compose with any URL: ``prefix -> opener(url, profile, options)``."""


def _entry_points() -> dict[str, str]:
    """Other packages' schemes. Entries naming this package's own modules are skipped:
    our schemes are :data:`BUILTIN` (metadata of an older install listed them too)."""
    try:
        found = entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # broken metadata of some other package: use ours
        log.warning("cannot read the %s entry points: %s", ENTRY_POINT_GROUP, exc)
        return {}
    return {ep.name: ep.value for ep in found if not ep.value.startswith("bridge.")}


def _table() -> dict[str, str]:
    return {**BUILTIN, **_entry_points()}


def available_schemes() -> list[str]:
    """The URL schemes :func:`open_port` knows (each also after ``spy+`` and
    ``faults+``, and the byte streams after ``box+``)."""
    return sorted(name for name in _table() if not name.startswith(tuple(PREFIXES)))


def _factory(scheme: str, target: str) -> Factory:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr) if attr else module
    except (ImportError, AttributeError) as exc:
        raise PortError(f"{scheme}:// ports: cannot load {target}: {exc}") from exc
    if not callable(factory):
        raise PortError(f"{scheme}:// ports: {target} is not a function")
    return factory  # type: ignore[no-any-return]


def _call(
    factory: Factory, target: str, url: str, profile: Profile | None, options: dict[str, Any]
) -> object:
    """``factory(url, **options)``, with ``profile`` if the factory takes one."""
    kwargs = dict(options)
    parameters: Mapping[str, inspect.Parameter]
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: pass what was given
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if profile is not None and (takes_any or "profile" in parameters):
        kwargs["profile"] = profile
    unknown = [name for name in kwargs if not takes_any and name not in parameters]
    if unknown:
        raise PortURLError(f"{url}: {target} takes no option {', '.join(sorted(unknown))}")
    return factory(url, **kwargs)


def check_scheme(url: str) -> str:
    """The scheme ``url`` names under its prefixes; :class:`PortURLError` if none is known.

    Opens nothing: a command checks its port URL with it before it touches anything else
    (options are checked when the port opens)."""
    inner = url
    while prefix := next((p for p in PREFIXES if inner.startswith(p)), None):
        inner = inner[len(prefix) :]
    scheme, sep, _ = inner.partition("://")
    if not sep or scheme not in _table():
        known = ", ".join(f"{name}://" for name in available_schemes())
        prefixes = " and ".join(PREFIXES)
        raise PortURLError(f"{url}: unknown port; known: {known}, and {prefixes} before them")
    return scheme


def check_url(url: str) -> str:
    """Check the whole of ``url`` and open nothing: each prefix's own items (``spy+``'s
    trace, ``faults+``'s spec, ``box+``'s options), the scheme, and, for our schemes, every
    option and its value; returns the scheme. :class:`PortURLError` names what is wrong.

    A command checks its port URL with it before it creates a spool or opens a port. Our
    factories read their URL with :func:`bridge.ports._url.parse_url` first, which stops
    them there (:func:`bridge.ports._url.check_only`); a plug-in's scheme is checked by
    name only (its options when it opens). The location (a host, a device) is checked
    when the port opens.
    """
    from bridge.ports._url import check_only
    from bridge.ports.box import split_box_url
    from bridge.ports.faults import split_faults_url
    from bridge.ports.spy import split_spy_url

    inner, stream = url, False
    while True:
        if inner.startswith("spy+"):
            inner = split_spy_url(inner)[0]
        elif inner.startswith("faults+"):
            inner = split_faults_url(inner)[0]
        elif inner.startswith("box+"):
            inner, stream = split_box_url(inner)[0], True
        else:
            break
    scheme = check_scheme(inner)
    target = _table()[scheme]
    # ours: each reads its URL with parse_url first (a plug-in's: checked when it opens)
    if target.startswith("bridge.") and not check_only(_factory(scheme, target), inner):
        raise PortError(f"{url}: {target} opened a port while being checked")  # a bug
    if stream and target in BUILTIN.values() and scheme not in BYTE_STREAMS:
        known = ", ".join(f"{name}://" for name in BYTE_STREAMS)
        raise PortURLError(f"{url}: {scheme}:// is not a byte stream; known: {known}")
    return scheme


def _open_scheme(url: str, profile: Profile | None, options: dict[str, Any]) -> object:
    scheme = check_scheme(url)
    target = _table()[scheme]
    return _call(_factory(scheme, target), target, url, profile, options)


def open_port(url: str, *, profile: Profile | None = None, **options: Any) -> WordPort:
    """Open the port ``url`` names (docs/ports.md lists the schemes and options).

    ``profile``: the link profile, for the ports that use one (``box+``, ``ftdi-gpio://``;
    a ``?profile=FILE`` in the URL must then be the same); ``options``: keyword options
    for the scheme's factory (``hook=`` of ``loop://``, a plug-in's own).
    """
    for prefix, opener in PREFIXES.items():
        if url.startswith(prefix):
            return opener(url, profile, options)
    made = _open_scheme(url, profile, options)
    if isinstance(made, ByteStream):
        from bridge.ports.driver import StreamWordPort

        try:
            return StreamWordPort(url, made)
        except BaseException:
            made.release()
            raise
    if not isinstance(made, WordPort):
        raise PortError(f"{url}: the factory gave neither a WordPort nor a ByteStream")
    return made


def open_byte_stream(url: str) -> ByteStream:
    """The byte stream ``url`` names (``serial:///dev/ttyACM0``, ``tcp://HOST:PORT``...)."""
    scheme = url.partition("://")[0]
    made = _open_scheme(url, None, {})
    if isinstance(made, ByteStream):
        return made
    if isinstance(made, WordPort):  # a word link (loop://, ftdi-gpio://): not a stream
        made.close()
    known = ", ".join(f"{name}://" for name in BYTE_STREAMS)
    raise PortURLError(f"{url}: {scheme}:// is not a byte stream; known: {known} (and plug-ins')")

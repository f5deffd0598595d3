"""``box+SCHEME://``: the link through the interface box, over any byte stream.

The interface box (docs/hardware.md) runs the 50-pin link's word handshake; the host talks
to it with the interface-box protocol (docs/box-protocol.md) over a byte stream: USB CDC
(``box+serial:///dev/ttyACM0``), an RS-422 / 4-wire RS-485 UART (``box+rs485://...``,
``box+ftdi://...``) or TCP to a box or an emulated box in another process
(``box+tcp://HOST:PORT``). ``box+`` is a prefix before any byte-stream scheme
(``box+tcp-listen://``, ``box+pty://``, a plug-in's): the inner URL opens a *byte stream*
(:func:`bridge.ports.registry.open_byte_stream`) and keeps its own options (``baud``,
``rtscts``, ``write_timeout``...). To the stack a :class:`BoxPort` is a
:class:`~bridge.ports.base.WordPort` like ``loop://``.

Two layers, as everywhere (STYLE rule 13):

* :class:`~bridge.box.host.BoxHost` (:mod:`bridge.box.host`, pure), the protocol engine:
  the start-up handshake, credits both ways, stream positions and gaps, request retries,
  the box's reports;
* :class:`BoxPort`, the one threaded driver of :mod:`bridge.ports.driver` running it: no
  thread of its own, the words that arrived, the rules of :mod:`bridge.ports.base`.

``send`` cuts words into WORDS_OUT frames within the box's credit (waiting for credit up
to the stream's ``write_timeout``) and marks the end of each call as a data-link boundary;
``recv`` returns WORDS_IN words in order and grants credit as they are taken.
``set_ready(False)`` sends LINE_SET and RESET (the link stack restarts: both streams
restart at 0), ``set_ready(True)`` LINE_SET. ERROR reports are logged (parity at DEBUG,
handshake timeouts at INFO, frame and word losses at WARNING, an overflow at ERROR) and
counted in :attr:`BoxPort.stats`, with the last STATS report as ``box_*`` entries.

Unplug and reconnection (docs/box-protocol.md, "Unplug and reconnection"): a read or
write error, the end of the stream, a box that takes no bytes for the stream's
``write_timeout``, or the host engine giving up on it (no REPLY, silence) means the box is
gone: the stream is released and ``send``/``recv`` raise
:class:`~bridge.ports.base.LinkLost` naming the device and the reason.
:meth:`BoxPort.wait_peer` then reopens the device every ``retry`` seconds until its
timeout, redoes the start-up handshake and returns True once the peer is READY;
:class:`bridge.endpoint.Endpoint` resets the stack on the ``LinkLost``, and the spool and
the forwarder never see any of it.

URL options, taken out before the inner URL is opened: ``profile=FILE`` (a link profile;
or pass ``profile`` to :func:`open_box` or :func:`bridge.ports.open_port`), ``duplex=1``
(no bus arbitration: an emulated line side only, such as
:class:`bridge.emulator.box.EmulatedBox`), ``role=a|b`` (default b, the bridge's place;
a: the box stands in for a scanner, bench use), ``window`` (words of credit given to the
box, default 65536), ``reply_timeout`` (seconds, default 1), ``retry`` (seconds between
reopening attempts, default 0.2).

The host engine's names (:class:`~bridge.box.host.BoxHost`, its events, ``TRANSITIONS``,
:class:`~bridge.box.host.BoxError`...) are still importable from here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from bridge.box.host import (
    ATTEMPTS,
    CREDIT_KEEPALIVE_S,
    DEFAULT_WINDOW,
    REPLY_TIMEOUT_S,
    TRANSITIONS,
    BoxError,
    BoxGone,
    BoxHost,
    BoxUp,
    BoxVersionError,
    HostEvent,
    HostState,
    PeerReady,
    WordsArrived,
    check_info,
    firmware_text,
)
from bridge.box.protocol import Info, MsgType, Role
from bridge.errors import ConfigError, PortURLError
from bridge.ports._url import flag, positive_int, seconds
from bridge.ports.base import LinkLost, PortError
from bridge.ports.bytestream import ByteStream
from bridge.ports.driver import RETRY_S, EnginePort
from bridge.profile import REFERENCE, Profile, load_profile

__all__ = [
    "ATTEMPTS",
    "CREDIT_KEEPALIVE_S",
    "DEFAULT_WINDOW",
    "REPLY_TIMEOUT_S",
    "RETRY_S",
    "TRANSITIONS",
    "BoxError",
    "BoxGone",
    "BoxHost",
    "BoxPort",
    "BoxUp",
    "BoxVersionError",
    "HostEvent",
    "HostState",
    "PeerReady",
    "WordsArrived",
    "check_info",
    "open_box",
    "split_box_url",
]

log = logging.getLogger(__name__)


class BoxPort(EnginePort):
    """A :class:`~bridge.ports.base.WordPort` through the interface box (module doc)."""

    what: ClassVar[str] = "the interface box"
    lost_level: ClassVar[int] = logging.WARNING

    def __init__(
        self,
        url: str,
        stream: ByteStream,
        profile: Profile = REFERENCE,
        *,
        role: Role = Role.B,
        duplex: bool = False,
        window: int = DEFAULT_WINDOW,
        reply_timeout: float = REPLY_TIMEOUT_S,
        retry: float = RETRY_S,
    ) -> None:
        self.profile = profile
        self.host = BoxHost(
            url, profile, role=role, duplex=duplex, window=window, reply_timeout=reply_timeout
        )
        super().__init__(url, stream, self.host, retry=retry)

    @property
    def info(self) -> Info | None:
        """The box's INFO (what it is and can do), once it answered HELLO."""
        return self.host.info

    @property
    def stats(self) -> dict[str, int]:
        """Counters: frames, words, gaps, the box's ERROR reports (``error_*``) and its
        last STATS report (``box_*``); :meth:`query_stats` asks for a fresh one."""
        with self._cond:
            return {**self.host.stats, "discarded": self.discarded}

    def query_stats(self) -> None:
        """Ask the box for its counters (they arrive as ``box_*`` in :attr:`stats`)."""
        self._check_open()
        with self._cond:
            self.host.query(MsgType.STATS, time.monotonic())
        with contextlib.suppress(LinkLost):
            self._flush(wait=False)

    def _on_event(self, event: object) -> None:
        if isinstance(event, BoxUp):
            log.info(
                "%s: interface box %r (firmware %s, protocol %d) up",
                self.url,
                event.info.board,
                firmware_text(event.info),
                event.info.version,
            )


# --- URLs -----------------------------------------------------------------------------


def _role(text: str) -> Role:
    try:
        return Role[text.upper()]
    except KeyError:
        raise ValueError("a or b") from None


_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "profile": str,
    "duplex": flag,
    "role": _role,
    "window": positive_int,
    "reply_timeout": seconds,
    "retry": seconds,
}


def split_box_url(url: str) -> tuple[str, dict[str, Any]]:
    """``box+URL?opts`` -> (the inner byte stream's URL with its own options, box options)."""
    if not url.startswith("box+"):
        raise PortError(f"{url}: not a box+ URL")
    base, sep, query = url[len("box+") :].partition("?")
    options: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    for name, text in parse_qsl(query, keep_blank_values=True):
        if name not in _OPTIONS:
            kept.append((name, text))
            continue
        try:
            options[name] = _OPTIONS[name](text)
        except ValueError as exc:
            raise PortURLError(f"{url}: option {name}={text!r}: {exc}") from exc
    if sep and kept:
        base += "?" + urlencode(kept)
    if not base or "://" not in base:
        raise PortURLError(f"{url}: give the byte stream, as in box+serial:///dev/ttyACM0")
    return base, options


def open_box(url: str, profile: Profile | None = None) -> BoxPort:
    """Open ``box+SCHEME://...`` (module doc); ``profile`` (or ``?profile=FILE``) gives the
    physical layer the box is configured for and the pin map it must have."""
    from bridge.ports.registry import open_byte_stream

    inner, options = split_box_url(url)
    if "profile" in options:
        try:
            from_url = load_profile(options["profile"])
        except ConfigError as exc:
            raise PortError(f"{url}: {exc}") from exc
        if profile is not None and profile != from_url:
            raise PortURLError(f"{url}: a profile in the URL and another one given")
        profile = from_url
    try:
        stream = open_byte_stream(inner)
    except PortError as exc:
        if "unknown option" in str(exc):
            raise PortURLError(f"{exc}; box+ options: {', '.join(_OPTIONS)}") from exc
        raise
    try:
        return BoxPort(
            url,
            stream,
            profile or REFERENCE,
            role=options.get("role", Role.B),
            duplex=options.get("duplex", False),
            window=options.get("window", DEFAULT_WINDOW),
            reply_timeout=options.get("reply_timeout", REPLY_TIMEOUT_S),
            retry=options.get("retry", RETRY_S),
        )
    except ValueError as exc:
        stream.release()
        raise PortError(f"{url}: {exc}") from exc
    except BaseException:
        stream.release()
        raise

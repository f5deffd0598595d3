"""The one exception tree of acrnema-bridge.

Every error the package raises on purpose derives from :class:`BridgeError` and is defined
here, whatever module raises it (the modules that used to define one import it from here,
so their old import paths give the very same class). Foreign exceptions (pydicom, OS
errors, pynetdicom) are wrapped at the boundary with ``raise ... from``. This module
imports nothing from the package, so any module, pure or not, can use it.

The tree (``+`` names a further base class; ``tests/test_errors.py`` checks this drawing
against the classes)::

    BridgeError
        CaptureError
        ConfigError
            ProfileError
            SettingsError
        ConversionError
            ImageDataError
            RenderError
        ForwardError
            ForwarderFailed
            NoResponse
        PortError
            BoxError
                BoxVersionError
            LinkLost
            PortIOError
            PortTimeoutError  +TimeoutError
                HandshakeTimeout
            PortURLError  +ConfigError
                FaultSpecError  +ValueError
            PortUnavailableError
        ProtocolError
            BoxProtocolError  +PortError +ValueError
            LinkProtocolError
                LocalLinkProtocolError  +LocalProtocolError
                RemoteLinkProtocolError  +RemoteProtocolError
            LocalProtocolError
            RemoteProtocolError
        SpoolError
            SpoolBusyError
            SpoolDamagedError
            SpoolPathError  +ConfigError

What each branch means:

* **port errors**: a port cannot be opened (bad URL, :class:`PortUnavailableError` for a
  missing library or device), its device failed (:class:`PortIOError`), an awaited edge
  did not come (:class:`PortTimeoutError`, also a :class:`TimeoutError`), or the other
  side is gone (:class:`LinkLost`: it dropped READY or the connection was lost);
* **protocol errors** carry the ``layer`` that gave up, ``remote`` (True: the peer broke
  the protocol; False: it was misused here) and, where the protocol has one, the
  ``status`` code; catch :class:`LocalProtocolError` or :class:`RemoteProtocolError` for
  one side only;
* **conversion**, **spool** (busy: another process owns it; damaged: its database cannot
  be trusted), **forward** (a whole operation, or the forwarder itself, failed),
  **config** (a setting or argument; :class:`ProfileError` for a link profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = [
    "BoxError",
    "BoxProtocolError",
    "BoxVersionError",
    "BridgeError",
    "CaptureError",
    "ConfigError",
    "ConversionError",
    "FaultSpecError",
    "ForwardError",
    "ForwarderFailed",
    "HandshakeTimeout",
    "ImageDataError",
    "LinkLost",
    "LinkProtocolError",
    "LocalLinkProtocolError",
    "LocalProtocolError",
    "NoResponse",
    "PortError",
    "PortIOError",
    "PortTimeoutError",
    "PortURLError",
    "PortUnavailableError",
    "ProfileError",
    "ProtocolError",
    "RemoteLinkProtocolError",
    "RemoteProtocolError",
    "RenderError",
    "SettingsError",
    "SpoolBusyError",
    "SpoolDamagedError",
    "SpoolError",
    "SpoolPathError",
]


class BridgeError(Exception):
    """Root of every error acrnema-bridge raises on purpose."""


# --- configuration -------------------------------------------------------------------


class ConfigError(BridgeError):
    """A configuration value or command-line argument is invalid."""


class ProfileError(ConfigError):
    """A profile that cannot be used; ``problems`` names the key of each problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class SettingsError(ConfigError):
    """Settings that cannot be used; ``problems`` holds one line per problem, each naming
    where the value was written (file, ``env $NAME``, ``flag --name``) and its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# --- conversion ----------------------------------------------------------------------


class ConversionError(BridgeError):
    """An input cannot be decoded or converted.

    The message always names the source; ``tag`` and ``offset`` say where in it the
    problem was found when that is known.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "<bytes>",
        tag: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.source = source
        self.tag = tag
        self.offset = offset
        where = [source]
        if tag is not None:
            where.append(f"tag ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{', '.join(where)}: {reason}")


class ImageDataError(ConversionError):
    """The image data does not match its header, and no DICOM image may be made of it.

    Raised when the Pixel Data is missing or shorter than the image, and when storing the
    image would need a repair that changes it (``repairs``, each a
    :class:`bridge.dicom.pixels.Repair`) and repairs are not accepted
    (``ConvertOptions.accept_repairs``). The link answers it with a failure status, so the
    scanner keeps the image (docs/conformance-statement.md).
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "<bytes>",
        tag: int | None = None,
        offset: int | None = None,
        repairs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(reason, source=source, tag=tag, offset=offset)
        self.repairs = repairs


# --- forwarding ----------------------------------------------------------------------


class RenderError(ConversionError):
    """An object has no pixels a picture can be made of (:mod:`bridge.dicom.render`).

    Raised for objects without Pixel Data, with pixel data in a form that cannot be
    decoded here (a compression without an installed decoder), or whose pixels do not
    match their header. A page or index shows a placeholder instead; nothing else fails.
    """


class ForwardError(BridgeError):
    """A forwarding operation (C-ECHO, association, listener) failed as a whole."""


class ForwarderFailed(ForwardError):
    """A worker of the forwarder could not go on; the forwarder stopped.

    ``destination`` names the worker's destination, ``cause`` is its last exception
    (also the ``__cause__``).
    """

    def __init__(self, destination: str, cause: BaseException) -> None:
        super().__init__(f"forwarding to {destination} cannot go on: {cause!r}")
        self.destination = destination
        self.cause = cause


class NoResponse(ForwardError):
    """No response to a DIMSE request: the association was aborted or lost, or timed out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- ports ---------------------------------------------------------------------------


class PortError(BridgeError):
    """A port that cannot be opened or used: bad URL, missing device, missing library."""


class PortUnavailableError(PortError):
    """A port whose library or device is missing (the message says what to install)."""


class PortURLError(PortError, ConfigError):
    """A port URL that cannot mean anything: an unknown scheme, an unknown or bad option.

    A usage error (the command line exits 2), found before any port or spool is opened."""


class PortIOError(PortError):
    """Reading or writing a port's device, socket or trace file failed (``__cause__``)."""


class PortTimeoutError(PortError, TimeoutError):
    """Something a port waits for did not come in time."""


class HandshakeTimeout(PortTimeoutError):
    """An edge of the ``ftdi-gpio://`` word handshake or bus hand-over not answered in time."""

    PHASES: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "ack": "ACK asserted after REQ",
            "ack-release": "ACK deasserted after REQ was deasserted",
            "ack-idle": "ACK deasserted before REQ",
            "req-release": "REQ deasserted after ACK",
            "dir": "DIR asserted (side A holding the bus) before asking with BREQ",
            "grant": "DIR deasserted (the bus handed over) after BREQ",
            "bus-return": "BREQ deasserted (the bus given back) by side B",
        }
    )
    """What the port waited for in each phase (``phase`` is one of the keys)."""

    def __init__(
        self, url: str, sending: bool, index: int, count: int | None, phase: str, ms: float
    ) -> None:
        self.url = url
        self.sending = sending
        self.index = index  # the word's index in the buffer sent, or among words received
        self.phase = phase
        self.waited_ms = ms
        what = f"word {index}" + (f" of {count}" if count is not None else "")
        verb = "sending" if sending else "receiving"
        super().__init__(
            f"{url}: handshake timeout {verb} {what}: no {self.PHASES[phase]} within "
            f"{ms:g} ms (phase {phase!r})"
        )


class LinkLost(PortError):
    """The other side is gone: it dropped READY, or the connection or device was lost.

    Named ``LinkDown`` before 0.2 (``bridge.ports.LinkDown`` still gives it, with a
    :class:`DeprecationWarning`); ``LinkDown`` is now only the link stack's event.
    """


class FaultSpecError(PortURLError, ValueError):
    """A fault spec (``emulate --faults``, ``faults+URL?...``) that cannot be parsed."""


class BoxError(PortError):
    """The box answered but cannot serve this host and profile (protocol version, pin
    map, capabilities, a refused CONFIGURE); retrying does not help."""


class BoxVersionError(BoxError):
    """The box speaks no protocol version this host speaks."""


# --- protocols -----------------------------------------------------------------------


class ProtocolError(BridgeError):
    """A protocol cannot go on.

    ``layer`` names the protocol layer that gave up, ``remote`` says who broke it (True:
    the peer; False: a misuse here) and ``status`` is the protocol's code for the problem
    where it has one (None otherwise).
    """

    def __init__(
        self, message: str, *, layer: str, remote: bool = False, status: int | None = None
    ) -> None:
        self.layer = layer
        self.remote = remote
        self.status = status
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """A protocol misused on this side (a call not allowed in the state it is in)."""

    def __init__(self, message: str, *, layer: str, status: int | None = None) -> None:
        super().__init__(message, layer=layer, remote=False, status=status)


class RemoteProtocolError(ProtocolError):
    """A protocol broken by the peer (something arrived that the protocol forbids)."""

    def __init__(self, message: str, *, layer: str, status: int | None = None) -> None:
        super().__init__(message, layer=layer, remote=True, status=status)


class LinkProtocolError(ProtocolError):
    """A layer of the ACR-NEMA link cannot go on: misused here (local) or broken by the peer.

    ``LinkProtocolError(reason, layer=..., remote=...)`` gives a
    :class:`LocalLinkProtocolError` or a :class:`RemoteLinkProtocolError`, so the error is
    both a ``LinkProtocolError`` and a :class:`LocalProtocolError` or
    :class:`RemoteProtocolError`. ``reason`` is the message without the layer.
    """

    _SIDE: ClassVar[bool | None] = None
    """The ``remote`` of every instance of a subclass that is always one side (None: as
    given)."""

    def __new__(cls, reason: str, *args: Any, **kwargs: Any) -> LinkProtocolError:
        if cls is LinkProtocolError:
            cls = RemoteLinkProtocolError if kwargs.get("remote") else LocalLinkProtocolError
        return super().__new__(cls, reason)

    def __init__(
        self,
        reason: str,
        *,
        layer: str = "datalink",
        remote: bool = False,
        status: int | None = None,
    ) -> None:
        self.reason = reason
        remote = remote if self._SIDE is None else self._SIDE
        side = "remote" if remote else "local"
        ProtocolError.__init__(
            self, f"{layer} ({side}): {reason}", layer=layer, remote=remote, status=status
        )


class LocalLinkProtocolError(LinkProtocolError, LocalProtocolError):
    """A link layer misused on this side."""

    _SIDE = False


class RemoteLinkProtocolError(LinkProtocolError, RemoteProtocolError):
    """A link layer broken by the peer."""

    _SIDE = True


class BoxProtocolError(ProtocolError, PortError, ValueError):
    """A body that is not a valid box-protocol message, or a message that cannot be encoded.

    ``reason`` is the box protocol's bad-frame reason (``BadFrameReason``) and ``status``
    its code. The frame decoder turns damage in what arrives into ``BadFrame`` events; this
    error is what encoding, or parsing a body by hand, raises.
    """

    def __init__(self, reason: Any, text: str) -> None:
        self.reason = reason
        super().__init__(text, layer="box", status=int(reason))


# --- spool ---------------------------------------------------------------------------


class SpoolError(BridgeError):
    """The spool cannot take or give an object (disk full, read-only, corrupt database)."""


class SpoolBusyError(SpoolError):
    """Another process owns the spool (holds ``owner.lock``); the message names it."""


class SpoolDamagedError(SpoolError):
    """The database cannot be trusted with the objects on disk; ``spool rebuild`` mends it."""


class SpoolPathError(SpoolError, ConfigError):
    """The spool path names no spool (missing, a file, a folder of other things): exit 2."""


# --- captures ------------------------------------------------------------------------


class CaptureError(BridgeError):
    """A logic-analyser capture or trace that cannot be read (the message names the file
    and the byte, sample or time): ``capture decode`` and ``trace`` exit 1."""

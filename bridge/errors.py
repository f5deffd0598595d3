"""The one exception tree of acrnema-bridge.

Every error the package raises on purpose derives from :class:`BridgeError`. Foreign
exceptions (pydicom, OS errors) are wrapped at the boundary with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "ConfigError",
    "ConversionError",
    "ForwardError",
    "PortError",
    "PortUnavailableError",
]


class BridgeError(Exception):
    """Root of every error acrnema-bridge raises on purpose."""


class ConfigError(BridgeError):
    """A configuration value or command-line argument is invalid."""


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


class ForwardError(BridgeError):
    """A forwarding operation (C-ECHO, association, listener) failed as a whole."""


class PortError(BridgeError):
    """A port that cannot be opened or used: bad URL, missing device, missing library."""


class PortUnavailableError(PortError):
    """A port whose library or device is missing (the message says what to install)."""

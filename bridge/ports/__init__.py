"""Ports: the only device I/O of acrnema-bridge, chosen by URL (docs/ports.md).

``open_port(url)`` gives a :class:`~bridge.ports.base.WordPort` for ``loop://NAME``,
``tcp://HOST:PORT``, ``tcp-listen://HOST:PORT``, ``serial://DEVICE``,
``rs485://DEVICE``, ``ftdi://...``, ``pty://``, the interface box as ``box+serial://``
(``box+rs485://``, ``box+ftdi://``, ``box+tcp://``...) and ``spy+`` any of them; more
come from the ``acrnema_bridge.ports`` entry points. Optional libraries (pyserial,
pyftdi) are imported only when their port is opened.
"""

from bridge.ports import base as _base
from bridge.ports.base import MAX_RECV_WORDS, LinkLost, PortError, PortUnavailableError, WordPort
from bridge.ports.faults import FaultSpec, FaultSpecError, FaultyPort
from bridge.ports.loop import LoopPort, loop_pair
from bridge.ports.registry import available_schemes, open_port
from bridge.ports.spy import SpyPort, format_trace, read_trace

__all__ = [
    "MAX_RECV_WORDS",
    "FaultSpec",
    "FaultSpecError",
    "FaultyPort",
    "LinkLost",
    "LoopPort",
    "PortError",
    "PortUnavailableError",
    "SpyPort",
    "WordPort",
    "available_schemes",
    "format_trace",
    "loop_pair",
    "open_port",
    "read_trace",
]


def __getattr__(name: str) -> object:
    """Deprecated names: ``LinkDown`` is :class:`LinkLost` (with a DeprecationWarning)."""
    if name == "LinkDown":
        return _base.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The interface-box protocol and its host engine, sans-I/O (docs/box-protocol.md).

* :mod:`bridge.box.protocol`: the codec, messages as frozen dataclasses, COBS frames with
  CRC-32, an incremental frame decoder;
* :mod:`bridge.box.host`: :class:`~bridge.box.host.BoxHost`, the host's side of the
  protocol as an engine of the one shape (:mod:`bridge.engine`).

Pure: nothing here opens a device, starts a thread or sleeps (a test reads the imports).
The I/O is :class:`bridge.ports.box.BoxPort`, the one threaded driver of
:mod:`bridge.ports.driver` running a :class:`~bridge.box.host.BoxHost`. The old import
paths :mod:`bridge.ports.boxproto` and :mod:`bridge.ports.box` still give these names.
"""

from bridge.box.host import BoxError, BoxGone, BoxHost, BoxUp, BoxVersionError, HostState
from bridge.box.protocol import PROTOCOL_VERSION, BoxProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "BoxError",
    "BoxGone",
    "BoxHost",
    "BoxProtocolError",
    "BoxUp",
    "BoxVersionError",
    "HostState",
]

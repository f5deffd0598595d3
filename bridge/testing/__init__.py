"""The test kit acrnema-bridge ships (STYLE rule 15; docs/ports.md, "Testing a port").

* :mod:`bridge.testing.ports`: the port conformance suite, for any pair of connected
  ends: :class:`~bridge.testing.ports.PortConformance` to subclass in a pytest file,
  :func:`~bridge.testing.ports.check_port_pair` to call from anywhere. ``tests/`` runs it
  over every built-in port, ``hwtests/`` over a real adapter, a plug-in over its own;
* :mod:`bridge.testing.feeding`: feed a decoder its input whole, byte by byte, in random
  pieces and with trailing data, and check that every way gives the same events.

Nothing here needs pytest; the emulators stay in :mod:`bridge.emulator`.
"""

from bridge.testing.feeding import FEEDINGS, check_feeding, feed_as, pieces
from bridge.testing.ports import CHECKS, Ends, PortConformance, check_port_pair

__all__ = [
    "CHECKS",
    "FEEDINGS",
    "Ends",
    "PortConformance",
    "check_feeding",
    "check_port_pair",
    "feed_as",
    "pieces",
]

"""The test kit acrnema-bridge ships (STYLE rule 15; docs/ports.md, "Testing a port").

* :mod:`bridge.testing.ports`: the port conformance suite, for any pair of connected
  ends: :class:`~bridge.testing.ports.PortConformance` to subclass in a pytest file,
  :func:`~bridge.testing.ports.check_port_pair` to call from anywhere. ``tests/`` runs it
  over every built-in port, ``hwtests/`` over a real adapter, a plug-in over its own;
* :mod:`bridge.testing.feeding`: feed a decoder its input whole, byte by byte, in random
  pieces and with trailing data, and check that every way gives the same events;
* the emulator pieces, imported on their own (they are heavier than the kit):
  :mod:`bridge.testing.box`, the emulated interface box (the box protocol in Python, or
  the firmware's C core in the loop) and :func:`~bridge.testing.box.emulated_bench`;
  :mod:`bridge.testing.phantom`, generated CT and MR phantoms with 1990s ACR-NEMA headers
  (the images the emulated scanner sends); :mod:`bridge.testing.store_scp`, an embedded
  DICOM Storage SCP on 127.0.0.1 (the PACS of ``acrnema-bridge demo`` and of the tests).

The emulated scanner and receiver are the link's own roles, :mod:`bridge.link`, not test
copies. Nothing here needs pytest.
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

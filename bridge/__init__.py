"""acrnema-bridge: ACR-NEMA 2.0 equipment and files to DICOM networks.

The package is silent by default: it logs through :mod:`logging` under the ``bridge``
name with a :class:`logging.NullHandler`; only the command line installs handlers.
"""

import logging

from bridge.errors import BridgeError, ConversionError

__all__ = ["BridgeError", "ConversionError", "__version__"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

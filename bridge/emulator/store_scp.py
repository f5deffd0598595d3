"""Former home of the embedded DICOM store: now :mod:`bridge.testing.store_scp`; kept so
that old imports work.
"""

from bridge.testing.store_scp import EmbeddedStore

__all__ = ["EmbeddedStore"]

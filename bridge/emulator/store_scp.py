"""Former home of the embedded DICOM store: now :mod:`bridge.testing.store_scp`
(deprecated).

It still imports from here, the same object, with a :class:`DeprecationWarning`
(:func:`bridge._renamed.moved_names`).
"""

from bridge._renamed import moved_names

__all__, __getattr__ = moved_names(__name__, {"bridge.testing.store_scp": ("EmbeddedStore",)})

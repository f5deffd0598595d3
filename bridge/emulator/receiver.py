"""Former home of :class:`FolderWriter`: now :mod:`bridge.link.receiver` (deprecated).

It still imports from here, the same object, with a :class:`DeprecationWarning`
(:func:`bridge._renamed.moved_names`).
"""

from bridge._renamed import moved_names

__all__, __getattr__ = moved_names(__name__, {"bridge.link.receiver": ("FolderWriter",)})

"""Former home of the emulated interface box: now :mod:`bridge.testing.box` (deprecated).

Every name still imports from here, the same object, with a :class:`DeprecationWarning`
(:func:`bridge._renamed.moved_names`).
"""

from bridge._renamed import moved_names
from bridge.testing import box as _home

__all__, __getattr__ = moved_names(__name__, {_home.__name__: _home.__all__})

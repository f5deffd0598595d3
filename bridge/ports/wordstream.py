"""The old path of :mod:`bridge.wordstream` (deprecated).

The raw word stream's encoding and engine are pure protocol code, so they moved out of
``bridge/ports/`` (the drivers) to :mod:`bridge.wordstream`, beside :mod:`bridge.engine`.
Every name still imports from here, the same object, with a :class:`DeprecationWarning`
(:func:`bridge._renamed.moved_module`); ``StreamWordPort`` is
:class:`bridge.ports.driver.StreamWordPort`. ``python -m bridge.ports.wordstream`` runs
the measurement of :mod:`bridge.wordstream`.
"""

import runpy

from bridge._renamed import moved_module

__getattr__ = moved_module(__name__, "bridge.wordstream", {"StreamWordPort": "bridge.ports.driver"})

if __name__ == "__main__":  # pragma: no cover - a measurement, not a test
    runpy.run_module("bridge.wordstream", run_name="__main__")

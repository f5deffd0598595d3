"""The old name of :mod:`bridge.box.protocol` (the codec moved to the pure ``bridge.box``).

``from bridge.ports import boxproto`` and ``import bridge.ports.boxproto`` give the very
module :mod:`bridge.box.protocol` (the same object, private names and all), so code,
tests, firmware tools and hwtests written against the old path keep working unchanged.
"""

import sys

from bridge.box import protocol as _protocol
from bridge.box.protocol import *  # noqa: F403 - the names, for type checkers

sys.modules[__name__] = _protocol

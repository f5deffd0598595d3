"""``python -m bridge.cli``: the ``acrnema-bridge`` command."""

import sys

from bridge.cli import main

sys.exit(main())

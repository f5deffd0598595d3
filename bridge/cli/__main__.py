"""``python -m bridge.cli``: the ``acrnema-bridge`` command."""

import sys

from bridge.cli import main

if __name__ == "__main__":
    sys.exit(main())

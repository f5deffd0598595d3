"""Test-only faults: a convert worker process that meets the poison input kills itself, or
hangs on the stuck input.

tests/test_batch.py and tests/test_batch_stop.py put this folder on PYTHONPATH of a real
``acrnema-bridge convert`` run, so Python imports it at start-up. When
``BRIDGE_TEST_POISON`` is set, a worker process (never the batch parent) that is handed an
input whose name contains it dies of SIGKILL, as a worker hit by the kernel's OOM killer or
a crash in a C extension would, after appending its pid to the file
``BRIDGE_TEST_POISON_LOG``. When ``BRIDGE_TEST_STUCK`` is set, a worker handed an input
whose name contains it never finishes it, as a worker stuck in a C extension would.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

_POISON = os.environ.get("BRIDGE_TEST_POISON")
_STUCK = os.environ.get("BRIDGE_TEST_STUCK")

if _POISON or _STUCK:
    import bridge.batch as _batch

    _original = _batch.convert_file

    def _convert_file(source: Path, *args: Any, **kwargs: Any) -> Any:
        if multiprocessing.parent_process() is not None:
            if _POISON and _POISON in source.name:
                with open(os.environ["BRIDGE_TEST_POISON_LOG"], "a") as log:
                    log.write(f"{os.getpid()}\n")
                os.kill(os.getpid(), signal.SIGKILL)
            while _STUCK and _STUCK in source.name:
                time.sleep(1)
        return _original(source, *args, **kwargs)

    _batch.convert_file = _convert_file

"""Test-only fault: a convert worker process that meets the poison input kills itself.

tests/test_batch.py puts this folder on PYTHONPATH of a real ``acrnema-bridge convert``
run, so Python imports it at start-up. When ``BRIDGE_TEST_POISON`` is set, a worker
process (never the batch parent) that is handed an input whose name contains it dies of
SIGKILL, as a worker hit by the kernel's OOM killer or a crash in a C extension would,
after appending its pid to the file ``BRIDGE_TEST_POISON_LOG``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

_POISON = os.environ.get("BRIDGE_TEST_POISON")

if _POISON:
    import bridge.batch as _batch

    _original = _batch.convert_file

    def _convert_file(source: Path, *args: Any, **kwargs: Any) -> Any:
        if _POISON in source.name and multiprocessing.parent_process() is not None:
            with open(os.environ["BRIDGE_TEST_POISON_LOG"], "a") as log:
                log.write(f"{os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return _original(source, *args, **kwargs)

    _batch.convert_file = _convert_file

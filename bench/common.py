"""Helpers shared by the benchmark scripts (run as ``python bench/NAME.py``)."""

from __future__ import annotations

import platform
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BenchError", "cpu_model", "tool_version", "work_dir"]


class BenchError(Exception):
    """A tool failed or an object did not arrive; the figures of this run are not valid."""


def tool_version(command: list[str]) -> str:
    """The first line a tool prints for ``command`` (e.g. ``--version``), or ``?``."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def work_dir(keep: Path | None) -> Path:
    """A fresh temporary folder, or ``keep`` if it is new or empty.

    A re-run into old outputs would time the converter skipping inputs it already did.
    """
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="acrnema-bench-"))
    if keep.exists() and any(keep.iterdir()):
        raise BenchError(f"--keep {keep}: folder is not empty")
    keep.mkdir(parents=True, exist_ok=True)
    return keep

"""Helpers shared by the benchmark scripts (run as ``python bench/NAME.py``)."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "BenchError",
    "children_cpu",
    "cpu_model",
    "machine_lines",
    "ours_command",
    "run_in",
    "tool_version",
    "work_dir",
]


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


def run_in(keep: Path | None, bench: Callable[[Path], None]) -> int:
    """Run ``bench`` in a work folder (:func:`work_dir`); the exit status: 0, 2 when the
    ``--keep`` folder cannot be used, or 1 when the run fails (a :class:`BenchError`, its
    message on stderr). The folder is removed afterwards unless it is the ``--keep`` one."""
    try:
        work = work_dir(keep)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        bench(work)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work}")
    return 0


def ours_command() -> list[str]:
    """How to start ``acrnema-bridge`` of this interpreter (its script, or ``-m``)."""
    script = Path(sys.executable).parent / "acrnema-bridge"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "bridge.cli"]


def children_cpu() -> float:
    """User + system seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_lines(*lines: str) -> list[str]:
    """A run's report opens with the machine, then ``lines`` (versions), then the load."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()}",
        *lines,
        f"load average before the runs: {load} (other work on the machine skews wall clock)",
    ]

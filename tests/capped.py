"""Run the real ``acrnema-bridge`` command in a child process under a memory cap.

:func:`run_capped` starts the child with ``RLIMIT_AS`` set (so a runaway allocation ends
in a MemoryError instead of eating the machine), reaps it with ``os.wait4`` and returns
its exit status, its output and its peak resident set size (``ru_maxrss``), which the
bounds tests compare with the bound stated in docs/conversion.md.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MIB", "Capped", "bridge_command", "run_capped"]

MIB = 1 << 20
DEADLINE_S = 120.0  # generous: only there to catch a hang


@dataclass(frozen=True)
class Capped:
    """What a capped child did."""

    status: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes (ru_maxrss of the child itself)

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / MIB


def bridge_command() -> list[str]:
    """The installed ``acrnema-bridge`` script of the running virtualenv."""
    script = Path(sys.executable).parent / "acrnema-bridge"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "bridge.cli"]


def run_capped(
    argv: Sequence[str],
    *,
    cap: int,
    deadline: float = DEADLINE_S,
    env: dict[str, str] | None = None,
) -> Capped:
    """Run ``argv`` with an address-space cap of ``cap`` bytes; kill it after ``deadline``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit,
            env={**os.environ, **(env or {})},
        )
        end = time.monotonic() + deadline
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise AssertionError(f"{argv[0]} still running after {deadline:.0f} s: killed")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Capped(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_maxrss * 1024,  # kilobytes on Linux
        )

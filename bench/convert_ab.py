"""Our conversion speed, one version against another, interleaved on the same batch.

Usage: ``python bench/convert_ab.py OLD_TREE [--count N] [--rounds R]``
(results: docs/benchmarks.md, "Conversion: before and after the limits").

OLD_TREE is a source tree of the other version (for example
``git archive f998c77 | tar -x -C /tmp/old``); it is put first on ``PYTHONPATH`` of its
runs, so the same installed ``acrnema-bridge`` script runs the old code. Both versions
convert the same N generated 512x512 CT slices with ``--jobs 2``, alternating, R rounds:
on a shared machine a load change then hits both alike. Printed per version: files/s
(wall clock) and user + system ms per file of every round, and their medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bridge.testing.phantom import PhantomSpec, phantom_file


def _script() -> str:
    script = Path(sys.executable).parent / "acrnema-bridge"
    if not script.is_file():
        raise SystemExit("bench: acrnema-bridge is not installed next to this Python")
    return str(script)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("old", type=Path, help="source tree of the other version")
    parser.add_argument("--count", type=int, default=480, help="slices (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default %(default)s)")
    args = parser.parse_args(argv)
    if not (args.old / "bridge" / "__init__.py").is_file():
        parser.error(f"{args.old} has no bridge/ package")
    script = _script()
    results: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="acrnema-ab-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(args.count):
            spec = PhantomSpec(slice_index=i, slices=args.count)
            (src / f"slice{i + 1:04d}.acr").write_bytes(phantom_file(spec))
        for _ in range(args.rounds):
            for name, path in (("old", str(args.old.resolve())), ("new", "")):
                out = Path(tmp) / f"out-{name}"
                shutil.rmtree(out, ignore_errors=True)
                env = {**os.environ, "PYTHONPATH": path}
                cpu, start = _cpu(), time.perf_counter()
                command = [script, "convert", str(src), "--out", str(out), "--jobs", "2"]
                subprocess.run([*command, "--quiet"], check=True, env=env)
                seconds, cpu = time.perf_counter() - start, _cpu() - cpu
                results[name].append((args.count / seconds, 1000 * cpu / args.count))
    for name, runs in results.items():
        rates = [r for r, _ in runs]
        cpus = [c for _, c in runs]
        print(
            f"{name}: files/s median {statistics.median(rates):.0f} "
            f"({' '.join(f'{r:.0f}' for r in rates)}); cpu ms/file median "
            f"{statistics.median(cpus):.1f} ({' '.join(f'{c:.1f}' for c in cpus)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

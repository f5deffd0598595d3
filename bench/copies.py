"""What a slice's conversion costs under a Dask nanny's allocator setting.

A nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` in the environment;
glibc then serves every buffer over 128 KiB with a fresh ``mmap``, faulted in page by
page. This script converts the same generated 512x512 CT slices with
:func:`bridge.batch.convert_file` in a child process without and with that setting,
alternating, and prints the CPU seconds (and the system part) and the minor page faults
of the conversion loop, and the ratio of the two. docs/benchmarks.md, 'Cluster', records
the figures before and after the conversion stopped copying each slice's pixels five
times.

    .venv/bin/python bench/copies.py [--count 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTING = "MALLOC_TRIM_THRESHOLD_"


def _loop(folder: Path) -> None:
    """In the child: convert every slice of ``folder``; print CPU, system and faults."""
    from bridge.batch import convert_file
    from bridge.dicom.core import ConvertOptions

    files = sorted(folder.glob("*.acr"))
    options = ConvertOptions()
    with tempfile.TemporaryDirectory() as tmp:
        convert_file(files[0], Path(tmp) / "warm", options, True)  # imports and caches
        before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        for path in files:
            entry = convert_file(path, Path(tmp) / "out", options, True)
            if entry.status.value != "converted":
                raise SystemExit(f"{path}: {entry.error}")
            for staged in entry.staged:
                os.unlink(staged.temporary)
        after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        time.process_time() - cpu,
        after.ru_stime - before.ru_stime,
        after.ru_minflt - before.ru_minflt,
    )


def _run(folder: Path, setting: bool) -> tuple[float, float, int]:
    env = dict(os.environ)
    env.pop(SETTING, None)
    if setting:
        env[SETTING] = "65536"
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cpu, system, faults = done.stdout.split()
    return float(cpu), float(system), int(faults)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="slices (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="runs each way (default 3)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _loop(args.child)
        return 0
    from bridge.testing.phantom import PhantomSpec, phantom_file

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.count):
            spec = PhantomSpec(slice_index=i, slices=args.count)
            (folder / f"ct{i:05d}.acr").write_bytes(phantom_file(spec))
        runs: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for setting in (False, True):
                runs[setting].append(_run(folder, setting))
    print(f"load average before the runs: {load}")
    print(f"{args.count} slices 512x512 through convert_file, {args.rounds} rounds each way")
    for setting, name in ((False, "unset"), (True, f"{SETTING}=65536")):
        cpu = statistics.median(r[0] for r in runs[setting])
        system = statistics.median(r[1] for r in runs[setting])
        faults = statistics.median(r[2] for r in runs[setting])
        print(f"{name}: CPU {cpu:.2f} s (system {system:.2f}), minor faults {faults:,.0f}")
    ratio = statistics.median(r[0] for r in runs[True]) / statistics.median(
        r[0] for r in runs[False]
    )
    print(f"CPU with the setting / without: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

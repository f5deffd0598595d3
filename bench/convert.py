"""Conversion speed and validity: acrnema-bridge against GDCM and DCMTK on one batch.

Usage: ``python bench/convert.py [--count N] [--keep DIR]`` (results: docs/benchmarks.md).

Generates N 512x512 ACR-NEMA 2.0 CT slices (implicit VR little endian) with the project's
phantom generator, then converts the same batch with

1. ``acrnema-bridge convert SRC --out OUT --jobs 2 --quiet`` (one process, 2 workers);
2. ``gdcmconv -w -i IN -o OUT`` once per file, sequentially and 2-way parallel;
3. ``dcmconv IN OUT`` once per file, sequentially and 2-way parallel.

Each run is timed on the wall clock (``time.perf_counter``) including process start-up,
which is part of the real cost of a per-file tool. The 2-way peer runs use two threads,
each launching the per-file processes, to match our ``--jobs 2``. The same sample of
slices from every run is then checked with ``dciodvfy -new`` and its ``Error`` lines are
counted. A peer that is not installed is skipped with a message; a tool that fails on
any file makes the script exit with status 1 (2 on a usage error).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import BenchError, children_cpu, machine_lines, ours_command, run_in, tool_version

from bridge import __version__
from bridge.testing.phantom import PhantomSpec, phantom_file

GOAL = 2.0  # ours must convert at least this many times as many files/s as the fastest peer
SAMPLE = 5  # outputs per run checked with dciodvfy
PEERS = {  # name -> (command for one file, Debian package)
    "gdcmconv": (["gdcmconv", "-w", "-i", "{src}", "-o", "{dst}"], "libgdcm-tools"),
    "dcmconv": (["dcmconv", "{src}", "{dst}"], "dcmtk"),
}


@dataclass
class Run:
    """One timed conversion of the whole batch by one tool."""

    tool: str
    mode: str  # "--jobs 2", "sequential" or "2-way"
    files: int
    seconds: float
    cpu: float  # user + system seconds of the tool's processes
    sample: list[Path]  # the outputs of the sample slices, in slice order
    errors: int | None = None  # dciodvfy Error lines in the sample; None: not validated
    examples: list[str] = field(default_factory=list)  # distinct Error lines, first few

    @property
    def rate(self) -> float:
        return self.files / self.seconds


def _generate(src: Path, count: int) -> list[Path]:
    """Write the phantom slices one at a time (one slice in memory at a time)."""
    src.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = src / f"slice{i + 1:04d}.acr"
        path.write_bytes(phantom_file(PhantomSpec(slice_index=i, slices=count)))
        paths.append(path)
    return paths


def _sample_indices(count: int) -> list[int]:
    """SAMPLE slice indices spread evenly over the batch, first and last included."""
    if count <= SAMPLE:
        return list(range(count))
    return sorted({round(k * (count - 1) / (SAMPLE - 1)) for k in range(SAMPLE)})


def _run_ours(inputs: list[Path], src: Path, work: Path, sample: list[int]) -> Run:
    out, report = work / "out-acrnema-bridge", work / "report-acrnema-bridge.json"
    # --report is outside the timed tool's output and costs one small JSON write; it says
    # which output came from which input, so the same slices are validated for every tool.
    command = [*ours_command(), "convert", str(src), "--out", str(out), "--jobs", "2"]
    command += ["--quiet", "--report", str(report)]
    cpu, start = children_cpu(), time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BenchError(f"acrnema-bridge: cannot run {command[0]}: {exc}") from exc
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    if done.returncode != 0:
        raise BenchError(
            f"acrnema-bridge exited with status {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    entries = json.loads(report.read_text())
    by_name = {Path(e["source"]).name: e for e in entries}
    converted = [e for e in entries if e["status"] == "converted" and len(e["outputs"]) == 1]
    if len(converted) != len(inputs):
        raise BenchError(
            f"acrnema-bridge converted {len(converted)} of {len(inputs)} inputs "
            f"to one file each (see {report})"
        )
    outputs = [Path(by_name[inputs[i].name]["outputs"][0]) for i in sample]
    return Run("acrnema-bridge", "--jobs 2", len(inputs), seconds, cpu, outputs)


def _convert_one(template: list[str], src: Path, dst: Path) -> str | None:
    """Run a peer on one file; None on success, else why it failed."""
    command = [a.format(src=src, dst=dst) for a in template]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"cannot run {command[0]}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(command)}: status {done.returncode}: {done.stderr.strip()[-500:]}"
    if not dst.is_file():
        return f"{' '.join(command)}: status 0 but no output file"
    return None


def _run_peer(name: str, inputs: list[Path], work: Path, sample: list[int], workers: int) -> Run:
    template = PEERS[name][0]
    mode = "sequential" if workers == 1 else f"{workers}-way"
    out = work / f"out-{name}-{mode}"
    out.mkdir()
    targets = [out / (p.stem + ".dcm") for p in inputs]
    cpu, start = children_cpu(), time.perf_counter()
    if workers == 1:
        failures = [_convert_one(template, s, d) for s, d in zip(inputs, targets, strict=True)]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            failures = list(pool.map(lambda s, d: _convert_one(template, s, d), inputs, targets))
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    failed = [f for f in failures if f is not None]
    if failed:
        raise BenchError(f"{name} failed on {len(failed)} of {len(inputs)} files; {failed[0]}")
    return Run(name, mode, len(inputs), seconds, cpu, [targets[i] for i in sample])


def _validate(run: Run, validator: str) -> None:
    """Count the Error lines dciodvfy prints for the run's sample outputs."""
    run.errors = 0
    seen: list[str] = []
    for path in run.sample:
        done = subprocess.run(
            [validator, "-new", str(path)], capture_output=True, text=True, check=False
        )
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error")]
        run.errors += len(lines)
        for line in lines:
            if line not in seen:
                seen.append(line)
    run.examples = seen[:3]


def _print_machine(peers: list[str], validator: str | None) -> None:
    versions = [tool_version([name, "--version"]) for name in peers]  # PEERS' order
    python = f"python {platform.python_version()}, acrnema-bridge {__version__}"
    print("\n".join(machine_lines(python, *versions)))
    print(f"validator: {validator or 'dciodvfy not installed (Debian package dicom3tools)'}")


def _print_results(runs: list[Run], sample: list[int]) -> None:
    ours = runs[0]
    print()
    print(
        f"{'tool':<15} {'mode':<11} {'files':>5} {'seconds':>8} {'files/s':>8} "
        f"{'ours/this':>9} {'cpu ms/file':>11}  dciodvfy errors in {len(sample)} files"
    )
    for run in runs:
        ratio = ours.rate / run.rate
        errors = "not checked" if run.errors is None else str(run.errors)
        print(
            f"{run.tool:<15} {run.mode:<11} {run.files:>5} {run.seconds:>8.2f} "
            f"{run.rate:>8.1f} {ratio:>8.2f}x {1000 * run.cpu / run.files:>11.1f}  {errors}"
        )
    print(f"(sample: slices {', '.join(str(i + 1) for i in sample)}; cpu: user + system)")
    shown: set[str] = set()
    for run in runs:  # the same tool gives the same errors in every mode
        if run.tool not in shown:
            shown.add(run.tool)
            for line in run.examples:
                print(f"  {run.tool}: {line[:140]}")
    peers = runs[1:]
    if not peers:
        print("no peer installed: nothing to compare with")
        return
    fastest = max(peers, key=lambda r: r.rate)
    ratio = ours.rate / fastest.rate
    print()
    print(
        f"ours / fastest peer ({fastest.tool} {fastest.mode}): {ratio:.2f}x "
        f"(goal >= {GOAL:.1f}x: {'met' if ratio >= GOAL else 'NOT met'})"
    )
    for name in dict.fromkeys(r.tool for r in peers):
        parts = [f"{ours.rate / r.rate:.2f}x vs {r.mode}" for r in peers if r.tool == name]
        print(f"ours / {name}: {', '.join(parts)}")
    if all(r.errors is not None for r in runs):
        clean = ours.errors == 0
        dirty = [r for r in peers if r.errors]
        print(
            f"dciodvfy: ours {'passes' if clean else 'FAILS'} ({ours.errors} Error lines); "
            + ", ".join(f"{r.tool} {r.mode} {r.errors}" for r in peers)
        )
        if clean and len(dirty) == len(peers):
            print("dciodvfy: ours passes where every peer does not")


def _bench(count: int, work: Path, peers: list[str], validator: str | None) -> None:
    src = work / "acrnema"
    print(f"generating {count} ACR-NEMA 2.0 CT slices (512x512) in {src}")
    inputs = _generate(src, count)
    sample = _sample_indices(count)
    runs = []
    print("acrnema-bridge convert --jobs 2 ...", flush=True)
    runs.append(_run_ours(inputs, src, work, sample))
    for name in peers:
        for workers in (1, 2):
            print(f"{name}, {'sequential' if workers == 1 else '2-way'} ...", flush=True)
            runs.append(_run_peer(name, inputs, work, sample, workers))
    if validator:
        for run in runs:
            _validate(run, validator)
    _print_results(runs, sample)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=120, help="slices (default %(default)s)")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it"
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    peers = [name for name in PEERS if shutil.which(name)]
    for name in PEERS:
        if name not in peers:
            print(f"skipped: {name} not installed (Debian package {PEERS[name][1]})")
    validator = shutil.which("dciodvfy")
    _print_machine(peers, validator)
    return run_in(args.keep, lambda work: _bench(args.count, work, peers, validator))


if __name__ == "__main__":
    sys.exit(main())

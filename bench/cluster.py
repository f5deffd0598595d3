"""``convert --cluster`` against ``convert --jobs 2``: the overhead of running on Dask.

Usage: ``python bench/cluster.py [--count N] [--rounds R] [--worker-config FILE] [--keep DIR]``
(results: docs/benchmarks.md).

Generates N 512x512 ACR-NEMA 2.0 CT slices with the project's phantom generator, starts
Dask's own ``dask scheduler`` and two ``dask worker --nthreads 1`` processes on 127.0.0.1
(the ``dask`` command of this interpreter's environment), then converts the same batch,
alternating, R times each way:

1. ``acrnema-bridge convert SRC --out OUT --jobs 2 --quiet`` (two local worker processes);
2. ``acrnema-bridge convert SRC --out OUT --cluster tcp://127.0.0.1:PORT --quiet`` (the
   two Dask workers, already running: a cluster is started once, not per batch).

Each run is timed on the wall clock including the command's start-up, into a fresh OUT.
It prints the best and the median of each, and the overhead of the cluster run from both
(goal: at most 15 %, issue 14): on a shared machine other work only ever adds time, so
the best runs are the least skewed by it, but the best of a few runs also moves the most
from one run of the script to the next; the median is the steadier of the two. Beside
the wall clock it prints the CPU seconds each way used (median): the command's with its
own worker processes, and the Dask processes' (scheduler, nannies, workers) during the
run; other work on the machine changes these far less than the wall clock, so they show
where the time goes on a busy machine. It checks both ways wrote the same files. Then it
times the fixed cost: a batch of one input each way, and `python -c 'import distributed'`
alone (best of 3). Exit 1 when a run fails.

The workers run with Dask's defaults, as ``dask worker`` starts them; ``--worker-config
FILE`` starts them with that Dask configuration file as well (``DASK_CONFIG``), e.g. the
one docs/archival.md suggests for conversion workers.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import BenchError, machine_lines, ours_command, run_in, tool_version

from bridge import __version__
from bridge.testing.phantom import PhantomSpec, phantom_file

GOAL = 0.15  # the cluster may cost at most this much more wall clock than --jobs 2
DASK = Path(sys.executable).with_name("dask")


def _generate(src: Path, count: int) -> None:
    src.mkdir(parents=True)
    for i in range(count):
        (src / f"ct{i:05d}.acr").write_bytes(phantom_file(PhantomSpec(slice_index=i, slices=count)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )


def _session_cpu(sessions: set[int]) -> float:
    """User + system seconds so far of the live processes in ``sessions`` (a nanny's worker
    process is in its nanny's session)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[3]) in sessions:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _wait_for(log: Path, text: str, count: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count(text) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"no {what} after 60 s: {log.read_text(errors='replace')[-800:]}")
        time.sleep(0.1)


def _timed(argv: list[str], sessions: set[int] | None = None) -> tuple[float, float, float]:
    """Wall seconds of ``argv``, its CPU seconds (with its children), and those of the
    processes in ``sessions`` meanwhile."""
    before = _session_cpu(sessions or set()), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])}... exited {done.returncode}: {done.stderr[-800:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - before[1].ru_utime) + (after.ru_stime - before[1].ru_stime)
    return elapsed, own, _session_cpu(sessions or set()) - before[0]


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.glob("PT*/ST*/SE*/IM*"))
    files_b = sorted(p.relative_to(b) for p in b.glob("PT*/ST*/SE*/IM*"))
    if files_a != files_b:
        return False
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def bench(work: Path, count: int, rounds: int, worker_config: Path | None) -> None:
    if not DASK.exists():
        raise BenchError(f"{DASK} not found: make venv installs dask[distributed]")
    header = machine_lines(
        f"acrnema-bridge {__version__}, {tool_version([str(DASK), '--version'])}"
    )
    worker_env = None
    if worker_config is not None:
        if not worker_config.is_file():
            raise BenchError(f"--worker-config {worker_config}: no such file")
        worker_env = {**os.environ, "DASK_CONFIG": str(worker_config.absolute())}
    src = work / "src"
    _generate(src, count)
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    common = ["--no-dashboard"]
    scheduler_log = work / "scheduler.log"
    processes = [
        _start(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
            scheduler_log,
        )
    ]
    try:
        _wait_for(scheduler_log, "Scheduler at:", 1, "scheduler")
        for n in (1, 2):
            processes.append(
                _start(
                    [str(DASK), "worker", url, "--nthreads", "1", "--host", "127.0.0.1", *common],
                    work / f"worker{n}.log",
                    worker_env,
                )
            )
        _wait_for(scheduler_log, "Register worker", 2, "two workers")
        ours = ours_command()
        sessions = {process.pid for process in processes}
        times: dict[str, list[float]] = {"jobs": [], "cluster": []}
        cpu: dict[str, list[tuple[float, float]]] = {"jobs": [], "cluster": []}
        start: dict[str, list[float]] = {"jobs": [], "cluster": [], "import": []}
        for r in range(rounds):
            for way, extra in (("jobs", ["--jobs", "2"]), ("cluster", ["--cluster", url])):
                out = work / f"out-{way}-{r}"
                wall, own, dask = _timed(
                    [*ours, "convert", str(src), "--out", str(out), "--quiet", *extra], sessions
                )
                times[way].append(wall)
                cpu[way].append((own, dask))
            if not _same_tree(work / f"out-jobs-{r}", work / f"out-cluster-{r}"):
                raise BenchError("the cluster and --jobs 2 wrote different files")
        # the fixed cost: a batch of one input each way, and importing distributed alone
        one = next(iter(sorted(src.iterdir())))
        for r in range(3):
            for way, extra in (("jobs", ["--jobs", "2"]), ("cluster", ["--cluster", url])):
                out = work / f"one-{way}-{r}"
                start[way].append(_timed([*ours, "convert", str(one), "--out", str(out),
                                          "--quiet", *extra])[0])  # fmt: skip
            start["import"].append(_timed([sys.executable, "-c", "import distributed"])[0])
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    best_local, best_remote = min(times["jobs"]), min(times["cluster"])
    local, remote = statistics.median(times["jobs"]), statistics.median(times["cluster"])
    overhead = best_remote / best_local - 1
    for line in header:
        print(line)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after the runs: {load}")
    workers = "Dask's defaults" if worker_config is None else f"DASK_CONFIG={worker_config}"
    print(f"{count} slices 512x512, {rounds} rounds each, alternating; workers: {workers}")
    for name, key, best, median in (
        ("--jobs 2", "jobs", best_local, local),
        ("--cluster (2 workers x 1 thread)", "cluster", best_remote, remote),
    ):
        runs = ", ".join(f"{t:.2f}" for t in times[key])
        own = statistics.median(c[0] for c in cpu[key])
        dask = statistics.median(c[1] for c in cpu[key])
        print(
            f"{name}: best {best:.2f} s ({count / best:.0f} files/s), median {median:.2f} s; "
            f"runs {runs}; CPU s (median): command {own:.2f}, Dask processes {dask:.2f}, "
            f"sum {own + dask:.2f}"
        )
    print(
        f"one-input batch, best of 3: --jobs 2 {min(start['jobs']):.2f} s, --cluster "
        f"{min(start['cluster']):.2f} s; `python -c 'import distributed'` "
        f"{min(start['import']):.2f} s"
    )
    middle = remote / local - 1

    def verdict(x: float) -> str:
        return "meets" if x <= GOAL else "misses"

    # both: on 2 shared cores the best of 5 moved by up to 9 points run to run, the
    # median by 0.2 (docs/benchmarks.md, 'Cluster')
    print(
        f"cluster overhead (goal: at most {GOAL:.0%}): best runs {overhead:+.1%} "
        f"({verdict(overhead)}), medians {middle:+.1%} ({verdict(middle)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="slices (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs each way (default 3)")
    parser.add_argument(
        "--worker-config",
        type=Path,
        help="start the workers with this Dask configuration file too (DASK_CONFIG)",
    )
    parser.add_argument("--keep", type=Path, help="work in this (empty) folder and keep it")
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1:
        parser.error("--count and --rounds must be at least 1")
    return run_in(args.keep, lambda work: bench(work, args.count, args.rounds, args.worker_config))


if __name__ == "__main__":
    sys.exit(main())

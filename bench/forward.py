"""Forwarding speed: acrnema-bridge against DCMTK storescu, into DCMTK storescp.

Usage: ``python bench/forward.py [--count N] [--setting all|shipped|nodelay] [--rounds R]
[--keep DIR]`` (results: docs/benchmarks.md).

Generates N 512x512 CT objects once (phantom ACR-NEMA slices converted by the bridge and
written as DICOM Part 10, explicit VR little endian), then sends that same folder, in one
run, under two receiver settings:

1. **as shipped**: ``storescp`` and ``storescu`` with Nagle's algorithm on (DCMTK's
   default: no ``TCP_NODELAY`` in the environment). Goal: ours >= 5x ``storescu``.
2. **TCP_NODELAY=1**: the environment variable DCMTK reads to turn Nagle off, given to
   ``storescp`` and ``storescu``. Goal: ours >= 0.9x ``storescu`` (issue 11; 0.5x before).

For each setting and each tool a fresh ``storescp`` is started with the test suite's
options (``tests/peers.py``: 127.0.0.1 only through an LD_PRELOAD shim, a free port,
every object stored into its own folder, its own process group, killed afterwards), and

- ours: ``acrnema-bridge spool add FOLDER --spool S`` (not part of the forwarding time,
  but timed as the spool's ingest rate, fsync included), then the timed
  ``acrnema-bridge forward --dest STORESCP@127.0.0.1:PORT --spool S --until-empty``;
- DCMTK: the timed ``storescu -aet DCMSCU -aec STORESCP 127.0.0.1 PORT FILE...``.

Every command is timed on the wall clock (``time.perf_counter``) including process
start-up, which is part of the real cost of both tools, after a ``sync`` (so that earlier
runs' write-back stays out of it). ``forward`` is then run once more on the empty spool:
our fixed cost, printed for reading only. After each run the files in the receiver's
folder are counted; a run that did not deliver all N objects, or a tool that fails, makes
the script exit with status 1 (2 on a usage error). ``BRIDGE_*`` variables are removed
from the environment, so ours runs on its defaults.

``--setting`` runs one receiver setting only; ``--rounds R`` runs the whole comparison R
times, ours then ``storescu`` in each round, and prints the ratio of every round and
their median: on a shared machine one pair of runs says little.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom
import pynetdicom
from common import BenchError, children_cpu, machine_lines, ours_command, run_in, tool_version
from pydicom.uid import ExplicitVRLittleEndian

from bridge import __version__
from bridge.dicom.core import convert
from bridge.spool.objects import dataset_bytes
from bridge.testing.phantom import PhantomSpec, phantom_file

REPO = Path(__file__).resolve().parents[1]
_LAST_CPU = 0.0  # CPU seconds of the latest command _run ran
RECEIVER_AE = "STORESCP"
SCU_AE = "DCMSCU"


@dataclass(frozen=True)
class Setting:
    """A receiver setting: the environment DCMTK's processes get, and our goal in it."""

    name: str
    env: dict[str, str]  # added to the environment of storescp and storescu
    goal: float  # ours must send at least this many times as many objects/s as storescu


SETTINGS = (
    Setting("as shipped (Nagle on)", {}, 5.0),
    Setting("TCP_NODELAY=1 (Nagle off)", {"TCP_NODELAY": "1"}, 0.9),
)


@dataclass
class Run:
    """One timed delivery of the whole folder by one tool into a fresh storescp."""

    setting: Setting
    tool: str
    objects: int
    size: int  # bytes of the Part 10 files sent
    seconds: float
    load: float  # 1-minute load average just before the run
    round: int = 1
    cpu: float = 0.0  # user + system seconds of the tool's process

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per object: what the tool costs, less swayed by other load."""
        return self.cpu * 1000 / self.objects

    @property
    def rate(self) -> float:
        return self.objects / self.seconds

    @property
    def mb_rate(self) -> float:
        return self.size / 1e6 / self.seconds


@dataclass
class Ingest:
    """One timed ``spool add`` of the whole folder."""

    objects: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.objects / self.seconds


def _load1() -> float:
    return os.getloadavg()[0]


def _peers() -> ModuleType:
    """``tests/peers.py``: the loopback shim and the storescp the test suite uses."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("peers")


def _dcmtk(name: str) -> str:
    """DCMTK's ``name``, skipping this virtualenv (pynetdicom installs apps named alike)."""
    venv_bin = Path(sys.prefix).resolve() / "bin" if sys.prefix != sys.base_prefix else None
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or (venv_bin is not None and Path(directory).resolve() == venv_bin):
            continue
        found = shutil.which(name, path=directory)
        if found is not None:
            return found
    raise BenchError(f"{name} not found on PATH (Debian package dcmtk)")


def _environment(setting: Setting) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    env = {k: v for k, v in env.items() if not k.startswith("BRIDGE_")}
    env.update(setting.env)
    return env


@contextlib.contextmanager
def _patched_environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside the block (storescp copies it when it starts)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _generate(folder: Path, count: int) -> tuple[list[Path], int]:
    """Convert ``count`` phantom slices and write them as Part 10 files; (paths, bytes)."""
    folder.mkdir(parents=True)
    paths, size = [], 0
    for i in range(count):
        name = f"ct{i + 1:04d}"
        result = convert(phantom_file(PhantomSpec(slice_index=i, slices=count)), source=name)
        (ds,) = result.datasets
        if ds.file_meta.TransferSyntaxUID != ExplicitVRLittleEndian:
            raise BenchError(f"{name}: converted to {ds.file_meta.TransferSyntaxUID}")
        data = dataset_bytes(ds)
        path = folder / f"{name}.dcm"
        path.write_bytes(data)
        paths.append(path)
        size += len(data)
    return paths, size


def _run(command: list[str], env: dict[str, str], cwd: Path, what: str) -> float:
    """Run ``command`` to its end; its wall-clock seconds. A failure raises BenchError.
    Its CPU time (user + system) is left in ``_LAST_CPU``.

    Dirty pages of earlier runs (about 100 MB a run) are written out first, so that their
    write-back does not fall into this run's time.
    """
    global _LAST_CPU
    os.sync()
    before = children_cpu()
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{what}: {exc}") from exc
    seconds = time.perf_counter() - start
    _LAST_CPU = children_cpu() - before
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise BenchError(f"{what} exited with status {done.returncode}:\n{output}")
    return seconds


def _received(receiver: Any, expected: int, what: str) -> None:
    """Fail loudly unless the receiver's folder holds ``expected`` files."""
    files = sum(1 for p in receiver.out_dir.iterdir() if p.is_file())
    if files != expected:
        log = receiver.process.log_tail()
        raise BenchError(f"{what}: storescp stored {files} of {expected} objects:\n{log}")


@contextlib.contextmanager
def _storescp(work: Path, shim: Path, setting: Setting) -> Iterator[Any]:
    """A fresh storescp in ``work`` with the setting's environment; stopped on exit."""
    peers = _peers()
    try:
        with _patched_environ(_environment(setting)):
            receiver = peers.start_storescp(work, shim, RECEIVER_AE)
    except peers.PeerError as exc:
        raise BenchError(str(exc)) from exc
    try:
        yield receiver
    finally:
        receiver.stop()


def _run_ours(
    setting: Setting, folder: Path, paths: list[Path], size: int, work: Path, shim: Path
) -> tuple[Run, Ingest, float]:
    """(forward run, spool add run, seconds of a forward with nothing to send)."""
    env = _environment(setting)
    work.mkdir()
    spool = work / "spool"
    ours = ours_command()
    seconds = _run(
        [*ours, "spool", "add", str(folder), "--spool", str(spool)], env, work, "spool add"
    )
    ingest = Ingest(len(paths), seconds)
    with _storescp(work, shim, setting) as receiver:
        dest = f"{RECEIVER_AE}@{receiver.host}:{receiver.port}"
        command = [*ours, "forward", "--dest", dest, "--spool", str(spool), "--until-empty"]
        load = _load1()
        seconds = _run(command, env, work, "acrnema-bridge forward")
        cpu = _LAST_CPU
        _received(receiver, len(paths), f"acrnema-bridge, {setting.name}")
        # The same command again on the now empty spool: start-up and spool bookkeeping.
        fixed = _run(command, env, work, "acrnema-bridge forward (empty spool)")
    run = Run(setting, "acrnema-bridge", len(paths), size, seconds, load, cpu=cpu)
    return run, ingest, fixed


def _run_storescu(setting: Setting, paths: list[Path], size: int, work: Path, shim: Path) -> Run:
    env = _environment(setting)
    work.mkdir()
    with _storescp(work, shim, setting) as receiver:
        command = [_dcmtk("storescu"), "-aet", SCU_AE, "-aec", RECEIVER_AE]
        command += [receiver.host, str(receiver.port)]
        command += [str(p) for p in paths]
        load = _load1()
        seconds = _run(command, env, work, "storescu")
        _received(receiver, len(paths), f"storescu, {setting.name}")
    return Run(setting, "storescu", len(paths), size, seconds, load, cpu=_LAST_CPU)


def _commit() -> str:
    """The checked-out commit, and whether bridge/ differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "bridge"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
    except OSError:
        return "? (no git)"
    state = f"{len(changed)} local changes in bridge/" if changed else "bridge/ unchanged"
    return f"{head or '?'} ({state})"


def _print_machine(storescu: str) -> None:
    versions = (
        f"python {platform.python_version()}, pydicom {pydicom.__version__}, "
        f"pynetdicom {pynetdicom.__version__}, acrnema-bridge {__version__} at {_commit()}"
    )
    print("\n".join(machine_lines(versions, tool_version([storescu, "--version"]).strip("$ "))))


def _print_results(
    runs: list[Run], ingests: list[Ingest], fixed: list[float], settings: Sequence[Setting]
) -> None:
    print()
    print(
        f"{'round':>5} {'setting':<26} {'tool':<15} {'objects':>7} {'seconds':>8} "
        f"{'objects/s':>9} {'MB/s':>7} {'load1':>5} {'cpu ms/obj':>10}"
    )
    for run in runs:
        print(
            f"{run.round:>5} {run.setting.name:<26} {run.tool:<15} {run.objects:>7} "
            f"{run.seconds:>8.2f} {run.rate:>9.1f} {run.mb_rate:>7.1f} {run.load:>5.2f} "
            f"{run.cpu_ms:>10.2f}"
        )
    print(
        "(MB = 10^6 bytes of Part 10 files; every run delivered every object; cpu: user + "
        "system time of the tool's process, start-up included)"
    )
    print()
    ours_runs = [r for r in runs if r.tool == "acrnema-bridge"]
    peer_runs = [r for r in runs if r.tool == "storescu"]
    for setting in settings:
        pairs = [
            (ours, peer)
            for ours, peer in zip(ours_runs, peer_runs, strict=True)
            if ours.setting is setting
        ]
        ratios = [ours.rate / peer.rate for ours, peer in pairs]
        median = statistics.median(ratios)
        verdict = "met" if median >= setting.goal else "NOT met"
        each = ", ".join(f"{r:.2f}x" for r in ratios)
        print(
            f"{setting.name}: ours / storescu = {median:.2f}x (median of {len(ratios)}: {each}; "
            f"goal >= {setting.goal:g}x: {verdict})"
        )
        starts = [e for e, ours in zip(fixed, ours_runs, strict=True) if ours.setting is setting]
        without = [
            ours.objects / (ours.seconds - empty) / peer.rate
            if ours.seconds > empty
            else float("inf")
            for (ours, peer), empty in zip(pairs, starts, strict=True)
        ]
        print(
            f"{setting.name}: without our start-up "
            + ", ".join(f"{w:.2f}x" for w in without)
            + " storescu (for reading only; the goal counts start-up)"
        )
    rates = ", ".join(f"{i.rate:.0f}" for i in ingests)
    print(f"spool add (fsync per object, process start-up included): {rates} objects/s")
    times = ", ".join(f"{s:.2f}" for s in fixed)
    print(f"acrnema-bridge forward with nothing to send (start-up, spool): {times} s")


def _bench(count: int, rounds: int, settings: Sequence[Setting], storescu: str, work: Path) -> None:
    _print_machine(storescu)
    shim = _peers().build_loopback_shim(work)
    folder = work / "objects"
    print(f"generating {count} CT objects (512x512, explicit VR LE) in {folder}")
    paths, size = _generate(folder, count)
    runs, ingests, fixed = [], [], []
    for round_ in range(1, rounds + 1):
        for n, setting in enumerate(settings, 1):
            print(f"{round_}: {setting.name}: acrnema-bridge spool add + forward", flush=True)
            where = work / f"{round_}-{n}-ours"
            run, ingest, empty = _run_ours(setting, folder, paths, size, where, shim)
            run.round = round_
            runs.append(run)
            ingests.append(ingest)
            fixed.append(empty)
            print(f"{round_}: {setting.name}: storescu ...", flush=True)
            where = work / f"{round_}-{n}-storescu"
            peer = _run_storescu(setting, paths, size, where, shim)
            peer.round = round_
            runs.append(peer)
    _print_results(runs, ingests, fixed, settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200, help="objects (default %(default)s)")
    parser.add_argument(
        "--setting",
        choices=("all", "shipped", "nodelay"),
        default="all",
        help="receiver settings to run (default %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="comparisons (default 1)")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1:
        parser.error("--count and --rounds must be at least 1")
    settings = {"all": SETTINGS, "shipped": SETTINGS[:1], "nodelay": SETTINGS[1:]}[args.setting]
    try:
        storescu = _dcmtk("storescu")
        _dcmtk("storescp")
        if shutil.which("cc") is None or shutil.which("timeout") is None:
            raise BenchError("cc and timeout are needed to confine storescp to loopback")
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return run_in(args.keep, lambda work: _bench(args.count, args.rounds, settings, storescu, work))


if __name__ == "__main__":
    sys.exit(main())

"""``convert --cluster``: the same batch on a real Dask cluster (scheduler and workers
started here on 127.0.0.1 with Dask's own ``dask scheduler`` / ``dask worker``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.fileset import FileSet

from bridge.cluster import CLUSTER_CHUNK, _chunks
from tests import peers

DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    url: str
    scheduler: peers.PeerProcess
    workers: list[peers.PeerProcess]

    def registered(self) -> int:
        return self.scheduler.log_tail(1 << 20).count("Register worker")


@pytest.fixture
def cluster(tmp_path: Path, loopback_shim: Path) -> Iterator[Cluster]:
    """A scheduler and two one-thread workers without nannies (a killed worker stays dead);
    w2 runs with the allocator setting a nanny gives its worker (MALLOC_TRIM_THRESHOLD_)."""
    if not DASK.exists():
        peers.unavailable(
            f"{DASK} not found (dask[distributed] is in the dev extra: make venv)",
            require_env=peers.REQUIRE_PEERS_ENV,
        )
    port = peers.free_port()
    url = f"tcp://{peers.LOOPBACK}:{port}"
    common = ["--no-dashboard"]
    scheduler = peers.PeerProcess(
        [str(DASK), "scheduler", "--host", peers.LOOPBACK, "--port", str(port), *common],
        log=tmp_path / "scheduler.log",
        shim=loopback_shim,
        cwd=tmp_path,
    )
    running = Cluster(url, scheduler, [])
    try:
        scheduler.wait_until(lambda: "Scheduler at:" in scheduler.log_tail(), "scheduler")
        for n in (1, 2):
            running.workers.append(
                peers.PeerProcess(
                    [str(DASK), "worker", url, "--nthreads", "1", "--no-nanny", "--name",
                     f"w{n}", "--host", peers.LOOPBACK, *common],
                    log=tmp_path / f"worker{n}.log",
                    shim=loopback_shim,
                    cwd=tmp_path,
                    env={"MALLOC_TRIM_THRESHOLD_": "65536"} if n == 2 else None,
                )
            )  # fmt: skip
        scheduler.wait_until(lambda: running.registered() >= 2, "two registered workers")
        yield running
    finally:
        for process in [*running.workers, scheduler]:
            process.stop()


def _convert(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "convert", "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
    )


def _tree(out: Path) -> dict[str, bytes | str]:
    """Every file under ``out``: the bytes of each output, the outputs each index entry names."""
    tree: dict[str, bytes | str] = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name == "dicomdir.json" or p.name.startswith(".tmp"):
            continue  # (the DICOMDIR's cache holds each file's inode and mtime)
        if ".acrnema-bridge" in p.parts and p.suffix == ".jsonl":  # the instance registry
            tree[str(p.relative_to(out))] = "\n".join(sorted(p.read_text().splitlines()))
        elif ".acrnema-bridge" in p.parts and p.parent.name == "index":  # the resume index
            tree[str(p.relative_to(out))] = json.dumps(json.loads(p.read_text())["outputs"])
        else:
            tree[str(p.relative_to(out))] = p.read_bytes()
    return tree


def _report(path: Path) -> list[tuple[str, str, list[str]]]:
    return [(e["source"], e["status"], sorted(e["outputs"])) for e in json.loads(path.read_text())]


def test_a_cluster_batch_equals_a_local_one(cluster, corpus, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    a = _convert(corpus, "--out", local, "--jobs", "2", "--report", tmp_path / "a.json",
                 "--dicomdir")  # fmt: skip
    b = _convert(corpus, "--out", remote, "--cluster", cluster.url, "--report",
                 tmp_path / "b.json", "--dicomdir")  # fmt: skip
    assert (a.returncode, b.returncode) == (0, 0), b.stderr
    same = [
        (s, st, [o.replace(str(remote), str(local)) for o in outs])
        for s, st, outs in _report(tmp_path / "b.json")
    ]
    assert same == _report(tmp_path / "a.json")
    assert _tree(remote) == _tree(local), "the outputs and the resume index differ"
    ids = [
        sorted(str(Path(i.path).relative_to(out)) for i in FileSet(out / "DICOMDIR"))
        for out in (local, remote)
    ]
    assert ids[0] == ids[1] and ids[0]


def test_a_cluster_batch_resumes(cluster, corpus, tmp_path):
    inputs = sorted(p for p in corpus.iterdir() if p.suffix in (".acr", ".dcm", ".ima"))
    out = tmp_path / "out"
    first = _convert(*inputs[:3], "--out", out, "--cluster", cluster.url)
    assert first.returncode == 0, first.stderr
    again = _convert(*inputs, "--out", out, "--cluster", cluster.url, "--report",
                     tmp_path / "r.json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    status = {Path(s).name: st for s, st, _ in _report(tmp_path / "r.json")}
    assert [status[p.name] for p in inputs[:3]] == ["skipped"] * 3
    assert "converted" in [status[p.name] for p in inputs[3:]]


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(cluster, tmp_path):
    sources = tmp_path / "in"
    sources.mkdir()
    count = 400
    for n in range(count):
        peers.write_secondary_capture(sources / f"sc{n:04d}.dcm")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "bridge.cli", "convert", "--quiet", str(sources), "--out",
            str(out), "--cluster", cluster.url, "--report", str(tmp_path / "r.json")]  # fmt: skip
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) as batch:
        deadline = time.monotonic() + 120
        while len(list(out.glob("PT*/ST*/SE*/IM*"))) < 40:
            assert batch.poll() is None, f"the batch ended before the kill: {batch.stderr.read()}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        victim = cluster.workers[0]
        os.killpg(victim.popen.pid, signal.SIGKILL)
        written_at_kill = len(list(out.glob("PT*/ST*/SE*/IM*")))
        _, err = batch.communicate(timeout=300)
    assert written_at_kill < count, "the worker was killed after the batch was done"
    assert batch.returncode == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report) == count
    assert sorted(e["source"] for e in report) == sorted(str(p) for p in sources.iterdir())
    assert {e["status"] for e in report} == {"converted"}
    outputs = [o for e in report for o in e["outputs"]]
    assert len(set(outputs)) == count, "two inputs share an output"
    files = [p for p in out.rglob("*") if p.is_file() and ".acrnema-bridge" not in p.parts]
    assert not [p.name for p in files if not p.name.startswith("IM")], "a half-written file"
    assert len(files) == count, "an output was doubled or lost"
    assert "Remove worker" in cluster.scheduler.log_tail(1 << 20)


def test_relative_paths_work_locally_and_on_the_cluster(cluster, corpus_file, tmp_path):
    # the workers' working folder is not the command's: paths are made absolute for them
    (tmp_path / "in").mkdir()
    for name in ("r01", "r02"):
        (tmp_path / "in" / corpus_file(name).name).write_bytes(corpus_file(name).read_bytes())
    local = _convert("in", "--out", "local", "--jobs", "2", "--report", "a.json", cwd=tmp_path)
    remote = _convert("in", "--out", "remote", "--cluster", cluster.url, "--report", "b.json",
                      cwd=tmp_path)  # fmt: skip
    assert (local.returncode, remote.returncode) == (0, 0), local.stderr + remote.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert [e["source"] for e in a] == [e["source"] for e in b] == sorted(e["source"] for e in a)
    assert all(e["status"] == "converted" for e in a + b)
    assert _tree(tmp_path / "local") == _tree(tmp_path / "remote")


def test_usage_errors_of_cluster(tmp_path, corpus_file):
    bad = _convert(corpus_file("r01"), "--out", tmp_path / "o", "--cluster", "127.0.0.1:8786")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "tcp://HOST:PORT" in bad.stderr
    closed = _convert(corpus_file("r01"), "--out", tmp_path / "o", "--cluster",
                      f"tcp://{peers.LOOPBACK}:{peers.free_port()}")  # fmt: skip
    assert closed.returncode == 2
    assert "cannot reach the Dask scheduler" in closed.stderr and "Traceback" not in closed.stderr


def test_a_batch_goes_in_few_tasks_that_shrink_towards_its_end():
    # each task costs some milliseconds of the scheduler's, the command's and a worker's
    # time, on the cores that convert: 1,000 inputs on 2 threads took 61 tasks before
    inputs = [Path(f"in/ct{n:04d}.acr") for n in range(1000)]
    tasks = list(_chunks(inputs, 2))
    assert [i for task in tasks for i, _ in task] == list(range(1000)), "an input lost or doubled"
    assert all(path == inputs[i].absolute() for task in tasks for i, path in task)
    assert len(tasks) <= 25
    low, high = CLUSTER_CHUNK
    assert max(map(len, tasks)) == high
    assert all(len(task) <= low for task in tasks[-4:]), "no worker waits on a large last task"


def test_workers_slowed_by_the_nannys_allocator_setting_are_named(cluster, corpus_file, tmp_path):
    # a nanny's MALLOC_TRIM_THRESHOLD_ makes conversion about 20 % slower (docs/archival.md,
    # "Worker settings"): the command says which workers run with it and where the fix is
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "convert", str(corpus_file("r01")), "--out",
         str(tmp_path / "out"), "--cluster", cluster.url],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [li for li in done.stderr.splitlines() if "MALLOC_TRIM_THRESHOLD_" in li]
    assert len(lines) == 1, done.stderr
    [line] = lines
    assert "1 of 2 workers" in line and "w2" in line and "Worker settings" in line

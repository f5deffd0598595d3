"""Batches survive their parts: dead worker processes and a full disk, with real processes.

Every test runs the installed ``acrnema-bridge convert`` as a child process. A worker is
killed with SIGKILL from outside, or kills itself on a poison input (a test-only
``sitecustomize`` in tests/batch_faults/); the full disk is a real tmpfs mounted for the
test (root only; skipped otherwise, failed when ``BRIDGE_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header
from capped import bridge_command
from pydicom import dcmread
from pydicom.fileset import FileSet

DEADLINE_S = 180.0  # only to catch a hang
FAULTS = Path(__file__).parent / "batch_faults"


def write_inputs(folder: Path, count: int, side: int = 16, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        pixels = np.full((side, side), n % 4096, np.uint16)
        elements = header(rows=side, columns=side, image_number=str(n + 1))
        path = folder / f"{prefix}{n:04d}.acr"
        path.write_bytes(encode(elements + [(0x7FE00010, "b", pixels.tobytes())]))
        paths.append(path)
    return paths


def convert(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bridge_command(), "convert", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, **(env or {})},
        check=False,
    )


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def report_of(path: Path) -> dict[str, dict]:
    return {Path(e["source"]).name: e for e in json.loads(path.read_text())}


# ---------------------------------------------------------------- dead workers


def test_a_worker_killed_mid_batch_is_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    """Finding: killing one of two workers marked 304 of 400 inputs failed."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    write_inputs(src, 400, side=64)
    proc = subprocess.Popen(
        [*bridge_command(), "convert", str(src), "--out", str(out), "--jobs", "2"]
        + ["--quiet", "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    try:
        end = time.monotonic() + DEADLINE_S
        while victim is None and proc.poll() is None and time.monotonic() < end:
            workers = children(proc.pid)
            if len(workers) == 2 and len(list(out.glob("PT*/ST*/SE*/IM*"))) >= 40:
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
            time.sleep(0.005)
        _, stderr = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert victim is not None, "the batch ended before a worker could be killed"
    assert f"convert worker {victim} died (killed by SIGKILL)" in stderr
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 0, stderr
    entries = report_of(report)
    assert len(entries) == 400
    assert {e["status"] for e in entries.values()} == {"converted"}
    outputs = sorted(out.glob("PT*/ST*/SE*/IM*"))
    assert len(outputs) == 400
    assert sorted(Path(p) for e in entries.values() for p in e["outputs"]) == outputs
    assert all(dcmread(p).Rows == 64 for p in outputs[::40])


def test_an_input_that_kills_its_worker_twice_fails_alone(tmp_path: Path) -> None:
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    write_inputs(src, 40)
    write_inputs(src, 1, prefix="poison")
    deaths = tmp_path / "deaths.log"
    run = convert(
        str(src), "--out", str(out), "--jobs", "2", "--quiet", "--report", str(report),
        env={
            "PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]),
            "BRIDGE_TEST_POISON": "poison",
            "BRIDGE_TEST_POISON_LOG": str(deaths),
        },
    )  # fmt: skip
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1
    assert len(deaths.read_text().split()) == 2  # the first try and one retry, no more
    entries = report_of(report)
    poison = entries.pop("poison0000.acr")
    assert poison["status"] == "failed" and poison["outputs"] == []
    assert "poison0000.acr: worker process died while converting it" in poison["error"]
    assert "killed by SIGKILL, also on the retry" in poison["error"]
    assert f"failed: {poison['error']}" in run.stderr
    assert len(entries) == 40 and {e["status"] for e in entries.values()} == {"converted"}
    assert len(list(out.glob("PT*/ST*/SE*/IM*"))) == 40


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real, small tmpfs at a fresh folder (256 KiB; remount to change the size)."""
    with peers.tmpfs(tmp_path / "disk", "256k") as mount:
        yield mount


def resize(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def fill(mount: Path) -> Path:
    """Fill the file system to the last byte with one file."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as fp:
        try:
            while True:
                fp.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC
    return filler


def _no_leftovers(out: Path) -> None:
    assert not [p for p in out.rglob(".tmp-*")], "a half-written file was left behind"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_disk_stops_cleanly_and_a_rerun_resumes(
    tmpfs: Path, tmp_path: Path, jobs: str
) -> None:
    """Finding: a full disk during `convert` gave a traceback and no report or DICOMDIR."""
    src, out, report = tmp_path / "src", tmpfs / "out", tmp_path / "report.json"
    write_inputs(src, 12)  # about 4 KiB of output each: all fit
    write_inputs(src, 1, side=512, prefix="large")  # 512 KiB: cannot fit in 256 KiB
    args = [str(src), "--out", str(out), "--jobs", jobs, "--quiet", "--report", str(report)]
    run = convert(*args, "--dicomdir")
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines == [
        f"acrnema-bridge convert: no space left on {out}: stopped, 1 input not converted; "
        "free space and run the same command again to convert them"
    ]
    entries = report_of(report)
    assert len(entries) == 13
    large = entries.pop("large0000.acr")
    assert large["status"] == "pending" and large["outputs"] == []
    assert large["error"] == f"{src / 'large0000.acr'}: not converted: no space left on {out}"
    assert {e["status"] for e in entries.values()} == {"converted"}
    done = sorted(Path(p) for e in entries.values() for p in e["outputs"])
    assert sorted(out.glob("PT*/ST*/SE*/IM*")) == done  # nothing of the large input is left
    assert sorted(Path(i.path) for i in FileSet(out / "DICOMDIR")) == done
    _no_leftovers(out)

    resize(tmpfs, "4m")
    run = convert(*args, "--dicomdir")
    assert run.returncode == 0, run.stderr
    entries = report_of(report)
    assert entries.pop("large0000.acr")["status"] == "converted"
    assert {e["status"] for e in entries.values()} == {"skipped"}
    assert len(FileSet(out / "DICOMDIR")) == 13


def test_when_not_even_the_report_and_dicomdir_fit_it_says_so(tmpfs: Path, tmp_path: Path) -> None:
    src, out, report = tmp_path / "src", tmpfs / "out", tmpfs / "report.json"
    write_inputs(src, 5)
    out.mkdir()
    filler = fill(tmpfs)
    run = convert(
        str(src), "--out", str(out), "--jobs", "2", "--quiet", "--report", str(report),
        "--dicomdir",
    )  # fmt: skip
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"acrnema-bridge convert: no space left on {out}: stopped, 5 inputs not converted; "
        "free space and run the same command again to convert them",
        f"acrnema-bridge convert: no space left for the report {report}: not written",
        f"acrnema-bridge convert: no space left for the DICOMDIR {out / 'DICOMDIR'}: not written",
    ]
    assert not report.exists() and not (out / "DICOMDIR").exists()
    assert not list(out.glob("PT*/ST*/SE*/IM*"))
    _no_leftovers(tmpfs)

    filler.unlink()
    run = convert(
        str(src), "--out", str(out), "--jobs", "2", "--quiet", "--report", str(report),
        "--dicomdir",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert {e["status"] for e in report_of(report).values()} == {"converted"}
    assert len(FileSet(out / "DICOMDIR")) == 5

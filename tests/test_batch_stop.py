"""A convert batch stops cleanly: on SIGTERM or SIGINT, and before it starts when OUT is bad.

Every test runs the installed ``acrnema-bridge convert`` as a real child process over
many generated ACR-NEMA files and the sample corpus (read in place), signals it from
outside while its workers convert, and then reads the process table (``/proc``), the
report, the DICOMDIR and the output tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import peers
import pytest
from capped import bridge_command
from pydicom.fileset import FileSet
from test_batch import FAULTS, children, convert, report_of, write_inputs

from bridge.batch import STOP_GRACE_S

DEADLINE_S = 180.0  # only to catch a hang
STOP_DEADLINE_S = 30.0  # "within seconds"; generous, only to catch a batch that runs on


def processes_of(out: Path) -> list[int]:
    """Every live process whose command line names ``out``: the batch and its workers
    (forked workers keep the parent's command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if str(out).encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def not_indexed(stderr: str) -> set[Path]:
    """The outputs the DICOMDIR left out, from their lines on stderr."""
    lines = [line for line in stderr.splitlines() if line.startswith("not in DICOMDIR: ")]
    return {Path(line.removeprefix("not in DICOMDIR: ").split(": ")[0]) for line in lines}


def start(
    src: list[Path], out: Path, report: Path, jobs: str, stderr: Path
) -> subprocess.Popen[bytes]:
    """The batch, its stderr to a file: a pipe would make us wait for orphans to close it."""
    with open(stderr, "wb") as errors:
        return subprocess.Popen(
            [*bridge_command(), "convert", *map(str, src), "--out", str(out), "--jobs", jobs]
            + ["--quiet", "--report", str(report), "--dicomdir"],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # its own process group, as a terminal or systemd gives it
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("jobs", "signum", "group"),
    [
        ("2", signal.SIGTERM, False),  # kill PID
        ("2", signal.SIGINT, True),  # ^C on a terminal: the whole foreground group
        ("2", signal.SIGTERM, True),  # systemd: every process of the unit
        ("2", signal.SIGINT, False),
        ("1", signal.SIGTERM, False),
        ("1", signal.SIGINT, True),
    ],
    ids=["jobs2-TERM", "jobs2-INT-group", "jobs2-TERM-group", "jobs2-INT", "jobs1-TERM"]
    + ["jobs1-INT-group"],
)
def test_a_signal_stops_the_batch_with_its_report_and_dicomdir(
    tmp_path: Path, corpus: Path, jobs: str, signum: signal.Signals, group: bool
) -> None:
    """Finding: SIGTERM killed the batch with no report or DICOMDIR, and left its workers
    converting as orphans; SIGINT gave no report either."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    write_inputs(src, 400, side=64)
    log = tmp_path / "stderr.txt"
    proc = start([corpus, src], out, report, jobs, log)
    workers: set[int] = set()
    try:
        end = time.monotonic() + DEADLINE_S
        while proc.poll() is None and time.monotonic() < end:
            workers.update(children(proc.pid))
            if len(list(out.glob("PT*/ST*/SE*/IM*"))) >= 40:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the batch ended before it could be stopped"
        if jobs != "1":
            assert len(workers) >= 1
        signalled = time.monotonic()
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        proc.wait(timeout=STOP_DEADLINE_S)
        stopped_s = time.monotonic() - signalled
        left = processes_of(out)  # at once: the batch ends after its workers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_of(out):
            os.kill(pid, signal.SIGKILL)
    stderr = log.read_text()
    print(f"stopped {stopped_s:.2f} s after {signum.name}")
    assert left == [], f"workers outlived the batch: {stderr}"
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 128 + signum, stderr
    entries = report_of(report)
    inputs = sorted(p.name for p in [*src.iterdir(), *corpus.iterdir()])
    assert sorted(entries) == inputs
    statuses = {e["status"] for e in entries.values()}
    assert "failed" not in statuses
    pending = [e for e in entries.values() if e["status"] == "pending"]
    assert pending, "nothing was left to do: the batch was not stopped"
    assert all(e["outputs"] == [] for e in pending)
    assert {e["error"] for e in pending} == {
        f"not converted: the batch was stopped by {signum.name}"
    }
    # (two corpus files, r05 and r06, are one instance in two encodings: one output)
    done = sorted({Path(p) for e in entries.values() for p in e["outputs"]})
    assert len(done) >= 40
    assert sorted(out.glob("PT*/ST*/SE*/IM*")) == done  # whole inputs only
    assert not list(out.rglob(".tmp-*")), "a half-written file was left behind"
    # every output has its DICOMDIR record (a corpus file without a Study Date too)
    assert not_indexed(stderr) == set()
    assert sorted(Path(i.path) for i in FileSet(out / "DICOMDIR")) == done
    assert (
        f"acrnema-bridge convert: stopped by {signum.name}: {len(pending)} inputs not "
        "converted; run the same command again to convert them"
    ) in stderr.splitlines()

    if group or signum != signal.SIGTERM:
        return  # the re-run is the same whatever stopped the batch: checked twice, not six times
    again = convert(str(corpus), str(src), "--out", str(out), "--jobs", jobs, "--quiet",
                    "--report", str(report), "--dicomdir")  # fmt: skip
    assert again.returncode == 0, again.stderr
    entries = report_of(report)
    assert {entries[Path(e["source"]).name]["status"] for e in pending} == {"converted"}
    indexed = {Path(i.path) for i in FileSet(out / "DICOMDIR")}
    assert not_indexed(again.stderr) == set()
    assert indexed == set(out.glob("PT*/ST*/SE*/IM*"))


# ---------------------------------------------------------------- an output folder it cannot use


def _unusable(problem: str, tmp_path: Path) -> tuple[Path, str]:
    """An output folder that cannot be written, and the reason the error must give."""
    if problem == "a file":
        out = tmp_path / "out"
        out.write_text("a file, not a folder\n")
        return out, "not a folder"
    if problem == "under a file":
        (tmp_path / "file").write_text("a file, not a folder\n")
        return tmp_path / "file" / "out", "not a folder"
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["a file", "under a file"])
def test_an_output_folder_that_is_no_folder_is_one_usage_error_up_front(
    tmp_path: Path, problem: str
) -> None:
    """Finding: exit 1 with the bare OS message ("File exists", "Not a directory")."""
    src, report = tmp_path / "src", tmp_path / "report.json"
    write_inputs(src, 20)
    out, reason = _unusable(problem, tmp_path)
    run = convert(str(src), "--out", str(out), "--jobs", "2", "--report", str(report))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        f"acrnema-bridge convert: error: cannot write to the output folder {out}: {reason}"
    ]
    assert not report.exists()


def test_a_report_folder_that_is_no_folder_is_one_usage_error_up_front(tmp_path: Path) -> None:
    """Finding: every input was converted, then the report failed ("Not a directory")."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_inputs(src, 20)
    (tmp_path / "file").write_text("a file, not a folder\n")
    report = tmp_path / "file" / "report.json"
    run = convert(str(src), "--out", str(out), "--jobs", "2", "--report", str(report))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        "acrnema-bridge convert: error: cannot write to the folder of the report "
        f"{tmp_path / 'file'}: not a folder"
    ]
    assert not list(out.glob("PT*"))


def test_a_read_only_output_folder_is_one_usage_error_up_front(tmp_path: Path) -> None:
    """Finding: every input failed on its own ("cannot write output: Read-only file
    system", one line each), exit 1. A read-only file system, so that root is refused too."""
    src, report = tmp_path / "src", tmp_path / "report.json"
    write_inputs(src, 20)
    with peers.tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "out").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for out in (disk / "out", disk / "new"):  # there, and to be made
            run = convert(str(src), "--out", str(out), "--jobs", "2", "--report", str(report))
            assert run.returncode == 2, run.stderr
            assert run.stderr.splitlines() == [
                "acrnema-bridge convert: error: cannot write to the output folder "
                f"{out}: Read-only file system"
            ]
            assert not report.exists()
            assert not (disk / "new").exists()


@pytest.mark.slow
def test_a_worker_stuck_on_an_input_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    """The stop does not wait for ever: a worker that never finishes its input is killed."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    write_inputs(src, 200)
    write_inputs(src, 1, prefix="stuck")
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as errors:
        proc = subprocess.Popen(
            [*bridge_command(), "convert", str(src), "--out", str(out), "--jobs", "2"]
            + ["--quiet", "--report", str(report)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]),
                "BRIDGE_TEST_STUCK": "stuck",
            },
        )
    try:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end and len(list(out.glob("PT*/ST*/SE*/IM*"))) < 200:
            time.sleep(0.05)  # everything but the stuck input
        time.sleep(0.5)
        assert proc.poll() is None, "the stuck input did not hold the batch"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S + STOP_DEADLINE_S)
        left = processes_of(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_of(out):
            os.kill(pid, signal.SIGKILL)
    stderr = log.read_text()
    assert left == [], f"workers outlived the batch: {stderr}"
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 143, stderr
    assert f"still converting {STOP_GRACE_S:.0f} s after the stop: killed" in stderr
    entries = report_of(report)
    stuck = entries.pop("stuck0000.acr")
    assert stuck["status"] == "pending" and stuck["outputs"] == []
    assert stuck["error"] == "not converted: the batch was stopped by SIGTERM"
    assert {e["status"] for e in entries.values()} == {"converted"}

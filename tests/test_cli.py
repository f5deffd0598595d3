"""The command line: convert (batch, report, re-runs, DICOMDIR), dump, demo, exit codes."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header
from pydicom import dcmread
from pydicom.fileset import FileSet

from bridge.cli import main


def write_study(folder: Path, count: int = 4, *, big_endian: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        pixels = np.full((8, 8), n * 10, np.uint16)
        elements = header(image_number=str(n + 1)) + [(0x7FE00010, "b", pixels.tobytes())]
        path = folder / f"img{n:03d}.acr"
        path.write_bytes(encode(elements, big_endian=big_endian))
        paths.append(path)
    return paths


def run_convert(*args: str) -> int:
    return main(["convert", "--quiet", *args])


def test_convert_writes_tree_report_and_dicomdir(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_study(src / "a", 3)
    write_study(src / "b", 2, big_endian=True)  # the same images in the other byte order
    (src / "notes.txt").write_text("tape catalogue\n")
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert (
        run_convert(
            str(src), "--out", str(out), "--dicomdir", "--report", str(report), "--jobs", "2"
        )
        == 0
    )
    entries = json.loads(report.read_text())
    assert [sorted(e) for e in entries] == [
        ["error", "outputs", "repairs", "source", "status", "warnings"]
    ] * 6
    by_name = {Path(e["source"]).name: e for e in entries}
    assert by_name["notes.txt"]["status"] == "skipped"
    converted = [e for e in entries if e["status"] == "converted"]
    assert len(converted) == 5 and all(e["error"] is None for e in converted)
    outputs = [Path(p) for e in converted for p in e["outputs"]]
    for path in outputs:
        rel = path.relative_to(out).parts
        assert len(rel) == 4 and [p[:2] for p in rel] == ["PT", "ST", "SE", "IM"]
        assert dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    # img000 little and big endian carry the same pixels, but are different files
    assert len(set(outputs)) == 5
    fileset = FileSet(out / "DICOMDIR")
    assert len(fileset) == 5
    assert {Path(i.path) for i in fileset} == set(outputs)


def test_rerun_skips_converted_inputs_unless_overwrite(tmp_path: Path) -> None:
    [first, *_] = write_study(tmp_path / "src", 2)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert run_convert(str(tmp_path / "src"), "--out", str(out), "--jobs", "1") == 0
    produced = sorted(out.glob("PT*/ST*/SE*/IM*"))
    stamp = produced[0].stat().st_mtime_ns
    assert run_convert(str(tmp_path / "src"), "--out", str(out), "--report", str(report)) == 0
    entries = json.loads(report.read_text())
    assert {e["status"] for e in entries} == {"skipped"}
    assert sorted(Path(p) for e in entries for p in e["outputs"]) == produced
    assert produced[0].stat().st_mtime_ns == stamp
    assert run_convert(str(first), "--out", str(out), "--overwrite", "--report", str(report)) == 0
    assert json.loads(report.read_text())[0]["status"] == "converted"
    assert sorted(out.glob("PT*/ST*/SE*/IM*")) == produced  # same UIDs, same paths


def test_one_bad_file_fails_alone(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_study(src, 2)
    good = (src / "img000.acr").read_bytes()
    (src / "truncated.acr").write_bytes(good[:-100])
    report = tmp_path / "r.json"
    assert run_convert(str(src), "--out", str(tmp_path / "out"), "--report", str(report)) == 1
    entries = {Path(e["source"]).name: e for e in json.loads(report.read_text())}
    assert entries["truncated.acr"]["status"] == "failed"
    assert "truncated.acr" in entries["truncated.acr"]["error"]
    assert "(7FE0,0010)" in entries["truncated.acr"]["error"]
    assert entries["img001.acr"]["status"] == "converted"


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path)]) == 2  # no --out
    assert main(["convert", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["convert", str(tmp_path), "--out", str(tmp_path), "--byte-order", "middle"]) == 2
    assert main(["convert", str(tmp_path), "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    assert "convert" in capsys.readouterr().out


def test_help_explains_convert(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--dicomdir", "--report", "--byte-order", "--overwrite", "--jobs", "Exit status"):
        assert word in text


def test_dump_prints_elements_for_both_byte_orders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [little] = write_study(tmp_path / "le", 1)
    [big] = write_study(tmp_path / "be", 1, big_endian=True)
    assert main(["dump", str(little), str(big)]) == 0
    out = capsys.readouterr().out
    assert "implicit VR little endian" in out and "implicit VR big endian" in out
    rows = [line for line in out.splitlines() if line.startswith("(0028,0010)")]
    assert rows == ["(0028,0010) US        2  Rows  [8]"] * 2
    assert "(0008,0010) LO       12  Recognition Code  [ACR-NEMA 2.0]" in out


def test_dump_reports_bad_files_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.acr"
    bad.write_bytes(b"\x08\x00\x10\x00\xf0\xff\xff\xff" + b"x" * 40)
    [good] = write_study(tmp_path / "s", 1)
    assert main(["dump", str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert "bad.acr" in captured.err and "(0008,0010)" in captured.err
    assert "Rows" in captured.out


def test_archive_demo_converts_a_generated_study_without_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peers.require_tool("dciodvfy")
    assert main(["demo", "--archive", "--out", str(tmp_path), "--slices", "4"]) == 0
    out = capsys.readouterr().out
    assert "dciodvfy: 0 errors in 4 files" in out
    assert (tmp_path / "dicom" / "DICOMDIR").is_file()


def test_demo_runs_the_link_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--slices", "4"]) == 0
    out = capsys.readouterr().out
    assert "images sent over the link:       4 of 4" in out
    assert "images received by the store:    4" in out
    assert "pixel-identical to the source:   4" in out
    assert len(list((tmp_path / "pacs").glob("*.dcm"))) == 4
    assert re.search(r"^   status page: http://127\.0\.0\.1:\d+/ ", out, re.MULTILINE), out


# ---------------------------------------------------------- the cli/ package (issue 10)


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path (``("spool", "add")``...) and whether its parser names a handler."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [path] if "handler" not in parser._defaults else []
    found = []
    for name, child in subs[0].choices.items():
        found += _leaves(child, (*path, name))
    return found


def test_every_command_names_its_handler() -> None:
    """Dispatch is by ``set_defaults(handler=...)``: a command without one would exit 2."""
    from bridge.cli import _parser

    assert _leaves(_parser()) == []


def test_the_package_runs_as_a_module_and_as_the_script_entry() -> None:
    import subprocess
    import sys

    from bridge import __version__

    for argv in (
        [sys.executable, "-m", "bridge.cli"],
        [sys.executable, "-m", "bridge.cli.__main__"],
    ):
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=False)
        assert (done.returncode, done.stdout.strip()) == (0, f"acrnema-bridge {__version__}")

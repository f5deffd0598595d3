"""Never lose or mix an input: duplicate UIDs, generated identity, placeholders, geometry
precedence, and the small archive findings of issue 14 (modes, symlinks, messages).

Each test reproduces a finding measured on the code before the fix (in its docstring).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header
from capped import bridge_command
from pydicom import dcmread
from pydicom.dataset import Dataset

from bridge.dicom.core import convert

DEADLINE_S = 180.0  # only to catch a hang


def run_convert(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        [*bridge_command(), "convert", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
        preexec_fn=set_umask,
    )


def pixels(n: int, side: int = 8) -> list[tuple[int, str, object]]:
    values = np.arange(side * side, dtype=np.uint16).reshape(side, side) + n
    return [(0x7FE00010, "b", values.astype("<u2").tobytes())]


def report_of(path: Path) -> dict[str, dict]:
    return {Path(e["source"]).name: e for e in json.loads(path.read_text())}


def outputs_of(out: Path) -> list[Path]:
    return sorted(out.glob("PT*/ST*/SE*/IM*"))


def dcentvfy(paths: list[Path]) -> list[str]:
    """The Error lines of dicom3tools' dcentvfy over a set of files."""
    run = subprocess.run(
        ["dcentvfy", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    text = run.stdout + run.stderr
    return [line for line in text.splitlines() if line.startswith("Error")]


def assert_valid(path: Path) -> Dataset:
    report = peers.dciodvfy(path)
    assert report.errors == [], "\n".join(report.errors)
    return dcmread(path)


# ---------------------------------------------------------------- duplicate SOP Instance UIDs


def write_duplicates(folder: Path, count: int) -> list[Path]:
    """``count`` different images (different pixels, slice numbers) with one SOP Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        elements = header(image_number=str(n + 1)) + pixels(n)
        elements += [
            (0x0020000D, "s", "1.2.826.0.1.3680043.2.1125.1"),
            (0x00080018, "s", "1.2.3.4.5"),
        ]
        path = folder / f"dup{n:02d}.acr"
        path.write_bytes(encode(elements))
        paths.append(path)
    return paths


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_different_instances_with_one_sop_instance_uid_all_get_an_output(
    tmp_path: Path, jobs: str
) -> None:
    """Finding: two inputs with one SOP Instance UID wrote one path; the second overwrote
    the first, both were "converted" and counted; with --jobs 2 one was falsely skipped."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    write_duplicates(src, 12)
    run = run_convert(str(src), "--out", str(out), "--jobs", jobs, "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert "12 converted (12 DICOM files)" in run.stderr
    entries = report_of(report)
    assert {e["status"] for e in entries.values()} == {"converted"}
    files = outputs_of(out)
    assert len(files) == 12
    assert sorted(str(p) for e in entries.values() for p in e["outputs"]) == list(map(str, files))
    uids = {str(dcmread(p).SOPInstanceUID) for p in files}
    assert len(uids) == 12 and "1.2.3.4.5" in uids
    first = entries["dup00.acr"]  # the first in input order keeps the UID
    assert dcmread(first["outputs"][0]).SOPInstanceUID == "1.2.3.4.5"
    for name, entry in entries.items():
        if name == "dup00.acr":
            continue
        assert any("SOP Instance UID 1.2.3.4.5 already used" in w for w in entry["warnings"])
        ds = assert_valid(Path(entry["outputs"][0]))
        kept = [
            item.ModifiedAttributesSequence[0].SOPInstanceUID
            for item in ds.OriginalAttributesSequence
            if "SOPInstanceUID" in item.ModifiedAttributesSequence[0]
        ]
        assert kept == ["1.2.3.4.5"]
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert dcentvfy(files) == []


def test_renamed_uids_are_the_same_with_one_or_two_jobs_and_on_every_run(tmp_path: Path) -> None:
    """The new UIDs come from the content and the input order, not from timing."""
    write_duplicates(tmp_path / "src", 12)
    seen = []
    for n, jobs in enumerate(["1", "2", "2"]):
        out = tmp_path / f"out{n}"
        run = run_convert(str(tmp_path / "src"), "--out", str(out), "--jobs", jobs)
        assert run.returncode == 0, run.stderr
        seen.append({p.relative_to(out): p.read_bytes() for p in outputs_of(out)})
    assert seen[0] == seen[1] == seen[2]


def test_identical_inputs_in_one_run_are_one_output_and_said_so(tmp_path: Path) -> None:
    """Two copies of one file in one batch: one output, the second says whose it is."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    (first,) = write_duplicates(src, 1)
    shutil.copy(first, src / "dup99.acr")
    run = run_convert(str(src), "--out", str(out), "--jobs", "2", "--report", str(report))
    assert run.returncode == 0, run.stderr
    entries = report_of(report)
    assert entries["dup99.acr"]["outputs"] == entries["dup00.acr"]["outputs"]
    assert any("same bytes as" in w and "dup00.acr" in w for w in entries["dup99.acr"]["warnings"])
    assert len(outputs_of(out)) == 1
    assert "(1 DICOM files)" in run.stderr


def test_one_data_set_in_two_encodings_maps_to_one_output(
    corpus_file: object, tmp_path: Path
) -> None:
    """r05 and r06 are one data set, big and little endian: one output, the report says so."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    for prefix in ("r05", "r06"):
        path = corpus_file(prefix)  # type: ignore[operator]
        (src / path.name).symlink_to(path)
    run = run_convert(str(src), "--out", str(out), "--jobs", "2", "--report", str(report))
    assert run.returncode == 0, run.stderr
    entries = list(report_of(report).values())
    assert [e["status"] for e in entries] == ["converted", "converted"]
    assert entries[0]["outputs"] == entries[1]["outputs"]
    assert any("the same data set as" in w for w in entries[1]["warnings"])
    assert len(outputs_of(out)) == 1
    assert "2 converted (1 DICOM files)" in run.stderr


# ---------------------------------------------------------------- generated identity


def test_generated_patient_id_is_one_per_study_uid(tmp_path: Path) -> None:
    """Finding: with a Study Instance UID but no Patient ID, name, Study ID or Study Date,
    each slice got its own Patient ID ("Different PatientID for same StudyInstanceUID")."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for n in range(3):
        elements = [
            e
            for e in header(
                patient_id=None, patient_name="", study_date="", image_number=str(n + 1)
            )
            if e[0] not in (0x00200010, 0x00080030)
        ]
        elements += [(0x0020000D, "s", "1.2.826.0.1.3680043.2.1125.7")] + pixels(n)
        (src / f"s{n}.acr").write_bytes(encode(elements))
    run = run_convert(str(src), "--out", str(out), "--jobs", "1")
    assert run.returncode == 0, run.stderr
    files = outputs_of(out)
    assert len(files) == 3
    assert len({dcmread(p).PatientID for p in files}) == 1
    assert dcentvfy(files) == []


def test_placeholder_identity_never_merges_different_sources(tmp_path: Path) -> None:
    """Finding: Patient ID "Unknown", date 0000.00.00 and no Study ID put every input in one
    study and one series, all with Instance Number 1."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for n in range(3):
        elements = [
            e
            for e in header(patient_id="Unknown", patient_name="Unknown", study_date="0000.00.00")
            if e[0] != 0x00200010
        ]
        (src / f"u{n}.acr").write_bytes(encode(elements + pixels(n)))
    run = run_convert(str(src), "--out", str(out), "--jobs", "1")
    assert run.returncode == 0, run.stderr
    files = outputs_of(out)
    series: dict[str, list[str]] = {}
    for path in files:
        ds = dcmread(path)
        assert ds.PatientID != "Unknown"
        series.setdefault(str(ds.SeriesInstanceUID), []).append(str(ds.InstanceNumber))
    assert len(series) == 3
    assert dcentvfy(files) == []


# ---------------------------------------------------------------- geometry precedence


def geometry_image(extra: list[tuple[int, str, object]]) -> bytes:
    elements = [e for e in header() if e[0] not in (0x00200030, 0x00200035)]
    return encode(elements + extra + pixels(0))


def test_valid_dicom_orientation_wins_over_its_acr_nema_predecessor(tmp_path: Path) -> None:
    """Finding: Image Orientation (0020,0035) all zeros next to a valid (0020,0037) overrode
    it, and dciodvfy said "Orientation vector is not unit vector"."""
    data = geometry_image(
        [
            (0x00200030, "s", "0\\0\\0"),
            (0x00200035, "s", "0\\0\\0\\0\\0\\0"),
            (0x00200037, "s", "0\\1\\0\\0\\0\\-1"),
        ]
    )
    (ds,) = convert(data).datasets
    assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert_valid(path)
    kept = [  # a degenerate value is kept as bytes: dciodvfy checks these items too
        value.SelectorAttribute
        for item in ds.OriginalAttributesSequence
        for value in item.get("NonconformingModifiedAttributesSequence", [])
    ]
    assert 0x00200035 in kept


def test_dicom_position_wins_over_the_acr_nema_one() -> None:
    data = geometry_image(
        [
            (0x00200030, "s", "9\\9\\9"),
            (0x00200035, "s", "1\\0\\0\\0\\1\\0"),
            (0x00200032, "s", "-1\\-2\\-3"),
        ]
    )
    (ds,) = convert(data).datasets
    assert [float(v) for v in ds.ImagePositionPatient] == [-1, -2, -3]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]


@pytest.mark.parametrize(
    "orientation",
    ["0\\0\\0\\0\\0\\0", "2\\0\\0\\0\\1\\0", "1\\0\\0\\1\\0\\0", "0.7\\0.7\\0\\0\\1\\0"],
)
def test_degenerate_orientation_is_never_written(tmp_path: Path, orientation: str) -> None:
    for extra in (
        [(0x00200030, "s", "0\\0\\0"), (0x00200035, "s", orientation)],
        [(0x00200032, "s", "0\\0\\0"), (0x00200037, "s", orientation)],
    ):
        result = convert(geometry_image(extra))
        (ds,) = result.datasets
        assert "ImageOrientationPatient" not in ds
        path = tmp_path / "x.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert_valid(path)
        assert any("orientation" in w.lower() for w in result.warnings)


# ---------------------------------------------------------------- small findings


def test_outputs_dicomdir_and_report_respect_the_umask(tmp_path: Path) -> None:
    """Finding: outputs, DICOMDIR and report were mode 0600 whatever the umask."""
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    write_duplicates(src, 2)
    args = [str(src), "--out", str(out), "--report", str(report), "--dicomdir", "--jobs", "1"]
    run = run_convert(*args, umask=0o022)
    assert run.returncode == 0, run.stderr
    for path in [*outputs_of(out), out / "DICOMDIR", report]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    shutil.rmtree(out)
    run = run_convert(*args, umask=0o027)
    assert run.returncode == 0, run.stderr
    assert {p.stat().st_mode & 0o777 for p in outputs_of(out)} == {0o640}


def test_symlinked_folders_are_walked_and_loops_reported_once(tmp_path: Path) -> None:
    """Finding: symlinked folders were not walked."""
    real, src, out = tmp_path / "real", tmp_path / "src", tmp_path / "out"
    write_duplicates(real, 2)
    src.mkdir()
    (src / "linked").symlink_to(real)
    (real / "loop").symlink_to(real)  # a loop: real/loop/loop/...
    report = tmp_path / "report.json"
    run = run_convert(str(src), "--out", str(out), "--jobs", "1", "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert len(report_of(report)) == 2
    assert len(outputs_of(out)) == 2
    loops = [line for line in run.stderr.splitlines() if "loop" in line]
    assert len(loops) == 1, run.stderr
    assert str(src / "linked" / "loop") in loops[0]


def test_an_unreadable_number_names_its_element(tmp_path: Path) -> None:
    """Finding: "invalid literal for int()" did not say which element held it."""
    elements = header() + pixels(0) + [(0x00280008, "s", "ABC")]
    path = tmp_path / "bad.acr"
    path.write_bytes(encode(elements))
    report = tmp_path / "report.json"
    run = run_convert(str(path), "--out", str(tmp_path / "out"), "--report", str(report))
    assert run.returncode == 1
    error = report_of(report)["bad.acr"]["error"]
    assert "(0028,0008)" in error and "ABC" in error, error


def test_a_forced_wrong_byte_order_gives_a_hint(tmp_path: Path) -> None:
    """Finding: a forced wrong --byte-order failed without saying what would fit."""
    path = tmp_path / "le.acr"
    path.write_bytes(encode(header() + pixels(0)))
    report = tmp_path / "report.json"
    out = tmp_path / "out"
    run = run_convert(str(path), "--out", str(out), "--byte-order", "big", "--report", str(report))
    assert run.returncode == 1
    error = report_of(report)["le.acr"]["error"]
    assert "reads as little endian" in error and "--byte-order" in error, error


def test_a_rerun_and_an_overwrite_keep_every_output_and_uid(tmp_path: Path) -> None:
    """The registry of taken UIDs makes a re-run decide as the first run did."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_duplicates(src, 4)
    assert run_convert(str(src), "--out", str(out), "--jobs", "2").returncode == 0
    first = {p: p.read_bytes() for p in outputs_of(out)}
    report = tmp_path / "report.json"
    run = run_convert(str(src), "--out", str(out), "--jobs", "2", "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert {e["status"] for e in report_of(report).values()} == {"skipped"}
    run = run_convert(str(src), "--out", str(out), "--jobs", "2", "--overwrite")
    assert run.returncode == 0, run.stderr
    assert "4 converted (4 DICOM files)" in run.stderr
    assert {p: p.read_bytes() for p in outputs_of(out)} == first
    registry = (out / ".acrnema-bridge" / "instances.jsonl").read_text().splitlines()
    assert len(registry) == 4


def test_the_corpus_converts_to_distinct_valid_outputs(corpus: Path, tmp_path: Path) -> None:
    """The whole corpus in one batch: one output per data set (r05 and r06 are one),
    consistent entities for dcentvfy, no dciodvfy error beyond the RT Plans' known ones."""
    out, report = tmp_path / "out", tmp_path / "report.json"
    run = run_convert(str(corpus), "--out", str(out), "--jobs", "2", "--report", str(report))
    assert run.returncode == 0, run.stderr
    entries = report_of(report)
    converted = {n: e for n, e in entries.items() if e["status"] == "converted"}
    assert len(converted) == 9  # every data set of MANIFEST.md
    files = outputs_of(out)
    assert len(files) == 8  # r05 and r06 share one
    assert "9 converted (8 DICOM files)" in run.stderr
    r05 = next(e for n, e in converted.items() if n.startswith("r05"))
    r06 = next(e for n, e in converted.items() if n.startswith("r06"))
    assert r05["outputs"] == r06["outputs"]
    assert len({str(dcmread(p).SOPInstanceUID) for p in files}) == 8
    assert dcentvfy(files) == []
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        if ds.Modality == "RTPLAN":
            continue  # lacks RT Plan Label and Referenced Structure Set (docs/conversion.md)
        assert peers.dciodvfy(path).errors == [], path

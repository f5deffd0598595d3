"""The DICOMDIR of ``convert --dicomdir``: every output recorded, the same bytes on every
run, a resume that updates it, and records that DCMTK, dicom3tools and pydicom read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian

from bridge.cli import main
from bridge.dicomdir import CACHE, write_dicomdir

NO_DATES = {0x00080020, 0x00080021, 0x00080022, 0x00080023, 0x00080030, 0x00080031, 0x00080033}


def write_inputs(
    folder: Path,
    count: int,
    *,
    start: int = 0,
    dated: bool = True,
    patient_name: str = "DOE^JOHN",
) -> list[Path]:
    """``count`` 8x8 ACR-NEMA slices of one series; without any date unless ``dated``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(start, start + count):
        elements = header(image_number=str(n + 1), patient_name=patient_name)
        if not dated:
            elements = [e for e in elements if e[0] not in NO_DATES]
        pixels = np.full((8, 8), n, np.uint16)
        path = folder / f"img{n:04d}.acr"
        path.write_bytes(encode(elements + [(0x7FE00010, "b", pixels.tobytes())]))
        paths.append(path)
    return paths


def convert(*args: str) -> int:
    return main(["convert", "--quiet", "--jobs", "1", *args])


def outputs(out: Path) -> set[Path]:
    return {p for p in out.glob("PT*/ST*/SE*/IM*") if p.is_file()}


def indexed(out: Path) -> set[Path]:
    """The files the DICOMDIR records, as pydicom's FileSet reads them."""
    return {Path(instance.path) for instance in FileSet(out / "DICOMDIR")}


def test_images_without_a_study_date_get_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: images without a Study Date were left out, an empty DICOMDIR and exit 0."""
    write_inputs(tmp_path / "src", 3, dated=False)
    out = tmp_path / "out"
    assert convert(str(tmp_path / "src"), "--out", str(out), "--dicomdir") == 0
    assert "not in DICOMDIR" not in capsys.readouterr().err
    assert len(outputs(out)) == 3
    assert indexed(out) == outputs(out)
    study = next(r for r in dcmread(out / "DICOMDIR").DirectoryRecordSequence
                 if r.DirectoryRecordType == "STUDY")  # fmt: skip
    assert study.StudyDate == "19000101" and study.StudyTime == "000000"  # placeholders
    assert study.StudyID  # the converter's generated Study ID


def test_the_same_inputs_give_the_same_dicomdir(tmp_path: Path) -> None:
    """Finding: the DICOMDIR got a new random File-set UID on every run."""
    write_inputs(tmp_path / "src", 4)
    first, second = tmp_path / "one", tmp_path / "two"
    assert convert(str(tmp_path / "src"), "--out", str(first), "--dicomdir") == 0
    assert convert(str(tmp_path / "src"), "--out", str(second), "--dicomdir") == 0
    one, two = dcmread(first / "DICOMDIR"), dcmread(second / "DICOMDIR")
    assert one.file_meta.MediaStorageSOPInstanceUID == two.file_meta.MediaStorageSOPInstanceUID
    assert str(one.file_meta.MediaStorageSOPInstanceUID).startswith("2.25.")
    assert (first / "DICOMDIR").read_bytes() == (second / "DICOMDIR").read_bytes()
    # another set of files is another file set
    write_inputs(tmp_path / "src", 1, start=4)
    assert convert(str(tmp_path / "src"), "--out", str(second), "--dicomdir") == 0
    three = dcmread(second / "DICOMDIR")
    assert three.file_meta.MediaStorageSOPInstanceUID != one.file_meta.MediaStorageSOPInstanceUID


def test_a_resume_updates_the_dicomdir(tmp_path: Path) -> None:
    """Finding: a resume with --dicomdir read every instance again and rebuilt it whole.

    The second run reads only the outputs it has not recorded, and the result is the very
    DICOMDIR a build from nothing gives.
    """
    src, out = tmp_path / "src", tmp_path / "out"
    write_inputs(src, 5)
    assert convert(str(src), "--out", str(out)) == 0
    first = write_dicomdir(out)
    assert (first.instances, first.read, first.left_out) == (5, 5, [])
    earlier = outputs(out)
    write_inputs(src, 3, start=5)
    assert convert(str(src), "--out", str(out)) == 0
    again = write_dicomdir(out)
    assert (again.instances, again.read, again.left_out) == (8, 3, [])
    assert indexed(out) == outputs(out) and earlier < outputs(out)
    updated = (out / "DICOMDIR").read_bytes()
    (out / CACHE).unlink()
    rebuilt = write_dicomdir(out)
    assert rebuilt.read == 8 and (out / "DICOMDIR").read_bytes() == updated
    # an output written again (--overwrite) is read again; a removed one loses its record
    victim = sorted(earlier)[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    victim_2 = sorted(earlier)[1]
    victim_2.unlink()
    after = write_dicomdir(out)
    assert (after.instances, after.read) == (7, 1)
    assert indexed(out) == outputs(out)


def test_the_cli_resume_keeps_records_and_adds_new_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The batch hands over what it wrote (nothing read again); a later run reads only the
    outputs it has never recorded; the result is what a build from nothing gives."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_inputs(src, 2)
    assert main(["convert", str(src), "--out", str(out)]) == 0  # no DICOMDIR yet
    write_inputs(src, 1, start=2, dated=False)
    capsys.readouterr()
    assert main(["convert", str(src), "--out", str(out), "--dicomdir"]) == 0
    assert f"DICOMDIR: {out / 'DICOMDIR'} (3 instances, 2 read)" in capsys.readouterr().err
    write_inputs(src, 1, start=3)
    assert main(["convert", str(src), "--out", str(out), "--dicomdir"]) == 0
    assert f"DICOMDIR: {out / 'DICOMDIR'} (4 instances, 0 read)" in capsys.readouterr().err
    assert indexed(out) == outputs(out) and len(outputs(out)) == 4
    updated = (out / "DICOMDIR").read_bytes()
    (out / CACHE).unlink()
    assert write_dicomdir(out).read == 4
    assert (out / "DICOMDIR").read_bytes() == updated


def test_a_patient_name_in_another_character_set_reads_back(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_inputs(src, 1)
    assert convert(str(src), "--out", str(out)) == 0
    [path] = outputs(out)
    ds = dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.save_as(path)
    write_dicomdir(out)
    [patient] = FileSet(out / "DICOMDIR")._tree.children
    assert str(patient._record.PatientName) == "Müller^Jürgen"
    assert patient._record.SpecificCharacterSet == "ISO_IR 100"


def test_unreadable_and_duplicate_files_are_left_out_with_the_reason(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_inputs(src, 2)
    assert convert(str(src), "--out", str(out)) == 0
    first, second = sorted(outputs(out))
    copy = first.parent / "IMZZCOPY"  # after the original in File ID order
    shutil.copyfile(first, copy)
    broken = second.parent / "IMBROKEN"
    broken.write_bytes(b"not a DICOM file")
    result = write_dicomdir(out)
    assert result.instances == 2
    assert sorted(result.left_out) == sorted(
        [
            f"{broken}: not a DICOM file",
            f"{copy}: same SOP Instance UID as {'/'.join(first.relative_to(out).parts)}",
        ]
    )
    assert indexed(out) == {first, second}


@pytest.mark.peers
def test_dcmtk_and_dicom3tools_accept_the_dicomdir(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_inputs(src / "a", 3)
    write_inputs(src / "b", 2, dated=False, patient_name="ROE^JANE")
    assert convert(str(src), "--out", str(out), "--dicomdir") == 0
    assert len(indexed(out)) == 5
    result = peers.dciodvfy(out / "DICOMDIR")
    assert result.errors == [], result.output
    assert result.iod is None or "DICOMDIR" in result.iod.upper() or result.iod
    dump = subprocess.run(
        [peers.require_tool("dcmdump"), "-q", str(out / "DICOMDIR")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.count("(0004,1430) CS [IMAGE") == 5
    assert "W: " not in dump.stderr and "E: " not in dump.stderr


@pytest.mark.peers
def test_every_output_of_the_corpus_has_a_record(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: a corpus file without a Study Date was left out of the DICOMDIR."""
    out = tmp_path / "out"
    convert(str(corpus), "--out", str(out), "--dicomdir")  # some corpus files are refused
    assert "not in DICOMDIR" not in capsys.readouterr().err
    assert len(outputs(out)) >= 8
    assert indexed(out) == outputs(out)
    result = peers.dciodvfy(out / "DICOMDIR")
    assert result.errors == [], result.output
    # the values the batch handed over are those its files give when read back
    written = (out / "DICOMDIR").read_bytes()
    (out / CACHE).unlink()
    assert write_dicomdir(out).read == len(outputs(out))
    assert (out / "DICOMDIR").read_bytes() == written


@pytest.mark.peers
def test_an_rt_structure_set_gets_its_own_record_type(tmp_path: Path) -> None:
    """A non-image object gets the record type of its class, with the keys that type needs
    (Instance Number generated)."""
    rt = Dataset()
    rt.file_meta = FileMetaDataset()
    rt.SOPClassUID = rt.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    rt.SOPInstanceUID = rt.file_meta.MediaStorageSOPInstanceUID = "2.25.1"
    rt.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    rt.PatientID, rt.StudyInstanceUID, rt.SeriesInstanceUID = "P1", "2.25.2", "2.25.3"
    rt.Modality, rt.StructureSetLabel = "RTSTRUCT", "TARGETS"
    path = tmp_path / "PTAAAAAA" / "STBBBBBB" / "SECCCCCC" / "IMDDDDDD"
    path.parent.mkdir(parents=True)
    rt.save_as(path, enforce_file_format=True)
    assert write_dicomdir(tmp_path).instances == 1
    [leaf] = FileSet(tmp_path / "DICOMDIR")
    assert leaf.DirectoryRecordType == "RT STRUCTURE SET"
    assert leaf.StructureSetLabel == "TARGETS" and leaf.InstanceNumber == 1
    assert peers.dciodvfy(tmp_path / "DICOMDIR").errors == []


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_dicomdir_respects_the_umask(tmp_path: Path, umask: int) -> None:
    """As any file the user makes (as ``cp`` does): 0666 less the umask, not 0600."""
    write_inputs(tmp_path / "src", 1)
    out = tmp_path / "out"
    assert convert(str(tmp_path / "src"), "--out", str(out)) == 0
    previous = os.umask(umask)
    try:
        write_dicomdir(out)
    finally:
        os.umask(previous)
    assert (out / "DICOMDIR").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (out / CACHE).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_relative_out_reads_nothing_the_batch_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUT given relative: the batch's outputs are still handed over, none is read again."""
    write_inputs(tmp_path / "src", 3)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["convert", "src", "--out", "out", "--dicomdir", "--jobs", "1"]) == 0
    assert "DICOMDIR: out/DICOMDIR (3 instances, 0 read)" in capsys.readouterr().err

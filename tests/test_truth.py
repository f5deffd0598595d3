"""The scanner is told the truth (issue 11, item 6).

A conversion that would drop or change image data (Pixel Data missing, shorter or longer
than the header says, an unusual Bits Allocated re-read as packed cells) is answered to
the scanner with a failure status and the reason, and nothing is spooled, so the scanner
keeps the image. ``run --accept-repairs`` (or ``[link] accept_repairs``) stores such
images repaired and logs every repair at WARNING with the SOP Instance UID. ``convert``
keeps making the best possible object and reports every repair; ``convert --strict``
refuses as ``run`` does. Findings reproduced through the real service path: the
emulated scanner, ``acrnema-bridge run`` as a process, its spool.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import peers
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from bridge.acrnema.elements import IMPLICIT_BE, IMPLICIT_LE, encode
from bridge.dicom.core import ConvertOptions, convert
from bridge.dicom.pixels import RepairKind
from bridge.errors import ConversionError, ImageDataError
from bridge.lenient import lenient
from bridge.link.requester import Image
from bridge.testing.phantom import PhantomSpec, phantom_dataset, phantom_images

# ---------------------------------------------------------------- the three findings


def _encoded(ds: Dataset, syntax: object = IMPLICIT_BE) -> bytes:
    with lenient():
        return encode(ds, syntax)  # type: ignore[arg-type]


def rows_400() -> Dataset:
    """Rows 400 in the header, 512 x 512 cells of pixel data: 112 rows would be cut."""
    ds = phantom_dataset(PhantomSpec(rows=512, columns=512))
    ds.Rows = 400
    return ds


def bits_allocated_7() -> Dataset:
    """Bits Allocated 7, with exactly the bytes 64 x 64 packed 7-bit cells take."""
    ds = phantom_dataset(PhantomSpec(rows=64, columns=64))
    ds.BitsAllocated = ds.BitsStored = 7
    ds.HighBit = 6
    ds.PixelData = bytes(range(256)) * 14  # 3584 bytes = 4096 cells x 7 bits
    return ds


def no_pixel_data() -> Dataset:
    """A CT image header (Rows, Columns, Bits...) without Pixel Data."""
    ds = phantom_dataset(PhantomSpec(rows=64, columns=64))
    del ds.PixelData
    return ds


CHANGED = {"rows 400": rows_400, "bits allocated 7": bits_allocated_7}
FINDINGS = {**CHANGED, "no pixel data": no_pixel_data}
REASONS = {
    "rows 400": "pixel data longer than the image",
    "bits allocated 7": "Bits Allocated 7",
    "no pixel data": "without Pixel Data",
}


def _objects(spool_dir: Path) -> list[Path]:
    return sorted((spool_dir / "objects").rglob("*.dcm"))


def _send(port: int, names: list[str]) -> list[object]:
    images = [Image(name, _encoded(FINDINGS[name]())) for name in names]
    with peers.scanner_on(port, response_timeout=60.0) as scanner:
        return list(scanner.send([*images, *phantom_images(1, rows=64)]))


def _stop(service: subprocess.Popen[str]) -> str:
    assert service.poll() is None, "the service died"
    service.send_signal(signal.SIGTERM)
    _, err = service.communicate(timeout=60)
    assert service.returncode == 0, err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------- the link


def test_a_conversion_that_changes_the_image_is_refused_and_nothing_is_spooled(
    tmp_path: Path,
) -> None:
    """Finding: all three were answered success (warnings at DEBUG only) and spooled: a
    truncated image, one re-read as packed 7-bit cells, a CT object without pixels."""
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    names = list(FINDINGS)
    with peers.bridge_service(port, "--spool", str(spool_dir)) as service:
        *refused, good = _send(port, names)
        err = _stop(service)
    for name, result in zip(names, refused, strict=True):
        assert not result.ok, f"{name}: answered success"  # type: ignore[attr-defined]
        [error] = result.errors  # type: ignore[attr-defined]
        assert "not_stored A900H" in error, (name, error)
        assert REASONS[name] in error, (name, error)  # the reason reaches the scanner
    assert good.ok, good.errors  # type: ignore[attr-defined]
    assert len(_objects(spool_dir)) == 1, "a refused image left an object in the spool"
    for name in names:
        assert REASONS[name] in err  # and the operator's log says why, at WARNING
    assert "--accept-repairs" in err


def _repair_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "repair accepted" in line]


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_accepted_repairs_are_stored_and_each_is_logged_at_warning_with_its_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    port = peers.free_port()
    spool_dir = tmp_path / "spool"
    args = []
    if how == "flag":
        args = ["--accept-repairs"]
    else:
        config = tmp_path / "bridge.toml"
        config.write_text("[link]\naccept_repairs = true\n")
        monkeypatch.setenv("BRIDGE_CONFIG", str(config))  # the service's settings file
    names = list(FINDINGS)
    with peers.bridge_service(port, "--spool", str(spool_dir), *args) as service:
        *results, good = _send(port, names)
        err = _stop(service)
    outcome = dict(zip(names, results, strict=True))
    assert outcome["rows 400"].ok and outcome["bits allocated 7"].ok  # type: ignore[attr-defined]
    missing = outcome["no pixel data"]
    assert not missing.ok and "not_stored A900H" in missing.errors[0]  # type: ignore[attr-defined]
    assert good.ok
    stored = {str(dcmread(p).SOPInstanceUID): p for p in _objects(spool_dir)}
    assert len(stored) == 3
    lines = _repair_lines(err)
    assert len(lines) == 2, err
    for line, name in zip(lines, CHANGED, strict=True):
        assert "WARNING" in line and REASONS[name] in line, line
        uid = re.search(r"SOP Instance UID ([0-9.]+)", line)
        assert uid is not None and uid.group(1) in stored, line
    for path in stored.values():
        report = peers.dciodvfy(path)
        assert report.errors == [], (path, report.errors)
    truncated = dcmread(stored[re.search(r"UID ([0-9.]+)", lines[0]).group(1)])  # type: ignore[union-attr]
    assert (truncated.Rows, truncated.Columns) == (400, 512)


def test_accept_repairs_is_a_setting_config_show_names() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["link"]["accept_repairs"] is False


# ---------------------------------------------------------------- the conversion


@pytest.mark.parametrize("name", list(CHANGED))
def test_the_result_lists_each_repair_with_a_kind_that_says_pixels_changed(name: str) -> None:
    data = _encoded(FINDINGS[name](), IMPLICIT_LE)
    result = convert(data, source=name)  # the library keeps the best possible object
    changed = [r for r in result.repairs if r.kind is RepairKind.PIXELS]
    assert len(changed) == 1 and REASONS[name] in changed[0].reason
    assert changed[0].changes_pixels
    with pytest.raises(ImageDataError) as refused:
        convert(data, source=name, options=ConvertOptions(accept_repairs=False))
    assert refused.value.repairs == tuple(changed)
    assert REASONS[name] in str(refused.value)


def test_packed_cells_read_past_their_end_are_a_repair() -> None:
    """Bits Allocated 7 over 8-bit data: the cells were re-read and 512 bytes ignored."""
    ds = bits_allocated_7()
    ds.PixelData = bytes(range(256)) * 16  # 4096 bytes: one byte a cell
    result = convert(_encoded(ds, IMPLICIT_LE))
    reasons = [r.reason for r in result.repairs if r.changes_pixels]
    assert any("Bits Allocated 7" in r for r in reasons)
    assert any("pixel data longer than the image" in r for r in reasons)


def test_stray_bits_above_high_bit_are_a_pixel_repair_and_an_overlay_is_not() -> None:
    """Bits above High Bit 11 that no overlay describes are cleared: the image changes
    (a Bits Stored too small for the data would cut every value). Described as an
    overlay plane, the same bit is moved to Overlay Data: no repair."""
    ds = phantom_dataset(PhantomSpec(rows=64, columns=64))
    cells = np.frombuffer(ds.PixelData, "<u2").copy()
    cells[::7] |= 0x8000
    ds.PixelData = cells.tobytes()
    stray = convert(_encoded(ds, IMPLICIT_LE))
    assert [r.name for r in stray.repairs if r.changes_pixels] == ["high-bits-cleared"]
    with pytest.raises(ImageDataError, match="above High Bit 11"):
        convert(_encoded(ds, IMPLICIT_LE), options=ConvertOptions(accept_repairs=False))
    with lenient():
        ds.add_new(0x60000100, "US", 16)  # Overlay Bits Allocated = Bits Allocated
        ds.add_new(0x60000102, "US", 15)  # Overlay Bit Position
    overlay = convert(_encoded(ds, IMPLICIT_LE), options=ConvertOptions(accept_repairs=False))
    assert overlay.repairs == [] and (0x6000, 0x3000) in overlay.datasets[0]


def test_pixel_data_shorter_than_the_image_is_an_image_data_error() -> None:
    ds = phantom_dataset(PhantomSpec(rows=64, columns=64))
    ds.Rows = 80
    with pytest.raises(ImageDataError, match="pixel data shorter than the image"):
        convert(_encoded(ds, IMPLICIT_LE))


def test_an_image_without_pixel_data_is_refused_even_when_repairs_are_accepted() -> None:
    with pytest.raises(ImageDataError, match="without Pixel Data"):
        convert(_encoded(no_pixel_data(), IMPLICIT_LE))


def test_a_data_set_without_an_image_is_never_stored_as_an_image() -> None:
    """Finding: an ACR-NEMA data set with no image became a Secondary Capture *Image*
    without pixels."""
    ds = no_pixel_data()
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    with pytest.raises(ConversionError, match="without Pixel Data"):
        convert(_encoded(ds, IMPLICIT_LE))


def test_a_non_image_object_keeps_its_own_sop_class(corpus_file: object) -> None:
    """An RT Ion Plan (a headerless DICOM data set) has no pixels and needs none."""
    path = corpus_file("r05")  # type: ignore[operator]
    result = convert(Path(path).read_bytes(), source=str(path))
    [ds] = result.datasets
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8" and "PixelData" not in ds
    assert result.repairs == []


@pytest.mark.parametrize("prefix", ["d01", "m01", "m02", "r01", "r02", "r03", "r04"])
def test_the_corpus_images_need_no_pixel_repair(corpus_file: object, prefix: str) -> None:
    """The link refuses pixel repairs: a real file (12-bit packed m01 included) has none."""
    path = Path(corpus_file(prefix))  # type: ignore[operator]
    result = convert(
        path.read_bytes(), source=str(path), options=ConvertOptions(accept_repairs=False)
    )
    assert all("PixelData" in ds for ds in result.datasets)
    assert not [r for r in result.repairs if r.changes_pixels]


# ---------------------------------------------------------------- convert (archives)


def _convert_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "convert", "--jobs", "1", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_convert_keeps_the_best_object_and_reports_each_repair(tmp_path: Path) -> None:
    source = tmp_path / "in" / "rows400.acr"
    source.parent.mkdir()
    source.write_bytes(_encoded(rows_400(), IMPLICIT_LE))
    report = tmp_path / "report.json"
    done = _convert_cli(str(source), "--out", str(tmp_path / "out"), "--report", str(report))
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(report.read_text())
    assert entry["status"] == "converted"
    [repair] = [r for r in entry["repairs"] if r["kind"] == "pixels"]
    assert "pixel data longer than the image" in repair["reason"]
    assert "repaired" in done.stderr and "pixel data longer than the image" in done.stderr
    [output] = entry["outputs"]
    assert peers.dciodvfy(output).errors == []


def test_convert_strict_refuses_as_the_link_does(tmp_path: Path) -> None:
    source = tmp_path / "in" / "rows400.acr"
    source.parent.mkdir()
    source.write_bytes(_encoded(rows_400(), IMPLICIT_LE))
    report = tmp_path / "report.json"
    out = tmp_path / "out"
    done = _convert_cli(str(source), "--out", str(out), "--report", str(report), "--strict")
    assert done.returncode == 1, done.stderr
    [entry] = json.loads(report.read_text())
    assert entry["status"] == "failed" and entry["outputs"] == []
    assert "pixel data longer than the image" in entry["error"]
    assert not list(out.rglob("*.dcm"))


def test_a_repaired_image_is_a_valid_object(tmp_path: Path) -> None:
    """The accepted 7-bit image: pixels as read, a valid object (dciodvfy)."""
    result = convert(_encoded(bits_allocated_7(), IMPLICIT_LE))
    [ds] = result.datasets
    path = tmp_path / "ba7.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert peers.dciodvfy(path).errors == []
    assert np.asarray(dcmread(path).pixel_array).max() < 128


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_an_8_bit_ct_or_mr_image_becomes_a_valid_secondary_capture(
    tmp_path: Path, modality: str
) -> None:
    """Finding: 8-bit CT and MR images were stored as CT / MR Image Storage, which allow
    16 bits allocated only (dciodvfy: "Unrecognized enumerated value")."""
    ds = phantom_dataset(PhantomSpec(modality=modality, rows=64, columns=64))
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = bytes(range(256)) * 16
    [out] = convert(_encoded(ds, IMPLICIT_LE)).datasets
    path = tmp_path / "eight.dcm"
    out.save_as(path, enforce_file_format=True)
    report = peers.dciodvfy(path)
    assert report.errors == [] and report.iod == "SCImage", report.errors

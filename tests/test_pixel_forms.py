"""Every pixel form, non-image objects and the standard's repairs (issue 14, items 2-3).

The inputs are pydicom's own test files (MIT) made headerless, as archives hold them:
their file meta dropped, so the data set alone says nothing about its transfer syntax.
Where the source had a Part 10 header, its transfer syntax is the oracle for ours.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header, pack_cells
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset

from bridge.batch import ConvertStatus, convert_file
from bridge.dicom.core import ConvertOptions, convert
from bridge.errors import ConversionError


def source(name: str) -> Dataset:
    return dcmread(get_testdata_file(name), force=True)  # type: ignore[arg-type]


def headerless(ds: Dataset, *, implicit: bool = True) -> bytes:
    """``ds`` written as a bare data set, little endian, without preamble or meta."""
    buffer = io.BytesIO()
    fp = DicomFileLike(buffer)
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return buffer.getvalue()


def save(ds: Dataset, path: Path) -> Dataset:
    ds.save_as(path, enforce_file_format=True)
    return dcmread(path)


def dciodvfy_errors(path: Path) -> list[str]:
    return peers.dciodvfy(path).errors


def assert_no_new_errors(path: Path, name: str) -> None:
    """``dciodvfy`` finds nothing in ``path`` it does not find in pydicom's file ``name``.

    dicom3tools' tables (2022) predate two things the standard allows: uncompressed
    YBR_FULL_422 at 2 bytes a pixel (PS3.3 C.7.6.3.1.2) and YBR photometric
    interpretations in Secondary Capture; it reports both on pydicom's own files too.
    """
    errors = dciodvfy_errors(path)
    known = set(dciodvfy_errors(Path(get_testdata_file(name))))  # type: ignore[arg-type]
    assert set(errors) <= known, "\n".join(set(errors) - known)
    assert len(errors) <= 2, errors  # at most those two


# ---------------------------------------------------------------- YBR_FULL_422


def test_uncompressed_ybr_full_422_is_converted_exactly(tmp_path: Path) -> None:
    original = source("SC_ybr_full_422_uncompressed.dcm")
    [ds] = convert(headerless(original), source="ybr.dcm").datasets
    out = save(ds, tmp_path / "ybr.dcm")
    assert out.PhotometricInterpretation == "YBR_FULL_422"
    assert out.PixelData == original.PixelData  # 2 bytes a pixel: Y Y Cb Cr per pair
    np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
    assert_no_new_errors(tmp_path / "ybr.dcm", "SC_ybr_full_422_uncompressed.dcm")


# ---------------------------------------------------------------- encapsulated, no syntax

ENCAPSULATED = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline (process 1)
    "JPEG-lossy.dcm",  # JPEG extended (process 2 and 4), 12 bits
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, first-order prediction
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless only
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE lossless
    "SC_rgb_rle_2frame.dcm",  # RLE, two frames
]


@pytest.mark.parametrize("name", ENCAPSULATED)
@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_encapsulated_pixels_without_syntax_keep_their_fragments(
    name: str, implicit: bool, tmp_path: Path
) -> None:
    original = source(name)
    result = convert(headerless(original, implicit=implicit), source=name)
    [ds] = result.datasets
    out = save(ds, tmp_path / name)
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out.PixelData == original.PixelData  # byte-identical fragments
    assert out["PixelData"].is_undefined_length


@pytest.mark.parametrize("name", ENCAPSULATED)
def test_encapsulated_pixels_give_valid_objects(name: str, tmp_path: Path) -> None:
    [ds] = convert(headerless(source(name)), source=name).datasets
    save(ds, tmp_path / name)
    assert_no_new_errors(tmp_path / name, name)


def test_part10_compressed_input_keeps_its_syntax_and_fragments(tmp_path: Path) -> None:
    path = Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))  # type: ignore[arg-type]
    [ds] = convert(path.read_bytes(), source=path.name).datasets
    out = save(ds, tmp_path / "p10.dcm")
    original = source(path.name)
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out.PixelData == original.PixelData


def _with_fragment(fragment: bytes) -> bytes:
    ds = source("SC_rgb_jpeg_dcmtk.dcm")
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    return headerless(ds, implicit=False)


def test_an_unsupported_jpeg_process_is_refused_as_compressed() -> None:
    jpeg = bytes(source("SC_rgb_jpeg_dcmtk.dcm").PixelData)
    start = jpeg.index(b"\xff\xd8")
    fragment = bytearray(jpeg[start:])
    fragment[fragment.index(b"\xff\xc0") + 1] = 0xC2  # SOF2: progressive
    with pytest.raises(ConversionError) as caught:
        convert(_with_fragment(bytes(fragment)), source="progressive.dcm")
    message = str(caught.value)
    assert "compressed" in message and "JPEG progressive" in message
    assert "bytes, " not in message and "shorter" not in message


def test_unknown_encapsulated_pixels_are_refused_as_compressed() -> None:
    with pytest.raises(ConversionError) as caught:
        convert(_with_fragment(b"NOT A KNOWN CODEC!" * 4), source="odd.dcm")
    message = str(caught.value)
    assert "encapsulated" in message and "compression" in message
    assert "shorter" not in message


# ---------------------------------------------------------------- Bits Allocated 1


def test_one_bit_acr_nema_image_stays_one_bit(tmp_path: Path) -> None:
    values = (np.arange(16 * 16).reshape(16, 16) * 7 % 3 == 0).astype(np.uint16)
    elements = [
        e
        for e in header(modality="OT", rows=16, columns=16, geometry=False)
        if e[0] not in (0x00280100, 0x00280101, 0x00280102)
    ]
    elements += [(0x00280100, "u", 1), (0x00280101, "u", 1), (0x00280102, "u", 0)]
    elements += [(0x7FE00010, "b", pack_cells(values.reshape(-1).tolist(), 1))]
    [ds] = convert(encode(elements), source="bits1.acr").datasets
    out = save(ds, tmp_path / "bits1.dcm")
    assert (out.BitsAllocated, out.BitsStored, out.HighBit) == (1, 1, 0)
    assert len(out.PixelData) == 16 * 16 // 8
    np.testing.assert_array_equal(out.pixel_array, values)
    assert dciodvfy_errors(tmp_path / "bits1.dcm") == []


def test_one_bit_headerless_segmentation_keeps_its_bits() -> None:
    ds = source("CT_small.dcm")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    ds.Modality = "SEG"
    bits = np.packbits(np.eye(128, dtype=np.uint8).reshape(-1), bitorder="little").tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.Rows = ds.Columns = 128
    ds.PixelData = bits
    ds["PixelData"].VR = "OB"
    [out] = convert(headerless(ds), source="seg.dcm").datasets
    assert out.BitsAllocated == 1
    assert out.PixelData == bits


# ---------------------------------------------------------------- non-image objects


def test_rt_structure_set_is_converted_as_its_iod(tmp_path: Path) -> None:
    original = source("rtstruct.dcm")
    [ds] = convert(headerless(original), source="rtstruct.dcm").datasets
    save(ds, tmp_path / "rs.dcm")
    assert ds.SOPClassUID == original.SOPClassUID
    for image_only in ("Rows", "PixelData", "Laterality", "ImageType", "InstanceNumber"):
        assert (image_only in ds) == (image_only in original), image_only
    # no error the source does not have itself (it lacks its Frame of Reference module)
    source_errors = dciodvfy_errors(Path(get_testdata_file("rtstruct.dcm")))  # type: ignore[arg-type]
    assert set(dciodvfy_errors(tmp_path / "rs.dcm")) <= set(source_errors)


def _query(sop_class: str | None) -> bytes:
    ds = Dataset()
    if sop_class is not None:
        ds.SOPClassUID = sop_class
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = ""
    ds.StudyInstanceUID = ""
    return headerless(ds)


def test_a_query_file_is_refused_as_a_query() -> None:
    with pytest.raises(ConversionError, match="query"):
        convert(_query(None), source="q.dcm")
    with pytest.raises(ConversionError, match="not a storage SOP class"):
        convert(_query("1.2.840.10008.5.1.4.1.2.2.1"), source="q.dcm")  # Study Root FIND


def test_an_unknown_sop_class_is_refused_with_its_reason() -> None:
    with pytest.raises(ConversionError, match=r"1\.2\.3\.4\.5.*no IOD"):
        convert(_query("1.2.3.4.5"), source="q.dcm")


def test_an_empty_sop_class_names_the_input_and_element(tmp_path: Path) -> None:
    (tmp_path / "q.dcm").write_bytes(_query(""))
    entry = convert_file(tmp_path / "q.dcm", tmp_path / "out", ConvertOptions(), False)
    assert entry.status is ConvertStatus.FAILED
    assert "internal error" not in str(entry.error)
    assert "q.dcm" in str(entry.error) and "tag (0008,0052)" in str(entry.error)
    assert "query" in str(entry.error)


def test_an_unexpected_value_names_the_element() -> None:
    data = Path(get_testdata_file("badVR.dcm")).read_bytes()  # type: ignore[arg-type]
    with pytest.raises(ConversionError) as caught:
        convert(data, source="badVR.dcm")
    assert "badVR.dcm" in str(caught.value) and caught.value.tag is not None


# ---------------------------------------------------------------- repairs


def _originals(ds: Dataset) -> dict[int, object]:
    found: dict[int, object] = {}
    for item in ds.get("OriginalAttributesSequence", []):
        for modified in item.get("ModifiedAttributesSequence", []):
            for element in modified:
                found[int(element.tag)] = element.value
        for value in item.get("NonconformingModifiedAttributesSequence", []):
            found[int(value.SelectorAttribute)] = value.NonconformingDataElementValue
    return found


def test_planar_configuration_on_one_sample_image_is_removed(tmp_path: Path) -> None:
    ds = source("CT_small.dcm")
    ds.PlanarConfiguration = 0
    [out] = convert(headerless(ds), source="pc.dcm").datasets
    assert "PlanarConfiguration" not in out
    assert 0x00280006 in _originals(out)
    save(out, tmp_path / "pc.dcm")
    assert dciodvfy_errors(tmp_path / "pc.dcm") == []


@pytest.mark.parametrize(
    ("age", "expected"),
    [("45", "045Y"), ("45Y", "045Y"), ("6 months", "006M"), ("3 W", "003W"), ("10d", "010D")],
)
def test_patient_age_gets_its_unit(age: str, expected: str) -> None:
    ds = source("CT_small.dcm")
    ds.PatientAge = age
    [out] = convert(headerless(ds), source="age.dcm").datasets
    assert out.PatientAge == expected
    assert 0x00101010 in _originals(out)


def test_an_ambiguous_patient_age_is_not_guessed() -> None:
    ds = source("CT_small.dcm")
    ds.PatientAge = "about 40"
    [out] = convert(headerless(ds), source="age.dcm").datasets
    assert not out.PatientAge
    assert 0x00101010 in _originals(out)


def test_empty_type1_values_are_generated_and_the_originals_kept(tmp_path: Path) -> None:
    ds = source("CT_small.dcm")
    ds.SeriesInstanceUID = ""
    ds.PhotometricInterpretation = ""
    [out] = convert(headerless(ds), source="empty.dcm").datasets
    assert out.SeriesInstanceUID and out.PhotometricInterpretation == "MONOCHROME2"
    originals = _originals(out)
    assert 0x0020000E in originals and 0x00280004 in originals
    save(out, tmp_path / "empty.dcm")
    assert dciodvfy_errors(tmp_path / "empty.dcm") == []


def test_an_unexpected_error_while_writing_names_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug cannot be made on purpose from real data: the writer is made to fail instead.
    import bridge.batch

    def broken(path: Path, ds: Dataset, run: str = "") -> None:
        raise AttributeError("a bug in the writer")

    monkeypatch.setattr(bridge.batch, "_write_atomic", broken)
    (tmp_path / "ct.dcm").write_bytes(headerless(source("CT_small.dcm")))
    entry = convert_file(tmp_path / "ct.dcm", tmp_path / "out", ConvertOptions(), False)
    assert entry.status is ConvertStatus.FAILED
    assert "internal error" not in str(entry.error)
    assert str(tmp_path / "ct.dcm") in str(entry.error) and "AttributeError" in str(entry.error)


def test_one_bit_planes_each_start_on_their_own_byte(tmp_path: Path) -> None:
    planes = (np.arange(2 * 3 * 5).reshape(2, 3, 5) % 4 == 1).astype(np.uint16)  # 15 bits each
    elements = [
        e
        for e in header(modality="OT", rows=3, columns=5, geometry=False)
        if e[0] not in (0x00280100, 0x00280101, 0x00280102)
    ]
    elements += [(0x00280100, "u", 1), (0x00280101, "u", 1), (0x00280102, "u", 0)]
    elements += [(0x00280005, "u", 3), (0x00280012, "u", 2)]
    elements += [(0x7FE00010, "b", pack_cells(planes.reshape(-1).tolist(), 1))]
    datasets = convert(encode(elements), source="planes.acr").datasets
    assert len(datasets) == 2
    for index, ds in enumerate(datasets):
        out = save(ds, tmp_path / f"p{index}.dcm")
        assert out.BitsAllocated == 1 and len(out.PixelData) == 2
        np.testing.assert_array_equal(out.pixel_array, planes[index])

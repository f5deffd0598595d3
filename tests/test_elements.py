"""Tests of the element codec, :mod:`bridge.acrnema.elements`.

Following the decoder rule of ``STYLE.md`` (point 7): inputs are fed whole, cut at every
byte boundary and followed by trailing data; Hypothesis round-trips
``decode(encode(x)) == x`` in every syntax; the sample corpus (``../shared/corpus``)
and, when installed, XMedCon's big-endian writer give real-world inputs. Fuzzing of
malformed inputs is in ``test_fuzz_elements.py``.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tracemalloc
import warnings
from datetime import date
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from bridge.acrnema.elements import (
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_BE,
    IMPLICIT_LE,
    MAX_DEPTH,
    ByteOrder,
    Decoded,
    Syntax,
    decode,
    detect_syntax,
    encode,
    format_tag,
    vr_for,
)
from bridge.errors import BridgeError, ConversionError

ALL_SYNTAXES = [IMPLICIT_LE, IMPLICIT_BE, EXPLICIT_LE, EXPLICIT_BE]
IDS = ["implicit-LE", "implicit-BE", "explicit-LE", "explicit-BE"]
PIXEL_DATA = 0x7FE00010
TEXT_VRS = frozenset({"CS", "DA", "DS", "IS", "LO", "PN", "SH"})
WORD_SIZE = {"US": 2, "SS": 2, "UL": 4, "OW": 2, "OF": 4}


# --- helpers --------------------------------------------------------------------------


def _required(variable: str, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail when the environment sets ``variable=1``."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1)")
    pytest.skip(reason)


def corpus_path(name: str) -> Path:
    """A file of the sample corpus; skips (or fails under BRIDGE_REQUIRE_CORPUS=1)."""
    folder = os.environ.get("BRIDGE_CORPUS")
    root = (
        Path(folder) if folder else Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    )
    path = root / name
    if not path.is_file():
        _required("BRIDGE_REQUIRE_CORPUS", f"corpus file {path} is missing")
    return path


def peer_tool(name: str) -> str:
    """The path of a peer program; skips (or fails under BRIDGE_REQUIRE_PEERS=1)."""
    path = shutil.which(name)
    if path is None:
        _required("BRIDGE_REQUIRE_PEERS", f"{name} is not installed")
    return path


def add(ds: Dataset, tag: int, vr: str, value: object) -> None:
    """Add an element without pydicom's warnings about ACR-NEMA value forms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.add_new(tag, vr, value)


def acr_nema_dataset(rows: int = 4, columns: int = 4) -> Dataset:
    """A small ACR-NEMA 2.0 image data set, with the retired elements scanners wrote."""
    ds = Dataset()
    add(ds, 0x00080001, "UL", 0)  # Length to End: encode() fills it in
    add(ds, 0x00080010, "LO", "ACR-NEMA 2.0")
    add(ds, 0x00080020, "DA", "1991.03.14")
    add(ds, 0x00080040, "US", 0)  # Data Set Type
    add(ds, 0x00080060, "CS", "CT")
    add(ds, 0x00080070, "LO", "SIEMENS")
    add(ds, 0x00100010, "PN", "PHANTOM^ACR")
    add(ds, 0x00180050, "DS", "5.0")
    add(ds, 0x00200013, "IS", "7")
    add(ds, 0x00280005, "US", 2)  # Image Dimensions
    add(ds, 0x00280010, "US", rows)
    add(ds, 0x00280011, "US", columns)
    add(ds, 0x00280100, "US", 16)
    add(ds, 0x00280101, "US", 12)
    add(ds, 0x00280102, "US", 11)
    add(ds, 0x00280103, "US", 0)
    add(ds, 0x00280200, "US", 0x7FE0)  # Image Location
    pixels = (np.arange(rows * columns, dtype="<u2") * 257 + 1) & 0x0FFF
    add(ds, PIXEL_DATA, "OW", pixels.astype("<u2").tobytes())
    return ds


def values(ds: Dataset) -> dict[int, object]:
    """Top-level values by tag, without group lengths and Length to End.

    An empty binary value is None, as pydicom reads it.
    """
    return {
        int(e.tag): None if e.value == b"" else e.value
        for e in ds
        if e.tag.element != 0 and int(e.tag) != 0x00080001
    }


def offset_of(decoded: Decoded, tag: int) -> int:
    """Where the element ``tag`` starts in the decoded input."""
    return next(e.offset for e in decoded.elements if e.tag == tag)


def set_length(data: bytes, decoded: Decoded, tag: int, length: int) -> bytes:
    """``data`` with the 32-bit length field of the implicit-VR element ``tag`` replaced."""
    assert decoded.syntax.implicit_vr
    at = offset_of(decoded, tag) + 4
    return data[:at] + struct.pack(decoded.syntax.prefix + "L", length) + data[at + 4 :]


def assert_error(
    data: bytes, tag: int | None, offset: int, source: str = "bad.acr"
) -> ConversionError:
    """``decode`` must raise a ConversionError naming ``source``, ``tag`` and ``offset``."""
    with pytest.raises(ConversionError) as info:
        decode(data, source=source)
    error = info.value
    assert (error.source, error.tag, error.offset) == (source, tag, offset), str(error)
    message = str(error)
    assert message.startswith(source)
    assert f"offset {offset}" in message
    if tag is not None:
        assert format_tag(tag) in message
    return error


def swapped(value: bytes, size: int) -> bytes:
    """Each ``size``-byte word of ``value`` reversed (written independently of the code)."""
    return b"".join(value[i : i + size][::-1] for i in range(0, len(value), size))


def pydicom_headerless(ds: Dataset, syntax: Syntax) -> bytes:
    """``ds`` as pydicom writes a data set with no preamble and no meta."""
    fp = DicomBytesIO()
    fp.is_little_endian = syntax.little_endian
    fp.is_implicit_VR = syntax.implicit_vr
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


# --- vr_for and detection -------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "pixel_representation", "vr"),
    [
        (0x00080000, 0, "UL"),  # group length
        (0x00080010, 0, "LO"),  # Recognition Code: ACR-NEMA table, not pydicom's CS
        (0x00080040, 0, "US"),  # Data Set Type
        (0x00280005, 0, "US"),  # Image Dimensions
        (0x00280104, 0, "US"),  # Smallest Valid Pixel Value, "xs"
        (0x00280104, 1, "SS"),
        (0x00280106, 1, "SS"),  # pydicom's "US or SS"
        (0x00100010, 0, "PN"),
        (PIXEL_DATA, 0, "OW"),  # "OB or OW"
        (0x00090010, 0, "LO"),  # private creator
        (0x00091010, 0, "UN"),  # private element
        (0x00081234, 0, "UN"),  # not in any dictionary
        (0x60003000, 0, "OW"),  # Overlay Data, a repeater
    ],
)
def test_vr_for(tag: int, pixel_representation: int, vr: str) -> None:
    assert vr_for(tag, pixel_representation) == vr


@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=IDS)
def test_detect_syntax(syntax: Syntax) -> None:
    data = encode(acr_nema_dataset(), syntax)
    assert detect_syntax(data) == syntax
    order = "little" if syntax.little_endian else "big"
    assert detect_syntax(data, 0, order) == syntax  # a plain string works too
    assert detect_syntax(data, 0, ByteOrder(order)) == syntax


@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=IDS)
@pytest.mark.parametrize("group_lengths", [True, False])
def test_decode_each_syntax(syntax: Syntax, group_lengths: bool) -> None:
    ds = acr_nema_dataset()
    data = encode(ds, syntax, group_lengths=group_lengths)
    decoded = decode(data, source="phantom.acr")
    assert decoded.syntax == syntax
    assert decoded.warnings == []
    assert decoded.kind == "ACR-NEMA 2.0"
    assert (decoded.source, decoded.start, decoded.preamble) == ("phantom.acr", 0, False)
    assert decoded.file_meta is None
    assert values(decoded.dataset) == values(ds)
    assert decoded.elements[-1].end == len(data)


def test_byte_order_override() -> None:
    ds = acr_nema_dataset()
    little, big = encode(ds, IMPLICIT_LE), encode(ds, IMPLICIT_BE)
    assert decode(little, byte_order="little").syntax == IMPLICIT_LE
    assert decode(big, byte_order=ByteOrder.BIG).syntax == IMPLICIT_BE
    assert decode(big, byte_order="auto").syntax == IMPLICIT_BE
    with pytest.raises(ConversionError):
        decode(big, byte_order="little")
    with pytest.raises(ConversionError):
        decode(little, byte_order="big")
    with pytest.raises(ValueError, match="sideways"):
        decode(little, byte_order="sideways")


def test_detection_breaks_ties_with_named_tags() -> None:
    """Empty elements walk in either byte order; the tags the standard names decide."""
    ds = Dataset()
    add(ds, 0x00100010, "PN", "")
    add(ds, 0x00100020, "LO", "")
    data = encode(ds, IMPLICIT_BE, group_lengths=False)
    assert decode(data).syntax == IMPLICIT_BE
    assert decode(data, byte_order="big").syntax == IMPLICIT_BE
    with pytest.raises(ConversionError):
        decode(data, byte_order="little")


# --- headerless DICOM and Part 10 files written by pydicom ----------------------------


def dicom_dataset() -> Dataset:
    ds = Dataset()
    add(ds, 0x00080016, "UI", SecondaryCaptureImageStorage)
    add(ds, 0x00080018, "UI", "1.2.826.0.1.3680043.8.498.1")
    add(ds, 0x00080060, "CS", "OT")
    add(ds, 0x00100010, "PN", "DOE^JANE")
    add(ds, 0x00180050, "DS", "2.5")
    add(ds, 0x00181030, "LO", "HEAD")
    add(ds, 0x00200013, "IS", "3")
    add(ds, 0x00280002, "US", 1)
    add(ds, 0x00280010, "US", 2)
    add(ds, 0x00280011, "US", 2)
    add(ds, 0x00280100, "US", 16)
    add(ds, 0x00280103, "US", 1)
    add(ds, 0x00281050, "DS", ["40", "-20.5"])
    add(ds, PIXEL_DATA, "OW", b"\x01\x02\x03\x04\x05\x06\x07\x08")
    return ds


@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=IDS)
def test_headerless_dicom_written_by_pydicom(syntax: Syntax) -> None:
    ds = dicom_dataset()
    item = Dataset()
    add(item, 0x00081150, "UI", SecondaryCaptureImageStorage)
    add(item, 0x00081155, "UI", "1.2.3.4")
    ds.add_new(0x00081140, "SQ", Sequence([item, item]))  # defined length
    ds.add_new(0x00082112, "SQ", Sequence([item]))
    ds[0x00082112].is_undefined_length = True
    decoded = decode(pydicom_headerless(ds, syntax), source="headerless.dcm")
    assert decoded.syntax == syntax
    assert decoded.kind == "headerless DICOM"
    assert decoded.warnings == []
    # pydicom writes OW bytes as they are; they come back in little-endian order.
    expected = values(ds)
    if not syntax.little_endian:
        expected[PIXEL_DATA] = swapped(ds.PixelData, 2)
    assert values(decoded.dataset) == expected
    assert decoded.dataset[0x00082112].value[0].ReferencedSOPInstanceUID == "1.2.3.4"


@pytest.mark.parametrize(
    ("transfer_syntax", "syntax"),
    [
        (ImplicitVRLittleEndian, IMPLICIT_LE),
        (ExplicitVRLittleEndian, EXPLICIT_LE),
        (ExplicitVRBigEndian, EXPLICIT_BE),
    ],
)
def test_part10_file_with_preamble(tmp_path: Path, transfer_syntax: UID, syntax: Syntax) -> None:
    ds = dicom_dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    path = tmp_path / "part10.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()

    decoded = decode(data, source=str(path))
    assert decoded.preamble
    assert decoded.kind == "DICOM Part 10"
    assert decoded.syntax == syntax
    assert decoded.file_meta is not None
    assert decoded.file_meta.TransferSyntaxUID == transfer_syntax
    assert decoded.start > 132
    expected = values(ds)
    if not syntax.little_endian:
        expected[PIXEL_DATA] = swapped(ds.PixelData, 2)
    assert values(decoded.dataset) == expected
    # Byte order is the meta's to say, whatever the override.
    assert decode(data, byte_order="big").syntax == syntax

    # The same without the preamble ("DICM" first), and without "DICM" too.
    bare = decode(data[128:])
    assert (bare.preamble, bare.kind, bare.syntax) == (False, "DICOM (meta, no preamble)", syntax)
    assert values(decode(data[132:]).dataset) == expected


def test_encapsulated_pixel_data_is_walked_as_fragments() -> None:
    ds = dicom_dataset()
    fragments = encapsulate([b"\xff\xd8 frame one \xff\xd9", b"\xff\xd8 frame 2 \xff\xd9"])
    ds.add_new(PIXEL_DATA, "OB", fragments)
    ds[PIXEL_DATA].is_undefined_length = True
    decoded = decode(pydicom_headerless(ds, EXPLICIT_LE))
    assert decoded.dataset.PixelData == fragments
    assert decoded.dataset[PIXEL_DATA].is_undefined_length


def test_explicit_un_with_undefined_length_is_an_implicit_le_sequence() -> None:
    """PS3.5 6.2.2: the items of an undefined-length UN are implicit VR little endian."""
    uid = b"1.2.3.4\x00"
    item = struct.pack("<HHL", 0x0008, 0x1155, len(uid)) + uid
    un = (
        struct.pack("<HH2sHL", 0x0008, 0x1140, b"UN", 0, 0xFFFFFFFF)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )
    head = pydicom_headerless(dicom_dataset(), EXPLICIT_LE)
    split = next(e.offset for e in decode(head).elements if e.tag > 0x00081140)
    decoded = decode(head[:split] + un + head[split:])
    assert decoded.syntax == EXPLICIT_LE
    sequence = decoded.dataset[0x00081140]
    assert sequence.VR == "SQ"
    assert sequence.value[0].ReferencedSOPInstanceUID == "1.2.3.4"


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, EXPLICIT_BE], ids=["LE", "BE"])
def test_float_words_are_swapped_like_ow(syntax: Syntax) -> None:
    ds = dicom_dataset()
    floats = np.array([1.5, -2.25, 3.0], dtype="<f4").tobytes()
    add(ds, 0x00640009, "OF", floats)  # Vector Grid Data
    data = encode(ds, syntax)
    decoded = decode(data)
    assert decoded.dataset[0x00640009].value == floats
    wire = next(e for e in decoded.elements if e.tag == 0x00640009).value
    assert wire == (floats if syntax.little_endian else swapped(floats, 4))


# --- encode ---------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=IDS)
def test_encode_writes_group_lengths_and_length_to_end(syntax: Syntax) -> None:
    data = encode(acr_nema_dataset(), syntax)
    decoded = decode(data)
    assert decoded.warnings == []  # every group length and the Length to End agree
    ds = decoded.dataset
    lte = next(e for e in decoded.elements if e.tag == 0x00080001)
    assert ds[0x00080001].value == len(data) - lte.end
    groups = {e.tag >> 16 for e in decoded.elements}
    assert all(group << 16 in ds for group in groups)


def test_encode_length_to_end_alone_in_its_group() -> None:
    ds = Dataset()
    add(ds, 0x00080001, "UL", 0)
    add(ds, 0x00100010, "PN", "DOE^JOHN")
    for group_lengths in (True, False):
        data = encode(ds, IMPLICIT_LE, group_lengths=group_lengths)
        decoded = decode(data)
        assert decoded.warnings == []
        lte = decoded.elements[1 if group_lengths else 0]
        assert lte.tag == 0x00080001 and lte.end == (24 if group_lengths else 12)
        assert decoded.dataset[0x00080001].value == len(data) - lte.end


def test_encode_without_group_lengths_drops_them() -> None:
    ds = acr_nema_dataset()
    add(ds, 0x00280000, "UL", 12345)  # stale: never written as it is
    decoded = decode(encode(ds, IMPLICIT_LE, group_lengths=False))
    assert not any(e.tag & 0xFFFF == 0 for e in decoded.elements)


# --- round trips (Hypothesis) ---------------------------------------------------------


def _text(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, max_size=max_size).filter(lambda s: s == s.strip(" "))


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LO = _UPPER + _UPPER.lower() + "0123456789 .,-_()/"
_names = _text(_UPPER + _UPPER.lower() + " -", 12).filter(lambda s: "  " not in s)
_decimals = st.builds(
    lambda n, places: f"{n / 10**places:.{places}f}",
    st.integers(-999_999, 999_999),
    st.integers(0, 4),
)
VALUES: dict[str, st.SearchStrategy[object]] = {
    "US": st.integers(0, 0xFFFF),
    "SS": st.integers(-0x8000, 0x7FFF),
    "UL": st.integers(0, 0xFFFFFFFF),
    "DS": st.one_of(_decimals, st.lists(_decimals, min_size=2, max_size=3)),
    "IS": st.integers(-(2**31), 2**31 - 1).map(str),
    "LO": _text(_LO, 64),
    "SH": _text(_LO, 16),
    "CS": _text(_UPPER + "0123456789_ ", 16),
    "DA": st.dates(date(1900, 1, 1), date(2099, 12, 31)).map(lambda d: d.strftime("%Y%m%d")),
    "PN": st.builds(lambda family, given: f"{family}^{given}".rstrip("^"), _names, _names),
    "OW": st.binary(max_size=64).map(lambda b: b[: len(b) & ~1]),
}
# Realistic tags of ACR-NEMA and early DICOM images, with the VR vr_for() gives them.
TAGS: dict[int, str] = {
    0x00080010: "LO",  # Recognition Code
    0x00080020: "DA",
    0x00080040: "US",  # Data Set Type
    0x00080050: "SH",
    0x00080060: "CS",
    0x00080070: "LO",
    0x00080090: "PN",
    0x00100010: "PN",
    0x00100020: "LO",
    0x00100030: "DA",
    0x00100040: "CS",
    0x00180050: "DS",
    0x00189219: "SS",  # Tag Angle Second Axis
    0x00200010: "SH",
    0x00200011: "IS",
    0x00200013: "IS",
    0x00200032: "DS",
    0x00280005: "US",  # Image Dimensions
    0x00280010: "US",
    0x00280011: "US",
    0x00280030: "DS",
    0x00280100: "US",
    0x00280200: "US",  # Image Location
    0x00289001: "UL",  # Data Point Rows
    0x00281201: "OW",  # Red Palette Color Lookup Table Data
    PIXEL_DATA: "OW",
}


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    tags = draw(st.lists(st.sampled_from(sorted(TAGS)), min_size=1, max_size=12, unique=True))
    ds = Dataset()
    for tag in tags:
        add(ds, tag, TAGS[tag], draw(VALUES[TAGS[tag]]))
    return ds


def test_strategy_tags_have_the_decoder_vr() -> None:
    assert {tag: vr_for(tag) for tag in TAGS} == TAGS


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ds=datasets(), syntax=st.sampled_from(ALL_SYNTAXES), group_lengths=st.booleans())
def test_round_trip(ds: Dataset, syntax: Syntax, group_lengths: bool) -> None:
    data = encode(ds, syntax, group_lengths=group_lengths)
    order = "little" if syntax.little_endian else "big"
    decoded = decode(data, byte_order=order)
    assert decoded.syntax == syntax
    assert values(decoded.dataset) == values(ds)
    assert {int(e.tag): e.VR for e in decoded.dataset if e.tag.element} == {
        int(e.tag): e.VR for e in ds
    }
    if group_lengths:  # a group length on the wire makes detection certain
        assert decode(data).syntax == syntax


@settings(max_examples=100, deadline=None, derandomize=True)
@given(ds=datasets())
def test_big_endian_swaps_binary_values_never_strings(ds: Dataset) -> None:
    little = decode(encode(ds, IMPLICIT_LE), byte_order="little")
    big = decode(encode(ds, IMPLICIT_BE), byte_order="big")
    wire_le = {e.tag: e.value for e in little.elements}
    wire_be = {e.tag: e.value for e in big.elements}
    for element in ds:
        tag, vr = int(element.tag), element.VR
        if vr in TEXT_VRS:
            assert wire_be[tag] == wire_le[tag]
        else:
            assert wire_be[tag] == swapped(wire_le[tag], WORD_SIZE[vr])
    # OW values come back in little-endian order from either input.
    for element in ds:
        if element.VR == "OW":
            assert little.dataset[element.tag].value == (element.value or None)
            assert big.dataset[element.tag].value == (element.value or None)


# --- whole, cut at every byte, with trailing data -------------------------------------


@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=IDS)
def test_every_prefix_decodes_or_raises(syntax: Syntax) -> None:
    data = encode(acr_nema_dataset(rows=2, columns=3), syntax)
    whole = values(decode(data).dataset)
    boundaries = {e.end for e in decode(data).elements}
    for size in range(len(data)):
        try:
            decoded = decode(data[:size], source="prefix")
        except ConversionError as error:
            assert error.source == "prefix"
            assert error.offset is not None and error.offset <= size
            assert size < 8 or error.tag is not None or size - error.offset < 4
            continue
        # Only a cut between elements decodes, and to the elements before the cut.
        assert size in boundaries
        assert decoded.syntax == syntax
        got = values(decoded.dataset)
        assert got == {tag: whole[tag] for tag in got}


@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=IDS)
@pytest.mark.parametrize(
    "tail",
    [
        b"\x00",
        b"\x00\x00\x00",
        bytes(8),
        bytes(11),
        b"\xff" * 16,
        b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",  # an item delimiter, little endian
        b"\xff\xfe\xe0\x0d\x00\x00\x00\x00",  # the same, big endian
        b"garbage after the pixels",
        bytes(range(256)),
    ],
)
def test_trailing_data(syntax: Syntax, tail: bytes) -> None:
    data = encode(acr_nema_dataset(), syntax)
    try:
        decoded = decode(data + tail, source="tail.acr")
    except ConversionError as error:
        assert error.offset is not None and error.offset >= len(data), str(error)
        return
    whole = values(decode(data).dataset)
    assert {tag: values(decoded.dataset).get(tag) for tag in whole} == whole
    assert decoded.warnings  # the trailing element is out of order or breaks a length


# --- bad input ------------------------------------------------------------------------


@pytest.fixture(params=[IMPLICIT_LE, IMPLICIT_BE], ids=["LE", "BE"])
def acr(request: pytest.FixtureRequest) -> tuple[bytes, Decoded]:
    data = encode(acr_nema_dataset(), request.param)
    return data, decode(data)


def test_length_past_the_end(acr: tuple[bytes, Decoded]) -> None:
    data, decoded = acr
    offset = offset_of(decoded, 0x00100010)
    error = assert_error(set_length(data, decoded, 0x00100010, 1000), 0x00100010, offset)
    assert "runs past the end" in error.reason


def test_odd_length(acr: tuple[bytes, Decoded]) -> None:
    data, decoded = acr
    offset = offset_of(decoded, 0x00100010)
    error = assert_error(set_length(data, decoded, 0x00100010, 11), 0x00100010, offset)
    assert "odd" in error.reason


@pytest.mark.parametrize("length", [0xFFFFFFF0, 0x7FFFFFFE, 0x80000000])
def test_absurd_length(acr: tuple[bytes, Decoded], length: int) -> None:
    data, decoded = acr
    offset = offset_of(decoded, PIXEL_DATA)
    assert_error(set_length(data, decoded, PIXEL_DATA, length), PIXEL_DATA, offset)


def test_truncated_pixel_data(acr: tuple[bytes, Decoded]) -> None:
    data, decoded = acr
    offset = offset_of(decoded, PIXEL_DATA)
    error = assert_error(data[:-10], PIXEL_DATA, offset)
    assert "22 bytes left" in error.reason


def test_truncated_header(acr: tuple[bytes, Decoded]) -> None:
    data, decoded = acr
    offset = offset_of(decoded, PIXEL_DATA)
    error = assert_error(data[: offset + 6], PIXEL_DATA, offset)
    assert "cut off" in error.reason
    assert_error(data[: offset + 2], None, offset)  # not even the tag is there


def test_explicit_long_header_cut_off() -> None:
    data = encode(acr_nema_dataset(), EXPLICIT_LE)
    decoded = decode(data)
    offset = next(e.offset for e in decoded.elements if e.tag == PIXEL_DATA)
    assert_error(data[: offset + 10], PIXEL_DATA, offset)  # OW header has 12 bytes


@pytest.mark.parametrize("data", [b"", b"\x08", b"\x08\x00\x10\x00\x02\x00\x00"])
def test_too_short(data: bytes) -> None:
    assert_error(data, None, 0)


@pytest.mark.parametrize(
    "data",
    [
        b"\x13\x37" * 50,
        b"This is a text file, not an ACR-NEMA data set.\n" * 3,
        bytes(range(256)),
        b"\xff" * 64,
    ],
)
def test_garbage(data: bytes) -> None:
    with pytest.raises(ConversionError) as info:
        decode(data, source="junk.bin")
    error = info.value
    assert error.source == "junk.bin" and str(error).startswith("junk.bin")
    assert error.tag is not None and error.offset is not None
    assert format_tag(error.tag) in str(error)


def test_zeros_are_not_a_data_set() -> None:
    assert_error(bytes(64), 0x00000000, 0)


def test_unknown_tags_are_not_a_data_set() -> None:
    data = b"".join(struct.pack("<HHL", 0x1234, 0x5678 + i, 2) + b"ab" for i in range(8))
    error = assert_error(data, 0x12345678, 0)
    assert "not an ACR-NEMA or DICOM data set" in error.reason


def test_item_delimiter_in_the_data_set(acr: tuple[bytes, Decoded]) -> None:
    """The walk must not stop quietly at an item delimiter and drop what follows."""
    data, decoded = acr
    offset = offset_of(decoded, 0x00280010)
    fmt = decoded.syntax.prefix + "HHL"
    bad = data[:offset] + struct.pack(fmt, 0xFFFE, 0xE00D, 0) + data[offset:]
    assert_error(bad, 0xFFFEE00D, offset)


def test_undefined_length_on_a_plain_explicit_element() -> None:
    data = encode(dicom_dataset(), EXPLICIT_LE)
    offset = next(e.offset for e in decode(data).elements if e.tag == PIXEL_DATA)
    bad = data[:offset] + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"UT", 0, 0xFFFFFFFF)
    error = assert_error(bad + data[offset + 12 :], PIXEL_DATA, offset + 12)
    assert "undefined length on a UT" in error.reason


def test_sequence_without_delimiter() -> None:
    head = encode(dicom_dataset(), IMPLICIT_LE)
    sq = struct.pack("<HHL", 0x0040, 0x0275, 0xFFFFFFFF)  # Request Attributes Sequence
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    error = assert_error(head + sq + item, 0x00400275, len(head) + 16)
    assert "item delimiter" in error.reason
    error = assert_error(head + sq, 0x00400275, len(head) + 8)
    assert "sequence delimiter" in error.reason


def test_nesting_deeper_than_max_depth() -> None:
    sq = struct.pack("<HHL", 0x0040, 0x0275, 0xFFFFFFFF)
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    head = encode(dicom_dataset(), IMPLICIT_LE)
    data = head + (sq + item) * (MAX_DEPTH + 1)
    error = assert_error(data, 0x00400275, len(head) + (MAX_DEPTH + 1) * 16 - 8)
    assert "nested deeper" in error.reason


def test_value_pydicom_cannot_read() -> None:
    """An FD value of 4 bytes walks fine but is no float64: a ConversionError."""
    data = encode(dicom_dataset(), EXPLICIT_LE)
    bad = data + struct.pack("<HH2sH", 0x0018, 0x9087, b"FD", 4) + bytes(4)  # b-value
    with pytest.raises(ConversionError) as info:
        decode(bad, source="fd.dcm")
    assert info.value.tag == 0x00189087
    assert info.value.offset == len(data) + 8
    assert "cannot decode the FD value" in info.value.reason


@pytest.mark.parametrize(
    ("uid", "words"),
    [
        (DeflatedExplicitVRLittleEndian.encode(), "deflated"),
        (b"1.2.3.4.5.6.7.8.9", "unknown transfer syntax"),
        (b"1.2.840.10008.1.2\\1.2.840.10008.1.2.1", "is not one UID"),
    ],
)
def test_bad_transfer_syntax(uid: bytes, words: str) -> None:
    uid += b"\x00" * (len(uid) & 1)
    meta = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(uid)) + uid
    data = bytes(128) + b"DICM" + meta + encode(dicom_dataset(), IMPLICIT_LE)
    error = assert_error(data, 0x00020010, 132, source="meta.dcm")
    assert words in error.reason


def test_file_meta_without_transfer_syntax_detects() -> None:
    uid = b"1.2.3.4\x00"
    meta = struct.pack("<HH2sH", 0x0002, 0x0003, b"UI", len(uid)) + uid
    data = bytes(128) + b"DICM" + meta + encode(dicom_dataset(), IMPLICIT_BE)
    decoded = decode(data)
    assert decoded.syntax == IMPLICIT_BE
    assert decoded.start == 132 + len(meta)
    assert decoded.file_meta is not None
    assert decoded.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4"
    assert any("no Transfer Syntax UID" in note for note in decoded.warnings)


def test_conversion_error_is_a_bridge_error() -> None:
    with pytest.raises(BridgeError):
        decode(b"", source="empty")


def test_absurd_length_allocates_nothing_large() -> None:
    ds = Dataset()
    add(ds, 0x00080010, "LO", "ACR-NEMA 2.0")
    add(ds, 0x00100010, "PN", "A^B")
    add(ds, 0x00280010, "US", 512)
    head = encode(ds, IMPLICIT_LE)
    data = head + struct.pack("<HHL", 0x7FE0, 0x0010, 0xFFFFFFF0)
    data += bytes(100 - len(data))
    assert len(data) == 100
    with pytest.raises(ConversionError):
        decode(data)  # warm up: imports and caches outside the measurement
    tracemalloc.start()
    try:
        with pytest.raises(ConversionError) as info:
            decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.tag == PIXEL_DATA and info.value.offset == len(head)
    assert peak < 2 * 1024 * 1024


# --- the sample corpus ----------------------------------------------------------------

CORPUS = {
    "r01_CT-MONO2-12-lomb-an2_acrnema2_LE.acr": IMPLICIT_LE,
    "r02_MR-MONO2-12-an2_vision_nometa_LE.dcm": IMPLICIT_LE,
    "r03_OT-MONO2-8-a7_nometa_LE.dcm": IMPLICIT_LE,
    "r04_PT-Philips-PrivateMDNTags_nometa_LE.dcm": IMPLICIT_LE,
    "r05_pydicom_ExplVR_BigEndNoMeta.dcm": EXPLICIT_BE,
    "r06_pydicom_ExplVR_LitEndNoMeta.dcm": EXPLICIT_LE,
    "m01_MR-MONO2-12-angio-an1_acrnema1_LE_packed12.acr": IMPLICIT_LE,
    "m02_CR-MONO1-10-chest_fuji1995_nometa_LE.dcm": IMPLICIT_LE,
    "d01_CT-lomb_xmedcon-acr_LE.ima": IMPLICIT_LE,
}
GROUP_LENGTH_WARNINGS = {
    "r01_CT-MONO2-12-lomb-an2_acrnema2_LE.acr": "group length (0008,0000) says 366 bytes",
    "m01_MR-MONO2-12-angio-an1_acrnema1_LE_packed12.acr": "group length (0008,0000) says 190",
}


@pytest.mark.corpus
def test_corpus_list_matches_the_manifest() -> None:
    manifest = corpus_path("MANIFEST.md").read_text(encoding="utf-8")
    listed = {line.split("`")[1] for line in manifest.splitlines() if line.startswith("| `")}
    assert listed == set(CORPUS)


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_file_decodes(name: str) -> None:
    path = corpus_path(name)
    data = path.read_bytes()
    decoded = decode(data, source=name)
    assert decoded.syntax == CORPUS[name]
    assert decoded.elements[-1].end == len(data)
    group_warnings = [w for w in decoded.warnings if w.startswith("group length")]
    if name in GROUP_LENGTH_WARNINGS:
        assert len(group_warnings) == 1
        assert group_warnings[0].startswith(GROUP_LENGTH_WARNINGS[name])
    else:
        assert group_warnings == []
    if name.startswith(("r01", "d01")):
        assert decoded.kind == "ACR-NEMA 2.0"
    if name.startswith("m01"):
        assert decoded.kind == "ACR-NEMA 1.0"
        assert len(decoded.dataset.PixelData) == 98304  # 256 x 256 packed 12-bit cells


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_big_endian_twin(name: str) -> None:
    decoded = decode(corpus_path(name).read_bytes(), source=name)
    big = encode(decoded.dataset, IMPLICIT_BE)
    twin = decode(big, source=f"{name} (big endian)")
    assert twin.syntax == IMPLICIT_BE
    assert twin.warnings == []
    assert values(twin.dataset) == values(decoded.dataset)
    if PIXEL_DATA in decoded.dataset:
        assert twin.dataset.PixelData == decoded.dataset.PixelData
        assert big != encode(decoded.dataset, IMPLICIT_LE)


@pytest.mark.corpus
def test_corpus_explicit_big_and_little_are_the_same_data_set() -> None:
    big = decode(corpus_path("r05_pydicom_ExplVR_BigEndNoMeta.dcm").read_bytes())
    little = decode(corpus_path("r06_pydicom_ExplVR_LitEndNoMeta.dcm").read_bytes())
    assert values(big.dataset) == values(little.dataset)


@pytest.mark.corpus
def test_corpus_small_file_cut_at_every_byte() -> None:
    data = corpus_path("r05_pydicom_ExplVR_BigEndNoMeta.dcm").read_bytes()
    for size in range(len(data)):
        try:
            decoded = decode(data[:size])
        except ConversionError:
            continue
        assert decoded.syntax == EXPLICIT_BE


@pytest.mark.corpus
@pytest.mark.peers
def test_medcon_big_endian_acr_nema(tmp_path: Path) -> None:
    medcon = peer_tool("medcon")
    source = corpus_path("r01_CT-MONO2-12-lomb-an2_acrnema2_LE.acr")
    twin = decode(corpus_path("d01_CT-lomb_xmedcon-acr_LE.ima").read_bytes())
    result = subprocess.run(
        [medcon, "-f", str(source), "-c", "acr", "-big", "-o", "big", "-w"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    written = sorted(tmp_path.glob("*.ima"))
    assert result.returncode == 0 and written, result.stdout + result.stderr
    decoded = decode(written[0].read_bytes(), source=written[0].name)
    assert decoded.syntax == IMPLICIT_BE
    assert decoded.kind == "ACR-NEMA 2.0"
    assert (decoded.dataset.Rows, decoded.dataset.Columns) == (512, 512)
    assert decoded.dataset.PixelData == twin.dataset.PixelData

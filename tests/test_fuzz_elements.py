"""Fuzzing of :func:`bridge.acrnema.elements.decode`: only ConversionError may escape.

Inputs are arbitrary bytes, element streams built from a small alphabet of headers
(items, delimiters, sequences, undefined and absurd lengths), and valid encodings with
bytes flipped, inserted or deleted and length fields overwritten. Whatever the input,
``decode`` returns a data set that accounts for every byte or raises ConversionError
naming the source and an offset inside the input, and it does so quickly: a Hypothesis
deadline catches slow inputs and a SIGALRM watchdog turns a hang into a failure.

Runs are derandomized so CI sees the same examples every time. For a deeper search set
``BRIDGE_FUZZ_EXAMPLES`` (for example 20000): each test then draws that many fresh random
examples.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from bridge.acrnema.elements import (
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_BE,
    IMPLICIT_LE,
    Decoded,
    Syntax,
    decode,
    encode,
)
from bridge.errors import ConversionError

SOURCE = "fuzz.acr"
HANG_S = 5.0
ORDERS = ["auto", "little", "big"]
_DEEP = os.environ.get("BRIDGE_FUZZ_EXAMPLES")


def fuzz(max_examples: int) -> settings:
    """Settings of one fuzz test: fast and repeatable unless BRIDGE_FUZZ_EXAMPLES is set."""
    return settings(
        max_examples=int(_DEEP) if _DEEP else max_examples,
        derandomize=not _DEEP,
        database=None,
        deadline=timedelta(milliseconds=750),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(Exception):
    """decode() ran longer than the watchdog allows."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""
    if not hasattr(signal, "setitimer"):  # no SIGALRM: the Hypothesis deadline only
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"decode() still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(data: bytes, byte_order: str = "auto") -> Decoded | None:
    """Decode ``data``: a data set accounting for every byte, or a ConversionError."""
    with watchdog(HANG_S):
        try:
            decoded = decode(data, source=SOURCE, byte_order=byte_order)
        except ConversionError as error:
            assert error.source == SOURCE
            assert str(error).startswith(SOURCE)
            assert error.offset is not None and 0 <= error.offset <= len(data), str(error)
            assert error.tag is None or 0 <= error.tag <= 0xFFFFFFFF
            return None
    # The elements tile the input from the start of the data set to the end.
    assert decoded.elements
    assert decoded.elements[0].offset == decoded.start
    for before, after in zip(decoded.elements, decoded.elements[1:], strict=False):
        assert before.end == after.offset
    assert decoded.elements[-1].end == len(data)
    # Every value, nested ones included, is already converted: reading them cannot fail.
    for element in decoded.dataset.iterall():
        assert element.VR and (element.value is None or element.value == element.value)
    assert isinstance(decoded.kind, str)
    return decoded


# --- seeds: valid encodings to mutate -------------------------------------------------


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    length_fields: tuple[tuple[int, int], ...]  # (position, width in bytes)


def _image() -> Dataset:
    ds = Dataset()
    ds.add_new(0x00080001, "UL", 0)
    ds.add_new(0x00080010, "LO", "ACR-NEMA 2.0")
    ds.add_new(0x00080060, "CS", "MR")
    ds.add_new(0x00100010, "PN", "FUZZ^ME")
    ds.add_new(0x00180050, "DS", "1.5")
    ds.add_new(0x00200013, "IS", "4")
    ds.add_new(0x00280010, "US", 2)
    ds.add_new(0x00280011, "US", 2)
    ds.add_new(0x00280100, "US", 16)
    ds.add_new(0x00280103, "US", 1)
    ds.add_new(0x00280104, "SS", -5)  # "xs": SS because Pixel Representation is 1
    ds.add_new(0x7FE00010, "OW", bytes(range(8)))
    return ds


def _with_sequences() -> Dataset:
    ds = _image()
    item = Dataset()
    item.add_new(0x00081150, "UI", SecondaryCaptureImageStorage)
    item.add_new(0x00081155, "UI", "1.2.3.4")
    inner = Dataset()
    inner.add_new(0x00100020, "LO", "ID")
    item.add_new(0x00400275, "SQ", Sequence([inner]))
    item[0x00400275].is_undefined_length = True
    ds.add_new(0x00081140, "SQ", Sequence([item, Dataset()]))
    ds.add_new(0x00082112, "SQ", Sequence([item]))
    ds[0x00082112].is_undefined_length = True
    return ds


def _headerless(ds: Dataset, syntax: Syntax) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = syntax.little_endian
    fp.is_implicit_VR = syntax.implicit_vr
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def _part10() -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.4.5")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(bytes(128) + b"DICM")
    write_file_meta_info(fp, meta)
    return bytes(fp.getvalue()) + _headerless(_with_sequences(), EXPLICIT_LE)


def _encapsulated() -> bytes:
    ds = _image()
    ds.add_new(0x7FE00010, "OB", encapsulate([b"\xff\xd8one\xff\xd9", b"\xff\xd8two!\xff\xd9"]))
    ds[0x7FE00010].is_undefined_length = True
    return _headerless(ds, EXPLICIT_LE)


def _seed(name: str, data: bytes) -> Seed:
    decoded = decode(data)  # every seed must be valid
    fields: list[tuple[int, int]] = []
    explicit = not decoded.syntax.implicit_vr
    for element in decoded.elements:
        short = explicit and element.value_offset - element.offset == 8
        fields.append((element.value_offset - (2 if short else 4), 2 if short else 4))
    # Items and delimiters inside sequences, found by their tag bytes.
    for marker in (b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0", b"\xff\xfe\xe0\x00"):
        start = data.find(marker)
        while start >= 0:
            fields.append((start + 4, 4))
            start = data.find(marker, start + 1)
    return Seed(name, data, tuple(sorted(set(fields))))


SEEDS = [
    _seed("acr implicit LE", encode(_image(), IMPLICIT_LE)),
    _seed("acr implicit BE", encode(_image(), IMPLICIT_BE)),
    _seed("acr explicit LE", encode(_image(), EXPLICIT_LE)),
    _seed("acr explicit BE", encode(_image(), EXPLICIT_BE)),
    _seed("sequences implicit LE", _headerless(_with_sequences(), IMPLICIT_LE)),
    _seed("sequences explicit BE", _headerless(_with_sequences(), EXPLICIT_BE)),
    _seed("part 10", _part10()),
    _seed("encapsulated", _encapsulated()),
]

INTERESTING_LENGTHS = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFF0,
    0xFFFFFFFE,
    0xFFFFFFFF,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed.data)
    little = not seed.name.endswith("BE")
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "byte", "insert", "delete", "length", "cut"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "cut":
            del data[at:]
        else:
            position, width = draw(st.sampled_from(seed.length_fields))
            value = draw(st.one_of(st.sampled_from(INTERESTING_LENGTHS), st.integers(0, 2**32 - 1)))
            value &= (1 << (8 * width)) - 1
            data[position : position + width] = value.to_bytes(width, "little" if little else "big")
    return bytes(data)


# --- element streams from a small alphabet --------------------------------------------

_TOKENS = [
    (0x00080000, "UL"),
    (0x00080010, "LO"),
    (0x00100010, "PN"),
    (0x00280010, "US"),
    (0x00280103, "US"),
    (0x00280104, "SS"),
    (0x00081140, "SQ"),
    (0x00400275, "SQ"),
    (0x00091010, "UN"),
    (0x00189087, "FD"),
    (0x7FE00010, "OW"),
    (0xFFFEE000, ""),  # item
    (0xFFFEE00D, ""),  # item delimiter
    (0xFFFEE0DD, ""),  # sequence delimiter
]


@st.composite
def element_streams(draw: st.DrawFn) -> bytes:
    syntax = draw(st.sampled_from([IMPLICIT_LE, IMPLICIT_BE, EXPLICIT_LE, EXPLICIT_BE]))
    out = bytearray()
    for _ in range(draw(st.integers(1, 24))):
        tag, vr = draw(st.sampled_from(_TOKENS))
        vr = draw(st.sampled_from([vr, vr, "UN", "OB", "SQ", "XX"])) if vr else vr
        payload = draw(st.binary(max_size=12))
        length = draw(
            st.one_of(
                st.just(len(payload)),
                st.just(0xFFFFFFFF),
                st.sampled_from(INTERESTING_LENGTHS),
            )
        )
        p = syntax.prefix
        out += struct.pack(p + "HH", tag >> 16, tag & 0xFFFF)
        if syntax.implicit_vr or not vr:
            out += struct.pack(p + "L", length)
        elif vr in ("OB", "OW", "SQ", "UN"):
            out += vr.encode() + struct.pack(p + "HL", 0, length)
        else:
            out += vr.encode() + struct.pack(p + "H", length & 0xFFFF)
        out += payload
    return bytes(out)


# --- the tests ------------------------------------------------------------------------


def test_seeds_decode() -> None:
    for seed in SEEDS:
        assert check(seed.data) is not None, seed.name
        assert seed.length_fields


@fuzz(max_examples=300)
@given(data=st.binary(max_size=600), byte_order=st.sampled_from(ORDERS))
def test_arbitrary_bytes(data: bytes, byte_order: str) -> None:
    check(data, byte_order)


@fuzz(max_examples=200)
@given(
    head=st.sampled_from(
        [
            b"\x08\x00\x00\x00\x04\x00\x00\x00",  # (0008,0000), implicit LE
            b"\x00\x08\x00\x00\x00\x00\x00\x04",  # (0008,0000), implicit BE
            b"\x08\x00\x10\x00LO",  # (0008,0010), explicit LE
            bytes(128) + b"DICM\x02\x00\x10\x00UI",  # Part 10, Transfer Syntax UID
        ]
    ),
    tail=st.binary(max_size=400),
)
def test_plausible_start_then_garbage(head: bytes, tail: bytes) -> None:
    check(head + tail)


@fuzz(max_examples=400)
@given(data=element_streams(), byte_order=st.sampled_from(ORDERS))
def test_element_streams(data: bytes, byte_order: str) -> None:
    check(data, byte_order)


@fuzz(max_examples=600)
@given(data=mutated())
def test_mutated_encodings(data: bytes) -> None:
    check(data)


@fuzz(max_examples=100)
@given(seed=st.sampled_from(SEEDS), tail=st.binary(min_size=1, max_size=64))
def test_valid_encoding_with_trailing_garbage(seed: Seed, tail: bytes) -> None:
    decoded = check(seed.data + tail)
    if decoded is not None:  # the garbage happened to read as more elements
        assert len(decoded.elements) > len(decode(seed.data).elements)


def test_watchdog_catches_a_hang() -> None:
    if not hasattr(signal, "setitimer"):
        return
    caught = False
    try:
        with watchdog(0.05):
            while True:
                pass
    except Hang:
        caught = True
    assert caught

"""Presentation layer: the ACR-NEMA / DICOM data element codec.

Implements the element encoding of ACR-NEMA 300 (1985, 1988) as it survives in DICOM
PS3.5 section 7: a 16-bit group, a 16-bit element, a 32-bit length and an even-length
value, with no VR on the wire (implicit VR), in either byte order. The same walker also
reads headerless DICOM data sets in explicit VR (either byte order) and Part 10 files.

Design:

* :func:`decode` walks the bytes itself, so every structural defect (a length past the
  end, an odd or absurd length, garbage) becomes a :class:`~bridge.errors.ConversionError`
  naming the source, the tag and the byte offset, and memory stays bounded by the input
  size: nothing is allocated from a length field before it is checked against the bytes
  that are really there. The number of data elements (items of sequences included) and
  of values is limited too (``max_elements``, ``max_values``): each element and value
  becomes a Python object, so a small input of many tiny elements or one-letter values
  could otherwise cost far more memory and time than its size (docs/conversion.md,
  "Limits").
* VRs of implicit elements come from pydicom's dictionary plus :data:`ACR_NEMA_VR`, the
  retired ACR-NEMA elements whose VR differs or is ambiguous there.
* Values are then handed to pydicom as raw elements, so pydicom parses strings and numbers;
  binary values are byte-swapped according to the byte order, strings never are.
  ``OW`` values (and the other word VRs ``OF``, ``OL``, ``OD``, ``OV``) of big-endian
  inputs are swapped to little-endian order here, so every decoded data set holds its
  words in little-endian order whatever the input was; :func:`encode` swaps them back.
  (Values nested in sequences are left as pydicom reads them; ACR-NEMA has no sequences.)
* Undefined lengths follow PS3.5 7.5: sequences of items, encapsulated ``OB``/``OW``
  fragments, and explicit ``UN`` values, which hold an implicit VR little endian sequence.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_description, dictionary_has_tag, dictionary_VR, get_entry
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from bridge.errors import ConversionError
from bridge.lenient import lenient

__all__ = [
    "ACR_NEMA_VR",
    "EXPLICIT_BE",
    "EXPLICIT_LE",
    "IMPLICIT_BE",
    "IMPLICIT_LE",
    "MAX_ELEMENTS",
    "MAX_VALUES",
    "ByteOrder",
    "Decoded",
    "RawElement",
    "Syntax",
    "decode",
    "describe",
    "detect_syntax",
    "encode",
    "format_tag",
    "vr_for",
]

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIM = 0xFFFEE00D
SEQ_DELIM = 0xFFFEE0DD
MAX_DEPTH = 32
MAX_ELEMENTS = 10_000
"""Default limit on the data elements of one input, items of sequences included: the
largest real headers we know have a few hundred (corpus r04: 164)."""
MAX_VALUES = 1_000_000
"""Default limit on the values of one input (a multi-valued element counts each value):
enough for a 16-bit lookup table or long contours, and about 15 s of normalising."""

# Explicit VRs whose length field is 32 bits, after two reserved bytes.
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
VALID_VRS = frozenset(
    {
        *("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT"),
        *("OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST"),
        *("SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"),
    }
)
# Binary VRs pydicom keeps as bytes, by word size: swapped here for big-endian data.
WORD_VRS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
# VRs whose values pydicom turns into one Python object each: strings split at
# backslashes, and binary numbers by their size.
_MULTI_STRING_VRS = frozenset("AE AS CS DA DS DT IS LO PN SH TM UC UI".split())
_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8, "UV": 8}

# Retired ACR-NEMA elements whose VR is missing, ambiguous or different in pydicom's
# dictionary. Sources: DCMTK's ACR/NEMA dictionary (acrnema.dic) and PS3.6-2008; see
# docs/conversion.md. "xs" means US or SS, chosen by Pixel Representation.
ACR_NEMA_VR: dict[int, str] = {
    0x00000200: "LO",  # Initiator (logical address)
    0x00000300: "LO",  # Receiver (logical address)
    0x00000400: "LO",  # Find Location
    0x00004000: "LO",  # Dialog Receiver (AT in PS3.7-2008, a string in practice)
    0x00004010: "LO",  # Terminal Type
    0x00005110: "LO",  # Display Format
    0x00005120: "LO",  # Page Position ID
    0x00080010: "LO",  # Recognition Code: 'ACR-NEMA 2.0' and LIBIDO strings exceed CS/SH
    0x00080040: "US",  # Data Set Type
    0x00280005: "US",  # Image Dimensions
    0x00280040: "CS",  # Image Format
    0x00280060: "CS",  # Compression Code
    0x00280104: "xs",  # Smallest Valid Pixel Value
    0x00280105: "xs",  # Largest Valid Pixel Value
    0x00280200: "US",  # Image Location
    0x00281100: "xs",  # Gray Lookup Table Descriptor
    0x00281200: "xs",  # Gray Lookup Table Data
}


class ByteOrder(enum.StrEnum):
    """The ``--byte-order`` choice: detect, or force one byte order."""

    AUTO = "auto"
    LITTLE = "little"
    BIG = "big"


@dataclass(frozen=True)
class Syntax:
    """How elements are encoded: VR on the wire or not, and the byte order."""

    implicit_vr: bool
    little_endian: bool

    @property
    def name(self) -> str:
        vr = "implicit" if self.implicit_vr else "explicit"
        order = "little" if self.little_endian else "big"
        return f"{vr} VR {order} endian"

    @property
    def prefix(self) -> str:
        return "<" if self.little_endian else ">"


IMPLICIT_LE = Syntax(implicit_vr=True, little_endian=True)
IMPLICIT_BE = Syntax(implicit_vr=True, little_endian=False)
EXPLICIT_LE = Syntax(implicit_vr=False, little_endian=True)
EXPLICIT_BE = Syntax(implicit_vr=False, little_endian=False)

_TS_SYNTAX = {
    ImplicitVRLittleEndian: IMPLICIT_LE,
    ExplicitVRLittleEndian: EXPLICIT_LE,
    ExplicitVRBigEndian: EXPLICIT_BE,
}


@dataclass(frozen=True)
class RawElement:
    """One top-level element as found in the input.

    ``offset`` is where the element's tag starts in the input, ``value_offset`` where its
    value starts and ``end`` where the next element starts; ``value`` holds the value
    bytes as they were on the wire (for an undefined length, the items without the
    closing delimiter, and ``length`` is 0xFFFFFFFF).
    """

    tag: int
    vr: str
    offset: int
    length: int
    value: bytes
    value_offset: int = 0
    end: int = 0

    @property
    def header_size(self) -> int:
        return self.value_offset - self.offset


@dataclass
class Decoded:
    """The result of :func:`decode`: the data set and how it was found."""

    source: str
    syntax: Syntax
    dataset: Dataset
    elements: list[RawElement]
    file_meta: FileMetaDataset | None = None
    preamble: bool = False
    start: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def recognition_code(self) -> str:
        value = self.dataset.get(0x00080010)
        return str(value.value).strip() if value is not None else ""

    @property
    def kind(self) -> str:
        """A short human description: ACR-NEMA version, or headerless or Part 10 DICOM."""
        code = self.recognition_code
        if code.upper().startswith("ACR-NEMA") or code.upper().startswith("ACRNEMA"):
            return code
        if self.preamble:
            return "DICOM Part 10"
        if self.file_meta is not None:
            return "DICOM (meta, no preamble)"
        if 0x00080016 in self.dataset:
            return "headerless DICOM"
        return "ACR-NEMA (no Recognition Code)"


def format_tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def vr_for(tag: int, pixel_representation: int = 0) -> str:
    """The VR to read an implicit element with: ACR-NEMA table, then pydicom's dictionary."""
    group, elem = tag >> 16, tag & 0xFFFF
    if elem == 0x0000:
        return "UL"
    vr = ACR_NEMA_VR.get(tag)
    if vr is None:
        if group & 1:
            return "LO" if 0x0010 <= elem <= 0x00FF else "UN"
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    if vr in ("xs", "US or SS", "US or SS or OW"):
        return "SS" if pixel_representation == 1 else "US"
    if vr in ("OB or OW", "US or OW", "ox"):
        return "OW"
    if vr not in VALID_VRS:
        return "UN"
    return vr


@dataclass
class _Budget:
    """What one decode may still read: data elements and values (no limit for probes)."""

    max_elements: int
    max_values: int
    elements: int = 0
    values: int = 0


def _value_count(data: bytes, vr: str, start: int, length: int) -> int:
    """How many values (each a Python object once decoded) an element's bytes hold."""
    if not length:
        return 0
    if vr in _MULTI_STRING_VRS:
        return data.count(b"\\", start, start + length) + 1
    size = _NUMBER_SIZES.get(vr)
    return length // size if size else 1


class _Walker:
    """Walks elements over a byte buffer, checking every length against the bytes."""

    def __init__(
        self, data: bytes, syntax: Syntax, source: str, budget: _Budget | None = None
    ) -> None:
        self.data = data
        self.syntax = syntax
        self.source = source
        self.budget = budget
        self._u16 = struct.Struct(syntax.prefix + "H")
        self._u32 = struct.Struct(syntax.prefix + "L")
        self._tag = struct.Struct(syntax.prefix + "HH")
        self.pixel_representation = 0

    def error(self, reason: str, tag: int | None, offset: int) -> ConversionError:
        return ConversionError(reason, source=self.source, tag=tag, offset=offset)

    def spend(self, tag: int, vr: str, value_pos: int, length: int, pos: int) -> None:
        """Count one element and its values against the budget, before it is decoded."""
        budget = self.budget
        if budget is None:
            return
        budget.elements += 1
        if budget.elements > budget.max_elements:
            raise self.error(
                f"more than {budget.max_elements} data elements "
                "(the limit; convert --max-elements raises it)",
                tag,
                pos,
            )
        if length == UNDEFINED:
            return
        values = _value_count(self.data, vr, value_pos, length)
        budget.values += values
        if budget.values > budget.max_values:
            raise self.error(
                f"{values} values in this element, more than {budget.max_values} values "
                "in the data set (the limit; convert --max-values raises it)",
                tag,
                pos,
            )

    def tag_at(self, pos: int) -> int:
        group, elem = self._tag.unpack_from(self.data, pos)
        return int(group << 16 | elem)

    def header(self, pos: int, end: int) -> tuple[int, str, int, int]:
        """Read one element header at ``pos``: (tag, vr, length, value offset)."""
        size = 8
        if pos + 4 > end:
            raise self.error(
                f"element header cut off by the end of the data ({end - pos} of {size} bytes)",
                None,
                pos,
            )
        tag = self.tag_at(pos)
        if not self.syntax.implicit_vr and tag >> 16 != 0xFFFE and pos + 6 <= end:
            raw_vr = self.data[pos + 4 : pos + 6]
            if raw_vr.decode("latin-1") in LONG_VRS:
                size = 12
        if pos + size > end:
            raise self.error(
                f"element header cut off by the end of the data ({end - pos} of {size} bytes)",
                tag,
                pos,
            )
        if tag >> 16 == 0xFFFE:  # item and delimiters never carry a VR
            return tag, "", self._u32.unpack_from(self.data, pos + 4)[0], pos + 8
        if self.syntax.implicit_vr:
            length = self._u32.unpack_from(self.data, pos + 4)[0]
            return tag, vr_for(tag, self.pixel_representation), length, pos + 8
        raw_vr = self.data[pos + 4 : pos + 6]
        vr = raw_vr.decode("latin-1")
        if vr not in VALID_VRS:
            raise self.error(f"invalid explicit VR {raw_vr!r}", tag, pos)
        if vr in LONG_VRS:
            return tag, vr, self._u32.unpack_from(self.data, pos + 8)[0], pos + 12
        return tag, vr, self._u16.unpack_from(self.data, pos + 6)[0], pos + 8

    def elements(
        self, pos: int, end: int, depth: int = 0, *, in_item: bool = False
    ) -> Iterator[RawElement]:
        """Yield the elements of one data set between ``pos`` and ``end``.

        Inside an undefined-length item (``in_item``) it stops early, without yielding
        it, at the item delimiter; the caller finds it at the last ``end``. Anywhere
        else an item or delimiter tag is an error.
        """
        while pos < end:
            tag, vr, length, value_pos = self.header(pos, end)
            if tag == ITEM_DELIM and in_item:
                return
            if tag >> 16 == 0xFFFE:
                raise self.error("item or delimiter tag outside a sequence", tag, pos)
            if length == UNDEFINED:
                if self.syntax.implicit_vr and vr not in ("OB", "OW"):
                    vr = "SQ"  # an implicit undefined-length element can only be a sequence
                self.spend(tag, vr, value_pos, length, pos)
                value_end, next_pos = self.undefined(tag, vr, value_pos, end, depth)
                value = self.data[value_pos:value_end]
                yield RawElement(tag, vr, pos, length, value, value_pos, next_pos)
                pos = next_pos
                continue
            if length & 1:
                raise self.error(f"odd value length {length}", tag, pos)
            if length > end - value_pos:
                raise self.error(
                    f"value length {length} runs past the end of the data "
                    f"({end - value_pos} bytes left)",
                    tag,
                    pos,
                )
            self.spend(tag, vr, value_pos, length, pos)
            value = self.data[value_pos : value_pos + length]
            if tag == 0x00280103 and length == 2:
                self.pixel_representation = self._u16.unpack(value)[0]
            if vr == "SQ" and length:
                self.items(value_pos, value_pos + length, tag, depth)
            yield RawElement(tag, vr, pos, length, value, value_pos, value_pos + length)
            pos = value_pos + length

    def undefined(self, tag: int, vr: str, pos: int, end: int, depth: int) -> tuple[int, int]:
        """Find the end of an undefined-length value: (value end, next element)."""
        if vr in ("OB", "OW"):
            delim = self.fragments(pos, end, tag)
        elif vr == "UN" and not self.syntax.implicit_vr:
            # PS3.5 6.2.2: an undefined-length UN value is an implicit VR LE sequence.
            inner = _Walker(self.data, IMPLICIT_LE, self.source, self.budget)
            delim = inner.items(pos, end, tag, depth)
        elif vr == "SQ":
            delim = self.items(pos, end, tag, depth)
        else:
            raise self.error(f"undefined length on a {vr} element", tag, pos)
        if delim + 8 > end or self.tag_at(delim) != SEQ_DELIM:
            raise self.error("undefined-length value without a sequence delimiter", tag, pos)
        return delim, delim + 8

    def items(self, pos: int, end: int, tag: int, depth: int) -> int:
        """Check the items of a sequence value; return where the sequence ends.

        For an undefined length, ``end`` is the end of the enclosing data and the
        sequence ends at its delimiter, whose position is returned; the caller checks
        that it is there.
        """
        if depth >= MAX_DEPTH:
            raise self.error(f"sequences nested deeper than {MAX_DEPTH}", tag, pos)
        while pos < end:
            item_tag, _, length, value_pos = self.header(pos, end)
            if item_tag == SEQ_DELIM:
                return pos
            if item_tag != ITEM:
                raise self.error(
                    f"expected an item in the sequence, found {format_tag(item_tag)}", tag, pos
                )
            if length == UNDEFINED:
                last = value_pos
                for element in self.elements(value_pos, end, depth + 1, in_item=True):
                    last = element.end
                # elements() stopped at the item delimiter or at the end of the data
                if last + 8 > end or self.tag_at(last) != ITEM_DELIM:
                    raise self.error("undefined-length item without an item delimiter", tag, last)
                pos = last + 8
            else:
                if length > end - value_pos or length & 1:
                    raise self.error(f"item length {length} does not fit the sequence", tag, pos)
                for _ in self.elements(value_pos, value_pos + length, depth + 1):
                    pass
                pos = value_pos + length
        return pos

    def fragments(self, pos: int, end: int, tag: int) -> int:
        """Check encapsulated fragments (PS3.5 A.4); return where the delimiter is."""
        while pos < end:
            item_tag, _, length, value_pos = self.header(pos, end)
            if item_tag == SEQ_DELIM:
                return pos
            if item_tag != ITEM or length == UNDEFINED:
                raise self.error(f"bad fragment {format_tag(item_tag)} in pixel data", tag, pos)
            if length > end - value_pos or length & 1:
                raise self.error(f"fragment length {length} does not fit the data", tag, pos)
            pos = value_pos + length
        return pos


def _plausible(data: bytes, start: int, syntax: Syntax, limit: int = 48) -> tuple[int, int]:
    """Score a candidate syntax: (elements read in ascending order before a failure, how
    many of them the standard names); a clean walk to the end counts one more element."""
    walker = _Walker(data, syntax, "<probe>")
    score = known = 0
    previous = -1
    try:
        for element in walker.elements(start, len(data)):
            if element.tag <= previous or element.tag >> 16 > 0x7FFF:
                return score, known
            previous = element.tag
            score += 1
            known += _is_named(element.tag)
            if score >= limit:
                break
    except ConversionError:
        return score, known
    return score + 1, known  # walked the whole input, or enough of it, cleanly


def detect_syntax(
    data: bytes, start: int = 0, byte_order: ByteOrder | str = ByteOrder.AUTO
) -> Syntax:
    """Guess how a headerless data set is encoded.

    Each candidate is walked over the first elements; the one that reads the most
    elements in ascending tag order wins, then the one that reads more named tags.
    Explicit VR is preferred on a full tie, since a valid two-letter VR in the right
    place is a strong signal. ``byte_order`` restricts the candidates to one order.
    """
    order = ByteOrder(byte_order)
    candidates = [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE, IMPLICIT_BE]
    if order == ByteOrder.LITTLE:
        candidates = [EXPLICIT_LE, IMPLICIT_LE]
    elif order == ByteOrder.BIG:
        candidates = [EXPLICIT_BE, IMPLICIT_BE]
    best, best_score = candidates[0], (-1, -1)
    for syntax in candidates:
        score = _plausible(data, start, syntax)
        if score > best_score:
            best, best_score = syntax, score
    return best


def _to_dataset(walker: _Walker, elements: list[RawElement], notes: list[str]) -> Dataset:
    syntax = walker.syntax
    raw: dict[BaseTag, RawDataElement] = {}
    for element in elements:
        tag = Tag(element.tag)
        if tag in raw:
            notes.append(f"{format_tag(element.tag)} appears twice; the first value is kept")
            continue
        vr, value = element.vr, element.value
        implicit, little = syntax.implicit_vr, syntax.little_endian
        if element.length == UNDEFINED:
            if vr == "UN":
                vr, implicit, little = "SQ", True, True
        elif not little and vr in WORD_VRS:
            value = _swap(value, WORD_VRS[vr])
        raw[tag] = RawDataElement(
            tag,
            vr,
            element.length,
            value,
            element.value_offset,
            is_implicit_VR=implicit,
            is_little_endian=little,
        )
    dataset = Dataset()
    dataset.set_original_encoding(syntax.implicit_vr, syntax.little_endian, "iso8859")
    # Convert every element now, items of sequences included, so a malformed value is a
    # ConversionError here and not an exception somewhere later in the converter.
    with lenient():  # ACR-NEMA value forms are expected here, not worth a warning
        for tag, raw_element in raw.items():
            try:
                converted = convert_raw_data_element(raw_element, encoding="iso8859", ds=dataset)
                if converted.VR == "SQ":
                    _convert_items(converted.value)
            except Exception as exc:  # pydicom raises many kinds; all mean "bad value"
                raise walker.error(
                    f"cannot decode the {raw_element.VR} value: {exc}",
                    int(tag),
                    raw_element.value_tell,
                ) from exc
            dataset[tag] = converted
    return dataset


def _convert_items(items: Iterable[Dataset]) -> None:
    """Turn the raw elements pydicom leaves in sequence items into data elements."""
    for item in items:
        for element in item:  # iterating a Dataset converts its raw elements
            if element.VR == "SQ":
                _convert_items(element.value)


def _swap(value: bytes, size: int) -> bytes:
    """Reverse the bytes of each ``size``-byte word; a ragged tail is left as it is."""
    if len(value) < size:
        return value
    swapped = bytearray(value)
    # in place: slicing every size-th byte would copy the value once more, in pieces
    words = np.frombuffer(swapped, dtype=f"u{size}", count=len(value) // size)
    words.byteswap(inplace=True)
    return bytes(swapped)


def _check_lengths(
    walker: _Walker, elements: list[RawElement], data_end: int, notes: list[str]
) -> None:
    """Check group lengths, Length to End and tag order; a mismatch is a warning."""
    by_group: dict[int, list[RawElement]] = {}
    for element in elements:
        by_group.setdefault(element.tag >> 16, []).append(element)
    unpack = walker._u32.unpack
    for members in by_group.values():
        head = members[0]
        if head.tag & 0xFFFF == 0 and head.length == 4:
            declared = unpack(head.value)[0]
            actual = members[-1].end - head.end
            if declared != actual:
                notes.append(
                    f"group length {format_tag(head.tag)} says {declared} bytes, "
                    f"the group holds {actual}"
                )
        for element in members:
            if element.tag in (0x00000001, 0x00080001) and element.length == 4:
                declared = unpack(element.value)[0]
                actual = data_end - element.end
                if declared != actual:
                    notes.append(
                        f"Length to End {format_tag(element.tag)} says {declared} bytes, "
                        f"{actual} follow it"
                    )
    previous = -1
    for element in elements:
        if element.tag <= previous:
            notes.append(
                f"{format_tag(element.tag)} at offset {element.offset} is out of tag order"
            )
        previous = element.tag


def decode(
    data: bytes,
    *,
    source: str = "<bytes>",
    byte_order: ByteOrder | str = ByteOrder.AUTO,
    max_elements: int = MAX_ELEMENTS,
    max_values: int = MAX_VALUES,
) -> Decoded:
    """Decode an ACR-NEMA 1.0/2.0 data set, a headerless DICOM data set or a Part 10 file.

    ``byte_order`` limits syntax detection to one byte order; a file meta's Transfer
    Syntax UID, when there is one, decides instead. ``max_elements`` and ``max_values``
    limit the data elements (file meta and items of sequences included) and the values
    read; both are checked while walking, before any value is decoded.

    Raises :class:`ConversionError` for anything that is not a readable data set; no
    other exception escapes for any ``data``. (An unknown ``byte_order`` is the
    caller's mistake: ValueError.)
    """
    order = ByteOrder(byte_order)
    budget = _Budget(max_elements, max_values)
    data = bytes(data)
    if len(data) < 8:
        raise ConversionError(f"only {len(data)} bytes: not a data set", source=source, offset=0)
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    start = 132 if preamble else (4 if data[:4] == b"DICM" else 0)
    file_meta: FileMetaDataset | None = None
    notes: list[str] = []
    syntax: Syntax
    if preamble or data[start : start + 2] == b"\x02\x00":
        meta_walker = _Walker(data, EXPLICIT_LE, source, budget)
        meta_elements: list[RawElement] = []
        pos = start
        while pos + 8 <= len(data):
            group = struct.unpack_from("<H", data, pos)[0]
            if group != 0x0002:
                break
            element = next(meta_walker.elements(pos, len(data)))
            meta_elements.append(element)
            pos = element.end
        if meta_elements:
            file_meta = FileMetaDataset(_to_dataset(meta_walker, meta_elements, notes))
            start = pos
            syntax = _meta_syntax(file_meta, meta_elements, data, order, notes, source)
        else:
            syntax = detect_syntax(data, start, order)
    else:
        syntax = detect_syntax(data, start, order)
    walker = _Walker(data, syntax, source, budget)
    elements = list(walker.elements(start, len(data)))
    if not elements:
        raise ConversionError("no data elements", source=source, offset=start)
    if not _looks_like_dataset(elements):
        raise ConversionError(
            f"not an ACR-NEMA or DICOM data set (first tag {format_tag(elements[0].tag)})",
            source=source,
            tag=elements[0].tag,
            offset=start,
        )
    _check_lengths(walker, elements, len(data), notes)
    dataset = _to_dataset(walker, elements, notes)
    return Decoded(source, syntax, dataset, elements, file_meta, preamble, start, notes)


def _meta_syntax(
    file_meta: FileMetaDataset,
    meta_elements: list[RawElement],
    data: bytes,
    order: ByteOrder,
    notes: list[str],
    source: str,
) -> Syntax:
    """The syntax of the data set after a file meta: its Transfer Syntax UID says."""
    start = meta_elements[-1].end
    element = file_meta.get(0x00020010)
    if element is None:
        notes.append("file meta has no Transfer Syntax UID; syntax detected instead")
        return detect_syntax(data, start, order)
    offset = next(e.offset for e in meta_elements if e.tag == 0x00020010)
    value = element.value
    if isinstance(value, str):
        ts = UID(value.rstrip("\0 "), validation_mode=pydicom_config.IGNORE)
        if ts in _TS_SYNTAX:
            return _TS_SYNTAX[ts]
        if not ts.is_transfer_syntax:
            reason = f"unknown transfer syntax {ts!r}"
        elif ts.is_deflated:
            reason = f"deflated transfer syntax {ts} is not supported"
        else:
            return Syntax(ts.is_implicit_VR, ts.is_little_endian)
    else:
        reason = f"Transfer Syntax UID {value!r} is not one UID"
    raise ConversionError(reason, source=source, tag=0x00020010, offset=offset)


# Groups that nearly every ACR-NEMA or DICOM data set has elements in.
_COMMON_GROUPS = frozenset({0x0000, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x7FE0})


def _looks_like_dataset(elements: list[RawElement]) -> bool:
    """Reject inputs that walked by chance: most tags must be known or group lengths,
    and some element other than a group length must be in a group every image has."""
    known = sum(_is_known(element.tag) for element in elements[:64])
    checked = min(len(elements), 64)
    return known * 2 > checked and any(
        e.tag & 0xFFFF and e.tag >> 16 in _COMMON_GROUPS for e in elements
    )


def _is_named(tag: int) -> bool:
    """An element the standard names: in pydicom's dictionary (not a repeater range, which
    matches byte-swapped tags too easily) or in the ACR-NEMA table; no group length."""
    return bool(tag & 0xFFFF) and (tag in ACR_NEMA_VR or dictionary_has_tag(tag))


def _is_known(tag: int) -> bool:
    """A group length, a private tag, or a tag in pydicom's or our ACR-NEMA dictionary."""
    if tag & 0xFFFF == 0 or (tag >> 16) & 1 or tag in ACR_NEMA_VR:
        return True
    try:
        get_entry(tag)
    except KeyError:
        return False
    return True


def describe(tag: int) -> str:
    """The keyword-free name of a tag, or a generic one for unknown and private tags."""
    if tag & 0xFFFF == 0:
        return "Group Length"
    if (tag >> 16) & 1:
        return "Private Creator" if 0x10 <= tag & 0xFFFF <= 0xFF else "Private tag"
    try:
        return str(dictionary_description(tag))
    except KeyError:
        return "Unknown tag"


def encode(dataset: Dataset, syntax: Syntax = IMPLICIT_LE, *, group_lengths: bool = True) -> bytes:
    """Encode a data set without preamble or meta, as ACR-NEMA equipment wrote it.

    Group lengths are written first in each group when ``group_lengths`` is true; an
    existing (0008,0001) Length to End is rewritten with the right value. ``OW``
    values (and the other word VRs) are taken to be in little-endian order and swapped
    for big-endian output.
    """
    groups: dict[int, list[bytes]] = {}
    length_to_end = False
    for element in dataset:
        tag = int(element.tag)
        if tag == 0x00080001:
            length_to_end = True
        elif tag & 0xFFFF:  # group lengths are recomputed
            groups.setdefault(tag >> 16, []).append(_encode_element(element, syntax))
    if length_to_end:
        groups.setdefault(0x0008, [])
    # Last group first, so the Length to End knows how many bytes follow it.
    blocks: list[bytes] = []
    after = 0
    for group in sorted(groups, reverse=True):
        body = b"".join(groups[group])
        if group == 0x0008 and length_to_end:
            body = _encode_element(DataElement(0x00080001, "UL", after + len(body)), syntax) + body
        if group_lengths:
            body = _encode_element(DataElement(group << 16, "UL", len(body)), syntax) + body
        blocks.append(body)
        after += len(body)
    return b"".join(reversed(blocks))


def _encode_element(element: DataElement, syntax: Syntax) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = syntax.little_endian
    fp.is_implicit_VR = syntax.implicit_vr
    size = WORD_VRS.get(element.VR)
    if size and not syntax.little_endian and isinstance(element.value, bytes):
        element = DataElement(element.tag, element.VR, _swap(element.value, size))
    write_data_element(fp, element)
    return bytes(fp.getvalue())

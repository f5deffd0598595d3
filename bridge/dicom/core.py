"""ACR-NEMA data set to valid DICOM: the conversion of one input.

:func:`convert` is pure: bytes in, DICOM data sets (with file meta) and warnings out. The
rules, element by element, are in docs/conversion.md; this module follows its order:

1. decode (bridge.acrnema.elements), 2. sort elements into kept, mapped, retired and
nonconforming, 3. normalise values, 4. pixels, 5. SOP class, geometry and identity,
6. the IOD's Type 1 and Type 2 attributes, 7. provenance and Original Attributes.

What had to change in the image is in :attr:`ConversionResult.repairs`, typed: a repair
that changes the pixels (:attr:`RepairKind.PIXELS`) is refused, with an
:class:`ImageDataError`, unless ``ConvertOptions.accept_repairs``; an image whose Pixel
Data is missing or short is always refused (docs/conversion.md, "Repairs").

Two promises hold for every input (docs/conversion.md, "Limits" and "Provenance"):

* **Bounded.** The work an input may cause is limited by :class:`ConvertOptions`: frames,
  decoded pixel bytes, output bytes, data elements and values. Each limit is checked from
  the header, before the memory it guards is allocated, and a violation is a
  :class:`ConversionError` naming the input, the element and the limit.
* **Deterministic.** The same input and options give the same bytes every time: UIDs are
  derived from the content, and nothing in the data set comes from the clock.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.datadict import dictionary_is_retired, dictionary_VR, get_entry
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from bridge import __version__
from bridge.acrnema.elements import (
    MAX_ELEMENTS,
    MAX_VALUES,
    ByteOrder,
    Decoded,
    decode,
    format_tag,
)
from bridge.dicom import geometry, uids
from bridge.dicom.deid import Deidentification, deidentify
from bridge.dicom.pixels import (
    LOSSY_SYNTAXES,
    SUBSAMPLED,
    Compression,
    Pixels,
    Repair,
    RepairKind,
    decode_native,
    identify_encapsulated,
    is_encapsulated,
    pack_bits,
)
from bridge.dicom.values import fix_value, is_placeholder, is_valid
from bridge.errors import ConversionError, ImageDataError
from bridge.lenient import lenient

__all__ = [
    "CT_IMAGE",
    "MR_IMAGE",
    "SECONDARY_CAPTURE",
    "ConversionResult",
    "ConvertOptions",
    "PatientIdPolicy",
    "Repair",
    "RepairKind",
    "check_input_size",
    "convert",
    "reassign_instance_uid",
]

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

MODIFYING_SYSTEM = f"acrnema-bridge {__version__}"
RULES_DATE = "20261206"
"""Attribute Modification DateTime of every Original Attributes item: the date of the
conversion rules of this version (named by Modifying System), not the wall clock, so
that the same input always gives the same bytes. When an input was received or
converted is recorded outside the data set (the spool's database, the file system)."""
GENERATED_ISSUER = "ACRNEMA-BRIDGE GENERATED"

STRING_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
_BINARY_VRS = frozenset("AT FD FL OB OD OF OL OV OW SL SQ SS SV UL UN US UV".split())

# Attributes each IOD needs, as (keyword, type). Type 1 attributes the converter must
# produce itself are checked separately; Type 2 ones are added empty when unknown.
_COMMON_TYPE2 = (
    "PatientName PatientID PatientBirthDate PatientSex StudyDate StudyTime "
    "ReferringPhysicianName StudyID AccessionNumber SeriesNumber Laterality Manufacturer "
    "InstanceNumber"
).split()
_TYPE2 = {
    CT_IMAGE: [
        *_COMMON_TYPE2,
        "PatientPosition",
        "PositionReferenceIndicator",
        "SliceThickness",
        "KVP",
        "AcquisitionNumber",
    ],
    MR_IMAGE: [
        *_COMMON_TYPE2,
        "PatientPosition",
        "PositionReferenceIndicator",
        "SliceThickness",
        "ScanOptions",
        "MRAcquisitionType",
        "EchoTime",
        "EchoTrainLength",
    ],
    SECONDARY_CAPTURE: [*_COMMON_TYPE2, "PatientOrientation"],
    "1.2.840.10008.5.1.4.1.1.1": [*_COMMON_TYPE2, "PatientOrientation"],  # CR
    "1.2.840.10008.5.1.4.1.1.128": [*_COMMON_TYPE2, "PatientOrientation"],  # PET
}
_RT_TYPE2 = ["OperatorsName"]  # RT Series module
# Empty top-level sequences of these Type 3 attributes are removed (an empty Type 3
# sequence is invalid: it must be absent or have items).
_TYPE3_SEQUENCES = [
    "ReferencedStudySequence",
    "ReferencedPatientSequence",
    "ReferencedImageSequence",
    "ReferencedPerformedProcedureStepSequence",
    "RequestAttributesSequence",
    "ProcedureCodeSequence",
    "AnatomicRegionSequence",
]
_TYPE2_IN_DOCUMENTS = {"ReferencedPerformedProcedureStepSequence"}
"""Of those, the ones Type 2 in an SR or KO Document Series (PS3.3 C.17.1, C.17.6.1)."""

# ACR-NEMA retired elements that have a DICOM home; the rest go to Original Attributes.
_RETIRED_USED = {
    0x00200030,  # Image Position -> Image Position (Patient)
    0x00200035,  # Image Orientation -> Image Orientation (Patient)
    0x00200050,  # Location -> Slice Location
    0x00280005,  # Image Dimensions -> frames
    0x00280012,  # Planes -> frames
    0x00280200,  # Image Location -> which group holds the pixels
    0x00080010,  # Recognition Code -> provenance
    0x00280050,  # Manipulated Image -> Image Type DERIVED
    0x00084000,  # Identifying Comments -> Image Comments
    0x00184000,  # Acquisition Comments -> Image Comments
    0x00284000,  # Image Presentation Comments -> Image Comments
}
_STRUCTURAL = {0x00000001, 0x00080001}  # Length to End: framing only, dropped like group lengths

_ENUMERATED = {
    0x00100040: {"M", "F", "O"},  # Patient's Sex
    0x00200060: {"R", "L"},  # Laterality
    0x00185100: set(geometry.POSITIONS)
    | {"LFP", "LFS", "RFP", "RFS", "AFDR", "AFDL", "PFDR", "PFDL"},
}
_MR_SEQUENCES = (("EP", "EP"), ("IR", "IR"), ("SE", "SE"), ("FE", "GR"), ("GR", "GR"), ("RM", "RM"))


class PatientIdPolicy(enum.StrEnum):
    """How a missing Patient ID is generated (docs/conversion.md, "Patient ID")."""

    STUDY = "study"  # from name, birth date and the study: one patient never spans studies
    NAME = "name"  # from name and birth date only: merges same-named patients
    SOURCE = "source"  # from the source bytes: one ID per file
    NONE = "none"  # leave it empty (Type 2)


MIB = 1 << 20
MAX_FRAMES = 1024
MAX_PIXEL_BYTES = 256 * MIB
MAX_OUTPUT_BYTES = 256 * MIB


@dataclass(frozen=True)
class ConvertOptions:
    """Settings of one conversion, with the limits that bound its memory and time.

    The limits (docs/conversion.md, "Limits", says why these defaults):

    ``max_frames``
        frames (ACR-NEMA planes, or Number of Frames) of one input; each ACR-NEMA plane
        becomes an output object of its own, so this also bounds the objects per input.
    ``max_pixel_bytes``
        the decoded pixel data of one input, all frames, after unpacking cells to 8 or
        16 bits (a 1-bit input takes a byte a cell, 8 times its size).
    ``max_output_bytes``
        the DICOM objects made from one input, estimated before they are made (pixels,
        plus the source's header copied into every object); an input larger than this
        is refused unread, since everything in it is kept in the output.
    ``max_elements`` / ``max_values``
        data elements (items of sequences included) and values of one input, each a
        Python object once decoded.

    ``accept_repairs``
        whether an image may be stored after a repair that changes its pixels (pixel data
        longer than the image, an unusual Bits Allocated, set bits above High Bit). True
        makes the best possible object, for archives (``convert``); False refuses the
        input with an :class:`ImageDataError` naming the repair, as the link does
        (``run`` without ``--accept-repairs``, ``convert --strict``).

    ``deidentify``
        when set, every object made is de-identified for publication (PS3.15 Annex E,
        :mod:`bridge.dicom.deid`) after it is built; None (the default) keeps everything.
    """

    byte_order: ByteOrder = ByteOrder.AUTO
    patient_id: PatientIdPolicy = PatientIdPolicy.STUDY
    issuer_of_generated_id: str = GENERATED_ISSUER
    max_frames: int = MAX_FRAMES
    max_pixel_bytes: int = MAX_PIXEL_BYTES
    max_output_bytes: int = MAX_OUTPUT_BYTES
    max_elements: int = MAX_ELEMENTS
    max_values: int = MAX_VALUES
    accept_repairs: bool = True
    deidentify: Deidentification | None = None

    def __post_init__(self) -> None:  # accept the plain strings of the CLI and TOML
        object.__setattr__(self, "byte_order", ByteOrder(self.byte_order))
        object.__setattr__(self, "patient_id", PatientIdPolicy(self.patient_id))
        for name in _LIMITS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


_LIMITS = ("max_frames", "max_pixel_bytes", "max_output_bytes", "max_elements", "max_values")


def _mib(size: int) -> str:
    """A byte count for a message: MiB when it is at least one, else bytes."""
    if size < MIB:
        return f"{size} bytes"
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size / MIB:.1f} MiB"


def check_input_size(size: int, *, source: str, options: ConvertOptions) -> None:
    """Refuse an input larger than the output limit before it is read.

    Everything in an input is kept in its output, so such an input cannot convert
    within the limit; checking its size first keeps it out of memory altogether.
    """
    if size > options.max_output_bytes:
        raise ConversionError(
            f"the input is {_mib(size)}, more than the output limit of "
            f"{_mib(options.max_output_bytes)} (everything in it is kept; "
            "convert --max-output-mb raises the limit)",
            source=source,
        )


@dataclass
class ConversionResult:
    """The DICOM objects made from one input, and what was done to get them."""

    source: str
    datasets: list[Dataset]
    warnings: list[str] = field(default_factory=list)
    kind: str = ""
    repairs: list[Repair] = field(default_factory=list)
    """What had to change in the image, typed (each reason is among ``warnings`` too)."""


@dataclass
class _Work:
    """Mutable state of one conversion."""

    source: str
    decoded: Decoded
    options: ConvertOptions
    key: str
    out: Dataset = field(default_factory=Dataset)
    retired: list[DataElement] = field(default_factory=list)
    nonconforming: list[tuple[int, str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    at: int | None = None
    """The tag of the element being handled, named by an unexpected error."""
    source_study_uid: str = ""  # the input's own Study Instance UID, "" when it has none

    def warn(self, text: str) -> None:
        self.notes.append(text)

    def repair(self, repair: Repair) -> None:
        """Record a repair of the image; it is a warning of the report too."""
        self.repairs.append(repair)
        self.warn(repair.reason)

    def keep_original(self, element: DataElement, reason: str, *, sound: bool = True) -> None:
        """Record an element's original value for the Original Attributes Sequence.

        ``sound=False`` keeps it as bytes (Nonconforming Modified Attributes) even when
        its form is valid: a value whose meaning is broken (degenerate geometry) must not
        be written as an element, not even in Original Attributes.
        """
        raw = _raw_value(element)
        element = _dictionary_vr(element)
        valid = element.VR not in STRING_VRS or all(
            is_valid(v, element.VR) for v in _texts(element)
        )
        if sound and valid and element.VR != "UN":
            self.retired.append(element)
        else:
            self.nonconforming.append((int(element.tag), element.VR, raw))
        self.warn(f"{format_tag(int(element.tag))} {_name(element)}: {reason}")


def _dictionary_vr(element: DataElement) -> DataElement:
    """The element with its DICOM dictionary VR when its value is valid for it.

    The ACR-NEMA table reads a few strings with a wider VR (Recognition Code as LO); kept
    in Original Attributes they should carry the VR DICOM expects.
    """
    try:
        expected = dictionary_VR(int(element.tag))
    except KeyError:
        return element
    if expected == element.VR or expected not in STRING_VRS or element.VR not in STRING_VRS:
        return element
    if all(is_valid(v, expected) for v in _texts(element)):
        return DataElement(element.tag, expected, element.value)
    return element


SHOWN_CHARS = 64
"""How much of an original value a warning (and so the ``--report`` JSON) shows."""


def shown(value: object) -> str:
    """``repr(value)`` for a warning, cut to :data:`SHOWN_CHARS` with its full size.

    The warnings go into the JSON report and the log: a 100 KB Patient's Name must not be
    copied there whole (it is kept, whole, in the Original Attributes Sequence).
    """
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(str(value))} characters)"


def _name(element: DataElement) -> str:
    try:
        return str(get_entry(int(element.tag))[2])
    except KeyError:
        return "private or unknown element"


def _texts(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, (list, MultiValue)):
        return [str(v) if v is not None else "" for v in value]
    return [str(value)]


def _raw_value(element: DataElement) -> bytes:
    value = element.value
    if isinstance(value, bytes):
        raw = value
    elif element.VR in STRING_VRS or isinstance(value, str):
        raw = "\\".join(_texts(element)).encode("latin-1", "replace")
    else:
        raw = str(value).encode("latin-1", "replace")
    return raw + b" " if len(raw) % 2 else raw


def convert(
    data: bytes,
    *,
    source: str = "<bytes>",
    options: ConvertOptions | None = None,
    key: str | None = None,
) -> ConversionResult:
    """Convert one ACR-NEMA or headerless DICOM input into DICOM data sets.

    ``key`` is :func:`bridge.dicom.uids.content_key` of ``data`` when the caller has it.
    Raises :class:`ConversionError` when the input cannot be made into valid DICOM.
    """
    options = options or ConvertOptions()
    check_input_size(len(data), source=source, options=options)
    try:
        decoded = decode(
            data,
            source=source,
            byte_order=options.byte_order,
            max_elements=options.max_elements,
            max_values=options.max_values,
        )
    except ConversionError as exc:
        hint = _byte_order_hint(data, source, options)
        if hint is None:
            raise
        raise ConversionError(
            f"{exc.reason}; {hint}", source=source, tag=exc.tag, offset=exc.offset
        ) from exc
    work = _Work(source, decoded, options, key or uids.content_key(data))
    work.notes.extend(decoded.warnings)
    try:
        with lenient():  # values are made valid here; pydicom's checks would only repeat it
            datasets = _convert(work)
            if options.deidentify is not None:
                for ds in datasets:  # one warning per input, not per plane
                    notes = deidentify(ds, options.deidentify)
                    work.notes.extend(n for n in notes if n not in work.notes)
    except (ConversionError, MemoryError):
        raise
    except Exception as exc:
        # A value of an unexpected type or range deep in a malformed header: the input
        # fails alone, naming the element being handled.
        raise ConversionError(
            f"cannot convert: {type(exc).__name__}: {exc}", source=source, tag=work.at
        ) from exc
    changed = tuple(r for r in work.repairs if r.changes_pixels)
    if changed and not options.accept_repairs:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ImageDataError(
            f"{changed[0].reason}{more}; repairs that change the image are not accepted",
            source=source,
            tag=_PIXEL_DATA,
            repairs=changed,
        )
    return ConversionResult(source, datasets, work.notes, decoded.kind, work.repairs)


_PIXEL_DATA = 0x7FE00010


def _byte_order_hint(data: bytes, source: str, options: ConvertOptions) -> str | None:
    """With a forced ``--byte-order`` that fails: which byte order the input reads in."""
    if options.byte_order is ByteOrder.AUTO:
        return None
    try:
        found = decode(
            data,
            source=source,
            byte_order=ByteOrder.AUTO,
            max_elements=options.max_elements,
            max_values=options.max_values,
        )
    except ConversionError:
        return None
    order = "little" if found.syntax.little_endian else "big"
    if order == options.byte_order.value:
        return None
    return f"the input reads as {order} endian: try --byte-order {order} (or auto)"


# Elements read as integers to size the image; a value that is not one is named here,
# before any pixel work, rather than as a bare "invalid literal for int()".
_INTEGER_ELEMENTS = (
    0x00280002,  # Samples per Pixel
    0x00280005,  # Image Dimensions
    0x00280008,  # Number of Frames
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280012,  # Planes
    0x00280100,  # Bits Allocated
    0x00280101,  # Bits Stored
    0x00280102,  # High Bit
    0x00280103,  # Pixel Representation
)


def _check_integers(work: _Work, src: Dataset) -> None:
    """Refuse, naming the element, an image header value that is not an integer."""
    for tag in _INTEGER_ELEMENTS:
        element = src.get(tag)
        if element is None or element.value is None or element.value == "":
            continue
        try:
            int(element.value)
        except (TypeError, ValueError):
            raise ConversionError(
                f"{_name(element)} {shown(element.value)} is not an integer",
                source=work.source,
                tag=tag,
            ) from None


def _is_image_class(sop_class: str) -> bool:
    """Whether ``sop_class`` is an image storage SOP class (its IOD needs Pixel Data).

    Told by the class's name in pydicom's UID dictionary (``CT Image Storage``,
    ``Secondary Capture Image Storage``...); a class it does not know is not an image.
    """
    return "Image Storage" in UID(sop_class).name


def _storage_class(work: _Work, sop_class: str) -> None:
    """Refuse a SOP Class UID that names no storage IOD (a query, a private class)."""
    uid = UID(sop_class)
    if uid.name == str(uid):
        raise ConversionError(
            f"SOP Class UID {shown(sop_class)} is not a standard one: no IOD known to "
            "convert it as",
            source=work.source,
            tag=0x00080016,
        )
    if "Storage" not in uid.name:
        raise ConversionError(
            f"SOP Class UID {sop_class} ({uid.name}) is not a storage SOP class: "
            "not a stored object, no IOD to convert it to",
            source=work.source,
            tag=0x00080016,
        )


def _convert(work: _Work) -> list[Dataset]:
    src = work.decoded.dataset
    legacy = not str(src.get("SOPClassUID") or "").strip()  # empty: chosen as for ACR-NEMA
    if not legacy:
        _storage_class(work, str(src.SOPClassUID).strip())
    elif 0x00080052 in src and not _has_pixels(src):
        level = str(src[0x00080052].value or "").strip()
        raise ConversionError(
            f"a query (C-FIND identifier, Query/Retrieve Level {shown(level)}), not a stored "
            "object: no IOD to convert it to",
            source=work.source,
            tag=0x00080052,
        )
    compression = str(src.get(0x00280060).value or "").strip() if 0x00280060 in src else ""
    if compression and compression.upper() != "NONE":
        raise ConversionError(
            f"ACR-NEMA compressed pixel data (Compression Code {shown(compression)}) "
            "is not supported",
            source=work.source,
            tag=0x00280060,
        )
    empty = _empty_type1(src)
    _sort_elements(work, src)
    _normalise(work, work.out)
    _drop_degenerate_geometry(work)
    out = work.out
    _check_integers(work, src)
    pixel_frames = _pixels(work, src) if _has_pixels(src) else None
    work.at = None
    sop_class = _choose_sop_class(work) if legacy else str(src.SOPClassUID).strip()
    if pixel_frames is None and _is_image_class(sop_class):
        # never an image object without its image; an ACR-NEMA data set has no other home
        if not legacy:
            what = f"{UID(sop_class).name} without Pixel Data"
        elif "Rows" in src or "Columns" in src:
            what = "an image header (Rows, Columns) without Pixel Data"
        else:
            what = "an ACR-NEMA data set without Pixel Data"
        raise ImageDataError(
            f"{what}; no DICOM object without an image fits it",
            source=work.source,
            tag=_pixel_group(src) << 16 | 0x0010,
        )
    out.SOPClassUID = sop_class
    _study_date(work)
    _identity(work)
    _repair_structure(work)
    _complete_iod(work, sop_class, legacy)
    _window(work)
    _fill_empty_type1(work, empty)
    if pixel_frames is None or not legacy or pixel_frames.encapsulated is not None:
        return [_instance(work, pixel_frames, None, 1)]
    frames = pixel_frames.array.shape[0]
    return [_instance(work, pixel_frames, index, frames) for index in range(frames)]


_TYPE1_GENERATED = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "ImageType",
)
"""Type 1 attributes whose value the converter generates when the source lacks one
(docs/conversion.md, "Repairs"): an empty one in the source is replaced, and kept."""


def _empty_type1(src: Dataset) -> list[DataElement]:
    """The source's Type 1 elements of :data:`_TYPE1_GENERATED` that are present but empty."""
    return [
        src[keyword]
        for keyword in _TYPE1_GENERATED
        if keyword in src and (src[keyword].value is None or str(src[keyword].value).strip() == "")
    ]


def _fill_empty_type1(work: _Work, empty: list[DataElement]) -> None:
    """Record each empty Type 1 value the conversion replaced in Original Attributes."""
    for element in empty:
        keyword = element.keyword
        if keyword == "SOPInstanceUID" or work.out.get(keyword):
            value = work.out.get(keyword) or "a UID derived from the content"
            work.keep_original(element, f"empty Type 1 value: generated {shown(str(value))}")


def _has_pixels(src: Dataset) -> bool:
    group = _pixel_group(src)
    return (group << 16 | 0x0010) in src


def _pixel_group(src: Dataset) -> int:
    location = src.get(0x00280200)
    if (
        location is not None
        and isinstance(location.value, int)
        and 0x7F00 <= location.value <= 0x7FFF
    ):
        return int(location.value)
    return 0x7FE0


def _sort_elements(work: _Work, src: Dataset) -> None:
    """Keep, map or set aside every top-level element of the source."""
    creators = {
        (int(e.tag) >> 16, int(e.tag) & 0xFF)
        for e in src
        if (int(e.tag) >> 16) & 1 and 0x10 <= int(e.tag) & 0xFFFF <= 0xFF
    }
    pixel_group = _pixel_group(src)
    for element in src:
        tag = int(element.tag)
        work.at = tag
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 or tag in _STRUCTURAL:
            continue  # group lengths and Length to End: framing, recomputed by the writer
        if group == pixel_group and elem == 0x0010:
            continue  # pixels: handled by _pixels
        if 0x6000 <= group <= 0x601E and not group & 1 and elem in (0x0110, 0x0200):
            work.keep_original(element, "ACR-NEMA overlay element, no DICOM home")
            continue
        if group & 1:
            if 0x10 <= elem <= 0xFF or (group, elem >> 8) in creators:
                work.out[tag] = element
            else:
                work.keep_original(element, "private element without a private creator")
            continue
        if group in (0x0000, 0x0002) or (group >= 0x7F00 and group != 0x7FE0):
            work.keep_original(element, "command or variable-pixel element in a data set")
            continue
        try:
            retired = dictionary_is_retired(tag)
        except KeyError:
            work.keep_original(element, "element not in the DICOM dictionary")
            continue
        if tag in _RETIRED_USED:
            work.keep_original(element, "ACR-NEMA element, mapped to its DICOM home")
            continue
        if retired:
            work.keep_original(element, "retired ACR-NEMA element without a DICOM home")
            continue
        work.out[tag] = element


def _normalise(work: _Work, ds: Dataset) -> None:
    """Normalise every string value; repair what can be repaired, set aside the rest."""
    for element in list(ds):
        tag = int(element.tag)
        work.at = tag
        if element.VR == "SQ":
            for item in element.value:  # items of headerless DICOM inputs: same rules
                _normalise(work, item)
            continue
        if element.VR not in STRING_VRS or element.value is None:
            continue
        texts = _texts(element)
        while texts and texts[-1].strip(" \x00") == "":
            texts.pop()  # trailing backslashes
        fixed: list[str] = []
        broken = lossy = notable = assumed = False
        for text in texts:
            fix = fix_value(text, element.VR)
            if fix.value is None:
                broken = True
                break
            lossy |= fix.lossy
            notable |= fix.notable
            assumed |= fix.assumed
            fixed.append(fix.value)
        allowed = _ENUMERATED.get(tag)
        if not broken and allowed is not None and any(v not in allowed for v in fixed if v):
            broken = True
        if broken:
            work.keep_original(element, f"invalid value {shown(element.value)} removed, left empty")
            ds[tag] = DataElement(tag, element.VR, None)
            continue
        if lossy:
            work.keep_original(
                element, f"value {shown(element.value)} shortened or rounded to {shown(fixed)}"
            )
        elif assumed:
            work.keep_original(element, f"value {shown(element.value)} repaired as {shown(fixed)}")
        elif notable:
            work.warn(
                f"{format_tag(tag)} {_name(element)}: {shown(element.value)} rewritten as "
                f"{shown(fixed)}"
            )
        value: str | list[str] | None = None
        if len(fixed) == 1:
            value = fixed[0]
        elif fixed:
            value = fixed
        ds[tag] = DataElement(tag, element.VR, value)


def _pixels(work: _Work, src: Dataset) -> Pixels:
    group = _pixel_group(src)
    tag = group << 16 | 0x0010
    if group != 0x7FE0:
        work.warn(
            f"pixel data read from group {group:04X} (Image Location), written to (7FE0,0010)"
        )
    work.at = tag
    data = src[tag].value
    if not isinstance(data, bytes):
        raise ConversionError("pixel data is not native", source=work.source, tag=tag)
    raw = next((e for e in work.decoded.elements if e.tag == tag), None)
    if raw is not None and is_encapsulated(data, raw.length):
        return _encapsulated(work, src, tag, data)
    meta = work.decoded.file_meta
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and syntax.is_compressed:
        raise ConversionError(
            f"compressed transfer syntax {syntax.name} without encapsulated pixel data",
            source=work.source,
            tag=tag,
        )
    rows, columns = _header_int(work, src, 0x00280010), _header_int(work, src, 0x00280011)
    if not rows or not columns:
        raise ConversionError("Rows or Columns missing or zero", source=work.source, tag=0x00280010)
    code = work.decoded.recognition_code.upper()
    if code.startswith("ACRNEMA_LIBIDO"):
        rows, columns = columns, rows
        work.warn("LIBIDO file: Rows and Columns swapped back")
    samples = _header_int(work, src, 0x00280002) or 1
    frames, frames_tag = 1, tag
    dims = src.get(0x00280005)
    planes = src.get(0x00280012)
    if dims is not None and dims.value == 3 and planes is not None and planes.value:
        frames, frames_tag = _header_int(work, src, 0x00280012), 0x00280012
    elif "NumberOfFrames" in src and src.NumberOfFrames:
        frames, frames_tag = _header_int(work, src, 0x00280008), 0x00280008
    ba = _header_int(work, src, 0x00280100, None)
    bs = _header_int(work, src, 0x00280101, None)
    if ba is None and bs is None:
        raise ConversionError(
            "neither Bits Allocated nor Bits Stored", source=work.source, tag=0x00280100
        )
    if ba is None:
        assert bs is not None
        ba = (bs + 7) // 8 * 8
        work.repair(
            Repair(
                RepairKind.HEADER,
                "bits-allocated-missing",
                f"Bits Allocated missing: {ba} derived from Bits Stored",
            )
        )
    if bs is None or bs > ba or bs < 1:
        work.repair(
            Repair(
                RepairKind.HEADER,
                "bits-stored-inconsistent",
                f"Bits Stored {bs} inconsistent with Bits Allocated {ba}: set to {ba}",
            )
        )
        bs = ba
    hb_value = _header_int(work, src, 0x00280102, None)
    hb = hb_value if hb_value is not None else bs - 1
    if hb >= ba or hb < bs - 1:
        work.repair(
            Repair(
                RepairKind.HEADER,
                "high-bit-inconsistent",
                f"High Bit {hb} inconsistent: set to {bs - 1}",
            )
        )
        hb = bs - 1
    pr = _header_int(work, src, 0x00280103)
    photometric = str(work.out.get("PhotometricInterpretation") or "").strip()
    _check_size(work, tag, frames, frames_tag, rows * columns * samples, ba)
    overlay_bits = {}
    for g in range(0x6000, 0x6020, 2):
        oba, pos = src.get((g, 0x0100)), src.get((g, 0x0102))
        if oba is not None and pos is not None and oba.value == ba and pos.value is not None:
            overlay_bits[g] = int(pos.value)
    try:
        pixels = decode_native(
            data,
            rows=rows,
            columns=columns,
            frames=frames,
            samples=samples,
            bits_allocated=ba,
            bits_stored=bs,
            high_bit=hb,
            pixel_representation=pr,
            overlay_bits=overlay_bits,
            photometric=photometric,
        )
    except ImageDataError as exc:
        raise ImageDataError(
            exc.reason, source=work.source, tag=tag, offset=_offset(work, tag)
        ) from exc
    except ValueError as exc:
        raise ConversionError(
            str(exc), source=work.source, tag=tag, offset=_offset(work, tag)
        ) from exc
    work.notes.extend(pixels.notes)
    for repair in pixels.repairs:
        work.repair(repair)
    out = work.out
    out.Rows, out.Columns = rows, columns
    out.SamplesPerPixel = samples
    if "PhotometricInterpretation" not in out or not out.PhotometricInterpretation:
        out.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1 and ("PlanarConfiguration" not in out or photometric in SUBSAMPLED):
        out.PlanarConfiguration = 0  # the only value for YBR_FULL_422 (PS3.3 C.7.6.3.1.3)
    _planar_configuration(work, samples)
    out.BitsAllocated = pixels.bits_allocated
    out.BitsStored = pixels.bits_stored
    out.HighBit = pixels.high_bit
    out.PixelRepresentation = pixels.pixel_representation
    for name in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if name in out:
            del out[name]
            work.warn(f"{name} dropped: recomputed range may differ after bit changes")
    for overlay in pixels.overlays:
        g = overlay.group
        out.add_new((g, 0x0010), "US", rows)
        out.add_new((g, 0x0011), "US", columns)
        if (g, 0x0040) not in out or not out[(g, 0x0040)].value:
            out.add_new((g, 0x0040), "CS", "G")
        if (g, 0x0050) not in out or not out[(g, 0x0050)].value:
            out.add_new((g, 0x0050), "SS", [1, 1])
        out.add_new((g, 0x0100), "US", 1)
        out.add_new((g, 0x0102), "US", 0)
        out.add_new((g, 0x3000), "OW", overlay.data)
    for g in range(0x6000, 0x6020, 2):
        if g not in {o.group for o in pixels.overlays}:
            for elem in (0x0010, 0x0011, 0x0040, 0x0050, 0x0100, 0x0102):
                if (g, elem) in out and (g, 0x3000) not in out:
                    work.keep_original(out[(g, elem)], "overlay without overlay data")
                    del out[(g, elem)]
    return pixels


def _header_int(work: _Work, src: Dataset, tag: int, default: int | None = 0) -> int:
    """An integer of the image header; a value that is none is an error naming its tag."""
    element = src.get(tag)
    if element is None or element.value is None or element.value == "":
        return default  # type: ignore[return-value]
    value = element.value[0] if isinstance(element.value, (list, MultiValue)) else element.value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConversionError(
            f"{_name(element)} {shown(value)} is not a number", source=work.source, tag=tag
        ) from None


def _planar_configuration(work: _Work, samples: int) -> None:
    """Planar Configuration is Type 1C, present only when Samples per Pixel > 1 (C.7.6.3)."""
    out = work.out
    if samples == 1 and "PlanarConfiguration" in out:
        work.keep_original(out["PlanarConfiguration"], "not allowed with one sample a pixel")
        del out.PlanarConfiguration


def _encapsulated(work: _Work, src: Dataset, tag: int, items: bytes) -> Pixels:
    """Compressed pixel data: its compression named from the fragments, kept byte for byte.

    A Part 10 input's transfer syntax is used as given; a data set without one gets the
    syntax the fragments show. Nothing is decoded, so nothing in the image can change.
    """
    meta = work.decoded.file_meta
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        compression = identify_encapsulated(items)
    except ValueError as exc:
        if syntax is None or not syntax.is_compressed:
            raise ConversionError(str(exc), source=work.source, tag=tag) from exc
        compression = None
    if syntax is not None and syntax.is_compressed:
        name = compression.name if compression is not None else syntax.name
        lossy = compression.lossy if compression is not None else str(syntax) in LOSSY_SYNTAXES
        compression = Compression(str(syntax), name, items, lossy)
    elif compression is None:  # pragma: no cover - identify_encapsulated raised above
        raise ConversionError("compressed pixel data", source=work.source, tag=tag)
    else:
        work.warn(
            f"compressed pixel data ({compression.name}) without a transfer syntax: "
            f"written as {UID(compression.syntax).name}, fragments unchanged"
        )
    frames = _header_int(work, src, 0x00280012) if 0x00280012 in src else 1
    if "SOPClassUID" not in src and frames > 1:
        raise ConversionError(
            f"compressed pixel data ({compression.name}) in {frames} ACR-NEMA planes: "
            "splitting compressed planes into objects is not supported",
            source=work.source,
            tag=0x00280012,
        )
    out = work.out
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        if not out.get(keyword) and out.get(keyword) != 0:
            raise ConversionError(
                f"compressed pixel data ({compression.name}) without {keyword}",
                source=work.source,
                tag=tag,
            )
    samples = _header_int(work, src, 0x00280002) or 1
    out.SamplesPerPixel = samples
    if not out.get("PhotometricInterpretation"):
        out.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if "PixelRepresentation" not in out or out.PixelRepresentation is None:
        out.PixelRepresentation = 0
    _planar_configuration(work, samples)
    if compression.lossy and not out.get("LossyImageCompression"):
        out.LossyImageCompression = "01"
        work.warn(f"Lossy Image Compression 01 added: the pixel data is {compression.name}")
    return Pixels(
        np.zeros((1, 0), dtype=np.uint8),
        int(out.BitsAllocated),
        int(out.BitsStored),
        int(out.HighBit),
        int(out.PixelRepresentation),
        samples,
        encapsulated=compression,
    )


def _check_size(work: _Work, tag: int, frames: int, frames_tag: int, cells: int, ba: int) -> None:
    """Refuse, from the header alone, an image beyond the frame, pixel or output limits.

    Nothing is decoded or copied before this: the pixel array and the output objects are
    sized from Rows, Columns, Samples per Pixel, Bits Allocated and the frame count.
    """
    options, source = work.options, work.source
    if frames < 1:
        raise ConversionError(f"{frames} is not a number of frames", source=source, tag=frames_tag)
    if frames > options.max_frames:
        raise ConversionError(
            f"{frames} frames, more than the limit of {options.max_frames} "
            "(convert --max-frames raises it)",
            source=source,
            tag=frames_tag,
        )
    # packed cells are unpacked to 16 bits, 1-bit cells to one byte each
    cell_bytes = ba // 8 if ba in (8, 16, 32) else (1 if ba == 1 else 2)
    pixel_bytes = cells * frames * cell_bytes
    if pixel_bytes > options.max_pixel_bytes:
        raise ConversionError(
            f"the decoded pixel data would take {_mib(pixel_bytes)} ({frames} frames of "
            f"{cells} cells of {cell_bytes * 8} bits), more than the limit of "
            f"{_mib(options.max_pixel_bytes)} (convert --max-pixel-mb raises it)",
            source=source,
            tag=tag,
        )
    # Every ACR-NEMA plane becomes an object of its own that carries the whole header.
    objects = frames if "SOPClassUID" not in work.decoded.dataset else 1
    header = sum(e.end - e.offset for e in work.decoded.elements if e.tag != tag)
    output = pixel_bytes + objects * header
    if output > options.max_output_bytes:
        parts = (
            f"{objects} objects, each with a header of {_mib(header)}"
            if objects > 1
            else f"pixels and a header of {_mib(header)}"
        )
        raise ConversionError(
            f"the output would take about {_mib(output)} ({parts}), more than the limit of "
            f"{_mib(options.max_output_bytes)} (convert --max-output-mb raises it)",
            source=source,
            tag=frames_tag if objects > 1 else tag,
        )


def _offset(work: _Work, tag: int) -> int | None:
    for element in work.decoded.elements:
        if element.tag == tag:
            return element.offset
    return None


def _choose_sop_class(work: _Work) -> str:
    out = work.out
    modality = str(out.get("Modality") or "").strip()
    if not modality:
        out.Modality = "OT"
        work.warn("Modality missing: OT")
        return SECONDARY_CAPTURE
    _geometry(work)
    missing = [
        k
        for k in ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")
        if not out.get(k)
    ]
    if modality in ("CT", "MR") and missing:
        work.warn(f"{modality} without {', '.join(missing)}: stored as Secondary Capture")
        return SECONDARY_CAPTURE
    bits = (int(out.get("BitsAllocated") or 0), int(out.get("BitsStored") or 0))
    if (modality == "CT" and (bits[0] != 16 or not 12 <= bits[1] <= 16)) or (
        modality == "MR" and bits[0] != 16
    ):
        # the CT Image module allows 16 bits allocated, 12 to 16 stored (PS3.3 C.8.2.1),
        # the MR Image module 16 allocated (C.8.3.1); Secondary Capture takes any
        work.warn(
            f"{modality} with Bits Allocated {bits[0]}, Bits Stored {bits[1]}: "
            "stored as Secondary Capture"
        )
        return SECONDARY_CAPTURE
    if modality == "CT":
        return CT_IMAGE
    if modality == "MR":
        sequence = _mr_scanning_sequence(work)
        if sequence is None:
            work.warn("MR without a recognisable Scanning Sequence: stored as Secondary Capture")
            return SECONDARY_CAPTURE
        return MR_IMAGE
    return SECONDARY_CAPTURE


def _mr_scanning_sequence(work: _Work) -> list[str] | None:
    out = work.out
    value = out.get("ScanningSequence")
    given = (
        [str(v) for v in value]
        if isinstance(value, (list, MultiValue))
        else ([str(value)] if value else [])
    )
    allowed = {"SE", "IR", "GR", "EP", "RM"}
    if given and all(v in allowed for v in given):
        return given
    original = work.decoded.dataset.get(0x00180020)
    text = " ".join(given) or (str(original.value) if original is not None else "")
    found = [code for word, code in _MR_SEQUENCES if word in text.upper()]
    if not found:
        return None
    found = list(dict.fromkeys(found))
    if given:
        work.keep_original(
            out["ScanningSequence"], f"Scanning Sequence {shown(text)} mapped to {found}"
        )
    out.ScanningSequence = found
    return found


def _geometry(work: _Work) -> None:
    """Image Position / Orientation (Patient) from the gantry-relative ACR-NEMA elements."""
    out, src = work.out, work.decoded.dataset
    if "SliceLocation" not in out and 0x00200050 in src:
        location = fix_value(str(src[0x00200050].value), "DS").value
        if location:
            out.SliceLocation = location
    # the valid DICOM element wins over its ACR-NEMA predecessor (kept in Original
    # Attributes); a predecessor only fills the DICOM element that is missing
    has_position = bool(out.get("ImagePositionPatient"))
    has_orientation = bool(out.get("ImageOrientationPatient"))
    if has_position and has_orientation:
        _set_aside_degenerate(work, src.get(0x00200035))
        return
    position, orientation = src.get(0x00200030), src.get(0x00200035)
    if position is None or orientation is None:
        return
    try:
        pos = np.array([float(str(v)) for v in _values(position.value)], dtype=float)
        ori = np.array([float(str(v)) for v in _values(orientation.value)], dtype=float)
    except (TypeError, ValueError):
        work.warn("Image Position / Orientation unreadable: geometry left out")
        return
    if pos.shape != (3,) or ori.shape != (6,):
        work.warn("Image Position / Orientation have the wrong number of values")
        return
    usable = geometry.is_orientation(ori)
    if not usable:  # kept as bytes: dciodvfy checks Original Attributes' values too
        work.retired = [e for e in work.retired if int(e.tag) != 0x00200035]
        work.nonconforming.append((0x00200035, "DS", _raw_value(orientation)))
    if not usable and not has_orientation:
        work.warn(
            "Image Orientation (0020,0035) is not two orthogonal unit vectors "
            f"({shown(list(ori))}): geometry left out"
        )
        return
    stated_position = src.get(0x00185100)
    word = str(stated_position.value or "").strip() if stated_position is not None else ""
    candidates = geometry.posture_candidates(word) if word else ["HFS", "FFS"]
    if word and not candidates:
        work.warn(f"Patient Position {shown(word)} not understood: geometry left out")
        return
    stated = (
        [str(v).strip().upper() for v in (src.get(0x00200020).value or [])]
        if 0x00200020 in src
        else []
    )
    chosen, confirmed = candidates[0], False
    for code in candidates if usable else ():
        m = geometry.patient_matrix(code)
        letters = geometry.orientation_letters(np.concatenate([m @ ori[:3], m @ ori[3:]]))
        if len(stated) == 2 and [s[:1] for s in stated] == list(letters):
            chosen, confirmed = code, True
            break
    m = geometry.patient_matrix(chosen)
    new_pos = m @ pos
    new_ori = np.concatenate([m @ ori[:3], m @ ori[3:]])
    if not has_position:
        out.ImagePositionPatient = [_ds(v) for v in new_pos]
    if not has_orientation:
        out.ImageOrientationPatient = [_ds(v) for v in new_ori]
    if confirmed:
        out.PatientPosition = chosen
        work.warn(
            f"geometry: patient position {chosen} "
            f"(from {word or 'default'} and Patient Orientation)"
        )
    else:
        work.warn(
            f"geometry: patient position {chosen} assumed (head first unless stated); "
            "Patient Position left empty"
        )


def _values(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, MultiValue)) else [value]


def _set_aside_degenerate(work: _Work, orientation: DataElement | None) -> None:
    """An ACR-NEMA Image Orientation (0020,0035) that is not two orthogonal unit vectors
    (XMedCon writes zeros beside a valid (0020,0037)) goes to Original Attributes as
    bytes, never as an element: dciodvfy checks Original Attributes' values too."""
    if orientation is None:
        return
    try:
        ori = np.array([float(str(v)) for v in _values(orientation.value)], dtype=float)
    except (TypeError, ValueError):
        return  # not numbers: keep_original already set it aside as bytes
    if ori.shape == (6,) and geometry.is_orientation(ori):
        return
    work.retired = [e for e in work.retired if int(e.tag) != 0x00200035]
    work.nonconforming.append((0x00200035, "DS", _raw_value(orientation)))


def _drop_degenerate_geometry(work: _Work) -> None:
    """Image Orientation (Patient) that is not two orthogonal unit vectors is removed.

    Zero vectors (a placeholder), non-unit or non-orthogonal ones would make every
    reader's geometry wrong; the value goes to Original Attributes and, for an ACR-NEMA
    input, the predecessor (0020,0035) may still fill it (:func:`_geometry`).
    """
    out = work.out
    value = out.get("ImageOrientationPatient")
    if "ImageOrientationPatient" not in out or value is None or value == "":
        return
    try:
        ori = np.array([float(str(v)) for v in _values(value)], dtype=float)
    except (TypeError, ValueError):
        ori = np.zeros(0)
    if not geometry.is_orientation(ori):
        work.keep_original(
            out["ImageOrientationPatient"],
            "not two orthogonal unit vectors: removed (never written degenerate)",
            sound=False,
        )
        del out.ImageOrientationPatient


def _ds(value: float) -> str:
    fixed = fix_value(repr(float(value) + 0.0), "DS").value
    return fixed if fixed is not None else "0"


def _usable(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword``, or "" when it is absent or a placeholder ("Unknown")."""
    value = str(ds.get(keyword) or "")
    return "" if is_placeholder(value) else value


def _study_key(work: _Work) -> tuple[str, ...]:
    """What tells the input's study: its own Study Instance UID, else who and when.

    The source's Study Instance UID is the study, whatever else is missing, so that the
    slices of one study get one generated Patient ID. Without one, placeholders count as
    absent, and an input that says nothing of its study is a study of its own (splitting
    is safer than merging).
    """
    out = work.out
    if work.source_study_uid:
        return ("study-uid", work.source_study_uid)
    who = _usable(out, "PatientID") or _usable(out, "PatientName")
    study = (who, _usable(out, "StudyID"), str(out.get("StudyDate") or ""))
    if not any(study):
        return ("source", work.key)
    if not study[2] and not study[1]:
        return (*study, str(out.get("StudyTime") or ""), work.key)
    return study


def _identity(work: _Work) -> None:
    """Patient ID, Study / Series / Frame of Reference UIDs."""
    out, options = work.out, work.options
    work.source_study_uid = str(out.get("StudyInstanceUID") or "")
    for keyword in ("PatientID", "StudyID"):  # both are generated when absent
        if out.get(keyword) and is_placeholder(str(out.get(keyword))):
            work.keep_original(out[keyword], "a placeholder, not an identity: generated anew")
            setattr(out, keyword, None)
    if not out.get("PatientID") and options.patient_id is not PatientIdPolicy.NONE:
        name = _usable(out, "PatientName")
        birth = str(out.get("PatientBirthDate") or "")
        if options.patient_id is PatientIdPolicy.SOURCE:
            basis: tuple[str, ...] = ("source", work.key)
        elif options.patient_id is PatientIdPolicy.NAME:
            basis = (name, birth)
        else:
            basis = (name, birth, *_study_key(work))
        out.PatientID = "ANB" + uids.derived_uid("patient", *basis).split(".")[-1][:16]
        out.IssuerOfPatientID = options.issuer_of_generated_id
        work.warn(
            f"Patient ID missing: generated {out.PatientID} ({options.patient_id.value} policy)"
        )
    study_key = _study_key(work)
    if not out.get("StudyInstanceUID"):
        out.StudyInstanceUID = uids.derived_uid("study", *study_key)
    series_parts = (
        *study_key,
        str(out.get("Modality") or ""),
        str(out.get("SeriesNumber") or ""),
        str(out.get("SeriesDescription") or ""),
    )
    if not out.get("SeriesInstanceUID"):
        out.SeriesInstanceUID = uids.derived_uid("series", *series_parts)
    if "ImagePositionPatient" in out and not out.get("FrameOfReferenceUID"):
        out.FrameOfReferenceUID = uids.derived_uid("frame-of-reference", *series_parts)


def _study_date(work: _Work) -> None:
    """A missing Study Date / Time is taken from the series, acquisition or content ones."""
    out = work.out
    for target, sources in (
        ("StudyDate", ("SeriesDate", "AcquisitionDate", "ContentDate")),
        ("StudyTime", ("SeriesTime", "AcquisitionTime", "ContentTime")),
    ):
        if out.get(target):
            continue
        found = next((k for k in sources if out.get(k)), None)
        if found is not None:
            setattr(out, target, out.get(found))
            work.warn(f"{target} missing: taken from {found}")


def _repair_structure(work: _Work) -> None:
    """Repairs that apply to every input, headerless DICOM included."""
    out = work.out
    # UIDs of different levels must differ; the lower level is made anew.
    levels = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID")
    for i, lower in enumerate(levels[1:], 1):
        if lower not in out or not out.get(lower):
            continue
        for upper in levels[:i]:
            if out.get(upper) and str(out.get(lower)) == str(out.get(upper)):
                original = out[lower]  # a copy is changed: the original is kept as it was
                work.keep_original(original, f"same UID as {upper}: made anew")
                # from the data set's own instance UID when it has one, so that the same
                # data set in another encoding gets the same new UID
                basis = str(out.get("SOPInstanceUID") or "") if lower != "SOPInstanceUID" else ""
                out[lower] = DataElement(
                    original.tag,
                    original.VR,
                    uids.derived_uid(lower, basis or work.key, str(out.get(upper))),
                )
                break
    if "ImageType" in out and out.ImageType and not isinstance(out.ImageType, (list, MultiValue)):
        words = str(out.ImageType).split()
        if len(words) > 1 and words[0] in ("ORIGINAL", "DERIVED"):
            work.keep_original(out["ImageType"], f"one value with spaces, split into {words}")
            out.ImageType = words
    ratio = out.get("PixelAspectRatio")
    if ratio is not None:
        values = list(ratio) if isinstance(ratio, (list, MultiValue)) else [ratio]
        if len(values) != 2 or values[0] == values[1] or out.get("PixelSpacing"):
            work.keep_original(
                out["PixelAspectRatio"], "not allowed with Pixel Spacing, 1:1 or not two values"
            )
            del out.PixelAspectRatio
    if "PatientOrientationCodeSequence" in out and out.get("PatientPosition") is not None:
        work.keep_original(
            out["PatientPosition"], "not allowed with Patient Orientation Code Sequence"
        )
        del out.PatientPosition
    for keyword in _TYPE3_SEQUENCES:
        if keyword in _TYPE2_IN_DOCUMENTS and str(out.get("Modality") or "") in ("SR", "KO"):
            continue  # Type 2 in the SR and Key Object Document Series modules
        if keyword in out and out[keyword].VR == "SQ" and len(out[keyword].value) == 0:
            del out[keyword]
            work.warn(f"empty {keyword} removed")


def _complete_iod(work: _Work, sop_class: str, legacy: bool) -> None:
    """Type 1 values the converter knows, and every missing Type 2 attribute, empty."""
    out, src = work.out, work.decoded.dataset
    if not out.get("StudyID"):
        out.StudyID = "ANB" + str(int(str(out.StudyInstanceUID).split(".")[-1]) % 10**9)
        work.warn(f"Study ID missing: generated {out.StudyID} from the study")
    type2 = list(_TYPE2.get(sop_class, _COMMON_TYPE2))
    if str(out.get("Modality") or "").startswith("RT"):
        type2 += _RT_TYPE2
    if "PixelData" not in out and "Rows" not in out:
        type2 = [
            k for k in type2 if k not in ("Laterality", "PatientOrientation", "InstanceNumber")
        ]
    if "SharedFunctionalGroupsSequence" in out:
        # an enhanced multi-frame object (a Segmentation) says laterality per frame (Frame
        # Anatomy); an empty Laterality there is "present when condition unsatisfied"
        type2 = [k for k in type2 if k != "Laterality"]
    if out.get("BodyPartExamined"):
        # Laterality is Type 2C on a paired body part; with a body part named, an empty
        # Laterality would claim a paired part, so it is left out.
        type2 = [k for k in type2 if k != "Laterality"]
        if "Laterality" in out and not out.Laterality:
            del out.Laterality
    if sop_class == MR_IMAGE:
        sequence = [
            str(v)
            for v in (
                out.ScanningSequence
                if isinstance(out.get("ScanningSequence"), (list, MultiValue))
                else [out.get("ScanningSequence")]
            )
        ]
        if "IR" not in sequence and out.get("InversionTime") is not None:
            work.keep_original(out["InversionTime"], "only allowed for inversion recovery")
            del out.InversionTime
    if not legacy:
        for keyword in type2:
            if keyword not in out:
                setattr(out, keyword, None)
        return
    derived = 0x00280050 in src or 0x00203401 in src
    if not out.get("ImageType"):
        kind = (
            ["DERIVED", "SECONDARY"]
            if derived or sop_class == SECONDARY_CAPTURE
            else ["ORIGINAL", "PRIMARY"]
        )
        if sop_class == CT_IMAGE:
            kind.append("AXIAL")
        elif sop_class == MR_IMAGE:
            kind.append("OTHER")
        out.ImageType = kind
    if sop_class == CT_IMAGE and not (out.get("RescaleIntercept") and out.get("RescaleSlope")):
        out.RescaleIntercept, out.RescaleSlope = "0", "1"
        work.warn("CT without Rescale Intercept/Slope: 0 and 1 assumed")
    if sop_class == MR_IMAGE:
        if not out.get("SequenceVariant"):
            out.SequenceVariant = "NONE"
            work.warn("MR Sequence Variant unknown: NONE (the defined term for no variant)")
        sequence = [
            str(v)
            for v in (
                out.ScanningSequence
                if isinstance(out.ScanningSequence, (list, MultiValue))
                else [out.ScanningSequence]
            )
        ]
        if "EP" not in sequence and "RM" not in sequence and "RepetitionTime" not in out:
            out.RepetitionTime = None
        if "IR" in sequence and "InversionTime" not in out:
            out.InversionTime = None
    if sop_class == SECONDARY_CAPTURE and not out.get("Modality"):
        out.Modality = "OT"
    if sop_class == SECONDARY_CAPTURE and "RescaleIntercept" in out and not out.get("RescaleType"):
        # Type 1C in Secondary Capture's Modality LUT (PS3.3 C.11.1): a CT's values are HU
        out.RescaleType = "HU" if out.get("Modality") == "CT" else "US"
        work.warn(f"Secondary Capture with a rescale: Rescale Type {out.RescaleType}")
    for keyword in type2:
        if keyword not in out:
            setattr(out, keyword, None)
    if (
        sop_class in (CT_IMAGE, MR_IMAGE)
        and "PatientOrientation" in out
        and not out.PatientOrientation
    ):
        del out.PatientOrientation
    out.ConversionType = "DI"


def _window(work: _Work) -> None:
    """Zero-length or unpaired Window Center / Width are removed."""
    out = work.out
    center, width = out.get("WindowCenter"), out.get("WindowWidth")
    if center is None and width is None:
        return
    centers = (
        list(center)
        if isinstance(center, (list, MultiValue))
        else ([center] if center not in (None, "") else [])
    )
    widths = (
        list(width)
        if isinstance(width, (list, MultiValue))
        else ([width] if width not in (None, "") else [])
    )
    n = min(len(centers), len(widths))
    if n == 0:
        for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
            if keyword in out:
                del out[keyword]
        work.warn("empty or unpaired Window Center/Width removed")
        return
    if len(centers) != len(widths):
        work.warn("Window Center/Width counts differ: extra values dropped")
    out.WindowCenter = centers[:n] if n > 1 else centers[0]
    out.WindowWidth = widths[:n] if n > 1 else widths[0]


def _instance(work: _Work, pixels: Pixels | None, index: int | None, frames: int) -> Dataset:
    """One output object: plane ``index`` of a multi-plane image, or all frames (None)."""
    ds = copy.deepcopy(work.out) if frames > 1 else work.out
    if pixels is not None and pixels.encapsulated is not None:
        ds.PixelData = pixels.encapsulated.items
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    elif pixels is not None:
        frame = pixels.array if index is None else pixels.array[index]
        if pixels.bits_allocated == 1:
            ds.PixelData = pack_bits(frame)  # each object's bits from its own first byte
        else:
            ds.PixelData = _little_endian_bytes(frame)
        ds["PixelData"].VR = "OW" if pixels.bits_allocated > 8 else "OB"
    index = index or 0
    if not ds.get("SOPInstanceUID"):
        ds.SOPInstanceUID = uids.derived_uid("instance", work.key, index)
    elif frames > 1:
        ds.SOPInstanceUID = uids.derived_uid("instance", str(ds.SOPInstanceUID), index)
    if frames > 1:
        _plane_position(work, ds, index)
    comments = [
        str(work.decoded.dataset[t].value)
        for t in (0x00084000, 0x00184000, 0x00284000)
        if t in work.decoded.dataset and work.decoded.dataset[t].value
    ]
    if comments and not ds.get("ImageComments"):
        ds.ImageComments = fix_value(" / ".join(comments), "LT").value
    _provenance(work, ds)
    ds.file_meta = _file_meta(ds)
    if pixels is not None and pixels.encapsulated is not None:
        ds.file_meta.TransferSyntaxUID = UID(pixels.encapsulated.syntax)
    return ds


def _little_endian_bytes(frame: npt.NDArray[Any]) -> bytes:
    """The bytes of ``frame`` in little-endian order.

    When the frame is all of a ``bytes`` object as it was read (the source's pixel data,
    nothing changed), that object itself: a 512x512 slice's pixels are then not copied
    once more (docs/benchmarks.md, "Cluster").
    """
    array = frame.astype(frame.dtype.newbyteorder("<"), copy=False)
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    if (
        isinstance(base, bytes)
        and array.flags.c_contiguous
        and array.nbytes == len(base)
        and array.ctypes.data == np.frombuffer(base, dtype=np.uint8).ctypes.data
    ):
        return base
    return array.tobytes()


def _plane_position(work: _Work, ds: Dataset, index: int) -> None:
    """Plane ``index`` of a multi-plane image: its own number and position."""
    base = int(ds.get("InstanceNumber") or 0) if str(ds.get("InstanceNumber") or "").strip() else 0
    ds.InstanceNumber = str(base * 1000 + index + 1) if base else str(index + 1)
    if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
        spacing = float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 0) or 1.0
        ori = np.array([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(ori[:3], ori[3:])
        pos = np.array([float(v) for v in ds.ImagePositionPatient]) + index * spacing * normal
        ds.ImagePositionPatient = [_ds(v) for v in pos]


def _provenance(work: _Work, ds: Dataset) -> None:
    decoded = work.decoded
    what = f"Converted from {decoded.kind} ({decoded.syntax.name}) by {MODIFYING_SYSTEM}"
    if decoded.kind.startswith("ACR-NEMA") or "SOPClassUID" not in decoded.dataset:
        what += "; values normalised to DICOM, retired elements in Original Attributes Sequence"
    ds.DerivationDescription = fix_value(what, "ST").value
    ds.ConversionType = ds.get("ConversionType") or "DI"
    if work.retired or work.nonconforming:
        ds.OriginalAttributesSequence = Sequence(list(_original_attributes(work)))


def _original_attributes(work: _Work) -> Iterable[Dataset]:
    """One item for the retired elements (COERCE), one per nonconforming value (CORRECT).

    PS3.3 C.12.1 allows one item in Modified Attributes Sequence and one in Nonconforming
    Modified Attributes Sequence per Original Attributes item, hence one item each.
    """
    source = fix_value(f"{work.decoded.kind} input", "LO").value

    def item(reason: str, modified: Dataset) -> Dataset:
        entry = Dataset()
        entry.AttributeModificationDateTime = RULES_DATE
        entry.ModifyingSystem = MODIFYING_SYSTEM
        entry.SourceOfPreviousValues = source
        entry.ReasonForTheAttributeModification = reason
        entry.ModifiedAttributesSequence = Sequence([modified])
        return entry

    if work.retired:
        modified = Dataset()
        for element in work.retired:
            modified[element.tag] = element
        yield item("COERCE", modified)
    for tag, vr, raw in work.nonconforming:
        entry = item("CORRECT", Dataset())
        value = Dataset()
        value.SelectorAttribute = tag
        value.SelectorAttributeVR = vr if vr in STRING_VRS or vr in _BINARY_VRS else "UN"
        value.NonconformingDataElementValue = raw
        entry.NonconformingModifiedAttributesSequence = Sequence([value])
        yield entry


def reassign_instance_uid(ds: Dataset, uid: str, reason: str) -> None:
    """Give ``ds`` the SOP Instance UID ``uid``, its old one kept in Original Attributes.

    For a batch that meets a second, different data set with a SOP Instance UID already
    used (docs/conversion.md, "Duplicate SOP Instance UIDs"): the old UID is a valid
    value, wrong only in being shared, so it goes to an item with reason CORRECT.
    """
    old = Dataset()
    old.SOPInstanceUID = ds.SOPInstanceUID
    entry = Dataset()
    entry.AttributeModificationDateTime = RULES_DATE
    entry.ModifyingSystem = MODIFYING_SYSTEM
    entry.SourceOfPreviousValues = fix_value(reason, "LO").value
    entry.ReasonForTheAttributeModification = "CORRECT"
    entry.ModifiedAttributesSequence = Sequence([old])
    items = list(ds.get("OriginalAttributesSequence") or [])
    ds.OriginalAttributesSequence = Sequence([*items, entry])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(uids.IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = uids.IMPLEMENTATION_VERSION_NAME
    return meta

"""De-identification for publication: PS3.15 Annex E, Basic Application Level
Confidentiality Profile with the options a museum needs.

:func:`deidentify` takes one converted data set and a :class:`Deidentification` (the key
and the options) and changes the data set in place, following Table E.1-1 as kept in
:mod:`bridge.dicom.annex_e`: each attribute of the table gets its action (remove, empty,
dummy, keep, clean, new UID), in the main data set and in every sequence item; private
groups go unless safelisted; attributes the table does not know are kept when standard,
removed when unknown or retired (the ACR-NEMA leftovers, whose meaning nobody checked).
It is pure: no I/O, and the same data set, key and options give the same result, in any
process, on any day.

Everything that must stay consistent across a batch and across runs is derived from the
key with HMAC-SHA-256, never drawn at random:

* UIDs (action U): ``2.25`` + a UUID made from HMAC(key, original UID), so the instances
  of a study keep one Study Instance UID, and references between objects still hold;
* the pseudonym that replaces Patient ID and Patient's Name: from HMAC(key, patient);
* under the longitudinal option with modified dates, the date offset, one per patient:
  every date of the patient moves back by the same whole number of days, between 365 and
  4017 (one to eleven years), so intervals between studies and the day of the week
  modulo 7 are not kept but intervals are; times of day are kept.

What the standard leaves to the de-identifier and how it is done here (docs/archival.md,
"Publishing: de-identification"): X/Z, X/D, X/Z/D, Z/D and X/Z/U are resolved with the
attributes our IODs need (``_NEEDED``); D writes a dummy value of the VR; C on text
(clean descriptors) keeps the text with every identifying value of the data set and every
date-like string replaced by ``*``; Z on Patient ID and Patient's Name writes the keyed
pseudonym, on Study ID a keyed value per study, so that a patient and a study stay one in
a viewer and in a DICOMDIR.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom.datadict import get_entry
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from bridge import __version__
from bridge.dicom.annex_e import COLUMNS, EDITION, TABLE

__all__ = [
    "BURN_IN_MODALITIES",
    "BURN_IN_WARNING",
    "DeidOption",
    "Deidentification",
    "burned_in_modality",
    "deidentify",
    "keyed_uid",
]


class DeidOption(enum.StrEnum):
    """The PS3.15 E.3 options ``convert --deid-option`` takes, by the name of their column."""

    LONGITUDINAL_MODIFIED_DATES = "longitudinal-modified-dates"
    LONGITUDINAL_FULL_DATES = "longitudinal-full-dates"
    PATIENT_CHARACTERISTICS = "patient-characteristics"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    DEVICE_IDENTITY = "device-identity"


# PS3.16 CID 7050 De-identification Method: (code value, code meaning), scheme DCM.
_BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
_OPTION_CODES = {
    DeidOption.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    DeidOption.LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    DeidOption.LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    DeidOption.PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    DeidOption.DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
}
_SAFE_PRIVATE_CODE = ("113111", "Retain Safe Private Option")

BURN_IN_MODALITIES = frozenset("CR DX ES GM OT RF SM US XA XC".split())
"""Modalities whose old equipment often wrote the patient's name into the pixels; the
profile cannot clean pixels, so converting one with de-identification warns."""
BURN_IN_WARNING = "the pixels may show identifying text (burned in)"
"""The start of the warning :func:`deidentify` returns for such an object; the CLI
gathers them into one WARNING per batch (:func:`burned_in_modality`)."""
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_WELL_KNOWN = "1.2.840.10008."  # DICOM's own UIDs (classes, syntaxes): never identifying
_RT_PREFIX = "1.2.840.10008.5.1.4.1.1.481."

# Attributes some IOD we write needs, for the compound action codes ("X unless Z or D is
# required to maintain IOD conformance"): (Type 1, Type 2) by SOP Class UID prefix.
_PET_PREFIX = "1.2.840.10008.5.1.4.1.1.128"
_NEEDED: dict[str, tuple[frozenset[int], frozenset[int]]] = {
    # RT Series: Operators' Name; RT General Plan: RT Plan Date and Time
    _RT_PREFIX: (frozenset(), frozenset({0x00081070, 0x300A0006, 0x300A0007})),
    # PET Series: Series Date and Time; PET Image: Acquisition Date and Time
    _PET_PREFIX: (frozenset({0x00080021, 0x00080031}), frozenset({0x00080022, 0x00080032})),
}

_DUMMY_TEXT = "REMOVED"
_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "IS": "0", "DS": "0"}
_TEXT_VRS = frozenset("AE CS LO LT PN SH ST UC UT".split())
_IDENTIFYING_VRS = frozenset("AE LO PN SH".split())
_DATE_LIKE = re.compile(r"\d{4}[-./]?\d{2}[-./]?\d{2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_SHIFT_MIN_DAYS = 365
_SHIFT_SPAN_DAYS = 3653


@dataclass(frozen=True)
class Deidentification:
    """What ``convert --deidentify`` was asked for: the key, the options, the safelist.

    ``key``
        the secret every replacement is derived from (HMAC-SHA-256); the same key gives
        the same UIDs, pseudonyms and date offsets on every run. Not empty.
    ``options``
        :class:`DeidOption` members (or their names).
    ``safe_private``
        private attributes to keep, as (Private Creator, element byte) pairs: the pair
        ``("ACME 1.0", 0x10)`` keeps (gggg,xx10) in every block that creator reserved.
        Empty by default: every private attribute goes.
    """

    key: bytes
    options: frozenset[DeidOption] = frozenset()
    safe_private: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or not self.key:
            raise ValueError("the de-identification key must be non-empty bytes")
        options = frozenset(DeidOption(o) for o in self.options)
        if {DeidOption.LONGITUDINAL_FULL_DATES, DeidOption.LONGITUDINAL_MODIFIED_DATES} <= options:
            raise ValueError(
                "longitudinal-full-dates and longitudinal-modified-dates exclude each other"
            )
        object.__setattr__(self, "options", options)
        safe = frozenset((str(c).strip().upper(), int(e) & 0xFF) for c, e in self.safe_private)
        object.__setattr__(self, "safe_private", safe)

    def digest(self, kind: str, value: str) -> bytes:
        """HMAC-SHA-256 of ``kind`` and ``value`` under the key."""
        return hmac.new(self.key, f"{kind}\x1f{value}".encode(), hashlib.sha256).digest()


def keyed_uid(deid: Deidentification, uid: str) -> str:
    """The UID that replaces ``uid``: ``2.25.`` and a UUID (version 8, RFC 9562) whose
    122 free bits come from HMAC(key, uid); at most 44 characters."""
    raw = bytearray(deid.digest("uid", uid.strip().rstrip("\0"))[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 4122 / 9562
    return f"2.25.{int.from_bytes(raw, 'big')}"


def burned_in_modality(warning: str) -> str | None:
    """The modality named by a burn-in warning of :func:`deidentify`, else None."""
    if not warning.startswith(BURN_IN_WARNING):
        return None
    return warning.rsplit("Modality ", 1)[-1].rstrip(")") or None


# ------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class _Rule:
    mask: int
    value: int
    actions: tuple[str, ...]


def _parse_table(text: str) -> tuple[dict[int, tuple[str, ...]], list[_Rule]]:
    exact: dict[int, tuple[str, ...]] = {}
    repeating: list[_Rule] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        tag = parts[0].strip("()").replace(",", "")
        actions = tuple(parts[2 : 2 + len(COLUMNS)])
        if tag == "ggggeeee":
            continue  # private attributes: handled by group parity
        if "x" in tag:
            mask = int("".join("0" if c == "x" else "F" for c in tag), 16)
            repeating.append(_Rule(mask, int(tag.replace("x", "0"), 16), actions))
        else:
            exact[int(tag, 16)] = actions
    return exact, repeating


_EXACT, _REPEATING = _parse_table(TABLE)
_OPTION_ORDER = [DeidOption(c) for c in COLUMNS if c in set(DeidOption)]


def table_actions(tag: int) -> tuple[str, ...] | None:
    """The row of Table E.1-1 for ``tag`` (all its columns), or None."""
    row = _EXACT.get(tag)
    if row is not None:
        return row
    for rule in _REPEATING:
        if tag & rule.mask == rule.value and not (tag >> 16) & 1:
            return rule.actions
    return None


def action(tag: int, options: Iterable[DeidOption]) -> str | None:
    """The action code for ``tag`` under the basic profile and ``options`` (None: not in
    the table). An option's requirement overrides the profile's; where two options
    speak, keeping (K) wins over cleaning (C)."""
    row = table_actions(tag)
    if row is None:
        return None
    chosen = row[0]
    said = [row[COLUMNS.index(o.value)] for o in _OPTION_ORDER if o in set(options)]
    said = [a for a in said if a != "-"]
    if said:
        chosen = "K" if "K" in said else said[0]
    return chosen


# ----------------------------------------------------------------------- applying it


@dataclass
class _Context:
    deid: Deidentification
    type1: frozenset[int]
    type2: frozenset[int]
    offset: datetime.timedelta
    pseudonym: str
    scrub: re.Pattern[str] | None
    study_id: str
    top: Dataset
    drop_groups: set[int] = field(default_factory=set)


def deidentify(ds: Dataset, deid: Deidentification) -> list[str]:
    """De-identify ``ds`` in place; the warnings (a burn-in warning, what was removed)."""
    warnings: list[str] = []
    patient = _patient_key(ds)
    days = _SHIFT_MIN_DAYS + int.from_bytes(deid.digest("date", patient)[:4]) % _SHIFT_SPAN_DAYS
    sop_class = str(ds.get("SOPClassUID") or "")
    type1 = frozenset().union(*(t1 for p, (t1, _) in _NEEDED.items() if sop_class.startswith(p)))
    type2 = frozenset().union(*(t2 for p, (_, t2) in _NEEDED.items() if sop_class.startswith(p)))
    context = _Context(
        deid,
        type1,
        type2,
        datetime.timedelta(days=days),
        "ANON" + deid.digest("patient", patient)[:8].hex().upper(),
        _scrubber(ds, deid) if DeidOption.CLEAN_DESCRIPTORS in deid.options else None,
        deid.digest("study", str(ds.get("StudyInstanceUID") or ""))[:6].hex().upper(),
        ds,
    )
    modality = str(ds.get("Modality") or "").strip().upper()
    burned = str(ds.get("BurnedInAnnotation") or "").strip().upper() == "YES"
    captured = sop_class.startswith(SECONDARY_CAPTURE_PREFIX)
    modality = modality or ("OT" if captured else "")
    if burned or captured or modality in BURN_IN_MODALITIES:
        warnings.append(f"{BURN_IN_WARNING}; check them before publishing (Modality {modality})")
    removed = _clean(ds, context)
    for tag in [e.tag for e in ds if (int(e.tag) >> 16) in context.drop_groups]:
        del ds[tag]
    if removed:
        warnings.append(
            f"de-identification removed {removed} attribute{'' if removed == 1 else 's'} "
            "unknown to it (private, retired or not in the DICOM dictionary)"
        )
    _mark(ds, deid)
    if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return warnings


def _patient_key(ds: Dataset) -> str:
    """Who the data set is about, for the pseudonym and the date offset."""
    pid = str(ds.get("PatientID") or "").strip()
    if pid:
        return "id\x1f" + pid + "\x1f" + str(ds.get("IssuerOfPatientID") or "").strip()
    name = str(ds.get("PatientName") or "").strip()
    birth = str(ds.get("PatientBirthDate") or "").strip()
    if name or birth:
        return f"name\x1f{name}\x1f{birth}"
    return "study\x1f" + str(ds.get("StudyInstanceUID") or "")


def _identifying_values(ds: Dataset, deid: Deidentification) -> Iterator[str]:
    """The values of ``ds`` that the profile protects, as text, with their parts."""
    for elem in _walk(ds):
        if elem.VR not in _IDENTIFYING_VRS and elem.VR not in ("DA", "DT"):
            continue
        if action(int(elem.tag), deid.options) in (None, "K", "C"):  # kept, or being cleaned
            continue
        for text in _texts(elem):
            yield text
            yield from re.split(r"[\^=\s,]+", text)


def _walk(ds: Dataset) -> Iterator[DataElement]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _walk(item)
        else:
            yield elem


def _scrubber(ds: Dataset, deid: Deidentification) -> re.Pattern[str] | None:
    words = {w.strip() for w in _identifying_values(ds, deid)}
    words = {w for w in words if len(w) >= 3}
    parts = [re.escape(w) for w in sorted(words, key=len, reverse=True)]
    parts.append(_DATE_LIKE.pattern)
    return re.compile("|".join(parts), re.IGNORECASE)


def _texts(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, (list, MultiValue)):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def _clean(ds: Dataset, ctx: _Context) -> int:
    """Apply the profile to every element of ``ds`` and its items; how many attributes
    not in the table were removed."""
    removed = 0
    creators = _private_creators(ds)
    kept = {
        (int(e.tag) >> 16, (int(e.tag) & 0xFFFF) >> 8)
        for e in ds
        if _safe_private(int(e.tag), creators, ctx.deid)
    }
    for tag in list(ds.keys()):
        t = int(tag)
        if (t >> 16) & 1:
            if 0x0010 <= (t & 0xFFFF) <= 0x00FF:  # a Private Creator: kept with its block
                if (t >> 16, t & 0xFF) not in kept:
                    del ds[tag]
            elif (t >> 16, (t & 0xFFFF) >> 8) not in kept or not _safe_private(
                t, creators, ctx.deid
            ):
                del ds[tag]
                removed += 1
            continue
        elem = ds[tag]
        code = action(t, ctx.deid.options)
        if code is None:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    removed += _clean(item, ctx)
            elif not _current(t):
                if (t & 0xFFFF) != 0:  # group lengths are not information
                    removed += 1
                del ds[tag]
            elif elem.VR in ("DA", "DT"):
                _date(ds, elem, _date_policy(ctx.deid), ctx)
            continue
        removed += _apply(ds, elem, _resolve(code, t, ctx), ctx)
    return removed


def _current(tag: int) -> bool:
    """Whether ``tag`` is a current (not retired) attribute of the DICOM dictionary,
    repeating groups (60xx overlays) included."""
    try:
        return get_entry(tag)[3] != "Retired"
    except KeyError:
        return False


def _resolve(code: str, tag: int, ctx: _Context) -> str:
    """One action from a compound code: X unless the IOD needs the attribute."""
    if "/" not in code:
        return code
    choices = code.rstrip("*").split("/")
    if tag in ctx.type1 or (tag in ctx.type2 and "Z" not in choices):
        return "U" if "U" in choices else "D"
    return "Z" if tag in ctx.type2 else choices[0]


def _date_policy(deid: Deidentification) -> str:
    if DeidOption.LONGITUDINAL_FULL_DATES in deid.options:
        return "K"
    if DeidOption.LONGITUDINAL_MODIFIED_DATES in deid.options:
        return "C"
    return "X"


def _apply(ds: Dataset, elem: DataElement, code: str, ctx: _Context) -> int:
    tag = int(elem.tag)
    if code == "X":
        if (tag >> 16) & 0xFF00 in (0x5000, 0x6000) and tag & 0xFFFF in (0x3000, 0x4000):
            ctx.drop_groups.add(
                tag >> 16
            )  # curve or overlay data: the group means nothing without it
        del ds[elem.tag]
        return 0
    if elem.VR == "SQ":  # K, C, D, U, Z on a sequence: the profile applies to its items
        if code == "Z":
            elem.value = Sequence([])
            return 0
        return sum(_clean(item, ctx) for item in elem.value or ())
    if code == "K":
        return 0
    if code == "U":
        elem.value = _uids(elem, ctx.deid)
    elif elem.VR in ("DA", "DT"):
        _date(ds, elem, code, ctx)
    elif code == "C" and ctx.scrub is not None and elem.VR in _TEXT_VRS:
        elem.value = _scrub(elem, ctx.scrub)
    elif code == "C":
        pass  # cleaning a value that is not text: a time (dates shift by whole days)
    elif tag in (0x00100010, 0x00100020):  # Patient's Name, Patient ID: the pseudonym
        elem.value = ctx.pseudonym
    elif tag == 0x00200010 and ds is ctx.top:  # Study ID: keyed, one per study (E.1.1 note 3)
        elem.value = ctx.study_id
    elif code == "Z":
        elem.value = _empty(elem)
    else:  # D
        elem.value = _dummy(elem, ctx.deid)
    return 0


def _date(ds: Dataset, elem: DataElement, code: str, ctx: _Context) -> None:
    if code == "K":
        return
    if code == "C":
        elem.value = _shifted(elem, ctx.offset)
    elif code == "X":
        del ds[elem.tag]
    elif code == "Z":
        elem.value = ""
    else:
        elem.value = _DUMMY[elem.VR]


def _shifted(elem: DataElement, offset: datetime.timedelta) -> str | list[str]:
    out = []
    for text in _texts(elem):
        text = text.strip()
        try:
            day = datetime.datetime.strptime(text[:8], "%Y%m%d").date()
        except ValueError:
            continue  # not a date we can move: dropped rather than kept
        out.append((day - offset).strftime("%Y%m%d") + (text[8:] if elem.VR == "DT" else ""))
    return out if len(out) > 1 else (out[0] if out else "")


def _uids(elem: DataElement, deid: Deidentification) -> str | list[str]:
    out = [u if u.startswith(_WELL_KNOWN) else keyed_uid(deid, u) for u in _texts(elem)]
    return out if len(out) > 1 else (out[0] if out else "")


def _scrub(elem: DataElement, pattern: re.Pattern[str]) -> str | list[str]:
    out = [pattern.sub("*", t) for t in _texts(elem)]
    return out if len(out) > 1 else (out[0] if out else "")


def _empty(elem: DataElement) -> object:
    if elem.VR in _TEXT_VRS or elem.VR in ("DA", "DT", "TM", "IS", "DS", "AS", "UI", "UR"):
        return ""
    return None


def _dummy(elem: DataElement, deid: Deidentification) -> object:
    if elem.VR == "UI":
        return _uids(elem, deid)
    if elem.VR in _DUMMY:
        return _DUMMY[elem.VR]
    if elem.VR in _TEXT_VRS or elem.VR == "AS":
        return _DUMMY_TEXT if elem.VR != "AS" else "000Y"
    return None


def _private_creators(ds: Dataset) -> dict[tuple[int, int], str]:
    """(group, block) -> Private Creator, upper case."""
    creators = {}
    for elem in ds:
        t = int(elem.tag)
        if (t >> 16) & 1 and 0x0010 <= (t & 0xFFFF) <= 0x00FF:
            creators[(t >> 16, t & 0xFF)] = str(elem.value or "").strip().upper()
    return creators


def _safe_private(tag: int, creators: dict[tuple[int, int], str], deid: Deidentification) -> bool:
    element = tag & 0xFFFF
    if element < 0x1000:
        return False
    creator = creators.get((tag >> 16, element >> 8))
    return creator is not None and (creator, element & 0xFF) in deid.safe_private


def _mark(ds: Dataset, deid: Deidentification) -> None:
    """Patient Identity Removed, the method in words and in codes (PS3.15 E.1.1 step 6)."""
    codes = [_BASIC_CODE, *sorted(_OPTION_CODES[o] for o in deid.options)]
    if deid.safe_private:
        codes.append(_SAFE_PRIVATE_CODE)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [f"acrnema-bridge {__version__}, PS3.15 {EDITION} Annex E"] + [
        meaning[:64] for _, meaning in codes
    ]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if DeidOption.LONGITUDINAL_FULL_DATES in deid.options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif DeidOption.LONGITUDINAL_MODIFIED_DATES in deid.options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"

"""Normalisation of values written in ACR-NEMA forms into valid DICOM values.

Each function takes the text of one value and returns a :class:`Fix`: the repaired text
(or ``None`` when the value cannot be repaired) and whether it changed. The rules are
listed in docs/conversion.md; they are pure and unit-tested one by one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date

from pydicom.valuerep import format_number_as_ds

__all__ = [
    "MAX_LENGTH",
    "Fix",
    "fix_as",
    "fix_cs",
    "fix_da",
    "fix_ds",
    "fix_is",
    "fix_text",
    "fix_tm",
    "fix_ui",
    "fix_value",
    "is_valid",
]

# Maximum value lengths of PS3.5 table 6.2-1 (characters; PN per component group).
MAX_LENGTH = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
    "TM": 14,
    "UI": 64,
}
_CS_ALLOWED = re.compile(r"^[A-Z0-9 _]*$")
_UI = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DA_FORMS = (
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    re.compile(r"^(\d{4})[.\-/](\d{1,2})[.\-/](\d{1,2})$"),
)
_TM = re.compile(r"^(\d{1,2})(?:[:.]?(\d{2}))?(?:[:.]?(\d{2}))?(?:[.,](\d{1,6})\d*)?$")


@dataclass(frozen=True)
class Fix:
    """The outcome of normalising one value."""

    value: str | None  # None: cannot be repaired
    changed: bool = False
    lossy: bool = False  # the repair dropped information (truncation, rounding)
    notable: bool = False  # a repair worth a warning: exponent form, over-long, NUL tail
    assumed: bool = False  # the repair supplied what the value left out (a unit): keep it


def _strip(text: str) -> str:
    # NUL ends a value: some writers leave the rest of an old buffer behind it.
    return text.split("\x00", 1)[0].strip(" ")


def fix_da(text: str) -> Fix:
    """Dates: ``1996.12.02`` and ``1996-12-02`` become ``19961202``; invalid dates fail."""
    value = _strip(text)
    if value == "":
        return Fix("", value != text)
    for form in _DA_FORMS:
        m = form.match(value)
        if m:
            y, mo, d = (int(g) for g in m.groups())
            try:
                date(y, mo, d)
            except ValueError:
                return Fix(None)
            out = f"{y:04d}{mo:02d}{d:02d}"
            return Fix(out, out != text)
    return Fix(None)


def fix_tm(text: str) -> Fix:
    """Times: ``16:38:46.783`` and ``16.32.39.0000`` become ``163846.783`` and ``163239.0000``."""
    value = _strip(text)
    if value == "":
        return Fix("", value != text)
    m = _TM.match(value)
    if not m:
        return Fix(None)
    hh, mm, ss, frac = m.groups()
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        return Fix(None)
    out = f"{int(hh):02d}{mm or ''}{ss or ''}"
    if frac is not None and ss:
        out += f".{frac}"
    return Fix(out, out != text)


_AS = re.compile(r"^(\d{1,3})\s*(D|DAYS?|W|WEEKS?|M|MONTHS?|Y|YEARS?)?$")
AGE_YEARS_WITHOUT_UNIT = 130
"""A bare number up to this is read as years: no one is older, and ages in days, weeks or
months were written with their unit (our choice, docs/conversion.md "Repairs")."""


def fix_as(text: str) -> Fix:
    """Ages: ``45``, ``45Y``, ``6 months`` become ``045Y``, ``006M``; anything else fails."""
    value = _strip(text).upper()
    if value == "":
        return Fix("", value != text)
    m = _AS.match(value)
    if not m:
        return Fix(None)
    number, unit = int(m.group(1)), m.group(2)
    if unit is None and number > AGE_YEARS_WITHOUT_UNIT:
        return Fix(None)
    out = f"{number:03d}{(unit or 'Y')[0]}"
    return Fix(out, out != text, assumed=out != value)


def _number(value: str) -> float | None:
    """The finite number a numeric string holds, or None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def fix_is(text: str) -> Fix:
    """Integer strings: exponent forms and leading zeros are rewritten, fractions rounded."""
    value = _strip(text)
    if value == "":
        return Fix("", value != text)
    number = _number(value)
    if number is None:
        return Fix(None)
    integer = round(number)
    if not -(2**31) <= integer <= 2**31 - 1:
        return Fix(None)
    out = str(integer)
    lossy = integer != number
    notable = "\x00" in text or len(value) > MAX_LENGTH["IS"] or not value.lstrip("+-").isdigit()
    return Fix(out, out != text, lossy, notable)


def fix_ds(text: str) -> Fix:
    """Decimal strings: over-long or exponent forms are rewritten in at most 16 characters."""
    value = _strip(text)
    if value == "":
        return Fix("", value != text)
    number = _number(value)
    if number is None:
        return Fix(None)
    if number == int(number) and abs(number) < 1e15:
        out = str(int(number))
    else:
        out = repr(number)
        if len(out) > 16 or "e" in out:
            out = format_number_as_ds(number)
    lossy = float(out) != number
    notable = "\x00" in text or len(value) > MAX_LENGTH["DS"] or "E" in value.upper()
    return Fix(out, out != text, lossy, notable)


def fix_cs(text: str) -> Fix:
    """Code strings: trimmed and upper-cased; characters outside the repertoire fail."""
    value = _strip(text).upper()
    if not _CS_ALLOWED.match(value):
        return Fix(None)
    if len(value) > MAX_LENGTH["CS"]:
        return Fix(value[: MAX_LENGTH["CS"]].rstrip(), True, True)
    return Fix(value, value != text)


def fix_ui(text: str) -> Fix:
    value = text.split("\x00", 1)[0].strip(" \x00")
    if len(value) > 64 or not _UI.match(value):
        return Fix(None)
    return Fix(value, value != text)


def fix_text(text: str, vr: str) -> Fix:
    """Other strings: NUL tails removed, over-long values truncated (a lossy fix)."""
    value = text.split("\x00", 1)[0]
    if vr not in ("LT", "ST", "UT"):
        value = value.rstrip(" ")
    limit = MAX_LENGTH.get(vr)
    if vr == "PN" and limit is not None:
        groups = value.split("=")
        if all(len(g) <= limit for g in groups):
            return Fix(value, value != text)
        return Fix("=".join(g[:limit].rstrip() for g in groups), True, True)
    if limit is not None and len(value) > limit:
        return Fix(value[:limit].rstrip(" "), True, True)
    return Fix(value, value != text)


_DS = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_IS = re.compile(r"^[+-]?\d+$")


def is_valid(text: str, vr: str) -> bool:
    """Whether one value is already valid DICOM for its VR (PS3.5 6.2), as it stands."""
    value = text.strip(" ")
    if "\x00" in text:
        return False
    if vr == "DS":
        return value == "" or (len(value) <= 16 and bool(_DS.match(value)))
    if vr == "IS":
        return value == "" or (
            len(value) <= 12 and bool(_IS.match(value)) and -(2**31) <= int(value) < 2**31
        )
    if vr in ("DA", "TM", "UI", "AS"):
        fix = _FIXERS[vr](text)
        return fix.value is not None and fix.value == value
    if vr == "CS":
        return len(value) <= 16 and bool(_CS_ALLOWED.match(value))
    limit = MAX_LENGTH.get(vr)
    return limit is None or len(value) <= limit


_FIXERS = {
    "AS": fix_as,
    "DA": fix_da,
    "TM": fix_tm,
    "IS": fix_is,
    "DS": fix_ds,
    "CS": fix_cs,
    "UI": fix_ui,
}


def fix_value(text: str, vr: str) -> Fix:
    """Normalise one value of a string VR."""
    fixer = _FIXERS.get(vr)
    if fixer is not None:
        return fixer(text)
    return fix_text(text, vr)

"""Gantry-relative ACR-NEMA geometry to DICOM patient-relative geometry.

ACR-NEMA 2.0 Image Position (0020,0030) and Image Orientation (0020,0035) are given in the
equipment (gantry) frame. DICOM's (0020,0032) and (0020,0037) are in the patient frame
(LPS: +x to the patient's left, +y posterior, +z toward the head). The rules below are
our reconstruction (docs/conversion.md, "Geometry"): the gantry frame is taken to coincide
with the patient frame for a supine, head-first patient (chosen, as DICOM does for HFS),
and the other positions follow by rotating the patient in that frame (inferred):

======  =============================  ===========================
 code    patient axes in gantry axes    flip applied to x, y, z
======  =============================  ===========================
 HFS     L=+x  P=+y  H=+z               none
 HFP     L=-x  P=-y  H=+z               x, y
 FFS     L=-x  P=+y  H=-z               x, z
 FFP     L=+x  P=-y  H=-z               y, z
 HFDL    L=+y  P=-x  H=+z               swap x/y
 HFDR    L=-y  P=+x  H=+z               swap x/y
 FFDL    L=+y  P=+x  H=-z               swap x/y, z
 FFDR    L=-y  P=-x  H=-z               swap x/y, z
======  =============================  ===========================

ACR-NEMA equipment wrote postures (``SUPINE``, ``PRONE``, ``DECUBITUS LEFT`` ...) without
saying head or feet first. The converter tries head first, then feet first, and keeps the
one whose image axes agree with Patient Orientation (0020,0020), when that is present.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "POSITIONS",
    "is_orientation",
    "orientation_letters",
    "patient_matrix",
    "posture_candidates",
]

_HF = {
    "S": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "P": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "DL": ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
    "DR": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
}
_FEET_FIRST = np.diag([-1, 1, -1])

POSITIONS: dict[str, np.ndarray] = {}
for _posture, _rows in _HF.items():
    POSITIONS["HF" + _posture] = np.array(_rows, dtype=float)
    POSITIONS["FF" + _posture] = np.array(_rows, dtype=float) @ _FEET_FIRST

_POSTURE_WORDS = {
    "SUPINE": "S",
    "PRONE": "P",
    "DECUBITUS LEFT": "DL",
    "LEFT DECUBITUS": "DL",
    "DECUBITUS RIGHT": "DR",
    "RIGHT DECUBITUS": "DR",
}


def posture_candidates(position: str) -> list[str]:
    """DICOM Patient Position codes that an ACR-NEMA or DICOM position word allows."""
    word = " ".join(position.upper().replace("_", " ").split())
    if word in POSITIONS:
        return [word]
    posture = _POSTURE_WORDS.get(word)
    if posture is None:
        return []
    return ["HF" + posture, "FF" + posture]


def patient_matrix(code: str) -> np.ndarray:
    """The 3x3 matrix taking gantry coordinates to patient (LPS) coordinates."""
    return POSITIONS[code]


def orientation_letters(orientation: np.ndarray) -> tuple[str, str]:
    """The dominant patient direction letters of the row and column cosines."""
    letters = (("R", "L"), ("A", "P"), ("F", "H"))
    out = []
    for vector in (orientation[:3], orientation[3:]):
        axis = int(np.argmax(np.abs(vector)))
        out.append(letters[axis][1 if vector[axis] > 0 else 0])
    return out[0], out[1]


TOLERANCE = 1e-3
"""How far from unit length and from orthogonal the row and column cosines may be: the
six-digit decimals of the era (0.707107) are well within it."""


def is_orientation(values: np.ndarray) -> bool:
    """Whether six direction cosines are two orthogonal unit vectors.

    All zeros (a placeholder some equipment wrote), a non-unit vector or two vectors that
    are not orthogonal are not an orientation, and are never written (docs/conversion.md,
    "Geometry").
    """
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        return False
    row, column = values[:3], values[3:]
    unit = all(abs(float(np.linalg.norm(v)) - 1.0) <= TOLERANCE for v in (row, column))
    return unit and abs(float(row @ column)) <= TOLERANCE

"""Generated CT and MR phantoms with realistic ACR-NEMA 2.0 headers.

The headers follow what 1990s scanners wrote (see the corpus files r01 and m01): a
Recognition Code, group lengths, dotted dates and colon times, exponent-form decimal
strings, gantry-relative Image Position / Image Orientation, Image Location, and no
UIDs, Photometric Interpretation or Samples per Pixel. Pixels are a deterministic
elliptical phantom, different for each slice, so every image is unique.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from bridge.acrnema.elements import IMPLICIT_LE, Syntax, encode
from bridge.lenient import lenient
from bridge.link.requester import Image, link_syntax

__all__ = ["PhantomSpec", "phantom_dataset", "phantom_file", "phantom_images", "phantom_pixels"]


@dataclass(frozen=True)
class PhantomSpec:
    """What to generate: modality, matrix size, which study and which slice."""

    modality: str = "CT"
    rows: int = 512
    columns: int = 512
    slice_index: int = 0
    slices: int = 1
    patient_name: str = "PHANTOM^ACR"
    patient_id: str = "PHANTOM001"
    study_id: str = "1"
    series_number: int = 1
    study_date: str = "1991.03.14"
    study_time: str = "09:12:33.500000"


def phantom_pixels(spec: PhantomSpec) -> np.ndarray:
    """A 12-bit head-like phantom: skull ring, brain and one lesion that moves per slice."""
    y, x = np.mgrid[0 : spec.rows, 0 : spec.columns].astype(np.float32)
    cy, cx = (spec.rows - 1) / 2, (spec.columns - 1) / 2
    r = np.hypot((y - cy) / (0.45 * spec.rows), (x - cx) / (0.38 * spec.columns))
    image = np.full((spec.rows, spec.columns), 24.0, dtype=np.float32)  # air, -1000 HU
    image[r < 1.0] = 2000.0  # skull
    image[r < 0.92] = 1064.0  # brain
    phase = 2 * np.pi * spec.slice_index / max(spec.slices, 1)
    ly = cy + 0.2 * spec.rows * np.sin(phase)
    lx = cx + 0.2 * spec.columns * np.cos(phase)
    lesion = np.hypot(y - ly, x - lx) < 0.05 * spec.rows
    image[lesion] = 1300.0
    image += (np.sin(x / 7.0 + spec.slice_index) * 8).astype(np.float32)
    return np.clip(image, 0, 4095).astype(np.uint16)


def phantom_dataset(spec: PhantomSpec) -> Dataset:
    """The ACR-NEMA 2.0 data set of one phantom slice (pixels included)."""
    with lenient():
        return _phantom_dataset(spec)


def _phantom_dataset(spec: PhantomSpec) -> Dataset:
    ds = Dataset()
    z = 40.0 + 5.0 * spec.slice_index
    spacing = 250.0 / spec.columns
    ds.add_new(0x00080010, "LO", "ACR-NEMA 2.0")
    ds.add_new(0x00080020, "DA", spec.study_date)
    ds.add_new(0x00080022, "DA", spec.study_date)
    ds.add_new(0x00080023, "DA", spec.study_date)
    ds.add_new(0x00080030, "TM", spec.study_time)
    ds.add_new(
        0x00080032,
        "TM",
        f"09:{13 + spec.slice_index // 60 % 40:02d}:{spec.slice_index % 60:02d}.250000",
    )
    ds.add_new(0x00080040, "US", 0)
    ds.add_new(0x00080041, "LO", "IMA SEQ")
    ds.add_new(0x00080060, "CS", spec.modality)
    ds.add_new(0x00080070, "LO", "ACRNEMA-BRIDGE PHANTOM")
    ds.add_new(0x00080080, "LO", "MUSEUM OF IMAGING")
    ds.add_new(0x00081030, "LO", "PHANTOM HEAD")
    ds.add_new(0x00081090, "LO", "VIRTUAL SCANNER 1")
    ds.add_new(0x00100010, "PN", spec.patient_name)
    ds.add_new(0x00100020, "LO", spec.patient_id)
    ds.add_new(0x00180050, "DS", "005.000000E+00")
    if spec.modality == "CT":
        ds.add_new(0x00180060, "DS", "000120")
        ds.add_new(0x00181120, "DS", "000.000000E+00")
    else:
        ds.add_new(0x00180020, "CS", "SE")
        ds.add_new(0x00180080, "DS", "5.000000E+02")
        ds.add_new(0x00180081, "DS", "2.000000E+01")
    ds.add_new(0x00185100, "CS", "SUPINE")
    ds.add_new(0x00200010, "SH", spec.study_id)
    ds.add_new(0x00200011, "IS", str(spec.series_number))
    ds.add_new(0x00200012, "IS", "1")
    ds.add_new(0x00200013, "IS", str(spec.slice_index + 1))
    ds.add_new(0x00200020, "CS", ["L", "P"])
    ds.add_new(0x00200030, "DS", [f"{-125.0:.6E}", f"{-125.0:.6E}", f"{z:.6E}"])
    ds.add_new(
        0x00200035,
        "DS",
        ["1.000000E+00", "0.000000E+00", "0.000000E+00"] * 1
        + ["0.000000E+00", "1.000000E+00", "0.000000E+00"],
    )
    ds.add_new(0x00200050, "DS", f"{z:.6E}")
    ds.add_new(0x00200070, "LO", "PLANAR")
    ds.add_new(0x00280005, "US", 2)
    ds.add_new(0x00280010, "US", spec.rows)
    ds.add_new(0x00280011, "US", spec.columns)
    ds.add_new(0x00280030, "DS", [f"{spacing:.6f}", f"{spacing:.6f}"])
    ds.add_new(0x00280040, "CS", "RECT")
    ds.add_new(0x00280100, "US", 16)
    ds.add_new(0x00280101, "US", 12)
    ds.add_new(0x00280102, "US", 11)
    ds.add_new(0x00280103, "US", 0)
    ds.add_new(0x00280200, "US", 0x7FE0)
    ds.add_new(0x00281050, "DS", ["000040", "00400"])
    ds.add_new(0x00281051, "DS", ["000080", "02000"])
    if spec.modality == "CT":
        ds.add_new(0x00281052, "DS", "-01.024000E+03")
        ds.add_new(0x00281053, "DS", "001.000000E+00")
    ds.add_new(0x7FE00010, "OW", phantom_pixels(spec).astype("<u2").tobytes())
    return ds


def phantom_file(spec: PhantomSpec, syntax: Syntax = IMPLICIT_LE) -> bytes:
    """One phantom slice as the bytes of an ACR-NEMA 2.0 file."""
    dataset = phantom_dataset(spec)
    with lenient():
        return encode(dataset, syntax)


def phantom_images(
    count: int, *, modality: str = "CT", rows: int = 512, byte_order: str = "big"
) -> list[Image]:
    """``count`` slices of one phantom study, encoded for the link (the requester's input)."""
    images = []
    for index in range(count):
        spec = PhantomSpec(
            modality=modality, rows=rows, columns=rows, slice_index=index, slices=count
        )
        data = phantom_file(spec, link_syntax(byte_order))
        images.append(Image(f"phantom {modality} slice {index + 1}", data))
    return images

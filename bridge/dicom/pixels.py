"""Pixel data: ACR-NEMA cell packing, Image Location, overlays in high bits, planes.

ACR-NEMA 2.0 packs pixel cells as one continuous bit stream, the least significant bit of
the first cell first, split into 16-bit words (PS3.5 annex D says DICOM kept this packing
but requires Bits Allocated of 1 or a multiple of 8). Pixel data may sit in another group
than 7FE0 (Image Location, (0028,0200)), and overlays may live in the unused high bits of
each cell ((60xx,0100) Overlay Bits Allocated = Bits Allocated, (60xx,0102) Overlay Bit
Position above High Bit).

Everything here works on whole arrays with numpy. What the decoding had to do to the
image beyond re-encoding it is a :class:`Repair` (docs/conversion.md, "Repairs"): the
caller decides whether a repair that changes the pixels is acceptable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.errors import ImageDataError

__all__ = [
    "PACKED_BITS",
    "Overlay",
    "Pixels",
    "Repair",
    "RepairKind",
    "pack_overlay",
    "unpack_cells",
]

PACKED_BITS = frozenset({1, 12})
"""Bits Allocated values below 16 read as packed cells without a repair: 1 (DICOM's
bitmaps) and 12 (the ACR-NEMA packing, corpus m01). Any other value is read as packed
cells too, but that reading is a guess at what the header meant: a pixel repair."""


class RepairKind(enum.StrEnum):
    """Whether a repair changed the image data (the strings of the ``--report`` JSON)."""

    PIXELS = "pixels"
    """Image data dropped, cleared or re-read as a guess: not the image the source held
    as its header describes it. The link refuses these unless repairs are accepted."""
    HEADER = "header"
    """A pixel header value (Bits Stored, High Bit...) made consistent; every pixel value
    is the one the source held."""


@dataclass(frozen=True)
class Repair:
    """One repair a conversion made to the image: its kind, a short name, the reason.

    ``reason`` names no patient data (counts, tags and bit numbers only), so it may go to
    the log and to the scanner; its part before the first ``;`` says what is wrong in
    under 64 characters (the link's Error Comment), the rest says more.
    """

    kind: RepairKind
    name: str
    reason: str

    @property
    def changes_pixels(self) -> bool:
        """True when the stored image is not the one the source held (kind PIXELS)."""
        return self.kind is RepairKind.PIXELS


@dataclass
class Overlay:
    """One overlay plane extracted from unused pixel bits."""

    group: int
    bit: int
    data: bytes  # packed 1-bit, LSB first, padded to even length


@dataclass
class Pixels:
    """Pixels in a normal form: an array of frames x rows x columns (x samples)."""

    array: npt.NDArray[np.uint16] | npt.NDArray[np.uint8] | npt.NDArray[np.int16]
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    samples: int = 1
    overlays: list[Overlay] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)


_CHUNK = 1 << 18  # cells unpacked at a time (a multiple of 8: each chunk starts on a byte)


def unpack_cells(data: bytes, bits: int, count: int) -> npt.NDArray[np.uint16]:
    """Unpack ``count`` cells of ``bits`` bits packed LSB first into uint16.

    The result is the only array of the input's full size: bit-level work is done a
    chunk at a time, so the memory beside it stays within a few MiB whatever ``count``.
    """
    needed = (count * bits + 7) // 8
    if len(data) < needed:
        raise ImageDataError(
            f"pixel data shorter than the image: {len(data)} bytes, {needed} needed "
            f"({count} cells of {bits} bits)"
        )
    raw = np.frombuffer(data, dtype=np.uint8, count=needed)
    out = np.empty(count, dtype=np.uint16)
    if bits == 12:
        pairs = count // 2
        triples = raw[: pairs * 3].reshape(pairs, 3)
        first, middle, last = (triples[:, i].astype(np.uint16) for i in range(3))
        out[0 : pairs * 2 : 2] = first | ((middle & 0x0F) << 8)
        out[1 : pairs * 2 : 2] = (middle >> 4) | (last << 4)
        if count % 2:
            out[-1] = raw[pairs * 3] | ((raw[pairs * 3 + 1] & 0x0F).astype(np.uint16) << 8)
        return out
    weights = (1 << np.arange(bits, dtype=np.uint32)).astype(np.uint32)
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        first_byte = start * bits // 8
        chunk = raw[first_byte : first_byte + (n * bits + 7) // 8]
        bitstream = np.unpackbits(chunk, bitorder="little")[: n * bits].reshape(n, bits)
        out[start : start + n] = bitstream.astype(np.uint32) @ weights
    return out


def pack_overlay(plane: npt.NDArray[np.bool_]) -> bytes:
    """Pack a boolean plane into DICOM overlay data: 1 bit a pixel, LSB first, even length."""
    packed = np.packbits(plane.reshape(-1).astype(np.uint8), bitorder="little").tobytes()
    return packed + b"\x00" if len(packed) % 2 else packed


def decode_native(
    data: bytes,
    *,
    rows: int,
    columns: int,
    frames: int,
    samples: int,
    bits_allocated: int,
    bits_stored: int,
    high_bit: int,
    pixel_representation: int,
    overlay_bits: dict[int, int],
) -> Pixels:
    """Turn ACR-NEMA native pixel data (little-endian words) into :class:`Pixels`.

    ``overlay_bits`` maps an overlay group to the bit position of its plane inside each
    cell. Raises ``ValueError`` with a plain reason when the data cannot be decoded
    (:class:`~bridge.errors.ImageDataError` when it holds less than the image, which
    nothing can make good without inventing pixels); what had to change
    on the way is in :attr:`Pixels.repairs`.
    """
    notes: list[str] = []
    repairs: list[Repair] = []
    count = rows * columns * frames * samples
    if count == 0:
        raise ValueError("the image has no pixels (Rows or Columns is 0)")
    if bits_allocated in (8, 16, 32):
        needed = count * bits_allocated // 8
    elif 1 <= bits_allocated < 16:
        needed = (count * bits_allocated + 7) // 8
    else:
        raise ValueError(f"Bits Allocated {bits_allocated} is not supported")
    if len(data) < needed:
        raise ImageDataError(
            f"pixel data shorter than the image: {len(data)} bytes, {needed} needed"
        )
    if len(data) > needed + needed % 2:  # one byte pads an odd length; more is image data
        repairs.append(
            Repair(
                RepairKind.PIXELS,
                "pixel-data-too-long",
                f"pixel data longer than the image: {len(data)} bytes, {needed} needed; "
                f"the {len(data) - needed} bytes beyond it dropped",
            )
        )
    if bits_allocated in (8, 16, 32):
        dtype = {8: "<u1", 16: "<u2", 32: "<u4"}[bits_allocated]
        cells = np.frombuffer(data, dtype=dtype, count=count)  # a view: copied on first change
    else:
        if bits_allocated not in PACKED_BITS:
            repairs.append(
                Repair(
                    RepairKind.PIXELS,
                    "bits-allocated-unusual",
                    f"Bits Allocated {bits_allocated} unusual: read as packed "
                    f"{bits_allocated}-bit cells; 1, 8, 12, 16 and 32 are known",
                )
            )
        cells = unpack_cells(data, bits_allocated, count)
        notes.append(f"unpacked {bits_allocated}-bit packed pixel cells to 16 bits")
        bits_allocated = 16

    overlays: list[Overlay] = []
    for group, bit in sorted(overlay_bits.items()):
        if high_bit < bit < bits_allocated and samples == 1:
            plane = ((cells >> bit) & 1).astype(bool).reshape(frames, rows, columns)[0]
            overlays.append(Overlay(group, bit, pack_overlay(plane)))
            cells = cells & ~np.array(1 << bit, dtype=cells.dtype)
            notes.append(f"extracted overlay {group:04X} from pixel bit {bit}")

    shift = high_bit + 1 - bits_stored
    if shift > 0:
        cells = cells >> shift
        notes.append(f"shifted pixel values down by {shift} bits (High Bit {high_bit})")
    used_mask = (1 << bits_stored) - 1
    if bits_stored < bits_allocated:
        if pixel_representation == 0 and cells.max() > used_mask:
            repairs.append(
                Repair(
                    RepairKind.PIXELS,
                    "high-bits-cleared",
                    f"pixel bits above High Bit {bits_stored - 1} set, no overlay: cleared",
                )
            )
            cells = cells & np.array(used_mask, dtype=cells.dtype)
        elif pixel_representation == 1:
            cells = cells & np.array(used_mask, dtype=cells.dtype)
            sign = 1 << (bits_stored - 1)
            cells = (cells ^ sign) - sign  # sign-extend two's complement in bits_stored bits
    shape: tuple[int, ...] = (
        (frames, rows, columns) if samples == 1 else (frames, rows, columns, samples)
    )
    array = cells.reshape(shape)
    if bits_allocated == 8:
        out = array.astype(np.uint8, copy=False)
    elif pixel_representation == 1 and bits_allocated == 16:
        out = array.astype(np.uint16, copy=False).view(np.int16)
    else:
        out = array.astype(np.uint16, copy=False) if bits_allocated == 16 else array
    return Pixels(
        out,
        bits_allocated,
        bits_stored,
        bits_stored - 1,
        pixel_representation,
        samples,
        overlays,
        notes,
        repairs,
    )

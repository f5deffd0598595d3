"""Pixel data: ACR-NEMA cell packing, Image Location, overlays in high bits, planes.

ACR-NEMA 2.0 packs pixel cells as one continuous bit stream, the least significant bit of
the first cell first, split into 16-bit words (PS3.5 annex D says DICOM kept this packing
but requires Bits Allocated of 1 or a multiple of 8). Pixel data may sit in another group
than 7FE0 (Image Location, (0028,0200)), and overlays may live in the unused high bits of
each cell ((60xx,0100) Overlay Bits Allocated = Bits Allocated, (60xx,0102) Overlay Bit
Position above High Bit).

Everything here works on whole arrays with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Overlay", "Pixels", "pack_overlay", "unpack_cells"]


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


_CHUNK = 1 << 18  # cells unpacked at a time (a multiple of 8: each chunk starts on a byte)


def unpack_cells(data: bytes, bits: int, count: int) -> npt.NDArray[np.uint16]:
    """Unpack ``count`` cells of ``bits`` bits packed LSB first into uint16.

    The result is the only array of the input's full size: bit-level work is done a
    chunk at a time, so the memory beside it stays within a few MiB whatever ``count``.
    """
    needed = (count * bits + 7) // 8
    if len(data) < needed:
        raise ValueError(f"{len(data)} bytes hold fewer than {count} cells of {bits} bits")
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
    cell. Raises ``ValueError`` with a plain reason when the data cannot be decoded.
    """
    notes: list[str] = []
    count = rows * columns * frames * samples
    if count == 0:
        raise ValueError("the image has no pixels (Rows or Columns is 0)")
    if bits_allocated in (8, 16, 32):
        itemsize = bits_allocated // 8
        needed = count * itemsize
        if len(data) < needed:
            raise ValueError(f"pixel data holds {len(data)} bytes, the image needs {needed}")
        if len(data) > needed + 1:
            notes.append(f"pixel data has {len(data) - needed} bytes beyond the image; dropped")
        dtype = {1: "<u1", 2: "<u2", 4: "<u4"}[itemsize]
        cells = np.frombuffer(data, dtype=dtype, count=count)  # a view: copied on first change
    elif 1 <= bits_allocated < 16:
        cells = unpack_cells(data, bits_allocated, count)
        notes.append(f"unpacked {bits_allocated}-bit packed pixel cells to 16 bits")
        bits_allocated = 16
    else:
        raise ValueError(f"Bits Allocated {bits_allocated} is not supported")

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
            notes.append("cleared pixel bits above High Bit that no overlay describes")
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
    )

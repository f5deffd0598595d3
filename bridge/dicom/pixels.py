"""Pixel data: ACR-NEMA cell packing, Image Location, overlays in high bits, planes.

ACR-NEMA 2.0 packs pixel cells as one continuous bit stream, the least significant bit of
the first cell first, split into 16-bit words (PS3.5 annex D says DICOM kept this packing
but requires Bits Allocated of 1 or a multiple of 8). Pixel data may sit in another group
than 7FE0 (Image Location, (0028,0200)), and overlays may live in the unused high bits of
each cell ((60xx,0100) Overlay Bits Allocated = Bits Allocated, (60xx,0102) Overlay Bit
Position above High Bit).

Encapsulated (compressed) pixel data is never decoded: :func:`identify_encapsulated`
tells its compression from the first fragment (JPEG markers, the JPEG 2000 codestream,
the RLE header) so that it can be written, byte for byte, under the matching transfer
syntax (docs/conversion.md, "Pixel forms").

Everything here works on whole arrays with numpy. What the decoding had to do to the
image beyond re-encoding it is a :class:`Repair` (docs/conversion.md, "Repairs"): the
caller decides whether a repair that changes the pixels is acceptable.
"""

from __future__ import annotations

import enum
import itertools
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.errors import ImageDataError

__all__ = [
    "LOSSY_SYNTAXES",
    "PACKED_BITS",
    "SUBSAMPLED",
    "Compression",
    "Overlay",
    "Pixels",
    "Repair",
    "RepairKind",
    "identify_encapsulated",
    "is_encapsulated",
    "pack_bits",
    "pack_overlay",
    "unpack_cells",
]

PACKED_BITS = frozenset({1, 12})
"""Bits Allocated values below 16 read as packed cells without a repair: 1 (DICOM's
bitmaps) and 12 (the ACR-NEMA packing, corpus m01). Any other value is read as packed
cells too, but that reading is a guess at what the header meant: a pixel repair."""


SUBSAMPLED = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})
"""Photometric Interpretations whose chroma is halved horizontally: uncompressed, each
pair of pixels is stored as four values, Y Y Cb Cr (PS3.3 C.7.6.3.1.2), so a frame
holds 2 values a pixel, not 3."""


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
    encapsulated: Compression | None = None
    """Set when the pixel data is compressed: kept as the source's items, never decoded
    (``array`` is then empty)."""


@dataclass(frozen=True)
class Compression:
    """Encapsulated pixel data: the source's items and the transfer syntax they need."""

    syntax: str
    name: str
    items: bytes
    """The value as read: Basic Offset Table and fragment items, no sequence delimiter."""
    lossy: bool


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


def pack_bits(cells: npt.NDArray[np.integer[Any]]) -> bytes:
    """Pack 0/1 cells into Bits Allocated 1 pixel data: LSB first, padded to even length."""
    return pack_overlay(cells.astype(bool))


_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000), little endian: encapsulated data is always LE


def is_encapsulated(value: bytes, length: int) -> bool:
    """Whether a Pixel Data value read with ``length`` is encapsulated (PS3.5 A.4).

    Only an undefined length may hold items; a defined length is native data even when
    its first bytes happen to look like an item tag.
    """
    return length == 0xFFFFFFFF and value[:4] == _ITEM


def _fragments(items: bytes) -> list[bytes]:
    """The fragments of encapsulated pixel data (its first item, the offset table, left out)."""
    found: list[bytes] = []
    pos = 0
    while pos + 8 <= len(items) and items[pos : pos + 4] == _ITEM:
        (length,) = struct.unpack_from("<L", items, pos + 4)
        if pos + 8 + length > len(items):
            raise ValueError(
                f"an item of the encapsulated pixel data runs past its end ({length} bytes)"
            )
        found.append(items[pos + 8 : pos + 8 + length])
        pos += 8 + length
    if pos != len(items):
        raise ValueError(f"encapsulated pixel data: no item at byte {pos}")
    return found[1:]


# JPEG Start Of Frame markers (ITU T.81 table B.1, T.87) -> transfer syntax, name, lossy
_JPEG_FRAMES: dict[int, tuple[str | None, str, bool]] = {
    0xC0: ("1.2.840.10008.1.2.4.50", "JPEG baseline", True),
    0xC1: ("1.2.840.10008.1.2.4.51", "JPEG extended", True),
    0xC2: (None, "JPEG progressive", True),
    0xC3: ("1.2.840.10008.1.2.4.57", "JPEG lossless", False),
    0xC5: (None, "JPEG differential sequential", True),
    0xC6: (None, "JPEG differential progressive", True),
    0xC7: (None, "JPEG differential lossless", False),
    0xC9: (None, "JPEG extended (arithmetic coding)", True),
    0xCA: (None, "JPEG progressive (arithmetic coding)", True),
    0xCB: (None, "JPEG lossless (arithmetic coding)", False),
    0xF7: ("1.2.840.10008.1.2.4.80", "JPEG-LS lossless", False),
}
LOSSY_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
)
"""Transfer syntaxes whose pixel data is always lossy (Lossy Image Compression 01)."""
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


def _jpeg(fragment: bytes) -> tuple[str | None, str, bool]:
    """Transfer syntax, name and lossiness of a JPEG or JPEG-LS stream, from its markers."""
    pos, frame = 2, None
    while pos + 4 <= len(fragment):
        if fragment[pos] != 0xFF:
            break
        marker = fragment[pos + 1]
        if marker == 0xFF:
            pos += 1  # fill byte
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", fragment, pos + 2)
        segment = fragment[pos + 4 : pos + 2 + length]
        if marker in _JPEG_FRAMES:
            frame = marker
        elif marker == 0xDA and frame is not None:  # Start Of Scan: Ss is after the components
            components = segment[0] if segment else 0
            start = segment[1 + 2 * components] if len(segment) > 1 + 2 * components else 0
            if frame == 0xC3 and start == 1:
                return "1.2.840.10008.1.2.4.70", "JPEG lossless, first-order prediction", False
            if frame == 0xF7 and start > 0:  # Ss holds NEAR in JPEG-LS
                return "1.2.840.10008.1.2.4.81", "JPEG-LS near-lossless", True
            return _JPEG_FRAMES[frame]
        pos += 2 + length
    if frame is not None:
        return _JPEG_FRAMES[frame]
    return None, "JPEG without a frame header", True


def _jpeg2000(fragment: bytes) -> tuple[str, str, bool]:
    """JPEG 2000: the lossless-only syntax when the coding style says reversible 5-3."""
    cod = fragment.find(b"\xff\x52")
    if cod != -1 and cod + 13 < len(fragment) and fragment[cod + 13] == 1:
        return "1.2.840.10008.1.2.4.90", "JPEG 2000 (reversible)", False
    return "1.2.840.10008.1.2.4.91", "JPEG 2000", False  # irreversible is not always lossy


def _rle(fragment: bytes) -> bool:
    """Whether a fragment starts with a DICOM RLE header (PS3.5 G.5): 1-15 ascending offsets."""
    if len(fragment) < 64:
        return False
    header = struct.unpack_from("<16L", fragment)
    count, offsets = header[0], header[1:]
    if not 1 <= count <= 15 or offsets[0] != 64 or any(offsets[count:]):
        return False
    used = offsets[:count]
    return all(a < b for a, b in itertools.pairwise(used)) and used[-1] < len(fragment)


def identify_encapsulated(items: bytes) -> Compression:
    """The compression of encapsulated pixel data, told from its first fragment.

    Raises ``ValueError`` saying the data is compressed, and with what when that is
    known, when no DICOM transfer syntax carries it (or the items are broken).
    """
    fragments = _fragments(items)
    first = next((f for f in fragments if f), b"")
    syntax: str | None
    if first[:2] == b"\xff\xd8":
        syntax, name, lossy = _jpeg(first)
    elif first[:4] == b"\xff\x4f\xff\x51":
        syntax, name, lossy = _jpeg2000(first)
    elif first[4:8] == b"jP  ":
        syntax, name, lossy = None, "JPEG 2000 in a JP2 file (not a bare codestream)", True
    elif _rle(first):
        syntax, name, lossy = "1.2.840.10008.1.2.5", "RLE lossless", False
    else:
        raise ValueError(
            "encapsulated (compressed) pixel data of an unrecognised compression "
            f"({len(fragments)} fragments; first bytes {first[:4].hex()}): "
            "cannot tell which transfer syntax carries it"
        )
    if syntax is None:
        raise ValueError(f"compressed pixel data ({name}): no DICOM transfer syntax carries it")
    return Compression(syntax, name, items, lossy)


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
    photometric: str = "",
) -> Pixels:
    """Turn ACR-NEMA native pixel data (little-endian words) into :class:`Pixels`.

    ``overlay_bits`` maps an overlay group to the bit position of its plane inside each
    cell. A subsampled ``photometric`` (:data:`SUBSAMPLED`) holds 2 values a pixel; Bits
    Allocated 1 stays 1 (cells 0 or 1, packed again when written). Raises
    ``ValueError`` with a plain reason when the data cannot be decoded
    (:class:`~bridge.errors.ImageDataError` when it holds less than the image, which
    nothing can make good without inventing pixels); what had to change on the way is in
    :attr:`Pixels.repairs`.
    """
    notes: list[str] = []
    repairs: list[Repair] = []
    values = samples
    if photometric in SUBSAMPLED and samples == 3:
        if columns % 2:
            raise ValueError(f"{photometric} needs an even number of Columns, not {columns}")
        values = 2  # Y Y Cb Cr for each pair of pixels
    count = rows * columns * frames * values
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
        if bits_allocated == 1:  # a byte a cell: 8 times the input, never 16 bits a cell
            raw = np.frombuffer(data, dtype=np.uint8, count=needed)
            cells = np.unpackbits(raw, bitorder="little", count=count)
        else:
            cells = unpack_cells(data, bits_allocated, count)
            notes.append(f"unpacked {bits_allocated}-bit packed pixel cells to 16 bits")
            bits_allocated = 16

    overlays: list[Overlay] = []
    for group, bit in sorted(overlay_bits.items()):
        if high_bit < bit < bits_allocated and values == 1:
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
        (frames, rows, columns) if values == 1 else (frames, rows, columns, values)
    )
    array = cells.reshape(shape)
    if bits_allocated in (1, 8):
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

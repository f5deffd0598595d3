"""The tests' own ACR-NEMA encoder, independent of bridge.acrnema.elements.

It writes implicit-VR data sets the way 1980s equipment did: group lengths first in each
group, values padded to even length, either byte order. Values are given with a kind:
``"s"`` text, ``"u"`` unsigned 16-bit list, ``"l"`` unsigned 32-bit, ``"b"`` raw bytes
(words in little-endian order, swapped for big endian like any 16-bit word).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

Element = tuple[int, str, object]


def _value(kind: str, value: object, order: str) -> bytes:
    if kind == "s":
        raw = str(value).encode("latin-1")
        return raw + b" " if len(raw) % 2 else raw
    if kind == "u":
        items = value if isinstance(value, (list, tuple)) else [value]
        return struct.pack(f"{order}{len(items)}H", *items)
    if kind == "l":
        return struct.pack(f"{order}L", value)
    if kind == "b":
        raw = bytes(value)  # type: ignore[call-overload]
        if len(raw) % 2:
            raw += b"\x00"
        if order == ">":
            swapped = bytearray(raw)
            swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
            raw = bytes(swapped)
        return raw
    raise ValueError(kind)


def encode(
    elements: Iterable[Element], *, big_endian: bool = False, group_lengths: bool = True
) -> bytes:
    order = ">" if big_endian else "<"
    groups: dict[int, list[bytes]] = {}
    for tag, kind, value in sorted(elements, key=lambda e: e[0]):
        data = _value(kind, value, order)
        groups.setdefault(tag >> 16, []).append(
            struct.pack(f"{order}HHL", tag >> 16, tag & 0xFFFF, len(data)) + data
        )
    out = []
    for group in sorted(groups):
        body = b"".join(groups[group])
        if group_lengths:
            out.append(struct.pack(f"{order}HHLL", group, 0, 4, len(body)))
        out.append(body)
    return b"".join(out)


def pack_cells(values: Iterable[int], bits: int) -> bytes:
    """Pack cells LSB first into a continuous bit stream, padded to whole 16-bit words."""
    stream = 0
    count = 0
    for i, v in enumerate(values):
        stream |= (v & ((1 << bits) - 1)) << (i * bits)
        count += 1
    nbytes = (count * bits + 15) // 16 * 2
    return stream.to_bytes(nbytes, "little")


def header(
    *,
    modality: str = "CT",
    rows: int = 8,
    columns: int = 8,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    high_bit: int = 11,
    version: str = "ACR-NEMA 2.0",
    patient_name: str = "DOE^JOHN",
    patient_id: str | None = "P123",
    study_date: str = "1989.04.01",
    study_time: str = "10:11:12.500",
    series_number: str = "2",
    image_number: str = "1",
    geometry: bool = True,
    position: str = "SUPINE",
) -> list[Element]:
    """A typical ACR-NEMA 2.0 image header (no pixel data)."""
    elements: list[Element] = [
        (0x00080010, "s", version),
        (0x00080020, "s", study_date),
        (0x00080030, "s", study_time),
        (0x00080060, "s", modality),
        (0x00080070, "s", "ACME MEDICAL"),
        (0x00100010, "s", patient_name),
        (0x00180050, "s", "5.000000E+00"),
        (0x00185100, "s", position),
        (0x00200010, "s", "77"),
        (0x00200011, "s", series_number),
        (0x00200013, "s", image_number),
        (0x00280010, "u", rows),
        (0x00280011, "u", columns),
        (0x00280030, "s", "0.500000\\0.500000"),
        (0x00280100, "u", bits_allocated),
        (0x00280101, "u", bits_stored),
        (0x00280102, "u", high_bit),
        (0x00280103, "u", 0),
    ]
    if patient_id is not None:
        elements.append((0x00100020, "s", patient_id))
    if geometry:
        elements += [
            (0x00200020, "s", "L\\P"),
            (0x00200030, "s", "-2.000000E+00\\-2.000000E+00\\1.000000E+01"),
            (0x00200035, "s", "1\\0\\0\\0\\1\\0"),
            (0x00200050, "s", "1.000000E+01"),
        ]
    if modality == "MR":
        elements += [(0x00180020, "s", "SE"), (0x00180080, "s", "500"), (0x00180081, "s", "20")]
    return elements

"""Text dumps of ACR-NEMA and DICOM inputs, one element a line, like ``dcmdump``."""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from bridge.acrnema.elements import ByteOrder, decode, describe, format_tag

__all__ = ["dump_file"]


def dump_file(
    data: bytes, *, source: str, byte_order: ByteOrder = ByteOrder.AUTO, width: int = 64
) -> Iterator[str]:
    """Yield the lines of a dump: a header, warnings, then every element."""
    decoded = decode(data, source=source, byte_order=byte_order)
    yield f"# {source}: {decoded.kind}, {decoded.syntax.name}, {len(decoded.elements)} elements"
    for warning in decoded.warnings:
        yield f"# warning: {warning}"
    lengths = {e.tag: e.length for e in decoded.elements}
    if decoded.file_meta is not None:
        yield "# file meta"
        yield from _lines(decoded.file_meta, {}, width, 0)
        yield "# data set"
    yield from _lines(decoded.dataset, lengths, width, 0)


def _lines(ds: Dataset, lengths: dict[int, int], width: int, depth: int) -> Iterator[str]:
    indent = "  " * depth
    for element in ds:
        tag = int(element.tag)
        length = lengths.get(tag)
        if element.VR == "SQ":
            count = len(element.value)
            shown = "u/l" if length == 0xFFFFFFFF else str(length if length is not None else "-")
            yield f"{indent}{format_tag(tag)} SQ {shown:>8}  {describe(tag)}  ({count} items)"
            for n, item in enumerate(element.value, 1):
                yield f"{indent}  item {n}"
                yield from _lines(item, {}, width, depth + 2)
            continue
        shown = str(length) if length is not None else _length(element.value)
        value = _value(element.value, width)
        yield f"{indent}{format_tag(tag)} {element.VR:2} {shown:>8}  {describe(tag)}  {value}"


def _length(value: object) -> str:
    """The value length where the input's own is not known (items, file meta)."""
    if isinstance(value, (bytes, str)):
        return str(len(value) + len(value) % 2)
    return "0" if value is None else "-"


def _value(value: object, width: int) -> str:
    if isinstance(value, bytes):
        head = value[:16].hex(" ")
        return f"<{len(value)} bytes: {head}{' ...' if len(value) > 16 else ''}>"
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\x00", "\\0")
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"[{text}]"

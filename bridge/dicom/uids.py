"""Deterministic UIDs derived from the source content.

Every UID the converter creates is a ``2.25`` UID (PS3.5 B.2): the decimal form of a
name-based (SHA-1, version 5) UUID whose name is a kind plus a key made from the source.
The same input therefore gives the same UIDs on every run and on every machine, and a
re-send after a crash is the same instance to a PACS, not a duplicate.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pydicom.dataset import Dataset

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "content_key",
    "dataset_key",
    "derived_uid",
]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:acrnema-bridge:uids")

IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(_NAMESPACE, 'implementation-class').int}"
IMPLEMENTATION_VERSION_NAME = "ACRNEMA_BRG_010"


def content_key(data: bytes) -> str:
    """A hex digest that identifies the source bytes."""
    return hashlib.sha256(data).hexdigest()


def derived_uid(kind: str, *parts: object) -> str:
    """A 2.25 UID for ``kind`` (study, series, instance, ...) and the key ``parts``."""
    name = kind + "\x1f" + "\x1f".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


DERIVATION_DESCRIPTION = 0x00082111


def dataset_key(ds: Dataset) -> str:
    """A hex digest of what a converted data set holds, whatever encoding it came in.

    Every element counts (sequences item by item, pixel data as bytes) except
    Derivation Description, which names the source's encoding: the same data set read
    from a big- and a little-endian file has one key, two different data sets never do.
    """
    digest = hashlib.sha256()
    _feed(digest, ds)
    return digest.hexdigest()


def _feed(digest: Any, ds: Dataset) -> None:
    for element in ds:
        if int(element.tag) == DERIVATION_DESCRIPTION:
            continue
        digest.update(f"({int(element.tag):08X} {element.VR} ".encode())
        value = element.value
        if element.VR == "SQ":
            for item in value or []:
                digest.update(b"[")
                _feed(digest, item)
                digest.update(b"]")
        elif isinstance(value, (bytes, bytearray)):
            digest.update(len(value).to_bytes(8, "little"))
            digest.update(value)  # not joined to the length: a copy of the pixel data
        else:
            text = "\\".join(map(str, value)) if isinstance(value, list) else str(value)
            digest.update(text.encode("utf-8", "surrogateescape"))
        digest.update(b")")

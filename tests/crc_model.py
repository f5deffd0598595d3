"""The tests' own CRC-16, one bit at a time: the oracle for ``bridge.acrnema.framing.crc16``.

Written straight from the Rocksoft model's parameters (poly, init, refin, refout, xorout),
independent of the table-driven code it checks. tests/test_crc.py proves it against the
catalogue's check values; tests/test_knobs_link.py and bench/crc.py compare with it.
"""

from __future__ import annotations

__all__ = ["bitwise"]


def bitwise(data: bytes, poly: int, init: int, refin: bool, refout: bool, xorout: int) -> int:
    """The CRC one bit at a time, straight from the Rocksoft model (the oracle)."""
    crc = init
    for byte in data:
        if refin:
            byte = int(f"{byte:08b}"[::-1], 2)
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    if refout:
        crc = int(f"{crc:016b}"[::-1], 2)
    return crc ^ xorout

"""The generic CRC-16 of the data link (``datalink.crc = "crc-16"``, bridge.acrnema.framing).

Bit-identical to the Rocksoft model: the check values of the CRC-16 catalogue, and a
bit-by-bit oracle over random frames of every length from 0 to 600 words (and odd byte
counts) under every catalogue parameter set and random ones. Its speed is measured by
bench/crc.py (docs/benchmarks.md); here only its shape is checked: no Python work per
word, so that the cost of a frame does not grow with interpreted code.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import numpy as np
import pytest
from crc_model import bitwise
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.acrnema import framing
from bridge.acrnema.framing import CheckWord, crc16

CHECK = b"123456789"  # the check input of the CRC catalogues

# (name, poly, init, refin, refout, xorout, check) of every CRC-16 in the catalogue of
# parametrised CRC algorithms (the Rocksoft model's parameters)
CATALOGUE = [
    ("CRC-16/ARC", 0x8005, 0x0000, True, True, 0x0000, 0xBB3D),
    ("CRC-16/CDMA2000", 0xC867, 0xFFFF, False, False, 0x0000, 0x4C06),
    ("CRC-16/CMS", 0x8005, 0xFFFF, False, False, 0x0000, 0xAEE7),
    ("CRC-16/DDS-110", 0x8005, 0x800D, False, False, 0x0000, 0x9ECF),
    ("CRC-16/DECT-R", 0x0589, 0x0000, False, False, 0x0001, 0x007E),
    ("CRC-16/DECT-X", 0x0589, 0x0000, False, False, 0x0000, 0x007F),
    ("CRC-16/DNP", 0x3D65, 0x0000, True, True, 0xFFFF, 0xEA82),
    ("CRC-16/EN-13757", 0x3D65, 0x0000, False, False, 0xFFFF, 0xC2B7),
    ("CRC-16/GENIBUS", 0x1021, 0xFFFF, False, False, 0xFFFF, 0xD64E),
    ("CRC-16/GSM", 0x1021, 0x0000, False, False, 0xFFFF, 0xCE3C),
    ("CRC-16/IBM-3740", 0x1021, 0xFFFF, False, False, 0x0000, 0x29B1),
    ("CRC-16/IBM-SDLC", 0x1021, 0xFFFF, True, True, 0xFFFF, 0x906E),
    ("CRC-16/ISO-IEC-14443-3-A", 0x1021, 0xC6C6, True, True, 0x0000, 0xBF05),
    ("CRC-16/KERMIT", 0x1021, 0x0000, True, True, 0x0000, 0x2189),
    ("CRC-16/LJ1200", 0x6F63, 0x0000, False, False, 0x0000, 0xBDF4),
    ("CRC-16/M17", 0x5935, 0xFFFF, False, False, 0x0000, 0x772B),
    ("CRC-16/MAXIM-DOW", 0x8005, 0x0000, True, True, 0xFFFF, 0x44C2),
    ("CRC-16/MCRF4XX", 0x1021, 0xFFFF, True, True, 0x0000, 0x6F91),
    ("CRC-16/MODBUS", 0x8005, 0xFFFF, True, True, 0x0000, 0x4B37),
    ("CRC-16/NRSC-5", 0x080B, 0xFFFF, True, True, 0x0000, 0xA066),
    ("CRC-16/OPENSAFETY-A", 0x5935, 0x0000, False, False, 0x0000, 0x5D38),
    ("CRC-16/OPENSAFETY-B", 0x755B, 0x0000, False, False, 0x0000, 0x20FE),
    ("CRC-16/PROFIBUS", 0x1DCF, 0xFFFF, False, False, 0xFFFF, 0xA819),
    ("CRC-16/RIELLO", 0x1021, 0xB2AA, True, True, 0x0000, 0x63D0),
    ("CRC-16/SPI-FUJITSU", 0x1021, 0x1D0F, False, False, 0x0000, 0xE5CC),
    ("CRC-16/T10-DIF", 0x8BB7, 0x0000, False, False, 0x0000, 0xD0DB),
    ("CRC-16/TELEDISK", 0xA097, 0x0000, False, False, 0x0000, 0x0FB3),
    ("CRC-16/TMS37157", 0x1021, 0x89EC, True, True, 0x0000, 0x26B1),
    ("CRC-16/UMTS", 0x8005, 0x0000, False, False, 0x0000, 0xFEE8),
    ("CRC-16/USB", 0x8005, 0xFFFF, True, True, 0xFFFF, 0xB4C8),
    ("CRC-16/XMODEM", 0x1021, 0x0000, False, False, 0x0000, 0x31C3),
]
IDS = [entry[0] for entry in CATALOGUE]


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_the_oracle_gives_the_catalogue_check_value(entry: tuple[Any, ...]) -> None:
    _, poly, init, refin, refout, xorout, expected = entry
    assert bitwise(CHECK, poly, init, refin, refout, xorout) == expected


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_crc16_gives_the_catalogue_check_value(entry: tuple[Any, ...]) -> None:
    _, poly, init, refin, refout, xorout, expected = entry
    assert crc16(CHECK, poly, init, refin, refout, xorout) == expected
    assert CheckWord("crc-16", init, poly, refin, refout, xorout)(CHECK) == expected


PARAMETERS = st.one_of(
    st.sampled_from([entry[1:6] for entry in CATALOGUE]),
    st.tuples(
        st.integers(1, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.booleans(),
        st.booleans(),
        st.integers(0, 0xFFFF),
    ),
)


@settings(max_examples=150, deadline=None)
@given(parameters=PARAMETERS, words=st.integers(0, 600), odd=st.booleans(), seed=st.integers())
def test_crc16_equals_the_bit_by_bit_model_for_every_frame_length(
    parameters: tuple[int, int, bool, bool, int], words: int, odd: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed % 2**32)
    data = rng.integers(0, 256, 2 * words + odd, dtype=np.uint8).tobytes()
    assert crc16(data, *parameters) == bitwise(data, *parameters)


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_crc16_of_every_short_and_long_input_equals_the_model(entry: tuple[Any, ...]) -> None:
    _, poly, init, refin, refout, xorout, _ = entry
    data = np.random.default_rng(13).integers(0, 256, 9000, dtype=np.uint8).tobytes()
    # every length up to a few bytes (the edges of any block scheme), then far past a frame
    for size in [*range(9), 2047, 2048, 2049, 4096, 9000]:
        part = data[:size]
        assert crc16(part, poly, init, refin, refout, xorout) == bitwise(
            part, poly, init, refin, refout, xorout
        ), size


@contextmanager
def traced_lines() -> Iterator[list[int]]:
    """Count the lines of bridge/acrnema/framing.py run inside the block (``sys.settrace``).

    Only the CRC's own module counts, and the collector is off meanwhile: a finalizer
    that the collector happens to run inside the block is not the CRC's work.
    """
    count = [0]
    previous = sys.gettrace()
    module = framing.__file__

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_code.co_filename == module:
            count[0] += 1
        return trace

    collecting = gc.isenabled()
    gc.disable()
    sys.settrace(trace)
    try:
        yield count
    finally:
        sys.settrace(previous)
        if collecting:
            gc.enable()


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_crc16_runs_no_python_code_per_word(entry: tuple[Any, ...]) -> None:
    """A 512-word frame runs as many Python lines as a 2-word one: the per-word work is in C.

    The goal is 50 MB/s on one core (docs/benchmarks.md, "Generic CRC-16"); the per-word
    Python loop this replaces ran at 28-41 MB/s on 512-word frames and 7-9 MB/s over a
    whole slice in one call, against the 8 MB/s the link is sized for (docs/hardware.md).
    """
    _, poly, init, refin, refout, xorout, _ = entry
    short, frame = bytes(range(4)), bytes(range(256)) * 4
    crc16(frame, poly, init, refin, refout, xorout)  # tables built outside the count
    with traced_lines() as lines_short:
        crc16(short, poly, init, refin, refout, xorout)
    with traced_lines() as lines_frame:
        crc16(frame, poly, init, refin, refout, xorout)
    assert lines_frame[0] == lines_short[0]

"""Benchmark: the data link's generic CRC-16 (``datalink.crc = "crc-16"``) per frame.

Usage: ``.venv/bin/python bench/crc.py [--frames 4000] [--words 512] [--repeat 5]``

The goal: at least 50 MB/s on one core for frames of 512 words, for every parameter set,
reflected or not (the link is sized for 8 MB/s, docs/hardware.md). The data are
``--frames`` random frames of ``--words`` words (2 bytes a word, MB is 10^6 bytes),
checked one call per frame as the frame decoder does. Two parts:

a. parameter sets ``binascii.crc_hqx`` computes (polynomial 0x1021, not reflected, any
   init and final XOR): :func:`bridge.acrnema.framing.crc16` against ``crc_hqx`` on the
   same frames (``crc_hqx(frame, init) ^ xorout``), and the ratio of the two rates;
b. other CRC-16 families (reflected or not, other polynomials): MB/s, and the ratio to
   ``crc_hqx`` as measured in part a.

Each figure is the best of ``--repeat`` timed passes over all frames
(``time.perf_counter``); the run is single-threaded. Before timing, every result of part
a is compared with ``crc_hqx`` and the first frames of part b with a bit-by-bit model of
the CRC (tests/crc_model.py, the oracle of the tests); a difference makes the run exit
with status 1.
"""

from __future__ import annotations

import argparse
import binascii
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # crc_model

from common import machine_lines
from crc_model import bitwise

from bridge.acrnema.framing import crc16

GOAL = 50e6  # bytes a second on one core
DESIGN_RATE = 8e6  # the link's design rate (docs/hardware.md)

# (name, poly, init, refin, refout, xorout) from the catalogue of parametrised CRCs
HQX_SETS = [
    ("CRC-16/IBM-3740", 0x1021, 0xFFFF, False, False, 0x0000),
    ("CRC-16/XMODEM", 0x1021, 0x0000, False, False, 0x0000),
    ("CRC-16/GENIBUS", 0x1021, 0xFFFF, False, False, 0xFFFF),
    ("CRC-16/SPI-FUJITSU", 0x1021, 0x1D0F, False, False, 0x0000),
]
OTHER_SETS = [
    ("CRC-16/ARC", 0x8005, 0x0000, True, True, 0x0000),
    ("CRC-16/MODBUS", 0x8005, 0xFFFF, True, True, 0x0000),
    ("CRC-16/KERMIT", 0x1021, 0x0000, True, True, 0x0000),
    ("CRC-16/IBM-SDLC (X-25)", 0x1021, 0xFFFF, True, True, 0xFFFF),
    ("CRC-16/DNP", 0x3D65, 0x0000, True, True, 0xFFFF),
    ("CRC-16/UMTS", 0x8005, 0x0000, False, False, 0x0000),
    ("CRC-16/T10-DIF", 0x8BB7, 0x0000, False, False, 0x0000),
]


def hqx(init: int, xorout: int) -> Callable[[bytes], int]:
    """``binascii.crc_hqx`` from ``init``, then the final XOR: the C reference."""
    return lambda frame: binascii.crc_hqx(frame, init) ^ xorout


def rate(frames: Sequence[bytes], one: Callable[[bytes], int], repeat: int) -> float:
    """Bytes a second: the best of ``repeat`` passes of ``one`` over every frame."""
    one(frames[0])  # tables built outside the clock
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for frame in frames:
            one(frame)
        best = min(best, time.perf_counter() - start)
    return sum(map(len, frames)) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4000, help="frames a pass (4000)")
    parser.add_argument("--words", type=int, default=512, help="words a frame (512)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes, best kept (5)")
    args = parser.parse_args()
    if args.frames < 1 or args.words < 1 or args.repeat < 1:
        parser.error("--frames, --words and --repeat must be at least 1")

    rng = np.random.default_rng(1206)
    frames = [
        rng.integers(0, 256, 2 * args.words, dtype=np.uint8).tobytes() for _ in range(args.frames)
    ]

    for name, poly, init, refin, refout, xorout in HQX_SETS:
        for frame in frames:
            if crc16(frame, poly, init, refin, refout, xorout) != hqx(init, xorout)(frame):
                print(f"bench: {name}: crc16 differs from crc_hqx", file=sys.stderr)
                return 1
    for name, poly, init, refin, refout, xorout in OTHER_SETS:
        for frame in frames[:3]:
            parameters = (poly, init, refin, refout, xorout)
            if crc16(frame, *parameters) != bitwise(frame, *parameters):
                print(f"bench: {name}: crc16 differs from the bit-by-bit model", file=sys.stderr)
                return 1

    for line in machine_lines(f"Python {sys.version.split()[0]}, numpy {np.__version__}"):
        print(line)
    print(f"{args.frames} frames of {args.words} words, best of {args.repeat} passes")
    print()
    print("a. parameter sets crc_hqx computes")
    print(f"{'parameters':24} {'ours MB/s':>10} {'crc_hqx MB/s':>13} {'ours / crc_hqx':>15}")
    hqx_rates = []
    for name, poly, init, refin, refout, xorout in HQX_SETS:
        ours = rate(
            frames,
            partial(crc16, poly=poly, init=init, refin=refin, refout=refout, xorout=xorout),
            args.repeat,
        )
        theirs = rate(frames, hqx(init, xorout), args.repeat)
        hqx_rates.append(theirs)
        print(f"{name:24} {ours / 1e6:10.1f} {theirs / 1e6:13.1f} {ours / theirs:15.2f}")
    reference = max(hqx_rates)
    print()
    print(f"b. other families (ratio to the best crc_hqx rate above, {reference / 1e6:.1f} MB/s)")
    print(f"{'parameters':24} {'ours MB/s':>10} {'/ crc_hqx':>10} {'/ 8 MB/s':>9}  goal 50 MB/s")
    slowest = float("inf")
    for name, poly, init, refin, refout, xorout in OTHER_SETS:
        ours = rate(
            frames,
            partial(crc16, poly=poly, init=init, refin=refin, refout=refout, xorout=xorout),
            args.repeat,
        )
        slowest = min(slowest, ours)
        verdict = "met" if ours >= GOAL else "NOT met"
        print(
            f"{name:24} {ours / 1e6:10.1f} {ours / reference:10.2f} "
            f"{ours / DESIGN_RATE:9.1f}  {verdict}"
        )
    print()
    print(
        f"slowest family: {slowest / 1e6:.1f} MB/s ({'meets' if slowest >= GOAL else 'misses'} "
        f"the 50 MB/s goal)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: capture decode, words a second, against sigrok-cli reading the same VCD.

Usage: ``.venv/bin/python bench/capture.py [--images 4] [--size 512] [--downsample 10]
[--keep DIR]``

The emulated scanner sends ``--images`` CT phantom slices (512x512, 12-bit: 262,144
words each on the link, plus frames and answers) over ``loop://`` to the emulated
receiver and writes the bus as a VCD (``emulate --vcd``, reference profile: four-phase
handshake, 400 ns a word). Then, pinned to core 0, one after the other:

1. words: the VCD read in blocks and the words recovered from the handshake
   (:func:`bridge.capture.decode.words_of`), CPU seconds of this process;
2. decode: the whole of ``capture decode`` (words, frames, packets, messages, DICOM
   conversion and files, the report);
3. sigrok-cli: ``sigrok-cli -i bus.vcd -I vcd:downsample=N -O binary`` to /dev/null, the
   same capture read by sigrok's own VCD input (no protocol decoding: sigrok has no
   decoder for this bus), CPU seconds of the child;
4. the same capture as a sigrok session file (``sigrok-cli -i bus.vcd -I
   vcd:downsample=N -o bus.sr``, not timed: 1 GHz / N samples a second), then 1 and 2
   again on the ``.sr``.

Prints words/s for 1 and 2 on both files (goal: at least 10^6 a second on one core) and
the ratio of sigrok-cli's time to ours (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bridge.capture.decode import decode_capture, open_capture, words_of
from bridge.cli import main as cli
from bridge.profile import REFERENCE


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _capture(folder: Path, images: int, size: int) -> Path:
    vcd = folder / "bus.vcd"
    codes: list[int] = []
    url = "loop://bench-capture"
    receive = ["emulate", "--port", url, "--role", "receiver", "--out", str(folder / "rx")]
    rx = threading.Thread(target=lambda: codes.append(cli([*receive, "--count", str(images)])))
    rx.start()
    try:
        send = ["emulate", "--port", url, "--phantom", str(images), "--size", str(size)]
        code = cli([*send, "--vcd", str(vcd)])
    finally:
        rx.join()
    if code or codes != [0]:
        raise SystemExit("the emulator failed")
    return vcd


def _measure(capture: Path, out: Path, images: int) -> tuple[int, float, float, float, float]:
    """words, then CPU and wall seconds of 1 (words) and 2 (all of capture decode)."""
    start, wall = _cpu(), time.monotonic()
    words = 0
    with open_capture(capture) as reader:
        for rec in words_of(reader, REFERENCE, glitch_ns=10):
            words += len(rec.words)
    t_words, w_words = _cpu() - start, time.monotonic() - wall
    start, wall = _cpu(), time.monotonic()
    result = decode_capture(capture, out, REFERENCE, glitch_ns=10)
    t_all, w_all = _cpu() - start, time.monotonic() - wall
    assert not result.problems, result.problems
    assert len(result.images) == images
    return words, t_words, w_words, t_all, w_all


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--downsample", type=int, default=10, help="sigrok-cli's VCD input")
    parser.add_argument("--keep", type=Path, help="keep the capture in this folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    try:
        vcd = _capture(folder, args.images, args.size)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(vcd, args.keep / vcd.name)
        os.sched_setaffinity(0, {0})
        size = vcd.stat().st_size / 1e6
        words, t_words, w_words, t_all, w_all = _measure(vcd, folder / "out", args.images)
        print(f"capture: {size:.1f} MB VCD, {words} words, {args.images} images")
        print(
            f"words:   {t_words:.2f} s CPU ({w_words:.2f} s wall), "
            f"{words / t_words / 1e6:.2f} M words/s, {size / t_words:.0f} MB/s of VCD"
        )
        print(
            f"decode:  {t_all:.2f} s CPU ({w_all:.2f} s wall), "
            f"{words / t_all / 1e6:.2f} M words/s (incl. DICOM)"
        )
        tool = shutil.which("sigrok-cli")
        if tool is None:
            print("sigrok-cli: not installed, no ratio")
            return
        before = _child_cpu()
        pinned = ["taskset", "-c", "0", tool, "-i", str(vcd)]
        sigrok = ["-I", f"vcd:downsample={args.downsample}", "-O", "binary"]
        with open(os.devnull, "wb") as sink:
            subprocess.run([*pinned, *sigrok], stdout=sink, check=True)
        t_sigrok = _child_cpu() - before
        print(
            f"sigrok-cli -I vcd:downsample={args.downsample} -O binary: {t_sigrok:.2f} s CPU; "
            f"ratio sigrok/ours (words) {t_sigrok / t_words:.1f}, (decode) {t_sigrok / t_all:.1f}"
        )
        sr = folder / "bus.sr"
        subprocess.run(
            [tool, "-i", str(vcd), "-I", f"vcd:downsample={args.downsample}", "-o", str(sr)],
            check=True,
        )
        if args.keep:
            shutil.copy(sr, args.keep / sr.name)
        rate = 1e3 / args.downsample
        words, t_words, w_words, t_all, w_all = _measure(sr, folder / "out-sr", args.images)
        print(f"capture: {sr.stat().st_size / 1e6:.2f} MB .sr ({rate:g} MS/s), {words} words")
        print(
            f"sr words:  {t_words:.2f} s CPU ({w_words:.2f} s wall), "
            f"{words / t_words / 1e6:.2f} M words/s"
        )
        print(
            f"sr decode: {t_all:.2f} s CPU ({w_all:.2f} s wall), "
            f"{words / t_all / 1e6:.2f} M words/s (incl. DICOM)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The emulated scanner sending to the emulated receiver over ``loop://``, through the CLI.

Both ends run ``acrnema-bridge emulate`` in this process (the receiver on a thread), as an
operator would start them; the capture and profile tests decode what the ends wrote (the
bus as ``--vcd``, a trace) and compare with :func:`sent_pixels`, the pixels the phantom
slices carry.
"""

from __future__ import annotations

import itertools
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import peers

from bridge.cli import main
from bridge.dicom.core import convert
from bridge.profile import load_profile
from bridge.testing.phantom import phantom_images

__all__ = ["emulate", "emulate_processes", "emulate_vcd", "glitched", "scramble", "sent_pixels"]

_names = itertools.count()


def emulate(
    out: Path,
    *,
    images: int,
    size: int,
    profile: Path | None = None,
    scanner: Sequence[str] = (),
    receiver: Sequence[str] = (),
    scanner_port: Callable[[str], str] | None = None,
) -> None:
    """``images`` phantom slices of ``size`` rows from the scanner to the receiver writing
    into ``out``, both under ``profile`` if given; ``scanner`` and ``receiver`` are more
    arguments for each end, ``scanner_port`` makes the scanner's port URL from the loop's
    (to stack schemes such as ``faults+spy+`` on it). Both ends must exit 0."""
    url = f"loop://emulated-pair-{next(_names)}"
    both = ["--profile", str(profile)] if profile is not None else []
    codes: list[int] = []
    receiving = threading.Thread(
        target=lambda: codes.append(
            main(
                ["emulate", "--port", url, "--role", "receiver", "--out", str(out)]
                + ["--count", str(images), *both, *receiver]
            )
        )
    )
    receiving.start()
    try:
        port = url if scanner_port is None else scanner_port(url)
        sent = main(
            ["emulate", "--port", port, "--phantom", str(images), "--size", str(size)]
            + [*both, *scanner]
        )
    finally:
        receiving.join(60)
    assert sent == 0 and codes == [0]


def emulate_vcd(tmp: Path, profile_text: str, *, images: int, size: int) -> tuple[Path, Path]:
    """:func:`emulate` under a profile of ``profile_text``, the scanner writing ``--vcd``:
    (the VCD, the profile), both in ``tmp``."""
    profile = tmp / "profile.toml"
    profile.write_text(profile_text + "\n")
    vcd = tmp / "bus.vcd"
    emulate(tmp / "rx", images=images, size=size, profile=profile, scanner=["--vcd", str(vcd)])
    return vcd, profile


def sent_pixels(profile: Path | None, *, images: int, size: int) -> list[np.ndarray]:
    """The pixels of the ``images`` phantom slices :func:`emulate` sends under ``profile``."""
    order = load_profile(profile).physical.binary_byte_order
    return [
        convert(image.data, source=image.name).datasets[0].pixel_array
        for image in phantom_images(images, rows=size, byte_order=order)
    ]


def glitched(vcd: Path, out: Path, width: int, every: int) -> int:
    """The VCD with a pulse of ``width`` ns on REQ and on D5 after every ``every``-th
    timestamp (in the middle of a phase); the number of glitches put in."""
    text = vcd.read_text()
    head, body = text.split("$enddefinitions $end\n", 1)
    ids = dict(
        (m.group(2), m.group(1)) for m in re.finditer(r"\$var wire 1 (\S+) (\S+) \$end", head)
    )
    req, d5 = ids["REQ"], ids["D5"]
    blocks = re.split(r"(?m)^#(\d+)\n", body)
    out_parts = [blocks[0]]
    state = {req: "0", d5: "0"}
    count = 0
    for i in range(1, len(blocks), 2):
        t, changes = int(blocks[i]), blocks[i + 1]
        for line in changes.splitlines():
            if line[1:] in state:
                state[line[1:]] = line[0]
        out_parts.append(f"#{t}\n{changes}")
        if i // 2 % every == 7 and i + 2 < len(blocks) and int(blocks[i + 2]) - t > 2 * width + 2:
            count += 1
            flipped = {k: "1" if v == "0" else "0" for k, v in state.items()}
            out_parts.append(f"#{t + 1}\n{flipped[req]}{req}\n{flipped[d5]}{d5}\n")
            out_parts.append(f"#{t + 1 + width}\n{state[req]}{req}\n{state[d5]}{d5}\n")
    out.write_text(head + "$enddefinitions $end\n" + "".join(out_parts))
    return count


def scramble(vcd: Path, out: Path, seed: int) -> dict[str, tuple[str, bool]]:
    """The capture with its probes renamed P00.., in a shuffled order, about a third of
    them inverted (as a logic analyser on the - leg sees them): probe -> (line, inverted)."""
    rnd = random.Random(seed)
    head, body = vcd.read_text().split("$enddefinitions $end", 1)
    found = re.findall(r"\$var wire 1 (\S+) (\S+) \$end", head)
    order = list(range(len(found)))
    rnd.shuffle(order)
    inverted = {ident for ident, _ in found if rnd.random() < 0.35}
    declared = "".join(f"$var wire 1 {found[o][0]} P{n:02d} $end\n" for n, o in enumerate(order))
    head = re.sub(r"(\$var wire 1 \S+ \S+ \$end\s*)+", declared, head, count=1)
    lines = []
    for line in body.split("\n"):
        if len(line) >= 2 and line[0] in "01" and line[1:] in inverted:
            line = ("1" if line[0] == "0" else "0") + line[1:]
        lines.append(line)
    out.write_text(head + "$enddefinitions $end" + "\n".join(lines))
    return {f"P{n:02d}": (found[o][1], found[o][0] in inverted) for n, o in enumerate(order)}


def emulate_processes(
    out: Path,
    *,
    images: int,
    size: int,
    profile: Path | None = None,
    scanner: Sequence[str] = (),
) -> tuple[subprocess.CompletedProcess[str], int, str]:
    """``images`` phantom slices from an ``acrnema-bridge emulate`` scanner process to a
    receiver process (``--count images``, writing into ``out``) over
    ``tcp-listen://127.0.0.1``, as two operators would start them; ``scanner`` is more
    arguments for the scanner. (The scanner's run, the receiver's exit status, its
    stderr); the receiver is killed if it outlives the test's deadlines."""
    port = peers.free_port()
    cli = [sys.executable, "-m", "bridge.cli", "emulate"]
    cli += ["--profile", str(profile)] if profile is not None else []
    receiver = subprocess.Popen(
        [*cli, "--role", "receiver", "--port", f"tcp-listen://127.0.0.1:{port}"]
        + ["--out", str(out), "--count", str(images)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not peers._port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = subprocess.run(
            [*cli, "--port", f"tcp://127.0.0.1:{port}", "--phantom", str(images)]
            + ["--size", str(size), *scanner],
            capture_output=True,
            text=True,
            timeout=120,
        )
        _, err = receiver.communicate(timeout=60)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return sent, receiver.returncode, err

"""The emulated scanner sending to the emulated receiver over ``loop://``, through the CLI.

Both ends run ``acrnema-bridge emulate`` in this process (the receiver on a thread), as an
operator would start them; the capture and profile tests decode what the ends wrote (the
bus as ``--vcd``, a trace) and compare with :func:`sent_pixels`, the pixels the phantom
slices carry.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bridge.cli import main
from bridge.dicom.core import convert
from bridge.profile import load_profile
from bridge.testing.phantom import phantom_images

__all__ = ["emulate", "emulate_vcd", "sent_pixels"]

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

"""Check that the PIO programs the firmware is built with are the ones the tests run.

    python3 firmware/tools/piocheck.py PIO_DIR HEADER_DIR

The RP2040 build (`make rp2040`) turns every `PIO_DIR/NAME.pio` into `HEADER_DIR/NAME.pio.h`
with the Pico SDK's pioasm; tests/test_pio.py assembles the same files with
adafruit_pioasm and runs them under an emulator. This compares, program by program, what
the two assemblers made of each file: the instruction words, the wrap (target and end),
the side-set field (pins, optional bit) and every public label's offset, which main.c uses
as entry points and reads back as handshake phases. It prints one line a program and
exits 1 on any difference (naming the program and what differs), 2 on a usage error or a
missing header. Needs adafruit_pioasm (installed by `make venv`).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import adafruit_pioasm


@dataclass(frozen=True)
class Assembled:
    """One program as an assembler made it: what the firmware loads and configures."""

    instructions: tuple[int, ...]
    wrap_target: int
    wrap: int
    sideset_bits: int  # the field's width, the optional-enable bit included
    sideset_optional: bool
    labels: dict[str, int]


def program_name(source: str) -> str:
    match = re.search(r"^\s*\.program\s+(\w+)", source, re.MULTILINE)
    if match is None:
        raise ValueError("no .program line")
    return match.group(1)


def from_adafruit(source: str) -> Assembled:
    program = adafruit_pioasm.Program(source)
    kwargs = program.pio_kwargs
    words = tuple(program.assembled)
    optional = bool(kwargs.get("sideset_enable", False))
    pins = int(kwargs.get("sideset_pin_count", 0))
    return Assembled(
        instructions=words,
        wrap_target=int(kwargs.get("wrap_target", 0)),
        wrap=int(kwargs.get("wrap", len(words) - 1)),
        sideset_bits=pins + (1 if optional and pins else 0),
        sideset_optional=optional,
        labels=dict(program.public_labels),
    )


def from_sdk_header(text: str, name: str) -> Assembled:
    """Read a header written by the SDK's pioasm (its `c-sdk` output) for program `name`."""

    def define(suffix: str) -> int:
        match = re.search(rf"^#define {name}_{suffix} (\d+)u?$", text, re.MULTILINE)
        if match is None:
            raise ValueError(f"no #define {name}_{suffix}")
        return int(match.group(1))

    body = re.search(rf"{name}_program_instructions\[\] = \{{(.*?)\n\}};", text, re.DOTALL)
    if body is None:
        raise ValueError(f"no {name}_program_instructions")
    words = tuple(int(w, 16) for w in re.findall(r"^\s*(0x[0-9a-fA-F]{4}),", body.group(1), re.M))
    sideset = re.search(
        rf"{name}_program_get_default_config.*?sm_config_set_sideset\(&c, (\d+), (true|false),",
        text,
        re.DOTALL,
    )
    labels = {
        m.group(1): int(m.group(2))
        for m in re.finditer(rf"^#define {name}_offset_(\w+) (\d+)u$", text, re.MULTILINE)
    }
    return Assembled(
        instructions=words,
        wrap_target=define("wrap_target"),
        wrap=define("wrap"),
        sideset_bits=int(sideset.group(1)) if sideset else 0,
        sideset_optional=sideset is not None and sideset.group(2) == "true",
        labels=labels,
    )


def differences(sdk: Assembled, ours: Assembled) -> list[str]:
    """What differs, in words; empty when the two assemblers agree."""
    out = []
    if len(sdk.instructions) != len(ours.instructions):
        out.append(f"length {len(sdk.instructions)} (pioasm) != {len(ours.instructions)}")
    for i, (a, b) in enumerate(zip(sdk.instructions, ours.instructions, strict=False)):
        if a != b:
            out.append(f"instruction {i}: {a:#06x} (pioasm) != {b:#06x}")
    for field in ("wrap_target", "wrap", "sideset_bits", "sideset_optional", "labels"):
        a, b = getattr(sdk, field), getattr(ours, field)
        if a != b:
            out.append(f"{field}: {a} (pioasm) != {b}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    pio_dir, header_dir = Path(argv[0]), Path(argv[1])
    sources = sorted(pio_dir.glob("*.pio"))
    if not sources:
        print(f"piocheck: no .pio files in {pio_dir}", file=sys.stderr)
        return 2
    failed = False
    for source_path in sources:
        header = header_dir / f"{source_path.name}.h"
        if not header.is_file():
            print(f"piocheck: {header} is missing (build first)", file=sys.stderr)
            return 2
        source = source_path.read_text(encoding="utf-8")
        name = program_name(source)
        found = differences(
            from_sdk_header(header.read_text(encoding="utf-8"), name), from_adafruit(source)
        )
        if found:
            failed = True
            print(f"{source_path.name}: DIFFERS: " + "; ".join(found))
        else:
            n = len(from_adafruit(source).instructions)
            print(f"{source_path.name}: same ({n} instructions)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

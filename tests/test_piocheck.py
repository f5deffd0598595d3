"""firmware/tools/piocheck.py: the SDK-built PIO programs against the emulator-tested ones.

`make -C firmware rp2040` assembles firmware/pio/*.pio with the Pico SDK's pioasm; the PIO
tests (tests/test_pio.py) assemble them with adafruit_pioasm. The tool compares the two.
Without the SDK here, its pioasm output is stood in for by HEADER: the header pioasm
2.1.1 wrote for acr_send.pio when the firmware was built against the SDK (firmware/
README.md), its comments shortened; a change to acr_send.pio makes the first test fail,
and then HEADER is to be rewritten from a new SDK build.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import peers
import pytest

ROOT = Path(__file__).resolve().parents[1]
PIO_DIR = ROOT / "firmware" / "pio"

HEADER = """\
#pragma once

#define acr_send_wrap_target 0
#define acr_send_wrap 9
#define acr_send_pio_version 0

#define acr_send_offset_top 0u
#define acr_send_offset_ack_assert 5u
#define acr_send_offset_ack_release 8u
#define acr_send_offset_done 9u

static const uint16_t acr_send_program_instructions[] = {
            //     .wrap_target
    0x80a0, //  0: pull   block           side 0
    0x6011, //  1: out    pins, 17        side 0
    0x6047, //  2: out    y, 7            side 0
    0x0083, //  3: jmp    y--, 3          side 0
    0x7048, //  4: out    y, 8            side 1
    0x3092, //  5: wait   1 gpio, 18      side 1
    0x1086, //  6: jmp    y--, 6          side 1
    0x10ca, //  7: jmp    pin, 10         side 1
    0x2012, //  8: wait   0 gpio, 18      side 0
    0x0040, //  9: jmp    x--, 0          side 0
            //     .wrap
    0xb0c1, // 10: mov    isr, x          side 1
    0x9000, // 11: push   noblock         side 1
    0x1008, // 12: jmp    8               side 1
};

static inline pio_sm_config acr_send_program_get_default_config(uint offset) {
    pio_sm_config c = pio_get_default_sm_config();
    sm_config_set_wrap(&c, offset + acr_send_wrap_target, offset + acr_send_wrap);
    sm_config_set_sideset(&c, 1, false, false);
    return c;
}
"""


@pytest.fixture(scope="module")
def piocheck() -> ModuleType:
    try:  # installed by `make venv` (see tests/test_pio.py)
        import adafruit_pioasm  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        why = "adafruit_pioasm is not installed (make venv)"
        if os.environ.get(peers.REQUIRE_PEERS_ENV) == "1":
            pytest.fail(f"{why} (and {peers.REQUIRE_PEERS_ENV}=1 forbids skipping)")
        pytest.skip(why)
    spec = importlib.util.spec_from_file_location(
        "piocheck", ROOT / "firmware" / "tools" / "piocheck.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def check(piocheck: ModuleType, header: str) -> list[str]:
    source = (PIO_DIR / "acr_send.pio").read_text(encoding="utf-8")
    sdk = piocheck.from_sdk_header(header, piocheck.program_name(source))
    result: list[str] = piocheck.differences(sdk, piocheck.from_adafruit(source))
    return result


def test_the_sdk_header_of_acr_send_equals_what_the_tests_assemble(piocheck: ModuleType) -> None:
    assert check(piocheck, HEADER) == []


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("0x6047, //  2", "0x6067, //  2", "instruction 2: 0x6067 (pioasm) != 0x6047"),
        ("acr_send_offset_ack_release 8u", "acr_send_offset_ack_release 7u", "labels"),
        ("#define acr_send_wrap 9", "#define acr_send_wrap 12", "wrap: 12 (pioasm) != 9"),
        ("sm_config_set_sideset(&c, 1,", "sm_config_set_sideset(&c, 2,", "sideset_bits"),
        ("    0x1008, // 12: jmp    8               side 1\n", "", "length 12 (pioasm) != 13"),
    ],
)
def test_a_difference_is_found_and_named(
    piocheck: ModuleType, old: str, new: str, named: str
) -> None:
    assert old in HEADER
    found = check(piocheck, HEADER.replace(old, new))
    assert any(named in line for line in found), found


def test_the_command_compares_every_program_and_fails_on_a_difference(
    piocheck: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pio, headers = tmp_path / "pio", tmp_path / "headers"
    pio.mkdir()
    headers.mkdir()
    (pio / "acr_send.pio").write_text((PIO_DIR / "acr_send.pio").read_text(encoding="utf-8"))
    assert piocheck.main([str(pio), str(headers)]) == 2  # no header: built first?
    assert "acr_send.pio.h is missing" in capsys.readouterr().err

    (headers / "acr_send.pio.h").write_text(HEADER)
    assert piocheck.main([str(pio), str(headers)]) == 0
    assert capsys.readouterr().out == "acr_send.pio: same (13 instructions)\n"

    (headers / "acr_send.pio.h").write_text(HEADER.replace("0x9000, // 11", "0x8000, // 11"))
    assert piocheck.main([str(pio), str(headers)]) == 1
    assert "acr_send.pio: DIFFERS: instruction 11" in capsys.readouterr().out

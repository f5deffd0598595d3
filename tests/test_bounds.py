"""Bounded by design: limits on frames, output size, elements, values and decoded pixels.

Each input here is a "bomb": a small file whose header claims work out of proportion to
its size. Each is converted by the real ``acrnema-bridge convert`` in a child process
under a memory cap (``RLIMIT_AS``); the tests check the clear error (file, tag, limit and
the flag that raises it), the exit status, that no traceback is printed, and that the
child's peak RSS stays below the bound docs/conversion.md states.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from acrnema_writer import encode, header
from capped import MIB, bridge_command, run_capped
from pydicom import dcmread

from bridge.acrnema.elements import decode
from bridge.cli import main
from bridge.dicom.core import ConvertOptions, convert
from bridge.errors import ConversionError

CAP = 1024 * MIB  # address space of the child: a runaway allocation fails, it cannot swap
BOMB_RSS = 200 * MIB  # docs/conversion.md: a refused input costs at most this
ONE_BIT = {"bits_allocated": 1, "bits_stored": 1, "high_bit": 0}


def _convert_capped(tmp_path: Path, name: str, data: bytes, *flags: str) -> tuple[dict, str]:
    """Convert one input under the cap; return its report entry and stderr."""
    source = tmp_path / name
    source.write_bytes(data)
    out, report = tmp_path / "out", tmp_path / "report.json"
    run = run_capped(
        [*bridge_command(), "convert", str(source), "--out", str(out), "--jobs", "1"]
        + ["--quiet", "--report", str(report), *flags],
        cap=CAP,
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert run.status == 1, run.stderr
    assert run.peak_rss < BOMB_RSS, f"peak RSS {run.peak_mib:.0f} MiB"
    [entry] = json.loads(report.read_text())
    assert entry["status"] == "failed" and entry["outputs"] == []
    assert not list(out.glob("PT*/ST*/SE*/IM*")), "a refused input left output files"
    assert str(source) in entry["error"] and entry["error"] in run.stderr
    return entry, run.stderr


def test_frames_bomb_is_refused_before_allocation(tmp_path: Path) -> None:
    """Finding: 250 KB claiming 2,000,000 frames ended in MemoryError (about 32 GB)."""
    frames = 2_000_000
    elements = header(rows=1, columns=1, **ONE_BIT) + [
        (0x00280008, "s", str(frames)),
        (0x7FE00010, "b", bytes(frames // 8)),
    ]
    data = encode(elements)
    assert len(data) < 260_000
    entry, _ = _convert_capped(tmp_path, "frames.acr", data)
    assert "tag (0028,0008)" in entry["error"]
    assert "2000000 frames" in entry["error"] and "--max-frames" in entry["error"]


def test_planes_bomb_makes_no_files(tmp_path: Path) -> None:
    """Finding: a 2.7 KB input made 20,000 output files (80 MB, 409 MB of memory)."""
    planes = 20_000
    elements = header(rows=1, columns=1, **ONE_BIT) + [
        (0x00280005, "u", 3),
        (0x00280012, "u", planes),
        (0x7FE00010, "b", bytes(planes // 8)),
    ]
    data = encode(elements)
    assert len(data) < 3000
    entry, _ = _convert_capped(tmp_path, "planes.acr", data)
    assert "tag (0028,0012)" in entry["error"]
    assert "20000 frames" in entry["error"] and "--max-frames" in entry["error"]


def test_tiny_elements_bomb_is_refused_at_the_limit(tmp_path: Path) -> None:
    """Finding: 1.2 MB of zero-length elements took 32 s and 718 MB."""
    tiny = [
        ((group << 16) | elem, "b", b"")
        for group in (0x0009, 0x000B, 0x000D)
        for elem in range(0x1000, 0x1000 + 50_000)
    ]
    data = encode(header() + tiny + [(0x7FE00010, "b", bytes(128))], group_lengths=False)
    assert len(data) > 1_200_000
    entry, _ = _convert_capped(tmp_path, "tiny.acr", data)
    assert "data elements" in entry["error"] and "--max-elements" in entry["error"]
    assert "offset" in entry["error"]


def test_many_values_bomb_is_refused_naming_the_element(tmp_path: Path) -> None:
    """2.2 MB of one-letter values: a million Python objects, each normalised."""
    count = 1_100_000
    elements = header() + [(0x00081030, "s", "\\".join(["A"] * count))]
    entry, _ = _convert_capped(tmp_path, "values.acr", encode(elements))
    assert "tag (0008,1030)" in entry["error"]
    assert "values" in entry["error"] and "--max-values" in entry["error"]


def test_one_bit_pixels_that_decode_too_large_are_refused(tmp_path: Path) -> None:
    """32 MB of 1-bit cells decode to 256 MiB (a byte a cell: they stay 1 bit, issue 14)."""
    side = 16384
    elements = header(rows=side, columns=side, **ONE_BIT) + [
        (0x7FE00010, "b", bytes(side * side // 8))
    ]
    entry, _ = _convert_capped(tmp_path, "onebit.acr", encode(elements), "--max-pixel-mb", "128")
    assert "tag (7FE0,0010)" in entry["error"]
    assert "256 MiB" in entry["error"] and "--max-pixel-mb" in entry["error"]


def test_planes_times_a_large_header_exceed_the_output_limit(tmp_path: Path) -> None:
    """1,000 planes (within the frame limit) each carrying a 1 MB header: 1 GB of output."""
    planes = 1000
    elements = header(rows=1, columns=1, **ONE_BIT) + [
        (0x00280005, "u", 3),
        (0x00280012, "u", planes),
        (0x00091010, "s", "BIG"),  # a private creator, so the block below is kept as is
        (0x00091000 | 0x1001, "b", bytes(1 << 20)),
        (0x7FE00010, "b", bytes(planes // 8)),
    ]
    entry, _ = _convert_capped(tmp_path, "header.acr", encode(elements))
    assert "tag (0028,0012)" in entry["error"]
    assert "output" in entry["error"] and "--max-output-mb" in entry["error"]


def test_an_input_larger_than_the_output_limit_is_not_read(tmp_path: Path) -> None:
    big = encode(header() + [(0x00091010, "s", "BIG"), (0x00091001, "b", bytes(3 << 20))])
    entry, _ = _convert_capped(tmp_path, "large.acr", big, "--max-output-mb", "2")
    assert "--max-output-mb" in entry["error"] and "2 MiB" in entry["error"]


def test_a_volume_at_the_limits_converts_within_the_stated_bound(tmp_path: Path) -> None:
    """docs/conversion.md: peak RSS within 100 MiB + 3 x the input or its pixels."""
    planes, side = 64, 512
    volume = np.random.default_rng(5).integers(0, 4096, (planes, side, side), dtype=np.uint16)
    elements = header(rows=side, columns=side) + [
        (0x00280005, "u", 3),
        (0x00280012, "u", planes),
        (0x7FE00010, "b", volume.tobytes()),
    ]
    source, out = tmp_path / "volume.acr", tmp_path / "out"
    source.write_bytes(encode(elements))
    limit_mib = volume.nbytes // MIB  # 32: the volume is exactly at the pixel limit
    run = run_capped(
        [*bridge_command(), "convert", str(source), "--out", str(out), "--jobs", "1", "--quiet"]
        + ["--max-pixel-mb", str(limit_mib), "--max-output-mb", str(limit_mib + 1)],
        cap=CAP,
    )
    assert run.status == 0, run.stderr
    outputs = sorted(out.glob("PT*/ST*/SE*/IM*"))
    assert len(outputs) == planes
    assert run.peak_rss < (100 + 3 * limit_mib) * MIB, f"peak RSS {run.peak_mib:.0f} MiB"
    ds = dcmread(outputs[0])
    assert ds.Rows == side and ds.Columns == side


# ---------------------------------------------------------------- the API and the CLI


def _planes(count: int) -> bytes:
    elements = header(rows=2, columns=2) + [(0x00280005, "u", 3), (0x00280012, "u", count)]
    return encode(elements + [(0x7FE00010, "b", bytes(8 * count))])


def test_limits_are_options_with_defaults_and_checked_at_the_limit() -> None:
    options = ConvertOptions()
    assert (options.max_frames, options.max_elements, options.max_values) == (
        1024,
        10_000,
        1_000_000,
    )
    assert options.max_pixel_bytes == 256 * MIB and options.max_output_bytes == 256 * MIB
    assert len(convert(_planes(3), options=ConvertOptions(max_frames=3)).datasets) == 3
    with pytest.raises(ConversionError, match=r"4 frames, more than the limit of 3") as caught:
        convert(_planes(4), source="p.acr", options=ConvertOptions(max_frames=3))
    assert caught.value.tag == 0x00280012 and caught.value.source == "p.acr"


@pytest.mark.parametrize(
    "field", ["max_frames", "max_output_bytes", "max_pixel_bytes", "max_elements", "max_values"]
)
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ConvertOptions(**{field: 0})  # type: ignore[arg-type]


def test_decode_counts_elements_inside_sequences_too() -> None:
    def element(tag: int, value: bytes) -> bytes:  # implicit VR little endian
        return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value

    item = element(0x00081150, b"") + element(0x00081155, b"")
    sequence = element(0x00081140, element(0xFFFEE000, item))  # one item, two elements
    top = encode(header())
    data = top + sequence
    total = len(decode(top).elements) + 1 + 2
    assert len(decode(data, max_elements=total).dataset.ReferencedImageSequence) == 1
    with pytest.raises(ConversionError, match=f"more than {total - 1} data elements"):
        decode(data, source="s.acr", max_elements=total - 1)


@pytest.mark.parametrize(
    "flag", ["--max-frames", "--max-output-mb", "--max-pixel-mb", "--max-elements", "--max-values"]
)
def test_limit_flags_reject_nonsense_as_usage_errors(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(tmp_path), "--out", str(tmp_path / "o"), flag, "0"]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_names_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--max-frames", "--max-output-mb", "--max-pixel-mb", "--max-elements"):
        assert flag in text


def test_dump_refuses_an_elements_bomb_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = [((0x0009 << 16) | elem, "b", b"") for elem in range(0x1000, 0x1000 + 20_000)]
    source = tmp_path / "tiny.acr"
    source.write_bytes(encode(header() + tiny, group_lengths=False))
    assert main(["dump", str(source)]) == 1
    captured = capsys.readouterr()
    assert "more than 10000 data elements" in captured.err and str(source) in captured.err
    assert captured.out == ""

"""Profile fitting: ``profile fit`` on captures the emulator writes under non-reference
profiles, probes renamed, shuffled and some inverted, then ``capture decode`` with the
fitted profile alone must give back the very pixels the emulator sent.

Also: ``capture decode`` honours the data link, transport and session knobs (the frame
check, delimiting, ack mode, transport and session modes, byte orders) given the right
profile, and a capture that cannot be fitted exits 1 saying why.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import peers
import pydicom
import pytest
from emulated import emulate_vcd, glitched, scramble, sent_pixels

from bridge.cli import main

VARIANTS = {
    "reference": "",
    "two-phase": '[physical]\nhandshake = "two-phase"',
    "strobe": '[physical]\nhandshake = "strobe"',
    "dir-only": '[physical]\ncontrol_lines = ["DIR"]',
    "breq-perr": '[physical]\ncontrol_lines = ["BREQ", "PERR"]',
    "two-parity-lines": (
        '[physical]\nparity_lines = 2\nparity = "even"\nactive_low = ["REQ", "D3", '
        '"PARITY_HI"]\n[physical.pins]\nPARITY_HI = [49, 50]'
    ),
    "parity-none": '[physical]\nparity = "none"',
    "text-little": '[physical]\ntext_byte_order = "little"',
    "binary-little": '[physical]\nbinary_byte_order = "little"',
    "crc-8005-reflected": (
        '[datalink]\ncrc = "crc-16"\ncrc_poly = 0x8005\ncrc_refin = true\ncrc_refout = true\n'
        "crc_init = 0"
    ),
    "crc-3d65-xorout": (
        '[datalink]\ncrc = "crc-16"\ncrc_poly = 0x3d65\ncrc_init = 0x1234\ncrc_xorout = 0xffff'
    ),
    "sum-16": '[datalink]\ncrc = "sum-16"',
    "check-none": '[datalink]\ncrc = "none"',
    "length-only": '[datalink]\ndelimiting = "length_only"',
    "ack-none": '[datalink]\nack_mode = "none"',
    "transport-none": '[transport]\nmode = "none"',
    "session-none": '[session]\nmode = "none"',
    "combined-two-phase-little-crc-no-session": (
        '[physical]\nhandshake = "two-phase"\ntext_byte_order = "little"\n'
        'binary_byte_order = "little"\n[datalink]\ncrc = "crc-16"\ncrc_poly = 0x8bb7\n'
        'crc_init = 0\n[session]\nmode = "none"'
    ),
    "combined-length-only-reflected-bare": (
        '[physical]\nparity = "none"\ncontrol_lines = ["DIR", "READY"]\n[datalink]\n'
        'delimiting = "length_only"\ncrc = "crc-16"\ncrc_poly = 0xc867\ncrc_refin = true\n'
        'crc_refout = true\ncrc_init = 0xffff\ncrc_xorout = 0xffff\n[transport]\nmode = "none"'
        '\n[session]\nmode = "none"'
    ),
    "combined-little-no-check": (
        '[physical]\nbinary_byte_order = "little"\n[datalink]\ncrc = "none"'
    ),
}


def _images(out: Path) -> list[np.ndarray]:
    return [pydicom.dcmread(p).pixel_array for p in sorted(out.glob("IMG*.dcm"))]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_fitted_profile_alone_decodes_a_scrambled_capture_pixel_exact(
    tmp_path: Path, variant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd, profile = emulate_vcd(tmp_path, VARIANTS[variant], images=1, size=16)
    scrambled = tmp_path / "probes.vcd"
    truth = scramble(vcd, scrambled, seed=sorted(VARIANTS).index(variant))
    fitted = tmp_path / "fitted.toml"
    assert main(["profile", "fit", str(scrambled), "--out", str(fitted)]) == 0
    err = capsys.readouterr().err
    assert "profile fit:" in err and "not fitted" in err
    text = fitted.read_text()
    assert "# NOT FITTED:" in text and "[channels]" in text
    # every fitted key carries its evidence and a confidence
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[", "name")):
            assert re.search(r"# (high|medium|low|.+: )", line), line
    # the data lines found are the lines the emulator drove (parity may read as the
    # other sense with the probe's inversion: both decode alike)
    import tomllib

    channels = tomllib.loads(text)["channels"]
    for probe, entry in channels.items():
        if re.fullmatch(r"D\d+", entry["line"]):
            assert truth[probe][0] == entry["line"], (probe, entry, truth[probe])
    out = tmp_path / "out"
    code = main(["capture", "decode", str(scrambled), "--profile", str(fitted), "--out", str(out)])
    assert code == 0
    got, sent = _images(out), sent_pixels(profile, images=1, size=16)
    assert len(got) == len(sent)
    for a, b in zip(got, sent, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "variant",
    ["crc-8005-reflected", "sum-16", "length-only", "ack-none", "session-none", "text-little"],
)
def test_capture_decode_honours_the_data_link_transport_and_session_knobs(
    tmp_path: Path, variant: str
) -> None:
    vcd, profile = emulate_vcd(tmp_path, VARIANTS[variant], images=1, size=16)
    out = tmp_path / "out"
    assert main(["capture", "decode", str(vcd), "--profile", str(profile), "--out", str(out)]) == 0
    got, sent = _images(out), sent_pixels(profile, images=1, size=16)
    assert len(got) == len(sent) == 1 and np.array_equal(got[0], sent[0])


def test_a_capture_with_no_handshake_cannot_be_fitted_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = tmp_path / "flat.vcd"
    flat.write_text(
        '$timescale 1 ns $end\n$var wire 1 ! A $end\n$var wire 1 " B $end\n'
        '$enddefinitions $end\n#0\n0!\n0"\n#10\n1!\n#20\n0!\n'
    )
    assert main(["profile", "fit", str(flat), "--out", str(tmp_path / "p.toml")]) == 1
    assert "no probe changes more than 3 times" in capsys.readouterr().err
    assert not (tmp_path / "p.toml").exists()


def test_profile_fit_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main(["profile", "fit", str(tmp_path / "x.vcd")]) == 2  # no --out
    assert main(["profile", "fit", str(tmp_path / "x.vcd"), "--out", str(tmp_path)]) == 2


def _fit_and_decode(
    capture: Path, profile: Path, tmp: Path, *fit_args: str, decode_args: tuple[str, ...] = ()
) -> dict[str, dict[str, object]]:
    """``profile fit`` then ``capture decode`` with the fitted profile alone: the fitted
    channel map (probe -> entry), after checking the images are the pixels sent."""
    import tomllib

    fitted = tmp / "fitted.toml"
    assert main(["profile", "fit", str(capture), *fit_args, "--out", str(fitted)]) == 0
    out = tmp / "out"
    code = main(
        ["capture", "decode", str(capture), "--profile", str(fitted), "--out", str(out)]
        + list(decode_args)
    )
    assert code == 0
    got, sent = _images(out), sent_pixels(profile, images=1, size=16)
    assert len(got) == len(sent) == 1 and np.array_equal(got[0], sent[0])
    channels: dict[str, dict[str, object]] = tomllib.loads(fitted.read_text())["channels"]
    return channels


@pytest.mark.parametrize("part", ["full", "data-and-dir"])
def test_a_fit_given_a_channel_map_keeps_the_mapped_probes_and_decodes(
    tmp_path: Path, part: str
) -> None:
    vcd, profile = emulate_vcd(tmp_path, "", images=1, size=16)
    scrambled = tmp_path / "probes.vcd"
    truth = scramble(vcd, scrambled, seed=11)
    keep = {probe: t for probe, t in truth.items() if part == "full" or t[0] != "REQ"}
    if part != "full":
        keep = {p: t for p, t in keep.items() if re.fullmatch(r"D\d+|PARITY|DIR", t[0])}
    cmap = tmp_path / "map.toml"
    cmap.write_text(
        "[channels]\n"
        + "".join(
            f'{probe} = {{ line = "{line}", inverted = {str(inv).lower()} }}\n'
            for probe, (line, inv) in keep.items()
        )
    )
    channels = _fit_and_decode(scrambled, profile, tmp_path, "--map", str(cmap))
    for probe, (line, inverted) in keep.items():
        assert channels[probe] == {"line": line, "inverted": inverted}, (probe, line, inverted)


def test_a_sigrok_session_file_fits(tmp_path: Path) -> None:
    vcd, profile = emulate_vcd(tmp_path, VARIANTS["two-phase"], images=1, size=16)
    scrambled = tmp_path / "probes.vcd"
    truth = scramble(vcd, scrambled, seed=3)
    sr = tmp_path / "probes.sr"
    tool = peers.require_tool("sigrok-cli")
    subprocess.run(
        [tool, "-i", str(scrambled), "-I", "vcd:compress=2000", "-o", str(sr)],
        check=True,
        timeout=120,
    )
    channels = _fit_and_decode(sr, profile, tmp_path)
    for probe, entry in channels.items():
        if re.fullmatch(r"D\d+|REQ|ACK", str(entry["line"])):
            assert truth[probe][0] == entry["line"], (probe, entry, truth[probe])


def test_a_glitchy_capture_fits_with_the_glitch_filter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd, profile = emulate_vcd(tmp_path, "", images=1, size=16)
    glitchy = tmp_path / "glitchy.vcd"
    assert glitched(vcd, glitchy, width=4, every=50) > 5
    scrambled = tmp_path / "probes.vcd"
    truth = scramble(glitchy, scrambled, seed=7)
    # no filter: the REQ glitches break the handshake; the fit says so, and names a pulse
    raw = tmp_path / "raw.toml"
    assert main(["profile", "fit", str(scrambled), "--glitch-ns", "0", "--out", str(raw)]) == 1
    assert "--glitch-ns" in capsys.readouterr().err
    channels = _fit_and_decode(scrambled, profile, tmp_path)  # the default filter, 10 ns
    for probe, entry in channels.items():
        if re.fullmatch(r"D\d+|REQ|ACK", str(entry["line"])):
            assert truth[probe][0] == entry["line"], (probe, entry, truth[probe])


def test_breq_is_mapped_as_the_mirror_of_dir(tmp_path: Path) -> None:
    """The capture shows neither direction line idle, so DIR and BREQ may come out
    swapped (both decode alike): the two probes must be mapped as the two lines."""
    body = '[physical]\ncontrol_lines = ["DIR", "BREQ"]'
    vcd, profile = emulate_vcd(tmp_path, body, images=1, size=16)
    scrambled = tmp_path / "probes.vcd"
    truth = scramble(vcd, scrambled, seed=5)
    channels = _fit_and_decode(scrambled, profile, tmp_path)
    want = {probe for probe, (line, _) in truth.items() if line in ("DIR", "BREQ")}
    got = {probe for probe, entry in channels.items() if entry["line"] in ("DIR", "BREQ")}
    assert got == want and len(got) == 2

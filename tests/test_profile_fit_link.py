"""Profile fitting of the link's own keys: handshake timing, frame type codes, window,
sequence bits and payload size, from captures the emulator writes under non-reference
profiles (probes renamed, shuffled, some inverted; no channel map), each decoded back
pixel-exact with the fitted profile alone. Also: the fit's memory does not grow with the
length of the capture (it fits on a bounded prefix, then decodes the whole capture
streaming to check).
"""

from __future__ import annotations

import re
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from emulated import emulate_vcd, scramble, sent_pixels

from bridge.capture.fit import fit_capture
from bridge.cli import main

LINK = {
    "slow-timing": (
        "[physical]\nsetup_ns = 300\nhold_ns = 250\nturnaround_ns = 5000\n"
        "[datalink]\nmax_payload_words = 32"
    ),
    "codes-window-sequence": (
        "[datalink]\nsequence_bits = 3\nwindow = 3\nmax_payload_words = 32\n"
        "[datalink.frame_types]\ndata = 4\nack = 9\nnak = 15"
    ),
    "combined-two-phase": (
        '[physical]\nhandshake = "two-phase"\nsetup_ns = 220\nhold_ns = 170\n'
        'turnaround_ns = 2500\n[datalink]\nsequence_bits = 4\nwindow = 5\ncrc = "sum-16"\n'
        "max_payload_words = 48\n[datalink.frame_types]\ndata = 7\nack = 12\nnak = 2"
    ),
    "length-only-codes-no-ack": (
        '[datalink]\ndelimiting = "length_only"\nack_mode = "none"\nsequence_bits = 3\n'
        "window = 3\nmax_payload_words = 24\n[datalink.frame_types]\ndata = 6\nack = 9\nnak = 15"
    ),
    "strobe-codes": (
        '[physical]\nhandshake = "strobe"\nsetup_ns = 150\nhold_ns = 400\n'
        "[datalink]\nsequence_bits = 5\nmax_payload_words = 40\n"
        "[datalink.frame_types]\ndata = 3\nack = 1\nnak = 2"
    ),
}


def _images(out: Path) -> list[np.ndarray]:
    return [pydicom.dcmread(p).pixel_array for p in sorted(out.glob("IMG*.dcm"))]


def _fit(tmp: Path, text: str, seed: int) -> tuple[dict, str, Path, Path]:
    vcd, profile = emulate_vcd(tmp, text, images=1, size=32)
    scrambled = tmp / "probes.vcd"
    scramble(vcd, scrambled, seed=seed)
    fitted = tmp / "fitted.toml"
    assert main(["profile", "fit", str(scrambled), "--out", str(fitted)]) == 0
    body = fitted.read_text()
    return tomllib.loads(body), body, scrambled, profile


def _decodes_back(tmp: Path, scrambled: Path, fitted: Path, profile: Path) -> None:
    out = tmp / "out"
    code = main(["capture", "decode", str(scrambled), "--profile", str(fitted), "--out", str(out)])
    assert code == 0
    got, sent = _images(out), sent_pixels(profile, images=1, size=32)
    assert len(got) == len(sent) == 1
    assert np.array_equal(got[0], sent[0])


@pytest.mark.parametrize("variant", sorted(LINK))
def test_the_link_keys_are_fitted_and_the_capture_decodes_back_pixel_exact(
    tmp_path: Path, variant: str
) -> None:
    fitted, body, scrambled, profile = _fit(tmp_path, LINK[variant], sorted(LINK).index(variant))
    truth = tomllib.loads(profile.read_text())
    ph, dl = fitted["physical"], fitted["datalink"]
    want_ph, want_dl = truth.get("physical", {}), truth.get("datalink", {})
    # timing: never below what the scanner does (the hold measured includes one hop of
    # propagation, 50 ns in the emulator), within the documented margin of 25 %; the
    # turnaround seen also holds the emulated ends' own work (thread timing): at least
    for key in ("setup_ns", "hold_ns"):
        if key in want_ph:
            assert want_ph[key] <= ph[key] <= 1.25 * (want_ph[key] + 50) + 10, (key, ph[key])
    assert ph["turnaround_ns"] >= want_ph.get("turnaround_ns", 1000)
    if want_ph.get("handshake") == "strobe":  # nothing answers: not fitted, and why
        assert "handshake_timeout_ms" not in ph and "nothing answers" in body
    else:
        assert ph["handshake_timeout_ms"] >= 100.0
    # frame type codes seen (DATA; ACK when acknowledged), sequence bits, window
    codes = want_dl.get("frame_types", {"data": 1, "ack": 2, "nak": 3})
    assert dl["frame_types"]["data"] == codes["data"]
    if want_dl.get("ack_mode") == "none":  # no ACK to see: said, and a code not taken
        assert "frame_types.ack: no empty frame" in body
        assert dl["frame_types"]["ack"] != codes["data"]
    else:
        assert dl["frame_types"]["ack"] == codes["ack"]
    # sequence bits are fitted from a wrap of the numbers; none seen, the reference's 8
    # stays and the file says why
    assert dl.get("sequence_bits", 8) == want_dl.get("sequence_bits", 8)
    if "sequence_bits" not in dl:
        assert "datalink.sequence_bits: no wrap" in body
    assert dl["max_payload_words"] == want_dl["max_payload_words"]
    if "window" in want_dl:
        assert dl["window"] == want_dl["window"]
    # what a logic analyser cannot see is said, with the reason
    head = body.split('name = "fitted"')[0]
    assert "pins" in head and "signalling" in head and "ground_pins" in head
    assert "levels, not pins" in head
    assert "frame_types.nak" in head  # no NAK on a clean link
    for line in body.splitlines():
        if line.startswith(("setup_ns", "hold_ns", "turnaround_ns", "frame_types", "window")):
            assert re.search(r"median|seen|frames|chosen", line), line
    _decodes_back(tmp_path, scrambled, tmp_path / "fitted.toml", profile)


def _peak_fitting(path: Path) -> int:
    tracemalloc.start()
    try:
        fit_capture(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_the_fits_memory_does_not_grow_with_the_capture_length(tmp_path: Path) -> None:
    # both captures are longer than the prefix the fit reads (MAX_WORDS words), the second
    # twice the first: the peak of memory the fit allocates is the same for both
    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    short, _ = emulate_vcd(tmp_path / "short", "", images=2, size=256)
    long, _ = emulate_vcd(tmp_path / "long", "", images=4, size=256)
    small, large = _peak_fitting(short), _peak_fitting(long)
    assert large < 1.15 * small, (small, large)


def test_max_words_bounds_the_prefix_fitted_and_the_whole_capture_still_decodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd, profile = emulate_vcd(tmp_path, LINK["codes-window-sequence"], images=1, size=32)
    fitted = tmp_path / "fitted.toml"
    assert main(["profile", "fit", str(vcd), "--max-words", "2000", "--out", str(fitted)]) == 0
    body = fitted.read_text()
    # the hold is measured on every word read: no more than the 2,000 words of the prefix
    counts = [int(n) for n in re.findall(r"^(?:setup|hold)_ns = .* over (\d+)", body, re.M)]
    assert counts and max(counts) <= 2000
    _decodes_back(tmp_path, vcd, fitted, profile)
    capsys.readouterr()
    assert main(["profile", "fit", str(vcd), "--max-words", "5", "--out", str(fitted)]) == 2
    assert "--max-words" in capsys.readouterr().err


def test_a_length_only_capture_cut_inside_a_frame_by_the_prefix_still_fits(
    tmp_path: Path,
) -> None:
    # without a start word the frames are walked back to back; the prefix the fit reads
    # (--max-words 1200 and 1400 of about 2,100 words) ends inside a frame of 260 words
    vcd, profile = emulate_vcd(
        tmp_path, '[datalink]\ndelimiting = "length_only"', images=1, size=32
    )
    for n in (1200, 1400):
        fitted = tmp_path / f"fitted-{n}.toml"
        assert main(["profile", "fit", str(vcd), "--max-words", str(n), "--out", str(fitted)]) == 0
        assert tomllib.loads(fitted.read_text())["datalink"]["delimiting"] == "length_only"
        _decodes_back(tmp_path / str(n), vcd, fitted, profile)


def test_the_application_fit_keeps_no_data_set(tmp_path: Path) -> None:
    # the application keys are read from up to MAX_MESSAGES messages: were their data sets
    # kept, the fit's memory would grow with the images up to 2,000 of them
    from bridge.capture.channels import reference_map
    from bridge.capture.fit import _observed
    from bridge.profile import REFERENCE

    vcd, _ = emulate_vcd(tmp_path, "", images=2, size=64)
    seen = _observed(REFERENCE, reference_map(REFERENCE.physical), vcd)
    stores = [m for _, m in seen.messages if m.command.field == 0x0001]
    assert len(stores) == 2
    assert all(len(m.data) <= 1 for _, m in seen.messages), [len(m.data) for _, m in seen.messages]


def test_the_max_words_default_is_the_fits_own() -> None:
    # two places hold the default: the CLI's --max-words and fit.MAX_WORDS
    from bridge.capture.fit import MAX_WORDS
    from bridge.cli import _parser

    args = _parser().parse_args(["profile", "fit", "x.vcd", "--out", "p.toml"])
    assert args.max_words == MAX_WORDS

"""Traces and captures: trace show/export, emulate --vcd, capture decode (VCD and .sr).

The emulated scanner sends phantom slices over ``loop://`` to the emulated receiver and
writes the bus as it saw it (``emulate --vcd``); ``capture decode`` must get the very
pixels back as DICOM that dciodvfy passes, for the reference bus and for every handshake
mode, control-line subset, two parity lines, probes inverted or renamed (with a map), in
VCD and in sigrok's own .sr (made by the real ``sigrok-cli`` from our VCD). Damaged
captures (glitches, truncation, garbage) give a report or a clear error, never a crash.
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import peers
import pydicom
import pytest
from emulated import emulate, emulate_vcd, glitched, sent_pixels

from bridge.acrnema.physical import parity_bits
from bridge.capture.bus import BusCarry, Changes, WordRecovery, synthesise
from bridge.capture.decode import line_changes, open_capture, read_words
from bridge.capture.vcd import _ident, write_vcd
from bridge.cli import main
from bridge.profile import REFERENCE, ProfileError, profile_from_mapping

VARIANTS = {
    "reference": "",
    "two-phase": 'handshake = "two-phase"',
    "strobe": 'handshake = "strobe"',
    "dir-only": 'control_lines = ["DIR"]',
    "breq-perr": 'control_lines = ["BREQ", "PERR"]',
    "dir-ready": 'control_lines = ["DIR", "READY"]\nhandshake = "two-phase"',
    "two-parity-lines": (
        'parity_lines = 2\nparity = "even"\nactive_low = ["REQ", "D3", "PARITY_HI"]\n'
        "[physical.pins]\nPARITY_HI = [49, 50]"
    ),
}


def _emulate(tmp: Path, body: str = "", *, images: int = 2, size: int = 32) -> tuple[Path, Path]:
    """Scanner -> receiver over loop://, the scanner writing --vcd; (vcd, profile)."""
    return emulate_vcd(tmp, "[physical]\n" + body, images=images, size=size)


def _sent_pixels(profile: Path | None, images: int = 2, size: int = 32) -> list[np.ndarray]:
    return sent_pixels(profile, images=images, size=size)


def _decode(capture: Path, out: Path, *args: str) -> tuple[int, dict]:
    code = main(["capture", "decode", str(capture), "--out", str(out), *args])
    report = out / "report.json"
    return code, json.loads(report.read_text()) if report.exists() else {}


def _assert_images(out: Path, expected: list[np.ndarray]) -> None:
    files = sorted(out.glob("IMG*.dcm"))
    assert len(files) == len(expected)
    for path, pixels in zip(files, expected, strict=True):
        assert np.array_equal(pydicom.dcmread(path).pixel_array, pixels)
        result = peers.dciodvfy(path)
        assert not result.errors, result.errors


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_emulator_vcd_decodes_to_the_pixels_sent(tmp_path: Path, variant: str) -> None:
    vcd, profile = _emulate(tmp_path, VARIANTS[variant])
    code, report = _decode(vcd, tmp_path / "out", "--profile", str(profile))
    assert code == 0, report.get("problems")
    assert report["sync_lost_count"] == 0
    assert report["frames"]["A"]["damaged"] == report["frames"]["B"]["damaged"] == 0
    assert len(report["images"]) == 2
    assert report["words"]["total"] == report["words"]["A"] + report["words"]["B"]
    phases = report["handshake_phases_ns"]
    assert all(p["count"] > 0 and p["min"] <= p["median"] <= p["max"] for p in phases.values())
    _assert_images(tmp_path / "out", _sent_pixels(profile))


def test_the_vcd_reads_in_sigrok_with_the_profiles_names_and_the_same_words(
    tmp_path: Path,
) -> None:
    """sigrok-cli reads the VCD: every line is a channel named as the profile names it,
    and the data lines sampled at each rising REQ are the words our decoder recovers."""
    vcd, _ = _emulate(tmp_path, images=1, size=16)
    tool = peers.require_tool("sigrok-cli")
    done = subprocess.run(
        [tool, "-i", str(vcd), "-I", "vcd:compress=400", "-O", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    header = next(line for line in done.stdout.splitlines() if line.startswith("; Channels"))
    assert header.split(": ", 1)[1].split(", ") == list(REFERENCE.physical.bus_lines)
    rows = [line for line in done.stdout.splitlines() if line[:1] in "01"]
    table = np.array([line.split(",") for line in rows], dtype=np.uint8)
    req = table[:, REFERENCE.physical.bus_lines.index("REQ")]
    rising = np.flatnonzero((req[1:] == 1) & (req[:-1] == 0)) + 1
    weights = 1 << np.arange(16)
    theirs = (table[rising, :16].astype(np.int64) * weights).sum(axis=1)
    ours = np.concatenate([rec.words for rec in read_words(vcd)])
    with open_capture(vcd) as reader:  # the same through the lower-level steps
        recovery = WordRecovery(REFERENCE.physical)
        lower = [recovery.feed(c).words for c in line_changes(reader, REFERENCE)]
        assert np.array_equal(np.concatenate([*lower, recovery.finish().words]), ours)
    assert np.array_equal(theirs, ours.astype(np.int64))


def test_the_vcd_ends_with_an_idle_timestamp_after_the_last_change(tmp_path: Path) -> None:
    """sigrok's VCD input draws a change only once a later timestamp follows it: the
    writer ends with one (export_vcd: the profile's hold/turnaround later), so the last word of a
    strobe bus (its REQ falling edge the last change) is not lost; readers get the
    same changes back."""
    ph = profile_from_mapping({"physical": {"handshake": "strobe"}}, source="t").physical
    words = np.array([0x1234, 0xBEEF], np.uint16)
    bus = synthesise(ph, words, np.zeros(2, np.uint8), [0, 0], [0, 0])
    vcd = tmp_path / "bus.vcd"
    write_vcd(vcd, ph.bus_lines, bus)
    req = _ident(ph.bus_lines.index("REQ"))
    *_, stamp, change, idle = vcd.read_text().splitlines()
    assert (stamp, change) == (f"#{int(bus.times[-1])}", f"0{req}")  # the last REQ falls
    assert idle.startswith("#") and int(idle[1:]) > bus.times[-1]
    with open_capture(vcd) as reader:
        back = list(reader.changes(list(ph.bus_lines)))
    last = np.append(bus.times[1:] != bus.times[:-1], True)  # one state a time
    assert np.array_equal(np.concatenate([c.times for c in back]), bus.times[last])
    assert np.array_equal(np.concatenate([c.states for c in back]), bus.states[last])
    tool = peers.require_tool("sigrok-cli")
    done = subprocess.run(
        [tool, "-i", str(vcd), "-I", "vcd", "-O", "csv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split(",") for line in done.stdout.splitlines() if line[:1] in "01"]
    req = [row[ph.bus_lines.index("REQ")] for row in rows]
    assert "".join(req).count("10") == 2  # both strobes end inside the capture


def test_a_sigrok_session_file_made_by_sigrok_cli_decodes(tmp_path: Path) -> None:
    vcd, profile = _emulate(tmp_path, VARIANTS["two-parity-lines"])
    sr = tmp_path / "bus.sr"
    tool = peers.require_tool("sigrok-cli")
    subprocess.run(
        [tool, "-i", str(vcd), "-I", "vcd:compress=2000", "-o", str(sr)], check=True, timeout=120
    )
    assert zipfile.is_zipfile(sr)
    code, report = _decode(sr, tmp_path / "out", "--profile", str(profile))
    assert code == 0, report.get("problems")
    _assert_images(tmp_path / "out", _sent_pixels(profile))


def _rewrite(vcd: Path, out: Path, rename: dict[str, str], invert: set[str]) -> None:
    """The VCD with signals renamed and some inverted (a probe on the - leg)."""
    text = vcd.read_text()
    head, body = text.split("$enddefinitions $end\n", 1)
    ids: dict[str, str] = {}
    for match in re.finditer(r"\$var wire 1 (\S+) (\S+) \$end", head):
        ids[match.group(2)] = match.group(1)
    for old, new in rename.items():
        head = head.replace(f" {ids[old]} {old} $end", f" {ids[old]} {new} $end")
    flip = {ids[name] for name in invert}
    lines = []
    for line in body.splitlines():
        if line[:1] in "01" and line[1:] in flip:
            line = ("1" if line[0] == "0" else "0") + line[1:]
        lines.append(line)
    out.write_text(head + "$enddefinitions $end\n" + "\n".join(lines) + "\n")


def test_inverted_and_renamed_probes_decode_with_a_channel_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd, profile = _emulate(tmp_path)
    lines = list(REFERENCE.physical.bus_lines)
    shuffled = lines[:]
    np.random.default_rng(5).shuffle(shuffled)
    rename = {line: f"CH{shuffled.index(line)}" for line in lines}
    inverted = {"REQ", "D0", "D9", "DIR", "PARITY"}
    probed = tmp_path / "probes.vcd"
    _rewrite(vcd, probed, rename, inverted)
    # without the map: the probes are not found by line name
    code, _ = _decode(probed, tmp_path / "nomap")
    assert code == 1
    assert "no signal named 'D0'" in capsys.readouterr().err
    cmap = tmp_path / "map.toml"
    entries = [
        f'{rename[line]} = {{ line = "{line}", inverted = true }}'
        if line in inverted
        else f'{rename[line]} = "{line}"'
        for line in lines
    ]
    cmap.write_text("[channels]\n" + "\n".join(entries) + "\n")
    code, report = _decode(probed, tmp_path / "out", "--map", str(cmap))
    assert code == 0, report.get("problems")
    _assert_images(tmp_path / "out", _sent_pixels(profile))


def test_glitches_shorter_than_the_width_are_ignored_and_longer_ones_lose_sync(
    tmp_path: Path,
) -> None:
    vcd, profile = _emulate(tmp_path)
    glitchy = tmp_path / "glitchy.vcd"
    assert glitched(vcd, glitchy, width=4, every=50) > 20
    code, report = _decode(glitchy, tmp_path / "out", "--glitch-ns", "5")
    assert code == 0 and report["sync_lost_count"] == 0
    _assert_images(tmp_path / "out", _sent_pixels(profile))
    # the same capture read with no glitch filter: REQ pulses break the handshake, and
    # each place is reported with its time and reason
    code, report = _decode(glitchy, tmp_path / "raw", "--glitch-ns", "0")
    assert report["sync_lost_count"] > 0
    first = report["sync_lost"][0]
    assert first["time_ns"] > 0 and "handshake" in first["reason"]


def test_a_truncated_capture_is_an_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd, _ = _emulate(tmp_path, images=1)
    cut = tmp_path / "cut.vcd"
    data = vcd.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    code, report = _decode(cut, tmp_path / "out")
    assert code == 1
    err = capsys.readouterr().err
    assert f"{cut}: the capture ends inside a message" in err
    assert report["problems"]


def test_a_corrupt_vcd_and_a_corrupt_sr_are_errors_naming_the_file_and_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd, _ = _emulate(tmp_path, images=1)
    text = vcd.read_text()
    head, body = text.split("$enddefinitions $end\n", 1)
    bad = tmp_path / "bad.vcd"
    bad.write_text(head + "$enddefinitions $end\n" + body[:5000] + "\n#12x4\n" + body[5000:])
    assert main(["capture", "decode", str(bad), "--out", str(tmp_path / "o1")]) == 1
    assert re.search(rf"{re.escape(str(bad))}: bad timestamp at byte \d+", capsys.readouterr().err)
    backwards = tmp_path / "back.vcd"
    backwards.write_text(head + "$enddefinitions $end\n" + body + "#5\n1!\n")
    assert main(["capture", "decode", str(backwards), "--out", str(tmp_path / "o2")]) == 1
    assert "time goes backwards at byte" in capsys.readouterr().err
    sr = tmp_path / "bad.sr"
    with zipfile.ZipFile(sr, "w") as z:
        z.writestr("version", "2")
    assert main(["capture", "decode", str(sr), "--out", str(tmp_path / "o3")]) == 1
    assert f"{sr}: not a sigrok session file" in capsys.readouterr().err
    short = tmp_path / "short.sr"
    with zipfile.ZipFile(short, "w") as z:
        probes = "".join(
            f"probe{i + 1}={name}\n" for i, name in enumerate(REFERENCE.physical.bus_lines)
        )
        z.writestr("metadata", "[device 1]\nsamplerate=1 MHz\nunitsize=3\n" + probes)
        z.writestr("logic-1-1", b"\x00\x01\x00\x01")
    assert main(["capture", "decode", str(short), "--out", str(tmp_path / "o4")]) == 1
    assert "ends inside a sample (sample 1)" in capsys.readouterr().err
    text_file = tmp_path / "notes.vcd"
    text_file.write_text("hello\n")
    assert main(["capture", "decode", str(text_file), "--out", str(tmp_path / "o5")]) == 1
    assert f"{text_file}: not a VCD file" in capsys.readouterr().err


def test_trace_show_prints_every_layer_and_damaged_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.bin"
    emulate(
        tmp_path / "rx",
        images=1,
        size=64,
        scanner_port=lambda url: f"faults+spy+{url}?trace={trace}&flip=2e-4&seed=3",
    )
    capsys.readouterr()
    assert main(["trace", "show", str(trace), "--words", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+\d+\.\d{6} out\s+\d+ words: [0-9A-F]{4}!? [0-9A-F]{4}!?", out, re.M)
    assert re.search(r"^\s+\d+\.\d{6} line  ready=1 peer=1", out, re.M)
    assert "frame DATA seq 0" in out and "packet message" in out
    assert "message CONNECT SCANNER -> ACRNEMA_BRIDGE" in out
    assert "message DATA store request, id 1" in out
    assert "message DATA store response, id 1, to 1, status 0x0000 (success)" in out
    assert "DAMAGED" in out and "!" in out  # the flipped bits: shown, not fatal
    # and exported: the bus as the scanner (side A) saw it decodes to the same image
    vcd = tmp_path / "t.vcd"
    assert main(["trace", "export", str(trace), "--vcd", str(vcd), "--side", "A"]) == 0
    code, report = _decode(vcd, tmp_path / "out")
    assert code == 0 and report["frames"]["A"]["damaged"] + report["frames"]["B"]["damaged"] > 0
    assert report["words"]["bad_parity"] > 0 and report["words"]["perr"] > 0
    assert report["frames"]["A"]["retransmitted"] + report["frames"]["B"]["retransmitted"] > 0
    _assert_images(tmp_path / "out", _sent_pixels(None, 1, 64))


def test_a_receiver_writes_the_bus_as_side_b(tmp_path: Path) -> None:
    vcd = tmp_path / "rx.vcd"
    emulate(tmp_path / "rx", images=1, size=32, receiver=["--vcd", str(vcd)])
    assert not vcd.with_name(vcd.name + ".trace").exists()
    code, report = _decode(vcd, tmp_path / "out")
    assert code == 0
    first = report["messages"][0]
    assert first["direction"] == "A" and first["text"].startswith("CONNECT SCANNER")


def test_synthesis_and_recovery_round_trip_in_chunks_for_each_mode() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    words = rng.integers(0, 1 << 16, n).astype(np.uint16)
    sides = (np.arange(n) // 700 % 2).astype(np.uint8)
    for mode in ("four-phase", "two-phase", "strobe"):
        ph = profile_from_mapping({"physical": {"handshake": mode}}).physical
        from bridge.acrnema.physical import parity_bits

        par = parity_bits(words, ph.parity)
        par[17] ^= 1  # one damaged word stays damaged
        bus = synthesise(ph, words, par, sides, np.zeros(n, np.int64))
        recovery = WordRecovery(ph, glitch_ns=5)
        got = []
        for lo in range(0, len(bus.times), 997):  # chunks split anywhere
            got.append(recovery.feed(Changes(bus.times[lo : lo + 997], bus.states[lo : lo + 997])))
        got.append(recovery.finish())
        assert np.array_equal(np.concatenate([g.words for g in got]), words), mode
        assert np.array_equal(np.concatenate([g.sides for g in got]), sides), mode
        assert np.array_equal(np.concatenate([g.parity for g in got]), par), mode
        assert not any(g.losses for g in got), mode


def test_the_vcd_does_not_depend_on_how_the_words_are_batched(tmp_path: Path) -> None:
    """trace export and emulate --vcd synthesise the bus a batch of records at a time
    (memory bounded): the VCD must be the one the whole run gives at once, with no
    zero-width READY glitch where a batch begins, and in every handshake mode."""
    rng = np.random.default_rng(7)
    n = 3000
    words = rng.integers(0, 1 << 16, n).astype(np.uint16)
    sides = (np.arange(n) // 250 % 2).astype(np.uint8)
    early = np.sort(rng.integers(0, 2_000_000, n)).astype(np.int64)
    ready = [(0, True, True), (900_000, True, False), (1_000_000, True, True)]
    after = [0, int(np.searchsorted(early, 900_000)), int(np.searchsorted(early, 1_000_000))]
    for mode in ("four-phase", "two-phase", "strobe"):
        ph = profile_from_mapping({"physical": {"handshake": mode}}).physical
        par = parity_bits(words, ph.parity)
        whole = synthesise(ph, words, par, sides, early, ready=ready, ready_after=after)
        write_vcd(tmp_path / "whole.vcd", ph.bus_lines, whole)
        carry = BusCarry()
        chunks = []
        for lo in range(0, n, 400):
            hi = min(lo + 400, n)
            mine = [i for i, k in enumerate(after) if lo <= k < hi or (k == n and hi == n)]
            chunks.append(
                synthesise(
                    ph,
                    words[lo:hi],
                    par[lo:hi],
                    sides[lo:hi],
                    early[lo:hi],
                    ready=[ready[i] for i in mine],
                    ready_after=[after[i] - lo for i in mine],
                    carry=carry,
                )
            )
        write_vcd(tmp_path / "chunks.vcd", ph.bus_lines, iter(chunks))
        assert (tmp_path / "chunks.vcd").read_text() == (tmp_path / "whole.vcd").read_text(), mode


@pytest.mark.parametrize(
    ("physical", "problem"),
    [
        ({"handshake": "three-phase"}, "physical.handshake"),
        ({"control_lines": ["READY", "PERR"]}, "DIR or BREQ is needed"),
        ({"control_lines": ["DIR", "CLOCK"]}, "'CLOCK' is not one of"),
        ({"parity_lines": 3}, "physical.parity_lines: 1 or 2"),
        ({"parity_lines": 2}, "physical.pins: missing line(s) PARITY_HI"),
        ({"signalling": "ecl"}, "physical.signalling"),
        ({"ground_pins": [3]}, "pin 3 is already used by a ground pin"),
        ({"ground_pins": [51]}, "physical.ground_pins: pins 1-50"),
    ],
)
def test_the_bus_knobs_are_validated(physical: dict, problem: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_from_mapping({"physical": physical})
    assert problem in str(caught.value)


def test_a_bus_without_some_lines_frees_their_pins() -> None:
    ph = profile_from_mapping(
        {"physical": {"control_lines": ["DIR"], "ground_pins": [41, 42, 43, 44, 45, 46, 47, 48]}}
    ).physical
    assert "BREQ" not in ph.bus_lines and "READY_A" not in ph.bus_lines
    assert "PERR" not in ph.bus_lines


def test_usage_errors_exit_2_and_unreadable_inputs_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcd = tmp_path / "bus.vcd"
    vcd.write_text("$timescale 1 ns $end\n$enddefinitions $end\n")
    bad_map = tmp_path / "map.toml"
    bad_map.write_text("[channels]\nCH0 = 5\n")
    assert (
        main(["capture", "decode", str(vcd), "--out", str(tmp_path / "o"), "--map", str(bad_map)])
        == 2
    )
    assert "channels.CH0" in capsys.readouterr().err
    assert main(["capture", "decode", str(vcd), "--out", str(tmp_path / "o")]) == 1
    assert "no signal named 'D0'" in capsys.readouterr().err
    assert main(["capture", "decode", str(vcd)]) == 2  # --out is required
    capsys.readouterr()
    junk = tmp_path / "junk.vcd"
    junk.write_bytes(b"$enddefinitions $end\n" + b"x" * (3 << 20))
    assert (
        main(
            [
                "capture",
                "decode",
                str(junk),
                "--out",
                str(tmp_path / "o2"),
                "--map",
                str(tmp_path / "m.toml"),
            ]
        )
        == 2
    )
    capsys.readouterr()
    lines = REFERENCE.physical.bus_lines
    head = "".join(f"$var wire 1 {chr(33 + i)} {name} $end\n" for i, name in enumerate(lines))
    junk.write_bytes(head.encode() + b"$enddefinitions $end\n" + b"x" * (3 << 20))
    assert main(["capture", "decode", str(junk), "--out", str(tmp_path / "o3")]) == 1
    assert "no whitespace in 1 MiB" in capsys.readouterr().err
    not_trace = tmp_path / "t.bin"
    not_trace.write_bytes(b"hello")
    assert main(["trace", "show", str(not_trace)]) == 1
    assert "not an acrnema-bridge trace" in capsys.readouterr().err

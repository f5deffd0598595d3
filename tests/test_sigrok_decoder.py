"""The sigrok protocol decoders (sigrok/decoders/acrnema_bus, acrnema_frames) in sigrok-cli.

Debian's real ``sigrok-cli`` runs our decoders (``SIGROKDECODE_DIR``) on VCDs of the bus
that the project's own writer draws: a known sequence of frames both ways, with a
parity error and a bad check word injected, for every handshake mode, the control-line
subsets and two parity lines with active-low lines; and the VCD of a real emulator run.
The words, frames, packets and messages sigrok annotates must be the ones sent (and the
ones the bridge's own capture decoder finds); a ``.sr`` file that sigrok-cli makes from
the VCD must decode the same.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import peers
import pytest
from emulated import emulate

from bridge.acrnema.datalink import frame_decoder
from bridge.acrnema.framing import (
    FIRST,
    LAST,
    CheckWord,
    Frame,
    FrameDamaged,
    FrameDecoder,
    FrameType,
    encode_frame,
)
from bridge.acrnema.physical import parity_bits
from bridge.acrnema.transport import Transport
from bridge.capture.bus import Changes, WordRecovery, electrical, synthesise
from bridge.capture.decode import line_changes, open_capture
from bridge.capture.sigrok import SrReader
from bridge.capture.vcd import write_vcd
from bridge.cli import main
from bridge.errors import CaptureError
from bridge.profile import Profile, TransportSection, load_profile, profile_from_mapping

pytestmark = pytest.mark.peers

DECODERS = Path(__file__).resolve().parent.parent / "sigrok" / "decoders"
CHANNEL_IDS = {f"D{i}": f"d{i}" for i in range(16)} | {
    "REQ": "req",
    "ACK": "ack",
    "PARITY": "par",
    "PARITY_HI": "par_hi",
    "DIR": "dir",
    "BREQ": "breq",
    "PERR": "perr",
}

VARIANTS = {
    "reference": {},
    "two-phase": {"handshake": "two-phase"},
    "strobe": {"handshake": "strobe"},
    "breq-perr": {"control_lines": ["BREQ", "PERR"]},
    "dir-only-even": {"control_lines": ["DIR"], "parity": "even"},
    "little-endian": {"text_byte_order": "little", "binary_byte_order": "little"},
    "two-parity-lines-active-low": {
        "parity_lines": 2,
        "parity": "even",
        "active_low": ["REQ", "D3", "PARITY_HI", "DIR"],
        "pins": {"PARITY_HI": [49, 50]},
    },
}


def _profile(variant: str) -> Profile:
    return profile_from_mapping({"physical": VARIANTS[variant]}, source=variant)


@dataclass
class Sent:
    """What went on the bus: words (side, word, parity good, PERR) and frame annotations."""

    words: list[tuple[str, int, bool, bool]]
    frames: list[str]
    packets: list[str]
    messages: list[str]


class Bus:
    """Frames put on the bus one after the other, with faults injected on request."""

    def __init__(self, profile: Profile) -> None:
        self.ph = profile.physical
        self.dl = profile.datalink
        self.words: list[int] = []
        self.sides: list[int] = []
        self.good: list[bool] = []
        self.sent = Sent([], [], [], [])

    def frame(
        self,
        side: str,
        kind: FrameType,
        seq: int,
        payload: bytes = b"",
        *,
        bad_parity_at: int | None = None,
        bad_check: bool = False,
        note: str = "",
        flags: int = 0,
    ) -> None:
        dl = self.dl
        words = (
            encode_frame(
                kind,
                seq,
                payload,
                start_word=dl.start_word,
                codes={k: dl.frame_types[k.name.lower()] for k in FrameType},
                check=CheckWord(
                    dl.crc, dl.crc_init, dl.crc_poly, dl.crc_refin, dl.crc_refout, dl.crc_xorout
                ),
                delimiting=dl.delimiting,
                flags=flags,
            )
            .astype(int)
            .tolist()
        )
        if bad_check:
            words[-1] ^= 0x0101
        if dl.delimiting == "start_word":
            assert dl.start_word not in words[1:], "a frame must not hold a second start word"
        good = [True] * len(words)
        if bad_parity_at is not None:
            good[bad_parity_at] = False
        self.words += words
        self.sides += [0 if side == "A" else 1] * len(words)
        self.good += good
        perr = "PERR" in self.ph.control_lines
        self.sent.words += [(side, w, g, perr and not g) for w, g in zip(words, good, strict=True)]
        header = f"{kind.name} seq {seq}"
        marks = "".join(f" {n}" for bit, n in ((FIRST, "FIRST"), (LAST, "LAST")) if flags & bit)
        if bad_parity_at is not None:
            self.sent.frames.append(
                f"{side}: DAMAGED {header}: parity error in word {bad_parity_at}"
            )
        elif bad_check:
            self.sent.frames.append(f"{side}: DAMAGED {header}: CRC mismatch")
        else:
            size = f", {len(payload) + 1 >> 1} words" if kind == FrameType.DATA else ""
            self.sent.frames.append(f"{side}: {header}{marks}{size}{note}")

    def write(self, path: Path) -> None:
        words = np.array(self.words, np.uint16)
        parity = parity_bits(words, self.ph.parity) ^ ~np.array(self.good) & 1
        bus = synthesise(
            self.ph,
            words,
            parity.astype(np.uint8),
            self.sides,
            np.arange(len(words), dtype=np.int64) * 10,
            perr=~np.array(self.good),
        )
        write_vcd(path, self.ph.bus_lines, Changes(bus.times, electrical(self.ph, bus.states)))


def _known_sequence(profile: Profile) -> Bus:
    """A message A -> B in three segments over DATA frames (one damaged by a parity
    error, one by its check word, one sent twice), B's ACKs and NAKs, and B's one-frame
    reply, ACKed by A."""
    bus = Bus(profile)
    order = profile.physical.binary_byte_order
    transport = Transport(TransportSection(max_segment_bytes=40), order)
    _, packets = transport.packets(bytes(range(1, 101)))
    chunks = [packets[i : i + 26] for i in range(0, len(packets), 26)]
    assert len(chunks) == 5
    bus.frame("A", FrameType.DATA, 0, chunks[0])
    bus.frame("B", FrameType.ACK, 0)
    bus.frame("A", FrameType.DATA, 1, chunks[1], bad_parity_at=5)
    bus.frame("B", FrameType.NAK, 1)
    bus.frame("A", FrameType.DATA, 1, chunks[1])
    bus.frame("B", FrameType.ACK, 1)
    bus.frame("A", FrameType.DATA, 2, chunks[2], bad_check=True)
    bus.frame("B", FrameType.NAK, 2)
    bus.frame("A", FrameType.DATA, 2, chunks[2])
    bus.frame("A", FrameType.DATA, 2, chunks[2], note=" (again)")
    bus.frame("A", FrameType.DATA, 3, chunks[3])
    bus.frame("A", FrameType.DATA, 4, chunks[4])
    bus.frame("B", FrameType.ACK, 2)
    bus.frame("B", FrameType.ACK, 3)
    bus.frame("B", FrameType.ACK, 4)
    _, reply = Transport(binary_byte_order=order).packets(b"reply!")
    bus.frame("B", FrameType.DATA, 0, reply)
    bus.frame("A", FrameType.ACK, 0)
    bus.sent.packets = [
        "A: message 0 segment 0, 40 bytes",
        "A: message 0 segment 1, 40 bytes",
        "A: message 0 segment 2 (last), 20 bytes",
        "B: message 0 segment 0 (last), 6 bytes",
    ]
    bus.sent.messages = [
        "A: message 0, 100 bytes in 3 segment(s)",
        "B: message 0, 6 bytes in 1 segment(s)",
    ]
    return bus


def _sigrok(capture: Path, profile: Profile, rows: str) -> list[str]:
    """sigrok-cli with both decoders stacked on ``capture``: the annotation lines."""
    tool = peers.require_tool("sigrok-cli")
    ph = profile.physical
    bus = ["acrnema_bus"]
    bus += [f"{CHANNEL_IDS[line]}={line}" for line in ph.bus_lines if line in CHANNEL_IDS]
    bus += [f"handshake={ph.handshake}", f"parity={ph.parity}"]
    if ph.active_low:
        bus.append("active_low=" + "/".join(ph.active_low))
    dl = profile.datalink
    codes = "/".join(str(dl.frame_types[k]) for k in ("data", "ack", "nak"))
    frames = (
        f"acrnema_frames:binary_byte_order={ph.binary_byte_order}:start_word={dl.start_word:04X}"
        f":crc_init={dl.crc_init:04X}:frame_types={codes}:sequence_bits={dl.sequence_bits}"
        f":max_payload_words={dl.max_payload_words}:delimiting={dl.delimiting}:crc={dl.crc}"
        f":crc_poly={dl.crc_poly:04X}:crc_refin={str(dl.crc_refin).lower()}"
        f":crc_refout={str(dl.crc_refout).lower()}:crc_xorout={dl.crc_xorout:04X}"
        f":ack_mode={dl.ack_mode}:transport_mode={profile.transport.mode}"
    )
    fmt = [] if capture.suffix == ".sr" else ["-I", "vcd:compress=400"]
    done = subprocess.run(
        [tool, "-i", str(capture), *fmt, "-P", ":".join(bus) + "," + frames, "-A", rows],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"SIGROKDECODE_DIR": str(DECODERS)},
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout.splitlines()


def _rows(lines: list[str], decoder: str) -> list[str]:
    prefix = f"{decoder}-1: "
    return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


def _word_text(side: str, word: int, good: bool, perr: bool) -> str:
    return f"{side}: {word:04X}" + ("" if good else " PARITY ERROR") + (" PERR" if perr else "")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_decoders_annotate_the_words_and_frames_sent(tmp_path: Path, variant: str) -> None:
    profile = _profile(variant)
    bus = _known_sequence(profile)
    vcd = tmp_path / "bus.vcd"
    bus.write(vcd)
    lines = _sigrok(vcd, profile, "acrnema_bus=words,acrnema_frames=frames:packets:messages")
    assert _rows(lines, "acrnema_bus") == [_word_text(*w) for w in bus.sent.words]
    frames = _rows(lines, "acrnema_frames")
    assert [f for f in frames if " seq " in f] == bus.sent.frames
    assert [f for f in frames if " segment " in f and "segment(s)" not in f] == bus.sent.packets
    assert [f for f in frames if "segment(s)" in f] == bus.sent.messages


def test_the_frames_agree_with_the_bridges_frame_decoder() -> None:
    """The expected frames of the known sequence are what the bridge's decoder finds."""
    profile = _profile("reference")
    bus = _known_sequence(profile)
    words = np.array(bus.words, np.uint16)
    parity = parity_bits(words, "odd") ^ ~np.array(bus.good) & 1
    found = []
    for side, code in (("A", 0), ("B", 1)):
        pick = np.array(bus.sides) == code
        for event in FrameDecoder().feed(words[pick], parity[pick]):
            found.append((side, type(event).__name__, getattr(event, "reason", "")))
    expected = [
        (f[0], "FrameDamaged" if "DAMAGED" in f else "Frame", f.split(": ")[-1])
        for f in bus.sent.frames
        if "DAMAGED" in f
    ]
    assert [f for f in found if f[1] == "FrameDamaged"] == expected
    assert sum(f[1] == "Frame" for f in found) == len(bus.sent.frames) - len(expected)


def test_phases_and_sync_losses_are_annotated(tmp_path: Path) -> None:
    """Each four-phase cycle's phases are annotated, and a REQ pulse with no ACK (a word
    not answered) is a sync loss that does not cost the next word."""
    profile = _profile("reference")
    ph = profile.physical
    words = np.array([0x1234, 0xBEEF, 0x0042], np.uint16)
    bus = synthesise(ph, words, parity_bits(words, "odd"), [0, 0, 0], [0, 0, 0])
    states = bus.states.copy()
    ack = np.uint64(1 << ph.bus_lines.index("ACK"))
    # the second word's cycle: rows 5-9 (data, REQ up, ACK up, REQ down, ACK down)
    states[6:9] &= ~ack
    vcd = tmp_path / "bus.vcd"
    write_vcd(vcd, ph.bus_lines, Changes(bus.times, electrical(ph, states)))
    rows = _rows(_sigrok(vcd, profile, "acrnema_bus"), "acrnema_bus")
    assert rows[:4] == [
        "REQ up -> ACK up",
        "A: 1234",
        "ACK up -> REQ down",
        "REQ down -> ACK down",
    ]
    assert "Sync lost: REQ down while waiting for ACK up" in rows
    assert "Word BEEF not answered" in rows
    assert [r for r in rows if r.startswith("A: ")] == ["A: 1234", "A: 0042"]


def test_a_sigrok_session_file_decodes_the_same(tmp_path: Path) -> None:
    profile = _profile("two-parity-lines-active-low")
    bus = _known_sequence(profile)
    vcd, sr = tmp_path / "bus.vcd", tmp_path / "bus.sr"
    bus.write(vcd)
    tool = peers.require_tool("sigrok-cli")
    subprocess.run(
        [tool, "-i", str(vcd), "-I", "vcd:compress=400", "-o", str(sr)], check=True, timeout=120
    )
    rows = "acrnema_bus=words,acrnema_frames=frames:packets:messages"
    from_vcd = _sigrok(vcd, profile, rows)
    assert len(_rows(from_vcd, "acrnema_bus")) == len(bus.sent.words)
    assert _sigrok(sr, profile, rows) == from_vcd


def test_an_emulator_capture_is_annotated_as_the_bridge_decodes_it(tmp_path: Path) -> None:
    """emulate --vcd (scanner -> receiver over loop://, one phantom slice): sigrok's words
    are those of the bridge's own capture decoder, both sides; its frames those of the
    bridge's frame decoder; and it annotates every message capture decode finds."""
    profile_path = tmp_path / "profile.toml"
    profile_path.write_text("")
    vcd = tmp_path / "bus.vcd"
    emulate(tmp_path / "rx", images=1, size=16, scanner=["--vcd", str(vcd)])
    profile = load_profile(profile_path)
    lines = _sigrok(vcd, profile, "acrnema_bus=words,acrnema_frames=frames:messages")

    with open_capture(vcd) as reader:
        recovery = WordRecovery(profile.physical)
        parts = [recovery.feed(c) for c in line_changes(reader, profile)] + [recovery.finish()]
    words = np.concatenate([p.words for p in parts])
    sides = np.concatenate([p.sides for p in parts])
    ok = np.concatenate([p.parity for p in parts]) == parity_bits(words, "odd")
    ours = [
        _word_text("AB"[s], int(w), bool(g), False)
        for w, s, g in zip(words.tolist(), sides.tolist(), ok.tolist(), strict=True)
    ]
    assert len(ours) > 500
    assert _rows(lines, "acrnema_bus") == ours

    frames = _rows(lines, "acrnema_frames")
    for code, side in enumerate("AB"):
        pick = sides == code
        events = FrameDecoder().feed(words[pick])
        theirs = [f for f in frames if f.startswith(f"{side}: ") and " seq " in f]
        assert len(theirs) == len(events) > 0
        assert all("DAMAGED" not in f for f in theirs)
    assert main(["capture", "decode", str(vcd), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    messages = [f for f in frames if re.fullmatch(r"[AB]: message \d+, .*", f)]
    assert len(messages) == report["message_count"] > 0


def test_an_unreadable_header_and_a_segment_out_of_order_are_reported(tmp_path: Path) -> None:
    profile = _profile("reference")
    bus = Bus(profile)
    bus.frame("A", FrameType.DATA, 0, struct.pack(">HHI", 5, 0, 4) + b"abcd")
    bus.frame("A", FrameType.DATA, 1, struct.pack(">HHI", 5, 0x8002, 2) + b"xy")
    bus.frame("A", FrameType.DATA, 2, struct.pack(">HHI", 6, 0x8000, 2) + b"ok")
    bus.words[-8] |= 0x0100  # the last frame's header (of 9 words): bits 8-11 must be 0
    vcd = tmp_path / "bus.vcd"
    bus.write(vcd)
    rows = _rows(_sigrok(vcd, profile, "acrnema_frames=frames:packets:warnings"), "acrnema_frames")
    assert rows == [
        "A: DATA seq 0, 6 words",
        "A: message 5 segment 0, 4 bytes",
        "A: DATA seq 1, 5 words",
        "A: message 5 segment 2 (last), 2 bytes",
        "A: message 5 segment 2 out of order",
        "A: DAMAGED: unreadable frame header",
    ]


CRC_16_DNP = {
    "crc": "crc-16",
    "crc_poly": 0x3D65,
    "crc_init": 0,
    "crc_refin": True,
    "crc_refout": True,
    "crc_xorout": 0xFFFF,
}
LINK_DIALECTS = {
    "sum-16": {"datalink": {"crc": "sum-16"}},
    "crc-16-arc": {
        "datalink": {
            "crc": "crc-16",
            "crc_poly": 0x8005,
            "crc_init": 0,
            "crc_refin": True,
            "crc_refout": True,
        }
    },
    "crc-16-dnp": {"datalink": CRC_16_DNP},  # every parameter away from the reference
    "crc-16-genibus": {"datalink": {"crc": "crc-16", "crc_xorout": 0xFFFF}},
    "crc-16-kermit": {
        "datalink": {"crc": "crc-16", "crc_init": 0, "crc_refin": True, "crc_refout": True}
    },
    "no-check": {"datalink": {"crc": "none"}},
    "length-only": {"datalink": {"delimiting": "length_only"}},
    "length-only-sum-16": {"datalink": {"delimiting": "length_only", "crc": "sum-16"}},
    "ack-none": {"datalink": {"ack_mode": "none"}},
    "ack-none-no-check": {"datalink": {"ack_mode": "none", "crc": "none"}},
    "transport-none": {"transport": {"mode": "none"}},
    "all": {  # the example of docs/link-profile.md, "Dialect knobs"
        "transport": {"mode": "none"},
        "datalink": {
            "delimiting": "length_only",
            "crc": "crc-16",
            "crc_poly": 0x8005,
            "crc_init": 0,
            "crc_refin": True,
            "crc_refout": True,
            "ack_mode": "none",
        },
        "session": {"mode": "none"},
    },
}


DIALECTS = {
    "start-word": {"datalink": {"start_word": 0x7E81}},
    "crc-init": {"datalink": {"crc_init": 0x1D0F}},
    "frame-types": {"datalink": {"frame_types": {"data": 4, "ack": 9, "nak": 15}}},
    "sequence-bits": {"datalink": {"sequence_bits": 3, "window": 3}},
    "all-two-phase": {
        "physical": {"handshake": "two-phase"},
        "datalink": {
            "start_word": 0x3C5A,
            "crc_init": 0x0000,
            "frame_types": {"data": 7, "ack": 1, "nak": 2},
            "sequence_bits": 2,
            "window": 1,
            "max_payload_words": 64,
        },
    },
    "all-strobe": {
        "physical": {"handshake": "strobe"},
        "datalink": {
            "start_word": 0x0F0F,
            "crc_init": 0x1234,
            "frame_types": {"data": 3, "ack": 1, "nak": 2},
            "sequence_bits": 4,
            "window": 5,
        },
    },
    "sum-16-no-acks": {"datalink": {"crc": "sum-16", "ack_mode": "none"}},
    "crc-16-dnp-no-transport": {
        "transport": {"mode": "none"},
        "datalink": CRC_16_DNP,
    },
    "no-check-two-phase": {"physical": {"handshake": "two-phase"}, "datalink": {"crc": "none"}},
    "link-example": LINK_DIALECTS["all"],
}


def _toml(table: dict) -> str:
    lines = []
    for section, keys in table.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {v}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_an_emulator_capture_under_a_dialect_profile_is_annotated_as_sent(
    tmp_path: Path, dialect: str
) -> None:
    """emulate --vcd under a non-reference start word, CRC init, frame type codes and
    sequence number width (alone, and together with the other handshake modes), and
    under the link dialects (check words, no start word, no acknowledgements, no
    transport: the example profile of docs/link-profile.md among them): given
    the profile's values as options, sigrok's words are those the bridge recovers, its
    frames those the bridge's frame decoder finds (none damaged, none taken twice; with
    narrow sequence numbers they wrap several times), and its messages those capture
    decode finds."""
    profile_path = tmp_path / "profile.toml"
    profile_path.write_text(_toml(DIALECTS[dialect]))
    profile = load_profile(profile_path)
    vcd = tmp_path / "bus.vcd"
    emulate(tmp_path / "rx", images=1, size=64, profile=profile_path, scanner=["--vcd", str(vcd)])
    lines = _sigrok(vcd, profile, "acrnema_bus=words,acrnema_frames=frames:messages:warnings")

    with open_capture(vcd) as reader:
        recovery = WordRecovery(profile.physical)
        parts = [recovery.feed(c) for c in line_changes(reader, profile)] + [recovery.finish()]
    words = np.concatenate([p.words for p in parts])
    sides = np.concatenate([p.sides for p in parts])
    ours = [
        _word_text("AB"[s], int(w), True, False)
        for w, s in zip(words.tolist(), sides.tolist(), strict=True)
    ]
    assert _rows(lines, "acrnema_bus") == ours

    dl = profile.datalink
    frames = _rows(lines, "acrnema_frames")
    assert frames and all("DAMAGED" not in f and "again" not in f for f in frames)
    assert not [f for f in frames if re.search("broken off|out of order|data lost|dropped", f)]
    data_frames = 0
    units = profile.transport.mode == "none"
    for code, side in enumerate("AB"):
        decoder = frame_decoder(dl, profile.physical.parity, units=units)
        events = decoder.feed(words[sides == code])
        expected = [
            f"{side}: {e.type.name} seq {e.sequence}"
            + "".join(f" {n}" for b, n in ((FIRST, "FIRST"), (LAST, "LAST")) if e.flags & b)
            + (f", {len(e.payload) // 2} words" if e.type == FrameType.DATA else "")
            for e in events
            if isinstance(e, Frame)
        ]
        assert all(type(e).__name__ == "Frame" for e in events)
        theirs = [f for f in frames if f.startswith(f"{side}: ") and " seq " in f]
        assert theirs == expected
        data_frames = max(data_frames, sum(" DATA " in f for f in theirs))
    assert data_frames > 1 << dl.sequence_bits or dl.sequence_bits == 8  # it wraps
    assert (
        main(
            [
                "capture",
                "decode",
                str(vcd),
                "--profile",
                str(profile_path),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    messages = [f for f in frames if re.fullmatch(r"[AB]: message( \d+)?, .*", f)]
    assert len(messages) == report["message_count"] > 0


def _cut(ph_variant: str, skip_rows: int, drop: tuple[int, int] | None = None) -> tuple:
    """Three words A -> A on a ``ph_variant`` bus, the capture starting ``skip_rows`` rows
    into the first word's cycle, with the rows ``drop`` (start, stop) of the states
    made equal to the row before (an edge that never came)."""
    profile = _profile(ph_variant)
    ph = profile.physical
    words = np.array([0x1234, 0xBEEF, 0x0042, 0x7777], np.uint16)
    bus = synthesise(ph, words, parity_bits(words, "odd"), [0] * 4, [0] * 4)
    states = bus.states.copy()
    if drop is not None:
        line, row = drop
        states[row:] ^= np.uint64(1 << ph.bus_lines.index(line))
    return profile, Changes(bus.times[skip_rows:], states[skip_rows:])


@pytest.mark.parametrize(
    ("variant", "skip", "drop", "reason", "lost"),
    [
        # the capture begins after the first REQ change: its ACK change comes unawaited
        ("two-phase", 1, None, "ACK changes while waiting for REQ changes", None),
        # the second word's ACK never changes: the third word's REQ change finds it waiting
        ("two-phase", 0, ("ACK", 5), "REQ changes while waiting for ACK changes", "BEEF"),
        # the capture begins inside the first strobe
        ("strobe", 1, None, "REQ down while waiting for REQ up", None),
    ],
)
def test_sync_losses_in_two_phase_and_strobe_modes(
    tmp_path: Path,
    variant: str,
    skip: int,
    drop: tuple[str, int] | None,
    reason: str,
    lost: str | None,
) -> None:
    profile, bus = _cut(variant, skip, drop)
    ph = profile.physical
    vcd = tmp_path / "bus.vcd"
    write_vcd(vcd, ph.bus_lines, Changes(bus.times, electrical(ph, bus.states)))
    rows = _rows(_sigrok(vcd, profile, "acrnema_bus"), "acrnema_bus")
    assert f"Sync lost: {reason}" in rows
    if lost:
        assert f"Word {lost} not answered" in rows
    sent = ["A: 1234", "A: BEEF", "A: 0042", "A: 7777"]
    expected = [w for w in sent[1 if skip else 0 :] if w != f"A: {lost}"]
    assert [r for r in rows if r.startswith("A: ")] == expected


def test_a_message_broken_off_before_its_last_segment_is_a_warning(tmp_path: Path) -> None:
    profile = _profile("reference")
    bus = Bus(profile)
    bus.frame("A", FrameType.DATA, 0, struct.pack(">HHI", 5, 0, 4) + b"abcd")
    bus.frame("A", FrameType.DATA, 1, struct.pack(">HHI", 6, 0x8000, 2) + b"ok")
    vcd = tmp_path / "bus.vcd"
    bus.write(vcd)
    rows = _rows(
        _sigrok(vcd, profile, "acrnema_frames=packets:messages:warnings"), "acrnema_frames"
    )
    assert rows == [
        "A: message 5 segment 0, 4 bytes",
        "A: message 6 segment 0 (last), 2 bytes",
        "A: message 5 broken off before its last segment",
        "A: message 6, 2 bytes in 1 segment(s)",
    ]


def _link_sequence(profile: Profile) -> tuple[Bus, list[str]]:
    """What the sides send under ``profile``'s data link and transport, with faults: the
    bus, and the warnings expected (data lost, with ``ack_mode = "none"``).

    Messages are cut into 26-byte frame payloads: transport packets (segments of up to
    40 bytes), or with ``transport.mode = "none"`` the message itself; where the profile
    marks units, a message's first frame is marked FIRST and its last LAST. With
    acknowledgements: the known sequence (a frame damaged by parity, one by its check
    word where there is one, both sent again, one sent twice). Without: message 0
    whole; message 1's first frame damaged by parity (its second dropped); message 2
    whole; message 3 after a gap in the sequence numbers; where there is a check,
    message 4 with a bad check word and message 5 whole. Then B's one-frame reply."""
    bus = Bus(profile)
    dl = profile.datalink
    order = profile.physical.binary_byte_order
    units = profile.transport.mode == "none"
    marks = dl.ack_mode == "none" or units
    checked = dl.crc != "none"
    transports = {s: Transport(TransportSection(max_segment_bytes=40), order) for s in "AB"}
    lost: list[str] = []
    data, ack, nak = FrameType.DATA, FrameType.ACK, FrameType.NAK

    def message(side: str, text: bytes) -> tuple[int, list[tuple[bytes, int]]]:
        """The message ID and frame payloads (with their marks) of ``text`` from
        ``side``; its packets and the message itself go in as expected."""
        mid, wire = transports[side].packets(text)
        if units:
            wire = text
        chunks = [wire[i : i + 26] for i in range(0, len(wire), 26)]
        if units:
            bus.sent.messages.append(
                f"{side}: message, {len(text)} bytes in {len(chunks)} frame(s)"
            )
        else:
            sizes = [len(text[i : i + 40]) for i in range(0, len(text), 40)]
            for index, size in enumerate(sizes):
                tail = " (last)" if index == len(sizes) - 1 else ""
                bus.sent.packets.append(
                    f"{side}: message {mid} segment {index}{tail}, {size} bytes"
                )
            bus.sent.messages.append(
                f"{side}: message {mid}, {len(text)} bytes in {len(sizes)} segment(s)"
            )
        flags = [0] * len(chunks)
        if marks:
            flags[0] |= FIRST
            flags[-1] |= LAST
        return mid, list(zip(chunks, flags, strict=True))

    def forget(mid: int) -> None:
        """Message ``mid`` (the last) is lost: nothing of it is expected."""
        bus.sent.messages.pop()
        bus.sent.packets = [p for p in bus.sent.packets if f"message {mid} " not in p]

    _, first = message("A", bytes(range(1, 101)))
    if dl.ack_mode == "selective":
        (c0, f0), (c1, f1), (c2, f2), *rest = first
        bus.frame("A", data, 0, c0, flags=f0)
        bus.frame("B", ack, 0)
        bus.frame("A", data, 1, c1, flags=f1, bad_parity_at=5)
        bus.frame("B", nak, 1)
        bus.frame("A", data, 1, c1, flags=f1)
        bus.frame("B", ack, 1)
        if checked:
            bus.frame("A", data, 2, c2, flags=f2, bad_check=True)
            bus.frame("B", nak, 2)
        bus.frame("A", data, 2, c2, flags=f2)
        bus.frame("A", data, 2, c2, flags=f2, note=" (again)")
        for seq, (chunk, flags) in enumerate(rest, 3):
            bus.frame("A", data, seq, chunk, flags=flags)
        for seq in range(2, 3 + len(rest)):
            bus.frame("B", ack, seq)
    else:
        seq = 0

        def send(text: bytes, **fault: object) -> int:
            nonlocal seq
            mid, pieces = message("A", text)
            for i, (chunk, flags) in enumerate(pieces):
                extra: dict = dict(fault) if i == 0 else {}
                if fault and i:
                    extra["note"] = " (dropped)"
                bus.frame("A", data, seq, chunk, flags=flags, **extra)
                seq += 1
            return mid

        for chunk, flags in first:
            bus.frame("A", data, seq, chunk, flags=flags)
            seq += 1
        forget(send(bytes(range(50, 80)), bad_parity_at=5))
        lost.append("A: data lost: damaged frame: parity error in word 5")
        send(bytes(range(80, 100)))
        seq += 1  # a frame that never came
        lost.append(f"A: data lost: frames {seq - 1} to {seq - 1} missing")
        send(b"after the gap!")
        if checked:
            forget(send(b"damaged!", bad_check=True))
            lost.append("A: data lost: damaged frame: CRC mismatch")
            send(b"whole again!")
    _, reply = message("B", b"reply!")
    bus.frame("B", data, 0, reply[0][0], flags=reply[0][1])
    if dl.ack_mode == "selective":
        bus.frame("A", ack, 0)
    return bus, lost


@pytest.mark.parametrize("dialect", sorted(LINK_DIALECTS))
def test_frames_of_a_link_dialect_are_annotated_as_sent(tmp_path: Path, dialect: str) -> None:
    """Check words other than the reference CRC (sum-16, none, CRC-16s by polynomial,
    init, reflections and final XOR), frames without a start word (length_only), no
    acknowledgements (data lost, frames dropped up to the next FIRST) and no transport
    (frames joined up to LAST), alone and together: given the profile's values as
    options, sigrok annotates the words, frames (with their FIRST and LAST marks),
    damage, packets, messages and losses that were sent; and the frames are the ones
    the bridge's own frame decoder finds."""
    profile = profile_from_mapping(LINK_DIALECTS[dialect], source=dialect)
    bus, lost = _link_sequence(profile)
    vcd = tmp_path / "bus.vcd"
    bus.write(vcd)
    lines = _sigrok(
        vcd, profile, "acrnema_bus=words,acrnema_frames=frames:packets:messages:warnings"
    )
    assert _rows(lines, "acrnema_bus") == [_word_text(*w) for w in bus.sent.words]
    rows = _rows(lines, "acrnema_frames")
    assert [f for f in rows if " seq " in f] == bus.sent.frames
    assert [f for f in rows if " segment " in f and "segment(s)" not in f] == bus.sent.packets
    assert [f for f in rows if re.fullmatch(r"[AB]: message( \d+)?, .*", f)] == bus.sent.messages
    warnings = [f for f in rows if re.search("data lost|broken off|out of order", f)]
    assert warnings == lost

    units = profile.transport.mode == "none"
    words = np.array(bus.words, np.uint16)
    parity = parity_bits(words, profile.physical.parity) ^ ~np.array(bus.good) & 1
    for side, code in (("A", 0), ("B", 1)):
        pick = np.array(bus.sides) == code
        decoder = frame_decoder(profile.datalink, profile.physical.parity, units=units)
        found = []
        for event in decoder.feed(words[pick], parity[pick]):
            if isinstance(event, FrameDamaged):
                found.append(
                    f"{side}: DAMAGED {event.kind.name} seq {event.sequence}: {event.reason}"
                )
                continue
            marks = "".join(
                f" {n}" for b, n in ((FIRST, "FIRST"), (LAST, "LAST")) if event.flags & b
            )
            size = f", {len(event.payload) // 2} words" if event.type == FrameType.DATA else ""
            found.append(f"{side}: {event.type.name} seq {event.sequence}{marks}{size}")
        sent = [re.sub(r" \((again|dropped)\)$", "", f) for f in bus.sent.frames if f[0] == side]
        assert found == sent


@pytest.mark.parametrize("unitsize", range(1, 9))
def test_the_session_reader_keeps_the_samples_where_a_selected_probe_changed(
    tmp_path: Path, unitsize: int
) -> None:
    """bridge.capture.sigrok reads ``unitsize``-byte samples (in two chunk files, read in
    blocks of a few samples) as the rows where a selected probe changed, probes picked in
    any order (runs of neighbours and single ones) and one named beyond the sample (read
    as 0), as a sample-by-sample reading says; and sigrok-cli reads the same archive."""
    rng = np.random.default_rng(unitsize)
    bits = 8 * unitsize
    n = 3000
    # slow-moving levels, so that many samples repeat the one before
    samples = np.repeat(rng.integers(0, 1 << min(bits, 63), n // 10, dtype=np.uint64), 10)
    samples[::7] ^= np.uint64(1)
    raw = b"".join(int(v).to_bytes(unitsize, "little") for v in samples.tolist())
    names = {bit: f"P{bit}" for bit in range(bits)}
    names[bits] = "BEYOND"
    sr = tmp_path / "cap.sr"
    with zipfile.ZipFile(sr, "w", zipfile.ZIP_DEFLATED) as z:
        probes = "".join(f"probe{bit + 1}={name}\n" for bit, name in names.items())
        meta = "[global]\nsigrok version=0.5.2\n[device 1]\ncapturefile=logic-1\n"
        z.writestr("version", "2")
        z.writestr(
            "metadata",
            meta + f"total probes={len(names)}\nsamplerate=3 MHz\nunitsize={unitsize}\n" + probes,
        )
        cut = unitsize * 1234  # chunks of whole samples, as sigrok writes them
        z.writestr("logic-1-1", raw[:cut])
        z.writestr("logic-1-2", raw[cut:])
    picked = sorted(range(bits), key=lambda b: (b % 3, b))[: min(bits, 12)] + [bits]
    selected = [names[b] for b in picked]
    with SrReader(sr) as reader:
        with pytest.raises(CaptureError, match="probe"):
            list(reader.changes(["NOT-THERE"]))
        chunks = list(reader.changes(selected, block=97))
    times = np.concatenate([c.times for c in chunks]).tolist()
    states = np.concatenate([c.states for c in chunks]).tolist()
    expected_times, expected_states, before = [], [], None
    for index, value in enumerate(samples.tolist()):
        state = sum(((value >> b) & 1) << i for i, b in enumerate(picked) if b < bits)
        if state != before:
            expected_times.append(int(index * (1e9 / 3e6)))
            expected_states.append(state)
        before = state
    assert states == expected_states
    assert times == expected_times
    if unitsize == 3:  # sigrok's own reading of the archive: the same samples
        tool = peers.require_tool("sigrok-cli")
        done = subprocess.run(
            [tool, "-i", str(sr), "-O", "bits:width=0", "-C", "P0,P1,P2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        lines = dict(
            line.replace(" ", "").split(":", 1)
            for line in done.stdout.splitlines()
            if line.startswith("P")
        )
        for bit in range(3):
            want = "".join(str(int(v) >> bit & 1) for v in samples.tolist())
            assert lines[f"P{bit}"] == want

"""Write the golden vectors of the interface-box protocol (docs/box-protocol.md).

    python tests/vectors/box/generate.py          # rewrite cobs.json, frames.json, streams.json
    python tests/vectors/box/generate.py --check  # exit 1 if a file would change

The vectors come from bridge/ports/boxproto.py; tests/test_boxproto.py checks the Python
codec against them and that this script reproduces them, and the firmware's host tests
(``make -C firmware test``, through firmware/tools/vectors2c.py) check the C core against
the same files. Hand-written expectations (``cobs.json``'s known encodings, the CRC check
value) anchor both implementations to outside references.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from bridge.ports import boxproto as bp  # noqa: E402

DATALINK = ROOT / "tests" / "vectors" / "datalink" / "frames.json"


def _hex(data: bytes) -> str:
    return data.hex()


def _words_text(words: np.ndarray) -> str:
    return " ".join(f"{int(w):04X}" for w in words)


def _bits_text(bits: np.ndarray) -> str:
    return "".join(str(int(b)) for b in bits)


def cobs_cases() -> list[dict[str, str]]:
    """Wikipedia's COBS examples (outside references) plus the run-length edges."""
    run = bytes(range(1, 255))  # 254 non-zero bytes
    cases = [
        ("empty", b"", "01"),
        ("zero", b"\x00", "0101"),
        ("two-zeros", b"\x00\x00", "010101"),
        ("zero-one-zero", b"\x00\x11\x00", "01021101"),
        ("mixed", b"\x11\x22\x00\x33", "03112202" + "33"),
        ("no-zero", b"\x11\x22\x33\x44", "0511223344"),
        ("trailing-zeros", b"\x11\x00\x00\x00", "0211010101"),
        ("run-254", run, "ff" + run.hex()),
        ("zero-run-254", b"\x00" + run, "01ff" + run.hex()),
        ("run-255", run + b"\xff", "ff" + run.hex() + "02ff"),
        ("run-254-zero", run + b"\x00", "ff" + run.hex() + "0101"),
        ("run-508", run + run, "ff" + run.hex() + "ff" + run.hex()),
    ]
    out = []
    for name, decoded, encoded in cases:
        if bp.cobs_encode(decoded).hex() != encoded:  # pragma: no cover - a broken codec
            raise AssertionError(f"cobs {name}: {bp.cobs_encode(decoded).hex()} != {encoded}")
        out.append({"name": name, "decoded": _hex(decoded), "encoded": encoded})
    rng = np.random.default_rng(20240601)
    for name, size, zeros in (("random-300", 300, 0.3), ("random-1000-sparse", 1000, 0.002)):
        data = rng.integers(1, 256, size).astype(np.uint8)
        data[rng.random(size) < zeros] = 0
        raw = data.tobytes()
        out.append({"name": name, "decoded": _hex(raw), "encoded": _hex(bp.cobs_encode(raw))})
    return out


def _fields(message: bp.BoxMessage) -> dict[str, Any]:
    """The message's fields as JSON (enums as integers, words and parity as text)."""
    if isinstance(message, bp.WordsOut | bp.WordsIn):
        fields: dict[str, Any] = {
            "offset": message.offset,
            "words": _words_text(message.words),
            "parity": _bits_text(message.parity),
        }
        if isinstance(message, bp.WordsOut):
            fields["boundary"] = message.boundary
        return fields
    out: dict[str, Any] = {}
    for fld in dataclasses.fields(message):  # type: ignore[arg-type]
        name = fld.name
        value = getattr(message, name)
        if isinstance(value, bool):
            out[name] = value
        elif isinstance(value, int):
            out[name] = int(value)
        elif isinstance(value, tuple):
            out[name] = [list(v) if isinstance(v, tuple) else v for v in value]
        elif isinstance(value, bytes):
            out[name] = value.hex()
        else:
            out[name] = value
    return out


def _datalink_frames() -> list[tuple[str, np.ndarray, np.ndarray]]:
    data = json.loads(DATALINK.read_text(encoding="utf-8"))
    out = []
    for frame in data["frames"]:
        words = np.array([int(w, 16) for w in frame["words"].split()], dtype=np.uint16)
        parity = np.array([int(c) for c in frame["parity_odd"]], dtype=np.uint8)
        out.append((frame["name"], words, parity))
    return out


def messages() -> list[tuple[str, int, bp.BoxMessage]]:
    rng = np.random.default_rng(7)
    maxw = bp.max_words_for(4096)
    big = rng.integers(1, 1 << 16, maxw).astype(np.uint16)
    big_parity = rng.integers(0, 2, maxw).astype(np.uint8)
    nine = np.array([0, 1, 0xFFFF, 0x8000, 0x00FF, 0xFF00, 0x1234, 0xA5C3, 0x0100], np.uint16)
    nine_parity = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0], np.uint8)
    empty = np.zeros(0, dtype=np.uint16)
    out: list[tuple[str, int, bp.BoxMessage]] = [
        ("hello", 0, bp.Hello()),
        ("hello-v1-to-3-small-body", 1, bp.Hello(1, 3, 512)),
        (
            "info",
            0,
            bp.Info(
                firmware=(0, 1, 0),
                capabilities=bp.Capability.ROLE_B | bp.Capability.PERR | bp.Capability.POLARITY,
                out_words=16384,
                in_words=16384,
                max_body=4096,
                max_words=maxw,
                build=0x1A2B3C4D,
                board="acrnema-box rp2040 rev A",
            ),
        ),
        ("configure-reference", 2, bp.Configure()),
        (
            "configure-site",
            3,
            bp.Configure(
                parity=bp.Parity.EVEN,
                role=bp.Role.A,
                duplex=True,
                active_low=(1 << 17) | (1 << 18),
                handshake_timeout_us=250_000,
                setup_ns=50,
                hold_ns=75,
                turnaround_ns=2000,
                max_burst_words=1400,
            ),
        ),
        (
            "configure-bus-shape",
            24,
            bp.Configure(
                parity=bp.Parity.EVEN,
                duplex=True,
                handshake=bp.Handshake.TWO_PHASE,
                absent_lines=bp.Absent.READY | bp.Absent.PERR,
                parity_bytes=True,
            ),
        ),
        ("reset", 4, bp.Reset()),
        ("reset-defaults", 5, bp.Reset(defaults=True)),
        ("line-set-ready", 6, bp.LineSet(ready=True)),
        ("line-set-drop", 7, bp.LineSet(ready=False)),
        ("query-stats", 8, bp.Query(bp.MsgType.STATS)),
        ("words-out-empty", 9, bp.WordsOut(0, empty, empty.astype(np.uint8))),
        ("words-out-one", 10, bp.WordsOut(0, nine[:1], nine_parity[:1], boundary=True)),
        ("words-out-nine", 11, bp.WordsOut(0xFFFF_FFF8, nine, nine_parity)),
        ("words-in-nine", 12, bp.WordsIn(123456, nine, nine_parity)),
        ("words-out-max", 13, bp.WordsOut(1 << 20, big, big_parity, boundary=True)),
        ("host-credits", 14, bp.HostCredits(received=100, limit=100 + 16384)),
        ("box-credits-wrap", 15, bp.BoxCredits(received=0xFFFF_FF00, limit=0x3F00)),
        ("reply-ok", 16, bp.Reply(bp.MsgType.CONFIGURE, 2, bp.Status.OK)),
        ("reply-busy", 17, bp.Reply(bp.MsgType.CONFIGURE, 200, bp.Status.BUSY)),
        (
            "reply-field-refused",
            25,
            bp.Reply(
                bp.MsgType.CONFIGURE,
                3,
                bp.Status.BAD_PARAMETER,
                bp.ConfigField.HANDSHAKE,
                "strobe: no PERR answer; control_lines must omit PERR",
            ),
        ),
        ("reply-unknown-field", 26, bp.Reply(bp.MsgType.CONFIGURE, 4, bp.Status.UNKNOWN_FIELD, 9)),
        (
            "line-state",
            18,
            bp.LineState(
                levels=(1 << 19) | (1 << 20) | (1 << 21) | 0xA5C3,
                bus=bp.Bus.PEER,
                ready=True,
                peer_ready=True,
                role=bp.Role.B,
            ),
        ),
        ("stats", 19, bp.Stats(*range(1, len(bp.STATS_FIELDS) + 1))),
        ("error-parity-in", 20, bp.ErrorReport(bp.ErrorCode.PARITY, 0, 4242, 0x1A5C3)),
        (
            "error-timeout",
            21,
            bp.ErrorReport(bp.ErrorCode.TIMEOUT, bp.Phase.ACK_ASSERT, 77, 12),
        ),
        ("error-lost-words", 22, bp.ErrorReport(bp.ErrorCode.LOST_WORDS, 0, 1000, 1960)),
        ("seq-255", 255, bp.LineSet(ready=True)),
    ]
    for name, words, parity in _datalink_frames():
        out.append((f"words-out-datalink-{name}", 30, bp.WordsOut(0, words, parity, True)))
        out.append((f"words-in-datalink-{name}", 31, bp.WordsIn(0, words, parity)))
    return out


def frame_cases() -> list[dict[str, Any]]:
    out = []
    for name, seq, message in messages():
        body = bp.encode_body(message, seq)
        out.append(
            {
                "name": name,
                "type": message.TYPE.name,  # type: ignore[union-attr]
                "code": int(message.TYPE),  # type: ignore[union-attr]
                "seq": seq,
                "fields": _fields(message),
                "body": _hex(body),
                "wire": _hex(bp.encode_frame(message, seq)),
            }
        )
    return out


def payload_errors() -> list[dict[str, Any]]:
    """Bodies with a good CRC whose payload does not fit its type (decode must refuse)."""
    cases = [
        ("hello-short", bp.MsgType.HELLO, "0101", "BAD_LENGTH"),
        ("configure-short", bp.MsgType.CONFIGURE, "01" * 23, "BAD_LENGTH"),
        ("configure-parity-3", bp.MsgType.CONFIGURE, "03" + "00" * 23, "BAD_VALUE"),
        ("words-count-too-big", bp.MsgType.WORDS_OUT, "00000000" "0200" "0000" "1111" "01",
         "BAD_LENGTH"),
        ("words-extra-byte", bp.MsgType.WORDS_IN, "00000000" "0100" "0000" "1111" "01" "00",
         "BAD_LENGTH"),
        ("credits-short", bp.MsgType.HOST_CREDITS, "00000000", "BAD_LENGTH"),
        ("reply-bad-status", bp.MsgType.REPLY, "02000900", "BAD_VALUE"),
        ("error-bad-code", bp.MsgType.ERROR, "09" + "00" * 11, "BAD_VALUE"),
        ("line-state-bad-bus", bp.MsgType.LINE_STATE, "00000000" "09000000", "BAD_VALUE"),
    ]  # fmt: skip
    out = []
    for name, kind, payload, reason in cases:
        head = bytes([int(kind), 0]) + bytes.fromhex(payload)
        body = head + int.to_bytes(zlib.crc32(head), 4, "little")
        try:
            bp.decode_body(body)
        except bp.BoxProtocolError as exc:
            if exc.reason.name != reason:  # pragma: no cover
                raise AssertionError(f"{name}: {exc.reason.name} != {reason}") from exc
        else:  # pragma: no cover
            raise AssertionError(f"{name}: decoded")
        out.append({"name": name, "code": int(kind), "body": _hex(body), "reason": reason})
    return out


def stream_cases(frames: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Byte streams with good and bad frames; the events a decoder must produce."""

    def wire(name: str) -> bytes:
        return bytes.fromhex(frames[name]["wire"])

    good = wire("line-set-ready")
    info = wire("info")
    big = wire("words-out-max")
    body = bytearray.fromhex(frames["line-set-ready"]["body"])
    body[2] ^= 0x01  # the READY bit flipped: the CRC no longer matches
    bad_crc = bp.cobs_encode(bytes(body)) + b"\0"
    short = bp.cobs_encode(b"\x01\x02\x03") + b"\0"
    not_cobs = b"\x05\x11\x22\0"  # the code promises 4 bytes, 2 follow
    long_garbage = b"\x7f" * 200 + b"\0"  # over the 128-byte limit of the case below
    cases = [
        ("two-frames", 4096, good + info, [{"frame": "line-set-ready"}, {"frame": "info"}]),
        (
            "leading-delimiters-and-garbage",
            4096,
            b"\0\0" + b"\x42\x42" + b"\0" + good,
            [{"bad": "COBS", "size": 3}, {"frame": "line-set-ready"}],
        ),
        (
            "crc-error-then-good",
            4096,
            bytes(bad_crc) + good,
            [{"bad": "CRC", "size": len(bad_crc)}, {"frame": "line-set-ready"}],
        ),
        ("too-short", 4096, short + good, [{"bad": "TOO_SHORT", "size": len(short)},
                                           {"frame": "line-set-ready"}]),
        ("not-cobs", 4096, not_cobs + good, [{"bad": "COBS", "size": len(not_cobs)},
                                             {"frame": "line-set-ready"}]),
        (
            "too-long-resync",
            128,
            long_garbage + good,
            [{"bad": "TOO_LONG", "size": None}, {"frame": "line-set-ready"}],
        ),
        (
            "body-over-max",
            len(bytes.fromhex(frames["words-out-max"]["body"])) - 1,
            big + good,  # within the wire limit, one byte over max_body once decoded
            [{"bad": "TOO_LONG", "size": len(big)}, {"frame": "line-set-ready"}],
        ),
        ("trailing-partial", 4096, good + good[:5], [{"frame": "line-set-ready"}]),
    ]  # fmt: skip
    out = []
    for name, max_body, data, events in cases:
        got = bp.BoxFrameDecoder(max_body=max_body).feed(data)
        expect = []
        for e in got:
            if isinstance(e, bp.BoxFrame):
                expect.append({"frame": _frame_name(frames, e)})
            else:
                expect.append({"bad": e.reason.name, "size": e.size})
        for want, have in zip(events, expect, strict=True):
            if "bad" in want and want["size"] is None:
                have["size"] = None
            if want != have:  # pragma: no cover
                raise AssertionError(f"stream {name}: {have} != {want}")
        out.append({"name": name, "max_body": max_body, "input": _hex(data), "events": events})
    return out


def _frame_name(frames: dict[str, dict[str, Any]], event: bp.BoxFrame) -> str:
    body = bp.encode_body(event.message, event.seq).hex()
    for name, case in frames.items():
        if case["body"] == body:
            return name
    raise AssertionError("decoded a frame that is not a vector")  # pragma: no cover


def build() -> dict[str, Any]:
    frames = frame_cases()
    by_name = {f["name"]: f for f in frames}
    return {
        "cobs.json": {
            "description": (
                "COBS of the interface-box protocol (docs/box-protocol.md, section 2): "
                "decoded and encoded bytes (hex, no delimiter). A final run of k*254 "
                "non-zero bytes has no closing 01; decoders also accept it with one."
            ),
            "cases": cobs_cases(),
        },
        "frames.json": {
            "description": (
                "Interface-box protocol frames (docs/box-protocol.md): body = type, seq, "
                "payload, CRC-32 (zlib.crc32, little-endian) over type, seq and payload; "
                "wire = COBS(body) then 00. Fields as in bridge/ports/boxproto.py (enums as "
                "integers; words as hex, parity as one digit a word)."
            ),
            "crc32_check": {"data": b"123456789".hex(), "crc32": 0xCBF43926},
            "max_body": 4096,
            "frames": frames,
            "payload_errors": payload_errors(),
        },
        "streams.json": {
            "description": (
                "Byte streams for the incremental frame decoder: the events it must give "
                "(a frame by its name in frames.json, or a bad frame by reason and bytes "
                "dropped; size null where it depends on how the input is split)."
            ),
            "cases": stream_cases(by_name),
        },
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, content in build().items():
        text = json.dumps(content, indent=1) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale vectors:", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

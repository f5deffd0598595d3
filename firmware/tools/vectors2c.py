"""Turn the golden vectors (tests/vectors/box/*.json, tests/vectors/datalink/frames.json)
into a C header for the firmware's host tests (firmware/tests/test_box.c).

    python3 firmware/tools/vectors2c.py VECTOR_DIR OUT.h

Standard library only (json): the C tests never parse JSON themselves, so there is no
hand-written JSON reader to get wrong; the Makefile re-runs this whenever a JSON file
changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STATS_FIELDS = (
    "words_out", "words_in", "perr_out", "perr_in", "timeouts", "bad_frames", "lost_words",
    "overflow_words", "lost_frames", "discarded_words", "errors_dropped",
)  # fmt: skip
REASONS = {
    "COBS": 1, "CRC": 2, "TOO_LONG": 3, "TOO_SHORT": 4, "BAD_LENGTH": 5,
    "WRONG_DIRECTION": 6, "BAD_VALUE": 7,
}  # fmt: skip


class Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def array(self, ctype: str, values: list[int]) -> tuple[str, int]:
        """A static array; returns its name and length (an empty one holds a dummy 0)."""
        name = f"v_{self.n}"
        self.n += 1
        body = ", ".join(str(v) for v in values) if values else "0"
        self.lines.append(f"static const {ctype} {name}[] = {{{body}}};")
        return name, len(values)

    def bytes_(self, hex_text: str) -> tuple[str, int]:
        return self.array("uint8_t", list(bytes.fromhex(hex_text)))


def c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def message_init(out: Out, kind: str, code: int, f: dict[str, Any]) -> str:
    def b(name: str) -> int:
        return int(bool(f[name]))

    if kind == "HELLO":
        u = f".hello = {{{f['min_version']}, {f['max_version']}, {f['max_body']}}}"
    elif kind == "INFO":
        pins = ", ".join(str(p) for pair in f["pins"] for p in pair)
        fw = ", ".join(str(v) for v in f["firmware"])
        u = (
            f".info = {{{f['version']}, {{{fw}}}, {f['capabilities']}u, {f['out_words']}u, "
            f"{f['in_words']}u, {f['max_body']}, {f['max_words']}, {f['build']}u, {{{pins}}}, "
            f"{c_string(f['board'])}}}"
        )
    elif kind == "CONFIGURE":
        u = (
            f".configure = {{{f['parity']}, {f['role']}, {b('duplex')}, {f['active_low']}u, "
            f"{f['handshake_timeout_us']}u, {f['setup_ns']}, {f['hold_ns']}, "
            f"{f['turnaround_ns']}u, {f['max_burst_words']}u, {f['handshake']}, "
            f"{f['absent_lines']}, {b('parity_bytes')}, 0, 0}}"
        )
    elif kind == "RESET":
        u = f".reset_defaults = {b('defaults')}"
    elif kind == "LINE_SET":
        u = f".line_set_ready = {b('ready')}"
    elif kind == "QUERY":
        u = f".query_what = {f['what']}"
    elif kind in ("WORDS_OUT", "WORDS_IN"):
        words = [int(w, 16) for w in f["words"].split()]
        parity = [int(c) for c in f["parity"]]
        wname, n = out.array("uint16_t", words)
        pname, _ = out.array("uint8_t", parity)
        flags = b("boundary") if "boundary" in f else 0
        u = f".words = {{{f['offset']}u, {n}, {flags}, {wname}, {pname}, NULL}}"
    elif kind in ("HOST_CREDITS", "BOX_CREDITS"):
        u = f".credits = {{{f['received']}u, {f['limit']}u}}"
    elif kind == "REPLY":
        reason = f["reason"]
        u = (
            f".reply = {{{f['request']}, {f['request_seq']}, {f['status']}, {f['detail']}, "
            f"{c_string(reason) if reason else 'NULL'}, {len(reason)}}}"
        )
    elif kind == "LINE_STATE":
        u = (
            f".line_state = {{{f['levels']}u, {f['bus']}, {b('ready')}, {b('peer_ready')}, "
            f"{f['role']}}}"
        )
    elif kind == "STATS":
        u = ".stats = {{" + ", ".join(f"{f[k]}u" for k in STATS_FIELDS) + "}}"
    elif kind == "ERROR":
        u = f".error = {{{f['code']}, {f['detail']}, {f['offset']}u, {f['value']}u}}"
    else:
        raise SystemExit(f"vectors2c: no C form for message type {kind}")
    return f"{{{code}, {{{u}}}}}"


def main(vector_dir: Path, target: Path) -> None:
    box = vector_dir / "box"
    cobs = json.loads((box / "cobs.json").read_text(encoding="utf-8"))
    frames = json.loads((box / "frames.json").read_text(encoding="utf-8"))
    streams = json.loads((box / "streams.json").read_text(encoding="utf-8"))
    datalink = json.loads((vector_dir / "datalink" / "frames.json").read_text(encoding="utf-8"))
    out = Out()
    rows: dict[str, list[str]] = {"cobs": [], "frames": [], "errors": [], "streams": [], "dl": []}
    for case in cobs["cases"]:
        dec = out.bytes_(case["decoded"])
        enc = out.bytes_(case["encoded"])
        rows["cobs"].append(f"{{{c_string(case['name'])}, {dec[0]}, {dec[1]}, {enc[0]}, {enc[1]}}}")
    index = {}
    for i, fr in enumerate(frames["frames"]):
        index[fr["name"]] = i
        msg = message_init(out, fr["type"], fr["code"], fr["fields"])
        body = out.bytes_(fr["body"])
        wire = out.bytes_(fr["wire"])
        rows["frames"].append(
            f"{{{c_string(fr['name'])}, {fr['seq']}, {msg}, {body[0]}, {body[1]}, "
            f"{wire[0]}, {wire[1]}}}"
        )
    for case in frames["payload_errors"]:
        body = out.bytes_(case["body"])
        rows["errors"].append(
            f"{{{c_string(case['name'])}, {body[0]}, {body[1]}, {REASONS[case['reason']]}}}"
        )
    for case in streams["cases"]:
        data = out.bytes_(case["input"])
        events = []
        for e in case["events"]:
            if "frame" in e:
                events.append(f"{{1, {index[e['frame']]}, 0, -1}}")
            else:
                size = -1 if e["size"] is None else e["size"]
                events.append(f"{{2, -1, {REASONS[e['bad']]}, {size}}}")
        out.lines.append(f"static const vec_event_t v_{out.n}[] = {{{', '.join(events)}}};")
        ev = f"v_{out.n}"
        out.n += 1
        rows["streams"].append(
            f"{{{c_string(case['name'])}, {case['max_body']}, {data[0]}, {data[1]}, "
            f"{ev}, {len(events)}}}"
        )
    for fr in datalink["frames"]:
        words = out.array("uint16_t", [int(w, 16) for w in fr["words"].split()])
        parity = out.array("uint8_t", [int(c) for c in fr["parity_odd"]])
        rows["dl"].append(f"{{{c_string(fr['name'])}, {words[0]}, {parity[0]}, {words[1]}}}")

    check = frames["crc32_check"]
    text = [
        "/* Generated by firmware/tools/vectors2c.py from tests/vectors: do not edit. */",
        "#ifndef BOX_VECTORS_H",
        "#define BOX_VECTORS_H",
        "#include <stddef.h>",
        "#include <stdint.h>",
        '#include "proto.h"',
        "typedef struct { const char *name; const uint8_t *dec; size_t dec_len;"
        " const uint8_t *enc; size_t enc_len; } vec_cobs_t;",
        "typedef struct { const char *name; uint8_t seq; box_msg_t msg; const uint8_t *body;"
        " size_t body_len; const uint8_t *wire; size_t wire_len; } vec_frame_t;",
        "typedef struct { const char *name; const uint8_t *body; size_t body_len;"
        " int reason; } vec_payload_error_t;",
        "typedef struct { int kind; int frame; int reason; long size; } vec_event_t;",
        "typedef struct { const char *name; size_t max_body; const uint8_t *input;"
        " size_t input_len; const vec_event_t *events; size_t n_events; } vec_stream_t;",
        "typedef struct { const char *name; const uint16_t *words; const uint8_t *parity_odd;"
        " size_t n; } vec_datalink_t;",
        *out.lines,
        f"static const char VEC_CRC_DATA[] = {c_string(bytes.fromhex(check['data']).decode())};",
        f"#define VEC_CRC_VALUE {check['crc32']}u",
        f"#define VEC_MAX_BODY {frames['max_body']}u",
    ]
    for key, ctype, name in (
        ("cobs", "vec_cobs_t", "VEC_COBS"),
        ("frames", "vec_frame_t", "VEC_FRAMES"),
        ("errors", "vec_payload_error_t", "VEC_PAYLOAD_ERRORS"),
        ("streams", "vec_stream_t", "VEC_STREAMS"),
        ("dl", "vec_datalink_t", "VEC_DATALINK"),
    ):
        text.append(f"static const {ctype} {name}[] = {{")
        text.extend(f"    {row}," for row in rows[key])
        text.append("};")
        text.append(f"#define {name}_N (sizeof {name} / sizeof {name}[0])")
    text.append("#endif")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(text) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: vectors2c.py VECTOR_DIR OUT.h")
    main(Path(sys.argv[1]), Path(sys.argv[2]))

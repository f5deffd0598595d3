"""The trace and capture commands of ``acrnema-bridge``: ``trace show``, ``trace export``,
``capture decode``.

Part of the command line (see :mod:`bridge.cli`). The work is in :mod:`bridge.capture`
(the bus model, the VCD and sigrok readers, the passive observer); this module parses the
arguments, prints, and writes the report. docs/capture.md is the user's guide.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli.common import whole
from bridge.errors import ConfigError
from bridge.settings import Settings

if TYPE_CHECKING:
    from bridge.profile import Profile

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``trace show|export`` and ``capture decode`` to the subparsers ``sub``."""
    trace = sub.add_parser(
        "trace",
        help="read a spy+ trace: print it layer by layer, or export the bus as a VCD",
        description=(
            "A spy+ trace (docs/ports.md) is every buffer that crossed a port. 'show' prints "
            "it layer by layer with seconds since the first record: each record's words (a ! "
            "marks a word with a wrong parity line) and READY line changes, then the frames "
            "(damaged ones shown, not fatal), packets and messages they completed. 'export' "
            "writes a Value Change Dump of the 50-pin bus carrying the same words: one signal "
            "per line of the profile, the handshake synthesised with the profile's timing "
            "(docs/capture.md)."
        ),
    )
    actions = trace.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print a trace layer by layer")
    show.add_argument("file", type=Path, help="the trace file")
    show.add_argument(
        "--profile", type=Path, metavar="FILE", help="link profile (default: the reference)"
    )
    show.add_argument(
        "--words",
        type=whole(0),
        default=8,
        metavar="N",
        help="words shown per record (default 8; 0: all)",
    )
    show.set_defaults(handler=_show)
    export = actions.add_parser(
        "export",
        help="write the bus carrying a trace as a VCD (GTKWave, PulseView)",
        description=(
            "Write a Value Change Dump (1 ns timescale) of the bus carrying the trace's words: "
            "D0-D15, the parity line(s), REQ, ACK and the control lines the profile has, named "
            "as the profile names them, at electrical level (physical.active_low lines "
            "inverted). Words go out no earlier than their record's time, one handshake cycle "
            "each (physical.handshake, setup_ns, hold_ns, plus --hop-ns per causal edge), with "
            "turnaround_ns of quiet when the bus changes hands."
        ),
    )
    export.add_argument("file", type=Path, help="the trace file")
    export.add_argument("--vcd", type=Path, required=True, metavar="OUT", help="VCD to write")
    export.add_argument(
        "--profile", type=Path, metavar="FILE", help="link profile (default: the reference)"
    )
    export.add_argument(
        "--side",
        choices=["A", "B"],
        default="B",
        help="the side that recorded the trace: A the initiator (a scanner), B the bridge "
        "(default B; DIR is asserted while A drives)",
    )
    export.add_argument(
        "--hop-ns",
        type=whole(1, 1_000_000),
        default=50,
        metavar="NS",
        help="modelled delay of one hop, driver + cable + receiver (default 50)",
    )
    export.set_defaults(handler=_export)

    cap = sub.add_parser(
        "capture",
        help="decode a logic-analyser capture of the bus (VCD or sigrok .sr)",
        description=(
            "'decode' reads a capture of the 50-pin bus (a VCD, or a sigrok session file "
            ".sr), maps its probes to lines (--map; default: each line on the probe of its "
            "name), recovers the words from the handshake by edge timing, then frames, "
            "packets and messages through the link's layers, writes every stored image as "
            "DICOM to --out, and a JSON report (--report, default OUT/report.json): words, "
            "frames good/damaged/retransmitted, messages, handshake phase durations, word "
            "rate, and every place it lost sync. Exit 0 when the capture decoded whole, 1 "
            "when it cannot be read, ends inside a message, holds no words or an image "
            "failed to convert, 2 for a usage error (docs/capture.md)."
        ),
    )
    cactions = cap.add_subparsers(dest="capture_command", metavar="ACTION", required=True)
    dec = cactions.add_parser("decode", help="capture -> words, frames, messages, DICOM")
    dec.add_argument("capture", type=Path, help="the capture (.vcd or .sr)")
    dec.add_argument("--map", type=Path, metavar="MAP.toml", help="channel map (docs/capture.md)")
    dec.add_argument(
        "--profile", type=Path, metavar="FILE", help="link profile (default: the reference)"
    )
    dec.add_argument("--out", type=Path, required=True, metavar="DIR", help="images go here")
    dec.add_argument("--report", type=Path, metavar="FILE", help="JSON report (OUT/report.json)")
    dec.add_argument(
        "--glitch-ns",
        type=whole(0, 1_000_000),
        default=10,
        metavar="NS",
        help="a line that changes back within NS is taken not to have changed (default 10)",
    )
    dec.set_defaults(handler=_decode)


def _profile(path: Path | None) -> Profile:
    from bridge.profile import load_profile

    return load_profile(path)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.capture.trace import show_trace

    for line in show_trace(args.file, _profile(args.profile), args.words):
        print(line)
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.capture.bus import Timing
    from bridge.capture.trace import export_vcd

    rows = export_vcd(args.file, args.vcd, _profile(args.profile), args.side, Timing(args.hop_ns))
    print(f"trace export: {rows} changes written to {args.vcd}", file=sys.stderr)
    return 0


def _decode(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.capture.channels import load_map, profile_map
    from bridge.capture.decode import decode_capture

    profile = _profile(args.profile)
    cmap = load_map(args.map) if args.map is not None else None
    if cmap is None and args.profile is not None:
        cmap = profile_map(args.profile)  # a fitted profile carries its channel map
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: not a folder")
    result = decode_capture(args.capture, args.out, profile, cmap, args.glitch_ns)
    report = args.report or args.out / "report.json"
    report.write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    r = result.report
    print(
        f"capture decode: {r['words']['total']} words, {r['message_count']} messages, "
        f"{len(result.images)} images in {args.out}, {r['sync_lost_count']} sync losses; "
        f"report {report}",
        file=sys.stderr,
    )
    for problem in result.problems:
        print(f"acrnema-bridge: {problem}", file=sys.stderr)
    return 1 if result.problems else 0

"""The link profile commands of ``acrnema-bridge``: ``profile show``, ``check``, ``diagrams``.

Part of the command line (see :mod:`bridge.cli`): :func:`add_commands` adds the
arguments to the top-level subparsers, each action with its handler. The profile itself
is :mod:`bridge.profile`; its rules are in ``docs/link-profile.md``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.acrnema.table import Table, markdown_table, state_diagram
from bridge.cli.common import whole
from bridge.errors import ConfigError
from bridge.profile import Profile, ProfileError, load_profile, to_toml
from bridge.settings import Settings

__all__ = ["Machine", "add_commands", "diagrams", "doc_block", "machines"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``profile show [FILE]`` and ``profile check FILE...`` to the subparsers ``sub``."""
    prof = sub.add_parser(
        "profile",
        help="show or check a link profile (docs/link-profile.md)",
        description=(
            "The link profile holds every parameter of the 50-pin link that the standard "
            "would fix: pins, polarities, parity, byte order, frames, CRC, timeouts, command "
            "codes. The built-in reference profile is the project's own reconstruction, not "
            "the ACR-NEMA 300 text; a TOML file overrides any part of it."
        ),
    )
    actions = prof.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="print the effective profile as TOML",
        description="Print the reference profile, or FILE merged over it, as a whole TOML file.",
    )
    show.add_argument("file", nargs="?", type=Path, help="profile file (default: the reference)")
    show.set_defaults(handler=_show)
    check = actions.add_parser(
        "check",
        help="validate a profile file",
        description="Validate each FILE merged over the reference profile: exit 0 and print "
        "'ok' for each, or exit 1 and print each problem with its key.",
    )
    check.add_argument("file", type=Path, nargs="+", help="profile file(s)")
    check.set_defaults(handler=_check)
    draw = actions.add_parser(
        "diagrams",
        help="print the state diagram (Mermaid) of every protocol machine, from its table",
        description="Print the state diagram of every protocol machine, generated from its "
        "state table in the code: the data link (link and frame), session, transport "
        "reassembly and link stack, the interface-box host, the raw word stream's line "
        "state, and each side of the ftdi-gpio bus. --block NAME prints instead the "
        "generated block NAME of the docs, as the docs show it (between <!-- NAME:start --> "
        "and <!-- NAME:end -->), to paste after a change of a table.",
    )
    draw.add_argument(
        "--block",
        choices=sorted(_BLOCKS),
        metavar="NAME",
        help="one generated block of the docs: "
        + ", ".join(f"{block} ({doc})" for block, doc in _BLOCKS.items()),
    )
    draw.set_defaults(handler=_diagrams)
    fit = actions.add_parser(
        "fit",
        help="infer a profile from a logic-analyser capture of the bus (no channel map needed)",
        description=(
            "Read a capture of the 50-pin bus (VCD or sigrok .sr; probes named anything, in "
            "any order, some inverted) and infer what the profile must say: which probes are "
            "REQ, ACK, DIR, the 16 data lines (bit order from known plaintext: the frames' "
            "length fields and sequence numbers, the Recognition Code 'ACR-NEMA', command "
            "group element numbers and command fields) and the parity line(s), each one's "
            "polarity; the handshake mode; parity odd/even/none over the word or per byte; the "
            "frame start word and check (16-bit sum, any CRC-16 by polynomial, init, "
            "reflection and final XOR, or none); the acknowledgement mode; the transport and "
            "session modes and the text and binary byte orders (by decoding with each). It "
            "writes the profile with its channel map in [channels], each fitted key commented "
            "with its evidence and a confidence (high, medium, low), and lists what it could "
            "not fit (in the file and on stderr); 'capture decode CAPTURE --profile OUT' then "
            "needs nothing else. Exit 0 when fitted, 1 when the capture cannot be fitted (the "
            "reason on stderr), 2 for a usage error. Method and limits: docs/capture.md, "
            "'Fitting a profile'."
        ),
    )
    fit.add_argument("capture", type=Path, help="the capture (.vcd or .sr)")
    fit.add_argument(
        "--map",
        type=Path,
        metavar="MAP.toml",
        help="a channel map, if known: taken as it is (its inversions too) instead of "
        "inferring which probe is which line",
    )
    fit.add_argument(
        "--glitch-ns",
        type=whole(0, 1_000_000),
        default=10,
        metavar="NS",
        help="a probe that changes back within NS is taken not to have changed (default 10, "
        "as in 'capture decode')",
    )
    fit.add_argument(
        "--max-words",
        type=whole(1_000, 10_000_000),
        default=50_000,
        metavar="N",
        help="fit the lines, orders and checks on the first N words (default 50000; memory "
        "grows with N, not with the capture), then decode the whole capture to choose and "
        "check the upper layers",
    )
    fit.add_argument("--out", type=Path, required=True, metavar="PROFILE.toml", help="write here")
    fit.set_defaults(handler=_fit)


@dataclass(frozen=True)
class Machine:
    """One protocol machine: its table, and the generated block of the docs that shows it.

    The machines of the ``diagrams`` block are drawn there as Mermaid diagrams; every
    other block holds one machine as a Markdown table (:func:`markdown_table`)."""

    title: str
    table: Table[Any, Any, Any]
    doc: str  # the file of docs/ that shows it
    block: str  # its block there: <!-- block:start --> ... <!-- block:end -->


_BLOCKS = {
    "diagrams": "link-profile.md",
    "reassembly-table": "link-profile.md",
    "stack-table": "link-profile.md",
    "host-table": "box-protocol.md",
    "line-table": "ports.md",
    "bus-table-a": "ftdi-gpio.md",
    "bus-table-b": "ftdi-gpio.md",
}
"""The generated blocks of the docs -> the file of docs/ that holds each."""
_MERMAID_BLOCKS = {"diagrams"}


def machines() -> list[Machine]:
    """Every state table of the package (the one idiom of :mod:`bridge.acrnema.table`),
    each with the block of the docs that shows it; the one list the command, the docs
    and the tests use."""
    from bridge.acrnema.datalink import FRAME_TABLE, LINK_TABLE
    from bridge.acrnema.session import SESSION_TABLE
    from bridge.acrnema.stack import STACK_TABLE
    from bridge.acrnema.transport import REASSEMBLY_TABLE
    from bridge.box.host import HOST_TABLE
    from bridge.ports.ftdi_gpio import BUS_TABLES
    from bridge.wordstream import LINE_TABLE

    link = "link-profile.md"
    return [
        Machine(
            "Data link, the link as a whole (`datalink.LINK_TABLE`)", LINK_TABLE, link, "diagrams"
        ),
        Machine(
            "Data link, each DATA frame in the sender's window (`datalink.FRAME_TABLE`)",
            FRAME_TABLE,
            link,
            "diagrams",
        ),
        Machine("Session (`session.SESSION_TABLE`)", SESSION_TABLE, link, "diagrams"),
        Machine(
            "Transport reassembly (`transport.REASSEMBLY_TABLE`)",
            REASSEMBLY_TABLE,
            link,
            "reassembly-table",
        ),
        Machine("The link stack (`stack.STACK_TABLE`)", STACK_TABLE, link, "stack-table"),
        Machine(
            "Interface-box host start-up (`box.host.HOST_TABLE`)",
            HOST_TABLE,
            "box-protocol.md",
            "host-table",
        ),
        Machine(
            "Raw word stream line state (`wordstream.LINE_TABLE`)",
            LINE_TABLE,
            "ports.md",
            "line-table",
        ),
        Machine(
            'ftdi-gpio bus direction, side A (`ftdi_gpio.BUS_TABLES["a"]`)',
            BUS_TABLES["a"],
            "ftdi-gpio.md",
            "bus-table-a",
        ),
        Machine(
            'ftdi-gpio bus direction, side B (`ftdi_gpio.BUS_TABLES["b"]`)',
            BUS_TABLES["b"],
            "ftdi-gpio.md",
            "bus-table-b",
        ),
    ]


def _mermaid(chosen: list[Machine]) -> str:
    out = []
    for machine in chosen:
        out += [f"#### {machine.title}", "", "```mermaid", state_diagram(machine.table), "```", ""]
    return "\n".join(out)


def diagrams() -> str:
    """The state diagram (Mermaid, in Markdown) of every machine of :func:`machines`."""
    return _mermaid(machines())


def doc_block(block: str) -> str:
    """The generated text of the docs' block ``block`` (what goes between its markers):
    the Mermaid diagrams of its machines, or its machine's Markdown table."""
    if block not in _BLOCKS:
        raise KeyError(f"no generated block {block!r}; known: {', '.join(sorted(_BLOCKS))}")
    chosen = [m for m in machines() if m.block == block]
    if block in _MERMAID_BLOCKS:
        return _mermaid(chosen)
    (machine,) = chosen
    return markdown_table(machine.table)


def _diagrams(args: argparse.Namespace, settings: Settings | None) -> int:
    sys.stdout.write(doc_block(args.block) if args.block else diagrams())
    return 0


def _missing(file: Path | None) -> bool:
    """Say so (one line) when ``file`` is not there: a usage error (exit 2), not a
    profile with problems (exit 1)."""
    if file is None or file.is_file():
        return False
    what = "a folder, not a file" if file.is_dir() else "no such file"
    print(f"acrnema-bridge profile: error: {file}: {what}", file=sys.stderr)
    return True


def _load(file: Path | None) -> Profile | None:
    """The profile of ``file``, or None after printing every problem."""
    try:
        return load_profile(file)
    except ProfileError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    except ConfigError as exc:
        print(f"acrnema-bridge profile: {exc}", file=sys.stderr)
    return None


def _show(args: argparse.Namespace, settings: Settings | None) -> int:
    if _missing(args.file):
        return 2
    profile = _load(args.file)
    if profile is None:
        return 1
    sys.stdout.write(to_toml(profile))
    return 0


def _fit(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.capture.channels import load_map
    from bridge.capture.fit import fit_capture, fit_toml

    cmap = load_map(args.map) if args.map is not None else None
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out}: a folder, not a file")
    fit = fit_capture(args.capture, cmap, args.glitch_ns, args.max_words)
    args.out.write_text(fit_toml(fit, str(args.capture)), encoding="utf-8")
    sure = sum(1 for f in fit.findings if f.confidence == "high")
    print(
        f"profile fit: {len(fit.findings)} keys fitted ({sure} with high confidence), "
        f"{len(fit.cmap.lines)} lines mapped; written to {args.out}",
        file=sys.stderr,
    )
    for finding in fit.findings:
        if finding.confidence != "high":
            print(
                f"profile fit: {finding.key}: {finding.confidence}: {finding.evidence}",
                file=sys.stderr,
            )
    for line in fit.unfitted:
        print(f"profile fit: not fitted: {line}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace, settings: Settings | None) -> int:
    if any(_missing(path) for path in args.file):
        return 2
    worst = 0
    for path in args.file:
        profile = _load(path)
        if profile is None:
            worst = 1
        else:
            print(f"{path}: ok (profile {profile.name!r})")
    return worst

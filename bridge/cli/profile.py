"""The link profile commands of ``acrnema-bridge``: ``profile show`` and ``profile check``.

Part of the command line (see :mod:`bridge.cli`): :func:`add_commands` adds the
arguments to the top-level subparsers, each action with its handler. The profile itself
is :mod:`bridge.profile`; its rules are in ``docs/link-profile.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.errors import ConfigError
from bridge.profile import Profile, ProfileError, load_profile, to_toml
from bridge.settings import Settings

__all__ = ["add_commands", "diagrams"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``profile show [FILE]`` and ``profile check FILE`` to the subparsers ``sub``."""
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
        description="Validate FILE merged over the reference profile: exit 0 and print "
        "'ok', or exit 1 and print each problem with its key.",
    )
    check.add_argument("file", type=Path, help="profile file")
    check.set_defaults(handler=_check)
    actions.add_parser(
        "diagrams",
        help="print the state diagrams of the link layers (Mermaid), from their tables",
        description="Print the state diagrams of docs/link-profile.md, generated from the state "
        "tables in the code (data link: link and frame; session).",
    ).set_defaults(handler=_diagrams)


def diagrams() -> str:
    """The Markdown block of docs/link-profile.md with every state diagram, generated."""
    from bridge.acrnema.datalink import FRAME_TABLE, LINK_TABLE, state_diagram
    from bridge.acrnema.session import SESSION_TABLE

    parts = [
        ("Data link, the link as a whole (`datalink.LINK_TABLE`)", LINK_TABLE),
        ("Data link, each DATA frame in the sender's window (`datalink.FRAME_TABLE`)", FRAME_TABLE),
        ("Session (`session.SESSION_TABLE`)", SESSION_TABLE),
    ]
    out = []
    for title, table in parts:
        out += [f"#### {title}", "", "```mermaid", state_diagram(table), "```", ""]  # type: ignore[arg-type]
    return "\n".join(out)


def _diagrams(args: argparse.Namespace, settings: Settings | None) -> int:
    sys.stdout.write(diagrams())
    return 0


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
    profile = _load(args.file)
    if profile is None:
        return 1
    sys.stdout.write(to_toml(profile))
    return 0


def _check(args: argparse.Namespace, settings: Settings | None) -> int:
    profile = _load(args.file)
    if profile is None:
        return 1
    print(f"{args.file}: ok (profile {profile.name!r})")
    return 0

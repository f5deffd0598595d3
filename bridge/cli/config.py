"""The settings commands of ``acrnema-bridge``: ``config show`` and ``config check``.

Part of the command line (:mod:`bridge.cli`); the settings themselves are
:mod:`bridge.settings` (docs/forwarding.md, "Configuration").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridge.cli.common import forward_options, link_options, spool_option
from bridge.settings import Settings, check_file

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config show`` and ``config check FILE`` to the subparsers ``sub``."""
    cfg = sub.add_parser(
        "config",
        help="show the effective settings, or check a settings file",
        description=(
            "The settings of spool, forward, destinations, link and logging come from the "
            "defaults, the TOML file (--config FILE or $BRIDGE_CONFIG), BRIDGE_* environment "
            "variables and flags, each overriding the one before (docs/forwarding.md, "
            "'Configuration'). An unknown key is an error naming the nearest known key."
        ),
    )
    cfg.set_defaults(reads_settings=True)
    cfg_actions = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = cfg_actions.add_parser(
        "show",
        help="print the effective settings as JSON, with where each value came from",
        description=(
            "Print the effective settings as JSON; 'origin' says for every key whether its "
            "value is the default or came from the file, the environment or a flag. Takes "
            "the settings flags of 'run', to show what a command line would do."
        ),
    )
    link_options(show)
    spool_option(show)
    forward_options(show, required=False)
    show.set_defaults(handler=_show)
    check = cfg_actions.add_parser(
        "check",
        help="validate a settings file",
        description="Validate FILE alone (no environment, no flags): exit 0 and print 'ok', "
        "or exit 2 and print every problem, each with its key.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="settings file (TOML)")
    check.set_defaults(handler=_check, reads_settings=False)  # the file given, alone


def _show(args: argparse.Namespace, settings: Settings) -> int:
    """``config show``: the effective tree as JSON, with each value's origin."""
    print(json.dumps(settings.as_dict(), indent=2))
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    """``config check FILE``: exit 0 and ``ok``, or exit 2 and every problem."""
    problems = check_file(args.file)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok")
    return 0

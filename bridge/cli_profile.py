"""``bridge.cli_profile``, kept for the scripts and tests that import it: the ``profile``
commands now live in :mod:`bridge.cli.profile` (the command line is the package
:mod:`bridge.cli`, one module per command family)."""

from __future__ import annotations

import argparse

from bridge.cli.profile import add_commands, diagrams

__all__ = ["COMMANDS", "add_commands", "diagrams", "run_command"]

COMMANDS = ("profile",)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed ``profile`` command (its handler); the exit status."""
    status: int = args.handler(args, None)
    return status

"""The ``acrnema-bridge`` command line: one module per command family.

``main(argv) -> int`` is the whole program; the CLI modules are the only ones that print or
install logging handlers. Exit status: 0 success, 1 some input failed, 2 usage error.

* :mod:`bridge.cli.convert`: ``convert``, ``dump``, ``demo``;
* :mod:`bridge.cli.forward`: ``spool ...``, ``forward``, ``send``, ``echo``;
* :mod:`bridge.cli.config`: ``config show``, ``config check``;
* :mod:`bridge.cli.profile`: ``profile show``, ``check``, ``diagrams``;
* :mod:`bridge.cli.link`: ``run``, ``emulate``;
* :mod:`bridge.cli.health`: ``status`` (a running service's ``/healthz``);
* :mod:`bridge.cli.capture`: ``trace show``, ``trace export``, ``capture decode``;
* :mod:`bridge.cli.common`: the helpers they share (settings, destinations, signals);
* :mod:`bridge.cli.logs`: where the log lines go and how they look.

Each command's parser names its handler (``set_defaults(handler=...)``), called with the
parsed arguments and the command's settings; a parser that sets ``reads_settings`` reads
the settings file and ``BRIDGE_*`` too, the others take their flags only, so a broken
settings file never stops ``convert``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, cast

from bridge import __version__
from bridge.cli import capture, common, config, convert, forward, health, link, logs, profile
from bridge.errors import BridgeError, ConfigError, PortURLError
from bridge.settings import LoggingSettings

__all__ = ["main"]

log = logging.getLogger("bridge.cli")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line: what is wrong and where the help is
    (instead of the usage block above it); the subcommands' parsers are of this class."""

    def error(self, message: str) -> NoReturn:
        text = f"{self.prog}: error: {message} (see {self.prog} --help)"
        if logs.usage_error(text, sys.argv[1:] if _argv is None else _argv):
            self.exit(2)
        self.exit(2, text + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="acrnema-bridge",
        description=(
            "Bridge between ACR-NEMA 2.0 (1988) equipment and files and DICOM networks. "
            "Converts ACR-NEMA 1.0/2.0 files (either byte order) to valid DICOM."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML configuration (default: $BRIDGE_CONFIG)"
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines on stderr as text or as one JSON object each "
        "(default: [logging] format of the config, else text)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="write the log lines to FILE (appended to) instead of stderr; SIGHUP reopens "
        "it, for logrotate (default: [logging] file of the config)",
    )
    sub = cast(  # each command's parser is a _Parser, built by the modules as any parser
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )

    convert.add_commands(sub)
    forward.add_commands(sub)
    config.add_commands(sub)
    profile.add_commands(sub)
    link.add_commands(sub)
    health.add_commands(sub)
    capture.add_commands(sub)
    convert.add_demo(sub)
    return parser


_argv: list[str] | None = None
"""The arguments ``main`` parses (None: ``sys.argv``), for a usage error's format."""


def main(argv: Sequence[str] | None = None) -> int:
    global _argv
    parser = _parser()
    logs.reset()
    _argv = None if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a usage error 2
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        settings = common.load_settings(args, file=getattr(args, "reads_settings", False))
        _setup_logging(args, settings.logging)  # a log file that cannot be opened: exit 2
    except ConfigError as exc:
        _config_error(exc)
        return 2
    try:
        with _crashes_logged():
            status: int = args.handler(args, settings)
        return status
    except PortURLError as exc:  # a usage error, named by its URL: no "configuration:"
        logs.say(f"acrnema-bridge: {exc}", level=logging.ERROR)
        return 2
    except ConfigError as exc:
        _config_error(exc)
        return 2
    except BridgeError as exc:
        logs.say(f"acrnema-bridge: {exc}", level=logging.ERROR)
        return 1
    except KeyboardInterrupt:
        logs.say("acrnema-bridge: interrupted", level=logging.ERROR)
        return 130
    except Exception:  # a bug: one ERROR record of the log (JSON in JSON mode), exit 1
        log.critical("internal error, please report it", exc_info=True)
        return 1


def _config_error(exc: ConfigError) -> None:
    """One line for one problem; a headline and one line each for several."""
    problems = getattr(exc, "problems", None) or [str(exc)]
    if len(problems) == 1:
        logs.say(f"acrnema-bridge: configuration: {problems[0]}", level=logging.ERROR)
        return
    logs.say(f"acrnema-bridge: configuration: {len(problems)} problems:", level=logging.ERROR)
    for problem in problems:
        logs.say(f"  {problem}", level=logging.ERROR)


def _setup_logging(args: argparse.Namespace, settings: LoggingSettings) -> None:
    """The handler of ``[logging]`` (:mod:`bridge.cli.logs`): its level, ``-v`` lowering
    it, its format, and its file if one is set (else stderr, or the journal's lines)."""
    if settings.level == "auto":  # a service says more: run sets auto_level INFO
        base_level = getattr(args, "auto_level", logging.WARNING)
    else:
        base_level = logging.getLevelNamesMapping()[settings.level.upper()]
    verbose = 2 if settings.level == "debug" else min(args.verbose, 2)
    logs.setup(
        level=base_level - 10 * min(args.verbose, 2),
        format=settings.format,
        verbose=verbose,
        file=settings.file,
    )


@contextmanager
def _crashes_logged() -> Iterator[None]:
    """While a command runs, a thread that dies of an uncaught exception is an ERROR
    record of the log (naming the thread, with the traceback in the record, one JSON line
    in JSON mode), never Python's raw traceback on stderr; the previous hook comes back
    when the command returns."""
    previous = threading.excepthook

    def hook(crash: threading.ExceptHookArgs) -> None:
        if crash.exc_type is SystemExit:
            return
        name = crash.thread.name if crash.thread is not None else "?"
        log.error(
            "thread %s crashed: %s: %s",
            name,
            crash.exc_type.__name__,
            crash.exc_value,
            exc_info=(crash.exc_type, crash.exc_value, crash.exc_traceback),  # type: ignore[arg-type]
        )

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous

"""The store-and-forward commands of ``acrnema-bridge``: spool, forward, send, echo, config.

Part of the command line (see :mod:`bridge.cli`): argument definitions and handlers.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.errors import ConfigError
from bridge.settings import DestinationSettings, Settings, TlsFiles, check_file
from bridge.settings import load as load_settings_from
from bridge.spool.store import STATES, Job, Spool, SpoolError

if TYPE_CHECKING:  # the network stack is imported by the commands that use it
    from bridge.forward.runner import RetryPolicy
    from bridge.forward.scu import Destination, TlsSettings
    from bridge.forward.status import Result

__all__ = [
    "FLAGS",
    "add_commands",
    "build_destinations",
    "check_destinations",
    "forward_options",
    "link_options",
    "load_settings",
    "retry_policy",
    "run_command",
    "spool_option",
    "stop_on_signals",
    "tls_settings",
]

COMMANDS = ("spool", "forward", "send", "echo", "config")


def spool_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="spool folder (default: from the config, or ./spool)",
    )


def link_options(parser: argparse.ArgumentParser) -> None:
    """``--port``, ``--profile`` and ``--ae-title``: the flags of ``[link]``."""
    parser.add_argument(
        "--port", metavar="URL", help="the link port (default: [link] port of the config)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="link profile (default: [link] profile of the config, else the reference)",
    )
    parser.add_argument(
        "--ae-title", help="our logical address on the link (default ACRNEMA_BRIDGE)"
    )


def forward_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--dest",
        action="append",
        metavar="AE@HOST:PORT",
        required=required,
        help="a destination; repeat for several (default: the config file's destinations)",
    )
    parser.add_argument("--calling-ae", metavar="AE", help="our AE title (default ACRNEMA_BRIDGE)")
    parser.add_argument(
        "--max-pdu", type=int, metavar="BYTES", help="maximum PDU we receive; 0 = unlimited"
    )
    parser.add_argument(
        "--backoff-cap", type=float, metavar="S", help="longest wait between retries (default 30)"
    )
    parser.add_argument(
        "--max-attempts", type=int, metavar="N", help="quarantine after N attempts (default: never)"
    )
    parser.add_argument(
        "--max-lost",
        type=int,
        metavar="N",
        help="quarantine an object after the association was lost N times while it was "
        "being sent (a receiver that aborts on it); 0 = never (default 3)",
    )
    parser.add_argument(
        "--commitment", action="store_true", help="require Storage Commitment from --dest"
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="CA certificates: use TLS to --dest"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="our TLS certificate")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="our TLS private key")
    parser.add_argument(
        "--no-tcp-tuning", action="store_true", help="leave Nagle's algorithm and delayed ACKs on"
    )


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    spool = sub.add_parser(
        "spool",
        help="add to, inspect and manage the durable spool",
        description=(
            "The spool holds every object until each destination has accepted it. 'add' "
            "ingests DICOM files as they are and converts ACR-NEMA files on the way in; an "
            "object is stored once its file and row are on disk. One process at a time owns "
            "a spool (run, forward, send, spool rebuild: the lock file owner.lock names it); "
            "add, list, stats, retry and purge work alongside it. A spool whose database is "
            "missing or damaged refuses to start until 'spool rebuild' (docs/forwarding.md)."
        ),
    )
    spool_sub = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    add = spool_sub.add_parser(
        "add",
        help="ingest files or folders",
        description=(
            "Ingest files or folders (walked recursively). A DICOM Part 10 file is checked as "
            "'dump' reads it and refused with the reason if it is truncated or malformed; a "
            "file whose identical content is already spooled is skipped ('already in the "
            "spool'). A file that cannot be taken (bad, or the disk is full) is reported and "
            "the batch goes on; exit status 1 if any failed."
        ),
    )
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    spool_option(add)
    lst = spool_sub.add_parser("list", help="one line per object and destination")
    lst.add_argument("--state", choices=STATES, help="only deliveries in this state")
    lst.add_argument("--dest", metavar="AE@HOST:PORT", help="only this destination")
    lst.add_argument("--json", action="store_true", help="JSON instead of text")
    spool_option(lst)
    stats = spool_sub.add_parser("stats", help="counts per destination and state")
    stats.add_argument("--json", action="store_true", help="JSON instead of text")
    spool_option(stats)
    retry = spool_sub.add_parser("retry", help="move quarantined objects back to ready")
    retry.add_argument("--dest", metavar="AE@HOST:PORT", help="only this destination")
    spool_option(retry)
    purge = spool_sub.add_parser(
        "purge",
        help="remove delivered objects past retention",
        description="Remove the files of delivered objects older than the retention period.",
    )
    purge.add_argument(
        "--older-than", type=float, metavar="DAYS", help="instead of the configured retention"
    )
    purge.add_argument(
        "--failed", action="store_true", help="also remove quarantined objects (they are lost)"
    )
    spool_option(purge)
    rebuild = spool_sub.add_parser(
        "rebuild",
        help="make a new database from the object files (after damage)",
        description=(
            "Rebuild a spool whose database is missing or damaged: take the spool's lock, "
            "move the old database files aside (spool.db.damaged-TIME, never deleted), "
            "re-index every object file under objects/ (each Part 10 file carries its UIDs "
            "and transfer syntax) and give each a ready delivery for every destination the "
            "old database registered (if it can still be read) and every --dest (or the "
            "config's destinations). Files that cannot be read go to lost+found/ and are "
            "listed; exit status 1 if there were any. Deliveries already done are sent "
            "again (the same SOP instances)."
        ),
    )
    rebuild.add_argument(
        "--dest", action="append", metavar="AE@HOST:PORT", help="a destination; repeat for several"
    )
    spool_option(rebuild)

    forward = sub.add_parser(
        "forward",
        help="deliver the spool to DICOM destinations (C-STORE)",
        description=(
            "Deliver every spooled object to every destination, reusing associations, retrying "
            "transient failures with exponential backoff and quarantining permanent ones. "
            "Without --until-empty it runs until SIGINT or SIGTERM. Exit status: 0 when the "
            "queue is empty (or on a clean stop), 1 when objects were quarantined or remain."
        ),
    )
    forward_options(forward, required=False)
    forward.add_argument(
        "--until-empty", action="store_true", help="stop once every object is delivered"
    )
    forward.add_argument("--timeout", type=float, metavar="S", help="stop after this many seconds")
    spool_option(forward)

    send = sub.add_parser(
        "send",
        help="spool files and deliver them now (spool add + forward --until-empty)",
        description="Spool files or folders and deliver them, with a progress bar.",
    )
    send.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    forward_options(send, required=False)
    send.add_argument("--timeout", type=float, metavar="S", help="stop after this many seconds")
    spool_option(send)

    ech = sub.add_parser("echo", help="C-ECHO a DICOM node and print the round trip")
    ech.add_argument("dest", metavar="AE@HOST:PORT")
    ech.add_argument("--calling-ae", metavar="AE", help="our AE title (default ACRNEMA_BRIDGE)")
    ech.add_argument("--count", type=int, default=1, metavar="N", help="echo N times (default 1)")
    ech.add_argument("--tls-ca", type=Path, metavar="FILE")
    ech.add_argument("--tls-cert", type=Path, metavar="FILE")
    ech.add_argument("--tls-key", type=Path, metavar="FILE")

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
    check = cfg_actions.add_parser(
        "check",
        help="validate a settings file",
        description="Validate FILE alone (no environment, no flags): exit 0 and print 'ok', "
        "or exit 2 and print every problem, each with its key.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="settings file (TOML)")


FLAGS: dict[str, tuple[str, str]] = {
    "spool": ("spool.path", "--spool"),
    "calling_ae": ("forward.calling_ae", "--calling-ae"),
    "max_pdu": ("forward.max_pdu", "--max-pdu"),
    "backoff_cap": ("forward.backoff_cap", "--backoff-cap"),
    "max_attempts": ("forward.max_attempts", "--max-attempts"),
    "max_lost": ("forward.max_lost", "--max-lost"),
    "port": ("link.port", "--port"),
    "profile": ("link.profile", "--profile"),
    "ae_title": ("link.ae_title", "--ae-title"),
    "log_format": ("logging.format", "--log-format"),
}
"""Attribute of the parsed arguments -> (settings key, flag): the flag layer of the settings."""


def load_settings(args: argparse.Namespace, *, file: bool = True) -> Settings:
    """The settings of this command: defaults < file < ``BRIDGE_*`` < the flags in ``args``.

    ``--dest`` (with ``--commitment`` and ``--tls-*``) replaces the file's destinations.
    ``file=False``: defaults and flags only (the commands that read no settings file)."""
    flags = {
        key: (getattr(args, attr), flag)
        for attr, (key, flag) in FLAGS.items()
        if getattr(args, attr, None) is not None
    }
    if getattr(args, "no_tcp_tuning", False):
        flags["forward.tcp_tuning"] = (False, "--no-tcp-tuning")
    dests = getattr(args, "dest", None)
    listed = None
    if isinstance(dests, list) and dests:  # --dest of forward, send, run, spool rebuild
        from bridge.forward.scu import Destination

        tls = _tls_files(args)
        listed = []
        for text in dests:
            try:
                parsed = Destination.parse(text)
            except ValueError as exc:
                raise ConfigError(f"--dest {text!r}: {exc}") from exc
            commitment = bool(getattr(args, "commitment", False))
            listed.append(
                DestinationSettings(parsed.ae_title, parsed.host, parsed.port, (), commitment, tls)
            )
    if not file:  # only the flags that mean the same for every command
        return load_settings_from(None, env={}, flags=_only(flags, "logging."))
    return load_settings_from(getattr(args, "config", None), flags=flags, destinations=listed)


def _only(flags: dict[str, tuple[object, str]], prefix: str) -> dict[str, tuple[object, str]]:
    return {key: value for key, value in flags.items() if key.startswith(prefix)}


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    """The TLS files of ``--tls-ca``, ``--tls-cert`` and ``--tls-key`` (none: no TLS)."""
    if getattr(args, "tls_ca", None) is None:
        if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
            raise ConfigError("--tls-cert and --tls-key need --tls-ca")
        return None
    return TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)


def _spool(settings: Settings, *, owner: str | None = None) -> Spool:
    """The spool of the settings; with ``owner``, its lock is taken first."""
    return Spool(settings.spool.path, retention_days=settings.spool.retention_days, owner=owner)


def tls_settings(files: TlsFiles | None) -> TlsSettings | None:
    """The forwarder's :class:`TlsSettings` of a destination's ``tls`` table."""
    from bridge.forward.scu import TlsSettings

    if files is None or files.ca_file is None:  # the loader refuses a table without ca_file
        return None
    return TlsSettings(files.ca_file, files.cert_file, files.key_file, files.check_hostname)


def build_destinations(settings: Settings, *, required: bool = True) -> list[Destination]:
    """The forwarder's destinations, made from the settings tree (the one place this is done).

    ``required``: no destination at all is a configuration error."""
    from bridge.forward.scu import Destination

    if not settings.destinations and required:
        raise ConfigError(
            "no destination: give --dest AE@HOST:PORT or [[destination]] in the config"
        )
    f = settings.forward
    out = []
    for d in settings.destinations:
        try:
            out.append(
                Destination(
                    d.ae_title,
                    d.host,
                    d.port,
                    calling_ae=f.calling_ae,
                    max_pdu=f.max_pdu,
                    connect_timeout=f.connect_timeout,
                    acse_timeout=f.acse_timeout,
                    dimse_timeout=f.dimse_timeout,
                    network_timeout=f.network_timeout,
                    idle_timeout=f.idle_timeout,
                    tls=tls_settings(d.tls),
                    commitment=d.commitment,
                    modalities=frozenset(d.modalities) if d.modalities else None,
                    tcp_tuning=f.tcp_tuning,
                    commitment_host=f.commitment_host,
                    commitment_port=f.commitment_port,
                    commitment_timeout=f.commitment_timeout,
                )
            )
        except ValueError as exc:
            raise ConfigError(f"destination {d.name}: {exc}") from exc
    return out


def check_destinations(destinations: list[Destination]) -> None:
    """Fail early on settings that would only fail inside a forwarder thread (TLS files)."""
    from bridge.forward.status import ForwardError

    for destination in destinations:
        if destination.tls is not None:
            try:
                destination.tls.context()
            except ForwardError as exc:
                raise ConfigError(f"destination {destination.name}: {exc}") from exc


def retry_policy(settings: Settings) -> RetryPolicy:
    """The forwarder's :class:`RetryPolicy`, made from ``[forward]``.

    A ``--backoff-cap`` below ``backoff_base`` lowers the first wait to the cap."""
    from bridge.forward.runner import RetryPolicy

    f = settings.forward
    return RetryPolicy(
        base=min(f.backoff_base, f.backoff_cap),
        cap=f.backoff_cap,
        max_attempts=f.max_attempts,
        max_lost=f.max_lost,
        give_up_after=f.give_up_after,
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, for a clean stop."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        print(f"\nacrnema-bridge: {signal.Signals(signum).name}: stopping", file=sys.stderr)
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in previous:
            signal.signal(sig, handler)
    try:
        yield stop
    finally:
        if in_main:
            for sig, old in previous.items():
                signal.signal(sig, old)


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.delivered = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()

    def __call__(self, destination: str, job: Job, result: Result) -> None:
        from bridge.forward.status import Outcome

        with self.lock:
            if result.outcome is Outcome.DONE:
                self.delivered += 1
            elif result.outcome is Outcome.FAIL:
                self.failed += 1
                print(
                    f"\nquarantined for {destination}: "
                    f"{job.info.source or job.info.sop_instance_uid}: {result.reason}",
                    file=sys.stderr,
                )
            if self.enabled:
                rate = self.delivered / max(time.monotonic() - self.start, 1e-6)
                sys.stderr.write(
                    f"\r[{self.delivered + self.failed}/{self.total}] delivered {self.delivered}, "
                    f"quarantined {self.failed}  {rate:.1f} objects/s "
                )
                sys.stderr.flush()


def _add(spool: Spool, paths: list[Path]) -> int:
    from bridge.dicom.batch import iter_inputs
    from bridge.spool.ingest import IngestResult, ingest_file

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(
            f"acrnema-bridge: error: no such file or folder: {', '.join(missing)}", file=sys.stderr
        )
        return 2
    counts = {"spooled": 0, "skipped": 0, "failed": 0}
    objects = 0
    failures: list[str] = []
    for path in iter_inputs(paths, exclude=spool.root):
        try:
            result = ingest_file(spool, path)
        except SpoolError as exc:  # this file could not be stored; the next one may be
            result = IngestResult(str(path), "failed", error=f"{path}: {exc}")
        counts[result.status] += 1
        objects += len(result.object_ids) - len(result.already)
        if result.status == "failed":
            failures.append(result.error or str(path))
            print(f"failed: {result.error}", file=sys.stderr)
        elif result.already and result.status == "skipped":
            ids = ", ".join(str(n) for n in result.already)
            print(f"skipped: {path}: already in the spool (object {ids})", file=sys.stderr)
    print(
        f"{counts['spooled']} files spooled ({objects} objects), {counts['skipped']} skipped, "
        f"{counts['failed']} failed -> {spool.root}",
        file=sys.stderr,
    )
    if len(failures) > 1:
        print("failed files:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _rebuild(settings: Settings) -> int:
    from bridge.spool.ingest import describe_object

    named = [d.name for d in build_destinations(settings, required=False)]
    spool, report = Spool.rebuild(
        settings.spool.path,
        named,
        describe_object,
        command="acrnema-bridge spool rebuild",
        retention_days=settings.spool.retention_days,
    )
    spool.close()
    aside = ", ".join(report.set_aside) or "nothing"
    print(
        f"spool rebuild: old database {report.old_database}; set aside: {aside}",
        file=sys.stderr,
    )
    for name, reason in report.unreadable:
        print(f"spool rebuild: cannot read {name}: {reason}", file=sys.stderr)
    print(
        f"spool rebuild: {report.objects} objects re-indexed, {len(report.unreadable)} "
        f"unreadable (in {spool.root / 'lost+found'}); deliveries ready for: "
        f"{', '.join(report.destinations) or 'no destination (give --dest)'}",
        file=sys.stderr,
    )
    return 1 if report.unreadable else 0


def _forward(
    spool: Spool,
    args: argparse.Namespace,
    settings: Settings,
    *,
    until_empty: bool,
    progress: bool,
) -> int:
    from bridge.forward.runner import Forwarder

    destinations = build_destinations(settings)
    policy = retry_policy(settings)
    names = [d.name for d in destinations]
    spool.register(names)
    total = sum(spool.counts(n)["ready"] + spool.counts(n)["in_flight"] for n in names)
    reporter = _Progress(total) if progress else None
    forwarder = Forwarder(spool, destinations, policy=policy, on_result=reporter)
    with stop_on_signals() as stop:
        summary = forwarder.run(stop, until_empty=until_empty, timeout=args.timeout)
    if reporter is not None and reporter.enabled:
        sys.stderr.write("\n")
    remaining = {n: spool.counts(n) for n in names}
    for name in names:
        c = remaining[name]
        print(
            f"{name}: delivered {summary.delivered.get(name, 0)} now; "
            f"waiting {c['ready'] + c['in_flight']}, "
            f"quarantined {c['failed']}, done {c['done']}",
            file=sys.stderr,
        )
    for name, error in summary.errors.items():
        print(f"{name}: not served: {error}", file=sys.stderr)
    if summary.errors:
        return 1
    left = any(c["ready"] or c["in_flight"] or c["failed"] for c in remaining.values())
    if stop.is_set() and not until_empty:
        return 0  # the service was told to stop: a clean stop
    return 1 if left else 0


def _list(spool: Spool, args: argparse.Namespace) -> int:
    rows = spool.deliveries(state=args.state, destination=args.dest)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.received))
        error = f"  {r.last_error}" if r.last_error else ""
        print(
            f"{r.object_id:6d} {r.state:9} {r.attempts:3d} {r.destination}  "
            f"{r.modality or '-':3} {when}  {r.sop_instance_uid}{error}"
        )
    print(f"{len(rows)} deliveries", file=sys.stderr)
    return 0


def _stats(spool: Spool, args: argparse.Namespace) -> int:
    stats = spool.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(
        f"spool {spool.root}: {stats['objects']} objects, "
        f"{stats['stored']} stored ({stats['bytes']} bytes)"
    )
    oldest = stats["oldest_waiting_s"]
    if oldest is not None:
        print(f"oldest waiting: {oldest:.0f} s")
    per = stats["destinations"]
    assert isinstance(per, dict)
    for name, counts in sorted(per.items()):
        print(f"  {name}: " + ", ".join(f"{state} {counts[state]}" for state in STATES))
    return 0


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "config":
        return _config(args, settings)
    if args.command == "echo":
        from bridge.forward.scu import Destination, echo

        try:
            destination = Destination.parse(
                args.dest,
                calling_ae=settings.forward.calling_ae,
                tls=tls_settings(_tls_files(args)),
            )
        except ValueError as exc:
            raise ConfigError(f"{args.dest!r}: {exc}") from exc
        for _ in range(max(1, args.count)):
            rtt = echo(destination)  # a failure raises ForwardError: exit 1 with the reason
            print(f"C-ECHO {destination.name}: success, round trip {rtt * 1000:.1f} ms")
        return 0
    owner = None
    if args.command in ("forward", "send"):
        check_destinations(build_destinations(settings))  # usage errors before any spooling
        owner = f"acrnema-bridge {args.command}"  # refused at once if another process owns it
    elif args.spool_command == "rebuild":
        return _rebuild(settings)
    spool = _spool(settings, owner=owner)
    try:
        if args.command == "spool":
            action = args.spool_command
            if action == "add":
                return _add(spool, args.paths)
            if action == "list":
                return _list(spool, args)
            if action == "stats":
                return _stats(spool, args)
            if action == "retry":
                print(f"{spool.retry_failed(args.dest)} deliveries back to ready", file=sys.stderr)
                return 0
            if action == "purge":
                removed = spool.purge(older_than_days=args.older_than, failed=args.failed)
                print(f"{removed} objects removed", file=sys.stderr)
                return 0
        if args.command == "forward":
            return _forward(spool, args, settings, until_empty=args.until_empty, progress=False)
        if args.command == "send":
            status = _add(spool, args.paths)
            if status == 2:
                return status
            return max(status, _forward(spool, args, settings, until_empty=True, progress=True))
    finally:
        spool.close()
    return 2


def _config(args: argparse.Namespace, settings: Settings) -> int:
    """``config show``: the effective tree as JSON with each value's origin; ``config check``."""
    if args.config_command == "show":
        print(json.dumps(settings.as_dict(), indent=2))
        return 0
    problems = check_file(args.file)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok")
    return 0

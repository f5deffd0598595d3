"""The store-and-forward commands of ``acrnema-bridge``: spool, forward, send, echo.

Part of the command line (:mod:`bridge.cli`): :func:`add_commands` adds the parsers, each
with its handler (``set_defaults(handler=...)``); a handler takes the parsed arguments and
the command's settings (:func:`bridge.cli.common.load_settings`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli.common import (
    build_destinations,
    check_destinations,
    days,
    forward_options,
    open_spool,
    retry_policy,
    seconds,
    spool_option,
    status_option,
    status_served,
    stop_on_signals,
    tls_files,
    tls_settings,
    whole,
)
from bridge.cli.logs import document, json_mode, output, say
from bridge.errors import ConfigError
from bridge.settings import Settings, StatusSettings
from bridge.spool.store import STATES, Job, Spool, SpoolError

if TYPE_CHECKING:
    from bridge.cli.common import StatusParts
    from bridge.forward.status import Result

__all__ = ["add_commands"]

Handler = Callable[[argparse.Namespace, Settings], int]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``spool ...``, ``forward``, ``send`` and ``echo`` to the subparsers ``sub``."""
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
    spool.set_defaults(reads_settings=True)
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
    add.set_defaults(handler=_with_spool(lambda spool, args: _add(spool, args.paths), create=True))
    lst = spool_sub.add_parser("list", help="one line per object and destination")
    lst.add_argument("--state", choices=STATES, help="only deliveries in this state")
    lst.add_argument("--dest", metavar="AE@HOST:PORT", help="only this destination")
    lst.add_argument("--json", action="store_true", help="JSON instead of text")
    spool_option(lst)
    lst.set_defaults(handler=_with_spool(_list))
    stats = spool_sub.add_parser("stats", help="counts per destination and state")
    stats.add_argument("--json", action="store_true", help="JSON instead of text")
    spool_option(stats)
    stats.set_defaults(handler=_with_spool(_stats))
    retry = spool_sub.add_parser("retry", help="move quarantined objects back to ready")
    retry.add_argument("--dest", metavar="AE@HOST:PORT", help="only this destination")
    spool_option(retry)
    retry.set_defaults(handler=_with_spool(_retry))
    purge = spool_sub.add_parser(
        "purge",
        help="remove delivered objects past retention",
        description=(
            "Remove the files of delivered objects older than the retention period, delete "
            "the history rows of objects delivered before it (quarantined ones stay listed) "
            "and give the database's free space back to the file system (the first purge "
            "of a spool made by an older version rewrites it once with VACUUM)."
        ),
    )
    purge.add_argument(
        "--older-than", type=days, metavar="DAYS", help="instead of the configured retention"
    )
    purge.add_argument(
        "--failed", action="store_true", help="also remove quarantined objects (they are lost)"
    )
    spool_option(purge)
    purge.set_defaults(handler=_with_spool(_purge))
    dests = spool_sub.add_parser(
        "destinations",
        help="every registered destination: counts, last success, last error",
        description=(
            "List every destination registered in the spool (each spooled object waits for "
            "all of them) with its deliveries per state, the time of its last delivery "
            "done, the time and text of its last error, and whether it is held (a permanent "
            "failure such as a rejected called AE title or an unknown host name: since when, "
            "why, and the next try)."
        ),
    )
    dests.add_argument("--json", action="store_true", help="one JSON list")
    spool_option(dests)
    dests.set_defaults(handler=_with_spool(_destinations))
    drop = spool_sub.add_parser(
        "drop-destination",
        help="unregister a destination: its deliveries end, files nobody needs are freed",
        description=(
            "Remove a registered destination (as 'spool destinations' names it): its "
            "deliveries end, whatever their state, and object files no other destination "
            "still needs are removed (retention permitting). Asks on a terminal unless "
            "--yes; without a terminal --yes is required. Works alongside a running owner "
            "(no lock): objects it is sending there are simply not recorded."
        ),
    )
    drop.add_argument("name", metavar="NAME", help="the destination, AE@HOST:PORT")
    drop.add_argument("--yes", action="store_true", help="do not ask")
    spool_option(drop)
    drop.set_defaults(handler=_with_spool(_drop_destination))
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
    rebuild.set_defaults(handler=_rebuild)

    forward = sub.add_parser(
        "forward",
        help="deliver the spool to DICOM destinations (C-STORE)",
        description=(
            "Deliver every spooled object to every destination, reusing associations, retrying "
            "transient failures with exponential backoff and quarantining permanent ones. "
            "Without --until-empty it runs until SIGINT or SIGTERM. A destination that fails "
            "permanently (association rejected-permanent, host name unknown) is held: one "
            "ERROR line, tried again every forward.hold_retry seconds; --until-empty then "
            "stops serving it. Exit status: 0 when the queue is empty (or on a clean stop), "
            "1 when objects were quarantined or remain, or a destination is held."
        ),
    )
    forward_options(forward, required=False)
    forward.add_argument(
        "--until-empty", action="store_true", help="stop once every object is delivered"
    )
    forward.add_argument(
        "--timeout", type=seconds, metavar="S", help="stop after this many seconds"
    )
    spool_option(forward)
    status_option(forward)
    forward.set_defaults(handler=_forward_command, reads_settings=True)

    send = sub.add_parser(
        "send",
        help="spool files and deliver them now (spool add + forward --until-empty)",
        description=(
            "Spool files or folders and deliver them, with a progress bar. Exit status 1 "
            "when an object was quarantined or remains, e.g. because a destination is held "
            "(association rejected-permanent, host name unknown: one line names it and why)."
        ),
    )
    send.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    forward_options(send, required=False)
    send.add_argument("--timeout", type=seconds, metavar="S", help="stop after this many seconds")
    spool_option(send)
    send.set_defaults(handler=_send, reads_settings=True)

    ech = sub.add_parser("echo", help="C-ECHO a DICOM node and print the round trip")
    ech.add_argument("dest", metavar="AE@HOST:PORT")
    ech.add_argument("--calling-ae", metavar="AE", help="our AE title (default ACRNEMA_BRIDGE)")
    ech.add_argument(
        "--count", type=whole(1), default=1, metavar="N", help="echo N times (default 1)"
    )
    ech.add_argument("--tls-ca", type=Path, metavar="FILE")
    ech.add_argument("--tls-cert", type=Path, metavar="FILE")
    ech.add_argument("--tls-key", type=Path, metavar="FILE")
    ech.add_argument("--tls-check-hostname", action="store_true")
    ech.set_defaults(handler=_echo, reads_settings=True)


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.delivered = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.enabled = sys.stderr.isatty() and not json_mode()
        self.start = time.monotonic()

    def __call__(self, destination: str, job: Job, result: Result) -> None:
        from bridge.forward.status import Outcome

        with self.lock:
            if result.outcome is Outcome.DONE:
                self.delivered += 1
            elif result.outcome is Outcome.FAIL:
                self.failed += 1
                say(
                    f"quarantined for {destination}: "
                    f"{job.info.source or job.info.sop_instance_uid}: {result.reason}",
                    level=logging.WARNING,
                    blank=self.enabled,
                )
            if self.enabled:
                rate = self.delivered / max(time.monotonic() - self.start, 1e-6)
                sys.stderr.write(
                    f"\r[{self.delivered + self.failed}/{self.total}] delivered {self.delivered}, "
                    f"quarantined {self.failed}  {rate:.1f} objects/s "
                )
                sys.stderr.flush()


def _add(spool: Spool, paths: list[Path]) -> int:
    from bridge.batch import iter_inputs
    from bridge.ingest import IngestResult, ingest_file

    if _missing(paths):
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
            say(f"failed: {result.error}", level=logging.ERROR)
        elif result.already and result.status == "skipped":
            ids = ", ".join(str(n) for n in result.already)
            say(f"skipped: {path}: already in the spool (object {ids})")
    say(
        f"{counts['spooled']} files spooled ({objects} objects), {counts['skipped']} skipped, "
        f"{counts['failed']} failed -> {spool.root}"
    )
    if len(failures) > 1:
        say("failed files:", level=logging.ERROR)
        for failure in failures:
            say(f"  {failure}", level=logging.ERROR)
    return 1 if counts["failed"] else 0


def _missing(paths: list[Path]) -> bool:
    """Say which of ``paths`` do not exist (a usage error: one line), if any."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        say(
            f"acrnema-bridge: error: no such file or folder: {', '.join(missing)}",
            level=logging.ERROR,
        )
    return bool(missing)


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.spool.objects import describe_object

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
    say(f"spool rebuild: old database {report.old_database}; set aside: {aside}")
    for name, reason in report.unreadable:
        say(f"spool rebuild: cannot read {name}: {reason}", level=logging.ERROR)
    say(
        f"spool rebuild: {report.objects} objects re-indexed, {len(report.unreadable)} "
        f"unreadable (in {spool.root / 'lost+found'}); deliveries ready for: "
        f"{', '.join(report.destinations) or 'no destination (give --dest)'}"
    )
    return 1 if report.unreadable else 0


def _forward(
    spool: Spool,
    args: argparse.Namespace,
    settings: Settings,
    *,
    until_empty: bool,
    progress: bool,
    status: bool = False,
) -> int:
    from bridge.forward.runner import Forwarder

    destinations = build_destinations(settings)
    policy = retry_policy(settings)
    names = [d.name for d in destinations]
    spool.register(names)
    total = sum(spool.counts(n)["ready"] + spool.counts(n)["in_flight"] for n in names)
    reporter = _Progress(total) if progress else None
    forwarder = Forwarder(spool, destinations, policy=policy, on_result=reporter)

    def status_parts() -> StatusParts:
        from bridge.status.probe import Probe

        return Probe(spool, forwarder=forwarder), None

    served = settings if status else replace(settings, status=StatusSettings())
    with status_served(served, status_parts), stop_on_signals() as stop:
        summary = forwarder.run(stop, until_empty=until_empty, timeout=args.timeout)
    if reporter is not None and reporter.enabled:
        sys.stderr.write("\n")
    remaining = {n: spool.counts(n) for n in names}
    for name in names:
        c = remaining[name]
        say(
            f"{name}: delivered {summary.delivered.get(name, 0)} now; "
            f"waiting {c['ready'] + c['in_flight']}, "
            f"quarantined {c['failed']}, done {c['done']}"
        )
    for name, error in summary.errors.items():
        say(f"{name}: not served: {error}", level=logging.ERROR)
    if until_empty:
        for name, why in summary.held.items():
            say(f"{name}: held, its objects wait: {why}", level=logging.WARNING)
    if summary.errors or (until_empty and summary.held):
        return 1
    left = any(c["ready"] or c["in_flight"] or c["failed"] for c in remaining.values())
    if stop.is_set() and not until_empty:
        return 0  # the service was told to stop: a clean stop
    return 1 if left else 0


def _list(spool: Spool, args: argparse.Namespace) -> int:
    # streamed: one row at a time, so a spool with years of history lists in flat memory
    rows = spool.each_delivery(state=args.state, destination=args.dest)
    count = 0
    if args.json:  # in JSON mode, the array on one line
        indent = "" if json_mode() else "\n  "
        sys.stdout.write("[")
        for r in rows:
            sys.stdout.write(("," if count else "") + indent + json.dumps(r.__dict__))
            count += 1
        sys.stdout.write(("\n]\n" if indent else "]\n") if count else "]\n")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.received))
        error = f"  {r.last_error}" if r.last_error else ""
        output(
            f"{r.object_id:6d} {r.state:9} {r.attempts:3d} {r.destination}  "
            f"{r.modality or '-':3} {when}  {r.sop_instance_uid}{error}",
            **r.__dict__,
        )
        count += 1
    say(f"{count} deliveries")
    return 0


def _stats(spool: Spool, args: argparse.Namespace) -> int:
    stats = spool.stats()
    if args.json:
        document(stats)
        return 0
    output(
        f"spool {spool.root}: {stats['objects']} objects, "
        f"{stats['stored']} stored ({stats['bytes']} bytes)",
        **{k: v for k, v in stats.items() if k != "destinations"},
    )
    oldest = stats["oldest_waiting_s"]
    if oldest is not None:
        output(f"oldest waiting: {oldest:.0f} s", oldest_waiting_s=oldest)
    per = stats["destinations"]
    assert isinstance(per, dict)
    for name, counts in sorted(per.items()):
        output(
            f"  {name}: " + ", ".join(f"{state} {counts[state]}" for state in STATES),
            destination=name,
            **counts,
        )
    return 0


def _when(t: object) -> str:
    if not isinstance(t, (int, float)):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _destinations(spool: Spool, args: argparse.Namespace) -> int:
    report = spool.destination_report()
    if args.json:
        document(report)
        return 0
    for entry in report:
        counts = entry["counts"]
        assert isinstance(counts, dict)
        error = entry["last_error"]
        said = "never" if not isinstance(error, dict) else f"{_when(error['time'])} {error['text']}"
        hold = entry["held"]
        held = (
            ""
            if not isinstance(hold, dict)
            else f"; HELD since {_when(hold['since'])}, next try {_when(hold['next_attempt'])}: "
            f"{hold['reason']}"
        )
        output(
            f"{entry['name']}: "
            + ", ".join(f"{state} {counts[state]}" for state in STATES)
            + f"; last success {_when(entry['last_success'])}; last error {said}{held}",
            **entry,
        )
    say(f"{len(report)} destinations")
    return 0


def _drop_destination(spool: Spool, args: argparse.Namespace) -> int:
    if args.name not in spool.destinations():
        known = ", ".join(spool.destinations()) or "none"
        raise ConfigError(f"no destination {args.name} in spool {spool.root} (registered: {known})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"drop-destination {args.name}: not on a terminal: add --yes")
        waiting = sum(v for k, v in spool.counts(args.name).items() if k != "done")
        answer = input(f"drop {args.name} ({waiting} deliveries not done end)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            say("nothing dropped")
            return 1
    ended, freed = spool.drop_destination(args.name)
    say(f"{args.name} dropped: {ended} deliveries ended, {freed} files freed")
    return 0


def _with_spool(
    action: Callable[[Spool, argparse.Namespace], int], *, create: bool = False
) -> Handler:
    """A handler that runs ``action`` on the spool of the settings (not owning it).

    Only ``spool add`` creates a missing spool; a query on a mistyped path is an error,
    never an empty spool answering "0 objects".
    """

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        spool = open_spool(settings, create=create)
        try:
            return action(spool, args)
        finally:
            spool.close()

    return handler


def _retry(spool: Spool, args: argparse.Namespace) -> int:
    say(f"{spool.retry_failed(args.dest)} deliveries back to ready")
    return 0


def _purge(spool: Spool, args: argparse.Namespace) -> int:
    removed = spool.purge(older_than_days=args.older_than, failed=args.failed)
    say(f"{removed} objects removed")
    return 0


def _forward_command(args: argparse.Namespace, settings: Settings) -> int:
    check_destinations(build_destinations(settings), resolve=True)  # usage errors first
    spool = open_spool(settings, owner="acrnema-bridge forward")  # refused if owned
    try:
        return _forward(
            spool, args, settings, until_empty=args.until_empty, progress=False, status=True
        )
    finally:
        spool.close()


def _send(args: argparse.Namespace, settings: Settings) -> int:
    check_destinations(build_destinations(settings), resolve=True)  # usage errors first,
    if _missing(args.paths):  # before the spool is created
        return 2
    spool = open_spool(settings, owner="acrnema-bridge send", create=True)  # refused if owned
    try:
        status = _add(spool, args.paths)
        if status == 2:
            return status
        return max(status, _forward(spool, args, settings, until_empty=True, progress=True))
    finally:
        spool.close()


def _echo(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.forward.scu import Destination, echo

    try:
        destination = Destination.parse(
            args.dest,
            calling_ae=settings.forward.calling_ae,
            tls=tls_settings(tls_files(args)),
        )
    except ValueError as exc:
        raise ConfigError(f"{args.dest!r}: {exc}") from exc
    check_destinations([destination], resolve=True)  # TLS files, the host: usage errors
    for _ in range(args.count):
        rtt = echo(destination)  # a failure raises ForwardError: exit 1 with the reason
        output(
            f"C-ECHO {destination.name}: success, round trip {rtt * 1000:.1f} ms",
            destination=destination.name,
            round_trip_s=rtt,
        )
    return 0

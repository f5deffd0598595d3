"""Spool cost against the backlog: claim and drain at 1,000 and at 100,000 waiting objects.

Usage: ``python bench/spool.py [--sizes 1000,100000] [--claims 30] [--drain-max N]``
(results: docs/benchmarks.md).

For each size N a fresh spool gets N objects waiting for one destination, each with a
small file of its own (256 bytes: the spool's bookkeeping is measured, not the disk's
bandwidth). The rows are inserted in one transaction straight into the spool's own
database (``Spool.put`` fsyncs each object; 100,000 of them would take minutes and time
nothing of interest here). Then:

1. **claim**: ``Spool.claim(limit=64)`` with all N deliveries ready, ``--claims`` times;
   after each, the claimed rows are put back to ready (not timed), so every claim sees
   the full backlog. Median and range in milliseconds, and the claim query's plan
   (``EXPLAIN QUERY PLAN``).
2. **drain**: ``Forwarder.run(until_empty=True)`` with batches of 64 and a sender that
   answers success at once without any network (so only the forwarder and the spool
   are timed: claim, the batch's commit, removing the files). "steady" is the time from
   the first result to the last divided by the objects between them; "total" includes
   the forwarder's start-up (recovery walks ``objects/``, registration, housekeeping),
   which grows with N and is paid once.

The goal (issue 11): the same cost per object at 100,000 as at 1,000.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import cpu_model

from bridge import __version__
from bridge.forward.runner import Forwarder
from bridge.forward.scu import Destination
from bridge.forward.status import Outcome, Result
from bridge.spool.store import Spool

DESTINATION = Destination("PACS", "127.0.0.1", 104)
BATCH = 64


class NullSender:
    """Answers success for every object at once: no network, no file read."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination

    def send(self, items: Sequence[Any]) -> list[Result]:
        return [Result(Outcome.DONE, 0x0000, "success")] * len(items)

    def close(self) -> None:
        pass

    def close_if_idle(self, now: float) -> None:
        pass

    def stop(self, *, now: bool = False) -> None:
        pass


def fill(root: Path, count: int) -> Spool:
    """A spool with ``count`` objects, each with a file, ready for DESTINATION."""
    spool = Spool(root)
    spool.register([DESTINATION.name])
    now = time.time()
    rows, deliveries = [], []
    for i in range(1, count + 1):
        relative = f"objects/{i % 256:02x}/{i}.dcm"
        path = root / relative
        path.parent.mkdir(mode=0o700, exist_ok=True)
        data = i.to_bytes(8, "little") * 32
        path.write_bytes(data)
        uid = f"1.2.826.0.1.3680043.2.1143.9.{i}"
        digest = hashlib.sha256(data).hexdigest()
        rows.append((i, uid, digest, now, relative))
        deliveries.append((i, DESTINATION.name, now))
    db = spool._db()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO objects (id, sop_instance_uid, sop_class_uid, transfer_syntax, modality, "
        "size, sha256, source, received, file) VALUES (?, ?, '1.2.840.10008.5.1.4.1.1.7', "
        "'1.2.840.10008.1.2.1', 'OT', 256, ?, 'bench', ?, ?)",
        rows,
    )
    db.executemany(
        "INSERT INTO deliveries (object_id, destination, state, updated) VALUES (?, ?, 'ready', ?)",
        deliveries,
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return spool


def claim_plan(spool: Spool) -> list[str]:
    """EXPLAIN QUERY PLAN of the claim's SELECT, as Spool.claim runs it."""
    seen: list[str] = []
    db = spool._db()
    db.set_trace_callback(seen.append)
    jobs = spool.claim(DESTINATION.name, now=time.time(), limit=1)
    db.set_trace_callback(None)
    requeue(spool, jobs)
    query = next(s for s in seen if s.lstrip().upper().startswith("SELECT"))
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query)]


def requeue(spool: Spool, jobs: Sequence[Any]) -> None:
    db = spool._db()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "UPDATE deliveries SET state = 'ready' WHERE object_id = ? AND destination = ?",
        [(j.object_id, j.destination) for j in jobs],
    )
    db.execute("COMMIT")


def time_claims(spool: Spool, claims: int) -> list[float]:
    times = []
    for _ in range(claims):
        started = time.perf_counter()
        jobs = spool.claim(DESTINATION.name, now=time.time(), limit=BATCH)
        times.append((time.perf_counter() - started) * 1000)
        assert len(jobs) == BATCH
        requeue(spool, jobs)
    return times


def drain(spool: Spool, count: int) -> tuple[float, float]:
    """(total seconds, steady-state microseconds per object) of draining the spool."""
    stamps: list[float] = []

    def on_result(_name: str, _job: Any, _result: Result) -> None:
        stamps.append(time.perf_counter())

    forwarder = Forwarder(
        spool,
        [DESTINATION],
        batch=BATCH,
        sender_factory=NullSender,  # type: ignore[arg-type]
        on_result=on_result,
    )
    started = time.perf_counter()
    summary = forwarder.run(threading.Event(), until_empty=True)
    total = time.perf_counter() - started
    delivered = summary.delivered.get(DESTINATION.name, 0)
    if delivered != count or len(stamps) != count:
        raise SystemExit(f"bench: {delivered} of {count} delivered")
    steady = (stamps[-1] - stamps[0]) / (count - 1) * 1e6
    return total, steady


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,100000", help="backlogs (default %(default)s)")
    parser.add_argument("--claims", type=int, default=30, help="claims timed per size")
    parser.add_argument(
        "--drain-max", type=int, default=0, metavar="N", help="no drain above N objects"
    )
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes takes numbers separated by commas")
    if any(s <= BATCH for s in sizes) or args.claims < 1:
        parser.error(f"every size must exceed {BATCH}, and --claims be at least 1")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; acrnema-bridge {__version__}")
    print(f"bridge from {Path(sys.modules['bridge'].__file__ or '?').parent}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before the runs: {load}")
    print(
        f"{'backlog':>8} {'claim ms (median, range)':>26} {'drain total s':>14} "
        f"{'us/object total':>16} {'us/object steady':>17}"
    )
    plans = {}
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix="acrnema-bench-spool-"))
        try:
            spool = fill(work / "spool", size)
            plans[size] = claim_plan(spool)
            claims = time_claims(spool, args.claims)
            if args.drain_max and size > args.drain_max:
                total = steady = float("nan")  # the old spool takes minutes at 100,000
            else:
                total, steady = drain(spool, size)
            spool.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        median = statistics.median(claims)
        print(
            f"{size:>8} {median:>10.2f} ({min(claims):.2f}-{max(claims):.2f}){'':>4} "
            f"{total:>14.2f} {total / size * 1e6:>16.0f} {steady:>17.0f}",
            flush=True,
        )
    for size, plan in plans.items():
        print(f"claim plan at {size}: " + "; ".join(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())

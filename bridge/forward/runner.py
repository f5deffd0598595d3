"""The forward loop: from the spool to every destination, durably.

One worker thread per destination claims due deliveries from the spool, hands them to
that destination's :class:`~bridge.forward.scu.Sender` and records each result:

* DONE: the delivery is done (the file goes once every destination is done);
* RETRY: back to ``ready`` after an exponential backoff with jitter, capped
  (:class:`RetryPolicy`); after ``max_attempts`` (if set) it is quarantined instead;
  an object that was on the wire when the association was lost ``max_lost`` times is
  quarantined too (a receiver that aborts on it, or never answers it), so it cannot
  hold back the rest;
* FAIL: quarantined with the reason. The other objects keep flowing: a poison object
  never blocks a queue.

Destinations are independent: each has its own thread, association and retry clock, so
one that is down never slows another.

**Held destinations.** A delivery whose Result is marked ``hold`` (the association was
rejected permanently, e.g. called AE title not recognized, or the host name does not
exist: :mod:`bridge.forward.scu`) says nothing about the object: the *destination* is
held. One ERROR line names it and the reason; the hold (reason, since, next attempt) is
recorded in the spool's destinations table, so ``spool destinations`` shows it from any
process; its objects wait (``ready``, never quarantined for it, whatever
``max_attempts``) and the worker claims nothing until :attr:`RetryPolicy.hold_retry`
has passed, then tries one batch again. Any other outcome of a try (delivered, or a
failure that passes) ends the hold with a WARNING. With ``until_empty`` a held
destination's worker ends at once, and :attr:`RunSummary.held` names it, so ``send``
and ``forward --until-empty`` return instead of waiting for ever. A process starts by
trying every destination at once, held or not (restarting is how an operator who fixed
the cause says "now").

**Unserved destinations.** :meth:`Forwarder.run` logs a WARNING for each destination
registered in the spool that no worker of this forwarder serves
(:func:`warn_unserved`): its objects wait for it and keep their files until a
forwarder serves it or ``spool drop-destination`` removes it.

**Logs while a destination fails.** One line per destination per interval, never one
per object per retry (a PACS down for a weekend with thousands of objects waiting must
not fill a disk): the first failed try is one WARNING (the reason, the objects waiting,
the next attempt); while tries keep failing, one WARNING every :data:`REPORT_EVERY_S`
seconds says the same with the time since the first failure and the tries failed since
the last line; the first delivery afterwards is one WARNING ("delivering again"). Each
object's retry is at DEBUG; a quarantine is one WARNING for its object; a delivery is
one INFO line naming the object's SOP Instance UID and the destination.

**No worker dies or hangs silently.** Any exception in a worker's loop (a spool error
such as "database is locked" or a full disk, a bug) is logged at ERROR with the
destination, the worker waits (capped exponential backoff, :meth:`RetryPolicy.delay`)
and tries again; results already received are recorded before anything new is claimed,
so no delivery is stranded ``in_flight``. A worker that cannot go on makes the whole
forwarder fail (:attr:`Forwarder.fatal`, :attr:`Forwarder.failed`, and
:meth:`Forwarder.run` raises :class:`ForwarderFailed`), so that the process exits
non-zero and its supervisor sees it. The rule, in :class:`RetryPolicy`: a worker fails
when its loop has failed without a single success for ``give_up_after`` seconds (5
minutes by default), or at once when its Sender cannot be made (e.g. unusable TLS
files) or on an exception that is not an ``Exception`` (which no retry heals).

**Stopping.** :meth:`Forwarder.run` returns within a few seconds of ``stop`` being set
or of its ``timeout``, whatever the destinations do: the workers are told to start
nothing new; after :data:`STOP_GRACE_S` the connections still in use are shut down
(:meth:`Sender.stop` with ``now``), which ends any write, read, association request or
release blocked on a peer. The objects not sent go back to ``ready``, due at once.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import ForwarderFailed
from bridge.forward.scu import Destination, Item, Sender
from bridge.forward.status import Outcome, Result
from bridge.spool.store import Job, Spool

__all__ = [
    "STOP_GRACE_S",
    "Forwarder",
    "ForwarderFailed",
    "RetryPolicy",
    "RunSummary",
    "warn_unserved",
]

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0
"""Seconds a stopping worker may finish the exchange in hand before its connection is
shut down; :meth:`Forwarder.run` waits as long again for the workers to end."""
_POLL_S = 0.1  # how often run() looks at its stop event, deadline and workers
REPORT_EVERY_S = 60.0
"""Seconds between two summary lines of a destination whose deliveries keep failing."""
HOUSEKEEPING_S = 3600.0
"""Seconds between two runs of :meth:`Spool.housekeeping` while forwarding (it also runs
once at the start): files and history of delivered objects past retention go."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a delivery again, when to give it up, and when a worker gives up.

    The wait after the n-th failed attempt is ``base * 2**(n-1)``, capped at ``cap``,
    times 0.5 to 1 (jitter). The default cap of 30 s means a destination that comes
    back is served within a minute. ``max_attempts`` 0 means retry for ever.

    ``max_lost``: an object whose attempts ended ``max_lost`` times with the association
    lost or timed out *while it was on the wire* (being written, or awaiting its
    response) is quarantined, even when ``max_attempts`` is 0: the receiver aborts or
    hangs on that object. A destination that is down or refuses associations never
    counts. 0 turns this off.

    ``give_up_after``: a worker whose loop keeps failing (e.g. the spool's database or
    disk) waits the same capped backoff between tries; after this many seconds without
    one success it stops the forwarder with an error (:class:`ForwarderFailed`).

    ``hold_retry``: how long a held destination (a permanent failure, module docstring)
    waits between tries.
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int = 0
    max_lost: int = 3
    give_up_after: float = 300.0
    hold_retry: float = 300.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap > 0):
            raise ValueError("backoff base and cap must be positive")
        if self.max_attempts < 0 or self.max_lost < 0:
            raise ValueError("max_attempts and max_lost must not be negative")
        if not self.give_up_after > 0:
            raise ValueError("give_up_after must be a positive number of seconds")
        if not self.hold_retry > 0:
            raise ValueError("hold_retry must be a positive number of seconds")

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 for the first)."""
        raw = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        return float(raw * (0.5 + 0.5 * (rng or random).random()))


@dataclass
class RunSummary:
    """What one run of the forwarder did, per destination."""

    delivered: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    """Destinations held when the run ended (or when their worker ended), with why."""


@dataclass(frozen=True)
class _Record:
    """One spool update a worker owes: ``done``, ``skip`` (done, not sent), ``retry``
    or ``fail``."""

    kind: str
    jobs: tuple[Job, ...]
    reason: str | None
    next_attempt: float = 0.0
    lost: bool = False


class Forwarder:
    """Delivers the spool's objects to its destinations until told to stop.

    Fatal errors, for whoever runs it (the CLI, the service): :attr:`failed` is set and
    :attr:`fatal` holds the exception once a worker cannot go on; :meth:`run` then
    stops the other workers and raises :class:`ForwarderFailed`; ``on_fatal`` (if
    given) is called once, from the failing worker's thread, with the destination's
    name and the exception.
    """

    def __init__(
        self,
        spool: Spool,
        destinations: Sequence[Destination],
        *,
        policy: RetryPolicy | None = None,
        batch: int = 64,
        sender_factory: Callable[[Destination], Sender] = Sender,
        on_result: Callable[[str, Job, Result], None] | None = None,
        on_fatal: Callable[[str, BaseException], None] | None = None,
        report_every: float = REPORT_EVERY_S,
    ) -> None:
        self.spool = spool
        self.destinations = list(destinations)
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.sender_factory = sender_factory
        self.on_result = on_result
        self.on_fatal = on_fatal
        self.summary = RunSummary()
        self.fatal: BaseException | None = None
        """The exception that made a worker give up, once one did."""
        self.fatal_destination: str | None = None
        self.failed = threading.Event()
        """Set when :attr:`fatal` is: wait on it to learn that forwarding has stopped."""
        self._lock = threading.Lock()
        self._workers: dict[str, threading.Thread] = {}  # of the current run, by destination
        self._rng = random.Random()
        self._halt = threading.Event()
        self._senders: dict[str, Sender] = {}
        self._unlinker: _Unlinker | None = None
        self.report_every = report_every
        """Seconds between two summary lines of a destination whose deliveries fail."""
        self._outages: dict[str, _Outage] = {}  # each entry touched by its own worker only
        self._holds: dict[str, _Held] = {}  # each entry touched by its own worker only

    def run(
        self,
        stop: threading.Event,
        *,
        until_empty: bool = False,
        timeout: float | None = None,
    ) -> RunSummary:
        """Forward until ``stop`` is set (or, with ``until_empty``, the queue is empty).

        ``timeout`` (seconds) ends the run early. Returns within about
        ``2 * STOP_GRACE_S`` seconds of a stop or the timeout, whatever the peers do (a
        worker still not finished then is named in an ERROR log line and left to end on
        its own: its thread is a daemon). Raises :class:`ForwarderFailed` when a worker
        could not go on.
        """
        self.spool.recover()
        self.spool.register(d.name for d in self.destinations)
        self._housekeeping()
        warn_unserved(self.spool, [d.name for d in self.destinations])
        self._halt.clear()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._unlinker = _Unlinker(self.spool)
        try:
            self._run_workers(stop, until_empty, timeout, deadline)
        finally:
            unlinker, self._unlinker = self._unlinker, None
            unlinker.close()
        if self.fatal is not None:
            raise ForwarderFailed(self.fatal_destination or "?", self.fatal) from self.fatal
        return self.summary

    def workers_alive(self) -> dict[str, bool]:
        """Each destination's worker (``forward-NAME``) and whether it runs now (the
        status server); False before the run starts and after it ends."""
        workers = self._workers
        return {
            f"forward-{d.name}": d.name in workers and workers[d.name].is_alive()
            for d in self.destinations
        }

    def outcomes(self) -> dict[str, dict[str, int]]:
        """Deliveries recorded so far per destination: ``done``, ``retry``,
        ``quarantined`` (the status server's counters)."""
        with self._lock:
            s = self.summary
            return {
                d.name: {
                    "done": s.delivered.get(d.name, 0),
                    "retry": s.retried.get(d.name, 0),
                    "quarantined": s.quarantined.get(d.name, 0),
                }
                for d in self.destinations
            }

    def _housekeeping(self) -> None:
        """:meth:`Spool.housekeeping`; a failure is logged, forwarding goes on."""
        try:
            removed, pruned = self.spool.housekeeping()
        except Exception as exc:
            log.error("spool housekeeping failed (tried again later): %s", exc)
            return
        if removed or pruned:
            log.info(
                "spool housekeeping: %d files and the history of %d objects past retention removed",
                removed,
                pruned,
            )

    def _run_workers(
        self,
        stop: threading.Event,
        until_empty: bool,
        timeout: float | None,
        deadline: float | None,
    ) -> None:
        next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        workers = [
            threading.Thread(
                target=self._serve,
                args=(destination, until_empty),
                name=f"forward-{destination.name}",
                daemon=True,
            )
            for destination in self.destinations
        ]
        self._workers = {d.name: w for d, w in zip(self.destinations, workers, strict=True)}
        for worker in workers:
            worker.start()
        why = ""
        while any(w.is_alive() for w in workers):
            if stop.is_set():
                why = "stop requested"
            elif deadline is not None and time.monotonic() >= deadline:
                why = f"timeout of {timeout:g} s reached"
            elif self.failed.is_set():
                why = f"forwarding to {self.fatal_destination} failed"
            if why:
                break
            if time.monotonic() >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = time.monotonic() + HOUSEKEEPING_S
            stop.wait(_POLL_S)
        if why:
            self._stop_workers(workers, why)

    def _stop_workers(self, workers: list[threading.Thread], why: str) -> None:
        """Halt the workers: no new work, then shut their connections down."""
        log.info("stopping the forwarder: %s", why)
        self._halt.set()
        with self._lock:
            senders = list(self._senders.items())
        for _name, sender in senders:
            sender.stop()
        if not _join(workers, STOP_GRACE_S):
            busy = {w.name for w in workers if w.is_alive()}
            with self._lock:
                senders = list(self._senders.items())
            for name, sender in senders:
                if f"forward-{name}" in busy:
                    log.warning(
                        "%s: still busy %g s after the stop: shutting its connection down",
                        name,
                        STOP_GRACE_S,
                    )
                    sender.stop(now=True)
            if not _join(workers, STOP_GRACE_S):
                for worker in workers:
                    if worker.is_alive():
                        log.error("%s did not end after the stop; left behind", worker.name)

    def _count(self, table: dict[str, int], name: str, n: int = 1) -> None:
        with self._lock:
            table[name] = table.get(name, 0) + n

    def _give_up(self, name: str, exc: BaseException, why: str) -> None:
        """Make the forwarder fail because the worker for ``name`` cannot go on."""
        log.error("%s: forwarding cannot go on (%s): %r; stopping the forwarder", name, why, exc)
        with self._lock:
            self.summary.errors[name] = f"{why}: {exc}"
            first = self.fatal is None
            if first:
                self.fatal = exc
                self.fatal_destination = name
        self._halt.set()
        self.failed.set()
        if first and self.on_fatal is not None:
            try:
                self.on_fatal(name, exc)
            except Exception:
                log.exception("%s: the on_fatal callback failed", name)

    def _serve(self, destination: Destination, until_empty: bool) -> None:
        """One destination's worker: claim, send, record; survive every error."""
        name = destination.name
        try:
            sender = self.sender_factory(destination)
        except Exception as exc:  # e.g. unusable TLS files: nothing can be sent there
            self._give_up(name, exc, "cannot send")
            return
        with self._lock:
            self._senders[name] = sender
        if self._halt.is_set():
            sender.stop()
        self._adopt_hold(name)
        owed: list[_Record] = []  # results received but not yet recorded in the spool
        failures = 0
        failing_since = 0.0
        try:
            while not self._halt.is_set():
                try:
                    self._record(name, owed)
                    if not self._step(destination, sender, until_empty, owed):
                        return
                    failures = 0
                except Exception as exc:
                    now = time.monotonic()
                    if failures == 0:
                        failing_since = now
                    failures += 1
                    if now - failing_since >= self.policy.give_up_after:
                        self._give_up(name, exc, f"failing for {now - failing_since:.0f} s")
                        return
                    wait = self.policy.delay(failures, self._rng)
                    log.error(
                        "%s: forwarding failed (%d in a row): %s; trying again in %.1f s",
                        name,
                        failures,
                        exc,
                        wait,
                        exc_info=failures == 1,
                    )
                    self._reopen_spool()
                    self._halt.wait(wait)
            # stopped: record what came back (objects not sent go back to ready)
            try:
                self._record(name, owed)
            except Exception as exc:
                log.error("%s: cannot record %d results at the stop: %s", name, len(owed), exc)
        except BaseException as exc:  # not an Exception: nothing to retry
            self._give_up(name, exc, "unexpected")
            raise
        finally:
            try:
                sender.close()
            except Exception:
                log.exception("%s: closing the sender failed", name)
            self._reopen_spool()

    def _reopen_spool(self) -> None:
        """Drop this thread's database connection; the next call opens a fresh one."""
        try:
            self.spool.close()
        except Exception as exc:
            log.debug("closing the spool connection failed: %s", exc)

    def _step(
        self, destination: Destination, sender: Sender, until_empty: bool, owed: list[_Record]
    ) -> bool:
        """Claim and deliver one batch, or wait for work; False when done (until_empty)."""
        name = destination.name
        held = self._holds.get(name)
        if held is not None and time.time() < held.next_attempt:
            sender.close_if_idle(time.monotonic())
            self._halt.wait(min(0.5, held.next_attempt - time.time()))
            return True
        jobs = self.spool.claim(name, now=time.time(), limit=self.batch)
        if not jobs:
            if until_empty:
                counts = self.spool.counts(name)
                if counts["ready"] == 0 and counts["in_flight"] == 0:
                    return False
            sender.close_if_idle(time.monotonic())
            due = self.spool.next_due(name)
            wait = 0.5 if due is None else min(0.5, max(0.01, due - time.time()))
            self._halt.wait(wait)
            return True
        results = self._deliver(destination, sender, jobs, owed)
        self._record(name, owed)
        self._report(name, [result for _, result in results])
        if self.on_result is not None:
            for job, result in results:
                try:
                    self.on_result(name, job, result)
                except Exception:
                    log.exception("%s: the on_result callback failed", name)
        if not self._halt.is_set():  # a stop says nothing about the destination
            self._update_hold(name, [result for _, result in results])
        return not (until_empty and name in self._holds)

    # -- held destinations

    def _adopt_hold(self, name: str) -> None:
        """Take over a hold an earlier process recorded: tried at once, reported anew."""
        try:
            hold = self.spool.hold_of(name)
        except Exception as exc:  # the loop's first step meets the same problem
            log.debug("%s: cannot read its hold: %s", name, exc)
            return
        if hold is not None:
            self._holds[name] = _Held(hold.reason, hold.since, time.time(), reported=False)

    def _update_hold(self, name: str, results: list[Result]) -> None:
        """Hold ``name`` when a result says so; end its hold when a try went otherwise."""
        why = next((r.reason for r in results if r.hold), None)
        held = self._holds.get(name)
        if why is None:
            if held is not None and results:
                del self._holds[name]
                with self._lock:
                    self.summary.held.pop(name, None)
                self.spool.unhold(name)
                log.warning("%s: no longer held (held since %s)", name, _when(held.since))
            return
        now = time.time()
        next_attempt = now + self.policy.hold_retry
        since = now if held is None else held.since
        self._holds[name] = _Held(why, since, next_attempt, reported=True)
        with self._lock:
            self.summary.held[name] = why
        if held is None or not held.reported:
            log.error(
                "%s: held: %s; its objects wait, tried again every %g s "
                "('spool destinations' shows it, 'spool drop-destination' removes it)",
                name,
                why,
                self.policy.hold_retry,
            )
        else:
            log.info("%s: still held: %s; next try in %g s", name, why, self.policy.hold_retry)
        recorded = self.spool.hold(name, why, next_attempt, now=now)
        if recorded is not None:
            self._holds[name] = _Held(why, recorded.since, next_attempt, reported=True)

    def _deliver(
        self, destination: Destination, sender: Sender, jobs: list[Job], owed: list[_Record]
    ) -> list[tuple[Job, Result]]:
        """Send ``jobs``; append the spool updates they need to ``owed``.

        Returns each sent job with its result as recorded (a RETRY that is quarantined
        is reported as FAIL with the quarantine's reason).
        """
        name = destination.name
        skipped = [j for j in jobs if not destination.accepts(j.info.modality)]
        if skipped:
            wanted = sorted(destination.modalities or ())
            owed.append(_Record("skip", tuple(skipped), f"not sent: modality filter {wanted}"))
            jobs = [j for j in jobs if destination.accepts(j.info.modality)]
            if not jobs:
                return []
        items = [
            Item(
                j.path,
                j.info.sop_class_uid,
                j.info.sop_instance_uid,
                j.info.transfer_syntax,
                j.sha256 or None,
            )
            for j in jobs
        ]
        try:
            results = sender.send(items)
        except Exception as exc:  # a sender bug must not strand the batch in_flight
            log.exception("%s: sender failed", name)
            results = [Result(Outcome.RETRY, None, f"sender error: {exc!r}")] * len(jobs)
        done = []
        reported = []
        now = time.time()
        stopping = self._halt.is_set()
        policy = self.policy
        for job, result in zip(jobs, results, strict=True):
            if result.outcome is Outcome.DONE:
                done.append(job)
                reported.append((job, result))
                continue
            attempts = job.attempts + 1
            lost = job.lost + (1 if result.lost else 0)
            reason = result.reason
            if result.outcome is Outcome.RETRY and result.hold and not stopping:
                # the destination is held, not the object: due at once, but the worker
                # claims nothing before the hold's next try (a new process tries at once)
                owed.append(_Record("retry", (job,), reason, now))
                reported.append((job, result))
                log.debug(
                    "%s: %s waits (destination held): %s", name, job.info.sop_instance_uid, reason
                )
                continue
            if result.outcome is Outcome.RETRY:
                if policy.max_lost and lost >= policy.max_lost:
                    reason = (
                        f"association lost {lost} times while sending this object "
                        f"(max_lost {policy.max_lost}); last: {reason}"
                    )
                elif policy.max_attempts > 0 and attempts >= policy.max_attempts:
                    reason = f"gave up after {attempts} attempts: {reason}"
                else:
                    # at a stop, the objects not sent are due again at once
                    delay = (
                        0.0 if stopping and not result.lost else policy.delay(attempts, self._rng)
                    )
                    owed.append(_Record("retry", (job,), reason, now + delay, result.lost))
                    reported.append((job, result))
                    log.debug(
                        "%s: %s retry in %.1f s%s: %s",
                        name,
                        job.info.sop_instance_uid,
                        delay,
                        f" (association lost {lost} times on it)" if result.lost else "",
                        reason,
                    )
                    continue
            owed.append(_Record("fail", (job,), reason))
            reported.append((job, Result(Outcome.FAIL, result.status, reason, result.lost)))
            log.warning("%s: %s quarantined: %s", name, job.info.sop_instance_uid, reason)
        if done:
            owed.append(_Record("done", tuple(done), None))
        return reported

    def _record(self, name: str, owed: list[_Record]) -> None:
        """Apply the owed spool updates in order; what fails stays owed (and raises)."""
        while owed:
            record = owed[0]
            if record.kind in ("done", "skip"):
                # one commit for the batch; its files go on the unlinker's thread
                freed = self.spool.done(list(record.jobs), note=record.reason, unlink=False)
                unlinker = self._unlinker
                if unlinker is None:
                    self.spool.unlink(freed)
                else:
                    unlinker.put(freed)
                if record.kind == "done":
                    self._count(self.summary.delivered, name, len(record.jobs))
                    for job in record.jobs:
                        log.info(
                            "SOP Instance UID %s delivered to %s (object %d)",
                            job.info.sop_instance_uid,
                            name,
                            job.object_id,
                        )
            elif record.kind == "retry":
                [job] = record.jobs
                self.spool.retry(job, record.reason or "", record.next_attempt, lost=record.lost)
                self._count(self.summary.retried, name)
            else:
                [job] = record.jobs
                self.spool.fail(job, record.reason or "")
                self._count(self.summary.quarantined, name)
            owed.pop(0)

    def _report(self, name: str, results: list[Result]) -> None:
        """The outage lines of ``name`` (module docstring): one WARNING when its
        deliveries start failing, then one per :attr:`report_every` while they go on,
        one when it delivers again; nothing per object. A held destination's tries have
        lines of their own (:meth:`_update_hold`)."""
        if self._halt.is_set():  # a stop says nothing about the destination
            return
        failed = [r for r in results if r.outcome is Outcome.RETRY and not r.hold]
        outage = self._outages.get(name)
        now = time.monotonic()
        if not failed:
            if outage is not None and any(r.outcome is Outcome.DONE for r in results):
                del self._outages[name]
                log.warning(
                    "%s: delivering again, after %s of failures (%d tries failed)",
                    name,
                    _duration(time.time() - outage.since),
                    outage.tries,
                )
            return
        reason = failed[-1].reason
        if outage is None:
            self._outages[name] = _Outage(time.time(), now + self.report_every)
            self._log_waiting(name, "deliveries failing", reason)
            return
        outage.tries += 1
        outage.unreported += 1
        if now >= outage.next_line:
            outage.next_line = now + self.report_every
            tries, outage.unreported = outage.unreported, 0
            what = (
                f"still failing, for {_duration(time.time() - outage.since)} "
                f"({tries} tries failed since the last line)"
            )
            self._log_waiting(name, what, reason)

    def _log_waiting(self, name: str, what: str, reason: str) -> None:
        counts = self.spool.counts(name)
        due = self.spool.next_due(name)
        when = "none due" if due is None else f"in {max(0.0, due - time.time()):.1f} s"
        log.warning(
            "%s: %s: %s; %d objects waiting, next attempt %s",
            name,
            what,
            reason,
            counts["ready"] + counts["in_flight"],
            when,
        )


@dataclass
class _Outage:
    """A destination whose deliveries fail: since when (wall clock), the next summary
    line (monotonic), tries failed in all and since the last line."""

    since: float
    next_line: float
    tries: int = 1
    unreported: int = 0


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Unlinker:
    """Removes the files of delivered objects on a thread of its own, so that a worker
    goes back to sending right after its batch's one commit. Their rows already say
    removed: after a crash, :meth:`Spool.recover` removes whatever was left."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._queue: queue.SimpleQueue[list[Path] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="forward-unlink", daemon=True)
        self._thread.start()

    def put(self, files: list[Path]) -> None:
        if files:
            self._queue.put(files)

    def close(self) -> None:
        """Remove what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (files := self._queue.get()) is not None:
            try:
                self.spool.unlink(files)
            except OSError as exc:  # the next start's recovery removes them
                log.error("cannot remove delivered files (left to recovery): %s", exc)


@dataclass(frozen=True)
class _Held:
    """A worker's view of its destination's hold; ``reported``: its ERROR line is out."""

    reason: str
    since: float
    next_attempt: float
    reported: bool


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def warn_unserved(spool: Spool, served: Sequence[str]) -> list[str]:
    """Log a WARNING for each destination registered in ``spool`` that is not ``served``.

    Their objects wait for them (their files are kept) until a forwarder serves them or
    ``spool drop-destination`` removes them. Returns their names.
    """
    known = set(served)
    unserved = [name for name in spool.destinations() if name not in known]
    for name in unserved:
        waiting = sum(n for state, n in spool.counts(name).items() if state != "done")
        log.warning(
            "%s is registered in spool %s but not served by this process: its %d "
            "deliveries wait and their files are kept; 'acrnema-bridge spool "
            "drop-destination %s' removes it",
            name,
            spool.root,
            waiting,
            name,
        )
    return unserved


def _join(threads: list[threading.Thread], timeout: float) -> bool:
    """Join ``threads`` within ``timeout`` seconds in all; whether all ended."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)

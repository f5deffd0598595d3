"""The forward loop: from the spool to every destination, durably.

One thread per destination claims due deliveries from the spool, hands them to that
destination's :class:`~bridge.forward.scu.Sender` and records each result:

* DONE: the delivery is done (the file goes once every destination is done);
* RETRY: back to ``ready`` after an exponential backoff with jitter, capped
  (:class:`RetryPolicy`); after ``max_attempts`` (if set) it is quarantined instead;
* FAIL: quarantined with the reason. The other objects keep flowing: a poison object
  never blocks a queue.

Destinations are independent: each has its own thread, association and retry clock, so
one that is down never slows another.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bridge.errors import BridgeError
from bridge.forward.scu import Destination, Item, Sender
from bridge.forward.status import Outcome, Result
from bridge.spool.store import Job, Spool

__all__ = ["Forwarder", "RetryPolicy", "RunSummary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``base * 2**(n-1)``, capped, times 0.5 to 1.

    The default cap of 30 s means a destination that comes back is served within a
    minute. ``max_attempts`` 0 means retry for ever.
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int = 0

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


class Forwarder:
    """Delivers the spool's objects to its destinations until told to stop."""

    def __init__(
        self,
        spool: Spool,
        destinations: Sequence[Destination],
        *,
        policy: RetryPolicy | None = None,
        batch: int = 64,
        sender_factory: Callable[[Destination], Sender] = Sender,
        on_result: Callable[[str, Job, Result], None] | None = None,
    ) -> None:
        self.spool = spool
        self.destinations = list(destinations)
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.sender_factory = sender_factory
        self.on_result = on_result
        self.summary = RunSummary()
        self._lock = threading.Lock()
        self._rng = random.Random()

    def run(
        self,
        stop: threading.Event,
        *,
        until_empty: bool = False,
        timeout: float | None = None,
    ) -> RunSummary:
        """Forward until ``stop`` is set (or, with ``until_empty``, the queue is empty).

        ``timeout`` (seconds) ends the run early. Returns when every destination thread
        has finished its current batch.
        """
        self.spool.recover()
        self.spool.register(d.name for d in self.destinations)
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = [
            threading.Thread(
                target=self._serve,
                args=(destination, stop, until_empty, deadline),
                name=f"forward-{destination.name}",
            )
            for destination in self.destinations
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.summary

    def _count(self, table: dict[str, int], name: str, n: int = 1) -> None:
        with self._lock:
            table[name] = table.get(name, 0) + n

    def _serve(
        self,
        destination: Destination,
        stop: threading.Event,
        until_empty: bool,
        deadline: float | None,
    ) -> None:
        name = destination.name
        try:
            sender = self.sender_factory(destination)
        except BridgeError as exc:  # e.g. unusable TLS files: nothing can be sent there
            log.error("%s: cannot send: %s", name, exc)
            with self._lock:
                self.summary.errors[name] = str(exc)
            return
        try:
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    log.info("%s: timeout reached", name)
                    return
                jobs = self.spool.claim(name, now=time.time(), limit=self.batch)
                if not jobs:
                    if until_empty:
                        counts = self.spool.counts(name)
                        if counts["ready"] == 0 and counts["in_flight"] == 0:
                            return
                    sender.close_if_idle(time.monotonic())
                    due = self.spool.next_due(name)
                    wait = 0.5 if due is None else min(0.5, max(0.01, due - time.time()))
                    stop.wait(wait)
                    continue
                self._deliver(destination, sender, jobs)
        finally:
            sender.close()
            self.spool.close()

    def _deliver(self, destination: Destination, sender: Sender, jobs: list[Job]) -> None:
        name = destination.name
        skipped = [j for j in jobs if not destination.accepts(j.info.modality)]
        if skipped:
            wanted = sorted(destination.modalities or ())
            self.spool.done(skipped, note=f"not sent: modality filter {wanted}")
            jobs = [j for j in jobs if destination.accepts(j.info.modality)]
            if not jobs:
                return
        items = [
            Item(j.path, j.info.sop_class_uid, j.info.sop_instance_uid, j.info.transfer_syntax)
            for j in jobs
        ]
        try:
            results = sender.send(items)
        except Exception as exc:  # a sender bug must not strand the batch in_flight
            log.exception("%s: sender failed", name)
            results = [Result(Outcome.RETRY, None, f"sender error: {exc!r}")] * len(jobs)
        done = []
        now = time.time()
        for job, result in zip(jobs, results, strict=True):
            if self.on_result is not None:
                self.on_result(name, job, result)
            if result.outcome is Outcome.DONE:
                done.append(job)
                continue
            attempts = job.attempts + 1
            if result.outcome is Outcome.RETRY and (
                self.policy.max_attempts <= 0 or attempts < self.policy.max_attempts
            ):
                delay = self.policy.delay(attempts, self._rng)
                self.spool.retry(job, result.reason, now + delay)
                self._count(self.summary.retried, name)
                log.info(
                    "%s: %s retry in %.1f s: %s",
                    name,
                    job.info.sop_instance_uid,
                    delay,
                    result.reason,
                )
            else:
                reason = result.reason
                if result.outcome is Outcome.RETRY:
                    reason = f"gave up after {attempts} attempts: {reason}"
                self.spool.fail(job, reason)
                self._count(self.summary.quarantined, name)
                log.warning("%s: %s quarantined: %s", name, job.info.sop_instance_uid, reason)
        self.spool.done(done)
        self._count(self.summary.delivered, name, len(done))

"""The Prometheus metrics of a service (``/metrics``), through ``prometheus-client``.

Each service has its own :class:`~prometheus_client.CollectorRegistry` (never the
library's global one), so that several services in one process, as in the tests, do not
collide. Two kinds of metric:

* counted as things happen, by the link's store handler (:class:`LinkMetrics`, hooked
  into :class:`bridge.service.Bridge`): images received and refused, objects spooled, and
  the histogram of the time from an image's last word to its spool commit;
* read at scrape time from a :class:`~bridge.status.model.Snapshot`
  (:class:`SnapshotCollector`): deliveries per outcome, the queues, the oldest waiting
  object, the link's state and frames, the workers, the spool's free disk. These cost
  nothing between scrapes.

Every name starts with ``acrnema_bridge_``; the list with labels and meanings is in
docs/operations.md, "Status server, metrics and health".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.status.model import Snapshot

__all__ = [
    "COMMIT_BUCKETS",
    "OUTCOMES",
    "PREFIX",
    "QUEUE_STATES",
    "LinkMetrics",
    "SnapshotCollector",
    "new_registry",
    "render",
]

PREFIX = "acrnema_bridge"
OUTCOMES = ("done", "retry", "quarantined")
QUEUE_STATES = ("ready", "in_flight", "failed")
COMMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds from an image's last word to its spool commit (a 512x512 slice: ~10 ms)."""


def new_registry() -> CollectorRegistry:
    """A registry of one service, without the library's process and platform metrics."""
    return CollectorRegistry(auto_describe=True)


class LinkMetrics:
    """The counters of the link side, registered in ``registry``.

    ``refused`` takes the status name the scanner was answered with (``not_stored``,
    ``cannot_understand``, ``out_of_resources``...) as the ``reason`` label: a small,
    fixed set, the one the scanner's log shows too."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            f"{PREFIX}_images_received",
            "Store requests with an image received over the link.",
            registry=registry,
        )
        self.refused = Counter(
            f"{PREFIX}_images_refused",
            "Images answered with a failure status (the scanner keeps them), by the status.",
            ["reason"],
            registry=registry,
        )
        self.spooled = Counter(
            f"{PREFIX}_objects_spooled",
            "DICOM objects made from received images and committed to the spool.",
            registry=registry,
        )
        self.commit_seconds = Histogram(
            f"{PREFIX}_commit_seconds",
            "Seconds from an image's last word to the spool commit of its objects.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )

    def stored(self, objects: int, seconds: float) -> None:
        """An image received and stored as ``objects`` objects, ``seconds`` after its
        last word."""
        self.received.inc()
        self.spooled.inc(objects)
        self.commit_seconds.observe(seconds)

    def refused_with(self, reason: str) -> None:
        """An image received and refused with the status ``reason``."""
        self.received.inc()
        self.refused.labels(reason=reason).inc()


class SnapshotCollector(Collector):
    """The metrics read at scrape time: ``snapshot()`` and ``outcomes()`` are called once
    per scrape (on the scraping thread)."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        outcomes: Callable[[], Mapping[str, Mapping[str, int]]],
    ) -> None:
        self.snapshot = snapshot
        self.outcomes = outcomes

    def describe(self) -> list[Metric]:
        return []  # the names depend on whether there is a link: not described ahead

    def collect(self) -> Iterator[Metric]:
        return iter(families(self.snapshot(), self.outcomes()))


def families(snapshot: Snapshot, outcomes: Mapping[str, Mapping[str, int]]) -> list[Metric]:
    """The metric families of one snapshot (pure: the tests feed it made-up snapshots)."""
    deliveries = CounterMetricFamily(
        f"{PREFIX}_deliveries",
        "Deliveries recorded per destination and outcome (done, retry, quarantined).",
        labels=["destination", "outcome"],
    )
    for name, counts in sorted(outcomes.items()):
        for outcome in OUTCOMES:
            deliveries.add_metric([name, outcome], counts.get(outcome, 0))
    queue = GaugeMetricFamily(
        f"{PREFIX}_queue_objects",
        "Deliveries per destination and state (ready, in_flight, failed = quarantined).",
        labels=["destination", "state"],
    )
    oldest = GaugeMetricFamily(
        f"{PREFIX}_oldest_waiting_seconds",
        "Seconds the oldest object still ready or in flight has waited (0: none waiting).",
        labels=["destination"],
    )
    for name, q in sorted(snapshot.queues.items()):
        queue.add_metric([name, "ready"], q.ready)
        queue.add_metric([name, "in_flight"], q.in_flight)
        queue.add_metric([name, "failed"], q.failed)
        oldest.add_metric([name], q.oldest_waiting_s or 0.0)
    workers = GaugeMetricFamily(
        f"{PREFIX}_worker_up",
        "1 when the worker runs (link; forward-DESTINATION), else 0.",
        labels=["worker"],
    )
    for worker, up in sorted(snapshot.workers.items()):
        workers.add_metric([worker], 1.0 if up else 0.0)
    out: list[Metric] = [deliveries, queue, oldest, workers]
    if snapshot.spool_free_bytes is not None:
        free = GaugeMetricFamily(
            f"{PREFIX}_spool_free_bytes", "Bytes free on the spool's disk for the service."
        )
        free.add_metric([], snapshot.spool_free_bytes)
        out.append(free)
    if snapshot.link is not None:
        link_up = GaugeMetricFamily(
            f"{PREFIX}_link_up", "1 when the link is up (the peer READY), else 0."
        )
        link_up.add_metric([], 1.0 if snapshot.link.up else 0.0)
        frames = CounterMetricFamily(
            f"{PREFIX}_link_frames",
            "Link frames by kind: sent, received (intact), damaged, retransmitted.",
            labels=["kind"],
        )
        for kind, count in snapshot.link.frames.items():
            frames.add_metric([kind], count)
        out += [link_up, frames]
    return out


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (version 0.0.4)."""
    return generate_latest(registry)

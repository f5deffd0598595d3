"""The status server's model: what a running service is, and whether it is healthy.

Pure: :class:`Snapshot` is what the probe (:mod:`bridge.status.probe`) read from the live
parts at one moment; :func:`evaluate` turns it into the ``/healthz`` answer with the
limits of ``[status]``; :func:`listen_address` and :func:`exposure_problem` read and judge
the ``listen`` setting. No socket, thread or clock here: times come in as numbers.

The checks of ``/healthz`` (docs/operations.md, "Status server, metrics and health"):

* ``workers``: every worker runs (the link in ``run``, one forwarder per destination);
* ``spool``: the spool can be written (its folder, its database, room above the reserve);
* ``queue``: no object has waited longer than ``max_wait`` for any destination;
* ``link`` (``run``): the link has not been down longer than ``max_link_down``.

A check whose limit is 0, or that does not apply (no link in ``forward``), is ``off``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RATE_KINDS",
    "RATE_WINDOW_S",
    "Check",
    "FrameHistory",
    "FrameWindow",
    "Health",
    "Limits",
    "LinkFigures",
    "QueueFigures",
    "Snapshot",
    "evaluate",
    "exposure_problem",
    "is_loopback",
    "listen_address",
]

OK, FAILING, OFF = "ok", "failing", "off"
RATE_WINDOW_S = 60.0
"""The window of the page's damaged and retransmitted frames: the last minute."""
RATE_KINDS = ("damaged", "retransmitted")


@dataclass(frozen=True)
class QueueFigures:
    """One destination's queue: deliveries per state and the oldest one waiting."""

    ready: int = 0
    in_flight: int = 0
    failed: int = 0
    oldest_waiting_s: float | None = None
    """Seconds since the oldest object still ready or in flight was spooled; None: none."""


@dataclass(frozen=True)
class LinkFigures:
    """The link of ``run``: up (the peer READY), for how long, and its frame counts."""

    up: bool
    since_s: float
    """Seconds since the link last went up or down (since the start if it never did)."""
    frames: Mapping[str, int] = field(default_factory=dict)
    """``sent``, ``received``, ``damaged``, ``retransmitted``: totals since the start."""
    last_word_s: float | None = None
    """Seconds since the last words arrived; None: none yet."""


@dataclass(frozen=True)
class FrameWindow:
    """Damaged and retransmitted frames counted over the ``seconds`` that end now.

    Shorter than :data:`RATE_WINDOW_S` only in the service's first minute: the page then
    says the counts over the time there was (``300 in the last 12 s``), not a rate per
    minute drawn from a few seconds (300 in 1 s is not 18,000 a minute)."""

    seconds: float
    counts: Mapping[str, int]

    @property
    def full(self) -> bool:
        """Whether the window spans a minute at least (a rate per minute means something)."""
        return self.seconds >= RATE_WINDOW_S

    def per_minute(self, kind: str) -> float:
        """``kind``'s frames a minute over the window."""
        return self.counts.get(kind, 0) * 60.0 / max(self.seconds, 1e-9)


class FrameHistory:
    """The link's frame totals read at some moments (the page's and ``/metrics``' reads),
    enough of them to count the frames of the last minute.

    Starts with the totals at the service's start (``start``, ``counts``); keeps the
    newest read at least :data:`RATE_WINDOW_S` old and every read after it, so the window
    is a minute and the time to the next read (the page reloads every few seconds), or
    less in the first minute. Reads within ``merge_s`` of the one before replace it, which
    bounds the history however often it is read. Pure: times come in as numbers."""

    def __init__(self, start: float, counts: Mapping[str, int], *, merge_s: float = 1.0) -> None:
        self._reads: list[tuple[float, dict[str, int]]] = [(start, dict(counts))]
        self.merge_s = merge_s

    def add(self, now: float, counts: Mapping[str, int]) -> None:
        """Record the totals read at ``now`` (seconds, monotonic)."""
        reads = self._reads
        if len(reads) > 1 and now - reads[-2][0] < self.merge_s:
            reads[-1] = (now, dict(counts))
        else:
            reads.append((now, dict(counts)))
        while len(reads) > 2 and now - reads[1][0] >= RATE_WINDOW_S:
            del reads[0]  # the reads before the newest one a minute old

    def window(self) -> FrameWindow:
        """Damaged and retransmitted frames from the oldest read kept to the newest."""
        (then, before), (now, latest) = self._reads[0], self._reads[-1]
        counts = {k: max(0, latest.get(k, 0) - before.get(k, 0)) for k in RATE_KINDS}
        return FrameWindow(max(0.0, now - then), counts)


@dataclass(frozen=True)
class Snapshot:
    """The service at one moment, as the probe read it."""

    workers: Mapping[str, bool]
    """Each worker (``link``, ``forward-AE@HOST:PORT``) and whether it runs."""
    queues: Mapping[str, QueueFigures]
    """Every registered destination's queue."""
    spool_free_bytes: int | None = None
    spool_problem: str | None = None
    """Why the spool cannot be written; None: it can (or it was not checked)."""
    link: LinkFigures | None = None
    """None: no link (``forward``)."""


@dataclass(frozen=True)
class Limits:
    """The thresholds of ``[status]``, in seconds; 0 turns a check off."""

    max_wait: float = 3600.0
    max_link_down: float = 0.0


@dataclass(frozen=True)
class Check:
    """One check of ``/healthz``: its name, ``ok``, ``failing`` or ``off``, and why."""

    name: str
    state: str
    detail: str


@dataclass(frozen=True)
class Health:
    """The answer of ``/healthz``: healthy when no check is failing."""

    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(check.state != FAILING for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "checks": {c.name: {"state": c.state, "detail": c.detail} for c in self.checks},
        }


def evaluate(snapshot: Snapshot, limits: Limits) -> Health:
    """The checks of ``snapshot`` against ``limits`` (see the module's docstring)."""
    return Health(
        (
            _workers(snapshot),
            _spool(snapshot),
            _queue(snapshot, limits.max_wait),
            _link(snapshot.link, limits.max_link_down),
        )
    )


def _workers(snapshot: Snapshot) -> Check:
    stopped = sorted(name for name, up in snapshot.workers.items() if not up)
    if stopped:
        return Check("workers", FAILING, f"not running: {', '.join(stopped)}")
    if not snapshot.workers:
        return Check("workers", OK, "no worker (no link, no destination)")
    return Check("workers", OK, f"running: {', '.join(sorted(snapshot.workers))}")


def _spool(snapshot: Snapshot) -> Check:
    if snapshot.spool_problem is not None:
        return Check("spool", FAILING, f"cannot be written: {snapshot.spool_problem}")
    free = snapshot.spool_free_bytes
    return Check("spool", OK, "writable" + ("" if free is None else f", {free} bytes free"))


def _queue(snapshot: Snapshot, max_wait: float) -> Check:
    waiting = {
        name: q.oldest_waiting_s
        for name, q in snapshot.queues.items()
        if q.oldest_waiting_s is not None
    }
    if max_wait <= 0:
        return Check("queue", OFF, "max_wait is 0: not checked")
    late = sorted(name for name, age in waiting.items() if age > max_wait)
    if late:
        said = ", ".join(f"{name} {waiting[name]:.0f} s" for name in late)
        return Check("queue", FAILING, f"waiting longer than max_wait {max_wait:g} s: {said}")
    if not waiting:
        return Check("queue", OK, "nothing waiting")
    oldest = max(age for age in waiting.values() if age is not None)
    return Check("queue", OK, f"oldest waiting {oldest:.0f} s (max_wait {max_wait:g} s)")


def _link(link: LinkFigures | None, max_link_down: float) -> Check:
    if link is None:
        return Check("link", OFF, "no link (forward)")
    state = f"up for {link.since_s:.0f} s" if link.up else f"down for {link.since_s:.0f} s"
    if max_link_down <= 0:
        return Check("link", OFF, f"{state}; max_link_down is 0: not checked")
    if not link.up and link.since_s > max_link_down:
        return Check("link", FAILING, f"{state}, longer than max_link_down {max_link_down:g} s")
    return Check("link", OK, f"{state} (max_link_down {max_link_down:g} s)")


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; ValueError if not."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:8104")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:8104")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be 0 to 65535")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r}: give a host name or address before the port")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_problem(host: str, *, credentials: bool, tls: bool, insecure: bool) -> str | None:
    """Why a status server on ``host`` must not start; None: it may.

    Thumbnails and names on the page are patient data: on loopback anything goes; on any
    other address the server needs credentials, and TLS unless ``insecure`` says plain
    HTTP on purpose."""
    if is_loopback(host):
        return None
    if not credentials:
        return (
            f"status server on {host} (not loopback) needs credentials: "
            "[status] token_file, or user and password_file"
        )
    if not tls and not insecure:
        return (
            f"status server on {host} (not loopback) needs TLS: [status] cert_file and "
            "key_file, or insecure = true for plain HTTP"
        )
    return None

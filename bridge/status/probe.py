"""Read a :class:`~bridge.status.model.Snapshot` from the parts of a running service.

The I/O edge of the status model: the spool's queue figures (ranges of its claim index,
:meth:`bridge.spool.store.Spool.queue_report`), its free disk and, for ``/healthz``,
whether it can be written; the forwarder's workers and outcomes; the link endpoint's
state and frame counts. Called on the status server's query thread, which has its own
database connection (:meth:`close` ends it on that thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.status.model import LinkFigures, QueueFigures, Snapshot

if TYPE_CHECKING:
    from bridge.forward.runner import Forwarder
    from bridge.link.endpoint import Endpoint
    from bridge.spool.store import Spool

__all__ = ["Probe"]

log = logging.getLogger(__name__)


class Probe:
    """What a status server reads: ``spool`` always; ``forwarder`` when there are
    destinations; ``endpoint`` and ``link_serving`` (whether the link's loop runs) in
    ``run``."""

    def __init__(
        self,
        spool: Spool,
        *,
        forwarder: Forwarder | None = None,
        endpoint: Endpoint | None = None,
        link_serving: Callable[[], bool] | None = None,
    ) -> None:
        self.spool = spool
        self.forwarder = forwarder
        self.endpoint = endpoint
        self.link_serving = link_serving

    def snapshot(self, *, check_spool: bool = False) -> Snapshot:
        """The service now; ``check_spool``: also try writing to the spool (``/healthz``)."""
        workers: dict[str, bool] = {}
        if self.link_serving is not None:
            workers["link"] = self.link_serving()
        if self.forwarder is not None:
            workers.update(self.forwarder.workers_alive())
        queues = {
            name: QueueFigures(
                ready=int(row["ready"] or 0),
                in_flight=int(row["in_flight"] or 0),
                failed=int(row["failed"] or 0),
                oldest_waiting_s=row["oldest_waiting_s"],
            )
            for name, row in self.spool.queue_report().items()
        }
        try:
            free: int | None = self.spool.free_bytes()
        except OSError as exc:
            log.debug("spool free space unknown: %s", exc)
            free = None
        problem = self.spool.writable() if check_spool else None
        return Snapshot(workers, queues, free, problem, self._link())

    def outcomes(self) -> dict[str, dict[str, int]]:
        """Deliveries recorded per destination and outcome (none without a forwarder)."""
        return {} if self.forwarder is None else self.forwarder.outcomes()

    def _link(self) -> LinkFigures | None:
        endpoint = self.endpoint
        if endpoint is None:
            return None
        now = time.monotonic()
        last = endpoint.last_words
        return LinkFigures(
            up=endpoint.up,
            since_s=max(0.0, now - endpoint.up_changed),
            frames=endpoint.frame_counts(),
            last_word_s=None if not last else max(0.0, now - last),
        )

    def close(self) -> None:
        """End the calling thread's spool connection (the query thread's, at the stop)."""
        self.spool.close()

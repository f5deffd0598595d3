"""Read a :class:`~bridge.status.model.Snapshot` from the parts of a running service.

The I/O edge of the status model: the spool's queue figures (ranges of its claim index,
:meth:`bridge.spool.store.Spool.queue_report`), its free disk and, for ``/healthz``,
whether it can be written; the forwarder's workers and outcomes; the link endpoint's
state and frame counts. Called on the status server's query thread, which has its own
database connection (:meth:`close` ends it on that thread).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.status.model import LinkFigures, QueueFigures, Snapshot
from bridge.status.page import (
    DestinationRow,
    PageData,
    QuarantinedObject,
    RecentImage,
    Thumbnails,
)

if TYPE_CHECKING:
    from bridge.forward.runner import Forwarder
    from bridge.link.endpoint import Endpoint
    from bridge.spool.store import Spool

__all__ = ["RECENT_IMAGES", "Probe", "render_thumbnail"]

log = logging.getLogger(__name__)

RECENT_IMAGES = 12
"""How many recent images (and quarantined deliveries) the status page lists."""
_RATE_WINDOW_S = 60.0
_RATE_KINDS = ("damaged", "retransmitted")


def render_thumbnail(path: Path) -> bytes | None:
    """The thumbnail (PNG) of the DICOM file ``path``; None if it is gone or has no
    pixels that render (logged at DEBUG: the page says so)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from bridge.dicom.render import thumbnail_png
    from bridge.errors import BridgeError

    try:
        return thumbnail_png(dcmread(path))
    except FileNotFoundError:
        return None
    except (OSError, BridgeError, InvalidDicomError) as exc:
        log.debug("no thumbnail of %s: %s", path, exc)
        return None


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
        self.thumbnails = Thumbnails(render_thumbnail)
        # (monotonic time, frame counts) of the latest reads, for the rates per minute
        self._frames: collections.deque[tuple[float, dict[str, int]]] = collections.deque(
            maxlen=256
        )

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
        frames = endpoint.frame_counts()
        self._frames.append((now, frames))
        return LinkFigures(
            up=endpoint.up,
            since_s=max(0.0, now - endpoint.up_changed),
            frames=frames,
            last_word_s=None if not last else max(0.0, now - last),
        )

    def per_minute(self) -> dict[str, float]:
        """Damaged and retransmitted frames per minute: the change since the newest read
        at least a minute old (the oldest read, within the first minute of reads)."""
        if len(self._frames) < 2:
            return dict.fromkeys(_RATE_KINDS, 0.0)
        now, latest = self._frames[-1]
        while len(self._frames) > 2 and now - self._frames[1][0] >= _RATE_WINDOW_S:
            self._frames.popleft()  # the reads before the newest one a minute old
        then, before = self._frames[0]
        minutes = max(now - then, 1.0) / 60.0
        return {k: max(0, latest.get(k, 0) - before.get(k, 0)) / minutes for k in _RATE_KINDS}

    def page(self, notice: str = "") -> PageData:
        """What the status page shows now (the thumbnails it offers become askable)."""
        snapshot = self.snapshot()
        outcomes = self.spool.last_outcomes()
        rows = []
        for name, queue in snapshot.queues.items():
            o = outcomes.get(name, {})
            hold = o.get("held")
            rows.append(
                DestinationRow(
                    name,
                    queue,
                    last_success=o.get("last_success"),
                    last_error_time=o.get("last_error_time"),
                    last_error=o.get("last_error"),
                    held=None if hold is None else hold.reason,
                )
            )
        recent = []
        for r in self.spool.recent_objects(RECENT_IMAGES):
            if r["file"] is not None:
                self.thumbnails.offer(r["id"], self.spool.path_of(r["file"]))
            recent.append(
                RecentImage(
                    r["id"],
                    r["received"],
                    r["modality"],
                    r["sop_instance_uid"],
                    r["size"],
                    stored=r["file"] is not None,
                )
            )
        quarantined = [
            QuarantinedObject(
                q["object_id"],
                q["destination"],
                q["last_error"] or "",
                q["updated"],
                q["attempts"],
                q["sop_instance_uid"],
                q["modality"],
                stored=q["file"] is not None,
            )
            for q in self.spool.quarantined(RECENT_IMAGES)
        ]
        return PageData(
            now=time.time(),
            snapshot=snapshot,
            destinations=rows,
            recent=recent,
            quarantined=quarantined,
            peer=self._peer(),
            per_minute=self.per_minute() if self.endpoint is not None else {},
            notice=notice,
        )

    def _peer(self) -> str:
        endpoint = self.endpoint
        if endpoint is None:
            return ""
        url = endpoint.port.url
        calling = endpoint.stack.session.calling.strip()
        said = f"{url}, calling address {calling}" if calling else url
        return said if endpoint.up else f"{said} (no peer READY)"

    def requeue(self, object_id: int, destination: str) -> bool:
        """Put one quarantined delivery back in the queue (the page's action)."""
        done = self.spool.requeue(object_id, destination)
        if done:
            log.info("object %d re-queued for %s (status page)", object_id, destination)
        return done

    def close(self) -> None:
        """End the calling thread's spool connection (the query thread's, at the stop)."""
        self.spool.close()

"""The bridge service: link in, DICOM out, nothing lost (``acrnema-bridge run``).

    port -> Endpoint (link stack) -> store request -> convert -> spool commit -> answer
                                                          spool -> Forwarder -> PACS

The scanner's store request is answered only after every DICOM object made from its
image is durable in the spool (:meth:`bridge.spool.store.Spool.put` returns after the
file, its folder and the database row are on disk). Conversion happens before that
answer, so an image that cannot be made into valid DICOM, or that the spool cannot
take, is answered with a failure status and the scanner keeps it:

* image data that does not match its header (Pixel Data missing or shorter than the
  image), or a conversion that would change the pixels (pixel data longer than the
  image, an unusual Bits Allocated...) -> ``not_stored`` (A900H) with the reason; with
  ``accept_repairs`` (``run --accept-repairs``) the latter is stored repaired instead,
  and each repair is logged at WARNING with the SOP Instance UID;
* any other conversion failure -> ``cannot_understand`` (C000H) with the reason;
* the spool refuses (disk nearly full, read-only) -> ``out_of_resources`` (A700H).

This is the first of the two designs ARCHITECTURE.md weighs (the other spools the raw
message and converts later, and could then no longer tell the scanner); the measured
cost is in docs/benchmarks.md ("Link"). Forwarding runs in its own threads (one per
destination, :class:`bridge.forward.runner.Forwarder`) from the same spool, so a PACS
that is down never slows the link.

No patient data is logged above DEBUG: INFO lines name the message ID, the object count
and sizes and times, and the SOP Instance UID of each object made (on its "converted"
and "spooled" lines; the forwarder's "delivered to" line names it too, so that ``grep
UID`` follows an image from the link to each destination); a repair's line names the
SOP Instance UID and the repair.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.acrnema.commands import Message
from bridge.acrnema.elements import ByteOrder
from bridge.dicom.core import ConversionResult, ConvertOptions, convert
from bridge.errors import BridgeError, ConversionError, ImageDataError
from bridge.forward.runner import Forwarder, RetryPolicy
from bridge.forward.scu import Destination
from bridge.link.endpoint import Endpoint
from bridge.link.responder import Answer, Responder
from bridge.ports.base import WordPort
from bridge.profile import REFERENCE, LinkStatus, Profile
from bridge.spool.objects import dataset_bytes, object_info
from bridge.spool.store import Spool, SpoolError

if TYPE_CHECKING:
    from bridge.status.metrics import LinkMetrics

__all__ = ["Bridge", "BridgeStats"]

log = logging.getLogger(__name__)


COMMIT_TIMES_KEPT = 4096
"""How many of the latest commit times :class:`BridgeStats` keeps."""


@dataclass
class BridgeStats:
    """What the service did with store requests."""

    images: int = 0
    objects: int = 0
    failed: int = 0
    bytes_in: int = 0
    commit_seconds: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=COMMIT_TIMES_KEPT)
    )
    """Seconds from each image's last word to its spool commit, the latest
    :data:`COMMIT_TIMES_KEPT` (bounded: a service runs for years; the metrics' histogram
    counts them all)."""


class Bridge:
    """The service: a :class:`Responder` whose store handler converts and spools.

    ``accept_repairs`` decides, whatever ``options`` says, whether an image whose
    conversion would change its pixels is stored (repaired, each repair logged at
    WARNING) or refused with ``not_stored``: what the scanner is told is the service's
    policy, not a conversion default.
    """

    def __init__(
        self,
        port: WordPort,
        spool: Spool,
        destinations: Sequence[Destination] = (),
        *,
        profile: Profile = REFERENCE,
        options: ConvertOptions | None = None,
        ae_title: str = "ACRNEMA_BRIDGE",
        policy: RetryPolicy | None = None,
        accept_repairs: bool = False,
        accepted_peers: Sequence[str] = (),
        metrics: LinkMetrics | None = None,
    ) -> None:
        self.spool = spool
        self.destinations = list(destinations)
        self.profile = profile
        order = profile.physical.binary_byte_order
        options = options or ConvertOptions(byte_order=ByteOrder(order))
        self.options = dataclasses.replace(options, accept_repairs=accept_repairs)
        self.endpoint = Endpoint(port, profile)
        self.metrics = metrics
        """The status server's counters (``--status-listen``); None: nothing counted."""
        self.serving = threading.Event()
        """Set while the link is served (:meth:`run`): the status server's ``link`` worker."""
        self.responder = Responder(
            self.endpoint,
            self._store if metrics is None else self._counted_store,
            ae_title=ae_title,
            accepted=accepted_peers,
        )
        self.forwarder = Forwarder(spool, self.destinations, policy=policy)
        self.stats = BridgeStats()
        self.failure: str | None = None
        """Why the service stopped on its own (forwarding failed), or None."""
        self._lock = threading.Lock()
        self._link_turned: float | None = None  # when the link loop last went round
        self._forward_thread: threading.Thread | None = None

    def _counted_store(self, message: Message) -> Answer:
        """:meth:`_store`, counted in :attr:`metrics`: stored (objects, seconds from the
        last word to the commit) or refused (the status answered)."""
        assert self.metrics is not None
        images, objects = self.stats.images, self.stats.objects
        answer = self._store(message)
        if self.stats.images > images:
            self.metrics.stored(self.stats.objects - objects, self.stats.commit_seconds[-1])
        else:
            self.metrics.refused_with(str(answer.status))
        return answer

    def _store(self, message: Message) -> Answer:
        arrived = time.monotonic()
        number = message.command.message_id
        source = f"link message {number} from {message.command.initiator or '?'}"
        self.stats.bytes_in += len(message.data)
        try:
            result = convert(message.data, source=source, options=self.options)
            for ds in result.datasets:
                log.info(
                    "%s received (%d bytes), converted: %s SOP Instance UID %s",
                    source,
                    len(message.data),
                    ds.get("Modality", "?"),
                    ds.SOPInstanceUID,
                )
            ids = []
            for ds in result.datasets:
                ids.append(self.spool.put(dataset_bytes(ds), object_info(ds, source)))
                log.info(
                    "message %d: SOP Instance UID %s spooled (object %d)",
                    number,
                    ds.SOPInstanceUID,
                    ids[-1],
                )
        except ImageDataError as exc:
            self.stats.failed += 1
            hint = " (run --accept-repairs stores it repaired)" if exc.repairs else ""
            log.warning("message %d not stored: %s%s", number, exc.reason, hint)
            # the Error Comment keeps 64 characters: the reason's first clause says what
            return Answer(LinkStatus.NOT_STORED, exc.reason.split(";")[0])
        except ConversionError as exc:
            self.stats.failed += 1
            log.warning("message %d not stored: cannot convert: %s", number, exc.reason)
            return Answer(LinkStatus.CANNOT_UNDERSTAND, f"cannot convert: {exc.reason}")
        except SpoolError as exc:
            self.stats.failed += 1
            log.error("message %d not stored: spool: %s", number, exc)
            return Answer(LinkStatus.OUT_OF_RESOURCES, f"spool: {exc}")
        except BridgeError as exc:
            self.stats.failed += 1
            log.error("message %d not stored: %s", number, exc)
            return Answer(LinkStatus.CANNOT_UNDERSTAND, str(exc))
        except MemoryError:
            # an input that needs more memory than the machine has: refuse this one image,
            # keep serving the others (the scanner keeps the image)
            self.stats.failed += 1
            log.error("message %d not stored: out of memory while converting it", number)
            return Answer(LinkStatus.OUT_OF_RESOURCES, "not enough memory to convert the image")
        except Exception as exc:  # a bug must cost one image, never the service
            self.stats.failed += 1
            log.exception("message %d not stored: internal error", number)
            return Answer(
                LinkStatus.CANNOT_UNDERSTAND, f"internal error: {type(exc).__name__}: {exc}"
            )
        took = time.monotonic() - arrived
        with self._lock:
            self.stats.images += 1
            self.stats.objects += len(ids)
            self.stats.commit_seconds.append(took)
        log.info(
            "message %d stored: %d object(s), %d bytes, spooled %.1f ms after its last word",
            number,
            len(ids),
            len(message.data),
            took * 1000,
        )
        _log_repairs(number, result)
        for warning in result.warnings:
            log.debug("message %d: %s", number, warning)
        return Answer(LinkStatus.SUCCESS)

    def run(self, stop: threading.Event, *, ready: Callable[[], None] | None = None) -> None:
        """Serve the link and forward until ``stop`` is set; returns when both ended.

        Forwarding is part of the promise made to the scanner. If it ends on its own (its
        thread failed, or gave up), the service stops taking images: it sets ``stop``
        itself, finishes as on a stop request, and :attr:`failure` says why, so
        ``acrnema-bridge run`` exits non-zero and its supervisor restarts it.

        ``ready`` is called once the spool is recovered and the forwarder started, just
        before the link is served (the port is open already): ``run`` tells systemd then.
        """
        self.failure = None
        self._link_turned = None
        self.spool.recover()
        forward_stop = threading.Event()
        forwarder = None
        if self.destinations:
            forwarder = threading.Thread(
                target=self._forward, args=(forward_stop, stop), name="forwarder"
            )
            forwarder.start()
        self.serving.set()
        self._forward_thread = forwarder
        try:
            if ready is not None:
                ready()
            # the link loop calls `until` once a turn (at least every 50 ms when idle): its
            # heartbeat for problem()
            self.responder.serve(stop, until=self._turn)
        finally:
            self.serving.clear()
            forward_stop.set()
            if forwarder is not None:
                forwarder.join()
            self._forward_thread = self._link_turned = None  # ended on purpose: no problem

    def _turn(self) -> bool:
        self._link_turned = time.monotonic()
        return False

    def problem(self, *, stale_after: float = 60.0) -> str | None:
        """Why the service is not doing its job now, or None when it is (the watchdog's
        check, :class:`bridge.sdnotify.Watchdog`): forwarding failed or its thread ended,
        or the link loop has not gone round for ``stale_after`` seconds (stuck in a store:
        a conversion, a disk or the spool's database that does not answer). Before the
        link is served (recovery) there is nothing to say."""
        if self.failure is not None:
            return self.failure
        if self.forwarder.failed.is_set():
            return (
                f"forwarding to {self.forwarder.fatal_destination} failed: {self.forwarder.fatal}"
            )
        forwarder = self._forward_thread
        if forwarder is not None and not forwarder.is_alive():
            return "the forwarder thread has ended"
        turned = self._link_turned
        if turned is not None:
            idle = time.monotonic() - turned
            if idle > stale_after:
                return f"the link loop has not gone round for {idle:.0f} s"
        return None

    def _forward(self, forward_stop: threading.Event, link_stop: threading.Event) -> None:
        """The forwarder thread: a failure or an early end stops the link too."""
        try:
            self.forwarder.run(forward_stop)
        except BaseException as exc:
            self.failure = f"forwarding failed: {type(exc).__name__}: {exc}"
            log.critical("%s; no more images are taken", self.failure, exc_info=True)
        else:
            if not forward_stop.is_set():
                errors = "; ".join(f"{k}: {v}" for k, v in self.forwarder.summary.errors.items())
                self.failure = "forwarding ended on its own" + (f" ({errors})" if errors else "")
                log.critical("%s; no more images are taken", self.failure)
        if self.failure is not None:
            link_stop.set()


def _log_repairs(number: int, result: ConversionResult) -> None:
    """One WARNING line per repair of a stored image, naming its SOP Instance UID."""
    if not result.repairs:
        return
    uids = [str(ds.SOPInstanceUID) for ds in result.datasets]
    where = uids[0] if len(uids) == 1 else f"{uids[0]} (and {len(uids) - 1} more planes)"
    for repair in result.repairs:
        log.warning(
            "message %d: SOP Instance UID %s: repair accepted (%s changed): %s",
            number,
            where,
            "pixels" if repair.changes_pixels else "header",
            repair.reason,
        )

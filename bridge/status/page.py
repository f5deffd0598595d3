"""The status page (``/``): the service at a glance, as one server-rendered HTML page.

Pure: :class:`PageData` is what the probe read (:meth:`bridge.status.probe.Probe.page`);
:func:`render_page` turns it into HTML. Every value that comes from outside (destination
names, error texts, UIDs, modalities, the peer's address) goes through
:func:`html.escape`, attributes included, so a hostile name or reason shows as text and
never as markup. No template engine: one page of a dozen tables does not need one, and
f-strings keep the escaping visible at each value.

:class:`Thumbnails` is the small LRU cache of the recent images' thumbnails (PNG bytes,
rendered lazily from the spooled file by :func:`bridge.dicom.render.thumbnail_png`), and
:func:`placeholder_png` the picture of an object that has none.
"""

from __future__ import annotations

import collections
import functools
import html
import io
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.status.model import QueueFigures, Snapshot

__all__ = [
    "ACTION_HEADER",
    "REFRESH_S",
    "DestinationRow",
    "PageData",
    "QuarantinedObject",
    "RecentImage",
    "Thumbnails",
    "placeholder_png",
    "render_page",
]

REFRESH_S = 5
"""Seconds between the page's own reloads (``<meta http-equiv="refresh">``)."""
ACTION_HEADER = "X-Acrnema-Bridge-Action"
"""A header that lets a script (curl) post an action without a browser's ``Origin``."""


@dataclass(frozen=True)
class RecentImage:
    """One object spooled lately; ``stored``: its file is still in the spool."""

    object_id: int
    received: float
    modality: str
    sop_instance_uid: str
    size: int
    stored: bool


@dataclass(frozen=True)
class QuarantinedObject:
    """One quarantined delivery; ``stored``: its file is still there (it can be re-queued)."""

    object_id: int
    destination: str
    reason: str
    since: float
    attempts: int
    sop_instance_uid: str
    modality: str
    stored: bool


@dataclass(frozen=True)
class DestinationRow:
    """One destination: its queue and its latest outcomes (times: seconds since the epoch)."""

    name: str
    queue: QueueFigures
    last_success: float | None = None
    last_error_time: float | None = None
    last_error: str | None = None
    held: str | None = None
    """Why the destination is held (a permanent failure); None: not held."""


@dataclass(frozen=True)
class PageData:
    """Everything the page shows, read at one moment ``now`` (seconds since the epoch)."""

    now: float
    snapshot: Snapshot
    destinations: Sequence[DestinationRow] = ()
    recent: Sequence[RecentImage] = ()
    quarantined: Sequence[QuarantinedObject] = ()
    peer: str = ""
    """The link's port and the calling address of its connection, if any."""
    per_minute: Mapping[str, float] = field(default_factory=dict)
    """``damaged`` and ``retransmitted`` frames per minute, over the last minute."""
    notice: str = ""
    """A line above the tables (the outcome of an action)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    return f"{stamp} ({_ago(max(0.0, now - t))} ago)"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def _row(*cells: str, head: bool = False) -> str:
    tag = "th" if head else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _link(data: PageData) -> str:
    link = data.snapshot.link
    if link is None:
        return "<p>No link: this is <code>forward</code>.</p>"
    state = "up" if link.up else "down"
    since = _ago(link.since_s)
    last_word = "never" if link.last_word_s is None else f"{_ago(link.last_word_s)} ago"
    rates = ", ".join(
        f"{kind} {data.per_minute.get(kind, 0.0):.1f}/min" for kind in ("damaged", "retransmitted")
    )
    frames = ", ".join(f"{_e(k)} {_e(v)}" for k, v in link.frames.items())
    return (
        "<table>"
        + _row("state", f'<span class="{state}" id="link-state">{state}</span> for {since}')
        + _row("peer", _e(data.peer or "none"))
        + _row("last word", last_word)
        + _row("frames per minute", rates)
        + _row("frames since the start", frames or "none")
        + "</table>"
    )


def _destinations(data: PageData) -> str:
    if not data.destinations:
        return "<p>No destination.</p>"
    head = _row(
        "destination",
        "ready",
        "in flight",
        "failed",
        "oldest waiting",
        "last success",
        "last error",
        head=True,
    )
    rows = []
    for d in data.destinations:
        q = d.queue
        oldest = "none" if q.oldest_waiting_s is None else _ago(q.oldest_waiting_s)
        error = "none"
        if d.last_error is not None:
            error = f"{_when(d.last_error_time, data.now)}: {_e(d.last_error)}"
        name = _e(d.name) + (f'<br><span class="down">held: {_e(d.held)}</span>' if d.held else "")
        rows.append(
            f'<tr class="destination"><td>{name}</td><td class="ready">{q.ready}</td>'
            f'<td class="in-flight">{q.in_flight}</td><td class="failed">{q.failed}</td>'
            f"<td>{oldest}</td><td>{_when(d.last_success, data.now)}</td>"
            f'<td class="reason">{error}</td></tr>'
        )
    return f'<table id="destinations">{head}{"".join(rows)}</table>'


def _recent(data: PageData) -> str:
    if not data.recent:
        return "<p>No image yet.</p>"
    head = _row("received", "modality", "SOP Instance UID", "size", "thumbnail", head=True)
    rows = []
    for r in data.recent:
        if r.stored:
            thumb = (
                f'<img class="thumbnail" src="/thumbnail/{r.object_id}.png" '
                f'alt="thumbnail of object {r.object_id}" loading="lazy">'
            )
        else:
            thumb = '<span class="muted">file removed (delivered)</span>'
        rows.append(
            f'<tr class="image"><td>{_when(r.received, data.now)}</td><td>{_e(r.modality)}</td>'
            f"<td><code>{_e(r.sop_instance_uid)}</code></td><td>{_size(r.size)}</td>"
            f"<td>{thumb}</td></tr>"
        )
    return f'<table id="recent">{head}{"".join(rows)}</table>'


def _quarantine(data: PageData) -> str:
    if not data.quarantined:
        return "<p>Nothing quarantined.</p>"
    head = _row("since", "destination", "SOP Instance UID", "attempts", "reason", "", head=True)
    rows = []
    for q in data.quarantined:
        if q.stored:
            action = (
                '<form method="post" action="/requeue">'
                f'<input type="hidden" name="object_id" value="{q.object_id}">'
                f'<input type="hidden" name="destination" value="{_e(q.destination)}">'
                '<button type="submit">re-queue</button></form>'
            )
        else:
            action = '<span class="muted">file purged</span>'
        rows.append(
            f'<tr class="quarantined"><td>{_when(q.since, data.now)}</td>'
            f"<td>{_e(q.destination)}</td><td><code>{_e(q.sop_instance_uid)}</code></td>"
            f'<td>{q.attempts}</td><td class="reason">{_e(q.reason)}</td><td>{action}</td></tr>'
        )
    return f'<table id="quarantine">{head}{"".join(rows)}</table>'


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left;
  border-bottom: 1px solid #ddd; vertical-align: middle; white-space: nowrap; }
td.reason { white-space: normal; max-width: 36em; }
.up { color: #070; font-weight: bold; } .down { color: #b00; font-weight: bold; }
.muted { color: #888; } img.thumbnail { max-height: 64px; image-rendering: auto; }
.notice { background: #ffd; padding: 4px; } code { font-size: 0.9em; }
"""


def render_page(data: PageData) -> str:
    """The status page of ``data`` as an HTML document."""
    snapshot = data.snapshot
    last = data.recent[0].received if data.recent else None
    free = _size(snapshot.spool_free_bytes)
    notice = f'<p class="notice" id="notice">{_e(data.notice)}</p>' if data.notice else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>acrnema-bridge status</title><style>{_STYLE}</style></head><body>"
        f"<h1>acrnema-bridge</h1>{notice}"
        f'<p>Last image received: <span id="last-image">{_when(last, data.now)}</span>. '
        f'Spool free disk: <span id="spool-free">{free}</span>. '
        f"Read at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data.now))}, "
        f"reloaded every {REFRESH_S} s. "
        '<a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a></p>'
        f"<h2>Link</h2>{_link(data)}"
        f"<h2>Destinations</h2>{_destinations(data)}"
        f"<h2>Recent images</h2>{_recent(data)}"
        f"<h2>Quarantined</h2>{_quarantine(data)}"
        "</body></html>\n"
    )


@functools.cache
def placeholder_png(size: int = 48) -> bytes:
    """The picture shown for an object without one (no pixels that render, or its file
    gone): a light grey square, crossed, at most ``size`` pixels a side."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 220)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size - 1, size - 1), outline=150)
    draw.line((0, 0, size - 1, size - 1), fill=150)
    draw.line((0, size - 1, size - 1, 0), fill=150)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Thumbnails:
    """A small LRU cache of thumbnails (PNG bytes) by object id, rendered on first use.

    Only objects the page offered (:meth:`offer`: recent or quarantined, with the path of
    their spooled file) can be asked for; a file gone meanwhile, or an object without
    renderable pixels, gives empty bytes (remembered too, so it is not read again). Memory stays
    bounded: at most ``size`` thumbnails and ``2 * offers`` offered paths."""

    def __init__(
        self,
        render: Callable[[Path], bytes | None],
        *,
        size: int = 64,
        offers: int = 256,
    ) -> None:
        self._render = render
        self._size = size
        self._offers_max = offers
        self._cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._offers: collections.OrderedDict[int, Path] = collections.OrderedDict()
        self._lock = threading.Lock()

    def offer(self, object_id: int, path: Path) -> None:
        """``object_id`` may be asked for; its file is ``path``."""
        with self._lock:
            self._offers[object_id] = path
            self._offers.move_to_end(object_id)
            while len(self._offers) > self._offers_max:
                self._offers.popitem(last=False)

    def get(self, object_id: int) -> bytes | None:
        """The thumbnail of ``object_id``: None if the page never offered it; empty bytes
        if its file is gone or its pixels do not render (show :func:`placeholder_png`)."""
        with self._lock:
            if object_id in self._cache:
                self._cache.move_to_end(object_id)
                return self._cache[object_id]
            path = self._offers.get(object_id)
        if path is None:
            return None
        png = self._render(path) or b""
        with self._lock:
            self._cache[object_id] = png
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return png

    def __len__(self) -> int:
        return len(self._cache)

"""The status server of ``run`` and ``forward``: ``/``, ``/metrics``, ``/healthz``.

* :mod:`bridge.status.model`: pure: the snapshot of a service, the health checks, the
  rules for the listen address;
* :mod:`bridge.status.metrics`: the Prometheus metrics (``prometheus-client``), one
  registry per service;
* :mod:`bridge.status.probe`: reads a snapshot from the live parts (spool, forwarder,
  link endpoint);
* :mod:`bridge.status.page`: pure: the status page's data and its HTML (every value
  escaped), the thumbnails' LRU cache;
* :mod:`bridge.status.server`: the HTTP server (aiohttp, on a thread of its own), its
  credentials and TLS.

Only the model is imported here, so that the settings loader can use its rules without
pulling in the web server (docs/operations.md, "Status server, metrics and health").
"""

from __future__ import annotations

from bridge.status.model import (
    Check,
    Health,
    Limits,
    LinkFigures,
    QueueFigures,
    Snapshot,
    evaluate,
    exposure_problem,
    is_loopback,
    listen_address,
)

__all__ = [
    "Check",
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

"""Benchmark: payload MB/s through the whole link stack, as a ratio to 8 MB/s.

Usage: ``.venv/bin/python bench/link.py [--images 20] [--size 512] [--cpus 0]
[--status [--scrape-every 0.1] [--page]]``

No peer tool speaks the 50-pin link, so the reference figure is the design rate cited for
ACR-NEMA interfaces, 8 MB/s (shared/reference/acrnema-standard.md [S17]); the goal is a
ratio of at least 1.0 on one core, so that the software is never the bottleneck. Both
ends run in this one process over ``loop://`` (the emulated scanner in one thread, the
bridge in another), pinned to the cores of ``--cpus`` (default: core 0 only), so the
figure includes the emulator's work too. Three runs (four with ``--status``), one after
the other:

1. link: every layer both ways, the store answered at once (no conversion, no spool);
2. link at ``flip=1e-5`` (a bit flip every 10^5 words, in both directions);
3. service: the bridge as ``acrnema-bridge run`` works (convert, fsync'd spool commit,
   then the answer), clean, no forwarding; with the latency from an image's last word to
   its spool commit;
4. with ``--status``: the service again with its status server on 127.0.0.1 (metrics
   counted, ``/metrics`` and ``/healthz`` scraped every 0.1 s, ``--scrape-every``, by a
   thread of this process, on the same core), to show what serving them costs the link;
   with ``--page`` the status page ``/`` too, and each thumbnail it shows once (as a
   browser, which keeps them), drawn from the spooled files.

Each image is a 512x512 (``--size``) 12-bit CT phantom slice, about 512 KiB; the scanner
waits for each answer before the next image, as the scanners did. Payload is the data set
bytes carried; MB is 10^6 bytes. CPU is this process's CPU time per MB of payload.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.acrnema.commands import Message
from bridge.link.endpoint import Endpoint
from bridge.link.requester import Scanner
from bridge.link.responder import Answer, Responder
from bridge.ports.faults import FaultSpec, FaultyPort
from bridge.ports.loop import loop_pair
from bridge.service import Bridge
from bridge.settings import StatusSettings
from bridge.spool.store import Spool
from bridge.status.metrics import LinkMetrics, new_registry
from bridge.status.probe import Probe
from bridge.status.server import status_server
from bridge.testing.phantom import phantom_images

DESIGN_RATE = 8e6  # bytes per second [S17]


def _timed(send: Callable[[], list[bool]], payload: int) -> tuple[float, float, list[bool]]:
    cpu, wall = time.process_time(), time.perf_counter()
    results = send()
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return payload / wall, cpu / (payload / 1e6), results


def link_only(images: list, faults: str | None) -> tuple[float, float, int]:  # type: ignore[type-arg]
    scanner_port, bridge_port = loop_pair()
    port = FaultyPort(scanner_port, FaultSpec.parse(faults)) if faults else scanner_port
    stop = threading.Event()

    def answer(message: Message) -> Answer:
        return Answer("success")

    responder = Responder(Endpoint(bridge_port), answer)
    thread = threading.Thread(target=responder.serve, args=(stop,))
    thread.start()
    endpoint = Endpoint(port)
    scanner = Scanner(endpoint)
    try:
        rate, cpu, results = _timed(
            lambda: [r.ok for r in scanner.send(images)], sum(len(i.data) for i in images)
        )
        scanner.close()
    finally:
        stop.set()
        thread.join()
        port.close()
        bridge_port.close()
    if not all(results):
        raise SystemExit("bench: an image failed; figures not valid")
    return rate, cpu, endpoint.stack.datalink.retransmissions


def service(
    images: list,  # type: ignore[type-arg]
    folder: Path,
    status: bool = False,
    every: float = 0.1,
    page: bool = False,
) -> tuple[float, float, list[float], int]:
    """The service run; ``status``: with its status server on 127.0.0.1, scraped
    (``/metrics`` then ``/healthz``) every ``every`` seconds while the images go. Returns
    the rate, the CPU per MB, the commit latencies and the number of scrapes."""
    scanner_port, bridge_port = loop_pair()
    spool = Spool(folder / "spool")
    metrics = LinkMetrics(new_registry()) if status else None
    bridge = Bridge(bridge_port, spool, metrics=metrics)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,))
    thread.start()
    server = scraper = None
    scrapes = [0]
    if metrics is not None:
        probe = Probe(spool, endpoint=bridge.endpoint, link_serving=bridge.serving.is_set)
        server = status_server(StatusSettings(listen="127.0.0.1:0"), probe, metrics.registry)
        server.start()
        scraper = threading.Thread(target=_scrape, args=(server.url, stop, scrapes, every, page))
        scraper.start()
    scanner = Scanner(Endpoint(scanner_port))
    try:
        rate, cpu, results = _timed(
            lambda: [r.ok for r in scanner.send(images)], sum(len(i.data) for i in images)
        )
        scanner.close()
    finally:
        stop.set()
        thread.join()
        if scraper is not None:
            scraper.join()
        if server is not None:
            server.stop()
        scanner_port.close()
        bridge_port.close()
        spool.close()
    if not all(results):
        raise SystemExit("bench: an image failed; figures not valid")
    return rate, cpu, list(bridge.stats.commit_seconds), scrapes[0]


SCRAPE_S = 0.1
"""Seconds between two scrapes with --status (``--scrape-every``); 0.1 s is 150 times as
often as Prometheus's default interval of 15 s."""


def _scrape(
    url: str, stop: threading.Event, count: list[int], every: float, page: bool = False
) -> None:
    seen: set[bytes] = set()
    while not stop.is_set():
        for route in ("/metrics", "/healthz", *(("/",) if page else ())):
            with urllib.request.urlopen(url + route, timeout=10) as answer:
                body = answer.read()
            for src in re.findall(rb'src="(/thumbnail/\d+\.png)"', body) if route == "/" else ():
                if src not in seen:  # a browser fetches each thumbnail once and keeps it
                    seen.add(src)
                    with urllib.request.urlopen(url + src.decode(), timeout=10) as answer:
                        answer.read()
        count[0] += 1
        stop.wait(every)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cpus", default="0", help="cores to pin to, e.g. 0 or 0,1")
    parser.add_argument(
        "--status",
        action="store_true",
        help="also run the service with its status server on, scraped every 0.1 s",
    )
    parser.add_argument(
        "--scrape-every", type=float, default=SCRAPE_S, metavar="S", help="with --status"
    )
    parser.add_argument(
        "--page", action="store_true", help="with --status: fetch the status page / too"
    )
    args = parser.parse_args()
    cpus = {int(c) for c in args.cpus.split(",")}
    os.sched_setaffinity(0, cpus)
    images = phantom_images(args.images, rows=args.size)
    size = sum(len(i.data) for i in images) / len(images)
    print(
        f"link benchmark: {args.images} images of {size / 1024:.0f} KiB, loop://, "
        f"pinned to core(s) {sorted(cpus)}, reference profile (256-word frames, window 8)"
    )
    link_only(images[:2], None)  # warm up imports and caches
    rows = []
    for label, faults in (("link, clean", None), ("link, flip=1e-5", "flip=1e-5,seed=1")):
        rate, cpu, resent = link_only(images, faults)
        rows.append((label, rate, cpu, f"{resent} frames resent"))
    with tempfile.TemporaryDirectory(prefix="acrnema-bench-") as tmp:
        rate, cpu, commits, _ = service(images, Path(tmp))
        median = statistics.median(commits) * 1000
        worst = max(commits) * 1000
        rows.append(("service (convert + spool)", rate, cpu, f"commit median {median:.1f} ms"))
        if args.status:
            rate, cpu, served, scrapes = service(
                images, Path(tmp) / "status", status=True, every=args.scrape_every, page=args.page
            )
            note = f"commit median {statistics.median(served) * 1000:.1f} ms, {scrapes} scrapes"
            label = "service + status page" if args.page else "service + status server"
            rows.append((label, rate, cpu, note))
    print(f"{'run':28} {'MB/s':>7} {'ratio to 8 MB/s':>16} {'CPU s/MB':>9}  note")
    for label, rate, cpu, note in rows:
        print(f"{label:28} {rate / 1e6:7.2f} {rate / DESIGN_RATE:16.2f} {cpu:9.3f}  {note}")
    print(
        f"latency, last word of an image to its spool commit: median {median:.1f} ms, "
        f"max {worst:.1f} ms over {len(commits)} images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

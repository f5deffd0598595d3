"""Benchmark: payload MB/s through the whole link stack, as a ratio to 8 MB/s.

Usage: ``.venv/bin/python bench/link.py [--images 20] [--size 512] [--cpus 0]``

No peer tool speaks the 50-pin link, so the reference figure is the design rate cited for
ACR-NEMA interfaces, 8 MB/s (shared/reference/acrnema-standard.md [S17]); the goal is a
ratio of at least 1.0 on one core, so that the software is never the bottleneck. Both
ends run in this one process over ``loop://`` (the emulated scanner in one thread, the
bridge in another), pinned to the cores of ``--cpus`` (default: core 0 only), so the
figure includes the emulator's work too. Three runs, one after the other:

1. link: every layer both ways, the store answered at once (no conversion, no spool);
2. link at ``flip=1e-5`` (a bit flip every 10^5 words, in both directions);
3. service: the bridge as ``acrnema-bridge run`` works (convert, fsync'd spool commit,
   then the answer), clean, no forwarding; with the latency from an image's last word to
   its spool commit.

Each image is a 512x512 (``--size``) 12-bit CT phantom slice, about 512 KiB; the scanner
waits for each answer before the next image, as the scanners did. Payload is the data set
bytes carried; MB is 10^6 bytes. CPU is this process's CPU time per MB of payload.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
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
from bridge.spool.store import Spool
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


def service(images: list, folder: Path) -> tuple[float, float, list[float]]:  # type: ignore[type-arg]
    scanner_port, bridge_port = loop_pair()
    spool = Spool(folder / "spool")
    bridge = Bridge(bridge_port, spool)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,))
    thread.start()
    scanner = Scanner(Endpoint(scanner_port))
    try:
        rate, cpu, results = _timed(
            lambda: [r.ok for r in scanner.send(images)], sum(len(i.data) for i in images)
        )
        scanner.close()
    finally:
        stop.set()
        thread.join()
        scanner_port.close()
        bridge_port.close()
        spool.close()
    if not all(results):
        raise SystemExit("bench: an image failed; figures not valid")
    return rate, cpu, bridge.stats.commit_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cpus", default="0", help="cores to pin to, e.g. 0 or 0,1")
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
        rate, cpu, commits = service(images, Path(tmp))
    median = statistics.median(commits) * 1000
    worst = max(commits) * 1000
    rows.append(("service (convert + spool)", rate, cpu, f"commit median {median:.1f} ms"))
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

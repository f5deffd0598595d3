"""A study transfer over the bench: the service on the bridge side, a scanner on the peer.

With the emulated bench this is the full path of the interface-box issue: the service
(``box+`` port) -> box protocol over a real pty through pyserial -> emulated box ->
emulated scanner. On a real bench the peer is a second box running the emulator (or a
scanner driven by hand: then run only the other files).
"""

from __future__ import annotations

from pathlib import Path

from conftest import Bench, service_running

from bridge.link.endpoint import Endpoint
from bridge.link.requester import Scanner
from bridge.testing.phantom import phantom_images


def test_a_study_arrives_whole(bench: Bench, tmp_path: Path) -> None:
    count = 5
    images = phantom_images(count, rows=bench.image_rows)
    with service_running(bench, tmp_path / "spool") as bridge:
        scanner = Scanner(Endpoint(bench.peer, bench.profile), attempts=2, link_timeout=10.0)
        results = scanner.send(images)
        scanner.close(timeout=5.0)
    assert all(r.ok for r in results), [r.errors for r in results]
    assert bridge.stats.images == count
    assert len(list((tmp_path / "spool" / "objects").rglob("*.dcm"))) == count

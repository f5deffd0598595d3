"""Unplug and replug the adapter: a clear error, reconnection, nothing lost.

Emulated bench: the emulated box's side of the pty goes away and comes back. Real bench:
the test asks the operator (on the terminal; run ``pytest -s``) to unplug the adapter of
``BRIDGE_HW_URL`` and plug it back, and waits ``BRIDGE_HW_UNPLUG_S`` seconds for each.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Bench, receive_exactly, service_running, words

from bridge.link.endpoint import Endpoint
from bridge.link.requester import Scanner
from bridge.ports.base import LinkLost
from bridge.testing.phantom import phantom_images


def test_unplug_is_a_clear_error_and_replug_brings_the_link_back(bench: Bench) -> None:
    bench.unplug()
    deadline = time.monotonic() + bench.unplug_s
    with pytest.raises(LinkLost) as info:
        while time.monotonic() < deadline:
            bench.bridge.recv(0.2)
    assert str(info.value), "the error must say what went"
    with pytest.raises(LinkLost):  # the far end saw the bridge's side go, too
        bench.peer.recv(bench.link_s)
    bench.replug()
    assert bench.bridge.wait_peer(bench.unplug_s), "no link after the adapter came back"
    bench.wait_both()
    bench.bridge.send(words(64))
    assert receive_exactly(bench.peer, 64).words.tolist() == words(64).words.tolist()


def test_a_study_survives_an_unplug_and_the_spool_is_unaffected(
    bench: Bench, tmp_path: Path
) -> None:
    count = 4
    images = phantom_images(count, rows=bench.image_rows)
    unplugged = []

    def after(result: object) -> None:
        if not unplugged:  # after the first image: pull the plug, put it back
            unplugged.append(True)
            bench.unplug()
            time.sleep(0.5)
            bench.replug()

    with service_running(bench, tmp_path / "spool") as bridge:
        scanner = Scanner(Endpoint(bench.peer, bench.profile), attempts=3, link_timeout=20.0)
        results = scanner.send(images, after)
        scanner.close(timeout=5.0)
    assert all(r.ok for r in results), [r.errors for r in results]
    assert bridge.stats.images == count  # each image stored once
    assert len(list((tmp_path / "spool" / "objects").rglob("*.dcm"))) == count

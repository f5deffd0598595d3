"""One spool, several processes: the service keeps its promise whoever else starts.

The finding this reproduces: with the service receiving images and an operator starting
``forward`` on the same spool again and again, every image was answered success, yet
files were gone (the second process's start-up recovery deleted files being written and
put the service's in-flight deliveries back in the queue), some were sent twice, and
some that did arrive were shown as quarantined. Now the spool has one owner: a second
``forward`` is refused at once with the owner named, and the service's work is untouched.

Real processes throughout: ``acrnema-bridge run`` on a TCP link port with an emulated
scanner, ``acrnema-bridge forward`` started many times, DCMTK ``storescp`` as the PACS
(with unique file names, so a duplicate delivery shows as a second file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import peers
import pytest

from bridge.link.requester import ImageResult
from bridge.spool.store import Spool
from bridge.testing.phantom import phantom_images

IMAGES = 240
FORWARD_STARTS = 30


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


def drained(spool_dir: Path, dest: str, within: float = 120.0) -> dict[str, int]:
    """The delivery counts of ``dest`` once nothing is waiting (or ``within`` s passed)."""
    spool = Spool(spool_dir)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            counts = spool.counts(dest)
            if not counts["ready"] and not counts["in_flight"]:
                break
            time.sleep(0.2)
        return spool.counts(dest)
    finally:
        spool.close()


@pytest.mark.slow
def test_forward_started_again_and_again_beside_run_loses_and_duplicates_nothing(
    tmp_path: Path, loopback_shim: Path
) -> None:
    pacs = peers.start_storescp(tmp_path / "pacs", loopback_shim, extra=["--unique-filenames"])
    dest = f"{pacs.ae_title}@{pacs.host}:{pacs.port}"
    spool_dir = tmp_path / "spool"
    link = peers.free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    results: list[ImageResult] = []
    forwards: list[subprocess.CompletedProcess[str]] = []
    service_args = ["--spool", str(spool_dir), "--dest", dest, "--backoff-cap", "1"]
    try:
        with (
            peers.bridge_service(link, *service_args) as service,
            peers.scanner_on(link, attempts=3, response_timeout=30.0) as scanner,
        ):
            sender = threading.Thread(
                target=lambda: results.extend(scanner.send(phantom_images(IMAGES, rows=64))),
                name="scanner",
            )
            sender.start()
            try:
                # an operator starting forward on the service's spool while images arrive
                while len(forwards) < FORWARD_STARTS:
                    forwards.append(
                        subprocess.run(
                            _cli("forward", "--spool", str(spool_dir), "--dest", dest)
                            + ["--until-empty", "--timeout", "2"],
                            capture_output=True,
                            text=True,
                            env=env,
                            timeout=60,
                        )
                    )
            finally:
                sender.join(timeout=600)
            assert not sender.is_alive()
            counts = drained(spool_dir, dest)  # by the service's own forwarder
            assert service.poll() is None, "the service died"
            service.send_signal(signal.SIGTERM)
            _, err = service.communicate(timeout=60)
    finally:
        pacs.stop()
    assert service.returncode == 0, err
    acknowledged = [r for r in results if r.ok]
    assert len(acknowledged) == IMAGES, [r.errors for r in results if not r.ok][:3]
    # nothing lost, nothing quarantined, nothing sent twice
    assert counts == {"ready": 0, "in_flight": 0, "done": IMAGES, "failed": 0}
    files = list(pacs.out_dir.glob("*.dcm"))
    assert len(pacs.received()) == IMAGES
    assert len(files) == IMAGES, f"{len(files) - IMAGES} duplicate deliveries"
    # every forward start was refused at once, naming the owner
    for run in forwards:
        assert run.returncode == 1, run.stderr
        assert "in use by pid" in run.stderr and str(service.pid) in run.stderr, run.stderr
        assert "Traceback" not in run.stderr

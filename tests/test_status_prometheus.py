"""A real Prometheus server scrapes a real ``acrnema-bridge run`` (issue 12, item 2).

Debian's ``prometheus`` listens on 127.0.0.1 only (``--web.listen-address``), keeps its
data in the test's folder, scrapes the service's status server every second, and is
stopped by the test (and by :class:`peers.PeerProcess`'s time limit whatever happens).
Its query API must show the counters rising as an emulated scanner sends images.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import peers
import pytest
from test_status_run import run_with_status
from test_status_server import fetch, wait_for

from bridge.testing.phantom import phantom_images

pytestmark = pytest.mark.slow


def _query(prometheus: str, expression: str) -> list[dict[str, object]]:
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expression)}"
    code, body = fetch(url)
    assert code == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def _scalar(prometheus: str, expression: str) -> float | None:
    result = _query(prometheus, expression)
    if not result:
        return None
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def test_prometheus_scrapes_run_and_sees_the_counters_rise(
    tmp_path: Path, loopback_shim: Path
) -> None:
    tool = peers.require_tool("prometheus")
    with run_with_status(tmp_path) as (port, url):
        target = url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: bridge\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        listen = f"127.0.0.1:{peers.free_port()}"
        prometheus = f"http://{listen}"
        server = peers.PeerProcess(
            [
                tool,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={listen}",
            ],
            log=tmp_path / "prometheus.log",
            shim=loopback_shim,
            cwd=tmp_path,
        )
        try:
            server.wait_until(lambda: _ready(prometheus), "Prometheus is ready")
            wait_for(lambda: _scalar(prometheus, 'up{job="bridge"}') == 1, "a first scrape")
            received = "acrnema_bridge_images_received_total"
            assert _scalar(prometheus, received) == 0
            with peers.scanner_on(port, response_timeout=30.0) as scanner:
                assert all(r.ok for r in scanner.send(phantom_images(2, rows=64)))
                wait_for(lambda: _scalar(prometheus, received) == 2, "2 images in Prometheus")
                assert _scalar(prometheus, "acrnema_bridge_link_up") == 1
                assert all(r.ok for r in scanner.send(phantom_images(3, rows=64)))
                wait_for(lambda: _scalar(prometheus, received) == 5, "5 images in Prometheus")
            spooled = _scalar(prometheus, "acrnema_bridge_objects_spooled_total")
            assert spooled == 5
            frames = _query(prometheus, "acrnema_bridge_link_frames_total")
            kinds = {str(r["metric"]["kind"]) for r in frames}  # type: ignore[index]
            assert kinds == {"sent", "received", "damaged", "retransmitted"}
        finally:
            server.stop()
        assert not server.alive


def _ready(prometheus: str) -> bool:
    try:
        return fetch(f"{prometheus}/-/ready")[0] == 200
    except OSError:
        return False

"""The status server of a real ``acrnema-bridge run`` and ``forward`` (issue 12, items
1-3): ``/metrics`` counting what an emulated scanner sends (checked by ``promtool check
metrics``), ``/healthz`` going unhealthy with a stopped PACS (``max_wait``) and with no
peer on the link (``max_link_down``), and ``acrnema-bridge status`` for cron.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import peers
import pytest
from test_status_server import fetch, health, wait_for

from bridge.cli import main
from bridge.link.requester import Image
from bridge.testing.phantom import phantom_images

pytestmark = pytest.mark.slow


def _value(text: str, sample: str) -> float:
    """The value of the sample line ``sample`` (name with labels) in a scrape."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{sample} not in the scrape:\n{text}"
    return float(match[1])


@contextmanager
def run_with_status(tmp_path: Path, *args: str) -> Iterator[tuple[int, str]]:
    """``run`` with a status server: yields (link port, status URL) once both answer."""
    port, status = peers.free_port(), peers.free_port()
    url = f"http://127.0.0.1:{status}"
    spool = str(tmp_path / "spool")
    extra = ("--spool", spool, "--status-listen", f"127.0.0.1:{status}", *args)
    with peers.bridge_service(port, *extra) as service:
        try:
            wait_for(lambda: _answers(url) or service.poll() is not None, "the status server")
            assert service.poll() is None, service.communicate()
            yield port, url
        finally:
            service.send_signal(signal.SIGTERM)
            _, err = service.communicate(timeout=30)
            assert service.returncode == 0, err


def _answers(url: str) -> bool:
    try:
        fetch(url + "/")
    except OSError:
        return False
    return True


def _promtool_accepts(text: str) -> None:
    promtool = peers.require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_run_counts_images_deliveries_and_frames_in_valid_prometheus_text(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    dest = f"{storescp.ae_title}@127.0.0.1:{storescp.port}"
    with run_with_status(tmp_path, "--dest", dest) as (port, url):
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            results = scanner.send([*phantom_images(3, rows=64), Image("garbage", b"\x00" * 64)])
            assert [r.ok for r in results] == [True, True, True, False]
            text = fetch(url + "/metrics")[1].decode()
            assert _value(text, "acrnema_bridge_link_up") == 1.0
        wait_for(lambda: len(storescp.received()) == 3, "3 objects at the PACS")
        done = f'acrnema_bridge_deliveries_total{{destination="{dest}",outcome="done"}}'
        wait_for(lambda: _value(fetch(url + "/metrics")[1].decode(), done) == 3, "3 done")
        text = fetch(url + "/metrics")[1].decode()
        _promtool_accepts(text)
        assert _value(text, "acrnema_bridge_images_received_total") == 4
        refused = 'acrnema_bridge_images_refused_total{reason="cannot_understand"}'
        assert _value(text, refused) == 1
        assert _value(text, "acrnema_bridge_objects_spooled_total") == 3
        assert _value(text, "acrnema_bridge_commit_seconds_count") == 3
        ready = f'acrnema_bridge_queue_objects{{destination="{dest}",state="ready"}}'
        assert _value(text, ready) == 0
        assert _value(text, f'acrnema_bridge_worker_up{{worker="forward-{dest}"}}') == 1
        assert _value(text, 'acrnema_bridge_worker_up{worker="link"}') == 1
        assert _value(text, 'acrnema_bridge_link_frames_total{kind="sent"}') > 0
        assert _value(text, 'acrnema_bridge_link_frames_total{kind="received"}') > 0
        assert _value(text, "acrnema_bridge_spool_free_bytes") > 0
        code, report = health(url)
        assert code == 200, report


def test_a_stopped_pacs_makes_the_service_unhealthy_after_max_wait(
    tmp_path: Path,
    storescp: peers.StoreSCPPeer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storescp.stop()  # the PACS is down: the image waits in the spool
    dest = f"{storescp.ae_title}@127.0.0.1:{storescp.port}"
    monkeypatch.setenv("BRIDGE_STATUS_MAX_WAIT", "1")
    with run_with_status(tmp_path, "--dest", dest) as (port, url):
        assert main(["status", "--url", url]) == 0
        assert capsys.readouterr().out.startswith(f"healthy: {url}/healthz")
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [stored] = scanner.send(phantom_images(1, rows=64))
            assert stored.ok
        wait_for(lambda: health(url)[0] == 503, "unhealthy once the image waited 1 s")
        code, report = health(url)
        assert code == 503
        assert report["checks"]["queue"]["state"] == "failing"
        assert dest in report["checks"]["queue"]["detail"]
        assert report["checks"]["workers"]["state"] == "ok"  # still trying: not a dead worker
        capsys.readouterr()
        assert main(["status", "--url", url]) == 1
        out = capsys.readouterr().out
        assert out.startswith(f"unhealthy: {url}/healthz")
        assert re.search(r"queue +failing +waiting longer than max_wait 1 s", out)
        assert main(["status", "--url", url, "--json"]) == 1
        assert json.loads(capsys.readouterr().out)["checks"]["queue"]["state"] == "failing"


def test_a_link_down_longer_than_max_link_down_is_unhealthy_until_a_scanner_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_STATUS_MAX_LINK_DOWN", "1")
    with run_with_status(tmp_path) as (port, url):
        wait_for(lambda: health(url)[0] == 503, "unhealthy after 1 s without a peer")
        assert health(url)[1]["checks"]["link"]["state"] == "failing"
        assert _value(fetch(url + "/metrics")[1].decode(), "acrnema_bridge_link_up") == 0
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            [stored] = scanner.send(phantom_images(1, rows=64))
            assert stored.ok
            code, report = health(url)
            assert code == 200, report
            assert report["checks"]["link"]["state"] == "ok"


def test_forward_serves_its_status_without_link_metrics(
    tmp_path: Path, storescp: peers.StoreSCPPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "spool"
    for n in range(2):
        peers.write_secondary_capture(tmp_path / f"sc{n}.dcm")
    assert main(["spool", "add", "--spool", str(spool), str(tmp_path / "sc0.dcm")]) == 0
    assert main(["spool", "add", "--spool", str(spool), str(tmp_path / "sc1.dcm")]) == 0
    dest = f"{storescp.ae_title}@127.0.0.1:{storescp.port}"
    status = peers.free_port()
    url = f"http://127.0.0.1:{status}"
    forward = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "forward", "--spool", str(spool), "--dest", dest]
        + ["--status-listen", f"127.0.0.1:{status}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for(lambda: _answers(url) or forward.poll() is not None, "the status server")
        done = f'acrnema_bridge_deliveries_total{{destination="{dest}",outcome="done"}}'
        wait_for(lambda: _value(fetch(url + "/metrics")[1].decode(), done) == 2, "2 done")
        text = fetch(url + "/metrics")[1].decode()
        _promtool_accepts(text)
        assert "acrnema_bridge_link_up" not in text
        assert "acrnema_bridge_images_received_total" not in text
        capsys.readouterr()
        assert main(["status", "--url", url]) == 0
        out = capsys.readouterr().out
        assert re.search(r"link +off +no link \(forward\)", out)
    finally:
        forward.send_signal(signal.SIGTERM)
        _, err = forward.communicate(timeout=30)
    assert forward.returncode == 0, err


def test_status_without_a_server_exits_1_in_one_line_and_usage_errors_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    nobody = f"http://127.0.0.1:{peers.free_port()}"
    assert main(["status", "--url", nobody]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no answer" in err
    assert main(["status"]) == 2
    assert "give --url" in capsys.readouterr().err
    assert main(["status", "--url", "ftp://127.0.0.1:1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

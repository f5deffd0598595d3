"""The status server in this process (issue 12, items 1-3): credentials, TLS, and the
health checks that go unhealthy with real parts (a forwarder whose workers ended, a
spool on a real file system that is full).

Every server here listens on 127.0.0.1 and a port it picks (``listen`` port 0).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peers
import pytest

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.forward.runner import Forwarder
from bridge.forward.scu import Destination
from bridge.ingest import ingest_file
from bridge.settings import StatusSettings
from bridge.spool.store import Spool
from bridge.status.probe import Probe
from bridge.status.server import StatusServer, status_server

DEADLINE_S = 30.0  # only to catch a hang


def fetch(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def health(url: str, **options: Any) -> tuple[int, dict[str, Any]]:
    code, body = fetch(f"{url}/healthz", **options)
    return code, json.loads(body)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {DEADLINE_S:g} s: {what}")
        time.sleep(0.1)


@contextmanager
def serving(probe: Probe, **settings: Any) -> Iterator[StatusServer]:
    server = status_server(StatusSettings(listen="127.0.0.1:0", **settings), probe)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool")
    try:
        yield spool
    finally:
        spool.close()


def test_the_index_lists_the_routes_and_a_second_server_on_the_port_is_refused(
    spool: Spool,
) -> None:
    with serving(Probe(spool)) as server:
        code, body = fetch(server.url + "/")
        assert code == 200
        for route in ("/metrics", "/healthz"):
            assert f'href="{route}"'.encode() in body
        taken = StatusSettings(listen=f"127.0.0.1:{server.port}")
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{server.port}"):
            status_server(taken, Probe(spool)).start()


def test_a_token_is_required_on_every_route_when_configured(tmp_path: Path, spool: Spool) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with serving(Probe(spool), token_file=token) as server:
        for route in ("/", "/metrics", "/healthz"):
            assert fetch(server.url + route)[0] == 401
            assert fetch(server.url + route, {"Authorization": "Bearer wrong"})[0] == 401
            assert fetch(server.url + route, {"Authorization": "Bearer s3cret-token"})[0] == 200


def test_basic_auth_is_required_when_configured(tmp_path: Path, spool: Spool) -> None:
    password = tmp_path / "password"
    password.write_text("pa:ss\n")

    def basic(user: str, secret: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}

    with serving(Probe(spool), user="ops", password_file=password) as server:
        url = server.url + "/metrics"
        code, _ = fetch(url)
        assert code == 401
        assert fetch(url, basic("ops", "wrong"))[0] == 401
        assert fetch(url, basic("other", "pa:ss"))[0] == 401
        assert fetch(url, {"Authorization": "Basic !!!"})[0] == 401
        assert fetch(url, basic("ops", "pa:ss"))[0] == 200


def test_an_empty_token_file_is_a_usage_error(tmp_path: Path, spool: Spool) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    with pytest.raises(ConfigError, match=r"token_file .*empty"):
        status_server(StatusSettings(listen="127.0.0.1:0", token_file=token), Probe(spool))


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    done = subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"openssl could not make a certificate: {done.stderr}")
    return cert, key


def test_tls_serves_https_that_checks_against_the_certificate(tmp_path: Path, spool: Spool) -> None:
    cert, key = _self_signed(tmp_path)
    with serving(Probe(spool), cert_file=cert, key_file=key) as server:
        assert server.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        assert fetch(server.url + "/healthz", context=trusted)[0] == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(server.url + "/healthz", context=ssl.create_default_context())
        plain = server.url.replace("https:", "http:") + "/healthz"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            fetch(plain)


def test_status_finds_the_server_and_its_credentials_in_the_settings(
    tmp_path: Path, spool: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = _self_signed(tmp_path)
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    options = {"cert_file": cert, "key_file": key, "token_file": token}
    with serving(Probe(spool), **options) as server:
        config = tmp_path / "bridge.toml"
        config.write_text(
            f'[status]\nlisten = "127.0.0.1:{server.port}"\ntoken_file = "{token}"\n'
            f'cert_file = "{cert}"\nkey_file = "{key}"\n'
        )
        assert main(["--config", str(config), "status"]) == 0
        assert capsys.readouterr().out.startswith(f"healthy: {server.url}/healthz")
        token.write_text("another-token\n")  # the server still wants the first one
        assert main(["--config", str(config), "status"]) == 1
        assert "HTTP 401" in capsys.readouterr().err


def test_unusable_tls_files_are_a_usage_error(tmp_path: Path, spool: Spool) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    settings = StatusSettings(listen="127.0.0.1:0", cert_file=bad, key_file=bad)
    with pytest.raises(ConfigError, match=r"cert_file .*unusable"):
        status_server(settings, Probe(spool))


def test_a_forwarder_whose_workers_ended_is_unhealthy(
    tmp_path: Path, spool: Spool, storescp: peers.StoreSCPPeer
) -> None:
    for n in range(3):
        peers.write_secondary_capture(tmp_path / f"sc{n}.dcm")
        ingest_file(spool, tmp_path / f"sc{n}.dcm")
    destination = Destination(storescp.ae_title, storescp.host, storescp.port)
    forwarder = Forwarder(spool, [destination])
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop,), name="test-forwarder")
    worker = f"forward-{destination.name}"
    with serving(Probe(spool, forwarder=forwarder)) as server:
        code, report = health(server.url)
        assert code == 503  # not started yet: its worker does not run
        thread.start()
        try:
            wait_for(lambda: health(server.url)[0] == 200, "healthy while forwarding")
            wait_for(lambda: len(storescp.received()) == 3, "the 3 objects delivered")
            _, body = fetch(server.url + "/metrics")
            done = f'deliveries_total{{destination="{destination.name}",outcome="done"}} 3.0'
            assert done.encode() in body
            assert f'worker_up{{worker="{worker}"}} 1.0'.encode() in body
        finally:
            stop.set()
            thread.join()
        code, report = health(server.url)
        assert code == 503
        assert report["status"] == "unhealthy"
        assert report["checks"]["workers"] == {
            "state": "failing",
            "detail": f"not running: {worker}",
        }
        assert f'worker_up{{worker="{worker}"}} 0.0'.encode() in fetch(server.url + "/metrics")[1]


def test_a_full_spool_disk_is_unhealthy(tmp_path: Path) -> None:
    with peers.tmpfs(tmp_path / "disk", "4m") as disk:
        spool = Spool(disk / "spool", reserve_bytes=1 << 20)
        try:
            with serving(Probe(spool)) as server:
                code, report = health(server.url)
                assert code == 200, report
                assert report["checks"]["spool"]["state"] == "ok"
                filler = disk / "filler"
                with filler.open("wb") as out:  # a real disk filling up
                    while True:
                        try:
                            out.write(b"\0" * 65536)
                            out.flush()
                        except OSError:
                            break
                code, report = health(server.url)
                assert code == 503
                assert report["checks"]["spool"]["state"] == "failing"
                assert "below the reserve" in report["checks"]["spool"]["detail"]
                filler.unlink()
                assert health(server.url)[0] == 200
        finally:
            spool.close()


def test_stopping_the_server_frees_its_port(spool: Spool) -> None:
    with serving(Probe(spool)) as server:
        port = server.port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # nothing holds it any more

"""The status server's model (issue 12, items 1-3): health checks, the listen rules, the
``[status]`` settings and the metric families, without a server.

The metric families are checked by Debian's ``promtool check metrics`` (package
``prometheus``), the same tool the integration tests run on a real scrape.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import peers
import pytest

from bridge.cli import main
from bridge.errors import SettingsError
from bridge.settings import keys, load
from bridge.status.metrics import LinkMetrics, SnapshotCollector, new_registry, render
from bridge.status.model import (
    FrameHistory,
    FrameWindow,
    Limits,
    LinkFigures,
    QueueFigures,
    Snapshot,
    evaluate,
    exposure_problem,
    is_loopback,
    listen_address,
)
from bridge.status.page import _frame_window

PACS = "PACS@127.0.0.1:104"


def _snapshot(**changes: object) -> Snapshot:
    base: dict[str, object] = {
        "workers": {"link": True, f"forward-{PACS}": True},
        "queues": {PACS: QueueFigures(ready=2, in_flight=1, oldest_waiting_s=30.0)},
        "spool_free_bytes": 10 << 30,
        "spool_problem": None,
        "link": LinkFigures(up=True, since_s=5.0, frames={"sent": 3}),
    }
    base.update(changes)
    return Snapshot(**base)  # type: ignore[arg-type]


def _states(snapshot: Snapshot, limits: Limits | None = None) -> dict[str, str]:
    return {c.name: c.state for c in evaluate(snapshot, limits or Limits()).checks}


# ------------------------------------------------------------------------ health checks


def test_a_running_service_is_healthy_and_says_each_check() -> None:
    health = evaluate(_snapshot(), Limits(max_wait=60, max_link_down=10))
    assert health.healthy
    assert health.as_dict()["status"] == "healthy"
    assert _states(_snapshot(), Limits(60, 10)) == {
        "workers": "ok",
        "spool": "ok",
        "queue": "ok",
        "link": "ok",
    }


def test_a_worker_not_running_is_unhealthy_and_named() -> None:
    health = evaluate(_snapshot(workers={"link": True, f"forward-{PACS}": False}), Limits())
    assert not health.healthy
    workers = health.as_dict()["checks"]["workers"]
    assert workers["state"] == "failing"
    assert f"forward-{PACS}" in workers["detail"]


def test_a_spool_that_cannot_be_written_is_unhealthy() -> None:
    health = evaluate(_snapshot(spool_problem="no space left on the spool's disk"), Limits())
    assert not health.healthy
    assert "no space left" in health.as_dict()["checks"]["spool"]["detail"]


def test_an_object_waiting_longer_than_max_wait_is_unhealthy_and_0_turns_it_off() -> None:
    late = _snapshot(queues={PACS: QueueFigures(ready=1, oldest_waiting_s=120.0)})
    assert _states(late, Limits(max_wait=60))["queue"] == "failing"
    assert _states(late, Limits(max_wait=600))["queue"] == "ok"
    assert _states(late, Limits(max_wait=0))["queue"] == "off"
    assert evaluate(late, Limits(max_wait=0)).healthy


def test_a_link_down_longer_than_max_link_down_is_unhealthy() -> None:
    down = _snapshot(link=LinkFigures(up=False, since_s=30.0))
    assert _states(down, Limits(max_link_down=10))["link"] == "failing"
    assert _states(down, Limits(max_link_down=60))["link"] == "ok"
    assert _states(down, Limits(max_link_down=0))["link"] == "off"
    up_long = _snapshot(link=LinkFigures(up=True, since_s=3000.0))
    assert _states(up_long, Limits(max_link_down=10))["link"] == "ok"
    assert _states(_snapshot(link=None), Limits(max_link_down=10))["link"] == "off"


# ------------------------------------------------------------------------ listen rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8104", ("127.0.0.1", 8104)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:8104", ("::1", 8104)),
        (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses_are_read(text: str, expected: tuple[str, int]) -> None:
    assert listen_address(text) == expected


@pytest.mark.parametrize("text", ["8104", ":8104", "127.0.0.1:", "127.0.0.1:70000", "::1:80"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"8104|port|bracket|HOST"):
        listen_address(text)


def test_only_loopback_goes_without_credentials_and_tls() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host)
        assert exposure_problem(host, credentials=False, tls=False, insecure=False) is None
    for host in ("0.0.0.0", "192.0.2.7", "bridge.example", "::"):
        assert not is_loopback(host)
        no_credentials = exposure_problem(host, credentials=False, tls=True, insecure=True)
        assert no_credentials is not None and "credentials" in no_credentials
        no_tls = exposure_problem(host, credentials=True, tls=False, insecure=False)
        assert no_tls is not None and "TLS" in no_tls
        assert exposure_problem(host, credentials=True, tls=True, insecure=False) is None
        assert exposure_problem(host, credentials=True, tls=False, insecure=True) is None


# ------------------------------------------------------------------------ settings


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_the_status_table_loads_and_shows_in_config_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, '[status]\nlisten = "127.0.0.1:8104"\nmax_wait = "10min"\n')
    settings = load(path, env={})
    assert settings.status.listen == "127.0.0.1:8104"
    assert settings.status.max_wait == 600.0
    assert settings.status.max_link_down == 0.0
    assert "status.listen" in keys() and "status.insecure" in keys()
    assert main(["--config", str(path), "config", "show"]) == 0
    assert '"listen": "127.0.0.1:8104"' in capsys.readouterr().out


def test_a_status_server_outside_loopback_needs_credentials_and_tls(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"status\.listen: .*needs credentials"):
        load(_file(tmp_path, '[status]\nlisten = "0.0.0.0:8104"\n'), env={})
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    creds = f'[status]\nlisten = "0.0.0.0:8104"\ntoken_file = "{token}"\n'
    with pytest.raises(SettingsError, match=r"status\.listen: .*needs TLS"):
        load(_file(tmp_path, creds), env={})
    assert load(_file(tmp_path, creds + "insecure = true\n"), env={}).status.insecure
    tls = creds + f'cert_file = "{tmp_path / "c.pem"}"\nkey_file = "{tmp_path / "k.pem"}"\n'
    assert load(_file(tmp_path, tls), env={}).status.cert_file == tmp_path / "c.pem"


def test_status_settings_that_go_together_are_checked(tmp_path: Path) -> None:
    text = '[status]\nlisten = "8104"\nuser = "ops"\ncert_file = "c.pem"\nmax_wait = -1\n'
    with pytest.raises(SettingsError) as caught:
        load(_file(tmp_path, text), env={})
    said = "\n".join(caught.value.problems)
    assert "status.listen" in said and "HOST:PORT" in said
    assert "status.user" in said and "password_file" in said
    assert "status.cert_file" in said and "key_file" in said
    assert "status.max_wait" in said


def test_run_refuses_a_status_server_outside_loopback_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--port",
            "loop://status-refused",
            "--spool",
            str(tmp_path / "spool"),
            "--status-listen",
            "0.0.0.0:8104",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "needs credentials" in err
    assert not (tmp_path / "spool").exists()  # refused before anything was started


# ------------------------------------------------------------------------ metric families


def test_the_metrics_are_valid_prometheus_text(tmp_path: Path) -> None:
    registry = new_registry()
    link = LinkMetrics(registry)
    link.stored(2, 0.012)
    link.refused_with("cannot_understand")
    registry.register(
        SnapshotCollector(
            lambda: _snapshot(link=LinkFigures(True, 1.0, {"sent": 5, "received": 4})),
            lambda: {PACS: {"done": 3, "retry": 1, "quarantined": 0}},
        )
    )
    text = render(registry).decode()
    for line in (
        "acrnema_bridge_images_received_total 2.0",
        'acrnema_bridge_images_refused_total{reason="cannot_understand"} 1.0',
        "acrnema_bridge_objects_spooled_total 2.0",
        f'acrnema_bridge_deliveries_total{{destination="{PACS}",outcome="done"}} 3.0',
        f'acrnema_bridge_queue_objects{{destination="{PACS}",state="in_flight"}} 1.0',
        f'acrnema_bridge_oldest_waiting_seconds{{destination="{PACS}"}} 30.0',
        f'acrnema_bridge_worker_up{{worker="forward-{PACS}"}} 1.0',
        "acrnema_bridge_link_up 1.0",
        'acrnema_bridge_link_frames_total{kind="sent"} 5.0',
        "acrnema_bridge_spool_free_bytes",
        'acrnema_bridge_commit_seconds_bucket{le="0.025"} 1.0',
    ):
        assert line in text
    promtool = peers.require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_services_in_one_process_keep_their_own_metrics() -> None:
    first, second = LinkMetrics(new_registry()), LinkMetrics(new_registry())
    first.stored(1, 0.01)
    assert b"images_received_total 1.0" in render(first.registry)
    assert b"images_received_total 0.0" in render(second.registry)


# ------------------------------------------------- damaged frames and retransmissions


def test_the_first_minute_counts_frames_over_the_time_there_was_not_a_rate() -> None:
    """Finding: 290 damaged frames between two reads a second apart in the first minute
    showed as "damaged 17400.0/min". Now, before a minute has passed, the window is the
    time since the start and the page gives counts over it."""
    history = FrameHistory(100.0, {"damaged": 0, "retransmitted": 0, "sent": 0})
    history.add(101.0, {"damaged": 10, "retransmitted": 1})
    history.add(112.0, {"damaged": 300, "retransmitted": 12})
    window = history.window()
    assert window == FrameWindow(12.0, {"damaged": 300, "retransmitted": 12})
    assert not window.full
    assert "in the last 12 s" in _frame_window(window)
    assert "damaged 300, retransmitted 12" in _frame_window(window)
    assert "/min" not in _frame_window(window)


def test_after_a_minute_the_rate_is_per_minute_over_the_last_minute() -> None:
    """Reads every 5 s (the page's reload) for five minutes, 10 damaged frames and one
    retransmission between reads: the window is the last minute (up to the next read),
    120 damaged and 12 retransmitted a minute, whatever came before it."""
    history = FrameHistory(0.0, {})
    history.add(1.0, {"damaged": 5000, "retransmitted": 400})  # a bad first second
    damaged, resent = 5000, 400
    for t in range(5, 301, 5):
        damaged, resent = damaged + 10, resent + 1
        history.add(float(t), {"damaged": damaged, "retransmitted": resent})
    window = history.window()
    assert window.full and 60.0 <= window.seconds < 65.0, window
    assert window.per_minute("damaged") == pytest.approx(120.0 * 60 / window.seconds)
    assert window.counts == {"damaged": 120, "retransmitted": 12}, window
    text = _frame_window(window)
    assert text == "damaged 120.0/min, retransmitted 12.0/min over the last 60 s", text


def test_reads_far_apart_say_the_window_they_span() -> None:
    """Nobody read for an hour: the rate is over that hour, and the page says so; reads
    many times a second are merged, so the history stays small."""
    history = FrameHistory(0.0, {"damaged": 0})
    history.add(3600.0, {"damaged": 600})
    window = history.window()
    assert window.seconds == 3600.0 and window.per_minute("damaged") == 10.0
    assert _frame_window(window).endswith("over the last 60 min")
    for n in range(10_000):  # 100 reads a second for 100 s, a frame damaged each time
        history.add(3600.0 + n * 0.01, {"damaged": 600 + n})
    assert len(history._reads) <= 62  # a read a second (merge_s) over the last minute
    window = history.window()
    assert window.full and 60.0 <= window.seconds < 61.0, window
    assert window.per_minute("damaged") == pytest.approx(6000.0)

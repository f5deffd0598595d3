"""Settings, one home (issue 10, item 1): one typed tree, one loader, strict tables.

Findings reproduced here (each test failed on the code before ``bridge/settings``):
a typo inside a destination's ``tls = {...}`` table was silently ignored and images went
out in clear text; an unknown key was reported without the nearest known key, and only the
first problem of a file; the file could not hold the link port, the profile or the log
settings, so ``run`` could not be configured by the file alone; ``config show`` did not say
where a value came from; there was no ``config check``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import peers
import pytest

from bridge.cli import main
from bridge.config import load
from bridge.errors import ConfigError

DEST = '[[destination]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 104\n'


def _write(tmp_path: Path, text: str, name: str = "bridge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------ strict tables


def test_a_typo_in_a_tls_table_is_an_error_naming_the_key_and_the_nearest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``tls = { ca_fil = ... }`` was ignored: TLS off, images in clear text."""
    cfg = _write(tmp_path, DEST + 'tls = { ca_fil = "ca.pem" }\n')
    with pytest.raises(ConfigError) as caught:
        load(cfg, env={})
    message = str(caught.value)
    assert str(cfg) in message
    assert "tls.ca_fil" in message and "'ca_file'" in message
    spool = tmp_path / "never"
    assert main(["--config", str(cfg), "forward", "--spool", str(spool)]) == 2
    err = capsys.readouterr().err
    assert "tls.ca_fil" in err and "ca_file" in err
    assert not spool.exists()  # refused before the spool is made, nothing was sent


def test_a_tls_table_without_ca_file_is_an_error(tmp_path: Path) -> None:
    """The same finding by another door: a table naming only our certificate turned TLS off."""
    cfg = _write(tmp_path, DEST + 'tls = { cert_file = "me.pem", key_file = "me.key" }\n')
    with pytest.raises(ConfigError, match=r"destination\[1\]\.tls\.ca_file: required"):
        load(cfg, env={})


@pytest.mark.parametrize(
    ("text", "key", "nearest"),
    [
        ("[forward]\nmax_pdus = 0\n", "forward.max_pdus", "max_pdu"),
        ('[spool]\npaht = "/srv/spool"\n', "spool.paht", "path"),
        ('[link]\nprot = "tcp-listen://127.0.0.1:4010"\n', "link.prot", "port"),
        ('[logging]\nlevle = "info"\n', "logging.levle", "level"),
        ("[forwad]\nmax_pdu = 0\n", "[forwad]", "forward"),
        (DEST.replace("ae_title", "ae_titel"), "destination[1].ae_titel", "ae_title"),
        (DEST + "comitment = true\n", "destination[1].comitment", "commitment"),
        (
            DEST + 'tls = { ca_file = "c", check_hostnme = true }\n',
            "tls.check_hostnme",
            "check_hostname",
        ),
    ],
)
def test_an_unknown_key_anywhere_names_file_key_and_nearest(
    tmp_path: Path, text: str, key: str, nearest: str
) -> None:
    cfg = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(cfg, env={})
    message = str(caught.value)
    assert str(cfg) in message and key in message and f"did you mean {nearest!r}" in message


def test_an_unknown_environment_key_of_a_table_names_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"BRIDGE_FORWARD_DIMSE_TIMOUT.*'dimse_timeout'"):
        load(None, env={"BRIDGE_FORWARD_DIMSE_TIMOUT": "30"})


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: the loader stopped at the first problem; a site fixed its file in rounds."""
    cfg = _write(
        tmp_path,
        "[forward]\nbackoff_cap = 'soon'\nmax_pdus = 0\n[spool]\nretention_days = -1\n"
        + DEST.replace("port = 104", "port = 70000")
        + "tls = { ca_fil = 'ca.pem' }\n",
    )
    with pytest.raises(ConfigError) as caught:
        load(cfg, env={"BRIDGE_MAX_ATTEMPTS": "many"})
    message = str(caught.value)
    keys = ["backoff_cap", "max_pdus", "retention_days", "destination[1].port", "tls.ca_fil"]
    for key in [*keys, "BRIDGE_MAX_ATTEMPTS"]:
        assert key in message
    assert main(["--config", str(cfg), "config", "show"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "acrnema-bridge: configuration: 5 problems:"  # no env in this one
    for key in keys:
        assert [line for line in lines[1:] if key in line and str(cfg) in line], key
    assert "Traceback" not in "\n".join(lines)


def test_values_in_the_units_users_write(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path,
        '[forward]\nbackoff_cap = "2min"\ndimse_timeout = "1h"\n[spool]\nretention_days = "12h"\n',
    )
    settings = load(cfg, env={"BRIDGE_FORWARD_IDLE_TIMEOUT": "500ms"})
    assert settings.forward.backoff_cap == 120.0
    assert settings.forward.dimse_timeout == 3600.0
    assert settings.forward.idle_timeout == 0.5
    assert settings.spool.retention_days == 0.5
    with pytest.raises(ConfigError, match=r"forward\.connect_timeout"):
        load(None, env={"BRIDGE_FORWARD_CONNECT_TIMEOUT": "ten seconds"})


# ------------------------------------------------------------------------- precedence


def test_precedence_default_file_env_flag_and_where_each_came_from(tmp_path: Path) -> None:
    key = "forward.backoff_cap"
    assert load(None, env={}).forward.backoff_cap == 30.0
    assert load(None, env={}).origin(key) == "default"
    cfg = _write(tmp_path, "[forward]\nbackoff_cap = 12\n")
    assert (load(cfg, env={}).forward.backoff_cap, load(cfg, env={}).origin(key)) == (
        12.0,
        f"file {cfg}",
    )
    env = {"BRIDGE_BACKOFF_CAP": "7"}  # the short name of the first releases
    s = load(cfg, env=env)
    assert (s.forward.backoff_cap, s.origin(key)) == (7.0, "env $BRIDGE_BACKOFF_CAP")
    env["BRIDGE_FORWARD_BACKOFF_CAP"] = "5"  # the long name wins over the short one
    s = load(cfg, env=env)
    assert (s.forward.backoff_cap, s.origin(key)) == (5.0, "env $BRIDGE_FORWARD_BACKOFF_CAP")
    s = load(cfg, env=env, flags={key: (3.0, "--backoff-cap")})
    assert (s.forward.backoff_cap, s.origin(key)) == (3.0, "flag --backoff-cap")
    assert s.origin("forward.max_pdu") == "default"
    # $BRIDGE_CONFIG names the file when no path is given
    assert load(None, env={"BRIDGE_CONFIG": str(cfg)}).forward.backoff_cap == 12.0


def test_dest_flags_replace_the_file_destinations(tmp_path: Path) -> None:
    from bridge.cli.common import build_destinations

    cfg = _write(tmp_path, DEST + 'tls = { ca_file = "ca.pem", check_hostname = true }\n')
    settings = load(cfg, env={})
    (pacs,) = build_destinations(settings)
    assert pacs.tls is not None and pacs.tls.check_hostname  # settable in the file now
    assert pacs.tls.ca_file == Path("ca.pem")
    assert main(["--config", str(cfg), "config", "show", "--dest", "OTHER@10.0.0.1:11112"]) == 0


def test_config_show_prints_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(tmp_path, '[spool]\npath = "/srv/spool"\n[link]\nport = "loop://a"\n' + DEST)
    monkeypatch.setenv("BRIDGE_CALLING_AE", "SCANNER_GW")
    argv = ["--config", str(cfg), "--log-format", "json", "config", "show", "--max-lost", "1"]
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    origin = shown["origin"]
    assert shown["spool"]["path"] == "/srv/spool" and origin["spool.path"] == f"file {cfg}"
    assert shown["link"]["port"] == "loop://a" and origin["link.port"] == f"file {cfg}"
    assert origin["forward.calling_ae"] == "env $BRIDGE_CALLING_AE"
    assert shown["forward"]["max_lost"] == 1 and origin["forward.max_lost"] == "flag --max-lost"
    assert origin["logging.format"] == "flag --log-format"
    assert origin["forward.dimse_timeout"] == "default"
    assert origin["destination"] == f"file {cfg}"
    assert shown["destination"][0]["ae_title"] == "PACS"


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "[forward]\nmax_lost = 2\n" + DEST, "good.toml")
    assert main(["config", "check", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: ok"
    bad = _write(tmp_path, "[forward]\nmax_lost = -2\nmax_pdus = 1\n", "bad.toml")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 2 problem(s):" in err
    assert "max_pdus" in err and "'max_pdu'" in err and "forward.max_lost" in err
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


# ------------------------------------------------------------------ run from the file


def test_run_without_a_port_is_one_usage_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "never"
    assert main(["run", "--spool", str(spool)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--port" in err and "[link] port" in err
    assert not spool.exists()


def test_run_is_configured_by_the_file_alone(tmp_path: Path) -> None:
    """A real ``run`` on tcp-listen from a TOML file (port, profile, spool, logging), fed by
    ``emulate`` over TCP with the same profile, stopped by SIGTERM."""
    port = peers.free_port()
    profile = _write(tmp_path, "[datalink]\nstart_word = 23205\n", "site-profile.toml")
    spool = tmp_path / "spool"
    cfg = _write(
        tmp_path,
        f'[link]\nport = "tcp-listen://127.0.0.1:{port}"\nprofile = "{profile}"\n'
        f'ae_title = "SITE_BRIDGE"\n[spool]\npath = "{spool}"\n[logging]\nformat = "json"\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    cli = [sys.executable, "-m", "bridge.cli"]
    service = subprocess.Popen(
        [*cli, "--config", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not peers._port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert service.poll() is None, service.communicate()[1]
            time.sleep(0.05)
        sent = subprocess.run(
            [*cli, "emulate", "--port", f"tcp://127.0.0.1:{port}", "--phantom", "1"]
            + ["--size", "64", "--profile", str(profile), "--called", "SITE_BRIDGE"]
            + ["--attempts", "1", "--timeout", "60"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, err
    assert len(list((spool / "objects").rglob("*.dcm"))) == 1
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("serving the link on tcp-listen" in entry["message"] for entry in logged), err

"""Packaging (issue 12, item 5): the unit, the sysusers file, the example settings and
the alert rules, each checked by the tool that reads it.

* ``packaging/systemd/acrnema-bridge.service`` passes ``systemd-analyze verify`` with no
  remark (it exits 0 even on an unknown key, so its output is checked too) and
  ``systemd-analyze security`` rates it "OK"; ``acrnema-bridge.sysusers`` makes the user
  (``systemd-sysusers --root``). systemd as PID 1 is not needed for either.
* ``packaging/acrnema-bridge/bridge.toml`` passes ``config check``, shows every table, and
  stays valid with any of its commented keys uncommented.
* ``packaging/prometheus/acrnema-bridge.rules.yml`` passes ``promtool check rules`` and
  its unit tests (``promtool test rules``), and names only the bridge's metrics.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import peers

from bridge.settings.tree import TABLES, keys

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
UNIT = PACKAGING / "systemd" / "acrnema-bridge.service"
SYSUSERS = PACKAGING / "systemd" / "acrnema-bridge.sysusers"
EXAMPLE = PACKAGING / "acrnema-bridge" / "bridge.toml"
RULES = PACKAGING / "prometheus" / "acrnema-bridge.rules.yml"
RULES_TEST = PACKAGING / "prometheus" / "acrnema-bridge.rules.test.yml"
DEADLINE_S = 60.0  # only to catch hangs

METRICS = {
    "acrnema_bridge_images_received_total",
    "acrnema_bridge_images_refused_total",
    "acrnema_bridge_objects_spooled_total",
    "acrnema_bridge_deliveries_total",
    "acrnema_bridge_queue_objects",
    "acrnema_bridge_oldest_waiting_seconds",
    "acrnema_bridge_link_up",
    "acrnema_bridge_link_frames_total",
    "acrnema_bridge_worker_up",
    "acrnema_bridge_spool_free_bytes",
}
"""The metric names issue 12 fixes (item 2); the alert rules may use these and ``up``."""


# ------------------------------------------------------------------ the unit


def _unit_keys() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify needs no running systemd, but the ExecStart program must exist: a copy of
    the unit points it at this environment's acrnema-bridge."""
    analyze = peers.require_tool("systemd-analyze")
    program = Path(sys.prefix) / "bin" / "acrnema-bridge"
    assert program.is_file(), program
    text = UNIT.read_text()
    assert "ExecStart=/opt/acrnema-bridge/bin/acrnema-bridge " in text
    copy = tmp_path / "acrnema-bridge.service"
    copy.write_text(text.replace("/opt/acrnema-bridge/bin/acrnema-bridge", str(program)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=DEADLINE_S
    )
    # verify exits 0 on an unknown key or a bad value, with a remark: none is accepted
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done
    rated = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", str(copy)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert rated.returncode == 0, rated.stdout[-2000:]  # exposure 2.0 or less: "OK"


def test_the_unit_is_what_the_service_needs() -> None:
    unit = _unit_keys()
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"] and unit["WatchdogSec"]
    assert unit["User"] == ["acrnema-bridge"] and unit["UMask"] == ["0077"]
    assert unit["StateDirectory"] == ["acrnema-bridge"]
    assert unit["ConfigurationDirectory"] == ["acrnema-bridge"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(unit["RestrictAddressFamilies"][0].split())
    assert {"char-ttyACM rw", "char-ttyUSB rw"} <= set(unit["DeviceAllow"])
    assert unit["SupplementaryGroups"] == ["dialout"]
    # the settings file of ExecStart is the example's home; its spool is in StateDirectory
    assert "--config %E/acrnema-bridge/bridge.toml run" in unit["ExecStart"][0]
    assert 'path = "/var/lib/acrnema-bridge/spool"' in EXAMPLE.read_text()


def test_the_sysusers_file_makes_the_user(tmp_path: Path) -> None:
    sysusers = peers.require_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    user = [line.split(":") for line in passwd.splitlines() if line.startswith("acrnema-bridge:")]
    assert len(user) == 1 and user[0][5] == "/var/lib/acrnema-bridge"
    assert user[0][6].endswith("nologin")
    groups = {line.split(":")[0]: line for line in (tmp_path / "etc" / "group").read_text().split()}
    assert groups["dialout"].split(":")[3] == "acrnema-bridge"


# ------------------------------------------------------------------ the example settings


def _config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


def test_the_example_settings_pass_config_check() -> None:
    done = _config_check(EXAMPLE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{EXAMPLE}: ok"


def test_the_example_settings_show_every_table_and_key() -> None:
    """Every table appears (a commented header for one that is off); every key of an
    active table is written, set or commented at its default."""
    text = EXAMPLE.read_text()
    headers = set(re.findall(r"^#?\[\[?(\w+)\]\]?", text, re.M))
    assert set(TABLES) | {"destination"} <= headers
    active = set(re.findall(r"^\[\[?(\w+)\]\]?", text, re.M))
    written = set(re.findall(r"^#?(\w+) = ", text, re.M))
    for key in keys():
        table, _, name = key.partition(".")
        if table in active and name:
            assert name in written, f"{key} is not in the example"


def test_every_commented_key_of_the_example_is_valid(tmp_path: Path) -> None:
    """Uncommenting a line of an active table never makes the file invalid."""
    lines, active = [], False
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^(#?)\[", line)
        if header:
            active = not header.group(1)
        if active and re.match(r"^#\w+ = ", line):
            line = line[1:]
        lines.append(line)
    uncommented = tmp_path / "bridge.toml"
    uncommented.write_text("\n".join(lines) + "\n")
    done = _config_check(uncommented)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ the alert rules


def test_the_alert_rules_pass_promtool() -> None:
    promtool = peers.require_tool("promtool")
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULES_TEST)]):
        done = subprocess.run(
            [promtool, *command], capture_output=True, text=True, timeout=DEADLINE_S, cwd=ROOT
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_use_the_bridges_metrics() -> None:
    names = set(re.findall(r"\bacrnema_bridge_\w+", RULES.read_text()))
    assert names and names <= METRICS, names - METRICS

"""The link profile (bridge.profile) and `acrnema-bridge profile show|check`."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import cli_profile
from bridge.cli import main
from bridge.errors import ConfigError
from bridge.profile import (
    REFERENCE,
    Profile,
    ProfileError,
    load_profile,
    profile_from_mapping,
    to_toml,
    validate,
)


def _reload(profile: Profile) -> Profile:
    return profile_from_mapping(tomllib.loads(to_toml(profile)))


def test_reference_profile_is_valid_and_uses_every_pin_once() -> None:
    assert validate(REFERENCE) == []
    assert load_profile(None) is REFERENCE
    pins = [p for pair in REFERENCE.physical.pins.values() for p in pair]
    assert sorted(pins) == list(range(1, 51))
    assert [n for n in REFERENCE.physical.pins if n[1:].isdigit()] == [f"D{i}" for i in range(16)]
    assert REFERENCE.application.commands["store"] == (0x0001, 0x8001)
    assert REFERENCE.application.commands["cancel"] == (0x0FFF, 0)
    assert REFERENCE.application.data_set_none == 0x0101


def test_profile_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        REFERENCE.physical.pins["D0"] = (3, 4)  # type: ignore[index]
    with pytest.raises(TypeError):
        REFERENCE.application.commands["store"] = (2, 0x8002)  # type: ignore[index]
    assert REFERENCE.physical.pins["D0"] == (1, 2)


def test_toml_round_trip_of_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "all.toml"
    path.write_text(to_toml(REFERENCE))
    assert load_profile(path) == REFERENCE
    assert to_toml(load_profile(path)) == to_toml(REFERENCE)
    assert "not the standard's text" in to_toml(REFERENCE)


_ODD_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    name=_ODD_TEXT,
    parity=st.sampled_from(["odd", "even", "none"]),
    sequence_bits=st.integers(2, 8),
    window_fraction=st.floats(0, 1),
    payload=st.integers(1, 0xFFFF),
    ack_timeout=st.floats(0.001, 1e6),
    segment_words=st.integers(1, 1 << 19),
    segments=st.integers(1, 2048),
    connect_timeout=st.floats(0.001, 86400),
    command=_ODD_TEXT.filter(lambda s: s not in REFERENCE.application.commands),
    code=st.integers(0x0100, 0x0FFE),
)
def test_toml_round_trip_of_variants(
    name: str,
    parity: str,
    sequence_bits: int,
    window_fraction: float,
    payload: int,
    ack_timeout: float,
    segment_words: int,
    segments: int,
    connect_timeout: float,
    command: str,
    code: int,
) -> None:
    window = 1 + int(window_fraction * (2 ** (sequence_bits - 1) - 2))
    profile = Profile(
        name=name,
        physical=dataclasses.replace(REFERENCE.physical, parity=parity),
        datalink=dataclasses.replace(
            REFERENCE.datalink,
            sequence_bits=sequence_bits,
            window=window,
            max_payload_words=payload,
            ack_timeout_ms=ack_timeout,
        ),
        transport=dataclasses.replace(
            REFERENCE.transport,
            max_segment_bytes=2 * segment_words,
            max_message_bytes=2 * segment_words * segments,
        ),
        session=dataclasses.replace(REFERENCE.session, connect_timeout_s=connect_timeout),
        application=dataclasses.replace(
            REFERENCE.application,
            commands={**REFERENCE.application.commands, command: (code, code | 0x8000)},
        ),
    )
    assert validate(profile) == []
    assert _reload(profile) == profile


def test_partial_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "ct-room-2"\n'
        "[physical.pins]\nD0 = [3, 4]\nD1 = [1, 2]\n"
        "[datalink]\nmax_payload_words = 512\n"
        "[application.commands]\necho = [0x0031, 0x8031]\n"
    )
    profile = load_profile(str(path))
    assert profile.name == "ct-room-2"
    assert profile.physical.pins["D0"] == (3, 4) and profile.physical.pins["D1"] == (1, 2)
    assert profile.physical.pins["D2"] == REFERENCE.physical.pins["D2"]
    assert len(profile.physical.pins) == 25
    assert profile.physical.parity == REFERENCE.physical.parity
    assert profile.datalink == dataclasses.replace(REFERENCE.datalink, max_payload_words=512)
    assert profile.application.commands["echo"] == (0x0031, 0x8031)
    assert profile.application.commands["store"] == (0x0001, 0x8001)
    assert profile.transport == REFERENCE.transport
    assert profile.session == REFERENCE.session
    assert profile_from_mapping({"datalink": {"window": 4}}).name == "custom"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[physical]\nparity = 'sometimes'\n", "physical.parity"),
        ("[physical]\ntext_byte_order = 'middle'\n", "physical.text_byte_order"),
        ("[physical]\nsetup_ns = 0\n", "physical.setup_ns"),
        ("[physical]\nhandshake_timeout_ms = inf\n", "physical.handshake_timeout_ms"),
        ("[physical]\nactive_low = ['NOPE']\n", "physical.active_low: NOPE"),
        ("[physical]\nactive_low = ['REQ', 'REQ']\n", "physical.active_low"),
        ("[physical.pins]\nD3 = [1, 60]\n", "physical.pins.D3"),
        ("[physical.pins]\nD3 = [7, 7]\n", "physical.pins.D3"),
        ("[physical.pins]\nD3 = [1, 2]\n", "pin 1 is already used"),
        ("[physical.pins]\nD3 = ['a', 8]\n", "physical.pins.D3[0]"),
        ("[physical.pins]\nD3 = [7]\n", "physical.pins.D3: expected a list of 2"),
        ("[physical.pins]\nD16 = [49, 50]\n", "physical.pins.D16: the data lines are D0-D15"),
        ("[datalink]\nmax_payload_words = 'many'\n", "datalink.max_payload_words"),
        ("[datalink]\nmax_payload_words = 0\n", "datalink.max_payload_words"),
        ("[datalink]\nmax_payload_words = 70000\n", "datalink.max_payload_words"),
        ("[datalink]\nwindow = 200\n", "datalink.window"),
        ("[datalink]\nsequence_bits = 9\n", "datalink.sequence_bits"),
        ("[datalink.frame_types]\ndata = 0\n", "datalink.frame_types.data"),
        ("[datalink]\ncrc = 'crc-32'\n", "datalink.crc"),
        ("[datalink]\ncrc_init = 0x10000\n", "datalink.crc_init"),
        ("[datalink]\nretry_limit = 0\n", "datalink.retry_limit"),
        ("[datalink]\nack_timeout_ms = 0\n", "datalink.ack_timeout_ms"),
        ("[datalink]\nframes = 3\n", "datalink: unknown key(s) frames"),
        ("[datalink.frame_types]\nack = 1\n", "datalink.frame_types: two frame types"),
        ("[datalink.frame_types]\nack = 16\n", "datalink.frame_types.ack"),
        ("[datalink.frame_types]\nping = 4\n", "datalink.frame_types: exactly"),
        ("[transport]\nmax_segment_bytes = 3\n", "transport.max_segment_bytes"),
        ("[transport]\nmax_message_bytes = 1000\n", "transport.max_message_bytes"),
        ("[session]\nconnect_timeout_s = -1\n", "session.connect_timeout_s"),
        ("[session]\naddress_length = 0\n", "session.address_length"),
        ("[session]\nabort_quiet_s = 0\n", "session.abort_quiet_s"),
        ("[session.pdu_types]\nabort = 1\n", "session.pdu_types: two PDU types"),
        ("[session.pdu_types]\nhello = 9\n", "session.pdu_types: exactly"),
        ("[physical]\nturnaround_ns = -5\n", "physical.turnaround_ns"),
        ("[transport]\nmax_segment_bytes = 2\n", "more than 32768 segments"),
        ("[application.commands]\nstore = [0x0001, 0x8002]\n", "application.commands.store"),
        ("[application.commands]\nstore = ['a', 'b']\n", "application.commands.store[0]"),
        ("[application.commands]\nget = [0x8010, 0]\n", "application.commands.get"),
        ("[application.commands]\nprint = [0x0030, 0x8030]\n", "is also echo"),
        ("[application.statuses]\nsuccess = 0x10000\n", "application.statuses.success"),
        ("[application.statuses]\nbusy = 0xFE00\n", "application.statuses.busy"),
        ("[application]\ndata_set_present = 0x0101\n", "application.data_set"),
        ("[application]\nrecognition_code = ''\n", "application.recognition_code"),
        ("[application]\ncommands = 3\n", "application.commands: expected a table"),
        ("[wire]\nx = 1\n", "unknown section(s) wire"),
        ("physical = 3\n", "physical: must be a table"),
        ("name = 5\n", "name: expected a string"),
        ("name = ''\n", "name: must not be empty"),
        ("not toml =", "not valid TOML"),
    ],
)
def test_invalid_profiles_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert key in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ProfileError) as caught:
        profile_from_mapping({"datalink": {"retry_limit": 0, "crc_init": -1}}, source="x")
    assert len(caught.value.problems) == 2
    assert caught.value.source == "x"


def test_required_lines_and_commands() -> None:
    pins = {k: v for k, v in REFERENCE.physical.pins.items() if k not in ("PARITY", "D7")}
    no_parity = dataclasses.replace(REFERENCE.physical, pins=pins)
    assert validate(dataclasses.replace(REFERENCE, physical=no_parity)) == [
        "physical.pins: missing line(s) D7, PARITY"
    ]
    pins = {k: v for k, v in REFERENCE.physical.pins.items() if k not in ("PARITY", "PERR")}
    unchecked = dataclasses.replace(REFERENCE.physical, pins=pins, parity="none")
    assert validate(dataclasses.replace(REFERENCE, physical=unchecked)) == []
    commands = {k: v for k, v in REFERENCE.application.commands.items() if k != "store"}
    app = dataclasses.replace(REFERENCE.application, commands=commands)
    assert validate(dataclasses.replace(REFERENCE, application=app)) == [
        "application.commands: store is required"
    ]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="acrnema-bridge")
    cli_profile.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.command in cli_profile.COMMANDS
    return cli_profile.run_command(args)


def test_profile_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["profile", "show"]) == 0
    assert profile_from_mapping(tomllib.loads(capsys.readouterr().out)) == REFERENCE
    site = tmp_path / "site.toml"
    site.write_text("[physical]\nparity = 'even'\n")
    assert _run(["profile", "show", str(site)]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["physical"]["parity"] == "even"
    assert shown["datalink"]["window"] == REFERENCE.datalink.window


def test_profile_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[datalink]\nwindow = 4\n")
    assert _run(["profile", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[datalink]\nretry_limit = 0\nwindow = 0\n")
    assert _run(["profile", "check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "2 problem(s)" in err[0]
    assert any("datalink.retry_limit" in line for line in err[1:])
    assert any("datalink.window" in line for line in err[1:])
    assert _run(["profile", "check", str(tmp_path / "missing.toml")]) == 2  # usage error
    assert "missing.toml: no such file" in capsys.readouterr().err


def test_profile_command_of_the_main_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show"]) == 0
    assert profile_from_mapping(tomllib.loads(capsys.readouterr().out)) == REFERENCE


def test_the_example_in_the_docs_is_a_valid_profile() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "link-profile.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert example is not None
    profile = profile_from_mapping(tomllib.loads(example.group(1)))
    assert profile.physical.pins["D0"] == (3, 4)
    assert "not the ACR-NEMA 300 text" in doc

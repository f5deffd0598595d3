"""The link profile (bridge.profile) and `acrnema-bridge profile show|check`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.profile import REFERENCE, load_profile, profile_from_mapping, to_toml, validate


def test_reference_profile_is_valid_and_uses_every_pair_once() -> None:
    assert validate(REFERENCE) == []
    pins = [p for pair in REFERENCE.physical.pins.values() for p in pair]
    assert sorted(pins) == list(range(1, 51))
    assert REFERENCE.application.commands["store"] == (0x0001, 0x8001)


def test_toml_round_trip_of_the_reference() -> None:
    text = to_toml(REFERENCE)
    assert profile_from_mapping(tomllib.loads(text)) == REFERENCE


@settings(max_examples=50, deadline=None)
@given(
    payload=st.integers(1, 65535),
    window=st.integers(1, 127),
    timeout=st.floats(0.001, 1e6, allow_nan=False),
    parity=st.sampled_from(["odd", "even", "none"]),
)
def test_toml_round_trip_of_variants(
    payload: int, window: int, timeout: float, parity: str
) -> None:
    profile = profile_from_mapping(
        {
            "name": "site",
            "physical": {"parity": parity},
            "datalink": {"max_payload_words": payload, "window": window, "ack_timeout_ms": timeout},
        }
    )
    assert profile_from_mapping(tomllib.loads(to_toml(profile))) == profile


def test_partial_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        "[datalink]\nmax_payload_words = 512\n[application.commands]\necho = [0x0031, 0x8031]\n"
    )
    profile = load_profile(path)
    assert profile.datalink.max_payload_words == 512
    assert profile.datalink.window == REFERENCE.datalink.window
    assert profile.application.commands["echo"] == (0x0031, 0x8031)
    assert profile.application.commands["store"] == (0x0001, 0x8001)
    assert profile.physical == REFERENCE.physical


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[physical]\nparity = 'sometimes'\n", "physical.parity"),
        ("[physical.pins]\nD3 = [1, 60]\n", "physical.pins.D3"),
        ("[physical.pins]\nD3 = [1, 2]\n", "pin 1 already used"),
        ("[datalink]\nmax_payload_words = 'many'\n", "datalink.max_payload_words"),
        ("[datalink]\nwindow = 200\n", "datalink.window"),
        ("[datalink]\nframes = 3\n", "unknown key(s) frames"),
        ("[application.commands]\nstore = [0x0001, 0x8002]\n", "application.commands.store"),
        ("[application.commands]\nprint = [0x0030, 0x8030]\n", "also echo"),
        ("[wire]\nx = 1\n", "unknown section(s) wire"),
        ("[session]\nconnect_timeout_s = -1\n", "session.connect_timeout_s"),
        ("not toml =", "not valid TOML"),
    ],
)
def test_invalid_profiles_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert key in str(caught.value) and "bad.toml" in str(caught.value)


def test_profile_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show"]) == 0
    shown = capsys.readouterr().out
    assert profile_from_mapping(tomllib.loads(shown)) == REFERENCE
    good = tmp_path / "good.toml"
    good.write_text(shown)
    assert main(["profile", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[datalink]\nretry_limit = 0\n")
    assert main(["profile", "check", str(bad)]) == 1
    assert "retry_limit" in capsys.readouterr().err

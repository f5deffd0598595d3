"""Channel maps: which probe of a capture carries which bus line, inverted or not.

A map is a TOML file with one ``[channels]`` table, probe name to line::

    [channels]
    CH0 = "D0"
    CH1 = "D1"
    CH17 = { line = "REQ", inverted = true }   # probe on the - leg, or an inverting buffer

``inverted`` is the probe's own inversion (the tap), on top of the profile's
``physical.active_low``. Without a map the reference map applies: each line is read
from the probe named as the line, not inverted (what ``trace export`` and ``emulate
--vcd`` write). :func:`to_lines` turns probe levels into asserted line states.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge.capture.bus import Changes, electrical
from bridge.errors import ConfigError
from bridge.profile import PhysicalSection

__all__ = ["ChannelMap", "load_map", "profile_map", "reference_map", "to_lines"]


@dataclass(frozen=True)
class ChannelMap:
    """Line name -> (probe name, inverted)."""

    lines: Mapping[str, tuple[str, bool]]

    def probes_for(self, ph: PhysicalSection) -> list[str]:
        """The probes to read, in the order of ``ph.bus_lines`` (bit i = line i)."""
        missing = [name for name in ph.bus_lines if name not in self.lines]
        if missing:
            raise ConfigError(f"channel map: no probe for line(s) {', '.join(missing)}")
        return [self.lines[name][0] for name in ph.bus_lines]


def reference_map(ph: PhysicalSection) -> ChannelMap:
    """Each line on the probe of its own name, not inverted."""
    return ChannelMap({name: (name, False) for name in ph.bus_lines})


def map_from_mapping(data: Mapping[str, Any], source: str) -> ChannelMap:
    table = data.get("channels")
    if not isinstance(table, Mapping) or set(data) - {"channels"}:
        raise ConfigError(f"{source}: a channel map has one table, [channels]")
    lines: dict[str, tuple[str, bool]] = {}
    for probe, item in table.items():
        if isinstance(item, str):
            line, inverted = item, False
        elif isinstance(item, Mapping) and isinstance(item.get("line"), str):
            line, inverted = item["line"], item.get("inverted", False)
            if not isinstance(inverted, bool) or set(item) - {"line", "inverted"}:
                raise ConfigError(f"{source}: channels.{probe}: {{line = NAME, inverted = BOOL}}")
        else:
            raise ConfigError(
                f"{source}: channels.{probe}: a line name or {{line = ..., inverted = ...}}"
            )
        if line in lines:
            raise ConfigError(f"{source}: line {line} is on two probes ({lines[line][0]}, {probe})")
        lines[line] = (probe, inverted)
    return ChannelMap(lines)


def load_map(path: str | Path) -> ChannelMap:
    """A channel map from its TOML file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a TOML channel map: {exc}") from exc
    return map_from_mapping(data, str(path))


def profile_map(path: str | Path) -> ChannelMap | None:
    """The ``[channels]`` table a profile file carries (``profile fit`` writes one), or
    None when it has none."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_profile has already said what is wrong with the file
    if "channels" not in data:
        return None
    return map_from_mapping({"channels": data["channels"]}, f"{path} [channels]")


def to_lines(levels: Changes, ph: PhysicalSection, cmap: ChannelMap) -> Changes:
    """Probe levels (bit i = probe of line i, as :meth:`ChannelMap.probes_for` orders
    them) -> asserted line states: probe inversion and ``active_low`` undone."""
    mask = 0
    for i, name in enumerate(ph.bus_lines):
        if cmap.lines[name][1]:
            mask |= 1 << i
    states = electrical(ph, levels.states ^ np.uint64(mask))
    return Changes(levels.times, states)

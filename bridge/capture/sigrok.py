"""sigrok session files (``.sr``): a streaming reader of their logic samples.

A ``.sr`` file is a zip archive: ``metadata`` (INI text: ``samplerate``, ``unitsize``,
``probeN`` names, ``capturefile``) and the samples, ``unitsize`` little-endian bytes
each, bit ``N - 1`` being probe N, in ``logic-1-1``, ``logic-1-2`` ... (or one
``logic-1``). :class:`SrReader` reads the chunks one block at a time and keeps only the
samples where a selected probe changed, as :class:`~bridge.capture.bus.Changes` in ns.
"""

from __future__ import annotations

import configparser
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bridge.capture.bus import Changes
from bridge.errors import CaptureError

__all__ = ["SrReader"]

_RATE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
BLOCK_SAMPLES = 1 << 18


def _samplerate(text: str, path: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgG]?)\s*[Hh]z\s*", text)
    if not match:
        raise CaptureError(f"{path}: unreadable samplerate {text!r}")
    rate = float(match.group(1)) * _RATE[match.group(2).lower()]
    if rate <= 0:
        raise CaptureError(f"{path}: samplerate {text!r} is not positive")
    return rate


def _samples(data: bytes, unitsize: int) -> npt.NDArray[np.uint64]:
    """Little-endian samples of ``unitsize`` bytes as uint64."""
    if unitsize in (1, 2, 4, 8):
        return np.frombuffer(data, f"<u{unitsize}").astype(np.uint64)
    rows = np.frombuffer(data, np.uint8).reshape(-1, unitsize)
    wide = np.zeros((len(rows), 8), np.uint8)
    wide[:, :unitsize] = rows
    return wide.view("<u8").reshape(-1).astype(np.uint64)


class SrReader:
    """A sigrok session file: its probe names (:attr:`probes`) and its changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
            meta = self._zip.read("metadata").decode("utf-8")
        except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
            raise CaptureError(f"{path}: not a sigrok session file: {exc}") from exc
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(meta)
        except configparser.Error as exc:
            raise CaptureError(f"{path}: unreadable metadata: {exc}") from exc
        devices = [s for s in parser.sections() if s.startswith("device")]
        if not devices:
            raise CaptureError(f"{path}: metadata names no device")
        dev = parser[devices[0]]
        try:
            self.unitsize = int(dev.get("unitsize", "1"))
        except ValueError as exc:
            raise CaptureError(f"{path}: bad unitsize") from exc
        if not 1 <= self.unitsize <= 8:
            raise CaptureError(f"{path}: unitsize {self.unitsize} not supported (1 to 8 bytes)")
        self.rate = _samplerate(dev.get("samplerate", ""), self.path)
        self.names: dict[str, int] = {}
        for key, value in dev.items():
            match = re.fullmatch(r"probe(\d+)", key)
            if match:
                self.names[value] = int(match.group(1)) - 1
        base = dev.get("capturefile", "logic-1")
        members = set(self._zip.namelist())
        chunks = sorted(
            (m for m in members if re.fullmatch(re.escape(base) + r"-\d+", m)),
            key=lambda m: int(m.rsplit("-", 1)[1]),
        )
        self.members = chunks or ([base] if base in members else [])
        if not self.members:
            raise CaptureError(f"{path}: no sample data ({base}-N) in the archive")

    @property
    def probes(self) -> list[str]:
        return sorted(self.names, key=self.names.__getitem__)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SrReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def changes(self, selected: Sequence[str], block: int = BLOCK_SAMPLES) -> Iterator[Changes]:
        """Rows where a probe of ``selected`` changed (bit i = ``selected[i]``), in ns."""
        for name in selected:
            if name not in self.names:
                raise CaptureError(
                    f"{self.path}: no probe named {name!r} (probes: {', '.join(self.probes)}; "
                    "a channel map, --map, says which probe is which line)"
                )
        src = [self.names[n] for n in selected]
        index = 0
        prev: np.uint64 | None = None
        wanted = np.uint64(sum(1 << bit for bit in src))
        ns_per = 1e9 / self.rate
        for member in self.members:
            rest = b""
            with self._zip.open(member) as fp:
                while True:
                    try:
                        data = fp.read(block * self.unitsize)
                    except (OSError, zipfile.BadZipFile, EOFError) as exc:
                        raise CaptureError(
                            f"{self.path}: {member} unreadable near sample {index}: {exc}"
                        ) from exc
                    if not data:
                        if rest:
                            raise CaptureError(
                                f"{self.path}: {member} ends inside a sample (sample {index})"
                            )
                        break
                    data = rest + data
                    whole = len(data) - len(data) % self.unitsize
                    rest = data[whole:]
                    if not whole:
                        continue
                    raw = _samples(data[:whole], self.unitsize) & wanted
                    before = np.empty(len(raw), np.uint64)
                    before[0] = raw[0] ^ np.uint64(1) if prev is None else prev
                    before[1:] = raw[:-1]
                    rows = np.flatnonzero(raw != before)  # samples where a wanted probe moved
                    prev = raw[-1]
                    changed = raw[rows]
                    lines = np.zeros(len(rows), np.uint64)
                    for i, bit in enumerate(src):
                        lines |= ((changed >> np.uint64(bit)) & np.uint64(1)) << np.uint64(i)
                    times = ((index + rows) * ns_per).astype(np.int64)
                    index += len(raw)
                    if len(rows):
                        yield Changes(times, lines)

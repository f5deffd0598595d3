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


def _samples(data: bytes, unitsize: int, wanted: int) -> npt.NDArray[np.unsignedinteger]:
    """The ``wanted`` bits of each little-endian sample of ``unitsize`` bytes.

    One strided, unaligned view of the bytes as the next wider unsigned type (a sample
    of 3 bytes read as 4, its neighbour's first byte masked off by ``wanted``), masked
    into an aligned array: one pass, no per-byte copy. The narrowest type that holds
    ``wanted`` keeps the later passes over the samples small.
    """
    width = next(w for w in (1, 2, 4, 8) if w >= unitsize)
    count = len(data) // unitsize
    if width != unitsize:
        data = data + bytes(width - unitsize)  # the last sample's view reads past its end
    view = np.ndarray((count,), f"<u{width}", data, 0, (unitsize,))
    narrow = next(w for w in (1, 2, 4, 8) if wanted < 1 << 8 * w and w <= width)
    kept: npt.NDArray[np.unsignedinteger] = (view & np.array(wanted, view.dtype)).astype(
        f"u{narrow}", copy=False
    )
    return kept


def _runs(src: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first bit in, first bit out, length) of each run of consecutive probes in ``src``
    (``src[i]`` = the sample bit of line bit ``i``): a run moves with one shift."""
    runs: list[tuple[int, int, int]] = []
    for i, bit in enumerate(src):
        if runs and runs[-1][0] + runs[-1][2] == bit and runs[-1][1] + runs[-1][2] == i:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((bit, i, 1))
    return runs


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
        prev: int | None = None
        # a probe the metadata numbers beyond the sample's bits reads as 0
        wanted = sum(1 << bit for bit in src) & ((1 << 8 * self.unitsize) - 1)
        runs = [run for run in _runs(src) if run[0] < 8 * self.unitsize]
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
                    if rest:
                        data = rest + data
                    whole = len(data) - len(data) % self.unitsize
                    rest = data[whole:]
                    if not whole:
                        continue
                    raw = _samples(data[:whole] if rest else data, self.unitsize, wanted)
                    # samples where a wanted probe moved (the first: against the last
                    # sample before it; the capture's first sample always counts)
                    rows = np.flatnonzero(raw[1:] != raw[:-1]) + 1
                    first = int(raw[0])
                    if prev is None or first != prev:
                        rows = np.concatenate([[0], rows])
                    prev = int(raw[-1])
                    changed = raw[rows].astype(np.uint64)
                    if runs == [(0, 0, len(src))]:  # the probes are the sample's low bits
                        lines = changed
                    else:
                        lines = np.zeros(len(rows), np.uint64)
                        for bit, to, length in runs:
                            field = (changed >> np.uint64(bit)) & np.uint64((1 << length) - 1)
                            lines |= field << np.uint64(to)
                    times = ((index + rows) * ns_per).astype(np.int64)
                    index += len(raw)
                    if len(rows):
                        yield Changes(times, lines)

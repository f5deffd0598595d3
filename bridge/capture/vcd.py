"""Value Change Dump (IEEE 1364 §18) of the bus: a writer, and a streaming reader.

:func:`write_vcd` writes :class:`~bridge.capture.bus.Changes` as one 1-bit ``wire`` per
bus line, named as the profile names it (``D0`` ... ``D15``, ``PARITY``, ``REQ``,
``ACK``, ``DIR`` ...), at electrical level (``physical.active_low`` lines inverted),
timescale 1 ns; GTKWave, PulseView and ``sigrok-cli -I vcd`` read it.

:class:`VcdReader` reads any VCD whose signals of interest are 1-bit scalars (or 1-bit
vectors) with identifiers of at most four characters, as logic analysers and simulators
write them: it reads the file in blocks (memory bounded by the block size, whatever the
file's size) and turns each block into changes with numpy, not token by token in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from bridge.capture.bus import Changes
from bridge.errors import CaptureError

__all__ = ["VcdReader", "write_vcd"]

_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1, "ps": 10**-3, "fs": 10**-6}
BLOCK = 8 << 20  # bytes read and parsed at a time


def _ident(i: int) -> str:
    """VCD identifier of signal ``i``: printable characters from ``!``."""
    chars = []
    while True:
        chars.append(chr(33 + i % 94))
        i //= 94
        if not i:
            return "".join(chars)


def write_vcd(
    path: str | Path,
    names: Sequence[str],
    levels: Iterator[Changes] | Changes,
    *,
    comments: Sequence[str] = (),
    module: str = "acrnema",
) -> int:
    """Write ``levels`` (electrical levels, bit i = ``names[i]``) as a VCD; rows written."""
    ids = [_ident(i) for i in range(len(names))]
    chunks = [levels] if isinstance(levels, Changes) else levels
    rows = 0
    with open(path, "w", encoding="ascii", newline="\n") as out:
        out.write("$date acrnema-bridge $end\n$version acrnema-bridge bus model $end\n")
        for text in comments:
            out.write(f"$comment {text} $end\n")
        out.write(f"$timescale 1 ns $end\n$scope module {module} $end\n")
        for ident, name in zip(ids, names, strict=True):
            out.write(f"$var wire 1 {ident} {name} $end\n")
        out.write("$upscope $end\n$enddefinitions $end\n")
        prev: int | None = None
        on = [f"1{i}\n" for i in ids]
        off = [f"0{i}\n" for i in ids]
        for chunk in chunks:
            times = chunk.times.tolist()
            states = chunk.states.tolist()
            parts: list[str] = []
            for t, s in zip(times, states, strict=True):
                if prev is None:
                    parts.append(f"#{t}\n$dumpvars\n")
                    parts += [on[b] if s >> b & 1 else off[b] for b in range(len(ids))]
                    parts.append("$end\n")
                    prev = s
                    continue
                diff = s ^ prev
                if not diff:
                    continue
                parts.append(f"#{t}\n")
                while diff:
                    low = diff & -diff
                    b = low.bit_length() - 1
                    parts.append(on[b] if s & low else off[b])
                    diff ^= low
                prev = s
                rows += 1
            out.write("".join(parts))
    return rows


def _timescale(text: str, path: str) -> float:
    match = re.fullmatch(r"\s*(1|10|100)\s*(s|ms|us|ns|ps|fs)\s*", text)
    if not match:
        raise CaptureError(f"{path}: unsupported $timescale {text.strip()!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


class VcdReader:
    """A VCD file: its signal names (:attr:`probes`) and its changes, block by block."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise CaptureError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        self.scale = 1.0
        self.ids: dict[str, str] = {}  # probe name -> identifier
        self.widths: dict[str, int] = {}
        self._rest = b""
        self._offset = 0
        self._header()

    @property
    def probes(self) -> list[str]:
        return list(self.ids)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VcdReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _header(self) -> None:
        text = b""
        while b"$enddefinitions" not in text:
            block = self._file.read(1 << 16)
            if not block:
                raise CaptureError(f"{self.path}: not a VCD file (no $enddefinitions)")
            text += block
            if len(text) > 64 << 20:
                raise CaptureError(f"{self.path}: VCD header over 64 MiB")
        head, _, rest = text.partition(b"$enddefinitions")
        end = rest.find(b"$end")
        if end < 0:
            more = self._file.read(1 << 16)
            rest += more
            end = rest.find(b"$end")
            if end < 0:
                raise CaptureError(f"{self.path}: $enddefinitions without $end")
        self._rest = rest[end + 4 :]
        self._offset = len(head) + len(b"$enddefinitions") + end + 4
        try:
            header = head.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CaptureError(f"{self.path}: VCD header is not ASCII ({exc})") from exc
        ts = re.search(r"\$timescale(.*?)\$end", header, re.S)
        if ts:
            self.scale = _timescale(ts.group(1), self.path)
        scopes: list[str] = []
        for match in re.finditer(r"\$(scope|upscope|var)\b(.*?)\$end", header, re.S):
            kind, body = match.group(1), match.group(2).split()
            if kind == "scope":
                scopes.append(body[1] if len(body) > 1 else "")
            elif kind == "upscope":
                scopes = scopes[:-1]
            else:
                if len(body) < 4:
                    raise CaptureError(f"{self.path}: malformed $var {' '.join(body)!r}")
                width, ident, name = int(body[1]), body[2], body[3]
                if name in self.ids:
                    name = ".".join([*scopes, name])
                self.ids[name] = ident
                self.widths[name] = width

    def changes(self, selected: Sequence[str], block: int = BLOCK) -> Iterator[Changes]:
        """The changes of the probes ``selected`` (bit i = ``selected[i]``), in ns."""
        keys: list[int] = []
        for name in selected:
            if name not in self.ids:
                raise CaptureError(
                    f"{self.path}: no signal named {name!r} (probes: {', '.join(self.ids)}; "
                    "a channel map, --map, says which probe is which line)"
                )
            if self.widths[name] != 1:
                raise CaptureError(f"{self.path}: signal {name!r} is {self.widths[name]} bits wide")
            ident = self.ids[name].encode("ascii")
            if len(ident) > 4:
                raise CaptureError(f"{self.path}: identifier {ident!r} over 4 characters")
            keys.append(_key(ident))
        if len(selected) > 64:
            raise CaptureError(f"{self.path}: more than 64 signals selected")
        table_keys = np.array(keys, np.int64)
        order = np.argsort(table_keys)
        sorted_keys, sorted_bits = table_keys[order], order
        state = np.uint64(0)
        time = -1
        pending = self._rest
        while True:
            data = self._file.read(block)
            buf = pending + data
            if data:
                cut = max(buf.rfind(b"\n"), buf.rfind(b" "))
                if cut < 0:
                    pending = buf
                    continue
                pending, buf = buf[cut + 1 :], buf[: cut + 1]
            elif not buf:
                return
            else:
                pending = b""
            result, state, time = self._parse(buf, sorted_keys, sorted_bits, state, time)
            self._offset += len(buf)
            if len(result.times):
                yield result
            if not data:
                return

    def _parse(
        self,
        buf: bytes,
        keys: npt.NDArray[np.int64],
        bits: npt.NDArray[np.intp],
        state: np.uint64,
        time: int,
    ) -> tuple[Changes, np.uint64, int]:
        arr = np.frombuffer(buf, np.uint8)
        ws = arr <= 32
        prev_ws = np.concatenate([[True], ws[:-1]])
        next_ws = np.concatenate([ws[1:], [True]])
        starts = np.flatnonzero(~ws & prev_ws)
        ends = np.flatnonzero(~ws & next_ws) + 1
        first = arr[starts]
        length = ends - starts
        # $comment ... $end in the body: drop the tokens between
        is_dollar = first == ord("$")
        if is_dollar.any():
            keep = np.ones(len(starts), bool)
            for i in np.flatnonzero(is_dollar):
                word = bytes(arr[starts[i] : ends[i]])
                if word == b"$comment":
                    j = i + 1
                    while j < len(starts) and bytes(arr[starts[j] : ends[j]]) != b"$end":
                        j += 1
                    keep[i : j + 1] = False
            keep &= ~is_dollar
            starts, ends, first, length = starts[keep], ends[keep], first[keep], length[keep]
        is_time = first == ord("#")
        is_vec = (
            (first == ord("b")) | (first == ord("B")) | (first == ord("r")) | (first == ord("R"))
        )
        # a vector's identifier is the next token: mark it, and give it the vector's value
        vec_idx = np.flatnonzero(is_vec)
        if len(vec_idx) and vec_idx[-1] + 1 >= len(starts):
            at = self._offset + int(starts[vec_idx[-1]])
            raise CaptureError(f"{self.path}: value without identifier at byte {at}")
        value_char = first.copy()
        id_start = starts + 1
        id_len = length - 1
        id_of_vec = vec_idx + 1
        value_char[id_of_vec] = arr[ends[vec_idx] - 1]  # a 1-bit vector: its last digit
        id_start[id_of_vec] = starts[id_of_vec]
        id_len[id_of_vec] = length[id_of_vec]
        is_change = ~is_time & ~is_vec
        is_change[vec_idx] = False
        # timestamps: digits after '#'
        t_idx = np.flatnonzero(is_time)
        t_len = length[t_idx] - 1
        if len(t_idx):
            if (t_len < 1).any() or t_len.max() > 18:
                bad = int(starts[t_idx[np.flatnonzero((t_len < 1) | (t_len > 18))[0]]])
                raise CaptureError(f"{self.path}: bad timestamp at byte {self._offset + bad}")
            values = np.zeros(len(t_idx), np.int64)
            for k in range(int(t_len.max())):
                has = t_len > k
                digit = arr[np.minimum(starts[t_idx] + 1 + k, len(arr) - 1)].astype(np.int64) - 48
                if ((digit < 0) | (digit > 9))[has].any():
                    bad = int(starts[t_idx[np.flatnonzero(has & ((digit < 0) | (digit > 9)))[0]]])
                    raise CaptureError(f"{self.path}: bad timestamp at byte {self._offset + bad}")
                values = np.where(has, values * 10 + digit, values)
            back = np.flatnonzero(np.diff(np.concatenate([[time], values])) < 0)
            if len(back):
                at = self._offset + int(starts[t_idx[int(back[0])]])
                raise CaptureError(f"{self.path}: time goes backwards at byte {at}")
        else:
            values = np.zeros(0, np.int64)
        # the time of each change: the last timestamp before it
        count = np.cumsum(is_time)
        c_idx = np.flatnonzero(is_change)
        which = count[c_idx] - 1
        c_time = np.where(which >= 0, values[np.maximum(which, 0)] if len(values) else time, time)
        if len(c_idx) and (c_time < 0).any():
            bad = int(starts[c_idx[np.flatnonzero(c_time < 0)[0]]])
            raise CaptureError(
                f"{self.path}: value change before any timestamp at byte {self._offset + bad}"
            )
        # identifiers as integer keys (up to 4 characters)
        il = id_len[c_idx]
        key = np.zeros(len(c_idx), np.int64)
        for k in range(4):
            has = il > k
            ch = arr[np.minimum(id_start[c_idx] + k, len(arr) - 1)].astype(np.int64)
            key = np.where(has, key | (ch << (8 * k)), key)
        key = np.where(il > 4, -1, key)
        pos = np.searchsorted(keys, key)
        pos = np.minimum(pos, max(len(keys) - 1, 0))
        known = (keys[pos] == key) if len(keys) else np.zeros(len(key), bool)
        bit = bits[pos][known].astype(np.uint64)
        val = (value_char[c_idx][known] == ord("1")).astype(np.uint64)
        t = c_time[known].astype(np.int64)
        new_time = int(values[-1]) if len(values) else time
        if not len(t):
            return Changes.empty(), state, new_time
        # each change sets a bit; as a toggle of the running state (toggles XOR-accumulate)
        order = np.argsort(bit, kind="stable")
        b_sorted, v_sorted = bit[order], val[order]
        carry = (state >> b_sorted) & np.uint64(1)
        same_group = np.concatenate([[False], b_sorted[1:] == b_sorted[:-1]])
        prev_v = np.where(same_group, np.concatenate([[np.uint64(0)], v_sorted[:-1]]), carry)
        toggle_sorted = (v_sorted != prev_v).astype(np.uint64) << b_sorted
        toggles = np.empty_like(toggle_sorted)
        toggles[order] = toggle_sorted
        states = state ^ np.bitwise_xor.accumulate(toggles)
        last = np.concatenate([t[1:] != t[:-1], [True]])
        times_ns = (t[last] * self.scale).astype(np.int64) if self.scale != 1 else t[last]
        return Changes(times_ns, states[last]), states[-1], new_time


def _key(ident: bytes) -> int:
    return sum(b << (8 * k) for k, b in enumerate(ident))

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
BLOCK = 262144  # bytes read and parsed at a time (small enough to stay in cache)


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
    idle_ns: int = 1000,
) -> int:
    """Write ``levels`` (electrical levels, bit i = ``names[i]``) as a VCD; rows written.

    The dump ends with one more timestamp, ``idle_ns`` after the last change, with no
    change at it: the bus idle, as a capture goes on after the last edge. Readers such
    as sigrok's VCD input (so PulseView and ``sigrok-cli``) only draw a change once a
    later timestamp follows it; without this one, the last edge (in strobe mode the last
    word) would be lost. The text is built with numpy a chunk at a time (memory bounded
    by the chunk, whatever the number of chunks), not change by change in Python.
    """
    if len(names) > 64:
        raise ValueError("write_vcd: at most 64 signals (states are 64-bit)")
    ids = [_ident(i) for i in range(len(names))]
    chunks = [levels] if isinstance(levels, Changes) else levels
    rows = 0
    last: int | None = None
    with open(path, "wb") as out:
        head = ["$date acrnema-bridge $end\n$version acrnema-bridge bus model $end\n"]
        head += [f"$comment {text} $end\n" for text in comments]
        head.append(f"$timescale 1 ns $end\n$scope module {module} $end\n")
        head += [f"$var wire 1 {i} {n} $end\n" for i, n in zip(ids, names, strict=True)]
        head.append("$upscope $end\n$enddefinitions $end\n")
        out.write("".join(head).encode("ascii"))
        prev: int | None = None
        for chunk in chunks:
            for at in range(0, len(chunk.times), _ROWS):
                times = np.asarray(chunk.times[at : at + _ROWS], np.int64)
                states = np.asarray(chunk.states[at : at + _ROWS], np.uint64)
                if not len(times):
                    continue
                if prev is None:
                    s0 = int(states[0])
                    dump = [f"#{int(times[0])}\n$dumpvars\n"]
                    dump += [f"{s0 >> b & 1}{i}\n" for b, i in enumerate(ids)]
                    out.write(("".join(dump) + "$end\n").encode("ascii"))
                    last = int(times[0])
                    prev, times, states = s0, times[1:], states[1:]
                text, prev, written = _rows_text(times, states, prev, len(ids))
                out.write(text)
                rows += written
                if written:
                    last = int(times[-1])
        if last is not None:
            out.write(f"#{last + max(idle_ns, 1)}\n".encode("ascii"))
    return rows


_ROWS = 1 << 16  # rows turned into text at a time
_POW10 = 10 ** np.arange(19, dtype=np.uint64)
_QUADS32 = np.frombuffer("".join(f"{i:04d}" for i in range(10000)).encode(), "<u4")  # "dddd"


def _rows_text(
    times: npt.NDArray[np.int64], states: npt.NDArray[np.uint64], prev: int, nbits: int
) -> tuple[bytes, int, int]:
    """The VCD text of rows ``times``/``states`` after the state ``prev``: ``#t`` then one
    ``<value><id>`` line per line that changed, lowest bit first (one-character ids, as
    :func:`_ident` gives the first 94 signals). Rows that change nothing are left out.
    Returns the text, the last state, and the rows written."""
    if not len(times):
        return b"", prev, 0
    before = np.concatenate([np.array([prev], np.uint64), states[:-1]])
    diff = states ^ before
    keep = diff != 0
    last = int(states[-1])
    if not keep.all():
        times, states, diff = times[keep], states[keep], diff[keep]
    n = len(times)
    if not n:
        return b"", last, 0
    if times.min() < 0:
        raise ValueError("write_vcd: negative time")
    # which lines changed, row by row (row-major: lowest bit first within a row); each
    # row's bits padded to a power of two, so that row and bit are a shift and a mask
    width = 8 << max((nbits + 7) // 8 - 1, 0).bit_length()  # 8, 16, 32 or 64 bits
    octets = diff.astype("<u8").view(np.uint8).reshape(n, 8)[:, : width // 8]
    bits = np.unpackbits(octets, axis=1, bitorder="little")
    flat = np.flatnonzero(bits.view(np.bool_))
    shift = width.bit_length() - 1
    row, bit = flat >> shift, (flat & (width - 1)).astype(np.uint8)
    levels = states.astype("<u8").view(np.uint8).reshape(n, 8)[:, : width // 8]
    value = np.unpackbits(levels, axis=1, bitorder="little").reshape(-1)[flat]
    count = np.bincount(row, minlength=n)
    digits = np.searchsorted(_POW10, times.astype(np.uint64), side="right")
    digits = np.maximum(digits, 1)
    shortest = int(digits.min())
    size = 2 + digits + 3 * count  # "#", digits, "\n", then 3 bytes a change
    start = np.zeros(n, np.int64)
    np.cumsum(size[:-1], out=start[1:])
    # the digits, four at a time from the right, each four one unaligned 32-bit store
    # (``quads``, a view of ``whole`` at every byte offset); a store may reach up to three
    # bytes before a number's first digit, into its "#" and the row before's last change
    # (three before the first row: ``whole``'s lead), all written again below
    whole = np.empty(3 + int(start[-1] + size[-1]), np.uint8)
    buf = whole[3:]
    quads = np.ndarray((len(whole) - 3,), "<u4", whole, 0, (1,))
    rest = times.copy()
    lowest = start + digits  # in ``whole`` (3 bytes on): where the rightmost four begin
    for group in range(0, int(digits.max()), 4):
        rest, quad = np.divmod(rest, 10000)
        if group < shortest:
            quads[lowest - group] = _QUADS32[quad]
        else:  # rows with no digit this far left have none here
            has = digits > group
            quads[(lowest - group)[has]] = _QUADS32[quad[has]]
    buf[start] = ord("#")
    buf[start + 1 + digits] = ord("\n")
    first = np.zeros(n, np.int64)
    np.cumsum(count[:-1], out=first[1:])
    # the j-th change (overall) of row r goes at start[r] + 2 + digits[r] + 3 (j - first[r])
    where = (start + 2 + digits - 3 * first)[row] + 3 * np.arange(len(row))
    buf[where] = value + ord("0")
    buf[where + 1] = bit + 33
    buf[where + 2] = ord("\n")
    return buf.tobytes(), last, n


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
                # before the last timestamp: all the changes at one time in one block (a
                # cut among them made a row of a state the bus never had); else, a long
                # run at one time, at the last whitespace
                cut = _last_time(buf, max(0, len(pending) - 2))
                if len(buf) > 1 << 20 and max(buf.rfind(b"\n"), buf.rfind(b" ")) <= 0:
                    raise CaptureError(
                        f"{self.path}: no whitespace in 1 MiB from byte {self._offset}: "
                        "not a VCD body"
                    )
                if cut <= 0 and len(buf) < _ONE_TIME_MAX:
                    pending = buf  # no timestamp after the first yet: read on
                    continue
                if cut <= 0:
                    cut = max(buf.rfind(b"\n"), buf.rfind(b" "))
                if cut < 0:
                    if len(buf) > 1 << 20:
                        raise CaptureError(
                            f"{self.path}: no whitespace in 1 MiB from byte {self._offset}: "
                            "not a VCD body"
                        )
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
        # buf starts at a token and ends with whitespace; 8 zero bytes of padding let
        # every token be read as one unaligned uint64 (the ``view`` below)
        padded = buf + bytes(8)
        arr = np.frombuffer(padded, np.uint8)[: len(buf)]
        view = np.ndarray((len(buf),), "<u8", padded, 0, (1,))
        lines = not (b" " in buf or b"\r" in buf or b"\t" in buf)  # memchr, not numpy
        starts, ends = _tokens(arr, lines)
        first = arr[starts]
        length = ends - starts
        # $comment ... $end in the body: drop the tokens between
        is_dollar = first == ord("$")
        any_dollar = bool(is_dollar.any())
        if lines and not any_dollar and len(keys) and keys.max() < 256:
            fast = self._parse_lines(arr, view, starts, first, length, keys, bits, state, time)
            if fast is not None:
                return fast
        if any_dollar:
            keep = ~is_dollar
            for i in np.flatnonzero(is_dollar):
                if bytes(arr[starts[i] : ends[i]]) == b"$comment":
                    j = i + 1
                    while j < len(starts) and bytes(arr[starts[j] : ends[j]]) != b"$end":
                        j += 1
                    keep[i : j + 1] = False
            starts, ends, first, length = starts[keep], ends[keep], first[keep], length[keep]
        is_time = first == ord("#")
        is_vec = (first | 0x20 == ord("b")) | (first | 0x20 == ord("r"))
        # a vector's identifier is the next token: it takes the vector's (last) digit
        vec_idx = np.flatnonzero(is_vec)
        if len(vec_idx) and vec_idx[-1] + 1 >= len(starts):
            at = self._offset + int(starts[vec_idx[-1]])
            raise CaptureError(f"{self.path}: value without identifier at byte {at}")
        value_char = first.copy()
        id_start = starts + 1
        id_len = length - 1
        id_of_vec = vec_idx + 1
        value_char[id_of_vec] = arr[ends[vec_idx] - 1]
        id_start[id_of_vec] = starts[id_of_vec]
        id_len[id_of_vec] = length[id_of_vec]
        is_change = ~is_time & ~is_vec
        is_change[id_of_vec] = True
        is_change[vec_idx] = False
        # timestamps: the digits after '#'
        t_idx = np.flatnonzero(is_time)
        values = _numbers(view, starts[t_idx] + 1, length[t_idx] - 1, arr)
        if values is None:
            at = self._offset + _bad_number(arr, starts[t_idx], length[t_idx])
            raise CaptureError(f"{self.path}: bad timestamp at byte {at}")
        back = np.flatnonzero(np.diff(np.concatenate([[time], values])) < 0)
        if len(back):
            at = self._offset + int(starts[t_idx[int(back[0])]])
            raise CaptureError(f"{self.path}: time goes backwards at byte {at}")
        # the time of each change: the last timestamp before it
        c_idx = np.flatnonzero(is_change)
        which = np.cumsum(is_time, dtype=np.int32)[c_idx] - 1
        if len(values):
            c_time = np.where(which >= 0, values[np.maximum(which, 0)], time)
        else:
            c_time = np.full(len(c_idx), time, np.int64)
        if len(c_idx) and c_time[0] < 0:
            at = self._offset + int(starts[c_idx[0]])
            raise CaptureError(f"{self.path}: value change before any timestamp at byte {at}")
        # identifiers (up to 4 characters) as integer keys, looked up among the wanted
        il = id_len[c_idx]
        if len(keys) and keys.max() < 256:  # one-character identifiers: a table look-up
            lut = np.full(256, 255, np.uint8)
            lut[keys] = bits
            found = lut[arr[id_start[c_idx]]]
            known = (found != 255) & (il == 1)
            bit = found[known]
        else:
            raw = view[id_start[c_idx]].astype(np.int64)
            key = np.where(il <= 4, raw & ((np.int64(1) << (8 * np.minimum(il, 4))) - 1), -1)
            pos = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
            known = keys[pos] == key if len(keys) else np.zeros(len(key), bool)
            bit = bits[pos][known].astype(np.uint8)
        val = (value_char[c_idx][known] == ord("1")).astype(np.uint8)
        t = c_time[known].astype(np.int64)
        new_time = int(values[-1]) if len(values) else time
        if not len(t):
            return Changes.empty(), state, new_time
        # each change sets a bit; as a toggle of the running state (toggles XOR-accumulate)
        order = np.argsort(bit, kind="stable")  # radix sort: 8-bit keys
        b_sorted, v_sorted = bit[order], val[order]
        carry = ((state >> b_sorted.astype(np.uint64)) & np.uint64(1)).astype(np.uint8)
        same = np.empty(len(b_sorted), bool)
        same[0] = False
        np.equal(b_sorted[1:], b_sorted[:-1], out=same[1:])
        prev_v = np.where(same, np.concatenate([[0], v_sorted[:-1]]).astype(np.uint8), carry)
        toggles = np.empty(len(t), np.uint64)
        toggles[order] = (v_sorted != prev_v).astype(np.uint64) << b_sorted.astype(np.uint64)
        states = state ^ np.bitwise_xor.accumulate(toggles)
        last = np.empty(len(t), bool)
        last[-1] = True
        np.not_equal(t[1:], t[:-1], out=last[:-1])
        times_ns = (t[last] * self.scale).astype(np.int64) if self.scale != 1 else t[last]
        return Changes(times_ns, states[last]), states[-1], new_time

    def _parse_lines(
        self,
        arr: npt.NDArray[np.uint8],
        view: npt.NDArray[np.uint64],
        starts: npt.NDArray[np.intp],
        first: npt.NDArray[np.uint8],
        length: npt.NDArray[np.intp],
        keys: npt.NDArray[np.int64],
        bits: npt.NDArray[np.intp],
        state: np.uint64,
        time: int,
    ) -> tuple[Changes, np.uint64, int] | None:
        """:meth:`_parse` of a block in the shape writers give: one token a line, no
        ``$`` keyword, no vector, every change of a wanted one-character identifier, each
        one changing its line (a toggle). The same result as the general path, with less
        work: a row per timestamp (no time per change), and the line states by one
        XOR-accumulate of the toggles (no sort by line). None if the block is not in that
        shape: the general path then parses it (and says what is wrong, if anything)."""
        is_time = first == ord("#")
        t_idx = np.flatnonzero(is_time)
        c_idx = np.flatnonzero(~is_time)
        c_first = first[c_idx]
        if not len(c_idx) or not (length[c_idx] == 2).all():
            return None
        if ((c_first | 0x20 == ord("b")) | (c_first | 0x20 == ord("r"))).any():
            return None  # a vector: its value and identifier are two tokens
        lut = np.full(256, 255, np.uint8)
        lut[keys] = bits
        bit = lut[arr[starts[c_idx] + 1].astype(np.intp)]  # (a uint8 index is slow)
        if (bit == 255).any():
            return None
        values = _numbers(view, starts[t_idx] + 1, length[t_idx] - 1, arr)
        if values is None or not len(values) or (t_idx[0] > 0 and time < 0):
            return None
        if (values[0] < time) or (len(values) > 1 and (values[1:] < values[:-1]).any()):
            return None
        # each change a toggle: the state after it is the XOR of the lines toggled so far
        shift = bit.astype(np.uint64)
        states = state ^ np.bitwise_xor.accumulate(np.uint64(1) << shift)
        if not np.array_equal((states >> shift) & np.uint64(1), c_first == ord("1")):
            return None  # some change sets a line to the level it has
        # the changes of timestamp k are those before timestamp k+1 (changes before the
        # first timestamp: the time carried from the block before); a row for each time
        # with a change, the state after its last one
        group_end = np.empty(len(t_idx) + 1, np.intp)
        group_end[:-1] = t_idx - np.arange(len(t_idx))
        group_end[-1] = len(c_idx)
        group_time = np.empty(len(t_idx) + 1, np.int64)
        group_time[0] = time
        group_time[1:] = values
        has = np.empty(len(group_end), bool)
        has[0] = group_end[0] > 0
        np.greater(group_end[1:], group_end[:-1], out=has[1:])
        end, t = group_end[has], group_time[has]
        last = np.empty(len(t), bool)
        last[-1] = True
        np.not_equal(t[1:], t[:-1], out=last[:-1])  # one row a time: its last change
        rows = states[end[last] - 1]
        times_ns = (t[last] * self.scale).astype(np.int64) if self.scale != 1 else t[last]
        return Changes(times_ns, rows), states[-1], int(values[-1])


_ONE_TIME_MAX = 1 << 22  # bytes of changes at one time kept whole (more are cut anyway)


def _last_time(buf: bytes, start: int = 0) -> int:
    """Where the whitespace before the last timestamp of ``buf`` is, at ``start`` or after,
    or -1; when the same time is written more than once in a row (``#5 ... #5``), before
    the first of them, so that all the changes at one time stay together."""
    at = _time_before(buf, start, len(buf))
    if at >= 0 and at + 2 + len(_time_token(buf, at)) >= len(buf):
        at = _time_before(buf, start, at)  # its digits may go on in the next block
    if at < 0:
        return -1
    value = _time_token(buf, at)
    while True:  # the same time earlier, even before ``start``
        earlier = _time_before(buf, 0, at)
        if earlier < 0 or _time_token(buf, earlier) != value:
            return at
        at = earlier


def _time_before(buf: bytes, start: int, end: int) -> int:
    """The whitespace before the last timestamp token (``#`` and a digit) between ``start``
    and ``end``, or -1; a ``#`` identifier after a vector value (``b0101 #1``) is not one."""
    while True:
        hash_at = buf.rfind(b"#", start + 1, end)
        if hash_at < 0:
            return -1
        at = hash_at - 1
        if buf[at] in _SPACE and buf[hash_at + 1 : hash_at + 2].isdigit():
            token = max(buf.rfind(c, max(0, at - 256), at) for c in (b"\n", b" ", b"\t"))
            # no whitespace in 256 bytes before: a long vector value, whose identifier this is
            long_value = token < 0 and at > 256
            if not long_value and buf[token + 1 : token + 2] not in (b"b", b"B", b"r", b"R"):
                return at
        end = hash_at


_SPACE = frozenset(b" \t\n\r")


def _time_token(buf: bytes, at: int) -> bytes:
    """The digits of the timestamp whose ``#`` is at ``at + 1``."""
    end = at + 2
    while end < len(buf) and buf[end : end + 1].isdigit():
        end += 1
    return buf[at + 2 : end]


def _tokens(
    arr: npt.NDArray[np.uint8], lines: bool
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Start and end of every whitespace-separated token; ``arr`` starts at a token or
    whitespace and ends with whitespace. ``lines``: no whitespace but newlines (one token
    a line, what most writers do): the tokens are found from the newlines alone."""
    if lines:
        nl = np.flatnonzero(arr == 10)
        starts = np.empty(len(nl), np.intp)
        starts[0:1] = 0
        starts[1:] = nl[:-1] + 1
        ends = nl
        keep = ends > starts
        if not keep.all():
            starts, ends = starts[keep], ends[keep]
        return starts, ends
    ws = (arr <= 32).view(np.int8)
    edges = np.flatnonzero(np.diff(ws))  # token -> space (+1) and space -> token (-1)
    kinds = np.diff(ws)[edges] if len(edges) else np.zeros(0, np.int8)
    starts = edges[kinds == -1] + 1
    ends = edges[kinds == 1] + 1
    if not ws[0]:
        starts = np.concatenate([[0], starts])
    return starts, ends


_POW8 = np.uint64(10**8)


def _swar8(chunk: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Eight ASCII digits (first in the lowest byte, already minus '0') -> their value."""
    x = ((chunk & np.uint64(0x0F0F0F0F0F0F0F0F)) * np.uint64(2561)) >> np.uint64(8)
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(6553601)) >> np.uint64(16)
    result: npt.NDArray[np.uint64] = (
        (x & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(42949672960001)
    ) >> np.uint64(32)
    return result


_KEEP = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], np.uint64)
_SHIFT = np.array([64 - 8 * n if n else 0 for n in range(9)], np.uint64)


def _digits(
    view: npt.NDArray[np.uint64], at: npt.NDArray[np.intp], count: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.uint64], bool]:
    """The value of ``count`` (0-8) digits at ``at``; and whether all were digits."""
    raw = view[at]
    keep = _KEEP[count]
    # every byte 0x30-0x39: high nibble 3, and the low nibble plus 6 does not reach 0x10
    bad = (raw ^ np.uint64(0x3030303030303030)) & np.uint64(0xF0F0F0F0F0F0F0F0)
    bad |= ((raw & np.uint64(0x0F0F0F0F0F0F0F0F)) + np.uint64(0x0606060606060606)) & np.uint64(
        0x1010101010101010
    )
    ok = not (bad & keep).any()
    digits = (raw & np.uint64(0x0F0F0F0F0F0F0F0F) & keep) << _SHIFT[count]
    return _swar8(digits), ok


def _eight(view: npt.NDArray[np.uint64], at: npt.NDArray[np.intp]) -> npt.NDArray[np.uint64] | None:
    """The value of the eight digits at ``at``; None if any byte is not a digit."""
    x = view[at] - np.uint64(0x3030303030303030)
    # a byte below '0' sets its top bit (the lowest such byte borrows from no other); one
    # above '9' reaches the top bit when 0x76 is added
    if ((x | (x + np.uint64(0x7676767676767676))) & np.uint64(0x8080808080808080)).any():
        return None
    return _swar8(x)


def _numbers(
    view: npt.NDArray[np.uint64],
    at: npt.NDArray[np.intp],
    count: npt.NDArray[np.intp],
    arr: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.int64] | None:
    """Decimal numbers of 1-18 digits at ``at``; None if any is not one. ``arr``: the bytes
    of ``view``, for the fast path of numbers of eight or nine digits (times from 10 ms to
    1 s at 1 ns, the common case: their last eight digits one read, the ninth one byte)."""
    if not len(at):
        return np.zeros(0, np.int64)
    shortest, longest = int(count.min()), int(count.max())
    if shortest < 1 or longest > 18:
        return None
    if shortest >= 8 and longest <= 9 and arr is not None:
        eight = _eight(view, at + count - 8)
        if eight is None:
            return None
        if longest == 8:
            return eight.astype(np.int64)
        ninth = arr[at] - np.uint8(ord("0"))
        if shortest == 8:
            ninth[count == 8] = 0
        if (ninth > 9).any():
            return None
        fast: npt.NDArray[np.int64] = (ninth.astype(np.uint64) * _POW8 + eight).astype(np.int64)
        return fast
    low_n = np.minimum(count, 8)
    low, ok = _digits(view, at + count - low_n, low_n)
    if longest <= 8:
        return low.astype(np.int64) if ok else None
    # the digits before the last eight change rarely in a sorted stream of times: parse
    # them where they differ from the previous number's, carry them forward elsewhere
    high_n = count - low_n
    head = view[at] & _KEEP[np.minimum(high_n, 8)]
    new = np.empty(len(at), bool)
    new[0] = True
    np.not_equal(head[1:], head[:-1], out=new[1:])
    new[1:] |= high_n[1:] != high_n[:-1]
    first = np.flatnonzero(new)
    hi_n = high_n[first]
    mid_n = np.minimum(hi_n, 8)
    mid, ok_mid = _digits(view, at[first] + hi_n - mid_n, mid_n)
    high = mid
    if count.max() > 16:
        top, ok_top = _digits(view, at[first], hi_n - mid_n)
        high = top * _POW8 + mid
        ok = ok and ok_top
    if not (ok and ok_mid):
        return None
    which = np.cumsum(new) - 1
    value: npt.NDArray[np.int64] = (high[which] * _POW8 + low).astype(np.int64)
    return value


def _bad_number(
    arr: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], lengths: npt.NDArray[np.intp]
) -> int:
    """Where the first malformed timestamp is (for the error message)."""
    for s, n in zip(starts.tolist(), lengths.tolist(), strict=True):
        text = bytes(arr[s + 1 : s + n])
        if not (1 <= len(text) <= 18 and text.isdigit()):
            return int(s)
    return int(starts[0]) if len(starts) else 0


def _key(ident: bytes) -> int:
    return sum(b << (8 * k) for k, b in enumerate(ident))

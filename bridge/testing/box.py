"""The emulated interface box: the box protocol on a byte stream, words on a WordPort.

The real box (docs/hardware.md) sits between the host's USB port and the 50-pin link. Its
emulation here sits between a byte stream (the master of a pty, a TCP listener, any
:class:`~bridge.ports.bytestream.ByteStream`) and a word link (one end of ``loop://``, or
any :class:`~bridge.ports.base.WordPort`), so that the whole path runs as in the field::

    bridge (box+serial://PTY) -> box protocol over a real pty through pyserial
        -> EmulatedBox -> loop:// -> emulated scanner (bridge.link.requester)

Two cores play the box, behind one I/O loop (:class:`EmulatedBox`, a thread):

* :class:`BoxModel`, the box in pure Python (sans-I/O, no compiler needed): HELLO/INFO,
  RESET, CONFIGURE, LINE_SET, QUERY, WORDS_OUT into an out ring with positions, gaps and
  overflow as the firmware does them, WORDS_IN within the host's credit, CREDITS and
  LINE_STATE on change and at least once a second, STATS and ERROR reports. Its line side
  is *duplex* only (CONFIGURE's emulation-only flag: words both ways, no bus
  arbitration), which is what a WordPort is; the host opens it with ``?duplex=1``;
* :class:`FirmwareCore`, the firmware's own C core (``firmware/build/libboxcore.so``,
  ``make -C firmware lib``) through ctypes, loaded only when asked for; without the
  library it is a :class:`~bridge.ports.base.PortUnavailableError` that says how to build
  it. :class:`FirmwareBox` is an :class:`EmulatedBox` with it: the real firmware logic
  and the real host driver talking to each other.

:func:`emulated_bench` sets the whole bench up for tests and ``hwtests/``: it yields
``(bridge_url, peer_port)``, the ``box+serial://`` URL the bridge side opens (a stable
symlink to the current pty, as udev gives a USB device) and the WordPort at the scanner's
end of the line, plus ``unplug()`` and ``replug()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np

from bridge.acrnema.physical import WordBuffer, bad_parity
from bridge.box.protocol import (
    LINES,
    MIN_BODY,
    PROTOCOL_VERSION,
    STATS_FIELDS,
    WORDS_HEADER,
    Absent,
    BadFrame,
    BadFrameReason,
    BoxCredits,
    BoxFrameDecoder,
    BoxMessage,
    Bus,
    Capability,
    ConfigField,
    Configure,
    ErrorCode,
    ErrorReport,
    Handshake,
    Hello,
    HostCredits,
    Info,
    LineSet,
    LineState,
    MsgType,
    Parity,
    Query,
    Reply,
    Reset,
    Role,
    Stats,
    Status,
    Unknown,
    WordsIn,
    WordsOut,
    encode_frame,
    max_words_for,
    position_add,
    position_delta,
)
from bridge.ports._buffers import WordQueue, empty_buffer
from bridge.ports.base import LinkLost, PortError, PortUnavailableError, WordPort
from bridge.ports.bytestream import ByteStream
from bridge.ports.loop import loop_pair
from bridge.profile import REFERENCE, Profile, to_toml

__all__ = [
    "EMULATED_CAPABILITIES",
    "BoxCore",
    "BoxModel",
    "EmulatedBench",
    "EmulatedBox",
    "FirmwareBox",
    "FirmwareCore",
    "emulated_bench",
    "load_libboxcore",
]

log = logging.getLogger("bridge.emulator.box")  # the name users' log filters know

EMULATED_CAPABILITIES = (
    Capability.DUPLEX
    | Capability.PERR
    | Capability.POLARITY
    | Capability.SHAPE
    | Capability.PARITY_BYTES
    | Capability.TWO_PHASE
    | Capability.STROBE
)
_MASK = 0xFFFF_FFFF
_ERRORS = 16  # reports queued at most (the firmware's BOX_ERRORS)
_CREDIT_PERIOD_S = 0.1
_KEEPALIVE_S = 1.0
_READY_A = 1 << LINES.index("READY_A")
_READY_B = 1 << LINES.index("READY_B")


class BoxCore(Protocol):
    """What :class:`EmulatedBox` drives: a box's logic, told the time (sans-I/O)."""

    @property
    def ready(self) -> bool:
        """The box's own READY line (as the host set it with LINE_SET)."""

    def feed(self, data: bytes, now: float) -> None:
        """Bytes from the host."""

    def poll(self, now: float) -> None:
        """Run the box's timers and reports."""

    def output(self, max_bytes: int, now: float) -> bytes:
        """Bytes for the host (whole frames over successive calls), b"" for none."""

    def set_peer_ready(self, ready: bool, now: float) -> None:
        """The line's peer's READY line."""

    def line_take(self, max_words: int, now: float) -> WordBuffer:
        """Words the box puts on the line (the peer takes them)."""

    def line_put(self, buffer: WordBuffer, now: float) -> int:
        """Words the peer offers; how many the box took (fewer: it throttles)."""

    def counters(self) -> dict[str, int]:
        """The STATS counters."""

    def close(self) -> None:
        """Release what the core holds."""


def _pins(profile: Profile) -> tuple[tuple[int, int], ...]:
    reference = REFERENCE.physical.pins
    pins = profile.physical.pins
    pairs = (pins.get(name, reference[name]) for name in LINES)
    return tuple((int(plus), int(minus)) for plus, minus in pairs)


CONFIGURE_FIXED = 24  # CONFIGURE's bytes before the bus-shape fields


def _shape_refused(caps: Capability, c: Configure) -> tuple[int, str] | None:
    """The field and the reason why a box with ``caps`` cannot run the bus shape of ``c``
    (firmware/src/box.c ``shape_refused``: the same order, the same words)."""
    if c.handshake is Handshake.TWO_PHASE and not caps & Capability.TWO_PHASE:
        return ConfigField.HANDSHAKE, "two-phase handshake: not on this board (no TWO_PHASE)"
    if c.handshake is Handshake.STROBE and not caps & Capability.STROBE:
        return ConfigField.HANDSHAKE, "strobe handshake: not on this board (no STROBE)"
    if (
        c.handshake is not Handshake.FOUR_PHASE
        and c.parity is not Parity.NONE
        and not c.absent_lines & Absent.PERR
    ):
        mode = "two-phase" if c.handshake is Handshake.TWO_PHASE else "strobe"
        return ConfigField.HANDSHAKE, f"{mode}: no PERR answer; control_lines must omit PERR"
    if c.parity_bytes and c.parity is not Parity.NONE and not caps & Capability.PARITY_BYTES:
        return ConfigField.PARITY_LINES, (
            "two parity lines: this board has no PARITY_HI (SPARE) GPIO"
        )
    if c.absent_lines & (Absent.DIR | Absent.BREQ) and not c.duplex:
        return ConfigField.ABSENT_LINES, (
            "no DIR or no BREQ: the arbiter needs both to hand the bus over"
        )
    return None


class BoxModel:
    """The interface box's logic in Python, with a duplex line side (module doc).

    Frames from the host are handled in order; reports go out by the firmware's priority
    (REPLY, INFO, ERROR, LINE_STATE, CREDITS, STATS, then WORDS_IN), except that a
    LINE_STATE is a snapshot taken when a READY line changes and keeps its place among the
    REPLYs (the firmware composes it when it sends it), and that a LINE_STATE reporting
    the peer's READY down waits for the words taken before the drop (they go first, as
    WORDS_IN within the host's credit; docs/box-protocol.md, section 6). Words toward the line
    wait in an out ring of ``out_words`` (the credit the host gets), words from the line
    in an in ring of ``in_words`` (when it is full the box takes no more: the peer
    waits). Not thread-safe.
    """

    def __init__(
        self,
        *,
        board: str = "emulated box",
        pins: tuple[tuple[int, int], ...] | None = None,
        out_words: int = 16384,
        in_words: int = 16384,
        max_body: int = 4096,
        capabilities: Capability = EMULATED_CAPABILITIES,
        firmware: tuple[int, int, int] = (0, 1, 0),
        version: int = PROTOCOL_VERSION,
    ) -> None:
        self.info = Info(
            version=version,
            firmware=firmware,
            capabilities=capabilities,
            out_words=out_words,
            in_words=in_words,
            max_body=max_body,
            max_words=max_words_for(max_body),
            pins=pins if pins is not None else _pins(REFERENCE),
            board=board,
        )
        self.config = Configure()  # the power-up configuration: not duplex
        self._ready = False
        self.peer_ready = False
        self.stats = dict.fromkeys(STATS_FIELDS, 0)
        self.max_in_ring = 0  # the most words the in ring held (throttling shows here)
        self._decoder = BoxFrameDecoder(max_body=max_body, sender="host")
        self._host_max_body = max_body
        self._tx_seq = 0
        self._host_seq: int | None = None
        self._replies: deque[Reply | LineState] = deque()  # REPLYs and LINE_STATEs, in order
        self._errors: deque[ErrorReport] = deque()
        self._want = {"info": False, "credits": True, "stats": False}
        self._now = 0.0
        self._out = WordQueue()
        self._out_recv = 0  # the WORDS_OUT position expected next
        self._in = WordQueue()
        self._in_sent = 0  # the WORDS_IN position sent next
        self._host_limit = 0
        self._credit_sent: int | None = None
        self._credit_time = 0.0
        self._ls_key: tuple[bool, bool, bool] | None = None
        self._ls_time = 0.0
        self._snapshot(0.0)

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def peer_present(self) -> bool:
        """The peer's READY, or always on a bus without READY lines."""
        return self.peer_ready or bool(self.config.absent_lines & Absent.READY)

    @property
    def active(self) -> bool:
        """Words flow on the line: duplex configured and both READY lines up."""
        return self.config.duplex and self._ready and self.peer_present

    def counters(self) -> dict[str, int]:
        return {k: v & _MASK for k, v in self.stats.items()}

    def close(self) -> None:
        pass

    def _report(self, code: ErrorCode, detail: int, offset: int, value: int) -> None:
        if len(self._errors) >= _ERRORS:
            self.stats["errors_dropped"] += 1
            return
        self._errors.append(ErrorReport(code, detail, offset & _MASK, value & _MASK))

    def _snapshot(self, now: float) -> None:
        """Queue a LINE_STATE of the present levels, after the REPLYs queued before it (the
        host reads what happened in the order it happened)."""
        self._ls_key = (self._ready, self.peer_present, self.active)
        self._ls_time = now
        driven = self._ready and not self.config.absent_lines & Absent.READY
        levels = (_READY_B if driven else 0) | (_READY_A if self.peer_ready else 0)
        bus = Bus.DUPLEX if self.active else Bus.IDLE
        self._replies.append(
            LineState(levels, bus, self._ready, self.peer_present, self.config.role)
        )

    def _changed(self, now: float) -> None:
        """Report the READY lines and the bus if they changed."""
        if (self._ready, self.peer_present, self.active) != self._ls_key:
            self._snapshot(now)

    def _discard_out(self) -> None:
        self.stats["discarded_words"] += self._out.clear()

    def _out_limit(self) -> int:
        return position_add(self._out_recv, self.info.out_words - len(self._out))

    # ------------------------------------------------------------------ host side

    def feed(self, data: bytes, now: float) -> None:
        self._now = now
        for event in self._decoder.feed(data):
            if isinstance(event, BadFrame):
                self._bad_frame(event.reason, event.size)
                continue
            if isinstance(event.message, Hello):
                self._host_seq = None
            elif self._host_seq is not None and event.seq != self._host_seq:
                self._report(ErrorCode.LOST_FRAMES, 0, self._host_seq, event.seq)
                self.stats["lost_frames"] += (event.seq - self._host_seq) & 0xFF
            self._host_seq = (event.seq + 1) & 0xFF
            self._handle(event.message, event.seq)
            self._changed(now)

    def _bad_frame(self, reason: BadFrameReason, size: int) -> None:
        self.stats["bad_frames"] += 1
        self._report(ErrorCode.BAD_FRAME, int(reason), self.stats["bad_frames"], size)

    def _reply(
        self, request: MsgType, seq: int, status: Status = Status.OK, detail: int = 0, why: str = ""
    ) -> None:
        self._replies.append(Reply(request, seq, status, detail, why))

    def _handle(self, message: BoxMessage, seq: int) -> None:
        if isinstance(message, WordsOut):
            self._words_out(message)
        elif isinstance(message, HostCredits):
            if position_delta(message.limit, self._host_limit) > 0:
                self._host_limit = message.limit
        elif isinstance(message, Hello):
            floor = MIN_BODY + WORDS_HEADER + 3
            self._host_max_body = max(floor, min(message.max_body, self.info.max_body))
            if not message.min_version <= self.info.version <= message.max_version:
                self._reply(MsgType.HELLO, seq, Status.UNSUPPORTED_VERSION)
            self._want.update(info=True, credits=True)
            self._snapshot(self._now)
        elif isinstance(message, Configure):
            if not self.info.capabilities & Capability.SHAPE:  # an older box: it ignores them
                message = Configure.parse(message.payload()[:CONFIGURE_FIXED])
            refused = _shape_refused(self.info.capabilities, message)
            if self._ready:
                self._reply(MsgType.CONFIGURE, seq, Status.BUSY)
            elif message.extra:
                self._reply(
                    MsgType.CONFIGURE, seq, Status.UNKNOWN_FIELD, message.extra[0] or 0xFF,
                    "a CONFIGURE field this firmware does not know",
                )  # fmt: skip
            elif refused is not None:
                self._reply(MsgType.CONFIGURE, seq, Status.BAD_PARAMETER, *refused)
            elif not self._config_ok(message):
                self._reply(MsgType.CONFIGURE, seq, Status.BAD_PARAMETER)
            else:
                self.config = message
                self._reply(MsgType.CONFIGURE, seq)
        elif isinstance(message, Reset):
            self._stream_reset()
            if message.defaults:
                self._ready = False
                self.config = Configure()
            self._reply(MsgType.RESET, seq)
        elif isinstance(message, LineSet):
            self._ready = message.ready
            if not message.ready:
                self._discard_out()
            self._reply(MsgType.LINE_SET, seq)
        elif isinstance(message, Query):
            wanted = {
                int(MsgType.INFO): "info",
                int(MsgType.LINE_STATE): "line_state",
                int(MsgType.STATS): "stats",
                int(MsgType.BOX_CREDITS): "credits",
            }.get(int(message.what))
            if wanted is None:
                self._reply(MsgType.QUERY, seq, Status.BAD_PARAMETER)
            elif wanted == "line_state":
                self._snapshot(self._now)
            else:
                self._want[wanted] = True
        elif isinstance(message, Unknown):
            if message.code & 0x80:
                self._bad_frame(BadFrameReason.WRONG_DIRECTION, 0)
            else:  # a request newer than this box
                self._replies.append(Reply(message.code, seq, Status.UNKNOWN_TYPE))
        else:  # a box-side message: the decoder already refuses these
            self._bad_frame(BadFrameReason.WRONG_DIRECTION, 0)

    def _config_ok(self, c: Configure) -> bool:
        caps = self.info.capabilities
        if c.handshake_timeout_us == 0 or c.active_low >> len(LINES):
            return False
        if c.duplex:
            return bool(caps & Capability.DUPLEX)  # no bus: the role does not matter
        if c.role is Role.B and not caps & Capability.ROLE_B:
            return False
        if c.role is Role.A and not caps & Capability.ROLE_A:
            return False
        if c.active_low and not caps & Capability.POLARITY:
            return False
        has_perr = not c.absent_lines & Absent.PERR
        return not (c.parity is not Parity.NONE and has_perr and not caps & Capability.PERR)

    def _stream_reset(self) -> None:
        self._discard_out()
        self._in.clear()
        self._out_recv = self._in_sent = self._host_limit = 0
        self._errors.clear()
        self._want["credits"] = True
        self._snapshot(self._now)

    def _words_out(self, message: WordsOut) -> None:
        n = len(message)
        start = 0
        d = position_delta(message.offset, self._out_recv)
        if d < 0:  # a repeat of words already taken: keep what is new
            if -d >= n:
                return
            start = -d
        elif d > 0:
            self._report(ErrorCode.LOST_WORDS, 0, self._out_recv, message.offset)
            self.stats["lost_words"] += d
            self._out_recv = message.offset
        words, parity = message.words[start:], message.parity[start:]
        count = len(words)
        if not self.active:  # no line is driven toward a side that is gone
            self.stats["discarded_words"] += count
            self._out_recv = position_add(self._out_recv, count)
            return
        take = min(count, self.info.out_words - len(self._out))
        self._out.put(WordBuffer(words[:take], parity[:take]))
        self._out_recv = position_add(self._out_recv, take)
        if take < count:
            self._report(ErrorCode.OVERFLOW, 0, self._out_recv, count - take)
            self.stats["overflow_words"] += count - take
            self._out_recv = position_add(self._out_recv, count - take)

    def poll(self, now: float) -> None:
        self._now = now
        self._changed(now)
        waiting = any(isinstance(m, LineState) for m in self._replies)
        if now - self._ls_time >= _KEEPALIVE_S and not waiting:
            self._snapshot(now)
        limit = self._out_limit()
        if limit != self._credit_sent:
            gained = (limit - (self._credit_sent or 0)) & _MASK
            if (
                gained >= self.info.out_words // 4
                or not len(self._out)
                or now - self._credit_time >= _CREDIT_PERIOD_S
            ):
                self._want["credits"] = True
        elif now - self._credit_time >= _KEEPALIVE_S:
            self._want["credits"] = True

    def output(self, max_bytes: int, now: float) -> bytes:
        out = bytearray()
        while len(out) < max_bytes:
            message = self._next_message(now)
            if message is None:
                break
            out += encode_frame(message, self._tx_seq)
            self._tx_seq = (self._tx_seq + 1) & 0xFF
        return bytes(out)

    def _drop_waits_for_words(self) -> bool:
        """Whether the LINE_STATE next in line reports the peer's READY down while words
        taken from the line before the drop still wait for the host: they go first, within
        its credit (a host discards words that come after the drop, and the peer counts
        them as handed over); REPLYs, INFO, ERRORs, CREDITS and STATS do not wait
        (firmware/src/box.c ``drop_waits_for_words``)."""
        head = self._replies[0] if self._replies else None
        return isinstance(head, LineState) and not head.peer_ready and len(self._in) > 0

    def _next_message(self, now: float) -> BoxMessage | None:
        want = self._want
        waits = self._drop_waits_for_words()
        if self._replies and not waits:
            return self._replies.popleft()
        reply = next((m for m in self._replies if isinstance(m, Reply)), None)
        if reply is not None:  # the LINE_STATE waits for the words, the REPLYs do not
            self._replies.remove(reply)
            return reply
        if want["info"]:
            want["info"] = False
            return self.info
        if self._errors:
            return self._errors.popleft()
        if waits:
            words = self._words_in()
            if words is not None:
                return words
        if want["credits"]:
            want["credits"] = False
            self._credit_sent = self._out_limit()
            self._credit_time = now
            return BoxCredits(self._out_recv, self._credit_sent)
        if want["stats"]:
            want["stats"] = False
            return Stats(**self.counters())
        return self._words_in()

    def _words_in(self) -> WordsIn | None:
        """The next WORDS_IN within the host's credit, None for none."""
        credit = position_delta(self._host_limit, self._in_sent)
        n = min(len(self._in), credit, max_words_for(self._host_max_body))
        if n <= 0:
            return None
        part = self._in.take(n)
        message = WordsIn(self._in_sent, part.words, part.parity)
        self._in_sent = position_add(self._in_sent, n)
        return message

    # ------------------------------------------------------------------ line side

    def set_peer_ready(self, ready: bool, now: float) -> None:
        if ready != self.peer_ready:
            self.peer_ready = ready
            if not ready:
                self._discard_out()  # words in the ring toward a side that is gone
            self._changed(now)

    def line_take(self, max_words: int, now: float) -> WordBuffer:
        if not self.active or not len(self._out):
            return empty_buffer()
        buffer = self._out.take(max_words)
        self.stats["words_out"] += len(buffer.words)
        return buffer

    def line_put(self, buffer: WordBuffer, now: float) -> int:
        if not self.active:
            return 0
        take = min(len(buffer.words), self.info.in_words - len(self._in))
        if take <= 0:
            return 0
        words, parity = buffer.words[:take], buffer.parity[:take]
        if self.config.parity is not Parity.NONE:
            position = self._in_sent + len(self._in)
            bad = bad_parity(words, parity, self.config.parity.name.lower())
            self.stats["perr_in"] += len(bad)
            for index in bad[:_ERRORS].tolist():
                value = int(words[index]) | int(parity[index]) << 16
                self._report(ErrorCode.PARITY, 0, position + index, value)
        self._in.put(WordBuffer(words, parity))
        self.max_in_ring = max(self.max_in_ring, len(self._in))
        self.stats["words_in"] += take
        return take


# --- the firmware's core through ctypes ----------------------------------------------


def _default_library() -> Path:
    return Path(__file__).resolve().parents[2] / "firmware" / "build" / "libboxcore.so"


@functools.lru_cache(maxsize=4)
def load_libboxcore(path: str | None = None) -> ctypes.CDLL:
    """``libboxcore.so`` (``path``, ``$BRIDGE_LIBBOXCORE`` or the source tree's
    ``firmware/build/``) with its function types set; PortUnavailableError if missing."""
    where = Path(path or os.environ.get("BRIDGE_LIBBOXCORE") or _default_library())
    if not where.is_file():
        raise PortUnavailableError(
            f"{where}: libboxcore.so not found: build it with `make -C firmware lib` "
            "(needs a C compiler and make), or set BRIDGE_LIBBOXCORE to its path"
        )
    try:
        lib = ctypes.CDLL(str(where))
    except OSError as exc:
        raise PortUnavailableError(f"{where}: cannot load libboxcore.so: {exc}") from exc
    p, size, u32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32
    for name, args, result in (
        ("boxsim_version", [], ctypes.c_char_p),
        ("boxsim_new", [], p),
        ("boxsim_free", [p], None),
        ("boxsim_host_write", [p, p, size], size),
        ("boxsim_host_read", [p, p, size], size),
        ("boxsim_poll", [p, u32], None),
        ("boxsim_line_take", [p, p, p, size], size),
        ("boxsim_line_put", [p, p, p, size], size),
        ("boxsim_set_peer_lines", [p, u32], None),
        ("boxsim_lines", [p], u32),
        ("boxsim_ready", [p], ctypes.c_int),
        ("boxsim_stat", [p, ctypes.c_int], u32),
    ):
        function = getattr(lib, name)
        function.argtypes = args
        function.restype = result
    return lib


class FirmwareCore:
    """The firmware's C core (libboxcore.so) as a :class:`BoxCore`: the real firmware
    logic, with its line side (8-word engine FIFOs) emulated by ``firmware/sim``.

    The line side plays role B's peer in duplex (READY_A is the peer's line).
    """

    _TAKE = 4096

    def __init__(self, library: str | None = None) -> None:
        self.lib = load_libboxcore(library)
        self.version = self.lib.boxsim_version().decode()
        sim = self.lib.boxsim_new()
        if not sim:
            raise PortError("libboxcore: boxsim_new failed (out of memory)")
        self.sim: int | None = sim
        self._t0 = time.monotonic()
        self._read = ctypes.create_string_buffer(1 << 16)
        self._words = np.zeros(self._TAKE, np.uint16)
        self._parity = np.zeros(self._TAKE, np.uint8)

    def _us(self, now: float) -> int:
        return int((now - self._t0) * 1e6) & _MASK

    @property
    def ready(self) -> bool:
        return bool(self.lib.boxsim_ready(self.sim))  # as the host set it, driven or not

    def feed(self, data: bytes, now: float) -> None:
        self.lib.boxsim_host_write(self.sim, data, len(data))

    def poll(self, now: float) -> None:
        self.lib.boxsim_poll(self.sim, self._us(now))

    def output(self, max_bytes: int, now: float) -> bytes:
        parts = []
        left = max_bytes
        while left > 0:
            n = self.lib.boxsim_host_read(self.sim, self._read, min(left, len(self._read)))
            if not n:
                break
            parts.append(self._read.raw[:n])
            left -= n
        return b"".join(parts)

    def set_peer_ready(self, ready: bool, now: float) -> None:
        self.lib.boxsim_set_peer_lines(self.sim, _READY_A if ready else 0)

    def line_take(self, max_words: int, now: float) -> WordBuffer:
        lib, sim, us = self.lib, self.sim, self._us(now)
        limit = min(max_words, self._TAKE)
        words, parity = self._words.ctypes.data, self._parity.ctypes.data
        got = 0
        while got < limit:  # the engine holds 8 words: one poll refills it
            lib.boxsim_poll(sim, us)
            k = lib.boxsim_line_take(sim, words + 2 * got, parity + got, limit - got)
            if not k:
                break
            got += k
        return WordBuffer(self._words[:got].copy(), self._parity[:got].copy())

    def line_put(self, buffer: WordBuffer, now: float) -> int:
        lib, sim, us = self.lib, self.sim, self._us(now)
        words = np.ascontiguousarray(buffer.words, np.uint16)
        parity = np.ascontiguousarray(buffer.parity, np.uint8)
        at_w, at_p = words.ctypes.data, parity.ctypes.data
        done, total = 0, len(words)
        while done < total:
            k = lib.boxsim_line_put(sim, at_w + 2 * done, at_p + done, total - done)
            lib.boxsim_poll(sim, us)  # the core empties the engine's FIFO into its ring
            if not k:
                break
            done += k
        return done

    def counters(self) -> dict[str, int]:
        return {
            name: int(self.lib.boxsim_stat(self.sim, index))
            for index, name in enumerate(STATS_FIELDS)
        }

    def close(self) -> None:
        sim, self.sim = self.sim, None
        if sim:
            self.lib.boxsim_free(sim)


# --- the I/O loop ---------------------------------------------------------------------


class EmulatedBox:
    """A box in a thread: its core on ``stream`` (the host side) and ``line`` (the link).

    ``stream`` is a :class:`ByteStream` or the URL of one (``pty://``, the default, makes
    a new pty: the host opens :attr:`device`; ``tcp-listen://127.0.0.1:0``: the host
    connects to :attr:`address`); a stream opened from a URL is closed by :meth:`stop`, a
    stream or a line port passed in belongs to the caller. :meth:`stop` drops the box's
    READY on the line (a box without power) and joins the thread. A context manager.
    """

    _READ_BYTES = 1 << 18
    _WRITE_BYTES = 1 << 16
    _IDLE_S = 0.002
    _LINE_WORDS = 1 << 16

    def __init__(
        self,
        line: WordPort,
        stream: ByteStream | str = "pty://",
        *,
        core: BoxCore | None = None,
        name: str = "emulated-box",
    ) -> None:
        from bridge.ports.registry import open_byte_stream

        self.line = line
        self.core: BoxCore = core if core is not None else BoxModel()
        self._own_stream = isinstance(stream, str)
        self.stream = open_byte_stream(stream) if isinstance(stream, str) else stream
        self.name = name
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streams = 0  # host streams seen (a listener accepts a new one)

    @property
    def device(self) -> str:
        """The path the host opens (the pty's slave), for a ``pty://`` stream."""
        device = getattr(self.stream, "device", None)
        if not isinstance(device, str):
            raise PortError(f"{self.stream.url}: not a pty")
        return device

    def host_url(self, **options: str) -> str:
        """The ``box+`` URL the host opens to reach this box (duplex, plus ``options``)."""
        query = "&".join(f"{k}={v}" for k, v in {"duplex": "1", **options}.items())
        address = getattr(self.stream, "address", None)
        if address is not None:
            return f"box+tcp://{address[0]}:{address[1]}?{query}"
        return f"box+serial://{self.device}?{query}"

    @property
    def counters(self) -> dict[str, int]:
        """The box's STATS counters (what it would report)."""
        return self.core.counters()

    def start(self) -> EmulatedBox:
        if self._thread is not None:
            raise PortError(f"{self.name}: already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, drop READY on the line, close a stream opened from a URL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # pragma: no cover - a bug in the loop
                log.error("%s: the box thread does not stop", self.name)
        with contextlib.suppress(PortError):
            self.line.set_ready(False)
        if self._own_stream:
            try:
                self.stream.release()
            except (OSError, ValueError) as exc:
                log.debug("%s: closing the stream: %s", self.name, exc)
            self._own_stream = False
        self.core.close()

    def __enter__(self) -> EmulatedBox:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # reported, not raised: the thread's owner checks .error
            self.error = exc
            log.exception("%s: the box failed", self.name)

    def _loop(self) -> None:
        core, line = self.core, self.line
        line_ready: bool | None = None
        core_peer = False  # the peer's READY as the core was told it
        waiting_in: WordBuffer | None = None  # words from the line the box did not take yet
        to_host = b""  # bytes for the host, written from to_host[sent:]
        sent = 0
        busy = False
        streams = self._streams
        while not self._stop.is_set():
            now = time.monotonic()
            data = self._read(0.0 if busy else self._IDLE_S)
            if self._streams != streams:  # a new host: the rest of a frame for the old one
                streams, to_host, sent = self._streams, b"", 0
            busy = bool(data)
            start = 0
            while start < len(data):  # frame by frame: every READY change reaches the line
                end = data.find(0, start)
                end = len(data) if end < 0 else end + 1
                core.feed(data[start:end], now)
                start = end
                if core.ready != line_ready:
                    line_ready = core.ready
                    line.set_ready(line_ready)
            if core.ready != line_ready:
                line_ready = core.ready
                line.set_ready(line_ready)
            # The words the peer sent before it dropped READY reach the core before the
            # drop does (the line gives them first, then LinkLost): the peer's READY is
            # read before the words are taken, and a drop is told to the core once the
            # line has nothing more from before it and the core took what was waiting.
            peer = line.peer_ready
            drained = lost = False
            if waiting_in is None and core.ready and (peer or core_peer):
                try:
                    got = line.recv(0.0)
                except LinkLost:
                    got, lost = empty_buffer(), True
                drained = not len(got.words)
                waiting_in = got if len(got.words) else None
            if waiting_in is not None:
                taken = core.line_put(waiting_in, now)
                busy = busy or taken > 0
                rest = WordBuffer(waiting_in.words[taken:], waiting_in.parity[taken:])
                waiting_in = rest if len(rest.words) else None
            if lost and core_peer:  # a drop the line reported (the peer may be back)
                core.set_peer_ready(core_peer := False, now)
                core.poll(now)  # the firmware core reads its lines when polled
            if peer != core_peer and (peer or drained or not core.ready):
                core.set_peer_ready(core_peer := peer, now)
            core.poll(now)
            if peer:  # nothing is driven toward a side that is gone
                out = core.line_take(self._LINE_WORDS, now)
                if len(out.words):
                    busy = True
                    with contextlib.suppress(LinkLost):  # it went meanwhile: told next time
                        line.send(out)
            core.poll(now)
            if sent == len(to_host):
                to_host, sent = core.output(self._WRITE_BYTES, now), 0
            if sent < len(to_host):
                written = self._write(memoryview(to_host)[sent:])
                sent += written
                busy = busy or written > 0

    def _read(self, timeout: float) -> bytes:
        stream = self.stream
        try:
            if not stream.connected:
                if not stream.connect(timeout):
                    return b""
                self._streams += 1
            data = stream.read_some(self._READ_BYTES, timeout)
        except (OSError, ValueError) as exc:
            log.info("%s: host stream lost: %s", self.name, exc)
            self._drop_stream()
            return b""
        if data is None:
            log.info("%s: the host closed the stream", self.name)
            self._drop_stream()
            return b""
        return data

    def _write(self, data: memoryview) -> int:
        try:
            return self.stream.write_some(data, 0.0) if self.stream.connected else 0
        except (OSError, ValueError) as exc:
            log.info("%s: host stream lost: %s", self.name, exc)
            self._drop_stream()
            return len(data)  # gone with the stream

    def _drop_stream(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.disconnect()


class FirmwareBox(EmulatedBox):
    """An :class:`EmulatedBox` whose core is the firmware's (libboxcore.so, ctypes)."""

    def __init__(
        self,
        line: WordPort,
        stream: ByteStream | str = "pty://",
        *,
        library: str | None = None,
        name: str = "firmware-box",
    ) -> None:
        core = FirmwareCore(library)
        try:
            super().__init__(line, stream, core=core, name=name)
        except BaseException:
            core.close()
            raise


# --- a whole emulated bench -----------------------------------------------------------


class EmulatedBench(tuple[str, WordPort]):
    """``(bridge_url, peer_port)`` of an emulated bench, with the plug under control.

    ``bridge_url``: the ``box+serial://`` URL the bridge side opens (a symlink that follows
    the box's pty, as udev's ``/dev/serial/by-id`` follows a USB device); ``peer_port``: the
    WordPort at the scanner's end of the line (one end of ``loop://``), for the whole life
    of the bench. :meth:`unplug` takes the box away (its pty closes, its READY drops on
    the line); :meth:`replug` brings a fresh box (power-up state) on a new pty.
    """

    box: EmulatedBox | None
    profile: Profile
    _line: WordPort
    _link: Path
    _firmware: bool

    def __new__(
        cls,
        bridge_url: str,
        peer_port: WordPort,
        *,
        line: WordPort,
        link: Path,
        profile: Profile,
        firmware: bool,
    ) -> EmulatedBench:
        bench = super().__new__(cls, (bridge_url, peer_port))
        bench.box = None
        bench.profile = profile
        bench._line = line
        bench._link = link
        bench._firmware = firmware
        return bench

    @property
    def bridge_url(self) -> str:
        return self[0]

    @property
    def peer_port(self) -> WordPort:
        return self[1]

    def replug(self) -> EmulatedBox:
        """Plug a fresh box in (no-op when one is in)."""
        if self.box is not None:
            return self.box
        box: EmulatedBox
        if self._firmware:
            box = FirmwareBox(self._line)
        else:
            box = EmulatedBox(self._line, core=BoxModel(pins=_pins(self.profile)))
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()
        self._link.symlink_to(box.device)
        self.box = box.start()
        return box

    def unplug(self) -> None:
        """Take the box away: the bridge side's device disappears (no-op when out)."""
        box, self.box = self.box, None
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()
        if box is not None:
            box.stop()


@contextlib.contextmanager
def emulated_bench(
    profile: Profile = REFERENCE, *, firmware: bool = False
) -> Iterator[EmulatedBench]:
    """A whole emulated bench: yields ``(bridge_url, peer_port)`` (:class:`EmulatedBench`).

    The bridge side opens ``bridge_url`` (``box+serial://.../box?duplex=1``, with
    ``profile=FILE`` when ``profile`` is not the reference); the scanner side uses
    ``peer_port``. ``firmware``: the box is the firmware's C core (libboxcore.so) instead
    of :class:`BoxModel`. Everything is closed on exit (the bridge side's port is the
    caller's).
    """
    folder = Path(tempfile.mkdtemp(prefix="acrnema-box-"))
    query = "duplex=1"
    if profile != REFERENCE:
        profile_file = folder / "profile.toml"
        profile_file.write_text(to_toml(profile), encoding="utf-8")
        query += f"&profile={profile_file}"
    line, peer = loop_pair()
    line.set_ready(False)  # the box's READY is down until the host sets it
    bench = EmulatedBench(
        f"box+serial://{folder / 'box'}?{query}",
        peer,
        line=line,
        link=folder / "box",
        profile=profile,
        firmware=firmware,
    )
    try:
        bench.replug()
        yield bench
    finally:
        bench.unplug()
        line.close()
        peer.close()
        shutil.rmtree(folder, ignore_errors=True)

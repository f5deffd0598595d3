"""``box+SCHEME://``: the link through the interface box, over any byte stream.

The interface box (docs/hardware.md) runs the 50-pin link's word handshake; the host talks
to it with the interface-box protocol (docs/box-protocol.md; codec in
:mod:`bridge.ports.boxproto`) over a byte stream: USB CDC (``box+serial:///dev/ttyACM0``),
an RS-422 / 4-wire RS-485 UART (``box+rs485://...``, ``box+ftdi://...``) or TCP to a box
or an emulated box in another process (``box+tcp://HOST:PORT``). ``box+tcp-listen://``
and ``box+pty://`` work too (the box connects, or opens the pty's slave). The inner URL
opens a *byte stream* (:func:`bridge.ports.registry.open_byte_stream`) and keeps its own
options (``baud``, ``rtscts``, ``write_timeout``...). To the stack a :class:`BoxPort` is a
:class:`~bridge.ports.base.WordPort` like ``loop://``.

Two layers, as everywhere in the package (STYLE rule 1):

* :class:`BoxHost`, sans-I/O: bytes and the time in, :data:`HostEvent` out, bytes to
  send out; the start-up handshake (a table of ``(state, message type) -> (handler,
  next state)``, :data:`TRANSITIONS`), credits both ways, stream positions and gaps,
  request retries, the box's reports;
* :class:`BoxPort`, the I/O: reads and writes the stream in the caller's threads (no
  thread of its own), keeps the words that arrived, and keeps the rules of
  :mod:`bridge.ports.base`.

Start-up (docs/box-protocol.md, section 9): ``00``, HELLO; the INFO answer is checked
(protocol version, capabilities, the pin map against the profile's ``physical.pins``):
any mismatch is a :class:`BoxError` naming what differs, never retried. Then RESET
(power-up configuration, READY dropped), CONFIGURE from the profile, CREDITS for
``window`` words, LINE_SET with this side's READY; the link is up when the three REPLYs
say OK. ``peer_ready`` is the LINE_STATE's "peer READY" bit. ``send`` cuts words into
WORDS_OUT frames within the box's credit (waiting for credit up to the stream's
``write_timeout``) and marks the end of each call as a data-link boundary; ``recv``
returns WORDS_IN words in order, checking their positions (a gap is counted, logged and
answered with a STATS query; repeats are dropped) and grants credit as they are taken.
``set_ready(False)`` sends LINE_SET and RESET (the link stack restarts: both streams
restart at 0), ``set_ready(True)`` LINE_SET. ERROR reports are logged (parity at DEBUG,
handshake timeouts at INFO, frame and word losses at WARNING, an overflow at ERROR) and
counted in :attr:`BoxPort.stats`, with the last STATS report as ``box_*`` entries.

Unplug and reconnection (docs/box-protocol.md, "Unplug and reconnection"): a read or
write error, the end of the stream, no REPLY after ``attempts`` tries of
``reply_timeout``, or nothing at all from the box for ``3 * max(reply_timeout, 1 s)``
(it sends CREDITS and LINE_STATE at least once a second) means the box is gone: the stream is
released and ``send``/``recv`` raise :class:`~bridge.ports.base.LinkDown` naming the
device and the reason. :meth:`BoxPort.wait_peer` then reopens the device every ``retry``
seconds until its timeout, redoes the start-up handshake and returns True once the peer
is READY; :class:`bridge.endpoint.Endpoint` resets the stack on the ``LinkDown``, and the
spool and the forwarder never see any of it.

URL options, taken out before the inner URL is opened: ``profile=FILE`` (a link profile;
or pass ``profile`` to :func:`open_box`), ``duplex=1`` (no bus arbitration: an emulated
line side only, such as :class:`bridge.emulator.box.EmulatedBox`), ``role=a|b`` (default
b, the bridge's place; a: the box stands in for a scanner, bench use), ``window`` (words
of credit given to the box, default 65536), ``reply_timeout`` (seconds, default 1),
``retry`` (seconds between reopening attempts, default 0.2).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from bridge.acrnema.physical import WordBuffer
from bridge.errors import ConfigError
from bridge.ports._buffers import WordQueue, as_buffer, empty_buffer
from bridge.ports._url import flag, positive_int, seconds
from bridge.ports.base import MAX_RECV_WORDS, LinkDown, PortError, WordPort
from bridge.ports.boxproto import (
    LINES,
    MAX_BODY,
    PROTOCOL_VERSION,
    BadFrame,
    BoxCredits,
    Capability,
    Configure,
    ErrorCode,
    ErrorReport,
    Frame,
    FrameDecoder,
    Hello,
    HostCredits,
    Info,
    LineSet,
    LineState,
    Message,
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
    position_delta,
    words_messages,
)
from bridge.ports.bytestream import ByteStream
from bridge.profile import REFERENCE, Physical, Profile, load_profile

__all__ = [
    "DEFAULT_WINDOW",
    "TRANSITIONS",
    "BoxError",
    "BoxGone",
    "BoxHost",
    "BoxPort",
    "BoxUp",
    "BoxVersionError",
    "HostEvent",
    "HostState",
    "PeerReady",
    "WordsArrived",
    "check_info",
    "open_box",
    "split_box_url",
]

log = logging.getLogger(__name__)

TRACE = 5  # per-frame traffic, below DEBUG
DEFAULT_WINDOW = 1 << 16
REPLY_TIMEOUT_S = 1.0
ATTEMPTS = 3
RETRY_S = 0.2
CREDIT_KEEPALIVE_S = 1.0  # CREDITS re-sent this often (repairs a lost one on a UART)
_MASK = 0xFFFF_FFFF


class BoxError(PortError):
    """The box answered but cannot serve this host and profile (protocol version, pin
    map, capabilities, a refused CONFIGURE); retrying does not help."""


class BoxVersionError(BoxError):
    """The box speaks no protocol version this host speaks."""


# --- events of the sans-I/O host ------------------------------------------------------


@dataclass(frozen=True)
class BoxUp:
    """The start-up handshake is done: the box is configured and knows our READY."""

    info: Info


@dataclass(frozen=True)
class PeerReady:
    """The peer's READY line, as the box reports it, changed."""

    ready: bool


@dataclass(frozen=True)
class WordsArrived:
    """Words from the link, in order (positions checked)."""

    buffer: WordBuffer


@dataclass(frozen=True)
class BoxGone:
    """The box stopped answering (no REPLY, silence); the stream should be released."""

    reason: str


HostEvent = BoxUp | PeerReady | WordsArrived | BoxGone


class HostState(enum.Enum):
    """The host's side of the start-up handshake (docs/box-protocol.md, section 9)."""

    DOWN = "down"  # no byte stream
    HELLO = "hello"  # 00 and HELLO sent, waiting for INFO
    STARTING = "starting"  # RESET, CONFIGURE, CREDITS, LINE_SET sent, REPLYs awaited
    UP = "up"


Request = Hello | Configure | Reset | LineSet


@dataclass
class _Request:
    """A request waiting for its answer (REPLY; INFO for HELLO)."""

    message: Request
    seq: int
    sent: float
    tries: int = 1


_S = HostState
_BOX_TYPES = [t for t in MsgType if t & 0x80]
_COMMON = {
    MsgType.LINE_STATE: "_on_line_state",
    MsgType.BOX_CREDITS: "_on_credits",
    MsgType.ERROR: "_on_error",
    MsgType.STATS: "_on_stats",
}


def _transitions() -> dict[tuple[HostState, MsgType], tuple[str, HostState | None]]:
    table: dict[tuple[HostState, MsgType], tuple[str, HostState | None]] = {
        (_S.HELLO, MsgType.INFO): ("_on_info", _S.STARTING),
        (_S.HELLO, MsgType.REPLY): ("_on_reply", None),
        (_S.HELLO, MsgType.WORDS_IN): ("_on_stale_words", _S.HELLO),
        (_S.STARTING, MsgType.INFO): ("_ignore", _S.STARTING),
        (_S.STARTING, MsgType.REPLY): ("_on_reply", None),
        (_S.STARTING, MsgType.WORDS_IN): ("_on_words", _S.STARTING),
        (_S.UP, MsgType.INFO): ("_ignore", _S.UP),
        (_S.UP, MsgType.REPLY): ("_on_reply", None),
        (_S.UP, MsgType.WORDS_IN): ("_on_words", _S.UP),
    }
    for state in (_S.HELLO, _S.STARTING, _S.UP):
        for kind, handler in _COMMON.items():
            table[(state, kind)] = (handler, state)
    assert len(table) == 3 * len(_BOX_TYPES), "every box message in every state"
    return table


TRANSITIONS = _transitions()
"""``(state, message type) -> (handler, next state)``; next state None: the handler's
choice (a REPLY may finish the start-up). Every box message type is in it for every
state the host reads in; :class:`Unknown` types are logged and ignored."""


def _firmware(info: Info) -> str:
    return ".".join(str(v) for v in info.firmware)


def check_info(
    info: Info, configure: Configure, physical: Physical, name: str, *, refused: bool = False
) -> None:
    """Raise :class:`BoxError` unless the box of ``info`` can serve ``configure`` with the
    pin map of ``physical`` (docs/box-protocol.md, section 4: HELLO and INFO); ``refused``:
    it answered HELLO with ``UNSUPPORTED_VERSION``."""
    board = f"box {info.board!r} (firmware {_firmware(info)})"
    if refused or info.version != PROTOCOL_VERSION:
        hint = (
            "update acrnema-bridge on this host"
            if info.version > PROTOCOL_VERSION
            else "flash matching firmware (firmware/README.md)"
        )
        raise BoxVersionError(
            f"{name}: {board} speaks box protocol version {info.version}; this host speaks "
            f"{PROTOCOL_VERSION} to {PROTOCOL_VERSION}: {hint}"
        )
    need = [Capability.DUPLEX] if configure.duplex else []
    if not configure.duplex:
        need.append(Capability.ROLE_A if configure.role is Role.A else Capability.ROLE_B)
    if configure.parity is not Parity.NONE:
        need.append(Capability.PERR)
    if configure.active_low:
        need.append(Capability.POLARITY)
    missing = [c.name for c in need if not info.capabilities & c]
    if missing:
        has = ", ".join(str(c.name) for c in Capability if info.capabilities & c) or "none"
        hint = ""
        if "ROLE_B" in missing and info.capabilities & Capability.DUPLEX:
            hint = " (an emulated line side runs duplex: add ?duplex=1 to the URL)"
        raise BoxError(
            f"{name}: {board} lacks capability {', '.join(str(m) for m in missing)} "
            f"(it has {has}){hint}"
        )
    differ = []
    for index, line in enumerate(LINES):
        want = physical.pins.get(line)
        have = tuple(info.pins[index])
        if want is not None and tuple(want) != have:
            differ.append(f"{line} on pins {have[0]}/{have[1]} (profile: {want[0]}/{want[1]})")
    if differ:
        raise BoxError(
            f"{name}: the pin map of {board} differs from the profile's physical.pins: "
            f"{'; '.join(differ)}. A box cannot move a line: use an adapter cable or a "
            "board variant (docs/hardware.md), or a profile for this box"
        )


class BoxHost:
    """The host's side of the interface-box protocol, sans-I/O.

    :meth:`connect` starts a new byte stream (``00`` and HELLO go out), :meth:`receive`
    takes bytes as they come, :meth:`handle_timer` is called now and then (retries,
    silence, credit keep-alive; :meth:`next_deadline` says when), :meth:`data_to_send`
    hands out the bytes to write. :meth:`send_words` queues words within the box's
    credit, :meth:`consumed` grants credit for words taken. Not thread-safe: the port
    serialises calls.
    """

    def __init__(
        self,
        name: str,
        profile: Profile = REFERENCE,
        *,
        role: Role = Role.B,
        duplex: bool = False,
        window: int = DEFAULT_WINDOW,
        max_body: int = MAX_BODY,
        reply_timeout: float = REPLY_TIMEOUT_S,
        attempts: int = ATTEMPTS,
    ) -> None:
        if not 1 <= window <= 1 << 30:
            raise ValueError(f"window: 1 to 2**30 words, got {window}")
        self.name = name
        self.profile = profile
        self.configure = Configure.from_profile(profile.physical, role=role, duplex=duplex)
        self.window = window
        self.max_body = max_body
        self.reply_timeout = reply_timeout
        self.attempts = attempts
        self.silence = 3 * max(reply_timeout, CREDIT_KEEPALIVE_S)
        self.state = HostState.DOWN
        self.info: Info | None = None
        self.ready = True  # this side's READY, as the user wants it
        self.peer_ready = False
        self.line_state: LineState | None = None
        self.box_stats: Stats | None = None
        self.stats: dict[str, int] = {
            "frames_in": 0,
            "frames_out": 0,
            "bad_frames": 0,
            "lost_frames": 0,
            "words_in": 0,
            "words_out": 0,
            "gaps": 0,
            "lost_words": 0,
            "repeated_words": 0,
            "over_credit": 0,
            "stale_words": 0,
            "errors": 0,
            "resent_requests": 0,
            "handshakes": 0,
        }
        self._out = bytearray()
        self._decoder = FrameDecoder(max_body=max_body, sender="box")
        self._seq = 0
        self._box_seq: int | None = None
        self._hello: _Request | None = None
        self._pending: dict[int, _Request] = {}
        self._starting: set[int] = set()
        self._version_refused = False
        self._reset_seq: int | None = None
        self._streams_valid = False
        self._max_words_out = 0
        self._out_pos = 0
        self._box_limit = 0
        self._in_pos = 0
        self._consumed = 0
        self._granted = 0
        self._credit_time = 0.0
        self._last_rx = 0.0

    # ------------------------------------------------------------------ the stream

    def connect(self, now: float) -> None:
        """A new byte stream: forget the old one, send ``00`` and HELLO."""
        self._reset_session()
        self.state = HostState.HELLO
        self._last_rx = now
        self.stats["handshakes"] += 1
        self._out += b"\0"
        hello = Hello(max_body=self.max_body)
        self._hello = _Request(hello, self._emit(hello), now)

    def disconnect(self) -> None:
        """The byte stream is gone."""
        self._reset_session()
        self.state = HostState.DOWN

    def _reset_session(self) -> None:
        self._out.clear()
        self._decoder.reset()
        self._seq = 0
        self._box_seq = None
        self._hello = None
        self._pending.clear()
        self._starting.clear()
        self._version_refused = False
        self._reset_seq = None
        self._streams_valid = False
        self.peer_ready = False
        self.line_state = None

    @property
    def active(self) -> bool:
        """Whether there is a session with a box (a stream, HELLO sent)."""
        return self.state is not HostState.DOWN

    def data_to_send(self) -> bytes:
        """The bytes to write now (and forget)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def _emit(self, message: Message) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        self._out += encode_frame(message, seq)
        self.stats["frames_out"] += 1
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s: -> %s seq %d", self.name, type(message).__name__, seq)
        return seq

    def _request(self, message: Request, now: float) -> int:
        seq = self._emit(message)
        self._pending[seq] = _Request(message, seq, now)
        return seq

    # ------------------------------------------------------------------ bytes in

    def receive(self, data: bytes | bytearray | memoryview, now: float) -> list[HostEvent]:
        """Act on bytes from the box; the events they bring. Raises :class:`BoxError`."""
        if self.state is HostState.DOWN or not len(data):
            return []
        self._last_rx = now
        events: list[HostEvent] = []
        for item in self._decoder.feed(data):
            if isinstance(item, BadFrame):
                self.stats["bad_frames"] += 1
                level = logging.WARNING if self._box_seq is not None else logging.DEBUG
                log.log(level, "%s: bad frame from the box dropped: %s", self.name, item.text)
                continue  # (before the first good frame: the end of one sent before we came)
            self._check_seq(item)
            self.stats["frames_in"] += 1
            events += self._dispatch(item.message, now)
            if not self.active:
                break  # the box is gone: the rest belongs to no session
        return events

    def _check_seq(self, frame: Frame) -> None:
        expected = self._box_seq
        self._box_seq = (frame.seq + 1) & 0xFF
        if expected is not None and frame.seq != expected:
            self.stats["lost_frames"] += (frame.seq - expected) & 0xFF
            log.warning(
                "%s: frames from the box lost (seq %d expected, %d came)",
                self.name,
                expected,
                frame.seq,
            )

    def _dispatch(self, message: Message, now: float) -> list[HostEvent]:
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s: <- %s", self.name, type(message).__name__)
        if isinstance(message, Unknown):
            log.debug("%s: message type %02XH from the box ignored", self.name, message.code)
            return []
        handler, next_state = TRANSITIONS[(self.state, message.TYPE)]
        events: list[HostEvent] = getattr(self, handler)(message, now)
        if next_state is not None and self.state is not HostState.DOWN:
            self.state = next_state
        return events

    def _ignore(self, message: Message, now: float) -> list[HostEvent]:
        return []

    def _on_info(self, info: Info, now: float) -> list[HostEvent]:
        self.info = info
        self._hello = None
        check_info(
            info, self.configure, self.profile.physical, self.name, refused=self._version_refused
        )
        self._max_words_out = max_words_for(min(info.max_body, MAX_BODY))
        if self._max_words_out < 1:
            raise BoxError(f"{self.name}: the box takes bodies of {info.max_body} bytes only")
        log.debug(
            "%s: INFO: box %r firmware %s, protocol %d, rings %d/%d words, max body %d",
            self.name,
            info.board,
            _firmware(info),
            info.version,
            info.out_words,
            info.in_words,
            info.max_body,
        )
        self._reset_seq = self._request(Reset(defaults=True), now)
        self._emit(HostCredits(0, self.window))
        self._starting = {
            self._reset_seq,
            self._request(self.configure, now),
            self._request(LineSet(self.ready), now),
        }
        return []

    def _on_reply(self, reply: Reply, now: float) -> list[HostEvent]:
        if reply.request == MsgType.HELLO:
            if reply.status is Status.UNSUPPORTED_VERSION:
                self._version_refused = True  # the INFO that follows says which version
            return []
        request = self._pending.pop(reply.request_seq, None)
        if request is None or int(request.message.TYPE) != int(reply.request):
            log.debug("%s: REPLY to an old request ignored", self.name)
            return []
        kind = MsgType(int(reply.request))
        if reply.status is not Status.OK:
            if kind is MsgType.CONFIGURE:
                raise BoxError(
                    f"{self.name}: the box refused CONFIGURE ({reply.status.name}) for the "
                    f"profile's physical layer: {self.configure}"
                )
            if kind in (MsgType.RESET, MsgType.LINE_SET):
                raise BoxError(f"{self.name}: the box refused {kind.name} ({reply.status.name})")
            log.warning("%s: the box answered %s to %s", self.name, reply.status.name, kind.name)
        if kind is MsgType.RESET and reply.request_seq == self._reset_seq:
            self._restart_streams(now)
        self._starting.discard(reply.request_seq)
        if self.state is HostState.STARTING and not self._starting:
            self.state = HostState.UP
            assert self.info is not None
            return [BoxUp(self.info)]
        return []

    def _restart_streams(self, now: float) -> None:
        """After the REPLY to the last RESET: both streams at 0, our credit as sent."""
        self._reset_seq = None
        self._streams_valid = True
        self._out_pos = self._box_limit = 0
        self._in_pos = self._consumed = 0
        self._granted = self.window
        self._credit_time = now

    def _on_line_state(self, state: LineState, now: float) -> list[HostEvent]:
        self.line_state = state
        if (
            self.state is HostState.UP
            and state.ready != self.ready
            and not any(isinstance(r.message, LineSet) for r in self._pending.values())
        ):
            self.disconnect()  # the box forgot what we set: it restarted
            return [BoxGone("the box lost its state (it restarted?)")]
        events: list[HostEvent] = []
        if state.peer_ready != self.peer_ready:
            self.peer_ready = state.peer_ready
            events.append(PeerReady(state.peer_ready))
        return events

    def _on_credits(self, credits: BoxCredits, now: float) -> list[HostEvent]:
        valid = self._streams_valid and self._reset_seq is None
        if valid and position_delta(credits.limit, self._box_limit) > 0:
            self._box_limit = credits.limit
        return []

    def _on_error(self, report: ErrorReport, now: float) -> list[HostEvent]:
        self.stats["errors"] += 1
        key = f"error_{report.code.name.lower()}"
        self.stats[key] = self.stats.get(key, 0) + 1
        level = {
            ErrorCode.PARITY: logging.DEBUG,
            ErrorCode.TIMEOUT: logging.INFO,
            ErrorCode.OVERFLOW: logging.ERROR,
        }.get(report.code, logging.WARNING)
        log.log(
            level,
            "%s: the box reports %s (detail %d, offset %d, value %d)",
            self.name,
            report.code.name,
            report.detail,
            report.offset,
            report.value,
        )
        return []

    def _on_stats(self, stats: Stats, now: float) -> list[HostEvent]:
        self.box_stats = stats
        for key, value in vars(stats).items():
            self.stats[f"box_{key}"] = value
        return []

    def _on_stale_words(self, words: WordsIn, now: float) -> list[HostEvent]:
        self.stats["stale_words"] += len(words)
        return []

    def _on_words(self, message: WordsIn, now: float) -> list[HostEvent]:
        if not self._streams_valid or self._reset_seq is not None:
            return self._on_stale_words(message, now)  # sent before our RESET took effect
        n = len(message)
        words, parity = message.words, message.parity
        d = position_delta(message.offset, self._in_pos)
        if d < 0:
            skip = min(n, -d)
            self.stats["repeated_words"] += skip
            words, parity = words[skip:], parity[skip:]
        elif d > 0:
            self.stats["gaps"] += 1
            self.stats["lost_words"] += d
            self._consumed = (self._consumed + d) & _MASK  # those positions never come
            log.warning(
                "%s: %d words from the link lost on the way (position %d expected, %d came)",
                self.name,
                d,
                self._in_pos,
                message.offset,
            )
            self._emit(Query(MsgType.STATS))
        end = (message.offset + n) & _MASK
        if position_delta(end, self._in_pos) > 0:
            self._in_pos = end
        over = position_delta(end, self._granted)
        if over > 0 and len(words):
            self.stats["over_credit"] += min(over, len(words))
            log.warning("%s: the box sent %d words beyond its credit", self.name, over)
        if not len(words):
            return []
        self.stats["words_in"] += len(words)
        return [WordsArrived(WordBuffer(words, parity))]

    # ------------------------------------------------------------------ time

    def handle_timer(self, now: float) -> list[HostEvent]:
        """Retries, silence and credit keep-alive due at ``now``."""
        if self.state is HostState.DOWN:
            return []
        if now - self._last_rx > self.silence:
            self.disconnect()
            return [BoxGone(f"nothing from the box for {self.silence:g} s")]
        for request in [self._hello, *self._pending.values()]:
            if request is None or now - request.sent < self.reply_timeout:
                continue
            kind = request.message.TYPE.name
            if request.tries >= self.attempts:
                answer = "INFO" if request is self._hello else "REPLY"
                self.disconnect()
                return [
                    BoxGone(
                        f"no {answer} to {kind} within {self.reply_timeout:g} s, "
                        f"{request.tries} tries"
                    )
                ]
            self._resend(request, now)
        if (
            self.state is HostState.UP
            and self._streams_valid
            and now - self._credit_time > CREDIT_KEEPALIVE_S
        ):
            self._grant(now)
        return []

    def _resend(self, request: _Request, now: float) -> None:
        self.stats["resent_requests"] += 1
        log.info("%s: no answer to %s: sent again", self.name, type(request.message).__name__)
        old = request.seq
        request.seq = self._emit(request.message)
        request.sent = now
        request.tries += 1
        if request is self._hello:
            return
        del self._pending[old]
        self._pending[request.seq] = request
        if old in self._starting:
            self._starting.discard(old)
            self._starting.add(request.seq)
        if isinstance(request.message, Reset):
            self._reset_seq = request.seq  # it resets the box's credit again: send ours again
            self._emit(HostCredits(0, self.window))

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has something to do next (None: nothing)."""
        if self.state is HostState.DOWN:
            return None
        times = [self._last_rx + self.silence]
        times += [r.sent + self.reply_timeout for r in [self._hello, *self._pending.values()] if r]
        if self.state is HostState.UP and self._streams_valid:
            times.append(self._credit_time + CREDIT_KEEPALIVE_S)
        return min(times)

    # ------------------------------------------------------------------ words

    @property
    def link_up(self) -> bool:
        """Whether words can go both ways: up, streams valid, both READY lines."""
        return (
            self.state is HostState.UP
            and self._streams_valid
            and self._reset_seq is None
            and self.ready
            and self.peer_ready
        )

    @property
    def credit(self) -> int:
        """How many words :meth:`send_words` may queue now."""
        if not self.link_up:
            return 0
        return max(0, position_delta(self._box_limit, self._out_pos))

    def send_words(self, buffer: WordBuffer, *, boundary: bool = True) -> int:
        """Queue the first words of ``buffer`` within the credit; how many.

        ``boundary``: the end of ``buffer`` ends a data-link frame (the bus may change
        hands after it); set on the last WORDS_OUT frame only if all of it went.
        """
        n = min(len(buffer.words), self.credit)
        if n <= 0:
            return 0
        messages = words_messages(
            WordsOut,
            self._out_pos,
            buffer.words[:n],
            buffer.parity[:n],
            max_words=self._max_words_out,
            boundary=boundary and n == len(buffer.words),
        )
        for message in messages:
            self._emit(message)
        self._out_pos = (self._out_pos + n) & _MASK
        self.stats["words_out"] += n
        return n

    def consumed(self, count: int, now: float) -> None:
        """``count`` words arrived are taken (or discarded): grant credit for more."""
        self._consumed = (self._consumed + count) & _MASK
        if not self._streams_valid or self._reset_seq is not None:
            return
        limit = (self._consumed + self.window) & _MASK
        if position_delta(limit, self._granted) >= max(1, self.window // 4):
            self._grant(now)

    def _grant(self, now: float) -> None:
        self._granted = (self._consumed + self.window) & _MASK
        self._credit_time = now
        self._emit(HostCredits(self._in_pos, self._granted))

    def set_ready(self, ready: bool, now: float) -> None:
        """Drive this side's READY; dropping it also restarts both streams (RESET)."""
        self.ready = ready
        if self.state not in (HostState.STARTING, HostState.UP):
            return  # the start-up's LINE_SET carries it
        self._request(LineSet(ready), now)
        if not ready:
            self._reset_seq = self._request(Reset(), now)
            self._emit(HostCredits(0, self.window))

    def query(self, what: MsgType, now: float) -> None:
        """Ask for a report (STATS, LINE_STATE, INFO or CREDITS)."""
        if self.state is not HostState.DOWN:
            self._emit(Query(what))


# --- the port -------------------------------------------------------------------------


class BoxPort(WordPort):
    """A :class:`~bridge.ports.base.WordPort` through the interface box (module doc)."""

    _SLICE_S = 0.05
    _READ_BYTES = 1 << 18

    def __init__(
        self,
        url: str,
        stream: ByteStream,
        profile: Profile = REFERENCE,
        *,
        role: Role = Role.B,
        duplex: bool = False,
        window: int = DEFAULT_WINDOW,
        reply_timeout: float = REPLY_TIMEOUT_S,
        retry: float = RETRY_S,
    ) -> None:
        self.url = url
        self.stream = stream
        self.profile = profile
        self.retry = retry
        self.host = BoxHost(
            url, profile, role=role, duplex=duplex, window=window, reply_timeout=reply_timeout
        )
        self.discarded = 0  # words discarded: arrived while a READY line was down
        self._queue = WordQueue()
        self._read_lock = threading.Lock()  # the reading side: the stream's input
        self._write_lock = threading.Lock()  # the stream's output, frames whole and in order
        self._cond = threading.Condition()  # guards the host and the state below
        self._closed = False
        self._connected = False
        self._drop_unreported = False
        self._drop_text = ""
        self._down_reason = f"the interface box on {stream.url} is not connected yet"
        self._gen = 0  # bumped each time the stream is lost
        self._released_gen = 0
        self._next_try = 0.0
        if stream.connected:
            with self._read_lock:
                self._stream_up()

    # ------------------------------------------------------------------ WordPort API

    @property
    def peer_ready(self) -> bool:
        return not self._closed and self._connected and self.host.link_up

    @property
    def connected(self) -> bool:
        """Whether the byte stream to the box is there now."""
        return self._connected

    @property
    def info(self) -> Info | None:
        """The box's INFO (what it is and can do), once it answered HELLO."""
        return self.host.info

    @property
    def stats(self) -> dict[str, int]:
        """Counters: frames, words, gaps, the box's ERROR reports (``error_*``) and its
        last STATS report (``box_*``); :meth:`query_stats` asks for a fresh one."""
        with self._cond:
            return {**self.host.stats, "discarded": self.discarded}

    def query_stats(self) -> None:
        """Ask the box for its counters (they arrive as ``box_*`` in :attr:`stats`)."""
        self._check_open()
        with self._cond:
            self.host.query(MsgType.STATS, time.monotonic())
        with contextlib.suppress(LinkDown):
            self._flush(wait=False)

    def send(self, buffer: WordBuffer) -> None:
        self._check_open()
        if self._read_lock.acquire(blocking=False):  # learn of a dropped READY
            try:
                self._pump(0.0)
            finally:
                self._read_lock.release()
        with self._cond:
            self._check_link()
        buffer = as_buffer(buffer)
        total = len(buffer.words)
        done = 0
        last_progress = time.monotonic()
        while done < total:
            with self._cond:
                self._check_link()
                part = WordBuffer(buffer.words[done:], buffer.parity[done:])
                sent = self.host.send_words(part, boundary=True)
            if sent:
                done += sent
                last_progress = time.monotonic()
                self._flush(wait=True)
                continue
            if time.monotonic() - last_progress > self.stream.write_timeout:
                with self._cond:
                    self.host.peer_ready = False
                log.info("%s: no credit from the box for %g s", self.url, self.stream.write_timeout)
                raise LinkDown(
                    f"{self.url}: the peer stopped reading (no credit from the box for "
                    f"{self.stream.write_timeout:g} s)"
                )
            self._wait_for_input(self._SLICE_S)

    def recv(self, timeout: float) -> WordBuffer:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._read_lock:
            self._pump(0.0)
            while True:
                with self._cond:
                    self._check_link()
                    if len(self._queue):
                        buffer = self._queue.take(MAX_RECV_WORDS)
                        self.host.consumed(len(buffer.words), time.monotonic())
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    return empty_buffer()
                self._pump(min(left, self._SLICE_S))
                self._check_open()
        with contextlib.suppress(LinkDown):  # the credit goes with the next stream's start
            self._flush(wait=False)
        return buffer

    def set_ready(self, ready: bool) -> None:
        self._check_open()
        with self._cond:
            self.host.set_ready(ready, time.monotonic())
            if not ready:
                self._discard_queue()
        with contextlib.suppress(LinkDown):  # the stream is gone: a new one starts with it
            self._flush(wait=True)

    def wait_peer(self, timeout: float) -> bool:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._read_lock:
            while True:
                self._check_open()
                now = time.monotonic()
                left = deadline - now
                if not self._connected:
                    self._reap()
                    if now < self._next_try:
                        if left <= 0:
                            return False
                        time.sleep(min(left, self._next_try - now))
                        continue
                    if self._try_connect(max(0.0, min(left, 1.0))):
                        self._stream_up()
                    else:
                        self._next_try = time.monotonic() + self.retry
                        if left <= 0:
                            return False
                    continue
                self._pump(0.0)
                with self._cond:
                    if self.peer_ready:
                        self._drop_unreported = False
                        return True
                if left <= 0:
                    return False
                self._pump(min(left, self._SLICE_S))

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            goodbye = self._connected and self.host.state in (HostState.STARTING, HostState.UP)
            if goodbye:  # the box drops READY: the peer sees the link go
                self.host.set_ready(False, time.monotonic())
        if goodbye and self._write_lock.acquire(timeout=0.5):
            try:
                with self._cond:
                    data, gen = self.host.data_to_send(), self._gen
                self._write(data, gen, stall=0.2, closing=True)
            except LinkDown:
                pass
            finally:
                self._write_lock.release()
        self.stream.abort()
        with self._read_lock, self._write_lock, self._cond:
            self._connected = False
            self.host.disconnect()
            self._queue.clear()
            try:
                self.stream.release()
            except (OSError, ValueError) as exc:
                log.debug("%s: closing: %s", self.url, exc)
        log.debug("%s: closed", self.url)

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise PortError(f"{self.url}: the port is closed")

    def _check_link(self) -> None:
        """LinkDown unless words can flow (condition held); a drop is told once."""
        if self._closed:
            raise PortError(f"{self.url}: the port is closed")
        if self._drop_unreported:
            self._drop_unreported = False
            raise LinkDown(f"{self.url}: {self._drop_text}")
        if not self.host.ready:
            raise LinkDown(f"{self.url}: this side's READY is dropped")
        if not self._connected:
            raise LinkDown(f"{self.url}: {self._down_reason}")
        if self.host.state is not HostState.UP:
            raise LinkDown(f"{self.url}: the interface box is starting up")
        if not self.host.peer_ready:
            raise LinkDown(f"{self.url}: the peer is not READY")
        if not self.host.link_up:
            raise LinkDown(f"{self.url}: the link is restarting")

    def _discard_queue(self) -> None:
        """Forget the words waiting (condition held); they count as taken."""
        count = self._queue.clear()
        self.discarded += count
        self.host.consumed(count, time.monotonic())

    def _try_connect(self, timeout: float) -> bool:
        try:
            return self.stream.connect(timeout)
        except (OSError, ValueError) as exc:
            log.debug("%s: no stream: %s", self.url, exc)
            return False

    def _reap(self) -> None:
        """Release a lost stream (read lock held)."""
        if self._released_gen != self._gen:
            with self._write_lock:
                self._released_gen = self._gen
                try:
                    self.stream.disconnect()
                except (OSError, ValueError) as exc:
                    log.debug("%s: releasing the stream: %s", self.url, exc)

    def _stream_up(self) -> None:
        """A new stream (read lock held): start the handshake."""
        with self._cond:
            self._connected = True
            self._released_gen = self._gen
            self._queue.clear()
            self.host.connect(time.monotonic())
        log.debug("%s: stream up, HELLO sent", self.url)
        with contextlib.suppress(LinkDown):  # lost at once: wait_peer tries again
            self._flush(wait=True)

    def _lost(self, reason: str) -> None:
        """The box is gone (any thread); the reader releases the stream later."""
        with self._cond:
            if not self._connected or self._closed:
                return
            self._connected = False
            self._gen += 1
            if self.host.state is not HostState.DOWN:
                self.host.disconnect()
            self._down_reason = (
                f"the interface box on {self.stream.url} is gone ({reason}); "
                f"wait_peer() reopens it every {self.retry:g} s"
            )
            if not self._drop_unreported:
                self._drop_unreported = True
                self._drop_text = self._down_reason
            self._discard_queue()
            self._cond.notify_all()
        log.warning("%s: %s", self.url, self._down_reason)
        self.stream.abort()

    def _pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` and act on it (read lock held)."""
        if not self._connected:
            self._reap()
            if not (self.stream.accept_in_recv and self._try_connect(0.0)):
                return
            self._stream_up()
        wait = timeout
        while True:
            try:
                data = self.stream.read_some(self._READ_BYTES, wait)
            except (OSError, ValueError) as exc:
                self._lost(f"read failed: {exc}")
                return
            if data is None:
                self._lost("end of stream: the device closed")
                return
            if not self._act(data):
                return
            if not data or len(self._queue) >= 2 * self.host.window:
                break
            wait = 0.0
        with contextlib.suppress(LinkDown):  # recorded by _lost: the caller learns of it
            self._flush(wait=False)

    def _act(self, data: bytes) -> bool:
        """Feed ``data`` and the time to the host, act on the events; False if lost."""
        gone: str | None = None
        fatal: BoxError | None = None
        with self._cond:
            now = time.monotonic()
            try:
                events = self.host.receive(data, now) + self.host.handle_timer(now)
            except BoxError as exc:
                events, fatal = [], exc
            for event in events:
                if isinstance(event, WordsArrived):
                    if self.host.ready and self.host.peer_ready:
                        self._queue.put(event.buffer)
                    else:  # no side takes words while a READY line is down
                        self.discarded += len(event.buffer.words)
                        self.host.consumed(len(event.buffer.words), now)
                elif isinstance(event, PeerReady):
                    if event.ready:
                        log.info("%s: the peer is READY", self.url)
                    else:
                        log.info("%s: the peer dropped READY", self.url)
                        self._drop_unreported = True
                        self._drop_text = "the peer dropped READY"
                        self._discard_queue()
                elif isinstance(event, BoxUp):
                    log.info(
                        "%s: interface box %r (firmware %s, protocol %d) up",
                        self.url,
                        event.info.board,
                        _firmware(event.info),
                        event.info.version,
                    )
                elif isinstance(event, BoxGone):
                    gone = event.reason
            self._cond.notify_all()
        if fatal is not None:
            self._lost(str(fatal))
            raise fatal
        if gone is not None:
            self._lost(gone)
            return False
        return True

    def _wait_for_input(self, timeout: float) -> None:
        """Wait for something from the box: read it ourselves, or let the reader do it."""
        if self._read_lock.acquire(blocking=False):
            try:
                self._pump(timeout)
            finally:
                self._read_lock.release()
        else:
            with self._cond:
                self._cond.wait(timeout)

    def _flush(self, *, wait: bool) -> None:
        """Write what the host has to send; ``wait``: for the write lock too."""
        while True:
            if not self._write_lock.acquire(blocking=wait):
                return
            try:
                while True:
                    with self._cond:
                        data, gen = self.host.data_to_send(), self._gen
                    if not data:
                        break
                    self._write(data, gen, stall=self.stream.write_timeout)
            finally:
                self._write_lock.release()
            with self._cond:  # another thread may have added bytes while we held the lock
                if not self.host.has_output or not self._connected:
                    return
            wait = False

    def _write(self, data: bytes, gen: int, *, stall: float, closing: bool = False) -> None:
        """Write all of ``data`` to the stream (write lock held), or LinkDown."""
        view = memoryview(data)
        done = 0
        last_progress = time.monotonic()
        while done < len(view):
            if gen != self._gen or not self._connected:
                raise LinkDown(f"{self.url}: {self._down_reason}")
            if self._closed and not closing:
                raise PortError(f"{self.url}: the port was closed")
            try:
                written = self.stream.write_some(view[done:], self._SLICE_S)
            except (OSError, ValueError) as exc:
                self._lost(f"write failed: {exc}")
                raise LinkDown(f"{self.url}: {self._down_reason}") from exc
            now = time.monotonic()
            if written:
                done += written
                last_progress = now
            elif now - last_progress > stall:
                self._lost(f"the box took nothing for {stall:g} s")
                raise LinkDown(f"{self.url}: {self._down_reason}")


# --- URLs -----------------------------------------------------------------------------


def _role(text: str) -> Role:
    try:
        return Role[text.upper()]
    except KeyError:
        raise ValueError("a or b") from None


_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "profile": str,
    "duplex": flag,
    "role": _role,
    "window": positive_int,
    "reply_timeout": seconds,
    "retry": seconds,
}


def split_box_url(url: str) -> tuple[str, dict[str, Any]]:
    """``box+URL?opts`` -> (the inner byte stream's URL with its own options, box options)."""
    if not url.startswith("box+"):
        raise PortError(f"{url}: not a box+ URL")
    base, sep, query = url[len("box+") :].partition("?")
    options: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    for name, text in parse_qsl(query, keep_blank_values=True):
        if name not in _OPTIONS:
            kept.append((name, text))
            continue
        try:
            options[name] = _OPTIONS[name](text)
        except ValueError as exc:
            raise PortError(f"{url}: option {name}={text!r}: {exc}") from exc
    if sep and kept:
        base += "?" + urlencode(kept)
    if not base or "://" not in base:
        raise PortError(f"{url}: give the byte stream, as in box+serial:///dev/ttyACM0")
    return base, options


def open_box(url: str, profile: Profile | None = None) -> BoxPort:
    """Open ``box+SCHEME://...`` (module doc); ``profile`` (or ``?profile=FILE``) gives the
    physical layer the box is configured for and the pin map it must have."""
    from bridge.ports.registry import open_byte_stream

    inner, options = split_box_url(url)
    if "profile" in options:
        try:
            from_url = load_profile(options["profile"])
        except ConfigError as exc:
            raise PortError(f"{url}: {exc}") from exc
        if profile is not None and profile != from_url:
            raise PortError(f"{url}: a profile in the URL and another one given")
        profile = from_url
    try:
        stream = open_byte_stream(inner)
    except PortError as exc:
        if "unknown option" in str(exc):
            raise PortError(f"{exc}; box+ options: {', '.join(_OPTIONS)}") from exc
        raise
    try:
        return BoxPort(
            url,
            stream,
            profile or REFERENCE,
            role=options.get("role", Role.B),
            duplex=options.get("duplex", False),
            window=options.get("window", DEFAULT_WINDOW),
            reply_timeout=options.get("reply_timeout", REPLY_TIMEOUT_S),
            retry=options.get("retry", RETRY_S),
        )
    except ValueError as exc:
        stream.release()
        raise PortError(f"{url}: {exc}") from exc
    except BaseException:
        stream.release()
        raise

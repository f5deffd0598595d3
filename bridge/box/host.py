"""The host's side of the interface-box protocol, sans-I/O (docs/box-protocol.md).

:class:`BoxHost` is an engine of the one shape (:mod:`bridge.engine`): bytes from the box
and the time in, events out (:class:`BoxUp`, :class:`~bridge.engine.PeerReady`,
:class:`~bridge.engine.WordsArrived`, :class:`BoxGone`), the bytes to write out. It does
the start-up handshake (a state table of the one idiom, :mod:`bridge.acrnema.table`:
``(state, input) -> Rule(handler, next state, description)``, :data:`HOST_TABLE`),
credits both ways, stream positions and gaps, request retries and
the box's reports. It owns no stream and no thread: :class:`bridge.ports.box.BoxPort`
runs it over a byte stream with the one threaded driver of :mod:`bridge.ports.driver`.

Start-up (docs/box-protocol.md, section 9): ``00``, HELLO; the INFO answer is checked
(protocol version, capabilities, the pin map against the profile's ``physical.pins``):
any mismatch is a :class:`BoxError` naming what differs, never retried. Then RESET
(power-up configuration, READY dropped), CONFIGURE from the profile, CREDITS for
``window`` words, LINE_SET with this side's READY; the link is up when the three REPLYs
say OK. A missing REPLY after ``attempts`` tries of ``reply_timeout``, or nothing at all
from the box for ``3 * max(reply_timeout, 1 s)`` (it sends CREDITS and LINE_STATE at least
once a second), means the box is gone (:class:`BoxGone`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.acrnema.physical import WordBuffer
from bridge.acrnema.table import Rule, Table
from bridge.box.protocol import (
    LINES,
    MAX_BODY,
    PROTOCOL_VERSION,
    BadFrame,
    BoxCredits,
    BoxFrame,
    BoxFrameDecoder,
    BoxMessage,
    Capability,
    ConfigField,
    Configure,
    ErrorCode,
    ErrorReport,
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
    words_messages,
)
from bridge.engine import Outgoing, PeerReady, StreamGone, WordsArrived
from bridge.errors import BoxError, BoxVersionError
from bridge.profile import REFERENCE, PhysicalSection, Profile

__all__ = [
    "ATTEMPTS",
    "CREDIT_KEEPALIVE_S",
    "DEFAULT_WINDOW",
    "HOST_TABLE",
    "REPLY_TIMEOUT_S",
    "TRANSITIONS",
    "BoxError",
    "BoxGone",
    "BoxHost",
    "BoxUp",
    "BoxVersionError",
    "HostEvent",
    "HostInput",
    "HostState",
    "PeerReady",
    "WordsArrived",
    "check_info",
    "firmware_text",
]

log = logging.getLogger("bridge.ports.box")  # the name users and their log filters know

TRACE = 5  # per-frame traffic, below DEBUG
DEFAULT_WINDOW = 1 << 16
REPLY_TIMEOUT_S = 1.0
ATTEMPTS = 3
CREDIT_KEEPALIVE_S = 1.0  # CREDITS re-sent this often (repairs a lost one on a UART)


# --- events of the sans-I/O host ------------------------------------------------------


@dataclass(frozen=True)
class BoxUp:
    """The start-up handshake is done: the box is configured and knows our READY."""

    info: Info


@dataclass(frozen=True)
class BoxGone(StreamGone):
    """The box stopped answering (no REPLY, silence); the stream should be released."""


HostEvent = BoxUp | PeerReady | WordsArrived | BoxGone


class HostState(enum.Enum):
    """The host's side of the start-up handshake (docs/box-protocol.md, section 9)."""

    DOWN = "down"  # no byte stream
    HELLO = "hello"  # 00 and HELLO sent, waiting for INFO
    STARTING = "starting"  # RESET, CONFIGURE, CREDITS, LINE_SET sent, REPLYs awaited
    UP = "up"


Request = Hello | Configure | Reset | LineSet
Action = Callable[["BoxHost", Any, float], "list[HostEvent]"]
"""A rule's action: a method of :class:`BoxHost` taking the message (or the reason)."""


@dataclass
class _Request:
    """A request waiting for its answer (REPLY; INFO for HELLO)."""

    message: Request
    seq: int
    sent: float
    tries: int = 1


class HostInput(enum.Enum):
    """What moves the host's machine: the box's messages (two of them split by a guard),
    the byte stream coming and going, and the two ways the box is given up."""

    INFO = "INFO"
    REPLY = "REPLY"
    REPLY_LAST = "REPLY, the last the start-up awaits"  # guard: it completes the start-up
    LINE_STATE = "LINE_STATE"
    LINE_STATE_FORGOT = "LINE_STATE, our READY forgotten"  # guard: the box restarted
    STATS = "STATS"
    ERROR = "ERROR"
    WORDS_IN = "WORDS_IN"
    BOX_CREDITS = "BOX_CREDITS"
    CONNECT = "connect()"
    DISCONNECT = "disconnect()"
    SILENCE = "silence"  # nothing from the box for `silence` seconds
    NO_ANSWER = "no answer"  # a request unanswered after `attempts` tries


_MESSAGE_INPUT = {
    MsgType.INFO: HostInput.INFO,
    MsgType.REPLY: HostInput.REPLY,
    MsgType.LINE_STATE: HostInput.LINE_STATE,
    MsgType.STATS: HostInput.STATS,
    MsgType.ERROR: HostInput.ERROR,
    MsgType.WORDS_IN: HostInput.WORDS_IN,
    MsgType.BOX_CREDITS: HostInput.BOX_CREDITS,
}
"""The input of each message type the box sends (before the guards)."""


def firmware_text(info: Info) -> str:
    return ".".join(str(v) for v in info.firmware)


def check_info(
    info: Info, configure: Configure, physical: PhysicalSection, name: str, *, refused: bool = False
) -> None:
    """Raise :class:`BoxError` unless the box of ``info`` can serve ``configure`` with the
    pin map of ``physical`` (docs/box-protocol.md, section 4: HELLO and INFO); ``refused``:
    it answered HELLO with ``UNSUPPORTED_VERSION``."""
    board = f"box {info.board!r} (firmware {firmware_text(info)})"
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
    shape = configure.shape()
    if shape and not info.capabilities & Capability.SHAPE:
        raise BoxError(
            f"{name}: the box firmware is too old for {', '.join(shape.values())}: "
            f"{board} lacks capability SHAPE (it would ignore CONFIGURE's bus-shape fields); "
            "flash newer firmware (firmware/README.md)"
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


class BoxHost(Outgoing):
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
        super().__init__()
        self.name = name
        self.profile = profile
        self.configure = Configure.from_profile(profile.physical, role=role, duplex=duplex)
        self.window = window
        self.max_body = max_body
        self.reply_timeout = reply_timeout
        self.attempts = attempts
        self.silence = 3 * max(reply_timeout, CREDIT_KEEPALIVE_S)
        self.max_queued = 2 * window  # the driver stops reading beyond (credit holds the box)
        self.read_bytes = 1 << 18
        self.control_stall_s: float | None = None  # a box that takes nothing is gone
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
        self._decoder = BoxFrameDecoder(max_body=max_body, sender="box")
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
        self._apply(HostInput.CONNECT, None, now)

    def disconnect(self) -> None:
        """The byte stream is gone."""
        self._apply(HostInput.DISCONNECT, None, 0.0)

    def _start(self, _: object, now: float) -> list[HostEvent]:
        self._reset_session()
        self._last_rx = now
        self.stats["handshakes"] += 1
        self._out += b"\0"
        hello = Hello(max_body=self.max_body)
        self._hello = _Request(hello, self._emit(hello), now)
        return []

    def _stop(self, _: object, now: float) -> list[HostEvent]:
        self._reset_session()
        return []

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

    def _emit(self, message: BoxMessage) -> int:
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

    def _check_seq(self, frame: BoxFrame) -> None:
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

    def _dispatch(self, message: BoxMessage, now: float) -> list[HostEvent]:
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s: <- %s", self.name, type(message).__name__)
        if isinstance(message, Unknown):
            log.debug("%s: message type %02XH from the box ignored", self.name, message.code)
            return []
        cause = _MESSAGE_INPUT[message.TYPE]
        if cause is HostInput.REPLY and self._completes_startup(message):  # type: ignore[arg-type]
            cause = HostInput.REPLY_LAST
        elif cause is HostInput.LINE_STATE and self._forgot_ready(message):  # type: ignore[arg-type]
            cause = HostInput.LINE_STATE_FORGOT
        return self._apply(cause, message, now)

    def _apply(self, cause: HostInput, argument: object, now: float) -> list[HostEvent]:
        """Do the rule of :data:`HOST_TABLE` for ``cause``, then take its next state (an
        action that raises leaves the state as it was); a pair not in the table raises
        :class:`BoxError`."""
        rule = HOST_TABLE.rule(self.state, cause, where=self.name)
        events = rule.action(self, argument, now)
        self.state = rule.next_state
        return events

    def _completes_startup(self, reply: Reply) -> bool:
        """The guard of ``REPLY_LAST``: the answer to the last start-up request awaited."""
        if self.state is not HostState.STARTING or self._starting != {reply.request_seq}:
            return False
        request = self._pending.get(reply.request_seq)
        return request is not None and int(request.message.TYPE) == int(reply.request)

    def _forgot_ready(self, state: LineState) -> bool:
        """The guard of ``LINE_STATE_FORGOT``: up, the box reports a READY we did not set
        and no LINE_SET is on its way (the box restarted)."""
        return (
            self.state is HostState.UP
            and state.ready != self.ready
            and not any(isinstance(r.message, LineSet) for r in self._pending.values())
        )

    def _ignore(self, message: object, now: float) -> list[HostEvent]:
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
            firmware_text(info),
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
            asked = self.configure.shape()
            field = asked.get(ConfigField(reply.detail)) if reply.detail in (1, 2, 3) else None
            if kind is MsgType.CONFIGURE and reply.status is Status.UNKNOWN_FIELD:
                raise BoxError(
                    f"{self.name}: the box firmware is too old for "
                    f"{field or f'CONFIGURE field {reply.detail}'}: {reply.reason or 'unknown'}"
                )
            if kind is MsgType.CONFIGURE and reply.detail:
                raise BoxError(
                    f"{self.name}: the box refuses {field or f'CONFIGURE field {reply.detail}'}"
                    f": {reply.reason or reply.status.name} (docs/box-protocol.md, CONFIGURE)"
                )
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
        return []

    def _on_last_reply(self, reply: Reply, now: float) -> list[HostEvent]:
        self._on_reply(reply, now)
        assert self.info is not None
        return [BoxUp(self.info)]

    def _restart_streams(self, now: float) -> None:
        """After the REPLY to the last RESET: both streams at 0, our credit as sent."""
        self._reset_seq = None
        self._streams_valid = True
        self._out_pos = self._box_limit = 0
        self._in_pos = self._consumed = 0
        self._granted = self.window
        self._credit_time = now

    def _on_box_restarted(self, state: LineState, now: float) -> list[HostEvent]:
        self._reset_session()  # the box forgot what we set: it restarted
        return [BoxGone("the box lost its state (it restarted?)")]

    def _gone(self, reason: str, now: float) -> list[HostEvent]:
        self._reset_session()
        return [BoxGone(reason)]

    def _on_line_state(self, state: LineState, now: float) -> list[HostEvent]:
        self.line_state = state
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
            self._consumed = position_add(self._consumed, d)  # those positions never come
            log.warning(
                "%s: %d words from the link lost on the way (position %d expected, %d came)",
                self.name,
                d,
                self._in_pos,
                message.offset,
            )
            self._emit(Query(MsgType.STATS))
        end = position_add(message.offset, n)
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
            return self._apply(
                HostInput.SILENCE, f"nothing from the box for {self.silence:g} s", now
            )
        for request in [self._hello, *self._pending.values()]:
            if request is None or now - request.sent < self.reply_timeout:
                continue
            kind = request.message.TYPE.name
            if request.tries >= self.attempts:
                answer = "INFO" if request is self._hello else "REPLY"
                reason = (
                    f"no {answer} to {kind} within {self.reply_timeout:g} s, {request.tries} tries"
                )
                return self._apply(HostInput.NO_ANSWER, reason, now)
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
        self._out_pos = position_add(self._out_pos, n)
        self.stats["words_out"] += n
        return n

    def consumed(self, count: int, now: float) -> None:
        """``count`` words arrived are taken (or discarded): grant credit for more."""
        self._consumed = position_add(self._consumed, count)
        if not self._streams_valid or self._reset_seq is not None:
            return
        limit = position_add(self._consumed, self.window)
        if position_delta(limit, self._granted) >= max(1, self.window // 4):
            self._grant(now)

    def _grant(self, now: float) -> None:
        self._granted = position_add(self._consumed, self.window)
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

    # ------------------------------------------------------------------ the driver's

    def goodbye(self, now: float) -> None:
        """The port closes: the box drops READY, so the peer sees the link go."""
        if self.state in (HostState.STARTING, HostState.UP):
            self.set_ready(False, now)

    def peer_stalled(self) -> None:
        """No credit from the box for a whole ``write_timeout``: the peer stopped reading."""
        self.peer_ready = False

    def write_stalled(self, unwritten: int) -> bytes | None:
        """A box that takes no bytes is gone (None: the driver drops the stream)."""
        return None

    def down_reason(self) -> str | None:
        """Why words cannot flow on a connected stream (None: they can)."""
        if self.state is not HostState.UP:
            return "the interface box is starting up"
        if not self.peer_ready:
            return "the peer is not READY"
        if not self.link_up:
            return "the link is restarting"
        return None


_READING = (HostState.HELLO, HostState.STARTING, HostState.UP)  # a session: messages read


def _host_rules() -> dict[tuple[HostState, HostInput], Rule[HostState, Action]]:
    _S, _I, _H = HostState, HostInput, BoxHost
    rules: dict[tuple[HostState, HostInput], Rule[HostState, Action]] = {
        (_S.HELLO, _I.INFO): Rule(
            _H._on_info, _S.STARTING, "check INFO; send RESET, CONFIGURE, CREDITS, LINE_SET"
        ),
        (_S.HELLO, _I.WORDS_IN): Rule(_H._on_stale_words, _S.HELLO, "count as stale, drop"),
        (_S.STARTING, _I.INFO): Rule(_H._ignore, _S.STARTING, "ignore"),
        (_S.STARTING, _I.REPLY_LAST): Rule(
            _H._on_last_reply, _S.UP, "take the REPLY, report BoxUp"
        ),
        (_S.STARTING, _I.WORDS_IN): Rule(
            _H._on_words, _S.STARTING, "take the words (stale before RESET's REPLY)"
        ),
        (_S.UP, _I.INFO): Rule(_H._ignore, _S.UP, "ignore"),
        (_S.UP, _I.LINE_STATE_FORGOT): Rule(
            _H._on_box_restarted, _S.DOWN, "drop the session, report BoxGone"
        ),
        (_S.UP, _I.WORDS_IN): Rule(_H._on_words, _S.UP, "take the words, report WordsArrived"),
    }
    for state in _READING:
        rules[state, _I.REPLY] = Rule(
            _H._on_reply, state, "match the request; a refusal of the start-up is a BoxError"
        )
        rules[state, _I.LINE_STATE] = Rule(
            _H._on_line_state, state, "note the lines, report PeerReady on a change"
        )
        rules[state, _I.BOX_CREDITS] = Rule(_H._on_credits, state, "take the credit")
        rules[state, _I.ERROR] = Rule(_H._on_error, state, "count and log")
        rules[state, _I.STATS] = Rule(_H._on_stats, state, "keep the box's counters")
        rules[state, _I.SILENCE] = Rule(_H._gone, _S.DOWN, "drop the session, report BoxGone")
        rules[state, _I.NO_ANSWER] = Rule(_H._gone, _S.DOWN, "drop the session, report BoxGone")
    for state in HostState:
        rules[state, _I.CONNECT] = Rule(_H._start, _S.HELLO, "send 00 and HELLO")
        rules[state, _I.DISCONNECT] = Rule(_H._stop, _S.DOWN, "forget the session")
    return rules


def _host_error(reason: str, remote: bool) -> BoxError:
    """The host's error for a pair not in its table (none is reachable: in DOWN the host
    reads nothing and waits for nothing, and the guarded inputs arise only where their
    rule is)."""
    return BoxError(reason)


HOST_TABLE: Table[HostState, HostInput, Action] = Table(
    "box host",
    HostState,
    HostInput,
    _host_rules(),
    _host_error,
    reason="{where}: {input} while {state}",
)
"""The host's side of the box protocol (docs/box-protocol.md, section 9):
``(state, input) -> Rule(handler, next state, description)``; the handler is a method of
:class:`BoxHost`, called with the message (or the reason) and the time, and the next
state is taken after it returns. In DOWN the host has no stream: it reads no bytes and
has no timer, so only ``connect()`` and ``disconnect()`` are in the table there. The
box's messages of types this host does not know (:class:`Unknown`) are logged and
ignored before the table."""

TRANSITIONS: dict[tuple[HostState, MsgType], tuple[str, HostState]] = {
    (state, kind): (HOST_TABLE[state, cause].action.__name__, HOST_TABLE[state, cause].next_state)
    for kind, cause in _MESSAGE_INPUT.items()
    for state in _READING
}
"""``(state, message type) -> (handler name, next state)``: :data:`HOST_TABLE`'s rules of
the box's messages (before the guards) by handler name, as this name gave them before
the table; use :data:`HOST_TABLE`."""

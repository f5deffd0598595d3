"""Application layer: ACR-NEMA messages, a command group (0000) and an optional data set.

A message is the command group, implicit VR in ascending tag order, followed by the data
set if any [S4][S27]; the command codes, Data Set Type values and status codes come from
the profile's ``[application]`` table (docs/link-profile.md, section 5: DICOM-compatible
defaults, the ACR-NEMA values being unknown), which :class:`CommandTable` takes as its
parameters. The command elements we read and write:

    (0000,0000) UL  Command Group Length       (0000,0200) AE  Initiator (retired)
    (0000,0010) SH  Recognition Code (retired) (0000,0300) AE  Receiver (retired)
    (0000,0100) US  Command Field              (0000,0800) US  Data Set Type
    (0000,0110) US  Message ID                 (0000,0900) US  Status
    (0000,0120) US  Message ID Responded To    (0000,0902) LO  Error Comment

Any other command element is kept as it came (:attr:`Command.other`). The message is
encoded in the profile's binary byte order (``>`` or ``<``); text and binary byte orders
that differ are refused by the profile check.

Decoding never trusts a length: a malformed command group raises
:class:`~bridge.acrnema.datalink.LinkProtocolError` (layer ``application``, remote).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from bridge.acrnema.datalink import LinkProtocolError
from bridge.profile import REFERENCE, ApplicationSection

__all__ = [
    "Command",
    "CommandTable",
    "Message",
    "decode_message",
    "encode_message",
]

GROUP_LENGTH = 0x00000000
RECOGNITION_CODE = 0x00000010
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
RESPONDED_TO = 0x00000120
INITIATOR = 0x00000200
RECEIVER = 0x00000300
DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
ERROR_COMMENT = 0x00000902

_US = {COMMAND_FIELD, MESSAGE_ID, RESPONDED_TO, DATA_SET_TYPE, STATUS}
_TEXT = {RECOGNITION_CODE: 16, INITIATOR: 16, RECEIVER: 16, ERROR_COMMENT: 64}


@dataclass(frozen=True)
class Command:
    """The command group of one message."""

    field: int  # (0000,0100): a request code, or a response code (bit 15 set)
    message_id: int = 0
    data_set_type: int = 0x0101  # (0000,0800); 0101H: no data set follows
    responded_to: int | None = None
    status: int | None = None
    initiator: str = ""
    receiver: str = ""
    recognition_code: str = ""
    error_comment: str = ""
    other: tuple[tuple[int, bytes], ...] = ()  # other command elements: (tag, value bytes)

    @property
    def is_response(self) -> bool:
        return bool(self.field & 0x8000)


@dataclass(frozen=True)
class Message:
    """A command and the data set bytes that follow it (implicit VR, the link's order)."""

    command: Command
    data: bytes = b""


class CommandTable:
    """The profile's ``[application]`` section read as a table of names and codes.

    It takes the section itself as its parameters (:attr:`params`), as the other layers
    take theirs, so each code has one definition: the profile's. What it adds is the
    lookup from a code back to its command name.
    """

    def __init__(self, params: ApplicationSection = REFERENCE.application) -> None:
        self.params = params
        self._names: dict[int, tuple[str, bool]] = {}
        for name, (request, response) in params.commands.items():
            self._names[request] = (name, False)
            if response:
                self._names[response] = (name, True)

    def __repr__(self) -> str:
        return f"CommandTable({self.params!r})"

    def name(self, code: int) -> tuple[str, bool] | None:
        """The command name of ``code`` and whether it is a response; None if unknown."""
        return self._names.get(code)

    def request(self, name: str) -> int:
        return self.params.commands[name][0]

    def response(self, name: str) -> int:
        return self.params.commands[name][1]

    def status(self, name: str) -> int:
        return self.params.statuses[name]

    def status_name(self, code: int) -> str:
        for name, value in self.params.statuses.items():
            if value == code:
                return name
        return f"status {code:04X}H"

    def has_data_set(self, command: Command) -> bool:
        return command.data_set_type != self.params.data_set_none

    def make_request(
        self, name: str, message_id: int, *, initiator: str, receiver: str, data: bytes = b""
    ) -> Message:
        """A request; a data set follows when ``data`` is not empty."""
        command = Command(
            self.request(name),
            message_id,
            self.params.data_set_present if data else self.params.data_set_none,
            initiator=initiator,
            receiver=receiver,
            recognition_code=self.params.recognition_code,
        )
        return Message(command, data)

    def make_response(self, request: Command, status: int, comment: str = "") -> Message:
        """The response to ``request``, with no data set; the addresses swapped."""
        known = self.name(request.field)
        code = request.field | 0x8000 if known is None else self.response(known[0])
        command = Command(
            code or request.field | 0x8000,
            request.message_id,
            self.params.data_set_none,
            responded_to=request.message_id,
            status=status,
            initiator=request.receiver,
            receiver=request.initiator,
            recognition_code=self.params.recognition_code,
            error_comment=comment[:64],
        )
        return Message(command)


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def encode_message(message: Message, byte_order: str = "big") -> bytes:
    """The bytes of ``message``: its command group, then its data set."""
    order = ">" if byte_order == "big" else "<"
    c = message.command
    values: dict[int, bytes] = dict(c.other)
    values[COMMAND_FIELD] = struct.pack(order + "H", c.field)
    values[MESSAGE_ID] = struct.pack(order + "H", c.message_id)
    values[DATA_SET_TYPE] = struct.pack(order + "H", c.data_set_type)
    if c.responded_to is not None:
        values[RESPONDED_TO] = struct.pack(order + "H", c.responded_to)
    if c.status is not None:
        values[STATUS] = struct.pack(order + "H", c.status)
    for tag, text in (
        (RECOGNITION_CODE, c.recognition_code),
        (INITIATOR, c.initiator),
        (RECEIVER, c.receiver),
        (ERROR_COMMENT, c.error_comment),
    ):
        if text:
            values[tag] = _text(text)
    values.pop(GROUP_LENGTH, None)
    header = order + "HHI"
    body = b"".join(
        struct.pack(header, 0, tag & 0xFFFF, len(value)) + value
        for tag, value in sorted(values.items())
    )
    group = struct.pack(header, 0, 0, 4) + struct.pack(order + "I", len(body))
    return group + body + message.data


def decode_message(data: bytes, byte_order: str = "big") -> Message:
    """A message from its bytes; :class:`LinkProtocolError` if the command is malformed."""
    order = ">" if byte_order == "big" else "<"

    def error(reason: str) -> LinkProtocolError:
        return LinkProtocolError(reason, layer="application", remote=True)

    pos = 0
    values: dict[int, bytes] = {}
    previous = -1
    end = len(data)
    if len(data) >= 12 and struct.unpack_from(order + "HHI", data) == (0, 0, 4):
        # (0000,0000) Command Group Length: where the command ends and the data set starts
        end = 12 + struct.unpack_from(order + "I", data, 8)[0]
        if end > len(data):
            raise error(f"Command Group Length {end - 12} runs past the message end")
    while pos + 8 <= end:
        group, element, length = struct.unpack_from(order + "HHI", data, pos)
        if group != 0:
            break
        if element <= previous:
            raise error(f"command element (0000,{element:04X}) out of order at byte {pos}")
        if pos + 8 + length > end:
            raise error(f"command element (0000,{element:04X}) runs past the command group")
        values[element] = data[pos + 8 : pos + 8 + length]
        previous = element
        pos += 8 + length
    if COMMAND_FIELD not in values:
        raise error("no Command Field (0000,0100)")

    def us(tag: int) -> int | None:
        raw = values.get(tag)
        if raw is None:
            return None
        if len(raw) != 2:
            raise error(f"(0000,{tag:04X}) has {len(raw)} bytes, not 2")
        return int(struct.unpack(order + "H", raw)[0])

    def text(tag: int) -> str:
        raw = values.get(tag, b"")
        return raw.decode("ascii", "replace").strip(" \x00")

    known = _US | set(_TEXT) | {GROUP_LENGTH}
    data_set_type = us(DATA_SET_TYPE)
    command = Command(
        field=us(COMMAND_FIELD) or 0,
        message_id=us(MESSAGE_ID) or 0,
        data_set_type=0x0101 if data_set_type is None else data_set_type,
        responded_to=us(RESPONDED_TO),
        status=us(STATUS),
        initiator=text(INITIATOR),
        receiver=text(RECEIVER),
        recognition_code=text(RECOGNITION_CODE),
        error_comment=text(ERROR_COMMENT),
        other=tuple((tag, raw) for tag, raw in values.items() if tag not in known),
    )
    return Message(command, data[pos:])


def with_message_id(message: Message, message_id: int) -> Message:
    """``message`` renumbered (a resend after the link came back is a new message)."""
    return replace(message, command=replace(message.command, message_id=message_id))

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

Two elements and a group of the dialect knobs (docs/link-profile.md, "Dialect knobs:
messages") are read and written too: (0000,0001) UL Length to End, the bytes of the
message after that element (written when the profile says so; checked whenever it came),
and, when the profile has an SPI command group, group 0001 after group 0000 [evidence
N3]: (0001,0010) SH SPI Recognition Code, (0001,0018) US SPI Command, (0001,0081) US
number of data objects of a group copy.

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
LENGTH_TO_END = 0x00000001
RECOGNITION_CODE = 0x00000010
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
RESPONDED_TO = 0x00000120
INITIATOR = 0x00000200
RECEIVER = 0x00000300
DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
ERROR_COMMENT = 0x00000902
SPI_GROUP_LENGTH = 0x00010000
SPI_RECOGNITION_CODE = 0x00010010
SPI_COMMAND = 0x00010018
SPI_OBJECTS = 0x00010081

_US = {COMMAND_FIELD, MESSAGE_ID, RESPONDED_TO, DATA_SET_TYPE, STATUS, SPI_COMMAND, SPI_OBJECTS}
_TEXT = {
    RECOGNITION_CODE: 16,
    INITIATOR: 16,
    RECEIVER: 16,
    ERROR_COMMENT: 64,
    SPI_RECOGNITION_CODE: 16,
}


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
    length_to_end: int | None = None  # (0000,0001) as it came; written from the profile
    spi_command: int | None = None  # (0001,0018); None: no SPI group 0001
    spi_objects: int | None = None  # (0001,0081): data objects of a group copy
    spi_recognition_code: str = ""  # (0001,0010)

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

    def station(self, address: str, *, strict: bool = True) -> str:
        """``address`` as written in (0000,0200)/(0000,0300): space-padded to
        ``application.station_id_length`` when that is set; a longer one is a local error
        (``strict``) or, in an answer to a peer that sent it, written as it came."""
        length = self.params.station_id_length
        if not length:
            return address
        if len(address) > length and strict:
            raise LinkProtocolError(
                f"station ID {address!r} is longer than application.station_id_length ({length})",
                layer="application",
                remote=False,
            )
        return address.ljust(length)

    def make_request(
        self,
        name: str,
        message_id: int,
        *,
        initiator: str,
        receiver: str,
        data: bytes = b"",
        data_follows: bool = False,
    ) -> Message:
        """A request; a data set follows when ``data`` is not empty (in this message) or
        ``data_follows`` (after the reply: ``application.data_set_after_reply``)."""
        command = Command(
            self.request(name),
            message_id,
            self.params.data_set_present if data or data_follows else self.params.data_set_none,
            initiator=self.station(initiator),
            receiver=self.station(receiver),
            recognition_code=self.params.recognition_code,
        )
        return Message(command, data)

    def make_spi_request(
        self,
        name: str,
        message_id: int,
        *,
        initiator: str,
        receiver: str,
        data: bytes = b"",
        data_follows: bool = False,
        objects: int | None = None,
    ) -> Message:
        """A store request carrying the SPI command ``name`` of ``application.spi_commands``
        in group 0001 (``objects``: the number of data objects, for gcbegin)."""
        message = self.make_request(
            "store",
            message_id,
            initiator=initiator,
            receiver=receiver,
            data=data,
            data_follows=data_follows,
        )
        command = replace(
            message.command,
            spi_command=self.params.spi_commands[name][0],
            spi_objects=objects,
            spi_recognition_code=self.params.spi_recognition_code,
        )
        return Message(command, data)

    def spi_name(self, code: int | None) -> tuple[str, bool] | None:
        """The SPI command name of ``code`` and whether it is a response; None if unknown."""
        for name, (request, response) in self.params.spi_commands.items():
            if code in (request, response):
                return name, code == response
        return None

    def make_response(self, request: Command, status: int, comment: str = "") -> Message:
        """The response to ``request``, with no data set; the addresses swapped (and, for
        an SPI request, its SPI command answered in group 0001)."""
        known = self.name(request.field)
        code = request.field | 0x8000 if known is None else self.response(known[0])
        spi = self.spi_name(request.spi_command) if request.spi_command is not None else None
        command = Command(
            code or request.field | 0x8000,
            request.message_id,
            self.params.data_set_none,
            responded_to=request.message_id,
            status=status,
            initiator=self.station(request.receiver, strict=False),
            receiver=self.station(request.initiator, strict=False),
            recognition_code=self.params.recognition_code,
            error_comment=comment[:64],
            spi_command=None if spi is None else self.params.spi_commands[spi[0]][1],
            spi_objects=request.spi_objects if spi is not None else None,
            spi_recognition_code=self.params.spi_recognition_code if spi is not None else "",
        )
        return Message(command)


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def encode_message(
    message: Message, byte_order: str = "big", *, length_to_end: bool = False
) -> bytes:
    """The bytes of ``message``: its command group (and SPI group 0001, if it has an SPI
    command), then its data set; ``length_to_end``: with (0000,0001) Length to End."""
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
    if c.spi_command is not None:
        values[SPI_COMMAND] = struct.pack(order + "H", c.spi_command)
    if c.spi_objects is not None:
        values[SPI_OBJECTS] = struct.pack(order + "H", c.spi_objects)
    for tag, text in (
        (RECOGNITION_CODE, c.recognition_code),
        (INITIATOR, c.initiator),
        (RECEIVER, c.receiver),
        (ERROR_COMMENT, c.error_comment),
        (SPI_RECOGNITION_CODE, c.spi_recognition_code),
    ):
        if text:
            values[tag] = _text(text)
    for tag in (GROUP_LENGTH, SPI_GROUP_LENGTH, *((LENGTH_TO_END,) if length_to_end else ())):
        values.pop(tag, None)
    header = order + "HHI"
    groups: list[bytes] = []
    for number in sorted({tag >> 16 for tag in values}):
        body = b"".join(
            struct.pack(header, number, tag & 0xFFFF, len(value)) + value
            for tag, value in sorted(values.items())
            if tag >> 16 == number
        )
        if number == 0 and length_to_end:
            body = struct.pack(header, 0, 1, 4) + b"\0\0\0\0" + body  # filled in below
        groups.append(
            struct.pack(header, number, 0, 4) + struct.pack(order + "I", len(body)) + body
        )
    out = b"".join(groups) + message.data
    if length_to_end:  # the bytes after (0000,0001): the message from offset 24 on
        out = out[:20] + struct.pack(order + "I", len(out) - 24) + out[24:]
    return out


def _read_group(data: bytes, pos: int, number: int, order: str, values: dict[int, bytes]) -> int:
    """The elements of group ``number`` from ``pos`` into ``values`` (full tags); the end.

    ``values[-1]`` is set to where (0000,0001) Length to End counts from, if it came.
    """

    def error(reason: str) -> LinkProtocolError:
        return LinkProtocolError(reason, layer="application", remote=True)

    name = "Command Group Length" if number == 0 else f"Group Length ({number:04X},0000)"
    where = "the command group" if number == 0 else f"group {number:04X}"
    previous = -1
    end = len(data)
    if len(data) >= pos + 12 and struct.unpack_from(order + "HHI", data, pos) == (number, 0, 4):
        # (gggg,0000) Group Length: where the group ends (for group 0000, the data set starts)
        end = pos + 12 + struct.unpack_from(order + "I", data, pos + 8)[0]
        if end > len(data):
            raise error(f"{name} {end - pos - 12} runs past the message end")
    while pos + 8 <= end:
        group, element, length = struct.unpack_from(order + "HHI", data, pos)
        if group != number:
            break
        if element <= previous:
            raise error(f"command element ({number:04X},{element:04X}) out of order at byte {pos}")
        if pos + 8 + length > end:
            raise error(f"command element ({number:04X},{element:04X}) runs past {where}")
        values[number << 16 | element] = data[pos + 8 : pos + 8 + length]
        if (number, element) == (0, 1):
            values[-1] = struct.pack(">I", pos + 8 + length)
        previous = element
        pos += 8 + length
    return pos


def decode_message(
    data: bytes, byte_order: str = "big", *, spi: bool = False, length_to_end: bool = False
) -> Message:
    """A message from its bytes; :class:`LinkProtocolError` if the command is malformed.

    ``spi``: an SPI group 0001 after group 0000 is part of the command (the profile has
    ``application.spi_commands``); otherwise it would be the start of the data set.
    ``length_to_end``: (0000,0001) is read into :attr:`Command.length_to_end` and checked
    against the bytes that follow it; otherwise it is kept in :attr:`Command.other`.
    """
    order = ">" if byte_order == "big" else "<"

    def error(reason: str) -> LinkProtocolError:
        return LinkProtocolError(reason, layer="application", remote=True)

    values: dict[int, bytes] = {}
    pos = _read_group(data, 0, 0, order, values)
    if spi:
        pos = _read_group(data, pos, 1, order, values)
    counted_from = values.pop(-1, None)
    if COMMAND_FIELD not in values:
        raise error("no Command Field (0000,0100)")
    to_end = None
    if length_to_end and LENGTH_TO_END in values:
        raw = values[LENGTH_TO_END]
        if len(raw) != 4 or counted_from is None:
            raise error(f"(0000,0001) Length to End has {len(raw)} bytes, not 4")
        to_end = int(struct.unpack(order + "I", raw)[0])
        after = len(data) - struct.unpack(">I", counted_from)[0]
        if to_end != after:
            raise error(f"(0000,0001) Length to End says {to_end} bytes, {after} follow it")

    def us(tag: int) -> int | None:
        raw = values.get(tag)
        if raw is None:
            return None
        if len(raw) != 2:
            raise error(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has {len(raw)} bytes, not 2")
        return int(struct.unpack(order + "H", raw)[0])

    def text(tag: int) -> str:
        raw = values.get(tag, b"")
        return raw.decode("ascii", "replace").strip(" \x00")

    known = _US | set(_TEXT) | {GROUP_LENGTH, SPI_GROUP_LENGTH}
    if to_end is not None:
        known.add(LENGTH_TO_END)
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
        length_to_end=to_end,
        spi_command=us(SPI_COMMAND),
        spi_objects=us(SPI_OBJECTS),
        spi_recognition_code=text(SPI_RECOGNITION_CODE),
    )
    return Message(command, data[pos:])


def with_message_id(message: Message, message_id: int) -> Message:
    """``message`` renumbered (a resend after the link came back is a new message)."""
    return replace(message, command=replace(message.command, message_id=message_id))

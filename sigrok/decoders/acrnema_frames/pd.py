# SPDX-License-Identifier: MIT
# Copyright (c) the acrnema-bridge authors

"""The frame, packet and message layers of the 50-pin bus, from ``acrnema_bus`` words.

Frames (docs/link-profile.md section 2): start word; ``type << 12 | sequence`` (bits
8-11 zero); payload count in words; the payload; CRC-16/CCITT-FALSE (polynomial 0x1021,
as ``binascii.crc_hqx``, init ``crc_init``) over the header, count and payload, each word
most significant byte first. The words of each side are collected apart (a side's frame
is never interleaved with the other's, but a decoder need not rely on it). A frame with
an unreadable header, a parity error or a bad check word is annotated as damaged, and the
hunt for the next start word resumes one word after its start, as the bridge's own frame
decoder does, so a damaged frame never hides the next.

The dialect knobs of the profile (docs/link-profile.md, "Dialect knobs") are options of
the same names: ``crc`` (the trailer: the reference CRC, any CRC-16 by ``crc_poly``,
``crc_init``, ``crc_refin``, ``crc_refout``, ``crc_xorout`` in the Rocksoft model,
``sum-16``: the covered words added modulo 2^16, or ``none``: no trailer word);
``delimiting`` ``length_only`` (no start word: a frame begins where the previous one
ended; after damage the decoder slides one word at a time until a readable header with
a good check, and reports the damage once); ``ack_mode`` ``none`` (DATA frames taken in
arrival order; a damaged frame or a gap in the sequence numbers loses data, reported
once, and the frames up to the next one marked FIRST are dropped); ``transport_mode``
(``transport.mode``) ``none`` (no packet header: the payloads of a side's DATA frames
join into one message up to the frame marked LAST). With ``ack_mode`` or
``transport_mode`` ``none``, header bits 8 and 9 are the unit marks FIRST and LAST.

Packets (section 3): the payloads of the good DATA frames of a side, taken in sequence
order (a frame ahead of the next expected number is held; one behind it is a
retransmission, marked ``again``), form a stream of packets: message ID, ``last << 15 |
segment index``, the segment's length in bytes (two words, in the ``binary_byte_order``
option's order), the segment padded to whole words. A message is annotated when its last
segment is complete.
"""

import binascii

import sigrokdecode as srd

KINDS = ("DATA", "ACK", "NAK")

(
    ANN_START,
    ANN_HEADER,
    ANN_COUNT,
    ANN_PAYLOAD,
    ANN_CHECK_GOOD,
    ANN_CHECK_BAD,
    ANN_FRAME,
    ANN_FRAME_DAMAGED,
    ANN_PACKET,
    ANN_MESSAGE,
    ANN_WARNING,
) = range(11)


FIRST = 0x0100  # header bit 8: the frame begins a unit (a message, or a session PDU)
LAST = 0x0200  # header bit 9: the frame ends one
CHECKS = ("crc-16/ccitt-false", "crc-16", "sum-16", "none")
_REVERSED = bytes(int(f"{v:08b}"[::-1], 2) for v in range(256))


class SetupError(Exception):
    """An option that cannot be read."""


def _int(text, name):
    try:
        return int(str(text), 0) if str(text).lower().startswith("0x") else int(str(text), 16)
    except ValueError:
        raise SetupError(f"{name}: {text!r} is not a hexadecimal number") from None


def _bool(text, name):
    value = str(text).strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise SetupError(f"{name}: {text!r} is not true or false")


def _choice(text, name, values):
    if text not in values:
        raise SetupError(f"{name}: {text!r} is not one of {', '.join(values)}")
    return text


class Check:
    """The frame's trailer word over the covered bytes (whole words, most significant
    byte first), as the profile's ``datalink.crc`` and the CRC keys define it."""

    def __init__(self, kind, poly, init, refin, refout, xorout):
        self.kind, self.poly, self.init = kind, poly, init
        self.refin, self.refout, self.xorout = refin, refout, xorout
        self.words = 0 if kind == "none" else 1
        table = []
        for value in range(256):
            reg = value << 8
            for _ in range(8):
                reg = ((reg << 1) ^ poly if reg & 0x8000 else reg << 1) & 0xFFFF
            table.append(reg)
        self.table = table

    def __call__(self, covered):
        if self.kind == "crc-16/ccitt-false":
            return binascii.crc_hqx(covered, self.init)
        if self.kind == "sum-16":
            return (
                sum(int.from_bytes(covered[i : i + 2], "big") for i in range(0, len(covered), 2))
                & 0xFFFF
            )
        if self.kind == "none":
            return 0
        # crc-16, Rocksoft model: a reflected input is the plain CRC of the bytes reversed
        data = covered.translate(_REVERSED) if self.refin else covered
        if self.poly == 0x1021:
            reg = binascii.crc_hqx(data, self.init)
        else:
            reg, table = self.init, self.table
            for byte in data:
                reg = ((reg << 8) & 0xFFFF) ^ table[(reg >> 8) ^ byte]
        if self.refout:
            reg = _REVERSED[reg & 0xFF] << 8 | _REVERSED[reg >> 8]
        return reg ^ self.xorout


class Side:
    """What is under way for one sending side."""

    def __init__(self):
        self.words = []  # [word, ss, es, parity_ok], from the first word not yet framed
        self.expected = None  # next DATA sequence number to take
        self.held = {}  # sequence -> (payload [(word, ss, es)], flags, ss, es), ahead
        self.stream = []  # payload words taken in order, not yet a whole packet
        self.message = None  # (id, ss, bytes so far, segments) of the message under way
        self.hunting = False  # length_only: sliding after damage, reported once
        self.lost = False  # ack_mode none: dropping frames up to one marked FIRST
        self.unit = None  # transport none: [ss, bytes, frames] of the message under way


class Decoder(srd.Decoder):
    api_version = 3
    id = "acrnema_frames"
    name = "ACR-NEMA frames"
    longname = "ACR-NEMA 50-pin bus frames, packets and messages (acrnema-bridge profile)"
    desc = "Frames with their check word, transport packets and messages of the ACR-NEMA bus."
    license = "mit"
    inputs = ["acrnema_bus"]
    outputs = ["acrnema_frames"]
    tags = ["Embedded/industrial"]
    options = (
        {"id": "start_word", "desc": "Start word (hexadecimal)", "default": "A5C3"},
        {
            "id": "delimiting",
            "desc": "Where a frame begins (length_only: no start word)",
            "default": "start_word",
            "values": ("start_word", "length_only"),
        },
        {
            "id": "crc",
            "desc": "Check word (trailer)",
            "default": "crc-16/ccitt-false",
            "values": CHECKS,
        },
        {"id": "crc_poly", "desc": "CRC-16 polynomial (hexadecimal)", "default": "1021"},
        {"id": "crc_init", "desc": "CRC-16 initial value (hexadecimal)", "default": "FFFF"},
        {
            "id": "crc_refin",
            "desc": "CRC-16 reflects its input",
            "default": "false",
            "values": ("false", "true"),
        },
        {
            "id": "crc_refout",
            "desc": "CRC-16 reflects its output",
            "default": "false",
            "values": ("false", "true"),
        },
        {"id": "crc_xorout", "desc": "CRC-16 final XOR (hexadecimal)", "default": "0000"},
        {
            "id": "ack_mode",
            "desc": "Acknowledgements (none: no ACK/NAK, nothing resent)",
            "default": "selective",
            "values": ("selective", "none"),
        },
        {
            "id": "transport_mode",
            "desc": "Transport (none: no packet header, frames marked FIRST/LAST)",
            "default": "packets",
            "values": ("packets", "none"),
        },
        {"id": "max_payload_words", "desc": "Largest payload (words)", "default": 256},
        {
            "id": "frame_types",
            "desc": "Type codes of DATA, ACK, NAK (separated by / or ,)",
            "default": "1/2/3",
        },
        {"id": "sequence_bits", "desc": "Bits of the sequence number", "default": 8},
        {
            "id": "binary_byte_order",
            "desc": "Word order of the 32-bit segment length",
            "default": "big",
            "values": ("big", "little"),
        },
    )
    annotations = (
        ("start", "Start word"),
        ("header", "Frame type and sequence number"),
        ("count", "Payload count"),
        ("payload", "Payload"),
        ("check-good", "Check word good"),
        ("check-bad", "Check word bad"),
        ("frame", "Frame"),
        ("frame-damaged", "Damaged frame"),
        ("packet", "Packet"),
        ("message", "Message"),
        ("warning", "Warning"),
    )
    annotation_rows = (
        (
            "fields",
            "Fields",
            (ANN_START, ANN_HEADER, ANN_COUNT, ANN_PAYLOAD, ANN_CHECK_GOOD, ANN_CHECK_BAD),
        ),
        ("frames", "Frames", (ANN_FRAME, ANN_FRAME_DAMAGED)),
        ("packets", "Packets", (ANN_PACKET,)),
        ("messages", "Messages", (ANN_MESSAGE,)),
        ("warnings", "Warnings", (ANN_WARNING,)),
    )

    def __init__(self):
        self.reset()

    def reset(self):
        self.sides = {}
        self.configured = False

    def start(self):
        self.out_ann = self.register(srd.OUTPUT_ANN)
        self.out_python = self.register(srd.OUTPUT_PYTHON)

    def _configure(self):
        o = self.options
        self.start_word = _int(o["start_word"], "start_word") & 0xFFFF
        self.crc_init = _int(o["crc_init"], "crc_init") & 0xFFFF
        self.check = Check(
            _choice(o["crc"], "crc", CHECKS),
            _int(o["crc_poly"], "crc_poly") & 0xFFFF,
            self.crc_init,
            _bool(o["crc_refin"], "crc_refin"),
            _bool(o["crc_refout"], "crc_refout"),
            _int(o["crc_xorout"], "crc_xorout") & 0xFFFF,
        )
        delimiting = _choice(o["delimiting"], "delimiting", ("start_word", "length_only"))
        self.lead = 1 if delimiting == "start_word" else 0
        self.unacked = _choice(o["ack_mode"], "ack_mode", ("selective", "none")) == "none"
        self.units = _choice(o["transport_mode"], "transport_mode", ("packets", "none")) == "none"
        self.marks = FIRST | LAST if self.unacked or self.units else 0
        self.max_payload = int(o["max_payload_words"])
        # "/" (or "+", or spaces) as well as ",": sigrok-cli's -P splits decoders at commas
        text = str(o["frame_types"])
        for sep in "/+ ":
            text = text.replace(sep, ",")
        try:
            codes = [int(c) for c in text.split(",") if c.strip()]
        except ValueError:
            codes = []
        if len(codes) != 3:
            raise SetupError("frame_types: three codes (DATA, ACK, NAK), e.g. 1/2/3")
        self.kinds = dict(zip(codes, KINDS, strict=False))
        self.modulus = 1 << int(o["sequence_bits"])
        self.little = o["binary_byte_order"] == "little"
        self.configured = True

    def _ann(self, ss, es, cls, texts):
        self.put(ss, max(es, ss + 1), self.out_ann, [cls, texts])

    def decode(self, ss, es, data):
        if not self.configured:
            self._configure()
        kind, value = data
        if kind != "WORD":
            return
        side = self.sides.setdefault(value["side"], Side())
        side.words.append((value["word"], ss, es, value["parity_ok"]))
        self._frames(value["side"], side)

    # -- frames

    def _frames(self, name, side):
        words = side.words
        lead = self.lead
        header = lead + 2
        while words:
            if lead and words[0][0] != self.start_word:
                # hunt: drop what precedes the next start word
                for i, w in enumerate(words):
                    if w[0] == self.start_word:
                        del words[:i]
                        break
                else:
                    del words[:]
                    return
            if len(words) < header:
                return
            head, count = words[lead][0], words[lead + 1][0]
            kind = self.kinds.get(head >> 12)
            seq = head & 0xFF
            if kind is None or head & ~self.marks & 0x0F00 or count > self.max_payload:
                if self._report(side):
                    if lead:
                        self._ann(words[0][1], words[0][2], ANN_START, ["Start", "S"])
                    w = words[lead]
                    self._ann(w[1], w[2], ANN_HEADER, [f"Header {head:04X}?", "?"])
                    self._damaged(
                        name,
                        side,
                        words[0][1],
                        words[header - 1][2],
                        "unreadable frame header",
                        None,
                    )
                del words[0]  # hunt for the next start word (length_only: slide one word)
                continue
            total = header + count + self.check.words
            if len(words) < total:
                return
            frame = words[:total]
            bad = [i for i, w in enumerate(frame) if not w[3]]
            if bad:
                if self._report(side):
                    self._fields(frame, kind, seq, count, head)
                    reason = f"parity error in word {bad[0]}"
                    self._damaged(name, side, frame[0][1], frame[-1][2], reason, (kind, seq))
                del words[0]
                continue
            if self.check.words:
                covered = b"".join(w[0].to_bytes(2, "big") for w in frame[lead:-1])
                want = self.check(covered)
                check = frame[-1]
                if want != check[0]:
                    if self._report(side):
                        self._fields(frame, kind, seq, count, head)
                        self._ann(
                            check[1],
                            check[2],
                            ANN_CHECK_BAD,
                            [f"Check {check[0]:04X} bad (want {want:04X})", "Bad", "!"],
                        )
                        self._damaged(
                            name, side, frame[0][1], frame[-1][2], "CRC mismatch", (kind, seq)
                        )
                    del words[0]
                    continue
            self._fields(frame, kind, seq, count, head)
            if self.check.words:
                self._ann(
                    check[1], check[2], ANN_CHECK_GOOD, [f"Check {check[0]:04X} good", "Good", "OK"]
                )
            side.hunting = False
            del words[:total]
            self._frame(name, side, frame, kind, seq, count, head & 0x0F00)

    def _report(self, side):
        """Whether to report this damage: with length_only only the first of a run of
        slides (every word after a damaged frame is tried as a header until one fits)."""
        report = not (self.lead == 0 and side.hunting)
        side.hunting = self.lead == 0
        return report

    def _marks(self, flags):
        return "".join(f" {n}" for bit, n in ((FIRST, "FIRST"), (LAST, "LAST")) if flags & bit)

    def _fields(self, frame, kind, seq, count, head):
        lead = self.lead
        if lead:
            self._ann(
                frame[0][1], frame[0][2], ANN_START, [f"Start {frame[0][0]:04X}", "Start", "S"]
            )
        marks = self._marks(head & self.marks)
        self._ann(
            frame[lead][1],
            frame[lead][2],
            ANN_HEADER,
            [f"{kind} seq {seq}{marks}", f"{kind} {seq}", kind[0]],
        )
        self._ann(frame[lead + 1][1], frame[lead + 1][2], ANN_COUNT, [f"Count {count}", str(count)])
        if count:
            first = frame[lead + 2]
            last = frame[lead + 1 + count]
            self._ann(first[1], last[2], ANN_PAYLOAD, [f"Payload, {count} words", "Payload", "P"])

    def _damaged(self, name, side, ss, es, reason, header):
        what = "" if header is None else " {} seq {}".format(*header)
        self._ann(
            ss,
            es,
            ANN_FRAME_DAMAGED,
            [f"{name}: DAMAGED{what}: {reason}", "DAMAGED: " + reason, "X"],
        )
        self.put(
            ss,
            es,
            self.out_python,
            [
                "DAMAGED",
                {
                    "side": name,
                    "reason": reason,
                    "kind": header and header[0],
                    "sequence": header and header[1],
                },
            ],
        )
        if self.unacked:
            self._lose(name, side, ss, es, f"damaged frame: {reason}")

    def _lose(self, name, side, ss, es, reason):
        """ack_mode none: data lost, reported once; the message under way is dropped and
        so are the frames up to the next one marked FIRST (nothing is resent)."""
        if side.lost:
            return
        side.lost = True
        side.stream, side.message, side.unit = [], None, None
        self._ann(ss, es, ANN_WARNING, [f"{name}: data lost: {reason}", "Data lost"])

    def _frame(self, name, side, frame, kind, seq, count, flags):
        ss, es = frame[0][1], frame[-1][2]
        start = self.lead + 2
        payload = [(w[0], w[1], w[2]) for w in frame[start : start + count]]
        note = ""
        taken = []
        if kind == "DATA":
            if self.unacked:
                note, taken = self._arrived(name, side, seq, (payload, flags, ss, es))
            else:
                note, taken = self._take(side, seq, (payload, flags, ss, es))
        words = f", {count} words" if kind == "DATA" else ""
        marks = self._marks(flags)
        self._ann(
            ss,
            es,
            ANN_FRAME,
            [
                f"{name}: {kind} seq {seq}{marks}{words}{note}",
                f"{kind} {seq}{note}",
                kind[0],
            ],
        )
        self.put(
            ss,
            es,
            self.out_python,
            [
                "FRAME",
                {
                    "side": name,
                    "kind": kind,
                    "sequence": seq,
                    "flags": flags,
                    "payload": [w[0] for w in payload],
                    "again": note == " (again)",
                    "dropped": note == " (dropped)",
                },
            ],
        )
        for piece, piece_flags, piece_ss, piece_es in taken:
            if self.units:
                self._unit(name, side, piece, piece_flags, piece_ss, piece_es)
            else:
                side.stream.extend(piece)
                self._packets(name, side)

    # -- packets and messages

    def _take(self, side, seq, piece):
        """A good DATA frame: into the stream in sequence order; ' (again)' if taken
        before. The note, and the pieces (payload, flags, ss, es) now in order."""
        if side.expected is None:
            side.expected = seq
        ahead = (seq - side.expected) % self.modulus
        if ahead >= self.modulus // 2 or seq in side.held:
            return " (again)", []
        side.held[seq] = piece
        taken = []
        while side.expected in side.held:
            taken.append(side.held.pop(side.expected))
            side.expected = (side.expected + 1) % self.modulus
        return "", taken

    def _arrived(self, name, side, seq, piece):
        """ack_mode none: a good DATA frame taken as it comes; a gap in the numbers
        loses data; after a loss, frames up to one marked FIRST are dropped."""
        flags, ss, es = piece[1:]
        if side.expected is not None and seq != side.expected:
            last = (seq - 1) % self.modulus
            self._lose(name, side, ss, es, f"frames {side.expected} to {last} missing")
        side.expected = (seq + 1) % self.modulus
        if side.lost and flags & FIRST:
            side.lost = False
        if side.lost:
            return " (dropped)", []
        return "", [piece]

    def _unit(self, name, side, payload, flags, ss, es):
        """transport none: payloads join into one message up to the frame marked LAST
        (the message spans its frames: an empty one is a frame with no payload)."""
        if side.unit is None:
            side.unit = [ss, 0, 0]
        unit = side.unit
        unit[1] += 2 * len(payload)
        unit[2] += 1
        if flags & LAST:
            self._ann(
                unit[0],
                es,
                ANN_MESSAGE,
                [f"{name}: message, {unit[1]} bytes in {unit[2]} frame(s)", "message", "M"],
            )
            side.unit = None

    def _packets(self, name, side):
        stream = side.stream
        while len(stream) >= 4:
            mid, flags = stream[0][0], stream[1][0]
            hi, lo = stream[2][0], stream[3][0]
            if self.little:
                hi, lo = lo, hi
            size = hi << 16 | lo
            total = 4 + (size + 1) // 2
            if len(stream) < total:
                return
            ss, es = stream[0][1], stream[total - 1][2]
            index, last = flags & 0x7FFF, bool(flags >> 15)
            tail = " (last)" if last else ""
            self._ann(
                ss,
                es,
                ANN_PACKET,
                [
                    f"{name}: message {mid} segment {index}{tail}, {size} bytes",
                    f"msg {mid} seg {index}{tail}",
                    "P",
                ],
            )
            message = side.message
            if index == 0 or message is None or message[0] != mid:
                if message is not None:
                    self._ann(
                        message[1],
                        ss,
                        ANN_WARNING,
                        [
                            f"{name}: message {message[0]} broken off before its last segment",
                            "Broken",
                        ],
                    )
                message = (mid, ss, 0, 0)
            if index != message[3]:
                # a segment out of order: the message is lost (the bridge drops it too)
                self._ann(
                    ss,
                    es,
                    ANN_WARNING,
                    [f"{name}: message {mid} segment {index} out of order", "Out of order"],
                )
                side.message = None
                del stream[:total]
                continue
            message = (mid, message[1], message[2] + size, message[3] + 1)
            if last:
                self._ann(
                    message[1],
                    es,
                    ANN_MESSAGE,
                    [
                        f"{name}: message {mid}, {message[2]} bytes in {message[3]} segment(s)",
                        f"message {mid}",
                        "M",
                    ],
                )
                message = None
            side.message = message
            del stream[:total]

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


class SetupError(Exception):
    """An option that cannot be read."""


def _int(text, name):
    try:
        return int(str(text), 0) if str(text).lower().startswith("0x") else int(str(text), 16)
    except ValueError:
        raise SetupError(f"{name}: {text!r} is not a hexadecimal number") from None


class Side:
    """What is under way for one sending side."""

    def __init__(self):
        self.words = []  # [word, ss, es, parity_ok], from the first word not yet framed
        self.expected = None  # next DATA sequence number to take
        self.held = {}  # sequence -> payload words [(word, ss, es)], ahead of expected
        self.stream = []  # payload words taken in order, not yet a whole packet
        self.message = None  # (id, ss, bytes so far, segments) of the message under way


class Decoder(srd.Decoder):
    api_version = 3
    id = "acrnema_frames"
    name = "ACR-NEMA frames"
    longname = "ACR-NEMA 50-pin bus frames, packets and messages (acrnema-bridge profile)"
    desc = "Frames with CRC-16 check word, transport packets and messages of the ACR-NEMA bus."
    license = "mit"
    inputs = ["acrnema_bus"]
    outputs = ["acrnema_frames"]
    tags = ["Embedded/industrial"]
    options = (
        {"id": "start_word", "desc": "Start word (hexadecimal)", "default": "A5C3"},
        {"id": "crc_init", "desc": "CRC-16 initial value (hexadecimal)", "default": "FFFF"},
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
        while words:
            if words[0][0] != self.start_word:
                # hunt: drop what precedes the next start word
                for i, w in enumerate(words):
                    if w[0] == self.start_word:
                        del words[:i]
                        break
                else:
                    del words[:]
                    return
            if len(words) < 3:
                return
            head, count = words[1][0], words[2][0]
            kind = self.kinds.get(head >> 12)
            seq = head & 0xFF
            if kind is None or head & 0x0F00 or count > self.max_payload:
                self._ann(words[0][1], words[0][2], ANN_START, ["Start", "S"])
                self._ann(words[1][1], words[1][2], ANN_HEADER, [f"Header {head:04X}?", "?"])
                self._damaged(name, words[0][1], words[2][2], "unreadable frame header", None)
                del words[0]
                continue
            total = 3 + count + 1
            if len(words) < total:
                return
            frame = words[:total]
            self._fields(frame, kind, seq, count)
            bad = [i for i, w in enumerate(frame) if not w[3]]
            if bad:
                self._damaged(
                    name, frame[0][1], frame[-1][2], f"parity error in word {bad[0]}", (kind, seq)
                )
                del words[0]
                continue
            covered = b"".join(w[0].to_bytes(2, "big") for w in frame[1:-1])
            crc = binascii.crc_hqx(covered, self.crc_init)
            check = frame[-1]
            if crc != check[0]:
                self._ann(
                    check[1],
                    check[2],
                    ANN_CHECK_BAD,
                    [f"Check {check[0]:04X} bad (want {crc:04X})", "Bad", "!"],
                )
                self._damaged(name, frame[0][1], frame[-1][2], "CRC mismatch", (kind, seq))
                del words[0]
                continue
            self._ann(
                check[1], check[2], ANN_CHECK_GOOD, [f"Check {check[0]:04X} good", "Good", "OK"]
            )
            del words[:total]
            self._frame(name, side, frame, kind, seq, count)

    def _fields(self, frame, kind, seq, count):
        self._ann(frame[0][1], frame[0][2], ANN_START, [f"Start {frame[0][0]:04X}", "Start", "S"])
        self._ann(
            frame[1][1],
            frame[1][2],
            ANN_HEADER,
            [f"{kind} seq {seq}", f"{kind} {seq}", kind[0]],
        )
        self._ann(frame[2][1], frame[2][2], ANN_COUNT, [f"Count {count}", str(count)])
        if count:
            self._ann(
                frame[3][1],
                frame[-2][2],
                ANN_PAYLOAD,
                [f"Payload, {count} words", "Payload", "P"],
            )

    def _damaged(self, name, ss, es, reason, header):
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

    def _frame(self, name, side, frame, kind, seq, count):
        ss, es = frame[0][1], frame[-1][2]
        payload = [(w[0], w[1], w[2]) for w in frame[3:-1]]
        note = ""
        if kind == "DATA":
            note = self._take(side, seq, payload)
        words = f", {count} words" if kind == "DATA" else ""
        self._ann(
            ss,
            es,
            ANN_FRAME,
            [
                f"{name}: {kind} seq {seq}{words}{note}",
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
                    "payload": [w[0] for w in payload],
                    "again": bool(note),
                },
            ],
        )
        if kind == "DATA":
            self._packets(name, side)

    # -- packets and messages

    def _take(self, side, seq, payload):
        """A good DATA frame: into the stream in sequence order; ' (again)' if taken before."""
        if side.expected is None:
            side.expected = seq
        ahead = (seq - side.expected) % self.modulus
        if ahead >= self.modulus // 2 or seq in side.held:
            return " (again)"
        side.held[seq] = payload
        while side.expected in side.held:
            side.stream.extend(side.held.pop(side.expected))
            side.expected = (side.expected + 1) % self.modulus
        return ""

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

# SPDX-License-Identifier: MIT
# Copyright (c) the acrnema-bridge authors

"""The word layer of the 50-pin bus: handshake edges in, words out.

Every edge of a handshake line (REQ, and ACK unless the mode is strobe) is one step of
the mode's cycle (:data:`MODES`, the same cycles as docs/link-profile.md sections 1.1
and 1.3). The data and parity lines are sampled at the cycle's first edge; PERR at its
second, the receiver's answer (in strobe mode, which has no answer, during the strobe).
A word is annotated from its first edge to its second: from when the sender offered it
to when the receiver took it (or the strobe ended). An edge that is not the one awaited
is a sync loss: it is annotated, and the cycle restarts at the next first edge.

OUTPUT_PYTHON, one item per word (``ss``/``es`` as the word's annotation)::

    ['WORD', {'word': int, 'side': 'A' | 'B' | '?', 'parity_ok': bool, 'perr': bool}]

and one per sync loss: ``['SYNC', reason]``.
"""

import sigrokdecode as srd

DATA_LINES = tuple(f"D{i}" for i in range(16))
OPTIONAL_LINES = ("ACK", "PARITY", "PARITY_HI", "DIR", "BREQ", "PERR")
LINES = (*DATA_LINES, "REQ", *OPTIONAL_LINES)
INDEX = {name: i for i, name in enumerate(LINES)}
# channel ids: the line's name in lower case, except the parity lines ('parity' is the
# option of the parity sense, and sigrok-cli takes channels and options from one list)
IDS = {name: name.lower() for name in LINES}
IDS.update(PARITY="par", PARITY_HI="par_hi")

DESCRIPTIONS = {
    "REQ": "Request (strobe): the sender says the data are valid",
    "ACK": "Acknowledge: the receiver took the word",
    "PARITY": "Parity over D0-D15 (over D0-D7 with PARITY_HI)",
    "PARITY_HI": "Parity over D8-D15 (two parity lines)",
    "DIR": "Direction: asserted while side A owns the bus",
    "BREQ": "Bus request: asserted while side B owns the bus",
    "PERR": "Parity error, driven by the receiver with ACK",
}

# The edges of one word's cycle, in order: (line, 'up' | 'down' | 'toggle').
MODES = {
    "four-phase": (("REQ", "up"), ("ACK", "up"), ("REQ", "down"), ("ACK", "down")),
    "two-phase": (("REQ", "toggle"), ("ACK", "toggle")),
    "strobe": (("REQ", "up"), ("REQ", "down")),
}

ANN_WORD_A, ANN_WORD_B, ANN_WORD_BAD, ANN_PHASE, ANN_PERR, ANN_SYNC = range(6)


class SetupError(Exception):
    """The channels given do not fit the options (a line the mode needs is missing)."""


def _edge_text(line, edge):
    return "{} {}".format(line, "changes" if edge == "toggle" else edge)


class Decoder(srd.Decoder):
    api_version = 3
    id = "acrnema_bus"
    name = "ACR-NEMA bus"
    longname = "ACR-NEMA 50-pin bus (acrnema-bridge link profile)"
    desc = "ACR-NEMA 300 style 16-bit parallel bus with REQ/ACK handshake, to words."
    license = "mit"
    inputs = ["logic"]
    outputs = ["acrnema_bus"]
    tags = ["Embedded/industrial"]
    channels = tuple(
        {"id": IDS[name], "name": name, "desc": DESCRIPTIONS.get(name, "Data line " + name)}
        for name in (*DATA_LINES, "REQ")
    )
    optional_channels = tuple(
        {"id": IDS[name], "name": name, "desc": DESCRIPTIONS[name]} for name in OPTIONAL_LINES
    )
    options = (
        {
            "id": "handshake",
            "desc": "Handshake mode",
            "default": "four-phase",
            "values": ("four-phase", "two-phase", "strobe"),
        },
        {
            "id": "parity",
            "desc": "Parity sense",
            "default": "odd",
            "values": ("odd", "even", "none"),
        },
        {
            "id": "active_low",
            "desc": "Active-low lines, by name, separated by / or , (e.g. REQ/D3)",
            "default": "",
        },
    )
    annotations = (
        ("word-a", "Word from side A"),
        ("word-b", "Word from side B"),
        ("word-bad", "Word with a parity error"),
        ("phase", "Handshake phase"),
        ("perr", "PERR asserted by the receiver"),
        ("sync", "Sync loss"),
    )
    annotation_rows = (
        ("words", "Words", (ANN_WORD_A, ANN_WORD_B, ANN_WORD_BAD)),
        ("phases", "Handshake phases", (ANN_PHASE,)),
        ("errors", "Errors", (ANN_PERR, ANN_SYNC)),
    )

    def __init__(self):
        self.reset()

    def reset(self):
        self.expect = 0
        self.last_edge = None  # sample of the last edge taken in step
        self.word = None  # the word of the cycle under way: dict, with 'ss'

    def start(self):
        self.out_python = self.register(srd.OUTPUT_PYTHON)
        self.out_ann = self.register(srd.OUTPUT_ANN)

    # -- setup

    def _setup(self):
        mode = self.options["handshake"]
        self.phases = MODES[mode]
        self.mode = mode
        text = self.options["active_low"]
        for sep in "/+ ":
            text = text.replace(sep, ",")
        names = [n.strip().upper() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in INDEX]
        if unknown:
            raise SetupError("active_low: unknown line(s) {}".format(", ".join(unknown)))
        self.inverted = [1 if name in names else 0 for name in LINES]
        self.present = [self.has_channel(i) for i in range(len(LINES))]
        if mode != "strobe" and not self.present[INDEX["ACK"]]:
            raise SetupError(f"handshake {mode} needs the ACK channel")
        self.parity = self.options["parity"]
        if self.parity != "none" and not self.present[INDEX["PARITY"]]:
            raise SetupError(f"parity {self.parity} needs the PARITY channel (or parity=none)")
        self.two_parity = self.present[INDEX["PARITY_HI"]]
        self.lines = []  # the handshake lines, in the order of their first phase
        for line, _ in self.phases:
            if INDEX[line] not in self.lines:
                self.lines.append(INDEX[line])
        self.conditions = [{i: "e"} for i in self.lines]
        self.phase_names = [
            f"{_edge_text(*a)} -> {_edge_text(*b)}"
            for a, b in zip(self.phases, self.phases[1:] + self.phases[:1], strict=False)
        ]

    def _asserted(self, pins, name):
        i = INDEX[name]
        return (pins[i] ^ self.inverted[i]) & 1 if self.present[i] else 0

    def _phase_of(self, pins, index):
        """The phase an edge of line ``index`` is, given the lines' levels after it."""
        name = LINES[index]
        level = self._asserted(pins, name)
        for phase, (line, edge) in enumerate(self.phases):
            if line != name:
                continue
            if edge == "toggle" or (edge == "up") == bool(level):
                return phase
        return None

    # -- words

    def _sample(self, pins):
        word = 0
        for bit in range(16):
            word |= self._asserted(pins, DATA_LINES[bit]) << bit
        ok = True
        if self.parity != "none":
            want = 1 if self.parity == "odd" else 0
            if self.two_parity:
                low = bin(word & 0xFF).count("1") + self._asserted(pins, "PARITY")
                high = bin(word >> 8).count("1") + self._asserted(pins, "PARITY_HI")
                ok = low % 2 == want and high % 2 == want
            else:
                ok = (bin(word).count("1") + self._asserted(pins, "PARITY")) % 2 == want
        if self.present[INDEX["DIR"]]:
            side = "A" if self._asserted(pins, "DIR") else "B"
        elif self.present[INDEX["BREQ"]]:
            side = "B" if self._asserted(pins, "BREQ") else "A"
        else:
            side = "?"
        return {
            "ss": self.samplenum,
            "word": word,
            "side": side,
            "parity_ok": ok,
            "answered": self.mode == "strobe",
            # PERR goes with the answer; a strobe has none, so with the strobe itself
            "perr": self.mode == "strobe" and bool(self._asserted(pins, "PERR")),
        }

    def _emit(self, es):
        w, self.word = self.word, None
        if w is None:
            return
        if not w["answered"]:
            self._ann(w["ss"], es, ANN_SYNC, ["Word {:04X} not answered".format(w["word"]), "Lost"])
            return
        text = "{}: {:04X}".format(w["side"], w["word"])
        short = "{:04X}".format(w["word"])
        if not w["parity_ok"]:
            cls = ANN_WORD_BAD
            text, short = text + " PARITY ERROR", short + "!"
        else:
            cls = ANN_WORD_A if w["side"] != "B" else ANN_WORD_B
        if w["perr"]:
            text += " PERR"
        self._ann(w["ss"], es, cls, [text, short])
        if w["perr"]:
            self._ann(w["ss"], es, ANN_PERR, ["PERR: receiver saw a parity error", "PERR"])
        data = {k: w[k] for k in ("word", "side", "parity_ok", "perr")}
        self.put(w["ss"], es, self.out_python, ["WORD", data])

    def _ann(self, ss, es, cls, texts):
        self.put(ss, max(es, ss + 1), self.out_ann, [cls, texts])

    def _edge(self, pins, phase):
        """One handshake edge, which is phase ``phase`` of the mode's cycle."""
        now = self.samplenum
        k = len(self.phases)
        if phase != self.expect:
            awaited = _edge_text(*self.phases[self.expect])
            got = _edge_text(*self.phases[phase]) if phase is not None else "an edge"
            reason = f"{got} while waiting for {awaited}"
            self._ann(now, now + 1, ANN_SYNC, ["Sync lost: " + reason, "Sync lost", "S"])
            self.put(now, now + 1, self.out_python, ["SYNC", reason])
            self._emit(now)
            self.last_edge = None
            if phase is None:
                self.expect = 0
                return
            if phase != 0:
                self.expect = (phase + 1) % k
                return
        elif self.last_edge is not None:
            self._ann(self.last_edge, now, ANN_PHASE, [self.phase_names[(phase - 1) % k]])
        self.last_edge = now
        if phase == 0:
            self._emit(now)
            self.word = self._sample(pins)
        elif phase == 1 and self.word is not None:
            if self.mode != "strobe":
                self.word["answered"] = True
                self.word["perr"] = bool(self._asserted(pins, "PERR"))
            self._emit(now)
        self.expect = (phase + 1) % k

    def decode(self):
        self._setup()
        while True:
            pins = self.wait(self.conditions)
            hits = [self.lines[i] for i, hit in enumerate(self.matched) if hit]
            phases = [self._phase_of(pins, i) for i in hits]
            # edges in one sample: the awaited one first
            k = len(self.phases)
            phases.sort(key=lambda p: (1, 0) if p is None else (0, (p - self.expect) % k))
            for phase in phases:
                self._edge(pins, phase)

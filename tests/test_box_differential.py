"""The Python box model against the firmware's C core, on the same inputs (differential).

``bridge.testing.box.BoxModel`` is the emulated box that runs everywhere (no compiler:
CI's conformance and hwtests benches, ``bench/box.py``); ``FirmwareCore`` is the
firmware's own core (``firmware/build/libboxcore.so`` through ctypes). Both are driven
here with the same host bytes, line events and clock, and must answer alike: every
INFO, REPLY, ERROR, WORDS_IN and STATS in the same order with the same fields, the same
READY and credit state after each step, the same words put on the line.

What may differ, and is normalised away: the board's name, firmware version and
capabilities in INFO (the model's line side is duplex only, and says so), the data
lines' levels in LINE_STATE (the model emulates READY lines only), and how often an
unchanged LINE_STATE or CREDITS report is repeated. A CONFIGURE that needs what the
model lacks is refused by it (``BAD_PARAMETER``), as its INFO announces. The model has no
handshake timing (its line side is a WordPort), so the peer here takes words at once.

The one divergence this test found (words that arrive while the peer is down, kept by
the C core) was the C core's to fix: it drops them now, as the model and the protocol's
section 6 do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_box import libboxcore  # noqa: F401 - builds firmware/build/libboxcore.so

from bridge.acrnema.physical import WordBuffer, parity_bits
from bridge.box import protocol as bp
from bridge.testing.box import BoxCore, BoxModel, FirmwareCore

READY_LINES = (1 << bp.LINES.index("READY_A")) | (1 << bp.LINES.index("READY_B"))
Step = tuple[float, str, Any]


def _normalised(message: object) -> object:
    if isinstance(message, bp.Info):
        return ("INFO", message.version, message.out_words, message.in_words)
    if isinstance(message, bp.LineState):
        ready = message.levels & READY_LINES
        return ("LINE_STATE", message.ready, message.peer_ready, message.bus, message.role, ready)
    if isinstance(message, bp.WordsIn):
        return ("WORDS_IN", message.offset, message.words.tolist(), message.parity.tolist())
    return message


def play(core: BoxCore, script: list[Step]) -> list[object]:
    """What ``core`` does at each step of ``script``: its answers, its last LINE_STATE so
    far, the words it put on the line, and its last CREDITS (scripts end with the line
    drained and a quiet second, so that report says where the box settled)."""
    if isinstance(core, FirmwareCore):
        core._t0 = 0.0  # the same clock as the model's
    decoder = bp.BoxFrameDecoder(sender="box")
    seq = 0
    status: dict[str, object] = {}
    credits: bp.BoxCredits | None = None  # when a report comes is the box's choice
    record: list[object] = []
    for now, action, arg in script:
        if action == "bytes":
            core.feed(arg, now)
        elif action == "send":
            data = b"".join(bp.encode_frame(m, (seq + i) & 0xFF) for i, m in enumerate(arg))
            seq += len(arg)
            core.feed(data, now)
        elif action == "peer":
            core.set_peer_ready(arg, now)
        elif action == "take":
            taken = core.line_take(arg, now)
            record.append(("took", taken.words.tolist(), taken.parity.tolist()))
        elif action == "put":
            record.append(("put", core.line_put(arg, now)))
        core.poll(now)
        answers = []
        for event in decoder.feed(core.output(1 << 20, now)):
            message = _normalised(event.message if isinstance(event, bp.BoxFrame) else event)
            if isinstance(message, tuple) and message[0] == "LINE_STATE":
                status["line"] = message
            elif isinstance(message, bp.BoxCredits):
                credits = message
            else:
                answers.append(message)
        record.append((now, action, answers, dict(status) if now > 0 else {}))
    record.append(("credits at the end", credits))
    return record


def words(count: int, step: int = 1, bad: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    values = (np.arange(count, dtype=np.uint32) * step).astype(np.uint16)
    parity = parity_bits(values, "odd")
    for index in bad:
        parity[index] ^= 1
    return values, parity


def out(position: int, values: np.ndarray, parity: np.ndarray) -> list[bp.BoxMessage]:
    return list(bp.words_messages(bp.WordsOut, position, values, parity, max_words=1000))


START: list[Step] = [
    (0.0, "bytes", b"\0"),
    (0.0, "send", [bp.Hello(max_body=4096)]),
    (
        0.01,
        "send",
        [bp.Reset(defaults=True), bp.HostCredits(0, 1000), bp.Configure(duplex=True)]
        + [bp.LineSet(True)],
    ),
    (0.02, "peer", True),
]


def settle(now: float) -> list[Step]:
    """Drain the line, then a quiet 1.5 s: the once-a-second reports say where it settled."""
    return [(now + 0.01, "take", 1 << 20), (now + 1.5, "bytes", b"")]


def same_behaviour(script: list[Step], library: str) -> None:
    model = play(BoxModel(), script)
    firmware_core = FirmwareCore(library)
    try:
        firmware = play(firmware_core, script)
    finally:
        firmware_core.close()
    assert len(model) == len(firmware)
    for step, (by_model, by_firmware) in enumerate(zip(model, firmware, strict=True)):
        assert by_model == by_firmware, f"step {step} ({script_text(by_model)}) differs"


def script_text(record: object) -> str:
    return str(record)[:300]


def test_the_model_answers_as_the_firmware_does(libboxcore: str) -> None:  # noqa: F811
    """Handshake, words both ways, parity errors, a gap, a damaged frame, repeated
    positions, the host's credit, STATS, the peer's READY going, READY dropped with RESET."""
    v, p = words(100)
    script = (
        START
        + [
            (0.03, "send", out(0, v, p)),
            (0.04, "take", 1000),
            (0.05, "put", WordBuffer(*words(50, 7, bad=(3,)))),
            (0.06, "send", out(150, v[:10], p[:10])),  # a gap of 50 words
            (0.07, "take", 1000),
            (0.08, "bytes", bp.encode_frame(bp.Query(bp.MsgType.STATS), 200)[:-3] + b"\1\2\0"),
            (0.09, "send", out(100, v[:10], p[:10])),  # positions already had
            (0.10, "take", 1000),
            (0.11, "put", WordBuffer(*words(2000, 3))),  # beyond the host's credit of 1000
            (0.12, "send", [bp.HostCredits(1000, 3000)]),
            (0.13, "send", [bp.Query(bp.MsgType.STATS)]),
            (0.14, "peer", False),
            (0.15, "put", WordBuffer(*words(5))),
            (0.16, "send", [bp.LineSet(False), bp.Reset(), bp.HostCredits(0, 1000)]),
            (0.17, "send", [bp.Query(bp.MsgType.STATS), bp.Query(bp.MsgType.INFO)]),
            (1.5, "bytes", b""),  # the once-a-second reports
        ]
    )
    same_behaviour(script, libboxcore)


@pytest.mark.parametrize("seed", range(6))
def test_random_traffic_gets_the_same_answers(seed: int, libboxcore: str) -> None:  # noqa: F811
    """Random words out (in order, with gaps, repeated), takes, puts with bad parity,
    credits and queries, the same for both. The peer stays READY and takes the words at
    once: the model has no handshake timing (its line is a WordPort), the firmware times
    out a peer that takes nothing for its handshake timeout."""
    rng = np.random.default_rng(seed)
    script = list(START)
    now, position, received = 0.02, 0, 0
    for _ in range(60):
        now += float(rng.uniform(0.001, 0.3))
        kind = rng.choice(["out", "out", "take", "put", "credits", "query"])
        if kind == "out":
            count = int(rng.integers(1, 3000))
            at = (position + int(rng.choice([0, 0, 0, 5, -5]))) & 0xFFFF_FFFF
            v, p = words(count, int(rng.integers(1, 9)))
            script.append((now, "send", out(at, v, p)))
            script.append((now + 0.001, "take", 1 << 20))  # the peer takes them at once
            position = (at + count) & 0xFFFF_FFFF
        elif kind == "take":
            script.append((now, "take", int(rng.integers(1, 5000))))
        elif kind == "put":
            count = int(rng.integers(1, 3000))
            bad = tuple(int(i) for i in rng.integers(0, count, int(rng.integers(0, 3))))
            script.append((now, "put", WordBuffer(*words(count, 5, bad=tuple(set(bad))))))
            received += count
        elif kind == "credits":
            script.append((now, "send", [bp.HostCredits(received, received + 4000)]))
        else:
            script.append((now, "send", [bp.Query(bp.MsgType.STATS)]))
    same_behaviour(script + settle(now), libboxcore)


def test_what_the_model_lacks_it_refuses_as_its_info_says(libboxcore: str) -> None:  # noqa: F811
    """The one documented difference: the model's line side is duplex only."""
    script = START + [
        (0.5, "send", [bp.LineSet(False), bp.Reset()]),  # not while the link is up: BUSY
        (3.0, "send", [bp.Configure(duplex=False, role=bp.Role.A)]),
    ]
    (*_, by_model, _) = play(BoxModel(), script)
    firmware_core = FirmwareCore(libboxcore)
    try:
        (*_, by_firmware, _) = play(firmware_core, script)
    finally:
        firmware_core.close()
    statuses = [
        [a.status for a in record[2] if isinstance(a, bp.Reply)]  # type: ignore[index]
        for record in (by_model, by_firmware)
    ]
    assert statuses == [[bp.Status.BAD_PARAMETER], [bp.Status.OK]]
    assert not BoxModel().info.capabilities & bp.Capability.ROLE_A


def test_words_sent_while_the_peer_is_down(libboxcore: str) -> None:  # noqa: F811
    """Our host never sends then (no credit while the peer is not READY), but a WORDS_OUT
    frame already on its way when the peer drops does arrive. Both drop it and count it
    in ``discarded_words`` (docs/box-protocol.md, section 6: nothing reaches a side that
    was gone); its positions count, so the CREDITS after it agree. This test found the C
    core keeping such words and handing them to the peer once it was back."""
    v, p = words(1500)
    script = START + [
        (0.03, "peer", False),
        (0.04, "send", out(0, v, p)),
        (0.05, "send", [bp.Query(bp.MsgType.STATS)]),
        (0.06, "peer", True),
        (0.07, "take", 5000),
        *settle(0.07),
    ]
    same_behaviour(script, libboxcore)


def test_the_peer_s_drop_waits_for_the_words_taken_before_it(libboxcore: str) -> None:  # noqa: F811
    """Words taken from the line before the peer's READY drops go to the host before the
    LINE_STATE that reports the drop (docs/box-protocol.md, section 6). Beyond the host's
    credit the LINE_STATE waits for them, in both: the last LINE_STATE of the steps
    before the credit still says the peer is READY; REPLYs and STATS do not wait."""
    script = START + [
        (0.03, "put", WordBuffer(*words(1500, 3))),  # 1000 within the credit, 500 wait
        (0.04, "peer", False),
        (0.05, "send", [bp.LineSet(True), bp.Query(bp.MsgType.STATS)]),
        (0.06, "send", [bp.HostCredits(1000, 3000)]),  # the 500, then the drop
        *settle(0.06),
    ]
    same_behaviour(script, libboxcore)
    record = play(BoxModel(), script)
    peer_at = {s[0]: s[3]["line"][2] for s in record if len(s) == 4 and "line" in s[3]}
    assert peer_at[0.04] and peer_at[0.05] and not peer_at[0.06]


def test_bus_shape_fields_get_the_same_answers(libboxcore: str) -> None:  # noqa: F811
    """CONFIGURE's bus-shape fields (docs/box-protocol.md): every refusal (its field and
    reason), an unknown field, then a bus without READY and PERR, two-phase and parity on
    two lines, accepted, with the peer's READY down (it does not count) and words with a
    bad parity both ways."""
    shape = bp.Configure(
        duplex=True,
        handshake=bp.Handshake.TWO_PHASE,
        absent_lines=bp.Absent.READY | bp.Absent.PERR,
        parity_bytes=True,
    )
    v, p = words(40, 3, bad=(5,))
    script = [
        (0.0, "bytes", b"\0"),
        (0.0, "send", [bp.Hello(max_body=4096)]),
        (0.01, "send", [bp.Reset(defaults=True), bp.HostCredits(0, 1000)]),
        (0.02, "send", [bp.Configure(handshake=bp.Handshake.STROBE)]),  # PERR on the bus
        (0.03, "send", [bp.Configure(absent_lines=bp.Absent.BREQ)]),  # not duplex
        (0.04, "send", [bp.Configure(extra=bytes([7, 2, 0, 0]))]),  # unknown tag 7
        (0.05, "send", [shape, bp.LineSet(True)]),
        (0.06, "peer", False),
        (0.07, "send", out(0, v, p)),
        (0.08, "take", 1000),
        (0.09, "put", WordBuffer(*words(30, 5, bad=(2, 9)))),
        (0.10, "send", [bp.Query(bp.MsgType.STATS)]),
        *settle(0.10),
    ]
    same_behaviour(script, libboxcore)
    replies = [
        a
        for record in play(BoxModel(), script)
        if isinstance(record, tuple) and len(record) == 4
        for a in record[2]
        if isinstance(a, bp.Reply) and a.request == bp.MsgType.CONFIGURE
    ]
    assert [(r.status, r.detail) for r in replies] == [
        (bp.Status.BAD_PARAMETER, bp.ConfigField.HANDSHAKE),
        (bp.Status.BAD_PARAMETER, bp.ConfigField.ABSENT_LINES),
        (bp.Status.UNKNOWN_FIELD, 7),
        (bp.Status.OK, 0),
    ]

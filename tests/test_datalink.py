"""The data link (bridge.acrnema.datalink): two ends back to back over a faulty wire."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.acrnema.datalink import (
    DataLink,
    DatalinkParams,
    DataReceived,
    LinkFailed,
    LinkProtocolError,
)


class Wire:
    """Moves words between two ends, flipping bits and losing words at given rates."""

    def __init__(self, flip: float = 0.0, drop: float = 0.0, seed: int = 0) -> None:
        self.flip, self.drop = flip, drop
        self.rng = np.random.default_rng(seed)

    def carry(self, words: np.ndarray, parity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        words, parity = words.copy(), parity.copy()
        if self.flip and len(words):
            hits = self.rng.random(len(words)) < self.flip
            bits = self.rng.integers(0, 17, len(words))
            for i in np.flatnonzero(hits):
                if bits[i] == 16:
                    parity[i] ^= 1
                else:
                    words[i] ^= np.uint16(1 << int(bits[i]))
        if self.drop and len(words):
            keep = self.rng.random(len(words)) >= self.drop
            words, parity = words[keep], parity[keep]
        return words, parity


def run(
    message: bytes, wire: Wire, params: DatalinkParams | None = None, limit: float = 60.0
) -> tuple[bytes, list[object], DataLink]:
    """Send ``message`` from a to b on a fake clock; return what b received."""
    params = params or DatalinkParams()
    a, b = DataLink(params), DataLink(params)
    a.send(message)
    now, received, events = 0.0, b"", []
    while now < limit and not (a.idle and b.idle):
        for sender, receiver in ((a, b), (b, a)):
            words, parity = sender.transmit(now)
            got = receiver.receive(*wire.carry(words, parity), now)
            events += got
            received += b"".join(
                e.data for e in got if isinstance(e, DataReceived) and receiver is b
            )
        now += 0.005
        for end in (a, b):
            events += end.handle_timer(now)
        if any(isinstance(e, LinkFailed) for e in events):
            break
    return received, events, a


def test_clean_wire_delivers_a_multi_frame_message_once() -> None:
    message = bytes(range(256)) * 40  # 10,240 bytes: 20 frames of 256 words
    received, events, sender = run(message, Wire())
    assert received == message
    assert sender.retransmissions == 0 and not any(isinstance(e, LinkFailed) for e in events)


@pytest.mark.parametrize(("flip", "drop"), [(1e-3, 0.0), (0.0, 1e-3), (2e-3, 1e-3)])
def test_noisy_wire_still_delivers_in_order_exactly_once(flip: float, drop: float) -> None:
    message = np.random.default_rng(4).bytes(64_000)
    received, events, sender = run(message, Wire(flip, drop, seed=7))
    assert received == message
    assert sender.retransmissions > 0  # the noise really hit
    assert not any(isinstance(e, LinkFailed) for e in events)


def test_broken_wire_fails_after_the_retry_limit_at_the_deadlines() -> None:
    params = DatalinkParams(ack_timeout=0.05, retry_limit=3)
    a = DataLink(params)
    a.send(b"hello")
    a.transmit(0.0)
    assert a.next_deadline() == pytest.approx(0.05)
    assert a.handle_timer(0.04) == []
    events = []
    now = 0.05
    for _ in range(4):
        events += a.handle_timer(now)
        a.transmit(now)
        now += 0.06
    assert events == [LinkFailed(0, "no ACK after 3 retransmissions")]
    assert a.retransmissions == 3
    with pytest.raises(LinkProtocolError):
        a.send(b"more")


def test_window_bounds_frames_in_flight() -> None:
    a = DataLink(DatalinkParams(max_payload_words=4, window=3))
    a.send(bytes(80))  # 10 frames of 4 words
    words, _ = a.transmit(0.0)
    assert len(words) == 3 * (1 + 2 + 4 + 1)  # start, header 2, payload 4, CRC: 3 frames


@settings(max_examples=30, deadline=None)
@given(
    message=st.binary(min_size=0, max_size=3000).map(lambda b: b + b"\x00" * (len(b) % 2)),
    seed=st.integers(0, 1000),
)
def test_any_message_round_trips_over_a_noisy_wire(message: bytes, seed: int) -> None:
    params = DatalinkParams(max_payload_words=64, window=4)
    received, _, _ = run(message, Wire(flip=5e-3, drop=2e-3, seed=seed), params)
    assert received == message


def test_sequence_numbers_wrap_safely_when_one_frame_is_lost_again_and_again() -> None:
    # 4-bit sequence numbers wrap every 16 frames; a lossy wire keeps some frames
    # unacknowledged while later ones are acknowledged: numbers must never be reused
    # while an older frame with the same number is still in flight.
    params = DatalinkParams(max_payload_words=4, sequence_bits=4, window=7)
    message = np.random.default_rng(9).bytes(8 * 600)  # 600 frames, 37 wraps
    received, _, sender = run(message, Wire(flip=2e-2, drop=1e-2, seed=11), params)
    assert received == message
    assert sender.retransmissions > 0

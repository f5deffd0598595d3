"""Line walk: each data line, the parity line and the READY lines, one at a time.

On a real bench a wiring fault (a swapped, open or shorted pair) shows up here as the
one line that does not arrive as sent. REQ, ACK, DIR and BREQ have no word of their own:
every word below goes through a whole REQ/ACK cycle, and the two directions make the bus
change hands (DIR/BREQ), so a fault on those lines fails every transfer; watch them with
a logic analyser as docs/hardware.md section 6 describes.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Bench, receive_exactly

from bridge.acrnema.physical import WordBuffer, parity_bits
from bridge.ports.base import LinkLost


def _walk(parity: str) -> WordBuffer:
    """Walking ones: D0 alone, D1 alone ... D15 alone, then all zeros and all ones."""
    words = np.array([1 << bit for bit in range(16)] + [0x0000, 0xFFFF], dtype=np.uint16)
    return WordBuffer(words, parity_bits(words, parity))


@pytest.mark.parametrize("direction", ["bridge to peer", "peer to bridge"])
def test_each_data_line_alone(bench: Bench, direction: str) -> None:
    sender, receiver = bench.ends(direction)
    walk = _walk(bench.profile.physical.parity)
    for index in range(len(walk.words)):
        one = WordBuffer(walk.words[index : index + 1], walk.parity[index : index + 1])
        sender.send(one)
        got = receive_exactly(receiver, 1)
        assert int(got.words[0]) == int(one.words[0]), (
            f"{direction}: sent {int(one.words[0]):#06x}, got {int(got.words[0]):#06x}: "
            f"check data line pair(s) {bin(int(one.words[0]) ^ int(got.words[0]))}"
        )


@pytest.mark.parametrize("direction", ["bridge to peer", "peer to bridge"])
def test_the_parity_line_in_both_states(bench: Bench, direction: str) -> None:
    sender, receiver = bench.ends(direction)
    words = np.array([0x0000, 0x0001], dtype=np.uint16)  # odd parity: line 1, then 0
    buffer = WordBuffer(words, parity_bits(words, bench.profile.physical.parity))
    sender.send(buffer)
    got = receive_exactly(receiver, 2)
    assert got.parity.tolist() == buffer.parity.tolist(), "check the PARITY pair"
    assert got.words.tolist() == words.tolist()


@pytest.mark.parametrize("side", ["bridge", "peer"])
def test_each_ready_line(bench: Bench, side: str) -> None:
    mover, watcher = bench.ends("bridge to peer" if side == "bridge" else "peer to bridge")
    mover.set_ready(False)
    with pytest.raises(LinkLost):
        watcher.recv(bench.link_s)
    assert not watcher.peer_ready, f"the {side}'s READY line drop was not seen"
    mover.set_ready(True)
    bench.wait_both()
    assert watcher.peer_ready and mover.peer_ready

"""Small helpers on :class:`~bridge.acrnema.physical.WordBuffer` shared by the ports.

:func:`as_buffer` is defined beside :class:`~bridge.acrnema.physical.WordBuffer` (the pure
raw word stream engine uses it too) and given here as before.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from bridge.acrnema.physical import WordBuffer, as_buffer

__all__ = ["WordQueue", "as_buffer", "empty_buffer", "join_buffers"]


def empty_buffer() -> WordBuffer:
    """A buffer with no words."""
    return WordBuffer(np.zeros(0, dtype=np.uint16), np.zeros(0, dtype=np.uint8))


def join_buffers(buffers: list[WordBuffer]) -> WordBuffer:
    """One buffer holding ``buffers`` in order."""
    if not buffers:
        return empty_buffer()
    if len(buffers) == 1:
        return buffers[0]
    return WordBuffer(
        np.concatenate([b.words for b in buffers]), np.concatenate([b.parity for b in buffers])
    )


class WordQueue:
    """Words waiting to be returned by ``recv``, in order; not thread-safe."""

    def __init__(self) -> None:
        self._parts: deque[WordBuffer] = deque()
        self.words = 0

    def __len__(self) -> int:
        return self.words

    def put(self, buffer: WordBuffer) -> None:
        if len(buffer.words):
            self._parts.append(buffer)
            self.words += len(buffer.words)

    def take(self, limit: int) -> WordBuffer:
        """Up to ``limit`` words from the front."""
        taken: list[WordBuffer] = []
        count = 0
        while self._parts and count < limit:
            part = self._parts.popleft()
            room = limit - count
            if len(part.words) > room:
                self._parts.appendleft(WordBuffer(part.words[room:], part.parity[room:]))
                part = WordBuffer(part.words[:room], part.parity[:room])
            taken.append(part)
            count += len(part.words)
        self.words -= count
        return join_buffers(taken)

    def clear(self) -> int:
        """Forget every word; how many there were."""
        count = self.words
        self._parts.clear()
        self.words = 0
        return count

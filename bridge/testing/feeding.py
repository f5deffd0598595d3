"""Feed a decoder its input every way (STYLE rule 7, after h11's ``tests/test_io.py``).

Partial input is the normal case for every decoder of the project (the raw word stream,
the data-link frames, the box protocol's frames...): bytes or words arrive split
anywhere. :func:`check_feeding` gives the same input to fresh decoders four ways and
checks that each gives the same events:

* ``whole``: in one call;
* ``byte by byte``: one element (byte, or word) per call;
* ``random pieces``: cut at random places (a seeded generator: a failure repeats);
* ``trailing``: whole, followed by ``trailing`` (the start of what comes next, such as
  a partial frame), which must change nothing before it and be held back.

The input is anything that slices (``bytes``, a numpy array of words); ``feed(decoder,
piece)`` returns the events of one call. Events that a decoder may split differently
by the way it was fed (words in several buffers) go through ``normalise`` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["FEEDINGS", "check_feeding", "feed_as", "pieces"]

D = TypeVar("D")
T = TypeVar("T")

FEEDINGS = ("whole", "byte by byte", "random pieces", "trailing")
"""The ways :func:`check_feeding` feeds a decoder (``trailing`` only with trailing data)."""


def _join(head: Any, tail: Any) -> Any:
    if isinstance(head, np.ndarray):
        return np.concatenate([head, np.asarray(tail, dtype=head.dtype)])
    return head + tail


def pieces(data: Any, feeding: str, *, seed: int = 0, trailing: Any = None) -> list[Any]:
    """``data`` cut as ``feeding`` says (:data:`FEEDINGS`)."""
    if feeding == "whole":
        return [data]
    if feeding == "byte by byte":
        return [data[i : i + 1] for i in range(len(data))]
    if feeding == "random pieces":
        rng = np.random.default_rng(seed)
        cuts = sorted(set(rng.integers(0, len(data) + 1, rng.integers(1, 16)).tolist()))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    if feeding == "trailing":
        if trailing is None:
            raise ValueError("feeding 'trailing' needs the trailing data")
        return [_join(data, trailing)]
    raise ValueError(f"feeding: one of {', '.join(FEEDINGS)}, not {feeding!r}")


def feed_as(
    new_decoder: Callable[[], D],
    feed: Callable[[D, Any], Iterable[T]],
    data: Any,
    feeding: str,
    *,
    seed: int = 0,
    trailing: Any = None,
) -> tuple[D, list[T]]:
    """A fresh decoder fed ``data`` as ``feeding`` says; the decoder and every event."""
    decoder = new_decoder()
    events: list[T] = []
    for piece in pieces(data, feeding, seed=seed, trailing=trailing):
        events += feed(decoder, piece)
    return decoder, events


def check_feeding(
    new_decoder: Callable[[], D],
    feed: Callable[[D, Any], Iterable[T]],
    data: Any,
    *,
    expected: Sequence[Any] | None = None,
    trailing: Any = None,
    held: Callable[[D], bool] | None = None,
    normalise: Callable[[list[T]], Sequence[Any]] = list,
    seeds: Iterable[int] = range(3),
) -> Sequence[Any]:
    """Feed ``data`` to fresh decoders every way; AssertionError unless each gives the
    same (normalised) events, equal to ``expected`` when given. With ``trailing``, also
    fed after the data: the events stay the same and ``held(decoder)`` must be true (the
    decoder keeps the partial input for the next call). Returns the events."""
    want = expected
    ways = [("whole", 0), ("byte by byte", 0)]
    ways += [("random pieces", seed) for seed in seeds]
    if trailing is not None:
        ways.append(("trailing", 0))
    for feeding, seed in ways:
        decoder, events = feed_as(new_decoder, feed, data, feeding, seed=seed, trailing=trailing)
        got = normalise(events)
        if want is None:
            want = got
        assert list(got) == list(want), f"fed {feeding} (seed {seed}): {got!r} != {want!r}"
        if feeding == "trailing" and held is not None:
            assert held(decoder), "the trailing partial input was not held back"
    assert want is not None
    return want

"""The port conformance suite, for any two connected ends (STYLE rules 6 and 15).

Every :class:`~bridge.ports.base.WordPort` keeps the rules of :mod:`bridge.ports.base`.
This suite checks them on two ends joined to each other: ``a`` and ``b`` of a
``loop://`` name, a ``tcp-listen://`` port and the ``tcp://`` port connected to it, a
``box+`` port and the far end of the emulated box's line, a real adapter and the other
end of its cable (hwtests/), a plug-in's pair. Each check is a function of
:class:`Ends`, listed in :data:`CHECKS`; a new check added there runs everywhere.

Two ways to run it (as python-can's back-to-back tests and trio's
``check_two_way_stream`` do):

* subclass :class:`PortConformance` in a pytest file and give it :meth:`~PortConformance.
  open_pair`: pytest collects one ``test_*`` method per check::

      class TestMyPort(PortConformance):
          @contextlib.contextmanager
          def open_pair(self):
              a, b = open_port("mine://x"), open_port("mine://x")
              try:
                  yield a, b
              finally:
                  a.close()
                  b.close()

* or call :func:`check_port_pair` with such a factory (every check, each on a fresh
  pair; an ``AssertionError`` names the check that failed).

The checks start threads (a sender while the test receives) and join them; they take
seconds, not minutes, on the software ports, and allow ``link_s`` for the two ends to
find each other and for a drop to be seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from bridge.acrnema.physical import WordBuffer
from bridge.ports.base import MAX_RECV_WORDS, LinkLost, PortError, WordPort

__all__ = [
    "CHECKS",
    "Ends",
    "PairFactory",
    "PortConformance",
    "check_port_pair",
    "expect_down",
    "in_thread",
    "receive",
    "same",
    "wait_both",
    "words",
]

LINK_S = 5.0


@dataclass
class Ends:
    """Two connected ends, both READY and seen by each other when a check starts."""

    a: WordPort
    b: WordPort
    link_s: float = LINK_S  # how long the two sides may take to find each other


PairFactory = Callable[[], AbstractContextManager[tuple[WordPort, WordPort]]]
"""Makes two connected ends, not yet waited for, and closes them when left."""


# ------------------------------------------------------------------ helpers


def words(count: int, seed: int = 0) -> WordBuffer:
    """``count`` random words with random parity bits (the same for the same seed)."""
    rng = np.random.default_rng(seed)
    return WordBuffer(
        rng.integers(0, 1 << 16, count, dtype=np.uint16),
        rng.integers(0, 2, count, dtype=np.uint8),
    )


def same(a: WordBuffer, b: WordBuffer) -> bool:
    """Whether two buffers hold the same words and parity bits."""
    return np.array_equal(a.words, b.words) and np.array_equal(a.parity, b.parity)


def join(*buffers: WordBuffer) -> WordBuffer:
    return WordBuffer(
        np.concatenate([b.words for b in buffers]), np.concatenate([b.parity for b in buffers])
    )


def receive(port: WordPort, count: int, timeout: float = 10.0) -> tuple[WordBuffer, list[int]]:
    """``count`` words from ``port`` and the sizes of the reads that brought them."""
    parts: list[WordBuffer] = []
    sizes: list[int] = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < count:
        assert time.monotonic() < deadline, f"only {got} of {count} words arrived"
        buffer = port.recv(0.5)
        if len(buffer.words):
            parts.append(buffer)
            sizes.append(len(buffer.words))
            got += len(buffer.words)
    return join(*parts), sizes


def wait_both(a: WordPort, b: WordPort, timeout: float = LINK_S) -> None:
    """Let two ends in one thread find each other (each answers only while it reads)."""
    deadline = time.monotonic() + timeout
    while not (a.peer_ready and b.peer_ready):
        assert time.monotonic() < deadline, "the two ends did not find each other"
        a.wait_peer(0.02)
        b.wait_peer(0.02)


def in_thread(action: Callable[[], Any]) -> Callable[[], None]:
    """Start ``action`` in a thread; the returned function joins it and re-raises."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="conformance-peer")
    thread.start()

    def join_it() -> None:
        thread.join(30)
        assert not thread.is_alive(), "the peer thread hangs"
        if errors:
            raise errors[0]

    return join_it


def expect_down(action: Callable[[], Any]) -> None:
    """``action()`` must raise :class:`LinkLost`."""
    try:
        action()
    except LinkLost:
        return
    raise AssertionError("LinkLost expected")


def _expect_closed(action: Callable[[], Any]) -> None:
    """``action()`` must raise :class:`PortError` but not :class:`LinkLost`."""
    try:
        action()
    except LinkLost as exc:
        raise AssertionError(f"a closed port raised LinkLost: {exc}") from exc
    except PortError:
        return
    raise AssertionError("PortError expected from a closed port")


def _chunks(buffer: WordBuffer, size: int) -> Iterator[WordBuffer]:
    for start in range(0, len(buffer.words), size):
        yield WordBuffer(buffer.words[start : start + size], buffer.parity[start : start + size])


# ------------------------------------------------------------------ the checks


def check_small_transfer_both_ways(ends: Ends) -> None:
    """A few words each way arrive whole and in order; two sends arrive as one stream."""
    ends.a.send(words(10, seed=1))
    got, _ = receive(ends.b, 10)
    assert same(got, words(10, seed=1))
    ends.b.send(words(3, seed=2))
    ends.b.send(words(4, seed=3))
    got, _ = receive(ends.a, 7)
    assert same(got, join(words(3, seed=2), words(4, seed=3)))


def check_large_transfer_in_order_split_reads(ends: Ends) -> None:
    """More than one recv may return arrives in order; no recv returns more than
    MAX_RECV_WORDS."""
    count = MAX_RECV_WORDS + 4096
    sent = words(count, seed=5)
    done = in_thread(lambda: [ends.a.send(part) for part in _chunks(sent, 1 << 17)])
    try:
        got, sizes = receive(ends.b, count, timeout=30)
    finally:
        done()
    assert same(got, sent)
    assert max(sizes) <= MAX_RECV_WORDS


def check_both_directions_at_once(ends: Ends) -> None:
    """Both ends send at the same time, in two threads; nothing is lost either way."""
    count = 1 << 16
    done_a = in_thread(lambda: ends.a.send(words(count, seed=7)))
    done_b = in_thread(lambda: ends.b.send(words(count, seed=8)))
    try:
        got_b, _ = receive(ends.b, count)
        got_a, _ = receive(ends.a, count)
    finally:
        done_a()
        done_b()
    assert same(got_b, words(count, seed=7))
    assert same(got_a, words(count, seed=8))


def check_recv_timeout_returns_empty_in_time(ends: Ends) -> None:
    """recv with nothing coming returns an empty buffer after about its timeout."""
    start = time.monotonic()
    buffer = ends.b.recv(0.2)
    elapsed = time.monotonic() - start
    assert len(buffer.words) == 0 and len(buffer.parity) == 0
    assert 0.15 <= elapsed < 1.0, f"recv(0.2) took {elapsed:.2f} s"
    start = time.monotonic()
    assert len(ends.a.recv(0).words) == 0
    assert time.monotonic() - start < 0.5


def check_empty_send_is_harmless(ends: Ends) -> None:
    """Sending no words does nothing; the next words arrive."""
    ends.a.send(words(0))
    ends.a.send(words(2, seed=9))
    got, _ = receive(ends.b, 2)
    assert same(got, words(2, seed=9))


def check_ready_drop_and_back(ends: Ends) -> None:
    """A dropped READY is LinkLost on the other side, on each call, and on this side's
    send; when it is back, words flow both ways again."""
    a, b = ends.a, ends.b
    a.set_ready(False)
    expect_down(lambda: b.recv(ends.link_s))
    assert not b.peer_ready
    expect_down(lambda: b.send(words(4)))
    expect_down(lambda: b.recv(0.1))  # again on each call while the peer is down
    expect_down(lambda: a.send(words(4)))  # our own READY is down: nothing goes
    assert not b.wait_peer(0.1)
    a.set_ready(True)
    wait_both(a, b, ends.link_s)
    a.send(words(5, seed=11))
    got, _ = receive(b, 5)
    assert same(got, words(5, seed=11))
    b.send(words(6, seed=12))
    got, _ = receive(a, 6)
    assert same(got, words(6, seed=12))


def check_short_drop_is_reported_once(ends: Ends) -> None:
    """A drop that is over before the other side looks is still reported, once."""
    ends.a.set_ready(False)
    ends.a.set_ready(True)
    expect_down(lambda: ends.b.recv(ends.link_s))
    wait_both(ends.a, ends.b, ends.link_s)
    ends.a.send(words(3, seed=13))
    got, _ = receive(ends.b, 3)
    assert same(got, words(3, seed=13))


def check_close_is_seen_and_idempotent(ends: Ends) -> None:
    """Closing is seen by the other side; close twice is harmless; a closed port raises
    PortError, not LinkLost."""
    a, b = ends.a, ends.b
    a.close()
    expect_down(lambda: b.recv(ends.link_s))
    expect_down(lambda: b.send(words(2)))
    assert not b.peer_ready
    assert not b.wait_peer(0.3)
    a.close()
    _expect_closed(lambda: a.send(words(2)))
    _expect_closed(lambda: a.recv(0.1))
    b.close()
    b.close()


def check_context_manager_closes(ends: Ends) -> None:
    """Leaving ``with port`` closes it; the other side sees the link go."""
    with ends.b as port:
        assert port is ends.b
    expect_down(lambda: ends.a.recv(ends.link_s))


CHECKS: tuple[Callable[[Ends], None], ...] = (
    check_small_transfer_both_ways,
    check_large_transfer_in_order_split_reads,
    check_both_directions_at_once,
    check_recv_timeout_returns_empty_in_time,
    check_empty_send_is_harmless,
    check_ready_drop_and_back,
    check_short_drop_is_reported_once,
    check_close_is_seen_and_idempotent,
    check_context_manager_closes,
)
"""Every conformance check, in the order they run."""


def run_check(
    check: Callable[[Ends], None], open_pair: PairFactory, link_s: float = LINK_S
) -> None:
    """``check`` on a fresh pair from ``open_pair``, both ends found first."""
    with open_pair() as (a, b):
        wait_both(a, b, link_s)
        check(Ends(a, b, link_s))


def check_port_pair(open_pair: PairFactory, *, link_s: float = LINK_S) -> None:
    """Run every check of :data:`CHECKS`, each on a fresh pair from ``open_pair``."""
    for check in CHECKS:
        try:
            run_check(check, open_pair, link_s)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc


class PortConformance:
    """Subclass in a pytest file and give :meth:`open_pair`: one test per check."""

    #: how long the two ends may take to find each other, and a drop to be seen
    link_s: float = LINK_S

    def open_pair(self) -> AbstractContextManager[tuple[WordPort, WordPort]]:
        """Two connected ends (not yet waited for), closed when the context is left."""
        raise NotImplementedError("give the pair of ends to test: define open_pair()")


def _method(check: Callable[[Ends], None]) -> Callable[[PortConformance], None]:
    def test(self: PortConformance) -> None:
        run_check(check, self.open_pair, self.link_s)

    test.__name__ = "test_" + check.__name__.removeprefix("check_")
    test.__qualname__ = f"PortConformance.{test.__name__}"
    test.__doc__ = check.__doc__
    return test


for _check in CHECKS:
    setattr(PortConformance, _method(_check).__name__, _method(_check))

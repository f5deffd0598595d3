"""The port conformance suite of tests/test_ports.py, on the bench's two ends.

The same test functions as for every software port (STYLE rule 6): here ``a`` is the
bridge side (``BRIDGE_HW_URL``, or the emulated box's ``box+`` URL) and ``b`` the peer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Bench
from test_ports import (  # the suite itself, collected here as this file's tests
    Pair,
    test_both_directions_at_once,
    test_empty_send_is_harmless,
    test_large_transfer_in_order_split_reads,
    test_ready_drop_and_back,
    test_recv_timeout_returns_empty_in_time,
    test_short_drop_is_reported_once,
    test_small_transfer_both_ways,
)

__all__ = [
    "test_both_directions_at_once",
    "test_empty_send_is_harmless",
    "test_large_transfer_in_order_split_reads",
    "test_ready_drop_and_back",
    "test_recv_timeout_returns_empty_in_time",
    "test_short_drop_is_reported_once",
    "test_small_transfer_both_ways",
]


@pytest.fixture
def pair(bench: Bench) -> Iterator[Pair]:
    yield Pair("bench", bench.bridge, bench.peer)

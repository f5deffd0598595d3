"""The port conformance kit (bridge.testing.ports) on the bench's two ends.

The same checks as for every software port (STYLE rules 6 and 15), collected from the
kit itself: a check added to ``bridge.testing.ports.CHECKS`` runs here too. ``a`` is the
bridge side (``BRIDGE_HW_URL``, or the emulated box's ``box+`` URL) and ``b`` the peer;
the ``bench`` fixture opens fresh ends for each test and closes them after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from conftest import Bench

from bridge.ports.base import WordPort
from bridge.testing.ports import PortConformance


class TestBenchConformance(PortConformance):
    @pytest.fixture(autouse=True)
    def _bench(self, bench: Bench) -> None:
        self.bench = bench
        self.link_s = bench.link_s

    @contextlib.contextmanager
    def open_pair(self) -> Iterator[tuple[WordPort, WordPort]]:
        yield self.bench.bridge, self.bench.peer

"""Shared fixtures: the sample corpus, real peer servers, and a thread-leak guard.

Fixtures (helpers and the skip/fail policy are in ``tests/peers.py``):

``corpus``
    session: ``Path`` of the sample corpus (``$BRIDGE_CORPUS`` or ``../shared/corpus``).
``corpus_file``
    session: ``corpus_file("r01") -> Path`` of the one file named ``r01_*``.
``loopback_shim``
    session: the ``LD_PRELOAD`` library that confines peer servers to 127.0.0.1.
``storescp``
    function: a fresh DCMTK storescp (:class:`peers.StoreSCPPeer`: ``host``, ``port``,
    ``ae_title``, ``out_dir``, ``received()``).
``orthanc_server`` / ``orthanc``
    one Orthanc per test module (:class:`peers.OrthancPeer`: ``host``, ``dicom_port``,
    ``http_port``, ``ae_title``, ``instances()``, ``simplified_tags(id)``,
    ``sop_instance_uids()``); ``orthanc`` is the same server emptied before the test.

Tests that use a peer or corpus fixture get the ``peers`` / ``corpus`` marker
automatically. Every test fails at teardown if it leaves a new thread running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import peers
import pytest

PEER_FIXTURES = frozenset({"loopback_shim", "storescp", "orthanc_server", "orthanc"})
CORPUS_FIXTURES = frozenset({"corpus", "corpus_file"})
THREAD_GRACE_S = 2.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & PEER_FIXTURES:
            item.add_marker(pytest.mark.peers)
        if used & CORPUS_FIXTURES:
            item.add_marker(pytest.mark.corpus)


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Fail a test that leaves a thread running (after a short grace period)."""
    before = threading.enumerate()
    yield
    leaked = peers.new_threads(before, THREAD_GRACE_S)
    if leaked:
        names = ", ".join(sorted(t.name for t in leaked))
        pytest.fail(f"test leaked {len(leaked)} thread(s): {names}", pytrace=False)


@pytest.fixture(scope="session")
def corpus() -> Path:
    return peers.require_corpus()


@pytest.fixture(scope="session")
def corpus_file(corpus: Path) -> Callable[[str], Path]:
    def find(prefix: str) -> Path:
        return peers.find_corpus_file(corpus, prefix)

    return find


@pytest.fixture(scope="session")
def loopback_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return peers.build_loopback_shim(tmp_path_factory.mktemp("loopback-shim"))


@pytest.fixture
def storescp(tmp_path: Path, loopback_shim: Path) -> Iterator[peers.StoreSCPPeer]:
    server = peers.start_storescp(tmp_path / "storescp", loopback_shim)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def orthanc_server(
    tmp_path_factory: pytest.TempPathFactory, loopback_shim: Path
) -> Iterator[peers.OrthancPeer]:
    server = peers.start_orthanc(tmp_path_factory.mktemp("orthanc"), loopback_shim)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(orthanc_server: peers.OrthancPeer) -> peers.OrthancPeer:
    orthanc_server.clear()
    return orthanc_server

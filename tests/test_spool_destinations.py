"""Destinations are managed (issue 11, item 2): listed, and dropped with their deliveries.

Finding: a destination could never be removed from a spool; every later object waited
for it for ever and its file was never freed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.spool.store import ObjectInfo, Spool

OLD, NEW = "OLD@127.0.0.1:104", "PACS@127.0.0.1:104"


def _info(n: int) -> ObjectInfo:
    return ObjectInfo(f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", "CT")


def _spool(root: Path) -> Spool:
    """Two objects for two destinations; NEW took both, OLD failed one and waits for both."""
    spool = Spool(root, owner="test")
    spool.register([OLD, NEW])
    for n in range(2):
        spool.put(bytes([n]) * 64, _info(n))
    spool.done(spool.claim(NEW, now=1e12))
    jobs = spool.claim(OLD, now=1e12, limit=1)
    spool.retry(jobs[0], "association rejected", next_attempt=1e12)
    return spool


def test_destinations_lists_counts_and_last_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = _spool(tmp_path / "spool")
    try:
        assert main(["spool", "destinations", "--json", "--spool", str(spool.root)]) == 0
        report = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
        assert report[NEW]["counts"]["done"] == 2 and report[NEW]["last_success"] is not None
        assert report[NEW]["last_error"] is None
        assert report[OLD]["counts"]["ready"] == 2 and report[OLD]["last_success"] is None
        assert report[OLD]["last_error"]["text"] == "association rejected"
        assert main(["spool", "destinations", "--spool", str(spool.root)]) == 0
        out = capsys.readouterr().out
        assert "association rejected" in out and "last success never" in out
    finally:
        spool.close()


def test_drop_destination_ends_its_deliveries_and_frees_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _spool(tmp_path / "spool")  # the owner stays: the command works alongside
    try:
        files = sorted((spool.root / "objects").rglob("*.dcm"))
        assert len(files) == 2  # held for OLD
        sp = ["--spool", str(spool.root)]
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        assert main(["spool", "drop-destination", OLD, *sp]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--yes" in err[0]
        assert spool.destinations() == [OLD, NEW]  # nothing dropped
        assert main(["spool", "drop-destination", "TYPO@h:1", "--yes", *sp]) == 2
        capsys.readouterr()
        assert main(["spool", "drop-destination", OLD, "--yes", *sp]) == 0
        assert "2 deliveries ended, 2 files freed" in capsys.readouterr().err
        assert spool.destinations() == [NEW]
        assert not any(f.exists() for f in files)
        assert spool.counts(OLD) == {"ready": 0, "in_flight": 0, "done": 0, "failed": 0}
        spool.put(b"later" * 20, _info(9))  # a later object waits for NEW only
        assert spool.counts(OLD)["ready"] == 0 and spool.counts(NEW)["ready"] == 1
    finally:
        spool.close()


def test_last_success_outlives_the_pruned_history(tmp_path: Path) -> None:
    # with retention_days 0 (the default) delivered history is pruned at the next
    # housekeeping, which every forward or run start does: the destination's last
    # success must not turn into "never" with it
    spool = Spool(tmp_path / "spool", owner="test")
    try:
        spool.register([NEW])
        for n in range(3):
            spool.put(bytes([n]) * 64, _info(n))
        spool.done(spool.claim(NEW, now=1e12))
        before = {d["name"]: d for d in spool.destination_report()}[NEW]["last_success"]
        assert before is not None
        spool.put(b"\x09" * 64, _info(9))  # the newest object's rows are kept by design
        _, pruned = spool.housekeeping(now=before + 1)
        assert pruned >= 2
        after = {d["name"]: d for d in spool.destination_report()}[NEW]["last_success"]
        assert after == before
    finally:
        spool.close()

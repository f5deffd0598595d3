"""Store and forward end to end, against real DCMTK storescp servers on 127.0.0.1.

The reliability cases of the forwarding issue: crashes (kill -9) while delivering, a
destination that is down and then comes back, a poison object, two destinations with one
down; issue 9: spool errors in a worker, a worker that cannot go on, a damaged spool file,
an object the receiver (storescp, Orthanc) aborts on; and the commands spool / forward /
send / echo / config. The hostile-peer cases are in test_hostile_peer.py.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import peers
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from bridge.cli import main
from bridge.dicom.core import convert
from bridge.errors import ConfigError
from bridge.forward.runner import Forwarder, ForwarderFailed, RetryPolicy
from bridge.forward.scu import Destination, Sender
from bridge.ingest import ingest_file
from bridge.spool.objects import dataset_bytes, object_info
from bridge.spool.store import Job, Spool, SpoolError
from bridge.testing.phantom import PhantomSpec, phantom_file

PRIVATE_SOP_CLASS = "1.3.6.1.4.1.99999.1.1"  # no PACS knows it: refused


def make_sources(folder: Path, count: int, size: int = 128) -> list[Path]:
    """ACR-NEMA 2.0 CT slices of one study, as a scanner wrote them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        spec = PhantomSpec(rows=size, columns=size, slice_index=i, slices=count)
        path = folder / f"slice{i:03d}.acr"
        path.write_bytes(phantom_file(spec))
        paths.append(path)
    return paths


def fill_spool(spool: Spool, folder: Path, count: int, size: int = 128) -> set[str]:
    uids = set()
    for path in make_sources(folder, count, size):
        [object_id] = ingest_file(spool, path).object_ids
        uids.add(str(dcmread(spool_path(spool, object_id), stop_before_pixels=True).SOPInstanceUID))
    return uids


def spool_path(spool: Spool, object_id: int) -> Path:
    return spool.root / "objects" / f"{object_id % 256:02x}" / f"{object_id}.dcm"


def private_object(path: Path) -> str:
    """A Part 10 object of a SOP class no receiver supports."""
    ds = Dataset()
    ds.SOPClassUID = PRIVATE_SOP_CLASS
    ds.SOPInstanceUID = "2.25.1234567890"
    ds.PatientName = "POISON^OBJECT"
    ds.PatientID = "P1"
    ds.Modality = "OT"
    ds.StudyInstanceUID = "2.25.11"
    ds.SeriesInstanceUID = "2.25.12"
    ds.file_meta = Dataset()  # type: ignore[assignment]
    ds.file_meta.MediaStorageSOPClassUID = PRIVATE_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def dest(server: peers.StoreSCPPeer) -> Destination:
    return Destination(server.ae_title, server.host, server.port)


def run_forwarder(spool: Spool, destinations: list[Destination], **kw: object) -> Forwarder:
    forwarder = Forwarder(spool, destinations, policy=kw.pop("policy", RetryPolicy(cap=2.0)))  # type: ignore[arg-type]
    forwarder.run(threading.Event(), **kw)  # type: ignore[arg-type]
    return forwarder


# ------------------------------------------------------------------ reliability


@pytest.mark.slow
def test_kill_9_while_delivering_loses_nothing(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    spool = Spool(tmp_path / "spool")
    uids = fill_spool(spool, tmp_path / "src", 60, size=512)
    spool.close()
    argv = [
        sys.executable, "-m", "bridge.cli", "forward", "--spool", str(tmp_path / "spool"),
        "--dest", f"{storescp.ae_title}@{storescp.host}:{storescp.port}",
        "--until-empty", "--backoff-cap", "1", "--timeout", "60",
    ]  # fmt: skip
    rng = random.Random(60)

    def arrived() -> int:  # storescp names files by SOP Instance UID: one per object
        return len(list(storescp.out_dir.glob("*.dcm")))

    kills = 0
    for _ in range(5):
        # kill at a random point: after a random number of new arrivals, mid-batch, so
        # some objects reached the PACS but were never marked done in the spool
        target = arrived() + rng.randint(1, 12)
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline and arrived() < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.01))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
    assert kills == 5, "the forwarder finished before it could be killed: use more objects"
    assert arrived() < 60
    final = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert final.returncode == 0, final.stderr
    assert set(storescp.received()) == uids
    counts = Spool(tmp_path / "spool").counts()
    assert counts == {"ready": 0, "in_flight": 0, "done": 60, "failed": 0}


def test_destination_down_then_up_is_served_within_the_backoff_cap(
    tmp_path: Path, loopback_shim: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    uids = fill_spool(spool, tmp_path / "src", 5)
    port = peers.free_port()
    target = Destination("LATE", "127.0.0.1", port)
    forwarder = Forwarder(spool, [target], policy=RetryPolicy(base=0.5, cap=2.0))
    finished: list[float] = []

    def forward() -> None:
        forwarder.run(threading.Event(), until_empty=True, timeout=60)
        finished.append(time.monotonic())

    # The forwarder runs in a thread; the server is started from this (main) thread,
    # since the peer helpers tie a server's life to the thread that started it.
    runner = threading.Thread(target=forward)
    runner.start()
    server = None
    try:
        time.sleep(2.5)
        assert not finished
        server = peers.start_storescp(tmp_path / "late", loopback_shim, "LATE", port=port)
        came_up = time.monotonic()
        runner.join(timeout=30)
        assert finished, "the forwarder did not finish after the destination came back"
        assert forwarder.summary.retried.get(target.name, 0) >= 1  # it really was down
        assert set(server.received()) == uids
        # served within the cap (2 s), plus slack for delivery on a busy machine
        assert finished[0] - came_up < 2.0 + 4.0
        assert spool.counts(target.name)["done"] == 5
    finally:
        runner.join()
        if server is not None:
            server.stop()


def test_poison_object_is_quarantined_and_the_rest_flows(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    spool = Spool(tmp_path / "spool")
    uids = fill_spool(spool, tmp_path / "src", 4)
    poison = tmp_path / "poison.dcm"
    private_object(poison)
    assert ingest_file(spool, poison).status == "spooled"
    forwarder = run_forwarder(spool, [dest(storescp)], until_empty=True, timeout=60)
    name = dest(storescp).name
    assert set(storescp.received()) == uids
    assert forwarder.summary.quarantined == {name: 1}
    [failed] = spool.deliveries(state="failed")
    assert failed.sop_instance_uid == "2.25.1234567890"
    assert PRIVATE_SOP_CLASS in (failed.last_error or "") or "SOP Class" in (
        failed.last_error or ""
    )
    assert spool.counts(name) == {"ready": 0, "in_flight": 0, "done": 4, "failed": 1}


def test_two_destinations_one_down_the_other_keeps_receiving(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    spool = Spool(tmp_path / "spool")
    uids = fill_spool(spool, tmp_path / "src", 6)
    down = Destination("DOWN", "127.0.0.1", peers.free_port())
    run_forwarder(spool, [dest(storescp), down], timeout=4.0)
    assert set(storescp.received()) == uids
    assert spool.counts(dest(storescp).name)["done"] == 6
    waiting = spool.counts(down.name)
    assert waiting["failed"] == 0 and waiting["ready"] + waiting["in_flight"] == 6
    [job] = spool.claim(down.name, now=time.time() + 3600, limit=1)
    assert job.path.exists()  # kept for the destination that has not got it


# ------------------------------------------------------------------ commands


def test_send_delivers_and_reports(
    tmp_path: Path, storescp: peers.StoreSCPPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = make_sources(tmp_path / "src", 3)
    target = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    status = main(
        ["send", str(tmp_path / "src"), "--dest", target, "--spool", str(tmp_path / "sp")]
    )
    assert status == 0
    assert len(storescp.received()) == len(sources)
    err = capsys.readouterr().err
    assert "3 files spooled" in err and f"{target}: delivered 3" in err


def test_spool_commands_list_stats_retry_purge(
    tmp_path: Path, storescp: peers.StoreSCPPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    sp = ["--spool", str(tmp_path / "sp")]
    make_sources(tmp_path / "src", 2)
    private_object(tmp_path / "src" / "poison.dcm")
    assert main(["spool", "add", str(tmp_path / "src"), *sp]) == 0
    target = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    assert main(["forward", "--dest", target, "--until-empty", *sp]) == 1  # one quarantined
    capsys.readouterr()
    assert main(["spool", "list", "--state", "failed", "--json", *sp]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["destination"] == target and row["state"] == "failed"
    assert main(["spool", "stats", "--json", *sp]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["destinations"][target] == {"ready": 0, "in_flight": 0, "done": 2, "failed": 1}
    assert main(["spool", "retry", *sp]) == 0
    assert main(["spool", "stats", "--json", *sp]) == 0
    assert json.loads(capsys.readouterr().out)["destinations"][target]["ready"] == 1
    assert main(["spool", "purge", "--failed", *sp]) == 0  # nothing failed any more: no-op
    assert main(["spool", "stats", "--json", *sp]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == 1


def test_echo_prints_the_round_trip(
    storescp: peers.StoreSCPPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["echo", f"{storescp.ae_title}@{storescp.host}:{storescp.port}"]) == 0
    assert "round trip" in capsys.readouterr().out
    down = f"NOBODY@127.0.0.1:{peers.free_port()}"
    assert main(["echo", down]) == 1


def test_config_file_env_and_flags_combine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(
        '[spool]\npath = "/srv/spool"\n[forward]\nbackoff_cap = 12\n'
        '[[destination]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 11112\n'
        'modalities = ["CT"]\n'
    )
    monkeypatch.setenv("BRIDGE_CALLING_AE", "SCANNER_GW")
    assert main(["--config", str(cfg), "config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["spool"]["path"] == "/srv/spool"
    assert (
        shown["forward"]["backoff_cap"] == 12.0 and shown["forward"]["calling_ae"] == "SCANNER_GW"
    )
    assert shown["destination"][0]["modalities"] == ["CT"]
    cfg.write_text("[forward]\nbackoff_cap = 'soon'\n")
    assert main(["--config", str(cfg), "config", "show"]) == 2
    assert "backoff_cap" in capsys.readouterr().err


def test_max_lost_and_give_up_after_come_from_config_and_flags(tmp_path: Path) -> None:
    from bridge.cli.common import retry_policy
    from bridge.config import load

    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[forward]\nmax_lost = 5\ngive_up_after = 60\n")
    policy = retry_policy(load(cfg, env={}))
    assert (policy.max_lost, policy.give_up_after) == (5, 60.0)
    flag = {"forward.max_lost": (0, "--max-lost")}
    assert retry_policy(load(cfg, env={}, flags=flag)).max_lost == 0  # the flag wins
    cfg.write_text("[forward]\nmax_lost = -1\n")
    with pytest.raises(ConfigError, match="max_lost"):
        load(cfg)
    spool = tmp_path / "never"
    args = ["forward", "--max-lost", "-1", "--dest", "A@127.0.0.1:104", "--spool", str(spool)]
    assert main(args) == 2
    assert not spool.exists()  # refused before the spool is made


def test_bad_destination_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["forward", "--dest", "nonsense", "--spool", str(tmp_path / "sp")]) == 2
    sp = tmp_path / "never"
    assert main(["send", str(tmp_path), "--dest", "PACS@host:notaport", "--spool", str(sp)]) == 2
    assert not sp.exists()  # a usage error is found before anything is spooled


# ------------------------------------------------------------------ issue 9: workers


class FlakySpool(Spool):
    """A real spool whose ``claim`` / ``done`` raise the error a locked database (or a
    disk filled by another process) gives, the first ``fail[name]`` times, or always
    when the count is negative. Nothing else of the spool is replaced."""

    def __init__(self, root: Path, fail: dict[str, int]) -> None:
        super().__init__(root)
        self.fail = dict(fail)
        self.raised = 0
        self._flaky_lock = threading.Lock()

    def _maybe_fail(self, name: str) -> None:
        with self._flaky_lock:
            left = self.fail.get(name, 0)
            if left == 0:
                return
            self.fail[name] = left - 1 if left > 0 else left
            self.raised += 1
        raise SpoolError(f"spool {self.root}: database: database is locked ({name})")

    def claim(self, destination: str, *, now: float, limit: int = 16) -> list[Job]:
        self._maybe_fail("claim")
        return super().claim(destination, now=now, limit=limit)

    def done(
        self, jobs: Sequence[Job], *, note: str | None = None, unlink: bool = True
    ) -> list[Path]:
        self._maybe_fail("done")
        return super().done(jobs, note=note, unlink=unlink)


def test_spool_errors_do_not_end_a_worker(
    tmp_path: Path, storescp: peers.StoreSCPPeer, caplog: pytest.LogCaptureFixture
) -> None:
    """Findings: any spool error ended the destination's thread (no except in _serve)
    while `run` kept acknowledging the scanner; and results received but not recorded
    stayed in_flight. Now the worker logs at ERROR, backs off and carries on."""
    spool = FlakySpool(tmp_path / "spool", {"claim": 2, "done": 2})
    uids = fill_spool(spool, tmp_path / "src", 6)
    target = dest(storescp)
    forwarder = Forwarder(spool, [target], policy=RetryPolicy(base=0.1, cap=0.3), batch=3)
    with caplog.at_level(logging.ERROR, logger="bridge.forward"):
        forwarder.run(threading.Event(), until_empty=True, timeout=60)
    assert spool.raised == 4
    assert set(storescp.received()) == uids
    assert spool.counts(target.name) == {"ready": 0, "in_flight": 0, "done": 6, "failed": 0}
    assert forwarder.summary.delivered == {target.name: 6}
    assert forwarder.fatal is None and not forwarder.failed.is_set()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum(target.name in e and "database is locked" in e for e in errors) == 4, errors


def test_a_worker_that_cannot_go_on_fails_the_forwarder(tmp_path: Path) -> None:
    spool = FlakySpool(tmp_path / "spool", {"claim": -1})
    fill_spool(spool, tmp_path / "src", 2)
    target = Destination("NOBODY", "127.0.0.1", peers.free_port())
    seen: list[tuple[str, BaseException]] = []
    policy = RetryPolicy(base=0.1, cap=0.2, give_up_after=1.0)
    forwarder = Forwarder(spool, [target], policy=policy, on_fatal=lambda n, e: seen.append((n, e)))
    stop = threading.Event()
    started = time.monotonic()
    with pytest.raises(ForwarderFailed, match="database is locked") as caught:
        forwarder.run(stop)  # would run until stopped: the failure ends it
    assert time.monotonic() - started < 1.0 + 5.0
    assert caught.value.destination == target.name
    assert isinstance(caught.value.cause, SpoolError)
    assert forwarder.failed.is_set() and forwarder.fatal is caught.value.cause
    assert seen == [(target.name, caught.value.cause)]
    assert "database is locked" in forwarder.summary.errors[target.name]


def test_a_sender_that_cannot_be_made_fails_the_forwarder(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")

    def broken(_destination: Destination) -> Sender:
        raise SpoolError("no sender")  # any exception, e.g. unusable TLS files

    forwarder = Forwarder(spool, [Destination("X", "127.0.0.1", 1)], sender_factory=broken)
    with pytest.raises(ForwarderFailed, match="no sender"):
        forwarder.run(threading.Event())
    assert forwarder.failed.is_set()


# ------------------------------------------------------------------ issue 9: integrity


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "pynetdicom-path"])
def test_damaged_or_missing_spool_file_is_quarantined_and_not_sent(
    fast: bool, tmp_path: Path, storescp: peers.StoreSCPPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: the spool kept a sha256 per object but never checked it; a damaged
    (truncated) file was accepted by a receiver and the spool then deleted its copy."""
    monkeypatch.setattr(Sender, "fast_send", fast)
    spool = Spool(tmp_path / "spool")
    uids = fill_spool(spool, tmp_path / "src", 5)
    damaged, missing = spool_path(spool, 2), spool_path(spool, 4)
    damaged_uid = str(dcmread(damaged, stop_before_pixels=True).SOPInstanceUID)
    missing_uid = str(dcmread(missing, stop_before_pixels=True).SOPInstanceUID)
    data = bytearray(damaged.read_bytes())
    data[-100:] = bytes(b ^ 0xFF for b in data[-100:])  # pixel values: storescp would take it
    damaged.write_bytes(bytes(data))
    missing.unlink()
    forwarder = run_forwarder(spool, [dest(storescp)], until_empty=True, timeout=60)
    name = dest(storescp).name
    assert set(storescp.received()) == uids - {damaged_uid, missing_uid}
    # the damaged file is caught by the send's sha256 check; the missing one never leaves
    # the spool: claim quarantines a delivery whose file is gone
    assert forwarder.summary.quarantined == {name: 1}
    failed = {d.sop_instance_uid: d.last_error or "" for d in spool.deliveries(state="failed")}
    assert failed.keys() == {damaged_uid, missing_uid}
    assert "spool file damaged: sha256 " in failed[damaged_uid]
    assert " expected " in failed[damaged_uid] and str(damaged) in failed[damaged_uid]
    assert failed[missing_uid].startswith(f"spool file missing: {missing}")
    assert damaged.exists()  # quarantined, kept for the operator


# ------------------------------------------------------------------ issue 9: poison


def put_poison(spool: Spool) -> str:
    """A CT object truncated inside its pixel data (odd length), put in the spool
    directly (``spool add`` would refuse it): storescp and Orthanc abort on it."""
    spec = PhantomSpec(rows=128, columns=128, slice_index=0, slices=1, patient_id="POISON")
    ds = convert(phantom_file(spec)).datasets[0]
    data = dataset_bytes(ds)
    spool.put(data[: len(data) - 1001], object_info(ds, "poison"))
    return str(ds.SOPInstanceUID)


def forward_with_poison(spool: Spool, target: Destination) -> tuple[Forwarder, float]:
    policy = RetryPolicy(base=0.2, cap=1.0, max_attempts=0, max_lost=3)
    forwarder = Forwarder(spool, [target], policy=policy)
    started = time.monotonic()
    forwarder.run(threading.Event(), until_empty=True, timeout=45)
    return forwarder, time.monotonic() - started


def assert_poison_quarantined(spool: Spool, target: Destination, poison: str) -> None:
    [failed] = spool.deliveries(state="failed")
    assert failed.sop_instance_uid == poison
    assert failed.attempts == 3
    assert "association lost 3 times while sending this object" in (failed.last_error or "")
    assert spool.counts(target.name) == {"ready": 0, "in_flight": 0, "done": 12, "failed": 1}


def test_object_storescp_aborts_on_is_quarantined_and_the_rest_arrive(
    tmp_path: Path, storescp: peers.StoreSCPPeer
) -> None:
    """Finding: storescp aborts on a truncated or odd-length Part 10 file and the bridge
    retried it for ever (max_attempts 0), holding back the rest of each batch."""
    spool = Spool(tmp_path / "spool")
    poison = put_poison(spool)  # first in the queue, so it heads every batch
    uids = fill_spool(spool, tmp_path / "src", 12)
    target = Destination(
        storescp.ae_title, storescp.host, storescp.port, dimse_timeout=5.0, network_timeout=5.0
    )
    _forwarder, elapsed = forward_with_poison(spool, target)
    assert set(storescp.received()) == uids
    assert_poison_quarantined(spool, target, poison)
    assert elapsed < 30


def test_object_orthanc_aborts_on_is_quarantined_and_the_rest_arrive(
    tmp_path: Path, orthanc: peers.OrthancPeer
) -> None:
    """Finding: against Orthanc each try of the poison object waited 60 s, so only 3 of
    12 healthy images got through in 120 s."""
    spool = Spool(tmp_path / "spool")
    poison = put_poison(spool)
    uids = fill_spool(spool, tmp_path / "src", 12)
    target = Destination(
        orthanc.ae_title, orthanc.host, orthanc.dicom_port, dimse_timeout=3.0, network_timeout=3.0
    )
    _forwarder, elapsed = forward_with_poison(spool, target)
    assert set(orthanc.sop_instance_uids()) == uids
    assert_poison_quarantined(spool, target, poison)
    assert elapsed < 30


def test_forward_exits_non_zero_when_a_worker_cannot_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sp = ["--spool", str(tmp_path / "sp")]
    make_sources(tmp_path / "src", 1)
    assert main(["spool", "add", str(tmp_path / "src"), *sp]) == 0

    def locked(self: Spool, destination: str, *, now: float, limit: int = 16) -> list[Job]:
        raise SpoolError(f"spool {self.root}: database: database is locked")

    monkeypatch.setattr(Spool, "claim", locked)
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[forward]\ngive_up_after = 0.5\n")  # the setting, from the file
    capsys.readouterr()
    started = time.monotonic()
    dest = f"NOBODY@127.0.0.1:{peers.free_port()}"
    status = main(["--config", str(cfg), "forward", "--dest", dest, *sp])
    assert status == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "cannot go on" in err and "database is locked" in err

"""Tests of the real-peer test infrastructure, then the converter acceptance tests.

The first part checks ``tests/peers.py`` and the fixtures of ``tests/conftest.py`` with a
Secondary Capture built here: the dciodvfy parser is not a no-op, storescp and Orthanc
receive what :func:`peers.store` sends, and every server listens on loopback only.

The second part (``test_acceptance_*``) runs ``acrnema-bridge convert`` on corpus files
and forwards its output to both peers; it skips until ``bridge.cli`` exists.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import peers
import pytest
from pydicom import dcmread

from bridge.cli import main

# ----------------------------------------------------------------- policy (no peers)

SKIP_UNLESS_REQUIRED = [("", pytest.skip.Exception), ("1", pytest.fail.Exception)]

CANNED_DCIODVFY = """\
CTImage
Warning - Bad group length - Group 0x8 specified as 0x16e actually 0x162
Error - </StudyDate(0008,0020)[1]> - Value invalid for this VR [DA] = <1996.12.02>
Error - </StudyDate(0008,0020)[1]> - Value invalid for this VR [DA] = <1996.12.02>
Warning - </(0008,0000)> - Retired attribute
Error - Information Object Not found
"""


def test_parse_dciodvfy_splits_iod_errors_and_warnings() -> None:
    result = peers.parse_dciodvfy(CANNED_DCIODVFY, 1)
    assert result.iod == "CTImage"
    assert result.errors == [
        "Error - </StudyDate(0008,0020)[1]> - Value invalid for this VR [DA] = <1996.12.02>",
        "Error - Information Object Not found",
    ]
    assert result.warnings == [
        "Warning - Bad group length - Group 0x8 specified as 0x16e actually 0x162",
        "Warning - </(0008,0000)> - Retired attribute",
    ]


def test_parse_dciodvfy_counts_abort_and_silent_failure_as_errors() -> None:
    aborted = peers.parse_dciodvfy('Abort - File open for read failed - "/x"\n', 1)
    assert aborted.errors == ['Abort - File open for read failed - "/x"']
    assert aborted.iod is None
    silent = peers.parse_dciodvfy("", 2)
    assert silent.errors == ["dciodvfy exited with status 2 without an Error line"]
    clean = peers.parse_dciodvfy("SCImage\nWarning - something\n", 0)
    assert (clean.iod, clean.errors, clean.warnings) == ("SCImage", [], ["Warning - something"])


@pytest.mark.parametrize(("require", "outcome"), SKIP_UNLESS_REQUIRED)
def test_missing_tool_skips_or_fails(
    monkeypatch: pytest.MonkeyPatch, require: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv(peers.REQUIRE_PEERS_ENV, require)
    with pytest.raises(outcome, match="no-such-peer-tool"):
        peers.require_tool("no-such-peer-tool")


@pytest.mark.parametrize(("require", "outcome"), SKIP_UNLESS_REQUIRED)
def test_missing_corpus_skips_or_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, require: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv(peers.CORPUS_ENV, str(tmp_path / "absent"))
    monkeypatch.setenv(peers.REQUIRE_CORPUS_ENV, require)
    with pytest.raises(outcome, match="corpus not found"):
        peers.require_corpus()


def test_require_tool_never_picks_the_venv_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = Path(sys.prefix) / "bin"
    if sys.prefix == sys.base_prefix or not (venv_bin / "storescp").exists():
        pytest.skip("not running in a virtualenv that has pynetdicom's storescp script")
    monkeypatch.setenv("PATH", str(venv_bin))
    monkeypatch.setattr(peers, "_SBIN_DIRS", ())
    monkeypatch.delenv(peers.REQUIRE_PEERS_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception):
        peers.require_tool("storescp")


def test_new_threads_sees_a_thread_until_it_ends() -> None:
    before = threading.enumerate()
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="leaky-worker")
    worker.start()
    try:
        assert peers.new_threads(before, grace_s=0.05) == [worker]
    finally:
        release.set()
        worker.join()
    assert peers.new_threads(before, grace_s=0.05) == []


# ------------------------------------------------------------------------ dciodvfy


@pytest.mark.peers
@pytest.mark.parametrize("implicit_vr", [False, True], ids=["explicit", "implicit"])
def test_dciodvfy_accepts_generated_secondary_capture(tmp_path: Path, implicit_vr: bool) -> None:
    path = tmp_path / "sc.dcm"
    peers.write_secondary_capture(path, implicit_vr=implicit_vr)
    result = peers.dciodvfy(path)
    assert result.errors == [], result.output
    assert result.iod == "SCImage"


@pytest.mark.peers
def test_dciodvfy_reports_errors_in_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.dcm"
    ds = peers.write_secondary_capture(path)
    del ds.SeriesInstanceUID  # Type 1 in General Series
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.StudyDate = "1996.12.02"  # ACR-NEMA date form, not a DA
    ds.save_as(path, enforce_file_format=True)
    result = peers.dciodvfy(path)
    assert any("SeriesInstanceUID" in line for line in result.errors), result.output
    assert any("StudyDate" in line and "1996.12.02" in line for line in result.errors)
    assert result.returncode != 0


@pytest.mark.peers
def test_dciodvfy_reports_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"not DICOM at all\n")
    assert peers.dciodvfy(path).errors != []


# ---------------------------------------------------------------- storescp, Orthanc


@pytest.fixture
def sc_file(tmp_path: Path) -> Path:
    path = tmp_path / "sc.dcm"
    peers.write_secondary_capture(path)
    return path


@pytest.mark.parametrize("implicit_vr", [False, True], ids=["explicit", "implicit"])
def test_storescp_receives_a_secondary_capture(
    tmp_path: Path, storescp: peers.StoreSCPPeer, implicit_vr: bool
) -> None:
    path = tmp_path / "sc.dcm"
    sent = peers.write_secondary_capture(path, implicit_vr=implicit_vr)
    (result,) = peers.store([path], storescp.host, storescp.port, storescp.ae_title)
    assert result.ok, str(result)
    received = storescp.received()
    assert list(received) == [sent.SOPInstanceUID]
    arrived = dcmread(received[sent.SOPInstanceUID])
    assert arrived.SOPClassUID == sent.SOPClassUID
    assert arrived.PixelData == sent.PixelData


def test_orthanc_receives_a_secondary_capture(sc_file: Path, orthanc: peers.OrthancPeer) -> None:
    sent = dcmread(sc_file)
    (result,) = peers.store([sc_file], orthanc.host, orthanc.dicom_port, orthanc.ae_title)
    assert result.ok, str(result)
    stored = orthanc.sop_instance_uids()
    assert list(stored) == [sent.SOPInstanceUID]
    tags = orthanc.simplified_tags(stored[sent.SOPInstanceUID])
    assert (tags["PatientID"], tags["Modality"]) == ("PEER-0001", "OT")


def test_orthanc_fixture_starts_each_test_empty(orthanc: peers.OrthancPeer) -> None:
    assert orthanc.instances() == []


@pytest.mark.peers  # fixtures taken through request are invisible to the auto-marking
@pytest.mark.parametrize("peer", ["storescp", "orthanc"])
def test_peers_refuse_an_unknown_sop_class(
    request: pytest.FixtureRequest, tmp_path: Path, peer: str
) -> None:
    """DCMTK's placeholder class (what ``dcmconv`` writes for ACR-NEMA) must not pass."""
    server = request.getfixturevalue(peer)
    port = server.port if peer == "storescp" else server.dicom_port
    path = tmp_path / "private.dcm"
    ds = peers.write_secondary_capture(path)
    ds.SOPClassUID = "1.2.276.0.7230010.3.1.0.1"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(peers.PeerError, match="not established"):  # no acceptable context
        peers.store([path], server.host, port, server.ae_title)


def _listeners() -> dict[int, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Listening TCP sockets of this network namespace: port -> local addresses."""
    found: dict[int, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                if state != "0A":  # TCP_LISTEN
                    continue
                address_hex, port_hex = local.split(":")
                raw = bytes.fromhex(address_hex)
                # the kernel prints each 32-bit word in host (little-endian) order
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.setdefault(int(port_hex, 16), []).append(ipaddress.ip_address(packed))
    return found


def test_servers_listen_on_loopback_only(
    storescp: peers.StoreSCPPeer, orthanc: peers.OrthancPeer
) -> None:
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux /proc/net/tcp to list listening sockets")
    listeners = _listeners()
    for port in (storescp.port, orthanc.dicom_port, orthanc.http_port):
        assert listeners.get(port), f"nothing listens on port {port}"
        assert all(address.is_loopback for address in listeners[port]), (port, listeners[port])


def test_loopback_shim_refuses_other_addresses(loopback_shim: Path) -> None:
    # 0.0.0.0 as a destination reaches this host, so the control run sends no packet out.
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('0.0.0.0', int(sys.argv[1])), timeout=5).close()\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    with socket.socket() as listener:
        listener.bind((peers.LOOPBACK, 0))
        listener.listen(4)
        port = str(listener.getsockname()[1])

        def run(env: dict[str, str]) -> str:
            done = subprocess.run(
                [sys.executable, "-c", probe, port],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            return done.stdout.strip()

        assert run(dict(os.environ)) == "connected"
        confined = dict(os.environ, LD_PRELOAD=str(loopback_shim))
        assert run(confined) == str(errno.ENETUNREACH)


def test_stopped_server_leaves_no_process_or_port(tmp_path: Path, loopback_shim: Path) -> None:
    server = peers.start_storescp(tmp_path, loopback_shim)
    group = server.process.popen.pid
    server.stop()
    assert not server.process.alive
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=1).close()


# ------------------------------------------------- converter acceptance (bridge.cli)
#
# These run the real CLI on the corpus's image files (ACR-NEMA 1.0 and 2.0, and the
# headerless transitional ones) and forward every output object to both peers.

ACCEPTANCE_INPUTS = ("r01", "d01", "m01", "m02", "r02", "r03", "r04")


def _is_part10(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as head:
        return head.read(132)[128:] == b"DICM"


@pytest.fixture(scope="module")
def converted(
    corpus_file: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """``acrnema-bridge convert r01 d01 m01 --out DIR``: the Part 10 files it wrote.

    Outputs are found by content (``DICM`` at offset 128), not by name: the converter
    names them like media file IDs (``PT.../ST.../SE.../IM...``), with no extension.
    """
    sources = [corpus_file(prefix) for prefix in ACCEPTANCE_INPUTS]
    out = tmp_path_factory.mktemp("converted")
    status = main(["convert", *map(str, sources), "--out", str(out)])
    assert status == 0, f"acrnema-bridge convert exited {status}"
    outputs = [p for p in sorted(out.rglob("*")) if p.name != "DICOMDIR" and _is_part10(p)]
    assert len(outputs) >= len(sources), f"expected a Part 10 file per input in {out}: {outputs}"
    uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in outputs]
    assert len(set(uids)) == len(uids), f"SOP Instance UIDs repeat: {uids}"
    return outputs


@pytest.mark.peers
def test_acceptance_outputs_pass_dciodvfy(converted: list[Path]) -> None:
    failures = {}
    for path in converted:
        result = peers.dciodvfy(path)
        if result.errors:
            failures[path.name] = result.errors
    assert failures == {}


def test_acceptance_outputs_reach_storescp(
    converted: list[Path], storescp: peers.StoreSCPPeer
) -> None:
    results = peers.store(converted, storescp.host, storescp.port, storescp.ae_title)
    assert [str(r) for r in results if not r.ok] == []
    assert set(storescp.received()) == {r.sop_instance_uid for r in results}


def test_acceptance_outputs_reach_orthanc(
    converted: list[Path], orthanc: peers.OrthancPeer
) -> None:
    results = peers.store(converted, orthanc.host, orthanc.dicom_port, orthanc.ae_title)
    assert [str(r) for r in results if not r.ok] == []
    assert set(orthanc.sop_instance_uids()) == {r.sop_instance_uid for r in results}

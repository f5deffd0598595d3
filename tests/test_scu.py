"""Tests of the DICOM egress (``bridge.forward``): status table, destinations, the Sender
against real peers (DCMTK storescp as shipped, with TLS, implicit-only; Orthanc for
Storage Commitment; a pynetdicom SCP on 127.0.0.1 for chosen statuses and a hung
response), C-ECHO, and the TCP adapter (pynetdicom internals, live socket options,
speed against storescp as shipped).
"""

from __future__ import annotations

import inspect
import logging
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import peers
import pynetdicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt

from bridge.forward import fastpath, tcp
from bridge.forward.scu import MAX_CONTEXTS, Destination, Item, Sender, TlsSettings, echo
from bridge.forward.status import ForwardError, Outcome, classify_status, describe_status

BRIDGE_AE = "ACRNEMA_BRIDGE"
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.9.7433.1.99"  # a class storescp does not know

# ------------------------------------------------------------------ sample objects


def write_ct(path: Path, *, size: int = 64, instance: int = 1) -> Item:
    """A minimal CT Image Storage object (Explicit VR LE), ``size`` x ``size`` x 16 bit."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Forward^Test", "FWD-1", "CT"
    ds.InstanceNumber = instance
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = ((np.arange(size * size, dtype="<u2") + instance) % 4096).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Item.from_file(path)


def cts(directory: Path, count: int, *, size: int = 64) -> list[Item]:
    directory.mkdir(parents=True, exist_ok=True)
    return [write_ct(directory / f"ct{i}.dcm", size=size, instance=i + 1) for i in range(count)]


def secondary_capture(directory: Path) -> Item:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sc.dcm"
    peers.write_secondary_capture(path)
    return Item.from_file(path)


def private_class(directory: Path) -> Item:
    """A CT whose SOP Class is private: a non-promiscuous SCP refuses its context."""
    item = write_ct(directory / "private.dcm")
    ds = dcmread(item.path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PRIVATE_SOP_CLASS
    ds.save_as(item.path, enforce_file_format=True)
    return Item.from_file(item.path)


def associations_in_log(scp: peers.StoreSCPPeer) -> int:
    return scp.process.log.read_text(errors="replace").count(
        "Association Acknowledged"
    )  # not the port probe


def start_storescp(workdir: Path, shim: Path, *options: str) -> peers.StoreSCPPeer:
    """DCMTK storescp with extra ``options`` (TLS, transfer syntax), loopback only."""
    tool = peers.require_tool("storescp")
    out_dir = workdir / "received"
    out_dir.mkdir(parents=True)
    port = peers.free_port()
    argv = [tool, "--verbose", *options, "-od", str(out_dir), "-fe", ".dcm", str(port)]
    process = peers.PeerProcess(argv, log=workdir / "storescp.log", shim=shim, cwd=workdir)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex((peers.LOOPBACK, port)) == 0

    process.wait_until(listening, f"listener on port {port}")
    return peers.StoreSCPPeer(peers.LOOPBACK, port, "STORESCP", out_dir, process)


# ------------------------------------------------------------------- status table


@pytest.mark.parametrize(
    ("status", "outcome", "text"),
    [
        (0x0000, Outcome.DONE, "Success"),
        (0x0001, Outcome.DONE, "Warning"),
        (0x0107, Outcome.DONE, "attribute list error"),
        (0x0116, Outcome.DONE, "out of range"),
        (0xB000, Outcome.DONE, "coercion"),
        (0xB006, Outcome.DONE, "discarded"),
        (0xB007, Outcome.DONE, "does not match"),
        (0xB123, Outcome.DONE, "Warning"),
        (0x0111, Outcome.DONE, "duplicate"),
        (0xA700, Outcome.RETRY, "out of resources"),
        (0xA7FF, Outcome.RETRY, "out of resources"),
        (0xA701, Outcome.RETRY, "out of resources"),
        (0x0213, Outcome.RETRY, "resource limitation"),
        (0x0110, Outcome.RETRY, "Processing failure"),
        (0x0210, Outcome.RETRY, "Duplicate invocation"),
        (0xFE00, Outcome.RETRY, "Cancel"),
        (0x0122, Outcome.FAIL, "SOP Class not supported"),
        (0x0124, Outcome.FAIL, "Not authorized"),
        (0x0117, Outcome.FAIL, "Invalid SOP Instance"),
        (0x0118, Outcome.FAIL, "No such SOP Class"),
        (0x0112, Outcome.FAIL, "No such object instance"),
        (0xA900, Outcome.FAIL, "does not match SOP Class"),
        (0xA9FF, Outcome.FAIL, "does not match SOP Class"),
        (0xC000, Outcome.FAIL, "cannot understand"),
        (0xCFFF, Outcome.FAIL, "cannot understand"),
        (0x0211, Outcome.FAIL, "Unrecognized operation"),
        (0xFF00, Outcome.FAIL, "Pending"),
        (0xA800, Outcome.FAIL, "Unknown status"),
        (0xD000, Outcome.FAIL, "Unknown status"),
    ],
)
def test_classify_status_table(status: int, outcome: Outcome, text: str) -> None:
    result = classify_status(status)
    assert result.outcome is outcome
    assert result.status == status
    assert result.reason.startswith(f"0x{status:04X} ")
    assert text.lower() in result.reason.lower()
    assert describe_status(status) == result.reason


def test_classify_status_covers_every_code_and_the_classes() -> None:
    for status in range(0x10000):
        result = classify_status(status)
        if 0xB000 <= status <= 0xBFFF:
            assert result.ok, hex(status)
        elif 0xA700 <= status <= 0xA7FF:
            assert result.outcome is Outcome.RETRY, hex(status)
        elif 0xA900 <= status <= 0xA9FF or 0xC000 <= status <= 0xCFFF:
            assert result.outcome is Outcome.FAIL, hex(status)
    assert classify_status(0x0122).reason == "0x0122 SOP Class not supported"
    for bad in (-1, 0x10000):
        with pytest.raises(ValueError, match="16 bits"):
            classify_status(bad)


# --------------------------------------------------------------- destinations, items


@pytest.mark.parametrize(
    ("text", "ae", "host", "port", "name"),
    [
        ("PACS@192.168.1.10:104", "PACS", "192.168.1.10", 104, "PACS@192.168.1.10:104"),
        (" ORTHANC@pacs.example.org:4242 ", "ORTHANC", "pacs.example.org", 4242, None),
        ("MY AE@localhost:11112", "MY AE", "localhost", 11112, None),
        ("V6@[::1]:104", "V6", "::1", 104, "V6@[::1]:104"),
        ("A@h:65535", "A", "h", 65535, None),
    ],
)
def test_destination_parse_good(text: str, ae: str, host: str, port: int, name: str) -> None:
    dest = Destination.parse(text, calling_ae="CALLER", idle_timeout=2.5)
    assert (dest.ae_title, dest.host, dest.port) == (ae, host, port)
    assert (dest.calling_ae, dest.idle_timeout) == ("CALLER", 2.5)
    assert dest.name == (name or text.strip())
    assert Destination.parse(dest.name) == Destination(ae, host, port)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not AE@HOST:PORT"),
        ("PACS", "not AE@HOST:PORT"),
        ("PACS@host", "not AE@HOST:PORT"),
        ("@host:104", "not AE@HOST:PORT"),
        ("PACS@:104", "not AE@HOST:PORT"),
        ("PACS@host:port", "not AE@HOST:PORT"),
        ("PACS@a@b:104", "not AE@HOST:PORT"),
        ("PACS@host:0", "not a TCP port"),
        ("PACS@host:70000", "not a TCP port"),
        ("SEVENTEEN_CHARS_X@host:104", "longer than 16"),
        ("A\\B@host:104", "backslash"),
        ("   @host:104", "not AE@HOST:PORT"),
        ("PACS@[nothex]:104", "not an IPv6 address"),
    ],
)
def test_destination_parse_bad(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Destination.parse(text)


def test_destination_checks_fields_and_filters_modalities() -> None:
    for kw, message in [
        ({"dimse_timeout": 0}, "dimse_timeout"),
        ({"max_pdu": 100}, "max_pdu"),
        ({"calling_ae": ""}, "calling AE title"),
        ({"commitment_port": 70000}, "commitment_port"),
        ({"modalities": "CT"}, "modalities"),
    ]:
        with pytest.raises(ValueError, match=message):
            Destination("PACS", "h", 104, **kw)  # type: ignore[arg-type]
    assert Destination("PACS", "h", 104).accepts(None)
    ct_only = Destination("PACS", "h", 104, modalities=frozenset({"ct", "MR"}))
    assert ct_only.modalities == {"CT", "MR"}
    assert ct_only.accepts("CT") and ct_only.accepts("mr ")
    assert not ct_only.accepts("OT") and not ct_only.accepts(None)
    with pytest.raises(ValueError, match="key_file needs"):
        TlsSettings(Path("ca.pem"), key_file=Path("k.pem"))


def test_item_from_file_reads_the_file_meta(tmp_path: Path) -> None:
    item = write_ct(tmp_path / "a.dcm")
    ds = dcmread(item.path)
    assert item == Item(item.path, CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(ForwardError, match=r"junk\.dcm"):
        Item.from_file(tmp_path / "junk.dcm")


def test_contexts_are_capped_and_put_the_batch_first(tmp_path: Path) -> None:
    base = write_ct(tmp_path / "a.dcm")
    sender = Sender(Destination("PACS", "127.0.0.1", 104, commitment=True))
    many = [
        Item(base.path, f"1.2.3.{n}", f"1.2.3.4.{n}", ExplicitVRLittleEndian) for n in range(200)
    ]
    contexts, proposed = sender._contexts(many[150:151] + many)
    assert len(contexts) == MAX_CONTEXTS
    assert contexts[0].abstract_syntax == "1.2.840.10008.1.20.1"
    assert contexts[1].abstract_syntax == "1.2.3.150"
    assert ("1.2.3.150", "native") in proposed and ("1.2.3.199", "native") not in proposed
    sender.close()


# ------------------------------------------------------------------ storescp (DCMTK)


def test_send_arrives_reuses_one_association_and_echoes(
    storescp: peers.StoreSCPPeer, tmp_path: Path
) -> None:
    items = cts(tmp_path / "ct", 3)
    sc = secondary_capture(tmp_path / "sc")
    dest = Destination(storescp.ae_title, storescp.host, storescp.port)
    with Sender(dest) as sender:
        first = sender.send(items[:2])
        second = sender.send([sc, items[2]])  # a new SOP Class: widen and re-associate
        third = sender.send(items[:1])  # both classes negotiated: same association
        assert sender.associations_opened == 2
        assert sender.is_associated
        sender.close_if_idle(time.monotonic())  # not idle yet
        assert sender.is_associated
        sender.close_if_idle(time.monotonic() + dest.idle_timeout)
        assert not sender.is_associated
        assert sender.send(items[1:2])[0].ok  # reopened transparently
        assert sender.associations_opened == 3
    assert [r.outcome for r in first + second + third] == [Outcome.DONE] * 5
    assert first[0].reason == "0x0000 Success"
    assert set(storescp.received()) == {i.sop_instance_uid for i in [*items, sc]}
    assert echo(dest) > 0
    assert associations_in_log(storescp) == 4  # three by the Sender, one by echo()


def test_refused_sop_class_fails_while_the_others_are_done(
    storescp: peers.StoreSCPPeer, tmp_path: Path
) -> None:
    ct1, ct2 = cts(tmp_path, 2)
    odd = private_class(tmp_path)
    dest = Destination(storescp.ae_title, storescp.host, storescp.port)
    with Sender(dest) as sender:
        alone = sender.send([odd])  # the destination accepts no context at all
        again = sender.send([odd])  # not asked again on the same negotiation
        mixed = sender.send([ct1, odd, ct2])
    assert [r.outcome for r in mixed] == [Outcome.DONE, Outcome.FAIL, Outcome.DONE]
    for result in [*alone, *again, mixed[1]]:
        assert result.outcome is Outcome.FAIL and result.status is None
        assert result.reason == f"SOP Class {PRIVATE_SOP_CLASS} not accepted by {dest.name}"
    assert sender.associations_opened == 2
    assert set(storescp.received()) == {ct1.sop_instance_uid, ct2.sop_instance_uid}


def test_destination_down_is_a_quick_retry(tmp_path: Path) -> None:
    items = cts(tmp_path, 2)
    dest = Destination("NOBODY", peers.LOOPBACK, peers.free_port(), connect_timeout=2)
    started = time.monotonic()
    with Sender(dest) as sender:
        results = sender.send(items)
    assert time.monotonic() - started < 2
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].reason.startswith(f"cannot connect to {dest.name}")
    with pytest.raises(ForwardError, match="cannot connect"):
        echo(dest)


def test_implicit_only_destination_gets_decoded_objects(
    tmp_path: Path, loopback_shim: Path
) -> None:
    scp = start_storescp(tmp_path / "scp", loopback_shim, "+xi")  # implicit VR LE only
    try:
        items = cts(tmp_path / "ct", 2)
        with Sender(Destination(scp.ae_title, scp.host, scp.port)) as sender:
            results = sender.send(items)
        assert all(r.ok for r in results), results
        assert sender.fast_sends == 0  # the file's syntax was not accepted: pynetdicom's path
        received = scp.received()
        assert set(received) == {i.sop_instance_uid for i in items}
        arrived = dcmread(received[items[0].sop_instance_uid])
        assert arrived.PixelData == dcmread(items[0].path).PixelData
    finally:
        scp.stop()


def test_tls_with_storescp(tmp_path: Path, loopback_shim: Path) -> None:
    openssl = peers.require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # storescp requires a client certificate by default: trust our own (+cf).
    scp = start_storescp(
        tmp_path / "scp", loopback_shim, "+tls", str(key), str(cert), "+cf", str(cert)
    )
    try:
        tls = TlsSettings(cert, cert, key, check_hostname=True)
        dest = Destination(scp.ae_title, scp.host, scp.port, tls=tls)
        items = cts(tmp_path / "ct", 2)
        assert echo(dest) > 0
        with Sender(dest) as sender:
            assert all(r.ok for r in sender.send(items))
            assert sender.fast_sends == 0  # TLS: only the DUL thread touches the SSL object
            live = sender._assoc.dul.socket.socket
            assert live.version() in ("TLSv1.2", "TLSv1.3")
            assert live.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert set(scp.received()) == {i.sop_instance_uid for i in items}
        no_client_cert = Destination(scp.ae_title, scp.host, scp.port, tls=TlsSettings(cert))
        with Sender(no_client_cert) as sender:
            refused = sender.send(items[:1])
        assert refused[0].outcome is Outcome.RETRY and "TLS" in refused[0].reason
        with pytest.raises(ForwardError, match="TLS settings unusable"):
            Sender(Destination("X", "h", 104, tls=TlsSettings(tmp_path / "missing.pem")))
    finally:
        scp.stop()


# -------------------------------------------------- a pynetdicom SCP with set statuses


@dataclass
class ScriptedSCP:
    """A pynetdicom Storage SCP on 127.0.0.1: ``statuses[uid]`` answers that object;
    ``"hang"`` answers only after ``release`` is set (or 10 s)."""

    port: int
    statuses: dict[str, int | str]
    release: threading.Event


@pytest.fixture
def scripted_scp() -> Iterator[ScriptedSCP]:
    statuses: dict[str, int | str] = {}
    release = threading.Event()

    def on_store(event: evt.Event) -> int:
        wanted = statuses.get(event.request.AffectedSOPInstanceUID, 0x0000)
        if wanted == "hang":
            release.wait(10)
            return 0x0000
        return int(wanted)

    ae = AE(ae_title="SCRIPTED")
    ae.require_called_aet = True  # any other called AE title is rejected
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    port = peers.free_port()
    server = ae.start_server(
        (peers.LOOPBACK, port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield ScriptedSCP(port, statuses, release)
    finally:
        release.set()
        server.shutdown()


def test_statuses_and_a_hung_response(scripted_scp: ScriptedSCP, tmp_path: Path) -> None:
    items = cts(tmp_path, 7)
    codes = [0x0000, 0xB000, 0xA700, 0xC000, 0x0111]
    scripted_scp.statuses.update(
        {i.sop_instance_uid: c for i, c in zip(items[:5], codes, strict=True)}
    )
    scripted_scp.statuses[items[5].sop_instance_uid] = "hang"
    dest = Destination("SCRIPTED", peers.LOOPBACK, scripted_scp.port, dimse_timeout=0.5)
    with Sender(dest) as sender:
        results = sender.send(items)
        assert [r.status for r in results[:5]] == codes
        assert [r.outcome for r in results] == [
            Outcome.DONE,
            Outcome.DONE,
            Outcome.RETRY,
            Outcome.FAIL,
            Outcome.DONE,
            Outcome.RETRY,  # no response within the DIMSE timeout
            Outcome.RETRY,  # not attempted: the association was dropped
        ]
        assert "no C-STORE response" in results[5].reason
        assert results[6].reason == results[5].reason
        assert not sender.is_associated
        scripted_scp.release.set()
        assert sender.send(items[6:])[0].ok  # a new association
        assert sender.associations_opened == 2


def test_rejected_association_is_a_retry(scripted_scp: ScriptedSCP, tmp_path: Path) -> None:
    dest = Destination("WRONG_AE", peers.LOOPBACK, scripted_scp.port)
    with Sender(dest) as sender:
        results = sender.send(cts(tmp_path, 2))
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].reason == (
        f"association rejected by {dest.name} "
        "(rejected-permanent, service-user: called-AE-title-not-recognized)"
    )
    assert all(r.hold for r in results)  # permanent: the forward loop holds the destination
    with pytest.raises(ForwardError, match="association rejected"):
        echo(dest)


# ------------------------------------------------------- Orthanc: storage commitment

SILENT_AE = "SILENT_BRIDGE"  # declared in Orthanc at a port where nothing listens


@dataclass
class CommitOrthanc:
    peer: peers.OrthancPeer
    listen_port: int


@pytest.fixture(scope="module")
def commit_orthanc(
    tmp_path_factory: pytest.TempPathFactory, loopback_shim: Path
) -> Iterator[CommitOrthanc]:
    listen_port, dead_port = peers.free_port(), peers.free_port()
    modalities = {
        "bridge": {"AET": BRIDGE_AE, "Host": peers.LOOPBACK, "Port": listen_port},
        "silent": {"AET": SILENT_AE, "Host": peers.LOOPBACK, "Port": dead_port},
    }
    workdir = tmp_path_factory.mktemp("orthanc-commitment")
    server = peers.start_orthanc(workdir, loopback_shim, modalities=modalities)
    try:
        yield CommitOrthanc(server, listen_port)
    finally:
        server.stop()


def test_storage_commitment_with_orthanc(commit_orthanc: CommitOrthanc, tmp_path: Path) -> None:
    orthanc = commit_orthanc.peer
    items = cts(tmp_path, 3)
    dest = Destination(
        orthanc.ae_title,
        orthanc.host,
        orthanc.dicom_port,
        calling_ae=BRIDGE_AE,
        commitment=True,
        commitment_port=commit_orthanc.listen_port,
        commitment_timeout=10,
    )
    with Sender(dest) as sender:
        results = sender.send(items)
        assert [r.outcome for r in results] == [Outcome.DONE] * 3, results
        assert results[0].reason == f"committed by {dest.name}"
        assert {i.sop_instance_uid for i in items} <= set(orthanc.sop_instance_uids())
        # An instance Orthanc never received: the report lists it as failed.
        ghost = Item(items[0].path, CTImageStorage, generate_uid(), ExplicitVRLittleEndian)
        ghost_result, known = sender.commit([ghost, items[1]])
        assert sender.associations_opened == 1
    assert ghost_result.outcome is Outcome.FAIL
    assert ghost_result.reason == (
        f"storage commitment failed at {dest.name}: 0x0112 No such object instance"
    )
    assert known.ok


def test_storage_commitment_without_a_report_or_a_known_caller_is_retried(
    commit_orthanc: CommitOrthanc, tmp_path: Path
) -> None:
    orthanc = commit_orthanc.peer
    items = cts(tmp_path, 1)
    silent = Destination(
        orthanc.ae_title,
        orthanc.host,
        orthanc.dicom_port,
        calling_ae=SILENT_AE,
        commitment=True,
        commitment_timeout=1,
    )
    with Sender(silent) as sender:
        [result] = sender.send(items)
    assert result.outcome is Outcome.RETRY
    assert result.reason == f"no storage commitment report from {silent.name} within 1 s"
    stranger = Destination(
        orthanc.ae_title, orthanc.host, orthanc.dicom_port, calling_ae="STRANGER", commitment=True
    )
    with Sender(stranger) as sender:
        [result] = sender.send(items)
    assert result.outcome is Outcome.RETRY
    assert result.reason.startswith("not committed: no N-ACTION response")
    assert "DicomModalities" in result.reason


def test_commitment_listener_port_in_use_is_a_retry(tmp_path: Path) -> None:
    items = cts(tmp_path, 1)
    with socket.socket() as taken:
        taken.bind((peers.LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        dest = Destination("NOBODY", peers.LOOPBACK, 9, commitment=True, commitment_port=port)
        with Sender(dest) as sender:
            assert sender.send([]) == []
            [result] = sender.commit(items)
    assert result.outcome is Outcome.RETRY
    assert "cannot listen for storage commitment reports" in result.reason


# ------------------------------------------------------------------ fast send path

STORESCP_MAX_PDU = 16384  # DCMTK storescp's default --max-pdu
"""What storescp as shipped accepts: each P-DATA-TF carries at most 16384 - 6 data bytes."""


def data_set(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information."""
    raw = path.read_bytes()
    return raw[fastpath.dataset_offset(raw) :]


def write_ct_of_length(path: Path, length_multiple: int, *, size: int = 64) -> Item:
    """A CT whose data set is an exact multiple of ``length_multiple`` bytes (private
    OB padding), so its last P-DATA fragment is full."""
    write_ct(path, size=size)
    ds = dcmread(path)
    ds.add_new(0x00091010, "LO", "ACRNEMA BRIDGE TEST")
    ds.add_new(0x00091000, "OB", b"")
    ds.save_as(path, enforce_file_format=True)
    ds[0x00091000].value = bytes(-len(data_set(path)) % length_multiple)
    ds.save_as(path, enforce_file_format=True)
    assert len(data_set(path)) % length_multiple == 0
    return Item.from_file(path)


def test_fast_path_delivers_identical_data_sets(
    storescp: peers.StoreSCPPeer, tmp_path: Path
) -> None:
    step = STORESCP_MAX_PDU - 6
    items = [
        write_ct(tmp_path / "big.dcm", size=512),  # 32+ PDUs, the last one partial
        write_ct(tmp_path / "tiny.dcm", size=4),  # less than one PDU
        write_ct_of_length(tmp_path / "exact1.dcm", step, size=8),  # exactly one PDU
        write_ct_of_length(tmp_path / "exact.dcm", step, size=200),  # last PDU full
    ]
    assert len(data_set(items[0].path)) % step != 0
    with Sender(Destination(storescp.ae_title, storescp.host, storescp.port)) as sender:
        results = sender.send(items)
        assert sender._assoc.acceptor.maximum_length == STORESCP_MAX_PDU
        assert sender.fast_sends == len(items)  # no object took pynetdicom's path
    assert all(r.ok and r.status == 0 for r in results), results
    received = storescp.received()
    for item in items:
        got = received[item.sop_instance_uid]
        assert data_set(got) == data_set(item.path), item.path.name
        meta = dcmread(got).file_meta
        assert meta.MediaStorageSOPClassUID == item.sop_class_uid
        assert meta.TransferSyntaxUID == item.transfer_syntax


def test_fast_path_falls_back_once_when_pynetdicom_changes(
    storescp: peers.StoreSCPPeer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(Sender, "fast_send", True)  # restored afterwards: it is switched off
    monkeypatch.setattr(
        fastpath, "hook_problems", lambda assoc=None: ["Association._is_paused is missing"]
    )
    items = cts(tmp_path, 3)
    dest = Destination(storescp.ae_title, storescp.host, storescp.port)
    with caplog.at_level(logging.WARNING, logger="bridge.forward.scu"):
        with Sender(dest) as sender:
            results = sender.send(items[:2])
        with Sender(dest) as other:
            results += other.send(items[2:])
    assert all(r.ok for r in results), results
    assert sender.fast_sends == other.fast_sends == 0
    assert Sender.fast_send is False
    assert caplog.text.count("fast send path off") == 1
    received = storescp.received()
    assert all(data_set(received[i.sop_instance_uid]) == data_set(i.path) for i in items)


def test_fast_path_internals_behave_as_relied_on() -> None:
    """What bridge.forward.fastpath assumes of pynetdicom 3.0.x beyond the names that
    ``fastpath.hook_problems`` checks at run time: how the pause handshake, the DIMSE
    queue and the DUL's poll delay work. If this fails, re-read fastpath against the
    installed pynetdicom before changing the test."""
    from pynetdicom.association import Association
    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dul import DULServiceProvider

    assert fastpath.hook_problems() == []
    reactor = inspect.getsource(Association._run_reactor)
    # the reactor parks on the checkpoint (so it cannot take our response off the queue)
    # and only then takes messages off the DIMSE queue
    paused = reactor.index("self._is_paused = True")
    assert paused < reactor.index("self._reactor_checkpoint.wait()")
    assert reactor.index("self._reactor_checkpoint.wait()") < reactor.index("self.dimse.get_msg(")
    # send_c_store pauses the same way
    store = inspect.getsource(Association.send_c_store)
    assert "self._reactor_checkpoint.clear()" in store and "while not self._is_paused" in store
    # get_msg(block=True) waits at most the DIMSE timeout; (None, None) when nothing came
    get_msg = inspect.getsource(DIMSEServiceProvider.get_msg)
    assert "self.msg_queue.get(block=block, timeout=self.dimse_timeout)" in get_msg
    assert "return None, None" in get_msg
    # the DUL's idle sleep is read on each pass of its loop
    assert "time.sleep(self._run_loop_delay)" in inspect.getsource(DULServiceProvider.run_reactor)


# --------------------------------------------------------------------- TCP adapter


def test_tcp_hook_fits_the_installed_pynetdicom() -> None:
    assert pynetdicom.__version__.split(".")[0] == "3", "tcp.py is written for pynetdicom 3"
    assert tcp.hook_problems() == []
    tuned, plain = tcp.make_ae("X"), tcp.make_ae("X", tuned=False)
    # deadlines need the adapter whether or not the socket is tuned
    assert isinstance(tuned, tcp.TunedAE) and isinstance(plain, tcp.TunedAE)
    assert tuned.tuned and not plain.tuned


def test_tcp_hook_falls_back_when_pynetdicom_changes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tcp, "_PROBLEMS", None)
    monkeypatch.setattr(tcp, "hook_problems", lambda: ["AE._create_socket is missing"])
    with caplog.at_level(logging.WARNING, logger="bridge.forward.tcp"):
        ae = tcp.make_ae("X")
    assert type(ae) is AE
    assert "socket deadlines and TCP tuning disabled" in caplog.text


def test_tcp_options_on_the_live_socket(
    storescp: peers.StoreSCPPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = cts(tmp_path, 3)
    rearmed: list[int] = []
    real = tcp._quickack

    def counting(sock: socket.socket) -> None:
        rearmed.append(sock.fileno())
        real(sock)

    monkeypatch.setattr(tcp, "_quickack", counting)
    for tuned in (True, False):
        dest = Destination(storescp.ae_title, storescp.host, storescp.port, tcp_tuning=tuned)
        rearmed.clear()
        with Sender(dest) as sender:
            assert all(r.ok for r in sender.send(items))
            live = sender._assoc.dul.socket.socket
            assert (live.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0) is tuned
            if tuned and tcp.QUICKACK_SUPPORTED:
                # header + body of the A-ASSOCIATE-AC and of each C-STORE response
                assert len(rearmed) >= 2 * (1 + len(items))
                assert set(rearmed) == {live.fileno()}
            else:
                assert rearmed == []


@pytest.mark.slow
def test_tuning_beats_the_delayed_ack_stall_of_storescp_as_shipped(
    storescp: peers.StoreSCPPeer, tmp_path: Path
) -> None:
    items = cts(tmp_path, 12, size=512)  # 512 KB each
    elapsed = {}
    for tuned in (True, False):
        dest = Destination(storescp.ae_title, storescp.host, storescp.port, tcp_tuning=tuned)
        with Sender(dest) as sender:
            sender.send(items[:1])  # negotiate outside the timing
            started = time.perf_counter()
            assert all(r.ok for r in sender.send(items))
            elapsed[tuned] = time.perf_counter() - started
    # Measured 15-20x here (about 240 vs 15 objects/s); 3x leaves room for a noisy box.
    assert elapsed[True] * 3 < elapsed[False], elapsed

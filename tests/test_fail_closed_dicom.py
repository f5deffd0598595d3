"""Fail closed on the DICOM side (issue 11, item 4): TLS settings that are incomplete or
name a file that cannot be used refuse to start, naming the key; ``check_hostname`` is
honoured against DCMTK ``storescp`` with TLS; the Storage Commitment listener binds where
it is told (127.0.0.2 here), tells where the PACS must call back, answers only its PACS's
calling AE titles and only N-EVENT-REPORT, and says at WARNING when reports never come.
Peers: DCMTK ``storescp +tls``, Orthanc (which sends its reports on a new association).
"""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import peers
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context
from test_scu import BRIDGE_AE, cts, start_storescp, write_ct

from bridge.cli import main
from bridge.forward import scu
from bridge.forward.scu import (
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    VERIFICATION,
    Destination,
    Sender,
    TlsSettings,
)
from bridge.forward.status import Outcome

SECOND_LOOPBACK = "127.0.0.2"  # a loopback address that is not 127.0.0.1

# ------------------------------------------------------------------------------- TLS


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed (key, certificate) whose only subject name is ``name`` (DNS)."""
    openssl = peers.require_tool("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, cert


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--tls-ca", "missing.pem"], "tls.ca_file"),
        (
            ["--tls-ca", "cert.pem", "--tls-cert", "missing.pem", "--tls-key", "key.pem"],
            "cert_file",
        ),
        (["--tls-ca", "cert.pem", "--tls-cert", "cert.pem"], "tls.key_file"),  # no key in it
        (["--tls-ca", "cert.pem", "--tls-cert", "cert.pem", "--tls-key", "cert.pem"], "key_file"),
        (["--tls-ca", "key.pem"], "tls.ca_file"),  # not a certificate
    ],
)
def test_unusable_tls_flags_refuse_to_start_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    named: str,
) -> None:
    _certificate(tmp_path, "pacs.invalid")
    monkeypatch.chdir(tmp_path)
    write_ct(tmp_path / "ct.dcm")
    spool = tmp_path / "spool"
    argv = ["send", "--spool", str(spool), "--dest", "PACS@127.0.0.1:9", *flags, "ct.dcm"]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert named in line, line
    assert "PEM lib" not in line and "_ssl.c" not in line, line
    assert not spool.exists()  # nothing touched


def test_unusable_tls_table_refuses_to_start_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _key, cert = _certificate(tmp_path, "pacs.invalid")
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[[destination]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 9\n'
        f'tls = {{ ca_file = "{cert}", cert_file = "{cert}" }}\n'
    )
    spool = tmp_path / "spool"
    argv = ["--config", str(config), "run", "--spool", str(spool)]
    assert main([*argv, "--port", f"tcp-listen://127.0.0.1:{peers.free_port()}"]) == 2
    line = _one_error_line(capsys)
    assert "PACS@127.0.0.1:9" in line and "tls.key_file: required" in line, line
    assert not spool.exists()


def test_check_hostname_is_honoured_with_storescp(tmp_path: Path, loopback_shim: Path) -> None:
    """A certificate for another name: refused with check_hostname, accepted without."""
    key, cert = _certificate(tmp_path / "tls", "pacs.invalid")
    scp = start_storescp(
        tmp_path / "scp", loopback_shim, "+tls", str(key), str(cert), "+cf", str(cert)
    )
    try:
        items = cts(tmp_path / "ct", 1)
        checked = Destination(
            scp.ae_title, scp.host, scp.port, tls=TlsSettings(cert, cert, key, True)
        )
        with Sender(checked) as sender:
            [refused] = sender.send(items)
        assert refused.outcome is Outcome.RETRY and "TLS" in refused.reason, refused
        assert scp.received() == {}
        unchecked = Destination(scp.ae_title, scp.host, scp.port, tls=TlsSettings(cert, cert, key))
        with Sender(unchecked) as sender:
            [stored] = sender.send(items)
        assert stored.ok, stored
        # the flag form, end to end through send
        spool = tmp_path / "spool"
        tls = ["--tls-ca", str(cert), "--tls-cert", str(cert), "--tls-key", str(key)]
        argv = ["send", "--spool", str(spool), "--dest", f"{scp.ae_title}@{scp.host}:{scp.port}"]
        more = cts(tmp_path / "more", 1)
        assert main([*argv, *tls, "--tls-check-hostname", "--timeout", "3", str(more[0].path)]) == 1
        assert more[0].sop_instance_uid not in scp.received()
    finally:
        scp.stop()


# ------------------------------------------------------- the Storage Commitment listener


def _commitment_destination(port: int, **kw: object) -> Destination:
    return Destination(
        "THE_PACS",
        peers.LOOPBACK,
        9,
        calling_ae=BRIDGE_AE,
        commitment=True,
        commitment_host=SECOND_LOOPBACK,
        commitment_port=port,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def listener() -> Iterator[Destination]:
    """The listener of a destination whose PACS is ``THE_PACS``, on 127.0.0.2."""
    destination = _commitment_destination(peers.free_port())
    scu._acquire_listener(destination)
    try:
        yield destination
    finally:
        scu._release_listener(destination)


def _associate(destination: Destination, calling: str, called: str, contexts: list) -> object:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    return ae.associate(
        destination.commitment_host,
        destination.commitment_port,
        contexts=contexts,
        ae_title=called,
    )


def _commitment_scp_context() -> object:
    context = build_context(STORAGE_COMMITMENT_PUSH_MODEL, ExplicitVRLittleEndian)
    context.scu_role, context.scp_role = False, True
    return context


def _release(assoc: object) -> None:
    """Release an association a test expected to be refused (no thread left behind)."""
    if assoc.is_established:  # type: ignore[attr-defined]
        assoc.release()  # type: ignore[attr-defined]


def _rejection(assoc: object) -> tuple[int, int, int]:
    primitive = assoc.acceptor.primitive  # type: ignore[attr-defined]
    return (primitive.result, primitive.result_source, primitive.diagnostic)


def test_listener_refuses_a_stranger_calling_ae(
    listener: Destination, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge.forward.scu"):
        assoc = _associate(listener, "STRANGER", BRIDGE_AE, [_commitment_scp_context()])
    _release(assoc)
    assert assoc.is_rejected  # type: ignore[attr-defined]
    # rejected-permanent, by the service user: calling AE title not recognised (PS3.8 9.3.4)
    assert _rejection(assoc) == (0x01, 0x01, 0x03)
    assert "STRANGER" in caplog.text and "refused" in caplog.text


def test_listener_refuses_another_called_ae(listener: Destination) -> None:
    assoc = _associate(listener, "THE_PACS", "SOMEONE_ELSE", [_commitment_scp_context()])
    _release(assoc)
    assert assoc.is_rejected  # type: ignore[attr-defined]
    assert _rejection(assoc) == (0x01, 0x01, 0x07)  # called AE title not recognised


def test_listener_answers_its_pacs_only_for_storage_commitment(listener: Destination) -> None:
    """Its own PACS may not C-ECHO or C-STORE either: only the commitment context."""
    contexts = [
        build_context(VERIFICATION, ExplicitVRLittleEndian),
        build_context(CTImageStorage, ExplicitVRLittleEndian),
        _commitment_scp_context(),
    ]
    assoc = _associate(listener, "THE_PACS", BRIDGE_AE, contexts)
    try:
        assert assoc.is_established  # type: ignore[attr-defined]
        accepted = [cx.abstract_syntax for cx in assoc.accepted_contexts]  # type: ignore[attr-defined]
        assert accepted == [STORAGE_COMMITMENT_PUSH_MODEL]
        report = Dataset()
        report.TransactionUID = generate_uid()
        report.ReferencedSOPSequence = []
        status, _ = assoc.send_n_event_report(  # type: ignore[attr-defined]
            report, 1, STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE
        )
        assert "Status" in status
    finally:
        assoc.release()  # type: ignore[attr-defined]


def test_listener_takes_a_configured_list_of_callers(tmp_path: Path) -> None:
    destination = _commitment_destination(
        peers.free_port(), commitment_callers=frozenset({"PACS_OUT", "PACS_OUT2"})
    )
    scu._acquire_listener(destination)
    try:
        for calling, accepted in (("PACS_OUT2", True), ("THE_PACS", False)):
            assoc = _associate(destination, calling, BRIDGE_AE, [_commitment_scp_context()])
            established = assoc.is_established  # type: ignore[attr-defined]
            _release(assoc)
            assert established is accepted
    finally:
        scu._release_listener(destination)


# --------------------------------------------------------- Orthanc calls back 127.0.0.2

STRICT_PACS_CALLER = "NOT_ORTHANC"  # a caller list that leaves Orthanc out


@dataclass
class CallbackOrthanc:
    peer: peers.OrthancPeer
    listen_port: int
    silent_port: int  # declared for the "silent" bridge AE; nothing listens there


SILENT_AE = "SILENT_BRIDGE"


@pytest.fixture(scope="module")
def callback_orthanc(
    tmp_path_factory: pytest.TempPathFactory, loopback_shim: Path
) -> Iterator[CallbackOrthanc]:
    listen_port, silent_port = peers.free_port(), peers.free_port()
    modalities = {
        "bridge": {"AET": BRIDGE_AE, "Host": SECOND_LOOPBACK, "Port": listen_port},
        "silent": {"AET": SILENT_AE, "Host": SECOND_LOOPBACK, "Port": silent_port},
    }
    workdir = tmp_path_factory.mktemp("orthanc-callback")
    server = peers.start_orthanc(workdir, loopback_shim, modalities=modalities)
    try:
        yield CallbackOrthanc(server, listen_port, silent_port)
    finally:
        server.stop()


def test_orthanc_reports_to_a_listener_on_127_0_0_2(
    callback_orthanc: CallbackOrthanc,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the settings and ``send``: the batch is committed via 127.0.0.2."""
    orthanc = callback_orthanc.peer
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[forward]\ncalling_ae = "{BRIDGE_AE}"\ncommitment_host = "{SECOND_LOOPBACK}"\n'
        f"commitment_port = {callback_orthanc.listen_port}\n"
        f'commitment_callback_host = "{SECOND_LOOPBACK}"\ncommitment_timeout = 20\n'
        f'[[destination]]\nae_title = "{orthanc.ae_title}"\nhost = "{orthanc.host}"\n'
        f"port = {orthanc.dicom_port}\ncommitment = true\n"
    )
    items = cts(tmp_path / "ct", 3)
    spool = tmp_path / "spool"
    argv = ["--config", str(config), "send", "--spool", str(spool), "--timeout", "60"]
    with caplog.at_level(logging.DEBUG, logger="bridge.forward.scu"):
        assert main([*argv, *(str(i.path) for i in items)]) == 0
    assert {i.sop_instance_uid for i in items} <= set(orthanc.sop_instance_uids())
    # delivered means committed (commitment = true): the report reached 127.0.0.2
    assert "delivered 3 now; waiting 0, quarantined 0" in capsys.readouterr().err
    reports = [r for r in caplog.records if "storage commitment report for tr" in r.getMessage()]
    assert len(reports) == 1, caplog.text
    listening = f"on {SECOND_LOOPBACK}:{callback_orthanc.listen_port}"
    assert listening in caplog.text
    assert f"{BRIDGE_AE} at {SECOND_LOOPBACK}:{callback_orthanc.listen_port}" in caplog.text


def _orthanc_post(orthanc: peers.OrthancPeer, path: str, body: object) -> int:
    request = urllib.request.Request(
        orthanc.url + path, data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            request, timeout=30
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_orthanc_as_a_caller_the_listener_does_not_accept(
    callback_orthanc: CallbackOrthanc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real Orthanc: refused when its AE title is not in the list, and never allowed a
    C-ECHO or a C-STORE to the listener even when it is."""
    orthanc = callback_orthanc.peer
    items = cts(tmp_path / "ct", 1)
    strict = Destination(
        orthanc.ae_title,
        orthanc.host,
        orthanc.dicom_port,
        calling_ae=BRIDGE_AE,
        commitment=True,
        commitment_host=SECOND_LOOPBACK,
        commitment_port=callback_orthanc.listen_port,
        commitment_callers=frozenset({STRICT_PACS_CALLER}),
        commitment_timeout=5,
    )
    with caplog.at_level(logging.WARNING, logger="bridge.forward.scu"), Sender(strict) as sender:
        [result] = sender.send(items)
    assert result.outcome is Outcome.RETRY, result
    assert f"refused an association from calling AE {orthanc.ae_title}" in caplog.text
    # now the listener accepts Orthanc (its AE title, the default), but only for reports
    accepting = Destination(
        orthanc.ae_title,
        orthanc.host,
        orthanc.dicom_port,
        calling_ae=BRIDGE_AE,
        commitment=True,
        commitment_host=SECOND_LOOPBACK,
        commitment_port=callback_orthanc.listen_port,
        commitment_timeout=20,
    )
    with Sender(accepting) as sender:
        [result] = sender.send(items)
        assert result.ok, result
        stored = orthanc.sop_instance_uids()[items[0].sop_instance_uid]
        assert _orthanc_post(orthanc, "/modalities/bridge/echo", {}) != 200
        assert _orthanc_post(orthanc, "/modalities/bridge/store", [stored]) != 200


def test_reports_that_never_come_are_a_warning_naming_the_callback(
    callback_orthanc: CallbackOrthanc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Orthanc sends to where it was told (the silent port): the bridge says so at WARNING."""
    orthanc = callback_orthanc.peer
    port = peers.free_port()
    destination = Destination(
        orthanc.ae_title,
        orthanc.host,
        orthanc.dicom_port,
        calling_ae=SILENT_AE,
        commitment=True,
        commitment_host=SECOND_LOOPBACK,
        commitment_port=port,
        commitment_timeout=1,
    )
    with caplog.at_level(logging.WARNING, logger="bridge"), Sender(destination) as sender:
        [result] = sender.send(cts(tmp_path, 1))
    assert result.outcome is Outcome.RETRY
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    [warning] = [w for w in warnings if "no storage commitment report" in w]
    assert destination.name in warning
    assert f"{SILENT_AE} at {SECOND_LOOPBACK}:{port}" in warning  # where it must call back


# ----------------------------------------------------------------------- the settings


def test_commitment_settings_are_read_and_checked(tmp_path: Path) -> None:
    from bridge.cli.common import build_destinations
    from bridge.settings import check_file, load

    config = tmp_path / "bridge.toml"
    config.write_text(
        '[forward]\ncommitment_host = "0.0.0.0"\ncommitment_port = 11113\n'
        'commitment_callback_host = "10.1.2.3"\ncommitment_callback_port = 4113\n'
        '[[destination]]\nae_title = "PACS"\nhost = "10.0.0.5"\nport = 104\n'
        'commitment = true\ncommitment_callers = ["PACS_OUT"]\n'
    )
    [destination] = build_destinations(load(config, env={}))
    assert destination.commitment_host == "0.0.0.0"
    assert destination.commitment_callback == "10.1.2.3:4113"
    assert destination.accepted_callers == frozenset({"PACS_OUT"})
    default = Destination("PACS", "10.0.0.5", 104, commitment_host="0.0.0.0", commitment_port=7)
    assert default.commitment_callback == "<this machine's address>:7"
    assert default.accepted_callers == frozenset({"PACS"})
    config.write_text(
        "[forward]\ncommitment_callback_port = 70000\n"
        '[[destination]]\nae_title = "PACS"\nhost = "10.0.0.5"\nport = 104\n'
        'commitment_callers = ["A\\\\B"]\n'
    )
    problems = check_file(config)
    assert any("forward.commitment_callback_port" in p for p in problems), problems
    assert any("destination[1].commitment_callers" in p for p in problems), problems
    with pytest.raises(ValueError, match="commitment_callers"):
        Destination("PACS", "h", 104, commitment_callers=frozenset())


def test_a_loopback_listener_for_a_remote_pacs_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The old default: a listener on 127.0.0.1 that a PACS elsewhere can never reach."""
    remote = Destination(
        "PACS",
        "pacs.example.org",  # never resolved nor contacted
        104,
        commitment=True,
        commitment_host=SECOND_LOOPBACK,
        commitment_port=peers.free_port(),
    )
    with caplog.at_level(logging.WARNING, logger="bridge.forward.scu"):
        scu._acquire_listener(remote)
        scu._release_listener(remote)
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{remote.name}: storage commitment reports are expected at ")
    assert "forward.commitment_callback_host" in warning


def test_echo_with_an_unusable_tls_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.pem"
    assert main(["echo", "PACS@127.0.0.1:9", "--tls-ca", str(missing)]) == 2
    line = _one_error_line(capsys)
    assert f"tls.ca_file {missing}: cannot read" in line, line

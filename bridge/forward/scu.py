"""The DICOM egress: a storage SCU per destination, Storage Commitment, and C-ECHO.

Standards: C-STORE (PS3.7 9.1.1, Storage Service Class PS3.4 Annex B), C-ECHO
(PS3.7 9.1.5), Storage Commitment Push Model (PS3.4 Annex J: N-ACTION J.3.2,
N-EVENT-REPORT J.3.3), association negotiation (PS3.8 7.1 and Annex D), TLS (PS3.15
Annex B.1, BCP 195). pynetdicom does the protocol; this module decides what to
negotiate, keeps one association per destination open, and turns every outcome into a
:class:`~bridge.forward.status.Result` per object (DONE, RETRY or FAIL).

:class:`Sender` behaviour, per destination and from one thread:

* **Association reuse.** The association opens on the first :meth:`Sender.send` and
  stays open across calls until :meth:`Sender.close_if_idle` finds it unused for
  :attr:`Destination.idle_timeout` seconds, or :meth:`Sender.close`. One that the peer
  closed in between is reopened transparently.
* **Presentation contexts.** For every SOP Class the Sender has seen (the current
  batch's first, so the association serves later calls too), one context offering
  Explicit and Implicit VR Little Endian, plus one context per other transfer syntax
  seen for that class offering only that syntax (an SCP picks one syntax per context,
  usually its own favourite, so an encapsulated syntax gets a context of its own).
  With Storage Commitment, the Storage Commitment Push Model context comes first. At
  most 128 contexts (PS3.8 9.3.2.2): a batch that needs more is sent over successive
  associations. An object whose SOP Class is not among the association's proposed
  contexts makes the Sender release and re-associate with the widened set.
* **Raw sending.** An object whose own transfer syntax was accepted is sent from its
  file without decoding: pynetdicom reads the bytes after the File Meta Information
  and cuts them into P-DATA PDUs no larger than the peer's maximum
  (``pynetdicom._config.STORE_SEND_CHUNKED_DATASET``, a process-wide switch this module
  turns on; it changes only ``send_c_store`` calls given a *path*). If the SCP chose
  the other native syntax, the file is decoded with pydicom and re-encoded by
  pynetdicom. Measured (100 CT objects of 512 KB into ``storescp``, TCP tuning on,
  median of 3): 254 objects/s raw, 200 decoded; with the tuning off both stall at
  about 15 (see :mod:`bridge.forward.tcp`). Raw sending also keeps memory flat for
  large objects.
* **Fast path** (:attr:`Sender.fast_send`, on by default): a raw-sendable object on an
  association without TLS goes out as pre-built P-DATA PDUs in one ``sendall()``, the
  next one read while the receiver stores the current one (:mod:`bridge.forward.fastpath`
  names the pynetdicom internals it uses). :attr:`Sender.fast_sends` counts them. If
  ``fastpath.hook_problems`` finds one missing, a warning is logged once and every
  Sender uses the path above. Over TLS the path above is always used: only pynetdicom's
  DUL thread may touch the SSL object while it reads from it.
* **Integrity.** An item with a ``sha256`` is checked on the very bytes that are sent
  (the fast path reads them anyway; the other paths read and hash the file first): a
  missing file -> FAIL "spool file missing: ..."; a mismatch -> FAIL "spool file
  damaged: sha256 ... expected ..."; nothing is sent.
* **Outcomes without a status.** A SOP Class the destination refused (no accepted
  context) -> FAIL "SOP Class ... not accepted by AE@HOST:PORT"; an encapsulated
  transfer syntax it refused -> FAIL; an unreadable file -> FAIL. Association refused,
  rejected or aborted, connection refused, and every timeout -> RETRY for all objects
  not yet answered; the association is dropped (aborted, and shut down if the abort
  does not complete within a second) and reopened on the next call. A rejection that
  :func:`~bridge.forward.status.classify_rejection` calls permanent (e.g. called AE
  title not recognized), or a host name the resolver says does not exist ("cannot
  resolve HOST"), marks those RETRY results ``hold``: the forward loop then holds the
  whole destination. The Result of the
  object that was on the wire when the association was lost or timed out is marked
  ``lost`` (the forward loop quarantines an object that keeps doing that).
* **Stopping.** :meth:`Sender.stop` (any thread) lets no new object start; with
  ``now`` it also shuts the connection down, which ends any blocked write, read,
  association request or release at once (:mod:`bridge.forward.tcp`).
* **Storage Commitment** (:attr:`Destination.commitment`): after the C-STOREs of a
  batch, the objects that succeeded are named in one N-ACTION (Transaction UID new,
  Referenced SOP Sequence) and the Sender waits up to
  :attr:`Destination.commitment_timeout` for the N-EVENT-REPORT. Objects are DONE
  only once committed; a Failed SOP Sequence entry -> FAIL with its Failure Reason;
  no report in time -> RETRY. The report is taken on the same association (when the
  SCP sends it there) or, when :attr:`Destination.commitment_port` is set, on a
  listener AE at ``commitment_host:commitment_port`` that accepts the Storage
  Commitment Push Model with the SCP proposing the SCP role, as Orthanc does: Orthanc
  1.10 answers the N-ACTION, then runs a job that opens a *new* association to the
  modality it finds under the N-ACTION's calling AE title in its ``DicomModalities``
  and sends the N-EVENT-REPORT there. So for Orthanc the bridge must be declared,
  e.g. ``"DicomModalities": {"bridge": {"AET": "ACRNEMA_BRIDGE", "Host": "<bridge
  address>", "Port": <commitment_port>}}``; an unknown caller gets a failed N-ACTION.
  The listener fails closed: only the destinations' PACSs (calling AE title in
  :attr:`Destination.accepted_callers`, called AE title ours) may associate, and only
  for the Storage Commitment Push Model; a report that does not come in time is a
  WARNING naming the address the PACS must call (:attr:`Destination.commitment_callback`).
* **TCP**: with :attr:`Destination.tcp_tuning`, Nagle is off and delayed ACKs are
  suppressed on the association socket (:mod:`bridge.forward.tcp`); the commitment
  listener's sockets are left as they are (one small request per batch).
* **Results** carry the DIMSE status of the C-STORE, or for a commitment failure the
  Failure Reason from the report (PS3.3 C.14.1.1, e.g. 0x0112), or ``None``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext, build_context

from bridge.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from bridge.forward import fastpath
from bridge.forward.status import (
    ForwardError,
    Outcome,
    Result,
    classify_rejection,
    classify_status,
    describe_status,
)
from bridge.forward.tcp import TunedAssociationSocket, make_ae

__all__ = [
    "MAX_CONTEXTS",
    "STORAGE_COMMITMENT_PUSH_MODEL",
    "STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE",
    "VERIFICATION",
    "Destination",
    "Item",
    "Sender",
    "TlsSettings",
    "echo",
]

LOGGER = logging.getLogger(__name__)

VERIFICATION: Final = "1.2.840.10008.1.1"
STORAGE_COMMITMENT_PUSH_MODEL: Final = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE: Final = "1.2.840.10008.1.20.1.1"
MAX_CONTEXTS: Final = 128
"""Presentation contexts per association: context IDs are odd numbers 1-255 (PS3.8)."""

_NATIVE: Final[tuple[str, ...]] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_ABORT_GRACE_S = 1.0  # an abort that has not completed by then shuts the connection down
_AE_TITLE_MAX = 16
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})
_DESTINATION = re.compile(r"(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^@:\[\]]+):(?P<port>\d+)")


class _QuietAssociationFailures(logging.Filter):
    """Drops pynetdicom's ERROR lines about an association that could not be opened.

    pynetdicom logs three ERROR lines for every rejection and two for every refused
    connection; the bridge says the same once per failure with the destination's name
    (a WARNING, or for a held destination one ERROR in all, :mod:`bridge.forward.runner`),
    so theirs would repeat every retry. Kept when this module logs at DEBUG (``-vv``).
    """

    _SAID: Final = (
        ("pynetdicom.acse", ("Association Rejected", "Result: Rejected ", "Reason: ")),
        (
            "pynetdicom.transport",
            ("Association request failed: unable to connect", "TCP Initialisation Error: "),
        ),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR or LOGGER.isEnabledFor(logging.DEBUG):
            return True
        for name, starts in self._SAID:
            if record.name == name and str(record.msg).startswith(starts):
                return False
        return True


for _name, _ in _QuietAssociationFailures._SAID:
    logging.getLogger(_name).addFilter(_QuietAssociationFailures())


def _native() -> list[str | UID]:
    """The uncompressed little endian transfer syntaxes, Explicit VR first."""
    return [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _check_ae_title(what: str, title: str) -> None:
    """PS3.5 Table 6.2-1, AE: 1-16 characters, not only spaces, no backslash or controls."""
    if not title.strip():
        raise ValueError(f"{what} must not be empty")
    if len(title) > _AE_TITLE_MAX:
        raise ValueError(f"{what} {title!r} is longer than {_AE_TITLE_MAX} characters")
    if "\\" in title or not title.isascii() or not title.isprintable():
        raise ValueError(f"{what} {title!r} may hold printable ASCII except backslash only")


def _check_port(what: str, port: int, *, allow_zero: bool = False) -> None:
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"{what} {port} is not a TCP port (1-65535)")


@dataclass(frozen=True)
class TlsSettings:
    """DICOM TLS for one destination (PS3.15 B.1; TLS 1.2 or later, as BCP 195 asks).

    ``ca_file`` holds the certificates the destination's certificate must chain to (for
    a self-signed one, the certificate itself); ``cert_file``/``key_file`` are the
    bridge's own certificate and key, for destinations that require a client
    certificate (DCMTK does by default). The destination's certificate is always
    verified; ``check_hostname`` also matches it against :attr:`Destination.host`.
    """

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = False

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("a TLS key_file needs its cert_file")

    def context(self) -> ssl.SSLContext:
        """A client :class:`ssl.SSLContext`; :class:`ForwardError` if a file is unusable.

        The error names the key of the file at fault (``tls.ca_file``, ``tls.cert_file``,
        ``tls.key_file``) and why: unreadable, no certificate in it, no private key (a
        ``cert_file`` without ``key_file`` must hold its key), or not the certificate's
        key. A service never starts with TLS it cannot do (fail closed).
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.check_hostname
        context.verify_mode = ssl.CERT_REQUIRED
        _load_certificates(context, "tls.ca_file", self.ca_file)
        if self.cert_file is not None:
            # the certificate alone first, so that a later failure is the key's
            _load_certificates(
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "tls.cert_file", self.cert_file
            )
            if self.key_file is not None:
                _readable("tls.key_file", self.key_file)
            key = None if self.key_file is None else str(self.key_file)
            try:
                context.load_cert_chain(str(self.cert_file), key)
            except (OSError, ssl.SSLError) as exc:
                if self.key_file is None:
                    why = f"required: tls.cert_file {self.cert_file} holds no private key"
                    raise ForwardError(f"TLS settings unusable: tls.key_file: {why}") from exc
                reason = getattr(exc, "reason", None)  # None: OpenSSL says only "PEM lib"
                why = (
                    f"not the private key of tls.cert_file {self.cert_file} ({reason})"
                    if reason
                    else "no private key in it (PEM)"
                )
                raise ForwardError(
                    f"TLS settings unusable: tls.key_file {self.key_file}: {why}"
                ) from exc
        return context


def _readable(key: str, path: Path) -> None:
    """:class:`ForwardError` naming ``key`` unless ``path`` is a file that can be read."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ForwardError(
            f"TLS settings unusable: {key} {path}: cannot read: {exc.strerror or exc}"
        ) from exc


def _load_certificates(context: ssl.SSLContext, key: str, path: Path) -> None:
    """Load the certificates of ``path`` as trusted; :class:`ForwardError` naming ``key``."""
    _readable(key, path)
    try:
        context.load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ForwardError(
            f"TLS settings unusable: {key} {path}: no usable certificate in it ({_ssl_reason(exc)})"
        ) from exc


def _ssl_reason(exc: OSError) -> str:
    """OpenSSL's short reason (``KEY_VALUES_MISMATCH``), else the message."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc.strerror or exc)


@dataclass(frozen=True)
class Destination:
    """One DICOM destination (a PACS or other Storage SCP) and how to talk to it.

    Timeouts are in seconds, and every network operation is bounded by one of them:
    ``connect_timeout`` for the TCP connection (and a TLS handshake); ``acse_timeout``
    for association negotiation and release; ``dimse_timeout`` for each request, from
    the start of its write to its whole response (raise it for very large objects over
    slow links); ``network_timeout`` for any single read or write that makes no
    progress, for each PDU header or body to arrive whole (so a trickling peer cannot
    hold the association), and for silence on an open association
    (:mod:`bridge.forward.tcp`).
    ``max_pdu`` is the largest PDU the bridge accepts (0 = no limit); what the bridge
    *sends* is bounded by the destination's own maximum. ``modalities`` is a routing
    filter (see :meth:`accepts`): the spool applies it when it queues objects, the
    :class:`Sender` sends what it is given. ``commitment_port`` (0 = none) is where
    the Storage Commitment listener waits for N-EVENT-REPORTs that arrive on a new
    association, bound to ``commitment_host``; ``commitment_callback_host`` and
    ``commitment_callback_port`` are where the PACS is configured to send them, when
    that differs (NAT, a bind to ``0.0.0.0``; empty and 0: the same), for the logs.
    ``commitment_callers`` are the calling AE titles the listener accepts this PACS's
    reports from (``None``: its ``ae_title``); every other caller is refused.
    """

    ae_title: str
    host: str
    port: int
    calling_ae: str = "ACRNEMA_BRIDGE"
    max_pdu: int = 0
    connect_timeout: float = 10.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    idle_timeout: float = 10.0
    tls: TlsSettings | None = None
    commitment: bool = False
    modalities: frozenset[str] | None = None
    tcp_tuning: bool = True
    commitment_host: str = "127.0.0.1"
    commitment_port: int = 0
    commitment_timeout: float = 60.0
    commitment_callback_host: str = ""
    commitment_callback_port: int = 0
    commitment_callers: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _check_ae_title("AE title", self.ae_title)
        _check_ae_title("calling AE title", self.calling_ae)
        if not self.host or any(c.isspace() for c in self.host):
            raise ValueError(f"host {self.host!r} is not a host name or address")
        _check_port("port", self.port)
        _check_port("commitment_port", self.commitment_port, allow_zero=True)
        _check_port("commitment_callback_port", self.commitment_callback_port, allow_zero=True)
        if any(c.isspace() for c in self.commitment_callback_host):
            raise ValueError(f"commitment_callback_host {self.commitment_callback_host!r}")
        if self.commitment_callers is not None:
            callers = self.commitment_callers
            if isinstance(callers, str) or not callers:
                raise ValueError("commitment_callers must be a set of AE titles such as {'PACS'}")
            for title in callers:
                _check_ae_title("commitment caller AE title", title)
            object.__setattr__(self, "commitment_callers", frozenset(callers))
        if self.max_pdu != 0 and not 4096 <= self.max_pdu <= 0xFFFFFFFF:
            raise ValueError(f"max_pdu {self.max_pdu} must be 0 (no limit) or 4096-4294967295")
        for name in (
            "connect_timeout",
            "acse_timeout",
            "dimse_timeout",
            "network_timeout",
            "idle_timeout",
            "commitment_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.modalities is not None:
            if isinstance(self.modalities, str) or not all(
                isinstance(m, str) for m in self.modalities
            ):
                raise ValueError("modalities must be a set of Modality values such as {'CT'}")
            object.__setattr__(self, "modalities", frozenset(m.upper() for m in self.modalities))

    @classmethod
    def parse(cls, text: str, **kw: Any) -> Destination:
        """``"AE@HOST:PORT"`` (``[v6addr]`` for IPv6) plus any other field as keyword."""
        match = _DESTINATION.fullmatch(text.strip())
        if match is None:
            raise ValueError(
                f"destination {text!r} is not AE@HOST:PORT (e.g. PACS@192.168.1.10:104)"
            )
        host = match["host"]
        if host.startswith("["):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"destination {text!r}: {host!r} is not an IPv6 address") from None
        return cls(match["ae"], host, int(match["port"]), **kw)

    @property
    def name(self) -> str:
        """``"AE@HOST:PORT"``: the key of this destination in the spool and in logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    @property
    def accepted_callers(self) -> frozenset[str]:
        """The calling AE titles the commitment listener accepts for this destination."""
        return self.commitment_callers or frozenset({self.ae_title})

    @property
    def commitment_callback(self) -> str:
        """``HOST:PORT`` the PACS must send its reports to: the callback settings, else
        the listener's bind address (a wildcard bind names no address)."""
        host = self.commitment_callback_host or self.commitment_host
        if host in _WILDCARDS:
            host = "<this machine's address>"
        elif ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.commitment_callback_port or self.commitment_port}"

    def accepts(self, modality: str | None) -> bool:
        """Whether an object of ``modality`` is routed here (no filter: everything)."""
        if self.modalities is None:
            return True
        return modality is not None and modality.strip().upper() in self.modalities

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Item:
    """One object to send: a DICOM Part 10 file and the UIDs the spool knows it by.

    ``sha256`` (hex), when given, is what the file's bytes must hash to: the Sender
    checks it on the bytes it is about to send and fails the object, sending nothing,
    when the file is missing or no longer matches (a damaged spool file must never
    reach a receiver, which would accept it and let the spool delete the good copy's
    record).
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    sha256: str | None = None

    @classmethod
    def from_file(cls, path: Path | str) -> Item:
        """The item for a Part 10 file, read from its File Meta Information only."""
        path = Path(path)
        try:
            meta = read_file_meta_info(path)
            return cls(
                path,
                str(meta.MediaStorageSOPClassUID),
                str(meta.MediaStorageSOPInstanceUID),
                str(meta.TransferSyntaxUID),
            )
        except Exception as exc:  # pydicom raises several kinds for a bad header
            raise ForwardError(f"{path}: not a DICOM Part 10 file with UIDs: {exc}") from exc


# ----------------------------------------------------------------- commitment reports


class _ReportBoard:
    """N-EVENT-REPORTs by Transaction UID, handed from whichever thread receives them.

    Each expected transaction names the calling AE titles its report may come from on
    the listener (the destination's accepted callers): a report from another accepted
    caller (another destination's PACS) is not taken for it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reports: dict[str, Dataset | None] = {}
        self._callers: dict[str, frozenset[str]] = {}

    def expect(self, transaction_uid: str, callers: frozenset[str] = frozenset()) -> None:
        with self._cond:
            self._reports[transaction_uid] = None
            self._callers[transaction_uid] = callers

    def post(self, transaction_uid: str, report: Dataset, caller: str | None = None) -> bool:
        """Hand over ``report``; ``caller``: the calling AE title on the listener (None:
        on the association that sent the N-ACTION). False if nobody waits for it."""
        with self._cond:
            if transaction_uid not in self._reports:
                return False
            if caller is not None and caller not in self._callers.get(transaction_uid, ()):
                return False
            self._reports[transaction_uid] = report
            self._cond.notify_all()
            return True

    def forget(self, transaction_uid: str) -> None:
        with self._cond:
            self._reports.pop(transaction_uid, None)
            self._callers.pop(transaction_uid, None)

    def wait(
        self, transaction_uid: str, timeout: float, cancel: threading.Event | None = None
    ) -> Dataset | None:
        """The report, or ``None`` after ``timeout`` or once ``cancel`` is set (checked
        every 0.2 s); forgets the transaction either way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            try:
                while self._reports.get(transaction_uid) is None:
                    left = deadline - time.monotonic()
                    if left <= 0 or (cancel is not None and cancel.is_set()):
                        return None
                    self._cond.wait(min(left, 0.2))
                return self._reports[transaction_uid]
            finally:
                self._reports.pop(transaction_uid, None)
                self._callers.pop(transaction_uid, None)


_REPORTS = _ReportBoard()


def _on_event_report(event: Any) -> tuple[int, Dataset | None]:
    """``EVT_N_EVENT_REPORT`` handler, on listener and requestor associations alike."""
    if event.request.AffectedSOPClassUID != STORAGE_COMMITMENT_PUSH_MODEL:
        return 0x0118, None  # No such SOP Class
    try:
        info: Dataset = event.event_information
        transaction = str(info.TransactionUID)
    except Exception as exc:  # an undecodable or incomplete report
        LOGGER.warning("unreadable storage commitment report: %s", exc)
        return 0x0110, None
    caller = str(event.assoc.requestor.ae_title).strip() if event.assoc.is_acceptor else None
    if _REPORTS.post(transaction, info, caller):
        LOGGER.debug("storage commitment report for transaction %s", transaction)
    else:
        LOGGER.warning(
            "storage commitment report for unknown transaction %s%s",
            transaction,
            "" if caller is None else f" from calling AE {caller}",
        )
    return 0x0000, None


class _Listener:
    """An acceptor AE for N-EVENT-REPORTs that come on a new association; fail closed.

    It answers only its PACSs: the called AE title must be the bridge's, the calling AE
    title one of the accepted callers of the destinations using it (anything else is an
    A-ASSOCIATE-RJ, rejected-permanent by the service user, calling or called AE title
    not recognised, and a WARNING naming the caller); the one context it accepts is the
    Storage Commitment Push Model with the peer in the SCP role, so no C-ECHO, C-STORE
    or other request (PS3.4 J.3.3; docs/conformance-statement.md).
    """

    def __init__(self, host: str, port: int, ae_title: str, callers: frozenset[str]) -> None:
        ae = AE(ae_title=ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.require_called_aet = True
        self.ae = ae
        self.ae_title = ae_title
        self.where = f"{host}:{port}"
        self._callers: Counter[str] = Counter()
        self.admit(callers)  # before the first association: an empty list admits anyone
        # The SCP (e.g. Orthanc) proposes to act as SCP: accept that role, refuse SCU.
        ae.add_supported_context(
            STORAGE_COMMITMENT_PUSH_MODEL, _native(), scu_role=False, scp_role=True
        )
        try:
            server = ae.start_server(
                (host, port),
                block=False,
                evt_handlers=[
                    (evt.EVT_N_EVENT_REPORT, _on_event_report),
                    (evt.EVT_REJECTED, self._on_rejected),
                ],
            )
        except OSError as exc:
            raise ForwardError(
                f"cannot listen for storage commitment reports on {host}:{port}: {exc}"
            ) from exc
        assert server is not None  # block=False always returns the server
        self.server = server
        LOGGER.info("listening for storage commitment reports on %s", self.where)

    def admit(self, callers: frozenset[str]) -> None:
        """Accept associations from ``callers`` too (one more destination uses it)."""
        self._callers.update(callers)
        self.ae.require_calling_aet = sorted(self._callers)

    def dismiss(self, callers: frozenset[str]) -> None:
        """Undo one :meth:`admit` of ``callers``."""
        self._callers.subtract(callers)
        self._callers = +self._callers  # drop the titles no destination accepts any more
        if self._callers:
            self.ae.require_calling_aet = sorted(self._callers)

    def _on_rejected(self, event: Any) -> None:
        requestor = event.assoc.requestor
        called = getattr(requestor.primitive, "called_ae_title", "?")
        LOGGER.warning(
            "storage commitment listener on %s refused an association from calling AE "
            "%s (%s) to called AE %s: it accepts calling AE %s to called AE %s only",
            self.where,
            str(requestor.ae_title).strip(),
            requestor.address,
            str(called).strip(),
            ", ".join(sorted(self._callers)),
            self.ae_title,
        )

    def stop(self) -> None:
        self.server.shutdown()


_LISTENERS: dict[tuple[str, int], tuple[_Listener, int]] = {}
_LISTENERS_LOCK = threading.Lock()


def _acquire_listener(destination: Destination) -> None:
    """Start (or share) the listener at the destination's ``commitment_host:port`` and
    admit its accepted callers; :class:`ForwardError` if it cannot listen there."""
    key = (destination.commitment_host, destination.commitment_port)
    callers = destination.accepted_callers
    with _LISTENERS_LOCK:
        found = _LISTENERS.get(key)
        if found is None:
            found = (_Listener(*key, destination.calling_ae, callers), 0)
        else:
            if found[0].ae_title != destination.calling_ae:
                raise ForwardError(
                    f"the storage commitment listener on {found[0].where} answers as "
                    f"{found[0].ae_title}, not {destination.calling_ae}"
                )
            found[0].admit(callers)
        _LISTENERS[key] = (found[0], found[1] + 1)
    LOGGER.info(
        "%s: storage commitment reports are accepted from calling AE %s; the PACS must "
        "send them to %s at %s",
        destination.name,
        ", ".join(sorted(callers)),
        destination.calling_ae,
        destination.commitment_callback,
    )
    problem = _callback_problem(destination)
    if problem:
        LOGGER.warning("%s: %s", destination.name, problem)


def _release_listener(destination: Destination) -> None:
    key = (destination.commitment_host, destination.commitment_port)
    with _LISTENERS_LOCK:
        listener, users = _LISTENERS.pop(key)
        if users > 1:
            listener.dismiss(destination.accepted_callers)
            _LISTENERS[key] = (listener, users - 1)
        else:
            listener.stop()


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (no name is resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _callback_problem(destination: Destination) -> str | None:
    """Why the PACS cannot reach the callback address, when that is plain: a loopback
    address given to a PACS on another machine."""
    callback = destination.commitment_callback_host or destination.commitment_host
    if _is_loopback(callback) and not _is_loopback(destination.host):
        return (
            f"storage commitment reports are expected at {destination.commitment_callback}, "
            f"a loopback address the PACS at {destination.host} cannot reach: set "
            "forward.commitment_host (the address to listen on, e.g. 0.0.0.0) and "
            "forward.commitment_callback_host (the address the PACS sends to)"
        )
    return None


# ----------------------------------------------------------------------- the sender


def _new_ae(
    destination: Destination,
    on_socket: Callable[[TunedAssociationSocket], None] | None = None,
) -> AE:
    ae = make_ae(
        destination.calling_ae,
        tuned=destination.tcp_tuning,
        label=destination.name,
        on_socket=on_socket,
    )
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.connection_timeout = destination.connect_timeout
    ae.acse_timeout = destination.acse_timeout
    ae.dimse_timeout = destination.dimse_timeout
    ae.network_timeout = destination.network_timeout
    return ae


def _request(
    ae: AE,
    destination: Destination,
    contexts: list[PresentationContext],
    tls_args: tuple[ssl.SSLContext, str] | None,
) -> tuple[Any, str, bool]:
    """Request an association: (the association, established or not; why it failed, or
    ''; whether that failure is permanent, see :func:`_association_failure`).

    A host name that cannot be resolved raises :class:`_Lost` (no association exists).

    Every A-ASSOCIATE-RJ PDU received is noted (``EVT_PDU_RECV``, unbound once the
    request is over): a peer that sends its rejection and closes at once can have
    pynetdicom's DUL thread handle both before the requesting thread looks, and
    pynetdicom then takes the closed socket for a failed connection and aborts, the
    rejection unread (DCMTK ``storescp --refuse`` on a loaded machine: 17 of 60
    requests).
    """
    connected: list[bool] = []
    rejections: list[A_ASSOCIATE_RJ] = []

    def on_pdu(event: Any) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rejections.append(event.pdu)

    try:
        assoc = ae.associate(
            destination.host,
            destination.port,
            contexts=contexts,
            ae_title=destination.ae_title,
            max_pdu=destination.max_pdu,
            tls_args=tls_args,
            evt_handlers=[
                (evt.EVT_N_EVENT_REPORT, _on_event_report),
                (evt.EVT_CONN_OPEN, lambda _event: connected.append(True)),
                (evt.EVT_PDU_RECV, on_pdu),
            ],
        )
    except socket.gaierror as exc:
        raise _resolution_failure(destination, exc) from exc
    assoc.unbind(evt.EVT_PDU_RECV, on_pdu)  # one call per PDU otherwise
    if assoc.is_established:
        return assoc, "", False
    failure, permanent = _association_failure(assoc, destination, connected, rejections)
    return assoc, failure, permanent


# getaddrinfo errors that say the name does not exist (not that the resolver is unwell)
_UNKNOWN_NAME: Final = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
)


def _resolution_failure(destination: Destination, exc: socket.gaierror) -> _Lost:
    """pynetdicom resolves the host before it connects: why that failed, as a
    :class:`_Lost`, permanent when the resolver says the name does not exist (a
    temporary resolver failure, EAI_AGAIN, is retried as usual)."""
    if exc.errno in _UNKNOWN_NAME:
        return _Lost(
            f"cannot connect to {destination.name}: cannot resolve {destination.host} "
            f"({exc.strerror})",
            permanent=True,
        )
    return _Lost(
        f"cannot connect to {destination.name}: cannot resolve {destination.host} for now "
        f"({exc.strerror})"
    )


def _association_failure(
    assoc: Any,
    destination: Destination,
    connected: list[bool],
    rejections: Sequence[A_ASSOCIATE_RJ] = (),
) -> tuple[str, bool]:
    """Why ``assoc`` is not established, and whether that is permanent.

    Permanent: a rejection that :func:`~bridge.forward.status.classify_rejection` calls
    so (rejected-permanent by the service user or ACSE, e.g. called-AE-title-not-
    recognized). Everything else (refused, unreachable, timed out, a transient
    rejection) is worth retrying soon. ``rejections``: the A-ASSOCIATE-RJ PDUs received
    (see :func:`_request`), for a rejection pynetdicom did not report.
    """
    if assoc.is_rejected or rejections:
        try:
            if assoc.is_rejected:
                rsp = assoc.acceptor.primitive
                fields = (rsp.result, rsp.result_source, rsp.diagnostic)
            else:
                pdu = rejections[0]
                fields = (pdu.result, pdu.source, pdu.reason_diagnostic)
            rejection = classify_rejection(*(int(f) for f in fields))
        except Exception:  # a malformed rejection: keep the fact, lose the detail
            return f"association rejected by {destination.name} (no reason given)", False
        return f"association rejected by {destination.name} ({rejection.text})", rejection.permanent
    tls = " or the TLS handshake failed" if destination.tls is not None else ""
    if connected:
        return (
            f"{destination.name} closed or aborted the connection before accepting the "
            f"association (timeout, protocol error{tls})"
        ), False
    return f"cannot connect to {destination.name} (refused, unreachable, timed out{tls})", False


def _key(sop_class: str, transfer_syntax: str) -> tuple[str, str]:
    """The context an object needs: the native pair, or its own transfer syntax."""
    return (sop_class, "native" if transfer_syntax in _NATIVE else transfer_syntax)


@dataclass
class _Negotiated:
    """What the current association proposed and what the destination accepted."""

    proposed: set[tuple[str, str]] = field(default_factory=set)
    accepted: list[PresentationContext] = field(default_factory=list)

    def context(self, sop_class: str, transfer_syntax: str) -> PresentationContext | None:
        for cx in self.accepted:
            if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == transfer_syntax:
                return cx
        return None

    def native_context(self, sop_class: str) -> PresentationContext | None:
        for cx in self.accepted:
            if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] in _NATIVE:
                return cx
        return None

    def class_accepted(self, sop_class: str) -> bool:
        return any(cx.abstract_syntax == sop_class for cx in self.accepted)


class _Lost(Exception):
    """The association is gone; every object not yet answered is a RETRY.

    ``in_flight``: the object being sent was on the wire (its Result is marked
    ``lost``); ``hard``: the connection is unusable (the peer stopped reading, a write
    failed), so it is shut down before the abort instead of waiting to send an A-ABORT;
    ``permanent``: the association could not be made for a reason retrying soon cannot
    change (the Results are marked ``hold``).
    """

    def __init__(
        self, reason: str, *, in_flight: bool = False, hard: bool = False, permanent: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.in_flight = in_flight
        self.hard = hard
        self.permanent = permanent


class _Unsendable(Exception):
    """The object's file cannot be sent as it is (missing, unreadable, damaged): FAIL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_verified(item: Item) -> bytes:
    """The bytes of ``item``'s file, checked against its sha256; :class:`_Unsendable`."""
    try:
        data = item.path.read_bytes()
    except FileNotFoundError:
        raise _Unsendable(f"spool file missing: {item.path}") from None
    except OSError as exc:
        raise _Unsendable(f"cannot read {item.path}: {exc.strerror or exc}") from exc
    if item.sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != item.sha256.lower():
            raise _Unsendable(
                f"spool file damaged: sha256 {actual} expected {item.sha256} "
                f"({item.path}, {len(data)} bytes); not sent"
            )
    return data


class Sender:
    """Sends objects to one :class:`Destination` over one reused association.

    Not thread-safe: one Sender per destination, used from one thread. Close it with
    :meth:`close` (or use it as a context manager). The one exception is :meth:`stop`,
    which any thread may call to end the Sender's work within seconds.
    """

    chunked_send: bool = True
    #: Send a stored file as pre-built P-DATA PDUs (bridge.forward.fastpath) when the
    #: accepted context has the file's own transfer syntax.
    fast_send: bool = True
    fast_sends: int = 0
    """Send files without decoding when the transfer syntax allows (module docstring)."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self._tls_args = (
            None if destination.tls is None else (destination.tls.context(), destination.host)
        )
        self._stopping = threading.Event()
        self._socket: TunedAssociationSocket | None = None  # of the latest association
        self._ae = _new_ae(destination, self._track_socket)
        self._assoc: Any = None
        self._negotiated = _Negotiated()
        self._known: dict[str, list[str]] = {}  # SOP Class -> other transfer syntaxes seen
        self._message_id = 0
        self._prepared: tuple[Path, int, bytes] | None = None
        self._hooks_checked: Any = None  # the association fastpath.hook_problems passed
        self._last_used = time.monotonic()
        self._listening = False
        self.associations_opened = 0
        """How many associations this Sender has opened (for statistics and tests)."""

    # -- lifecycle

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the association and stop this Sender's use of the commitment listener.

        After :meth:`stop` the association is aborted instead of released.
        """
        self._drop(release=not self._stopping.is_set(), hard=self._stopping.is_set())
        if self._listening:
            self._listening = False
            _release_listener(self.destination)

    def close_if_idle(self, now: float) -> None:
        """Release the association if unused for ``idle_timeout`` (``now``: monotonic)."""
        if now - self._last_used >= self.destination.idle_timeout:
            if self._assoc is not None:
                LOGGER.debug("%s: association idle, releasing", self.destination.name)
            self._drop(release=True)

    def stop(self, *, now: bool = False) -> None:
        """End this Sender's work; safe from any thread.

        No new object, association or commitment request starts: the objects not yet
        sent come back from :meth:`send` as RETRY "forwarding stopped" (never marked
        ``lost``). With ``now``, the connection in use (or being opened) is also shut
        down at once, which ends a write, read, association request or release blocked
        on the peer; the object on the wire then also comes back as RETRY.
        """
        self._stopping.set()
        if now:
            sock = self._socket
            if sock is not None:
                sock.interrupt()
            assoc = self._assoc
            if assoc is not None:
                # wake a wait for a response that no abort ends (pynetdicom puts nothing on
                # its DIMSE queue when the connection closes after its action AA-8)
                with contextlib.suppress(AttributeError):
                    assoc.dimse.msg_queue.put((None, None))

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping.is_set()

    def _track_socket(self, sock: TunedAssociationSocket) -> None:
        """Called by the AE with each new association socket, before it connects."""
        self._socket = sock
        if self._stopping.is_set():
            sock.interrupt()

    def _socket_failure(self) -> str:
        """Why the socket layer dropped the connection (a read deadline), or ''."""
        sock = self._socket
        failure = None if sock is None else sock.failure
        return f"; {failure}" if failure else ""

    @property
    def is_associated(self) -> bool:
        return self._assoc is not None and bool(self._assoc.is_established)

    # -- sending

    def send(self, items: Sequence[Item]) -> list[Result]:
        """Deliver ``items``; one :class:`Result` per item, in order. Never raises for
        a network or peer problem: those are RETRY or FAIL results."""
        for item in items:
            if item.transfer_syntax not in _NATIVE:
                seen = self._known.setdefault(item.sop_class_uid, [])
                if item.transfer_syntax not in seen:
                    seen.append(item.transfer_syntax)
            else:
                self._known.setdefault(item.sop_class_uid, [])
        results: list[Result | None] = [None] * len(items)
        try:
            try:
                for index in range(len(items)):
                    if self._stopping.is_set():
                        raise _Lost(f"{self.destination.name}: forwarding stopped")
                    results[index] = self._send_one(items, index)
            finally:
                if self._assoc is not None and self.fast_send:
                    fastpath.resume(self._assoc)  # the fast path pauses once per batch
            if self.destination.commitment:
                self._commit_stored(items, results)
        except _Lost as lost:
            stopped = self._stopping.is_set()
            reason = lost.reason
            if stopped and "forwarding stopped" not in reason:
                reason = f"{self.destination.name}: forwarding stopped ({reason})"
            hold = lost.permanent and not stopped
            # the forward loop reports it: a held destination once at ERROR, any other
            # failure once per interval
            LOGGER.debug("%s", reason)
            self._drop(release=False, hard=lost.hard or stopped)
            in_flight = lost.in_flight and not stopped
            for index, result in enumerate(results):
                if result is None:
                    # the first unanswered object is the one that was being sent
                    results[index] = Result(Outcome.RETRY, None, reason, lost=in_flight, hold=hold)
                    in_flight = False
                elif self.destination.commitment and result.ok:
                    why = f"stored but not committed: {reason}"
                    results[index] = Result(Outcome.RETRY, result.status, why)
        except BaseException:
            # a bug or an interrupt: leave no half-used association behind
            self._drop(release=False)
            raise
        finally:
            self._last_used = time.monotonic()
        return [r for r in results if r is not None]

    def _send_one(self, items: Sequence[Item], index: int) -> Result:
        item = items[index]
        key = _key(item.sop_class_uid, item.transfer_syntax)
        # No association (or one the peer closed), or none proposing this object's
        # context: (re)associate. Without an association but with the key proposed,
        # the destination refused every context of the last request: do not ask again.
        stale = self._assoc is not None and not self._assoc.is_established
        if stale or key not in self._negotiated.proposed:
            self._associate(items[index:])
        negotiated = self._negotiated
        sop_class, syntax = item.sop_class_uid, item.transfer_syntax
        context = negotiated.context(sop_class, syntax)
        if context is not None:
            # Not over TLS: the DUL thread reads the association's SSL object while the
            # fast path writes it, and OpenSSL does not allow one SSL object to be used
            # from two threads at once; pynetdicom's own path writes from its DUL thread.
            if self.fast_send and self._tls_args is None and self._fast_ok():
                following = items[index + 1] if index + 1 < len(items) else None
                return self._fast_store(item, int(context.context_id or 0), following)
            return self._store(item, raw=self.chunked_send)
        if not UID(syntax).is_compressed and negotiated.native_context(sop_class) is not None:
            return self._store(item, raw=False)
        if negotiated.class_accepted(sop_class):
            reason = (
                f"transfer syntax {UID(syntax).name} for SOP Class {UID(sop_class).name} "
                f"not accepted by {self.destination.name}"
            )
        else:
            reason = f"SOP Class {UID(sop_class).name} not accepted by {self.destination.name}"
        return Result(Outcome.FAIL, None, reason)

    def _contexts(self, items: Sequence[Item]) -> tuple[list[PresentationContext], set[Any]]:
        """Contexts for the remaining ``items`` first, then for every class seen."""
        classes = list(dict.fromkeys([i.sop_class_uid for i in items] + list(self._known)))
        contexts: list[PresentationContext] = []
        proposed: set[tuple[str, str]] = set()
        if self.destination.commitment:
            contexts.append(build_context(STORAGE_COMMITMENT_PUSH_MODEL, _native()))
            proposed.add((STORAGE_COMMITMENT_PUSH_MODEL, "native"))
        for sop_class in classes:
            wanted: list[tuple[list[str | UID], str]] = [(_native(), "native")]
            wanted += [([syntax], syntax) for syntax in self._known.get(sop_class, [])]
            for syntaxes, kind in wanted:
                if len(contexts) == MAX_CONTEXTS:
                    return contexts, proposed
                contexts.append(build_context(sop_class, syntaxes))
                proposed.add((sop_class, kind))
        return contexts, proposed

    def _associate(self, items: Sequence[Item]) -> None:
        """(Re)open the association with contexts for ``items``; :class:`_Lost` if not."""
        self._drop(release=True)
        if self._stopping.is_set():
            raise _Lost(f"{self.destination.name}: forwarding stopped")
        contexts, proposed = self._contexts(items)
        destination = self.destination
        assoc, failure, permanent = _request(self._ae, destination, contexts, self._tls_args)
        self.associations_opened += 1
        self._message_id = 0
        self._prepared = None
        self._negotiated = _Negotiated(proposed, list(assoc.accepted_contexts))
        if assoc.is_established:
            self._assoc = assoc
            LOGGER.info(
                "%s: association open, %d of %d contexts accepted",
                destination.name,
                len(self._negotiated.accepted),
                len(contexts),
            )
            return
        if assoc.is_aborted and assoc.rejected_contexts and not assoc.accepted_contexts:
            # pynetdicom aborts when the peer accepted no context: every class refused.
            LOGGER.warning("%s accepted none of %d contexts", destination.name, len(contexts))
            return
        raise _Lost(failure, permanent=permanent)

    def _next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _fast_ok(self) -> bool:
        """Whether the fast path can be used: pynetdicom's internals are checked once per
        association (not per object), the first time it is used."""
        if self._hooks_checked is self._assoc:
            return True
        problems = fastpath.hook_problems(self._assoc)
        if problems:
            LOGGER.warning("fast send path off (pynetdicom changed): %s", "; ".join(problems))
            type(self).fast_send = False
        else:
            self._hooks_checked = self._assoc
        return not problems

    def _request(self, item: Item, context_id: int) -> tuple[int, bytes]:
        """(message ID, request bytes) for ``item``: prepared earlier, or made now.

        The file is read and checked against its sha256 here, on the very bytes that
        are sent: :class:`_Unsendable` if it is missing or damaged.
        """
        prepared = self._prepared
        self._prepared = None
        if prepared is not None and prepared[0] == item.path:
            return prepared[1], prepared[2]
        data = _read_verified(item)
        try:
            message_id = self._next_message_id()
            request = fastpath.build_request(
                self._assoc,
                context_id,
                data,
                item.sop_class_uid,
                item.sop_instance_uid,
                message_id,
            )
        except ValueError as exc:  # not a Part 10 file we can slice: nothing was sent
            raise _Unsendable(f"cannot send {item.path.name}: {exc}") from exc
        return message_id, request

    def _prepare(self, item: Item | None) -> None:
        """Read and build ``item``'s request while the receiver stores the previous one."""
        if item is None:
            return
        context = self._negotiated.context(item.sop_class_uid, item.transfer_syntax)
        if context is None:
            return
        try:
            message_id, request = self._request(item, int(context.context_id or 0))
        except _Unsendable:
            return  # the item's own turn will report it
        self._prepared = (item.path, message_id, request)

    def _fast_store(self, item: Item, context_id: int, following: Item | None) -> Result:
        name = self.destination.name
        try:
            message_id, request = self._request(item, context_id)
        except _Unsendable as exc:
            return Result(Outcome.FAIL, None, exc.reason)
        try:
            status = fastpath.exchange(
                self._assoc, request, message_id, lambda: self._prepare(following)
            )
        except OSError as exc:  # TimeoutError included: the peer stopped reading
            raise _Lost(
                f"association with {name} lost while sending {item.sop_instance_uid}: {exc}",
                in_flight=True,
                hard=True,
            ) from exc
        except fastpath.NoResponse as exc:
            raise _Lost(
                f"no C-STORE response from {name} for {item.sop_instance_uid}: "
                f"{exc.reason}{self._socket_failure()}",
                in_flight=True,
            ) from exc
        if status is None:
            raise _Lost(
                f"C-STORE response without a status from {name} for {item.sop_instance_uid}",
                in_flight=True,
            )
        self.fast_sends += 1
        result = classify_status(status)
        if result.status != 0x0000:
            LOGGER.info("%s: %s for %s", name, result.reason, item.path.name)
        return result

    def _store(self, item: Item, *, raw: bool) -> Result:
        """Send ``item`` with pynetdicom's ``send_c_store``; its file is checked first."""
        assoc = self._assoc
        name = self.destination.name
        dataset: Path | Dataset
        try:
            data = _read_verified(item)
        except _Unsendable as exc:
            return Result(Outcome.FAIL, None, exc.reason)
        if raw:
            # pynetdicom reads the file again, in chunks, as it sends
            _config.STORE_SEND_CHUNKED_DATASET = True
            dataset = item.path
        else:
            try:
                dataset = dcmread(io.BytesIO(data))
            except Exception as exc:  # pydicom raises several kinds for a bad file
                return Result(Outcome.FAIL, None, f"cannot read {item.path}: {exc}")
        try:
            response = assoc.send_c_store(dataset, msg_id=self._next_message_id())
        except (ValueError, AttributeError) as exc:
            # raised before anything is sent: no usable context, missing UIDs or meta
            return Result(Outcome.FAIL, None, f"cannot send {item.path.name}: {exc}")
        except OSError as exc:
            # the file went away, possibly mid-message: the association is unusable
            self._drop(release=False, hard=True)
            return Result(Outcome.FAIL, None, f"cannot read {item.path}: {exc}")
        except RuntimeError as exc:  # not established any more: nothing was sent
            raise _Lost(f"association with {name} lost: {exc}") from exc
        if "Status" not in response:
            why = (
                "the peer aborted the association (A-ABORT)"
                if assoc.is_aborted
                else f"no response within the DIMSE timeout "
                f"({self.destination.dimse_timeout:g} s), or the association was lost"
            )
            raise _Lost(
                f"no C-STORE response from {name} for {item.sop_instance_uid}: "
                f"{why}{self._socket_failure()}",
                in_flight=True,
            )
        result = classify_status(int(response.Status))
        if result.status != 0x0000:
            LOGGER.info("%s: %s for %s", name, result.reason, item.path.name)
        return result

    # -- storage commitment

    def _commit_stored(self, items: Sequence[Item], results: list[Result | None]) -> None:
        """Replace the DONE results of ``items`` with the outcome of their commitment."""
        stored = [i for i, r in enumerate(results) if r is not None and r.ok]
        if not stored:
            return
        committed = self.commit([items[i] for i in stored])
        for index, result in zip(stored, committed, strict=True):
            before = results[index]
            if result.ok and before is not None and before.status not in (None, 0x0000):
                # keep the C-STORE warning (e.g. 0xB000 coercion) visible
                result = Result(Outcome.DONE, before.status, f"{result.reason}; {before.reason}")
            results[index] = result

    def commit(self, items: Sequence[Item]) -> list[Result]:
        """Request Storage Commitment for ``items`` (already stored) and wait for it.

        One Result per item: DONE when committed, FAIL with the Failure Reason when the
        report lists it as failed, RETRY on a timeout or a lost association.
        """
        destination = self.destination
        if not items:
            return []
        if destination.commitment_port and not self._listening:
            try:
                _acquire_listener(destination)
            except ForwardError as exc:
                LOGGER.error("%s: %s", destination.name, exc)
                return [Result(Outcome.RETRY, None, f"not committed: {exc}") for _ in items]
            self._listening = True
        try:
            if not self.is_associated or (
                (STORAGE_COMMITMENT_PUSH_MODEL, "native") not in self._negotiated.proposed
            ):
                self._associate(items)
            return self._commit(items)
        except _Lost as lost:
            self._drop(release=False)
            reason = f"not committed: {lost.reason}"
            return [Result(Outcome.RETRY, None, reason, hold=lost.permanent) for _ in items]
        finally:
            self._last_used = time.monotonic()

    def _commit(self, items: Sequence[Item]) -> list[Result]:
        destination = self.destination
        if self._negotiated.native_context(STORAGE_COMMITMENT_PUSH_MODEL) is None:
            reason = f"Storage Commitment Push Model not accepted by {destination.name}"
            return [Result(Outcome.FAIL, None, reason) for _ in items]
        transaction = generate_uid(prefix=None)
        request = Dataset()
        request.TransactionUID = transaction
        request.ReferencedSOPSequence = [
            _reference(i.sop_class_uid, i.sop_instance_uid) for i in items
        ]
        _REPORTS.expect(transaction, destination.accepted_callers)
        try:
            status, _reply = self._assoc.send_n_action(
                request,
                1,  # Request Storage Commitment (PS3.4 J.3.2)
                STORAGE_COMMITMENT_PUSH_MODEL,
                STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
                msg_id=self._next_message_id(),
            )
        except (RuntimeError, ValueError) as exc:
            _REPORTS.forget(transaction)
            raise _Lost(f"storage commitment request to {destination.name} failed: {exc}") from exc
        if "Status" not in status:
            _REPORTS.forget(transaction)
            raise _Lost(
                f"no N-ACTION response from {destination.name} (does it know the calling "
                f"AE title {destination.calling_ae}? Orthanc wants it in DicomModalities)"
            )
        answer = classify_status(int(status.Status))
        if not answer.ok:
            _REPORTS.forget(transaction)
            reason = f"storage commitment request refused by {destination.name}: {answer.reason}"
            return [Result(answer.outcome, answer.status, reason) for _ in items]
        LOGGER.debug("%s: commitment transaction %s sent", destination.name, transaction)
        report = _REPORTS.wait(transaction, destination.commitment_timeout, self._stopping)
        if report is None:
            if self._stopping.is_set():
                reason = f"not committed: forwarding stopped ({destination.name})"
                return [Result(Outcome.RETRY, None, reason) for _ in items]
            reason = (
                f"no storage commitment report from {destination.name} "
                f"within {destination.commitment_timeout:g} s"
            )
            LOGGER.warning(
                "%s (the batch will be sent again): %s", reason, _no_report_cause(destination)
            )
            return [Result(Outcome.RETRY, None, reason) for _ in items]
        return _read_report(report, items, destination)

    # -- association teardown

    def _drop(self, *, release: bool, hard: bool = False) -> None:
        """Forget the association (and what it negotiated); release or abort it.

        With ``hard`` the connection is shut down first: the peer is not reading (or
        the bridge is stopping), so an A-RELEASE or A-ABORT could wait on it; pynetdicom
        then sees the connection closed and ends the association at once.
        """
        assoc, self._assoc = self._assoc, None
        self._negotiated = _Negotiated()
        if assoc is None:
            return
        if hard:
            sock = self._socket
            if sock is not None:
                sock.interrupt()
        if release and not hard and assoc.is_established:
            assoc.release()  # bounded by the ACSE timeout, and by stop(now=True)
        if assoc.is_established:
            # An A-ABORT first; pynetdicom then waits for its DUL to end, which may read
            # the rest of a PDU the peer never completes (after the A-ABORT it ignores
            # everything): past a grace period the connection is shut down instead.
            sock = self._socket
            guard = None
            if sock is not None:
                guard = threading.Timer(_ABORT_GRACE_S, sock.interrupt)
                guard.daemon = True
                guard.start()
            try:
                assoc.abort()
            finally:
                if guard is not None:
                    guard.cancel()
                    guard.join()
        LOGGER.debug("%s: association closed", self.destination.name)


def _no_report_cause(destination: Destination) -> str:
    """The likely cause of a report that never came, for the operator (a WARNING)."""
    if not destination.commitment_port:
        return (
            "it did not report on the association, and no listener is configured for "
            "reports on a new association (forward.commitment_port = 0; Orthanc sends them "
            "that way)"
        )
    return _callback_problem(destination) or (
        f"is {destination.name} configured to send its reports to "
        f"{destination.calling_ae} at {destination.commitment_callback} "
        f"(forward.commitment_callback_host/port), from calling AE "
        f"{', '.join(sorted(destination.accepted_callers))}? The listener is on "
        f"{destination.commitment_host}:{destination.commitment_port}"
    )


def _reference(sop_class: str, sop_instance: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_instance
    return ref


def _read_report(report: Dataset, items: Sequence[Item], destination: Destination) -> list[Result]:
    """The outcome per item of a commitment report (PS3.4 J.3.3, Table J.3-2)."""
    committed = {
        str(ref.ReferencedSOPInstanceUID)
        for ref in report.get("ReferencedSOPSequence", [])
        if "ReferencedSOPInstanceUID" in ref
    }
    failed: dict[str, int | None] = {}
    for ref in report.get("FailedSOPSequence", []):
        if "ReferencedSOPInstanceUID" in ref:
            reason = ref.get("FailureReason")
            failed[str(ref.ReferencedSOPInstanceUID)] = None if reason is None else int(reason)
    results = []
    for item in items:
        uid = item.sop_instance_uid
        if uid in failed:
            code = failed[uid]
            why = "no failure reason" if code is None else describe_status(code)
            reason = f"storage commitment failed at {destination.name}: {why}"
            results.append(Result(Outcome.FAIL, code, reason))
        elif uid in committed:
            results.append(Result(Outcome.DONE, 0x0000, f"committed by {destination.name}"))
        else:
            reason = f"storage commitment report from {destination.name} omits the object"
            results.append(Result(Outcome.RETRY, None, reason))
    return results


def echo(destination: Destination) -> float:
    """Verify ``destination`` with C-ECHO; the round trip of the C-ECHO in seconds.

    Opens and releases an association of its own. Raises :class:`ForwardError` when the
    association cannot be made or the status is not success.
    """
    ae = _new_ae(destination)
    tls_args = None if destination.tls is None else (destination.tls.context(), destination.host)
    try:
        assoc, failure, _ = _request(
            ae, destination, [build_context(VERIFICATION, _native())], tls_args
        )
    except _Lost as lost:
        raise ForwardError(f"C-ECHO: {lost.reason}") from None
    if failure:
        raise ForwardError(f"C-ECHO: {failure}")
    try:
        started = time.perf_counter()
        status = assoc.send_c_echo()
        elapsed = time.perf_counter() - started
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        raise ForwardError(f"C-ECHO: no response from {destination.name}")
    if int(status.Status) != 0x0000:
        raise ForwardError(
            f"C-ECHO refused by {destination.name}: {describe_status(status.Status)}"
        )
    return elapsed

"""Real peers for the test suite: dicom3tools' validator, DCMTK storescp and Orthanc.

Test modules import this file as ``peers`` (``tests/`` is on ``sys.path`` through the
root ``conftest.py``); the pytest fixtures that wrap it live in ``tests/conftest.py``.

Availability policy (the same one for every peer tool and for the corpus):

* a missing tool skips the test with the reason, or fails it when the environment has
  ``BRIDGE_REQUIRE_PEERS=1``;
* a missing corpus (``BRIDGE_CORPUS`` or ``<repo>/../shared/corpus``) skips, or fails
  when ``BRIDGE_REQUIRE_CORPUS=1``. CI sets both (``.ci/run``).

Network rule: every server started here listens on 127.0.0.1 only and talks to no other
address. Neither DCMTK 3.6.7 ``storescp`` nor Orthanc 1.10.1 has an option for the listen
address (both bind 0.0.0.0), so each runs with a small ``LD_PRELOAD`` library
(:data:`LOOPBACK_SHIM_C`, built once per session with ``cc``) that rewrites every IPv4/IPv6
``bind()`` to 127.0.0.1/::1 and refuses ``connect()`` to anything but loopback. Ports are
ephemeral. Servers stop by themselves: the fixture finalizer kills their process group,
they receive SIGTERM if the test process dies (``PR_SET_PDEATHSIG``), and coreutils
``timeout`` ends them after :data:`SERVER_LIFETIME_S` whatever happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE

__all__ = [
    "CORPUS_ENV",
    "LOOPBACK",
    "REQUIRE_CORPUS_ENV",
    "REQUIRE_PEERS_ENV",
    "DciodvfyResult",
    "OrthancPeer",
    "PeerError",
    "PeerProcess",
    "StoreResult",
    "StoreSCPPeer",
    "build_loopback_shim",
    "chromium",
    "dciodvfy",
    "find_corpus_file",
    "free_port",
    "new_threads",
    "parse_dciodvfy",
    "require_corpus",
    "require_tool",
    "start_dcmqrscp",
    "start_orthanc",
    "start_storescp",
    "store",
    "unavailable",
    "write_secondary_capture",
]

REQUIRE_PEERS_ENV = "BRIDGE_REQUIRE_PEERS"
REQUIRE_CORPUS_ENV = "BRIDGE_REQUIRE_CORPUS"
CORPUS_ENV = "BRIDGE_CORPUS"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"

LOOPBACK = "127.0.0.1"
SERVER_LIFETIME_S = 600
"""Hard upper bound on the life of any server process started here."""
START_TIMEOUT_S = 60.0  # generous: only to catch a peer that never starts, even on a loaded machine
STOP_TIMEOUT_S = 5.0
NETWORK_TIMEOUT_S = 30

# Orthanc is installed in /usr/sbin, which is not on every user's PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_DEBIAN_PACKAGES = {
    "storescp": "dcmtk",
    "storescu": "dcmtk",
    "dcmqrscp": "dcmtk",
    "dcmdump": "dcmtk",
    "dciodvfy": "dicom3tools",
    "dcdump": "dicom3tools",
    "Orthanc": "orthanc",
    "medcon": "medcon",
    "socat": "socat",
    "gdcmconv": "libgdcm-tools",
    "cc": "gcc",
    "timeout": "coreutils",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "chromium": "chromium",
    "sigrok-cli": "sigrok-cli",
    "dcentvfy": "dicom3tools",
}


class PeerError(RuntimeError):
    """A peer tool or server did not behave as the test infrastructure expects."""


# --------------------------------------------------------------------------- policy


def unavailable(reason: str, *, require_env: str) -> NoReturn:
    """Skip the current test for ``reason``, or fail it when ``require_env`` is ``1``."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason} (and {require_env}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``"1m"``, ``"256k"``) mounted at ``folder`` (made here).

    A real file system that fills up, for full-disk cases. Mounting needs root: without
    it the test is skipped with the reason, or fails under ``BRIDGE_REQUIRE_PEERS=1``.
    Unmounted (lazily) when the block ends.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        unavailable(
            f"cannot mount a tmpfs (root needed): {done.stderr.strip()}",
            require_env=REQUIRE_PEERS_ENV,
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _venv_bin() -> Path | None:
    """The running virtualenv's script directory, if any.

    pynetdicom installs Python apps named ``storescp``/``storescu`` there; a peer test
    must never pick those up instead of DCMTK's.
    """
    if sys.prefix == sys.base_prefix:
        return None
    return Path(sys.prefix).resolve() / "bin"


def require_tool(name: str) -> str:
    """Absolute path of the peer tool ``name``, or skip/fail the test (see module doc)."""
    venv_bin = _venv_bin()
    dirs = os.environ.get("PATH", "").split(os.pathsep) + list(_SBIN_DIRS)
    for directory in dirs:
        if not directory or (venv_bin is not None and Path(directory).resolve() == venv_bin):
            continue
        found = shutil.which(name, path=directory)
        if found is not None:
            return found
    package = _DEBIAN_PACKAGES.get(name, "?")
    unavailable(
        f"peer tool {name!r} not found on PATH (Debian package {package})",
        require_env=REQUIRE_PEERS_ENV,
    )


def require_corpus() -> Path:
    """The sample corpus directory, or skip/fail the test (see module doc)."""
    configured = os.environ.get(CORPUS_ENV)
    where = Path(configured) if configured else DEFAULT_CORPUS
    if not where.is_dir():
        source = f"${CORPUS_ENV}" if configured else "the default location"
        unavailable(
            f"sample corpus not found at {where} ({source})", require_env=REQUIRE_CORPUS_ENV
        )
    return where


def find_corpus_file(corpus: Path, prefix: str) -> Path:
    """The one corpus file whose name starts with ``<prefix>_`` (e.g. ``"r01"``)."""
    matches = sorted(corpus.glob(f"{prefix}_*"))
    if len(matches) > 1:
        raise PeerError(f"corpus id {prefix!r} is ambiguous in {corpus}: {matches}")
    if not matches:
        unavailable(f"corpus file {prefix}_* not in {corpus}", require_env=REQUIRE_CORPUS_ENV)
    return matches[0]


# ------------------------------------------------------------------------ dciodvfy


@dataclass(frozen=True)
class DciodvfyResult:
    """What ``dciodvfy -new`` said about one file.

    ``errors`` and ``warnings`` hold the distinct ``Error - ...`` / ``Warning - ...``
    lines in order of first appearance (dciodvfy prints many of them twice); fatal
    ``Abort - ...`` lines count as errors, and so does a non-zero exit status with no
    error line. ``iod`` is the IOD dciodvfy chose (``"SCImage"``, ``"CTImage"``), or
    ``None`` when it found none.
    """

    path: Path
    iod: str | None
    errors: list[str]
    warnings: list[str]
    returncode: int
    output: str


def parse_dciodvfy(output: str, returncode: int, path: Path = Path("-")) -> DciodvfyResult:
    """Parse the (stderr) output of ``dciodvfy -new``.

    Lines look like ``Error - </StudyDate(0008,0020)[1]> - Value invalid for this VR ...``
    or ``Warning - </(0008,0000)> - Retired attribute``; the IOD name is a line of its
    own (``SCImage``) before them; a file that cannot be read gives ``Abort - ...``.
    """
    errors: dict[str, None] = {}
    warnings: dict[str, None] = {}
    iod: str | None = None
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith(("Error", "Abort")):
            errors[line] = None
        elif line.startswith("Warning"):
            warnings[line] = None
        elif iod is None and line.isidentifier():
            iod = line
    if returncode != 0 and not errors:
        errors[f"dciodvfy exited with status {returncode} without an Error line"] = None
    return DciodvfyResult(path, iod, list(errors), list(warnings), returncode, output)


def dciodvfy(path: Path | str) -> DciodvfyResult:
    """Run ``dciodvfy -new path`` and parse what it prints (it writes to stderr)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    tool = require_tool("dciodvfy")
    done = subprocess.run(
        [tool, "-new", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    return parse_dciodvfy(done.stdout + done.stderr, done.returncode, path)


# --------------------------------------------------------------- loopback confinement

LOOPBACK_SHIM_C = r"""
/* LD_PRELOAD library that confines a server to the loopback interface: every IPv4 or
   IPv6 bind() is rewritten to 127.0.0.1 or ::1 (port kept), and connect() to any
   address outside 127/8 and ::1 fails with ENETUNREACH. Built by tests/peers.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*addr_fn)(int, const struct sockaddr *, socklen_t);

static int is_loopback(const struct sockaddr *sa, socklen_t len) {
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)
            || (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
    }
    return sa->sa_family != AF_INET && sa->sa_family != AF_INET6;
}

int bind(int fd, const struct sockaddr *sa, socklen_t len) {
    addr_fn real = (addr_fn)dlsym(RTLD_NEXT, "bind");
    if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, sa, sizeof a);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real(fd, (const struct sockaddr *)&a, sizeof a);
    }
    if (sa && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, sa, sizeof a);
        a.sin6_addr = in6addr_loopback;
        return real(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real(fd, sa, len);
}

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
    addr_fn real = (addr_fn)dlsym(RTLD_NEXT, "connect");
    if (sa && !is_loopback(sa, len)) {
        errno = ENETUNREACH;
        return -1;
    }
    return real(fd, sa, len);
}
"""


def build_loopback_shim(directory: Path) -> Path:
    """Compile :data:`LOOPBACK_SHIM_C` into ``directory`` and return the ``.so`` path."""
    compiler = require_tool("cc")
    source = directory / "loopback_only.c"
    library = directory / "libloopback_only.so"
    source.write_text(LOOPBACK_SHIM_C)
    done = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(source), "-ldl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise PeerError(f"cannot build the loopback shim:\n{done.stderr}")
    return library


# ---------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class LoggedProcess(subprocess.Popen[str]):
    """A text-mode child whose stderr goes to a temporary file instead of a pipe (a pipe
    holds 64 KiB: a service that logs more would block while the test is busy elsewhere);
    :meth:`communicate` returns the file's text as stderr, as with a pipe."""

    def __init__(self, argv: Sequence[str], **options: Any) -> None:
        # closed by whoever ends the process (bridge_service), after communicate()
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        super().__init__(argv, stderr=self.log, text=True, **options)

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[Any, str]:
        out, _ = super().communicate(input, timeout)
        self.log.seek(0)
        return out, self.log.read()


@contextlib.contextmanager
def bridge_service(
    port: int, *args: str, preexec_fn: Callable[[], None] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``acrnema-bridge run --port tcp-listen://127.0.0.1:PORT ARGS...`` as a child process.

    Yields once the link port listens (fails with the service's stderr if it exits
    first); the test stops it (SIGTERM, then ``communicate``) and reads its output. A
    service still running when the block ends is killed. Its stderr goes to a file
    (:class:`LoggedProcess`), so that a service logging more than a pipe holds never
    blocks on a line while the test waits for it.
    """
    service = LoggedProcess(
        [sys.executable, "-m", "bridge.cli", "run", "--port", f"tcp-listen://{LOOPBACK}:{port}"]
        + list(args),
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=preexec_fn,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _port_open(LOOPBACK, port):
            if service.poll() is not None:
                raise PeerError(f"acrnema-bridge run exited: {service.communicate()[1]}")
            if time.monotonic() > deadline:
                raise PeerError(f"acrnema-bridge run: no listener on {port}")
            time.sleep(0.05)
        yield service
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
        service.log.close()


@contextlib.contextmanager
def scanner_on(port: int, **options: Any) -> Iterator[Any]:
    """An emulated scanner (:class:`bridge.link.requester.Scanner`, ``attempts=1`` unless
    given) connected to a service's link port ``tcp://127.0.0.1:PORT``; closed after."""
    from bridge.link.endpoint import Endpoint
    from bridge.link.requester import Scanner
    from bridge.ports import open_port

    link = open_port(f"tcp://{LOOPBACK}:{port}")
    try:
        scanner = Scanner(Endpoint(link), **{"attempts": 1, **options})
        yield scanner
        scanner.close(timeout=2.0)
    finally:
        link.close()


_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the test process dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class PeerProcess:
    """A server process confined to loopback, in its own process group, time-limited."""

    def __init__(
        self,
        argv: list[str],
        *,
        log: Path,
        shim: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.log = log
        env = {**os.environ, **(env or {})}
        env["LD_PRELOAD"] = " ".join(filter(None, [str(shim), env.get("LD_PRELOAD")]))
        timeout = require_tool("timeout")
        with log.open("wb") as sink:
            self.popen = subprocess.Popen(
                [timeout, f"--kill-after={STOP_TIMEOUT_S:g}", str(SERVER_LIFETIME_S), *argv],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return text[-limit:]

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until true; fail with the log if the process dies or stalls."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if not self.alive:
                raise PeerError(
                    f"{self.argv[0]} exited ({self.popen.returncode}) before {what}:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise PeerError(
                    f"{self.argv[0]}: no {what} in {START_TIMEOUT_S}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL it if it lingers."""
        if self.popen.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                continue


def new_threads(before: Iterable[threading.Thread], grace_s: float) -> list[threading.Thread]:
    """Threads alive now that were not in ``before``, after waiting up to ``grace_s``."""
    known = set(before)
    deadline = time.monotonic() + grace_s
    while True:
        leaked = [t for t in threading.enumerate() if t not in known and t.is_alive()]
        if not leaked or time.monotonic() >= deadline:
            return leaked
        time.sleep(0.02)


def _sop_instance_uid(path: Path) -> str | None:
    try:
        return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    except Exception:  # an unreadable or UID-less file simply did not arrive intact
        return None


# ------------------------------------------------------------------------ storescp


@dataclass
class StoreSCPPeer:
    """A running DCMTK ``storescp``: one ``.dcm`` file per received object in ``out_dir``."""

    host: str
    port: int
    ae_title: str
    out_dir: Path
    process: PeerProcess

    def received(self) -> dict[str, Path]:
        """SOP Instance UID -> file, for every object written so far."""
        found: dict[str, Path] = {}
        for path in sorted(self.out_dir.glob("*.dcm")):
            uid = _sop_instance_uid(path)
            if uid is not None:
                found[uid] = path
        return found

    def stop(self) -> None:
        self.process.stop()


def start_storescp(
    workdir: Path,
    shim: Path,
    ae_title: str = "STORESCP",
    *,
    port: int | None = None,
    extra: Sequence[str] = (),
) -> StoreSCPPeer:
    """Start ``storescp`` on 127.0.0.1 and a free port, writing into ``workdir/received``.

    Options: the default transfer syntax set (explicit VR LE/BE and implicit VR LE: all
    the bridge writes), the default list of standard storage SOP classes (CT, MR, SC,
    RT...) and *not* ``--promiscuous``, so an object with an unknown or private SOP
    Class is refused as a real PACS would; ``--disable-host-lookup`` (no DNS);
    socket/ACSE/DIMSE timeouts so a stuck association ends; ``-fe .dcm`` names files
    ``<modality>.<SOP Instance UID>.dcm``.
    """
    tool = require_tool("storescp")
    out_dir = workdir / "received"
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    argv = [
        tool,
        *extra,
        "--verbose",
        "--aetitle",
        ae_title,
        "--output-directory",
        str(out_dir),
        "--filename-extension",
        ".dcm",
        "--disable-host-lookup",
        "--socket-timeout",
        str(NETWORK_TIMEOUT_S),
        "--acse-timeout",
        str(NETWORK_TIMEOUT_S),
        "--dimse-timeout",
        str(NETWORK_TIMEOUT_S),
        str(port),
    ]
    process = PeerProcess(argv, log=workdir / "storescp.log", shim=shim, cwd=workdir)
    process.wait_until(lambda: _port_open(LOOPBACK, port), f"listener on port {port}")
    return StoreSCPPeer(LOOPBACK, port, ae_title, out_dir, process)


def start_dcmqrscp(
    workdir: Path, shim: Path, ae_title: str = "QRSCP", *, max_associations: int = 16
) -> StoreSCPPeer:
    """Start DCMTK ``dcmqrscp`` on 127.0.0.1 and a free port, storing into ``workdir/db``.

    Unlike ``storescp``, it checks the called AE title: a request for another title is
    rejected (rejected-permanent, service-user, called-AE-title-not-recognized), and one
    beyond ``max_associations`` at a time is rejected (rejected-transient,
    service-provider presentation, local-limit-exceeded). It forks a process per
    association (its default), which counts towards that limit; they all stop with it.
    """
    tool = require_tool("dcmqrscp")
    out_dir = workdir / "db"
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = {max_associations}\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\n{ae_title} {out_dir} RW (100, 100mb) ANY\nAETable END\n"
    )
    argv = [tool, "--verbose", "--config", str(config), "--disable-host-lookup", str(port)]
    process = PeerProcess(argv, log=workdir / "dcmqrscp.log", shim=shim, cwd=workdir)
    process.wait_until(lambda: _port_open(LOOPBACK, port), f"listener on port {port}")
    return StoreSCPPeer(LOOPBACK, port, ae_title, out_dir, process)


# ------------------------------------------------------------------------- Orthanc

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


@dataclass
class OrthancPeer:
    """A running Orthanc: DICOM on ``dicom_port``, REST on ``http_port``, both loopback."""

    host: str
    dicom_port: int
    http_port: int
    ae_title: str
    storage: Path
    process: PeerProcess

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url + path, method=method)
        with _HTTP.open(request, timeout=NETWORK_TIMEOUT_S) as response:
            body = response.read()
        return json.loads(body) if body else None

    def get(self, path: str) -> Any:
        """``GET path`` on the REST API, decoded from JSON."""
        return self._call("GET", path)

    def instances(self) -> list[str]:
        """Orthanc ids of every stored instance (``GET /instances``)."""
        ids: list[str] = self.get("/instances")
        return ids

    def simplified_tags(self, instance_id: str) -> dict[str, Any]:
        """``GET /instances/{id}/simplified-tags``: keyword -> value."""
        tags: dict[str, Any] = self.get(f"/instances/{instance_id}/simplified-tags")
        return tags

    def sop_instance_uids(self) -> dict[str, str]:
        """SOP Instance UID -> Orthanc id, for every stored instance."""
        return {
            str(self.simplified_tags(instance_id)["SOPInstanceUID"]): instance_id
            for instance_id in self.instances()
        }

    def clear(self) -> None:
        """Delete everything stored (one ``DELETE /patients/{id}`` per patient)."""
        for patient in self.get("/patients"):
            self._call("DELETE", f"/patients/{patient}")

    def stop(self) -> None:
        self.process.stop()


def start_orthanc(
    workdir: Path,
    shim: Path,
    ae_title: str = "ORTHANC",
    modalities: dict[str, Any] | None = None,
) -> OrthancPeer:
    """Start Orthanc with a fresh database in ``workdir`` and wait for its REST API.

    Orthanc 1.10 options: storage and index in ``workdir``; free DICOM and HTTP ports;
    ``RemoteAccessAllowed: false`` and no authentication (loopback only anyway);
    ``DicomCheckCalledAet: false`` and ``DicomAlwaysAllowStore: true`` so any SCU may
    store; ``UnknownSopClassAccepted: false`` (the default, stated) so a private SOP
    Class is refused; no plugins, Lua, WebDAV or explorer; jobs not persisted.
    ``modalities`` becomes ``DicomModalities`` (default none), e.g. ``{"bridge":
    {"AET": "ACRNEMA_BRIDGE", "Host": "127.0.0.1", "Port": 11113}}``: Orthanc sends a
    storage commitment report only to a modality declared there, on a new association.
    """
    tool = require_tool("Orthanc")
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    while http_port == dicom_port:
        http_port = free_port()
    config = {
        "Name": "ACRNEMA-BRIDGE-TEST",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "UnknownSopClassAccepted": False,
        "DicomScpTimeout": NETWORK_TIMEOUT_S,
        "DicomModalities": modalities or {},
        "OrthancPeers": {},
        "Plugins": [],
        "LuaScripts": [],
        "SaveJobs": False,
    }
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    process = PeerProcess(
        [tool, "--no-jobs", str(config_path)], log=workdir / "orthanc.log", shim=shim, cwd=workdir
    )
    peer = OrthancPeer(LOOPBACK, dicom_port, http_port, ae_title, storage, process)

    def ready() -> bool:
        try:
            system = peer.get("/system")
        except OSError:
            return False
        return bool(system.get("DicomAet") == ae_title) and _port_open(LOOPBACK, dicom_port)

    process.wait_until(ready, "REST API and DICOM port")
    return peer


# ----------------------------------------------------------------------- storage SCU


@dataclass(frozen=True)
class StoreResult:
    """The outcome of one C-STORE: ``status`` is the DIMSE status, ``None`` if none came."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0x0000

    def __str__(self) -> str:
        status = "no status" if self.status is None else f"status 0x{self.status:04X}"
        return f"{self.path.name} ({self.sop_instance_uid}): {status} {self.error}".rstrip()


def store(
    paths: Iterable[Path | str],
    host: str,
    port: int,
    called_ae: str,
    *,
    calling_ae: str = "BRIDGE-TEST",
) -> list[StoreResult]:
    """Send ``paths`` over one association with pynetdicom; one result per file, in order.

    Presentation contexts: one per distinct SOP Class UID of the files, each offering
    Explicit and Implicit VR Little Endian (pynetdicom re-encodes between the two).
    Raises :class:`PeerError` if the association is refused; ``host`` must be loopback.
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"tests only talk to loopback, not {host}")
    files = [(Path(p), dcmread(p)) for p in paths]
    for path, dataset in files:
        if "SOPClassUID" not in dataset or "SOPInstanceUID" not in dataset:
            raise PeerError(f"{path}: no SOP Class UID or SOP Instance UID, cannot C-STORE")
    sop_classes = list(dict.fromkeys(str(ds.SOPClassUID) for _, ds in files))
    if len(sop_classes) > 128:
        raise PeerError(f"{len(sop_classes)} SOP classes exceed one association's 128 contexts")

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = NETWORK_TIMEOUT_S
    ae.connection_timeout = NETWORK_TIMEOUT_S
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        # pynetdicom aborts an association on which the peer accepted no context
        how = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise PeerError(f"association with {called_ae}@{host}:{port} not established ({how})")
    results: list[StoreResult] = []
    try:
        for path, dataset in files:
            sop_class, sop_instance = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
            try:
                response = assoc.send_c_store(dataset)
            except (ValueError, RuntimeError) as exc:  # no usable context, association lost
                results.append(StoreResult(path, sop_class, sop_instance, None, str(exc)))
                continue
            status = int(response.Status) if "Status" in response else None
            results.append(StoreResult(path, sop_class, sop_instance, status))
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
    return results


# ---------------------------------------------------------------------- sample data


def write_secondary_capture(path: Path, *, implicit_vr: bool = False) -> Dataset:
    """Write a 64x64 16-bit MONOCHROME2 Secondary Capture that passes dciodvfy (no errors).

    Every Type 1 and Type 2 attribute of the SC Image IOD is present; fresh UIDs on each
    call. Returns the dataset as written.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian
    )
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    # Patient, General Study
    ds.PatientName = "Peer^Test"
    ds.PatientID = "PEER-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = "20240102"
    ds.StudyTime = "030405"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    # General Series, General Equipment, SC Equipment
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.Laterality = ""  # Type 2C that dciodvfy cannot evaluate: absent is an Error
    ds.Manufacturer = ""
    ds.ConversionType = "WSD"
    # General Image, Image Pixel
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 64
    ds.Columns = 64
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(64 * 64, dtype="<u2") % 4096).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def chromium(url: str, *args: str, timeout: float = 90.0) -> str:
    """Debian's Chromium, headless, on ``url`` with ``args`` (``--dump-dom``...): its stdout.

    No browser is downloaded: the test needs the ``chromium`` package (``.ci/run`` installs
    it), else it is skipped, or fails under ``BRIDGE_REQUIRE_PEERS=1``. A private profile
    folder keeps runs apart; ``--no-sandbox`` because tests may run as root.
    """
    tool = require_tool("chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [
                tool,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout

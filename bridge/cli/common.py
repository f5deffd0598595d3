"""Helpers shared by the command families of ``acrnema-bridge`` (public, one module).

The settings of a command (:func:`load_settings`: defaults < file < ``BRIDGE_*`` < its
flags, the flags named in :data:`FLAGS`), the objects the forwarder runs with, made from
the settings tree in this one place (:func:`build_destinations`, :func:`tls_settings`,
:func:`retry_policy`), the options several commands share, and a clean stop on signals.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.errors import ConfigError
from bridge.settings import DestinationSettings, Settings, TlsFiles
from bridge.settings import load as load_settings_from
from bridge.spool.store import Spool

if TYPE_CHECKING:  # the network stack is imported by the commands that use it
    from prometheus_client import CollectorRegistry

    from bridge.forward.runner import RetryPolicy
    from bridge.forward.scu import Destination, TlsSettings
    from bridge.status.probe import Probe

    StatusParts = tuple[Probe, CollectorRegistry | None]

__all__ = [
    "FLAGS",
    "build_destinations",
    "check_destinations",
    "days",
    "forward_options",
    "link_options",
    "load_settings",
    "open_spool",
    "retry_policy",
    "seconds",
    "spool_option",
    "status_option",
    "status_served",
    "stop_on_signals",
    "tls_files",
    "tls_settings",
    "whole",
]


def spool_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="spool folder (default: from the config, or ./spool); it must be a spool, "
        "except for spool add, send, and run given a path, which create a missing one",
    )


def link_options(parser: argparse.ArgumentParser) -> None:
    """``--port``, ``--profile`` and ``--ae-title``: the flags of ``[link]``."""
    parser.add_argument(
        "--port", metavar="URL", help="the link port (default: [link] port of the config)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="link profile (default: [link] profile of the config, else the reference)",
    )
    parser.add_argument(
        "--ae-title", help="our logical address on the link (default ACRNEMA_BRIDGE)"
    )
    parser.add_argument(
        "--accept-repairs",
        action="store_true",
        default=None,
        help="store an image whose conversion would change its pixels (pixel data longer "
        "than the image, an unusual Bits Allocated), repaired, and log each repair at WARNING; "
        "default ([link] accept_repairs = false): answer it with a failure status and the "
        "reason, so the scanner keeps it",
    )


def forward_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--dest",
        action="append",
        metavar="AE@HOST:PORT",
        required=required,
        help="a destination; repeat for several (default: the config file's destinations)",
    )
    parser.add_argument("--calling-ae", metavar="AE", help="our AE title (default ACRNEMA_BRIDGE)")
    parser.add_argument(
        "--max-pdu", type=int, metavar="BYTES", help="maximum PDU we receive; 0 = unlimited"
    )
    parser.add_argument(
        "--backoff-cap", type=float, metavar="S", help="longest wait between retries (default 30)"
    )
    parser.add_argument(
        "--max-attempts", type=int, metavar="N", help="quarantine after N attempts (default: never)"
    )
    parser.add_argument(
        "--max-lost",
        type=int,
        metavar="N",
        help="quarantine an object after the association was lost N times while it was "
        "being sent (a receiver that aborts on it); 0 = never (default 3)",
    )
    parser.add_argument(
        "--commitment", action="store_true", help="require Storage Commitment from --dest"
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="CA certificates: use TLS to --dest"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="our TLS certificate")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="our TLS private key")
    parser.add_argument(
        "--tls-check-hostname",
        action="store_true",
        help="also match the certificate of --dest to its host (tls.check_hostname)",
    )
    parser.add_argument(
        "--no-tcp-tuning", action="store_true", help="leave Nagle's algorithm and delayed ACKs on"
    )


FLAGS: dict[str, tuple[str, str]] = {
    "spool": ("spool.path", "--spool"),
    "calling_ae": ("forward.calling_ae", "--calling-ae"),
    "max_pdu": ("forward.max_pdu", "--max-pdu"),
    "backoff_cap": ("forward.backoff_cap", "--backoff-cap"),
    "max_attempts": ("forward.max_attempts", "--max-attempts"),
    "max_lost": ("forward.max_lost", "--max-lost"),
    "port": ("link.port", "--port"),
    "profile": ("link.profile", "--profile"),
    "ae_title": ("link.ae_title", "--ae-title"),
    "log_format": ("logging.format", "--log-format"),
    "accept_repairs": ("link.accept_repairs", "--accept-repairs"),
    "status_listen": ("status.listen", "--status-listen"),
    "log_file": ("logging.file", "--log-file"),
}
"""Attribute of the parsed arguments -> (settings key, flag): the flag layer of the settings."""


def load_settings(args: argparse.Namespace, *, file: bool = True) -> Settings:
    """The settings of this command: defaults < file < ``BRIDGE_*`` < the flags in ``args``.

    ``--dest`` (with ``--commitment`` and ``--tls-*``) replaces the file's destinations.
    ``file=False``: defaults and flags only (the commands that read no settings file)."""
    flags = {
        key: (getattr(args, attr), flag)
        for attr, (key, flag) in FLAGS.items()
        if getattr(args, attr, None) is not None
    }
    if getattr(args, "no_tcp_tuning", False):
        flags["forward.tcp_tuning"] = (False, "--no-tcp-tuning")
    dests = getattr(args, "dest", None)
    listed = None
    if isinstance(dests, list) and dests:  # --dest of forward, send, run, spool rebuild
        from bridge.forward.scu import Destination

        tls = tls_files(args)
        listed = []
        for text in dests:
            try:
                parsed = Destination.parse(text)
            except ValueError as exc:
                raise ConfigError(f"--dest {text!r}: {exc}") from exc
            commitment = bool(getattr(args, "commitment", False))
            listed.append(
                DestinationSettings(parsed.ae_title, parsed.host, parsed.port, (), commitment, tls)
            )
    if not file:  # only the flags that mean the same for every command
        return load_settings_from(None, env={}, flags=_only(flags, "logging."))
    return load_settings_from(getattr(args, "config", None), flags=flags, destinations=listed)


def _only(flags: dict[str, tuple[object, str]], prefix: str) -> dict[str, tuple[object, str]]:
    return {key: value for key, value in flags.items() if key.startswith(prefix)}


def tls_files(args: argparse.Namespace) -> TlsFiles | None:
    """The TLS files of ``--tls-ca``, ``--tls-cert`` and ``--tls-key`` (none: no TLS)."""
    check_hostname = bool(getattr(args, "tls_check_hostname", False))
    if getattr(args, "tls_ca", None) is None:
        if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None) or check_hostname:
            raise ConfigError("--tls-cert, --tls-key and --tls-check-hostname need --tls-ca")
        return None
    return TlsFiles(args.tls_ca, args.tls_cert, args.tls_key, check_hostname)


def open_spool(settings: Settings, *, owner: str | None = None, create: bool = False) -> Spool:
    """The spool of the settings; with ``owner``, its lock is taken first.

    Only an existing spool unless ``create`` (``spool add``, ``send``): a path that is not
    a spool is a usage error (:class:`SpoolPathError`, exit 2), and nothing is created.
    """
    return Spool(
        settings.spool.path,
        retention_days=settings.spool.retention_days,
        owner=owner,
        create=create,
    )


def tls_settings(files: TlsFiles | None) -> TlsSettings | None:
    """The forwarder's :class:`TlsSettings` of a destination's ``tls`` table."""
    from bridge.forward.scu import TlsSettings

    if files is None or files.ca_file is None:  # the loader refuses a table without ca_file
        return None
    return TlsSettings(files.ca_file, files.cert_file, files.key_file, files.check_hostname)


def build_destinations(settings: Settings, *, required: bool = True) -> list[Destination]:
    """The forwarder's destinations, made from the settings tree (the one place this is done).

    ``required``: no destination at all is a configuration error."""
    from bridge.forward.scu import Destination

    if not settings.destinations and required:
        raise ConfigError(
            "no destination: give --dest AE@HOST:PORT or [[destination]] in the config"
        )
    f = settings.forward
    out = []
    for d in settings.destinations:
        try:
            out.append(
                Destination(
                    d.ae_title,
                    d.host,
                    d.port,
                    calling_ae=f.calling_ae,
                    max_pdu=f.max_pdu,
                    connect_timeout=f.connect_timeout,
                    acse_timeout=f.acse_timeout,
                    dimse_timeout=f.dimse_timeout,
                    network_timeout=f.network_timeout,
                    idle_timeout=f.idle_timeout,
                    tls=tls_settings(d.tls),
                    commitment=d.commitment,
                    modalities=frozenset(d.modalities) if d.modalities else None,
                    tcp_tuning=f.tcp_tuning,
                    commitment_host=f.commitment_host,
                    commitment_port=f.commitment_port,
                    commitment_timeout=f.commitment_timeout,
                    commitment_callback_host=f.commitment_callback_host,
                    commitment_callback_port=f.commitment_callback_port,
                    commitment_callers=frozenset(d.commitment_callers) or None,
                )
            )
        except ValueError as exc:
            raise ConfigError(f"destination {d.name}: {exc}") from exc
    return out


def check_destinations(destinations: list[Destination], *, resolve: bool = False) -> None:
    """Fail early on settings that would only fail inside a forwarder thread (TLS files).

    ``resolve``: a host name that does not resolve is a usage error too (``send``,
    ``forward``, ``echo``: "cannot resolve HOST"); the service (``run``) does not ask, so
    a name server that is down at start-up does not stop the link."""
    from bridge.forward.status import ForwardError

    for destination in destinations:
        if destination.tls is not None:
            tls = destination.tls
            for key, flag, path in (
                ("ca_file", "--tls-ca", tls.ca_file),
                ("cert_file", "--tls-cert", tls.cert_file),
                ("key_file", "--tls-key", tls.key_file),
            ):
                if path is not None and not Path(path).is_file():
                    raise ConfigError(
                        f"destination {destination.name}: TLS settings unusable: tls.{key} {path}: "
                        f"cannot read: no such file (give an existing PEM file: {flag}, "
                        f"or {key} in its tls table)"
                    )
            try:
                tls.context()
            except ForwardError as exc:
                raise ConfigError(f"destination {destination.name}: {exc}") from exc
        if resolve:
            _resolve(destination.name, destination.host, destination.port)


def _resolve(name: str, host: str, port: int) -> None:
    """A usage error (one line) if ``host`` has no address; an IP address asks nobody."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"destination {name}: cannot resolve {host} ({exc.strerror}): "
            "check the host name, or give the IP address"
        ) from exc
    except (UnicodeError, ValueError) as exc:  # not a host name at all (an empty label)
        raise ConfigError(
            f"destination {name}: cannot resolve {host} (not a valid host name): "
            "check the host name, or give the IP address"
        ) from exc


def retry_policy(settings: Settings) -> RetryPolicy:
    """The forwarder's :class:`RetryPolicy`, made from ``[forward]``.

    A ``--backoff-cap`` below ``backoff_base`` lowers the first wait to the cap."""
    from bridge.forward.runner import RetryPolicy

    f = settings.forward
    return RetryPolicy(
        base=min(f.backoff_base, f.backoff_cap),
        cap=f.backoff_cap,
        max_attempts=f.max_attempts,
        max_lost=f.max_lost,
        give_up_after=f.give_up_after,
        hold_retry=f.hold_retry,
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, for a clean stop.

    SIGHUP (a closed terminal, or logrotate asking to reopen logs) never stops the
    service: it reopens the log file (``--log-file``, for logrotate); when logs go to
    stderr, which the supervisor owns, there is nothing to reopen: it is logged and
    ignored."""
    from bridge.cli.logs import reopen_log_file, say

    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: object) -> None:
        say(f"acrnema-bridge: {signal.Signals(signum).name}: stopping", blank=True)
        stop.set()

    def hangup(signum: int, frame: object) -> None:
        if reopen_log_file() is None:
            logging.getLogger("bridge").warning(
                "SIGHUP ignored: logs go to stderr, nothing to reopen"
            )

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in previous:
            signal.signal(sig, hangup if sig == signal.SIGHUP else handler)
    try:
        yield stop
    finally:
        if in_main:
            for sig, old in previous.items():
                signal.signal(sig, old)


def status_option(parser: argparse.ArgumentParser) -> None:
    """``--status-listen``: the flag of ``[status] listen`` (``run``, ``forward``)."""
    parser.add_argument(
        "--status-listen",
        metavar="HOST:PORT",
        help="serve the status page /, /metrics (Prometheus) and /healthz on HOST:PORT, e.g. "
        "127.0.0.1:8104 "
        "(default: [status] listen of the config, else no status server); an address outside "
        "loopback needs credentials and TLS from [status] (docs/operations.md)",
    )


@contextmanager
def status_served(settings: Settings, make: Callable[[], StatusParts]) -> Iterator[None]:
    """While the block runs, the status server of ``[status]``, if ``listen`` is set.

    ``make`` returns the probe and the registry (called only when the server is on); a
    server that cannot start is a usage error (exit 2, one line)."""
    if not settings.status.listen:
        yield
        return
    from bridge.status.server import status_server

    probe, registry = make()
    server = status_server(settings.status, probe, registry)
    server.start()
    logging.getLogger("bridge.cli").warning("status server on %s", server.url)
    try:
        yield
    finally:
        server.stop()


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` (to ``high``); anything else is a
    usage error naming the value and the range (exit 2, one line)."""
    wanted = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: give {wanted}")
        return value

    return convert


def seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds above 0 (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def days(text: str) -> float:
    """An argparse ``type``: a number of days, 0 or more (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days, 0 or more")
    return value

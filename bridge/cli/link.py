"""The link commands of ``acrnema-bridge``: ``run`` (the service) and ``emulate``.

Part of the command line (see :mod:`bridge.cli`). ``run`` is :class:`bridge.service.Bridge`
on a port; ``emulate`` plays the other end of the link (a scanner sending images, or a
receiver writing what it gets) with optional fault injection. Both take the link
profile from ``--profile FILE`` (default: the built-in reference profile).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli.common import (
    forward_options,
    link_options,
    seconds,
    spool_option,
    status_option,
    status_served,
    stop_on_signals,
    whole,
)
from bridge.cli.logs import say
from bridge.errors import ConfigError
from bridge.settings import Settings

if TYPE_CHECKING:
    from bridge.cli.common import StatusParts
    from bridge.link.requester import Scanner
    from bridge.ports.base import WordPort
    from bridge.profile import Profile

__all__ = ["add_commands"]

log = logging.getLogger("bridge.cli")


def _gpio_note() -> str:
    from bridge.ports.ftdi_gpio import RATE_NOTE

    return RATE_NOTE.rstrip(". ")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` and ``emulate`` to the subparsers ``sub``."""

    run = sub.add_parser(
        "run",
        help="the service: receive over the link, convert, spool, forward to DICOM",
        description=(
            "Receive images over the ACR-NEMA link on --port (or the config's [link] port, so "
            "that a settings file alone can configure the service), convert each to DICOM, store "
            "it durably in the spool, and only then answer the scanner with success; forward the "
            "spool to every --dest (or the config's destinations). An image that cannot be "
            "converted or spooled is answered with a failure status, so the scanner keeps it. "
            "SIGTERM or Ctrl-C stops cleanly: a message still arriving is finished or refused, "
            "never half-stored (exit status 0). If forwarding fails for good, the service stops "
            "taking images and exits with status 1, for its supervisor to restart it. Under "
            "systemd (Type=notify, $NOTIFY_SOCKET) it reports READY=1 once the port is open "
            "and the spool recovered, STATUS= lines, STOPPING=1, and pings the watchdog "
            "($WATCHDOG_USEC) only while its workers are healthy (docs/operations.md). Logs go to "
            "stderr, or to --log-file (SIGHUP reopens it); each image's INFO lines name its SOP "
            "Instance UID, from the link to each destination; no patient data is logged above "
            "DEBUG (-vv). Port URLs: loop://NAME, "
            "tcp://HOST:PORT, tcp-listen://HOST:PORT, serial://DEVICE, rs485://DEVICE, "
            "ftdi://DEVICE (FTDI UART), spy+URL (docs/ports.md); the interface box: "
            "box+serial:///dev/ttyACM0 (or box+rs485://, box+ftdi://, box+tcp://), configured "
            "from --profile; when the box goes away the link is down and the box is reopened "
            "every 0.2 s (docs/box-protocol.md). " + _gpio_note() + "."
        ),
    )
    link_options(run)
    spool_option(run)
    forward_options(run, required=False)
    status_option(run)
    run.set_defaults(handler=_run_command, reads_settings=True, auto_level=logging.INFO)

    emu = sub.add_parser(
        "emulate",
        help="play a scanner or a receiver on the other end of the link",
        description=(
            "Emulate the equipment on the other end of the link. --role scanner (default) "
            "sends each image as a store request and waits for each response; an image that "
            "fails is resent up to --attempts times and each failure is reported; exit status "
            "0 only when every image was stored with success. Images come from --images "
            "(ACR-NEMA files or folders of them, either byte order) or --phantom N (generated "
            "CT/MR slices with ACR-NEMA 2.0 headers). --role receiver accepts store requests "
            "and writes what arrives, as ACR-NEMA files, to --out. --faults injects faults on "
            "this end's port, in both directions: a comma-separated list of flip=RATE (a bit "
            "flipped per word), drop=RATE (words lost), stall=SECONDS (this side stops "
            "answering once, after at=WORDS words), disconnect=AFTER_WORDS (the link breaks "
            "once), seed=N; for example --faults flip=1e-4,seed=7, which opens the same port "
            "as --port faults+URL?flip=1e-4&seed=7."
        ),
    )
    emu.add_argument("--port", required=True, metavar="URL", help="the link port")
    emu.add_argument("--role", choices=["scanner", "receiver"], default="scanner")
    source = emu.add_mutually_exclusive_group()
    source.add_argument("--images", nargs="+", type=Path, metavar="PATH", help="images to send")
    source.add_argument("--phantom", type=whole(1), metavar="N", help="send N generated slices")
    emu.add_argument("--modality", choices=["CT", "MR"], default="CT", help="phantom modality")
    emu.add_argument(
        "--size", type=whole(1, 4096), default=512, help="phantom matrix size, 1 to 4096 (512)"
    )
    emu.add_argument("--faults", metavar="SPEC", help="fault injection (see above)")
    emu.add_argument(
        "--profile", type=Path, metavar="FILE", help="link profile (default: the reference)"
    )
    emu.add_argument("--attempts", type=whole(1), default=3, help="tries per image (default 3)")
    emu.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        help="scanner: seconds to wait for each response; receiver with --count: seconds to "
        "wait for a scanner that went away to come back before giving up, exit status 1 "
        "(default 60)",
    )
    emu.add_argument("--ae-title", default="SCANNER", help="our logical address")
    emu.add_argument("--called", default="ACRNEMA_BRIDGE", help="the other end's address")
    emu.add_argument("--out", type=Path, metavar="DIR", help="receiver: where to write images")
    emu.add_argument(
        "--count", type=whole(1), metavar="N", help="receiver: stop after N images (default: never)"
    )
    emu.add_argument(
        "--cancel",
        action="store_true",
        help="scanner: send a CANCEL before the images, as the 1993 Philips scanner did, and "
        "say how it was answered (application.cancel_answer; the link goes on either way)",
    )
    emu.add_argument(
        "--vcd",
        type=Path,
        metavar="OUT",
        help="also write the bus as this end saw it, both directions, as a Value Change Dump "
        "(as 'trace export' does; the scanner is side A, the receiver side B); with --faults, "
        "the words as the wire carried them, damaged ones with their receiver's PERR",
    )
    emu.set_defaults(handler=_emulate_command)


def _open(url: str, faults: str | None = None, profile: Profile | None = None) -> WordPort:
    """The port of ``url`` with ``--faults`` applied, which is ``url`` under the ``faults+``
    prefix with the spec's items (one path to the port); ``profile`` (--profile) goes to
    the ports that are configured from one (``box+``, ``ftdi-gpio://``), the others ignore
    it."""
    from bridge.ports import open_port
    from bridge.ports.faults import faults_url

    return open_port(faults_url(url, faults) if faults else url, profile=profile)


def _run_command(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.profile import load_profile

    if settings.link.port is None:
        raise ConfigError("run: no link port: give --port URL or [link] port in the config")
    return _run(settings, load_profile(settings.link.profile))


def _emulate_command(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.profile import load_profile

    return _emulate(args, load_profile(args.profile))


def _run(settings: Settings, profile: Profile) -> int:
    from bridge.cli.common import build_destinations, check_destinations, retry_policy
    from bridge.ports.registry import check_url
    from bridge.sdnotify import Notifier, Watchdog
    from bridge.service import Bridge
    from bridge.spool.store import Spool, SpoolPathError

    url = settings.link.port
    assert url is not None  # _run_command checked it
    check_url(url)  # scheme, options and values: a usage error before the spool is touched
    destinations = build_destinations(settings, required=False)
    check_destinations(destinations)
    spool_path = settings.spool.path
    policy = retry_policy(settings)
    # the owner lock first: a second owner is refused before the port is opened. A spool
    # is created only at a path the operator gave (--spool, [spool] path, $BRIDGE_SPOOL),
    # never at the default ./spool of whatever folder the service happened to start in
    told = settings.origin("spool.path") != "default"
    try:
        spool = Spool(
            spool_path,
            retention_days=settings.spool.retention_days,
            owner="acrnema-bridge run",
            create=told,
        )
    except SpoolPathError as exc:
        if told:
            raise
        raise SpoolPathError(f"{exc}; run creates a new spool only at a path it is given") from None
    if not destinations:
        from bridge.forward.runner import warn_unserved

        log.warning("no destination: images are spooled, not forwarded (give --dest)")
        warn_unserved(spool, [])  # with destinations, the forwarder warns as it starts
    # the signal handlers go in before the port opens: a SIGTERM once the port listens
    # (a supervisor, a test) is a clean stop, never the default kill
    with stop_on_signals() as stop:
        port = _open(url, profile=profile if settings.link.profile is not None else None)
        metrics = None
        if settings.status.listen:  # counted only for a status server
            from bridge.status.metrics import LinkMetrics, new_registry

            metrics = LinkMetrics(new_registry())
        bridge = Bridge(
            port,
            spool,
            destinations,
            profile=profile,
            ae_title=settings.link.ae_title,
            policy=policy,
            accept_repairs=settings.link.accept_repairs,
            accepted_peers=settings.link.accepted_peers,
            metrics=metrics,
        )

        def status_parts() -> StatusParts:
            from bridge.status.probe import Probe

            probe = Probe(
                spool,
                forwarder=bridge.forwarder if destinations else None,
                endpoint=bridge.endpoint,
                link_serving=bridge.serving.is_set,
            )
            return probe, None if metrics is None else metrics.registry

        log.info("serving the link on %s; spool %s", url, spool.root)
        notifier = Notifier.from_environment()  # systemd's Type=notify; nothing without it
        stale = notifier.watchdog or 60.0
        serving = (
            f"serving the link on {url}; spool {spool.root}; "
            f"forwarding to {len(destinations)} destination(s)"
        )
        try:
            with status_served(settings, status_parts):
                watchdog = Watchdog(notifier, stop, lambda: bridge.problem(stale_after=stale))
                try:
                    bridge.run(stop, ready=lambda: watchdog.ready(serving))
                finally:
                    watchdog.close()
        finally:
            port.close()
            spool.close()
            notifier.close()
    s = bridge.stats
    say(
        f"run: {s.images} images stored ({s.objects} objects), {s.failed} refused, "
        f"{bridge.responder.stats.lost} lost in transit; spool {spool_path}"
    )
    if bridge.failure is not None:
        say(f"acrnema-bridge: run stopped: {bridge.failure}", level=logging.ERROR)
        return 1
    return 0


def _emulate(args: argparse.Namespace, profile: Profile) -> int:
    from bridge.errors import ConversionError
    from bridge.link.endpoint import Endpoint
    from bridge.link.requester import Image, ImageResult, Scanner, load_images
    from bridge.profile import Profile
    from bridge.testing.phantom import phantom_images

    assert isinstance(profile, Profile)
    order = profile.physical.binary_byte_order
    if order == "auto":  # a sender has nothing to detect from: the stack sends big
        order = "big"
    if args.role == "receiver":
        if args.out is None:
            raise ConfigError("--role receiver needs --out DIR")
        return _receive(args, profile)
    images: list[Image] = []
    unreadable = 0
    if args.images:
        for item in load_images(args.images, byte_order=order):
            if isinstance(item, ConversionError):
                unreadable += 1
                say(f"emulate: skipped {item}", level=logging.WARNING)
            else:
                images.append(item)
    else:
        images = phantom_images(
            args.phantom or 10, modality=args.modality, rows=args.size, byte_order=order
        )
    if not images:
        say("emulate: no images to send", level=logging.ERROR)
        return 1
    port = _open(args.port, args.faults, profile if args.profile is not None else None)
    port = _vcd_port(args, port)
    endpoint = Endpoint(port, profile)
    scanner = Scanner(
        endpoint,
        calling=args.ae_title,
        called=args.called,
        attempts=args.attempts,
        response_timeout=args.timeout,
    )
    total = len(images)
    done = [0]

    def progress(r: ImageResult) -> None:
        done[0] += 1
        state = "stored" if r.ok else "FAILED"
        say(
            f"[{done[0]}/{total}] {r.name}: {state} after {r.attempts} attempt(s), "
            f"{r.seconds:.2f} s",
            level=logging.INFO if r.ok else logging.ERROR,
        )
        for error in r.errors:
            say(f"    {error}", level=logging.WARNING)

    start = time.monotonic()
    try:
        if args.cancel:
            _cancel(scanner, profile, args.timeout)
        results = scanner.send(images, progress)
        scanner.close()
    finally:
        port.close()
        _vcd_done(args, profile, "A")
    elapsed = time.monotonic() - start
    ok = sum(r.ok for r in results)
    sent = sum(r.size for r in results if r.ok)
    say(
        f"emulate: {ok} of {total} images stored, {total - ok} failed, {unreadable} unreadable; "
        f"{sent / 1e6:.1f} MB in {elapsed:.2f} s ({sent / max(elapsed, 1e-9) / 1e6:.2f} MB/s); "
        f"link resets {endpoint.resets}"
    )
    stats = getattr(port, "stats", None)
    if stats:
        say(f"emulate: faults injected: {stats}")
    return 0 if ok == total and not unreadable else 1


def _receive(args: argparse.Namespace, profile: Profile) -> int:
    from bridge.link.endpoint import Endpoint
    from bridge.link.receiver import FolderWriter
    from bridge.link.responder import Responder
    from bridge.profile import Profile

    assert isinstance(profile, Profile)
    port = _open(args.port, args.faults, profile if args.profile is not None else None)
    port = _vcd_port(args, port)
    writer = FolderWriter(args.out)
    responder = Responder(Endpoint(port, profile), writer, ae_title=args.ae_title)
    limit = args.count
    endpoint = responder.endpoint
    seen = [False]  # the scanner has been READY at least once

    def gone() -> bool:
        """With --count: the scanner came, went, and stayed away --timeout seconds (on
        loop:// it can never come back; elsewhere it gave up): waiting on is a hang."""
        seen[0] = seen[0] or endpoint.up
        return (
            limit is not None
            and seen[0]
            and not endpoint.up
            and time.monotonic() - endpoint.up_changed > args.timeout
        )

    def enough() -> bool:
        return (limit is not None and writer.count >= limit) or gone()

    try:
        with stop_on_signals() as stop:
            responder.serve(stop, until=enough)
    finally:
        port.close()
        _vcd_done(args, profile, "B")
    say(f"emulate: received {writer.count} images into {args.out}")
    if limit is not None and writer.count < limit:
        say(
            f"emulate: received {writer.count} of {limit} images: the scanner has been gone "
            f"for more than {args.timeout:g} s (--timeout)",
            level=logging.ERROR,
        )
        return 1
    return 0


def _cancel(scanner: Scanner, profile: Profile, timeout: float) -> None:
    """``emulate --cancel``: one CANCEL, and what answered it."""
    if profile.application.cancel_answer == "none":
        scanner.cancel(timeout=min(timeout, 2.0))
        say("emulate: CANCEL sent; no answer, as the profile says")
        return
    status = scanner.cancel(timeout=timeout)
    if status is None:
        say(f"emulate: CANCEL sent; no answer within {timeout:g} s", level=logging.WARNING)
        return
    name = scanner.table.status_name(status)
    say(f"emulate: CANCEL answered with status {status:04X}H ({name})")


def _vcd_trace(args: argparse.Namespace) -> Path:
    vcd: Path = args.vcd
    return vcd.with_name(vcd.name + ".trace")


def _vcd_port(args: argparse.Namespace, port: WordPort) -> WordPort:
    """``--vcd``: the port, traced to a file next to the VCD (made into it at the end).

    The VCD is the bus, so with fault injection (``--faults``, ``faults+``) both ways are
    traced on the wire's side of the faults: words received as they arrive, damaged, and
    words sent as they leave the fault layer, damaged too (their receiver answers those
    with PERR), not as this end meant them."""
    if args.vcd is None:
        return port
    from bridge.ports.faults import FaultyPort
    from bridge.ports.spy import SentTap, SpyPort

    try:
        spy = SpyPort(port, _vcd_trace(args), sent=not isinstance(port, FaultyPort))
    except BaseException:
        port.close()
        raise
    if isinstance(port, FaultyPort):
        port.port = SentTap(port.port, spy.trace)
    return spy


def _vcd_done(args: argparse.Namespace, profile: Profile, side: str) -> None:
    """``--vcd``: the trace of this run written as the VCD, the trace removed."""
    if args.vcd is None:
        return
    from bridge.capture.trace import export_vcd

    trace = _vcd_trace(args)
    try:
        export_vcd(trace, args.vcd, profile, side)
    finally:
        trace.unlink(missing_ok=True)
    say(f"emulate: the bus written to {args.vcd}")

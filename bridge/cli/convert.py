"""The file commands of ``acrnema-bridge``: ``convert``, ``dump`` and ``demo``.

Part of the command line (:mod:`bridge.cli`): :func:`add_commands` adds ``convert`` and
``dump``, :func:`add_demo` adds ``demo``, each with its handler.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from bridge.acrnema.elements import MAX_ELEMENTS, MAX_VALUES, ByteOrder
from bridge.batch import (
    INDEX_DIR,
    ConvertStatus,
    ReportEntry,
    StopRequest,
    iter_inputs,
    prepare_folder,
    run_batch,
    write_dicomdir,
)
from bridge.cluster import check_cluster_url
from bridge.dicom.core import (
    MAX_FRAMES,
    MAX_OUTPUT_BYTES,
    MAX_PIXEL_BYTES,
    MIB,
    ConvertOptions,
    PatientIdPolicy,
)
from bridge.dicom.deid import Deidentification, DeidOption, burned_in_modality
from bridge.errors import BridgeError, ConfigError
from bridge.previews import Failure, write_previews
from bridge.settings import Settings

__all__ = ["add_commands", "add_demo"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``convert`` and ``dump`` to the subparsers ``sub``."""
    conv = sub.add_parser(
        "convert",
        help="convert ACR-NEMA files and headerless data sets to DICOM Part 10",
        description=(
            "Convert ACR-NEMA 1.0/2.0 files, headerless DICOM data sets and Part 10 files into "
            "valid DICOM Part 10 files (explicit VR little endian), written to OUT as "
            "patient/study/series/instance. Folders are walked recursively; files that are not "
            "data sets are reported as skipped. A re-run skips inputs already converted. "
            "A worker process that dies is replaced and its inputs are tried once more. When "
            "OUT is full the batch stops, writes the report and DICOMDIR for what was done, "
            "and reports the rest as pending: run the same command again after freeing space. "
            "SIGINT (Ctrl-C) or SIGTERM stops it the same way: the inputs being converted "
            "finish, the worker processes exit, the report and DICOMDIR are written, the "
            "rest is pending. An OUT (or report folder) that cannot be written is refused "
            "before any work. "
            "Exit status: 0 when every input converted or was skipped, 1 when any failed or "
            "is pending, 2 on a usage error, 130 after SIGINT, 143 after SIGTERM."
        ),
    )
    conv.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or folder")
    conv.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    conv.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="parallel worker processes (default: number of cores, %(default)s here)",
    )
    conv.add_argument(
        "--cluster",
        metavar="URL",
        help="convert on the Dask cluster whose scheduler is at URL (tcp://HOST:PORT) instead "
        "of --jobs local processes; inputs and OUT must be on a file system every worker sees "
        "under the same paths (docs/archival.md, 'A batch on a cluster')",
    )
    conv.add_argument(
        "--dicomdir", action="store_true", help="write OUT/DICOMDIR indexing the output"
    )
    conv.add_argument(
        "--report", type=Path, metavar="FILE", help="write a JSON report, one object per input"
    )
    conv.add_argument(
        "--previews",
        action="store_true",
        help="write OUT/index.html: patients, studies and series with a thumbnail each, "
        "counts, and the inputs that failed (docs/archival.md, 'Previews')",
    )
    conv.add_argument(
        "--byte-order",
        choices=[b.value for b in ByteOrder],
        default="auto",
        help="byte order of the inputs (default: detect per file)",
    )
    conv.add_argument(
        "--overwrite", action="store_true", help="convert again inputs whose output exists"
    )
    conv.add_argument(
        "--patient-id",
        choices=[p.value for p in PatientIdPolicy],
        default="study",
        help=(
            "how to generate a missing Patient ID: from name, birth date and study (default; "
            "never merges two studies' patients), from name and birth date, from the file, "
            "or not at all"
        ),
    )
    conv.add_argument(
        "--strict",
        action="store_true",
        help="refuse, as run does, an input whose image would change (pixel data longer than "
        "the image, an unusual Bits Allocated...): it fails with the reason; default: convert "
        "it repaired, each repair in the report and on stderr (docs/conversion.md, 'Repairs')",
    )
    conv.add_argument("--quiet", action="store_true", help="no progress and no summary")
    conv.set_defaults(handler=_convert)
    limits = conv.add_argument_group(
        "limits",
        "What one input may cost; an input beyond a limit fails with the limit named "
        "(docs/conversion.md, 'Limits'). Raise one only for a file known to need it.",
    )
    limits.add_argument(
        "--max-frames",
        type=int,
        default=MAX_FRAMES,
        metavar="N",
        help="frames (planes) per input; each plane is one output file (default %(default)s)",
    )
    limits.add_argument(
        "--max-pixel-mb",
        type=int,
        default=MAX_PIXEL_BYTES // MIB,
        metavar="MB",
        help="decoded pixel data per input, in MiB (default %(default)s)",
    )
    limits.add_argument(
        "--max-output-mb",
        type=int,
        default=MAX_OUTPUT_BYTES // MIB,
        metavar="MB",
        help="output per input, in MiB; also the largest input read (default %(default)s)",
    )
    limits.add_argument(
        "--max-elements",
        type=int,
        default=MAX_ELEMENTS,
        metavar="N",
        help="data elements per input, items of sequences included (default %(default)s)",
    )
    limits.add_argument(
        "--max-values",
        type=int,
        default=MAX_VALUES,
        metavar="N",
        help="values of all elements of one input (default %(default)s)",
    )
    deid = conv.add_argument_group(
        "de-identification",
        "Publish-ready copies (docs/archival.md, 'Publishing: de-identification'): the "
        "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile. UIDs become "
        "keyed hashes of the originals, the patient a keyed pseudonym, so the same key "
        "keeps studies together across batches and runs; private groups are removed; "
        "Patient Identity Removed is YES with the method codes. Pixels are not cleaned: "
        "a WARNING names the modalities that may show burned-in names. Use an OUT of its "
        "own: one converted without --deidentify, or with another key, is refused.",
    )
    deid.add_argument(
        "--deidentify", action="store_true", help="de-identify every output (needs --deid-key)"
    )
    deid.add_argument(
        "--deid-option",
        action="extend",
        nargs="+",
        default=[],
        choices=[o.value for o in DeidOption],
        metavar="NAME",
        help="PS3.15 E.3 options to add: longitudinal-modified-dates (dates move back by "
        "one keyed offset per patient), longitudinal-full-dates, patient-characteristics "
        "(sex, age, size, weight), clean-descriptors (descriptions kept, identifying "
        "values and dates in them removed), device-identity (station, serial numbers)",
    )
    deid.add_argument(
        "--deid-key",
        type=Path,
        metavar="FILE",
        help="file whose bytes are the secret key (e.g. head -c 32 /dev/urandom > FILE); "
        "keep it to convert more of the collection consistently, never publish it",
    )

    dump = sub.add_parser(
        "dump",
        help="print the elements of ACR-NEMA or DICOM files",
        description=(
            "Print every element (tag, VR, length, name, value) of ACR-NEMA 1.0/2.0 files, "
            "headerless data sets of any byte order and Part 10 files, like dcmdump."
        ),
    )
    dump.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    dump.add_argument("--byte-order", choices=[b.value for b in ByteOrder], default="auto")
    dump.add_argument(
        "--width", type=int, default=64, help="longest value shown (default %(default)s)"
    )
    dump.set_defaults(handler=_dump)


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the subparsers ``sub``."""
    demo = sub.add_parser(
        "demo",
        help="run the main job on embedded defaults",
        description=(
            "The main job, end to end, on embedded defaults: an emulated scanner sends a "
            "phantom study of ACR-NEMA 2.0 CT slices over the reference link (loop://), "
            "`acrnema-bridge run` receives, converts and spools each image and forwards it "
            "to an embedded DICOM store (a pynetdicom Storage SCP on 127.0.0.1), and the "
            "received objects are checked pixel by pixel against the source. --archive runs "
            "the archive job instead: a study written as ACR-NEMA files in both byte orders, "
            "converted to DICOM with a DICOMDIR and validated with dciodvfy."
        ),
    )
    demo.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="work folder (default %(default)s)"
    )
    demo.add_argument(
        "--slices", type=int, default=24, help="number of slices (default %(default)s)"
    )
    demo.add_argument("--archive", action="store_true", help="the archive conversion demo")
    demo.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the status page up this long after the summary (default %(default)s: the "
        "demo ends at once; its URL is printed at the start)",
    )
    demo.set_defaults(handler=_demo_command)


def _demo_command(args: argparse.Namespace, settings: Settings) -> int:
    return _demo(args) if args.archive else _demo_link(args)


class _Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.counts = dict.fromkeys(ConvertStatus, 0)
        self.start = time.monotonic()

    def __call__(self, entry: ReportEntry, done: int, total: int) -> None:
        self.counts[entry.status] += 1
        if entry.status is ConvertStatus.FAILED:
            self._clear()
            print(f"failed: {entry.error}", file=self.stream)
        for repair in entry.repairs if entry.status == "converted" else ():
            if repair.changes_pixels:  # the archive holds another image than the source
                self._clear()
                print(f"repaired: {entry.source}: {repair.reason}", file=self.stream)
        if self.enabled:
            rate = done / max(time.monotonic() - self.start, 1e-6)
            c = self.counts
            self.stream.write(
                f"\r[{done}/{total}] converted {c[ConvertStatus.CONVERTED]}, "
                f"skipped {c[ConvertStatus.SKIPPED]}, failed {c[ConvertStatus.FAILED]}  "
                f"{rate:.1f} files/s "
            )
            self.stream.flush()

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _convert(args: argparse.Namespace, settings: Settings) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    problem = None
    flags = ("jobs", "max_frames", "max_pixel_mb", "max_output_mb", "max_elements", "max_values")
    small = [f"--{name.replace('_', '-')}" for name in flags if getattr(args, name) < 1]
    if small:
        problem = f"{small[0]} must be at least 1"
    elif missing:
        problem = f"no such file or folder: {', '.join(missing)}"
    elif args.cluster is not None:
        try:
            check_cluster_url(args.cluster)
        except ConfigError as exc:
            problem = str(exc)
    deidentification = None
    if not problem:
        try:
            deidentification = _deidentification(args)
            prepare_folder(args.out)
            if args.report:
                prepare_folder(args.report.parent, "folder of the report")
            _claim_for_deidentification(args.out, deidentification)
        except ConfigError as exc:
            problem = str(exc)
    if problem:
        print(f"acrnema-bridge convert: error: {problem}", file=sys.stderr)
        return 2
    options = ConvertOptions(
        byte_order=ByteOrder(args.byte_order),
        patient_id=PatientIdPolicy(args.patient_id),
        max_frames=args.max_frames,
        max_pixel_bytes=args.max_pixel_mb * MIB,
        max_output_bytes=args.max_output_mb * MIB,
        max_elements=args.max_elements,
        max_values=args.max_values,
        accept_repairs=not args.strict,
        deidentify=deidentification,
    )
    progress = _Progress(sys.stderr, not args.quiet)
    started = time.monotonic()
    with _stop_on_signals() as stop:
        inputs = list(iter_inputs(args.paths, exclude=args.out))
        try:
            entries = run_batch(
                inputs,
                args.out,
                options=options,
                jobs=args.jobs,
                overwrite=args.overwrite,
                progress=progress,
                stop=stop,
                cluster=args.cluster,
            )
        except ConfigError as exc:  # the cluster cannot be reached or cannot write OUT
            print(f"acrnema-bridge convert: error: {exc}", file=sys.stderr)
            return 2
        progress.finish()
        status = _finish(args, entries, stop, time.monotonic() - started)
    return 128 + stop.signum if stop.signum is not None else status


_DEID_MARK = INDEX_DIR.parent / "deidentification.json"


def _deidentification(args: argparse.Namespace) -> Deidentification | None:
    """The de-identification the flags ask for; a :class:`ConfigError` for a usage error."""
    if not args.deidentify:
        if args.deid_key or args.deid_option:
            raise ConfigError("--deid-key and --deid-option need --deidentify")
        return None
    if args.deid_key is None:
        raise ConfigError("--deidentify needs --deid-key FILE (the secret key)")
    try:
        key = args.deid_key.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the key file {args.deid_key}: {exc.strerror or exc}"
        ) from exc
    if not key:
        raise ConfigError(f"the key file {args.deid_key} is empty")
    try:
        return Deidentification(key, frozenset(DeidOption(o) for o in args.deid_option))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _claim_for_deidentification(out: Path, deid: Deidentification | None) -> None:
    """Keep de-identified and identified outputs, or two keys, out of one folder.

    A re-run skips inputs already converted, whatever the flags: without this a tree
    converted without --deidentify would be "skipped" into a tree believed de-identified.
    The mark holds a keyed fingerprint, never the key."""
    mark = out / _DEID_MARK
    wanted = None
    if deid is not None:
        options = sorted(o.value for o in deid.options)
        wanted = {"fingerprint": deid.digest("fingerprint", "").hex()[:32], "options": options}
    try:
        found = json.loads(mark.read_text()) if mark.exists() else None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {mark}: {exc}") from exc
    converted = any((out / INDEX_DIR).glob("*.json")) or any(out.glob("PT*"))
    if found is None and wanted is not None and converted:
        raise ConfigError(
            f"{out} holds outputs converted without --deidentify; use an empty output folder"
        )
    if found is not None and found != wanted:
        what = "without --deidentify" if wanted is None else "with another key or options"
        raise ConfigError(
            f"{out} holds de-identified outputs made otherwise; converting {what} "
            "needs an output folder of its own"
        )
    if wanted is not None and found is None:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(json.dumps(wanted) + "\n")


@contextmanager
def _stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask the batch to stop; it stops cleanly (:class:`StopRequest`).

    The handlers stay while the report and DICOMDIR are written, so a second signal does
    not cut them short."""
    with StopRequest() as stop:
        if threading.current_thread() is not threading.main_thread():
            yield stop  # signal handlers belong to the main thread: nothing to install
            return
        previous = {
            sig: signal.signal(sig, lambda signum, frame: stop.request(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield stop
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _finish(
    args: argparse.Namespace, entries: list[ReportEntry], stop: StopRequest, elapsed: float
) -> int:
    """Say how the batch went, write the report and DICOMDIR; the exit status."""
    counts = dict.fromkeys(ConvertStatus, 0)
    for entry in entries:
        counts[entry.status] += 1
    pending = counts[ConvertStatus.PENDING]
    status = 1 if counts[ConvertStatus.FAILED] or pending else 0
    if any(e.no_space for e in entries):
        # one line for the whole batch: the inputs are not at fault
        print(
            f"acrnema-bridge convert: no space left on {args.out}: stopped, "
            f"{pending} input{'' if pending == 1 else 's'} not converted; "
            "free space and run the same command again to convert them",
            file=sys.stderr,
        )
    if stop.requested:
        print(
            f"acrnema-bridge convert: stopped by {stop.reason}: "
            f"{pending} input{'' if pending == 1 else 's'} not converted; "
            "run the same command again to convert them",
            file=sys.stderr,
        )
    burned = sorted(
        {m for e in entries for w in e.warnings if (m := burned_in_modality(w)) is not None}
    )
    if burned:  # one line for the batch: every such input is in the report
        print(
            f"WARNING: de-identified objects of modality {', '.join(burned)} may show the "
            "patient's name or other identifying text burned into the pixels; the profile "
            "does not clean pixels: look at them before publishing",
            file=sys.stderr,
        )
    if args.report:
        try:
            _write_json(args.report, [e.to_json() for e in entries])
        except OSError as exc:
            print(
                f"acrnema-bridge convert: {_not_written(exc, 'report', args.report)}",
                file=sys.stderr,
            )
            status = 1
    if args.dicomdir:
        try:
            count, left_out = write_dicomdir(args.out)
        except OSError as exc:
            print(
                f"acrnema-bridge convert: {_not_written(exc, 'DICOMDIR', args.out / 'DICOMDIR')}",
                file=sys.stderr,
            )
            status = 1
        else:
            for reason in left_out:
                print(f"not in DICOMDIR: {reason}", file=sys.stderr)
            if not args.quiet:
                print(f"DICOMDIR: {args.out / 'DICOMDIR'} ({count} instances)", file=sys.stderr)
    if args.previews:
        status = _write_previews(args, entries) or status
    if not args.quiet:
        outputs = sum(len(e.outputs) for e in entries if e.status is ConvertStatus.CONVERTED)
        c = counts
        print(
            f"{len(entries)} inputs: {c[ConvertStatus.CONVERTED]} converted ({outputs} DICOM "
            f"files), {c[ConvertStatus.SKIPPED]} skipped, {c[ConvertStatus.FAILED]} failed"
            f"{f', {pending} pending' if pending else ''} "
            f"in {elapsed:.1f} s -> {args.out}",
            file=sys.stderr,
        )
    return status


def _write_previews(args: argparse.Namespace, entries: list[ReportEntry]) -> int:
    """Write OUT/index.html (:mod:`bridge.previews`); 1 if it could not be written."""
    failures = [
        Failure(e.source, e.status.value, e.error or "")
        for e in entries
        if e.status in (ConvertStatus.FAILED, ConvertStatus.PENDING)
    ]
    try:
        index, drawn, problems = write_previews(args.out, failures)
    except OSError as exc:
        print(
            f"acrnema-bridge convert: {_not_written(exc, 'previews', args.out / 'index.html')}",
            file=sys.stderr,
        )
        return 1
    for problem in problems:
        print(f"preview: {problem}", file=sys.stderr)
    if not args.quiet:
        print(f"previews: {index} ({drawn} series)", file=sys.stderr)
    return 0


def _not_written(exc: OSError, what: str, path: Path) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left for the {what} {path}: not written"
    return f"cannot write the {what} {path}: {exc.strerror or exc}: not written"


def _write_json(path: Path, payload: object) -> None:
    """Write ``path`` whole or not at all (no temporary file is left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fp:
            json.dump(payload, fp, indent=2)
            fp.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.acrnema.dump import dump_file

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:  # a usage error, before anything is printed
        print(f"acrnema-bridge dump: error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    status = 0
    for path in args.paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"acrnema-bridge dump: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        try:
            for line in dump_file(
                data, source=str(path), byte_order=ByteOrder(args.byte_order), width=args.width
            ):
                print(line)
        except BridgeError as exc:
            print(f"acrnema-bridge dump: {exc}", file=sys.stderr)
            status = 1
        except BrokenPipeError:
            return status
    return status


def _demo_link(args: argparse.Namespace) -> int:
    import numpy as np
    import pydicom

    from bridge.forward.scu import Destination
    from bridge.link.endpoint import Endpoint
    from bridge.link.requester import ImageResult, Scanner
    from bridge.ports.loop import loop_pair
    from bridge.service import Bridge
    from bridge.settings import StatusSettings
    from bridge.spool.store import Spool
    from bridge.status.metrics import LinkMetrics, new_registry
    from bridge.status.probe import Probe
    from bridge.status.server import status_server
    from bridge.testing.phantom import PhantomSpec, phantom_images, phantom_pixels
    from bridge.testing.store_scp import EmbeddedStore

    out: Path = args.out
    spool_dir, pacs_dir = out / "spool", out / "pacs"
    for folder in (spool_dir, pacs_dir):
        if folder.exists():
            shutil.rmtree(folder)
    count = args.slices
    print(f"1. Embedded DICOM store (pynetdicom Storage SCP) writing to {pacs_dir}/")
    with EmbeddedStore(pacs_dir) as store:
        print(f"   listening as {store.address}")
        scanner_end, bridge_end = loop_pair("demo")
        spool = Spool(spool_dir, retention_days=1)  # files kept a day: the page's thumbnails
        metrics = LinkMetrics(new_registry())
        bridge = Bridge(bridge_end, spool, [Destination.parse(store.address)], metrics=metrics)
        stop = threading.Event()
        service = threading.Thread(target=bridge.run, args=(stop,), name="bridge")
        print(
            f"2. acrnema-bridge run --port loop://demo --dest {store.address} --spool {spool_dir}"
            " --status-listen 127.0.0.1:0"
        )
        probe = Probe(
            spool,
            forwarder=bridge.forwarder,
            endpoint=bridge.endpoint,
            link_serving=bridge.serving.is_set,
        )
        status = status_server(StatusSettings(listen="127.0.0.1:0"), probe, metrics.registry)
        status.start()
        print(f"   status page: {status.url}/ (metrics {status.url}/metrics)")
        service.start()
        print(f"3. acrnema-bridge emulate --port loop://demo --phantom {count}")
        images = phantom_images(count)
        scanner = Scanner(Endpoint(scanner_end))

        def progress(r: ImageResult) -> None:
            state = "stored" if r.ok else "FAILED: " + "; ".join(r.errors)
            print(f"   {r.name}: {state} ({r.seconds * 1000:.0f} ms)")

        start = time.monotonic()
        try:
            results = scanner.send(images, progress)
            link_seconds = time.monotonic() - start
            scanner.close()
            arrived = store.wait_for(sum(r.ok for r in results), timeout=60)
            elapsed = time.monotonic() - start
            if args.linger > 0:
                print(f"   all sent; the status page stays up {args.linger:g} s: {status.url}/")
                time.sleep(args.linger)
        finally:
            status.stop()
            stop.set()
            service.join()
            scanner_end.close()
            bridge_end.close()
            spool.close()
    sent = sum(r.ok for r in results)
    payload = sum(r.size for r in results if r.ok)
    identical = 0
    for path in store.received:
        ds = pydicom.dcmread(path)
        index = int(ds.InstanceNumber) - 1
        expected = phantom_pixels(PhantomSpec(slice_index=index, slices=count))
        if np.array_equal(ds.pixel_array, expected):
            identical += 1
    commits = bridge.stats.commit_seconds
    print("Summary")
    print(f"   images sent over the link:       {sent} of {count}")
    print(f"   images received by the store:    {len(store.received)}")
    print(f"   pixel-identical to the source:   {identical}")
    print(
        f"   link: {payload / 1e6:.1f} MB in {link_seconds:.2f} s "
        f"({payload / link_seconds / 1e6:.2f} MB/s, each image answered after its spool commit)"
    )
    if commits:
        median = sorted(commits)[len(commits) // 2] * 1000
        print(f"   last word to spool commit:       median {median:.0f} ms")
    print(f"   elapsed, scanner start to last object in the store: {elapsed:.2f} s")
    print(f"   DICOM files: {pacs_dir}/   spool: {spool_dir}/")
    ok = sent == count and arrived and identical == count
    if not ok:
        print("demo: not every image arrived pixel-identical", file=sys.stderr)
    return 0 if ok else 1


def _demo(args: argparse.Namespace) -> int:
    from bridge.acrnema.dump import dump_file
    from bridge.acrnema.elements import IMPLICIT_BE, IMPLICIT_LE
    from bridge.testing.phantom import PhantomSpec, phantom_file

    out: Path = args.out
    sources, dicom = out / "acrnema", out / "dicom"
    for folder in (sources, dicom):
        if folder.exists():
            shutil.rmtree(folder)
    sources.mkdir(parents=True)
    print(f"1. Writing {args.slices} ACR-NEMA 2.0 CT slices (512x512, 12 bits) to {sources}/")
    for i in range(args.slices):
        syntax = IMPLICIT_BE if i % 2 else IMPLICIT_LE
        spec = PhantomSpec(slice_index=i, slices=args.slices)
        suffix = "be" if syntax is IMPLICIT_BE else "le"
        (sources / f"slice{i + 1:03d}_{suffix}.acr").write_bytes(phantom_file(spec, syntax))
    (sources / "README.txt").write_text("Not a data set: the converter reports it as skipped.\n")
    print("   (odd slices big endian, even slices little endian, as different scanners wrote them)")
    report = out / "report.json"
    print(f"2. acrnema-bridge convert {sources} --out {dicom} --dicomdir --report {report}")
    from bridge.cli import main

    status = main(
        ["convert", str(sources), "--out", str(dicom), "--dicomdir", "--report", str(report)]
    )
    entries = json.loads(report.read_text())
    outputs = [o for e in entries for o in e["outputs"]]
    if not outputs:
        print("demo: nothing was converted", file=sys.stderr)
        return 1
    print(f"3. {len(outputs)} DICOM files, for example {outputs[0]}:")
    for line in dump_file(Path(outputs[0]).read_bytes(), source=outputs[0], width=48):
        if "Original Attributes" in line:
            print("   ...")
            break
        print("   " + line)
    validator = shutil.which("dciodvfy")
    if validator:
        errors = 0
        for path in outputs:
            run = subprocess.run(
                [validator, "-new", path], capture_output=True, text=True, check=False
            )
            errors += sum(
                1 for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")
            )
        print(f"4. dciodvfy: {errors} errors in {len(outputs)} files")
        if errors:
            status = 1
    else:
        print("4. dciodvfy not installed (Debian package dicom3tools): validation skipped")
    print(f"Done. DICOM files and DICOMDIR: {dicom}/  report: {report}")
    return status

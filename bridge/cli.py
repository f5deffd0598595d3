"""The ``acrnema-bridge`` command line.

``main(argv) -> int`` is the whole program; it is the only module that prints or installs
logging handlers. Exit status: 0 success, 1 some input failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bridge import __version__, cli_forward, cli_profile
from bridge.acrnema.elements import ByteOrder
from bridge.convert.batch import ReportEntry, iter_inputs, run_batch, write_dicomdir
from bridge.convert.core import ConvertOptions, PatientIdPolicy
from bridge.errors import BridgeError, ConfigError

__all__ = ["main"]

log = logging.getLogger("bridge.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acrnema-bridge",
        description=(
            "Bridge between ACR-NEMA 2.0 (1988) equipment and files and DICOM networks. "
            "Converts ACR-NEMA 1.0/2.0 files (either byte order) to valid DICOM."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML configuration (default: $BRIDGE_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    conv = sub.add_parser(
        "convert",
        help="convert ACR-NEMA files and headerless data sets to DICOM Part 10",
        description=(
            "Convert ACR-NEMA 1.0/2.0 files, headerless DICOM data sets and Part 10 files into "
            "valid DICOM Part 10 files (explicit VR little endian), written to OUT as "
            "patient/study/series/instance. Folders are walked recursively; files that are not "
            "data sets are reported as skipped. A re-run skips inputs already converted. "
            "Exit status: 0 when every input converted or was skipped, 1 when any failed, "
            "2 on a usage error."
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
        "--dicomdir", action="store_true", help="write OUT/DICOMDIR indexing the output"
    )
    conv.add_argument(
        "--report", type=Path, metavar="FILE", help="write a JSON report, one object per input"
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
    conv.add_argument("--quiet", action="store_true", help="no progress and no summary")

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

    cli_forward.add_commands(sub)
    cli_profile.add_commands(sub)
    demo = sub.add_parser(
        "demo",
        help="run the main job on embedded defaults",
        description=(
            "Generate a study of ACR-NEMA 2.0 CT slices as a 1990s scanner wrote them (both byte "
            "orders), convert it to DICOM with a DICOMDIR, validate the result with dciodvfy when "
            "it is installed, and say where everything landed."
        ),
    )
    demo.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="work folder (default %(default)s)"
    )
    demo.add_argument(
        "--slices", type=int, default=24, help="number of slices (default %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a usage error 2
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose < 2:
        # pydicom logs every ACR-NEMA value form it meets; the converter reports them itself.
        logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        if args.command == "convert":
            return _convert(args)
        if args.command == "dump":
            return _dump(args)
        if args.command == "demo":
            return _demo(args)
        if args.command in cli_profile.COMMANDS:
            return cli_profile.run_command(args)
        if args.command in cli_forward.COMMANDS:
            return cli_forward.run_command(args)
    except ConfigError as exc:
        print(f"acrnema-bridge: configuration: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"acrnema-bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("acrnema-bridge: interrupted", file=sys.stderr)
        return 130
    parser.print_usage(sys.stderr)
    return 2


class _Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.counts = {"converted": 0, "skipped": 0, "failed": 0}
        self.start = time.monotonic()

    def __call__(self, entry: ReportEntry, done: int, total: int) -> None:
        self.counts[entry.status] += 1
        if entry.status == "failed":
            self._clear()
            print(f"failed: {entry.error}", file=self.stream)
        if self.enabled:
            rate = done / max(time.monotonic() - self.start, 1e-6)
            c = self.counts
            self.stream.write(
                f"\r[{done}/{total}] converted {c['converted']}, skipped {c['skipped']}, "
                f"failed {c['failed']}  {rate:.1f} files/s "
            )
            self.stream.flush()

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _convert(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    problem = None
    if args.jobs < 1:
        problem = "--jobs must be at least 1"
    elif missing:
        problem = f"no such file or folder: {', '.join(missing)}"
    if problem:
        print(f"acrnema-bridge convert: error: {problem}", file=sys.stderr)
        return 2
    options = ConvertOptions(
        byte_order=ByteOrder(args.byte_order), patient_id=PatientIdPolicy(args.patient_id)
    )
    inputs = list(iter_inputs(args.paths, exclude=args.out))
    progress = _Progress(sys.stderr, not args.quiet)
    started = time.monotonic()
    entries = run_batch(
        inputs,
        args.out,
        options=options,
        jobs=args.jobs,
        overwrite=args.overwrite,
        progress=progress,
    )
    progress.finish()
    elapsed = time.monotonic() - started
    if args.report:
        _write_json(args.report, [e.to_json() for e in entries])
    if args.dicomdir:
        count, left_out = write_dicomdir(args.out)
        for reason in left_out:
            print(f"not in DICOMDIR: {reason}", file=sys.stderr)
        if not args.quiet:
            print(f"DICOMDIR: {args.out / 'DICOMDIR'} ({count} instances)", file=sys.stderr)
    counts = progress.counts
    if not args.quiet:
        outputs = sum(len(e.outputs) for e in entries if e.status == "converted")
        print(
            f"{len(entries)} inputs: {counts['converted']} converted ({outputs} DICOM files), "
            f"{counts['skipped']} skipped, {counts['failed']} failed "
            f"in {elapsed:.1f} s -> {args.out}",
            file=sys.stderr,
        )
    return 1 if counts["failed"] else 0


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as fp:
        json.dump(payload, fp, indent=2)
        fp.write("\n")
    os.replace(tmp, path)


def _dump(args: argparse.Namespace) -> int:
    from bridge.acrnema.dump import dump_file

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


def _demo(args: argparse.Namespace) -> int:
    from bridge.acrnema.dump import dump_file
    from bridge.acrnema.elements import IMPLICIT_BE, IMPLICIT_LE
    from bridge.emulator.phantom import PhantomSpec, phantom_file

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


if __name__ == "__main__":
    sys.exit(main())

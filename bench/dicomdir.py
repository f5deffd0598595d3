"""The DICOMDIR step against the conversion it indexes, and against DCMTK and pydicom.

Usage: ``python bench/dicomdir.py [--counts 1000 3000 5000] [--baseline-max N] [--keep DIR]``
(results: docs/benchmarks.md).

For each count N: generates N 512x512 ACR-NEMA 2.0 CT slices (``bridge.testing.phantom``),
converts them with the batch of ``acrnema-bridge convert --jobs 2`` (:func:`run_batch`,
two worker processes; timed on the wall clock), then times, on the same output tree:

1. ours, in the batch: :func:`bridge.dicomdir.write_dicomdir` given what the batch
   reported of each output (what ``convert --dicomdir`` does; no file read again);
2. ours, from the files: the same with nothing given and no cache, so every header is
   read (``--dicomdir`` added on a re-run over a tree converted without it);
3. ours, a resume: the same call again, nothing new (every record kept, no header read);
4. ``dcmmkdir +r +p 'IM*' +id OUT +D OUT/DICOMDIR +I`` (DCMTK), when installed;
5. pydicom's ``FileSet``, one ``add`` per instance then a write: how the DICOMDIR was
   built before, only for N up to ``--baseline-max`` (quadratic: minutes at 5,000).

and prints each time and its ratio to the conversion. Every DICOMDIR written is read
back with pydicom's ``FileSet``, which must find N instances; a tool that fails, or a
DICOMDIR with another count, makes the script exit 1.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import BenchError, machine_lines, run_in, tool_version

from bridge import __version__
from bridge.batch import ConvertStatus, ReportEntry, run_batch
from bridge.dicom.core import ConvertOptions
from bridge.dicomdir import CACHE, write_dicomdir
from bridge.testing.phantom import PhantomSpec, phantom_file

GOAL = 0.10  # the DICOMDIR of a batch must cost less than this share of the conversion


def _generate(src: Path, count: int) -> None:
    src.mkdir(parents=True)
    for i in range(count):
        spec = PhantomSpec(slice_index=i, slices=count)
        (src / f"slice{i + 1:05d}.acr").write_bytes(phantom_file(spec))


def _timed(what: str, action: object) -> float:
    start = time.perf_counter()
    assert callable(action)
    action()
    seconds = time.perf_counter() - start
    print(f"  {what}: {seconds:.2f} s", flush=True)
    return seconds


def _check(path: Path, count: int, who: str) -> None:
    from pydicom.fileset import FileSet

    found = len(FileSet(path))
    if found != count:
        raise BenchError(f"{who}: {path} records {found} instances, expected {count}")


def _pydicom_fileset(out: Path, target: Path) -> None:
    """The DICOMDIR as it was built before: FileSet.add per instance, then its writer."""
    from pydicom import dcmread
    from pydicom.filebase import DicomFileLike
    from pydicom.fileset import FileSet

    fs = FileSet()
    paths: dict[str, list[str]] = {}
    for path in sorted(out.glob("PT*/ST*/SE*/IM*")):
        instance = fs.add(dcmread(path, stop_before_pixels=True))
        paths[str(instance.SOPInstanceUID)] = list(path.relative_to(out).parts)
    for instance in fs:
        instance.node._record.ReferencedFileID = paths[str(instance.SOPInstanceUID)]
    with target.open("wb") as fp:
        fs._write_dicomdir(DicomFileLike(fp))


def _one(work: Path, count: int, baseline_max: int) -> list[str]:
    src, out = work / f"src{count}", work / f"out{count}"
    print(f"N = {count}: generating...", flush=True)
    _generate(src, count)
    inputs = sorted(src.iterdir())
    entries: list[ReportEntry] = []

    def run_convert() -> None:
        entries.extend(run_batch(inputs, out, options=ConvertOptions(), jobs=2))
        failed = [e.error for e in entries if e.status is not ConvertStatus.CONVERTED]
        if failed:
            raise BenchError(f"convert: {len(failed)} inputs not converted: {failed[0]}")

    convert_s = _timed("convert --jobs 2", run_convert)
    known = {path: values for e in entries for path, values in e.dicomdir.items()}
    rows = [f"| {count} | convert `--jobs 2` | {convert_s:.1f} | 1 |"]

    def in_batch() -> None:
        (out / CACHE).unlink(missing_ok=True)
        result = write_dicomdir(out, known)
        if result.instances != count or result.left_out or result.read:
            raise BenchError(f"ours: {result}")

    def ours() -> None:
        (out / CACHE).unlink(missing_ok=True)
        result = write_dicomdir(out)
        if result.instances != count or result.left_out:
            raise BenchError(f"ours: {result.instances} instances, left out {result.left_out}")

    def resume() -> None:
        result = write_dicomdir(out)
        if result.read:
            raise BenchError(f"ours, resume: read {result.read} headers again")

    batch = _timed("ours, in the batch", in_batch)
    _check(out / "DICOMDIR", count, "ours")
    print(f"  ratio to the conversion: {batch / convert_s:.3f} (goal < {GOAL})", flush=True)
    rows.append(f"| {count} | ours, in the batch | {batch:.2f} | {batch / convert_s:.3f} |")
    fresh = _timed("ours, from the files", ours)
    _check(out / "DICOMDIR", count, "ours")
    again = _timed("ours, resume (nothing new)", resume)
    rows.append(f"| {count} | ours, from the files | {fresh:.2f} | {fresh / convert_s:.3f} |")
    rows.append(f"| {count} | ours, resume, nothing new | {again:.2f} | {again / convert_s:.3f} |")
    if shutil.which("dcmmkdir"):
        target = out / "DICOMDIR"  # in its File Set's root, to be read back
        target.unlink()
        dcmtk = ["dcmmkdir", "-q", "+r", "+p", "IM*", "+id", str(out), "+D", str(target), "+I"]

        def run_dcmtk() -> None:
            done = subprocess.run(dcmtk, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BenchError(f"dcmmkdir exited {done.returncode}: {done.stderr.strip()}")

        seconds = _timed("dcmmkdir", run_dcmtk)
        _check(target, count, "dcmmkdir")
        rows.append(f"| {count} | dcmmkdir | {seconds:.2f} | {seconds / convert_s:.3f} |")
    else:
        print("  dcmmkdir not installed (Debian: dcmtk): skipped", flush=True)
    if count <= baseline_max:
        target = out / "DICOMDIR"
        seconds = _timed("pydicom FileSet", lambda: _pydicom_fileset(out, target))
        _check(target, count, "pydicom FileSet")
        rows.append(f"| {count} | pydicom `FileSet` | {seconds:.2f} | {seconds / convert_s:.3f} |")
    shutil.rmtree(src)
    shutil.rmtree(out)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 3000, 5000])
    parser.add_argument("--baseline-max", type=int, default=5000, metavar="N")
    parser.add_argument("--keep", type=Path, help="work in this new or empty folder, keep it")
    args = parser.parse_args(argv)
    for line in machine_lines(
        f"acrnema-bridge {__version__}", f"dcmmkdir: {tool_version(['dcmmkdir', '--version'])}"
    ):
        print(line)
    rows: list[str] = []

    def bench(work: Path) -> None:
        for count in args.counts:
            rows.extend(_one(work, count, args.baseline_max))

    status = run_in(args.keep, bench)
    print("| N | step | seconds | ÷ conversion |\n|---:|---|---:|---:|")
    print("\n".join(rows))
    return status


if __name__ == "__main__":
    sys.exit(main())

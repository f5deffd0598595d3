"""Converting a slice copies its pixel data as few times as it must (issue 14, item 6).

Each copy of a 512x512 slice's pixel data is a buffer above glibc's mmap threshold: with
the ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask's nanny sets in its workers, every such
buffer is a fresh ``mmap``, faulted in page by page and unmapped again
(docs/benchmarks.md, "Cluster"). The conversion needs two: the input as read, and the
pixel data it keeps for the output once the input is gone; everything else (the output's
pixel bytes, the content key, pydicom's writing) works on those.

The first test measures the bytes alive at once with tracemalloc (numpy's buffers
included); the second counts what the allocator does, in a child process with the
nanny's setting: minor page faults per slice.
"""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from pydicom import dcmread

from bridge.acrnema.elements import IMPLICIT_BE, IMPLICIT_LE, Syntax
from bridge.batch import convert_file
from bridge.dicom.core import ConvertOptions
from bridge.testing.phantom import PhantomSpec, phantom_file, phantom_pixels

DEADLINE_S = 120.0  # only to catch a hang
PAGE = os.sysconf("SC_PAGE_SIZE")


def slices(folder: Path, count: int, syntax: Syntax = IMPLICIT_LE) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"ct{index:03d}.acr"
        path.write_bytes(phantom_file(PhantomSpec(slice_index=index, slices=count), syntax))
        paths.append(path)
    return paths


def test_a_slice_holds_its_pixels_at_most_twice(tmp_path: Path) -> None:
    first, second = slices(tmp_path / "in", 2)
    options = ConvertOptions()
    warm = convert_file(first, tmp_path / "warm", options, overwrite=True)  # imports, caches
    assert warm.status.value == "converted", warm.error
    pixels = 512 * 512 * 2
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        entry = convert_file(second, tmp_path / "out", options, overwrite=True)
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert entry.status.value == "converted", entry.error
    # the input as read and the pixel data kept for the output: two copies at most
    assert peak - before < 2.5 * pixels, f"{(peak - before) / pixels:.2f} copies at once"
    assert now - before < pixels // 4, "a copy outlives the conversion"
    written = dcmread(entry.staged[0].temporary)
    expected = phantom_pixels(PhantomSpec(slice_index=1, slices=2))
    assert written.PixelData == expected.astype("<u2").tobytes()


_LOOP = """
import resource, sys
from pathlib import Path
from bridge.batch import convert_file
from bridge.dicom.core import ConvertOptions
paths, out = sorted(Path(sys.argv[1]).iterdir()), Path(sys.argv[2])
options = ConvertOptions()
convert_file(paths[0], out / "warm", options, True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for path in paths[1:]:
    entry = convert_file(path, out, options, True)
    assert entry.status.value == "converted", entry.error
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# Buffers of a slice's size a conversion may allocate: the input and the pixel data kept;
# a big-endian input's words are swapped into a new buffer, turned into bytes (two more).
# Before: 5 and 7.
BUFFERS = {"little": 2, "big": 4}


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="MALLOC_TRIM_THRESHOLD_ is glibc's setting"
)
@pytest.mark.parametrize("order", sorted(BUFFERS))
def test_dask_allocator_setting_costs_few_buffers_a_slice(tmp_path: Path, order: str) -> None:
    """With the nanny's setting every large buffer is a new mapping: count its pages."""
    count = 12
    slices(tmp_path / "in", count + 1, IMPLICIT_LE if order == "little" else IMPLICIT_BE)
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, "-c", _LOOP, str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE_S,
        check=True,
    )
    buffers = int(done.stdout.split()[-1]) / count / ((512 * 512 * 2 + PAGE - 1) // PAGE)
    assert buffers < BUFFERS[order] + 0.6, f"{buffers:.1f} pixel-sized buffers a slice"

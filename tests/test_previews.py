"""``convert --previews``: OUT/index.html, looked at in a real (headless) Chromium."""

from __future__ import annotations

import io
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread

from tests import peers

CORPUS_INPUTS = ("r01", "r02", "r03", "m01", "m02")


def _convert(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "convert", "--jobs", "1", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class _Dom(HTMLParser):
    """The parts of the page the tests look at, from Chromium's serialised DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.summary: dict[str, str] = {}
        self.images: list[str] = []
        self.series: list[int] = []
        self.scripts = 0
        self.failure_cells: list[str] = []
        self._in_failures = False
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "p" and a.get("class") == "summary":
            self.summary = {k[5:]: v for k, v in a.items() if k.startswith("data-")}
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "figure":
            self.series.append(int(a["data-instances"]))
        elif tag == "script":
            self.scripts += 1
        elif tag == "table" and a.get("class") == "failures":
            self._in_failures = True
        elif tag == "td" and self._in_failures:
            self._in_cell = True
            self.failure_cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_failures = False
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.failure_cells[-1] += data


def _dom(index: Path) -> _Dom:
    dom = _Dom()
    dom.feed(peers.chromium(index.as_uri(), "--dump-dom"))
    return dom


def _instances(out: Path) -> list[Path]:
    return [p for p in out.glob("PT*/ST*/SE*/IM*") if p.is_file()]


def test_the_index_shows_every_series_with_a_real_thumbnail(corpus_file, tmp_path):
    inputs = [corpus_file(name) for name in CORPUS_INPUTS]
    garbage = tmp_path / "in" / "broken.acr"
    garbage.parent.mkdir()
    garbage.write_bytes(inputs[0].read_bytes()[:400])  # a data set cut in its header
    out = tmp_path / "out"
    done = _convert(*inputs, garbage, "--out", out, "--previews")
    assert done.returncode == 1, done.stderr  # the broken input failed
    assert f"previews: {out / 'index.html'}" in done.stderr

    dom = _dom(out / "index.html")
    instances = _instances(out)
    series = {dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in instances}
    assert dom.summary["instances"] == str(len(instances)) == str(len(CORPUS_INPUTS))
    assert dom.summary["series"] == str(len(series))
    assert sum(dom.series) == len(instances)
    assert dom.summary["failures"] == "1"
    assert str(garbage) in dom.failure_cells
    # every series of these images has a picture, drawn from its pixels
    assert len(dom.images) == len(series)
    for src in dom.images:
        picture = Image.open(io.BytesIO((out / src).read_bytes()))
        assert picture.format == "PNG" and max(picture.size) <= 128
        assert np.asarray(picture).std() > 5, f"{src} is blank"


def test_hostile_values_are_shown_as_text(tmp_path):
    source = tmp_path / "in" / "evil.dcm"
    source.parent.mkdir()
    ds = peers.write_secondary_capture(source)
    ds.PatientName = "<script>document.title='owned'</script>"
    ds.SeriesDescription = '"><img src=x onerror=alert(1)>'
    ds.save_as(source, enforce_file_format=True)
    out = tmp_path / "out"
    done = _convert(source, "--out", out, "--previews")
    assert done.returncode == 0, done.stderr
    page = (out / "index.html").read_text()
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in page
    dom = _dom(out / "index.html")
    assert dom.scripts == 0, "a value became a script element"
    assert len(dom.images) == 1 and not dom.images[0].startswith("x"), "a value became an image"


def test_a_rerun_draws_only_what_changed(corpus_file, tmp_path):
    out = tmp_path / "out"
    assert _convert(corpus_file("r01"), "--out", out, "--previews").returncode == 0
    first = {p.name: p.stat().st_mtime_ns for p in (out / ".acrnema-bridge/previews").iterdir()}
    assert len(first) == 1
    assert _convert(corpus_file("r02"), "--out", out, "--previews").returncode == 0
    second = {p.name: p.stat().st_mtime_ns for p in (out / ".acrnema-bridge/previews").iterdir()}
    assert len(second) == 2
    for name, mtime in first.items():
        assert second[name] == mtime, "an unchanged series was drawn again"
    dom = _dom(out / "index.html")
    assert dom.summary["instances"] == "2"  # the page shows the whole tree, not one run


def test_previews_are_in_the_help():
    done = _convert("--help")
    assert "--previews" in done.stdout and "index.html" in done.stdout

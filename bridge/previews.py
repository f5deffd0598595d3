"""``convert --previews``: OUT/index.html, a page to look over what a batch recovered.

The page lists every instance under OUT (this run's and earlier runs'), grouped as the
tree is: patients, their studies, their series, with counts, one thumbnail per series
(its middle instance by Instance Number, drawn by :mod:`bridge.dicom.render` with the
object's own window or palette) and, at the end, the inputs of this run that failed or
are pending, with the reason from the report.

Cost: one header read per instance (pixels skipped) and one decoded image per series.
Thumbnails are PNG files under ``OUT/.acrnema-bridge/previews/``, named by the instance
they show, so a re-run over a grown tree draws only the series that changed. The page is
plain HTML with every value escaped and no script: it opens from the file system in any
browser, and holds patient data, so it inherits the tree's permissions.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bridge.dicom.render import thumbnail_png
from bridge.errors import RenderError

__all__ = ["PREVIEW_DIR", "Failure", "write_previews"]

log = logging.getLogger(__name__)

PREVIEW_DIR = Path(".acrnema-bridge") / "previews"
THUMB_SIZE = 128

_HEADER_TAGS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "StudyID",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "SOPInstanceUID",
    "InstanceNumber",
]


@dataclass(frozen=True)
class Failure:
    """An input the page lists as not converted: its path, status and reason."""

    source: str
    status: str  # "failed" or "pending"
    reason: str


@dataclass
class _Series:
    uid: str
    number: str
    description: str
    modality: str
    instances: list[tuple[int, Path, str]] = field(default_factory=list)  # (number, path, uid)


@dataclass
class _Study:
    uid: str
    date: str
    description: str
    ident: str
    accession: str
    series: dict[str, _Series] = field(default_factory=dict)


@dataclass
class _Patient:
    name: str
    ident: str
    birth: str
    sex: str
    studies: dict[str, _Study] = field(default_factory=dict)


def write_previews(
    out: Path,
    failures: Iterable[Failure] = (),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, int, list[str]]:
    """Write ``out/index.html``; return its path, the number of series drawn, and problems.

    ``problems`` name each instance that could not be read and each series whose picture
    could not be drawn (the page shows a placeholder for it); none stops the page.
    ``progress(done, total)`` is called while series are drawn.
    """
    problems: list[str] = []
    patients = _read_tree(out, problems)
    thumbs = out / PREVIEW_DIR
    thumbs.mkdir(parents=True, exist_ok=True)
    all_series = [
        s for p in patients.values() for st in p.studies.values() for s in st.series.values()
    ]
    pictures: dict[str, str | None] = {}
    used: set[str] = set()
    for done, series in enumerate(all_series, 1):
        pictures[series.uid] = _thumbnail(out, thumbs, series, problems, used)
        if progress is not None:
            progress(done, len(all_series))
    for stale in thumbs.glob("*.png"):
        if stale.name not in used:
            stale.unlink(missing_ok=True)
    page = _page(patients, pictures, list(failures), out)
    index = out / "index.html"
    tmp = index.with_name(".index.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index, len(all_series), problems


def _read_tree(out: Path, problems: list[str]) -> dict[tuple[str, str], _Patient]:
    """Every instance under ``out`` (the converter's PT*/ST*/SE*/IM* tree), grouped."""
    patients: dict[tuple[str, str], _Patient] = {}
    for path in sorted(out.glob("PT*/ST*/SE*/IM*")):
        if not path.is_file():
            continue
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError) as exc:
            problems.append(f"{path}: cannot be read: {exc}")
            continue
        key = (_text(ds, "PatientID"), _text(ds, "PatientName"))
        patient = patients.setdefault(
            key,
            _Patient(
                _text(ds, "PatientName"),
                _text(ds, "PatientID"),
                _text(ds, "PatientBirthDate"),
                _text(ds, "PatientSex"),
            ),
        )
        study_uid = _text(ds, "StudyInstanceUID")
        study = patient.studies.setdefault(
            study_uid,
            _Study(
                study_uid,
                _text(ds, "StudyDate"),
                _text(ds, "StudyDescription"),
                _text(ds, "StudyID"),
                _text(ds, "AccessionNumber"),
            ),
        )
        series_uid = _text(ds, "SeriesInstanceUID")
        series = study.series.setdefault(
            series_uid,
            _Series(
                series_uid,
                _text(ds, "SeriesNumber"),
                _text(ds, "SeriesDescription"),
                _text(ds, "Modality"),
            ),
        )
        series.instances.append((_number(ds), path, _text(ds, "SOPInstanceUID")))
    return patients


def _thumbnail(
    out: Path, thumbs: Path, series: _Series, problems: list[str], used: set[str]
) -> str | None:
    """The page's relative path of the series' picture, drawn unless already there."""
    series.instances.sort(key=lambda item: (item[0], str(item[1])))
    _, path, uid = series.instances[len(series.instances) // 2]
    name = hashlib.sha1(f"{uid}\0{path.relative_to(out)}".encode()).hexdigest()[:20] + ".png"
    target = thumbs / name
    if not target.exists():
        try:
            png = thumbnail_png(dcmread(path), THUMB_SIZE, source=str(path))
        except RenderError as exc:
            problems.append(f"{path}: no preview: {exc.reason}")
            return None
        except (InvalidDicomError, OSError, ValueError) as exc:
            problems.append(f"{path}: no preview: cannot be read: {exc}")
            return None
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, target)
    used.add(name)
    return (PREVIEW_DIR / name).as_posix()


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _number(ds: Dataset) -> int:
    try:
        return int(ds.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        return 0


def _n(count: int, noun: str) -> str:
    """``1 series``, ``2 instances``: a count with its noun (series is its own plural)."""
    if count == 1 or noun.endswith("s"):
        return f"{count} {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{count} {plural}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.patient { border-top: 2px solid #888; margin-top: 1.2em; padding-top: .4em; }
.study { margin: .6em 0 1em 1.2em; }
.series { display: flex; flex-wrap: wrap; gap: 12px; margin-left: 1.2em; }
figure { margin: 0; width: 150px; }
figure img, figure .none { width: 128px; height: 128px; object-fit: contain;
  background: #000; display: block; }
figure .none { color: #bbb; font-size: 12px; display: flex; align-items: center;
  justify-content: center; text-align: center; }
figcaption { font-size: 12px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
.count { color: #555; }
"""


def _page(
    patients: dict[tuple[str, str], _Patient],
    pictures: dict[str, str | None],
    failures: Sequence[Failure],
    out: Path,
) -> str:
    n_studies = sum(len(p.studies) for p in patients.values())
    n_series = len(pictures)
    n_instances = sum(
        len(s.instances)
        for p in patients.values()
        for st in p.studies.values()
        for s in st.series.values()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>acrnema-bridge: {_e(out.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Converted archive: {_e(out)}</h1>",
        f'<p class="summary" data-patients="{len(patients)}" data-studies="{n_studies}" '
        f'data-series="{n_series}" data-instances="{n_instances}" '
        f'data-failures="{len(failures)}">{_n(len(patients), "patient")}, '
        f"{_n(n_studies, 'study')}, {_n(n_series, 'series')}, {_n(n_instances, 'instance')}; "
        f"{_n(len(failures), 'input')} not converted</p>",
    ]
    for patient in sorted(patients.values(), key=lambda p: (p.name, p.ident)):
        parts.append(
            f'<section class="patient"><h2>{_e(patient.name or "(no name)")} '
            f'<span class="count">ID {_e(patient.ident or "(none)")}'
            f"{', born ' + _e(patient.birth) if patient.birth else ''}"
            f"{', sex ' + _e(patient.sex) if patient.sex else ''}</span></h2>"
        )
        for study in sorted(patient.studies.values(), key=lambda s: (s.date, s.uid)):
            count = sum(len(s.instances) for s in study.series.values())
            parts.append(
                f'<div class="study"><h3>Study {_e(study.date or "(no date)")} '
                f"{_e(study.description)} "
                f'<span class="count">{_n(len(study.series), "series")}, {_n(count, "instance")}; '
                f"ID {_e(study.ident or '-')}, accession {_e(study.accession or '-')}, "
                f"UID {_e(study.uid)}</span></h3>"
                '<div class="series">'
            )
            for series in sorted(study.series.values(), key=_series_order):
                picture = pictures.get(series.uid)
                image = (
                    f'<img src="{_e(picture)}" width="128" height="128" '
                    f'alt="series {_e(series.number)}">'
                    if picture
                    else '<div class="none">no picture</div>'
                )
                parts.append(
                    f'<figure class="series-item" data-instances="{len(series.instances)}">'
                    f"{image}<figcaption>{_e(series.modality or '?')} series "
                    f"{_e(series.number or '-')}: {_n(len(series.instances), 'instance')}"
                    f"{'<br>' + _e(series.description) if series.description else ''}"
                    "</figcaption></figure>"
                )
            parts.append("</div></div>")
        parts.append("</section>")
    if failures:
        parts.append('<h2>Not converted</h2><table class="failures">')
        parts.append("<tr><th>input</th><th>status</th><th>reason</th></tr>")
        for failure in failures:
            parts.append(
                f"<tr><td>{_e(failure.source)}</td><td>{_e(failure.status)}</td>"
                f"<td>{_e(failure.reason)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _series_order(series: _Series) -> tuple[int, str]:
    try:
        return int(series.number or 0), series.uid
    except ValueError:
        return 0, series.uid

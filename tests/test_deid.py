"""De-identification for publication (issue 14, item 4): ``convert --deidentify``.

PS3.15 Annex E as applied by bridge.dicom.deid, checked on the real corpus and on
synthetic ACR-NEMA inputs full of identifying values: none of them may survive anywhere
in the output tree, dciodvfy must say no more than without de-identification, and the
same key must give the same UIDs, pseudonyms and dates.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import peers
import pytest
from acrnema_writer import encode, header
from capped import bridge_command
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from bridge.dicom.annex_e import COLUMNS, EDITION, TABLE
from bridge.dicom.core import ConvertOptions, convert
from bridge.dicom.deid import (
    Deidentification,
    DeidOption,
    action,
    burned_in_modality,
    deidentify,
    keyed_uid,
    table_actions,
)

DEADLINE_S = 300
ALL_OPTIONS = [o.value for o in DeidOption if o is not DeidOption.LONGITUDINAL_FULL_DATES]

# ------------------------------------------------------------------ the source values

NAME = "ZYXWVU^QUENTIN"
PATIENT_ID = "PID98765"
BIRTH = "1931.07.14"
STUDY_DATE = "1989.04.01"
INSTITUTION = "SAINT ELSEWHERE HOSPITAL"
ADDRESS = "12 ELM STREET SPRINGFIELD"
REFERRING = "HOUSE^GREGORY"
OPERATOR = "RATCHED^MILDRED"
STATION = "CTSTATION7"
ACCESSION = "ACC55501"
STUDY_ID = "STU4242"
OTHER_ID = "OTHERID777"
STUDY_UID = "1.2.999.1234.5"
SERIES_UID = "1.2.999.1234.5.6"
PRIVATE_TEXT = "ACME SECRET NOTE"


def identifying(source: int = 1, modality: str = "CT", study: str = STUDY_UID) -> bytes:
    """An ACR-NEMA 2.0 slice carrying every kind of identifying value."""
    elements = [
        e
        for e in header(modality=modality, patient_name=NAME, patient_id=PATIENT_ID)
        if e[0] not in (0x00080020, 0x00200010, 0x00200013)
    ]
    elements += [
        (0x00080020, "s", STUDY_DATE),
        (0x00080021, "s", STUDY_DATE),
        (0x00080050, "s", ACCESSION),
        (0x00080080, "s", INSTITUTION),
        (0x00080081, "s", ADDRESS),
        (0x00080090, "s", REFERRING),
        (0x00081010, "s", STATION),
        (0x00081030, "s", f"HEAD FOR QUENTIN ZYXWVU {BIRTH}"),
        (0x0008103E, "s", f"SERIES OF {PATIENT_ID}"),
        (0x00081070, "s", OPERATOR),
        (0x00084000, "s", f"identifying comment {NAME} {ACCESSION}"),
        (0x00100030, "s", BIRTH),
        (0x00101000, "s", OTHER_ID),
        (0x00101040, "s", ADDRESS),
        (0x00101010, "s", "058Y"),
        (0x00200010, "s", STUDY_ID),
        (0x0020000D, "s", study),
        (0x0020000E, "s", SERIES_UID),
        (0x00080018, "s", f"{SERIES_UID}.{source}"),
        (0x00200013, "s", str(source)),
        (0x00090010, "s", "ACME PRIVATE"),
        (0x00091001, "s", PRIVATE_TEXT),
        (0x00091002, "s", NAME),
    ]
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * (source + 1)
    return encode([*elements, (0x7FE00010, "b", pixels.tobytes())])


def needles(kept: tuple[str, ...] = ()) -> list[bytes]:
    """Every form the identifying values could take in a file, lower case; ``kept``: the
    values an option retains on purpose (Station Name under device-identity)."""
    texts = [
        NAME,
        NAME.replace("^", " "),
        *NAME.split("^"),
        PATIENT_ID,
        INSTITUTION,
        ADDRESS,
        *REFERRING.split("^"),
        *OPERATOR.split("^"),
        STATION,
        ACCESSION,
        STUDY_ID,
        OTHER_ID,
        STUDY_UID,
        SERIES_UID,
        PRIVATE_TEXT,
    ]
    for date in (BIRTH, STUDY_DATE):
        texts += [date, date.replace(".", ""), date.replace(".", "-"), date.replace(".", "/")]
    forms = set()
    for text in (t for t in texts if t not in kept):
        raw = text.lower().encode("latin-1")
        forms |= {raw, raw + b" ", raw + b"\0"}
    return sorted(forms)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bridge_command(), "convert", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env=os.environ.copy(),
        check=False,
    )


def key_file(tmp_path: Path, text: bytes = b"museum publication key 2026") -> Path:
    path = tmp_path / f"key-{len(list(tmp_path.glob('key-*')))}"
    path.write_bytes(text)
    return path


def outputs(out: Path) -> list[Path]:
    return sorted(out.glob("PT*/ST*/SE*/IM*"))


def leaks(out: Path, kept: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        found += [f"{path.relative_to(out)}: {n!r}" for n in needles(kept) if n in data]
    return found


# -------------------------------------------------------------------- the table


def test_the_table_matches_the_standard_on_a_sample_of_rows() -> None:
    """Rows of PS3.15 Table E.1-1 as read in the standard (edition named in the module)."""
    assert EDITION == "2020c"
    expected = {  # tag: {column: action}, from the standard's text
        0x00100010: {"basic": "Z"},  # Patient's Name
        0x00100020: {"basic": "Z"},  # Patient ID
        0x00100030: {"basic": "Z"},  # Patient's Birth Date
        0x00080018: {"basic": "U", "uids": "K"},  # SOP Instance UID
        0x0020000D: {"basic": "U", "uids": "K"},  # Study Instance UID
        0x00080080: {"basic": "X/Z/D", "institution-identity": "K"},  # Institution Name
        0x00081010: {"basic": "X/Z/D", "device-identity": "K"},  # Station Name
        0x00181000: {"basic": "X/Z/D", "device-identity": "K"},  # Device Serial Number
        0x00101010: {"basic": "X", "patient-characteristics": "K"},  # Patient's Age
        0x00100040: {"basic": "Z", "patient-characteristics": "K"},  # Patient's Sex
        0x00080020: {  # Study Date
            "basic": "Z",
            "longitudinal-full-dates": "K",
            "longitudinal-modified-dates": "C",
        },
        0x00081030: {"basic": "X", "clean-descriptors": "C"},  # Study Description
        0x00084000: {"basic": "X", "clean-descriptors": "C"},  # Identifying Comments
        0x04000561: {"basic": "X"},  # Original Attributes Sequence
        0x00081140: {"basic": "X/Z/U*", "uids": "K"},  # Referenced Image Sequence
        0x0040A075: {"basic": "D"},  # Verifying Observer Name
        0x60003000: {"basic": "X", "clean-graphics": "C"},  # Overlay Data (60xx,3000)
        0x60224000: {"basic": "X", "clean-graphics": "C"},  # Overlay Comments (60xx,4000)
        0x50000000 | 0x3000: {"basic": "X", "clean-graphics": "C"},  # Curve Data (50xx,xxxx)
    }
    for tag, columns in expected.items():
        row = table_actions(tag)
        assert row is not None, f"{tag:08X} missing"
        for column in COLUMNS:
            assert row[COLUMNS.index(column)] == columns.get(column, "-"), (f"{tag:08X}", column)
    assert table_actions(0x00280010) is None  # Rows: not identifying, not in the table
    rows = [line for line in TABLE.splitlines() if line.strip()]
    assert len(rows) == 442  # the 2020c table: 441 attributes and the private-attributes row


def test_options_override_the_basic_profile() -> None:
    assert action(0x00080020, []) == "Z"
    assert action(0x00080020, [DeidOption.LONGITUDINAL_MODIFIED_DATES]) == "C"
    assert action(0x00080020, [DeidOption.LONGITUDINAL_FULL_DATES]) == "K"
    assert action(0x00081010, [DeidOption.DEVICE_IDENTITY]) == "K"
    assert action(0x00101010, [DeidOption.PATIENT_CHARACTERISTICS]) == "K"
    assert action(0x00081030, [DeidOption.CLEAN_DESCRIPTORS]) == "C"
    assert action(0x00081030, [DeidOption.DEVICE_IDENTITY]) == "X"


def test_keyed_uids_are_valid_stable_and_depend_on_the_key() -> None:
    one, two = Deidentification(b"k1"), Deidentification(b"k2")
    uid = keyed_uid(one, STUDY_UID)
    assert UID(uid).is_valid and uid.startswith("2.25.") and len(uid) <= 64
    assert keyed_uid(one, STUDY_UID) == uid
    assert keyed_uid(two, STUDY_UID) != uid
    assert keyed_uid(one, SERIES_UID) != uid
    with pytest.raises(ValueError, match="key"):
        Deidentification(b"")


# ---------------------------------------------------------------- the whole path


@pytest.mark.parametrize("options", [[], ALL_OPTIONS], ids=["basic", "all-options"])
def test_no_identifying_value_survives_anywhere_in_the_output(
    tmp_path: Path, options: list[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for n in (1, 2):
        (src / f"slice{n}.acr").write_bytes(identifying(n))
    out = tmp_path / "out"
    flags = ["--deid-option", *options] if options else []
    done = run(
        str(src),
        "--out",
        str(out),
        "--deidentify",
        "--deid-key",
        str(key_file(tmp_path)),
        *flags,
        "--dicomdir",
        "--jobs",
        "1",
    )
    assert done.returncode == 0, done.stderr
    files = outputs(out)
    assert len(files) == 2
    assert leaks(out, (STATION,) if options else ()) == []
    first, second = (dcmread(p) for p in files)
    for ds in (first, second):
        assert ds.PatientIdentityRemoved == "YES"
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert codes[0] == "113100"
        assert all(
            item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence
        )
        assert not [e for e in ds if e.tag.is_private]
        assert "OriginalAttributesSequence" not in ds
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    if options:
        assert codes[1:] == ["113105", "113107", "113108", "113109"]
        assert first.LongitudinalTemporalInformationModified == "MODIFIED"
        assert first.StudyDate and first.StudyDate != "19890401"
        assert first.PatientAge == "058Y"  # patient characteristics kept
        assert first.StationName == STATION.upper() or first.StationName == STATION
        assert "ZYXWVU" not in first.StudyDescription and "HEAD FOR" in first.StudyDescription
    else:
        assert first.LongitudinalTemporalInformationModified == "REMOVED"
        assert not first.StudyDate and "StationName" not in first and "PatientAge" not in first
    # one patient, one study: they stay together
    assert first.StudyInstanceUID == second.StudyInstanceUID != STUDY_UID
    assert first.PatientID == second.PatientID != PATIENT_ID
    assert first.StudyID == second.StudyID != STUDY_ID
    assert files[0].parent == files[1].parent


def test_the_same_key_gives_the_same_uids_and_dates_another_key_others(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.acr").write_bytes(identifying(1))
    (src / "b.acr").write_bytes(identifying(2, study="1.2.999.1234.77"))  # a second study
    key, other = key_file(tmp_path), key_file(tmp_path, b"another key")
    seen = []
    for n, k in enumerate((key, key, other)):
        out = tmp_path / f"out{n}"
        done = run(
            str(src),
            "--out",
            str(out),
            "--deidentify",
            "--deid-key",
            str(k),
            "--deid-option",
            "longitudinal-modified-dates",
            "--jobs",
            "1",
        )
        assert done.returncode == 0, done.stderr
        datasets = sorted((dcmread(p) for p in outputs(out)), key=lambda d: d.InstanceNumber)
        seen.append(
            [(d.SOPInstanceUID, d.StudyInstanceUID, d.PatientID, d.StudyDate) for d in datasets]
        )
    assert seen[0] == seen[1]
    for again, changed in zip(seen[0], seen[2], strict=True):
        assert all(a != c for a, c in zip(again, changed, strict=True))
    # one patient in two studies: the same pseudonym and the same date offset
    (a, b) = seen[0]
    assert a[2] == b[2] and a[1] != b[1] and a[3] == b[3]


def test_dciodvfy_is_as_clean_with_deidentification_as_without(
    tmp_path: Path, corpus: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "synthetic_ct.acr").write_bytes(identifying(1))
    (src / "synthetic_us.acr").write_bytes(identifying(2, modality="US"))
    for path in sorted(corpus.glob("*_*")):
        (src / path.name).symlink_to(path)
    key = key_file(tmp_path)
    errors: dict[str, dict[str, set[str]]] = {}
    for mode, flags in (
        ("plain", []),
        ("basic", ["--deidentify", "--deid-key", str(key)]),
        ("options", ["--deidentify", "--deid-key", str(key), "--deid-option", *ALL_OPTIONS]),
    ):
        out, report = tmp_path / mode, tmp_path / f"{mode}.json"
        done = run(str(src), "--out", str(out), "--report", str(report), "--jobs", "2", *flags)
        assert done.returncode == 0, done.stderr
        errors[mode] = {}
        for entry in json.loads(report.read_text()):
            for path in entry["outputs"]:
                found = peers.dciodvfy(path).errors
                errors[mode].setdefault(Path(entry["source"]).name, set()).update(found)
    assert len(errors["plain"]) >= 10
    assert errors["basic"] == errors["plain"]
    assert errors["options"] == errors["plain"]


def test_one_burn_in_warning_per_batch_names_the_modalities(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for n, modality in enumerate(("US", "US", "OT", "CT")):
        (src / f"s{n}.acr").write_bytes(identifying(n, modality=modality, study=f"1.2.9.{n}"))
    done = run(
        str(src),
        "--out",
        str(tmp_path / "out"),
        "--deidentify",
        "--deid-key",
        str(key_file(tmp_path)),
        "--jobs",
        "2",
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, done.stderr
    assert "OT, US" in warnings[0] and "CT" not in warnings[0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("none", "--deidentify needs --deid-key"),
        ("missing", "cannot read the key file"),
        ("empty", "is empty"),
        ("no-deidentify", "need --deidentify"),
        ("both-longitudinal", "exclude each other"),
    ],
)
def test_key_usage_errors_exit_2_with_one_line(tmp_path: Path, setup: str, message: str) -> None:
    src = tmp_path / "in.acr"
    src.write_bytes(identifying())
    key = key_file(tmp_path)
    args = {
        "none": ["--deidentify"],
        "missing": ["--deidentify", "--deid-key", str(tmp_path / "nope")],
        "empty": ["--deidentify", "--deid-key", str(key_file(tmp_path, b"\n"))],
        "no-deidentify": ["--deid-key", str(key)],
        "both-longitudinal": [
            "--deidentify",
            "--deid-key",
            str(key),
            "--deid-option",
            "longitudinal-full-dates",
            "longitudinal-modified-dates",
        ],
    }[setup]
    done = run(str(src), "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not outputs(tmp_path / "out")


def test_an_output_folder_is_never_shared_by_identified_and_deidentified_trees(
    tmp_path: Path,
) -> None:
    src = tmp_path / "in.acr"
    src.write_bytes(identifying())
    plain, deid = tmp_path / "plain", tmp_path / "deid"
    key = ["--deidentify", "--deid-key", str(key_file(tmp_path))]
    assert run(str(src), "--out", str(plain)).returncode == 0
    refused = run(str(src), "--out", str(plain), *key)  # would "skip" the identified output
    assert refused.returncode == 2 and "without --deidentify" in refused.stderr
    assert run(str(src), "--out", str(deid), *key).returncode == 0
    assert run(str(src), "--out", str(deid), *key).returncode == 0  # a re-run: fine
    other = ["--deidentify", "--deid-key", str(key_file(tmp_path, b"other"))]
    assert run(str(src), "--out", str(deid), *other).returncode == 2
    assert run(str(src), "--out", str(deid)).returncode == 2
    assert leaks(deid) == []


def test_the_api_deidentifies_through_convert_options() -> None:
    deid = Deidentification(b"key", frozenset({DeidOption.LONGITUDINAL_MODIFIED_DATES}))
    result = convert(identifying(), source="x", options=ConvertOptions(deidentify=deid))
    (ds,) = result.datasets
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.StudyInstanceUID == keyed_uid(deid, STUDY_UID)
    assert ds.PatientName == ds.PatientID and str(ds.PatientID).startswith("ANON")


# ------------------------------------------------------- rules on a data set, directly


def object_with(**values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.999.1"
    ds.PatientID = PATIENT_ID
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_private_attributes_go_unless_safelisted_with_their_creator() -> None:
    ds = object_with()
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", "kept value")
    ds.private_block(0x0029, "ACME 1.0").add_new(0x11, "LO", NAME)
    ds.private_block(0x0031, "OTHER", create=True).add_new(0x10, "LO", NAME)
    safe = Deidentification(b"k", safe_private=frozenset({("ACME 1.0", 0x10)}))
    deidentify(ds, safe)
    private = {int(e.tag): e.value for e in ds if e.tag.is_private}
    assert private == {0x00290010: "ACME 1.0", 0x00291010: "kept value"}
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113111"]
    plain = object_with()
    plain.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", "x")
    deidentify(plain, Deidentification(b"k"))
    assert not [e for e in plain if e.tag.is_private]


def test_acr_nema_leftovers_and_overlay_groups_are_removed() -> None:
    ds = object_with(StudyDescription="kept only when cleaned")
    ds.add_new(0x00080041, "LO", "retired: Data Set Subtype")
    ds.add_new(0x00214000, "LT", f"an unknown public element holding {NAME}")
    ds.add_new(0x60000010, "US", 8)  # Overlay Rows
    ds.add_new(0x60000011, "US", 8)  # Overlay Columns
    ds.add_new(0x60003000, "OW", b"\0" * 8)  # Overlay Data: X, so the whole group goes
    warnings = deidentify(ds, Deidentification(b"k"))
    assert 0x00080041 not in ds and 0x00214000 not in ds
    assert not [e for e in ds if e.tag.group == 0x6000]
    assert "StudyDescription" not in ds
    assert any("removed 2 attributes" in w for w in warnings)


def test_secondary_capture_warns_of_burned_in_text_whatever_its_modality() -> None:
    ds = object_with(Modality="CT")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    (warning,) = deidentify(ds, Deidentification(b"k"))
    assert burned_in_modality(warning) == "CT"
    assert deidentify(object_with(Modality="CT"), Deidentification(b"k")) == []

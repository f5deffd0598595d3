"""Spool paths and modes: a path that is not a spool is refused, the spool is private.

Findings (issue 11, item 5): ``spool stats`` with a mistyped ``--spool`` made an empty
spool and answered "0 objects"; ``run`` started a fresh spool wherever its path pointed;
the spool's files were world-readable under the usual umask although they hold PHI; the
JSON report of ``convert`` copied a whole 100 KB Patient's Name.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from acrnema_writer import encode, header
from capped import bridge_command

from bridge.cli import main
from bridge.spool.objects import describe_object
from bridge.spool.store import ObjectInfo, Spool

DEADLINE_S = 60.0  # only to catch a service that started


def _info(n: int) -> ObjectInfo:
    return ObjectInfo(f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", "CT")


@pytest.mark.parametrize("action", ["stats", "list", "retry", "purge"])
def test_spool_queries_refuse_a_missing_spool(
    tmp_path: Path, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "spoool"
    assert main(["spool", action, "--spool", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "not a spool" in err[0]
    assert not missing.exists()


def test_forward_refuses_a_missing_spool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "spoool"
    args = ["forward", "--spool", str(missing), "--dest", "PACS@127.0.0.1:1", "--until-empty"]
    assert main(args) == 2
    assert "not a spool" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_path_that_is_something_else_is_refused(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file, or a folder holding other things, is no spool: even `spool add` leaves it."""
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("notes\n")
    else:
        path.mkdir()
        (path / "notes.txt").write_text("notes\n")
    source = tmp_path / "in.dcm"
    source.write_bytes(b"\0" * 8)
    for args in (["spool", "stats"], ["spool", "add", str(source)]):
        assert main([*args, "--spool", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a spool" in err[0], err
    if kind == "file":
        assert path.read_text() == "notes\n"
    else:
        assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]


def test_queries_work_on_a_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "spool"
    spool = Spool(root, create=True)
    spool.put(b"x" * 100, _info(1))
    spool.close()
    assert main(["spool", "stats", "--json", "--spool", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == 1


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BRIDGE_SPOOL"}
    return subprocess.run(
        [*bridge_command(), "run", "--port", "tcp-listen://127.0.0.1:0", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,  # on a spool it would serve: only to catch that
        env=env,
        check=False,
    )


def test_run_creates_only_a_spool_it_was_told_of(tmp_path: Path) -> None:
    """`run` with no spool path given and no ./spool refuses; a folder of other things too."""
    done = _run(tmp_path)
    assert done.returncode == 2 and "not a spool" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "spool").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("a")
    done = _run(tmp_path, "--spool", str(other))
    assert done.returncode == 2 and "not a spool" in done.stderr, done.stderr
    assert sorted(p.name for p in other.iterdir()) == ["a.txt"]


def test_spool_add_creates_a_spool(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    new = tmp_path / "new" / "spool"
    assert main(["spool", "add", str(source), "--spool", str(new)]) == 0
    assert (new / "spool.db").is_file()


# ---------------------------------------------------------------------- modes


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, str]:
    """Every path in the spool that is not private: relative name -> its mode."""
    wrong = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong[str(path.relative_to(root))] = oct(mode)
    return wrong


def _image(n: int) -> bytes:
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"1.2.3.4.{n}"
    ds.Modality = "CT"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_every_spool_path_is_private(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "spool"
    spool = Spool(root, create=True, owner="test")
    spool.register(["PACS@127.0.0.1:104"])
    for n in range(3):
        spool.put(_image(n), _info(n))
    # an object file nobody knows with its tmp/ twin: a put that died; recovery moves it
    # (made as a put makes them: folder 0700, file 0600)
    orphan = root / "objects" / "ff" / "255.dcm"
    orphan.parent.mkdir(mode=0o700)
    orphan.write_bytes(b"orphan")
    orphan.chmod(0o600)
    os.link(orphan, root / "tmp" / "orphan.1.1")
    spool.recover()
    assert list((root / "lost+found").iterdir())
    assert (root / "spool.db-wal").exists() and (root / "owner.lock").exists()
    assert _modes(root) == {}
    spool.close()
    (root / "spool.db").unlink()
    (root / "objects" / "7f").mkdir(mode=0o700)
    (root / "objects" / "7f" / "junk.dcm").write_bytes(b"junk")  # 0666 under umask 000
    rebuilt, report = Spool.rebuild(root, ["PACS@127.0.0.1:104"], describe_object)
    try:
        assert report.objects == 3 and report.unreadable
        assert _modes(root) == {}
    finally:
        rebuilt.close()


# ---------------------------------------------------------------------- convert report


def test_convert_report_caps_original_values(tmp_path: Path) -> None:
    src, out, report = tmp_path / "src", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    name = "DOE^" + "J" * 100_000
    pixels = np.zeros((8, 8), np.uint16)
    elements = header(patient_name=name) + [(0x7FE00010, "b", pixels.tobytes())]
    (src / "big.acr").write_bytes(encode(elements))
    main(["convert", str(src), "--out", str(out), "--quiet", "--report", str(report)])
    text = report.read_text()
    assert "JJJJ" in text  # the value is shown, in part
    assert len(text) < 10_000, f"the report is {len(text)} characters"
    entries = json.loads(text)
    warnings = [w for entry in entries for w in entry["warnings"]]
    shown = [w for w in warnings if "Patient's Name" in w]
    assert shown and all("... (100004 characters)" in w for w in shown), shown

"""The public surface: ``bridge.__all__``, lazy imports, the version written once, and the
examples of docs/api.md run as written (against a real storescp and a corpus file).
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import peers
import pytest

import bridge

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "bridge" / "__init__.py"
API_DOC = ROOT / "docs" / "api.md"
RUN_TIMEOUT_S = 120  # generous: only catches a hang


def _type_checking_imports() -> dict[str, str]:
    """Public name -> module, as the ``if TYPE_CHECKING:`` block of bridge/__init__.py says."""
    tree = ast.parse(INIT.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                alias.asname or alias.name: imp.module or ""
                for imp in node.body
                if isinstance(imp, ast.ImportFrom)
                for alias in imp.names
            }
    raise AssertionError("bridge/__init__.py has no `if TYPE_CHECKING:` block")


def _examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", API_DOC.read_text(), re.S | re.M)


def _run_example(code: str, tmp_path: Path, name: str) -> Path:
    script = tmp_path / name
    script.write_text(code)
    return script


# --------------------------------------------------------------------------- names


def test_every_public_name_resolves_to_its_home_module() -> None:
    homes = _type_checking_imports()
    eager = {*bridge.errors.__all__, "__version__"}  # the errors come with the package
    assert homes == bridge._LAZY, "the lazy table and the TYPE_CHECKING imports differ"
    assert set(bridge.__all__) == set(homes) | eager
    for name in bridge.__all__:
        value = getattr(bridge, name)
        if name in homes:
            assert value is getattr(importlib.import_module(homes[name]), name), name
    assert set(bridge.__all__) <= set(dir(bridge))


def test_convert_is_the_function_whatever_else_is_imported() -> None:
    """``bridge.convert`` (the API) is the function; the package is bridge/dicom/."""
    code = (
        "import bridge.batch, bridge.dicom.core as core, bridge\n"
        "assert bridge.convert is core.convert, bridge.convert\n"
        "from bridge import convert\n"
        "assert convert is core.convert\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_errors_are_one_tree() -> None:
    errors = [getattr(bridge, n) for n in bridge.__all__ if n.endswith("Error")]
    assert len(errors) >= 9
    for error in errors:
        assert issubclass(error, bridge.BridgeError), error


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        bridge.nonexistent  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(bridge, "Sender")  # internal: reached through Forwarder, not exported


def test_import_bridge_stays_light() -> None:
    """``import bridge`` does not pull in pydicom, numpy, pynetdicom or the ports."""
    heavy = ["pynetdicom", "pydicom", "numpy", "bridge.ports", "bridge.spool", "socket"]
    code = (
        "import sys, bridge\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
        "bridge.Spool\n"
        "print('bridge.spool.store' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    assert out == ["", "True"]


# ------------------------------------------------------------------------- version


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml repeats the version"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "bridge.__version__"}

    from setuptools.config.expand import read_attr

    assert read_attr("bridge.__version__", root_dir=ROOT) == bridge.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", bridge.__version__)
    others = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "bridge").rglob("*.py"))
        if path != INIT and re.search(r"__version__\s*=", path.read_text())
    ]
    assert others == []


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"acrnema-bridge {bridge.__version__}"


# ------------------------------------------------------------------- documentation


def test_the_api_doc_has_its_examples() -> None:
    examples = _examples()
    assert len(examples) == 2
    for code in examples:
        compile(code, str(API_DOC), "exec")
        used = set(re.findall(r"\bbridge\.([A-Za-z_]+)", code))
        assert used <= set(bridge.__all__), f"docs/api.md uses non-public names: {used}"


def test_archive_example_runs_as_documented(
    tmp_path: Path,
    storescp: peers.StoreSCPPeer,
    corpus_file: object,
) -> None:
    """docs/api.md's first example, saved and run as a user would, twice."""
    source = corpus_file("r01")  # type: ignore[operator]
    script = _run_example(_examples()[0], tmp_path, "archive_one.py")
    pacs = f"{storescp.ae_title}@{storescp.host}:{storescp.port}"
    expected = bridge.convert(source.read_bytes(), source=str(source)).datasets[0].SOPInstanceUID
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, str(script), str(source), str(tmp_path / "spool"), pacs],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            cwd=tmp_path,
        )
        assert done.returncode == 0, f"run {run}:\n{done.stdout}\n{done.stderr}"
        assert f"{source.name}: ACR-NEMA 2.0, 1 object(s)" in done.stdout
        assert f"{pacs}: delivered 1, quarantined 0, waiting 0" in done.stdout
    received = storescp.received()
    assert list(received) == [str(expected)]  # the second run sent the same instance
    assert len(list(storescp.out_dir.glob("*.dcm"))) == 1


def test_archive_example_fails_clearly_without_a_pacs(tmp_path: Path, corpus_file: object) -> None:
    source = corpus_file("r01")  # type: ignore[operator]
    script = _run_example(_examples()[0], tmp_path, "archive_one.py")
    done = subprocess.run(
        [sys.executable, str(script), str(source), str(tmp_path / "spool"), "PACS@127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "PACS@127.0.0.1:9 does not answer" in done.stderr
    assert "spooled object 1" in done.stdout  # kept in the spool for a later run


def test_service_example_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """docs/api.md's second example on a loop:// port: starts, serves, stops cleanly."""
    script = _run_example(_examples()[1], tmp_path, "serve.py")
    process = subprocess.Popen(
        [sys.executable, str(script), "loop://api-doc", str(tmp_path / "spool")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # blocks until the service is up (or dies)
        assert first.startswith("serving loop://api-doc"), first + process.stderr.read()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.strip() == "0 image(s) stored as 0 object(s), 0 refused"
    assert (tmp_path / "spool" / "spool.db").exists()

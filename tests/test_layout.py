"""The layout of issue 10 (docs/architecture.md, "Moves"): the modules that moved keep their
old import paths, and those give the very same objects as the new homes.
"""

from __future__ import annotations

import ast
import importlib
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from test_purity import closure

ROOT = Path(__file__).resolve().parent.parent

# old module -> {name: its module now}
MOVES: dict[str, dict[str, str]] = {
    "bridge.endpoint": {
        "Endpoint": "bridge.link.endpoint",
        "Answer": "bridge.link.responder",
        "Responder": "bridge.link.responder",
        "ResponderStats": "bridge.link.responder",
        "StoreHandler": "bridge.link.responder",
    },
    "bridge.emulator.scanner": {
        "Image": "bridge.link.requester",
        "ImageResult": "bridge.link.requester",
        "Scanner": "bridge.link.requester",
        "load_images": "bridge.link.requester",
        "phantom_images": "bridge.testing.phantom",
    },
    "bridge.emulator.receiver": {"FolderWriter": "bridge.link.receiver"},
    "bridge.emulator.phantom": {
        "PhantomSpec": "bridge.testing.phantom",
        "phantom_dataset": "bridge.testing.phantom",
        "phantom_file": "bridge.testing.phantom",
        "phantom_pixels": "bridge.testing.phantom",
    },
    "bridge.emulator.store_scp": {"EmbeddedStore": "bridge.testing.store_scp"},
    "bridge.spool.ingest": {
        "IngestResult": "bridge.ingest",
        "ingest_file": "bridge.ingest",
        "dataset_bytes": "bridge.spool.objects",
        "describe_object": "bridge.spool.objects",
        "object_info": "bridge.spool.objects",
    },
    "bridge.emulator.box": {
        name: "bridge.testing.box"
        for name in (
            "EMULATED_CAPABILITIES",
            "BoxCore",
            "BoxModel",
            "EmulatedBench",
            "EmulatedBox",
            "FirmwareBox",
            "FirmwareCore",
            "emulated_bench",
            "load_libboxcore",
        )
    },
}


@pytest.mark.parametrize("old", sorted(MOVES))
def test_an_old_import_path_gives_the_same_objects_as_the_new_home(old: str) -> None:
    module = importlib.import_module(old)
    assert set(module.__all__) == set(MOVES[old])
    for name, home in MOVES[old].items():
        new = importlib.import_module(home)
        with warnings.catch_warnings():  # the warnings: the test of DEPRECATED_MOVES
            warnings.simplefilter("ignore", DeprecationWarning)
            assert getattr(module, name) is getattr(new, name), f"{old}.{name}"
        assert name in new.__all__, f"{home} does not export {name}"


DEPRECATED_MOVES = [
    # old module, its name's home now, name: the old module warns (bridge._renamed)
    ("bridge.ports.wordstream", "bridge.wordstream", "WordStreamEngine"),
    ("bridge.ports.wordstream", "bridge.wordstream", "encode_words"),
    ("bridge.ports.wordstream", "bridge.wordstream", "LINE_TABLE"),
    ("bridge.ports.wordstream", "bridge.ports.driver", "StreamWordPort"),
    ("bridge.emulator.box", "bridge.testing.box", "BoxModel"),
    ("bridge.emulator.phantom", "bridge.testing.phantom", "phantom_file"),
    ("bridge.emulator.receiver", "bridge.link.receiver", "FolderWriter"),
    ("bridge.emulator.scanner", "bridge.link.requester", "Scanner"),
    ("bridge.emulator.scanner", "bridge.testing.phantom", "phantom_images"),
    ("bridge.emulator.store_scp", "bridge.testing.store_scp", "EmbeddedStore"),
]


@pytest.mark.parametrize(("old", "new", "name"), DEPRECATED_MOVES)
def test_a_moved_module_still_gives_its_names_with_a_deprecation_warning(
    old: str, new: str, name: str
) -> None:
    stub = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: {name} is now {new}"):
        value = getattr(stub, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        getattr(stub, "NoSuchName")  # noqa: B009
    with pytest.raises(AttributeError), warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(stub, "__path__")  # noqa: B009 - tools probe modules for dunders


def test_an_old_emulator_path_forwards_only_the_names_it_exported() -> None:
    """The stubs of bridge/emulator (bridge._renamed.moved_names) warn where the old name is
    used, and give no name the old module did not export."""
    import bridge.emulator.box as old
    import bridge.testing.box as new

    with pytest.warns(DeprecationWarning) as record:
        assert old.BoxModel is new.BoxModel
    assert [w.filename for w in record] == [__file__]
    assert isinstance(new.log, logging.Logger)
    with pytest.raises(AttributeError), warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(old, "log")  # noqa: B009


def test_the_old_word_stream_import_still_works() -> None:
    with pytest.warns(DeprecationWarning, match="bridge.ports.wordstream is deprecated"):
        from bridge.ports.wordstream import WordStreamDecoder  # noqa: F401


def test_the_link_package_names_both_roles() -> None:
    import bridge.link as link
    from bridge.link.requester import Scanner
    from bridge.link.responder import Responder

    assert link.Scanner is Scanner and link.Responder is Responder
    assert set(link.__all__) <= set(dir(link))


# ------------------------------------------------------------ the spool does not convert

SPOOL_REEXPORTS = {"bridge/spool/ingest.py": {"bridge.ingest", "bridge.spool.objects"}}
"""Modules of bridge/spool kept only so that old imports work -> the modules they re-export."""


def test_the_spool_imports_nothing_from_the_conversion_package() -> None:
    """The spool stores, it does not convert: no module of bridge/spool reaches bridge/dicom
    (directly or through another bridge module), but the re-export kept for old imports."""
    problems = []
    for module in sorted((ROOT / "bridge" / "spool").rglob("*.py")):
        if str(module.relative_to(ROOT)) in SPOOL_REEXPORTS:
            continue
        for path, chain in closure(module).items():
            if path.relative_to(ROOT).parts[:2] == ("bridge", "dicom"):
                problems.append(" -> ".join(str(p.relative_to(ROOT)) for p in chain))
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("path", sorted(SPOOL_REEXPORTS))
def test_a_spool_reexport_module_defines_nothing(path: str) -> None:
    """The one way from bridge/spool to bridge/dicom is a module that only re-exports."""
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.module in SPOOL_REEXPORTS[path], ast.unparse(node)
        elif isinstance(node, ast.Assign):
            assert ast.unparse(node.targets[0]) == "__all__", ast.unparse(node)
        else:
            assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), (
                f"{path}:{node.lineno} does more than re-export: {ast.unparse(node)[:60]}"
            )


def test_importing_the_spool_loads_no_conversion() -> None:
    """At run time too: the spool and its Part 10 helpers load no converter."""
    code = (
        "import sys\n"
        "import bridge.spool, bridge.spool.store, bridge.spool.objects\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('bridge.dicom'))\n"
        "assert loaded == [], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

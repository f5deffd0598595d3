"""Pure packages do no I/O: their imports, read with ast (ARCHITECTURE.md, STYLE rule 1).

A pure package (the link layers, the box protocol and its host engine, the engine shape,
the raw word stream's engine) runs the same in tests, the emulator and the service
because it never opens a socket or device, starts a thread, waits on descriptors, runs a
program or sleeps. This reads every module of :data:`PURE` and fails on an import of
:data:`FORBIDDEN` (or a submodule) and on ``time.sleep`` in any spelling. Add a package
to :data:`PURE` as it becomes pure.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = [
    "bridge/acrnema",
    "bridge/box",
    "bridge/engine.py",
    "bridge/ports/wordstream.py",
]
FORBIDDEN = {"socket", "threading", "_thread", "select", "selectors", "serial", "pyftdi"}
FORBIDDEN |= {"subprocess", "asyncio"}


def violations(source: str, name: str = "<source>") -> list[str]:
    """What in ``source`` does I/O by import, as ``name:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "time" and any(a.name == "sleep" for a in node.names):
                found.append(f"{name}:{node.lineno}: from time import sleep")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "sleep"
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
        ):
            found.append(f"{name}:{node.lineno}: time.sleep")
        found += [
            f"{name}:{node.lineno}: import {module}"
            for module in modules
            if module.split(".")[0] in FORBIDDEN
        ]
    return found


def _modules() -> list[Path]:
    paths: list[Path] = []
    for entry in PURE:
        path = ROOT / entry
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return paths


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_nothing_that_does_io(path: Path) -> None:
    assert violations(path.read_text(), str(path.relative_to(ROOT))) == []


def test_every_pure_package_is_there() -> None:
    for entry in PURE:
        assert (ROOT / entry).exists(), f"{entry} is listed as pure but does not exist"
    assert len(_modules()) >= 12


@pytest.mark.parametrize(
    "source",
    [
        "import threading",
        "import socket as s",
        "from select import select",
        "import serial.tools.list_ports",
        "from pyftdi.serialext import serial_for_url",
        "import subprocess",
        "from time import sleep",
        "import time\ntime.sleep(1)",
        "def f():\n    import threading\n",
    ],
)
def test_the_check_catches_each_kind_of_io(source: str) -> None:
    assert violations(source) != []


def test_the_check_lets_pure_imports_pass() -> None:
    assert violations("import time\nimport numpy\nfrom bridge.box import host\n") == []

"""The pure packages do no I/O: they import no socket, thread, select, serial port, FTDI
library or subprocess, and never sleep (ARCHITECTURE.md, "Layers and packages").

Imports are read from the source with :mod:`ast`, not by importing it, so a lazy import
inside a function counts as much as one at the top. The check follows the pure modules'
imports of other ``bridge`` modules (``bridge.lenient``, ``bridge.profile``, the package
``__init__``...), so a pure module cannot reach I/O through a helper either. Imports under
``if TYPE_CHECKING:`` never run and are not followed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PURE = [
    "bridge/acrnema",
    "bridge/dicom",
    "bridge/box",
    "bridge/engine.py",
    "bridge/wordstream.py",
    "bridge/settings",
    "bridge/status/model.py",
]
"""Packages and modules that must stay pure: the protocol engines (the link layers, the box
protocol and host, the raw word stream), settings, data sets and conversion."""

FORBIDDEN = frozenset(
    {
        # the list of ARCHITECTURE.md ...
        "socket",
        "threading",
        "select",
        "serial",
        "pyftdi",
        "subprocess",
        # ... and the same machinery under other names
        "_thread",
        "selectors",
        "socketserver",
        "multiprocessing",
        "concurrent",
        "asyncio",
    }
)
"""Top-level module names a pure module may not import; and ``time.sleep`` is refused."""


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def imports_of(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import that runs; ``from a import b`` gives a.b too."""
    out: list[tuple[int, str]] = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return out


def violations_in(source: str, path: str = "<source>") -> list[Violation]:
    """The forbidden imports and sleeps of one module's source."""
    found = []
    time_names = set()
    for line, module in imports_of(source):
        top = module.split(".")[0]
        if top in FORBIDDEN:
            found.append(Violation(path, line, f"imports {module}"))
        if module == "time.sleep":
            found.append(Violation(path, line, "imports time.sleep"))
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            time_names |= {a.asname or a.name for a in node.names if a.name == "time"}
    for node in _runtime_nodes(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "sleep"
            and isinstance(node.value, ast.Name)
            and node.value.id in time_names
        ):
            found.append(Violation(path, node.lineno, "calls time.sleep"))
    return sorted(found, key=lambda v: v.line)


def _module_file(module: str) -> Path | None:
    """The file of a ``bridge`` module, or None (a name inside a module, or not ours)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def closure(start: Path) -> dict[Path, list[Path]]:
    """Every ``bridge`` module ``start`` imports, directly or not -> the chain to it."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        path = todo.pop()
        for _, module in imports_of(path.read_text()):
            if module.split(".")[0] != "bridge":
                continue
            parts = module.split(".")
            # importing bridge.a.b runs bridge/__init__.py and bridge/a/__init__.py too
            for n in range(1, len(parts) + 1):
                target = _module_file(".".join(parts[:n]))
                if target is not None and target not in chains:
                    chains[target] = [*chains[path], target]
                    todo.append(target)
    return chains


def _pure_modules() -> list[Path]:
    modules = []
    for package in PURE:
        where = ROOT / package
        modules.extend([where] if where.suffix == ".py" else sorted(where.rglob("*.py")))
    return modules


@pytest.mark.parametrize("package", PURE)
def test_pure_package_exists(package: str) -> None:
    where = ROOT / package
    found = where.is_file() if where.suffix == ".py" else (where / "__init__.py").is_file()
    assert found, f"{package} moved: update PURE"


def test_pure_packages_do_no_io() -> None:
    problems = []
    for module in _pure_modules():
        for path, chain in closure(module).items():
            via = " -> ".join(str(p.relative_to(ROOT)) for p in chain)
            problems.extend(f"{v} (via {via})" for v in violations_in(path.read_text(), via))
    assert problems == [], "\n".join(problems)


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import threading as t",
        "from threading import Thread",
        "import select",
        "import serial.tools.list_ports",
        "from pyftdi.ftdi import Ftdi",
        "import subprocess",
        "from concurrent.futures import ProcessPoolExecutor",
        "import asyncio",
        "from time import sleep",
        "import time\ntime.sleep(0.1)",
        "import time as clock\nclock.sleep(1)",
        "def later():\n    import socket\n    return socket",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    import select",
    ],
)
def test_checker_finds_io(source: str) -> None:
    assert violations_in(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import time\nnow = time.monotonic()",
        "import struct, enum, numpy",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import socket",
        "import logging",
        "sleep = 3\nx = sleep",
    ],
)
def test_checker_accepts_pure_code(source: str) -> None:
    assert violations_in(source) == []


def test_checker_follows_bridge_imports(tmp_path: Path) -> None:
    """A pure module that reaches I/O through another bridge module is found."""
    chains = closure(ROOT / "bridge" / "dicom" / "core.py")
    reached = {str(p.relative_to(ROOT)) for p in chains}
    assert {"bridge/__init__.py", "bridge/lenient.py", "bridge/acrnema/elements.py"} <= reached
    assert "bridge/ports/base.py" not in reached  # TYPE_CHECKING imports are not followed
    service = closure(ROOT / "bridge" / "service.py")
    assert any("bridge/ports" in str(p) for p in service)

"""No name means two things (issue 10, item 5): every public class or type alias is
defined once under bridge/, whatever module it is in.

A module may re-export a name (``from bridge.x import Name``) or keep an old name as an
alias (``Old = New``, or a deprecated name through ``bridge._renamed``); those are not
definitions. What counts is a ``class Name`` or a type alias (``Name = A | B``,
``Name = Literal[...]``), at the top of a module.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_CAMEL = re.compile(r"^[A-Z](?![A-Z0-9_]*$)\w*$")  # CamelCase: not a CONSTANT, not _private


def definitions(source: str) -> list[str]:
    """The public classes and type aliases a module's source defines at its top level."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            aliased = isinstance(node.value, ast.Name | ast.Attribute | ast.Call | None)
            for target in targets:
                if isinstance(target, ast.Name) and not aliased:
                    names.append(target.id)
    return [name for name in names if _CAMEL.match(name)]


def test_definitions_reads_classes_and_type_aliases_but_not_re_exports() -> None:
    source = (
        "from x import Frame\nclass Message: ...\nclass _Private: ...\n"
        "Event = Message | Frame\nOld = Message\nPair = tuple[int, int]\nLIMIT = 3\n"
    )
    assert definitions(source) == ["Message", "Event", "Pair"]


def test_no_public_class_name_is_defined_twice_under_bridge() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        for name in definitions(path.read_text()):
            where[name].append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert twice == {}


RENAMED = [
    ("bridge.box.protocol", "Frame", "BoxFrame"),
    ("bridge.box.protocol", "FrameDecoder", "BoxFrameDecoder"),
    ("bridge.box.protocol", "Message", "BoxMessage"),
    ("bridge.box.protocol", "Sender", "FrameSender"),
    ("bridge.ports.boxproto", "Frame", "BoxFrame"),
    ("bridge.wordstream", "LineState", "LineStateUnit"),
    ("bridge.profile", "Physical", "PhysicalSection"),
    ("bridge.profile", "Datalink", "DatalinkSection"),
    ("bridge.profile", "Transport", "TransportSection"),
    ("bridge.profile", "Session", "SessionSection"),
    ("bridge.profile", "Application", "ApplicationSection"),
    ("bridge.ports.base", "LinkDown", "LinkLost"),
    ("bridge.ports", "LinkDown", "LinkLost"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_an_old_name_still_imports_with_a_deprecation_warning(
    module: str, old: str, new: str
) -> None:
    import importlib

    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=old):
        value = getattr(mod, old)
    assert value is getattr(mod, new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(mod, new)
    with pytest.raises(AttributeError):
        getattr(mod, "NoSuchName")  # noqa: B009

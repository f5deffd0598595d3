"""The documents of the repository link only inside it, to files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _local_targets(path: Path) -> list[str]:
    return [t for t in LINK.findall(path.read_text()) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_resolve_inside_the_repository(path: Path) -> None:
    broken = []
    for target in _local_targets(path):
        file = (path.parent / target.split("#")[0]).resolve()
        if not file.is_relative_to(ROOT) or not file.exists():
            broken.append(target)
    assert broken == []


def test_readme_points_only_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    assert re.findall(r"https?://", text) == []
    assert "shared/design" not in text  # the architecture is docs/architecture.md
    for name in ("docs/architecture.md", "docs/api.md", "LICENSE", "CHANGELOG.md"):
        assert f"]({name})" in text, name

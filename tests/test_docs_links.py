"""Every relative link in the README and the docs points at a file that exists.

Sphinx checks links between pages it builds; this covers the README (read on the
forge and on PyPI, never built) and plain Markdown links inside docs/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_points_at_the_docs_and_keeps_its_set_up_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Documentation" in readme
    assert "(docs/tutorial.md)" in readme
    for marker in ("doctor-command", "test-command"):
        assert f"<!-- {marker} -->" in readme and f"<!-- /{marker} -->" in readme

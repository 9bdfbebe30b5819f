"""Every link in the README and the docs points at a file that exists.

Sphinx checks links between pages it builds; this covers the README (read on the
forge and on PyPI, never built) and plain Markdown links inside docs/. PyPI shows the
README away from the repository, so its links are absolute: into the repository named by
pyproject's Source URL, each resolving to a file (or directory) of this checkout.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PAGES = [REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
README = (REPO / "README.md").read_text(encoding="utf-8")
SOURCE = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"][
    "Source"
]
# Where a link to this repository's main branch points, by kind: a page, a directory, raw bytes.
OWNER_NAME = SOURCE.removeprefix("https://github.com/")
INTO_REPO = {
    f"{SOURCE}/blob/main/": Path.is_file,
    f"{SOURCE}/tree/main/": Path.is_dir,
    f"https://raw.githubusercontent.com/{OWNER_NAME}/main/": Path.is_file,
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_links_are_absolute_and_resolve_in_this_checkout() -> None:
    targets = LINK.findall(README)
    assert targets
    relative = [t for t in targets if "://" not in t]
    assert not relative, f"relative links break on PyPI: {relative}"
    broken = []
    for target in targets:
        for prefix, exists in INTO_REPO.items():
            if target.startswith(prefix):
                if not exists(REPO / target.removeprefix(prefix)):
                    broken.append(target)
                break
        else:
            if target.startswith(SOURCE + "/"):
                broken.append(target)  # into the repository, but not a main-branch path
    assert not broken, f"README links to paths this checkout does not have: {broken}"


def test_readme_puts_the_install_command_first_and_keeps_its_set_up_commands() -> None:
    assert README.index("pip install securemem") < README.index("```python")
    assert "pip install 'securemem[crypto]'" in README
    assert "## Documentation" in README
    assert f"({SOURCE}/blob/main/docs/tutorial.md)" in README
    for marker in ("doctor-command", "test-command"):
        assert f"<!-- {marker} -->" in README and f"<!-- /{marker} -->" in README
    # The checkout's set-up comes after what a user of the released package needs.
    assert README.index("pip install securemem") < README.index("<!-- doctor-command -->")

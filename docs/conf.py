"""Sphinx configuration for the securemem documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html``; run the examples:
``python -m sphinx -W -b doctest docs docs/_build/doctest``. Both run in ``.ci/run``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import securemem

project = "securemem"
author = "securemem developers"
copyright = "2026, securemem developers"  # Sphinx reads this name
release = securemem.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"securemem {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Every example runs with a fresh namespace that already has securemem imported.
doctest_global_setup = """
import securemem
from securemem import SecureBytes
"""


# Arena methods that are not something users call: its contract with SecureBytes (they take
# and return internal slot objects) and the inspection hooks the tests and benchmarks use. Left
# out of the reference so it shows what users use.
ALLOCATOR_PROTOCOL = (
    "allocate",
    "allocate_into",
    "release_from",
    "release_after_views",
    "free",
    "mapped_ranges",
    "locked_pages",
)


class SecurememAPI(SphinxDirective):
    """``.. securemem-api::`` documents whatever securemem exports when the docs are built.

    The package itself (its ``__all__``) and each public submodule that imports
    here (``securemem.crypto`` needs cryptography, for instance), so the reference
    never lists a name the installed package does not have.
    """

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. automodule:: securemem",
            "   :members:",
            "   :imported-members:",
            f"   :exclude-members: {', '.join(ALLOCATOR_PROTOCOL)}",
            "",
        ]
        for info in sorted(pkgutil.iter_modules(securemem.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            name = f"securemem.{info.name}"
            try:
                importlib.import_module(name)
            except ImportError:
                continue  # an optional dependency is missing: nothing to document
            lines += [name, "-" * len(name), "", f".. automodule:: {name}", "   :members:"]
            # A name the package exports too (securemem.crypto.KeyFormatError is
            # securemem.KeyFormatError) is documented once, under the package.
            again = sorted(set(securemem.__all__) & set(getattr(securemem, info.name).__all__))
            lines += [f"   :exclude-members: {', '.join(again)}"] if again else []
            lines += [""]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="securemem-api"), container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("securemem-api", SecurememAPI)
    return {"parallel_read_safe": True}

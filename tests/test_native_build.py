"""The cffi module's declarations (build_support/native_build.py) are its headers' own.

cffi's cdef cannot read securemem/_c's headers (no preprocessor), so the builder repeats what
Python calls. A prototype edited in one place and not the other would still compile when
only an integer type changed (the generated C converts it silently), and Python would pass
or read values of the wrong width: this test is what ties the two copies together.
"""

from __future__ import annotations

import importlib.util
import re
from typing import cast

import pytest

from tests.conftest import REPO

BUILDER = REPO / "build_support" / "native_build.py"

# The installed wheel's test stage runs these tests with no source tree beside them.
pytestmark = pytest.mark.skipif(
    not BUILDER.is_file(), reason="no source tree beside these tests (an installed wheel)"
)


def _declarations() -> dict[str, str]:
    if not BUILDER.is_file():
        return {}
    spec = importlib.util.spec_from_file_location("native_build", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast("dict[str, str]", module.DECLARATIONS)


def _statements(c_text: str) -> list[str]:
    """The text's declarations, comments dropped and whitespace made single spaces."""
    text = re.sub(r"/\*.*?\*/", " ", c_text, flags=re.S)
    return [" ".join(part.split()) for part in text.split(";") if part.strip()]


DECLARATIONS = _declarations()


@pytest.mark.parametrize("header", sorted(DECLARATIONS))
def test_each_declaration_is_the_headers_own(header: str) -> None:
    source = (REPO / "securemem" / "_c" / header).read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    prototypes = set(_statements(code))
    constants = set(re.findall(r"^\s*#\s*define\s+(\w+)", source, flags=re.M))
    missing = []
    declared = _statements(DECLARATIONS[header])
    assert declared, f"nothing declared for {header}"
    for statement in declared:
        constant = re.fullmatch(r"static const int (\w+)", statement)
        if constant is not None:
            if constant.group(1) not in constants:
                missing.append(f"#define {constant.group(1)}")
        elif statement not in prototypes:
            missing.append(statement)
    assert not missing, f"build_support/native_build.py declares, {header} does not: {missing}"

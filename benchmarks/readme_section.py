"""Print the README's "Benchmarks" tables from a results.json, to paste after a new run.

    python3 -m benchmarks.readme_section [benchmarks/results/results.json]

The README shows the targets and the first two workloads; benchmarks/results/results.md has
all six.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import _report

DEFAULT = Path(__file__).resolve().parent / "results" / "results.json"


def section(results: dict[str, Any]) -> str:
    markdown = _report.markdown(results)
    lines = markdown.splitlines()
    machine = lines[2]
    keep: list[str] = []
    for heading in ("## Targets", "## 1.", "## 2."):
        start = next(i for i, line in enumerate(lines) if line.startswith(heading))
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        title = lines[start].replace("## ", "", 1)
        keep += [f"**{title}**", *lines[start + 1 : end]]
    return "\n".join([machine, "", *keep]).rstrip() + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    print(section(json.loads(path.read_text(encoding="utf-8"))), end="")


if __name__ == "__main__":
    main()

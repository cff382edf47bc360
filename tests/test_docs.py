"""The documentation's links point at files that exist.

The README and the benchmark log link reports, results and scripts by relative path; a moved or
renamed file would leave a link that GitHub shows as a 404. Anchors (``#...``) and web addresses
are not checked here (no network in tests).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Markdown link targets: ``[text](target)``, the target without spaces.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "bench").rglob("README.md"))]


def local_targets(markdown: str) -> list[str]:
    """Relative link targets of ``markdown`` (web addresses, mail and bare anchors left out),
    each without its ``#anchor``."""
    out = []
    for target in LINK.findall(markdown):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        out.append(target.split("#", 1)[0])
    return out


def test_local_targets_parses_links() -> None:
    text = "see [a](x/y.md#s), [b](https://e.org), [c](#top) and ![p](img.png)"
    assert local_targets(text) == ["x/y.md", "img.png"]


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    missing = [
        t
        for t in local_targets(doc.read_text(encoding="utf-8"))
        if not (doc.parent / t).resolve().exists()
    ]
    assert not missing, f"{doc.relative_to(REPO)}: links to missing files: {missing}"

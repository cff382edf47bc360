"""The house's rules that import-linter cannot see: benchmarks never import the tests, and the
data commands that need no model really load neither torch nor DALI when they run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_never_imports_tests() -> None:
    offenders = []
    for path in sorted((REPO / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            offenders += [
                f"{path.relative_to(REPO)}: {m}" for m in mods if m.split(".")[0] == "tests"
            ]
    assert not offenders, offenders


def test_inspect_build_and_verify_load_no_torch_or_dali() -> None:
    """Importing the CLI and the modules behind `mvdata sources|inspect|build|verify|info` loads
    neither torch nor DALI (the static contract says the same of the import graph)."""
    code = (
        "import sys\n"
        "import cli.mvdata_app, mvdata.sources.inspect, mvdata.build.driver\n"
        "import mvdata.shards.verify, mvdata.shards.info, mvdata.synth.writer\n"
        "from mvdata.sources.registry import list_sources\n"
        "list_sources()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'nvidia', 'lancedb'))\n"
        "print(bad[:5])\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr

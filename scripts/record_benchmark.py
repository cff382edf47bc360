"""Copy a finished ``mvmodel benchmark`` OUT's record into ``bench/results/benchmark/NAME/``:
``benchmark.json``, ``configs/`` (the training configs as run, ``.base.yaml`` included) and
``report/`` (each report's ``report.md``, ``report.json`` and plots, sub-reports included). The
shards, runs, synthetic data and logs stay where they are (gigabytes; the manifest hash in the
report names the shards).

    python scripts/record_benchmark.py /tmp/bench/seed9-fp32 seed9-fp32-simclr

Refuses an OUT without a finished report (``benchmark.json`` naming it) and a NAME that exists:
a record is written once. The copy is made in a temporary folder beside the destination and
renamed into place, so a killed copy never looks like a record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import stat
import sys
import tempfile
from pathlib import Path

#: What a record keeps of a report folder (the plots, the Markdown and the JSON).
REPORT_FILES = ("*.md", "*.json", "*.png")

DEFAULT_DEST = Path(__file__).resolve().parent.parent / "bench" / "results" / "benchmark"


def record_benchmark(out: Path, name: str, dest_root: Path = DEFAULT_DEST) -> Path:
    """Copy ``out``'s benchmark record to ``dest_root / name`` and return that folder."""
    record = out / "benchmark.json"
    if not record.is_file():
        raise ValueError(f"{out}: no benchmark.json (is it a `mvmodel benchmark` OUT?)")
    doc = json.loads(record.read_text(encoding="utf-8"))
    if not doc.get("report") or not (out / "report" / "report.json").is_file():
        raise ValueError(f"{record}: the benchmark has not written its report yet")
    dest = dest_root / name
    if dest.exists():
        raise ValueError(f"{dest} exists: a record is written once (choose another NAME)")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest_root))
    try:
        # mkdtemp makes its folder private (0700); a record gets the mode of the folder it sits in
        tmp.chmod(stat.S_IMODE(dest_root.stat().st_mode))
        shutil.copy2(record, tmp / "benchmark.json")
        (tmp / "configs").mkdir()
        for cfg in sorted((out / "configs").glob("*.yaml")):  # pathlib's * matches .base.yaml
            shutil.copy2(cfg, tmp / "configs" / cfg.name)
        for src in sorted((out / "report").rglob("*")):
            if src.is_file() and any(src.match(p) for p in REPORT_FILES):
                target = tmp / "report" / src.relative_to(out / "report")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the benchmark's OUT folder")
    parser.add_argument("name", help="the record's folder name under bench/results/benchmark/")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        dest = record_benchmark(args.out, args.name, args.dest)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        print(path.relative_to(dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

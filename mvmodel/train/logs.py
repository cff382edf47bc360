"""The run log: one JSON object a line in ``RUN/log.jsonl`` (rank 0 writes it), TensorBoard
scalars as an option.

Records have a ``kind``: ``"step"`` (loss terms, temperature, learning rate, pseudo-label
confidence, throughput), ``"epoch"`` (pseudo-label agreement with the held-back labels, per
class: a measurement; ``partial`` when it covers only part of the epoch, after a resume that
landed inside it), ``"event"`` (start, resume, checkpoint, stop). A resumed run appends; a
reader keeps, for each step, the last record written, but an epoch's whole record over a
partial redo of it (:func:`read_log`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["RunLog", "logged_training_seconds", "read_log", "run_progress"]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become strings, tensors and numpy scalars become numbers."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class RunLog:
    """Append records to ``log.jsonl`` (flushed per line) and, optionally, to TensorBoard."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool = False) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        self._fh = self.path.open("a", encoding="utf-8") if enabled else None
        self._tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ValueError(
                    "run.tensorboard=true needs the tensorboard package: pip install tensorboard"
                ) from exc
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record (rank 0 only; a no-op elsewhere)."""
        if self._fh is None:
            return
        rec = {"kind": kind, "time": round(time.time(), 3), **_clean(fields)}
        self._fh.write(json.dumps(rec, sort_keys=True) + "\n")
        self._fh.flush()
        if self._tb is not None and "step" in fields:
            for key, value in rec.items():
                if isinstance(value, int | float) and key not in ("step", "time"):
                    self._tb.add_scalar(f"{kind}/{key}", value, int(fields["step"]))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _raw_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of ``RUN/log.jsonl`` in file order (a torn last line is skipped)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run log (is {run_dir} a training run directory?)")
    records: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def logged_training_seconds(run_dir: Path) -> tuple[float, int] | None:
    """(seconds, sittings): the training time a run's log accounts for, summed over its
    sittings. A sitting runs from a start or resume event to the last timed record before the
    next one, so the time of a sitting that was killed (and resumed later) still counts; the
    steps it redoes after its last checkpoint count twice, as they were paid for twice. None
    when there is no log or no start event."""
    try:
        records = _raw_records(run_dir)
    except FileNotFoundError:
        return None
    total, sittings, begun, latest = 0.0, 0, None, 0.0
    for rec in records:
        when = rec.get("time")
        if not isinstance(when, int | float):
            continue
        if rec.get("kind") == "event" and rec.get("event") in ("start", "resume"):
            if begun is not None:
                total += latest - begun
            begun, latest, sittings = float(when), float(when), sittings + 1
        elif begun is not None:
            latest = max(float(when), latest)
    if begun is None:
        return None
    return round(total + latest - begun, 1), sittings


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``RUN/log.jsonl``; of repeated (kind, step) pairs (a resumed run redoes
    the steps after its last checkpoint) the last one is kept, except that an epoch measured
    whole is not replaced by the partial measurement of a resume that landed inside it (the
    resumed steps are the killed sitting's again, so the whole record is the better one). A
    torn last line (a killed run) is skipped."""
    records = _raw_records(run_dir)
    last: dict[tuple[str, Any], int] = {}
    for i, rec in enumerate(records):
        if rec.get("kind") in ("step", "epoch"):
            key = (rec["kind"], rec.get("step", rec.get("epoch")))
            earlier = records[last[key]] if key in last else None
            if earlier is not None and rec.get("partial") and not earlier.get("partial"):
                continue
            last[key] = i
    keep = set(last.values())
    return [r for i, r in enumerate(records) if r.get("kind") not in ("step", "epoch") or i in keep]


#: The progress line's pace is taken over this much of the latest logged time: a pause (a
#: suspended process, a test run beside the training) ages out of it, where a pace since the
#: start would carry it, and a wrong time left, to the end of a two-hour run.
PACE_WINDOW_SECONDS = 600.0


def run_progress(run_dir: Path) -> str | None:
    """One line on a run in progress, from its log: ``step 1,200 of 6,280 (1.10 s a step,
    about 93 min left)``. The rate is over the steps logged in the last
    :data:`PACE_WINDOW_SECONDS` since the last start or resume (so a resumed run's setup, an
    earlier machine and an old pause do not skew it; over every step since then when that
    window holds fewer than two); ``None`` while the log has no start event or no step yet, or
    no log at all (the run has not begun writing)."""
    try:
        records = read_log(run_dir)
    except FileNotFoundError:
        return None
    begun = [
        i
        for i, r in enumerate(records)
        if r.get("kind") == "event" and r.get("event") in ("start", "resume")
    ]
    if not begun:
        return None
    start = records[begun[-1]]
    # Only well-formed rows: the line is a courtesy, and a benchmark waiting on a two-hour run
    # must not stop over a record it cannot read.
    steps = [
        r
        for r in records[begun[-1] :]
        if r.get("kind") == "step"
        and isinstance(r.get("step"), int)
        and isinstance(r.get("time"), int | float)
    ]
    if not steps:
        return None
    last, total = steps[-1], start.get("total_steps")
    line = f"step {last['step']:,}" + (f" of {total:,}" if isinstance(total, int) else "")
    if len(steps) < 2 or last["step"] <= steps[0]["step"]:
        return line
    recent = [r for r in steps if r["time"] >= last["time"] - PACE_WINDOW_SECONDS]
    first = recent[0] if len(recent) >= 2 else steps[0]  # steps rise within a sitting
    rate = (last["time"] - first["time"]) / (last["step"] - first["step"])
    left = (
        f", about {rate * (total - last['step']) / 60:.0f} min left"
        if isinstance(total, int)
        else ""
    )
    return f"{line} ({rate:.2f} s a step{left})"

"""``mvmodel plot RUN``: the run's curves as one PNG (matplotlib, headless).

Panels: the loss and its terms per step; the temperature and the confident fraction of the
pseudo-labels; the agreement with the held-back labels per epoch (pseudo-labels, the image
model's zero-shot guess, the geometric prior's guess: a measurement, nothing trained on it);
throughput and the share of time spent waiting for data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mvmodel.train.logs import read_log

__all__ = ["plot_run"]


def _series(records: Sequence[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(y)
        if isinstance(v, int | float) and x in r:
            xs.append(float(r[x]))
            ys.append(float(v))
    return xs, ys


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``RUN/log.jsonl`` into ``out`` (default ``RUN/curves.png``); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mvdata.io import atomic_write

    run_dir = Path(run_dir)
    records = read_log(run_dir)
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not steps:
        raise ValueError(f"{run_dir / 'log.jsonl'}: no step records to plot yet")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    ax = axes[0][0]
    for key in ("loss", "loss_multiview", "loss_i2t", "loss_i2t_views", "loss_t2i"):
        xs, ys = _series(steps, "step", key)
        if xs:
            ax.plot(xs, ys, label=key, lw=2.0 if key == "loss" else 1.0)
    ax.set_xlabel("step")
    ax.set_title("loss terms")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for key in (
        "tau",
        "confident_fraction",
        "masked_fraction",
        "alpha",
        "image_trust",
        "pos_sim",
        "neg_sim",
    ):
        xs, ys = _series(steps, "step", key)
        if xs:
            ax.plot(xs, ys, label=key)
    ax.set_xlabel("step")
    ax.set_title("temperature, pseudo-label confidence, similarities")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    for key, style in (("pseudo/overall", "-o"), ("image/overall", "-s"), ("prior/overall", "--")):
        xs, ys = _series(epochs, "step", key)
        if xs:
            ax.plot(xs, ys, style, label=key.split("/")[0])
    ax.set_ylim(0, 1)
    ax.set_xlabel("step (end of epoch)")
    ax.set_title("agreement with held-back labels (measurement only)")
    if epochs:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no epoch finished yet", ha="center", transform=ax.transAxes)
    ax = axes[1][1]
    xs, ys = _series(steps, "step", "samples_per_s")
    if xs:
        ax.plot(xs, ys, label="samples/s")
    ax.set_xlabel("step")
    ax.set_title("throughput")
    twin = ax.twinx()
    xs, ys = _series(steps, "step", "data_fraction")
    if xs:
        twin.plot(xs, ys, color="tab:red", alpha=0.6, label="waiting for data")
        twin.set_ylim(0, 1)
        twin.set_ylabel("share of time waiting for data", color="tab:red")
    fig.suptitle(f"mvmodel run {run_dir.name}")
    target = Path(out) if out is not None else run_dir / "curves.png"
    from io import BytesIO

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(target, buf.getvalue())
    return target

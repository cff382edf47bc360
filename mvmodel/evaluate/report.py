"""The evaluation report: ``report.json`` (everything), ``report.md`` (the tables a reader wants)
and three PNGs: confusion matrices, a 2-D t-SNE map of the main model's embeddings coloured by
expression and by subject, and the pseudo-label agreement over training (from ``log.jsonl``).

Accuracies in the Markdown are percentages: mean ± std over the test folds, and in brackets the
95 % interval of the POOLED accuracy (all test samples together: the fold mean's equal when the
folds hold as many samples each) from a bootstrap over test subjects. NMI and ARI: mean ± std
over folds. The Student-t interval over folds (``ci95`` in the JSON) treats folds as
independent, which their overlapping training sets are not (cross-validation mode): too narrow.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mvdata.io import atomic_write
from mvmodel.evaluate.protocols import Selection

__all__ = [
    "machine_info",
    "markdown",
    "plot_confusions",
    "plot_embedding_map",
    "plot_training",
    "summary_lines",
    "target_checks",
    "training_series",
    "write_report",
]

#: Samples at most in the t-SNE map (a seeded subset above this).
MAP_MAX_SAMPLES = 2000
METRICS: tuple[tuple[str, str], ...] = (
    ("linear_probe", "linear probe"),
    ("knn", "kNN"),
    ("zero_shot", "zero-shot"),
)


def machine_info() -> dict[str, Any]:
    """CPU model, core count, GPU names, OS and the versions of the numerical stack."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpus": [],
    }
    try:
        import sklearn
        import torch

        info["torch"] = torch.__version__
        info["sklearn"] = sklearn.__version__
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # the report still says what it can
        pass
    return info


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    atomic_write(path, buf.getvalue())


def plot_confusions(path: Path, panels: Sequence[tuple[str, Any]], classes: Sequence[str]) -> None:
    """Row-normalised confusion matrices (title, counts ``[K, K]``) side by side, each cell
    annotated with its percentage of the true class."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), constrained_layout=True, squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels, strict=True):
        cm = np.asarray(counts, dtype=np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        k = len(classes)
        ax.set_xticks(range(k), list(classes), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), list(classes), fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
        for i in range(k):
            for j in range(k):
                v = norm[i, j]
                if v >= 0.005:
                    ax.text(
                        j,
                        i,
                        f"{100 * v:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if v > 0.6 else "black",
                    )
    _save(fig, path)


def plot_embedding_map(
    path: Path,
    x: NDArray[Any],
    expressions: Sequence[str],
    subjects: Sequence[str],
    *,
    title: str,
    seed: int = 0,
) -> dict[str, Any]:
    """t-SNE (scikit-learn, PCA init, seeded) of ``x`` in two panels: coloured by expression
    (legend) and by subject (one colour each, no legend). Returns what was drawn."""
    from sklearn.manifold import TSNE

    plt = _plt()
    n = len(x)
    idx = np.arange(n)
    if n > MAP_MAX_SAMPLES:
        idx = np.sort(np.random.default_rng(seed).choice(n, MAP_MAX_SAMPLES, replace=False))
    pts = np.asarray(x, dtype=np.float64)[idx]
    perplexity = float(min(30.0, max(2.0, (len(idx) - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        pts
    )
    expr = np.asarray(expressions, dtype=object)[idx]
    subj = np.asarray(subjects, dtype=object)[idx]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for i, e in enumerate(sorted(set(expr.tolist()))):
        m = expr == e
        axes[0].scatter(xy[m, 0], xy[m, 1], s=9, color=cmap(i % 10), label=e)
    axes[0].legend(fontsize=7, markerscale=2, loc="best")
    axes[0].set_title(f"{title}: coloured by expression", fontsize=9)
    names = sorted(set(subj.tolist()))
    hsv = plt.get_cmap("hsv")
    colour = {s: hsv(i / max(len(names), 1)) for i, s in enumerate(names)}
    axes[1].scatter(xy[:, 0], xy[:, 1], s=9, c=[colour[s] for s in subj])
    axes[1].set_title(f"coloured by subject ({len(names)} subjects)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path)
    return {"method": "t-SNE", "samples": len(idx), "perplexity": perplexity, "seed": seed}


#: Pseudo-label roles of runs whose loss did not train on them, and the mark their number gets.
_UNTRAINED_ROLE_MARKS = {"unused": "(unused)", "replaced by labels": "(labels)"}


def training_series(
    curves: Mapping[str, list[dict[str, Any]]],
    pseudo_roles: Mapping[str, str] | None = None,
) -> list[tuple[int, str, str, list[int], list[float]]]:
    """The curves :func:`plot_training` draws: ``(run index, style, legend label, steps,
    agreements)``. The pseudo-labels of each run (solid), its image zero-shot guess (dashed)
    and the geometric prior (dotted, the first run only).

    ``pseudo_roles`` (run -> the ``role`` of its pseudo-labels): a run whose loss did not train
    on them (``unused``, ``replaced by labels``) gets no pseudo-label curve, as the loop still
    measures them and a line at 1.0 would read as if they had taught it. Runs not named keep
    the curve (reports written before the role was recorded)."""
    roles = pseudo_roles or {}
    series = []
    for i, (name, recs) in enumerate(curves.items()):
        for key, style, label in (
            ("pseudo/overall", "-", "pseudo-labels"),
            ("image/overall", "--", "image zero-shot"),
            ("prior/overall", ":", "prior"),
        ):
            if key == "prior/overall" and i > 0:
                continue
            if key == "pseudo/overall" and roles.get(name, "") in _UNTRAINED_ROLE_MARKS:
                continue
            pts = [
                (int(r["step"]), float(r[key]))
                for r in recs
                if isinstance(r.get(key), int | float) and isinstance(r.get("step"), int)
            ]
            if pts:
                series.append(
                    (i, style, f"{name}: {label}", [x for x, _ in pts], [y for _, y in pts])
                )
    return series


def plot_training(
    path: Path,
    curves: dict[str, list[dict[str, Any]]],
    pseudo_roles: Mapping[str, str] | None = None,
) -> bool:
    """Agreement with the held-back labels per epoch (measured during training), the curves of
    :func:`training_series`. False when no run has epoch records."""
    plt = _plt()
    if not any(curves.values()):
        return False
    fig, ax = plt.subplots(figsize=(11, 4.5), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for i, style, label, xs, ys in training_series(curves, pseudo_roles):
        ax.plot(xs, ys, style, color=cmap(i % 10), marker="o", ms=3, label=label)
    ax.set_xlabel("training step (each point: the end of an epoch, or of the run)")
    ax.set_ylabel("agreement with held-back labels")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        "measured on the training samples each epoch (labels train only a supervised run)",
        fontsize=9,
    )
    # Beside the axes, not inside: with seven methods a legend inside hides the curves.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
    return True


# --------------------------------------------------------------------------- markdown
def _pct(stat: dict[str, Any] | None, ci_key: str = "ci95_subjects") -> str:
    if not stat or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "–"
    text = f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
    ci = stat.get(ci_key)
    if ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _pseudo_role(info: dict[str, Any]) -> str:
    """The recorded role of a model's pseudo-labels ('' in reports written before it was)."""
    return str((info.get("pseudo_labels") or {}).get("role", ""))


def _last_pseudo(info: dict[str, Any], last: dict[str, Any]) -> dict[str, Any] | None:
    """The last epoch's pseudo-label agreement with the run's recorded role, for
    :func:`_pseudo_cell` (None when the epoch has no number)."""
    v = last.get("pseudo/overall")
    if not isinstance(v, int | float):
        return None
    return {"accuracy": v, "role": _pseudo_role(info)}


def _pseudo_cell(pl_: dict[str, Any] | None) -> str:
    """The pseudo-label agreement, said to be unused or labels where the run's loss made it so
    (reports written before the role was recorded show the bare number)."""
    if not pl_:
        return "–"
    text = f"{100 * pl_['accuracy']:.1f}"
    mark = _UNTRAINED_ROLE_MARKS.get(str(pl_.get("role", "")))
    return f"{text} {mark}" if mark else text


def _num(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _share(stat: dict[str, Any] | None) -> str:
    """A share pooled over the test folds, then its mean ± std over the folds, in %."""
    if not stat or stat.get("pooled") is None:
        return "–"
    text = f"{100 * stat['pooled']:.1f}"
    if stat.get("n_folds", 0) > 1:
        text += f" ({100 * stat['mean']:.1f} ± {100 * stat['std']:.1f})"
    return text


def _neighbour_section(methods: dict[str, Any], main: str, n_test: int | None) -> list[str]:
    """What each method's neighbourhoods are organised by (reports written before 2026-12-07
    have no ``neighbours`` and get no section)."""
    rows = {n: r["neighbours"] for n, r in methods.items() if r.get("neighbours")}
    if not rows:
        return []
    first = next(iter(rows.values()))
    chance_class = first["chance_class"]["pooled"]
    chance_subject = first["chance_subject"]["pooled"]
    pool = f"the {n_test} test samples" if n_test else "the test samples"
    L = ["## Nearest neighbours: organised by expression or by subject?", ""]
    L.append(
        f"For each of {pool} of the test folds pooled (in brackets: mean ± std over the test "
        "folds, each fold its own pool), cosine, no fit: the share whose nearest other sample "
        "is of **the same subject**, and the share whose nearest sample **of another subject** "
        "shows the same expression. A random neighbour would give "
        f"{100 * chance_subject:.1f} % and {100 * chance_class:.1f} % (pooled). "
        "Identity-driven features (raw pixels, an untrained encoder) put a face next to its own "
        "subject's other scans; an expression representation next to other subjects' faces of "
        "its expression."
    )
    L.append("")
    L += _method_table(
        ("same subject, %", "same expression (another subject), %"),
        {n: (_share(nb["same_subject"]), _share(nb["same_class"])) for n, nb in rows.items()},
        main,
    )
    return L


def _method_table(
    header: tuple[str, ...], cells: dict[str, tuple[str, ...]], main: str
) -> list[str]:
    """A Markdown table with one row per method (the main one in bold) and a blank line."""
    L = ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for name, row in cells.items():
        label = f"**{name}**" if name == main else name
        L.append(f"| {label} | " + " | ".join(row) + " |")
    return [*L, ""]


def _spread_section(methods: dict[str, Any], main: str) -> list[str]:
    """How much of its space each representation uses (reports written before 2026-12-07's
    afternoon have no ``spread`` and get no section)."""
    rows = {n: r["spread"] for n, r in methods.items() if r.get("spread")}
    if not rows:
        return []
    L = ["## Spread: does a representation use its space?", ""]
    L.append(
        "Over the test samples pooled, no label: the effective rank of the embeddings (RankMe: "
        "the exponential of the entropy of their normalised singular values; 1 when every "
        "embedding is the same direction) out of their dimensions, and the mean cosine between "
        "two distinct test samples (1 for a collapse). The geometry's features are standardised "
        "first. A probe at chance with a rank near 1 is a collapsed network, not a hard task."
    )
    L.append("")
    L += _method_table(
        ("effective rank", "dimensions", "mean cosine"),
        {
            n: (f"{sp['effective_rank']:.1f}", str(int(sp["dims"])), f"{sp['mean_cosine']:.3f}")
            for n, sp in rows.items()
        },
        main,
    )
    return L


def _benchmark_section(bench: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The benchmark's settings and what each stage cost."""
    L = ["## Benchmark settings and cost", ""]
    L.append("| setting | value |")
    L.append("|---|---|")
    for key, value in sorted(bench.items()):
        if key in ("stage_seconds", "train_seconds", "train_logged", "runs"):
            continue
        L.append(f"| {key} | {json.dumps(value) if isinstance(value, list | dict) else value} |")
    L.append("")
    stages = dict(bench.get("stage_seconds") or {})
    stages.update({f"train {k}": v for k, v in (bench.get("train_seconds") or {}).items()})
    # what each run's own log accounts for: it keeps the time of a sitting that was killed
    logged = {f"train {k}": v for k, v in (bench.get("train_logged") or {}).items()}
    if stages:
        L.append("| stage | seconds | the run's own log |")
        L.append("|---|---|---|")
        total = 0.0
        for k, v in stages.items():
            got = logged.get(k)
            log = f"{got['seconds']:.0f} s, {got['sittings']} sitting(s)" if got else ""
            L.append(f"| {k} | {'skipped (done earlier)' if v is None else f'{v:.0f}'} | {log} |")
            total += v or 0.0
        own = env.get("wall_seconds") or 0.0
        L.append(f"| this report | {own:.0f} | |")
        L.append(f"| **total** | **{total + own:.0f}** | |")
        L.append("")
    return L


def markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown (from :func:`write_report`'s document)."""
    sel = doc["selection"]
    classes = doc["protocol"]["classes"]
    methods: dict[str, Any] = doc["methods"]
    main = doc["main"]
    L: list[str] = []
    L.append(f"# Evaluation of {main}: protocol `{doc['protocol']['name']}`, mode `{doc['mode']}`")
    L.append("")
    L.append(doc["statement"])
    L.append("")
    L.append(f"Protocol: {doc['protocol_text']}.")
    L.append("")
    L.append(
        f"Selected: {sel['samples']} samples of {sel['subjects']} subjects; tested: "
        f"{sel['test_samples']} samples of {len(sel['test_subjects'])} subjects in folds "
        f"{sel['test_folds']}. Left out by the protocol: {sel['left_out'] or 'nothing'}."
    )
    L.append("")
    L.append(doc["model_selection"])
    if doc["data"].get("generation"):
        L.append("")
        L.append(
            "**Synthetic data.** These samples come from `mvdata synth` (settings below): the "
            "synthetic benchmark is easier than real scans (clean shape-model geometry, one "
            "texture model, exact landmarks). For context, the best published static-3D "
            "numbers on real BU-3DFE are about 90–91 % (supervised, 2D + 3D)."
        )
        if str(doc["data"]["generation"].get("face_model", "")) == "procedural":
            L.append("")
            L.append(
                "**Made with the built-in procedural face, not the Surrey Face Model.** Its "
                "expressions move mostly within the surface, so they barely show in the renders "
                "while its landmarks move fully: image models are near chance on it and the "
                "geometry is not. These numbers are not comparable with SFM benchmarks."
            )
    L.append("")
    L.append("## Results")
    L.append("")
    L.append(
        "Accuracy in %: mean ± std over test folds [95 % interval of the pooled accuracy "
        "(all test samples; equal to the fold mean when the folds are of one size), bootstrap "
        "over test subjects]. k-means: k = number of classes, accuracy after Hungarian matching "
        "[95 % interval over folds, Student t, clipped to the metric's range]. "
        "Pseudo-labels: agreement of the run's pseudo-labels with the held-back labels over "
        "its training samples in its last epoch (a measurement, not a test result; "
        "'unused': computed and measured, but the run's loss ignores them; 'labels': the "
        "supervised run's targets are the labels)."
    )
    L.append("")
    L.append(
        "| method | linear probe | kNN | zero-shot | k-means (matched) | NMI | ARI | pseudo-labels (train) |"
    )
    L.append("|---|---|---|---|---|---|---|---|")
    flagged = False
    for name, res in methods.items():
        km = res.get("kmeans") or {}
        pl_ = res.get("pseudo_labels")
        label = f"**{name}**" if name == main else name
        if res.get("saw_test_labels"):
            label += " *"
            flagged = True
        if res.get("collapsed"):
            label += " (collapsed: all embeddings equal)"
        zs = _pct(res.get("zero_shot"))
        if res.get("kind") == "geometry" and res.get("zero_shot"):
            zs += " (prior naming)"
        L.append(
            "| "
            + " | ".join(
                [
                    label,
                    _pct(res.get("linear_probe")),
                    _pct(res.get("knn")),
                    zs,
                    _pct(km.get("matched_accuracy"), "ci95"),
                    _num(km.get("nmi")),
                    _num(km.get("ari")),
                    _pseudo_cell(pl_),
                ]
            )
            + " |"
        )
    if flagged:
        L.append("")
        L.append(
            "\\* trained with labels of the test subjects (supervised in cross-validation): "
            "not a held-out result."
        )
    L.append("")
    L += _neighbour_section(methods, main, sel.get("test_samples"))
    L += _spread_section(methods, main)
    # per class and per intensity for the main model and the geometry
    cols: list[tuple[str, str, dict[str, Any]]] = []
    geometry = next((n for n, r in methods.items() if r.get("kind") == "geometry"), None)
    shown: list[str | None] = [main, geometry]  # the main run's prior only: stays readable
    for col in shown:
        res = methods.get(col) if col else None
        for key, title in METRICS:
            if res and res.get(key):
                cols.append(("geometry" if col == geometry else main, title, res[key]))
    if cols:
        L.append("## Per class (pooled over test folds, %)")
        L.append("")
        L.append("| class | " + " | ".join(f"{n}: {t}" for n, t, _ in cols) + " |")
        L.append("|---|" + "---|" * len(cols))
        for c in classes:
            vals = [s["per_class"].get(c) for _, _, s in cols]
            L.append(
                f"| {c} | "
                + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in vals)
                + " |"
            )
        L.append("")
        L.append("## Per intensity (pooled over test folds, %)")
        L.append("")
        # test samples (older reports: the selected samples of every fold)
        counts = sel.get("per_intensity_test") or sel["per_intensity"]
        head = "test samples" if "per_intensity_test" in sel else "selected samples"
        L.append(f"| intensity | {head} | " + " | ".join(f"{n}: {t}" for n, t, _ in cols) + " |")
        L.append("|---|---|" + "---|" * len(cols))
        for lev, count in counts.items():
            vals = [s["per_intensity"].get(lev) for _, _, s in cols]
            level = "none" if lev == "-1" else lev
            L.append(
                f"| {level} | {count} | "
                + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in vals)
                + " |"
            )
        L.append("")
    files = doc.get("files", {})
    if files.get("confusion"):
        L.append("## Confusion matrices")
        L.append("")
        L.append(f"![confusion matrices]({files['confusion']})")
        L.append("")
    if files.get("embedding_map"):
        L.append("## Embedding map")
        L.append("")
        m = doc.get("embedding_map", {})
        L.append(
            f"{m.get('method', 't-SNE')} of {main}'s fused embeddings ({m.get('samples')} selected "
            "samples, all folds): expressions should separate, subjects should not."
        )
        L.append("")
        L.append(f"![embedding map]({files['embedding_map']})")
        L.append("")
    L.append("## Pseudo-label agreement over training")
    L.append("")
    if files.get("training"):
        L.append(f"![training]({files['training']})")
        L.append("")
    L.append("| run | epochs logged | last epoch | pseudo-labels | image zero-shot | prior |")
    L.append("|---|---|---|---|---|---|")
    for name, info in doc["models"].items():
        recs = info.get("training") or []
        last = recs[-1] if recs else {}

        def f(key: str, last: dict[str, Any] = last) -> str:
            v = last.get(key)
            return "–" if not isinstance(v, int | float) else f"{100 * v:.1f}"

        L.append(
            f"| {name} | {len(recs)} | {last.get('epoch', '–')}{' (partial)' if last.get('partial') else ''} "
            f"| {_pseudo_cell(_last_pseudo(info, last))} | {f('image/overall')} "
            f"| {f('prior/overall')} |"
        )
    L.append("")
    main_lp = (methods.get(main) or {}).get("linear_probe") or {}
    main_knn = (methods.get(main) or {}).get("knn") or {}
    if main_lp.get("params"):
        L.append("## Hyperparameters chosen on the training folds")
        L.append("")
        L.append("| test fold | linear probe C | kNN k |")
        L.append("|---|---|---|")
        for fold, p in main_lp["params"].items():
            k = (main_knn.get("params") or {}).get(fold, {}).get("k", "–")
            L.append(f"| {fold} | {p.get('C')} ({p.get('selected_by')}) | {k} |")
        L.append("")
    if doc.get("targets"):
        L.append("## Targets (issue 13: held-out subjects, intensities 3-4)")
        L.append("")
        L.append("| target | value | met |")
        L.append("|---|---|---|")
        for t in doc["targets"]:
            met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
            L.append(f"| {t['target']} | {t['value']} | {met} |")
        L.append("")
    if doc.get("benchmark"):
        L.extend(_benchmark_section(doc["benchmark"], doc["environment"]))
    if doc.get("links"):
        L.append("## Related reports")
        L.append("")
        for title, target in doc["links"].items():
            L.append(f"- [{title}]({target})")
        L.append("")
    L.append("## Provenance")
    L.append("")
    env = doc["environment"]
    mach = env["machine"]
    L.append(f"- command: `{env['command']}`")
    L.append(f"- package: multiviewvlm {env['package_version']} (mvmodel)")
    L.append(
        f"- data: `{doc['data']['shards']}`, manifest.parquet sha256 `{doc['data']['manifest_sha256']}`, "
        f"{doc['data']['num_samples']} samples of {doc['data']['num_subjects']} subjects"
    )
    for name, info in doc["models"].items():
        L.append(
            f"- {name}: `{info['weights']}` (step {info['step']}), model id `{info['model_id']}`, "
            f"checkpoint sha256 `{info['checkpoint_sha256']}`, excluded folds {info['exclude_folds']}, "
            f"views {info['settings']['views']}, channels {info['settings']['channels']}"
        )
    gpu = ", ".join(mach.get("gpus") or []) or "none"
    L.append(
        f"- machine: {mach.get('cpu')} ({mach.get('cpu_count')} cores), GPU: {gpu}; "
        f"{mach.get('os')}; torch {mach.get('torch')}, scikit-learn {mach.get('sklearn')}"
    )
    L.append(
        f"- started {env['started']}, wall time {env.get('wall_seconds', 0):.1f} s (this evaluation)"
    )
    gen = doc["data"].get("generation")
    if gen:
        keep = (
            "face_model",
            "num_identities",
            "intensities",
            "pose_jitter_deg",
            "noise_mm",
            "seed",
            "sequences",
            "num_frames",
        )
        L.append(
            "- generation (synth.json): " + ", ".join(f"{k}={gen.get(k)}" for k in keep if k in gen)
        )
        if gen.get("build"):
            L.append("- build: " + ", ".join(f"{k}={v}" for k, v in gen["build"].items()))
    L.append("")
    L.append(
        "Everything above, with per-fold values and both confidence intervals, is in `report.json`."
    )
    L.append("")
    return "\n".join(L)


#: Accuracy differences below this are floating-point noise of a mean over folds, not a result.
_TIE = 1e-9


def target_checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's targets, checked on a benchmark report of the static protocol at the two
    highest intensities on held-out subjects (empty for any other report): MultiviewVLM
    zero-shot >= 90 % and linear probe >= 97 %, above the AU prior's own naming, and a linear
    probe >= 5 points above every unsupervised image baseline (means over test folds)."""
    proto = doc["protocol"]
    if not doc.get("benchmark") or doc["mode"] != "holdout" or proto.get("kind") != "static":
        return []
    if sorted(proto.get("intensities") or []) != [3, 4]:
        return []
    methods = doc["methods"]
    main = methods.get(doc["main"]) or {}

    def mean(res: dict[str, Any] | None, key: str) -> float | None:
        stat = (res or {}).get(key) or {}
        v = stat.get("mean")
        return v if isinstance(v, float) and math.isfinite(v) else None

    zs, lp = mean(main, "zero_shot"), mean(main, "linear_probe")
    prior = next((r for r in methods.values() if r.get("kind") == "geometry"), None)
    pz = mean(prior, "zero_shot")
    rows: list[dict[str, Any]] = []

    def add(what: str, value: str, ok: bool | None) -> None:
        rows.append({"target": what, "value": value, "met": None if ok is None else bool(ok)})

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f} %"

    # Means over folds of count ratios: equal accuracies can differ in the last bits (seed 7's
    # 2x-budget run: zero-shot 0.938888888888889 vs the prior's 0.9388888888888888, both 338 of
    # 360, read as "above"). Differences under _TIE are ties, never a target met or missed.
    add("MultiviewVLM zero-shot ≥ 90 %", pct(zs), None if zs is None else zs >= 0.90 - _TIE)
    add("MultiviewVLM linear probe ≥ 97 %", pct(lp), None if lp is None else lp >= 0.97 - _TIE)
    for label, v in (("zero-shot", zs), ("linear probe", lp)):
        add(
            f"MultiviewVLM {label} above the AU prior's own naming",
            f"{pct(v)} vs {pct(pz)}",
            None if v is None or pz is None else v > pz + _TIE,
        )
    for name, res in methods.items():
        unsupervised = res.get("kind") == "untrained" or (
            res.get("kind") == "baseline" and not (doc["models"].get(name) or {}).get("supervised")
        )
        if not unsupervised:
            continue
        b = mean(res, "linear_probe")
        add(
            f"linear probe ≥ 5 points above {name}",
            f"{pct(lp)} vs {pct(b)}",
            None if lp is None or b is None else lp >= b + 0.05 - _TIE,
        )
    return rows


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The method x metric table as plain text lines (accuracy %, mean ± std over folds)."""
    head = f"{'method':44s} {'linear probe':>14s} {'kNN':>14s} {'zero-shot':>14s} {'k-means':>14s}"
    lines = [head]

    def cell(stat: dict[str, Any] | None) -> str:
        if not stat or stat.get("mean") is None or not math.isfinite(stat["mean"]):
            return "-"
        return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"

    for name, res in doc["methods"].items():
        km = (res.get("kmeans") or {}).get("matched_accuracy")
        lines.append(
            f"{name[:44]:44s} {cell(res.get('linear_probe')):>14s} {cell(res.get('knn')):>14s} "
            f"{cell(res.get('zero_shot')):>14s} {cell(km):>14s}"
        )
    return lines


def write_report(
    out: Path,
    doc: dict[str, Any],
    *,
    embedding: NDArray[Any],
    selection: Selection,
    seed: int = 0,
    wall_start: float | None = None,
) -> tuple[Path, Path]:
    """Draw the plots into ``out``, finish ``doc`` (files, wall time) and write ``report.json``
    and ``report.md`` (atomically). Returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    main = doc["main"]
    methods = doc["methods"]
    classes = doc["protocol"]["classes"]
    files: dict[str, str] = {}
    panels = []
    for name, key, title in (
        (main, "linear_probe", f"{main}: linear probe"),
        (main, "zero_shot", f"{main}: zero-shot"),
    ):
        res = (methods.get(name) or {}).get(key)
        if res:
            panels.append((title, res["confusion"]))
    geo = next((r for r in methods.values() if r.get("kind") == "geometry"), None)
    if geo and geo.get("zero_shot"):  # the main run's prior (the first geometry row)
        panels.append(("AU prior: zero-shot naming", geo["zero_shot"]["confusion"]))
    if panels:
        plot_confusions(out / "confusion.png", panels, classes)
        files["confusion"] = "confusion.png"
    labels = [classes[i] for i in selection.label]
    doc["embedding_map"] = plot_embedding_map(
        out / "embedding_map.png",
        embedding,
        labels,
        list(selection.group),
        title=main,
        seed=seed,
    )
    files["embedding_map"] = "embedding_map.png"
    curves = {name: info.get("training") or [] for name, info in doc["models"].items()}
    roles = {name: _pseudo_role(info) for name, info in doc["models"].items()}
    if plot_training(out / "training.png", curves, roles):
        files["training"] = "training.png"
    doc["targets"] = target_checks(doc)
    files["markdown"] = "report.md"
    files["json"] = "report.json"
    doc["files"] = files
    if wall_start is not None:
        doc["environment"]["wall_seconds"] = round(time.perf_counter() - wall_start, 2)
    md_path, js_path = out / "report.md", out / "report.json"
    clean = _clean(doc)
    atomic_write(js_path, (json.dumps(clean, indent=2, sort_keys=True) + "\n").encode())
    atomic_write(md_path, markdown(clean).encode())
    return md_path, js_path

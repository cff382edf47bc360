"""Metrics over a :class:`~mvmodel.evaluate.protocols.Selection`: probes, zero-shot, clustering.

* **Linear probe**: logistic regression on frozen, L2-normalised embeddings, one per test fold,
  its ``C`` chosen by an inner cross-validation grouped by subject over that fold's TRAINING
  samples only (scikit-learn's ``GridSearchCV`` with ``GroupKFold``); the test fold is predicted
  once, after the choice.
* **kNN**: cosine k-nearest neighbours, ``k`` chosen the same way.
* **Scores without fitting** (zero-shot from the prompt prototypes, the geometric prior's own
  naming): the argmax over the protocol's classes, fold by fold.
* **Clustering**: k-means with k = number of classes, NMI and ARI against the labels and the
  accuracy after the Hungarian matching of clusters to classes; on each test fold and on the
  test folds pooled (no label is used to cluster; the matching uses them, as the metric does).
* **Nearest neighbours**: what the embedding's neighbourhoods are organised by, with no fit:
  the share of test samples whose nearest other test sample (cosine) is of the same subject,
  and the share whose nearest test sample of another subject shows the same class. Raw pixels
  and identity-driven features put each face next to its own subject's other scans; an
  expression representation puts it next to other subjects' faces of the same expression.
* **Spread**: how much of its space a representation uses, with no label: the effective rank
  of the test samples' embeddings (RankMe, Garrido et al. 2023: ``exp`` of the entropy of the
  normalised singular values; 1 for a collapsed set) and the mean cosine between two distinct
  test samples (1 when every embedding points the same way). A probe at chance with a rank
  near 1 is a collapse, not a hard task.

Every metric is reported per test fold, as mean ± std over folds (``ddof=1``), with a 95 %
confidence interval over folds (Student t), and pooled over all test samples; accuracies also get
a 95 % interval from a bootstrap over test subjects (subjects, not samples, are the independent
units), per-class accuracy (recall), the confusion matrix and the accuracy per intensity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mvmodel.evaluate.protocols import Selection

__all__ = [
    "C_GRID",
    "K_GRID",
    "FitResult",
    "Predictions",
    "clustering_metrics",
    "clustering_scores",
    "embedding_spread",
    "evaluate_representation",
    "fit_knn",
    "fit_linear_probe",
    "fold_stats",
    "hungarian_accuracy",
    "l2_normalise",
    "nearest_neighbour_shares",
    "neighbour_metrics",
    "predict_by_fold",
    "predict_from_scores",
    "prediction_metrics",
    "subject_bootstrap_ci",
]

#: Inverse regularisation strengths tried for the linear probe (inner CV on training folds).
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
#: Rows of the similarity matrix the nearest-neighbour shares hold at once.
_NEIGHBOUR_BLOCK = 1024
#: Neighbour counts tried for kNN (those larger than the smallest inner training set are skipped).
K_GRID: tuple[int, ...] = (1, 3, 5, 10, 20)
#: Inner folds at most (fewer when the training folds have fewer subjects).
INNER_SPLITS = 5
BOOTSTRAP_REPS = 2000


def l2_normalise(x: NDArray[Any]) -> NDArray[np.float64]:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


# --------------------------------------------------------------------------- fitting
@dataclass
class FitResult:
    """A fitted classifier and the hyperparameter the inner CV chose (or why none was)."""

    model: Any
    params: dict[str, Any]


def _inner_cv(groups: NDArray[Any]) -> Any:
    """Grouped inner folds over the training samples (subjects never split), or None when the
    training samples hold fewer than two subjects (nothing to choose with)."""
    from sklearn.model_selection import GroupKFold

    n = len(set(groups.tolist()))
    return GroupKFold(n_splits=min(INNER_SPLITS, n)) if n >= 2 else None


def _grid_fit(
    estimator: Any,
    grid: dict[str, list[Any]],
    default: dict[str, Any],
    x: NDArray[Any],
    y: NDArray[Any],
    groups: NDArray[Any],
) -> FitResult:
    """``GridSearchCV`` over ``grid`` with subject-grouped inner folds of THESE samples only
    (the caller passes the training folds), refitted on all of them with the best setting;
    ``default`` where there is nothing to choose with (one training subject, one class)."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    cv = _inner_cv(groups)
    if cv is None or len(set(y.tolist())) < 2:
        model = clone(estimator).set_params(**default).fit(x, y)
        return FitResult(model, {**default, "selected_by": "default (too few subjects to choose)"})
    search = GridSearchCV(estimator, grid, cv=cv, scoring="accuracy", n_jobs=1, refit=True)
    search.fit(x, y, groups=groups)
    return FitResult(search.best_estimator_, {**search.best_params_, "selected_by": "inner CV"})


def fit_linear_probe(
    x: NDArray[Any],
    y: NDArray[Any],
    groups: NDArray[Any],
    *,
    standardise: bool = False,
    c_grid: Sequence[float] = C_GRID,
) -> FitResult:
    """Logistic regression on ``x`` (training samples only), ``C`` by grouped inner CV.

    ``standardise``: a scaler (and a median imputer for undefined values) fitted inside the
    pipeline, i.e. on the training samples of each inner and outer fold (for hand-made features
    such as the action-unit proxies; embeddings are L2-normalised by the caller instead).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[tuple[str, Any]] = []
    if standardise:
        steps += [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    steps.append(("clf", LogisticRegression(max_iter=5000)))
    res = _grid_fit(Pipeline(steps), {"clf__C": list(c_grid)}, {"clf__C": 1.0}, x, y, groups)
    res.params = {("C" if k == "clf__C" else k): v for k, v in res.params.items()}
    return res


def fit_knn(
    x: NDArray[Any],
    y: NDArray[Any],
    groups: NDArray[Any],
    *,
    standardise: bool = False,
    k_grid: Sequence[int] = K_GRID,
) -> FitResult:
    """Cosine kNN on ``x`` (training samples only), ``k`` by grouped inner CV; values of k
    larger than the smallest inner training set are left out of the grid."""
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    cv = _inner_cv(groups)
    smallest = len(x)
    if cv is not None:
        smallest = min(len(tr) for tr, _ in cv.split(x, y, groups))
    ks = [k for k in k_grid if k <= smallest] or [1]
    steps: list[tuple[str, Any]] = []
    if standardise:
        steps += [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    steps.append(("clf", KNeighborsClassifier(metric="cosine")))
    default = {"clf__n_neighbors": min(5, len(x))}
    res = _grid_fit(Pipeline(steps), {"clf__n_neighbors": ks}, default, x, y, groups)
    res.params = {("k" if k == "clf__n_neighbors" else k): v for k, v in res.params.items()}
    return res


# --------------------------------------------------------------------------- predictions
@dataclass
class Predictions:
    """One method's predicted class for every test sample of a selection (-1 elsewhere), and
    the hyperparameters chosen per fold."""

    pred: NDArray[np.int64]
    params: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: The training-sample indices each fold's classifier was fitted on (checked by the tests).
    fitted_on: dict[int, NDArray[np.int64]] = field(default_factory=dict)


Fitter = Callable[[NDArray[Any], NDArray[Any], NDArray[Any]], FitResult]


def predict_by_fold(x: NDArray[Any], sel: Selection, fit: Fitter) -> Predictions:
    """Fit ``fit`` on each split's training samples and predict its test fold."""
    pred = np.full(len(sel), -1, dtype=np.int64)
    out = Predictions(pred)
    fitted: dict[bytes, FitResult] = {}  # holdout: every test fold has the same training set
    for split in sel.splits():
        key = split.train.tobytes()
        if key not in fitted:
            fitted[key] = fit(x[split.train], sel.label[split.train], sel.group[split.train])
        res = fitted[key]
        pred[split.test] = res.model.predict(x[split.test])
        out.params[split.fold] = res.params
        out.fitted_on[split.fold] = split.train
    return out


def predict_from_scores(scores: NDArray[Any], sel: Selection) -> Predictions:
    """The argmax of per-class scores (columns in ``sel.classes`` order) on the test folds:
    nothing is fitted (zero-shot, the prior's naming). NaN rows (undefined) count as wrong."""
    s = np.asarray(scores, dtype=np.float64)
    pred = np.full(len(sel), -1, dtype=np.int64)
    test = sel.test_mask()
    ok = test & np.isfinite(s).all(axis=1)
    pred[ok] = np.argmax(s[ok], axis=1)
    return Predictions(pred)


# --------------------------------------------------------------------------- statistics
def fold_stats(
    per_fold: dict[int, float],
    pooled: float | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """``mean``, ``std`` (ddof=1; 0 for one fold), ``ci95`` over folds (Student t; None for one
    fold), ``folds`` and ``pooled``.

    ``bounds``: the metric's range; the interval is clipped to it (with three folds the t
    quantile is 4.3, so an accuracy of 98 ± 2 would otherwise read [93, 103])."""
    from scipy import stats

    vals = np.asarray([v for v in per_fold.values() if v is not None and math.isfinite(v)])
    n = len(vals)
    mean = float(vals.mean()) if n else float("nan")
    std = float(vals.std(ddof=1)) if n > 1 else 0.0
    ci: list[float] | None = None
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        ci = [max(bounds[0], mean - half), min(bounds[1], mean + half)]
    return {
        "mean": mean,
        "std": std,
        "ci95": ci,
        "n_folds": n,
        "folds": {str(k): v for k, v in per_fold.items()},
        "pooled": pooled,
    }


def subject_bootstrap_ci(
    correct: NDArray[Any], groups: NDArray[Any], *, reps: int = BOOTSTRAP_REPS, seed: int = 0
) -> list[float] | None:
    """95 % percentile interval of the pooled accuracy, resampling subjects with replacement
    (a subject's samples move together: they are not independent)."""
    subjects, inv = np.unique(groups.astype(str), return_inverse=True)
    if len(subjects) < 2:
        return None
    hits = np.bincount(inv, weights=correct.astype(np.float64), minlength=len(subjects))
    totals = np.bincount(inv, minlength=len(subjects)).astype(np.float64)
    draw = np.random.default_rng(seed).integers(0, len(subjects), size=(reps, len(subjects)))
    acc = hits[draw].sum(axis=1) / totals[draw].sum(axis=1)
    lo, hi = np.percentile(acc, [2.5, 97.5])
    return [float(lo), float(hi)]


def prediction_metrics(pred: Predictions, sel: Selection) -> dict[str, Any]:
    """Accuracy of ``pred`` on the test folds: fold statistics, the subject-bootstrap interval,
    per-class accuracy, the confusion matrix (rows: true class, columns: predicted; counts),
    the accuracy per intensity and the chosen hyperparameters."""
    test = sel.test_mask()
    y, p = sel.label[test], pred.pred[test]
    correct = y == p
    per_fold = {f: float(np.mean(correct[sel.fold[test] == f])) for f in sel.test_folds}
    out = fold_stats(per_fold, pooled=float(correct.mean()))
    out["ci95_subjects"] = subject_bootstrap_ci(correct, sel.group[test])
    k = len(sel.classes)
    cm = np.zeros((k, k), dtype=np.int64)
    valid = p >= 0
    np.add.at(cm, (y[valid], p[valid]), 1)
    out["confusion"] = cm.tolist()
    out["unpredicted"] = int((~valid).sum())
    out["per_class"] = {
        c: (float(correct[y == i].mean()) if (y == i).any() else None)
        for i, c in enumerate(sel.classes)
    }
    inten = sel.intensity[test]
    out["per_intensity"] = {
        str(int(v)): float(correct[inten == v].mean()) for v in sorted(set(inten.tolist()))
    }
    out["n_test"] = int(test.sum())
    if pred.params:
        out["params"] = {str(f): v for f, v in pred.params.items()}
    return out


def hungarian_accuracy(y: NDArray[Any], clusters: NDArray[Any]) -> float:
    """Accuracy after matching clusters to classes one-to-one so that most samples agree
    (``scipy.optimize.linear_sum_assignment`` on the contingency table)."""
    from scipy.optimize import linear_sum_assignment

    y = np.asarray(y)
    c = np.asarray(clusters)
    _, yi = np.unique(y, return_inverse=True)
    _, ci = np.unique(c, return_inverse=True)
    table = np.zeros((ci.max() + 1, yi.max() + 1), dtype=np.int64)
    np.add.at(table, (ci, yi), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y))


def _standardised(x: NDArray[Any]) -> NDArray[np.float64]:
    """Columns with missing values imputed by their median (0 where a column has none) and
    scaled to zero mean and unit variance: unsupervised, for hand-made features."""
    x = np.asarray(x, dtype=np.float64)
    med = np.nanmedian(x, axis=0)
    x = np.where(np.isfinite(x), x, np.where(np.isfinite(med), med, 0.0))
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def clustering_scores(
    x: NDArray[Any], y: NDArray[Any], k: int, *, seed: int = 0, standardise: bool = False
) -> dict[str, float]:
    """k-means (k clusters, 10 restarts) of ``x``: ``nmi``, ``ari`` and ``matched_accuracy``
    against ``y``. ``standardise``: impute medians and scale each column (unsupervised)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _standardised(x) if standardise else np.asarray(x, dtype=np.float64)
    k = min(k, len(x))
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    return {
        "nmi": float(normalized_mutual_info_score(y, clusters)),
        "ari": float(adjusted_rand_score(y, clusters)),
        "matched_accuracy": hungarian_accuracy(y, clusters),
    }


def clustering_metrics(
    x: NDArray[Any], sel: Selection, *, seed: int = 0, standardise: bool = False
) -> dict[str, dict[str, Any]]:
    """k-means with k = the protocol's classes, on each test fold and pooled over all the test
    folds' samples: ``{"nmi": stats, "ari": stats, "matched_accuracy": stats}``."""
    k = len(sel.classes)
    test = sel.test_mask()
    per_fold: dict[str, dict[int, float]] = {"nmi": {}, "ari": {}, "matched_accuracy": {}}
    for f in sel.test_folds:
        m = sel.fold == f
        if m.sum() <= k:  # fewer samples than clusters: k-means says nothing
            continue
        scores = clustering_scores(x[m], sel.label[m], k, seed=seed, standardise=standardise)
        for name, v in scores.items():
            per_fold[name][f] = v
    pooled = clustering_scores(x[test], sel.label[test], k, seed=seed, standardise=standardise)
    # ARI is bounded below by -1 (in practice > -0.5), the others by 0.
    return {
        name: fold_stats(
            per_fold[name], pooled=pooled[name], bounds=(-1.0 if name == "ari" else 0.0, 1.0)
        )
        for name in per_fold
    }


def nearest_neighbour_shares(
    x: NDArray[Any], label: NDArray[Any], group: NDArray[Any], *, standardise: bool = False
) -> dict[str, float]:
    """What the cosine neighbourhoods of the rows of ``x`` are organised by (leave-one-out).

    Returns ``same_subject``, the share of rows whose nearest other row has the same ``group``,
    and ``same_class``, the share whose nearest row **of another group** has the same
    ``label`` (a subject's own scans of one expression at two intensities would otherwise count
    as expression); ``chance_subject`` / ``chance_class`` are the same shares for a neighbour
    drawn at random (among the other rows / the other groups' rows). Ties go to the lowest row
    index (``argmax``). ``standardise``: hand-made features, scaled as for k-means, then
    compared by cosine too. Raises ``ValueError`` with fewer than two groups."""
    x = _standardised(x) if standardise else np.asarray(x, dtype=np.float64)
    label = np.asarray(label)
    group = np.asarray(group)
    n = len(x)
    if len(np.unique(group)) < 2:
        raise ValueError(f"nearest neighbours need two subjects or more, got {n} sample(s) of one")
    unit = l2_normalise(x)
    _, g = np.unique(group, return_inverse=True)
    _, y = np.unique(label, return_inverse=True)
    same_class = same_subject = 0
    chance_class = chance_subject = 0.0
    # row blocks keep memory at block x n: a pool of 50k samples needs no 20 GB matrix
    for start in range(0, n, _NEIGHBOUR_BLOCK):
        rows = np.arange(start, min(start + _NEIGHBOUR_BLOCK, n))
        sim = unit[rows] @ unit.T
        sim[np.arange(len(rows)), rows] = -np.inf
        same_group = g[rows, None] == g[None, :]
        same_subject += int((g[sim.argmax(axis=1)] == g[rows]).sum())
        sim[same_group] = -np.inf
        same_class += int((y[sim.argmax(axis=1)] == y[rows]).sum())
        same_label_other = (y[rows, None] == y[None, :]) & ~same_group
        chance_class += float((same_label_other.sum(axis=1) / (~same_group).sum(axis=1)).sum())
        chance_subject += float(((same_group.sum(axis=1) - 1) / (n - 1)).sum())
    return {
        "same_class": same_class / n,
        "same_subject": same_subject / n,
        "chance_class": chance_class / n,
        "chance_subject": chance_subject / n,
    }


def embedding_spread(x: NDArray[Any], *, standardise: bool = False) -> dict[str, float]:
    """How much of its space the rows of ``x`` use (no label, no fit): ``effective_rank``
    (RankMe: the singular values ``s`` of ``x`` as given, uncentred, ``p = s / sum(s)``,
    ``exp(-sum(p log p))``; between 1 and ``min(n, d)``), ``mean_cosine`` (the mean cosine
    between two distinct rows) and ``dims`` (``d``). ``standardise``: hand-made features,
    scaled as for k-means first. A row of zeros counts as a direction of its own (cosine 0).
    Raises ``ValueError`` with fewer than two rows."""
    x = _standardised(x) if standardise else np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 2:
        raise ValueError(f"a spread needs two rows or more, got {n}")
    s = np.linalg.svd(x, compute_uv=False)
    total = float(s.sum())
    if total > 0:
        p = s / total
        p = p[p > 0]
        rank = float(np.exp(-(p * np.log(p)).sum()))
    else:  # every row zero: nothing is spread
        rank = 0.0
    unit = l2_normalise(x)
    # sum over ordered pairs i != j of u_i . u_j = |sum u|^2 - sum |u_i|^2 (no n x n matrix)
    total_dot = float(np.square(unit.sum(axis=0)).sum()) - float(np.square(unit).sum())
    return {
        "effective_rank": rank,
        "mean_cosine": total_dot / (n * (n - 1)),
        "dims": float(x.shape[1]),
    }


def neighbour_metrics(
    x: NDArray[Any], sel: Selection, *, standardise: bool = False
) -> dict[str, dict[str, Any]] | None:
    """:func:`nearest_neighbour_shares` among each test fold's samples and among the test folds'
    samples pooled: ``{"same_class": stats, "same_subject": stats, "chance_class": stats,
    "chance_subject": stats}`` (no label is fitted; the labels only count). A fold of one
    subject is left out; None when the test folds hold fewer than two subjects."""
    names = ("same_class", "same_subject", "chance_class", "chance_subject")
    per_fold: dict[str, dict[int, float]] = {name: {} for name in names}
    test = sel.test_mask()
    if len(np.unique(sel.group[test])) < 2:
        return None
    for f in sel.test_folds:
        m = sel.fold == f
        if len(np.unique(sel.group[m])) < 2:
            continue
        shares = nearest_neighbour_shares(x[m], sel.label[m], sel.group[m], standardise=standardise)
        for name in names:
            per_fold[name][f] = shares[name]
    pooled = nearest_neighbour_shares(
        x[test], sel.label[test], sel.group[test], standardise=standardise
    )
    return {name: fold_stats(per_fold[name], pooled=pooled[name]) for name in names}


def evaluate_representation(
    x: NDArray[Any],
    sel: Selection,
    *,
    scores: NDArray[Any] | None = None,
    standardise: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of one representation of the selected samples: the single code path of
    every method (the image models, the untrained encoder, the geometry).

    ``x``: ``[n, d]`` features in selection order (embeddings: L2-normalised by the caller;
    hand-made features: ``standardise=True``). ``scores``: ``[n, K]`` label-free class scores
    (zero-shot probabilities, the prior's) or None. Returns ``linear_probe``, ``knn``,
    ``zero_shot`` (None without scores), ``kmeans`` (``nmi``, ``ari``, ``matched_accuracy``) and
    ``neighbours`` (:func:`neighbour_metrics`) and ``spread`` (:func:`embedding_spread` of the
    test samples pooled).
    """

    def lp(a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> FitResult:
        return fit_linear_probe(a, b, g, standardise=standardise)

    def knn(a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> FitResult:
        return fit_knn(a, b, g, standardise=standardise)

    test = sel.test_mask()
    return {
        "linear_probe": prediction_metrics(predict_by_fold(x, sel, lp), sel),
        "knn": prediction_metrics(predict_by_fold(x, sel, knn), sel),
        "zero_shot": None
        if scores is None
        else prediction_metrics(predict_from_scores(scores, sel), sel),
        "kmeans": clustering_metrics(x, sel, seed=seed, standardise=standardise),
        "neighbours": neighbour_metrics(x, sel, standardise=standardise),
        "spread": embedding_spread(x[test], standardise=standardise)
        if int(test.sum()) >= 2
        else None,
    }

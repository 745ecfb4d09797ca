"""Tables of the experiments beyond the m = 2 sweep (PAPER.md sections 4-5); their checked
claims are in ``toyrelu.experiment_findings``.

The m x T heatmap (figure 5), the weight-decay and training-length sweeps at m = 4 (appendix),
repeated data and the sparsity collapse (follow-ups), and the maximal data dimensionality D*.
Pure pandas/numpy: every table is computed from stored runs (one row each, as
``analysis.ok_runs`` gives them) and stored arrays; the figures draw these tables elsewhere.

Paper-scale positions (n = 10,000, S = 0.999) are scaled to other sparsities by ``analysis.scale``,
0.001 / (1 - S): the reduced setting (n = 1,000, S = 0.99) has its transitions at 10x smaller T.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from toyrelu.analysis.tables import LEARNED_D, SWEPT, scale
from toyrelu.core import metrics
from toyrelu.core.config import field_names
from toyrelu.runs.store import Store

# The setting each experiment varies besides T and the seed (None: T alone).
AXES: dict[str, str | None] = {
    "heatmap": "n_hidden", "weight-decay": "weight_decay", "training-length": "steps",
    "repeated": "repeats", "sparsity": "sparsity", "max-dimensionality": None,
}
PAPER_RIDGE_T = {2: 2_000, 4: 5_000, 8: 20_000}  # PAPER.md section 5, figure 5
MEMORISED_LOSS = 0.5  # a point is memorised once more than half its squared norm is rebuilt
BOUNDARY_SLOPE = 0.4  # the boundary R = 0.4 T / n
BOUNDARY_FACTOR = 2.5  # one step of a 1, 2, 5, 10 grid either side
ONSET_COUNT = 10.0  # generalization from T (1 - S) near 10


def select(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The runs of one experiment among finished runs (one row per run).

    Runs are grouped by every setting except T, the seed, the restart and the experiment's axis
    (``AXES``); the group whose axis takes the most values (then the most runs) is returned,
    provided the axis takes at least 2 values (at least 3 T for "max-dimensionality"). Repeated
    data belong to "repeated" only; "weight-decay" and "training-length" look at m >= 3 (the
    paper's m = 4; the m = 2 sensitivity study varies these too), "max-dimensionality" at m = 2.
    """
    axis = AXES[experiment]
    if runs.empty:
        return runs
    repeated = runs.get("n_repeated", pd.Series(0, index=runs.index)).fillna(0) > 0
    runs = runs[repeated] if experiment == "repeated" else runs[~repeated]
    if experiment in ("weight-decay", "training-length"):
        runs = runs[runs["n_hidden"] >= 3]
    if experiment == "max-dimensionality":
        runs = runs[runs["n_hidden"] == 2]
    fields = [f for f in field_names() if f not in (*SWEPT, axis) and f in runs]
    if runs.empty:
        return runs
    keys = pd.Series([repr(tuple(r)) for r in runs[fields].itertuples(index=False)],
                     index=runs.index)
    best, size = None, (0, 0)
    for key, part in runs.groupby(keys):
        values = part[axis].nunique() if axis else part["n_train"].nunique()
        if values >= (2 if axis else 3) and (values, len(part)) > size:
            best, size = key, (values, len(part))
    return runs[keys == best].reset_index(drop=True) if best else runs.iloc[:0]


def curves(runs: pd.DataFrame, by: str) -> pd.DataFrame:
    """Test and train loss per (``by``, T) across seeds: columns ``by``, n_train, seeds,
    test_mean, test_median, test_min, test_max, train_mean."""
    table = runs.groupby([by, "n_train"]).agg(
        seeds=("seed", "nunique"), test_mean=("test_loss", "mean"),
        test_median=("test_loss", "median"), test_min=("test_loss", "min"),
        test_max=("test_loss", "max"), train_mean=("train_loss", "mean"),
    )
    return table.reset_index()


def bumps(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of ``by`` (a ``curves`` table): peak_T and peak (the highest mean test loss
    over T), bump (how far the peak rises above predicting zero, max(peak - 1, 0)) and
    last_loss (the mean test loss at the largest T)."""
    rows = []
    for value, part in table.sort_values("n_train").groupby(by):
        top = part.loc[part["test_mean"].idxmax()]
        rows.append({by: value, "peak_T": top.n_train, "peak": top.test_mean,
                     "bump": max(top.test_mean - 1.0, 0.0),
                     "last_loss": part["test_mean"].iloc[-1]})
    return pd.DataFrame(rows, columns=[by, "peak_T", "peak", "bump", "last_loss"])


def heatmap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test loss over seeds, one row per n_hidden and one column per T (ascending,
    T = infinity last); NaN where a cell has no run."""
    table = runs.pivot_table(index="n_hidden", columns="n_train", values="test_loss",
                             aggfunc="mean")
    return table.sort_index().sort_index(axis=1)


def ridges(table: pd.DataFrame, sparsity: float) -> pd.DataFrame:
    """Where each row of a ``heatmap_table`` peaks: n_hidden, ridge_T, peak, and paper_T (the
    paper's ridge at that m, PAPER_RIDGE_T, scaled to ``sparsity``; NaN where it gives none).

    A ridge is raised test loss, above the zero model's 1: a row whose every T stays at or
    below 1 has none (ridge_T NaN), as its highest cell would only be noise among learned
    models."""
    rows = [{"n_hidden": m, "ridge_T": row.idxmax() if row.max() > 1.0 else math.nan,
             "peak": row.max(),
             "paper_T": PAPER_RIDGE_T.get(int(m), math.nan) * scale(sparsity)}
            for m, row in table.iterrows() if row.notna().any()]
    return pd.DataFrame(rows, columns=["n_hidden", "ridge_T", "peak", "paper_T"])


def repeated_points(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: dict[str, NDArray],  # X_indptr, X_indices, X_data of the training set (n_train rows)
    H: NDArray[np.floating],  # (n_train, n_hidden)
    n_repeated: int,
    repeats: int,
) -> pd.DataFrame:
    """The repeated training points of one run (rows 0..n_repeated-1; their copies are the last
    rows, ``data.train_set``): one row each with point, own_loss (its squared error, paper
    scale), h_norm (||h_t||), D and D_star (over the distinct training examples, copies
    removed, so a point that owns a direction has D near 1 whatever R) and memorised
    (own_loss < MEMORISED_LOSS)."""
    W64, b64 = np.asarray(W, np.float64), np.asarray(b, np.float64)
    distinct = np.asarray(H, np.float64)[: len(H) - n_repeated * (repeats - 1)]
    D, D_star = metrics.dimensionality(distinct), metrics.max_dimensionality(distinct)
    rows = []
    for t in range(n_repeated):
        lo, hi = X["X_indptr"][t], X["X_indptr"][t + 1]
        x = np.zeros(W64.shape[1])
        x[X["X_indices"][lo:hi]] = X["X_data"][lo:hi]
        out = np.maximum(W64.T @ (W64 @ x) + b64, 0.0)
        loss = float(np.sum((x - out) ** 2))
        rows.append({"point": t, "own_loss": loss, "h_norm": float(np.linalg.norm(distinct[t])),
                     "D": float(D[t]), "D_star": float(D_star[t]),
                     "memorised": loss < MEMORISED_LOSS})
    return pd.DataFrame(rows)


def repeated_table(store: Store, runs: pd.DataFrame) -> pd.DataFrame:
    """``repeated_points`` of every run with the run's n_train, T_over_n, repeats, seed,
    learned_features (count with D > LEARNED_D), kept_features (those of them that are not
    active in a repeated point: the features the model keeps besides the ones that rebuild the
    point) and test_loss."""
    frames = []
    for run in runs.itertuples(index=False):
        arrays = store.arrays(run.run_id)
        points = repeated_points(arrays["W"], arrays["b"], arrays, arrays["H"],
                                 int(run.n_repeated), int(run.repeats))
        learned = metrics.feature_dimensionality(arrays["W"]) > LEARNED_D
        own = arrays["X_indices"][: arrays["X_indptr"][int(run.n_repeated)]]
        frames.append(points.assign(
            run_id=run.run_id, n_train=run.n_train, T_over_n=run.n_train / run.n_features,
            repeats=run.repeats, seed=run.seed, learned_features=int(learned.sum()),
            kept_features=int(learned.sum() - learned[np.unique(own)].sum()),
            test_loss=run.test_loss))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def repeated_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per (T, R) of a ``repeated_table``: T_over_n, seeds, memorised (share of repeated points
    memorised over seeds), own_loss, D, learned_features, kept_features and test_loss
    (means)."""
    table = points.groupby(["n_train", "repeats"]).agg(
        T_over_n=("T_over_n", "first"), seeds=("seed", "nunique"),
        memorised=("memorised", "mean"), own_loss=("own_loss", "mean"), D=("D", "mean"),
        learned_features=("learned_features", "mean"),
        kept_features=("kept_features", "mean"), test_loss=("test_loss", "mean"),
    )
    return table.reset_index()


def boundaries(summary: pd.DataFrame) -> pd.DataFrame:
    """Per T of a ``repeated_summary``: the measured bracket of the memorisation boundary and
    the prediction R = 0.4 T/n.

    R_hi is the smallest R from which the repeated point is memorised (in at least half the
    seeds) at every larger R (inf if at none), R_lo the R before it in the grid (NaN if R_hi is
    the smallest). ``consistent``: the prediction lies within BOUNDARY_FACTOR of the bracket.
    """
    rows = []
    for T, part in summary.sort_values("repeats").groupby("n_train"):
        R = part["repeats"].to_numpy(float)
        memorised = part["memorised"].to_numpy() >= 0.5
        first = len(R)
        while first > 0 and memorised[first - 1]:
            first -= 1
        R_hi = R[first] if first < len(R) else math.inf
        R_lo = R[first - 1] if first > 0 else math.nan
        predicted = BOUNDARY_SLOPE * part["T_over_n"].iloc[0]
        consistent = (R_hi >= predicted / BOUNDARY_FACTOR
                      and (math.isnan(R_lo) or R_lo <= predicted * BOUNDARY_FACTOR))
        rows.append({"n_train": T, "T_over_n": part["T_over_n"].iloc[0], "R_lo": R_lo,
                     "R_hi": R_hi, "predicted": predicted, "consistent": consistent})
    return pd.DataFrame(rows)


def sparsity_table(runs: pd.DataFrame, learned: pd.Series) -> pd.DataFrame:
    """Per (S, T): count (T (1 - S), each feature's expected appearances), seeds, test_mean,
    test_median and learned_features (mean over seeds of ``learned``, indexed by run_id)."""
    runs = runs.assign(learned=runs["run_id"].map(learned))
    table = runs.groupby(["sparsity", "n_train"]).agg(
        seeds=("seed", "nunique"), test_mean=("test_loss", "mean"),
        test_median=("test_loss", "median"), learned_features=("learned", "mean"),
    ).reset_index()
    table.insert(2, "count", table["n_train"] * (1.0 - table["sparsity"]))
    return table


def onsets(table: pd.DataFrame) -> pd.DataFrame:
    """Per S of a ``sparsity_table``: onset_T, the smallest T from which the mean test loss
    stays below 1 (predicting zero) at every larger T, and onset_count = onset_T (1 - S);
    NaN where it never does."""
    rows = []
    for S, part in table.sort_values("n_train").groupby("sparsity"):
        below = part["test_mean"].to_numpy() < 1.0
        first = len(below)
        while first > 0 and below[first - 1]:
            first -= 1
        T = part["n_train"].iloc[first] if first < len(below) else math.nan
        rows.append({"sparsity": S, "onset_T": T, "onset_count": T * (1.0 - S)})
    return pd.DataFrame(rows, columns=["sparsity", "onset_T", "onset_count"])


def max_dimensionality_table(store: Store, runs: pd.DataFrame) -> pd.DataFrame:
    """D and D* (``metrics.max_dimensionality``) of every training example of every run: one
    row each with run_id, n_hidden, n_train, seed, D, D_star."""
    frames = []
    for run in runs.itertuples(index=False):
        H = store.arrays(run.run_id)["H"]
        frames.append(pd.DataFrame({
            "run_id": run.run_id, "n_hidden": run.n_hidden, "n_train": run.n_train,
            "seed": run.seed, "D": metrics.dimensionality(H),
            "D_star": metrics.max_dimensionality(H)}))
    columns = ["run_id", "n_hidden", "n_train", "seed", "D", "D_star"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def max_dimensionality_summary(examples: pd.DataFrame) -> pd.DataFrame:
    """Per T of a ``max_dimensionality_table``: examples, D_star_median, D_star_max,
    D_star_above_half (share of examples with D* > 1/2), D_median and m_over_T."""
    table = examples.groupby("n_train").agg(
        examples=("D_star", "size"), D_star_median=("D_star", "median"),
        D_star_max=("D_star", "max"), D_star_above_half=("D_star", lambda d: np.mean(d > 0.5)),
        D_median=("D", "median"), n_hidden=("n_hidden", "first"),
    ).reset_index()
    table["m_over_T"] = table["n_hidden"] / table["n_train"]
    return table.drop(columns="n_hidden")


def fmt_T(value: float) -> str:
    """T as the figures and tables write it: 30, 2,000, 500,000, or ∞."""
    return "∞" if value == math.inf else f"{value:,.0f}"

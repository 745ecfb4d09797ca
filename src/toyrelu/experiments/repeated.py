"""Repeated data, a follow-up of the paper (m = 2): one training point repeated R times.

At T = 30,000 (n = 10,000) small R changes nothing, while with R around 5 the repeated point is
memorized and displaces a pentagon feature; the boundary is roughly R = 0.4 T / n
(docs/experiment.md section 5, ``toyrelu.core.paper``). The record: its runs (those that repeat
points), the per-point table and its summary per (T, R), the memorisation boundary, the two
claims, a geometry row and the boundary figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from numpy.typing import NDArray

from toyrelu.analysis.regimes import holds_from
from toyrelu.analysis.tables import LEARNED_D, Finding
from toyrelu.core import metrics, paper
from toyrelu.core.config import fmt_T
from toyrelu.experiments.common import about, new_figure, shown
from toyrelu.experiments.record import Claim, Experiment, Section, grouped, repeated_data
from toyrelu.figures.axes import plain_log_y, series_colors
from toyrelu.figures.base import as_style, plot_features, save
from toyrelu.runs.store import Store

MEMORISED_LOSS = 0.5  # a point is memorised once more than half its squared norm is rebuilt
BOUNDARY_FACTOR = 2.5  # one step of a 1, 2, 5, 10 grid either side
DISPLACES = Claim(
    f"R = {paper.REPEATS_MEMORISED} memorises the repeated point and displaces a feature; "
    "R = 1 does not",
    f"m = {paper.N_HIDDEN}, T = {paper.REPEATED_T:,}: small R changes nothing; R around "
    f"{paper.REPEATS_MEMORISED} memorises the point and displaces a pentagon feature")
BOUNDARY = Claim(f"the memorisation boundary is R = {paper.BOUNDARY_SLOPE} T/n",
                 f"R about {paper.BOUNDARY_SLOPE} T/n (within a factor {BOUNDARY_FACTOR} here)")


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
        first = holds_from(memorised)
        R_hi = R[first] if first < len(R) else math.inf
        R_lo = R[first - 1] if first > 0 else math.nan
        predicted = paper.BOUNDARY_SLOPE * part["T_over_n"].iloc[0]
        consistent = (R_hi >= predicted / BOUNDARY_FACTOR
                      and (math.isnan(R_lo) or R_lo <= predicted * BOUNDARY_FACTOR))
        rows.append({"n_train": T, "T_over_n": part["T_over_n"].iloc[0], "R_lo": R_lo,
                     "R_hi": R_hi, "predicted": predicted, "consistent": consistent})
    return pd.DataFrame(rows)


def repeated_findings(summary: pd.DataFrame, bounds: pd.DataFrame) -> list[Finding]:
    """Repeated data. At the T whose T/n is closest to the paper's 3 (T = 30,000, n = 10,000):
    R = 1 leaves the point unmemorised, R nearest 5 memorises it in at least half the seeds
    and keeps fewer features besides the point's own (kept_features) than R = 1. And at every
    T the boundary bracket is consistent with R = 0.4 T/n (``boundaries``)."""
    out = []
    off = (summary["T_over_n"] - paper.REPEATED_T_OVER_N).abs()
    at = summary[off == off.min()]
    five = at.iloc[(at["repeats"] - paper.REPEATS_MEMORISED).abs().argsort()[:1]]
    plain = at[at["repeats"] == 1]
    if not plain.empty and not five.empty and five["repeats"].iloc[0] > 1:
        p, f = plain.iloc[0], five.iloc[0]
        out.append(Finding(
            f"R = {f.repeats:g} memorises the repeated point and displaces a feature; R = 1 "
            "does not",
            f"T = {fmt_T(p.n_train)} (T/n = {p.T_over_n:g}): own loss {p.own_loss:.3g} and "
            f"{p.kept_features:.1f} other features at R = 1, {f.own_loss:.3g} (memorised in "
            f"{f.memorised:.0%} of seeds) and {f.kept_features:.1f} other features at R = "
            f"{f.repeats:g}",
            bool(p.memorised < 0.5 <= f.memorised and f.kept_features < p.kept_features),
            paper=DISPLACES.paper,
        ))
    if not bounds.empty:
        out.append(Finding(
            BOUNDARY.text,
            "; ".join(f"T/n = {r.T_over_n:g}: memorised from R = {r.R_hi:g} (not at "
                      f"{r.R_lo:g}), predicted {r.predicted:.2g}" for r in bounds.itertuples()),
            bool(bounds["consistent"].all()),
            paper=BOUNDARY.paper,
        ))
    return out


def plot_repeated_geometry(ax: Axes, W: np.ndarray, H_repeated: np.ndarray, *,
                           style=None) -> Axes:
    """The features W_i (2, n_features) as spokes and the repeated points' hidden vectors
    (n_repeated, 2) as red stars with a ray from the origin, labelled "repeated point"."""
    st = as_style(style)
    plot_features(ax, W, style=st)
    points = np.asarray(H_repeated, dtype=float).reshape(-1, 2)
    for h in points:
        ax.plot([0.0, h[0]], [0.0, h[1]], color=st.feature_color, linewidth=1.2)
    ax.scatter(points[:, 0], points[:, 1], marker="*", s=70, color=st.feature_color,
               zorder=4, label="repeated point")
    radius = max(np.abs(ax.get_xlim()).max(), 1.12 * np.abs(points).max(initial=0.0))
    ax.set_xlim(-radius, radius)
    ax.set_ylim(-radius, radius)
    return ax


def plot_repeated(ax: Axes, summary: pd.DataFrame, *, column: str = "own_loss",
                  style=None) -> Axes:
    """A ``repeated_summary`` column (own_loss, learned_features or kept_features) vs
    R, one curve per T/n, log x; for own_loss, a dotted line at the memorised threshold."""
    st = as_style(style)
    groups = sorted(summary["T_over_n"].unique())
    for ratio, color in zip(groups, series_colors(st, len(groups)), strict=True):
        part = summary[summary["T_over_n"] == ratio].sort_values("repeats")
        ax.plot(part["repeats"], part[column], marker="o", color=color,
                markersize=st.marker_size, label=f"T/n = {ratio:g}")
    if column == "own_loss":
        ax.axhline(MEMORISED_LOSS, color=st.reference_color, linestyle=":",
                   label="memorised below")
        ax.set_ylabel("repeated point's own loss")
    elif column == "kept_features":
        ax.set_ylabel("features with $D$ > 0.1, not the point's")
    else:
        ax.set_ylabel("features with $D$ > 0.1")
    ax.set_xscale("log")
    ax.set_xlabel("repeats $R$")
    ax.legend(frameon=False, fontsize="small")
    return ax


def plot_boundary(ax: Axes, summary: pd.DataFrame, *, style=None) -> Axes:
    """Every (T/n, R) of a ``repeated_summary``: filled where the repeated point is memorised
    in at least half the seeds ("memorised"), open otherwise ("kept general"), and the line
    R = 0.4 T/n across the T/n range; log-log."""
    st = as_style(style)
    kept = summary["memorised"] >= 0.5
    for mask, label, face in ((kept, "memorised", st.feature_color),
                              (~kept, "not memorised", "none")):
        ax.scatter(summary["T_over_n"][mask], summary["repeats"][mask], s=40, marker="o",
                   facecolors=face, edgecolors=st.feature_color, label=label)
    ratio = summary["T_over_n"].to_numpy(float)
    x = np.geomspace(ratio.min() / 1.5, ratio.max() * 1.5, 50)
    ax.plot(x, paper.BOUNDARY_SLOPE * x, color=st.reference_color, linestyle="--",
            label=f"R = {paper.BOUNDARY_SLOPE} T/n")
    ax.set_xscale("log")
    plain_log_y(ax, summary["repeats"])
    ax.set_xlabel("$T/n$")
    ax.set_ylabel("repeats $R$")
    ax.legend(frameon=False, fontsize="small")
    return ax


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Repeated data: the repeated point's loss and the features kept per R, a geometry row
    at the T nearest T/n = 3 (lowest seed), and the R vs T/n boundary."""
    points = repeated_table(store, runs)
    summary = repeated_summary(points)
    bounds = boundaries(summary)
    ratio = (runs["n_train"] / runs["n_features"] - paper.REPEATED_T_OVER_N).abs()
    at = runs[ratio == ratio.min()].sort_values(["repeats", "seed"]).drop_duplicates("repeats")
    figures = []
    if (at["n_hidden"] == 2).all():
        fig, axes = new_figure((2.2 * len(at) + 0.5, 2.8), panels=len(at))
        for ax, run in zip(np.atleast_1d(axes), at.itertuples(), strict=True):
            arrays = store.arrays(run.run_id)
            plot_repeated_geometry(ax, arrays["W"], arrays["H"][: int(run.n_repeated)])
            ax.set_title(f"R = {run.repeats}")
        save(fig, out, "repeated_geometry")
        figures.append(record.figure("repeated_geometry", T=fmt_T(at["n_train"].iloc[0])))
    fig, axes = new_figure((15, 4.2), panels=3)
    plot_repeated(axes[0], summary, column="own_loss")
    plot_repeated(axes[1], summary, column="kept_features")
    plot_boundary(axes[2], summary)
    save(fig, out, "repeated")
    figures.append(record.figure("repeated"))
    text, settings = about(runs, "repeats")
    return Section(
        record.title, text, figures,
        [("Per T and R (means over seeds)", shown(summary)),
         ("The memorisation boundary per T", shown(bounds))],
        repeated_findings(summary, bounds), settings)


RECORD = Experiment(
    key="repeated",
    title="Repeated data",
    axis="repeats",
    claims=(DISPLACES, BOUNDARY),
    figures={
        "repeated_geometry": "Features (spokes) and the repeated point (star) at T = {T}, one "
                             "column per R (lowest seed).",
        "repeated": "The repeated point's own loss and the number of learned features (D > 0.1) "
                    "other than the point's own vs R, one curve per T/n; where the point is "
                    f"memorised in the (T/n, R) plane, with the line R = {paper.BOUNDARY_SLOPE} "
                    "T/n.",
    },
    select=grouped("repeats", repeated_data),
    build=build,
)

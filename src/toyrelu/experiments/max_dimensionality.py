"""Maximal data dimensionality D* of the training examples against T, at m = 2.

D*_t = max_v (v . h_t)^2 / sum_j (v . h_j)^2, an extra the paper's comments suggest
(docs/experiment.md section 4, ``metrics.max_dimensionality``); the paper states no number for
it, so the record checks no claim. The record: its runs (the m = 2 sweep over T), the table per
example and per T, and the scatter of D* against T.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from toyrelu.core import metrics
from toyrelu.experiments.common import about, new_figure, shown
from toyrelu.experiments.record import Experiment, Section, grouped, repeated_data
from toyrelu.figures.axes import T_axis, T_positions
from toyrelu.figures.base import as_style, save
from toyrelu.runs.store import Store

MAX_POINTS_PER_T = 2_000  # the D* scatter draws at most this many examples per T


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


def plot_max_dimensionality(ax: Axes, examples: pd.DataFrame, *, style=None) -> Axes:
    """D* of training examples vs T (a ``max_dimensionality_table``), log-log: at most
    MAX_POINTS_PER_T examples per T as dots (a fixed random subset), the median and the
    maximum per T as lines, and m/T, the mean D* (the D* of the T examples sum to m). The
    dots' x is jittered by exp(N(0, jitter)) from the style's seed, so output repeats."""
    st = as_style(style)
    rng = np.random.default_rng(st.seed)
    parts = []
    for _, part in examples.groupby("n_train"):
        take = rng.choice(len(part), size=min(len(part), MAX_POINTS_PER_T), replace=False)
        parts.append(part.iloc[np.sort(take)])
    shown = pd.concat(parts) if parts else examples
    x = T_positions(shown["n_train"]) * np.exp(st.jitter * rng.standard_normal(len(shown)))
    ax.scatter(x, shown["D_star"], s=st.scatter_size,
               color=st.example_color, alpha=st.scatter_alpha, linewidths=0,
               label="training examples", rasterized=True)
    stats = examples.groupby("n_train")["D_star"].agg(["median", "max"])
    x = T_positions(stats.index)
    ax.plot(x, stats["median"], color=st.example_color, marker="o",
            markersize=st.marker_size, label="median")
    ax.plot(x, stats["max"], color=st.feature_color, marker="^", markersize=st.marker_size,
            linestyle="--", label="max")
    T = stats.index.to_numpy(float)
    finite = T[np.isfinite(T)]
    if len(finite) > 1:
        curve = np.geomspace(finite.min(), finite.max(), 200)
        m = float(examples["n_hidden"].iloc[0])
        ax.plot(curve, m / curve, color=st.reference_color, linestyle=":", label="m / T")
    T_axis(ax, T)
    ax.set_yscale("log")
    ax.set_ylim(top=1.5)
    ax.set_ylabel("maximal dimensionality $D^*$")
    ax.legend(frameon=False, fontsize="small", loc="lower left")
    return ax


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """D* of every training example vs T (docs/experiment.md section 4) for the m = 2 sweep."""
    examples = max_dimensionality_table(store, runs)
    fig, ax = new_figure((7, 4.5))
    plot_max_dimensionality(ax, examples)
    save(fig, out, "max_dimensionality")
    text, settings = about(runs, None)
    return Section(
        record.title, text, [record.figure("max_dimensionality")],
        [("D* per T (all seeds)", shown(max_dimensionality_summary(examples)))],
        [], settings)


RECORD = Experiment(
    key="max-dimensionality",
    title="Maximal data dimensionality D*",
    axis=None,
    claims=(),
    figures={"max_dimensionality": "D* = max_v (v . h_t)^2 / sum_j (v . h_j)^2 of training "
             f"examples vs T (at most {MAX_POINTS_PER_T:,} per T drawn), the median per T, and "
             "m/T."},
    select=grouped(None, lambda runs: ~repeated_data(runs) & (runs["n_hidden"] == 2),
                   min_values=3),
    build=build,
)

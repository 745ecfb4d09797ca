"""Sparsity, a follow-up of the paper: generalization against T(1 - S) across sparsities.

Generalization starts once each feature has appeared about 10 times, at T (1 - S) near 10,
whatever S (docs/experiment.md section 5, ``toyrelu.core.paper.ONSET_COUNT``). The record: its
runs (the largest sweep over S), the table per (S, T), the onset per S, the claim and the
collapse figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes

from toyrelu.analysis.regimes import holds_from
from toyrelu.analysis.tables import POSITION_FACTOR, Finding, learned_features
from toyrelu.core import paper
from toyrelu.core.config import fmt_T
from toyrelu.experiments.common import about, new_figure, shown
from toyrelu.experiments.record import Claim, Experiment, Section, grouped, repeated_data
from toyrelu.figures.axes import plain_log_y, series_colors
from toyrelu.figures.base import as_style, save
from toyrelu.runs.store import Store

ONSET = Claim(f"generalization starts at T(1 - S) near {paper.ONSET_COUNT:g} across sparsities",
              f"T(1 - S) near {paper.ONSET_COUNT:g} (each feature seen about "
              f"{paper.ONSET_COUNT:g} times)")


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
        first = holds_from(below)
        T = part["n_train"].iloc[first] if first < len(below) else math.nan
        rows.append({"sparsity": S, "onset_T": T, "onset_count": T * (1.0 - S)})
    return pd.DataFrame(rows, columns=["sparsity", "onset_T", "onset_count"])


def sparsity_finding(onset: pd.DataFrame) -> Finding | None:
    """Follow-up: generalization starts at T (1 - S) within POSITION_FACTOR of
    ``paper.ONSET_COUNT`` at every sparsity (``onsets``)."""
    if len(onset) < 2:
        return None
    counts = onset["onset_count"]
    return Finding(
        ONSET.text,
        "mean test loss below 1 from T(1 - S) = " + ", ".join(
            f"{r.onset_count:.3g} (S = {r.sparsity:g}, T = {fmt_T(r.onset_T)})"
            for r in onset.itertuples()),
        bool(counts.notna().all() and counts.between(paper.ONSET_COUNT / POSITION_FACTOR,
                                                     paper.ONSET_COUNT * POSITION_FACTOR).all()),
        paper=ONSET.paper,
    )


def plot_sparsity(ax: Axes, table: pd.DataFrame, *, onset: pd.DataFrame | None = None,
                  style=None) -> Axes:
    """Mean test loss vs T(1 - S) of a ``sparsity_table``, one curve per S, log x; a dashed
    line at T(1 - S) = 10, the predict-zero line, and each S's onset (``onsets``) as a
    diamond on its curve."""
    st = as_style(style)
    values = sorted(table["sparsity"].unique())
    for S, color in zip(values, series_colors(st, len(values)), strict=True):
        part = table[table["sparsity"] == S].sort_values("count")
        ax.plot(part["count"], part["test_mean"], marker="o", color=color,
                markersize=st.marker_size, label=f"S = {S:g}")
        if onset is not None:
            at = onset[(onset["sparsity"] == S) & onset["onset_T"].notna()]
            hit = part[part["n_train"].isin(at["onset_T"])]
            ax.scatter(hit["count"], hit["test_mean"], marker="D", s=50, color=color,
                       edgecolors="black", zorder=4)
    ax.axvline(paper.ONSET_COUNT, color=st.reference_color, linestyle="--",
               label=f"T(1 - S) = {paper.ONSET_COUNT:g}")
    ax.axhline(1.0, color=st.reference_color, linestyle=":", label="predict zero ($L$ = 1)")
    ax.set_xscale("log")
    plain_log_y(ax, [*table["test_mean"], 1.0])
    ax.set_xlabel("expected appearances per feature $T(1 - S)$")
    ax.set_ylabel("test loss $L$ (mean over seeds)")
    ax.legend(frameon=False, fontsize="small")
    return ax


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """The sparsity collapse: test loss vs T(1 - S) per S and the onset of generalization."""
    learned = pd.Series(learned_features(store, runs["run_id"]), dtype=float)
    table = sparsity_table(runs, learned)
    onset = onsets(table)
    fig, ax = new_figure((7, 4.5))
    plot_sparsity(ax, table, onset=onset)
    save(fig, out, "sparsity")
    text, settings = about(runs, "sparsity")
    found = sparsity_finding(onset)
    return Section(
        record.title, text, [record.figure("sparsity")],
        [("Onset of generalization per S", shown(onset)),
         ("Per S and T", shown(table))],
        [found] if found else [], settings)


RECORD = Experiment(
    key="sparsity",
    title="Sparsity: generalization against T(1 - S)",
    axis="sparsity",
    claims=(ONSET,),
    figures={"sparsity": "Mean test loss vs T(1 - S), the expected number of times each feature "
                         "appears, one curve per S; diamonds mark where the loss stays below 1."},
    select=grouped("sparsity", lambda runs: ~repeated_data(runs)),
    build=build,
)

"""Figure 5 of the paper: mean test loss over the hidden size m and the training-set size T.

A ridge of raised test loss (above predicting zero, L = 1) moves to larger T as m grows: about
T = 2k at m = 2, 5k at m = 4 and 20k at m = 8 at n = 10,000, S = 0.999 (docs/experiment.md
section 5, ``toyrelu.core.paper.RIDGE_T``), at T scaled by 0.001 / (1 - S) at other sparsities.
The record: its runs (the largest sweep over m), the table and its ridge, the two claims, the
heatmap and the curves per m.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import FuncFormatter

from toyrelu.analysis import curves, regimes
from toyrelu.analysis.curves import TREND, rank_correlation
from toyrelu.analysis.tables import POSITION_FACTOR, Finding
from toyrelu.core import paper
from toyrelu.core.config import fmt_T
from toyrelu.experiments.common import COLUMNS, about, new_figure, shown
from toyrelu.experiments.record import Claim, Experiment, Section, grouped, repeated_data
from toyrelu.figures import axes as fx
from toyrelu.figures.base import T_LABEL, as_style, save
from toyrelu.runs.store import Store

_PAPER = ("about " + ", ".join(f"{T / 1000:g}k at m = {m}" for m, T in paper.RIDGE_T.items())
          + f" (n = {paper.N_FEATURES:,}, S = {paper.SPARSITY})")
MOVES = Claim("the ridge of raised test loss moves to larger T as m grows", _PAPER)
PLACE = Claim("the ridge sits where the paper's does, scaled to S",
              f"{_PAPER}; x 0.001 / (1 - S) at sparsity S")


def heatmap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test loss over seeds, one row per n_hidden and one column per T (ascending,
    T = infinity last); NaN where a cell has no run."""
    table = runs.pivot_table(index="n_hidden", columns="n_train", values="test_loss",
                             aggfunc="mean")
    return table.sort_index().sort_index(axis=1)


def ridges(table: pd.DataFrame, sparsity: float) -> pd.DataFrame:
    """Where each row of a ``heatmap_table`` peaks: n_hidden, ridge_T, peak, and paper_T (the
    paper's ridge at that m, ``paper.RIDGE_T``, scaled to ``sparsity``; NaN where it gives none).

    The ridge of a row is its bump (``regimes.bump`` over the T it holds): the peak the test
    loss falls from into generalization, never a higher loss of the memorization regime. A
    ridge is raised test loss, above the zero model's 1: a row whose bump stays at or below 1
    has none (ridge_T NaN), as its bump would only be noise among learned models."""
    rows = []
    for m, row in table.iterrows():
        row = row.dropna()
        if row.empty:
            continue
        top = regimes.bump(row.to_numpy())
        peak = float(row.iloc[top])
        rows.append({"n_hidden": m, "ridge_T": row.index[top] if peak > 1.0 else math.nan,
                     "peak": peak,
                     "paper_T": paper.RIDGE_T.get(int(m), math.nan) * paper.scale(sparsity)})
    return pd.DataFrame(rows, columns=["n_hidden", "ridge_T", "peak", "paper_T"])


def heatmap_findings(ridge: pd.DataFrame, sparsity: float) -> list[Finding]:
    """Figure 5: the ridge moves to larger T as m grows (rank correlation of ridge T with m at
    least TREND, and larger at the largest m than at the smallest), and where the paper gives
    positions (m = 2, 4, 8) each is within POSITION_FACTOR of the paper's, scaled to S.

    The trend is taken over the rows with a ridge (``ridges``); the measured text
    names the rows without one, whose test loss stays at or below 1 at every T of the grid."""
    ridge = ridge.sort_values("n_hidden")
    found = ridge[ridge["ridge_T"].notna()]
    if len(found) < 2:
        return []
    none = ridge[ridge["ridge_T"].isna()]
    rho = rank_correlation(found["n_hidden"], found["ridge_T"])
    where = ", ".join(f"{fmt_T(r.ridge_T)} (m = {r.n_hidden})" for r in found.itertuples())
    missing = ("; no mean test loss above 1 at any T for m = "
               + ", ".join(str(m) for m in none["n_hidden"]) if not none.empty else "")
    out = [Finding(
        MOVES.text,
        f"the bump of the mean test loss at T = {where}; rank correlation with m "
        f"{rho:.2f}{missing}",
        bool(rho >= TREND and found["ridge_T"].iloc[-1] > found["ridge_T"].iloc[0]),
        paper=MOVES.paper,
    )]
    known = ridge[ridge["paper_T"].notna()]
    if not known.empty:
        ratios = known["ridge_T"] / known["paper_T"]
        out.append(Finding(
            f"{PLACE.text} = {sparsity:g}",
            ", ".join(f"m = {r.n_hidden}: " + (
                f"T = {fmt_T(r.ridge_T)}, {q:.2g}x" if q == q else "no ridge, against")
                + f" the expected {fmt_T(r.paper_T)}"
                for r, q in zip(known.itertuples(), ratios, strict=True)),
            bool(all(1 / POSITION_FACTOR <= q <= POSITION_FACTOR for q in ratios)),
            paper=f"{MOVES.paper}; x {paper.scale(sparsity):g} at S = {sparsity:g}",
        ))
    return out


def plot_heatmap(ax: Axes, table: pd.DataFrame, *, ridge: pd.DataFrame | None = None,
                 style=None) -> Axes:
    """Figure 5: mean test loss per (m, T) of a ``heatmap_table`` (rows m, columns
    T) as coloured cells, m upwards and T rightwards (∞ last), coloured by log10 of the loss
    with white at 1 (predicting zero): red above, blue below. ``ridge`` (``ridges``)
    marks each row's bump (``regimes.bump``) with a black cross labelled "ridge" (rows without
    one, none)."""
    as_style(style)
    values = np.log10(table.to_numpy(dtype=float))
    finite = values[np.isfinite(values)]
    lo, hi = (min(finite.min(), -1e-4), max(finite.max(), 1e-4)) if len(finite) else (-1, 1)
    image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto",
                      cmap="RdBu_r", norm=TwoSlopeNorm(0.0, lo, hi), interpolation="nearest")
    columns = [float(T) for T in table.columns]
    ax.set_xticks(range(len(columns)), [fx.short_T(T) for T in columns])
    ax.set_yticks(range(len(table.index)), [str(m) for m in table.index])
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel("hidden dimensions $m$")
    bar = ax.figure.colorbar(image, ax=ax)
    bar.set_label("mean test loss")
    bar.set_ticks([lo, lo / 2, 0.0, hi / 4, hi / 2, 3 * hi / 4, hi])
    bar.formatter = FuncFormatter(lambda v, _: f"{10 ** v:.4g}")
    bar.update_ticks()
    if ridge is not None:
        ridge = ridge[ridge["ridge_T"].notna()]
    if ridge is not None and not ridge.empty:
        rows = [list(table.index).index(m) for m in ridge["n_hidden"]]
        cols = [columns.index(float(T)) for T in ridge["ridge_T"]]
        ax.scatter(cols, rows, marker="x", color="black", s=40, label="ridge", zorder=3)
        ax.legend(frameon=False, fontsize="small", loc="upper left")
    return ax


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Figure 5: mean test loss over (m, T), the ridge per m, and test loss vs T per m."""
    sparsity = float(runs["sparsity"].iloc[0])
    table = heatmap_table(runs)
    ridge = ridges(table, sparsity)
    fig, ax = new_figure((8, 4.5))
    plot_heatmap(ax, table, ridge=ridge)
    save(fig, out, "heatmap")
    fig, ax = new_figure((7, 4.5))
    fx.plot_loss_by(ax, curves.curves(runs, "n_hidden"), by="n_hidden")
    save(fig, out, "heatmap_curves")
    text, settings = about(runs, "n_hidden")
    cells = table.copy()
    cells.columns = [fmt_T(T) for T in cells.columns]
    return Section(
        record.title, text, [record.figure("heatmap"), record.figure("heatmap_curves")],
        [("Mean test loss (rows m, columns T)", cells.reset_index().rename(columns=COLUMNS)),
         ("The ridge: the bump of the mean test loss per m", shown(ridge))],
        heatmap_findings(ridge, sparsity), settings)


RECORD = Experiment(
    key="heatmap",
    title="Test loss over model size and data (heatmap)",
    axis="n_hidden",
    claims=(MOVES, PLACE),
    figures={
        "heatmap": "Mean test loss over seeds per (m, T), coloured by log loss with white at 1 "
                   "(predicting zero); crosses mark each m's bump, the peak its test loss "
                   "falls from into generalization (the ridge).",
        "heatmap_curves": "The same test losses as curves vs T, one per m: mean over seeds "
                          "with the min..max band.",
    },
    select=grouped("n_hidden", lambda runs: ~repeated_data(runs)),
    build=build,
)

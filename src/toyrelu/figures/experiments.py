"""Figures of the experiments beyond the m = 2 sweep, drawn from ``toyrelu.experiments`` tables.

Every plotting function has the shape ``plot_x(ax, table, *, style=None) -> Axes``: it draws
what the table holds, computes nothing and writes no files (PAPER.md section 5: figure 5, the
appendix sweeps, repeated data, the sparsity collapse; D* of section 4). T = infinity is drawn
at its own tick labelled "∞", right of the largest finite T. ``toyrelu.experiment_sections``
saves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from toyrelu.analysis import experiments
from toyrelu.analysis.experiments import BOUNDARY_SLOPE, ONSET_COUNT
from toyrelu.figures.base import T_LABEL, Style, as_style, plot_features

INF_GAP = 4.0  # T = infinity sits this factor right of the largest finite T
MAX_POINTS_PER_T = 2_000  # the D* scatter draws at most this many examples per T
LABELS = {"n_hidden": "$m$ = {}", "steps": "{:,} steps", "weight_decay": "weight decay {:g}"}


def short_T(value: float) -> str:
    """A tick label for T: 500, 2k, 500k, or ∞."""
    if value == np.inf:
        return "∞"
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def T_positions(T: Sequence[float] | np.ndarray) -> np.ndarray:
    """x positions of T values on a log axis: finite T as they are, infinity INF_GAP times
    right of the largest finite T (at 1 if there is none)."""
    T = np.asarray(T, dtype=float)
    finite = T[np.isfinite(T)]
    top = finite.max() if len(finite) else 1.0 / INF_GAP
    return np.where(np.isfinite(T), T, top * INF_GAP)


def _T_axis(ax: Axes, T: Sequence[float] | np.ndarray, label: str = T_LABEL) -> None:
    """Log x axis; with T = infinity among ``T``, decade ticks of the finite range plus "∞"."""
    ax.set_xscale("log")
    ax.set_xlabel(label)
    T = np.asarray(T, dtype=float)
    if np.isfinite(T).all():
        return
    finite = T[np.isfinite(T)]
    decades = ([10.0 ** k for k in range(int(np.floor(np.log10(finite.min()))),
                                         int(np.ceil(np.log10(finite.max()))) + 1)]
               if len(finite) else [])
    decades = [d for d in decades if finite.min() <= d <= finite.max()]
    ax.set_xticks([*decades, float(T_positions(T).max())],
                  [short_T(d) for d in decades] + ["∞"])
    ax.xaxis.set_minor_locator(NullLocator())


def _plain_log_y(ax: Axes, values: Sequence[float] | np.ndarray) -> None:
    """Log y axis labelled 1, 2, 5, 10 (or about six even steps where ``values`` span less
    than 3x) rather than in powers of ten."""
    ax.set_yscale("log")
    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    narrow = len(positive) and positive.max() < 3 * positive.min()
    ax.yaxis.set_major_locator(MaxNLocator(6) if narrow else LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _colors(st: Style, count: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps[st.cmap]
    return [cmap(0.85 * j / max(count - 1, 1)) for j in range(count)]


def plot_heatmap(ax: Axes, table: pd.DataFrame, *, ridge: pd.DataFrame | None = None,
                 style=None) -> Axes:
    """Figure 5: mean test loss per (m, T) of an ``experiments.heatmap_table`` (rows m, columns
    T) as coloured cells, m upwards and T rightwards (∞ last), coloured by log10 of the loss
    with white at 1 (predicting zero): red above, blue below. ``ridge`` (``experiments.ridges``)
    marks each row's highest cell with a black cross labelled "ridge" (rows without one, none)."""
    as_style(style)
    values = np.log10(table.to_numpy(dtype=float))
    finite = values[np.isfinite(values)]
    lo, hi = (min(finite.min(), -1e-4), max(finite.max(), 1e-4)) if len(finite) else (-1, 1)
    image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto",
                      cmap="RdBu_r", norm=TwoSlopeNorm(0.0, lo, hi), interpolation="nearest")
    columns = [float(T) for T in table.columns]
    ax.set_xticks(range(len(columns)), [short_T(T) for T in columns])
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


def plot_loss_by(ax: Axes, table: pd.DataFrame, *, by: str, style=None) -> Axes:
    """Test loss vs T, one curve per value of ``by`` (an ``experiments.curves`` table): mean
    over seeds with a min..max band, log axes, and the predict-zero line L = 1."""
    st = as_style(style)
    values = sorted(table[by].unique())
    for value, color in zip(values, _colors(st, len(values)), strict=True):
        part = table[table[by] == value].sort_values("n_train")
        x = T_positions(part["n_train"])
        ax.fill_between(x, part["test_min"], part["test_max"], color=color,
                        alpha=st.band_alpha, linewidth=0)
        label = LABELS.get(by, by.replace("_", " ") + " {:g}").format(value)
        ax.plot(x, part["test_mean"], color=color, marker="o", markersize=st.marker_size,
                label=label)
    ax.axhline(1.0, color=st.reference_color, linestyle=":", label="predict zero ($L$ = 1)")
    _T_axis(ax, table["n_train"])
    _plain_log_y(ax, [*table["test_min"], *table["test_max"], 1.0])
    ax.set_ylabel("test loss $L$ (mean over seeds)")
    ax.legend(frameon=False, fontsize="small")
    return ax


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
    for ratio, color in zip(groups, _colors(st, len(groups)), strict=True):
        part = summary[summary["T_over_n"] == ratio].sort_values("repeats")
        ax.plot(part["repeats"], part[column], marker="o", color=color,
                markersize=st.marker_size, label=f"T/n = {ratio:g}")
    if column == "own_loss":
        ax.axhline(experiments.MEMORISED_LOSS, color=st.reference_color, linestyle=":",
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
    ax.plot(x, BOUNDARY_SLOPE * x, color=st.reference_color, linestyle="--",
            label=f"R = {BOUNDARY_SLOPE} T/n")
    ax.set_xscale("log")
    _plain_log_y(ax, summary["repeats"])
    ax.set_xlabel("$T/n$")
    ax.set_ylabel("repeats $R$")
    ax.legend(frameon=False, fontsize="small")
    return ax


def plot_sparsity(ax: Axes, table: pd.DataFrame, *, onset: pd.DataFrame | None = None,
                  style=None) -> Axes:
    """Mean test loss vs T(1 - S) of a ``sparsity_table``, one curve per S, log x; a dashed
    line at T(1 - S) = 10, the predict-zero line, and each S's onset (``onsets``) as a
    diamond on its curve."""
    st = as_style(style)
    values = sorted(table["sparsity"].unique())
    for S, color in zip(values, _colors(st, len(values)), strict=True):
        part = table[table["sparsity"] == S].sort_values("count")
        ax.plot(part["count"], part["test_mean"], marker="o", color=color,
                markersize=st.marker_size, label=f"S = {S:g}")
        if onset is not None:
            at = onset[(onset["sparsity"] == S) & onset["onset_T"].notna()]
            hit = part[part["n_train"].isin(at["onset_T"])]
            ax.scatter(hit["count"], hit["test_mean"], marker="D", s=50, color=color,
                       edgecolors="black", zorder=4)
    ax.axvline(ONSET_COUNT, color=st.reference_color, linestyle="--",
               label=f"T(1 - S) = {ONSET_COUNT:g}")
    ax.axhline(1.0, color=st.reference_color, linestyle=":", label="predict zero ($L$ = 1)")
    ax.set_xscale("log")
    _plain_log_y(ax, [*table["test_mean"], 1.0])
    ax.set_xlabel("expected appearances per feature $T(1 - S)$")
    ax.set_ylabel("test loss $L$ (mean over seeds)")
    ax.legend(frameon=False, fontsize="small")
    return ax


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
    _T_axis(ax, T)
    ax.set_yscale("log")
    ax.set_ylim(top=1.5)
    ax.set_ylabel("maximal dimensionality $D^*$")
    ax.legend(frameon=False, fontsize="small", loc="lower left")
    return ax

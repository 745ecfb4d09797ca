"""Plotting helpers the experiments share, drawn from ``toyrelu.analysis.curves`` tables.

Every plotting function has the shape ``plot_x(ax, table, *, style=None) -> Axes``: it draws
what the table holds, computes nothing and writes no files. T = infinity is drawn at its own
tick labelled "∞", right of the largest finite T. Each experiment's own figures are drawn by its
record (``toyrelu.experiments``) with these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from toyrelu.figures.base import T_LABEL, Style, as_style

INF_GAP = 4.0  # T = infinity sits this factor right of the largest finite T
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


def T_axis(ax: Axes, T: Sequence[float] | np.ndarray, label: str = T_LABEL) -> None:
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


def plain_log_y(ax: Axes, values: Sequence[float] | np.ndarray) -> None:
    """Log y axis labelled 1, 2, 5, 10 (or about six even steps where ``values`` span less
    than 3x) rather than in powers of ten."""
    ax.set_yscale("log")
    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    narrow = len(positive) and positive.max() < 3 * positive.min()
    ax.yaxis.set_major_locator(MaxNLocator(6) if narrow else LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def series_colors(st: Style, count: int) -> list[Any]:
    """``count`` colours spread over the style's colour map, one per series."""
    import matplotlib

    cmap = matplotlib.colormaps[st.cmap]
    return [cmap(0.85 * j / max(count - 1, 1)) for j in range(count)]


def plot_loss_by(ax: Axes, table: pd.DataFrame, *, by: str, style=None) -> Axes:
    """Test loss vs T, one curve per value of ``by`` (an ``experiments.curves`` table): mean
    over seeds with a min..max band, log axes, and the predict-zero line L = 1."""
    st = as_style(style)
    values = sorted(table[by].unique())
    for value, color in zip(values, series_colors(st, len(values)), strict=True):
        part = table[table[by] == value].sort_values("n_train")
        x = T_positions(part["n_train"])
        ax.fill_between(x, part["test_min"], part["test_max"], color=color,
                        alpha=st.band_alpha, linewidth=0)
        label = LABELS.get(by, by.replace("_", " ") + " {:g}").format(value)
        ax.plot(x, part["test_mean"], color=color, marker="o", markersize=st.marker_size,
                label=label)
    ax.axhline(1.0, color=st.reference_color, linestyle=":", label="predict zero ($L$ = 1)")
    T_axis(ax, table["n_train"])
    plain_log_y(ax, [*table["test_min"], *table["test_max"], 1.0])
    ax.set_ylabel("test loss $L$ (mean over seeds)")
    ax.legend(frameon=False, fontsize="small")
    return ax


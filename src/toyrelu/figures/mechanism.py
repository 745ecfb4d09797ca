"""Figures of the mechanism study (docs/experiment.md section 10), drawn from the tables of
``toyrelu.analysis.mechanism``; nothing here computes them.

Each plotting function has the shape ``plot_x(ax, table, *, style=None) -> Axes`` and draws one
series per training procedure (``procedures.split``: the summed loss first, one colour each).
``by_count`` tables (one T) are drawn against a feature's count in the training set, in
``COUNT_BINS`` order as the table gives it; ``lines`` (``timeline`` rows of one T) against the
training step, one line per seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from toyrelu.analysis import procedures
from toyrelu.figures.base import Style, as_style

COUNT_LABEL = "times the feature is seen in training"


def _colors(st: Style) -> tuple[str, ...]:
    return (st.test_color, st.train_color, st.feature_color, st.W_color)


def _by_count(ax: Axes, table: pd.DataFrame, column: str, st: Style, *,
              linestyle: str = "-", suffix: str = "") -> Axes:
    """One line of ``column`` per procedure over the count bins of ``table``."""
    bins = list(dict.fromkeys(table["bin"]))
    for k, (label, part) in enumerate(procedures.split(table)):
        x = [bins.index(b) for b in part["bin"]]
        ax.plot(x, part[column], color=_colors(st)[k % 4], marker="o", linestyle=linestyle,
                markersize=st.marker_size, label=label + suffix)
    ax.set_xticks(range(len(bins)), bins)
    ax.set_xlabel(COUNT_LABEL)
    return ax


def plot_length_by_count(ax: Axes, table: pd.DataFrame, *, style=None) -> Axes:
    """Median final |W_i| per training count (``by_count`` rows of one T)."""
    st = as_style(style)
    _by_count(ax, table, "W_norm", st)
    ax.set_ylabel("median final $|W_i|$")
    ax.legend(frameon=False, fontsize="x-small")
    return ax


def plot_gain_by_count(ax: Axes, table: pd.DataFrame, *, style=None) -> Axes:
    """Median Adam gain per training count, over training (solid) and over its second half
    (dashed); 1 is a full step, 0 a step eps has taken away."""
    st = as_style(style)
    _by_count(ax, table, "gain", st)
    _by_count(ax, table, "late_gain", st, linestyle="--", suffix=", second half")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("median Adam gain sqrt(v) / (sqrt(v) + eps)")
    ax.legend(frameon=False, fontsize="x-small", loc="center right")
    return ax


def plot_tail_by_count(ax: Axes, table: pd.DataFrame, *, style=None) -> Axes:
    """Each training count's share of the tail's loss, one bar per procedure."""
    st = as_style(style)
    bins = list(dict.fromkeys(table["bin"]))
    parts = procedures.split(table)
    width = 0.8 / max(len(parts), 1)
    for k, (label, part) in enumerate(parts):
        x = np.array([bins.index(b) for b in part["bin"]], dtype=float)
        ax.bar(x + (k - (len(parts) - 1) / 2) * width, part["tail_share"], width,
               color=_colors(st)[k % 4], label=label)
    ax.set_xticks(range(len(bins)), bins)
    ax.set_xlabel(COUNT_LABEL)
    ax.set_ylabel("share of the tail's test loss")
    ax.legend(frameon=False, fontsize="x-small")
    return ax


def _over_training(ax: Axes, lines: pd.DataFrame, column: str, ylabel: str, st: Style) -> Axes:
    """``column`` of ``timeline`` rows of one T against the training step, one line per seed,
    one colour per procedure."""
    for k, (label, part) in enumerate(procedures.split(lines)):
        for j, (_, seed) in enumerate(part.groupby("seed")):
            seed = seed.sort_values("step")
            ax.plot(seed["step"], seed[column], color=_colors(st)[k % 4],
                    label=label if j == 0 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize="x-small")
    return ax


def plot_tail_over_training(ax: Axes, lines: pd.DataFrame, *, style=None) -> Axes:
    """The share of test examples in the tail against the training step."""
    return _over_training(ax, lines, "test_share_above_2",
                          "share of test examples with loss > 2", as_style(style))


def plot_rare_over_training(ax: Axes, lines: pd.DataFrame, *, style=None) -> Axes:
    """The median |W_i| of the features seen once or twice in training against the step."""
    return _over_training(ax, lines, "rare_W_norm",
                          "median $|W_i|$ of features seen 1-2 times", as_style(style))


def mechanism_figure(table: pd.DataFrame, lines: pd.DataFrame, title: str, *,
                     style=None) -> Figure:
    """The five panels side by side: |W_i|, Adam's gain and the tail's share per training
    count (``by_count`` rows of one T), then the rare features' length and the tail over
    training (its ``timeline`` rows)."""
    fig = Figure(figsize=(21, 4.2), layout="constrained")
    axes = fig.subplots(1, 5)
    plot_length_by_count(axes[0], table, style=style)
    plot_gain_by_count(axes[1], table, style=style)
    plot_tail_by_count(axes[2], table, style=style)
    plot_rare_over_training(axes[3], lines, style=style)
    plot_tail_over_training(axes[4], lines, style=style)
    fig.suptitle(title)
    return fig

"""Figures of the sensitivity study (``toyrelu.analysis.sensitivity``), drawn from its tables.

Every plotting function has the shape ``plot_x(ax, table, *, style=None) -> Axes``; it computes
no statistics and writes no files.

Inputs (columns as ``sensitivity`` computes them):
    bumps: one row per knob value: ``position``, ``value``, ``is_base``, ``peak_mean``,
        ``peak_min``, ``peak_max`` (seed spread at the peak), ``inner`` (peak inside the grid).
    per_T: one row per (knob value, T): ``position``, ``value``, ``n_train``, ``test_mean``,
        ``test_min``, ``test_max``, ``example_median``, ``example_p90``, ``share_above_2``.
    ranking: one row per knob: ``knob``, ``factor`` (highest / lowest bump), ``stated``.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from toyrelu.core import paper
from toyrelu.figures.base import Style, as_style, label_T_axes

LOSS_LABEL = "test loss $L$"


def _values(table: pd.DataFrame, st: Style) -> list[tuple[Any, str, pd.DataFrame]]:
    """(colour, value, rows sorted by T) per knob value, in the knob's order, one colour each."""
    groups = [rows.sort_values("n_train") for _, rows in table.groupby("position", sort=True)]
    cmap = plt.get_cmap(st.cmap)
    return [(cmap(0.85 * j / max(len(groups) - 1, 1)), str(rows["value"].iloc[0]), rows)
            for j, rows in enumerate(groups)]


def _label(value: str, is_base: bool) -> str:
    return f"{value} (base)" if is_base else value


def _plain(ax: Axes) -> None:
    """Tick labels on a log y axis as plain numbers (2, 0.015) rather than powers of ten."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # Minor ticks: label 2 and 5 of each decade, so a narrow range still reads.
    ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _loss_axes(ax: Axes, st: Style, ylabel: str, *, legend: str = "x-small") -> Axes:
    """Finish a loss-vs-T panel: the zero predictor's L = 1 dotted, log-log axes with plain
    tick labels, the T and ``ylabel`` labels and a legend; returns ``ax``."""
    ax.axhline(1.0, color=st.reference_color, linestyle=":", linewidth=1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain(ax)
    return label_T_axes(ax, ylabel, legend=legend)


def plot_bump_height(ax: Axes, bumps: pd.DataFrame, *, style=None) -> Axes:
    """Bump height per knob value as the excess of the peak's seed-mean test loss over 1 (the
    zero predictor), on a log axis so that the paper's 0.015 and excesses of 100 both show: a
    dot per value with the seeds' min..max at that T as a bar, the paper's excess as a dashed
    line. A bump at the edge of the T grid (``inner`` false) is an open circle; an excess at or
    below ``floor`` (no bump) is drawn at ``floor`` as a downward triangle."""
    st = as_style(style)
    rows = bumps.sort_values("position")
    x = np.arange(len(rows))
    floor = 1e-4
    excess = rows["peak_mean"].to_numpy(dtype=float) - 1
    low = np.maximum(rows["peak_min"].to_numpy(float) - 1, floor)
    high = np.maximum(rows["peak_max"].to_numpy(float) - 1, floor)
    shown = np.maximum(excess, floor)
    ax.errorbar(x, shown, yerr=np.vstack([shown - low, high - shown]), fmt="o",
                color=st.test_color, capsize=4, markersize=2 * st.marker_size,
                label="peak mean test loss - 1 (seed range)")
    gone = excess <= floor
    ax.plot(x[gone], np.full(gone.sum(), floor), linestyle="none", marker="v",
            color=st.reference_color, markersize=2 * st.marker_size, label="no bump")
    edge = ~rows["inner"].to_numpy(dtype=bool) & ~gone
    ax.plot(x[edge], shown[edge], linestyle="none", marker="o", markerfacecolor="white",
            color=st.test_color, markersize=2 * st.marker_size, zorder=3,
            label="bump at the T grid's edge (none inside)")
    ax.axhline(paper.BUMP_PEAK - 1, color=st.feature_color, linestyle="--", linewidth=1.2,
               label=f"paper ({paper.BUMP_PEAK} - 1)")
    ax.set_xticks(x, [_label(v, b) for v, b in zip(rows["value"], rows["is_base"], strict=True)],
                  rotation=15)
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 2)
    _plain(ax)
    ax.set_ylabel("bump height: peak test loss $-$ 1")
    ax.legend(frameon=False, fontsize="x-small")
    return ax


def plot_loss_vs_T(ax: Axes, per_T: pd.DataFrame, *, style=None) -> Axes:
    """Seed-mean test loss vs T, one line per knob value, with the seeds' min..max band."""
    st = as_style(style)
    for color, value, rows in _values(per_T, st):
        T = rows["n_train"].to_numpy(dtype=float)
        ax.fill_between(T, rows["test_min"], rows["test_max"], color=color, alpha=st.band_alpha,
                        linewidth=0)
        ax.plot(T, rows["test_mean"], marker="o", color=color, markersize=st.marker_size,
                label=_label(value, bool(rows["is_base"].iloc[0])))
    return _loss_axes(ax, st, "mean " + LOSS_LABEL)


def plot_example_spread(ax: Axes, per_T: pd.DataFrame, *, style=None) -> Axes:
    """Per-example test losses vs T: the median (solid) and 90th percentile (dashed), each the
    mean over seeds, one colour per knob value."""
    st = as_style(style)
    for color, value, rows in _values(per_T, st):
        T = rows["n_train"].to_numpy(dtype=float)
        base = bool(rows["is_base"].iloc[0])
        ax.plot(T, rows["example_median"], color=color, marker="o", markersize=st.marker_size,
                label=_label(value, base), gid=f"{value}: median")
        ax.plot(T, rows["example_p90"], color=color, linestyle="--", marker="^",
                markersize=st.marker_size, gid=f"{value}: 90th percentile")
    # Colour names the value; the line style names the statistic.
    ax.plot([], [], color=st.reference_color, marker="o", label="median")
    ax.plot([], [], color=st.reference_color, linestyle="--", marker="^",
            label="90th percentile")
    return _loss_axes(ax, st, "per-example " + LOSS_LABEL)


def plot_share_above_2(ax: Axes, per_T: pd.DataFrame, *, style=None) -> Axes:
    """Share of test examples with a loss above 2 vs T (mean over seeds), one line per value."""
    st = as_style(style)
    for color, value, rows in _values(per_T, st):
        ax.plot(rows["n_train"].to_numpy(dtype=float), rows["share_above_2"], color=color,
                marker="o", markersize=st.marker_size,
                label=_label(value, bool(rows["is_base"].iloc[0])))
    ax.set_xscale("log")
    ax.set_ylim(bottom=0.0)
    return label_T_axes(ax, "share of test examples with $L$ > 2", legend="x-small")


def plot_tail(ax: Axes, per_T: pd.DataFrame, *, style=None) -> Axes:
    """One knob value's test losses vs T: the seed-mean loss and the per-example median and
    90th percentile; the mean rises far above the median where a heavy tail drives it."""
    st = as_style(style)
    rows = per_T.sort_values("n_train")
    T = rows["n_train"].to_numpy(dtype=float)
    ax.plot(T, rows["test_mean"], color=st.test_color, marker="o", label="mean")
    ax.plot(T, rows["example_median"], color=st.train_color, marker="s", label="median")
    ax.plot(T, rows["example_p90"], color=st.W_color, marker="^", linestyle="--",
            label="90th percentile")
    return _loss_axes(ax, st, "per-example " + LOSS_LABEL, legend="small")


def plot_ranking(ax: Axes, ranking: pd.DataFrame, *, style=None) -> Axes:
    """Each knob's effect (highest / lowest bump over its values) as a horizontal bar, largest
    on top; knobs the paper states are hatched."""
    st = as_style(style)
    rows = ranking.iloc[::-1]
    y = np.arange(len(rows))
    # Bars start at 1 (no effect) on a log axis.
    factor = rows["factor"].to_numpy(dtype=float)
    bars = ax.barh(y, factor - 1.0, left=1.0, color=st.test_color)
    for bar, stated in zip(bars, rows["stated"], strict=True):
        if stated:
            bar.set_hatch("//")
            bar.set_facecolor("white")
            bar.set_edgecolor(st.test_color)
    ax.set_yticks(y, list(rows["knob"]))
    ax.set_xscale("log")
    ax.axvline(1.0, color=st.reference_color, linewidth=1.0)
    ax.set_xlabel("bump height: highest / lowest over the knob's values (hatched: paper states it)")
    return ax


def knob_figure(name: str, description: str, bumps: pd.DataFrame, per_T: pd.DataFrame, *,
                style=None) -> Figure:
    """One knob: bump height per value, test loss vs T, per-example spread and share above 2."""
    fig = Figure(figsize=(19, 4.4), layout="constrained")
    axes = fig.subplots(1, 4)
    plot_bump_height(axes[0], bumps, style=style)
    plot_loss_vs_T(axes[1], per_T, style=style)
    plot_example_spread(axes[2], per_T, style=style)
    plot_share_above_2(axes[3], per_T, style=style)
    for ax, title in zip(axes, ["(a) bump height", "(b) test loss", "(c) per-example loss",
                                "(d) heavy tail"], strict=True):
        ax.set_title(title, loc="left")
    fig.suptitle(f"{name}: {description}")
    return fig


def tail_figure(per_T: pd.DataFrame, *, style=None) -> Figure:
    """The base's per-example view of the bump: mean vs median and 90th percentile, and the
    share above 2."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_tail(left, per_T, style=style)
    plot_share_above_2(right, per_T, style=style)
    right.get_legend().remove()
    left.set_title("(a) test losses of the base's runs", loc="left")
    right.set_title("(b) heavy tail", loc="left")
    return fig


def ranking_figure(ranking: pd.DataFrame, *, style=None) -> Figure:
    """The knobs ranked by their effect on the bump's height."""
    fig = Figure(figsize=(7, 0.45 * len(ranking) + 1.2), layout="constrained")
    plot_ranking(fig.add_subplot(), ranking, style=style)
    return fig

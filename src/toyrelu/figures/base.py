"""Figures of docs/experiment.md section 5, drawn from result tables that were computed elsewhere.

Every plotting function has the shape ``plot_x(ax, table_or_arrays, *, style=None) -> Axes``: it
draws onto the given Axes and returns it, computing no metrics and writing no files. ``save`` is
the one function that touches the disk.

Inputs:
    runs: one row per training run with at least ``status``, ``n_hidden``, ``n_train``,
        ``train_loss``, ``test_loss``, ``W_norm``, ``b_norm``; only ``status == "ok"`` rows with a
        finite, positive ``n_train`` are drawn (T = infinity has no place on a log axis).
    dims: long table of fractional dimensionalities with ``n_train``, ``seed``, ``kind``
        ("feature" or "example"), ``dimensionality`` and ``n_hidden``.
    geometry: ``W`` (n_hidden, n_features) and ``H`` = X W^T (n_train, n_hidden) of one run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from numpy.typing import NDArray

from toyrelu.analysis import procedures
from toyrelu.core.config import fmt_T
from toyrelu.runs.outputs import atomic

T_LABEL = "training set size $T$"


@dataclass(frozen=True)
class Style:
    """Colours and sizes shared by every figure; pass a ``Style`` or a dict of its fields.

    ``cmap`` colours one series per n_hidden when a table holds several; ``jitter`` is the standard
    deviation of the multiplicative x-jitter of the dimensionality scatter, drawn from ``seed``.
    """

    test_color: str = "#1f4e99"
    train_color: str = "#d9711c"
    feature_color: str = "#c0392b"
    example_color: str = "#2874a6"
    W_color: str = "#5b2c83"
    b_color: str = "#1e8449"
    reference_color: str = "0.35"
    geometry_color: str = "#1f4e99"
    cmap: str = "viridis"
    marker_size: float = 4.5
    dot_size: float = 7.0
    dot_alpha: float = 0.35
    band_alpha: float = 0.18
    scatter_size: float = 6.0
    scatter_alpha: float = 0.3
    jitter: float = 0.04
    seed: int = 0


def as_style(style: Style | Mapping[str, Any] | None) -> Style:
    """``style`` as a Style: the defaults for None, a mapping's fields over the defaults."""
    if style is None:
        return Style()
    if isinstance(style, Style):
        return style
    return dataclasses.replace(Style(), **dict(style))


def label_T_axes(ax: Axes, ylabel: str, *, legend: str = "small") -> Axes:
    """Finish a panel drawn against T: the T label on x, ``ylabel`` on y and a frameless legend
    in font size ``legend``; returns ``ax``."""
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=legend)
    return ax


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    """Successful runs at a finite T, the rows every run-level figure draws."""
    T = runs["n_train"].astype(float)
    return runs[(runs["status"] == "ok") & np.isfinite(T) & (T > 0)]


# Line style and marker fill per procedure when a figure draws several (analysis.procedures:
# the summed loss first, then the paper's mean over features).
PROCEDURE_STYLES = (("-", True), ("--", False), ("-.", False), (":", False))


def _series(
    ax: Axes, table: pd.DataFrame, column: str, *, color: Any, label: str, marker: str,
    linestyle: str, st: Style, filled: bool = True,
) -> None:
    """Mean over seeds per T as a line, min..max as a band, every run as a faint dot; hollow
    markers unless ``filled``."""
    stats = table.groupby("n_train")[column].agg(["mean", "min", "max"]).sort_index()
    T = stats.index.to_numpy(dtype=float)
    ax.fill_between(T, stats["min"], stats["max"], color=color, alpha=st.band_alpha, linewidth=0)
    ax.scatter(table["n_train"], table[column], s=st.dot_size, color=color, alpha=st.dot_alpha,
               linewidths=0, zorder=2)
    ax.plot(T, stats["mean"], color=color, marker=marker, linestyle=linestyle, label=label,
            markersize=st.marker_size, linewidth=1.5, zorder=3,
            markerfacecolor=color if filled else "white")


def _by_hidden(ax: Axes, runs: pd.DataFrame, quantities: Sequence[tuple], st: Style) -> None:
    """One series per quantity; with several n_hidden, one colour per m and a style per quantity;
    with several procedures (``procedures.split``), one line style per procedure, each named
    once in the legend, and a quantity told by its colour and marker.

    ``quantities`` holds (column, label, colour, marker, linestyle) tuples.
    """
    ms = sorted(runs["n_hidden"].unique())
    cmap = plt.get_cmap(st.cmap)
    parts = procedures.split(runs)
    several = len(parts) > 1
    for k, (_, part) in enumerate(parts):
        procedure_line, filled = PROCEDURE_STYLES[k % len(PROCEDURE_STYLES)]
        for j, m in enumerate(ms):
            rows = part[part["n_hidden"] == m]
            for column, name, color, marker, linestyle in quantities:
                label = f"{name}, $m$ = {m}" if len(ms) > 1 else name
                _series(ax, rows, column, st=st, marker=marker, filled=filled,
                        linestyle=procedure_line if several else linestyle,
                        color=cmap(0.85 * j / (len(ms) - 1)) if len(ms) > 1 else color,
                        label=label if k == 0 else "_nolegend_")
    for k, (name, _) in enumerate(parts if several else []):
        procedure_line, filled = PROCEDURE_STYLES[k % len(PROCEDURE_STYLES)]
        ax.plot([], [], color="0.2", linestyle=procedure_line, marker="o",
                markersize=st.marker_size, markerfacecolor="0.2" if filled else "white",
                label=name)


def _faint(alpha: float, count: int) -> float:
    """Opacity for ``count`` overlapping marks: ``alpha`` up to 30 of them, thinning beyond."""
    return max(0.03, alpha * min(1.0, float(np.sqrt(30 / max(count, 1)))))


def _plane(ax: Axes, points: NDArray[np.floating]) -> None:
    """Equal aspect, limits symmetric about the origin, no ticks; a faint cross marks 0."""
    radius = float(np.max(np.linalg.norm(points, axis=1), initial=0.0)) or 1.0
    lim = 1.12 * radius
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.axhline(0.0, color="0.88", linewidth=0.6, zorder=0)
    ax.axvline(0.0, color="0.88", linewidth=0.6, zorder=0)


def plot_features(ax: Axes, W: NDArray[np.floating], *, style=None) -> Axes:
    """Each feature W_i (column of ``W`` (2, n_features)) as a spoke from 0 with a dot at its tip.

    Figure 1 of the paper, top row. Spokes are one ``LineCollection`` so n = 10,000 stays fast;
    longer spokes are drawn more opaque, so a few learned features stand out of many small ones.
    """
    st = as_style(style)
    tips = np.asarray(W, dtype=float).T  # (n_features, 2)
    spokes = np.stack([np.zeros_like(tips), tips], axis=1)
    length = np.linalg.norm(tips, axis=1)
    floor = _faint(0.8, len(tips))
    alpha = floor + (1.0 - floor) * (length / (length.max(initial=0.0) or 1.0)) ** 2
    colors = np.tile(to_rgba(st.geometry_color), (len(tips), 1))
    colors[:, 3] = alpha
    ax.add_collection(LineCollection(list(spokes), colors=colors, linewidths=0.9,
                                     label="features"))
    ax.scatter(tips[:, 0], tips[:, 1], s=9, c=colors, linewidths=0, zorder=3)
    _plane(ax, tips)
    return ax


def plot_hidden(ax: Axes, H: NDArray[np.floating], *, style=None) -> Axes:
    """Each training hidden vector h_t (row of ``H`` (n_train, 2)) as a point with a faint ray.

    Figure 1 of the paper, bottom row.
    """
    st = as_style(style)
    points = np.asarray(H, dtype=float)
    rays = np.stack([np.zeros_like(points), points], axis=1)
    ax.add_collection(LineCollection(list(rays), colors=st.geometry_color, linewidths=0.6,
                                     alpha=_faint(0.25, len(points))))
    ax.scatter(points[:, 0], points[:, 1], s=10, color=st.geometry_color, linewidths=0,
               zorder=3, alpha=_faint(1.0, len(points)), label="hidden vectors")
    _plane(ax, points)
    return ax


def geometry_grid(
    geometry: Sequence[tuple[float, NDArray[np.floating], NDArray[np.floating]]], *,
    title: str = "", style=None,
) -> Figure:
    """Features (top row) and training hidden vectors (bottom row), one column per T, under
    ``title`` if given (the procedure, when a store holds several).

    ``geometry`` holds (T, W (2, n_features), H (T, 2)) per run; columns are sorted by T.
    """
    entries = sorted(geometry, key=lambda entry: entry[0])
    for T, W, _ in entries:
        if W.shape[0] != 2:
            raise ValueError(f"geometry_grid needs n_hidden = 2, got W of shape {W.shape} "
                             f"at T = {fmt_T(T)}")
    fig = Figure(figsize=(1.75 * len(entries) + 0.5, 3.9), layout="constrained")
    axes = fig.subplots(2, len(entries), squeeze=False)
    for j, (T, W, H) in enumerate(entries):
        plot_features(axes[0, j], W, style=style)
        plot_hidden(axes[1, j], H, style=style)
        axes[0, j].set_title(f"T = {fmt_T(T)}")
    axes[0, 0].set_ylabel("features $W_i$")
    axes[1, 0].set_ylabel("hidden vectors $h_t$")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def plot_loss(ax: Axes, runs: pd.DataFrame, *, style=None) -> Axes:
    """Test and train loss vs T (figure 2): seed mean, min..max band, one dot per run."""
    st = as_style(style)
    _by_hidden(ax, _ok(runs), [("test_loss", "test", st.test_color, "o", "-"),
                               ("train_loss", "train", st.train_color, "s", "--")], st)
    ax.axhline(1.0, color=st.reference_color, linestyle=":", linewidth=1.2,
               label="predict zero ($L$ = 1)")
    ax.set_xscale("log")
    # Train loss reaches ~0 when T points are memorised while test loss can reach ~1e3 at tiny T:
    # symlog is linear below 1e-3, so zero is drawn as zero without clipping, and log above it.
    ax.set_yscale("symlog", linthresh=1e-3, linscale=0.5)
    ax.set_ylim(bottom=0.0)
    return label_T_axes(ax, "loss $L$ (squared error per example)")


def plot_dimensionality(ax: Axes, dims: pd.DataFrame, *, style=None) -> Axes:
    """Every feature's and every training example's D vs T with the m/T curve (figure 3).

    x is jittered multiplicatively by exp(N(0, jitter)) from a fixed seed, so output repeats.
    """
    st = as_style(style)
    ms = dims["n_hidden"].unique()
    if len(ms) != 1:
        raise ValueError(f"plot_dimensionality needs one n_hidden, got {sorted(ms)}")
    rng = np.random.default_rng(st.seed)
    for kind, label, color in [("feature", "features", st.feature_color),
                               ("example", "training examples", st.example_color)]:
        rows = dims[dims["kind"] == kind]
        T = rows["n_train"].to_numpy(dtype=float)
        T_jittered = T * np.exp(st.jitter * rng.standard_normal(len(T)))
        ax.scatter(T_jittered, rows["dimensionality"], s=st.scatter_size, color=color,
                   alpha=st.scatter_alpha, linewidths=0, label=label, rasterized=True)
    T_all = dims["n_train"].to_numpy(dtype=float)
    T_curve = np.geomspace(T_all.min(), T_all.max(), 200)
    ax.plot(T_curve, float(ms[0]) / T_curve, color=st.reference_color, linestyle="--",
            linewidth=1.2, label="m / T")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel("fractional dimensionality $D$")
    legend = ax.legend(frameon=False, fontsize="small", loc="upper right")
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)
    return ax


def plot_norms(ax: Axes, runs: pd.DataFrame, *, style=None) -> Axes:
    """||W||_F and ||b|| vs T (figure 4): seed mean, min..max band, one dot per run."""
    st = as_style(style)
    _by_hidden(ax, _ok(runs), [("W_norm", r"$\|W\|_F$", st.W_color, "o", "-"),
                               ("b_norm", r"$\|b\|_2$", st.b_color, "s", "--")], st)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0.0)
    return label_T_axes(ax, "norm")


def summary_figure(runs: pd.DataFrame, dims: pd.DataFrame, *, style=None) -> Figure:
    """Loss, dimensionality and norms vs T side by side (figures 2-4). Loss and norms draw
    every procedure of ``runs``; the dimensionality panel draws ``dims``, whose procedure its
    title names when ``runs`` hold several."""
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    ax_loss, ax_dims, ax_norms = fig.subplots(1, 3)
    plot_loss(ax_loss, runs, style=style)
    plot_dimensionality(ax_dims, dims, style=style)
    plot_norms(ax_norms, runs, style=style)
    drawn = procedures.ordered(dims)
    several = len(procedures.split(runs)) > 1 and len(drawn) == 1 and drawn[0]
    for ax, title in [(ax_loss, "(a) test and train loss"),
                      (ax_dims, "(b) fractional dimensionality"
                                + (f"\n{drawn[0]}" if several else "")),
                      (ax_norms, "(c) weight norms")]:
        ax.set_title(title, loc="left")
    return fig


def save(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``out_dir/name.png`` (150 dpi) and ``out_dir/name.svg``, each whole or not at all
    (``runs.outputs.atomic``), close ``fig``; the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    try:
        options: list[dict[str, Any]] = [{"format": "png", "dpi": 150}, {"format": "svg"}]
        for path, option in zip(paths, options, strict=True):
            with atomic(path, "wb") as f:
                fig.savefig(f, **option)
    finally:
        plt.close(fig)
    return paths

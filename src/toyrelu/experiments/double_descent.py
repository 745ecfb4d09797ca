"""Double descent at m = 2, figures 1-4 of the paper: the record of the T sweep.

``draw`` saves the m = 2 figures (geometry, loss, dimensionality, norms, and their side-by-side
summary) for ``toyrelu figures``, ``toyrelu reproduce`` and the report alike; ``write_figures``
is what ``toyrelu figures`` and ``toyrelu reproduce`` call. The record's section picks the
store's m = 2 sweep (``sweep_runs``), draws it and checks each claim of the paper against it
(``paper_findings``), with the paper's own value (``toyrelu.core.paper``) beside toyrelu's.

The paper's transitions sit at 10x smaller T in the reduced setting (n = 1,000, S = 0.99) than
at paper scale (n = 10,000, S = 0.999), the factor by which 1 - S grew: expected positions are
scaled by 0.001 / (1 - S). The test loss below 1 at large T comes from the five learned features,
each holding 1/n of an example's squared norm, so the paper's gain below 1 is scaled by 10,000 / n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toyrelu import analysis
from toyrelu.analysis.tables import (
    EXCESS_FACTOR,
    POSITION_FACTOR,
    SWEPT,
    Finding,
    setting_keys,
)
from toyrelu.core import paper
from toyrelu.core.config import field_names
from toyrelu.experiments.record import Claim, Experiment, Figure, Section
from toyrelu.runs.store import Store, StoreError

# Where the paper's large T starts, in multiples of the bump's T (10k = 5 x 2k).
LARGE_FACTOR = paper.LARGE_T / paper.BUMP_T
# The claims analysis.findings checks, found by a word of their text.
ANALYSIS_CLAIMS = {
    "T-gons": Claim("training hidden vectors form regular T-gons at small T (every example's D "
                    "near m/T)", "regular T-gons: every example's D = m/T (2/5 at T = 5, 1/3 at "
                    "T = 6); irregular at T = 3"),
    "test-loss bump": Claim("a test-loss bump in the middle regime, above both neighbours",
                            f"a bump in the middle regime, peak about {paper.BUMP_PEAK} near "
                            f"T = {paper.BUMP_T:,} (n = {paper.N_FEATURES:,}, S = "
                            f"{paper.SPARSITY})"),
    "features with D": Claim("at large T a handful of features with D well above the rest, test "
                             "loss below 1", f"about {paper.LEARNED_FEATURES} features per seed "
                             f"at D {paper.PENTAGON_D[0]}-{paper.PENTAGON_D[1]} (below 2/5), test "
                             f"loss about {paper.LARGE_T_LOSS}"),
}
BUMP_POSITION = Claim(f"the bump sits near T = {paper.BUMP_T:,} x {paper.DENSITY} / (1 - S)",
                      f"near T = {paper.BUMP_T:,} at S = {paper.SPARSITY}")
BUMP_HEIGHT = Claim(f"the bump is low: peak mean test loss about {paper.BUMP_PEAK - 1:.1%} above "
                    "predicting zero", f"{paper.BUMP_PEAK} near T = {paper.BUMP_T:,}")
LARGE_T_LOSS = Claim(f"test loss just below 1 at large T (T >= {LARGE_FACTOR:g}x the bump's T)",
                     f"about {paper.LARGE_T_LOSS} for T >= {paper.LARGE_T / 1000:g}k")
INFINITE_T_LOSS = Claim("T = infinity: test loss just below 1", f"{paper.INFINITE_T_LOSS}")
NORM_PEAK = Claim("‖W‖_F peaks in the memorization regime, at least 10x below the bump's T",
                  f"peak near T = {paper.NORM_PEAK_T}")
NORM_PLATEAU = Claim(f"‖W‖_F plateaus near sqrt({paper.LEARNED_FEATURES}) once the pentagon is "
                     "learned", f"near sqrt({paper.LEARNED_FEATURES}) = "
                     f"{paper.W_NORM_PLATEAU:.2f}")
# Every claim of the section, as listed when the store has no m = 2 run.
CLAIMS: tuple[Claim, ...] = (*ANALYSIS_CLAIMS.values(), BUMP_POSITION, BUMP_HEIGHT, LARGE_T_LOSS,
                             INFINITE_T_LOSS, NORM_PEAK, NORM_PLATEAU)
# The per-T table's columns, as the section and the summary of ``toyrelu reproduce`` show them.
COLUMNS = {
    "n_train": "T", "seeds": "seeds", "test_mean": "test loss (mean)",
    "test_median": "test loss (median)", "test_max": "test loss (max)",
    "train_mean": "train loss", "learned_features": "features with D > 0.1",
    "example_D_median": "example D (median)", "m_over_T": "m/T", "W_norm": "‖W‖_F",
    "b_norm": "‖b‖",
}
# Tolerances of the verdicts besides positions and the bump's height (analysis.POSITION_FACTOR,
# analysis.EXCESS_FACTOR): the gain below 1 within a factor 2, the plateau of ‖W‖_F within 15%
# of the paper's sqrt(5) (five unit-length spokes).
GAIN_FACTOR = 2.0
PLATEAU_TOLERANCE = 0.15
CAPTIONS = {  # the record's figures, by kind
    "summary": "Test and train loss, fractional dimensionality and weight norms vs T "
               "(figures 2-4 side by side).",
    "geometry": "Geometry (figure 1): the features W_i (top) and the training hidden vectors "
                "h_t (bottom) of the lowest seed at each T; the last column is the largest T.",
    "loss": "Test and train loss vs T (figure 2): mean over seeds, min..max band, one dot per "
            "run; the dotted line is predicting zero (L = 1).",
    "norms": "Weight norms ‖W‖_F and ‖b‖ vs T (figure 4): mean over seeds, min..max band.",
    "dimensionality": "Fractional dimensionality D of every feature and every training example "
                      "vs T (figure 3), with the m/T curve.",
}


def draw(
    store: Store, out: Path, runs: pd.DataFrame, geometry_T: Sequence[int], *,
    prefix: str = "", summary: bool = True,
) -> tuple[list[Figure], pd.DataFrame]:
    """Save every figure ``runs`` support into ``out`` (PNG + SVG, names starting ``prefix``).

    One dimensionality plot per m; the geometry grid for m = 2; the summary figure (when
    ``summary`` and a single m). Returns the figures and the dimensionality table of the runs.
    """
    from matplotlib.figure import Figure as MplFigure

    from toyrelu import figures

    def axes() -> tuple[Any, Any]:
        fig = MplFigure(figsize=(6, 4), layout="constrained")
        return fig, fig.add_subplot()

    def saved(fig: Any, name: str, kind: str) -> Figure:
        figures.save(fig, out, prefix + name)
        return RECORD.figure(kind, prefix + name)

    finite = runs[np.isfinite(runs["n_train"].astype(float))]
    dims = analysis.dimensionality_table(store, finite)
    drawn = []
    geometry = analysis.geometry(store, finite, tuple(geometry_T))
    if geometry:
        drawn.append(saved(figures.geometry_grid(geometry), "geometry", "geometry"))
    for name, plot in (("loss", figures.plot_loss), ("norms", figures.plot_norms)):
        fig, ax = axes()
        plot(ax, runs)
        drawn.append(saved(fig, name, name))
    for m, part in dims.groupby("n_hidden"):
        fig, ax = axes()
        figures.plot_dimensionality(ax, part)
        name = "dimensionality" if dims["n_hidden"].nunique() == 1 else f"dimensionality_m{m}"
        drawn.append(saved(fig, name, "dimensionality"))
    if summary and runs["n_hidden"].nunique() == 1 and not dims.empty:
        drawn.insert(0, saved(figures.summary_figure(finite, dims), "summary", "summary"))
    return drawn, dims


def write_figures(
    store: Store,
    out: Path,
    geometry_T: Sequence[int],
    run_ids: Collection[str] | None = None,
) -> tuple[list[str], tuple[pd.DataFrame, list[Finding]]]:
    """Draw every figure the store supports into ``out`` (PNG + SVG), from all its finished runs
    or those in ``run_ids``; returns the PNG names and the (per-T table, findings)."""
    runs = analysis.ok_runs(store, run_ids)
    if runs.empty:
        raise StoreError(f"store: {store.path} holds no finished runs to draw")
    drawn, dims = draw(store, out, runs, geometry_T)
    # The figures leave T = infinity out (no place on a log axis); the table keeps it.
    infinite = runs[runs["n_train"] == math.inf]
    if not infinite.empty:
        dims = pd.concat([dims, analysis.dimensionality_table(store, infinite)],
                         ignore_index=True)
    table = analysis.per_T(runs, dims)
    return [f.name for f in drawn], (table, analysis.findings(table, dims))


def sweep_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The m = 2 sweep among finished (kept) ``runs``: of the groups of m = 2 runs equal in every
    setting but T, seed and restart, the one with the most T values (then the most runs).

    Returns its runs and the settings in which other m = 2 runs differ from it.
    """
    two = runs[runs["n_hidden"] == 2]
    if two.empty:
        return two, []
    keys, fields = setting_keys(two, SWEPT)
    sizes = {key: (part["n_train"].nunique(), len(part), -int(part.index.min()))
             for key, part in two.groupby(keys)}
    best = max(sizes, key=lambda key: sizes[key])
    chosen = two[keys == best]
    differ = [f for f in fields if two[f].astype(str).nunique() > 1]
    return chosen.reset_index(drop=True), differ


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """The m = 2 double-descent section from the runs of one m = 2 sweep."""
    _, differ = sweep_runs(analysis.ok_runs(store))
    restarts = _restarts(store.runs(), runs)
    drawn, dims = draw(store, out, runs, paper.GEOMETRY_T, prefix="m2_", summary=False)
    table = analysis.per_T(runs, dims)
    shared = {f: _plain(runs[f].iloc[0]) for f in field_names() if f not in SWEPT and f in runs}
    T_values = sorted(runs["n_train"].unique())
    seeds = sorted(runs["seed"].unique())
    text = (
        f"{len(runs)} finished runs with m = 2, n = {shared['n_features']:,}, "
        f"S = {shared['sparsity']}, {shared['steps']:,} steps: {len(T_values)} training-set "
        f"sizes from T = {_T(T_values[0])} to {_T(T_values[-1])}, {len(seeds)} seeds each."
    )
    if restarts > 1:
        text += (f" Up to {restarts} restarts per dataset; the one with the lowest training loss "
                 "is kept.")
    if differ:
        text += (f" Other m = 2 runs in the store differ in {', '.join(differ)}; they are left "
                 "to the sections of their experiments.")
    shown = table[[c for c in COLUMNS if c in table]].rename(columns=COLUMNS)
    settings: dict[str, object] = dict(shared)
    settings["n_train"] = ", ".join(_T(T) for T in T_values)
    settings["seed"] = ", ".join(str(s) for s in seeds)
    return Section(
        title=record.title,
        text=text,
        figures=drawn,
        tables=[("Per training-set size (mean over seeds)", shown)],
        findings=paper_findings(table, dims, shared["n_features"], shared["sparsity"]),
        settings=settings,
    )


def _restarts(stored: pd.DataFrame, kept: pd.DataFrame) -> int:
    """The most initialisations stored for one dataset of the ``kept`` runs."""
    if "restart" not in stored:  # a store written before restarts existed
        return 1
    stored = stored[stored["status"] == "ok"]
    datasets = set(setting_keys(kept, ("restart",))[0])
    ours = setting_keys(stored, ("restart",))[0].isin(datasets)
    return int(stored["restart"][ours].max()) + 1 if ours.any() else 1


def paper_findings(
    table: pd.DataFrame, dims: pd.DataFrame, n_features: int, sparsity: float
) -> list[Finding]:
    """``analysis.findings`` with the paper's values, plus the claims it does not check.

    ``table`` is ``analysis.per_T`` of one m = 2 sweep (T = infinity allowed), ``dims`` its
    dimensionality table. A claim the runs cannot check is a Finding whose ``measured`` starts
    with "not measured".
    """
    finite = table[np.isfinite(table["n_train"].astype(float))]
    finite = finite.sort_values("n_train").reset_index(drop=True)
    out = []
    checked = analysis.findings(finite, dims)
    for key, (claim, value) in ANALYSIS_CLAIMS.items():
        found = [f for f in checked if key in f.claim]
        out += [dataclasses.replace(f, paper=value) for f in found] or [
            _not_measured(claim, value, "the stored training-set sizes do not cover it")]
    out += [f for f in checked if not any(key in f.claim for key in ANALYSIS_CLAIMS)]
    bump_T = paper.BUMP_T * paper.scale(sparsity)
    peak = _inner_peak(finite, "test_mean")
    large = finite[finite["n_train"] >= LARGE_FACTOR * bump_T]
    out += [
        _bump_position(peak, bump_T, sparsity),
        _bump_height(peak),
        _large_T_loss(large, bump_T, n_features),
        _infinite_T_loss(table[~np.isfinite(table["n_train"].astype(float))], n_features),
        _norm_peak(peak, _inner_peak(finite, "W_norm")),
        _norm_plateau(large, bump_T),
    ]
    return out


def _inner_peak(table: pd.DataFrame, column: str) -> pd.Series | None:
    """The row of ``table`` (sorted by T) where ``column`` is highest, if not at either end."""
    if len(table) < 3:
        return None
    top = int(table[column].idxmax())
    return table.loc[top] if 0 < top < len(table) - 1 else None


def _bump_position(peak: pd.Series | None, bump_T: float, sparsity: float) -> Finding:
    claim = BUMP_POSITION.text
    value = (f"{BUMP_POSITION.paper}; {_T(bump_T)} at S = {sparsity} "
             "(transitions at 10x smaller T in the reduced setting)")
    if peak is None or peak.test_mean <= 1:
        return _not_measured(claim, value, "no test loss above 1 peaks inside the stored T range")
    ratio = peak.n_train / bump_T
    return Finding(claim, f"highest mean test loss at T = {_T(peak.n_train)}, {ratio:.2g}x the "
                   "expected T", _within(ratio, POSITION_FACTOR), value)


def _bump_height(peak: pd.Series | None) -> Finding:
    claim, value = BUMP_HEIGHT
    if peak is None:
        return _not_measured(claim, value, "no peak inside the stored T range")
    excess = (peak.test_mean - 1.0) / (paper.BUMP_PEAK - 1.0)
    return Finding(claim, f"{peak.test_mean:.4g} at T = {_T(peak.n_train)} (median over seeds "
                   f"{peak.test_median:.4g})", bool(excess > 0 and _within(excess, EXCESS_FACTOR)),
                   value)


def _large_T_loss(large: pd.DataFrame, bump_T: float, n_features: int) -> Finding:
    claim = LARGE_T_LOSS.text
    gain = (1.0 - paper.LARGE_T_LOSS) * paper.N_FEATURES / n_features
    value = (f"{LARGE_T_LOSS.paper} at n = {paper.N_FEATURES:,}; the gain below 1 scales "
             f"as 1/n: {1 - gain:.4g} at n = {n_features:,}")
    if large.empty:
        return _not_measured(claim, value, f"no run at T >= {_T(LARGE_FACTOR * bump_T)}")
    gains = 1.0 - large["test_mean"]
    holds = all(g > 0 and _within(g / gain, GAIN_FACTOR) for g in gains)
    return Finding(claim, f"mean test loss {_span(large['test_mean'], '.4f')} at T = "
                   f"{_span(large['n_train'], ',.0f')}", holds, value)


def _infinite_T_loss(infinite: pd.DataFrame, n_features: int) -> Finding:
    claim = INFINITE_T_LOSS.text
    gain = (1.0 - paper.INFINITE_T_LOSS) * paper.N_FEATURES / n_features
    value = (f"{INFINITE_T_LOSS.paper} at n = {paper.N_FEATURES:,}; {1 - gain:.4g} scaled to "
             f"n = {n_features:,}")
    if infinite.empty:
        return _not_measured(claim, value, "no run at T = infinity")
    loss = float(infinite["test_mean"].iloc[0])
    return Finding(claim, f"mean test loss {loss:.4f}",
                   bool(loss < 1 and _within((1 - loss) / gain, GAIN_FACTOR)), value)


def _norm_peak(peak: pd.Series | None, norm_peak: pd.Series | None) -> Finding:
    claim = NORM_PEAK.text
    value = f"{NORM_PEAK.paper}, the bump near T = {paper.BUMP_T:,}"
    if peak is None or norm_peak is None:
        return _not_measured(claim, value, "no peak of ‖W‖_F and of the test loss inside the "
                             "stored T range")
    return Finding(claim, f"mean ‖W‖_F peaks at T = {_T(norm_peak.n_train)} "
                   f"({norm_peak.W_norm:.3g}), the test loss at T = {_T(peak.n_train)}",
                   bool(norm_peak.n_train * 10 <= peak.n_train), value)


def _norm_plateau(large: pd.DataFrame, bump_T: float) -> Finding:
    claim = NORM_PLATEAU.text
    value = f"{NORM_PLATEAU.paper} (five unit-length features)"
    if large.empty:
        return _not_measured(claim, value, f"no run at T >= {_T(LARGE_FACTOR * bump_T)}")
    last = large.iloc[-1]
    return Finding(claim, f"mean ‖W‖_F {last.W_norm:.3g} at T = {_T(last.n_train)}",
                   bool(abs(last.W_norm / paper.W_NORM_PLATEAU - 1) <= PLATEAU_TOLERANCE), value)


def _not_measured(claim: str, paper: str, why: str) -> Finding:
    return Finding(claim, f"not measured: {why}", False, paper)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _within(ratio: float, factor: float) -> bool:
    return bool(1 / factor <= ratio <= factor)


def _T(value: float) -> str:
    return "infinity" if value == math.inf else f"{value:,.0f}"


def _span(values: pd.Series, spec: str) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:{spec}}" if lo == hi else f"{lo:{spec}}-{hi:{spec}}"


def _select(runs: pd.DataFrame) -> pd.DataFrame:
    return sweep_runs(runs)[0]


RECORD = Experiment(
    key="double-descent",
    title="Double descent at m = 2",
    axis=None,
    claims=CLAIMS,
    figures=CAPTIONS,
    select=_select,
    build=build,
)

"""Double descent at m = 2, figures 1-4 of the paper: the record of the T sweep.

``draw`` saves the m = 2 figures (geometry, loss, dimensionality, norms, and their side-by-side
summary) for ``toyrelu figures``, ``toyrelu reproduce`` and the report alike; ``write_figures``
is what ``toyrelu figures`` and ``toyrelu reproduce`` call. The record's section picks the
store's m = 2 sweep (``sweep_runs``), draws it and checks each claim of the paper against it
(``m2_claims.paper_findings``), with the paper's own value (``toyrelu.core.paper``) beside
toyrelu's.

The record is joint: a sweep trained under both procedures (the summed loss and the paper's
mean over features, ``analysis.procedures``) is one section. The loss and norms figures draw
both, one line style each; the geometry and dimensionality figures draw one, the paper's when
present, so that every T-gon shown comes from one procedure; tables and verdicts are per
procedure.
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
from toyrelu.analysis import procedures
from toyrelu.analysis.tables import SWEPT, Finding, setting_keys
from toyrelu.core import paper
from toyrelu.core.config import field_names
from toyrelu.experiments.m2_claims import ANALYSIS_CLAIMS, CLAIMS, T_text, paper_findings
from toyrelu.experiments.record import Experiment, Figure, Section
from toyrelu.runs.store import Store, StoreError

__all__ = ["ANALYSIS_CLAIMS", "CAPTIONS", "CLAIMS", "COLUMNS", "RECORD", "draw",
           "paper_findings", "sweep_runs", "write_figures"]

# The per-T table's columns, as the section and the summary of ``toyrelu reproduce`` show them.
COLUMNS = {
    "n_train": "T", "seeds": "seeds", "test_mean": "test loss (mean)",
    "test_median": "test loss (median)", "test_max": "test loss (max)",
    "train_mean": "train loss", "learned_features": "features with D > 0.1",
    "example_D_median": "example D (median)", "m_over_T": "m/T", "W_norm": "‖W‖_F",
    "b_norm": "‖b‖",
}
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




def _captions(names: list[str]) -> dict[str, str]:
    """What each figure kind adds to its caption when the runs follow the procedures ``names``
    (the first drawn solid and filled, the others dashed and hollow; the one-procedure figures
    draw the paper's, ``procedures.preferred``)."""
    if len(names) < 2:
        return {}
    styles = (f"Solid lines, filled markers: {names[0]}; dashed lines, hollow markers: "
              + ", ".join(names[1:]) + ".")
    return {"loss": styles, "norms": styles, "summary": styles}


def draw(
    store: Store, out: Path, runs: pd.DataFrame, geometry_T: Sequence[int], *,
    prefix: str = "", summary: bool = True,
) -> tuple[list[Figure], pd.DataFrame]:
    """Save every figure ``runs`` support into ``out`` (PNG + SVG, names starting ``prefix``).

    Loss and norms draw every procedure of ``runs``; geometry and dimensionality (one plot per
    m) the preferred one (``procedures.preferred``), named in their titles when there are
    several; the summary figure when ``summary`` and a single m. Returns the figures and the
    dimensionality table of every procedure's runs.
    """
    from matplotlib.figure import Figure as MplFigure

    from toyrelu import figures

    names = [name for name, _ in procedures.split(runs)]
    shown, shown_runs = procedures.preferred(runs)
    title = shown if len(names) > 1 else ""
    extra = _captions(names)
    extra.update(dict.fromkeys(("geometry", "dimensionality"), f"Runs of the {shown}."
                               if title else ""))

    def axes() -> tuple[Any, Any]:
        fig = MplFigure(figsize=(6, 4), layout="constrained")
        return fig, fig.add_subplot()

    def saved(fig: Any, name: str, kind: str) -> Figure:
        figures.save(fig, out, prefix + name)
        figure = RECORD.figure(kind, prefix + name)
        more = extra.get(kind, "")
        return dataclasses.replace(figure, caption=f"{figure.caption} {more}") if more else figure

    finite = runs[np.isfinite(runs["n_train"].astype(float))]
    dims = analysis.dimensionality_table(store, finite)
    drawn = []
    geometry = analysis.geometry(store, finite[finite.index.isin(shown_runs.index)],
                                 tuple(geometry_T))
    if geometry:
        drawn.append(saved(figures.geometry_grid(geometry, title=title), "geometry",
                           "geometry"))
    for name, plot in (("loss", figures.plot_loss), ("norms", figures.plot_norms)):
        fig, ax = axes()
        plot(ax, runs)
        drawn.append(saved(fig, name, name))
    own = procedures.rows_of(dims, shown if title else "")
    for m, part in own.groupby("n_hidden"):
        fig, ax = axes()
        figures.plot_dimensionality(ax, part)
        if title:
            ax.set_title(title, fontsize="medium")
        name = "dimensionality" if own["n_hidden"].nunique() == 1 else f"dimensionality_m{m}"
        drawn.append(saved(fig, name, "dimensionality"))
    if summary and runs["n_hidden"].nunique() == 1 and not own.empty:
        drawn.insert(0, saved(figures.summary_figure(finite, own), "summary", "summary"))
    return drawn, dims


def write_figures(
    store: Store,
    out: Path,
    geometry_T: Sequence[int],
    run_ids: Collection[str] | None = None,
) -> tuple[list[str], tuple[pd.DataFrame, list[Finding]]]:
    """Draw every figure the store supports into ``out`` (PNG + SVG), from all its finished runs
    or those in ``run_ids``; returns the PNG names and the (per-T table, findings), both per
    procedure."""
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
    setting but T, seed, restart and the loss reduction (its procedures, which the section keeps
    apart), the one with the most T values (then the most runs).

    Returns its runs and the settings in which other m = 2 runs differ from it.
    """
    two = runs[runs["n_hidden"] == 2]
    if two.empty:
        return two, []
    keys, fields = setting_keys(two, (*SWEPT, procedures.FIELD))
    sizes = {key: (part["n_train"].nunique(), len(part), -int(part.index.min()))
             for key, part in two.groupby(keys)}
    best = max(sizes, key=lambda key: sizes[key])
    chosen = two[keys == best]
    differ = [f for f in fields if two[f].astype(str).nunique() > 1]
    return chosen.reset_index(drop=True), differ


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """The m = 2 double-descent section from the runs of one m = 2 sweep, under each procedure
    it holds."""
    _, differ = sweep_runs(analysis.ok_runs(store))
    restarts = _restarts(store.runs(), runs)
    drawn, dims = draw(store, out, runs, paper.GEOMETRY_T, prefix="m2_", summary=False)
    table = analysis.per_T(runs, dims)
    names = procedures.ordered(table)
    shared = {f: _plain(runs[f].iloc[0]) for f in field_names() if f not in SWEPT and f in runs}
    T_values = sorted(runs["n_train"].unique())
    seeds = sorted(runs["seed"].unique())
    text = (
        f"{len(runs)} finished runs with m = 2, n = {shared['n_features']:,}, "
        f"S = {shared['sparsity']}, {shared['steps']:,} steps: {len(T_values)} training-set "
        f"sizes from T = {T_text(T_values[0])} to {T_text(T_values[-1])}, {len(seeds)} seeds "
        "each" + (f", under {len(names)} procedures: " + "; ".join(names) if len(names) > 1
                  else "") + "."
    )
    if restarts > 1:
        text += (f" Up to {restarts} restarts per dataset; the one with the lowest training loss "
                 "is kept.")
    if differ:
        text += (f" Other m = 2 runs in the store differ in {', '.join(differ)}; they are left "
                 "to the sections of their experiments.")
    sentence = procedures.comparison(runs, table)
    text += f"\n\n{sentence}" if sentence else ""
    caption = "Per training-set size (mean over seeds)"
    tables = [(f"{caption}, {name}" if len(names) > 1 else caption,
               procedures.rows_of(table, name)[[c for c in COLUMNS if c in table]]
               .rename(columns=COLUMNS)) for name in names]
    settings: dict[str, object] = dict(shared)
    settings["n_train"] = ", ".join(T_text(T) for T in T_values)
    settings["seed"] = ", ".join(str(s) for s in seeds)
    if len(names) > 1:
        settings[procedures.FIELD] = ", ".join(dict.fromkeys(procedures.reductions(runs)))
    return Section(
        title=record.title,
        text=text,
        figures=drawn,
        tables=tables,
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


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


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
    joint=True,
)

"""The experiments beyond the m = 2 sweep as report sections, and as ``reproduce``'s summary.

``sections(store, out)`` finds every experiment a store holds (``experiments.select``), saves
its figures into ``out`` (PNG + SVG) and returns one ``Section`` each: what was run, the
figures, the tables and the paper's claims checked against the runs. ``markdown`` writes
sections as the ``summary.md`` of ``toyrelu reproduce --preset heatmap-quick`` and the like.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from toyrelu import analysis
from toyrelu.analysis import claims as experiment_findings
from toyrelu.analysis import experiments
from toyrelu.analysis.experiments import fmt_T
from toyrelu.core import metrics
from toyrelu.core.config import field_names
from toyrelu.figures import experiments as fx
from toyrelu.figures.base import save
from toyrelu.report.sections import Figure, Section
from toyrelu.runs.store import Store

COLUMNS = {
    "n_hidden": "m", "n_train": "T", "weight_decay": "weight decay", "steps": "steps",
    "sparsity": "S", "repeats": "R", "T_over_n": "T/n", "seeds": "seeds", "count": "T(1 - S)",
    "test_mean": "test loss (mean)", "test_median": "test loss (median)",
    "test_min": "test loss (min)", "test_max": "test loss (max)", "train_mean": "train loss",
    "peak_T": "peak at T", "peak": "peak test loss", "bump": "peak - 1",
    "last_loss": "test loss at largest T", "ridge_T": "ridge at T", "paper_T": "paper's T here",
    "memorised": "memorised (share)", "own_loss": "own loss", "D": "D", "D_star": "D*",
    "h_norm": "‖h‖", "learned_features": "features with D > 0.1", "test_loss": "test loss",
    "kept_features": "of them not the point's own",
    "R_lo": "not memorised at R", "R_hi": "memorised from R", "predicted": "0.4 T/n",
    "consistent": "consistent", "onset_T": "onset T", "onset_count": "onset T(1 - S)",
    "examples": "examples", "D_star_median": "D* (median)", "D_star_max": "D* (max)",
    "D_star_above_half": "share D* > 0.5", "D_median": "D (median)", "m_over_T": "m/T",
}


def _figure(size: tuple[float, float], panels: int = 1) -> tuple[MplFigure, Any]:
    fig = MplFigure(figsize=size, layout="constrained")
    return fig, fig.subplots(1, panels) if panels > 1 else fig.add_subplot()


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """A table as the report shows it: T written as 2,000 or ∞, readable column names."""
    table = table.copy()
    for column in ("n_train", "peak_T", "ridge_T", "paper_T", "onset_T"):
        if column in table:
            table[column] = [fmt_T(v) if v == v else "–" for v in table[column]]
    return table.rename(columns=COLUMNS)


def _about(runs: pd.DataFrame, axis: str | None) -> tuple[str, dict[str, object]]:
    """A sentence on what was run, and the settings (shared values; swept ones as lists)."""
    settings: dict[str, object] = {}
    for name in field_names():
        if name in runs and name != "restart":
            values = [v.item() if isinstance(v, np.generic) else v
                      for v in sorted(runs[name].dropna().unique())]
            shown = [fmt_T(v) if name == "n_train" else v for v in values]
            settings[name] = shown[0] if len(shown) == 1 else ", ".join(map(str, shown))
    words = {"n_hidden": "m", "weight_decay": "weight decay", "repeats": "R", "sparsity": "S",
             "steps": "steps", "n_features": "n"}
    fixed = ", ".join(f"{words[k]} = {_number(settings[k])}"
                      for k in ("n_features", "n_hidden", "sparsity", "steps") if k != axis)
    swept = f"{words[axis]} = {settings[axis]}; " if axis else ""
    text = (f"{len(runs)} finished runs: {swept}T = {settings['n_train']}; seeds "
            f"{settings['seed']}; {fixed}.")
    return text, settings


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def heatmap(store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Figure 5: mean test loss over (m, T), the ridge per m, and test loss vs T per m."""
    sparsity = float(runs["sparsity"].iloc[0])
    table = experiments.heatmap_table(runs)
    ridge = experiments.ridges(table, sparsity)
    fig, ax = _figure((8, 4.5))
    fx.plot_heatmap(ax, table, ridge=ridge)
    save(fig, out, "heatmap")
    fig, ax = _figure((7, 4.5))
    fx.plot_loss_by(ax, experiments.curves(runs, "n_hidden"), by="n_hidden")
    save(fig, out, "heatmap_curves")
    text, settings = _about(runs, "n_hidden")
    shown = table.copy()
    shown.columns = [fmt_T(T) for T in shown.columns]
    return Section(
        "Test loss over model size and data (heatmap)", text,
        [Figure("heatmap.png", "Mean test loss over seeds per (m, T), coloured by log loss with "
                "white at 1 (predicting zero); crosses mark each m's highest loss (the ridge)."),
         Figure("heatmap_curves.png", "The same test losses as curves vs T, one per m: mean "
                "over seeds with the min..max band.")],
        [("Mean test loss (rows m, columns T)", shown.reset_index().rename(columns=COLUMNS)),
         ("The ridge: highest mean test loss per m", _shown(ridge))],
        experiment_findings.heatmap_findings(ridge, sparsity), settings)


def _sweep(by: str, title: str, finding: Callable[[pd.DataFrame], Any], name: str,
           store: Store, runs: pd.DataFrame, out: Path) -> Section:
    table = experiments.curves(runs, by)
    bump = experiments.bumps(table, by)
    fig, ax = _figure((7, 4.5))
    fx.plot_loss_by(ax, table, by=by)
    save(fig, out, name)
    text, settings = _about(runs, by)
    found = finding(bump)
    return Section(
        title, text,
        [Figure(f"{name}.png", f"Test loss vs T, one curve per {COLUMNS[by]}: mean over seeds "
                "with the min..max band; the dotted line is predicting zero.")],
        [("The bump per value: highest mean test loss over T", _shown(bump)),
         ("Test loss per value and T", _shown(table))],
        [found] if found else [], settings)


def weight_decay(store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Appendix: test loss vs T per weight decay."""
    return _sweep("weight_decay", "Weight decay and the bump",
                  experiment_findings.weight_decay_finding, "weight_decay", store, runs, out)


def training_length(store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Appendix: test loss vs T per training length."""
    return _sweep("steps", "Training length and the bump",
                  experiment_findings.training_length_finding, "training_length", store, runs, out)


def repeated(store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Repeated data: the repeated point's loss and the features kept per R, a geometry row
    at the T nearest T/n = 3 (lowest seed), and the R vs T/n boundary."""
    points = experiments.repeated_table(store, runs)
    summary = experiments.repeated_summary(points)
    bounds = experiments.boundaries(summary)
    ratio = (runs["n_train"] / runs["n_features"] - 3).abs()
    at = runs[ratio == ratio.min()].sort_values(["repeats", "seed"]).drop_duplicates("repeats")
    figures = []
    if (at["n_hidden"] == 2).all():
        fig, axes = _figure((2.2 * len(at) + 0.5, 2.8), panels=len(at))
        for ax, run in zip(np.atleast_1d(axes), at.itertuples(), strict=True):
            arrays = store.arrays(run.run_id)
            fx.plot_repeated_geometry(ax, arrays["W"], arrays["H"][: int(run.n_repeated)])
            ax.set_title(f"R = {run.repeats}")
        save(fig, out, "repeated_geometry")
        figures.append(Figure("repeated_geometry.png", f"Features (spokes) and the repeated "
                              f"point (star) at T = {fmt_T(at['n_train'].iloc[0])}, one column "
                              "per R (lowest seed)."))
    fig, axes = _figure((15, 4.2), panels=3)
    fx.plot_repeated(axes[0], summary, column="own_loss")
    fx.plot_repeated(axes[1], summary, column="kept_features")
    fx.plot_boundary(axes[2], summary)
    save(fig, out, "repeated")
    figures.append(Figure("repeated.png", "The repeated point's own loss and the number of "
                          "learned features (D > 0.1) other than the point's own vs R, one "
                          "curve per T/n; where the point is memorised in the (T/n, R) plane, "
                          "with the line R = 0.4 T/n."))
    text, settings = _about(runs, "repeats")
    return Section(
        "Repeated data", text, figures,
        [("Per T and R (means over seeds)", _shown(summary)),
         ("The memorisation boundary per T", _shown(bounds))],
        experiment_findings.repeated_findings(summary, bounds), settings)


def sparsity(store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """The sparsity collapse: test loss vs T(1 - S) per S and the onset of generalization."""
    learned = pd.Series({r: int(np.sum(metrics.feature_dimensionality(
        store.arrays(r)["W"]) > analysis.LEARNED_D)) for r in runs["run_id"]}, dtype=float)
    table = experiments.sparsity_table(runs, learned)
    onset = experiments.onsets(table)
    fig, ax = _figure((7, 4.5))
    fx.plot_sparsity(ax, table, onset=onset)
    save(fig, out, "sparsity")
    text, settings = _about(runs, "sparsity")
    found = experiment_findings.sparsity_finding(onset)
    return Section(
        "Sparsity: generalization against T(1 - S)", text,
        [Figure("sparsity.png", "Mean test loss vs T(1 - S), the expected number of times each "
                "feature appears, one curve per S; diamonds mark where the loss stays below 1.")],
        [("Onset of generalization per S", _shown(onset)),
         ("Per S and T", _shown(table))],
        [found] if found else [], settings)


def max_dimensionality(store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """D* of every training example vs T (PAPER.md section 4) for the m = 2 sweep."""
    examples = experiments.max_dimensionality_table(store, runs)
    fig, ax = _figure((7, 4.5))
    fx.plot_max_dimensionality(ax, examples)
    save(fig, out, "max_dimensionality")
    text, settings = _about(runs, None)
    return Section(
        "Maximal data dimensionality D*", text,
        [Figure("max_dimensionality.png", "D* = max_v (v . h_t)^2 / sum_j (v . h_j)^2 of "
                "training examples vs T (at most 2,000 per T drawn), the median per T, and m/T.")],
        [("D* per T (all seeds)", _shown(experiments.max_dimensionality_summary(examples)))],
        [], settings)


BUILDERS: dict[str, Callable[[Store, pd.DataFrame, Path], Section]] = {
    "heatmap": heatmap, "weight-decay": weight_decay, "training-length": training_length,
    "repeated": repeated, "sparsity": sparsity, "max-dimensionality": max_dimensionality,
}


def section(store: Store, out: str | Path) -> list[Section]:
    """The report's provider (``toyrelu.report``): every experiment section the store holds."""
    return sections(store, out)


def sections(store: Store, out: str | Path, run_ids: Collection[str] | None = None,
             only: Sequence[str] | None = None) -> list[Section]:
    """A section for every experiment of ``BUILDERS`` (or of ``only``) that the store's
    finished runs (those in ``run_ids`` if given) hold, in ``BUILDERS`` order; figures are
    saved into ``out``."""
    runs = analysis.ok_runs(store, run_ids)
    found = []
    for name, build in BUILDERS.items():
        if only is not None and name not in only:
            continue
        chosen = experiments.select(runs, name)
        if not chosen.empty:
            found.append(build(store, chosen, Path(out)))
    return found


def markdown(title: str, found: Sequence[Section], counts: Mapping[str, int],
             intro: str = "") -> str:
    """``summary.md`` text for sections: what was run, claims checked, tables, figures."""
    lines = [f"# {title}", "", *([intro, ""] if intro else []),
             f"Runs: {counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed.", ""]
    for section in found:
        lines += [f"## {section.title}", "", section.text, "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in section.settings.items()]
        if section.findings:
            lines += ["", "| phenomenon | paper | measured | holds |", "|---|---|---|---|"]
            lines += [f"| {_cell(f.claim)} | {_cell(f.paper)} | {_cell(f.measured)} | "
                      f"{'yes' if f.holds else 'no'} |" for f in section.findings]
        for caption, table in section.tables:
            lines += ["", f"{caption}:", "", "| " + " | ".join(map(str, table.columns)) + " |",
                      "|" + "---|" * len(table.columns)]
            lines += ["| " + " | ".join(_cell(v) for v in row) + " |"
                      for row in table.itertuples(index=False)]
        lines += [""] + [f"![{f.name}]({f.name})" for f in section.figures] + [""]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if value != value else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")

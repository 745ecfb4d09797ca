"""What the experiments' sections share: a new figure, the column names their tables show, a
sentence and the settings of their runs, and the section of a sweep of one setting against T
(the appendix's weight-decay and training-length sweeps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from toyrelu.analysis import curves
from toyrelu.analysis.tables import Finding
from toyrelu.core.config import field_names, fmt_T
from toyrelu.experiments.record import Experiment, Section
from toyrelu.figures import axes as fx
from toyrelu.figures.base import save

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
T_COLUMNS = ("n_train", "peak_T", "ridge_T", "paper_T", "onset_T")


def new_figure(size: tuple[float, float], panels: int = 1) -> tuple[MplFigure, Any]:
    """A figure of ``size`` inches and its Axes (an array of ``panels`` in a row if > 1)."""
    fig = MplFigure(figsize=size, layout="constrained")
    return fig, fig.subplots(1, panels) if panels > 1 else fig.add_subplot()


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """A table as the report shows it: T written as 2,000 or ∞, readable column names."""
    table = table.copy()
    for column in T_COLUMNS:
        if column in table:
            table[column] = [fmt_T(v) if v == v else "–" for v in table[column]]
    return table.rename(columns=COLUMNS)


def about(runs: pd.DataFrame, axis: str | None) -> tuple[str, dict[str, object]]:
    """A sentence on what was run, and the settings (shared values; swept ones as lists)."""
    settings: dict[str, object] = {}
    for name in field_names():
        if name in runs and name != "restart":
            values = [v.item() if isinstance(v, np.generic) else v
                      for v in sorted(runs[name].dropna().unique())]
            texts = [fmt_T(v) if name == "n_train" else v for v in values]
            settings[name] = texts[0] if len(texts) == 1 else ", ".join(map(str, texts))
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


def sweep_section(record: Experiment, out: Path, runs: pd.DataFrame,
                  finding: Callable[[pd.DataFrame], Finding | None]) -> Section:
    """The section of a sweep of ``record.axis`` against T: test loss vs T per value (the
    figure named after the record's only figure), the bump per value, and ``finding`` of the
    bumps (``analysis.curves.bumps``)."""
    by = record.axis
    assert by is not None, "a sweep section needs the swept setting"
    table = curves.curves(runs, by)
    bump = curves.bumps(table, by)
    (name,) = record.figures
    fig, ax = new_figure((7, 4.5))
    fx.plot_loss_by(ax, table, by=by)
    save(fig, out, name)
    text, settings = about(runs, by)
    found = finding(bump)
    return Section(
        record.title, text, [record.figure(name)],
        [("The bump per value: the peak of the mean test loss before it settles below 1",
          shown(bump)),
         ("Test loss per value and T", shown(table))],
        [found] if found else [], settings)



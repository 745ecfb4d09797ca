"""The short markdown summary that ``toyrelu reproduce`` writes next to its m = 2 figures.

When the preset trains under both procedures (docs/experiment.md section 9), the summary opens
with the sentence on what the procedure changes (``analysis.procedures.comparison``), and its
claims and per-T tables are given per procedure, never pooled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from toyrelu.analysis import procedures
from toyrelu.analysis.tables import Finding
from toyrelu.experiments.double_descent import COLUMNS
from toyrelu.report import table as tables

__all__ = ["COLUMNS", "markdown"]


def markdown(
    title: str,
    settings: Mapping[str, object],
    table: pd.DataFrame,
    found: Sequence[Finding],
    figures: Sequence[str],
    counts: Mapping[str, int],
    comparison: str = "",
) -> str:
    """Markdown text: ``comparison`` (a sentence on the procedures), settings, the checked
    phenomena, the per-T table (one per m and procedure) and the figures.

    Settings are written as Python writes them (``str``), the way ``toyrelu reproduce`` was
    given them."""
    lines = [f"# {title}", ""]
    lines += [f"Runs: {tables.run_counts(counts)}.", ""]
    lines += [comparison, ""] if comparison else []
    lines += ["## Settings", "", tables.markdown(["setting", "value"],
                                                 [[k, str(v)] for k, v in settings.items()])]
    several = len(procedures.ordered(table)) > 1
    if found and several:
        lines += ["", "## What the paper shows, measured here under each procedure", "",
                  tables.markdown(["procedure", "phenomenon", "measured", "holds"],
                                  [[f.procedure, f.claim, f.measured, f.holds] for f in found])]
    elif found:
        lines += ["", "## What the paper shows, measured here", "", tables.markdown(
            ["phenomenon", "measured", "holds"], [[f.claim, f.measured, f.holds] for f in found])]
    lines += ["", "## Per training-set size", ""]
    for name in procedures.ordered(table):
        for m, rows in procedures.rows_of(table, name).groupby("n_hidden"):
            heading = f"m = {m}, {name}" if several else f"m = {m}"
            lines += [heading, "", tables.frame_markdown(rows, COLUMNS), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"

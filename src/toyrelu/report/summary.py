"""The short markdown summary that ``toyrelu reproduce`` writes next to its m = 2 figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

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
) -> str:
    """Markdown text: settings, the checked phenomena, the per-T table and the figures.

    Settings are written as Python writes them (``str``), the way ``toyrelu reproduce`` was
    given them."""
    lines = [f"# {title}", ""]
    lines += [f"Runs: {counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed.", ""]
    lines += ["## Settings", "", tables.markdown(["setting", "value"],
                                                 [[k, str(v)] for k, v in settings.items()])]
    if found:
        lines += ["", "## What the paper shows, measured here", "", tables.markdown(
            ["phenomenon", "measured", "holds"], [[f.claim, f.measured, f.holds] for f in found])]
    lines += ["", "## Per training-set size", ""]
    for m, rows in table.groupby("n_hidden"):
        lines += [f"m = {m}", "", tables.frame_markdown(rows, COLUMNS), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"

"""The short markdown summary that ``toyrelu reproduce`` writes next to its figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from toyrelu.analysis.tables import Finding

COLUMNS = {
    "n_train": "T",
    "seeds": "seeds",
    "test_mean": "test loss (mean)",
    "test_median": "test loss (median)",
    "test_max": "test loss (max)",
    "train_mean": "train loss",
    "learned_features": "features with D > 0.1",
    "example_D_median": "example D (median)",
    "m_over_T": "m/T",
    "W_norm": "‖W‖_F",
    "b_norm": "‖b‖",
}


def markdown(
    title: str,
    settings: Mapping[str, object],
    table: pd.DataFrame,
    found: Sequence[Finding],
    figures: Sequence[str],
    counts: Mapping[str, int],
) -> str:
    """Markdown text: settings, the checked phenomena, the per-T table and the figures."""
    lines = [f"# {title}", ""]
    lines += [f"Runs: {counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed.", ""]
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_escape(str(v))} |" for k, v in settings.items()]
    if found:
        lines += ["", "## What the paper shows, measured here", "",
                  "| phenomenon | measured | holds |", "|---|---|---|"]
        lines += [f"| {_escape(f.claim)} | {_escape(f.measured)} | {'yes' if f.holds else 'no'} |"
                  for f in found]
    lines += ["", "## Per training-set size", ""]
    for m, rows in table.groupby("n_hidden"):
        lines += [f"m = {m}", "", _table(rows), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def _table(rows: pd.DataFrame) -> str:
    cols = [c for c in COLUMNS if c in rows]
    head = "| " + " | ".join(COLUMNS[c] for c in cols) + " |"
    rule = "|" + "---|" * len(cols)
    body = ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for _, r in rows.iterrows()]
    return "\n".join([head, rule, *body])


def _escape(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:.4g}"
    return _escape(str(value))

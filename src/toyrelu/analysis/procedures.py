"""The training procedure of a run: its loss summed or averaged over features
(``RunConfig.loss_reduction``), with its Adam eps (docs/experiment.md section 9).

Adam sees the loss's scale only through eps, so the averaged loss with eps e trains as the
summed loss with eps n e: the two procedures are different settings, and every table, figure
and verdict built from runs keeps them apart instead of pooling them. ``split`` gives the runs
of each procedure, the summed loss first; ``name`` and ``labels`` say which procedure runs
follow, as the figures' legends and the report's columns show it; ``preferred`` is the one the
single-procedure figures draw (the paper's when the runs hold it); ``comparison`` is the
sentence on what the procedure changes, computed from the runs' per-T table.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from toyrelu.analysis import regimes
from toyrelu.core.config import LOSS_REDUCTIONS, RunConfig

FIELD = "loss_reduction"
# The paper's most likely procedure: the loss averaged over features, with PyTorch's eps.
PAPER_REDUCTION = "mean"
DEFAULT_EPS = RunConfig().eps
# A table's column naming each row's procedure (``per_T``, the dimensionality table).
COLUMN = "procedure"


def reductions(runs: pd.DataFrame) -> pd.Series:
    """Each run's ``loss_reduction``; a run stored before the field existed trained on the
    sum (``RunConfig.from_dict`` fills it in the same way)."""
    if FIELD not in runs:
        return pd.Series("sum", index=runs.index, dtype=object)
    return runs[FIELD].fillna("sum").astype(object)


def eps_text(value: float) -> str:
    """An eps as the labels write it: 1e-8, 3e-4, 2.5e-9."""
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def label(reduction: str, eps: Iterable[float]) -> str:
    """How the figures and the report name a procedure: "summed loss (eps 1e-8)", "paper's
    procedure: mean over features" (the mean with PyTorch's default eps) or "mean over
    features (eps 1e-6)"; several eps are listed."""
    values = sorted({float(e) for e in eps if e == e}) or [DEFAULT_EPS]
    text = ", ".join(eps_text(e) for e in values)
    if reduction == PAPER_REDUCTION:
        if values == [DEFAULT_EPS]:
            return "paper's procedure: mean over features"
        return f"mean over features (eps {text})"
    return f"summed loss (eps {text})"


def _eps(runs: pd.DataFrame) -> pd.Series:
    return runs["eps"] if "eps" in runs else pd.Series(DEFAULT_EPS, index=runs.index)


def split(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, runs) per loss reduction the runs hold, in the config's order (the summed loss
    first); each label names the eps of its own runs."""
    reduction = reductions(runs)
    order = [r for r in LOSS_REDUCTIONS if (reduction == r).any()]
    order += sorted(set(reduction) - set(order))
    eps = _eps(runs)
    return [(label(r, eps[reduction == r]), runs[reduction == r]) for r in order]


def name(runs: pd.DataFrame) -> str:
    """The label of the procedure ``runs`` follow; "" when they follow several (or none)."""
    parts = split(runs)
    return parts[0][0] if len(parts) == 1 else ""


def labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's procedure label (``split``), aligned with ``runs``."""
    out = pd.Series("", index=runs.index, dtype=object)
    for text, part in split(runs):
        out[part.index] = text
    return out


def ordered(table: pd.DataFrame) -> list[str]:
    """The procedures of a table with a ``COLUMN`` (in its row order), or [""] for a table
    without one (rows of one unnamed procedure)."""
    if COLUMN not in table:
        return [""]
    return list(dict.fromkeys(table[COLUMN]))


def rows_of(table: pd.DataFrame, procedure: str) -> pd.DataFrame:
    """The rows of ``table`` of one procedure; all of them for the unnamed procedure "" or a
    table without ``COLUMN``."""
    return table if COLUMN not in table or not procedure else table[table[COLUMN] == procedure]


def preferred(runs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The procedure the single-procedure figures (geometry, dimensionality) draw and its runs:
    the paper's when the runs hold it, else the first of ``split``."""
    parts = split(runs)
    if not parts:
        return "", runs
    reduction = reductions(runs)
    for text, part in parts:
        if (reduction[part.index] == PAPER_REDUCTION).all():
            return text, part
    return parts[0]


def comparison(runs: pd.DataFrame, table: pd.DataFrame) -> str:
    """One sentence on what averaging the loss over features changes at m = 2, from ``runs``
    and their per-T table (``analysis.per_T``): the bump (``regimes.bump`` over finite T, the
    peak before the test loss settles below 1) under each procedure, and the eps the average
    trains with on the summed scale. "" unless the runs hold the summed and the averaged loss,
    with one n and one eps between them."""
    parts = dict(split(runs))
    if set(reductions(runs)) != {"sum", PAPER_REDUCTION}:
        return ""
    if runs["n_features"].nunique() != 1 or _eps(runs).nunique() != 1:
        return ""
    peaks = []
    for text in parts:
        rows = rows_of(table, text)
        rows = rows[(rows["n_hidden"] == 2) & np.isfinite(rows["n_train"].astype(float))]
        if rows.empty:
            return ""
        rows = rows.sort_values("n_train")
        peaks.append(rows.iloc[regimes.bump(rows["test_mean"])])
    summed, averaged = peaks
    n = int(runs["n_features"].iloc[0])
    eps = float(_eps(runs).iloc[0])
    # The verb follows the numbers as shown, so that no sentence says "from 0.988 to 0.988".
    before, after = float(f"{summed.test_mean:.3g}"), float(f"{averaged.test_mean:.3g}")
    verb = "lowers" if after < before else "raises" if after > before else "leaves"
    where = (f"from {before:.3g} to {after:.3g} at T = {summed.n_train:,.0f}"
             if summed.n_train == averaged.n_train else
             f"from {before:.3g} at T = {summed.n_train:,.0f} to {after:.3g} at T = "
             f"{averaged.n_train:,.0f}")
    if verb == "leaves":
        where = f"at {before:.3g}"
    return (f"Averaging the loss over the n = {n:,} features, as the paper most likely did, "
            f"{verb} the bump (the peak of the mean test loss before it settles below 1, at "
            f"m = 2) {where}: Adam then trains as on the summed loss with eps n × "
            f"{eps_text(eps)} = {eps_text(n * eps)} (docs/experiment.md section 9).")

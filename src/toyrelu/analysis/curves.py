"""Tables the experiments share: loss curves per value of a swept setting, the bump of each
curve, and the rank trend of one column against another.

Pure pandas/numpy, computed from finished runs (one row each, as ``analysis.ok_runs`` gives
them) of one training procedure (``analysis.procedures``). Each experiment's own tables and
claims live in its record (``toyrelu.experiments``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from toyrelu.analysis import procedures, regimes
from toyrelu.analysis.regimes import holds_from

__all__ = ["TREND", "bumps", "curves", "holds_from", "rank_correlation"]

# A rank correlation at least this large counts as "grows with" (at most its negative, as
# "shrinks with"): a clear trend over a coarse grid of 4-5 values.
TREND = 0.7


def curves(runs: pd.DataFrame, by: str) -> pd.DataFrame:
    """Test and train loss per (``by``, T) across seeds: columns ``by``, n_train, seeds,
    test_mean, test_median, test_min, test_max, train_mean.

    The runs must follow one procedure (``procedures.split`` them first) unless ``by`` is the
    loss reduction itself: a mean over runs of both would mix two settings. ValueError
    otherwise."""
    found = procedures.split(runs)
    if len(found) > 1 and by != procedures.FIELD:
        raise ValueError(f"curves: the runs follow {len(found)} procedures ("
                         + "; ".join(name for name, _ in found) + "); split them first")
    table = runs.groupby([by, "n_train"]).agg(
        seeds=("seed", "nunique"), test_mean=("test_loss", "mean"),
        test_median=("test_loss", "median"), test_min=("test_loss", "min"),
        test_max=("test_loss", "max"), train_mean=("train_loss", "mean"),
    )
    return table.reset_index()


def bumps(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of ``by`` (a ``curves`` table): peak_T and peak (the mean test loss at the
    bump, ``regimes.bump``: the peak of the last rise before the loss settles below 1), bump
    (how far the peak rises above predicting zero, max(peak - 1, 0)) and last_loss (the mean
    test loss at the largest T)."""
    rows = []
    for value, part in table.sort_values("n_train").groupby(by):
        top = part.iloc[regimes.bump(part["test_mean"])]
        rows.append({by: value, "peak_T": top.n_train, "peak": top.test_mean,
                     "bump": max(top.test_mean - 1.0, 0.0),
                     "last_loss": part["test_mean"].iloc[-1]})
    return pd.DataFrame(rows, columns=[by, "peak_T", "peak", "bump", "last_loss"])


def rank_correlation(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either is constant."""
    rx, ry = pd.Series(np.asarray(x, float)).rank(), pd.Series(np.asarray(y, float)).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return math.nan
    return float(rx.corr(ry))

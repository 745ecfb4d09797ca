"""The paper's claims on the m = 2 sweep (figures 1-4) and their checks against a per-T table.

Each claim is a ``Claim`` with the paper's value (``toyrelu.core.paper``); ``paper_findings``
checks them all, for each procedure of the runs apart, as ``analysis.findings`` does for the
phenomena it checks itself. The paper's transitions sit at 10x smaller T in the reduced setting
(n = 1,000, S = 0.99) than at paper scale (n = 10,000, S = 0.999), the factor by which 1 - S
grew: expected positions are scaled by 0.001 / (1 - S). The test loss below 1 at large T comes
from the five learned features, each holding 1/n of an example's squared norm, so the paper's
gain below 1 is scaled by 10,000 / n.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from toyrelu import analysis
from toyrelu.analysis import procedures, regimes
from toyrelu.analysis.tables import EXCESS_FACTOR, POSITION_FACTOR, Finding
from toyrelu.core import paper
from toyrelu.core.config import fmt_T
from toyrelu.experiments.record import Claim

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
# Tolerances of the verdicts besides positions and the bump's height (analysis.POSITION_FACTOR,
# analysis.EXCESS_FACTOR): the gain below 1 within a factor 2, the plateau of ‖W‖_F within 15%
# of the paper's sqrt(5) (five unit-length spokes).
GAIN_FACTOR = 2.0
PLATEAU_TOLERANCE = 0.15

def paper_findings(
    table: pd.DataFrame, dims: pd.DataFrame, n_features: int, sparsity: float
) -> list[Finding]:
    """``analysis.findings`` with the paper's values, plus the claims it does not check, for
    each procedure of ``table`` apart (``analysis.procedures``), each finding tagged with it.

    ``table`` is ``analysis.per_T`` of one m = 2 sweep (T = infinity allowed), ``dims`` its
    dimensionality table. A claim the runs cannot check is a Finding whose ``measured`` starts
    with "not measured".
    """
    return [dataclasses.replace(found, procedure=name)
            for name in procedures.ordered(table)
            for found in _paper_findings(procedures.rows_of(table, name),
                                         procedures.rows_of(dims, name), n_features, sparsity)]


def _paper_findings(
    table: pd.DataFrame, dims: pd.DataFrame, n_features: int, sparsity: float
) -> list[Finding]:
    """``paper_findings`` of one procedure's rows."""
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
    # The bump (docs/experiment.md section 5), and the highest ‖W‖_F over T, each only when it
    # lies inside the stored T range.
    peak = norm_peak = None
    if len(finite) >= 3:
        peak = _inner(finite, regimes.bump(finite["test_mean"]))
        norm_peak = _inner(finite, int(finite["W_norm"].idxmax()))
    large = finite[finite["n_train"] >= LARGE_FACTOR * bump_T]
    out += [
        _bump_position(peak, bump_T, sparsity),
        _bump_height(peak),
        _large_T_loss(large, bump_T, n_features),
        _infinite_T_loss(table[~np.isfinite(table["n_train"].astype(float))], n_features),
        _norm_peak(peak, norm_peak),
        _norm_plateau(large, bump_T),
    ]
    return out


def _inner(table: pd.DataFrame, top: int) -> pd.Series | None:
    """Row ``top`` of ``table`` (sorted by T, indexed from 0), if not at either end: a peak
    at the edge of the stored T range may lie beyond it."""
    return table.iloc[top] if 0 < top < len(table) - 1 else None


def _bump_position(peak: pd.Series | None, bump_T: float, sparsity: float) -> Finding:
    claim = BUMP_POSITION.text
    value = (f"{BUMP_POSITION.paper}; {T_text(bump_T)} at S = {sparsity} "
             "(transitions at 10x smaller T in the reduced setting)")
    if peak is None or peak.test_mean <= 1:
        return _not_measured(claim, value, "no test loss above 1 peaks inside the stored T range")
    ratio = peak.n_train / bump_T
    return Finding(claim, f"the bump peaks at T = {T_text(peak.n_train)}, "
                   f"{ratio:.2g}x the expected T", _within(ratio, POSITION_FACTOR), value)


def _bump_height(peak: pd.Series | None) -> Finding:
    claim, value = BUMP_HEIGHT
    if peak is None:
        return _not_measured(claim, value, "no peak inside the stored T range")
    excess = (peak.test_mean - 1.0) / (paper.BUMP_PEAK - 1.0)
    return Finding(claim, f"{peak.test_mean:.4g} at T = {T_text(peak.n_train)} (median over seeds "
                   f"{peak.test_median:.4g})", bool(excess > 0 and _within(excess, EXCESS_FACTOR)),
                   value)


def _large_T_loss(large: pd.DataFrame, bump_T: float, n_features: int) -> Finding:
    claim = LARGE_T_LOSS.text
    gain = (1.0 - paper.LARGE_T_LOSS) * paper.N_FEATURES / n_features
    value = (f"{LARGE_T_LOSS.paper} at n = {paper.N_FEATURES:,}; the gain below 1 scales "
             f"as 1/n: {1 - gain:.4g} at n = {n_features:,}")
    if large.empty:
        return _not_measured(claim, value, f"no run at T >= {T_text(LARGE_FACTOR * bump_T)}")
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
    return Finding(claim, f"mean ‖W‖_F peaks at T = {T_text(norm_peak.n_train)} "
                   f"({norm_peak.W_norm:.3g}), the test loss at T = {T_text(peak.n_train)}",
                   bool(norm_peak.n_train * 10 <= peak.n_train), value)


def _norm_plateau(large: pd.DataFrame, bump_T: float) -> Finding:
    claim = NORM_PLATEAU.text
    value = f"{NORM_PLATEAU.paper} (five unit-length features)"
    if large.empty:
        return _not_measured(claim, value, f"no run at T >= {T_text(LARGE_FACTOR * bump_T)}")
    last = large.iloc[-1]
    return Finding(claim, f"mean ‖W‖_F {last.W_norm:.3g} at T = {T_text(last.n_train)}",
                   bool(abs(last.W_norm / paper.W_NORM_PLATEAU - 1) <= PLATEAU_TOLERANCE), value)


def _not_measured(claim: str, paper: str, why: str) -> Finding:
    return Finding(claim, f"not measured: {why}", False, paper)


def _within(ratio: float, factor: float) -> bool:
    return bool(1 / factor <= ratio <= factor)


def T_text(value: float) -> str:
    """T as the claims' sentences write it: ``fmt_T`` with infinity spelled out."""
    return fmt_T(value, infinity="infinity")


def _span(values: pd.Series, spec: str) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:{spec}}" if lo == hi else f"{lo:{spec}}-{hi:{spec}}"

"""Appendix of the paper (m = 4): the test-loss bump against the training length.

At weight decay 1e-2, more epochs give a bigger bump; the warmup stays 5% of the steps
(docs/experiment.md section 5, figure 6). The record: its runs (the largest sweep over steps at
m >= 3), the claim, and test loss vs T per training length.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from toyrelu.analysis.curves import TREND, rank_correlation
from toyrelu.analysis.tables import Finding
from toyrelu.core import paper
from toyrelu.core.config import fmt_T
from toyrelu.experiments.common import sweep_section
from toyrelu.experiments.record import Claim, Experiment, Section, grouped, repeated_data
from toyrelu.runs.store import Store

MORE = Claim("more epochs, bigger bump",
             f"more epochs, bigger bump (m = {paper.APPENDIX_N_HIDDEN}, weight decay 1e-2, "
             "warmup 5%)")


def training_length_finding(bump: pd.DataFrame) -> Finding | None:
    """Appendix: the bump (``bumps`` by steps) grows with the number of steps (rank correlation
    at least TREND, larger at the most steps than at the fewest)."""
    if len(bump) < 2:
        return None
    bump = bump.sort_values("steps")
    rho = rank_correlation(bump["steps"], bump["bump"])
    return Finding(
        MORE.text,
        "peak mean test loss minus 1: " + ", ".join(
            f"{r.bump:.3g} ({r.steps:,} steps, T = {fmt_T(r.peak_T)})"
            for r in bump.itertuples()) + f"; rank correlation {rho:.2f}",
        bool(rho >= TREND and bump["bump"].iloc[-1] > bump["bump"].iloc[0]),
        paper=MORE.paper,
    )


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Test loss vs T per training length, the bump per length and the claim."""
    return sweep_section(record, out, runs, training_length_finding)


RECORD = Experiment(
    key="training-length",
    title="Training length and the bump",
    axis="steps",
    claims=(MORE,),
    figures={"training_length": "Test loss vs T, one curve per steps: mean over seeds with "
                                "the min..max band; the dotted line is predicting zero."},
    select=grouped("steps", lambda runs: ~repeated_data(runs) & (runs["n_hidden"] >= 3)),
    build=build,
)

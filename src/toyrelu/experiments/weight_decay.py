"""Appendix of the paper (m = 4): the test-loss bump against weight decay.

Lower weight decay gives a bigger bump and weight decay 1.0 removes it (docs/experiment.md
section 5, figure 6). The record: its runs (the largest weight-decay sweep at m >= 3; the m = 2
sensitivity study varies weight decay too), the claim, and test loss vs T per weight decay.
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

# A bump counts as removed below 10% of the largest bump's excess over 1.
REMOVED_SHARE = 0.1
_EFFECT = "removes the bump; lower weight decay, bigger bump"
REMOVES = Claim(f"weight decay {paper.BUMP_FREE_WEIGHT_DECAY:g} {_EFFECT}",
                f"weight decay {paper.BUMP_FREE_WEIGHT_DECAY!r} {_EFFECT} "
                f"(m = {paper.APPENDIX_N_HIDDEN})")


def weight_decay_finding(bump: pd.DataFrame) -> Finding | None:
    """Appendix: the bump (``bumps`` by weight_decay) shrinks as weight decay grows (rank
    correlation at most -TREND) and the largest weight decay removes it (a bump under
    REMOVED_SHARE of the largest one)."""
    if len(bump) < 2:
        return None
    bump = bump.sort_values("weight_decay")
    rho = rank_correlation(bump["weight_decay"], bump["bump"])
    top = float(bump["bump"].max())
    last = bump.iloc[-1]
    removed = bool(last.bump <= REMOVED_SHARE * top) if top > 0 else False
    return Finding(
        f"weight decay {last.weight_decay:g} {_EFFECT}",
        "peak mean test loss minus 1: " + ", ".join(
            f"{r.bump:.3g} (wd {r.weight_decay:g}, T = {fmt_T(r.peak_T)})"
            for r in bump.itertuples()) + f"; rank correlation {rho:.2f}",
        bool(rho <= -TREND and removed),
        paper=REMOVES.paper,
    )


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Test loss vs T per weight decay, the bump per weight decay and the claim."""
    return sweep_section(record, out, runs, weight_decay_finding)


RECORD = Experiment(
    key="weight-decay",
    title="Weight decay and the bump",
    axis="weight_decay",
    claims=(REMOVES,),
    figures={"weight_decay": "Test loss vs T, one curve per weight decay: mean over seeds with "
                             "the min..max band; the dotted line is predicting zero."},
    select=grouped("weight_decay", lambda runs: ~repeated_data(runs) & (runs["n_hidden"] >= 3)),
    build=build,
)

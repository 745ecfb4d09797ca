"""Why the training procedure decides the bump: the mechanism, measured (docs/experiment.md
section 9).

Not a claim of the paper but toyrelu's reading of why the paper's procedure (the loss averaged
over features) gives the paper's bump where the summed loss does not: Adam's eps damps the
steps of features whose gradient has fallen below it, and the features that stretch to
memorise rare training examples make the heavy tail of the test loss. The record: its runs
(a T sweep trained with snapshots under both procedures, as the ``mechanism-quick`` and
``mechanism-laptop`` presets make), the per feature tables and verdicts of
``analysis.mechanism``, and one figure at the T where the summed loss's test loss peaks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from toyrelu.analysis import mechanism
from toyrelu.analysis.curves import fmt_T
from toyrelu.analysis.tables import SWEPT, setting_keys
from toyrelu.analysis.tail import LONG, TAIL_LOSS
from toyrelu.experiments.common import about, shown
from toyrelu.experiments.record import Experiment, Section
from toyrelu.figures.base import save
from toyrelu.figures.mechanism import mechanism_figure
from toyrelu.runs.store import Store

CAPTION = ("At T = {T} (the summed loss's highest test loss), per count of a feature in the "
           "training set: (a) its median final |W_i|, (b) the median share of a full Adam "
           "step that eps leaves it, over training and over its second half, (c) its share "
           "of the loss of the test examples above {tail}; (d) the share of test examples "
           "above {tail} over training, one line per seed.")
# The tables' columns as the report shows them.
COLUMNS = {
    "loss_reduction": "procedure", "eps": "eps", "bin": "seen in training", "features":
    "features", "W_norm": "|W_i| (median)", "b": "b_i (median)", "b_positive": "b_i > 0",
    "long": f"|W_i| > {LONG:g}", "speed": "speed", "late_speed": "speed, 2nd half",
    "gain": "Adam gain", "late_gain": "gain, 2nd half", "late_grad": "sqrt(v), 2nd half",
    "tail_share": "share of the tail's loss", "tail": f"test examples > {TAIL_LOSS:g}",
    "tail_loss_share": "their share of the test loss", "rare_share":
    f"carried by features seen 0-{mechanism.RARE} times", "unseen_share": "by unseen ones",
    "long_share": f"by features with |W_i| > {LONG:g}", "false_positive_share":
    "where the feature is 0", "tail_holding_long": f"tail examples holding |W_i| > {LONG:g}",
    "all_holding_long": "all examples holding one", "onset": "half the tail at step",
    "test_loss": "test loss",
}


def select(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs trained with snapshots (``snapshot_every`` > 0) of the largest group sharing
    every setting but T, the seed, the restart and the procedure."""
    if runs.empty or "snapshot_every" not in runs:
        return runs.iloc[:0]
    runs = runs[runs["snapshot_every"].fillna(0) > 0]
    if runs.empty:
        return runs
    keys, _ = setting_keys(runs, (*SWEPT, "loss_reduction", "eps"))
    return runs[keys == keys.value_counts().index[0]].reset_index(drop=True)


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Measure every run (``mechanism.measure``), draw the figure at the bump's T and give
    the tables and the verdicts."""
    measured = mechanism.measure(store, runs)
    table = mechanism.by_count(measured.features)
    shares = mechanism.tail_shares(measured)
    T = mechanism.bump_T(shares)
    at_T = table[table["n_train"] == T]
    lines = measured.lines[measured.lines["n_train"] == T]
    save(mechanism_figure(at_T, lines, f"Adam's eps and the heavy tail at T = {fmt_T(T)}"),
         out, "mechanism")
    text, settings = about(runs, None)
    text += (
        " Per feature: its count in the training set, its final |W_i| and b_i, how far it "
        "moved between snapshots against how far full Adam steps would have taken it "
        "(speed), the share of a full step that eps leaves it (gain, sqrt(v) / (sqrt(v) + "
        "eps), v estimated from the full-batch gradient at the snapshots), and its part of "
        f"the loss of the test examples above {TAIL_LOSS:g} (the heavy tail).")
    shown_columns = ["loss_reduction", "bin", "features", "W_norm", "b", "long", "speed",
                     "late_speed", "gain", "late_gain", "late_grad", "tail_share"]
    return Section(
        record.title, text, [record.figure("mechanism", T=fmt_T(T), tail=f"{TAIL_LOSS:g}")],
        [(f"Per count in the training set at T = {fmt_T(T)}, medians over features and seeds",
          _shown(at_T[shown_columns])),
         ("The heavy tail per procedure and T: who carries its loss, what its examples hold, "
          "when it forms", _shown(shares.drop(columns=["eps"])))],
        mechanism.findings(measured), settings)


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    table = shown(table).rename(columns=COLUMNS)
    return table.map(lambda v: float(f"{v:.3g}") if isinstance(v, float) else v)


RECORD = Experiment(
    key="mechanism",
    title="Why the procedure decides the bump: Adam's eps and the heavy tail",
    axis=None,
    claims=(),
    figures={"mechanism": CAPTION},
    select=select,
    build=build,
    joint=True,
)

"""Why the training procedure decides the bump: the mechanism, measured (docs/experiment.md
section 10).

Not a claim of the paper but toyrelu's reading of why the paper's procedure (the loss averaged
over features) gives the paper's bump where the summed loss does not: Adam's eps damps the
steps of features whose gradient has fallen below it, and the features that stretch to
memorise rare training examples make the heavy tail of the test loss. The record: its runs
(a T sweep trained with snapshots under both procedures, as the ``mechanism-quick`` and
``mechanism-laptop`` presets make), the per feature tables of ``analysis.mechanism``, the
verdicts computed from them (``findings``), and one figure at the bump of the summed loss
(``regimes.bump``, docs/experiment.md section 5).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from toyrelu.analysis import mechanism, procedures, regimes
from toyrelu.analysis.tables import Finding
from toyrelu.analysis.tail import LONG, TAIL_LOSS
from toyrelu.core.config import LOSS_REDUCTIONS, fmt_T
from toyrelu.experiments.common import about, shown
from toyrelu.experiments.record import Experiment, Section, grouped, repeated_data
from toyrelu.figures.base import save
from toyrelu.figures.mechanism import mechanism_figure
from toyrelu.runs.store import Store

CAPTION = ("At T = {T} (the summed loss's bump), per count of a feature in the "
           "training set: (a) its median final |W_i|, (b) the median share of a full Adam "
           "step that eps leaves it, over training and over its second half, (c) its share "
           "of the loss of the test examples above {tail}; over training, one line per seed: (d) "
           "the median |W_i| of the features seen once or twice, (e) the share of test "
           "examples above {tail}.")
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
    "test_loss": "test loss", "seed": "seed", "step": "step",
    "test_share_above_2": f"test examples > {TAIL_LOSS:g}",
    "rare_W_norm": f"|W_i| seen 1-{mechanism.RARE} times", "rare_gain": "their Adam gain",
    "common_W_norm": f"|W_i| seen > {mechanism.RARE} times", "common_gain": "their gain",
}


# A median Adam gain at least this is a full step; at most DAMPED, eps takes half of it or more.
FULL = 0.9
DAMPED = 0.5
# A procedure's tail is heavy when its examples make at least this share of its test loss:
# only then is asking what carries it a question about the bump.
HEAVY = 0.1


def shared_T(table: pd.DataFrame) -> list[float]:
    """The T values (sorted) at which ``table`` (runs, or ``tail_shares`` rows) holds both
    procedures, the summed and the averaged loss."""
    reduction = procedures.reductions(table)
    held = [set(table["n_train"][reduction == r]) for r in ("sum", "mean")]
    return sorted(held[0] & held[1])


def bump_T(table: pd.DataFrame) -> float | None:
    """The T of the summed loss's bump (``regimes.bump`` of its mean test loss over T) among
    the T that both procedures hold (``shared_T``), from a table with ``loss_reduction``,
    ``n_train`` and ``test_loss`` (the runs, or ``tail_shares``); None when they share no T."""
    T = shared_T(table)
    rows = table[(procedures.reductions(table) == "sum") & table["n_train"].isin(T)]
    if rows.empty:
        return None
    curve = rows.groupby("n_train")["test_loss"].mean().sort_index()
    return float(curve.index[regimes.bump(curve.to_numpy())])


def _pct(value: float) -> str:
    """A share as a percentage: one decimal below 10%."""
    if value != value:
        return "n/a"
    return f"{100 * value:.1f}%" if 100 * value < 9.95 else f"{100 * value:.0f}%"


def findings(measured: mechanism.Measured, T: float | None = None) -> list[Finding]:
    """The reading of docs/experiment.md section 10, checked at T (default ``bump_T`` of the
    tables) on runs of both procedures at one eps, each verdict with the measured numbers it
    rests on: Adam's gain on rare features (full under the sum, at most ``DAMPED`` under the
    mean), their speed (the mean's at most half the sum's: "hardly moves"), who carries the
    tail (rare features, features longer than ``LONG`` firing where they are 0), what the
    tail's examples hold, when the tail forms and how much the mean shrinks it."""
    shares = mechanism.tail_shares(measured)
    T = bump_T(shares) if T is None and not shares.empty else T
    if T is None:
        return [_not_measured(claim, "no T at which both procedures have stored runs")
                for claim in CLAIMS]
    at = shares[shares["n_train"] == T].set_index("loss_reduction")
    features = measured.features[measured.features["n_train"] == T]
    steps = int(measured.lines["step"].max())
    return (_rare_findings(features, T)
            + _tail_findings(at.loc["sum"].to_dict(), at.loc["mean"].to_dict(), T, steps))


def _not_measured(claim: str, why: str) -> Finding:
    return Finding(claim, f"not measured: {why}", False)


def _rare_findings(features: pd.DataFrame, T: float) -> list[Finding]:
    """The first two verdicts of ``findings``, on the features of its T."""
    rare = features[(features["count"] >= 1) & (features["count"] <= mechanism.RARE)]
    of = {r: rare[rare["loss_reduction"] == r] for r in ("sum", "mean")}
    seeds = int(features["seed"].nunique())
    where = (f"T = {T:,.0f}, features seen 1-{mechanism.RARE} times in training "
             f"({len(of['sum']):,} and {len(of['mean']):,} over {seeds} seeds)")
    gain = {r: float(of[r]["gain"].median()) for r in of}
    late = {r: float(of[r]["late_gain"].median()) for r in of}
    speed = {r: float(of[r]["speed"].median()) for r in of}
    length = {r: float(of[r]["W_norm"].median()) for r in of}
    ratio = speed["mean"] / speed["sum"] if speed["sum"] > 0 else float("nan")
    if of["sum"].empty or of["mean"].empty:
        why = f"no feature is seen 1-{mechanism.RARE} times in training at T = {T:,.0f}"
        return [_not_measured(claim, why) for claim in CLAIMS[:2]]
    if any(v != v for v in (*gain.values(), *speed.values())):
        return [_not_measured(claim, f"no snapshots at T = {T:,.0f}") for claim in CLAIMS[:2]]
    return [
        Finding(CLAIMS[0],
                f"{where}: median Adam gain over training {gain['sum']:.3g} under the sum, "
                f"{gain['mean']:.2g} under the mean (second half: {late['sum']:.3g} and "
                f"{late['mean']:.2g})",
                bool(gain["sum"] >= FULL and gain["mean"] <= DAMPED)),
        Finding(CLAIMS[1],
                f"{where}: median speed {speed['sum']:.2g} under the sum, {speed['mean']:.2g} "
                f"under the mean ({ratio:.2f} of it); median final |W_i| {length['sum']:.2g} "
                f"and {length['mean']:.2g}",
                bool(ratio <= 0.5)),
    ]


def _tail_findings(a: dict, b: dict, T: float, steps: int) -> list[Finding]:
    """The tail's verdicts of ``findings`` from the ``tail_shares`` rows of its T under the
    sum (``a``) and the mean (``b``), trained for ``steps``. Who carries the tail, what its
    examples hold and when it forms are checked under each procedure whose tail is heavy
    (``HEAVY``); the others are named with the share their tail has."""
    rows = {"sum": a, "mean": b}
    heavy = {name: row for name, row in rows.items() if row["tail_loss_share"] >= HEAVY}
    light = "".join(f"; no heavy tail under the {name} ({_pct(row['tail_loss_share'])} of its "
                    "test loss)" for name, row in rows.items() if name not in heavy)

    def check(claim: str, lead: str, columns: tuple[str, ...],
              holds: Callable[[dict], bool]) -> Finding:
        if not heavy:
            return _not_measured(claim, f"no heavy tail at T = {T:,.0f} (its examples make "
                                 f"{_pct(a['tail_loss_share'])} of the summed loss's test "
                                 f"loss, {_pct(b['tail_loss_share'])} of the mean's)")
        if any(row[c] != row[c] for row in heavy.values() for c in columns):
            return _not_measured(claim, f"no snapshots at T = {T:,.0f}")
        values = ", ".join(" and ".join(_pct(row[c]) if c != "onset" else f"{row[c]:,.0f}"
                                        for c in columns) + f" ({name})"
                           for name, row in heavy.items())
        return Finding(claim, f"T = {T:,.0f}: {lead} {values}{light}",
                       all(holds(row) for row in heavy.values()))

    return [
        check(CLAIMS[2], f"share of the tail's loss on features seen 0-{mechanism.RARE} times:",
              ("rare_share",), lambda r: r["rare_share"] >= 0.5),
        check(CLAIMS[3], f"share of the tail's loss on features with |W_i| > {LONG:g}, and of "
              "it where the feature is 0:", ("long_share", "false_positive_share"),
              lambda r: r["long_share"] >= 0.5 and r["false_positive_share"] >= 0.5),
        check(CLAIMS[4], f"share of the tail's examples holding a feature with |W_i| > "
              f"{LONG:g}, and of all test examples:", ("tail_holding_long", "all_holding_long"),
              lambda r: r["tail_holding_long"] >= 0.95
              and r["tail_holding_long"] > r["all_holding_long"]),
        check(CLAIMS[5], f"of {steps:,} steps, half the final tail at step", ("onset",),
              lambda r: r["onset"] <= steps / 2),
        _not_measured(CLAIMS[6], f"no test example above {TAIL_LOSS:g} under either "
                      f"procedure at T = {T:,.0f}")
        if a["tail"] == 0 and b["tail"] == 0 else
        Finding(CLAIMS[6],
                f"T = {T:,.0f}: {_pct(a['tail'])} of test examples above {TAIL_LOSS:g} under "
                f"the sum, {_pct(b['tail'])} under the mean; they make "
                f"{_pct(a['tail_loss_share'])} and {_pct(b['tail_loss_share'])} of the test "
                f"loss ({a['test_loss']:.3g} and {b['test_loss']:.3g})",
                bool(b["tail"] < a["tail"])),
    ]


CLAIMS = (
    "Adam takes full steps on rare features under the summed loss, eps damps them under "
    "the mean",
    "so rare features hardly move under the mean (at most half the summed loss's speed)",
    "the heavy tail is carried by rare features",
    "the heavy tail is carried by stretched features firing where they are absent",
    "every tail example holds a stretched feature",
    "the tail forms in the first half of training, while the learning rate is high",
    "the mean over features shrinks the tail",
)


def _snapshots(runs: pd.DataFrame) -> pd.Series:
    """Which runs were trained with snapshots at the default eps (the verdicts' eps)."""
    if "snapshot_every" not in runs:
        return pd.Series(False, index=runs.index)
    eps = runs["eps"] if "eps" in runs else pd.Series(procedures.DEFAULT_EPS, index=runs.index)
    return ((runs["snapshot_every"].fillna(0) > 0) & (eps == procedures.DEFAULT_EPS)
            & ~repeated_data(runs))


_GROUP = grouped(procedures.FIELD, _snapshots)


def select(runs: pd.DataFrame) -> pd.DataFrame:
    """The snapshot runs at the default eps (``_snapshots``) of the largest group of both
    procedures sharing every setting but T, the seed and the restart, provided both hold at
    least two T and the summed loss has a bump there (``bump_T``, above the zero predictor's
    1): what the study measures. Empty otherwise, so that no section is written (and nothing
    measured) for snapshot runs kept for other reasons, such as an animation at one T."""
    runs = _GROUP(runs)
    if runs.empty or len(shared_T(runs)) < 2:
        return runs.iloc[:0]
    T = bump_T(runs)
    summed = runs[(procedures.reductions(runs) == "sum") & (runs["n_train"] == T)]
    return runs if summed["test_loss"].mean() > 1 else runs.iloc[:0]


def build(record: Experiment, store: Store, runs: pd.DataFrame, out: Path) -> Section:
    """Measure every run (``mechanism.measure``; Adam's gains only at the bump's T, the only
    T whose gains are shown), draw the figure at the bump's T and give the tables and the
    verdicts."""
    T = bump_T(runs)
    assert T is not None, "select keeps runs of both procedures at a shared T"
    measured = mechanism.measure(store, runs, set(runs["run_id"][runs["n_train"] == T]))
    table = mechanism.by_count(measured.features)
    shares = mechanism.tail_shares(measured)
    at_T = table[table["n_train"] == T]
    lines = measured.lines[measured.lines["n_train"] == T]
    rank = {r: k for k, r in enumerate(LOSS_REDUCTIONS)}
    lines = lines.sort_values(["loss_reduction", "seed", "step"], key=lambda c: c.map(rank)
                              if c.name == "loss_reduction" else c)
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
    over_training = ["loss_reduction", "seed", *mechanism.TIMELINE_COLUMNS]
    return Section(
        record.title, text, [record.figure("mechanism", T=fmt_T(T), tail=f"{TAIL_LOSS:g}")],
        [(f"Per count in the training set at T = {fmt_T(T)}, medians over features and seeds",
          _shown(at_T[shown_columns])),
         ("The heavy tail per procedure and T: who carries its loss, what its examples hold, "
          "when it forms", _shown(shares.drop(columns=["eps"]))),
         (f"Over training at T = {fmt_T(T)}, per procedure and seed: the test loss, its tail "
          f"and the median |W_i| and Adam gain of the features seen 1-{mechanism.RARE} times "
          "and of the others", _shown(lines[over_training]))],
        findings(measured, T), settings)


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

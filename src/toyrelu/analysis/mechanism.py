"""Why the training procedure decides the bump: per feature tables and verdicts.

The reading to test (docs/experiment.md section 10): eps leaves Adam's full steps to a rare
feature's tiny gradient under the summed loss and damps them under the mean (the sum with eps
n x eps); the column grows further under the sum and makes the test loss's heavy tail. Per
feature i of a run (``feature_table``):

- ``count``: the training examples it is active in, and ``bin`` its ``COUNT_BINS`` label;
- ``W_norm``, ``b``: its final |W_i| and b_i, and ``W_norm_init`` its length at step 0;
- ``speed``: how far W_i moved between snapshots over how far full Adam steps in one direction
  would have taken it (``adam_steps.Trace``): 1 at full speed, about 0 when it stays put (an
  oscillation inside an interval is not seen); ``late_speed`` the same over the second half;
- ``gain``, ``late_gain``: the share of a full step that eps leaves it, sqrt(v) / (sqrt(v) +
  eps), weighted by the learning rate over training and over its second half;
- ``late_grad``: the median over the second half's snapshots of sqrt(v) per coordinate on the
  summed loss's scale, and ``eps_eff`` the eps it meets there (eps, times n for the mean);
- ``tail_loss``: the squared error it contributes to the test examples in the heavy tail
  (``tail``), and ``tail_loss_active`` the part where it is active in the example.

``timeline`` follows the test loss, its tail and the rare features over training; ``by_count``
and ``tail_shares`` aggregate runs by training count and by T. The verdicts drawn from them are
the experiment's record's (``toyrelu.experiments.mechanism``). Nothing here draws.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from toyrelu.analysis import dynamics, procedures
from toyrelu.analysis.adam_steps import Trace, ratio, trace, weighted
from toyrelu.analysis.dynamics import Trajectory
from toyrelu.analysis.tail import LONG, TAIL_LOSS, loss_by_feature, onset, tail_examples
from toyrelu.core import data, evaluation
from toyrelu.core.config import LOSS_REDUCTIONS, RunConfig
from toyrelu.core.data import SparseData
from toyrelu.runs.store import Store, StoreError

# Training counts as the tables group them: the label and the counts it holds.
COUNT_BINS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10), ("11+", 11, np.inf))
# Features seen at most this often in training are "rare".
RARE = 2

FEATURE_COLUMNS = ["feature", "count", "bin", "W_norm", "W_norm_init", "b", "speed",
                   "late_speed", "gain", "late_gain", "late_grad", "eps_eff", "tail_loss",
                   "tail_loss_active"]
TIMELINE_COLUMNS = ["step", "test_loss", "test_share_above_2", "rare_W_norm", "rare_gain",
                    "common_W_norm", "common_gain"]


def feature_counts(X: SparseData) -> NDArray[np.int64]:
    """(n_features,) how many examples of ``X`` each feature is active (non-zero) in."""
    return np.bincount(X.indices[X.data != 0], minlength=X.n_features).astype(np.int64)


def count_bin(counts: NDArray[np.integer] | Sequence[int]) -> NDArray[np.object_]:
    """The ``COUNT_BINS`` label of each training count."""
    counts = np.asarray(counts)
    out = np.empty(counts.shape, dtype=object)
    for label, lo, hi in COUNT_BINS:
        out[(counts >= lo) & (counts <= hi)] = label
    return out


def feature_table(trajectory: Trajectory, test: SparseData | None = None,
                  measured: Trace | None = None) -> pd.DataFrame:
    """One row per feature of one run (``FEATURE_COLUMNS``, see the module's docstring);
    ``test`` is its test set (default: the config's, ``data.test_set``) and ``measured`` its
    ``trace`` (computed when not given). A run without snapshots has NaN speeds, gains and
    ``late_grad``."""
    config = trajectory.config
    test = data.test_set(config) if test is None else test
    measured = trace(trajectory) if measured is None else measured
    counts = feature_counts(trajectory.X)
    late = measured.steps[1:] > config.steps / 2
    # The gain over an interval: the mean of its two ends.
    gain = (measured.gain[1:] + measured.gain[:-1]) / 2
    late_snaps = measured.steps > config.steps / 2
    W, b = trajectory.W[-1], trajectory.b[-1]
    _, tail, tail_active = loss_by_feature(W, b, test)
    return pd.DataFrame({
        "feature": np.arange(config.n_features),
        "count": counts,
        "bin": count_bin(counts),
        "W_norm": np.linalg.norm(np.asarray(W, np.float64), axis=0),
        "W_norm_init": np.linalg.norm(np.asarray(trajectory.W[0], np.float64), axis=0)
        if len(trajectory) > 1 else np.nan,
        "b": np.asarray(b, np.float64),
        "speed": ratio(measured.moved, measured.budget),
        "late_speed": ratio(measured.moved[late], measured.budget[late]),
        "gain": weighted(gain, measured.budget),
        "late_gain": weighted(gain[late], measured.budget[late]),
        "late_grad": np.median(measured.grad[late_snaps], axis=0)
        if late_snaps.any() else np.nan,
        "eps_eff": measured.eps_eff,
        "tail_loss": tail,
        "tail_loss_active": tail_active,
    }, columns=FEATURE_COLUMNS)


def timeline(trajectory: Trajectory, test: SparseData | None = None,
             measured: Trace | None = None, *, at_most: int = 21) -> pd.DataFrame:
    """Test loss at (at most ``at_most``, evenly spread, always the first and the last)
    snapshot steps: ``step``, ``test_loss``, ``test_share_above_2`` (the tail), and for the
    features seen 1..``RARE`` times in training (``rare_``) and more often (``common_``) the
    median |W_i| (``_W_norm``) and Adam gain (``_gain``, from ``measured``, the run's
    ``trace``)."""
    test = data.test_set(trajectory.config) if test is None else test
    measured = trace(trajectory) if measured is None else measured
    counts = feature_counts(trajectory.X)
    groups = {"rare": (counts >= 1) & (counts <= RARE), "common": counts > RARE}
    picks = np.unique(np.linspace(0, len(trajectory) - 1, min(at_most, len(trajectory)))
                      .round().astype(int))
    rows = []
    for s in picks:
        W, b = trajectory.W[s], trajectory.b[s]
        losses = evaluation.example_losses(W, b, test)
        lengths = np.linalg.norm(np.asarray(W, np.float64), axis=0)
        row = {"step": int(trajectory.steps[s]), "test_loss": float(losses.mean()),
               "test_share_above_2": float(np.mean(losses > TAIL_LOSS))}
        for name, mask in groups.items():
            row[f"{name}_W_norm"] = float(np.median(lengths[mask])) if mask.any() else np.nan
            row[f"{name}_gain"] = (float(np.median(measured.gain[s][mask])) if mask.any()
                                   else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


RUN_KEYS = ["run_id", "loss_reduction", "eps", "n_train", "seed"]


def _tag(table: pd.DataFrame, run: pd.Series) -> pd.DataFrame:
    reduction = procedures.reductions(run.to_frame().T).iloc[0]
    for key in reversed(RUN_KEYS):
        table.insert(0, key, reduction if key == "loss_reduction" else run[key])
    return table


@dataclass(frozen=True)
class Measured:
    """The mechanism tables of many runs, each row tagged with its run's ``RUN_KEYS``:
    ``features`` (``feature_table`` rows), ``lines`` (``timeline`` rows) and ``examples``
    (one row per run, ``tail_examples``)."""

    features: pd.DataFrame
    lines: pd.DataFrame
    examples: pd.DataFrame


def collect(trajectories: Iterable[Trajectory], runs: pd.DataFrame,
            traced: Collection[str] | None = None) -> Measured:
    """Measure every run of ``trajectories``; ``runs`` has one row per run with at least the
    ``RUN_KEYS`` columns. Adam's gains (the costly part, ``trace``) are estimated for the runs
    in ``traced`` only (every run when None); the others' ``gain``, ``late_gain`` and
    ``late_grad`` are NaN."""
    by_id = runs.set_index("run_id", drop=False)
    features, lines, examples = [], [], []
    for trajectory in trajectories:
        run = by_id.loc[trajectory.run_id]
        test = data.test_set(trajectory.config)
        measured = trace(trajectory,
                         gradients=traced is None or trajectory.run_id in traced)
        features.append(_tag(feature_table(trajectory, test, measured), run))
        lines.append(_tag(timeline(trajectory, test, measured), run))
        held = tail_examples(trajectory.W[-1], trajectory.b[-1], test)
        examples.append(_tag(pd.DataFrame([held]), run))
    if not features:
        empty = pd.DataFrame(columns=RUN_KEYS)
        return Measured(empty, empty, empty)
    return Measured(pd.concat(features, ignore_index=True), pd.concat(lines, ignore_index=True),
                    pd.concat(examples, ignore_index=True))


def load(store: Store, run_id: str) -> Trajectory:
    """The snapshots of ``run_id`` (``dynamics.load``) or, for a run trained without, its
    final W and b alone as one snapshot at its last step: enough for the per feature table
    without speeds and gains. Raises StoreError (one line) for a run with no trained W."""
    arrays = store.arrays(run_id)
    if "snapshot_W" in arrays:
        return dynamics.load(store, run_id)
    if "W" not in arrays:
        raise StoreError(f"run: {run_id} has no trained W (the run failed)")
    config = RunConfig.from_dict(store.config(run_id))
    X = SparseData(arrays["X_indptr"], arrays["X_indices"], arrays["X_data"], config.n_features)
    return Trajectory(run_id, config, np.array([config.steps], dtype=np.int64),
                      arrays["W"][None], arrays["b"][None], X)


def measure(store: Store, runs: pd.DataFrame,
            traced: Collection[str] | None = None) -> Measured:
    """``collect`` over the stored runs of ``runs`` (one row per run, ``RUN_KEYS`` columns),
    Adam's gains estimated for the runs in ``traced`` (every run when None)."""
    return collect((load(store, run_id) for run_id in runs["run_id"]), runs, traced)


def by_count(features: pd.DataFrame) -> pd.DataFrame:
    """Per procedure, T and count bin (``COUNT_BINS`` order), over every seed: ``features``
    (how many), ``seeds``, the medians of ``W_norm``, ``b``, ``speed``, ``late_speed``,
    ``gain``, ``late_gain`` and ``late_grad``, ``b_positive`` (the share with b_i > 0),
    ``long`` (the share longer than ``LONG``) and ``tail_share`` (the bin's share of the
    tail's loss, summed over seeds)."""
    order = {label: k for k, (label, _, _) in enumerate(COUNT_BINS)}
    rows = []
    for (reduction, eps, T), run in features.groupby(KEYS):
        total = run["tail_loss"].sum()
        for label, part in run.groupby("bin"):
            rows.append({
                "loss_reduction": reduction, "eps": eps, "n_train": T, "bin": label,
                "order": order[label],
                "features": len(part), "seeds": part["seed"].nunique(),
                "W_norm": part["W_norm"].median(), "b": part["b"].median(),
                "b_positive": float((part["b"] > 0).mean()),
                "long": float((part["W_norm"] > LONG).mean()),
                "speed": part["speed"].median(), "late_speed": part["late_speed"].median(),
                "gain": part["gain"].median(), "late_gain": part["late_gain"].median(),
                "late_grad": part["late_grad"].median(),
                "tail_share": part["tail_loss"].sum() / total if total > 0 else 0.0,
            })
    if not rows:
        return pd.DataFrame(rows)
    return _in_order(pd.DataFrame(rows), "order")


# What keeps the runs of a table apart: the procedure, its eps and T.
KEYS = ["loss_reduction", "eps", "n_train"]


def _rows_of(table: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of ``table`` whose ``KEYS`` equal ``key``."""
    mask = np.ones(len(table), dtype=bool)
    for column, value in zip(KEYS, key, strict=True):
        mask &= (table[column] == value).to_numpy()
    return table[mask]


def _in_order(table: pd.DataFrame, *then: str) -> pd.DataFrame:
    """``table`` sorted by procedure (the summed loss first, ``LOSS_REDUCTIONS``), eps, T and
    ``then``, which is dropped."""
    rank = table["loss_reduction"].map({r: k for k, r in enumerate(LOSS_REDUCTIONS)})
    table = table.assign(_rank=rank.fillna(len(LOSS_REDUCTIONS)))
    table = table.sort_values(["_rank", "loss_reduction", "eps", "n_train", *then])
    return table.drop(columns=["_rank", *then]).reset_index(drop=True)


def _share(part: pd.DataFrame, mask: pd.Series, column: str = "tail_loss") -> float:
    total = part["tail_loss"].sum()
    return float(part[column][mask].sum() / total) if total > 0 else np.nan


def tail_shares(measured: Measured) -> pd.DataFrame:
    """Per procedure and T, over its seeds: ``tail`` and ``tail_loss_share`` (the share of
    test examples above ``TAIL_LOSS`` at the end and their share of the test loss, means over
    seeds), ``test_loss`` (the mean at the end), the tail's loss carried by features seen
    0..``RARE`` times in training (``rare_share``), never seen (``unseen_share``) or longer
    than ``LONG`` (``long_share``), the part of it where the feature is 0 in the example
    (``false_positive_share``), ``tail_holding_long`` and ``all_holding_long``
    (``tail_examples``, means over seeds) and ``onset`` (the median over seeds of the step at
    which the tail reaches half its final share; NaN without a tail)."""
    rows = []
    for key, part in measured.features.groupby(KEYS):
        reduction, eps, T = key
        lines, held = _rows_of(measured.lines, key), _rows_of(measured.examples, key)
        onsets = [onset(seed.sort_values("step")) for _, seed in lines.groupby("seed")]
        ends = lines.sort_values("step").groupby("seed").tail(1)
        # The share of the whole tail's loss (every feature's) that falls where the feature
        # is active in the example; the rest is false positives.
        active = _share(part, pd.Series(True, index=part.index), "tail_loss_active")
        rows.append({
            "loss_reduction": reduction, "eps": eps, "n_train": T,
            "seeds": part["seed"].nunique(),
            "test_loss": float(ends["test_loss"].mean()),
            "tail": float(held["tail"].mean()),
            "tail_loss_share": float(held["tail_loss_share"].mean()),
            "rare_share": _share(part, part["count"] <= RARE),
            "unseen_share": _share(part, part["count"] == 0),
            "long_share": _share(part, part["W_norm"] > LONG),
            "false_positive_share": 1.0 - active,
            "tail_holding_long": float(held["tail_holding_long"].mean()),
            "all_holding_long": float(held["all_holding_long"].mean()),
            "onset": float(np.nanmedian(onsets)) if np.isfinite(onsets).any() else np.nan,
        })
    return _in_order(pd.DataFrame(rows)) if rows else pd.DataFrame(rows)

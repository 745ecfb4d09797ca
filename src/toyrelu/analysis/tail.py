"""The heavy tail of the test loss, taken apart: which features carry it and what its examples
hold.

A test example is in the tail when its loss (summed over features, the paper's scale) is above
``TAIL_LOSS``, the threshold of the stored ``test_share_above_2``. Its loss is a sum over
features of (x'_i - x_i)^2, so the tail's loss splits exactly over the features, and each
feature's part splits again into where it is active in the example and where the model outputs
it though it is 0 (a false positive). ``onset`` says when, over training, the tail forms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from toyrelu.analysis.adam_steps import blocks
from toyrelu.core import evaluation
from toyrelu.core.data import SparseData

# A test example is in the heavy tail when its loss is above this (``test_share_above_2``).
TAIL_LOSS = 2.0
# A column longer than this is stretched: a feature alone in an example with |W_i| = 1 and
# b_i = 0 gives back its own value, so a longer one needs a negative bias to stay quiet on
# the examples it does not fit (docs/experiment.md section 10).
LONG = 1.0


def loss_by_feature(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    threshold: float = TAIL_LOSS,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per example loss (n_examples,), and per feature the squared error summed over the
    examples whose loss is above ``threshold`` (n_features,), all of it and the part where the
    feature is active; the rest is where the model outputs a feature that is 0."""
    losses = np.zeros(X.n_examples)
    tail = np.zeros(X.n_features)
    tail_active = np.zeros(X.n_features)
    for block in blocks(W, b, X):
        # (relu(z) - x)^2: relu(z)^2 everywhere, then (relu(z) - x)^2 where x is non-zero.
        error = np.maximum(block.z, 0.0) ** 2
        active = (np.maximum(block.z[block.rows, block.cols], 0.0) - block.values) ** 2
        error[block.rows, block.cols] = active
        span = slice(block.lo, block.lo + len(error))
        losses[span] = error.sum(axis=1)
        heavy = losses[span] > threshold
        tail += error[heavy].sum(axis=0)
        kept = heavy[block.rows]
        tail_active += np.bincount(block.cols[kept], weights=active[kept],
                                   minlength=X.n_features)
    return losses, tail, tail_active


def holding(X: SparseData, mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """(n_examples,) whether each example of ``X`` has an active feature where ``mask``
    (n_features,) is true."""
    rows = X.row_ids()
    hit = mask[X.indices] & (X.data != 0)
    return np.bincount(rows[hit], minlength=X.n_examples) > 0


def tail_examples(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    test: SparseData,
) -> dict[str, float]:
    """What the test examples in the tail (loss above ``TAIL_LOSS``) hold: ``tail`` (their
    share of the examples), ``tail_loss_share`` (their share of the summed test loss),
    ``tail_holding_long`` and ``all_holding_long`` (the share of them, and of every example,
    holding a feature longer than ``LONG``)."""
    losses = evaluation.example_losses(W, b, test)
    heavy = losses > TAIL_LOSS
    held = holding(test, np.linalg.norm(np.asarray(W, np.float64), axis=0) > LONG)
    return {
        "tail": float(heavy.mean()),
        "tail_loss_share": float(losses[heavy].sum() / losses.sum()) if losses.sum() else 0.0,
        "tail_holding_long": float(held[heavy].mean()) if heavy.any() else np.nan,
        "all_holding_long": float(held.mean()),
    }


def onset(line: pd.DataFrame, share: float = 0.5) -> float:
    """The first step of a ``timeline`` at which the tail (``test_share_above_2``) reaches
    ``share`` of its final value; NaN when the run ends with no tail, or the timeline has its
    final state alone (a run without snapshots)."""
    final = float(line["test_share_above_2"].iloc[-1])
    if final <= 0 or len(line) < 2:
        return float("nan")
    reached = line["step"][line["test_share_above_2"] >= share * final]
    return float(reached.iloc[0])

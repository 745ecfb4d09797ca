"""What Adam did to each feature of a run between its stored snapshots.

Adam divides each update by sqrt(v) + eps, so a coordinate whose gradient is far above eps
moves about ``lr`` per step whatever the gradient's size, and one whose gradient is far below
eps moves g / eps times slower. The summed loss with eps e and the averaged one (the summed
with eps n e, docs/experiment.md section 9) differ only there. ``trace`` measures it from a
run's snapshots (``RunConfig.snapshot_every``, ``analysis.dynamics``) and its training set: the
full-batch gradient at each snapshot (``gradient_W``), Adam's denominator estimated from them,
the share of a full step eps leaves (the gain), and how far each column W_i moved against how
far full steps would have taken it. ``analysis.mechanism`` builds its tables from these.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from toyrelu.analysis.dynamics import Trajectory
from toyrelu.core import evaluation
from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.schedule import learning_rates

# Examples per block when a pass needs the dense (examples, n_features) outputs.
ROWS = 1024


def effective_eps(config: RunConfig) -> float:
    """The eps Adam meets on the summed loss's scale: eps, or n_features x eps when the loss
    is averaged over features (docs/experiment.md section 9)."""
    return config.eps * (config.n_features if config.loss_reduction == "mean" else 1)


@dataclass(frozen=True)
class Block:
    """Consecutive examples of a sparse set and the model's outputs on them, in float64.

    Attributes:
        lo: the index of its first example.
        h: (rows, n_hidden) hidden vectors W x_t.
        z: (rows, n_features) pre-activations W^T h_t + b, so x'_t = relu(z_t).
        rows, cols, values: its non-zero inputs x[rows, cols] = values, rows counted from 0.
    """

    lo: int
    h: NDArray[np.float64]
    z: NDArray[np.float64]
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    values: NDArray[np.float64]


def blocks(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    rows: int = ROWS,
) -> Iterator[Block]:
    """The ``Block`` of every ``rows`` consecutive examples of ``X``: only z is dense, so a
    pass holds (rows, n_features) numbers at a time whatever the size of X."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    for lo in range(0, X.n_examples, rows):
        part = X.rows(np.arange(lo, min(lo + rows, X.n_examples)))
        h = evaluation.hidden(W, part.astype(np.float64)).astype(np.float64, copy=False)
        yield Block(lo, h, h @ W + b, part.row_ids(), part.indices.astype(np.int64),
                    part.data.astype(np.float64))


def gradient_W(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    *,
    rows: int = ROWS,
) -> NDArray[np.float64]:
    """(n_hidden, n_features) gradient of the summed loss (1/T) sum_t ||x'_t - x_t||^2 with
    respect to W, in float64: with z_t = W^T W x_t + b and d_t = 2 (x'_t - x_t) 1[z_t > 0],
    dL/dW = (1/T) sum_t (W x_t) d_t^T + (W d_t) x_t^T (the decoder's and the encoder's part)."""
    W = np.asarray(W, dtype=np.float64)
    grad = np.zeros_like(W)
    for block in blocks(W, b, X, rows):
        # d = 2 (relu(z) - x) 1[z > 0]: 2 relu(z) everywhere, less 2 x where x is non-zero.
        d = 2.0 * np.maximum(block.z, 0.0)
        on = block.z[block.rows, block.cols] > 0
        d[block.rows[on], block.cols[on]] -= 2.0 * block.values[on]
        grad += block.h.T @ d
        # The encoder's part, (W d_t) x_t^T, only where x is non-zero.
        Wd = d @ W.T
        for k in range(W.shape[0]):
            grad[k] += np.bincount(block.cols, weights=Wd[block.rows, k] * block.values,
                                   minlength=W.shape[1])
    return grad / max(X.n_examples, 1)


@dataclass(frozen=True)
class Trace:
    """What Adam did to each feature between one run's snapshots.

    Attributes:
        steps: (S,) the snapshot steps.
        grad: (S, n_features) the size per coordinate of each column's Adam denominator,
            sqrt(v_hat) (the root mean square over its n_hidden coordinates), on the summed
            loss's scale. v_hat is estimated from the full-batch gradient at the snapshots
            (``gradient_W``), each standing for the steps since the one before: v decays by
            beta2^K over K steps, and is divided by 1 - beta2^step like Adam's.
        gain: (S, n_features) sqrt(v_hat) / (sqrt(v_hat) + eps_eff), the mean over the
            column's coordinates: the share of a full Adam step that eps leaves.
        moved: (S - 1, n_features) |W_i(s + 1) - W_i(s)|.
        budget: (S - 1,) sqrt(n_hidden) times the learning rates summed over each interval:
            how far a column taking full steps in one direction would move.
        eps_eff: the eps on the summed scale (``effective_eps``).
    """

    steps: NDArray[np.int64]
    grad: NDArray[np.float64]
    gain: NDArray[np.float64]
    moved: NDArray[np.float64]
    budget: NDArray[np.float64]
    eps_eff: float


def adam_gain(
    grads: NDArray[np.floating],  # (S, n_hidden, n_features)
    steps: NDArray[np.integer],  # (S,)
    beta2: float,
    eps: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(grad, gain) of ``Trace`` from the gradients at snapshot ``steps``: at step 0 v_hat is
    g^2 (what Adam's first step sees); from snapshot s - 1 to s, K steps apart, the raw v
    decays by beta2^K and takes (1 - beta2^K) g_s^2, and v_hat = v / (1 - beta2^step)."""
    grads = np.asarray(grads, dtype=np.float64)
    raw = np.zeros(grads.shape[1:])
    scale = np.empty((len(steps), grads.shape[2]))
    gain = np.empty_like(scale)
    for s, step in enumerate(np.asarray(steps)):
        if s == 0 or step == 0:
            v_hat = grads[s] ** 2
        else:
            decay = beta2 ** float(step - steps[s - 1])
            raw = decay * raw + (1.0 - decay) * grads[s] ** 2
            v_hat = raw / (1.0 - beta2 ** float(step))
        root = np.sqrt(v_hat)
        scale[s] = np.sqrt(v_hat.mean(axis=0))
        gain[s] = (root / (root + eps)).mean(axis=0)
    return scale, gain


def trace(trajectory: Trajectory, *, gradients: bool = True) -> Trace:
    """The ``Trace`` of a run with snapshots. Adam's denominator is estimated only where it
    can be and is wanted: a run without snapshots (a single, final state, whose v is not
    known) and a call with ``gradients=False`` (which skips the costly full-batch gradients)
    leave ``grad`` and ``gain`` NaN; ``moved`` and ``budget`` cost little and are always
    measured (empty for a single state)."""
    config = trajectory.config
    W = trajectory.W.astype(np.float64)
    steps = np.asarray(trajectory.steps, dtype=np.int64)
    if gradients and len(steps) > 1:
        grads = np.stack([gradient_W(W[s], trajectory.b[s], trajectory.X)
                          for s in range(len(W))])
        grad, gain = adam_gain(grads, steps, config.beta2, effective_eps(config))
    else:
        grad = np.full((len(steps), config.n_features), np.nan)
        gain = grad.copy()
    lrs = np.concatenate([[0.0], np.cumsum(learning_rates(config))])
    budget = (lrs[steps[1:]] - lrs[steps[:-1]]) * np.sqrt(config.n_hidden)
    moved = np.linalg.norm(np.diff(W, axis=0), axis=1)
    return Trace(steps, grad, gain, moved, budget, effective_eps(config))


def ratio(moved: NDArray[np.float64], budget: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per column, the distance moved over the intervals over their summed ``budget``."""
    total = budget.sum()
    return moved.sum(axis=0) / total if total > 0 else np.full(moved.shape[1], np.nan)


def weighted(values: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per column of ``values`` (intervals, n), its mean weighted by ``weights`` (intervals,);
    NaN where the weights sum to 0."""
    total = weights.sum()
    if total <= 0:
        return np.full(values.shape[1], np.nan)
    return weights @ values / total

"""The losses every run stores, computed the same way whichever engine trained it.

Losses are evaluated in float64 on the paper's scale (squared error summed over features and
averaged over examples, so that predicting zero gives 1 for unit-norm examples), whatever
``loss_reduction`` trained the run, by one compiled kernel for every n_hidden: evaluating a
trained run compiles nothing per hidden size. Also the hidden vectors H = X W^T of a sparse X.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from toyrelu.core.data import SparseData


@numba.njit(nogil=True, cache=True)
def _example_losses(W, b, H, indptr, indices, data, out):  # noqa: ANN001
    n = W.shape[1]
    for t in range(len(indptr) - 1):
        h = H[t]
        total = 0.0
        for i in range(n):
            z = b[i]
            for k in range(W.shape[0]):
                z += h[k] * W[k, i]
            if z > 0.0:
                total += z * z
        for p in range(indptr[t], indptr[t + 1]):
            i = indices[p]
            z = b[i]
            for k in range(W.shape[0]):
                z += h[k] * W[k, i]
            a = z if z > 0.0 else 0.0
            total += data[p] * data[p] - 2.0 * a * data[p]
        out[t] = total


def example_losses(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
) -> NDArray[np.float64]:
    """(n_examples,) each example's squared error summed over features, in float64.

    This is the paper's scale (predicting zero gives 1 for a unit-norm example), whatever
    reduction a run trains with; the mean over examples is the loss.
    """
    W64, X64 = W.astype(np.float64), X.astype(np.float64)
    out = np.zeros(X.n_examples)
    _example_losses(W64, b.astype(np.float64), hidden(W64, X64), X64.indptr, X64.indices,
                    X64.data, out)
    return out


def mean_loss(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
) -> float:
    """The loss on the paper's scale in float64, the mean of ``example_losses``: what a run
    stores as its train loss. A single scalar pass, slower than the CPU engine's fused loss
    (docs/engines.md), which a run pays once."""
    return float(example_losses(W, b, X).mean()) if X.n_examples else 0.0


@numba.njit(nogil=True, cache=True)
def _hidden(W, indptr, indices, data, H):  # noqa: ANN001
    for t in range(len(indptr) - 1):
        for p in range(indptr[t], indptr[t + 1]):
            for k in range(W.shape[0]):
                H[t, k] += W[k, indices[p]] * data[p]


def hidden(W: NDArray[np.floating], X: SparseData) -> NDArray[np.floating]:
    """Hidden vectors H = X W^T, (n_examples, n_hidden), from the sparse X."""
    H = np.zeros((X.n_examples, W.shape[0]), dtype=W.dtype)
    _hidden(W, X.indptr, X.indices, X.data.astype(W.dtype), H)
    return H


def held_out_losses(
    W: NDArray[np.floating], b: NDArray[np.floating], test: SparseData
) -> dict[str, float]:
    """Mean test loss and the spread of the per-example losses (paper scale): ``test_loss``,
    ``test_loss_median``, ``test_loss_p90`` and ``test_share_above_2``."""
    losses = example_losses(W, b, test)
    return {
        "test_loss": float(losses.mean()),
        "test_loss_median": float(np.median(losses)),
        "test_loss_p90": float(np.quantile(losses, 0.9)),
        "test_share_above_2": float(np.mean(losses > 2.0)),
    }


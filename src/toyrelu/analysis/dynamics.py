"""Training dynamics: the geometry of one run at its stored snapshots.

A run trained with ``RunConfig.snapshot_every = K`` stores W and b at step 0, after every K
steps and after the last step (``engine.snapshot_steps``). From those and the stored training
set X this module computes, per snapshot s, what figure 1 of the paper shows for the final model
(docs/experiment.md section 5): the hidden vectors H_s = X W_s^T, the fractional dimensionality
of every feature and every training example, and optionally the train loss, so one can watch
the T-gons of the hidden vectors or the pentagon of the features form. Drawing lives in
``toyrelu.figures.animation``; nothing here imports matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from toyrelu.analysis.tables import LEARNED_D
from toyrelu.core import evaluation, metrics
from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.runs.store import Store, StoreError

# Why a run that is not ok has no snapshots, by its status (runs.store).
_UNTRAINED = {"failed": "the run failed",
              "error": "the run stopped on an error; the next sweep trains it",
              "lost": "the cluster lost the run; the next sweep trains it"}
SUMMARY_COLUMNS = [
    "step", "W_norm", "b_norm", "features_learned", "feature_D_sum", "example_D_sum",
    "train_loss",
]


@dataclass(frozen=True)
class Trajectory:
    """The stored snapshots of one run.

    Attributes:
        run_id: the run's id in the store.
        config: its config.
        steps: (n_snapshots,) steps after which each snapshot was taken, 0 first.
        W: (n_snapshots, n_hidden, n_features) W at each of those steps.
        b: (n_snapshots, n_features) b at each of those steps.
        X: the stored training set (for T = infinity, the held-out batch the run shows).
    """

    run_id: str
    config: RunConfig
    steps: NDArray[np.int64]
    W: NDArray[np.floating]
    b: NDArray[np.floating]
    X: SparseData

    def __len__(self) -> int:
        return len(self.steps)

    def hidden(self, s: int) -> NDArray[np.floating]:
        """(n_train, n_hidden) hidden vectors H_s = X W_s^T of snapshot ``s``."""
        return evaluation.hidden(np.ascontiguousarray(self.W[s]), self.X)


@dataclass(frozen=True)
class Frame:
    """What one snapshot shows.

    Attributes:
        step: training steps done.
        W: (n_hidden, n_features) the features W_i as columns.
        b: (n_features,) the biases.
        H: (n_train, n_hidden) the training hidden vectors h_t = W x_t.
        feature_D: (n_features,) fractional dimensionality of every feature.
        example_D: (n_train,) fractional dimensionality of every training example.
        train_loss: loss on X (paper scale, as the stored ``train_loss``), or NaN when not
            computed.
    """

    step: int
    W: NDArray[np.floating]
    b: NDArray[np.floating]
    H: NDArray[np.floating]
    feature_D: NDArray[np.float64]
    example_D: NDArray[np.float64]
    train_loss: float


def load(store: Store, run_id: str) -> Trajectory:
    """The snapshots of ``run_id`` in ``store``.

    Raises StoreError (one line) when the store has no such run, or the run has no snapshots:
    it was trained with ``snapshot_every = 0``, or it is not ok (a failed run stores none, nor
    does one stopped by an error or lost by a cluster, which the next sweep trains).
    """
    arrays = store.arrays(run_id)
    config = RunConfig.from_dict(store.config(run_id))
    if "snapshot_W" not in arrays:
        status = store.status(run_id)
        if status != "ok":
            why = _UNTRAINED.get(str(status), "the run failed")
            raise StoreError(f"run: {run_id} has no snapshots ({why})")
        raise StoreError(f"run: {run_id} has no snapshots (train it with --snapshot-every K)")
    X = SparseData(arrays["X_indptr"], arrays["X_indices"], arrays["X_data"],
                   config.n_features)
    return Trajectory(run_id, config, arrays["snapshot_steps"], arrays["snapshot_W"],
                      arrays["snapshot_b"], X)


def frame(trajectory: Trajectory, s: int, *, loss: bool = False) -> Frame:
    """Snapshot ``s`` (0 to len - 1) with its hidden vectors and dimensionalities; with
    ``loss`` also its train loss, which costs about one training step."""
    W, b = trajectory.W[s], trajectory.b[s]
    H = trajectory.hidden(s)
    value = float("nan")
    if loss:
        value = evaluation.mean_loss(W, b, trajectory.X)
    return Frame(int(trajectory.steps[s]), W, b, H, metrics.feature_dimensionality(W),
                 metrics.dimensionality(H), value)


def summary(trajectory: Trajectory, *, losses: bool = False) -> pd.DataFrame:
    """One row per snapshot: ``step``, ``W_norm``, ``b_norm``, ``features_learned`` (features
    with D above ``analysis.LEARNED_D``: 5 once the pentagon has formed), ``feature_D_sum`` and
    ``example_D_sum`` (the dimensions each set of vectors uses, at most n_hidden) and
    ``train_loss`` (NaN unless ``losses``)."""
    rows = []
    for s in range(len(trajectory)):
        f = frame(trajectory, s, loss=losses)
        W_norm, b_norm = metrics.norms(f.W, f.b)
        rows.append((f.step, W_norm, b_norm, int(np.sum(f.feature_D > LEARNED_D)),
                     float(f.feature_D.sum()), float(f.example_D.sum()), f.train_loss))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def radii(trajectory: Trajectory) -> tuple[float, float]:
    """Largest feature length |W_i| and largest hidden-vector length |h_t| over all
    snapshots, so that every frame of an animation can share one scale."""
    W_radius = float(np.linalg.norm(trajectory.W.astype(np.float64), axis=1).max(initial=0.0))
    H_radius = 0.0
    for s in range(len(trajectory)):
        H = trajectory.hidden(s).astype(np.float64)
        H_radius = max(H_radius, float(np.linalg.norm(H, axis=1).max(initial=0.0)))
    return W_radius, H_radius

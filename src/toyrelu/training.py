"""Train one run end to end: data, init, the chosen engine, and the stored metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from toyrelu import data, engine, metrics, model, reference
from toyrelu.config import RunConfig
from toyrelu.data import SparseData

TRAINERS = {"fused": engine.train, "reference": reference.train}
# (step, W (n_hidden, n_features), b (n_features,)) after that many training steps
Snapshot = tuple[int, NDArray[np.floating], NDArray[np.floating]]


@dataclass
class RunResult:
    """Everything a run produces. ``status`` is "ok" or "failed" (then ``error`` says why, and
    W, b and H are those of the initialisation, since a diverged run has no final parameters).

    ``X`` is the training set; for T = infinity, ``batch_size`` examples of the train stream
    that training never saw (the examples whose hidden vectors and losses are shown)."""

    config: RunConfig
    status: str
    error: str | None
    W: NDArray[np.floating]  # (n_hidden, n_features)
    b: NDArray[np.floating]  # (n_features,)
    X: SparseData  # (n_train, n_features), the training set
    H: NDArray[np.floating]  # (n_train, n_hidden), H = X W^T
    values: dict[str, float] = field(default_factory=dict)
    # (step, W, b) at every step of engine.snapshot_steps(config) when snapshot_every > 0
    snapshots: list[Snapshot] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The row stored for this run: status, error and every scalar metric."""
        return {"status": self.status, "error": self.error, **self.values}

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays stored for this run; X in CSR form so every number can be recomputed.

        With snapshots, also ``snapshot_steps`` (S,), ``snapshot_W`` (S, n_hidden, n_features)
        and ``snapshot_b`` (S, n_features); the hidden vectors of snapshot s are X W_s^T.
        A failed run stores its training set only: its W, b and H describe no trained model.
        """
        trained = {"W": self.W, "b": self.b, "H": self.H} if self.status == "ok" else {}
        if self.status == "ok" and self.snapshots:
            steps, Ws, bs = zip(*self.snapshots, strict=True)
            trained["snapshot_steps"] = np.array(steps, dtype=np.int64)
            trained["snapshot_W"] = np.stack(Ws)
            trained["snapshot_b"] = np.stack(bs)
        return {
            **trained,
            "X_indptr": self.X.indptr,
            "X_indices": self.X.indices,
            "X_data": self.X.data,
        }


def run(config: RunConfig, *, on_steps: Callable[[int], None] | None = None) -> RunResult:
    """Train ``config`` and evaluate it; a diverging run comes back failed, never raised.

    With ``config.snapshot_every > 0`` the result also holds the (step, W, b) snapshots."""
    engine.flush_denormals()
    start = time.perf_counter()
    X = data.train_set(config)
    W, b = model.init_params(config)
    source = data.batches(config) if config.infinite else X
    snapshots: list[Snapshot] = []
    hooks: dict[str, Any] = {"on_steps": on_steps}
    if config.snapshot_every > 0:
        hooks["on_snapshot"] = lambda step, W_s, b_s: snapshots.append((step, W_s, b_s))
    try:
        W, b = TRAINERS[config.engine](config, source, W, b, **hooks)
    except engine.Diverged as exc:
        return finish(config, X, W, b, start, error=f"diverged: {exc}")
    return finish(config, X, W, b, start, snapshots=snapshots)


# A kind of compiled kernels: (n_hidden, dtype, whether the split-cell step)
KernelKind = tuple[int, str, bool]


def kernel_kinds(config: RunConfig) -> list[KernelKind]:
    """The compiled kernels a single-threaded run of ``config`` may take (``compile_kernels``):
    the fused step (with the evaluation of the trained run), and the split-cell step where
    ``engine.takes_cells``; none for the reference engine."""
    if config.engine != "fused":
        return []
    kinds = [(config.n_hidden, config.dtype, False)]
    if not config.infinite and engine.takes_cells(int(config.n_train), config.n_hidden):
        kinds.append((config.n_hidden, config.dtype, True))
    return kinds


def compile_kernels(n_hidden: int, dtype: str, split: bool) -> None:
    """Compile (or load from the disk cache) the single-threaded kernels of one
    ``kernel_kinds`` kind by training a tiny run with them, so that the worker processes of a
    sweep can compile different kinds side by side instead of each compiling every kind."""
    config = RunConfig(n_features=16, n_hidden=n_hidden, sparsity=0.5, n_train=64, steps=2,
                       dtype=dtype, n_test=8)
    if split:
        W, b = model.init_params(config)
        engine.train(config, data.train_set(config), W, b, split_cells=True, threads=1)
    else:
        run(config)


def finish(
    config: RunConfig,
    X: SparseData,
    W: NDArray[np.floating],
    b: NDArray[np.floating],
    start: float,
    error: str | None = None,
    *,
    snapshots: Sequence[Snapshot] = (),
) -> RunResult:
    """The result of a run trained to (W, b), or failed with ``error``; ``start`` is its
    ``time.perf_counter()`` at the start, for ``wall_seconds``. ``snapshots`` are kept only
    when the run did not fail.

    Losses are evaluated in float64 on the paper's scale (summed over features, averaged over
    examples; PAPER.md section 1) whatever ``loss_reduction`` trained the run: ``train_loss``
    on ``X``, ``test_loss`` on ``n_test`` fresh examples of the test stream, with the spread of
    the per-example test losses (the mean is driven by a heavy tail): ``test_loss_median``,
    ``test_loss_p90`` and ``test_share_above_2``.
    """
    H = engine.hidden(W, X)
    values: dict[str, float] = {}
    if error is None:
        W64, b64 = W.astype(np.float64), b.astype(np.float64)
        values["train_loss"] = engine.mean_loss(W64, b64, X)
        values.update(held_out_losses(W64, b64, data.test_set(config)))
        values["W_norm"], values["b_norm"] = metrics.norms(W, b)
    values["wall_seconds"] = time.perf_counter() - start
    kept = list(snapshots) if error is None else []
    return RunResult(config, "ok" if error is None else "failed", error, W, b, X, H, values,
                     kept)


def held_out_losses(
    W: NDArray[np.floating], b: NDArray[np.floating], test: SparseData
) -> dict[str, float]:
    """Mean test loss and the spread of the per-example losses (paper scale)."""
    losses = engine.example_losses(W, b, test)
    return {
        "test_loss": float(losses.mean()),
        "test_loss_median": float(np.median(losses)),
        "test_loss_p90": float(np.quantile(losses, 0.9)),
        "test_share_above_2": float(np.mean(losses > 2.0)),
    }

"""One run end to end, the path every executor takes: prepare, train, evaluate.

``prepare`` draws a config's data and initial parameters, the config's engine trains them (on
the GPU, ``engines.gpu.train_many`` trains many prepared runs at once), and ``evaluate`` turns
the trained (W, b) into the ``RunResult`` that the store keeps, by ``core.evaluation`` whatever
engine trained it. ``run_one`` packages a run as the ``Outcome`` an executor hands back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from toyrelu.core import data, evaluation, metrics, model
from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.trainer import Diverged, Snapshot, Trainer, flush_denormals
from toyrelu.engines import reference
from toyrelu.engines.cpu import engine
from toyrelu.runs.limits import check_hidden

TRAINERS: dict[str, Trainer] = {"fused": engine.train, "reference": reference.train}
# on_steps(run_id, k): k more steps of the run done
StepsCallback = Callable[[str, int], None]


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
    # (step, W, b) at every step of trainer.snapshot_steps(config) when snapshot_every > 0
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


@dataclass(frozen=True)
class Prepared:
    """A run before training: ``X`` the training set it is evaluated and stored with (for
    T = infinity, ``batch_size`` examples of the train stream that training never sees),
    ``source`` what it trains on (``X``, or an iterator of one fresh batch per step) and its
    initial ``W0`` (n_hidden, n_features) and ``b0`` (n_features,)."""

    X: SparseData
    source: SparseData | Iterator[SparseData]
    W0: NDArray[np.floating]
    b0: NDArray[np.floating]


def prepare(config: RunConfig) -> Prepared:
    """The data and initial parameters of ``config``, each from its own seed stream."""
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    return Prepared(X, data.batches(config) if config.infinite else X, W0, b0)


def run(config: RunConfig, *, on_steps: Callable[[int], None] | None = None) -> RunResult:
    """Train ``config`` and evaluate it; a diverging run comes back failed, never raised.

    With ``config.snapshot_every > 0`` the result also holds the (step, W, b) snapshots.
    A hidden size the CPU engine's kernels are not built for raises ConfigError before any
    work (``limits.hidden_refusal``)."""
    check_hidden(config)
    flush_denormals()
    start = time.perf_counter()
    ready = prepare(config)
    snapshots: list[Snapshot] = []
    hooks: dict[str, Any] = {"on_steps": on_steps}
    if config.snapshot_every > 0:
        hooks["on_snapshot"] = lambda step, W_s, b_s: snapshots.append((step, W_s, b_s))
    try:
        W, b = TRAINERS[config.engine](config, ready.source, ready.W0, ready.b0, **hooks)
    except Diverged as exc:
        return evaluate(config, ready, start, error=f"diverged: {exc}")
    return evaluate(config, ready, start, (W, b), snapshots=snapshots)


@dataclass(frozen=True)
class Outcome:
    """What an executor hands back for one run: everything the store keeps."""

    run_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    arrays: dict[str, Any]

    @classmethod
    def of(cls, result: RunResult) -> Outcome:
        return cls(result.config.run_id, result.config.to_dict(), result.metrics(),
                   result.arrays())


def run_one(config: RunConfig, on_steps: StepsCallback | None = None) -> Outcome:
    """Train one run and package it for the store; never raises for a failing run.

    A run that diverges, or raises, comes back ``failed``: the same config would fail the same
    way, so a resumed sweep keeps it. One that runs out of memory or meets an OSError (a disk,
    a file, a device) comes back ``error``: the machine failed it, and the next sweep trains it
    again. The error's first line is the reason."""
    try:
        result = run(
            config, on_steps=None if on_steps is None else lambda k: on_steps(config.run_id, k)
        )
        return Outcome.of(result)
    except Exception as exc:  # noqa: BLE001 - a crashed run is stored, the sweep goes on
        status = "error" if isinstance(exc, (MemoryError, OSError)) else "failed"
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return Outcome(config.run_id, config.to_dict(), {"status": status, "error": reason}, {})


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


def evaluate(
    config: RunConfig,
    ready: Prepared,
    start: float,
    trained: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
    error: str | None = None,
    *,
    snapshots: Sequence[Snapshot] = (),
) -> RunResult:
    """The result of the ``ready`` run trained to ``trained`` = (W, b), or failed with
    ``error`` (then W and b are the initial ones); ``start`` is its ``time.perf_counter()`` at
    the start, for ``wall_seconds``. ``snapshots`` are kept only when the run did not fail.

    Losses are evaluated by ``core.evaluation``, in float64 on the paper's scale whatever
    ``loss_reduction`` trained the run: ``train_loss`` on ``X``, ``test_loss`` on ``n_test``
    fresh examples of the test stream, with the spread of the per-example test losses (the mean
    is driven by a heavy tail): ``test_loss_median``, ``test_loss_p90`` and
    ``test_share_above_2``.
    """
    if (trained is None) == (error is None):
        raise ValueError("evaluate: give the trained (W, b) or an error, not both")
    W, b = trained if trained is not None else (ready.W0, ready.b0)
    X = ready.X
    H = evaluation.hidden(W, X)
    values: dict[str, float] = {}
    if error is None:
        W64, b64 = W.astype(np.float64), b.astype(np.float64)
        values["train_loss"] = evaluation.mean_loss(W64, b64, X)
        values.update(evaluation.held_out_losses(W64, b64, data.test_set(config)))
        values["W_norm"], values["b_norm"] = metrics.norms(W, b)
    values["wall_seconds"] = time.perf_counter() - start
    kept = list(snapshots) if error is None else []
    return RunResult(config, "ok" if error is None else "failed", error, W, b, X, H, values,
                     kept)

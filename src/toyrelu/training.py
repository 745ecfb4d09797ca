"""Train one run end to end: data, init, the chosen engine, and the stored metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from toyrelu import data, engine, metrics, model, reference
from toyrelu.config import RunConfig
from toyrelu.data import SparseData

TRAINERS = {"fused": engine.train, "reference": reference.train}


@dataclass
class RunResult:
    """Everything a run produces. ``status`` is "ok" or "failed" (then ``error`` says why, and
    W, b and H are those of the initialisation, since a diverged run has no final parameters)."""

    config: RunConfig
    status: str
    error: str | None
    W: NDArray[np.floating]  # (n_hidden, n_features)
    b: NDArray[np.floating]  # (n_features,)
    X: SparseData  # (n_train, n_features), the training set
    H: NDArray[np.floating]  # (n_train, n_hidden), H = X W^T
    values: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The row stored for this run: status, error and every scalar metric."""
        return {"status": self.status, "error": self.error, **self.values}

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays stored for this run; X in CSR form so every number can be recomputed.

        A failed run stores its training set only: its W, b and H describe no trained model.
        """
        trained = {"W": self.W, "b": self.b, "H": self.H} if self.status == "ok" else {}
        return {
            **trained,
            "X_indptr": self.X.indptr,
            "X_indices": self.X.indices,
            "X_data": self.X.data,
        }


def run(config: RunConfig, *, on_steps: Callable[[int], None] | None = None) -> RunResult:
    """Train ``config`` and evaluate it; a diverging run comes back failed, never raised.

    Losses are evaluated in float64 on the final parameters: ``train_loss`` on the training set,
    ``test_loss`` on ``n_test`` fresh examples from the test stream.
    """
    engine.flush_denormals()
    start = time.perf_counter()
    X = data.train_set(config)
    W, b = model.init_params(config)
    status, error = "ok", None
    try:
        W, b = TRAINERS[config.engine](config, X, W, b, on_steps=on_steps)
    except engine.Diverged as exc:
        status, error = "failed", f"diverged: {exc}"
    H = engine.hidden(W, X)
    values: dict[str, float] = {}
    if status == "ok":
        W64, b64 = W.astype(np.float64), b.astype(np.float64)
        test = data.test_set(config).astype(np.float64)
        values["train_loss"] = engine.loss(W64, b64, X.astype(np.float64), config.loss_reduction)
        values["test_loss"] = engine.loss(W64, b64, test, config.loss_reduction)
        values["W_norm"], values["b_norm"] = metrics.norms(W, b)
    values["wall_seconds"] = time.perf_counter() - start
    return RunResult(config, status, error, W, b, X, H, values)

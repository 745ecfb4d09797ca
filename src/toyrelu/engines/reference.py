"""Reference trainer: plain PyTorch autograd on dense tensors, AdamW, full batch.

It is slow (about ten memory passes over the dense T x n output per step) and exists as the
oracle: the fused engine must reproduce its gradients and trajectories, and the benchmark
compares against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from numpy.typing import NDArray

from toyrelu.core import model
from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.schedule import learning_rates
from toyrelu.core.trainer import Diverged, SnapshotCallback, snapshot_plan

PROGRESS_EVERY = 100


def dense(X: SparseData, dtype: str) -> torch.Tensor:
    """(n_examples, n_features) dense tensor of a sparse batch."""
    return torch.from_numpy(X.astype(dtype).to_dense())


def loss_and_grad(
    W: NDArray[np.floating],
    b: NDArray[np.floating],
    X: SparseData,
    reduction: str = "sum",
) -> tuple[float, NDArray[np.floating], NDArray[np.floating]]:
    """Loss and its gradients (dW (n_hidden, n_features), db (n_features,)) by autograd."""
    W_t = torch.tensor(W, requires_grad=True)
    b_t = torch.tensor(b, requires_grad=True)
    value = model.loss(W_t, b_t, dense(X, str(W.dtype)), reduction)
    value.backward()
    assert W_t.grad is not None and b_t.grad is not None
    return value.item(), W_t.grad.numpy(), b_t.grad.numpy()


def train(
    config: RunConfig,
    X: SparseData | Iterable[SparseData],
    W0: NDArray[np.floating],
    b0: NDArray[np.floating],
    *,
    on_steps: Callable[[int], None] | None = None,
    on_snapshot: SnapshotCallback | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Train from (W0, b0) on ``X`` with torch.optim.AdamW for ``config.steps`` steps.

    ``X`` is the fixed training set, or (T = infinity) an iterable of one batch per step.
    Returns the final (W, b). Raises ``Diverged`` if the loss stops being finite. The loss is
    ``config.loss_reduction``'s itself, so with "mean" this is the oracle of the paper's
    procedure (docs/experiment.md section 9).
    ``on_steps(k)`` (if given) is called every ``PROGRESS_EVERY`` steps and at the end;
    ``on_snapshot(step, W, b)`` (if given) with copies of W and b at every step of
    ``trainer.snapshot_steps(config)`` (needs ``config.snapshot_every > 0``).
    """
    snapshots = snapshot_plan(config, on_snapshot)
    dtype = model.TORCH_DTYPES[config.dtype]
    fixed = dense(X, config.dtype) if isinstance(X, SparseData) else None
    stream = iter(()) if isinstance(X, SparseData) else iter(X)
    W = torch.nn.Parameter(torch.tensor(W0, dtype=dtype))
    b = torch.nn.Parameter(torch.tensor(b0, dtype=dtype))
    groups = [
        {"params": [W], "weight_decay": config.weight_decay},
        {"params": [b], "weight_decay": config.weight_decay if config.decay_bias else 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps
    )
    if on_snapshot is not None:
        on_snapshot(0, _numpy(W), _numpy(b))
    for step, lr in enumerate(learning_rates(config)):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.zero_grad(set_to_none=True)
        X_t = fixed if fixed is not None else dense(next(stream), config.dtype)
        value = model.loss(W, b, X_t, config.loss_reduction)
        current = value.item()
        if not math.isfinite(current):
            raise Diverged(f"loss is {current} at step {step}")
        value.backward()
        optimizer.step()
        if on_steps is not None and (step + 1) % PROGRESS_EVERY == 0:
            on_steps(PROGRESS_EVERY)
        if on_snapshot is not None and step + 1 in snapshots:
            on_snapshot(step + 1, _numpy(W), _numpy(b))
    if on_steps is not None and config.steps % PROGRESS_EVERY:
        on_steps(config.steps % PROGRESS_EVERY)
    return _numpy(W), _numpy(b)


def _numpy(param: torch.Tensor) -> NDArray[np.floating]:
    """A numpy copy of a parameter's current value."""
    return param.detach().numpy().copy()

"""The contract every training engine keeps, and the pieces of it that all engines share.

An engine is a ``Trainer``: ``train(config, X, W0, b0, *, on_steps, on_snapshot) -> (W, b)``
trains from (W0 (n_hidden, n_features), b0 (n_features,)) for ``config.steps`` AdamW steps on
``X``, the fixed training set, or (T = infinity) an iterable of one fresh batch per step. It
raises ``Diverged`` when the loss stops being finite, calls ``on_steps(k)`` now and then with
the number of steps just done, and ``on_snapshot(step, W, b)`` with copies of W and b after
every step of ``snapshot_steps(config)``. The trained numbers depend on neither callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from toyrelu.core.config import RunConfig
    from toyrelu.core.data import SparseData

# on_snapshot(step, W (n_hidden, n_features), b (n_features,)): W and b after ``step`` steps
SnapshotCallback = Callable[[int, NDArray[np.floating], NDArray[np.floating]], None]
# (step, W (n_hidden, n_features), b (n_features,)) after that many training steps
Snapshot = tuple[int, NDArray[np.floating], NDArray[np.floating]]


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which step."""


class Trainer(Protocol):
    """What ``runs.training`` calls for a config's ``engine`` (see the module's docstring)."""

    def __call__(
        self,
        config: RunConfig,
        X: SparseData | Iterable[SparseData],
        W0: NDArray[np.floating],
        b0: NDArray[np.floating],
        *,
        on_steps: Callable[[int], None] | None = None,
        on_snapshot: SnapshotCallback | None = None,
    ) -> tuple[NDArray[np.floating], NDArray[np.floating]]: ...


def flush_denormals() -> None:
    """Flush denormal floats to zero (FTZ/DAZ) in the calling thread.

    Adam moments of features whose gradient has died decay into the denormal range after a few
    hundred steps, and every operation on them is then 10-100x slower (docs/engines.md). The
    flags are per thread and a new thread copies them from its creator, so this runs before the
    first parallel region starts numba's thread pool.
    """
    import torch

    torch.set_flush_denormal(True)


def loss_scale(reduction: str, n_examples: int, n_features: int) -> float:
    """Factor turning a summed squared error into the loss (docs/experiment.md, the model):
    averaged over examples, and over features too with ``reduction="mean"``."""
    per_feature = n_features if reduction == "mean" else 1
    return 1.0 / (max(n_examples, 1) * per_feature)


def snapshot_steps(config: RunConfig) -> NDArray[np.int64]:
    """Steps after which a run with ``snapshot_every = K`` keeps W and b: 0, K, 2K, ... and the
    last step, ``ceil(steps / K) + 1`` of them; none when K is 0."""
    K = config.snapshot_every
    if K == 0:
        return np.zeros(0, dtype=np.int64)
    return np.append(np.arange(0, config.steps, K, dtype=np.int64), config.steps)


def snapshot_plan(config: RunConfig, on_snapshot: SnapshotCallback | None) -> set[int]:
    """The steps after which a trainer calls ``on_snapshot`` (none without a callback); a
    callback for a config with ``snapshot_every = 0`` is an error."""
    if on_snapshot is None:
        return set()
    if config.snapshot_every == 0:
        raise ValueError("on_snapshot: needs config.snapshot_every > 0")
    return set(snapshot_steps(config).tolist())

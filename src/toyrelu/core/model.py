"""The ReLU-output toy model (docs/experiment.md, section 1): h = W x, x' = ReLU(W^T h + b), tied W.

Plain, dense PyTorch: this is the definition that every faster engine is checked against.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray

from toyrelu.core.config import RunConfig
from toyrelu.core.data import Stream, rng

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def init_params(config: RunConfig) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Initial ``W`` (n_hidden, n_features), Xavier-uniform, and ``b`` (n_features,).

    Xavier-uniform on the (m, n) matrix draws from U(-a, a) with a = sqrt(6 / (m + n)), as
    ``torch.nn.init.xavier_uniform_`` does. ``b`` is zeros, or N(0, 1) with ``bias_init="normal"``.
    Both come from the init stream of ``config.seed`` and ``config.restart``, so they do not
    depend on T.
    """
    generator = rng(config.seed, Stream.INIT, config.restart)
    bound = math.sqrt(6.0 / (config.n_hidden + config.n_features))
    W = generator.uniform(-bound, bound, size=(config.n_hidden, config.n_features))
    if config.bias_init == "normal":
        b = generator.standard_normal(config.n_features)
    else:
        b = np.zeros(config.n_features)
    return W.astype(config.dtype), b.astype(config.dtype)


def forward(
    W: torch.Tensor,  # (n_hidden, n_features)
    b: torch.Tensor,  # (n_features,)
    X: torch.Tensor,  # (batch, n_features)
) -> torch.Tensor:
    """Reconstruction x' = ReLU(W^T W x + b) for every row of ``X``: (batch, n_features)."""
    H = X @ W.T
    return torch.relu(H @ W + b)


def loss(
    W: torch.Tensor,
    b: torch.Tensor,
    X: torch.Tensor,
    reduction: str = "sum",
) -> torch.Tensor:
    """Squared error summed (or averaged) over features and averaged over examples.

    With ``reduction="sum"`` and unit-norm inputs, predicting zero gives exactly 1.0
    (docs/experiment.md, section 1). ``"mean"`` is most likely the paper's training loss; Adam
    with eps e trains on it as on the sum with eps n_features x e (section 9).
    """
    per_example = ((forward(W, b, X) - X) ** 2).sum(dim=1)
    if reduction == "mean":
        per_example = per_example / X.shape[1]
    return per_example.mean()

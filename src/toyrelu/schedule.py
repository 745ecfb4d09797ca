"""Learning-rate schedules (PAPER.md section 3), one value per step, shared by every engine."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from toyrelu.config import RunConfig


def learning_rates(config: RunConfig) -> NDArray[np.float64]:
    """(steps,) learning rate used at each step.

    Linear warmup from 0 over ``config.warmup`` steps (lr * s / warmup at step s), then either a
    cosine decay from the peak that reaches exactly 0 at the last step ("cosine"), or the peak
    ("constant"). A cosine phase needs two steps to go from peak to 0: with warmup_steps of
    steps - 1 the only step after warmup runs at the peak.
    """
    steps = np.arange(config.steps, dtype=np.float64)
    warmup = config.warmup
    lrs = np.full(config.steps, config.lr, dtype=np.float64)
    if warmup > 0:
        lrs[:warmup] = config.lr * steps[:warmup] / warmup
    if config.schedule == "cosine":
        decay = steps[warmup:] - warmup
        span = max(config.steps - 1 - warmup, 1)
        lrs[warmup:] = config.lr * 0.5 * (1.0 + np.cos(np.pi * decay / span))
    return lrs

"""Learning-rate schedules (docs/experiment.md, section 3): one value per step, shared by every
engine."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from toyrelu.core.config import RunConfig


def learning_rates(config: RunConfig) -> NDArray[np.float64]:
    """(steps,) learning rate used at each step.

    Linear warmup from 0 over ``config.warmup`` steps (lr * s / warmup at step s), then, over
    the progress p from 0 (first step after warmup) to 1 (last step): a cosine decay
    lr (1 + cos(pi p)) / 2 ("cosine"), a quarter cosine lr cos(pi p / 2) ("quarter_cosine"),
    both exactly 0 at the last step, or the peak ("constant", warmup only). A decay needs two
    steps to go from peak to 0: with warmup_steps of steps - 1 the only step after warmup runs
    at the peak.
    """
    steps = np.arange(config.steps, dtype=np.float64)
    warmup = config.warmup
    lrs = np.full(config.steps, config.lr, dtype=np.float64)
    if warmup > 0:
        lrs[:warmup] = config.lr * steps[:warmup] / warmup
    progress = (steps[warmup:] - warmup) / max(config.steps - 1 - warmup, 1)
    if config.schedule == "cosine":
        lrs[warmup:] = config.lr * 0.5 * (1.0 + np.cos(np.pi * progress))
    elif config.schedule == "quarter_cosine":
        # sin of the complement is exactly 0 at the end, where cos(pi / 2) is not.
        lrs[warmup:] = config.lr * np.sin(0.5 * np.pi * (1.0 - progress))
    return lrs

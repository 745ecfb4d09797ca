"""AdamW's scalars for every step of a batch, computed once on the host in float64.

The update kernel (``toyrelu.engines.gpu.kernels.update``) reads step s's value of each field
and rounds it to the working precision, as ``engines.cpu.drivers.adamw`` does on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from toyrelu.core.config import RunConfig
from toyrelu.core.schedule import learning_rates


@dataclass(frozen=True)
class AdamWSteps:
    """Per-step AdamW scalars of one batch, each a (steps,) float64 tensor on the device.

    For step s (1-based) at learning rate lr_s: ``step_size`` lr_s / (1 - beta1^s),
    ``root_bias2`` sqrt(1 - beta2^s), ``decay_W`` and ``decay_b`` 1 - lr_s times the weight
    decay of W and of b, ``one_minus_beta1``, ``beta2``, ``one_minus_beta2`` and ``eps``.
    The update kernel takes them as arguments of the same names.
    """

    step_size: torch.Tensor
    root_bias2: torch.Tensor
    decay_W: torch.Tensor
    decay_b: torch.Tensor
    one_minus_beta1: torch.Tensor
    beta2: torch.Tensor
    one_minus_beta2: torch.Tensor
    eps: torch.Tensor

    def kernel_args(self) -> dict[str, torch.Tensor]:
        """The fields by name, as the update kernel takes them."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def unused(cls, placeholder: torch.Tensor) -> AdamWSteps:
        """Stand-ins for a launch that only computes the gradient (and reads none of them)."""
        return cls(*(placeholder for _ in fields(cls)))


def adamw_steps(config: RunConfig, device: torch.device) -> AdamWSteps:
    """The scalars of every step of ``config``'s schedule, computed in float64 as
    ``engines.cpu.drivers.adamw`` computes them."""
    wd_b = config.weight_decay if config.decay_bias else 0.0
    lrs = learning_rates(config).tolist()
    steps = range(1, len(lrs) + 1)
    columns = (
        [lr / (1.0 - config.beta1**s) for s, lr in zip(steps, lrs, strict=True)],
        [math.sqrt(1.0 - config.beta2**s) for s in steps],
        [1.0 - lr * config.weight_decay for lr in lrs],
        [1.0 - lr * wd_b for lr in lrs],
        [1.0 - config.beta1] * len(lrs),
        [config.beta2] * len(lrs),
        [1.0 - config.beta2] * len(lrs),
        [config.eps] * len(lrs),
    )
    return AdamWSteps(*(torch.tensor(column, dtype=torch.float64, device=device)
                        for column in columns))

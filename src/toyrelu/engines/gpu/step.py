"""One training step of a GPU batch: the split-cell step (``toyrelu.engines.gpu.split``) where
it takes the step, else the dense passes (``toyrelu.engines.gpu.passes``); then the update
(``toyrelu.engines.gpu.update``) on what they left."""

from __future__ import annotations

import torch

from toyrelu.engines.gpu.adamw import AdamWSteps
from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.feed import DeviceData
from toyrelu.engines.gpu.passes import DensePasses
from toyrelu.engines.gpu.split import SplitStep
from toyrelu.engines.gpu.update import Sums, gradient, update


class Step:
    """The passes of one ``Batch``: its dense passes and, with ``Blocks.cells`` on a fixed
    training set (``fixed``), its split-cell step (``split``; None otherwise)."""

    def __init__(self, batch: Batch, fixed: bool = True) -> None:
        self.batch = batch
        self.passes = DensePasses(batch)
        cells = batch.blocks.cells
        # The split-cell step groups a fixed set's examples; a streamed batch is new each step.
        self.split = SplitStep(batch, cells) if cells and fixed else None

    def sums(self, data: DeviceData, step: int) -> Sums:
        """Enqueue the passes of step ``step`` on ``data`` and return what they leave."""
        sums = self.split.sums(data, step) if self.split is not None else None
        return sums if sums is not None else self.passes.sums(data)

    def __call__(self, data: DeviceData, step: int, adamw: AdamWSteps) -> None:
        """Enqueue AdamW step ``step`` (0-based) of the batch on ``data``."""
        update(self.batch, data, self.sums(data, step), step, adamw)

    def gradient(self, data: DeviceData, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (into ``Batch.losses``) and gradient (dW (R, m, n), db (R, n)) on ``data``
        by the passes of step ``step``, the parameters left as they are."""
        return gradient(self.batch, data, self.sums(data, step))

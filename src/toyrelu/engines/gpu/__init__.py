"""The batched GPU engine: ``engine`` trains many runs at once (``train_many``); ``batch`` is
the stacked runs one set of launches steps, ``blocks`` how the kernels are tiled, ``feed``
uploads each step's examples, ``step`` takes a step: the dense passes (``passes``) or the
split-cell step (``split``, with ``cells`` its readable torch forms), then the update
(``update``, with ``adamw`` its per-step scalars). The Triton kernels are in ``kernels``.
``import toyrelu.engines.gpu`` does not import Triton: the kernels load at first use."""

from toyrelu.engines.gpu.blocks import Blocks, Cells, default_blocks
from toyrelu.engines.gpu.engine import available, batch_key, loss_and_grad, train_many

__all__ = ["Blocks", "Cells", "available", "batch_key", "default_blocks", "loss_and_grad",
           "train_many"]

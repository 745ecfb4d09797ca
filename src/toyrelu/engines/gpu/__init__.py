"""The batched GPU engine: ``engine`` trains many runs at once (``train_many``), ``batch`` is the
stacked runs of one launch, ``feed`` uploads each step's examples, ``split`` is the split-cell
step and ``cells`` its readable torch forms; the Triton kernels are in ``kernels``.
``import toyrelu.engines.gpu.engine`` does not import Triton: the kernels load at first use."""

from toyrelu.engines.gpu.engine import (
    Blocks,
    available,
    batch_key,
    default_blocks,
    loss_and_grad,
    train_many,
)
from toyrelu.engines.gpu.split import Cells

__all__ = ["Blocks", "Cells", "available", "batch_key", "default_blocks", "loss_and_grad",
           "train_many"]

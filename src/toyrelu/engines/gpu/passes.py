"""The dense passes of a GPU step (``toyrelu.engines.gpu.kernels.dense``): pass A over blocks
of examples and pass B over blocks of features, every pair of every run, into their own
buffers; they hand the update (``toyrelu.engines.gpu.update``) its ``Sums``.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

import torch

from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.blocks import dense_pass_constants
from toyrelu.engines.gpu.feed import DeviceData
from toyrelu.engines.gpu.update import Sums, corrections_buffer


@cache
def _kernels() -> ModuleType:
    """The Triton kernels, imported on first use."""
    from toyrelu.engines.gpu.kernels import dense

    return dense


class DensePasses:
    """Passes A and B of one ``Batch``, with their buffers in its slot layout: ``Ht`` (m,
    slots) and ``H`` (slots, m) the hidden vectors, ``DH`` (n_fc, slots, m) the chunks of
    dL/dh, ``L`` (n_fc, n_blocks) and ``P`` (items, m + 1, n) float64 the block losses and the
    decoder sums, and ``C`` the corrections at the nonzeros (grown to the data)."""

    def __init__(self, batch: Batch) -> None:
        dt, device, m = batch.W.dtype, batch.device, batch.m
        self.batch = batch
        self.constants = dense_pass_constants(m, batch.dtype, batch.blocks)  # MP and DOT
        self.Ht = torch.zeros(m, batch.n_slots, dtype=dt, device=device)
        self.H = torch.zeros(batch.n_slots, m, dtype=dt, device=device)
        self.DH = torch.zeros(batch.n_fc, batch.n_slots, m, dtype=dt, device=device)
        self.L = torch.zeros(batch.n_fc, max(batch.n_blocks, 1), dtype=torch.float64,
                             device=device)
        self.P = torch.zeros(batch.n_items, m + 1, batch.n, dtype=torch.float64, device=device)
        self.C = torch.zeros(0, dtype=dt, device=device)

    def sums(self, data: DeviceData) -> Sums:
        """Enqueue passes A and B on ``data`` and return what they leave for the update."""
        batch = self.batch
        bl, m, n = batch.blocks, batch.m, batch.n
        self.C = C = corrections_buffer(self.C, data)
        if batch.n_blocks:
            kernels = _kernels()
            kernels.rows_kernel[(batch.n_blocks, batch.n_fc)](
                batch.W, batch.b, data.indptr, data.indices, data.values, data.csr2csc,
                *batch.blk, batch.dead, C, self.Ht, self.H, self.DH, self.L,
                n, batch.n_slots, batch.n_blocks, batch.f_chunk,
                M=m, BE=bl.rows_BE, BF=bl.rows_BF, **self.constants, num_warps=bl.rows_warps,
                num_stages=bl.stages)
            kernels.cols_kernel[(batch.n_items, -(-n // bl.cols_BF))](
                batch.W, batch.b, self.Ht, *batch.items, batch.dead, self.P, n, batch.n_slots,
                M=m, BE=bl.cols_BE, BF=bl.cols_BF, TILE=bl.tile, **self.constants,
                num_warps=bl.cols_warps, num_stages=bl.stages)
        else:
            self.P.zero_()
        return Sums(self.P, self.L, C, self.H, self.DH, data.csc_slot, batch.run_items,
                    batch.run_blocks, max(batch.n_blocks, 1), batch.n_fc)

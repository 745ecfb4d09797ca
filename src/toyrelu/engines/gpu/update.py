"""The update launch of a GPU step (``toyrelu.engines.gpu.kernels.update``) and what it takes:
the ``Sums`` that a step's passes leave, either the dense passes'
(``toyrelu.engines.gpu.passes``) or the split-cell step's (``toyrelu.engines.gpu.split``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType

import torch

from toyrelu.engines.gpu.adamw import AdamWSteps
from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.feed import DeviceData

BL = 256  # block losses summed per iteration of the update kernel


@cache
def _kernels() -> ModuleType:
    """The Triton kernels, imported on first use (``kernels.dense`` re-exports the update)."""
    from toyrelu.engines.gpu.kernels import dense

    return dense


@dataclass(frozen=True)
class Sums:
    """What a step's passes leave for the update, all in the batch's slot layout.

    ``P`` (items, m + 1, n) float64: the decoder sums (sum_t a h_t, then sum_t a) of each item
    of rows, a run's items being ``run_items`` (R, 2). ``L`` (n_fc, n_blocks) float64: the loss
    of each block of rows in each feature chunk, a run's blocks being ``run_blocks`` (R, 2).
    ``H`` (slots, m) the hidden vectors and ``DH`` (n_fc, slots, m) the chunks of dL/dh.
    ``C`` (nnz,): the gradient-factor corrections at the nonzeros, in CSC order, and
    ``csc_slot`` (nnz,) int32 the slot of each.
    """

    P: torch.Tensor
    L: torch.Tensor
    C: torch.Tensor
    H: torch.Tensor
    DH: torch.Tensor
    csc_slot: torch.Tensor
    run_items: torch.Tensor
    run_blocks: torch.Tensor
    n_blocks: int
    n_fc: int


def corrections_buffer(C: torch.Tensor, data: DeviceData) -> torch.Tensor:
    """``C``, or a larger buffer where it cannot hold a correction for each of ``data``'s
    nonzeros (positions are global over all steps of an upload)."""
    return C if C.numel() >= data.values.numel() else torch.zeros_like(data.values)


def update(batch: Batch, data: DeviceData, sums: Sums, step: int, adamw: AdamWSteps) -> None:
    """Enqueue AdamW step ``step`` (0-based) of every live run of ``batch`` from ``sums``; a
    run whose loss is not finite is frozen instead (``Batch.dead``)."""
    _launch(batch, data, sums, step, adamw, batch.W, batch.b)


def gradient(batch: Batch, data: DeviceData, sums: Sums) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss (into ``Batch.losses``) and the gradient (dW (R, m, n), db (R, n)) of every run
    from ``sums``, the parameters left as they are."""
    GW, Gb = torch.empty_like(batch.W), torch.empty_like(batch.b)
    _launch(batch, data, sums, 0, None, GW, Gb)
    return GW, Gb


def _launch(batch: Batch, data: DeviceData, sums: Sums, step: int, adamw: AdamWSteps | None,
            GW: torch.Tensor, Gb: torch.Tensor) -> None:
    """The update kernel: AdamW into (W, b) with ``adamw``, or the gradient into (GW, Gb)."""
    blocks, m, n = batch.blocks, batch.m, batch.n
    scalars = adamw if adamw is not None else AdamWSteps.unused(batch.scale)
    _kernels().update_kernel[(batch.runs, -(-n // blocks.update_BF))](
        batch.W, batch.b, batch.mW, batch.vW, batch.mb, batch.vb,
        sums.P, sums.L, sums.C, sums.H, sums.DH,
        data.colptr, sums.csc_slot, data.csc_values, sums.run_items, sums.run_blocks,
        batch.scale, batch.dead, batch.dead_loss, batch.losses, GW, Gb,
        step, n, batch.n_slots, sums.n_blocks, sums.n_fc, **scalars.kernel_args(),
        M=m, MP=max(2, 1 << (m - 1).bit_length()), BF=blocks.update_BF, BL=BL,
        UPDATE=adamw is not None, num_warps=blocks.update_warps, enable_fp_fusion=False)

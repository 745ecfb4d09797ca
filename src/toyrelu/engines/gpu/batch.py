"""The runs that one set of launches steps: a ``Batch``.

Runs of one shape are stacked along a run axis: W (R, m, n), b (R, n) and the Adam moments
alike. Their examples sit side by side in slots: a run of T examples owns slots [slot0,
slot0 + T), each run starting at a multiple of ``ALIGN``. The work lists say which examples
(pass A) and which slots (pass B) each program of the dense passes takes; they depend on the
runs' sizes and the ``Blocks`` only, never on the data. Each run keeps its own loss scale (1/T
or 1/(T n)) and is frozen alone (``dead``) if its loss stops being finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from toyrelu.core import model
from toyrelu.core.trainer import loss_scale
from toyrelu.engines.gpu.blocks import Blocks

ALIGN = 32  # each run's rows start at a multiple of this slot: aligned, vector-loadable rows


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _int32(values: Sequence[int] | NDArray, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.int64), dtype=torch.int32, device=device)


def _ranges(bounds: NDArray, device: torch.device) -> torch.Tensor:
    """(R, 2) int32 [start, end) of each run's entries, flattened, from cumulative bounds."""
    return _int32(np.stack([bounds[:-1], bounds[1:]], 1).ravel(), device)


class Batch:
    """Runs stepped by one set of launches.

    Parameters and optimiser state, updated in place: ``W`` (R, m, n), ``b`` (R, n) and their
    Adam moments ``mW``, ``vW`` (R, m, n), ``mb``, ``vb`` (R, n). Per run: ``scale`` (R,) float64
    the loss scale, ``losses`` (R,) float64 the loss of the last step, ``dead`` (R,) int32 the
    step at which its loss stopped being finite (-1: alive) and ``dead_loss`` (R,) float64 that
    loss. Slot layout: ``slot0`` (R,) each run's first slot, ``n_slots`` all slots.

    Work lists of pass A: ``blk`` (run, row, slot, count) int32 tensors of its ``n_blocks``
    blocks of rows, and its features in ``n_fc`` chunks of ``f_chunk``. Pass B: ``items``
    (run, first slot, end slot) int32 tensors of its ``n_items`` items of rows. ``run_items``
    and ``run_blocks`` (R, 2) int32: each run's range of items and of blocks.
    """

    def __init__(self, W0s: Sequence[NDArray], b0s: Sequence[NDArray], counts: Sequence[int],
                 reduction: str, device: torch.device, blocks: Blocks) -> None:
        dtype = str(np.asarray(W0s[0]).dtype)
        dt = model.TORCH_DTYPES[dtype]
        self.device, self.blocks, self.counts, self.dtype = device, blocks, list(counts), dtype
        self.W = torch.tensor(np.stack(W0s), dtype=dt, device=device).contiguous()
        self.b = torch.tensor(np.stack(b0s), dtype=dt, device=device).contiguous()
        R, self.m, self.n = self.W.shape
        self.mW, self.vW = torch.zeros_like(self.W), torch.zeros_like(self.W)
        self.mb, self.vb = torch.zeros_like(self.b), torch.zeros_like(self.b)
        padded = [_round_up(max(T, 1), ALIGN) for T in counts]
        self.slot0 = np.concatenate([[0], np.cumsum(padded)[:-1]]).astype(np.int64)
        self.n_slots = int(sum(padded))
        self._rows_work(blocks)
        self._cols_work(blocks)
        for size in (self.n_items * (self.m + 1) * self.n, self.n_fc * self.n_slots * self.m,
                     R * self.m * self.n):
            if size >= 2**31:
                raise ValueError(f"batch too large for 32-bit offsets ({size} elements)")
        self.scale = torch.tensor([loss_scale(reduction, T, self.n) for T in counts],
                                  dtype=torch.float64, device=device)
        self.dead = torch.full((R,), -1, dtype=torch.int32, device=device)
        self.dead_loss = torch.zeros(R, dtype=torch.float64, device=device)
        self.losses = torch.zeros(R, dtype=torch.float64, device=device)

    def _rows_work(self, blocks: Blocks) -> None:
        """Pass A's blocks of ``rows_BE`` examples, and its feature chunks: the features are
        split when there are few blocks of rows, so that the launch has about
        ``blocks.programs`` programs."""
        counts, be = self.counts, blocks.rows_BE
        row0 = np.concatenate([[0], np.cumsum(counts)[:-1]])
        blk = [(r, row0[r] + i, self.slot0[r] + i, min(be, T - i))
               for r, T in enumerate(counts) for i in range(0, T, be)]
        self.n_blocks = len(blk)
        self.blk = [_int32([x[c] for x in blk], self.device) for c in range(4)]
        self.run_blocks = _ranges(np.cumsum([0] + [-(-T // be) for T in counts]), self.device)
        want = max(1, min(16, -(-blocks.programs // max(self.n_blocks, 1))))
        self.f_chunk = _round_up(-(-self.n // want), max(blocks.rows_BF, 16))
        self.n_fc = -(-self.n // self.f_chunk)

    def _cols_work(self, blocks: Blocks) -> None:
        """Pass B's items: each run's rows in items of whole tiles, enough to fill the launch."""
        counts = self.counts
        n_fb = -(-self.n // blocks.cols_BF)
        per_item = _round_up(-(-sum(counts) * n_fb // blocks.programs), blocks.tile)
        items = [(r, self.slot0[r] + i, self.slot0[r] + min(i + per_item, T))
                 for r, T in enumerate(counts) for i in range(0, max(T, 1), per_item)]
        self.n_items = len(items)
        self.items = [_int32([x[c] for x in items], self.device) for c in range(3)]
        self.run_items = _ranges(np.cumsum([0] + [max(-(-T // per_item), 1) for T in counts]),
                                 self.device)

    @property
    def runs(self) -> int:
        """R, the number of runs."""
        return int(self.W.shape[0])

    @property
    def pairs(self) -> int:
        """(example, feature) pairs per step."""
        return sum(self.counts) * self.n

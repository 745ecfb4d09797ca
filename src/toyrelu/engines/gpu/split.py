"""The GPU engine's split-cell step: a ``Batch``'s step done per (group of examples, feature)
cell, for fixed training sets, opt-in through ``Blocks.cells`` (``toyrelu.engines.gpu.blocks``).

It is the CPU split-cell step (``toyrelu.engines.cpu.cells``) on the device. Every
``Cells.regroup`` steps each run's examples are put in k-d tree order of their hidden vectors
(``toyrelu.engines.gpu.cells.KdTree``), so that each ``Cells.size`` consecutive slots of a run
are one group. Every step then

1. computes H = W x_t in that order (``hidden_kernel``);
2. bounds z over every cell (``stats_kernel``, each group's ``cells.group_stats``, then
   ``bounds_kernel`` as ``cells.classify`` does): OFF cells add nothing, ON cells collapse
   into the group's moments (as ``cells.on_sums`` gives them); the cells the bounds leave
   MIXED (listed per group, as ``cells.mixed_lists`` lists them) get the exact range of z
   (``range_kernel``, the dot products alone, as the CPU step ranges them), and only the truly
   mixed ones are worked pair by pair (``mixed_kernel``);
3. adds each feature's sums over the run's groups in a fixed order (``reduce_kernel``) and
   returns them, with the nonzeros' corrections, as the ``Sums`` that the dense engine's
   update (``toyrelu.engines.gpu.update``) takes.

The data are uploaded once, in their own order: the step reads each slot's row through
``slot_row``, and the update reads each nonzero's slot through a permuted copy of
``DeviceData.csc_slot``. Nothing is approximated: the results equal the dense passes' up to
the order of sums. At each regroup the share of pair work left is measured; above
``Cells.pairs_at_most`` the dense passes take the steps until the next regroup, as the CPU
engine does with its step (``engines.cpu.engine.PAIRS_AT_MOST``).
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

import numpy as np
import torch

from toyrelu.engines.gpu import cells as gpu_cells
from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.blocks import BOUNDS_BF, MOMENTS_BF, Cells, dot_pad
from toyrelu.engines.gpu.feed import DeviceData
from toyrelu.engines.gpu.update import Sums, corrections_buffer


@cache
def _kernels() -> tuple[ModuleType, ModuleType]:
    """The Triton kernels that work the pairs and those that decide the cells, imported on
    first use."""
    from toyrelu.engines.gpu.kernels import cell_bounds, cell_pairs

    return cell_pairs, cell_bounds


class SplitStep:
    """The split-cell step of one ``Batch`` of fixed training sets: the grouped layout of its
    slots (slot s holds the example of the batch's slot ``src[s]`` in its own layout) and the
    buffers of the step. At the last regroup, ``share`` was the share of pair work left
    (ranged pairs counted a third), ``shares`` (3,) the share of cells in each class (OFF, ON,
    MIXED) and ``bound_mixed`` that of cells the bounds alone left MIXED; ``split_steps``
    counts the steps the cells took."""

    def __init__(self, batch: Batch, cells: Cells) -> None:
        device, counts, starts = batch.device, batch.counts, batch.slot0.tolist()
        R, m, n = batch.runs, batch.m, batch.n
        self.batch, self.cells = batch, cells
        self.tree = gpu_cells.KdTree(starts, counts, cells.size, device)
        self.slot, self.count, self.run_groups = gpu_cells.groups(starts, counts, cells.size,
                                                                  device)
        self.n_groups = len(self.slot)
        if self.n_groups * n >= 2**31:
            raise ValueError(f"batch too large for 32-bit offsets ({self.n_groups * n} cells)")
        self.g_slot, self.g_count = self.slot.to(torch.int32), self.count.to(torch.int32)
        sizes = [hi - lo for lo, hi in self.run_groups]
        self.g_run = torch.tensor(np.repeat(np.arange(R), sizes), dtype=torch.int32, device=device)
        self._slot_rows()
        self.csc_slot = torch.zeros(0, dtype=torch.int32, device=device)
        self.data: DeviceData | None = None
        self._buffers()
        items = np.stack([np.arange(R), np.arange(1, R + 1)], 1).ravel()
        self.run_items = torch.tensor(items, dtype=torch.int32, device=device)
        self.run_group_ranges = torch.tensor(np.array(self.run_groups, dtype=np.int64)
                                             .reshape(-1), dtype=torch.int32, device=device)
        self.BF = cells.mixed_BF(m, batch.dtype)
        self.split_now = True
        self.share = float("nan")
        self.shares = torch.full((3,), float("nan"), dtype=torch.float64)
        self.bound_mixed = float("nan")
        self.split_steps = 0

    def _slot_rows(self) -> None:
        """Each slot's run, and its CSR row in the batch's own layout (-1: a padding slot)."""
        batch = self.batch
        base_row = np.full(batch.n_slots, -1, dtype=np.int64)
        slot_run = np.zeros(batch.n_slots, dtype=np.int32)
        row0 = np.concatenate([[0], np.cumsum(batch.counts)[:-1]]).astype(np.int64)
        for r, (s, T) in enumerate(zip(batch.slot0.tolist(), batch.counts, strict=True)):
            base_row[s:s + T] = row0[r] + np.arange(T)
            slot_run[s:s + T] = r
        self.base_row = torch.from_numpy(base_row).to(batch.device)
        self.slot_run = torch.from_numpy(slot_run).to(batch.device)
        self.src = torch.arange(batch.n_slots, device=batch.device)
        self.slot_row = self.base_row.to(torch.int32)

    def _buffers(self) -> None:
        """The step's buffers: H (slots, m), DH (1, slots, m), the group losses L (1, groups),
        the decoder sums P (R, m + 1, n), the corrections C; per group its statistics, the
        class of each of its cells, the moments A, u of its ON cells and their loss; the
        MIXED cells' sums Pc."""
        batch, device = self.batch, self.batch.device
        R, m, n, S, dt = batch.runs, batch.m, batch.n, batch.n_slots, batch.W.dtype
        G = max(self.n_groups, 1)
        self.H = torch.zeros(S, m, dtype=dt, device=device)
        self.DH = torch.zeros(1, S, m, dtype=dt, device=device)  # one feature chunk
        self.L = torch.zeros(1, G, dtype=torch.float64, device=device)
        self.P = torch.zeros(R, m + 1, n, dtype=torch.float64, device=device)
        self.C = torch.zeros(0, dtype=dt, device=device)
        self.cls = torch.zeros(G, n, dtype=torch.int8, device=device)  # OFF until bounded
        self.A = torch.zeros(G, m, m, dtype=torch.float64, device=device)
        self.u = torch.zeros(G, m, dtype=torch.float64, device=device)
        self.g_loss = torch.zeros(G, dtype=torch.float64, device=device)
        self.stats = torch.zeros(G, 4 * m + 2 + m * m, dtype=torch.float64, device=device)
        # Each group's lists of MIXED cells (the bounds', then the truly mixed and the ranged
        # ON ones) in a row of n places of its own, their lengths, and each cell's place.
        lists = 3 if self.cells.ranged else 1
        self.lists = torch.zeros(lists, G, n, dtype=torch.int32, device=device)
        self.counts = torch.zeros(lists, G, dtype=torch.int32, device=device)
        self.position = torch.zeros(G, n, dtype=torch.int32, device=device)
        self.Pc = torch.zeros(1, m + 1, dtype=dt, device=device)  # grown as needed

    def sums(self, data: DeviceData, step: int) -> Sums | None:
        """Enqueue step ``step``'s passes on ``data`` by cells and return what they leave for
        the update, or return None, having enqueued nothing that changes the runs, where the
        dense passes should take this step."""
        cells, batch = self.cells, self.batch
        regroup = step % cells.regroup == 0 or data is not self.data
        if not self.n_groups or not (regroup or self.split_now):
            return None
        k, _ = _kernels()
        k.hidden_kernel[(-(-batch.n_slots // cells.hidden_BE),)](
            batch.W, data.indptr, data.indices, data.values, self.slot_row, self.slot_run,
            self.H, batch.n, batch.n_slots, M=batch.m, BE=cells.hidden_BE)
        if regroup:
            self._regroup(data)
        self._classify()
        if regroup:
            self._measure()
            if not self.split_now:
                return None
        self._pairs(data)
        self.split_steps += 1
        return Sums(self.P, self.L, self.C, self.H, self.DH, self.csc_slot, self.run_items,
                    self.run_group_ranges, self.n_groups, 1)

    def _classify(self) -> None:
        """The class of every cell, each group's lists of MIXED cells and its ON cells'
        moments (the bounds, then with ``Cells.ranged`` the exact ranges)."""
        cells, batch, (_, c) = self.cells, self.batch, _kernels()
        m, n, stats, A, u, g_loss = batch.m, batch.n, self.stats, self.A, self.u, self.g_loss
        lists, counts, position, cls = self.lists, self.counts, self.position, self.cls
        c.stats_kernel[(self.n_groups,)](self.H, self.g_slot, self.g_count, self.g_run,
                                         batch.dead, stats, stats.shape[1], M=m, BE=cells.size)
        c.bounds_kernel[(self.n_groups,)](
            batch.W, batch.b, stats, self.g_run, batch.dead, cls, A, u, g_loss, counts[0],
            lists[0], position, n, stats.shape[1], M=m, MP=dot_pad(m), BF=BOUNDS_BF)
        if cells.ranged:
            c.range_kernel[(self.n_groups,)](
                batch.W, batch.b, self.H, self.g_slot, self.g_count, self.g_run, batch.dead,
                counts[0], lists[0], cls, position, counts[1], lists[1], counts[2], lists[2], n,
                M=m, BE=cells.size, BF=self.BF, num_warps=cells.warps)
            c.moments_kernel[(self.n_groups,)](
                batch.W, batch.b, stats, self.g_run, batch.dead, counts[2], lists[2], A, u,
                g_loss, n, stats.shape[1], M=m, MP=dot_pad(m), BF=MOMENTS_BF)

    def _kept(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each group's count and list of the cells worked pair by pair."""
        return (self.counts[1], self.lists[1]) if self.cells.ranged else (self.counts[0],
                                                                           self.lists[0])

    def _measure(self) -> None:
        """The pair work left, as a share of all pairs, and whether it is small enough for the
        cells to take the steps until the next regroup."""
        counts, cls, size = self.counts, self.cls, self.count.double()
        work = counts[0].double() @ size
        if self.cells.ranged:  # ranged pairs at a third of a pair's work, as on the CPU
            work = work / 3.0 + self._kept()[0].double() @ size
        self.share = float(work) / max(self.batch.pairs, 1)
        classes = torch.bincount(cls.reshape(-1).long(), minlength=3)
        self.shares = classes.cpu().double() / cls.numel()
        self.bound_mixed = float(counts[0].sum()) / cls.numel()
        self.split_now = self.share <= self.cells.pairs_at_most

    def _pairs(self, data: DeviceData) -> None:
        """The truly mixed cells pair by pair, with the nonzeros' corrections, then each
        feature's decoder sums over the run's groups into P."""
        cells, batch, (k, _) = self.cells, self.batch, _kernels()
        m, n = batch.m, batch.n
        kept, listed = self._kept()
        end = torch.cumsum(kept, 0, dtype=torch.int64)  # each group's cells in Pc: a prefix sum
        pc0 = end - kept
        total = int(end[-1])  # waits for the device: Pc must hold every truly mixed cell
        if total > len(self.Pc):
            self.Pc = torch.empty(total + total // 4, m + 1, dtype=self.Pc.dtype,
                                  device=batch.device)
        self.C = corrections_buffer(self.C, data)
        k.mixed_kernel[(self.n_groups,)](
            batch.W, batch.b, self.H, self.slot_row, data.indptr, data.indices, data.values,
            data.csr2csc, self.g_slot, self.g_count, self.g_run,
            batch.dead, self.A, self.u, self.g_loss, kept, listed, pc0, self.Pc, self.C,
            self.DH, self.L, n, M=m, BE=cells.size, BF=self.BF,
            num_warps=cells.warps)
        k.reduce_kernel[(batch.runs, -(-n // cells.reduce_BF))](
            batch.W, batch.b, self.stats, self.cls, self.position, self.Pc, pc0,
            self.run_group_ranges, batch.dead, self.P, n, self.stats.shape[1], M=m,
            BF=cells.reduce_BF)

    def _regroup(self, data: DeviceData) -> None:
        """Put each run's slots in k-d tree order of H (just computed in the current order):
        the layout, H itself, each slot's row and each nonzero's slot follow."""
        perm = self.tree.order(self.H)
        self.src = self.src[perm]
        self.H = self.H[perm].contiguous()
        self.slot_row = self.base_row[self.src].to(torch.int32)
        inverse = torch.empty_like(self.src)
        inverse[self.src] = torch.arange(len(self.src), device=self.src.device)
        self.csc_slot = inverse[data.csc_slot.long()].to(torch.int32)
        self.data = data

"""The GPU engine's split-cell step: a ``gpu._Group``'s step done per (group of examples,
feature) cell, for fixed training sets, opt-in through ``gpu.Blocks.cells``.

It is the CPU split-cell step (``toyrelu.cells``) on the device. Every ``Cells.regroup`` steps
each run's examples are put in k-d tree order of their hidden vectors (``gpu_cells.KdTree``),
so that each ``Cells.size`` consecutive slots of a run are one group. Every step then

1. computes H = W x_t in that order (``hidden_kernel``);
2. bounds z over every cell (``stats_kernel``, each group's ``gpu_cells.group_stats``, then
   ``bounds_kernel`` as ``gpu_cells.classify`` does): OFF cells add nothing, ON cells collapse
   into the group's moments (as ``gpu_cells.on_sums`` gives them); the cells the bounds leave
   MIXED (listed per group, as ``gpu_cells.mixed_lists`` lists them) get the exact range of z
   (``range_kernel``, the dot products alone, as the CPU step ranges them), and only the truly
   mixed ones are worked pair by pair (``mixed_kernel``);
3. adds each feature's sums over the run's groups in a fixed order (``reduce_kernel``) and
   hands them, with the nonzeros' corrections, to the dense engine's ``update_kernel``.

The data are uploaded once, in their own order: the step reads each slot's row through
``slot_row``, and the update reads each nonzero's slot through a permuted copy of
``DeviceData.csc_slot``. Nothing is approximated: the results equal the dense passes' up to
the order of sums. At each regroup the share of pair work left is measured; above
``Cells.pairs_at_most`` the dense passes take the steps until the next regroup, as the CPU
engine does with its step (``engine.PAIRS_AT_MOST``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from toyrelu.engines.gpu import cells as gpu_cells

if TYPE_CHECKING:
    from toyrelu.engines.gpu.engine import _Group
    from toyrelu.engines.gpu.feed import DeviceData


@dataclass(frozen=True)
class Cells:
    """Settings of the split-cell step. ``size``: examples per group (a power of two; 128 is
    the CPU step's choice, ``cells.GROUP``). ``BF``: mixed features per tile of the mixed pass
    (0: ``mixed_tile``'s choice for the run's m and dtype). ``reduce_BF``: features per program
    of the reduction. ``hidden_BE``: slots per program of the hidden pass. ``regroup``: steps
    between rebuilds of the grouping. ``ranged``: range z exactly over the cells the bounds
    leave MIXED (``range_kernel``), so that only truly mixed ones go pair by pair.
    ``pairs_at_most``: the largest share of pair work (ranged pairs counted a third) for which
    the split step is taken (1.0: always). ``warps``: warps of the mixed pass."""

    size: int = 128
    BF: int = 0
    reduce_BF: int = 128
    hidden_BE: int = 128
    regroup: int = 100
    ranged: bool = True
    pairs_at_most: float = 0.5
    warps: int = 8

    def __post_init__(self) -> None:
        for name in ("size", "BF", "reduce_BF", "hidden_BE"):
            value = getattr(self, name)
            if name == "BF" and value == 0:
                continue  # chosen per run by mixed_BF
            if value < 1 or value & (value - 1):
                raise ValueError(f"Cells.{name} must be a power of two, got {value}")
        if self.regroup < 1:
            raise ValueError(f"Cells.regroup must be at least 1, got {self.regroup}")
        if not 0.0 <= self.pairs_at_most <= 1.0:
            raise ValueError(f"Cells.pairs_at_most must be in [0, 1], got {self.pairs_at_most}")

    def mixed_BF(self, n_hidden: int, dtype: str) -> int:
        """Mixed features per tile of the mixed pass for runs of hidden size m in ``dtype``."""
        return self.BF or mixed_tile(n_hidden, dtype)


# Largest m -> mixed features per tile of the mixed pass (groups of 128, 8 warps), from
# compiling for sm_90 (benchmarks/compile_sm90.py): no register spills in float32 at 110-180
# registers per thread; 32 features spill from m = 8 on, 16 from m = 16 on.
MIXED_TILES = ((2, 32), (4, 16), (10, 8), (16, 4))


def mixed_tile(n_hidden: int, dtype: str) -> int:
    """Mixed features per tile (``Cells.BF`` = 0) at hidden size m: half as many in float64,
    whose values take two registers each."""
    tile = next((bf for bound, bf in MIXED_TILES if n_hidden <= bound), 2)
    return max(2, tile // 2) if dtype == "float64" else tile


BOUNDS_BF = 64  # features per tile of the bounds pass
MOMENTS_BF = 16  # features per tile of the ranged ON cells' moments (the smallest dot's K)


def dot_pad(n_hidden: int) -> int:
    """The hidden side of a dot over m: m padded to a power of two, at least 16 (the smallest
    dot). The bounds pass's float64 dot and the dense passes' dots (``gpu.Blocks.dots``)."""
    return max(16, 1 << (n_hidden - 1).bit_length())


@cache
def _kernels() -> tuple[ModuleType, ModuleType]:
    """The Triton kernels that work the pairs and those that decide the cells, imported on
    first use."""
    from toyrelu.engines.gpu.kernels import cell_bounds as gpu_cell_bounds
    from toyrelu.engines.gpu.kernels import cell_pairs as gpu_cell_kernels

    return gpu_cell_kernels, gpu_cell_bounds


class SplitStep:
    """The split-cell step of one ``gpu._Group`` of fixed training sets: the grouped layout of
    its slots (slot s holds the example of the group's slot ``src[s]`` in its own layout) and
    the buffers of the step. At the last regroup, ``share`` was the share of pair work left
    (ranged pairs counted a third), ``shares`` (3,) the share of cells in each class (OFF, ON,
    MIXED) and ``bound_mixed`` that of cells the bounds alone left MIXED; ``split_steps``
    counts the steps the cells took."""

    def __init__(self, group: _Group, cells: Cells) -> None:
        device, counts, starts = group.device, group.counts, group.slot0.tolist()
        R, m, n, S = group.W.shape[0], group.m, group.n, group.n_slots
        self.group, self.cells = group, cells
        self.tree = gpu_cells.KdTree(starts, counts, cells.size, device)
        self.slot, self.count, self.run_groups = gpu_cells.groups(starts, counts, cells.size,
                                                                  device)
        self.n_groups = len(self.slot)
        if self.n_groups * n >= 2**31:
            raise ValueError(f"batch too large for 32-bit offsets ({self.n_groups * n} cells)")
        self.g_slot, self.g_count = self.slot.to(torch.int32), self.count.to(torch.int32)
        sizes = [hi - lo for lo, hi in self.run_groups]
        self.g_run = torch.tensor(np.repeat(np.arange(R), sizes), dtype=torch.int32, device=device)
        base_row = np.full(S, -1, dtype=np.int64)
        slot_run = np.zeros(S, dtype=np.int32)
        row0 = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        for r, (s, T) in enumerate(zip(starts, counts, strict=True)):
            base_row[s:s + T] = row0[r] + np.arange(T)
            slot_run[s:s + T] = r
        self.base_row = torch.from_numpy(base_row).to(device)
        self.slot_run = torch.from_numpy(slot_run).to(device)
        self.src = torch.arange(S, device=device)
        self.slot_row = self.base_row.to(torch.int32)
        self.csc_slot = torch.zeros(0, dtype=torch.int32, device=device)
        self.data: DeviceData | None = None
        dt = group.W.dtype
        self.H = torch.zeros(S, m, dtype=dt, device=device)
        self.DH = torch.zeros(S, m, dtype=dt, device=device)
        self.L = torch.zeros(max(self.n_groups, 1), dtype=torch.float64, device=device)
        self.P = torch.zeros(R, m + 1, n, dtype=torch.float64, device=device)
        G = max(self.n_groups, 1)
        self.cls = torch.zeros(G, n, dtype=torch.int8, device=device)  # OFF until bounded
        self.A = torch.zeros(G, m, m, dtype=torch.float64, device=device)
        self.u = torch.zeros(G, m, dtype=torch.float64, device=device)
        self.g_loss = torch.zeros(G, dtype=torch.float64, device=device)
        self.stats = torch.zeros(G, 4 * m + 2 + m * m, dtype=torch.float64, device=device)
        # Each group's lists of MIXED cells (the bounds', then the truly mixed and the ranged
        # ON ones) in a row of n places of its own, their lengths, and each cell's place.
        lists = 3 if cells.ranged else 1
        self.lists = torch.zeros(lists, G, n, dtype=torch.int32, device=device)
        self.counts = torch.zeros(lists, G, dtype=torch.int32, device=device)
        self.position = torch.zeros(G, n, dtype=torch.int32, device=device)
        self.Pc = torch.zeros(1, m + 1, dtype=dt, device=device)  # grown as needed
        items = np.stack([np.arange(R), np.arange(1, R + 1)], 1).ravel()
        self.ranges = [torch.tensor(items, dtype=torch.int32, device=device),
                       torch.tensor(np.array(self.run_groups, dtype=np.int64).reshape(-1),
                                    dtype=torch.int32, device=device)]
        self.BF = cells.mixed_BF(m, str(dt).removeprefix("torch."))
        self.split_now = True
        self.share = float("nan")
        self.shares = torch.full((3,), float("nan"), dtype=torch.float64)
        self.bound_mixed = float("nan")
        self.split_steps = 0

    def step(self, data: DeviceData, step: int, hyper: torch.Tensor | None) -> bool:
        """Enqueue step ``step`` on ``data`` (as ``gpu._Group.step``) by cells and return True,
        or return False, having enqueued nothing that changes the run, where the dense passes
        should take this step."""
        cells, group = self.cells, self.group
        regroup = step % cells.regroup == 0 or data is not self.data
        if not self.n_groups or not (regroup or self.split_now):
            return False
        (k, c), m, n = _kernels(), group.m, group.n
        k.hidden_kernel[(-(-group.n_slots // cells.hidden_BE),)](
            group.W, data.indptr, data.indices, data.values, self.slot_row, self.slot_run,
            self.H, n, group.n_slots, M=m, BE=cells.hidden_BE)
        if regroup:
            self._regroup(data)
        stats, cls, A, u, g_loss = self.stats, self.cls, self.A, self.u, self.g_loss
        lists, counts, position = self.lists, self.counts, self.position
        c.stats_kernel[(self.n_groups,)](self.H, self.g_slot, self.g_count, self.g_run,
                                         group.dead, stats, stats.shape[1], M=m, BE=cells.size)
        c.bounds_kernel[(self.n_groups,)](
            group.W, group.b, stats, self.g_run, group.dead, cls, A, u, g_loss, counts[0],
            lists[0], position, n, stats.shape[1], M=m, MP=dot_pad(m), BF=BOUNDS_BF)
        if cells.ranged:
            c.range_kernel[(self.n_groups,)](
                group.W, group.b, self.H, self.g_slot, self.g_count, self.g_run, group.dead,
                counts[0], lists[0], cls, position, counts[1], lists[1], counts[2], lists[2], n,
                M=m, BE=cells.size, BF=self.BF, num_warps=cells.warps)
            c.moments_kernel[(self.n_groups,)](
                group.W, group.b, stats, self.g_run, group.dead, counts[2], lists[2], A, u,
                g_loss, n, stats.shape[1], M=m, MP=dot_pad(m), BF=MOMENTS_BF)
        kept, listed = (counts[1], lists[1]) if cells.ranged else (counts[0], lists[0])
        if regroup:  # the pair work left, as a share of all pairs
            work = counts[0].double() @ self.count.double()
            if cells.ranged:  # ranged pairs at a third of a pair's work, as on the CPU
                work = work / 3.0 + kept.double() @ self.count.double()
            self.share = float(work) / max(group.pairs, 1)
            classes = torch.bincount(cls.reshape(-1).long(), minlength=3)
            self.shares = classes.cpu().double() / cls.numel()
            self.bound_mixed = float(counts[0].sum()) / cls.numel()
            self.split_now = self.share <= cells.pairs_at_most
            if not self.split_now:
                return False
        end = torch.cumsum(kept, 0, dtype=torch.int64)  # each group's cells in Pc: a prefix sum
        pc0 = end - kept
        total = int(end[-1])  # waits for the device: Pc must hold every truly mixed cell
        if total > len(self.Pc):
            self.Pc = torch.empty(total + total // 4, m + 1, dtype=self.Pc.dtype,
                                  device=group.device)
        C = group.sparse_buffer(data)
        k.mixed_kernel[(self.n_groups,)](
            group.W, group.b, self.H, self.slot_row, data.indptr, data.indices, data.values,
            data.csr2csc, self.g_slot, self.g_count, self.g_run,
            group.dead, A, u, g_loss, kept, listed, pc0, self.Pc, C,
            self.DH, self.L, n, M=m, BE=cells.size, BF=self.BF,
            num_warps=cells.warps)
        k.reduce_kernel[(group.W.shape[0], -(-n // cells.reduce_BF))](
            group.W, group.b, stats, cls, position, self.Pc, pc0, self.ranges[1], group.dead,
            self.P, n, stats.shape[1], M=m, BF=cells.reduce_BF)
        group.update(data, step, hyper, self.P, self.L, self.H, self.DH, self.csc_slot,
                     self.ranges, self.n_groups, 1)
        self.split_steps += 1
        return True

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

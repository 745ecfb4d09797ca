"""Cells of the GPU engine's batch: examples grouped by their hidden vectors, and each (group,
feature) cell classified from the group's ball and box, on the device in torch.

This is the grouping and the bounds of the CPU split-cell step (``toyrelu.engines.cpu.cells``:
same k-d tree, same statistics, same bounds), batched over every run of a ``Batch``
(``toyrelu.engines.gpu.batch``) at once, so that a GPU step can do per-pair work only in the
mixed cells (docs/engines.md, "Beyond the dense limit: the split-cell step", measures how few
they are on trained runs).

A batch lays its runs' examples in slots: run r owns slots [starts[r], starts[r] + counts[r]).
``KdTree`` fixes the tree's cuts from the counts alone (they depend on no data) and
``KdTree.order`` sorts each node along its widest dimension, level by level for all runs at
once; ``group_stats`` and ``classify`` then work on groups of consecutive slots. Nothing here
needs Triton.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

OFF, ON, MIXED = 0, 1, 2  # cell classes: no z > 0, every z > 0, either


class KdTree:
    """The balanced k-d tree of the CPU step (``toyrelu.engines.cpu.cells.kd_groups``) over each
    run's slots: a node of more than ``size`` slots is cut at a multiple of ``size`` from its start
    (half its groups, rounded down, on the left), so each run of ``size`` consecutive slots of a run
    (the last may be shorter) is a leaf. The cuts depend only on the counts; ``order`` sorts by
    data."""

    def __init__(self, starts: Sequence[int], counts: Sequence[int], size: int,
                 device: torch.device | str) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        lo = np.array([0 for T in counts if T > 0], dtype=np.int64)
        hi = np.array([T for T in counts if T > 0], dtype=np.int64)
        self.positions = torch.from_numpy(np.concatenate(
            [np.arange(s, s + T) for s, T in zip(starts, counts, strict=True) if T > 0]
            or [np.zeros(0, np.int64)]).astype(np.int64)).to(device)
        offsets = np.concatenate([[0], np.cumsum(hi)[:-1]]).astype(np.int64)
        lo, hi = lo + offsets, hi + offsets  # node ranges over the concatenated positions
        # levels: (size of each node, which nodes are cut at this level); the node of each
        # position is rebuilt from the sizes when needed, so that the tree keeps O(nodes)
        self.levels: list[tuple[torch.Tensor, torch.Tensor]] = []
        while len(hi) and (hi - lo > size).any():
            cut = hi - lo > size
            self.levels.append((torch.from_numpy(hi - lo).to(device),
                                torch.from_numpy(cut).to(device)))
            mid = lo + (hi - lo + size - 1) // size // 2 * size
            lo = np.where(cut[:, None], np.stack([lo, mid], 1), np.stack([lo, hi], 1))
            hi = np.where(cut[:, None], np.stack([mid, hi], 1), np.stack([hi, hi], 1))
            keep = hi > lo
            lo, hi = lo[keep], hi[keep]

    def order(self, H: torch.Tensor) -> torch.Tensor:
        """The slots in tree order: ``perm`` (n_slots,) int64 such that slot s of the grouped
        layout holds the example of slot perm[s] of H (n_slots, n_hidden); slots outside every
        run stay where they are. Each cut node is sorted along its widest dimension (the first
        of equal widths) before its children are cut, as the CPU step's
        ``toyrelu.engines.cpu.cells.kd_groups`` does."""
        perm = torch.arange(H.shape[0], device=H.device)
        at = self.positions.clone()  # current source slot of each position
        m = H.shape[1]
        for sizes, cut in self.levels:
            n_nodes = len(sizes)
            node = torch.repeat_interleave(torch.arange(n_nodes, device=H.device), sizes,
                                           output_size=len(at))
            Hp = H[at]
            low = torch.full((n_nodes, m), torch.inf, dtype=H.dtype, device=H.device)
            high = torch.full((n_nodes, m), -torch.inf, dtype=H.dtype, device=H.device)
            index = node[:, None].expand(-1, m)
            low = low.scatter_reduce(0, index, Hp, "amin")
            high = high.scatter_reduce(0, index, Hp, "amax")
            widest = torch.argmax(high - low, dim=1)
            key = Hp.gather(1, widest[node][:, None])[:, 0]
            key = torch.where(cut[node], key, torch.zeros_like(key))  # leaves keep their order
            by_key = torch.argsort(key, stable=True)
            by_node = by_key[torch.argsort(node[by_key], stable=True)]
            at = at[by_node]
        perm[self.positions] = at
        return perm


def groups(starts: Sequence[int], counts: Sequence[int], size: int,
           device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The groups of a batch whose run r owns slots [starts[r], starts[r] + counts[r]): each
    run's slots cut into runs of ``size`` (the last may be shorter). Returns each group's first
    slot and size (int64 tensors) and, per run, the range of its groups."""
    slot: list[int] = []
    count: list[int] = []
    run_blocks = []
    for s, T in zip(starts, counts, strict=True):
        lo = len(slot)
        slot.extend(range(s, s + T, size))
        count.extend(min(size, T - i) for i in range(0, T, size))
        run_blocks.append((lo, len(slot)))
    return (torch.tensor(slot, dtype=torch.int64, device=device),
            torch.tensor(count, dtype=torch.int64, device=device), run_blocks)


def _group_slots(slot: torch.Tensor, count: torch.Tensor,
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the ``size`` places of each group hold an example, (groups, size) bool, and
    the slot of each place, (groups, size) int64 (past the group's end where not valid)."""
    e = torch.arange(size, device=slot.device)
    return e[None, :] < count[:, None].long(), slot[:, None].long() + e[None, :]


def group_stats(H: torch.Tensor, slot: torch.Tensor, count: torch.Tensor,
                size: int) -> torch.Tensor:
    """Float64 statistics of each group g of slots [slot[g], slot[g] + count[g]) of H (n_slots,
    n_hidden), one row each, laid out as the CPU step keeps them
    (``toyrelu.engines.cpu.cell_drivers.group_stats``), then S2: the mean (m), box centre
    (m), box half-widths (m), S1 = sum h (m), ball radius (the farthest h from the mean),
    size, then S2 = sum h h^T (m * m, row-major)."""
    m = H.shape[1]
    valid, rows = _group_slots(slot, count, size)
    Hg = torch.where(valid[:, :, None], H[rows.clamp(max=H.shape[0] - 1)].double(), 0.0)
    n = count.double().clamp(min=1.0)[:, None]
    S1 = Hg.sum(1)
    mean = S1 / n
    box_lo = torch.where(valid[:, :, None], Hg, torch.inf).amin(1)
    box_hi = torch.where(valid[:, :, None], Hg, -torch.inf).amax(1)
    dist = torch.where(valid, (Hg - mean[:, None, :]).square().sum(2), 0.0)
    radius = dist.amax(1).sqrt()[:, None]
    S2 = torch.einsum("gtk,gtl->gkl", Hg, Hg).reshape(-1, m * m)
    return torch.cat([mean, 0.5 * (box_lo + box_hi), 0.5 * (box_hi - box_lo), S1, radius,
                      count.double()[:, None], S2], 1)


def classify(W: torch.Tensor, b: torch.Tensor, stats: torch.Tensor,
             run_blocks: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Class (``OFF``, ``ON`` or ``MIXED``, int8) of every cell: (groups, n_features).

    ``W`` (R, n_hidden, n_features) and ``b`` (R, n_features) hold each run's parameters;
    run r's groups are rows [run_blocks[r][0], run_blocks[r][1]) of ``stats``
    (``group_stats``). In float64, z = b_i + h . W_i over a group lies in the ball bound
    b_i + c . W_i -/+ radius |W_i| and in the box bound b_i + centre . W_i -/+ half . |W_i|;
    a cell is ON if the tighter lower bound is positive, OFF if the upper one is not, as in
    ``cells``. A pair that rounding puts on the wrong side has z within rounding of 0.
    """
    m = W.shape[1]
    out = torch.empty(stats.shape[0], W.shape[2], dtype=torch.int8, device=W.device)
    for r, (lo, hi) in enumerate(run_blocks):
        if hi <= lo:
            continue
        Wr, br, s = W[r].double(), b[r].double(), stats[lo:hi]
        ball = br + s[:, :m] @ Wr
        reach = s[:, 4 * m:4 * m + 1] * torch.linalg.vector_norm(Wr, dim=0)
        box = br + s[:, m:2 * m] @ Wr
        side = s[:, 2 * m:3 * m] @ Wr.abs()
        low = torch.maximum(ball - reach, box - side)
        high = torch.minimum(ball + reach, box + side)
        out[lo:hi] = torch.where(low > 0.0, ON, torch.where(high > 0.0, MIXED, OFF)).to(
            torch.int8)
    return out


def ranged(W: torch.Tensor, b: torch.Tensor, H: torch.Tensor, slot: torch.Tensor,
           count: torch.Tensor, cls: torch.Tensor, run_blocks: Sequence[tuple[int, int]],
           size: int, chunk: int = 64) -> torch.Tensor:
    """``cls`` with each MIXED cell decided by the exact range of z over its group, in the
    dtype of W as the pair pass computes z: ON if every z > 0, OFF if none, else MIXED, as is
    a cell with a NaN z (the GPU step's ``range_kernel``). The arguments are those of
    ``classify``, with H (n_slots, n_hidden) and the groups (``groups``); ``chunk`` groups are
    ranged at a time."""
    out = cls.clone()
    for r, (lo, hi) in enumerate(run_blocks):
        for g0 in range(lo, hi, chunk):
            g1 = min(g0 + chunk, hi)
            valid, rows = _group_slots(slot[g0:g1], count[g0:g1], size)
            z = b[r] + H[rows.clamp(max=H.shape[0] - 1)].to(W.dtype) @ W[r]  # (g, size, n)
            nan, keep = z.isnan(), valid[:, :, None]  # a NaN z leaves its cell MIXED
            low = torch.where(keep, torch.where(nan, -torch.inf, z), torch.inf).amin(1)
            high = torch.where(keep, torch.where(nan, torch.inf, z), -torch.inf).amax(1)
            exact = torch.where(low > 0.0, ON, torch.where(high > 0.0, MIXED, OFF))
            mixed = cls[g0:g1] == MIXED
            out[g0:g1][mixed] = exact[mixed].to(torch.int8)
    return out


def on_sums(W: torch.Tensor, b: torch.Tensor, stats: torch.Tensor, cls: torch.Tensor,
            run_blocks: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The all-on cells' part of the dense sums (x taken as 0), in float64, through the groups'
    moments alone: over an ON cell a = z = b_i + h_t . W_i is linear in h, so with S1 and S2
    of the group (``group_stats``), summed over each feature's ON cells,

    - ``gb`` (R, n_features): sum a = |g| b_i + S1 . W_i;
    - ``gW`` (R, n_hidden, n_features): sum a h_t = b_i S1 + S2 W_i (the decoder's part);

    and per group, what its examples' dL/dh_t gain, u + A h_t (``dh_on``), and its loss:

    - ``A`` (groups, n_hidden, n_hidden): sum W_i W_i^T over the group's ON features;
    - ``u`` (groups, n_hidden): sum b_i W_i over them;
    - ``group_loss`` (groups,): sum a^2 over them, which is sum_i |g| b_i^2 + 2 b_i S1 . W_i +
      W_i . S2 W_i = |g| sum_i b_i^2 + 2 S1 . u + <S2, A>.

    The arguments are those of ``classify``, with its classes ``cls``.
    """
    R, m, n = W.shape
    out = {"gb": torch.zeros(R, n, dtype=torch.float64, device=W.device),
           "gW": torch.zeros(R, m, n, dtype=torch.float64, device=W.device),
           "A": torch.zeros(stats.shape[0], m, m, dtype=torch.float64, device=W.device),
           "u": torch.zeros(stats.shape[0], m, dtype=torch.float64, device=W.device),
           "group_loss": torch.zeros(stats.shape[0], dtype=torch.float64, device=W.device)}
    for r, (lo, hi) in enumerate(run_blocks):
        if hi <= lo:
            continue
        Wr, br, s = W[r].double(), b[r].double(), stats[lo:hi]
        on = (cls[lo:hi] == ON).double()  # (groups, n)
        count = on.t() @ s[:, 4 * m + 1]  # (n,) examples in each feature's ON cells
        S1 = on.t() @ s[:, 3 * m:4 * m]  # (n, m)
        S2 = (on.t() @ s[:, 4 * m + 2:]).reshape(n, m, m)
        S1w = (S1 * Wr.t()).sum(1)
        S2w = torch.einsum("ikl,li->ik", S2, Wr)  # (n, m)
        out["gb"][r] = count * br + S1w
        out["gW"][r] = (br[:, None] * S1 + S2w).t()
        A = on @ torch.einsum("ki,li->ikl", Wr, Wr).reshape(n, m * m)  # (groups, m * m)
        u = on @ (br[:, None] * Wr.t())
        out["A"][lo:hi], out["u"][lo:hi] = A.reshape(-1, m, m), u
        out["group_loss"][lo:hi] = (s[:, 4 * m + 1] * (on @ (br * br))
                                    + 2.0 * (s[:, 3 * m:4 * m] * u).sum(1)
                                    + (s[:, 4 * m + 2:] * A).sum(1))
    return out


def dh_on(sums: dict[str, torch.Tensor], H: torch.Tensor, slot: torch.Tensor,
          count: torch.Tensor, size: int) -> torch.Tensor:
    """u + A h_t (``on_sums``) for each example t of each group, as (n_slots, n_hidden)
    float64: zero outside the groups."""
    valid, rows = _group_slots(slot, count, size)
    rows = rows[valid]  # slots of every group, group by group
    group = torch.arange(len(slot), device=H.device)[:, None].expand(-1, size)[valid]
    out = torch.zeros(H.shape, dtype=torch.float64, device=H.device)
    out[rows] = sums["u"][group] + torch.einsum("tkl,tl->tk", sums["A"][group], H[rows].double())
    return out


def mixed_lists(cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The MIXED cells of ``cls`` (groups, n_features), listed per group as the GPU step's
    ``bounds_kernel`` lists them, each group in a row of its own:

    - ``count`` (groups,) int32: how many of group g's cells are MIXED;
    - ``features`` (groups, n_features) int32: row g starts with those features, in
      increasing order (-1 after them);
    - ``position`` (groups, n_features) int32: the place of cell (g, i) in row g if it is
      MIXED, else -1.
    """
    mixed = cls == MIXED
    count = mixed.sum(1, dtype=torch.int32)
    place = torch.arange(cls.shape[1], device=cls.device)
    first = torch.argsort((~mixed).to(torch.int8), dim=1, stable=True)  # MIXED ones first
    features = torch.where(place[None, :] < count[:, None], first, -1).to(torch.int32)
    position = torch.where(mixed, torch.cumsum(mixed, dim=1, dtype=torch.int32) - 1, -1)
    return count, features, position

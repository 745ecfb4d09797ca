"""Batched GPU training engine: many runs of one shape trained at once by Triton kernels.

Small runs cannot fill a GPU, so runs that share a ``batch_key`` (same n, m, dtype, steps,
schedule and optimiser settings) are stacked along a run axis: W (R, m, n), b (R, n) and the
Adam moments alike, with every run's examples side by side. Runs may differ in T, seed and data;
each keeps its own loss scale (1/T or 1/(T n)) and is frozen alone if its loss stops being finite.

A step computes the same fused quantities as the CPU engine (``toyrelu.engine``), never storing
anything of size T x n, in three launches (``toyrelu.gpu_kernels`` describes them): pass A over
blocks of examples (h_t, dL/dh_t, the loss, the exact corrections at the nonzeros), pass B over
blocks of features (the decoder sums over examples), and an update that adds the column-sorted
sparse terms and applies AdamW as torch.optim.AdamW does. All sums run in a fixed order: results
are the same bit for bit from call to call, and depend on ``Blocks`` only through rounding.
float32 runs match a float64 reference about as tightly as the CPU engine does.

``toyrelu.gpu_feed`` uploads each step's examples. ``import toyrelu.gpu`` does not import
Triton; the kernels are loaded at the first call. Without CUDA, ``TRITON_INTERPRET=1`` (set
before Triton is imported) runs them on CPU tensors with ``device="cpu"``: that is how the
tests check them.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray

from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.schedule import learning_rates
from toyrelu.core.trainer import Diverged, SnapshotCallback, loss_scale, snapshot_steps
from toyrelu.engines.gpu.feed import DeviceData, Feed, upload
from toyrelu.engines.gpu.split import Cells, SplitStep, dot_pad

ALIGN = 32  # each run's rows start at a multiple of this slot: aligned, vector-loadable rows
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# on_snapshot(run index, step, W, b) of train_many: host copies of one run's W and b
SnapshotsCallback = Callable[[int, int, NDArray[np.floating], NDArray[np.floating]], None]


def available() -> bool:
    """Whether a CUDA device and Triton are usable here."""
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def batch_key(config: RunConfig) -> tuple:
    """Configs with equal keys can be trained in one ``train_many`` call: they agree on shape,
    dtype, steps, schedule, optimiser and loss reduction, and may differ in T, seed, sparsity,
    initialisation or anything else that only changes the data or the initial parameters."""
    return (config.n_features, config.n_hidden, config.dtype, config.steps, float(config.lr),
            config.warmup, config.schedule, float(config.weight_decay), config.decay_bias,
            float(config.beta1), float(config.beta2), float(config.eps), config.loss_reduction)


@dataclass(frozen=True)
class Blocks:
    """Tile sizes (powers of two) and warps of the three kernels, and how finely to split work.

    Pass A: ``rows_BE`` examples per program (rows_BE / (32 rows_warps) per thread),
    ``rows_BF`` features per loop iteration. Pass B: ``cols_BF`` features per program
    (cols_BF / (32 cols_warps) per thread), ``cols_BE`` examples per iteration, summed in the
    working precision over ``tile`` rows. ``update_*``: the update kernel. ``programs``: pass
    A splits its features and pass B its rows until a launch has about this many programs, so
    that small batches still fill the GPU. Several examples (features) per thread let each
    broadcast load of W (h) feed several pairs. Any values give the same result up to rounding
    (they change the order of sums). ``dots``: run the dense work of passes A and B as
    tensor-core dots (``toyrelu.gpu_dots``) instead of unrolled fused multiply-adds.
    ``cells``: take the split-cell step (``toyrelu.gpu_split``) with these settings on fixed
    training sets, while it pays; None: the dense passes at every step.
    """

    rows_BE: int = 512
    rows_BF: int = 16
    rows_warps: int = 4
    cols_BE: int = 32
    cols_BF: int = 512
    cols_warps: int = 4
    tile: int = 256
    update_BF: int = 64
    update_warps: int = 2
    programs: int = 1024
    stages: int = 3
    dots: bool = False
    cells: Cells | None = None


# Largest m -> (rows_BF, examples per thread in pass A, cols_BE, features per thread in pass B),
# chosen from compiling for sm_90: the best FP share of the inner loops without register spills.
TILES = ((2, (16, 4, 32, 4)), (4, (8, 4, 16, 4)), (8, (8, 4, 8, 4)), (16, (4, 2, 4, 4)))
# Tiles of the tensor-core passes, from compiling for sm_90 (benchmarks/compile_sm90.py): no
# register spills for any m <= 16 at 126-156 registers (float32; 128 x 64 tiles spill in 4
# warps, and fit in 8 warps, as 64 x 64 in 4, only at ~255 registers per thread).
DOT_TILES: dict[str, dict[str, Any]] = {
    "float32": {"rows_BE": 128, "rows_BF": 32, "rows_warps": 8, "cols_BE": 32, "cols_BF": 128,
                "cols_warps": 8},
    "float64": {"rows_BE": 64, "rows_BF": 16, "cols_BE": 16, "cols_BF": 64},
}


def dot_precision(dtype: str) -> str:
    """The input precision of the tensor-core dots: three TF32 products in float32 (about
    float32's own precision), exact FP64 products in float64."""
    return "tf32x3" if dtype == "float32" else "ieee"


def dense_pass_constants(n_hidden: int, dtype: str, blocks: Blocks) -> dict[str, int | str]:
    """The constants passes A and B take besides their tiles: MP, the hidden side padded for
    dots (a power of two, at least 16), and DOT, the dots' input precision ("" for the FMA
    passes)."""
    return {"MP": dot_pad(n_hidden),
            "DOT": dot_precision(dtype) if blocks.dots else ""}


def default_blocks(n_hidden: int, dtype: str = "float32", dots: bool = False,
                   cells: Cells | None = None) -> Blocks:
    """Blocks for hidden size m (``TILES``): fewer features (pass A) and rows (pass B) per
    iteration as m grows, and fewer per thread in float64, so that the m-fold unrolled tiles
    stay in registers (no spills in passes A and B for m <= 16). With ``dots``, the tiles of
    the tensor-core passes (``DOT_TILES``), whose size does not depend on m up to 16. With
    ``cells``, the split-cell step (``Blocks.cells``) on fixed training sets."""
    if dots:
        return Blocks(**DOT_TILES[dtype], dots=True, cells=cells)
    rows_BF, per_row, cols_BE, per_col = next(
        (tiles for bound, tiles in TILES if n_hidden <= bound), (4, 1, 2, 1))
    if dtype == "float64":
        per_row, cols_BE, per_col = max(1, per_row // 2), max(2, cols_BE // 2), max(1, per_col // 2)
    return Blocks(rows_BE=128 * per_row, rows_BF=rows_BF, cols_BE=cols_BE, cols_BF=128 * per_col,
                  cells=cells)


@cache
def _kernels() -> ModuleType:
    """The Triton kernels, imported on first use."""
    from toyrelu.engines.gpu.kernels import dense as gpu_kernels

    return gpu_kernels


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _int32(values: Sequence[int] | NDArray, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.int64), dtype=torch.int32, device=device)


class _Group:
    """Runs stepped by one set of launches: stacked parameters, Adam moments, the fixed layout
    of their rows (a run of T examples owns slots [slot0, slot0 + T)) and the work lists."""

    def __init__(self, W0s: Sequence[NDArray], b0s: Sequence[NDArray], counts: Sequence[int],
                 reduction: str, device: torch.device, blocks: Blocks,
                 fixed: bool = True) -> None:
        dtype = str(np.asarray(W0s[0]).dtype)
        dt = TORCH_DTYPES[dtype]
        self.device, self.blocks, self.counts = device, blocks, list(counts)
        self.W = torch.tensor(np.stack(W0s), dtype=dt, device=device).contiguous()
        self.b = torch.tensor(np.stack(b0s), dtype=dt, device=device).contiguous()
        R, m, n = self.W.shape
        self.m, self.n = m, n
        self.dense = dense_pass_constants(m, dtype, blocks)  # MP and DOT of passes A and B
        self.moments = [torch.zeros_like(t) for t in (self.W, self.W, self.b, self.b)]
        padded = [_round_up(max(T, 1), ALIGN) for T in counts]
        self.slot0 = np.concatenate([[0], np.cumsum(padded)[:-1]]).astype(np.int64)
        self.n_slots = int(sum(padded))
        row0 = np.concatenate([[0], np.cumsum(counts)[:-1]])
        be = blocks.rows_BE
        blk = [(r, row0[r] + i, self.slot0[r] + i, min(be, T - i))
               for r, T in enumerate(counts) for i in range(0, T, be)]
        self.n_blocks = len(blk)
        self.blk = [_int32([x[c] for x in blk], device) for c in range(4)]
        run_blocks = np.cumsum([0] + [-(-T // be) for T in counts])
        # Pass A splits the features in chunks when there are few blocks of rows.
        want = max(1, min(16, -(-blocks.programs // max(self.n_blocks, 1))))
        self.f_chunk = _round_up(-(-n // want), max(blocks.rows_BF, 16))
        self.n_fc = -(-n // self.f_chunk)
        # Pass B splits each run's rows in items of whole tiles, enough to fill the launch.
        n_fb = -(-n // blocks.cols_BF)
        per_item = _round_up(-(-sum(counts) * n_fb // blocks.programs), blocks.tile)
        items = [(r, self.slot0[r] + i, self.slot0[r] + min(i + per_item, T))
                 for r, T in enumerate(counts) for i in range(0, max(T, 1), per_item)]
        self.n_items = len(items)
        self.items = [_int32([x[c] for x in items], device) for c in range(3)]
        run_items = np.cumsum([0] + [max(-(-T // per_item), 1) for T in counts])
        self.run_ranges = [_int32(np.stack([a[:-1], a[1:]], 1).ravel(), device)
                           for a in (run_items, run_blocks)]
        self.scale = torch.tensor([loss_scale(reduction, T, n) for T in counts],
                                  dtype=torch.float64, device=device)
        for size in (self.n_items * (m + 1) * n, self.n_fc * self.n_slots * m, R * m * n):
            if size >= 2**31:
                raise ValueError(f"batch too large for 32-bit offsets ({size} elements)")
        self.Ht = torch.zeros(m, self.n_slots, dtype=dt, device=device)
        self.H = torch.zeros(self.n_slots, m, dtype=dt, device=device)
        self.DH = torch.zeros(self.n_fc, self.n_slots, m, dtype=dt, device=device)
        self.L = torch.zeros(self.n_fc, max(self.n_blocks, 1), dtype=torch.float64, device=device)
        self.P = torch.zeros(self.n_items, m + 1, n, dtype=torch.float64, device=device)
        self.dead = torch.full((R,), -1, dtype=torch.int32, device=device)
        self.dead_loss = torch.zeros(R, dtype=torch.float64, device=device)
        self.losses = torch.zeros(R, dtype=torch.float64, device=device)
        self.C = torch.zeros(0, dtype=dt, device=device)
        # The split-cell step groups a fixed set's examples; a streamed batch is new each step.
        self.split = SplitStep(self, blocks.cells) if blocks.cells and fixed else None

    @property
    def pairs(self) -> int:
        """(example, feature) pairs per step."""
        return sum(self.counts) * self.n

    def step(self, data: DeviceData, step: int, hyper: torch.Tensor | None) -> None:
        """Enqueue one step on ``data``: AdamW step ``step`` with the scalars in ``hyper``
        (steps, 8), or with ``hyper=None`` only the loss and gradient (into GW, Gb)."""
        if self.split is not None and self.split.step(data, step, hyper):
            return
        k, bl, m, n = _kernels(), self.blocks, self.m, self.n
        C = self.sparse_buffer(data)
        if self.n_blocks:
            k.rows_kernel[(self.n_blocks, self.n_fc)](
                self.W, self.b, data.indptr, data.indices, data.values, data.csr2csc,
                *self.blk, self.dead, C, self.Ht, self.H, self.DH, self.L,
                n, self.n_slots, self.n_blocks, self.f_chunk,
                M=m, BE=bl.rows_BE, BF=bl.rows_BF, **self.dense, num_warps=bl.rows_warps,
                num_stages=bl.stages)
            k.cols_kernel[(self.n_items, -(-n // bl.cols_BF))](
                self.W, self.b, self.Ht, *self.items, self.dead, self.P, n, self.n_slots,
                M=m, BE=bl.cols_BE, BF=bl.cols_BF, TILE=bl.tile, **self.dense,
                num_warps=bl.cols_warps,
                num_stages=bl.stages)
        else:
            self.P.zero_()
        self.update(data, step, hyper, self.P, self.L, self.H, self.DH, data.csc_slot,
                    self.run_ranges, max(self.n_blocks, 1), self.n_fc)

    def sparse_buffer(self, data: DeviceData) -> torch.Tensor:
        """The buffer of the gradient-factor corrections c at ``data``'s nonzeros (CSC order)."""
        if self.C.numel() < data.values.numel():
            self.C = torch.zeros_like(data.values)
        return self.C

    def update(self, data: DeviceData, step: int, hyper: torch.Tensor | None, P: torch.Tensor,
               L: torch.Tensor, H: torch.Tensor, DH: torch.Tensor, csc_slot: torch.Tensor,
               run_ranges: Sequence[torch.Tensor], n_blocks: int, n_fc: int) -> None:
        """The update launch (``gpu_update.update_kernel``) on what a step's passes left: the
        decoder sums P (items, M + 1, n) with each run's items and blocks in ``run_ranges``,
        the block losses L (n_fc, n_blocks), H and DH (n_fc, slots, M) in the slot layout
        that ``csc_slot`` gives each nonzero, and the corrections in ``sparse_buffer``."""
        bl, m, n = self.blocks, self.m, self.n
        update = hyper is not None
        if not update:
            self.GW, self.Gb = torch.empty_like(self.W), torch.empty_like(self.b)
        _kernels().update_kernel[(self.W.shape[0], -(-n // bl.update_BF))](
            self.W, self.b, *self.moments, P, L, self.C, H, DH,
            data.colptr, csc_slot, data.csc_values, *run_ranges, self.scale,
            hyper if update else self.scale, self.dead, self.dead_loss, self.losses,
            self.W if update else self.GW, self.b if update else self.Gb,
            step, n, self.n_slots, n_blocks, n_fc,
            M=m, MP=max(2, 1 << (m - 1).bit_length()), BF=bl.update_BF, BL=256,
            UPDATE=update, num_warps=bl.update_warps, enable_fp_fusion=False)


def _hyper(config: RunConfig) -> NDArray[np.float64]:
    """(steps, 8) AdamW scalars per step, computed in float64 as ``kernels.adamw`` does: step
    size, sqrt of the second bias correction, decay factors of W and b, 1 - beta1, beta2,
    1 - beta2, eps. The kernel rounds each to the working precision."""
    wd_b = config.weight_decay if config.decay_bias else 0.0
    rows = []
    for s, lr in enumerate(learning_rates(config).tolist(), start=1):
        rows.append((lr / (1.0 - config.beta1**s), math.sqrt(1.0 - config.beta2**s),
                     1.0 - lr * config.weight_decay, 1.0 - lr * wd_b, 1.0 - config.beta1,
                     config.beta2, 1.0 - config.beta2, config.eps))
    return np.array(rows, dtype=np.float64)


def train_many(
    configs: Sequence[RunConfig],
    Xs: Sequence[SparseData | Iterable[SparseData]],
    W0s: Sequence[NDArray[np.floating]],
    b0s: Sequence[NDArray[np.floating]],
    *,
    device: torch.device | str = "cuda",
    on_steps: Callable[[int], None] | None = None,
    on_snapshot: SnapshotsCallback | Sequence[SnapshotCallback | None] | None = None,
    blocks: Blocks | None = None,
    chunk: int | None = None,
) -> list[tuple[NDArray[np.floating], NDArray[np.floating]] | Diverged]:
    """Train every run for ``steps`` AdamW steps from (W0s[i] (m, n), b0s[i] (n,)), all at once.

    All configs must share one ``batch_key``. ``Xs[i]`` is the run's fixed training set, or an
    iterable yielding one batch per step (T = infinity; each batch the same size). Returns, per
    run, the final numpy (W, b) in ``config.dtype``, or a ``Diverged`` whose message says at
    which step the loss stopped being finite (that run stops there; the others go on).
    ``on_steps(k)`` is called after every ``chunk`` steps (by default about 0.2 s of work at
    1e12 pairs per second) with the number of steps done; divergence is checked then too.
    ``on_snapshot(i, step, W, b)`` (if given) is called at every step of
    ``engine.snapshot_steps(configs[i])`` with host copies of run i's W and b (none for runs
    with ``snapshot_every = 0`` or after a run diverged); or give one ``on_snapshot(step, W,
    b)`` per run (or None), as ``engine.train`` takes. Chunks also end at snapshot steps, the
    only steps copied to the host; the results do not depend on ``chunk`` or ``on_snapshot``.
    ``device``: "cuda" (or a torch.device); "cpu" only under TRITON_INTERPRET=1.
    """
    if not configs:
        return []
    if not len(configs) == len(Xs) == len(W0s) == len(b0s):
        raise ValueError("configs, Xs, W0s and b0s must have one entry per run")
    key = batch_key(configs[0])
    if any(batch_key(c) != key for c in configs):
        raise ValueError("train_many: every config must have the same batch_key")
    config, device = configs[0], torch.device(device)
    blocks = blocks or default_blocks(config.n_hidden, config.dtype)
    dtype = config.dtype
    fixed = [i for i, X in enumerate(Xs) if isinstance(X, SparseData)]
    streamed = [i for i, X in enumerate(Xs) if not isinstance(X, SparseData)]
    parts: list[tuple[list[int], _Group, Feed]] = []
    for members in (fixed, streamed):
        if members:
            sources = [X if isinstance(X := Xs[i], SparseData) else iter(X) for i in members]
            feed = Feed(sources, dtype, config.steps)  # type: ignore[arg-type]
            group = _Group([np.asarray(W0s[i], dtype) for i in members],
                           [np.asarray(b0s[i], dtype) for i in members], feed.counts,
                           config.loss_reduction, device, blocks, fixed=members is fixed)
            parts.append((members, group, feed))
    hyper = torch.from_numpy(_hyper(config)).to(device)
    if chunk is None:
        pairs = sum(group.pairs for _, group, _ in parts)
        chunk = int(min(1000, max(1, 2e11 / max(pairs, 1))))
    plans = _snapshot_plans(configs, on_snapshot)
    _snapshot(parts, plans, 0)
    done = 0
    for hi in sorted({*range(chunk, config.steps, chunk), config.steps,
                      *(s for steps, _ in plans for s in steps)} - {0}):
        for s in range(done, hi):
            for _, group, feed in parts:
                group.step(feed.data(group, s), s, hyper)
        if on_steps is not None:
            on_steps(hi - done)
        done = hi
        _snapshot(parts, plans, hi)
        if all(bool((group.dead >= 0).all()) for _, group, _ in parts):
            if on_steps is not None and done < config.steps:
                on_steps(config.steps - done)
            break
    results: list[tuple[NDArray[np.floating], NDArray[np.floating]] | Diverged] = [
        Diverged("not trained")] * len(configs)
    for members, group, _ in parts:
        dead, dead_loss = group.dead.cpu().numpy(), group.dead_loss.cpu().numpy()
        W, b = group.W.cpu().numpy(), group.b.cpu().numpy()
        for r, i in enumerate(members):
            results[i] = (Diverged(f"loss is {float(dead_loss[r])} at step {int(dead[r])}")
                          if dead[r] >= 0 else (W[r].copy(), b[r].copy()))
    return results


def _snapshot_plans(configs: Sequence[RunConfig],
                    on_snapshot: SnapshotsCallback | Sequence[SnapshotCallback | None] | None,
                    ) -> list[tuple[set[int], SnapshotCallback | None]]:
    """Per run, the steps of ``engine.snapshot_steps`` and its callback (none without one)."""
    if on_snapshot is None or callable(on_snapshot):
        every = cast(SnapshotsCallback | None, on_snapshot)
        calls: list[SnapshotCallback | None] = [
            None if every is None or c.snapshot_every == 0 else partial(every, i)
            for i, c in enumerate(configs)]
    else:
        calls = list(on_snapshot)
        if len(calls) != len(configs):
            raise ValueError("on_snapshot: one callback (or None) per run is needed")
    for i, (config, call) in enumerate(zip(configs, calls, strict=True)):
        if call is not None and config.snapshot_every == 0:
            raise ValueError(f"on_snapshot: run {i} needs config.snapshot_every > 0")
    return [(set(snapshot_steps(c).tolist()) if call is not None else set(), call)
            for c, call in zip(configs, calls, strict=True)]


def _snapshot(parts: Sequence[tuple[list[int], _Group, Feed]],
              plans: Sequence[tuple[set[int], SnapshotCallback | None]], step: int) -> None:
    """Copy W and b of the live runs that keep a snapshot at ``step`` and hand them over."""
    for members, group, _ in parts:
        rows = [r for r, i in enumerate(members) if step in plans[i][0]]
        if rows:
            index = torch.tensor(rows, device=group.device)
            dead = group.dead[index].cpu().numpy()
            W, b = group.W[index].cpu().numpy(), group.b[index].cpu().numpy()
            for j, r in enumerate(rows):
                call = plans[members[r]][1]
                if dead[j] < 0 and call is not None:
                    call(step, W[j], b[j])


def loss_and_grad(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    reduction: str = "sum",
    device: torch.device | str = "cuda",
    blocks: Blocks | None = None,
) -> tuple[float, NDArray[np.floating], NDArray[np.floating]]:
    """Loss and gradients (dW (n_hidden, n_features), db (n_features,)) of one run by the GPU
    kernels: the contract of ``engine.loss_and_grad``, for testing against the reference."""
    W = np.asarray(W)
    device = torch.device(device)
    group = _Group([W], [np.asarray(b, W.dtype)], [X.n_examples], reduction, device,
                   blocks or default_blocks(W.shape[0], str(W.dtype)))
    data = upload([[X.astype(W.dtype)]], group.slot0, W.shape[1], str(W.dtype), device)[0]
    group.step(data, 0, None)
    return float(group.losses[0]), group.GW[0].cpu().numpy(), group.Gb[0].cpu().numpy()

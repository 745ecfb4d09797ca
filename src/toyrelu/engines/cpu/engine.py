"""Fused CPU training engine: the whole AdamW run in one compiled loop, nothing T x n in memory.

Per example t and feature i the step needs z = h_t . W_i + b_i, a = ReLU(z) and three
accumulations (dL/db_i, dL/dW_i through the decoder, dL/dh_t). The dense pass treats x_t as zero
everywhere; the ~10 nonzeros of x_t then enter as exact corrections:
(a - x)^2 = a^2 - 2 a x + x^2, and dL/dz drops by 2x where z > 0. Finally dL/dh_t flows back
through the encoder into the columns of W that x_t touches. One pass over (t, i) pairs, about
(6 m + 2) flops each, compute-bound (docs/engines.md, cost model).

From CELLS_FROM examples up and below CELLS_BELOW_HIDDEN hidden dimensions, where most
(example, feature) cells of a trained run are all-on or all-off, ``train`` takes the split-cell
step of ``toyrelu.engines.cpu.cells`` instead, while it pays.

The compiled kernels live in ``toyrelu.engines.cpu.kernels`` and ``toyrelu.engines.cpu.cells``;
this module is the engine's public face.
Gradients accumulate in tiles of a few hundred examples in the working precision and are flushed
into float64, which keeps float32 runs within 1e-6 of a float64 reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.schedule import learning_rates
from toyrelu.core.trainer import (
    Diverged,
    SnapshotCallback,
    flush_denormals,
    loss_scale,
    snapshot_plan,
)
from toyrelu.engines.cpu import cells, kernels

# The split-cell step (``cells``) is tried from this many examples, and kept while it works at
# most this share of the pairs one by one. Its other work (bounds, all-on cells, the gathers)
# makes it break even a little above this share, so a half keeps a margin; below CELLS_FROM
# examples whole runs do not gain. Both are tuned by benchmarks/bench_cells.py (the numbers are
# in docs/engines.md, "Tuned constants").
CELLS_FROM = 2_000
PAIRS_AT_MOST = 0.5
# From this many hidden dimensions the split-cell step is never taken by default: its bounds
# leave nearly every cell mixed there, whole runs are no faster with it, and its kernels take
# long to compile (benchmarks/bench_cells.py --n-hidden 8,16; docs/engines.md).
CELLS_BELOW_HIDDEN = 16


def takes_cells(n_examples: int, n_hidden: int) -> bool:
    """Whether ``train`` tries the split-cell step by default on a fixed training set of
    ``n_examples`` at ``n_hidden``."""
    return n_examples >= CELLS_FROM and n_hidden < CELLS_BELOW_HIDDEN


def loss_and_grad(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    reduction: str = "sum",
    split_cells: bool = False,
) -> tuple[float, NDArray[np.floating], NDArray[np.floating]]:
    """Loss and gradients (dW (n_hidden, n_features), db (n_features,)), as the reference gives;
    with ``split_cells``, by the split-cell step on examples grouped afresh (``cells``)."""
    flush_denormals()
    W = np.ascontiguousarray(W)
    X = X.astype(W.dtype)
    scale = loss_scale(reduction, X.n_examples, X.n_features)
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    if split_cells:
        Xg, H = cells.grouped(W, X)
        value = cells.module(W.shape[0]).loss_and_grad(W, b, Xg.indptr, Xg.indices, Xg.data, H,
                                                       scale, gW, gb, batch=1,
                                                       pair_share=np.zeros(1))
        return float(value), gW, gb
    threads = numba.get_num_threads()
    batch = tile_batch(threads)
    tiles_gW = np.zeros((batch, *W.shape), W.dtype)
    tiles_gb = np.zeros((batch, W.shape[1]), W.dtype)
    tiles_gWT = np.zeros((batch, W.size if kernels.takes_sparse(W.shape[0]) else 1), W.dtype)
    value = kernels.module(W.shape[0], threads > 1).loss_and_grad(
        W, b, X.indptr, X.indices, X.data, scale, gW, gb, tiles_gW, tiles_gb, tiles_gWT
    )
    return float(value), gW, gb


def default_threads(n_examples: int, n_features: int) -> int:
    """Threads for one run: all of numba's (``NUMBA_NUM_THREADS``, by default every core) once a
    step has ~1e7 (example, feature) pairs, else one, where dispatching to the pool costs about
    as much as it saves (benchmarks/bench_engine.py, its 1-thread and all-thread columns). A
    sweep's worker processes are single-threaded (``toyrelu.runs.executors``)."""
    return numba.get_num_threads() if n_examples * n_features >= 10_000_000 else 1


@contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """Run numba's parallel regions on ``threads`` threads, then restore the caller's setting."""
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def tile_batch(threads: int) -> int:
    """Row tiles per parallel region: a few per thread, so that threads finishing at different
    times still have work. Any value gives the same numbers."""
    return 4 * threads if threads > 1 else 1


def loss(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    reduction: str = "sum",
) -> float:
    """Loss of (W, b) on ``X`` without gradients, accumulated in float64 over row tiles."""
    W = np.ascontiguousarray(W)
    X = X.astype(W.dtype)
    total = kernels.module(W.shape[0]).loss_sum(W, b, X.indptr, X.indices, X.data)
    return total * loss_scale(reduction, X.n_examples, X.n_features)


@dataclass
class AdamState:
    """First and second moments of AdamW for W and b."""

    mW: NDArray[np.floating]
    vW: NDArray[np.floating]
    mb: NDArray[np.floating]
    vb: NDArray[np.floating]

    @classmethod
    def zeros(cls, W: NDArray[np.floating], b: NDArray[np.floating]) -> AdamState:
        return cls(np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b))


def train(
    config: RunConfig,
    X: SparseData | Iterable[SparseData],
    W0: NDArray[np.floating],
    b0: NDArray[np.floating],
    *,
    on_steps: Callable[[int], None] | None = None,
    on_snapshot: SnapshotCallback | None = None,
    chunk: int | None = None,
    threads: int | None = None,
    split_cells: bool | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Train from (W0, b0) on ``X`` for ``config.steps`` AdamW steps; same contract as
    ``reference.train``. ``X`` is the fixed training set, or (T = infinity) an iterable of one
    batch per step. ``on_steps(k)`` (if given) is called after every ``chunk`` steps (by
    default about a second of work) with the number of steps just done; ``on_snapshot(step,
    W, b)`` (if given) at every step of ``snapshot_steps(config)``, with copies of W and b
    after that many steps. ``threads`` share each step's row tiles (default:
    ``default_threads``). With a fixed training set, ``split_cells`` True takes the
    split-cell step (``cells``) at every step, False the fused one; by default
    (None) sets that ``takes_cells`` names take it while it pays (``_Run.advance``). The
    result depends on none of ``chunk``, ``threads`` and ``on_snapshot``. Raises ``Diverged``
    on a non-finite loss."""
    flush_denormals()
    if not isinstance(X, SparseData):
        return _train_stream(config, X, W0, b0, on_steps=on_steps, on_snapshot=on_snapshot,
                             threads=threads)
    snapshots = snapshot_plan(config, on_snapshot)
    if chunk is None:  # about a second of the fused step's work (docs/engines.md, cost model)
        chunk = int(min(1000, max(1, 5e9 / (X.n_examples * config.n_features + 1))))
    run = _Run.start(config, W0, b0, threads or default_threads(X.n_examples, config.n_features))
    X = X.astype(config.dtype)
    if split_cells or (split_cells is None and takes_cells(X.n_examples, config.n_hidden)):
        # The split-cell step reorders its own copy of the set into groups as it goes.
        run.grouped = X.copy()
        run.adaptive = split_cells is None
    # Chunks also end at every snapshot step; the kernel's steps do not care where they end.
    ends = sorted({*range(chunk, config.steps, chunk), *snapshots, config.steps} - {0})
    if on_snapshot is not None:
        on_snapshot(0, run.W.copy(), run.b.copy())
    lo = 0
    for hi in ends:
        run.advance(X, lo, hi)
        if on_steps is not None:
            on_steps(hi - lo)
        if on_snapshot is not None and hi in snapshots:
            on_snapshot(hi, run.W.copy(), run.b.copy())
        lo = hi
    return run.W, run.b


def _train_stream(
    config: RunConfig,
    batches: Iterable[SparseData],
    W0: NDArray[np.floating],
    b0: NDArray[np.floating],
    *,
    on_steps: Callable[[int], None] | None,
    on_snapshot: SnapshotCallback | None,
    threads: int | None,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """``train`` with a fresh batch every step (T = infinity): one compiled step per batch."""
    snapshots = snapshot_plan(config, on_snapshot)
    run = _Run.start(config, W0, b0,
                     threads or default_threads(config.batch_size, config.n_features))
    every = max(1, config.steps // 100)
    steps = 0
    if on_snapshot is not None:
        on_snapshot(0, run.W.copy(), run.b.copy())
    for step, X in enumerate(batches):
        if step == config.steps:
            break
        run.advance(X.astype(config.dtype), step, step + 1)
        steps += 1
        if on_steps is not None and (steps % every == 0 or steps == config.steps):
            on_steps(every if steps % every == 0 else steps % every)
        if on_snapshot is not None and steps in snapshots:
            on_snapshot(steps, run.W.copy(), run.b.copy())
    if steps < config.steps:
        raise ValueError(f"batches: {steps} batches for {config.steps} steps")
    return run.W, run.b


@dataclass
class _Run:
    """One run's parameters, AdamW state and compiled steps, between calls into the kernel."""

    config: RunConfig
    W: NDArray[np.floating]
    b: NDArray[np.floating]
    state: AdamState
    lrs: NDArray[np.float64]
    threads: int
    # The split-cell step's copy of the training set, its rows in groups, kept between calls
    # (None: the fused step throughout).
    grouped: SparseData | None = None
    # Whether each regrouping decides between the split-cell and the fused step, and which
    # one the steps until the next regrouping take.
    adaptive: bool = False
    split_now: bool = True

    @classmethod
    def start(cls, config: RunConfig, W0: NDArray[np.floating], b0: NDArray[np.floating],
              threads: int) -> _Run:
        pool = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        if threads > pool:
            raise ValueError(f"threads: {threads} must be at most NUMBA_NUM_THREADS = {pool}")
        W = np.array(W0, dtype=config.dtype, order="C")
        b = np.array(b0, dtype=config.dtype)
        return cls(config, W, b, AdamState.zeros(W, b), learning_rates(config), threads)

    def advance(self, X: SparseData, lo: int, hi: int) -> None:
        """AdamW steps [lo, hi) on ``X`` (in the run's dtype), in place; raises ``Diverged``
        at the first step whose loss is not finite, before updating.

        With a ``grouped`` copy of the set, every step at a multiple of cells.REGROUP regroups the
        examples and takes the split-cell step, which measures the share of pairs it did one
        by one; if ``adaptive``, the steps up to the next regrouping then take the split-cell
        step only where that share is at most PAIRS_AT_MOST, else the fused one. The choice
        depends on the run's state alone, never on timing, so the numbers are reproducible."""
        if self.grouped is None:
            self._steps(X, lo, hi, split=False)
            return
        step = lo
        while step < hi:
            end = min(hi, (step // cells.REGROUP + 1) * cells.REGROUP)
            if step % cells.REGROUP == 0:
                share = self._steps(X, step, step + 1, split=True)
                self.split_now = not self.adaptive or share <= PAIRS_AT_MOST
                step += 1
            if step < end:
                self._steps(X, step, end, split=self.split_now)
            step = end

    def _steps(self, X: SparseData, lo: int, hi: int, *, split: bool) -> float:
        """Steps [lo, hi) by the split-cell (``split``, on the ``grouped`` copy) or the fused
        kernels; returns the share of pairs the last step did one by one (0 when fused)."""
        c, state = self.config, self.state
        if split:
            assert self.grouped is not None
            X = self.grouped
        arguments = dict(
            W=self.W, b=self.b, indptr=X.indptr, indices=X.indices, data=X.data,
            scale=loss_scale(c.loss_reduction, X.n_examples, c.n_features),
            lrs=self.lrs, step_lo=lo, step_hi=hi,
            weight_decay_W=c.weight_decay,
            weight_decay_b=c.weight_decay if c.decay_bias else 0.0,
            beta1=c.beta1, beta2=c.beta2, eps=c.eps,
            mW=state.mW, vW=state.vW, mb=state.mb, vb=state.vb,
            batch=tile_batch(self.threads),
        )
        with _numba_threads(self.threads):
            if split:
                compiled = cells.module(c.n_hidden, self.threads > 1)
                done, value, share = compiled.run_steps(**arguments)
            else:
                done, value = kernels.module(c.n_hidden, self.threads > 1).run_steps(**arguments)
                share = 0.0
        if done < hi:
            raise Diverged(f"loss is {value} at step {done}")
        return float(share)



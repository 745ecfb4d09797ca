"""How much does the fused gradient gain by skipping the features a group leaves inactive?

From ``kernels.SPARSE_FROM`` hidden dimensions, a group of examples with at most
``kernels.SPARSE_SHARE`` of the features active for any of its rows adds the gradients of
those features alone, and the nonzeros of x read W and add dW transposed. This trains one run
(``heatmap-quick``'s settings at m = 16, T = 10,000 by default), keeps snapshots, and at each
times one fused gradient, one thread, in one process:

- sparse: the kernels as they are;
- dense: the same kernels compiled as below SPARSE_FROM: no sparse branch, and the nonzeros
  go through W and dW as they are, (m, n);
- reference: ``reference.loss_and_grad`` (dense PyTorch autograd, all its threads);

with the share of active pairs, the mean share of features active for some row of a group of
``kernels.GROUP_ROWS`` consecutive rows, and the share of groups that take the sparse branch.
``grad rel diff`` is the largest difference of each kernel's dW from the reference's, relative
to the latter's largest entry.

    PYTHONPATH=src python benchmarks/bench_sparse.py        # ~2 min
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import ModuleType

import numba
import numpy as np

from toyrelu.core import data, trainer
from toyrelu.core.data import SparseData
from toyrelu.engines import reference
from toyrelu.engines.cpu import cache, kernels
from toyrelu.runs import presets, training


def dense_module(m: int) -> ModuleType:
    """The fused kernels for hidden size m as below SPARSE_FROM: without the sparse branch
    and the transposed reads and writes at the nonzeros."""
    saved = kernels.SPARSE_FROM
    kernels.SPARSE_FROM = m + 1
    try:
        source = kernels.module_source(m)
    finally:
        kernels.SPARSE_FROM = saved
    return cache.load(f"fused_m{m}_dense", source)


def gradient_call(module: ModuleType, W: np.ndarray, b: np.ndarray,
                  X: SparseData) -> Callable[[], tuple[float, np.ndarray]]:
    """One fused loss and gradient through ``module``, with its buffers made once."""
    scale = trainer.loss_scale("sum", X.n_examples, X.n_features)  # reference's default
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    tiles = (np.zeros((1, *W.shape), W.dtype), np.zeros((1, W.shape[1]), W.dtype),
             np.zeros((1, W.size), W.dtype))

    def call() -> tuple[float, np.ndarray]:
        value = module.loss_and_grad(W, b, X.indptr, X.indices, X.data, scale, gW, gb, *tiles)
        return value, gW

    return call


def best_ms(calls: list[Callable[[], object]], repeats: int) -> list[float]:
    """The fastest of ``repeats`` calls of each, in milliseconds, after one warm-up call each;
    the calls take turns, so that a slow spell of a shared machine hits them alike."""
    times: list[list[float]] = [[] for _ in calls]
    for call in calls:
        call()
    for _ in range(repeats):
        for call, spent in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return [1e3 * min(spent) for spent in times]


def group_shares(W: np.ndarray, b: np.ndarray, X: SparseData) -> tuple[float, float, float]:
    """Active pairs; the mean share of features active for some row of a group of GROUP_ROWS
    consecutive rows (the kernels' groups, but for the ragged ends of row tiles); the share
    of groups with at most SPARSE_SHARE of them, which take the sparse branch."""
    W64 = W.astype(np.float64)
    active = X.astype(np.float64).to_dense() @ W64.T @ W64 + b > 0
    rows = kernels.GROUP_ROWS
    groups = active[: len(active) // rows * rows].reshape(-1, rows, active.shape[1])
    listed = groups.any(axis=1).mean(axis=1)
    return float(active.mean()), float(listed.mean()), float(
        (listed <= kernels.SPARSE_SHARE).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-hidden", type=int, default=kernels.SPARSE_FROM)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    preset = presets.PRESETS["heatmap-quick"]
    config = preset.base.replace(n_hidden=args.n_hidden, n_train=args.n_train, steps=args.steps,
                                 snapshot_every=args.snapshot_every)
    numba.set_num_threads(1)
    trainer.flush_denormals()
    start = time.perf_counter()
    result = training.run(config)
    print(f"trained m = {config.n_hidden}, T = {config.n_train}, n = {config.n_features}, "
          f"{config.steps} steps in {time.perf_counter() - start:.0f} s")
    X = data.train_set(config).astype(config.dtype)
    sparse, dense = kernels.module(config.n_hidden), dense_module(config.n_hidden)
    print("| step | active pairs | features active per group | groups sparse | reference ms | "
          "dense ms | sparse ms | vs dense | vs reference | grad rel diff, sparse / dense |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for step, W, b in result.snapshots:
        W, b = np.ascontiguousarray(W, config.dtype), np.asarray(b, config.dtype)
        run_sparse, run_dense = gradient_call(sparse, W, b, X), gradient_call(dense, W, b, X)
        t_sparse, t_dense, t_ref = best_ms(
            [run_sparse, run_dense, lambda W=W, b=b: reference.loss_and_grad(W, b, X)],
            args.repeats)
        ref_gW = reference.loss_and_grad(W, b, X)[1]
        diffs = [np.abs(run()[1] - ref_gW).max() / np.abs(ref_gW).max()
                 for run in (run_sparse, run_dense)]
        active, listed, groups = group_shares(W, b, X)
        print(f"| {step} | {active:.1%} | {listed:.1%} | {groups:.1%} | {t_ref:.1f} | "
              f"{t_dense:.2f} | {t_sparse:.2f} | {t_dense / t_sparse:.2f}x | "
              f"{t_ref / t_sparse:.1f}x | {diffs[0]:.1e} / {diffs[1]:.1e} |", flush=True)


if __name__ == "__main__":
    main()

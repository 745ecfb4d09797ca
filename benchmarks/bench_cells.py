"""Whole runs with the split-cell step (``toyrelu.engines.cpu.cells``) against the fused step.

For each (m, T) this trains one run twice from the same initialisation, on one thread: with
``split_cells=False`` (the fused kernels at every step) and with the default choice (split-cell
steps from CELLS_FROM examples while they do at most PAIRS_AT_MOST of the pairs one by one). It
prints the time per step of each, their ratio, the share of steps that took the split-cell
step, the share of pairs the last split-cell step did one by one, and the final training loss
of each. Both compute the same sums in other orders, so they differ by rounding only; in
float32 that grows over thousands of steps into visibly different W (as it does between the
fused engine and the reference), while the losses stay close.

    PYTHONPATH=src python benchmarks/bench_cells.py                      # reduced scale, ~25 min
    PYTHONPATH=src python benchmarks/bench_cells.py --n-features 10000 --sparsity 0.999 \\
        --n-hidden 2,4 --n-train 50000 --steps 1000                      # paper scale
"""

from __future__ import annotations

import argparse
import time

import numba
from grid import add_grid_arguments, values

from toyrelu.core import data, model
from toyrelu.core.config import RunConfig
from toyrelu.engines.cpu import engine


def timed_run(config: RunConfig, X: data.SparseData, split: bool | None) -> tuple[float, ...]:
    """(seconds, share of steps split, share of pairs the last split step did one by one, final
    loss) of one run on one thread."""
    taken: list[tuple[int, float]] = []
    original = engine._Run._steps

    def recording(self, X, lo, hi, *, split):  # noqa: ANN001
        share = original(self, X, lo, hi, split=split)
        taken.append((hi - lo if split else 0, share))
        return share

    engine._Run._steps = recording  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        W, b = engine.train(config, X, *model.init_params(config), threads=1, split_cells=split)
        seconds = time.perf_counter() - start
    finally:
        engine._Run._steps = original  # type: ignore[method-assign]
    split_steps = sum(steps for steps, _ in taken)
    last = next((share for steps, share in reversed(taken) if steps), float("nan"))
    return seconds, split_steps / config.steps, last, engine.loss(W, b, X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_grid_arguments(parser, steps=2_000, n_train="20000,50000", n_hidden="2,4,8,16")
    args = parser.parse_args()
    numba.set_num_threads(1)
    print(f"{'m':>3} {'T':>7} {'fused ms/step':>14} {'default ms/step':>16} {'speedup':>8} "
          f"{'split steps':>12} {'pairs':>6} {'loss fused':>11} {'loss default':>13}")
    for m in values(args.n_hidden):
        for T in values(args.n_train):
            config = RunConfig(n_features=args.n_features, n_hidden=m, sparsity=args.sparsity,
                               n_train=T, steps=args.steps)
            X = data.train_set(config)
            timed_run(config.replace(steps=2), X, None)  # compile both modules outside the clock
            fused, _, _, loss_fused = timed_run(config, X, False)
            default, share, pairs, loss = timed_run(config, X, None)
            print(f"{m:>3} {T:>7,} {1e3 * fused / args.steps:>14.2f} "
                  f"{1e3 * default / args.steps:>16.2f} {fused / default:>7.2f}x "
                  f"{share:>11.0%} {pairs:>6.2f} {loss_fused:>11.6f} {loss:>13.6f}", flush=True)


if __name__ == "__main__":
    main()

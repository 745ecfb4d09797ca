"""Fit the CPU cost model (``toyrelu.runs.grid.cost``, ``runs.presets.cpu_seconds``) to the run
times of stored sweeps, and check its estimates against them.

A run of the CPU engine at n_hidden = 2 takes, per step, time for its (example, feature) pairs
(the fused step's, or the split-cell step's where the engine takes it, ``engine.takes_cells``),
for the nonzeros of its training set, and for the per-feature work (AdamW, the gradient flush),
plus a fixed time per run (its data, its evaluation): the five counts of ``grid.work``, which
``grid.cost`` prices. This benchmark reads the ``wall_seconds`` every stored run records, takes
the median over the runs of each setting (seeds, procedures), and fits those five times by
least squares on the relative error. It prints them in the units
``runs/grid.py`` uses (pairs per second; the rest in pairs' worth), then each setting's measured
and estimated time, and each store's sweep time against ``cpu_seconds`` with the constants in
``runs/grid.py`` and ``runs/presets.py``.

The stores are timed sweeps of m = 2 presets at two scales, so that the nonzeros (1% of the pairs
at n = 1,000, S = 0.99; 0.1% at paper scale) and the split-cell step (from T = 2,000) separate:

    PYTHONPATH=src python -m toyrelu reproduce --preset quick --out /tmp/quick        # ~2 min
    PYTHONPATH=src python -m toyrelu reproduce --preset paper-laptop --out /tmp/pl    # ~26 min
    PYTHONPATH=src python benchmarks/bench_cost.py /tmp/quick/runs.sqlite /tmp/pl/runs.sqlite

The times are those of the sweep's workers (one single-threaded run per core), as loaded as the
machine was: the fit prices a run as sweeps take it, not as an idle core would.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import numpy as np

from toyrelu.core.config import RunConfig
from toyrelu.runs import grid
from toyrelu.runs.presets import CPU_PAIRS_PER_SECOND, cpu_seconds
from toyrelu.runs.store import Store

TERMS = grid.Work._fields


def settings(paths: list[str]) -> dict[str, list[tuple[RunConfig, float]]]:
    """Per store, its finished m = 2 runs as (config, wall seconds), each config rebuilt from
    the store's own record of it (a column of the runs table turns to floats when T = infinity
    sits among finite T)."""
    out = {}
    for path in paths:
        with Store(path, create=False, write=False) as store:
            runs = store.runs()
            ok = runs[runs["status"] == "ok"]
            timed = [(RunConfig.from_dict(store.config(run_id)), float(seconds))
                     for run_id, seconds in zip(ok["run_id"], ok["wall_seconds"], strict=True)]
        out[path] = [(config, seconds) for config, seconds in timed if config.n_hidden == 2]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stores", nargs="+", help="stores of timed m = 2 sweeps")
    parser.add_argument("--workers", type=int, default=2, help="processes the sweeps ran on")
    args = parser.parse_args()
    by_store = settings(args.stores)
    groups: dict[tuple, list[float]] = defaultdict(list)
    example: dict[tuple, RunConfig] = {}
    for runs in by_store.values():
        for config, seconds in runs:
            key = (config.n_features, config.sparsity, config.n_train, config.steps,
                   config.examples_per_step)
            groups[key].append(seconds)
            example[key] = config
    keys = sorted(groups)
    measured = np.array([statistics.median(groups[k]) for k in keys])
    A = np.array([grid.work(example[k]) for k in keys])
    used = A.any(axis=0)
    # Least squares on the relative error, so that the many short runs count as much as the few
    # long ones that hold most of a sweep's time.
    coef = np.zeros(len(TERMS))
    coef[used], *_ = np.linalg.lstsq(A[:, used] / measured[:, None], np.ones(len(keys)),
                                     rcond=None)
    pair = coef[0]
    print("fitted seconds per term:", ", ".join(f"{t} {c:.3g}" for t, c in zip(TERMS, coef,
                                                                              strict=True)))
    print(f"  pairs per second per core (fused, m = 2): {1 / pair:.3g}   "
          f"[runs/presets.py CPU_PAIRS_PER_SECOND = {CPU_PAIRS_PER_SECOND:.3g}]")
    print(f"  split-cell pair / fused pair: {coef[1] / pair:.3g}   "
          f"[runs/grid.py CELLS_WORK[2] = {grid.CELLS_WORK[2]:g}]")
    print(f"  a nonzero of X, in pairs: {coef[2] / pair:.3g}   "
          f"[NONZERO_PAIRS = {grid.NONZERO_PAIRS:g}]")
    print(f"  per feature and step, in pairs: {coef[3] / pair:.3g}   "
          f"[STEP_OVERHEAD = {grid.STEP_OVERHEAD:g}]")
    print(f"  per run, in pairs: {coef[4] / pair:.3g}   [RUN_OVERHEAD = {grid.RUN_OVERHEAD:g}]")
    print()
    print(f"{'n':>6} {'S':>6} {'T':>7} {'steps':>6} {'runs':>5} {'measured s':>11} "
          f"{'fit s':>8} {'cpu_seconds s':>14}")
    for key, seconds, row in zip(keys, measured, A, strict=True):
        config = example[key]
        print(f"{key[0]:>6} {key[1]:>6} {config.n_train:>7g} {key[3]:>6} {len(groups[key]):>5} "
              f"{seconds:>11.3g} {row @ coef:>8.3g} {cpu_seconds([config], cores=1):>14.3g}")
    print()
    for path, runs in by_store.items():
        total = sum(seconds for _, seconds in runs) / args.workers
        estimate = cpu_seconds([config for config, _ in runs], cores=args.workers)
        print(f"{path}: {len(runs)} runs, {total / 60:.1f} min of run time on {args.workers} "
              f"workers; cpu_seconds {estimate / 60:.1f} min")


if __name__ == "__main__":
    main()

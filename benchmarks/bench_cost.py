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
``runs/grid.py`` and ``runs/presets.py``. The fit takes the m = 2 runs; per n_hidden, each store's
run time is set against its estimate, and a store that holds m = 2 beside larger m gives the
speed per m (``SPEED_BY_HIDDEN``) that would price its runs as m = 2's are priced.

The stores are timed sweeps of m = 2 presets at two scales, so that the nonzeros (1% of the pairs
at n = 1,000, S = 0.99; 0.1% at paper scale) and the split-cell step (from T = 2,000) separate:

    PYTHONPATH=src python -m toyrelu reproduce --preset quick --out /tmp/quick        # ~2 min
    PYTHONPATH=src python -m toyrelu reproduce --preset paper-laptop --out /tmp/pl    # ~26 min
    PYTHONPATH=src python benchmarks/bench_cost.py /tmp/quick/runs.sqlite /tmp/pl/runs.sqlite

A sweep over m checks ``SPEED_BY_HIDDEN`` on whole runs (each sweep's load cancels in the
ratio to its own m = 2 runs), e.g. the summed-loss half of one seed of ``heatmap-quick``:

    PYTHONPATH=src python -m toyrelu sweep --preset heatmap-quick --seeds 0
        --loss-reduction sum --store /tmp/hq.sqlite                                   # ~5 min
    PYTHONPATH=src python benchmarks/bench_cost.py /tmp/hq.sqlite

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
    """Per store, its finished runs as (config, wall seconds), each config rebuilt from the
    store's own record of it (a column of the runs table turns to floats when T = infinity
    sits among finite T)."""
    out = {}
    for path in paths:
        with Store(path, create=False, write=False) as store:
            runs = store.runs()
            ok = runs[runs["status"] == "ok"]
            out[path] = [(RunConfig.from_dict(store.config(run_id)), float(seconds))
                         for run_id, seconds in zip(ok["run_id"], ok["wall_seconds"],
                                                    strict=True)]
    return out


def fit(runs: list[tuple[RunConfig, float]]) -> None:
    """Fit the m = 2 terms to the median run time of each setting of ``runs`` and print them
    beside the constants in use, then each setting's measured and estimated time."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    example: dict[tuple, RunConfig] = {}
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


def by_hidden(runs: list[tuple[RunConfig, float]]) -> None:
    """Print, per n_hidden of one store's ``runs``, their summed run time against their
    ``cpu_seconds`` on one core, and the speed (``grid.SPEED_BY_HIDDEN``) that would make the
    ratio of the two match m = 2's in the same store, where it has m = 2 runs: the sweep's load
    falls on every m alike and cancels in that ratio."""
    measured: dict[int, float] = defaultdict(float)
    estimate: dict[int, float] = defaultdict(float)
    for config, seconds in runs:
        measured[config.n_hidden] += seconds
        estimate[config.n_hidden] += cpu_seconds([config], cores=1)
    base = measured[2] / estimate[2] if 2 in measured else None
    print(f"  {'m':>3} {'runs':>5} {'measured s':>11} {'cpu_seconds s':>14} {'ratio':>6} "
          f"{'speed':>6} {'fits m = 2':>10}")
    for m in sorted(measured):
        ratio = measured[m] / estimate[m]
        speed = grid.SPEED_BY_HIDDEN.get(m, grid.SPEED_LARGE_HIDDEN)
        fits = f"{speed * base / ratio:>10.3g}" if base else f"{'':>10}"
        print(f"  {m:>3} {sum(c.n_hidden == m for c, _ in runs):>5} {measured[m]:>11.4g} "
              f"{estimate[m]:>14.4g} {ratio:>6.2f} {speed:>6.3g} {fits}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stores", nargs="+", help="stores of timed sweeps")
    parser.add_argument("--workers", type=int, default=2, help="processes the sweeps ran on")
    args = parser.parse_args()
    by_store = settings(args.stores)
    pairs = [(config, seconds) for runs in by_store.values() for config, seconds in runs
             if config.n_hidden == 2]
    if pairs:
        fit(pairs)
    for path, runs in by_store.items():
        total = sum(seconds for _, seconds in runs) / args.workers
        estimate = cpu_seconds([config for config, _ in runs], cores=args.workers)
        print(f"{path}: {len(runs)} runs, {total / 60:.1f} min of run time on {args.workers} "
              f"workers; cpu_seconds {estimate / 60:.1f} min")
        by_hidden(runs)


if __name__ == "__main__":
    main()

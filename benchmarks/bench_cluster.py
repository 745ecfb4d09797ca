"""The Ray executor against local processes, and the paper-scale GPU batches over N GPUs.

1. A 40-run reduced grid (n = 1,000, S = 0.99, m in {2, 4}, T in {100, 300, 1,000, 3,000},
   5 seeds, 3,000 steps) swept into a fresh store by ``RayCluster`` on a local Ray instance of
   ``--cpus`` CPUs and by ``LocalProcesses(--cpus)``, alternating, start-up included (Ray's
   start, the workers' start and the kernels' load). Printed: each wall time, the ratio Ray /
   local measured in this run, and whether every stored number is identical (all columns but
   ``wall_seconds``, every array bit for bit).
2. The paper-scale GPU presets (the heatmap, 440 runs; the paper's sweep; weight decay; training
   length) in ``GpuBatches.batches`` at several batch sizes (``--gpu-batch-rows``), weighed by
   ``runs.grid.cost``, placed greedily largest first on N GPUs (what the Ray executor's queue
   does: batches are submitted largest first and each free GPU takes the next): the makespan
   over the ideal total/N, for N = 2, 4, 8. Add ``--scheduling-only`` to print this part alone.

    PYTHONPATH=src python benchmarks/bench_cluster.py              # ~3-7 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_cluster.py --repeats 1 --steps 300   # a fast look
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from toyrelu.core.config import RunConfig
from toyrelu.runs.cluster_ray import RayCluster
from toyrelu.runs.executors import Executor, GpuBatches, LocalProcesses
from toyrelu.runs.grid import cost, grid, makespan
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.store import Store
from toyrelu.runs.sweep import run_sweep


def reduced_grid(steps: int) -> list[RunConfig]:
    base = RunConfig(n_features=1_000, n_hidden=2, sparsity=0.99, n_train=100, steps=steps)
    return grid(base, {"n_hidden": (2, 4), "n_train": (100, 300, 1_000, 3_000),
                       "seed": range(5)})


def timed_sweep(configs: list[RunConfig], runner: Executor, path: Path) -> float:
    start = time.perf_counter()
    with Store(path) as store:
        report = run_sweep(configs, store, runner)
    assert report.ok == len(configs), report
    return time.perf_counter() - start


def differences(a: Path, b: Path) -> tuple[int, int, int]:
    """(differing values, differing arrays, arrays compared) between two stores."""
    with Store(a, create=False) as x, Store(b, create=False) as y:
        left = x.runs().set_index("run_id").sort_index().drop(columns="wall_seconds")
        right = y.runs().set_index("run_id").sort_index().drop(columns="wall_seconds")
        same = (left == right) | (left.isna() & right.isna())
        values = int((~same).to_numpy().sum())
        arrays = compared = 0
        for run_id in left.index:
            p, q = x.arrays(run_id), y.arrays(run_id)
            for name in p.keys() | q.keys():
                compared += 1
                arrays += not (name in p and name in q and p[name].dtype == q[name].dtype
                               and np.array_equal(p[name], q[name]))
    return values, arrays, compared


SCHEDULED = ("heatmap", "paper", "weight-decay", "training-length")


def scheduling(max_rows_list: list[int]) -> None:
    print("\npaper-scale GPU presets: batches placed largest first on N GPUs (makespan / ideal)")
    print(f"{'preset':>16} {'runs':>5} {'max_rows':>10} {'batches':>8} {'largest':>8} "
          f"{'N=2':>6} {'N=4':>6} {'N=8':>6}")
    for name in SCHEDULED:
        configs = PRESETS[name].configs()
        for max_rows in max_rows_list:
            batches = GpuBatches(max_rows=max_rows).batches(configs)
            weights = [sum(cost(c) for c in b) for b in batches]
            ratios = [makespan(weights, n) for n in (2, 4, 8)]
            print(f"{name:>16} {len(configs):>5} {max_rows:>10,} {len(batches):>8} "
                  f"{max(weights) / sum(weights):>8.1%} "
                  + " ".join(f"{r:>5.2f}x" for r in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs and local processes")
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=2,
                        help="sweeps per executor, alternating which goes first")
    parser.add_argument("--max-rows", default="2000000,500000,250000,125000",
                        help="comma list of GpuBatches.max_rows for the scheduling table")
    parser.add_argument("--scheduling-only", action="store_true",
                        help="print the GPU scheduling table alone (no Ray, seconds)")
    args = parser.parse_args()
    max_rows = [int(v) for v in args.max_rows.split(",")]
    if args.scheduling_only:
        scheduling(max_rows)
        return
    configs = reduced_grid(args.steps)
    print(f"{len(configs)} runs, {args.steps:,} steps, {args.cpus} CPUs, on {os.cpu_count()} "
          "cores (start-up included)")
    executors = {"ray": lambda: RayCluster(num_cpus=args.cpus),
                 "local": lambda: LocalProcesses(args.cpus)}
    times: dict[str, list[float]] = {"ray": [], "local": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = ["ray", "local"] if repeat % 2 == 0 else ["local", "ray"]
            for name in order:
                path = Path(tmp) / f"{name}-{repeat}.sqlite"
                times[name].append(timed_sweep(configs, executors[name](), path))
                print(f"  {name:>5}: {times[name][-1]:7.1f} s", flush=True)
        values, arrays, compared = differences(Path(tmp) / "ray-0.sqlite",
                                               Path(tmp) / "local-0.sqlite")
    ray_s, local_s = min(times["ray"]), min(times["local"])
    print(f"best of {args.repeats}: ray {ray_s:.1f} s, local processes {local_s:.1f} s, "
          f"ratio ray/local {ray_s / local_s:.2f}")
    print(f"stored numbers: {values} differing values, {arrays} of {compared} arrays differ")
    scheduling(max_rows)


if __name__ == "__main__":
    main()

"""Sweep grids: every combination of some config fields around a base, and what each run costs.

``cost`` weighs runs so that sweeps start with the largest (most of a sweep's work sits in its
few largest runs) and progress bars and estimates weigh each step by its work.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from toyrelu.core.config import ConfigError, RunConfig


def grid(base: RunConfig, axes: Mapping[str, Sequence[Any]]) -> list[RunConfig]:
    """Every combination of the axis values applied to ``base`` (validated, duplicates dropped)."""
    names = list(axes)
    configs: dict[str, RunConfig] = {}
    for values in itertools.product(*(axes[name] for name in names)):
        config = base.replace(**dict(zip(names, values, strict=True)))
        configs.setdefault(config.run_id, config)
    return list(configs.values())


def once(name: str, values: Sequence[Any]) -> None:
    """Raise ConfigError naming field ``name`` if a value comes twice in ``values``: an axis
    given ``--seeds 0,0`` would train one run where the user asked for two, and a study's
    cell would count the same run twice and never look finished."""
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{name}: {value!r} is given twice (give each value once)")
        seen.add(value)


# Throughput of the CPU engine per (example, feature) pair at each n_hidden, relative to
# n_hidden = 2, so that a run's cost is its real work. m = 6, 8 and 16 are fitted to whole runs
# of a timed heatmap-quick sweep against its own m = 2 runs by benchmarks/bench_cost.py; the
# others are the kernel's speed measured by benchmarks/bench_engine.py at each m against
# m = 2, which ran fast over whole runs at m = 6 to 16 (docs/engines.md).
SPEED_BY_HIDDEN = {1: 1.0, 2: 1.0, 3: 0.73, 4: 0.56, 5: 0.44, 6: 0.31, 7: 0.36, 8: 0.19,
                   9: 0.27, 10: 0.25, 12: 0.20, 16: 0.16}
SPEED_LARGE_HIDDEN = 0.15  # the other sizes past 12: m = 16's speed with dense gradients
# What a run costs besides its pairs, in fused pairs' worth at n_hidden = 2: each nonzero of X
# per step (its correction to the fused step), each feature per step (AdamW, the gradient
# flush), and each run once (its data, its evaluation). Fitted by benchmarks/bench_cost.py to
# the run times of timed sweeps (docs/engines.md).
NONZERO_PAIRS = 63.0
STEP_OVERHEAD = 62.0
RUN_OVERHEAD = 3.5e8
# The split-cell step's time per pair relative to the fused step's, over whole runs, where the
# engine takes it (``engines.cpu.engine.takes_cells``), for m up to each key: at m = 2 fitted
# by benchmarks/bench_cost.py; m = 4 gained as much as m = 2 in benchmarks/bench_cells.py's
# whole runs and m = 8 little, so it is priced as the fused step (docs/engines.md).
CELLS_WORK = {2: 0.74, 4: 0.74, 8: 1.0}


class Work(NamedTuple):
    """What one run does, counted before it is priced: its (example, feature) pairs taken by
    the fused step and by the split-cell step, its nonzeros of X, its feature-steps (each
    feature once per step) and the run itself (1). A fresh batch per step (T = infinity) is
    counted twice, since sampling it costs about as much again as training on it."""

    fused_pairs: float
    split_pairs: float
    nonzeros: float
    feature_steps: float
    runs: float


def work(config: RunConfig) -> Work:
    """The ``Work`` of one run of ``config`` on the CPU engine, each step's pairs under the
    step the engine takes for them (``engines.cpu.engine.takes_cells``)."""
    # Imported here: the engine loads numba, which listing the presets does not need.
    from toyrelu.engines.cpu import engine

    rows = config.examples_per_step * (2 if config.infinite else 1)
    pairs = float(config.steps * rows * config.n_features)
    split = not config.infinite and engine.takes_cells(int(config.n_train), config.n_hidden)
    return Work(fused_pairs=0.0 if split else pairs, split_pairs=pairs if split else 0.0,
                nonzeros=pairs * (1.0 - config.sparsity),
                feature_steps=float(config.steps * config.n_features), runs=1.0)


def cost(config: RunConfig) -> float:
    """Relative cost of a run, in (example, feature) pairs of the fused step at n_hidden = 2:
    its ``work`` priced term by term (split-cell pairs at ``CELLS_WORK``, nonzeros of X at
    ``NONZERO_PAIRS``, feature-steps at ``STEP_OVERHEAD``, the run at ``RUN_OVERHEAD``), over
    the engine's relative speed at the run's n_hidden (``SPEED_BY_HIDDEN``)."""
    done = work(config)
    up_to = min((m for m in CELLS_WORK if m >= config.n_hidden), default=max(CELLS_WORK))
    speed = SPEED_BY_HIDDEN.get(config.n_hidden, SPEED_LARGE_HIDDEN)
    return (done.fused_pairs + CELLS_WORK[up_to] * done.split_pairs
            + NONZERO_PAIRS * done.nonzeros + STEP_OVERHEAD * done.feature_steps
            + RUN_OVERHEAD * done.runs) / speed


def makespan(weights: Sequence[float], machines: int) -> float:
    """How long ``machines`` equal machines take for jobs of ``weights``, placed largest first
    on whichever machine is free (as a cluster's queue places its tasks), over the ideal
    ``sum(weights) / machines``: 1.0 is a perfect balance."""
    loads = [0.0] * max(1, machines)
    for weight in sorted(weights, reverse=True):
        heapq.heapreplace(loads, loads[0] + weight)
    return max(loads) / (sum(weights) / len(loads)) if sum(weights) > 0 else 1.0

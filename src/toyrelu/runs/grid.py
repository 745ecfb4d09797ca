"""Sweep grids: every combination of some config fields around a base, and what each run costs.

``cost`` weighs runs so that sweeps start with the largest (most of a sweep's work sits in its
few largest runs) and progress bars and estimates weigh each step by its work.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

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


# Throughput of the fused engine per (example, feature) pair at each n_hidden, relative to
# n_hidden = 2, so that a run's cost is its real work. Re-measured by
# benchmarks/bench_engine.py at each m against m = 2; the measurements are in docs/engines.md.
SPEED_BY_HIDDEN = {1: 1.0, 2: 1.0, 3: 0.73, 4: 0.56, 5: 0.44, 6: 0.41, 7: 0.36, 8: 0.30,
                   9: 0.27, 10: 0.25, 12: 0.20, 16: 0.36}
SPEED_LARGE_HIDDEN = 0.15  # the other sizes past 12: m = 16's speed with dense gradients
# The per-step work besides the pairs (AdamW and the gradient flush), in pairs per feature.
STEP_OVERHEAD = 40


def cost(config: RunConfig) -> float:
    """Relative cost of a run, in (example, feature) pairs at n_hidden = 2: pairs visited,
    plus the per-step overhead (``STEP_OVERHEAD`` pairs per feature), over the engine's
    relative speed at the run's n_hidden (``SPEED_BY_HIDDEN``). A fresh batch per step
    (T = infinity) costs about as much again to sample."""
    rows = config.examples_per_step * (2 if config.infinite else 1)
    speed = SPEED_BY_HIDDEN.get(config.n_hidden, SPEED_LARGE_HIDDEN)
    return config.steps * (rows + STEP_OVERHEAD) * config.n_features / speed


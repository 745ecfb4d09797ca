"""``runs.grid.cost`` and ``runs.presets.cpu_seconds``: what a run costs on the CPU engine, each
step priced as the engine takes it (docs/engines.md, the constants of ``runs/grid.py``)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from helpers import trained_arrays
from toyrelu.core.config import RunConfig
from toyrelu.engines.cpu import engine
from toyrelu.runs import grid
from toyrelu.runs.grid import cost
from toyrelu.runs.presets import cpu_seconds
from toyrelu.runs.store import Store

BASE = RunConfig(n_features=20, n_hidden=2, sparsity=0.9, n_train=5, steps=80, n_test=200)


def test_cost_counts_pairs_nonzeros_and_overheads() -> None:
    # steps * (T n + NONZERO_PAIRS * T n (1 - S) + STEP_OVERHEAD * n) + RUN_OVERHEAD
    per_step = 5 * 20 + grid.NONZERO_PAIRS * 5 * 20 * (1 - 0.9) + grid.STEP_OVERHEAD * 20
    assert cost(BASE) == pytest.approx(80 * per_step + grid.RUN_OVERHEAD, rel=1e-12)
    # The sparser the data, the fewer nonzeros for the same pairs.
    assert cost(BASE.replace(sparsity=0.99)) < cost(BASE)


def test_cost_prices_the_split_cell_step_where_the_engine_takes_it() -> None:
    T = engine.CELLS_FROM
    assert not engine.takes_cells(T - 1, 2) and engine.takes_cells(T, 2)

    def pair_part(config: RunConfig) -> float:
        """cost less its nonzeros and overheads, at the speed of m = 2: the priced pairs."""
        rows = config.examples_per_step * (2 if config.infinite else 1)
        others = config.steps * (grid.NONZERO_PAIRS * rows * config.n_features
                                 * (1 - config.sparsity) + grid.STEP_OVERHEAD
                                 * config.n_features) + grid.RUN_OVERHEAD
        speed = grid.SPEED_BY_HIDDEN.get(config.n_hidden, grid.SPEED_LARGE_HIDDEN)
        return cost(config) * speed - others

    for m, work in ((2, grid.CELLS_WORK[2]), (3, grid.CELLS_WORK[4]), (8, grid.CELLS_WORK[8])):
        fused = BASE.replace(n_train=T - 1, n_hidden=m)
        split = BASE.replace(n_train=T, n_hidden=m)
        assert pair_part(fused) == pytest.approx(80 * (T - 1) * 20, rel=1e-9)
        assert pair_part(split) == pytest.approx(80 * T * 20 * work, rel=1e-9), m
    # From CELLS_BELOW_HIDDEN the engine keeps the fused step, and so does the price; a fresh
    # batch per step never takes the split-cell step.
    wide = BASE.replace(n_train=T, n_hidden=engine.CELLS_BELOW_HIDDEN)
    assert pair_part(wide) == pytest.approx(80 * T * 20, rel=1e-9)
    fresh = BASE.replace(n_train=math.inf, batch_size=T)
    assert pair_part(fresh) == pytest.approx(80 * 2 * T * 20, rel=1e-9)


def test_work_counts_a_fresh_batch_twice() -> None:
    # Sampling a fresh batch per step costs about as much again as training on it, and the
    # split-cell step is never taken without a fixed training set.
    fixed = grid.work(BASE.replace(n_train=40))
    fresh = grid.work(BASE.replace(n_train=math.inf, batch_size=40))
    assert fresh.fused_pairs == 2 * fixed.fused_pairs and fresh.split_pairs == 0
    assert fresh.nonzeros == 2 * fixed.nonzeros
    assert fresh.feature_steps == fixed.feature_steps and fresh.runs == fixed.runs == 1


def test_cpu_seconds_halves_with_twice_the_cores_and_adds_over_runs() -> None:
    configs = [BASE, BASE.replace(n_train=50), BASE.replace(n_hidden=5)]
    assert cpu_seconds(configs, cores=4) == pytest.approx(cpu_seconds(configs, cores=2) / 2)
    assert cpu_seconds(configs, cores=1) == pytest.approx(
        sum(cpu_seconds([config], cores=1) for config in configs))
    assert cpu_seconds([], cores=2) == 0


def test_cpu_seconds_grows_with_steps_towards_proportion() -> None:
    # Each step costs the same, on top of a fixed cost per run: affine in steps, and at the
    # reduced setting's sizes the fixed part is small.
    quick = RunConfig(n_features=1_000, n_hidden=2, sparsity=0.99, n_train=1_000, steps=10_000)
    one, two, three = (cpu_seconds([quick.replace(steps=k * 10_000)], cores=1)
                       for k in (1, 2, 3))
    assert three - two == pytest.approx(two - one)
    assert 1.9 * one < two < 2 * one


def test_a_fresh_batch_per_step_costs_more_than_a_large_training_set() -> None:
    for m in (2, 4, 8):
        T = 4 * engine.CELLS_FROM
        fixed = BASE.replace(n_hidden=m, n_train=T, steps=1_000)
        assert cost(fixed.replace(n_train=math.inf, batch_size=T)) > 1.5 * cost(fixed), m


@pytest.mark.parametrize("m", [2, 3, 4])
def test_the_split_cell_step_is_cheaper_per_pair_where_the_engine_takes_it(m: int) -> None:
    T = engine.CELLS_FROM
    assert not engine.takes_cells(T - 1, m) and engine.takes_cells(T, m)
    per_pair = {t: cost(BASE.replace(n_hidden=m, n_train=t, sparsity=0.99, steps=10_000)) / t
                for t in (T - 1, T)}
    assert per_pair[T] < 0.9 * per_pair[T - 1]


def test_the_benchmark_reads_stores_that_hold_a_fresh_batch_per_step(tmp_path: Path) -> None:
    # A store's runs table turns n_train into floats when T = infinity sits among finite T;
    # benchmarks/bench_cost.py rebuilds each config from the store's own record instead.
    spec = importlib.util.spec_from_file_location(
        "bench_cost", Path(__file__).parent.parent / "benchmarks" / "bench_cost.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    configs = [BASE, BASE.replace(n_train=math.inf, batch_size=7), BASE.replace(n_hidden=3)]
    path = tmp_path / "runs.sqlite"
    with Store(path) as store:
        for seconds, config in enumerate(configs, start=1):
            store.put(config.run_id, config.to_dict(),
                      {"status": "ok", "error": None, "train_loss": 0.1, "test_loss": 1.0,
                       "W_norm": 1.0, "b_norm": 0.5, "wall_seconds": float(seconds)},
                      trained_arrays(config))
    assert bench.settings([str(path)]) == {str(path): [(c, s + 1.0) for s, c in enumerate(configs)]}


def test_makespan_places_largest_first_on_the_free_machine() -> None:
    # Graham's example: largest first puts 3+2 and 3+2 then the last 2 on one machine, 7
    # against the ideal 12/2 = 6 (the best split, 3+3 and 2+2+2, is 6).
    assert grid.makespan([2, 3, 2, 3, 2], 2) == pytest.approx(7 / 6)
    assert grid.makespan([5, 5, 5, 5], 4) == 1.0
    # One job larger than the ideal share sets the time alone.
    assert grid.makespan([9, 1, 1, 1], 4) == pytest.approx(9 / 3)
    assert grid.makespan([4, 4], 1) == 1.0 and grid.makespan([], 3) == 1.0

"""Tests for sweeps: the grid, run_sweep over swappable executors, resumption, failed runs,
determinism across processes, the progress line and the largest-first order.

Every run here is tiny (n = 20, <= 40 examples, 60-100 steps, n_test = 200), so a training run
takes milliseconds once the numba kernels are cached on disk; only the one LocalProcesses test pays
for starting worker processes.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import LOST_REASON, Losing, assert_close
from toyrelu.core import data, metrics
from toyrelu.core.config import ConfigError, RunConfig
from toyrelu.runs import progress, sweep, training
from toyrelu.runs.executors import InProcess, LocalProcesses, executor
from toyrelu.runs.grid import cost, grid
from toyrelu.runs.progress import Progress
from toyrelu.runs.store import Store
from toyrelu.runs.sweep import run_sweep
from toyrelu.runs.training import Outcome, run_one

SRC = Path(__file__).parents[1] / "src"
BASE = RunConfig(n_features=20, n_hidden=2, sparsity=0.9, n_train=5, steps=80, n_test=200)
REQUIRED_METRICS = ("train_loss", "test_loss", "W_norm", "b_norm", "wall_seconds")


def small_grid() -> list[RunConfig]:
    """Six tiny runs: three T by two seeds."""
    return grid(BASE, {"n_train": (3, 8, 40), "seed": (0, 1)})


class Recording:
    """An executor that runs in process and records the configs it was asked to run, in order."""

    def __init__(self) -> None:
        self.ran: list[RunConfig] = []

    def map(self, configs: Sequence[RunConfig], on_steps, start=None) -> Iterator[Outcome]:
        for config in configs:
            if start is None or start(config):
                self.ran.append(config)
                yield run_one(config, on_steps)


class InterruptAfter:
    """Yields the first ``k`` outcomes of an in-process run, then raises KeyboardInterrupt, as a
    Ctrl-C between two runs would."""

    def __init__(self, k: int) -> None:
        self.k = k

    def map(self, configs: Sequence[RunConfig], on_steps, start=None) -> Iterator[Outcome]:
        inner = InProcess().map(configs, on_steps, start)
        for _ in range(self.k):
            yield next(inner)
        raise KeyboardInterrupt


def dense_loss(W: np.ndarray, b: np.ndarray, X: np.ndarray) -> float:
    """The loss (docs/experiment.md §1) with reduction "sum": mean over examples of
    sum_i (ReLU(W^T W x + b)_i - x_i)^2, computed densely in float64."""
    W, b, X = (np.asarray(a, np.float64) for a in (W, b, X))
    out = np.maximum(X @ W.T @ W + b, 0.0)
    return float(np.mean(np.sum((out - X) ** 2, axis=1)))


def csr_dense(arrays: dict[str, np.ndarray], n_features: int) -> np.ndarray:
    return data.SparseData(
        arrays["X_indptr"], arrays["X_indices"], arrays["X_data"], n_features
    ).to_dense()


# ---------------------------------------------------------------------------------------- grid


def test_grid_is_the_cartesian_product_in_axis_order() -> None:
    configs = grid(BASE, {"n_train": (3, 5), "seed": (0, 1, 2)})
    assert [(c.n_train, c.seed) for c in configs] == list(itertools.product((3, 5), (0, 1, 2)))
    for c in configs:
        assert c.replace(n_train=BASE.n_train, seed=BASE.seed) == BASE
    assert len({c.run_id for c in configs}) == 6


def test_grid_without_axes_is_the_base() -> None:
    assert grid(BASE, {}) == [BASE]


def test_grid_drops_duplicates_keeping_first_occurrence() -> None:
    configs = grid(BASE, {"n_train": (3, 5, 3), "seed": (0, 0)})
    assert [(c.n_train, c.seed) for c in configs] == [(3, 0), (5, 0)]
    # An axis value equal to the base value gives the base itself (same run_id).
    same = grid(BASE, {"n_train": (BASE.n_train,)})
    assert same == [BASE] and same[0].run_id == BASE.run_id


@pytest.mark.parametrize(
    ("axes", "field"),
    [
        ({"sparsity": (0.5, 1.5)}, "sparsity"),
        ({"n_train": (3, 0)}, "n_train"),
        ({"seed": (0, -1)}, "seed"),
        ({"dtype": ("float32", "float16")}, "dtype"),
        # steps below the base's explicit warmup: the combination is invalid, not the value.
        ({"steps": (100, 10)}, "warmup_steps"),
    ],
)
def test_grid_validates_every_combination(axes: dict, field: str) -> None:
    base = BASE.replace(warmup_steps=20)
    with pytest.raises(ConfigError, match=f"^{field}: ") as excinfo:
        grid(base, axes)
    assert "\n" not in str(excinfo.value)


def test_grid_unknown_axis_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="^n_trian: "):
        grid(BASE, {"n_trian": (3, 5)})


def test_cost_counts_example_feature_pairs_plus_overhead() -> None:
    # The model's terms are tested in test_cost.py; here the order it gives a sweep.
    assert cost(BASE.replace(n_train=40)) > cost(BASE.replace(n_train=8)) > cost(BASE)


def test_cost_weighs_pairs_by_the_speed_at_their_hidden_size() -> None:
    # A pair at m = 16 takes about 6x the time of one at m = 2 (SPEED_BY_HIDDEN), so a
    # heatmap sweep's time left and its largest-first order see its m = 16 runs as such.
    assert cost(BASE.replace(n_hidden=16)) == pytest.approx(cost(BASE) / 0.16)
    assert cost(BASE.replace(n_hidden=4)) == pytest.approx(cost(BASE) / 0.56)
    assert cost(BASE.replace(n_hidden=20)) == pytest.approx(cost(BASE) / 0.15)
    assert cost(BASE.replace(n_hidden=1)) == cost(BASE)
    big_m = BASE.replace(n_hidden=16, n_train=8)
    big_T = BASE.replace(n_train=40)  # more pairs (80 vs 48 per feature-step), cheaper ones
    assert cost(big_m) > cost(big_T)


def test_executor_picks_in_process_for_one_worker() -> None:
    assert isinstance(executor(1), InProcess)
    parallel = executor(3)
    assert isinstance(parallel, LocalProcesses) and parallel.workers == 3


# ------------------------------------------------------------------------------ run_sweep


def test_run_sweep_stores_one_ok_row_per_config(tmp_path: Path) -> None:
    configs = small_grid()
    steps_seen: list[tuple[str, int]] = []

    class Watching(Recording):
        def map(self, configs, on_steps, start=None):
            return super().map(configs, lambda r, k: (steps_seen.append((r, k)), on_steps(r, k)),
                               start)

    with Store(tmp_path / "runs.sqlite") as store:
        report = run_sweep(configs, store, Watching())
        runs = store.runs()
        assert report == sweep.SweepReport(total=6, skipped=0, ok=6, failed=0)
        assert sorted(runs["run_id"]) == sorted(c.run_id for c in configs)
        assert (runs["status"] == "ok").all() and runs["error"].isna().all()
        for name in REQUIRED_METRICS:
            assert np.isfinite(runs[name].to_numpy(float)).all(), name
        assert (runs["wall_seconds"] > 0).all()
        # Every run reports all of its steps to the progress callback.
        assert {r: sum(k for rr, k in steps_seen if rr == r) for r, _ in steps_seen} == {
            c.run_id: c.steps for c in configs
        }

        for config in configs:
            stored = store.config(config.run_id)
            assert RunConfig.from_dict(stored) == config
            row = runs.set_index("run_id").loc[config.run_id]
            arrays = store.arrays(config.run_id)
            W, b, H = arrays["W"], arrays["b"], arrays["H"]
            assert W.shape == (config.n_hidden, config.n_features) and W.dtype == np.float32
            assert b.shape == (config.n_features,)
            assert H.shape == (config.n_train, config.n_hidden)
            X = csr_dense(arrays, config.n_features)
            assert X.shape == (config.n_train, config.n_features)
            # The stored numbers are what they claim, recomputed from the stored arrays.
            # rtol 1e-6: H is accumulated in float32 by the kernel, the rest in float64.
            assert_close(H, X.astype(np.float64) @ W.T.astype(np.float64), rtol=1e-6, what="H")
            # rtol 1e-10: both sides are float64 sums of the same terms in different orders.
            assert_close(row["train_loss"], dense_loss(W, b, X), rtol=1e-10, what="train_loss")
            test = data.test_set(config).to_dense()
            assert_close(row["test_loss"], dense_loss(W, b, test), rtol=1e-10, what="test_loss")
            W_norm, b_norm = metrics.norms(W, b)
            assert row["W_norm"] == W_norm and row["b_norm"] == b_norm


def test_rerun_skips_everything_and_leaves_the_store_unchanged(tmp_path: Path) -> None:
    configs = small_grid()
    with Store(tmp_path / "runs.sqlite") as store:
        run_sweep(configs, store)
        before = store.runs()
        arrays_before = {c.run_id: store.arrays(c.run_id) for c in configs}
        again = Recording()
        report = run_sweep(configs, store, again)
        assert report == sweep.SweepReport(total=6, skipped=6, ok=0, failed=0)
        assert again.ran == []
        after = store.runs()
        # wall_seconds included: nothing was run or rewritten.
        assert after.equals(before)
        for run_id, arrays in arrays_before.items():
            stored = store.arrays(run_id)
            assert list(stored) == list(arrays)
            for name, a in arrays.items():
                np.testing.assert_array_equal(stored[name], a)


def test_interrupted_sweep_keeps_finished_runs_and_resumes_the_rest(tmp_path: Path) -> None:
    configs = small_grid()
    order = sorted(configs, key=cost, reverse=True)
    k = 2
    path = tmp_path / "runs.sqlite"
    with Store(path) as store, pytest.raises(KeyboardInterrupt):
        run_sweep(configs, store, InterruptAfter(k))

    # A fresh connection sees exactly the k committed runs, the k largest, intact.
    with Store(path) as store:
        first = store.runs()
        assert list(first["run_id"]) == [c.run_id for c in order[:k]]
        assert (first["status"] == "ok").all()
        for config in order[:k]:
            fresh = run_one(config)
            stored = store.arrays(config.run_id)
            for name, a in fresh.arrays.items():
                np.testing.assert_array_equal(stored[name], a, err_msg=name)
            row = first.set_index("run_id").loc[config.run_id]
            assert row["train_loss"] == fresh.metrics["train_loss"]
            assert row["test_loss"] == fresh.metrics["test_loss"]

        resumed = Recording()
        report = run_sweep(configs, store, resumed)
        assert report == sweep.SweepReport(total=6, skipped=k, ok=6 - k, failed=0)
        assert [c.run_id for c in resumed.ran] == [c.run_id for c in order[k:]]
        final = store.runs()
        assert sorted(final["run_id"]) == sorted(c.run_id for c in configs)
        assert (final["status"] == "ok").all()
        # The runs stored before the interruption were not rerun (same wall_seconds).
        assert final.iloc[:k].equals(first)


def test_diverging_run_is_stored_as_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # lr = 1e6 overflows within a few steps: the loss is inf at step 3 of this tiny run.
    diverging = BASE.replace(lr=1e6, steps=60)
    direct = training.run(diverging)
    assert direct.status == "failed"
    assert direct.error.startswith("diverged: loss is ")
    assert set(direct.values) == {"wall_seconds"}

    good = [BASE, BASE.replace(seed=1)]
    configs = [good[0], diverging, good[1]]
    with Store(tmp_path / "runs.sqlite") as store:
        report = run_sweep(configs, store)
        assert report == sweep.SweepReport(total=3, skipped=0, ok=2, failed=1)
        runs = store.runs().set_index("run_id")
        assert runs.loc[diverging.run_id, "status"] == "failed"
        assert runs.loc[diverging.run_id, "error"] == direct.error
        assert math.isnan(runs.loc[diverging.run_id, "test_loss"])
        for config in good:
            assert runs.loc[config.run_id, "status"] == "ok"
            assert runs.loc[config.run_id, "test_loss"] < 10
        # A failed run is finished: a rerun does not retry it.
        again = Recording()
        assert run_sweep(configs, store, again).skipped == 3
        assert again.ran == []


def test_a_crashing_run_is_stored_as_failed_with_its_first_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing = BASE.replace(seed=7)
    real_run = training.run

    def run(config, **kwargs):
        if config == crashing:
            raise RuntimeError("boom\nsecond line")
        return real_run(config, **kwargs)

    monkeypatch.setattr(training, "run", run)
    outcome = run_one(crashing)
    assert outcome.metrics == {"status": "failed", "error": "RuntimeError: boom"}
    assert outcome.arrays == {} and outcome.config == crashing.to_dict()
    with Store(tmp_path / "runs.sqlite") as store:
        report = run_sweep([crashing, BASE], store)
        assert (report.ok, report.failed) == (1, 1)
        assert store.status(crashing.run_id) == "failed"
        assert store.runs().set_index("run_id").loc[crashing.run_id, "error"] == (
            "RuntimeError: boom"
        )
        assert store.status(BASE.run_id) == "ok"


def test_runs_execute_largest_first(tmp_path: Path) -> None:
    configs = [
        BASE.replace(n_train=3),
        BASE.replace(n_train=40),
        BASE.replace(n_train=8, steps=60),
        BASE.replace(n_train=8),
        BASE.replace(n_train=3, steps=100),
    ]
    recording = Recording()
    with Store(tmp_path / "runs.sqlite") as store:
        run_sweep(configs, store, recording)
    ran = [(c.n_train, c.steps) for c in recording.ran]
    # The most pairs first; the order of the rest follows grid.cost's overheads (test_cost.py).
    assert ran[0] == (40, 80) and len(ran) == len(configs)
    costs = [cost(c) for c in recording.ran]
    assert costs == sorted(costs, reverse=True)


def test_local_processes_give_bitwise_the_same_runs_as_in_process(tmp_path: Path) -> None:
    configs = grid(BASE, {"n_train": (3, 8, 40), "seed": (0, 1)})
    with Store(tmp_path / "serial.sqlite") as serial, Store(tmp_path / "par.sqlite") as par:
        run_sweep(configs, serial, InProcess())
        report = run_sweep(configs, par, LocalProcesses(2))
        assert (report.ok, report.failed) == (6, 0)
        a = serial.runs().set_index("run_id").sort_index()
        b = par.runs().set_index("run_id").sort_index()
        assert list(a.index) == list(b.index)
        for name in ("train_loss", "test_loss", "W_norm", "b_norm"):
            np.testing.assert_array_equal(b[name].to_numpy(), a[name].to_numpy(), err_msg=name)
        for run_id in a.index:
            left, right = serial.arrays(run_id), par.arrays(run_id)
            assert list(left) == list(right)
            for name in left:
                assert left[name].dtype == right[name].dtype
                np.testing.assert_array_equal(right[name], left[name], err_msg=name)


# ------------------------------------------------------------------------------- progress


def test_progress_lines_from_a_sweep(tmp_path: Path) -> None:
    configs = small_grid()
    stream = io.StringIO()
    with Store(tmp_path / "runs.sqlite") as store:
        run_sweep(configs, store, progress=stream)
    lines = stream.getvalue().splitlines()
    assert lines, "no progress written"
    for line in lines:
        assert "runs" in line and "steps/s" in line and "left" in line
    # A log file (not a tty) always gets the final line.
    assert lines[-1].startswith("runs 6/6 | ")
    assert lines[-1].endswith("left 0:00")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def perf_counter(self) -> float:
        return self.now


def progress_pair(monkeypatch: pytest.MonkeyPatch, stream) -> tuple[Progress, FakeClock, list]:
    # Per-step costs n * (T + 40): 20 * 42 = 840 for T = 2 and 20 * 168 = 3,360 for T = 128, so
    # 100 steps of each weigh 84,000 and 336,000 (1/5 and 4/5 of the work).
    clock = FakeClock(1000.0)
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    configs = [BASE.replace(n_train=2, steps=100), BASE.replace(n_train=128, steps=100)]
    return Progress(configs, stream), clock, configs


def test_progress_time_left_weighs_steps_by_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    bar, clock, (small, big) = progress_pair(monkeypatch, io.StringIO())
    assert bar.line() == "runs 0/2 | 0 steps/s | elapsed 0:00 | left ?"
    clock.now += 10
    bar.on_steps(small.run_id, 100)
    # The first report (1/5 of the work after 10 s) sets the start of the rate: the 10 s
    # include start-up, so no estimate yet; 100 steps / 10 s.
    assert bar.line() == "runs 0/2 | 10 steps/s | elapsed 0:10 | left ?"
    bar.on_run()
    clock.now += 20
    bar.on_steps(big.run_id, 25)
    # 1/5 more (25 steps of 840 * 4) in the 20 s since: the 3/5 left take 60 s; 125 steps / 30 s.
    assert bar.line() == "runs 1/2 | 4 steps/s | elapsed 0:30 | left 1:00"
    clock.now += 3600
    # Past an hour the clock shows hours: 1/5 of the work in 3,620 s, 3/5 left.
    assert bar.line() == "runs 1/2 | 0 steps/s | elapsed 1:00:30 | left 3:01:00"
    bar.on_steps(big.run_id, 75)
    assert bar.line().endswith("left 0:00")


def test_progress_on_a_log_file_writes_a_line_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    bar, clock, (small, big) = progress_pair(monkeypatch, stream)
    bar.on_steps(small.run_id, 50)  # first line
    clock.now += 1
    bar.on_steps(small.run_id, 50)  # within 5 s: no line
    bar.on_run()  # a run finished, but not the last one: no line within 5 s
    clock.now += 6
    bar.on_steps(big.run_id, 50)  # 6 s later: a line
    clock.now += 1
    bar.on_steps(big.run_id, 50)
    bar.on_run()  # the last run: always a line
    bar.close()
    lines = stream.getvalue().split("\n")
    assert lines[-1] == ""
    assert [line.split(" | ")[0] for line in lines[:-1]] == ["runs 0/2", "runs 1/2", "runs 2/2"]


def test_progress_on_a_terminal_redraws_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar, clock, (small, _) = progress_pair(monkeypatch, stream)
    bar.on_steps(small.run_id, 10)
    clock.now += 0.1
    bar.on_steps(small.run_id, 10)  # within 0.5 s: no redraw
    clock.now += 0.9
    bar.on_steps(small.run_id, 10)  # 30 steps in 1 s
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\r\n")
    assert text.split("\r")[1].startswith("runs 0/2 | 30 steps/s")


# ------------------------------------------------------------- statuses, retries and leases


@pytest.mark.parametrize(("exc", "status"), [
    (MemoryError("out of memory"), "error"),
    (OSError(28, "No space left on device"), "error"),
    (FileNotFoundError(2, "No such file or directory"), "error"),
    (ValueError("bad shape"), "failed"),
])
def test_run_one_tells_errors_of_the_machine_from_failures_of_the_config(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, status: str
) -> None:
    def run(config, **kwargs):
        raise exc

    monkeypatch.setattr(training, "run", run)
    outcome = run_one(BASE)
    assert outcome.metrics == {"status": status, "error": f"{type(exc).__name__}: {exc}"}
    assert outcome.arrays == {}


def test_error_runs_are_stored_and_trained_again_by_the_next_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = [BASE, BASE.replace(seed=1), BASE.replace(seed=2)]
    unlucky = configs[1]
    real_run = training.run

    def run(config, **kwargs):
        if config == unlucky:
            raise MemoryError("worker out of memory")
        return real_run(config, **kwargs)

    monkeypatch.setattr(training, "run", run)
    with Store(tmp_path / "runs.sqlite") as store:
        report = run_sweep(configs, store)
        assert report == sweep.SweepReport(total=3, skipped=0, ok=2, failed=0, errors=1)
        assert store.status(unlucky.run_id) == "error"
        assert store.finished_ids() == {configs[0].run_id, configs[2].run_id}

        monkeypatch.setattr(training, "run", real_run)
        again = Recording()
        report = run_sweep(configs, store, again)
        assert [c.run_id for c in again.ran] == [unlucky.run_id]
        assert report == sweep.SweepReport(total=3, skipped=2, ok=1, failed=0, errors=0)
        assert store.status(unlucky.run_id) == "ok"


def test_lost_runs_are_stored_as_lost_and_trained_by_the_next_sweep(tmp_path: Path) -> None:
    configs = small_grid()
    lost = {configs[1].run_id, configs[4].run_id}
    # A run lost by a cluster before "lost" was a status: stored as an error.
    earlier = configs[5]
    with Store(tmp_path / "runs.sqlite") as store:
        store.put(earlier.run_id, earlier.to_dict(),
                  {"status": "error", "error": "lost after 3 retries: WorkerCrashedError"}, {})
        losing = Losing(lambda c: c.run_id in lost)
        report = run_sweep(configs, store, losing)
        assert sorted(c.run_id for c in losing.ran) == sorted(c.run_id for c in configs)
        assert report == sweep.SweepReport(total=6, skipped=0, ok=4, failed=0, errors=0, lost=2)
        runs = store.runs().set_index("run_id")
        assert set(runs.index[runs["status"] == "lost"]) == lost
        assert set(runs.loc[list(lost), "error"]) == {LOST_REASON}
        assert runs.loc[list(lost), "train_loss"].isna().all()
        assert all(store.arrays(run_id) == {} for run_id in lost)
        assert store.check() == []  # a lost row is a sound run of the store's rules
        assert store.finished_ids() == {c.run_id for c in configs} - lost

        again = Recording()
        report = run_sweep(configs, store, again)
        assert {c.run_id for c in again.ran} == lost and len(again.ran) == 2
        assert report == sweep.SweepReport(total=6, skipped=4, ok=2, failed=0)
        assert set(store.runs()["status"]) == {"ok"}


def test_retry_failed_trains_failed_runs_again(tmp_path: Path) -> None:
    diverging = BASE.replace(lr=1e6, steps=60)
    configs = [BASE, diverging]
    with Store(tmp_path / "runs.sqlite") as store:
        run_sweep(configs, store)
        assert store.status(diverging.run_id) == "failed"
        skipping, retrying = Recording(), Recording()
        assert run_sweep(configs, store, skipping).skipped == 2
        report = run_sweep(configs, store, retrying, retry_failed=True)
        assert [c.run_id for c in retrying.ran] == [diverging.run_id]
        assert report == sweep.SweepReport(total=2, skipped=1, ok=0, failed=1)


def test_a_run_leased_by_a_live_sweep_is_skipped_and_leaves_the_progress_line(
    tmp_path: Path,
) -> None:
    configs = small_grid()
    taken = sorted(configs, key=cost, reverse=True)[0]
    stream = io.StringIO()
    with Store(tmp_path / "runs.sqlite") as other, Store(tmp_path / "runs.sqlite") as store:
        assert other.claim(taken.run_id)
        recording = Recording()
        report = run_sweep(configs, store, recording, progress=stream)
        assert report == sweep.SweepReport(total=6, skipped=1, ok=5, failed=0)
        assert taken not in recording.ran and len(recording.ran) == 5
        assert store.status(taken.run_id) is None
        assert stream.getvalue().splitlines()[-1].startswith("runs 5/5 | ")
        # The sweep dropped its leases; the other holds its own until it stores or releases.
        other.release()
        assert run_sweep(configs, store, Recording()).ok == 1


def test_an_interrupted_sweep_releases_its_leases(tmp_path: Path) -> None:
    configs = small_grid()
    with Store(tmp_path / "runs.sqlite") as store, Store(tmp_path / "runs.sqlite") as other:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(configs, store, InterruptAfter(2))
        order = sorted(configs, key=cost, reverse=True)
        # The third run had been claimed when the interruption came; another sweep takes it.
        assert other.claim(order[2].run_id)


SWEEPER = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from toyrelu.core.config import RunConfig
    from toyrelu.runs import executors
    from toyrelu.runs.grid import grid
    from toyrelu.runs.store import Store
    from toyrelu.runs.sweep import run_sweep
    from toyrelu.runs.training import Outcome

    store_path, log, go, hang = sys.argv[2:6]

    def run_one(config, on_steps=None):
        # Counts trainings instead of training: one line per run started, then a short wait
        # so that the sweeps overlap.
        with open(log, "a") as f:
            f.write(f"{config.run_id} {os.getpid()}\\n")
        if config.run_id == hang:
            time.sleep(600)
        time.sleep(0.05)
        on_steps(config.run_id, config.steps)
        return Outcome(config.run_id, config.to_dict(), {"status": "ok", "error": None}, {})

    executors.run_one = run_one
    base = RunConfig(n_features=20, n_hidden=2, sparsity=0.9, n_train=5, steps=80, n_test=200)
    configs = grid(base, {"seed": list(range(int(sys.argv[6])))})
    while not os.path.exists(go):
        time.sleep(0.01)
    # The outcomes hold no losses or arrays: no rules of a trained run.
    with Store(store_path, rules=None) as store:
        report = run_sweep(configs, store)
    print(json.dumps(report.__dict__), flush=True)
    """
)


def sweepers(tmp_path: Path, n: int, runs: int, hang: str = "") -> list[subprocess.Popen]:
    """``n`` processes that sweep ``runs`` configs into tmp_path/runs.sqlite at once, once
    tmp_path/go exists, logging each training to tmp_path/trained; a run ``hang`` never
    ends."""
    args = [str(tmp_path / name) for name in ("runs.sqlite", "trained", "go")]
    return [subprocess.Popen([sys.executable, "-c", SWEEPER, str(SRC), *args, hang, str(runs)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(n)]


def trained(tmp_path: Path) -> list[tuple[str, int]]:
    lines = (tmp_path / "trained").read_text().splitlines()
    return [(run_id, int(pid)) for run_id, pid in (line.split() for line in lines)]


def test_concurrent_sweeps_on_one_store_train_each_run_once(tmp_path: Path) -> None:
    runs = 30
    children = sweepers(tmp_path, 3, runs)
    (tmp_path / "go").touch()
    reports = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    log = trained(tmp_path)
    assert len(log) == runs and len({run_id for run_id, _ in log}) == runs
    assert sum(r["ok"] for r in reports) == runs
    assert all(r["ok"] + r["skipped"] == runs for r in reports)
    assert len({pid for _, pid in log}) > 1, "the sweeps did not overlap"
    with Store(tmp_path / "runs.sqlite", rules=None) as store:
        assert len(store) == runs and store.finished_ids() == set(store.runs()["run_id"])
    assert lease_count(tmp_path / "runs.sqlite") == 0


def lease_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    (count,) = conn.execute("SELECT COUNT(*) FROM leases").fetchone()
    conn.close()
    return count


def test_the_runs_of_a_killed_sweep_are_taken_over(tmp_path: Path) -> None:
    configs = grid(BASE, {"seed": [0, 1, 2]})  # the sweeper's first three runs
    hang = configs[1].run_id
    [child] = sweepers(tmp_path, 1, 3, hang)
    (tmp_path / "go").touch()
    log = tmp_path / "trained"
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and hang in log.read_text()):
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline, "the sweeper never reached its second run"
            time.sleep(0.02)
        with Store(tmp_path / "runs.sqlite", rules=None) as store:
            assert store.finished_ids() == {configs[0].run_id}
            assert not store.claim(hang)  # alive, the sweeper holds the run it trains
            child.kill()
            child.wait()
            recording = Recording()
            report = run_sweep(configs, store, recording)
            assert [c.run_id for c in recording.ran] == [hang, configs[2].run_id]
            assert report == sweep.SweepReport(total=3, skipped=1, ok=2, failed=0)
    finally:
        child.kill()
        child.communicate()

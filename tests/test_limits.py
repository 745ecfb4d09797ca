"""Tests for the sizes a machine refuses before any work: ``runs.limits`` (a run's memory, the
hidden sizes of the CPU kernels, the caps on a sweep) and the command line's checks.

Nothing here trains a large run or compiles a kernel: the estimate is arithmetic on the config,
and every refused command stops before its store is opened.
"""

from __future__ import annotations

import argparse
import math
import re
import tracemalloc
from pathlib import Path

import pytest

from helpers import run_cli
from toyrelu.cli import commands
from toyrelu.core.config import ConfigError, RunConfig
from toyrelu.engines.cpu import MAX_HIDDEN
from toyrelu.runs import executors, limits, presets, training
from toyrelu.runs.executors import InProcess
from toyrelu.runs.limits import Sizes, run_bytes, sweep_bytes
from toyrelu.runs.presets import PRESETS, Preset
from toyrelu.runs.resources import default_workers, usable_workers
from toyrelu.runs.store import Store

GiB = 2**30
# The quick setting (n = 1,000, m = 2, S = 0.99, 10,000 steps, n_test = 10,000) at T = 1,000.
QUICK_1000 = RunConfig(n_features=1_000, n_hidden=2, sparsity=0.99, n_train=1_000,
                       steps=10_000, n_test=10_000)


# ------------------------------------------------------------------------------ the estimate


def test_run_bytes_of_a_quick_run_by_hand() -> None:
    # T n (1 - S) = 1,000 x 1,000 x 0.01 = 10,000 nonzeros in the training set, 100,000 in the
    # test set; (m + 1) n = 3,000 parameters; 10,000 steps. Each data set peaks while drawn:
    # training set: drawn 52 x 10,000 + 32 x 1,000 = 552,000; evaluated 28 x 10,000
    #   + (16 + 16 x 2) x 1,000 = 328,000
    # test set: drawn 52 x 100,000 + 32 x 10,000 = 5,520,000; evaluated 3,280,000
    # parameters: (10 x 4 + 24) x 3,000 = 192,000 (float32)
    # schedule: 40 x 10,000 = 400,000, and T n = 1e6 pairs gives chunks of 1,000 steps (at
    #   most 5e9 pairs each): 10 chunk ends of 120 bytes, 1,200; 401,200 in all
    parts = run_bytes(Sizes.of(QUICK_1000))
    assert parts == pytest.approx({
        "the training set": 552_000, "the test set": 5_520_000, "the parameters": 192_000,
        "the learning-rate schedule": 401_200, "the snapshots": 0,
    }, rel=1e-9)


def test_a_data_set_with_few_nonzeros_and_many_hidden_dimensions_peaks_in_evaluation() -> None:
    # m = 16, S = 0.999, T = 1e6: 1e6 nonzeros. Drawn: 52 x 1e6 + 32 x 1e6 = 84e6; evaluated:
    # 28 x 1e6 + (16 + 16 x 16) x 1e6 = 300e6.
    config = QUICK_1000.replace(n_hidden=16, sparsity=0.999, n_train=1_000_000)
    assert run_bytes(Sizes.of(config))["the training set"] == pytest.approx(300e6, rel=1e-9)


def test_sweep_bytes_by_hand() -> None:
    # One worker: a process (512 MiB = 536,870,912) and 1.25 x 6,665,200 (the parts above)
    # = 8,331,500. Two: twice that, plus the sweep's process and 3 results of
    # 8 x 10,000 (X's indices and values) + (8 + 4 x 2) x 1,000 (row pointers, H)
    # + 3,000 x 4 (W, b) = 108,000 bytes each.
    sizes = Sizes.of(QUICK_1000)
    assert limits.result_bytes(sizes) == pytest.approx(108_000, rel=1e-9)
    assert sweep_bytes(sizes, 1) == pytest.approx(536_870_912 + 8_331_500, rel=1e-9)
    assert sweep_bytes(sizes, 2) == pytest.approx(
        2 * (536_870_912 + 8_331_500) + 536_870_912 + 3 * 108_000, rel=1e-9)


def test_a_task_holds_one_process_and_each_of_its_runs() -> None:
    # One run: as one worker of a sweep. A GPU batch of two: one process (536,870,912) and
    # 1.25 x each run's parts on the GPU, whose schedule is 300 bytes a step with no chunks:
    # 6,264,000 (the parts above less their schedule of 401,200) + 3,000,000.
    assert limits.task_bytes([QUICK_1000]) == sweep_bytes(Sizes.of(QUICK_1000), 1)
    batch = [QUICK_1000, QUICK_1000.replace(seed=1)]
    assert limits.task_bytes(batch, "cuda") == pytest.approx(
        536_870_912 + 2 * 1.25 * (6_264_000 + 3_000_000), rel=1e-9)


def test_each_kind_of_run_adds_its_own_part() -> None:
    base = run_bytes(Sizes.of(QUICK_1000))
    # T = infinity with batches of 1,000: each step's batch drawn while two others are held,
    # 24 more bytes per nonzero (10,000 of them).
    stream = run_bytes(Sizes.of(QUICK_1000.replace(n_train=math.inf, batch_size=1_000)))
    assert stream["the training set"] == pytest.approx(552_000 + 24 * 10_000)
    # The reference engine: 8 dense T x n float32 arrays, 8 x 1,000 x 1,000 x 4 = 32e6.
    dense = run_bytes(Sizes.of(QUICK_1000.replace(engine="reference")))
    assert dense["the dense training set"] == pytest.approx(32e6)
    # 10,000 steps with a snapshot every 100: 101 snapshots of 3,000 float32 numbers, 3 copies.
    snaps = run_bytes(Sizes.of(QUICK_1000.replace(snapshot_every=100)))
    assert snaps["the snapshots"] == pytest.approx(3 * 101 * 3_000 * 4)
    # On a GPU the host builds AdamW's scalars per step, 300 bytes each, and no chunk plan.
    gpu = run_bytes(Sizes.of(QUICK_1000, device="cuda"))
    assert gpu["the learning-rate schedule"] == pytest.approx(300 * 10_000)
    assert {k: v for k, v in gpu.items() if k != "the learning-rate schedule"} == {
        k: v for k, v in base.items() if k != "the learning-rate schedule"}


def test_the_chunk_plan_grows_as_chunks_shrink() -> None:
    # T n = 1e10 pairs a step: chunks of one step, so 120 bytes for each of 100 steps besides
    # the schedule's 40.
    big = Sizes.of(QUICK_1000.replace(n_train=10_000_000, steps=100))
    assert run_bytes(big)["the learning-rate schedule"] == pytest.approx(100 * (40 + 120))


# ------------------------------------------------------------------------------ refusals


def test_the_quick_preset_passes(capsys: pytest.CaptureFixture) -> None:
    for name in ("smoke", "quick", "quick-full", "paper-laptop", "heatmap-quick",
                 "sparsity-quick"):
        assert limits.refusal(PRESETS[name].configs(), workers=2, memory=4 * GiB) is None
    assert limits.refusal(PRESETS["quick"].configs(), workers=default_workers()) is None


PROBES = {
    "n_train": (dict(n_train=10**10), "n_train: 1e10 needs about", "the training set"),
    "n_features": (dict(n_features=10**12), "n_features: 1e12 needs about", "the test set"),
    "steps": (dict(steps=10**15), "steps: 1e15 needs about", "the learning-rate schedule"),
    "n_test": (dict(n_test=10**12), "n_test: 1e12 needs about", "the test set"),
    "batch_size": (dict(n_train=math.inf, batch_size=10**11), "batch_size: 1e11 needs about",
                   "the training set"),
}


@pytest.mark.parametrize("probe", list(PROBES))
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_no_machine_can_hold_names_its_field_and_the_largest_value_that_fits(
    probe: str, workers: int
) -> None:
    changes, start, part = PROBES[probe]
    config = QUICK_1000.replace(**changes)
    memory = 24 * GiB
    reason = limits.refusal([config, config.replace(seed=1)], workers=workers, memory=memory)
    assert reason is not None and reason.startswith(start), reason
    assert f"for {part}" in reason and "this machine has 24 GiB" in reason
    allowed = re.search(rf"\(allowed: {probe} <= ([0-9.e]+)", reason)
    assert allowed is not None, reason
    # The value shown fits with the others unchanged, and twice it does not.
    attr = "rows" if probe in ("n_train", "batch_size") else probe
    sizes = Sizes.of(config)
    fits = float(allowed[1])
    for value, expected in ((fits, True), (2 * fits, False)):
        changed = Sizes(**{**sizes.__dict__, attr: value})
        assert (sweep_bytes(changed, workers) <= memory) is expected


def test_workers_multiply_what_a_run_needs() -> None:
    # About 11 GiB per run: fits alone in 24 GiB, not twice.
    config = QUICK_1000.replace(n_train=16_000_000)
    assert limits.refusal([config], workers=1, memory=24 * GiB) is None
    assert limits.refusal([config], workers=2, memory=24 * GiB) is None  # one run, one worker
    reason = limits.refusal([config, config.replace(seed=1)], workers=2, memory=24 * GiB)
    assert reason is not None and "with 2 workers at once" in reason
    assert reason.endswith("with 2 workers, or 1 worker as given)")
    # With 8 workers on 64 GiB, 5 fit: 5 x (10.3 GiB a run + 0.5 GiB a process), the sweep's
    # process (0.5 GiB) and 6 results of 1.43 GiB make 63 GiB; 6 workers need 75 GiB.
    eight = limits.refusal([config.replace(seed=s) for s in range(8)], workers=8,
                           memory=64 * GiB)
    assert eight is not None and eight.endswith("with 8 workers, or 5 workers as given)")
    # On a GPU one process trains them.
    assert limits.refusal([config, config.replace(seed=1)], workers=2, device="cuda",
                          memory=24 * GiB) is None
    # A cluster's node is named as the caller says.
    node = limits.refusal([config], workers=1, memory=8 * GiB, machine="the largest node")
    assert node is not None and "; the largest node has 8 GiB (allowed: " in node


def test_hidden_sizes_past_the_kernels_are_refused_for_the_fused_engine_on_the_cpu() -> None:
    at_limit = QUICK_1000.replace(n_hidden=MAX_HIDDEN)
    above = QUICK_1000.replace(n_hidden=MAX_HIDDEN + 1)
    assert limits.hidden_refusal(at_limit) is None
    assert limits.hidden_refusal(above) == (
        f"n_hidden: {MAX_HIDDEN + 1} is more than the CPU engine's compiled kernels are built "
        f"for (allowed: n_hidden <= {MAX_HIDDEN} with engine=fused on the CPU; "
        "engine=reference trains any n_hidden, slowly)")
    assert limits.hidden_refusal(above.replace(engine="reference")) is None
    assert limits.hidden_refusal(above, device="cuda") is None
    assert limits.refusal([at_limit, above], workers=1) == limits.hidden_refusal(above)


def test_the_api_refuses_such_a_hidden_size_before_any_work(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(config: RunConfig) -> None:
        raise AssertionError("prepared a run that should have been refused")

    monkeypatch.setattr(training, "prepare", no_work)
    with pytest.raises(ConfigError, match=rf"^n_hidden: 1e5 is more .* <= {MAX_HIDDEN} "):
        training.run(QUICK_1000.replace(n_hidden=100_000))


@pytest.mark.parametrize(("value", "down", "shown"), [
    (10**10, False, "1e10"), (290_000_000, False, "2.9e8"), (99_600_000_000, False, "1e11"),
    (99_600_000_000, True, "9.9e10"), (12_345_678, True, "1.2e7"), (64, False, "64"),
    (math.inf, False, "inf"), (0.99, False, "0.99"), ("fused", False, "fused"),
])
def test_numbers_are_shown_as_the_command_line_takes_them(value: object, down: bool,
                                                          shown: str) -> None:
    assert limits._number(value, down=down) == shown


def test_byte_counts_are_shown_in_binary_units() -> None:
    assert [limits.format_bytes(b) for b in (0, 1_000, 1_023 * 2**10, 24 * GiB, 1.5 * 2**50)] == [
        "0 bytes", "1000 bytes", "1023 KiB", "24 GiB", "1.5 PiB"]


# ------------------------------------------------------------------------------ sweep size


def test_a_grid_is_counted_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "grid", lambda *a: pytest.fail("built a grid"))
    big = PRESETS["quick"].override({"seed": list(range(10_000)), "n_train": list(range(1, 21))})
    assert big.size() == 400_000  # under both procedures
    with pytest.raises(ConfigError, match=r"^seed: 10,000 values make 400,000 runs with the "
                                          r"other axes \(allowed: at most 100,000 runs"):
        big.configs()


def test_blocks_add_up_in_the_count() -> None:
    # sparsity-quick: 4 blocks (one per S) of 6 T each, 3 seeds, both procedures: 144 runs.
    assert PRESETS["sparsity-quick"].size() == 144 == len(PRESETS["sparsity-quick"].configs())
    many = Preset("many", "", RunConfig(), {"seed": tuple(range(1_000))},
                  blocks=({"n_train": tuple(range(1, 60))}, {"n_train": tuple(range(1, 50))}))
    assert many.size() == 108_000
    with pytest.raises(ConfigError, match=r"^seed: 1,000 values make 108,000 runs"):
        many.configs()


# ------------------------------------------------------------------------------ command line


def _one_error_line(code: int, out: str, err: str, start: str) -> None:
    assert (code, out) == (2, ""), err
    assert err.startswith(f"toyrelu: error: {start}") and err.count("\n") == 1, err


CLI_PROBES = {
    "n_features": (["--n-features", "1e12"], "n_features: 1e12 needs about"),
    "n_train": (["--n-train", "1e10"], "n_train: 1e10 needs about"),
    "steps": (["--steps", "1e15"], "steps: 1e15 needs about"),
    "n_test": (["--n-test", "1e12"], "n_test: 1e12 needs about"),
    "batch_size": (["--n-train", "30,inf", "--batch-size", "1e11"],
                   "batch_size: 1e11 needs about"),
    "n_hidden": (["--n-hidden", "100000"], "n_hidden: 1e5 is more than"),
    "n_hidden 200": (["--n-hidden", "200"], "n_hidden: 200 is more than"),
    "restarts": (["--restarts", "100000000"], "restarts: 100000000 initialisations"),
    "grid": (["--n-train", ",".join(map(str, range(1, 2_001))), "--seeds",
              ",".join(map(str, range(100)))], "n_train: 2,000 values make 400,000 runs"),
}


@pytest.mark.parametrize("probe", list(CLI_PROBES))
def test_the_sweep_refuses_before_creating_its_store(probe: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    argv, start = CLI_PROBES[probe]
    path = tmp_path / "new" / "runs.sqlite"
    result = run_cli(capsys, "sweep", "--preset", "quick", "--store", path, "--device", "cpu",
                     *argv)
    _one_error_line(*result, start)
    assert not path.parent.exists()


@pytest.mark.parametrize("probe", ["n_train", "n_hidden", "restarts"])
def test_the_sweep_leaves_an_existing_store_unchanged(probe: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "runs.sqlite"
    Store(path).close()
    before = path.read_bytes()
    argv, start = CLI_PROBES[probe]
    result = run_cli(capsys, "sweep", "--preset", "quick", "--store", path, "--device", "cpu",
                     *argv)
    _one_error_line(*result, start)
    assert path.read_bytes() == before


@pytest.mark.parametrize("probe", ["steps", "n_hidden", "grid"])
def test_reproduce_refuses_before_creating_its_folder(probe: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    argv, start = CLI_PROBES[probe]
    result = run_cli(capsys, "reproduce", "--preset", "quick", "--out", tmp_path / "out",
                     "--device", "cpu", *argv)
    _one_error_line(*result, start)
    assert not (tmp_path / "out").exists()


def test_many_restarts_are_refused_without_building_them(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    tracemalloc.start()
    try:
        result = run_cli(capsys, "sweep", "--preset", "quick", "--store", tmp_path / "r.sqlite",
                         "--device", "cpu", "--restarts", "100000000")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _one_error_line(*result, "restarts: 100000000 initialisations of each dataset are more "
                             "than one sweep keeps (allowed: restarts <= 1,000)")
    assert peak < 50 * 2**20  # the 1e8 configs would take gigabytes


def test_the_sensitivity_study_is_counted_before_it_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    seeds = ",".join(map(str, range(2_000)))
    result = run_cli(capsys, "sensitivity", "--base", "smoke", "--seeds", seeds, "--out",
                     tmp_path / "out", "--device", "cpu")
    _one_error_line(*result, "seeds: 2,000 seeds make")
    assert "runs of the study (allowed: at most 100,000 runs in one sweep)" in result[2]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["sweep", "reproduce", "sensitivity"])
def test_workers_past_the_cores_are_capped_with_a_note(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stop at the executor: it is asked for the capped number of workers.
    asked: list[int] = []

    def stop(workers: int, *rest: object) -> InProcess:
        asked.append(workers)
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "executor", stop)
    where = {
        "sweep": ["--preset", "smoke", "--store", tmp_path / "runs.sqlite"],
        "reproduce": ["--preset", "smoke", "--out", tmp_path],
        "sensitivity": ["--base", "smoke", "--knobs", "decay_bias", "--seeds", "0", "--out",
                        tmp_path],
    }[command]
    code, _, err = run_cli(capsys, command, *where, "--device", "cpu", "--workers", "64")
    cores = default_workers()
    assert code == 130 and asked == [cores]
    assert err.splitlines()[0] == (f"toyrelu: note: --workers 64 capped at {cores}, the cores "
                                   "this process may use")


def test_workers_are_at_most_the_cores() -> None:
    assert usable_workers(1) == 1
    assert usable_workers(10_000) == default_workers()


def test_workers_within_the_cores_print_no_note(capsys: pytest.CaptureFixture) -> None:
    assert commands._workers(argparse.Namespace(workers=1)) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["--n-features", "1e308"], ["--steps", "1e307"],
                                  ["--n-train", "inf", "--batch-size", "1e308"],
                                  ["--n-features", "1e200", "--n-test", "1e200"]])
def test_sizes_beyond_floats_are_refused_not_overflowed(argv: list[str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    # The sizes are exact integers; float arithmetic on them overflowed with a traceback.
    store = tmp_path / "runs.sqlite"
    code, out, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", store,
                             "--device", "cpu", *argv)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert "needs about ∞ bytes" in err and "(allowed: " in err
    assert not store.exists()


def test_a_huge_hidden_size_is_named_in_short(capsys: pytest.CaptureFixture,
                                              tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store",
                           tmp_path / "r.sqlite", "--device", "cpu", "--n-hidden", "1e308")
    assert code == 2 and err.startswith("toyrelu: error: n_hidden: 1e308 is more than")

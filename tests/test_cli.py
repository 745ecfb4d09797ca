"""Tests for the command line, called in process through ``toyrelu.cli.main`` (two subprocess tests
cover ``python -m toyrelu`` and an export into a closed pipe).

The smoke preset (8 runs, n = 50, 300 steps) trains in well under a second once the numba kernels
are cached; sweeps here pass ``--workers 1`` so that no worker processes are started
(LocalProcesses is tested in test_sweep.py).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers import LOST_REASON, Losing, assert_close, assert_one_error_line, run_cli
from toyrelu import cli
from toyrelu.cli import options, placement
from toyrelu.core.config import RunConfig, field_docs
from toyrelu.runs import executors, sweep, training
from toyrelu.runs.executors import GpuBatches, InProcess
from toyrelu.runs.grid import cost, makespan
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.store import Store

SRC = Path(__file__).parents[1] / "src"
REQUIRED_COLUMNS = [
    "run_id", "status", "kept", "n_features", "n_hidden", "sparsity", "n_train", "seed",
    "restart", "steps", "lr", "weight_decay", "train_loss", "test_loss", "test_loss_median",
    "test_loss_p90", "test_share_above_2", "W_norm", "b_norm", "wall_seconds",
]
SMOKE = PRESETS["smoke"]
FIGURES = ("summary", "geometry", "loss", "norms", "dimensionality")


def python_path_env() -> dict[str, str]:
    """The environment with this checkout's sources first on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}


def end_line(ok: int, failed: int, errors: int, stored: int) -> str:
    """The last line a sweep writes to stderr."""
    return (f"toyrelu: {ok} finished, {failed} failed, {errors} errors (retried by the next "
            f"run), {stored} already stored")


def stored_runs(path: Path) -> pd.DataFrame:
    with Store(path, create=False) as store:
        return store.runs()


# --------------------------------------------------------------------------- sweep, export


def test_sweep_smoke_stores_every_run_of_the_preset(smoke_store: Path) -> None:
    runs = stored_runs(smoke_store)
    assert sorted(runs["run_id"]) == sorted(c.run_id for c in SMOKE.configs())
    assert (runs["status"] == "ok").all()
    assert sorted(zip(runs["n_train"], runs["seed"], strict=True)) == [
        (T, s) for T in (3, 5, 30, 300) for s in (0, 1)
    ]


def test_export_csv_has_one_row_per_run_and_the_documented_columns(
    smoke_store: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(capsys, "export", "--store", smoke_store)
    assert (code, err) == (0, "")
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns[: len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS
    assert len(table) == 8 and table["run_id"].is_unique
    stored = stored_runs(smoke_store).set_index("run_id")
    table = table.set_index("run_id").loc[stored.index]
    assert (table["status"] == "ok").all()
    for name in ("n_features", "n_hidden", "n_train", "seed", "steps"):
        np.testing.assert_array_equal(table[name], stored[name], err_msg=name)
    # CSV floats are written with repr precision, so they read back exactly.
    for name in ("sparsity", "lr", "weight_decay", "train_loss", "test_loss", "W_norm", "b_norm",
                 "wall_seconds"):
        np.testing.assert_array_equal(table[name].to_numpy(float),
                                      stored[name].to_numpy(float), err_msg=name)


def test_export_csv_to_a_file(smoke_store: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "runs.csv"
    code, out, err = run_cli(capsys, "export", "--store", smoke_store, "--out", target)
    assert (code, out, err) == (0, "", "")
    assert len(pd.read_csv(target)) == 8


def test_export_to_a_closed_pipe_stops_quietly(smoke_store: Path) -> None:
    # ``toyrelu export --out - | head -1``: the reader is gone before the rows are written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "toyrelu", "export", "--store", str(smoke_store), "--out", "-"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=python_path_env(),
            timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141


def test_export_json(smoke_store: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "export", "--store", smoke_store, "--format", "json")
    assert (code, err) == (0, "")
    records = json.loads(out)
    assert len(records) == 8
    stored = stored_runs(smoke_store).set_index("run_id")
    for record in records:
        assert list(record)[: len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS
        row = stored.loc[record["run_id"]]
        assert record["status"] == "ok" and record["error"] is None
        assert record["n_train"] == row["n_train"] and record["seed"] == row["seed"]
        # pandas writes JSON floats with 10 decimal places.
        for name in ("train_loss", "test_loss", "W_norm", "b_norm"):
            assert_close(record[name], row[name], rtol=0, atol=1e-10, what=name)


def test_export_json_keeps_small_values(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "runs.sqlite"
    config = RunConfig(n_features=20, n_train=3, steps=50, n_test=200, eps=1e-12)
    with Store(path) as store:
        store.put(config.run_id, config.to_dict(),
                  {"status": "ok", "error": None, "train_loss": 3e-12,
                   "test_loss": 1.23456789e-7, "W_norm": 1.0, "b_norm": 0.5,
                   "wall_seconds": 0.1}, {})
    code, out, _ = run_cli(capsys, "export", "--store", path, "--format", "json")
    assert code == 0
    [record] = json.loads(out)
    assert record["eps"] == 1e-12
    assert record["train_loss"] == 3e-12
    assert record["test_loss"] == 1.23456789e-7


def test_sweep_overrides_make_a_new_grid(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", path, "--n-train", "3,7", "--seeds", "0",
            "--steps", "50", "--n-features", "20", "--workers", "1"]
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (0, "")
    assert f"toyrelu: preset smoke: 2 runs into {path}" in err
    assert err.splitlines()[-1] == end_line(2, 0, 0, 0)
    runs = stored_runs(path)
    assert sorted(runs["n_train"]) == [3, 7]
    expected = [SMOKE.base.replace(n_train=T, seed=0, steps=50, n_features=20) for T in (3, 7)]
    assert sorted(runs["run_id"]) == sorted(c.run_id for c in expected)
    assert set(runs["seed"]) == {0} and set(runs["steps"]) == {50}
    assert set(runs["n_features"]) == {20}
    # The rest comes from the smoke base.
    assert set(runs["n_hidden"]) == {2} and set(runs["sparsity"]) == {0.9}
    assert set(runs["n_test"]) == {500}
    # Warmup is left unset, so it scales with the new steps: round(0.05 * 50) = round(2.5) = 2.
    assert runs["warmup_steps"].isna().all()
    with Store(path, create=False) as store:
        for run_id in runs["run_id"]:
            config = RunConfig.from_dict(store.config(run_id))
            assert config.warmup_steps is None and config.warmup == 2

    # The same command again runs nothing.
    code, _, err = run_cli(capsys, *argv)
    assert code == 0
    assert err.splitlines()[-1] == end_line(0, 0, 0, 2)


def test_a_sweep_whose_runs_all_fail_exits_1_and_says_where_the_reasons_are(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", path, "--n-train", "3", "--seeds", "0,1",
            "--steps", "50", "--n-features", "20", "--lr", "1e6", "--workers", "1"]
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[-2:] == [
        end_line(0, 2, 0, 0),
        "toyrelu: error: every run trained failed (2); the reasons are in the error column of "
        f"toyrelu export --store {path}"]
    # Nothing new trained and nothing failed: the rerun itself went well.
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and err.splitlines()[-1] == end_line(0, 0, 0, 2)


def test_a_sweep_whose_runs_all_stop_on_errors_exits_1_and_the_next_run_retries_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def no_memory(config, **kwargs):
        raise MemoryError("cannot allocate W")

    path = tmp_path / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", path, "--n-train", "3", "--seeds", "0,1",
            "--steps", "50", "--n-features", "20", "--workers", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(training, "run", no_memory)
        code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[-2:] == [
        end_line(0, 0, 2, 0),
        "toyrelu: error: no run trained finished (0 failed, 2 errors); the reasons are in the "
        f"error column of toyrelu export --store {path}"]
    assert set(stored_runs(path)["error"]) == {"MemoryError: cannot allocate W"}
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and err.splitlines()[-1] == end_line(2, 0, 0, 0)


def test_runs_lost_by_the_cluster_are_counted_in_the_last_line_and_trained_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", path, "--n-train", "3", "--seeds", "0,1",
            "--steps", "50", "--n-features", "20", "--workers", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(executors, "executor", lambda *args: Losing(lambda c: True))
        code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[-2:] == [
        "toyrelu: 0 finished, 0 failed, 0 errors (retried by the next run), 0 already stored, "
        "2 lost by the cluster (trained by the next run)",
        "toyrelu: error: no run trained finished (0 failed, 0 errors, 2 lost by the cluster); "
        f"the reasons are in the error column of toyrelu export --store {path}"]
    table = pd.read_csv(io.StringIO(run_cli(capsys, "export", "--store", path)[1]))
    assert set(table["status"]) == {"lost"} and set(table["error"]) == {LOST_REASON}
    assert not table["kept"].any()

    with monkeypatch.context() as patch:
        patch.setattr(executors, "executor", lambda *args: Losing(lambda c: c.seed == 1))
        code, _, err = run_cli(capsys, *argv)
    assert code == 0 and err.splitlines()[-1] == (
        "toyrelu: 1 finished, 0 failed, 0 errors (retried by the next run), 0 already stored, "
        "1 lost by the cluster (trained by the next run)")
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and err.splitlines()[-1] == end_line(1, 0, 0, 1)
    assert set(stored_runs(path)["status"]) == {"ok"}


def test_retry_failed_trains_the_failed_runs_again(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", path, "--n-train", "3", "--seeds", "0",
            "--steps", "50", "--n-features", "20", "--lr", "1e6,1e-3", "--workers", "1"]
    assert run_cli(capsys, *argv)[0] == 0
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and err.splitlines()[-1] == end_line(0, 0, 0, 2)
    code, _, err = run_cli(capsys, *argv, "--retry-failed")
    assert err.splitlines()[-2] == end_line(0, 1, 0, 1)
    assert code == 1  # every run it trained failed again
    args = cli.build_parser().parse_args(["reproduce", "--retry-failed"])
    assert args.retry_failed


def untrainable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any sweep that gets as far as training fail the test."""
    def run_sweep(*args, **kwargs):
        raise AssertionError("the sweep trained")

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)


def test_a_sweep_into_a_read_only_store_fails_before_training(
    store_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    before = store_copy.read_bytes()
    untrainable(monkeypatch)
    if os.geteuid() == 0:
        # File modes do not stop root: open every connection read-only instead, as SQLite
        # opens a file its user may not write.
        real_connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda target, **kwargs: real_connect(
            f"file:{target}?mode=ro", uri=True, **kwargs))
    else:
        store_copy.chmod(0o444)
    argv = ["sweep", "--preset", "smoke", "--store", store_copy, "--workers", "1"]
    assert_one_error_line(*run_cli(capsys, *argv), f"store: {store_copy} is read-only")
    assert store_copy.read_bytes() == before


def test_a_sweep_into_a_store_missing_a_column_fails_before_training(
    store_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    conn = sqlite3.connect(store_copy)
    conn.execute("ALTER TABLE runs DROP COLUMN error")
    conn.close()
    untrainable(monkeypatch)
    argv = ["sweep", "--preset", "smoke", "--store", store_copy, "--workers", "1"]
    assert_one_error_line(*run_cli(capsys, *argv), f"store: {store_copy} is not a toyrelu "
                          "store (table runs has no column error)")


@pytest.mark.parametrize("argv", [["--bogus"], ["--bogus", "sweep"], ["-x"]])
def test_an_option_before_the_command_is_named_as_unknown(argv: list[str],
                                                           capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, "")
    assert err == (f"toyrelu: error: unrecognized arguments: {argv[0]} (options follow a "
                   "command: toyrelu COMMAND --help)\n")


def test_sweep_with_a_diverging_run_stores_it_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite"
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", path, "--n-train",
                           "3", "--seeds", "0,1", "--steps", "50", "--n-features", "20",
                           "--lr", "1e6,1e-3", "--workers", "1")
    assert code == 0
    assert err.splitlines()[-1] == end_line(2, 2, 0, 0)
    code, out, _ = run_cli(capsys, "export", "--store", path)
    table = pd.read_csv(io.StringIO(out))
    failed = table[table["lr"] == 1e6]
    assert len(failed) == 2 and (failed["status"] == "failed").all()
    assert failed["error"].str.startswith("diverged: loss is ").all()
    assert failed["train_loss"].isna().all()
    assert (table[table["lr"] == 1e-3]["status"] == "ok").all()


def test_export_arrays_of_one_run(smoke_store: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    config = SMOKE.base.replace(n_train=30, seed=1)
    target = tmp_path / "out.npz"
    code, out, err = run_cli(capsys, "export", "--store", smoke_store, "--run", config.run_id,
                             "--arrays", target)
    assert (code, err) == (0, "")
    assert out.strip() == (f"toyrelu: wrote W, b, H, X_indptr, X_indices, X_data of run "
                           f"{config.run_id} to {target}")
    with np.load(target) as npz:
        arrays = dict(npz)
    assert sorted(arrays) == sorted(["W", "b", "H", "X_indptr", "X_indices", "X_data"])
    W, b, H = arrays["W"], arrays["b"], arrays["H"]
    assert W.shape == (2, 50) and b.shape == (50,) and H.shape == (30, 2)
    indptr, indices, values = arrays["X_indptr"], arrays["X_indices"], arrays["X_data"]
    assert indptr.shape == (31,) and indptr[0] == 0 and indptr[-1] == len(indices) == len(values)
    X = np.zeros((30, 50))
    X[np.repeat(np.arange(30), np.diff(indptr)), indices] = values
    # Nonempty training examples have unit norm (docs/experiment.md section 2); float32 data.
    norms = np.linalg.norm(X, axis=1)
    assert_close(norms[norms > 0], np.ones(int((norms > 0).sum())), rtol=1e-6, what="|x|")
    # H = X W^T; rtol 1e-6 because the stored H was accumulated in float32.
    assert_close(H, X @ W.T.astype(np.float64), rtol=1e-6, what="H")
    with Store(smoke_store, create=False) as store:
        for name, array in store.arrays(config.run_id).items():
            np.testing.assert_array_equal(arrays[name], array, err_msg=name)


def test_export_arrays_writes_the_named_file(smoke_store: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    run_id = SMOKE.configs()[0].run_id
    target = tmp_path / "W_run"
    code, out, _ = run_cli(capsys, "export", "--store", smoke_store, "--run", run_id,
                           "--arrays", target)
    assert code == 0 and out.strip().endswith(f"to {target}")
    assert target.is_file()


# ------------------------------------------------------------------- figures, reproduce


def check_figures(folder: Path) -> None:
    for name in FIGURES:
        png, svg = folder / f"{name}.png", folder / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert "<svg" in svg.read_text()[:1000], svg
    assert plt.get_fignums() == []


def test_figures_writes_png_and_svg(smoke_store: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "figs"
    code, out, err = run_cli(capsys, "figures", "--store", smoke_store, "--out", folder)
    assert (code, err) == (0, "")
    assert out.strip() == (f"toyrelu: wrote {', '.join(f'{n}.png' for n in FIGURES)} "
                           f"(and SVG twins) to {folder}")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{n}.{ext}" for n in FIGURES for ext in ("png", "svg")
    )
    check_figures(folder)


def test_reproduce_writes_summary_figures_and_store(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "out"
    code, out, err = run_cli(capsys, "reproduce", "--preset", "smoke", "--out", folder,
                             "--workers", "1")
    assert code == 0
    assert end_line(8, 0, 0, 0) in err
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1] == f"toyrelu: figures and summary.md in {folder}"
    assert all(line[:3] in ("ok ", "NOT") for line in lines[:3])
    check_figures(folder)

    runs = stored_runs(folder / "runs.sqlite")
    assert sorted(runs["run_id"]) == sorted(c.run_id for c in SMOKE.configs())
    text = (folder / "summary.md").read_text()
    md = text.splitlines()
    assert md[0] == "# toyrelu reproduce: smoke"
    assert "Runs: 8 finished, 0 failed." in md
    assert "| n_train | 3, 5, 30, 300 |" in md and "| seed | 0, 1 |" in md
    assert "| n_features | 50 |" in md and "| steps | 300 |" in md
    assert sum(line.endswith((" | yes |", " | no |")) for line in md) == 3
    for name in FIGURES:
        assert f"![{name}.png]({name}.png)" in md
    # The per-T table agrees with the stored runs: mean test loss over the two seeds.
    start = md.index("m = 2")
    body = md[start + 4:start + 8]
    for T, row in zip((3, 5, 30, 300), body, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        mean = runs[runs["n_train"] == T]["test_loss"].mean()
        assert cells[:3] == [str(T), "2", f"{mean:.4g}"]


# --------------------------------------------------------------------- typed config options


def parsed_overrides(*argv: str) -> dict:
    args = cli.build_parser().parse_args(["sweep", "--store", "x.sqlite", *argv])
    return options.overrides(args)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--n-features", "1e3"], {"n_features": [1000]}),
    (["--n-train", "3, 10_000,inf,,"], {"n_train": [3, 10_000, math.inf]}),
    (["--seeds", "0,1"], {"seed": [0, 1]}),
    (["--seed", "2"], {"seed": [2]}),
    (["--warmup-steps", "none,20"], {"warmup_steps": [None, 20]}),
    (["--decay-bias", "yes,off,TRUE,0"], {"decay_bias": [True, False, True, False]}),
    (["--sparsity", "0.5,1e-1", "--lr", "inf"], {"sparsity": [0.5, 0.1], "lr": [math.inf]}),
    (["--schedule", "constant", "--dtype", "float64"],
     {"schedule": ["constant"], "dtype": ["float64"]}),
    (["--loss-reduction", "mean,sum"], {"loss_reduction": ["mean", "sum"]}),
    ([], {}),
])
def test_overrides_are_parsed_by_the_fields_type(argv: list[str], expected: dict) -> None:
    values = parsed_overrides(*argv)
    assert values == expected
    for name, parsed in values.items():
        # 1e3 is the integer 1000, not the float: the run_id of n_features=1000.0 differs.
        assert [type(v) for v in parsed] == [type(v) for v in expected[name]], name


@pytest.mark.parametrize(("argv", "message"), [
    (["--n-features", "2.5"], "n_features: '2.5' is not a valid value (expected int)"),
    (["--n-train", "2.5"], "n_train: '2.5' is not a valid value (expected an integer or inf)"),
    (["--warmup-steps", "x"], "warmup_steps: 'x' is not a valid value (expected int or none)"),
    (["--decay-bias", "maybe"], "decay_bias: 'maybe' is not a valid value (expected true or "
                                "false)"),
    (["--lr", "fast"], "lr: 'fast' is not a valid value (expected float)"),
    (["--steps", " "], "steps: empty value"),
    (["--schedule", "linear"], "schedule: 'linear' must be one of cosine, quarter_cosine, "
                               "constant"),
    (["--n-repeated", "2", "--repeats", "2"], "repeats: 2 examples x 2 repeats must fit in "
                                              "n_train = 3"),
    (["--eps", "0"], "eps: 0.0 must be in (0, inf)"),
    (["--eps", "nan"], "eps: nan must be in (0, inf)"),
    (["--lr", "inf"], "lr: inf must be in (0, inf)"),
    (["--beta1", "1"], "beta1: 1.0 must be in [0, 1)"),
    (["--weight-decay", "inf"], "weight_decay: inf must be in [0, inf)"),
])
def test_a_value_the_field_cannot_take_is_one_line(argv: list[str], message: str,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store",
                             tmp_path / "runs.sqlite", "--n-train", "3", *argv)
    assert (code, out, err) == (2, "", f"toyrelu: error: {message}\n")
    assert not (tmp_path / "runs.sqlite").exists()


def test_every_override_shows_the_fields_documentation(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["sweep", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, doc in field_docs().items():
        assert f"--{name.replace('_', '-')} " in text
        assert " ".join(doc.replace("``", "").split()) in text, name
    assert "--seed INT, --seeds INT" in text and "--n-train INT|inf" in text
    assert "--schedule cosine|quarter_cosine|constant" in text


def test_sensitivity_seeds_are_typed_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["sensitivity", "--base", "smoke", "--out", tmp_path / "out", "--seeds"]
    assert_one_error_line(*run_cli(capsys, *argv, "0,x"),
                          "seed: 'x' is not a valid value (expected int)")
    assert_one_error_line(*run_cli(capsys, *argv, ","), "seeds: give at least one seed")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- presets


def test_the_parser_and_presets_load_no_heavy_library() -> None:
    # ``toyrelu --help`` and ``toyrelu presets`` answer in a fraction of a second because they
    # never import torch, numba, pandas or matplotlib (the commands that need them do, inside).
    code = ("import sys, contextlib, io; from toyrelu import cli; cli.build_parser(); "
            "out = io.StringIO(); stdout = contextlib.redirect_stdout(out); "
            "stdout.__enter__(); code = cli.main(['presets']); stdout.__exit__(None, None, None); "
            "print(code, sorted(m for m in ('torch', 'numba', 'pandas', 'matplotlib') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=python_path_env(), timeout=120, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "0 []\n")


def test_python_m_toyrelu_presets() -> None:
    done = subprocess.run([sys.executable, "-m", "toyrelu", "presets"], capture_output=True,
                          text=True, env=python_path_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(PRESETS)
    # smoke: 4 T x 2 seeds; quick: 15 T x 4 seeds; paper: the paper's 20 T and infinity x 4
    # seeds (docs/experiment.md section 5); quick and paper under both procedures.
    assert [line.rsplit("(", 1)[1] for line in lines[:3]] == ["8 runs)", "120 runs)",
                                                              "168 runs)"]
    assert lines[0] == f"smoke: {SMOKE.description} (8 runs)"


def test_restarts_store_every_initialisation_and_mark_the_kept_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite"
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", path, "--workers",
                           "1", "--device", "cpu", "--n-train", "5,30", "--seeds", "0",
                           "--restarts", "3")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "export", "--store", path)
    table = pd.read_csv(io.StringIO(out))
    assert len(table) == 6 and sorted(table["restart"].unique()) == [0, 1, 2]
    for _, group in table.groupby("n_train"):
        # Restarts share the dataset and differ in the init: one kept, the lowest train loss.
        assert group["kept"].sum() == 1
        assert group.loc[group["kept"], "train_loss"].item() == group["train_loss"].min()
        assert group["train_loss"].nunique() == 3


@pytest.mark.parametrize(("command", "flags"), [
    ("sweep", []), ("sweep", ["--gpu-cells"]), ("sweep", ["--gpu-dots"]),
    ("sweep", ["--gpu-cells", "--gpu-dots"]), ("reproduce", ["--gpu-cells"]),
    ("reproduce", ["--gpu-dots"]), ("sensitivity", ["--gpu-cells"]),
    ("sensitivity", ["--gpu-dots"]), ("sweep", ["--gpu-batch-rows", "1000"]),
    ("reproduce", ["--gpu-batch-rows", "1"]), ("sensitivity", ["--gpu-batch-rows", "1500000"]),
])
def test_gpu_options_reach_the_executor(command: str, flags: list[str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a GPU were here: the executor is asked for the split-cell step, the tensor-core
    # passes and smaller batches exactly when their flags are given (the runs themselves train
    # on the CPU).
    asked: list[tuple] = []
    monkeypatch.setattr(placement, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(executors, "executor", lambda *args: asked.append(args) or InProcess())
    where = (["--base", "smoke", "--knobs", "decay_bias", "--seeds", "0", "--out", tmp_path]
             if command == "sensitivity" else
             ["--preset", "smoke", "--n-train", "5", "--seeds", "0",
              *(["--out", tmp_path] if command == "reproduce" else
                ["--store", tmp_path / "runs.sqlite"])])
    code, _, err = run_cli(capsys, command, *where, *flags)
    assert code == 0, err
    rows = int(flags[-1]) if "--gpu-batch-rows" in flags else 2_000_000
    assert [args[1:] for args in asked] == [("cuda", "--gpu-cells" in flags,
                                             "--gpu-dots" in flags, rows)]


def test_few_gpu_batches_on_a_cluster_get_a_note_with_rows_that_spread_them(
        capsys: pytest.CaptureFixture) -> None:
    # The paper preset is 4 batches of the default size: 8 GPUs would take 2.24x the time of
    # an even spread by the cost model.
    configs = PRESETS["paper"].configs()

    def spread(rows: int) -> float:
        batches = GpuBatches(max_rows=rows).batches(configs)
        return makespan([sum(cost(c) for c in b) for b in batches], 8)

    placement._note_few_batches(configs, 2_000_000, 8)
    err = capsys.readouterr().err
    found = re.fullmatch(r"toyrelu: note: 4 GPU batches keep 8 GPUs busy 2.24x as long as an "
                         r"even spread would; --gpu-batch-rows (\d+) makes (\d+), (\S+)x "
                         r"\(smaller batches fill a GPU less well, and a run's numbers change "
                         r"in rounding with its batch\)\n", err)
    assert found, err
    rows, count = int(found[1]), int(found[2])
    assert count == len(GpuBatches(max_rows=rows).batches(configs))
    assert float(found[3]) == round(spread(rows), 2) <= placement.BALANCED < spread(2 * rows)
    # Balanced enough, one GPU, or nothing smaller to make: no note.
    placement._note_few_batches(PRESETS["heatmap"].configs(), 2_000_000, 8)
    placement._note_few_batches(configs, 2_000_000, 1)
    placement._note_few_batches(configs[:1], 2_000_000, 8)
    assert capsys.readouterr().err == ""



@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--restarts", "0"], "restarts: 0 must be an integer >= 1"),
        (["--restarts", "2", "--restart", "1"], "restarts: give either"),
        (["--device", "tpu"], "device: 'tpu' must be one of auto, cpu, cuda"),
        (["--device", "cpu", "--gpu-cells"], "gpu-cells: needs a CUDA GPU"),
        (["--device", "cpu", "--gpu-dots"], "gpu-dots: needs a CUDA GPU"),
        (["--device", "cpu", "--gpu-batch-rows", "1000"], "gpu-batch-rows: needs a CUDA GPU"),
        (["--n-train", "1e400x"], "n_train: '1e400x' is not a valid value (expected an integer "
                                  "or inf)"),
        (["--n-train", "inf", "--n-repeated", "1", "--repeats", "5"],
         "n_repeated: repeated data needs a finite n_train"),
        (["--n-train", "10", "--n-repeated", "3", "--repeats", "5"], "repeats: 3 examples x 5"),
    ],
)
def test_bad_run_options_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store",
                             tmp_path / "runs.sqlite", *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"toyrelu: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "runs.sqlite").exists()


def test_a_gpu_requested_where_there_is_none_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toyrelu.engines import gpu

    monkeypatch.setattr(gpu, "available", lambda: False)
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store",
                           tmp_path / "runs.sqlite", "--device", "cuda")
    assert code == 2
    assert err == ("toyrelu: error: device: cuda was requested but no usable CUDA GPU (with "
                   "triton) is here\n")


def test_infinite_T_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "runs.sqlite"
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", path, "--workers",
                           "1", "--device", "cpu", "--n-train", "30,inf", "--seeds", "0",
                           "--batch-size", "20")
    assert code == 0, err
    runs = stored_runs(path)
    assert sorted(runs["n_train"]) == [30, np.inf]
    assert (runs["status"] == "ok").all()


def test_reproduce_with_infinite_T_summarises_it(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "reproduce", "--preset", "smoke", "--out", tmp_path,
                             "--workers", "1", "--device", "cpu", "--n-train", "5,30,inf",
                             "--seeds", "0", "--batch-size", "20")
    assert code == 0, err
    # The largest T is infinity: its feature count comes from its stored W, like every T's.
    (line,) = [x for x in out.splitlines() if "T = ∞:" in x]
    assert "nan" not in line and "features per seed with D > 0.1" in line
    table = (tmp_path / "summary.md").read_text()
    assert "| inf |" in table

"""Bad input on the command line: one line naming the field and its allowed range, exit code 2,
no traceback, and nothing stored lost; stores that are folders, garbage or missing; interrupts.
Called in process through ``toyrelu.cli.main``, as in test_cli.py."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import assert_one_error_line, run_cli
from toyrelu.cli import placement
from toyrelu.runs import limits, sweep
from toyrelu.runs.executors import GpuBatches
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.store import Store

SMOKE = PRESETS["smoke"]


def stored_runs(path: Path) -> pd.DataFrame:
    with Store(path, create=False) as store:
        return store.runs()


def garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a database\n" * 64)
    return path


BAD_SWEEPS = {
    "sparsity": (["--sparsity", "1.5"], "sparsity: 1.5"),
    "negative T": (["--n-train", "-3"], "n_train: -3"),
    "word T": (["--n-train", "abc"], "n_train: 'abc'"),
    "word in a list": (["--n-train", "3,abc"], "n_train: 'abc'"),
    "empty list": (["--n-train", ","], "n_train: empty"),
    "negative seed": (["--seeds", "-1"], "seed: -1"),
    "seed twice": (["--seeds", "0,1,0"], "seed: 0 is given twice"),
    "negative in e-notation": (["--weight-decay", "-1e-2"], "weight_decay: -0.01 must be in"),
    "negative inf": (["--lr", "-inf"], "lr: -inf must be in"),
    "negative in a list": (["--n-train", "-1,-2"], "n_train: -1 must be"),
    "T twice": (["--n-train", "3,5,3.0"], "n_train: 3 is given twice"),
    "warmup over steps": (["--warmup-steps", "400"], "warmup_steps: 400"),
    "preset": (["--preset", "nope"], "preset: 'nope'"),
    "workers 0": (["--workers", "0"], "workers: 0"),
    "workers word": (["--workers", "x"], "--workers"),
    "dtype": (["--dtype", "float16"], "dtype: 'float16'"),
    "unknown option": (["--n-featurs", "5"], "--n-featurs"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_bad_sweep_input_leaves_a_valid_store_intact(
    case: str, store_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    extra, names = BAD_SWEEPS[case]
    before = store_copy.read_bytes()
    runs_before = stored_runs(store_copy)
    argv = ["sweep", "--preset", "smoke", "--store", store_copy, "--workers", "1", *extra]
    assert_one_error_line(*run_cli(capsys, *argv), names)
    assert store_copy.read_bytes() == before
    assert stored_runs(store_copy).equals(runs_before)


@pytest.mark.parametrize("case", ["sparsity", "preset", "workers 0"])
def test_bad_sweep_input_creates_no_store(case: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    extra, names = BAD_SWEEPS[case]
    path = tmp_path / "new" / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", path, "--workers", "1", *extra]
    assert_one_error_line(*run_cli(capsys, *argv), names)
    assert not path.exists() and not path.parent.exists()


def test_store_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = run_cli(capsys, "sweep", "--preset", "smoke", "--store", tmp_path, "--workers", "1")
    assert_one_error_line(*result, f"store: {tmp_path} is a directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["sweep", "export", "figures"])
def test_store_that_is_a_garbage_file_is_refused_and_unchanged(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = garbage(tmp_path / "runs.sqlite")
    before = path.read_bytes()
    argv = {
        "sweep": ["sweep", "--preset", "smoke", "--workers", "1"],
        "export": ["export"],
        "figures": ["figures", "--out", tmp_path / "figs"],
    }[command]
    result = run_cli(capsys, *argv, "--store", path)
    assert_one_error_line(*result, f"store: {path} is not a toyrelu store")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]


@pytest.mark.parametrize("command", ["export", "figures"])
def test_missing_store_is_an_error_and_is_not_created(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "missing.sqlite"
    extra = ["--out", tmp_path / "figs"] if command == "figures" else []
    result = run_cli(capsys, command, "--store", path, *extra)
    assert_one_error_line(*result, f"store: {path} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_missing_run(store_copy: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "x.npz"
    result = run_cli(capsys, "export", "--store", store_copy, "--run", "0123456789abcdef",
                     "--arrays", target)
    assert_one_error_line(*result, "no run 0123456789abcdef")
    assert not target.exists()


def test_export_run_without_arrays(store_copy: Path, capsys: pytest.CaptureFixture) -> None:
    result = run_cli(capsys, "export", "--store", store_copy, "--run", "0123456789abcdef")
    assert_one_error_line(*result, "--run and --arrays")


def test_figures_of_a_store_without_finished_runs(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "runs.sqlite"
    Store(path).close()
    result = run_cli(capsys, "figures", "--store", path, "--out", tmp_path / "figs")
    assert_one_error_line(*result, "no finished runs")


def test_figures_says_which_settings_it_pools(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    store = tmp_path / "runs.sqlite"
    for steps in ("40", "60"):
        assert run_cli(capsys, "sweep", "--preset", "smoke", "--store", store, "--workers", "1",
                       "--n-train", "3,5", "--seeds", "0", "--steps", steps)[0] == 0
    code, _, err = run_cli(capsys, "figures", "--store", store, "--out", tmp_path / "figs")
    assert code == 0
    assert "toyrelu: note: the figures pool runs that differ in steps" in err.splitlines()


def test_reproduce_reports_only_its_own_runs_in_a_shared_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "out"
    first = ("reproduce", "--preset", "smoke", "--out", folder, "--workers", "1",
             "--n-train", "3,5,30", "--seeds", "0", "--steps", "60")
    assert run_cli(capsys, *first)[0] == 0
    code, _, _ = run_cli(capsys, "reproduce", "--preset", "smoke", "--out", folder,
                         "--workers", "1", "--n-train", "3,5,8,30", "--seeds", "1",
                         "--steps", "60")
    assert code == 0
    # The store keeps both sweeps, the summary speaks of the second one alone.
    assert len(stored_runs(folder / "runs.sqlite")) == 7
    md = (folder / "summary.md").read_text().splitlines()
    assert "Runs: 4 finished, 0 failed." in md
    table = md[md.index("m = 2") + 4:]
    assert [row.split("|")[1].strip() for row in table[:4]] == ["3", "5", "8", "30"]
    assert all(row.split("|")[2].strip() == "1" for row in table[:4])  # one seed per T


def test_reproduce_into_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.write_text("keep me")
    result = run_cli(capsys, "reproduce", "--preset", "smoke", "--out", out, "--workers", "1")
    assert_one_error_line(*result, f"out: {out}")
    assert out.read_text() == "keep me"


def test_no_command(capsys: pytest.CaptureFixture) -> None:
    assert_one_error_line(*run_cli(capsys), "command")


def test_figures_into_a_file(store_copy: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figs"
    out.write_text("keep me")
    result = run_cli(capsys, "figures", "--store", store_copy, "--out", out)
    assert_one_error_line(*result, f"out: {out}")


@pytest.mark.parametrize("option", ["--out", "--arrays"])
def test_export_into_a_missing_folder(option: str, store_copy: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "nowhere" / "x.csv"
    extra = ["--run", SMOKE.configs()[0].run_id] if option == "--arrays" else []
    result = run_cli(capsys, "export", "--store", store_copy, *extra, option, target)
    assert_one_error_line(*result, "nowhere")


def test_interrupted_sweep_exits_130(store_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    code, out, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", store_copy,
                             "--workers", "1")
    assert code == 130 and out == ""
    assert err.splitlines()[-1].startswith("toyrelu: interrupted; finished runs are stored")
    assert len(stored_runs(store_copy)) == 8


class Escaped(Exception):
    """Raised by the test's own handler: the signal reached it instead of main's."""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_end_a_sweep_like_ctrl_c(
        signum: int, code: int, store_copy: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler runs at once, on the next bytecode
        raise AssertionError("the signal did not stop the sweep")

    def escaped(signum: int, frame: object) -> None:
        raise Escaped(signum)

    previous = signal.signal(signum, escaped)  # whatever main does not catch fails the test
    try:
        monkeypatch.setattr(sweep, "run_sweep", signalled)
        result = run_cli(capsys, "sweep", "--preset", "smoke", "--store", store_copy,
                         "--workers", "1")
        # main, called with its arguments as from Python, puts the handler it found back
        assert signal.getsignal(signum) is escaped
    finally:
        signal.signal(signum, previous)
    name = signal.Signals(signum).name
    assert result[:2] == (code, "")
    assert result[2].splitlines()[-1] == (
        f"toyrelu: interrupted by {name}; finished runs are stored, rerun the same command "
        f"to resume")
    assert len(stored_runs(store_copy)) == 8


@pytest.mark.parametrize(("rows", "message"), [
    ("0", "gpu-batch-rows: 0 must be an integer from 1 to 2,000,000 (the largest batch timed)"),
    ("2000001", "gpu-batch-rows: 2000001 must be an integer from 1 to 2,000,000"),
    ("-5", "gpu-batch-rows: -5 must be an integer from 1 to 2,000,000"),
])
def test_gpu_batch_rows_out_of_range_is_one_line(rows: str, message: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "resolve_device", lambda device: "cuda")
    store = tmp_path / "runs.sqlite"
    code, out, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", store,
                             "--gpu-batch-rows", rows)
    assert (code, out) == (2, "") and not store.exists()
    assert err.startswith(f"toyrelu: error: {message}") and err.count("\n") == 1, err


def test_a_gpu_batch_that_does_not_fit_in_memory_names_the_rows_that_fit(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # The paper preset's largest batch (four runs of T = 500,000) is drawn on the host at once:
    # with 2 GiB, halving the rows gives the largest value whose batches fit.
    configs, memory = PRESETS["paper"].configs(), 2 * 2**30

    def largest(rows: int) -> float:
        return max(limits.task_bytes(b, "cuda")
                   for b in GpuBatches(max_rows=rows).batches(configs))

    reason = placement._batch_refusal(configs, 2_000_000, memory, "this machine")
    found = re.fullmatch(r"gpu-batch-rows: the largest GPU batch of up to 2,000,000 rows needs "
                         r"(.+) of host memory, more than the 2 GiB of this machine \(allowed: "
                         r"--gpu-batch-rows <= (\d+) here\)", reason or "")
    assert found, reason
    assert found[1] == limits.format_bytes(largest(2_000_000))
    rows = int(found[2])
    assert largest(rows) <= memory < largest(2 * rows)
    assert placement._batch_refusal(configs, rows, memory, "this machine") is None
    # On the command line: one line, exit code 2, no store.
    monkeypatch.setattr(placement, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(limits, "machine_memory", lambda: memory)
    store = tmp_path / "runs.sqlite"
    code, out, err = run_cli(capsys, "sweep", "--preset", "paper", "--store", store)
    assert (code, out) == (2, "") and not store.exists()
    assert err == f"toyrelu: error: {reason}\n"

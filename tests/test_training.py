"""training.run end to end: a tiny memorisation run converges, the result's arrays are consistent
(H = X W^T, CSR X), runs are reproducible bit for bit, the two engines agree, and a diverging run
comes back failed instead of raising."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import assert_close
from toyrelu.core import data, evaluation, metrics, model
from toyrelu.core.config import RunConfig
from toyrelu.engines import reference
from toyrelu.engines.cpu import cells, engine, kernels
from toyrelu.runs import training
from toyrelu.runs.training import RunResult, run


def memorisation_config(seed: int = 0, **changes) -> RunConfig:
    """The paper's small-T regime at toy size: m = 2, T = 3 sparse examples (about 5 active
    features each out of 100), 2,000 full-batch AdamW steps."""
    settings = dict(n_features=100, n_hidden=2, sparsity=0.95, n_train=3, steps=2000, lr=1e-2,
                    weight_decay=1e-2, n_test=200, seed=seed)
    return RunConfig(**{**settings, **changes})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_run_memorises_its_training_set(seed: int) -> None:
    result = run(memorisation_config(seed))
    assert result.status == "ok" and result.error is None
    # docs/experiment.md §1: predicting zero gives 1.0. Measured train loss 8e-9 to 2.1e-8 for
    # these seeds (float32 parameters, float64 evaluation); 1e-4 leaves 3+ orders of margin
    # while an optimiser that does not work stays near 1.
    assert result.values["train_loss"] < 1e-4
    # Memorising three points teaches nothing about fresh ones: the test loss stays near 1.
    assert result.values["test_loss"] > 0.5


def test_result_values_are_finite_and_recomputable() -> None:
    config = memorisation_config(steps=300, n_train=20)
    result = run(config)
    assert isinstance(result, RunResult) and result.config == config
    values = result.values
    assert {"train_loss", "test_loss", "W_norm", "b_norm", "wall_seconds"} <= set(values)
    assert all(math.isfinite(v) for v in values.values())
    assert values["wall_seconds"] > 0
    W64, b64 = result.W.astype(np.float64), result.b.astype(np.float64)
    # Losses are evaluated in float64 on the final parameters, as the mean of the per-example
    # losses: the same deterministic computation repeated here gives the same bits.
    train_set = data.train_set(config).astype("float64")
    test_set = data.test_set(config).astype("float64")
    assert values["train_loss"] == evaluation.example_losses(W64, b64, train_set).mean()
    # engine.loss sums over row tiles, another summation order: float64 rounding over 20 and
    # 200 examples, far under 1e-13.
    for name, X in (("train_loss", train_set), ("test_loss", test_set)):
        assert_close(values[name], engine.loss(W64, b64, X), rtol=1e-13, what=name)
    losses = evaluation.example_losses(W64, b64, test_set)
    assert values["test_loss"] == losses.mean()
    assert values["test_loss_median"] == np.median(losses)
    assert values["test_loss_p90"] == np.quantile(losses, 0.9)
    assert values["test_share_above_2"] == np.mean(losses > 2.0)
    W_norm, b_norm = metrics.norms(result.W, result.b)
    assert (values["W_norm"], values["b_norm"]) == (W_norm, b_norm)
    row = result.metrics()
    assert row["status"] == "ok" and row["error"] is None
    assert row["train_loss"] == values["train_loss"]


def test_hidden_vectors_are_X_times_W_transpose() -> None:
    config = memorisation_config(steps=100, n_train=50, n_hidden=3, sparsity=0.9)
    result = run(config)
    X_dense = result.X.to_dense().astype(np.float64)
    expected = X_dense @ result.W.astype(np.float64).T
    assert result.H.shape == (50, 3) and result.H.dtype == np.float32
    # H is a float32 sum of about 10 products per entry: a few roundings of 6e-8 each.
    assert_close(result.H, expected, rtol=1e-6, what="H = X W^T")
    # The stored X is the run's training set.
    np.testing.assert_array_equal(X_dense, data.train_set(config).to_dense())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_arrays_have_the_documented_shapes(dtype: str) -> None:
    config = memorisation_config(steps=50, n_train=30, n_hidden=5, n_features=60, dtype=dtype,
                                 sparsity=0.9)
    arrays = run(config).arrays()
    assert set(arrays) == {"W", "b", "H", "X_indptr", "X_indices", "X_data"}
    assert arrays["W"].shape == (5, 60) and arrays["W"].dtype == np.dtype(dtype)
    assert arrays["b"].shape == (60,) and arrays["b"].dtype == np.dtype(dtype)
    assert arrays["H"].shape == (30, 5)
    assert arrays["X_indptr"].shape == (31,)
    nnz = int(arrays["X_indptr"][-1])
    assert arrays["X_indices"].shape == (nnz,) and arrays["X_data"].shape == (nnz,)
    assert arrays["X_data"].dtype == np.dtype(dtype)
    # The CSR arrays alone rebuild the training set.
    rebuilt = data.SparseData(arrays["X_indptr"], arrays["X_indices"], arrays["X_data"], 60)
    np.testing.assert_array_equal(rebuilt.to_dense(), data.train_set(config).to_dense())


def test_same_config_twice_is_bitwise_identical() -> None:
    config = memorisation_config(steps=200, n_train=40, n_hidden=3, sparsity=0.9)
    first, second = run(config), run(config)
    for name in ("W", "b", "H"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.values["train_loss"] == second.values["train_loss"]


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_on_steps_reports_every_step(engine: str) -> None:
    calls: list[int] = []
    run(memorisation_config(steps=120, engine=engine), on_steps=calls.append)
    assert sum(calls) == 120


def test_reference_and_fused_engines_agree() -> None:
    config = memorisation_config(steps=200, n_train=30, n_hidden=3, sparsity=0.9, dtype="float64")
    fused = run(config)
    ref = run(config.replace(engine="reference"))
    assert fused.status == ref.status == "ok"
    # float64 AdamW trajectories agree to ~1e-14 (test_engine); 1e-9 as there.
    assert_close(fused.W, ref.W, rtol=1e-9, what="W")
    assert_close(fused.b, ref.b, rtol=1e-9, what="b")
    assert_close(fused.values["train_loss"], ref.values["train_loss"], rtol=1e-9,
                 what="train_loss")


def diverging_config(**changes) -> RunConfig:
    # lr 1e6 with weight decay 1e-2 scales the weights by 1 - lr * wd = -9999 per step, and
    # eps 1e-30 removes Adam's damping: the loss is no longer finite within ~20 steps.
    settings = dict(n_features=50, n_hidden=2, sparsity=0.9, n_train=20, steps=60, lr=1e6,
                    eps=1e-30, n_test=10)
    return RunConfig(**{**settings, **changes})


@pytest.mark.parametrize(
    "config",
    [diverging_config(), diverging_config(dtype="float64"), diverging_config(engine="reference")],
    ids=["fused-float32", "fused-float64", "reference"],
)
def test_diverging_run_comes_back_failed(config: RunConfig) -> None:
    result = run(config)  # must not raise
    assert result.status == "failed"
    assert result.error is not None and "\n" not in result.error
    assert "diverged" in result.error and "step" in result.error
    assert "train_loss" not in result.values and "wall_seconds" in result.values
    row = result.metrics()
    assert row["status"] == "failed" and row["error"] == result.error
    # The result keeps the initial parameters' shapes, but the store gets only the training
    # set: a diverged run has no trained W, b or H to show.
    assert result.W.shape == (2, 50) and result.H.shape == (20, 2)
    assert sorted(result.arrays()) == ["X_data", "X_indices", "X_indptr"]


def test_losses_are_on_the_paper_scale_whatever_the_training_reduction() -> None:
    config = memorisation_config(steps=200, n_train=10, loss_reduction="mean", lr=3e-2)
    result = run(config)
    W64, b64 = result.W.astype(np.float64), result.b.astype(np.float64)
    # Summed over features (reduction "sum"), not averaged as in training; float64 rounding
    # between two summation orders.
    train_set = data.train_set(config).astype("float64")
    assert_close(result.values["train_loss"], engine.loss(W64, b64, train_set, "sum"),
                 rtol=1e-13, what="train_loss")


def test_infinite_training_draws_a_fresh_batch_every_step() -> None:
    config = memorisation_config(n_train=math.inf, batch_size=16, steps=60, lr=1e-2)
    result = run(config)
    assert result.status == "ok"
    # The shown examples are batch_size fresh rows of the train stream, never trained on.
    assert result.X.n_examples == 16
    assert result.H.shape == (16, 2)
    batches = list(data.batches(config))
    assert len(batches) == 60
    assert all(b.n_examples == 16 for b in batches)
    assert not np.array_equal(batches[0].indices, batches[1].indices)
    W0, b0 = model.init_params(config)
    ref_W, ref_b = reference.train(config, iter(batches), W0, b0)
    # The same batches through the reference: as tight as the fixed-set engine comparison
    # (float32 parameters, 60 steps; tests/test_engine.py bounds 250 steps at 2e-6).
    assert_close(result.W, ref_W, rtol=2e-6, what="W")
    assert_close(result.b, ref_b, rtol=2e-5, atol=1e-7, what="b")


def test_kernel_kinds_name_the_compiled_steps_a_run_may_take() -> None:
    config = memorisation_config()
    assert training.kernel_kinds(config) == [(2, "float32", False)]
    big = config.replace(n_train=engine.CELLS_FROM, n_hidden=5, dtype="float64")
    assert training.kernel_kinds(big) == [(5, "float64", False), (5, "float64", True)]
    assert training.kernel_kinds(big.replace(n_train=math.inf)) == [(5, "float64", False)]
    assert training.kernel_kinds(big.replace(engine="reference")) == []
    # From CELLS_BELOW_HIDDEN hidden dimensions the split-cell step is never taken by default.
    wide = big.replace(n_hidden=engine.CELLS_BELOW_HIDDEN)
    assert training.kernel_kinds(wide) == [(wide.n_hidden, "float64", False)]
    narrow = wide.n_hidden - 1
    assert training.kernel_kinds(wide.replace(n_hidden=narrow)) == [(narrow, "float64", False),
                                                                   (narrow, "float64", True)]


def _signatures() -> dict[str, list]:
    """Every compiled signature of the m = 2 kernels, the split-cell ones and the engine's own."""
    out = {}
    for name, module in (("fused", kernels.module(2)), ("cells", cells.module(2)),
                         ("engine", engine)):
        for attr, value in vars(module).items():
            if hasattr(value, "signatures") and hasattr(value, "py_func"):
                out[f"{name}.{attr}"] = list(value.signatures)
    return out


def test_compile_kernels_compiles_everything_a_run_then_uses() -> None:
    for split in (False, True):
        training.compile_kernels(2, "float32", split)
    before = _signatures()
    assert before["fused.run_steps"] and before["cells.run_steps"]
    config = memorisation_config(n_features=40, n_train=engine.CELLS_FROM, steps=120)
    for run_config in (config, config.replace(n_train=math.inf, batch_size=50)):
        assert run(run_config).status == "ok"
    assert _signatures() == before

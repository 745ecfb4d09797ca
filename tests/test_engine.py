"""The fused engine against the plain-autograd reference (the oracle): loss and gradients on the
same inputs, AdamW trajectories, invariances of the loss, divergence, and the lr schedule."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
import torch

from helpers import assert_close, assert_loss_and_grad_match, to_csr
from toyrelu.core import data, evaluation, model, trainer
from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.schedule import learning_rates
from toyrelu.engines import reference
from toyrelu.engines.cpu import engine, kernels

DTYPES = ["float32", "float64"]
HIDDEN = [1, 2, 3, 5]
# Past m = 3 the kernels split their gradient pass (kernels.SPLIT_ABOVE) into chunks of 4
# hidden dimensions: 5 and 9 check splits with a short last chunk, 16 one with full chunks.
HIDDEN_GRAD = [*HIDDEN, 9, 16]


def awkward_batch(n_train: int, n_features: int, dtype: str, seed: int = 0) -> SparseData:
    """Sparse unit-norm rows plus the edge cases: all-zero rows (first, last, and inside a
    group of four rows) and a row with a single nonzero."""
    dense = data.sample(n_train, n_features, 0.95, np.random.default_rng(seed), dtype).to_dense()
    dense[[0, 6, n_train - 1]] = 0.0
    dense[1] = 0.0
    dense[1, n_features // 3] = 1.0
    return to_csr(dense)


def random_params(m: int, n: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """W ~ N(0, 0.5^2) and b ~ N(0, 0.5^2): about half the pre-activations are positive, so
    both the ReLU's active and inactive branches are exercised everywhere."""
    rng = np.random.default_rng(seed)
    return (0.5 * rng.standard_normal((m, n))).astype(dtype), rng.normal(0, 0.5, n).astype(dtype)


# Gradient tolerance, relative to the largest gradient entry. float32: the engine and PyTorch
# sum ~300 x 200 terms in different orders; rounding gives ~1e-7 relative (measured <= 7e-7),
# and 1e-5 keeps 14x margin. float64: measured <= 1.1e-15; 1e-12 still fails at once
# on any float32 intermediate (~1e-7).
GRAD_RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("m", HIDDEN_GRAD)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_grad_match_reference(dtype: str, m: int, reduction: str) -> None:
    # 303 rows: a full tile of 256 plus 47 = 11 groups of 4 and a remainder of 3.
    n_train, n = 303, 200
    X = awkward_batch(n_train, n, dtype, seed=m)
    W, b = random_params(m, n, dtype, seed=10 + m)
    positive = (X.to_dense() @ W.T @ W + b > 0).mean()
    assert 0.3 < positive < 0.7, positive

    assert W.dtype == b.dtype == np.dtype(dtype)
    value, gW, gb = engine.loss_and_grad(W, b, X, reduction)
    assert_loss_and_grad_match((value, gW, gb), reference.loss_and_grad(W, b, X, reduction),
                               W, b, rtol=GRAD_RTOL[dtype])
    # engine.loss runs the forward-only kernel over the same tiles: only the float64 flushes
    # may differ (measured 5e-10 in float32, 0 in float64).
    loss_rtol = {"float32": 1e-7, "float64": 1e-14}[dtype]
    assert_close(engine.loss(W, b, X, reduction), value, rtol=loss_rtol, what="engine.loss")


def sparse_case(n_train: int, dtype: str) -> tuple[SparseData, np.ndarray, np.ndarray]:
    """A batch and parameters at m = SPARSE_FROM for which some groups of examples take the
    sparse gradients and others the dense loops (asserted): negative biases leave few
    features active, as in trained runs, except for the first half of the rows, made 4 times
    longer."""
    m = kernels.SPARSE_FROM
    dense = awkward_batch(n_train, 200, dtype, seed=m).to_dense()
    dense[: n_train // 2] *= 4
    X = to_csr(dense)
    W, b = random_params(m, X.n_features, dtype, seed=30 + m)
    b = (b - 1.0).astype(dtype)
    active = dense.astype(np.float64) @ W.T.astype(np.float64) @ W + b > 0
    shares = []  # per group of rows the kernels take together: the share of features listed
    for lo in range(0, n_train, kernels.TILE_ROWS):
        hi = min(lo + kernels.TILE_ROWS, n_train)
        split = lo + (hi - lo) // kernels.GROUP_ROWS * kernels.GROUP_ROWS
        bounds = [*range(lo, split + 1, kernels.GROUP_ROWS), *range(split + 1, hi + 1)]
        shares += [active[a:z].any(axis=0).mean() for a, z in zip(bounds, bounds[1:], strict=False)]
    sparse = np.array(shares) <= kernels.SPARSE_SHARE
    assert 0.2 < sparse.mean() < 0.9, sparse.mean()
    return X, W, b


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_over_the_active_features_match_reference(dtype: str) -> None:
    X, W, b = sparse_case(303, dtype)
    value, gW, gb = engine.loss_and_grad(W, b, X)
    assert_loss_and_grad_match((value, gW, gb), reference.loss_and_grad(W, b, X), W, b,
                               rtol=GRAD_RTOL[dtype])


def test_sparse_gradients_are_the_same_on_any_tiling() -> None:
    # The sparse groups add into a transposed buffer per tile, summed in tile order like the
    # dense ones: any number of tiles run side by side gives the same numbers bit for bit.
    X, W, b = sparse_case(700, "float32")

    def gradient(parallel: bool, batch: int) -> tuple[float, np.ndarray, np.ndarray]:
        gW, gb = np.zeros_like(W), np.zeros_like(b)
        tiles = (np.zeros((batch, *W.shape), W.dtype), np.zeros((batch, W.shape[1]), W.dtype),
                 np.zeros((batch, W.size), W.dtype))
        value = kernels.module(W.shape[0], parallel).loss_and_grad(
            W, b, X.indptr, X.indices, X.data, 1.0, gW, gb, *tiles)
        return value, gW, gb

    serial = gradient(False, 1)
    for batch in (2, 3):
        value, gW, gb = gradient(True, batch)
        assert value == serial[0]
        np.testing.assert_array_equal(gW, serial[1])
        np.testing.assert_array_equal(gb, serial[2])


@pytest.mark.parametrize("m", [2, 5])
def test_float32_gradient_is_close_to_float64_oracle(m: int) -> None:
    # docs/engines.md: float32 tiles flushed into float64 match a float64 reference to better
    # than 1e-6 relative (measured <= 4e-7 here); 2e-6 keeps that claim with 5x margin.
    X = awkward_batch(303, 200, "float64", seed=m)
    W, b = random_params(m, 200, "float64", seed=20 + m)
    _, gW, gb = engine.loss_and_grad(W.astype(np.float32), b.astype(np.float32), X)
    _, ref_gW, ref_gb = reference.loss_and_grad(W, b, X)
    assert_close(gW, ref_gW, rtol=2e-6, what="float32 dL/dW vs float64")
    assert_close(gb, ref_gb, rtol=2e-6, what="float32 dL/db vs float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_model_has_loss_one(dtype: str) -> None:
    # docs/experiment.md section 1: with unit-norm inputs, predicting zero gives exactly
    # L = 1.0 ("sum"); all-zero rows contribute 0, so here L is the fraction of non-empty rows.
    X = awkward_batch(100, 50, dtype)
    nonempty = float((np.diff(X.indptr) > 0).mean())
    zeros_W, zeros_b = np.zeros((2, 50), dtype), np.zeros(50, dtype)
    rtol = {"float32": 1e-6, "float64": 1e-14}[dtype]  # sum of ~100 rounded unit norms
    assert_close(engine.loss(zeros_W, zeros_b, X), nonempty, rtol=rtol, what="L at zero")
    assert_close(engine.loss(zeros_W, zeros_b, X, "mean"), nonempty / 50, rtol=rtol,
                 what="mean L at zero")


def test_loss_is_invariant_under_rotation_of_the_hidden_space() -> None:
    # h = W x and x' = ReLU(W^T h + b) = ReLU(W^T W x + b): W -> Q W leaves W^T W unchanged.
    m, n = 3, 150
    X = awkward_batch(120, n, "float64")
    W, b = random_params(m, n, "float64", seed=1)
    Q, R = np.linalg.qr(np.random.default_rng(2).standard_normal((m, m)))
    Q = Q * np.sign(np.diag(R))
    value, gW, gb = engine.loss_and_grad(W, b, X)
    rot_value, rot_gW, rot_gb = engine.loss_and_grad(Q @ W, b, X)
    # float64 sums whose terms differ by a few roundings of Q W: ~1e-15 relative.
    assert_close(rot_value, value, rtol=1e-12, what="rotated loss")
    assert_close(rot_gW, Q @ gW, rtol=1e-12, what="rotated dL/dW = Q dL/dW")
    assert_close(rot_gb, gb, rtol=1e-12, what="rotated dL/db")


def test_loss_is_equivariant_under_a_permutation_of_features() -> None:
    m, n = 3, 150
    X = awkward_batch(120, n, "float64")
    W, b = random_params(m, n, "float64", seed=3)
    perm = np.random.default_rng(4).permutation(n)
    X_perm = to_csr(X.to_dense()[:, perm])
    value, gW, gb = engine.loss_and_grad(W, b, X)
    p_value, p_gW, p_gb = engine.loss_and_grad(W[:, perm], b[perm], X_perm)
    # Same terms summed in another order: float64 roundings only.
    assert_close(p_value, value, rtol=1e-12, what="permuted loss")
    assert_close(p_gW, gW[:, perm], rtol=1e-12, what="permuted dL/dW")
    assert_close(p_gb, gb[perm], rtol=1e-12, what="permuted dL/db")
    # Reordering the examples changes nothing either (the loss averages over them).
    rows = np.random.default_rng(5).permutation(X.n_examples)
    r_value, r_gW, _ = engine.loss_and_grad(W, b, to_csr(X.to_dense()[rows]))
    assert_close(r_value, value, rtol=1e-12, what="row-permuted loss")
    assert_close(r_gW, gW, rtol=1e-12, what="row-permuted dL/dW")


def trajectory_config(m: int, dtype: str, decay_bias: bool, **changes) -> RunConfig:
    """250 AdamW steps with the default 5% warmup (12 steps), cosine decay to 0, a weight decay
    large enough to matter, and b ~ N(0, 1) so the bias decay is exercised from the start."""
    settings = dict(n_features=100, n_hidden=m, sparsity=0.9, n_train=60, steps=250, lr=1e-2,
                    weight_decay=0.05, decay_bias=decay_bias, bias_init="normal", dtype=dtype,
                    n_test=10, seed=0)
    return RunConfig(**{**settings, **changes})


def both_trajectories(config: RunConfig) -> tuple[np.ndarray, ...]:
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W, b = engine.train(config, X, W0, b0)
    ref_W, ref_b = reference.train(config, X, W0, b0)
    assert W.dtype == ref_W.dtype == np.dtype(config.dtype)
    assert not np.array_equal(W, W0)  # it did train
    return W, b, ref_W, ref_b


# float64: measured <= 4.3e-14 relative after 250 steps. Rounding (1e-16) grows along the
# trajectory, and 1e-9 leaves room for that, while anything done in float32 would show ~1e-6.
FLOAT64_TRAJECTORY_RTOL = 1e-9


@pytest.mark.parametrize("decay_bias", [True, False])
@pytest.mark.parametrize("m", [*HIDDEN, 10])
def test_float64_trajectory_matches_reference(m: int, decay_bias: bool) -> None:
    W, b, ref_W, ref_b = both_trajectories(trajectory_config(m, "float64", decay_bias))
    assert_close(W, ref_W, rtol=FLOAT64_TRAJECTORY_RTOL, what="final W")
    assert_close(b, ref_b, rtol=FLOAT64_TRAJECTORY_RTOL, what="final b")


@pytest.mark.parametrize(
    "changes",
    [dict(schedule="constant"), dict(loss_reduction="mean", lr=3e-2), dict(warmup_steps=0),
     dict(n_train=300, n_features=60, sparsity=0.8, steps=100)],
    ids=["constant", "mean", "no-warmup", "two-tiles"],
)
def test_float64_trajectory_matches_reference_for_other_settings(changes: dict) -> None:
    W, b, ref_W, ref_b = both_trajectories(trajectory_config(2, "float64", True, **changes))
    assert_close(W, ref_W, rtol=FLOAT64_TRAJECTORY_RTOL, what="final W")
    assert_close(b, ref_b, rtol=FLOAT64_TRAJECTORY_RTOL, what="final b")


# float32 trajectories (relative to the largest entry). Rounding differences between the two
# implementations (summation order, fused multiply-adds) are ~1e-7 per step and the training
# dynamics amplify them: a feature whose pre-activation sits near 0 switches on a step earlier
# or later, and Adam's normalised steps turn a tiny gradient difference into a full-size update.
# Measured over 32 runs (m in {1,2,3,5} x 4 seeds x decay_bias) the deviation was <= 8.5e-7 in W
# and <= 5.2e-6 in b; for these seed-0 runs <= 3.4e-7 in W and <= 3.7e-6 in b. The bounds below
# keep about 6x margin on those.
FLOAT32_TRAJECTORY_RTOL = {"W": 2e-6, "b": 2e-5}


@pytest.mark.parametrize("decay_bias", [True, False])
@pytest.mark.parametrize("m", HIDDEN)
def test_float32_trajectory_matches_reference(m: int, decay_bias: bool) -> None:
    W, b, ref_W, ref_b = both_trajectories(trajectory_config(m, "float32", decay_bias))
    assert_close(W, ref_W, rtol=FLOAT32_TRAJECTORY_RTOL["W"], what="final W")
    assert_close(b, ref_b, rtol=FLOAT32_TRAJECTORY_RTOL["b"], what="final b")


def torch_adamw_steps(p: np.ndarray, grads: list[np.ndarray], lr: float, wd: float):
    """(p, exp_avg, exp_avg_sq) after torch.optim.AdamW steps with the given gradients."""
    param = torch.nn.Parameter(torch.tensor(p))
    optimizer = torch.optim.AdamW([param], lr=lr, weight_decay=wd, betas=(0.9, 0.999), eps=1e-8)
    for g in grads:
        param.grad = torch.tensor(g)
        optimizer.step()
    state = optimizer.state[param]
    return (param.detach().numpy(), state["exp_avg"].numpy(), state["exp_avg_sq"].numpy())


@pytest.mark.parametrize(
    "dtype",
    [
        "float32",
        "float64",
    ],
)
def test_adamw_update_matches_torch(dtype: str) -> None:
    rng = np.random.default_rng(0)
    p = rng.standard_normal(64).astype(dtype)
    grads = [rng.standard_normal(64).astype(dtype) for _ in range(3)]
    expected_p, expected_m, expected_v = torch_adamw_steps(p, grads, lr=1e-2, wd=1e-2)
    got_p, got_m, got_v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for step, g in enumerate(grads, start=1):
        kernels.module(2).adamw(got_p, g, got_m, got_v, lr=1e-2, weight_decay=1e-2, beta1=0.9,
                                beta2=0.999, eps=1e-8, step=step)
    # torch's float32 arithmetic, done in the same order, is at most a few roundings
    # (2^-24 = 6e-8) away: 16 of them as the bound; in float64 the same reasoning gives ~1e-15,
    # bounded at 1e-12.
    rtol = {"float32": 16 * 2.0**-24, "float64": 1e-12}[dtype]
    assert_close(got_m, expected_m, rtol=rtol, what="exp_avg")
    assert_close(got_v, expected_v, rtol=rtol, what="exp_avg_sq")
    # The parameter moves by ~lr per step; compare the moves, not the O(1) parameters. A move
    # is a difference of two O(1) numbers, so it carries their rounding: 10x the bound.
    assert_close(got_p - p, expected_p - p, rtol=10 * rtol, what="update")


def test_reference_train_emits_no_warning() -> None:
    config = RunConfig(n_features=20, n_hidden=2, sparsity=0.8, n_train=5, steps=3, n_test=5)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    # Regression: float() of the loss tensor (which requires grad) made PyTorch warn, and the
    # suite's filterwarnings=error turned the first reference.train of a process into an error.
    # PyTorch warns once per process; warn_always makes the check independent of test order.
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            reference.train(config, X, W0, b0)
    finally:
        torch.set_warn_always(False)


def test_engine_memorises_three_orthogonal_points() -> None:
    # STYLE.md: a tiny model memorises a handful of orthogonal points. Three one-hot examples,
    # m = 2: a triangle of hidden vectors with a negative bias reconstructs each exactly.
    n = 6
    X = SparseData(np.arange(4, dtype=np.int64), np.arange(3, dtype=np.int32),
                   np.ones(3, np.float32), n)
    config = RunConfig(n_features=n, n_hidden=2, sparsity=0.5, n_train=3, steps=300, lr=3e-2,
                       weight_decay=0.0, n_test=1)
    W0, b0 = model.init_params(config)
    assert engine.loss(W0, b0, X) > 0.5
    W, b = engine.train(config, X, W0, b0)
    # Measured 6e-13 (float32 parameters, float64 evaluation); 1e-6 is far below the 0.86 start.
    assert engine.loss(W.astype(np.float64), b.astype(np.float64), X.astype("float64")) < 1e-6


def test_train_is_chunk_invariant_and_reports_progress() -> None:
    config = trajectory_config(3, "float32", True, steps=40)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W0_copy, b0_copy = W0.copy(), b0.copy()
    W, b = engine.train(config, X, W0, b0)
    calls: list[int] = []
    W_chunked, b_chunked = engine.train(config, X, W0, b0, chunk=7, on_steps=calls.append)
    assert calls == [7, 7, 7, 7, 7, 5]
    # Adam state carries over between chunks: bitwise the same run.
    np.testing.assert_array_equal(W_chunked, W)
    np.testing.assert_array_equal(b_chunked, b)
    # The initial parameters are not modified in place.
    np.testing.assert_array_equal(W0, W0_copy)
    np.testing.assert_array_equal(b0, b0_copy)


def diverging_config(dtype: str) -> RunConfig:
    # lr 1e6 with weight decay 1e-2 multiplies the weights by 1 - lr * wd = -9999 per step, and
    # eps 1e-30 removes Adam's damping: the loss overflows within ~20 steps.
    return RunConfig(n_features=50, n_hidden=2, sparsity=0.9, n_train=20, steps=60, lr=1e6,
                     eps=1e-30, dtype=dtype, n_test=10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_learning_rate_raises_diverged(dtype: str) -> None:
    config = diverging_config(dtype)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    with pytest.raises(trainer.Diverged) as excinfo:
        engine.train(config, X, W0, b0)
    message = str(excinfo.value)
    assert "\n" not in message and "step" in message
    assert isinstance(excinfo.value, RuntimeError)


@pytest.mark.parametrize("train", [engine.train, reference.train], ids=["fused", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_initial_weights_raises_diverged_at_step_0(train, dtype: str) -> None:
    config = RunConfig(n_features=40, n_hidden=2, sparsity=0.8, n_train=30, steps=20,
                       dtype=dtype, n_test=10)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W0[1, np.unique(X.indices)[0]] = np.nan  # a column that some example reads
    with pytest.raises(trainer.Diverged, match=r"^loss is nan at step 0$"):
        train(config, X, W0, b0)


@pytest.mark.parametrize("warmup", [10, 1, 0])
def test_cosine_schedule_warms_up_then_decays_to_exactly_zero(warmup: int) -> None:
    config = RunConfig(steps=200, lr=3e-3, warmup_steps=warmup)
    lrs = learning_rates(config)
    assert lrs.shape == (200,) and lrs.dtype == np.float64
    assert lrs[0] == (0.0 if warmup else 3e-3)
    # docs/experiment.md section 3: linear warmup from 0, peak at the end of warmup, cosine to
    # 0 at the last step. lr * s / w and lr * 0.5 * (1 + cos(0)) are single roundings: 1e-15
    # relative.
    assert_close(lrs[:warmup], 3e-3 * np.arange(warmup) / max(warmup, 1), rtol=1e-15,
                 what="warmup")
    assert lrs[warmup] == 3e-3
    assert lrs[-1] == 0.0
    assert (np.diff(lrs[: warmup + 1]) > 0).all()
    assert (np.diff(lrs[warmup:]) < 0).all()
    # The cosine is symmetric about its midpoint: lr(start + k) + lr(end - k) = lr.
    decay = lrs[warmup:]
    assert_close(decay + decay[::-1], np.full(len(decay), 3e-3), rtol=1e-14, what="symmetry")


def test_quarter_cosine_schedule_decays_as_cos_of_a_quarter_period_to_exactly_zero() -> None:
    config = RunConfig(steps=101, lr=2e-3, warmup_steps=1, schedule="quarter_cosine")
    lrs = learning_rates(config)
    assert lrs[0] == 0.0 and lrs[1] == 2e-3 and lrs[-1] == 0.0
    # Progress p = (s - 1) / 99 after the one warmup step; lr cos(pi p / 2), written as
    # sin(pi (1 - p) / 2): the two agree to a few roundings, 1e-15 relative to the peak.
    progress = np.arange(100) / 99
    assert_close(lrs[1:], 2e-3 * np.cos(0.5 * np.pi * progress), rtol=1e-15, what="decay")
    # A quarter cosine stays higher than the half cosine at every step in between.
    assert (lrs[2:-1] > learning_rates(config.replace(schedule="cosine"))[2:-1]).all()


def test_example_losses_are_each_rows_summed_squared_error() -> None:
    config = RunConfig(n_features=60, n_hidden=3, sparsity=0.8, n_train=25, bias_init="normal",
                       dtype="float64")
    X = data.train_set(config)
    W, b = model.init_params(config)
    dense = X.to_dense()
    expected = ((np.maximum((dense @ W.T) @ W + b, 0.0) - dense) ** 2).sum(axis=1)
    # float64 sums of 60 terms in another order: rounding at 1e-15 relative.
    assert_close(evaluation.example_losses(W, b, X), expected, rtol=1e-13, what="per example")
    assert_close(evaluation.example_losses(W, b, X).mean(), engine.loss(W, b, X), rtol=1e-13,
                 what="mean")


def test_constant_schedule_is_flat_after_warmup() -> None:
    lrs = learning_rates(RunConfig(steps=100, lr=2e-3, schedule="constant"))
    assert RunConfig(steps=100).warmup == 5
    assert lrs[0] == 0.0
    assert (lrs[5:] == 2e-3).all()
    assert_close(lrs[:5], 2e-3 * np.arange(5) / 5, rtol=1e-15, what="warmup")  # one rounding


# Threads: the row tiles of a step are shared between threads and summed in tile order, so the
# numbers are the same bit for bit for any thread count and any number of tiles per region.


def run_module(config: RunConfig, parallel: bool, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``config.steps`` AdamW steps through one compiled module, with ``batch`` tiles a region."""
    X = data.train_set(config)
    W, b = model.init_params(config)
    done, _ = kernels.module(config.n_hidden, parallel).run_steps(
        W=W, b=b, indptr=X.indptr, indices=X.indices, data=X.data,
        scale=1.0 / config.n_train, lrs=learning_rates(config), step_lo=0,
        step_hi=config.steps, weight_decay_W=config.weight_decay,
        weight_decay_b=config.weight_decay, beta1=config.beta1, beta2=config.beta2,
        eps=config.eps, mW=np.zeros_like(W), vW=np.zeros_like(W), mb=np.zeros_like(b),
        vb=np.zeros_like(b), batch=batch,
    )
    assert done == config.steps
    return W, b


@pytest.mark.parametrize("m", [2, 3])
def test_parallel_tiles_give_bitwise_the_serial_result(m: int) -> None:
    # 700 rows: two full tiles of 256 and a ragged one, whose row count is not a multiple of 4.
    config = trajectory_config(m, "float32", True, n_train=700, steps=30)
    W, b = run_module(config, parallel=False, batch=1)
    for batch in (1, 2, 3, 8):
        W_par, b_par = run_module(config, parallel=True, batch=batch)
        np.testing.assert_array_equal(W_par, W)
        np.testing.assert_array_equal(b_par, b)


def inputs(config: RunConfig) -> tuple[SparseData, np.ndarray, np.ndarray]:
    """The run's training set and initial (W, b)."""
    return data.train_set(config), *model.init_params(config)


def test_train_gives_the_same_numbers_on_any_thread_count() -> None:
    config = trajectory_config(2, "float32", True, n_train=600, steps=40)
    X, W0, b0 = inputs(config)
    threads = min(2, numba.get_num_threads())
    W1, b1 = engine.train(config, X, W0, b0, threads=1)
    W2, b2 = engine.train(config, X, W0, b0, threads=threads)
    np.testing.assert_array_equal(W2, W1)
    np.testing.assert_array_equal(b2, b1)


def test_train_restores_the_callers_thread_setting() -> None:
    config = trajectory_config(2, "float32", True, n_train=600, steps=2)
    X, W0, b0 = inputs(config)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        engine.train(config, X, W0, b0, threads=numba.config.NUMBA_NUM_THREADS)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_train_refuses_more_threads_than_numba_has() -> None:
    config = trajectory_config(2, "float32", True, steps=2)
    X, W0, b0 = inputs(config)
    with pytest.raises(ValueError, match="^threads: "):
        engine.train(config, X, W0, b0, threads=numba.config.NUMBA_NUM_THREADS + 1)


def test_default_threads_use_the_pool_only_for_big_steps() -> None:
    assert engine.default_threads(100, 10_000) == 1
    assert engine.default_threads(1_000, 10_000) == numba.get_num_threads()

"""The batched GPU engine (toyrelu.engines.gpu, Triton kernels) against the autograd reference: loss
and gradients on the same inputs, AdamW trajectories, batching many runs, divergence of one run of a
batch, streamed batches (T = infinity), the batch key and training snapshots; the tensor-core passes
likewise, and both kinds compiled for sm_90 without a GPU.

Without CUDA the kernels run in Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 is set
before Triton is imported. The interpreter runs each operation of each program in NumPy, so
sizes are tiny (n <= 40, T <= 45, <= 30 steps); the blocks and tails still get exercised because
the tests also use tiny tile sizes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from helpers import assert_close, assert_loss_and_grad_match, to_csr  # noqa: E402
from toyrelu.core import data, model, trainer
from toyrelu.core.config import RunConfig  # noqa: E402
from toyrelu.core.data import SparseData  # noqa: E402
from toyrelu.core.schedule import learning_rates  # noqa: E402
from toyrelu.engines import gpu, reference  # noqa: E402
from toyrelu.engines.cpu import engine

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = ["float32", "float64"]
# Tiny tiles: every axis is split into several blocks with ragged tails (45 rows over blocks of
# 8, 30 features over blocks of 4 and 8, tiles of 8 rows), as at paper sizes with the defaults.
TINY = gpu.Blocks(rows_BE=8, rows_BF=4, cols_BE=4, cols_BF=8, tile=8, update_BF=8,
                  programs=10**6)
# One program per run and axis where possible: a run's sums then do not depend on the batch.
WHOLE = gpu.Blocks(programs=1)


def awkward_batch(n_train: int, n_features: int, dtype: str, seed: int = 0) -> SparseData:
    """Sparse unit-norm rows plus the edge cases: all-zero rows (first, last, two inside) and a
    row with a single nonzero."""
    dense = data.sample(n_train, n_features, 0.8, np.random.default_rng(seed), dtype).to_dense()
    dense[[0, 6, 9, n_train - 1]] = 0.0
    dense[1] = 0.0
    dense[1, n_features // 3] = 1.0
    return to_csr(dense)


def random_params(m: int, n: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """W, b ~ N(0, 0.5^2): about half the pre-activations are positive, so both branches of
    the ReLU are exercised everywhere, at the nonzeros too."""
    rng = np.random.default_rng(seed)
    return (0.5 * rng.standard_normal((m, n))).astype(dtype), rng.normal(0, 0.5, n).astype(dtype)


# Gradient tolerances, relative to the largest entry, as for the CPU engine (test_engine): in
# float32 the kernels and PyTorch sum ~45 x 40 terms in different orders, ~1e-7 relative
# (measured <= 2.6e-7 over these 6 cases); 1e-5 keeps a wide margin. In float64, measured
# <= 5.3e-16; 1e-12 still fails at once on anything computed in float32 (~1e-7).
GRAD_RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_grad_match_reference(dtype: str, m: int, reduction: str) -> None:
    X = awkward_batch(45, 40, dtype, seed=m)
    W, b = random_params(m, 40, dtype, seed=10 + m)
    assert W.dtype == b.dtype == np.dtype(dtype)
    assert_loss_and_grad_match(gpu.loss_and_grad(W, b, X, reduction, device=DEVICE),
                               reference.loss_and_grad(W, b, X, reduction), W, b,
                               rtol=GRAD_RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_blocks_split_every_axis_and_match_reference(dtype: str) -> None:
    # Six row blocks (the last of 5 rows), two feature chunks in pass A, six row items and four
    # feature blocks (the last of 6) in pass B: any indexing slip would be an O(1) error.
    X = awkward_batch(45, 30, dtype, seed=3)
    W, b = random_params(3, 30, dtype, seed=4)
    value, gW, gb = gpu.loss_and_grad(W, b, X, "sum", device=DEVICE, blocks=TINY)
    ref_value, ref_gW, ref_gb = reference.loss_and_grad(W, b, X, "sum")
    assert_close(gW, ref_gW, rtol=GRAD_RTOL[dtype], what="dL/dW")
    assert_close(gb, ref_gb, rtol=GRAD_RTOL[dtype], what="dL/db")
    assert_close(value, ref_value, rtol=GRAD_RTOL[dtype], what="loss")


# The tensor-core passes (Blocks.dots), tiles of 16 (the smallest dot side): 45 rows in three
# blocks (the last of 13) and two items, 40 features in three chunks / blocks (the last of 8).
TINY_DOTS = gpu.Blocks(rows_BE=16, rows_BF=16, cols_BE=16, cols_BF=16, tile=32, update_BF=8,
                       programs=10**6, dots=True)


@pytest.mark.parametrize("tiles", ["tiny", "default"])
@pytest.mark.parametrize("m", [1, 3, 16])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_core_passes_match_reference(dtype: str, m: int, tiles: str) -> None:
    # m = 1 and 3 pad the hidden side to 16 with zeros, m = 16 fills it. The interpreter's
    # "tf32x3" dot is a plain float32 product; on a GPU this test checks the TF32 splitting
    # (three products keep ~2^-22 of each, far inside the 1e-5 tolerance).
    X = awkward_batch(45, 40, dtype, seed=m)
    W, b = random_params(m, 40, dtype, seed=20 + m)
    blocks = TINY_DOTS if tiles == "tiny" else gpu.default_blocks(m, dtype, dots=True)
    assert blocks.dots
    assert_loss_and_grad_match(gpu.loss_and_grad(W, b, X, "sum", device=DEVICE, blocks=blocks),
                               reference.loss_and_grad(W, b, X, "sum"), W, b,
                               rtol=GRAD_RTOL[dtype])


def test_float32_gradient_is_close_to_float64_oracle() -> None:
    # docs/engines.md: the CPU engine's float32 gradient is within 1e-6 of a float64 reference
    # (its tests bound it at 2e-6); the GPU kernels sum in float32 over at most one tile of rows
    # or one row of features, then in float64, and meet the same bound (measured <= 1.5e-7
    # over 8 seeds).
    X = awkward_batch(45, 40, "float64", seed=5)
    W, b = random_params(2, 40, "float64", seed=6)
    _, gW, gb = gpu.loss_and_grad(W.astype(np.float32), b.astype(np.float32),
                                  X.astype(np.float32), device=DEVICE)
    _, ref_gW, ref_gb = reference.loss_and_grad(W, b, X)
    assert_close(gW, ref_gW, rtol=2e-6, what="float32 dL/dW vs float64")
    assert_close(gb, ref_gb, rtol=2e-6, what="float32 dL/db vs float64")


def test_zero_model_has_loss_one() -> None:
    # docs/experiment.md section 1: predicting zero gives L = 1 per non-empty unit-norm row, so
    # here L is the fraction of non-empty rows; a sum of 45 roundings of 1.0 in float64: 1e-14.
    X = awkward_batch(45, 40, "float64")
    nonempty = float((np.diff(X.indptr) > 0).mean())
    value, gW, gb = gpu.loss_and_grad(np.zeros((2, 40)), np.zeros(40), X, device=DEVICE)
    assert_close(value, nonempty, rtol=1e-14, what="L at zero")
    assert not gW.any() and not gb.any()  # ReLU(0) = 0 everywhere: no gradient at all


def trajectory_config(dtype: str, decay_bias: bool, **changes) -> RunConfig:
    """30 AdamW steps with 5% warmup (2 steps), cosine decay to 0, a weight decay large enough
    to matter, and b ~ N(0, 1) so that the bias decay is exercised from the start."""
    settings = dict(n_features=24, n_hidden=2, sparsity=0.8, n_train=15, steps=30, lr=1e-2,
                    weight_decay=0.05, decay_bias=decay_bias, bias_init="normal", dtype=dtype,
                    n_test=10, seed=0)
    return RunConfig(**{**settings, **changes})


def train_gpu(configs: list[RunConfig], Xs: list, inits: list, **kwargs) -> list:
    return gpu.train_many(configs, Xs, [W for W, _ in inits], [b for _, b in inits],
                          device=DEVICE, **kwargs)


# float64: the CPU engine's bound (test_engine), measured <= 4.4e-16 here after 30 steps.
# float32: rounding differences of ~1e-7 per step, amplified by Adam's normalised steps;
# measured <= 1.1e-7 in W and <= 4.3e-8 in b for these runs, bounded as the CPU engine's (2e-6
# in W, 2e-5 in b, set for 250 steps over 32 runs).
TRAJECTORY_RTOL = {"float32": {"W": 2e-6, "b": 2e-5}, "float64": {"W": 1e-9, "b": 1e-9}}


@pytest.mark.parametrize("decay_bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_trajectory_matches_reference(dtype: str, decay_bias: bool) -> None:
    config = trajectory_config(dtype, decay_bias)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W0_copy = W0.copy()
    [(W, b)] = train_gpu([config], [X], [(W0, b0)])
    ref_W, ref_b = reference.train(config, X, W0, b0)
    assert W.dtype == b.dtype == np.dtype(dtype)
    assert not np.array_equal(W, W0)  # it did train
    np.testing.assert_array_equal(W0, W0_copy)  # and left the initial W alone
    assert_close(W, ref_W, rtol=TRAJECTORY_RTOL[dtype]["W"], what="final W")
    assert_close(b, ref_b, rtol=TRAJECTORY_RTOL[dtype]["b"], what="final b")


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_core_trajectory_matches_reference(dtype: str) -> None:
    config = trajectory_config(dtype, True, n_hidden=5)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    [(W, b)] = train_gpu([config], [X], [(W0, b0)], blocks=TINY_DOTS)
    ref_W, ref_b = reference.train(config, X, W0, b0)
    assert_close(W, ref_W, rtol=TRAJECTORY_RTOL[dtype]["W"], what="final W")
    assert_close(b, ref_b, rtol=TRAJECTORY_RTOL[dtype]["b"], what="final b")


@pytest.mark.parametrize(
    "changes",
    [dict(n_hidden=3, schedule="constant", loss_reduction="mean", lr=3e-2),
     dict(n_hidden=1, warmup_steps=0, n_train=40)],
    ids=["m3-constant-mean", "m1-no-warmup"],
)
def test_float64_trajectory_matches_reference_for_other_settings(changes: dict) -> None:
    config = trajectory_config("float64", True, **changes)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    [(W, b)] = train_gpu([config], [X], [(W0, b0)])
    ref_W, ref_b = reference.train(config, X, W0, b0)
    assert_close(W, ref_W, rtol=1e-9, what="final W")
    assert_close(b, ref_b, rtol=1e-9, what="final b")


def batch_of_runs(steps: int = 12) -> tuple[list[RunConfig], list, list]:
    """Three runs of one batch key with different T (not multiples of any block) and seeds."""
    configs = [trajectory_config("float32", True, n_train=T, seed=s, steps=steps)
               for T, s in ((7, 1), (20, 2), (13, 3))]
    return configs, [data.train_set(c) for c in configs], [model.init_params(c) for c in configs]


def test_batch_gives_each_run_the_result_it_has_alone() -> None:
    configs, Xs, inits = batch_of_runs(steps=8)
    calls: list[int] = []
    batch = train_gpu(configs, Xs, inits, blocks=WHOLE, chunk=3, on_steps=calls.append)
    assert calls == [3, 3, 2]
    for config, X, init, (W, b) in zip(configs, Xs, inits, batch, strict=True):
        [(W1, b1)] = train_gpu([config], [X], [init], blocks=WHOLE)
        # With one program per run and axis, a run's sums do not depend on its neighbours.
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)


def test_batch_split_for_the_gpu_matches_reference() -> None:
    # The default split (feature chunks, row items sized from the whole batch) changes only
    # the order of sums: each run still follows its own reference trajectory.
    configs, Xs, inits = batch_of_runs()
    for config, X, (W0, b0), (W, b) in zip(configs, Xs, inits, train_gpu(configs, Xs, inits),
                                           strict=True):
        ref_W, ref_b = reference.train(config, X, W0, b0)
        assert_close(W, ref_W, rtol=TRAJECTORY_RTOL["float32"]["W"], what="final W")
        assert_close(b, ref_b, rtol=TRAJECTORY_RTOL["float32"]["b"], what="final b")


def test_a_diverging_run_is_frozen_and_the_others_finish() -> None:
    configs, Xs, inits = batch_of_runs(steps=8)
    W0, b0 = inits[1][0].copy(), inits[1][1]
    W0[1, Xs[1].indices[0]] = np.nan  # a column that some example reads
    inits = [inits[0], (W0, b0), inits[2]]
    results = train_gpu(configs, Xs, inits, blocks=WHOLE)
    assert isinstance(results[1], trainer.Diverged)
    assert str(results[1]) == "loss is nan at step 0"  # engine.train's message
    for i in (0, 2):
        [(W, b)] = train_gpu([configs[i]], [Xs[i]], [inits[i]], blocks=WHOLE)
        np.testing.assert_array_equal(results[i][0], W)
        np.testing.assert_array_equal(results[i][1], b)


def test_huge_learning_rate_diverges_mid_run() -> None:
    # As test_engine: lr 1e6 and weight decay 1e-2 multiply the weights by -9999 per step, and
    # eps 1e-30 removes Adam's damping, so the loss overflows within ~20 steps.
    config = RunConfig(n_features=30, n_hidden=2, sparsity=0.8, n_train=12, steps=60, lr=1e6,
                       eps=1e-30, n_test=10)
    calls: list[int] = []
    with np.errstate(over="ignore", invalid="ignore"):  # the interpreter computes in NumPy
        [result] = train_gpu([config], [data.train_set(config)], [model.init_params(config)],
                             chunk=5, on_steps=calls.append)
    assert isinstance(result, trainer.Diverged)
    message = str(result)
    assert message.startswith("loss is ") and " at step " in message and "\n" not in message
    assert 0 < int(message.rsplit(" ", 1)[1]) < 60
    assert sum(calls) == 60 and len(calls) < 12  # stopped early, still reports every step


def reference_on_batches(config: RunConfig, batches: list[SparseData], W0: np.ndarray,
                         b0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """reference.train's loop with one batch per step: torch autograd and torch.optim.AdamW."""
    dtype = model.TORCH_DTYPES[config.dtype]
    W = torch.nn.Parameter(torch.tensor(W0, dtype=dtype))
    b = torch.nn.Parameter(torch.tensor(b0, dtype=dtype))
    optimizer = torch.optim.AdamW(
        [{"params": [W], "weight_decay": config.weight_decay},
         {"params": [b], "weight_decay": config.weight_decay if config.decay_bias else 0.0}],
        lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)
    for lr, X in zip(learning_rates(config), batches, strict=True):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.zero_grad()
        model.loss(W, b, reference.dense(X, config.dtype), config.loss_reduction).backward()
        optimizer.step()
    return W.detach().numpy(), b.detach().numpy()


def fresh_batches(config: RunConfig, size: int) -> list[SparseData]:
    generator = np.random.default_rng(config.seed + 100)
    return [data.sample(size, config.n_features, config.sparsity, generator, config.dtype)
            for _ in range(config.steps)]


def test_streamed_batches_match_reference() -> None:
    # T = infinity: a fresh batch every step, given as an iterator; a fixed-set run shares the
    # call (the two go through separate launches) and is unaffected by it.
    stream_config = trajectory_config("float64", True, steps=12, seed=4)
    fixed_config = trajectory_config("float64", True, steps=12, n_train=9)
    batches = fresh_batches(stream_config, 9)
    X = data.train_set(fixed_config)
    inits = [model.init_params(stream_config), model.init_params(fixed_config)]
    (W, b), (W_fixed, b_fixed) = gpu.train_many(
        [stream_config, fixed_config], [iter(batches), X], [W for W, _ in inits],
        [b for _, b in inits], device=DEVICE)
    ref_W, ref_b = reference_on_batches(stream_config, batches, *inits[0])
    assert_close(W, ref_W, rtol=1e-9, what="streamed W")  # float64, as the trajectories
    assert_close(b, ref_b, rtol=1e-9, what="streamed b")
    [(W_alone, b_alone)] = train_gpu([fixed_config], [X], [inits[1]])
    np.testing.assert_array_equal(W_fixed, W_alone)
    np.testing.assert_array_equal(b_fixed, b_alone)


def test_a_stream_repeating_the_training_set_equals_the_fixed_set() -> None:
    config = trajectory_config("float32", True, steps=10)
    X = data.train_set(config)
    init = model.init_params(config)
    [(W, b)] = train_gpu([config], [X], [init])
    [(W_stream, b_stream)] = train_gpu([config], [[X] * config.steps], [init])
    np.testing.assert_array_equal(W_stream, W)
    np.testing.assert_array_equal(b_stream, b)


def test_streams_must_last_and_keep_their_batch_size() -> None:
    config = trajectory_config("float32", True, steps=4)
    init = model.init_params(config)
    batches = fresh_batches(config, 5)
    with pytest.raises(ValueError, match="ended at step 3"):
        train_gpu([config], [iter(batches[:3])], [init])
    batches[2] = fresh_batches(config, 6)[2]
    with pytest.raises(ValueError, match="batch size must be fixed"):
        train_gpu([config], [iter(batches)], [init])


def test_adamw_scalars_are_named_per_step_in_float64() -> None:
    # torch.optim.AdamW's scalars at step s (1-based), as engines.cpu.kernels.adamw computes
    # them: the update kernel reads each by its name, so a swapped field would change a run.
    from toyrelu.engines.gpu.adamw import adamw_steps

    config = RunConfig(n_features=10, steps=7, lr=3e-2, weight_decay=0.1, decay_bias=False,
                       beta1=0.8, beta2=0.99, eps=1e-6)
    adamw = adamw_steps(config, torch.device("cpu"))
    for s, lr in enumerate(learning_rates(config).tolist(), start=1):
        expected = {"step_size": lr / (1.0 - 0.8**s), "root_bias2": math.sqrt(1.0 - 0.99**s),
                    "decay_W": 1.0 - lr * 0.1, "decay_b": 1.0, "one_minus_beta1": 1.0 - 0.8,
                    "beta2": 0.99, "one_minus_beta2": 1.0 - 0.99, "eps": 1e-6}
        for name, tensor in adamw.kernel_args().items():
            assert tensor.dtype == torch.float64 and tensor.shape == (7,)
            assert float(tensor[s - 1]) == expected[name], (name, s)


def test_batch_key_separates_what_must_be_shared() -> None:
    config = RunConfig(n_features=50, n_hidden=3, steps=100)
    key = gpu.batch_key(config)
    # Data and initialisation may differ within a batch.
    for change in (dict(n_train=7), dict(seed=5), dict(sparsity=0.5), dict(bias_init="normal"),
                   dict(n_test=3), dict(engine="reference"), dict(warmup_steps=5)):
        assert gpu.batch_key(config.replace(**change)) == key, change
    # Shape, dtype, schedule, optimiser and loss scale may not.
    for change in (dict(n_features=51), dict(n_hidden=2), dict(dtype="float64"), dict(steps=99),
                   dict(lr=2e-3), dict(warmup_steps=6), dict(schedule="constant"),
                   dict(weight_decay=0.0), dict(decay_bias=False), dict(beta1=0.8),
                   dict(beta2=0.99), dict(eps=1e-7), dict(loss_reduction="mean")):
        assert gpu.batch_key(config.replace(**change)) != key, change
    configs, Xs, inits = batch_of_runs(steps=2)
    with pytest.raises(ValueError, match="batch_key"):
        train_gpu([configs[0], configs[1].replace(lr=0.5)], Xs[:2], inits[:2])
    assert gpu.train_many([], [], [], [], device=DEVICE) == []


def test_both_passes_compile_for_sm90_and_dots_use_tensor_cores() -> None:
    # The interpreter runs the kernels' arithmetic, not the GPU compiler: compile them for
    # H100/H200 here (no GPU needed), in a process without TRITON_INTERPRET. The dots must
    # become tf32 wgmma (an fp32 "ieee" dot would fall back to FMAs), the FMA passes no matrix
    # instructions. The split-cell step's kernels compile too. Nothing spills registers.
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "compile_sm90.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, script, "--m", "3,16"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [x for x in out.stdout.splitlines() if x.startswith("m=")]
    passes = [x for x in lines if " cells " not in x]
    assert len(passes) == 8  # 2 m x (FMA, dots) x (pass A, pass B)
    for line in passes:
        expected = "wgmma.f32.tf32.tf32" if " dots " in line else "no mma"
        assert line.endswith(expected), line
    assert len(lines) == 22  # and per m the split-cell step's seven kernels
    for line in lines:
        assert " registers, spills 0/0 B," in line, line


def test_importing_gpu_does_not_import_triton() -> None:
    # The CPU-only install must be able to import the module (and ask whether it can run).
    code = ("import sys, toyrelu.engines.gpu as g; assert 'triton' not in sys.modules; "
            "print(g.available())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == str(torch.cuda.is_available())


@pytest.mark.parametrize(("cells", "dots"), [(False, False), (True, False), (True, True)],
                         ids=["dense", "split-cells", "split-cells-dots"])
def test_a_sweep_on_the_gpu_executor_stores_what_the_cpu_engine_gives(
        tmp_path, cells: bool, dots: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from toyrelu.engines.gpu import split as gpu_split
    from toyrelu.runs.executors import GpuBatches, InProcess
    from toyrelu.runs.store import Store
    from toyrelu.runs.sweep import run_sweep

    tried: list[int] = []  # steps offered to the split-cell step (--gpu-cells)
    original = gpu_split.SplitStep.sums
    monkeypatch.setattr(gpu_split.SplitStep, "sums",
                        lambda self, data, step: tried.append(step) or original(self, data, step))
    passes: list[bool] = []  # each batch's dense passes: tensor-core dots (--gpu-dots) or FMA
    from toyrelu.engines import gpu as gpu_api

    train_many = gpu_api.train_many
    monkeypatch.setattr(gpu_api, "train_many",
                        lambda *args, blocks, **kw: passes.append(blocks.dots)
                        or train_many(*args, blocks=blocks, **kw))

    base = RunConfig(n_features=24, n_hidden=2, sparsity=0.8, steps=20, n_test=50,
                     batch_size=6, lr=1e-2)
    configs = [base.replace(n_train=T, seed=s) for T in (3, 9, float("inf")) for s in (0, 1)]
    configs.append(base.replace(n_train=5, engine="reference"))
    with Store(tmp_path / "gpu.sqlite") as on_gpu, Store(tmp_path / "cpu.sqlite") as on_cpu:
        report = run_sweep(configs, on_gpu, GpuBatches(device=DEVICE, max_rows=20,
                                                       cells=cells, dots=dots))
        assert (report.ok, report.failed) == (7, 0)
        assert bool(tried) == cells  # fixed sets only; T = infinity streams its batches
        assert len(passes) > 1 and set(passes) == {dots}
        run_sweep(configs, on_cpu, InProcess())
        gpu_runs = on_gpu.runs().set_index("run_id").sort_index()
        cpu_runs = on_cpu.runs().set_index("run_id").sort_index()
        # Rows over 20 split the six fused runs into batches; each batch shares one launch.
        assert gpu_runs["batch_runs"].dropna().max() > 1
        for run_id in cpu_runs.index:
            # 20 float32 steps through two engines: the trajectory bound of tests/test_engine.py
            # for W; the losses are float64 evaluations of nearly equal parameters.
            assert_close(on_gpu.arrays(run_id)["W"], on_cpu.arrays(run_id)["W"], rtol=2e-6,
                         what=f"W of {run_id}")
            assert_close(gpu_runs.loc[run_id, "test_loss"], cpu_runs.loc[run_id, "test_loss"],
                         rtol=1e-5, what="test loss")


def test_snapshots_at_each_runs_steps_match_the_cpu_engine_and_change_nothing() -> None:
    # One batch of 14 steps (fixed sets and a stream) whose runs keep snapshots every 5, 4
    # and 0 steps: each run gets its own trainer.snapshot_steps, as host copies.
    configs = [trajectory_config("float64", True, snapshot_every=K, n_train=T, seed=s, steps=14)
               for K, T, s in ((5, 15, 0), (4, 9, 1), (0, 11, 2))]
    Xs: list = [data.train_set(c) for c in configs]
    Xs[1] = fresh_batches(configs[1], 9)
    inits = [model.init_params(c) for c in configs]
    seen: dict[int, list] = {0: [], 1: [], 2: []}
    calls: list[int] = []
    with_snapshots = train_gpu(configs, Xs, inits, chunk=6, on_steps=calls.append,
                               on_snapshot=lambda i, s, W, b: seen[i].append((s, W, b)))
    assert [s for s, _, _ in seen[0]] == trainer.snapshot_steps(configs[0]).tolist()
    assert [s for s, _, _ in seen[0]] == [0, 5, 10, 14]
    assert [s for s, _, _ in seen[1]] == [0, 4, 8, 12, 14]
    assert seen[2] == []
    assert calls == [4, 1, 1, 2, 2, 2, 2]  # chunks end at 6, 12 and every snapshot step
    np.testing.assert_array_equal(seen[0][0][1], inits[0][0])  # step 0: the initial W, a copy
    # The final parameters are the same bit for bit without snapshots (and other chunks).
    for (W, b), (W1, b1) in zip(with_snapshots, train_gpu(configs, Xs, inits), strict=True):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)
    np.testing.assert_array_equal(seen[0][-1][1], with_snapshots[0][0])
    # Every snapshot is what the CPU engine keeps, within the float64 trajectory bound.
    for i in (0, 1):
        expected: list = []
        engine.train(configs[i], Xs[i], *inits[i],
                     on_snapshot=lambda *snap, out=expected: out.append(snap))
        assert [s for s, _, _ in expected] == [s for s, _, _ in seen[i]]
        for (s, W, b), (_, ref_W, ref_b) in zip(seen[i], expected, strict=True):
            assert W.dtype == np.float64
            assert_close(W, ref_W, rtol=TRAJECTORY_RTOL["float64"]["W"], what=f"W at {s}")
            assert_close(b, ref_b, rtol=TRAJECTORY_RTOL["float64"]["b"], what=f"b at {s}")


def test_per_run_snapshot_callbacks_and_their_errors() -> None:
    configs, Xs, inits = batch_of_runs(steps=6)
    configs = [configs[0].replace(snapshot_every=5), configs[1], configs[2]]
    steps: list[int] = []
    [(W, _), _, _] = train_gpu(configs, Xs, inits, blocks=WHOLE,
                               on_snapshot=[lambda s, W, b: steps.append(s), None, None])
    assert steps == [0, 5, 6]
    expected: list = []
    engine.train(configs[0], Xs[0], *inits[0],
                 on_snapshot=lambda s, W, b: expected.append(W))
    assert_close(W, expected[-1], rtol=TRAJECTORY_RTOL["float32"]["W"], what="final W")
    with pytest.raises(ValueError, match="run 1 needs config.snapshot_every > 0"):
        train_gpu(configs, Xs, inits, on_snapshot=[None, lambda s, W, b: None, None])
    with pytest.raises(ValueError, match="one callback"):
        train_gpu(configs, Xs, inits, on_snapshot=[None])


def test_a_diverging_run_keeps_no_snapshots_after_it_diverged() -> None:
    configs, Xs, inits = batch_of_runs(steps=8)
    configs = [c.replace(snapshot_every=3) for c in configs]
    W0 = inits[1][0].copy()
    W0[1, Xs[1].indices[0]] = np.nan  # the loss is NaN at step 0: only the step-0 snapshot
    seen: list[tuple[int, int]] = []
    results = train_gpu(configs, Xs, [inits[0], (W0, inits[1][1]), inits[2]], blocks=WHOLE,
                        on_snapshot=lambda i, s, W, b: seen.append((i, s)))
    assert isinstance(results[1], trainer.Diverged)
    assert [s for i, s in seen if i == 1] == [0]
    assert [s for i, s in seen if i == 0] == [s for i, s in seen if i == 2] == [0, 3, 6, 8]


def test_a_gpu_sweep_stores_snapshots_as_the_cpu_engine_does(tmp_path) -> None:
    from toyrelu.runs.executors import GpuBatches, InProcess
    from toyrelu.runs.store import Store
    from toyrelu.runs.sweep import run_sweep

    base = RunConfig(n_features=24, n_hidden=2, sparsity=0.8, steps=20, n_test=50,
                     batch_size=6, lr=1e-2)
    configs = [base.replace(n_train=9, snapshot_every=6), base.replace(n_train=5),
               base.replace(n_train=float("inf"), snapshot_every=10)]
    with Store(tmp_path / "gpu.sqlite") as on_gpu, Store(tmp_path / "cpu.sqlite") as on_cpu:
        assert run_sweep(configs, on_gpu, GpuBatches(device=DEVICE)).ok == 3
        run_sweep(configs, on_cpu, InProcess())
        runs = on_gpu.runs().set_index("run_id")
        assert (runs["batch_runs"] == 3).all()  # one batch on the GPU, snapshots and all
        assert "snapshot_W" not in on_gpu.arrays(configs[1].run_id)
        for config in (configs[0], configs[2]):
            got, expected = on_gpu.arrays(config.run_id), on_cpu.arrays(config.run_id)
            np.testing.assert_array_equal(got["snapshot_steps"],
                                          trainer.snapshot_steps(config))
            assert got["snapshot_W"].shape == (len(got["snapshot_steps"]), 2, 24)
            np.testing.assert_array_equal(got["snapshot_W"][-1], got["W"])
            assert_close(got["snapshot_W"], expected["snapshot_W"],
                         rtol=TRAJECTORY_RTOL["float32"]["W"], what="snapshot W")
            assert_close(got["snapshot_b"], expected["snapshot_b"],
                         rtol=TRAJECTORY_RTOL["float32"]["b"], what="snapshot b")

"""The GPU engine's split-cell step (toyrelu.engines.gpu.split, Blocks.cells) against the autograd
reference: one step's loss and gradients with every cell class present, trajectories of a batch
across several regroups, the share rule's fall-back to the dense passes, a diverging run, and the
settings' checks. Kernels run in Triton's interpreter without CUDA, as in test_gpu."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from helpers import assert_close  # noqa: E402
from toyrelu.core import data, model, trainer
from toyrelu.core.config import RunConfig  # noqa: E402
from toyrelu.core.data import SparseData  # noqa: E402
from toyrelu.engines import gpu, reference  # noqa: E402
from toyrelu.engines.gpu import cells as gpu_cells
from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.blocks import Cells
from toyrelu.engines.gpu.feed import upload  # noqa: E402
from toyrelu.engines.gpu.split import SplitStep  # noqa: E402
from toyrelu.engines.gpu.step import Step

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Groups of 8 (60 examples: the last of 4), mixed features 4 per tile, 40 features in blocks of
# 16 in the reduction (the last of 8), hidden vectors 16 slots per program: every axis ragged.
# pairs_at_most=1.0 takes the split step whatever the share of mixed pairs.
TINY = Cells(size=8, BF=4, reduce_BF=16, hidden_BE=16, pairs_at_most=1.0)
GRAD_RTOL = {"float32": 1e-5, "float64": 1e-12}  # as test_gpu's, same sums in other orders


def cell_params(m: int, n: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """W ~ N(0, 0.3^2) and b ~ U(-0.5, 1): many features fire for a whole group, many for
    none, and the rest are mixed (as test_gpu_cells' split case)."""
    rng = np.random.default_rng(seed)
    return ((0.3 * rng.standard_normal((m, n))).astype(dtype),
            rng.uniform(-0.5, 1.0, n).astype(dtype))


@dataclasses.dataclass
class OneStep:
    """What one gradient step of a batch of one run left: its split-cell step, the loss (1,)
    and the gradient GW (1, m, n), Gb (1, n)."""

    split: SplitStep | None
    losses: torch.Tensor
    GW: torch.Tensor
    Gb: torch.Tensor


def one_step(W: np.ndarray, b: np.ndarray, X: SparseData, cells: Cells) -> OneStep:
    """A batch of one run after one gradient step (no update) with ``cells``."""
    batch = Batch([W], [b], [X.n_examples], "sum", torch.device(DEVICE), gpu.Blocks(cells=cells))
    [device_data] = upload([[X.astype(W.dtype)]], batch.slot0, W.shape[1], str(W.dtype),
                           batch.device)
    step = Step(batch)
    GW, Gb = step.gradient(device_data)
    return OneStep(step.split, batch.losses, GW, Gb)


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ranged", [True, False])
def test_split_step_matches_reference_with_every_class(dtype: str, m: int, ranged: bool) -> None:
    X = data.sample(60, 40, 0.8, np.random.default_rng(m), dtype)
    W, b = cell_params(m, 40, dtype, seed=10 + m)
    stepped = one_step(W, b, X, dataclasses.replace(TINY, ranged=ranged))
    split = stepped.split
    assert split is not None and split.split_steps == 1  # the cells took the step
    shares = split.shares.numpy()
    assert (shares > 0.02).all(), shares  # OFF, ON and MIXED cells all present (m = 1: 2.5%)
    # Ranging decides some of the cells the bounds leave MIXED; at m = 1 the box is the range.
    decided = shares[gpu_cells.MIXED] < split.bound_mixed
    assert decided == (ranged and m > 1), (shares, split.bound_mixed)
    ref_value, ref_gW, ref_gb = reference.loss_and_grad(W, b, X, "sum")
    assert_close(float(stepped.losses[0]), ref_value, rtol=GRAD_RTOL[dtype], what="loss")
    assert_close(stepped.GW[0].numpy(), ref_gW, rtol=GRAD_RTOL[dtype], what="dL/dW")
    assert_close(stepped.Gb[0].numpy(), ref_gb, rtol=GRAD_RTOL[dtype], what="dL/db")


def test_a_step_with_no_mixed_cell_is_all_moments() -> None:
    # Groups of one example: every cell is decided, so the mixed pass has an empty list and
    # everything comes from the moments and the nonzeros' corrections.
    X = data.sample(30, 40, 0.8, np.random.default_rng(0), "float64")
    W, b = cell_params(2, 40, "float64", seed=1)
    stepped = one_step(W, b, X, Cells(size=1, BF=4, reduce_BF=16, pairs_at_most=1.0))
    assert stepped.split is not None and stepped.split.split_steps == 1
    assert float(stepped.split.shares[gpu_cells.MIXED]) == 0.0
    ref_value, ref_gW, ref_gb = reference.loss_and_grad(W, b, X, "sum")
    assert_close(float(stepped.losses[0]), ref_value, rtol=1e-12, what="loss")
    assert_close(stepped.GW[0].numpy(), ref_gW, rtol=1e-12, what="dL/dW")
    assert_close(stepped.Gb[0].numpy(), ref_gb, rtol=1e-12, what="dL/db")


def three_runs() -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]], torch.Tensor]:
    """Runs of 60, 9 and 37 examples at slots 0, 64 and 96, in groups of 8 (full groups,
    ragged last ones, a group of one): each group's first slot and size, each run's groups,
    and each group's run."""
    slot, count, ranges = gpu_cells.groups([0, 64, 96], [60, 9, 37], 8, "cpu")
    g_run = torch.tensor(np.repeat(np.arange(3), [hi - lo for lo, hi in ranges]),
                         dtype=torch.int32)
    return slot, count, ranges, g_run


def bounded(m: int, n: int = 40) -> dict:
    """``three_runs`` in float64 after the stats and bounds kernels: their inputs and outputs by
    name."""
    from toyrelu.engines.gpu.kernels import cell_bounds as gpu_cell_bounds

    params = [cell_params(m, n, "float64", seed=s) for s in range(3)]
    W = torch.from_numpy(np.stack([p[0] for p in params]))
    b = torch.from_numpy(np.stack([p[1] for p in params]))
    H = torch.from_numpy(0.5 * np.random.default_rng(4).standard_normal((160, m)))
    slot, count, ranges, g_run = three_runs()
    G, n_stats = len(slot), 4 * m + 2 + m * m
    out = dict(W=W, b=b, H=H, slot=slot, count=count, ranges=ranges, g_run=g_run,
               g_slot=slot.to(torch.int32), g_count=count.to(torch.int32),
               dead=torch.full((3,), -1, dtype=torch.int32),
               stats=torch.zeros(G, n_stats, dtype=torch.float64),
               cls=torch.zeros(G, n, dtype=torch.int8), A=torch.zeros(G, m, m, dtype=torch.float64),
               u=torch.zeros(G, m, dtype=torch.float64), loss=torch.zeros(G, dtype=torch.float64),
               n_mixed=torch.full((G,), -7, dtype=torch.int32),
               features=torch.full((G, n), -7, dtype=torch.int32),
               position=torch.full((G, n), -7, dtype=torch.int32))
    gpu_cell_bounds.stats_kernel[(G,)](H, out["g_slot"], out["g_count"], g_run, out["dead"],
                                        out["stats"], n_stats, M=m, BE=8)
    gpu_cell_bounds.bounds_kernel[(G,)](W, b, out["stats"], g_run, out["dead"], out["cls"],
                                         out["A"], out["u"], out["loss"], out["n_mixed"],
                                         out["features"], out["position"], n, n_stats, M=m,
                                         MP=16, BF=16)
    return out


def assert_on_moments(got: dict, cls: torch.Tensor) -> None:
    """The kernels' A, u and ON loss are gpu_cells.on_sums' for the classes ``cls``."""
    sums = gpu_cells.on_sums(got["W"], got["b"], got["stats"], cls, got["ranges"])
    assert_close(got["A"].numpy(), sums["A"].numpy(), rtol=1e-13, what="A")
    assert_close(got["u"].numpy(), sums["u"].numpy(), rtol=1e-13, what="u")
    assert_close(got["loss"].numpy(), sums["group_loss"].numpy(), rtol=1e-13, what="ON loss")


def assert_lists(count: torch.Tensor, features: torch.Tensor, position: torch.Tensor,
                 cls: torch.Tensor) -> None:
    """A kernel's lists of MIXED cells are gpu_cells.mixed_lists' for the classes ``cls``
    (the places past each list's end are not its)."""
    count_ref, features_ref, position_ref = gpu_cells.mixed_lists(cls)
    np.testing.assert_array_equal(count.numpy(), count_ref.numpy())
    np.testing.assert_array_equal(position.numpy(), position_ref.numpy())
    listed = features_ref >= 0
    np.testing.assert_array_equal(features[listed].numpy(), features_ref[listed].numpy())


def test_bounds_kernel_is_classify_and_on_sums_for_every_run() -> None:
    # m = 3 (padded to 16 for the float64 dot), 40 features in tiles of 16 (the last of 8):
    # the kernel's classes equal gpu_cells.classify's (float64 bounds, sums in another order:
    # no cell lies within 1e-16 of a bound here), its lists of MIXED cells mixed_lists' and
    # its moments gpu_cells.on_sums' to float64 rounding.
    got = bounded(3)
    expected = gpu_cells.classify(got["W"], got["b"], got["stats"], got["ranges"])
    np.testing.assert_array_equal(got["cls"].numpy(), expected.numpy())
    assert len(np.unique(expected.numpy())) == 3
    assert_lists(got["n_mixed"], got["features"], got["position"], expected)
    assert_on_moments(got, expected)


@pytest.mark.parametrize("m", [2, 5])
def test_range_kernel_decides_each_mixed_cell_by_its_exact_range(m: int) -> None:
    # After the bounds, the range pass takes each MIXED cell's exact range of z over its
    # group: those all on are listed for the moments pass, which adds them to A, u and the ON
    # loss; those all off drop out; only those with z of both signs are listed again, in
    # order, with position pointing at them. A group's list may exceed one moments tile.
    from toyrelu.engines.gpu.kernels import cell_bounds as gpu_cell_bounds

    got = bounded(m, n=320)
    n, bound_cls, position = got["W"].shape[2], got["cls"].clone(), got["position"]
    kept, n_on = (torch.full_like(got["g_count"], -7) for _ in range(2))
    listed, on_features = (torch.full_like(got["features"], -7) for _ in range(2))
    G, stats = len(got["slot"]), got["stats"]
    gpu_cell_bounds.range_kernel[(G,)](
        got["W"], got["b"], got["H"], got["g_slot"], got["g_count"], got["g_run"], got["dead"],
        got["n_mixed"], got["features"], got["cls"], position, kept, listed, n_on, on_features,
        n, M=m, BE=8, BF=8)
    gpu_cell_bounds.moments_kernel[(G,)](
        got["W"], got["b"], stats, got["g_run"], got["dead"], n_on, on_features, got["A"],
        got["u"], got["loss"], n, stats.shape[1], M=m, MP=16, BF=16)
    expected = gpu_cells.ranged(got["W"], got["b"], got["H"], got["slot"], got["count"],
                                bound_cls, got["ranges"], 8, chunk=3)
    np.testing.assert_array_equal(got["cls"].numpy(), expected.numpy())
    assert_lists(kept, listed, position, expected)
    for g in range(G):
        now_on = torch.nonzero((bound_cls[g] == gpu_cells.MIXED)
                               & (expected[g] == gpu_cells.ON))[:, 0]
        assert int(n_on[g]) == len(now_on)
        np.testing.assert_array_equal(on_features[g, :len(now_on)].numpy(), now_on.numpy())
    changed = expected[bound_cls == gpu_cells.MIXED]
    assert (changed == gpu_cells.ON).any() and (changed == gpu_cells.OFF).any()
    assert (changed == gpu_cells.MIXED).any()
    assert int(n_on.max()) > 16  # more than one moments tile
    assert_on_moments(got, expected)


@pytest.mark.parametrize("m, dtype", [(1, "float32"), (3, "float32"), (5, "float64")])
def test_stats_kernel_is_group_stats(m: int, dtype: str) -> None:
    # Three runs of 60, 9 and 37 examples in groups of 8: full groups, ragged last ones and a
    # group of one (37 = 4 x 8 + 5, 9 = 8 + 1). The kernel reads H in its own dtype and sums
    # in float64 in another order than the torch form: equal to float64 rounding.
    from toyrelu.engines.gpu.kernels import cell_bounds as gpu_cell_bounds

    size = 8
    H = torch.from_numpy((0.5 * np.random.default_rng(m).standard_normal((160, m))).astype(dtype))
    slot, count, ranges, g_run = three_runs()
    expected = gpu_cells.group_stats(H, slot, count, size)
    stats = torch.full_like(expected, np.nan)
    dead = torch.tensor([-1, -1, 0], dtype=torch.int32)  # run 2 frozen: its rows untouched
    gpu_cell_bounds.stats_kernel[(len(slot),)](H, slot.to(torch.int32), count.to(torch.int32),
                                                g_run, dead, stats, stats.shape[1], M=m,
                                                BE=size)
    assert (count == 1).any() and (count < size).sum() > 1
    live = slice(0, ranges[2][0])
    assert_close(stats[live].numpy(), expected[live].numpy(), rtol=1e-14,
                 what="group statistics")
    assert stats[ranges[2][0]:].isnan().all()
    # A NaN in h (a diverging step) makes its group's statistics of that coordinate NaN (mean,
    # box, S1, S2's row and column) and its radius, as in the torch form, so that the group's
    # loss is NaN too; the other groups keep theirs.
    H[3, 0] = np.nan
    gpu_cell_bounds.stats_kernel[(len(slot),)](H, slot.to(torch.int32), count.to(torch.int32),
                                                g_run, dead, stats, stats.shape[1], M=m,
                                                BE=size)
    nan = gpu_cells.group_stats(H, slot, count, size)[live].isnan()
    np.testing.assert_array_equal(stats[live].isnan().numpy(), nan.numpy())
    assert nan[0, [0, m, 2 * m, 3 * m, 4 * m, 4 * m + 2]].all() and not nan[1:].any()


def batch(dtype: str, steps: int) -> tuple[list[RunConfig], list[SparseData], list]:
    """Three runs of one batch key with T not a multiple of the group size, b ~ N(0, 1)."""
    configs = [RunConfig(n_features=24, n_hidden=2, sparsity=0.8, n_train=T, steps=steps,
                         lr=1e-2, weight_decay=0.05, bias_init="normal", dtype=dtype, n_test=10,
                         seed=s) for T, s in ((37, 1), (9, 2), (20, 3))]
    return configs, [data.train_set(c) for c in configs], [model.init_params(c) for c in configs]


def train(configs: list[RunConfig], Xs: list, inits: list, cells: Cells | None) -> list:
    return gpu.train_many(configs, Xs, [W for W, _ in inits], [b for _, b in inits],
                          device=DEVICE, blocks=gpu.Blocks(cells=cells))


def counting_split_steps(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record whether the cells took each step offered to SplitStep.sums (True: they did)."""
    taken: list[bool] = []
    original = SplitStep.sums

    def sums(self: SplitStep, *args: object) -> object:
        out = original(self, *args)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(SplitStep, "sums", sums)
    return taken


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_trajectories_across_regroups_match_reference(
        dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 steps regrouped every 5 (steps 0, 5, 10): slots move, the data stay where uploaded.
    configs, Xs, inits = batch(dtype, steps=12)
    taken = counting_split_steps(monkeypatch)
    results = train(configs, Xs, inits, Cells(size=4, BF=8, reduce_BF=8, regroup=5,
                                              pairs_at_most=1.0))
    assert taken == [True] * 12
    rtol = {"float32": {"W": 2e-6, "b": 2e-5}, "float64": {"W": 1e-9, "b": 1e-9}}[dtype]
    for config, X, (W0, b0), (W, b) in zip(configs, Xs, inits, results, strict=True):
        ref_W, ref_b = reference.train(config, X, W0, b0)
        assert not np.array_equal(W, W0)
        assert_close(W, ref_W, rtol=rtol["W"], what="final W")  # test_gpu's trajectory bounds
        assert_close(b, ref_b, rtol=rtol["b"], what="final b")


def test_too_many_mixed_pairs_fall_back_to_the_dense_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With no mixed pair allowed the share rule refuses the cells at every regroup (steps 0
    # and 4) and the steps between: the dense passes give the same numbers bit for bit.
    configs, Xs, inits = batch("float32", steps=6)
    taken = counting_split_steps(monkeypatch)
    results = train(configs, Xs, inits, Cells(size=4, regroup=4, pairs_at_most=0.0))
    assert taken == [False] * 6
    for (W, b), (W_dense, b_dense) in zip(results, train(configs, Xs, inits, None), strict=True):
        np.testing.assert_array_equal(W, W_dense)
        np.testing.assert_array_equal(b, b_dense)


@pytest.mark.parametrize("ranged", [True, False])
def test_the_share_rule_is_measured_at_each_regroup(ranged: bool) -> None:
    X = data.sample(60, 40, 0.8, np.random.default_rng(2), "float64")
    W, b = cell_params(2, 40, "float64", seed=3)
    taken = one_step(W, b, X, dataclasses.replace(TINY, ranged=ranged)).split
    assert taken is not None
    mixed, bound = float(taken.shares[gpu_cells.MIXED]), taken.bound_mixed
    # The pair work left: ranged pairs at a third, then the truly mixed ones pair by pair, or
    # the bounds' mixed pairs alone. Each cell weighs its group's size; with groups of 8 this
    # is near the cell shares (the last group holds 4).
    work = bound / 3 + mixed if ranged else bound
    assert mixed < bound if ranged else mixed == bound
    assert abs(taken.share - work) < 0.02, (taken.share, work)
    refused = one_step(W, b, X, Cells(size=8, ranged=ranged, pairs_at_most=work / 2)).split
    assert refused is not None and not refused.split_now and refused.split_steps == 0
    assert refused.share == taken.share


def test_a_diverging_run_is_frozen_and_the_others_follow_reference() -> None:
    configs, Xs, inits = batch("float64", steps=6)
    W0 = inits[1][0].copy()
    W0[0, Xs[1].indices[0]] = np.nan
    inits = [inits[0], (W0, inits[1][1]), inits[2]]
    results = train(configs, Xs, inits, Cells(size=4, regroup=4, pairs_at_most=1.0))
    assert isinstance(results[1], trainer.Diverged)
    assert str(results[1]) == "loss is nan at step 0"
    for i in (0, 2):
        ref_W, _ = reference.train(configs[i], Xs[i], *inits[i])
        assert_close(results[i][0], ref_W, rtol=1e-9, what=f"run {i}")


def test_streamed_batches_take_the_dense_passes() -> None:
    W, b = cell_params(2, 24, "float32", seed=0)
    blocks = gpu.Blocks(cells=TINY)
    streamed = Step(Batch([W], [b], [10], "sum", torch.device(DEVICE), blocks), fixed=False)
    assert streamed.split is None
    assert Step(Batch([W], [b], [10], "sum", torch.device(DEVICE), blocks)).split is not None


@pytest.mark.parametrize("changes, message", [
    (dict(size=3), "Cells.size must be a power of two, got 3"),
    (dict(BF=6), "Cells.BF must be a power of two, got 6"),
    (dict(reduce_BF=0), "Cells.reduce_BF must be a power of two, got 0"),
    (dict(regroup=0), "Cells.regroup must be at least 1, got 0"),
    (dict(pairs_at_most=1.5), r"Cells.pairs_at_most must be in \[0, 1\], got 1.5"),
])
def test_cells_settings_are_checked(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cells(**changes)


def test_mixed_tiles_shrink_as_m_grows_and_in_float64() -> None:
    # blocks.MIXED_TILES: the sm_90 compile's no-spill tiles (tests/test_gpu checks them).
    from toyrelu.engines.gpu.blocks import mixed_tile

    assert [mixed_tile(m, "float32") for m in (1, 2, 3, 4, 8, 10, 16, 32)] == [
        32, 32, 16, 16, 8, 8, 4, 2]
    assert [mixed_tile(m, "float64") for m in (2, 4, 16, 32)] == [16, 8, 2, 2]

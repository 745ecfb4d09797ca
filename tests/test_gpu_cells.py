"""The GPU engine's cells (toyrelu.engines.gpu.cells, torch on any device) against the CPU
split-cell step's own grouping (engines.cpu.cells.kd_groups) and against the pre-activations
computed pair by pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import assert_close
from toyrelu.engines.cpu import cells
from toyrelu.engines.gpu import cells as gpu_cells

# Runs laid out as a GPU batch lays them: each starts at a multiple of 32 slots, with gaps; a
# run of one example, one of exactly a group, one just over, and larger ones with ragged ends.
COUNTS = [300, 1, 16, 17, 129, 1000]
SIZE = 16


def layout(counts: list[int]) -> tuple[list[int], int]:
    starts, slot = [], 0
    for T in counts:
        starts.append(slot)
        slot += -(-max(T, 1) // 32) * 32
    return starts, slot


@pytest.mark.parametrize("m", [1, 2, 5])
def test_kd_order_is_the_cpu_steps_tree_for_every_run(m: int) -> None:
    starts, n_slots = layout(COUNTS)
    rng = np.random.default_rng(m)
    H = rng.standard_normal((n_slots, m)) * rng.uniform(0.1, 3.0, m)  # distinct values
    perm = gpu_cells.KdTree(starts, COUNTS, SIZE, "cpu").order(torch.from_numpy(H)).numpy()
    inside = np.zeros(n_slots, bool)
    for s, T in zip(starts, COUNTS, strict=True):
        expected = np.empty(T, np.int64)
        cells.kd_groups(np.ascontiguousarray(H[s:s + T]), SIZE, expected)
        np.testing.assert_array_equal(perm[s:s + T] - s, expected)
        inside[s:s + T] = True
    np.testing.assert_array_equal(perm[~inside], np.flatnonzero(~inside))  # gaps stay put
    assert sorted(perm.tolist()) == list(range(n_slots))


def test_kd_order_groups_nearby_hidden_vectors() -> None:
    # Four tight clusters of 16 in the plane, shuffled: each group of 16 is one cluster.
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    label = rng.permutation(np.repeat(np.arange(4), 16))
    H = centres[label] + 0.1 * rng.standard_normal((64, 2))
    perm = gpu_cells.KdTree([0], [64], 16, "cpu").order(torch.from_numpy(H)).numpy()
    for g in range(4):
        assert len(set(label[perm[16 * g:16 * g + 16]])) == 1


def groups_of(counts: list[int], size: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """First slot and size of each group of ``size`` slots per run, and each run's groups."""
    return gpu_cells.groups(layout(counts)[0], counts, size, "cpu")


def test_group_stats_are_each_groups_moments() -> None:
    m = 3
    _, n_slots = layout(COUNTS)
    H = torch.from_numpy(np.random.default_rng(1).standard_normal((n_slots, m))).float()
    slot, count, _ = groups_of(COUNTS, SIZE)
    stats = gpu_cells.group_stats(H, slot, count, SIZE)
    assert stats.dtype == torch.float64 and stats.shape == (len(slot), 4 * m + 2 + m * m)
    for g in range(len(slot)):
        Hg = H[slot[g]:slot[g] + count[g]].double().numpy()
        mean = Hg.mean(0)
        expected = np.concatenate([
            mean, 0.5 * (Hg.min(0) + Hg.max(0)), 0.5 * (Hg.max(0) - Hg.min(0)), Hg.sum(0),
            [np.sqrt(((Hg - mean) ** 2).sum(1).max()), len(Hg)], (Hg.T @ Hg).ravel()])
        # float64 sums of <= 16 float32 values in another order: 1e-15 of the largest entry
        assert_close(stats[g].numpy(), expected, rtol=1e-13, what=f"group {g}")


def cell_classes(counts: list[int], m: int, n: int, size: int, seed: int):
    """Classes of random cells and the pre-activations z of every pair, per group."""
    rng = np.random.default_rng(seed)
    _, n_slots = layout(counts)
    H = torch.from_numpy(rng.standard_normal((n_slots, m)))
    W = torch.from_numpy(0.5 * rng.standard_normal((len(counts), m, n)))
    # Biases from -2 to 2: cells of all three classes.
    b = torch.from_numpy(rng.uniform(-2.0, 2.0, (len(counts), n)))
    slot, count, ranges = groups_of(counts, size)
    cls = gpu_cells.classify(W, b, gpu_cells.group_stats(H, slot, count, size), ranges)
    zs = []
    for r, (lo, hi) in enumerate(ranges):
        for g in range(lo, hi):
            zs.append((H[slot[g]:slot[g] + count[g]] @ W[r] + b[r]).numpy())
    return cls.numpy(), zs


@pytest.mark.parametrize("m", [1, 2, 4])
def test_cell_classes_hold_for_every_pair(m: int) -> None:
    cls, zs = cell_classes(COUNTS, m, 50, SIZE, seed=m)
    assert cls.dtype == np.int8
    for g, z in enumerate(zs):
        assert (z[:, cls[g] == gpu_cells.ON] > 0).all()
        assert (z[:, cls[g] == gpu_cells.OFF] <= 0).all()
    # The bounds decide cells, not only leave them mixed: with these spread-out groups, each
    # class holds 4-50% of the cells (measured for m = 1, 2, 4).
    shares = np.bincount(cls.ravel(), minlength=3) / cls.size
    assert (shares > 0.02).all(), shares


@pytest.mark.parametrize("m", [2, 4])
def test_ranged_classes_are_each_cells_exact_range(m: int) -> None:
    # Ranging decides each cell the bounds leave MIXED from its pairs' z: ON if all are > 0,
    # OFF if none is, MIXED only if both signs occur; decided cells keep their class. Groups
    # are ranged a few at a time, across run boundaries of the chunks.
    counts = COUNTS
    rng = np.random.default_rng(10 + m)
    _, n_slots = layout(counts)
    H = torch.from_numpy(rng.standard_normal((n_slots, m)))
    W = torch.from_numpy(0.5 * rng.standard_normal((len(counts), m, 50)))
    b = torch.from_numpy(rng.uniform(-2.0, 2.0, (len(counts), 50)))
    slot, count, ranges = groups_of(counts, SIZE)
    bound = gpu_cells.classify(W, b, gpu_cells.group_stats(H, slot, count, SIZE), ranges)
    out = gpu_cells.ranged(W, b, H, slot, count, bound, ranges, SIZE, chunk=5).numpy()
    bound = bound.numpy()
    for r, (lo, hi) in enumerate(ranges):
        for g in range(lo, hi):
            z = (H[slot[g]:slot[g] + count[g]] @ W[r] + b[r]).numpy()
            exact = np.where((z > 0).all(0), gpu_cells.ON,
                             np.where((z > 0).any(0), gpu_cells.MIXED, gpu_cells.OFF))
            np.testing.assert_array_equal(out[g], np.where(bound[g] == gpu_cells.MIXED,
                                                           exact, bound[g]))
    mixed = bound == gpu_cells.MIXED
    assert (out[mixed] == gpu_cells.ON).any() and (out[mixed] == gpu_cells.OFF).any()
    assert (out[mixed] == gpu_cells.MIXED).any()


def test_a_group_of_one_example_is_decided_exactly() -> None:
    # Radius 0 and a box of width 0: the bounds are z itself, so no cell is mixed.
    cls, zs = cell_classes([1, 1, 1], 3, 200, 1, seed=7)
    z = np.concatenate(zs)
    np.testing.assert_array_equal(cls, np.where(z > 0, gpu_cells.ON, gpu_cells.OFF))


def test_tree_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size must be at least 1"):
        gpu_cells.KdTree([0], [10], 0, "cpu")


def cell_loss_and_grad(W: np.ndarray, b: np.ndarray, X, size: int):
    """Loss and gradients of one run with the dense part split by cells: ON cells through
    ``on_sums`` / ``dh_on`` alone, MIXED cells pair by pair, OFF cells not at all, and the
    nonzeros of x as the engines' exact corrections. T x n arrays are fine at this size."""
    from toyrelu.engines.cpu.engine import loss_scale

    T, n = X.n_examples, W.shape[1]
    dense = X.to_dense().astype(np.float64)
    H = dense @ W.T
    perm = gpu_cells.KdTree([0], [T], size, "cpu").order(torch.from_numpy(H)).numpy()
    Hs, Xs = H[perm], dense[perm]  # the run in group order
    slot, count, ranges = groups_of([T], size)
    Wt, bt = torch.from_numpy(W)[None], torch.from_numpy(b)[None]
    stats = gpu_cells.group_stats(torch.from_numpy(Hs), slot, count, size)
    cls = gpu_cells.classify(Wt, bt, stats, ranges)
    sums = gpu_cells.on_sums(Wt, bt, stats, cls, ranges)
    dh = gpu_cells.dh_on(sums, torch.from_numpy(Hs), slot, count, size).numpy()
    loss, gb, gW = float(sums["group_loss"].sum()), sums["gb"][0].numpy(), sums["gW"][0].numpy()
    z = Hs @ W + b
    a = np.maximum(z, 0.0)
    group = np.repeat(np.arange(len(slot)), count.numpy())
    mixed = cls.numpy()[group] == gpu_cells.MIXED  # (T, n): pairs in mixed cells
    am = np.where(mixed, a, 0.0)
    loss += float((am * am).sum())
    gb = gb + am.sum(0)
    gW = gW + Hs.T @ am
    dh = dh + am @ W.T
    # The nonzeros: (a - x)^2 = a^2 - 2 a x + x^2; where z > 0 the factor a - x gains c = -x.
    loss += float((Xs * Xs - 2.0 * Xs * a).sum())
    c = np.where(z > 0, -Xs, 0.0)
    gb, gW, dh = gb + c.sum(0), gW + Hs.T @ c, dh + c @ W.T
    gW = gW + dh.T @ Xs  # the encoder's part
    scale = loss_scale("sum", T, n)
    shares = np.bincount(cls.numpy().ravel(), minlength=3) / cls.numel()
    return (scale * loss, 2.0 * scale * gW, 2.0 * scale * gb), shares


@pytest.mark.parametrize("m", [1, 2, 3])
def test_cells_split_the_dense_sums_exactly(m: int) -> None:
    from toyrelu.core import data
    from toyrelu.engines import reference

    rng = np.random.default_rng(m)
    X = data.sample(200, 60, 0.8, rng, "float64")
    W = 0.3 * rng.standard_normal((m, 60))
    b = rng.uniform(-0.5, 1.0, 60)
    got, shares = cell_loss_and_grad(W, b, X, size=8)
    assert (shares[[gpu_cells.ON, gpu_cells.OFF]] > 0.1).all(), shares  # both collapse
    ref_value, ref_gW, ref_gb = reference.loss_and_grad(W, b, X, "sum")
    # float64 sums in other orders (the reference's are pair by pair): measured <= 4.7e-16.
    assert_close(got[0], ref_value, rtol=1e-12, what="loss")
    assert_close(got[1], ref_gW, rtol=1e-12, what="dL/dW")
    assert_close(got[2], ref_gb, rtol=1e-12, what="dL/db")


def test_mixed_lists_index_every_mixed_cell_once() -> None:
    cls, _ = cell_classes(COUNTS, 2, 50, SIZE, seed=3)
    count, features, position = gpu_cells.mixed_lists(torch.from_numpy(cls))
    assert count.dtype == features.dtype == position.dtype == torch.int32
    count, features, position = count.numpy(), features.numpy(), position.numpy()
    assert features.shape == position.shape == cls.shape
    assert count.sum() == (cls == gpu_cells.MIXED).sum() > 0
    for g in range(cls.shape[0]):
        mixed = np.flatnonzero(cls[g] == gpu_cells.MIXED)
        assert count[g] == len(mixed)
        np.testing.assert_array_equal(features[g, :len(mixed)], mixed)
        assert (features[g, len(mixed):] == -1).all()
        np.testing.assert_array_equal(position[g, mixed], np.arange(len(mixed)))
        assert (position[g, cls[g] != gpu_cells.MIXED] == -1).all()


def test_mixed_lists_of_no_mixed_cell_are_empty() -> None:
    cls = torch.tensor([[gpu_cells.ON, gpu_cells.OFF], [gpu_cells.OFF, gpu_cells.OFF]],
                       dtype=torch.int8)
    count, features, position = gpu_cells.mixed_lists(cls)
    assert count.tolist() == [0, 0]
    assert (features == -1).all() and (position == -1).all()


def test_the_gpu_split_step_defaults_are_the_cpu_step_rules() -> None:
    # The GPU step is the CPU step on the device: the same groups, the same regrouping and the
    # same share rule, so that both engines take the split step on the same runs by default.
    from toyrelu.engines.cpu import engine
    from toyrelu.engines.gpu import Cells

    defaults = Cells()
    assert (defaults.size, defaults.regroup, defaults.pairs_at_most) == (
        cells.GROUP, cells.REGROUP, engine.PAIRS_AT_MOST)

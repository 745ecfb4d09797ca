"""The split-cell step (toyrelu.engines.cpu.cells) against the autograd reference: loss and
gradients with all-on, all-off and mixed cells present, AdamW trajectories across regroupings,
and numbers that do not depend on chunks or threads; and the k-d grouping of the examples."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from helpers import assert_close, assert_loss_and_grad_match
from test_engine import (
    FLOAT32_TRAJECTORY_RTOL,
    FLOAT64_TRAJECTORY_RTOL,
    GRAD_RTOL,
    awkward_batch,
    trajectory_config,
)
from toyrelu.core import data, model
from toyrelu.core.config import RunConfig
from toyrelu.engines import reference
from toyrelu.engines.cpu import cells, engine

# 1 and 3: the fused dense pass; 5 and 9: the split one, with a short last chunk of rows.
HIDDEN = [1, 3, 5, 9]


def cell_classes(W: np.ndarray, b: np.ndarray, X: data.SparseData) -> tuple[np.ndarray, ...]:
    """Per (group, feature) cell, in float64, whether the step's bounds make it all-on and
    whether they leave it mixed, and whether some pair fires (z > 0) and whether all do."""
    Xg, H = cells.grouped(W, X)
    W64, b64, H64 = W.astype(np.float64), b.astype(np.float64), H.astype(np.float64)
    on, mixed, fires, all_fire = [], [], [], []
    for lo in range(0, Xg.n_examples, cells.GROUP):
        Hg = H64[lo:lo + cells.GROUP]
        centre = Hg.mean(axis=0)
        reach = np.linalg.norm(Hg - centre, axis=1).max() * np.linalg.norm(W64, axis=0)
        box, side = (Hg.max(0) + Hg.min(0)) / 2, (Hg.max(0) - Hg.min(0)) / 2
        low = np.maximum(centre @ W64 + b64 - reach, box @ W64 + b64 - side @ np.abs(W64))
        high = np.minimum(centre @ W64 + b64 + reach, box @ W64 + b64 + side @ np.abs(W64))
        on.append(low > 0)
        mixed.append((high > 0) & (low <= 0))
        fires.append((Hg @ W64 + b64 > 0).any(axis=0))
        all_fire.append((Hg @ W64 + b64 > 0).all(axis=0))
    return np.array(on), np.array(mixed), np.array(fires), np.array(all_fire)


def banded_params(m: int, n: int, dtype: str, share_on: float) -> tuple[np.ndarray, np.ndarray]:
    """W ~ N(0, 0.3^2); a share ``share_on`` of the features with bias +3 (on for every
    example), a third with -3 (off for every example), the rest b ~ N(-0.5, 0.5^2)."""
    rng = np.random.default_rng(m)
    W = 0.3 * rng.standard_normal((m, n))
    b = rng.normal(-0.5, 0.5, n)
    kind = rng.permutation(n)
    b[kind[: int(share_on * n)]] = 3.0
    b[kind[n - n // 3:]] = -3.0
    return W.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("share_on", [0.3, 0.05], ids=["masked-on", "listed-on"])
@pytest.mark.parametrize("m", HIDDEN)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_cell_loss_and_grad_match_reference(dtype: str, m: int, share_on: float) -> None:
    # 1,000 rows: 7 full groups of 128 and a ragged one of 104.
    X = awkward_batch(1_000, 200, dtype, seed=m)
    W, b = banded_params(m, 200, dtype, share_on)
    on, mixed, fires, all_fire = cell_classes(W, b, X)
    # Every kind of cell occurs, and groups take both routes for their all-on cells: a mask
    # over all features when more than 1 / SPARSE_ON of them are all-on, else a list.
    # (At m = 1 the groups are short intervals of h, and only 0.4% of the cells are mixed.)
    assert on.mean() > 0.04 and mixed.sum() >= 5 and (~fires).mean() > 0.4
    assert not (on & ~all_fire).any()  # the bounds are sound: an all-on cell is
    assert (on.sum(axis=1) * cells.SPARSE_ON > 200).all() == (share_on > 0.2)
    # Cells the bounds leave mixed are all-off, all-on or truly mixed by their exact range.
    truly_mixed = mixed & fires & ~all_fire
    if m > 1:
        assert (mixed & ~fires).any() and (mixed & all_fire).any() and truly_mixed.any()
    # The step computes z over the bounded-mixed cells (a third of a pair's work) and the truly
    # mixed cells pair by pair, and reports that work as a share of all pairs (its z, in the
    # working precision, may decide a cell at the edge otherwise).
    Xg, H = cells.grouped(W, X)
    share = np.zeros(1)
    cells.module(m).loss_and_grad(W, b, Xg.indptr, Xg.indices, Xg.data, H, 1.0,
                                  np.zeros_like(W), np.zeros_like(b), 1, share)
    rows = np.diff(np.append(np.arange(0, 1_000, cells.GROUP), 1_000))
    work = rows[:, None] * (truly_mixed + mixed / 3.0)
    assert_close(share[0], work.sum() / (1_000 * 200), rtol=0.0, atol=2e-3,
                 what="share of pairs done one by one")
    for reduction in ("sum", "mean"):
        got = engine.loss_and_grad(W, b, X, reduction, split_cells=True)
        assert_loss_and_grad_match(got, reference.loss_and_grad(W, b, X, reduction), W, b,
                                   rtol=GRAD_RTOL[dtype])


def split_cell_config(m: int, dtype: str, **changes) -> RunConfig:
    """trajectory_config with 600 examples (4 groups, the last ragged) and 230 steps: the
    grouping is rebuilt at steps 0, 100 and 200."""
    return trajectory_config(m, dtype, True, **{"n_train": 600, "steps": 230, **changes})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [2, 5])
def test_split_cell_trajectory_matches_reference(m: int, dtype: str) -> None:
    config = split_cell_config(m, dtype)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W, b = engine.train(config, X, W0, b0, split_cells=True)
    ref_W, ref_b = reference.train(config, X, W0, b0)
    assert not np.array_equal(W, W0)
    rtol = {"float64": {"W": FLOAT64_TRAJECTORY_RTOL, "b": FLOAT64_TRAJECTORY_RTOL},
            "float32": FLOAT32_TRAJECTORY_RTOL}[dtype]
    assert_close(W, ref_W, rtol=rtol["W"], what="final W")
    assert_close(b, ref_b, rtol=rtol["b"], what="final b")


def test_split_cell_numbers_do_not_depend_on_chunks_or_threads() -> None:
    config = split_cell_config(2, "float32", n_train=2_500)  # 20 groups: 3 tiles of 8
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W, b = engine.train(config, X, W0, b0, split_cells=True, threads=1)
    threads = min(2, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    W2, b2 = engine.train(config, X, W0, b0, split_cells=True, threads=threads, chunk=37)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)


def test_kd_groups_are_balanced_compact_leaves() -> None:
    rng = np.random.default_rng(0)
    H = rng.uniform(-1.0, 1.0, (1_000, 2))
    perm = np.empty(1_000, np.int64)
    cells.kd_groups(H, 128, perm)
    assert sorted(perm.tolist()) == list(range(1_000))
    leaves = [H[perm[lo:lo + 128]] for lo in range(0, 1_000, 128)]
    # 8 leaves of a uniform square: each a cell of a 3-level k-d tree, about 1/8 of the area;
    # the whole square's bounding box has area 4.
    areas = [np.prod(leaf.max(axis=0) - leaf.min(axis=0)) for leaf in leaves]
    assert max(areas) < 4 / 8 * 1.5, areas
    again = np.empty_like(perm)
    cells.kd_groups(H, 128, again)
    np.testing.assert_array_equal(again, perm)


def record_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Make every run's ``_Run._steps`` call append (lo, hi, split) to the returned list."""
    calls: list[tuple[int, int, bool]] = []
    original = engine._Run._steps

    def recording(self, X, lo, hi, *, split):  # noqa: ANN001
        calls.append((lo, hi, split))
        return original(self, X, lo, hi, split=split)

    monkeypatch.setattr(engine._Run, "_steps", recording)
    return calls


def test_small_sets_take_the_fused_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_steps(monkeypatch)
    config = split_cell_config(2, "float64")
    assert config.n_train < engine.CELLS_FROM
    engine.train(config, data.train_set(config), *model.init_params(config))
    assert calls and not any(split for _, _, split in calls)


def test_wide_hidden_layers_take_the_fused_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # From CELLS_BELOW_HIDDEN hidden dimensions the bounds decide almost no cell: large sets
    # there keep the fused step, unless a caller asks for the split-cell step.
    calls = record_steps(monkeypatch)
    monkeypatch.setattr(engine, "CELLS_FROM", 600)
    monkeypatch.setattr(engine, "CELLS_BELOW_HIDDEN", 2)
    config = split_cell_config(2, "float64")
    X = data.train_set(config)
    assert X.n_examples >= engine.CELLS_FROM
    engine.train(config, X, *model.init_params(config), chunk=150)
    assert calls and not any(split for _, _, split in calls)
    calls.clear()
    engine.train(config, X, *model.init_params(config), chunk=150, split_cells=True)
    assert calls and all(split for _, _, split in calls)


@pytest.mark.parametrize("at_most", [1.0, -1.0], ids=["split-pays", "fused-pays"])
def test_large_sets_regroup_and_keep_the_step_that_pays(
    monkeypatch: pytest.MonkeyPatch, at_most: float
) -> None:
    """Each regrouping step (0, 100, 200) takes the split-cell step and measures the share of
    pairs it did one by one; the steps after it take the split-cell step only if that share is
    at most PAIRS_AT_MOST. Either way the run follows the reference."""
    calls = record_steps(monkeypatch)
    monkeypatch.setattr(engine, "CELLS_FROM", 600)
    monkeypatch.setattr(engine, "PAIRS_AT_MOST", at_most)
    config = split_cell_config(2, "float64")
    X = data.train_set(config)
    W0, b0 = model.init_params(config)
    W, b = engine.train(config, X, W0, b0, chunk=150)
    keep = at_most > 0
    assert calls == [(0, 1, True), (1, 100, keep), (100, 101, True), (101, 150, keep),
                     (150, 200, keep), (200, 201, True), (201, 230, keep)]
    ref_W, ref_b = reference.train(config, X, W0, b0)
    assert_close(W, ref_W, rtol=FLOAT64_TRAJECTORY_RTOL, what="final W")
    assert_close(b, ref_b, rtol=FLOAT64_TRAJECTORY_RTOL, what="final b")

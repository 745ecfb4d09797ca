"""Tests for the tables computed from a store (toyrelu.analysis) and the markdown summary.

Every store here is hand-made with ``Store.put``: hidden vectors H that form a regular T-gon and
weights W with a few long columns (a regular polygon) among tiny ones, so every expected value has
a closed form. No training runs.

Golden values (docs/experiment.md section 4; metrics.dimensionality): a regular k-gon of
equal-length vectors in the plane (k >= 3) has Gram matrix (k/2) r^2 I, so each vector's
D = r^4 / (r^2 * k/2 r^2) = 2/k: a pentagon 2/5, a triangle 2/3, and T training examples on a
regular T-gon m/T = 2/T.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import assert_close, trained_arrays
from toyrelu import analysis
from toyrelu.analysis import curves, procedures, regimes
from toyrelu.analysis.tables import LEARNED_D, Finding
from toyrelu.core import metrics
from toyrelu.core.config import RunConfig
from toyrelu.report import summary
from toyrelu.runs.store import Store

N_FEATURES = 12
TINY = 1e-3


def polygon(k: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """(k, 2) vertices of a regular k-gon."""
    angles = phase + 2 * np.pi * np.arange(k) / k
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def make_W(n_long: int, seed: int, n_features: int = N_FEATURES) -> np.ndarray:
    """(2, n_features): ``n_long`` unit columns on a regular polygon, the rest of length TINY.

    A tiny column's D is about TINY^2 * 2/n_long (~1e-7), far below LEARNED_D; a long one's is
    2/n_long up to O(TINY^2) (with n_long >= 3). D is scale-free, so with no long column the tiny
    ones alone would have D ~ 2/n_features: n_long = 0 gives W = 0 instead (every D is 0).
    """
    if n_long == 0:
        return np.zeros((2, n_features))
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_features, 2))
    W = TINY * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    W[:n_long] = polygon(n_long, phase=0.3 * seed)
    return W.T.copy()


def put_run(
    store: Store,
    *,
    T: int,
    seed: int,
    test_loss: float,
    n_long: int = 5,
    m: int = 2,
    H: np.ndarray | None = None,
    train_loss: float = 0.1,
    loss_reduction: str = "sum",
) -> RunConfig:
    """Store a hand-made run; returns its config. H defaults to a regular T-gon (m = 2)."""
    config = RunConfig(n_features=N_FEATURES, n_hidden=m, n_train=T, seed=seed, steps=10, n_test=5,
                       loss_reduction=loss_reduction)
    if m == 2:
        W = make_W(n_long, seed)
        H = polygon(T, radius=0.5 + seed, phase=0.1 * seed) if H is None else H
    else:
        rng = np.random.default_rng(100 + seed)
        W, H = rng.standard_normal((m, N_FEATURES)), rng.standard_normal((T, m))
    b = np.full(N_FEATURES, -0.1)
    W_norm, b_norm = metrics.norms(W, b)
    result = {"status": "ok", "error": None, "train_loss": train_loss, "test_loss": test_loss,
              "W_norm": W_norm, "b_norm": b_norm, "wall_seconds": 0.01}
    store.put(config.run_id, config.to_dict(), result, trained_arrays(config, W, b, H))
    return config


def build(path: Path, losses: dict[int, list[float]], *, n_long: dict[int, list[int]] | None = None,
          H: dict[int, np.ndarray] | None = None) -> Store:
    """A store with one m = 2 run per (T, seed); ``losses[T][seed]`` is its test loss."""
    store = Store(path)
    for T, per_seed in losses.items():
        for seed, loss in enumerate(per_seed):
            counts = (n_long or {}).get(T, [5] * len(per_seed))
            put_run(store, T=T, seed=seed, test_loss=loss, n_long=counts[seed],
                    H=None if H is None else H.get(T))
    return store


def tables(store: Store) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    runs = analysis.ok_runs(store)
    dims = analysis.dimensionality_table(store, runs)
    return runs, dims, analysis.per_T(runs, dims)


@pytest.fixture
def mixed(tmp_path: Path):
    """m = 2 runs at T = 5, 8, 20 (three seeds, inserted out of seed order), one m = 3 run at a
    larger T, and one failed run without arrays."""
    with Store(tmp_path / "runs.sqlite") as store:
        configs = {}
        losses = {5: [0.5, 0.6, 1.3], 8: [2.0, 2.5, 3.0], 20: [0.9, 0.7, 0.8]}
        n_long = {5: [5, 3, 4], 8: [5, 5, 5], 20: [3, 5, 4]}
        for seed in (2, 0, 1):
            for T in losses:
                configs[T, seed] = put_run(store, T=T, seed=seed, test_loss=losses[T][seed],
                                           n_long=n_long[T][seed])
        configs["m3"] = put_run(store, T=50, seed=0, test_loss=0.4, m=3)
        failed = RunConfig(n_features=N_FEATURES, n_train=5, seed=9, steps=10, n_test=5)
        store.put(failed.run_id, failed.to_dict(),
                  {"status": "failed", "error": "diverged: loss is inf at step 3",
                   "wall_seconds": 0.0}, {})
        yield store, configs


# ------------------------------------------------------------------- dimensionality table


def test_ok_runs_drops_failed_runs(mixed) -> None:
    store, configs = mixed
    runs = analysis.ok_runs(store)
    assert len(store) == 11 and len(runs) == 10
    assert (runs["status"] == "ok").all()
    assert list(runs.index) == list(range(10))


def test_dimensionality_table_matches_the_metrics(mixed) -> None:
    store, configs = mixed
    runs = analysis.ok_runs(store)
    dims = analysis.dimensionality_table(store, runs)
    assert list(dims.columns) == ["procedure", "run_id", "n_hidden", "n_train", "seed", "kind",
                                  "dimensionality"]
    assert set(dims["procedure"]) == {"summed loss (eps 1e-8)"}
    assert len(dims) == sum(N_FEATURES + T for T in runs["n_train"])
    for row in runs.itertuples():
        arrays = store.arrays(row.run_id)
        mine = dims[dims["run_id"] == row.run_id]
        assert set(mine["n_hidden"]) == {row.n_hidden} and set(mine["n_train"]) == {row.n_train}
        assert set(mine["seed"]) == {row.seed}
        features = mine[mine["kind"] == "feature"]["dimensionality"].to_numpy()
        examples = mine[mine["kind"] == "example"]["dimensionality"].to_numpy()
        assert features.shape == (N_FEATURES,) and examples.shape == (row.n_train,)
        # Same function on the same stored arrays: equal to the last bit.
        np.testing.assert_array_equal(features, metrics.feature_dimensionality(arrays["W"]))
        np.testing.assert_array_equal(examples, metrics.dimensionality(arrays["H"]))


def test_dimensionality_table_golden_values(mixed) -> None:
    store, configs = mixed
    runs = analysis.ok_runs(store)
    dims = analysis.dimensionality_table(store, runs.iloc[:0])
    assert dims.empty and "dimensionality" in dims.columns
    one = runs[runs["run_id"] == configs[5, 0].run_id]  # T = 5, seed 0: 5 long columns
    dims = analysis.dimensionality_table(store, one)
    features = dims[dims["kind"] == "feature"]["dimensionality"].to_numpy()
    examples = dims[dims["kind"] == "example"]["dimensionality"].to_numpy()
    # Pentagon columns 2/5 and tiny columns ~0, to O(TINY^2) (module docstring).
    assert_close(features[:5], np.full(5, 2 / 5), rtol=1e-5, what="pentagon D")
    assert_close(features[5:], np.zeros(N_FEATURES - 5), rtol=0, atol=1e-6, what="tiny D")
    # A regular pentagon of training examples: D = m/T = 2/5 each (exact up to rounding).
    assert_close(examples, np.full(5, 2 / 5), rtol=1e-12, what="T-gon D")


# ------------------------------------------------------------------------------- per_T


def test_per_T_aggregates_over_seeds(mixed) -> None:
    store, configs = mixed
    runs, dims, table = tables(store)
    assert list(table.columns) == [
        "procedure", "n_hidden", "n_train", "seeds", "test_mean", "test_median", "test_min",
        "test_max", "train_mean", "W_norm", "b_norm", "learned_features", "example_D_median",
        "m_over_T",
    ]
    assert list(zip(table["n_hidden"], table["n_train"], strict=True)) == [
        (2, 5), (2, 8), (2, 20), (3, 50)
    ]
    t = table.set_index(["n_hidden", "n_train"])
    # Test losses per seed (fixture): T=5 0.5, 0.6, 1.3; T=8 2.0, 2.5, 3.0; T=20 0.9, 0.7, 0.8.
    expected = {
        5: dict(seeds=3, test_mean=0.8, test_median=0.6, test_min=0.5, test_max=1.3,
                learned_features=4.0),  # long columns 5, 3, 4
        8: dict(seeds=3, test_mean=2.5, test_median=2.5, test_min=2.0, test_max=3.0,
                learned_features=5.0),
        20: dict(seeds=3, test_mean=0.8, test_median=0.8, test_min=0.7, test_max=0.9,
                 learned_features=4.0),  # 3, 5, 4
    }
    for T, values in expected.items():
        row = t.loc[(2, T)]
        for name, value in values.items():
            assert_close(row[name], value, rtol=1e-12, what=f"{name} at T={T}")
        assert_close(row["train_mean"], 0.1, rtol=1e-12)
        # Regular T-gons: every example's D is m/T, so the median is too.
        assert_close(row["example_D_median"], 2 / T, rtol=1e-10, what=f"example D at T={T}")
        assert_close(row["m_over_T"], 2 / T, rtol=1e-15)
        seeds = [configs[T, s].run_id for s in range(3)]
        W_norms = [runs.set_index("run_id").loc[r, "W_norm"] for r in seeds]
        assert_close(row["W_norm"], np.mean(W_norms), rtol=1e-12, what="W_norm")
        # b = -0.1 everywhere: ||b|| = 0.1 sqrt(n).
        assert_close(row["b_norm"], 0.1 * np.sqrt(N_FEATURES), rtol=1e-12, what="b_norm")
    m3 = t.loc[(3, 50)]
    assert m3["seeds"] == 1 and m3["test_mean"] == 0.4
    assert_close(m3["m_over_T"], 3 / 50, rtol=1e-15)


def test_per_T_learned_features_counts_D_above_the_threshold(tmp_path: Path) -> None:
    # Triangle columns (D = 2/3) and W = 0 (D = 0), against the LEARNED_D threshold.
    with build(tmp_path / "r.sqlite", {5: [0.5, 0.5], 8: [0.5, 0.5]},
               n_long={5: [3, 3], 8: [0, 3]}) as store:
        _, dims, table = tables(store)
    t = table.set_index("n_train")
    assert t.loc[5, "learned_features"] == 3.0
    assert t.loc[8, "learned_features"] == 1.5  # 0 and 3 long columns
    assert (dims[(dims["n_train"] == 8) & (dims["seed"] == 0) & (dims["kind"] == "feature")]
            ["dimensionality"] < LEARNED_D).all()


# ---------------------------------------------------------------------------- findings


def find(found: list[Finding], word: str) -> Finding:
    [match] = [f for f in found if word in f.claim]
    return match


def test_findings_a_clear_bump_in_the_middle_holds(tmp_path: Path) -> None:
    losses = {5: [0.3, 0.3], 8: [1.5, 1.5], 20: [3.0, 3.2], 50: [1.2, 1.2], 200: [0.4, 0.4]}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    found = analysis.findings(table, dims)
    assert len(found) == 3
    bump = find(found, "bump")
    assert bump.holds is True
    assert "peak mean test loss 3.1 at T = 20" in bump.measured
    assert "neighbours 1.5 and 1.2" in bump.measured


@pytest.mark.parametrize(
    "curve",
    [
        (3.0, 2.0, 1.5, 1.2, 0.5),  # monotone decreasing: the peak is at the smallest T
        (0.5, 1.2, 1.5, 2.0, 3.0),  # monotone increasing: the peak is at the largest T
        (0.3, 0.5, 0.9, 0.6, 0.4),  # a bump, but never above the zero predictor's loss 1
        (0.3, 3.0, 3.0, 0.6, 0.4),  # a plateau: the peak is not above both neighbours
    ],
)
def test_findings_no_bump(tmp_path: Path, curve: tuple[float, ...]) -> None:
    losses = {T: [loss] for T, loss in zip((5, 8, 20, 50, 200), curve, strict=True)}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    assert find(analysis.findings(table, dims), "bump").holds is False


# The paper-laptop store's mean test loss under the paper's procedure (docs/experiment.md
# section 9), rounded: the memorization regime's T = 10 (1.095) is higher than the bump at
# T = 2,000 (1.031), which the curve falls from into generalization at T = 10,000.
LAPTOP_T = (3, 5, 10, 30, 100, 500, 2_000, 10_000)
LAPTOP_MEAN = (1.068, 0.9999, 1.095, 1.0057, 1.0037, 1.0005, 1.031, 0.9989)


def test_findings_take_the_bump_before_generalization_not_a_higher_memorization_peak(
    tmp_path: Path,
) -> None:
    losses = {T: [loss] for T, loss in zip(LAPTOP_T, LAPTOP_MEAN, strict=True)}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    bump = find(analysis.findings(table, dims), "bump")
    assert bump.measured.startswith("peak mean test loss 1.03 at T = 2,000")
    assert "neighbours 1 and 0.999" in bump.measured
    assert bump.holds is True


@pytest.mark.parametrize(
    ("curve", "index"),
    [
        (LAPTOP_MEAN, 6),  # the last rise's peak, not the higher T = 10
        ((1.2, 3.0, 1.2, 1.1, 0.99), 1),  # a fall through 1.1 still descends from the bump
        ((1.2, 1.5, 3.0, 1.4, 0.99, 0.98), 2),  # a rise within the memorization regime
        ((3.0, 2.0, 1.5, 1.2, 0.5), 0),  # falls from the first T: the bump is at its edge
        ((0.5, 1.2, 1.5, 2.0, 3.0), 4),  # never settles below 1: walked from the last T
        ((1.5, 0.99, 2.0, 1.2), 2),  # never settles below 1, a dip below 1 before the rise
        ((0.3, 0.5, 0.9, 0.6, 0.4), 2),  # below 1 everywhere: the highest point, no bump
        ((0.3, 3.0, 3.0, 0.6, 0.4), 2),  # a plateau: the rise stops at its right end
        ((1.1,), 0),
    ],
)
def test_the_bump_is_the_peak_of_the_last_rise_before_generalization(
    curve: tuple[float, ...], index: int
) -> None:
    assert regimes.bump(curve) == index


@pytest.mark.parametrize(
    ("curve", "index"),
    [
        ((1.2, 1.3, math.nan), 1),  # no loss at the last T: walked from the last finite one
        ((1.2, math.nan, 1.5, 0.5), 2),  # a gap inside the rise is stepped over
        ((1.2, 2.0, math.nan, 1.4, 0.5), 1),  # ... and inside the fall
        ((math.nan, 0.3, 0.9, 0.6), 2),  # below 1 everywhere: the highest finite point
        ((1.2, 1.5, math.inf, 0.5), 1),  # a diverged mean is no peak
        ((1.2, 1.5, -math.inf, 0.5), 1),
    ],
)
def test_the_bump_skips_non_finite_losses(curve: tuple[float, ...], index: int) -> None:
    assert regimes.bump(curve) == index


@pytest.mark.parametrize("curve", [(), (math.nan,), (math.nan, math.inf)])
def test_the_bump_of_a_curve_without_a_finite_loss_is_an_error(curve: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="empty|no finite"):
        regimes.bump(curve)


def test_generalization_starts_where_the_loss_stays_below_one() -> None:
    assert regimes.generalizes_from(LAPTOP_MEAN) == 7  # T = 5 dips below 1 but does not stay
    assert regimes.generalizes_from((0.9, 0.8)) == 0
    assert regimes.generalizes_from((0.9, 1.0)) == 2  # 1 itself is not below the zero model


def test_findings_pentagon_at_the_largest_T(tmp_path: Path) -> None:
    losses = {5: [2.0, 2.0], 20: [3.0, 3.0], 200: [0.3, 0.5]}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    found = analysis.findings(table, dims)
    general = find(found, "handful")
    assert general.claim.startswith("T = 200:")
    assert general.holds is True
    # 5 pentagon columns per seed, each with D = 2/5.
    assert "5.0 features per seed with D > 0.1 (D 0.40-0.40)" in general.measured
    assert "mean test loss 0.4000" in general.measured


@pytest.mark.parametrize(
    ("n_long", "test_loss"),
    [(1, 0.4), (10, 0.4), (5, 1.2)],  # one feature, most features, or no better than zero
)
def test_findings_no_generalization(tmp_path: Path, n_long: int, test_loss: float) -> None:
    losses = {5: [2.0], 20: [3.0], 200: [test_loss]}
    with build(tmp_path / "r.sqlite", losses, n_long={200: [n_long]}) as store:
        _, dims, table = tables(store)
    assert find(analysis.findings(table, dims), "handful").holds is False


def test_findings_regular_polygons_hold_and_clumped_ones_do_not(tmp_path: Path) -> None:
    losses = {3: [1.0], 5: [2.0], 8: [3.0], 20: [1.5], 200: [0.4]}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    tgon = find(analysis.findings(table, dims), "T-gons")
    # T = 3 is left out; the three smallest T from 5 up are checked.
    assert tgon.claim.startswith("T = 5, 8, 20: ")
    assert tgon.measured.endswith("0% at T = 5, 0% at T = 8, 0% at T = 20")
    assert tgon.holds is True

    # Five equal hidden vectors on one ray: each D = 1/5 instead of m/T = 2/5 (50% off).
    ray = np.tile([[0.6, 0.8]], (5, 1))
    with build(tmp_path / "s.sqlite", losses, H={5: ray}) as store:
        _, dims, table = tables(store)
    tgon = find(analysis.findings(table, dims), "T-gons")
    assert "50% at T = 5" in tgon.measured
    assert tgon.holds is False


def test_findings_t_gons_golden_values(tmp_path: Path) -> None:
    """Closed forms of D = |v|^4 / (v^T G v), G = sum_j v_j v_j^T, against m/T:

    - a regular pentagon: G = (5/2) I, every D = 2/5 = m/T (0% off);
    - a distorted pentagon, the square e1, e2, -e1, -e2 with e1 twice: G = diag(3, 2), D = 1/3
      (three vectors, 17% below 2/5) and 1/2 (two, 25% above), median 17% off: fails;
    - T = 30 with 25 examples on a regular 25-gon and 5 at the origin, as the paper-laptop runs
      leave them (docs/experiment.md section 9): G = (25/2) I, D = 2/25 on the ring (20% above
      2/30) and 0 at the origin (100% off), median 20% off: fails.
    """
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    distorted = np.stack([e1, e2, -e1, -e2, e1])
    dropped = np.vstack([polygon(25), np.zeros((5, 2))])
    losses = {5: [2.0], 10: [3.0], 30: [1.5], 200: [0.4]}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    regular = find(analysis.findings(table, dims), "T-gons")
    assert regular.measured.endswith("0% at T = 5, 0% at T = 10, 0% at T = 30")
    assert regular.holds is True
    with build(tmp_path / "s.sqlite", losses, H={5: distorted, 30: dropped}) as store:
        _, dims, table = tables(store)
    ex = dims[(dims["kind"] == "example") & (dims["n_train"] == 5)]["dimensionality"]
    assert_close(np.sort(ex.to_numpy()), [1 / 3] * 3 + [1 / 2] * 2, rtol=1e-12)
    tgon = find(analysis.findings(table, dims), "T-gons")
    assert tgon.measured.endswith("17% at T = 5, 0% at T = 10, 20% at T = 30")
    assert tgon.holds is False


def test_findings_need_three_T(tmp_path: Path) -> None:
    with build(tmp_path / "r.sqlite", {5: [2.0], 200: [0.4]}) as store:
        _, dims, table = tables(store)
    assert analysis.findings(table, dims) == []


def test_findings_ignore_other_n_hidden(mixed) -> None:
    store, _ = mixed
    _, dims, table = tables(store)
    found = analysis.findings(table, dims)
    # The m = 3 run sits at T = 50, but the m = 2 runs end at T = 20.
    assert find(found, "handful").claim.startswith("T = 20:")
    assert "at T = 8" in find(found, "bump").measured


# ---------------------------------------------------------------------------- geometry


def test_geometry_picks_the_lowest_seed_and_adds_the_largest_T(mixed) -> None:
    store, configs = mixed
    runs = analysis.ok_runs(store)
    out = analysis.geometry(store, runs, (5, 6, 8))
    # T = 6 is not stored; T = 20 is the largest m = 2 T; the m = 3 run (T = 50) is no m = 2 run.
    assert [T for T, _, _ in out] == [5, 8, 20]
    for T, W, H in out:
        arrays = store.arrays(configs[T, 0].run_id)
        np.testing.assert_array_equal(W, arrays["W"])
        np.testing.assert_array_equal(H, arrays["H"])
        assert W.shape == (2, N_FEATURES) and H.shape == (T, 2)


def test_geometry_without_m2_runs_is_empty(tmp_path: Path) -> None:
    with Store(tmp_path / "r.sqlite") as store:
        put_run(store, T=5, seed=0, test_loss=1.0, m=3)
        assert analysis.geometry(store, analysis.ok_runs(store), (5,)) == []


# ----------------------------------------------------------------------------- summary


def summary_text(tmp_path: Path) -> tuple[str, pd.DataFrame, list[Finding]]:
    losses = {5: [0.3, 0.3], 8: [1.5, 1.5], 20: [3.0, 3.2], 50: [1.2, 1.2], 200: [0.4, 0.4]}
    with build(tmp_path / "r.sqlite", losses) as store:
        _, dims, table = tables(store)
    found = analysis.findings(table, dims)
    text = summary.markdown("toyrelu reproduce: test", {"preset": "test", "n_features": 12},
                            table, found, ["summary.png", "loss.png"],
                            {"ok": 10, "failed": 1, "error": 2})
    return text, table, found


def test_summary_has_settings_findings_and_a_per_T_table(tmp_path: Path) -> None:
    text, table, found = summary_text(tmp_path)
    lines = text.splitlines()
    assert lines[0] == "# toyrelu reproduce: test"
    assert "Runs: 10 finished, 1 failed, 2 errors." in lines
    assert "| preset | test |" in lines and "| n_features | 12 |" in lines
    for f in found:
        [row] = [line for line in lines if line.startswith(f"| {f.claim} | ")]
        assert row.endswith(f" | {'yes' if f.holds else 'no'} |")
        assert f.measured.split("|")[-1].strip() in row
    assert [f.holds for f in found] == [True, True, True]
    start = lines.index("m = 2")
    header = lines[start + 2]
    assert header.startswith("| T | seeds | test loss (mean) | test loss (median) |")
    body = lines[start + 4:start + 4 + len(table)]
    assert [row.split(" | ")[0] for row in body] == ["| 5", "| 8", "| 20", "| 50", "| 200"]
    # T = 20: two seeds, mean 3.1, median 3.1, ... (4 significant digits)
    assert body[2].startswith("| 20 | 2 | 3.1 | 3.1 | 3.2 | 0.1 | 5 | 0.1 | 0.1 |")
    assert "![summary.png](summary.png)" in lines and "![loss.png](loss.png)" in lines


def test_summary_findings_rows_have_three_cells(tmp_path: Path) -> None:
    text, _, found = summary_text(tmp_path)
    rows = [line for line in text.splitlines()
            if any(line.startswith(f"| {f.claim} |") for f in found)]
    assert len(rows) == len(found)
    for row in rows:
        cells = [c for c in row.replace("\\|", "").split("|")][1:-1]
        assert len(cells) == 3, row


def test_setting_keys_are_equal_exactly_for_runs_that_differ_only_in_the_fields_left_out() -> None:
    base = RunConfig(n_features=20, n_train=5, steps=10)
    runs = pd.DataFrame([c.to_dict() for c in (base, base.replace(restart=1),
                                               base.replace(seed=1), base.replace(n_train=7))])
    keys, fields = analysis.setting_keys(runs, ("restart",))
    assert "restart" not in fields and {"seed", "n_train"} <= set(fields)
    assert keys[0] == keys[1] and len({keys[0], keys[2], keys[3]}) == 3
    keys, _ = analysis.setting_keys(runs, ("restart", "seed", "n_train"))
    assert keys.nunique() == 1


# ---------------------------------------------------------------------- two procedures

SUMMED, PAPERS = "summed loss (eps 1e-8)", "paper's procedure: mean over features"
# Per T the two seeds' test losses under each procedure: the same sweep, a bump of mean 3.1 on
# the summed loss and of 1.5 on the mean over features, both at T = 20.
BY_PROCEDURE = {
    "sum": {5: [0.3, 0.3], 8: [1.5, 1.5], 20: [3.0, 3.2], 50: [1.2, 1.2], 200: [0.4, 0.4]},
    "mean": {5: [0.3, 0.3], 8: [1.1, 1.1], 20: [1.4, 1.6], 50: [1.0, 1.0], 200: [0.4, 0.4]},
}


@pytest.fixture
def both(tmp_path: Path):
    with Store(tmp_path / "runs.sqlite") as store:
        for reduction, losses in BY_PROCEDURE.items():
            for T, per_seed in losses.items():
                for seed, loss in enumerate(per_seed):
                    put_run(store, T=T, seed=seed, test_loss=loss, loss_reduction=reduction)
        yield store


def test_runs_of_the_two_procedures_are_two_settings(both) -> None:
    runs = analysis.ok_runs(both)
    assert len(runs) == 20  # none dropped as a restart of the other procedure
    keys, fields = analysis.setting_keys(runs, ("n_train", "seed"))
    assert "loss_reduction" in fields and keys.nunique() == 2
    assert [name for name, _ in procedures.split(runs)] == [SUMMED, PAPERS]


def test_per_T_and_findings_never_pool_the_procedures(both) -> None:
    runs, dims, table = tables(both)
    assert list(table["procedure"]) == [SUMMED] * 5 + [PAPERS] * 5
    assert set(dims["procedure"]) == {SUMMED, PAPERS}
    for name, reduction in ((SUMMED, "sum"), (PAPERS, "mean")):
        rows = table[table["procedure"] == name].set_index("n_train")
        expected = {T: np.mean(v) for T, v in BY_PROCEDURE[reduction].items()}
        assert_close(rows["test_mean"].to_numpy(), list(expected.values()), rtol=1e-12,
                     what=name)
        assert (rows["seeds"] == 2).all()
    found = analysis.findings(table, dims)
    assert [f.procedure for f in found] == [SUMMED] * 3 + [PAPERS] * 3
    summed, averaged = find(found[:3], "bump"), find(found[3:], "bump")
    assert summed.measured.startswith("peak mean test loss 3.1 at T = 20")
    assert averaged.measured.startswith("peak mean test loss 1.5 at T = 20")


def test_loss_curves_refuse_runs_of_two_procedures(both) -> None:
    runs = analysis.ok_runs(both)
    with pytest.raises(ValueError, match="2 procedures"):
        curves.curves(runs, "n_hidden")
    by = curves.curves(runs, "loss_reduction")  # the procedure itself as the swept setting
    assert sorted(set(by["loss_reduction"])) == ["mean", "sum"]
    one = curves.curves(runs[runs["loss_reduction"] == "mean"], "n_hidden")
    assert_close(one["test_mean"].to_numpy(), [0.3, 1.1, 1.5, 1.0, 0.4], rtol=1e-12)


def test_the_procedure_sentence_is_computed_from_the_runs(both) -> None:
    runs, _, table = tables(both)
    # n = 12, eps 1e-8: the mean trains as the sum with eps 1.2e-7 (docs/experiment.md 9).
    assert procedures.comparison(runs, table) == (
        "Averaging the loss over the n = 12 features, as the paper most likely did, lowers the "
        "bump (the peak of the mean test loss before it settles below 1, at m = 2) from 3.1 "
        "to 1.5 at T = 20: Adam then trains as on the summed loss with eps n × 1e-8 = 1.2e-7 "
        "(docs/experiment.md section 9).")
    assert procedures.comparison(runs[runs["loss_reduction"] == "sum"], table) == ""


def test_the_procedure_sentence_names_the_bumps_not_a_memorization_peak(tmp_path: Path) -> None:
    # The paper-laptop store, rounded: the summed loss peaks at its bump, the mean higher at
    # T = 10 than at its bump (LAPTOP_MEAN).
    summed = (1.089, 0.9999, 1.0001, 1.0066, 1.0017, 3.038, 474.7, 0.9995)
    with Store(tmp_path / "r.sqlite") as store:
        for reduction, curve in (("sum", summed), ("mean", LAPTOP_MEAN)):
            for T, loss in zip(LAPTOP_T, curve, strict=True):
                put_run(store, T=T, seed=0, test_loss=loss, loss_reduction=reduction)
        runs, _, table = tables(store)
    assert (" lowers the bump (the peak of the mean test loss before it settles below 1, at "
            "m = 2) from 475 to 1.03 at T = 2,000: ") in procedures.comparison(runs, table)


def test_summary_of_two_procedures_opens_with_the_sentence_and_splits_its_tables(both) -> None:
    runs, dims, table = tables(both)
    sentence = procedures.comparison(runs, table)
    text = summary.markdown("toyrelu reproduce: test", {"preset": "test"}, table,
                            analysis.findings(table, dims), [], {"ok": 20}, sentence)
    lines = text.splitlines()
    assert lines[4] == sentence
    assert lines.count(f"m = 2, {SUMMED}") == lines.count(f"m = 2, {PAPERS}") == 1
    rows = [line for line in lines if "a test-loss bump" in line]
    assert [row.split(" | ")[0] for row in rows] == [f"| {SUMMED}", f"| {PAPERS}"]

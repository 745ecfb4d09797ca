"""Tests for the experiments beyond the m = 2 sweep: presets, tables, findings, figures, sections.

Tables and findings are checked on hand-made run tables and hand-made stores (``Store.put``)
whose expected values are written beside them; figures through what they drew; no training
except one CLI test on a tiny override of a twin.

Golden values: a vector alone in its direction among distinct training vectors has D = D* = 1
(metrics.dimensionality: ||h||^4 / (h . G h) with G = h h^T + orthogonal terms); the paper's
ridge positions (2k, 5k, 20k at m = 2, 4, 8, S = 0.999) scale by 0.001 / (1 - S), so to 200,
500, 2,000 at S = 0.99.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import AxesImage

from helpers import assert_close
from toyrelu import analysis
from toyrelu.analysis import curves as shared
from toyrelu.core import data, metrics
from toyrelu.core.config import RunConfig
from toyrelu.experiments import (
    RECORDS,
    heatmap,
    max_dimensionality,
    repeated,
    sparsity,
    training_length,
    weight_decay,
)
from toyrelu.figures import axes as fx
from toyrelu.report import records
from toyrelu.runs.presets import PAPER_T, PRESETS, Preset, cpu_seconds
from toyrelu.runs.store import Store

BUDGET_S = 15 * 60  # every reduced twin within 15 minutes on 2 cores


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------- presets


def test_every_preset_is_valid_and_names_its_experiment():
    for name, preset in PRESETS.items():
        configs = preset.configs()
        assert preset.name == name and configs, name
        assert len({c.run_id for c in configs}) == len(configs)
        assert preset.experiment in ("double-descent", "heatmap", "weight-decay",
                                     "training-length", "repeated", "sparsity", "mechanism")
    with pytest.raises(ValueError, match="experiment"):
        Preset("x", "", RunConfig(), experiment="nope")


@pytest.mark.parametrize("name", ["heatmap", "weight-decay", "training-length", "repeated",
                                  "sparsity"])
def test_each_experiment_has_a_paper_preset_and_a_twin_within_budget(name):
    paper, twin = PRESETS[name], PRESETS[f"{name}-quick"]
    assert paper.experiment == twin.experiment == name
    assert {c.n_features for c in paper.configs()} == {10_000}
    assert {c.steps for c in paper.configs()} >= {50_000}
    assert {c.n_features for c in twin.configs()} == {1_000}
    assert cpu_seconds(twin.configs()) <= BUDGET_S
    assert cpu_seconds(paper.configs()) > 10 * BUDGET_S  # paper scale is not a CPU job


def test_paper_preset_covers_the_full_m2_T_list_with_infinity():
    # docs/experiment.md section 5: "3, 5, 6, ..., 200k, 500k, and infinity", 4 seeds.
    configs = PRESETS["paper"].configs()
    assert sorted({c.n_train for c in configs}) == [
        3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000,
        100_000, 200_000, 500_000, math.inf]
    assert PAPER_T[-1] == math.inf and len(configs) == 21 * 4 * 2  # both procedures
    assert all(c.infinite == (c.n_train == math.inf) for c in configs)


def test_paper_laptop_preset_is_the_paper_m2_setting_over_the_T_of_its_bump_and_pentagon():
    # core/paper.py: the bump at T = 2,000, the pentagon from T = 10,000; n = 10,000, S = 0.999,
    # 50,000 steps. The T come from the paper's list, up to the pentagon.
    configs = PRESETS["paper-laptop"].configs()
    T = sorted({c.n_train for c in configs})
    assert T == [3, 5, 10, 30, 100, 500, 2_000, 10_000] and set(T) <= set(PAPER_T)
    assert {(c.n_features, c.sparsity, c.n_hidden, c.steps) for c in configs} == {
        (10_000, 0.999, 2, 50_000)}
    assert len(configs) == 8 * 2 * 2  # 2 seeds, both procedures
    assert {c.loss_reduction for c in configs} == {"sum", "mean"}
    assert PRESETS["paper-laptop"].experiment == "double-descent"
    assert set(PRESETS["paper-laptop"].geometry_T) <= set(T)


def test_heatmap_preset_is_the_paper_grid():
    configs = PRESETS["heatmap"].configs()
    assert sorted({c.n_hidden for c in configs}) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 16]
    assert sorted({c.n_train for c in configs}) == [200, 500, 1_000, 2_000, 5_000, 10_000,
                                                    20_000, 50_000, 100_000, 200_000, 500_000]
    assert len(configs) == 10 * 11 * 4


def test_sweeps_at_m4_keep_warmup_at_five_percent():
    for name in ("training-length", "training-length-quick"):
        configs = PRESETS[name].configs()
        assert {c.n_hidden for c in configs} == {4} and len({c.steps for c in configs}) == 4
        assert all(c.warmup_steps is None and c.warmup == round(0.05 * c.steps)
                   for c in configs)
    assert {c.weight_decay for c in PRESETS["weight-decay-quick"].configs()} == {
        0.0, 1e-3, 1e-2, 1e-1, 1.0}


def test_sparsity_blocks_give_each_S_its_own_T_list():
    configs = PRESETS["sparsity-quick"].configs()
    by_S: dict[float, set] = {}
    for c in configs:
        by_S.setdefault(c.sparsity, set()).add(c.n_train)
    # T = round(count / (1 - S)) for counts 1, 2, 5, 10, 20, 50
    assert by_S[0.99] == {100, 200, 500, 1_000, 2_000, 5_000}
    assert by_S[0.98] == {50, 100, 250, 500, 1_000, 2_500}
    assert by_S[0.97] == {33, 67, 167, 333, 667, 1_667}
    assert len(configs) == 4 * 6 * 3 * 2  # both procedures
    # An override of a block's field replaces it in every block; other fields keep the blocks.
    one = PRESETS["sparsity-quick"].override({"n_train": [10, 20]})
    assert {(c.sparsity, c.n_train) for c in one.configs() if c.seed == 0} == {
        (S, T) for S in (0.97, 0.98, 0.99, 0.995) for T in (10, 20)}
    seeds = PRESETS["sparsity-quick"].override({"seed": [7]})
    assert len(seeds.configs()) == 24 * 2 and seeds.experiment == "sparsity"


def test_repeated_presets_repeat_one_point_at_three_T_over_n():
    for name, n in (("repeated", 10_000), ("repeated-quick", 1_000)):
        configs = PRESETS[name].configs()
        assert {c.n_repeated for c in configs} == {1}
        assert {c.n_train / n for c in configs} == {1, 3, 10}
        assert sorted({c.repeats for c in configs}) == [1, 2, 3, 5, 10, 20, 50]


# Golden value: the run id of the quick preset's T = 300, seed 0 run on the summed loss, as
# computed before the preset trained under both procedures; stores keyed by it must resume.
QUICK_T300_SUM = "2400600beecf9307"


def test_m2_presets_add_the_paper_procedure_and_keep_their_summed_runs():
    assert len(PRESETS["smoke"].configs()) == 8
    quick = PRESETS["quick"].configs()
    summed = [c for c in quick if c.loss_reduction == "sum"]
    assert len(quick) == 120 and len(summed) == 60
    assert {c.replace(loss_reduction="sum").run_id for c in quick} == {c.run_id for c in summed}
    assert {c.loss_reduction for c in quick} == {"sum", "mean"}
    assert QUICK_T300_SUM in {c.run_id for c in summed}
    assert {c.run_id for c in summed} == {c.run_id for c in PRESETS["quick"].override(
        {"loss_reduction": ["sum"]}).configs()}
    full = PRESETS["quick-full"].configs()
    assert {c.run_id for c in quick} < {c.run_id for c in full}
    assert cpu_seconds(full) <= BUDGET_S


@pytest.mark.parametrize("name", [name for name in PRESETS if name.endswith("-quick")])
def test_every_twin_trains_under_both_procedures(name: str) -> None:
    configs = PRESETS[name].configs()
    by = {r: {c.replace(loss_reduction="sum").run_id for c in configs if c.loss_reduction == r}
          for r in ("sum", "mean")}
    assert by["sum"] and by["sum"] == by["mean"]  # the same grid under each
    assert cpu_seconds(configs) <= BUDGET_S


def test_paper_scale_presets_train_both_procedures_where_it_costs_no_more_than_the_m2_sweep():
    """A paper-scale preset sweeps both procedures when its sweep under one costs no more than
    the paper's m = 2 sweep under one (runs/presets.py); the costlier keep the summed loss."""
    def summed(name: str) -> float:
        return cpu_seconds([c for c in PRESETS[name].configs() if c.loss_reduction == "sum"])

    for name in ("paper", "heatmap", "weight-decay", "training-length", "repeated", "sparsity"):
        both = {c.loss_reduction for c in PRESETS[name].configs()} == {"sum", "mean"}
        assert both == (summed(name) <= summed("paper")), name
        assert ("both procedures" in PRESETS[name].description) == both, name


# ------------------------------------------------------------------------ hand-made tables


def run_rows(cells, **fixed):
    """Rows of a runs table: ``cells`` maps (axis values..., T, seed) tuples to test losses."""
    base = RunConfig(n_features=1_000, sparsity=0.99, **fixed).to_dict()
    rows = []
    for (changes, T, seed), loss in cells.items():
        row = {**base, **dict(changes), "n_train": T, "seed": seed}
        rows.append({"run_id": f"{sorted(row.items())}", "status": "ok", **row,
                     "test_loss": loss, "train_loss": 0.5})
    return pd.DataFrame(rows)


# Mean test loss per (m, T) over seeds 0 and 1: m = 2 peaks at T = 200, m = 4 at 500 and
# m = 8 at infinity (seed 1 adds 0.2 to seed 0).
HEATMAP = {2: {100: 1.1, 200: 1.5, 500: 1.0, math.inf: 0.99},
           4: {100: 1.0, 200: 1.2, 500: 1.4, math.inf: 0.99},
           8: {100: 1.0, 200: 1.0, 500: 1.1, math.inf: 1.3}}


def heatmap_runs():
    cells = {((("n_hidden", m),), T, s): loss + 0.2 * s
             for m, row in HEATMAP.items() for T, loss in row.items() for s in (0, 1)}
    return run_rows(cells)


def test_heatmap_table_is_the_seed_mean_with_infinity_last():
    table = heatmap.heatmap_table(heatmap_runs())
    assert list(table.index) == [2, 4, 8] and list(table.columns) == [100, 200, 500, math.inf]
    assert_close(table.loc[4].to_numpy(), [1.1, 1.3, 1.5, 1.09], rtol=1e-12, what="m = 4 row")


def test_a_ridge_is_the_bump_of_its_row_not_a_higher_small_T_loss():
    # m = 16 memorizes past T = 100 (2.0 there) and has its bump at T = 1,000; a missing cell
    # (NaN) is skipped, not taken for a dip.
    table = pd.DataFrame([[2.0, 1.0, math.nan, 1.5, 0.99]], index=[16],
                         columns=[100, 200, 500, 1_000, 3_000])
    ridge = heatmap.ridges(table, 0.99)
    assert list(ridge["ridge_T"]) == [1_000] and list(ridge["peak"]) == [1.5]


def test_ridges_and_their_findings():
    ridge = heatmap.ridges(heatmap.heatmap_table(heatmap_runs()), 0.99)
    assert list(ridge["ridge_T"]) == [200, 500, math.inf]
    assert_close(ridge["peak"].to_numpy(), [1.6, 1.5, 1.4], rtol=1e-12)
    assert_close(ridge["paper_T"].to_numpy(), [200, 500, 2_000], rtol=1e-9)  # x 0.001/0.01
    moves, where = heatmap.heatmap_findings(ridge, 0.99)
    assert moves.holds and "rank correlation with m 1.00" in moves.measured
    assert "5k at m = 4" in moves.paper
    assert not where.holds  # infinity is not within a factor 3 of 2,000
    assert "m = 2: T = 200, 1x the expected 200" in where.measured
    backwards = ridge.assign(ridge_T=[500, 200, 100])
    assert not heatmap.heatmap_findings(backwards, 0.99)[0].holds


def test_a_row_that_never_rises_above_one_has_no_ridge():
    """A row of learned models (every mean test loss below 1) has no ridge: no cross in the
    figure, the trend taken over the other rows and the row named in the measured text."""
    table = heatmap.heatmap_table(heatmap_runs())
    table.loc[16] = [0.99, 0.98, 0.97, 0.96]
    ridge = heatmap.ridges(table, 0.99)
    assert ridge["ridge_T"].isna().tolist() == [False, False, False, True]
    moves, _ = heatmap.heatmap_findings(ridge, 0.99)
    assert moves.holds and moves.measured.endswith("no mean test loss above 1 at any T for m = 16")
    fig, ax = plt.subplots()
    heatmap.plot_heatmap(ax, table, ridge=ridge)
    (marks,) = [c for c in ax.collections if c.get_label() == "ridge"]
    assert len(marks.get_offsets()) == 3
    gone = heatmap.ridges(table.clip(upper=1.0), 0.99)
    assert heatmap.heatmap_findings(gone, 0.99) == []
    _, where = heatmap.heatmap_findings(
        ridge.assign(ridge_T=[200, math.nan, math.inf, math.nan]), 0.99)
    assert not where.holds and "m = 4: no ridge, against the expected 500" in where.measured


def test_curves_and_bumps():
    cells = {((("weight_decay", wd),), T, s): loss
             for wd, losses in {0.0: (1.2, 3.0, 0.99), 1.0: (1.0, 1.001, 0.998)}.items()
             for T, loss in zip((100, 300, 1_000), losses, strict=True) for s in (0, 1)}
    runs = run_rows(cells, n_hidden=4)
    table = shared.curves(runs, "weight_decay")
    assert list(table.columns) == ["weight_decay", "n_train", "seeds", "test_mean",
                                   "test_median", "test_min", "test_max", "train_mean"]
    bump = shared.bumps(table, "weight_decay")
    assert list(bump["peak_T"]) == [300, 300]
    assert_close(bump["bump"].to_numpy(), [2.0, 0.001], rtol=1e-9)
    assert_close(bump["last_loss"].to_numpy(), [0.99, 0.998], rtol=1e-12)
    found = weight_decay.weight_decay_finding(bump)
    assert found.holds and found.claim.startswith("weight decay 1 removes the bump")
    assert "2 (wd 0, T = 300)" in found.measured
    assert not weight_decay.weight_decay_finding(bump.assign(bump=[0.001, 2.0])).holds


def test_bumps_skip_a_higher_loss_in_the_memorization_regime():
    # Weight decay 0: small T costs more (2.0 at T = 10) than the bump (1.5 at T = 300) that the
    # curve falls from into generalization; weight decay 1: a bump of 0.01 after a 1.3 at T = 10.
    cells = {((("weight_decay", wd),), T, 0): loss
             for wd, losses in {0.0: (2.0, 1.1, 1.5, 0.99), 1.0: (1.3, 1.0, 1.01, 0.98)}.items()
             for T, loss in zip((10, 100, 300, 1_000), losses, strict=True)}
    bump = shared.bumps(shared.curves(run_rows(cells, n_hidden=4), "weight_decay"),
                        "weight_decay")
    assert list(bump["peak_T"]) == [300, 300]
    assert_close(bump["bump"].to_numpy(), [0.5, 0.01], rtol=1e-9)
    assert weight_decay.weight_decay_finding(bump).holds  # 0.01 is under 10% of 0.5


def test_training_length_finding():
    bump = pd.DataFrame({"steps": [2_500, 5_000, 10_000], "peak_T": [300] * 3,
                         "bump": [0.1, 0.5, 2.0]})
    assert training_length.training_length_finding(bump).holds
    assert not training_length.training_length_finding(bump.assign(bump=[2.0, 0.5, 0.1])).holds
    assert training_length.training_length_finding(bump.iloc[:1]) is None


def test_select_picks_each_experiment_from_a_mixed_table():
    heat = heatmap_runs()
    wd = run_rows({((("weight_decay", w),), T, 0): 1.0 for w in (0.0, 0.1) for T in (10, 20)},
                  n_hidden=4, steps=123)
    m2 = run_rows({((), T, 0): 1.0 for T in (10, 20, 30, 40, 50)}, steps=77)  # more T than heat
    rep = run_rows({((("repeats", R),), 30, 0): 1.0 for R in (1, 2)}, n_repeated=1)
    runs = pd.concat([heat, wd, m2, rep], ignore_index=True)
    assert RECORDS["heatmap"].select(runs)["run_id"].tolist() == heat["run_id"].tolist()
    assert set(RECORDS["weight-decay"].select(runs)["run_id"]) == set(wd["run_id"])
    assert set(RECORDS["repeated"].select(runs)["run_id"]) == set(rep["run_id"])
    assert set(RECORDS["max-dimensionality"].select(runs)["run_id"]) == set(m2["run_id"])
    assert RECORDS["training-length"].select(runs).empty
    assert RECORDS["sparsity"].select(runs).empty
    assert RECORDS["heatmap"].select(runs.iloc[:0]).empty


def test_repeated_points_reconstruct_and_count_distinct_examples():
    # n = 3, m = 2, W maps features 0 and 1 onto the axes and drops feature 2. Training rows:
    # e0 (repeated, R = 3), e2, e1, then the two copies of e0. Distinct H: (1,0), (0,0), (0,1).
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    X = {"X_indptr": np.arange(6), "X_indices": np.array([0, 2, 1, 0, 0]),
         "X_data": np.ones(5)}
    H = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    points = repeated.repeated_points(W, np.zeros(3), X, H, n_repeated=1, repeats=3)
    (row,) = points.to_dict("records")
    assert row["point"] == 0 and row["memorised"]
    assert_close([row["own_loss"], row["h_norm"], row["D"], row["D_star"]], [0, 1, 1, 1],
                 rtol=0, atol=1e-12, what="e0: rebuilt exactly, alone on its axis")
    assert_close(metrics.dimensionality(H)[0], 1 / 3, rtol=1e-12)  # with copies: 1/R
    # Repeating e2 instead: W sends it to 0, so nothing is rebuilt (loss ||x||^2 = 1), D = 0.
    X2 = dict(X, X_indices=np.array([2, 0, 1, 2, 2]))
    H2 = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    (row2,) = repeated.repeated_points(W, np.zeros(3), X2, H2, 1, 3).to_dict("records")
    assert not row2["memorised"] and row2["own_loss"] == 1.0 and row2["D"] == 0.0


# Share of seeds memorised per R at three T/n: a clean step at T/n = 3, none at 10, a late one
# at 1, and a non-monotone start at 0.5 (memorised at R = 1, not 2, then from 3 on).
MEMORISED = {1.0: (0, 0, 0, 0, 1), 3.0: (0, 0, 0.5, 1, 1), 10.0: (0, 0, 0, 0, 0),
             0.5: (1, 0, 1, 1, 1)}
R_GRID = (1, 2, 3, 5, 10)


def repeated_summary_table(learned=(5, 5, 5, 4, 4)):
    rows = [{"n_train": int(ratio * 1_000), "repeats": R, "T_over_n": ratio, "seeds": 2,
             "memorised": share, "own_loss": 1 - share, "D": share,
             "learned_features": 5.0, "kept_features": float(k), "test_loss": 1.0}
            for ratio, shares in MEMORISED.items()
            for R, share, k in zip(R_GRID, shares, learned, strict=True)]
    return pd.DataFrame(rows)


def test_boundaries_bracket_the_memorisation_boundary():
    bounds = repeated.boundaries(repeated_summary_table()).set_index("T_over_n")
    assert bounds.loc[3.0, ["R_lo", "R_hi"]].tolist() == [2, 3]
    assert bounds.loc[10.0, "R_hi"] == math.inf and bounds.loc[10.0, "R_lo"] == 10
    assert bounds.loc[1.0, ["R_lo", "R_hi"]].tolist() == [5, 10]
    assert bounds.loc[0.5, ["R_lo", "R_hi"]].tolist() == [2, 3]
    assert_close(bounds["predicted"].to_numpy(), 0.4 * bounds.index.to_numpy(), rtol=1e-12)
    # predicted 1.2 in (2, 3]; 4 vs "not at 10" (10 <= 2.5 x 4); 0.4 vs "not at 5" and 0.2
    # vs "not at 2": more than a factor 2.5 apart.
    assert bounds["consistent"].to_dict() == {0.5: False, 1.0: False, 3.0: True, 10.0: True}


def test_repeated_findings():
    summary = repeated_summary_table()
    memorise, boundary = repeated.repeated_findings(
        summary, repeated.boundaries(summary))
    assert memorise.holds and memorise.claim.startswith("R = 5 memorises")
    assert "5.0 other features at R = 1" in memorise.measured
    assert "4.0 other features at R = 5" in memorise.measured
    assert not boundary.holds and "T/n = 3: memorised from R = 3 (not at 2)" in \
        boundary.measured
    kept = repeated_summary_table(learned=(5, 5, 5, 5, 5))  # memorised but no feature lost
    assert not repeated.repeated_findings(kept, repeated.boundaries(kept))[0].holds


def test_sparsity_onsets_and_finding():
    rows = [(0.99, 100, 1.0, 0), (0.99, 500, 1.2, 1), (0.99, 1_000, 0.99, 5),
            (0.99, 2_000, 0.98, 5), (0.98, 100, 1.1, 0), (0.98, 250, 0.99, 2),
            (0.98, 500, 1.01, 3), (0.98, 1_000, 0.98, 5), (0.9, 10, 1.5, 0), (0.9, 50, 1.2, 0)]
    runs = pd.DataFrame([{"run_id": f"r{i}", "sparsity": S, "n_train": T, "seed": 0,
                          "test_loss": loss} for i, (S, T, loss, _) in enumerate(rows)])
    learned = pd.Series({f"r{i}": k for i, (*_, k) in enumerate(rows)})
    table = sparsity.sparsity_table(runs, learned)
    assert_close(table["count"].to_numpy(), table["n_train"] * (1 - table["sparsity"]),
                 rtol=1e-12)
    assert table.set_index(["sparsity", "n_train"]).loc[(0.98, 500), "learned_features"] == 3
    onset = sparsity.onsets(table).set_index("sparsity")
    assert onset.loc[0.99, "onset_T"] == 1_000 and onset.loc[0.98, "onset_T"] == 1_000
    assert math.isnan(onset.loc[0.9, "onset_T"])  # never below 1
    assert_close(onset.loc[[0.98, 0.99], "onset_count"].to_numpy(), [20, 10], rtol=1e-9)
    assert not sparsity.sparsity_finding(onset.reset_index()).holds
    found = sparsity.sparsity_finding(onset.drop(index=0.9).reset_index())
    assert found.holds and "10 (S = 0.99, T = 1,000)" in found.measured


def test_rank_correlation_and_fmt_T():
    assert shared.rank_correlation([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert math.isnan(shared.rank_correlation([1, 2], [5, 5]))
    assert [analysis.fmt_T(T) for T in (30, 2_000.0, math.inf)] == ["30", "2,000", "∞"]


# ------------------------------------------------------------------------------- figures


def test_T_positions_put_infinity_right_of_the_largest_T():
    assert_close(fx.T_positions([10, math.inf, 100]), [10, 400, 100], rtol=0)
    assert_close(fx.T_positions([math.inf]), [1.0], rtol=0)
    assert [fx.short_T(T) for T in (30, 1_000, 2_500, 500_000, math.inf)] == [
        "30", "1k", "2.5k", "500k", "∞"]


def test_plot_heatmap_draws_log_loss_cells_and_marks_the_ridge():
    table = heatmap.heatmap_table(heatmap_runs())
    ridge = heatmap.ridges(table, 0.99)
    fig, ax = plt.subplots()
    assert heatmap.plot_heatmap(ax, table, ridge=ridge) is ax
    (image,) = [a for a in ax.get_images() if isinstance(a, AxesImage)]
    assert_close(np.asarray(image.get_array()), np.log10(table.to_numpy()), rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "200", "500", "∞"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "4", "8"]
    (marks,) = [c for c in ax.collections if c.get_label() == "ridge"]
    assert_close(marks.get_offsets(), [[1, 0], [2, 1], [3, 2]], rtol=0)  # (column, row)
    assert len(fig.axes) == 2  # the colour bar


def test_plot_loss_by_draws_one_mean_curve_per_value_with_infinity_tick():
    table = shared.curves(heatmap_runs(), "n_hidden")
    fig, ax = plt.subplots()
    assert fx.plot_loss_by(ax, table, by="n_hidden") is ax
    (m4,) = [ln for ln in ax.get_lines() if ln.get_label() == "$m$ = 4"]
    assert_close(m4.get_xdata(), [100, 200, 500, 2_000], rtol=0)
    assert_close(m4.get_ydata(), [1.1, 1.3, 1.5, 1.09], rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "∞"
    assert ax.get_xscale() == ax.get_yscale() == "log"
    steps = table.rename(columns={"n_hidden": "steps"}).assign(steps=lambda t: t.steps * 1000)
    fig, ax = plt.subplots()
    fx.plot_loss_by(ax, steps, by="steps")
    assert "4,000 steps" in [ln.get_label() for ln in ax.get_lines()]


def test_plot_repeated_geometry_stars_the_repeated_points():
    W = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    fig, ax = plt.subplots()
    assert repeated.plot_repeated_geometry(ax, W, np.array([[0.0, 3.0]])) is ax
    (star,) = [c for c in ax.collections if c.get_label() == "repeated point"]
    assert_close(star.get_offsets(), [[0.0, 3.0]], rtol=0)
    assert ax.get_ylim()[1] >= 3.0  # the view holds the long repeated point


def test_plot_repeated_and_boundary_draw_the_summary():
    summary = repeated_summary_table()
    fig, axes = plt.subplots(1, 3)
    repeated.plot_repeated(axes[0], summary, column="own_loss")
    (three,) = [ln for ln in axes[0].get_lines() if ln.get_label() == "T/n = 3"]
    assert_close(three.get_xdata(), R_GRID, rtol=0)
    assert_close(three.get_ydata(), [1, 1, 0.5, 0, 0], rtol=0)
    repeated.plot_repeated(axes[1], summary, column="kept_features")
    assert "not the point's" in axes[1].get_ylabel()
    repeated.plot_boundary(axes[2], summary)
    filled = [c for c in axes[2].collections if c.get_label() == "memorised"][0]
    assert sorted(map(tuple, filled.get_offsets())) == sorted(
        (ratio, R) for ratio, shares in MEMORISED.items()
        for R, share in zip(R_GRID, shares, strict=True) if share >= 0.5)
    (line,) = [ln for ln in axes[2].get_lines() if ln.get_label() == "R = 0.4 T/n"]
    assert_close(line.get_ydata(), 0.4 * np.asarray(line.get_xdata()), rtol=1e-12)


def test_plot_sparsity_draws_loss_vs_count_and_onsets():
    table = pd.DataFrame({"sparsity": [0.99] * 3 + [0.98] * 3,
                          "n_train": [100, 1_000, 2_000, 50, 500, 1_000],
                          "count": [1.0, 10, 20, 1, 10, 20],
                          "test_mean": [1.2, 0.99, 0.98, 1.1, 1.01, 0.99]})
    onset = sparsity.onsets(table)
    fig, ax = plt.subplots()
    assert sparsity.plot_sparsity(ax, table, onset=onset) is ax
    (curve,) = [ln for ln in ax.get_lines() if ln.get_label() == "S = 0.99"]
    assert_close(curve.get_xdata(), [1, 10, 20], rtol=0)
    diamonds = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted(tuple(o) for c in diamonds for o in c.get_offsets()) == [
        (10.0, 0.99), (20.0, 0.99)]
    (ten,) = [ln for ln in ax.get_lines() if ln.get_label() == "T(1 - S) = 10"]
    assert list(ten.get_xdata()) == [10, 10]


def test_plot_max_dimensionality_subsamples_and_draws_the_median():
    examples = pd.DataFrame({"n_hidden": 2, "n_train": [5] * 5 + [math.inf] * 3000,
                             "D": 0.0, "D_star": [0.4] * 5 + [0.0] * 2999 + [1.0]})
    fig, ax = plt.subplots()
    assert max_dimensionality.plot_max_dimensionality(ax, examples) is ax
    (dots,) = [c for c in ax.collections if c.get_label() == "training examples"]
    offsets = dots.get_offsets()
    assert len(offsets) == 5 + max_dimensionality.MAX_POINTS_PER_T
    at = np.where(offsets[:, 1] == 0.4, 5.0, 20.0)  # infinity at 4x the largest finite T
    assert np.all(np.abs(np.log(offsets[:, 0] / at)) < 5 * fx.Style().jitter)
    (median,) = [ln for ln in ax.get_lines() if ln.get_label() == "median"]
    assert_close(median.get_ydata(), [0.4, 0.0], rtol=0)
    (top,) = [ln for ln in ax.get_lines() if ln.get_label() == "max"]
    assert_close(top.get_ydata(), [0.4, 1.0], rtol=0)
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "∞"


# --------------------------------------------------------------------- stores and sections


def put(store: Store, config: RunConfig, test_loss: float, W: np.ndarray,
        b: np.ndarray | None = None) -> None:
    """Store a hand-made finished run: its real training set, the given W, H = X W^T."""
    X = data.train_set(config)
    b = np.zeros(config.n_features) if b is None else b
    H = X.to_dense() @ W.T
    store.put(config.run_id, config.to_dict(),
              {"status": "ok", "error": None, "train_loss": 0.5, "test_loss": test_loss,
               "W_norm": float(np.linalg.norm(W)), "b_norm": 0.0},
              {"W": W, "b": b, "H": H, "X_indptr": X.indptr, "X_indices": X.indices,
               "X_data": X.data})


def small_W(m: int, n: int, seed: int) -> np.ndarray:
    return 0.01 * np.random.default_rng(seed).standard_normal((m, n))


@pytest.fixture
def heatmap_store(tmp_path: Path) -> Path:
    path = tmp_path / "runs.sqlite"
    base = RunConfig(n_features=20, sparsity=0.8, steps=10, n_test=10)
    with Store(path) as store:
        for m, row in HEATMAP.items():
            for T, loss in row.items():
                config = base.replace(n_hidden=m, n_train=T, batch_size=4)
                put(store, config, loss, small_W(m, 20, m))
        failed = base.replace(n_hidden=2, n_train=7)
        store.put(failed.run_id, failed.to_dict(), {"status": "failed", "error": "x"}, {})
    return path


def test_sections_of_a_heatmap_store(heatmap_store: Path, tmp_path: Path):
    out = tmp_path / "figs"
    with Store(heatmap_store, create=False) as store:
        found = records.sections(store, out)
    titles = [s.title for s in found]
    assert titles == ["Test loss over model size and data (heatmap)",
                      "Maximal data dimensionality D*"]
    heat, dstar = found
    assert {f.name for f in heat.figures} == {"heatmap.png", "heatmap_curves.png"}
    for f in heat.figures + dstar.figures:
        assert (out / f.name).read_bytes()[:4] == b"\x89PNG"
        assert (out / f.name.replace(".png", ".svg")).is_file()
    moves = heat.findings[0]
    assert moves.holds and "200 (m = 2), 500 (m = 4), ∞ (m = 8)" in moves.measured
    caption, table = heat.tables[0]
    assert list(table.columns) == ["m", "100", "200", "500", "∞"]
    assert heat.settings["n_hidden"] == "2, 4, 8" and heat.settings["n_features"] == 20
    assert "12 finished runs" in heat.text  # the failed run is left out
    (_, summary), = dstar.tables
    assert list(summary["T"]) == ["100", "200", "500", "∞"]
    assert (summary["examples"].tolist()[-1]) == 4  # batch_size examples at T = infinity
    assert plt.get_fignums() == []


def test_each_procedure_of_a_store_gets_its_own_sections_never_pooled(tmp_path: Path):
    """The heatmap store under both procedures, the mean's losses 0.5 lower at m = 2: each
    record gives one section per procedure, tagged, its figures in a folder of its own."""
    base = RunConfig(n_features=20, sparsity=0.8, steps=10, n_test=10, batch_size=4)
    with Store(tmp_path / "runs.sqlite") as store:
        for reduction, shift in (("sum", 0.0), ("mean", -0.5)):
            for m, row in HEATMAP.items():
                for T, loss in row.items():
                    config = base.replace(n_hidden=m, n_train=T, loss_reduction=reduction)
                    put(store, config, loss + (shift if m == 2 else 0.0), small_W(m, 20, m))
        found = records.sections(store, tmp_path / "out")
    names = ("summed loss (eps 1e-8)", "paper's procedure: mean over features")
    assert [s.title for s in found] == [
        f"{title} — {name}" for title in ("Test loss over model size and data (heatmap)",
                                          "Maximal data dimensionality D*") for name in names]
    summed, averaged = found[0], found[1]
    assert {f.procedure for f in summed.findings} == {names[0]}
    assert {f.procedure for f in averaged.findings} == {names[1]}
    # Each section's table holds its own procedure's losses: 1.5 and 1.0 at m = 2, T = 200.
    for section, expected in ((summed, 1.5), (averaged, 1.0)):
        (_, cells), _ = section.tables
        assert cells.set_index("m").loc[2, "200"] == expected
    assert {f.name for f in summed.figures} == {"heatmap.png", "heatmap_curves.png"}
    assert {f.name for f in averaged.figures} == {"loss-mean/heatmap.png",
                                                  "loss-mean/heatmap_curves.png"}
    for f in summed.figures + averaged.figures:
        assert (tmp_path / "out" / f.name).read_bytes()[:4] == b"\x89PNG"


def test_every_preset_names_a_record_whose_claims_are_those_its_section_checks(
        heatmap_store: Path, tmp_path: Path):
    assert {preset.experiment for preset in PRESETS.values()} <= set(RECORDS)
    with Store(heatmap_store, create=False) as store:
        (heat,) = RECORDS["heatmap"].sections(store, tmp_path)
        assert RECORDS["repeated"].sections(store, tmp_path) == []
    assert len(heat.findings) == len(RECORDS["heatmap"].claims)
    for finding, claim in zip(heat.findings, RECORDS["heatmap"].claims, strict=True):
        assert finding.claim.startswith(claim.text) and finding.paper.startswith(
            claim.paper.split(";")[0])


def test_sections_only_and_run_ids(heatmap_store: Path, tmp_path: Path):
    with Store(heatmap_store, create=False) as store:
        assert [s.title for s in records.sections(
            store, tmp_path, only=["max-dimensionality"])] == ["Maximal data dimensionality D*"]
        assert records.sections(store, tmp_path, run_ids=[]) == []
    with Store(tmp_path / "empty.sqlite") as store:
        assert records.sections(store, tmp_path) == []


def test_repeated_section_from_a_hand_made_store(tmp_path: Path):
    # m = 2, n = 12: at R >= 3 W rebuilds the repeated point exactly (its direction is W's
    # first row and the second row is orthogonal to it); otherwise W is tiny.
    base = RunConfig(n_features=12, sparsity=0.7, steps=10, n_test=10, n_repeated=1)
    with Store(tmp_path / "runs.sqlite") as store:
        for T in (12, 36):
            for R in (1, 3, 5):
                config = base.replace(n_train=T, repeats=R)
                x = data.train_set(config).to_dense()[0]
                other = np.roll(x, 1) - (np.roll(x, 1) @ x) * x
                W = np.stack([x, other / np.linalg.norm(other)]) if R >= 3 else small_W(2, 12, R)
                put(store, config, 1.0, W)
        (section,) = records.sections(store, tmp_path / "out")
    assert section.title == "Repeated data"
    assert [f.name for f in section.figures] == ["repeated_geometry.png", "repeated.png"]
    caption, summary = section.tables[0]
    assert list(summary["memorised (share)"]) == [0, 1, 1, 0, 1, 1]
    assert_close(summary["own loss"].to_numpy()[[1, 2, 4, 5]], np.zeros(4), rtol=0, atol=1e-12)
    # Learned features (D > 0.1) outside the repeated point's own active features.
    with Store(tmp_path / "runs.sqlite", create=False) as store:
        runs = analysis.ok_runs(store).sort_values(["n_train", "repeats"])
        expected = []
        for run_id in runs["run_id"]:
            arrays = store.arrays(run_id)
            learned = np.flatnonzero(metrics.feature_dimensionality(arrays["W"]) > 0.1)
            own = arrays["X_indices"][: arrays["X_indptr"][1]]
            expected.append(len(set(learned) - set(own)))
    assert list(summary["of them not the point's own"]) == expected
    memorise, boundary = section.findings
    assert [f.claim for f in section.findings] == [c.text for c in RECORDS["repeated"].claims]
    assert memorise.claim.startswith("R = 5 memorises") and "T = 36 (T/n = 3)" in \
        memorise.measured
    assert "T/n = 1: memorised from R = 3 (not at 1)" in boundary.measured


def test_markdown_lists_settings_findings_tables_and_figures(heatmap_store: Path,
                                                             tmp_path: Path):
    with Store(heatmap_store, create=False) as store:
        found = records.sections(store, tmp_path, only=["heatmap"])
    text = records.markdown("toyrelu reproduce: x", found, {"ok": 12, "failed": 1, "lost": 3})
    lines = text.splitlines()
    assert lines[0] == "# toyrelu reproduce: x"
    assert "Runs: 12 finished, 1 failed, 3 lost by the cluster." in lines
    assert "## Test loss over model size and data (heatmap)" in lines
    assert "| n_hidden | 2, 4, 8 |" in lines
    assert sum(line.endswith((" | yes |", " | no |")) for line in lines) == 2
    assert "![heatmap.png](heatmap.png)" in lines
    assert "| 2 | 1.1 | 1.5 | 1 | 0.99 |" in lines  # the m = 2 row of the heatmap table


# ---------------------------------------------------------------- known gaps of other modules


def test_analysis_findings_accept_an_infinite_T():
    table = pd.DataFrame({"n_hidden": 2, "n_train": [5.0, 300.0, math.inf], "seeds": 1,
                          "test_mean": [1.0, 2.0, 0.99], "test_median": [1.0, 1.0, 0.99],
                          "learned_features": [0.0, 0.0, 5.0], "m_over_T": [0.4, 0.0, 0.0]})
    dims = pd.DataFrame({"n_hidden": 2, "n_train": [5.0, 300.0, math.inf], "kind": "example",
                         "dimensionality": 0.4, "seed": 0, "run_id": "a"})
    analysis.findings(table, dims)


def test_analysis_geometry_accepts_an_infinite_T(heatmap_store: Path):
    with Store(heatmap_store, create=False) as store:
        analysis.geometry(store, analysis.ok_runs(store), (100,))


def test_reproduce_a_twin_draws_its_experiment_not_the_m2_figures(tmp_path: Path, capsys):
    from toyrelu import cli

    folder = tmp_path / "out"
    code = cli.main(["reproduce", "--preset", "heatmap-quick", "--out", str(folder),
                     "--workers", "1", "--n-features", "30", "--sparsity", "0.9", "--steps",
                     "60", "--n-train", "5,20", "--n-hidden", "2,3", "--seeds", "0",
                     "--n-test", "100"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # 2 T x 2 m x 1 seed under both procedures.
    assert ("toyrelu: 8 finished, 0 failed, 0 errors (retried by the next run), 0 already "
            "stored") in err
    # At this size every model learns (test loss below 1): no ridge, so no claim to check.
    assert out.splitlines() == [f"toyrelu: figures and summary.md in {folder}"]
    md = (folder / "summary.md").read_text().splitlines()
    assert "| 2 | – | 0.8" in "\n".join(md) and "phenomenon" not in "\n".join(md)
    assert md[0] == "# toyrelu reproduce: heatmap-quick" and "Runs: 8 finished, 0 failed." in md
    # One section per procedure, each with its own figures.
    title = "## Test loss over model size and data (heatmap)"
    assert [line for line in md if line.startswith(title)] == [
        f"{title} — summed loss (eps 1e-8)", f"{title} — paper's procedure: mean over features"]
    assert "![heatmap.png](heatmap.png)" in md
    assert "![loss-mean/heatmap.png](loss-mean/heatmap.png)" in md
    assert (folder / "heatmap.png").is_file() and (folder / "loss-mean" / "heatmap.png").is_file()
    assert not (folder / "summary.png").exists()
    assert plt.get_fignums() == []


def test_the_report_shows_the_experiments_of_a_store(heatmap_store: Path, tmp_path: Path):
    from toyrelu.report import build as report

    for record in RECORDS.values():
        assert (f"{record.name}.section", record.sections) in [
            (name, fn) for name, fn in report.providers()]
    with Store(heatmap_store, create=False) as store:
        expected = [s.title for s in records.sections(store, tmp_path / "a")]
        report.write(store, tmp_path / "b")
    page = (tmp_path / "b" / "report.md").read_text()
    assert expected and all(f"## {title}" in page for title in expected)
    assert "is not available" not in page


@pytest.mark.parametrize(("flags", "start"), [
    ([], 0), ([True, True], 0), ([False, True, True], 1), ([True, False, True], 2),
    ([True, False], 2), ([False], 1),
])
def test_holds_from_is_where_the_flags_hold_to_the_end(flags: list[bool], start: int) -> None:
    assert shared.holds_from(flags) == start

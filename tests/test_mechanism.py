"""The mechanism study (docs/experiment.md section 10): Adam's steps per feature
(``analysis.adam_steps``), the tail taken apart (``analysis.tail``), the per feature tables and
verdicts (``analysis.mechanism``), their figures (``figures.mechanism``) and the record and
preset that run it.

The analysis is tested on hand-made arrays whose answers are known; the gradient against
PyTorch's autograd; the figures through what they drew from hand-made tables; one tiny run goes
end to end through the store.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from helpers import assert_close, to_csr
from toyrelu import analysis
from toyrelu.analysis import adam_steps, mechanism, tail
from toyrelu.analysis.dynamics import Trajectory
from toyrelu.core import evaluation
from toyrelu.core.config import RunConfig
from toyrelu.experiments import RECORDS
from toyrelu.experiments import mechanism as xmech
from toyrelu.figures import mechanism as fmech
from toyrelu.runs.store import Store
from toyrelu.runs.sweep import run_sweep

# ------------------------------------------------------------------------ per run measures


def test_feature_counts_count_active_entries_per_feature():
    X = to_csr(np.array([[0.5, 0.0, 0.2, 0.0], [0.1, 0.0, 0.0, 0.0], [0.3, 0.0, 0.9, 0.0]]))
    assert mechanism.feature_counts(X).tolist() == [3, 0, 2, 0]
    assert mechanism.count_bin([0, 1, 2, 3, 5, 6, 10, 11, 500]).tolist() == [
        "0", "1", "2", "3-5", "3-5", "6-10", "6-10", "11+", "11+"]


def test_effective_eps_is_n_times_eps_for_the_mean():
    # docs/experiment.md section 9: the mean with eps e trains as the sum with eps n e.
    assert adam_steps.effective_eps(RunConfig(n_features=1000, eps=1e-8)) == 1e-8
    assert_close(adam_steps.effective_eps(RunConfig(n_features=1000, eps=1e-8,
                                                    loss_reduction="mean")), 1e-5, rtol=1e-12)


def test_gradient_matches_autograd_of_the_summed_loss():
    rng = np.random.default_rng(0)
    n, m, T = 12, 3, 7
    dense = rng.uniform(size=(T, n)) * (rng.uniform(size=(T, n)) < 0.3)
    W, b = rng.normal(size=(m, n)), rng.normal(size=n) * 0.1
    Wt = torch.tensor(W, requires_grad=True)
    x = torch.tensor(dense)
    out = torch.relu(x @ Wt.T @ Wt + torch.tensor(b))
    ((out - x) ** 2).sum(dim=1).mean().backward()
    expected = Wt.grad.numpy()
    for rows in (2, 1024):  # several blocks and one
        got = adam_steps.gradient_W(W, b, to_csr(dense), rows=rows)
        assert_close(got, expected, rtol=1e-12, what=f"blocks of {rows}")


def test_adam_gain_of_a_constant_gradient_is_g_over_g_plus_eps():
    # A constant g gives v_hat = g^2 exactly (a bias-corrected average of a constant), so the
    # gain is g / (g + eps): 1/2 where g = eps, 10/11 where g = 10 eps.
    eps = 1e-6
    g = np.array([[1e-6, 1e-5], [-1e-6, 1e-5]])  # (n_hidden 2, n_features 2)
    grads = np.stack([g] * 4)
    scale, gain = adam_steps.adam_gain(grads, np.array([0, 10, 20, 35]), 0.999, eps)
    assert_close(scale, np.tile([1e-6, 1e-5], (4, 1)), rtol=1e-9)
    assert_close(gain, np.tile([0.5, 10 / 11], (4, 1)), rtol=1e-9)


def test_adam_gain_forgets_an_old_gradient_at_beta2_per_step():
    # g = 1 until step 10, then 0: v_hat(20) = beta2^10 (1 - beta2^10) / (1 - beta2^20).
    grads = np.array([[[1.0]], [[1.0]], [[0.0]]])
    scale, _ = adam_steps.adam_gain(grads, np.array([0, 10, 20]), 0.5, 1e-8)
    expected = 0.5 ** 10 * (1 - 0.5 ** 10) / (1 - 0.5 ** 20)
    assert_close(scale[:, 0], [1.0, 1.0, math.sqrt(expected)], rtol=1e-12)


def test_the_estimated_adam_denominator_follows_the_engines_own():
    # Oracle: the CPU engine's own second moment v at every snapshot of a short run whose eps
    # damps the steps (gain about 0.8). The estimate takes the gradient at a snapshot for all
    # the steps since the last, so it misses the peaks between them: measured, sqrt(v) comes
    # out about 5% low and the mean gain within 0.01.
    from toyrelu.core import data, model
    from toyrelu.engines.cpu import engine

    config = RunConfig(n_features=50, sparsity=0.9, n_train=20, steps=1_000, n_test=100,
                       eps=1e-3, snapshot_every=20)
    X = data.train_set(config)
    run = engine._Run.start(config, *model.init_params(config), 1)
    steps = list(range(0, config.steps + 1, config.snapshot_every))
    Ws, bs, vs = [run.W.copy()], [run.b.copy()], [run.state.vW.copy()]
    for lo, hi in zip(steps[:-1], steps[1:], strict=True):
        run.advance(X.astype(config.dtype), lo, hi)
        Ws.append(run.W.copy())
        bs.append(run.b.copy())
        vs.append(run.state.vW.copy())
    measured = adam_steps.trace(_trajectory(config, steps, np.stack(Ws), np.stack(bs), X))
    v_hat = np.stack([v.astype(np.float64) / (1 - config.beta2 ** s)
                      for v, s in zip(vs[1:], steps[1:], strict=True)])
    true_gain = (np.sqrt(v_hat) / (np.sqrt(v_hat) + config.eps)).mean(axis=1)
    true_scale = np.sqrt(v_hat.mean(axis=1))
    seen = true_scale > 0
    assert 0.85 <= np.median(measured.grad[1:][seen] / true_scale[seen]) <= 1.05
    assert 0.5 < true_gain.mean() < 0.95  # eps does damp this run
    assert_close(measured.gain[1:].mean(), true_gain.mean(), rtol=0.0, atol=0.03)


def _trajectory(config: RunConfig, steps, W, b, X, run_id: str = "r") -> Trajectory:
    return Trajectory(run_id, config, np.asarray(steps, np.int64), np.asarray(W, np.float64),
                      np.asarray(b, np.float64), X)


def test_a_column_taking_full_steps_has_speed_1_and_a_still_one_0():
    # Constant lr (no warmup): 5 steps move a full-speed column by 5 lr in each of its 2
    # coordinates, sqrt(2) 5 lr in all, which is the interval's budget.
    config = RunConfig(n_features=2, n_hidden=2, sparsity=0.5, n_train=2, steps=10,
                       warmup_steps=0, schedule="constant", lr=0.01, snapshot_every=5)
    X = to_csr(np.array([[0.5, 0.0], [0.2, 0.0]]))
    W = np.zeros((3, 2, 2))
    W[1, :, 0], W[2, :, 0] = 0.05, 0.10  # feature 0 moves 5 lr per coordinate per interval
    measured = adam_steps.trace(_trajectory(config, [0, 5, 10], W, np.zeros((3, 2)), X))
    assert_close(measured.budget, [0.05 * math.sqrt(2)] * 2, rtol=1e-12)
    assert_close(adam_steps.ratio(measured.moved, measured.budget), [1.0, 0.0], rtol=1e-12,
                 atol=1e-15)
    assert measured.eps_eff == config.eps


def test_the_tail_splits_over_features_into_active_and_false_positive_parts():
    # One feature, W = [[2]], b = -1: an example holding x gives x' = relu(4x - 1).
    # x = 1: x' = 3, loss (3 - 1)^2 = 4 > 2, all of it where the feature is active.
    # Two features with W_1 = W_0: x = (1, 0) outputs 3 on feature 1, a false positive of 9.
    W = np.array([[2.0, 2.0]])
    b = np.array([-1.0, -1.0])
    X = to_csr(np.array([[1.0, 0.0], [0.1, 0.0]]))
    losses, heavy, heavy_active = tail.loss_by_feature(W, b, X)
    assert_close(losses, [4.0 + 9.0, 0.01], rtol=1e-12)
    assert_close(heavy, [4.0, 9.0], rtol=1e-12)
    assert_close(heavy_active, [4.0, 0.0], rtol=1e-12, atol=0.0)
    assert_close(losses, evaluation.example_losses(W, b, X), rtol=1e-12)


def test_tail_examples_say_what_the_tail_holds():
    W = np.array([[2.0, 2.0, 0.1]])  # features 0 and 1 are longer than LONG
    b = np.array([-1.0, -1.0, 0.0])
    X = to_csr(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.5], [0.0, 0.1, 0.0]]))
    assert tail.holding(X, np.array([False, True, False])).tolist() == [False, False, False,
                                                                        True]
    held = tail.tail_examples(W, b, X)
    losses = evaluation.example_losses(W, b, X)
    assert held["tail"] == 0.25
    assert_close(held["tail_loss_share"], losses[0] / losses.sum(), rtol=1e-12)
    assert held["tail_holding_long"] == 1.0 and held["all_holding_long"] == 0.5


def test_onset_is_the_first_step_at_half_the_final_tail():
    line = pd.DataFrame({"step": [0, 100, 200, 300], "test_share_above_2": [0, 0.01, 0.03, 0.04]})
    assert tail.onset(line) == 200
    assert tail.onset(line, share=0.2) == 100
    assert math.isnan(tail.onset(line.assign(test_share_above_2=0.0)))
    assert math.isnan(tail.onset(line.iloc[-1:]))  # the final state alone says nothing of when


# ----------------------------------------------------------------- tables and verdicts


def _features(reduction: str, T: int, seed: int, rows: list[tuple]) -> pd.DataFrame:
    """Feature rows (count, W_norm, b, speed, gain, late_gain, tail_loss, tail_loss_active)."""
    table = pd.DataFrame(rows, columns=["count", "W_norm", "b", "speed", "gain", "late_gain",
                                        "tail_loss", "tail_loss_active"])
    table["bin"] = mechanism.count_bin(table["count"])
    table["late_speed"] = table["speed"]
    table["late_grad"] = 1e-6
    table["eps_eff"] = 1e-8 if reduction == "sum" else 1e-5
    return table.assign(run_id=f"{reduction}{T}{seed}", loss_reduction=reduction, eps=1e-8,
                        n_train=T, seed=seed)


def _measured(mean_speed: float = 0.02, mean_tail_loss: float = 1.0) -> mechanism.Measured:
    """Two procedures at T = 300 (and the sum at T = 100 with a lower test loss): under the
    sum the rare features take full steps (gain 1) and carry 3/4 of the tail's loss; under
    the mean their gain is 0.3."""
    features = pd.concat([
        _features("sum", 300, 0, [(1, 2.0, -3.0, 0.1, 1.0, 0.99, 3.0, 0.5),
                                  (2, 1.5, -2.0, 0.1, 1.0, 0.99, 3.0, 0.0),
                                  (8, 0.5, 0.1, 0.05, 1.0, 0.99, 2.0, 0.5)]),
        _features("mean", 300, 0, [(1, 1.2, -2.0, mean_speed, 0.3, 0.1, mean_tail_loss, 0.0),
                                   (2, 1.1, -2.0, mean_speed, 0.3, 0.1, 0.0, 0.0),
                                   (8, 0.5, 0.1, 0.05, 0.6, 0.2, 1.0, 0.0)]),
        _features("sum", 100, 0, [(1, 0.3, -0.1, 0.1, 1.0, 0.99, 0.0, 0.0)]),
    ], ignore_index=True)
    lines = pd.DataFrame({
        "loss_reduction": ["sum"] * 3 + ["mean"] * 3 + ["sum"] * 3,
        "n_train": [300] * 6 + [100] * 3, "seed": 0, "eps": 1e-8,
        "step": [0, 5_000, 10_000] * 3,
        "test_share_above_2": [0, 0.05, 0.06, 0, 0.01, 0.02, 0, 0, 0],
        "test_loss": [1, 3, 4, 1, 1.5, 1.6, 1, 1, 1.01],
    })
    examples = pd.DataFrame({
        "loss_reduction": ["sum", "mean", "sum"], "n_train": [300, 300, 100], "seed": 0,
        "eps": 1e-8,
        "tail": [0.06, 0.02, 0.0], "tail_loss_share": [0.7, 0.3, 0.0],
        "tail_holding_long": [1.0, 1.0, np.nan], "all_holding_long": [0.8, 0.7, 0.0],
    })
    return mechanism.Measured(features, lines, examples)


def test_by_count_gives_medians_and_tail_shares_per_bin():
    table = mechanism.by_count(_measured().features)
    sum300 = table[(table["loss_reduction"] == "sum") & (table["n_train"] == 300)]
    assert sum300["bin"].tolist() == ["1", "2", "6-10"]
    assert_close(sum300["tail_share"], [3 / 8, 3 / 8, 2 / 8], rtol=1e-12)
    assert sum300["long"].tolist() == [1.0, 1.0, 0.0]
    assert table[table["loss_reduction"] == "mean"]["gain"].tolist() == [0.3, 0.3, 0.6]


def test_tail_shares_take_the_tail_apart_per_procedure_and_T():
    shares = mechanism.tail_shares(_measured()).set_index(["loss_reduction", "n_train"])
    row = shares.loc[("sum", 300)]
    assert_close(row["rare_share"], 6 / 8, rtol=1e-12)
    assert_close(row["long_share"], 6 / 8, rtol=1e-12)
    assert_close(row["false_positive_share"], 1 - 1 / 8, rtol=1e-12)
    assert row["onset"] == 5_000 and row["test_loss"] == 4
    assert xmech.bump_T(shares.reset_index()) == 300
    assert math.isnan(shares.loc[("sum", 100), "onset"])


def test_findings_are_computed_from_the_tables():
    found = xmech.findings(_measured())
    assert [f.claim for f in found] == list(xmech.CLAIMS)
    holds = [f.holds for f in found]
    # Full steps under the sum (gain 1), damped under the mean (0.3); speed 0.02 against 0.1
    # is 0.2 of it; rare features carry 6/8 (sum) and 1/2 (mean) of the tail.
    assert holds == [True, True, True, True, True, True, True]
    assert "1 under the sum, 0.3 under the mean" in found[0].measured
    assert "(0.20 of it)" in found[1].measured
    assert found[2].measured.endswith("0-2 times: 75% (sum), 50% (mean)")
    assert found[5].measured == ("T = 300: of 10,000 steps, half the final tail at step 5,000 "
                                 "(sum), 5,000 (mean)")
    slower = xmech.findings(_measured(mean_speed=0.08, mean_tail_loss=0.5))
    assert [f.holds for f in slower][1:3] == [False, False]
    assert "(0.80 of it)" in slower[1].measured


def test_what_carries_the_tail_is_asked_where_the_tail_is_heavy():
    measured = _measured()
    light = measured.examples["loss_reduction"] == "mean"
    measured.examples.loc[light, "tail_loss_share"] = 0.05  # below HEAVY: not a heavy tail
    measured.features.loc[measured.features["loss_reduction"] == "mean", "tail_loss"] = 0.0
    found = xmech.findings(measured)
    assert found[2].measured == ("T = 300: share of the tail's loss on features seen 0-2 "
                                 "times: 75% (sum); no heavy tail under the mean (5.0% of its "
                                 "test loss)")
    assert found[2].holds
    measured.examples["tail_loss_share"] = 0.05
    assert xmech.findings(measured)[2].measured == (
        "not measured: no heavy tail at T = 300 (its examples make 5.0% of the summed loss's "
        "test loss, 5.0% of the mean's)")


def test_runs_without_snapshots_leave_the_steps_and_the_onset_unmeasured():
    full = _measured()
    features = full.features.assign(speed=np.nan, gain=np.nan, late_gain=np.nan)
    finals = full.lines[full.lines["step"] == 10_000]  # the final state alone: no onset
    measured = mechanism.Measured(features, finals.assign(test_share_above_2=0.06),
                                  full.examples)
    found = xmech.findings(measured)
    assert [f.measured for f in found[:2]] == ["not measured: no snapshots at T = 300"] * 2
    assert found[5].measured == "not measured: no snapshots at T = 300"
    assert found[3].holds and found[6].holds


def test_the_bump_is_chosen_among_the_T_both_procedures_hold():
    # An interrupted sweep: the mean's run at T = 300, the summed loss's bump, is missing.
    # The verdicts move to T = 100, the only T both hold, instead of failing on the mean.
    measured = _measured()
    features, lines, examples = (
        t[~((t["loss_reduction"] == "mean") & (t["n_train"] == 300))]
        for t in (measured.features, measured.lines, measured.examples))

    def mean100(t: pd.DataFrame) -> pd.DataFrame:
        return t[(t["loss_reduction"] == "sum") & (t["n_train"] == 100)].assign(
            loss_reduction="mean")

    interrupted = mechanism.Measured(*(pd.concat([t, mean100(t)], ignore_index=True)
                                       for t in (features, lines, examples)))
    assert xmech.shared_T(mechanism.tail_shares(interrupted)) == [100]
    found = xmech.findings(interrupted)
    assert len(found) == len(xmech.CLAIMS)
    assert found[6].measured == ("not measured: no test example above 2 under either "
                                 "procedure at T = 100")


def test_the_bump_is_regimes_bump_not_the_highest_loss():
    # The memorization regime's loss at T = 50 is the highest; the bump is the peak at 300
    # that the curve falls from into generalization (docs/experiment.md section 5).
    runs = pd.DataFrame({"loss_reduction": ["sum"] * 4 + ["mean"] * 4,
                         "n_train": [50, 100, 300, 1_000] * 2,
                         "test_loss": [5.0, 1.2, 4.0, 0.9, 2.0, 1.1, 1.5, 0.9]})
    assert xmech.bump_T(runs) == 300
    assert xmech.bump_T(runs[runs["loss_reduction"] == "sum"]) is None


def test_findings_name_the_missing_rare_features():
    # At a large T every feature is seen often: no rare feature to measure, whatever the
    # snapshots; and without a tail under either procedure the tail cannot shrink.
    measured = _measured()
    features = measured.features.assign(count=50)
    examples = measured.examples.assign(tail=0.0, tail_loss_share=0.0)
    found = xmech.findings(mechanism.Measured(features, measured.lines, examples))
    assert [f.measured for f in found[:2]] == [
        "not measured: no feature is seen 1-2 times in training at T = 300"] * 2
    assert found[6].measured == ("not measured: no test example above 2 under either "
                                 "procedure at T = 300")
    assert all(f.measured.startswith("not measured: ") and "  " not in f.measured
               for f in found)


def test_findings_need_both_procedures():
    measured = _measured()
    only_sum = mechanism.Measured(*(t[t["loss_reduction"] == "sum"] for t in (
        measured.features, measured.lines, measured.examples)))
    found = xmech.findings(only_sum)
    assert len(found) == len(xmech.CLAIMS)
    assert all(f.measured.startswith("not measured") for f in found)


@pytest.mark.parametrize(("value", "text"), [(0.073, "7.3%"), (0.5, "50%"), (1.0, "100%"),
                                             (0.0996, "10%"), (float("nan"), "n/a")])
def test_shares_read_as_percentages(value: float, text: str):
    assert xmech._pct(value) == text


# ---------------------------------------------------------------------------- figures


def _table() -> pd.DataFrame:
    """by_count rows of one T: the sum's rows listed after the mean's, to check the order."""
    rows = []
    for reduction, lengths, gains in (("mean", [0.0, 0.3, 0.2], [0.1, 0.4, 0.5]),
                                      ("sum", [0.0, 0.4, 0.25], [0.9, 1.0, 1.0])):
        for label, length, gain in zip(["0", "1", "2"], lengths, gains, strict=True):
            rows.append({"loss_reduction": reduction, "eps": 1e-8, "n_train": 300,
                         "bin": label, "W_norm": length, "gain": gain, "late_gain": gain / 2,
                         "tail_share": length / 0.65 if reduction == "sum" else length / 0.5})
    return pd.DataFrame(rows)


def test_length_and_gain_panels_draw_one_line_per_procedure():
    fig = Figure()
    ax = fmech.plot_length_by_count(fig.add_subplot(), _table())
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["summed loss (eps 1e-8)",
                                                    "paper's procedure: mean over features"]
    assert lines[0].get_ydata().tolist() == [0.0, 0.4, 0.25]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    ax = fmech.plot_gain_by_count(fig.add_subplot(), _table())
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [
        [0.9, 1.0, 1.0], [0.1, 0.4, 0.5], [0.45, 0.5, 0.5], [0.05, 0.2, 0.25]]
    assert ax.get_lines()[3].get_linestyle() == "--"


def test_tail_panel_draws_one_bar_per_procedure_and_count():
    ax = fmech.plot_tail_by_count(Figure().add_subplot(), _table())
    heights = [p.get_height() for p in ax.patches]
    assert_close(heights, [0.0, 0.4 / 0.65, 0.25 / 0.65, 0.0, 0.6, 0.4], rtol=1e-12)
    centres = [p.get_x() + p.get_width() / 2 for p in ax.patches]
    assert_close(centres, [-0.2, 0.8, 1.8, 0.2, 1.2, 2.2], rtol=1e-12)


def test_panels_over_training_draw_a_line_per_seed_labelled_once():
    lines = pd.DataFrame({"loss_reduction": ["sum"] * 4 + ["mean"] * 2, "eps": 1e-8,
                          "seed": [0, 0, 1, 1, 0, 0], "step": [10, 0, 0, 10, 0, 10],
                          "test_share_above_2": [0.1, 0, 0, 0.2, 0, 0.05],
                          "rare_W_norm": [0.5, 0.1, 0.1, 0.7, 0.1, 0.05]})
    ax = fmech.plot_tail_over_training(Figure().add_subplot(), lines)
    drawn = ax.get_lines()
    assert [line.get_ydata().tolist() for line in drawn] == [[0, 0.1], [0, 0.2], [0, 0.05]]
    assert drawn[0].get_color() == drawn[1].get_color() != drawn[2].get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "summed loss (eps 1e-8)", "paper's procedure: mean over features"]
    ax = fmech.plot_rare_over_training(Figure().add_subplot(), lines)
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [
        [0.1, 0.5], [0.1, 0.7], [0.1, 0.05]]
    assert ax.get_lines()[0].get_xdata().tolist() == [0, 10]


# ------------------------------------------------------------------ record and preset


def test_the_preset_trains_both_procedures_with_snapshots_at_the_reduced_scale():
    from toyrelu.runs.presets import PRESETS, cpu_seconds

    for name in ("mechanism-quick", "mechanism-laptop"):
        preset = PRESETS[name]
        configs = preset.configs()
        assert preset.experiment == "mechanism" and name.split("-")[0] in RECORDS
        assert {c.loss_reduction for c in configs} == {"sum", "mean"}
        assert all(c.snapshot_every > 0 for c in configs)
    quick = PRESETS["mechanism-quick"].configs()
    assert {c.n_features for c in quick} == {1_000}
    assert cpu_seconds(quick) <= 5 * 60  # a few minutes on 2 cores


def test_select_keeps_the_snapshot_runs_of_both_procedures():
    runs = pd.DataFrame({
        "run_id": list("abcde"), "n_train": [100, 100, 300, 300, 300],
        "seed": 0, "restart": 0, "loss_reduction": ["sum", "mean", "sum", "mean", "sum"],
        "eps": 1e-8, "snapshot_every": [100, 100, 100, 100, 0], "n_features": 1000,
        "test_loss": [2.0, 1.5, 3.0, 1.8, 3.0],
    })
    select = RECORDS["mechanism"].select
    assert select(runs)["run_id"].tolist() == list("abcd")
    assert select(runs.drop(columns="snapshot_every")).empty
    assert select(runs[runs["snapshot_every"] == 0]).empty
    # What the study needs: both procedures at two T or more, the default eps, a bump.
    assert select(runs[runs["n_train"] == 300]).empty  # an animation's one T
    assert select(runs[runs["loss_reduction"] == "sum"]).empty
    assert select(runs.assign(eps=1e-6)).empty
    assert select(runs.assign(test_loss=0.9)).empty  # below 1 at every T: no bump


def test_a_tiny_store_of_both_procedures_gives_the_section(tmp_path: Path):
    # One tiny run per procedure, trained with snapshots through the store like a sweep.
    # (select asks for a bump, which so short a sweep need not have: build is called alone.)
    base = RunConfig(n_features=40, sparsity=0.9, n_train=20, steps=200, n_test=300,
                     snapshot_every=50)
    configs = [base.replace(loss_reduction=r) for r in ("sum", "mean")]
    final_only = base.replace(snapshot_every=0)
    with Store(tmp_path / "s.sqlite") as store:
        run_sweep([*configs, final_only], store)
        runs = analysis.ok_runs(store)
        runs = runs[runs["snapshot_every"] > 0]
        record = RECORDS["mechanism"]
        section = record.build(record, store, runs, tmp_path / "out")
        # A run without snapshots is measured on its final state alone: no speed, no gain,
        # no Adam denominator (its v is not known).
        alone = mechanism.load(store, final_only.run_id)
        assert alone.steps.tolist() == [200]
        assert_close(alone.W[0], store.arrays(final_only.run_id)["W"], rtol=0.0)
        table = mechanism.feature_table(alone)
        assert table[["speed", "gain", "late_gain", "late_grad"]].isna().all().all()
        assert (table["count"] == mechanism.feature_counts(alone.X)).all()
        line = mechanism.timeline(alone)
        assert line[["rare_gain", "common_gain"]].isna().all().all()
    assert (tmp_path / "out" / "mechanism.png").is_file()
    assert [f.claim for f in section.findings] == list(xmech.CLAIMS)
    assert section.tables[0][1]["procedure"].iloc[0] == "sum"
    over_training = section.tables[2][1]
    assert over_training["procedure"].tolist() == ["sum"] * 5 + ["mean"] * 5
    assert over_training["step"].tolist()[:5] == [0, 50, 100, 150, 200]
    assert plt.get_fignums() == []

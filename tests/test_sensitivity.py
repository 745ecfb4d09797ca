"""The sensitivity study: knob definitions and the grid, the tables and verdict computed from
hand-made runs, every knob value through both engines, the figures through what they drew, the
report section and the ``toyrelu sensitivity`` command."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from helpers import Losing, assert_close, run_cli
from toyrelu import cli
from toyrelu.analysis import sensitivity as S
from toyrelu.core import model
from toyrelu.core import paper as the_paper
from toyrelu.core.config import ConfigError, RunConfig
from toyrelu.core.trainer import Diverged
from toyrelu.figures import sensitivity as fs
from toyrelu.report import sensitivity as R
from toyrelu.runs import executors, training
from toyrelu.runs import knobs as K
from toyrelu.runs.executors import InProcess
from toyrelu.runs.grid import cost
from toyrelu.runs.store import Store
from toyrelu.runs.sweep import run_sweep

ISSUE_KNOBS = {"steps", "decay_bias", "bias_init", "loss", "betas", "eps", "lr", "schedule",
               "dtype", "restarts", "n_test"}


# --------------------------------------------------------------------------- knobs and grid


@pytest.mark.parametrize("base", list(K.BASES))
def test_every_knob_holds_its_base_value_once_and_valid_configs(base: str) -> None:
    config = K.BASES[base].config
    knobs = K.knobs_for(config)
    assert ISSUE_KNOBS <= set(knobs)
    for knob in knobs.values():
        labels = [v.label for v in knob.values]
        assert len(set(labels)) == len(labels) >= 2, knob.name
        assert sum(v.is_base(config) for v in knob.values) == 1, knob.name
        for value in knob.values:
            configs = value.configs(config, 100, 0)
            assert [c.restart for c in configs] == list(range(value.restarts))
            assert all(c.engine == config.engine for c in configs)


def test_knob_values_are_config_fields() -> None:
    config = K.BASES["quick"].config
    knobs = K.knobs_for(config)
    mean = {v.label: v for v in knobs["loss"].values}
    # "mean, eps/n": Adam is invariant to a loss scale c when eps scales by c too, so this value
    # must train the summed loss's model; eps 1e-8 / n is that scale at n = 1,000.
    assert mean["mean, eps/n"].changes == {"loss_reduction": "mean", "eps": 1e-8 / 1_000}
    assert [v.changes for v in knobs["steps"].values] == [{"steps": s} for s in
                                                          (5_000, 10_000, 20_000)]
    assert [v.restarts for v in knobs["restarts"].values] == [1, 2, 4]
    assert [v.changes["schedule"] for v in knobs["schedule"].values] == [
        "cosine", "quarter_cosine", "constant"]
    assert {k.name for k in knobs.values() if k.stated} == {"steps", "weight_decay", "lr",
                                                           "schedule"}


def test_equal_configs_across_knobs_are_trained_once() -> None:
    study = K.study("smoke", ["decay_bias", "restarts", "dtype"], [0, 1])
    # Per (T, seed): the base run, decay_bias off, float64, restarts 1, 2 and 3 (restart 0 is
    # the base run itself).
    assert len(study.configs()) == 6 * len(study.base.n_train) * 2
    assert len({c.run_id for c in study.configs()}) == len(study.configs())


def test_reduced_study_fits_in_30_minutes_on_2_cores() -> None:
    # The study's target: 7+ knobs, 3 values each where a knob has 3, 2 seeds, within 30 minutes
    # on 2 cores. grid.cost counts (example, feature) pairs; benchmarks/bench_engine.py measures
    # the fused engine's pairs per second per core at n = 1,000 (docs/engines.md), taken here
    # as at least 2e9.
    study = K.study("quick")
    assert len(study.knobs) >= 7 and len(study.seeds) == 2
    assert sum(len(k.values) >= 3 for k in study.knobs) >= 7
    assert sum(cost(c) for c in study.configs()) <= 30 * 60 * 2 * 2e9 / 2  # 2x margin


@pytest.mark.parametrize("args, field", [
    (("nope",), "base"), (("smoke", ["steps", "wat"]), "knobs"), (("smoke", []), "knobs"),
    (("smoke", None, [-1]), "seed"), (("smoke", None, []), "seeds"),
    (("smoke", None, [0, 1, 0]), "seeds"), (("smoke", ["eps", "lr", "eps"]), "knobs"),
])
def test_bad_study_input_names_the_field(args: tuple, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: ") as info:
        K.study(*args)
    assert "\n" not in str(info.value)


def test_a_value_given_twice_is_refused_wherever_a_study_is_built() -> None:
    # A seed twice made every cell count its run twice, so no cell looked finished.
    base = K.BASES["smoke"]
    with pytest.raises(ConfigError, match="^seeds: 0 is given twice"):
        K.Study(base, (K.knobs_for(base.config)["eps"],), (0, 0))
    with pytest.raises(ConfigError, match="^n_train: 10 is given twice"):
        K.Base("b", "twice", base.config, (10, 10), (0,))


# --------------------------------------------------------------------------- tables


def fake_runs(study: K.Study, loss, train=lambda config: 0.1) -> pd.DataFrame:
    """A Store.runs()-like frame holding every run of ``study`` with test_loss ``loss(config)``;
    the per-example metrics are simple functions of it so that each column is traceable."""
    rows = []
    for config in study.configs():
        value = loss(config)
        rows.append({"run_id": config.run_id, "status": "ok", "error": None, **config.to_dict(),
                     "train_loss": train(config), "test_loss": value,
                     "test_loss_median": value / 2, "test_loss_p90": 2 * value,
                     "test_share_above_2": value / 100})
    return pd.DataFrame(rows)


def bumpy(config: RunConfig) -> float:
    """Base: 1.01 at T = 10, a bump at T = 30 (2 and 4 for seeds 0 and 1), 0.98 at T = 100.
    Bias decay off: the bump is 1.01 / 1.03. float64 changes nothing."""
    if config.n_train == 100:
        return 0.98
    if config.n_train == 10:
        return 1.01
    if not config.decay_bias:
        return 1.01 + 0.02 * config.seed
    return 2.0 + 2.0 * config.seed


def tables(study: K.Study, runs: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    table = S.runs_table(study, runs)
    by_T = S.per_T(table)
    bump = S.bumps(by_T)
    return table, by_T, bump, S.ranking(bump)


def test_bump_onset_and_ranking_from_hand_made_runs() -> None:
    study = K.study("smoke", ["dtype", "decay_bias"], [0, 1])
    table, by_T, bump, ranks = tables(study, fake_runs(study, bumpy))
    assert len(table) == 2 * 2 * 3 * 2  # knobs x values x T x seeds
    at = by_T[(by_T["knob"] == "decay_bias") & by_T["is_base"] & (by_T["n_train"] == 30)]
    assert at[["seeds", "test_mean", "test_min", "test_max"]].iloc[0].tolist() == [2, 3, 2, 4]
    assert at[["example_median", "example_p90", "share_above_2"]].iloc[0].tolist() == [1.5, 6,
                                                                                        0.03]
    rows = bump.set_index(["knob", "value"])
    base = rows.loc[("decay_bias", "W and b")]
    assert (base.peak_T, base.peak_mean, base.peak_min, base.peak_max) == (30, 3.0, 2.0, 4.0)
    assert (base.onset_T, base.inner, base.peak_median, base.peak_share) == (100, True, 1.5, 0.03)
    off = rows.loc[("decay_bias", "W only")]
    assert (off.peak_T, off.peak_min, off.peak_max) == (30, 1.01, 1.03)
    assert off.peak_mean == pytest.approx(1.02, rel=1e-15)
    assert list(ranks["knob"]) == ["decay_bias", "dtype"]
    first = ranks.iloc[0]
    assert first.factor == pytest.approx(3.0 / 1.02, rel=1e-14)
    assert (first.lowest_value, first.beyond_spread) == ("W only", True)
    assert (ranks.iloc[1].factor, ranks.iloc[1].beyond_spread) == (1.0, False)


def test_onset_is_where_the_loss_stays_below_one() -> None:
    study = K.study("smoke", ["dtype"], [0])
    # Below 1 at T = 10, above at 30, below at 100: generalization starts at 100, not 10.
    dip = {10: 0.99, 30: 1.5, 100: 0.98}
    _, _, bump, _ = tables(study, fake_runs(study, lambda c: dip[c.n_train]))
    assert bump["onset_T"].tolist() == [100, 100]
    never = {10: 0.99, 30: 1.5, 100: 1.2}
    _, _, bump, _ = tables(study, fake_runs(study, lambda c: never[c.n_train]))
    assert bump["onset_T"].isna().all() and bump["inner"].all()
    rising = {10: 0.99, 30: 1.5, 100: 2.0}
    _, _, bump, _ = tables(study, fake_runs(study, lambda c: rising[c.n_train]))
    assert bump["onset_T"].isna().all() and not bump["inner"].any()


def test_onset_needs_most_of_the_pentagon_when_features_are_known() -> None:
    study = K.study("smoke", ["dtype"], [0])
    table = S.runs_table(study, fake_runs(study, lambda c: 0.99))
    # Below 1 everywhere, but 4 learned features only from T = 100 (the threshold is 4).
    table["features"] = table["n_train"].map({10: 0.0, 30: 3.5, 100: 4.0})
    bump = S.bumps(S.per_T(table))
    assert bump["onset_T"].tolist() == [100, 100]
    assert bump["features_last"].tolist() == [4.0, 4.0]


def test_best_of_k_picks_the_lowest_training_loss_among_restarts_0_to_k_minus_1() -> None:
    study = K.study("smoke", ["restarts"], [0])
    # Restart r has training loss [0.5, 0.3, 0.4, 0.1][r] and test loss 10 + r.
    runs = fake_runs(study, lambda c: 10.0 + c.restart,
                     train=lambda c: [0.5, 0.3, 0.4, 0.1][c.restart])
    table, _, _, _ = tables(study, runs)
    kept = table.groupby("value")["test_loss"].unique()
    assert kept.map(list).to_dict() == {"1": [10.0], "best of 2": [11.0], "best of 4": [13.0]}
    # Without restart 3 stored, "best of 4" is not finished: its cells are missing.
    partial = runs[runs["restart"] != 3]
    table, _, _, _ = tables(study, partial)
    assert set(table["value"]) == {"1", "best of 2"}
    # A failed restart counts as finished but is never kept.
    failed = runs.copy()
    failed.loc[failed["restart"] == 3, "status"] = "failed"
    table, _, _, _ = tables(study, failed)
    assert table[table["value"] == "best of 4"]["test_loss"].unique().tolist() == [11.0]


def test_verdict_names_the_value_that_reaches_the_paper() -> None:
    study = K.study("smoke", ["dtype", "decay_bias"], [0, 1])
    _, _, bump, _ = tables(study, fake_runs(study, bumpy))
    sentence = S.verdict(study.base, bump)
    assert "decay_bias = W only brings it to 1.02 (T = 30)" in sentence
    assert "generalization from T = 100, both as in the paper" in sentence
    assert sentence.startswith("At the smoke base the bump peaks at 3 (T = 30)")


def test_verdict_when_nothing_reaches_the_paper_says_what_is_ruled_out() -> None:
    study = K.study("smoke", ["dtype", "decay_bias"], [0, 1])
    high = fake_runs(study, lambda c: bumpy(c) + (0.5 if c.n_train == 30 else 0))
    _, _, bump, _ = tables(study, high)
    sentence = S.verdict(study.base, bump)
    assert sentence.endswith(
        "No setting tried gives the paper's height (1.005-1.045, peaking inside the T grid) "
        "with generalization at the paper's place: the closest is decay_bias = W only at 1.52 "
        "(T = 30), generalizing from T = 100; with no effect beyond the seed spread: dtype.")


def test_verdict_tells_a_removed_bump_from_the_papers_height() -> None:
    study = K.study("smoke", ["dtype", "decay_bias"], [0, 1])
    # Without bias decay the loss falls monotonically: no bump at all, not a low one.
    flat = {10: 1.003, 30: 0.999, 100: 0.98}
    runs = fake_runs(study, lambda c: bumpy(c) if c.decay_bias else flat[c.n_train])
    _, _, bump, _ = tables(study, runs)
    sentence = S.verdict(study.base, bump)
    assert "No setting tried gives the paper's height" in sentence
    assert ("decay_bias = W only removes the bump (mean 1.003 at T = 10) and "
            "generalizes from T = 30") in sentence
    assert "the closest is dtype = float64 at 3 (T = 30), generalizing from T = 100" in sentence


def test_combination_merges_the_unstated_knobs_that_lower_the_bump() -> None:
    study = K.study("smoke", ["decay_bias", "bias_init", "eps", "loss", "lr"], [0, 1])

    def loss(c: RunConfig) -> float:
        if c.n_train != 30:
            return 0.98
        drop = (not c.decay_bias) * 1.0 + (c.loss_reduction == "mean") * 0.5
        drop += (c.eps == 1e-4) * 0.3 + (c.lr != 1e-3) * 1.5
        return 3.0 + 0.1 * c.seed - drop

    _, _, bump, ranks = tables(study, fake_runs(study, loss))
    combo = S.combination(study, bump, ranks)
    assert combo is not None
    # lr is stated by the paper and stays out; loss and eps both set eps: loss ranks higher.
    assert combo.label == "decay_bias W only + loss mean, eps 1e-08"
    assert combo.changes == {"decay_bias": False, "loss_reduction": "mean", "eps": 1e-8}
    one = K.study("smoke", ["decay_bias", "dtype"], [0, 1])
    _, _, bump, ranks = tables(one, fake_runs(one, loss))
    assert S.combination(one, bump, ranks) is None


# --------------------------------------------------------------------------- engines

# Tiny runs that move: lr 1e-2 for 60 steps changes W by about 0.3.
TINY = RunConfig(n_features=100, sparsity=0.9, n_train=60, steps=60, lr=1e-2, n_test=200)
# test_engine.py's trajectory bounds (measured <= 8.5e-7 in W, 5.2e-6 in b over 250 steps;
# here <= 3.1e-7 and 3.6e-7 over 60-120 steps). Losses: the float64 evaluation of parameters
# that differ by those amounts, measured <= 5.7e-8 relative; 1e-6 keeps 17x margin.
RTOL = {"float32": {"W": 2e-6, "b": 2e-5, "loss": 1e-6},
        "float64": {"W": 1e-9, "b": 1e-9, "loss": 1e-12}}
TINY_VALUES = [(k.name, v) for k in K.knobs_for(TINY).values() for v in k.values]


@pytest.mark.parametrize("knob, value", TINY_VALUES,
                         ids=[f"{k}={v.label}" for k, v in TINY_VALUES])
def test_every_knob_value_trains_alike_in_both_engines(knob: str, value: K.KnobValue) -> None:
    config = value.configs(TINY, TINY.n_train, 0)[-1]  # the last restart of a best-of-k
    fused = training.run(config.replace(engine="fused"))
    ref = training.run(config.replace(engine="reference"))
    assert fused.status == ref.status == "ok"
    W0, _ = model.init_params(config)
    assert np.max(np.abs(fused.W - W0)) > 0.05  # it trained
    tol = RTOL[config.dtype]
    assert_close(fused.W, ref.W, rtol=tol["W"], what=f"{knob}={value.label} W")
    assert_close(fused.b, ref.b, rtol=tol["b"], what=f"{knob}={value.label} b")
    for name in ("train_loss", "test_loss", "test_loss_median", "test_loss_p90"):
        assert_close(fused.values[name], ref.values[name], rtol=tol["loss"], what=name)
    # A share of n_test examples: one example may sit on the threshold.
    assert_close(fused.values["test_share_above_2"], ref.values["test_share_above_2"], rtol=0,
                 atol=1 / config.n_test, what="share above 2")


# --------------------------------------------------------------------------- figures


def hand_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per_T, bumps, ranking) of a two-value knob over three T, written out by hand."""
    per_T = pd.DataFrame({
        "knob": "decay_bias", "position": [0, 0, 0, 1, 1, 1],
        "value": ["W and b"] * 3 + ["W only"] * 3, "is_base": [True] * 3 + [False] * 3,
        "stated": False, "n_train": [100, 30, 10] * 2, "seeds": 2,
        "test_mean": [0.98, 3.0, 1.01, 0.98, 1.02, 1.01],
        "test_min": [0.97, 2.0, 1.0, 0.97, 1.01, 1.0],
        "test_max": [0.99, 4.0, 1.02, 0.99, 1.03, 1.02],
        "example_median": [0.5, 0.9, 1.0, 0.5, 0.8, 1.0],
        "example_p90": [1.5, 9.0, 1.1, 1.5, 1.2, 1.1],
        "share_above_2": [0.0, 0.1, 0.0, 0.0, 0.01, 0.0],
    })
    bumps = S.bumps(per_T)
    ranking = pd.DataFrame({"knob": ["decay_bias", "lr", "dtype"], "factor": [2.9, 1.5, 1.0],
                            "stated": [False, True, False]})
    return per_T, bumps, ranking


def new_ax():
    return Figure().add_subplot()


def test_plot_bump_height_draws_the_excess_over_one_with_seed_spread() -> None:
    _, bumps, _ = hand_tables()
    ax = fs.plot_bump_height(new_ax(), bumps)
    mean_line, _, (bars,) = ax.containers[0].lines
    assert list(mean_line.get_xdata()) == [0, 1]
    # peak mean - 1: 3.0 - 1 and 1.02 - 1; seed range 2..4 and 1.01..1.03 likewise.
    assert_close(mean_line.get_ydata(), [2.0, 0.02], rtol=1e-13, what="bump excess")
    assert_close(np.array([s[:, 1] for s in bars.get_segments()]), [[1.0, 3.0], [0.01, 0.03]],
                 rtol=1e-13, what="seed spread")
    paper = [line for line in ax.lines if line.get_label().startswith("paper")][0]
    assert_close(paper.get_ydata()[0], the_paper.BUMP_PEAK - 1, rtol=1e-15, what="paper's excess")
    gone = [line for line in ax.lines if line.get_label() == "no bump"][0]
    assert len(gone.get_xdata()) == 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["W and b (base)", "W only"]
    assert ax.get_yscale() == "log"


def test_plot_bump_height_marks_a_value_without_a_bump_at_the_floor() -> None:
    _, bumps, _ = hand_tables()
    bumps = bumps.assign(peak_mean=[3.0, 0.99], peak_min=[2.0, 0.98], peak_max=[4.0, 1.0])
    ax = fs.plot_bump_height(new_ax(), bumps)
    gone = [line for line in ax.lines if line.get_label() == "no bump"][0]
    assert list(gone.get_xdata()) == [1] and list(gone.get_ydata()) == [1e-4]


def test_plot_bump_height_marks_a_bump_at_the_grids_edge() -> None:
    _, bumps, _ = hand_tables()
    ax = fs.plot_bump_height(new_ax(), bumps.assign(inner=[True, False]))
    edge = [line for line in ax.lines if line.get_label().startswith("bump at")][0]
    assert list(edge.get_xdata()) == [1]
    assert_close(edge.get_ydata(), [0.02], rtol=1e-13, what="edge excess")


def test_plot_loss_vs_T_draws_one_line_per_value_sorted_by_T() -> None:
    per_T, _, _ = hand_tables()
    ax = fs.plot_loss_vs_T(new_ax(), per_T)
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines["W and b (base)"].get_xdata()) == [10, 30, 100]
    assert list(lines["W and b (base)"].get_ydata()) == [1.01, 3.0, 0.98]
    assert list(lines["W only"].get_ydata()) == [1.01, 1.02, 0.98]
    assert len(ax.collections) == 2  # one seed band per value
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")


def test_plot_example_spread_and_share_draw_the_per_example_view() -> None:
    per_T, _, _ = hand_tables()
    ax = fs.plot_example_spread(new_ax(), per_T)
    lines = {line.get_gid(): list(line.get_ydata()) for line in ax.lines if line.get_gid()}
    assert lines == {"W and b: median": [1.0, 0.9, 0.5], "W only: median": [1.0, 0.8, 0.5],
                     "W and b: 90th percentile": [1.1, 9.0, 1.5],
                     "W only: 90th percentile": [1.1, 1.2, 1.5]}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["W and b (base)", "W only", "median", "90th percentile"]
    ax = fs.plot_share_above_2(new_ax(), per_T)
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    assert lines == {"W and b (base)": [0.0, 0.1, 0.0], "W only": [0.0, 0.01, 0.0]}
    ax = fs.plot_tail(new_ax(), per_T[per_T["is_base"]])
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    assert lines["mean"] == [1.01, 3.0, 0.98] and lines["median"] == [1.0, 0.9, 0.5]
    assert lines["90th percentile"] == [1.1, 9.0, 1.5]


def test_plot_ranking_puts_the_largest_effect_on_top_and_hatches_stated_knobs() -> None:
    _, _, ranking = hand_tables()
    ax = fs.plot_ranking(new_ax(), ranking)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["dtype", "lr", "decay_bias"]  # bottom to top
    bars = ax.patches
    assert_close([b.get_width() for b in bars], [0.0, 0.5, 1.9], rtol=1e-15, what="factor - 1")
    assert [b.get_x() for b in bars] == [1.0, 1.0, 1.0]
    assert [b.get_hatch() for b in bars] == [None, "//", None]


def test_knob_and_tail_figures_have_their_panels() -> None:
    per_T, bumps, ranking = hand_tables()
    fig = fs.knob_figure("decay_bias", "weight decay on b", bumps, per_T)
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "(a) bump height", "(b) test loss", "(c) per-example loss", "(d) heavy tail"]
    assert len(fs.tail_figure(per_T[per_T["is_base"]]).axes) == 2
    assert len(fs.ranking_figure(ranking).axes) == 1


# --------------------------------------------------------------------------- store, report, CLI


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-knob smoke study with one seed, run once through the CLI."""
    out = tmp_path_factory.mktemp("sensitivity")
    assert cli.main(["sensitivity", "--base", "smoke", "--knobs", "decay_bias,restarts",
                     "--seeds", "0", "--out", str(out), "--workers", "1", "--device", "cpu"]) == 0
    return out


def test_cli_study_writes_store_figures_and_markdown(smoke_dir: Path) -> None:
    study = K.study("smoke", ["decay_bias", "restarts"], [0])
    with Store(smoke_dir / "runs.sqlite", create=False) as store:
        runs = store.runs()
    assert set(runs["run_id"]) == {c.run_id for c in study.configs()}
    assert (runs["status"] == "ok").all()
    for name in ("sensitivity_ranking", "sensitivity_tail", "sensitivity_decay_bias",
                 "sensitivity_restarts"):
        assert (smoke_dir / f"{name}.png").stat().st_size > 0
        assert (smoke_dir / f"{name}.svg").stat().st_size > 0
    text = (smoke_dir / "sensitivity.md").read_text()
    assert "## Verdict" in text and "At the smoke base the bump peaks at" in text
    assert "| decay_bias |" in text and "| restarts |" in text
    assert "![sensitivity_restarts.png](sensitivity_restarts.png)" in text


def test_cli_resumes_and_prints_the_ranking(smoke_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    import shutil

    out = tmp_path / "again"
    shutil.copytree(smoke_dir, out)
    with Store(out / "runs.sqlite", create=False) as store:
        before = store.runs().set_index("run_id")["wall_seconds"]
    code, stdout, err = run_cli(capsys, "sensitivity", "--base", "smoke", "--knobs",
                                "decay_bias,restarts", "--seeds", "0,1", "--out", out,
                                "--workers", "1", "--device", "cpu")
    assert code == 0, err
    with Store(out / "runs.sqlite", create=False) as store:
        after = store.runs().set_index("run_id")["wall_seconds"]
    assert len(after) == 2 * len(before)
    assert after[before.index].equals(before)  # seed 0's runs were not trained again
    lines = stdout.splitlines()
    assert {lines[0].split()[0], lines[1].split()[0]} == {"decay_bias", "restarts"}
    assert lines[2].startswith("At the smoke base")


@pytest.mark.parametrize("argv, message", [
    (["--knobs", "steps,nope"], "toyrelu: error: knobs: 'nope' is unknown (choose from steps, "),
    (["--base", "huge"], "toyrelu: error: base: 'huge' is unknown (choose from smoke, quick, "),
    (["--seeds", "x"], "toyrelu: error: seed: 'x' is not a valid value"),
    (["--workers", "0"], "toyrelu: error: workers: 0 must be an integer >= 1"),
    (["--seeds", "0,0"], "toyrelu: error: seeds: 0 is given twice"),
    (["--knobs", "eps,eps"], "toyrelu: error: knobs: 'eps' is given twice"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv: list, message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "sensitivity", "--out", tmp_path / "x", "--device", "cpu",
                             *argv)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def diverging(failing=lambda config: True):
    """A trainer that diverges on the configs ``failing`` picks and trains the others."""
    train = training.TRAINERS["fused"]

    def trainer(config: RunConfig, *args, **kwargs):
        if failing(config):
            raise Diverged("non-finite loss at step 1")
        return train(config, *args, **kwargs)

    return trainer


SMALL = ["sensitivity", "--base", "smoke", "--knobs", "decay_bias", "--seeds", "0",
         "--workers", "1", "--device", "cpu"]


def test_a_study_whose_runs_all_fail_exits_1_and_keeps_the_old_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    earlier = "# Sensitivity of the bump: an earlier study\n"
    (tmp_path / "sensitivity.md").write_text(earlier)
    monkeypatch.setitem(training.TRAINERS, "fused", diverging())
    for attempt in ("trains and fails", "finds them failed"):
        code, out, err = run_cli(capsys, *SMALL, "--out", tmp_path)
        assert (code, out) == (1, ""), attempt
        assert err.splitlines()[-1] == (
            f"toyrelu: error: every run of the study failed (6), so nothing is written to "
            f"{tmp_path}; the reasons are in the error column of toyrelu export --store "
            f"{tmp_path / 'runs.sqlite'}"), attempt
        assert "No run" not in err and "finished" not in err
        assert (tmp_path / "sensitivity.md").read_text() == earlier
        assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite", "sensitivity.md"]


def test_a_study_whose_runs_were_all_lost_exits_1_and_the_next_run_trains_them(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(executors, "executor", lambda *args: Losing(lambda c: True))
        code, out, err = run_cli(capsys, *SMALL, "--out", tmp_path)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        "toyrelu: error: no run of the study can be analysed yet (0 finished, 0 failed, 6 lost "
        f"by the cluster; the next run trains those not finished), so nothing is written to "
        f"{tmp_path}; the reasons are in the error column of toyrelu export --store "
        f"{tmp_path / 'runs.sqlite'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]
    code, _, err = run_cli(capsys, *SMALL, "--out", tmp_path)
    assert code == 0, err
    with Store(tmp_path / "runs.sqlite", create=False) as store:
        assert set(store.runs()["status"]) == {"ok"}


def test_a_study_whose_base_runs_fail_says_so_and_draws_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(training.TRAINERS, "fused", diverging(lambda c: c.decay_bias))
    code, out, err = run_cli(capsys, *SMALL, "--out", tmp_path)
    assert code == 0, err
    sentence = ("No run of the smoke base itself finished, so no knob value can be compared "
                "with it.")
    assert out.splitlines()[0] == sentence
    text = (tmp_path / "sensitivity.md").read_text()
    assert sentence in text and "| W only |" in text
    assert (tmp_path / "sensitivity_decay_bias.png").is_file()
    assert not (tmp_path / "sensitivity_ranking.png").exists()


def test_section_of_the_study_store(smoke_dir: Path, tmp_path: Path) -> None:
    with Store(smoke_dir / "runs.sqlite", create=False) as store:
        found = R.detect(store)
        assert found is not None
        assert (found.base.name, found.seeds) == ("smoke", (0,))
        assert [k.name for k in found.knobs] == ["decay_bias", "restarts"]
        section = R.section(store, tmp_path)
    assert section is not None
    assert section.title.startswith("Sensitivity")
    assert section.text.startswith("At the smoke base")
    for figure in section.figures:
        assert (tmp_path / figure.name).is_file()
    ranking = section.tables[0][1]
    assert set(ranking["knob"]) == {"decay_bias", "restarts"}
    assert section.settings["seeds"] == "0"
    (finding,) = section.findings
    assert finding.measured.startswith("base ") and isinstance(finding.holds, bool)
    assert finding.paper.startswith("1.015 near T = 20,")


def test_section_is_none_without_a_study(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.sqlite") as store:
        assert R.section(store, tmp_path) is None
        # Base runs alone (a plain sweep) vary no knob: no study.
        base = K.BASES["smoke"].config
        run_sweep([base.replace(n_train=10)], store, InProcess())
        assert R.section(store, tmp_path) is None
    assert not list(tmp_path.glob("*.png"))


def test_the_report_finds_the_section_in_the_report_module() -> None:
    from toyrelu.report import build as report

    assert ("toyrelu.report.sensitivity.section", R.section) in report.providers()
    assert not hasattr(S, "section")  # one provider, not two


def test_the_paper_base_is_the_papers_setting() -> None:
    paper = K.BASES["paper"]
    assert (paper.config.n_features, paper.config.sparsity, paper.config.steps) == (
        10_000, 0.999, 50_000)
    assert paper.paper_onset_T == 10_000 and paper.paper_peak_T == 2_000
    assert not math.isnan(the_paper.BUMP_PEAK)


def test_verdict_does_not_call_a_high_loss_at_the_grid_edge_a_removed_bump() -> None:
    study = K.study("smoke", ["dtype", "decay_bias"], [0, 1])
    # Without bias decay the loss is highest at the smallest T and still far above 1 there:
    # the bump has left the grid, it is not gone.
    edge = {10: 300.0, 30: 2.0, 100: 0.98}
    runs = fake_runs(study, lambda c: bumpy(c) if c.decay_bias else edge[c.n_train])
    _, _, bump, _ = tables(study, runs)
    sentence = S.verdict(study.base, bump)
    assert ("decay_bias = W only puts its bump at the edge of the T grid (mean "
            "300 at T = 10)") in sentence
    assert "removes the bump" not in sentence

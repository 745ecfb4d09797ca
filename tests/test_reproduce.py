"""``report.reproduce`` (the settings and run counts of ``toyrelu reproduce``'s summary.md) and
``report.store_figures`` (which settings ``toyrelu figures`` pools), from presets and hand-made
stores and tables; the commands themselves are tested in test_cli.py."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from helpers import run_cli, trained_arrays
from toyrelu.analysis import regimes
from toyrelu.core.config import RunConfig
from toyrelu.report import reproduce, store_figures
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.store import Store, StoreError

SMOKE = PRESETS["smoke"]


def test_settings_list_the_preset_its_base_then_its_axes() -> None:
    settings = reproduce.settings(SMOKE)
    assert list(settings)[:2] == ["preset", "description"]
    assert settings["preset"] == "smoke" and settings["description"] == SMOKE.description
    assert list(settings)[-2:] == ["n_train", "seed"]  # the smoke preset's axes, last
    assert (settings["n_train"], settings["seed"]) == ("3, 5, 30, 300", "0, 1")
    base = SMOKE.base.to_dict()
    assert {k: v for k, v in settings.items() if k in base and k not in SMOKE.axes} == {
        k: v for k, v in base.items() if k not in SMOKE.axes}


def test_status_counts_count_the_given_runs_only(tmp_path: Path) -> None:
    configs = [RunConfig(n_features=20, n_train=T, steps=50, n_test=200)
               for T in (3, 5, 7, 9, 11)]
    with Store(tmp_path / "runs.sqlite") as store:
        for config, status in zip(configs, ("ok", "ok", "failed", "ok", "lost"), strict=True):
            ok = status == "ok"
            store.put(config.run_id, config.to_dict(),
                      {"status": status, "error": None if ok else "diverged",
                       **({"train_loss": 0.5, "test_loss": 1.0} if ok else {})},
                      trained_arrays(config) if ok else {})
        chosen = {c.run_id for c in configs[1:]}
        assert reproduce.status_counts(store, chosen) == {"ok": 2, "failed": 1, "lost": 1}
        assert reproduce.status_counts(store, set()) == {}


@pytest.mark.parametrize("preset", ["smoke", "heatmap-quick"])
def test_a_store_without_the_presets_runs_is_an_error(preset: str, tmp_path: Path) -> None:
    with Store(tmp_path / "runs.sqlite") as store:
        with pytest.raises(StoreError, match=f"^store: {store.path} holds no finished runs"):
            reproduce.write(PRESETS[preset], store, tmp_path)
    assert not (tmp_path / "summary.md").exists()


def test_pooled_names_the_settings_that_vary_but_are_drawn_as_one() -> None:
    runs = pd.DataFrame({
        "n_train": [3, 5, 3, 5], "seed": [0, 0, 1, 1], "n_hidden": [2, 3, 2, 3],
        "restart": [0, 1, 0, 1], "snapshot_every": [0, 10, 0, 0],  # drawn apart or averaged
        "steps": [40, 40, 60, 60], "sparsity": [0.9] * 4, "lr": [1e-3] * 4,
        "warmup_steps": [None, 5, None, None],  # unset and set are two values
        "test_loss": [1.0, 2.0, 3.0, 4.0],  # a result, not a setting
    })
    assert store_figures.pooled(runs) == ["steps", "warmup_steps"]
    assert store_figures.pooled(runs[runs["steps"] == 40].iloc[:1]) == []


def test_pooled_follows_the_config_field_order() -> None:
    runs = pd.DataFrame({"eps": [1e-8, 1e-7], "n_features": [10, 20], "n_train": [math.inf, 3]})
    assert store_figures.pooled(runs) == ["n_features", "eps"]


def test_pooled_never_names_the_loss_reduction_which_the_figures_split() -> None:
    runs = pd.DataFrame({"n_train": [3, 3], "seed": [0, 0], "loss_reduction": ["sum", "mean"],
                         "eps": [1e-8, 1e-8]})
    assert store_figures.pooled(runs) == []


def test_reproduce_under_both_procedures_checks_each_and_says_what_the_mean_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "out"
    code, out, err = run_cli(capsys, "reproduce", "--preset", "smoke", "--out", folder,
                             "--workers", "1", "--loss-reduction", "sum,mean")
    assert code == 0, err
    names = ("summed loss (eps 1e-8)", "paper's procedure: mean over features")
    claims = out.splitlines()[:-1]
    assert len(claims) == 6
    assert [line[4:].split("]")[0] for line in claims] == [f"[{n}" for n in names for _ in "abc"]
    # The sentence's numbers, from the stored runs themselves: the bump of the mean test loss
    # over T per procedure (regimes.bump), and the eps the mean trains with on the summed scale
    # (n = 50).
    with Store(folder / "runs.sqlite", create=False) as store:
        runs = store.runs()
    means = runs.groupby(["loss_reduction", "n_train"])["test_loss"].mean()
    peaks = {name: curve.to_numpy()[regimes.bump(curve.to_numpy())]
             for name, curve in means.groupby(level=0)}
    text = (folder / "summary.md").read_text().splitlines()
    (sentence,) = [line for line in text if line.startswith("Averaging the loss over")]
    assert "over the n = 50 features" in sentence and "eps n × 1e-8 = 5e-7" in sentence
    assert f"{peaks['sum']:.3g}" in sentence and f"{peaks['mean']:.3g}" in sentence
    assert "m = 2, summed loss (eps 1e-8)" in text
    assert "m = 2, paper's procedure: mean over features" in text

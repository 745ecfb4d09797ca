"""RunConfig: validation with one-line errors naming the field, the dict / JSON round trip, the
run_id as a stable identity, and the derived warmup."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_close
from toyrelu.core.config import CHOICES, ConfigError, RunConfig, field_docs, field_names

SRC = Path(__file__).parents[1] / "src"

# One invalid value per line: (field, value). Sizes must be positive integers (seed >= 0),
# probabilities and rates live in their documented ranges, strings in their allowed sets, and a
# bool is never accepted where an integer or a float is expected.
INVALID = [
    ("n_features", 0),
    ("n_features", -5),
    ("n_features", 10.0),
    ("n_features", True),
    ("n_features", "100"),
    ("n_hidden", 0),
    ("n_hidden", -1),
    ("n_hidden", False),
    ("n_train", 0),
    ("n_train", -3),
    ("n_train", True),
    ("n_train", 2.5),
    ("n_test", 0),
    ("n_test", True),
    ("steps", 0),
    ("steps", -100),
    ("steps", True),
    ("seed", -1),
    ("seed", True),
    ("seed", 1.0),
    ("warmup_steps", -1),
    ("warmup_steps", True),
    ("warmup_steps", 2.0),
    ("sparsity", 1.0),
    ("sparsity", -0.1),
    ("sparsity", float("nan")),
    ("sparsity", float("inf")),
    ("sparsity", 1.5),
    ("sparsity", True),
    ("sparsity", "0.9"),
    ("lr", 0.0),
    ("lr", -1e-3),
    ("lr", float("nan")),
    ("lr", float("inf")),
    ("lr", True),
    ("weight_decay", -1e-2),
    ("weight_decay", float("nan")),
    ("beta1", 1.0),
    ("beta1", -0.5),
    ("beta2", 1.0),
    ("beta2", float("nan")),
    ("eps", 0.0),
    ("eps", -1e-8),
    ("eps", float("nan")),
    ("eps", float("inf")),
    ("eps", True),
    ("weight_decay", float("inf")),
    ("beta1", float("nan")),
    ("beta1", float("-inf")),
    ("beta2", float("inf")),
    ("beta2", -0.1),
    ("decay_bias", 1),
    ("decay_bias", "yes"),
    ("dtype", "float16"),
    ("dtype", "Float32"),
    ("dtype", ""),
    ("engine", "numba"),
    ("engine", "FUSED"),
    ("schedule", "linear"),
    ("schedule", "Cosine"),
    ("loss_reduction", "max"),
    ("bias_init", "uniform"),
    ("schedule", "quarter"),
    ("n_train", -math.inf),
    ("n_train", math.nan),
    ("n_train", 100.0),
    ("restart", -1),
    ("batch_size", 0),
    ("n_repeated", -1),
    ("repeats", 0),
    ("snapshot_every", -1),
    ("snapshot_every", True),
    ("snapshot_every", 2.0),
    ("snapshot_every", 1),  # 10,001 snapshots of the default 10,000 steps: over the cap
]


def test_defaults_are_valid_and_match_the_paper() -> None:
    config = RunConfig()
    # docs/experiment.md section 3: AdamW, peak lr 1e-3, weight decay 1e-2, betas (0.9, 0.999),
    # eps 1e-8, decay on W and b, float32; section 1: b initialised to zeros, loss summed over
    # features.
    assert (config.lr, config.weight_decay, config.beta1, config.beta2, config.eps) == (
        1e-3, 1e-2, 0.9, 0.999, 1e-8,
    )
    assert config.decay_bias is True
    assert (config.dtype, config.bias_init, config.loss_reduction) == ("float32", "zeros", "sum")
    assert config.schedule == "cosine"


@pytest.mark.parametrize(("name", "value"), INVALID, ids=[f"{n}={v!r}" for n, v in INVALID])
def test_invalid_value_raises_one_line_error_starting_with_the_field(name: str, value) -> None:
    with pytest.raises(ConfigError) as excinfo:
        RunConfig(**{name: value})
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{name}:"), message
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(("name", "value"), INVALID[:6], ids=[f"{n}" for n, _ in INVALID[:6]])
def test_replace_validates_again(name: str, value) -> None:
    with pytest.raises(ConfigError, match=f"^{name}:"):
        RunConfig().replace(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("lr", float("nan"), "lr: nan must be in (0, inf)"),
        ("eps", 0.0, "eps: 0.0 must be in (0, inf)"),
        ("eps", float("inf"), "eps: inf must be in (0, inf)"),
        ("weight_decay", -1e-2, "weight_decay: -0.01 must be in [0, inf)"),
        ("beta1", float("nan"), "beta1: nan must be in [0, 1)"),
        ("beta2", 1.0, "beta2: 1.0 must be in [0, 1)"),
    ],
)
def test_adam_errors_name_the_allowed_range(name: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        RunConfig(**{name: value})
    assert str(excinfo.value) == message


def test_warmup_longer_than_steps_is_an_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        RunConfig(steps=100, warmup_steps=101)
    assert str(excinfo.value).startswith("warmup_steps:")
    assert "\n" not in str(excinfo.value)
    # The boundaries are allowed: no warmup at all, and warmup over every step.
    assert RunConfig(steps=100, warmup_steps=0).warmup == 0
    assert RunConfig(steps=100, warmup_steps=100).warmup == 100


@pytest.mark.parametrize(("steps", "expected"), [(1000, 50), (200, 10), (50_000, 2500), (40, 2)])
def test_warmup_defaults_to_five_percent_of_steps(steps: int, expected: int) -> None:
    # docs/experiment.md section 3: 2,500 warmup steps of 50,000 (5%).
    assert RunConfig(steps=steps).warmup == expected
    assert RunConfig(steps=steps, warmup_steps=7).warmup == 7


def test_boundary_values_are_accepted() -> None:
    config = RunConfig(sparsity=0.0, n_features=1, n_hidden=1, n_train=1, n_test=1, steps=1,
                       seed=0, weight_decay=0.0, beta1=0.0, beta2=0.0)
    assert config.steps == 1 and config.warmup == 0  # round(0.05) = 0


def _non_default_config() -> RunConfig:
    return RunConfig(
        n_features=300, n_hidden=5, sparsity=0.95, n_train=17, seed=3, steps=250, lr=3e-3,
        warmup_steps=20, weight_decay=0.1, decay_bias=False, beta1=0.8, beta2=0.99, eps=1e-7,
        schedule="constant", loss_reduction="mean", bias_init="normal", dtype="float64",
        n_test=123, engine="reference",
    )


@pytest.mark.parametrize("config", [RunConfig(), _non_default_config()], ids=["default", "other"])
def test_dict_and_json_round_trip(config: RunConfig) -> None:
    as_dict = config.to_dict()
    assert list(as_dict) == field_names()
    assert RunConfig.from_dict(as_dict) == config
    through_json = RunConfig.from_dict(json.loads(json.dumps(as_dict)))
    assert through_json == config
    assert through_json.run_id == config.run_id
    # Every value is a plain JSON scalar, so the store can keep it as text.
    assert all(v is None or type(v) in (int, float, str, bool) for v in as_dict.values())


def test_from_dict_fills_missing_fields_with_defaults() -> None:
    assert RunConfig.from_dict({"n_train": 7}) == RunConfig(n_train=7)


def test_from_dict_rejects_an_unknown_field_naming_it() -> None:
    values = {**RunConfig().to_dict(), "learning_rate": 0.1}
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_dict(values)
    assert str(excinfo.value).startswith("learning_rate:")
    assert "\n" not in str(excinfo.value)


def test_from_dict_validates_values() -> None:
    with pytest.raises(ConfigError, match="^sparsity:"):
        RunConfig.from_dict({"sparsity": 1.0})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().n_train = 5  # type: ignore[misc]


def test_run_id_is_stable_and_short_hex() -> None:
    config = _non_default_config()
    run_id = config.run_id
    assert len(run_id) == 16 and int(run_id, 16) >= 0
    assert _non_default_config().run_id == run_id
    assert RunConfig.from_dict(config.to_dict()).run_id == run_id
    # The same in a fresh interpreter with another hash seed: the id never depends on hash().
    code = (
        "from toyrelu.core.config import RunConfig; import json, sys; "
        "print(RunConfig.from_dict(json.loads(sys.argv[1])).run_id)"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config.to_dict())],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.strip() == run_id


# Golden values: RunConfig(**changes).run_id as computed at commit 03bcd31. Every store names
# its runs by these ids, so a new field must leave them unchanged (hash it only when it is off
# its default), or no store resumes.
GOLDEN_RUN_IDS = [
    ({}, "ed9a53189a421e35"),
    ({"loss_reduction": "mean"}, "bc6cfd1a074d3876"),
    ({"n_train": math.inf}, "ff609eaf5caa0ee9"),
]


@pytest.mark.parametrize(("changes", "run_id"), GOLDEN_RUN_IDS)
def test_run_ids_of_stored_configs_never_change(changes: dict, run_id: str) -> None:
    assert RunConfig(**changes).run_id == run_id


def test_a_stored_config_without_the_loss_reduction_trains_on_the_sum() -> None:
    old = RunConfig(n_train=30).to_dict()
    del old["loss_reduction"]
    assert RunConfig.from_dict(old).loss_reduction == "sum"
    assert RunConfig.from_dict(old).run_id == RunConfig(n_train=30).run_id


# A valid value different from the default for every field.
CHANGED = {
    "n_features": 999,
    "n_hidden": 3,
    "sparsity": 0.98,
    "n_train": 101,
    "seed": 1,
    "steps": 9_999,
    "lr": 2e-3,
    "warmup_steps": 500,
    "weight_decay": 0.0,
    "decay_bias": False,
    "beta1": 0.95,
    "beta2": 0.99,
    "eps": 1e-6,
    "schedule": "constant",
    "loss_reduction": "mean",
    "bias_init": "normal",
    "dtype": "float64",
    "n_test": 5_000,
    "engine": "reference",
    "restart": 2,
    "batch_size": 500,
    "n_repeated": 3,
    "repeats": 5,
    "snapshot_every": 100,
}


def test_every_field_has_a_changed_value() -> None:
    assert sorted(CHANGED) == sorted(field_names())


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_run_id_changes_when_any_field_changes(name: str) -> None:
    base = RunConfig()
    changed = base.replace(**{name: CHANGED[name]})
    assert changed != base
    assert changed.run_id != base.run_id


@pytest.mark.parametrize(("name", "as_int"), [("sparsity", 0), ("weight_decay", 0), ("lr", 1)])
def test_equal_configs_have_equal_run_ids(name: str, as_int: int) -> None:
    with_int = RunConfig(**{name: as_int})
    with_float = RunConfig(**{name: float(as_int)})
    assert with_int == with_float
    assert with_int.run_id == with_float.run_id


def test_density_is_one_minus_sparsity() -> None:
    # 1 - 0.999 in binary floating point is off from 0.001 by about 1e-15 relative.
    assert_close(RunConfig(sparsity=0.999).density, 0.001, rtol=1e-12, what="density")
    assert RunConfig(sparsity=0.0).density == 1.0


def test_infinite_training_set() -> None:
    config = RunConfig(n_train=math.inf, batch_size=64)
    assert config.infinite and config.examples_per_step == 64
    assert not RunConfig(n_train=10).infinite and RunConfig(n_train=10).examples_per_step == 10
    assert RunConfig.from_dict(config.to_dict()) == config
    assert config.run_id != RunConfig(n_train=10**9, batch_size=64).run_id


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(n_train=math.inf, n_repeated=1, repeats=5), "n_repeated"),
        (dict(n_train=math.inf, repeats=2), "n_repeated"),
        (dict(n_train=10, n_repeated=3, repeats=4), "repeats"),
    ],
)
def test_repeats_need_a_finite_set_that_holds_them(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        RunConfig(**changes)


def test_repeats_that_fill_the_set_exactly_are_valid() -> None:
    assert RunConfig(n_train=12, n_repeated=3, repeats=4).n_repeated == 3


# ------------------------------------------------------------------ field documentation


def test_every_field_has_its_documentation() -> None:
    # The command line shows these as the options' help, so none may be missing or empty.
    docs = field_docs()
    assert list(docs) == field_names()
    assert all(text.strip() and "\n" not in text for text in docs.values())
    assert docs["n_features"] == "n, the number of sparse input features."
    # An entry of several lines is joined; fields documented together share the text.
    assert docs["n_train"].startswith("T, the number of training examples (full batch, fixed")
    assert docs["n_train"].endswith("examples every step.")
    assert docs["beta1"] == docs["beta2"] == docs["eps"] == "Adam hyper-parameters."


def test_choices_are_what_validation_allows() -> None:
    assert set(CHOICES) == {f for f in field_names() if isinstance(getattr(RunConfig(), f), str)}
    for name, allowed in CHOICES.items():
        for value in allowed:
            assert getattr(RunConfig(**{name: value}), name) == value
        with pytest.raises(ConfigError, match=f"^{name}: 'other' must be one of "
                                              f"{', '.join(allowed)}$"):
            RunConfig(**{name: "other"})

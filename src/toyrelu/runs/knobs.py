"""Knobs: the settings the sensitivity study varies, the bases it varies them around, its grid.

A knob is a named setting given as a few values; each value is a set of RunConfig field changes
(plus, for restarts, "best of k initialisations by training loss"). Knobs are varied one at a
time around a base: a base config with its T grid, its seeds and where the paper puts the bump's
peak and the onset of generalization at that scale (``toyrelu.core.paper`` scaled to the base's
sparsity, docs/experiment.md sections 2 and 5). A ``Study`` is the knobs chosen for one base and
its seeds; every (knob, value, T, seed) cell is a few ordinary RunConfigs, so equal configs
across knobs are one run. The study's statistics and verdict are in
``toyrelu.analysis.sensitivity``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toyrelu.core import paper
from toyrelu.core.config import ConfigError, RunConfig
from toyrelu.runs.grid import once
from toyrelu.runs.presets import PAPER_BASE, QUICK_BASE


@dataclass(frozen=True)
class KnobValue:
    """One value of a knob: RunConfig field ``changes`` and, for restarts, the best of
    ``restarts`` initialisations (restart 0..k-1) by training loss."""

    label: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    restarts: int = 1

    def configs(self, base: RunConfig, n_train: int, seed: int) -> list[RunConfig]:
        """The runs of this value at one (T, seed): one per restart."""
        config = base.replace(n_train=n_train, seed=seed, **self.changes)
        return [config.replace(restart=r) for r in range(self.restarts)]

    def is_base(self, base: RunConfig) -> bool:
        return self.restarts == 1 and base.replace(**self.changes) == base


@dataclass(frozen=True)
class Knob:
    """A setting varied one at a time. ``stated``: the paper gives its value (docs/experiment.md
    section 3), so a different value shows sensitivity but cannot explain the gap to the paper."""

    name: str
    description: str
    values: tuple[KnobValue, ...]
    stated: bool = False


def knobs_for(base: RunConfig) -> dict[str, Knob]:
    """Every knob, with values placed around ``base`` (its own value among them)."""
    eps, lr, steps, n_test = base.eps, base.lr, base.steps, base.n_test

    def v(label: str, restarts: int = 1, **changes: Any) -> KnobValue:
        return KnobValue(label, changes, restarts)

    knobs = [
        Knob("steps", "training length (warmup stays 5%)", tuple(
            v(f"{s:,}", steps=s) for s in (steps // 2, steps, 2 * steps)), stated=True),
        Knob("weight_decay", "AdamW weight decay", tuple(
            v(f"{w:g}", weight_decay=w) for w in (1e-3, 1e-2, 1e-1)), stated=True),
        Knob("decay_bias", "weight decay on b as well as W", (
            v("W and b", decay_bias=True), v("W only", decay_bias=False))),
        Knob("bias_init", "initial b", (
            v("0", bias_init="zeros"), v("N(0, 1)", bias_init="normal"))),
        Knob("loss", "squared error summed or averaged over features, with Adam's eps", (
            v("sum", loss_reduction="sum", eps=eps),
            v(f"mean, eps {eps:g}", loss_reduction="mean", eps=eps),
            v("mean, eps/n", loss_reduction="mean", eps=eps / base.n_features))),
        Knob("betas", "Adam (beta1, beta2)", tuple(
            v(f"{b1:g}, {b2:g}", beta1=b1, beta2=b2)
            for b1, b2 in ((0.9, 0.95), (0.9, 0.99), (0.9, 0.999)))),
        Knob("eps", "Adam eps", tuple(v(f"{e:g}", eps=float(f"{e:.12g}"))
                                      for e in (eps, 1e2 * eps, 1e4 * eps, 3e4 * eps, 1e5 * eps))),
        Knob("lr", "peak learning rate", tuple(
            v(f"{x:.2g}", lr=x) for x in (lr / 3, lr, 3 * lr)), stated=True),
        Knob("schedule", "after the warmup: cosine to 0, quarter cosine to 0, or flat", tuple(
            v(s, schedule=s) for s in ("cosine", "quarter_cosine", "constant")), stated=True),
        Knob("dtype", "parameters and arithmetic", (v("float32", dtype="float32"),
                                                    v("float64", dtype="float64"))),
        Knob("restarts", "best of k initialisations by training loss", (
            v("1"), v("best of 2", restarts=2), v("best of 4", restarts=4))),
        Knob("n_test", "test-set size", tuple(
            v(f"{t:,}", n_test=t) for t in (max(1, n_test // 10), n_test, 10 * n_test))),
    ]
    return {k.name: k for k in knobs}


KNOB_NAMES = tuple(knobs_for(RunConfig()))


@dataclass(frozen=True)
class Base:
    """The config the knobs vary around, the T grid and seeds, and where the paper puts the
    bump's peak and the onset of generalization at this scale."""

    name: str
    description: str
    config: RunConfig
    n_train: tuple[int, ...]
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        once("n_train", self.n_train)
        once("seeds", self.seeds)

    @property
    def paper_peak_T(self) -> int:
        """The paper's bump peak (T = 2,000 at S = 0.999) at this base's sparsity."""
        return round(paper.BUMP_T * paper.scale(self.config.sparsity))

    @property
    def paper_onset_T(self) -> int:
        """The paper's onset of generalization (T = 10,000 at S = 0.999) at this sparsity."""
        return round(paper.ONSET_T * paper.scale(self.config.sparsity))


BASES: dict[str, Base] = {
    "smoke": Base("smoke", "seconds-long check: n = 50, S = 0.9, 300 steps",
                  RunConfig(n_features=50, sparsity=0.9, steps=300, n_test=500),
                  (10, 30, 100), (0, 1)),
    "quick": Base("quick", "the reduced setting: n = 1,000, S = 0.99, m = 2, 10,000 steps",
                  QUICK_BASE, (50, 100, 200, 300, 500, 1_000, 2_000), (0, 1)),
    "paper": Base("paper", "paper scale: n = 10,000, S = 0.999, m = 2, 50,000 steps (a GPU)",
                  PAPER_BASE, (1_000, 2_000, 5_000, 10_000, 20_000), (0, 1)),
}


@dataclass(frozen=True)
class Study:
    """``knobs`` varied one at a time around ``base`` at every T of the base and ``seeds``."""

    base: Base
    knobs: tuple[Knob, ...]
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        once("knobs", [k.name for k in self.knobs])
        once("seeds", self.seeds)

    def cells(self) -> list[tuple[Knob, KnobValue, int, int]]:
        return [(k, v, T, s) for k in self.knobs for v in k.values
                for T in self.base.n_train for s in self.seeds]

    def configs(self) -> list[RunConfig]:
        """Every run of the study, each once (values shared between knobs are trained once)."""
        out: dict[str, RunConfig] = {}
        for _, value, T, seed in self.cells():
            for config in value.configs(self.base.config, T, seed):
                out.setdefault(config.run_id, config)
        return list(out.values())


def study(base: str, knobs: Sequence[str] | None = None,
          seeds: Sequence[int] | None = None) -> Study:
    """The study of the named base over ``knobs`` (default all) and ``seeds`` (default the
    base's); unknown names and a knob or seed given twice raise ConfigError naming the field."""
    if base not in BASES:
        raise ConfigError(f"base: {base!r} is unknown (choose from {', '.join(BASES)})")
    chosen = BASES[base]
    available = knobs_for(chosen.config)
    names = list(knobs) if knobs is not None else list(available)
    unknown = [k for k in names if k not in available]
    if unknown or not names:
        raise ConfigError(f"knobs: {unknown[0] if unknown else ''!r} is unknown "
                          f"(choose from {', '.join(available)})")
    seeds = tuple(seeds) if seeds is not None else chosen.seeds
    for s in seeds:
        chosen.config.replace(seed=s)  # validates
    if not seeds:
        raise ConfigError("seeds: give at least one seed")
    return Study(chosen, tuple(available[k] for k in names), seeds)

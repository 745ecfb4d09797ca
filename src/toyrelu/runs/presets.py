"""Named sweeps: a base config plus the axes swept around it, one per experiment of the paper.

Presets are plain Python objects, type-checked like everything else; the CLI's overrides turn
into ``Preset.override`` calls, never into branches in shared code. Every experiment of
docs/experiment.md section 5 has a preset at paper scale (n = 10,000, S = 0.999, 50,000 steps,
``toyrelu.core.paper``) and a reduced twin named ``NAME-quick`` (n = 1,000, S = 0.99, where the
transitions sit at about 10x smaller T) whose estimated cost (``cpu_seconds``) fits a budget of
15 minutes on 2 CPU cores. Every reduced twin trains under both procedures (``PROCEDURES``,
docs/experiment.md section 9); a paper-scale preset does when its sweep under one procedure
costs no more than the ``paper`` m = 2 sweep's, while the costlier ones keep the summed loss
rather than double GPU hours. A preset names its experiment by the key of its record in
``toyrelu.experiments``; this module imports neither pandas nor matplotlib, so listing the
presets stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toyrelu.core import paper
from toyrelu.core.config import ConfigError, RunConfig
from toyrelu.runs.grid import cost, grid, once
from toyrelu.runs.limits import MAX_RUNS

PAPER_T = paper.T_LIST
GEOMETRY_T = paper.GEOMETRY_T
QUICK_T = (3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 300, 500, 1_000, 2_000, 5_000)
# The paper's T list up to its pentagon, trimmed to what 2 CPU cores afford at paper scale: the
# memorization regime, the bump (paper.BUMP_T) and the pentagon (paper.LARGE_T).
LAPTOP_T = (3, 5, 10, 30, 100, 500, paper.BUMP_T, paper.LARGE_T)
HEATMAP_M = paper.HEATMAP_M
HEATMAP_T = paper.HEATMAP_T
WEIGHT_DECAYS = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
REPEATS = (1, 2, 3, 5, 10, 20, 50)
# Appearances per feature, T (1 - S), of the sparsity experiment's training sets.
FEATURE_COUNTS = (1, 2, 5, 10, 20, 50)
SEEDS = tuple(range(paper.SEEDS))
# Both training procedures (docs/experiment.md section 9): the summed loss, toyrelu's default,
# and the loss averaged over features, the paper's most likely. A preset sweeps them as an axis,
# so that a summed run's id does not depend on whether the mean is trained beside it, and a
# store of the summed loss resumes, adding only the mean's runs.
PROCEDURES = ("sum", "mean")

# The experiment a preset belongs to (``Preset.experiment``), the key of its record in
# ``toyrelu.experiments`` (which tests that each key has one): the figures and summary
# ``toyrelu reproduce`` draws for it. "double-descent" is the m = 2 T sweep of figures 1-4.
EXPERIMENTS = ("double-descent", "heatmap", "weight-decay", "training-length", "repeated",
               "sparsity", "mechanism")
# The mechanism study (docs/experiment.md section 10): T around the reduced bump, where a
# feature is seen 1-10 times in training, and W, b kept every 100 steps, which is what
# ``analysis.mechanism`` measures update sizes and the tail's onset from.
MECHANISM_T = (100, 200, 300, 500, 1_000)
MECHANISM_SNAPSHOT_EVERY = 100

# Fused CPU engine, one single-threaded process per core as a sweep runs it: (example, feature)
# pairs per second per core at n_hidden = 2, fitted with the rest of ``grid.cost`` by
# benchmarks/bench_cost.py to the run times of timed sweeps (docs/engines.md); ``grid.cost``
# prices the split-cell step, the nonzeros and the overheads in these pairs and scales other
# hidden sizes by their measured speed.
CPU_PAIRS_PER_SECOND = 7.4e9


@dataclass(frozen=True)
class Preset:
    """A sweep: ``base`` with every combination of ``axes`` (field name -> values).

    ``blocks``, if given, splits the sweep into parts: each block's axes replace the shared
    ``axes`` of the same names, and the sweep is the union of the parts (the sparsity experiment
    uses one block per S, each with its own T list). ``experiment`` names the experiment the
    preset belongs to (one of ``EXPERIMENTS``). ``geometry_T`` lists the T values of the m = 2
    geometry figure (one column each), plus the largest T of the sweep.
    """

    name: str
    description: str
    base: RunConfig
    axes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    geometry_T: tuple[int, ...] = GEOMETRY_T
    experiment: str = "double-descent"
    blocks: tuple[Mapping[str, tuple[Any, ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"experiment: {self.experiment!r} must be one of "
                             f"{', '.join(EXPERIMENTS)}")

    def size(self) -> int:
        """The runs of the sweep before repeated combinations are dropped: the product of the
        axis lengths, summed over the blocks, counted without building a config."""
        return sum(math.prod(len(values) for values in {**self.axes, **block}.values())
                   for block in self.blocks or ({},))

    def configs(self) -> list[RunConfig]:
        """Every run of the sweep, each once. A sweep of more than ``limits.MAX_RUNS`` runs
        (``size``) raises ConfigError, naming its longest axis, before any config is built."""
        if self.size() > MAX_RUNS:
            axes = [axis for part in (self.axes, *self.blocks) for axis in part.items()]
            name, values = max(axes, key=lambda axis: len(axis[1]))
            raise ConfigError(f"{name}: {len(values):,} values make {self.size():,} runs with "
                              f"the other axes (allowed: at most {MAX_RUNS:,} runs in one "
                              "sweep)")
        out: dict[str, RunConfig] = {}
        for block in self.blocks or ({},):
            for config in grid(self.base, {**self.axes, **block}):
                out.setdefault(config.run_id, config)
        return list(out.values())

    def override(self, values: Mapping[str, Sequence[Any]]) -> Preset:
        """Set fields: one value changes the base, several make (or replace) a sweep axis; a
        field set here is dropped from every block.

        Unknown field names raise ConfigError when the base is rebuilt, and so does a value
        given twice for one field (``grid.once``)."""
        for name, given in values.items():
            once(name, given)
        scalars = {k: v[0] for k, v in values.items() if len(v) == 1}
        axes = {k: v for k, v in self.axes.items() if k not in values}
        axes.update({k: tuple(v) for k, v in values.items() if len(v) > 1})
        blocks = tuple({k: v for k, v in b.items() if k not in values} for b in self.blocks)
        return Preset(self.name, self.description, self.base.replace(**scalars), axes,
                      self.geometry_T, self.experiment, blocks)


def cpu_seconds(configs: Sequence[RunConfig], cores: int = 2) -> float:
    """Estimated run time of a sweep on ``cores`` CPU cores with the CPU engine: the runs'
    ``grid.cost`` (fused pairs at n_hidden = 2, each step priced as the engine takes it) over
    the measured throughput ``CPU_PAIRS_PER_SECOND``, spread evenly over the cores."""
    return sum(cost(config) for config in configs) / CPU_PAIRS_PER_SECOND / cores


def per_sparsity(
    sparsities: Sequence[float], counts: Sequence[int]
) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """One block per sparsity S whose T list gives each feature ``counts`` appearances on
    average: T = round(count / (1 - S))."""
    return tuple(
        {"sparsity": (S,), "n_train": tuple(round(c / (1.0 - S)) for c in counts)}
        for S in sparsities
    )


PAPER_BASE = RunConfig(n_features=paper.N_FEATURES, n_hidden=paper.N_HIDDEN,
                       sparsity=paper.SPARSITY, steps=paper.STEPS)
QUICK_BASE = RunConfig(n_features=paper.REDUCED_N_FEATURES, n_hidden=paper.N_HIDDEN,
                       sparsity=paper.REDUCED_SPARSITY, steps=10_000)

_PRESETS = [
    Preset(
        "smoke",
        "seconds-long sanity check: n = 50, S = 0.9, m = 2, four T, 300 steps",
        RunConfig(n_features=50, n_hidden=2, sparsity=0.9, n_train=3, steps=300, n_test=500),
        {"n_train": (3, 5, 30, 300), "seed": (0, 1)},
        geometry_T=(3, 5),
    ),
    Preset(
        "quick",
        "the reduced setting (n = 1,000, S = 0.99, m = 2), memorization to generalization, "
        "4 seeds, 10,000 steps, under both procedures (the summed loss and the paper's mean "
        "over features)",
        QUICK_BASE,
        {"n_train": QUICK_T, "seed": SEEDS, "loss_reduction": PROCEDURES},
    ),
    Preset(
        "paper",
        "the paper's m = 2 setting: n = 10,000, S = 0.999, 50,000 steps, 4 seeds, T from 3 to "
        "500k and infinity (a fresh batch of 1,000 per step), under both procedures: at this "
        "scale the paper's mean over features should give the paper's numbers",
        PAPER_BASE,
        {"n_train": PAPER_T, "seed": SEEDS, "loss_reduction": PROCEDURES},
    ),
    Preset(
        "paper-laptop",
        "the paper's m = 2 setting (n = 10,000, S = 0.999, 50,000 steps) on a laptop: T = 3, "
        "5, 10, 30, 100 (memorization), 500, 2,000 (the paper's bump) and 10,000 (the "
        "pentagon), 2 seeds, both procedures",
        PAPER_BASE,
        {"n_train": LAPTOP_T, "seed": (0, 1), "loss_reduction": PROCEDURES},
        geometry_T=(3, 5, 10, 30),
    ),
    Preset(
        "quick-full",
        "quick with the large T of the paper's list scaled to the reduced setting: T up to "
        "20,000 and infinity (a fresh batch of 1,000 per step), 4 seeds, 10,000 steps, both "
        "procedures",
        QUICK_BASE,
        {"n_train": (*QUICK_T, 10_000, 20_000, math.inf), "seed": SEEDS,
         "loss_reduction": PROCEDURES},
    ),
    Preset(
        "heatmap",
        "figure 5: mean test loss over m = 2..10, 16 and T = 200..500k, paper scale, 4 seeds; "
        "summed loss only: the paper's procedure as well would double GPU hours "
        "(--loss-reduction sum,mean adds it)",
        PAPER_BASE,
        {"n_hidden": HEATMAP_M, "n_train": HEATMAP_T, "seed": SEEDS},
        experiment="heatmap",
    ),
    Preset(
        "heatmap-quick",
        "figure 5, reduced: m = 2, 3, 4, 6, 8, 16 and T = 100..10,000, 5,000 steps, both "
        "procedures, 2 seeds (3 would not fit both in the budget)",
        QUICK_BASE.replace(steps=5_000),
        {"n_hidden": (2, 3, 4, 6, 8, 16), "n_train": (100, 300, 1_000, 3_000, 10_000),
         "seed": (0, 1), "loss_reduction": PROCEDURES},
        experiment="heatmap",
    ),
    Preset(
        "weight-decay",
        "appendix: weight decay 0..1 at m = 4, T = 200..100k, paper scale, 4 seeds; summed "
        "loss only: the paper's procedure as well would double GPU hours (--loss-reduction "
        "sum,mean adds it)",
        PAPER_BASE.replace(n_hidden=paper.APPENDIX_N_HIDDEN),
        {"weight_decay": WEIGHT_DECAYS, "n_train": HEATMAP_T[:9], "seed": SEEDS},
        experiment="weight-decay",
    ),
    Preset(
        "weight-decay-quick",
        "appendix, reduced: weight decay 0..1 at m = 4, T = 50..5,000, 10,000 steps, both "
        "procedures, 2 seeds (3 would not fit both in the budget)",
        QUICK_BASE.replace(n_hidden=paper.APPENDIX_N_HIDDEN),
        {"weight_decay": WEIGHT_DECAYS,
         "n_train": (50, 100, 200, 500, 1_000, 2_000, 5_000), "seed": (0, 1),
         "loss_reduction": PROCEDURES},
        experiment="weight-decay",
    ),
    Preset(
        "training-length",
        "appendix: 12.5k to 100k steps at m = 4 (warmup 5%), T = 200..100k, paper scale, "
        "4 seeds; summed loss only: the paper's procedure as well would double GPU hours "
        "(--loss-reduction sum,mean adds it)",
        PAPER_BASE.replace(n_hidden=paper.APPENDIX_N_HIDDEN),
        {"steps": (12_500, 25_000, 50_000, 100_000), "n_train": HEATMAP_T[:9], "seed": SEEDS},
        experiment="training-length",
    ),
    Preset(
        "training-length-quick",
        "appendix, reduced: 2,500 to 20,000 steps at m = 4 (warmup 5%), T = 50..5,000, 3 seeds, "
        "both procedures",
        QUICK_BASE.replace(n_hidden=paper.APPENDIX_N_HIDDEN),
        {"steps": (2_500, 5_000, 10_000, 20_000),
         "n_train": (50, 100, 200, 500, 1_000, 2_000, 5_000), "seed": (0, 1, 2),
         "loss_reduction": PROCEDURES},
        experiment="training-length",
    ),
    Preset(
        "repeated",
        "repeated data: one training point repeated R = 1..50 times, m = 2, T = 10k, 30k, "
        "100k (T/n = 1, 3, 10), paper scale, 4 seeds; summed loss only: the paper's procedure "
        "as well would double GPU hours (--loss-reduction sum,mean adds it)",
        PAPER_BASE.replace(n_repeated=1),
        {"repeats": REPEATS, "n_train": (10_000, 30_000, 100_000), "seed": SEEDS},
        experiment="repeated",
    ),
    Preset(
        "repeated-quick",
        "repeated data, reduced: one point repeated R = 1..50 times, m = 2, T = 1k, 3k, 10k "
        "(T/n = 1, 3, 10), 2 seeds, 10,000 steps, both procedures",
        QUICK_BASE.replace(n_repeated=1),
        {"repeats": REPEATS, "n_train": (1_000, 3_000, 10_000), "seed": (0, 1),
         "loss_reduction": PROCEDURES},
        experiment="repeated",
    ),
    Preset(
        "sparsity",
        "generalization onset vs T(1 - S) = 1..50 for S = 0.997, 0.999, 0.9997, m = 2, paper "
        "scale, 4 seeds, under both procedures: together they cost less than the m = 2 sweep "
        "under both",
        PAPER_BASE,
        {"seed": SEEDS, "loss_reduction": PROCEDURES},
        experiment="sparsity",
        blocks=per_sparsity((0.997, 0.999, 0.9997), FEATURE_COUNTS),
    ),
    Preset(
        "sparsity-quick",
        "generalization onset vs T(1 - S) = 1..50 for S = 0.97, 0.98, 0.99, 0.995, m = 2, "
        "n = 1,000, 3 seeds, 10,000 steps, both procedures",
        QUICK_BASE,
        {"seed": (0, 1, 2), "loss_reduction": PROCEDURES},
        experiment="sparsity",
        blocks=per_sparsity((0.97, 0.98, 0.99, 0.995), FEATURE_COUNTS),
    ),
    Preset(
        "mechanism-quick",
        "why the procedure changes the bump, measured: the reduced setting (n = 1,000, "
        "S = 0.99, m = 2, 10,000 steps) at T = 100..1,000 around its bump, 2 seeds, both "
        "procedures, W and b kept every 100 steps; per feature, its count in training against "
        "its |W_i|, b_i and update sizes, and which features carry the test loss's heavy tail",
        QUICK_BASE.replace(snapshot_every=MECHANISM_SNAPSHOT_EVERY),
        {"n_train": MECHANISM_T, "seed": (0, 1), "loss_reduction": PROCEDURES},
        experiment="mechanism",
    ),
    Preset(
        "mechanism-laptop",
        "the mechanism study at the paper's scale (n = 10,000, S = 0.999, m = 2, 50,000 "
        "steps) at T = 500 and the paper's bump T = 2,000, 2 seeds, both procedures, W and b "
        "kept every 500 steps",
        PAPER_BASE.replace(snapshot_every=5 * MECHANISM_SNAPSHOT_EVERY),
        {"n_train": (500, paper.BUMP_T), "seed": (0, 1), "loss_reduction": PROCEDURES},
        experiment="mechanism",
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}

"""Named sweeps: a base config plus the axes swept around it.

Presets are plain Python objects, type-checked like everything else; the CLI's overrides turn
into ``Preset.override`` calls, never into branches in shared code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toyrelu.config import RunConfig
from toyrelu.sweep import grid

PAPER_T = (3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000,
           50_000, 100_000)
GEOMETRY_T = (3, 5, 6, 8, 10, 15, 30)


@dataclass(frozen=True)
class Preset:
    """A sweep: ``base`` with every combination of ``axes`` (field name -> values).

    ``geometry_T`` lists the T values of the geometry figure (one column each), plus the largest
    T of the sweep, where the features form a pentagon.
    """

    name: str
    description: str
    base: RunConfig
    axes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    geometry_T: tuple[int, ...] = GEOMETRY_T

    def configs(self) -> list[RunConfig]:
        """Every run of the sweep."""
        return grid(self.base, self.axes)

    def override(self, values: Mapping[str, Sequence[Any]]) -> Preset:
        """Set fields: one value changes the base, several make (or replace) a sweep axis.

        Unknown field names raise ConfigError when the base is rebuilt."""
        scalars = {k: v[0] for k, v in values.items() if len(v) == 1}
        axes = {k: v for k, v in self.axes.items() if k not in values}
        axes.update({k: tuple(v) for k, v in values.items() if len(v) > 1})
        return Preset(self.name, self.description, self.base.replace(**scalars), axes,
                      self.geometry_T)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke",
        "seconds-long sanity check: n = 50, S = 0.9, m = 2, four T, 300 steps",
        RunConfig(n_features=50, n_hidden=2, sparsity=0.9, n_train=3, steps=300, n_test=500),
        {"n_train": (3, 5, 30, 300), "seed": (0, 1)},
        geometry_T=(3, 5),
    ),
    "quick": Preset(
        "quick",
        "the reduced setting (n = 1,000, S = 0.99, m = 2), memorization to generalization, "
        "4 seeds, 10,000 steps",
        RunConfig(n_features=1_000, n_hidden=2, sparsity=0.99, steps=10_000),
        {
            "n_train": (3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 300, 500, 1_000, 2_000, 5_000),
            "seed": (0, 1, 2, 3),
        },
    ),
    "paper": Preset(
        "paper",
        "PAPER.md's m = 2 setting: n = 10,000, S = 0.999, 50,000 steps, 4 seeds, T up to 100k",
        RunConfig(n_features=10_000, n_hidden=2, sparsity=0.999, steps=50_000),
        {"n_train": PAPER_T, "seed": (0, 1, 2, 3)},
    ),
}

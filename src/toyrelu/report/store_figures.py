"""What ``toyrelu figures`` draws: the m = 2 figures of every finished run in a store, and the
settings those figures pool.

The figures put T on the x axis, average over seeds (and keep one restart per dataset), split
by m and by the loss reduction (one line style per procedure, docs/experiment.md section 9; the
geometry and dimensionality figures draw one procedure and name it), so runs that differ in any
other setting land in one curve. ``pooled`` names those settings, for the user to hear about.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toyrelu.analysis.tables import ok_runs
from toyrelu.core.config import field_names
from toyrelu.experiments import double_descent
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.store import Store

if TYPE_CHECKING:
    import pandas as pd

# Settings the figures tell apart (T on x, m as panels or curves, the loss reduction as line
# styles) or average over (seed, restart); snapshots change what is stored, not the trained
# numbers.
DRAWN = ("n_train", "seed", "n_hidden", "loss_reduction", "restart", "snapshot_every")


def write(store: Store, out: Path) -> tuple[list[str], list[str]]:
    """Draw every figure ``store`` supports into ``out`` (PNG + SVG twins), the geometry figure
    at the quick preset's T values; returns the PNG names and the ``pooled`` settings.

    Raises StoreError when the store holds no finished run."""
    names, _ = double_descent.write_figures(store, out, PRESETS["quick"].geometry_T)
    return names, pooled(ok_runs(store))


def pooled(runs: pd.DataFrame) -> list[str]:
    """The config fields, in declaration order, that vary among ``runs`` although the figures
    draw them as one (missing values count as a value)."""
    return [f for f in field_names()
            if f not in DRAWN and f in runs and runs[f].nunique(dropna=False) > 1]

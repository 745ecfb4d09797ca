"""A store's runs as one table for ``toyrelu export`` (CSV or JSON), and one run's arrays as .npz.

The table has one row per stored run, the columns of ``COLUMNS`` first (the config fields a
reader filters on, the results, then ``kept``: the run the analysis keeps among the restarts of
a dataset, ``analysis.mark_kept``), then every other config field and result in the store's
order. Floats are written so that they read back exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, TextIO

import numpy as np

from toyrelu.analysis.tables import mark_kept
from toyrelu.runs.outputs import atomic
from toyrelu.runs.store import Store

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = [
    "run_id", "status", "kept", "n_features", "n_hidden", "sparsity", "n_train", "seed",
    "restart", "steps", "lr", "weight_decay", "train_loss", "test_loss", "test_loss_median",
    "test_loss_p90", "test_share_above_2", "W_norm", "b_norm", "wall_seconds",
]
FORMATS = ("csv", "json")


def runs_table(store: Store) -> pd.DataFrame:
    """Every run of ``store``, one row each, with ``kept`` marked and ``COLUMNS`` first (a
    column the store lacks is there, empty)."""
    runs = mark_kept(store.runs())
    return runs.reindex(columns=COLUMNS + [c for c in runs if c not in COLUMNS])


def write_table(table: pd.DataFrame, target: str | Path | TextIO | IO[str],
                format: Literal["csv", "json"] = "csv") -> None:
    """``table`` as CSV (repr precision) or JSON records (15 significant digits, so small
    values such as eps = 1e-12 survive) to an open text stream, or to a path whole or not at
    all (``runs.outputs.atomic``)."""
    if format not in FORMATS:
        raise ValueError(f"format: {format!r} must be one of {', '.join(FORMATS)}")
    if isinstance(target, (str, Path)):
        with atomic(target, newline="") as f:
            write_table(table, f, format)
    elif format == "csv":
        table.to_csv(target, index=False)
    else:
        table.to_json(target, orient="records", indent=1, double_precision=15)


def write_arrays(store: Store, run_id: str, path: str | Path) -> list[str]:
    """Every array stored with run ``run_id`` into one .npz at ``path``, named exactly as given
    (``np.savez`` on a name would add ".npz"); returns the array names."""
    arrays = store.arrays(run_id)
    with atomic(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return list(arrays)

"""``report.export``: the runs table of ``toyrelu export`` (its leading columns, the kept restart)
and its CSV / JSON / .npz writers, from hand-made stores (no training)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import trained_arrays
from toyrelu.core.config import RunConfig
from toyrelu.report import export
from toyrelu.runs.store import Store

BASE = RunConfig(n_features=20, n_train=3, steps=50, n_test=200)


def put(store: Store, config: RunConfig, train_loss: float | None, **arrays: np.ndarray) -> None:
    status = "failed" if train_loss is None else "ok"
    store.put(config.run_id, config.to_dict(),
              {"status": status, "error": "diverged" if train_loss is None else None,
               "train_loss": train_loss, "test_loss": 1.0, "W_norm": 1.0, "b_norm": 0.5,
               "wall_seconds": 0.1}, {} if train_loss is None else trained_arrays(config, **arrays))


@pytest.fixture
def store(tmp_path: Path):
    # Restarts 0-2 of one dataset (restart 1 has the lowest training loss), a run of another
    # dataset, and a failed run.
    with Store(tmp_path / "runs.sqlite") as store:
        for restart, loss in enumerate((0.3, 0.1, 0.2)):
            put(store, BASE.replace(restart=restart), loss)
        put(store, BASE.replace(n_train=5), 0.25, W=np.arange(40.0).reshape(2, 20))
        put(store, BASE.replace(n_train=7), None)
        yield store


def test_runs_table_puts_the_documented_columns_first(store: Store) -> None:
    table = export.runs_table(store)
    assert list(table.columns[: len(export.COLUMNS)]) == export.COLUMNS
    # Then every other stored column once, in the store's order.
    rest = [c for c in store.runs().columns if c not in export.COLUMNS]
    assert list(table.columns[len(export.COLUMNS):]) == rest
    assert len(table) == 5
    # Columns no run has (these runs have no median test loss) are there, empty.
    assert table["test_loss_median"].isna().all()


def test_runs_table_marks_the_kept_restart_of_each_dataset(store: Store) -> None:
    table = export.runs_table(store).set_index(["n_train", "restart"])["kept"]
    # The lowest training loss among the restarts; a lone run if it finished; never a failed one.
    assert table.to_dict() == {(3, 0): False, (3, 1): True, (3, 2): False, (5, 0): True,
                               (7, 0): False}


def test_csv_reads_back_exactly(store: Store, tmp_path: Path) -> None:
    table = export.runs_table(store)
    export.write_table(table, tmp_path / "runs.csv", "csv")
    back = pd.read_csv(tmp_path / "runs.csv")
    assert list(back.columns) == list(table.columns)
    np.testing.assert_array_equal(back["train_loss"], table["train_loss"].astype(float))


def test_json_keeps_small_values(store: Store) -> None:
    table = export.runs_table(store)
    table.loc[0, "train_loss"] = 3e-12
    stream = io.StringIO()
    export.write_table(table, stream, "json")
    records = json.loads(stream.getvalue())
    assert [list(r)[: len(export.COLUMNS)] for r in records] == [export.COLUMNS] * 5
    assert records[0]["train_loss"] == 3e-12 and records[0]["eps"] == 1e-8
    assert records[4]["status"] == "failed" and records[4]["train_loss"] is None


def test_an_unknown_format_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="^format: 'xml' must be one of csv, json$"):
        export.write_table(export.runs_table(store), io.StringIO(), "xml")  # type: ignore[arg-type]


def test_arrays_go_to_the_file_named(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "W_run"  # no .npz suffix: the name is kept as given
    run_id = BASE.replace(n_train=5).run_id
    assert export.write_arrays(store, run_id, target) == [
        "W", "b", "H", "X_indptr", "X_indices", "X_data"]
    with np.load(target) as npz:
        np.testing.assert_array_equal(npz["W"], np.arange(40.0).reshape(2, 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["W_run", "runs.sqlite"]

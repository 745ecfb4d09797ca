"""Tests for the SQLite results store: round trips, replacement, the runs table, refusal of
foreign files (left byte-for-byte unchanged) and survival of a writer killed mid-sweep."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from toyrelu.runs.store import Store, StoreError

SRC = Path(__file__).parents[1] / "src"


def assert_same_array(actual: np.ndarray, expected: np.ndarray) -> None:
    """Exact round trip: same dtype, shape and values (NaNs compare equal)."""
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def check_one_line(excinfo: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(excinfo.value)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "runs.sqlite") as s:
        yield s


def test_round_trip_config_result_and_arrays(store: Store) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "W": rng.standard_normal((5, 20)).astype(np.float32),
        "b": rng.standard_normal(20),
        "counts": np.arange(12, dtype=np.int32).reshape(3, 4),
        "steps": np.array([0, 2**40, -7], dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "scalar": np.array(2.5),
        "mask": np.array([True, False]),
        "nonfinite": np.array([np.nan, np.inf, -np.inf]),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2))),
    }
    config = {"n_features": 10000, "lr": 1e-3, "dtype": "float32", "warmup": True, "seed": None}
    store.put("a", config, {"status": "ok", "error": None, "train_loss": 0.25}, arrays)

    assert store.config("a") == config
    assert store.status("a") == "ok"
    loaded = store.arrays("a")
    assert list(loaded) == list(arrays)
    for name, expected in arrays.items():
        assert_same_array(loaded[name], expected)


def test_run_without_arrays_round_trips_to_empty_dict(store: Store) -> None:
    store.put("a", {}, {"status": "failed", "error": "diverged"}, {})
    assert store.arrays("a") == {}
    assert store.config("a") == {}


def test_put_replaces_row_and_arrays_keeping_position(store: Store) -> None:
    first_arrays = {"W": np.ones(3), "b": np.ones(2)}
    store.put("a", {"x": 1}, {"status": "failed", "error": "boom"}, first_arrays)
    store.put("b", {"x": 2}, {"status": "ok"}, {})
    store.put("a", {"x": 3}, {"status": "ok", "train_loss": 0.5}, {"W": np.zeros((2, 2))})

    assert len(store) == 2
    assert store.config("a") == {"x": 3}
    assert store.status("a") == "ok"
    loaded = store.arrays("a")
    assert list(loaded) == ["W"]
    assert_same_array(loaded["W"], np.zeros((2, 2)))
    frame = store.runs()
    assert list(frame["run_id"]) == ["a", "b"]
    assert frame["error"].isna().all()


def test_runs_columns_order_and_nan_metrics(store: Store) -> None:
    r1 = {"status": "ok", "train_loss": 0.1, "test_loss": math.nan}
    r2 = {"status": "failed", "error": "nan loss", "wall_seconds": 1.5, "train_loss": math.inf}
    store.put("r1", {"n": 5, "T": 3}, r1, {})
    store.put("r2", {"n": 5, "T": 6, "lr": 0.01}, r2, {})
    store.put("r0", {"n": 7, "T": 1}, {"status": "ok", "train_loss": np.float32(0.5)}, {})

    frame = store.runs()
    assert list(frame.columns) == [
        "run_id", "status", "error", "n", "T", "lr", "train_loss", "test_loss", "wall_seconds",
    ]
    assert list(frame["run_id"]) == ["r1", "r2", "r0"]
    assert list(frame["status"]) == ["ok", "failed", "ok"]
    assert frame["error"].isna().tolist() == [True, False, True]
    assert frame.loc[1, "error"] == "nan loss"
    assert list(frame["T"]) == [3, 6, 1]
    assert frame["train_loss"].tolist() == [0.1, math.inf, 0.5]
    assert math.isnan(frame.loc[0, "test_loss"])  # stored NaN
    assert math.isnan(frame.loc[2, "test_loss"])  # key absent from that run
    assert math.isnan(frame.loc[0, "lr"])


def test_empty_store_runs_has_base_columns(store: Store) -> None:
    frame = store.runs()
    assert len(frame) == 0
    assert list(frame.columns) == ["run_id", "status", "error"]
    assert len(store) == 0
    assert store.finished_ids() == set()


def test_finished_ids_and_status(store: Store) -> None:
    store.put("ok", {}, {"status": "ok"}, {})
    store.put("failed", {}, {"status": "failed", "error": "x"}, {})
    store.put("running", {}, {"status": "running"}, {})
    assert store.finished_ids() == {"ok", "failed"}
    assert store.status("running") == "running"
    assert store.status("absent") is None


def test_missing_run_raises(store: Store) -> None:
    for read in (store.config, store.arrays):
        with pytest.raises(StoreError, match=r"^store: no run nope in .*runs\.sqlite$") as excinfo:
            read("nope")
        check_one_line(excinfo)


def test_data_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "runs.sqlite"
    with Store(path) as s:
        s.put("a", {"x": 1}, {"status": "ok"}, {"W": np.eye(2, dtype=np.float32)})
    with Store(path, create=False) as s:
        assert len(s) == 1
        assert_same_array(s.arrays("a")["W"], np.eye(2, dtype=np.float32))


@pytest.mark.parametrize(
    ("run_id", "config", "result", "arrays", "match"),
    [
        ("", {}, {"status": "ok"}, {}, "run_id must be a non-empty string"),
        ("a", {}, {}, {}, "result needs a str 'status'"),
        ("a", {}, {"status": "failed", "error": 3}, {}, "str or None 'error'"),
        ("a", {"f": object()}, {"status": "ok"}, {}, "run a cannot be stored .*not JSON"),
        ("a", {"status": 1}, {"status": "ok"}, {}, "clash with result columns"),
        ("a", {"loss": 1}, {"status": "ok", "loss": 2.0}, {}, "clash with result columns"),
        ("a", {}, {"status": "ok"}, {"o": np.array([None])}, "cannot be stored .*bject array"),
    ],
)
def test_invalid_put_raises_and_stores_nothing(
    store: Store, run_id, config, result, arrays, match
) -> None:
    with pytest.raises(StoreError, match=match) as excinfo:
        store.put(run_id, config, result, arrays)
    check_one_line(excinfo)
    assert len(store) == 0


def test_closed_store_raises(tmp_path: Path) -> None:
    s = Store(tmp_path / "runs.sqlite")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="is closed"):
        len(s)


def test_directory_path_raises(tmp_path: Path) -> None:
    match = r"^store: .* is a directory; expected a SQLite file$"
    with pytest.raises(StoreError, match=match) as excinfo:
        Store(tmp_path)
    check_one_line(excinfo)


def test_missing_file_without_create_raises(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite"
    with pytest.raises(StoreError, match=r"^store: .*absent\.sqlite does not exist$") as excinfo:
        Store(path, create=False)
    check_one_line(excinfo)
    assert not path.exists()


def _assert_refused_unchanged(path: Path, reason: str) -> None:
    before, listing = path.read_bytes(), sorted(path.parent.iterdir())
    match = rf"^store: .* is not a toyrelu store \(.*{reason}.*\)$"
    with pytest.raises(StoreError, match=match) as excinfo:
        Store(path)
    check_one_line(excinfo)
    assert path.read_bytes() == before
    assert sorted(path.parent.iterdir()) == listing


def test_garbage_file_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a database\n" * 50)
    _assert_refused_unchanged(path, "not a database")


def test_corrupt_sqlite_file_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    _assert_refused_unchanged(path, "")


def test_unrelated_sqlite_file_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.close()
    _assert_refused_unchanged(path, "found tables customers")


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    with Store(path) as s:
        s.put("a", {}, {"status": "ok"}, {})
    with Store(path, create=False) as s:
        assert s.finished_ids() == {"a"}


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from toyrelu.runs.store import Store

    with Store(sys.argv[2]) as store:
        i = 0
        while True:
            W = np.random.default_rng(i).standard_normal((128, 256))
            store.put(f"run-{i}", {"i": i}, {"status": "ok", "loss": float(i)},
                      {"W": W, "b": np.full(i, i, dtype=np.int32)})
            i += 1
    """
)


def test_writer_killed_mid_sweep_leaves_committed_runs_intact(tmp_path: Path) -> None:
    path = tmp_path / "sweep.sqlite"
    Store(path).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(SRC), str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # A concurrent reader polls the file while the writer commits.
        deadline = time.monotonic() + 20
        with Store(path, create=False) as reader:
            while len(reader) < 5:
                assert writer.poll() is None, writer.stderr.read().decode()
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.005)
    finally:
        writer.kill()
        writer.wait()
        writer.stderr.close()

    with Store(path) as store:
        frame = store.runs()
        n = len(frame)
        assert n >= 5
        assert list(frame["run_id"]) == [f"run-{i}" for i in range(n)]
        assert store.finished_ids() == set(frame["run_id"])
        for i in range(n):
            assert store.config(f"run-{i}") == {"i": i}
            loaded = store.arrays(f"run-{i}")
            assert_same_array(loaded["W"], np.random.default_rng(i).standard_normal((128, 256)))
            assert_same_array(loaded["b"], np.full(i, i, dtype=np.int32))

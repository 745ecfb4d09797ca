"""Tests for the SQLite results store: round trips, replacement, the runs table, refusal of
foreign files (left byte-for-byte unchanged) and survival of a writer killed mid-sweep."""

from __future__ import annotations

import functools
import math
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from toyrelu.runs import store_leases, store_schema
from toyrelu.runs.store import Store as RunStore
from toyrelu.runs.store import StoreError

# The store's own tests put plain dicts, so they read them without the rules of a toyrelu run
# (tests/test_store_damage.py tests those).
Store = functools.partial(RunStore, rules=None)

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


def _assert_refused_unchanged(path: Path, reason: str, create: bool = True) -> None:
    before, listing = path.read_bytes(), sorted(path.parent.iterdir())
    match = rf"^store: .* is not a toyrelu store \(.*{reason}.*\)$"
    with pytest.raises(StoreError, match=match) as excinfo:
        Store(path, create=create)
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


# ------------------------------------------------------------------------- statuses and schema


def test_error_and_lost_runs_are_not_finished_and_ids_select_by_status(store: Store) -> None:
    store.put("ok", {}, {"status": "ok"}, {})
    store.put("failed", {}, {"status": "failed", "error": "diverged: loss is nan"}, {})
    store.put("error", {}, {"status": "error", "error": "MemoryError: "}, {})
    store.put("lost", {}, {"status": "lost", "error": "lost: SLURM job 7 (killed)"}, {})
    assert store.finished_ids() == {"ok", "failed"}
    assert store.ids("error") == {"error"}
    assert store.ids("lost") == {"lost"}
    assert store.ids("ok", "error") == {"ok", "error"}
    assert store.ids() == set()


def v1_store_without_leases(path: Path) -> Path:
    """A store as toyrelu wrote it before leases: schema version 1, three tables, one run."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE runs (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE,"
                     " status TEXT NOT NULL, error TEXT, config TEXT NOT NULL,"
                     " result TEXT NOT NULL)")
        conn.execute("CREATE TABLE arrays (run_id TEXT NOT NULL, name TEXT NOT NULL,"
                     " npy BLOB NOT NULL, UNIQUE (run_id, name))")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO runs (run_id, status, error, config, result)"
                     " VALUES ('a', 'ok', NULL, '{\"x\": 1}', '{\"loss\": 0.5}')")
    conn.close()
    return path


def test_a_store_written_before_leases_opens_to_read_unchanged_and_gains_them_to_write(
    tmp_path: Path,
) -> None:
    path = v1_store_without_leases(tmp_path / "old.sqlite")
    before = path.read_bytes()
    with Store(path, create=False) as s:
        assert s.finished_ids() == {"a"} and s.config("a") == {"x": 1}
    assert path.read_bytes() == before
    with Store(path) as s:
        assert s.claim("b")
        s.put("b", {"x": 2}, {"status": "ok"}, {})
    conn = sqlite3.connect(path)
    assert [r[1] for r in conn.execute("PRAGMA table_info(leases)")] == [
        "run_id", "owner", "host", "pid", "pid_start", "heartbeat"]
    assert conn.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
    conn.close()


@pytest.mark.parametrize(("table", "column", "reason"), [
    ("runs", "result", "table runs has no column result"),
    ("arrays", "npy", "table arrays has no column npy"),
    ("meta", "value", "table meta has no column value"),
])
def test_a_store_missing_a_column_is_refused_at_open_naming_it(
    tmp_path: Path, table: str, column: str, reason: str
) -> None:
    path = tmp_path / "runs.sqlite"
    with Store(path) as s:
        s.put("a", {"x": 1}, {"status": "ok"}, {"W": np.ones(2)})
    conn = sqlite3.connect(path)
    conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.close()
    for create in (True, False):
        _assert_refused_unchanged(path, reason, create=create)


def test_a_column_of_another_type_is_refused(tmp_path: Path) -> None:
    path = v1_store_without_leases(tmp_path / "runs.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE leases (run_id TEXT PRIMARY KEY, owner TEXT, host TEXT,"
                 " pid TEXT, pid_start TEXT, heartbeat REAL)")
    conn.close()
    _assert_refused_unchanged(path, r"column leases\.pid is TEXT, expected INTEGER")


def test_a_new_store_on_a_full_disk_says_so(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = sqlite3.connect

    def full_disk(*failing: str) -> None:
        """Every later connection fails the statements that start with ``failing`` as SQLite
        does when the disk is full."""
        class FullDisk(sqlite3.Connection):
            def execute(self, sql, *args):
                if sql.startswith(failing):
                    raise sqlite3.OperationalError("database or disk is full")
                return super().execute(sql, *args)

        monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: real_connect(
            *args, factory=FullDisk, **kwargs))

    path = tmp_path / "new" / "folders" / "runs.sqlite"
    full_disk("CREATE")
    with pytest.raises(StoreError) as excinfo:
        Store(path)
    assert str(excinfo.value) == (f"store: {path} cannot be written: the disk is full "
                                  "(database or disk is full)")
    assert list(tmp_path.iterdir()) == []  # neither the empty file nor the folders it made
    monkeypatch.undo()
    Store(path).close()
    empty = path.with_name("empty.sqlite")
    empty.touch()
    full_disk("CREATE")
    with pytest.raises(StoreError):
        Store(empty)
    assert empty.exists()  # a file that was there is kept, even an empty one
    monkeypatch.undo()
    full_disk("INSERT INTO runs")
    with Store(path) as s, pytest.raises(StoreError) as excinfo:
        s.put("a", {}, {"status": "ok"}, {})
    assert str(excinfo.value) == (f"store: {path} cannot be written: the disk is full "
                                  "(database or disk is full)")


def read_only(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the store at ``path`` read-only: its mode 0444, or for root (whom modes do not stop)
    every connection opened read-only, as SQLite opens a file it may not write."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda target, **kwargs: real_connect(
        f"file:{target}?mode=ro", uri=True, **kwargs))


def test_a_read_only_store_is_refused_for_writing_at_open_and_read_as_usual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.sqlite"
    with Store(path) as s:
        s.put("a", {"x": 1}, {"status": "ok"}, {})
    before = path.read_bytes()
    read_only(path, monkeypatch)
    with pytest.raises(StoreError, match=rf"^store: {path} is read-only.*; a sweep writes each "
                                         "run to it$") as excinfo:
        Store(path)
    check_one_line(excinfo)
    with Store(path, create=False) as s:
        assert s.finished_ids() == {"a"}
    assert path.read_bytes() == before


def test_a_store_in_a_read_only_folder_is_refused_for_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shelf"
    path = folder / "runs.sqlite"
    with Store(path) as s:
        s.put("a", {}, {"status": "ok"}, {})
    if os.geteuid() == 0:  # root writes anywhere: let os.access answer as for another user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: (
            False if Path(p) == folder and mode == os.W_OK else real_access(p, mode)))
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match=r"is in a read-only folder; SQLite writes a "
                                             "journal beside the store") as excinfo:
            Store(path)
        check_one_line(excinfo)
        with Store(path, create=False) as s:
            assert len(s) == 1
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(("name", "text", "said"), [
    ("SQLITE_FULL", "database or disk is full", "cannot be written: the disk is full"),
    ("SQLITE_READONLY", "attempt to write a readonly database", "is read-only"),
    # A writable file in a read-only folder: SQLite cannot create the journal beside it.
    ("SQLITE_READONLY_DIRECTORY", "attempt to write a readonly database",
     "SQLite writes a journal beside the store, so its folder must be writable"),
    ("SQLITE_BUSY", "database is locked", "is locked by another process"),
    ("SQLITE_CORRUPT", "database disk image is malformed", None),
])
def test_what_a_failed_write_means(name: str, text: str, said: str | None) -> None:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorname = name
    found = store_schema.write_problem(exc)
    assert found == said if said is None else said in found and text in found


# ------------------------------------------------------------------------------------- leases


def lease_rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT run_id, host, pid FROM leases ORDER BY run_id").fetchall()
    conn.close()
    return rows


def test_claim_leases_a_run_until_put_or_release(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with Store(path) as first, Store(path) as second:
        assert first.claim("a") and first.claim("b")
        assert first.claim("a")  # the owner may claim again
        assert lease_rows(path) == [("a", socket.gethostname(), os.getpid()),
                                    ("b", socket.gethostname(), os.getpid())]
        # A live owner (this very process) holds both.
        assert not second.claim("a") and not second.claim("b")
        first.put("a", {}, {"status": "ok"}, {})
        assert [r[0] for r in lease_rows(path)] == ["b"]
        assert not second.claim("a")  # finished
        first.release()
        assert lease_rows(path) == []
        assert second.claim("b")
    assert lease_rows(path) == []  # closing released the second's lease


@pytest.mark.parametrize(("status", "retry_failed", "claimed"), [
    ("ok", False, False), ("failed", False, False), ("error", False, True),
    ("lost", False, True), ("ok", True, False), ("failed", True, True), ("lost", True, True),
])
def test_claim_skips_finished_runs(store: Store, status: str, retry_failed: bool,
                                   claimed: bool) -> None:
    store.put("a", {}, {"status": status}, {})
    assert store.claim("a", retry_failed=retry_failed) is claimed


def put_lease(path: Path, run_id: str, host: str, pid: int, pid_start: str,
              heartbeat: float) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO leases VALUES (?, 'other', ?, ?, ?, ?)",
                     (run_id, host, pid, pid_start, heartbeat))
    conn.close()


def test_a_lease_whose_pid_was_reused_is_taken_over(store: Store) -> None:
    start = store_leases.process_start(os.getpid())
    assert start  # this process runs, on Linux with its start time
    here = socket.gethostname()
    put_lease(store.path, "alive", here, os.getpid(), start, 0.0)
    # The pid runs, but started at another time: it is another process now.
    put_lease(store.path, "reused", here, os.getpid(), str(int(start) - 1), time.time())
    assert not store.claim("alive")
    assert store.claim("reused")


def test_a_lease_of_another_host_expires_without_heartbeats(store: Store) -> None:
    now = time.time()
    put_lease(store.path, "fresh", "elsewhere", 1, "1", now - 10)
    put_lease(store.path, "stale", "elsewhere", 1, "1", now - store_leases.LEASE_TIMEOUT_S - 1)
    assert not store.claim("fresh")
    assert store.claim("stale")


def test_heartbeat_renews_the_owners_leases_at_most_every_interval(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def beats() -> dict[str, float]:
        conn = sqlite3.connect(store.path)
        with conn:
            found = dict(conn.execute("SELECT run_id, heartbeat FROM leases").fetchall())
            conn.execute("UPDATE leases SET heartbeat = 0")
        conn.close()
        return found

    start = time.time()
    assert store.claim("a") and store.claim("b")
    beats()
    store.heartbeat()
    assert all(beat >= start for beat in beats().values())
    assert store.claim("c")  # a claim is no heartbeat of the other leases
    store.heartbeat()  # within HEARTBEAT_S of the last one
    assert beats() == {"a": 0.0, "b": 0.0, "c": pytest.approx(time.time(), abs=60)}
    monkeypatch.setattr(store_leases, "HEARTBEAT_S", 0.0)
    store.heartbeat()
    assert all(beat >= start for beat in beats().values())


CLAIMER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from toyrelu.runs.store import Store

    store = Store(sys.argv[2])
    assert store.claim("a")
    print("claimed", flush=True)
    time.sleep(600)
    """
)


def test_the_lease_of_a_killed_owner_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    Store(path).close()
    owner = subprocess.Popen([sys.executable, "-c", CLAIMER, str(SRC), str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline() == "claimed\n"
        with Store(path) as store:
            assert not store.claim("a")
            owner.kill()
            owner.wait()
            assert lease_rows(path) == [("a", socket.gethostname(), owner.pid)]
            assert store.claim("a")
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()


def test_a_reader_of_an_old_store_cannot_claim(tmp_path: Path) -> None:
    path = v1_store_without_leases(tmp_path / "old.sqlite")
    with Store(path, create=False) as s, pytest.raises(StoreError, match="opened to read"):
        s.claim("b")


def test_a_failed_creation_removes_only_an_empty_store_and_empty_folders(tmp_path: Path) -> None:
    folder = tmp_path / "made"
    folder.mkdir()
    empty, journal = folder / "empty.sqlite", folder / "empty.sqlite-journal"
    empty.touch()
    journal.write_bytes(b"j")
    store_schema.remove_created([empty, folder])
    assert list(tmp_path.iterdir()) == []

    folder.mkdir()
    written, journal = folder / "runs.sqlite", folder / "runs.sqlite-journal"
    written.write_bytes(b"pages")
    journal.write_bytes(b"a journal to play back")
    store_schema.remove_created([written, folder])
    assert sorted(folder.iterdir()) == [written, journal]  # kept whole, journal and all

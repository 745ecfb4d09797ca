"""Results store: one SQLite file holding one row per training run of a sweep.

A run is keyed by its ``run_id`` and holds its config (a JSON dict), its result (a JSON dict with
``status``, ``error`` and metrics) and any number of named numpy arrays (``W``, ``b``, ...), each
saved as an ``.npy`` blob so that dtype, shape and values round-trip exactly.

Every ``put`` is one committed transaction (SQLite's rollback journal, ``synchronous=FULL``), so a
writer killed at any moment leaves every previously committed run intact. One process writes at a
time; readers may open the same file concurrently and wait on a busy timeout.

The store knows nothing of the model or the training engine: it stores plain dicts and arrays.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = "1"
FINISHED = ("ok", "failed")
_RESERVED = ("run_id", "status", "error")
_TABLES = ("meta", "runs", "arrays")
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # seq keeps insertion order; a replaced run keeps its original position.
    "CREATE TABLE runs (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE,"
    " status TEXT NOT NULL, error TEXT, config TEXT NOT NULL, result TEXT NOT NULL)",
    "CREATE TABLE arrays (run_id TEXT NOT NULL, name TEXT NOT NULL, npy BLOB NOT NULL,"
    " UNIQUE (run_id, name))",
)
_BUSY_TIMEOUT_S = 30.0


class StoreError(Exception):
    """One-line message naming the store path and the problem."""


class Store:
    """A sweep's results in one SQLite file at ``path``.

    A new path or an empty (0-byte) file becomes a new store, creating missing parent
    directories; ``create=False`` (a reader) refuses a missing or empty file. A file that is not
    a toyrelu store (not SQLite, corrupt, or SQLite with other tables) raises ``StoreError`` and
    is never modified. Use as a context manager, or call ``close``.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise self._error("is a directory; expected a SQLite file")
        if not self.path.exists():
            if not create:
                raise self._error("does not exist")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._error(f"cannot be created ({exc.strerror})") from None
        try:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(f"cannot be opened ({exc})") from None
        try:
            # Only reads until the file is known to be ours (or empty), so a foreign file is
            # left byte-for-byte unchanged.
            tables = _tables(conn)
            if not tables:
                if not create:
                    raise self._error("is empty; expected a toyrelu store")
                with _transaction(conn):
                    # Another process may have created the schema while this one waited.
                    tables = _tables(conn)
                    if not tables:
                        for statement in _SCHEMA:
                            conn.execute(statement)
                        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                     (SCHEMA_VERSION,))
                        tables = set(_TABLES)
            reason = _schema_problem(conn, tables)
            if reason is not None:
                raise self._error(f"is not a toyrelu store ({reason})")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(f"is not a toyrelu store ({exc})") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def put(
        self, run_id: str, config: dict, result: dict, arrays: dict[str, np.ndarray]
    ) -> None:
        """Store one run in a single committed transaction, replacing any run with this id.

        ``config`` is a JSON-serialisable dict; ``result`` has a string ``status`` (``'ok'`` or
        ``'failed'`` for a finished run), an optional ``error`` (str or None) and any scalar
        metrics, non-finite floats included. Config keys may not be ``run_id``, ``status`` or
        ``error``, and metric names may not repeat config keys, so that ``runs()`` has one
        unambiguous column per name. ``arrays`` maps names to numpy arrays of any non-object
        dtype and shape.
        """
        status, error = result.get("status"), result.get("error")
        metrics = {k: v for k, v in result.items() if k not in ("status", "error")}
        if not isinstance(run_id, str) or not run_id:
            raise self._error(f"run_id must be a non-empty string, got {run_id!r}")
        if not isinstance(status, str) or not (error is None or isinstance(error, str)):
            raise self._error(f"run {run_id}: result needs a str 'status', a str or None 'error'")
        clash = [k for k in config if k in _RESERVED or k in metrics]
        if clash:
            raise self._error(f"run {run_id}: config keys {clash} clash with result columns")
        try:
            row = (run_id, status, error, _to_json(config), _to_json(metrics))
            blobs = [(run_id, name, _to_npy(a)) for name, a in arrays.items()]
        except (TypeError, ValueError) as exc:
            raise self._error(f"run {run_id} cannot be stored ({exc})") from None
        with self._session() as db, _transaction(db):
            db.execute(
                "INSERT INTO runs (run_id, status, error, config, result) VALUES (?,?,?,?,?)"
                " ON CONFLICT (run_id) DO UPDATE SET status = excluded.status,"
                " error = excluded.error, config = excluded.config, result = excluded.result",
                row,
            )
            db.execute("DELETE FROM arrays WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO arrays (run_id, name, npy) VALUES (?,?,?)", blobs)

    def status(self, run_id: str) -> str | None:
        """The run's status, or None when the store has no such run."""
        with self._session() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def finished_ids(self) -> set[str]:
        """Ids of the runs whose status is ``'ok'`` or ``'failed'`` (a resumed sweep skips them)."""
        with self._session() as db:
            rows = db.execute("SELECT run_id FROM runs WHERE status IN (?, ?)", FINISHED)
            return {run_id for (run_id,) in rows}

    def runs(self) -> pd.DataFrame:
        """One row per run in insertion order.

        Columns: ``run_id``, ``status``, ``error``, then every config key, then every result
        metric, each in first-seen order. A key a run lacks, or a None value, is missing as pandas
        sees it (``isna``); stored NaNs stay NaN. An empty store gives an empty frame with the
        first three columns.
        """
        import pandas as pd

        with self._session() as db:
            rows = db.execute(
                "SELECT run_id, status, error, config, result FROM runs ORDER BY seq"
            ).fetchall()
        records, config_keys, metric_keys = [], {}, {}
        for run_id, status, error, config_json, result_json in rows:
            config, metrics = json.loads(config_json), json.loads(result_json)
            config_keys.update(dict.fromkeys(config))
            metric_keys.update(dict.fromkeys(metrics))
            base = {"run_id": run_id, "status": status, "error": error}
            records.append({**base, **config, **metrics})
        columns = [*_RESERVED, *config_keys, *(k for k in metric_keys if k not in config_keys)]
        return pd.DataFrame(records, columns=columns)

    def config(self, run_id: str) -> dict:
        """The config dict stored with ``run_id``; StoreError if there is no such run."""
        with self._session() as db:
            row = db.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._missing(run_id)
        return json.loads(row[0])

    def arrays(self, run_id: str) -> dict[str, np.ndarray]:
        """The arrays stored with ``run_id``, in ``put`` order; StoreError if the run is absent."""
        with self._session() as db:
            # One statement, so the run and its arrays come from the same committed snapshot.
            rows = db.execute(
                "SELECT a.name, a.npy FROM runs r LEFT JOIN arrays a ON a.run_id = r.run_id"
                " WHERE r.run_id = ? ORDER BY a.rowid",
                (run_id,),
            ).fetchall()
        if not rows:
            raise self._missing(run_id)
        return {
            name: np.load(io.BytesIO(blob), allow_pickle=False)
            for name, blob in rows
            if name is not None
        }

    def __len__(self) -> int:
        with self._session() as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def close(self) -> None:
        """Close the connection; further calls raise StoreError. Closing twice is harmless."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """The open connection, with SQLite errors turned into one-line StoreErrors."""
        if self._conn is None:
            raise self._error("is closed")
        try:
            yield self._conn
        except sqlite3.Error as exc:
            raise self._error(f"database error ({exc})") from exc

    def _error(self, problem: str) -> StoreError:
        return StoreError(_one_line(f"store: {self.path} {problem}"))

    def _missing(self, run_id: str) -> StoreError:
        return StoreError(_one_line(f"store: no run {run_id} in {self.path}"))


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, committed on success and rolled back on any exception."""
    # IMMEDIATE takes the write lock up front, so a concurrent writer waits at BEGIN rather
    # than failing mid-transaction.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {name for (name,) in rows}


def _schema_problem(conn: sqlite3.Connection, tables: set[str]) -> str | None:
    """Why a SQLite file with these tables is not a toyrelu store, or None if it is one."""
    if not set(_TABLES) <= tables:
        found = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        return f"found tables {found}; expected {', '.join(_TABLES)}"
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        return f"schema version {None if row is None else row[0]}, expected {SCHEMA_VERSION}"
    return None


def _to_json(value: dict) -> str:
    # allow_nan writes NaN/Infinity tokens, which json.loads reads back as floats.
    return json.dumps(value, allow_nan=True, default=_json_scalar)


def _json_scalar(value: Any) -> Any:
    # numpy scalars (np.float32 losses, np.int64 counts) are not JSON types; store their value.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _one_line(message: object) -> str:
    return str(message).replace("\r", " ").replace("\n", " ")

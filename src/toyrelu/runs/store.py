"""Results store: one SQLite file holding one row per training run of a sweep.

A run is keyed by its ``run_id`` and holds its config (a JSON dict), its result (a JSON dict with
``status``, ``error`` and metrics) and any number of named numpy arrays (``W``, ``b``, ...), each
saved as an ``.npy`` blob so that dtype, shape and values round-trip exactly.

A run's status is ``ok`` (trained), ``failed`` (the config itself fails: it diverged, or training
raised), ``error`` (the machine failed it: out of memory, a disk error, a killed worker) or
``lost`` (a cluster lost it: its Ray task ran out of retries or found no node, its SLURM job
failed; the reason says which). ``ok`` and ``failed`` runs are finished, since the same config
would end the same way; a sweep trains ``error`` and ``lost`` runs again. A store written before
``lost`` existed holds such runs as ``error`` with a reason starting "lost", trained again all
the same.

Every ``put`` is one committed transaction (SQLite's rollback journal, ``synchronous=FULL``), so a
writer killed at any moment leaves every previously committed run intact. Several sweeps may
write one store at once: each claims a run before training it (``claim``, a lease in the
``leases`` table, ``runs.store_leases``), so each run is trained once. Readers may open the same
file concurrently and wait on a busy timeout.

Every opening checks the tables and their columns (``runs.store_schema``); every read of a row
or an array decodes it strictly and names a damaged run (``runs.store_check``), judged by the
rules of what a toyrelu run holds (``runs.stored``) unless the store is given other rules.

The store knows nothing of the model or the training engine: it stores plain dicts and arrays,
and its rules say what they must hold.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toyrelu.runs import store_check, store_leases, store_schema, stored
from toyrelu.runs.store_check import Damage, Damaged
from toyrelu.runs.store_schema import SCHEMA_VERSION, transaction

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FINISHED", "SCHEMA_VERSION", "Damage", "DamagedRun", "Store", "StoreError"]
FINISHED = ("ok", "failed")
_RESERVED = ("run_id", "status", "error")
_BUSY_TIMEOUT_S = 30.0


class StoreError(Exception):
    """One-line message naming the store path and the problem."""


class DamagedRun(StoreError):
    """A stored run that cannot be read back; ``run_id`` names it."""

    def __init__(self, message: str, run_id: str):
        super().__init__(message)
        self.run_id = run_id


class Store:
    """A sweep's results in one SQLite file at ``path``.

    A new path or an empty (0-byte) file becomes a new store, creating missing parent
    directories; ``create=False`` (a reader) refuses a missing or empty file. A file that is not
    a toyrelu store (not SQLite, corrupt, SQLite with other tables, a table missing a column)
    raises ``StoreError`` and is never modified.

    ``write`` (default: ``create``) opens it to write: a file or folder that cannot be written
    (read-only, or a full disk) raises ``StoreError`` here, before a sweep trains anything.
    Opening to read never writes to the file. Use as a context manager, or call ``close``.

    ``rules`` judge what every row and its arrays hold when read (default: those of a toyrelu
    run, ``runs.stored.RUNS``); a run that breaks them is damaged. ``rules=None`` reads any
    JSON object and array.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True,
                 write: bool | None = None, rules: stored.Rules | None = stored.RUNS):
        self.path = Path(path)
        self.rules = rules
        self._write = create if write is None else write
        self._conn: sqlite3.Connection | None = None
        self._owner: store_leases.Owner | None = None  # made at the first claim
        self._beat = 0.0  # time.monotonic() of the last heartbeat
        if self.path.is_dir():
            raise self._error("is a directory; expected a SQLite file")
        made: list[Path] = []  # what this opening creates, removed again if it fails
        if not self.path.exists():
            if not create:
                raise self._error("does not exist")
            made = [self.path, *store_schema.missing_folders(self.path.parent)]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                store_schema.remove_created(made)
                raise self._error(f"cannot be created ({exc.strerror})") from None
        try:
            self._conn = self._connect(create)
        except BaseException:
            store_schema.remove_created(made)
            raise

    def _connect(self, create: bool) -> sqlite3.Connection:
        if self._write:
            self._check_access()
        try:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(f"cannot be opened ({exc})") from None
        try:
            self._leases = self._open(conn, create)
        except sqlite3.Error as exc:
            conn.close()
            # Only a writer's failure can be the disk's: a reader writes nothing.
            why = store_schema.write_problem(exc) if self._write else None
            raise self._error(why or f"is not a toyrelu store ({exc})") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_access(self) -> None:
        # As root these pass whatever the modes; the write probe of _open then decides.
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise self._error("is read-only; a sweep writes each run to it")
        if not os.access(self.path.parent, os.W_OK):
            raise self._error("is in a read-only folder; SQLite writes a journal beside the "
                              "store, so its folder must be writable")

    def _open(self, conn: sqlite3.Connection, create: bool) -> bool:
        """Check (or create) the schema; returns whether the store has its leases table."""
        # Only reads until the file is known to be ours (or empty), so a foreign file is
        # left byte-for-byte unchanged.
        tables = store_schema.tables(conn)
        if not tables:
            if not create:
                raise self._error("is empty; expected a toyrelu store")
            store_schema.create(conn)
            tables = store_schema.tables(conn)
        reason = store_schema.problem(conn, tables)
        if reason is not None:
            raise self._error(f"is not a toyrelu store ({reason})")
        if self._write:
            if "leases" not in tables:
                store_schema.add_leases(conn)
                tables.add("leases")
            store_schema.probe_write(conn)
        conn.execute("PRAGMA synchronous = FULL")
        return "leases" in tables

    def put(
        self, run_id: str, config: dict, result: dict, arrays: dict[str, np.ndarray]
    ) -> None:
        """Store one run in a single committed transaction, replacing any run with this id, and
        drop its lease.

        ``config`` is a JSON-serialisable dict; ``result`` has a string ``status`` (``'ok'`` or
        ``'failed'`` for a finished run, ``'error'`` or ``'lost'`` for one to train again), an
        optional ``error`` (str or None) and any scalar metrics, non-finite floats included.
        Config keys may not be ``run_id``, ``status`` or ``error``, and metric names may not
        repeat config keys, so that ``runs()`` has one unambiguous column per name. ``arrays``
        maps names to numpy arrays of any non-object dtype and shape.
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
            row = (run_id, status, error, store_check.dump_object(config),
                   store_check.dump_object(metrics))
            blobs = [(run_id, name, store_check.dump_array(a)) for name, a in arrays.items()]
        except (TypeError, ValueError) as exc:
            raise self._error(f"run {run_id} cannot be stored ({exc})") from None
        with self._session() as db, transaction(db):
            db.execute(
                "INSERT INTO runs (run_id, status, error, config, result) VALUES (?,?,?,?,?)"
                " ON CONFLICT (run_id) DO UPDATE SET status = excluded.status,"
                " error = excluded.error, config = excluded.config, result = excluded.result",
                row,
            )
            db.execute("DELETE FROM arrays WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO arrays (run_id, name, npy) VALUES (?,?,?)", blobs)
            if self._leases:
                db.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))

    def status(self, run_id: str) -> str | None:
        """The run's status, or None when the store has no such run."""
        with self._session() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def finished_ids(self) -> set[str]:
        """Ids of the runs whose status is ``'ok'`` or ``'failed'`` (a resumed sweep skips them;
        it trains ``'error'`` and ``'lost'`` runs again)."""
        return self.ids(*FINISHED)

    def ids(self, *statuses: str) -> set[str]:
        """Ids of the runs with any of ``statuses``."""
        marks = ", ".join("?" * len(statuses))
        with self._session() as db:
            rows = db.execute(f"SELECT run_id FROM runs WHERE status IN ({marks})", statuses)
            return {run_id for (run_id,) in rows}

    def runs(self) -> pd.DataFrame:
        """One row per run in insertion order.

        Columns: ``run_id``, ``status``, ``error``, then every config key, then every result
        metric, each in first-seen order. A key a run lacks, or a None value, is missing as pandas
        sees it (``isna``); stored NaNs stay NaN. An empty store gives an empty frame with the
        first three columns. A damaged row raises ``DamagedRun``.
        """
        import pandas as pd

        with self._session() as db:
            rows = db.execute(
                "SELECT run_id, status, error, config, result FROM runs ORDER BY seq"
            ).fetchall()
        records, config_keys, metric_keys = [], {}, {}
        for run_id, status, error, config_json, result_json in rows:
            with self._reading(run_id):
                config, metrics = self._row(run_id, status, error, config_json, result_json)
            config_keys.update(dict.fromkeys(config))
            metric_keys.update(dict.fromkeys(metrics))
            base = {"run_id": run_id, "status": status, "error": error}
            records.append({**base, **config, **metrics})
        columns = [*_RESERVED, *config_keys, *(k for k in metric_keys if k not in config_keys)]
        return pd.DataFrame(records, columns=columns)

    def config(self, run_id: str) -> dict:
        """The config dict stored with ``run_id``; StoreError if there is no such run,
        ``DamagedRun`` if it cannot be read."""
        with self._session() as db:
            row = db.execute("SELECT status, error, config, result FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
        if row is None:
            raise self._missing(run_id)
        status, error, config_json, result_json = row
        with self._reading(run_id):
            config, _ = self._row(run_id, status, error, config_json, result_json)
            return config

    def arrays(self, run_id: str) -> dict[str, np.ndarray]:
        """The arrays stored with ``run_id``, in ``put`` order; StoreError if the run is absent,
        ``DamagedRun`` if one of them cannot be read or the run's row is damaged."""
        with self._session() as db:
            # One statement, so the run and its arrays come from the same committed snapshot.
            rows = db.execute(
                "SELECT r.status, r.error, r.config, r.result, a.name, a.npy FROM runs r"
                " LEFT JOIN arrays a ON a.run_id = r.run_id WHERE r.run_id = ? ORDER BY a.rowid",
                (run_id,),
            ).fetchall()
        if not rows:
            raise self._missing(run_id)
        status, error, config_json, result_json = rows[0][:4]
        with self._reading(run_id):
            config, _ = self._row(run_id, status, error, config_json, result_json)
            arrays = {name: store_check.load_array(blob, name)
                      for *_, name, blob in rows if name is not None}
            if self.rules is not None:
                shapes = {name: (a.shape, a.dtype) for name, a in arrays.items()}
                _raise_first(self.rules.arrays(status, config, shapes))
            return arrays

    def claim(self, run_id: str, *, retry_failed: bool = False, again: bool = False) -> bool:
        """Lease ``run_id`` to this store connection before training it: True, with a lease
        written, unless the run is finished (``ok`` or ``failed``; ``ok`` only with
        ``retry_failed``; never with ``again``, for a stored run that is damaged) or a live
        other owner leases it (``runs.store_leases``). A run stored as ``error`` or ``lost``
        is not finished, so it is claimed again.

        Two sweeps that both retry failed runs may each train one failed run again, since its
        row stays ``failed`` until one of them stores it.
        """
        if not self._leases:
            raise self._error("was opened to read; claiming a run needs Store(path, write=True)")
        if self._owner is None:
            self._owner = store_leases.Owner.here()
        done = () if again else ("ok",) if retry_failed else FINISHED
        with self._session() as db:
            return store_leases.claim(db, run_id, self._owner, done, time.time())

    def heartbeat(self) -> None:
        """Tell sweeps on other hosts that this connection's leases are alive; writes at most
        every ``store_leases.HEARTBEAT_S``, so it may be called at every step report."""
        if self._owner is None or time.monotonic() - self._beat < store_leases.HEARTBEAT_S:
            return
        self._beat = time.monotonic()
        with self._session() as db:
            store_leases.renew(db, self._owner, time.time())

    def release(self) -> None:
        """Drop this connection's leases (the runs it claimed and did not store). Never raises
        for the database: a lease left behind expires with its owner."""
        if self._owner is None or self._conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            store_leases.release(self._conn, self._owner)

    def check(self, *, drop: bool = False, ids: Collection[str] | None = None) -> list[Damage]:
        """Every damaged run (of ``ids``, when given; ``store_check.scan``: each row and array
        decoded and judged by the rules), in insertion order; with ``drop``, also deletes them
        (rows, arrays, leases) in one transaction, so a run stored again meanwhile is not
        lost."""
        with self._session() as db:
            if not drop:
                return store_check.scan(db, self.rules, ids)
            with transaction(db):
                found = store_check.scan(db, self.rules, ids)
                store_check.drop(db, [d.run_id for d in found], leases=self._leases)
            return found

    def __len__(self) -> int:
        with self._session() as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def close(self) -> None:
        """Drop this connection's leases and close it; further calls raise StoreError.
        Closing twice is harmless."""
        if self._conn is not None:
            self.release()
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
            why = store_schema.write_problem(exc) or f"database error ({exc})"
            raise self._error(why) from exc

    @contextmanager
    def _reading(self, run_id: str) -> Iterator[None]:
        """Decoding one stored run: a ``Damaged`` value becomes a ``DamagedRun`` naming it."""
        try:
            yield
        except Damaged as exc:
            raise DamagedRun(_one_line(
                f"store: {self.path} run {run_id} is damaged ({exc}); toyrelu check --store "
                f"{self.path} --drop removes it"), run_id) from None

    def _row(self, run_id: str, status: Any, error: Any, config_json: Any,
             result_json: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A row's config and metrics, decoded and judged by the rules; ``Damaged`` if not."""
        config = store_check.load_object(config_json, "config")
        metrics = store_check.load_object(result_json, "result")
        if self.rules is not None:
            _raise_first(self.rules.row(run_id, status, error, config, metrics))
        return config, metrics

    def _error(self, problem: str) -> StoreError:
        return StoreError(_one_line(f"store: {self.path} {problem}"))

    def _missing(self, run_id: str) -> StoreError:
        return StoreError(_one_line(f"store: no run {run_id} in {self.path}"))


def _raise_first(problems: list[str]) -> None:
    if problems:
        raise Damaged("; ".join(problems))


def _one_line(message: object) -> str:
    return str(message).replace("\r", " ").replace("\n", " ")

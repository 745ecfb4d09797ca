"""The store's tables: their columns, their creation (and the file's, undone when it fails),
the check every opening makes, and what a failing SQLite write means for the user.

Schema version 1 has the tables ``meta``, ``runs`` and ``arrays``; ``leases`` (which sweep trains
which run, ``runs.store_leases``) came later without a new version: a writer adds it to a store
that lacks it, and a reader needs none, so stores written before it still open, and an older
toyrelu still opens a store that has it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = "1"
# table -> its (column, declared type) pairs, which every opening checks (PRAGMA table_info).
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "meta": (("key", "TEXT"), ("value", "TEXT")),
    "runs": (("seq", "INTEGER"), ("run_id", "TEXT"), ("status", "TEXT"), ("error", "TEXT"),
             ("config", "TEXT"), ("result", "TEXT")),
    "arrays": (("run_id", "TEXT"), ("name", "TEXT"), ("npy", "BLOB")),
    "leases": (("run_id", "TEXT"), ("owner", "TEXT"), ("host", "TEXT"), ("pid", "INTEGER"),
               ("pid_start", "TEXT"), ("heartbeat", "REAL")),
}
REQUIRED = ("meta", "runs", "arrays")
_LEASES = (
    "CREATE TABLE IF NOT EXISTS leases (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    " host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT NOT NULL,"
    " heartbeat REAL NOT NULL)"
)
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # seq keeps insertion order; a replaced run keeps its original position.
    "CREATE TABLE runs (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE,"
    " status TEXT NOT NULL, error TEXT, config TEXT NOT NULL, result TEXT NOT NULL)",
    "CREATE TABLE arrays (run_id TEXT NOT NULL, name TEXT NOT NULL, npy BLOB NOT NULL,"
    " UNIQUE (run_id, name))",
    _LEASES,
)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {name for (name,) in rows}


def create(conn: sqlite3.Connection) -> None:
    """Write the schema into an empty file (unless another process did while this one waited)."""
    with transaction(conn):
        if not tables(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


def add_leases(conn: sqlite3.Connection) -> None:
    """Give a store written before leases existed its ``leases`` table."""
    with transaction(conn):
        conn.execute(_LEASES)


def probe_write(conn: sqlite3.Connection) -> None:
    """Raise the sqlite3 error a write would meet (a read-only file, no room for the journal),
    leaving the file unchanged."""
    # BEGIN IMMEDIATE succeeds even on a read-only connection, and SQLite skips an UPDATE that
    # changes nothing: changing a page is what needs the file and the journal beside it to be
    # writable. The rollback undoes it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('write_probe', '')")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def problem(conn: sqlite3.Connection, found: set[str]) -> str | None:
    """Why a SQLite file with the tables ``found`` is not a toyrelu store, or None if it is one:
    a missing table, a missing column or a column of another type (one phrase), or another
    schema version."""
    if not set(REQUIRED) <= found:
        listed = ", ".join(sorted(found)[:5]) + (", ..." if len(found) > 5 else "")
        return f"found tables {listed}; expected {', '.join(REQUIRED)}"
    for table, columns in COLUMNS.items():
        if table not in found:
            continue
        declared = {name: kind.upper() for _, name, kind, *_ in
                    conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in declared:
                return f"table {table} has no column {name}"
            if declared[name] != kind:
                return f"column {table}.{name} is {declared[name] or 'untyped'}, expected {kind}"
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        return f"schema version {None if row is None else row[0]}, expected {SCHEMA_VERSION}"
    return None


def write_problem(exc: sqlite3.Error) -> str | None:
    """What a failed write means for the user (a full disk, a read-only file or folder, a lock
    held past the busy timeout), or None for another error."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in text:
        return f"cannot be written: the disk is full ({text})"
    if name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN") or "unable to open" in text:
        return (f"cannot be written ({text}); SQLite writes a journal beside the store, so "
                "its folder must be writable")
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return f"is read-only ({text}); a sweep writes each run to it"
    if name.startswith("SQLITE_BUSY") or "database is locked" in text:
        return f"is locked by another process ({text})"
    return None


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_created(made: list[Path]) -> None:
    """Remove a store file and folders that a failed opening created (deepest first), so that
    a full disk or a refused store leaves nothing behind; never what holds anything."""
    if not made:
        return
    store = made[0]
    if store.exists():
        try:
            if store.stat().st_size != 0:
                return  # it holds pages (and maybe a journal to play back): not ours to remove
            store.unlink()
        except OSError:
            return
        with contextlib.suppress(OSError):
            Path(f"{store}-journal").unlink()
    for folder in made[1:]:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only an empty folder

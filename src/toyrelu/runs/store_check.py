"""Reading a stored run strictly, and the scan behind ``toyrelu check``.

A row whose config or result is not a JSON object, or an array blob that is not a whole ``.npy``
file, is damaged (a disk error, a copy cut short, a hand edit). Every reader decodes through
``load_object`` and ``load_array``, which raise ``Damaged`` with what is wrong, so the store can
name the run instead of failing somewhere later with a traceback; ``scan`` decodes every row and
array of a store, and ``drop`` deletes the damaged runs.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np


class Damaged(ValueError):
    """A stored value that cannot be decoded; the message says which and why, in one phrase."""


class Damage(NamedTuple):
    """A damaged run and what is wrong with it."""

    run_id: str
    problem: str


def load_object(text: Any, what: str) -> dict[str, Any]:
    """The JSON object ``text`` (the run's ``what``: "config" or "result")."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise Damaged(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Damaged(f"{what} is not a JSON object but {type(value).__name__}")
    return value


def load_array(blob: Any, name: str) -> np.ndarray:
    """The array of the ``.npy`` bytes ``blob``, stored as ``name``."""
    if not isinstance(blob, bytes):
        raise Damaged(f"array {name} is {type(blob).__name__}, not .npy bytes")
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises many types on malformed bytes
        raise Damaged(f"array {name} is not a valid .npy blob: {type(exc).__name__}: "
                      f"{exc}") from None


def scan(conn: sqlite3.Connection) -> list[Damage]:
    """Every damaged run, in insertion order, each once with all that is wrong with it.

    Decodes every row and every array, one at a time, so a large store is not held in memory.
    """
    problems: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    rows = conn.execute("SELECT seq, run_id, config, result FROM runs ORDER BY seq")
    for seq, run_id, config, result in rows:
        order[run_id] = seq
        for what, text in (("config", config), ("result", result)):
            try:
                load_object(text, what)
            except Damaged as exc:
                problems.setdefault(run_id, []).append(str(exc))
    arrays = conn.execute("SELECT run_id, name, npy FROM arrays ORDER BY rowid")
    for run_id, name, blob in arrays:
        if run_id not in order:
            continue  # no row reads it
        try:
            load_array(blob, name)
        except Damaged as exc:
            problems.setdefault(run_id, []).append(str(exc))
    found = sorted(problems, key=order.__getitem__)
    return [Damage(run_id, "; ".join(problems[run_id])) for run_id in found]


def drop(conn: sqlite3.Connection, run_ids: Iterable[str], *, leases: bool) -> None:
    """Delete the rows, arrays and (when the store has the table) leases of ``run_ids``; the
    caller holds the transaction."""
    tables = ("runs", "arrays", "leases") if leases else ("runs", "arrays")
    ids = [(run_id,) for run_id in run_ids]
    for table in tables:
        conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)

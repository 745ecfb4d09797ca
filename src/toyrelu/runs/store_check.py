"""Writing a stored run's values and reading them back strictly, and the scan behind
``toyrelu check``.

A row whose config or result is not a JSON object, or an array blob that is not a whole ``.npy``
file, is damaged (a disk error, a copy cut short, a hand edit); so is a row or array that breaks
the store's rules of what a run holds (``runs.stored``). Every reader decodes through
``load_object`` and ``load_array``, which raise ``Damaged`` with what is wrong, so the store can
name the run instead of failing somewhere later with a traceback; ``scan`` decodes every row and
array of a store and applies the rules, and ``drop`` deletes the damaged runs.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Collection, Iterable
from typing import Any, NamedTuple

import numpy as np

from toyrelu.runs.stored import Rules


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


def dump_object(value: dict) -> str:
    """``value`` as the JSON text ``load_object`` reads back (non-finite floats included)."""
    # allow_nan writes NaN/Infinity tokens, which json.loads reads back as floats.
    return json.dumps(value, allow_nan=True, default=_json_scalar)


def _json_scalar(value: Any) -> Any:
    # numpy scalars (np.float32 losses, np.int64 counts) are not JSON types; store their value.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dump_array(array: np.ndarray) -> bytes:
    """``array`` as the ``.npy`` bytes ``load_array`` reads back, dtype and shape exactly."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def scan(conn: sqlite3.Connection, rules: Rules | None,
         ids: Collection[str] | None = None) -> list[Damage]:
    """Every damaged run (of ``ids``, when given), in insertion order, each once with all that
    is wrong with it; ``rules``, if given, also judge what each row and its arrays hold.

    Decodes every row and every array, one at a time, so a large store is not held in memory.
    """
    problems: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    rows: dict[str, tuple[str, dict[str, Any]]] = {}  # run_id -> (status, config), if readable
    found = conn.execute(
        "SELECT seq, run_id, status, error, config, result FROM runs ORDER BY seq")
    for seq, run_id, status, error, config_json, result_json in found:
        if ids is not None and run_id not in ids:
            continue
        order[run_id] = seq
        wrong = problems.setdefault(run_id, [])
        try:
            config = load_object(config_json, "config")
        except Damaged as exc:
            wrong.append(str(exc))
            config = None
        try:
            metrics = load_object(result_json, "result")
        except Damaged as exc:
            wrong.append(str(exc))
            metrics = None
        if config is not None:
            rows[run_id] = (status, config)
            if rules is not None and metrics is not None:
                wrong.extend(rules.row(run_id, status, error, config, metrics))
    shapes: dict[str, dict[str, tuple[tuple[int, ...], np.dtype]]] = {}
    arrays = conn.execute("SELECT run_id, name, npy FROM arrays ORDER BY rowid")
    for run_id, name, blob in arrays:
        if run_id not in order:
            continue  # no row reads it, or not one of ids
        try:
            array = load_array(blob, name)
        except Damaged as exc:
            problems[run_id].append(str(exc))
            rows.pop(run_id, None)  # its shapes are unknown, so the rules cannot judge them
        else:
            shapes.setdefault(run_id, {})[name] = (array.shape, array.dtype)
    if rules is not None:
        for run_id, (status, config) in rows.items():
            problems[run_id].extend(rules.arrays(status, config, shapes.get(run_id, {})))
    damaged = sorted((run_id for run_id in problems if problems[run_id]), key=order.__getitem__)
    return [Damage(run_id, "; ".join(problems[run_id])) for run_id in damaged]


def drop(conn: sqlite3.Connection, run_ids: Iterable[str], *, leases: bool) -> None:
    """Delete the rows, arrays and (when the store has the table) leases of ``run_ids``; the
    caller holds the transaction."""
    tables = ("runs", "arrays", "leases") if leases else ("runs", "arrays")
    ids = [(run_id,) for run_id in run_ids]
    for table in tables:
        conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)

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
import math
import sqlite3
from collections.abc import Collection, Iterable
from typing import Any, NamedTuple

import numpy as np

from toyrelu.runs.stored import Rules

# A .npy header is at most numpy's default limit of 10,000 bytes past its 10-byte preamble.
_HEADER_BYTES = 16384
# SQLite's typeof() as the Python type a reader would have met
_PYTHON_TYPES = {"text": "str", "integer": "int", "real": "float", "null": "NoneType"}


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


def array_header(head: bytes, size: int, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the ``.npy`` blob of ``size`` bytes that starts with ``head``,
    read from its header alone; ``Damaged`` when the header is not one, the dtype holds Python
    objects, or the blob is too short for its values (``load_array`` would fail the same
    ways)."""
    fp = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"format version {version} is not one numpy writes for these")
    except Exception as exc:  # noqa: BLE001 - numpy raises many types on malformed bytes
        raise Damaged(f"array {name} is not a valid .npy blob: {type(exc).__name__}: "
                      f"{exc}") from None
    if dtype.hasobject:
        raise Damaged(f"array {name} is not a valid .npy blob: it holds Python objects")
    need = fp.tell() + math.prod(shape) * dtype.itemsize
    if size < need:
        raise Damaged(f"array {name} is not a valid .npy blob: {size} bytes of {need}")
    return shape, dtype


def scan(conn: sqlite3.Connection, rules: Rules | None,
         ids: Collection[str] | None = None) -> list[Damage]:
    """Every damaged run (of ``ids``, when given), in insertion order, each once with all that
    is wrong with it; ``rules``, if given, also judge what each row and its arrays hold.

    Decodes every row and reads every array's header and size, never its values, so that a
    large store is checked fast and never held in memory.
    """
    only = "" if ids is None else " WHERE run_id IN (SELECT value FROM json_each(?))"
    params = () if ids is None else (json.dumps(list(ids)),)
    problems: dict[str, list[str]] = {}
    rows: dict[str, tuple[str, dict[str, Any]]] = {}  # run_id -> (status, config), if readable
    found = conn.execute(
        f"SELECT run_id, status, error, config, result FROM runs{only} ORDER BY seq", params)
    for run_id, status, error, config_json, result_json in found:
        problems[run_id] = _row_problems(run_id, status, error, config_json, result_json,
                                         rules, rows)
    shapes: dict[str, dict[str, tuple[tuple[int, ...], np.dtype]]] = {}
    arrays = conn.execute(f"SELECT run_id, name, typeof(npy), length(npy), substr(npy, 1, "
                          f"{_HEADER_BYTES}) FROM arrays{only} ORDER BY rowid", params)
    for run_id, name, kind, size, head in arrays:
        if run_id not in problems:
            continue  # no row reads it
        try:
            if kind != "blob":
                raise Damaged(f"array {name} is {_PYTHON_TYPES.get(kind, kind)}, not .npy bytes")
            shapes.setdefault(run_id, {})[name] = array_header(head, size, name)
        except Damaged as exc:
            problems[run_id].append(str(exc))
            rows.pop(run_id, None)  # its shapes are unknown, so the rules cannot judge them
    if rules is not None:
        for run_id, (status, config) in rows.items():
            problems[run_id].extend(rules.arrays(status, config, shapes.get(run_id, {})))
    return [Damage(run_id, "; ".join(wrong)) for run_id, wrong in problems.items() if wrong]


def _row_problems(run_id: str, status: Any, error: Any, config_json: Any, result_json: Any,
                  rules: Rules | None, rows: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """What is wrong with one row; a readable config goes into ``rows`` for the array rules."""
    wrong = []
    decoded: dict[str, dict[str, Any] | None] = {}
    for what, text in (("config", config_json), ("result", result_json)):
        try:
            decoded[what] = load_object(text, what)
        except Damaged as exc:
            wrong.append(str(exc))
            decoded[what] = None
    config, metrics = decoded["config"], decoded["result"]
    if config is not None:
        rows[run_id] = (status, config)
        if rules is not None and metrics is not None:
            wrong.extend(rules.row(run_id, status, error, config, metrics))
    return wrong


def drop(conn: sqlite3.Connection, run_ids: Iterable[str], *, leases: bool) -> None:
    """Delete the rows, arrays and (when the store has the table) leases of ``run_ids``; the
    caller holds the transaction."""
    tables = ("runs", "arrays", "leases") if leases else ("runs", "arrays")
    ids = [(run_id,) for run_id in run_ids]
    for table in tables:
        conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)

"""What a stored toyrelu run must hold: the rules a row and its arrays are read by.

Valid JSON is not yet a run. A row whose config no longer builds a ``RunConfig`` (``n_hidden``
"two"), hashes to another run id (a hand edit), or whose result lacks its losses or holds text
where a number belongs, and an ``ok`` run without its parameters or with ``W`` of the wrong
shape, would each fail later in a figure or a table with a traceback. The store reads every row
and array through these rules (``Store(rules=...)``), so such a run is named as damaged, like one
whose bytes are broken, and ``toyrelu check`` lists it.

Arrays not named here (later additions, study-specific recordings) are allowed; those named must
have the shapes that the run's config gives them (``runs.training.RunResult.arrays``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from toyrelu.core.config import ConfigError, RunConfig, field_names

# What each status means, and which a sweep trains again: runs.store's docstring.
STATUSES = ("ok", "failed", "error", "lost")
# Every trained run has these; the analyses read them from every ok row.
LOSSES = ("train_loss", "test_loss")
_X = ("X_indptr", "X_indices", "X_data")
_SNAPSHOTS = ("snapshot_steps", "snapshot_W", "snapshot_b")
_FIELDS = set(field_names())
# name -> (shape, dtype) of one stored array, read without keeping its values
Shapes = Mapping[str, tuple[tuple[int, ...], np.dtype]]


class Rules(Protocol):
    """What a store checks a row and its arrays against; each returns the problems found, one
    phrase each (an empty list: the run is sound)."""

    def row(self, run_id: str, status: Any, error: Any, config: dict[str, Any],
            metrics: dict[str, Any]) -> list[str]: ...

    def arrays(self, status: str, config: dict[str, Any], shapes: Shapes) -> list[str]: ...


class RunRules:
    """The rules of a run that ``toyrelu sweep`` stored (``runs.training``)."""

    def row(self, run_id: str, status: Any, error: Any, config: dict[str, Any],
            metrics: dict[str, Any]) -> list[str]:
        problems = []
        if status not in STATUSES:
            problems.append(f"status {status!r} is not one of {', '.join(STATUSES)}")
        if error is not None and not isinstance(error, str):
            problems.append(f"error is {type(error).__name__}, not text")
        built = _config(config)
        if isinstance(built, str):
            problems.append(built)
        elif set(config) == _FIELDS and built.run_id != run_id:
            # Only a config of this version's fields hashes to its id: a store written before a
            # field existed keeps the ids of then, and stays readable.
            problems.append(f"config is that of run {built.run_id}, not of this run")
        for name, value in metrics.items():
            if value is not None and not _is_number(value):
                problems.append(f"result {name} is {value!r}, not a number")
        if status == "ok":
            missing = [name for name in LOSSES if metrics.get(name) is None]
            if missing:
                problems.append(f"ok run without {' and '.join(missing)}")
        return problems

    def arrays(self, status: str, config: dict[str, Any], shapes: Shapes) -> list[str]:
        built = _config(config)
        if isinstance(built, str):
            return []  # the row is damaged already; its arrays have no shapes to check against
        m, n = built.n_hidden, built.n_features
        problems = []
        if status == "ok":
            missing = [name for name in ("W", "b", "H", *_X) if name not in shapes]
            if missing:
                problems.append(f"ok run without array {', '.join(missing)}")
        expected = {"W": ("floating", (m, n)), "b": ("floating", (n,)),
                    "H": ("floating", (None, m)), "X_indptr": ("integer", (None,)),
                    "X_indices": ("integer", (None,)), "X_data": ("floating", (None,)),
                    "snapshot_steps": ("integer", (None,)),
                    "snapshot_W": ("floating", (None, m, n)),
                    "snapshot_b": ("floating", (None, n))}
        for name, (kind, shape) in expected.items():
            if name in shapes:
                problems.extend(_shape_problem(name, shapes[name], kind, shape))
        for group in (_X, _SNAPSHOTS):
            present = [name for name in group if name in shapes]
            if present and len(present) < len(group):
                absent = [name for name in group if name not in shapes]
                problems.append(f"array {', '.join(absent)} missing beside {present[0]}")
        return problems + _disagreements(shapes)


RUNS = RunRules()


def _config(values: dict[str, Any]) -> RunConfig | str:
    """The run's config, or the problem that stops it being one. Keys that are no field (a
    field of another toyrelu version) are left out; a missing field takes its default."""
    known = {k: v for k, v in values.items() if k in _FIELDS}
    try:
        return RunConfig.from_dict(known)
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        return f"config is not a valid run config ({str(exc).split(' (known: ')[0]})"


def _disagreements(shapes: Shapes) -> list[str]:
    """Arrays that must agree in length: one row of H per example of X, one value of X_data
    per index, one W and b per snapshot step."""
    def length(name: str) -> int | None:
        found = shapes.get(name)
        return found[0][0] if found is not None and found[0] else None

    pairs = (("H", "X_indptr", -1), ("X_data", "X_indices", 0),
             ("snapshot_W", "snapshot_steps", 0), ("snapshot_b", "snapshot_steps", 0))
    problems = []
    for name, other, offset in pairs:
        a, b = length(name), length(other)
        if a is not None and b is not None and a != b + offset:
            problems.append(f"array {name} has {a} rows where {other} gives {b + offset}")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape_problem(name: str, found: tuple[tuple[int, ...], np.dtype], kind: str,
                   shape: tuple[int | None, ...]) -> list[str]:
    got, dtype = found
    sound = (np.issubdtype(dtype, np.floating if kind == "floating" else np.integer)
             and len(got) == len(shape)
             and all(want is None or want == have for want, have in zip(shape, got, strict=True)))
    if sound:
        return []
    want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
    return [f"array {name} is {dtype} {tuple(got)}, not {kind} {want}"]

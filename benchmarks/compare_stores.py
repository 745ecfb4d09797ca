"""Compare two toyrelu stores bit for bit: every run's status, config, metrics and arrays.

    python benchmarks/compare_stores.py A.sqlite B.sqlite

Used to check that a change of code layout or of executor leaves the stored numbers exactly as
they were: train the same preset into two stores (before and after, or on two executors) and
compare. ``wall_seconds`` and ``batch_runs`` (how a run was scheduled, not what it computed)
are left out. Reads the SQLite files directly, so it compares stores of any toyrelu version.
Exits 1 and names every difference when the stores differ.
"""

from __future__ import annotations

import io
import json
import sqlite3
import sys

import numpy as np

SCHEDULING = ("wall_seconds", "batch_runs")


def load(path: str) -> tuple[dict[str, tuple], dict[tuple[str, str], np.ndarray]]:
    """(run_id -> (status, error, config, metrics)) and ((run_id, name) -> array)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    runs = {}
    for run_id, status, error, config, result in db.execute(
            "SELECT run_id, status, error, config, result FROM runs"):
        metrics = {k: v for k, v in json.loads(result).items() if k not in SCHEDULING}
        runs[run_id] = (status, error, json.loads(config), json.dumps(metrics, sort_keys=True))
    arrays = {(run_id, name): np.load(io.BytesIO(blob), allow_pickle=False)
              for run_id, name, blob in db.execute("SELECT run_id, name, npy FROM arrays")}
    db.close()
    return runs, arrays


def differences(a: str, b: str) -> tuple[list[str], int, int]:
    """What differs between the stores at ``a`` and ``b``, and the runs and arrays compared."""
    runs_a, arrays_a = load(a)
    runs_b, arrays_b = load(b)
    found = [f"run {r} only in {a}" for r in sorted(runs_a.keys() - runs_b.keys())]
    found += [f"run {r} only in {b}" for r in sorted(runs_b.keys() - runs_a.keys())]
    found += [f"run {r}: status, config or metrics differ"
              for r in sorted(runs_a.keys() & runs_b.keys()) if runs_a[r] != runs_b[r]]
    found += [f"array {k} in one store only" for k in sorted(arrays_a.keys() ^ arrays_b.keys())]
    for key in sorted(arrays_a.keys() & arrays_b.keys()):
        x, y = arrays_a[key], arrays_b[key]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            found.append(f"array {key}: values differ")
    return found, len(runs_a), len(arrays_a)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    found, runs, arrays = differences(sys.argv[1], sys.argv[2])
    for line in found:
        print(line)
    print(f"{runs} runs and {arrays} arrays compared: {len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

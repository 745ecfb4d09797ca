"""Sweeps: a grid of run configs mapped over a swappable executor, one stored row per run.

A sweep is resumable by construction: runs already in the store (finished or failed) are
skipped, every finished run is committed before the next is written, and an interrupted sweep
rerun with the same arguments picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from toyrelu.core.config import RunConfig
from toyrelu.runs.executors import Executor, InProcess
from toyrelu.runs.grid import cost
from toyrelu.runs.progress import Progress
from toyrelu.runs.store import Store


@dataclass(frozen=True)
class SweepReport:
    """Counts of one sweep call."""

    total: int
    skipped: int
    ok: int
    failed: int


def run_sweep(
    configs: Iterable[RunConfig],
    store: Store,
    runner: Executor | None = None,
    *,
    progress: TextIO | None = None,
) -> SweepReport:
    """Run every config not yet in ``store``, largest first, storing each as it finishes.

    ``progress``, if given, is a text stream that receives a progress line (``Progress``).

    Largest first, because the few largest runs hold most of the work (docs/engines.md) and a
    worker left alone with one of them at the end would idle the others.
    """
    configs = list(configs)
    finished = store.finished_ids()
    todo = sorted((c for c in configs if c.run_id not in finished), key=cost, reverse=True)
    runner = runner or InProcess()
    bar = Progress(todo, progress) if progress is not None else None
    ok = failed = 0
    on_steps = bar.on_steps if bar is not None else (lambda run_id, k: None)
    try:
        for outcome in runner.map(todo, on_steps):
            store.put(outcome.run_id, outcome.config, outcome.metrics, outcome.arrays)
            if outcome.metrics["status"] == "ok":
                ok += 1
            else:
                failed += 1
            if bar is not None:
                bar.on_run()
    finally:
        if bar is not None:
            bar.close()
    return SweepReport(len(configs), len(configs) - len(todo), ok, failed)

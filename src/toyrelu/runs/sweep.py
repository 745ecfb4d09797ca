"""Sweeps: a grid of run configs mapped over a swappable executor, one stored row per run.

A sweep is resumable by construction: runs already finished in the store (``ok`` or ``failed``)
are skipped, every run is committed before the next is written, and an interrupted sweep rerun
with the same arguments picks up where it stopped; runs stored with status ``error`` (the
machine failed them) or ``lost`` (a cluster lost them) are trained again, and so are finished
runs that the store cannot read back (``Store.check``), each named first. Several sweeps may
share a store at once: each claims a run right before it starts (``Store.claim``), so each run
is trained by one of them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from toyrelu.core.config import RunConfig
from toyrelu.runs.executors import Executor, InProcess
from toyrelu.runs.grid import cost
from toyrelu.runs.progress import Progress
from toyrelu.runs.store import FINISHED, Store, StoreError
from toyrelu.runs.stored import STATUSES


@dataclass(frozen=True)
class SweepReport:
    """Counts of one sweep call: ``skipped`` runs were finished in the store, or trained by
    another sweep; ``errors`` were stopped by the machine (or came back with a status outside
    ``runs.stored.STATUSES``, which a store without rules takes) and ``lost`` were lost by a
    cluster executor (``cluster_node.lost_outcomes``), both trained again next time;
    ``damaged`` finished runs could not be read back, so they were trained again."""

    total: int
    skipped: int
    ok: int
    failed: int
    errors: int = 0
    damaged: int = 0
    lost: int = 0


def run_sweep(
    configs: Iterable[RunConfig],
    store: Store,
    runner: Executor | None = None,
    *,
    progress: TextIO | None = None,
    retry_failed: bool = False,
) -> SweepReport:
    """Run every config not yet finished in ``store`` (or damaged there: ``Store.check``),
    largest first, storing each as it finishes. ``progress``, if given, is a text stream that
    receives a progress line (``Progress``) and names the damaged runs. ``retry_failed``
    trains the runs stored as ``failed`` again too.

    Largest first: the few largest runs hold most of the work (docs/engines.md), and a worker
    left alone with one at the end would idle the others. Each run is claimed right before it
    starts (the executor's ``start``); one another sweep holds or has finished is skipped.
    """
    configs = list(configs)
    finished = store.ids("ok") if retry_failed else store.ids(*FINISHED)
    again = _damaged(store, finished & {c.run_id for c in configs}, progress)
    todo = sorted((c for c in configs if c.run_id not in finished or c.run_id in again),
                  key=cost, reverse=True)
    runner = runner or InProcess()
    bar = Progress(todo, progress) if progress is not None else None
    counts: Counter[str] = Counter()

    def start(config: RunConfig) -> bool:
        if _claim(store, config.run_id, retry_failed, again):
            return True
        counts["taken"] += 1
        if bar is not None:
            bar.on_skip(config.run_id)
        return False

    def on_steps(run_id: str, k: int) -> None:
        # A missed heartbeat only brings the lease's expiry nearer for sweeps on other hosts;
        # a store that cannot be written fails the put that follows.
        with contextlib.suppress(StoreError):
            store.heartbeat()
        if bar is not None:
            bar.on_steps(run_id, k)

    # Closed explicitly, so that an interrupt landing in put or the bar stops the executor's
    # workers at once rather than whenever the generator is collected.
    outcomes = runner.map(todo, on_steps, start)
    try:
        for outcome in outcomes:
            store.put(outcome.run_id, outcome.config, outcome.metrics, outcome.arrays)
            status = outcome.metrics["status"]
            counts[status if status in STATUSES else "error"] += 1
            if bar is not None:
                bar.on_run()
    finally:
        getattr(outcomes, "close", lambda: None)()
        store.release()
        if bar is not None:
            bar.close()
    skipped = len(configs) - len(todo) + counts["taken"]
    return SweepReport(len(configs), skipped, counts["ok"], counts["failed"], counts["error"],
                       len(again), counts["lost"])


def _claim(store: Store, run_id: str, retry_failed: bool, again: set[str]) -> bool:
    """Claim ``run_id`` to train it; a run found damaged at the start is claimed whatever its
    status, unless another sweep has stored it whole since."""
    if run_id in again and not store.check(ids={run_id}):
        return False
    return store.claim(run_id, retry_failed=retry_failed, again=run_id in again)


def _damaged(store: Store, finished: set[str], progress: TextIO | None) -> set[str]:
    """The runs of ``finished`` that the store cannot read back, each named on ``progress``:
    the sweep trains them again rather than count them as stored."""
    damaged = store.check(ids=finished)
    if progress is not None:
        for d in damaged:
            print(f"toyrelu: run {d.run_id} in {store.path} is damaged ({d.problem}); training "
                  "it again", file=progress)
    return {d.run_id for d in damaged}

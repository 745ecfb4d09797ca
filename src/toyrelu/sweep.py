"""Sweeps: a grid of run configs mapped over a swappable executor, one stored row per run.

A sweep is resumable by construction: runs already in the store (finished or failed) are
skipped, every finished run is committed before the next is written, and an interrupted sweep
rerun with the same arguments picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from toyrelu import training
from toyrelu.config import RunConfig
from toyrelu.store import Store

StepsCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back for one run: everything the store keeps."""

    run_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    arrays: dict[str, Any]


def grid(base: RunConfig, axes: Mapping[str, Sequence[Any]]) -> list[RunConfig]:
    """Every combination of the axis values applied to ``base`` (validated, duplicates dropped)."""
    names = list(axes)
    configs: dict[str, RunConfig] = {}
    for values in itertools.product(*(axes[name] for name in names)):
        config = base.replace(**dict(zip(names, values, strict=True)))
        configs.setdefault(config.run_id, config)
    return list(configs.values())


# Throughput of the fused engine per (example, feature) pair at each n_hidden, relative to
# n_hidden = 2: measured at n = 1,000, T = 3,000 (best of three 400-step runs, one process).
# m = 16 was 0.15 before its kernels skipped the features a group leaves inactive and read
# the nonzeros transposed; heatmap-quick's m = 16 column took 329 core-seconds instead of 795
# since (2.4x), hence 0.36.
SPEED_BY_HIDDEN = {1: 1.0, 2: 1.0, 3: 0.73, 4: 0.56, 5: 0.44, 6: 0.41, 7: 0.36, 8: 0.30,
                   9: 0.27, 10: 0.25, 12: 0.20, 16: 0.36}
SPEED_LARGE_HIDDEN = 0.15  # the other sizes past 12: m = 16's speed with dense gradients


def cost(config: RunConfig) -> float:
    """Relative cost of a run, in (example, feature) pairs at n_hidden = 2: pairs visited,
    plus the per-step overhead (AdamW and the gradient flush, measured at about 40 pairs' worth
    per feature), over the engine's relative speed at the run's n_hidden
    (``SPEED_BY_HIDDEN``). A fresh batch per step (T = infinity) costs about as much again to
    sample."""
    rows = config.examples_per_step * (2 if config.infinite else 1)
    speed = SPEED_BY_HIDDEN.get(config.n_hidden, SPEED_LARGE_HIDDEN)
    return config.steps * (rows + 40) * config.n_features / speed


def run_one(config: RunConfig, on_steps: StepsCallback | None = None) -> Outcome:
    """Train one run and package it for the store; never raises for a failing run."""
    try:
        result = training.run(
            config, on_steps=None if on_steps is None else lambda k: on_steps(config.run_id, k)
        )
        return Outcome(config.run_id, config.to_dict(), result.metrics(), result.arrays())
    except Exception as exc:  # noqa: BLE001 - a crashed run is stored as failed, the sweep goes on
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return Outcome(config.run_id, config.to_dict(), {"status": "failed", "error": reason}, {})


class Executor(Protocol):
    """Runs ``run_one`` over configs, yielding outcomes as they finish (in any order)."""

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]: ...


class InProcess:
    """Runs one config after another in this process."""

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]:
        for config in configs:
            yield run_one(config, on_steps)


_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue
    # One process per core: threads of a run (numba's or a reference run's torch threads) would
    # only compete with the other workers.
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)


def _worker_steps(run_id: str, k: int) -> None:
    _progress_queue.put((run_id, k))


def _run_in_worker(config: RunConfig) -> Outcome:
    return run_one(config, _worker_steps)


def _compile_in_worker(kind: training.KernelKind) -> None:
    # A kind that fails to compile fails its runs, which store the reason.
    with contextlib.suppress(Exception):
        training.compile_kernels(*kind)


def default_workers() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


class LocalProcesses:
    """Runs configs in ``workers`` single-threaded local processes (default: one per core).

    Separate processes use the cores more reliably than threads inside one step (PERFORMANCE.md).
    Workers are started with "spawn", which is safe whatever threads the parent has started.
    Before the first run, the workers compile the kinds of kernels the runs need
    (``training.kernel_kinds``), each kind in one worker, longest first: on a fresh install
    every worker would otherwise compile every kind itself (each takes 15-50 s) before its
    first run. With the kernels already cached on disk this only loads them.
    """

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        with ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker, initargs=(queue,)
        ) as pool:
            kinds = {kind for c in configs for kind in training.kernel_kinds(c)}
            # The split-cell kernels and larger m take longest to compile.
            wait([pool.submit(_compile_in_worker, kind)
                  for kind in sorted(kinds, key=lambda k: (not k[2], -k[0], k[1]))])
            pending: set[Future[Outcome]] = {pool.submit(_run_in_worker, c) for c in configs}
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(queue, on_steps)
                    for future in done:
                        yield future.result()
            finally:
                for future in pending:
                    future.cancel()
                _drain(queue, on_steps)


def _drain(queue: Any, on_steps: StepsCallback) -> None:
    while not queue.empty():
        try:
            run_id, k = queue.get_nowait()
        except Exception:  # noqa: BLE001 - an empty queue raced with empty()
            return
        on_steps(run_id, k)


class GpuBatches:
    """Trains runs on one CUDA device, many at a time (``toyrelu.gpu``): a small run cannot fill
    a GPU, so runs that share a ``gpu.batch_key`` (everything but the data and init) are
    stacked into one launch, up to ``max_rows`` training rows per batch.

    ``wall_seconds`` of a run is its batch's; ``batch_runs`` says how many runs shared it.
    Runs that keep snapshots (``snapshot_every``) keep them here too. Runs for the reference
    engine are trained one by one in this process on the CPU. With ``cells``, fixed training
    sets take the split-cell step (``toyrelu.gpu_split``) while it pays; with ``dots``, the
    dense passes are the tensor-core ones (``toyrelu.gpu_dots``).
    """

    def __init__(self, device: str = "cuda", max_rows: int = 2_000_000, max_runs: int = 256,
                 cells: bool = False, dots: bool = False):
        self.device = device
        self.max_rows = max_rows
        self.max_runs = max_runs
        self.cells = cells
        self.dots = dots

    def batches(self, configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
        """Groups of configs trained together: equal batch keys, at most ``max_rows`` rows
        (one step's examples summed over runs) and ``max_runs`` runs each, smallest T first."""
        from toyrelu import gpu

        groups: dict[tuple[Any, ...], list[RunConfig]] = {}
        for config in configs:
            groups.setdefault(gpu.batch_key(config), []).append(config)
        out = []
        for group in groups.values():
            batch: list[RunConfig] = []
            rows = 0
            for config in sorted(group, key=lambda c: c.examples_per_step):
                full = rows + config.examples_per_step > self.max_rows
                if batch and (full or len(batch) == self.max_runs):
                    out.append(batch)
                    batch, rows = [], 0
                batch.append(config)
                rows += config.examples_per_step
            out.append(batch)
        return sorted(out, key=lambda b: -sum(cost(c) for c in b))

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]:
        yield from InProcess().map([c for c in configs if c.engine == "reference"], on_steps)
        for batch in self.batches([c for c in configs if c.engine != "reference"]):
            yield from self._train(batch, on_steps)

    def _train(self, batch: list[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]:
        from toyrelu import data, gpu, model

        start = time.perf_counter()
        shown = [data.train_set(c) for c in batch]
        sources = [data.batches(c) if c.infinite else X for c, X in zip(batch, shown, strict=True)]
        params = [model.init_params(c) for c in batch]

        def steps_done(k: int) -> None:
            for config in batch:
                on_steps(config.run_id, k)

        snapshots: list[list[training.Snapshot]] = [[] for _ in batch]
        blocks = gpu.default_blocks(batch[0].n_hidden, batch[0].dtype, dots=self.dots,
                                    cells=gpu.Cells() if self.cells else None)
        trained = gpu.train_many(batch, sources, [W for W, _ in params], [b for _, b in params],
                                 device=self.device, on_steps=steps_done, blocks=blocks,
                                 on_snapshot=lambda i, s, W, b: snapshots[i].append((s, W, b)))
        for config, X, init, result, kept in zip(batch, shown, params, trained, snapshots,
                                                 strict=True):
            if isinstance(result, Exception):
                done = training.finish(config, X, *init, start, error=f"diverged: {result}")
            else:
                done = training.finish(config, X, *result, start, snapshots=kept)
            done.values["batch_runs"] = len(batch)
            yield Outcome(config.run_id, config.to_dict(), done.metrics(), done.arrays())


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """"cpu" or "cuda" for a requested device; "auto" takes a usable CUDA GPU when there is
    one. Raises ValueError (one line) for an unknown name or a GPU that is not there."""
    if device not in DEVICES:
        raise ValueError(f"device: {device!r} must be one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    from toyrelu import gpu

    if gpu.available():
        return "cuda"
    if device == "cuda":
        raise ValueError("device: cuda was requested but no usable CUDA GPU (with triton) is here")
    return "cpu"


def executor(workers: int, device: str = "cpu", gpu_cells: bool = False,
             gpu_dots: bool = False) -> Executor:
    """On "cuda", batched GPU training (with the split-cell step if ``gpu_cells``, the
    tensor-core passes if ``gpu_dots``); on the CPU, in-process for one worker and local
    processes otherwise."""
    if device == "cuda":
        return GpuBatches(cells=gpu_cells, dots=gpu_dots)
    return InProcess() if workers <= 1 else LocalProcesses(workers)


@dataclass(frozen=True)
class SweepReport:
    """Counts of one sweep call."""

    total: int
    skipped: int
    ok: int
    failed: int


class Progress:
    """A one-line progress bar on a text stream: runs done, steps/s and time left.

    Time left is the work still to do over the rate of work since the first report, with each
    step weighted by its cost, so one large run does not make the estimate jump. The time
    before the first report (starting workers, compiling kernels on a fresh install) is left
    out of the rate, as it is not spent again: until a second report there is no estimate.
    """

    def __init__(self, configs: Sequence[RunConfig], stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total_runs = len(configs)
        self.step_cost = {c.run_id: cost(c) / c.steps for c in configs}
        self.total_work = sum(cost(c) for c in configs) or 1.0
        self.work = 0.0
        self.steps = 0
        self.runs = 0
        self.start = time.perf_counter()
        self.first: tuple[float, float] | None = None  # (time, work) of the first report
        self.last_draw = -math.inf

    def on_steps(self, run_id: str, k: int) -> None:
        self.steps += k
        self.work += k * self.step_cost.get(run_id, 0.0)
        if self.first is None:
            self.first = (time.perf_counter(), self.work)
        self.draw()

    def on_run(self) -> None:
        self.runs += 1
        self.draw(force=True)

    def line(self) -> str:
        now = time.perf_counter()
        elapsed = now - self.start
        rate = self.steps / elapsed if elapsed > 0 else 0.0
        left = float("nan")
        if self.work >= self.total_work:
            left = 0.0
        elif self.first is not None and self.work > self.first[1] and now > self.first[0]:
            work_rate = (self.work - self.first[1]) / (now - self.first[0])
            left = (self.total_work - self.work) / work_rate
        return (
            f"runs {self.runs}/{self.total_runs} | {rate:,.0f} steps/s | "
            f"elapsed {_clock(elapsed)} | left {_clock(left)}"
        )

    def draw(self, force: bool = False) -> None:
        # A terminal line is redrawn in place; a log file gets a new line every few seconds.
        tty = self.stream.isatty()
        now = time.perf_counter()
        if not force and now - self.last_draw < (0.5 if tty else 5.0):
            return
        if not tty and force and now - self.last_draw < 5.0 and self.runs < self.total_runs:
            return
        self.last_draw = now
        self.stream.write(self.line() + ("\r" if tty else "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing measured yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def run_sweep(
    configs: Iterable[RunConfig],
    store: Store,
    runner: Executor | None = None,
    *,
    progress: TextIO | None = None,
) -> SweepReport:
    """Run every config not yet in ``store``, largest first, storing each as it finishes.

    ``progress``, if given, is a text stream that receives a progress line (``Progress``).

    Largest first, because the few largest runs hold most of the work (PERFORMANCE.md) and a
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

"""Executors: where the runs of a sweep train, each yielding outcomes as runs finish.

``InProcess`` trains one run after another here; ``LocalProcesses`` spreads them over
single-threaded worker processes; ``GpuBatches`` trains many at once on one CUDA device. Every
executor takes the one run path of ``runs.training`` (prepare, train, evaluate), so that the
same config and seed give the same stored numbers wherever they run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from toyrelu.core.config import RunConfig
from toyrelu.core.trainer import Snapshot
from toyrelu.runs import training
from toyrelu.runs.grid import cost
from toyrelu.runs.resources import default_workers
from toyrelu.runs.training import Outcome, StepsCallback, run_one

# start(config): called in the main process right before ``config`` starts training; a config
# for which it returns False is skipped (another sweep trains it).
StartCallback = Callable[[RunConfig], bool]


class Executor(Protocol):
    """Runs ``run_one`` over configs, yielding outcomes as they finish (in any order)."""

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]: ...


class InProcess:
    """Runs one config after another in this process."""

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        for config in configs:
            if start is None or start(config):
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


class LocalProcesses:
    """Runs configs in ``workers`` single-threaded local processes (default: one per core).

    Separate processes use the cores more reliably than threads inside one step
    (docs/engines.md).
    Workers are started with "spawn", which is safe whatever threads the parent has started.
    Before the first run, the workers compile the kinds of kernels the runs need
    (``training.kernel_kinds``), each kind in one worker, longest first: on a fresh install
    every worker would otherwise compile every kind itself (tens of seconds each) before its
    first run. With the kernels already cached on disk this only loads them.
    """

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        configs = [c for c in configs if start is None or start(c)]
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
    """Trains runs on one CUDA device, many at a time (``toyrelu.engines.gpu``): a small run cannot
    fill a GPU, so runs that share a ``gpu.batch_key`` (everything but the data and init) are
    stacked into one launch, up to ``max_rows`` training rows per batch.

    ``wall_seconds`` of a run is its batch's; ``batch_runs`` says how many runs shared it.
    Runs that keep snapshots (``snapshot_every``) keep them here too. Runs for the reference
    engine are trained one by one in this process on the CPU. With ``cells``, fixed training
    sets take the split-cell step (``toyrelu.engines.gpu.split``) while it pays; with ``dots``,
    the dense passes are the tensor-core ones (``toyrelu.engines.gpu.kernels.dots``).
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
        from toyrelu.engines import gpu

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

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        configs = [c for c in configs if start is None or start(c)]
        yield from InProcess().map([c for c in configs if c.engine == "reference"], on_steps)
        for batch in self.batches([c for c in configs if c.engine != "reference"]):
            yield from self._train(batch, on_steps)

    def _train(self, batch: list[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]:
        from toyrelu.engines import gpu

        start = time.perf_counter()
        ready = [training.prepare(c) for c in batch]

        def steps_done(k: int) -> None:
            for config in batch:
                on_steps(config.run_id, k)

        snapshots: list[list[Snapshot]] = [[] for _ in batch]
        blocks = gpu.default_blocks(batch[0].n_hidden, batch[0].dtype, dots=self.dots,
                                    cells=gpu.Cells() if self.cells else None)
        trained = gpu.train_many(batch, [r.source for r in ready], [r.W0 for r in ready],
                                 [r.b0 for r in ready], device=self.device,
                                 on_steps=steps_done, blocks=blocks,
                                 on_snapshot=lambda i, s, W, b: snapshots[i].append((s, W, b)))
        for config, prepared, result, kept in zip(batch, ready, trained, snapshots, strict=True):
            if isinstance(result, Exception):
                done = training.evaluate(config, prepared, start, error=f"diverged: {result}")
            else:
                done = training.evaluate(config, prepared, start, result, snapshots=kept)
            done.values["batch_runs"] = len(batch)
            yield Outcome.of(done)


def executor(workers: int, device: str = "cpu", gpu_cells: bool = False,
             gpu_dots: bool = False) -> Executor:
    """On "cuda", batched GPU training (with the split-cell step if ``gpu_cells``, the
    tensor-core passes if ``gpu_dots``); on the CPU, in-process for one worker and local
    processes otherwise."""
    if device == "cuda":
        return GpuBatches(cells=gpu_cells, dots=gpu_dots)
    return InProcess() if workers <= 1 else LocalProcesses(workers)


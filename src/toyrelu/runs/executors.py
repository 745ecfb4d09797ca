"""Executors: where the runs of a sweep train, each yielding outcomes as runs finish.

``InProcess`` trains one run after another here; ``LocalProcesses`` spreads them over
single-threaded worker processes; ``GpuBatches`` trains many at once on one CUDA device. Every
executor takes the one run path of ``runs.training`` (prepare, train, evaluate), so that the
same config and seed give the same stored numbers wherever they run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from toyrelu.core.config import RunConfig
from toyrelu.core.trainer import Snapshot
from toyrelu.runs import training, workers
from toyrelu.runs.grid import cost
from toyrelu.runs.resources import GPU_BATCH_ROWS, default_workers
from toyrelu.runs.training import Outcome, StepsCallback, run_one

# start(config): called in the main process right before ``config`` starts training; a config
# for which it returns False is skipped (no outcome).
StartCallback = Callable[[RunConfig], bool]


class Executor(Protocol):
    """Runs ``run_one`` over configs, yielding outcomes as they finish (in any order).

    ``start(config)``, if given, is called in this process right before the executor begins
    training ``config``; a config for which it returns False is skipped and gives no outcome.
    Stopping the iteration (an interrupt, ``close()``) stops the runs in flight, which give no
    outcome either. A run that fails for reasons of the machine rather than of its config (a
    worker process that died) comes back with status "error"; one that a cluster lost (the
    cluster executors, ``runs.cluster_node.lost_outcomes``) with status "lost".
    """

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]: ...


class InProcess:
    """Runs one config after another in this process."""

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        for config in configs:
            if start is None or start(config):
                yield run_one(config, on_steps)


def compile_order(configs: Sequence[RunConfig]) -> list[training.KernelKind]:
    """The kinds of kernels ``configs`` take, each once, longest to compile first: the
    split-cell kernels, then larger m."""
    kinds = {kind for c in configs for kind in training.kernel_kinds(c)}
    return sorted(kinds, key=lambda k: (not k[2], -k[0], k[1]))


class LocalProcesses:
    """Runs configs in ``workers`` single-threaded local processes (default: one per core).

    Separate processes use the cores more reliably than threads inside one step
    (docs/engines.md). The workers (``runs.workers``) are started with "spawn", which is safe
    whatever threads the parent has started; they ignore Ctrl-C, are stopped when the
    iteration stops, and end with this process however it ends. Before the first run, the
    workers compile the kinds of kernels the runs need (``compile_order``), each kind in one
    worker: on a fresh install every worker would otherwise compile every kind itself (tens of
    seconds each) before its first run. With the kernels already cached on disk this only
    loads them. Runs are then handed out in the order given, one to each free worker.
    """

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        if not configs:
            return
        pool = workers.Pool(min(self.workers, len(configs)))
        try:
            pool.compile(compile_order(configs))
            yield from pool.run(configs, on_steps, start)
        finally:
            pool.close()


class GpuBatches:
    """Trains runs on one CUDA device, many at a time (``toyrelu.engines.gpu``): a small run cannot
    fill a GPU, so runs that share a ``gpu.batch_key`` (everything but the data and init) are
    stacked into one launch, up to ``max_rows`` training rows per batch.

    A run's numbers depend on the runs that share its batch, in rounding only: the launch's
    work is split from the whole batch's size (``engines.gpu.batch``). The same runs and
    ``max_rows`` give the same batches, so every executor that trains a sweep in these batches
    stores the same numbers; a sweep resumed with some runs stored batches the others anew.

    ``wall_seconds`` of a run is its batch's; ``batch_runs`` says how many runs shared it.
    Runs that keep snapshots (``snapshot_every``) keep them here too. Runs for the reference
    engine are trained one by one in this process on the CPU. With ``cells``, fixed training
    sets take the split-cell step (``toyrelu.engines.gpu.split``) while it pays; with ``dots``,
    the dense passes are the tensor-core ones (``toyrelu.engines.gpu.kernels.dots``).
    """

    def __init__(self, device: str = "cuda", max_rows: int = GPU_BATCH_ROWS, max_runs: int = 256,
                 cells: bool = False, dots: bool = False):
        self.device = device
        self.max_rows = max_rows
        self.max_runs = max_runs
        self.cells = cells
        self.dots = dots

    def batches(self, configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
        """Groups of configs trained together, largest first: equal batch keys, at most
        ``max_rows`` rows (one step's examples summed over runs) and ``max_runs`` runs each,
        smallest T first. Runs of the reference engine are in none (``split``)."""
        from toyrelu.engines import gpu

        groups: dict[tuple[Any, ...], list[RunConfig]] = {}
        for config in configs:
            if config.engine != "reference":
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
        """Reference runs first, one by one; then each batch, whose configs are offered to
        ``start`` right before the batch trains (a batch trains the configs it accepts)."""
        one_by_one, batches = split(configs, self)
        yield from InProcess().map(one_by_one, on_steps, start)
        for batch in batches:
            accepted = [c for c in batch if start is None or start(c)]
            if accepted:
                yield from self.train(accepted, on_steps)

    def train(self, batch: list[RunConfig], on_steps: StepsCallback) -> Iterator[Outcome]:
        """Train one of ``batches`` here, yielding its outcomes."""
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


def split(configs: Sequence[RunConfig], gpu: GpuBatches | None
          ) -> tuple[list[RunConfig], list[list[RunConfig]]]:
    """The runs an executor trains one by one on the CPU (every run without ``gpu``; with it,
    the reference engine's), and ``gpu``'s batches of the others."""
    if gpu is None:
        return list(configs), []
    return [c for c in configs if c.engine == "reference"], gpu.batches(configs)


def executor(workers: int, device: str = "cpu", gpu_cells: bool = False,
             gpu_dots: bool = False, gpu_rows: int = GPU_BATCH_ROWS) -> Executor:
    """On "cuda", batched GPU training (with the split-cell step if ``gpu_cells``, the
    tensor-core passes if ``gpu_dots``, at most ``gpu_rows`` rows per batch); on the CPU,
    in-process for one worker and local processes otherwise."""
    if device == "cuda":
        return GpuBatches(max_rows=gpu_rows, cells=gpu_cells, dots=gpu_dots)
    return InProcess() if workers <= 1 else LocalProcesses(workers)


"""``SlurmJobs``: an executor that trains a sweep's runs as SLURM jobs through submitit.

Each GPU batch, or each group of ``runs_per_job`` CPU runs (largest first), is one job, so the
scheduler fits the jobs into the gaps of a shared cluster, where a Ray cluster on SLURM would
hold its nodes for the whole sweep. submitit pickles each job and its result into ``folder``,
which must be on a filesystem that the nodes share; the driver (this process) alone writes the
store, as with every executor. A job that fails (a node lost, its time limit reached, killed)
gives its runs back as "lost" outcomes whose reason names the job
(``cluster_node.lost_outcomes``): SLURM does not retry it, the next sweep trains those runs
again. The nodes' versions are checked by every job (``cluster_node``); the kernels compile in
each job on first use, from the node's disk cache.

submitit is imported only here and only when a sweep starts: without it, a one-line
``ClusterError`` says what to install. Tests hand in submitit's local executor (no SLURM here).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from toyrelu.core.config import RunConfig
from toyrelu.runs import cluster_node
from toyrelu.runs.cluster_ray import ClusterError
from toyrelu.runs.executors import GpuBatches, StartCallback
from toyrelu.runs.grid import cost
from toyrelu.runs.training import Outcome, StepsCallback

INSTALL = "pip install 'toyrelu[slurm]'"
POLL_S = 2.0  # how often the driver looks at its jobs (and renews the store's leases)


def submitit_module() -> Any:
    try:
        import submitit
    except ImportError:
        raise ClusterError(f"cluster: submitit is not installed; {INSTALL}") from None
    return submitit


class SlurmJobs:
    """Trains runs as SLURM jobs (module docstring) of at most ``time_min`` minutes each, in
    ``partition`` (default: the cluster's), at most ``max_jobs`` queued at once. CPU jobs hold
    one CPU and train their runs one after another; with ``use_gpu``, each batch of ``gpu`` is
    a job holding one GPU. ``executor``: a submitit executor to use instead of SLURM's."""

    def __init__(self, folder: str | Path, *, partition: str | None = None, time_min: int = 240,
                 runs_per_job: int = 8, max_jobs: int = 256, executor: Any = None):
        self.folder = Path(folder)
        self.partition = partition
        self.time_min = time_min
        self.runs_per_job = runs_per_job
        self.max_jobs = max_jobs
        self.executor = executor
        self.gpu: GpuBatches | None = None
        self.expected = cluster_node.versions()

    def use_gpu(self, gpu: GpuBatches | None) -> SlurmJobs:
        """Train the fused runs in ``gpu``'s batches, one job holding one GPU each."""
        self.gpu = gpu
        return self

    def resolve_device(self, device: str) -> str:
        """"cuda" only when asked for: the nodes of a partition cannot be seen from here."""
        if device not in ("auto", "cpu", "cuda"):
            raise ClusterError(f"device: {device!r} must be one of auto, cpu, cuda")
        return "cuda" if device == "cuda" else "cpu"

    def describe(self, device: str) -> str:
        part = f"partition {self.partition}, " if self.partition else ""
        kind = "one GPU batch" if device == "cuda" else f"up to {self.runs_per_job} runs"
        return (f"as SLURM jobs of {kind} each ({part}{self.time_min} min; job files in "
                f"{self.folder})")

    def check(self) -> None:
        """``ClusterError`` unless jobs can be submitted: submitit installed, and SLURM here
        (unless an executor was handed in)."""
        submitit_module()
        if self.executor is None and shutil.which("sbatch") is None:
            raise ClusterError("cluster: slurm needs sbatch, which is not on the PATH here")

    def _executor(self, gpus: int) -> Any:
        if self.executor is not None:
            executor = self.executor
        else:
            executor = submitit_module().AutoExecutor(self.folder, cluster="slurm")
            if self.partition:
                executor.update_parameters(slurm_partition=self.partition)
        executor.update_parameters(timeout_min=self.time_min, gpus_per_node=gpus,
                                   cpus_per_task=1)
        return executor

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        if not configs:
            return
        self.check()
        gpu = self.gpu
        cpu_runs = [c for c in configs if gpu is None or c.engine == "reference"]
        groups = [("cpu", cpu_runs[i:i + self.runs_per_job])
                  for i in range(0, len(cpu_runs), self.runs_per_job)]
        if gpu is not None:
            groups += [("gpu", b) for b in gpu.batches([c for c in configs
                                                         if c.engine != "reference"])]
        groups.sort(key=lambda g: -sum(cost(c) for c in g[1]))
        pending: dict[Any, list[RunConfig]] = {}
        try:
            yield from self._run(groups, on_steps, start, pending)
        finally:
            for job in pending:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)

    def _run(self, groups: list[tuple[str, list[RunConfig]]], on_steps: StepsCallback,
             start: StartCallback | None, pending: dict[Any, list[RunConfig]]
             ) -> Iterator[Outcome]:
        todo = list(reversed(groups))
        while todo or pending:
            while todo and len(pending) < self.max_jobs:
                kind, group = todo.pop()
                accepted = [c for c in group if start is None or start(c)]
                if not accepted:
                    continue
                if kind == "cpu":
                    job = self._executor(0).submit(cluster_node.train_runs, self.expected,
                                                   accepted)
                else:
                    job = self._executor(1).submit(cluster_node.train_batch, self.expected,
                                                   self.gpu, accepted)
                pending[job] = accepted
            done = [job for job in pending if job.done()]
            if not done:
                on_steps(next(iter(pending.values()))[0].run_id, 0)  # renews the leases
                time.sleep(POLL_S)
            for job in done:
                configs = pending.pop(job)
                for outcome in self._collect(job, configs):
                    on_steps(outcome.run_id, next(c.steps for c in configs
                                                  if c.run_id == outcome.run_id))
                    yield outcome

    def _collect(self, job: Any, configs: list[RunConfig]) -> list[Outcome]:
        try:
            value = job.result()
        except Exception as exc:  # noqa: BLE001 - submitit's errors: the job failed or vanished
            first = " ".join(str(exc).split())[:300]
            return list(cluster_node.lost_outcomes(configs, f"lost: SLURM job {job.job_id} "
                                      f"({type(exc).__name__}: {first})"))
        if isinstance(value, cluster_node.Mismatch):
            raise ClusterError(cluster_node.describe(value, self.expected))
        return list(value)

"""``SlurmJobs``: an executor that trains a sweep's runs as SLURM jobs through submitit.

The jobs are cut by ``cluster_jobs``: CPU runs, largest first, as many to a job as fill a
share of its time limit by the cost model's estimate, one CPU each; GPU batches ``gpus`` to a
job, one GPU and one CPU for each; every job asks for the memory of what it holds. The
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
import io
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from toyrelu.core.config import RunConfig
from toyrelu.runs import cluster_jobs, cluster_node
from toyrelu.runs.cluster_node import one_line
from toyrelu.runs.cluster_ray import ClusterError, optional_module
from toyrelu.runs.executors import GpuBatches, StartCallback, split
from toyrelu.runs.training import Outcome, StepsCallback

INSTALL = "pip install 'toyrelu[slurm]'"
POLL_S = 2.0  # how often the driver looks at its jobs (and renews the store's leases)


def submitit_module() -> Any:
    return optional_module("submitit", INSTALL)


class SlurmJobs:
    """Trains runs as SLURM jobs (module docstring) of at most ``time_min`` minutes each, in
    ``partition`` (default: the cluster's), at most ``max_jobs`` queued at once. CPU jobs hold
    one CPU and train their runs one after another, at most ``max_runs_per_job`` of them; with
    ``use_gpu``, ``gpu``'s batches train ``gpus`` to a job, one on each of its GPUs. ``log``,
    if given, receives a line naming the jobs when a sweep starts, and a warning for CPU runs
    estimated past the time limit (``cluster_jobs.over_time``). ``executor``: a submitit
    executor to use instead of SLURM's."""

    def __init__(self, folder: str | Path, *, partition: str | None = None, time_min: int = 240,
                 gpus: int = 1, max_runs_per_job: int = cluster_jobs.MAX_RUNS_PER_JOB,
                 max_jobs: int = 256, log: TextIO | None = None, executor: Any = None):
        self.folder = Path(folder)
        self.partition = partition
        self.time_min = time_min
        self.gpus = gpus
        self.max_runs_per_job = max_runs_per_job
        self.max_jobs = max_jobs
        self.log = log
        self.executor = executor
        self.gpu: GpuBatches | None = None
        self.expected = cluster_node.versions()

    def use_gpu(self, gpu: GpuBatches | None) -> SlurmJobs:
        """Train the fused runs in ``gpu``'s batches, ``gpus`` batches to a job."""
        self.gpu = gpu
        return self

    def resolve_device(self, device: str) -> str:
        """"cuda" only when asked for (a known ``--device``, ``resources.known_device``): the
        nodes of a partition cannot be seen from here."""
        return "cuda" if device == "cuda" else "cpu"

    def describe(self, device: str) -> str:
        part = f"partition {self.partition}, " if self.partition else ""
        if device == "cuda":
            gpus = "one GPU" if self.gpus == 1 else f"{self.gpus} GPUs, one batch each"
            held = f"of GPU batches on {gpus}"
        else:
            fill = cluster_jobs.job_seconds(self.time_min) / 60.0
            held = f"of CPU runs filling up to {fill:g} min each by the cost model"
        return (f"as SLURM jobs {held} ({part}{self.time_min} min; job files in "
                f"{self.folder})")

    def plan(self, configs: Sequence[RunConfig]) -> list[cluster_jobs.Job]:
        """The jobs of ``configs`` (``cluster_jobs``), largest first: reference runs are CPU
        runs, the others batched for the GPU under ``use_gpu``."""
        cpu_runs, batches = split(configs, self.gpu)
        jobs = (cluster_jobs.cpu_jobs(cpu_runs, self.time_min, self.max_runs_per_job)
                + cluster_jobs.gpu_jobs(batches, self.gpus))
        return sorted(jobs, key=lambda job: -job.cost)

    def check(self) -> None:
        """``ClusterError`` unless jobs can be submitted: submitit installed, and SLURM's
        sbatch and srun here (unless an executor was handed in)."""
        submitit_module()
        missing = [] if self.executor is not None else [
            tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise ClusterError(f"cluster: slurm needs sbatch and srun; {' and '.join(missing)} "
                               f"{verb} not on the PATH here")

    def _executor(self, job: cluster_jobs.Job) -> Any:
        if self.executor is not None:
            executor = self.executor
        else:
            executor = submitit_module().AutoExecutor(self.folder, cluster="slurm")
            if self.partition:
                executor.update_parameters(slurm_partition=self.partition)
        executor.update_parameters(timeout_min=self.time_min, gpus_per_node=job.gpus,
                                   cpus_per_task=job.cpus, mem_gb=cluster_jobs.mem_gb(job))
        return executor

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        if not configs:
            return
        self.check()
        jobs = self.plan(configs)
        self._tell(jobs)
        pending: dict[Any, list[RunConfig]] = {}
        try:
            yield from self._run(jobs, on_steps, start, pending)
        finally:
            for job in pending:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)

    def _tell(self, jobs: list[cluster_jobs.Job]) -> None:
        """The line naming the jobs, then the warnings, on ``log``."""
        if self.log is None:
            return
        cpu = [job for job in jobs if not job.gpu]
        kinds = []
        if cpu:
            longest = max(sum(map(cluster_jobs.run_seconds, job.configs)) for job in cpu)
            kinds.append(f"{len(cpu)} of CPU runs (the longest estimated at "
                         f"{_duration(longest)} on one CPU)")
        if len(cpu) < len(jobs):
            gpus = max(job.gpus for job in jobs)
            held = "one GPU batch" if gpus == 1 else f"up to {gpus} GPU batches, one per GPU"
            kinds.append(f"{len(jobs) - len(cpu)} of {held}")
        runs = sum(len(job.configs) for job in jobs)
        print(f"toyrelu: {runs} runs to train in {len(jobs)} SLURM job"
              f"{'s' * (len(jobs) > 1)}: {', '.join(kinds)}", file=self.log)
        for line in cluster_jobs.over_time([c for job in cpu for c in job.configs],
                                           self.time_min):
            print(line, file=self.log)

    def _run(self, jobs: list[cluster_jobs.Job], on_steps: StepsCallback,
             start: StartCallback | None, pending: dict[Any, list[RunConfig]]
             ) -> Iterator[Outcome]:
        todo = list(reversed(jobs))
        refused: list[cluster_jobs.Job] = []  # claimed, but SLURM took them not yet
        waiting = False  # SLURM refused a job: none is submitted until a queued one ends
        noted = False
        while todo or refused or pending:
            while (todo or refused) and len(pending) < self.max_jobs and not waiting:
                job = refused.pop() if refused else self._accepted(todo.pop(), start)
                if job is None:
                    continue
                try:
                    submitted = self._submit(job)
                except ClusterError as exc:
                    if not pending:
                        raise
                    # A limit on queued jobs, say: submitted again once a queued job ends.
                    if self.log is not None and not noted:
                        print(f"toyrelu: note: {exc}; trying again as queued jobs end",
                              file=self.log)
                    noted = waiting = True
                    refused.append(job)
                    break
                pending[submitted] = job.configs
            if not pending:
                continue  # another sweep holds every run left to send
            done = [job for job in pending if job.done()]
            if not done:
                on_steps(next(iter(pending.values()))[0].run_id, 0)  # renews the leases
                time.sleep(POLL_S)
            for job in done:
                waiting = False
                configs = pending.pop(job)
                yield from cluster_node.delivered(self._collect(job, configs), configs,
                                                  on_steps)

    def _submit(self, job: cluster_jobs.Job) -> Any:
        """Submit ``job``; SLURM's refusal (no such partition, more GPUs than a node holds, a
        limit on queued jobs) is a ``ClusterError`` naming sbatch's answer in one line.
        submitit prints that answer itself, so it is held here."""
        held = io.StringIO()
        try:
            with contextlib.redirect_stderr(held):
                if job.gpu:
                    return self._executor(job).submit(
                        cluster_node.train_batches, self.expected, self.gpu,
                        [list(batch) for batch in job.batches])
                return self._executor(job).submit(cluster_node.train_runs, self.expected,
                                                  job.configs)
        except Exception as exc:  # noqa: BLE001 - sbatch's refusals come as several types
            why = one_line(exc, 300) or type(exc).__name__
            raise ClusterError(f"cluster: SLURM did not take a job ({why})") from None

    @staticmethod
    def _accepted(job: cluster_jobs.Job, start: StartCallback | None
                  ) -> cluster_jobs.Job | None:
        """``job`` with the runs that ``start`` accepts right before it is submitted (a batch
        none of whose runs it accepts is dropped, and its GPU with it), or None."""
        batches = tuple(kept for batch in job.batches
                        if (kept := tuple(c for c in batch if start is None or start(c))))
        return cluster_jobs.Job(batches, job.gpu) if batches else None

    def _collect(self, job: Any, configs: list[RunConfig]) -> list[Outcome]:
        failed = submitit_module().core.utils.FailedJobError
        try:
            value = job.result()
        except failed as exc:
            # The job's own code raised (out of GPU memory, say): the machine failed the runs,
            # as Ray's tasks and local workers report it. submitit quotes the trace, whose
            # last line names the error.
            trace = [line for line in str(exc).split("\n") if line.strip(" -")]
            last = next((line for line in reversed(trace) if ":" in line and not
                         line.startswith(("You can check", "or at paths", "  - "))), "")
            return list(cluster_node.error_outcomes(
                configs, one_line(f"SLURM job {job.job_id} raised {last.strip()}", 300)))
        except Exception as exc:  # noqa: BLE001 - the job died, ran out of time, vanished
            return list(cluster_node.lost_outcomes(configs, one_line(
                f"lost: SLURM job {job.job_id} ({type(exc).__name__}: {exc})", 300)))
        if isinstance(value, cluster_node.Mismatch):
            raise ClusterError(cluster_node.describe(value, self.expected))
        return list(value)


def _duration(seconds: float) -> str:
    """An estimate in whole minutes, rounded up, or in seconds under a minute."""
    if seconds < 0.05:
        return "under 0.1 s"
    return f"{seconds:.1f} s" if seconds < 60 else f"{math.ceil(seconds / 60)} min"

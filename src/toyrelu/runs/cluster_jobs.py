"""How ``cluster_slurm.SlurmJobs`` cuts a sweep's runs into SLURM jobs, and what each job asks
SLURM for.

- CPU runs, largest first, fill a job until its estimated time on one CPU (``run_seconds``, the
  cost model of ``runs.grid``) would pass ``JOB_MINUTES`` or ``TIME_SHARE`` of the time limit,
  whichever is shorter, or until it holds ``MAX_RUNS_PER_JOB`` runs; a run alone over that gets
  a job of its own. A job that ran out of time would fail the same way every time the sweep is
  rerun, since the same runs would be grouped again.
- GPU batches (``GpuBatches.batches``), largest first, ``gpus`` to a job, one GPU each: so the
  batches of a job cost about the same, and its GPUs finish about together.
- Each job asks for the memory of what it holds at once (``job_bytes``), so that SLURM places it
  on a node that can hold it and does not kill it for memory.

Light: no submitit, no torch; the estimates need only the configs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from toyrelu.core.config import RunConfig, fmt_T
from toyrelu.runs.grid import cost
from toyrelu.runs.limits import MARGIN, PROCESS_BYTES, Sizes, config_bytes, result_bytes
from toyrelu.runs.presets import CPU_PAIRS_PER_SECOND

# The share of the time limit that a CPU job's estimate may fill. The estimate is of the
# machine the cost model was fitted on (docs/engines.md, "Tuned constants": within 10% for
# most settings, up to 48% off for a few), and a job also starts Python and loads, on a fresh
# node compiles, its kernels: half leaves room for a node about twice as slow as that one.
TIME_SHARE = 0.5
# The estimated length a CPU job is filled to at most, whatever the time limit: jobs this long
# start Python and load their kernels (seconds) a small part of the time, and are many enough
# to run side by side on a cluster's free CPUs, where one long job would train them in turn.
JOB_MINUTES = 20.0
# Runs in one CPU job at most, however small: a lost job loses at most these, and a job's runs
# come back together only when it ends.
MAX_RUNS_PER_JOB = 32
# Copies of a job's results at once: the outcomes, their pickle, and, for batches trained in
# child processes, the job's own copy of what a child sends back.
RESULT_COPIES = 3
# Settings named one per line by ``over_time``; the others share a line.
MAX_WARNINGS = 10


@dataclass(frozen=True)
class Job:
    """One SLURM job: ``batches`` holds one list of CPU runs trained one after another
    (``gpu`` False), or up to one GPU batch per GPU of the job, trained at once (``gpu``)."""

    batches: tuple[tuple[RunConfig, ...], ...]
    gpu: bool = False

    @property
    def configs(self) -> list[RunConfig]:
        return [c for batch in self.batches for c in batch]

    @property
    def gpus(self) -> int:
        return len(self.batches) if self.gpu else 0

    @property
    def cpus(self) -> int:
        """One CPU per GPU, each feeding its GPU's kernel launches; one for CPU runs."""
        return max(1, self.gpus)

    @property
    def cost(self) -> float:
        return sum(cost(c) for c in self.configs)


def run_seconds(config: RunConfig) -> float:
    """A run's estimated time on one CPU core: its ``grid.cost`` at ``CPU_PAIRS_PER_SECOND``."""
    return cost(config) / CPU_PAIRS_PER_SECOND


def job_seconds(time_min: float) -> float:
    """The estimated time a CPU job is filled to: ``JOB_MINUTES``, or ``TIME_SHARE`` of a
    time limit of ``time_min`` minutes when that is shorter."""
    return 60.0 * min(JOB_MINUTES, TIME_SHARE * time_min)


def cpu_jobs(configs: Sequence[RunConfig], time_min: float,
             max_runs: int = MAX_RUNS_PER_JOB) -> list[Job]:
    """The CPU runs of ``configs`` in jobs, largest first: each job takes the next runs while
    its summed ``run_seconds`` stays within ``job_seconds(time_min)`` and it holds at most
    ``max_runs``, with at least one run (next fit, decreasing: with the runs sorted, each job
    but the last is filled to within the size of its own smallest run)."""
    budget = job_seconds(time_min)
    jobs: list[tuple[RunConfig, ...]] = []
    current: list[RunConfig] = []
    seconds = 0.0
    for config in sorted(configs, key=cost, reverse=True):
        need = run_seconds(config)
        if current and (seconds + need > budget or len(current) == max_runs):
            jobs.append(tuple(current))
            current, seconds = [], 0.0
        current.append(config)
        seconds += need
    if current:
        jobs.append(tuple(current))
    return [Job((runs,)) for runs in jobs]


def gpu_jobs(batches: Sequence[Sequence[RunConfig]], gpus: int) -> list[Job]:
    """GPU ``batches`` in jobs of ``gpus`` batches each (the last may hold fewer), largest
    first, so that each job's batches are neighbours in cost."""
    ordered = sorted((tuple(b) for b in batches if b), key=lambda b: -sum(cost(c) for c in b))
    return [Job(tuple(ordered[i:i + gpus]), gpu=True) for i in range(0, len(ordered), gpus)]


def job_bytes(job: Job) -> float:
    """The host memory ``job`` needs at most, by ``limits.run_bytes``: a process
    (``PROCESS_BYTES``) per batch trained in a child process, and the job's own; the runs held at
    once, with ``limits.MARGIN`` (one CPU run at a time; every run of its GPU batches); and
    ``RESULT_COPIES`` of all its runs' results, which come back together at the job's end."""
    device = "cuda" if job.gpu else "cpu"
    held = [config_bytes(c, device) for c in job.configs]
    processes = 1 + (job.gpus if job.gpus > 1 else 0)
    runs = sum(held) if job.gpu else max(held, default=0.0)
    results = sum(result_bytes(Sizes.of(c, device)) for c in job.configs)
    return processes * PROCESS_BYTES + MARGIN * runs + RESULT_COPIES * results


def mem_gb(job: Job) -> int:
    """``job_bytes`` in whole GiB, rounded up (SLURM's ``--mem`` unit)."""
    return max(1, math.ceil(job_bytes(job) / 2**30))


def over_time(configs: Sequence[RunConfig], time_min: float) -> list[str]:
    """One line per setting of CPU runs whose own ``run_seconds`` is over ``time_min`` minutes,
    naming T and m, the estimate and the number of such runs (seeds share a line), longest
    first; past ``MAX_WARNINGS`` settings, one line counts the rest.

    A warning, not a refusal: the estimate is of the machine the cost model was fitted on, and
    a cluster's nodes may be faster; and only the runs left to train count, which are known
    once the store is open, after the command line has judged its input. A run that does pass
    the limit comes back lost, and the line has said which and what time it would need."""
    found: dict[tuple[str, int, int], int] = {}
    for config in configs:
        seconds = run_seconds(config)
        if seconds > time_min * 60.0:
            key = (fmt_T(config.n_train), config.n_hidden, math.ceil(seconds / 60.0))
            found[key] = found.get(key, 0) + 1
    ordered = sorted(found.items(), key=lambda kv: -kv[0][2])
    lines = []
    for (T, m, minutes), count in ordered[:MAX_WARNINGS]:
        runs, jobs = ((f"{count} runs at T = {T}, m = {m} are estimated at {minutes} min each",
                       "their jobs") if count > 1 else
                      (f"a run at T = {T}, m = {m} is estimated at {minutes} min", "its job"))
        lines.append(f"toyrelu: warning: {runs} on one CPU (of the cost model's machine), over "
                     f"the {time_min:g} min of --slurm-time: {jobs} may run out of time; a "
                     "longer --slurm-time avoids it")
    if len(ordered) > MAX_WARNINGS:
        rest = ordered[MAX_WARNINGS:]
        lines.append(f"toyrelu: warning: and {sum(count for _, count in rest)} runs of "
                     f"{len(rest)} other settings over the {time_min:g} min, up to "
                     f"{rest[0][0][2]} min each")
    return lines

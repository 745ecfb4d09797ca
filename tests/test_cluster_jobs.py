"""How SLURM jobs are cut (toyrelu.runs.cluster_jobs): CPU runs fill, by the cost model, the
shorter of JOB_MINUTES and half the time limit, largest first, a capped number to a job; GPU
batches K to a job, neighbours in cost; the memory a job asks for covers what it holds; runs
estimated past the limit are named; a job's batches are spread over the GPUs SLURM names. No
training, no submitit."""

from __future__ import annotations

import math

import pytest

from toyrelu.core.config import RunConfig
from toyrelu.runs import cluster_jobs, cluster_node
from toyrelu.runs.cluster_jobs import Job, cpu_jobs, gpu_jobs, job_bytes, mem_gb, run_seconds
from toyrelu.runs.grid import cost
from toyrelu.runs.limits import MARGIN, PROCESS_BYTES, Sizes, result_bytes, run_bytes

BASE = RunConfig(n_features=1000, n_hidden=2, sparsity=0.99, steps=2000, n_test=200)
# Costs spread over two orders of magnitude, two seeds each.
RUNS = [BASE.replace(n_train=T, n_hidden=m, seed=s) for T in (100, 1000, 10_000)
        for m in (2, 4) for s in (0, 1)]
# The paper's largest T at m = 2 (n = 10,000, S = 0.999, 50,000 steps).
PAPER = RunConfig(n_features=10_000, n_hidden=2, sparsity=0.999, steps=50_000, n_train=500_000)


def test_a_cpu_job_takes_the_next_runs_while_they_fill_half_the_time_limit() -> None:
    time_min = 2.5 * run_seconds(max(RUNS, key=cost)) / 60
    budget = cluster_jobs.TIME_SHARE * time_min * 60
    assert cluster_jobs.job_seconds(time_min) == budget  # a short limit: half of it
    jobs = cpu_jobs(RUNS, time_min)
    runs = [job.configs for job in jobs]
    assert len(jobs) > 2 and all(not job.gpu and job.cpus == 1 for job in jobs)
    # Every run once, largest first, in jobs of consecutive runs.
    assert [c for job in runs for c in job] == sorted(RUNS, key=cost, reverse=True)
    assert all(sum(map(run_seconds, job)) <= budget for job in runs)
    # Next fit: each job stopped where its next run would have passed the budget.
    for job, following in zip(runs, runs[1:], strict=False):
        assert sum(map(run_seconds, job)) + run_seconds(following[0]) > budget


def test_a_run_over_the_share_has_a_job_of_its_own_and_a_job_holds_at_most_max_runs() -> None:
    time_min = 1.5 * run_seconds(max(RUNS, key=cost)) / 60  # the largest fill 2/3 of it
    budget = cluster_jobs.TIME_SHARE * time_min * 60
    over = [c for c in RUNS if run_seconds(c) > budget]
    jobs = cpu_jobs(RUNS, time_min)
    assert len(over) == 2  # the two seeds of the largest setting
    assert [job.configs for job in jobs if set(job.configs) & set(over)] == [[c] for c in over]
    tiny = [BASE.replace(seed=s, steps=10) for s in range(7)]
    assert [len(job.configs) for job in cpu_jobs(tiny, 240, max_runs=3)] == [3, 3, 1]
    assert [len(job.configs) for job in cpu_jobs(tiny, 240)] == [7]
    assert cpu_jobs([], 240) == []


def test_a_long_time_limit_still_cuts_jobs_of_job_minutes() -> None:
    # The paper's largest run alone is over 20 minutes: a job of its own. Runs of 6 minutes
    # each (estimated) go three to a job under the 20 minutes, not twenty under half of 240.
    assert cluster_jobs.job_seconds(240) == 60 * cluster_jobs.JOB_MINUTES == 1200
    assert cluster_jobs.job_seconds(10) == 300
    six = [c for c in (BASE.replace(n_train=10_000, steps=s) for s in range(150_000, 250_000,
                                                                           1_000))
           if 350 < run_seconds(c) <= 400][0]
    runs = [six.replace(seed=s) for s in range(20)]
    assert [len(job.configs) for job in cpu_jobs(runs, 240)] == [3] * 6 + [2]
    assert [job.configs for job in cpu_jobs([PAPER, *runs[:2]], 240)][0] == [PAPER]


def test_gpu_batches_go_k_to_a_job_largest_first() -> None:
    batches = [[c] for c in RUNS[::2]]  # six batches of one run, of six costs
    jobs = gpu_jobs(batches + [[]], 4)
    ordered = sorted(RUNS[::2], key=cost, reverse=True)
    assert [job.batches for job in jobs] == [tuple((c,) for c in ordered[:4]),
                                             tuple((c,) for c in ordered[4:])]
    assert [(job.gpus, job.cpus) for job in jobs] == [(4, 4), (2, 2)]
    assert jobs[0].cost == sum(cost(c) for c in ordered[:4])


def test_a_job_asks_for_the_memory_of_what_it_holds_at_once() -> None:
    def need(c: RunConfig, device: str = "cpu") -> float:
        return sum(run_bytes(Sizes.of(c, device)).values())

    # One CPU run at a time, but every result until the job ends.
    runs = tuple(PAPER.replace(n_train=T) for T in (1000, 10_000, 100_000))
    one = Job((runs[-1:],))
    assert job_bytes(one) == (PROCESS_BYTES + MARGIN * need(runs[-1])
                              + cluster_jobs.RESULT_COPIES * result_bytes(Sizes.of(runs[-1])))
    three = Job((runs,))
    assert job_bytes(three) - job_bytes(one) == pytest.approx(
        cluster_jobs.RESULT_COPIES * sum(result_bytes(Sizes.of(c)) for c in runs[:2]))
    # A GPU batch holds all its runs; two batches in one job need what two jobs of one batch
    # need, and the process of the job that spawns one for each.
    a, b = Job((runs[:2],), gpu=True), Job((runs[2:],), gpu=True)
    both = Job((runs[:2], runs[2:]), gpu=True)
    held = MARGIN * sum(need(c, "cuda") for c in runs[:2])
    results = cluster_jobs.RESULT_COPIES * sum(result_bytes(Sizes.of(c, "cuda")) for c in runs[:2])
    assert job_bytes(a) == pytest.approx(PROCESS_BYTES + held + results)
    assert job_bytes(both) == pytest.approx(job_bytes(a) + job_bytes(b) + PROCESS_BYTES)
    # In whole GiB, rounded up: 512 MiB of process and a small run ask for 1.
    assert mem_gb(one) * 2**30 >= job_bytes(one) > (mem_gb(one) - 1) * 2**30
    assert mem_gb(Job(((BASE,),))) == 1


def test_runs_estimated_past_the_time_limit_are_named_once_per_setting() -> None:
    # PAPER's cost: 2.5e14 (example, feature) pairs in the split-cell step at 0.74, 2.5e11
    # nonzeros at 63, 5e8 feature-steps at 62 and the run's 3.5e8: 2.0078e14 pairs of the fused
    # step at m = 2, at 7.4e9 a second 27,133 s = 452.2 min.
    assert run_seconds(PAPER) / 60 == pytest.approx(452.2, abs=0.05)
    configs = [PAPER.replace(seed=s) for s in range(3)] + [PAPER.replace(n_train=10_000)]
    assert cluster_jobs.over_time(configs, 240) == [
        "toyrelu: warning: 3 runs at T = 500,000, m = 2 are estimated at 453 min each on one CPU "
        "(of the cost model's machine), over the 240 min of --slurm-time: their jobs may run out "
        "of time; a longer --slurm-time avoids it"]
    assert cluster_jobs.over_time(configs[:1], 60)[0].startswith(
        "toyrelu: warning: a run at T = 500,000, m = 2 is estimated at 453 min on one CPU")
    assert cluster_jobs.over_time([PAPER.replace(n_train=math.inf)], 1)[0].startswith(
        "toyrelu: warning: a run at T = ∞, m = 2 is estimated at ")
    assert cluster_jobs.over_time(configs, 453) == []
    many = [PAPER.replace(n_hidden=m) for m in range(2, 14)]
    lines = cluster_jobs.over_time(many, 60)
    assert len(lines) == cluster_jobs.MAX_WARNINGS + 1
    assert lines[-1].startswith("toyrelu: warning: and 2 runs of 2 other settings over the 60 "
                                "min, up to ")


def test_a_jobs_batches_take_the_gpus_slurm_names_in_turn(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert cluster_node.job_gpus(2) == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert cluster_node.job_gpus(2) == ["7", "7"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert cluster_node.job_gpus(3) == ["0", "1", "2"]

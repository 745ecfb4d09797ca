"""The SLURM executor (toyrelu.runs.cluster_slurm) on submitit's local executor, since no SLURM is
here: CPU runs in jobs of two and GPU batches (Triton's interpreter), one or two to a job, store
the in-process numbers bit for bit, and so do jobs in submitit's debug executor; each job asks
for its GPUs, CPUs and memory; a job killed mid-run gives lost rows that a rerun trains, and a
failed GPU process of a job loses its batch alone; bad input on the command line is one line and
exit code 2."""
from __future__ import annotations

import gc
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # inherited by the jobs' processes
submitit = pytest.importorskip("submitit")
pytest.importorskip("triton")


from helpers import assert_same_runs  # noqa: E402
from toyrelu.cli import main  # noqa: E402
from toyrelu.core.config import RunConfig  # noqa: E402
from toyrelu.runs import cluster_jobs, cluster_node, cluster_slurm  # noqa: E402
from toyrelu.runs.cluster_slurm import SlurmJobs  # noqa: E402
from toyrelu.runs.executors import GpuBatches, InProcess  # noqa: E402
from toyrelu.runs.store import Store  # noqa: E402
from toyrelu.runs.sweep import run_sweep  # noqa: E402

BASE = RunConfig(n_features=1000, n_hidden=2, sparsity=0.99, n_train=300, steps=1000, n_test=200)
RUNS = [BASE.replace(seed=s) for s in range(4)]
# The GPU sweep of tests/test_gpu.py, in two batches.
GPU_BASE = RunConfig(n_features=24, n_hidden=2, sparsity=0.8, steps=10, n_test=50, batch_size=6,
                     lr=1e-2)
GPU_RUNS = [GPU_BASE.replace(n_train=T, seed=s) for T in (3, 9, float("inf")) for s in (0, 1)]


def gpu_batches() -> GpuBatches:
    return GpuBatches(device="cuda" if torch.cuda.is_available() else "cpu", max_rows=20)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local jobs end within seconds and on a local disk: the driver looks at them every 0.2 s
    rather than SLURM's 2 s."""
    monkeypatch.setattr(cluster_slurm, "POLL_S", 0.2)


class Recording:
    """A submitit executor that keeps the jobs it submits and the parameters of each."""

    def __init__(self, folder: Path) -> None:
        self.executor = submitit.LocalExecutor(folder)
        self.jobs: list[Any] = []
        self.parameters: list[dict[str, Any]] = []
        self.current: dict[str, Any] = {}

    def update_parameters(self, **kwargs: Any) -> None:
        self.executor.update_parameters(**kwargs)
        self.current.update(kwargs)

    def submit(self, *args: Any) -> Any:
        job = self.executor.submit(*args)
        # A killed local job leaves no result file to wait for, where submitit would give a
        # shared filesystem 15 s to show it.
        job._results_timeout_s = 0
        self.jobs.append(job)
        self.parameters.append(dict(self.current))
        return job


def expected(path: Path, configs: list[RunConfig], runner: Any) -> Path:
    with Store(path) as store:
        assert run_sweep(configs, store, runner).ok == len(configs)
    return path


@pytest.fixture(scope="module")
def cpu_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUNS trained in this process, one after another."""
    return expected(tmp_path_factory.mktemp("cpu") / "a.sqlite", RUNS, InProcess())


@pytest.fixture(scope="module")
def gpu_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GPU_RUNS trained in this process, batch after batch."""
    return expected(tmp_path_factory.mktemp("gpu") / "b.sqlite", GPU_RUNS, gpu_batches())


def test_jobs_store_the_in_process_numbers(tmp_path: Path, cpu_store: Path,
                                           gpu_store: Path) -> None:
    recording, log = Recording(tmp_path / "jobs"), io.StringIO()
    jobs = SlurmJobs(tmp_path / "jobs", max_runs_per_job=2, log=log, executor=recording)
    with Store(tmp_path / "cpu.sqlite") as store:
        assert run_sweep(RUNS, store, jobs).ok == len(RUNS)
    assert_same_runs(tmp_path / "cpu.sqlite", cpu_store)
    # Two jobs of two runs each, one CPU each; the line names them and the longest estimate.
    longest = max(sum(map(cluster_jobs.run_seconds, job.configs)) for job in jobs.plan(RUNS))
    assert log.getvalue() == (f"toyrelu: 4 runs to train in 2 SLURM jobs: 2 of CPU runs (the "
                              f"longest estimated at {longest:.1f} s on one CPU)\n")
    mem = cluster_jobs.mem_gb(jobs.plan(RUNS)[0])
    assert recording.parameters == 2 * [{"timeout_min": 240, "gpus_per_node": 0,
                                         "cpus_per_task": 1, "mem_gb": mem}]
    jobs.use_gpu(gpu_batches())
    with Store(tmp_path / "gpu.sqlite") as store:
        assert run_sweep(GPU_RUNS, store, jobs).ok == len(GPU_RUNS)
    assert_same_runs(tmp_path / "gpu.sqlite", gpu_store)
    assert [p["gpus_per_node"] for p in recording.parameters[2:]] == [1, 1]
    assert log.getvalue().endswith("toyrelu: 6 runs to train in 2 SLURM jobs: 2 of one GPU "
                                   "batch\n")


def test_jobs_of_two_gpus_train_a_batch_on_each_and_store_the_in_process_numbers(
    tmp_path: Path, gpu_store: Path
) -> None:
    # The two batches share one job, each trained in a child process of its own.
    recording, log = Recording(tmp_path / "jobs"), io.StringIO()
    jobs = SlurmJobs(tmp_path / "jobs", gpus=2, log=log,
                     executor=recording).use_gpu(gpu_batches())
    (job,) = jobs.plan(GPU_RUNS)
    assert (job.gpus, job.cpus, len(job.configs)) == (2, 2, len(GPU_RUNS))
    with Store(tmp_path / "gpu.sqlite") as store:
        assert run_sweep(GPU_RUNS, store, jobs).ok == len(GPU_RUNS)
    assert recording.parameters == [{"timeout_min": 240, "gpus_per_node": 2,
                                      "cpus_per_task": 2, "mem_gb": cluster_jobs.mem_gb(job)}]
    assert log.getvalue() == ("toyrelu: 6 runs to train in 1 SLURM job: 1 of up to 2 GPU "
                              "batches, one per GPU\n")
    assert_same_runs(tmp_path / "gpu.sqlite", gpu_store)


class FailingBatches(GpuBatches):
    """GPU batches whose training raises for a batch that holds seed 1, and whose process dies
    for one that holds seed 2."""

    def train(self, batch: list[RunConfig], on_steps: Any) -> Any:
        if any(c.seed == 1 for c in batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if any(c.seed == 2 for c in batch):
            os._exit(1)
        return super().train(batch, on_steps)


def test_a_gpu_process_that_raises_or_dies_stops_its_batch_alone() -> None:
    gpu = FailingBatches(device=gpu_batches().device)
    batches = [[GPU_BASE.replace(n_train=3, seed=s)] for s in (0, 1, 2)]
    outcomes = cluster_node.train_batches(cluster_node.versions(), gpu, batches)
    assert isinstance(outcomes, list)
    # Raised: the machine failed the runs (as on Ray); died: the cluster lost them.
    assert [o.metrics["status"] for o in outcomes] == ["ok", "error", "lost"]
    gpus = cluster_node.job_gpus(3)
    assert outcomes[1].metrics["error"] == (
        f"the process of GPU {gpus[1]} raised RuntimeError: CUDA error: an illegal memory "
        "access was encountered")
    assert outcomes[2].metrics["error"].startswith(
        f"lost: the process of GPU {gpus[2]} died (")
    assert [o.run_id for o in outcomes] == [b[0].run_id for b in batches]
    # The batch that trained in its child has the numbers of training it here, bit for bit.
    (here,) = GpuBatches(device=gpu.device).train(batches[0], lambda run_id, k: None)
    assert drop_time(outcomes[0].metrics) == drop_time(here.metrics)
    assert outcomes[0].arrays.keys() == here.arrays.keys()
    assert all(np.array_equal(outcomes[0].arrays[k], here.arrays[k]) for k in here.arrays)


def test_a_job_whose_code_raises_stores_its_runs_as_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The job's process unpickles FailingBatches from this file.
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    recording = Recording(tmp_path / "jobs")
    jobs = SlurmJobs(tmp_path / "jobs", executor=recording).use_gpu(
        FailingBatches(device=gpu_batches().device, max_rows=20))
    runs = [GPU_BASE.replace(n_train=3, seed=1)]
    with Store(tmp_path / "e.sqlite") as store:
        report = run_sweep(runs, store, jobs)
        assert (report.errors, report.lost) == (1, 0)
        assert list(store.runs()["error"]) == [
            f"SLURM job {recording.jobs[0].job_id} raised RuntimeError: CUDA error: an illegal "
            "memory access was encountered"]


def drop_time(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_seconds"}


# submitit's debug executor leaves each job's log files open behind it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_jobs_in_submitits_debug_executor_store_the_in_process_numbers(
    tmp_path: Path, cpu_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The debug executor runs each job in this process when its result is asked for, as a user
    # checking a setup before submitting would; a job that raised would open pdb, so stdin is
    # empty to make such a failure end the test instead of waiting.
    jobs = SlurmJobs(tmp_path / "jobs", max_runs_per_job=3,
                     executor=submitit.DebugExecutor(tmp_path / "jobs"))
    with open(os.devnull) as empty, Store(tmp_path / "debug.sqlite") as store:
        monkeypatch.setattr(sys, "stdin", empty)
        assert run_sweep(RUNS, store, jobs).ok == len(RUNS)
        monkeypatch.undo()
    assert_same_runs(tmp_path / "debug.sqlite", cpu_store)
    gc.collect()  # the open log files are closed here, within this test's warning filter


def test_a_killed_job_gives_lost_runs_that_a_rerun_trains(tmp_path: Path,
                                                           cpu_store: Path) -> None:
    recording = Recording(tmp_path / "jobs")
    jobs = SlurmJobs(tmp_path / "jobs", max_runs_per_job=2, executor=recording)

    def kill_first_job() -> None:
        while not recording.jobs:
            time.sleep(0.01)
        os.kill(int(recording.jobs[0].job_id), signal.SIGKILL)

    killer = threading.Thread(target=kill_first_job)
    killer.start()
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        report = run_sweep(RUNS, store, jobs)
        killer.join()
        assert (report.ok, report.errors, report.lost) == (2, 0, 2)
        runs = store.runs()
        lost = runs[runs["status"] == "lost"]
        assert len(lost) == 2 and (runs["status"] == "ok").sum() == 2
        assert all(e.startswith(f"lost: SLURM job {recording.jobs[0].job_id} (")
                   for e in lost["error"])
        report = run_sweep(RUNS, store, SlurmJobs(tmp_path / "jobs", max_runs_per_job=2,
                                                  executor=submitit.LocalExecutor(tmp_path)))
        assert (report.ok, report.skipped, report.errors, report.lost) == (2, 2, 0, 0)
    assert_same_runs(path, cpu_store)


@pytest.mark.parametrize(("argv", "says"), [
    (["--cluster", "slurm"],
     "cluster: slurm needs sbatch and srun; sbatch and srun are not on the PATH here"),
    (["--cluster", "slurm", "--slurm-time", "0"],
     "slurm-time: 0 must be an integer >= 1 (minutes)"),
    (["--slurm-partition", "gpu"], "slurm-partition: goes with --cluster slurm"),
    (["--cluster", "ray", "--slurm-time", "5"], "slurm-time: goes with --cluster slurm"),
    (["--cluster", "slurm", "--device", "cuda", "--slurm-gpus", "0"],
     "slurm-gpus: 0 must be an integer >= 1 (GPUs per job)"),
    (["--slurm-gpus", "2"], "slurm-gpus: goes with --cluster slurm"),
    (["--cluster", "slurm", "--slurm-gpus", "2"],
     "slurm-gpus: goes with --device cuda (a CPU job holds one CPU)"),
])
def test_bad_slurm_input_is_one_line_and_exit_2(tmp_path: Path, capsys, argv: list[str],
                                                says: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    store = tmp_path / "s.sqlite"
    assert main(["sweep", "--preset", "smoke", "--store", str(store), *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"toyrelu: error: {says}\n"
    assert not store.exists()


def test_a_missing_submitit_says_what_to_install(tmp_path: Path, capsys,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)
    store = tmp_path / "s.sqlite"
    assert main(["sweep", "--preset", "smoke", "--store", str(store), "--cluster", "slurm"]) == 2
    assert capsys.readouterr().err == ("toyrelu: error: cluster: submitit is not installed; "
                                       "pip install 'toyrelu[slurm]'\n")
    assert not store.exists()


def test_a_job_sbatch_refuses_ends_the_sweep_in_one_line(tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # An sbatch that refuses every job, as SLURM does for a partition that does not exist:
    # submitit runs it and prints its answer; toyrelu says it once, in its own line, exit 2.
    sbatch = tmp_path / "bin" / "sbatch"
    sbatch.parent.mkdir()
    sbatch.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\n"
                      "echo 'sbatch: error: Batch job submission failed' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    (sbatch.parent / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it
    (sbatch.parent / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{sbatch.parent}{os.pathsep}{os.environ['PATH']}")
    store = tmp_path / "s.sqlite"
    code = main(["sweep", "--preset", "smoke", "--n-train", "3", "--seeds", "0", "--store",
                 str(store), "--cluster", "slurm", "--slurm-partition", "nope"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.endswith("toyrelu: error: cluster: SLURM did not take a job (sbatch: error: "
                        "invalid partition specified: nope sbatch: error: Batch job submission "
                        "failed)\n"), err
    assert "Traceback" not in err and err.count("invalid partition") == 1
    with Store(store, create=False) as kept:
        assert kept.runs().empty


class Refusing(Recording):
    """Refuses its second submission once, as SLURM does when the queued jobs reach a limit,
    and keeps how many of the jobs it took had ended at each submission tried."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.ended_at_try: list[int] = []

    def submit(self, *args: Any) -> Any:
        self.ended_at_try.append(sum(job.done() for job in self.jobs))
        if len(self.jobs) == 1 and len(self.ended_at_try) == 2:
            raise submitit.core.utils.FailedJobError("sbatch: error: QOSMaxSubmitJobPerUserLimit")
        return super().submit(*args)


def test_a_job_refused_while_others_are_queued_is_submitted_again_once_one_ends(
        tmp_path: Path, cpu_store: Path) -> None:
    log = io.StringIO()
    refusing = Refusing(tmp_path)
    jobs = SlurmJobs(tmp_path / "jobs", max_runs_per_job=2, log=log, executor=refusing)
    path = tmp_path / "b.sqlite"
    with Store(path) as store:
        report = run_sweep(RUNS, store, jobs)
    assert (report.ok, report.lost, report.errors) == (4, 0, 0) and len(refusing.jobs) == 2
    # Tried once more, after the first job ended, not at every look at the queue; said once.
    assert refusing.ended_at_try == [0, 0, 1]
    assert log.getvalue().count("toyrelu: note:") == 1
    assert ("toyrelu: note: cluster: SLURM did not take a job (sbatch: error: "
            "QOSMaxSubmitJobPerUserLimit); trying again as queued jobs end\n") in log.getvalue()
    assert_same_runs(path, cpu_store)


def test_runs_another_sweep_holds_are_skipped_and_no_job_is_submitted(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Store(path) as other:
        assert all(other.claim(c.run_id) for c in RUNS)
        recording = Recording(tmp_path / "jobs")
        with Store(path) as store:
            report = run_sweep(RUNS, store, SlurmJobs(tmp_path / "jobs", executor=recording))
        assert (report.ok, report.skipped) == (0, len(RUNS)) and recording.jobs == []


def test_slurm_without_srun_is_named_before_any_store(tmp_path: Path, capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    store = tmp_path / "s.sqlite"
    assert main(["sweep", "--preset", "smoke", "--store", str(store), "--cluster", "slurm"]) == 2
    assert capsys.readouterr().err == ("toyrelu: error: cluster: slurm needs sbatch and srun; "
                                       "srun is not on the PATH here\n")
    assert not store.exists()

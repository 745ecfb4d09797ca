"""The Ray executor (toyrelu.runs.cluster_ray): the same stored numbers as in-process, bit for
bit, on a local Ray instance and on a simulated two-node cluster (``ray.cluster_utils.Cluster``,
one node with a logical GPU that runs GPU batches in Triton's interpreter); faults (a worker
killed mid-run, retries exhausted, a node removed mid-sweep, a node with other versions joining,
the driver stopped by Ctrl-C and killed, then resumed); each task holding its runs' memory, and
runs no node can hold refused; bad input on the command line; and no Ray process left behind.

Every process of Ray started here carries an environment mark (``MARK``), so the tests kill and
count only their own processes, never another user's Ray. The tests run in file order: those
that start a Ray of their own come before the module's shared cluster is started.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Before Triton is imported, here and in every Ray worker, which inherit the environment.
    os.environ["TRITON_INTERPRET"] = "1"
ray = pytest.importorskip("ray")
pytest.importorskip("triton")

from helpers import assert_same_runs  # noqa: E402
from toyrelu.cli import main  # noqa: E402
from toyrelu.core.config import RunConfig  # noqa: E402
from toyrelu.runs import limits  # noqa: E402
from toyrelu.runs.cluster_node import versions  # noqa: E402
from toyrelu.runs.cluster_procs import end, marked  # noqa: E402
from toyrelu.runs.cluster_ray import RayCluster  # noqa: E402
from toyrelu.runs.executors import Executor, GpuBatches, InProcess  # noqa: E402
from toyrelu.runs.store import Store  # noqa: E402
from toyrelu.runs.sweep import run_sweep  # noqa: E402

MARK = "TOYRELU_TEST_RAY"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
OBJECT_STORE = 80 * 2**20  # small CI runners have a small /dev/shm
# Runs of about half a second each, so that a fault can land mid-run.
LONG_BASE = RunConfig(n_features=1000, n_hidden=2, sparsity=0.99, n_train=1000, steps=1000,
                      n_test=200)
LONG = [LONG_BASE.replace(seed=s) for s in range(6)]
# The GPU sweep of tests/test_gpu.py: fixed sets and a stream, in two batches.
GPU_BASE = RunConfig(n_features=24, n_hidden=2, sparsity=0.8, steps=10, n_test=50, batch_size=6,
                     lr=1e-2)
GPU_RUNS = [GPU_BASE.replace(n_train=T, seed=s) for T in (3, 9, float("inf")) for s in (0, 1)]
# Runs of the reference engine, which compile no kernels: a node's first task is a run.
REFERENCE = [RunConfig(engine="reference", n_features=20, n_hidden=2, sparsity=0.8, n_train=10,
                       steps=100, n_test=20, seed=s) for s in range(2)]
# The memory each LONG run's task holds, and the head node's: room for one such task only,
# where its two CPUs would take two.
LONG_TASK = int(limits.task_bytes([LONG_BASE]))
HEAD_MEMORY = LONG_TASK * 3 // 2
GPU_NODE_MEMORY = 4 * 2**30


@pytest.fixture(scope="module", autouse=True)
def mark() -> Iterator[str]:
    """The mark every process started meanwhile inherits; none is left at the end."""
    token = secrets.token_hex(6)
    os.environ[MARK] = token
    tmp = tempfile.mkdtemp(prefix="tr-ray-")  # short: Ray's socket paths have a length limit
    os.environ["RAY_TMPDIR"] = tmp
    yield token
    os.environ.pop(MARK)
    os.environ.pop("RAY_TMPDIR")
    left = wait_for(lambda: not marked(MARK, token), 10)
    end(lambda: marked(MARK, token))
    assert left, f"Ray processes were left behind: {described(marked(MARK, token))}"


def described(pids: list[int]) -> list[str]:
    """What each process is, for a failing test's message."""
    out = []
    for pid in pids:
        try:
            out.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r}")
        except OSError:
            pass
    return out


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stores of the config sets trained in this process (GPU batches on the interpreter)."""
    out = {}
    for name, configs, runner in (("long", LONG, InProcess()), ("gpu", GPU_RUNS, gpu_batches()),
                                  ("reference", REFERENCE, InProcess())):
        out[name] = tmp_path_factory.mktemp("expected") / f"{name}.sqlite"
        with Store(out[name]) as store:
            assert run_sweep(configs, store, runner).ok == len(configs)
    return out


def gpu_batches() -> GpuBatches:
    return GpuBatches(device=DEVICE, max_rows=20)


def sweep(path: Path, configs: list[RunConfig], runner: Executor):
    with Store(path) as store:
        return run_sweep(configs, store, runner)


def kill_training_worker(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker of this module seen training a run."""
    while not stop.is_set():
        for pid in marked(MARK, os.environ[MARK]):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::train_run"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


def with_worker_killed(fn: Callable[[], object]) -> list[int]:
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_training_worker, args=(killed, stop))
    killer.start()
    try:
        fn()
    finally:
        stop.set()
        killer.join()
    return killed


# Without a cluster of the module's: each starts and ends a Ray of its own.

@pytest.mark.parametrize(("argv", "says"), [
    (["--cluster", "dask"], "cluster: 'dask' is not a cluster (expected ray, ray:auto, "
                            "ray:HOST:PORT or slurm)"),
    (["--cluster", "ray:"], "cluster: 'ray:' is not a cluster"),
    (["--cluster", "ray:host"], "cluster: 'ray:host' is not a cluster"),
    (["--cluster", "ray:127.0.0.1:1"], "cluster: cannot reach a Ray cluster at 127.0.0.1:1"),
    (["--cluster", "ray", "--workers", "2"], "workers: --workers counts local processes"),
])
def test_bad_cluster_input_is_one_line_and_exit_2(tmp_path: Path, capsys, argv: list[str],
                                                  says: str) -> None:
    store = tmp_path / "s.sqlite"
    assert main(["sweep", "--preset", "smoke", "--store", str(store), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"toyrelu: error: {says}") and err.count("\n") == 1, err
    assert not store.exists()


def test_a_missing_ray_says_what_to_install(tmp_path: Path, capsys,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    for command in (["sweep", "--store", str(tmp_path / "s.sqlite")],
                    ["reproduce", "--out", str(tmp_path / "r")],
                    ["sensitivity", "--out", str(tmp_path / "v")]):
        assert main([*command, "--preset" if command[0] != "sensitivity" else "--base", "smoke"
                     if command[0] != "sensitivity" else "quick", "--cluster", "ray"]) == 2
        err = capsys.readouterr().err
        assert err == ("toyrelu: error: cluster: ray is not installed; "
                       "pip install 'toyrelu[ray]'\n")
    assert list(tmp_path.iterdir()) == []


def test_the_driver_stopped_or_killed_leaves_no_ray_and_a_rerun_trains_the_rest(
        tmp_path: Path, mark: str, expected: dict[str, Path]) -> None:
    store = tmp_path / "s.sqlite"
    argv = [sys.executable, "-m", "toyrelu", "sweep", "--preset", "smoke", "--store", str(store),
            "--cluster", "ray", "--n-features", "1000", "--sparsity", "0.99", "--n-train",
            "1000", "--steps", "1000", "--seeds", "0,1,2,3,4,5", "--n-test", "200"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("RAY_ADDRESS", None)  # the driver starts a local instance of its own
    stored: dict[str, float] = {}
    for signum in (signal.SIGINT, signal.SIGKILL):
        # A session of its own, as a terminal gives: Ctrl-C reaches its whole process group.
        driver = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        before = len(stored)
        assert wait_for(lambda d=driver, n=before: rows(store) > n or d.poll() is not None, 120)
        if signum == signal.SIGINT:
            os.killpg(driver.pid, signum)
        else:
            driver.kill()
        _, err = driver.communicate(timeout=60)
        assert driver.returncode == (130 if signum == signal.SIGINT else -9), err
        # After kill -9, Ray's agents are ended by the reaper (runs.cluster_procs).
        assert wait_for(lambda: marked(MARK, mark) == [], 10), \
            f"{signal.Signals(signum).name}: Ray outlived its driver: " \
            f"{described(marked(MARK, mark))}"
        with Store(store, create=False) as s:
            runs = s.runs()
            stored = dict(zip(runs["run_id"], runs["wall_seconds"], strict=True))
    assert 1 <= len(stored) < len(LONG)
    # Resumed here on a local instance of a capped object store: only the rest trains, none
    # again, and every number is the in-process one.
    runner = RayCluster(num_cpus=2, object_store_memory=OBJECT_STORE)
    report = sweep(store, LONG, runner)
    assert (report.ok, report.skipped) == (len(LONG) - len(stored), len(stored))
    with Store(store, create=False) as s:
        runs = s.runs().set_index("run_id")
        assert {k: runs.loc[k, "wall_seconds"] for k in stored} == stored
    assert_same_runs(store, expected["long"])
    assert not ray.is_initialized()
    assert marked(MARK, mark) == []  # the instance's processes, agents included


# On the module's simulated cluster: a head node with two CPUs and the memory of one run
# (HEAD_MEMORY), and a node with two CPUs, one (logical) GPU and 4 GiB.

@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[object, object]]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "memory": HEAD_MEMORY, "object_store_memory": OBJECT_STORE,
        "include_dashboard": False})
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=1, memory=GPU_NODE_MEMORY,
                                object_store_memory=OBJECT_STORE)
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster, gpu_node
    finally:
        ray.shutdown()
        cluster.shutdown()


def rows(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        with Store(path, create=False) as store:
            return len(store)
    except Exception:  # noqa: BLE001 - being created by the driver right now
        return 0


def test_gpu_batches_on_the_gpu_node_store_the_in_process_numbers(
        tmp_path: Path, expected: dict[str, Path], two_nodes) -> None:
    # Half a GPU per batch: both batches at once on the GPU node.
    runner = RayCluster().use_gpu(gpu_batches(), gpus_per_batch=0.5)
    assert sweep(tmp_path / "g.sqlite", GPU_RUNS, runner).ok == len(GPU_RUNS)
    assert_same_runs(tmp_path / "g.sqlite", expected["gpu"])


def test_a_worker_killed_mid_run_is_retried(tmp_path: Path, expected: dict[str, Path],
                                            two_nodes) -> None:
    held: list[float] = []
    killed = with_worker_killed(lambda: with_memory_held(
        held, lambda: sweep(tmp_path / "k.sqlite", LONG, RayCluster())))
    assert len(killed) == 1
    assert_same_runs(tmp_path / "k.sqlite", expected["long"])
    # Each task held its run's memory (Ray's own bookkeeping of it is off by a few MB), so the
    # head node took one run at a time: at most three at once on four CPUs.
    tasks = [h / LONG_TASK for h in held]
    assert tasks and all(abs(t - round(t)) < 0.01 for t in tasks), held
    assert max(round(t) for t in tasks) <= 3, held


def with_memory_held(held: list[float], fn: Callable[[], object]) -> None:
    """Run ``fn``, recording in ``held`` the memory that tasks hold on the cluster whenever
    some is held."""
    stop = threading.Event()

    def watch() -> None:
        total = ray.cluster_resources()["memory"]
        while not stop.is_set():
            taken = total - ray.available_resources().get("memory", 0.0)
            if taken > 0:
                held.append(taken)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fn()
    finally:
        stop.set()
        watcher.join()


def test_retries_exhausted_store_lost_runs_that_a_rerun_trains(
        tmp_path: Path, expected: dict[str, Path], two_nodes) -> None:
    path = tmp_path / "l.sqlite"
    killed = with_worker_killed(lambda: sweep(path, LONG, RayCluster(max_retries=0)))
    assert len(killed) == 1
    with Store(path, create=False) as store:
        runs = store.runs()
    lost = runs[runs["status"] == "lost"]
    assert len(lost) == 1 and (runs["status"] == "ok").sum() == len(LONG) - 1
    assert lost["error"].iloc[0].startswith("lost after 0 retries: WorkerCrashedError (")
    report = sweep(path, LONG, RayCluster())
    assert (report.ok, report.skipped, report.errors, report.lost) == (1, len(LONG) - 1, 0, 0)
    assert_same_runs(path, expected["long"])


def test_a_run_no_node_can_hold_is_refused_in_one_line(tmp_path: Path, capsys,
                                                       two_nodes) -> None:
    # Checked against the node with the most memory (4 GiB), not this machine's.
    store = tmp_path / "s.sqlite"
    assert main(["sweep", "--preset", "smoke", "--store", str(store), "--cluster", "ray:auto",
                 "--n-features", "1000", "--n-train", "1e9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("toyrelu: error: n_train: 1e9 needs about ") and err.count("\n") == 1
    assert "; the largest node of the Ray cluster at auto has 4 GiB (allowed: n_train <= " in err
    assert not store.exists()


def test_a_node_removed_mid_sweep_loses_no_run_and_gpu_runs_then_wait_no_longer(
        tmp_path: Path, expected: dict[str, Path], capsys, two_nodes) -> None:
    cluster, gpu_node = two_nodes
    path = tmp_path / "n.sqlite"
    remover = threading.Thread(target=lambda: wait_for(lambda: rows(path) >= 1, 120)
                               and cluster.remove_node(gpu_node))
    remover.start()
    try:
        report = sweep(path, LONG, RayCluster())
    finally:
        remover.join()
    assert report.ok == len(LONG)
    assert_same_runs(path, expected["long"])
    assert ray.cluster_resources().get("GPU", 0) == 0
    # No GPU is left: the batch sent waits node_wait_s, then comes back lost, not for good.
    runner = RayCluster(node_wait_s=1).use_gpu(gpu_batches(), gpus_per_batch=0.5)
    report = sweep(tmp_path / "g.sqlite", GPU_RUNS, runner)
    # The batch sent and the one waiting: every run is stored lost, with the reason.
    assert (report.ok, report.errors, report.lost) == (0, 0, len(GPU_RUNS))
    with Store(tmp_path / "g.sqlite", create=False) as store:
        runs = store.runs()
    assert set(runs["status"]) == {"lost"} and set(runs["error"]) == {
        "lost: no node with a GPU in the Ray cluster this process is connected to for 1 s"}
    # The command line on the one CPU node left: --device cuda is refused, the CPU sweep runs.
    store = tmp_path / "s.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", str(store), "--cluster", "ray:auto"]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err == ("toyrelu: error: device: cuda was requested but the Ray cluster at auto has "
                   "no GPU\n")
    assert not store.exists()
    assert main(argv) == 0
    assert "8 finished, 0 failed, 0 errors" in capsys.readouterr().err


def test_a_node_with_other_versions_joining_later_is_left_out(
        tmp_path: Path, expected: dict[str, Path], capsys, two_nodes) -> None:
    # After the test above, the head node is alone: no GPU. The node that joins has another
    # toyrelu: its workers find a distribution of version 0.0.0 first on their path.
    cluster, _ = two_nodes
    assert ray.cluster_resources().get("GPU", 0) == 0
    other = tmp_path / "other"
    (other / "toyrelu-0.0.0.dist-info").mkdir(parents=True)
    (other / "toyrelu-0.0.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toyrelu\nVersion: 0.0.0\n")
    on_gpu = RayCluster(node_wait_s=1).use_gpu(gpu_batches(), gpus_per_batch=0.5).open()
    on_cpu = RayCluster().open()  # both checked every node before it joined
    path = os.pathsep.join([str(other), os.environ.get("PYTHONPATH", "")])
    late = cluster.add_node(num_cpus=1, num_gpus=1, memory=GPU_NODE_MEMORY,
                            object_store_memory=OBJECT_STORE, env_vars={"PYTHONPATH": path})
    cluster.wait_for_nodes()
    capsys.readouterr()
    ours = versions()["toyrelu"]
    note = (f"toyrelu: note: node {socket.gethostname()} (Ray node {late.node_id[:8]}) has "
            f"other versions than this machine: toyrelu 0.0.0 (driver: {ours}); its tasks go "
            "to the other nodes\n")
    try:
        # Its only GPU left out, the GPU batches wait node_wait_s, then come back lost.
        report = sweep(tmp_path / "g.sqlite", GPU_RUNS, on_gpu)
        assert (report.ok, report.errors, report.lost) == (0, 0, len(GPU_RUNS))
        assert capsys.readouterr().err == note
        with Store(tmp_path / "g.sqlite", create=False) as store:
            assert set(store.runs()["status"]) == {"lost"}
            assert set(store.runs()["error"]) == {
                "lost: no node with a GPU and this machine's versions in the Ray cluster this "
                "process is connected to for 1 s"}
        # The head node holds one run at a time: the next run goes to the new node, which
        # gives it back untrained; every run is trained on the head node, with its numbers.
        report = sweep(tmp_path / "r.sqlite", REFERENCE, on_cpu)
        assert report.ok == len(REFERENCE)
        assert capsys.readouterr().err == note
        assert_same_runs(tmp_path / "r.sqlite", expected["reference"])
        # A sweep started now checks every node first: the new one ends it in one line.
        store = tmp_path / "s.sqlite"
        assert main(["sweep", "--preset", "smoke", "--store", str(store), "--cluster",
                     "ray:auto"]) == 2
        assert capsys.readouterr().err == (
            f"toyrelu: error: cluster: node {socket.gethostname()} has other versions than this "
            f"machine: toyrelu 0.0.0 (driver: {ours})\n")
        assert not store.exists()
    finally:
        on_gpu.close()
        on_cpu.close()
        cluster.remove_node(late)


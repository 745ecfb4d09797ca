"""Interrupts and the lifetime of worker processes: a ``toyrelu sweep --workers 2`` stopped by
Ctrl-C (SIGINT to its process group) at several moments, by SIGTERM or SIGHUP to its pid, or
killed by SIGKILL; a worker killed mid-run; the executors' ``start`` contract; and the order in
which the workers compile kernels.

The sweeps run as subprocesses in a session of their own, as from a terminal. Every process of
a sweep carries a marker in its environment (worker processes and multiprocessing's resource
tracker inherit it), so that one left behind is found whoever its parent is by then. The runs
are tiny (n = 50, 4 runs of 100,000 steps, a second or so each), so each test takes seconds.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from toyrelu.core.config import RunConfig
from toyrelu.engines.cpu import engine
from toyrelu.runs import executors, training, workers
from toyrelu.runs.executors import GpuBatches, InProcess, LocalProcesses
from toyrelu.runs.store import Store
from toyrelu.runs.training import Outcome

SRC = Path(__file__).parents[1] / "src"
SWEEP = ["-m", "toyrelu", "sweep", "--preset", "smoke", "--workers", "2", "--steps", "100000",
         "--n-train", "3,30", "--seeds", "0,1"]
BASE = RunConfig(n_features=20, n_hidden=2, sparsity=0.9, n_train=5, steps=80, n_test=200)
# How long a process may outlive the sweep it belongs to.
GONE_SECONDS = 5.0
# Waits for the sweep to reach a moment; only a broken sweep or a very busy machine takes long.
REACH_SECONDS = 120.0


def wait_until(done: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def sweep(tmp_path: Path):
    """A sweep started for the test; whatever is left of it is killed afterwards."""
    started = Sweep(tmp_path)
    yield started
    if started.process.poll() is None:
        os.killpg(started.process.pid, signal.SIGKILL)
    for pid in started.processes():
        os.kill(pid, signal.SIGKILL)


class Sweep:
    """``toyrelu sweep`` in a session of its own, its stderr in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.mark = uuid.uuid4().hex
        self.store = tmp_path / "runs.sqlite"
        self.err = tmp_path / "stderr.txt"
        env = {**os.environ, "TOYRELU_TEST_SWEEP": self.mark,
               "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        with open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, *SWEEP, "--store", str(self.store)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)

    def stderr(self) -> str:
        return self.err.read_text()

    def reach(self, moment: str) -> None:
        """Wait for ``moment``: "spawned" (a worker process is there, importing), "training"
        (a worker reported steps) or "stored" (a run is in the store)."""
        def there() -> bool:
            assert self.process.poll() is None, f"the sweep ended early:\n{self.stderr()}"
            if moment == "spawned":
                return any("spawn_main" in cmdline(pid) for pid in self.processes())
            if moment == "stored":
                return stored_runs(self.store) > 0
            return "runs 0/" in self.stderr()
        wait_until(there, REACH_SECONDS, moment)

    def processes(self) -> list[int]:
        """The live processes of this sweep: the main one, its workers, the resource tracker."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and self.mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile, or a zombie
                continue
        return found

    def end(self, seconds: float = 60.0) -> int:
        """The exit code, once the sweep and every process it started are gone."""
        code = self.process.wait(seconds)
        deadline = time.monotonic() + GONE_SECONDS
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"outlived the sweep: {[cmdline(p) for p in left]}\n{self.stderr()}"
        return code

    def ends(self, code: int) -> None:
        assert self.end() == code, self.stderr()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid} (gone)"


def stored_runs(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def assert_quiet_end(stderr: str, by: str) -> None:
    """Nothing but the sweep's own lines, and exactly one about the interruption, last."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert lines[-1].startswith(f"toyrelu: interrupted{by}; finished runs are stored"), stderr
    assert all(line.startswith(("toyrelu: preset", "runs ")) for line in lines[:-1]), stderr


# ------------------------------------------------------------------------------ signals


# "spawned" and a second later: the workers import torch and numba, or compile; "training"
# and "stored": runs are in flight.
@pytest.mark.parametrize(("moment", "delay"), [
    ("spawned", 0.0), ("spawned", 1.0), ("training", 0.0), ("stored", 0.0)])
def test_ctrl_c_stops_every_process_with_one_line(sweep: Sweep, moment: str,
                                                  delay: float) -> None:
    sweep.reach(moment)
    time.sleep(delay)
    finished = stored_runs(sweep.store)
    os.killpg(sweep.process.pid, signal.SIGINT)  # as a terminal does: the whole group
    sweep.ends(130)
    assert_quiet_end(sweep.stderr(), "")
    assert stored_runs(sweep.store) >= finished


def test_a_second_ctrl_c_during_the_clean_up_keeps_the_exit_code(sweep: Sweep) -> None:
    # Impatient users press Ctrl-C again; the clean-up and the exit must not be cut short.
    sweep.reach("training")
    for _ in range(3):
        os.killpg(sweep.process.pid, signal.SIGINT)
        time.sleep(0.03)
    sweep.ends(130)
    assert_quiet_end(sweep.stderr(), "")


@pytest.mark.parametrize(("signum", "code", "moment"), [
    (signal.SIGTERM, 143, "spawned"), (signal.SIGTERM, 143, "stored"),
    (signal.SIGHUP, 129, "stored")])
def test_sigterm_and_sighup_to_the_main_process_stop_its_workers(
        sweep: Sweep, signum: int, code: int, moment: str) -> None:
    sweep.reach(moment)
    finished = stored_runs(sweep.store)
    os.kill(sweep.process.pid, signum)
    sweep.ends(code)
    assert_quiet_end(sweep.stderr(), f" by {signal.Signals(signum).name}")
    assert stored_runs(sweep.store) >= finished


@pytest.mark.parametrize("moment", ["spawned", "stored"])
def test_workers_and_the_resource_tracker_end_with_a_killed_sweep(sweep: Sweep,
                                                                  moment: str) -> None:
    sweep.reach(moment)
    finished = stored_runs(sweep.store)
    os.kill(sweep.process.pid, signal.SIGKILL)
    sweep.ends(-signal.SIGKILL)
    if sweep.store.exists():
        with Store(sweep.store, create=False) as store:  # opens, with what it had
            assert (store.runs()["status"] == "ok").sum() >= finished


# --------------------------------------------------------------------------- worker death


def worker_pids() -> list[int]:
    """This process's LocalProcesses workers (its spawned children, not the resource
    tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            # /proc/<pid>/stat: "pid (comm) state ppid ..."
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and "spawn_main" in cmdline(int(entry.name)):
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_a_worker_killed_mid_run_gives_an_error_outcome_and_the_rest_finish() -> None:
    # Three runs of ~0.2 s or more for two workers: when the first steps are reported both
    # workers hold a run, so killing either loses exactly one run, and the third runs after.
    configs = [BASE.replace(steps=200_000, seed=s) for s in range(3)]
    killed: list[int] = []

    def on_steps(run_id: str, k: int) -> None:
        if not killed:
            killed.append(worker_pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    outcomes = list(LocalProcesses(2).map(configs, on_steps))
    assert sorted(o.run_id for o in outcomes) == sorted(c.run_id for c in configs)
    errors = [o for o in outcomes if o.metrics["status"] != "ok"]
    assert [o.metrics for o in errors] == [
        {"status": "error", "error": "worker process died (signal 9, SIGKILL)"}]
    assert errors[0].config == next(c for c in configs if c.run_id == errors[0].run_id).to_dict()
    wait_until(lambda: not worker_pids(), GONE_SECONDS, "the workers to end")


# ------------------------------------------------------------------------ start contract


class ThreadProcess:
    """The part of a process that ``workers.Pool`` uses, over a thread: ``terminate`` closes
    the pool's end of the pipe, which ends ``workers.serve``."""

    def __init__(self, thread: threading.Thread, conn) -> None:
        self.thread, self.conn = thread, conn

    @property
    def exitcode(self) -> int | None:
        return None if self.thread.is_alive() else 0

    def terminate(self) -> None:
        self.conn.close()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def kill(self) -> None:
        self.conn.close()


class ThreadWorker(workers.Worker):
    """A worker serving in a thread of this process, where a test can replace what it runs."""

    def __init__(self, context) -> None:
        self.conn, child_end = multiprocessing.Pipe()
        thread = threading.Thread(target=workers.serve, args=(child_end,), daemon=True)
        thread.start()
        self.process = ThreadProcess(thread, self.conn)  # type: ignore[assignment]
        self.task = None


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """What workers do, in order: ("compile", kind) and ("run", run_id), with workers in
    threads and nothing compiled or trained."""
    done: list[tuple[str, object]] = []
    monkeypatch.setattr(workers, "Worker", ThreadWorker)
    monkeypatch.setattr(training, "compile_kernels", lambda *kind: done.append(("compile", kind)))

    def run_one(config: RunConfig, on_steps) -> Outcome:
        done.append(("run", config.run_id))
        on_steps(config.run_id, config.steps)
        return Outcome(config.run_id, config.to_dict(), {"status": "ok"}, {})

    monkeypatch.setattr(training, "run_one", run_one)
    monkeypatch.setattr(executors, "run_one", run_one)
    return done


@pytest.mark.parametrize("make", [InProcess, lambda: LocalProcesses(2), GpuBatches],
                         ids=["InProcess", "LocalProcesses", "GpuBatches"])
def test_start_is_asked_right_before_each_run_and_false_skips_it(
        make, events: list, monkeypatch: pytest.MonkeyPatch) -> None:
    if make is GpuBatches:
        gpu = pytest.importorskip("toyrelu.engines.gpu")

        def train_many(configs, Xs, W0s, b0s, **kwargs):
            events.append(("batch", [c.run_id for c in configs]))
            return list(zip(W0s, b0s, strict=True))

        monkeypatch.setattr(gpu, "train_many", train_many)
    configs = [BASE.replace(seed=s) for s in range(6)]
    refused = {configs[1].run_id, configs[4].run_id}
    in_flight = {"started": 0, "yielded": 0, "most": 0}

    def start(config: RunConfig) -> bool:
        events.append(("start", config.run_id))
        now = in_flight["started"] - in_flight["yielded"]
        in_flight["most"] = max(in_flight["most"], now + 1)
        if config.run_id in refused:
            return False
        in_flight["started"] += 1
        return True

    outcomes = []
    for outcome in make().map(configs, lambda run_id, k: None, start):
        in_flight["yielded"] += 1
        outcomes.append(outcome.run_id)
    accepted = [c.run_id for c in configs if c.run_id not in refused]
    assert sorted(outcomes) == sorted(accepted)
    starts = [run_id for what, run_id in events if what == "start"]
    assert sorted(starts) == sorted(c.run_id for c in configs)
    if make is GpuBatches:  # one batch: every config offered, then the accepted ones trained
        assert events == [*(("start", c.run_id) for c in configs), ("batch", accepted)]
        return
    assert starts == [c.run_id for c in configs]  # in the order given
    runs = [run_id for what, run_id in events if what == "run"]
    assert sorted(runs) == sorted(accepted)
    # Each run is started after its start(): no run of a refused config, none before asking.
    for run_id in runs:
        assert events.index(("start", run_id)) < events.index(("run", run_id))
    limit = 1 if make is InProcess else 2
    assert in_flight["most"] <= limit


def test_workers_compile_each_kind_of_kernels_once_before_any_run(events: list) -> None:
    big = engine.CELLS_FROM
    configs = [BASE.replace(n_train=T, n_hidden=m, seed=seed)
               for T in (5, big) for m in (2, 4) for seed in (0, 1)]
    configs.append(BASE.replace(n_train=float("inf"), n_hidden=3))
    configs.append(BASE.replace(n_train=big, engine="reference"))
    done = list(LocalProcesses(2).map(configs, lambda run_id, k: None))
    assert sorted(o.run_id for o in done) == sorted(c.run_id for c in configs)
    # Every kind once, longest compile first (split-cell step, then larger m), then the runs.
    kinds = [(4, "float32", True), (2, "float32", True), (4, "float32", False),
             (3, "float32", False), (2, "float32", False)]
    assert executors.compile_order(configs) == kinds
    compiled = [kind for what, kind in events if what == "compile"]
    assert sorted(compiled) == sorted(kinds) and len(compiled) == len(kinds)
    assert [what for what, _ in events] == ["compile"] * len(kinds) + ["run"] * len(configs)


def test_a_kind_that_fails_to_compile_leaves_the_runs_to_report_it(
        events: list, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*kind) -> None:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(training, "compile_kernels", broken)
    done = list(LocalProcesses(2).map([BASE], lambda run_id, k: None))
    assert [o.run_id for o in done] == [BASE.run_id]


# ----------------------------------------------------------------- the command line's words


@pytest.mark.parametrize(("command", "then"), [
    ("sweep", "; finished runs are stored, rerun the same command to resume"),
    ("report", ""), ("export", ""),
])
def test_the_interrupt_line_speaks_of_resuming_only_after_training(
    command: str, then: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toyrelu.cli import commands, entry

    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(commands.COMMANDS, command, interrupted)
    argv = {"sweep": ["sweep", "--preset", "smoke", "--store", "s"],
            "report": ["report", "--store", "s", "--out", "o"],
            "export": ["export", "--store", "s"]}[command]
    assert entry.main(argv) == 130
    assert capsys.readouterr().err == f"toyrelu: interrupted{then}\n"


def test_a_signal_while_the_program_starts_ends_it_with_one_line() -> None:
    # The program takes over the stopping signals before it imports its modules; a caller of
    # main(argv) keeps its own handlers.
    script = ("import os, signal, time, toyrelu.cli as cli\n"
              "before = signal.getsignal(signal.SIGINT)\n"
              "assert cli.main(['presets']) == 0 and signal.getsignal(signal.SIGINT) is before\n"
              "cli._quiet_until_ready()\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "time.sleep(10)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 128 + signal.SIGTERM
    assert done.stderr == "toyrelu: interrupted\n"


def test_a_signal_while_the_program_starts_with_stderr_gone_still_exits_by_its_code() -> None:
    # A closed terminal (SIGHUP) may take stderr with it: the line is lost, the code is not.
    script = ("import os, signal, time, toyrelu.cli as cli\n"
              "cli._quiet_until_ready()\n"
              "os.close(2)\n"
              "os.kill(os.getpid(), signal.SIGHUP)\n"
              "time.sleep(10)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr) == (128 + signal.SIGHUP, "")

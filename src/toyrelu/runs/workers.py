"""The worker processes of ``executors.LocalProcesses``, and the pool that drives them.

Each worker is a "spawn" process with a pipe of its own to this process. Its lifetime is this
process's business alone:

- A worker ignores SIGINT. A Ctrl-C reaches every process of the terminal's group, and a
  worker still importing or compiling would otherwise print a KeyboardInterrupt traceback of
  its own; here the parent alone takes the interrupt and stops its workers (``Pool.close``).
- A worker ends when its parent ends, however it ends, kill -9 included: a thread polls the
  parent's pid, and on Linux the kernel also sends SIGKILL at the parent's death. An idle
  worker sees its pipe close as well.
- The pool never waits on a worker for good: it stops workers by signal and joins them with a
  timeout, and a worker that dies while it holds a run gives that run back as an "error"
  outcome, which a later sweep retries, while the other runs go on in a fresh worker.

The pool writes nothing to disk and uses no multiprocessing queue or lock, so that nothing is
left for multiprocessing's resource tracker to clean up: it exits once the parent and the
workers, the holders of its pipe, are gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import connection, resource_tracker
from typing import TYPE_CHECKING, Any

from toyrelu.runs.resources import STOPPING

if TYPE_CHECKING:
    from toyrelu.core.config import RunConfig
    from toyrelu.runs.training import KernelKind, Outcome, StepsCallback

# How often a worker looks for its parent: it ends at most this long after the parent's death
# (longer only while a compiled loop holds the GIL, about a second at most: engines/cpu/engine.py
# reports progress after each chunk of about a second of work).
PARENT_POLL_SECONDS = 0.2
# How long close() lets a worker take to end on SIGTERM before it is killed.
STOP_SECONDS = 3.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _worker_main(conn: connection.Connection, parent_pid: int) -> None:
    """A worker process: ignore Ctrl-C, end with the parent, train single-threaded."""
    # SIGINT was blocked when this process was started (Pool._spawn), so that none arrives
    # before it is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _end_with_parent(parent_pid)
    # One process per core: threads of a run (numba's or a reference run's torch threads) would
    # only compete with the other workers.
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    with contextlib.suppress(EOFError, OSError):  # the parent has gone: nothing to answer
        serve(conn)


def _end_with_parent(parent_pid: int) -> None:
    if sys.platform == "linux":
        # SIGKILL at the death of the thread that started this process: the thread that
        # iterates LocalProcesses.map, which outlives the pool.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch(parent_pid: int) -> None:
    # An orphan is adopted by another process, so its parent pid changes.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def serve(conn: connection.Connection) -> None:
    """Answer the parent's tasks until it closes the pipe: ``("compile", kind)`` is answered by
    ``("compiled", None)``, ``("run", config)`` by ``("steps", run_id, k)`` messages as the run
    goes and ``("done", outcome)`` at its end."""
    from toyrelu.runs import training

    while True:
        try:
            what, arg = conn.recv()
        except EOFError:
            return
        if what == "compile":
            compile_kind(arg)
            conn.send(("compiled", None))
        else:
            outcome = training.run_one(arg, lambda run_id, k: conn.send(("steps", run_id, k)))
            conn.send(("done", outcome))


def compile_kind(kind: KernelKind) -> None:
    """Compile (or load) one kind of kernels; a kind that fails to compile fails its runs,
    which store the reason."""
    from toyrelu.runs import training

    with contextlib.suppress(Exception):
        training.compile_kernels(*kind)


class Worker:
    """One worker process and this process's end of its pipe; ``task`` is what it holds."""

    def __init__(self, context: Any) -> None:
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_end, os.getpid()),
                                       name="toyrelu-worker", daemon=True)
        self.process.start()
        # The worker holds the only other end, so that its death reads as the end of the pipe.
        child_end.close()
        self.task: tuple[str, Any] | None = None

    def send(self, task: tuple[str, Any]) -> None:
        self.task = task
        # A worker that just died has closed its end: its death is read from the pipe next.
        with contextlib.suppress(OSError):
            self.conn.send(task)

    def death(self) -> str:
        """Why the worker is gone, once its pipe has closed; kills it if it is still there."""
        self.process.join(STOP_SECONDS)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(STOP_SECONDS)
            return "worker process stopped answering"
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"worker process died (signal {-code}, {signal.Signals(-code).name})"
        return f"worker process died (exit code {code})"


class Pool:
    """Up to ``size`` workers: compiles kinds of kernels, then runs configs, each on a free
    worker, replacing workers that die."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[Worker] = []

    def compile(self, kinds: Sequence[KernelKind]) -> None:
        """Start the workers and compile each kind in one of them, in this order; return when
        all are compiled."""
        while len(self.workers) < self.size:
            self._spawn()
        todo = deque(kinds)
        while True:
            for worker in self._idle():
                if todo:
                    worker.send(("compile", todo.popleft()))
            if not self._busy():
                return
            for worker, message in self._messages():
                if message is None:
                    self._bury(worker)
                else:
                    worker.task = None

    def run(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: Callable[[RunConfig], bool] | None) -> Iterator[Outcome]:
        """Run ``configs`` in this order, at most ``size`` at a time, yielding outcomes as they
        finish; ``start(config)`` is asked as a worker is about to take the config."""
        todo = deque(configs)
        while True:
            self._dispatch(todo, start)
            if not self._busy():
                return
            for worker, message in self._messages():
                if message is None:
                    lost = self._bury(worker)
                    if lost is not None:
                        yield lost
                elif message[0] == "steps":
                    on_steps(*message[1:])
                else:
                    worker.task = None
                    yield message[1]

    def close(self) -> None:
        """Stop every worker now, whatever it holds: SIGTERM, then SIGKILL for one still there
        after ``STOP_SECONDS``. A stopping signal that comes meanwhile waits until they are
        stopped."""
        with _deferred(*STOPPING):
            for worker in self.workers:
                if worker.process.exitcode is None:
                    worker.process.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            for worker in self.workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
                if worker.process.exitcode is None:
                    worker.process.kill()
                    worker.process.join(STOP_SECONDS)
                worker.conn.close()
            self.workers = []

    def _dispatch(self, todo: deque[RunConfig], start: Callable[[RunConfig], bool] | None) -> None:
        while todo:
            idle = next(self._idle(), None)
            if idle is None and len(self.workers) >= self.size:
                return
            config = todo.popleft()
            if start is None or start(config):
                (idle or self._spawn()).send(("run", config))

    def _spawn(self) -> Worker:
        # The worker inherits a blocked SIGINT, so that its interpreter never takes a Ctrl-C
        # before it ignores SIGINT. Starting multiprocessing's resource tracker unblocks SIGINT,
        # so it is started first. Here a stopping signal waits until the worker is started and
        # in the list that close() stops.
        resource_tracker.ensure_running()
        with _deferred(*STOPPING), _held(signal.SIGINT):
            worker = Worker(self.context)
            self.workers.append(worker)
        return worker

    def _idle(self) -> Iterator[Worker]:
        return (w for w in self.workers if w.task is None)

    def _busy(self) -> bool:
        return any(w.task is not None for w in self.workers)

    def _messages(self) -> list[tuple[Worker, Any]]:
        """The next message of each worker that has one, waiting for at least one; ``None``
        for a worker whose pipe has closed."""
        by_conn: dict[Any, Worker] = {w.conn: w for w in self.workers}
        out: list[tuple[Worker, Any]] = []
        for conn in connection.wait(list(by_conn)):
            worker = by_conn[conn]
            try:
                out.append((worker, worker.conn.recv()))
            except (EOFError, OSError):
                out.append((worker, None))
        return out

    def _bury(self, worker: Worker) -> Outcome | None:
        """Forget a dead worker; the run it held comes back as an "error" outcome."""
        from toyrelu.runs.training import Outcome

        self.workers.remove(worker)
        reason = worker.death()
        worker.conn.close()
        if worker.task is None or worker.task[0] != "run":
            return None
        config = worker.task[1]
        return Outcome(config.run_id, config.to_dict(), {"status": "error", "error": reason}, {})


@contextlib.contextmanager
def _held(*signums: int) -> Iterator[None]:
    """Block ``signums`` in this thread: the processes it starts meanwhile inherit the mask.

    This does not hold the signals back from this process's handlers, as another thread
    (torch starts one) takes them; ``_deferred`` does."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextlib.contextmanager
def _deferred(*signums: int) -> Iterator[None]:
    """Hold back the handlers of ``signums`` (Ctrl-C's KeyboardInterrupt, or the command
    line's) until leaving, then raise the signals that came meanwhile. Only the main thread
    runs handlers; elsewhere nothing needs holding back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before = {s: h for s in signums
              if (h := signal.getsignal(s)) is not None and h != signal.SIG_IGN}
    for s in before:
        signal.signal(s, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(came):
            signal.raise_signal(s)

"""The task queue of ``cluster_ray.RayCluster.map``: a sweep's runs sent to the nodes as Ray tasks
while they can take them, and their outcomes collected as the tasks finish.

- CPU runs: one task per run holding one CPU and the memory the run needs
  (``limits.task_bytes``, so that Ray puts no more runs on a node than fit), sent in the order
  given (largest first), at most as many at once as the usable nodes have CPUs, so that a run
  is claimed in the store (``start``) right before it can start.
- GPU batches: one task per batch holding ``gpus_per_batch`` GPUs and the host memory of its
  runs; Ray places them on nodes with GPUs only.
- Nodes with other versions: every task checks its node before it trains; one that finds other
  versions ends the sweep (``RayCluster.expect_same``).
- Faults: a task whose worker or node dies is retried ``max_retries`` times by Ray; after that
  its runs come back as "error" outcomes whose reason starts with "lost", which the next sweep
  trains again like any run the machine failed. So do runs that no usable node has been able to
  take for ``node_wait_s`` (the GPU nodes are gone), which Ray would keep waiting for good.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from toyrelu.core.config import RunConfig
from toyrelu.runs import cluster_node, limits
from toyrelu.runs.executors import GpuBatches, StartCallback
from toyrelu.runs.training import Outcome, StepsCallback

# How often the driver renews its store leases while no run finishes (store_leases.HEARTBEAT_S
# is the most it writes).
WAIT_S = 5.0
RESOURCE = {"cpu": "CPU", "gpu": "GPU"}  # what each kind of task holds
TASK = {"cpu": cluster_node.train_run, "gpu": cluster_node.train_batch}

Pending = dict[Any, list[RunConfig]]  # a task in flight (its object ref) -> its runs


class Cluster(Protocol):
    """What the queue asks of its cluster, a ``cluster_ray.RayCluster``."""

    max_retries: int
    node_wait_s: float
    gpu: GpuBatches | None
    gpus_per_batch: float
    expected: dict[str, str]  # the driver's versions

    @property
    def where(self) -> str: ...

    def usable_nodes(self) -> list[dict[str, Any]]: ...

    def expect_same(self, answers: list[Any]) -> None: ...


class TaskQueue:
    """The runs of one ``map`` call as tasks on ``cluster`` (module docstring), through the
    ``ray`` module. ``pending`` holds the tasks in flight, which the caller cancels when the
    iteration stops."""

    def __init__(self, cluster: Cluster, ray: Any, start: StartCallback | None,
                 pending: Pending):
        self.cluster, self.ray, self.start, self.pending = cluster, ray, start, pending
        self.tasks = {
            "cpu": ray.remote(num_cpus=1, max_retries=cluster.max_retries, max_calls=0)(
                TASK["cpu"]),
            # max_calls=0 keeps a worker (its CUDA context and compiled kernels) for the next
            # batch, where Ray's default for GPU tasks starts a fresh worker for each.
            "gpu": ray.remote(num_cpus=1, num_gpus=cluster.gpus_per_batch,
                              max_retries=cluster.max_retries, max_calls=0)(TASK["gpu"])}
        self.fresh: dict[str, deque[list[RunConfig]]] = {"cpu": deque(), "gpu": deque()}
        self.kinds: dict[Any, str] = {}  # the kind of each task in flight
        self.starved: dict[str, float] = {}  # kind -> since when no node could take it

    def run(self, cpu_runs: list[RunConfig], batches: list[list[RunConfig]],
            on_steps: StepsCallback) -> Iterator[Outcome]:
        """The outcomes of ``cpu_runs`` and of the GPU ``batches``, as their tasks finish."""
        self.fresh["cpu"].extend([c] for c in cpu_runs)
        self.fresh["gpu"].extend(batches)
        while any(self.fresh.values()) or self.pending:
            nodes = self.cluster.usable_nodes()
            have = _total(nodes)
            self._send(have, nodes)
            for kind in self._starved(have):
                yield from self._give_up(kind)
            if self.pending:
                yield from self._finished(on_steps)

    def _send(self, have: dict[str, float], nodes: list[dict[str, Any]]) -> None:
        """Tasks for the runs waiting, while a kind has fewer in flight than ``_slots``."""
        for kind, fresh in self.fresh.items():
            while fresh and list(self.kinds.values()).count(kind) < _slots(have, kind,
                                                                            self.cluster):
                accepted = [c for c in fresh.popleft() if self.start is None or self.start(c)]
                if accepted:
                    ref = self._submit(kind, accepted, nodes)
                    self.pending[ref], self.kinds[ref] = accepted, kind

    def _submit(self, kind: str, configs: list[RunConfig], nodes: list[dict[str, Any]]) -> Any:
        """Send ``configs`` as one task of ``kind`` holding the memory they need (at most the
        most a node that can take it has, so that one can)."""
        cluster = self.cluster
        need = limits.task_bytes(configs, "cpu" if kind == "cpu" else "cuda")
        room = max((n["Resources"].get("memory", 0.0) for n in nodes
                    if n["Resources"].get(RESOURCE[kind], 0) > 0), default=need)
        args = (configs[0],) if kind == "cpu" else (cluster.gpu, configs)
        return self.tasks[kind].options(memory=int(min(need, room))).remote(cluster.expected,
                                                                            *args)

    def _starved(self, have: dict[str, float]) -> list[str]:
        """The kinds of tasks that have waited ``node_wait_s`` for a node that can run them
        (the GPU nodes are gone, say): Ray would keep them waiting for good."""
        out = []
        for kind in self.fresh:
            waiting = self.fresh[kind] or kind in self.kinds.values()
            if not waiting or have.get(RESOURCE[kind], 0) > 0:
                self.starved.pop(kind, None)
            elif (time.monotonic() - self.starved.setdefault(kind, time.monotonic())
                  > self.cluster.node_wait_s):
                out.append(kind)
        return out

    def _give_up(self, kind: str) -> Iterator[Outcome]:
        """Lost outcomes for the runs of ``kind`` that were sent, which no node has taken for
        ``node_wait_s``; the others are dropped: not started, so not claimed, the next sweep
        trains them as missing runs."""
        self.fresh[kind].clear()
        lost = []
        for ref in [r for r, k in self.kinds.items() if k == kind]:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            del self.kinds[ref]
            lost.append(self.pending.pop(ref))
        cluster = self.cluster
        reason = (f"lost: no node with a {RESOURCE[kind]} in {cluster.where} for "
                  f"{cluster.node_wait_s:g} s")
        for configs in lost:
            yield from cluster_node.lost_outcomes(configs, reason)

    def _finished(self, on_steps: StepsCallback) -> Iterator[Outcome]:
        """The outcomes of a task that finishes within ``WAIT_S``."""
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=WAIT_S)
        if not ready:
            # Nothing finished: renew the store's leases through the progress callback.
            on_steps(next(iter(self.pending.values()))[0].run_id, 0)
        for ref in ready:
            configs = self.pending.pop(ref)
            self.kinds.pop(ref)
            for outcome in self._outcomes(ref, configs):
                on_steps(outcome.run_id, next(c.steps for c in configs
                                              if c.run_id == outcome.run_id))
                yield outcome

    def _outcomes(self, ref: Any, configs: list[RunConfig]) -> list[Outcome]:
        """The outcomes of a finished task."""
        ray, retries = self.ray, self.cluster.max_retries
        try:
            value = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # toyrelu's own code raised
            reason = one_line(f"task raised {exc.cause!r}")[:300]
        except ray.exceptions.RayError as exc:
            reason = one_line(f"lost after {retries} retries: "
                              f"{type(exc).__name__}{_where(str(exc))}")
        else:
            self.cluster.expect_same([value])
            return [value] if isinstance(value, Outcome) else list(value)
        return list(cluster_node.lost_outcomes(configs, reason))


def _total(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """The resources of ``nodes`` added up."""
    total: dict[str, float] = {}
    for node in nodes:
        for name, amount in node["Resources"].items():
            total[name] = total.get(name, 0.0) + amount
    return total


def _slots(have: dict[str, float], kind: str, cluster: Cluster) -> int:
    """Tasks of ``kind`` in flight at most: the usable nodes' CPUs, or their GPU shares, now
    (at least one, so that a sweep waits for a node rather than ending)."""
    share = 1.0 if kind == "cpu" else cluster.gpus_per_batch
    return max(1, int(have.get(RESOURCE[kind], 0) / share + 1e-9))


def _where(message: str) -> str:
    """The worker and node a Ray error names, if it names them."""
    found = [f"{what} {m.group(1)}" for what, pattern in
             (("node", r"Node ID: (\w+)"), ("address", r"IP address: ([\w.:-]+)"),
              ("worker", r"Worker ID: (\w+)"), ("pid", r"Worker PID: (\d+)"))
             if (m := re.search(pattern, message))]
    return f" ({', '.join(found)})" if found else f" ({message.strip()[:200]})"


def one_line(message: object) -> str:
    return " ".join(str(message).split())

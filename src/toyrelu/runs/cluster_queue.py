"""The task queue of ``cluster_ray.RayCluster.map``: a sweep's runs sent to the nodes as Ray tasks
while they can take them, and their outcomes collected as the tasks finish.

- CPU runs: one task per run holding one CPU and the memory the run needs
  (``limits.task_bytes``, so that Ray puts no more runs on a node than fit), sent in the order
  given (largest first), at most as many at once as the usable nodes have CPUs: a run is
  claimed in the store (``start``) when its task is sent, which may still wait in Ray for a
  node's memory.
- GPU batches: one task per batch holding ``gpus_per_batch`` GPUs and the host memory of its
  runs; Ray places them on nodes with GPUs only.
- Nodes with other versions: every task checks its node before it trains. One that finds other
  versions returns its runs untrained (``OtherVersions``); the cluster leaves that node out
  (``RayCluster.exclude``), the runs are sent again first, and every later task carries a label
  selector that keeps Ray from placing it on a node left out.
- Faults: a task whose worker or node dies is retried ``max_retries`` times by Ray; after that
  its runs come back as "lost" outcomes with the reason (``cluster_node.lost_outcomes``), which
  the next sweep trains again. So do runs that no usable node has been able to take for
  ``node_wait_s`` (the GPU nodes are gone, or left out), which Ray would keep waiting for good.
  A task whose own code raised gives its runs back as "error" outcomes, as a dead local worker
  does.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from toyrelu.core.config import RunConfig
from toyrelu.runs import cluster_node, limits
from toyrelu.runs.cluster_node import one_line
from toyrelu.runs.executors import GpuBatches, StartCallback
from toyrelu.runs.training import Outcome, StepsCallback

# How often the driver renews its store leases while no run finishes (store_leases.HEARTBEAT_S
# is the most it writes).
WAIT_S = 5.0
RESOURCE = {"cpu": "CPU", "gpu": "GPU"}  # what each kind of task holds
TASK = {"cpu": cluster_node.train_run, "gpu": cluster_node.train_batch}
# The label Ray gives every node, its node id, which keeps tasks off the nodes left out.
NODE_LABEL = "ray.io/node-id"

Pending = dict[Any, list[RunConfig]]  # a task in flight (its object ref) -> its runs


class Cluster(Protocol):
    """What the queue asks of its cluster, a ``cluster_ray.RayCluster``."""

    max_retries: int
    node_wait_s: float
    gpu: GpuBatches | None
    gpus_per_batch: float
    expected: dict[str, str]  # the driver's versions
    excluded: dict[str, str]  # the ids of the nodes left out -> their hosts

    @property
    def where(self) -> str: ...

    def usable_nodes(self) -> list[dict[str, Any]]: ...

    def exclude(self, node: str, mismatch: cluster_node.Mismatch) -> None: ...


class TaskQueue:
    """The runs of one ``map`` call as tasks on ``cluster`` (module docstring), through the
    ``ray`` module. ``pending`` holds the tasks in flight, which the caller cancels when the
    iteration stops."""

    def __init__(self, cluster: Cluster, ray: Any, start: StartCallback | None,
                 pending: Pending):
        self.cluster, self.ray, self.start, self.pending = cluster, ray, start, pending
        self.tasks = {
            "cpu": ray.remote(num_cpus=1, max_retries=cluster.max_retries, max_calls=0)(_task),
            # max_calls=0 keeps a worker (its CUDA context and compiled kernels) for the next
            # batch, where Ray's default for GPU tasks starts a fresh worker for each.
            "gpu": ray.remote(num_cpus=1, num_gpus=cluster.gpus_per_batch,
                              max_retries=cluster.max_retries, max_calls=0)(_task)}
        self.fresh: dict[str, deque[list[RunConfig]]] = {"cpu": deque(), "gpu": deque()}
        # Runs claimed already, given back by a node left out: sent again first.
        self.again: dict[str, deque[list[RunConfig]]] = {"cpu": deque(), "gpu": deque()}
        self.kinds: dict[Any, str] = {}  # the kind of each task in flight
        self.starved: dict[str, float] = {}  # kind -> since when no node could take it

    def run(self, cpu_runs: list[RunConfig], batches: list[list[RunConfig]],
            on_steps: StepsCallback) -> Iterator[Outcome]:
        """The outcomes of ``cpu_runs`` and of the GPU ``batches``, as their tasks finish."""
        self.fresh["cpu"].extend([c] for c in cpu_runs)
        self.fresh["gpu"].extend(batches)
        while any(self.fresh.values()) or any(self.again.values()) or self.pending:
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
            again = self.again[kind]
            while ((again or fresh)
                   and list(self.kinds.values()).count(kind) < _slots(have, kind, self.cluster)):
                accepted = (again.popleft() if again else
                            [c for c in fresh.popleft() if self.start is None or self.start(c)])
                if accepted:
                    ref = self._submit(kind, accepted, nodes)
                    self.pending[ref], self.kinds[ref] = accepted, kind

    def _submit(self, kind: str, configs: list[RunConfig], nodes: list[dict[str, Any]]) -> Any:
        """Send ``configs`` as one task of ``kind``, off the nodes left out, holding the
        memory they need (at most the most a node that can take it has, so that one can)."""
        cluster = self.cluster
        need = limits.task_bytes(configs, "cpu" if kind == "cpu" else "cuda")
        room = max((n["Resources"].get("memory", 0.0) for n in nodes
                    if n["Resources"].get(RESOURCE[kind], 0) > 0), default=need)
        options: dict[str, Any] = {"name": TASK[kind].__name__, "memory": int(min(need, room))}
        if cluster.excluded:
            # Joined without spaces: with ", " Ray 2.60 keeps tasks off the first id only.
            options["label_selector"] = {
                NODE_LABEL: f"!in({','.join(sorted(cluster.excluded))})"}
        args = (configs[0],) if kind == "cpu" else (cluster.gpu, configs)
        return self.tasks[kind].options(**options).remote(TASK[kind], cluster.expected, *args)

    def _starved(self, have: dict[str, float]) -> list[str]:
        """The kinds of tasks that have waited ``node_wait_s`` for a node that can run them
        (the GPU nodes are gone, say): Ray would keep them waiting for good."""
        out = []
        for kind in self.fresh:
            waiting = self.fresh[kind] or self.again[kind] or kind in self.kinds.values()
            if not waiting or have.get(RESOURCE[kind], 0) > 0:
                self.starved.pop(kind, None)
            elif (time.monotonic() - self.starved.setdefault(kind, time.monotonic())
                  > self.cluster.node_wait_s):
                out.append(kind)
        return out

    def _give_up(self, kind: str) -> Iterator[Outcome]:
        """Lost outcomes for the runs of ``kind``, which no node has taken for ``node_wait_s``:
        those in flight or given back, and those not sent yet that ``start`` claims now (one
        another sweep holds is left to it), so that every run of the sweep is counted and
        stored with the reason."""
        lost = list(self.again[kind])
        self.again[kind].clear()
        for configs in self.fresh[kind]:
            claimed = [c for c in configs if self.start is None or self.start(c)]
            if claimed:
                lost.append(claimed)
        self.fresh[kind].clear()
        for ref in [r for r, k in self.kinds.items() if k == kind]:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            del self.kinds[ref]
            lost.append(self.pending.pop(ref))
        cluster = self.cluster
        versions = " and this machine's versions" if cluster.excluded else ""
        reason = (f"lost: no node with a {RESOURCE[kind]}{versions} in {cluster.where} for "
                  f"{cluster.node_wait_s:g} s")
        for configs in lost:
            yield from cluster_node.lost_outcomes(configs, reason)

    def _finished(self, on_steps: StepsCallback) -> Iterator[Outcome]:
        """The outcomes of a task that finishes within ``WAIT_S``, or sooner when runs will
        have waited ``node_wait_s`` for a node, so that they end then."""
        ends = [since + self.cluster.node_wait_s - time.monotonic()
                for since in self.starved.values()]
        ready, _ = self.ray.wait(list(self.pending), num_returns=1,
                                 timeout=max(0.01, min([WAIT_S, *ends]) + 0.01))
        if not ready:
            # Nothing finished: renew the store's leases through the progress callback.
            on_steps(next(iter(self.pending.values()))[0].run_id, 0)
        for ref in ready:
            configs = self.pending.pop(ref)
            kind = self.kinds.pop(ref)
            outcomes = self._outcomes(ref, configs)
            if outcomes is None:  # its node was left out before training them
                self.again[kind].append(configs)
                continue
            yield from cluster_node.delivered(outcomes, configs, on_steps)

    def _outcomes(self, ref: Any, configs: list[RunConfig]) -> list[Outcome] | None:
        """The outcomes of a finished task, or None when its node was left out for its
        versions (its runs did not train)."""
        ray, retries = self.ray, self.cluster.max_retries
        try:
            value = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # toyrelu's own code raised on the node: the machine failed the runs, the cluster
            # did not lose them.
            return list(cluster_node.error_outcomes(
                configs, one_line(f"task raised {exc.cause!r}", 300)))
        except ray.exceptions.RayError as exc:
            reason = one_line(f"lost after {retries} retries: "
                              f"{type(exc).__name__}{_where(str(exc))}")
            return list(cluster_node.lost_outcomes(configs, reason))
        if isinstance(value, OtherVersions):
            self.cluster.exclude(value.node, value.mismatch)
            return None
        return [value] if isinstance(value, Outcome) else list(value)


@dataclass(frozen=True)
class OtherVersions:
    """What a task returns from a node whose versions differ: the node's Ray id and its
    ``Mismatch``, so that the driver keeps further tasks off that node."""

    node: str
    mismatch: cluster_node.Mismatch


def _task(train: Callable[..., Any], expected: dict[str, str], *args: Any) -> Any:
    """A task: ``train`` (a ``cluster_node`` function, which checks its node first) in a Ray
    worker, its ``Mismatch`` returned with the id of the node it was found on."""
    answer = train(expected, *args)
    if isinstance(answer, cluster_node.Mismatch):
        import ray  # in a Ray worker

        return OtherVersions(ray.get_runtime_context().get_node_id(), answer)
    return answer


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

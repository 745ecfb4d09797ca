"""``RayCluster``: an executor that trains a sweep's runs as Ray tasks, on this machine or on a
Ray cluster of many, with the store and its resume unchanged.

Ray core tasks, not Ray Tune: toyrelu has its grid, store and resume already. The driver (this
process) alone writes the store; the tasks return their outcomes through Ray's object store, so
the nodes need no shared filesystem, only the same toyrelu, torch and numba (``cluster_node``):
a node with others ends ``open``, and one that joins later is left out, named once on stderr,
its runs sent to the other nodes. ``cluster_queue`` sends the runs as tasks, one per CPU run
or per GPU batch (``use_gpu``, so that the batches, and so the numbers, are those of one GPU),
each holding the memory its runs need; a task whose worker or node dies is retried, and runs
lost after that, or that no node can take for ``node_wait_s``, come back as "lost" outcomes
with the reason (``cluster_node.lost_outcomes``), which the next sweep trains again; a task
whose own code raised gives its runs back as "error" outcomes, as a dead local worker does.

The driver imports Ray only here (``ray_module``) and only when a cluster is opened: a missing
Ray is a one-line ``ClusterError`` saying what to install. A local instance started here is
ended by ``close``, every process of it, found by an environment mark that Ray's processes
inherit; a cluster joined by address is left as it was. ``ray stop`` is never used: it ends
every Ray of the machine, other users' too (``cluster_procs``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from toyrelu.core.config import RunConfig
from toyrelu.runs import cluster_node, cluster_procs
from toyrelu.runs.cluster_node import one_line
from toyrelu.runs.cluster_queue import Pending, TaskQueue
from toyrelu.runs.executors import GpuBatches, StartCallback, compile_order, split
from toyrelu.runs.resources import default_workers
from toyrelu.runs.training import Outcome, StepsCallback

INSTALL = "pip install 'toyrelu[ray]'"
# The environment variable whose value marks every process of a local instance started here.
OWNER_ENV = "TOYRELU_RAY_OWNER"
# How long the driver tries to reach a cluster's address.
CONNECT_S = 5.0


class ClusterError(Exception):
    """A cluster that cannot take the sweep (unreachable, no GPU, other versions on a node, Ray
    missing); the message is one line."""


def parse_address(spec: str) -> str | None:
    """The Ray address of a ``--cluster`` value: "ray" -> None (start a local instance),
    "ray:auto" -> "auto", "ray:HOST:PORT" -> "HOST:PORT"; ``ClusterError`` otherwise."""
    engine, colon, address = spec.partition(":")
    if engine == "ray":
        if not colon or address == "auto":
            return address or None
        host, _, port = address.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return address
    raise ClusterError(f"cluster: {spec!r} is not a cluster (expected ray, ray:auto, "
                       "ray:HOST:PORT or slurm)")


def optional_module(name: str, install: str) -> Any:
    """The cluster engine ``name`` (ray, submitit), imported now; a ``ClusterError`` saying to
    run ``install`` when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ClusterError(f"cluster: {name} is not installed; {install}") from None


def ray_module() -> Any:
    return optional_module("ray", INSTALL)


class RayCluster:
    """Trains runs as Ray tasks (module docstring): on a local instance started here when
    ``address`` is None (with ``num_cpus``, default one per core, and ``object_store_memory``
    bytes), else on the running cluster at ``address`` ("auto" or HOST:PORT). A Ray already
    connected in this process is used as it is.

    Runs that no node can take for ``node_wait_s`` seconds (the GPU nodes are gone) come
    back lost rather than waiting for good; a cluster that grows meanwhile takes them.
    ``open`` connects (``map`` does when it was not called, and then closes at its end).
    A ``map`` stopped early cancels its tasks in flight on a cluster joined by address; on a
    local instance started here, they end with the instance at ``close``.
    """

    def __init__(self, address: str | None = None, *, max_retries: int = 3,
                 num_cpus: int | None = None, object_store_memory: int | None = None,
                 node_wait_s: float = 600.0):
        self.address = address
        self.max_retries = max_retries
        self.node_wait_s = node_wait_s
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.gpu: GpuBatches | None = None
        self.gpus_per_batch = 1.0
        self.expected = cluster_node.versions()
        self.excluded: dict[str, str] = {}  # node id -> host: nodes left out for their versions
        self._connected = False
        self._ours = False  # this process connected Ray (and ends the connection)
        self._owner: str | None = None  # the mark of a local instance started here
        self._reaper: subprocess.Popen | None = None
        self._roots: list[int] = []  # the processes ray.init started here

    def use_gpu(self, gpu: GpuBatches | None, gpus_per_batch: float = 1.0) -> RayCluster:
        """Train the fused runs in ``gpu``'s batches, each task holding ``gpus_per_batch``
        GPUs (a fraction is bookkeeping only: tasks sharing a GPU share its memory)."""
        self.gpu, self.gpus_per_batch = gpu, gpus_per_batch
        return self

    @property
    def where(self) -> str:
        if self.address is not None:
            return f"the Ray cluster at {self.address}"
        if self._connected and not self._ours:
            return "the Ray cluster this process is connected to"
        return "a local Ray instance"

    def open(self) -> RayCluster:
        """Connect, and check every node's versions; ``ClusterError`` if that fails (the
        connection is closed again)."""
        if self._connected:
            return self
        ray = ray_module()
        if not ray.is_initialized():
            self._connect(ray)
        self._connected = True
        try:
            nodes = _alive_nodes(ray)
            self._expect_same(ray.get([
                ray.remote(cluster_node.check).options(
                    num_cpus=0, scheduling_strategy=_on(node)).remote(self.expected)
                for node in nodes]))
        except BaseException:
            self.close()
            raise
        return self

    def _connect(self, ray: Any) -> None:
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if self.address is None:
            self._owner = secrets.token_hex(8)
            # Inherited by every process of the instance; kept until it is ended, since Ray
            # starts its agents after ray.init has returned.
            os.environ[OWNER_ENV] = self._owner
            options.update(num_cpus=self.num_cpus or default_workers(), include_dashboard=False,
                           object_store_memory=self.object_store_memory)
        elif self.address != "auto":
            host, _, port = self.address.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)),
                                         timeout=CONNECT_S).close()
            except OSError as exc:
                raise ClusterError(f"cluster: cannot reach a Ray cluster at {self.address} "
                                   f"({exc.strerror or exc})") from None
        if self._owner is not None:
            self._reaper = cluster_procs.start_reaper(OWNER_ENV, self._owner)
        before = set(cluster_procs.children().get(os.getpid(), ()))
        try:
            # "local": a new instance, even where another one runs (address=None would join it).
            with cluster_procs.held_stderr(self.address is not None):
                ray.init(address=self.address or "local", **options)
        except BaseException as exc:  # a Ctrl-C while Ray starts too: end what it started
            self._roots = self._started(before)
            self._end_owned(ray)
            if not isinstance(exc, (ConnectionError, RuntimeError, ValueError)):
                raise
            why = one_line(f"cluster: cannot connect to {self.where} ({exc})")
            raise ClusterError(why) from None
        self._roots = self._started(before)
        self._ours = True

    def _started(self, before: set[int]) -> list[int]:
        """The processes this one started since ``before``, but the reaper: the instance's
        when it was started here."""
        if self._owner is None:
            return []
        reaper = None if self._reaper is None else self._reaper.pid
        return [pid for pid in cluster_procs.children().get(os.getpid(), ())
                if pid not in before and pid != reaper]

    def describe(self, device: str) -> str:
        have = self.resources()
        return (f"on {self.where} ({have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs"
                f"{', GPU batches' if device == 'cuda' else ''})")

    def resources(self) -> dict[str, float]:
        return dict(ray_module().cluster_resources())

    def resolve_device(self, device: str) -> str:
        """"cpu" or "cuda" for a known ``--device`` (``resources.known_device``) on this
        cluster: "auto" takes the GPUs when the cluster has some; "cuda" on a cluster without
        one is a ``ClusterError``."""
        gpus = self.resources().get("GPU", 0)
        if device == "cuda" and not gpus:
            raise ClusterError(f"device: cuda was requested but {self.where} has no GPU")
        return "cuda" if device != "cpu" and gpus else "cpu"

    def close(self) -> None:
        """Disconnect if ``open`` connected, and end every process of a local instance
        started here."""
        if self._ours:
            self._end_owned(ray_module())
        self._connected = self._ours = False

    def __enter__(self) -> RayCluster:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def map(self, configs: Sequence[RunConfig], on_steps: StepsCallback,
            start: StartCallback | None = None) -> Iterator[Outcome]:
        if not configs:
            return
        opened_here = not self._connected
        self.open()
        pending: Pending = {}
        try:
            cpu_runs, batches = split(configs, self.gpu)
            self._compile(compile_order(cpu_runs))
            yield from TaskQueue(self, ray_module(), start, pending).run(cpu_runs, batches,
                                                                        on_steps)
        finally:
            # Tasks still in flight are cancelled on a cluster joined by address. A local
            # instance started here ends with ``close``, its tasks with it; cancelling them first
            # can race a task finishing meanwhile, which aborts the driver inside Ray's core
            # ("Tried to complete task that was not pending") instead of ending it cleanly.
            if self._owner is None:
                ray = ray_module()
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
            if opened_here:
                self.close()

    def largest_node(self, device: str) -> float | None:
        """The memory Ray gives tasks on the node with the most of it (its ``memory``
        resource: what was free when the node started, less its object store), among the
        nodes that can train on ``device`` ("cuda": those with GPUs); None when none can."""
        resource = "GPU" if device == "cuda" else "CPU"
        return max((n["Resources"].get("memory", 0.0) for n in self.usable_nodes()
                    if n["Resources"].get(resource, 0) > 0), default=None)

    def usable_nodes(self) -> list[dict[str, Any]]:
        """The nodes alive and not left out, as ``ray.nodes()`` describes them."""
        return [n for n in ray_module().nodes()
                if n.get("Alive") and n["NodeID"] not in self.excluded]

    def exclude(self, node: str, mismatch: cluster_node.Mismatch) -> None:
        """Keep further tasks off ``node``, whose versions differ, naming it once on stderr."""
        if node in self.excluded:
            return
        self.excluded[node] = mismatch[0]
        print(f"toyrelu: note: node {mismatch[0]} (Ray node {node[:8]}) has other versions than "
              f"this machine: {cluster_node.differences(mismatch, self.expected)}; its tasks go "
              "to the other nodes", file=sys.stderr)

    def _compile(self, kinds: Sequence[Any]) -> None:
        """Each kind of kernels compiled (or loaded) on every node with a CPU, the kinds side by
        side; a node that joined since ``open`` with other versions is left out here. A node
        that joins later compiles its kernels with its first run (or loads them from its disk
        cache)."""
        if not kinds:
            return
        ray = ray_module()
        task = ray.remote(cluster_node.compile_kind)
        refs = {task.options(num_cpus=1, max_retries=0, scheduling_strategy=_on(node))
                .remote(self.expected, kind): node
                for node in [n["NodeID"] for n in self.usable_nodes()
                             if n["Resources"].get("CPU", 0) >= 1] for kind in kinds}
        for ref, node in refs.items():
            # A node that dies meanwhile compiles nothing; its runs retry elsewhere.
            with contextlib.suppress(ray.exceptions.RayError):
                answer = ray.get(ref)
                if isinstance(answer, cluster_node.Mismatch):
                    self.exclude(node, answer)

    def _expect_same(self, answers: Sequence[Any]) -> None:
        for answer in answers:
            if isinstance(answer, cluster_node.Mismatch):
                raise ClusterError(cluster_node.describe(answer, self.expected))

    def _end_owned(self, ray: Any) -> None:
        """Disconnect, and end the processes of a local instance started here: those below
        what ray.init started, seen before shutting down (Ray's agents are reparented as it
        goes), and those marked."""
        known = cluster_procs.tree(self._roots) if self._owner is not None else {}
        with contextlib.suppress(Exception):
            ray.shutdown()
        if self._owner is not None:
            os.environ.pop(OWNER_ENV, None)
            cluster_procs.end(cluster_procs.finder(known, OWNER_ENV, self._owner))
            self._owner, self._roots = None, []
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None


def _alive_nodes(ray: Any) -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def _on(node: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node, soft=False)

"""Where a training command's runs train: the device of ``--device``, the cluster of
``--cluster`` (opened before any store, closed at the end), the executor with the GPU options,
and the checks of what fits there (hidden sizes, memory: this machine's, or a Ray cluster's
largest node). The training commands (``commands``) call these in that order.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from toyrelu.cli.parser import UsageError
from toyrelu.runs import limits
from toyrelu.runs.resources import GPU_BATCH_ROWS, known_device, resolve_device

if TYPE_CHECKING:
    from toyrelu.core.config import RunConfig
    from toyrelu.runs.cluster_ray import RayCluster
    from toyrelu.runs.cluster_slurm import SlurmJobs
    from toyrelu.runs.executors import Executor

    Cluster = RayCluster | SlurmJobs

# How far above an even spread of a sweep's GPU batches over a cluster's GPUs (the estimated
# time over total / GPUs) is worth a note suggesting smaller batches.
BALANCED = 1.1


def check_runs(configs: list[RunConfig], workers: int, device: str,
               cluster: Cluster | None = None, rows: int | None = None) -> None:
    """Refuse, before any store is opened, runs that no worker can train: a hidden size the
    CPU kernels are not built for, or more memory than this machine has with ``workers`` runs
    at once (``runs.limits``). On a Ray cluster, each task holds one run (or one GPU batch)
    and Ray puts on a node only what fits, so the largest run must fit the node with the most
    memory (of those with GPUs for "cuda"); a cluster with no such node yet checks none. On
    "cuda", the largest GPU batch of at most ``rows`` rows (``--gpu-batch-rows``, default
    ``GPU_BATCH_ROWS``) must fit too (``_batch_refusal``)."""
    memory, machine = None, "this machine"
    if cluster is not None:
        from toyrelu.runs.cluster_ray import RayCluster

        if isinstance(cluster, RayCluster):
            largest = cluster.largest_node(device)
            workers, memory = 1, math.inf if largest is None else largest
            machine = f"the largest node of {cluster.where}"
    reason = limits.refusal(configs, workers=workers, device=device, memory=memory,
                            machine=machine)
    if reason is None and device == "cuda":
        reason = _batch_refusal(configs, rows or GPU_BATCH_ROWS,
                                memory or limits.machine_memory(), machine)
    if reason is not None:
        raise UsageError(reason)


def _batch_refusal(configs: list[RunConfig], rows: int, memory: float,
                   machine: str) -> str | None:
    """Why the largest GPU batch of at most ``rows`` rows cannot be held in ``memory`` bytes
    (a batch's runs are drawn on the host together, ``limits.task_bytes``), with the
    ``--gpu-batch-rows`` that fits (halving ``rows``) when one does; None when it fits."""
    from toyrelu.runs.executors import GpuBatches

    def largest(rows: int) -> float:
        return max((limits.task_bytes(b, "cuda") for b in GpuBatches(max_rows=rows)
                    .batches(configs)), default=0.0)

    need = largest(rows)
    if need <= memory:
        return None
    fits, held = rows, need
    while fits > 1 and held > memory:
        fits //= 2
        held = largest(fits)
    hint = f" (allowed: --gpu-batch-rows <= {fits} here)" if held <= memory else ""
    return (f"gpu-batch-rows: the largest GPU batch of up to {rows:,} rows needs "
            f"{limits.format_bytes(need)} of host memory, more than the "
            f"{limits.format_bytes(memory)} of {machine}{hint}")


@contextlib.contextmanager
def open_cluster(args: argparse.Namespace, folder: Path) -> Iterator[Cluster | None]:
    """The cluster of ``--cluster``, checked before any store is opened: a Ray cluster
    connected, its nodes' versions checked, and closed at the end (a local instance ended), or
    SLURM's jobs; None without ``--cluster``. A cluster that cannot take the sweep raises
    ``ClusterError``, a one-line input error. The options that need no cluster to be judged
    are judged first, so that a wrong one costs no connection."""
    rows = args.gpu_batch_rows
    if rows is not None and not 1 <= rows <= GPU_BATCH_ROWS:
        raise UsageError(f"gpu-batch-rows: {rows} must be an integer from 1 to "
                         f"{GPU_BATCH_ROWS:,} (the largest batch timed)")
    slurm = {"--slurm-partition": args.slurm_partition, "--slurm-time": args.slurm_time,
             "--slurm-gpus": args.slurm_gpus}
    given = [name for name, value in slurm.items() if value is not None]
    if given and args.cluster != "slurm":
        raise UsageError(f"{given[0][2:]}: goes with --cluster slurm")
    if args.cluster is None:
        yield None
        return
    from toyrelu.runs.cluster_ray import RayCluster, parse_address

    address = None if args.cluster == "slurm" else parse_address(args.cluster)
    if args.workers is not None:
        raise UsageError("workers: --workers counts local processes; on a cluster the "
                         "cluster's CPUs (Ray) or jobs (SLURM) train the runs")
    if args.cluster == "slurm":
        yield _slurm(args, folder)
        return
    with RayCluster(address) as cluster:
        yield cluster


def _slurm(args: argparse.Namespace, folder: Path) -> SlurmJobs:
    from toyrelu.runs.cluster_slurm import SlurmJobs

    given: dict[str, int] = {}  # the others keep SlurmJobs' defaults
    if args.slurm_time is not None:
        if args.slurm_time < 1:
            raise UsageError(f"slurm-time: {args.slurm_time} must be an integer >= 1 (minutes)")
        given["time_min"] = args.slurm_time
    if args.slurm_gpus is not None:
        if args.slurm_gpus < 1:
            raise UsageError(f"slurm-gpus: {args.slurm_gpus} must be an integer >= 1 (GPUs per "
                             "job)")
        if args.device != "cuda":
            raise UsageError("slurm-gpus: goes with --device cuda (a CPU job holds one CPU)")
        given["gpus"] = args.slurm_gpus
    jobs = SlurmJobs(folder / "toyrelu-slurm", partition=args.slurm_partition,
                     log=sys.stderr, **given)
    jobs.check()
    return jobs


def device(args: argparse.Namespace, cluster: Cluster | None = None) -> str:
    """The device of ``--device``, here or on the ``cluster``'s nodes."""
    try:
        device = (resolve_device(args.device) if cluster is None else
                  cluster.resolve_device(known_device(args.device)))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.gpu_cells and device != "cuda":
        raise UsageError("gpu-cells: needs a CUDA GPU (the CPU engine takes its split-cell step "
                         "by itself)")
    if args.gpu_dots and device != "cuda":
        raise UsageError("gpu-dots: needs a CUDA GPU")
    if args.gpu_batch_rows is not None and device != "cuda":
        raise UsageError("gpu-batch-rows: needs a CUDA GPU")
    return device


def executor(args: argparse.Namespace, workers: int, device: str,
             cluster: Cluster | None = None) -> Executor:
    """Where the runs train, with the GPU options of ``parser._add_device_options``: the
    ``cluster`` if there is one, with the GPU batches of one GPU on "cuda"."""
    from toyrelu.runs import executors
    from toyrelu.runs.executors import GpuBatches

    rows = args.gpu_batch_rows or GPU_BATCH_ROWS
    if cluster is not None:
        return cluster.use_gpu(GpuBatches(max_rows=rows, cells=args.gpu_cells,
                                          dots=args.gpu_dots) if device == "cuda" else None)
    return executors.executor(workers, device, args.gpu_cells, args.gpu_dots, rows)


def note_few_batches(configs: list[RunConfig], args: argparse.Namespace, device: str,
                     cluster: Cluster | None) -> None:
    """On a Ray cluster's GPUs, ``_note_few_batches`` for the sweep's batches; SLURM's
    partitions cannot be seen from here."""
    if device == "cuda" and cluster is not None and args.cluster != "slurm":
        gpus = cast("RayCluster", cluster).resources().get("GPU", 0)
        _note_few_batches(configs, args.gpu_batch_rows or GPU_BATCH_ROWS, gpus)


def _note_few_batches(configs: list[RunConfig], rows: int, gpus: float) -> None:
    """A note when the sweep's GPU batches of at most ``rows`` rows would keep the cluster's
    ``gpus`` busy for more than ``BALANCED`` times the ideal (``grid.makespan``: a few large
    batches leave GPUs idle while the last ones train), with the ``--gpu-batch-rows`` that
    balances them (halving ``rows`` until it does, or until every batch holds one run)."""
    from toyrelu.runs.executors import GpuBatches
    from toyrelu.runs.grid import cost, makespan

    def spread(rows: int) -> tuple[int, float]:
        batches = GpuBatches(max_rows=rows).batches(configs)
        return len(batches), makespan([sum(cost(c) for c in b) for b in batches], int(gpus))

    count, ratio = spread(rows)
    if gpus < 2 or ratio <= BALANCED:
        return
    batched = sum(c.engine != "reference" for c in configs)
    smaller, (more, better) = rows, (count, ratio)
    while better > BALANCED and more < batched and smaller > 1:
        smaller //= 2
        more, better = spread(smaller)
    if better < ratio:
        print(f"toyrelu: note: {count} GPU batches keep {gpus:g} GPUs busy {ratio:.2f}x as long "
              f"as an even spread would; --gpu-batch-rows {smaller} makes {more}, {better:.2f}x "
              "(smaller batches fill a GPU less well, and a run's numbers change in rounding "
              "with its batch)",
              file=sys.stderr)

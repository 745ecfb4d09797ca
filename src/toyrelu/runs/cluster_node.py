"""What a cluster node runs for ``cluster_ray.RayCluster`` and ``cluster_slurm.SlurmJobs``: the
version check, the kernel compilation before the first run, CPU runs, one GPU batch, and a
SLURM job's GPU batches at once, one child process on each of its GPUs.

Plain functions, importable without Ray or submitit: the Ray executor wraps them as Ray tasks,
and Ray's workers import this module by name, as a SLURM job's Python does, so every node needs
toyrelu installed (the version check says which node has another toyrelu, torch or numba). A
Ray task returns what the store keeps (an ``Outcome``, or a batch's list of them) through Ray's
object store, never a file; a SLURM job returns it through the result file submitit writes into
the job folder that the driver and the nodes share. The driver stores runs that a cluster lost
(``lost_outcomes``) with status "lost" and the reason; they are not finished, so the next sweep
trains them again.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toyrelu.core.config import RunConfig
    from toyrelu.runs.executors import GpuBatches
    from toyrelu.runs.training import KernelKind, Outcome, StepsCallback

# The packages whose versions decide the stored numbers: a node with another version of any of
# them could store other numbers for the same config.
PACKAGES = ("toyrelu", "torch", "numba")


class Mismatch(tuple):
    """A node whose versions differ from the driver's: (host, its versions). Returned, not
    raised, so that Ray does not retry it and the driver names the node in one line."""


def versions() -> dict[str, str]:
    """This process's versions of ``PACKAGES`` ("source" for a toyrelu run from a checkout)."""
    import numba
    import torch

    try:
        own = metadata.version("toyrelu")
    except metadata.PackageNotFoundError:
        own = "source"
    return {"toyrelu": own, "torch": str(torch.__version__), "numba": str(numba.__version__)}


def check(expected: dict[str, str]) -> Mismatch | None:
    """None when this node has the ``expected`` versions, else the ``Mismatch``."""
    found = versions()
    return None if found == expected else Mismatch((socket.gethostname(), found))


def describe(mismatch: Mismatch, expected: dict[str, str]) -> str:
    """One line naming the node and the versions that differ."""
    return f"cluster: node {mismatch[0]} has other versions than this machine: " + differences(
        mismatch, expected)


def differences(mismatch: Mismatch, expected: dict[str, str]) -> str:
    """The node's versions that differ from ``expected``: "torch 2.5.0 (driver: 2.6.0), ..."."""
    found = mismatch[1]
    return ", ".join(f"{name} {found.get(name)} (driver: {expected[name]})"
                     for name in PACKAGES if found.get(name) != expected[name])


def compile_kind(expected: dict[str, str], kind: KernelKind) -> Mismatch | None:
    """Check the node, then compile (or load from its disk cache) one kind of kernels there, as
    ``LocalProcesses`` does before its first run; a kind that fails to compile fails its runs,
    which store the reason."""
    mismatch = check(expected)
    if mismatch is None:
        from toyrelu.runs import workers

        _single_threaded()
        workers.compile_kind(kind)
    return mismatch


def train_run(expected: dict[str, str], config: RunConfig) -> Outcome | Mismatch:
    """One CPU run, single-threaded (the task holds one CPU)."""
    mismatch = check(expected)
    if mismatch is not None:
        return mismatch
    from toyrelu.runs.training import run_one

    _single_threaded()
    return run_one(config)


def train_runs(expected: dict[str, str], configs: list[RunConfig]) -> list[Outcome] | Mismatch:
    """CPU runs one after another, single-threaded (a SLURM job holding one CPU)."""
    mismatch = check(expected)
    if mismatch is not None:
        return mismatch
    from toyrelu.runs.training import run_one

    _single_threaded()
    return [run_one(config) for config in configs]


def lost_outcomes(configs: Sequence[RunConfig], reason: str) -> Iterator[Outcome]:
    """"lost" outcomes, each with ``reason``, for runs that a cluster lost (Ray's retries ran
    out, no node could take them, their SLURM job or GPU process died); the next sweep trains
    them again."""
    return _untrained(configs, "lost", reason)


def error_outcomes(configs: Sequence[RunConfig], reason: str) -> Iterator[Outcome]:
    """"error" outcomes, each with ``reason``, for runs whose task raised on its node (toyrelu's
    own code, out of GPU memory, say): the machine failed them, as it fails a run in a local
    worker, and the next sweep trains them again."""
    return _untrained(configs, "error", reason)


def _untrained(configs: Sequence[RunConfig], status: str, reason: str) -> Iterator[Outcome]:
    from toyrelu.runs.training import Outcome

    for c in configs:
        yield Outcome(c.run_id, c.to_dict(), {"status": status, "error": reason}, {})


def delivered(outcomes: Iterable[Outcome], configs: Sequence[RunConfig],
              on_steps: StepsCallback) -> Iterator[Outcome]:
    """``outcomes`` of a task or job that trained ``configs``, each reported to ``on_steps``
    with all its run's steps as it is yielded: the progress of a run trained elsewhere."""
    steps = {c.run_id: c.steps for c in configs}
    for outcome in outcomes:
        on_steps(outcome.run_id, steps[outcome.run_id])
        yield outcome


def one_line(message: object, limit: int | None = None) -> str:
    """``message`` on one line (its whitespace runs made single spaces), cut to ``limit``."""
    return " ".join(str(message).split())[:limit]


def train_batch(expected: dict[str, str], gpu: GpuBatches,
                batch: list[RunConfig]) -> list[Outcome] | Mismatch:
    """One ``GpuBatches`` batch on the GPU that Ray gave this task (``CUDA_VISIBLE_DEVICES``)."""
    mismatch = check(expected)
    if mismatch is not None:
        return mismatch
    outcomes = _train(gpu, batch)
    if gpu.device.startswith("cuda"):
        import torch

        # The worker stays for the next batch (max_calls=0): give back what torch's allocator
        # keeps, which a task sharing the GPU may need.
        torch.cuda.empty_cache()
    return outcomes


def train_batches(expected: dict[str, str], gpu: GpuBatches,
                  batches: list[list[RunConfig]]) -> list[Outcome] | Mismatch:
    """``GpuBatches`` batches at once on the GPUs of this SLURM job, one each (``job_gpus``).

    One batch trains in this process. Several train each in a child process of its own whose
    ``CUDA_VISIBLE_DEVICES`` names one GPU: a training loop is a Python loop of kernel
    launches, which threads of one process would slow by taking turns on its interpreter. The
    children are spawned (a forked CUDA state is unusable) and load torch and the kernels
    themselves. A batch is trained exactly as in one process, so its numbers are the same; a
    child that raises gives its batch's runs back as errors, one that dies gives them back lost;
    the other batches' are kept."""
    mismatch = check(expected)
    if mismatch is not None:
        return mismatch
    if len(batches) == 1:
        return _train(gpu, batches[0])
    spawn = multiprocessing.get_context("spawn")
    devices = job_gpus(len(batches))
    pools = [ProcessPoolExecutor(1, mp_context=spawn, initializer=_see_only, initargs=(device,))
             for device in devices]
    try:
        futures = [pool.submit(_train, gpu, batch)
                   for pool, batch in zip(pools, batches, strict=True)]
        outcomes: list[Outcome] = []
        for future, batch, device in zip(futures, batches, devices, strict=True):
            try:
                outcomes += future.result()
            except BrokenProcessPool as exc:  # the child died: killed, or its node's GPU lost
                outcomes += lost_outcomes(batch, f"lost: the process of GPU {device} died "
                                                 f"({one_line(exc, 300)})")
            except Exception as exc:  # noqa: BLE001 - the child raised, as a local worker can
                outcomes += error_outcomes(batch, f"the process of GPU {device} raised "
                                                  f"{type(exc).__name__}: {one_line(exc, 300)}")
        return outcomes
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)


def job_gpus(count: int) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` name of the GPU for each of ``count`` batches: those SLURM
    gave the job ("3,5"), in turn, or 0 to ``count - 1`` where none are named."""
    named = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    names = named or [str(k) for k in range(count)]
    return [names[k % len(names)] for k in range(count)]


def _see_only(device: str) -> None:
    # Runs in the child before anything there touches CUDA, which reads it once.
    os.environ["CUDA_VISIBLE_DEVICES"] = device


def _train(gpu: GpuBatches, batch: list[RunConfig]) -> list[Outcome]:
    """One batch's outcomes; its progress is reported when they come back to the driver."""
    return list(gpu.train(batch, lambda run_id, k: None))


def _single_threaded() -> None:
    # One task per CPU: threads of a run would only compete with the other tasks of the node.
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)

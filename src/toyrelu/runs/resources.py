"""What a sweep may run on: the device (CPU or a CUDA GPU) and the number of CPU workers.

Light on purpose: the command line reads these before it knows whether it will train at all.
"""

from __future__ import annotations

import os
import signal


def default_workers() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def usable_workers(requested: int) -> int:
    """``requested`` workers, at most ``default_workers``: more single-threaded workers than
    cores only take turns on them, and each holds a run in memory."""
    return min(requested, default_workers())


DEVICES = ("auto", "cpu", "cuda")

# Training rows per GPU batch by default and at most: four runs of T = 500,000, the largest
# batch timed (docs/engines.md, "The GPU engine"); smaller batches fill the device less well.
GPU_BATCH_ROWS = 2_000_000

# The signals that stop a sweep (Ctrl-C, kill's default, a closed terminal): the command
# line turns each into a clean stop, and the worker pool holds each back while it starts or
# stops a worker, so the two must name the same ones.
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def known_device(device: str) -> str:
    """``device`` if it is one of ``DEVICES``; ValueError (one line) otherwise."""
    if device not in DEVICES:
        raise ValueError(f"device: {device!r} must be one of {', '.join(DEVICES)}")
    return device


def resolve_device(device: str) -> str:
    """"cpu" or "cuda" for a requested device; "auto" takes a usable CUDA GPU when there is
    one. Raises ValueError (one line) for an unknown name or a GPU that is not there."""
    if known_device(device) == "cpu":
        return "cpu"
    from toyrelu.engines import gpu

    if gpu.available():
        return "cuda"
    if device == "cuda":
        raise ValueError("device: cuda was requested but no usable CUDA GPU (with triton) is here")
    return "cpu"

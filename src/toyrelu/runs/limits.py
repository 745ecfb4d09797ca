"""What one machine can hold: a run's peak memory, estimated from its config before any work,
and the caps a sweep is held to before its store is opened.

``run_bytes`` adds up what a run allocates, part by part (the training set, the test set, the
parameters, the learning-rate schedule, the snapshots); ``sweep_bytes`` adds the worker
processes that hold runs at once, ``task_bytes`` the runs one process holds at once (a cluster's
task). ``refusal`` compares the largest run of a sweep with the machine's memory (or a cluster
node's) and, when it cannot fit, names in one line the field that dominates and the
largest value of it that would fit. ``hidden_refusal`` refuses hidden sizes the CPU engine's
kernels are not built for. The estimate is a conservative upper bound, checked against measured
runs by ``benchmarks/bench_memory.py`` (docs/engines.md, "Limits").

Light on purpose, like ``resources``: the presets import it, and the command line checks a
sweep with it before it opens the store.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from toyrelu.core.config import ConfigError, RunConfig
from toyrelu.engines.cpu import MAX_HIDDEN

# Runs in one sweep at most (a grid's axis lengths multiplied, before any config is built), and
# initialisations per dataset (``--restarts``). A larger sweep is split into several.
MAX_RUNS = 100_000
MAX_RESTARTS = 1_000

# Bytes a run allocates per unit of each size, measured (tracemalloc and peak RSS) by
# benchmarks/bench_memory.py and rounded up; docs/engines.md, "Limits", has the numbers.
# A data set peaks either while it is drawn, per nonzero (int64 keys, their sort, float64
# values before the final CSR arrays) and per example (counts, row pointers, norms) ...
DRAW_NONZERO = 52
DRAW_ROW = 32
# ... with, at T = infinity, the batch kept for the result and the previous step's held while
# each step's batch is drawn ...
STREAM_NONZERO = 24
# ... or while it is evaluated: the CSR arrays and their float64 copies, per example the
# losses, and per example and hidden dimension H in the working precision and in float64.
EVALUATE_NONZERO = 28
EVALUATE_ROW = 16
EVALUATE_ROW_HIDDEN = 16
# Per parameter (n_hidden + 1) x n_features: W, b, Adam's moments, gradients and tiles in the
# working precision, the float64 gradient sums, and the float64 copies of the evaluation.
PER_PARAMETER_ITEMS = 10
PER_PARAMETER = 24
# Per step: the learning-rate schedule (float64, about five arrays of it while it is computed);
# on a GPU the host also builds AdamW's per-step scalars as Python lists.
PER_STEP = 40
PER_STEP_GPU = 300
# Per chunk of the fused engine's steps: the sorted set of the steps where chunks end.
PER_CHUNK = 120
# The fused engine cuts a run into chunks of about this many (example, feature) pairs, at most
# CHUNK_STEPS steps each (``engines.cpu.engine.train``).
CHUNK_PAIRS = 5e9
CHUNK_STEPS = 1_000
# Copies of the snapshots at once: the list, the stacked arrays, the pickled result.
SNAPSHOT_COPIES = 3
# Dense T x n arrays of the reference engine at its peak: X, the reconstruction and the
# intermediates autograd keeps for the backward pass.
DENSE_COPIES = 8
# A worker process with numpy, torch, numba and the kernels loaded.
PROCESS_BYTES = 512 * 2**20
# What the parts leave out: allocator slack, Python objects, numba's temporaries.
MARGIN = 1.25


@dataclass(frozen=True)
class Sizes:
    """The numbers a run's memory depends on, from its config (``of``).

    ``rows`` is the examples of one step (``n_train``, or ``batch_size`` for T = infinity,
    ``stream``); ``snapshot_every`` 0 keeps no snapshots; ``dense`` is the reference engine,
    ``gpu`` a fused run on a CUDA GPU."""

    rows: float
    n_features: float
    n_hidden: float
    n_test: float
    density: float
    steps: float
    snapshot_every: int
    itemsize: int
    stream: bool
    dense: bool
    gpu: bool

    @classmethod
    def of(cls, config: RunConfig, device: str = "cpu") -> Sizes:
        return cls(_real(config.examples_per_step), _real(config.n_features),
                   _real(config.n_hidden), _real(config.n_test), config.density,
                   _real(config.steps), config.snapshot_every,
                   8 if config.dtype == "float64" else 4, config.infinite,
                   config.engine == "reference",
                   device == "cuda" and config.engine != "reference")

    @property
    def parameters(self) -> float:
        return (self.n_hidden + 1) * self.n_features

    @property
    def snapshots(self) -> float:
        return math.ceil(self.steps / self.snapshot_every) + 1 if self.snapshot_every else 0


def run_bytes(sizes: Sizes) -> dict[str, float]:
    """The bytes one run allocates at most, by part (docs/engines.md, "Limits"): each part at
    its own peak, so that the sum, times ``MARGIN``, bounds the run's peak from above."""
    s = sizes
    parts = {
        "the training set": _data_bytes(s, s.rows, stream=s.stream),
        "the test set": _data_bytes(s, s.n_test),
        "the parameters": (PER_PARAMETER_ITEMS * s.itemsize + PER_PARAMETER) * s.parameters,
        "the learning-rate schedule": s.steps * (PER_STEP_GPU if s.gpu else PER_STEP),
        "the snapshots": SNAPSHOT_COPIES * s.snapshots * s.parameters * s.itemsize,
    }
    if s.dense:
        parts["the dense training set"] = DENSE_COPIES * s.rows * s.n_features * s.itemsize
    elif not s.gpu:
        chunk = min(CHUNK_STEPS, max(1.0, CHUNK_PAIRS / (s.rows * s.n_features + 1)))
        parts["the learning-rate schedule"] += PER_CHUNK * s.steps / chunk
    return parts


def _data_bytes(sizes: Sizes, rows: float, *, stream: bool = False) -> float:
    """The peak of a data set of ``rows`` examples: while it is drawn or while it is
    evaluated."""
    nonzeros = rows * sizes.n_features * sizes.density
    drawn = (DRAW_NONZERO + (STREAM_NONZERO if stream else 0)) * nonzeros + DRAW_ROW * rows
    evaluated = (EVALUATE_NONZERO * nonzeros
                 + (EVALUATE_ROW + EVALUATE_ROW_HIDDEN * sizes.n_hidden) * rows)
    return max(drawn, evaluated)


def config_bytes(config: RunConfig, device: str = "cpu") -> float:
    """The sum of ``run_bytes`` for a run of ``config`` on ``device``, before ``MARGIN``."""
    return sum(run_bytes(Sizes.of(config, device)).values())


def result_bytes(sizes: Sizes) -> float:
    """The bytes of a run's stored arrays: X in CSR form, H, W, b and the snapshots."""
    s = sizes
    nonzeros = s.rows * s.n_features * s.density
    return ((4 + s.itemsize) * nonzeros + (8 + s.itemsize * s.n_hidden) * s.rows
            + (s.snapshots + 1) * s.parameters * s.itemsize)


def sweep_bytes(sizes: Sizes, workers: int) -> float:
    """The bytes ``workers`` processes need when each holds a run of ``sizes`` at once. With
    more than one, the sweep's own process also holds up to one result per worker, and the
    blobs of the one it stores."""
    total = workers * (PROCESS_BYTES + MARGIN * sum(run_bytes(sizes).values()))
    if workers > 1:
        total += PROCESS_BYTES + (workers + 1) * result_bytes(sizes)
    return total


def task_bytes(configs: Iterable[RunConfig], device: str = "cpu") -> float:
    """The bytes one process needs to train ``configs`` at once: the process and each run's
    parts with ``MARGIN``, as ``sweep_bytes`` counts one worker (a cluster's task: one CPU run,
    or a GPU batch on "cuda", whose runs' data sets are all drawn on the host first)."""
    return PROCESS_BYTES + MARGIN * sum(config_bytes(c, device) for c in configs)


def machine_memory() -> int:
    """The machine's physical memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# Each part's sizes (``Sizes`` attributes) that it grows with, in the order they are named
# when none alone can make the run fit, then the other config fields its message quotes.
_PARTS = {
    "the training set": (("rows", "n_features"), ("sparsity",)),
    "the test set": (("n_test", "n_features"), ("sparsity",)),
    "the parameters": (("n_features", "n_hidden"), ()),
    "the learning-rate schedule": (("steps",), ()),
    "the snapshots": (("n_features", "n_hidden"), ("snapshot_every",)),
    "the dense training set": (("rows", "n_features"), ("engine",)),
}


def hidden_refusal(config: RunConfig, device: str = "cpu") -> str | None:
    """Why ``config`` cannot train on ``device`` with the CPU engine's compiled kernels (one
    line), or None: they are generated for each hidden size up to ``MAX_HIDDEN``, and larger
    ones take minutes to compile into ever larger modules (docs/engines.md, "Limits")."""
    if config.engine != "fused" or device == "cuda" or config.n_hidden <= MAX_HIDDEN:
        return None
    return (f"n_hidden: {_number(config.n_hidden)} is more than the CPU engine's compiled "
            f"kernels are built for (allowed: n_hidden <= {MAX_HIDDEN} with engine=fused on the "
            "CPU; engine=reference trains any n_hidden, slowly)")


def check_hidden(config: RunConfig, device: str = "cpu") -> None:
    """Raise ConfigError with ``hidden_refusal``'s line when there is one."""
    reason = hidden_refusal(config, device)
    if reason is not None:
        raise ConfigError(reason)


def refusal(configs: Iterable[RunConfig], *, workers: int, device: str = "cpu",
            memory: float | None = None, machine: str = "this machine") -> str | None:
    """Why the runs of ``configs`` cannot train here (one line), or None.

    A config the CPU engine's kernels are not built for is named first (``hidden_refusal``);
    then the run that needs the most memory is checked with ``workers`` processes holding one
    such run each (at most one per run, one process on a GPU) against ``memory`` (default:
    the machine's), which the line calls ``machine``. The line names the field whose value is
    furthest above what would fit, the part of the run it fills and the largest value that
    fits, the others unchanged."""
    configs = list(configs)
    for config in configs:
        reason = hidden_refusal(config, device)
        if reason is not None:
            return reason
    if not configs:
        return None
    memory = machine_memory() if memory is None else memory
    workers = 1 if device == "cuda" else max(1, min(workers, len(configs)))
    largest = max(configs, key=lambda c: config_bytes(c, device))
    sizes = Sizes.of(largest, device)
    if sweep_bytes(sizes, workers) <= memory:
        return None
    return _memory_message(largest, sizes, workers, memory, machine)


def _memory_message(config: RunConfig, sizes: Sizes, workers: int, memory: float,
                    machine: str) -> str:
    parts = run_bytes(sizes)
    part = max(parts, key=lambda name: parts[name])
    grows, quoted = _PARTS[part]
    fits = {attr: _largest_fitting(sizes, attr, workers, memory) for attr in grows}
    ratios = {attr: getattr(sizes, attr) / v for attr, v in fits.items() if v is not None}
    attr = max(ratios, key=lambda a: ratios[a]) if ratios else grows[0]
    name = _field(config, attr)
    need = f"about {format_bytes(parts[part])} for {part}"
    if workers > 1:
        need += f" ({format_bytes(sweep_bytes(sizes, workers))} with {workers} workers at once)"
    if attr in ratios:
        others = [_field(config, a) for a in grows if a != attr] + list(quoted)
        at = ", ".join(f"{f}={_number(getattr(config, f))}" for f in others)
        allowed = f"{name} <= {_number(fits[attr], down=True)}" + (f" at {at}" if at else "")
    else:
        allowed = "smaller " + " and ".join(_field(config, a) for a in grows)
    if workers > 1:
        allowed += f" with {workers} workers"
        fewer = max((k for k in range(1, workers) if sweep_bytes(sizes, k) <= memory), default=0)
        if fewer:
            allowed += f", or {fewer} worker{'s' if fewer > 1 else ''} as given"
    return (f"{name}: {_number(getattr(config, name))} needs {need}; {machine} has "
            f"{format_bytes(memory)} (allowed: {allowed})")


def _largest_fitting(sizes: Sizes, attr: str, workers: int, memory: float) -> float | None:
    """The largest whole value of ``attr`` up to its own with which the sweep fits, or None."""
    def fits(value: float) -> bool:
        changed: dict[str, Any] = {attr: _real(value)}
        return sweep_bytes(dataclasses.replace(sizes, **changed), workers) <= memory

    # No size near 2**62 fits any machine; the cap keeps an infinite size out of floor.
    lo, hi = 1, math.floor(min(getattr(sizes, attr), 2.0**62))
    if not fits(lo):
        return None
    while lo < hi:  # fits(lo) holds; the answer is in [lo, hi]
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _field(config: RunConfig, attr: str) -> str:
    """The config field a ``Sizes`` attribute comes from."""
    if attr == "rows":
        return "batch_size" if config.infinite else "n_train"
    return attr


def _number(value: object, *, down: bool = False) -> str:
    """A field's value as the command line takes it: large integers as 1e10 or 2.9e8 (two
    digits, rounded down with ``down`` so that the value shown still fits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value == math.inf:
        return str(value)
    if value < 100_000 or value != int(value):
        return f"{int(value)}" if value == int(value) else f"{value:g}"
    exponent = int(math.log10(value))
    scaled = value / 10 ** (exponent - 1)
    digits = math.floor(scaled) if down else round(scaled)
    if digits >= 100:  # 9.96e9 rounds to 1e10
        digits, exponent = digits // 10, exponent + 1
    return f"{digits / 10:g}e{exponent}"


def _real(count: float) -> float:
    """``count`` as a float, infinite beyond the largest one: the sizes of a config are exact
    integers of any size, which float arithmetic would refuse with an OverflowError."""
    try:
        return float(count)
    except OverflowError:
        return math.inf


def format_bytes(count: float) -> str:
    """A byte count in binary units, three significant digits: 23.5 GiB."""
    if not math.isfinite(count):
        return "∞ bytes"
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(len(units) - 1, max(0, int(math.log(max(count, 1), 1024))))
    value = count / 1024**power
    if value < 1_000:
        return f"{value:.3g} {units[power]}"
    # Beyond the largest unit, a count of EiB in full digits would be unreadable.
    return f"{value:.0f} {units[power]}" if value < 1e6 else f"{value:.2g} {units[power]}"

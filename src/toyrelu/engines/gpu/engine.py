"""Batched GPU training engine: many runs of one shape trained at once by Triton kernels.

Small runs cannot fill a GPU, so runs that share a ``batch_key`` (same n, m, dtype, steps,
schedule and optimiser settings) are stacked along a run axis (``toyrelu.engines.gpu.batch``):
W (R, m, n), b (R, n) and the Adam moments alike, with every run's examples side by side. Runs
may differ in T, seed and data; each keeps its own loss scale (1/T or 1/(T n)) and is frozen
alone if its loss stops being finite.

A step (``toyrelu.engines.gpu.step``) computes the same fused quantities as the CPU engine
(``toyrelu.engines.cpu.engine``), never storing anything of size T x n, in three launches
(``toyrelu.engines.gpu.kernels.dense`` describes them): pass A over blocks of examples (h_t,
dL/dh_t, the loss, the exact corrections at the nonzeros), pass B over blocks of features (the
decoder sums over examples), and an update that adds the column-sorted sparse terms and applies
AdamW as torch.optim.AdamW does. All sums run in a fixed order: results are the same bit for
bit from call to call, and depend on ``Blocks`` only through rounding. float32 runs match a
float64 reference about as tightly as the CPU engine does (docs/engines.md, "The GPU engine").

``toyrelu.engines.gpu.feed`` uploads each step's examples. ``import toyrelu.engines.gpu`` does
not import Triton; the kernels are loaded at the first call. Without CUDA,
``TRITON_INTERPRET=1`` (set before Triton is imported) runs them on CPU tensors with
``device="cpu"``: that is how the tests check them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

import numpy as np
import torch
from numpy.typing import NDArray

from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.core.trainer import Diverged, SnapshotCallback, snapshot_steps
from toyrelu.engines.gpu.adamw import adamw_steps
from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.blocks import Blocks, default_blocks
from toyrelu.engines.gpu.feed import Feed, upload
from toyrelu.engines.gpu.step import Step

# on_snapshot(run index, step, W, b) of train_many: host copies of one run's W and b
SnapshotsCallback = Callable[[int, int, NDArray[np.floating], NDArray[np.floating]], None]
Result = tuple[NDArray[np.floating], NDArray[np.floating]] | Diverged
# Pairs of work between progress calls by default: a fraction of a second at the pair rates of
# docs/engines.md, "The GPU engine".
PAIRS_PER_CHUNK = 2e11


def available() -> bool:
    """Whether a CUDA device and Triton are usable here."""
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def batch_key(config: RunConfig) -> tuple:
    """Configs with equal keys can be trained in one ``train_many`` call: they agree on shape,
    dtype, steps, schedule, optimiser and loss reduction, and may differ in T, seed, sparsity,
    initialisation or anything else that only changes the data or the initial parameters."""
    return (config.n_features, config.n_hidden, config.dtype, config.steps, float(config.lr),
            config.warmup, config.schedule, float(config.weight_decay), config.decay_bias,
            float(config.beta1), float(config.beta2), float(config.eps), config.loss_reduction)


@dataclass(frozen=True)
class _Part:
    """The runs of a ``train_many`` call that one set of launches steps: their indices in the
    call (``members``), their ``Step`` (and ``Batch``) and their ``Feed``."""

    members: list[int]
    step: Step
    feed: Feed

    @property
    def batch(self) -> Batch:
        return self.step.batch


def train_many(
    configs: Sequence[RunConfig],
    Xs: Sequence[SparseData | Iterable[SparseData]],
    W0s: Sequence[NDArray[np.floating]],
    b0s: Sequence[NDArray[np.floating]],
    *,
    device: torch.device | str = "cuda",
    on_steps: Callable[[int], None] | None = None,
    on_snapshot: SnapshotsCallback | Sequence[SnapshotCallback | None] | None = None,
    blocks: Blocks | None = None,
    chunk: int | None = None,
) -> list[Result]:
    """Train every run for ``steps`` AdamW steps from (W0s[i] (m, n), b0s[i] (n,)), all at once.

    All configs must share one ``batch_key``. ``Xs[i]`` is the run's fixed training set, or an
    iterable yielding one batch per step (T = infinity; each batch the same size). Returns, per
    run, the final numpy (W, b) in ``config.dtype``, or a ``Diverged`` whose message says at
    which step the loss stopped being finite (that run stops there; the others go on).
    ``on_steps(k)`` is called after every ``chunk`` steps (by default ``PAIRS_PER_CHUNK``
    pairs of work, at most 1000 steps) with the number of steps done; divergence is checked
    then too. ``on_snapshot(i, step, W, b)`` (if given) is called at every step of
    ``core.trainer.snapshot_steps(configs[i])`` with host copies of run i's W and b (none for
    runs with ``snapshot_every = 0`` or after a run diverged); or give one ``on_snapshot(step,
    W, b)`` per run (or None), as ``engines.cpu.engine.train`` takes. Chunks also end at
    snapshot steps, the only steps copied to the host; the results do not depend on ``chunk``
    or ``on_snapshot``. ``device``: "cuda" (or a torch.device); "cpu" only under
    TRITON_INTERPRET=1.
    """
    if not configs:
        return []
    if not len(configs) == len(Xs) == len(W0s) == len(b0s):
        raise ValueError("configs, Xs, W0s and b0s must have one entry per run")
    key = batch_key(configs[0])
    if any(batch_key(c) != key for c in configs):
        raise ValueError("train_many: every config must have the same batch_key")
    config, device = configs[0], torch.device(device)
    parts = _parts(config, Xs, W0s, b0s, device,
                   blocks or default_blocks(config.n_hidden, config.dtype))
    adamw = adamw_steps(config, device)
    if chunk is None:
        pairs = sum(part.batch.pairs for part in parts)
        chunk = int(min(1000, max(1, PAIRS_PER_CHUNK / max(pairs, 1))))
    plans = _snapshot_plans(configs, on_snapshot)
    _snapshot(parts, plans, 0)
    done = 0
    for hi in sorted({*range(chunk, config.steps, chunk), config.steps,
                      *(s for steps, _ in plans for s in steps)} - {0}):
        for s in range(done, hi):
            for part in parts:
                batch = part.batch
                part.step(part.feed.data(s, batch.slot0, batch.n, batch.device), s, adamw)
        if on_steps is not None:
            on_steps(hi - done)
        done = hi
        _snapshot(parts, plans, hi)
        if all(bool((part.batch.dead >= 0).all()) for part in parts):
            if on_steps is not None and done < config.steps:
                on_steps(config.steps - done)
            break
    return _results(parts, len(configs))


def _parts(config: RunConfig, Xs: Sequence[SparseData | Iterable[SparseData]],
           W0s: Sequence[NDArray[np.floating]], b0s: Sequence[NDArray[np.floating]],
           device: torch.device, blocks: Blocks) -> list[_Part]:
    """The runs on fixed training sets and the streamed ones (T = infinity), each kind (if
    any) one batch: a fixed set is uploaded once, a stream's batches step by step."""
    dtype = config.dtype
    fixed = [i for i, X in enumerate(Xs) if isinstance(X, SparseData)]
    streamed = [i for i, X in enumerate(Xs) if not isinstance(X, SparseData)]
    parts = []
    for members in (fixed, streamed):
        if members:
            sources = [X if isinstance(X := Xs[i], SparseData) else iter(X) for i in members]
            feed = Feed(sources, dtype, config.steps)  # type: ignore[arg-type]
            batch = Batch([np.asarray(W0s[i], dtype) for i in members],
                          [np.asarray(b0s[i], dtype) for i in members], feed.counts,
                          config.loss_reduction, device, blocks)
            parts.append(_Part(members, Step(batch, fixed=members is fixed), feed))
    return parts


def _results(parts: Sequence[_Part], runs: int) -> list[Result]:
    """Per run of the call, its final (W, b) on the host, or how it diverged."""
    results: list[Result] = [Diverged("not trained")] * runs
    for part in parts:
        batch = part.batch
        dead, dead_loss = batch.dead.cpu().numpy(), batch.dead_loss.cpu().numpy()
        W, b = batch.W.cpu().numpy(), batch.b.cpu().numpy()
        for r, i in enumerate(part.members):
            results[i] = (Diverged(f"loss is {float(dead_loss[r])} at step {int(dead[r])}")
                          if dead[r] >= 0 else (W[r].copy(), b[r].copy()))
    return results


def _snapshot_plans(configs: Sequence[RunConfig],
                    on_snapshot: SnapshotsCallback | Sequence[SnapshotCallback | None] | None,
                    ) -> list[tuple[set[int], SnapshotCallback | None]]:
    """Per run, the steps of ``core.trainer.snapshot_steps`` and its callback (none without
    one)."""
    if on_snapshot is None or callable(on_snapshot):
        every = cast(SnapshotsCallback | None, on_snapshot)
        calls: list[SnapshotCallback | None] = [
            None if every is None or c.snapshot_every == 0 else partial(every, i)
            for i, c in enumerate(configs)]
    else:
        calls = list(on_snapshot)
        if len(calls) != len(configs):
            raise ValueError("on_snapshot: one callback (or None) per run is needed")
    for i, (config, call) in enumerate(zip(configs, calls, strict=True)):
        if call is not None and config.snapshot_every == 0:
            raise ValueError(f"on_snapshot: run {i} needs config.snapshot_every > 0")
    return [(set(snapshot_steps(c).tolist()) if call is not None else set(), call)
            for c, call in zip(configs, calls, strict=True)]


def _snapshot(parts: Sequence[_Part], plans: Sequence[tuple[set[int], SnapshotCallback | None]],
              step: int) -> None:
    """Copy W and b of the live runs that keep a snapshot at ``step`` and hand them over."""
    for part in parts:
        batch = part.batch
        rows = [r for r, i in enumerate(part.members) if step in plans[i][0]]
        if rows:
            index = torch.tensor(rows, device=batch.device)
            dead = batch.dead[index].cpu().numpy()
            W, b = batch.W[index].cpu().numpy(), batch.b[index].cpu().numpy()
            for j, r in enumerate(rows):
                call = plans[part.members[r]][1]
                if dead[j] < 0 and call is not None:
                    call(step, W[j], b[j])


def loss_and_grad(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    b: NDArray[np.floating],  # (n_features,)
    X: SparseData,
    reduction: str = "sum",
    device: torch.device | str = "cuda",
    blocks: Blocks | None = None,
) -> tuple[float, NDArray[np.floating], NDArray[np.floating]]:
    """Loss and gradients (dW (n_hidden, n_features), db (n_features,)) of one run by the GPU
    kernels: the contract of ``engines.cpu.engine.loss_and_grad``, for testing against the
    reference."""
    W = np.asarray(W)
    device = torch.device(device)
    batch = Batch([W], [np.asarray(b, W.dtype)], [X.n_examples], reduction, device,
                  blocks or default_blocks(W.shape[0], str(W.dtype)))
    data = upload([[X.astype(W.dtype)]], batch.slot0, W.shape[1], str(W.dtype), device)[0]
    GW, Gb = Step(batch).gradient(data)
    return float(batch.losses[0]), GW[0].cpu().numpy(), Gb[0].cpu().numpy()

"""What the GPU engine's cells (toyrelu.engines.gpu.cells) decide on trained runs, and what deciding
them costs on the device.

Trains ``--seeds`` runs per (m, T) (on CUDA with the batched engine when there is one, else with
the CPU engine), then lays them out as one GPU batch and times, on the device: the k-d
ordering of the hidden vectors (``KdTree.order``), the groups' statistics (``group_stats``)
and the class of every (group, feature) cell (``classify``). It prints the share of cells
all-on, all-off and mixed by the bounds, and the share still mixed once z is ranged exactly
(``ranged``: the cells a split step works pair by pair), and, on CUDA, one dense engine step
of the same batch and one split-cell step (``toyrelu.engines.gpu.split``, taken whatever its share)
with the bounds alone and with ranging, with the largest relative difference of their
gradients from the dense one.

    PYTHONPATH=src python benchmarks/bench_gpu_cells.py            # reduced scale, ~1 min
    PYTHONPATH=src python benchmarks/bench_gpu_cells.py --n-features 10000 --sparsity 0.999 \\
        --n-hidden 2,4,8 --n-train 100000 --steps 2000              # paper scale, on a GPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from toyrelu.core import data, evaluation, model, trainer
from toyrelu.core.config import RunConfig
from toyrelu.engines import gpu
from toyrelu.engines.cpu import engine
from toyrelu.engines.gpu import cells as gpu_cells
from toyrelu.engines.gpu.batch import Batch
from toyrelu.engines.gpu.blocks import Cells
from toyrelu.engines.gpu.feed import Feed
from toyrelu.engines.gpu.step import Step


def timed(call, device: torch.device, repeats: int = 5) -> tuple[object, float]:
    """The result of ``call()`` and its best wall time in ms over ``repeats`` calls."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return out, 1e3 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-features", type=int, default=1000)
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--n-hidden", default="2,4,8,16")
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="examples per group")
    args = parser.parse_args()
    on_gpu = gpu.available()
    device = torch.device("cuda" if on_gpu else "cpu")
    print(f"device {device}, n = {args.n_features}, S = {args.sparsity}, T = {args.n_train}, "
          f"{args.steps} steps, {args.seeds} seeds, groups of {args.size}")
    print("m | on | off | mixed | mixed once ranged | order ms | stats ms | classify ms | "
          "dense step ms | split step ms, bounds only | ranged | split vs dense")
    for m in (int(v) for v in args.n_hidden.split(",")):
        measure(m, args, device, on_gpu)


def measure(m: int, args: argparse.Namespace, device: torch.device, on_gpu: bool) -> None:
    """Train the runs at hidden size m, time the cells of their batch and print a row."""
    configs = [RunConfig(n_features=args.n_features, sparsity=args.sparsity, n_hidden=m,
                         n_train=args.n_train, steps=args.steps, seed=s)
               for s in range(args.seeds)]
    Xs = [data.train_set(c) for c in configs]
    inits = [model.init_params(c) for c in configs]
    if on_gpu:
        trained = gpu.train_many(configs, Xs, [W for W, _ in inits], [b for _, b in inits],
                                 device=device)
    else:
        trained = [engine.train(c, X, W, b) for c, X, (W, b) in zip(configs, Xs, inits,
                                                                     strict=True)]
    failed = [str(p) for p in trained if isinstance(p, trainer.Diverged)]
    if failed:
        raise SystemExit(f"m = {m}: a run diverged ({failed[0]})")
    params = [(np.asarray(W), np.asarray(b)) for W, b in trained]  # type: ignore[misc]
    starts = [i * -(-args.n_train // 32) * 32 for i in range(len(params))]
    n_slots = starts[-1] + -(-args.n_train // 32) * 32
    H = torch.zeros(n_slots, m, dtype=torch.float32, device=device)
    for s, (Wr, _), X in zip(starts, params, Xs, strict=True):
        H[s:s + args.n_train] = torch.from_numpy(evaluation.hidden(Wr, X)).float().to(device)
    W = torch.tensor(np.stack([W for W, _ in params]), device=device)
    b = torch.tensor(np.stack([b for _, b in params]), device=device)
    counts = [args.n_train] * len(params)
    tree = gpu_cells.KdTree(starts, counts, args.size, device)
    perm, t_order = timed(lambda: tree.order(H), device)
    grouped = H[perm]
    slot, count, ranges = gpu_cells.groups(starts, counts, args.size, device)
    stats, t_stats = timed(lambda: gpu_cells.group_stats(grouped, slot, count, args.size),
                           device)
    cls, t_cls = timed(lambda: gpu_cells.classify(W, b, stats, ranges), device)
    shares = torch.bincount(cls.flatten().long(), minlength=3).double() / cls.numel()
    fine = gpu_cells.ranged(W, b, grouped, slot, count, cls, ranges, args.size)
    left = float((fine == gpu_cells.MIXED).double().mean())
    steps = "- | - | - | -"
    if on_gpu:
        grads, times = [], []
        for cells in (None, Cells(size=args.size, ranged=False, pairs_at_most=1.0),
                      Cells(size=args.size, pairs_at_most=1.0)):
            blocks = gpu.default_blocks(m, cells=cells)
            step = Step(Batch([W for W, _ in params], [b for _, b in params], counts, "sum",
                              device, blocks))
            batch = Feed(Xs, "float32", 1).data(0, step.batch.slot0, step.batch.n, device)
            # Step 0 regroups; later steps reuse the grouping, as most steps do.
            GW, t_step = timed(lambda s=step, d=batch: s.gradient(d, 1)[0], device)
            grads.append(GW.double())
            times.append(t_step)
        scale = grads[0].abs().amax(dim=(1, 2), keepdim=True)
        worst = max(float(((grad - grads[0]).abs() / scale).max()) for grad in grads[1:])
        steps = f"{times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} | {worst:.1e}"
    on, off, mixed = (f"{100 * float(v):.1f}%" for v in (shares[gpu_cells.ON],
                                                        shares[gpu_cells.OFF],
                                                        shares[gpu_cells.MIXED]))
    print(f"{m} | {on} | {off} | {mixed} | {100 * left:.1f}% | {t_order:.2f} | {t_stats:.2f} | "
          f"{t_cls:.2f} | {steps}")


if __name__ == "__main__":
    main()

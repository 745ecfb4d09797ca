"""How much of a step's (example, feature) work could an exact skip avoid?

Only pairs with z_ti = b_i + h_t . W_i > 0 feed the loss's dense part and the gradients, so a
kernel could skip the rest, exactly, if it knew them in advance. This trains runs with the
fused engine, keeps four snapshots, and reports at each:

- active: the share of pairs with z > 0 (the most any skip could save is 1 - active);
- bound: the share that the radius test |h_t| |W_i| + b_i > 0 cannot rule out (a per-pair
  skip without computing z);
- tiles_z: the share of (tile x tile) blocks, examples sorted by |h_t| and features by the
  radius -b_i / |W_i|, holding at least one active pair (the best a tiled kernel could do
  knowing z);
- tiles_bound: the share such a kernel cannot rule out by the radius test per block;
- b>0: the share of features with a positive bias (they fire wherever W_i . h_t is small);
- mixed_z, mixed_bound: the share of (block of ``tile`` examples, feature) cells where z
  takes both signs, and where the radius tests cannot tell all-off (|h_t| |W_i| + b_i <= 0)
  from all-on (b_i - |h_t| |W_i| > 0) over the block. An all-on cell is linear in h
  (a = b_i + h_t . W_i), so its sums collapse into moments of h (sum h_t, sum h_t h_t^T) and
  of W; only mixed cells need per-pair work;
- mixed_ball: the share of pairs in mixed cells when examples are grouped by direction and
  size (k-means) and each cell is decided by a ball around its group's centre (``ball_mixed``);
- split_err: the largest relative difference, in float64, between the dense part of the
  step's sums computed pair by pair and computed with decided cells collapsed (``split_sums``);

    PYTHONPATH=src python benchmarks/bench_activity.py                       # reduced scale
    PYTHONPATH=src python benchmarks/bench_activity.py --n-features 10000 --sparsity 0.999 \\
        --steps 5000 --n-train 5000 --n-hidden 8                           # paper scale
"""

from __future__ import annotations

import argparse

import numpy as np
from grid import add_grid_arguments, values

from toyrelu.core import data, evaluation, model
from toyrelu.core.config import RunConfig
from toyrelu.engines.cpu import engine


def ball_mixed(W: np.ndarray, b: np.ndarray, H: np.ndarray, tile: int) -> float:
    """Share of pairs in mixed cells when examples are grouped by k-means on h (about ``tile``
    per group, 8 Lloyd iterations, seeded) and each (group, feature) cell is decided by the
    ball around the group's centre c with radius r = max |h_t - c|:
    z in b_i + c . W_i -/+ r |W_i|."""
    k = max(1, -(-len(H) // tile))
    centres = H[np.random.default_rng(0).choice(len(H), k, replace=False)]
    parts = np.array_split(H, max(1, k * len(H) // 10_000_000))  # bounded (part, k, m) temps
    for _ in range(8):
        label = np.concatenate([((part[:, None, :] - centres[None]) ** 2).sum(axis=2)
                                .argmin(axis=1) for part in parts])
        sizes = np.bincount(label, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, label, H)
        centres = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centres)
    radius = np.zeros(k)
    np.maximum.at(radius, label, np.linalg.norm(H - centres[label], axis=1))
    middle, reach = centres @ W + b, radius[:, None] * np.linalg.norm(W, axis=0)[None, :]
    mixed = (middle + reach > 0) & (middle - reach <= 0)  # (k, n_features)
    return float((sizes[:, None] * mixed).sum() / (len(H) * W.shape[1]))


def shares(W: np.ndarray, b: np.ndarray, H: np.ndarray, tile: int) -> dict[str, float]:
    """The shares described in the module docstring for one (W, b) and the training set's
    hidden vectors H (n_train, n_hidden), all float64."""
    fires = H @ W + b > 0  # (n_train, n_features): fine at benchmark sizes
    h_norm, w_norm = np.linalg.norm(H, axis=1), np.linalg.norm(W, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.where(w_norm > 0, -b / w_norm, np.where(b > 0, -np.inf, np.inf))
    by_h, by_radius = np.argsort(h_norm), np.argsort(radius)
    T, n = fires.shape
    fires = fires[by_h]
    padded = np.zeros((-(-T // tile) * tile, -(-n // tile) * tile), bool)
    padded[:T, :n] = fires[:, by_radius]
    blocks = padded.reshape(padded.shape[0] // tile, tile, padded.shape[1] // tile, tile)
    h_max = np.maximum.reduceat(h_norm[by_h], np.arange(0, T, tile))
    r_min = np.minimum.reduceat(radius[by_radius], np.arange(0, n, tile))
    # Per (block of examples sorted by |h|, feature): any z > 0, all z > 0, and the bounds.
    starts = np.arange(0, T, tile)
    any_on = np.logical_or.reduceat(fires, starts, axis=0)
    all_on = np.logical_and.reduceat(fires, starts, axis=0)
    reach = h_max[:, None] * w_norm[None, :]
    undecided = (b[None, :] + reach > 0) & (b[None, :] - reach <= 0)
    return {
        "active": float(fires.mean()),
        "bound": float((h_norm[:, None] * w_norm[None, :] + b[None, :] > 0).mean()),
        "tiles_z": float(blocks.any(axis=(1, 3)).mean()),
        "tiles_bound": float((r_min[None, :] < h_max[:, None]).mean()),
        "b>0": float((b > 0).mean()),
        "mixed_z": float((any_on & ~all_on).mean()),
        "mixed_bound": float(undecided.mean()),
        "mixed_ball": ball_mixed(W, b, H, tile),
    }


def dense_sums(W: np.ndarray, b: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, ...]:
    """The dense part of a step (x = 0), pair by pair: sum a^2, dW = sum_t a_t h_t (m, n),
    db = sum_t a_t (n,), dH = sum_i a_i W_i (T, m), with a = ReLU(b + H W)."""
    A = np.maximum(H @ W + b, 0.0)
    return (A * A).sum(), H.T @ A, A.sum(axis=0), A @ W.T


def split_sums(W: np.ndarray, b: np.ndarray, H: np.ndarray, tile: int) -> tuple[np.ndarray, ...]:
    """``dense_sums`` again, with each (block of examples, feature) cell that the radius tests
    decide done without its pairs: all-off cells add nothing, all-on cells (a = b_i + h_t . W_i
    throughout) add b_i |B| + S1 . W_i to db, b_i S1 + S2 W_i to dW and b_i W_i + W_i W_i^T h_t
    to dH, with S1 = sum_B h_t and S2 = sum_B h_t h_t^T. Only mixed cells go pair by pair.
    Float64 and no rounding margin: a check of the algebra, not a kernel."""
    m, n = W.shape
    loss, dW, db, dH = 0.0, np.zeros((m, n)), np.zeros(n), np.zeros((len(H), m))
    w_norm = np.linalg.norm(W, axis=0)
    for lo in range(0, len(H), tile):
        Hb = H[lo:lo + tile]
        reach = np.linalg.norm(Hb, axis=1).max() * w_norm
        on, mixed = b - reach > 0, (b + reach > 0) & (b - reach <= 0)
        A = np.maximum(Hb @ W[:, mixed] + b[mixed], 0.0)
        loss += (A * A).sum()
        dW[:, mixed] += Hb.T @ A
        db[mixed] += A.sum(axis=0)
        dH[lo:lo + tile] += A @ W[:, mixed].T
        Wo, bo = W[:, on], b[on]
        S1, S2 = Hb.sum(axis=0), Hb.T @ Hb
        db[on] += bo * len(Hb) + S1 @ Wo
        dW[:, on] += np.outer(S1, bo) + S2 @ Wo
        V, M = Wo @ bo, Wo @ Wo.T
        dH[lo:lo + tile] += V + Hb @ M
        loss += len(Hb) * (bo @ bo) + 2.0 * S1 @ V + np.sum(S2 * M)
    return loss, dW, db, dH


def snapshots(config: RunConfig, X: data.SparseData) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(step, W, b) at every step of ``trainer.snapshot_steps(config)``, step 0 first."""
    out: list[tuple[int, np.ndarray, np.ndarray]] = []
    engine.train(config, X, *model.init_params(config),
                 on_snapshot=lambda step, W, b: out.append((step, W, b)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_grid_arguments(parser, steps=10_000, n_train="300,3000,10000", n_hidden="4,8,16")
    parser.add_argument("--tile", type=int, default=64)
    args = parser.parse_args()
    print(f"{'m':>3} {'T':>7} {'step':>6} {'active':>7} {'bound':>7} {'tiles_z':>8} "
          f"{'tiles_bound':>12} {'b>0':>6} {'mixed_z':>8} {'mixed_bound':>12} {'mixed_ball':>11} "
          f"{'split_err':>10}")
    for m in values(args.n_hidden):
        for T in values(args.n_train):
            config = RunConfig(n_features=args.n_features, n_hidden=m, sparsity=args.sparsity,
                               n_train=T, steps=args.steps, snapshot_every=args.steps // 4)
            X = data.train_set(config)
            for step, W, b in snapshots(config, X)[1:]:
                H = evaluation.hidden(W, X).astype(np.float64)
                W64, b64 = W.astype(np.float64), b.astype(np.float64)
                s = shares(W64, b64, H, args.tile)
                s["split_err"] = max(
                    float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-300)) for x, y in
                    zip(dense_sums(W64, b64, H), split_sums(W64, b64, H, args.tile), strict=True))
                print(f"{m:>3} {T:>7,} {step:>6} {s['active']:>7.3f} {s['bound']:>7.3f} "
                      f"{s['tiles_z']:>8.3f} {s['tiles_bound']:>12.3f} {s['b>0']:>6.3f} "
                      f"{s['mixed_z']:>8.3f} {s['mixed_bound']:>12.3f} "
                      f"{s['mixed_ball']:>11.3f} {s['split_err']:>10.1e}",
                      flush=True)


if __name__ == "__main__":
    main()

"""Benchmark and check the batched GPU engine (toyrelu.engines.gpu) on one GPU, in under ~6
minutes.

Sections (each one's failure is printed and the next one runs):
1. ceilings: a large device-to-device copy (bytes read + written per second) and a large fp32
   matmul with TF32 off (flop/s), the yardsticks for the engine's numbers;
2. correctness: gradients and a 200-step train_many trajectory at n = 10,000, m = 2, T = 1,000
   against a float64 torch-autograd reference run on the GPU, and m = 3, 5 at smaller sizes;
3. tuning: a few Blocks variants at T = 100,000 (4 seeds), the fastest is used afterwards;
4. timing: ms per step at n = 10,000, m = 2, S = 0.999 for T = 1k ... 500k (4 seeds batched),
   48 small runs in one batch, a streamed batch (T = infinity, 1,000 per step), the dense
   reference where it fits, and m = 4, 8, 16 at T = 100,000;
5. tensor cores: the tensor-core passes (Blocks.dots, tf32x3 dots) against the float64
   reference at m = 2 and 16, ms per step beside the FMA passes at T = 100,000 for m = 2,
   4, 8, 16, and three other dot tiles at m = 16;
6. projections of the paper preset and of the heatmap from those per-step times (the heatmap
   also with the faster of the two passes at each m).

Usage: PYTHONPATH=src python3 benchmarks/bench_gpu.py [--out FILE] [--tiny]
``--tiny`` runs every section at toy sizes; without CUDA it uses Triton's interpreter on the
CPU (a check that the script runs end to end, not a measurement). Numbers also go to --out, or
to $OUT/bench_gpu.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

TINY = "--tiny" in sys.argv
if TINY and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported

from toyrelu.core import data, model  # noqa: E402
from toyrelu.core.config import RunConfig  # noqa: E402
from toyrelu.core.schedule import learning_rates  # noqa: E402
from toyrelu.engines import gpu  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
N = 64 if TINY else 10_000
S = 0.9 if TINY else 0.999
T_LIST = [20, 50] if TINY else [1_000, 10_000, 100_000, 500_000]
T_BIG = 50 if TINY else 100_000
SMALL_T = [3, 5, 8] if TINY else [3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1000]
M_HEAT = [4] if TINY else [4, 8, 16]
STREAM_BATCH = 10 if TINY else 1_000
BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "330"))
START = time.perf_counter()
RESULTS: dict[str, Any] = {}


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def section(name: str, fn: Callable[[], None]) -> None:
    """Run one section; print its error and go on if it fails or the budget is spent."""
    elapsed = time.perf_counter() - START
    print(f"\n== {name} (t = {elapsed:.0f} s)", flush=True)
    if elapsed > BUDGET_S:
        print(f"skipped: time budget of {BUDGET_S:.0f} s spent")
        return
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - one section must not stop the others
        traceback.print_exc(limit=3)
        RESULTS.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"


def config(T: int, m: int = 2, seed: int = 0, **changes: Any) -> RunConfig:
    return RunConfig(n_features=N, n_hidden=m, sparsity=S, n_train=T, seed=seed,
                     **{"steps": 200, "n_test": 10, **changes})


def ceilings() -> None:
    size = (1 << 16) if TINY else (1 << 28)  # 1 GiB of float32
    src = torch.empty(size, device=DEVICE)
    dst = torch.empty_like(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(5))
    copy_bw = 2 * 4 * size / best
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    k = 256 if TINY else 8192
    a = torch.randn(k, k, device=DEVICE)
    b = torch.randn(k, k, device=DEVICE)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    flops = 2 * k**3 / best
    RESULTS["ceilings"] = {"copy_bytes_per_s": copy_bw, "fp32_flops_per_s": flops}
    print(f"copy {copy_bw / 1e12:.3g} TB/s (read + write); fp32 matmul {flops / 1e12:.3g} "
          "TFLOP/s")


def _timed(fn: Callable[[], Any]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def reference_run(cfg: RunConfig, X: data.SparseData, W0: np.ndarray, b0: np.ndarray,
                  steps: int, dtype: torch.dtype = torch.float64,
                  grad_only: bool = False) -> tuple[float, np.ndarray, np.ndarray]:
    """Dense torch autograd + torch.optim.AdamW on the device (reference.train's loop).
    Returns (last loss, W, b), or with ``grad_only`` (loss, dL/dW, dL/db) at (W0, b0)."""
    Xd = torch.from_numpy(X.to_dense()).to(DEVICE, dtype)
    W = torch.nn.Parameter(torch.tensor(W0, dtype=dtype, device=DEVICE))
    b = torch.nn.Parameter(torch.tensor(b0, dtype=dtype, device=DEVICE))
    opt = torch.optim.AdamW(
        [{"params": [W], "weight_decay": cfg.weight_decay},
         {"params": [b], "weight_decay": cfg.weight_decay if cfg.decay_bias else 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    lrs = learning_rates(cfg)
    loss = torch.zeros(())
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = float(lrs[step])
        opt.zero_grad()
        loss = model.loss(W, b, Xd, cfg.loss_reduction)
        loss.backward()
        if grad_only:
            assert W.grad is not None and b.grad is not None
            return loss.item(), W.grad.cpu().numpy(), b.grad.cpu().numpy()
        opt.step()
    return loss.detach().item(), W.detach().cpu().numpy(), b.detach().cpu().numpy()


def rel(a: np.ndarray, e: np.ndarray) -> float:
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    return float(np.abs(a - e).max() / max(np.abs(e).max(), 1e-300))


def correctness() -> None:
    out = RESULTS.setdefault("correctness", {})
    steps = 5 if TINY else 200
    for m, T, n in [(2, T_LIST[0], N), (3, 40 if TINY else 500, N // 5 if not TINY else N),
                    (5, 40 if TINY else 500, N // 5 if not TINY else N)]:
        cfg = RunConfig(n_features=n, n_hidden=m, sparsity=S, n_train=T, steps=steps, n_test=10,
                        warmup_steps=steps // 20, lr=1e-2 if TINY else 1e-3)
        X = data.train_set(cfg).astype(np.float64)
        W0, b0 = model.init_params(cfg.replace(dtype="float64", bias_init="normal"))
        ref_loss, ref_gW, ref_gb = reference_run(cfg, X, W0, b0, 1, grad_only=True)
        _, ref_W, ref_b = reference_run(cfg, X, W0, b0, steps)
        for dtype in ("float32", "float64") if m == 2 else ("float32",):
            Wd, bd, Xd = W0.astype(dtype), b0.astype(dtype), X.astype(dtype)
            loss, gW, gb = gpu.loss_and_grad(Wd, bd, Xd, "sum", device=DEVICE)
            [result] = gpu.train_many([cfg.replace(dtype=dtype)], [Xd], [Wd], [bd],
                                      device=DEVICE)
            assert not isinstance(result, Exception), result
            row = {"loss": rel(loss, ref_loss), "dW": rel(gW, ref_gW), "db": rel(gb, ref_gb),
                   f"W_{steps}": rel(result[0], ref_W), f"b_{steps}": rel(result[1], ref_b)}
            out[f"m{m}_n{n}_T{T}_{dtype}"] = row
            print(f"m={m} n={n} T={T} {dtype} vs float64 reference, max rel error: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in row.items()))


def batch(Ts: list[int], m: int = 2, seeds: int = 4) -> tuple[list, list, list, list]:
    configs = [config(T, m, seed) for T in Ts for seed in range(seeds)]
    inits = [model.init_params(c) for c in configs]
    return configs, [data.train_set(c) for c in configs], [W for W, _ in inits], \
        [b for _, b in inits]


def stream(cfg: RunConfig, size: int):  # noqa: ANN201
    generator = np.random.default_rng(cfg.seed)
    while True:
        yield data.sample(size, cfg.n_features, cfg.sparsity, generator, cfg.dtype)


class _Enough(Exception):
    """Raised from on_steps to end a timed train_many call once enough time is measured."""


def ms_per_step(runs: tuple[list, list, list, list], blocks: gpu.Blocks | None = None,
                target_s: float = 1.0, streamed: bool = False) -> float:
    """Wall ms per step inside one train_many call over ``runs``.

    train_many waits for the GPU at the end of every chunk of steps (its divergence check)
    and then calls ``on_steps``: the time between the first call and a later one, over the
    steps in between, excludes setup (upload, column sort, compile) and the final copy. The
    call is cut short (by raising from ``on_steps``) once ``target_s`` is measured.
    """
    configs, Xs, W0s, b0s = runs
    rows = sum(c.n_train for c in configs)
    guess = 1e-4 + rows * N / 2e12  # seconds per step at 2e12 pairs/s plus launch overhead
    chunk = 1 if TINY else min(100, max(1, math.ceil(0.05 / guess)))
    cfgs = [c.replace(steps=chunk * (3 if TINY else 1000), warmup_steps=0) for c in configs]
    sources = [stream(c, STREAM_BATCH) for c in cfgs] if streamed else Xs
    stamps: list[float] = []

    def on_steps(_: int) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= 3 and stamps[-1] - stamps[0] > target_s:
            raise _Enough

    try:
        gpu.train_many(cfgs, sources, W0s, b0s, device=DEVICE, blocks=blocks, chunk=chunk,
                       on_steps=on_steps)
    except _Enough:
        pass
    return 1e3 * (stamps[-1] - stamps[0]) / ((len(stamps) - 1) * chunk)


def rate(ms: float, rows: int, m: int) -> dict[str, float]:
    pairs = rows * N / (ms / 1e3)
    ceil = RESULTS.get("ceilings", {})
    out = {"ms_per_step": ms, "pairs_per_s": pairs}
    if ceil:
        out["frac_fp32_fma"] = pairs * (6 * m + 2) / ceil["fp32_flops_per_s"]
    return out


def tuning() -> None:
    runs = batch([T_BIG])
    base = gpu.default_blocks(2)
    variants = {"default": base}
    if not TINY:
        variants |= {
            "rows ce8": gpu.Blocks(rows_BE=1024, rows_BF=16, cols_BE=32, cols_BF=512),
            "rows BF32": gpu.Blocks(rows_BE=512, rows_BF=32, cols_BE=32, cols_BF=512),
            "rows 8 warps": gpu.Blocks(rows_BE=1024, rows_BF=16, rows_warps=8),
            "cols cf2": gpu.Blocks(cols_BE=32, cols_BF=256),
            "cols 8 warps": gpu.Blocks(cols_BF=1024, cols_warps=8),
            "stages 2": gpu.Blocks(stages=2),
            "split less": gpu.Blocks(programs=256),
        }
    timings = {}
    for name, blocks in variants.items():
        if time.perf_counter() - START > BUDGET_S * 0.5:
            print(f"{name}: skipped (time)")
            continue
        try:
            timings[name] = ms_per_step(runs, blocks, target_s=0.5)
            print(f"{name:14s} {timings[name]:8.3f} ms/step  {blocks}")
        except Exception as exc:  # noqa: BLE001
            print(f"{name}: failed: {type(exc).__name__}: {exc}")
    best = min(timings, key=timings.__getitem__)
    RESULTS["tuning"] = {"ms_per_step": timings, "best": best}
    RESULTS["blocks"] = dataclasses.asdict(variants[best])
    print(f"best: {best}")


def best_blocks(m: int) -> gpu.Blocks | None:
    return gpu.Blocks(**RESULTS["blocks"]) if m == 2 and "blocks" in RESULTS else None


def timing() -> None:
    out = RESULTS.setdefault("timing", {})
    jobs: list[tuple[str, list[int], int, bool]] = [
        (f"small T x4 ({len(SMALL_T) * 4} runs)", SMALL_T, 2, False)]
    jobs += [(f"T={T} x4", [T], 2, False) for T in T_LIST]
    jobs += [(f"T=inf x4 (stream {STREAM_BATCH})", [STREAM_BATCH], 2, True)]
    jobs += [(f"m={m} T={T_BIG} x4", [T_BIG], m, False) for m in M_HEAT]
    for name, Ts, m, streamed in jobs:
        if time.perf_counter() - START > BUDGET_S:
            print(f"{name}: skipped (time)")
            continue
        try:
            ms = ms_per_step(batch(Ts, m), best_blocks(m), streamed=streamed)
            out[name] = {"T": Ts, "m": m, **rate(ms, 4 * sum(Ts), m)}
            print(f"{name:28s} {ms:9.3f} ms/step  {out[name]['pairs_per_s']:.2e} pairs/s  "
                  f"{out[name].get('frac_fp32_fma', float('nan')):.0%} of fp32 FMA")
        except Exception as exc:  # noqa: BLE001
            print(f"{name}: failed: {type(exc).__name__}: {exc}")
    for T in T_LIST[:-1]:  # dense reference, one run (4 runs take 4x), while it fits
        try:
            ms = reference_ms(T)
            engine = out.get(f"T={T} x4", {}).get("ms_per_step", float("nan"))
            copy_bw = RESULTS.get("ceilings", {}).get("copy_bytes_per_s", float("nan"))
            out[f"reference T={T}"] = {"ms_per_step": ms, "speedup_vs_4_runs": 4 * ms / engine,
                                       "frac_copy_bw_at_70B_per_pair": 70 * T * N / (ms / 1e3)
                                       / copy_bw}
            print(f"reference T={T} (1 run) {ms:9.3f} ms/step; the engine trains 4 runs "
                  f"{4 * ms / engine:.0f}x faster per run")
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory
            print(f"reference T={T}: failed: {type(exc).__name__}: {exc}")
            break


def reference_ms(T: int) -> float:
    """ms per step of the dense float32 reference (torch autograd + AdamW) on the device."""
    cfg = config(T)
    W0, b0 = model.init_params(cfg)
    Xd = torch.from_numpy(data.train_set(cfg).to_dense()).to(DEVICE)
    W = torch.nn.Parameter(torch.tensor(W0, device=DEVICE))
    b = torch.nn.Parameter(torch.tensor(b0, device=DEVICE))
    opt = torch.optim.AdamW([W, b], lr=cfg.lr, weight_decay=cfg.weight_decay)

    def steps(k: int) -> None:
        for _ in range(k):
            opt.zero_grad()
            model.loss(W, b, Xd).backward()
            opt.step()

    steps(2)
    k = 3 if TINY else 10
    return 1e3 * _timed(lambda: steps(k)) / k


def step_time(T: float, m: int) -> float:
    """Projected ms per step of a 4-seed batch of T examples each: interpolated linearly in T
    between the measured m = 2 batches (proportional beyond the largest), then scaled by the
    measured cost ratio of m to m = 2 at T_BIG (interpolated in m, (4m + 4)-proportional beyond
    the largest measured m)."""
    timing = RESULTS["timing"]
    xs, ys = zip(*sorted((v["T"][0], v["ms_per_step"]) for k, v in timing.items()
                         if k.startswith("T=") and "inf" not in k), strict=True)
    ms = float(np.interp(T, xs, ys)) if T <= xs[-1] else ys[-1] * T / xs[-1]
    if m == 2:
        return ms
    at_big = {2: timing[f"T={T_BIG} x4"]["ms_per_step"]}
    at_big |= {k: timing[f"m={k} T={T_BIG} x4"]["ms_per_step"] for k in M_HEAT
               if f"m={k} T={T_BIG} x4" in timing}
    ks = sorted(at_big)
    if m <= ks[-1]:
        return ms * float(np.interp(m, ks, [at_big[k] / at_big[2] for k in ks]))
    return ms * at_big[ks[-1]] / at_big[2] * (4 * m + 4) / (4 * ks[-1] + 4)


def tensor_cores() -> None:
    out = RESULTS.setdefault("dots", {})
    for m in (2, 16):
        cfg = RunConfig(n_features=N, n_hidden=m, sparsity=S, n_train=T_LIST[0], n_test=10)
        X = data.train_set(cfg).astype(np.float64)
        W0, b0 = model.init_params(cfg.replace(dtype="float64", bias_init="normal"))
        ref_loss, ref_gW, ref_gb = reference_run(cfg, X, W0, b0, 1, grad_only=True)
        loss, gW, gb = gpu.loss_and_grad(W0.astype(np.float32), b0.astype(np.float32),
                                         X.astype(np.float32), "sum", device=DEVICE,
                                         blocks=gpu.default_blocks(m, dots=True))
        row = {"loss": rel(loss, ref_loss), "dW": rel(gW, ref_gW), "db": rel(gb, ref_gb)}
        out[f"m{m} float32 error"] = row
        print(f"dots m={m} T={T_LIST[0]} float32 vs float64 reference, max rel error: "
              + ", ".join(f"{k} {v:.1e}" for k, v in row.items()))
    for m in [2, *M_HEAT]:
        if time.perf_counter() - START > BUDGET_S:
            print(f"m={m}: skipped (time)")
            continue
        runs = batch([T_BIG], m)
        fma = ms_per_step(runs, gpu.default_blocks(m), target_s=0.5)
        dots = ms_per_step(runs, gpu.default_blocks(m, dots=True), target_s=0.5)
        out[f"m={m} T={T_BIG} x4"] = {"m": m, "fma_ms": fma, "dots_ms": dots,
                                      **{f"dots_{k}": v for k, v in
                                         rate(dots, 4 * T_BIG, m).items()}}
        print(f"m={m:2d} T={T_BIG} x4: fma {fma:8.3f} ms/step, dots {dots:8.3f} ms/step "
              f"({fma / dots:.2f}x)")
    # Other dot tiles that compile without spills (benchmarks/compile_sm90.py), at the largest m.
    m = M_HEAT[-1]
    base = gpu.default_blocks(m, dots=True)
    tiles = {"128x64, 8 warps": dict(rows_BF=64, cols_BE=64),
             "64x64, 4 warps": dict(rows_BE=64, rows_BF=64, rows_warps=4, cols_BE=64,
                                    cols_BF=64, cols_warps=4),
             "64x32, 4 warps": dict(rows_BE=64, rows_warps=4, cols_BF=64, cols_warps=4)}
    for name, changes in tiles.items():
        if time.perf_counter() - START > BUDGET_S:
            print(f"dots tiles {name}: skipped (time)")
            continue
        ms = ms_per_step(batch([T_BIG], m), dataclasses.replace(base, **changes), target_s=0.5)
        out.setdefault(f"tiles m={m}", {})[name] = ms
        print(f"dots tiles {name:16s} m={m} T={T_BIG} x4: {ms:8.3f} ms/step")


def dots_factor(m: int) -> float:
    """The measured dots / FMA time ratio at m (interpolated), at most 1: the faster pass."""
    rows = sorted((v["m"], v["dots_ms"] / v["fma_ms"]) for k, v in RESULTS.get("dots", {}).items()
                  if "fma_ms" in v)
    if not rows:
        return 1.0
    ms, ratios = zip(*rows, strict=True)
    return min(1.0, float(np.interp(m, ms, ratios)))


def projections() -> None:
    steps = 50_000
    timing = RESULTS["timing"]
    small = next(v["ms_per_step"] for k, v in timing.items() if k.startswith("small"))
    inf = next(v["ms_per_step"] for k, v in timing.items() if "inf" in k)
    paper_T = [2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000]
    paper = steps * (small + inf + sum(step_time(T, 2) for T in paper_T)) / 1e3
    # T <= 1,000 share one batch per m; the larger T one batch each.
    heat_T = [1_700, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000]
    heat = {m: steps * sum(step_time(T, m) for T in heat_T) / 1e3 for m in [*range(2, 11), 16]}
    best = {m: t * dots_factor(m) for m, t in heat.items()}
    RESULTS["projections_s"] = {"paper_m2_preset": paper, "heatmap": sum(heat.values()),
                                "heatmap_by_m": heat, "heatmap_faster_pass": sum(best.values()),
                                "heatmap_faster_pass_by_m": best}


def summary() -> None:
    """The compact table: every measured and projected number in one place."""
    print("\n== summary " + "=" * 60)
    machine = RESULTS.get("machine", {})
    print(f"device: {machine.get('device')}; torch {machine.get('torch')}, "
          f"triton {machine.get('triton')}" + ("; TINY (toy sizes)" if TINY else ""))
    ceil = RESULTS.get("ceilings")
    if ceil:
        print(f"ceilings: copy {ceil['copy_bytes_per_s'] / 1e12:.3g} TB/s, fp32 matmul (no TF32) "
              f"{ceil['fp32_flops_per_s'] / 1e12:.3g} TFLOP/s")
    for name, row in RESULTS.get("correctness", {}).items():
        print(f"max rel err {name:26s} " + "  ".join(f"{k} {v:.1e}" for k, v in row.items()))
    if "tuning" in RESULTS:
        print(f"blocks used for m=2: {RESULTS['tuning']['best']}")
    print(f"{'batch':30s} {'ms/step':>9s} {'pairs/s':>9s} {'of fp32 FMA':>11s} {'vs ref':>7s}")
    for name, row in RESULTS.get("timing", {}).items():
        if name.startswith("reference"):
            continue
        ref = RESULTS["timing"].get(f"reference {name.split()[0]}", {})
        speedup = f"{ref['speedup_vs_4_runs']:.0f}x" if ref else ""
        print(f"{name:30s} {row['ms_per_step']:9.3f} {row['pairs_per_s']:9.2e} "
              f"{row.get('frac_fp32_fma', float('nan')):11.0%} {speedup:>7s}")
    proj = RESULTS.get("projections_s")
    if proj:
        print("PROJECTED from the per-step times above (not measured runs):")
        print(f"  paper m=2 preset, 20 T + infinity, 4 seeds, 50k steps: "
              f"{proj['paper_m2_preset'] / 60:.1f} min (target 30)")
        print(f"  heatmap m 2..10 and 16 x 11 T, 4 seeds, 50k steps: "
              f"{proj['heatmap'] / 3600:.2f} h (target 3); by m in min: "
              + ", ".join(f"{m}: {t / 60:.0f}" for m, t in proj["heatmap_by_m"].items()))
        print(f"  heatmap with the faster pass (FMA or dots) at each m: "
              f"{proj['heatmap_faster_pass'] / 3600:.2f} h; by m in min: "
              + ", ".join(f"{m}: {t / 60:.0f}"
                          for m, t in proj["heatmap_faster_pass_by_m"].items()))
    for name, row in RESULTS.get("dots", {}).items():
        if name.startswith("tiles"):
            print(f"dots {name:24s} " + ", ".join(f"{k}: {v:.3f} ms/step"
                                                  for k, v in row.items()))
        elif "fma_ms" in row:
            print(f"dots {name:24s} fma {row['fma_ms']:8.3f} ms/step, dots {row['dots_ms']:8.3f} "
                  f"ms/step ({row['fma_ms'] / row['dots_ms']:.2f}x)")
        else:
            print(f"dots {name:24s} max rel err " + "  ".join(f"{k} {v:.1e}"
                                                             for k, v in row.items()))
    for name, error in RESULTS.get("errors", {}).items():
        print(f"section {name} failed: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file for every number (default: $OUT/bench_gpu.json)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes; interpreter without CUDA")
    args = parser.parse_args()
    import triton

    RESULTS["machine"] = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (interpreter)",
        "torch": torch.__version__, "triton": triton.__version__, "tiny": TINY}
    print(f"toyrelu GPU engine benchmark on {RESULTS['machine']['device']}, torch "
          f"{torch.__version__}, triton {triton.__version__}; n={N}, S={S}")
    section("ceilings", ceilings)
    section("correctness", correctness)
    section("tuning", tuning)
    section("timing", timing)
    section("tensor cores", tensor_cores)
    section("projections", projections)
    summary()
    print(f"\ntotal {time.perf_counter() - START:.0f} s")
    path = args.out or (os.path.join(os.environ["OUT"], "bench_gpu.json")
                        if os.environ.get("OUT") else None)
    if path:
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=1, default=lambda x: None if isinstance(
                x, float) and not math.isfinite(x) else str(x))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

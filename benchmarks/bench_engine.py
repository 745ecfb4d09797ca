"""Benchmark the fused training engine against the PyTorch reference.

What it measures, all in one process run so that the ratios are comparable:

1. For each T in --n-train: ms per full-batch AdamW step of ``toyrelu.engines.reference.train``
   (dense PyTorch autograd) and of ``toyrelu.engines.cpu.engine.train`` (fused numba kernel), on
   the same config, training set and initial parameters. Both are warmed up first (torch
   start-up, numba compile / cache load excluded), then timed with time.perf_counter over enough
   steps for about 1 s of work (at least 3 steps for the reference); the median of --repeats
   calls is reported. Reference time is the whole ``reference.train`` call divided by its
   steps, subtracting nothing. As a sanity check, "grad rel diff" is
   max |g_ref - g_engine| / max |g_ref| of the gradients (dW and db) at the initial parameters
   (float32 rounding only: expect ~1e-6).
2. At --big-T (default 100,000, where the dense reference needs > 20 GB): a child process that
   only builds the training set and runs 2 engine steps; its peak resident memory above its
   baseline after imports, the CSR size of the data, and ms/step there.
3. With --quick-preset: wall time of ``python -m toyrelu reproduce --preset quick``.

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_engine.py               # a few minutes on 2 cores
    PYTHONPATH=src python benchmarks/bench_engine.py --n-train 100,1000 --big-T 10000
    PYTHONPATH=src python benchmarks/bench_engine.py --quick-preset --out results.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch

SRC = Path(__file__).resolve().parents[1] / "src"
try:
    import toyrelu  # noqa: F401
except ImportError:  # run without PYTHONPATH=src
    sys.path.insert(0, str(SRC))

from toyrelu.core import data, model  # noqa: E402
from toyrelu.core.config import RunConfig  # noqa: E402
from toyrelu.engines import reference  # noqa: E402
from toyrelu.engines.cpu import engine  # noqa: E402

TARGET_S = 1.0  # seconds of work per timed call
THREADS = numba.config.NUMBA_NUM_THREADS  # the engine's "all threads" column

# Child for the memory measurement: imports, kernel load on a tiny set, then reset the RSS
# high-water mark, build the big training set and run 2 steps, then a few more timed calls.
CHILD = r"""
import json, resource, sys, time
import torch
torch.set_flush_denormal(True)
from toyrelu.core import data
from toyrelu.engines.cpu import engine
from toyrelu.core import model
from toyrelu.core.config import RunConfig

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

cfg = RunConfig(**json.loads(sys.argv[1]))
repeats = int(sys.argv[2])
W, b = model.init_params(cfg)
tiny = cfg.replace(n_train=8, steps=1)
engine.train(tiny, data.train_set(tiny), W, b)
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
except OSError:
    pass
base = status_kb("VmRSS")
X = data.train_set(cfg)
t0 = time.perf_counter()
engine.train(cfg, X, W, b)
times = [time.perf_counter() - t0]
peak = status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(repeats):
    t0 = time.perf_counter()
    engine.train(cfg, X, W, b)
    times.append(time.perf_counter() - t0)
csr = X.indptr.nbytes + X.indices.nbytes + X.data.nbytes
print(json.dumps({"base_kb": base, "peak_kb": peak, "csr_bytes": csr, "nnz": X.nnz,
                  "first_call_s": times[0], "call_s": times[1:]}))
"""


def machine() -> dict:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
             if ln.startswith("model name")]
    return {
        "cpu": names[0] if names else platform.processor() or platform.machine(),
        "avx512f": " avx512f " in cpuinfo.replace("\n", " "), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "numba": numba.__version__,
        "numpy": np.__version__,
    }


def timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    fn(steps)
    return time.perf_counter() - t0


def calibrate(fn, fixed: int | None, floor: int, cap: int) -> int:
    """Steps per timed call: ``fixed`` if given, else enough for about TARGET_S of work."""
    if fixed:
        return fixed
    steps = 1
    while (elapsed := timed(fn, steps)) < 0.1 and steps < cap:
        steps *= 4
    return max(floor, min(cap, math.ceil(1.2 * TARGET_S * steps / elapsed)))


def ms_per_step(fn, steps: int, repeats: int) -> list[float]:
    return [1e3 * timed(fn, steps) / steps for _ in range(repeats)]


def bench_T(base: RunConfig, T: int, args: argparse.Namespace) -> dict:
    config = base.replace(n_train=T)
    X = data.train_set(config)
    W0, b0 = model.init_params(config)

    def ref(steps: int) -> None:
        reference.train(config.replace(steps=steps), X, W0, b0)

    def eng(steps: int) -> None:
        engine.train(config.replace(steps=steps), X, W0, b0, threads=1)

    def eng_all_threads(steps: int) -> None:
        engine.train(config.replace(steps=steps), X, W0, b0, threads=THREADS)

    ref(1)  # warm: torch start-up, first-touch of buffers
    eng(1)  # warm: numba compile or cache load
    eng_all_threads(1)
    ref_steps = calibrate(ref, args.steps_ref, floor=3, cap=200)
    eng_steps = calibrate(eng, args.steps_engine, floor=10, cap=100_000)
    ref_all = ms_per_step(ref, ref_steps, args.repeats)
    eng_all = ms_per_step(eng, eng_steps, args.repeats)
    par_all = ms_per_step(eng_all_threads, eng_steps, args.repeats)
    ref_ms, eng_ms = statistics.median(ref_all), statistics.median(eng_all)
    par_ms = statistics.median(par_all)
    # Sanity check: both engines' gradients at the initial parameters.
    _, gW_ref, gb_ref = reference.loss_and_grad(W0, b0, X, config.loss_reduction)
    _, gW_eng, gb_eng = engine.loss_and_grad(W0, b0, X, config.loss_reduction)
    diff = max(float(np.abs(r - e).max() / np.abs(r).max())
               for r, e in ((gW_ref, gW_eng), (gb_ref, gb_eng)))
    return {"T": T, "ref_ms": ref_ms, "engine_ms": eng_ms, "speedup": ref_ms / eng_ms,
            "engine_threads_ms": par_ms, "speedup_threads": ref_ms / par_ms,
            "ref_steps": ref_steps, "engine_steps": eng_steps, "grad_rel_diff": diff,
            "ref_ms_all": ref_all, "engine_ms_all": eng_all, "engine_threads_ms_all": par_all,
            "csr_bytes": X.indptr.nbytes + X.indices.nbytes + X.data.nbytes}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(engine.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def bench_big(base: RunConfig, T: int, repeats: int) -> dict:
    config = base.replace(n_train=T, steps=2)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config.to_dict()), str(repeats)],
        capture_output=True, text=True, env=child_env(),
    )
    if proc.returncode != 0:
        return {"T": T, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"T": T, "csr_mb": r["csr_bytes"] / 2**20, "nnz": r["nnz"],
            "base_rss_mb": r["base_kb"] / 1024, "peak_rss_mb": r["peak_kb"] / 1024,
            "extra_rss_mb": (r["peak_kb"] - r["base_kb"]) / 1024,
            "engine_ms": 1e3 * statistics.median(r["call_s"]) / config.steps,
            "first_call_ms": 1e3 * r["first_call_s"] / config.steps}


def bench_quick(timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "toyrelu", "reproduce", "--preset", "quick", "--out", out]
        t0 = time.perf_counter()
        # Own process group, so a timeout also ends the command's worker processes.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env(), start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"skipped": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        reason = (stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"skipped": reason}
    return {"wall_s": wall, "last_line": (stdout.strip().splitlines() or [""])[-1]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-features", type=int, default=10_000)
    p.add_argument("--n-hidden", type=int, default=2)
    p.add_argument("--sparsity", type=float, default=0.999)
    p.add_argument("--n-train", default="100,1000,10000", help="comma-separated T values")
    p.add_argument("--steps-ref", type=int, help="reference steps per timed call (default: ~1 s)")
    p.add_argument("--steps-engine", type=int, help="engine steps per timed call (default: ~1 s)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls; the median is reported")
    p.add_argument("--big-T", type=int, default=100_000, help="T of the memory test; 0 skips it")
    p.add_argument("--quick-preset", action="store_true", help="also time the quick preset")
    p.add_argument("--quick-timeout", type=float, default=3600.0)
    p.add_argument("--out", type=Path, help="write every number to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    torch.set_flush_denormal(True)  # before any worker thread starts
    base = RunConfig(n_features=args.n_features, n_hidden=args.n_hidden, sparsity=args.sparsity)
    info = machine()
    print(f"machine: {info['cpu']} (avx512f: {info['avx512f']}), {info['cores']} cores "
          f"({info['cores_usable']} usable); python {info['python']}, torch {info['torch']} "
          f"({info['torch_threads']} threads), numba {info['numba']}, numpy {info['numpy']}")
    print(f"model: n={args.n_features}, m={args.n_hidden}, S={args.sparsity}, "
          f"dtype={base.dtype}, full-batch AdamW; median of {args.repeats} timed calls\n")

    rows = []
    many = f"{THREADS} threads"
    print(f"{'':>8} {'reference':>12} {'engine, 1 thread':>26} {'engine, ' + many:>26}")
    print(f"{'T':>8} {'ms/step':>12} {'ms/step':>15} {'speedup':>10} {'ms/step':>15} "
          f"{'speedup':>10} {'ref/eng steps':>14} {'grad rel diff':>14}")
    for T in (int(t) for t in args.n_train.split(",") if t.strip()):
        r = bench_T(base, T, args)
        rows.append(r)
        print(f"{T:>8,} {r['ref_ms']:>12.2f} {r['engine_ms']:>15.3f} {r['speedup']:>9.1f}x "
              f"{r['engine_threads_ms']:>15.3f} {r['speedup_threads']:>9.1f}x "
              f"{r['ref_steps']:>6}/{r['engine_steps']:<7} {r['grad_rel_diff']:>14.1e}", flush=True)

    big = None
    if args.big_T:
        big = bench_big(base, args.big_T, args.repeats)
        print(f"\nengine at T={args.big_T:,} (child process, 2 steps):")
        if "error" in big:
            print(f"  failed: {big['error']}")
        else:
            verdict = "under" if big["peak_rss_mb"] < 1024 else "OVER"
            print(f"  training set (CSR): {big['csr_mb']:.1f} MB ({big['nnz']:,} nonzeros)\n"
                  f"  RSS before data {big['base_rss_mb']:.0f} MB, peak {big['peak_rss_mb']:.0f}"
                  f" MB (+{big['extra_rss_mb']:.0f} MB for data and steps): {verdict} 1 GB\n"
                  f"  {big['engine_ms']:.0f} ms/step (first call {big['first_call_ms']:.0f})")

    quick = bench_quick(args.quick_timeout) if args.quick_preset else {"skipped": "not requested"}
    if "wall_s" in quick:
        print(f"\nquick preset: {quick['wall_s']:.1f} s wall ({quick['last_line'][:80]})")
    else:
        print(f"\nquick preset: skipped: {quick['skipped']}")

    if args.out:
        result = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                  "config": base.to_dict(), "rows": rows, "big_T": big, "quick_preset": quick}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

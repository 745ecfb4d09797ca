"""How long do the fused CPU kernels take to compile, and how large is their source, per m?

Each hidden size is compiled in a fresh process with an empty kernel cache
(``TOYRELU_CACHE_DIR`` in a temporary folder): the single-threaded fused module that a
sweep's worker compiles before its first run, generated, written, compiled and run for two
steps on a tiny set. Wall time counts other jobs on the machine too; CPU time is the steadier
number. ``engines.cpu.MAX_HIDDEN`` is set from these (docs/engines.md, "Limits").

    PYTHONPATH=src python benchmarks/bench_compile.py --m 2,8,16,32     # ~5 min on one core
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def measure(m: int) -> dict:
    """Compile and run the fused kernels for hidden size m here (an empty cache)."""
    from toyrelu.core import data, model
    from toyrelu.core.config import RunConfig
    from toyrelu.engines.cpu import engine, kernels

    config = RunConfig(n_features=16, n_hidden=m, sparsity=0.5, n_train=64, steps=2, n_test=8)
    W, b = model.init_params(config)
    X = data.train_set(config)
    wall, cpu = time.perf_counter(), time.process_time()
    source = kernels.module_source(m)
    engine.train(config, X, W, b, threads=1, split_cells=False)
    return {"m": m, "source_bytes": len(source), "lines": len(source.splitlines()),
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--m", default="2,8,16,32", help="comma list of hidden sizes")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(f"{'m':>4} {'source KB':>9} {'lines':>6} {'wall s':>7} {'cpu s':>6} {'peak RSS MB':>11}")
    for m in map(int, args.m.split(",")):
        with tempfile.TemporaryDirectory() as cache:
            done = subprocess.run([sys.executable, __file__, "--child", str(m)], check=True,
                                  capture_output=True, text=True,
                                  env={**os.environ, "TOYRELU_CACHE_DIR": cache})
        r = json.loads(done.stdout.splitlines()[-1])
        print(f"{m:>4} {r['source_bytes'] / 1e3:>9.0f} {r['lines']:>6} {r['wall_s']:>7.1f} "
              f"{r['cpu_s']:>6.1f} {r['peak_rss_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()

"""Does ``runs.limits`` bound what a run really allocates?

Each case trains one run the way a sweep's worker does (``training.run_one``, then the pickled
outcome it sends back), in a fresh process, after a tiny run with the same kernels has loaded
them (a sweep's workers compile them before their first run). The measured peak is that
process's peak resident memory above its resident memory just before the run; the estimate
is ``limits.run_bytes``, summed, times ``limits.MARGIN``, and the part it is largest in. Each
case is sized so that one part dominates, and needs 0.2-1.1 GB.

    PYTHONPATH=src python benchmarks/bench_memory.py            # ~2 min
    PYTHONPATH=src python benchmarks/bench_memory.py --case rows
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import subprocess
import sys

from toyrelu.core.config import RunConfig
from toyrelu.runs import limits

QUICK = dict(n_features=1_000, sparsity=0.99, steps=3, n_test=1_000)
CASES: dict[str, dict] = {
    "nonzeros": dict(QUICK, n_train=1_000_000),
    "nonzeros-float64": dict(QUICK, n_train=1_000_000, dtype="float64"),
    "rows": dict(QUICK, n_features=100, n_train=3_000_000),
    "hidden-16": dict(QUICK, n_hidden=16, n_train=300_000),
    "hidden-16-rows": dict(QUICK, n_hidden=16, sparsity=0.999, n_train=1_000_000),
    "test-set": dict(QUICK, n_train=100, n_test=2_000_000),
    "parameters": dict(n_features=2_000_000, sparsity=0.9999, n_train=10, steps=3, n_test=100),
    "schedule": dict(n_features=1, sparsity=0.0, n_train=1, steps=10_000_000, n_test=1),
    "snapshots": dict(n_features=20_000, sparsity=0.999, n_train=10, steps=999,
                      snapshot_every=1, n_test=100),
    "infinite": dict(QUICK, n_train=math.inf, batch_size=300_000),
    "reference": dict(QUICK, n_train=20_000, engine="reference"),
}


def resident() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(name: str) -> dict:
    """Train case ``name`` here; its peak resident memory above the start, in bytes."""
    from toyrelu.runs import training

    config = RunConfig(**CASES[name])
    tiny = config.replace(n_features=16, sparsity=0.5, n_train=64, steps=2, n_test=8,
                          batch_size=8, snapshot_every=0)
    training.run_one(tiny)  # the evaluation's kernels, and numba's and torch's start-up
    for kind in training.kernel_kinds(config):
        training.compile_kernels(*kind)
    before = resident()
    outcome = training.run_one(config)
    sent = pickle.dumps(outcome)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert outcome.metrics["status"] == "ok", outcome.metrics
    return {"measured": peak - before, "pickled": len(sent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", action="append", choices=list(CASES),
                        help="a case to run (default: all); repeatable")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(f"{'case':<18} {'part':<28} {'estimate MB':>11} {'measured MB':>11} {'ratio':>6}")
    for name in args.case or CASES:
        done = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True,
                              text=True, check=True)
        measured = json.loads(done.stdout.splitlines()[-1])["measured"]
        parts = limits.run_bytes(limits.Sizes.of(RunConfig(**CASES[name])))
        estimate = limits.MARGIN * sum(parts.values())
        part = max(parts, key=lambda p: parts[p])
        print(f"{name:<18} {part:<28} {estimate / 1e6:>11.0f} {measured / 1e6:>11.0f} "
              f"{estimate / measured:>6.2f}", flush=True)


if __name__ == "__main__":
    main()

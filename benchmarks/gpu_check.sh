#!/usr/bin/env bash
# One pass of GPU checks, under 10 minutes: the GPU engine's tests on the device (snapshots
# included), the engine benchmark (bench_gpu.py), the quick preset swept on the GPU, and the
# whole paper preset (84 runs, T up to 500,000 and infinity) end to end at a fifth of its steps:
# the per-step work does not depend on the step count, so its wall time x 5 is the full preset's.
# Logs and stores go to $OUT (default gpu-check/).
set -u
. "$(dirname "$0")/gpu_parts.sh"
gpu_setup
device_tests tests/test_gpu.py 70 8
echo "== benchmark"
BENCH_BUDGET_S=130 timeout 190 python3 benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" \
  > "$OUT/bench.log" 2>&1
tail -45 "$OUT/bench.log"
echo "== quick preset on the GPU"
/usr/bin/time -f "quick preset: %e s wall" timeout 40 python3 -m toyrelu sweep --preset quick \
  --device cuda --store "$OUT/quick.sqlite" 2>&1 | tail -2
paper_fifth
store_summary quick paper

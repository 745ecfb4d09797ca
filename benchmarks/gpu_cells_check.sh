#!/usr/bin/env bash
# The GPU split-cell step's checks, under 8 minutes, for a device call after gpu_check.sh (or
# instead of it, when the heatmap's speed is the question): its tests on the device, one
# split step against one dense step on trained paper-scale runs (bench_gpu_cells.py: time,
# with and without ranging, and gradient agreement), and a heatmap slice (m = 8, T = 100,000,
# 4 seeds, 2,000 steps) end to end with the FMA passes, --gpu-dots, --gpu-cells and both.
# Logs and stores go to $OUT.
set -u
. "$(dirname "$0")/gpu_parts.sh"
gpu_setup
device_tests tests/test_gpu_split.py 60 5
split_vs_dense 6
for flags in "" "--gpu-dots" "--gpu-cells" "--gpu-cells --gpu-dots"; do
  name=slice$(echo "$flags" | tr -d ' ' | sed 's/--gpu-/-/g')
  echo "== heatmap slice ${flags:-(FMA passes)}"
  /usr/bin/time -f "heatmap slice ${flags:-(FMA passes)}: %e s wall" timeout 60 \
    python3 -m toyrelu sweep --preset heatmap --device cuda $flags --n-hidden 8 \
    --n-train 100000 --steps 2000 --store "$OUT/$name.sqlite" 2>&1 | tail -2
done
store_summary slice slice-dots slice-cells slice-cells-dots

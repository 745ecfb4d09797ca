#!/usr/bin/env bash
# The GPU split-cell step's checks, about 5 minutes, for a device call after gpu_check.sh (or
# instead of it, when the split step's speed is the question): its tests on the device, one
# split step against one dense step on trained paper-scale runs (bench_gpu_cells.py: time,
# with and without ranging, and gradient agreement), and a heatmap slice (m = 4, T = 100,000,
# 4 seeds, 2,000 steps) end to end with and without --gpu-cells. Logs go to $OUT.
set -u
. "$(dirname "$0")/gpu_parts.sh"
gpu_setup
device_tests tests/test_gpu_split.py 60 5
split_vs_dense 6
for flag in "" "--gpu-cells"; do
  echo "== heatmap slice ${flag:-dense}"
  /usr/bin/time -f "heatmap slice ${flag:-dense}: %e s wall" timeout 90 python3 -m toyrelu \
    sweep --preset heatmap --device cuda $flag --n-hidden 4 --n-train 100000 --steps 2000 \
    --store "$OUT/slice${flag:+-cells}.sqlite" 2>&1 | tail -2
done
python3 - "$OUT" <<'PY'
import sys
from toyrelu.store import Store
for name in ("slice", "slice-cells"):
    with Store(f"{sys.argv[1]}/{name}.sqlite", create=False) as store:
        runs = store.runs()
    print(name, runs[["seed", "train_loss", "test_loss", "wall_seconds"]].to_string(index=False))
PY

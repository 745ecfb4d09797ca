#!/usr/bin/env bash
# The GPU split-cell step's checks, about 5 minutes, for a device call after gpu_check.sh (or
# instead of it, when the split step's speed is the question): its tests on the device, what
# its kernels compile to, one split step against one dense step on trained paper-scale runs
# (bench_gpu_cells.py: time and gradient agreement), and a heatmap slice (m = 4, T = 100,000,
# 4 seeds, 2,000 steps) end to end with and without --gpu-cells. Logs go to $OUT.
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
echo "== tests/test_gpu_split.py on the device"
timeout 60 python3 -m pytest tests/test_gpu_split.py -q -x -p no:cacheprovider \
  -W ignore::DeprecationWarning 2>&1 | tail -5
echo "== split step vs dense step, trained runs at n = 10,000, S = 0.999, T = 100,000"
timeout 150 python3 benchmarks/bench_gpu_cells.py --n-features 10000 --sparsity 0.999 \
  --n-hidden 2,4,8 --n-train 100000 --steps 2000 2>&1 | tee "$OUT/cells.log" | tail -6
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

#!/usr/bin/env bash
# The GPU targets in one device call, under 9 minutes, for a session with time for one call
# only: the split-cell step's tests on the device, one split step against one dense step on
# trained paper-scale runs (bench_gpu_cells.py: time, with and without ranging, and gradient
# agreement, m = 2, 4, 8), and the whole paper preset (84 runs, T up to 500,000 and infinity)
# end to end at a fifth of its steps: its wall time x 5 is the full preset's. gpu_check.sh and
# gpu_cells_check.sh take each part further. Logs and stores go to $OUT (default gpu-check/).
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== tests/test_gpu_split.py on the device"
timeout 60 python3 -m pytest tests/test_gpu_split.py -q -x -p no:cacheprovider \
  -W ignore::DeprecationWarning 2>&1 | tail -4
echo "== split step vs dense step, trained runs at n = 10,000, S = 0.999, T = 100,000"
timeout 150 python3 benchmarks/bench_gpu_cells.py --n-features 10000 --sparsity 0.999 \
  --n-hidden 2,4,8 --n-train 100000 --steps 2000 2>&1 | tee "$OUT/cells.log" | tail -5
echo "== the paper preset at 10,000 steps (a fifth), end to end"
/usr/bin/time -f "paper preset at 10,000 steps: %e s wall (x 5 for 50,000)" timeout 290 \
  python3 -m toyrelu sweep --preset paper --device cuda --steps 10000 \
  --store "$OUT/paper.sqlite" 2>&1 | tail -2
python3 - "$OUT/paper.sqlite" <<'PY'
import sys
from toyrelu.analysis import mark_kept
from toyrelu.store import Store
try:
    with Store(sys.argv[1], create=False) as store:
        runs = mark_kept(store.runs())
except Exception as exc:  # noqa: BLE001
    raise SystemExit(f"paper store: {exc}")
ok = runs[runs["status"] == "ok"]
batch = ok["batch_runs"].max() if "batch_runs" in ok else 1  # GPU batches record it
print(f"paper: {len(ok)} ok of {len(runs)}; batches of {batch} runs")
cols = ["test_loss", "test_loss_median", "train_loss", "W_norm"]
print(ok.groupby("n_train")[cols].mean().to_string(float_format="%.4g"))
PY

#!/usr/bin/env bash
# One pass of GPU checks, under 10 minutes: the GPU engine's tests on the device (snapshots
# included), the engine benchmark (bench_gpu.py), the quick preset swept on the GPU, and the
# whole paper preset (84 runs, T up to 500,000 and infinity) end to end at a fifth of its steps:
# the per-step work does not depend on the step count, so its wall time x 5 is the full preset's.
# Logs and stores go to $OUT (default gpu-check/).
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== tests/test_gpu.py on the device"
timeout 70 python3 -m pytest tests/test_gpu.py -q -x -p no:cacheprovider \
  -W ignore::DeprecationWarning 2>&1 | tail -8
echo "== benchmark"
BENCH_BUDGET_S=130 timeout 190 python3 benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" \
  > "$OUT/bench.log" 2>&1
tail -45 "$OUT/bench.log"
echo "== quick preset on the GPU"
/usr/bin/time -f "quick preset: %e s wall" timeout 40 python3 -m toyrelu sweep --preset quick \
  --device cuda --store "$OUT/quick.sqlite" 2>&1 | tail -2
echo "== the paper preset at 10,000 steps (a fifth), end to end"
/usr/bin/time -f "paper preset at 10,000 steps: %e s wall (x 5 for 50,000)" timeout 290 \
  python3 -m toyrelu sweep --preset paper --device cuda --steps 10000 \
  --store "$OUT/paper.sqlite" 2>&1 | tail -2
python3 - "$OUT" <<'PY'
import sys
from toyrelu.analysis import mark_kept
from toyrelu.store import Store
for name in ("quick", "paper"):
    try:
        with Store(f"{sys.argv[1]}/{name}.sqlite", create=False) as store:
            runs = mark_kept(store.runs())
    except Exception as exc:  # noqa: BLE001
        print(name, "store:", exc)
        continue
    ok = runs[runs["status"] == "ok"]
    print(f"{name}: {len(ok)} ok of {len(runs)}; batches of {ok['batch_runs'].max()} runs")
    cols = ["test_loss", "test_loss_median", "test_share_above_2", "train_loss", "W_norm"]
    print(ok.groupby("n_train")[cols].mean().to_string(float_format="%.4g"))
PY

#!/usr/bin/env bash
# One pass of GPU checks, under 10 minutes: the GPU engine's tests on the device, the engine
# benchmark (bench_gpu.py), the quick preset swept on the GPU, and a paper-scale slice around
# the bump with Adam's eps at 1e-8 and 3e-4. Logs and stores go to $OUT (default gpu-check/).
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== tests/test_gpu.py on the device"
timeout 80 python3 -m pytest tests/test_gpu.py -q -x -p no:cacheprovider \
  -W ignore::DeprecationWarning 2>&1 | tail -8
echo "== benchmark"
BENCH_BUDGET_S=170 timeout 250 python3 benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" \
  > "$OUT/bench.log" 2>&1
tail -45 "$OUT/bench.log"
echo "== quick preset on the GPU"
/usr/bin/time -f "quick preset: %e s wall" timeout 80 python3 -m toyrelu sweep --preset quick \
  --device cuda --store "$OUT/quick.sqlite" 2>&1 | tail -2
echo "== paper scale around the bump, eps 1e-8 and 3e-4"
/usr/bin/time -f "paper slice: %e s wall" timeout 160 python3 -m toyrelu sweep --preset paper \
  --device cuda --n-train 1000,2000,5000,10000 --seeds 0,1 --eps 1e-8,3e-4 \
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
    print(ok.groupby(["eps", "n_train"])[cols].mean().to_string(float_format="%.4g"))
PY

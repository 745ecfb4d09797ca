# The parts the GPU check scripts (gpu_check.sh, gpu_cells_check.sh, gpu_targets.sh) share,
# sourced by each. Logs and stores go to $OUT (default gpu-check/).

gpu_setup() {  # $OUT, the environment, and what the machine and its libraries are
  OUT=${OUT:-gpu-check}
  mkdir -p "$OUT"
  export PYTHONPATH=src PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
}

device_tests() {  # FILE SECONDS LINES: a test file on the device, the last LINES of its report
  echo "== $1 on the device"
  timeout "$2" python3 -m pytest "$1" -q -x -p no:cacheprovider \
    -W ignore::DeprecationWarning 2>&1 | tail -"$3"
}

split_vs_dense() {  # LINES: bench_gpu_cells.py on trained paper-scale runs, m = 2, 4, 8
  echo "== split step vs dense step, trained runs at n = 10,000, S = 0.999, T = 100,000"
  timeout 150 python3 benchmarks/bench_gpu_cells.py --n-features 10000 --sparsity 0.999 \
    --n-hidden 2,4,8 --n-train 100000 --steps 2000 2>&1 | tee "$OUT/cells.log" | tail -"$1"
}

paper_fifth() {  # the whole paper preset at 10,000 of its 50,000 steps, into $OUT/paper.sqlite
  echo "== the paper preset at 10,000 steps (a fifth), end to end"
  /usr/bin/time -f "paper preset at 10,000 steps: %e s wall (x 5 for 50,000)" timeout 290 \
    python3 -m toyrelu sweep --preset paper --device cuda --steps 10000 \
    --store "$OUT/paper.sqlite" 2>&1 | tail -2
}

store_summary() {  # NAME...: runs of $OUT/NAME.sqlite, and their means per T
  python3 - "$OUT" "$@" <<'PY'
import sys
from toyrelu.analysis import mark_kept
from toyrelu.runs.store import Store
for name in sys.argv[2:]:
    try:
        with Store(f"{sys.argv[1]}/{name}.sqlite", create=False) as store:
            runs = mark_kept(store.runs())
    except Exception as exc:  # noqa: BLE001
        print(name, "store:", exc)
        continue
    ok = runs[runs["status"] == "ok"]
    batch = ok["batch_runs"].max() if "batch_runs" in ok else 1  # GPU batches record it
    print(f"{name}: {len(ok)} ok of {len(runs)}; batches of {batch} runs")
    cols = ["test_loss", "test_loss_median", "test_share_above_2", "train_loss", "W_norm"]
    print(ok.groupby("n_train")[cols].mean().to_string(float_format="%.4g"))
PY
}

#!/usr/bin/env bash
# The GPU targets in one device call, under 9 minutes, for a session with time for one call
# only: the split-cell step's tests on the device, one split step against one dense step on
# trained paper-scale runs (bench_gpu_cells.py: time, with and without ranging, and gradient
# agreement, m = 2, 4, 8), and the whole paper preset (84 runs, T up to 500,000 and infinity)
# end to end at a fifth of its steps: its wall time x 5 is the full preset's. gpu_check.sh and
# gpu_cells_check.sh take each part further. Logs and stores go to $OUT (default gpu-check/).
set -u
. "$(dirname "$0")/gpu_parts.sh"
gpu_setup
device_tests tests/test_gpu_split.py 60 4
split_vs_dense 5
paper_fifth
store_summary paper

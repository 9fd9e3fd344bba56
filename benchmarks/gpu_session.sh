#!/usr/bin/env bash
# Everything a GPU session should do, as ONE prepared command (the device tool lends one machine for a
# few minutes: one call, then give it back). From the repository root, on the GPU machine:
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh 540          # total budget in seconds (default 540)
#   OUT=/tmp/smoke bash benchmarks/gpu_session.sh 120 --cpu-smoke   # the same steps, tiny, on a CPU
#
# The experiment first, the benchmarks only in what is left: a loan's minutes go to the question it answers.
# Steps (each bounded by `timeout`, each writing a log under $OUT, each printed with the seconds it took):
#   1. the machine and torch's view of it (setup.log, which the data step's log then continues);
#   2. the data: benchmarks/gpu_sweep.py --prepare-data builds the grid's dSprites into the cache (737,280
#      images, 3 GB at paper scale, not shipped with the code: generated on the machine that trains);
#   3. benchmarks/gpu_sweep.py on ONE question, Fig. 5a at paper scale (experiments/grids/
#      dsprites_paper_beta1.yml: beta-VAE and ISA-VAE at beta = 1, seeds 0-49, 10 seeds fused per task, seeds
#      in order and the two models interleaved, so that whatever fits is a balanced comparison), appended to
#      results/dsprites_paper_beta1.db (so a second session continues where this one stopped). It gets the
#      whole budget but a reserve for saving the ledger (the sweep itself stops starting tasks it cannot
#      finish);
#   4. the ledger (a consistent SQLite backup) and its CSV export copied to $OUT, to be committed as
#      results/dsprites_paper_beta1.db and results/dsprites_paper_beta1.csv;
#   5. the benchmarks, each only if its time limit fits in what is left, else skipped with a line saying so:
#      benchmarks/gpu_metrics.py (full-grid MIG timing, GPU/CPU agreement), benchmarks/bench_train.py --paper
#      (fused against separate training, the finite check every step against once per log step),
#      benchmarks/bench_mig_kernel.py (the streamed MIG kernel at full dSprites) and benchmarks/bench_roofline.py
#      (training steps of the paper's MLP against the matmul rate).
# $OUT ends with 8 files at most (setup.log, gpu_sweep.log, the ledger and its CSV, one log per benchmark):
# a device loan brings back no more than 8.
# GRID (environment) picks another grid, e.g. GRID=experiments/grids/dsprites_paper.yml for the full Table 1.
# SWEEP_ARGS (environment) is appended to gpu_sweep.py's arguments, e.g. SWEEP_ARGS="--max-tasks 2".
# The machine needs torch, numpy, pandas, pyyaml, scipy and tqdm (the device image has them); ray is not used.
set -uo pipefail
budget=${1:-540}
mode=${2:-}
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
grid=${GRID:-experiments/grids/dsprites_paper_beta1.yml}
name=$(basename "$grid" .yml)
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }

if [ "$mode" = "--cpu-smoke" ]; then
    metrics_args="--cpu-small"; train_args="--k 2 --steps 3 --device cpu"
    sweep_args="--cpu-smoke --fuse 4"; ledger="$OUT/smoke.db"; reserve=10; data_s=600
    kernel_args="--grid 1,3,6,4,4,4 --n-samples 30 --latents 6 --rounds 1 --full --full-grid 1,3,6,4,4,4"
    # limits a loaded 2-core machine does not run into (a smoke step takes 5-60 s idle, several times that under
    # load; the roofline compiles): they bound a hang, they are not a speed test
    roofline_args="--quick --steps 1 --rounds 1"; metrics_s=600; train_s=600; kernel_s=600; roofline_s=600
else
    metrics_args="--skip-float64"; train_args="--paper --device cuda --k 10 --steps 20"
    sweep_args="--fuse 10"; ledger="results/$name.db"; reserve=30; data_s=240
    # no numpy/torch references: on the CPU they would take ~100 min at this size (the 90 s limit killed them)
    kernel_args="--device cuda --n-samples 1000 --sample-chunk 1024 --row-chunk 16384 --skip-reference --rounds 1 --full --full-dtypes float32,float64"
    roofline_args="--device cuda --steps 20 --rounds 3 --breakdown"; kernel_s=90; roofline_s=120  # TC compiled: Triton
    metrics_s=150; train_s=120
fi

# step NAME LIMIT_S LOG COMMAND...: run COMMAND under `timeout LIMIT_S`, its output also in $OUT/LOG, and say how
# long it took; skipped (with a line saying so) when LIMIT_S does not fit in what is left of the budget.
step() {
    local title=$1 limit=$2 log=$3; shift 3
    local now; now=$(left)
    if [ "$limit" -gt "$now" ]; then
        echo "== $title skipped: its limit is $limit s, $now s left"
        return 0
    fi
    echo "== $title ($now s left, limit $limit s)"
    local t0; t0=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
    echo "-- $title took $(( $(date +%s) - t0 )) s (exit ${PIPESTATUS[0]})"
}

{
    date -u; uname -a; nvidia-smi 2>&1 | head -15
    "$py" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda',
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} > "$OUT/setup.log" 2>&1
cat "$OUT/setup.log"

# the data step is never skipped: without it the sweep's first timing would build the data set in its budget
data_limit=$(( $(left) - reserve )); [ "$data_limit" -gt "$data_s" ] && data_limit=$data_s
[ "$data_limit" -lt 1 ] && data_limit=1
step "data" "$data_limit" setup.log "$py" benchmarks/gpu_sweep.py --grid "$grid" $sweep_args --prepare-data

sweep_budget=$(( $(left) - reserve ))
if [ "$sweep_budget" -gt 30 ]; then
    # The sweep stops starting tasks by itself; timeout only guards against a hang (rows written stay).
    step "gpu_sweep, budget ${sweep_budget} s" $(( sweep_budget + reserve / 2 )) gpu_sweep.log \
        "$py" benchmarks/gpu_sweep.py --grid "$grid" $sweep_args --budget-s "$sweep_budget" --ledger "$ledger" ${SWEEP_ARGS:-}
else
    echo "== gpu_sweep skipped: ${sweep_budget} s of budget for it"
fi

echo "== saving the ledger ($(left) s left)"
"$py" - "$ledger" "$OUT" <<'PYEOF'
import sqlite3, sys
from pathlib import Path
from isa_lib.experiments import Ledger
src, out = Path(sys.argv[1]), Path(sys.argv[2])
if src.exists():
    name = src.stem
    with sqlite3.connect(src) as a, sqlite3.connect(out / f"{name}.db") as b:
        a.backup(b)  # consistent copy, WAL included
    b_path = out / f"{name}.db"
    print("ledger", Ledger(b_path).counts(), "->", b_path)
    print("csv ->", Ledger(b_path).export_csv(out / f"{name}.csv"))
else:
    print("no ledger at", src)
PYEOF

# The benchmarks, in what the sweep left.
step "gpu_metrics" "$metrics_s" gpu_metrics.log "$py" benchmarks/gpu_metrics.py $metrics_args
step "bench_train" "$train_s" bench_train.log "$py" benchmarks/bench_train.py $train_args
step "bench_mig_kernel" "$kernel_s" bench_mig_kernel.log "$py" benchmarks/bench_mig_kernel.py $kernel_args
step "bench_roofline" "$roofline_s" bench_roofline.log "$py" benchmarks/bench_roofline.py $roofline_args
echo "done in $(( $(date +%s) - start )) s"

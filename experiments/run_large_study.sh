#!/usr/bin/env bash
# The large CPU study (the paper's regime on a CPU; chapter 06's main study), grid after grid, on a local Ray
# cluster with one thread per run and two runs side by side. Resumable: run it again and it continues from the
# ledgers (finished runs are skipped, interrupted ones start again, failed ones are retried). ~6 CPU-hours on
# an idle 2-core machine in all (see each grid's `estimate`). Leave the Ray workers alone while it runs: a
# paused (SIGSTOPped) worker is declared dead by Ray and its run recorded as failed (retried here).
#   bash experiments/run_large_study.sh > large_study.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
py=${PYTHON:-.venv/bin/python}
for g in dsprites_large_beta1 faces3d_large dsprites_large_learned dsprites_large; do
    case $g in faces3d_*) name=faces3d_large ;; *) name=dsprites_large ;; esac
    echo "=== $g $(date -u)"
    "$py" -m isa_lib.experiments --grid "experiments/grids/$g.yml" --ledger "results/$name.db" --backend ray \
        --cpus-per-task 1 --fuse 1 --retry-failed --export "results/$name.csv"
done
echo "=== all done $(date -u)"

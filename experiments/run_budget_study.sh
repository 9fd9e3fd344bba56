#!/usr/bin/env bash
# The budget study (Fig. 5a at the paper's training budget; chapter 06's main study) on a local Ray cluster,
# one thread per run and two runs side by side. Resumable: run it again and it continues from the ledger
# (finished runs are skipped, interrupted ones resume from their checkpoints in
# results/dsprites_budget.db.checkpoints/, failed ones are retried). The grid is breadth-first in budget:
# every run to 1/8 of the budget, then to 1/4, 1/2 and the whole. About 33 core-hours in all (see the grid).
# The checkpoints are not committed (66 MB each): in a fresh checkout a run's next fraction retrains
# its prefix, with the same numbers (the tests show that an extended run equals a straight one).
#   bash experiments/run_budget_study.sh > budget_study.log 2>&1 &
# RESULTS=/path/to/results puts the ledger, its export and checkpoints elsewhere (e.g. when the study runs
# from a frozen worktree of the code while the main checkout changes).
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
py=${PYTHON:-.venv/bin/python}
results=${RESULTS:-results}
echo "=== dsprites_budget $(date -u)"
"$py" -m isa_lib.experiments --grid experiments/grids/dsprites_budget.yml --ledger "$results/dsprites_budget.db" \
    --backend ray --cpus-per-task 1 --fuse 1 --retry-failed --export "$results/dsprites_budget.csv"
echo "=== done $(date -u)"

"""Evaluation's share of a budget-scale run (issue 22's target: under 10 % with four scorings), measured side by
side in one process: training steps of the budget pipeline, one scoring of a trained budget-study model exactly
as the sweep scores it (isa_lib.experiments.run.evaluate: Chen's MIG on all 737,280 posteriors with S = 10,000,
plus the reconstruction term), then training steps again, so that both see the same machine.

The share of a whole run is projected as 4 E / (7,200 t + 4 E), t the seconds per step (mean of the two blocks),
E one scoring; also with the faster block alone, and in CPU seconds (the process's own time, which a loaded
machine inflates less than wall time); with the 1-minute load. The model is the first finished run of
the ledger whose checkpoint is still there (the sweep keeps them until the run's whole budget is done).

    .venv/bin/python benchmarks/bench_budget_share.py --out results/budget_share.json
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clock():
    return time.perf_counter(), time.process_time()


def main(argv=None):
    import torch

    from isa_lib.experiments import build_model, load_data, seconds_per_step
    from isa_lib.experiments.run import evaluate, finished_checkpoints

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ledger", default=str(ROOT / "results" / "dsprites_budget.db"))
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per block (after as many warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="as the study's workers")
    ap.add_argument("--scorings", type=int, default=4, help="scorings per run (the study's four fractions)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    found = next(finished_checkpoints(a.ledger), None)
    if found is None:
        raise SystemExit(f"{a.ledger}: no finished run with its checkpoint")
    c, met, state = found
    data = load_data(c)
    model = build_model(c)
    model.load_state_dict(state["model"])
    loads = [os.getloadavg()[0]]
    p = time.process_time()
    t1 = seconds_per_step([c], steps=a.steps)
    # CPU seconds per step, at most: the block's warm-up steps and the data's loading count too
    cpu_step = (time.process_time() - p) / (2 * a.steps)
    loads.append(os.getloadavg()[0])
    w, p = clock()
    res = evaluate(model, data, c, [])
    w2, p2 = clock()
    loads.append(os.getloadavg()[0])
    t2 = seconds_per_step([c], steps=a.steps)
    loads.append(os.getloadavg()[0])
    step = (t1 + t2) / 2
    ev_wall, ev_cpu = w2 - w, p2 - p
    n = a.scorings
    out = {"run": c.short(), "steps_per_run": c.steps, "s_per_step_blocks": [t1, t2], "s_per_step": step,
           "train_cpu_s_per_step_at_most": cpu_step,
           "scoring_wall_s": ev_wall, "scoring_cpu_s": ev_cpu, "mig_backend": res.get("mig_backend"),
           "mig": res["mig"], "ledger_mig": met["mig"], "reconstruction": res["reconstruction"],
           "ledger_reconstruction": met["reconstruction"], "ledger_eval_s": met["timings"]["eval_s"],
           "projected_share": n * ev_wall / (c.steps * step + n * ev_wall),
           "projected_share_fastest_block": n * ev_wall / (c.steps * min(t1, t2) + n * ev_wall),
           "projected_share_cpu": n * ev_cpu / (c.steps * cpu_step + n * ev_cpu), "load_1min": loads,
           "threads": torch.get_num_threads()}
    print(f"{c.short()}: {step:.2f} s per training step ({t1:.2f}, {t2:.2f}), one scoring {ev_wall:.0f} s wall "
          f"({ev_cpu:.0f} s CPU, MIG backend {out['mig_backend']}); a whole run ({c.steps} steps, {n} scorings): "
          f"evaluation's share {out['projected_share']:.1%} (with the faster block alone "
          f"{out['projected_share_fastest_block']:.1%}; in CPU seconds {out['projected_share_cpu']:.1%}, training "
          f"at most {cpu_step:.2f} CPU s a step); 1-min load {min(loads):.1f}-{max(loads):.1f}")
    print(f"MIG {res['mig']:.10f} (ledger {met['mig']:.10f}), reconstruction {res['reconstruction']:.6f} "
          f"(ledger {met['reconstruction']:.6f})")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()

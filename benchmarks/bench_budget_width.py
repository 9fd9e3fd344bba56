"""Why the ``budget`` scale uses the MLP width it does (isa_lib.experiments.BUDGET_HIDDEN).

The budget scale is the paper's dSprites run (Table 1: all 737,280 images at 64 x 64, batch 2048, 7,200
steps) on a CPU; only the MLP's width is free. This times training steps of that pipeline
(isa_lib.experiments.seconds_per_step, ISA prior) with 256, 512 and the paper's 1200 hidden units,
interleaved in one process, and prints seconds per step, the ratio to 256 units, the predicted time of a
whole run (7,200 steps) and of its first eighth, and the machine's load, which a shared machine makes part
of every number.

    .venv/bin/python benchmarks/bench_budget_width.py                  # one thread, as the study's workers
    .venv/bin/python benchmarks/bench_budget_width.py --steps 2 --rounds 1 --widths 256   # quick look
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    import torch
    from isa_lib.experiments import config_for, seconds_per_step

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per width (after as many warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest round counts")
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1200])
    ap.add_argument("--scale", default="budget", help="the scale whose pipeline is timed (tests: small)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = {h: config_for(args.scale, model="isa_vae", hidden=h) for h in args.widths}
    best = {h: float("inf") for h in cases}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):          # interleaved: a change of load hits every width alike
        for h, c in cases.items():
            best[h] = min(best[h], seconds_per_step([c], steps=args.steps))
            load.append(os.getloadavg()[0])
    ref = best[min(cases)]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps x {args.rounds} rounds, "
          f"1-min load {min(load):.1f}-{max(load):.1f}, {args.scale} scale")
    for h, c in cases.items():
        s = best[h]
        print(f"MLP {h:5d}: {s:6.2f} s/step  {c.batch_size / s:6.0f} img/s  x{s / ref:4.2f} of MLP {min(cases)}  "
              f"whole run ({c.steps} steps) {s * c.steps / 3600:5.2f} h, first eighth {s * c.steps / 8 / 60:5.1f} min")
    return best


if __name__ == "__main__":
    main()

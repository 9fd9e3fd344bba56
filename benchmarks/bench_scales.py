"""What one run of each CPU scale costs, and why ``large`` uses 512 hidden units (isa_lib.experiments.scale_defaults).

Times training steps of the ``large`` scale's real pipeline (isa_lib.experiments.seconds_per_step: the
64 x 64 binary dSprites sub-grid, batch 128, ISA prior) with the paper's 1200-unit MLP and with 512 and 256
units, side by side in one process, plus the 3D-faces conv nets of ``large``; prints seconds per step,
images per second, the ratio to the 512-unit MLP and the predicted training time of one run.

    .venv/bin/python benchmarks/bench_scales.py                 # one thread, as the study's Ray workers use
    .venv/bin/python benchmarks/bench_scales.py --threads 2 --steps 20
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    import torch
    from isa_lib.experiments import config_for, seconds_per_step

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration (after as many warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest round counts")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = {f"dSprites large, MLP {h}": config_for("large", model="isa_vae", hidden=h) for h in (1200, 512, 256)}
    cases["3D faces large, conv"] = config_for("large", "faces3d", model="isa_vae")
    best = {name: float("inf") for name in cases}
    for _ in range(args.rounds):              # interleaved, so that a change of machine load hits every case
        for name, c in cases.items():
            best[name] = min(best[name], seconds_per_step([c], steps=args.steps))
    ref = best["dSprites large, MLP 512"]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps x {args.rounds} rounds")
    for name, c in cases.items():
        s = best[name]
        print(f"{name:26s} {s * 1000:7.1f} ms/step  {c.batch_size / s:7.0f} img/s  x{s / ref:4.2f} of MLP 512  "
              f"one run: {c.steps} steps = {s * c.steps / 60:5.1f} min of training")


if __name__ == "__main__":
    main()

"""Torch threads per process on a 2-core CPU, idle and busy: the measurement behind isa_lib.threads.

Times training steps (isa_lib.experiments.seconds_per_step: the scale's real data, network and batch) of the
``small``, ``medium`` and ``large`` ISA-VAE with 1 and 2 intra-op threads, side by side in one process,
first as the machine is and then with ``--burners`` busy-loop processes beside it (a loaded machine), and
prints ms per step and the ratio of 2 threads to 1. Interleaved rounds; the fastest round counts.

    .venv/bin/python benchmarks/bench_threads.py                    # burners 0 and 2
    .venv/bin/python benchmarks/bench_threads.py --scales small --steps 20 --burners 0 2
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def burn(n: int) -> list:
    """``n`` processes that keep one core each busy (a loaded machine)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main(argv=None):
    import torch
    from isa_lib.experiments import config_for, seconds_per_step

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", nargs="+", default=["small", "medium", "large"])
    ap.add_argument("--burners", nargs="+", type=int, default=[0, 2], help="busy processes beside, per setting")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per case (after as many warm-up)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    cases = {s: config_for(s, model="isa_vae") for s in args.scales}
    rows = []
    for b in args.burners:
        procs = burn(b)
        try:
            load = os.getloadavg()[0]
            best = {(s, n): float("inf") for s in cases for n in (1, 2)}
            for _ in range(args.rounds):
                for s, c in cases.items():
                    for n in (1, 2):
                        torch.set_num_threads(n)
                        best[s, n] = min(best[s, n], seconds_per_step([c], steps=args.steps))
            load = max(load, os.getloadavg()[0])
        finally:
            for p in procs:
                p.kill()
                p.wait()
        for s in cases:
            rows.append((b, load, s, best[s, 1], best[s, 2]))
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {args.steps} steps x {args.rounds} rounds")
    print(f"{'burners':>7} {'load':>5} {'scale':>7} {'1 thread':>10} {'2 threads':>10} {'2 / 1':>6}")
    for b, load, s, one, two in rows:
        print(f"{b:7d} {load:5.1f} {s:>7} {one * 1000:8.1f}ms {two * 1000:8.1f}ms {two / one:6.2f}")


if __name__ == "__main__":
    main()

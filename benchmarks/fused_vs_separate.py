"""Fused runs (train_many) against the same runs trained separately (train): do they give the same outcomes?

A fused run equals its separate twin only up to floating-point reduction order (tests/test_train.py checks
agreement to 1e-7 over a few float64 steps). Over thousands of float32 steps the two trajectories part, so
single runs differ; what a study needs is that fusing leaves the distribution over seeds unchanged. This
prints, side by side, each seed's MIG and reconstruction from both, where the two trajectories part (the
logged loss), and each arm's mean and standard error, with the z-score of the difference of the means.

Separate results are read from a ledger when it holds the row (same configuration hash, trained with
``fused == 1``), otherwise computed here.

    python benchmarks/fused_vs_separate.py --scale medium --model isa_vae --beta 1 --seeds 4 \\
        --separate-ledger results/dsprites_medium.db
    python benchmarks/fused_vs_separate.py --scale small --seeds 4          # ~3 minutes on 2 cores
"""
import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isa_lib import analysis  # noqa: E402
from isa_lib.experiments import Ledger, config_for, run_group  # noqa: E402


def parting_step(h_fused, h_alone, rel=1e-3):
    """First logged step at which the two losses differ by more than ``rel`` (relative), or None."""
    for a, b in zip(h_fused, h_alone):
        if abs(a["loss"] - b["loss"]) > rel * max(abs(a["loss"]), abs(b["loss"]), 1e-12):
            return a["step"]
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", choices=("small", "medium", "paper"))
    ap.add_argument("--model", default="isa_vae")
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--separate-ledger", default=None, help="take separate runs from this ledger when present")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    configs = [config_for(args.scale, model=args.model, beta=args.beta, seed=s, device=args.device)
               for s in range(args.seeds)]
    if not configs[0].fusable:
        sys.exit(f"{args.model} with the {configs[0].architecture} networks is not fused (see RunConfig.fusable)")
    t = time.perf_counter()
    fused = run_group(configs)
    fused_s = time.perf_counter() - t
    stored = {}
    if args.separate_ledger and Path(args.separate_ledger).exists():
        stored = {r["config_hash"]: r for r in Ledger(args.separate_ledger).rows("done")
                  if r["metrics"]["timings"]["fused"] == 1}
    separate, t = [], time.perf_counter()
    for c in configs:
        row = stored.get(c.config_hash())
        separate.append({"status": "done", "metrics": row["metrics"], "from": "ledger"} if row else
                        {**run_group([c])[0], "from": "computed"})
    separate_s = time.perf_counter() - t

    print(f"{args.model} beta={args.beta:g} at scale {args.scale}, {args.seeds} seeds, device {args.device}")
    print(f"{'seed':>4} {'MIG fused':>10} {'MIG alone':>10} {'recon fused':>12} {'recon alone':>12} "
          f"{'parted at step':>15}  alone from")
    rows = []
    for c, f, s in zip(configs, fused, separate):
        if f["status"] != "done" or s["status"] != "done":
            print(f"{c.seed:>4} fused {f['status']}, alone {s['status']}")
            continue
        fm, sm = f["metrics"], s["metrics"]
        part = parting_step(fm["history"], sm["history"])
        rows.append({"seed": c.seed, "mig_fused": fm["mig"], "mig_alone": sm["mig"],
                     "recon_fused": fm["reconstruction"], "recon_alone": sm["reconstruction"], "parted_at": part})
        print(f"{c.seed:>4} {fm['mig']:>10.4f} {sm['mig']:>10.4f} {fm['reconstruction']:>12.2f} "
              f"{sm['reconstruction']:>12.2f} {str(part):>15}  {s['from']}")
    out = {"config": configs[0].to_dict(), "rows": rows, "fused_s": fused_s, "separate_s": separate_s}
    # The two arms as two "models" of one table: analysis.summarise/compare give the means, standard errors
    # and z-score exactly as chapter 06 computes them for the study.
    arms = pd.DataFrame([{"model": arm, "beta": args.beta, "mig": r[f"mig_{arm}"], "recon": r[f"recon_{arm}"]}
                         for r in rows for arm in ("fused", "alone")])
    for key in ("mig", "recon"):
        s = analysis.summarise(arms, metrics=(key,)).set_index("model")
        (mf, ef), (ma, ea) = (s.loc[arm, [f"{key}_mean", f"{key}_sem"]].tolist() for arm in ("fused", "alone"))
        z = float(analysis.compare(arms, "fused", "alone", key)["z"].iloc[0])
        out[key] = {"fused": [mf, ef], "alone": [ma, ea], "z": z}
        print(f"{key:>5}: fused {mf:.4f} +- {ef:.4f}   alone {ma:.4f} +- {ea:.4f}   z = {z:+.2f}")
    print(f"time: fused {fused_s:.0f} s for {len(configs)} runs; separate {separate_s:.0f} s "
          f"({sum(s['from'] == 'computed' for s in separate)} computed)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

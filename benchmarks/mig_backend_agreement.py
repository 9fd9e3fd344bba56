"""Chen's MIG (Sec. 4) of trained budget-study models through both kernels: the native C kernel against the
torch float32 path that scored them in the ledger, on the same posteriors, samples and subsets.

For each finished run of a ledger whose training checkpoint is still there (the lineage's checkpoint at the
run's step; the sweep keeps it until the run at the whole budget is done), rebuild the model, encode the full
grid, score the MIG with ``backend="native"`` and compare with the ledger's number (scored by the torch path),
timing the parts (encoding, the native MIG, the reconstruction term from the shared posteriors: the scoring
of the sweep). Read-only on the ledger; writes a JSON summary.

    python benchmarks/mig_backend_agreement.py --ledger results/dsprites_budget.db --runs 2 \
        --out results/mig_backend_agreement.json
    python benchmarks/mig_backend_agreement.py --runs 2 --interpolate --out results/mig_interpolation.json
"""
import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isa_lib import metrics as M  # noqa: E402
from isa_lib.experiments import build_model, load_data  # noqa: E402
from isa_lib.experiments.run import finished_checkpoints  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ledger", default=str(ROOT / "results" / "dsprites_budget.db"))
    ap.add_argument("--runs", type=int, default=2, help="how many finished runs to re-score")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--also-torch", action="store_true", help="re-score with the torch path too (slow)")
    ap.add_argument("--interpolate", action="store_true",
                    help="the native kernel both ways: exact sums (interpolate=False) and with the checked "
                         "Chebyshev interpolants (the default), timed in wall and CPU seconds")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    found = list(itertools.islice(finished_checkpoints(a.ledger), a.runs))
    print(f"{a.ledger}: {len(found)} finished run(s) with their checkpoint at their step; "
          f"{torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}")
    out = []
    for c, met, state in found:
        data = load_data(c)
        model = build_model(c)
        model.load_state_dict(state["model"])
        model.eval()
        with torch.no_grad():
            t = time.perf_counter()
            mu, lv = M.encode_dataset(model.encoder, data, batch_size=1024)
            t_enc = time.perf_counter() - t
            kw = dict(factors=data.name, factor_names=data.factor_names, n_samples=c.mig_samples, seed=c.seed,
                      dtype=torch.float32)
            t, cpu = time.perf_counter(), time.process_time()
            nat = M.mig_chen(mu, lv, data.factor_sizes, backend="native",
                             **(dict(kw, interpolate=False) if a.interpolate else kw))
            t_nat, cpu_nat = time.perf_counter() - t, time.process_time() - cpu
            t = time.perf_counter()
            recon = M.reconstruction_log_likelihood(model.encoder, model.decoder, data, batch_size=1024,
                                                    seed=c.seed, posteriors=(mu, lv))
            t_rec = time.perf_counter() - t
            row = {"run": c.short(), "ledger_reconstruction": met["reconstruction"], "reconstruction": recon,
                   "reconstruction_s": t_rec, "ledger_mig": met["mig"], "native_mig": nat.mig,
                   "abs_diff": abs(nat.mig - met["mig"]), "native_s": t_nat, "encode_s": t_enc,
                   "ledger_eval_s": met.get("timings", {}).get("eval_s"), "load": os.getloadavg()[0],
                   "per_factor_ledger": met["mig_per_factor"],
                   "per_factor_native": dict(zip([data.factor_names[k] for k in nat.factors],
                                                 nat.per_factor.tolist()))}
            row["native_cpu_s"] = cpu_nat
            row["native_interpolate"] = nat.info["interpolated"]
            if a.interpolate:
                t, cpu = time.perf_counter(), time.process_time()
                fast = M.mig_chen(mu, lv, data.factor_sizes, backend="native", interpolate=True, **kw)
                row.update(interp_mig=fast.mig, interp_s=time.perf_counter() - t,
                           interp_cpu_s=time.process_time() - cpu, interpolated=fast.info["interpolated"],
                           interp_abs_diff_native=abs(fast.mig - nat.mig),
                           interp_abs_diff_ledger=abs(fast.mig - met["mig"]),
                           interp_max_entropy_diff=float(max(
                               abs(fast.marginal_entropy - nat.marginal_entropy).max(),
                               abs(fast.conditional_entropy - nat.conditional_entropy).max())))
            if a.also_torch:
                t = time.perf_counter()
                tor = M.mig_chen(mu, lv, data.factor_sizes, backend="torch", **kw)
                row.update(torch_mig=tor.mig, torch_s=time.perf_counter() - t,
                           max_entropy_diff=float(max(abs(nat.marginal_entropy - tor.marginal_entropy).max(),
                                                      abs(nat.conditional_entropy - tor.conditional_entropy).max())))
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("per_factor")}))
        out.append(row)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

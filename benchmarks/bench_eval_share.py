"""Evaluation's share of a run at a CPU scale, before and after the new MIG kernel (issue 14: at most 20 %).

Builds the scale's data and model (isa_lib.experiments.config_for, load_data, build_model; the model is
untrained, which changes no timing) and times the parts of the sweep's evaluation (isa_lib.experiments.evaluate
-> isa_lib.metrics.evaluate_model): encoding the whole grid, Chen's MIG (Sec. 4) on the scale's mig_samples,
and the reconstruction term. The MIG is timed with the kernel before issue 14 (bench_mig_kernel.gemm_log_mixture,
float64), the torch kernel in float64 (the default) and in float32, and float32 through backend='auto' (the
native kernel of issue 22 where a C compiler is there). Then, for the finished runs of a ledger
CSV (read only), it prints evaluation's share eval_s / (train_s_per_run + eval_s) as recorded and as
projected: eval_s x (encode + reconstruction + new MIG) / (encode + reconstruction + MIG before).

    python benchmarks/bench_eval_share.py                                   # medium, results/dsprites_medium.csv
    python benchmarks/bench_eval_share.py --scale large --ledger results/dsprites_large.csv
    python benchmarks/bench_eval_share.py --budget-ledger results/dsprites_budget.csv   # no timing: the ledger

--budget-ledger reads the budget study's export instead (runs extended through 1/8, 1/4, 1/2 and the whole
budget, each fraction a row that trains only its increment and is scored once): per MIG backend the mean
scoring time, and evaluation's share of a whole lineage with four scorings, sum(eval_s) / (sum(train_s) +
sum(eval_s)), measured where a lineage has all four rows and projected otherwise: 4 x the backend's mean
scoring time against 8 x the median training time of a row at 1/8, and each row against its own training
(the same worker, one after the other), in wall seconds and, where the ledger records them
(timings.train_cpu_s, timings.eval_cpu_s), in the worker's CPU seconds.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_mig_kernel import gemm_log_mixture  # noqa: E402
from isa_lib import metrics as M  # noqa: E402
from isa_lib.experiments import build_model, config_for, load_data  # noqa: E402
from isa_lib.metrics import _mig  # noqa: E402


def _gemm(z, mu, logvar, groups, sample_chunk, row_chunk, backend="torch"):
    if any(len(g) != 1 for g in groups):
        raise ValueError("the GEMM kernel of this benchmark takes one latent per group")
    return gemm_log_mixture(z, mu, logvar, sample_chunk, row_chunk)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="medium")
    ap.add_argument("--ledger", default=str(ROOT / "results" / "dsprites_medium.csv"))
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (the sweep's workers use 1)")
    ap.add_argument("--budget-ledger", default=None, help="only read the budget study's CSV export")
    a = ap.parse_args(argv)
    if a.budget_ledger:
        return budget_share(a.budget_ledger)
    torch.set_num_threads(a.threads)
    c = config_for(a.scale, model="isa_vae")
    data = load_data(c)
    model = build_model(c).eval()
    kw = dict(factors=data.name, factor_names=data.factor_names, n_samples=c.mig_samples, seed=c.seed)
    with torch.no_grad():
        (mu, lv), t_enc = timed(lambda: M.encode_dataset(model.encoder, data, batch_size=1024))
        _, t_rec = timed(lambda: M.reconstruction_log_likelihood(model.encoder, model.decoder, data, batch_size=1024,
                                                                  seed=c.seed))
        new64, t_new64 = timed(lambda: M.mig_chen(mu, lv, data.factor_sizes, dtype=torch.float64, **kw))
        new32, t_new32 = timed(lambda: M.mig_chen(mu, lv, data.factor_sizes, dtype=torch.float32, backend="torch",
                                                   **kw))
        nat32, t_nat32 = timed(lambda: M.mig_chen(mu, lv, data.factor_sizes, dtype=torch.float32, **kw))
        exact32, t_exact32 = timed(lambda: M.mig_chen(mu, lv, data.factor_sizes, dtype=torch.float32,
                                                      interpolate=False, **kw))
        kernel = _mig.log_mixture
        _mig.log_mixture = lambda z, mu_, lv_, groups, sc, rc, be, interp: (_gemm(z, mu_, lv_, groups, sc, rc), 0)
        try:
            old, t_old = timed(lambda: M.mig_chen(mu, lv, data.factor_sizes, dtype=torch.float64, **kw))
        finally:
            _mig.log_mixture = kernel
    other = t_enc + t_rec
    print(f"scale {a.scale}: {len(data)} images, {c.latent_dim} latents, mig_samples {c.mig_samples}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"encode {t_enc:.1f} s, reconstruction {t_rec:.1f} s; MIG: before {t_old:.1f} s, new float64 "
          f"{t_new64:.1f} s (x{t_old / t_new64:.1f}), new float32 {t_new32:.1f} s (x{t_old / t_new32:.1f})")
    done, total = nat32.info["interpolated"]
    print(f"MIG with the {nat32.info['backend']} kernel (backend='auto'), float32: {t_nat32:.1f} s "
          f"(x{t_old / t_nat32:.1f}; {done} of {total} group passes interpolated); the same kernel's exact sums "
          f"(interpolate=False): {t_exact32:.1f} s (x{t_old / t_exact32:.1f})")
    print(f"MIG before/new64/new32/auto32/exact32: {old.mig:.6f} / {new64.mig:.6f} / {new32.mig:.6f} / "
          f"{nat32.mig:.6f} / {exact32.mig:.6f}")
    scale = {"before (ledger)": 1.0, "new float64": (other + t_new64) / (other + t_old),
             "new float32": (other + t_new32) / (other + t_old),
             f"{nat32.info['backend']} float32": (other + t_nat32) / (other + t_old)}
    try:
        import pandas as pd
        df = pd.read_csv(a.ledger)
    except (ImportError, OSError) as err:
        print(f"no ledger to project ({err})")
        return
    df = df[df["status"] == "done"]
    train, ev = df["timings.train_s_per_run"], df["timings.eval_s"]
    print(f"{a.ledger}: {len(df)} finished runs; evaluation's share of train + eval per run:")
    for name, f in scale.items():
        share = ev * f / (train + ev * f)
        print(f"  {name:16s} eval x{f:.2f}: mean {share.mean():.1%}, median {share.median():.1%}, "
              f"max {share.max():.1%}, runs above 20 %: {int((share > 0.2).sum())}")


def budget_share(path):
    """Evaluation's share of the budget study's runs (see the module's docstring), from its CSV export."""
    import pandas as pd
    df = pd.read_csv(path)
    df = df[df["status"] == "done"].copy()
    df["backend"] = df["mig_backend"].fillna("torch") if "mig_backend" in df else "torch"
    print(f"{path}: {len(df)} finished rows")
    # a row resumed from a mid-fraction checkpoint records only its last stretch of training: the projection
    # takes the median training time of the rows at 1/8, which is an uninterrupted 900-step stretch for most
    eighth_train = df.loc[df["budget_fraction"] == 0.125, "timings.train_s"].median()
    print(f"  training at 1/8 of the budget: median {eighth_train:.0f} s per row (a whole run: x 8 = "
          f"{8 * eighth_train / 3600:.2f} h)")
    for be, g in df.groupby("backend"):
        ev = g["timings.eval_s"]
        share = 4 * ev.mean() / (8 * eighth_train + 4 * ev.mean())
        print(f"  MIG backend {be}: {len(g)} scorings, eval_s mean {ev.mean():.0f} s (min {ev.min():.0f}, max "
              f"{ev.max():.0f}); projected share of a whole run with four scorings: {share:.1%}")
    # each row against its own training, both timed in the same worker one after the other (rows trained in
    # one attempt, so that train_s covers the row's whole increment: 900 steps at 1/8 and 1/4, 1,800 at 1/2,
    # 3,600 for the whole), projected to a whole run: 4 E / (7,200 t + 4 E), t = train_s / increment; in wall
    # seconds, and in the worker's CPU seconds where the ledger has them (a loaded machine inflates them less)
    total = df["steps"] if "steps" in df else pd.Series(7200, index=df.index)   # a whole run's steps
    # each fraction after 1/8 doubles the one before, so its increment is half its steps
    incr = df["train_steps"].where(df["budget_fraction"] == 0.125, df["train_steps"] / 2)
    own = df[df.get("attempts", 1) == 1]
    for unit, tr, ev in (("wall", "timings.train_s", "timings.eval_s"),
                         ("CPU", "timings.train_cpu_s", "timings.eval_cpu_s")):
        if tr not in own:
            continue
        g_all = own.dropna(subset=[tr, ev])
        for be, g in g_all.groupby("backend"):
            t = g[tr] / incr[g.index]
            share = 4 * g[ev] / (total[g.index] * t + 4 * g[ev])
            print(f"  MIG backend {be}, {unit} seconds, each row against its own training ({len(g)} rows in one "
                  f"attempt, fractions {sorted(set(g['budget_fraction']))}): projected share {share.min():.1%} to "
                  f"{share.max():.1%}, median {share.median():.1%}; scoring {g[ev].median():.0f} s, training "
                  f"{t.median():.2f} s/step (medians)")
    keys = ["model", "seed"] + [c for c in ("p", "p0") if c in df]
    for key, g in df.groupby(keys, dropna=False):
        if sorted(g["budget_fraction"]) == [0.125, 0.25, 0.5, 1.0]:
            ev, tr = g["timings.eval_s"].sum(), g["timings.train_s"].sum()
            cpu = ""
            if {"timings.eval_cpu_s", "timings.train_cpu_s"} <= set(g) and g["timings.eval_cpu_s"].notna().all():
                ec, tc = g["timings.eval_cpu_s"].sum(), g["timings.train_cpu_s"].sum()
                cpu = f"; CPU seconds {ec / (tc + ec):.1%}"
            print(f"  lineage {key}: measured share {ev / (tr + ev):.1%} ({ev:.0f} s of {tr + ev:.0f} s){cpu}")


if __name__ == "__main__":
    main()

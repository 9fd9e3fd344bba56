"""Throughput of the ISA prior's log_prob and sample against torch.distributions.Normal (10 latents).

Run: python benchmarks/bench_lpnested.py [--batch 4096] [--threads 1]
Prints the time per call of each, side by side, and the ISA / Normal ratios.
"""
from __future__ import annotations

import argparse

import torch
import torch.utils.benchmark as tb

from isa_lib.lpnested import ISA


def _time(stmt: str, env: dict, min_run_time: float) -> float:
    """Median seconds per call (torch.utils.benchmark warms up and repeats)."""
    return tb.Timer(stmt=stmt, globals=env).blocked_autorange(min_run_time=min_run_time).median


def run(batch: int = 4096, min_run_time: float = 0.5, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    z = torch.randn(batch, 10)
    normal = torch.distributions.Normal(torch.zeros(10), torch.ones(10))
    layouts = {
        "ISA [4,3,3] (general path)": ISA(2.1, [4, 3, 3], [2.2, 1.9, 2.5]),
        "ISA 5x[2] (equal sizes)": ISA(2.1, [2] * 5, [2.2] * 5),
    }
    res = {}
    t_norm_lp = _time("normal.log_prob(z).sum(-1)", dict(normal=normal, z=z), min_run_time)
    t_norm_s = _time("normal.sample((batch,))", dict(normal=normal, batch=batch), min_run_time)
    print(f"batch {batch}, 10 latents, {threads} thread(s), float32; median time per call")
    print(f"{'prior':30s} {'log_prob':>12s} {'sample':>12s} {'lp ratio':>9s} {'smp ratio':>9s}")
    print(f"{'Normal(0, I)':30s} {t_norm_lp * 1e6:10.1f}us {t_norm_s * 1e6:10.1f}us {1.0:9.2f} {1.0:9.2f}")
    for name, d in layouts.items():
        t_lp = _time("d.log_prob(z)", dict(d=d, z=z), min_run_time)
        t_s = _time("d.sample((batch,))", dict(d=d, batch=batch), min_run_time)
        res[name] = dict(log_prob=t_lp, sample=t_s, log_prob_ratio=t_lp / t_norm_lp, sample_ratio=t_s / t_norm_s)
        print(f"{name:30s} {t_lp * 1e6:10.1f}us {t_s * 1e6:10.1f}us {t_lp / t_norm_lp:9.2f} {t_s / t_norm_s:9.2f}")
    # the learned-exponent case: log_prob plus backward into the exponents
    p0 = torch.tensor(2.1)
    ps = torch.full((5,), 2.0, requires_grad=True)
    d = ISA(p0, [2] * 5, ps)
    t_bw = _time("d.log_prob(z).sum().backward()", dict(d=d, z=z), min_run_time)
    zr = z.clone().requires_grad_(True)
    t_nbw = _time("normal.log_prob(zr).sum().backward()", dict(normal=normal, zr=zr), min_run_time)
    print(f"{'ISA 5x[2] log_prob+backward':30s} {t_bw * 1e6:10.1f}us {'':>12s} {t_bw / t_nbw:9.2f}"
          "   (vs Normal log_prob+backward w.r.t. z)")
    res["backward_ratio"] = t_bw / t_nbw
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--min-run-time", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    run(a.batch, a.min_run_time, a.threads)

"""GPU timing of the full Chen et al. MIG estimator and the Eq. 3 decomposition (isa_lib.metrics).

On CUDA: the full dSprites grid (737,280 images, 10 latents, synthetic posteriors as in
bench_metrics.py), n_samples=10,000 (Chen et al.'s count), float64 and float32, and a check that the
GPU and CPU agree on a small grid.  Budget: well under 3 minutes on one H100 (the float64 run is the
long one; --skip-float64 drops it).

    python benchmarks/gpu_metrics.py                 # cuda if available, else the reduced CPU run
    python benchmarks/gpu_metrics.py --cpu-small     # reduced size on the CPU (runs anywhere)
"""
import argparse
import time

import torch

from bench_metrics import DSPRITES, synthetic_posteriors  # same synthetic codes as the CPU benchmark
from isa_lib import metrics as M

SMALL = (1, 3, 6, 10, 8, 8)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(label, device, fn):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    el = time.perf_counter() - t
    print(f"{label}: {el:.2f} s", flush=True)
    return out, el


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-small", action="store_true", help="reduced grid and samples, on the CPU")
    ap.add_argument("--n-samples", type=int, default=None)
    ap.add_argument("--sample-chunk", type=int, default=None)
    ap.add_argument("--row-chunk", type=int, default=None)
    ap.add_argument("--skip-float64", action="store_true")
    a = ap.parse_args()
    cuda = torch.cuda.is_available() and not a.cpu_small
    device = "cuda" if cuda else "cpu"
    sizes = DSPRITES if cuda else SMALL
    n_samples = a.n_samples or (10000 if cuda else 300)
    sc = a.sample_chunk or (1024 if cuda else 256)
    rc = a.row_chunk or (16384 if cuda else 4096)
    if cuda:
        print("device:", torch.cuda.get_device_name(0))
    else:
        print("device: cpu (reduced size; use a CUDA machine for the full estimator)")
    mu, logvar = synthetic_posteriors(sizes)
    print(f"grid {sizes}: N={mu.shape[0]}, D={mu.shape[1]}, n_samples={n_samples}, chunks {sc} x {rc}")
    kw = dict(factors="dsprites", n_samples=n_samples, seed=0, sample_chunk=sc, row_chunk=rc, device=device)
    if cuda:   # warm-up: kernels, allocator
        M.mig_chen(mu[:4608], logvar[:4608], (1, 3, 6, 4, 8, 8), **{**kw, "n_samples": 100})
        torch.cuda.reset_peak_memory_stats()
    results = {}
    dtypes = [torch.float32] if a.skip_float64 else [torch.float32, torch.float64]
    for dt in dtypes:
        res, el = timed(f"mig_chen {str(dt)[6:]}", device, lambda: M.mig_chen(mu, logvar, sizes, dtype=dt, **kw))
        results[dt] = res
        print(f"  MIG = {res.mig:.5f}, per factor {[round(float(x), 4) for x in res.per_factor]}")
    if len(results) == 2:
        print(f"  |float32 - float64| = {abs(results[torch.float32].mig - results[torch.float64].mig):.2e}")
    prior = torch.distributions.Normal(torch.tensor(0.0, device=device, dtype=torch.float64),
                                       torch.tensor(1.0, device=device, dtype=torch.float64))
    dec, _ = timed("elbo_decomposition float64", device,
                   lambda: M.elbo_decomposition(mu, logvar, prior, n_samples=n_samples, seed=0,
                                                sample_chunk=sc, row_chunk=rc, device=device))
    print("  " + ", ".join(f"{k} = {v:.4f}" for k, v in dec.items() if isinstance(v, float)))
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        m2, l2 = synthetic_posteriors(SMALL)
        a_ = M.mig_chen(m2, l2, SMALL, factors="dsprites", n_samples=300, seed=1)
        b_ = M.mig_chen(m2, l2, SMALL, factors="dsprites", n_samples=300, seed=1, device="cuda")
        print(f"cpu vs cuda on {SMALL}: {a_.mig:.10f} vs {b_.mig:.10f} (diff {abs(a_.mig - b_.mig):.1e})")


if __name__ == "__main__":
    main()

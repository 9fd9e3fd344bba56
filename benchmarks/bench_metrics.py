"""CPU benchmark of the Chen et al. MIG estimator (isa_lib.metrics.mig_chen) on the full dSprites grid.

Synthetic posteriors for the 737,280 images of the grid (1, 3, 6, 40, 32, 32) with 10 latents: four
latents follow scale, orientation, posX, posY (plus noise), six are uninformative.  Prints the wall time
at the stated number of samples, the size of one streamed block and the peak resident memory.

    python benchmarks/bench_metrics.py                    # full grid, n_samples=1000
    python benchmarks/bench_metrics.py --n-samples 10000  # Chen et al.'s sample count (minutes)
    python benchmarks/bench_metrics.py --quick            # a 1/16 grid, seconds
"""
import argparse
import math
import resource
import time

import torch

from isa_lib import metrics as M

DSPRITES = (1, 3, 6, 40, 32, 32)


def synthetic_posteriors(sizes, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    cl = torch.as_tensor(M.grid_classes(sizes), dtype=torch.float32)
    n = cl.shape[0]
    mu = torch.randn(n, d, generator=g) * 0.8
    for j, k in enumerate((2, 3, 4, 5)):            # informative latents
        mu[:, j] = (cl[:, k] / max(sizes[k] - 1, 1) - 0.5) * 4 + 0.1 * torch.randn(n, generator=g)
    logvar = torch.full((n, d), math.log(0.1 ** 2))
    logvar[:, 4:] = 0.0                              # uninformative latents: prior-like posteriors
    return mu, logvar


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--sample-chunk", type=int, default=256)
    ap.add_argument("--row-chunk", type=int, default=4096)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--quick", action="store_true", help="grid (1, 3, 6, 10, 16, 16) instead of the full one")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    sizes = (1, 3, 6, 10, 16, 16) if a.quick else DSPRITES
    dtype = getattr(torch, a.dtype)
    mu, logvar = synthetic_posteriors(sizes)
    n, d = mu.shape
    item = torch.finfo(dtype).bits // 8
    block = d * a.sample_chunk * a.row_chunk * item
    pairs = n_pairs(sizes, a.n_samples)
    print(f"grid {sizes}: N={n}, D={d}, n_samples={a.n_samples}, dtype={a.dtype}, threads={torch.get_num_threads()}")
    print(f"streamed block: {d} x {a.sample_chunk} x {a.row_chunk} = {block / 2**20:.1f} MiB; "
          f"posteriors + samples: {3 * n * d * item / 2**20:.1f} MiB")
    t = time.perf_counter()
    res = M.mig_chen(mu, logvar, sizes, factors="dsprites", n_samples=a.n_samples, seed=0,
                     sample_chunk=a.sample_chunk, row_chunk=a.row_chunk, dtype=dtype)
    el = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"MIG = {res.mig:.4f}  per factor {[round(float(x), 4) for x in res.per_factor]}")
    print(f"time {el:.1f} s for {pairs:.3g} (sample, image, latent) log-densities "
          f"= {pairs / el / 1e9:.2f} G/s; peak RSS {rss:.0f} MiB")


def n_pairs(sizes, n_samples, d=10, factors=(2, 3, 4, 5)):
    n = math.prod(sizes)
    tot = min(n_samples, n) * n
    for k in factors:
        m = n // sizes[k]
        tot += sizes[k] * min(n_samples, m) * m
    return tot * d


if __name__ == "__main__":
    main()

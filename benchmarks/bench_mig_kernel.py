"""The inner kernel of Chen et al.'s MIG (paper Sec. 4), side by side: log (1/N sum_n q(z_s|x_n)) per latent.

Same input for every implementation: the synthetic posteriors of bench_metrics.py for the full dSprites grid
(N = 737,280) with 20 latents, one z per row drawn as mig_chen draws it, and a random subset of S = 100
samples (mig_chen uses 10,000) scored against all N posteriors.

  reference  the obvious loop, written here: for each chunk of samples the (chunk, N, D) log-densities in
             float64, then torch.logsumexp over all N (chunks of ~2^20 numbers, its fastest on the 2-core
             development machine; at the full N one sample's (N, D) block is already 14.7 M numbers);
  numpy64    a straightforward numpy float64 implementation: blocked (b, M, D) arrays of log-densities and
             scipy.special.logsumexp over M (the baseline of issue 22);
  gemm64     the library's kernel before issue 14 (a GEMM on [z^2, z, 1], then a separate exp pass), float64;
  new64      isa_lib.metrics._mixture._log_mixture (z - mu directly, fixed-shift streamed log-sum-exp), float64;
  new32      the same in float32;
  compiled32 (--compile) the new kernel's block as one torch.compile'd function, float32;
  native32   the fused C kernel (isa_lib/_mig_kernel.c, mig_chen's backend="native"), float32;
  native64   the same kernel with float64 samples and means (z - mu in float64, the rest in float32): what a
             float32 MIG falls back to where float32 cannot resolve the posteriors;
  exp2 torch a bare torch.exp2 (+ sum) over as many float32 elements as the kernels evaluate, and
  exp2 C     the C kernel's polynomial exp2 (+ sum) over as many elements: what exponentiating alone costs.

Prints evals/s (one eval = one (sample, image, latent) log-density), the ratio to the reference and to the
torch float32 path, and the largest difference from the reference in nats, at each thread count of --threads
(interleaved rounds; the fastest round counts). The load average is printed before and after each part.

    python benchmarks/bench_mig_kernel.py                        # full N, S = 100, 1 thread (minutes)
    python benchmarks/bench_mig_kernel.py --grid 1,3,6,10,16,16 --n-samples 200 --threads 1,2  # issue 22
    python benchmarks/bench_mig_kernel.py --skip-kernels --full --threads 2 --full-backends native,torch
    python benchmarks/bench_mig_kernel.py --grid 1,3,6,40,8,8    # N = 46,080, for a quick look
    python benchmarks/bench_mig_kernel.py --compile              # also the torch.compile'd block
    python benchmarks/bench_mig_kernel.py --full                 # + mig_chen on the full grid, S = 10,000
    python benchmarks/bench_mig_kernel.py --full --full-grid 1,3,6,40,16,16   # a quarter of N, extrapolated
    python benchmarks/bench_mig_kernel.py --device cuda --n-samples 2000 --full --full-dtypes float32,float64
"""
import argparse
import ctypes
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_metrics import DSPRITES, n_pairs, synthetic_posteriors  # noqa: E402  (same codes as bench_metrics)
from isa_lib import metrics as M  # noqa: E402
from isa_lib.metrics._mixture import (LOG_2PI, NATIVE_BLOCK, _draw_z, _floor, _log_mixture, _mig_kernel,  # noqa: E402
                                     _subset)
from isa_lib import native  # noqa: E402

FACTORS = (2, 3, 4, 5)      # scale, orientation, posX, posY: the MIG's factors on dSprites


def reference_log_mixture(z, mu, logvar, budget=2**20):
    """log (1/N sum_n N(z_sj; mu_nj, exp(logvar_nj))) per latent j, (D, S), float64: the obvious loop."""
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    n, d = mu.shape
    prec = torch.exp(-logvar)
    chunk = max(1, budget // (n * d))          # (chunk, N, D) float64 numbers at a time
    out = []
    for s0 in range(0, len(z), chunk):
        x = -0.5 * (LOG_2PI + logvar + (z[s0:s0 + chunk, None, :] - mu) ** 2 * prec)
        out.append(torch.logsumexp(x, dim=1))
    return torch.cat(out).T - math.log(n)


def numpy_log_mixture(z, mu, logvar, budget=2**20):
    """The same in plain numpy float64: blocked (b, N, D) log-densities, scipy.special.logsumexp over N."""
    import numpy as np
    from scipy.special import logsumexp
    z, mu, logvar = (t.double().cpu().numpy() for t in (z, mu, logvar))
    n, d = mu.shape
    prec = np.exp(-logvar)
    chunk = max(1, budget // (n * d))
    out = [logsumexp(-0.5 * (LOG_2PI + logvar + (z[s0:s0 + chunk, None, :] - mu) ** 2 * prec), axis=1)
           for s0 in range(0, len(z), chunk)]
    return torch.from_numpy(np.concatenate(out).T - math.log(n))


def exp2_torch(x, evals):
    """torch.exp2 and a sum over ``evals`` elements: ``x`` (a float32 buffer) again and again."""
    tot, done, buf = 0.0, 0, torch.empty_like(x)
    while done < evals:
        k = min(len(x), evals - done)
        tot += float(torch.exp2(x[:k], out=buf[:k]).sum())
        done += k
    return torch.tensor([tot])


def exp2_native(x, evals, floor):
    """The C kernel's polynomial exp2 and a sum over ``evals`` elements of ``x``."""
    lib, tot, done = _mig_kernel(), 0.0, 0
    while done < evals:
        k = min(len(x), evals - done)
        tot += lib.exp2_sum(k, ctypes.c_void_p(x.data_ptr()), floor, NATIVE_BLOCK, torch.get_num_threads())
        done += k
    return torch.tensor([tot])


def gemm_log_mixture(z, mu, logvar, sample_chunk=256, row_chunk=4096):
    """The kernel before issue 14, per latent: the log-density of a block as a GEMM of [z^2, z, 1] (centred)
    with [-w/2, w mu, -(w mu^2 + logvar + log 2pi)/2], then amax, exp (clamped at -80) and sum passes."""
    s_n, d = z.shape
    m_n = mu.shape[0]
    ref = mu.mean(0)
    zc = z - ref
    a = torch.stack([zc * zc, zc, torch.ones_like(zc)], -1).permute(1, 0, 2).contiguous()       # (D, S, 3)
    out = torch.full((d, s_n), -math.inf, dtype=z.dtype, device=z.device)
    for r0 in range(0, m_n, row_chunk):
        muc, lv = mu[r0:r0 + row_chunk] - ref, logvar[r0:r0 + row_chunk]
        w = torch.exp(-lv)
        b = torch.stack([-0.5 * w, w * muc, -0.5 * (w * muc * muc + lv + LOG_2PI)], -1).permute(1, 2, 0)
        b = b.contiguous()                                                                      # (D, 3, Mc)
        for s0 in range(0, s_n, sample_chunk):
            blk = torch.bmm(a[:, s0:s0 + sample_chunk], b)
            mx = blk.amax(-1, keepdim=True)
            blk.sub_(mx).clamp_(min=-80.0).exp_()
            lse = mx.squeeze(-1) + blk.sum(-1).log()
            out[:, s0:s0 + sample_chunk] = torch.logaddexp(out[:, s0:s0 + sample_chunk], lse)
    return out - math.log(m_n)


def _block(zt, mt, at, ct, floor: float):
    """sum_n 2^max(c_n - ((z_s - mu_n) a_n)^2, floor) for a (G, s) x (G, m) block: the new kernel's block."""
    t = ct[:, None, :] - ((zt[:, :, None] - mt[:, None, :]) * at[:, None, :]) ** 2
    return torch.exp2(torch.clamp(t, min=floor)).sum(-1)


def compiled_log_mixture(block_fn, z, mu, logvar, sample_chunk=256, row_chunk=4096):
    """The new kernel per latent with its block computed by ``block_fn`` (a torch.compile'd :func:`_block`);
    no redo of samples far from every posterior (the synthetic codes have none)."""
    s_n, d = z.shape
    zt, mt = z.T.contiguous(), mu.T.contiguous()
    at = (torch.exp(-0.5 * logvar) * math.sqrt(0.5 / math.log(2))).T.contiguous()      # base 2, as the library
    c = (-0.5 / math.log(2) * (logvar + LOG_2PI)).T
    top = c.amax(1, keepdim=True)
    ct = (c - top).contiguous()
    acc = torch.zeros(d, s_n, dtype=torch.float64, device=z.device)
    sc = max(1, sample_chunk // d)
    floor = _floor(z.dtype)
    for r0 in range(0, mu.shape[0], row_chunk):
        for s0 in range(0, s_n, sc):
            acc[:, s0:s0 + sc] += block_fn(zt[:, s0:s0 + sc], mt[:, r0:r0 + row_chunk], at[:, r0:r0 + row_chunk],
                                           ct[:, r0:r0 + row_chunk], floor)
    return (acc.log2() + top.double()) * math.log(2) - math.log(mu.shape[0])


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def parse_grid(text):
    sizes = tuple(int(x) for x in text.split(","))
    if len(sizes) != 6:
        raise argparse.ArgumentTypeError("a dSprites grid has 6 factor sizes")
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=parse_grid, default=DSPRITES, help="factor sizes of the kernel comparison")
    ap.add_argument("--n-samples", type=int, default=100, help="S of the kernel comparison")
    ap.add_argument("--latents", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1", help="thread counts (torch.set_num_threads), comma-separated")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sample-chunk", type=int, default=256)
    ap.add_argument("--row-chunk", type=int, default=4096)
    ap.add_argument("--skip-reference", action="store_true", help="leave out the slow references")
    ap.add_argument("--skip-kernels", action="store_true", help="only the --full run")
    ap.add_argument("--skip-old", action="store_true", help="leave out the GEMM and float64 torch kernels")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd block (float32)")
    ap.add_argument("--full", action="store_true", help="also time mig_chen on --full-grid, S = 10,000")
    ap.add_argument("--full-grid", type=parse_grid, default=DSPRITES)
    ap.add_argument("--full-dtypes", default="float32", help="comma-separated dtypes of the --full run")
    ap.add_argument("--full-backends", default="auto", help="comma-separated MIG backends of the --full run")
    a = ap.parse_args(argv)
    threads = [int(t) for t in str(a.threads).split(",")]
    dev = torch.device(a.device)
    sc, rc = a.sample_chunk, a.row_chunk
    has_native = dev.type == "cpu" and native.available()
    load = lambda: "load %.2f %.2f %.2f" % os.getloadavg()  # noqa: E731
    out = {"rates": {}, "diffs": {}}

    if not a.skip_kernels:
        mu, lv = synthetic_posteriors(a.grid, d=a.latents)
        mu, lv = mu.double().to(dev), lv.double().to(dev)
        gen = torch.Generator().manual_seed(0)
        z = _draw_z(mu, lv, gen)
        zs = z[_subset(len(mu), a.n_samples, gen).to(dev)]
        n, d = mu.shape
        evals = len(zs) * n * d
        groups = [[j] for j in range(d)]
        f32 = [t.float() for t in (zs, mu, lv)]
        floor = _floor(torch.float32)
        # as many exponents as the kernels evaluate, spread like theirs (most terms far below the maximum)
        xbuf = -torch.rand(1 << 20, generator=torch.Generator().manual_seed(1)) * 150
        cases = {}
        if not a.skip_reference:
            cases["reference float64"] = lambda: reference_log_mixture(zs, mu, lv)
            cases["numpy float64"] = lambda: numpy_log_mixture(zs, mu, lv)
        if not a.skip_old:
            cases["gemm64 (before)"] = lambda: gemm_log_mixture(zs, mu, lv, sc, rc)
            cases["torch float64"] = lambda: _log_mixture(zs, mu, lv, groups, sc, rc)
        cases["torch float32"] = lambda: _log_mixture(*f32, groups, sc, rc)
        if has_native:
            cases["native float32"] = lambda: _log_mixture(*f32, groups, sc, rc, backend="native")
            # the fallback of a float32 MIG whose posteriors float32 cannot resolve (z - mu in float64)
            cases["native float64"] = lambda: _log_mixture(zs, mu, lv, groups, sc, rc, backend="native")
        if a.compile:
            t = time.perf_counter()
            try:
                block_c = torch.compile(_block)
                compiled_log_mixture(block_c, f32[0][:sc], *[x[:2 * rc] for x in f32[1:]], sc, rc)
                compiled_log_mixture(block_c, *f32, sc, rc)
                print(f"torch.compile: {time.perf_counter() - t:.1f} s to compile (first calls)")
                cases["compiled float32"] = lambda: compiled_log_mixture(block_c, *f32, sc, rc)
            except Exception as err:  # noqa: BLE001 - a CPU without a working compiler: report, go on
                print(f"torch.compile failed after {time.perf_counter() - t:.1f} s: {type(err).__name__}: {err}")
        bare = {"exp2 torch (bare)": lambda: exp2_torch(xbuf.to(dev), evals)}
        if has_native:
            bare["exp2 C poly (bare)"] = lambda: exp2_native(xbuf, evals, floor)
        print(f"torch {torch.__version__}, device {dev}; kernel input: grid {a.grid}, N={n}, D={d}, S={len(zs)}, "
              f"chunks {sc} x {rc}: {evals:.3g} evals")
        for nt in threads:
            torch.set_num_threads(nt)
            print(f"\n{nt} thread(s), {load()}")
            best, results = {k: math.inf for k in [*cases, *bare]}, {}
            for _ in range(a.rounds):           # interleaved, so that a change of machine load hits every case
                for name, fn in [*cases.items(), *bare.items()]:
                    results[name], el = timed(fn, dev)
                    best[name] = min(best[name], el)
            ref_name = next(iter(cases))
            ref = results[ref_name].double()
            print(f"{'kernel':20s} {'s':>8s} {'M evals/s':>10s} {'x ' + ref_name.split()[0]:>12s} "
                  f"{'x torch32':>10s} {'max |diff| nats':>16s}")
            for name in best:
                diff = float((results[name].double() - ref).abs().max()) if name in cases else math.nan
                out["rates"][(nt, name)] = evals / best[name]
                out["diffs"][(nt, name)] = diff
                print(f"{name:20s} {best[name]:8.2f} {evals / best[name] / 1e6:10.0f} "
                      f"{best[ref_name] / best[name]:12.1f} {best['torch float32'] / best[name]:10.2f} "
                      f"{diff:16.2e}")
            print(f"  ({load()})")

    if a.full:
        sizes = a.full_grid
        fmu, flv = synthetic_posteriors(sizes, d=a.latents)
        total = n_pairs(sizes, 10000, d=a.latents, factors=FACTORS)
        full = n_pairs(DSPRITES, 10000, d=a.latents, factors=FACTORS)
        torch.set_num_threads(threads[-1])
        print(f"\nmig_chen on grid {sizes}: N={fmu.shape[0]}, D={a.latents}, S=10,000, 4 factors: {total:.3g} evals "
              f"(the full dSprites grid: {full:.3g}); {threads[-1]} thread(s)")
        for dt in a.full_dtypes.split(","):
            for be in a.full_backends.split(","):
                if be == "native" and not has_native:
                    continue
                before = load()
                res, el = timed(lambda: M.mig_chen(fmu, flv, sizes, factors=FACTORS, n_samples=10000, seed=0,
                                                   sample_chunk=sc, row_chunk=rc, device=dev,
                                                   dtype=getattr(torch, dt), backend=be), dev)
                rate = total / el
                out["full", dt, res.info["backend"]] = el
                print(f"  {dt} {res.info['backend']}: {el:.1f} s = {rate / 1e6:.0f} M evals/s, MIG {res.mig:.6f}; "
                      f"the full grid at this rate: {full / rate / 60:.2f} min ({before} before, {load()} after)")
    return out


if __name__ == "__main__":
    main()

"""Time the built-in dataset generators (issue 5 target: full dSprites <= 60 s on 2 cores).

Usage:  python benchmarks/bench_datasets.py [--full-3d] [--ids-faces N] [--ids-cars N]

Without ISA_VAE_CACHE set, a temporary cache folder is used and deleted at the
end (the full dSprites cache is 3 GB).  Faces and cars are timed on a few
identities and extrapolated unless --full-3d is given.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import torch


def peak_rss_mb() -> float:
    # includes pages of memory-mapped cache files that were touched
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    print(f"{label:<48s} {dt:8.1f} s   peak RSS {peak_rss_mb():7.0f} MB", flush=True)
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full-3d", action="store_true", help="build the full faces and cars sets")
    ap.add_argument("--ids-faces", type=int, default=2)
    ap.add_argument("--ids-cars", type=int, default=6)
    args = ap.parse_args()

    own = "ISA_VAE_CACHE" not in os.environ
    if own:
        os.environ["ISA_VAE_CACHE"] = tempfile.mkdtemp(prefix="isa_cache_bench_")
    from isa_lib import datasets as D

    print(f"cache {D.cache_dir()}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    try:
        ds, _ = timed("dsprites full build (737,280 images)", lambda: D.load("dsprites"))
        size_gb = ds.images.numel() / 1e9
        del ds
        D._base._VERIFIED.clear()
        timed(f"dsprites reload + sha256 check ({size_gb:.1f} GB)", lambda: D.load("dsprites"))
        timed("dsprites reload, no check", lambda: D.load("dsprites", verify=False))

        for name, n_ids, full in (("faces3d", args.ids_faces, 50), ("cars3d", args.ids_cars, 183)):
            if args.full_3d:
                timed(f"{name} full build", lambda: D.load(name))
                continue
            sub = {"identity": list(range(n_ids))}
            ds, dt = timed(f"{name} build, {n_ids} identities", lambda: D.load(name, subgrid=sub))
            print(f"{'':<4s}{len(ds)} images -> {len(ds) / dt:.0f} images/s; "
                  f"full {name} ({full} identities) extrapolated: {dt * full / n_ids:.0f} s")
        x = D.load("dsprites", verify=False)
        sampler = D.RandomBatchSampler(x, 256, seed=0)
        _, dt = timed(f"64 random batches of 256 ({sampler.device})",
                      lambda: [sampler.sample() for _ in range(64)])
        print(f"{'':<4s}{64 * 256 / dt:.0f} images/s")
    finally:
        if own:
            shutil.rmtree(os.environ["ISA_VAE_CACHE"], ignore_errors=True)


if __name__ == "__main__":
    main()

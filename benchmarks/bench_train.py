"""Fused K-model training (isa_lib.train.train_many) against K separate runs (train), side by side.

Prints seconds per optimiser step for both and their ratio. Defaults are a reduced MLP on 32 x 32 images so
it finishes in about a minute on a 2-core CPU; --paper uses the App. A.4 sizes (64 x 64, 1200 hidden units,
batch 2048), which is what a GPU run should measure:

    python benchmarks/bench_train.py                  # CPU, reduced
    python benchmarks/bench_train.py --paper --device cuda --k 10
"""
import argparse
import time

import torch

from isa_lib.train import TrainConfig, build_vae, train, train_many


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=4, help="number of fused models (seeds)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--paper", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--objective", default="beta_tcvae")
    args = ap.parse_args()

    size = 64 if args.paper else 32
    net = None if args.paper else {"hidden": 256, "image_size": size}
    batch = 2048 if args.paper else 256
    images = (torch.rand(batch * args.steps, size, size, generator=torch.Generator().manual_seed(0)) > 0.7).to(torch.uint8)
    prior = dict(prior="isa", sizes=[2] * 5, p0=2.1, exponents=2.2)
    cfgs = [TrainConfig(objective=args.objective, beta=2.0, seed=s, batch_size=batch, epochs=1, device=args.device,
                        log_every=10**9) for s in range(args.k)]

    def fresh():
        return [build_vae("mlp", 10, seed=c.seed, net_size=net, **prior) for c in cfgs]

    def timed(fn):
        """Seconds per step of fn(models), the K models built (and moved) before the clock starts: building
        paper-size models takes about as long as 20 training steps on a GPU and is not what is compared."""
        models = fresh()
        if args.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(models)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / args.steps

    # warm-up (allocations, kernels) on one step each
    train_many([build_vae("mlp", 10, seed=0, net_size=net, **prior)], images[:batch], cfgs[:1], progress=False)
    separate = timed(lambda models: [train(m, images, c, progress=False) for m, c in zip(models, cfgs)])
    fused = timed(lambda models: train_many(models, images, cfgs, progress=False))
    # The finite-value watch read back at every step (one host-device sync per step; the default on a CPU)
    # against once per log step (the default on a GPU): what deferring the check buys.
    synced = timed(lambda models: train_many(models, images, cfgs, progress=False, check_every=1))
    deferred = timed(lambda models: train_many(models, images, cfgs, progress=False, check_every=args.steps))
    print(f"device={args.device} K={args.k} batch={batch} image={size}x{size} objective={args.objective}")
    print(f"separate: {separate:.4f} s/step for K models   fused: {fused:.4f} s/step   "
          f"speed-up separate/fused = {separate / fused:.2f}x")
    print(f"fused, finite check read every step: {synced:.4f} s/step   read once per {args.steps} steps: "
          f"{deferred:.4f} s/step   ratio = {synced / deferred:.2f}x")


if __name__ == "__main__":
    main()

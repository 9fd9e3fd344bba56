"""How close training comes to the machine's matmul rate, and what the ISA prior and beta-TCVAE cost.

In one process, interleaved: a 2048^3 float32 matmul (the machine's dense rate on this device and thread
count) and training steps of the paper's dSprites MLP VAE (App. A.4: 64 x 64 images, 1200 hidden units,
20 latents) at the paper's batch of 2048 (Table 1), each through isa_lib.train.train itself (data order,
uint8 -> float per batch, reparameterisation, the objective, backward, the finite-value watch, Adam):

  normal          beta-VAE objective, N(0, I) prior
  ISA fixed       beta-VAE objective, ISA prior l0 = 5 subspaces of 4, p0 = 2.1, p_i = 2.2 (Sec. 4)
  ISA learned     the same with the p_i learned from 2.0 (App. A.2)
  beta-TCVAE      beta-TCVAE (Eq. 3) with minibatch-stratified sampling, N(0, I) prior, its aggregate
                  posterior held as (M, M, d) tensors (aggregate="dense", the reference)
  TC streamed     the same, the aggregate posterior streamed in blocks of rows (aggregate="streamed")
  TC compiled     the same, the block loops fused by torch.compile (aggregate="compiled"); its compilation
                  (seconds, once per process) happens in the warm-up step
  TC native       the same in one C pass forward and one backward (aggregate="native", CPU only)

Each configuration's CPU time (this process's, all its threads) is printed beside its wall time: on a shared
machine it is the steadier measure of the overheads (on a GPU it is only the host's time). A step is counted
as 6 x parameters x batch FLOP (2 forward, 4 backward; the first layer's input gradient,
which autograd skips, is included, so the fractions are slight overestimates). Prints each configuration's
FLOP rate as a fraction of the matmul's, the ISA prior's overhead over the normal prior and
beta-TCVAE's, and (``--breakdown``) where each step's time goes. The fastest of the interleaved
rounds counts.

    python benchmarks/bench_roofline.py --quick                 # small batch and net: seconds, checks it runs
    python benchmarks/bench_roofline.py --steps 2 --rounds 2    # the paper's sizes (minutes on a CPU)
    python benchmarks/bench_roofline.py --device cuda --steps 20 --rounds 3 --breakdown
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isa_lib.train import TrainConfig, _batch, build_vae, image_max_value, objective_on, train  # noqa: E402

ISA = dict(prior="isa", sizes=[4] * 5, p0=2.1)
CONFIGS = {
    "normal": ("beta_vae", dict(prior="normal"), {}),
    "ISA fixed": ("beta_vae", dict(ISA, exponents=2.2), {}),
    "ISA learned": ("beta_vae", dict(ISA, exponents=2.0, learn=True), {}),
    "beta-TCVAE": ("beta_tcvae", dict(prior="normal"), {}),
    "TC streamed": ("beta_tcvae", dict(prior="normal"), dict(aggregate="streamed")),
    "TC compiled": ("beta_tcvae", dict(prior="normal"), dict(aggregate="compiled")),
    "TC native": ("beta_tcvae", dict(prior="normal"), dict(aggregate="native")),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def matmul_rate(device, n=2048, reps=3) -> float:
    """FLOP/s of an n^3 float32 matmul (2 n^3 FLOP), the fastest of ``reps``."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device) for _ in range(2))
    out = torch.empty(n, n, device=device)
    torch.matmul(a, b, out=out)                 # warm-up
    return 2 * n ** 3 / min(timed(lambda: torch.matmul(a, b, out=out), device) for _ in range(reps))


def breakdown(model, images, cfg, device, steps):
    """Seconds per phase of a step, with train()'s own pieces: data (index + uint8 -> float), the networks'
    forward pass, the objective (with the prior's log-density), backward, Adam."""
    gen = torch.Generator(device).manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    max_value, order = image_max_value(images), None
    dtype = next(model.parameters()).dtype
    t = dict(data=0.0, networks=0.0, objective=0.0, backward=0.0, adam=0.0)
    for step in range(steps + 1):
        phases = {}
        x, order = _run(phases, "data", device, lambda: _batch(images, order, step, cfg, gen, max_value, dtype))
        out = _run(phases, "networks", device, lambda: model(x, gen))
        loss, _ = _run(phases, "objective", device, lambda: objective_on(out, model.prior(), cfg, len(images)))
        opt.zero_grad(set_to_none=True)
        _run(phases, "backward", device, loss.backward)
        _run(phases, "adam", device, opt.step)
        if step:                                  # the first step is the warm-up
            for k, v in phases.items():
                t[k] += v / steps
    return t


def _run(phases, name, device, fn):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    phases[name] = time.perf_counter() - t
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per configuration and round")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest counts")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="batch 128, 256 hidden units, 32 x 32 images")
    ap.add_argument("--breakdown", action="store_true", help="also split a step of each configuration into phases")
    ap.add_argument("--configs", default=",".join(k for k in CONFIGS if k != "TC streamed"),
                    help=f"comma-separated subset of {list(CONFIGS)}")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    batch, net, size = (128, {"hidden": 256, "image_size": 32}, 32) if a.quick else (2048, None, 64)
    n_mm = 512 if a.quick else 2048
    # enough images for warm-up and timed steps in one epoch (train() reshuffles at each epoch start)
    images = (torch.rand(batch * (a.steps + 1), size, size, generator=torch.Generator().manual_seed(0)) > 0.7)
    images = images.to(torch.uint8).to(device)

    chosen = [k.strip() for k in a.configs.split(",")]
    unknown = sorted(set(chosen) - set(CONFIGS))
    if unknown or "normal" not in chosen:
        ap.error(f"--configs: unknown {unknown}, or 'normal' (the baseline) missing")
    models, cfgs = {}, {}
    for name in chosen:
        objective, prior, extra = CONFIGS[name]
        models[name] = build_vae("mlp", 20, seed=0, net_size=net, **prior).to(device)
        try:
            cfgs[name] = TrainConfig(objective=objective, batch_size=batch, epochs=1, device=str(device),
                                     log_every=10**9, **extra)
            train(models[name], images, cfgs[name], progress=False, max_steps=1)      # warm-up (and compilation)
        except Exception as err:   # e.g. torch.compile without a C++ compiler or Triton: report, measure the rest
            if name == "normal":
                raise
            print(f"{name}: left out, its warm-up step failed: {type(err).__name__}: {str(err).splitlines()[0]}")
            models.pop(name)
            cfgs.pop(name, None)
    chosen = [k for k in chosen if k in models]
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}

    best = {k: float("inf") for k in chosen}
    best_cpu = dict(best)    # CPU seconds of this process: less sensitive than wall time to other processes
    mm = 0.0
    for _ in range(a.rounds):                   # interleaved, so that a change of machine load hits every case
        mm = max(mm, matmul_rate(device, n_mm))
        for name in chosen:
            c0 = time.process_time()
            s = timed(lambda: train(models[name], images, cfgs[name], progress=False, max_steps=a.steps), device)
            best[name] = min(best[name], s / a.steps)
            best_cpu[name] = min(best_cpu[name], (time.process_time() - c0) / a.steps)
    mm = max(mm, matmul_rate(device, n_mm))

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s); batch {batch}, "
          f"{size} x {size} images, {params['normal']:,} parameters; {a.steps} steps x {a.rounds} rounds")
    print(f"matmul {n_mm}^3 float32: {mm / 1e9:.1f} GFLOP/s")
    print(f"{'configuration':14s} {'s/step':>8s} {'GFLOP/s':>8s} {'of matmul':>10s} {'img/s':>8s} {'CPU s/step':>10s}")
    for name in chosen:
        rate = 6 * params[name] * batch / best[name]
        print(f"{name:14s} {best[name]:8.3f} {rate / 1e9:8.1f} {rate / mm:10.1%} {batch / best[name]:8.0f} "
              f"{best_cpu[name]:10.3f}")
    for name in [k for k in chosen if k != "normal"]:
        print(f"overhead of {name} over the normal prior: {best[name] / best['normal'] - 1:+.1%} "
              f"(CPU time: {best_cpu[name] / best_cpu['normal'] - 1:+.1%})")
    if a.breakdown:
        for name in chosen:
            t = breakdown(models[name], images, cfgs[name], device, a.steps)
            tot = sum(t.values())
            print(f"{name} step by phase: " + ", ".join(f"{k} {v:.3f} s ({v / tot:.0%})" for k, v in t.items()))


if __name__ == "__main__":
    main()

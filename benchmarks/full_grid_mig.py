"""Chen et al.'s MIG on the full dSprites grid with S = 10,000 samples, for a model trained at the `large` scale.

The paper scores every model on all 737,280 images with 10,000 samples per entropy (Sec. 4); the CPU studies
score a sub-grid with fewer samples because the old kernel needed hours for this. This script trains one
`large` run (or loads its saved weights), encodes the whole grid (generator version 2, the data of `large`),
and times ``mig_chen`` at S = 10,000 in float32 (and, on request, in the float64 reference), writing the
numbers, the times and the machine's load to a JSON file.

    .venv/bin/python benchmarks/full_grid_mig.py --out results/full_grid_mig.json
    .venv/bin/python benchmarks/full_grid_mig.py --dtypes float32 float64 --state /tmp/large_beta_vae_s0.pt
    .venv/bin/python benchmarks/full_grid_mig.py --smoke --out /tmp/smoke.json      # tiny, for the tests
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    import dataclasses

    import torch
    from isa_lib import datasets, threads
    from isa_lib.experiments import build_model, config_for, run_one, versions
    from isa_lib.metrics import encode_dataset, mig_chen

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="beta_vae")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--state", default=None, help="model weights: loaded if the file exists, else saved there")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: isa_lib.threads)")
    ap.add_argument("--out", default=str(ROOT / "results" / "full_grid_mig.json"))
    ap.add_argument("--smoke", action="store_true", help="small scale and a small sub-grid, for the tests")
    a = ap.parse_args(argv)
    # training and encoding on the threads a run uses (their numbers depend on the count), the MIG's fixed-order
    # sums on the idle cores
    train_threads = threads.choose(requested=a.threads)
    torch.set_num_threads(train_threads)
    load_before = os.getloadavg()

    if a.smoke:
        c = config_for("small", model=a.model, seed=a.seed, epochs=1.0)
        grid = dict(c.subgrid_dict())
    else:
        c = config_for("large", model=a.model, seed=a.seed)
        grid = None                       # every image of dSprites
    t = time.perf_counter()
    if a.state and Path(a.state).exists():
        model = build_model(c)
        model.load_state_dict(torch.load(a.state, weights_only=True))
        trained = {"loaded": a.state}
    else:
        metrics, model, _ = run_one(c, return_model=True)
        trained = {"train_s": time.perf_counter() - t, "mig_subgrid": metrics["mig"],
                   "mig_samples_subgrid": c.mig_samples, "reconstruction": metrics["reconstruction"]}
        if a.state:
            torch.save(model.state_dict(), a.state)
    model.eval()

    t = time.perf_counter()
    data = datasets.load("dsprites", subgrid=grid, version=c.data_version or datasets.generator_version("dsprites"))
    if a.smoke:  # the small scale's networks see reduced images
        from isa_lib.experiments.run import _reduce_images
        data = _reduce_images(data, c.image_size)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        mu, lv = encode_dataset(model.encoder, data, batch_size=2048)
    encode_s = time.perf_counter() - t
    n_threads = threads.idle_cores(a.threads)
    torch.set_num_threads(n_threads)
    scores = {}
    for name in a.dtypes:
        t = time.perf_counter()
        res = mig_chen(mu, lv, data.factor_sizes, factors="dsprites", factor_names=data.factor_names,
                       n_samples=a.n_samples, seed=0, dtype=getattr(torch, name), progress=not a.smoke)
        scores[name] = {"mig": res.mig, "seconds": time.perf_counter() - t,
                        "mig_per_factor": dict(zip([data.factor_names[k] for k in res.factors],
                                                   [float(v) for v in res.per_factor]))}
        print(f"{name}: MIG {res.mig:.4f} in {scores[name]['seconds']:.1f} s "
              f"({len(data):,} images, S = {a.n_samples:,})", flush=True)
    out = {"config": dataclasses.asdict(c), "model": a.model, "seed": a.seed, "n_images": len(data),
           "n_samples": a.n_samples, "factor_sizes": list(data.factor_sizes), "trained": trained,
           "data_s": load_s, "encode_s": encode_s, "mig": scores, "threads": n_threads, "train_threads": train_threads,
           "load_before": load_before, "load_after": os.getloadavg(), "versions": versions()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

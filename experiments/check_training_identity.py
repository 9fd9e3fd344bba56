"""Does this checkout train and score the budget study's models to the same numbers as another revision?

The budget study extends each run from its checkpoint through four fractions of the budget, across sittings,
so the code that continues a run must give bit-identical numbers to the code that started it. This script
trains and scores the study's three arms (beta-VAE, ISA-VAE with p = 2.2 and p = 4; seed 3) at a tiny size
with this checkout and with REV (checked out into a temporary git worktree), one thread each, and compares
the MIG, the reconstruction term and the last logged losses digit for digit.

    python experiments/check_training_identity.py --against study-budget     # the branch the study runs from
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, torch
from isa_lib.experiments.config import RunConfig
from isa_lib.experiments.run import run_group
torch.set_num_threads(1)
rows = []
for model, p in (("beta_vae", None), ("isa_vae", 2.2), ("isa_vae", 4.0)):
    kw = dict(dataset="dsprites", model=model, epochs=4.0, batch_size=64, latent_dim=20, layout=(4,) * 5,
              hidden=64, image_size=64, mig_samples=50, seed=3,
              subgrid={"shape": [0, 1, 2], "scale": [0, 5], "orientation": [0, 10, 20],
                       "posX": [0, 10, 20, 31], "posY": [0, 15, 31]})
    if p is not None:
        kw["p"] = p
    c = RunConfig(**kw)
    (o,) = run_group([c])
    m = o["metrics"]
    rows.append({"arm": f"{model} p={p}", "hash": c.config_hash(), "status": o["status"], "mig": repr(m["mig"]),
                 "reconstruction": repr(m["reconstruction"]), "last": repr(m["history"][-1])})
print("RESULT " + json.dumps(rows))
"""


def run_at(path: Path) -> list:
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=tempfile.gettempdir(), env=env, capture_output=True,
                          text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the run at {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="a git revision (branch, tag or commit)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "rev"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(other), a.against],
                       check=True)
        try:
            theirs = run_at(other)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    ours = run_at(ROOT)
    same = True
    for o, t in zip(ours, theirs):
        for key in o:
            if o[key] != t[key]:
                same = False
                print(f"{o['arm']}: {key} differs: here {o[key]}, at {a.against} {t[key]}")
    print("IDENTICAL: the study can continue from this checkout" if same else
          f"DIFFERENT: continue the study from {a.against}, not from this checkout")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

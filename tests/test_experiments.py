"""The experiment runner (isa_lib.experiments): config hashing and validation, grids, the SQLite ledger,
local and Ray sweeps, resumption after SIGKILL, failure recording and export."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isa_lib import experiments as E
from isa_lib.experiments import GridError, Ledger, RunConfig, expand_grid, sweep
from isa_lib.experiments.sweeps import assign_fusion

ROOT = Path(__file__).resolve().parents[1]

# A tiny dSprites sub-grid (2 x 2 x 2 x 4 x 4 = 128 images, every scored factor varying), a 32-unit MLP
# on 16 x 16 images and a MIG on 64 samples: a run takes a fraction of a second.
TINY_SUBGRID = {"shape": [0, 1], "scale": [0, 5], "orientation": [0, 10], "posX": [0, 10, 20, 31],
                "posY": [0, 10, 20, 31]}
TINY = dict(dataset="dsprites", epochs=2.0, batch_size=32, lr=1e-3, latent_dim=4, layout=(2, 2), p0=2.1, p=2.2,
            hidden=32, image_size=16, subgrid=TINY_SUBGRID, mig_samples=64)


def tiny(**kw) -> RunConfig:
    return RunConfig(**{**TINY, **kw})


def tiny_grid(**kw) -> dict:
    return {"scale": "small", "models": ["beta_vae", "isa_vae"], "betas": [1.0, 2.0], "seeds": 2,
            **{k: v for k, v in TINY.items()}, **kw}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ISA_VAE_CACHE", str(d))
    return d


# ------------------------------------------------------------------------------------------ configs
def test_hash_is_stable_and_distinct():
    a = tiny(model="isa_vae", beta=2.0, seed=1)
    b = tiny(model="isa_vae", beta=2, seed=1, layout=[2, 2],
             subgrid=dict(reversed(list(TINY_SUBGRID.items()))))   # other spellings, same run
    assert a == b and hash(a) == hash(b) and a.config_hash() == b.config_hash()
    assert len(a.config_hash()) == 64
    # A fixed value: the canonical JSON must not drift silently (a change would orphan every ledger row;
    # bump HASH_VERSION when the meaning of a field changes on purpose).
    # Rows made before data_version and beta_warmup_steps existed (dSprites generator 1, no warm-up) keep
    # their keys; the newest generator (2) makes new ones.
    assert RunConfig(model="isa_vae", beta=2.0, seed=3, data_version=1).config_hash() == \
        "4a1e1d6ee16db3afba5a20c602c9915992c10683aaf2be394e4577d11a34e64f"
    assert RunConfig(model="isa_vae", beta=2.0, seed=3).data_version == 2
    assert RunConfig(model="isa_vae", beta=2.0, seed=3).config_hash() != \
        "4a1e1d6ee16db3afba5a20c602c9915992c10683aaf2be394e4577d11a34e64f"
    legacy = {k: v for k, v in a.to_dict().items() if k not in ("data_version", "beta_warmup_steps", "aggregate")}
    assert RunConfig.from_dict(legacy).data_version == 1      # an old ledger row: made with generator 1
    assert RunConfig().config_hash() == RunConfig(**E.scale_defaults("paper")).config_hash()
    others = [dataclasses.replace(a, seed=2), dataclasses.replace(a, beta=2.5), dataclasses.replace(a, model="isa_tcvae"),
              dataclasses.replace(a, p=2.0), dataclasses.replace(a, hidden=64), dataclasses.replace(a, device="cuda"),
              dataclasses.replace(a, data_version=1), dataclasses.replace(a, beta_warmup_steps=4),
              dataclasses.replace(a, model="isa_tcvae", aggregate="compiled")]
    hashes = {c.config_hash() for c in [a] + others}
    assert len(hashes) == len(others) + 1
    # Settings a model does not use do not split its runs.
    assert tiny(model="beta_vae", p=1.5).config_hash() == tiny(model="beta_vae", p=2.2).config_hash()
    # Same hash in a fresh interpreter (no dependence on Python's hash seed or dict order).
    code = ("from isa_lib.experiments import RunConfig; import json,sys; "
            "print(RunConfig(**json.loads(sys.argv[1])).config_hash())")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(a.to_dict())], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == a.config_hash()
    assert RunConfig.from_dict(a.to_dict()) == a


@pytest.mark.parametrize("kw,message", [
    (dict(model="isa_vea"), "unknown model 'isa_vea'"),
    (dict(dataset="mnist"), "unknown dataset 'mnist'"),
    (dict(model="isa_vae", layout=(2, 3)), "sums to 5, not latent_dim 4"),
    (dict(model="isa_vae", layout=None), "needs an ISA layout"),
    (dict(beta=0.0), "beta must be a finite number > 0"),
    (dict(beta=-1.0, model="factor_vae"), "gamma"),
    (dict(beta=float("nan")), "beta must be"),
    (dict(lr=0.0), "lr must be"),
    (dict(seed=-1), "seed must be an integer"),
    (dict(architecture="resnet"), "unknown architecture"),
    (dict(image_size=24), "image_size must divide 64"),
    (dict(subgrid={"colour": [0]}), "unknown factor 'colour'"),
    (dict(subgrid={**TINY_SUBGRID, "posX": [0, 99]}), "must lie in 0..31"),
    (dict(subgrid={**TINY_SUBGRID, "scale": [3]}), "single class of the scored factor(s) ['scale']"),
    (dict(batch_size=4096), "exceeds the 128 images"),
    (dict(model="isa_vae_learned", p_init=9.0), "p_init must lie inside"),
    (dict(model="beta_tcvae", estimator="xyz"), "estimator"),
    (dict(data_version=3), "data_version of dsprites must be one of (1, 2)"),
    (dict(beta_warmup_steps=-5), "beta_warmup_steps must be an integer >= 0"),
    (dict(beta_warmup_steps=1.5), "beta_warmup_steps must be an integer >= 0"),
])
def test_validation_names_the_problem(kw, message):
    with pytest.raises(ValueError) as err:
        tiny(**kw)
    assert message in str(err.value)


def test_scales_are_valid_configs():
    for scale in E.SCALES:
        for model in E.MODELS:
            RunConfig(**{**E.scale_defaults(scale), "model": model, "beta": 2.0})
    paper = RunConfig(**E.scale_defaults("paper"), model="isa_vae")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.hidden, paper.latent_dim) == (20, 2048, 1e-3, 1200, 20)
    assert paper.layout == (4,) * 5 and paper.p0 == 2.1 and paper.p == 2.2 and paper.n_images == 737280
    small, medium = (RunConfig(**E.scale_defaults(s)) for s in ("small", "medium"))
    assert 1000 <= small.n_images <= 5000 and 20000 <= medium.n_images <= 50000
    assert small.data_version == medium.data_version == 1 and paper.data_version == 2
    # large: the paper's regime on a CPU (64 x 64 binary, every shape/scale/orientation, 16 x 16 positions)
    large = RunConfig(**E.scale_defaults("large"), model="isa_vae")
    sub = large.subgrid_dict()
    assert large.image_size == 64 and large.data_version == 2 and large.n_images == 3 * 6 * 40 * 16 * 16
    assert set(sub) == {"posX", "posY"} and len(sub["posX"]) == len(sub["posY"]) == 16
    faces = RunConfig(**E.scale_defaults("large", "faces3d"), model="isa_vae")
    assert faces.architecture == "conv" and faces.layout == (3, 3, 2, 2) and faces.p == 1.9
    assert faces.subgrid_dict() == {"identity": list(range(10))} and faces.n_images == 10 * 21 * 11 * 11
    with pytest.raises(ValueError, match="faces3d has the 'large'"):
        E.scale_defaults("small", "faces3d")
    with pytest.raises(ValueError, match="unknown scale"):
        E.scale_defaults("huge")


# ------------------------------------------------------------------------------------------ grids
def test_grid_expansion_and_rejections(tmp_path):
    configs = expand_grid(tiny_grid())
    assert len(configs) == 8 and len({c.config_hash() for c in configs}) == 8
    assert {(c.model, c.beta, c.seed) for c in configs} == {(m, b, s) for m in ("beta_vae", "isa_vae")
                                                            for b in (1.0, 2.0) for s in (0, 1)}
    fv = expand_grid(tiny_grid(models=["factor_vae", "beta_vae"], gammas=[5, 10], seeds=[3]))
    assert sorted((c.model, c.beta) for c in fv) == [("beta_vae", 1.0), ("beta_vae", 2.0),
                                                     ("factor_vae", 5.0), ("factor_vae", 10.0)]
    for bad, message in [(tiny_grid(betaz=[1]), "unknown grid key(s) ['betaz']"),
                         (tiny_grid(models=["beta_vae", "isa_vea"]), "unknown model(s) ['isa_vea']"),
                         (tiny_grid(betas=[1, -2]), "beta must be"),
                         (tiny_grid(scale="huge"), "unknown scale"),
                         (tiny_grid(seed=3), "unknown grid key(s) ['seed']")]:
        with pytest.raises(GridError) as err:
            expand_grid(bad)
        assert message in str(err.value)
    # The CLI refuses a bad grid before any run starts: no ledger is created.
    grid = tmp_path / "bad.yml"
    grid.write_text("scale: small\nmodels: [beta_vae, isa_vea]\nbetas: [1]\nseeds: 1\n")
    assert E.sweep_main(["--grid", str(grid), "--ledger", str(tmp_path / "l.db"), "--quiet"]) == 2
    assert not (tmp_path / "l.db").exists()


def test_shipped_grids_expand():
    sizes = {}
    for name in ("dsprites_small", "dsprites_medium", "dsprites_medium_learned", "dsprites_paper"):
        sizes[name] = len(E.load_grid(ROOT / "experiments" / "grids" / f"{name}.yml"))
    assert sizes["dsprites_small"] <= 16
    paper = E.load_grid(ROOT / "experiments" / "grids" / "dsprites_paper.yml")
    assert {c.seed for c in paper} == set(range(50)) and {c.model for c in paper} >= {"beta_vae", "isa_tcvae"}


def test_plan_groups_fuses_seeds_and_betas():
    configs = expand_grid(tiny_grid(models=["beta_vae", "factor_vae"], seeds=3))
    groups = E.plan_groups(configs, fuse=4)
    assert sum(len(g) for g in groups) == len(configs)
    assert [len(g) for g in groups if g[0].model == "beta_vae"] == [4, 2]
    assert all(len(g) == 1 for g in groups if g[0].model == "factor_vae")


def test_grids_are_seed_first_and_tasks_keep_that_order():
    # A sweep stopped part-way must have covered every model and beta for its seeds.
    configs = expand_grid(tiny_grid(models=["beta_vae", "isa_vae"], seeds=3))
    assert [c.seed for c in configs] == [0] * 4 + [1] * 4 + [2] * 4
    for fuse in (1, 2):
        firsts = [(g[0].seed, g[0].model) for g in E.plan_groups(configs, fuse=fuse)]
        assert [c.seed for c in (g[0] for g in E.plan_groups(configs, fuse=fuse))] == sorted(s for s, _ in firsts)
    assert [(c.seed, c.model) for c in (g[0] for g in E.plan_groups(configs, fuse=1))][:4] == [
        (0, "beta_vae"), (0, "beta_vae"), (0, "isa_vae"), (0, "isa_vae")]


# ------------------------------------------------------------------------------------------ sweeps
def check_done(ledger: Ledger, configs, fields=("mig", "reconstruction")):
    rows = {r["config_hash"]: r for r in ledger.rows()}
    assert set(rows) == {c.config_hash() for c in configs}
    for r in rows.values():
        assert r["status"] == "done", r["error"]
        assert all(isinstance(r["metrics"][f], float) for f in fields)
        assert set(r["metrics"]["mig_per_factor"]) == {"scale", "orientation", "posX", "posY"}
        assert r["finished"] >= r["started"] and r["duration"] > 0 and r["attempts"] == 1
        assert r["versions"]["torch"] and r["worker"]
    return rows


def test_local_sweep_records_every_run_and_skips_done(tmp_path):
    configs = expand_grid(tiny_grid())
    path = tmp_path / "ledger.db"
    s = sweep(configs, path, fuse=4, progress=False)
    assert (s["done"], s["failed"], s["ran"], s["tasks"]) == (8, 0, 8, 2)
    rows = check_done(Ledger(path), assign_fusion(configs, 4)[0])     # fused runs carry their group's size
    isa = [r for r in rows.values() if r["model"] == "isa_vae"]
    assert all(len(r["metrics"]["exponents_sorted"]) == 2 for r in isa)
    assert all(r["metrics"]["timings"]["fused"] == 4 for r in rows.values())
    again = sweep(configs, path, fuse=4, progress=False)
    assert again["ran"] == 0 and again["done"] == 8
    assert {h: r["finished"] for h, r in rows.items()} == {r["config_hash"]: r["finished"] for r in Ledger(path).rows()}


def test_ray_sweep(tmp_path):
    ray = pytest.importorskip("ray")
    configs = expand_grid(tiny_grid())
    path = tmp_path / "ledger.db"
    t = time.perf_counter()
    E.start_ray(num_cpus=2, log_to_driver=False)   # retried if the node misses Ray's start-up wait under load
    startup = time.perf_counter() - t
    try:
        s = sweep(configs, path, backend="ray", fuse=2, progress=False)
    finally:
        ray.shutdown()
    print(f"ray start-up {startup:.1f} s, sweep {s['elapsed_s']:.1f} s")
    assert (s["done"], s["failed"], s["tasks"]) == (8, 0, 4)
    rows = check_done(Ledger(path), assign_fusion(configs, 2)[0])
    # Written by the Ray workers themselves (other processes), not by the driver.
    assert all(not r["worker"].startswith("driver") and not r["worker"].endswith(f":{os.getpid()}")
               for r in rows.values())


def test_sigkill_mid_sweep_then_resume(tmp_path, cache):
    grid = tiny_grid(models=["beta_vae"], betas=[1.0, 2.0, 3.0], seeds=4, epochs=40.0)  # 12 runs, ~0.5 s each
    import yaml
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text(yaml.safe_dump(grid))
    configs = expand_grid(grid)
    path = tmp_path / "ledger.db"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from isa_lib.experiments import sweep_main; "
                             "sys.exit(sweep_main(sys.argv[1:]))", "--grid", str(grid_file), "--ledger", str(path),
                             "--fuse", "1", "--quiet"], env={**os.environ, "ISA_VAE_CACHE": str(cache)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600   # generous: a loaded machine is slow to start the sweep; we stop at 2 runs
    done_before = {}
    try:
        while time.time() < deadline and proc.poll() is None:
            if path.exists():
                try:
                    done_before = {r["config_hash"]: r["finished"] for r in Ledger(path).rows("done")}
                except Exception:  # the file may be mid-creation
                    done_before = {}
                if len(done_before) >= 2:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    ledger = Ledger(path)
    counts = ledger.counts()
    assert 2 <= counts.get("done", 0) < len(configs), counts
    s = sweep(configs, path, fuse=1, progress=False)
    assert s["done"] == len(configs) and s["ran"] == len(configs) - counts["done"]
    rows = {r["config_hash"]: r for r in ledger.rows()}
    assert len(rows) == len(configs) and all(r["status"] == "done" for r in rows.values())
    # Runs finished before the kill were neither repeated nor rewritten.
    for h, finished in done_before.items():
        assert rows[h]["finished"] == finished and rows[h]["attempts"] == 1
    # The run the kill interrupted was started twice; every other run once.
    assert sum(r["attempts"] for r in rows.values()) <= len(configs) + counts.get("running", 0)


def test_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    good = expand_grid(tiny_grid(models=["beta_vae"], betas=[1.0], seeds=2))
    # An absurd learning rate blows the weights up at the first Adam step: non-finite values inside training.
    bad = tiny(model="beta_vae", lr=1e12, seed=0)
    # beta = 1e300 overflows the float32 loss: fails inside a group it is fused with (same but for beta).
    fused_bad = dataclasses.replace(good[0], beta=1e300, seed=5)
    path = tmp_path / "ledger.db"
    s = sweep(good + [bad], path, fuse=4, progress=False)
    assert (s["done"], s["failed"]) == (2, 1)
    row = {r["config_hash"]: r for r in Ledger(path).rows()}[bad.config_hash()]
    assert row["status"] == "failed" and row["metrics"] is None
    assert "TrainingError" in row["error"] and "non-finite" in row["error"] and "Traceback" in row["error"]
    # A failing member of a fused group costs only itself: the group is rerun one by one.
    outcomes = E.run_group([good[0], fused_bad])
    assert [o["status"] for o in outcomes] == ["done", "failed"]
    assert "non-finite" in outcomes[1]["error"] and outcomes[0]["metrics"]["timings"]["fused"] == 1
    # Failed runs are skipped on resume unless asked to retry them.
    assert sweep(good + [bad], path, fuse=4, progress=False)["ran"] == 0
    assert sweep(good + [bad], path, fuse=4, progress=False, retry_failed=True)["ran"] == 1


def test_export_dataframe_and_csv(tmp_path):
    pd = pytest.importorskip("pandas")
    configs = expand_grid(tiny_grid(models=["isa_vae_learned", "beta_tcvae"], betas=[2.0], seeds=2))
    path = tmp_path / "ledger.db"
    sweep(configs, path, progress=False)
    ledger = Ledger(path)
    df = ledger.to_dataframe()
    assert len(df) == len(configs) and df["config_hash"].is_unique
    for col in ("model", "beta", "seed", "latent_dim", "epochs", "status", "mig", "reconstruction",
                "mig_per_factor.posX", "final.loss", "timings.train_s", "versions.torch", "duration"):
        assert col in df.columns, col
    learned = df[df.model == "isa_vae_learned"]
    assert all(len(json.loads(v)) == 2 for v in learned["exponents_sorted"])
    assert "history" not in df.columns
    # wall and CPU seconds of training and scoring (no more CPU seconds than the cores give in that wall time)
    for part in ("train", "eval"):
        wall, cpu = df[f"timings.{part}_s"], df[f"timings.{part}_cpu_s"]
        assert (cpu > 0).all() and (cpu <= wall * (os.cpu_count() or 1) + 0.05).all(), part
    csv = ledger.export_csv(tmp_path / "out" / "runs.csv")
    back = pd.read_csv(csv)
    assert len(back) == len(configs) and list(back.columns) == list(df.columns)
    assert back["mig"].tolist() == pytest.approx(df["mig"].tolist())


def test_run_one_returns_model_and_data():
    metrics, model, data = E.run_one(tiny(model="isa_vae_learned", beta=1.0), return_model=True)
    assert len(data) == 128 and data.images.shape[-1] == 16 and data.max_value == 16.0
    assert metrics["exponents_sorted"] == sorted(metrics["exponents"])
    assert metrics["exponents"] != [2.0, 2.0]   # learned: they moved from their start
    json.dumps(metrics)   # plain JSON
    assert model.prior.learn


# ------------------------------------------------------------------------------------------ repeated runs
@pytest.mark.parametrize("prior,estimator,aggregate", [("normal", "mss", "dense"), ("isa", "mws", "dense"),
                                                       ("normal", "mss", "streamed")])
def test_beta_tcvae_at_beta_one_trains_exactly_like_the_vae(prior, estimator, aggregate):
    """The equivalence the sweep relies on (RunConfig.equivalent): at beta = 1 the beta-TCVAE penalty
    telescopes to the ELBO's KL and its extra gradients cancel, so the weights agree bit for bit."""
    import torch
    from isa_lib.train import TrainConfig, build_vae, train

    kw = dict(sizes=[2, 2], p0=2.1, exponents=2.2) if prior == "isa" else {}
    images = (torch.rand(256, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.6).to(torch.uint8)
    weights = {}
    for objective in ("beta_vae", "beta_tcvae"):
        model = build_vae("mlp", 4, prior, seed=1, net_size={"hidden": 32, "image_size": 16}, **kw)
        train(model, images, TrainConfig(objective=objective, estimator=estimator, beta=1.0, epochs=3,
                                         batch_size=32, seed=2, aggregate=aggregate), progress=False)
        weights[objective] = model.state_dict()
    assert all(torch.equal(weights["beta_vae"][k], weights["beta_tcvae"][k]) for k in weights["beta_vae"])
    # ... and only at beta = 1
    c = tiny(model="isa_tcvae", beta=1.0)
    assert c.equivalent() == tiny(model="isa_vae", beta=1.0)
    assert tiny(model="beta_tcvae", beta=1.0).equivalent().model == "beta_vae"
    assert tiny(model="beta_tcvae", beta=1.0, aggregate="compiled").equivalent() == tiny(model="beta_vae")
    for other in (tiny(model="isa_tcvae", beta=2.0), tiny(model="beta_vae"), tiny(model="factor_vae", beta=1.0)):
        assert other.equivalent() is other


def test_a_beta_warmup_reaches_the_trainer_and_breaks_the_beta_one_equivalence():
    c = tiny(model="beta_tcvae", beta=1.0, beta_warmup_steps=7)
    assert c.equivalent() == c                  # during the warm-up beta < 1: not the ELBO
    assert tiny(model="beta_tcvae", beta=1.0).equivalent().model == "beta_vae"
    assert E._train_config(c, c.n_images).beta_warmup_steps == 7


def test_a_sweep_computes_a_repeated_run_once_and_copies_its_row(tmp_path):
    import sqlite3

    configs = expand_grid(tiny_grid(models=["beta_vae", "beta_tcvae"], betas=[1.0, 2.0], seeds=1))
    path = tmp_path / "ledger.db"
    s = sweep(configs, path, fuse=1, progress=False)
    assert (s["total"], s["ran"], s["done"]) == (4, 3, 4)
    rows = {r["config_hash"]: r for r in Ledger(path).rows()}
    (copy,) = [c for c in configs if c.equivalent() != c]
    src = rows[copy.equivalent().config_hash()]
    got = rows[copy.config_hash()]
    assert got["metrics"]["same_as"] == src["config_hash"] and got["metrics"]["mig"] == src["metrics"]["mig"]
    assert got["model"] == "beta_tcvae" and got["duration"] == 0
    # Killed after the source finished but before the copy was written: resuming copies, computes nothing.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET status = 'running', metrics = NULL WHERE config_hash = ?", (copy.config_hash(),))
    again = sweep(configs, path, fuse=1, progress=False)
    assert again["ran"] == 0 and again["done"] == 4
    assert Ledger(path).statuses()[copy.config_hash()] == "done"
    # A grid holding only the repeat still runs (the source is added to the ledger) and records both rows.
    only = expand_grid(tiny_grid(models=["isa_tcvae"], betas=[1.0], seeds=1))
    s = sweep(only, tmp_path / "only.db", progress=False)
    assert (s["ran"], s["done"]) == (1, 1)
    assert Ledger(tmp_path / "only.db").counts() == {"done": 2}
    df = Ledger(path).to_dataframe()
    assert df["same_as"].notna().sum() == 1


def test_a_repeat_of_a_failed_run_is_failed_and_names_it(tmp_path):
    bad = tiny(model="beta_tcvae", beta=1.0, lr=1e12)
    path = tmp_path / "ledger.db"
    s = sweep([bad], path, progress=False)
    assert (s["failed"], s["ran"]) == (1, 1)
    row = {r["config_hash"]: r for r in Ledger(path).rows()}[bad.config_hash()]
    assert row["status"] == "failed" and f"same as run {bad.equivalent().config_hash()}" in row["error"]
    assert "non-finite" in row["error"]


def test_task_timing_separates_a_task_s_setup_from_its_steps(monkeypatch):
    """A call of the trainer costs setup + steps x per-step (models built, images moved to the device: seconds
    on a GPU, every task). Timing n and 2n steps recovers both exactly on a fake clock, so a 7,200-step run is
    predicted as setup + 7,200 x step, not 7,200 x (step + setup / n) as a single timed call gave; with
    ``score`` one evaluation of the probe's first model is timed too."""
    from isa_lib.experiments import run as R

    clock = [100.0]
    calls = []

    def fake_train(configs, data, fused, max_steps=None, checkpoint_dir=None):
        calls.append(max_steps)
        clock[0] += 2.5 + 0.125 * max_steps                 # setup 2.5 s, 0.125 s per step
        return ["model"], [[]]

    def fake_eval(model, data, c, history):
        assert model == "model" and c.seed == 0
        clock[0] += 7.0
        return {}

    monkeypatch.setattr(R, "load_data", lambda c, cache=None: None)
    monkeypatch.setattr(R, "_train_models", fake_train)
    monkeypatch.setattr(R, "evaluate", fake_eval)
    monkeypatch.setattr(R.time, "perf_counter", lambda: clock[0])
    group = [tiny(model="isa_vae", seed=s) for s in (0, 1)]
    t = E.task_timing(group, steps=8)
    assert calls == [1, 8, 16] and (t.setup_s, t.step_s, t.eval_s) == (2.5, 0.125, None)
    assert t.predict(7200, 2) == 2.5 + 0.125 * 7200
    t = E.task_timing(group, steps=8, score=True)
    assert (t.setup_s, t.step_s, t.eval_s) == (2.5, 0.125, 7.0) and t.predict(100, 2) == 2.5 + 12.5 + 14.0
    assert E.seconds_per_step(group, steps=4) == 0.125
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        E.task_timing(group, steps=0)


def test_a_ray_sweep_on_cuda_must_ask_for_gpus(tmp_path):
    """Ray gives a task that asks for no GPU an empty CUDA_VISIBLE_DEVICES: every run would be recorded failed
    ("no CUDA device"). Refused by name before the ledger is touched."""
    configs = [tiny(device="cuda:0")]
    with pytest.raises(ValueError, match=r"runs on device 'cuda:0' under Ray need gpus_per_task > 0"):
        sweep(configs, tmp_path / "l.db", backend="ray", progress=False)
    assert not (tmp_path / "l.db").exists()


def test_a_local_sweep_on_cuda_needs_a_gpu_that_torch_sees(tmp_path, monkeypatch):
    """Without a visible GPU every run of a local cuda sweep was recorded failed; now nothing is run."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"runs on device 'cuda', but torch .* sees no CUDA device"):
        sweep([tiny(device="cuda")], tmp_path / "l.db", progress=False)
    assert not (tmp_path / "l.db").exists()


def test_seconds_per_step_times_a_group_and_records_nothing(tmp_path):
    group = [tiny(model="isa_vae", seed=s, beta=b) for s, b in ((0, 1.0), (1, 2.0))]
    t = E.seconds_per_step(group, steps=3)
    assert 0 < t < 30
    with pytest.raises(ValueError, match="differ only in seed and beta"):
        E.seconds_per_step([tiny(model="isa_vae"), tiny(model="beta_vae")])
    # Ledger.rows by hash (what the GPU sweep reads after each task)
    path = tmp_path / "l.db"
    sweep(group, path, progress=False)
    (row,) = Ledger(path).rows("done", hashes=[group[1].config_hash()])
    assert row["config_hash"] == group[1].config_hash() and row["metrics"]["timings"]["float32_matmul"] == "highest"
    assert Ledger(path).rows(hashes=[]) == []


def test_config_for_builds_the_chapter_config_from_parameters():
    c = E.config_for("small", model="isa_vae", beta=2.0, seed=3, epochs=None, layout=[5, 5, 5, 5], p=1.8, p0=None)
    assert c.layout == (5, 5, 5, 5) and c.latent_dim == 20 and c.p == 1.8 and c.p0 == 2.1
    assert c.epochs == E.scale_defaults("small")["epochs"]          # None keeps the scale's value
    base = E.config_for("small", model="beta_vae", layout=[3, 3])    # the baseline gets the layout's size
    assert base.latent_dim == 6 and base.layout is None
    learned = E.config_for("small", model="isa_vae_learned", p_init=1.5)
    assert learned.p_init == 1.5 and learned.p is None
    with pytest.raises(ValueError, match=r"unknown RunConfig field\(s\) \['exponent'\]"):
        E.config_for("small", exponent=2.0)
    with pytest.raises(ValueError, match="sums to 5, not latent_dim 4"):
        E.config_for("small", model="isa_vae", layout=[2, 3], latent_dim=4)
    with pytest.raises(ValueError, match="faces3d has the .large. \(CPU\) and .paper. scales only"):
        E.config_for("small", "faces3d")


def test_outcomes_frame_and_summary_of_a_few_seeds():
    from isa_lib import analysis

    runs = [tiny(model="isa_vae", seed=s) for s in (0, 1)] + [tiny(model="isa_vae", seed=2, lr=1e12)]
    frame = analysis.outcomes_frame(runs, E.run_group(runs[:2]) + E.run_group(runs[2:]))
    assert frame["status"].tolist() == ["done", "done", "failed"] and frame["seed"].tolist() == [0, 1, 2]
    assert {"mig_per_factor.posX", "reconstruction"} <= set(frame.columns)
    assert frame["error"].iloc[2].startswith("TrainingError") and frame["mig"].isna().iloc[2]
    s = analysis.summarise(frame[frame["status"] == "done"])
    assert s["n"].tolist() == [2] and s["mig_mean"].iloc[0] == pytest.approx(frame["mig"].iloc[:2].mean())
    with pytest.raises(ValueError, match="2 configurations but 1 outcomes"):
        analysis.outcomes_frame(runs[:2], E.run_group(runs[:1]))


def test_a_tiny_faces_run_at_the_large_scale_scores_the_three_view_factors():
    """3D faces (Table 2) on the CPU path: conv nets, grey 64 x 64 images, the (3, 3, 2, 2) ISA layout."""
    c = E.config_for("large", "faces3d", model="isa_vae", epochs=1.0, batch_size=8, mig_samples=16,
                     subgrid={"identity": [0], "azimuth": [0, 10, 20], "elevation": [0, 5, 10], "lighting": [0, 10]})
    assert (c.architecture, c.layout, c.p, c.n_images, c.steps) == ("conv", (3, 3, 2, 2), 1.9, 18, 2)
    res = E.run_one(c)
    assert sorted(res["mig_per_factor"]) == ["azimuth", "elevation", "lighting"]
    assert 0 <= res["mig"] <= 1 and res["reconstruction"] < 0 and len(res["exponents"]) == 4


def test_a_row_records_the_commit_its_process_imported(tmp_path, monkeypatch):
    """versions() names the commit read when the code was imported (a worker keeps its code while the checkout
    moves on), "+dirty" when the package has uncommitted changes, and None outside a git checkout."""
    import shutil
    import subprocess

    from isa_lib.experiments import run

    if shutil.which("git") is None:
        pytest.skip("no git")
    monkeypatch.setattr(run, "_git_commit", lambda package=None: "a later commit")
    assert run.versions()["git_commit"] == run.IMPORTED_COMMIT != "a later commit"

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("x = 1\n")
    monkeypatch.undo()
    assert run._git_commit(pkg) is None                      # not a checkout
    git("init", "-q")
    git("add", "pkg/m.py")
    git("commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert run._git_commit(pkg) == head
    (pkg / "m.py").write_text("x = 2\n")
    assert run._git_commit(pkg) == head + "+dirty"
    (tmp_path / "elsewhere.txt").write_text("untracked, outside the package\n")
    (pkg / "m.py").write_text("x = 1\n")
    assert run._git_commit(pkg) == head

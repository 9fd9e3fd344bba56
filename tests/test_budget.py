"""The budget scale (the paper's data, batch and number of updates, Table 1) and runs that stop at a fraction of
their budget and continue later (``RunConfig.budget_fraction``), with the sweep's breadth-first grids."""
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from isa_lib import experiments as E
from isa_lib.experiments import GridError, Ledger, RunConfig, expand_grid, sweep
from isa_lib.experiments.run import checkpoint_folder, finished_checkpoints, load_data, run_group
from isa_lib.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_SUBGRID = {"shape": [0, 1], "scale": [0, 5], "orientation": [0, 10], "posX": [0, 10, 20, 31],
                "posY": [0, 10, 20, 31]}
# 128 images, batch 16: 8 steps an epoch, 4 epochs = 32 steps; fractions 1/4 and 1/2 stop at 8 and 16.
TINY = dict(dataset="dsprites", epochs=4.0, batch_size=16, lr=1e-3, latent_dim=4, layout=(2, 2), p0=2.1, p=2.2,
            hidden=32, image_size=16, subgrid=TINY_SUBGRID, mig_samples=64)


def tiny(**kw) -> RunConfig:
    return RunConfig(**{**TINY, **kw})


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))


def test_the_budget_scale_is_table_1_but_for_the_width():
    c = E.config_for("budget", model="isa_vae")
    assert (c.n_images, c.image_size, c.subgrid, c.data_version) == (737280, 64, None, 2)
    assert (c.batch_size, c.epochs, c.steps, c.lr) == (2048, 20.0, 7200, 1e-3)
    assert c.images_seen == 7200 * 2048 == 14_745_600       # 14.7 M images, as the paper's 20 epochs
    assert (c.latent_dim, c.layout, c.p0, c.p) == (20, (4,) * 5, 2.1, 2.2)
    assert (c.hidden, c.mig_samples, c.mig_dtype) == (E.BUDGET_HIDDEN, 10000, "float32")
    eighth = dataclasses.replace(c, budget_fraction=0.125)
    assert (eighth.train_steps, eighth.images_seen, eighth.steps) == (900, 1_843_200, 7200)
    assert eighth.lineage() == c and eighth.config_hash() != c.config_hash()


def test_new_fields_leave_older_hashes_alone_and_are_validated():
    c = tiny()
    payload_hash = c.config_hash()
    assert dataclasses.replace(c, budget_fraction=1.0, mig_dtype="float64").config_hash() == payload_hash
    assert dataclasses.replace(c, mig_dtype="float32").config_hash() != payload_hash
    for bad in (0, -0.5, 1.5, float("nan"), "half", True):
        with pytest.raises(ValueError, match="budget_fraction"):
            tiny(budget_fraction=bad)
    with pytest.raises(ValueError, match="mig_dtype must be 'float32' or 'float64'"):
        tiny(mig_dtype="float16")
    assert tiny(budget_fraction=0.001).train_steps == 1


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_run_extended_from_a_quarter_to_a_half_equals_a_straight_run_to_a_half(tmp_path):
    quarter, half = (tiny(model="isa_vae", seed=3, budget_fraction=f) for f in (0.25, 0.5))
    assert (quarter.train_steps, half.train_steps) == (8, 16)
    folder = tmp_path / "ckpt"
    (q,) = run_group([quarter], checkpoint_dir=folder, return_models=True)
    assert q["status"] == "done" and q["metrics"]["history"][-1]["step"] == 8
    (ckpt,) = folder.glob("*.pt")
    assert load_checkpoint(ckpt, "cpu")["step"] == 8            # the lineage's checkpoint is kept ...
    (extended,) = run_group([half], checkpoint_dir=folder, return_models=True)
    assert load_checkpoint(ckpt, "cpu")["step"] == 16           # ... and continued, not started again
    (straight,) = run_group([half], return_models=True)
    for key in ("mig", "reconstruction", "history", "mig_per_factor", "train_steps", "images_seen"):
        assert extended["metrics"][key] == straight["metrics"][key], key
    a, b = _weights(extended["model"]), _weights(straight["model"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert extended["metrics"]["images_seen"] == 16 * 16 and extended["metrics"]["budget_fraction"] == 0.5
    quarter_w = _weights(q["model"])                          # the extension really trained on
    assert any(not torch.equal(quarter_w[k], a[k]) for k in a)


def test_a_checkpoint_past_the_stop_is_kept_and_the_shorter_run_trains_afresh(tmp_path):
    quarter, half = (tiny(model="beta_vae", seed=1, budget_fraction=f) for f in (0.25, 0.5))
    folder = tmp_path / "ckpt"
    run_group([half], checkpoint_dir=folder)
    (ckpt,) = folder.glob("*.pt")
    (late,) = run_group([quarter], checkpoint_dir=folder)      # e.g. a failed 1/4 run retried after the 1/2
    (fresh,) = run_group([quarter])
    assert late["status"] == "done" and late["metrics"]["mig"] == fresh["metrics"]["mig"]
    assert late["metrics"]["history"] == fresh["metrics"]["history"]
    assert load_checkpoint(ckpt, "cpu")["step"] == 16          # the longer lineage's progress is not lost


def test_same_seed_same_initial_weights_and_data_order_in_both_priors(tmp_path):
    normal, isa = (tiny(model=m, seed=5, budget_fraction=0.25) for m in ("beta_vae", "isa_vae"))
    m_normal, m_isa = E.build_model(normal), E.build_model(isa)
    for part in ("encoder", "decoder"):
        a, b = getattr(m_normal, part).state_dict(), getattr(m_isa, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = E.build_model(dataclasses.replace(normal, seed=6))
    assert not torch.equal(next(iter(other.encoder.state_dict().values())),
                           next(iter(m_normal.encoder.state_dict().values())))
    # The data order and the generator after training: the same draws in both arms.
    states = []
    for c in (normal, isa):
        folder = tmp_path / c.model
        run_group([c], checkpoint_dir=folder)
        states.append(load_checkpoint(next(folder.glob("*.pt")), "cpu"))
    assert torch.equal(states[0]["order"], states[1]["order"])
    assert torch.equal(states[0]["generator"], states[1]["generator"])
    assert states[0]["step"] == states[1]["step"] == 8


def test_a_sweep_records_each_fraction_as_its_own_row_and_frees_the_checkpoint_at_the_end(tmp_path):
    spec = {**TINY, "scale": "small", "models": ["beta_vae"], "seeds": [0], "budget_fractions": [0.5, 0.25]}
    configs = expand_grid(spec)
    assert [c.budget_fraction for c in configs] == [0.25, 0.5]
    path = tmp_path / "budget.db"
    s = sweep(configs, path, progress=False)
    assert (s["done"], s["failed"]) == (2, 0)
    rows = {r["config"]["budget_fraction"]: r for r in Ledger(path).rows()}
    assert rows[0.25]["metrics"]["train_steps"] == 8 and rows[0.5]["metrics"]["train_steps"] == 16
    folder = checkpoint_folder(path)
    assert len(list(folder.glob("*.pt"))) == 1                 # kept: the lineage's whole budget is not done
    (ckpt,) = folder.glob("*.pt")
    assert load_checkpoint(ckpt, "cpu")["step"] == 16
    # the kept checkpoint is the 1/2 run's (at step 16), not the 1/4 run's: only that run can be re-scored
    (found,) = finished_checkpoints(path)
    assert found[0].budget_fraction == 0.5 and found[2]["step"] == 16
    assert found[1]["mig"] == rows[0.5]["metrics"]["mig"]
    full = expand_grid({**spec, "budget_fractions": [0.25, 0.5, 1.0]})
    s = sweep(full, path, progress=False)
    assert (s["done"], s["ran"]) == (3, 1)
    assert not list(folder.glob("*.pt"))                        # the whole budget is done: freed
    assert not list(finished_checkpoints(path))
    whole = {r["config"]["budget_fraction"]: r for r in Ledger(path).rows()}[1.0]
    straight = run_group([full[-1]])[0]
    assert whole["metrics"]["mig"] == straight["metrics"]["mig"]


def test_breadth_first_grids_with_arms():
    spec = {**TINY, "scale": "small", "models": ["beta_vae", "isa_vae"], "seeds": 3,
            "arms": [{"model": "isa_vae", "p": 4.0, "seeds": 2}], "budget_fractions": [1.0, 0.5]}
    configs = expand_grid(spec)
    assert len(configs) == (3 + 3 + 2) * 2
    key = [(c.budget_fraction, c.seed, c.model, c.p) for c in configs]
    assert key[:3] == [(0.5, 0, "beta_vae", None), (0.5, 0, "isa_vae", 2.2), (0.5, 0, "isa_vae", 4.0)]
    assert [k[0] for k in key] == [0.5] * 8 + [1.0] * 8
    assert [k[1] for k in key[:8]] == [0, 0, 0, 1, 1, 1, 2, 2]
    for bad, message in [({"budget_fractions": [0.5, 1.5]}, "budget_fractions"),
                         ({"budget_fractions": []}, "budget_fractions"),
                         ({"arms": [{"p": 4.0}]}, "each arm needs a 'model'"),
                         ({"arms": [{"model": "isa_vae", "beta": 2.0}]}, "unknown key"),
                         ({"arms": [{"model": "isa_vae", "p": -1.0}]}, "p must be a finite number > 0")]:
        with pytest.raises(GridError, match=message):
            expand_grid({**spec, **bad})


def test_the_shipped_budget_grid():
    configs = E.load_grid(ROOT / "experiments" / "grids" / "dsprites_budget.yml")
    lineages = {c.lineage() for c in configs}
    assert len(lineages) == 20 and len(configs) == 80
    first = configs[:12]                                        # seeds 0-3 of the three arms come first
    assert {c.budget_fraction for c in first} == {0.125} and sorted({c.seed for c in first}) == [0, 1, 2, 3]
    arms = {(c.model, c.p) for c in configs}
    assert arms == {("beta_vae", None), ("isa_vae", 2.2), ("isa_vae", 4.0)}
    by_arm = {a: {c.seed for c in configs if (c.model, c.p) == a} for a in arms}
    assert by_arm[("beta_vae", None)] == by_arm[("isa_vae", 2.2)] == set(range(8))
    assert by_arm[("isa_vae", 4.0)] <= by_arm[("beta_vae", None)] and len(by_arm[("isa_vae", 4.0)]) == 4
    for c in configs:
        assert (c.n_images, c.batch_size, c.steps, c.mig_samples, c.beta) == (737280, 2048, 7200, 10000, 1.0)
    assert [c.budget_fraction for c in configs] == sorted(c.budget_fraction for c in configs)


def test_the_width_benchmark_runs(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_budget_width", ROOT / "benchmarks" / "bench_budget_width.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    best = bench.main(["--scale", "small", "--steps", "1", "--rounds", "1", "--widths", "16", "32"])
    assert set(best) == {16, 32} and all(s > 0 for s in best.values())
    out = capsys.readouterr().out
    assert "MLP    16" in out and "whole run" in out and "x1.00 of MLP 16" in out


def test_dry_run_names_arms_and_fractions_and_exports_the_ledger_as_it_stands(tmp_path, capsys):
    import yaml

    spec = {**TINY, "scale": "small", "models": ["beta_vae"], "seeds": [0], "budget_fractions": [0.25, 0.5],
            "arms": [{"model": "isa_vae", "p": 4.0}]}
    spec["subgrid"] = TINY_SUBGRID
    spec["layout"] = list(TINY["layout"])
    grid = tmp_path / "grid.yml"
    grid.write_text(yaml.safe_dump(spec))
    ledger = tmp_path / "study.db"
    sweep(expand_grid(spec)[:2], ledger, progress=False)             # the 1/4 runs are done, the 1/2 are not
    capsys.readouterr()
    csv = tmp_path / "study.csv"
    assert E.sweep_main(["--grid", str(grid), "--ledger", str(ledger), "--dry-run", "--export", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "isa_vae beta=1 seed=0 p=4 budget=0.25" in out and "beta_vae beta=1 seed=0 budget=0.5" in out
    assert out.count("done") == 2 and f"exported {csv}" in out
    import pandas as pd
    assert sorted(pd.read_csv(csv)["budget_fraction"]) == [0.25, 0.25]

"""The bad-input catalogue: every public entry point (priors, data files, trainer, metrics, the chapter
command line, grids, the sweep command and the ledger) answers a wrong input with a named error that says
what is wrong and where (the path, parameter or step), before anything is lost: no file is altered, no
ledger is created or touched, no optimiser step is taken.

Each case is (what is given, a call that must fail, the exception type, a pattern the message must match).
"""
import math
import pickle
import sqlite3
import zipfile

import numpy as np
import pytest
import torch

from isa_lib import cli, datasets, metrics, runner
from isa_lib.experiments import GridError, LedgerError, RunConfig, expand_grid, load_grid, sweep_main
from isa_lib.experiments import Ledger, run_group
from isa_lib.lpnested import ISA
from isa_lib.priors import ISAPrior
from isa_lib.train import CheckpointError, TrainConfig, TrainingError, build_vae, train

NET = {"hidden": 16, "image_size": 16}


class Payload:
    """Pickles as a call that creates a file: if the file exists after a load, the load ran code."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def isa(**kw):
    return ISA(**{"p0": 2.1, "sizes": [2, 2], "exponents": [2.2, 2.2], **kw})


def tiny_model(seed=0):
    return build_vae("mlp", 4, seed=seed, net_size=NET)


def images(n=8, size=16):
    return (torch.rand(n, size, size, generator=torch.Generator().manual_seed(0)) > 0.5).to(torch.uint8)


def mig(mu=None, logvar=None, sizes=(4, 4), **kw):
    g = torch.Generator().manual_seed(0)
    n = math.prod(sizes)
    mu = torch.randn(n, 3, generator=g, dtype=torch.float64) if mu is None else mu
    logvar = torch.zeros(n, 3, dtype=torch.float64) if logvar is None else logvar
    return metrics.mig_chen(mu, logvar, list(sizes), **kw)


def grid(**kw):
    return {"scale": "small", "models": ["beta_vae"], "seeds": 1, **kw}


def run_params(*pairs):
    """``isa-vae run 05 --dry-run -p ...`` as the command line parses it (nothing is executed)."""
    chapter = runner.find_chapter("05")
    values = {name: runner.parse_cli_value(text, name) for name, text in pairs}
    return runner.resolve_parameters(chapter, "small", values)


CASES = [
    # ---- priors (Sec. 3)
    ("ISA p0 <= 0", lambda: isa(p0=-1.0), ValueError, r"p0 must be > 0, got -1"),
    ("ISA exponent NaN", lambda: isa(exponents=[2.2, float("nan")]), ValueError, r"exponents\[1\]"),
    ("ISA exponent count", lambda: isa(exponents=[2.2]), ValueError, r"2 subspaces but exponents has 1"),
    ("ISA subspace of size 0", lambda: isa(sizes=[0, 2]), ValueError, r"sizes\[0\] must be an int >= 1"),
    ("ISA sizes not a list", lambda: isa(sizes="22"), ValueError, r"sizes must be a list"),
    ("ISA value of the wrong size", lambda: isa().log_prob(torch.zeros(3, 5)), ValueError,
     r"prior has 4 dimensions but the value has shape \(3, 5\)"),
    ("ISA NaN value, validated", lambda: isa(validate_args=True).log_prob(torch.tensor([[0.0, 1.0, float("nan"), 0.0]])),
     ValueError, r"NaN \(first at batch index \(0,\)\)"),
    ("ISAPrior layout against latent size", lambda: build_vae("mlp", 5, prior="isa", sizes=[2, 2], p0=2.1,
                                                              exponents=2.2, net_size=NET),
     ValueError, r"ISA layout \[2, 2\] has 4 dimensions but the latent size is 5"),
    ("ISAPrior exponent <= 0", lambda: ISAPrior(2.1, [2, 2], 0.0), ValueError,
     r"exponents\[0\] \(subspace 0\) must be > 0, got 0\.0"),
    # ---- data files (Sec. 4): missing, not the format, a crafted pickle, a corrupt zip member
    ("dSprites file missing", lambda: datasets.load("dsprites", path="/nonexistent/dsprites.npz"),
     datasets.DatasetFileNotFoundError, r"/nonexistent/dsprites\.npz"),
    ("dSprites file of junk", "junk_npz", datasets.DatasetFormatError, r"junk\.npz"),
    ("dSprites file is a pickle", "pickle_npz", datasets.DatasetFormatError, r"payload\.npz.*cannot be read"),
    ("dSprites zip with a corrupt member", "corrupt_member_npz", datasets.DatasetFormatError, r"corrupt\.npz"),
    ("3D faces file of junk", "junk_pth", datasets.DatasetFormatError, r"junk\.pth"),
    ("cars3d file of junk", "junk_mat", datasets.DatasetError, r"junk"),
    ("unknown data set", lambda: datasets.load("mnist3d"), KeyError, r"unknown dataset 'mnist3d'; choose one of"),
    ("sub-grid index out of range", lambda: datasets.load("dsprites", subgrid={"posX": [0, 99]}), IndexError,
     r"posX.*0\.\.31"),
    ("sub-grid names no factor", lambda: datasets.load("dsprites", subgrid={"colour": [0]}), KeyError,
     r"unknown factors \['colour'\]"),
    # ---- the trainer (App. A.4)
    ("batch_size as text", lambda: TrainConfig(batch_size="16"), ValueError, r"batch_size must be an integer.*'16'"),
    ("batch_size fractional", lambda: TrainConfig(batch_size=16.5), ValueError, r"batch_size.*16\.5"),
    ("log_every 0", lambda: TrainConfig(log_every=0), ValueError, r"log_every"),
    ("epochs 0", lambda: TrainConfig(epochs=0), ValueError, r"epochs must be a finite number > 0, got 0"),
    ("lr NaN", lambda: TrainConfig(lr=float("nan")), ValueError, r"lr must be a finite number"),
    ("unknown objective", lambda: TrainConfig(objective="elbo2"), ValueError, r"unknown objective 'elbo2'"),
    ("amp as text", lambda: TrainConfig(amp="yes"), ValueError, r"amp must be True or False, got 'yes'"),
    ("cuda without a GPU", lambda: TrainConfig(device="cuda") if not torch.cuda.is_available() else
     pytest.skip("a GPU is present"), ValueError, r"no CUDA device"),
    ("images the network cannot make", lambda: train(tiny_model(), images(size=32), TrainConfig(epochs=1)),
     ValueError, r"\(1, 32, 32\).*makes \(1, 16, 16\)"),
    ("divergence during training", lambda: train(tiny_model(), images(), TrainConfig(epochs=2, lr=1e12,
                                                                                   batch_size=4), progress=False),
     TrainingError, r"step \d+"),
    ("a crafted checkpoint", "crafted_checkpoint", CheckpointError, r"ckpt\.pt cannot be loaded"),
    # ---- metrics (Sec. 4)
    ("MIG with exploding posteriors", lambda: mig(logvar=torch.full((16, 3), 1000.0, dtype=torch.float64)),
     ValueError, r"logvar spans \[1000, 1000\]"),
    ("MIG with collapsed posteriors", lambda: mig(logvar=torch.full((16, 3), -1000.0, dtype=torch.float64)),
     ValueError, r"posteriors are degenerate"),
    ("MIG with NaN means", lambda: mig(mu=torch.full((16, 3), float("nan"), dtype=torch.float64)), ValueError,
     r"(?i)nan"),
    ("MIG mu and logvar of other shapes", lambda: mig(logvar=torch.zeros(16, 2, dtype=torch.float64)), ValueError,
     r"mu \(16, 3\) and logvar \(16, 2\)"),
    ("MIG grid that is not the data", lambda: mig(sizes=(4, 4), mu=torch.zeros(15, 3, dtype=torch.float64),
                                                  logvar=torch.zeros(15, 3, dtype=torch.float64)),
     ValueError, r"factor_sizes.*16.*15 rows"),
    ("MIG of one latent", lambda: mig(mu=torch.zeros(16, 1, dtype=torch.float64),
                                      logvar=torch.zeros(16, 1, dtype=torch.float64)), ValueError, r"two latents"),
    ("MIG n_samples 0", lambda: mig(n_samples=0), ValueError, r"n_samples must be positive"),
    ("histogram MIG codes with NaN", lambda: metrics.mig_histogram(np.full((16, 3), np.nan),
                                                                   np.zeros((16, 2), int)), ValueError, r"NaN"),
    # ---- the chapter command line (papermill parameters)
    ("-p seed 1.5", lambda: run_params(("seed", "1.5")), runner.ParameterError, r"'seed'.*should be an int.*1\.5"),
    ("-p beta .nan", lambda: run_params(("beta", ".nan")), runner.ParameterError, r"'beta'.*finite.*nan"),
    ("-p p0 high (default None)", lambda: run_params(("p0", "high")), runner.ParameterError,
     r"'p0'.*should be a float \| None.*'high'"),
    ("-p seeds [a] (default None)", lambda: run_params(("seeds", "[0, a]")), runner.ParameterError,
     r"'seeds'.*list\[int\] \| None"),
    ("-p mig_samples 1.5 (default None)", lambda: run_params(("mig_samples", "1.5")), runner.ParameterError,
     r"'mig_samples'.*int \| None"),
    ("-p malformed YAML", lambda: run_params(("layout", "[4, 4")), runner.ParameterError,
     r"'\[4, 4'.*'layout' is not valid YAML"),
    ("-p unknown name", lambda: run_params(("n_seeds", "3")), runner.ParameterError, r"unknown parameter.*n_seeds"),
    ("unknown scale", lambda: runner.resolve_parameters(runner.find_chapter("05"), "huge"), runner.ParameterError,
     r"unknown scale 'huge'"),
    # ---- grids and run configurations (Sec. 4, Tables 1-2)
    ("grid seeds: 0", lambda: expand_grid(grid(seeds=0)), GridError, r"'seeds' gives no seed"),
    ("grid betas: []", lambda: expand_grid(grid(betas=[])), GridError, r"beta_vae gets no beta"),
    ("grid seed -1", lambda: expand_grid(grid(seeds=[-1])), GridError, r"seed=-1.*seed must be an integer >= 0"),
    ("grid unknown key", lambda: expand_grid(grid(sedes=3)), GridError, r"sedes"),
    ("grid file a list", "list_grid", GridError, r"list_grid\.yml.*a grid is a mapping"),
    ("grid file missing", lambda: load_grid("/nonexistent/grid.yml"), GridError, r"/nonexistent/grid\.yml"),
    ("run seed 1.5", lambda: RunConfig(seed=1.5), ValueError, r"seed must be an integer >= 0, got 1\.5"),
    ("run layout of fractions", lambda: RunConfig(model="isa_vae", latent_dim=20, layout=(4.5, 4, 4, 4, 3.5)),
     ValueError, r"layout must be whole subspace sizes.*4\.5"),
    ("run p0 as text", lambda: RunConfig(model="isa_vae", p0="2.1"), ValueError,
     r"p0 must be a finite number > 0 for model 'isa_vae', got '2\.1'"),
    ("run amp as text", lambda: RunConfig(amp="yes"), ValueError, r"amp must be True or False"),
    ("run layout against latent size", lambda: RunConfig(model="isa_vae", latent_dim=10, layout=(4, 4)), ValueError,
     r"layout \(4, 4\) sums to 8, not latent_dim 10"),
    # ---- the ledger (a real store: nothing of another application's is touched)
    ("ledger path a directory", lambda: Ledger("/tmp"), LedgerError, r"/tmp is a directory"),
    ("ledger a text file", "text_ledger", LedgerError, r"notes\.db is not an SQLite database"),
    ("ledger another application's database", "foreign_ledger", LedgerError, r"another application.*contacts"),
    ("ledger runs table of another shape", "wrong_runs_ledger", LedgerError, r"'runs' table that is not a ledger's"),
]


@pytest.fixture
def files(tmp_path):
    """The file-based cases: each builds its bad file and returns the failing call."""
    def junk(name):
        p = tmp_path / name
        p.write_bytes(b"this is not the published format " * 64)
        return p

    def corrupt_member():
        p = tmp_path / "corrupt.npz"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("imgs.npy", b"\x93NUMPY garbage")
        return p

    def sqlite_with(sql):
        p = tmp_path / "foreign.db"
        with sqlite3.connect(p) as db:
            db.execute(sql)
        return p

    def crafted_checkpoint():
        p = tmp_path / "ckpt.pt"
        torch.save({"config": Payload(tmp_path / "code_ran"), "step": 0}, p)
        return lambda: train(tiny_model(), images(), TrainConfig(epochs=1, batch_size=4), checkpoint=p,
                             progress=False)

    def list_grid():
        p = tmp_path / "list_grid.yml"
        p.write_text("- beta_vae\n- isa_vae\n")
        return lambda: load_grid(p)

    payload = tmp_path / "payload.npz"
    payload.write_bytes(pickle.dumps(Payload(tmp_path / "code_ran")))
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n")
    return {
        "junk_npz": lambda: datasets.load("dsprites", path=junk("junk.npz")),
        "pickle_npz": lambda: datasets.load("dsprites", path=payload),
        "corrupt_member_npz": lambda: datasets.load("dsprites", path=corrupt_member()),
        "junk_pth": lambda: datasets.load("faces3d", path=junk("junk.pth")),
        "junk_mat": lambda: datasets.load("cars3d", path=junk("junk.mat")),
        "crafted_checkpoint": lambda: crafted_checkpoint()(),
        "list_grid": lambda: list_grid()(),
        "text_ledger": lambda: Ledger(notes),
        "foreign_ledger": lambda: Ledger(sqlite_with("CREATE TABLE contacts (name TEXT, phone TEXT)")),
        "wrong_runs_ledger": lambda: Ledger(sqlite_with("CREATE TABLE runs (id INTEGER, what TEXT)")),
    }


@pytest.mark.parametrize("what, call, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_gets_a_named_error(what, call, error, pattern, files, tmp_path, monkeypatch):
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(error, match=pattern):
        (files[call] if isinstance(call, str) else call)()
    assert not (tmp_path / "code_ran").exists(), "a data file or checkpoint ran code"
    after = {p: p.read_bytes() for p in before if p.exists()}
    assert after == before, "a bad input altered a file that was there before"


def test_the_catalogue_is_large_and_spans_every_entry_point():
    assert len(CASES) >= 40
    for area in ("ISA", "dSprites", "batch_size", "MIG", "-p", "grid", "ledger"):
        assert any(c[0].startswith(area) for c in CASES), area


def test_a_refused_ledger_keeps_its_bytes_and_gets_no_runs_table(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE contacts (name TEXT)")
        db.execute("INSERT INTO contacts VALUES ('ada')")
    raw = path.read_bytes()
    assert sweep_main(["--grid", "experiments/grids/dsprites_small.yml", "--ledger", str(path)]) == 2
    assert path.read_bytes() == raw
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["contacts"]


@pytest.mark.parametrize("argv, message", [
    (["--fuse", "0"], "fuse must be a whole number >= 1"),
    (["--fuse", "-2"], "fuse must be a whole number >= 1"),
])
def test_the_sweep_command_refuses_before_creating_a_ledger(tmp_path, capsys, argv, message):
    path = tmp_path / "new.db"
    assert sweep_main(["--grid", "experiments/grids/dsprites_small.yml", "--ledger", str(path), *argv]) == 2
    assert message in capsys.readouterr().err and not path.exists()


def test_a_run_whose_metric_is_nan_is_failed_not_done(tmp_path, monkeypatch):

    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))

    from isa_lib.metrics import evaluate_model

    def nan_mig(*a, **kw):
        res = evaluate_model(*a, **kw)
        return {**res, "mig": float("nan")}

    monkeypatch.setattr("isa_lib.metrics.evaluate_model", nan_mig)
    c = RunConfig(dataset="dsprites", model="beta_vae", epochs=1.0, batch_size=32, latent_dim=4, layout=(2, 2),
                  hidden=16, image_size=16, mig_samples=32,
                  subgrid={"shape": [0, 1], "scale": [0, 5], "orientation": [0, 10], "posX": [0, 10, 20, 31],
                           "posY": [0, 10, 20, 31]})
    (o,) = run_group([c])
    assert o["status"] == "failed" and o["metrics"] is None
    assert "non-finite mig (mig=nan)" in o["error"]


def test_the_chapter_command_names_a_bad_value_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "out.ipynb"
    assert cli.main(["run", "05", "-p", "seed", "1.5", "--output", str(out)]) == 2
    assert "should be an int" in capsys.readouterr().err and not out.exists()
    assert cli.main(["run", "05", "-p", "beta", "[1, 2", "--output", str(out)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err and not out.exists()


def test_a_scalar_isa_exponent_is_shared_by_every_subspace():
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ISA(2.1, [2, 2], 2.2).log_prob(z), isa().log_prob(z))
    assert torch.equal(ISA(2.1, [2, 2], torch.tensor(2.2)).exponents, torch.tensor([2.2, 2.2]))


@pytest.mark.parametrize("dtype", ["float32", torch.int64, torch.float16, torch.bfloat16, torch.complex64])
def test_the_mig_precision_is_float32_or_float64(dtype):
    from isa_lib import metrics as M
    mu, lv = torch.zeros(60, 3), torch.zeros(60, 3)
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64, got"):
        M.mig_chen(mu, lv, (3, 4, 5), n_samples=10, dtype=dtype)
    with pytest.raises(ValueError, match="mig_dtype must be torch.float32 or torch.float64"):
        M.evaluate_model(lambda x: (_ for _ in ()).throw(AssertionError("encoded before the check")),
                         torch.zeros(60, 1, 4, 4), mig_dtype=dtype)


@pytest.mark.parametrize("case", ["empty", "int", "bool", "complex"])
@pytest.mark.parametrize("kernel", ["streamed", "native"])
def test_log_aggregate_names_an_empty_or_non_real_batch(case, kernel):
    from isa_lib.aggregate_posterior import log_aggregate
    m = 0 if case == "empty" else 4
    dt = {"empty": torch.float32, "int": torch.int32, "bool": torch.bool, "complex": torch.complex64}[case]
    z = torch.zeros(m, 2, dtype=dt)
    w = torch.zeros(m, m, dtype=dt)
    match = "M = 0" if case == "empty" else f"z has dtype {dt}"
    with pytest.raises(ValueError, match=match):
        log_aggregate(z, z, z, w, kernel=kernel)


# ---------------------------------------------------------------------------------------------------------------
# Issue 23, item 4: the experiments package and the sweep command. Each case names the problem before anything
# runs (no ledger created, no file altered), or is handled correctly (a test says which).
import dataclasses  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from isa_lib.experiments import sweep  # noqa: E402
from isa_lib.experiments import ledger as ledger_module  # noqa: E402

SMALL_GRID = "experiments/grids/dsprites_small.yml"


def sqlite_file(path, *sql):
    with sqlite3.connect(path) as db:
        for statement in sql:
            db.execute(statement)
    return path


def a_ledger_with_row(path, **columns):
    """A ledger with one pending run, then ``columns`` written into its row as raw SQL values."""
    ledger = Ledger(path)
    ledger.add([RunConfig()])
    with sqlite3.connect(path) as db:
        for name, value in columns.items():
            db.execute(f"UPDATE runs SET {name} = ?", (value,))
    return ledger


EXPERIMENT_CASES = [
    # ---- grids: a key given as YAML null
    ("grid betas: null", lambda p: expand_grid(grid(betas=None)), GridError, r"'betas' is empty \(null\)"),
    ("grid betas of a model null", lambda p: expand_grid(grid(betas={"beta_vae": None})), GridError,
     r"'betas' of beta_vae must be a number or a list of numbers.*got None"),
    ("grid gammas: null", lambda p: expand_grid(grid(models=["factor_vae"], gammas=None)), GridError,
     r"'gammas' must be a number or a list of numbers.*got None"),
    ("grid betas as text", lambda p: expand_grid(grid(betas="1, 2")), GridError,
     r"'betas' must be a number or a list.*got '1, 2'"),
    ("grid seeds: null", lambda p: expand_grid(grid(seeds=None)), GridError, r"'seeds' must be a count or a list"),
    ("grid seed 2**70", lambda p: expand_grid(grid(seeds=[2 ** 70])), GridError,
     r"seed=1180591620717411303424: seed must be at most 2\*\*63 - 1"),
    # ---- run configurations: values that used to pass, or be replaced, silently
    ("run seed 2**70", lambda p: RunConfig(seed=2 ** 70), ValueError,
     r"seed must be at most 2\*\*63 - 1 = 9223372036854775807 .*got 1180591620717411303424"),
    ("run mig_samples 2**64", lambda p: RunConfig(mig_samples=2 ** 64), ValueError, r"mig_samples must be at most"),
    ("run aggregate 'bogus' on beta-VAE", lambda p: RunConfig(model="beta_vae", aggregate="bogus"), ValueError,
     r"unknown aggregate kernel 'bogus'; choose one of \['dense', 'streamed', 'compiled', 'native'\]"),
    ("run aggregate 'bogus' on ISA-VAE", lambda p: RunConfig(model="isa_vae", aggregate="bogus"), ValueError,
     r"unknown aggregate kernel 'bogus'"),
    ("run aggregate 'bogus' on beta-TCVAE", lambda p: RunConfig(model="beta_tcvae", aggregate="bogus"), ValueError,
     r"unknown aggregate kernel 'bogus'"),
    ("run estimator 'bogus' on beta-VAE", lambda p: RunConfig(model="beta_vae", estimator="bogus"), ValueError,
     r"estimator must be 'mss', 'mws' or None, got 'bogus'"),
    ("run device 'cuda:x'", lambda p: RunConfig(device="cuda:x"), ValueError,
     r"device must be 'cpu', 'cuda', 'cuda:i' or 'mps'.*got 'cuda:x'"),
    ("run device 'gpu'", lambda p: RunConfig(device="gpu"), ValueError, r"device must be.*got 'gpu'"),
    ("run device 'mps:1'", lambda p: RunConfig(device="mps:1"), ValueError, r"there is one MPS device"),
    ("run device None", lambda p: RunConfig(device=None), ValueError, r"device must be.*got None"),
    # ---- the sweep's resources, before a ledger exists
    ("sweep cpus_per_task NaN", lambda p: sweep([RunConfig()], p / "new.db", cpus_per_task=float("nan")),
     ValueError, r"cpus_per_task must be a finite number > 0, got nan"),
    ("sweep cpus_per_task huge", lambda p: sweep([RunConfig()], p / "new.db", cpus_per_task=1e9), ValueError,
     r"cpus_per_task 1e\+09 exceeds the \d+ CPU\(s\) of this machine"),
    ("sweep cpus_per_task 0", lambda p: sweep([RunConfig()], p / "new.db", cpus_per_task=0), ValueError,
     r"cpus_per_task must be a finite number > 0, got 0"),
    ("sweep gpus_per_task inf", lambda p: sweep([RunConfig()], p / "new.db", gpus_per_task=float("inf")),
     ValueError, r"gpus_per_task must be a finite number >= 0, got inf"),
    ("sweep cpus_per_task huge on a local Ray cluster",
     lambda p: sweep([RunConfig()], p / "new.db", backend="ray", cpus_per_task=1e6), ValueError,
     r"cpus_per_task 1e\+06 exceeds"),
    # ---- ledgers that are not files, or not ours
    ("ledger ':memory:'", lambda p: Ledger(":memory:"), LedgerError,
     r"':memory:' is SQLite's in-memory database.*give a file path"),
    ("ledger ''", lambda p: Ledger(""), LedgerError, r"'' is SQLite's temporary database"),
    ("ledger runs table lacking columns", lambda p: Ledger(sqlite_file(
        p / "r.db", "CREATE TABLE runs (config_hash TEXT PRIMARY KEY, config TEXT, status TEXT, metrics TEXT)")),
     LedgerError, r"r\.db has a 'runs' table of another shape.*lacks column\(s\) attempts, beta, created"),
    ("ledger runs table without a key", lambda p: Ledger(sqlite_file(
        p / "k.db", "CREATE TABLE runs (config_hash TEXT, config TEXT, model TEXT, dataset TEXT, beta REAL, "
                    "seed INTEGER, status TEXT, metrics TEXT, error TEXT, created REAL, started REAL, "
                    "finished REAL, duration REAL, versions TEXT, host TEXT, worker TEXT, attempts INTEGER)")),
     LedgerError, r"k\.db has a 'runs' table of another shape.*config_hash is not its primary key"),
    ("ledger lease table of another shape", lambda p: Ledger(sqlite_file(
        p / "l.db", "CREATE TABLE lease (id INTEGER, owner TEXT)")),
     LedgerError, r"l\.db has a 'lease' table of another shape.*columns: id, owner"),
    ("ledger opened read-only that does not exist", lambda p: Ledger(p / "none.db", readonly=True), LedgerError,
     r"none\.db does not exist \(opened read-only, nothing is created\)"),
    # ---- rows whose JSON is not what the ledger writes, met at export
    ("ledger metrics a list, at export", lambda p: a_ledger_with_row(p / "m.db", status="done", metrics="[1, 2]")
     .export_csv(p / "out.csv"), ledger_module.LedgerRowError,
     r"m\.db: run [0-9a-f]{12} has a metrics column that is not a JSON object \(a list: '\[1, 2\]'\)"),
    ("ledger metrics a number, at export", lambda p: a_ledger_with_row(p / "m.db", status="done", metrics="3")
     .to_dataframe(), ledger_module.LedgerRowError, r"metrics column that is not a JSON object \(a int"),
    ("ledger metrics not JSON, at export", lambda p: a_ledger_with_row(p / "m.db", status="done", metrics="{mig")
     .export_csv(p / "out.csv"), ledger_module.LedgerRowError, r"has a metrics column that is not valid JSON"),
    ("ledger config a string", lambda p: a_ledger_with_row(p / "m.db", config='"beta_vae"').rows(),
     ledger_module.LedgerRowError, r"has a config column that is not a JSON object \(a str"),
    ("ledger versions a list", lambda p: a_ledger_with_row(p / "m.db", versions="[]").rows(),
     ledger_module.LedgerRowError, r"has a versions column that is not a JSON object"),
    ("ledger outcome whose metrics are a list",
     lambda p: a_ledger_with_row(p / "m.db").record({"config_hash": RunConfig().config_hash(), "status": "done",
                                                     "metrics": [1, 2]}),
     ValueError, r"an outcome's metrics are a mapping or None, got list \(run [0-9a-f]{12}\)"),
]


@pytest.mark.parametrize("what, call, error, pattern", EXPERIMENT_CASES, ids=[c[0] for c in EXPERIMENT_CASES])
def test_an_experiment_input_gets_a_named_error(what, call, error, pattern, tmp_path, monkeypatch):
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(error, match=pattern):
        call(tmp_path)
    assert not (tmp_path / "new.db").exists(), "a refused sweep created its ledger"
    assert not (tmp_path / "out.csv").exists(), "a refused export wrote a file"


def test_the_catalogues_hold_more_than_a_hundred_named_cases():
    """The tables of named cases (CASES, EXPERIMENT_CASES, and FORGERIES, CHECKPOINT_CASES and
    SAMPLE_AND_IMAGE_CASES defined further down: looked up when the test runs); the parametrised tests beside
    them add more."""
    assert len(CASES) + len(EXPERIMENT_CASES) + len(globals()["FORGERIES"]) >= 100
    assert len(globals()["CHECKPOINT_CASES"]) + len(globals()["SAMPLE_AND_IMAGE_CASES"]) >= 30


@pytest.mark.parametrize("argv, message", [
    (["--cpus-per-task", "nan"], "cpus_per_task must be a finite number > 0, got nan"),
    (["--cpus-per-task", "inf"], "cpus_per_task must be a finite number > 0, got inf"),
    (["--cpus-per-task", "1e9"], "cpus_per_task 1e+09 exceeds the"),
    (["--cpus-per-task", "-1"], "cpus_per_task must be a finite number > 0, got -1.0"),
    (["--gpus-per-task", "nan"], "gpus_per_task must be a finite number >= 0, got nan"),
    (["--backend", "ray", "--cpus-per-task", "1e6"], "cpus_per_task 1e+06 exceeds the"),
    (["--device", "cpu:x"], "device must be 'cpu', 'cuda', 'cuda:i' or 'mps'"),
])
def test_the_sweep_command_refuses_bad_resources_before_anything_runs(tmp_path, capsys, argv, message):
    path = tmp_path / "new.db"
    assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(path), *argv]) == 2
    assert message in capsys.readouterr().err and not path.exists()


def test_the_sweep_command_refuses_an_in_memory_ledger(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in (":memory:", ""):
        assert sweep_main(["--grid", str(Path(__file__).parents[1] / SMALL_GRID), "--ledger", name]) == 2
        assert "which every connection sees new and empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_grid_file_with_betas_null_is_named(tmp_path, capsys):
    p = tmp_path / "g.yml"
    p.write_text("scale: small\nmodels: [beta_vae]\nbetas:\nseeds: 1\n")
    with pytest.raises(GridError, match=r"g\.yml: 'betas' is empty \(null\)"):
        load_grid(p)
    assert sweep_main(["--grid", str(p), "--ledger", str(tmp_path / "new.db")]) == 2
    assert "'betas' is empty (null)" in capsys.readouterr().err and not (tmp_path / "new.db").exists()


def make_read_only(path, monkeypatch):
    """Make ``path`` a read-only ledger: its mode 0444, and where permissions do not bind (root) every
    connection to it opened read-only, as SQLite opens a file it may not write."""
    os.chmod(path, 0o444)
    if os.access(path, os.W_OK):
        real = sqlite3.connect

        def connect(database, *args, **kw):
            if str(database) == str(path):
                database, kw = f"file:{path}?mode=ro", {**kw, "uri": True}
            return real(database, *args, **kw)

        monkeypatch.setattr(ledger_module.sqlite3, "connect", connect)


def test_a_read_only_ledger_is_named_before_a_sweep_and_can_still_be_listed_and_exported(tmp_path, capsys,
                                                                                          monkeypatch):
    path = tmp_path / "ro.db"
    configs = load_grid(SMALL_GRID)
    ledger = Ledger(path)
    ledger.add(configs[:2])
    ledger.record({"config_hash": configs[0].config_hash(), "status": "done", "duration": 1.0,
                   "metrics": {"mig": 0.25, "versions": {"torch": "x"}}})
    make_read_only(path, monkeypatch)
    raw = path.read_bytes()
    with pytest.raises(ledger_module.LedgerReadOnlyError, match=r"ro\.db is read-only .*a sweep records its runs"):
        sweep(configs, path, progress=False)
    assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(path)]) == 2
    assert "is read-only" in capsys.readouterr().err
    out = tmp_path / "ro.csv"
    assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(path), "--dry-run", "--export", str(out)]) == 0
    listed = capsys.readouterr().out
    assert f"{configs[0].config_hash()[:12]}  done" in listed and f"{configs[1].config_hash()[:12]}  pending" in listed
    assert "0.25" in out.read_text()
    assert path.read_bytes() == raw
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


def test_the_sweep_command_names_a_row_it_cannot_export(tmp_path, capsys):
    path = tmp_path / "m.db"
    a_ledger_with_row(path, status="done", metrics="[0.5]")
    out = tmp_path / "m.csv"
    assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(path), "--dry-run", "--export", str(out)]) == 2
    assert "has a metrics column that is not a JSON object" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("row", [
    "(1, NULL, NULL, NULL, NULL, NULL)",                              # every field NULL
    "(1, 'node-7', NULL, NULL, NULL, 'sweep')",                       # no heartbeat at all
    "(1, 'node-7', 4242, 'yesterday', 'noon', 'sweep')",              # times as text
    "(1, HOST, NULL, NULL, FUTURE, NULL)",                            # a heartbeat far in the future
])
def test_a_lease_row_no_live_sweep_would_leave_is_taken_over(tmp_path, row):
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease():                       # (makes the lease table)
        pass
    row = row.replace("HOST", repr(socket.gethostname())).replace("FUTURE", repr(time.time() + 1e9))
    sqlite_file(ledger.path, f"INSERT INTO lease VALUES {row}")
    with ledger.lease():
        holder = ledger.lease_holder()
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    assert ledger.lease_holder() is None


def test_a_lease_row_with_a_null_pid_and_a_fresh_heartbeat_still_holds(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease():
        pass
    sqlite_file(ledger.path, f"INSERT INTO lease VALUES (1, '{socket.gethostname()}', NULL, NULL, {time.time()}, "
                             f"NULL)")
    with pytest.raises(ledger_module.LedgerBusyError, match=r"pid None on .*started at an unknown time"):
        with ledger.lease():
            pass


def test_cpu_0_is_the_cpu_and_hashes_as_cpu():
    for model in ("beta_vae", "isa_vae", "beta_tcvae"):
        cpu = RunConfig(model=model, beta=2.0)
        for spelling in ("cpu:0", "cpu:1"):
            same = RunConfig(model=model, beta=2.0, device=spelling)
            assert same.device == "cpu" and same == cpu and same.config_hash() == cpu.config_hash()
        assert dataclasses.replace(cpu, device="cpu:0").config_hash() == cpu.config_hash()
    assert RunConfig(device="mps:0").config_hash() == RunConfig(device="mps").config_hash()
    assert RunConfig(device="cuda:1").config_hash() != RunConfig(device="cuda").config_hash()  # may differ


def test_an_unused_but_known_aggregate_or_estimator_is_still_cleared():
    """Known kernels and estimators stay cleared for the models that do not use them (one hash per run)."""
    plain = RunConfig(model="beta_vae")
    for kw in ({"aggregate": "streamed"}, {"aggregate": "native"}, {"estimator": "mws"}):
        c = RunConfig(model="beta_vae", **kw)
        assert (c.aggregate, c.estimator) == ("dense", None) and c.config_hash() == plain.config_hash()


COMMITTED_LEDGERS = sorted({*glob.glob(str(Path(__file__).parents[1] / "results" / "*.db"))})


def test_the_committed_ledgers_include_the_three_studies():
    names = {Path(p).name for p in COMMITTED_LEDGERS}
    assert {"dsprites_budget.db", "dsprites_large.db", "dsprites_medium.db"} <= names


@pytest.mark.parametrize("path", COMMITTED_LEDGERS, ids=[Path(p).name for p in COMMITTED_LEDGERS])
def test_every_committed_row_keeps_its_config_hash(path):
    """A change of validation (device spelling, bounds, cleared fields) must not change any existing key:
    the running studies find their rows by these hashes. Opened read-only."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT config_hash, config FROM runs").fetchall()
    assert rows, f"{path} has no rows"
    changed = [(h[:12], RunConfig.from_dict(json.loads(c)).config_hash()[:12]) for h, c in rows
               if RunConfig.from_dict(json.loads(c)).config_hash() != h]
    assert changed == []


# ---------------------------------------------------------------------------------------------------------------
# Issue 23, item 2: dSprites files are read without pickle. The data members are plain numeric arrays, checked
# from their headers (an object-typed member is refused by name); the factor sizes come from the specification;
# the original's pickled ``metadata`` member is never opened, so no object array is ever built from a file.
import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from isa_lib.datasets import dsprites  # noqa: E402

DSPRITES_SUBGRID = {"scale": [0, 5], "orientation": [0, 20], "posX": [0, 5, 31], "posY": [2, 9]}


class ForgedObjectDtype:
    """numpy's object dtype as it pickles, with flags that drop 'pickled as a list': an array of it is then
    built over raw bytes from the file, i.e. over forged pointers (the red team's SIGSEGV)."""

    def __reduce__(self):
        return (np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 61))


class ForgedObjectArray:
    def __reduce__(self):
        reconstruct = getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct
        return (reconstruct, (np.ndarray, (0,), b"b"), (1, (), ForgedObjectDtype(), False, b"\x41" * 8))


def npy_member(descr, shape, payload: bytes) -> bytes:
    """An .npy member: a format 1.0 header saying ``descr`` and ``shape``, then ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def npz_with(src, dst, **members):
    """A copy of the .npz ``src`` with ``members`` (name -> raw .npy bytes) put in place of its own."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name[:-4] not in members:
                zout.writestr(name, zin.read(name))
        for name, raw in members.items():
            zout.writestr(f"{name}.npy", raw)
    return dst


@pytest.fixture
def small_dsprites_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    ds = datasets.load("dsprites", subgrid=DSPRITES_SUBGRID)
    return ds, datasets.export(ds, tmp_path / "good.npz")


@pytest.fixture
def no_pickle(monkeypatch):
    """Every way into pickle (numpy's object-array reader calls pickle.load) fails the test."""
    def refuse(*a, **kw):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


@pytest.mark.parametrize("member", ["imgs", "latents_values", "latents_classes"])
def test_dsprites_an_object_typed_data_member_is_refused_by_name_and_never_unpickled(member, small_dsprites_file,
                                                                                      tmp_path, no_pickle):
    ds, good = small_dsprites_file
    n = len(ds)
    shape = (n, 64, 64) if member == "imgs" else (n, 6)
    sentinel = tmp_path / "code_ran"
    raw = npy_member("|O", shape, pickle.dumps([Payload(sentinel)] * n, protocol=2))
    bad = npz_with(good, tmp_path / f"{member}_object.npz", **{member: raw})
    with pytest.raises(dsprites.ObjectMemberError, match=rf"object\.npz: member {member}\.npy holds Python "
                                                         rf"objects \(dtype object\).*never read"):
        dsprites.read_npz(bad, ds.factor_sizes)
    with pytest.raises(datasets.DatasetFormatError, match="holds Python objects"):
        datasets.load("dsprites", path=bad)
    assert not sentinel.exists()


def test_dsprites_a_crafted_metadata_member_is_never_opened(small_dsprites_file, tmp_path, no_pickle):
    ds, good = small_dsprites_file
    sentinel = tmp_path / "code_ran"
    crafted = npz_with(good, tmp_path / "crafted.npz",
                       metadata=npy_member("|O", (), pickle.dumps(Payload(sentinel), protocol=2)))
    for f in (good, crafted):          # our own export's metadata is a pickle too, as in the original file
        d = dsprites.read_npz(f, ds.factor_sizes)
        assert d["factor_sizes"] == ds.factor_sizes and d["metadata"] is None
        assert np.array_equal(d["imgs"], ds.images[:, 0].numpy())
    assert not sentinel.exists()


def test_dsprites_headers_are_checked_before_anything_is_loaded(small_dsprites_file, tmp_path):
    ds, good = small_dsprites_file
    huge = npz_with(good, tmp_path / "huge.npz", imgs=npy_member("|u1", (10 ** 12, 64, 64), b""))
    with pytest.raises(datasets.DatasetFormatError, match=r"huge\.npz: imgs has shape \(1000000000000, 64, 64\)"):
        dsprites.read_npz(huge, ds.factor_sizes)
    floats = npz_with(good, tmp_path / "floats.npz", imgs=npy_member("<f8", (len(ds), 64, 64), b""))
    with pytest.raises(datasets.DatasetFormatError, match=r"imgs must be binary uint8, got dtype float64"):
        dsprites.read_npz(floats, ds.factor_sizes)
    text = npz_with(good, tmp_path / "text.npz", latents_values=npy_member("<U3", (len(ds), 6), b""))
    with pytest.raises(datasets.DatasetFormatError, match=r"latents_values must be numeric, got dtype <U3"):
        dsprites.read_npz(text, ds.factor_sizes)


def test_dsprites_the_red_teams_forged_object_array_cannot_crash_the_reader(small_dsprites_file, tmp_path):
    """The metadata member that made the restricted unpickler build an object array over forged pointers
    (SIGSEGV at 2d84c1a), and the same pickle as a data member: read in a child process, so that a
    regression fails this test instead of killing the test run."""
    ds, good = small_dsprites_file
    forged = pickle.dumps(ForgedObjectArray(), protocol=2)
    meta = npz_with(good, tmp_path / "forged_meta.npz", metadata=npy_member("|O", (), forged))
    data = npz_with(good, tmp_path / "forged_imgs.npz", imgs=npy_member("|O", (len(ds), 64, 64), forged))
    child = (
        "import sys\n"
        "from isa_lib.datasets import dsprites\n"
        f"sizes = {tuple(ds.factor_sizes)!r}\n"
        f"d = dsprites.read_npz({str(meta)!r}, sizes)\n"
        "print('metadata-file-read', d['metadata'], d['factor_sizes'] == sizes, flush=True)\n"
        "try:\n"
        f"    dsprites.read_npz({str(data)!r}, sizes)\n"
        "except dsprites.ObjectMemberError as err:\n"
        "    print('refused:', err, flush=True)\n")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"the reader crashed or failed (rc {out.returncode}): {out.stderr[-2000:]}"
    assert "metadata-file-read None True" in out.stdout
    assert "refused:" in out.stdout and "member imgs.npy holds Python objects" in out.stdout


# ---------------------------------------------------------------------------------------------------------------
# Issue 23, item 3: side files (outcomes a ledger refused) can no longer be forged. They live only beside the
# ledger (<ledger>.unrecorded/, this user's, writable by no one else), carry the ledger's path and a digest of
# its rows, and are checked against their schema before use; a bad one is quarantined with a SideFileWarning,
# never blocks a sweep, and records nothing. At 2d84c1a every planted file below made its run 'done'.
import random  # noqa: E402
import warnings  # noqa: E402

SideFileWarning = ledger_module.SideFileWarning


def ledger_with_a_side_file(tmp_path, monkeypatch, mig=0.5):
    """A ledger with two queued runs and the side file its keep() wrote when every write failed."""
    monkeypatch.setattr(ledger_module, "WRITE_WAIT_S", 0.0)
    path = tmp_path / "l.db"
    configs = [RunConfig(seed=s) for s in (0, 1)]
    ledger = Ledger(path)
    ledger.add(configs)
    sqlite_file(path, "CREATE TRIGGER fail BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(ledger_module.LedgerWriteError):
        ledger.keep([{"config_hash": c.config_hash(), "status": "done", "duration": 1.0,
                      "metrics": {"mig": mig, "versions": {"torch": "x"}}} for c in configs])
    sqlite_file(path, "DROP TRIGGER fail")
    (side,) = ledger.side_folder().glob("*.json")
    return ledger, configs, side


def recover_expecting_quarantine(ledger, side, reason):
    with pytest.warns(SideFileWarning, match=reason):
        assert ledger.recover_side_files() == 0
    assert set(ledger.statuses().values()) == {"pending"}, "a quarantined side file recorded a run"
    if side.name.endswith(".json"):
        assert not side.exists() or side.is_symlink()
        assert (ledger.side_folder() / "quarantine" / side.name).exists() or side.is_symlink()


def rewrite(side, change):
    payload = json.loads(side.read_text())
    change(payload)
    side.write_text(json.dumps(payload))


def test_a_genuine_side_file_is_read_back(tmp_path, monkeypatch):
    ledger, configs, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SideFileWarning)
        assert ledger.recover_side_files() == 2
    assert {r["config_hash"]: r["metrics"]["mig"] for r in ledger.rows()} == {c.config_hash(): 0.5 for c in configs}
    assert not side.exists() and not (ledger.side_folder() / "quarantine").exists()


FORGERIES = [
    # (what, how the genuine file is changed, the reason the warning must give)
    ("a file in the old format", lambda p: [p.pop(k) for k in ("format", "version", "rows_digest", "saved")],
     r"not a side file of this library: format None"),
    ("another ledger's path", lambda p: p.update(ledger="/elsewhere/l.db"), r"written for ledger '/elsewhere/l\.db'"),
    ("a digest that is not this ledger's", lambda p: p.update(rows_digest="0" * 64),
     r"digest does not match this ledger's rows"),
    ("no digest", lambda p: p.update(rows_digest=None), r"carries no digest"),
    ("a run this ledger never queued", lambda p: p["outcomes"][0].update(config_hash="ab" * 32),
     r"run\(s\) abababababab are not in this ledger"),
    ("status 'running'", lambda p: p["outcomes"][0].update(status="running"), r"outcome 0 has status 'running'"),
    ("'done' without metrics", lambda p: p["outcomes"][1].update(metrics=None), r"outcome 1 is 'done' without"),
    ("metrics a list", lambda p: p["outcomes"][0].update(metrics=[1, 2]), r"metrics that are not an object"),
    ("a run twice", lambda p: p["outcomes"].append(dict(p["outcomes"][0])), r"outcome 2 repeats run"),
    ("no outcomes", lambda p: p.update(outcomes=[]), r"no list of outcomes"),
    ("an unknown key", lambda p: p.update(exec="rm -rf ~"), r"unknown key\(s\) \['exec'\]"),
    ("a hash of the wrong form", lambda p: p["outcomes"][0].update(config_hash="../../etc"),
     r"outcome 0 has no valid config_hash"),
    ("a duration as text", lambda p: p["outcomes"][0].update(duration="1 s"), r"duration that is not a number"),
]


@pytest.mark.parametrize("what, change, reason", FORGERIES, ids=[f[0] for f in FORGERIES])
def test_a_forged_side_file_is_quarantined_and_records_nothing(what, change, reason, tmp_path, monkeypatch):
    ledger, _, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    rewrite(side, change)
    recover_expecting_quarantine(ledger, side, reason)


@pytest.mark.parametrize("content, reason", [
    ("{not json", r"cannot be read as JSON"),
    ("[1, 2, 3]", r"a JSON list, not an object"),
    ("\xff\xfe", r"cannot be read as JSON"),
])
def test_a_malformed_side_file_is_named_and_never_blocks_a_sweep(content, reason, tmp_path, monkeypatch):
    ledger, configs, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    side.write_bytes(content.encode("latin-1"))
    recover_expecting_quarantine(ledger, side, reason)
    # a sweep over a ledger with a bad side file goes on: here its runs are done, so it runs nothing
    for c in configs:
        ledger.record({"config_hash": c.config_hash(), "status": "done", "metrics": {"mig": 0.1}})
    (ledger.side_folder() / "again.json").write_bytes(content.encode("latin-1"))
    with pytest.warns(SideFileWarning, match=reason):
        summary = sweep(configs, ledger.path, progress=False)
    assert summary["done"] == 2 and summary["ran"] == 0


def test_a_side_file_of_a_ledger_made_again_at_the_same_path_is_refused(tmp_path, monkeypatch):
    ledger, configs, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    kept = side.read_bytes()
    for p in tmp_path.glob("l.db*"):
        if p.is_file():
            p.unlink()
    again = Ledger(tmp_path / "l.db")
    time.sleep(0.01)                             # (creation times then differ even on a coarse clock)
    again.add(configs)
    side.write_bytes(kept)
    recover_expecting_quarantine(again, side, r"digest does not match")


def test_a_side_file_planted_as_a_link_is_refused(tmp_path, monkeypatch):
    ledger, _, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    target = tmp_path / "elsewhere.json"
    os.replace(side, target)
    link = ledger.side_folder() / "planted.json"
    link.symlink_to(target)
    with pytest.warns(SideFileWarning, match=r"planted\.json is not trusted \(not a regular file\)"):
        assert ledger.recover_side_files() == 0
    assert set(ledger.statuses().values()) == {"pending"} and target.exists()


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="changing a file's owner needs root")
def test_a_side_file_of_another_user_is_refused(tmp_path, monkeypatch):
    ledger, _, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    os.chown(side, 4321, 4321)
    recover_expecting_quarantine(ledger, side, r"owned by uid 4321, not by this user")


def test_a_side_file_folder_others_may_write_is_not_read(tmp_path, monkeypatch):
    ledger, _, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    os.chmod(ledger.side_folder(), 0o777)
    with pytest.warns(SideFileWarning, match=r"l\.db\.unrecorded is not trusted \(writable by others"):
        assert ledger.recover_side_files() == 0
    assert set(ledger.statuses().values()) == {"pending"} and side.exists()
    # and nothing new is written into it
    sqlite_file(ledger.path, "CREATE TRIGGER fail BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'full'); END")
    with pytest.raises(ledger_module.LedgerWriteError, match="no side file could be written"):
        ledger.keep([{"config_hash": RunConfig(seed=0).config_hash(), "status": "done", "metrics": {"mig": 1.0}}])
    assert list(ledger.side_folder().glob("*.json")) == [side]


def test_side_files_in_the_shared_temporary_directory_are_never_read(tmp_path, monkeypatch):
    """2d84c1a read outcomes from <tmp>/isa-vae-unrecorded/<key>/, where any local user can write."""
    import hashlib

    ledger, configs, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    key = hashlib.sha1(str(Path(ledger.path).resolve()).encode()).hexdigest()[:12]
    shared = tmp_path / "tmp" / "isa-vae-unrecorded" / key
    shared.mkdir(parents=True)
    os.replace(side, shared / side.name)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SideFileWarning)
        assert ledger.recover_side_files() == 0
    assert set(ledger.statuses().values()) == {"pending"} and (shared / side.name).exists()


def _mutations(rng, payload):
    """One random change of a genuine side file, and whether the file stays genuine after it."""
    o = rng.choice(payload["outcomes"])
    junk = rng.choice([None, 0, -1.5, True, "", "x" * 70, [], {}, ["done"], {"mig": 1}])
    options = [
        (lambda: o["metrics"].update(mig=rng.random()), True),            # content the schema allows
        (lambda: o.update(duration=rng.random() * 100), True),
        (lambda: payload.update(worker=f"w{rng.randrange(99)}"), True),
        (lambda: payload.pop(rng.choice(["format", "version", "ledger", "outcomes"])), False),
        (lambda: payload.update({rng.choice(["format", "version", "ledger", "outcomes", "rows_digest"]): junk}),
         False),
        (lambda: o.update(config_hash="".join(rng.choice("0123456789abcdef") for _ in range(64))), False),
        (lambda: o.update(status=rng.choice(["pending", "running", "DONE", None, 1])), False),
        (lambda: o.update(metrics=rng.choice([[], "0.5", 1, True])), False),
        (lambda: o.update(error=rng.choice([1, [], {}])), False),
        (lambda: payload.update(rows_digest="".join(rng.choice("0123456789abcdef") for _ in range(64))), False),
        (lambda: payload.update(ledger=payload["ledger"] + rng.choice(["x", "/", ".db"])), False),
        (lambda: payload["outcomes"].append(rng.choice([junk, dict(o)])), False),
        (lambda: payload.update({rng.choice(["extra", "__class__", "code"]): junk}), False),
    ]
    change, genuine = rng.choice(options)
    change()
    return genuine


def test_property_a_side_file_is_recorded_only_as_written_and_anything_else_is_quarantined(tmp_path, monkeypatch):
    """Random single changes to a genuine side file (seeded, 300 of them): the sweep's recovery never raises;
    a change the schema allows is recorded exactly as the file says, any other quarantines the file and
    leaves every row as it was."""
    ledger, configs, side = ledger_with_a_side_file(tmp_path, monkeypatch)
    genuine = json.loads(side.read_text())
    os.unlink(side)
    rng = random.Random(23)
    seen = {True: 0, False: 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SideFileWarning)
        for k in range(300):
            seen[_one_random_side_file(ledger, genuine, rng, k)] += 1
    assert min(seen.values()) > 30                      # both kinds were drawn often


def _one_random_side_file(ledger, genuine, rng, k) -> bool:
    """Write one randomly changed side file, recover, and check the property; returns whether it was genuine."""
    sqlite_file(ledger.path, "UPDATE runs SET status = 'pending', metrics = NULL")
    payload = json.loads(json.dumps(genuine))
    ok = _mutations(rng, payload)
    f = ledger.side_folder() / f"case{k}.json"
    f.write_text(json.dumps(payload))
    os.chmod(f, 0o600)
    n = ledger.recover_side_files()
    rows = {r["config_hash"]: r for r in ledger.rows()}
    if ok:
        assert n == 2 and not f.exists(), payload
        for o in payload["outcomes"]:
            assert rows[o["config_hash"]]["status"] == "done"
            assert rows[o["config_hash"]]["metrics"]["mig"] == o["metrics"]["mig"]
    else:
        assert n == 0 and (ledger.side_folder() / "quarantine" / f.name).exists(), payload
        assert {r["status"] for r in rows.values()} == {"pending"}, payload
    return ok


# ---------------------------------------------------------------------------------------------------------------
# Issue 23, items 4 and 5: a warm-up longer than the run, and Ray resource requests no node can meet.
def test_a_beta_warmup_longer_than_the_run_is_named():
    from isa_lib.experiments import config_for

    steps = config_for("small").steps
    with pytest.raises(ValueError, match=rf"beta_warmup_steps {steps + 1} is longer than the run's {steps} steps"):
        config_for("small", beta_warmup_steps=steps + 1)
    assert config_for("small", beta_warmup_steps=steps).beta_warmup_steps == steps


@pytest.mark.parametrize("nodes, cpus, gpus, ok", [
    ([{"Alive": True, "Resources": {"CPU": 2.0}}], 1, 0, True),
    ([{"Alive": True, "Resources": {"CPU": 2.0}}], 1, 1, False),                       # GPUs asked, none there
    ([{"Alive": True, "Resources": {"CPU": 2.0}}], 4, 0, False),
    ([{"Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 8.0}}],
     4, 1, False),                                                                     # no one node has both
    ([{"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}], 1, 1, False),           # the only such node is gone
    ([{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}}], 4, 0.5, True),
    ([], 1, 0, False),
])
def test_a_ray_request_no_node_can_hold_is_named(nodes, cpus, gpus, ok):
    from isa_lib.experiments.sweeps import ClusterResourceError, check_cluster

    if ok:
        check_cluster(nodes, cpus, gpus)
    else:
        with pytest.raises(ClusterResourceError, match=rf"no node of the Ray cluster can hold a task of {cpus:g} "
                                                       rf"CPU\(s\) and {gpus:g} GPU\(s\).*would wait forever"):
            check_cluster(nodes, cpus, gpus)


def test_a_ray_sweep_asking_for_gpus_on_a_cluster_without_any_fails_before_anything_runs(tmp_path, monkeypatch,
                                                                                         capsys):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)      # a cluster already up (nothing is started)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    monkeypatch.setattr(ray, "remote", lambda *a, **kw: pytest.fail("a task was submitted"))
    path = tmp_path / "l.db"
    from isa_lib.experiments.sweeps import ClusterResourceError

    with pytest.raises(ClusterResourceError, match=r"1 GPU\(s\) \(its nodes: 2 CPU / 0 GPU\)"):
        sweep(load_grid(SMALL_GRID), path, backend="ray", gpus_per_task=1, progress=False)
    assert Ledger(path).counts() == {} and Ledger(path).lease_holder() is None
    assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(path), "--backend", "ray", "--gpus-per-task", "1"]) == 2
    assert "no node of the Ray cluster can hold" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1:CLOSED", r"127\.0\.0\.1:\d+: .*(refused|Connection)"),
    ("ray://127.0.0.1:CLOSED", r"127\.0\.0\.1:\d+"),
    ("ray://:10001", r"names no host"),
    (":6379", r"names no host"),
])
def test_an_unreachable_ray_address_is_one_named_error_within_its_timeout(address, reason, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from isa_lib.experiments.sweeps import RayConnectionError, start_ray

    monkeypatch.setattr(ray, "init", lambda *a, **kw: pytest.fail("ray.init was called"))
    address = address.replace("CLOSED", str(_closed_port()))
    t0 = time.monotonic()
    with pytest.raises(RayConnectionError, match=reason):
        start_ray(address, connect_timeout_s=1.0)
    assert time.monotonic() - t0 < 30            # bounded by the timeout (generous: a loaded machine)


def test_the_sweep_command_names_an_unreachable_ray_address(tmp_path, capsys):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(tmp_path / "l.db"), "--backend", "ray",
                       "--address", address]) == 2
    assert f"cannot reach the Ray cluster at {address}" in capsys.readouterr().err
    assert Ledger(tmp_path / "l.db").counts() == {}


@pytest.mark.parametrize("argv", [["run", "05", "--dry-run", "--threads", "100000"],
                                  ["quickstart", "--threads", "100000"]])
def test_the_chapter_command_refuses_more_threads_than_cores(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert f"threads 100000 exceeds the {os.cpu_count()} CPU(s) of this machine" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [
    (grid(seeds=10 ** 9), r"'seeds' asks for 1,000,000,000 seeds, more than a grid may have runs \(100,000\)"),
    (grid(models=["beta_vae", "isa_vae"], betas=list(range(1, 1001)), seeds=100),
     r"the grid has 200,000 runs, more than 100,000"),
    (grid(betas=[1.0, 2.0], seeds=60_000), r"the grid has 120,000 runs"),
])
def test_a_grid_too_large_to_be_meant_is_named_before_it_is_expanded(spec, message):
    with pytest.raises(GridError, match=message):
        expand_grid(spec)


def test_a_repeat_is_not_copied_from_a_row_whose_metrics_are_not_an_object(tmp_path):
    tc = RunConfig(model="beta_tcvae", beta=1.0)           # repeats beta-VAE at beta = 1 (copied, not run)
    ledger = Ledger(tmp_path / "l.db")
    ledger.add([tc, tc.equivalent()])
    sqlite_file(ledger.path, f"UPDATE runs SET status = 'done', metrics = '[0.5]' "
                             f"WHERE config_hash = '{tc.equivalent().config_hash()}'")
    with pytest.raises(ledger_module.LedgerRowError, match=rf"run {tc.equivalent().config_hash()[:12]} has a "
                                                            rf"metrics column that is not a JSON object"):
        ledger.fill_equivalents([tc])
    assert ledger.statuses()[tc.config_hash()] == "pending"


# ---------------------------------------------------------------------------------------------------------------
# Issue 23, round two: checkpoints that are not this run's, sample shapes, pixel ranges, the lease's clock and an
# open port that is not Ray. The trainer names each bad checkpoint before any part of it reaches the model; a
# sweep discards it (CheckpointDiscardedWarning) and trains afresh, with the numbers of a run that never saw it.
import shutil  # noqa: E402
import threading  # noqa: E402
import warnings as _warnings  # noqa: E402

from isa_lib.datasets import GroundTruthDataset, ImageRangeError  # noqa: E402
from isa_lib.experiments.run import CheckpointDiscardedWarning, checkpoint_path  # noqa: E402
from isa_lib.lpnested import LpNested, PGeneralizedNormal, isa_tree  # noqa: E402
from isa_lib.train import CheckpointAheadError, load_checkpoint, save_checkpoint, train_many  # noqa: E402

CKPT_CFG = TrainConfig(epochs=2, batch_size=4, checkpoint_every=2)        # 4 steps on 8 images


def genuine_checkpoint(path, model=None, max_steps=3):
    """A checkpoint that ``train`` wrote for ``tiny_model()`` (or ``model``) after ``max_steps`` steps."""
    train(model or tiny_model(), images(), CKPT_CFG, checkpoint=path, progress=False, max_steps=max_steps)
    return load_checkpoint(path)


def changed_checkpoint(change):
    """A case: write a genuine checkpoint, change it (``change(state, path)`` returns what to save, or None when
    it has put something else at the path itself)."""
    def make(path):
        state = change(genuine_checkpoint(path), path)
        if state is not None:
            path.unlink()
            torch.save(state, path)
    return make


def as_directory(state, path):
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("kept")


def without(key):
    return lambda s, p: {k: v for k, v in s.items() if k != key}


def wider_older_checkpoint(path):
    """A checkpoint of a 32-unit MLP as written before checkpoints carried the model's fingerprint."""
    state = genuine_checkpoint(path, model=build_vae("mlp", 4, net_size={"hidden": 32, "image_size": 16}))
    torch.save(without("model_spec")(state, path), path)


CHECKPOINT_CASES = [
    # (what, how the file is made, the model resumed into (None: tiny_model()), pattern)
    ("a list", lambda p: torch.save([1, 2, 3], p), None, r"holds list data, not a checkpoint"),
    ("a number", lambda p: torch.save(7, p), None, r"holds int data, not a checkpoint"),
    ("without config", changed_checkpoint(without("config")), None, r"has no 'config'"),
    ("without a model", changed_checkpoint(without("model")), None, r"has no 'model'"),
    ("without a step", changed_checkpoint(without("step")), None, r"has step None"),
    ("a directory", changed_checkpoint(as_directory), None, r"is a directory, not a checkpoint file"),
    ("another model: an ISA prior, same train config", lambda p: genuine_checkpoint(p), "isa",
     r"written for another model with the same training configuration"),
    ("another model: other fixed ISA exponents", lambda p: genuine_checkpoint(p, model=isa_model(2.2)), "isa1.5",
     r"written for another model with the same training configuration"),
    ("another model, older checkpoint without a fingerprint", changed_checkpoint(without("model_spec")), "isa",
     r"written for another model \(model: missing \['prior\.fixed_exponents"),
    ("another width, older checkpoint", lambda p: wider_older_checkpoint(p), None,
     r"written for another model \(model: of another shape or dtype"),
    ("a step beyond the run's end", changed_checkpoint(lambda s, p: {**s, "step": 10 ** 9}), None,
     r"at step 1000000000, beyond the end of this run \(4 steps\)"),
    ("a negative step", changed_checkpoint(lambda s, p: {**s, "step": -1}), None, r"has step -1, not a whole"),
    ("a step as text", changed_checkpoint(lambda s, p: {**s, "step": "3"}), None, r"has step '3'"),
    ("a history past its step", changed_checkpoint(lambda s, p: {**s, "history": [{"step": 99}]}), None,
     r"'history' logs step 99, after the checkpoint's step 3"),
    ("a generator state of floats", changed_checkpoint(lambda s, p: {**s, "generator": torch.zeros(5)}), None,
     r"'generator' is not a generator state"),
    ("a data order of another length", changed_checkpoint(lambda s, p: {**s, "order": torch.arange(3)}), None,
     r"'order' is not a data order of 8 images"),
    ("an optimiser state of another model", changed_checkpoint(
        lambda s, p: {**s, "optimizer": {"state": {}, "param_groups": []}}), None, r"optimiser of another model"),
]


def isa_model(p=2.2, seed=0):
    return build_vae("mlp", 4, prior="isa", sizes=[2, 2], p0=2.1, exponents=p, seed=seed, net_size=NET)


def _model_for(kind):
    return {None: tiny_model, "isa": isa_model, "isa1.5": lambda: isa_model(1.5)}[kind]()


@pytest.mark.parametrize("what, make, kind, pattern", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_a_checkpoint_that_is_not_this_runs_is_named_before_it_reaches_the_model(what, make, kind, pattern,
                                                                                  tmp_path):
    path = tmp_path / "ckpt.pt"
    make(path)
    model = _model_for(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    raw = path.read_bytes() if path.is_file() else None
    with pytest.raises(CheckpointError, match=pattern):
        train(model, images(), CKPT_CFG, checkpoint=path, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model was changed"
    assert raw is None or path.read_bytes() == raw, "the refused checkpoint was altered"


def test_a_fused_training_names_a_checkpoint_that_is_a_list_or_of_other_models(tmp_path):
    cfgs = [dataclasses.replace(CKPT_CFG, seed=s) for s in (0, 1)]
    path = tmp_path / "k.pt"
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match=r"holds list data"):
        train_many([tiny_model(0), tiny_model(1)], images(), cfgs, checkpoint=path, progress=False)
    path.unlink()
    train_many([isa_model(2.2, 0), isa_model(2.2, 1)], images(), cfgs, checkpoint=path, progress=False, max_steps=2)
    with pytest.raises(CheckpointError, match=r"written for other models with the same training configurations"):
        train_many([isa_model(1.5, 0), isa_model(1.5, 1)], images(), cfgs, checkpoint=path, progress=False)


def test_a_checkpoint_of_this_run_is_still_resumed_and_one_within_the_lineage_is_kept():
    """The refusals above leave the genuine cases alone: a run's own checkpoint resumes to the numbers of an
    uninterrupted run, and one past this call's stop (not past the run's end) is CheckpointAheadError."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.pt"
        genuine_checkpoint(path, max_steps=3)
        resumed = tiny_model()
        train(resumed, images(), CKPT_CFG, checkpoint=path, progress=False)
        straight = tiny_model()
        train(straight, images(), CKPT_CFG, progress=False)
        assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()))
        with pytest.raises(CheckpointAheadError, match=r"past this call's stop at step 2"):
            train(tiny_model(), images(), CKPT_CFG, checkpoint=path, progress=False, max_steps=2)


def sweep_run(**kw):
    return RunConfig(**{"dataset": "dsprites", "model": "beta_vae", "epochs": 1.0, "batch_size": 32,
                        "latent_dim": 4, "layout": (2, 2), "hidden": 16, "image_size": 16, "mig_samples": 32,
                        "subgrid": {"shape": [0, 1], "scale": [0, 5], "orientation": [0, 10],
                                    "posX": [0, 10, 20, 31], "posY": [0, 10, 20, 31]}, **kw})


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory):
    """The run's scores without any checkpoint, and an ISA-VAE run's checkpoint (same training configuration)."""
    (ref,) = run_group([sweep_run()])
    other = tmp_path_factory.mktemp("other")
    isa_run = sweep_run(model="isa_vae")
    run_group([isa_run], checkpoint_dir=other)
    return ref["metrics"], checkpoint_path(other, [isa_run], False)


def _scores(m):
    return m["mig"], m["reconstruction"], m["final"]


@pytest.mark.parametrize("case", ["a list", "a directory", "another model's", "a step beyond the run's end",
                                  "an untrained model at a step beyond the end"])
def test_a_sweep_discards_a_checkpoint_it_cannot_resume_and_trains_afresh(case, sweep_reference, tmp_path):
    """Never a failed run, never a 'done' run from a wrong or untrained model: the scores equal those of a run
    that never saw the file."""
    reference, isa_checkpoint = sweep_reference
    c = sweep_run()
    path = checkpoint_path(tmp_path, [c], False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if case == "a list":
        torch.save([1, 2], path)
    elif case == "a directory":
        path.mkdir()
        (path / "keep.txt").write_text("x")
    elif case == "another model's":
        shutil.copy(isa_checkpoint, path)
    else:
        from isa_lib.experiments.run import _train_models, load_data

        steps = 0 if case.startswith("an untrained") else c.steps
        if steps:
            run_group([c], checkpoint_dir=tmp_path)                     # its own finished checkpoint
            state = load_checkpoint(path)
        else:
            _train_models([c], load_data(c), False, max_steps=1, checkpoint_dir=tmp_path)
            state = load_checkpoint(path)
            state["model"] = build_model_state(c)                        # the weights it started from
        save_checkpoint(path, {**state, "step": c.steps + 1000})
    with pytest.warns(CheckpointDiscardedWarning, match=r"checkpoint discarded .*training starts afresh"):
        (o,) = run_group([c], checkpoint_dir=tmp_path)
    assert o["status"] == "done", o["error"]
    assert _scores(o["metrics"]) == _scores(reference)
    if case == "a directory":
        aside = [p for p in tmp_path.iterdir() if ".discarded-" in p.name]
        assert len(aside) == 1 and (aside[0] / "keep.txt").read_text() == "x"     # moved aside, not deleted
    assert path.is_file() and load_checkpoint(path)["step"] == c.steps              # a genuine one replaced it


def build_model_state(c):
    from isa_lib.experiments import build_model

    return build_model(c).state_dict()


SAMPLE_AND_IMAGE_CASES = [
    ("ISA sample((-1,))", lambda: isa().sample((-1,)), ValueError, r"sample_shape\[0\] must be a whole number >= 0, "
                                                                   r"got -1"),
    ("ISA sample((2.5,))", lambda: isa().sample((2.5,)), ValueError, r"sample_shape\[0\].*got 2\.5"),
    ("ISA sample((3, -2))", lambda: isa().sample((3, -2)), ValueError, r"sample_shape\[1\].*got -2 in \(3, -2\)"),
    ("ISA sample(-1), a bare int", lambda: isa().sample(-1), ValueError, r"sample_shape must be a tuple of sizes, "
                                                                         r"got int -1"),
    ("ISA sample('3')", lambda: isa().sample("3"), ValueError, r"sample_shape must be a tuple.*got str '3'"),
    ("ISA sample((True,))", lambda: isa().sample((True,)), ValueError, r"got True"),
    ("LpNested sample((-1,))", lambda: LpNested(isa_tree(2.1, [2, 2], [2.2, 2.2])).sample((-1,)), ValueError,
     r"sample_shape\[0\]"),
    ("PGeneralizedNormal sample((-5,))", lambda: PGeneralizedNormal(1.5, 3).sample((-5,)), ValueError,
     r"sample_shape\[0\].*-5"),
    ("ISA prior's distribution sample((-1,))", lambda: ISAPrior(2.1, [2, 2], 2.2)().sample((-1,)), ValueError,
     r"sample_shape\[0\]"),
    ("images float64 in the hundreds", lambda: train(tiny_model(), images().double() * 300, CKPT_CFG,
                                                     progress=False), ImageRangeError,
     r"images \(torch\.float64\) hold values in \[0, 300\], but divided by max_value = 1 they must lie in \[0, 1\]"
     r".*or pass max_value"),
    ("images float32 negative", lambda: train(tiny_model(), images().float() - 0.5, CKPT_CFG, progress=False),
     ImageRangeError, r"values in \[-0\.5, 0\.5\]"),
    ("images with NaN", lambda: train(tiny_model(), torch.full((8, 16, 16), float("nan")), CKPT_CFG,
                                      progress=False), ImageRangeError, r"contain NaN or infinite values"),
    ("images uint8 255 with max_value 1", lambda: train(tiny_model(), images() * 255, CKPT_CFG, progress=False,
                                                        max_value=1.0), ImageRangeError,
     r"torch\.uint8\) hold values in \[0, 255\], but divided by max_value = 1"),
    ("images max_value NaN", lambda: train(tiny_model(), images(), CKPT_CFG, progress=False,
                                           max_value=float("nan")), ImageRangeError, r"max_value must be a finite"),
    ("images in the hundreds, fused", lambda: train_many([tiny_model(0), tiny_model(1)], images().double() * 300,
                                                         [CKPT_CFG, dataclasses.replace(CKPT_CFG, seed=1)],
                                                         progress=False), ImageRangeError, r"hold values in \[0, 300\]"),
    ("images of a data set, float in the hundreds",
     lambda: GroundTruthDataset("mine", torch.rand(4, 1, 2, 2, dtype=torch.float64) * 300, ["f"], [4],
                                [[0, 1, 2, 3]], max_value=1.0), ImageRangeError,
     r"mine: float images \(torch\.float64\) hold values in .*must lie in \[0, 1\]"),
]


@pytest.mark.parametrize("what, call, error, pattern", SAMPLE_AND_IMAGE_CASES,
                         ids=[c[0] for c in SAMPLE_AND_IMAGE_CASES])
def test_a_bad_sample_shape_or_pixel_range_gets_a_named_error(what, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_images_in_range_still_train_and_sample_shapes_still_work():
    assert isa().sample((0,)).shape == (0, 4) and isa().sample(torch.Size([2, 3])).shape == (2, 3, 4)
    assert isa().sample([np.int64(2)]).shape == (2, 4) and isa().sample().shape == (4,)
    for imgs, mv in ((images().double(), None), (images() * 255, None), (images().float() * 4, 4.0),
                     (images().bool(), None)):
        assert train(tiny_model(), imgs, CKPT_CFG, progress=False, max_value=mv)


def test_the_lease_is_timed_on_the_database_clock_not_the_hosts(tmp_path, monkeypatch):
    """Staleness is measured inside the SQL on the database's clock: a host clock a day off neither takes over a
    live sweep's hold (2d84c1a compared time.time() with the row's heartbeat and took it over) nor keeps a dead
    one alive."""
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease():
        pass                                                    # (creates the lease table)
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def other_holder(age_s):
        sqlite_file(ledger.path, "DELETE FROM lease",
                    f"INSERT INTO lease VALUES (1, 'node-7', 4242, {now_sql} - {age_s}, {now_sql} - {age_s}, "
                    f"'sweep elsewhere')")

    real = time.time
    for offset in (-86400.0, +86400.0):
        monkeypatch.setattr(ledger_module.time, "time", lambda: real() + offset)
        other_holder(0)                                          # fresh by the database's clock
        with pytest.raises(ledger_module.LedgerBusyError, match=r"pid 4242 on node-7 .*last heartbeat 0 s ago"):
            with ledger.lease():
                pass
        other_holder(1000)                                       # 1000 s old by the database's clock
        with ledger.lease(stale_s=120):
            assert ledger.lease_holder()["host"] != "node-7"     # taken over
    # a host clock that makes the old heartbeat look fresh (1000 s behind) does not keep it alive
    monkeypatch.setattr(ledger_module.time, "time", lambda: real() - 1000)
    other_holder(1000)
    with ledger.lease(stale_s=120):
        pass
    # and this process's own hold is written and renewed on the database's clock
    monkeypatch.setattr(ledger_module.time, "time", lambda: 0.0)
    with ledger.lease(heartbeat_s=0.05):
        holder = ledger.lease_holder()
        assert abs(holder["heartbeat"] - real()) < 3600 and holder["started"] == holder["heartbeat"]
        deadline = time.monotonic() + 60
        while ledger.lease_holder()["heartbeat"] == holder["heartbeat"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.lease_holder()["heartbeat"] > holder["heartbeat"]


import contextlib  # noqa: E402


class _Listener:
    """A TCP service on 127.0.0.1 (loopback only) that accepts connections and answers ``reply`` (None: nothing)
    until closed; bounded: each connection is held at most ``hold_s``."""

    def __init__(self, reply=None, hold_s=30.0):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reply, self.hold_s, self.stop = reply, hold_s, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conns = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.reply is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(self.reply)
            conns.append(conn)
        for c in conns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.mark.parametrize("reply, scheme, reason", [
    (None, "", r"is open but is not Ray \(no HTTP/2 answer within 1 s"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "", r"first bytes b'HTTP/1\.1 ' are not an HTTP/2 SETTINGS frame"),
    (None, "ray://", r"is open but is not Ray"),
])
def test_an_open_port_that_is_not_ray_is_one_named_error_within_a_minute(reply, scheme, reason, monkeypatch):
    ray = pytest.importorskip("ray")
    from isa_lib.experiments.sweeps import RayConnectionError, start_ray

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: pytest.fail("ray.init was called"))
    with _Listener(reply) as srv:
        t0 = time.monotonic()
        with pytest.raises(RayConnectionError, match=rf"127\.0\.0\.1:{srv.port} .*{reason}"):
            start_ray(f"{scheme}127.0.0.1:{srv.port}", connect_timeout_s=1.0)
        assert time.monotonic() - t0 < 60


def test_the_sweep_command_names_an_open_port_that_is_not_ray(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    from isa_lib.experiments import sweeps as S

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    monkeypatch.setattr(S, "RAY_CONNECT_TIMEOUT_S", 2.0)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: pytest.fail("ray.init was called"))
    with _Listener() as srv:
        t0 = time.monotonic()
        assert sweep_main(["--grid", SMALL_GRID, "--ledger", str(tmp_path / "l.db"), "--backend", "ray",
                           "--address", f"127.0.0.1:{srv.port}"]) == 2
        assert time.monotonic() - t0 < 60
    assert "is open but is not Ray" in capsys.readouterr().err
    assert Ledger(tmp_path / "l.db").counts() == {}


def test_a_service_that_answers_http2_is_passed_on_to_ray_and_a_slow_local_start_is_retried(monkeypatch):
    """The check lets a gRPC (HTTP/2) server through to ray.init; without an address nothing is probed and a
    local node that misses Ray's start-up wait is started again (a slow machine never fails there)."""
    ray = pytest.importorskip("ray")
    from isa_lib.experiments.sweeps import start_ray

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    calls = []
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.append(kw.get("address")))
    settings = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])              # an empty HTTP/2 SETTINGS frame
    with _Listener(settings) as srv:
        start_ray(f"127.0.0.1:{srv.port}", connect_timeout_s=5.0)
    assert calls == [f"127.0.0.1:{srv.port}"]
    attempts = []

    def slow(*a, **kw):
        attempts.append(kw)
        if len(attempts) < 3:
            raise Exception("The current node timed out during startup.")   # what Ray raises on a slow start

    monkeypatch.setattr(ray, "init", slow)
    monkeypatch.setattr("socket.create_connection", lambda *a, **kw: pytest.fail("a local start probed a port"))
    start_ray(num_cpus=1)
    assert len(attempts) == 3

"""The prepared GPU scripts, run at their CPU smoke size: benchmarks/gpu_sweep.py (budgeted, resumable),
benchmarks/gpu_session.sh (the one command a GPU session runs) and the benchmarks it can call with
--device cuda (bench_mig_kernel.py, bench_roofline.py; bench_eval_share.py is CPU-only). A lent GPU is held
for minutes only, so these must work the first time there."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import isa_lib.experiments as E
from isa_lib.experiments import Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def keep_threads():
    """The benchmarks set torch's thread count (default 1); the test process gets its own back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_gpu_sweep():
    return load_benchmark("gpu_sweep")


def test_mig_kernel_benchmark_runs_and_every_kernel_agrees_with_the_reference(capsys, keep_threads):
    bench = load_benchmark("bench_mig_kernel")
    out = bench.main(["--grid", "1,3,6,4,4,4", "--n-samples", "30", "--latents", "6", "--rounds", "1",
                      "--full", "--full-grid", "1,3,6,4,4,4", "--full-dtypes", "float32,float64"])
    from isa_lib import native
    names = {"reference float64", "numpy float64", "gemm64 (before)", "torch float64", "torch float32",
             "exp2 torch (bare)"} | ({"native float32", "native float64", "exp2 C poly (bare)"}
                                     if native.available() else set())
    assert set(out["rates"]) == {(1, n) for n in names}
    assert max(out["diffs"][1, k] for k in ("numpy float64", "gemm64 (before)", "torch float64")) < 1e-10
    # float32 terms (the native float64 kernel forms z - mu in float64 and the rest in float32)
    assert max(out["diffs"][1, k] for k in names if "float32" in k or k == "native float64") < 1e-4
    text = capsys.readouterr().out
    assert "x reference" in text and text.count("the full grid at this rate") == 2


def test_roofline_benchmark_quick(capsys, keep_threads):
    load_benchmark("bench_roofline").main(["--quick", "--steps", "1", "--rounds", "1", "--breakdown",
                                           "--configs", "normal,ISA learned,beta-TCVAE"])
    text = capsys.readouterr().out
    assert "of matmul" in text and "overhead of ISA learned over the normal prior" in text
    assert "overhead of beta-TCVAE" in text and "beta-TCVAE step by phase" in text


def test_eval_share_benchmark_small(tmp_path, monkeypatch, capsys, keep_threads):
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    ledger = tmp_path / "l.csv"
    pd.DataFrame({"status": ["done", "done", "failed"], "timings.train_s_per_run": [80.0, 40.0, 1.0],
                  "timings.eval_s": [20.0, 10.0, 1.0]}).to_csv(ledger, index=False)
    load_benchmark("bench_eval_share").main(["--scale", "small", "--ledger", str(ledger)])
    text = capsys.readouterr().out
    assert "2 finished runs" in text
    assert "before (ledger)  eval x1.00: mean 20.0%, median 20.0%, max 20.0%, runs above 20 %: 0" in text


def test_eval_share_of_the_budget_ledger(tmp_path, capsys):
    """The budget study's share: each row's scoring against its own training increment (900 steps at 1/8 and
    1/4, 1,800 at 1/2), projected to a whole run of 7,200 steps with four scorings, in wall and CPU seconds;
    a requeued row (attempts 2) is left out of that line; a lineage with all four fractions is measured."""
    rows = [  # model, seed, fraction, train_steps, train_s, eval_s, train_cpu_s, eval_cpu_s, attempts
        ("beta_vae", 0, 0.125, 900, 900.0, 100.0, 450.0, 25.0, 1),
        ("beta_vae", 0, 0.25, 1800, 900.0, 100.0, 450.0, 25.0, 1),
        ("beta_vae", 0, 0.5, 3600, 1800.0, 100.0, 900.0, 25.0, 1),
        ("beta_vae", 0, 1.0, 7200, 3600.0, 100.0, 1800.0, 25.0, 1),
        ("isa_vae", 0, 0.125, 900, 90.0, 900.0, 45.0, 900.0, 2),
    ]
    cols = ["model", "seed", "budget_fraction", "train_steps", "timings.train_s", "timings.eval_s",
            "timings.train_cpu_s", "timings.eval_cpu_s", "attempts"]
    df = pd.DataFrame(rows, columns=cols).assign(status="done", steps=7200, mig_backend="native+chebyshev")
    df.to_csv(tmp_path / "b.csv", index=False)
    load_benchmark("bench_eval_share").main(["--budget-ledger", str(tmp_path / "b.csv")])
    text = capsys.readouterr().out
    # 1 s/step wall: 400 / (7,200 + 400) = 5.3 %; 0.5 s/step CPU: 100 / (3,600 + 100) = 2.7 %
    assert "wall seconds, each row against its own training (4 rows in one attempt" in text
    assert "projected share 5.3% to 5.3%" in text and "projected share 2.7% to 2.7%" in text
    assert "measured share 5.3% (400 s of 7600 s); CPU seconds 2.7%" in text


def simulate_loan(gpu_sweep, queue, budget, cost):
    """Run next_task over ``queue`` as gpu_sweep does, with a task costing ``cost(n_runs)`` seconds; returns
    the (model, seeds) of the tasks started and the lines said."""
    rank = {"beta_vae": 0, "isa_vae": 1}
    spent, started, said = [0.0], [], []
    while True:
        group, guess = gpu_sweep.next_task(queue, lambda: budget - spent[0], lambda g: cost(len(g)), rank,
                                           say=said.append)
        if group is None:
            return started, said
        assert guess <= budget - spent[0]
        spent[0] += guess
        started.append((group[0].model, [c.seed for c in group]))


def paper_beta1_queue(gpu_sweep, done=()):
    """The Fig. 5a grid's planned tasks (fused 10), less the (model, seed) runs in ``done``."""
    configs = E.load_grid(ROOT / "experiments" / "grids" / "dsprites_paper_beta1.yml")
    _, planned = gpu_sweep.assign_fusion(configs, 10)
    groups = [[c for c in g if (c.model, c.seed) not in done] for g in planned]
    return [g for g in groups if g]


def test_gpu_sweep_leaves_pairs_when_the_budget_ends_mid_grid():
    """The first GPU loan (450 s) trained seeds 0-4 of beta-VAE and no ISA-VAE run: tasks went whole to one
    arm. With the costs that loan measured (a task of n fused paper-scale runs: ~110 s + 25 s x n), a budget
    of 395 s now goes to equal seeds of both arms; and a ledger holding that loan's five beta-VAE runs starts
    the next call with ISA-VAE on exactly those seeds."""
    gpu_sweep = load_gpu_sweep()

    def cost(n):
        return 110.0 + 25.0 * n

    started, said = simulate_loan(gpu_sweep, paper_beta1_queue(gpu_sweep), 395.0, cost)
    assert [m for m, _ in started] == ["beta_vae", "isa_vae"], (started, said)
    assert started[0][1] == started[1][1] and len(started[0][1]) >= 2, started
    assert any("partner" in line and "splitting it" in line for line in said)
    # a loan that ended between the arms: the lagging arm catches up first, on exactly the seeds missing
    done = {("beta_vae", s) for s in range(5)}
    started, _ = simulate_loan(gpu_sweep, paper_beta1_queue(gpu_sweep, done), 250.0, cost)
    assert started[0] == ("isa_vae", [0, 1, 2, 3, 4]), started
    # a budget in which one run fits but not its partner: nothing unpaired is started
    started, said = simulate_loan(gpu_sweep, paper_beta1_queue(gpu_sweep), 200.0, cost)
    assert started == [] and said[-1].startswith("stopping: one beta_vae run"), said
    # enough for everything: every run of both arms, seed blocks in order, the arms alternating
    started, _ = simulate_loan(gpu_sweep, paper_beta1_queue(gpu_sweep), 1e9, cost)
    assert [m for m, _ in started] == ["beta_vae", "isa_vae"] * 5
    assert [seeds for _, seeds in started] == [list(range(10 * i, 10 * i + 10)) for i in range(5) for _ in "ab"]


def test_gpu_sweep_continues_where_a_call_stopped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    gpu_sweep = load_gpu_sweep()
    db = tmp_path / "paper.db"
    gpu_sweep.main(["--cpu-smoke", "--ledger", str(db), "--max-tasks", "3"])
    first = Ledger(db).counts()
    assert 0 < first.get("done", 0) < 138, first
    gpu_sweep.main(["--cpu-smoke", "--ledger", str(db), "--max-tasks", "3", "--export", str(tmp_path / "p.csv")])
    rows = Ledger(db).rows()
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) > first["done"]
    # Nothing ran twice; copies (beta-TCVAE at beta = 1) were never started.
    assert all(r["attempts"] == (0 if r["metrics"].get("same_as") else 1) for r in done)
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(rows)
    assert "predicted" in capsys.readouterr().out


def test_gpu_sweep_splits_a_task_that_would_overrun_and_stops_when_one_run_would(tmp_path, monkeypatch, capsys):
    """Predictions are faked (4 runs fused: 2,000 s; one run: 1 s), so the decisions do not depend on
    this machine's speed: a 4-run task is split down to single runs, which then fit a 1,000 s budget. The
    split runs are recorded as trained alone (fused 1), their evaluation time is read back for the next
    prediction, and a later call does not train their seeds again under the planned fusion of 4."""
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    gpu_sweep = load_gpu_sweep()
    per_task = {1: 1.0, 2: 2000.0, 3: 2000.0, 4: 2000.0}
    asked = []

    def fake_timing(group, steps, score):
        asked.append(score)
        return E.TaskTiming(0.0, per_task[len(group)] / group[0].train_steps, 0.0 if score else None)

    monkeypatch.setattr(gpu_sweep, "task_timing", fake_timing)
    db = tmp_path / "paper.db"
    gpu_sweep.main(["--cpu-smoke", "--ledger", str(db), "--budget-s", "1000", "--max-tasks", "5"])
    out = capsys.readouterr().out
    assert "a task of 4 x beta_vae would take ~2000 s" in out and "splitting it" in out
    assert out.count("] 1 x ") == 5 and Ledger(db).counts()["done"] >= 5
    rows = Ledger(db).rows("done")
    assert rows and all(r["config"].get("fused", 1) == 1 for r in rows)      # trained alone, hashed alone
    # before any run is scored the probe times an evaluation; the second model's probe (after beta-VAE's four
    # split runs) uses the evaluation times those runs recorded, read back under the hashes they were saved with
    assert asked[0] is True and asked[-1] is False
    seeds = {(r["config"]["model"], r["config"]["seed"], r["config"]["beta"]) for r in rows}
    per_task[4] = per_task[3] = per_task[2] = 1.0     # now whole tasks fit: the split runs are not redone
    asked.clear()
    gpu_sweep.main(["--cpu-smoke", "--ledger", str(db), "--budget-s", "1000", "--max-tasks", "2"])
    capsys.readouterr()
    assert asked and not any(asked)                   # the evaluation times recorded before are used
    again = [r for r in Ledger(db).rows("done") if r["config"].get("fused", 1) > 1]   # this call's runs
    assert again and not seeds & {(r["config"]["model"], r["config"]["seed"], r["config"]["beta"]) for r in again}
    # a shape trained before (single runs of beta-VAE) is predicted from what its task took (the ledger's
    # timings), not probed: a probe's 5,000 s no longer stops it
    per_task.update({k: 5000.0 for k in per_task})
    gpu_sweep.main(["--cpu-smoke", "--ledger", str(db), "--budget-s", "1000", "--max-tasks", "1"])
    out = capsys.readouterr().out
    assert "] 1 x beta_vae" in out and "from the ledger" in out, out[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    configs = [c for c in E.load_grid(ROOT / "experiments" / "grids" / "dsprites_paper.yml") if c.seed < 3]
    trained = {(r["config"]["model"], r["config"]["seed"], r["config"]["beta"]) for r in Ledger(db).rows("done")}
    runs = {(e.model, e.seed, e.beta) for e in (c.equivalent() for c in configs)}   # copies are not trained
    assert summary["grid_still_to_train"] == len(runs - trained) > 0
    # a budget below what one run really took: the call stops, nothing is started
    before = Ledger(db).counts()["done"]
    gpu_sweep.main(["--cpu-smoke", "--ledger", str(db), "--budget-s", "0.001"])
    assert "stopping: one" in capsys.readouterr().out and Ledger(db).counts()["done"] == before


def test_gpu_sweep_keeps_a_margin_and_refuses_one_below_1(capsys):
    """A task starts only if margin x its prediction fits: 160 s predicted fits 200 s alone, not with a 1.3 margin."""
    gpu_sweep = load_gpu_sweep()
    queue = [paper_beta1_queue(gpu_sweep)[0][:1]]                      # one beta-VAE run, no partner queued
    rank = {"beta_vae": 0}
    group, _ = gpu_sweep.next_task(list(queue), lambda: 200.0, lambda g: 160.0, rank, say=lambda _: None)
    assert group is not None
    said = []
    group, _ = gpu_sweep.next_task(list(queue), lambda: 200.0, lambda g: 160.0, rank, say=said.append, margin=1.3)
    assert group is None and "x 1.3 margin: ~208 s" in said[-1], said
    with pytest.raises(SystemExit):
        gpu_sweep.main(["--cpu-smoke", "--margin", "0.5"])
    assert "--margin must be >= 1" in capsys.readouterr().err


BENCHMARKS = ("gpu_metrics", "bench_train", "bench_mig_kernel", "bench_roofline")


#: Packages this project's environment has and the GPU machine's image lacks (its package list, read
#: 2026-11-17: torch 2.11, numpy, scipy, pandas, pyyaml, tqdm, matplotlib, scikit-learn, ... but not these).
#: The smoke session runs with them blocked, so that an import the GPU machine cannot satisfy fails here.
NOT_ON_GPU_IMAGE = ("autograd", "ray", "sqlalchemy", "jupytext", "papermill", "nbformat", "nbclient",
                    "ipywidgets", "ipykernel", "IPython", "disent", "playwright")

#: At most this many files come back from a device loan's $OUT.
DEVICE_FILES_BACK = 8


def block_imports(tmp_path, names=NOT_ON_GPU_IMAGE) -> str:
    """A folder holding a sitecustomize.py that makes importing any of ``names`` fail (for PYTHONPATH)."""
    folder = tmp_path / "block"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        f"BLOCKED = {set(names)!r}\n"
        "class Blocker(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is not on the GPU machine')\n"
        "sys.meta_path.insert(0, Blocker())\n")
    return str(folder)


def test_the_import_blocker_blocks(tmp_path):
    """The guard the smoke sessions run under does fail an import of a package the GPU image lacks."""
    env = {**os.environ, "PYTHONPATH": block_imports(tmp_path)}
    r = subprocess.run([sys.executable, "-c", "import autograd"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "not on the GPU machine" in r.stderr
    r = subprocess.run([sys.executable, "-c", "import numpy, yaml, scipy, pandas, tqdm"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def run_session(tmp_path, budget, sweep_args="--max-tasks 2"):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "ISA_VAE_CACHE": str(tmp_path / "cache"),
           "SWEEP_ARGS": sweep_args, "PYTHONPATH": block_imports(tmp_path)}
    r = subprocess.run(["bash", "benchmarks/gpu_session.sh", str(budget), "--cpu-smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=budget + 120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "syntax error" not in r.stderr and "command not found" not in r.stderr, r.stderr[-3000:]
    return out, r.stdout


def step_lines(stdout):
    """The session's steps in the order they started (or were skipped): the names after '== '."""
    return [line[3:].split(" ")[0].rstrip(",") for line in stdout.splitlines() if line.startswith("== ")]


#: The smoke session's budget when every step should run: the smoke steps' time limits (600 s each, in
#: gpu_session.sh) only bound a hang, and the budget leaves room for all of them, so a loaded machine that
#: runs each step several times slower than an idle one still runs them all. The test takes only as long as
#: the steps do (minutes).
AMPLE_BUDGET = 3600


@pytest.mark.slow
def test_gpu_session_script_runs_the_sweep_first_then_the_benchmarks_on_a_cpu(tmp_path):
    """Data, then the Fig. 5a sweep, then the ledger saved, then every benchmark in what is left (a task limit
    keeps the sweep short, independent of the machine's speed); each step's time is printed."""
    out, stdout = run_session(tmp_path, AMPLE_BUDGET)
    assert step_lines(stdout) == ["data", "gpu_sweep", "saving"] + list(BENCHMARKS), stdout[-3000:]
    for title in ("data", "gpu_sweep", *BENCHMARKS):
        assert f"-- {title}" in stdout and " took " in stdout, title
    setup = (out / "setup.log").read_text()
    assert "torch" in setup and "data set dsprites" in setup       # the machine's view, then the data step
    names = ("setup.log", "gpu_metrics.log", "bench_train.log", "bench_mig_kernel.log", "bench_roofline.log",
             "gpu_sweep.log", "smoke.db", "smoke.csv")
    for name in names:
        assert (out / name).stat().st_size > 0, name
    # everything comes back from a device loan: no more files than it returns, no folders
    assert sorted(p.name for p in out.iterdir()) == sorted(names) and len(names) <= DEVICE_FILES_BACK
    assert "M evals/s" in (out / "bench_mig_kernel.log").read_text()
    assert "of matmul" in (out / "bench_roofline.log").read_text()
    assert "MIG =" in (out / "gpu_metrics.log").read_text()
    assert "s/step" in (out / "bench_train.log").read_text()
    # the session's one question: Fig. 5a (beta-VAE and ISA-VAE at beta = 1), seeds in order, models interleaved
    sweep_log = (out / "gpu_sweep.log").read_text()
    assert "6 runs in the grid" in sweep_log                          # 2 models x smoke seeds 0-2
    tasks = [line for line in sweep_log.splitlines() if " x beta_vae (" in line or " x isa_vae (" in line]
    assert [t.split(" x ")[1].split(" ")[0] for t in tasks] == ["beta_vae", "isa_vae"]
    ledger = Ledger(out / "smoke.db")   # a consistent copy that opens on its own
    assert ledger.counts().get("done", 0) > 0
    assert len(pd.read_csv(out / "smoke.csv")) == sum(ledger.counts().values())


@pytest.mark.slow
def test_gpu_session_script_gives_a_small_budget_to_the_sweep_and_skips_the_benchmarks(tmp_path):
    """Tens of seconds of budget: the data and the sweep still come first and get it; a benchmark starts only if
    its time limit fits in what is left (else it is skipped with a line saying so; the smoke limits of 600 s
    never fit), the ledger is saved, and no step outlives its limit. (90 s: on a loaded 2-core machine,
    starting Python and torch twice takes up to ~30 s before the sweep.)"""
    import re

    budget = 90
    out, stdout = run_session(tmp_path, budget, sweep_args="")
    assert step_lines(stdout)[:3] == ["data", "gpu_sweep", "saving"], stdout[-3000:]
    assert "== gpu_sweep, budget" in stdout, stdout[-3000:]           # it ran, it was not skipped
    assert "runs in the grid" in (out / "gpu_sweep.log").read_text()
    for title in BENCHMARKS:
        line = next(line for line in stdout.splitlines() if line.startswith(f"== {title} "))
        skipped = re.fullmatch(rf"== {title} skipped: its limit is (\d+) s, (-?\d+) s left", line)
        started = re.fullmatch(rf"== {title} \((-?\d+) s left, limit (\d+) s\)", line)
        assert skipped or started, line
        if skipped:
            assert int(skipped[1]) > int(skipped[2]) and not (out / f"{title}.log").exists(), line
        else:
            assert int(started[1]) >= int(started[2]), line
    assert "== gpu_metrics skipped" in stdout
    # every step that ran was held to its limit by `timeout` (a few seconds for the kill and the log's flush);
    # the session's total also holds start-ups no limit bounds, which a loaded machine stretches, so it is not
    # compared with the budget
    limits = {m[1]: int(m[3]) for m in re.finditer(r"^== (\S+?),?( budget \d+ s)? \(-?\d+ s left, limit (\d+) s\)$",
                                                      stdout, re.M)}
    took = {m[1]: int(m[2]) for m in re.finditer(r"^-- (\S+?),?(?: budget \d+ s)? took (\d+) s", stdout, re.M)}
    assert set(took) == set(limits) and "data" in took, stdout[-2000:]
    for title, seconds in took.items():
        assert seconds <= limits[title] + 15, (title, seconds, limits[title])


def test_full_grid_mig_script_trains_encodes_and_scores_in_both_precisions(tmp_path, monkeypatch):
    """benchmarks/full_grid_mig.py at its smoke size: float32 and float64 MIG of the same samples agree."""
    monkeypatch.setenv("ISA_VAE_CACHE", str(tmp_path / "cache"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("full_grid_mig", ROOT / "benchmarks" / "full_grid_mig.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, state = tmp_path / "full.json", tmp_path / "model.pt"
    mod.main(["--smoke", "--n-samples", "100", "--dtypes", "float32", "float64", "--out", str(out),
              "--state", str(state)])
    res = json.loads(out.read_text())
    assert res["n_images"] == 3072 and state.exists() and "train_s" in res["trained"]
    assert abs(res["mig"]["float32"]["mig"] - res["mig"]["float64"]["mig"]) < 1e-3
    mod.main(["--smoke", "--n-samples", "100", "--out", str(out), "--state", str(state)])   # loads, no training
    again = json.loads(out.read_text())
    assert again["trained"] == {"loaded": str(state)}
    assert again["mig"]["float32"]["mig"] == res["mig"]["float32"]["mig"]

"""A sweep SIGKILLed at random moments, some of them inside a ledger write, and resumed each time, ends with
every run recorded once, all done, and the numbers of an uninterrupted sweep, digit for digit, whether its
tasks train one run (``--fuse 1``) or four fused (``--fuse 4``).

``ISA_KILL_TEST_KILLS`` (default 5) sets the kills per setting and ``ISA_KILL_TEST_SEED`` their moments;
e.g. ``ISA_KILL_TEST_KILLS=40`` for a long soak."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from isa_lib.experiments import Ledger, expand_grid
from isa_lib.experiments.sweeps import assign_fusion

KILLS = int(os.environ.get("ISA_KILL_TEST_KILLS", "5"))
SEED = int(os.environ.get("ISA_KILL_TEST_SEED", "0"))

GRID = {"scale": "small", "models": ["beta_vae", "isa_vae"], "betas": [1.0, 2.0], "seeds": 2,
        "dataset": "dsprites", "epochs": 30.0, "batch_size": 32, "lr": 1e-3, "latent_dim": 4, "layout": [2, 2],
        "p0": 2.1, "p": 2.2, "hidden": 32, "image_size": 16, "mig_samples": 64,
        "subgrid": {"shape": [0, 1], "scale": [0, 5], "orientation": [0, 10], "posX": [0, 10, 20, 31],
                    "posY": [0, 10, 20, 31]}}

# The sweep command, optionally SIGKILLing itself inside its k-th ledger transaction: after the statements,
# before COMMIT (argv[1] = k, 0 for never). Heartbeats count too, so the moment is any write.
DRIVER = textwrap.dedent("""
    import contextlib, os, signal, sys
    from isa_lib.experiments import ledger as L
    from isa_lib.experiments import sweep_main
    kill_at, count, inner = int(sys.argv[1]), [0], L.Ledger._tx

    @contextlib.contextmanager
    def tx(self):
        with inner(self) as db:
            yield db
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    L.Ledger._tx = tx
    sys.exit(sweep_main(sys.argv[2:]))
""")


def start(tmp_path, ledger, fuse: int, kill_at: int = 0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # same threads in every process
    return subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(kill_at), "--grid",
                             str(tmp_path / "grid.yml"), "--ledger", str(ledger), "--fuse", str(fuse), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def numbers(ledger) -> dict:
    return {r["config_hash"]: {k: v for k, v in r["metrics"].items() if k not in ("timings", "versions")}
            for r in Ledger(ledger).rows()}


@pytest.mark.parametrize("fuse", [1, 4])
def test_random_kills_lose_nothing_and_change_no_number(tmp_path, fuse):
    (tmp_path / "grid.yml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "driver.py").write_text(DRIVER)
    configs, _ = assign_fusion(expand_grid(GRID), fuse)          # fused runs carry their group's size
    hashes = {c.config_hash() for c in configs} | {c.equivalent().config_hash() for c in configs}

    ref = tmp_path / "reference.db"
    t0 = time.perf_counter()
    proc = start(tmp_path, ref, fuse)
    assert proc.wait(900) == 0, proc.stderr.read()[-3000:]
    duration = time.perf_counter() - t0
    reference = numbers(ref)
    assert set(reference) == hashes

    rng = random.Random(SEED * 10 + fuse)
    path = tmp_path / "killed.db"
    kills = []
    for _ in range(KILLS):
        if rng.random() < 0.5:   # inside the k-th ledger write
            proc = start(tmp_path, path, fuse, kill_at=rng.randint(1, 12))
            proc.wait(900)
            kills.append(("in-write", proc.returncode))
        else:                    # at a random moment of the sweep's life (start-up, training, scoring)
            proc = start(tmp_path, path, fuse)
            try:
                proc.wait(rng.uniform(0.2, 1.0) * duration)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(60)
            kills.append(("timer", proc.returncode))
        if proc.returncode not in (0, -signal.SIGKILL):
            pytest.fail(f"the sweep failed after kills {kills}: {proc.stderr.read()[-3000:]}")
    proc = start(tmp_path, path, fuse)       # the last resume, left to finish
    assert proc.wait(900) == 0, proc.stderr.read()[-3000:]

    assert sum(rc == -signal.SIGKILL for _, rc in kills) >= 1, f"no kill landed: {kills}"
    rows = Ledger(path).rows()
    assert sorted(r["config_hash"] for r in rows) == sorted(hashes)      # every run exactly once
    assert {r["status"] for r in rows} == {"done"}
    got = numbers(path)
    diff = [h for h in hashes if got[h] != reference[h]]
    assert not diff, f"{len(diff)} run(s) differ from the uninterrupted sweep after kills {kills}"
    fused = {r["config_hash"]: r["metrics"]["timings"]["fused"] for r in Ledger(ref).rows()}
    assert {r["config_hash"]: r["metrics"]["timings"]["fused"] for r in rows} == fused  # one fusion throughout
    assert max(fused.values()) == fuse
    assert not list((tmp_path / "killed.db.checkpoints").glob("*.pt"))

"""The ledger's guarantees beyond one row per run (isa_lib.experiments.ledger): a fused task written all or
none, one sweep per ledger (lease), finished runs kept through a failing disk (retries, side files), and
sweep checkpoints that resume to the same numbers."""
import dataclasses
import json
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from isa_lib.experiments import Ledger, LedgerBusyError, LedgerWriteError, RunConfig, expand_grid, run_group, sweep
from isa_lib.experiments import ledger as L
from isa_lib.experiments import run as R

TINY_SUBGRID = {"shape": [0, 1], "scale": [0, 5], "orientation": [0, 10], "posX": [0, 10, 20, 31],
                "posY": [0, 10, 20, 31]}
TINY = dict(dataset="dsprites", epochs=4.0, batch_size=32, lr=1e-3, latent_dim=4, layout=(2, 2), p0=2.1, p=2.2,
            hidden=32, image_size=16, subgrid=TINY_SUBGRID, mig_samples=64)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ISA_VAE_CACHE", str(d))
    return d


def tiny_runs(seeds=(0, 1), model="beta_vae", **kw):
    return [RunConfig(**{**TINY, **kw}, model=model, seed=s) for s in seeds]


def scores(metrics: dict) -> dict:
    """A run's numbers without what depends on the clock or the machine."""
    return {k: v for k, v in metrics.items() if k not in ("timings", "versions")}


def fail_updates_of(path, config_hash: str | None = None):
    """An SQLite trigger that aborts every update of a run's row (all rows if ``config_hash`` is None):
    a write that fails inside its transaction, as a full disk would."""
    when = "" if config_hash is None else f"WHEN NEW.config_hash = '{config_hash}'"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TRIGGER fail BEFORE UPDATE ON runs {when} BEGIN "
                   f"SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END")


def drop_trigger(path):
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER fail")


def outcome(c, mig=0.5):
    return {"config_hash": c.config_hash(), "status": "done", "duration": 1.0,
            "metrics": {"mig": mig, "reconstruction": -1.0, "versions": {"torch": "x"}}}


def test_a_fused_task_is_written_all_or_none(tmp_path):
    path = tmp_path / "l.db"
    ledger = Ledger(path)
    a, b = tiny_runs()
    ledger.add([a, b])
    ledger.claim([a.config_hash(), b.config_hash()])
    fail_updates_of(path, b.config_hash())   # the second row's write fails after the first one's succeeded
    with pytest.raises(sqlite3.Error, match="disk is full"):
        ledger.record_many([outcome(a), outcome(b)])
    assert ledger.statuses() == {a.config_hash(): "running", b.config_hash(): "running"}
    drop_trigger(path)
    assert ledger.record_many([outcome(a), outcome(b)]) == 2
    assert set(ledger.statuses().values()) == {"done"}


def test_keep_retries_then_saves_a_side_file_that_the_next_sweep_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "WRITE_WAIT_S", 0.0)
    path = tmp_path / "l.db"
    configs = tiny_runs()
    ledger = Ledger(path)
    ledger.add(configs)
    fail_updates_of(path)
    with pytest.raises(LedgerWriteError) as err:
        ledger.keep([outcome(c) for c in configs])
    side = tmp_path / "l.db.unrecorded"
    files = list(side.glob("*.json"))
    assert len(files) == 1 and str(files[0]) in str(err.value) and "disk is full" in str(err.value)
    saved = json.loads(files[0].read_text())
    assert saved["outcomes"][0]["metrics"]["mig"] == 0.5 and saved["ledger"] == str(path.resolve())
    assert saved["format"] == L.SIDE_FILE_FORMAT and len(saved["rows_digest"]) == 64
    assert (side.stat().st_mode & 0o777, files[0].stat().st_mode & 0o777) == (0o700, 0o600)
    drop_trigger(path)
    assert ledger.recover_side_files() == 2 and not list(side.glob("*.json"))
    assert {r["config_hash"]: r["metrics"]["mig"] for r in ledger.rows()} == {c.config_hash(): 0.5 for c in configs}


def test_side_files_stay_beside_the_ledger_and_nothing_is_dropped_when_none_can_be_written(tmp_path, monkeypatch,
                                                                                           capsys):
    monkeypatch.setattr(L, "WRITE_WAIT_S", 0.0)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    ledger = Ledger(tmp_path / "l.db")
    (tmp_path / "l.db.unrecorded").write_text("a file where the side-file folder should be")
    (c,) = tiny_runs(seeds=(0,))
    ledger.add([c])
    fail_updates_of(ledger.path)
    with pytest.raises(LedgerWriteError, match=r"no side file could be written in .*l\.db\.unrecorded") as err:
        ledger.keep([outcome(c, mig=0.75)])
    assert err.value.side_file is None and err.value.outcomes[0]["metrics"]["mig"] == 0.75
    printed = capsys.readouterr().err
    assert "unrecorded outcomes for ledger" in printed and '"mig": 0.75' in printed
    assert not (tmp_path / "tmp").exists()          # never the shared temporary directory
    assert {p.name for p in tmp_path.iterdir()} - {"cache", "l.db-wal", "l.db-shm"} == {"l.db", "l.db.unrecorded"}


def test_a_sweep_whose_ledger_refuses_writes_loses_no_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(L, "WRITE_WAIT_S", 0.0)
    path = tmp_path / "l.db"
    configs = tiny_runs()
    Ledger(path).add(configs)
    fail_updates_of(path)                      # the disk "fills" while the runs train
    with pytest.raises(LedgerWriteError, match="unrecorded"):
        sweep(configs, path, fuse=2, progress=False)
    drop_trigger(path)
    s = sweep(configs, path, fuse=2, progress=True)
    assert s["ran"] == 0 and s["done"] == 2    # read back from the side file, not trained again
    assert "2 finished run(s) read back from side files" in capsys.readouterr().err
    assert not list((tmp_path / "l.db.checkpoints").glob("*"))   # and the kept checkpoints are cleaned up


def test_one_sweep_per_ledger(tmp_path):
    path = tmp_path / "l.db"
    ledger = Ledger(path)
    with ledger.lease():                       # (makes the lease table)
        pass
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with sqlite3.connect(path) as db:     # a live sweep on this host holds the ledger
            db.execute("INSERT INTO lease VALUES (1, ?, ?, ?, ?, 'isa-vae sweep --grid g.yml')",
                       (socket.gethostname(), other.pid, time.time(), time.time()))
        with pytest.raises(LedgerBusyError, match=rf"pid {other.pid} on {socket.gethostname()}.*g\.yml"):
            sweep(tiny_runs(), path, progress=False)
        assert Ledger(path).counts() == {}     # refused before anything was added or requeued
    finally:
        other.kill()
        other.wait()
    with ledger.lease():                       # its process is gone: the lease is taken over
        assert ledger.lease_holder()["pid"] == __import__("os").getpid()
        with ledger.lease():                   # re-entrant in the holding process
            pass
        assert ledger.lease_holder() is not None
    assert ledger.lease_holder() is None       # released on exit


def test_a_lease_on_another_host_holds_while_its_heartbeat_is_fresh(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease():                       # (makes the lease table)
        pass
    with sqlite3.connect(ledger.path) as db:
        db.execute("INSERT INTO lease VALUES (1, 'node-7', 4242, ?, ?, 'sweep')", (time.time(), time.time()))
    with pytest.raises(LedgerBusyError, match="node-7"):
        with ledger.lease():
            pass
    with ledger.lease(stale_s=0.0):            # no heartbeat for longer than stale_s: abandoned
        assert ledger.lease_holder()["host"] == socket.gethostname()


def test_the_lease_heartbeat_advances(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease(heartbeat_s=0.05):
        first = ledger.lease_holder()["heartbeat"]
        deadline = time.time() + 30
        while ledger.lease_holder()["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert ledger.lease_holder()["heartbeat"] > first


@pytest.mark.parametrize("fused", [True, False])
def test_a_sweep_checkpoint_resumes_to_the_uninterrupted_numbers(tmp_path, fused):
    configs = tiny_runs(seeds=(0, 1) if fused else (0,), model="isa_vae")
    reference = [scores(o["metrics"]) for o in run_group(configs)]
    # An interrupted task: training stopped after 5 steps, its checkpoint left behind.
    data = R.load_data(configs[0])
    folder = tmp_path / "ckpt"
    R._train_models(configs, data, fused, max_steps=5, checkpoint_dir=folder)
    (ckpt,) = folder.glob("*.pt")
    assert R.checkpoint_interval(configs[0]) < configs[0].steps
    resumed = run_group(configs, checkpoint_dir=folder)
    assert [scores(o["metrics"]) for o in resumed] == reference
    assert R.remove_checkpoints(folder, {c.config_hash() for c in configs}) == 1 and not ckpt.exists()


def test_a_checkpoint_from_other_settings_is_discarded_not_fatal(tmp_path):
    (c,) = tiny_runs(seeds=(0,))
    reference = scores(run_group([c])[0]["metrics"])
    folder = tmp_path / "ckpt"
    data = R.load_data(c)
    R._train_models([dataclasses.replace(c, lr=5e-4)], data, False, max_steps=3, checkpoint_dir=folder)
    (stale,) = folder.glob("*.pt")
    stale.rename(R.checkpoint_path(folder, [c], False))    # as if older code had written this run's file
    with pytest.warns(R.CheckpointDiscardedWarning, match=r"checkpoint discarded \(deleted\).*another configuration"):
        assert scores(run_group([c], checkpoint_dir=folder)[0]["metrics"]) == reference


def test_the_sweep_default_fuses_only_on_a_gpu(tmp_path):
    from isa_lib.experiments import default_fuse

    assert default_fuse("cpu") == 1 and default_fuse("cuda:0") == 4
    runs = expand_grid({"scale": "small", "models": ["beta_vae"], "seeds": 2, **TINY})
    assert sweep(runs, tmp_path / "l.db", progress=False)["tasks"] == 2   # CPU runs: one task each


def test_a_sweep_reports_each_run_and_its_progress_with_an_eta(tmp_path, capsys):
    runs = tiny_runs(seeds=(0, 1, 2))
    sweep(runs, tmp_path / "l.db", progress=True)
    err = capsys.readouterr().err
    assert err.count("  done   beta_vae") == 3                        # one line per finished run
    assert "[1/3 runs," in err and "ETA 0:" in err and "[3/3 runs," in err
    assert "3 to run in 3 task(s) of up to 1 on local" in err         # a CPU sweep: one run per task


def test_opening_an_existing_ledger_leaves_its_bytes_alone(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).add(tiny_runs())
    raw = path.read_bytes()
    ledger = Ledger(path)
    assert ledger.counts() == {"pending": 2} and ledger.lease_holder() is None
    assert path.read_bytes() == raw


def test_a_lost_ray_task_puts_its_runs_back_to_pending_with_their_checkpoints(tmp_path, monkeypatch, capsys):
    """Issue 23, item 6: a worker that dies is an infrastructure failure, not a failed run. Ray is faked: each
    task claims its runs as a worker would, then its worker 'dies' (ray.get raises)."""
    ray = pytest.importorskip("ray")
    path = tmp_path / "l.db"
    configs = tiny_runs(seeds=(0, 1, 2))
    ledger = Ledger(path)
    ledger.add(configs)
    ledger.claim([configs[2].config_hash()])
    ledger.record(outcome(configs[2], mig=0.25))              # one run was recorded before its worker died
    folder = R.checkpoint_folder(path)
    folder.mkdir()
    for c in configs[:2]:                                      # and the others had checkpoints
        (folder / f"{c.config_hash()[:8]}.alone.pt").write_bytes(b"checkpoint")
        (folder / f"{c.config_hash()[:8]}.alone.runs").write_text(c.config_hash())

    class Lost(Exception):
        pass

    class Remote:
        def remote(self, group, ledger_path, *args):
            Ledger(ledger_path).claim([c.config_hash() for c in group])
            return object()                                    # an object ref

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    monkeypatch.setattr(ray, "remote", lambda **kw: lambda fn: Remote())
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray, "get", lambda ref: (_ for _ in ()).throw(Lost("worker died (SIGKILL)")))
    s = sweep(configs, path, backend="ray", progress=True)
    assert (s["done"], s["failed"], s["pending"]) == (1, 0, 2)
    rows = {r["config_hash"]: r for r in ledger.rows()}
    for c in configs[:2]:
        assert rows[c.config_hash()]["status"] == "pending"
        assert "task lost (infrastructure, not the run" in rows[c.config_hash()]["error"]
        assert "worker died (SIGKILL)" in rows[c.config_hash()]["error"]
        assert (folder / f"{c.config_hash()[:8]}.alone.pt").exists()   # kept for the next sweep
    assert rows[configs[2].config_hash()]["metrics"]["mig"] == 0.25
    err = capsys.readouterr().err
    assert "back to pending with their checkpoints" in err and "2 pending (lost tasks" in err
    assert [c.config_hash() for c in ledger.runs_to_do(configs)] == [c.config_hash() for c in configs[:2]]


def test_a_row_with_this_pid_that_this_process_did_not_write_is_a_former_process_and_taken_over(tmp_path):
    """Issue 23, item 6: a container restarts its sweep as pid 1, and the dead sweep's row has the same host
    and pid. At 2d84c1a that row was taken for this process's own hold: no heartbeat ran, and another sweep
    could take the ledger over and requeue live runs."""
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease():                       # (makes the lease table)
        pass
    with sqlite3.connect(ledger.path) as db:   # the former process: same host and pid, fresh heartbeat
        db.execute("INSERT INTO lease VALUES (1, ?, ?, 12345.0, ?, 'sweep before the restart')",
                   (socket.gethostname(), __import__("os").getpid(), time.time()))
    with ledger.lease(heartbeat_s=0.05):
        holder = ledger.lease_holder()
        assert holder["started"] != 12345.0 and holder["command"] != "sweep before the restart"
        first = holder["heartbeat"]
        deadline = time.time() + 30
        while ledger.lease_holder()["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert ledger.lease_holder()["heartbeat"] > first      # this hold's heartbeat runs
        ledger.check_lease()
    assert ledger.lease_holder() is None


def test_a_hold_taken_over_is_never_renewed_and_the_sweep_is_told(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    with ledger.lease(heartbeat_s=0.05):
        ledger.check_lease()                                   # still ours
        with sqlite3.connect(ledger.path) as db:               # another sweep took it over (say we stalled)
            db.execute("UPDATE lease SET host = 'node-9', pid = 77, started = 1.0, heartbeat = 2.0, "
                       "command = 'the other sweep'")
        time.sleep(0.3)                                        # several heartbeats (not a timing assertion)
        row = ledger.lease_holder()
        assert (row["host"], row["pid"], row["heartbeat"]) == ("node-9", 77, 2.0)   # not renewed by us
        with pytest.raises(LedgerBusyError, match=r"lost its hold on ledger .*pid 77 on node-9.*the other sweep"):
            ledger.check_lease()
    assert ledger.lease_holder()["host"] == "node-9"           # and our exit did not remove their hold


def test_a_sweep_whose_hold_is_taken_over_stops_after_its_current_task(tmp_path, monkeypatch):
    from isa_lib.experiments import sweeps as S

    configs = tiny_runs(seeds=(0, 1, 2))
    path = tmp_path / "l.db"
    calls = []

    def task(group, ledger_path, *args):
        calls.append(group)
        ledger = Ledger(ledger_path)
        ledger.claim([c.config_hash() for c in group])
        if len(calls) == 1:                                    # during the first task another sweep takes over
            with sqlite3.connect(ledger_path) as db:
                db.execute("UPDATE lease SET host = 'node-9', pid = 77, started = 1.0")
        return [{**outcome(c), "written": False} for c in group]

    monkeypatch.setattr(S, "execute_group", task)
    with pytest.raises(LedgerBusyError, match="lost its hold"):
        sweep(configs, path, progress=False)
    assert len(calls) == 1                                     # no second task was started
    assert Ledger(path).statuses()[configs[0].config_hash()] == "done"   # the finished run is recorded


RACER = """
import os, random, sqlite3, sys, time
from isa_lib.experiments import ledger as L
path, cs, n_iter, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng, me, ledger = random.Random(seed), os.getpid(), L.Ledger(path)

def cs_tx(fn):
    db = sqlite3.connect(cs, timeout=60, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        fn(db)
        db.execute("COMMIT")
    finally:
        db.close()

def enter(db):
    (owner,) = db.execute("SELECT owner FROM cs").fetchone()
    if owner is not None and owner != me and L.pid_alive(owner):   # a live sweep still inside: two holders
        db.execute("INSERT INTO violations VALUES (?, ?)", (me, owner))
    db.execute("UPDATE cs SET owner = ?, entries = entries + 1", (me,))

for _ in range(n_iter):
    try:
        with ledger.lease(heartbeat_s=0.05, stale_s=600):
            cs_tx(enter)
            time.sleep(rng.random() * 0.02)
            ledger.check_lease()
            cs_tx(lambda db: db.execute("UPDATE cs SET owner = NULL WHERE owner = ?", (me,)))
    except L.LedgerBusyError:
        time.sleep(rng.random() * 0.01)
"""


def test_property_racing_sweeps_under_random_kills_never_hold_the_ledger_together(tmp_path):
    """Issue 23: three processes take the lease again and again, each entering a critical section while it
    holds it; random ones are SIGKILLed (inside or outside their hold) and replaced. Property: no process ever
    finds another live one inside (every takeover is of a dead holder), and the ledger stays usable."""
    import os
    import random
    import signal

    path, cs = tmp_path / "l.db", tmp_path / "cs.db"
    Ledger(path)
    with sqlite3.connect(cs) as db:
        db.execute("CREATE TABLE cs (owner INTEGER, entries INTEGER)")
        db.execute("INSERT INTO cs VALUES (NULL, 0)")
        db.execute("CREATE TABLE violations (who INTEGER, found INTEGER)")
    rng = random.Random(23)
    spawn = lambda k: subprocess.Popen([sys.executable, "-c", RACER, str(path), str(cs), "100", str(k)],  # noqa: E731
                                       cwd=tmp_path)
    procs = [spawn(k) for k in range(3)]
    kills = 0
    try:
        while kills < 8:
            time.sleep(rng.uniform(0.05, 0.5))
            alive = [p for p in procs if p.poll() is None]
            if not alive:
                break
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()                          # reaped: a zombie would still look alive
            kills += 1
            procs.append(spawn(100 + kills))
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    with sqlite3.connect(cs) as db:
        assert db.execute("SELECT * FROM violations").fetchall() == []
        entries = db.execute("SELECT entries FROM cs").fetchone()[0]
    assert kills >= 3 and entries >= 20          # the racers made progress through the kills
    assert all(p.returncode in (0, -signal.SIGKILL) for p in procs)
    with Ledger(path).lease():                   # a killed holder's row is taken over at once
        assert Ledger(path).lease_holder()["pid"] == os.getpid()


# ---------------------------------------------------------------------------------------------------------------
# Issue 23: fusion is part of a run's identity. Fused training equals separate training only up to reduction
# order, so a run trained in a fused group of K > 1 carries fused=K in its hash; a run trained alone keeps the
# hash it always had.
from pathlib import Path  # noqa: E402

from isa_lib.experiments import load_grid  # noqa: E402
from isa_lib.experiments.sweeps import assign_fusion  # noqa: E402

#: Hashes of runs trained alone, as every ledger before this rule stored them (computed at 028ad5a).
UNFUSED_HASHES = {
    "default": (RunConfig(), "91d97480dff2ca76f489f3e60dd4828fd0d42654ffded8200cfc194d67d157d6"),
    "small isa_vae": (None, "1fd414c59961cabf2c0fbffc448ef47dc17c08d7e264dd3e42072239a45b30d1"),
}


def test_an_unfused_run_keeps_its_hash_and_a_fused_one_gets_another():
    from isa_lib.experiments import config_for

    small = config_for("small", model="isa_vae", seed=3, beta=2.0)
    for name, (c, expected) in UNFUSED_HASHES.items():
        c = small if c is None else c
        assert c.config_hash() == expected and dataclasses.replace(c, fused=1).config_hash() == expected
        assert "fused" not in c.to_dict()                          # stored as older code stored it
        fused = {dataclasses.replace(c, fused=k).config_hash() for k in (2, 4)}
        assert len(fused) == 2 and expected not in fused
    with pytest.raises(ValueError, match=r"fused=2: factor_vae .* never trained fused"):
        RunConfig(model="factor_vae", fused=2)
    with pytest.raises(ValueError, match=r"fused must be a whole number in \[1, 100000\]"):
        RunConfig(fused=0)


def test_fusion_is_planned_over_the_whole_grid_and_repeats_follow_their_source():
    grid = [RunConfig(seed=s, beta=b) for s in range(3) for b in (1.0, 2.0)] + \
        [RunConfig(model="beta_tcvae", beta=1.0, seed=2), RunConfig(model="factor_vae", seed=0)]
    assigned, groups = assign_fusion(grid, 4)
    assert [c.fused for c in assigned] == [4, 4, 4, 4, 2, 2, 2, 1]
    assert assigned[6].equivalent() == assigned[4]                # beta-TCVAE at beta 1 copies its source's row
    assert [len(g) for g in groups] == [4, 2, 1] and all(c.fused == len(g) for g in groups[:2] for c in g)
    assert assign_fusion(grid, 1)[0] == grid                       # --fuse 1: every hash as before
    assert assign_fusion(assigned, 4)[0] == assigned               # the same plan again (a resumed sweep)


def test_the_same_config_fused_and_unfused_gets_two_hashes_and_two_rows(tmp_path):
    """``--fuse 1`` and ``--fuse 2`` over one grid and one ledger: two rows per run, each with its own numbers
    and its own fusion; the second sweep with ``--fuse 2`` runs nothing."""
    runs = tiny_runs()
    path = tmp_path / "l.db"
    assert sweep(runs, path, fuse=1, progress=False)["ran"] == 2
    s = sweep(runs, path, fuse=2, progress=False)
    assert s["ran"] == 2 and s["done"] == 2
    rows = {r["config_hash"]: r for r in Ledger(path).rows()}
    assert len(rows) == 4
    for c in runs:
        alone, fused = rows[c.config_hash()], rows[dataclasses.replace(c, fused=2).config_hash()]
        assert alone["metrics"]["timings"]["fused"] == 1 and fused["metrics"]["timings"]["fused"] == 2
        assert "fused" not in alone["config"] and fused["config"]["fused"] == 2
    assert sweep(runs, path, fuse=2, progress=False)["ran"] == 0
    assert sweep(runs, path, fuse=1, progress=False)["ran"] == 0


def test_a_fused_group_with_one_run_to_redo_trains_whole_and_records_only_that_run(tmp_path):
    """Its hash says it was trained in a group of 2: it is, with the done run riding along unrecorded, and its
    numbers are those of the first sweep digit for digit."""
    runs = tiny_runs()
    path = tmp_path / "l.db"
    sweep(runs, path, fuse=2, progress=False)
    first = {r["config_hash"]: r for r in Ledger(path).rows()}
    redo = dataclasses.replace(runs[1], fused=2).config_hash()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET status = 'pending', metrics = NULL WHERE config_hash = ?", (redo,))
    s = sweep(runs, path, fuse=2, progress=False)
    assert s["ran"] == 1 and s["done"] == 2
    again = {r["config_hash"]: r for r in Ledger(path).rows()}
    assert scores(again[redo]["metrics"]) == scores(first[redo]["metrics"])
    assert again[redo]["metrics"]["timings"]["fused"] == 2
    kept = next(h for h in first if h != redo)
    assert again[kept]["finished"] == first[kept]["finished"]       # the rider was not recorded again
    with pytest.raises(ValueError, match=r"planned for a fused group of 2 .* were given 1 at a time"):
        run_group([dataclasses.replace(runs[0], fused=2)])


def test_rows_trained_fused_under_an_unfused_hash_are_rekeyed_on_open(tmp_path):
    """Migration: a ledger written before the rule, whose rows were trained fused (timings.fused = 2) under the
    hash of the run alone, has them moved to the fused hash with their data; a sweep with --fuse 2 then finds
    them done and one with --fuse 1 trains the runs alone under their own hashes."""
    runs = tiny_runs()
    path = tmp_path / "l.db"
    sweep(runs, path, fuse=2, progress=False)
    before = {r["config"]["seed"]: r for r in Ledger(path).rows()}
    with sqlite3.connect(path) as db:                              # the rows as older code wrote them
        for c in runs:
            db.execute("UPDATE runs SET config_hash = ?, config = ? WHERE config_hash = ?",
                       (c.config_hash(), json.dumps(c.to_dict(), sort_keys=True),
                        dataclasses.replace(c, fused=2).config_hash()))
        db.execute("INSERT INTO runs (config_hash, config, status, metrics) VALUES ('x', '{}', 'done', "
                   "'{\"timings\": {\"fused\": 3}}')")             # not a key this library made: left alone
    ledger = Ledger(path)
    rows = {r["config_hash"]: r for r in ledger.rows()}
    for c in runs:
        row = rows[dataclasses.replace(c, fused=2).config_hash()]
        assert c.config_hash() not in rows and scores(row["metrics"]) == scores(before[c.seed]["metrics"])
    assert "x" in rows and ledger.rekey_fused_rows() == 0
    assert sweep(runs, path, fuse=2, progress=False)["ran"] == 0
    assert sweep(runs, path, fuse=1, progress=False)["ran"] == 2


def test_the_running_budget_study_keeps_every_key_and_needs_no_new_column(tmp_path):
    """The budget study (an unfused sweep by older code) read by this code from a copy: the migration moves
    nothing, no column is added, and the grid at --fuse 1 (its default on a CPU) finds every row by its hash."""
    import shutil

    src = Path(__file__).parents[1] / "results" / "dsprites_budget.db"
    copy = tmp_path / "budget.db"
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as db, sqlite3.connect(copy) as out:
        db.backup(out)
    with sqlite3.connect(copy) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
        stored = dict(db.execute("SELECT config_hash, config FROM runs").fetchall())
    ledger = Ledger(copy)
    assert ledger.rekey_fused_rows() == 0
    with sqlite3.connect(copy) as db:
        assert [r[1] for r in db.execute("PRAGMA table_info(runs)")] == columns
        assert dict(db.execute("SELECT config_hash, config FROM runs").fetchall()) == stored
    grid, _ = assign_fusion(load_grid(Path(__file__).parents[1] / "experiments/grids/dsprites_budget.yml"), 1)
    assert {c.config_hash() for c in grid} <= set(stored)
    assert ledger.add(grid) == 0                                     # nothing new: every run found by its key
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)

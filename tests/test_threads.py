"""The thread policy for CPU work (isa_lib.threads)."""
import os

import pytest

from isa_lib import cli, threads


def test_an_explicit_request_wins_then_the_environment_then_one(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose("large", requested=2) == 2
    assert threads.choose("small") == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.choose("small") == threads.choose("medium") == 1


def test_training_threads_do_not_depend_on_the_machine_or_its_load(monkeypatch):
    """The thread count changes a run's numbers, so the default is one at every scale, whatever the
    cores and the load (it was the idle cores at large: a chapter's numbers depended on the load)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores in (1, 2, 8, 64):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        for load in (0.0, 2.6, 40.0):
            monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
            for scale in ("small", "medium", "large", "budget", "paper", None):
                assert threads.choose(scale) == 1, (cores, load, scale)


def test_thread_independent_work_gets_the_idle_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    for load, want in ((0.0, 8), (2.6, 5), (7.9, 1), (40.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert threads.idle_cores() == want, load
    assert threads.idle_cores(3) == 3
    with pytest.raises(ValueError, match="whole number of threads"):
        threads.idle_cores(0)


def test_the_thread_count_changes_training_numbers_and_one_thread_repeats_them():
    """Why the default is fixed: a few steps of the same seed on one thread and on two give different
    weights, and one thread twice gives the same (on a machine with one core both use one: skipped)."""
    import subprocess
    import sys

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: two threads cannot be compared with one")
    child = (
        "import sys, torch\n"
        "from isa_lib.experiments import RunConfig\n"
        "from isa_lib.experiments.run import _train_models, load_data\n"
        "torch.set_num_threads(int(sys.argv[1]))\n"
        "c = RunConfig(dataset='dsprites', model='beta_vae', epochs=1.0, batch_size=128, latent_dim=10,\n"
        "              hidden=512, image_size=64, seed=0, subgrid={'shape': [0, 1, 2], 'scale': [0, 5],\n"
        "              'orientation': [0, 10, 20, 30], 'posX': [0, 15, 31], 'posY': [0, 15, 31]})\n"
        "models, _ = _train_models([c], load_data(c), fused=False, max_steps=5)\n"
        "print(repr(sum(p.double().sum().item() for p in models[0].parameters())))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}

    def weights(n):
        out = subprocess.run([sys.executable, "-c", child, str(n)], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return float(out.stdout.strip().splitlines()[-1])

    one, two, again = weights(1), weights(2), weights(1)
    assert one == again
    assert one != two


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True])
def test_a_bad_thread_count_is_named(bad, monkeypatch):
    with pytest.raises(ValueError, match="whole number of threads >= 1"):
        threads.choose(requested=bad)
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS must be"):
        threads.choose("small")


def test_for_children_sets_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with threads.for_children(2):
        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"
    assert os.environ["OMP_NUM_THREADS"] == "1" and "MKL_NUM_THREADS" not in os.environ


def test_use_sets_torch_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))
    try:
        threads.use(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_the_command_line_refuses_a_bad_thread_count(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "05", "--threads", "0", "--dry-run"])
    assert "whole number of threads >= 1" in capsys.readouterr().err

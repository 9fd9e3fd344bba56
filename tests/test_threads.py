"""The thread policy for CPU work (isa_lib.threads)."""
import os

import pytest

from isa_lib import cli, threads


def test_an_explicit_request_wins_then_the_environment_then_the_scale(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose("large", requested=2) == 2
    assert threads.choose("small") == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.choose("small") == threads.choose("medium") == 1


def test_other_work_gets_the_idle_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    for load, want in ((0.0, 8), (2.6, 5), (7.9, 1), (40.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert threads.choose("paper") == want, load


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

"""Experiment runner, SQLite ledger and sweeps of the paper's comparison (Sec. 4, Tables 1-2, App. A.3-A.5).

One run is a :class:`RunConfig` (frozen and hashable; its :meth:`RunConfig.config_hash` is the ledger key).
:func:`run_one` trains and scores one configuration; :func:`run_group` trains several that differ only in
seed and beta as one fused computation (:func:`isa_lib.train.train_many`). :class:`Ledger` is a SQLite file
with one row per run; :func:`sweep` runs whatever the ledger does not yet hold as done, in-process or as Ray
tasks, and every worker writes its own finished runs, so a sweep killed at any moment resumes without losing
or repeating a finished run.

Models (Sec. 4): ``beta_vae`` and ``beta_tcvae`` (normal prior), ``isa_vae`` (ISA prior, beta-VAE objective,
Eq. 12), ``isa_tcvae`` (ISA prior, beta-TCVAE objective), ``isa_vae_learned`` (ISA prior whose subspace
exponents are learned, App. A.2), ``factor_vae`` (``beta`` holds FactorVAE's gamma).

One module per concern, each importable on its own; this package re-exports their public names:

* :mod:`.config`: :class:`RunConfig`, the models, the scales (:func:`scale_defaults`, :func:`config_for`);
* :mod:`.grids`: sweep grids (:func:`expand_grid`, :func:`load_grid`);
* :mod:`.run`: the data of a run, building, training and scoring (:func:`run_group`, :func:`run_one`);
* :mod:`.ledger`: the SQLite :class:`Ledger`;
* :mod:`.sweeps`: planning fused tasks, local and Ray execution, the ``isa-vae sweep`` command.
"""
from __future__ import annotations

# Besides __all__, the names that notebooks, benchmarks and tests use from the former single module.
from .config import (BUDGET_DSPRITES, BUDGET_HIDDEN, HASH_VERSION, LARGE_DSPRITES, LARGE_FACES, MODELS, SCALES,
                     ModelSpec, RunConfig, config_for, scale_defaults)  # noqa: F401
from .grids import GridError, expand_grid, load_grid
from .ledger import Ledger, LedgerBusyError, LedgerError, LedgerWriteError
from .run import (TaskTiming, _train_config, build_model, evaluate, load_data, run_group, run_one,
                  seconds_per_step, task_timing, versions)  # noqa: F401
from .sweeps import default_fuse, execute_group, plan_groups, start_ray, sweep, sweep_main  # noqa: F401

__all__ = [
    "MODELS", "SCALES", "RunConfig", "scale_defaults", "expand_grid", "load_grid", "run_one", "run_group",
    "Ledger", "sweep", "sweep_main", "plan_groups", "GridError", "seconds_per_step", "task_timing",
    "TaskTiming", "config_for",
    "LedgerError", "LedgerBusyError", "LedgerWriteError", "default_fuse",
]

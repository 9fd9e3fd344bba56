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

Scales (:func:`scale_defaults`) are parameter sets, as for the book's chapters:

* ``paper``: Table 1 (App. A.3-A.4): full dSprites, MLP with 1200 hidden units on 64 x 64 images, 20 epochs,
  batch 2048, Adam lr 1e-3, MIG with 10,000 samples. The latent size is 20 for every model: ERRATA notes
  that Table 1 gives 20 latent dimensions (10 in Chen et al.'s set-up), and the paper's ISA layout, l0 = 5
  subspaces of 4 (p0 = 2.1, p_i = 2.2), needs 20; using 20 for the baselines too keeps the comparison
  like for like.
* ``small``: a 3,072-image dSprites sub-grid at 32 x 32, a 256-unit MLP, 1,920 steps of batch 64, MIG on
  1,000 samples: ~20 s on a CPU (measured 18 s). A few hundred steps are not enough: dSprites models then
  sit at the mean image (KL ~1 nat, MIG ~0, measured); at ~2,000 steps they have learned position.
* ``medium``: a 23,040-image sub-grid (3 shapes x 3 scales x 10 orientations x 16 x 16 positions) at
  32 x 32, a 256-unit MLP, 10 epochs = 1,800 steps of batch 128, MIG on 2,000 samples: 1-4 minutes per run
  on a 2-core CPU depending on load (experiments/grids/dsprites_medium.yml gives the measurements).

* ``large``: the paper's regime on a CPU: 64 x 64 binary dSprites (no averaging) on a 184,320-image
  sub-grid that keeps every shape, all 6 scales and all 40 orientations with 16 x 16 positions, an MLP with
  512 hidden units (the paper's 1200 costs 2.7x more per image on a CPU, measured), lr 1e-3, batch 128,
  3 epochs = 4,320 steps (the KL at beta = 1 levels off after ~2,000, measured), MIG on 1,000 samples.
  For 3D faces, ``large`` is the paper's conv nets and Table 2 prior on 10 identities with every azimuth,
  elevation and lighting (25,410 images), batch 64.

small and medium use version 1 of the dSprites generator (the data their committed studies were made with);
large and paper use the newest (areas proportional to scale^2, :mod:`isa_lib.datasets.dsprites`).

Reduced image sizes are made by averaging pixel blocks (dSprites stays exact: a block's pixel count, stored
as uint8, with ``max_value`` the block area), so the reconstruction term is then in nats per reduced image.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "MODELS", "SCALES", "RunConfig", "scale_defaults", "expand_grid", "load_grid", "run_one", "run_group",
    "Ledger", "sweep", "sweep_main", "plan_groups", "GridError", "seconds_per_step", "config_for",
]

#: Version of the run semantics; part of every hash, so a change of meaning never reuses old rows.
HASH_VERSION = 1

SCALES = ("small", "medium", "large", "paper")


@dataclass(frozen=True)
class ModelSpec:
    prior: str          # "normal" or "isa"
    objective: str      # objective of isa_lib.train.TrainConfig
    learn: bool = False  # learned ISA exponents (App. A.2)


#: The paper's models (Sec. 4, Tables 1-2) as (prior, objective) pairs.
MODELS: dict[str, ModelSpec] = {
    "beta_vae": ModelSpec("normal", "beta_vae"),
    "beta_tcvae": ModelSpec("normal", "beta_tcvae"),
    "isa_vae": ModelSpec("isa", "beta_vae"),
    "isa_tcvae": ModelSpec("isa", "beta_tcvae"),
    "isa_vae_learned": ModelSpec("isa", "beta_vae", learn=True),
    "factor_vae": ModelSpec("normal", "factor_vae"),
}

#: beta-TCVAE models and the model each one equals at beta = 1 (RunConfig.equivalent).
_SAME_AT_BETA_ONE = {"beta_tcvae": "beta_vae", "isa_tcvae": "isa_vae"}

_LEARN_BOUNDS = (0.5, 5.0)  # ISAPrior's default bounds on learned exponents


def _freeze_subgrid(subgrid) -> tuple | None:
    """A subgrid (mapping or pairs, factor -> classes) as sorted ((factor, (classes...)), ...)."""
    if subgrid is None:
        return None
    items = subgrid.items() if isinstance(subgrid, Mapping) else subgrid
    out = []
    for item in items:
        try:
            name, classes = item
        except (TypeError, ValueError):
            raise ValueError(f"subgrid entries must be (factor, classes) pairs, got {item!r}") from None
        if isinstance(classes, (int, np.integer)):
            classes = [classes]
        out.append((str(name), tuple(sorted({int(c) for c in classes}))))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"subgrid names a factor twice: {names}")
    return tuple(sorted(out)) or None


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run (defaults: the paper's dSprites set-up, Table 1, App. A.3-A.4).

    ``beta`` is FactorVAE's gamma for ``model="factor_vae"``. ``layout`` is the ISA subspace sizes (Eq. 10),
    ``p0`` the outer exponent, ``p`` the fixed subspace exponent, ``p_init`` the starting value of learned
    exponents. ``hidden``/``image_size`` shrink the MLP and the images; ``subgrid`` keeps a sub-grid of the
    factors ((factor, classes) pairs; a dict is accepted). Fields a model does not use are set to ``None``,
    so that e.g. every beta-VAE run has one hash whatever ISA settings a grid carries.
    ``data_version`` is the built-in generator's version (None: the newest; dSprites 1 is the rasteriser of
    the older studies, see :mod:`isa_lib.datasets.dsprites`). ``beta_warmup_steps`` raises beta linearly
    from 0 over that many steps (0: off; the authors' code can warm up over 7,000 iterations on dSprites,
    whether the paper did is not stated).
    """

    dataset: str = "dsprites"
    model: str = "beta_vae"
    beta: float = 1.0
    seed: int = 0
    epochs: float = 20.0
    latent_dim: int = 20
    layout: tuple | None = (4, 4, 4, 4, 4)
    p0: float | None = 2.1
    p: float | None = 2.2
    p_init: float | None = 2.0
    architecture: str = "mlp"
    hidden: int | None = 1200
    image_size: int = 64
    batch_size: int = 2048
    lr: float = 1e-3
    subgrid: tuple | None = None
    mig_samples: int = 10000
    estimator: str | None = "mss"
    disc_hidden: int | None = 1000
    device: str = "cpu"
    amp: bool = False
    data_version: int | None = None
    beta_warmup_steps: int = 0

    def __post_init__(self):
        from .datasets import NAMES, factor_spec

        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {sorted(MODELS)}")
        if self.dataset not in NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {list(NAMES)}")
        spec = MODELS[self.model]
        for name in ("beta", "epochs", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                what = "gamma (beta field)" if name == "beta" and self.model == "factor_vae" else name
                raise ValueError(f"{what} must be a finite number > 0, got {v!r}")
            put(name, float(v))
        for name, low in (("seed", 0), ("latent_dim", 2), ("batch_size", 2), ("mig_samples", 1),
                          ("image_size", 4)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
            put(name, int(v))
        if self.architecture not in ("mlp", "conv"):
            raise ValueError(f"unknown architecture {self.architecture!r}; choose 'mlp' or 'conv'")
        if 64 % self.image_size:
            raise ValueError(f"image_size must divide 64 (images are reduced by whole blocks), got {self.image_size}")
        if self.architecture == "conv":
            if self.image_size != 64 or self.hidden is not None:
                raise ValueError("the 'conv' architecture is fixed at 64 x 64 (App. A.4): image_size=64, hidden=None")
        else:
            hidden = 1200 if self.hidden is None else self.hidden
            if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
                raise ValueError(f"hidden must be a positive integer, got {self.hidden!r}")
            put("hidden", int(hidden))
        if not isinstance(self.device, str) or not self.device.split(":")[0] in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")
        put("amp", bool(self.amp))
        from .datasets import generator_version, generator_versions

        dv = generator_version(self.dataset) if self.data_version is None else self.data_version
        known = generator_versions(self.dataset)
        if isinstance(dv, bool) or not isinstance(dv, (int, np.integer)) or dv not in known:
            raise ValueError(f"data_version of {self.dataset} must be one of {known}, got {self.data_version!r}")
        put("data_version", int(dv))
        wu = self.beta_warmup_steps
        if isinstance(wu, bool) or not isinstance(wu, (int, np.integer)) or wu < 0:
            raise ValueError(f"beta_warmup_steps must be an integer >= 0, got {wu!r}")
        put("beta_warmup_steps", int(wu))

        # ISA prior settings: validated for ISA models, cleared for the others.
        if spec.prior == "isa":
            if self.layout is None:
                raise ValueError(f"model {self.model!r} needs an ISA layout (subspace sizes), e.g. (4,) * 5")
            layout = tuple(int(k) for k in self.layout)
            if not layout or any(k < 1 for k in layout):
                raise ValueError(f"layout must be positive subspace sizes, got {self.layout!r}")
            if sum(layout) != self.latent_dim:
                raise ValueError(f"layout {layout} sums to {sum(layout)}, not latent_dim {self.latent_dim}")
            put("layout", layout)
            for name in ("p0",) + (("p_init",) if spec.learn else ("p",)):
                v = getattr(self, name)
                v = _DEFAULTS[name] if v is None else v   # None: cleared by a non-ISA model, take the default
                if v is None or isinstance(v, bool) or not math.isfinite(float(v)) or float(v) <= 0:
                    raise ValueError(f"{name} must be a finite number > 0 for model {self.model!r}, got {v!r}")
                put(name, float(v))
            if spec.learn and not _LEARN_BOUNDS[0] < self.p_init < _LEARN_BOUNDS[1]:
                raise ValueError(f"p_init must lie inside {_LEARN_BOUNDS}, got {self.p_init}")
            put("p" if spec.learn else "p_init", None)
        else:
            for name in ("layout", "p0", "p", "p_init"):
                put(name, None)
        if spec.objective == "beta_tcvae":
            if self.estimator is None:
                put("estimator", _DEFAULTS["estimator"])
            if self.estimator not in ("mss", "mws"):
                raise ValueError(f"estimator must be 'mss' or 'mws', got {self.estimator!r}")
        else:
            put("estimator", None)
        if spec.objective == "factor_vae":
            dh = _DEFAULTS["disc_hidden"] if self.disc_hidden is None else self.disc_hidden
            if isinstance(dh, bool) or not isinstance(dh, (int, np.integer)) or dh < 1:
                raise ValueError(f"disc_hidden must be a positive integer, got {self.disc_hidden!r}")
            put("disc_hidden", int(dh))
        else:
            put("disc_hidden", None)

        # The sub-grid: known factors and classes, every scored factor still varying, at least one batch.
        try:
            sub = _freeze_subgrid(self.subgrid)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad subgrid: {err}") from None
        spec_d = factor_spec(self.dataset)
        names, sizes = list(spec_d["names"]), list(spec_d["sizes"])
        kept = dict(zip(names, sizes))
        for name, classes in sub or ():
            if name not in names:
                raise ValueError(f"subgrid: unknown factor {name!r} of {self.dataset}; known: {names}")
            size = sizes[names.index(name)]
            if not classes or min(classes) < 0 or max(classes) >= size:
                raise ValueError(f"subgrid: classes of {name!r} must lie in 0..{size - 1}, got {classes}")
            kept[name] = len(classes)
        put("subgrid", sub)
        from .metrics import MIG_FACTORS
        flat = [f for f in MIG_FACTORS.get(self.dataset, ()) if kept[f] < 2]
        if flat:
            raise ValueError(f"subgrid keeps a single class of the scored factor(s) {flat}; the MIG needs >= 2")
        if self.batch_size > self.n_images:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {self.n_images} images of the (sub-)grid")

    # ------------------------------------------------------------------ derived
    @property
    def spec(self) -> ModelSpec:
        return MODELS[self.model]

    @property
    def n_images(self) -> int:
        from .datasets import factor_spec

        s = factor_spec(self.dataset)
        kept = dict(zip(s["names"], s["sizes"]))
        kept.update({n: len(c) for n, c in self.subgrid or ()})
        return int(math.prod(kept.values()))

    @property
    def steps(self) -> int:
        """Optimiser steps of the run (as :func:`isa_lib.train.total_steps`)."""
        return max(1, int(round(self.epochs * (self.n_images // self.batch_size))))

    def subgrid_dict(self) -> dict | None:
        return None if self.subgrid is None else {n: list(c) for n, c in self.subgrid}

    def to_dict(self) -> dict:
        """JSON-able fields (tuples as lists, subgrid as a mapping)."""
        d = dataclasses.asdict(self)
        d["layout"] = None if self.layout is None else list(self.layout)
        d["subgrid"] = self.subgrid_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "RunConfig":
        """A configuration from :meth:`to_dict`'s output, e.g. a ledger row. A record without
        ``data_version`` predates that field and was made with version 1 of the generator."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**{"data_version": 1, **dict(d)})

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the fields (sorted keys, no spaces): the ledger's key.

        Fields added after the first ledgers were written are left out at the value those ledgers implied
        (``data_version`` 1, ``beta_warmup_steps`` 0), so older rows keep their keys."""
        payload = {"v": HASH_VERSION, **self.to_dict()}
        for name, implied in _IMPLIED_BEFORE_FIELD.items():
            if payload[name] == implied:
                del payload[name]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def short(self) -> str:
        return f"{self.model} beta={self.beta:g} seed={self.seed}"

    def fuse_key(self) -> "RunConfig":
        """The configuration with seed and beta blanked: runs with equal keys can share a train_many call."""
        return dataclasses.replace(self, seed=0, beta=1.0)

    def equivalent(self) -> "RunConfig":
        """The run this configuration repeats exactly, or itself.

        At beta = 1 the beta-TCVAE penalty MI + TC + dimension-wise KL (Eq. 3 with alpha = gamma = 1)
        telescopes to log q(z|x) - log p(z), the KL estimate of the ELBO (Eq. 2, 12): the estimates of
        log q(z) and sum_j log q(z_j) enter with +1 and -1, so their gradients cancel exactly and training
        follows the (ISA-)VAE step for step (the medium study measured equal metrics on all 8 pairs).
        A sweep runs the (ISA-)VAE once and records the beta-TCVAE row from it (:meth:`Ledger.fill_equivalents`).
        """
        if self.spec.objective == "beta_tcvae" and self.beta == 1.0 and not self.beta_warmup_steps:
            return dataclasses.replace(self, model=_SAME_AT_BETA_ONE[self.model])
        return self

    @property
    def fusable(self) -> bool:
        """train_many fuses MLP models without a discriminator (not FactorVAE, not the conv nets)."""
        return self.architecture == "mlp" and self.model != "factor_vae"


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
#: Fields added after HASH_VERSION 1 ledgers existed, and the value every earlier row had.
_IMPLIED_BEFORE_FIELD = {"data_version": 1, "beta_warmup_steps": 0}


# ---------------------------------------------------------------------------------------------- scales
_DSPRITES_SMALL = {"shape": [0, 1, 2], "scale": [0, 5], "orientation": [0, 10],
                   "posX": list(range(0, 32, 2)), "posY": list(range(0, 32, 2))}          # 3,072 images
_DSPRITES_MEDIUM = {"shape": [0, 1, 2], "scale": [0, 2, 5], "orientation": list(range(0, 40, 4)),
                    "posX": list(range(0, 32, 2)), "posY": list(range(0, 32, 2))}         # 23,040 images
# Every shape, scale and orientation, positions 16 x 16 (every other one): 184,320 images.
_DSPRITES_LARGE = {"posX": list(range(0, 32, 2)), "posY": list(range(0, 32, 2))}
# 3D faces: 10 identities, every azimuth, elevation and lighting: 25,410 images.
_FACES_LARGE = {"identity": list(range(10))}


#: The CPU scale in the paper's regime (module notes): 64 x 64 binary dSprites, every shape, scale and
#: orientation, 16 x 16 positions; see experiments/grids/dsprites_large.yml for the measured cost.
LARGE_DSPRITES = dict(epochs=3.0, batch_size=128, hidden=512, image_size=64,
                      subgrid=_freeze_subgrid(_DSPRITES_LARGE), mig_samples=1000)
#: 3D faces on a CPU: the paper's conv nets on 10 identities with every azimuth, elevation and lighting.
LARGE_FACES = dict(epochs=8.0, batch_size=64, subgrid=_freeze_subgrid(_FACES_LARGE), mig_samples=1000)


def scale_defaults(scale: str, dataset: str = "dsprites") -> dict:
    """RunConfig fields of a scale (``small``, ``medium``, ``paper``) for a dataset.

    paper: Tables 1-2 and App. A.3-A.4 (dSprites: 20 epochs, batch 2048, lr 1e-3, MLP 1200, latent 20 with
    l0 = 5 subspaces of 4, p0 = 2.1, p = 2.2, MIG on 10,000 samples; 3D faces: conv nets, latent 10, p = 1.9,
    1500 epochs as printed). small/medium: dSprites sub-grids and smaller nets for CPU runs (module notes).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
    if dataset == "dsprites":
        paper = dict(dataset="dsprites", epochs=20.0, batch_size=2048, lr=1e-3, latent_dim=20,
                     layout=(4,) * 5, p0=2.1, p=2.2, p_init=2.0, architecture="mlp", hidden=1200,
                     image_size=64, subgrid=None, mig_samples=10000)
        if scale == "paper":
            return paper
        if scale == "large":
            return {**paper, **LARGE_DSPRITES}
        # small and medium keep the dSprites generator of the studies made with them (version 1)
        if scale == "small":
            return {**paper, "epochs": 40.0, "batch_size": 64, "hidden": 256, "image_size": 32,
                    "subgrid": _freeze_subgrid(_DSPRITES_SMALL), "mig_samples": 1000, "data_version": 1}
        return {**paper, "epochs": 30.0, "batch_size": 128, "hidden": 256, "image_size": 32,
                "subgrid": _freeze_subgrid(_DSPRITES_MEDIUM), "mig_samples": 2000, "data_version": 1}
    if dataset == "faces3d":
        # 3D faces (Table 2): 4 subspaces (3, 3, 2, 2) of a 10-d latent with leptokurtic p = 1.9.
        paper = dict(dataset="faces3d", epochs=1500.0, batch_size=2048, lr=1e-3, latent_dim=10,
                     layout=(3, 3, 2, 2), p0=2.1, p=1.9, p_init=2.0, architecture="conv", hidden=None,
                     image_size=64, subgrid=None, mig_samples=10000)
        if scale == "paper":
            return paper
        if scale == "large":
            return {**paper, **LARGE_FACES}
        raise ValueError("faces3d has the 'large' (CPU) and 'paper' scales only (conv nets need 64 x 64 images)")
    raise ValueError(f"no scales defined for dataset {dataset!r}")


def config_for(scale: str, dataset: str = "dsprites", **fields) -> RunConfig:
    """The :class:`RunConfig` of a scale (:func:`scale_defaults`) with ``fields`` on top, as the experiment
    chapter builds it from its papermill parameters: a field given as None keeps the scale's value, and a
    ``layout`` (ISA subspace sizes, Eq. 10) also sets ``latent_dim`` to its sum, so that the normal-prior
    baselines get the same latent size as the ISA model."""
    known = {f.name for f in dataclasses.fields(RunConfig)} - {"dataset"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown RunConfig field(s) {unknown}; known: {sorted(known)}")
    given = {k: v for k, v in fields.items() if v is not None}
    if "layout" in given:
        given["layout"] = tuple(int(k) for k in given["layout"])
        given.setdefault("latent_dim", sum(given["layout"]))
    return RunConfig(**{**scale_defaults(scale, dataset), **given})


# ---------------------------------------------------------------------------------------------- grids
class GridError(ValueError):
    """A sweep grid that names an unknown key, model or value; raised before any run starts."""


_GRID_KEYS = {"models", "betas", "gammas", "seeds", "scale", "dataset", "description", "estimate"}
_PER_RUN = {"model", "beta", "seed"}


def expand_grid(spec: Mapping) -> list[RunConfig]:
    """Configurations of a grid: ``models`` x ``betas`` x ``seeds`` on top of a ``scale`` and shared settings.

    Keys: ``models`` (list), ``betas`` (list, or a mapping model -> list), ``gammas`` (FactorVAE's gammas,
    default the betas), ``seeds`` (a count n meaning 0..n-1, or a list), ``scale`` (default small),
    ``dataset``, ``description``/``estimate`` (free text), and any RunConfig field but model/beta/seed.
    Every key, model name and value is checked (all configurations are built) before anything runs.
    The list is ordered seed first, so that a partial sweep has every model and beta for its seeds.
    """
    if not isinstance(spec, Mapping):
        raise GridError(f"a grid must be a mapping, got {type(spec).__name__}")
    fields = {f.name for f in dataclasses.fields(RunConfig)} - _PER_RUN
    unknown = sorted(set(spec) - _GRID_KEYS - fields)
    if unknown:
        raise GridError(f"unknown grid key(s) {unknown}; allowed: {sorted(_GRID_KEYS | fields)}")
    models = spec.get("models")
    if isinstance(models, str):
        models = [models]
    if not models:
        raise GridError("the grid needs a non-empty 'models' list")
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise GridError(f"unknown model(s) {bad}; choose from {sorted(MODELS)}")
    betas = spec.get("betas", [1.0])
    if isinstance(betas, Mapping):
        extra = sorted(set(betas) - set(models))
        if extra:
            raise GridError(f"'betas' names model(s) {extra} that are not in 'models'")
    seeds = spec.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple)):
        raise GridError(f"'seeds' must be a count or a list, got {seeds!r}")
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    try:
        base = scale_defaults(spec.get("scale", "small"), spec.get("dataset", "dsprites"))
    except ValueError as err:
        raise GridError(str(err)) from None
    base.update({k: v for k, v in spec.items() if k in fields})
    if "subgrid" in spec:
        base["subgrid"] = spec["subgrid"]
    out, seen = [], set()
    for model in models:
        if isinstance(betas, Mapping):
            values = betas.get(model, [1.0])
        elif model == "factor_vae" and "gammas" in spec:
            values = spec["gammas"]
        else:
            values = betas
        values = [values] if isinstance(values, (int, float)) else list(values)
        for beta in values:
            for seed in seeds:
                try:
                    cfg = RunConfig(**{**base, "model": model, "beta": beta, "seed": seed})
                except (TypeError, ValueError) as err:
                    raise GridError(f"{model} beta={beta} seed={seed}: {err}") from None
                if cfg.config_hash() not in seen:
                    seen.add(cfg.config_hash())
                    out.append(cfg)
    # Seed first (stable): a sweep stopped part-way has then covered every model and beta evenly.
    out.sort(key=lambda c: seeds.index(c.seed))
    return out


def load_grid(path) -> list[RunConfig]:
    """:func:`expand_grid` of a YAML file."""
    import yaml

    text = Path(path).read_text()
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML: {err}") from None
    try:
        return expand_grid(spec or {})
    except GridError as err:
        raise GridError(f"{path}: {err}") from None


# ---------------------------------------------------------------------------------------------- data
_DATA_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()


def _reduce_images(ds, size: int):
    """A copy of ``ds`` with images averaged over (64/size)^2 blocks (binary images stay exact)."""
    import torch
    import torch.nn.functional as F
    from .datasets import GroundTruthDataset

    images = ds.images
    if images.shape[-1] == size:
        return ds
    f = images.shape[-1] // size
    exact = ds.max_value == 1 and f * f <= 255
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for s in range(0, images.shape[0], 8192):  # chunks: the full dSprites set would be 12 GB as floats
        block = F.avg_pool2d(images[s:s + 8192].float(), f)
        out[s:s + 8192] = torch.round(block * (f * f) if exact else block * (255.0 / ds.max_value)).to(torch.uint8)
    return GroundTruthDataset(ds.name, out, ds.factor_names, ds.factor_sizes, ds.factor_values,
                              max_value=float(f * f) if exact else 255.0, source=f"{ds.source}@{size}px")


def load_data(config: RunConfig, cache=None):
    """The run's dataset (sub-grid, reduced image size), kept in a small per-process cache so a worker
    that runs several groups does not rebuild it."""
    from . import datasets

    key = (config.dataset, config.subgrid, config.image_size, config.data_version,
           None if cache is None else str(cache))
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    ds = datasets.load(config.dataset, subgrid=config.subgrid_dict(), seed=0, cache=cache,
                       version=config.data_version)
    ds = _reduce_images(ds, config.image_size)
    _DATA_CACHE[key] = ds
    while len(_DATA_CACHE) > 2:
        _DATA_CACHE.popitem(last=False)
    return ds


# ---------------------------------------------------------------------------------------------- runs
def _train_config(c: RunConfig, n_images: int):
    from .train import TrainConfig

    spec = c.spec
    # About 100 logged points per run, whatever its length: enough for the notebook's curves.
    log_every = max(1, c.steps // 100)
    return TrainConfig(objective=spec.objective, beta=c.beta if spec.objective != "factor_vae" else 1.0,
                       gamma=c.beta if spec.objective == "factor_vae" else 10.0,
                       estimator=c.estimator or "mss", epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                       disc_hidden=c.disc_hidden or 1000, seed=c.seed, device=c.device, amp=c.amp,
                       log_every=log_every, beta_warmup_steps=c.beta_warmup_steps)


def build_model(c: RunConfig, channels: int = 1):
    """The VAE of a configuration; its weights depend only on ``c.seed``."""
    from .train import build_vae

    spec = c.spec
    net = {"hidden": c.hidden, "image_size": c.image_size} if c.architecture == "mlp" else None
    kw = {}
    if spec.prior == "isa":
        kw = dict(sizes=list(c.layout), p0=c.p0, exponents=c.p_init if spec.learn else c.p, learn=spec.learn)
    return build_vae(c.architecture, c.latent_dim, prior=spec.prior, seed=c.seed, channels=channels,
                     net_size=net, **kw)


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None  # JSON has no NaN; None says "not a number"
    if hasattr(x, "item") and callable(x.item):
        return _jsonable(x.item())
    return x


def evaluate(model, data, c: RunConfig, history: list[dict]) -> dict:
    """The paper's numbers for a trained model (Sec. 4): Chen MIG (and per factor), E_q[log p(x|z)] in nats
    per image, the last logged loss terms, and the exponents of a learned-exponent model."""
    import torch
    from .metrics import evaluate_model

    model.eval()
    t = time.perf_counter()
    with torch.no_grad():
        res = evaluate_model(model.encoder, data, decode=model.decoder, n_samples=c.mig_samples, seed=c.seed,
                             device=c.device, batch_size=1024)
    names = [data.factor_names[k] for k in res["mig_factors"]]
    out = {"mig": float(res["mig"]),
           "mig_per_factor": dict(zip(names, np.asarray(res["mig_per_factor"], dtype=float).tolist())),
           "reconstruction": float(res["reconstruction"]),
           "final": dict(history[-1]) if history else {},
           "history": history,
           "n_images": len(data), "steps": c.steps}
    if c.spec.prior == "isa":
        exps = model.prior.exponents.detach().cpu().double().numpy()
        out["exponents"] = exps.tolist()
        out["exponents_sorted"] = np.sort(exps).tolist()
    out["eval_s"] = time.perf_counter() - t
    return _jsonable(out)


def _train_models(configs: list[RunConfig], data, fused: bool, max_steps: int | None = None):
    """Build and train the models of a group: one train_many call, or train per run."""
    from .train import train, train_many

    channels = data.images.shape[1]
    models = [build_model(c, channels) for c in configs]
    cfgs = [_train_config(c, len(data)) for c in configs]
    kw = dict(progress=False, max_value=data.max_value, max_steps=max_steps)
    if fused and len(configs) > 1:
        hists = train_many(models, data.images, cfgs, **kw)
    else:
        hists = [train(m, data.images, cfg, **kw) for m, cfg in zip(models, cfgs)]
    return models, hists


def seconds_per_step(configs: Sequence[RunConfig], steps: int = 10, cache=None) -> float:
    """Wall-clock seconds per optimiser step of a group trained as :func:`run_group` would (fused when it
    can), timed over ``steps`` steps after as many warm-up steps; nothing is recorded. A sweep with a time
    budget uses it to predict a task's duration (``steps * config.steps``) before starting it."""
    import torch

    configs = list(configs)
    if len({c.fuse_key() for c in configs}) != 1:
        raise ValueError("seconds_per_step needs configurations that differ only in seed and beta")
    data = load_data(configs[0], cache)
    fused = configs[0].fusable and len(configs) > 1
    device = torch.device(configs[0].device)

    def timed():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        _train_models(configs, data, fused, max_steps=steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    timed()  # warm-up: allocations, kernel selection, the first data transfer
    return timed() / steps  # one step of the group: every run in it advanced by one step


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}\n\n{''.join(traceback.format_exception(err))}"


def _matmul_precision() -> str:
    """torch's float32 matmul precision ('highest'; 'high' allows TF32 on a GPU), recorded with each run."""
    import torch

    return torch.get_float32_matmul_precision()


def run_group(configs: Sequence[RunConfig], on_result: Callable[[dict], None] | None = None, cache=None,
              return_models: bool = False) -> list[dict]:
    """Train and score runs that differ only in seed and beta, fused into one :func:`train_many` call
    when possible (MLP, not FactorVAE); otherwise one :func:`train` per run.

    Returns one outcome per configuration, in order: ``{"config_hash", "status": "done"|"failed",
    "metrics", "error", "duration"}`` (plus ``model`` and ``data`` with ``return_models``).
    ``on_result(outcome)`` is called as soon as each run is finished. If a fused training fails (say one
    beta diverges), every run of the group is retrained on its own, so only the failing one is lost.
    """
    configs = list(configs)
    if not configs:
        return []
    keys = {c.fuse_key() for c in configs}
    if len(keys) != 1:
        raise ValueError("run_group needs configurations that differ only in seed and beta; use plan_groups")
    t0 = time.perf_counter()
    outcomes: list[dict | None] = [None] * len(configs)

    def finish(i: int, status: str, metrics=None, error=None, model=None, data=None):
        o = {"config_hash": configs[i].config_hash(), "status": status, "metrics": metrics, "error": error,
             "duration": time.perf_counter() - t0}
        if return_models:
            o.update(model=model, data=data)
        outcomes[i] = o
        if on_result is not None:
            on_result({k: v for k, v in o.items() if k not in ("model", "data")})

    try:
        t = time.perf_counter()
        data = load_data(configs[0], cache)
        load_s = time.perf_counter() - t
    except Exception as err:  # noqa: BLE001 - a run's failure is data for the ledger
        for i in range(len(configs)):
            finish(i, "failed", error=_error_text(err))
        return outcomes

    def train_and_score(idx: list[int], fused: bool) -> None:
        t = time.perf_counter()
        models, hists = _train_models([configs[i] for i in idx], data, fused)
        train_s = time.perf_counter() - t
        for j, i in enumerate(idx):
            try:
                m = evaluate(models[j], data, configs[i], hists[j])
                m["timings"] = {"load_s": load_s, "train_s": train_s, "train_s_per_run": train_s / len(idx),
                                "eval_s": m.pop("eval_s"), "fused": len(idx),
                                "float32_matmul": _matmul_precision()}
                m["versions"] = versions()
                finish(i, "done", metrics=m, model=models[j], data=data)
            except Exception as err:  # noqa: BLE001
                finish(i, "failed", error=_error_text(err))

    idx = list(range(len(configs)))
    fused = configs[0].fusable and len(configs) > 1
    if fused:
        try:
            train_and_score(idx, fused=True)
            return outcomes
        except Exception:  # noqa: BLE001 - retry one by one below so that only the culprit fails
            pass
    for i in idx:
        if outcomes[i] is not None:
            continue
        try:
            train_and_score([i], fused=False)
        except Exception as err:  # noqa: BLE001
            finish(i, "failed", error=_error_text(err))
    return outcomes


def run_one(config: RunConfig, return_model: bool = False, cache=None):
    """Train and score one configuration; returns its metrics (JSON-able dict), or with ``return_model``
    ``(metrics, model, dataset)`` for the experiment notebook's plots. Raises if the run fails."""
    (o,) = run_group([config], cache=cache, return_models=True)
    if o["status"] != "done":
        raise RuntimeError(f"run {config.short()} failed: {o['error']}")
    return (o["metrics"], o["model"], o["data"]) if return_model else o["metrics"]


# ---------------------------------------------------------------------------------------------- ledger
@lru_cache(maxsize=1)
def versions() -> dict:
    """python, torch, isa_lib versions and the git commit of the code (if it is a git checkout)."""
    import torch
    from . import __version__

    commit = None
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                           capture_output=True, text=True, timeout=5)
        commit = r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"python": platform.python_version(), "torch": torch.__version__, "isa_lib": __version__,
            "git_commit": commit}


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    model       TEXT, dataset TEXT, beta REAL, seed INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    metrics     TEXT,
    error       TEXT,
    created     REAL,
    started     REAL,
    finished    REAL,
    duration    REAL,
    versions    TEXT,
    host        TEXT,
    worker      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


class Ledger:
    """One SQLite row per run, keyed by :meth:`RunConfig.config_hash` (stdlib sqlite3, WAL journal).

    Every write is one ``BEGIN IMMEDIATE`` transaction on a fresh connection with a busy timeout, so any
    number of processes (Ray workers) may write; a committed row survives a SIGKILL of its writer. The
    object holds only the path, so it can be sent to workers. One sweep per ledger at a time: starting a
    sweep puts rows left 'running' (by a killed sweep) back to 'pending'.
    """

    def __init__(self, path, timeout: float = 60.0):
        self.path = str(path)
        self.timeout = float(timeout)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)  # its own transaction (executescript commits first)

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _tx(self):
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def add(self, configs: Iterable[RunConfig]) -> int:
        """Insert missing runs as 'pending'; returns how many were new."""
        now = time.time()
        rows = [(c.config_hash(), json.dumps(c.to_dict(), sort_keys=True), c.model, c.dataset, c.beta, c.seed, now)
                for c in configs]
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO runs (config_hash, config, model, dataset, beta, seed, status, "
                           "created) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)", rows)
            return db.total_changes - before

    def requeue_running(self) -> int:
        """Rows left 'running' (a killed sweep) go back to 'pending'; returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'").rowcount

    def claim(self, hashes: Sequence[str], worker: str | None = None, retry_failed: bool = True) -> list[str]:
        """Mark runs 'running' (with start time and worker) unless done; returns those claimed."""
        ok = ("pending", "running", "failed") if retry_failed else ("pending", "running")
        worker = worker or _worker_id()
        claimed = []
        with self._tx() as db:
            for h in hashes:
                cur = db.execute(
                    f"UPDATE runs SET status = 'running', started = ?, finished = NULL, worker = ?, host = ?, "
                    f"attempts = attempts + 1 WHERE config_hash = ? AND status IN ({','.join('?' * len(ok))})",
                    (time.time(), worker, socket.gethostname(), h, *ok))
                if cur.rowcount:
                    claimed.append(h)
        return claimed

    def record(self, outcome: Mapping, worker: str | None = None) -> bool:
        """Write a finished run (an outcome of :func:`run_group`) unless the row is already 'done'."""
        status = outcome["status"]
        if status not in ("done", "failed"):
            raise ValueError(f"an outcome is 'done' or 'failed', got {status!r}")
        metrics = outcome.get("metrics")
        vers = (metrics or {}).get("versions") or versions()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE runs SET status = ?, metrics = ?, error = ?, finished = ?, duration = ?, versions = ?, "
                "host = ?, worker = ? WHERE config_hash = ? AND status != 'done'",
                (status, None if metrics is None else json.dumps(_jsonable(metrics), allow_nan=False),
                 outcome.get("error"), time.time(), outcome.get("duration"), json.dumps(vers),
                 socket.gethostname(), worker or _worker_id(), outcome["config_hash"]))
            return bool(cur.rowcount)

    def fill_equivalents(self, configs: Iterable[RunConfig]) -> int:
        """Record each run that repeats another exactly (:meth:`RunConfig.equivalent`) from that run's row,
        once it is finished: 'done' with its metrics plus ``same_as`` (the hash they were copied from), or
        'failed' naming it. Rows already 'done' are kept. Returns how many rows were written."""
        pairs = [(c.config_hash(), c.equivalent().config_hash()) for c in configs if c.equivalent() != c]
        if not pairs:
            return 0
        written = 0
        with self._tx() as db:
            for alias, source in pairs:
                row = db.execute("SELECT status, metrics, error, versions FROM runs WHERE config_hash = ?",
                                 (source,)).fetchone()
                if row is None or row["status"] not in ("done", "failed"):
                    continue
                metrics = None
                if row["metrics"]:
                    metrics = json.dumps({**json.loads(row["metrics"]), "same_as": source})
                error = None if row["status"] == "done" else f"same as run {source}, which failed:\n{row['error']}"
                written += db.execute(
                    "UPDATE runs SET status = ?, metrics = ?, error = ?, finished = ?, duration = 0, versions = ?, "
                    "host = ?, worker = ? WHERE config_hash = ? AND status != 'done'",
                    (row["status"], metrics, error, time.time(), row["versions"], socket.gethostname(),
                     f"copy:{source[:12]}", alias)).rowcount
        return written

    def runs_to_do(self, configs: Sequence[RunConfig], retry_failed: bool = False) -> list[RunConfig]:
        """Add ``configs`` (and the runs they repeat) to the ledger, record the repeats that can be copied,
        and return the distinct runs still to compute, in the order of ``configs``: not 'done', and not
        'failed' unless ``retry_failed``. A killed sweep's 'running' rows count as to do."""
        configs = list(configs)
        sources = [c.equivalent() for c in configs]
        self.add(configs + [c for c, orig in zip(sources, configs) if c is not orig])
        self.fill_equivalents(configs)
        status = self.statuses()
        skip = {"done"} | (set() if retry_failed else {"failed"})
        todo: "OrderedDict[str, RunConfig]" = OrderedDict()
        for c, src in zip(configs, sources):
            if status.get(c.config_hash()) not in skip and status.get(src.config_hash()) not in skip:
                todo.setdefault(src.config_hash(), src)
        return list(todo.values())

    # ------------------------------------------------------------------ reads
    def statuses(self, hashes: Sequence[str] | None = None) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute("SELECT config_hash, status FROM runs").fetchall()
        out = {r["config_hash"]: r["status"] for r in rows}
        return out if hashes is None else {h: out[h] for h in hashes if h in out}

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def rows(self, status: str | None = None, hashes: Sequence[str] | None = None) -> list[dict]:
        """Every row (or those with ``status``, or with a config hash in ``hashes``) with config, metrics
        and versions decoded."""
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if hashes is not None:
            where.append(f"config_hash IN ({','.join('?' * len(hashes))})")
            args.extend(hashes)
        with self._connect() as db:
            q = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, rowid"
            rows = db.execute(q, args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for k in ("config", "metrics", "versions"):
                d[k] = json.loads(d[k]) if d[k] else None
            out.append(d)
        return out

    def to_dataframe(self, history: bool = False):
        """One row per run: config_hash, status, the config fields, the metrics (nested keys joined by '.',
        lists as JSON text; the training history only if asked), error, times, versions, host, worker."""
        import pandas as pd

        records = []
        for r in self.rows():
            rec = {"config_hash": r["config_hash"], "status": r["status"]}
            for k, v in (r["config"] or {}).items():
                rec[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
            metrics = dict(r["metrics"] or {})
            metrics.pop("versions", None)
            if not history:
                metrics.pop("history", None)
            for k, v in _flatten(metrics).items():
                rec[k if k not in rec else f"metrics.{k}"] = v
            for k in ("error", "created", "started", "finished", "duration", "host", "worker", "attempts"):
                rec[k] = r[k]
            for k, v in (r["versions"] or {}).items():
                rec[f"versions.{k}"] = v
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def export_csv(self, path) -> Path:
        """:meth:`to_dataframe` as CSV; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_dataframe().to_csv(path, index=False)
        return path


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------------------------------------- sweeps
def plan_groups(configs: Sequence[RunConfig], fuse: int = 4) -> list[list[RunConfig]]:
    """Fused tasks: runs equal but for seed/beta, in chunks of at most ``fuse`` (1 for unfusable runs),
    ordered by their first run's place in ``configs``, so a grid ordered by seed fills seeds evenly."""
    if fuse < 1:
        raise ValueError(f"fuse must be >= 1, got {fuse}")
    buckets: "OrderedDict[RunConfig, list[RunConfig]]" = OrderedDict()
    for c in configs:
        buckets.setdefault(c.fuse_key(), []).append(c)
    groups = []
    for key, members in buckets.items():
        k = fuse if key.fusable else 1
        groups += [members[i:i + k] for i in range(0, len(members), k)]
    # Tasks run in the order of their first member, so a seed-first grid stays seed-first.
    position = {id(c): i for i, c in enumerate(configs)}
    return sorted(groups, key=lambda g: position[id(g[0])])


def execute_group(configs: Sequence[RunConfig], ledger_path: str, cache=None, retry_failed: bool = True,
                  progress: bool = False) -> list[dict]:
    """A worker's task: claim the group's runs in the ledger, run them, write each result when it is done.

    Ledger writes that fail (e.g. a node that cannot see the file) are left to the driver: outcomes carry
    ``written`` and the metrics. Returns the outcomes of the runs this call executed.
    """
    worker = _worker_id()
    ledger = None
    try:
        ledger = Ledger(ledger_path)
        claimed = set(ledger.claim([c.config_hash() for c in configs], worker, retry_failed=retry_failed))
        todo = [c for c in configs if c.config_hash() in claimed]
    except sqlite3.Error:
        ledger, todo = None, list(configs)
    if not todo:
        return []
    by_hash = {c.config_hash(): c for c in todo}

    def on_result(o: dict) -> None:
        o["written"] = False
        if ledger is not None:
            try:
                ledger.record(o, worker)
                o["written"] = True
            except sqlite3.Error:
                pass
        if progress:
            c = by_hash[o["config_hash"]]
            what = (f"MIG={o['metrics']['mig']:.3f} recon={o['metrics']['reconstruction']:.1f}"
                    if o["status"] == "done" else o["error"].splitlines()[0])
            print(f"  {o['status']:6s} {c.short()}  {what}  ({o['duration']:.1f} s)", file=sys.stderr, flush=True)

    results = []
    for group in plan_groups(todo, fuse=len(todo)):
        results += run_group(group, on_result=on_result, cache=cache)
    return results


def sweep(configs: Sequence[RunConfig], ledger_path, backend: str = "local", address: str | None = None,
          gpus_per_task: float = 0, fuse: int = 4, progress: bool = True, cpus_per_task: float = 1,
          retry_failed: bool = False, cache=None) -> dict:
    """Run every configuration not yet 'done' in the ledger (and not 'failed', unless ``retry_failed``).

    A run that repeats another exactly (beta-TCVAE at beta = 1, :meth:`RunConfig.equivalent`) is not
    computed twice: its row is copied from the other's. Runs are grouped into fused tasks of up to ``fuse``
    seeds/betas (:func:`plan_groups`) and executed
    in-process (``backend="local"``) or as Ray tasks (``"ray"``: a local cluster unless ``address`` names
    one; ``num_gpus=gpus_per_task``, ``num_cpus=cpus_per_task`` each). Each worker writes its runs to the
    ledger as they finish; a failing run is recorded as 'failed' with its traceback and the sweep goes
    on. Returns a summary (counts of this sweep's configurations by status, and what was run).
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    unique = list(OrderedDict((c.config_hash(), c) for c in configs).values())
    ledger = Ledger(ledger_path)
    requeued = ledger.requeue_running()
    todo = ledger.runs_to_do(unique, retry_failed)
    groups = plan_groups(todo, fuse)
    repeats = sum(1 for c in unique if c.equivalent() != c)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    say(f"sweep: {len(unique)} runs ({repeats} repeat another exactly: copied, not run), {len(todo)} to run in "
        f"{len(groups)} task(s) on {backend}" + (f"; {requeued} interrupted run(s) requeued" if requeued else ""))
    t0 = time.perf_counter()
    # Build each dataset cache once here, not concurrently in every worker.
    for key in OrderedDict.fromkeys((c.dataset, c.subgrid, c.data_version) for c in todo):
        from . import datasets
        datasets.load(key[0], subgrid=dict(key[1]) if key[1] else None, cache=cache, version=key[2])

    def driver_record(outcomes: list[dict]) -> None:
        for o in outcomes:
            if not o.get("written"):
                ledger.record(o, worker=f"driver:{_worker_id()}")

    if backend == "local":
        for i, g in enumerate(groups, 1):
            say(f"task {i}/{len(groups)}: {len(g)} x {g[0].model} ({', '.join(c.short() for c in g)})")
            driver_record(execute_group(g, ledger.path, cache, retry_failed, progress))
    else:
        import ray

        started = False
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, ignore_reinit_error=True, log_to_driver=progress)
            ray.init(address=address, **kw) if address else ray.init(**kw)
            started = True
        try:
            remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(execute_group)
            pending = {remote.remote(g, ledger.path, cache, retry_failed, progress): g for g in groups}
            done_tasks = 0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                g = pending.pop(ready[0])
                done_tasks += 1
                try:
                    driver_record(ray.get(ready[0]))
                except Exception as err:  # noqa: BLE001 - the worker died; its unfinished runs failed
                    st = ledger.statuses([c.config_hash() for c in g])
                    for c in g:
                        if st.get(c.config_hash()) != "done":
                            ledger.record({"config_hash": c.config_hash(), "status": "failed",
                                           "error": f"task lost: {_error_text(err)}"}, worker="driver")
                say(f"task {done_tasks}/{len(groups)} finished ({len(g)} x {g[0].model})")
        finally:
            if started:
                ray.shutdown()
    ledger.fill_equivalents(unique)
    final = ledger.statuses([c.config_hash() for c in unique])
    counts = {s: sum(1 for v in final.values() if v == s) for s in ("done", "failed", "pending", "running")}
    summary = {"total": len(unique), "ran": len(todo), "tasks": len(groups), **counts,
               "elapsed_s": time.perf_counter() - t0}
    say(f"sweep finished in {summary['elapsed_s']:.1f} s: {counts['done']} done, {counts['failed']} failed")
    return summary


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """``isa-vae sweep``: expand a YAML grid and run it into a ledger (exit 0 if every run is done)."""
    ap = argparse.ArgumentParser(prog="isa-vae sweep", description=sweep_main.__doc__)
    ap.add_argument("--grid", required=True, help="grid file (experiments/grids/*.yml)")
    ap.add_argument("--ledger", required=True, help="SQLite ledger (created if missing)")
    ap.add_argument("--backend", default="local", choices=("local", "ray"))
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    ap.add_argument("--gpus-per-task", type=float, default=0)
    ap.add_argument("--cpus-per-task", type=float, default=1)
    ap.add_argument("--fuse", type=int, default=4, help="seeds/betas trained together per task")
    ap.add_argument("--device", default=None, help="override the grid's device (cpu, cuda)")
    ap.add_argument("--retry-failed", action="store_true", help="run 'failed' runs again")
    ap.add_argument("--export", default=None, metavar="CSV", help="write the ledger as CSV afterwards")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and what the ledger holds, run nothing")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        configs = load_grid(args.grid)
        if args.device:
            configs = [dataclasses.replace(c, device=args.device) for c in configs]
    except (GridError, OSError, ValueError) as err:
        print(f"isa-vae sweep: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        status = Ledger(args.ledger).statuses() if Path(args.ledger).exists() else {}
        for c in configs:
            same = "" if c.equivalent() == c else f"  (same as {c.equivalent().config_hash()[:12]})"
            print(f"{c.config_hash()[:12]}  {status.get(c.config_hash(), 'new'):8s} {c.short()}{same}")
        distinct = list(OrderedDict((c.equivalent().config_hash(), c.equivalent()) for c in configs).values())
        todo = [c for c in distinct if status.get(c.config_hash()) != "done"]
        print(f"{len(configs)} runs ({len(configs) - len(distinct)} repeat another exactly), {len(todo)} to compute "
              f"in {len(plan_groups(todo, args.fuse))} tasks")
        return 0
    summary = sweep(configs, args.ledger, backend=args.backend, address=args.address,
                    gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, fuse=args.fuse,
                    progress=not args.quiet, retry_failed=args.retry_failed)
    if args.export:
        print(f"exported {Ledger(args.ledger).export_csv(args.export)}")
    print(json.dumps(summary))
    return 0 if summary["done"] == summary["total"] else 1


if __name__ == "__main__":
    sys.exit(sweep_main())

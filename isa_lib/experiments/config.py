"""What one run is: :class:`RunConfig` (frozen, hashable and validated; :meth:`RunConfig.config_hash` is the
ledger key), the paper's models (Sec. 4) and the scales, :func:`scale_defaults` and :func:`config_for`
(Tables 1-2, App. A.3-A.4).

Scales are parameter sets, as for the book's chapters:

* ``paper``: Table 1 (App. A.3-A.4): full dSprites, MLP with 1200 hidden units on 64 x 64 images, 20 epochs,
  batch 2048, Adam lr 1e-3, MIG with 10,000 samples. The latent size is 20 for every model: Table 1 gives
  20 latent dimensions (10 in Chen et al.'s set-up; the book's appendix "Equations" lists the settings of
  Tables 1-2), and the paper's ISA layout, l0 = 5 subspaces of 4 (p0 = 2.1, p_i = 2.2), needs 20; using 20
  for the baselines too keeps the comparison like for like.
* ``small``: a 3,072-image dSprites sub-grid at 32 x 32, a 256-unit MLP, 1,920 steps of batch 64, MIG on
  1,000 samples: ~20 s on a CPU (measured 18 s). A few hundred steps are not enough: dSprites models then
  sit at the mean image (KL ~1 nat, MIG ~0, measured); at ~2,000 steps they have learned position.
* ``medium``: a 23,040-image sub-grid (3 shapes x 3 scales x 10 orientations x 16 x 16 positions) at
  32 x 32, a 256-unit MLP, 10 epochs = 1,800 steps of batch 128, MIG on 2,000 samples: 1-4 minutes per run
  on a 2-core CPU depending on load (experiments/grids/dsprites_medium.yml gives the measurements).

* ``large``: the paper's images on a CPU at 1/27 of its training budget: 64 x 64 binary dSprites (no averaging) on a 184,320-image
  sub-grid that keeps every shape, all 6 scales and all 40 orientations with 16 x 16 positions, an MLP with
  512 hidden units (the paper's 1200 costs 2.7x more per image on a CPU, measured), lr 1e-3, batch 128,
  3 epochs = 4,320 steps (the KL at beta = 1 levels off after ~2,000, measured), MIG on 1,000 samples.
  For 3D faces, ``large`` is the paper's conv nets and Table 2 prior on 10 identities with every azimuth,
  elevation and lighting (25,410 images), batch 64.

* ``budget``: the paper's data, batch and number of updates (Table 1): all 737,280 images at 64 x 64 binary,
  20 epochs of batch 2048 = 7,200 steps (14.7 M images), Adam lr 1e-3, latent 20 with the 5 x 4 ISA layout,
  Chen's MIG on the full grid with 10,000 samples in float32 (float64 where float32 cannot resolve the
  posteriors); only the MLP is narrower than the paper's 1200 units (:data:`BUDGET_HIDDEN`, chosen by the
  measured cost of a step; benchmarks/bench_budget_width.py). Runs are made breadth-first in
  ``budget_fraction`` (1/8, 1/4, 1/2, 1 of the steps), each fraction continuing the last one's checkpoint.

small and medium use version 1 of the dSprites generator (the data their committed studies were made with);
large and paper use the newest (areas proportional to scale^2, :mod:`isa_lib.datasets.dsprites`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

#: Version of the run semantics; part of every hash, so a change of meaning never reuses old rows.
HASH_VERSION = 1

SCALES = ("small", "medium", "large", "budget", "paper")


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


#: The largest seed or size a run may have: torch's generators and SQLite's INTEGER hold 64 bits.
_MAX_INT = 2 ** 63 - 1

_DEVICE = re.compile(r"(cpu|cuda|mps)(?::(\d+))?")


def _normalise_device(device) -> str:
    """A run's device in one spelling: ``cpu`` (``cpu:0`` and ``cpu:N`` are torch's one CPU device, so they
    hash as ``cpu``), ``cuda``, ``cuda:i``, ``mps`` or ``mps:0``; anything else is a ValueError."""
    m = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if m is None:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:i' or 'mps' (i a whole number), got {device!r}")
    kind, index = m.groups()
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        if index not in (None, "0"):
            raise ValueError(f"device {device!r}: there is one MPS device, 'mps' (or 'mps:0')")
        return "mps"
    return device


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
    whether the paper did is not stated). ``aggregate`` is how beta-TCVAE computes its minibatch aggregate
    posterior (``dense``, ``streamed``, ``compiled`` or ``native``, :data:`isa_lib.objectives.AGGREGATE_KERNELS`:
    the same estimate to float rounding, so a different run; ``dense`` for every other model).

    ``budget_fraction`` trains the run's schedule (``epochs`` of ``batch_size``, :attr:`steps`) only up to
    that fraction of its steps (:attr:`train_steps`) and scores the model there. The data order and the
    constant learning rate do not depend on it, so runs of one :meth:`lineage` (equal but for the fraction)
    share one training: a run at 1/4 continues the checkpoint its run at 1/8 left, with the numbers a
    straight run to 1/4 gives. ``mig_dtype`` is the working precision of Chen's MIG (``float64``, the
    reference, or ``float32``, 2-3x faster, with a float64 fall-back for posteriors it cannot resolve).

    ``fused`` is the size of the fused group (:func:`isa_lib.train.train_many`) the run is trained in, 1 for
    a run trained alone. Fused training equals separate training only up to floating-point reduction order,
    so a fused run is another run: its size enters the hash when it is above 1 (unfused runs keep the hashes
    they always had). A sweep sets it when it plans its tasks (:func:`isa_lib.experiments.sweeps.assign_fusion`).
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
    aggregate: str = "dense"
    budget_fraction: float = 1.0
    mig_dtype: str = "float64"
    fused: int = 1

    def __post_init__(self):
        from ..datasets import NAMES

        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {sorted(MODELS)}")
        if self.dataset not in NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {list(NAMES)}")
        self._check_numbers()
        self._check_network_and_data()
        self._check_prior()
        self._check_objective()
        self._check_subgrid()
        if isinstance(self.fused, bool) or not isinstance(self.fused, int) or not 1 <= self.fused <= 100_000:
            raise ValueError(f"fused must be a whole number in [1, 100000] (runs trained together), got {self.fused!r}")
        if self.fused > 1 and not self.fusable:
            raise ValueError(f"fused={self.fused}: {self.model} on the {self.architecture} network is never trained "
                             f"fused (FactorVAE and the conv nets train alone); give fused=1")
        if self.beta_warmup_steps > self.steps:
            raise ValueError(f"beta_warmup_steps {self.beta_warmup_steps} is longer than the run's {self.steps} "
                             f"steps: beta would never reach {self.beta:g}; give at most {self.steps}")

    def _put(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # the dataclass is frozen; validation normalises fields

    def _check_numbers(self) -> None:
        """beta, epochs, lr: finite and > 0 (as floats); seed and the sizes: integers above their minimum."""
        for name in ("beta", "epochs", "lr", "budget_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                what = "gamma (beta field)" if name == "beta" and self.model == "factor_vae" else name
                raise ValueError(f"{what} must be a finite number > 0, got {v!r}")
            self._put(name, float(v))
        if self.budget_fraction > 1:
            raise ValueError(f"budget_fraction must lie in (0, 1] (a fraction of the run's steps), "
                             f"got {self.budget_fraction!r}")
        if self.mig_dtype not in ("float32", "float64"):
            raise ValueError(f"mig_dtype must be 'float32' or 'float64', got {self.mig_dtype!r}")
        for name, low in (("seed", 0), ("latent_dim", 2), ("batch_size", 2), ("mig_samples", 1),
                          ("image_size", 4)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
            if v > _MAX_INT:
                raise ValueError(f"{name} must be at most 2**63 - 1 = {_MAX_INT} (torch's generators and the "
                                 f"ledger's INTEGER columns hold 64-bit integers), got {v!r}")
            self._put(name, int(v))

    def _check_network_and_data(self) -> None:
        """Architecture and image size, device, the generator's version and the beta warm-up."""
        from ..datasets import generator_version, generator_versions

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
            self._put("hidden", int(hidden))
        self._put("device", _normalise_device(self.device))
        if not isinstance(self.amp, (bool, np.bool_)):
            raise ValueError(f"amp must be True or False, got {self.amp!r}")
        self._put("amp", bool(self.amp))
        dv = generator_version(self.dataset) if self.data_version is None else self.data_version
        known = generator_versions(self.dataset)
        if isinstance(dv, bool) or not isinstance(dv, (int, np.integer)) or dv not in known:
            raise ValueError(f"data_version of {self.dataset} must be one of {known}, got {self.data_version!r}")
        self._put("data_version", int(dv))
        wu = self.beta_warmup_steps
        if isinstance(wu, bool) or not isinstance(wu, (int, np.integer)) or wu < 0:
            raise ValueError(f"beta_warmup_steps must be an integer >= 0, got {wu!r}")
        self._put("beta_warmup_steps", int(wu))

    def _check_prior(self) -> None:
        """ISA prior settings (Eq. 9-10): validated for ISA models, cleared for the others."""
        spec = self.spec
        if spec.prior != "isa":
            for name in ("layout", "p0", "p", "p_init"):
                self._put(name, None)
            return
        if self.layout is None:
            raise ValueError(f"model {self.model!r} needs an ISA layout (subspace sizes), e.g. (4,) * 5")
        if isinstance(self.layout, (str, bytes)) or not all(
                isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in self.layout):
            raise ValueError(f"layout must be whole subspace sizes, e.g. (4, 4, 4, 4, 4), got {self.layout!r}")
        layout = tuple(int(k) for k in self.layout)
        if not layout or any(k < 1 for k in layout):
            raise ValueError(f"layout must be positive subspace sizes, got {self.layout!r}")
        if sum(layout) != self.latent_dim:
            raise ValueError(f"layout {layout} sums to {sum(layout)}, not latent_dim {self.latent_dim}")
        self._put("layout", layout)
        for name in ("p0",) + (("p_init",) if spec.learn else ("p",)):
            v = getattr(self, name)
            v = _DEFAULTS[name] if v is None else v   # None: cleared by a non-ISA model, take the default
            if (not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool)
                    or not math.isfinite(float(v)) or float(v) <= 0):
                raise ValueError(f"{name} must be a finite number > 0 for model {self.model!r}, got {v!r}")
            self._put(name, float(v))
        if spec.learn and not _LEARN_BOUNDS[0] < self.p_init < _LEARN_BOUNDS[1]:
            raise ValueError(f"p_init must lie inside {_LEARN_BOUNDS}, got {self.p_init}")
        self._put("p" if spec.learn else "p_init", None)

    def _check_objective(self) -> None:
        """The beta-TCVAE estimator and the FactorVAE discriminator: validated where used, else cleared."""
        from ..objectives import check_aggregate

        objective = self.spec.objective
        if objective == "beta_tcvae":
            if self.estimator is None:
                self._put("estimator", _DEFAULTS["estimator"])
            if self.estimator not in ("mss", "mws"):
                raise ValueError(f"estimator must be 'mss' or 'mws', got {self.estimator!r}")
            check_aggregate(self.aggregate, self.device)
        else:
            # Unused by this model, so cleared (every such run has one hash), but a name that no model
            # knows is a mistake, not a setting to drop silently.
            if self.estimator not in (None, "mss", "mws"):
                raise ValueError(f"estimator must be 'mss', 'mws' or None, got {self.estimator!r}")
            check_aggregate(self.aggregate)
            self._put("estimator", None)
            self._put("aggregate", _DEFAULTS["aggregate"])
        if objective == "factor_vae":
            dh = _DEFAULTS["disc_hidden"] if self.disc_hidden is None else self.disc_hidden
            if isinstance(dh, bool) or not isinstance(dh, (int, np.integer)) or dh < 1:
                raise ValueError(f"disc_hidden must be a positive integer, got {self.disc_hidden!r}")
            self._put("disc_hidden", int(dh))
        else:
            self._put("disc_hidden", None)

    def _check_subgrid(self) -> None:
        """The sub-grid: known factors and classes, every scored factor still varying, at least one batch."""
        from ..datasets import factor_spec
        from ..metrics import MIG_FACTORS

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
        self._put("subgrid", sub)
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
        from ..datasets import factor_spec

        s = factor_spec(self.dataset)
        kept = dict(zip(s["names"], s["sizes"]))
        kept.update({n: len(c) for n, c in self.subgrid or ()})
        return int(math.prod(kept.values()))

    @property
    def steps(self) -> int:
        """Optimiser steps of the run (as :func:`isa_lib.train.total_steps`)."""
        return max(1, int(round(self.epochs * (self.n_images // self.batch_size))))

    @property
    def train_steps(self) -> int:
        """Steps this run trains: ``budget_fraction`` of :attr:`steps`, rounded (at least 1)."""
        return max(1, min(self.steps, int(round(self.budget_fraction * self.steps))))

    @property
    def images_seen(self) -> int:
        """Training images this run has seen: :attr:`train_steps` x ``batch_size``."""
        return self.train_steps * self.batch_size

    def lineage(self) -> "RunConfig":
        """The run at the whole budget of which this run is a prefix (itself when ``budget_fraction`` is 1):
        runs with one lineage share one training and one checkpoint."""
        return dataclasses.replace(self, budget_fraction=1.0)

    def subgrid_dict(self) -> dict | None:
        return None if self.subgrid is None else {n: list(c) for n, c in self.subgrid}

    def to_dict(self) -> dict:
        """JSON-able fields (tuples as lists, subgrid as a mapping)."""
        d = dataclasses.asdict(self)
        d["layout"] = None if self.layout is None else list(self.layout)
        d["subgrid"] = self.subgrid_dict()
        if d["fused"] == 1:   # a run trained alone is stored as before the field existed (older code reads it)
            del d["fused"]
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
        (``data_version`` 1, ``beta_warmup_steps`` 0, ``aggregate`` dense, ``budget_fraction`` 1, ``mig_dtype``
        float64, ``fused`` 1), so older rows keep their keys."""
        payload = {"v": HASH_VERSION, **self.to_dict()}
        for name, implied in _IMPLIED_BEFORE_FIELD.items():
            if payload.get(name, implied) == implied:
                payload.pop(name, None)
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def short(self) -> str:
        """The run in a few words for logs and errors: model, beta, seed, and a fixed ISA exponent or a
        budget fraction where they differ from the paper's (p = 2.2, the whole budget)."""
        text = f"{self.model} beta={self.beta:g} seed={self.seed}"
        if self.p is not None and self.p != _DEFAULTS["p"]:
            text += f" p={self.p:g}"
        if self.budget_fraction != 1.0:
            text += f" budget={self.budget_fraction:g}"
        if self.fused > 1:
            text += f" fused={self.fused}"
        return text

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
_IMPLIED_BEFORE_FIELD = {"data_version": 1, "beta_warmup_steps": 0, "aggregate": "dense",
                         "budget_fraction": 1.0, "mig_dtype": "float64", "fused": 1}


# ---------------------------------------------------------------------------------------------- scales
_DSPRITES_SMALL = {"shape": [0, 1, 2], "scale": [0, 5], "orientation": [0, 10],
                   "posX": list(range(0, 32, 2)), "posY": list(range(0, 32, 2))}          # 3,072 images
_DSPRITES_MEDIUM = {"shape": [0, 1, 2], "scale": [0, 2, 5], "orientation": list(range(0, 40, 4)),
                    "posX": list(range(0, 32, 2)), "posY": list(range(0, 32, 2))}         # 23,040 images
# Every shape, scale and orientation, positions 16 x 16 (every other one): 184,320 images.
_DSPRITES_LARGE = {"posX": list(range(0, 32, 2)), "posY": list(range(0, 32, 2))}
# 3D faces: 10 identities, every azimuth, elevation and lighting: 25,410 images.
_FACES_LARGE = {"identity": list(range(10))}


#: The CPU scale with the paper's images at 1/27 of its budget (module notes): 64 x 64 binary dSprites, every shape, scale and
#: orientation, 16 x 16 positions; see experiments/grids/dsprites_large.yml for the measured cost.
LARGE_DSPRITES = dict(epochs=3.0, batch_size=128, hidden=512, image_size=64,
                      subgrid=_freeze_subgrid(_DSPRITES_LARGE), mig_samples=1000)
#: 3D faces on a CPU: the paper's conv nets on 10 identities with every azimuth, elevation and lighting.
LARGE_FACES = dict(epochs=8.0, batch_size=64, subgrid=_freeze_subgrid(_FACES_LARGE), mig_samples=1000)


#: Hidden units of the ``budget`` scale's MLP: the widest whose whole 7,200-step run trains in about two
#: hours on one idle core. benchmarks/bench_budget_width.py, side by side on one idle thread: 0.30 s per
#: step at 256 units, 0.49 at 512 (1.0 h a run), 1.28 at the paper's 1200 (2.6 h, 4.3x of 256). 512 is also
#: the width of the ``large`` scale, so the two CPU studies differ only in data and budget.
BUDGET_HIDDEN = 512
#: The budget scale: the paper's dSprites run but for the MLP's width; MIG in float32 (float64 fall-back).
BUDGET_DSPRITES = dict(hidden=BUDGET_HIDDEN, mig_dtype="float32")


def scale_defaults(scale: str, dataset: str = "dsprites") -> dict:
    """RunConfig fields of a scale (``small``, ``medium``, ``large``, ``budget``, ``paper``) for a dataset.

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
        if scale == "budget":
            return {**paper, **BUDGET_DSPRITES}
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
        raise ValueError(f"faces3d has the 'large' (CPU) and 'paper' scales only (conv nets need 64 x 64 "
                         f"images), not {scale!r}")
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

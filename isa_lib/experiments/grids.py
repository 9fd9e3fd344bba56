"""Sweep grids: models x betas x seeds on top of a scale, from a mapping or a YAML file (checked before
anything runs)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from .config import MODELS, RunConfig, scale_defaults


class GridError(ValueError):
    """A sweep grid that names an unknown key, model or value; raised before any run starts."""


_GRID_KEYS = {"models", "betas", "gammas", "seeds", "scale", "dataset", "description", "estimate",
              "budget_fractions", "arms"}
_PER_RUN = {"model", "beta", "seed"}
#: The most runs one grid may expand to (the paper's full grid is 2,300); more is taken for a typo.
MAX_GRID_RUNS = 100_000


def expand_grid(spec: Mapping) -> list[RunConfig]:
    """Configurations of a grid: ``models`` x ``betas`` x ``seeds`` on top of a ``scale`` and shared settings.

    Keys: ``models`` (list), ``betas`` (list, or a mapping model -> list), ``gammas`` (FactorVAE's gammas,
    default the betas), ``seeds`` (a count n meaning 0..n-1, or a list), ``scale`` (default small),
    ``dataset``, ``description``/``estimate`` (free text), and any RunConfig field but model/beta/seed.
    ``arms`` adds variants of a model: a list of mappings, each with ``model``, RunConfig fields that
    override the grid's (e.g. ``p: 4.0``) and optionally its own ``seeds``. ``budget_fractions`` (a list
    in (0, 1]) makes every run once per fraction of its training budget (``RunConfig.budget_fraction``).
    Every key, model name and value is checked (all configurations are built) before anything runs.
    The list is ordered budget fraction first, then seed, so that a partial sweep has every model and beta
    for its seeds, and every run at a smaller fraction before any at a larger one (a study stopped
    part-way is balanced at the largest fraction it reached).
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
    if betas is None:
        raise GridError("'betas' is empty (null): give a number, a list of numbers or a mapping model -> list, "
                        "or leave the key out for beta = 1")
    if isinstance(betas, Mapping):
        extra = sorted(set(betas) - set(models))
        if extra:
            raise GridError(f"'betas' names model(s) {extra} that are not in 'models'")
    seeds = _seed_list(spec.get("seeds", 1), spec.get("seeds"))
    fractions = _fractions(spec.get("budget_fractions"))
    arms = [(m, {}, seeds) for m in models] + _arms(spec.get("arms"), seeds)
    size = sum(len(_betas_of(m, betas, spec)) * len(arm_seeds) for m, _, arm_seeds in arms) * max(1, len(fractions))
    if size > MAX_GRID_RUNS:
        raise GridError(f"the grid has {size:,} runs, more than {MAX_GRID_RUNS:,} (a sweep of that many is surely "
                        f"a typo, e.g. in 'seeds'); split it into grids of at most {MAX_GRID_RUNS:,}")
    try:
        base = scale_defaults(spec.get("scale", "small"), spec.get("dataset", "dsprites"))
    except ValueError as err:
        raise GridError(str(err)) from None
    base.update({k: v for k, v in spec.items() if k in fields})
    if "subgrid" in spec:
        base["subgrid"] = spec["subgrid"]
    out, seen = [], set()
    for model, extra, arm_seeds in arms:
        for beta in _betas_of(model, betas, spec):
            for seed in arm_seeds:
                for fraction in fractions or [None]:
                    fields = {**base, **extra, "model": model, "beta": beta, "seed": seed}
                    if fraction is not None:
                        fields["budget_fraction"] = fraction
                    try:
                        cfg = RunConfig(**fields)
                    except (TypeError, ValueError) as err:
                        arm = f"{model} {extra}" if extra else model
                        raise GridError(f"{arm} beta={beta} seed={seed}: {err}") from None
                    if cfg.config_hash() not in seen:
                        seen.add(cfg.config_hash())
                        out.append(cfg)
    # Budget fraction, then seed first (stable): a sweep stopped part-way has then covered every model and
    # beta evenly, at every fraction below the one it reached.
    order = {s: k for k, s in enumerate(dict.fromkeys(seeds + [s for _, _, arm_seeds in arms for s in arm_seeds]))}
    out.sort(key=lambda c: (c.budget_fraction, order[c.seed]))   # (a dict: the sort stays n log n in the seeds)
    return out


def _seed_list(seeds, given) -> list:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple)):
        raise GridError(f"'seeds' must be a count or a list, got {seeds!r}")
    if isinstance(seeds, int) and seeds > MAX_GRID_RUNS:
        raise GridError(f"'seeds' asks for {seeds:,} seeds, more than a grid may have runs ({MAX_GRID_RUNS:,})")
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise GridError(f"'seeds' gives no seed ({given!r}): the grid would run nothing; "
                        f"give a count >= 1 or a non-empty list")
    return seeds


def _fractions(fractions) -> list:
    """The grid's budget fractions, sorted: numbers in (0, 1]."""
    if fractions is None:
        return []
    if not isinstance(fractions, (list, tuple)) or not fractions:
        raise GridError(f"'budget_fractions' must be a non-empty list of fractions in (0, 1], got {fractions!r}")
    bad = [f for f in fractions if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1]
    if bad:
        raise GridError(f"'budget_fractions' must lie in (0, 1], got {bad}")
    return sorted({float(f) for f in fractions})


def _arms(arms, seeds: list) -> list:
    """The grid's extra arms as (model, fields, seeds): model variants such as ISA-VAE with p = 4."""
    if arms is None:
        return []
    if not isinstance(arms, (list, tuple)):
        raise GridError(f"'arms' must be a list of mappings (model and fields), got {arms!r}")
    fields = {f.name for f in dataclasses.fields(RunConfig)} - _PER_RUN
    out = []
    for arm in arms:
        if not isinstance(arm, Mapping) or arm.get("model") not in MODELS:
            raise GridError(f"each arm needs a 'model' from {sorted(MODELS)}, got {arm!r}")
        unknown = sorted(set(arm) - fields - {"model", "seeds"})
        if unknown:
            raise GridError(f"arm {arm!r}: unknown key(s) {unknown}; allowed: model, seeds and RunConfig fields")
        extra = {k: v for k, v in arm.items() if k not in ("model", "seeds")}
        out.append((arm["model"], extra, _seed_list(arm.get("seeds", seeds), arm.get("seeds"))))
    return out


def _betas_of(model: str, betas, spec: Mapping) -> list:
    """The betas a grid gives ``model`` (a mapping's entry, FactorVAE's ``gammas``, or the shared list)."""
    if isinstance(betas, Mapping):
        values, key = betas.get(model, [1.0]), f"'betas' of {model}"
    elif model == "factor_vae" and "gammas" in spec:
        values, key = spec["gammas"], "'gammas'"
    else:
        values, key = betas, "'betas'"
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise GridError(f"{key} must be a number or a list of numbers (or 'betas' a mapping model -> list), "
                        f"got {values!r}")
    values = list(values)
    if not values:
        raise GridError(f"model {model} gets no beta (an empty list): the grid would run nothing for it")
    return values


def load_grid(path) -> list[RunConfig]:
    """:func:`expand_grid` of a YAML file."""
    import yaml

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise GridError(f"grid file {path} cannot be read ({err})") from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML: {err}") from None
    try:
        if not isinstance(spec, (Mapping, type(None))):
            raise GridError(f"a grid is a mapping of keys (models, betas, seeds, ...), got {type(spec).__name__}")
        return expand_grid(spec or {})
    except GridError as err:
        raise GridError(f"{path}: {err}") from None

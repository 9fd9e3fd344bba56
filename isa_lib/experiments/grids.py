"""Sweep grids: models x betas x seeds on top of a scale, from a mapping or a YAML file (checked before
anything runs)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from .config import MODELS, RunConfig, scale_defaults


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
    if not seeds:
        raise GridError(f"'seeds' gives no seed ({spec.get('seeds')!r}): the grid would run nothing; "
                        f"give a count >= 1 or a non-empty list")
    try:
        base = scale_defaults(spec.get("scale", "small"), spec.get("dataset", "dsprites"))
    except ValueError as err:
        raise GridError(str(err)) from None
    base.update({k: v for k, v in spec.items() if k in fields})
    if "subgrid" in spec:
        base["subgrid"] = spec["subgrid"]
    out, seen = [], set()
    for model in models:
        for beta in _betas_of(model, betas, spec):
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


def _betas_of(model: str, betas, spec: Mapping) -> list:
    """The betas a grid gives ``model`` (a mapping's entry, FactorVAE's ``gammas``, or the shared list)."""
    if isinstance(betas, Mapping):
        values = betas.get(model, [1.0])
    elif model == "factor_vae" and "gammas" in spec:
        values = spec["gammas"]
    else:
        values = betas
    values = [values] if isinstance(values, (int, float)) else list(values)
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

"""Ground-truth datasets of the paper's experiments (Sec. 4): dSprites, 3D faces, cars3d.

Each dataset has two sources behind one API:

* the real file (``path=...``): the original dSprites ``.npz``, the Basel
  face renders ``.pth`` or the folder of cars3d ``.mat`` files, validated and
  converted once into the cache;
* a built-in procedural generator with the same factor grid (the default),
  since the public files cannot be downloaded here and the faces are not
  redistributable.

>>> ds = load("dsprites", subgrid={"posX": [0, 31], "posY": [0, 31]})  # doctest: +SKIP
>>> ds.images.shape, ds.factor_names                                     # doctest: +SKIP

Cached arrays live in $ISA_VAE_CACHE (default ~/.cache/isa-vae), written
atomically with a sha256 recorded beside them, and are memory-mapped.
"""
from __future__ import annotations

from . import cars3d, dsprites, faces3d
from ._base import (CACHE_ENV, DatasetError, DatasetFileNotFoundError, DatasetFormatError,
                    GroundTruthDataset, ImageRangeError, RandomBatchSampler, cache_dir)

NAMES = ("dsprites", "faces3d", "cars3d")
_MODULES = {"dsprites": dsprites, "faces3d": faces3d, "cars3d": cars3d}
_ALIASES = {"faces": "faces3d", "3dfaces": "faces3d", "cars": "cars3d"}

__all__ = ["load", "render", "factor_spec", "generator_version", "generator_versions", "export", "NAMES", "GroundTruthDataset",
           "RandomBatchSampler", "DatasetError", "DatasetFileNotFoundError", "DatasetFormatError",
           "ImageRangeError", "cache_dir", "CACHE_ENV", "dsprites", "faces3d", "cars3d"]


def _module(name: str):
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _MODULES:
        raise KeyError(f"unknown dataset {name!r}; choose one of {NAMES}")
    return key, _MODULES[key]


def load(name: str, path=None, *, subgrid=None, seed: int = 0, cache=None,
         verify: bool = True, version: int | None = None) -> GroundTruthDataset:
    """Load a dataset by name ("dsprites", "faces3d", "cars3d").

    path    -- the real file (dSprites .npz, faces .pth) or folder (cars3d .mat
               files); None builds the procedural version.
    subgrid -- built-in only: {factor name: classes to keep}, for a small grid.
    seed    -- built-in faces/cars only: the random identities (dSprites has none).
    cache   -- cache folder (default $ISA_VAE_CACHE or ~/.cache/isa-vae).
    verify  -- re-hash the cached file once per process before using it.
    version -- built-in only: the generator version (default the newest,
               ``generator_version(name)``); dSprites keeps version 1 for
               studies made with it.
    """
    key, mod = _module(name)
    if version is not None and version not in generator_versions(key):
        raise ValueError(f"unknown {key} generator version {version!r}; known: {generator_versions(key)}")
    if version is not None and path is not None:
        raise ValueError("version applies to the built-in generators only, not to a real file")
    if path is not None:
        if subgrid is not None:
            raise ValueError("subgrid applies to the built-in generators only")
        loader = {"dsprites": dsprites.load_npz, "faces3d": faces3d.load_pth,
                  "cars3d": cars3d.load_mat_folder}[key]
        return loader(path, cache=cache, verify=verify)
    if key == "dsprites":
        return dsprites.build(subgrid=subgrid, cache=cache, verify=verify,
                              version=dsprites.VERSION if version is None else version)
    return mod.build(subgrid=subgrid, seed=seed, cache=cache, verify=verify)


def render(name: str, classes, seed: int = 0):
    """Render rows of factor classes with a built-in generator, without any cache.

    Returns uint8 images (n, C, 64, 64): C = 1 for dSprites (values 0/1) and
    faces, 3 for cars.
    """
    key, mod = _module(name)
    if key == "dsprites":
        return dsprites.render(classes)[:, None]
    return mod.render(classes, seed=seed)


def generator_version(name: str) -> int:
    """The newest version of a dataset's built-in generator (part of its cache key and of a run's hash)."""
    return _module(name)[1].VERSION


def generator_versions(name: str) -> tuple:
    """Every version of a dataset's built-in generator that can still be built (dSprites: 1 and 2)."""
    mod = _module(name)[1]
    return tuple(getattr(mod, "VERSIONS", (mod.VERSION,)))


def factor_spec(name: str) -> dict:
    """Factor names, sizes and values of a dataset's full grid, without building it."""
    _, mod = _module(name)
    return {"names": mod.NAMES, "sizes": mod.SIZES, "values": mod.factor_values()}


def export(dataset: GroundTruthDataset, path):
    """Write a dataset in its original format: dSprites .npz, faces .pth, cars3d folder of .mat."""
    writer = {"dsprites": dsprites.export_npz, "faces3d": faces3d.export_pth,
              "cars3d": cars3d.export_mat_folder}
    if dataset.name not in writer:
        raise ValueError(f"no export for {dataset.name!r}")
    return writer[dataset.name](dataset, path)

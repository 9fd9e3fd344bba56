"""Shared input checks of the metrics: which factors count, array shapes and values, latent groups,
and the seeded randomness every estimator uses (one place, so every metric refuses bad input alike)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..datasets import factor_spec

# Factor names of the datasets as stored by isa_lib.datasets (C order).
FACTOR_NAMES = {name: tuple(factor_spec(name)["names"]) for name in ("dsprites", "faces3d", "cars3d")}

# The factors the MIG is averaged over, per dataset (Chen et al. 2018's protocol, used by the paper):
# * dSprites: scale, orientation, posX, posY.  Color is constant; shape is excluded as in Chen et al.'s
#   evaluation (a 3-valued categorical factor no single continuous latent is expected to carry).
# * 3D faces: azimuth, elevation, lighting; the 50 identities are excluded, as in Chen et al.
# * cars3d (not in Chen et al.): azimuth and elevation.  Identity (183 unordered cars) is excluded by the
#   same argument as faces' identity and dSprites' shape; pass ``factors=[...]`` to include it.
MIG_FACTORS = {
    "dsprites": ("scale", "orientation", "posX", "posY"),
    "faces3d": ("azimuth", "elevation", "lighting"),
    "cars3d": ("azimuth", "elevation"),
}


# --------------------------------------------------------------------------- validation helpers
def _as_2d_tensor(x, name: str) -> torch.Tensor:
    # detached: a metric is a measurement, and the float64 sums write into buffers autograd refuses
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _as_codes(codes, name: str = "codes") -> np.ndarray:
    c = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {c.shape}")
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return c


def _as_classes(classes, n: int) -> np.ndarray:
    v = classes.detach().cpu().numpy() if isinstance(classes, torch.Tensor) else np.asarray(classes)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"factor_classes must be 2-D (N, K), got shape {v.shape}")
    if v.shape[0] != n:
        raise ValueError(f"factor_classes has {v.shape[0]} rows but codes have {n}")
    if not np.issubdtype(v.dtype, np.integer):
        if not np.isfinite(v).all() or not np.all(v == np.round(v)):
            raise ValueError("factor_classes must hold integer class indices")
        v = v.astype(np.int64)
    if v.size and v.min() < 0:
        raise ValueError("factor_classes must be non-negative class indices")
    return v.astype(np.int64)


def _check_sizes(factor_sizes, n: int) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in factor_sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"factor_sizes must be positive integers, got {factor_sizes}")
    if math.prod(sizes) != n:
        raise ValueError(f"product of factor_sizes {sizes} is {math.prod(sizes)}, but there are {n} rows")
    return sizes


def resolve_factors(factors, factor_sizes: Sequence[int], factor_names: Sequence[str] | None = None) -> list[int]:
    """Indices of the factors that count.

    ``factors``: None (every factor with more than one value), a key of :data:`MIG_FACTORS`
    (needs ``factor_names``, else the dataset's names in :data:`FACTOR_NAMES` are assumed), or a list
    of indices and/or names.  A factor with a single value has no information to share and is refused.
    """
    sizes = [int(s) for s in factor_sizes]
    if factors is None:
        out = [k for k, s in enumerate(sizes) if s > 1]
        if not out:
            raise ValueError(f"no factor to score: none takes more than one value (factor sizes {sizes})")
        return out
    if isinstance(factors, str):
        if factors not in MIG_FACTORS:
            raise ValueError(f"unknown dataset {factors!r}; known: {sorted(MIG_FACTORS)}")
        if factor_names is None:
            factor_names = FACTOR_NAMES[factors]
        factors = MIG_FACTORS[factors]
    out = []
    for f in factors:
        if isinstance(f, str):
            if factor_names is None or f not in factor_names:
                raise ValueError(f"factor {f!r} not among factor_names {factor_names}")
            k = list(factor_names).index(f)
        else:
            k = int(f)
        if not 0 <= k < len(sizes):
            raise ValueError(f"factor index {k} outside 0..{len(sizes) - 1}")
        if sizes[k] < 2:
            raise ValueError(f"factor {f!r} has a single value; it cannot be scored")
        out.append(k)
    if not out:
        raise ValueError("no factor to score")
    if len(set(out)) != len(out):
        raise ValueError(f"factors repeated: {factors}")
    return out


def grid_classes(factor_sizes: Sequence[int]) -> np.ndarray:
    """(N, K) int64 factor classes of every row of a full grid in C order."""
    sizes = tuple(int(s) for s in factor_sizes)
    return np.indices(sizes).reshape(len(sizes), -1).T.astype(np.int64)


def groups_from_layout(subspace_sizes: Sequence[int]) -> list[list[int]]:
    """Consecutive latent groups of an ISA layout, e.g. (4, 4, 4, 4, 4) -> [[0..3], ..., [16..19]]."""
    out, start = [], 0
    for s in subspace_sizes:
        out.append(list(range(start, start + int(s))))
        start += int(s)
    return out


def _check_groups(groups, d: int) -> list[list[int]]:
    if groups is None:
        return [[j] for j in range(d)]
    out = [[int(j) for j in g] for g in groups]
    flat = [j for g in out for j in g]
    if any(len(g) == 0 for g in out) or any(not 0 <= j < d for j in flat) or len(set(flat)) != len(flat):
        raise ValueError(f"groups must be disjoint non-empty lists of latent indices in 0..{d - 1}: {groups}")
    return out


def _generator(seed, generator) -> torch.Generator:
    if generator is not None:
        return generator
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _pick_device(device) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return torch.device(device)


def _subsample(n: int, n_points, seed) -> np.ndarray:
    if n_points is None or n_points >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(n_points), replace=False))


def _factors_from_classes(factors, classes, factor_names):
    sizes = [int(np.unique(classes[:, k]).size) for k in range(classes.shape[1])]
    return resolve_factors(factors, sizes, factor_names)


def _scored_codes(codes, factor_classes, n_points, seed, factors, factor_names):
    """What a supervised score of codes works on: the codes (N, D) and factor classes checked, the same
    ``n_points`` rows of both (a seeded subset; all if None), and the factors that count."""
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    c, v = c[rows], v[rows]
    return c, v, _factors_from_classes(factors, v, factor_names)


def _split(n: int, train_fraction: float, seed) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_tr = int(round(train_fraction * n))
    if n_tr < 2 or n - n_tr < 1:
        raise ValueError(f"too few rows ({n}) for a train/test split at {train_fraction}")
    return perm[:n_tr], perm[n_tr:]

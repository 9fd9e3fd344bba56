"""Looking inside a trained code (App. A.5): active latents, latents against the true factors, traversals.

These are the computations behind the paper's latent plots (Chen et al.'s technique: the mean code as a
function of each ground-truth factor) and latent traversals (decode while one latent moves along its axis).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def active_dims(mu: torch.Tensor | np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Latents ordered by the variance of their posterior mean over the data, largest first, keeping
    those above ``threshold`` (the activity statistic of Burda et al. 2016: a pruned latent's mean does
    not move with x)."""
    var = np.asarray(torch.as_tensor(mu).detach().double().var(0).cpu())   # codes may live on a GPU
    order = np.argsort(-var, kind="stable")
    return order[var[order] > threshold]


def factor_means(mu: torch.Tensor | np.ndarray, factor_sizes: Sequence[int], keep: Sequence[int]) -> np.ndarray:
    """Mean code as a function of the factors in ``keep``, averaged over all other factors.

    ``mu`` holds one row per image of a full factor grid in C order (``prod(factor_sizes)`` rows). Returns
    an array of shape ``[factor_sizes[k] for k in keep] + [latent_dim]``.
    """
    mu = np.asarray(torch.as_tensor(mu).detach().double().cpu())
    sizes = tuple(int(s) for s in factor_sizes)
    if mu.shape[0] != int(np.prod(sizes)):
        raise ValueError(f"mu has {mu.shape[0]} rows but the factor grid {sizes} has {int(np.prod(sizes))}")
    keep = [int(k) for k in keep]
    if any(not 0 <= k < len(sizes) for k in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"keep must be distinct factor indices below {len(sizes)}, got {keep}")
    grid = mu.reshape(*sizes, mu.shape[1])
    drop = tuple(k for k in range(len(sizes)) if k not in keep)
    means = grid.mean(axis=drop)
    # mean() keeps the remaining axes in their original order; put them in the order asked for
    remaining = [k for k in range(len(sizes)) if k in keep]
    return np.moveaxis(means, [remaining.index(k) for k in keep], list(range(len(keep))))


@torch.no_grad()
def traversal(decode: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, dims: Sequence[int],
              values: Sequence[float]) -> np.ndarray:
    """Decoded images (as Bernoulli means) while latent ``d`` takes each of ``values`` and the others stay
    at ``z0``: shape (len(dims), len(values), C, H, W). ``z0`` is moved to the decoder's device when the
    decoder is a module (a code read on the CPU, a decoder trained on a GPU)."""
    from .nets import module_device

    z0 = torch.as_tensor(z0).reshape(-1)
    dev = module_device(decode)
    z0 = z0 if dev is None else z0.to(dev)
    values_t = torch.as_tensor(list(values), dtype=z0.dtype, device=z0.device)
    rows = []
    for d in dims:
        z = z0.repeat(len(values_t), 1)
        z[:, d] = values_t
        rows.append(torch.sigmoid(decode(z)).float().cpu().numpy())
    return np.stack(rows)


def dsprites_start_index(factor_classes, factor_sizes: Sequence[int]) -> int:
    """The image traversals start from in App. A.5: a heart (the last shape class) at the largest scale,
    the first orientation and the position nearest the centre of the grid (dSprites factor order)."""
    c = np.asarray(factor_classes)
    sizes = [int(s) for s in factor_sizes]
    rows = np.flatnonzero((c[:, 1] == sizes[1] - 1) & (c[:, 2] == sizes[2] - 1) & (c[:, 3] == 0))
    if rows.size == 0:
        raise ValueError("no heart at the largest scale and first orientation in this grid")
    dist = np.abs(c[rows, 4] - (sizes[4] - 1) / 2) + np.abs(c[rows, 5] - (sizes[5] - 1) / 2)
    return int(rows[np.argmin(dist)])


def centre_index(factor_classes, factor_sizes: Sequence[int]) -> int:
    """A neutral start for traversals on any factor grid: the image whose classes lie nearest the middle
    class of every factor (for dSprites, App. A.5's heart is :func:`dsprites_start_index`)."""
    c = np.asarray(factor_classes, dtype=float)
    middle = (np.asarray([int(s) for s in factor_sizes], dtype=float) - 1) / 2
    if c.ndim != 2 or c.shape[1] != len(middle):
        raise ValueError(f"factor_classes must be (images, {len(middle)}), got shape {c.shape}")
    return int(np.argmin(np.abs(c - middle).sum(1)))

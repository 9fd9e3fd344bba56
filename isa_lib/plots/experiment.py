"""Figures of a single ISA-VAE run (App. A.5, Fig. 16): latents against the factors (dSprites, or any\nfactor grid), traversals."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..latents import factor_means

#: App. A.5's line colours per dSprites shape (shape classes 0, 1, 2 = square, ellipse, heart).
SHAPE_COLOURS = {0: ("square", "tab:green"), 1: ("ellipse", "tab:red"), 2: ("heart", "tab:blue")}


def dsprites_latent_plot(mu, factor_sizes: Sequence[int], factor_values: Sequence, dims: Sequence[int],
                         title: str = ""):
    """Chen et al.'s plot as used in App. A.5: one row per latent; column 1 the mean latent over the (x, y)
    position grid in red-blue, columns 2-3 the mean latent against scale and orientation, one line per
    shape (red ellipse, green square, blue heart). dSprites factor order: color, shape, scale, orientation,
    posX, posY."""
    dims = list(dims)
    if not dims:
        raise ValueError("no latent to plot (every latent is inactive)")
    pos = factor_means(mu, factor_sizes, [4, 5])  # (x, y, d)
    by_scale = factor_means(mu, factor_sizes, [1, 2])  # (shape, scale, d)
    by_orient = factor_means(mu, factor_sizes, [1, 3])
    fig, axes = plt.subplots(len(dims), 3, figsize=(8, 1.9 * len(dims)), squeeze=False)
    for row, d in zip(axes, dims):
        lim = np.abs(pos[..., d]).max() or 1.0
        row[0].imshow(pos[..., d].T, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="upper",
                      extent=(0, 1, 1, 0))
        row[0].set_ylabel(f"z{d}")
        for shape in range(by_scale.shape[0]):
            name, colour = SHAPE_COLOURS.get(shape, (str(shape), None))
            row[1].plot(factor_values[2], by_scale[shape, :, d], color=colour, label=name)
            row[2].plot(factor_values[3], by_orient[shape, :, d], color=colour, label=name)
        for ax in row:
            ax.tick_params(labelsize=7)
    axes[0, 0].set_title("position (x, y)", fontsize=9)
    axes[0, 1].set_title("scale", fontsize=9)
    axes[0, 2].set_title("orientation", fontsize=9)
    axes[0, 2].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def factor_response_plot(mu, factor_sizes: Sequence[int], factor_values: Sequence, factor_names: Sequence[str],
                         dims: Sequence[int], title: str = ""):
    """The same reading for any factor grid (3D faces, cars3d): one row per latent, one column per factor
    that varies, the mean latent against that factor's values, averaged over all the other factors. A
    disentangled latent moves in one column and is flat in the others."""
    dims = list(dims)
    if not dims:
        raise ValueError("no latent to plot (every latent is inactive)")
    varying = [k for k, n in enumerate(factor_sizes) if n > 1]
    fig, axes = plt.subplots(len(dims), len(varying), figsize=(2.4 * len(varying), 1.7 * len(dims)),
                             squeeze=False)
    for col, k in enumerate(varying):
        means = factor_means(mu, factor_sizes, [k])  # (n_k, latent_dim)
        axes[0, col].set_title(str(factor_names[k]), fontsize=9)
        for row, d in enumerate(dims):
            axes[row, col].plot(np.asarray(factor_values[k], dtype=float), means[:, d], marker=".", ms=3)
            axes[row, col].tick_params(labelsize=7)
            if col == 0:
                axes[row, col].set_ylabel(f"z{d}")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def traversal_plot(images: np.ndarray, dims: Sequence[int], values: Sequence[float], title: str = ""):
    """A grid of decoded traversals: one row per latent, one column per value (``images`` from
    :func:`isa_lib.latents.traversal`)."""
    n_rows, n_cols = images.shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.8 * n_cols, 0.85 * n_rows), squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            img = images[r, c]
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"z{dims[r]}", fontsize=8)
            if r == 0:
                ax.set_title(f"{values[c]:.1f}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

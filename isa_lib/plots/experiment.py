"""Figures of a single ISA-VAE run (App. A.5, Fig. 16): latents against the factors (dSprites, or any\nfactor grid), traversals."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..latents import factor_means
from .style import DIVERGING, OKABE_ITO, WIDTH, wrap_title

#: App. A.5's line colours per dSprites shape (shape classes 0, 1, 2 = square, ellipse, heart), in the
#: colour-blind safe palette (green, vermillion, blue), each with its own line style as well.
SHAPE_COLOURS = {0: ("square", OKABE_ITO[2]), 1: ("ellipse", OKABE_ITO[3]), 2: ("heart", OKABE_ITO[0])}
SHAPE_LINES = {0: "-", 1: "--", 2: ":"}
#: Units of the dSprites factors as the generator draws them (chapter 4).
DSPRITES_UNITS = {"scale": "scale (fraction of the image)", "orientation": "orientation (radians)"}


def factor_effects(mu, factor_sizes: Sequence[int], factor_names: Sequence[str], dim: int) -> dict[str, float]:
    """How much each factor moves a latent's mean, read as App. A.5 reads Fig. 16: the variance, over the
    factor's values, of the latent's mean averaged over every other factor (:func:`isa_lib.latents.factor_means`;
    a main-effect share of the latent's variance). Factors with one value are left out."""
    effects = {}
    for k, n in enumerate(factor_sizes):
        if n > 1:
            means = factor_means(mu, factor_sizes, [k])[:, dim]
            effects[str(factor_names[k])] = float(np.var(means))
    if not effects:
        raise ValueError("no factor varies")
    return effects


def dominant_factor(mu, factor_sizes: Sequence[int], factor_names: Sequence[str], dim: int) -> str:
    """The factor a latent follows most (the largest of :func:`factor_effects`; a variance, where a range
    would let one odd value, e.g. sprites cut by the image's edge, decide). A label for plots, not a score
    (MIG is the score)."""
    effects = factor_effects(mu, factor_sizes, factor_names, dim)
    return max(effects, key=effects.get)


def followed_factors(mu, factor_sizes: Sequence[int], factor_names: Sequence[str], dim: int,
                     share: float = 0.5) -> list[str]:
    """The factors a latent follows, largest effect first: every factor whose :func:`factor_effects` is at
    least ``share`` of the largest. An entangled latent gets several (e.g. ``["scale", "posX"]`` for a size
    code that also sees sprites shrink where the image's edge cuts them)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    effects = factor_effects(mu, factor_sizes, factor_names, dim)
    top = max(effects.values())
    return sorted((f for f, v in effects.items() if v >= share * top), key=lambda f: -effects[f])


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
    fig, axes = plt.subplots(len(dims), 3, figsize=(WIDTH, 0.6 + 1.75 * len(dims)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.6, 1.6]})
    for row, d in zip(axes, dims):
        lim = np.abs(pos[..., d]).max() or 1.0
        row[0].imshow(pos[..., d].T, cmap=DIVERGING, vmin=-lim, vmax=lim, origin="upper",
                      extent=(0, 1, 1, 0))
        row[0].set_xticks([0, 1])
        row[0].set_yticks([0, 1])
        row[0].set_ylabel(f"z{d}\ny position", fontsize=10)
        for shape in range(by_scale.shape[0]):
            name, colour = SHAPE_COLOURS.get(shape, (str(shape), None))
            style = SHAPE_LINES.get(shape, "-")
            row[1].plot(factor_values[2], by_scale[shape, :, d], color=colour, ls=style, label=name)
            row[2].plot(factor_values[3], by_orient[shape, :, d], color=colour, ls=style, label=name)
        row[1].set_ylabel(f"mean z{d}")
        row[2].set_ylabel(f"mean z{d}")
    axes[0, 0].set_title("mean over (x, y)")
    axes[0, 1].set_title("against scale")
    axes[0, 2].set_title("against orientation")
    axes[-1, 0].set_xlabel("x position")
    axes[-1, 1].set_xlabel(DSPRITES_UNITS["scale"])
    axes[-1, 2].set_xlabel(DSPRITES_UNITS["orientation"])
    handles, labels = axes[0, 2].get_legend_handles_labels()
    fig.suptitle(wrap_title(title))
    fig.tight_layout(rect=(0, 0.45 / (0.6 + 1.75 * len(dims)), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)  # under the panels, off the data
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
    fig, axes = plt.subplots(len(dims), len(varying), figsize=(WIDTH, 0.6 + 1.6 * len(dims)), squeeze=False)
    for col, k in enumerate(varying):
        means = factor_means(mu, factor_sizes, [k])  # (n_k, latent_dim)
        axes[0, col].set_title(str(factor_names[k]))
        axes[-1, col].set_xlabel(f"{factor_names[k]} (factor value)")
        for row, d in enumerate(dims):
            axes[row, col].plot(np.asarray(factor_values[k], dtype=float), means[:, d], marker=".", ms=3)
            if col == 0:
                axes[row, col].set_ylabel(f"mean z{d}")
    fig.suptitle(wrap_title(title))
    fig.tight_layout()
    return fig


def traversal_plot(images: np.ndarray, dims: Sequence[int], values: Sequence[float], title: str = "",
                   row_labels: Sequence[str] | None = None):
    """A grid of decoded traversals: one row per latent, one column per value (``images`` from
    :func:`isa_lib.latents.traversal`), drawn a full column wide so that each image is large (about 80 px
    per image in the book at 7 values); the latent's value is written above each column and, given
    ``row_labels`` (e.g. :func:`dominant_factor`), the factor each row follows beside it."""
    n_rows, n_cols = images.shape[:2]
    if len(dims) != n_rows or len(values) != n_cols:
        raise ValueError(f"images are {n_rows} x {n_cols}, but {len(dims)} dims and {len(values)} values given")
    label_w, cell = 1.1, (WIDTH - 1.1) / n_cols  # inches: the row labels, then square images
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(WIDTH, 0.75 + cell * n_rows), squeeze=False,
                             gridspec_kw={"left": label_w / WIDTH, "right": 0.995, "wspace": 0.04, "hspace": 0.04,
                                          "top": 1 - 0.6 / (0.75 + cell * n_rows), "bottom": 0.01})
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            img = images[r, c]
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                label = f"z{dims[r]}" + (f"\n{row_labels[r]}" if row_labels is not None else "")
                ax.set_ylabel(label, rotation=0, ha="right", va="center", labelpad=6)
            if r == 0:
                ax.set_title(f"z = {values[c]:+.1f}", fontsize=10)
    fig.suptitle(wrap_title(title))
    return fig


def training_plot(history: Sequence[dict], title: str = ""):
    """The two terms of the objective (Eq. 12) against the optimiser step, from a run's logged ``history``
    (rows with ``step``, ``recon``, ``kl``): the reconstruction term E_q[log p(x|z)] and the KL estimate, in
    nats per image. Both levelling off is the sign of a finished run."""
    if not history:
        raise ValueError("no training history to plot")
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(WIDTH, 0.38 * WIDTH))
    ax[0].plot(steps, [h["recon"] for h in history], color=OKABE_ITO[0])
    ax[0].set(xlabel="optimiser step", ylabel="nats per image", title="reconstruction E_q[log p(x|z)]")
    ax[1].plot(steps, [h["kl"] for h in history], color=OKABE_ITO[3])
    ax[1].set(xlabel="optimiser step", ylabel="nats per image", title="KL estimate (Eq. 12)")
    fig.suptitle(wrap_title(title))
    fig.tight_layout()
    return fig

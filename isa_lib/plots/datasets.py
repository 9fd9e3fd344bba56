"""Figures of the ground-truth datasets (Sec. 4): factor traversals and random samples."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import datasets as D
from .style import SMALL, fit, wrap_title


def _show(ax, img):
    """Draw one (C, H, W) uint8 image: grey for C = 1, colour for C = 3."""
    img = np.asarray(img)
    if img.shape[0] == 1:
        vmax = 1 if img.max() <= 1 else 255
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    else:
        ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def traversal_rows(name: str, n_steps: int, base=None) -> tuple[list[str], np.ndarray]:
    """Factor classes of one traversal per factor: rows (K * n_steps, K), others at ``base``.

    ``base`` defaults to the middle class of every factor; factors with one
    class are skipped; a factor with fewer than ``n_steps`` classes repeats.
    """
    spec = D.factor_spec(name)
    sizes = np.asarray(spec["sizes"])
    base = sizes // 2 if base is None else np.asarray(base)
    names, rows = [], []
    for k, size in enumerate(sizes):
        if size == 1:
            continue
        steps = np.rint(np.linspace(0, size - 1, n_steps)).astype(int)
        r = np.tile(base, (n_steps, 1))
        r[:, k] = steps
        names.append(spec["names"][k])
        rows.append(r)
    return names, np.concatenate(rows)


def plot_traversals(name: str, n_steps: int = 8, seed: int = 0, scale: str = "small", base=None):
    """One row per factor: that factor swept over its range, the others fixed."""
    names, rows = traversal_rows(name, n_steps, base)
    imgs = D.render(name, rows, seed=seed)
    spec = D.factor_spec(name)
    fig, axes = plt.subplots(len(names), n_steps, figsize=fit(1.1 * n_steps, 1.15 * len(names) + 0.5),
                             squeeze=False)
    for i, fname in enumerate(names):
        k = spec["names"].index(fname)
        for j in range(n_steps):
            row = rows[i * n_steps + j]
            ax = axes[i, j]
            _show(ax, imgs[i * n_steps + j])
            val = spec["values"][k][row[k]]
            ax.set_title(f"{val:.2f}" if fname not in ("identity", "shape") else f"{int(row[k])}",
                         fontsize=SMALL)
        axes[i, 0].set_ylabel(fname, fontsize=9)
    fig.suptitle(f"{name}: traversal of each factor (built-in generator, seed {seed}, scale={scale})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_random_samples(dataset, n: int = 16, seed: int = 0, scale: str = "small", ncols: int = 8):
    """A seeded random sample of a loaded dataset, titled with each image's factor classes."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(dataset), size=min(n, len(dataset)), replace=False))
    imgs = dataset.images[idx].numpy()
    classes = dataset.index_to_classes(idx)
    nrows = int(np.ceil(len(idx) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=fit(1.2 * ncols, 1.35 * nrows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, c in zip(axes.ravel(), imgs, classes):
        _show(ax, img)
        ax.axis("on")
        ax.set_title(",".join(str(int(v)) for v in c), fontsize=SMALL)
    fig.suptitle(f"{dataset.name}: {len(idx)} random images of {len(dataset)} "
                 f"(classes {', '.join(dataset.factor_names)}; scale={scale})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_light_and_silhouette(seed: int = 0, identity: int = 0, scale: str = "small"):
    """3D faces: lighting sweeps shading inside a fixed silhouette; azimuth moves the silhouette."""
    lights = [[identity, 10, 5, li] for li in range(0, 11, 2)]
    azims = [[identity, a, 5, 5] for a in range(0, 21, 4)]
    imgs = D.render("faces3d", lights + azims, seed=seed)[:, 0]
    fig, axes = plt.subplots(3, 6, figsize=fit(8, 4.4))
    for j in range(6):
        _show(axes[0, j], imgs[j][None])
        _show(axes[1, j], (imgs[j] > 0)[None].astype(np.uint8))
        _show(axes[2, j], imgs[6 + j][None])
    axes[0, 0].set_ylabel("lighting", fontsize=SMALL)
    axes[1, 0].set_ylabel("silhouette", fontsize=SMALL)
    axes[2, 0].set_ylabel("azimuth", fontsize=SMALL)
    fig.suptitle(f"3D faces: light moves shading, not the silhouette (seed {seed}, scale={scale})",
                 fontsize=10)
    fig.tight_layout()
    return fig

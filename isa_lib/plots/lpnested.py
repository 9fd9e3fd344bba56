"""Figures for the Lp-nested / ISA chapter (paper Fig. 2-4 and sampler checks); matplotlib only."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from scipy import stats

from isa_lib.lpnested import LpNested, LpTree, eq6_tree, log_lp_nested_norm
from isa_lib.lpnested_analysis import (
    eq6_unit_sphere,
    expected_log_density_vs_angle,
    marginal_cdf_1d,
    marginal_density,
    rotate,
)

from .style import SMALL, fit, wrap_title

__all__ = [
    "plot_eq6_unit_spheres",
    "plot_eq6_slice_contours",
    "plot_fig3",
    "plot_orientation_curves",
    "plot_tree",
    "plot_trees",
    "plot_radial_check",
    "plot_surface_area_check",
    "plot_marginal_check",
    "explore_exponents",
]


def _suptitle(fig: Figure, title: str | None) -> None:
    if title:
        fig.suptitle(wrap_title(title), fontsize=11)


# ------------------------------------------------------------------ Fig. 2
def plot_eq6_unit_spheres(exponents: Sequence[float] = (1.0, 2.0, 9.0), n_a: int = 60, n_t: int = 80,
                          title: str | None = None) -> Figure:
    """Fig. 2 as 3-D iso-surfaces: the unit sphere f(z) = 1 of Eq. 6 for each (p0, p1) (rows p0, cols p1).

    Eq. 6 is a function of three variables, so its iso-contours are surfaces; every other level set is
    a scaled copy (f is 1-homogeneous).  z1 is the vertical axis; the horizontal cross-sections are
    L_{p1} circles in (z2, z3), the vertical profile an L_{p0} circle in (z1, ||(z2, z3)||_{p1}).
    """
    k = len(exponents)
    fig = plt.figure(figsize=fit(3.0 * k, 3.0 * k))
    for i, p0 in enumerate(exponents):
        for j, p1 in enumerate(exponents):
            ax = fig.add_subplot(k, k, i * k + j + 1, projection="3d")
            z1, z2, z3 = eq6_unit_sphere(p0, p1, n_a, n_t)
            ax.plot_surface(z2, z3, z1, cmap="viridis", linewidth=0.1, edgecolor="k", alpha=0.9,
                            rstride=2, cstride=2)
            ax.set_box_aspect((1, 1, 1))
            lim = 1.05
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim), xticks=[-1, 0, 1],
                   yticks=[-1, 0, 1], zticks=[-1, 0, 1])
            ax.set_xlabel("$z_2$", labelpad=-8)
            ax.set_ylabel("$z_3$", labelpad=-8)
            ax.set_zlabel("$z_1$", labelpad=-8)
            ax.tick_params(labelsize=6, pad=-2)
            ax.set_title(f"$p_0={p0:g},\\ p_1={p1:g}$", fontsize=9)
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


def plot_eq6_slice_contours(exponents: Sequence[float] = (1.0, 2.0, 9.0), z3: float = 0.5,
                            extent: float = 2.0, n_grid: int = 201, levels: Sequence[float] = (0.6, 1.0, 1.5, 2.0),
                            title: str | None = None) -> Figure:
    """Fig. 2 as 2-D slices: contours of f(z1, z2, z3 = const) of Eq. 6 (rows p0, cols p1).

    At z3 = 0 the slice would be a plain L_{p0} ball and hide p1, so a nonzero z3 is used: the inner
    norm ||(z2, z3)||_{p1} then bends the contours along z2 differently for each p1.
    """
    k = len(exponents)
    g = torch.linspace(-extent, extent, n_grid, dtype=torch.float64)
    Z1, Z2 = torch.meshgrid(g, g, indexing="ij")
    z = torch.stack([Z1, Z2, torch.full_like(Z1, z3)], -1)
    fig, axes = plt.subplots(k, k, figsize=fit(2.6 * k, 2.6 * k), sharex=True, sharey=True, squeeze=False)
    for i, p0 in enumerate(exponents):
        for j, p1 in enumerate(exponents):
            f = log_lp_nested_norm(z, eq6_tree(float(p0), float(p1))).exp().numpy()
            ax = axes[i, j]
            cs = ax.contour(Z2.numpy(), Z1.numpy(), f, levels=list(levels), cmap="viridis")
            ax.clabel(cs, fontsize=SMALL, fmt="%g")
            ax.set_aspect("equal")
            ax.set_title(f"$p_0={p0:g},\\ p_1={p1:g}$", fontsize=9)
            if i == k - 1:
                ax.set_xlabel("$z_2$")
            if j == 0:
                ax.set_ylabel("$z_1$")
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ Fig. 3
# blue -> purple -> red: unlike coolwarm/bwr its middle is not white, so every code stays visible
_BLUE_RED = LinearSegmentedColormap.from_list("blue_red", ["#2166ac", "#762a83", "#b2182b"])

def _density_grid(prior, extent: float, n_grid: int):
    g = torch.linspace(-extent, extent, n_grid, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    with torch.no_grad():
        lp = prior.log_prob(torch.stack([X, Y], -1))
    return X.numpy(), Y.numpy(), lp.numpy()


def plot_fig3(priors: Mapping[str, object], points: torch.Tensor, thetas: torch.Tensor,
              angles_deg: Sequence[float] = (0.0, 45.0), n_grid: int = 201,
              curve_priors: Mapping[str, object] | None = None, title: str | None = None) -> Figure:
    """Fig. 3: each 2-D prior's log-density contours with the dSprites (x, y) grid encoded at each angle of
    ``angles_deg`` (colour = the sprite's x position, as the paper's red/blue coding), plus the mean
    log-density of the codes against the rotation angle (right column, relative to angle 0) for
    ``curve_priors`` (default: ``priors``)."""
    names = list(priors)
    na = len(angles_deg)
    fig = plt.figure(figsize=fit(3.0 * na + 4.2, 3.0 * len(names)))
    gs = fig.add_gridspec(len(names), na + 1, width_ratios=[1] * na + [1.5])
    pts = torch.as_tensor(points, dtype=torch.float64)
    extent = 1.15 * float(pts.norm(dim=-1).max())
    colour = pts[:, 0].numpy()
    for r, name in enumerate(names):
        X, Y, lp = _density_grid(priors[name], extent, n_grid)
        for c, ang in enumerate(angles_deg):
            ax = fig.add_subplot(gs[r, c])
            codes = rotate(pts, math.radians(ang)).numpy()
            top = lp.max()
            ax.contourf(X, Y, lp, levels=np.linspace(top - 8, top, 17), cmap="Greys_r", alpha=0.35)
            ax.contour(X, Y, lp, levels=np.linspace(top - 8, top, 9), colors="0.3", linewidths=0.5)
            ax.scatter(codes[:, 0], codes[:, 1], c=colour, cmap=_BLUE_RED, s=3, linewidths=0)
            mean_lp = float(expected_log_density_vs_angle(priors[name], pts, torch.tensor([math.radians(ang)]))[0])
            ax.set_title(f"{name}, code at {ang:g}°\nmean log p = {mean_lp:.3f}", fontsize=9)
            ax.set_aspect("equal")
            ax.set(xlim=(-extent, extent), ylim=(-extent, extent))
            ax.tick_params(labelsize=7)
            ax.set_xlabel("$z_1$", fontsize=SMALL)
            ax.set_ylabel("$z_2$", fontsize=SMALL)
    ax = fig.add_subplot(gs[:, na])
    plot_orientation_curves(curve_priors or priors, pts, thetas, ax=ax)
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


def plot_orientation_curves(priors: Mapping[str, object], points: torch.Tensor, thetas: torch.Tensor,
                            ax=None, title: str | None = None):
    """Mean log-density of the rotated codes minus its value at angle 0, for each prior, vs angle."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=fit(5, 3.5))
    th = torch.as_tensor(thetas, dtype=torch.float64)
    deg = th.numpy() * 180 / math.pi
    for name, prior in priors.items():
        v = expected_log_density_vs_angle(prior, points, th).numpy()
        ax.plot(deg, v - v[0], label=name)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("rotation of the position code (degrees)")
    ax.set_ylabel("mean log p(code) − value at 0°  (nats)")
    ax.set_xticks(np.arange(0, deg.max() + 1, 15))
    ax.legend(fontsize=SMALL)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return ax.figure if own else ax


# ------------------------------------------------------------------ Fig. 4
def plot_tree(tree, ax=None, title: str | None = None, show_exponents: bool = True):
    """Draw an Lp-nested tree (Fig. 4) from an :class:`LpTree` or ``(p, [children])`` spec."""
    tree = tree if isinstance(tree, LpTree) else LpTree(tree)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=fit(max(3.0, 0.8 * tree.n + 1), 0.9 * (max(1, _height(tree)) + 1)))
    nodes, edges = tree.layout()
    for a, b in edges:
        ax.plot([nodes[a]["x"], nodes[b]["x"]], [nodes[a]["y"], nodes[b]["y"]], color="0.4", lw=1, zorder=1)
    for nd in nodes:
        if nd["kind"] == "leaf":
            ax.scatter([nd["x"]], [nd["y"]], s=420, color="#cfe3f7", edgecolor="k", zorder=2)
            ax.text(nd["x"], nd["y"], f"$z_{{{nd['index'] + 1}}}$", ha="center", va="center", fontsize=9, zorder=3)
        else:
            ax.scatter([nd["x"]], [nd["y"]], s=700, color="#f7dccf", edgecolor="k", marker="s", zorder=2)
            label = f"$p_{{{nd['index']}}}$"
            if show_exponents:
                p = tree.exponents[nd["index"]]
                val = float(p.detach()) if isinstance(p, torch.Tensor) else float(p)
                label += f"\n{val:g}"
            ax.text(nd["x"], nd["y"], label, ha="center", va="center", fontsize=SMALL, zorder=3)
    xs = [nd["x"] for nd in nodes]
    ys = [nd["y"] for nd in nodes]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax.figure if own else ax


def _height(tree: LpTree) -> int:
    nodes, _ = tree.layout()
    return int(max(nd["y"] for nd in nodes))


def plot_trees(trees: Sequence, titles: Sequence[str], title: str | None = None) -> Figure:
    """Several trees side by side (Fig. 4a, 4b)."""
    trees = [t if isinstance(t, LpTree) else LpTree(t) for t in trees]
    widths = [max(2.5, 0.75 * t.n + 0.8) for t in trees]
    fig, axes = plt.subplots(1, len(trees), figsize=fit(sum(widths), 2.8), squeeze=False,
                             gridspec_kw=dict(width_ratios=widths))
    for ax, t, ti in zip(axes[0], trees, titles):
        plot_tree(t, ax=ax, title=ti)
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ sampler vs density
def plot_radial_check(dist: LpNested, samples: torch.Tensor, bins: int = 60, title: str | None = None) -> Figure:
    """Histogram of f(z)^p0 / s of the samples against its Gamma(n/p0, 1) law (Eq. 11), with a KS p-value."""
    e = dist.radial_energy(samples).double().numpy()
    p0 = float(dist.exponents[0]) if not hasattr(dist, "p0") else float(dist.p0)
    law = stats.gamma(dist.event_shape[0] / p0)
    fig, ax = plt.subplots(figsize=fit(5, 3.3))
    hi = float(np.quantile(e, 0.995))
    ax.hist(e, bins=np.linspace(0, hi, bins), density=True, alpha=0.5, label=f"{len(e)} samples (Alg. 1)")
    x = np.linspace(1e-4, hi, 400)
    ax.plot(x, law.pdf(x), "k", lw=1.5, label=f"Gamma(n/p0 = {dist.event_shape[0] / p0:.3g}, 1)")
    ks = stats.kstest(e, law.cdf)
    ax.set_xlabel("$f(z)^{p_0} / s$")
    ax.set_ylabel("density")
    ax.legend(fontsize=SMALL, title=f"KS p = {ks.pvalue:.3f}", title_fontsize=SMALL)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_surface_area_check(rows: Sequence[Mapping], title: str | None = None) -> Figure:
    """Eq. 8 against Monte Carlo: log S_f(1) of each family of trees over an exponent p (lines: Eq. 8; dots with
    2-standard-error bars: :func:`isa_lib.lpnested_analysis.log_surface_area_monte_carlo`) and, right, their
    difference in standard errors. ``rows``: mappings with keys tree (the family's label), p, formula,
    monte_carlo and se."""
    fig, (ax, az) = plt.subplots(1, 2, figsize=fit(10, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    for k, family in enumerate(dict.fromkeys(r["tree"] for r in rows)):
        rs = sorted((r for r in rows if r["tree"] == family), key=lambda r: r["p"])
        p = np.array([r["p"] for r in rs])
        formula, mc, se = (np.array([r[key] for r in rs]) for key in ("formula", "monte_carlo", "se"))
        color = f"C{k}"
        ax.plot(p, formula, "-", color=color, lw=1.2, label=family)
        ax.errorbar(p, mc, yerr=2 * se, fmt="o", color=color, ms=3.5, capsize=2)
        az.plot(p, (mc - formula) / se, "o-", color=color, ms=3.5, lw=0.8)
    for a in (ax, az):
        a.set_xscale("log")
        a.set_xlabel("exponent $p$")
    ax.set_ylabel(r"$\log \mathcal{S}_f(1)$")
    ax.legend(fontsize=SMALL)
    az.axhspan(-2, 2, color="0.9")
    az.axhline(0, color="k", lw=0.8)
    az.set_ylabel("(Monte Carlo - Eq. 8) / s.e.")
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


def plot_marginal_check(dist: LpNested, samples: torch.Tensor, dims: Sequence[int] | None = None,
                        half_width: float | None = None, n_grid: int = 401, n_points: int = 60, bins: int = 80,
                        title: str | None = None) -> Figure:
    """Histograms of 1-D marginals of the samples against the numerically integrated marginal density
    of Eq. 7 (other coordinates integrated by quadrature), with KS p-values.  Intended for n <= 3."""
    x = samples.double().numpy()
    dims = list(range(x.shape[1])) if dims is None else list(dims)
    fig, axes = plt.subplots(1, len(dims), figsize=fit(3.4 * len(dims), 3.0), squeeze=False)
    for ax, d in zip(axes[0], dims):
        hw = half_width or float(np.quantile(np.abs(x[:, d]), 0.999)) * 1.5
        grid, dens, cdf = marginal_cdf_1d(dist, d, hw, n_grid=n_grid, n_points=n_points)
        ks = stats.kstest(x[:, d], lambda v: np.interp(v, grid, cdf))
        show = float(np.quantile(np.abs(x[:, d]), 0.99))
        ax.hist(x[:, d], bins=np.linspace(-show, show, bins), density=True, alpha=0.5, label="samples")
        ax.plot(grid, dens, "k", lw=1.2, label="integrated Eq. 7")
        ax.set_xlim(-show, show)
        ax.set_xlabel(f"$z_{d + 1}$")
        ax.legend(fontsize=SMALL, title=f"KS p = {ks.pvalue:.3f}", title_fontsize=SMALL)
    axes[0, 0].set_ylabel("density")
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ interactive explorer
def explore_exponents(p0: float = 2.0, p1: float = 2.0, n_samples: int = 1000, seed: int = 0,
                      n_grid: int = 61, scale_label: str = "", show: bool = True) -> Figure | None:
    """The Eq. 6 prior for given (p0, p1): 2-D marginal log-density contours of (z1, z2) and of (z2, z3)
    (remaining coordinate integrated numerically) with ``n_samples`` exact samples drawn after
    ``torch.manual_seed(seed)``.

    Meant for ``ipywidgets.interactive``: with ``show=True`` it calls ``plt.show()`` and returns None (a
    returned figure would be displayed a second time by ``interactive``); ``show=False`` returns the figure.
    """
    dist = LpNested(eq6_tree(float(p0), float(p1)))
    torch.manual_seed(seed)
    x = dist.sample((n_samples,)).double()
    fig, axes = plt.subplots(1, 2, figsize=fit(8, 3.8))
    for ax, dims in zip(axes, [(0, 1), (1, 2)]):
        xy = x[:, list(dims)].numpy()
        ext = float(np.quantile(np.abs(xy), 0.98)) * 1.2
        g = torch.linspace(-ext, ext, n_grid, dtype=torch.float64)
        A, B = torch.meshgrid(g, g, indexing="xy")
        dens = marginal_density(dist, dims, torch.stack([A, B], -1).reshape(-1, 2), n_points=48)
        logd = torch.log(dens.clamp_min(1e-300)).reshape(A.shape).numpy()
        top = logd.max()
        ax.contour(A.numpy(), B.numpy(), logd, levels=np.linspace(top - 7, top, 8), cmap="viridis")
        ax.scatter(xy[:, 0], xy[:, 1], s=2, color="C3", alpha=0.4)
        ax.set(xlim=(-ext, ext), ylim=(-ext, ext), xlabel=f"$z_{dims[0] + 1}$", ylabel=f"$z_{dims[1] + 1}$")
        ax.set_aspect("equal")
        ax.set_title(f"marginal of $(z_{dims[0] + 1}, z_{dims[1] + 1})$", fontsize=9)
    sl = f" [{scale_label}]" if scale_label else ""
    fig.suptitle(f"Eq. 6 prior, $p_0={p0:g}$, $p_1={p1:g}$: log-density contours and {n_samples} samples{sl}",
                 fontsize=10)
    fig.tight_layout()
    if show:
        plt.show()
        return None
    return fig

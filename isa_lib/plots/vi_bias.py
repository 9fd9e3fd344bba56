"""Figures for the biases of variational inference (paper Fig. 1, App. B.3-B.5, B.8).

Each function takes arrays or result dicts from `isa_lib.factor_analysis` / `isa_lib.ica` and returns a
matplotlib Figure; `scale` is written into the title so that every figure says how it was made.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

from isa_lib import factor_analysis as fa
from isa_lib import ica
from .style import OKABE_ITO, SMALL, fit, wrap_title

TRUE_C, VI_C = OKABE_ITO[0], OKABE_ITO[3]  # blue and vermillion (colour-blind safe)


def _ellipse(ax, cov, n_std=1.0, **kw):
    """Draw the n_std contour of a 2-D Gaussian with covariance cov, centred at 0."""
    evals, evecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(evecs[1, 1], evecs[0, 1]))
    w, h = 2 * n_std * np.sqrt(evals[::-1])
    ax.add_patch(Ellipse((0, 0), w, h, angle=angle, fill=False, **kw))


def _arrows(ax, W, color, label=None, lw=2.0):
    for k in range(W.shape[1]):
        ax.annotate("", xy=W[:, k], xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=color, lw=lw))
    ax.plot([], [], color=color, lw=lw, label=label)


def fa_rotation_panels(x, w_ml, noise_var, thetas=(0.0, np.pi / 4), scale: str = "small"):
    """App. B.3: for each theta, data with weights W_ML R(theta), and the 1-sd contours of the true and
    the mean-field posterior covariance (which do not depend on the data point)."""
    thetas = list(thetas)
    fig, axes = plt.subplots(len(thetas), 2, figsize=fit(9, 4.2 * len(thetas)), squeeze=False)
    for row, t in zip(axes, thetas):
        W = fa.rotate_latents(w_ml, t)
        ax = row[0]
        ax.scatter(x[:, 0], x[:, 1], s=8, alpha=0.35, color="gray", label="data")
        _arrows(ax, W, "k", "weights (columns of W)")
        lim = 1.1 * max(np.abs(x).max(), np.abs(W).max())
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="$x_1$", ylabel="$x_2$",
               title=rf"weights, $\theta$ = {t / np.pi:.2f}$\pi$")
        ax.legend(loc="upper left", fontsize=SMALL)
        _, cov_true = fa.tempered_posterior(W, noise_var)
        _, q_var = fa.mean_field_posterior(W, noise_var)
        ax = row[1]
        _ellipse(ax, cov_true, color=TRUE_C, lw=2, label="true posterior")
        _ellipse(ax, np.diag(q_var), color=VI_C, lw=2, ls="--", label="mean-field q")
        lim = 1.3 * np.sqrt(max(np.diag(cov_true).max(), q_var.max()))
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="$z_1$", ylabel="$z_2$",
               title=rf"posterior covariance (1 sd), $\theta$ = {t / np.pi:.2f}$\pi$")
        ax.legend(loc="upper left", fontsize=SMALL)
    fig.suptitle(f"Factor analysis, Exp. 1 (App. B.3), scale = {scale}")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def fa_rotation_sweep(sweep: dict, scale: str = "small"):
    """App. B.3: log-likelihood (flat) and free energy (peaks at multiples of pi/2) against theta."""
    fig, ax = plt.subplots(figsize=fit(7, 4))
    t = sweep["theta"] / np.pi
    ax.plot(t, sweep["log_likelihood"], color=TRUE_C, lw=2, label="log-likelihood")
    ax.plot(t, sweep["free_energy"], color=VI_C, lw=2, label=rf"free energy ($\beta$ = {sweep['beta']:g})")
    ax.set(xlabel=r"rotation $\theta$ / $\pi$", ylabel="nats (sum over data)",
           title=f"Exp. 1: rotating the ML weights (App. B.3), scale = {scale}")
    ax.legend()
    fig.tight_layout()
    return fig


def fa_overcomplete(sweep: dict, scale: str = "small"):
    """App. B.4: likelihood (flat) and free energy along the over-complete family, plus column norms."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=fit(11, 4))
    a = sweep["alpha"]
    ax.plot(a, sweep["log_likelihood"], color=TRUE_C, lw=2, label="log-likelihood")
    ax.plot(a, sweep["free_energy"], color=VI_C, lw=2, label="free energy")
    ax.set(xlabel=r"$\alpha$ (share of the first component given to the third)", ylabel="nats",
           title="likelihood vs free energy")
    ax.legend()
    for k in range(sweep["component_norms"].shape[1]):
        ax2.plot(a, sweep["component_norms"][:, k], lw=2, label=f"|w_{k + 1}|")
    ax2.set(xlabel=r"$\alpha$", ylabel="column norm", title="the three weight columns")
    ax2.legend()
    fig.suptitle(f"Exp. 2: over-complete factor analysis (App. B.4), scale = {scale}")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def fa_beta_sweep(bsweep: dict, amplitude: dict | None = None, scale: str = "small"):
    """App. B.5: F_beta(theta) - max_theta F_beta for several beta; optionally amplitude against beta."""
    ncols = 2 if amplitude is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=fit(6 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    t = bsweep["theta"] / np.pi
    for b, f in zip(bsweep["beta"], bsweep["free_energy"]):
        ax.plot(t, f - f.max(), lw=2, label=rf"$\beta$ = {b:g}")
    ax.set(xlabel=r"rotation $\theta$ / $\pi$", ylabel=r"$F_\beta(\theta) - \max_\theta F_\beta$ (nats)",
           title="same maximisers, different depth")
    ax.legend(fontsize=SMALL)
    if amplitude is not None:
        ax = axes[0, 1]
        ax.semilogx(amplitude["beta"], amplitude["amplitude"], "k.-")
        ax.set(xlabel=r"$\beta$", ylabel="max - min over $\\theta$ (nats)", title="amplitude of the fluctuation")
    fig.suptitle(rf"Exp. 3: $\beta$ and the rotation sweep (App. B.5), scale = {scale}")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def ica_components(x, w_true, fits: dict, scale: str = "small", title_extra: str = ""):
    """Fig. 1 (a-c): data with the true components, and with the components learned for each beta.

    Components are drawn as lines through the origin of length 2 x 4 |w_k| (sign does not matter)."""
    fig, axes = plt.subplots(1, 1 + len(fits), figsize=fit(4.3 * (1 + len(fits)), 4.6))
    lim = np.percentile(np.abs(x), 99) * 1.2
    panels = [("(a) true model", w_true, TRUE_C)] + [
        (rf"({chr(98 + i)}) VI, $\beta$ = {b:g}", f["weights"], VI_C) for i, (b, f) in enumerate(fits.items())]
    for ax, (title, W, color) in zip(axes, panels):
        ax.scatter(x[:, 0], x[:, 1], s=6, alpha=0.3, color="gray")
        for k in range(W.shape[1]):
            v = 4.0 * W[:, k]
            ax.plot([-v[0], v[0]], [-v[1], v[1]], color=color, lw=2.5)
        if W is not w_true:
            for k in range(w_true.shape[1]):
                v = 4.0 * w_true[:, k]
                ax.plot([-v[0], v[0]], [-v[1], v[1]], color=TRUE_C, lw=1, ls=":")
        s = ica.summarise_components(W)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="$x_1$", ylabel="$x_2$",
               title=f"{title}\nnorms " + ", ".join(f"{n:.2f}" for n in s["norms"]))
    fig.suptitle(f"Over-complete ICA, 3 sources in 2-D (Fig. 1, App. B.8), scale = {scale}{title_extra}")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def ica_trajectories(fits: dict, scale: str = "small", title_extra: str = ""):
    """Norm of every component and the angle between the two longest ones along the optimisation."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=fit(11, 4))
    styles = ["-", "--", ":", "-."]
    for (b, f), ls in zip(fits.items(), styles):
        path = f["weights_path"]
        norms = np.linalg.norm(path, axis=1)
        for k in range(norms.shape[1]):
            ax.plot(norms[:, k], ls=ls, color=f"C{k}", label=rf"$|w_{k + 1}|$, $\beta$ = {b:g}")
        ang = [ica.summarise_components(W)["angle_two_longest"] for W in path]
        ax2.plot(ang, ls=ls, color="k", label=rf"$\beta$ = {b:g}")
    ax.set(xlabel="accepted step", ylabel="column norm", title="component norms")
    ax.legend(fontsize=SMALL, ncol=2)
    ax2.axhline(90, color="gray", lw=0.8)
    ax2.set(xlabel="accepted step", ylabel="degrees", title="angle between the two longest components")
    ax2.legend(fontsize=SMALL)
    fig.suptitle(f"Learning from the true model (App. B.8), scale = {scale}{title_extra}")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def quadrature_error(stds, errors: dict, scale: str = "small"):
    """|Gauss-Hermite - adaptive quadrature| of the Student-t cross-entropy against the q std."""
    fig, ax = plt.subplots(figsize=fit(6, 4))
    for n, err in errors.items():
        ax.semilogy(stds, np.maximum(err, 1e-17), ".-", label=f"{n} nodes")
    ax.set(xlabel="std of q (in units of the prior scale)", ylabel="absolute error (nats)",
           title=f"Gauss-Hermite cross-entropy accuracy, scale = {scale}")
    ax.legend()
    fig.tight_layout()
    return fig

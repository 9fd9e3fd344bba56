"""Figures of a sweep (Figs. 5-7): they take result tables from :mod:`isa_lib.analysis`, nothing else."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis import MODEL_LABELS, summarise
from .style import OKABE_ITO, SMALL, WIDTH, wrap_title

#: One colour per model from the colour-blind safe palette (isa_lib.plots.style): the normal-prior models in
#: blues, the ISA models in vermillion, orange and purple.
COLOURS = {"beta_vae": OKABE_ITO[0], "beta_tcvae": OKABE_ITO[5], "isa_vae": OKABE_ITO[3], "isa_tcvae": OKABE_ITO[1],
           "isa_vae_learned": OKABE_ITO[4], "factor_vae": OKABE_ITO[2], "isa_vae_p4": OKABE_ITO[7]}
#: MIG is a share of each factor's entropy (Chen et al. 2018), so it has no unit.
MIG_LABEL = "MIG (unitless, 0-1)"
RECON_LABEL = "reconstruction E_q[log p(x|z)] (nats per image)"


def _legend_below(ax, ncol: int = 2) -> None:
    """The legend under the axes, where it cannot cover data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)


def mig_distribution(df: pd.DataFrame, beta: float, models: Sequence[str], title: str = ""):
    """Fig. 5a: the distribution of MIG over seeds at one beta, one box (quartiles, median) per model, the
    mean as a diamond and every run as a dot."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * WIDTH))
    data = [df[(df["model"] == m) & np.isclose(df["beta"], beta)]["mig"].to_numpy(float) for m in models]
    if any(len(d) == 0 for d in data):
        empty = [m for m, d in zip(models, data) if len(d) == 0]
        raise ValueError(f"no finished run at beta={beta} for {empty}")
    ax.boxplot(data, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)  # jitter only, for legibility
    for i, (m, d) in enumerate(zip(models, data), 1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=14, color=COLOURS.get(m), alpha=0.7, zorder=3)
        ax.scatter([i], [d.mean()], marker="D", color="k", s=28, zorder=4)
    ax.set_xticks(range(1, len(models) + 1), [MODEL_LABELS.get(m, m) for m in models])
    ax.set_ylabel(MIG_LABEL)
    ax.set_title(wrap_title(title))
    fig.tight_layout()
    return fig


def tradeoff(df: pd.DataFrame, models: Sequence[str], title: str = ""):
    """Figs. 5b-c and 6: mean MIG against mean reconstruction E_q[log p(x|z)] per beta, with standard-error
    bars in both directions; one line per model (colour) through its betas, each beta with its own marker
    (a key of markers instead of text labels, which overlap where the points crowd); better is up and right.
    The legends are under the axes, off the data; the same numbers are in :func:`isa_lib.analysis.summarise`'s
    table."""
    from matplotlib.lines import Line2D

    s = summarise(df)
    betas = sorted(s["beta"].unique())
    markers = dict(zip(betas, "osD^vP*X"))
    fig, ax = plt.subplots(figsize=(WIDTH, 0.7 * WIDTH))
    shown = []
    for m in models:
        g = s[s["model"] == m].sort_values("beta")
        if g.empty:
            continue
        colour = COLOURS.get(m)
        ax.errorbar(g["reconstruction_mean"], g["mig_mean"], xerr=g["reconstruction_sem"], yerr=g["mig_sem"],
                    fmt="-", capsize=2, color=colour, lw=1.4, alpha=0.9)
        for _, r in g.iterrows():
            ax.plot(r["reconstruction_mean"], r["mig_mean"], ls="none", marker=markers.get(r["beta"], "o"), ms=8,
                    color=colour, markeredgecolor="k", markeredgewidth=0.6, zorder=3)
        shown.append(Line2D([], [], color=colour, lw=2, label=MODEL_LABELS.get(m, m)))
    keys = [Line2D([], [], ls="none", marker=markers[b], color="0.6", markeredgecolor="k", ms=8, label=f"β = {b:g}")
            for b in betas]
    ax.set_xlabel(RECON_LABEL)
    ax.set_ylabel(MIG_LABEL)
    key = ax.legend(handles=keys, loc="upper right", bbox_to_anchor=(1.0, -0.16), ncol=1, frameon=False,
                    title="marker")
    ax.add_artist(key)  # kept when the models' legend below replaces the axes' legend
    ax.legend(handles=shown, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2, frameon=False, title="model")
    ax.set_title(wrap_title(title))
    fig.tight_layout()
    return fig


def exponent_histograms(exponents: np.ndarray, title: str = "", bins: int = 20):
    """Fig. 7: histograms of the learned subspace exponents, each run sorted p_1 <= p_2 <= ..., one panel per
    rank; the dashed line marks 2 (the Gaussian)."""
    if exponents.size == 0:
        raise ValueError("no learned exponents to plot")
    k = exponents.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(WIDTH, 0.38 * WIDTH), sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.hist(exponents[:, i], bins=bins, color=COLOURS["isa_vae_learned"], alpha=0.85)
        ax.axvline(2.0, ls="--", color="k", lw=0.8)
        ax.set_xlabel(f"p{i + 1} (rank {i + 1})")
    axes[0, 0].set_ylabel("number of runs")
    fig.supxlabel("learned subspace exponent, each run's sorted from lowest to highest (dashed: 2, the Gaussian)",
                  fontsize=SMALL)
    fig.suptitle(wrap_title(title))
    fig.tight_layout()
    return fig


def training_curves(curves: pd.DataFrame, column: str = "kl", title: str = "", ylabel: str | None = None):
    """A logged quantity (default the KL term) against the optimiser step, one thin line per run coloured by
    model, and the mean over runs of each model in bold: shows whether training has levelled off."""
    if curves.empty:
        raise ValueError("no training curves to plot")
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * WIDTH))
    for m, g in curves.groupby("model", sort=False):
        for _, run in g.groupby(["beta", "seed"]):
            ax.plot(run["step"], run[column], color=COLOURS.get(m), lw=0.5, alpha=0.35)
        mean = g.groupby("step")[column].mean()
        ax.plot(mean.index, mean.to_numpy(), color=COLOURS.get(m), lw=2, label=f"{MODEL_LABELS.get(m, m)} (mean)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel or column)
    _legend_below(ax, ncol=3)
    ax.set_title(wrap_title(title))
    fig.tight_layout()
    return fig


def dose_response(df: pd.DataFrame, models: Sequence[str], metric: str = "mig", x: str = "images_seen",
                  differences: dict[str, pd.DataFrame] | None = None, baseline: str = "beta_vae",
                  ylabel: str | None = None, title: str = "", reference: float | None = None):
    """Fig. 5a against the training budget: ``metric`` of each run against ``x`` (images seen), one thin line
    per seed and the mean over seeds in bold per model (left); and, if ``differences`` is given (model -> a
    frame with columns ``x``, ``difference``, ``t_ci_low``, ``t_ci_high``, e.g. from
    :func:`isa_lib.analysis.dose_response` against ``baseline``), each paired difference with its 95 % t
    interval (right; the bootstrap interval is too narrow at a few seeds). A dashed vertical line marks
    ``reference`` (the paper's budget)."""
    if df.empty:
        raise ValueError("no runs to plot")
    nrows = 2 if differences else 1
    fig, axes = plt.subplots(nrows, 1, figsize=(WIDTH, 0.55 * WIDTH * nrows), squeeze=False)
    ax = axes[0, 0]
    for m in models:
        g = df[df["model"] == m]
        if g.empty:
            continue
        for _, run in g.groupby("seed"):
            run = run.sort_values(x)
            ax.plot(run[x], run[metric], color=COLOURS.get(m), lw=0.7, alpha=0.4, marker=".", ms=4)
        mean = g.groupby(x)[metric].mean()
        ax.plot(mean.index, mean.to_numpy(), color=COLOURS.get(m), lw=2.4, marker="o", ms=5,
                label=f"{MODEL_LABELS.get(m, m)} (mean of {g['seed'].nunique()} seeds)")
    ax.set_xscale("log")
    ax.set_xlabel("training images seen")
    ax.set_ylabel(ylabel or metric)
    if reference is not None:
        ax.axvline(reference, ls="--", color="k", lw=0.9, label="the paper's budget")
    _legend_below(ax)
    ax.set_title(wrap_title(title))
    if differences:
        ax = axes[1, 0]
        for i, (m, d) in enumerate(differences.items()):
            if d.empty:
                continue
            d = d.sort_values(x)
            shift = 1.0 + 0.04 * (i - (len(differences) - 1) / 2)   # side by side, not on top of each other
            ax.errorbar(d[x] * shift, d["difference"], yerr=[d["difference"] - d["t_ci_low"], d["t_ci_high"] - d["difference"]],
                        marker="o", ms=5, capsize=3, color=COLOURS.get(m),
                        label=f"{MODEL_LABELS.get(m, m)} minus {MODEL_LABELS.get(baseline, baseline)}")
        ax.axhline(0.0, color="k", lw=0.8)
        if reference is not None:
            ax.axvline(reference, ls="--", color="k", lw=0.9)
        ax.set_xscale("log")
        ax.set_xlabel("training images seen")
        ax.set_ylabel(f"paired difference\nin {ylabel or metric}")
        _legend_below(ax)
        ax.set_title("same seed, ISA prior minus normal prior (95 % t interval)")
    fig.tight_layout()
    return fig


def run_scatter(df: pd.DataFrame, models: Sequence[str], x: str = "final.kl", y: str = "mig",
                xlabel: str | None = None, ylabel: str | None = None, title: str = ""):
    """One point per run, ``y`` against ``x`` (default MIG against the final KL), coloured by model: shows
    whether the runs settle in separate levels and where the high scores fall (App. A.5's bimodality)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.55 * WIDTH))
    shown = 0
    for m in models:
        g = df[df["model"] == m]
        if g.empty:
            continue
        ax.plot(g[x], g[y], ls="none", marker="o", ms=6, alpha=0.85, color=COLOURS.get(m),
                markeredgecolor="k", markeredgewidth=0.4, label=f"{MODEL_LABELS.get(m, m)} ({len(g)} runs)")
        shown += 1
    if not shown:
        raise ValueError(f"none of the models {list(models)} is in the table")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or (MIG_LABEL if y == "mig" else y))
    _legend_below(ax, ncol=3)
    ax.set_title(wrap_title(title))
    fig.tight_layout()
    return fig

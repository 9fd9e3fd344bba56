# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # One ISA-VAE run: train, measure, look inside (Sec. 4, App. A.4-A.5)
#
# This chapter trains one model of the paper's comparison on dSprites and evaluates it the way Sec. 4 does.
# Every choice is a parameter (data set, model, prior layout and exponents, fixed or learned exponents,
# $\beta$, epochs, seed or seeds, device, scale), so the same notebook runs any cell of the study with
# papermill, e.g.
#
# ```bash
# isa-vae run 05 --scale paper -p model isa_tcvae -p beta 3 -p seed 7 -p device cuda
# isa-vae run 05 --scale medium -p layout '[5, 5, 5, 5]' -p p 1.8 -p seeds '[0, 1, 2, 3]'
# ```
#
# **Model.** An encoder $q(z\mid x) = \mathcal N(\mu(x), \operatorname{diag}\sigma^2(x))$ and a Bernoulli decoder
# $p(x\mid z)$, the MLPs of App. A.4. The prior is either $\mathcal N(0, I)$ or the ISA prior of Eq. 9-11,
# $l_0 = 5$ subspaces of 4 latents with $p_0 = 2.1$ and $p_i = 2.2$ (Sec. 4, "Choosing the exponents"),
# optionally with the $p_i$ learned (App. A.2).
#
# **Objective.** The $\beta$-ELBO with the KL estimated by Monte Carlo, so any prior works (Eq. 12):
#
# $$\mathcal L = \mathbb E_{q(z\mid x)}\big[\log p(x\mid z) - \beta\,(\log q(z\mid x) - \log p(z))\big],$$
#
# or $\beta$-TCVAE, which puts $\beta$ on the total-correlation term of the decomposition of Eq. 3 only.
#
# **Measures.** The mutual information gap (MIG, Chen et al. 2018) over scale, orientation and position,
# and the reconstruction quality $\mathbb E_{q(z\mid x)}[\log p(x\mid z)]$ in nats per image (Sec. 4).
#
# The models are: `beta_vae`, `beta_tcvae`, `isa_vae`, `isa_tcvae`, `isa_vae_learned`, `factor_vae`
# (see `isa_lib.experiments.RunConfig`). The scale sets the data, network and training budget
# (`isa_lib.experiments.scale_defaults`): `small` is a sub-grid of dSprites at 32 x 32 pixels and a small
# MLP (seconds on a CPU), `medium` a larger sub-grid, `paper` the full data set with Table 1's settings.
#
# **Which scale this page shows.** The book's page is run at `large`: 64 x 64 images as in the paper, on a
# dSprites sub-grid of 184,320 images, a 512-unit MLP and 4,320 steps, about 9 minutes on one thread of a
# 2-core machine that two other runs shared. There the model uses several latents, for position, scale and
# shape, and the figures below have something to show; at `small` and `medium` (32 x 32 images, minutes) it
# often keeps one or two. The quick
# start (`isa-vae quickstart`) runs this chapter at `small` into `_build/quickstart/`, so its numbers are the
# small scale's and differ from this page's.

# %% tags=["parameters"]
scale = "small"
dataset = "dsprites"  # faces3d: paper scale only (conv nets on 64 x 64 images)
seed = 0
seeds: list[int] | None = None  # a list, e.g. [0, 1, 2, 3]: also train these seeds and show the spread of the scores
model = "isa_vae"
beta = 1.0
layout: list[int] | None = None  # ISA subspace sizes, e.g. [4, 4, 4, 4, 4]; also sets the latent size; None: the scale's
p0: float | None = None  # ISA outer exponent; None: the scale's (2.1)
p: float | None = None  # fixed subspace exponent; None: the scale's (2.2 on dSprites, 1.9 on 3D faces)
p_init: float | None = None  # start of learned exponents (model isa_vae_learned); None: 2.0
epochs: float | None = None
device = "cpu"
mig_samples: int | None = None
n_traversal = 7

# %% tags=["hide-input"]
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from isa_lib import analysis, experiments, latents, metrics
from isa_lib.plots import sweeps
from isa_lib.plots.experiment import (dsprites_latent_plot, factor_response_plot, followed_factors, training_plot,
                                      traversal_plot)

config = experiments.config_for(scale, dataset, model=model, beta=beta, seed=seed, device=device, epochs=epochs,
                                mig_samples=mig_samples, layout=layout, p0=p0, p=p, p_init=p_init)
prior = "a normal prior"
if config.layout:
    prior = (f"the ISA prior with subspaces {list(config.layout)}, $p_0 = {config.p0}$, "
             + (f"$p_i$ learned from {config.p_init}" if config.p is None else f"$p_i = {config.p}$"))
display(Markdown(
    f"**This run** (scale `{scale}`): `{config.short()}` on {config.dataset}, {prior}; "
    f"{config.n_images:,} images of {config.image_size} x {config.image_size} pixels, {config.steps:,} steps "
    f"of batch {config.batch_size}, an MLP of {config.hidden} units, a latent of {config.latent_dim}, "
    f"MIG on {config.mig_samples:,} samples; {torch.get_num_threads()} torch thread(s)."))

# %% [markdown]
# ## Train and evaluate
#
# `run_one` loads the built-in dSprites (the procedural generator of chapter 4; pass a path to the real file
# for the original), trains with Adam, and scores the trained model. The seed fixes the initialisation, the
# data order and the reparameterisation noise.

# %% tags=["hide-input"]
result, trained, data = experiments.run_one(config, return_model=True)
training_plot(result["history"], title=f"Training of {config.short()} (scale {scale})")
plt.show()
print(f"MIG = {result['mig']:.3f}   E_q[log p(x|z)] = {result['reconstruction']:.1f} nats per image")
print("MIG per factor:", {k: round(v, 3) for k, v in result["mig_per_factor"].items()})
if "exponents" in result:
    kind = "learned" if experiments.MODELS[config.model].learn else "fixed"
    print(f"subspace exponents ({kind}):", np.round(result["exponents"], 3))

# %% [markdown]
# **The same run in a study.** A seed fixes the numbers only together with the code and the number of torch
# threads: the threads split each matrix product's sums, so one thread and two end in different weights, and
# after a few thousand steps in a different code (`isa_lib.threads`; chapters and sweeps train on one thread
# unless told otherwise). Where a committed study trained this exact configuration (the same configuration
# hash), its row is shown beside this run, with the last logged training loss: equal losses mean the same
# training. A row records the commit of the code its worker imported; rows written before that was so record
# the checkout's commit when the worker wrote its first row, which can be later than the code that trained it.

# %% tags=["hide-input"]
study = Path("..") / "results" / f"{config.dataset}_{scale}.csv"
this = {"mig": result["mig"], "reconstruction": result["reconstruction"], "final.loss": result["final"]["loss"]}
twin = analysis.same_run(study, config, this, metrics=("mig", "reconstruction", "final.loss"))
if twin is None:
    display(Markdown(f"No committed study (`results/{study.name}`) trained this configuration."))
else:
    row = twin.iloc[0]
    commit = str(row.get("versions.git_commit", "?"))[:7]
    # the same training gives the same loss to the digit; the scores may move by ~1e-9 where the MIG's
    # kernel changed since the row (same estimator and samples)
    same = row["final.loss_diff"] == 0 and max(abs(row["mig_diff"]), abs(row["reconstruction_diff"])) < 1e-6
    display(Markdown(
        f"`results/{study.name}` trained this configuration too (recorded commit {commit}, one thread): MIG "
        f"{row['mig']:.6f}, reconstruction {row['reconstruction']:.4f} nats, last training loss "
        f"{row['final.loss']:.4f}. This run ({torch.get_num_threads()} thread(s)): MIG {result['mig']:.6f}, "
        f"reconstruction {result['reconstruction']:.4f}, last training loss {result['final']['loss']:.4f}. "
        + ("The same training, and the same scores within 1e-6." if same else
           "The training losses differ, so the two trainings differ (another thread count or other code), and "
           "their scores are two draws from the run-to-run spread that chapter 6 measures over seeds.")))

# %% [markdown]
# ## The code against the true factors (App. A.5)
#
# Each row is one active latent (ordered by how much its posterior mean varies over the data). Left: its
# mean over the $(x, y)$ positions in red and blue; middle and right: its mean against scale and orientation,
# one line per shape (solid green square, dashed vermillion ellipse, dotted blue heart). A disentangled latent responds to one factor
# only: a clean left-right or up-down gradient, or a monotone scale curve, and is flat elsewhere. On other
# data sets the same reading is one column per factor: the mean latent against that factor's values.

# %% tags=["hide-input"]
mu, logvar = metrics.encode_dataset(trained.encoder, data, device=config.device)
active = latents.active_dims(mu)
title = f"{config.short()}: latents against the factors (scale {scale}, MIG {result['mig']:.2f})"
if len(active) == 0:
    print("every latent is inactive: the posterior has collapsed to the prior (too short a run, or too large "
          "a beta), so there is no code to plot")
elif config.dataset == "dsprites":
    fig = dsprites_latent_plot(mu, data.factor_sizes, data.factor_values, active[:8], title=title)
    plt.show()
else:
    fig = factor_response_plot(mu, data.factor_sizes, data.factor_values, data.factor_names, active[:8], title)
    plt.show()
follows = {int(d): " + ".join(followed_factors(mu, data.factor_sizes, data.factor_names, int(d))) for d in active}
print(f"{len(active)} active latents of {config.latent_dim}; the factors each follows (at least half the largest "
      "effect on its mean): " + ", ".join(f"z{d} {f}" for d, f in follows.items()))

# %% [markdown]
# ## Latent traversals
#
# Starting from the code of a large heart in the middle of the image (on other data: the image nearest the
# middle of every factor), each row moves one active latent from $-2.5$ to $2.5$ (the value above each column)
# and decodes; the images are the decoder's Bernoulli means. Beside each row: the factors that move that
# latent's mean in the figure above (each with at least half the largest effect; a label, not a score).

# %% tags=["hide-input", "traversal"]
if config.dataset == "dsprites":
    centre = latents.dsprites_start_index(data.factor_classes, data.factor_sizes)
else:
    centre = latents.centre_index(data.factor_classes, data.factor_sizes)
values = np.linspace(-2.5, 2.5, n_traversal)
if len(active):
    with torch.no_grad():
        images = latents.traversal(trained.decoder, mu[centre].to(config.device), active[:8].tolist(), values)
    start = "a heart" if config.dataset == "dsprites" else "the middle image"
    fig = traversal_plot(images, active[:8].tolist(), values, row_labels=[follows[int(d)] for d in active[:8]],
                         title=f"{config.short()}: traversals from {start} (scale {scale})")
    plt.show()
else:
    print("no active latent to traverse")

# %% [markdown]
# ## Several seeds
#
# One run says little: MIG varies between seeds, often bimodally (Sec. 4). With `seeds`, the same
# configuration is trained for each seed, fused into one batched computation where the networks allow it
# (`run_group`; a fused run matches its separate twin in distribution, not digit for digit), and the spread
# of the scores is shown: every run, and the mean with its standard error. Chapter 6 does this at scale.

# %% tags=["hide-input"]
if seeds:
    runs = [dataclasses.replace(config, seed=int(s)) for s in seeds]
    spread = analysis.outcomes_frame(runs, experiments.run_group(runs))
    done = spread[spread["status"] == "done"]
    fig = sweeps.mig_distribution(done, config.beta, [config.model],
                                  title=f"{config.model}, beta={config.beta:g}: MIG over seeds {list(seeds)} "
                                        f"(scale {scale})")
    plt.show()
    shown = (["seed", "status", "mig"] + [c for c in spread.columns if c.startswith("mig_per_factor.")]
             + ["reconstruction"])
    display(spread[shown].round(3).style.hide(axis="index"))
    display(analysis.summarise(done)[["model", "beta", "n", "mig_mean", "mig_sem", "reconstruction_mean",
                                      "reconstruction_sem"]].round(3).style.hide(axis="index"))
else:
    display(Markdown("This page shows one seed: run it with several, e.g. `isa-vae run 05 --scale large -p seeds "
                     "'[0, 1, 2, 3]'`, and this section shows the spread of MIG and reconstruction over them."))

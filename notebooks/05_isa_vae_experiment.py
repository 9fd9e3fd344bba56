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
# Every choice is a parameter, so the same notebook runs any cell of the study with papermill, e.g.
#
# ```bash
# isa-vae run 05 --scale paper -p model isa_tcvae -p beta 3 -p seed 7 -p device cuda
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

# %% tags=["parameters"]
scale = "small"
seed = 0
model = "isa_vae"
beta = 1.0
epochs = None
device = "cpu"
mig_samples = None
n_traversal = 9

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from isa_lib import experiments, latents, metrics
from isa_lib.plots.experiment import dsprites_latent_plot, traversal_plot

settings = experiments.scale_defaults(scale, "dsprites")
overrides = {k: v for k, v in dict(epochs=epochs, mig_samples=mig_samples).items() if v is not None}
config = experiments.RunConfig(**{**settings, **overrides, "model": model, "beta": beta, "seed": seed,
                                  "device": device})
print(config.short())
print(f"{config.n_images} images of {config.image_size} x {config.image_size} pixels, {config.steps} steps "
      f"of batch {config.batch_size}, latent {config.latent_dim}, MIG on {config.mig_samples} samples")

# %% [markdown]
# ## Train and evaluate
#
# `run_one` loads the built-in dSprites (the procedural generator of chapter 4; pass a path to the real file
# for the original), trains with Adam, and scores the trained model. The seed fixes the initialisation, the
# data order and the reparameterisation noise.

# %%
result, trained, data = experiments.run_one(config, return_model=True)
hist = result["history"]
print(f"MIG = {result['mig']:.3f}   E_q[log p(x|z)] = {result['reconstruction']:.1f} nats per image")
print("MIG per factor:", {k: round(v, 3) for k, v in result["mig_per_factor"].items()})
if "exponents" in result:
    kind = "learned" if experiments.MODELS[config.model].learn else "fixed"
    print(f"subspace exponents ({kind}):", np.round(result["exponents"], 3))

fig, ax = plt.subplots(1, 2, figsize=(9, 3))
steps = [h["step"] for h in hist]
ax[0].plot(steps, [h["recon"] for h in hist])
ax[0].set(xlabel="step", ylabel="E_q[log p(x|z)] (nats)", title="reconstruction term")
ax[1].plot(steps, [h["kl"] for h in hist])
ax[1].set(xlabel="step", ylabel="nats", title="KL estimate (Eq. 12)")
fig.suptitle(f"Training of {config.short()} (scale={scale})", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The code against the true factors (App. A.5)
#
# Each row is one active latent (ordered by how much its posterior mean varies over the data). Left: its
# mean over the $(x, y)$ positions in red and blue; middle and right: its mean against scale and orientation,
# one line per shape (red ellipse, green square, blue heart). A disentangled latent responds to one factor
# only: a clean left-right or up-down gradient, or a monotone scale curve, and is flat elsewhere.

# %%
mu, logvar = metrics.encode_dataset(trained.encoder, data, device=config.device)
active = latents.active_dims(mu)
print(f"{len(active)} active latents of {config.latent_dim}: {active.tolist()}")
fig = dsprites_latent_plot(mu, data.factor_sizes, data.factor_values, active[:8],
                           title=f"{config.short()}: latents against the dSprites factors "
                                 f"(scale={scale}, MIG {result['mig']:.2f})")
plt.show()

# %% [markdown]
# ## Latent traversals
#
# Starting from the code of a large heart in the middle of the image, each row moves one active latent from
# $-2.5$ to $2.5$ and decodes; the images are the decoder's Bernoulli means.

# %%
centre = latents.dsprites_start_index(data.factor_classes, data.factor_sizes)
values = np.linspace(-2.5, 2.5, n_traversal)
with torch.no_grad():
    images = latents.traversal(trained.decoder, mu[centre].to(config.device), active[:8].tolist(), values)
fig = traversal_plot(images, active[:8].tolist(), values,
                     title=f"{config.short()}: traversals from a heart (scale={scale})")
plt.show()

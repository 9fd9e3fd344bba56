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
# # The biases of variational inference, I: factor analysis
#
# The $\beta$-VAE (Eq. 2) trades reconstruction for a heavier KL term and often returns disentangled
# codes. The paper (Sec. 2.3-2.4) argues that this works by *amplifying a bias* that variational inference
# (VI) already has. The argument starts from the ELBO written as a bound (Eq. 4):
#
# $$\mathcal L(\theta, q) = \log p_\theta(x) - \mathrm{KL}\big(q(z\mid x)\,\|\,p_\theta(z\mid x)\big).$$
#
# Maximising over the parameters $\theta$ trades the likelihood against the KL between the approximate and
# the true posterior. With a factorised $q$, that KL vanishes only when the true posterior factorises too,
# so VI prefers parameters whose posteriors are independent: **orthogonal components**, and **pruned**
# components whose posterior is the (factorised) prior.
#
# In factor analysis everything is Gaussian and linear, so the claim can be checked in closed form
# (App. B.2-B.6). The model (Eq. 14) is
#
# $$z_n \sim \mathcal N(0, I_K), \qquad x_n \mid z_n \sim \mathcal N(W z_n, D), \qquad D = \mathrm{diag}(\sigma_1^2, \dots, \sigma_D^2).$$
#
# **Optimal mean-field $q$ for any $\beta$ (App. B.1-B.2).** With $M = 1/\beta$,
# $F_\beta = \beta\,\big(\mathbb E_q[M \log p(x\mid z)] - \mathrm{KL}(q\|p)\big)$: $\beta$-VI is ordinary VI
# with the likelihood raised to the power $M$. That tempered posterior is Gaussian with precision
# $\Lambda(\beta) = M W^\top D^{-1} W + I$ and mean $R(\beta)\,x_n$, with recognition weights
# $R(\beta) = \Lambda^{-1} M W^\top D^{-1}$. The best factorised Gaussian keeps the mean and the *diagonal of
# the precision*: $q(z_n) = \mathcal N(R(\beta) x_n, \mathrm{diag}(\Lambda_{kk}^{-1}))$. Plugging it in gives
# the free energy as a function of the sufficient statistics only (Eq. 16 and the KL after it; the OCR of
# the paper garbles the second moment $\Sigma_x + \mu_x\mu_x^\top$, re-derived in
# `isa_lib.factor_analysis`):
#
# $$\begin{aligned}F_\beta = {} & \underbrace{-\tfrac N2\Big[\log\det 2\pi D + \mathrm{tr}\big(D^{-1}(I-WR)S(I-WR)^\top\big) + \mathrm{tr}\big(W^\top D^{-1} W \Sigma_q\big)\Big]}_{\text{reconstruction}} \\
#   & - \beta\,\underbrace{\tfrac N2\Big[\mathrm{tr}\,\Sigma_q + \mathrm{tr}(R^\top R S) - K - \log\det\Sigma_q\Big]}_{\mathrm{KL}(q\|p)},\end{aligned}$$
#
# with $S = \Sigma_x + \mu_x\mu_x^\top$. The tests check it against a Monte Carlo estimate of the same bound,
# against the exact log-likelihood when the posterior factorises, and that this $q$ is a maximum.
#
# The data below are our own (a 2-D Gaussian sample); the paper does not give its data, so its numbers
# (e.g. $-17.82$ nats) are not expected to reappear, only the shapes of the curves.

# %% tags=["parameters"]
scale = "small"
seed = 0
n_data = 50
noise_var = 0.1
std_major = 1.0
std_minor = 0.6
data_angle_deg = 30.0
n_theta = 181
n_alpha = 41
betas = [0.5, 1.0, 2.0, 5.0, 10.0]
n_beta_grid = 41

# %% tags=["hide-input"]
import numpy as np
import matplotlib.pyplot as plt

from isa_lib import factor_analysis as fa
from isa_lib.plots import vi_bias

x = fa.sample_gaussian_data(n_data, fa.anisotropic_cov(std_major, std_minor, np.deg2rad(data_angle_deg)), seed=seed)
stats = fa.sufficient_statistics(x)
w_ml = fa.ml_orthogonal_weights(stats, noise_var)
print("N =", stats.n, " noise variance =", noise_var)
print("maximum-likelihood W with orthogonal columns (PCA directions):\n", w_ml.round(4))

# %% [markdown]
# ## Experiment 1: rotating a maximum-likelihood solution (App. B.3)
#
# The likelihood only sees $WW^\top + D$, so every $W_\theta = W_{\mathrm{ML}} R(\theta)$ (a rotation of the
# *latent* coordinates) is also a maximum-likelihood solution. The paper writes $R(\theta)W_{\mathrm{ML}}$;
# the rotation has to act on the latent side for the likelihood to stay constant, as the paper says it does.
# The columns of $W_\theta$ are orthogonal only at multiples of $\pi/2$, and only there is
# $W^\top D^{-1} W$ diagonal, i.e. the posterior factorised. At $\theta = 0$ the bound is tight; at
# $\theta=\pi/4$ the true posterior is tilted and the axis-aligned $q$ cannot follow it.

# %% tags=["hide-input"]
summary = fa.experiment_1_summary(w_ml, noise_var, stats)
for name, vals in summary.items():
    print(f"theta = {name:5s}: log-likelihood = {vals['log_likelihood']:.2f} nats, "
          f"free energy = {vals['free_energy']:.2f} nats")

# %% tags=["hide-input"]
fig = vi_bias.fa_rotation_panels(x, w_ml, noise_var, (0.0, np.pi / 4), scale=scale)
plt.show()

# %% [markdown]
# Sweeping $\theta$ over $[0, \pi]$: the log-likelihood is flat, the free energy touches it at
# $0, \pi/2, \pi$ and dips in between. The gap is exactly $N\,\mathrm{KL}(q\,\|\,p(z\mid x))$ (Eq. 4), which for
# Gaussians sharing a mean is $\tfrac12\big(\sum_k \log\Lambda_{kk} - \log\det\Lambda\big)$ per point. So VI
# breaks the rotational degeneracy of the likelihood and picks the PCA directions.

# %% tags=["hide-input"]
thetas = np.linspace(0.0, np.pi, n_theta)
sweep = fa.rotation_sweep(w_ml, noise_var, stats, thetas)
best = thetas[np.isclose(sweep["free_energy"], sweep["free_energy"].max(), atol=1e-8)]
print("log-likelihood range over theta:", np.ptp(sweep["log_likelihood"]))
print("free energy is maximal at theta / pi =", (best / np.pi).round(3))
print("largest gap (nats):", (sweep["log_likelihood"] - sweep["free_energy"]).max().round(3),
      "at theta / pi =", (thetas[np.argmin(sweep["free_energy"])] / np.pi).round(3))
fig = vi_bias.fa_rotation_sweep(sweep, scale=scale)
plt.show()

# %% [markdown]
# ## Experiment 2: over-complete factor analysis prunes (App. B.4)
#
# Now fit 2-D data with $K = 3$ latents. Split the first ML column between latents 1 and 3 (our reading of
# Eq. 17, whose OCR is garbled):
#
# $$W(\alpha) = \big[\,a\,w_1,\; w_2,\; \alpha\,w_1\,\big], \qquad a^2 + \alpha^2 = 1 .$$
#
# Then $W(\alpha)W(\alpha)^\top = w_1w_1^\top + w_2w_2^\top$ for every $\alpha$: all are maximum-likelihood
# solutions. But latents 1 and 3 explain the same direction, so they explain each other away in the
# posterior unless one of them is switched off. At $\alpha = 0$ the third column is zero, its posterior is its
# prior, the posterior factorises and the bound is tight. ($\alpha = 1$ prunes the first latent instead,
# which is the same solution with the labels swapped; the paper plots $\alpha \in [0, 1/2]$.)

# %% tags=["hide-input"]
alphas = np.linspace(0.0, 1.0, n_alpha)
over = fa.overcomplete_sweep(w_ml, noise_var, stats, alphas)
print("log-likelihood range over alpha:", np.ptp(over["log_likelihood"]))
print(f"free energy at alpha = 0 : {over['free_energy'][0]:.2f} nats (log-likelihood {over['log_likelihood'][0]:.2f})")
i_min = np.argmin(over["free_energy"])
print(f"lowest free energy {over['free_energy'][i_min]:.2f} nats at alpha = {alphas[i_min]:.3f}")
print("alpha maximising the free energy:", alphas[np.argmax(over["free_energy"])])
fig = vi_bias.fa_overcomplete(over, scale=scale)
plt.show()

# %% [markdown]
# ## Experiment 3: $\beta$ changes the depth, not the directions (App. B.5)
#
# Repeat Experiment 1 for several $\beta$. Because $p(z)$ is rotation invariant, the identity above gives
#
# $$F_\beta(\theta) = \beta \log Z_M - \beta N\,\mathrm{KL}\big(q\,\|\,p_M(z\mid x)\big), \qquad Z_M = \int p(x\mid z)^M p(z)\,dz,$$
#
# where $\log Z_M$ does not depend on $\theta$ (tested). The tempered posterior still factorises exactly at
# multiples of $\pi/2$, so the maximisers cannot move: $\beta$-VI returns the same PCA directions. What $\beta$
# changes is the *amplitude* $\beta N\,\mathrm{KL}$ of the dip. The paper reports that it shrinks; the
# formula says more: for $M\,W^\top D^{-1}W \gg I$ the KL barely depends on $M$ and the amplitude grows like
# $\beta$, while for large $\beta$ the tempered posterior approaches the prior, the KL falls like $M^2$ and the
# amplitude decays like $1/\beta$. Which regime a given $\beta$ is in depends on the signal-to-noise ratio
# $\|w_k\|^2 / \sigma^2$ of the data.

# %% tags=["hide-input"]
bs = fa.beta_sweep(w_ml, noise_var, stats, thetas, betas)
for b, t, amp in zip(bs["beta"], bs["argmax_offset_from_pi_over_2"], bs["amplitude"]):
    print(f"beta = {b:5.2f}: maximiser's distance from a multiple of pi/2 = {t:.3f} rad, amplitude = {amp:.2f} nats")
beta_grid = np.logspace(-1, 2, n_beta_grid)
amp = fa.beta_sweep(w_ml, noise_var, stats, thetas, beta_grid)
print(f"amplitude is largest at beta = {beta_grid[np.argmax(amp['amplitude'])]:.2f}; "
      f"signal-to-noise |w_k|^2 / sigma^2 = {(np.linalg.norm(w_ml, axis=0) ** 2 / noise_var).round(2)}")
fig = vi_bias.fa_beta_sweep(bs, amplitude=amp, scale=scale)
plt.show()

# %% [markdown]
# ## Summary (App. B.6)
#
# In linear-Gaussian models the bias of VI looks benign: among the degenerate maximum-likelihood solutions
# it picks the orthogonal (PCA) directions and prunes superfluous latents, and $\beta$-VI picks *the same*
# solutions. This works only because here some maximum-likelihood solutions have factorised posteriors. The
# next chapter looks at a model where none do (over-complete ICA), and there the same bias moves the
# parameters away from the truth.

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
# # Lp-nested distributions and the ISA prior
#
# A VAE with the standard normal prior $\mathcal N(0, I)$ cannot prefer one orientation of its latent
# space over another: the prior is rotationally invariant, so any rotation of a disentangled code is an
# equally good code. The ISA-VAE paper replaces that prior with one that is *not* rotationally invariant
# and whose structure says which latent coordinates may depend on each other: an
# **Lp-nested symmetric distribution** of the **independent subspace analysis (ISA)** type (paper Sec. 3).
#
# This chapter builds the prior from the ground up, with every equation checked numerically:
#
# 1. the p-generalised normal (Eq. 5) and why its kurtosis decides the orientation of a code (Fig. 3);
# 2. Lp-nested functions (Eq. 6) and their trees (Fig. 2, Fig. 4a);
# 3. the Lp-nested density (Eq. 7), its normaliser (Eq. 8) and its radial law (Eq. 11);
# 4. the ISA prior (Eq. 9-10, Fig. 4b): independent subspaces, dependent coordinates inside them;
# 5. exact sampling (Alg. 1), compared against the density;
# 6. an interactive explorer of the exponents.
#
# All computation lives in `isa_lib.lpnested` (the distributions) and `isa_lib.lpnested_analysis` (quadrature,
# orientation preference, subspace dependence), all plotting in `isa_lib.plots.lpnested`; this notebook only
# calls them. The equations in clean form, with the derivations the code relies on, are in the appendix
# [Equations](07_equations.ipynb).

# %% tags=["parameters"]
scale = "small"
seed = 0
n_samples = 3000
n_indep_samples = 20000
n_angles = 91
sphere_resolution = 40
slice_grid = 161
density_grid = 161
marginal_grid = 201
quad_points = 48
mass_quad_points = 100
widget_samples = 800
widget_grid = 41

# %% tags=["hide-input"]
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from isa_lib.lpnested import ISA, LpNested, LpTree, PGeneralizedNormal, eq6_tree, isa_tree
from isa_lib.lpnested_analysis import (
    abs_correlations,
    dsprites_positions,
    orientation_summary,
    subspace_radius_correlations,
    total_mass,
)
from isa_lib.plots.lpnested import (
    explore_exponents,
    plot_eq6_slice_contours,
    plot_eq6_unit_spheres,
    plot_fig3,
    plot_marginal_check,
    plot_radial_check,
    plot_trees,
)

torch.manual_seed(seed)
label = f"scale={scale}"
print(label, "| seed", seed, "| torch", torch.__version__)

# %% [markdown]
# ## 1. The p-generalised normal and the orientation of a code
#
# Generalised ICA uses the exponential power family (paper Eq. 5)
#
# $$p(z) = \frac{p}{2\, s^{1/p}\, \Gamma(1/p)} \exp\!\left(-\frac{|z|^p}{s}\right),
# \qquad p = \frac{2}{1+\kappa},$$
#
# where $\kappa$ measures kurtosis: $p=2$ is the normal distribution ($\kappa=0$), $p=1$ the Laplace
# ($\kappa=1$); $p<2$ is *leptokurtic* (peaked, heavy-tailed), $p>2$ *platykurtic* (flat-topped, light
# tails). We use $s=2$ throughout, so that $p=2$ is exactly $\mathcal N(0,1)$. A product of $n$ such
# densities is `PGeneralizedNormal(p, n)`; for $p \ne 2$ it is the only factorial member of the
# $L_p$-spherically symmetric family, and it is *not* rotationally invariant.
#
# **Fig. 3 of the paper.** dSprites places a sprite on a $32\times32$ grid of $(x, y)$ positions filling a
# square. Suppose two latents encode the position linearly, $c = R(\theta)\,(x, y)^\top$ after centring
# and scaling to unit variance. Which rotation $\theta$ does a prior prefer? We score an orientation by
# the mean log-density of the 1024 codes, $\frac{1}{1024}\sum_k \log p(R(\theta) x_k)$. The normaliser
# does not depend on $\theta$, so only the energy $\sum_j |c_j|^p / s$ matters; it is homogeneous of
# degree $p$ in the codes, so *which* angle wins does not depend on how the square is scaled.

# %% tags=["hide-input"]
points = dsprites_positions(32)
thetas = torch.linspace(0.0, math.pi / 2, n_angles, dtype=torch.float64)
shown = {"Laplace, p=1 (leptokurtic)": PGeneralizedNormal(1.0, 2),
         "p=4 (platykurtic)": PGeneralizedNormal(4.0, 2)}
curves = {"p=1 (Laplace)": PGeneralizedNormal(1.0, 2), "p=1.5": PGeneralizedNormal(1.5, 2),
          "p=2 (normal)": PGeneralizedNormal(2.0, 2), "p=2.2 (paper's p_i)": PGeneralizedNormal(2.2, 2),
          "p=4": PGeneralizedNormal(4.0, 2)}
fig = plot_fig3(shown, points, thetas, curve_priors=curves, n_grid=density_grid,
                title=f"Fig. 3: position codes of the {len(points)} dSprites (x, y) positions under 2-D priors "
                      f"({label}, {n_angles} angles)")

# %% [markdown]
# The grey contours are the prior's log-density; the dots are the codes, coloured blue to red by the
# sprite's $x$ position (the paper's colour coding). The table quantifies the curves on the right:

# %% tags=["hide-input"]
summary = orientation_summary(curves, points, thetas)
print(f"{'prior':22s} {'E log p at 0°':>14s} {'at 45°':>9s} {'45° - 0°':>9s} {'best angle':>11s}")
for row in summary:
    print(f"{row['prior']:22s} {row['at_0deg']:14.4f} {row['at_45deg']:9.4f} {row['diag_minus_axis']:9.4f} "
          f"{row['best_deg']:10.1f}°")

# %% [markdown]
# This confirms the paper's reading of Fig. 3, and measures it:
#
# * the **leptokurtic** Laplace prior prefers the **diagonal** code ($\theta = 45°$): the $L_1$ energy of a
#   uniform square, $\mathbb E(|u|+|v|)$, is smaller after a 45° rotation ($\sqrt2 \cdot \tfrac23 a$ versus
#   $a$ for the square $[-a,a]^2$), because the diamond-shaped contours fit a rotated square;
# * every **platykurtic** prior ($p>2$) prefers the **axis-aligned** code ($\theta = 0°$): rotated, the
#   corners of the square reach out to radius $\sqrt2 a$ where $|c|^p$ explodes; the effect grows quickly
#   with $p$;
# * $p = 2$ is flat: the normal prior has no preferred orientation at all. The paper's subspace exponent
#   $p_i = 2.2$ is only mildly platykurtic, so its preference for the axis-aligned code is small per code
#   (see the table), but it is summed over every data point of every batch.
#
# Note that the Laplace preference for the diagonal is much weaker than the platykurtic preference for the
# axes at comparable distance from $p = 2$.

# %% [markdown]
# ## 2. Lp-nested functions (Eq. 6) and their trees
#
# An Lp-nested function is a cascade of $L_p$ norms. The paper's example (Eq. 6) is
#
# $$f(z) = \Big(|z_1|^{p_0} + \big(|z_2|^{p_1} + |z_3|^{p_1}\big)^{p_0/p_1}\Big)^{1/p_0}.$$
#
# It is a tree (Fig. 4a): each inner node $i$ computes the $L_{p_i}$ norm of its children's values; the
# leaves are the coordinates. In `isa_lib` a tree is written as nested `(p, [children])` pairs, a child
# being either a number of leaves or another pair; Eq. 6 is `(p0, [1, (p1, [2])])`. The value is computed
# in log space, $\log f_i = \tfrac{1}{p_i}\,\mathrm{logsumexp}_k\big(p_i \log v_k\big)$, so that neither
# $|z|^{p}$ overflows for large exponents nor $\log 0$ breaks at $z = 0$.

# %% tags=["hide-input"]
tree6 = LpTree(eq6_tree(2.0, 1.0))
tree_isa = LpTree(isa_tree(2.1, [4, 3, 3], [2.2, 1.9, 2.5]))
print(tree6)
print(tree_isa)
fig = plot_trees([tree6, tree_isa], ["(a) Eq. 6 with p0=2, p1=1", "(b) an ISA layout (Eq. 9), sizes [4, 3, 3]"],
                 title=f"Fig. 4: trees of Lp-nested functions, drawn from the tree objects ({label})")

# %% [markdown]
# **Fig. 2 of the paper** shows iso-contours of Eq. 6 for $p_0, p_1 \in \{1, 2, 9\}$. As $f$ is a function of
# three variables its iso-contours are surfaces, and since $f$ is 1-homogeneous every level set is a scaled
# copy of the unit sphere $f(z)=1$. We therefore draw the unit spheres in 3-D (vertical axis $z_1$): the
# horizontal cross-sections are $L_{p_1}$ circles in $(z_2, z_3)$, the vertical profile is an $L_{p_0}$
# circle in $(z_1, \|(z_2,z_3)\|_{p_1})$. $p_0 = p_1$ gives the plain $L_p$ balls (octahedron, sphere,
# rounded cube) on the diagonal.

# %% tags=["hide-input"]
fig = plot_eq6_unit_spheres((1.0, 2.0, 9.0), n_a=sphere_resolution, n_t=2 * sphere_resolution,
                            title=f"Fig. 2: unit spheres f(z)=1 of Eq. 6, rows p0, columns p1 ({label})")

# %% [markdown]
# The same function as flat contour plots: the slice $z_3 = 0.5$ through the 3-D function, contours of
# $f(z_1, z_2, 0.5)$ at levels $0.6, 1, 1.5, 2$. (A slice at $z_3 = 0$ would hide $p_1$ entirely: there
# $f = \|(z_1, z_2)\|_{p_0}$.) Level $0.6$ only exists near $z_2 = 0$ because $f \ge \|(z_2, 0.5)\|_{p_1}
# \ge 0.5$.

# %% tags=["hide-input"]
fig = plot_eq6_slice_contours((1.0, 2.0, 9.0), z3=0.5, n_grid=slice_grid,
                              title=f"Fig. 2 (slices): contours of f(z1, z2, z3=0.5) of Eq. 6 ({label}, "
                                    f"{slice_grid}x{slice_grid} grid)")

# %% [markdown]
# ## 3. The Lp-nested symmetric distribution (Eq. 7, 8, 11)
#
# A density that depends on $z$ only through $f(z)$ is written with a radial density $g_0$ (Eq. 7)
#
# $$\rho(z) = \frac{g_0\big(f(z)\big)}{\mathcal S_f\big(f(z)\big)}, \qquad
# \mathcal S_f(R) = R^{n-1}\,\mathcal S_f(1),$$
#
# where $\mathcal S_f(1)$ is the surface area of the unit sphere (Eq. 8): a product over the inner nodes $i$,
# with $l_i$ children holding $n_{i,k}$ leaves each and $n_i$ leaves in total,
#
# $$\mathcal S_f(1) = 2^n \prod_{i} \frac{\prod_{k=1}^{l_i}\Gamma\!\left(n_{i,k}/p_i\right)}
# {p_i^{\,l_i-1}\,\Gamma\!\left(n_i/p_i\right)}.$$
#
# The radial density that makes the subspaces of an ISA tree independent (Eq. 11, here with scale $s$) is
#
# $$g_0(v) = \frac{p_0\, v^{n-1}}{s^{n/p_0}\,\Gamma(n/p_0)} \exp\!\left(-\frac{v^{p_0}}{s}\right),
# \quad\text{i.e.}\quad f(z)^{p_0}/s \sim \mathrm{Gamma}(n/p_0, 1),$$
#
# which gives the log-density used by `LpNested.log_prob`:
#
# $$\log\rho(z) = \log p_0 - \log\Gamma(n/p_0) - \tfrac{n}{p_0}\log s - \frac{f(z)^{p_0}}{s} - \log\mathcal S_f(1).$$
#
# With every exponent equal to 2 this is the $\chi$ radial law and, with $s=2$, exactly $\mathcal N(0, I)$.
# Both claims are checked here (the test-suite checks many more trees): the density integrates to one by
# quadrature, for exponents below 1, equal to 1 and 2, and above 2. (Deviations in the 5th digit are
# quadrature error: $p_0 = 9$ puts a near-kink into the integrand along $|z_1| = \|(z_2,z_3)\|_{p_1}$.)

# %% tags=["hide-input"]
checks = {"(0.7, [1, (3.5, [2])])": LpNested(eq6_tree(0.7, 3.5)),
          "(9, [1, (1, [2])])": LpNested(eq6_tree(9.0, 1.0)),
          "(2, [1, (0.7, [1, (3, [1])])])": LpNested((2.0, [1, (0.7, [1, (3.0, [1])])])),
          "ISA(2.1, [2, 1], [2.2, 1])": ISA(2.1, [2, 1], [2.2, 1.0])}
for name, dist in checks.items():
    print(f"integral of rho for tree {name:32s} = {total_mass(dist, n_points=mass_quad_points):.6f}")
z = torch.randn(5, 3, dtype=torch.float64)
gap = (LpNested(eq6_tree(2.0, 2.0)).log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))
print("max |log rho - log N(0, I)| with all exponents 2:", float(gap.abs().max()))

# %% [markdown]
# ## 4. The ISA prior (Eq. 9, 10)
#
# ISA trees have depth two (Fig. 4b): the root with exponent $p_0$ has one child per subspace $V_i$ of
# $n_i$ coordinates, each an $L_{p_i}$ norm,
#
# $$f(z) = \Bigg(\sum_{i=1}^{l_0} \Big(\sum_{j \in V_i} |z_j|^{p_i}\Big)^{p_0/p_i}\Bigg)^{1/p_0}.$$
#
# With the radial law of Eq. 11, $f^{p_0} = \sum_i v_i^{p_0}$ where $v_i = \|z_{V_i}\|_{p_i}$, so the density
# factorises over subspaces: **the subspaces are independent**, while coordinates *within* a subspace
# share the radius $v_i$ and are dependent unless $p_i = p_0$. `ISA(p0, sizes, exponents)` builds it. The
# paper uses $p_0 = 2.1$, five subspaces of four with $p_i = 2.2$ for dSprites.
#
# We sample a prior with clearly different exponents and measure both statements: correlations of the
# subspace radii (should vanish), and correlations of $|z_j|$ (zero across subspaces, positive within).

# %% tags=["hide-input"]
torch.manual_seed(seed)
isa = ISA(1.0, [2, 2, 3], [2.0, 2.0, 3.0])
x_isa = isa.sample((n_indep_samples,))
np.set_printoptions(precision=3, suppress=True)
print(f"{isa}, {n_indep_samples} samples ({label})")
print("correlation of the subspace radii ||z_Vi||_pi:\n", subspace_radius_correlations(isa, x_isa))
print("correlation of |z_j| (blocks 2, 2, 3):\n", abs_correlations(x_isa))
print("correlation of z_j itself (all ~0, symmetry):", float(np.abs(np.corrcoef(x_isa.double().numpy().T)
                                                              - np.eye(7)).max()))

# %% [markdown]
# The radii are uncorrelated (differences from 0 are sampling noise of order $1/\sqrt{N}$), the magnitudes
# within each diagonal block are clearly correlated, across blocks they are not: an ISA prior leaves the
# rotation *inside* a subspace partly free (fully free when $p_i = 2$) while pinning down the subspaces.

# %% [markdown]
# ## 5. Exact sampling (Alg. 1)
#
# The sampler of Sinz & Bethge (paper App. A.1): draw the radius from $g_0$ (i.e.
# $f^{p_0}/s \sim \mathrm{Gamma}(n/p_0,1)$); at each inner node draw $s_i \sim
# \mathrm{Dir}(n_{i,1}/p_i, \dots, n_{i,l_i}/p_i)$ and set $u_i = s_i^{1/p_i}$, a point on that node's unit
# sphere in the positive orthant; multiply down the tree; attach random signs. (Steps 1 and 4 of Alg. 1,
# a uniform radius and its normalisation, cancel.) It uses torch's global RNG, so `torch.manual_seed` makes
# it reproducible. We compare samples of a nested tree with a leptokurtic inner node against the density:
# the radial law, and the 1-D marginals obtained by integrating Eq. 7 numerically over the other two
# coordinates.

# %% tags=["hide-input"]
torch.manual_seed(seed)
nested = LpNested(eq6_tree(1.5, 0.8))
x_nested = nested.sample((n_samples,))
fig = plot_radial_check(nested, x_nested,
                        title=f"Radial law of Eq. 11 for tree (1.5, [1, (0.8, [2])]): {n_samples} samples ({label})")

# %% tags=["hide-input"]
fig = plot_marginal_check(nested, x_nested, n_grid=marginal_grid, n_points=quad_points,
                          title=f"1-D marginals: Alg. 1 samples vs numerically integrated Eq. 7 "
                                f"({n_samples} samples, {label})")

# %% [markdown]
# The KS p-values in the legends are those of a correct sampler: uniform on $[0,1]$ across seeds, and
# not systematically small. The marginal of $z_1$ (child of the $p_0=1.5$ root) is rounder than those
# of $z_2, z_3$, which sit under the leptokurtic $p_1 = 0.8$ node and are sharply peaked.

# %% [markdown]
# ## 6. Explore the exponents
#
# Set $p_0$ and $p_1$ of Eq. 6 with the sliders and press **Draw**: the contours are the 2-D marginal
# log-densities of $(z_1, z_2)$ and $(z_2, z_3)$ (the third coordinate integrated numerically), the dots
# are fresh samples. Small $p_1$ makes $(z_2, z_3)$ star-shaped, large $p_1$ square; for large $p_0$,
# $f \approx \max(|z_1|, \|(z_2, z_3)\|_{p_1})$ and the $(z_1, z_2)$ contours turn square. The widget needs a live kernel;
# below it is a static rendering for the book. (The explorer draws on demand rather than when it is
# created: drawing during headless execution intermittently stalls the notebook executor, cf.
# jupyter/nbclient#312.)

# %% tags=["hide-input"]
explorer = widgets.interactive(
    explore_exponents, {"manual": True, "manual_name": "Draw"},
    p0=widgets.FloatSlider(value=2.0, min=0.3, max=10.0, step=0.1, description="p0"),
    p1=widgets.FloatSlider(value=0.8, min=0.3, max=10.0, step=0.1, description="p1"),
    n_samples=widgets.fixed(widget_samples), seed=widgets.fixed(seed), n_grid=widgets.fixed(widget_grid),
    scale_label=widgets.fixed(label), show=widgets.fixed(True))
display(explorer)

# %% tags=["hide-input"]
fig = explore_exponents(p0=1.0, p1=4.0, n_samples=widget_samples, seed=seed, n_grid=widget_grid,
                        scale_label=label, show=False)

# %% [markdown]
# ## Summary
#
# * `LpNested(tree)` is the Lp-nested symmetric distribution of Eq. 7 with the radial law of Eq. 11;
#   `ISA(p0, sizes, exponents)` the ISA prior of Eq. 9-10; `PGeneralizedNormal(p, n)` the ICA prior of
#   Eq. 5. All compute in log space, accept learnable exponents, and sample exactly (Alg. 1).
# * The density integrates to one and all-2 exponents recover $\mathcal N(0, I)$ (with $s = 2$).
# * Leptokurtic priors prefer diagonal position codes, platykurtic ones axis-aligned codes (Fig. 3), which
#   is why the paper picks $p_i = 2.2 > 2$ for dSprites.
# * ISA subspaces are independent; coordinates inside a subspace are not, which is what lets the prior
#   tolerate the within-subspace rotations while fixing the subspaces.

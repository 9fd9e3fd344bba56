"""What the Lp-nested chapter studies about its priors, beyond the distributions themselves:
numerical marginals and normalisation by quadrature and the surface area of Eq. 8 by Monte Carlo (checks of
Eq. 7-8 and of the sampler, Alg. 1; used by chapter 03 and the appendix "Equations"), the
orientation a prior prefers for a 2-D position code (Fig. 3), the dependence inside and the independence
between ISA subspaces (Eq. 9-11), and the unit sphere of Eq. 6 (Fig. 2)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch.distributions import Distribution

from .lpnested import ISA, LpNested, LpTree, log_lp_nested_norm

__all__ = [
    "orthant_quadrature",
    "total_mass",
    "log_surface_area_monte_carlo",
    "marginal_density",
    "marginal_cdf_1d",
    "dsprites_positions",
    "rotate",
    "expected_log_density_vs_angle",
    "orientation_summary",
    "abs_correlations",
    "subspace_radius_correlations",
    "eq6_unit_sphere",
]


# --------------------------------------------------------------------------------------------------
# Numerical integration (checks of Eq. 7-8 and marginals for the sampler comparisons)
# --------------------------------------------------------------------------------------------------
def orthant_quadrature(n_points: int = 200, power: float = 2.0, dtype=torch.float64):
    """Nodes and weights for integrals over [0, inf): z = (u / (1 - u))^power with Gauss-Legendre in u.

    The power smooths the cusp of |z|^p at 0 for p < 1; the map sends the tails to u -> 1.
    """
    u, w = np.polynomial.legendre.leggauss(n_points)
    u = 0.5 * (u + 1.0)
    w = 0.5 * w
    t = u / (1.0 - u)
    z = t ** power
    dz = power * t ** (power - 1.0) / (1.0 - u) ** 2
    return torch.as_tensor(z, dtype=dtype), torch.as_tensor(w * dz, dtype=dtype)


def _grid(nodes: torch.Tensor, weights: torch.Tensor, k: int):
    if k == 0:
        return nodes.new_zeros((1, 0)), weights.new_ones(1)
    zs = torch.cartesian_prod(*([nodes] * k)).reshape(-1, k)
    ws = torch.cartesian_prod(*([weights] * k)).reshape(-1, k).prod(-1)
    return zs, ws


def total_mass(dist: LpNested, n_points: int = 200, power: float = 2.0) -> float:
    """∫ rho(z) dz by tensor-product quadrature over the positive orthant times 2^n (rho is sign
    symmetric).  Intended for n <= 3 (n_points^n evaluations)."""
    n = dist.event_shape[0]
    nodes, weights = orthant_quadrature(n_points, power)
    zs, ws = _grid(nodes, weights, n)
    with torch.no_grad():
        total = 0.0
        for a in range(0, zs.shape[0], 1 << 20):
            total += float((ws[a:a + (1 << 20)] * dist.log_prob(zs[a:a + (1 << 20)]).exp()).sum())
    return (2.0 ** n) * total


def log_surface_area_monte_carlo(tree, n_samples: int = 100_000, seed: int = 0) -> tuple[float, float]:
    """log S_f(1) of Eq. 8 estimated without Eq. 8, and its standard error (appendix "Equations").

    The volume of the unit ball scales as V_f(R) = R^n V_f(1) (f is 1-homogeneous), and the surface area of
    Eq. 7-8 is its derivative, S_f(1) = n V_f(1). Every |z_j| <= f(z), so the ball lies in the cube [-1, 1]^n:
    V_f(1) is 2^n times the fraction of ``n_samples`` uniform points of the cube (seeded) with f(z) <= 1.
    """
    tree = tree if isinstance(tree, LpTree) else LpTree(tree)
    gen = torch.Generator().manual_seed(int(seed))
    z = 2.0 * torch.rand((int(n_samples), tree.n), generator=gen, dtype=torch.float64) - 1.0
    with torch.no_grad():
        frac = float((log_lp_nested_norm(z, tree) <= 0).double().mean())
    if frac == 0.0:
        raise ValueError(f"no point of {n_samples} fell inside the unit ball of {tree}; draw more")
    se = math.sqrt((1.0 - frac) / (frac * int(n_samples)))   # delta method: sd(log frac)
    return math.log(tree.n) + tree.n * math.log(2.0) + math.log(frac), se


def marginal_density(dist: LpNested, dims: Sequence[int], values, n_points: int = 120,
                     power: float = 2.0) -> torch.Tensor:
    """Marginal density of coordinates ``dims`` at ``values`` (shape (m, len(dims))), integrating the other
    coordinates numerically (sign symmetry, orthant quadrature).  Intended for n - len(dims) <= 2."""
    n = dist.event_shape[0]
    dims = list(dims)
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1, len(dims))
    rest = [j for j in range(n) if j not in dims]
    nodes, weights = orthant_quadrature(n_points, power)
    zr, wr = _grid(nodes, weights, len(rest))
    out = torch.empty(values.shape[0], dtype=torch.float64)
    chunk = max(1, (1 << 20) // max(1, zr.shape[0]))
    with torch.no_grad():
        for a in range(0, values.shape[0], chunk):
            v = values[a:a + chunk]
            z = torch.empty(v.shape[0], zr.shape[0], n, dtype=torch.float64)
            z[..., dims] = v[:, None, :]
            z[..., rest] = zr[None]
            out[a:a + chunk] = (dist.log_prob(z).exp() * wr).sum(-1) * 2.0 ** len(rest)
    return out


def marginal_cdf_1d(dist: LpNested, dim: int, half_width: float, n_grid: int = 801, n_points: int = 120):
    """(grid, density, cdf) of the 1-D marginal of coordinate ``dim`` on [-half_width, half_width].

    The cdf integrates the numerical density with the trapezoid rule and adds the (symmetric) tail mass
    outside the grid so that it runs from tail to 1 - tail.
    """
    x = torch.linspace(-half_width, half_width, n_grid, dtype=torch.float64)
    dens = marginal_density(dist, [dim], x[:, None], n_points=n_points)
    inc = 0.5 * (dens[1:] + dens[:-1]) * (x[1:] - x[:-1])
    inside = float(inc.sum())
    tail = max(0.0, (1.0 - inside) / 2.0)
    cdf = torch.cat([x.new_zeros(1), torch.cumsum(inc, 0)]) + tail
    return x.numpy(), dens.numpy(), cdf.numpy()


# --------------------------------------------------------------------------------------------------
# Fig. 3: dSprites (x, y) positions under rotated 2-D codes
# --------------------------------------------------------------------------------------------------
def dsprites_positions(n_grid: int = 32, standardise: bool = True) -> torch.Tensor:
    """The dSprites (x, y) positions: an ``n_grid`` x ``n_grid`` grid over the unit square, shape
    (n_grid^2, 2).  With ``standardise`` centred and scaled to unit variance per axis (the variance of
    the N(0, 1) prior that the all-2 tree with s = 2 gives)."""
    g = torch.linspace(0.0, 1.0, n_grid, dtype=torch.float64)
    xy = torch.cartesian_prod(g, g)
    if standardise:
        xy = (xy - xy.mean(0)) / xy.std(0, unbiased=False)
    return xy


def rotate(points: torch.Tensor, theta) -> torch.Tensor:
    """Rotate 2-D points (..., 2) by angle(s) ``theta`` (radians); theta of shape (k,) gives (k, ..., 2)."""
    points = torch.as_tensor(points)
    th = torch.as_tensor(theta, dtype=points.dtype)
    c, s = torch.cos(th), torch.sin(th)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (..., 2, 2)
    if th.ndim == 0:
        return points @ rot.transpose(-1, -2)
    return torch.einsum("kij,...j->k...i", rot, points)


def expected_log_density_vs_angle(prior: Distribution, points: torch.Tensor, thetas) -> torch.Tensor:
    """Mean log-density of the 2-D codes ``R(theta) @ points`` under ``prior`` for each theta (Fig. 3).

    A higher value means the prior prefers that orientation of the position code.
    """
    thetas = torch.as_tensor(thetas, dtype=torch.float64)
    with torch.no_grad():
        return prior.log_prob(rotate(points, thetas)).mean(-1)


def orientation_summary(priors: dict, points: torch.Tensor, thetas) -> list[dict]:
    """Per prior: mean log-density of the codes at 0° and 45°, the best angle on ``thetas`` and the
    gain of the best angle over 0° (nats per code), for Fig. 3."""
    thetas = torch.as_tensor(thetas, dtype=torch.float64)
    rows = []
    for name, prior in priors.items():
        v = expected_log_density_vs_angle(prior, points, thetas)
        at = expected_log_density_vs_angle(prior, points, torch.tensor([0.0, math.pi / 4]))
        k = int(torch.argmax(v))
        rows.append(dict(prior=name, at_0deg=float(at[0]), at_45deg=float(at[1]),
                         best_deg=float(thetas[k]) * 180.0 / math.pi,
                         best_minus_0deg=float(v[k] - at[0]), diag_minus_axis=float(at[1] - at[0])))
    return rows


# --------------------------------------------------------------------------------------------------
# ISA independence structure (Eq. 9-11)
# --------------------------------------------------------------------------------------------------
def abs_correlations(samples: torch.Tensor) -> np.ndarray:
    """Correlation matrix of |z_j|: zero for independent symmetric coordinates; coordinates that share a
    subspace radius are positively correlated in magnitude even though z_j themselves are uncorrelated."""
    return np.corrcoef(samples.abs().double().numpy().T)


def subspace_radius_correlations(dist: "ISA", samples: torch.Tensor) -> np.ndarray:
    """Correlation matrix of the subspace radii ||z_{V_i}||_{p_i}: ~0 under the radial law of Eq. 11."""
    return np.corrcoef(dist.subspace_log_norms(samples).exp().double().numpy().T)


# --------------------------------------------------------------------------------------------------
# Fig. 2: the unit sphere of Eq. 6
# --------------------------------------------------------------------------------------------------
def _signed_pow(x, e):
    return np.sign(x) * np.abs(x) ** e


def eq6_unit_sphere(p0: float, p1: float, n_a: int = 60, n_t: int = 80):
    """(X, Y, Z) = (z1, z2, z3) on the surface f(z) = 1 of Eq. 6, as (n_a, n_t) arrays.

    Uses |cos|^(2/p) parametrisations: z1 = sgn(cos a)|cos a|^(2/p0), r = |sin a|^(2/p0) with
    |z1|^p0 + r^p0 = 1, and (z2, z3) = r * (sgn(cos t)|cos t|^(2/p1), sgn(sin t)|sin t|^(2/p1)).
    """
    a = np.linspace(0.0, np.pi, n_a)[:, None]
    t = np.linspace(0.0, 2.0 * np.pi, n_t)[None, :]
    z1 = _signed_pow(np.cos(a), 2.0 / p0) * np.ones_like(t)
    r = np.abs(np.sin(a)) ** (2.0 / p0)
    z2 = r * _signed_pow(np.cos(t), 2.0 / p1)
    z3 = r * _signed_pow(np.sin(t), 2.0 / p1)
    return z1, z2, z3

"""Unsupervised scores of a code (no factors needed), as in disentanglement_lib's unsupervised metrics
(Locatello et al. 2019, Sec. 5 and Appendix): Gaussian total correlation, Gaussian Wasserstein correlation
and the mean pairwise mutual information of the binned latents."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ._inputs import _as_codes, _subsample
from ._binned import _binned_codes, _binned_mi


def _covariance(codes, n_points, seed) -> np.ndarray:
    c = _as_codes(codes)
    if c.shape[0] < 2 or c.shape[1] < 2:
        raise ValueError(f"need at least two rows and two latents, got codes of shape {c.shape}")
    c = c[_subsample(c.shape[0], n_points, seed)]
    return np.atleast_2d(np.cov(c, rowvar=False))          # ddof=1, as numpy's (and disentanglement_lib's)


def gaussian_total_correlation(codes, n_points: int | None = None, seed: int = 0) -> float:
    """Total correlation of the Gaussian fitted to the codes, KL(N(0, S) || N(0, diag S)) =
    1/2 (sum_j log S_jj - log det S) in nats (Locatello et al. 2019's "gaussian_total_correlation";
    Watanabe 1960's total correlation of a Gaussian).  0 for uncorrelated latents, -1/2 log(1 - rho^2)
    for two latents of correlation rho, infinite for linearly dependent latents (singular S).
    Constant latents (zero variance) are independent of the rest and are left out."""
    s = _covariance(codes, n_points, seed)
    keep = np.diag(s) > 0
    s = s[np.ix_(keep, keep)]
    if s.shape[0] < 2:
        return 0.0
    sign, logdet = np.linalg.slogdet(s)
    if sign <= 0:
        return float("inf")
    return float(max(0.5 * (np.sum(np.log(np.diag(s))) - logdet), 0.0))


def gaussian_wasserstein_correlation(codes, normalise: bool = False, n_points: int | None = None,
                                     seed: int = 0) -> float:
    """Squared 2-Wasserstein distance between the Gaussian fitted to the codes and the product of its
    marginals, 2 tr S - 2 tr (S diag(S))^(1/2) (Locatello et al. 2019's "gaussian_wasserstein_correlation";
    the Gaussian W2 distance of Dowson & Landau 1982); ``normalise``
    divides by tr S (their "_norm" variant).  0 for uncorrelated latents."""
    s = _covariance(codes, n_points, seed)
    tr = float(np.trace(s))
    if tr == 0:
        # a fully collapsed code (every latent constant) has no correlation to measure: 0, like the other scores
        return 0.0
    root = scipy.linalg.sqrtm(s * np.diag(s)[:, None])
    w = float(2 * tr - 2 * np.real(np.trace(root)))
    return w / tr if normalise else w


def mutual_info_score(codes, n_bins: int = 20, n_points: int | None = None, seed: int = 0) -> float:
    """Mean mutual information (nats) between pairs of distinct latents, each cut into ``n_bins``
    equal-width bins: sum_{i != j} I(z_i; z_j) / (D^2 - D) (Locatello et al. 2019's "mutual_info_score",
    the mutual-information score of their unsupervised metrics).  0 for independent latents (up to the
    plug-in estimator's positive bias, about (n_bins - 1)^2 / (2N)); log n_bins at most."""
    c = _as_codes(codes)
    if c.shape[1] < 2:
        raise ValueError(f"the mutual-information score needs at least two latents, got {c.shape[1]}")
    c = c[_subsample(c.shape[0], n_points, seed)]
    b = _binned_codes(c, n_bins)
    d = c.shape[1]
    m = _binned_mi(b, b)
    np.fill_diagonal(m, 0.0)
    return float(m.sum() / (d * d - d))


def unsupervised_scores(codes, n_bins: int = 20, n_points: int | None = None, seed: int = 0) -> dict:
    """All four unsupervised scores of disentanglement_lib (Locatello et al. 2019) on the same rows."""
    rows = _subsample(_as_codes(codes).shape[0], n_points, seed)
    c = _as_codes(codes)[rows]
    return {"gaussian_total_correlation": gaussian_total_correlation(c),
            "gaussian_wasserstein_correlation": gaussian_wasserstein_correlation(c),
            "gaussian_wasserstein_correlation_norm": gaussian_wasserstein_correlation(c, normalise=True),
            "mutual_info_score": mutual_info_score(c, n_bins=n_bins)}

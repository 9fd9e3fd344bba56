"""Biases of (beta-)variational inference in factor analysis, in closed form (paper App. B.1-B.6).

Model (App. B.2, Eq. 14), for n = 1..N::

    z_n ~ N(0, I_K),    x_n ~ N(W z_n, D),    D = diag(noise_var).

Everything here is computed from the sufficient statistics of the data (mean, covariance, N), because
both the log-likelihood and the free energy with the optimal mean-field posterior are quadratic forms in
the data. The model has zero mean, so the data enter through the second moment S = Sigma_x + mu_x mu_x^T.

The beta-free energy (App. B.1, Eq. 2) of a factorised Gaussian q(z_n) = N(R x_n, diag(q_var)) is::

    F_beta = sum_n E_q[log p(x_n | z_n)] - beta * sum_n KL(q(z_n) || p(z_n)).

Derivation of the optimal q (re-derived here; the OCR of App. B.2 is partly garbled). Write M = 1 / beta.
F_beta = beta * sum_n (E_q[M log p(x_n | z_n)] - KL(q || p)), so q maximises an ordinary free energy of a
model whose likelihood is raised to the power M (App. B.1, "M replicated observations"). That tempered
posterior is Gaussian with precision Lambda(beta) = M W^T D^-1 W + I and mean R(beta) x_n with recognition
weights R(beta) = Lambda^-1 M W^T D^-1 (App. B.2). The best fully factorised Gaussian approximation of a
Gaussian (in KL(q || p)) has the same mean and the diagonal of its precision, so q_var = 1 / diag(Lambda).
R and q_var do not depend on n (App. B.2).

Plugging in, with S the second moment of the data (App. B.2, Eq. 16 and the KL that follows it)::

    reconstruction = -N/2 [ log det(2 pi D) + tr(D^-1 (I - W R) S (I - W R)^T) + tr(W^T D^-1 W diag(q_var)) ]
    KL             =  N/2 [ tr(diag(q_var)) + tr(R^T R S) - K - log det(diag(q_var)) ]

(the paper's "(Sigma_x + M I)" in Eq. 16 is an OCR garble of Sigma_x + mu_x mu_x^T). One more identity
is useful to read the experiments: because p(z) is rotation invariant,
F_beta = beta log Z_M - beta KL(q || p_M(z | x)), where Z_M = integral of p(x|z)^M p(z) dz does not change
when the latents are rotated. So along a latent rotation the free energy moves only through the
KL between q and the tempered posterior (tested in tests/test_factor_analysis.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


class SuffStats(NamedTuple):
    """Sufficient statistics of a data set (App. B.2): empirical mean, covariance (1/N) and size N."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


# ----------------------------------------------------------------------------------------------- checks


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    return beta


def _check_model(weights, noise_var):
    W = np.asarray(weights, dtype=float)
    if W.ndim != 2:
        raise ValueError(f"weights W must be a 2-D array (data dim x latent dim), got shape {W.shape}")
    d = W.shape[0]
    nv = np.asarray(noise_var, dtype=float)
    if nv.ndim == 0:
        nv = np.full(d, float(nv))
    if nv.shape != (d,):
        raise ValueError(f"noise_var must be a scalar or have shape ({d},) to match W {W.shape}, got {nv.shape}")
    if np.any(nv <= 0):
        raise ValueError("noise_var must be > 0")
    return W, nv


def _check_stats(stats: SuffStats, d: int) -> SuffStats:
    mean = np.asarray(stats.mean, dtype=float)
    cov = np.asarray(stats.cov, dtype=float)
    if mean.shape != (d,):
        raise ValueError(f"stats.mean must have shape ({d},) to match W, got {mean.shape}")
    if cov.shape != (d, d):
        raise ValueError(f"stats.cov must have shape ({d}, {d}) to match W, got {cov.shape}")
    if int(stats.n) < 1:
        raise ValueError(f"stats.n must be >= 1, got {stats.n}")
    return SuffStats(mean, cov, int(stats.n))


def _second_moment(stats: SuffStats) -> np.ndarray:
    return stats.cov + np.outer(stats.mean, stats.mean)


# ------------------------------------------------------------------------------------------------- data


def sufficient_statistics(x) -> SuffStats:
    """Mean, (1/N) covariance and N of data x of shape (N, D) (App. B.2)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"data x must have shape (N, D), got {x.shape}")
    mean = x.mean(axis=0)
    xc = x - mean
    return SuffStats(mean, xc.T @ xc / x.shape[0], x.shape[0])


def sample_gaussian_data(n: int, cov, seed: int = 0) -> np.ndarray:
    """N zero-mean Gaussian points with covariance cov, from an explicit seed."""
    cov = np.asarray(cov, dtype=float)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be square, got shape {cov.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal(np.zeros(cov.shape[0]), cov, size=n)


def anisotropic_cov(std_major: float, std_minor: float, angle: float) -> np.ndarray:
    """2-D covariance with principal standard deviations (major, minor), major axis at `angle` radians."""
    U = rotation_matrix(angle)
    return U @ np.diag([std_major**2, std_minor**2]) @ U.T


# ------------------------------------------------------------------------------------------------ model


def log_likelihood(weights, noise_var, stats: SuffStats) -> float:
    """sum_n log N(x_n; 0, W W^T + D) from the sufficient statistics (App. B.2)."""
    W, nv = _check_model(weights, noise_var)
    stats = _check_stats(stats, W.shape[0])
    C = W @ W.T + np.diag(nv)
    _, logdet = np.linalg.slogdet(C)
    d = W.shape[0]
    return float(-0.5 * stats.n * (d * LOG_2PI + logdet + np.trace(np.linalg.solve(C, _second_moment(stats)))))


def tempered_posterior(weights, noise_var, beta: float = 1.0):
    """Exact posterior of the beta-modified model (App. B.2): returns (R(beta), Sigma_{z|x}(beta)).

    Precision M W^T D^-1 W + I with M = 1/beta; mean R(beta) x. Same for every data point.
    """
    W, nv = _check_model(weights, noise_var)
    m = 1.0 / _check_beta(beta)
    WtDinv = W.T / nv
    cov = np.linalg.inv(m * WtDinv @ W + np.eye(W.shape[1]))
    return cov @ (m * WtDinv), cov


def mean_field_posterior(weights, noise_var, beta: float = 1.0):
    """Optimal factorised Gaussian q for the beta-free energy (App. B.2): returns (R(beta), q_var).

    Same mean as the tempered posterior, variances 1 / diag(precision).
    """
    W, nv = _check_model(weights, noise_var)
    m = 1.0 / _check_beta(beta)
    WtDinv = W.T / nv
    prec = m * WtDinv @ W + np.eye(W.shape[1])
    R = np.linalg.solve(prec, m * WtDinv)
    return R, 1.0 / np.diag(prec)


def free_energy_terms(weights, noise_var, stats: SuffStats, beta: float = 1.0, recognition=None, q_var=None):
    """Reconstruction, KL and beta-free energy = reconstruction - beta * KL (App. B.2, Eq. 16).

    q(z_n) = N(R x_n, diag(q_var)); by default the optimal mean-field q for this beta.
    Returns a dict with floats 'reconstruction', 'kl', 'free_energy'.
    """
    W, nv = _check_model(weights, noise_var)
    beta = _check_beta(beta)
    stats = _check_stats(stats, W.shape[0])
    d, k = W.shape
    if recognition is None or q_var is None:
        R_opt, qv_opt = mean_field_posterior(W, nv, beta)
        recognition = R_opt if recognition is None else recognition
        q_var = qv_opt if q_var is None else q_var
    R = np.asarray(recognition, dtype=float)
    qv = np.asarray(q_var, dtype=float)
    if R.shape != (k, d):
        raise ValueError(f"recognition weights must have shape ({k}, {d}), got {R.shape}")
    if qv.shape != (k,) or np.any(qv <= 0):
        raise ValueError(f"q_var must be positive with shape ({k},), got shape {qv.shape}")
    S = _second_moment(stats)
    resid = np.eye(d) - W @ R
    recon = -0.5 * stats.n * (
        np.sum(np.log(nv)) + d * LOG_2PI
        + np.trace((resid.T / nv) @ resid @ S)
        + np.sum(((W**2) / nv[:, None]).sum(axis=0) * qv)
    )
    kl = 0.5 * stats.n * (np.sum(qv) + np.trace(R.T @ R @ S) - k - np.sum(np.log(qv)))
    return {"reconstruction": float(recon), "kl": float(kl), "free_energy": float(recon - beta * kl)}


def free_energy(weights, noise_var, stats: SuffStats, beta: float = 1.0, recognition=None, q_var=None) -> float:
    """The beta-free energy (App. B.1-B.2); with the optimal mean-field q unless one is given."""
    return free_energy_terms(weights, noise_var, stats, beta, recognition, q_var)["free_energy"]


def free_energy_monte_carlo(weights, noise_var, x, beta: float = 1.0, recognition=None, q_var=None,
                            n_samples: int = 1000, seed: int = 0):
    """Monte Carlo estimate of the same bound, sum_n E_q[log p(x|z) - beta (log q(z) - log p(z))].

    Independent check of the closed form: returns (estimate, standard error).
    """
    W, nv = _check_model(weights, noise_var)
    beta = _check_beta(beta)
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ValueError(f"data x must have shape (N, {W.shape[0]}), got {x.shape}")
    R_opt, qv_opt = mean_field_posterior(W, nv, beta)
    R = R_opt if recognition is None else np.asarray(recognition, dtype=float)
    qv = qv_opt if q_var is None else np.asarray(q_var, dtype=float)
    rng = np.random.default_rng(seed)
    mu = x @ R.T                                             # (N, K)
    eps = rng.standard_normal((n_samples,) + mu.shape)
    z = mu + np.sqrt(qv) * eps                               # (S, N, K)
    resid = x - z @ W.T
    log_lik = -0.5 * (np.sum(resid**2 / nv, axis=-1) + np.sum(np.log(nv)) + W.shape[0] * LOG_2PI)
    log_q = -0.5 * np.sum(eps**2 + np.log(qv) + LOG_2PI, axis=-1)
    log_p = -0.5 * np.sum(z**2 + LOG_2PI, axis=-1)
    per_sample = np.sum(log_lik - beta * (log_q - log_p), axis=1)   # sum over data points
    return float(per_sample.mean()), float(per_sample.std(ddof=1) / np.sqrt(n_samples))


def kl_to_tempered_posterior(weights, noise_var, beta: float = 1.0) -> float:
    """KL(q || p_M(z|x)) per data point for the optimal mean-field q (App. B.3): the free-energy gap.

    For Gaussians with common mean this is 1/2 (sum_k log Lambda_kk - log det Lambda); zero iff
    W^T D^-1 W is diagonal, i.e. the posterior factorises.
    """
    W, nv = _check_model(weights, noise_var)
    m = 1.0 / _check_beta(beta)
    prec = m * (W.T / nv) @ W + np.eye(W.shape[1])
    return float(0.5 * (np.sum(np.log(np.diag(prec))) - np.linalg.slogdet(prec)[1]))


# ------------------------------------------------------------------------------------------ experiments


def rotation_matrix(theta: float) -> np.ndarray:
    """2x2 rotation by theta radians."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def ml_orthogonal_weights(stats: SuffStats, noise_var: float, n_latent: int | None = None) -> np.ndarray:
    """Maximum-likelihood W with orthogonal columns for isotropic noise (App. B.3): PCA directions.

    W = U_K (Lambda_K - noise_var I)^(1/2) from the eigendecomposition of the second moment S (the model
    has zero mean), the probabilistic-PCA solution at fixed noise (Tipping & Bishop 1999). Columns are
    sorted by decreasing length.
    """
    nv = float(noise_var)
    if nv <= 0:
        raise ValueError(f"noise_var must be > 0, got {noise_var}")
    S = _second_moment(stats)
    evals, evecs = np.linalg.eigh(S)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    k = S.shape[0] if n_latent is None else int(n_latent)
    if not 1 <= k <= S.shape[0]:
        raise ValueError(f"n_latent must be between 1 and {S.shape[0]}, got {n_latent}")
    if evals[k - 1] <= nv:
        raise ValueError(f"noise_var {nv} must be below the retained eigenvalues of the data ({evals[k-1]:.4g})")
    W = evecs[:, :k] * np.sqrt(evals[:k] - nv)
    # a deterministic sign makes figures reproducible
    return W * np.sign(W[np.argmax(np.abs(W), axis=0), np.arange(k)])


def rotate_latents(weights, theta: float) -> np.ndarray:
    """W R(theta): rotate the first two latent coordinates (App. B.3).

    W W^T, hence the likelihood, is unchanged; the columns are orthogonal only at multiples of pi/2 (when
    they have different lengths). The paper writes R(theta) W_ML; the rotation must act on the latent
    side for the likelihood to stay constant, as the paper states it does.
    """
    W = np.asarray(weights, dtype=float)
    if W.ndim != 2 or W.shape[1] < 2:
        raise ValueError(f"weights must have shape (D, K) with K >= 2, got {W.shape}")
    Rk = np.eye(W.shape[1])
    Rk[:2, :2] = rotation_matrix(theta)
    return W @ Rk


def rotation_sweep(w_ml, noise_var, stats: SuffStats, thetas, beta: float = 1.0) -> dict:
    """Experiment 1 (App. B.3): log-likelihood and beta-free energy of W_ML R(theta) for each theta."""
    thetas = np.asarray(thetas, dtype=float)
    ll = np.array([log_likelihood(rotate_latents(w_ml, t), noise_var, stats) for t in thetas])
    fe = np.array([free_energy(rotate_latents(w_ml, t), noise_var, stats, beta) for t in thetas])
    return {"theta": thetas, "log_likelihood": ll, "free_energy": fe, "beta": float(beta)}


def overcomplete_weights(w_complete, alpha: float) -> np.ndarray:
    """Experiment 2 (App. B.4, Eq. 17, re-derived): [a w1, w2, alpha w1] with a^2 + alpha^2 = 1.

    Splitting the first column between latents 1 and 3 keeps W W^T, hence the likelihood, fixed for
    every alpha in [0, 1]; alpha = 0 prunes the extra (third) component, alpha = 1 prunes the first.
    """
    W = np.asarray(w_complete, dtype=float)
    if W.ndim != 2 or W.shape[1] != 2:
        raise ValueError(f"w_complete must have shape (D, 2), got {W.shape}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    a = np.sqrt(1.0 - alpha**2)
    return np.column_stack([a * W[:, 0], W[:, 1], alpha * W[:, 0]])


def overcomplete_sweep(w_complete, noise_var, stats: SuffStats, alphas, beta: float = 1.0) -> dict:
    """Experiment 2 (App. B.4): log-likelihood and free energy along the over-complete family."""
    alphas = np.asarray(alphas, dtype=float)
    Ws = [overcomplete_weights(w_complete, a) for a in alphas]
    ll = np.array([log_likelihood(W, noise_var, stats) for W in Ws])
    fe = np.array([free_energy(W, noise_var, stats, beta) for W in Ws])
    norms = np.array([np.linalg.norm(W, axis=0) for W in Ws])
    return {"alpha": alphas, "log_likelihood": ll, "free_energy": fe, "component_norms": norms,
            "beta": float(beta)}


def beta_sweep(w_ml, noise_var, stats: SuffStats, thetas, betas) -> dict:
    """Experiment 3 (App. B.5): the rotation sweep for several beta.

    Returns free energies (len(betas), len(thetas)), the maximising theta (mod pi/2, so that equivalent
    directions read the same) and the amplitude max - min of each curve.
    """
    thetas = np.asarray(thetas, dtype=float)
    betas = np.asarray([_check_beta(b) for b in betas])
    fe = np.array([rotation_sweep(w_ml, noise_var, stats, thetas, b)["free_energy"] for b in betas])
    best = thetas[np.argmax(fe, axis=1)]
    # distance of the maximiser from the nearest multiple of pi/2
    best_offset = np.abs((best + np.pi / 4) % (np.pi / 2) - np.pi / 4)
    return {"theta": thetas, "beta": betas, "free_energy": fe, "argmax_theta": best,
            "argmax_offset_from_pi_over_2": best_offset, "amplitude": fe.max(axis=1) - fe.min(axis=1)}


def experiment_1_summary(w_ml, noise_var, stats: SuffStats, beta: float = 1.0) -> dict:
    """Log-likelihood and free energy at theta = 0 and pi/4 (the numbers the paper quotes in App. B.3)."""
    out = {}
    for name, t in (("0", 0.0), ("pi/4", np.pi / 4)):
        W = rotate_latents(w_ml, t)
        out[name] = {"log_likelihood": log_likelihood(W, noise_var, stats),
                     "free_energy": free_energy(W, noise_var, stats, beta)}
    return out

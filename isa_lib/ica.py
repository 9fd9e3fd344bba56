"""Over-complete ICA learned with (beta-)variational inference (paper Sec. 2.3-2.4, Fig. 1, App. B.7-B.9).

Model (App. B.7), for n = 1..N::

    z_{n,k} ~ Student-t(0, scale, nu)  (k = 1..K),    x_n ~ N(W z_n, D),   D = diag(noise_var).

Inference is mean-field and not amortised: every data point has its own q(z_n) = prod_k N(mu_{n,k}, s_{n,k}^2).
The beta-free energy (Eq. 2) is a sum over data points of::

    E_q[log p(x_n | z_n)] + beta * ( H[q(z_n)] - sum_k CE(q_{n,k}, p) ),

with the reconstruction and the entropy H analytic and the cross-entropy CE(q, p) = -E_q[log p(z)] with
the Student-t prior computed by Gauss-Hermite quadrature (the paper integrates numerically too, App. B.7).
Gradients come from `autograd` (App. B.7). Learning starts at the true model and only accepts steps
that increase the objective (App. B.7), see `maximise`.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.scipy.special import gammaln
from scipy import integrate
from scipy.special import gammaln as sp_gammaln

LOG_2PI = np.log(2.0 * np.pi)

# ------------------------------------------------------------------------------------------------- prior


def student_t_logpdf(z, nu: float = 3.5, scale: float = 1.0):
    """log Student-t(z; 0, scale, nu) (App. B.7); works on autograd arrays."""
    return (gammaln((nu + 1.0) / 2.0) - gammaln(nu / 2.0) - 0.5 * anp.log(nu * np.pi * scale**2)
            - 0.5 * (nu + 1.0) * anp.log1p(z**2 / (nu * scale**2)))


def sample_student_t(shape, nu: float = 3.5, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """Student-t samples from an explicit seed (normal over sqrt(chi^2 / nu))."""
    rng = np.random.default_rng(seed)
    return scale * rng.standard_t(nu, size=shape)


def gauss_hermite(n_points: int):
    """Nodes u_i and weights w_i / sqrt(pi) so that E_{N(mu, s^2)}[f] ~ sum_i w_i f(mu + sqrt(2) s u_i)."""
    if int(n_points) < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    u, w = np.polynomial.hermite.hermgauss(int(n_points))
    return u, w / np.sqrt(np.pi)


def cross_entropy_student_t(mu, std, nu: float = 3.5, scale: float = 1.0, n_points: int = 64):
    """CE(N(mu, std^2), Student-t) = -E_q[log p(z)] by Gauss-Hermite quadrature, elementwise (App. B.7).

    log p is analytic with its nearest complex singularities at z = +-i sqrt(nu) scale, so the rule
    converges geometrically; its error grows with std / (sqrt(nu) scale). With the default 64 nodes and
    nu = 3.5 it agrees with adaptive quadrature to < 1e-8 nats for std <= 1.5 scale and < 1e-6 for
    std <= 2 scale (tests/test_ica.py); the q of these fits have std < 2 (the widest belong to a
    component being pruned, whose q drifts towards the prior).
    """
    u, w = gauss_hermite(n_points)
    z = anp.expand_dims(mu, -1) + np.sqrt(2.0) * anp.expand_dims(std, -1) * u
    return -anp.sum(student_t_logpdf(z, nu, scale) * w, axis=-1)


def cross_entropy_student_t_quad(mu: float, std: float, nu: float = 3.5, scale: float = 1.0) -> float:
    """Reference value of the same cross-entropy by scipy.integrate.quad (slow; for checks)."""
    def integrand(z):
        log_q = -0.5 * ((z - mu) / std) ** 2 - np.log(std) - 0.5 * LOG_2PI
        log_p = (sp_gammaln((nu + 1) / 2) - sp_gammaln(nu / 2) - 0.5 * np.log(nu * np.pi * scale**2)
                 - 0.5 * (nu + 1) * np.log1p(z**2 / (nu * scale**2)))
        return -np.exp(log_q) * log_p
    # a finite window around mu (the Gaussian mass outside is < 1e-300) so that quad cannot miss a
    # narrow q far from 0; the prior's log is smooth there, so adaptive quadrature is reliable
    lo, hi = mu - 40.0 * std, mu + 40.0 * std
    pts = [p for p in (mu - std, mu, mu + std, 0.0) if lo < p < hi]
    val, _ = integrate.quad(integrand, lo, hi, points=sorted(set(pts)), epsabs=1e-13, epsrel=1e-12, limit=400)
    return float(val)


# ---------------------------------------------------------------------------------------- model and data


def true_weights(angles_deg=(0.0, 50.0, 110.0), norms=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A (2, K) mixing matrix with columns at the given angles (degrees) and lengths."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=float))
    r = np.asarray(norms, dtype=float)
    if a.shape != r.shape:
        raise ValueError(f"angles_deg and norms must have the same length, got {a.shape} and {r.shape}")
    return np.vstack([np.cos(a), np.sin(a)]) * r


def sample_ica_data(weights, n: int, noise_std: float = 0.5, nu: float = 3.5, scale: float = 1.0,
                    seed: int = 0):
    """x_n = W z_n + noise with Student-t sources (App. B.7-B.8). Returns (x (N, D), z (N, K))."""
    W = np.asarray(weights, dtype=float)
    if W.ndim != 2:
        raise ValueError(f"weights must have shape (D, K), got {W.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    z = scale * rng.standard_t(nu, size=(n, W.shape[1]))
    x = z @ W.T + noise_std * rng.standard_normal((n, W.shape[0]))
    return x, z


def _check(x, weights, mu, log_std, noise_var, beta):
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    n, d = np.shape(x)
    dw, k = np.shape(weights)
    if dw != d:
        raise ValueError(f"weights W has {dw} rows but the data have dimension {d}")
    if np.shape(mu) != (n, k) or np.shape(log_std) != (n, k):
        raise ValueError(f"q means and log-stds must have shape ({n}, {k}), got {np.shape(mu)} and "
                         f"{np.shape(log_std)}")
    if np.ndim(noise_var) not in (0, 1) or (np.ndim(noise_var) == 1 and np.shape(noise_var) != (d,)):
        raise ValueError(f"noise_var must be a scalar or have shape ({d},), got {np.shape(noise_var)}")
    if np.any(np.asarray(noise_var) <= 0):
        raise ValueError("noise_var must be > 0")


def free_energy_terms(weights, mu, log_std, x, noise_var, beta: float = 1.0, nu: float = 3.5,
                      scale: float = 1.0, n_points: int = 64, check: bool = True):
    """Reconstruction, entropy and cross-entropy summed over data points (App. B.7); autograd-friendly.

    free energy = reconstruction + beta * (entropy - cross_entropy)
                = E_q[log p(x|z)] - beta * KL(q || p).
    """
    if check:
        _check(x, weights, mu, log_std, noise_var, beta)
    nv = noise_var * np.ones(np.shape(x)[1])
    var = anp.exp(2.0 * log_std)                                  # (N, K)
    resid = x - anp.dot(mu, anp.transpose(weights))               # (N, D)
    # E_q ||x - W z||^2_{D^-1} = ||x - W mu||^2_{D^-1} + sum_k s_k^2 (W^T D^-1 W)_kk
    wdw = anp.sum(weights**2 / nv[:, None], axis=0)               # (K,)
    recon = -0.5 * (anp.sum(resid**2 / nv) + anp.sum(var * wdw)
                    + np.shape(x)[0] * (np.sum(np.log(nv)) + np.shape(x)[1] * LOG_2PI))
    entropy = anp.sum(log_std) + 0.5 * (1.0 + LOG_2PI) * np.size(mu)
    cross = anp.sum(cross_entropy_student_t(mu, anp.exp(log_std), nu, scale, n_points))
    return {"reconstruction": recon, "entropy": entropy, "cross_entropy": cross,
            "free_energy": recon + beta * (entropy - cross)}


def free_energy(weights, mu, log_std, x, noise_var, beta: float = 1.0, nu: float = 3.5, scale: float = 1.0,
                n_points: int = 64):
    """The beta-free energy of over-complete ICA, summed over data points (App. B.7, Eq. 2)."""
    return free_energy_terms(weights, mu, log_std, x, noise_var, beta, nu, scale, n_points)["free_energy"]


def pack(weights, mu, log_std) -> np.ndarray:
    """Flatten (W, mu, log_std) into one parameter vector."""
    return np.concatenate([np.ravel(weights), np.ravel(mu), np.ravel(log_std)])


def unpack(theta, d: int, k: int, n: int):
    """Inverse of `pack`; works on autograd arrays."""
    w = anp.reshape(theta[: d * k], (d, k))
    mu = anp.reshape(theta[d * k: d * k + n * k], (n, k))
    log_std = anp.reshape(theta[d * k + n * k:], (n, k))
    return w, mu, log_std


def objective(x, noise_var, beta: float = 1.0, nu: float = 3.5, scale: float = 1.0, n_points: int = 64,
              fixed_weights=None):
    """theta -> beta-free energy; with fixed_weights only the q parameters are in theta."""
    x = np.asarray(x, dtype=float)
    n, d = x.shape
    if fixed_weights is not None:
        W0 = np.asarray(fixed_weights, dtype=float)
        k = W0.shape[1]

        def f(theta):
            _, mu, log_std = unpack(anp.concatenate([np.ravel(W0), theta]), d, k, n)
            return free_energy_terms(W0, mu, log_std, x, noise_var, beta, nu, scale, n_points,
                                     check=False)["free_energy"]
        return f

    def f_all(theta):
        k = (theta.shape[0]) // (d + 2 * n)
        w, mu, log_std = unpack(theta, d, k, n)
        return free_energy_terms(w, mu, log_std, x, noise_var, beta, nu, scale, n_points,
                                 check=False)["free_energy"]
    return f_all


# ------------------------------------------------------------------------------------------- optimiser


def maximise(fun, theta0, max_steps: int = 500, memory: int = 10, tol: float = 1e-9, max_halvings: int = 40,
             callback=None):
    """Monotone L-BFGS ascent with backtracking (App. B.7: "ensure that each gradient step improves").

    Each step proposes the L-BFGS direction (falling back to the gradient when that is not an ascent
    direction) and halves the step until the objective increases (or doubles a full step while it keeps
    increasing, which repairs a badly scaled curvature estimate); a step that does not increase the
    objective is never taken, so history is non-decreasing by construction. Stops after max_steps
    accepted steps, when the relative gain falls below tol, or when no increasing step is found.
    memory = 0 gives plain gradient ascent with an adaptive step (the paper's procedure). callback(theta)
    is called after every accepted step. Returns (theta, history, message).
    """
    vg = value_and_grad(fun)
    theta = np.array(theta0, dtype=float)
    f, g = vg(theta)
    history = [float(f)]
    s_hist, y_hist = [], []
    message = "max_steps reached"
    last_step = 1e-3
    for _ in range(int(max_steps)):
        # two-loop recursion on -f (minimisation form)
        q = -g.copy()
        alphas = []
        for s, y in reversed(list(zip(s_hist, y_hist))):
            a = np.dot(s, q) / np.dot(y, s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= np.dot(s_hist[-1], y_hist[-1]) / np.dot(y_hist[-1], y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += s * (a - np.dot(y, q) / np.dot(y, s))
        direction = -q
        if not np.dot(direction, g) > 0:
            direction, s_hist, y_hist = g / max(np.linalg.norm(g), 1e-300), [], []
        if memory == 0:
            direction = g
        # L-BFGS steps are naturally scaled; plain gradient steps (memory=0) reuse the last size, doubled
        step, accepted = (1.0 if memory > 0 else 2.0 * last_step), False
        for _ in range(int(max_halvings)):
            cand = theta + step * direction
            f_new, g_new = vg(cand)
            if np.isfinite(f_new) and f_new > f:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            message = "no increasing step found"
            break
        if memory > 0 and step == 1.0:
            # a badly scaled inverse Hessian gives tiny steps forever; expand while it keeps improving
            for _ in range(30):
                cand2 = theta + 2.0 * step * direction
                f2, g2 = vg(cand2)
                if not (np.isfinite(f2) and f2 > f_new):
                    break
                step, cand, f_new, g_new = 2.0 * step, cand2, f2, g2
        s, y = cand - theta, -(g_new - g)
        if memory > 0 and np.dot(s, y) > 1e-12:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        last_step = step
        gain = float(f_new) - f
        theta, f, g = cand, float(f_new), g_new
        history.append(f)
        if callback is not None:
            callback(theta)
        if gain <= tol * max(1.0, abs(f)):
            message = "converged (relative gain below tol)"
            break
    return theta, np.array(history), message


# ----------------------------------------------------------------------------------------------- fitting


def initial_q(x, weights, noise_var):
    """Start for the q means: the posterior mean under a unit Gaussian prior; log-stds at log 0.5."""
    W = np.asarray(weights, dtype=float)
    nv = noise_var * np.ones(W.shape[0])
    C = W @ W.T + np.diag(nv)
    mu = np.linalg.solve(C, np.asarray(x, dtype=float).T).T @ W
    return mu, np.full(mu.shape, np.log(0.5))


def fit_ica(x, w_init, noise_var, beta: float = 1.0, nu: float = 3.5, scale: float = 1.0,
            max_steps: int = 500, q_steps: int = 200, n_points: int = 64, tol: float = 1e-10,
            memory: int = 10) -> dict:
    """Learn W and every q(z_n) by monotone ascent of the beta-free energy, starting at w_init (App. B.7).

    Phase 1 fits q with W fixed at w_init (so that the start is the true model with its best q); phase 2
    optimises W and q jointly (memory=0: plain gradient ascent, as in the paper; memory > 0: L-BFGS).
    Returns dict with 'weights', 'weights_path' (W after every joint step), 'mu', 'log_std', 'history' (the objective
    after every accepted step of both phases, non-decreasing), 'free_energy_start' (true W, fitted q),
    'free_energy' (end) and the optimiser's messages.
    """
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    x = np.asarray(x, dtype=float)
    W0 = np.asarray(w_init, dtype=float)
    if x.ndim != 2 or W0.ndim != 2 or W0.shape[0] != x.shape[1]:
        raise ValueError(f"x must be (N, D) and w_init (D, K) with the same D, got {x.shape} and {W0.shape}")
    n, d = x.shape
    k = W0.shape[1]
    mu0, ls0 = initial_q(x, W0, noise_var)
    _check(x, W0, mu0, ls0, noise_var, beta)
    f_q = objective(x, noise_var, beta, nu, scale, n_points, fixed_weights=W0)
    q_theta, hist_q, msg_q = maximise(f_q, np.concatenate([mu0.ravel(), ls0.ravel()]), q_steps, tol=tol)
    f_all = objective(x, noise_var, beta, nu, scale, n_points)
    path = [W0.copy()]
    theta, hist, msg = maximise(f_all, np.concatenate([W0.ravel(), q_theta]), max_steps, memory, tol=tol,
                                callback=lambda t: path.append(np.reshape(t[: d * k], (d, k)).copy()))
    W, mu, log_std = unpack(theta, d, k, n)
    return {"weights": W, "mu": mu, "log_std": log_std, "beta": float(beta), "weights_path": np.array(path),
            "history": np.concatenate([hist_q, hist[1:]]), "n_q_steps": len(hist_q) - 1,
            "free_energy_start": float(hist_q[-1]), "free_energy": float(hist[-1]),
            "messages": (msg_q, msg)}


# ------------------------------------------------------------------------------------------- summaries


def component_norms(weights) -> np.ndarray:
    """Length of each column of W; a pruned component has length near 0 (App. B.8)."""
    return np.linalg.norm(np.asarray(weights, dtype=float), axis=0)


def component_angles(weights) -> np.ndarray:
    """Angle in degrees (0-90) between the lines spanned by each pair of columns, a (K, K) matrix.

    Components are sign-ambiguous, so the angle between lines, not vectors, is what matters.
    """
    W = np.asarray(weights, dtype=float)
    u = W / np.maximum(np.linalg.norm(W, axis=0), 1e-300)
    c = np.clip(np.abs(u.T @ u), 0.0, 1.0)
    return np.degrees(np.arccos(c))


def summarise_components(weights, prune_tol: float = 0.1) -> dict:
    """Norms, pairwise angles (degrees), pruned components (norm < prune_tol) and the angle between the
    two longest components (App. B.8: VI drives these towards 90 degrees while shrinking the third)."""
    W = np.asarray(weights, dtype=float)
    norms = component_norms(W)
    ang = component_angles(W)
    k = len(norms)
    pairs = {f"{i + 1}-{j + 1}": float(ang[i, j]) for i in range(k) for j in range(i + 1, k)}
    i, j = np.sort(np.argsort(norms)[::-1][:2])
    return {"norms": norms, "angles": pairs, "pruned": [int(i) for i in np.flatnonzero(norms < prune_tol)],
            "min_norm": float(norms.min()), "angle_two_longest": float(ang[i, j]),
            "two_longest": (int(i) + 1, int(j) + 1)}


def run_experiment(n: int = 200, angles_deg=(0.0, 50.0, 110.0), noise_std: float = 0.5, nu: float = 3.5,
                   betas=(1.0, 5.0), max_steps: int = 1000, memory: int = 0, q_steps: int = 300,
                   n_points: int = 64, seed: int = 0) -> dict:
    """Fig. 1 / App. B.8: data from a true over-complete model (unit-length columns), fitted from the truth
    for each beta with the same optimiser and step budget.

    Returns {'x', 'w_true', 'truth': summary, 'fits': {beta: fit dict with a 'summary'}, settings}.
    """
    w_true = true_weights(angles_deg, np.ones(len(angles_deg)))
    x, _ = sample_ica_data(w_true, n, noise_std, nu, 1.0, seed)
    fits = {}
    for b in betas:
        fit = fit_ica(x, w_true, noise_std**2, b, nu, 1.0, max_steps, q_steps, n_points, tol=0.0 if memory == 0
                      else 1e-10, memory=memory)
        fit["summary"] = summarise_components(fit["weights"])
        fits[float(b)] = fit
    return {"x": x, "w_true": w_true, "truth": summarise_components(w_true), "fits": fits,
            "noise_std": float(noise_std), "nu": float(nu), "max_steps": int(max_steps), "memory": int(memory)}

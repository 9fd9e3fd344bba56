"""Disentanglement metrics and the ELBO decomposition (paper Sec. 4, Eq. 3).

The paper measures disentanglement with the mutual information gap (MIG) of
Chen et al. (2018, "Isolating sources of disentanglement in VAEs", the
paper's ref. [6]) and reconstruction quality with E_q(z|x)[log p(x|z)].
Implementations in the field differ (encoder means versus samples, which
factors count, normalisation); this module states each choice.

Everything works on arrays, so no model is needed:

* :func:`mig_chen` - Chen et al.'s sampling estimator, from posterior means and
  log-variances of every image of the full factor grid (C order over
  ``factor_sizes``) plus the factor sizes; optionally grouped over subspaces
  (ISA layouts, :func:`groups_from_layout`).
* :func:`mig_histogram`, :func:`dci`, :func:`sap`, :func:`factorvae_score` -
  the metrics of the wider literature, from codes (e.g. encoder means) and
  factor classes (:func:`grid_classes` makes those of a full grid).
* :func:`elbo_decomposition` (Eq. 3) from means, log-variances and any
  ``log p(z)`` callable.

and for a model: :func:`encode_dataset`, :func:`reconstruction_log_likelihood`,
:func:`evaluate_model`.

Estimator of Chen et al. (all densities diagonal Gaussian, q(z) the mixture
of the posteriors of all N images):  one sample z_n ~ q(z|x_n) is drawn per
image; H(z_j) = -mean_s log (1/N sum_n q(z_sj|x_n)) over a random subset of
``n_samples`` of those samples; H(z_j|v_k) = mean over the values v of factor
k of the same estimator restricted to the images with v_k = v (a strided slice
of the C-ordered grid); I = H(z_j) - H(z_j|v_k) is sorted over j, clamped at
0, and the gap of the two largest is divided by log |V_k| (the entropy of a
uniform grid factor) and averaged over the factors that count (MIG_FACTORS).
The sums over images are streamed in chunks (a small GEMM gives the
log-densities of a whole block, then a log-sum-exp), so memory is bounded by
``sample_chunk * row_chunk * D`` and results do not depend on the chunking.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .datasets import factor_spec
from .objectives import bernoulli_log_likelihood

__all__ = [
    "MIG_FACTORS", "FACTOR_NAMES", "MIGResult", "resolve_factors", "grid_classes", "groups_from_layout",
    "mixture_entropy", "mig_chen", "mig_histogram", "dci", "sap", "factorvae_score",
    "elbo_decomposition", "encode_dataset",
    "reconstruction_log_likelihood", "evaluate_model",
]

LOG_2PI = math.log(2.0 * math.pi)
_EXP_FLOOR = -80.0

# Factor names of the datasets as stored by isa_lib.datasets (C order).
FACTOR_NAMES = {name: tuple(factor_spec(name)["names"]) for name in ("dsprites", "faces3d", "cars3d")}

# The factors the MIG is averaged over, per dataset (Chen et al. 2018's protocol, used by the paper):
# * dSprites: scale, orientation, posX, posY.  Color is constant; shape is excluded as in Chen et al.'s
#   evaluation (a 3-valued categorical factor no single continuous latent is expected to carry).
# * 3D faces: azimuth, elevation, lighting; the 50 identities are excluded, as in Chen et al.
# * cars3d (not in Chen et al.): azimuth and elevation.  Identity (183 unordered cars) is excluded by the
#   same argument as faces' identity and dSprites' shape; pass ``factors=[...]`` to include it.
MIG_FACTORS = {
    "dsprites": ("scale", "orientation", "posX", "posY"),
    "faces3d": ("azimuth", "elevation", "lighting"),
    "cars3d": ("azimuth", "elevation"),
}


# --------------------------------------------------------------------------- validation helpers
def _as_2d_tensor(x, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _as_codes(codes, name: str = "codes") -> np.ndarray:
    c = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {c.shape}")
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return c


def _as_classes(classes, n: int) -> np.ndarray:
    v = classes.detach().cpu().numpy() if isinstance(classes, torch.Tensor) else np.asarray(classes)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"factor_classes must be 2-D (N, K), got shape {v.shape}")
    if v.shape[0] != n:
        raise ValueError(f"factor_classes has {v.shape[0]} rows but codes have {n}")
    if not np.issubdtype(v.dtype, np.integer):
        if not np.isfinite(v).all() or not np.all(v == np.round(v)):
            raise ValueError("factor_classes must hold integer class indices")
        v = v.astype(np.int64)
    if v.size and v.min() < 0:
        raise ValueError("factor_classes must be non-negative class indices")
    return v.astype(np.int64)


def _check_sizes(factor_sizes, n: int) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in factor_sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"factor_sizes must be positive integers, got {factor_sizes}")
    if math.prod(sizes) != n:
        raise ValueError(f"product of factor_sizes {sizes} is {math.prod(sizes)}, but there are {n} rows")
    return sizes


def resolve_factors(factors, factor_sizes: Sequence[int], factor_names: Sequence[str] | None = None) -> list[int]:
    """Indices of the factors that count.

    ``factors``: None (every factor with more than one value), a key of :data:`MIG_FACTORS`
    (needs ``factor_names``, else the dataset's names in :data:`FACTOR_NAMES` are assumed), or a list
    of indices and/or names.  A factor with a single value has no information to share and is refused.
    """
    sizes = [int(s) for s in factor_sizes]
    if factors is None:
        return [k for k, s in enumerate(sizes) if s > 1]
    if isinstance(factors, str):
        if factors not in MIG_FACTORS:
            raise ValueError(f"unknown dataset {factors!r}; known: {sorted(MIG_FACTORS)}")
        if factor_names is None:
            factor_names = FACTOR_NAMES[factors]
        factors = MIG_FACTORS[factors]
    out = []
    for f in factors:
        if isinstance(f, str):
            if factor_names is None or f not in factor_names:
                raise ValueError(f"factor {f!r} not among factor_names {factor_names}")
            k = list(factor_names).index(f)
        else:
            k = int(f)
        if not 0 <= k < len(sizes):
            raise ValueError(f"factor index {k} outside 0..{len(sizes) - 1}")
        if sizes[k] < 2:
            raise ValueError(f"factor {f!r} has a single value; it cannot be scored")
        out.append(k)
    if not out:
        raise ValueError("no factor to score")
    if len(set(out)) != len(out):
        raise ValueError(f"factors repeated: {factors}")
    return out


def grid_classes(factor_sizes: Sequence[int]) -> np.ndarray:
    """(N, K) int64 factor classes of every row of a full grid in C order."""
    sizes = tuple(int(s) for s in factor_sizes)
    return np.indices(sizes).reshape(len(sizes), -1).T.astype(np.int64)


def groups_from_layout(subspace_sizes: Sequence[int]) -> list[list[int]]:
    """Consecutive latent groups of an ISA layout, e.g. (4, 4, 4, 4, 4) -> [[0..3], ..., [16..19]]."""
    out, start = [], 0
    for s in subspace_sizes:
        out.append(list(range(start, start + int(s))))
        start += int(s)
    return out


def _check_groups(groups, d: int) -> list[list[int]]:
    if groups is None:
        return [[j] for j in range(d)]
    out = [[int(j) for j in g] for g in groups]
    flat = [j for g in out for j in g]
    if any(len(g) == 0 for g in out) or any(not 0 <= j < d for j in flat) or len(set(flat)) != len(flat):
        raise ValueError(f"groups must be disjoint non-empty lists of latent indices in 0..{d - 1}: {groups}")
    return out


def _generator(seed, generator) -> torch.Generator:
    if generator is not None:
        return generator
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _pick_device(device) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return torch.device(device)


# --------------------------------------------------------------------------- core: streamed log q(z)
def _gaussian_blocks(groups: list[list[int]], d: int):
    """Index (G, k) into the D latents plus one zero 'pad' latent, k = largest group size."""
    k = max(len(g) for g in groups)
    idx = torch.full((len(groups), k), d, dtype=torch.long)
    for i, g in enumerate(groups):
        idx[i, :len(g)] = torch.tensor(g, dtype=torch.long)
    return idx


def _log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, groups: list[list[int]],
                 sample_chunk: int, row_chunk: int) -> torch.Tensor:
    """log (1/M sum_m prod_{j in g} N(z_sj; mu_mj, exp(logvar_mj))) for every sample s and group g.

    z: (S, D); mu, logvar: (M, D), same device and dtype.  Returns (G, S).  The Gaussian log-density
    of a block is a GEMM of [z^2, z, 1] with [-w/2, w mu, -(w mu^2 + logvar + log 2pi)/2] (w = 1/var),
    taken after centring each latent so that the cancellation is small; the sum over the M rows is a
    log-sum-exp streamed over row chunks.
    """
    s_n, d = z.shape
    m_n = mu.shape[0]
    dev, dt = z.device, z.dtype
    idx = _gaussian_blocks(groups, d).to(dev)
    g_n, k = idx.shape
    ref = mu.mean(0)
    zc = z - ref
    a = torch.stack([zc * zc, zc, torch.ones_like(zc)], -1)                        # (S, D, 3)
    a = torch.cat([a, a.new_zeros(s_n, 1, 3)], 1)[:, idx].reshape(s_n, g_n, 3 * k)  # (S, G, 3k)
    a = a.permute(1, 0, 2).contiguous()                                              # (G, S, 3k)
    out = torch.full((g_n, s_n), -math.inf, dtype=dt, device=dev)
    buf = None
    for r0 in range(0, m_n, row_chunk):
        muc = mu[r0:r0 + row_chunk] - ref
        lv = logvar[r0:r0 + row_chunk]
        w = torch.exp(-lv)
        b = torch.stack([-0.5 * w, w * muc, -0.5 * (w * muc * muc + lv + LOG_2PI)], -1)  # (Mc, D, 3)
        mc = b.shape[0]
        b = torch.cat([b, b.new_zeros(mc, 1, 3)], 1)[:, idx].reshape(mc, g_n, 3 * k)
        b = b.permute(1, 2, 0).contiguous()                                              # (G, 3k, Mc)
        for s0 in range(0, s_n, sample_chunk):
            a_c = a[:, s0:s0 + sample_chunk]
            sc = a_c.shape[1]
            if buf is None or buf.numel() < g_n * sc * mc:
                buf = torch.empty(g_n * sc * mc, dtype=dt, device=dev)
            blk = buf[:g_n * sc * mc].view(g_n, sc, mc)
            torch.bmm(a_c, b, out=blk)
            mx = blk.amax(-1, keepdim=True)
            # exp of arguments far below the maximum hits a slow underflow path; clamping at -80
            # changes the sum by at most N e^-80 (< 1e-28 relative), below float64 resolution.
            blk.sub_(mx).clamp_(min=_EXP_FLOOR).exp_()
            lse = mx.squeeze(-1) + blk.sum(-1).log()
            out[:, s0:s0 + sc] = torch.logaddexp(out[:, s0:s0 + sc], lse)
    return out - math.log(m_n)


def _prepare(mu, logvar, device, dtype):
    mu = _as_2d_tensor(mu, "mu")
    logvar = _as_2d_tensor(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    dev = _pick_device(device)
    return mu.to(dev, dtype), logvar.to(dev, dtype)


def _draw_z(mu, logvar, gen):
    """One sample z ~ q(z|x) per row; the noise is drawn on the CPU so that it does not depend on the device."""
    eps = torch.randn(mu.shape, generator=gen, dtype=torch.float64).to(mu.device, mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def _subset(n: int, n_samples: int | None, gen) -> torch.Tensor:
    if n_samples is None or n_samples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:int(n_samples)]


def mixture_entropy(mu, logvar, n_samples: int | None = 10000, groups=None, seed: int = 0,
                    generator: torch.Generator | None = None, sample_chunk: int = 256, row_chunk: int = 4096,
                    device=None, dtype=torch.float64) -> torch.Tensor:
    """Entropies H(z_g) of the aggregate posterior q(z) = 1/N sum_n N(mu_n, diag exp(logvar_n)).

    Chen et al.'s sampling estimator: one z ~ q(z|x_n) per row, ``n_samples`` of them (all if None or
    >= N) scored against the mixture of all N posteriors.  ``groups`` (list of latent index lists) gives
    the joint entropy of each group; default: each latent alone.  Returns a (G,) float64 CPU tensor.
    """
    mu, logvar = _prepare(mu, logvar, device, dtype)
    groups = _check_groups(groups, mu.shape[1])
    gen = _generator(seed, generator)
    z = _draw_z(mu, logvar, gen)
    sel = _subset(mu.shape[0], n_samples, gen).to(mu.device)
    lq = _log_mixture(z[sel], mu, logvar, groups, int(sample_chunk), int(row_chunk))
    return (-lq.mean(1)).double().cpu()


# --------------------------------------------------------------------------- MIG (Chen et al.)
@dataclass
class MIGResult:
    """A MIG and its parts.

    mig: mean over factors of the normalised gap; per_factor: (F,) gaps; mutual_info: (F, G) I(z_g; v_k)
    in nats (not clamped); normalised: (F, G) I / H(v_k); factor_entropy: (F,) the normaliser;
    marginal_entropy: (G,) H(z_g), conditional_entropy: (F, G) H(z_g | v_k) (Chen estimator only);
    factors: the factor indices that count; groups: the latent groups.
    """
    mig: float
    per_factor: np.ndarray
    mutual_info: np.ndarray
    normalised: np.ndarray
    factor_entropy: np.ndarray
    factors: list
    groups: list
    marginal_entropy: np.ndarray | None = None
    conditional_entropy: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.mig)


def _gap(mi: np.ndarray, norm: np.ndarray) -> np.ndarray:
    if mi.shape[1] < 2:
        raise ValueError("the MIG needs at least two latents (or groups)")
    srt = np.sort(np.clip(mi, 0.0, None), axis=1)[:, ::-1]
    return (srt[:, 0] - srt[:, 1]) / norm


def mig_chen(mu, logvar, factor_sizes: Sequence[int], factors=None, n_samples: int | None = 10000,
             groups=None, factor_names: Sequence[str] | None = None, seed: int = 0,
             generator: torch.Generator | None = None, sample_chunk: int = 256, row_chunk: int = 4096,
             device=None, dtype=torch.float64) -> MIGResult:
    """MIG of Chen et al. (2018), the metric of the paper (Sec. 4), from the posteriors of the full grid.

    mu, logvar: (N, D) posterior means and log-variances of every image of the factor grid in C order
    over ``factor_sizes`` (prod = N).  factors: which factors count (see :func:`resolve_factors`; e.g.
    ``"dsprites"``).  n_samples: samples per entropy estimate (Chen et al. use 10,000; None = all).
    groups: latent groups for the grouped MIG of ISA layouts (I between a factor and a whole
    subspace); default one group per latent.  Chunk sizes bound memory and do not change results.
    Randomness: ``generator`` or ``seed`` (CPU generator; same seed -> same numbers on the CPU).
    """
    mu, logvar = _prepare(mu, logvar, device, dtype)
    n, d = mu.shape
    sizes = _check_sizes(factor_sizes, n)
    ks = resolve_factors(factors, sizes, factor_names)
    groups = _check_groups(groups, d)
    if len(groups) < 2:
        raise ValueError("the MIG needs at least two latents (or groups)")
    if n_samples is not None and int(n_samples) < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    sc, rc = int(sample_chunk), int(row_chunk)
    if sc < 1 or rc < 1:
        raise ValueError("chunk sizes must be positive")
    gen = _generator(seed, generator)
    z = _draw_z(mu, logvar, gen)
    # H(z_g): a subset of the samples against the posteriors of all N images.
    sel = _subset(n, n_samples, gen).to(mu.device)
    h_marg = -_log_mixture(z[sel], mu, logvar, groups, sc, rc).mean(1)
    # H(z_g | v_k) = mean_v H(z_g | v_k = v); the rows with v_k = v are a strided slice of the grid.
    shape = sizes + (d,)
    mu_g, lv_g, z_g = mu.view(shape), logvar.view(shape), z.view(shape)
    h_cond = torch.zeros(len(ks), len(groups), dtype=torch.float64)
    for i, k in enumerate(ks):
        for v in range(sizes[k]):
            m_v = mu_g.select(k, v).reshape(-1, d)
            l_v = lv_g.select(k, v).reshape(-1, d)
            z_v = z_g.select(k, v).reshape(-1, d)
            sel_v = _subset(m_v.shape[0], n_samples, gen).to(mu.device)
            lq = _log_mixture(z_v[sel_v], m_v, l_v, groups, sc, rc)
            h_cond[i] += (-lq.mean(1)).double().cpu() / sizes[k]
    h_marg = h_marg.double().cpu().numpy()
    h_cond = h_cond.numpy()
    mi = h_marg[None, :] - h_cond
    hv = np.log(np.array([sizes[k] for k in ks], dtype=np.float64))
    per = _gap(mi, hv)
    return MIGResult(mig=float(per.mean()), per_factor=per, mutual_info=mi, normalised=mi / hv[:, None],
                     factor_entropy=hv, factors=ks, groups=groups, marginal_entropy=h_marg,
                     conditional_entropy=h_cond,
                     info={"estimator": "chen", "n_samples": n_samples, "seed": seed})


# --------------------------------------------------------------------------- MIG (histogram variant)
def _discretise(codes: np.ndarray, n_bins: int) -> np.ndarray:
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=n_bins)
        out[:, j] = np.clip(np.digitize(codes[:, j], edges[1:-1]), 0, n_bins - 1)
    return out


def _discrete_mi(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) of two integer label arrays from their joint histogram."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    na, nb = a.max() + 1, b.max() + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).astype(np.float64)
    p = joint / joint.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


def _discrete_entropy(a: np.ndarray) -> float:
    _, c = np.unique(a, return_counts=True)
    p = c / c.sum()
    return float(-np.sum(p * np.log(p)))


def _subsample(n: int, n_points, seed) -> np.ndarray:
    if n_points is None or n_points >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(n_points), replace=False))


def _factors_from_classes(factors, classes, factor_names):
    sizes = [int(np.unique(classes[:, k]).size) for k in range(classes.shape[1])]
    return resolve_factors(factors, sizes, factor_names)


def mig_histogram(codes, factor_classes, factors=None, n_bins: int = 20, n_points: int | None = None,
                  factor_names: Sequence[str] | None = None, seed: int = 0) -> MIGResult:
    """MIG, histogram variant (as in Locatello et al. 2019): codes (e.g. encoder means) cut into
    ``n_bins`` equal-width bins per latent, discrete mutual information with each factor's classes,
    gap of the two largest divided by the empirical factor entropy, averaged over factors.

    codes: (N, D); factor_classes: (N, K) integer classes (:func:`grid_classes` for a full grid).
    n_points: optional random subset of rows (seeded).
    """
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    c, v = c[rows], v[rows]
    ks = _factors_from_classes(factors, v, factor_names)
    if c.shape[1] < 2:
        raise ValueError("the MIG needs at least two latents")
    binned = _discretise(c, int(n_bins))
    mi = np.array([[_discrete_mi(binned[:, j], v[:, k]) for j in range(c.shape[1])] for k in ks])
    hv = np.array([_discrete_entropy(v[:, k]) for k in ks])
    per = _gap(mi, hv)
    return MIGResult(mig=float(per.mean()), per_factor=per, mutual_info=mi, normalised=mi / hv[:, None],
                     factor_entropy=hv, factors=ks, groups=[[j] for j in range(c.shape[1])],
                     info={"estimator": "histogram", "n_bins": n_bins, "n_points": len(rows)})


# --------------------------------------------------------------------------- DCI
def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    sd[sd == 0] = 1.0
    return (x - x.mean(0)) / sd


def _lasso(gram: np.ndarray, xty: np.ndarray, alpha: float, n_iter: int = 1000, tol: float = 1e-8) -> np.ndarray:
    """min_b 1/2 b'Gb - b'c + alpha |b|_1 by coordinate descent (G = X'X/n, c = X'y/n)."""
    b = np.zeros(gram.shape[0])
    for _ in range(n_iter):
        change = 0.0
        for j in range(len(b)):
            if gram[j, j] <= 0:
                continue
            r = xty[j] - gram[j] @ b + gram[j, j] * b[j]
            new = np.sign(r) * max(abs(r) - alpha, 0.0) / gram[j, j]
            change = max(change, abs(new - b[j]))
            b[j] = new
        if change < tol:
            break
    return b


def _split(n: int, train_fraction: float, seed) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_tr = int(round(train_fraction * n))
    if n_tr < 2 or n - n_tr < 1:
        raise ValueError(f"too few rows ({n}) for a train/test split at {train_fraction}")
    return perm[:n_tr], perm[n_tr:]


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    return h / math.log(base)


def dci(codes, factor_classes, factors=None, alpha: float = 0.02, train_fraction: float = 0.8,
        n_points: int | None = None, factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """DCI of Eastwood & Williams (2018) with lasso regressors (their linear variant).

    For each factor, a lasso (coordinate descent, here; strength ``alpha`` on standardised codes and
    targets) predicts the standardised class index from the codes; the importance R_jk is |coefficient|.
    disentanglement = sum_j rho_j (1 - H_K(P_j.)), completeness = sum_k rho_k (1 - H_D(P_.k)), with
    P normalised rows/columns of R, entropies in base K (factors) / D (latents), weights rho the share of
    total importance; informativeness = mean test NRMSE (lower is better; Eastwood & Williams' error).
    Limitation: a linear regressor sees only monotone relations (a cyclic orientation code scores low);
    disentanglement_lib uses gradient-boosted trees (scikit-learn), not used here.
    """
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    c, v = c[rows], v[rows].astype(np.float64)
    ks = _factors_from_classes(factors, v.astype(np.int64), factor_names)
    tr, te = _split(len(rows), train_fraction, seed)
    mean, sd = c[tr].mean(0), c[tr].std(0)
    sd[sd == 0] = 1.0
    x_tr, x_te = (c[tr] - mean) / sd, (c[te] - mean) / sd
    gram = x_tr.T @ x_tr / len(tr)
    d, f = c.shape[1], len(ks)
    r = np.zeros((d, f))
    err_tr, err_te = np.zeros(f), np.zeros(f)
    for i, k in enumerate(ks):
        y = v[:, k]
        ym, ys = y[tr].mean(), y[tr].std()
        ys = ys if ys > 0 else 1.0
        y_tr, y_te = (y[tr] - ym) / ys, (y[te] - ym) / ys
        b = _lasso(gram, x_tr.T @ y_tr / len(tr), alpha)
        r[:, i] = np.abs(b)
        err_tr[i] = np.sqrt(np.mean((x_tr @ b - y_tr) ** 2)) / max(y_tr.std(), 1e-12)
        err_te[i] = np.sqrt(np.mean((x_te @ b - y_te) ** 2)) / max(y_te.std(), 1e-12)
    total = r.sum()
    if total <= 0:
        dis = comp = 0.0
    else:
        row, col = r.sum(1), r.sum(0)
        p_rows = np.divide(r, row[:, None], out=np.zeros_like(r), where=row[:, None] > 0)
        p_cols = np.divide(r, col[None, :], out=np.zeros_like(r), where=col[None, :] > 0)
        d_j = 1.0 - _entropy_rows(p_rows, f) if f > 1 else np.ones(d)
        c_k = 1.0 - _entropy_rows(p_cols.T, d) if d > 1 else np.ones(f)
        dis = float(np.sum(row / total * np.where(row > 0, d_j, 0.0)))
        comp = float(np.sum(col / total * np.where(col > 0, c_k, 0.0)))
    return {"disentanglement": dis, "completeness": comp, "informativeness": float(err_te.mean()),
            "informativeness_train": float(err_tr.mean()), "importance": r, "factors": ks}


# --------------------------------------------------------------------------- SAP
def _nearest_mean_accuracy(x_tr, y_tr, x_te, y_te) -> float:
    classes = np.unique(y_tr)
    means = np.array([x_tr[y_tr == c].mean() for c in classes])
    pred = classes[np.argmin(np.abs(x_te[:, None] - means[None, :]), axis=1)]
    return float(np.mean(pred == y_te))


def sap(codes, factor_classes, factors=None, mode: str = "regression", train_fraction: float = 0.8,
        n_points: int | None = None, factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """SAP score of Kumar et al. (2018): a (D, F) score matrix of single-latent predictors, then the
    mean over factors of the gap between the two best latents.

    mode "regression": score = R^2 of a 1-D linear regression (squared correlation) of the class index on
    one latent, on all rows.  mode "classification": accuracy on a held-out split of a 1-D nearest
    class-mean classifier (a linear classifier on one input splits the line into intervals; this one is
    closed-form) - chance level is 1/|V_k|, so the gap of a perfect code is below 1.
    """
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    c, v = c[rows], v[rows]
    ks = _factors_from_classes(factors, v, factor_names)
    d = c.shape[1]
    if d < 2:
        raise ValueError("SAP needs at least two latents")
    score = np.zeros((d, len(ks)))
    if mode == "regression":
        cz = c - c.mean(0)
        for i, k in enumerate(ks):
            y = v[:, k] - v[:, k].mean()
            den = np.sqrt((cz ** 2).sum(0) * (y ** 2).sum())
            cov = cz.T @ y
            score[:, i] = np.divide(cov, den, out=np.zeros(d), where=den > 0) ** 2
    elif mode == "classification":
        tr, te = _split(len(rows), train_fraction, seed)
        for i, k in enumerate(ks):
            for j in range(d):
                score[j, i] = _nearest_mean_accuracy(c[tr, j], v[tr, k], c[te, j], v[te, k])
    else:
        raise ValueError(f"mode must be 'regression' or 'classification', got {mode!r}")
    srt = np.sort(score, axis=0)[::-1]
    gaps = srt[0] - srt[1]
    return {"sap": float(gaps.mean()), "per_factor": gaps, "score_matrix": score, "factors": ks}


# --------------------------------------------------------------------------- FactorVAE score
def factorvae_score(codes, factor_classes, factors=None, batch_size: int = 64, n_train: int = 10000,
                    n_eval: int = 5000, prune_threshold: float = 0.05,
                    factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """FactorVAE disentanglement score (Kim & Mnih 2018) from codes and factor classes.

    Codes are divided by their empirical standard deviation over all rows; latents whose variance is
    below ``prune_threshold`` (collapsed; absolute, so meant for VAE-scale codes) are left out.  A vote:
    pick a factor k and a value v uniformly, draw ``batch_size`` rows with v_k = v, and take the latent of
    least normalised variance.  A majority-vote classifier latent -> factor is fitted on ``n_train``
    votes; the score is its accuracy on ``n_eval`` fresh votes (also returned: train accuracy).
    """
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    ks = _factors_from_classes(factors, v, factor_names)
    var = c.var(0)
    active = np.flatnonzero(var >= prune_threshold) if prune_threshold > 0 else np.flatnonzero(var > 0)
    if active.size == 0:
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "n_active": 0, "factors": ks}
    cn = c[:, active] / np.sqrt(var[active])
    rng = np.random.default_rng(seed)
    members = {k: {val: np.flatnonzero(v[:, k] == val) for val in np.unique(v[:, k])} for k in ks}

    def votes(n):
        fac = rng.integers(0, len(ks), n)
        out = np.empty(n, dtype=np.int64)
        for i, k in enumerate(ks):
            at = np.flatnonzero(fac == i)
            vals = np.array(sorted(members[k]))
            pick = vals[rng.integers(0, len(vals), at.size)]
            for val in np.unique(pick):
                who = at[pick == val]
                idx = rng.choice(members[k][val], size=(who.size, batch_size), replace=True)
                out[who] = np.argmin(cn[idx].var(axis=1), axis=1)
        return out, fac

    d_tr, f_tr = votes(int(n_train))
    d_ev, f_ev = votes(int(n_eval))
    table = np.zeros((active.size, len(ks)), dtype=np.int64)
    np.add.at(table, (d_tr, f_tr), 1)
    rule = table.argmax(1)
    return {"train_accuracy": float(table.max(1).sum() / len(d_tr)),
            "eval_accuracy": float(np.mean(rule[d_ev] == f_ev)), "n_active": int(active.size),
            "vote_table": table, "factors": ks}


# --------------------------------------------------------------------------- ELBO decomposition (Eq. 3)
def _log_prior(log_prior_fn, z):
    fn = log_prior_fn.log_prob if hasattr(log_prior_fn, "log_prob") else log_prior_fn
    lp = fn(z)
    if lp.dim() == 2 and lp.shape == z.shape:
        return lp.sum(1), lp
    if lp.dim() != 1 or lp.shape[0] != z.shape[0]:
        raise ValueError(f"log_prior_fn returned shape {tuple(lp.shape)}; expected ({z.shape[0]},) or {tuple(z.shape)}")
    return lp, None


def elbo_decomposition(mu, logvar, log_prior_fn: Callable, n_samples: int | None = 10000, seed: int = 0,
                       generator: torch.Generator | None = None, sample_chunk: int = 256,
                       row_chunk: int = 4096, device=None, dtype=torch.float64) -> dict:
    """The KL term of the ELBO split as in Eq. 3 (Chen et al. 2018), for a trained model's posteriors.

    mu, logvar: (N, D) posteriors over the whole dataset, q(z) their mixture.  log_prior_fn: z (S, D) ->
    log p(z) (S,) (a torch Distribution's log_prob works) or per-latent (S, D) for a factorised prior.
    With S samples (z_s from the posterior of a random image n_s; all images if n_samples is None):
      index_code_mi      = E[log q(z|x) - log q(z)]
      total_correlation  = E[log q(z) - sum_j log q(z_j)]
      dimwise_kl         = E[sum_j log q(z_j) - log p(z)]  (= sum_j KL(q(z_j)||p(z_j)) for a factorised
                           prior; for any other prior the ERRATA form of Eq. 3)
      kl                 = their sum = E[log q(z|x) - log p(z)], the average KL(q(z|x)||p(z)).
    Also 'dimwise_kl_per_latent' when the prior returns per-latent terms.  Values in nats (float).
    """
    mu, logvar = _prepare(mu, logvar, device, dtype)
    n, d = mu.shape
    gen = _generator(seed, generator)
    z = _draw_z(mu, logvar, gen)
    sel = _subset(n, n_samples, gen).to(mu.device)
    zs, ms, ls = z[sel], mu[sel], logvar[sel]
    log_qzx = (-0.5 * ((zs - ms) ** 2 * torch.exp(-ls) + ls + LOG_2PI)).sum(1)
    sc, rc = int(sample_chunk), int(row_chunk)
    log_qz = _log_mixture(zs, mu, logvar, [list(range(d))], sc, rc)[0]
    log_qzj = _log_mixture(zs, mu, logvar, [[j] for j in range(d)], sc, rc).T   # (S, D)
    log_pz, log_pzj = _log_prior(log_prior_fn, zs)
    log_pz = log_pz.to(dtype)
    out = {
        "index_code_mi": float((log_qzx - log_qz).mean()),
        "total_correlation": float((log_qz - log_qzj.sum(1)).mean()),
        "dimwise_kl": float((log_qzj.sum(1) - log_pz).mean()),
        "kl": float((log_qzx - log_pz).mean()),
        "n_samples": int(len(sel)),
    }
    if log_pzj is not None:
        out["dimwise_kl_per_latent"] = (log_qzj - log_pzj.to(dtype)).mean(0).double().cpu().numpy()
    return out


# --------------------------------------------------------------------------- reconstruction and models
def _images_and_scale(data, max_value):
    if hasattr(data, "images"):
        images = data.images
        if max_value is None:
            max_value = getattr(data, "max_value", None)
    else:
        images = data
    images = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if not images.is_floating_point():
        if max_value is None:
            raise ValueError("integer images need max_value (the value that maps to 1.0)")
    return images, (None if max_value is None else float(max_value))


def _to_float(x: torch.Tensor, max_value, device) -> torch.Tensor:
    x = x.to(device)
    if not x.is_floating_point():
        return x.float().div_(max_value)
    return x.float() if max_value is None else x.float().div(max_value)


@torch.no_grad()
def encode_dataset(encode: Callable, data, batch_size: int = 1024, device=None, max_value=None):
    """Posterior (mu, logvar) of every image, in the dataset's order, as float32 CPU tensors.

    encode: images (B, C, H, W) float in [0, 1] -> (mu, logvar).  data: a dataset-like object with
    ``images`` (and ``max_value`` for uint8) or an image tensor.
    """
    images, mv = _images_and_scale(data, max_value)
    dev = _pick_device(device)
    mus, lvs = [], []
    for s in range(0, images.shape[0], int(batch_size)):
        m, lv = encode(_to_float(images[s:s + int(batch_size)], mv, dev))
        mus.append(m.float().cpu())
        lvs.append(lv.float().cpu())
    return torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def reconstruction_log_likelihood(encode: Callable, decode: Callable, data, batch_size: int = 1024,
                                  n_samples: int = 1, seed: int = 0, device=None, max_value=None) -> float:
    """E_{p(x)} E_{q(z|x)}[log p(x|z)] of a Bernoulli decoder (the paper's reconstruction quality, Sec. 4).

    decode: z -> logits shaped like the images.  ``n_samples`` draws z = mu + sigma eps per image (noise
    from a seeded CPU generator).  Returns nats per image, averaged over the dataset and the draws.
    """
    images, mv = _images_and_scale(data, max_value)
    dev = _pick_device(device)
    gen = _generator(seed, None)
    total, count = 0.0, 0
    for s in range(0, images.shape[0], int(batch_size)):
        x = _to_float(images[s:s + int(batch_size)], mv, dev)
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError("images must lie in [0, 1] for a Bernoulli likelihood (check max_value)")
        mu, lv = encode(x)
        for _ in range(int(n_samples)):
            eps = torch.randn(mu.shape, generator=gen).to(dev, mu.dtype)
            logits = decode(mu + torch.exp(0.5 * lv) * eps)
            total += float(bernoulli_log_likelihood(x, logits).double().sum())
        count += x.shape[0] * int(n_samples)
    return total / count


def evaluate_model(encode: Callable, dataset, decode: Callable | None = None, log_prior_fn=None,
                   factors=None, n_samples: int = 10000, groups=None, batch_size: int = 1024, seed: int = 0,
                   device=None) -> dict:
    """The paper's numbers for a trained model on a ground-truth dataset (``images``, ``factor_sizes``,
    optional ``name``/``factor_names``/``max_value``): Chen MIG (factors default: MIG_FACTORS of the
    dataset's name, else every varying factor), reconstruction quality if ``decode`` is given, and the
    Eq. 3 decomposition if ``log_prior_fn`` is given."""
    mu, lv = encode_dataset(encode, dataset, batch_size=batch_size, device=device)
    names = getattr(dataset, "factor_names", None)
    if factors is None and getattr(dataset, "name", None) in MIG_FACTORS:
        factors = dataset.name   # resolved against the dataset's own factor_names
    res = mig_chen(mu, lv, dataset.factor_sizes, factors=factors, n_samples=n_samples, groups=groups,
                   factor_names=names, seed=seed, device=device)
    out = {"mig": res.mig, "mig_per_factor": res.per_factor, "mig_factors": res.factors}
    if decode is not None:
        out["reconstruction"] = reconstruction_log_likelihood(encode, decode, dataset, batch_size=batch_size,
                                                              seed=seed, device=device)
    if log_prior_fn is not None:
        out.update(elbo_decomposition(mu, lv, log_prior_fn, n_samples=n_samples, seed=seed, device=device))
    return out

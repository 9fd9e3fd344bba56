"""Training objectives of the paper's comparison, for any prior (Sec. 2.1, Eq. 1-3 and 12).

An objective is a function of one minibatch's :class:`Outputs` (data, posterior parameters, the sampled
code and the decoder's logits), the prior (any ``torch.distributions.Distribution`` over the code, e.g.
``torch.distributions.Normal`` made ``Independent`` or :class:`isa_lib.lpnested.ISA`) and the data-set size.
It returns the loss to minimise (the negative objective, averaged over the batch) and a dict of named terms,
always including the reconstruction term ``recon`` = E_q[log p(x|z)] and the KL estimate ``kl``.

Precision: under bfloat16 (or float16) autocast the networks hand out half-precision tensors; every objective
upcasts them to float32 before any log-density (:func:`full_precision`). In bfloat16, ``z - mu`` is rounded at
the spacing of ``|mu|`` (8 bits of mantissa): for mu = 3 and sigma = 0.01 the Gaussian log-density of Eq. 12
would be off by ~0.1 nats per dimension, and a sum over 4,096 pixels would be rounded at a spacing of 8 nats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import distributions as D

from . import aggregate_posterior

LOG_2PI = math.log(2 * math.pi)


@dataclass
class Outputs:
    """One minibatch through a VAE: x (B, ...), posterior mu and logvar (B, d), code z (B, d), logits (B, ...)."""

    x: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor


_HALF = (torch.float16, torch.bfloat16)


def full_precision(out: Outputs) -> Outputs:
    """``out`` with half-precision (bfloat16/float16, e.g. from autocast) tensors upcast to float32, so that no
    log-density (Eq. 1-3, 12) is computed in half precision; other tensors are returned as they are. Gradients
    flow back through the casts to the half-precision network outputs."""
    up = lambda t: t.float() if t.dtype in _HALF else t  # noqa: E731
    if not any(t.dtype in _HALF for t in (out.x, out.mu, out.logvar, out.z, out.logits)):
        return out
    return Outputs(up(out.x), up(out.mu), up(out.logvar), up(out.z), up(out.logits))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) (the reparameterisation trick, Sec. 2.1); ``eps`` drawn here from
    ``generator`` unless given. Half-precision mu and logvar (autocast) give a float32 z: a bfloat16 z would be
    rounded at the spacing of |mu|, which for a sharp posterior is larger than sigma itself."""
    if mu.dtype in _HALF or logvar.dtype in _HALF:
        mu, logvar = mu.float(), logvar.float()
    if eps is None:
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
    return mu + torch.exp(0.5 * logvar) * eps


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for a Bernoulli decoder, summed over pixels: shape (B,). x may be grey levels in [0, 1]."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(z; mu, exp(logvar)) (broadcasting), not summed."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def kl_normal_closed_form(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over dimensions: shape (B,)."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def is_standard_normal(prior: D.Distribution) -> bool:
    """True for N(0, I) written as Independent(Normal(0, 1), 1) (the closed-form KL applies)."""
    base = prior.base_dist if isinstance(prior, D.Independent) else None
    return (isinstance(base, D.Normal) and bool((base.loc == 0).all()) and bool((base.scale == 1).all()))


def _check(out: Outputs, dataset_size: int | None = None):
    if out.mu.shape != out.logvar.shape or out.mu.shape != out.z.shape or out.z.dim() != 2:
        raise ValueError(f"mu, logvar and z must share one (batch, latent) shape, got "
                         f"{tuple(out.mu.shape)}, {tuple(out.logvar.shape)}, {tuple(out.z.shape)}")
    if dataset_size is not None and dataset_size < out.z.shape[0]:
        raise ValueError(f"dataset_size ({dataset_size}) is smaller than the batch ({out.z.shape[0]})")


def elbo(out: Outputs, prior: D.Distribution, dataset_size: int | None = None, beta: float = 1.0,
         closed_form: bool = False) -> tuple[torch.Tensor, dict]:
    """Negative (beta-)ELBO, Eq. 1-2 and 12: E_q[log p(x|z)] - beta KL(q(z|x) || p(z)).

    The KL is the single-sample Monte Carlo estimate log q(z|x) - log p(z) of Eq. 12, which needs only the
    prior's log density (any prior); ``closed_form=True`` uses the analytic KL, for N(0, I) only.
    """
    _check(out, dataset_size)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    out = full_precision(out)
    recon = bernoulli_log_likelihood(out.x, out.logits)
    if closed_form:
        if not is_standard_normal(prior):
            raise ValueError("closed_form=True needs the N(0, I) prior (Independent(Normal(0, 1), 1))")
        kl = kl_normal_closed_form(out.mu, out.logvar)
    else:
        kl = gaussian_log_density(out.z, out.mu, out.logvar).sum(-1) - prior.log_prob(out.z)
    loss = -(recon - beta * kl).mean()
    return loss, {"recon": recon.mean().detach(), "kl": kl.mean().detach()}


def log_q_batch(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i | x_j) per dimension for every pair in the batch: shape (B, B, d), [i, j, k]."""
    return gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])


def aggregate_log_weights(batch: int, dataset_size: int, estimator: str, device=None, dtype=None) -> torch.Tensor:
    """log of the weights w_ij with which q(z_i|x_j) enters the estimate of q(z_i) (Chen et al. 2018, Sec. 4.1;
    both are derived in the book's appendix "Equations").

    - ``"mws"`` (minibatch-weighted sampling): every weight 1/(N M), as published. Its estimates of log q(z)
      carry a constant offset (exactly -log N when M = N), which does not change gradients.
    - ``"mss"`` (minibatch-stratified sampling): z_i was drawn from its own posterior, so q(z_i|x_i) enters
      with weight 1/N and the other M-1 members of the batch stand for the remaining N-1 data points,
      each with weight (N-1)/(N(M-1)). The weights of a row sum to 1 and the estimate is exact when the
      batch is the whole data set. (The widely copied reference weight matrix puts 1/N in column 0 rather
      than on the diagonal, i.e. on the wrong data point for every row but the first.)
    """
    n, m = dataset_size, batch
    if estimator == "mws":
        return torch.full((m, m), -math.log(n * m), device=device, dtype=dtype)
    if estimator == "mss":
        if m < 2:
            raise ValueError("minibatch-stratified sampling needs a batch of at least 2")
        w = torch.full((m, m), math.log((n - 1) / (n * (m - 1))) if n > 1 else -math.inf, device=device, dtype=dtype)
        w.fill_diagonal_(-math.log(n))
        return w
    raise ValueError(f"unknown estimator {estimator!r}; choose 'mws' or 'mss'")


#: How :func:`decomposed_kl` computes the minibatch aggregate posterior (the same estimate, to float rounding):
#: ``dense`` holds the (M, M, d) log-densities and lets autograd differentiate them (the reference);
#: ``streamed`` visits blocks of rows and recomputes them in its own backward pass, in O(M^2) memory;
#: ``compiled`` is ``streamed`` with its block loops fused by torch.compile (CPU or GPU); ``native`` does one pass
#: forward and one backward in a C kernel built at first use, the fast choice on a CPU (float32)
#: (:mod:`isa_lib.aggregate_posterior`; benchmarks/bench_roofline.py measures all four).
AGGREGATE_KERNELS = ("dense",) + aggregate_posterior.KERNELS


def check_aggregate(kernel, device: str | None = None) -> str:
    """``kernel`` if it is one of :data:`AGGREGATE_KERNELS` and runs on ``device`` (``native``: CPU only)."""
    if kernel not in AGGREGATE_KERNELS:
        raise ValueError(f"unknown aggregate kernel {kernel!r}; choose one of {list(AGGREGATE_KERNELS)}")
    if kernel == "native" and device is not None and not str(device).startswith("cpu"):
        raise ValueError(f"aggregate 'native' runs on a CPU, not on {device!r}; use 'compiled' or 'streamed'")
    return kernel


def decomposed_kl(out: Outputs, prior: D.Distribution, dataset_size: int, estimator: str = "mss",
                  aggregate: str = "dense") -> dict:
    """Per-sample terms of the KL decomposition, Eq. 3, with the aggregate posterior estimated on the batch.

    Returns (B,)-tensors ``mi`` = log q(z|x) - log q(z), ``tc`` = log q(z) - sum_j log q(z_j) and
    ``dwkl`` = sum_j log q(z_j) - log p(z); the last is the dimension-wise KL generalised to priors that do
    not factorise (Eq. 3, generalised in the appendix "Equations"). The three sum to log q(z|x) - log p(z), the
    KL estimate of Eq. 12. ``aggregate`` picks how log q(z) and log q(z_j) are computed (:data:`AGGREGATE_KERNELS`).
    """
    _check(out, dataset_size)
    check_aggregate(aggregate)
    out = full_precision(out)
    m = out.z.shape[0]
    logw = aggregate_log_weights(m, dataset_size, estimator, out.z.device, out.z.dtype)
    if aggregate == "dense":
        logq = log_q_batch(out.z, out.mu, out.logvar)  # (M, M, d)
        log_qz = torch.logsumexp(logq.sum(-1) + logw, dim=1)
        log_qz_marginals = torch.logsumexp(logq + logw[:, :, None], dim=1).sum(-1)
    else:
        log_qz, marginals = aggregate_posterior.log_aggregate(out.z, out.mu, out.logvar, logw, kernel=aggregate)
        log_qz_marginals = marginals.sum(-1)
    log_qzx = gaussian_log_density(out.z, out.mu, out.logvar).sum(-1)
    log_pz = prior.log_prob(out.z)
    return {"mi": log_qzx - log_qz, "tc": log_qz - log_qz_marginals, "dwkl": log_qz_marginals - log_pz}


def beta_tcvae(out: Outputs, prior: D.Distribution, dataset_size: int, beta: float = 1.0,
               alpha: float = 1.0, gamma: float = 1.0, estimator: str = "mss",
               aggregate: str = "dense") -> tuple[torch.Tensor, dict]:
    """Negative beta-TCVAE objective: E_q[log p(x|z)] - alpha MI - beta TC - gamma dimension-wise KL (Eq. 3).
    ``aggregate``: how the minibatch aggregate posterior is computed (:data:`AGGREGATE_KERNELS`)."""
    out = full_precision(out)
    recon = bernoulli_log_likelihood(out.x, out.logits)
    t = decomposed_kl(out, prior, dataset_size, estimator, aggregate)
    penalty = alpha * t["mi"] + beta * t["tc"] + gamma * t["dwkl"]
    loss = -(recon - penalty).mean()
    terms = {k: v.mean().detach() for k, v in t.items()}
    terms.update(recon=recon.mean().detach(), kl=(t["mi"] + t["tc"] + t["dwkl"]).mean().detach())
    return loss, terms


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch: samples of prod_j q(z_j) (FactorVAE)."""
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, generator=generator, device=z.device), dim=0)
    return torch.gather(z, 0, idx)


def factor_vae(out: Outputs, prior: D.Distribution, dataset_size: int | None, gamma: float,
               discriminator: torch.nn.Module) -> tuple[torch.Tensor, dict]:
    """Negative FactorVAE objective (Kim & Mnih 2018): ELBO - gamma TC, with the total correlation estimated
    by the density-ratio trick, TC ~ E[logit_0(z) - logit_1(z)] of the discriminator (class 0 = q(z))."""
    loss, terms = elbo(out, prior, dataset_size)
    logits = discriminator(out.z).float()   # a log density ratio: float32 even when the network ran in bfloat16
    tc = (logits[:, 0] - logits[:, 1]).mean()
    terms["tc"] = tc.detach()
    return loss + gamma * tc, terms


def discriminator_loss(discriminator: torch.nn.Module, z: torch.Tensor, z_other: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy of the FactorVAE discriminator: codes z (class 0) against permuted codes of an
    independent batch z_other (class 1). Codes are detached: only the discriminator learns from this."""
    z_perm = permute_dims(z_other.detach(), generator)
    logits = torch.cat([discriminator(z.detach()), discriminator(z_perm)]).float()  # float32 under autocast too
    target = torch.cat([torch.zeros(len(z), dtype=torch.long, device=z.device),
                        torch.ones(len(z_perm), dtype=torch.long, device=z.device)])
    return F.cross_entropy(logits, target)


OBJECTIVES = {"vae": elbo, "beta_vae": elbo, "beta_tcvae": beta_tcvae, "factor_vae": factor_vae}

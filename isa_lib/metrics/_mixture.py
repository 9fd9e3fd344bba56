"""The aggregate posterior q(z) = 1/N sum_n q(z|x_n) of diagonal Gaussians: log q(z) streamed in
blocks, and the entropies H(z_g) of Chen et al.'s sampling estimator (the core of the MIG and of Eq. 3)."""
from __future__ import annotations

import math

import torch

from ._inputs import _as_2d_tensor, _check_groups, _generator, _pick_device

LOG_2PI = math.log(2.0 * math.pi)
_EXP_FLOOR = -80.0


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
    _check_resolvable(mu, logvar, dtype)
    dev = _pick_device(device)
    return mu.to(dev, dtype), logvar.to(dev, dtype)


def _check_resolvable(mu, logvar, dtype) -> None:
    """The Monte Carlo entropies need z - mu resolved in ``dtype``: a posterior standard deviation below
    sqrt(eps) * max(1, |mu|) is lost in rounding (the MIG then comes out as a huge or NaN number), and
    exp(logvar) must stay far from overflow."""
    info = torch.finfo(dtype)
    low = math.log(info.eps) + 2 * math.log(max(1.0, float(mu.abs().max())))
    high = 0.5 * math.log(info.max)
    lo, hi = float(logvar.min()), float(logvar.max())
    if lo < low or hi > high:
        raise ValueError(f"logvar spans [{lo:.4g}, {hi:.4g}], outside [{low:.1f}, {high:.1f}], the range in which "
                         f"{dtype} resolves posterior samples (std >= sqrt(eps) * max(1, |mu|)): the posteriors "
                         f"are degenerate; check the encoder, or use dtype=torch.float64")


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

"""The aggregate posterior on a minibatch, for training: log q(z_i) and log q(z_ik) of beta-TCVAE's
decomposition (Eq. 3), with gradients, streamed in blocks of rows instead of held as (M, M, d) tensors.

beta-TCVAE estimates q(z) = sum_j w_ij q(z|x_j) on the minibatch (Chen et al. 2018, Sec. 4.1), which needs
the log-density of every sample z_i under every posterior q(.|x_j) in every latent k: M x M x d numbers.
Held whole, with autograd keeping each intermediate for the backward pass (``kernel="dense"`` in
:func:`isa_lib.objectives.decomposed_kl`), that costs more than the networks' own step at the paper's batch
of 2048 (``benchmarks/bench_roofline.py``). :class:`StreamedAggregate` computes the same two log-sum-exps a
block of rows at a time and keeps only its inputs, the (M, M) joint log-densities and (d, M) sums; the
backward pass recomputes each block once and accumulates the gradients of z, mu and log-variance from the
joint and the marginal weights together. ``compiled=True`` runs the two block functions through
``torch.compile`` (fused loops, no block-sized temporaries; needs a C++ compiler on a CPU, Triton on a GPU).

The marginal sums use a fixed shift, an upper bound on every term (max_j of the log-normaliser plus max_j of
the weight), instead of a running maximum; a sum that falls below 2^-100 (a sample far from every posterior,
not seen in training) is recomputed with its exact maximum.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)
_LN_2 = math.log(2.0)
_LOG2_E = 1.0 / _LN_2
_LOW = 2.0 ** -80       # a shifted sum below this is recomputed with its exact maximum


def _exp_normal(x: torch.Tensor) -> torch.Tensor:
    """exp(x) for x <= 0 with results below the smallest normal number raised to it: a subnormal result takes
    a slow path on a CPU (it made the (M, M) exponentials of a step 10x slower), and such terms are far below
    the sums they enter (at least 1)."""
    return x.clamp_(min=math.log(torch.finfo(x.dtype).tiny) + 1.0).exp_()


def _logsumexp_rows(t: torch.Tensor) -> torch.Tensor:
    """log sum_j exp(t_ij) with :func:`_exp_normal` (t is overwritten)."""
    top = t.amax(1, keepdim=True)
    return _exp_normal(t.sub_(top)).sum(1).log_().add_(top[:, 0])


_TAYLOR = tuple(math.log(2.0) ** n / math.factorial(n) for n in range(8))


def exp2_poly(x: torch.Tensor) -> torch.Tensor:
    """2^x for x <= 0 (float32 or float64) from arithmetic a compiler fuses: x = n + f with n = round(x) and
    |f| <= 1/2, 2^f by its degree-7 Taylor polynomial (truncation below 6e-9 relative), 2^n written into the
    exponent bits. Inputs below the smallest normal exponent give 2^(that exponent), not 0. Within 4 float32
    ulps of ``torch.exp2`` (tested); about twice as fast as the library exponential when compiled for a CPU."""
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"exp2_poly takes float32 or float64, got {x.dtype}")
    ints, bits, low = (torch.int32, 23, -126.0) if x.dtype == torch.float32 else (torch.int64, 52, -1022.0)
    x = x.clamp(min=low)
    n = torch.round(x)
    f = x - n
    p = _TAYLOR[7]
    for c in _TAYLOR[6::-1]:
        p = p * f + c
    return p * ((n.to(ints) - int(low) + 1) << bits).view(x.dtype)


def _forward_block(zt, mut, c2, h2, lw2, shift2, exp2):
    """One block of rows: the joint sums T_ij = sum_k log N(z_ik; mu_jk, var_jk) (c, M) and the shifted
    marginal sums s_ki = sum_j 2^(log2 N(z_ik; mu_jk, var_jk) + log2 w_ij - shift2_ki) (d, c).
    zt (d, c); mut, c2 = log2 of the normaliser and h2 = log2(e) / (2 var), (d, M); lw2 (c, M); shift2 (d, c).
    Base 2 throughout; the square is of z - mu itself (no expanded quadratic)."""
    diff = zt[:, :, None] - mut[:, None, :]
    t2 = c2[:, None, :] - diff * diff * h2[:, None, :]
    return t2.sum(0) * _LN_2, exp2(t2 + lw2[None] - shift2[:, :, None]).sum(2)


def _weights_block(zt, mut, c2, h2, lw2, shift2, r, wj, exp2):
    """dL/dlog N(z_ik; mu_jk, var_jk) for one block of rows (d, c, M): the marginal's weight, given
    r_ki = dL/dlog q(z_ik) / s_ki, plus the joint's wj_ij = dL/dlog q(z_i) * w_ij q(z_i | x_j) / q(z_i)."""
    diff = zt[:, :, None] - mut[:, None, :]
    t2 = c2[:, None, :] - diff * diff * h2[:, None, :]
    return exp2(t2 + lw2[None] - shift2[:, :, None]) * r[:, :, None] + wj[None]


def _grads_block(w, zt, mut, prec):
    """The block's gradients from its weights w (d, c, M): dz (d, c) and its share of dmu and dlogvar (d, M),
    from d log N / dz = -(z - mu) / var and d log N / dlogvar = ((z - mu)^2 / var - 1) / 2. (Kept apart from
    :func:`_weights_block` so that a compiler computes each weight once and reduces it along both axes.)"""
    scaled = (zt[:, :, None] - mut[:, None, :]) * prec[:, None, :]
    ws = w * scaled
    return -ws.sum(2), ws.sum(1), 0.5 * (ws * (zt[:, :, None] - mut[:, None, :]) - w).sum(1)


_COMPILED: dict = {}


def _kernels(compiled: bool, device: torch.device):
    """The two block functions: eager with torch.exp2, or torch.compile'd (with :func:`exp2_poly` on a CPU,
    where the library exponential dominates the fused loops; the GPU's own exp2 is fast)."""
    if not compiled:
        return (lambda *a: _forward_block(*a, torch.exp2), lambda *a: _weights_block(*a, torch.exp2),
                _grads_block)
    exp2 = torch.exp2 if device.type == "cuda" else exp2_poly
    if exp2 not in _COMPILED:
        _COMPILED[exp2] = (torch.compile(lambda *a: _forward_block(*a, exp2), dynamic=False),
                           torch.compile(lambda *a: _weights_block(*a, exp2), dynamic=False),
                           torch.compile(_grads_block, dynamic=False))
    return _COMPILED[exp2]


def _exact_marginal(z, mu, logvar, logw, k: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift2, shifted sum) of log q(z_ik) in base 2 with the exact maximum as shift, for one latent and row."""
    t = (-0.5 * (LOG_2PI + logvar[:, k] + (z[i, k] - mu[:, k]) ** 2 * torch.exp(-logvar[:, k])) + logw[i]) * _LOG2_E
    top = t.max()
    return top, torch.exp2(t - top).sum()


class StreamedAggregate(torch.autograd.Function):
    """(log q(z_i) (M,), log q(z_ik) (M, d)) with q(.) = sum_j exp(logw_ij) N(.; mu_j, diag exp(logvar_j)),
    Eq. 3's aggregate posterior on the batch; z, mu, logvar (M, d); logw (M, M) is a constant.
    Forward and backward visit ``block`` rows at a time."""

    @staticmethod
    def forward(ctx, z, mu, logvar, logw, block: int, compiled: bool):
        fwd = _kernels(compiled, z.device)[0]
        m, d = z.shape
        zt, mut, lvt = (t.detach().t().contiguous() for t in (z, mu, logvar))
        c2 = (-0.5 * _LOG2_E) * (LOG_2PI + lvt)                       # log2 of each posterior's normaliser
        h2 = (0.5 * _LOG2_E) * torch.exp(-lvt)
        lw2 = logw * _LOG2_E
        # an upper bound on every term of a marginal sum, so that no term overflows
        shift2 = (c2.amax(1)[:, None] + lw2.amax(1)[None, :]).contiguous()                 # (d, M)
        joint = z.new_empty(m, m)
        sums = z.new_empty(d, m)
        for r0 in range(0, m, block):
            r1 = min(r0 + block, m)
            joint[r0:r1], sums[:, r0:r1] = fwd(zt[:, r0:r1], mut, c2, h2, lw2[r0:r1], shift2[:, r0:r1])
        for k, i in (sums < _LOW).nonzero().tolist():
            shift2[k, i], sums[k, i] = _exact_marginal(z.detach(), mu.detach(), logvar.detach(), logw, k, i)
        log_qz = _logsumexp_rows(joint + logw)
        log_marg = (sums.log() + shift2 * _LN_2).t()
        ctx.save_for_backward(z, mu, logvar, logw, lw2, joint, log_qz, shift2, sums)
        ctx.block, ctx.compiled = block, compiled
        return log_qz, log_marg

    @staticmethod
    def backward(ctx, g_joint, g_marg):
        z, mu, logvar, logw, lw2, joint, log_qz, shift2, sums = ctx.saved_tensors
        _, weights, reduce = _kernels(ctx.compiled, z.device)
        m, d = z.shape
        g_joint = torch.zeros_like(log_qz) if g_joint is None else g_joint
        g_marg = torch.zeros(m, d, dtype=z.dtype, device=z.device) if g_marg is None else g_marg
        zt, mut, lvt = (t.detach().t().contiguous() for t in (z, mu, logvar))
        prec = torch.exp(-lvt)
        c2 = (-0.5 * _LOG2_E) * (LOG_2PI + lvt)
        h2 = (0.5 * _LOG2_E) * prec
        r = (g_marg.t() / sums).contiguous()                                                # (d, M)
        wj = _exp_normal(joint + logw - log_qz[:, None]).mul_(g_joint[:, None])            # (M, M)
        gz = torch.empty_like(zt)
        gmu = torch.zeros_like(mut)
        glv = torch.zeros_like(lvt)
        for r0 in range(0, m, ctx.block):
            r1 = min(r0 + ctx.block, m)
            w = weights(zt[:, r0:r1], mut, c2, h2, lw2[r0:r1], shift2[:, r0:r1], r[:, r0:r1], wj[r0:r1])
            a, b, c = reduce(w, zt[:, r0:r1], mut, prec)
            gz[:, r0:r1] = a
            gmu += b
            glv += c
        return gz.t(), gmu.t(), glv.t(), None, None, None


def log_aggregate(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, logw: torch.Tensor,
                  block: int = 32, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """log q(z_i) (M,) and log q(z_ik) (M, d) of the minibatch aggregate posterior (Eq. 3), with the log
    weights ``logw`` (M, M) of :func:`isa_lib.objectives.aggregate_log_weights`, differentiable in z, mu and
    logvar, computed ``block`` rows at a time (:class:`StreamedAggregate`); ``compiled`` uses torch.compile
    (one compilation per block shape and dtype, seconds on a CPU; beyond torch.compile's recompile limit, 8 by
    default, further shapes run uncompiled). Half-precision inputs are computed in float32."""
    if not (z.shape == mu.shape == logvar.shape) or z.dim() != 2 or logw.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z, mu and logvar must share one (M, d) shape and logw be (M, M); got {tuple(z.shape)}, "
                         f"{tuple(mu.shape)}, {tuple(logvar.shape)}, {tuple(logw.shape)}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if z.dtype in (torch.float16, torch.bfloat16):   # e.g. under autocast: the sums need float32's range
        z, mu, logvar = z.float(), mu.float(), logvar.float()
    return StreamedAggregate.apply(z, mu, logvar, logw.detach().to(z.dtype), block, bool(compiled))

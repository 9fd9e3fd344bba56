"""The aggregate posterior on a minibatch, for training: log q(z_i) and log q(z_ik) of beta-TCVAE's
decomposition (Eq. 3), with gradients, without (M, M, d) tensors.

beta-TCVAE estimates q(z) = sum_j w_ij q(z|x_j) on the minibatch (Chen et al. 2018, Sec. 4.1), which needs
the log-density of every sample z_i under every posterior q(.|x_j) in every latent k: M x M x d numbers.
Held whole, with autograd keeping each intermediate for the backward pass (``aggregate="dense"`` in
:func:`isa_lib.objectives.decomposed_kl`), that costs more than the networks' own step at the paper's batch
of 2048 (``benchmarks/bench_roofline.py``). :class:`StreamedAggregate` computes the same two log-sum-exps and
keeps only its inputs, the (M, M) joint terms and (d, M) sums; its backward pass recomputes the
log-densities from closed-form gradients (chapter 07) and accumulates the gradients of z, mu and log-variance
from the joint and the marginal weights together. Three kernels do the work (:func:`log_aggregate`):

- ``streamed``: blocks of rows in eager torch, on any device and dtype;
- ``compiled``: the same block functions through ``torch.compile`` (a C++ compiler on a CPU, Triton on a GPU),
  with :func:`exp2_poly` on a CPU;
- ``native``: ``_aggregate_kernel.c``, one pass over the (i, k, j) triples forward and one backward, each
  row's numbers kept in cache and each exponential computed once per pass; compiled with the system's C
  compiler at first use (:func:`native_kernel`), float32 on a CPU, threaded over rows (the same numbers for
  a given thread count).

The marginal sums use a fixed shift, an upper bound on every term (max_j of the log-normaliser plus max_j of
the weight), instead of a running maximum; a sum that falls below 2^-80 (a sample far from every posterior,
not seen in training) is recomputed with its exact maximum: on a CPU only those sums, found by reading the
mask; on an accelerator every sum, selected with ``torch.where``, so that the forward pass never waits for the
device (:func:`_exact_marginals`).
"""
from __future__ import annotations

import ctypes
import functools
import math

import torch

from . import native

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


def _exact_marginals(z, mu, logvar, logw, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_exact_marginal` for every latent k and row i at once, ``block`` rows at a time: (shift2, shifted
    sum) (d, M) of log q(z_ik) of Eq. 3 in base 2, each with its exact maximum over j as shift. The fallback of
    :class:`StreamedAggregate` on an accelerator, where finding the few sums that need it would read the mask
    back to the host (a host-device synchronisation per step); it costs about one more forward pass over the
    (d, M, M) terms."""
    m, d = z.shape
    lvt, prec, mut = logvar.t()[:, None, :], torch.exp(-logvar).t()[:, None, :], mu.t()[:, None, :]
    tops, sums = z.new_empty(d, m), z.new_empty(d, m)
    for r0 in range(0, m, block):
        r1 = min(r0 + block, m)
        t = (-0.5 * (LOG_2PI + lvt + (z[r0:r1].t()[:, :, None] - mut) ** 2 * prec) + logw[r0:r1][None]) * _LOG2_E
        top = t.amax(2)
        tops[:, r0:r1], sums[:, r0:r1] = top, torch.exp2(t - top[:, :, None]).sum(2)
    return tops, sums


def _reads_are_free(device: torch.device) -> bool:
    """Whether reading a tensor's values costs no host-device synchronisation: on a CPU it is a memory read."""
    return device.type == "cpu"


#: The kernels of :func:`log_aggregate` (``aggregate=`` in isa_lib.objectives adds ``dense``, the reference).
KERNELS = ("streamed", "compiled", "native")


@functools.cache
def native_kernel():
    """The C kernel of ``aggregate="native"`` (``_aggregate_kernel.c`` next to this module), compiled with the
    system's C compiler at first use (well under a second), cached, checked and loaded by :mod:`isa_lib.native`."""
    try:
        lib = native.load("aggregate", "_aggregate_kernel.c", depends=("_exp2_poly.h",))
    except native.NativeBuildError as err:
        raise RuntimeError(f"aggregate='native': {err}; or use aggregate='streamed'") from err
    f, i = ctypes.c_void_p, ctypes.c_int
    lib.aggregate_forward.argtypes = [i, i] + [f] * 9 + [i]
    lib.aggregate_backward.argtypes = [i, i] + [f] * 13 + [i]
    lib.aggregate_forward.restype = None
    lib.aggregate_backward.restype = ctypes.c_int
    return lib


_ptr = native.pointer


def _native_forward(zt, mut, c2, h2, lw2, shift2):
    """log q(z_i) (M,), the joint's softmax pi_ij = w_ij q(z_i | x_j) / q(z_i) (M, M) and the marginals'
    shifted sums (d, M), from the C kernel (float32, contiguous, CPU)."""
    d, m = zt.shape
    log_qz, pi, sums = zt.new_empty(m), zt.new_empty(m, m), zt.new_empty(d, m)
    native_kernel().aggregate_forward(m, d, *map(_ptr, (zt, mut, c2, h2, lw2, shift2, log_qz, pi, sums)),
                                      torch.get_num_threads())
    return log_qz, pi, sums


def _native_backward(zt, mut, c2, h2, prec, lw2, shift2, r, pi, g_joint):
    d, m = zt.shape
    gz, gmu, glv = (zt.new_empty(d, m) for _ in range(3))
    threads = torch.get_num_threads()
    if native_kernel().aggregate_backward(
            m, d, *map(_ptr, (zt, mut, c2, h2, prec, lw2, shift2, r, pi, g_joint, gz, gmu, glv)), threads):
        raise MemoryError(f"aggregate='native': the backward pass could not allocate its per-thread sums "
                          f"({threads} x 2 x {d} x {m} floats)")
    return gz, gmu, glv


class StreamedAggregate(torch.autograd.Function):
    """(log q(z_i) (M,), log q(z_ik) (M, d)) with q(.) = sum_j exp(logw_ij) N(.; mu_j, diag exp(logvar_j)),
    Eq. 3's aggregate posterior on the batch; z, mu, logvar (M, d); logw (M, M) is a constant.
    ``kernel`` as in :func:`log_aggregate`: the block functions visit ``block`` rows at a time, the native
    kernel one row at a time."""

    @staticmethod
    def forward(ctx, z, mu, logvar, logw, block: int, kernel: str):
        m, d = z.shape
        zt, mut, lvt = (t.detach().t().contiguous() for t in (z, mu, logvar))
        c2 = (-0.5 * _LOG2_E) * (LOG_2PI + lvt)                       # log2 of each posterior's normaliser
        prec = torch.exp(-lvt)
        h2 = (0.5 * _LOG2_E) * prec
        lw2 = (logw * _LOG2_E).contiguous()     # the C kernel reads it row by row
        # an upper bound on every term of a marginal sum, so that no term overflows
        shift2 = (c2.amax(1)[:, None] + lw2.amax(1)[None, :]).contiguous()                 # (d, M)
        if kernel == "native":      # `joint` holds the joint's softmax here, computed in the kernel
            log_qz, joint, sums = _native_forward(zt, mut, c2, h2, lw2, shift2)
        else:
            fwd = _kernels(kernel == "compiled", z.device)[0]
            joint, sums = z.new_empty(m, m), z.new_empty(d, m)
            for r0 in range(0, m, block):
                r1 = min(r0 + block, m)
                joint[r0:r1], sums[:, r0:r1] = fwd(zt[:, r0:r1], mut, c2, h2, lw2[r0:r1], shift2[:, r0:r1])
            log_qz = _logsumexp_rows(joint + logw)
        low = sums < _LOW
        if _reads_are_free(z.device):      # a CPU: recompute the few low sums one by one
            for k, i in low.nonzero().tolist():
                shift2[k, i], sums[k, i] = _exact_marginal(z.detach(), mu.detach(), logvar.detach(), logw, k, i)
        else:                               # an accelerator: no read of the mask, so no host-device sync
            top, exact = _exact_marginals(z.detach(), mu.detach(), logvar.detach(), logw, block)
            shift2 = torch.where(low, top, shift2)
            sums = torch.where(low, exact, sums)
        log_marg = (sums.log() + shift2 * _LN_2).t()
        # the backward pass reuses the latent-major copies and their derived (d, M) terms
        ctx.save_for_backward(zt, mut, c2, h2, prec, logw, lw2, joint, log_qz, shift2, sums)
        ctx.block, ctx.kernel = block, kernel
        return log_qz, log_marg

    @staticmethod
    def backward(ctx, g_joint, g_marg):
        zt, mut, c2, h2, prec, logw, lw2, joint, log_qz, shift2, sums = ctx.saved_tensors
        d, m = zt.shape
        g_joint = torch.zeros_like(log_qz) if g_joint is None else g_joint
        g_marg = torch.zeros(m, d, dtype=zt.dtype, device=zt.device) if g_marg is None else g_marg
        r = (g_marg.t() / sums).contiguous()                                                # (d, M)
        if ctx.kernel == "native":
            gz, gmu, glv = _native_backward(zt, mut, c2, h2, prec, lw2, shift2, r, joint, g_joint.contiguous())
            return gz.t(), gmu.t(), glv.t(), None, None, None
        wj = _exp_normal(joint + logw - log_qz[:, None]).mul_(g_joint[:, None])            # (M, M)
        _, weights, reduce = _kernels(ctx.kernel == "compiled", zt.device)
        gz = torch.empty_like(zt)
        gmu = torch.zeros_like(mut)
        glv = torch.zeros_like(mut)
        for r0 in range(0, m, ctx.block):
            r1 = min(r0 + ctx.block, m)
            w = weights(zt[:, r0:r1], mut, c2, h2, lw2[r0:r1], shift2[:, r0:r1], r[:, r0:r1], wj[r0:r1])
            a, b, c = reduce(w, zt[:, r0:r1], mut, prec)
            gz[:, r0:r1] = a
            gmu += b
            glv += c
        return gz.t(), gmu.t(), glv.t(), None, None, None


def log_aggregate(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, logw: torch.Tensor,
                  block: int = 32, kernel: str = "streamed") -> tuple[torch.Tensor, torch.Tensor]:
    """log q(z_i) (M,) and log q(z_ik) (M, d) of the minibatch aggregate posterior (Eq. 3), with the log
    weights ``logw`` (M, M) of :func:`isa_lib.objectives.aggregate_log_weights`, differentiable in z, mu and
    logvar (:class:`StreamedAggregate`). ``kernel``:

    - ``streamed``: ``block`` rows at a time in eager torch (any device and dtype);
    - ``compiled``: the same blocks through torch.compile (one compilation per block shape and dtype, seconds
      on a CPU; beyond torch.compile's recompile limit, 8 by default, further shapes run uncompiled);
    - ``native``: one pass forward and one backward in a C kernel (:func:`native_kernel`; float32 on a CPU),
      threaded over rows with torch's thread count.

    Half-precision inputs are computed in float32."""
    if not (z.shape == mu.shape == logvar.shape) or z.dim() != 2 or logw.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z, mu and logvar must share one (M, d) shape and logw be (M, M); got {tuple(z.shape)}, "
                         f"{tuple(mu.shape)}, {tuple(logvar.shape)}, {tuple(logw.shape)}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {list(KERNELS)}")
    if z.shape[0] == 0:
        raise ValueError("log_aggregate needs at least one sample (M = 0 given): an empty batch has no "
                         "aggregate posterior")
    for name, t in (("z", z), ("mu", mu), ("logvar", logvar), ("logw", logw)):
        if not t.is_floating_point():
            raise ValueError(f"log_aggregate computes real log-densities; {name} has dtype {t.dtype} "
                             f"(give floating-point tensors)")
    if z.dtype in (torch.float16, torch.bfloat16):   # e.g. under autocast: the sums need float32's range
        z, mu, logvar = z.float(), mu.float(), logvar.float()
    if kernel == "native" and (z.dtype != torch.float32 or z.device.type != "cpu"):
        raise ValueError(f"kernel 'native' computes float32 on a CPU, got {z.dtype} on {z.device}; "
                         f"use 'streamed' or 'compiled'")
    return StreamedAggregate.apply(z, mu, logvar, logw.detach().to(z.dtype), block, kernel)

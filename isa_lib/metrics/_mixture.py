"""The aggregate posterior q(z) = 1/N sum_n q(z|x_n) of diagonal Gaussians: log q(z) streamed in
blocks, and the entropies H(z_g) of Chen et al.'s sampling estimator (the core of the MIG and of Eq. 3)."""
from __future__ import annotations

import ctypes
import functools
import math
import warnings

import torch

from .. import native
from ._inputs import _as_2d_tensor, _check_groups, _generator, _pick_device

LOG_2PI = math.log(2.0 * math.pi)
_LN_2 = math.log(2.0)
_LOG2_E = 1.0 / _LN_2

#: Kernels of the mixture sums: ``native`` (C, float32 on a CPU), ``torch`` (any device and dtype; the
#: portable reference and the GPU path), ``auto`` (native where it applies and a compiler is there).
BACKENDS = ("auto", "native", "torch")
#: Posteriors per float32 partial sum in the native kernel (a block stays in the L1 cache).
NATIVE_BLOCK = 1024


def _floor(dtype: torch.dtype) -> float:
    """The base-2 exponent below which a term is clamped: 2^floor stays a normal number (a subnormal result
    takes a slow path, about 3x in float32 on the development CPU), and N clamped terms stay far below any
    sum that :func:`_log_mixture` keeps (those above 2^(floor / 2))."""
    return math.log2(torch.finfo(dtype).tiny) + 1.0


def _log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, groups: list[list[int]],
                 sample_chunk: int, row_chunk: int, backend: str = "torch") -> torch.Tensor:
    """log (1/M sum_m prod_{j in g} N(z_sj; mu_mj, exp(logvar_mj))) for every sample s and group g.

    z: (S, D); mu, logvar: (M, D), same device and dtype (float64 or float32).  Returns (G, S) float64.
    The log-density of a block is computed from z - mu directly (no expanded quadratic, so float32 keeps
    its accuracy where |mu| >> sigma), in base 2 (torch's exp2 ran 1.8x faster than exp on the development
    CPU), and enters a log-sum-exp streamed over row chunks with a fixed shift, the group's upper bound
    top_g = max_m log N(mu_m; mu_m, var_m): every term is 2^(a number <= 0), summed in the working dtype
    within a block and in float64 across blocks.  A sample whose sum falls below 2^(floor / 2) (far from
    every narrow posterior) is recomputed with a running maximum instead.  Groups of one size are batched;
    a block holds about ``sample_chunk * row_chunk`` numbers on a CPU and G_b times that on a GPU (G_b
    groups of one size; twice that for groups of several latents).  ``backend="native"`` (a name resolved by
    :func:`resolve_backend`) forms the same sums in one fused C pass per group (``_mig_kernel.c``), blocks of
    :data:`NATIVE_BLOCK` posteriors summed in float32 and the blocks in float64; the chunk sizes then do not
    apply.  With float64 inputs it forms z - mu in float64 and the rest of each term in float32.
    """
    s_n, m_n = z.shape[0], mu.shape[0]
    dev, dt = z.device, z.dtype
    floor = _floor(torch.float32 if backend == "native" else dt)   # the native kernel's terms are float32
    out = torch.empty(len(groups), s_n, dtype=torch.float64, device=dev)
    by_size: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_size.setdefault(len(g), []).append(i)
    for k, members in by_size.items():
        idx = torch.tensor([groups[i] for i in members], dtype=torch.long, device=dev)    # (Gb, k)
        gb = len(members)
        zb = z[:, idx].permute(1, 2, 0).contiguous()                                     # (Gb, k, S)
        mb = mu[:, idx].permute(1, 2, 0).contiguous()                                    # (Gb, k, M)
        lvb = logvar[:, idx].permute(1, 2, 0)
        # ((z - mu) a)^2 = log2(e) (z - mu)^2 / (2 var), and c: the log-normaliser, both in base 2
        ab = torch.exp(-0.5 * lvb).mul_(math.sqrt(0.5 * _LOG2_E)).contiguous()
        cb = -0.5 * _LOG2_E * (lvb.sum(1) + k * LOG_2PI)                                 # (Gb, M), base 2
        top = cb.amax(1, keepdim=True)
        cb = (cb - top).contiguous()
        acc = torch.zeros(gb, s_n, dtype=torch.float64, device=dev)
        if backend == "native":
            for b in range(gb):
                _native_sums(zb[b], mb[b], ab[b], cb[b], floor, acc[b])
        else:
            _torch_sums(zb, mb, ab, cb, floor, acc, sample_chunk, row_chunk)
        lse = acc.log2_()
        low = lse < 0.5 * floor   # rare: samples far from every posterior of the group
        if bool(low.any()):
            for b in low.any(1).nonzero().flatten().tolist():
                sel = low[b].nonzero().flatten()
                lse[b, sel] = _log2_sum_exact(zb[b][:, sel], mb[b], ab[b], cb[b], row_chunk)
        out[members] = (lse + top.double()) * _LN_2
    return out - math.log(m_n)


def _torch_sums(zb, mb, ab, cb, floor, acc, sample_chunk, row_chunk):
    """acc (G, S) += sum_m 2^max(c_gm - sum_j ((z_gjs - mu_gjm) a_gjm)^2, floor), in blocks of eager torch."""
    gb, k, s_n = zb.shape
    m_n = mb.shape[2]
    dev, dt = zb.device, zb.dtype
    # CPU: blocks of ~sample_chunk x row_chunk numbers stay in cache; a GPU wants few, large launches
    sc = sample_chunk if dev.type == "cuda" else max(1, sample_chunk // gb)
    buf = torch.empty(gb * min(sc, s_n) * min(row_chunk, m_n) * min(k, 2), dtype=dt, device=dev)
    for r0 in range(0, m_n, row_chunk):
        r1 = min(r0 + row_chunk, m_n)
        for s0 in range(0, s_n, sc):
            s1 = min(s0 + sc, s_n)
            size = gb * (s1 - s0) * (r1 - r0)
            blk = buf[:size].view(gb, s1 - s0, r1 - r0)
            for j in range(k):
                d = blk if j == 0 else buf[size:2 * size].view_as(blk)
                torch.sub(zb[:, j, s0:s1, None], mb[:, j, None, r0:r1], out=d)
                d.mul_(ab[:, j, None, r0:r1])
                if j == 0:
                    torch.addcmul(cb[:, None, r0:r1], d, d, value=-1.0, out=blk)
                else:
                    blk.addcmul_(d, d, value=-1.0)
            torch.exp2(blk.clamp_(min=floor), out=blk)
            acc[:, s0:s1] += blk.sum(-1)


@functools.cache
def _mig_kernel():
    lib = native.load("mig", "_mig_kernel.c", depends=("_exp2_poly.h", "_mig_sums.h"))
    f, i = ctypes.c_void_p, ctypes.c_int
    for sums in (lib.mixture_sums, lib.mixture_sums_f64):
        sums.argtypes = [i, i, i, f, f, f, f, ctypes.c_float, i, f, i]
        sums.restype = ctypes.c_int
    lib.exp2_sum.argtypes = [ctypes.c_long, f, ctypes.c_float, i, i]
    lib.exp2_sum.restype = ctypes.c_double
    return lib


def _native_sums(z, mu, a, c, floor, out):
    """out (S,) float64 = the sums of :func:`_torch_sums` for one group, from the C kernel; z (k, S), mu and
    a (k, M), c (M,): contiguous, on the CPU; z and mu float32, or float64 (then z - mu is formed in float64:
    posteriors too narrow for float32 at their means), a and c used in float32."""
    k, s_n = z.shape
    m_n = mu.shape[1]
    ptr = native.pointer
    kernel = _mig_kernel()
    if z.dtype == torch.float64:
        sums, mu = kernel.mixture_sums_f64, mu.to(torch.float64).contiguous()
        a, c = a.to(torch.float32).contiguous(), c.to(torch.float32).contiguous()
    else:
        sums = kernel.mixture_sums
    if sums(s_n, m_n, k, ptr(z), ptr(mu), ptr(a), ptr(c), floor, NATIVE_BLOCK, ptr(out), torch.get_num_threads()):
        raise MemoryError(f"the native MIG kernel could not allocate its per-thread buffers ({NATIVE_BLOCK} floats)")


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """``"native"`` or ``"torch"`` for a requested backend (:data:`BACKENDS`).  ``native`` needs a CPU, float32
    or float64 (float64: z - mu in float64, the rest of each term in float32) and a C compiler (a named error
    otherwise); ``auto`` takes it for float32 (float64 stays on the torch path, the exact reference), and falls
    back to ``torch`` with a warning if the kernel cannot be built or its cache cannot be trusted."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown MIG backend {backend!r}; choose one of {list(BACKENDS)}")
    device = torch.device(device)
    if backend == "native":
        if device.type != "cpu" or dtype not in (torch.float32, torch.float64):
            raise ValueError(f"backend 'native' computes float32 or float64 on a CPU, got {dtype} on {device}; "
                             f"use the CPU, or backend='torch'")
        _mig_kernel()
        return "native"
    if backend == "auto" and device.type == "cpu" and dtype == torch.float32 and native_usable():
        return "native"
    return "torch"


def native_usable() -> bool:
    """Whether the native MIG kernel can be built and loaded here (a C compiler, a trusted cache); warns
    naming the problem when a compiler is there but the kernel still cannot be used."""
    if not native.available():
        return False
    try:
        _mig_kernel()
    except (native.NativeBuildError, native.NativeCacheError) as err:
        warnings.warn(f"the native MIG kernel is not available ({err}); using the torch path", RuntimeWarning,
                      stacklevel=4)
        return False
    return True


def _log2_sum_exact(zs, mu, a, c, row_chunk):
    """log2 sum_m 2^(c_m - sum_j ((z_js - mu_jm) a_jm)^2) for a few samples zs (k, s), with a running maximum."""
    mx = torch.full((zs.shape[1],), -math.inf, dtype=zs.dtype, device=zs.device)
    tot = torch.zeros(zs.shape[1], dtype=torch.float64, device=zs.device)
    for r0 in range(0, mu.shape[1], row_chunk):
        x = c[None, r0:r0 + row_chunk] - (((zs[:, :, None] - mu[:, None, r0:r0 + row_chunk])
                                            * a[:, None, r0:r0 + row_chunk]) ** 2).sum(0)
        new = torch.maximum(mx, x.amax(1))
        tot = tot * torch.exp2(mx - new).double() + torch.exp2(x - new[:, None]).sum(1).double()
        mx = new
    return tot.log2() + mx.double()


def check_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """The MIG's working precision must be torch.float32 or torch.float64: half precisions lose about 10 %
    of the entropies' differences (and have no fallback), integer and complex types are no precision."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _prepare(mu, logvar, device, dtype):
    check_dtype(dtype)
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


def _check_n_samples(n_samples) -> None:
    """Chen et al.'s number of Monte Carlo samples: None (all rows) or at least one."""
    if n_samples is not None and int(n_samples) < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")


def _subset(n: int, n_samples: int | None, gen) -> torch.Tensor:
    if n_samples is None or n_samples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:int(n_samples)]


def mixture_entropy(mu, logvar, n_samples: int | None = 10000, groups=None, seed: int = 0,
                    generator: torch.Generator | None = None, sample_chunk: int = 256, row_chunk: int = 4096,
                    device=None, dtype=torch.float64, backend: str = "auto") -> torch.Tensor:
    """Entropies H(z_g) of the aggregate posterior q(z) = 1/N sum_n N(mu_n, diag exp(logvar_n)).

    Chen et al.'s sampling estimator: one z ~ q(z|x_n) per row, ``n_samples`` of them (all if None or
    >= N) scored against the mixture of all N posteriors.  ``groups`` (list of latent index lists) gives
    the joint entropy of each group; default: each latent alone.  Returns a (G,) float64 CPU tensor.
    ``backend``: the kernel of the sums (:func:`resolve_backend`; ``auto`` is native for float32 on a CPU).
    """
    _check_n_samples(n_samples)
    mu, logvar = _prepare(mu, logvar, device, dtype)
    groups = _check_groups(groups, mu.shape[1])
    gen = _generator(seed, generator)
    z = _draw_z(mu, logvar, gen)
    sel = _subset(mu.shape[0], n_samples, gen).to(mu.device)
    be = resolve_backend(backend, mu.device, mu.dtype)
    lq = _log_mixture(z[sel], mu, logvar, groups, int(sample_chunk), int(row_chunk), be)
    return (-lq.mean(1)).double().cpu()

"""log q(z_j) of a one-latent aggregate posterior through a checked Chebyshev interpolant: the sampling
estimator of Chen et al. (2018) behind the MIG (Sec. 4) evaluates log (1/M sum_m N(z_s; mu_m, sigma_m^2)) at
S = 10,000 samples against M up to 737,280 posteriors.  When every posterior is wide compared with the range
of the samples (a collapsed latent: sigma ~ 0.8 over a range of ~8), that function of z is smooth on the
samples' interval, and n ~ 33 exact values at Chebyshev points give it to float32's accuracy: n + checks
instead of S passes over the posteriors.  The estimator, its samples and its subsets are unchanged; only the
arithmetic of log q at the samples is."""
from __future__ import annotations

import ctypes
import functools
import math

import numpy as np
import torch

from ._mixture import _log_mixture, _mig_kernel

#: Largest error (nats) allowed between the interpolant and the exact sums at the checked samples, and four
#: times the largest Chebyshev coefficient allowed in the series' last eighth.  The float32 sums themselves
#: carry ~1e-7 nats of rounding.
TOLERANCE = 1e-6
#: Samples checked against the exact sums (the two extremes and others evenly spaced in the given order).
CHECKS = 128
#: Interpolation is tried only when its nodes and checks cost at most this fraction of the exact passes.
MAX_COST = 0.5
#: The most Chebyshev points tried (an active latent's narrowest posteriors, sigma ~ 0.01 over a range of ~9,
#: ask for 2,049-4,097; the exact sums then cost 2.5-5x more).
MAX_NODES = 4097
#: Chebyshev points per posterior width: the node spacing in the middle of the interval, pi L / (2 (n - 1)),
#: stays below half the narrowest posterior's sigma, so no bump of q(z) falls between nodes.
NODES_PER_WIDTH = math.pi


def chebyshev_points(lo: float, hi: float, n: int) -> np.ndarray:
    """The n Chebyshev points of the second kind on [lo, hi], x_j = mid + half cos(pi j / (n - 1))."""
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(np.pi * np.arange(n) / (n - 1))


def _unit(z, lo: float, hi: float):
    """z on [lo, hi] mapped to t on [-1, 1], the variable of the series."""
    return (2.0 * z - (lo + hi)) / (hi - lo)


def chebyshev_coefficients(values: np.ndarray) -> np.ndarray:
    """Coefficients c_k of sum_k c_k T_k(t) interpolating ``values`` at :func:`chebyshev_points` (t_j =
    cos(pi j / (n - 1))), by the type-I discrete cosine transform (an FFT of the even extension)."""
    n = len(values)
    if n < 2:
        raise ValueError("a Chebyshev interpolant needs at least two points")
    ext = np.concatenate([values, values[-2:0:-1]])
    c = np.real(np.fft.fft(ext))[:n] / (n - 1)
    c[0] /= 2
    c[-1] /= 2
    return c


@functools.cache
def _native_series():
    f = _mig_kernel().chebyshev_series
    f.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    f.restype = None
    return f


def chebyshev_eval(c: np.ndarray, t: np.ndarray, native: bool = False) -> np.ndarray:
    """sum_k c_k T_k(t) by Clenshaw's recurrence (t in [-1, 1]); ``native``: the C loop of ``_mig_kernel.c``
    (the same recurrence, ~50x numpy's for series of hundreds of terms).  In numpy, c may also be (L, B, 1)
    against t (B, S): B series at once."""
    if native:
        c = np.ascontiguousarray(c, dtype=np.float64)
        t = np.ascontiguousarray(t, dtype=np.float64)
        out = np.empty_like(t)
        _native_series()(t.size, t.ctypes.data, len(c), c.ctypes.data, out.ctypes.data)
        return out
    b1 = np.zeros_like(t)
    b2 = np.zeros_like(t)
    for ck in c[:0:-1]:
        b1, b2 = 2.0 * t * b1 - b2 + ck, b1
    return t * b1 - b2 + c[0]


def _values_at_points(f_rounded: np.ndarray, x: np.ndarray, x_rounded: np.ndarray, lo: float,
                      hi: float, native: bool = False) -> np.ndarray:
    """Chebyshev coefficients of f from its values at the points rounded to the working dtype: a float32
    point is off by up to 2^-24 |x| (2.4e-7 at |x| = 4, where d log q / dz of a collapsed latent is ~5), so
    each value is moved to the exact point by one Taylor step, f(x) = f(x~) + f'(x~) (x - x~), with f' from
    a first interpolant (the second-order error is ~1e-13)."""
    c = chebyshev_coefficients(f_rounded)
    dx = x - x_rounded
    if not np.any(dx):
        return c
    slope = chebyshev_eval(np.polynomial.chebyshev.chebder(c), _unit(x_rounded, lo, hi), native)
    return chebyshev_coefficients(f_rounded + slope * (2.0 / (hi - lo)) * dx)


def _exact(z, mu, logvar, backend, sample_chunk, row_chunk):
    return _log_mixture(z[:, None], mu[:, None], logvar[:, None], [[0]], sample_chunk, row_chunk, backend)[0]


def fit_log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, backend: str = "torch",
                    sample_chunk: int = 256, row_chunk: int = 4096, tol: float = TOLERANCE,
                    checks: int | None = None) -> tuple[np.ndarray | None, dict]:
    """The Chebyshev coefficients of t -> log (1/M sum_m N(z(t); mu_m, exp(logvar_m))) for one latent, z(t)
    = mid + half t on [min z, max z] (``info["lo"]``, ``info["hi"]``), or None where interpolation would not
    be cheaper than the exact sums or does not pass its checks (the caller then sums exactly).

    z: (S,) samples; mu, logvar: (M,) posteriors (same device and dtype).  The interpolant of log q on
    [min z, max z] uses n = 2^j + 1 Chebyshev points, at least ``NODES_PER_WIDTH`` per narrowest posterior
    width; it is accepted when (a) the last eighth of its coefficients is below tol / 4 and (b) it agrees with
    the exact sums (same kernel, ``backend``) within ``tol`` nats at ``checks`` (default :data:`CHECKS`)
    samples, the two extremes and others evenly spaced; else n doubles while the cost stays under
    ``MAX_COST`` of the exact passes and n under ``MAX_NODES``.  Deterministic: no random numbers.  Returns
    the coefficients and a dict with ``n``, the interval and the errors.
    """
    s_n = z.shape[0]
    checks = CHECKS if checks is None else int(checks)
    info: dict = {"n": 0}
    if s_n < 2 or mu.shape[0] < 1:
        return None, info
    zs = z.detach().double().cpu().numpy()
    lo, hi = float(zs.min()), float(zs.max())
    if not hi > lo:
        return None, info
    info.update(lo=lo, hi=hi)
    sigma_min = math.exp(0.5 * float(logvar.min()))
    need = NODES_PER_WIDTH * (hi - lo) / sigma_min
    n = 17
    while n - 1 < need and n < s_n:
        n = 2 * n - 1
    # the checks: the two extreme samples and others evenly spaced in the given order (a random subset in
    # random order for the MIG; a grid in grid order when every row is a sample)
    spread = np.linspace(0, s_n - 1, max(0, min(checks, s_n) - 2)).round()
    pick = np.unique(np.concatenate([[zs.argmin(), zs.argmax()], spread]).astype(np.int64))
    z_checks = z[torch.from_numpy(pick).to(z.device)]
    t_checks = _unit(zs[pick], lo, hi)
    native = backend == "native"
    while n <= MAX_NODES and n + len(pick) <= MAX_COST * s_n:
        x = chebyshev_points(lo, hi, n)
        nodes = torch.tensor(x, dtype=z.dtype).to(z.device)   # rounded to the working dtype
        vals = _exact(torch.cat([nodes, z_checks]), mu, logvar, backend, sample_chunk, row_chunk).cpu().numpy()
        c = _values_at_points(vals[:n], x, nodes.double().cpu().numpy(), lo, hi, native)
        tail = float(np.abs(c[-max(2, n // 8):]).max())
        info.update(n=n, tail=tail)
        if tail <= tol / 4:
            # drop the trailing coefficients whose absolute sum stays below tol / 8 (cheaper to evaluate)
            drop = int(np.searchsorted(np.cumsum(np.abs(c[::-1])), tol / 8, side="right"))
            c = c[:max(1, n - drop)]
            err = float(np.abs(chebyshev_eval(c, t_checks, native) - vals[n:]).max())
            info.update(check_error=err, terms=len(c))
            if err <= tol:
                return c, info
        n = 2 * n - 1
    return None, info


def interpolated_log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, backend: str = "torch",
                             sample_chunk: int = 256, row_chunk: int = 4096,
                             tol: float = TOLERANCE) -> tuple[torch.Tensor | None, dict]:
    """log (1/M sum_m N(z_s; mu_m, exp(logvar_m))) for one latent, (S,) float64, through the interpolant of
    :func:`fit_log_mixture`; None where that declines (sum exactly instead)."""
    c, info = fit_log_mixture(z, mu, logvar, backend, sample_chunk, row_chunk, tol)
    if c is None:
        return None, info
    t = _unit(z.detach().double().cpu().numpy(), info["lo"], info["hi"])
    return torch.from_numpy(chebyshev_eval(c, t, backend == "native")), info


def _eval_many(fits: list[tuple[int, np.ndarray, float, float]], zt: np.ndarray, out: torch.Tensor) -> None:
    """out[i] = the interpolant of each fit (i, coefficients, lo, hi) at the samples zt[i] ((G, S) float64):
    Clenshaw's recurrence over a stack of groups at once, stacked by series length (in steps of 8)."""
    buckets: dict[int, list] = {}
    for f in fits:
        buckets.setdefault(-(-len(f[1]) // 8) * 8, []).append(f)
    for length, fs in buckets.items():
        rows = [i for i, _, _, _ in fs]
        coef = np.zeros((len(fs), length))
        for r, (_, c, _, _) in enumerate(fs):
            coef[r, :len(c)] = c
        t = _unit(zt[rows], np.array([f[2] for f in fs])[:, None], np.array([f[3] for f in fs])[:, None])
        out[rows] = torch.from_numpy(chebyshev_eval(coef.T[:, :, None], t))


def log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, groups: list[list[int]],
                sample_chunk: int, row_chunk: int, backend: str = "torch",
                interpolate: bool = False) -> tuple[torch.Tensor, int]:
    """The (G, S) log mixtures of :func:`~isa_lib.metrics._mixture._log_mixture`; with ``interpolate``,
    groups of one latent go through :func:`interpolated_log_mixture` where it is cheaper and passes its
    checks, every other group through the exact sums.  Returns the values and how many groups were
    interpolated."""
    if not interpolate:
        return _log_mixture(z, mu, logvar, groups, sample_chunk, row_chunk, backend), 0
    out = torch.empty(len(groups), z.shape[0], dtype=torch.float64)
    # one transposed copy: each latent's samples and posteriors contiguous
    zt, mut, lvt = (x.t().contiguous() for x in (z, mu, logvar))
    fits, exact = [], []
    for i, g in enumerate(groups):
        c = None
        if len(g) == 1:
            c, info = fit_log_mixture(zt[g[0]], mut[g[0]], lvt[g[0]], backend, sample_chunk, row_chunk)
        if c is None:
            exact.append(i)
        else:
            fits.append((i, c, info["lo"], info["hi"]))
    if fits:
        z_np = zt.double().cpu().numpy()
        if backend == "native":
            for i, c, lo, hi in fits:
                out[i] = torch.from_numpy(chebyshev_eval(c, _unit(z_np[groups[i][0]], lo, hi), True))
        else:
            _eval_many(fits, z_np[[g[0] if len(g) == 1 else 0 for g in groups]], out)
    if exact:
        out[exact] = _log_mixture(z, mu, logvar, [groups[i] for i in exact], sample_chunk, row_chunk,
                                  backend).cpu()
    return out.to(z.device), len(groups) - len(exact)

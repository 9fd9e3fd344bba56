"""The checked Chebyshev interpolant of log q(z_j) (isa_lib/metrics/_chebyshev.py) behind the fast MIG of
Chen et al.'s estimator (Sec. 4): the series against closed forms and numpy, the interpolant against an
independent float64 logsumexp, its refusals where it cannot be trusted, and the MIG with and without it."""
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from isa_lib import metrics as M
from isa_lib import native
from isa_lib.metrics import _chebyshev as C

needs_cc = pytest.mark.skipif(not native.available(), reason="the native kernel needs a C compiler")
#: (backend, dtype): the float64 reference, the native float32 kernel and its float64 differences
KERNELS = [("torch", torch.float64), pytest.param("native", torch.float32, marks=needs_cc),
           pytest.param("native", torch.float64, marks=needs_cc)]


def reference(z, mu, lv):
    """log (1/M sum_m N(z_s; mu_m, exp(lv_m))) in float64 through scipy's logsumexp, one sample at a time."""
    z, mu, lv = (np.asarray(t, dtype=np.float64) for t in (z, mu, lv))
    return np.array([logsumexp(-0.5 * (math.log(2 * math.pi) + lv + (s - mu) ** 2 * np.exp(-lv)))
                     for s in z]) - math.log(len(mu))


def collapsed(m=4000, s=3000, seed=0, dtype=torch.float64):
    """A collapsed latent: posteriors near the prior (sigma 0.7-1.0, means within 0.3 of 0) and one
    sample from each of s of them."""
    g = torch.Generator().manual_seed(seed)
    mu = 0.3 * torch.randn(m, generator=g, dtype=torch.float64)
    lv = 2 * torch.log(0.7 + 0.3 * torch.rand(m, generator=g, dtype=torch.float64))
    z = mu[:s] + torch.exp(0.5 * lv[:s]) * torch.randn(s, generator=g, dtype=torch.float64)
    return z.to(dtype), mu.to(dtype), lv.to(dtype)


@pytest.mark.parametrize("native_loop", [False, pytest.param(True, marks=needs_cc)])
def test_series_match_closed_forms_and_numpy(native_loop):
    t = np.linspace(-1, 1, 1001)
    for k in (0, 1, 2, 7, 40):
        c = np.zeros(k + 1)
        c[k] = 1.0
        # T_k(cos theta) = cos(k theta)
        assert np.abs(C.chebyshev_eval(c, t, native_loop) - np.cos(k * np.arccos(t))).max() < 1e-12
    c = np.random.default_rng(0).standard_normal(300)
    assert np.abs(C.chebyshev_eval(c, t, native_loop) - np.polynomial.chebyshev.chebval(t, c)).max() < 1e-11


def test_coefficients_interpolate_at_the_points_and_recover_a_polynomial():
    c_true = np.array([0.5, -1.0, 0.25, 2.0, 0.0, -0.125])
    x = C.chebyshev_points(-2.0, 3.0, 17)
    t = (2 * x - 1.0) / 5.0
    c = C.chebyshev_coefficients(np.polynomial.chebyshev.chebval(t, c_true))
    assert np.abs(c[:6] - c_true).max() < 1e-13 and np.abs(c[6:]).max() < 1e-13
    f = np.exp(np.sin(3 * x))
    c = C.chebyshev_coefficients(f)
    assert np.abs(C.chebyshev_eval(c, t) - f).max() < 1e-12          # an interpolant: exact at its points
    with pytest.raises(ValueError, match="two points"):
        C.chebyshev_coefficients(np.ones(1))


def test_values_at_rounded_points_are_moved_to_the_exact_points():
    # f sampled at the float32-rounded points: uncorrected, the coefficients carry f' * rounding (~1e-6 for
    # a slope of 5 at |x| ~ 4); one Taylor step brings them to the exact points' coefficients
    lo, hi = -4.3, 4.1
    x = C.chebyshev_points(lo, hi, 65)
    xr = x.astype(np.float32).astype(np.float64)
    f = lambda u: -0.5 * (u / 0.9) ** 2 + 0.1 * np.sin(u)   # noqa: E731
    exact = C.chebyshev_coefficients(f(x))
    naive = C.chebyshev_coefficients(f(xr))
    fixed = C._values_at_points(f(xr), x, xr, lo, hi)
    assert np.abs(naive - exact).max() > 1e-8
    assert np.abs(fixed - exact).max() < 1e-11


@pytest.mark.parametrize("backend,dtype", KERNELS)
def test_interpolant_matches_an_independent_logsumexp_on_a_collapsed_latent(backend, dtype):
    z, mu, lv = collapsed(dtype=dtype)
    val, info = C.interpolated_log_mixture(z, mu, lv, backend)
    assert val is not None and info["n"] <= 65                    # a handful of points instead of 3,000 samples
    ref = reference(z, mu, lv)
    # the promise: within the checks' tolerance everywhere (float32 sums add ~1e-7 of rounding)
    assert np.abs(val.numpy() - ref).max() < (2 if backend == "native" else 1) * C.TOLERANCE
    assert info["check_error"] <= C.TOLERANCE and info["tail"] <= C.TOLERANCE / 4
    again, _ = C.interpolated_log_mixture(z, mu, lv, backend)
    assert torch.equal(val, again)                                 # deterministic: no random numbers


def test_a_posterior_narrower_than_the_point_spacing_is_not_interpolated_over():
    # wide posteriors plus a few very narrow ones, with samples on their spike: the guard (points per
    # narrowest width) asks for more points than it is worth, so the exact sums are used; without the
    # guard a 33-point interpolant would pass its coefficient test and miss the spike
    z, mu, lv = collapsed(m=3000, s=2000)
    mu[:5], lv[:5] = 1.234, 2 * math.log(2e-4)
    z[:40] = 1.234 + 2e-4 * torch.linspace(-2, 2, 40, dtype=torch.float64)
    val, info = C.interpolated_log_mixture(z, mu, lv, "torch")
    assert val is None
    out, k = C.log_mixture(z[:, None], mu[:, None], lv[:, None], [[0]], 256, 4096, "torch", True)
    assert k == 0 and np.abs(out[0].numpy() - reference(z, mu, lv)).max() < 1e-9
    ref = reference(z, mu, lv)
    assert ref[:40].max() - ref[40:].max() > 1.0                  # the spike is real and large


def spiked(at, sample_rows):
    """Collapsed posteriors on [-4, 4] (the two extreme samples pinned there) plus five very narrow ones at
    ``at`` (sigma 2e-4), with the samples of ``sample_rows`` on that spike."""
    z, mu, lv = collapsed(m=3000, s=2000)
    z = z.clamp(-3.9, 3.9)
    z[-2], z[-1] = -4.0, 4.0
    mu[:5], lv[:5] = at, 2 * math.log(2e-4)
    rows = torch.as_tensor(sample_rows)
    z[rows] = at + 2e-4 * torch.linspace(-1.5, 1.5, len(rows), dtype=torch.float64)
    return z, mu, lv


OFF_NODE = 1.00165   # >= 0.0059 (30 sigma of the spike) from every Chebyshev point on [-4, 4], n = 17 ... 1,025


@pytest.mark.parametrize("case", ["guard", "checks", "tail"])
def test_each_safeguard_alone_rejects_an_unresolved_spike(case, monkeypatch):
    # guard: a spike between every point, its samples where no check looks: only the points-per-width
    #   guard (5e4 points asked for) sends it to the exact sums;
    # checks: the guard switched off, the spike between every point (so the series converges), its samples
    #   at checked rows: only the checks see the interpolant is wrong there;
    # tail: the guard off, only the two extremes checked, the spike on the middle point (t = 0 is a point
    #   for every odd n): the series never converges, and only the tail test sees it
    if case == "guard":
        nodes = np.concatenate([C.chebyshev_points(-4, 4, n) for n in (17, 33, 65, 129, 257, 513, 1025)])
        assert np.abs(nodes - OFF_NODE).min() > 0.005
        z, mu, lv = spiked(OFF_NODE, list(range(1, 11)))     # rows 0, 16, 32, ... are the checked ones
    elif case == "checks":
        monkeypatch.setattr(C, "NODES_PER_WIDTH", 0.0)
        z, mu, lv = spiked(OFF_NODE, [0, 16, 32, 48])
    else:
        monkeypatch.setattr(C, "NODES_PER_WIDTH", 0.0)
        monkeypatch.setattr(C, "CHECKS", 2)
        z, mu, lv = spiked(0.0, list(range(1, 11)))
    ref = reference(z, mu, lv)
    assert ref[1:11].max() - np.median(ref) > 1.0 or ref[[0, 16, 32, 48]].max() - np.median(ref) > 1.0
    out, k = C.log_mixture(z[:, None], mu[:, None], lv[:, None], [[0]], 256, 4096, "torch", True)
    assert k == 0 and np.abs(out[0].numpy() - ref).max() < 1e-9


def test_declines_where_points_and_checks_would_cost_more_than_the_sums():
    z, mu, lv = collapsed(m=500, s=100)       # 17 points + 100 checks > half of 100 samples
    assert C.interpolated_log_mixture(z, mu, lv, "torch")[0] is None
    z, mu, lv = collapsed()
    assert C.interpolated_log_mixture(z[:1], mu, lv, "torch")[0] is None
    assert C.interpolated_log_mixture(torch.zeros(1000, dtype=torch.float64), mu, lv, "torch")[0] is None


def structured(sizes=(3, 6, 8, 8), d=6, seed=3):
    """Posteriors of a grid in C order: latents 0-2 code factors 1-3 (narrow), the rest collapsed."""
    n = int(np.prod(sizes))
    g = torch.Generator().manual_seed(seed)
    cl = torch.as_tensor(M.grid_classes(sizes), dtype=torch.float64)
    mu = 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    lv = 2 * torch.log(0.75 + 0.2 * torch.rand(n, d, generator=g, dtype=torch.float64))
    mu[:, :3] = cl[:, 1:] / torch.tensor([5.0, 7.0, 7.0]) * 3 + 0.05 * mu[:, :3]
    lv[:, :3] = 2 * math.log(0.05)
    return mu, lv


@pytest.mark.parametrize("backend,dtype", KERNELS)
def test_mig_with_interpolants_equals_the_exact_sums(backend, dtype, monkeypatch):
    monkeypatch.setattr(C, "CHECKS", 24)    # so that the conditional passes' small subsets qualify too
    sizes = (3, 6, 8, 8)
    mu, lv = structured(sizes)
    kw = dict(n_samples=300, seed=4, dtype=dtype, backend=backend)
    exact = M.mig_chen(mu, lv, sizes, interpolate=False, **kw)
    fast = M.mig_chen(mu, lv, sizes, interpolate=True, **kw)
    done, total = fast.info["interpolated"]
    assert exact.info["interpolated"] == (0, total) and done > 0
    assert np.abs(fast.marginal_entropy - exact.marginal_entropy).max() < 1e-6
    assert np.abs(fast.conditional_entropy - exact.conditional_entropy).max() < 1e-6
    assert abs(fast.mig - exact.mig) < 1e-6 and exact.mig > 0.3
    auto = M.mig_chen(mu, lv, sizes, **kw)
    assert auto.info["interpolated"] == (fast.info["interpolated"] if backend == "native" else (0, total))
    if dtype == torch.float64:      # float64 native (a float32 MIG's fallback) against the float64 reference
        ref = M.mig_chen(mu, lv, sizes, n_samples=300, seed=4, dtype=dtype, backend="torch", interpolate=False)
        assert abs(fast.mig - ref.mig) < 1e-6 and abs(exact.mig - ref.mig) < 1e-6


def test_interpolate_must_be_a_bool_or_auto():
    mu, lv = structured()
    with pytest.raises(ValueError, match="interpolate must be"):
        M.mig_chen(mu, lv, (3, 6, 8, 8), n_samples=50, interpolate="yes")


@needs_cc
def test_interpolated_mig_is_the_same_at_one_and_two_threads(monkeypatch):
    monkeypatch.setattr(C, "CHECKS", 24)
    sizes = (3, 6, 8, 8)
    mu, lv = structured(sizes)
    before = torch.get_num_threads()
    try:
        res = []
        for t in (1, 2):
            torch.set_num_threads(t)
            res.append(M.mig_chen(mu, lv, sizes, n_samples=300, seed=4, dtype=torch.float32, backend="native"))
    finally:
        torch.set_num_threads(before)
    assert res[0].info["interpolated"][0] > 0
    assert np.array_equal(res[0].marginal_entropy, res[1].marginal_entropy)
    assert np.array_equal(res[0].conditional_entropy, res[1].conditional_entropy)

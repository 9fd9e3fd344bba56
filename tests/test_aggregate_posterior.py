"""The streamed minibatch aggregate posterior (isa_lib.aggregate_posterior) against the dense reference of
beta-TCVAE's decomposition (Eq. 3): values, gradients (also against finite differences), block sizes, the
underflow fallback, the polynomial exp2 of the compiled kernel, and training through it."""
import shutil

import pytest
import torch

from isa_lib import objectives as O
from isa_lib.aggregate_posterior import exp2_poly, log_aggregate
from isa_lib.train import TrainConfig, build_vae, train

HAS_COMPILER = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile on a CPU needs a C++ compiler")
HAS_CC = any(shutil.which(c) for c in ("cc", "gcc", "clang"))
needs_cc = pytest.mark.skipif(not HAS_CC, reason="aggregate='native' compiles a C kernel and needs a C compiler")


def posteriors(m=12, d=3, seed=0, dtype=torch.float64, n=1000, estimator="mss"):
    g = torch.Generator().manual_seed(seed)
    mu = (1.5 * torch.randn(m, d, generator=g, dtype=dtype)).requires_grad_()
    logvar = (torch.randn(m, d, generator=g, dtype=dtype) - 2.0).requires_grad_()
    z = (mu + torch.exp(0.5 * logvar) * torch.randn(m, d, generator=g, dtype=dtype)).detach().requires_grad_()
    return z, mu, logvar, O.aggregate_log_weights(m, n, estimator, dtype=dtype)


def dense(z, mu, logvar, logw):
    logq = O.log_q_batch(z, mu, logvar)
    return torch.logsumexp(logq.sum(-1) + logw, 1), torch.logsumexp(logq + logw[:, :, None], 1)


def grads(fn, z, mu, logvar, logw, g_joint, g_marg):
    for t in (z, mu, logvar):
        t.grad = None
    joint, marg = fn(z, mu, logvar, logw)
    loss = (0 if g_joint is None else (joint * g_joint).sum()) + (0 if g_marg is None else (marg * g_marg).sum())
    loss.backward()
    return joint.detach(), marg.detach(), [t.grad.clone() for t in (z, mu, logvar)]


@pytest.mark.parametrize("estimator", ["mss", "mws"])
@pytest.mark.parametrize("which", ["both", "joint", "marginals"])
def test_streamed_matches_dense_values_and_gradients(estimator, which):
    z, mu, logvar, logw = posteriors(estimator=estimator)
    g = torch.Generator().manual_seed(5)
    gj = None if which == "marginals" else torch.randn(12, generator=g, dtype=torch.float64)
    gm = None if which == "joint" else torch.randn(12, 3, generator=g, dtype=torch.float64)
    ref = grads(dense, z, mu, logvar, logw, gj, gm)
    got = grads(lambda *a: log_aggregate(*a, block=5), z, mu, logvar, logw, gj, gm)
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-12)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_streamed_gradients_against_finite_differences():
    z, mu, logvar, logw = posteriors(m=6, d=2, seed=3)
    assert torch.autograd.gradcheck(lambda a, b, c: log_aggregate(a, b, c, logw, block=4), (z, mu, logvar))


@pytest.mark.parametrize("block", [1, 3, 12, 50])
def test_block_size_changes_nothing(block):
    z, mu, logvar, logw = posteriors(seed=1)
    ref = log_aggregate(z, mu, logvar, logw, block=4)
    got = log_aggregate(z, mu, logvar, logw, block=block)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def far_sample():
    """Every posterior narrow around 0 and one sample 50 away: its terms are 2^-(tens of millions) below the
    shared upper bound, so its shifted sum underflows to 0 and must be recomputed with its own maximum."""
    z, mu, logvar, logw = posteriors(m=8, d=2, dtype=torch.float32)
    with torch.no_grad():
        mu.mul_(0.01)
        logvar.fill_(-9.0)
        z.copy_(mu + 0.01 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0)))
        z[3, 1] = 50.0
    return z, mu, logvar, logw


@pytest.mark.parametrize("kernel", ["streamed", pytest.param("native", marks=needs_cc)])
def test_a_sample_far_from_every_posterior_falls_back_to_its_exact_maximum(kernel):
    z, mu, logvar, logw = far_sample()
    g = torch.ones(8), torch.ones(8, 2)
    ref = grads(dense, z, mu, logvar, logw, *g)
    got = grads(lambda *a: log_aggregate(*a, kernel=kernel), z, mu, logvar, logw, *g)
    assert got[1][3, 1] < -1e6 and torch.isfinite(got[1]).all()
    torch.testing.assert_close(got[1], ref[1], rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-6, atol=1e-4)
    for a, b in zip(got[2], ref[2]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3 * float(b.abs().max()))


@pytest.fixture
def as_on_an_accelerator(monkeypatch):
    """The accelerator's fallback on a CPU: every sum recomputed and selected with torch.where, no mask read."""
    import isa_lib.aggregate_posterior as A
    monkeypatch.setattr(A, "_reads_are_free", lambda device: False)


@pytest.mark.parametrize("block", [1, 3, 32])
def test_the_accelerator_fallback_gives_the_cpu_fallback_numbers(as_on_an_accelerator, block):
    """Without reading the mask (no host-device sync), the far sample gets the same log q(z_ik), exact maximum
    and gradients as the CPU's cell-by-cell recomputation; the sums that need no fallback are the same bits."""
    import isa_lib.aggregate_posterior as A
    z, mu, logvar, logw = far_sample()
    g = torch.ones(8), torch.ones(8, 2)
    got = grads(lambda *a: log_aggregate(*a, block=block), z, mu, logvar, logw, *g)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "_reads_are_free", lambda device: True)
        ref = grads(lambda *a: log_aggregate(*a, block=block), z, mu, logvar, logw, *g)
    assert got[1][3, 1] < -1e6
    torch.testing.assert_close(got[1], ref[1], rtol=1e-6, atol=0)
    assert torch.equal(got[0], ref[0])
    mask = torch.ones(8, 2, dtype=torch.bool)
    mask[3, 1] = False
    assert torch.equal(got[1][mask], ref[1][mask])
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()))
    # ordinary posteriors, no sum below 2^-80: the same bits as the CPU path
    z, mu, logvar, logw = posteriors(seed=3)
    got = grads(log_aggregate, z, mu, logvar, logw, torch.ones(12), torch.ones(12, 3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "_reads_are_free", lambda device: True)
        ref = grads(log_aggregate, z, mu, logvar, logw, torch.ones(12), torch.ones(12, 3))
    assert all(torch.equal(a, b) for a, b in zip(got[:2] + tuple(got[2]), ref[:2] + tuple(ref[2])))


def test_every_exact_marginal_at_once_equals_each_alone():
    """_exact_marginals (the accelerator's fallback) is _exact_marginal (the CPU's) for every cell and block."""
    from isa_lib.aggregate_posterior import _exact_marginal, _exact_marginals
    z, mu, logvar, logw = (t.detach() for t in posteriors(m=7, d=3, seed=5))
    for block in (1, 4, 7):
        tops, sums = _exact_marginals(z, mu, logvar, logw, block)
        for k in range(3):
            for i in range(7):
                top, s = _exact_marginal(z, mu, logvar, logw, k, i)
                torch.testing.assert_close(tops[k, i], top, rtol=1e-14, atol=0)
                torch.testing.assert_close(sums[k, i], s, rtol=1e-14, atol=0)
                assert 1.0 <= float(s) <= 7.0     # the largest term is 2^0 = 1, and there are 7 terms


def test_exp2_poly_is_within_four_ulps_of_exp2():
    x = torch.linspace(-125.9, 0.0, 400_001, dtype=torch.float64)
    for dtype, ulps in ((torch.float32, 4), (torch.float64, None)):
        got, ref = exp2_poly(x.to(dtype)).double(), torch.exp2(x.to(dtype).double())
        rel = ((got - ref) / ref).abs().max().item()
        assert rel < (ulps * torch.finfo(dtype).eps if ulps else 1e-8), (dtype, rel)
    # below the smallest normal exponent: 2^-126 (float32), never 0 or a subnormal
    assert exp2_poly(torch.tensor([-200.0, -126.0])).tolist() == [2.0 ** -126] * 2


def test_bad_shapes_and_blocks_are_named():
    z, mu, logvar, logw = posteriors()
    with pytest.raises(ValueError, match=r"logw be \(M, M\)"):
        log_aggregate(z, mu, logvar, logw[:5])
    with pytest.raises(ValueError, match="block must be a positive integer"):
        log_aggregate(z, mu, logvar, logw, block=0)
    with pytest.raises(ValueError, match="unknown aggregate kernel 'fast'"):
        TrainConfig(objective="beta_tcvae", aggregate="fast")
    with pytest.raises(ValueError, match="aggregate 'native' runs on a CPU, not on 'cuda'"):
        TrainConfig(objective="beta_tcvae", aggregate="native", device="cuda")
    from isa_lib.experiments import RunConfig
    with pytest.raises(ValueError, match="aggregate 'native' runs on a CPU, not on 'cuda'"):
        RunConfig(model="beta_tcvae", aggregate="native", device="cuda")


@pytest.mark.parametrize("aggregate", ["streamed", pytest.param("compiled", marks=needs_compiler),
                                       pytest.param("native", marks=needs_cc)])
def test_decomposed_kl_is_the_same_estimate_with_every_kernel(aggregate):
    z, mu, logvar, _ = posteriors(m=72, d=4, dtype=torch.float32, seed=2)     # blocks of 32, 32 and 8 rows
    x = torch.zeros(72, 1, 2, 2)
    out = O.Outputs(x, mu, logvar, z, torch.zeros_like(x))
    prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(4), torch.ones(4)), 1)
    ref = O.decomposed_kl(out, prior, 5000)
    got = O.decomposed_kl(out, prior, 5000, aggregate=aggregate)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-4)
    loss = {}
    for name, terms in (("ref", ref), ("got", got)):
        for t in (z, mu, logvar):
            t.grad = None
        (terms["mi"] + 3.0 * terms["tc"] + terms["dwkl"]).sum().backward(inputs=[z, mu, logvar])
        loss[name] = [t.grad.clone() for t in (z, mu, logvar)]
    for a, b in zip(loss["got"], loss["ref"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("kernel", [pytest.param("compiled", marks=needs_compiler),
                                    pytest.param("native", marks=needs_cc)])
def test_training_with_a_fast_kernel_follows_the_dense_one(kernel):
    images = (torch.rand(256, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.7).to(torch.uint8)
    hist = {}
    for aggregate in ("dense", kernel):
        model = build_vae("mlp", 4, seed=0, net_size={"hidden": 32, "image_size": 16})
        cfg = TrainConfig(objective="beta_tcvae", beta=4.0, batch_size=64, epochs=2, log_every=1,
                          aggregate=aggregate)
        hist[aggregate] = train(model, images, cfg, progress=False)
    a = torch.tensor([h["loss"] for h in hist["dense"]])
    b = torch.tensor([h["loss"] for h in hist[kernel]])
    assert len(a) == 8 and torch.isfinite(b).all()
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-3)


def test_half_precision_inputs_are_computed_in_float32():
    z, mu, logvar, logw = posteriors(m=16, d=2, dtype=torch.float32, seed=4)
    ref = log_aggregate(z, mu, logvar, logw)
    got = log_aggregate(z.bfloat16(), mu.bfloat16(), logvar.bfloat16(), logw)
    assert got[0].dtype == torch.float32
    torch.testing.assert_close(got[1], ref[1], rtol=0.05, atol=0.1)     # bfloat16 inputs: 3 digits
    with pytest.raises(TypeError, match="float32 or float64"):
        exp2_poly(torch.zeros(3, dtype=torch.bfloat16))


@needs_cc
@pytest.mark.parametrize("which", ["both", "joint", "marginals"])
def test_native_kernel_matches_dense_values_and_gradients(which):
    z, mu, logvar, logw = posteriors(m=45, d=3, dtype=torch.float32, seed=6)     # 45: no multiple of a vector
    g = torch.Generator().manual_seed(7)
    gj = None if which == "marginals" else torch.randn(45, generator=g)
    gm = None if which == "joint" else torch.randn(45, 3, generator=g)
    ref = grads(dense, z, mu, logvar, logw, gj, gm)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):                          # rows shared out between threads: same numbers
            torch.set_num_threads(threads)
            got = grads(lambda *a: log_aggregate(*a, kernel="native"), z, mu, logvar, logw, gj, gm)
            torch.testing.assert_close(got[0], ref[0], rtol=1e-6, atol=1e-5)
            torch.testing.assert_close(got[1], ref[1], rtol=1e-6, atol=1e-5)
            for a, b in zip(got[2], ref[2]):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    finally:
        torch.set_num_threads(before)


def test_kernels_refuse_what_they_cannot_compute():
    z64, mu64, lv64, w64 = posteriors()
    with pytest.raises(ValueError, match="'native' computes float32 on a CPU"):
        log_aggregate(z64, mu64, lv64, w64, kernel="native")
    with pytest.raises(ValueError, match="unknown kernel 'fast'"):
        log_aggregate(z64, mu64, lv64, w64, kernel="fast")

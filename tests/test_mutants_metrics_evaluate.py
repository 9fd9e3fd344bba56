"""Tests written against mutants of ``isa_lib/metrics/_evaluate.py`` and ``isa_lib/metrics/_elbo.py`` that
survived the rest of the suite (mutmut 3.8.1; tests/README.md, "Mutation testing").  They concern the paper's
numbers of Sec. 4 for a trained model: the evaluation driver (the Chen MIG, the reconstruction term, the Eq. 3
decomposition and the further scores of one encoding of the grid) and the ELBO terms themselves (Eq. 1-3:
the KL split of Chen et al. 2018 and the Bernoulli reconstruction term's input handling).  Every model and
dataset is a few lines of numpy/torch: the encoder reads its posterior means off the pixels."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from isa_lib import metrics as M
from isa_lib.metrics import _elbo, _evaluate

LOG_2PI = math.log(2 * math.pi)
HAS_NATIVE = __import__("isa_lib.native", fromlist=["available"]).available()


# ------------------------------------------------------------------ tiny models and grids
def grid(sizes=(4, 5), noise=1, seed=0, **attrs):
    """A dataset-like grid of float images (N, 1, 1, K + noise) in [0, 1]: pixel k codes factor k (with some
    jitter), the last ``noise`` pixels code nothing."""
    cl = M.grid_classes(sizes)
    n = len(cl)
    rng = np.random.default_rng(seed)
    cols = [(cl[:, k] + rng.uniform(0.2, 0.8, n)) / sizes[k] for k in range(len(sizes))]
    cols += [rng.uniform(0.0, 1.0, n) for _ in range(noise)]
    images = torch.tensor(np.stack(cols, 1), dtype=torch.float32).reshape(n, 1, 1, -1)
    return SimpleNamespace(images=images, factor_sizes=tuple(sizes), **attrs)


def encode(x, logvar=-3.0):
    """Posterior means read off the pixels, one latent per pixel, a fixed log-variance."""
    f = x.flatten(1)
    return 4.0 * f - 2.0, torch.full_like(f, logvar)


def decode(z):
    return (1.5 * z).reshape(len(z), 1, 1, -1)


def std_normal(z):
    """log N(z; 0, I), summed over latents: (S,)."""
    return (-0.5 * (z ** 2 + LOG_2PI)).sum(1)


def spy(record, name, fn):
    """fn, recording its keyword arguments under ``name``."""
    def wrapped(*a, **k):
        record[name] = dict(k)
        return fn(*a, **k)
    return wrapped


# ------------------------------------------------------------------ the evaluation driver (_evaluate.py)
def test_each_number_of_the_driver_is_its_metric_with_the_driver_s_arguments():
    """evaluate_model = the MIG (mig_chen), the reconstruction term, the Eq. 3 terms (elbo_decomposition) and
    score_codes, each on the posteriors of the grid with the caller's n_samples, groups, seed and
    score_points (which all change the numbers here), and seed 0 by default."""
    data = grid((4, 5), noise=1, seed=1)
    sizes = data.factor_sizes
    mu, lv = encode(data.images)
    groups, kw = [[0, 2], [1]], dict(n_samples=7, seed=3)
    out = M.evaluate_model(encode, data, decode=decode, log_prior_fn=std_normal, groups=groups,
                           scores=["mig_histogram"], score_points=10, **kw)
    mig = M.mig_chen(mu, lv, sizes, groups=groups, **kw)
    assert out["mig"] == mig.mig and np.array_equal(out["mig_per_factor"], mig.per_factor)
    assert out["mig_factors"] == [0, 1] and out["mig_dtype"] == "float64" and out["mig_backend"] == "torch"
    for other in (dict(groups=groups, n_samples=None, seed=3), dict(n_samples=7, seed=3),
                  dict(groups=groups, n_samples=7, seed=0)):
        assert M.mig_chen(mu, lv, sizes, **other).mig != mig.mig
    assert out["reconstruction"] == M.reconstruction_log_likelihood(encode, decode, data, seed=3)
    elbo = M.elbo_decomposition(mu, lv, std_normal, **kw)
    assert elbo["n_samples"] == 7
    for key in ("index_code_mi", "total_correlation", "dimwise_kl", "kl", "n_samples"):
        assert out[key] == elbo[key], key
    assert M.elbo_decomposition(mu, lv, std_normal, n_samples=7, seed=0)["kl"] != elbo["kl"]
    classes = M.grid_classes(sizes)
    scores = M.score_codes(mu, classes, ["mig_histogram"], factors=[0, 1], n_points=10, seed=3)
    assert out["scores"] == scores
    for other in (dict(n_points=None, seed=3), dict(n_points=10, seed=0)):
        assert M.score_codes(mu, classes, ["mig_histogram"], factors=[0, 1], **other) != scores

    default = M.evaluate_model(encode, data, log_prior_fn=std_normal, n_samples=7)
    assert default["mig"] == M.mig_chen(mu, lv, sizes, n_samples=7, seed=0).mig
    assert default["kl"] == M.elbo_decomposition(mu, lv, std_normal, n_samples=7, seed=0)["kl"]


def test_the_driver_takes_chen_s_ten_thousand_samples_and_scores_ten_thousand_rows_by_default(monkeypatch):
    """Chen et al.'s 10,000 samples per entropy estimate for the MIG and the Eq. 3 terms, and 10,000 rows for
    the row-based scores, when not told otherwise (observed on what the driver hands the metrics: a grid
    larger than 10,000 rows is too slow for the suite)."""
    seen = {}
    for name in ("mig_chen", "elbo_decomposition", "score_codes"):
        monkeypatch.setattr(_evaluate, name, spy(seen, name, getattr(_evaluate, name)))
    out = M.evaluate_model(encode, grid((3, 4)), log_prior_fn=std_normal, scores=["mig_histogram"])
    assert seen["mig_chen"]["n_samples"] == 10000 and seen["elbo_decomposition"]["n_samples"] == 10000
    assert seen["score_codes"]["n_points"] == 10000
    assert out["n_samples"] == 12                           # all rows of a smaller grid


def test_every_stage_of_the_driver_runs_on_the_device_it_is_given(monkeypatch):
    """device: the encoder gets its images there, and the MIG, the reconstruction term and the Eq. 3 terms are
    asked to compute there ("meta" stands in for an accelerator; the metrics themselves then run on the CPU)."""
    data = grid((3, 4))
    table = encode(data.images)
    seen, where = {}, []

    def enc(x):
        where.append(x.device.type)
        s = (len(where) - 1) * 5
        return table[0][s:s + len(x)], table[1][s:s + len(x)]

    def on_cpu(name, fn):
        def wrapped(*a, **k):
            seen[name] = str(k.get("device"))
            return fn(*a, **dict(k, device=None))
        return wrapped

    for name in ("mig_chen", "reconstruction_log_likelihood", "elbo_decomposition"):
        monkeypatch.setattr(_evaluate, name, on_cpu(name, getattr(_evaluate, name)))
    out = M.evaluate_model(enc, data, decode=decode, log_prior_fn=std_normal, n_samples=6, batch_size=5,
                           device="meta")
    assert where == ["meta"] * 3
    assert seen == {"mig_chen": "meta", "reconstruction_log_likelihood": "meta", "elbo_decomposition": "meta"}
    assert out["mig"] == M.mig_chen(*table, (3, 4), n_samples=6).mig


def test_the_encoder_sees_the_grid_once_in_batches_of_batch_size_1024_by_default():
    data = grid((30, 40), noise=0)                         # 1,200 images
    sizes = []

    def enc(x):
        sizes.append(len(x))
        return encode(x)

    M.evaluate_model(enc, data, n_samples=20)
    assert sizes == [1024, 176]
    sizes.clear()
    small = grid((3, 4))
    M.evaluate_model(enc, small, decode=decode, n_samples=6, batch_size=5)
    assert sizes == [5, 5, 2]                              # the reconstruction term reuses the posteriors


def test_the_mig_precision_is_checked_by_name_before_anything_is_encoded():
    def never(x):
        raise AssertionError("encoded before the check")

    with pytest.raises(ValueError, match=r"^mig_dtype must be torch.float32 or torch.float64, got torch.float16$"):
        M.evaluate_model(never, grid((3, 4)), mig_dtype=torch.float16)


def test_factors_are_resolved_against_the_dataset_s_own_names():
    """Factors by name use the dataset's factor_names; a dataset whose name has MIG_FACTORS scores those
    (found in its own factor order) unless factors are given; a dataset with neither a name nor
    factor_names scores every factor with more than one value."""
    sizes = (2, 3, 4)
    kw = dict(n_samples=10)
    named = grid(sizes, factor_names=("size", "shape", "hue"))
    mu, lv = encode(named.images)
    out = M.evaluate_model(encode, named, factors=["hue", "size"], **kw)
    assert out["mig_factors"] == [2, 0]
    assert np.array_equal(out["mig_per_factor"], M.mig_chen(mu, lv, sizes, factors=[2, 0], **kw).per_factor)
    # cars3d's MIG factors are azimuth and elevation; here they come first and last (not 1 and 2)
    cars = grid(sizes, name="cars3d", factor_names=("azimuth", "identity", "elevation"))
    assert M.evaluate_model(encode, cars, **kw)["mig_factors"] == [0, 2]
    assert M.evaluate_model(encode, cars, factors=[1], **kw)["mig_factors"] == [1]
    bare = grid((3, 1, 4))
    assert not hasattr(bare, "name") and not hasattr(bare, "factor_names")
    assert M.evaluate_model(encode, bare, **kw)["mig_factors"] == [0, 2]


def test_a_float32_mig_is_computed_in_float32_by_the_kernel_asked_for():
    """mig_dtype=float32 and mig_backend="torch": the float32 torch MIG (not the float64 one, whose last bits
    differ), reported as "torch" without "+chebyshev" (interpolation is off on the torch path); an unknown
    backend is refused by name."""
    data = grid((4, 5))
    mu, lv = encode(data.images)
    out = M.evaluate_model(encode, data, n_samples=9, seed=2, mig_dtype=torch.float32, mig_backend="torch")
    ref = M.mig_chen(mu, lv, data.factor_sizes, n_samples=9, seed=2, dtype=torch.float32, backend="torch")
    assert out["mig"] == ref.mig and out["mig_dtype"] == "float32" and out["mig_backend"] == "torch"
    assert ref.mig != M.mig_chen(mu, lv, data.factor_sizes, n_samples=9, seed=2).mig
    with pytest.raises(ValueError, match=r"^unknown MIG backend 'gpu'; choose one of \['auto', 'native', 'torch'\]$"):
        M.evaluate_model(encode, data, n_samples=9, mig_backend="gpu")


@pytest.mark.skipif(not HAS_NATIVE, reason="the native kernel needs a C compiler")
def test_posteriors_too_narrow_for_float32_go_to_float64_through_the_native_kernel_only_under_auto():
    """A float32 MIG asked of posteriors float32 cannot resolve (std 4.5e-5 at |mu| up to 2) is computed in
    float64; under mig_backend="auto" through the native kernel's float64 differences, under "torch" by
    the torch reference."""
    data = grid((3, 4))
    narrow = lambda x: encode(x, logvar=-20.0)         # noqa: E731
    mu, lv = narrow(data.images)
    for backend in ("auto", "torch"):
        out = M.evaluate_model(narrow, data, n_samples=8, mig_dtype=torch.float32, mig_backend=backend)
        used = "native" if backend == "auto" else "torch"
        assert out["mig_dtype"] == "float64" and out["mig_backend"] == used, (backend, out)
        ref = M.mig_chen(mu, lv, data.factor_sizes, n_samples=8, dtype=torch.float64, backend=used)
        assert out["mig"] == ref.mig


def test_the_float64_fallback_on_an_accelerator_does_not_ask_for_the_cpu_kernel(monkeypatch):
    """The encoder's outputs come back to the CPU whatever the device, so the driver must choose the MIG's
    kernel by the device it was given: on an accelerator ("meta" stands in) the float64 fallback of a float32
    MIG keeps backend "auto" (the torch path there), and does not ask for the CPU-only native kernel, which
    refused with "backend 'native' computes float32 or float64 on a CPU" before this was fixed.  Runs
    without a C compiler too: the driver is made to believe the kernel is there."""
    data = grid((3, 4))
    table = encode(data.images, logvar=-20.0)
    narrow = lambda x: (table[0][:len(x)], table[1][:len(x)])   # noqa: E731  (one batch: 12 < 1024)
    seen = {}

    def on_cpu(*a, **k):
        seen.update(k)
        return M.mig_chen(*a, **dict(k, device=None))

    monkeypatch.setattr(_evaluate, "native_usable", lambda: True)
    monkeypatch.setattr(_evaluate, "mig_chen", on_cpu)
    out = M.evaluate_model(narrow, data, n_samples=8, mig_dtype=torch.float32, device="meta")
    assert seen["device"] == "meta" and seen["dtype"] == torch.float64 and seen["backend"] == "auto"
    assert out["mig_dtype"] == "float64"
    seen.clear()
    M.evaluate_model(narrow, data, n_samples=8, mig_dtype=torch.float32, device="cpu")
    assert seen["backend"] == "native" and seen["dtype"] == torch.float64     # the CPU keeps the fast kernel


@pytest.mark.skipif(not HAS_NATIVE, reason="the native kernel needs a C compiler")
def test_the_backend_names_the_chebyshev_interpolants_when_a_pass_used_them():
    """A collapsed latent (posteriors wide against their samples' range) over 400 images: the native float32
    MIG interpolates its marginal pass, reported as "native+chebyshev"."""
    data = grid((4, 100), noise=1, seed=2)

    def collapsed(x):
        mu, lv = encode(x)
        mu[:, 2] = 0.1 * mu[:, 2]
        lv[:, 2] = 2 * math.log(0.8)
        return mu, lv

    out = M.evaluate_model(collapsed, data, n_samples=400, mig_dtype=torch.float32, mig_backend="auto")
    assert out["mig_backend"] == "native+chebyshev" and out["mig_dtype"] == "float32"


# ------------------------------------------------------------------ the ELBO terms (_elbo.py, Eq. 1-3)
def direct_terms(mu, logvar, seed, n_samples):
    """Chen et al.'s estimator written out: z = mu + sigma eps (eps from a CPU generator seeded with ``seed``),
    then a random subset of n_samples rows of the same generator; log q(z|x), log q(z) and log q(z_j) by
    log-sum-exp over every posterior; log p(z) of a standard normal."""
    gen = torch.Generator().manual_seed(seed)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    sel = torch.randperm(len(mu), generator=gen)[:n_samples]
    zs = z[sel]
    dens = -0.5 * ((zs[:, None, :] - mu[None]) ** 2 / logvar.exp()[None] + logvar[None] + LOG_2PI)  # (S, N, D)
    log_qzx = dens[torch.arange(len(sel)), sel].sum(1)
    log_qz = torch.logsumexp(dens.sum(2), 1) - math.log(len(mu))
    log_qzj = torch.logsumexp(dens, 1) - math.log(len(mu))
    log_pz = std_normal(zs)
    return {"index_code_mi": float((log_qzx - log_qz).mean()),
            "total_correlation": float((log_qz - log_qzj.sum(1)).mean()),
            "dimwise_kl": float((log_qzj.sum(1) - log_pz).mean()), "kl": float((log_qzx - log_pz).mean())}


def test_the_eq3_terms_equal_the_estimator_written_out_and_follow_seed_generator_and_subset():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(30, 2, generator=g, dtype=torch.float64)
    mu[:, 1] += 0.7 * mu[:, 0]
    lv = torch.randn(30, 2, generator=g, dtype=torch.float64) - 1.0
    out = M.elbo_decomposition(mu, lv, std_normal, n_samples=12, seed=4)
    ref = direct_terms(mu, lv, 4, 12)
    assert out["n_samples"] == 12
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert out == M.elbo_decomposition(mu, lv, std_normal, n_samples=12, seed=0,
                                       generator=torch.Generator().manual_seed(4))
    default = M.elbo_decomposition(mu, lv, std_normal, n_samples=12)
    assert default == M.elbo_decomposition(mu, lv, std_normal, n_samples=12, seed=0)
    assert default["kl"] == pytest.approx(direct_terms(mu, lv, 0, 12)["kl"], rel=1e-12)
    assert default["kl"] != M.elbo_decomposition(mu, lv, std_normal, n_samples=12, seed=1)["kl"]


def test_identical_posteriors_have_no_index_code_mi_nor_total_correlation_and_their_closed_form_kl():
    """With every posterior N(m, diag s^2), q(z) = q(z|x) = prod_j q(z_j): the index-code MI and the total
    correlation are zero (to rounding) and the KL is Monte Carlo around 0.5 sum_j (s_j^2 + m_j^2 - 1 - log s_j^2),
    per latent with a per-latent prior."""
    n = 1500
    m = torch.tensor([0.5, -1.0], dtype=torch.float64)
    lv = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    kl_j = 0.5 * (lv.exp() + m ** 2 - 1 - lv)
    out = M.elbo_decomposition(m.expand(n, 2), lv.expand(n, 2), torch.distributions.Normal(0.0, 1.0), seed=5)
    assert out["n_samples"] == n
    assert abs(out["index_code_mi"]) < 1e-10 and abs(out["total_correlation"]) < 1e-10
    assert abs(out["kl"] - out["dimwise_kl"]) < 1e-10
    assert out["kl"] == pytest.approx(float(kl_j.sum()), abs=0.15)     # ~0.04 nats of Monte Carlo spread
    np.testing.assert_allclose(out["dimwise_kl_per_latent"], kl_j.numpy(), atol=0.15)


def test_the_eq3_terms_take_ten_thousand_samples_by_default():
    mu = torch.linspace(-3, 3, 10_001, dtype=torch.float64)[:, None]
    out = M.elbo_decomposition(mu, torch.full_like(mu, -4.0), std_normal, row_chunk=10_001)
    assert out["n_samples"] == 10_000


def test_the_default_row_chunk_is_4096_rows():
    """Chunks bound memory; the sums across chunks are added in another order, so the last bits of the terms
    depend on the chunk: the default's numbers are bit for bit those of row_chunk=4096 (and not 4097's)."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4200, 2, generator=g, dtype=torch.float64)
    lv = torch.randn(4200, 2, generator=g, dtype=torch.float64) - 2.0
    out = M.elbo_decomposition(mu, lv, std_normal, n_samples=300)
    assert out == M.elbo_decomposition(mu, lv, std_normal, n_samples=300, row_chunk=4096)
    assert out != M.elbo_decomposition(mu, lv, std_normal, n_samples=300, row_chunk=4097)


def test_the_prior_s_output_precision_does_not_change_the_terms():
    """log p(z) is taken in the working precision: a prior returning float64 gives the numbers of the same
    prior rounded to float32 when the terms are formed in float32 (joint and per-latent priors)."""
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(40, 3, generator=g)
    lv = torch.randn(40, 3, generator=g) * 0.3 - 1.0
    joint64 = lambda z: std_normal(z.double())                                  # noqa: E731
    per64 = lambda z: -0.5 * (z.double() ** 2 + LOG_2PI)                         # noqa: E731
    kw = dict(n_samples=25, seed=2, dtype=torch.float32)
    a = M.elbo_decomposition(mu, lv, joint64, **kw)
    b = M.elbo_decomposition(mu, lv, lambda z: joint64(z).float(), **kw)
    assert a == b
    p = M.elbo_decomposition(mu, lv, per64, **kw)["dimwise_kl_per_latent"]
    q = M.elbo_decomposition(mu, lv, lambda z: per64(z).float(), **kw)["dimwise_kl_per_latent"]
    assert np.array_equal(p, q)


@pytest.mark.parametrize("shape", [(6, 1), (7,), (6, 3), (2, 6)])
def test_a_prior_of_the_wrong_shape_is_refused_naming_both_shapes(shape):
    """log_prior_fn must give (S,) or (S, D) for S samples of D latents (here S = 6, D = 2)."""
    mu = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(6, 2)
    msg = rf"^log_prior_fn returned shape \({', '.join(map(str, shape))},?\); expected \(6,\) or \(6, 2\)$"
    with pytest.raises(ValueError, match=msg):
        M.elbo_decomposition(mu, torch.zeros_like(mu), lambda z: torch.zeros(shape, dtype=z.dtype), n_samples=None)


def test_the_eq3_terms_are_computed_on_the_device_asked(monkeypatch):
    """device: the posteriors are moved there before their samples are drawn ("meta" stands in for an
    accelerator; the test stops there)."""
    class Seen(Exception):
        pass

    def draw(mu, logvar, gen):
        raise Seen(mu.device.type, logvar.device.type)

    monkeypatch.setattr(_elbo, "_draw_z", draw)
    mu = torch.zeros(5, 2)
    with pytest.raises(Seen) as err:
        M.elbo_decomposition(mu, torch.zeros_like(mu), std_normal, device="meta")
    assert err.value.args == ("meta", "meta")


# ------------------------------------------------------------------ images in, reconstruction (_elbo.py)
def test_images_of_every_container_and_scale_reach_the_encoder_as_floats_in_the_unit_interval():
    """encode_dataset and reconstruction_log_likelihood take a torch tensor, a numpy array, a bfloat16 tensor,
    float images with a max_value, or an object with ``images`` and no ``max_value``; all give the numbers of
    the same images as float32 in [0, 1]."""
    u8 = torch.tensor(M.grid_classes((4, 3)), dtype=torch.uint8).reshape(12, 1, 1, 2) * 60   # up to 180
    unit = u8.float() / 200.0
    seen = []

    def enc(x):
        seen.append(x)
        return encode(x)

    ref_mu, ref_lv = M.encode_dataset(encode, unit)
    ref_ll = M.reconstruction_log_likelihood(encode, decode, unit, seed=1)
    for data, max_value in ((u8, 200), (u8.numpy(), 200), (u8.float(), 200), (SimpleNamespace(images=unit), None),
                            (SimpleNamespace(images=u8.numpy(), max_value=200), None)):
        seen.clear()
        mu, lv = M.encode_dataset(enc, data, max_value=max_value)
        assert all(x.dtype == torch.float32 for x in seen) and torch.equal(torch.cat(seen), unit)
        assert torch.equal(mu, ref_mu) and torch.equal(lv, ref_lv)
        ll = M.reconstruction_log_likelihood(encode, decode, data, max_value=max_value, seed=1)
        assert ll == pytest.approx(ref_ll, rel=1e-6)
    half = torch.tensor([[0.0, 0.5], [1.0, 0.25]]).reshape(2, 1, 1, 2)
    seen.clear()
    M.encode_dataset(enc, half.to(torch.bfloat16))
    assert seen[0].dtype == torch.float32 and torch.equal(seen[0], half)


def test_integer_images_without_a_scale_are_refused_with_the_whole_message():
    with pytest.raises(ValueError, match=r"^integer images need max_value \(the value that maps to 1\.0\)$"):
        M.encode_dataset(encode, torch.zeros(3, 1, 2, 2, dtype=torch.uint8))


def test_the_encoder_gets_its_images_on_the_device_asked():
    where = []

    def enc(x):
        where.append((x.device.type, x.dtype))
        return torch.zeros(len(x), 2), torch.zeros(len(x), 2)

    for images, mv in ((torch.zeros(5, 1, 2, 2, dtype=torch.uint8), 255), (torch.zeros(5, 1, 2, 2), None)):
        where.clear()
        mu, _ = M.encode_dataset(enc, images, batch_size=3, device="meta", max_value=mv)
        assert where == [("meta", torch.float32)] * 2 and mu.shape == (5, 2)


# ------------------------------------------------------------------ named errors of the ELBO terms' inputs
@pytest.mark.parametrize("n_samples", [0, -3, 0.5])
def test_the_elbo_terms_and_mixture_entropies_refuse_fewer_than_one_sample(n_samples):
    """n_samples 0 gave NaN terms and -3 silently took all but the last three rows: now named, before the
    posteriors are touched (the same check and words as the MIG's)."""
    mu, lv = encode(grid((3, 4)).images)
    msg = rf"^n_samples must be positive, got {n_samples}$"
    with pytest.raises(ValueError, match=msg):
        M.elbo_decomposition(mu, lv, std_normal, n_samples=n_samples)
    with pytest.raises(ValueError, match=msg):
        M.mixture_entropy(mu, lv, n_samples=n_samples)
    assert M.elbo_decomposition(mu, lv, std_normal, n_samples=1)["n_samples"] == 1


def test_an_empty_dataset_and_bad_counts_get_named_errors_in_encoding_and_reconstruction():
    """No images: encode_dataset failed inside torch.cat and the reconstruction term divided by zero; a batch
    size of 0 failed inside range(), a negative one or no draws divided by zero, a float one failed with a
    TypeError: each now names the argument."""
    data = grid((3, 4))
    empty = data.images[:0]
    with pytest.raises(ValueError, match=r"^the dataset has no images \(images of shape \(0, 1, 1, 3\)\)$"):
        M.encode_dataset(encode, empty)
    with pytest.raises(ValueError, match=r"^the dataset has no images"):
        M.reconstruction_log_likelihood(encode, decode, empty)
    with pytest.raises(ValueError, match=r"^the dataset has no images \(images of shape \(\)\)$"):
        M.encode_dataset(encode, torch.tensor(0.5))            # a scalar is not a batch of images
    assert M.encode_dataset(lambda x: (x[:, None], x[:, None]), torch.rand(3))[0].shape == (3, 1)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match=rf"^batch_size must be an integer >= 1, got {bad!r}$"):
            M.encode_dataset(encode, data, batch_size=bad)
        with pytest.raises(ValueError, match=rf"^batch_size must be an integer >= 1, got {bad!r}$"):
            M.reconstruction_log_likelihood(encode, decode, data, batch_size=bad)
        with pytest.raises(ValueError, match=rf"^n_samples must be an integer >= 1, got {bad!r}$"):
            M.reconstruction_log_likelihood(encode, decode, data, n_samples=bad)
    assert np.isfinite(M.reconstruction_log_likelihood(encode, decode, data, n_samples=1, batch_size=1))


class _Recording(torch.nn.Module):
    """A module whose parameter lives on ``device`` ("meta" stands in for a GPU); it records where its inputs
    come from and answers with CPU tensors (meta tensors hold no values to score)."""

    def __init__(self, device, fn):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1, device=device))
        self.fn, self.seen = fn, []

    def forward(self, x):
        self.seen.append(x.device.type)
        return self.fn(x.cpu() if x.device.type != "meta" else torch.zeros(x.shape))


def test_encoding_and_reconstruction_default_to_the_device_of_the_model(monkeypatch):
    """Without ``device``, an encoder (decoder) trained on a GPU gets its batches on its own device, not the
    CPU's ("Expected all tensors to be on the same device" in chapter 06's retraining before); an explicit
    device still wins, and a plain function still runs on the CPU."""
    data = grid((3, 4))
    enc = _Recording("meta", encode)
    mu, lv = M.encode_dataset(enc, data, batch_size=5)
    assert enc.seen == ["meta"] * 3 and mu.shape == (12, 3) and mu.device.type == "cpu"
    M.encode_dataset(enc, data, device="cpu")
    assert enc.seen[3:] == ["cpu"]
    dec = _Recording("meta", decode)
    from isa_lib.metrics import _elbo
    monkeypatch.setattr(_elbo, "bernoulli_log_likelihood", lambda x, logits: torch.zeros(len(x)))  # meta: no values
    binary = (data.images > 0.5).to(torch.uint8)               # whole numbers: checked before they move
    M.reconstruction_log_likelihood(None, dec, binary, max_value=1, posteriors=encode(data.images))
    assert dec.seen == ["meta"]
    seen = []
    M.encode_dataset(lambda x: (seen.append(x.device.type), encode(x))[1], data)
    assert seen == ["cpu"]

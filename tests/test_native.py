"""The native kernels' shared build, cache and load (isa_lib.native), and the fused MIG kernel
(isa_lib/_mig_kernel.c, Chen et al.'s estimator of Sec. 4) against a plain float64 reference."""
import math
import os
import shutil
import stat

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from isa_lib import metrics as M
from isa_lib import native
from isa_lib.metrics import _mixture

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernels need a C compiler")


def reference_log_mixture(z, mu, lv, groups):
    """log (1/M sum_m prod_{j in g} N(z_sj; mu_mj, exp(lv_mj))) per group and sample: numpy float64, one
    sample at a time through scipy's logsumexp (independent of the library's code)."""
    z, mu, lv = (np.asarray(t, dtype=np.float64) for t in (z, mu, lv))
    out = np.empty((len(groups), len(z)))
    for gi, g in enumerate(groups):
        for s in range(len(z)):
            x = -0.5 * (np.log(2 * np.pi) + lv[:, g] + (z[s, g] - mu[:, g]) ** 2 * np.exp(-lv[:, g])).sum(1)
            out[gi, s] = logsumexp(x) - np.log(len(mu))
    return out


def posteriors(n, d, seed=0, offset=0.0):
    """Heteroscedastic posteriors shaped like a trained encoder's: a few clusters, sigma from 0.01 to 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(7, d, generator=g, dtype=torch.float64) * 2
    mu = centres[torch.randint(0, 7, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g,
                                                                             dtype=torch.float64) + offset
    lv = torch.rand(n, d, generator=g, dtype=torch.float64) * 9.0 - 9.2        # sigma 0.01 .. 0.9
    return mu, lv


@pytest.mark.parametrize("groups", [[[j] for j in range(5)], [[0, 3], [1, 2, 4]], [[0, 1, 2, 3, 4]]])
def test_native_sums_match_float64_reference(groups):
    # M is not a multiple of the kernel's block and S not one of its tiles of 4 and 8 samples
    mu, lv = posteriors(2 * _mixture.NATIVE_BLOCK + 37, 5, seed=1, offset=3.0)
    g = torch.Generator().manual_seed(2)
    z = (mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g, dtype=torch.float64))[:43]
    ref = reference_log_mixture(z, mu, lv, groups)
    got = _mixture._log_mixture(z.float(), mu.float(), lv.float(), groups, 256, 4096, backend="native")
    assert got.dtype == torch.float64 and got.shape == ref.shape
    assert np.abs(got.numpy() - ref).max() < 1e-4
    # and the torch path agrees with both
    tor = _mixture._log_mixture(z.float(), mu.float(), lv.float(), groups, 256, 4096, backend="torch")
    assert np.abs(tor.numpy() - ref).max() < 1e-4


def test_native_mig_matches_float64_torch_mig_and_reports_backend():
    sizes = (3, 6, 8, 8)
    mu, lv = posteriors(int(np.prod(sizes)), 6, seed=3)
    # a code with structure: latents 0-2 carry factors 1-3, the rest is noise
    cl = torch.as_tensor(M.grid_classes(sizes), dtype=torch.float64)
    mu[:, :3] = cl[:, 1:] / torch.tensor([5.0, 7.0, 7.0]) * 3 + 0.05 * mu[:, :3]
    ref = M.mig_chen(mu, lv, sizes, n_samples=300, seed=4, dtype=torch.float64)
    nat = M.mig_chen(mu, lv, sizes, n_samples=300, seed=4, dtype=torch.float32, backend="native")
    assert ref.info["backend"] == "torch" and nat.info["backend"] == "native"
    assert np.abs(nat.marginal_entropy - ref.marginal_entropy).max() < 1e-4
    assert np.abs(nat.conditional_entropy - ref.conditional_entropy).max() < 1e-4
    assert abs(nat.mig - ref.mig) < 1e-3
    assert ref.mig > 0.3        # the structure is seen, so the agreement is not between two zeros
    auto = M.mig_chen(mu, lv, sizes, n_samples=300, seed=4, dtype=torch.float32)
    assert auto.info["backend"] == "native" and auto.mig == nat.mig


def narrow_posteriors(n, seed=0):
    """Posteriors float32 cannot resolve at their means: |mu| 3-6, sigma down to 2e-5 (float32's spacing at 4
    is 4.8e-7, so z - mu keeps only 1-2 digits); wide ones beside them."""
    g = torch.Generator().manual_seed(seed)
    mu = 3.0 + 3.0 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    lv = torch.rand(n, 3, generator=g, dtype=torch.float64) * 20.0 - 21.6        # sigma 2e-5 .. 0.45
    return mu, lv


@pytest.mark.parametrize("groups", [[[0], [1], [2]], [[0, 2], [1]]])
def test_native_float64_resolves_posteriors_that_float32_cannot(groups):
    mu, lv = narrow_posteriors(2 * _mixture.NATIVE_BLOCK + 37)
    g = torch.Generator().manual_seed(3)
    z = (mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g, dtype=torch.float64))[:45]
    ref = reference_log_mixture(z, mu, lv, groups)
    got = _mixture._log_mixture(z, mu, lv, groups, 256, 4096, backend="native")
    assert got.dtype == torch.float64 and np.abs(got.numpy() - ref).max() < 1e-4
    # float32 differences lose these samples (why the float64 inputs are needed): off by far more
    f32 = _mixture._log_mixture(z.float(), mu.float(), lv.float(), groups, 256, 4096, backend="native")
    assert np.abs(f32.numpy() - ref).max() > 1e-3
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(_mixture._log_mixture(z, mu, lv, groups, 256, 4096, backend="native"), got)
    finally:
        torch.set_num_threads(before)


def test_evaluation_scores_posteriors_too_narrow_for_float32_in_float64_through_the_native_kernel():
    """evaluate_model's float32 MIG falls back to float64 for such posteriors; the native kernel takes the
    float64 differences (it used to be the torch path, 20x slower on a budget-scale model) and agrees with
    the torch float64 reference."""
    from types import SimpleNamespace

    sizes = (4, 5, 6)
    mu, lv = narrow_posteriors(int(np.prod(sizes)), seed=1)
    cl = torch.as_tensor(M.grid_classes(sizes), dtype=torch.float64)
    mu[:, :2] = 3.0 + cl[:, 1:] + 0.02 * mu[:, :2]     # latents 0 and 1 follow factors 1 and 2
    data = SimpleNamespace(images=torch.zeros(len(mu), 1, 2, 2), factor_sizes=sizes)
    out = M.evaluate_model(lambda x, i=iter(range(1)): (mu, lv), data, n_samples=100, batch_size=len(mu),
                           mig_dtype=torch.float32)
    assert out["mig_dtype"] == "float64" and out["mig_backend"].startswith("native")
    ref = M.mig_chen(mu, lv, sizes, n_samples=100, seed=0, dtype=torch.float64, backend="torch")
    assert ref.mig > 0.2 and abs(out["mig"] - ref.mig) < 1e-6


def test_native_is_the_same_at_one_and_two_threads():
    mu, lv = posteriors(3000, 4, seed=5)
    z = mu[:101].float() + 0.01
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(_mixture._log_mixture(z, mu.float(), lv.float(), [[0], [1, 2], [3]], 1, 1, "native"))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1])


def test_native_falls_back_for_samples_far_from_every_posterior(monkeypatch):
    # narrow posteriors around 0 and samples 12 standard deviations of the widest away: every term sits
    # below 2^(floor / 2) and the sample is recomputed with a running maximum, as on the torch path
    n = 500
    mu = torch.linspace(-1, 1, n, dtype=torch.float64)[:, None]
    lv = torch.full((n, 1), math.log(0.01 ** 2), dtype=torch.float64)
    z = torch.tensor([[0.3], [1.9], [-2.5], [0.0]], dtype=torch.float64)
    redone = []
    exact = _mixture._log2_sum_exact
    monkeypatch.setattr(_mixture, "_log2_sum_exact", lambda zs, *a: (redone.append(zs.shape[1]), exact(zs, *a))[1])
    got = _mixture._log_mixture(z.float(), mu.float(), lv.float(), [[0]], 256, 4096, backend="native")
    ref = reference_log_mixture(z, mu, lv, [[0]])
    assert redone == [2]                       # the two far samples
    assert torch.isfinite(got).all()
    assert np.abs(got.numpy() - ref).max() < 1e-3


def test_backend_refusals_are_named(monkeypatch):
    mu, lv = posteriors(60, 3)
    with pytest.raises(ValueError, match="unknown MIG backend 'fast'"):
        M.mig_chen(mu, lv, (3, 4, 5), n_samples=10, backend="fast")
    with pytest.raises(ValueError, match="'native' computes float32 or float64 on a CPU, got torch.float16 on cpu"):
        _mixture.resolve_backend("native", torch.device("cpu"), torch.float16)
    with pytest.raises(ValueError, match="'native' computes float32 or float64 on a CPU, got torch.float32 on cuda"):
        _mixture.resolve_backend("native", torch.device("cuda"), torch.float32)
    assert _mixture.resolve_backend("native", torch.device("cpu"), torch.float64) == "native"
    assert _mixture.resolve_backend("auto", torch.device("cuda"), torch.float32) == "torch"
    assert _mixture.resolve_backend("auto", torch.device("cpu"), torch.float64) == "torch"

    def broken():
        raise native.NativeBuildError("compiling _mig_kernel.c with cc failed")
    monkeypatch.setattr(_mixture, "_mig_kernel", broken)
    with pytest.warns(RuntimeWarning, match="native MIG kernel is not available"):
        assert _mixture.resolve_backend("auto", torch.device("cpu"), torch.float32) == "torch"
    with pytest.raises(native.NativeBuildError, match="failed"):
        _mixture.resolve_backend("native", torch.device("cpu"), torch.float32)


# --------------------------------------------------------------------------- build, cache and load
@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "isa_lib"


def test_build_records_a_digest_and_a_private_cache(private_cache):
    lib = native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    assert lib.parent == private_cache and lib.exists()
    assert (lib.parent / (lib.name + ".sha256")).read_text() == native._sha256(lib)
    assert stat.S_IMODE(os.stat(private_cache).st_mode) & 0o022 == 0
    assert native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",)) == lib    # cached: same file
    assert not [p for p in private_cache.iterdir() if p.name.endswith(".tmp")]


def test_a_tampered_or_undigested_library_is_rebuilt_not_loaded(private_cache):
    lib = native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    good = lib.read_bytes()
    lib.write_bytes(good + b"planted")
    with pytest.warns(RuntimeWarning, match="SHA-256 does not match"):
        again = native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    assert again == lib and native._sha256(lib) == (lib.parent / (lib.name + ".sha256")).read_text()
    (lib.parent / (lib.name + ".sha256")).unlink()
    with pytest.warns(RuntimeWarning, match="missing"):
        native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_a_cache_owned_by_someone_else_is_refused(private_cache):
    private_cache.mkdir(mode=0o700)
    os.chown(private_cache, 12345, 12345)
    with pytest.raises(native.NativeCacheError, match="owned by uid 12345, not by this user"):
        native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))


def test_a_cache_writable_by_others_or_a_symlink_is_refused(private_cache, tmp_path):
    private_cache.mkdir()
    os.chmod(private_cache, 0o777)
    with pytest.raises(native.NativeCacheError, match="writable by group or others"):
        native.cache_dir()
    os.chmod(private_cache, 0o700)
    lib = native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    os.chmod(lib, 0o777)
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    shutil.rmtree(private_cache)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    private_cache.symlink_to(elsewhere)
    with pytest.raises(native.NativeCacheError, match="symbolic link"):
        native.cache_dir()


def test_compiler_errors_are_named(private_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(native.NativeBuildError, match="is not an executable C compiler"):
        native.build("mig", "_mig_kernel.c")
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fake 1.0'\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(native.NativeBuildError, match="compiling _mig_kernel.c|failed"):
        native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    assert not any(p.suffix == ".so" for p in private_cache.iterdir())


def test_the_key_follows_the_cpu_features(private_cache, monkeypatch):
    a = native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    sig = native.cpu_signature(native.compiler())
    assert "__x86_64__" in sig or "__aarch64__" in sig or platform_other(sig)
    monkeypatch.setattr(native, "cpu_signature", lambda cc: sig + " avx9000")
    b = native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    assert a != b and a.exists() and b.exists()


def platform_other(sig):
    return "__" in sig          # some predefined macro of the compiler: the features were read


def test_aggregate_native_reads_a_transposed_logw_in_its_own_order():
    from isa_lib.aggregate_posterior import log_aggregate
    g = torch.Generator().manual_seed(0)
    m, d = 24, 3
    z, mu = torch.randn(m, d, generator=g), torch.randn(m, d, generator=g)
    lv = torch.randn(m, d, generator=g) * 0.3 - 1
    w = torch.log_softmax(torch.randn(m, m, generator=g), 1)
    a = log_aggregate(z, mu, lv, w.t().contiguous().t(), kernel="native")      # same values, transposed memory
    b = log_aggregate(z, mu, lv, w.contiguous(), kernel="native")
    s = log_aggregate(z, mu, lv, w.t().contiguous().t(), kernel="streamed")
    for x, y, r in zip(a, b, s):
        assert torch.equal(x, y)
        assert (x - r).abs().max() < 1e-4


def test_a_library_that_does_not_load_is_named_and_removed(private_cache, monkeypatch, tmp_path):
    fake = tmp_path / "garbagecc"      # "compiles" by writing bytes that are not a shared library
    fake.write_text('#!/bin/sh\nfor a; do last=$prev; prev=$a; done\n'
                    'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then echo junk > "$2"; fi; shift; done\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setattr(native, "_LOADED", {})
    with pytest.raises(native.NativeBuildError, match="could not be loaded"):
        native.load("mig", "_mig_kernel.c", depends=("_exp2_poly.h",))
    assert not any(p.name.startswith("mig_") for p in private_cache.iterdir())


def test_concurrent_first_builds_share_one_library(private_cache):
    # two threads and a second process compiling on first use: one library, no temporary file left, all verified
    import subprocess
    import sys
    import threading
    paths, errors = [], []

    def one():
        try:
            paths.append(native.build("mig", "_mig_kernel.c", depends=("_exp2_poly.h",)))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)
    code = ("from isa_lib import native; "
            "print(native.build('mig', '_mig_kernel.c', depends=('_exp2_poly.h',)))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(private_cache.parent)})
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out, _ = proc.communicate(timeout=600)
    assert not errors and proc.returncode == 0
    assert len(set(paths)) == 1 and out.strip() == str(paths[0])
    assert sorted(p.name for p in private_cache.iterdir()) == sorted([".lock", paths[0].name, paths[0].name + ".sha256"])
    assert native._verified(paths[0])

"""Tests written against mutants of the metrics' shared input checks that survived the rest of the suite
(mutmut 3.8.1; tests/README.md, "Mutation testing"): ``metrics/_inputs.py`` (factors that count, shapes and
values of codes, factor classes and latent groups, the seeded row subsets and train/test splits), ``_checks.py``
(argument checks), ``_scores.py`` (metrics by name, :func:`score_codes`) and ``_binned.py`` (the histogram
mutual information of MIG-sup, modularity and the unsupervised mutual-information score).  They concern the
metrics of Sec. 4 (the MIG of Chen et al. 2018 and the literature's scores of disentanglement_lib): each
asserts a property a survivor broke, through the public functions where one reaches it."""
import math
import re

import numpy as np
import pytest
import torch

from isa_lib import metrics as M
from isa_lib.metrics._inputs import _split, _subsample


def _random_code(n=60, d=3, k=2, values=4, seed=0):
    """Codes (n, d) that carry each factor with noise, and (n, k) random factor classes."""
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, values, (n, k))
    z = rng.normal(size=(n, d))
    z[:, :k] += 2.0 * cl
    return z, cl


def _same_mig(a, b):
    return a.mig == b.mig and np.array_equal(a.mutual_info, b.mutual_info) and a.factors == b.factors


# ------------------------------------------------------------------ codes (N, D)
def test_codes_given_as_a_tensor_that_requires_grad_score_as_the_plain_array():
    z, cl = _random_code()
    ref = M.mig_histogram(z, cl)
    zt = torch.tensor(z, requires_grad=True)
    assert _same_mig(M.mig_histogram(zt, cl), ref)
    assert _same_mig(M.mig_histogram(z.tolist(), cl), ref)
    # factor classes as a float tensor that requires grad (whole numbers) are read like the integers
    assert _same_mig(M.mig_histogram(z, torch.tensor(cl, dtype=torch.float64, requires_grad=True)), ref)


def test_bad_codes_get_messages_that_name_the_codes():
    z, cl = _random_code(n=6)
    with pytest.raises(ValueError, match=r"^codes must be 2-D \(N, D\), got shape \(6,\)$"):
        M.mig_histogram(z[:, 0], cl)
    bad = z.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"^codes contains NaN or infinite values$"):
        M.mig_histogram(bad, cl)


# ------------------------------------------------------------------ factor classes (N, K)
def test_one_factor_given_as_a_vector_is_the_same_as_a_column():
    z, cl = _random_code()
    assert _same_mig(M.mig_histogram(z, cl[:, 1]), M.mig_histogram(z, cl[:, [1]]))
    assert M.mig_histogram(z, cl[:, 1]).factors == [0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_factor_classes_as_whole_floats_score_as_the_integers(dtype):
    z, cl = _random_code()
    assert _same_mig(M.mig_histogram(z, cl.astype(dtype)), M.mig_histogram(z, cl))


def test_factor_classes_that_are_not_whole_numbers_are_refused():
    z, cl = _random_code(n=6)
    for bad in (cl + 0.5, np.where(np.arange(6)[:, None] == 3, np.nan, cl.astype(float)),
                np.where(np.arange(6)[:, None] == 0, 0.25, cl.astype(float))):
        with pytest.raises(ValueError, match=r"^factor_classes must hold integer class indices$"):
            M.mig_histogram(z, bad)


def test_factor_classes_of_the_wrong_shape_or_sign_get_whole_messages():
    z, cl = _random_code(n=6)
    with pytest.raises(ValueError, match=r"^factor_classes must be 2-D \(N, K\), got shape \(6, 2, 1\)$"):
        M.mig_histogram(z, cl[:, :, None])
    with pytest.raises(ValueError, match=r"^factor_classes has 5 rows but codes have 6$"):
        M.mig_histogram(z, cl[:5])
    with pytest.raises(ValueError, match=r"^factor_classes must be non-negative class indices$"):
        M.mig_histogram(z, cl - 1)


def test_class_labels_are_only_compared_so_huge_labels_score_as_their_ranks():
    """A factor's labels name classes; the metrics compare them, never compute with them: labels float64
    cannot hold apart (2**53 + 1), uint64 labels beyond int64's range and integral long doubles above 2**53
    score as the ranks 0, 1, ... of the same classes."""
    z, cl = _random_code(values=3)
    ref = M.mig_histogram(z, cl)
    assert _same_mig(M.mig_histogram(z, cl + 2**53), ref)
    assert _same_mig(M.mig_histogram(z, cl.astype(np.uint64) + np.uint64(2**63)), ref)
    if np.finfo(np.longdouble).nmant >= 63:                 # x86's 80-bit (or a quad) long double
        assert _same_mig(M.mig_histogram(z, cl.astype(np.longdouble) + np.longdouble(2**60)), ref)


# ------------------------------------------------------------------ factors that count
def test_resolve_factors_messages_are_whole():
    with pytest.raises(ValueError, match=r"^unknown dataset 'mnist'; known: \['cars3d', 'dsprites', 'faces3d'\]$"):
        M.resolve_factors("mnist", [2, 2])
    with pytest.raises(ValueError, match=r"^factor index 2 outside 0\.\.1$"):
        M.resolve_factors([0, 2], [3, 3])
    with pytest.raises(ValueError, match=r"^factor index -1 outside 0\.\.1$"):
        M.resolve_factors([-1], [3, 3])
    with pytest.raises(ValueError, match=r"^no factor to score$"):
        M.resolve_factors([], [3, 3])
    with pytest.raises(ValueError, match=r"^factors repeated: \[1, 1\]$"):
        M.resolve_factors([1, 1], [3, 3])
    with pytest.raises(ValueError, match=r"^factors repeated: \['b', 1\]$"):
        M.resolve_factors(["b", 1], [3, 3], ["a", "b"])
    assert M.resolve_factors([1, 0], [3, 3]) == [1, 0]


def test_factor_names_reach_the_scores_through_the_row_checks():
    z, cl = _random_code(k=3, d=4)
    names = ["shape", "scale", "posX"]
    by_name = M.mig_histogram(z, cl, factors=["posX", "scale"], factor_names=names)
    assert _same_mig(by_name, M.mig_histogram(z, cl, factors=[2, 1]))
    assert M.factorvae_score(z, cl, factors=["posX"], factor_names=names, n_train=50, n_eval=20,
                             batch_size=4)["factors"] == [2]


def test_factor_sizes_of_the_mig_must_be_positive():
    mu = torch.zeros(16, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^factor_sizes must be positive integers, got \[0, 16\]$"):
        M.mig_chen(mu, mu, [0, 16])
    with pytest.raises(ValueError, match=r"^factor_sizes must be positive integers, got \[-1, -16\]$"):
        M.mig_chen(mu, mu, [-1, -16])


# ------------------------------------------------------------------ latent groups (ISA layouts)
def test_groups_from_layout_numbers_the_latents_consecutively():
    assert M.groups_from_layout((2, 3, 1)) == [[0, 1], [2, 3, 4], [5]]
    assert M.groups_from_layout([4] * 5) == [list(range(4 * i, 4 * i + 4)) for i in range(5)]


@pytest.mark.parametrize("groups", [[[0], []], [[0], [3]], [[0, 1], [1, 2]], [[-1], [0]]])
def test_bad_latent_groups_are_refused_with_the_latent_range(groups):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 3, generator=g, dtype=torch.float64)
    msg = re.escape(f"groups must be disjoint non-empty lists of latent indices in 0..2: {groups}")
    with pytest.raises(ValueError, match=f"^{msg}$"):
        M.mixture_entropy(mu, torch.zeros_like(mu), groups=groups)
    with pytest.raises(ValueError, match=f"^{msg}$"):
        M.mig_chen(mu, torch.zeros_like(mu), [4, 4], groups=groups)


# ------------------------------------------------------------------ posteriors (mu, logvar) of the MIG
def test_posterior_means_of_any_real_dtype_are_read_as_their_values():
    """Integer, boolean and bfloat16 means give the entropies of the same values in float64."""
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(16, 2, generator=g, dtype=torch.float64)
    lv = torch.full((16, 2), -1.0, dtype=torch.float64)
    for m in ((3 * mu).round().long(), mu > 0, mu.to(torch.bfloat16), (3 * mu).round().int().numpy()):
        ref = M.mixture_entropy(torch.as_tensor(m).double(), lv)
        assert torch.equal(M.mixture_entropy(m, lv), ref)
    assert torch.equal(M.mixture_entropy(mu, lv.long()), M.mixture_entropy(mu, lv.long().double()))
    assert M.mig_chen(mu > 0, lv, [4, 4]).mig == M.mig_chen((mu > 0).double(), lv, [4, 4]).mig


# ------------------------------------------------------------------ seeded row subsets and splits
def test_subsample_is_a_seeded_sorted_subset_of_distinct_rows():
    for n, m, seed in ((20, 15, 0), (1000, 10, 3), (5, 4, 1)):
        rows = _subsample(n, m, seed)
        assert rows.shape == (m,) and rows.dtype.kind == "i"
        assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < n      # sorted, distinct, in range
        assert np.array_equal(rows, _subsample(n, m, seed))                     # the seed fixes it
    assert not np.array_equal(_subsample(1000, 10, 3), _subsample(1000, 10, 4))
    assert np.array_equal(_subsample(7, None, 0), np.arange(7))
    assert np.array_equal(_subsample(7, 7, 0), np.arange(7)) and np.array_equal(_subsample(7, 9, 0), np.arange(7))
    assert np.array_equal(_subsample(7, np.int64(3), 0), _subsample(7, 3, 0))


def test_n_points_scores_the_same_seeded_rows_of_codes_and_classes():
    z, cl = _random_code(n=200)
    res = M.mig_histogram(z, cl, n_points=50, seed=5)
    assert res.info["n_points"] == 50
    rows = _subsample(200, 50, 5)
    assert _same_mig(res, M.mig_histogram(z[rows], cl[rows]))
    assert _same_mig(res, M.mig_histogram(z, cl, n_points=50, seed=5))
    assert not _same_mig(res, M.mig_histogram(z, cl))
    assert not _same_mig(res, M.mig_histogram(z, cl, n_points=50, seed=6))


def test_split_keeps_two_training_rows_and_one_test_row_at_least():
    for n, frac, n_tr in ((4, 0.5, 2), (3, 0.67, 2), (3, 0.5, 2), (10, 0.8, 8), (5, 0.6, 3)):
        tr, te = _split(n, frac, 0)
        assert len(tr) == n_tr and len(te) == n - n_tr
        assert sorted(np.concatenate([tr, te]).tolist()) == list(range(n))
    for n, frac in ((2, 0.5), (3, 0.2), (10, 1.0), (10, 0.96)):
        with pytest.raises(ValueError, match=rf"^too few rows \({n}\) for a train/test split at {frac}$"):
            _split(n, frac, 0)


# ------------------------------------------------------------------ argument checks (_checks.py)
def test_an_integer_argument_at_its_lower_bound_is_accepted():
    """n_bins = 2 (the least MIG-sup takes): two binary factors read off by two binary latents, 1.0."""
    cl = M.grid_classes((2, 2, 2))
    z = cl.astype(np.float64)
    assert M.mig_sup(z, cl, n_bins=2)["mig_sup"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"^n_bins must be an integer >= 2, got 1$"):
        M.mig_sup(z, cl, n_bins=1)


@pytest.mark.parametrize("alpha, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (True, "True"),
                                          (-0.1, "-0.1"), ("0.1", "'0.1'")])
def test_the_lasso_strength_must_be_a_finite_positive_number(alpha, shown):
    z, cl = _random_code(n=20)
    with pytest.raises(ValueError, match=rf"^alpha must be a finite number > 0, got {shown}$"):
        M.dci(z, cl, importance="lasso", alpha=alpha)


# ------------------------------------------------------------------ scores by name (_scores.py)
def test_score_codes_defaults_are_10000_rows_and_seed_0():
    rng = np.random.default_rng(0)
    cl = rng.integers(0, 3, (10003, 2))
    z = cl + rng.normal(size=(10003, 2))
    got = M.score_codes(z, cl, ["mig_histogram"])["mig_histogram"]
    assert got == M.score_codes(z, cl, ["mig_histogram"], n_points=10000, seed=0)["mig_histogram"]
    assert got != M.score_codes(z, cl, ["mig_histogram"], n_points=None)["mig_histogram"]
    assert got != M.score_codes(z, cl, ["mig_histogram"], n_points=10000, seed=1)["mig_histogram"]


def test_score_codes_subsamples_the_row_scores_and_votes_on_all_rows():
    """The row-based metrics see the same n_points rows as when called directly with that n_points and
    seed; FactorVAE's votes draw from all rows (its docstring)."""
    z, cl = _random_code(n=120, values=3, seed=2)
    out = M.score_codes(z, cl, ["mig_histogram", "factorvae"], n_points=40, seed=4)
    assert out["mig_histogram"]["mig"] == M.mig_histogram(z, cl, n_points=40, seed=4).mig
    assert out["mig_histogram"]["mig"] != M.mig_histogram(z, cl, seed=4).mig
    full = M.factorvae_score(z, cl, seed=4)
    assert out["factorvae"]["eval_accuracy"] == full["eval_accuracy"]
    assert out["factorvae"]["train_accuracy"] == full["train_accuracy"]


def test_score_codes_passes_factor_names_on():
    z, cl = _random_code(k=3, d=4)
    names = ["shape", "scale", "posX"]
    by_name = M.score_codes(z, cl, ["mig_histogram", "mig_sup"], factors=["posX", "scale"], factor_names=names)
    assert by_name == M.score_codes(z, cl, ["mig_histogram", "mig_sup"], factors=[2, 1])


# ------------------------------------------------------------------ histogram mutual information (_binned.py)
def test_mutual_info_of_a_single_row_is_zero():
    """One row: every latent is constant, so every pair shares exactly 0 nats (no second row is read)."""
    assert M.mutual_info_score(np.array([[0.3, -1.2, 4.0]])) == 0.0


def test_mutual_info_with_a_constant_latent_is_exactly_zero():
    """A constant latent shares exactly 0 nats with any other (no rounding noise): bins holding 1, 4 and
    1 of 6 rows, whose plug-in sum would leave 2.2e-16."""
    x = np.array([0.0, 0.5, 0.5, 0.5, 0.5, 1.0])
    z = np.stack([x, np.full(6, 3.0)], 1)
    assert M.mutual_info_score(z) == 0.0
    assert M.mutual_info_score(z[:, ::-1]) == 0.0

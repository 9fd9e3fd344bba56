"""Tests written against mutants that survived the rest of the suite (mutmut 3.8.1; tests/README.md, "Mutation
testing") in ``isa_lib/metrics/_mig_histogram.py``, ``_mig_sup.py``, ``_sap.py`` and ``_unsupervised.py``: the
disentanglement_lib-comparable scores next to the paper's MIG (Sec. 4; Locatello et al. 2019): the histogram
MIG, MIG-sup (Li et al. 2020), the SAP score (Kumar et al. 2018) and the unsupervised scores (Gaussian total
correlation, Gaussian Wasserstein correlation, mean pairwise mutual information).  Each test asserts a
property a survivor broke: known answers on small synthetic codes (a latent that is an exact or relabelled
copy of one factor), values recomputed here with plain numpy (plug-in mutual information by counting,
squared correlations, a Gaussian W2 distance by eigendecomposition), the seeded row subset shared with
:func:`score_codes`, the exact error messages, and the keys of the results."""
import math

import numpy as np
import pytest

from isa_lib import metrics as M


# --------------------------------------------------------------------------- independent estimators
def _plugin_mi(joint) -> float:
    """Plug-in mutual information (nats) of a table of joint counts."""
    p = np.asarray(joint, dtype=np.float64)
    p = p / p.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa * pb)[nz])))


def _mi_latent_factor(x, y, n_bins) -> float:
    """I(x; y) with x cut into ``n_bins`` equal-width bins over its range, y integer classes: the joint
    table counted one class at a time with np.histogram."""
    rng = (x.min(), x.max())
    joint = np.array([np.histogram(x[y == c], bins=n_bins, range=rng)[0] for c in np.unique(y)])
    return _plugin_mi(joint)


def _mi_latents(x, y, n_bins) -> float:
    """I(x; y) of two latents, each cut into ``n_bins`` equal-width bins over its range."""
    return _plugin_mi(np.histogram2d(x, y, bins=n_bins)[0])


def _entropy(y) -> float:
    _, n = np.unique(y, return_counts=True)
    p = n / n.sum()
    return float(-np.sum(p * np.log(p)))


def _psd_sqrt(a):
    w, u = np.linalg.eigh(a)
    return (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T


def _noisy_code(n=240, seed=0):
    """Three factors (4, 3 and 5 classes) and four continuous latents: a noisy copy of factor 0, a noisy
    mix of factors 1 and 2, pure noise, and a weak trace of factor 2."""
    rng = np.random.default_rng(seed)
    v = np.c_[rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 5, n)]
    z = np.c_[v[:, 0] + 0.6 * rng.normal(size=n), v[:, 1] + v[:, 2] + 0.5 * rng.normal(size=n),
              rng.normal(size=n), 0.3 * v[:, 2] + rng.normal(size=n)]
    return z, v


def _grid(sizes):
    cl = M.grid_classes(sizes)
    return cl.astype(np.float64), cl


# --------------------------------------------------------------------------- histogram MIG
def test_histogram_mig_equals_plugin_mutual_information_of_20_equal_width_bins():
    """By default each latent is cut into 20 equal-width bins; mutual_info (K, D) is the plug-in MI with
    each factor, normalised = MI / H(v_k), per_factor the gap of the two largest over H(v_k), the MIG their
    mean; factors, groups and info describe what was scored."""
    z, v = _noisy_code()
    res = M.mig_histogram(z, v)
    mi = np.array([[_mi_latent_factor(z[:, j], v[:, k], 20) for j in range(4)] for k in range(3)])
    h = np.array([_entropy(v[:, k]) for k in range(3)])
    assert res.mutual_info == pytest.approx(mi, abs=1e-12)
    assert res.factor_entropy == pytest.approx(h, abs=1e-12)
    assert res.normalised == pytest.approx(mi / h[:, None], abs=1e-12)
    top = np.sort(mi, axis=1)
    gap = (top[:, -1] - top[:, -2]) / h
    assert res.per_factor == pytest.approx(gap, abs=1e-12)
    assert res.mig == pytest.approx(gap.mean(), abs=1e-12)
    assert res.factors == [0, 1, 2]
    assert res.groups == [[0], [1], [2], [3]]
    assert res.info == {"estimator": "histogram", "n_bins": 20, "n_points": 240}
    # the bin count is honoured: 7 bins give the 7-bin plug-in MI
    res7 = M.mig_histogram(z, v, n_bins=7)
    assert res7.mutual_info[0, 0] == pytest.approx(_mi_latent_factor(z[:, 0], v[:, 0], 7), abs=1e-12)
    assert res7.info["n_bins"] == 7


def test_histogram_mig_of_two_latents_copying_two_factors_is_one():
    """Two latents are enough: on a full grid a latent that is a copy (or a relabelled copy) of one factor
    has MI H(v_k) with it and 0 with the other, so every gap is 1.  A single latent is refused."""
    z, cl = _grid((4, 5))
    res = M.mig_histogram(z, cl)
    assert res.per_factor == pytest.approx([1.0, 1.0]) and res.mig == pytest.approx(1.0)
    assert res.mutual_info == pytest.approx(np.diag(np.log([4.0, 5.0])), abs=1e-12)
    perm = np.array([3.0, 0.0, 2.0, 1.0])[cl[:, 0]]                 # a relabelled copy of factor 0
    assert M.mig_histogram(np.c_[perm, z[:, 1]], cl).mig == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"^the MIG needs at least two latents$"):
        M.mig_histogram(z[:, :1], cl)


def test_histogram_mig_scores_only_the_chosen_factors_by_index_or_name():
    z, v = _noisy_code()
    full = M.mig_histogram(z, v)
    one = M.mig_histogram(z, v, factors=[2])
    assert one.factors == [2] and one.mutual_info.shape == (1, 4)
    assert one.mutual_info[0] == pytest.approx(full.mutual_info[2], abs=1e-12)
    named = M.mig_histogram(z, v, factors=["size", "shade"], factor_names=["x", "size", "shade"])
    assert named.factors == [1, 2]
    assert named.per_factor == pytest.approx(full.per_factor[1:], abs=1e-12)


def test_histogram_mig_rows_are_the_seeded_subset_shared_with_score_codes():
    """n_points rows, chosen by the seed (default 0), the same rows score_codes uses for that seed; the
    same seed gives the same numbers, another seed other rows."""
    z, v = _noisy_code()
    sub = M.mig_histogram(z, v, n_points=60, seed=3)
    assert sub.info["n_points"] == 60
    assert sub.mig != M.mig_histogram(z, v).mig
    assert sub.mig == M.score_codes(z, v, ["mig_histogram"], n_points=60, seed=3)["mig_histogram"]["mig"]
    again = M.mig_histogram(z, v, n_points=60, seed=3)
    assert np.array_equal(sub.mutual_info, again.mutual_info)
    default = M.mig_histogram(z, v, n_points=60)
    seed0 = M.mig_histogram(z, v, n_points=60, seed=0)
    assert np.array_equal(default.mutual_info, seed0.mutual_info)
    assert not np.array_equal(seed0.mutual_info, M.mig_histogram(z, v, n_points=60, seed=1).mutual_info)


# --------------------------------------------------------------------------- MIG-sup
def test_mig_sup_equals_the_per_latent_gap_of_plugin_mutual_information():
    """MIG-sup: 20 equal-width bins by default, I(z_j; v_k) / H(v_k) (D, K), for each latent the gap between
    its two largest normalised MIs (here over three factors), averaged over latents."""
    z, v = _noisy_code()
    res = M.mig_sup(z, v)
    assert set(res) == {"mig_sup", "per_latent", "normalised", "mutual_info", "factor_entropy", "factors"}
    mi = np.array([[_mi_latent_factor(z[:, j], v[:, k], 20) for k in range(3)] for j in range(4)])
    h = np.array([_entropy(v[:, k]) for k in range(3)])
    assert res["mutual_info"] == pytest.approx(mi, abs=1e-12)
    assert res["factor_entropy"] == pytest.approx(h, abs=1e-12)
    norm = mi / h[None, :]
    assert res["normalised"] == pytest.approx(norm, abs=1e-12)
    top = np.sort(norm, axis=1)
    assert res["per_latent"] == pytest.approx(top[:, -1] - top[:, -2], abs=1e-12)
    assert res["mig_sup"] == pytest.approx(np.mean(top[:, -1] - top[:, -2]), abs=1e-12)
    assert res["factors"] == [0, 1, 2]


def test_mig_sup_of_copies_of_two_and_three_factors_is_one():
    """Two factors are enough: latents that copy one factor each of a full grid score 1 (normalised MI 1
    with their factor, 0 with the others), with two factors or with three.  One factor is refused."""
    z, cl = _grid((4, 5))
    res = M.mig_sup(z, cl)
    assert res["per_latent"] == pytest.approx([1.0, 1.0]) and res["mig_sup"] == pytest.approx(1.0)
    z3, cl3 = _grid((3, 4, 5))
    res3 = M.mig_sup(z3, cl3)
    assert res3["per_latent"] == pytest.approx([1.0, 1.0, 1.0]) and res3["mig_sup"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"^MIG-sup needs at least two factors$"):
        M.mig_sup(z, cl, factors=[1])


def test_mig_sup_factors_by_name_and_its_rows_the_seeded_subset():
    z, v = _noisy_code()
    full = M.mig_sup(z, v)
    named = M.mig_sup(z, v, factors=["a", "c"], factor_names=["a", "b", "c"])
    assert named["factors"] == [0, 2]
    assert named["mutual_info"] == pytest.approx(full["mutual_info"][:, [0, 2]], abs=1e-12)
    sub = M.mig_sup(z, v, n_points=60, seed=3)
    assert sub["mig_sup"] != full["mig_sup"]
    assert sub["mig_sup"] == M.score_codes(z, v, ["mig_sup"], n_points=60, seed=3)["mig_sup"]["mig_sup"]
    # the same rows as the histogram MIG with the same n_points and seed: its MI matrix, transposed
    hist = M.mig_histogram(z, v, n_points=60, seed=3)
    assert sub["mutual_info"] == pytest.approx(hist.mutual_info.T, abs=1e-12)
    assert np.array_equal(sub["mutual_info"], M.mig_sup(z, v, n_points=60, seed=3)["mutual_info"])
    default = M.mig_sup(z, v, n_points=60)["mutual_info"]
    assert np.array_equal(default, M.mig_sup(z, v, n_points=60, seed=0)["mutual_info"])
    assert not np.array_equal(default, M.mig_sup(z, v, n_points=60, seed=1)["mutual_info"])


# --------------------------------------------------------------------------- SAP
def test_sap_regression_score_matrix_is_the_squared_correlation():
    z, v = _noisy_code()
    res = M.sap(z, v, mode="regression")
    r2 = np.array([[np.corrcoef(z[:, j], v[:, k])[0, 1] ** 2 for k in range(3)] for j in range(4)])
    assert res["score_matrix"] == pytest.approx(r2, abs=1e-12)
    top = np.sort(r2, axis=0)
    assert res["per_factor"] == pytest.approx(top[-1] - top[-2], abs=1e-12)
    assert res["sap"] == pytest.approx(np.mean(top[-1] - top[-2]), abs=1e-12)
    assert res["factors"] == [0, 1, 2] and res["mode"] == "regression" and res["classifier"] is None


def test_sap_regression_of_two_latents_is_one_at_any_scale_and_zero_for_a_constant_latent():
    """Two latents copying the two factors of a full grid score R^2 = 1 on their factor, 0 on the other,
    however small the codes (R^2 is scale-free); a constant latent predicts nothing: its scores are exactly
    0, not NaN.  One latent is refused."""
    z, cl = _grid((4, 5))
    for scale in (1.0, 1e-3):
        res = M.sap(scale * z, cl, mode="regression")
        assert res["score_matrix"] == pytest.approx(np.eye(2), abs=1e-12)
        assert res["sap"] == pytest.approx(1.0)
    for where in (2, 0, 1):
        flat = np.insert(z, where, 0.0, axis=1)
        for _ in range(3):
            res = M.sap(flat, cl, mode="regression")
            assert np.all(res["score_matrix"][where] == 0.0)
            assert res["per_factor"] == pytest.approx([1.0, 1.0]) and res["sap"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"^SAP needs at least two latents$"):
        M.sap(z[:, :1], cl, mode="regression")


def test_sap_scores_only_the_chosen_factors_by_index_or_name():
    z, v = _noisy_code()
    full = M.sap(z, v, mode="regression")
    one = M.sap(z, v, mode="regression", factors=[1])
    assert one["factors"] == [1] and one["score_matrix"].shape == (4, 1)
    assert one["score_matrix"][:, 0] == pytest.approx(full["score_matrix"][:, 1], abs=1e-12)
    named = M.sap(z, v, mode="regression", factors=["c", "a"], factor_names=["a", "b", "c"])
    assert named["factors"] == [2, 0]
    assert named["per_factor"] == pytest.approx(full["per_factor"][[2, 0]], abs=1e-12)


def test_sap_rows_and_split_follow_the_seed():
    """n_points rows chosen by the seed, the same rows as score_codes; the train/test split of the
    classification mode is seeded too, with default seed 0."""
    z, v = _noisy_code()
    sub = M.sap(z, v, mode="regression", n_points=60, seed=3)
    assert sub["sap"] != M.sap(z, v, mode="regression")["sap"]
    assert sub["sap"] == M.score_codes(z, v, ["sap"], n_points=60, seed=3)["sap"]["sap"]
    assert np.array_equal(sub["score_matrix"], M.sap(z, v, mode="regression", n_points=60, seed=3)["score_matrix"])
    near = M.sap(z, v, classifier="nearest_mean")["score_matrix"]
    assert np.array_equal(near, M.sap(z, v, classifier="nearest_mean", seed=0)["score_matrix"])
    assert not np.array_equal(near, M.sap(z, v, classifier="nearest_mean", seed=1)["score_matrix"])


# --------------------------------------------------------------------------- unsupervised scores
def _correlated_code(n=300, seed=0):
    """Three latents of unequal variances, two of them correlated, one a coarse function of another."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return np.c_[3.0 * a, a + 0.5 * rng.normal(size=n), 0.2 * rng.normal(size=n) + np.round(a)]


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_gaussian_scores_of_two_rows():
    """Two rows and two latents are enough: the sample covariance of rows (0, 0) and (1, 1) is singular
    (total correlation infinite), with a constant latent the total correlation is 0, and the W2 distance
    of S = u u^T / 2 (u = (1, 1)) from diag S is sum u^2 - (sum u^4)^(1/2) = 2 - sqrt 2."""
    assert M.gaussian_total_correlation(np.array([[0.0, 0.0], [1.0, 1.0]])) == math.inf
    assert M.gaussian_total_correlation(np.array([[0.0, 5.0], [1.0, 5.0]])) == 0.0
    w = M.gaussian_wasserstein_correlation(np.array([[0.0, 0.0], [1.0, 1.0]]))
    assert w == pytest.approx(2 - math.sqrt(2), abs=1e-6)
    with pytest.raises(ValueError, match=r"^need at least two rows and two latents, got codes of shape \(1, 2\)$"):
        M.gaussian_total_correlation(np.zeros((1, 2)))


def test_gaussian_total_correlation_of_a_single_varying_latent_is_zero():
    z = np.c_[np.zeros(40), np.linspace(-1, 1, 40), np.full(40, 2.5)]
    assert M.gaussian_total_correlation(z) == 0.0
    assert M.gaussian_total_correlation(np.ones((40, 3))) == 0.0


def test_gaussian_wasserstein_correlation_of_unequal_variances():
    """2 tr S - 2 tr (D^(1/2) S D^(1/2))^(1/2), D = diag S, recomputed by eigendecomposition, on latents of
    variances far from 1; normalise divides by tr S."""
    z = _correlated_code()
    s = np.cov(z, rowvar=False)
    dh = np.diag(np.sqrt(np.diag(s)))
    w = 2 * np.trace(s) - 2 * np.trace(_psd_sqrt(dh @ s @ dh))
    assert M.gaussian_wasserstein_correlation(z) == pytest.approx(w, rel=1e-8)
    assert M.gaussian_wasserstein_correlation(z, normalise=True) == pytest.approx(w / np.trace(s), rel=1e-8)


def test_mutual_info_score_is_the_mean_pairwise_plugin_mi_of_20_bins():
    z = _correlated_code()
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    for n_bins in (20, 6):
        want = np.mean([_mi_latents(z[:, i], z[:, j], n_bins) for i, j in pairs])
        got = M.mutual_info_score(z) if n_bins == 20 else M.mutual_info_score(z, n_bins=n_bins)
        assert got == pytest.approx(want, abs=1e-12)


def test_unsupervised_scores_are_the_four_scores_on_all_rows():
    """unsupervised_scores: each of the four functions on every row by default, the "_norm" entry the
    Wasserstein correlation over tr S, and n_bins passed to the mutual-information score (20 by default)."""
    z = _correlated_code()
    out = M.unsupervised_scores(z)
    w = M.gaussian_wasserstein_correlation(z)
    assert out == {"gaussian_total_correlation": M.gaussian_total_correlation(z),
                   "gaussian_wasserstein_correlation": w,
                   "gaussian_wasserstein_correlation_norm": M.gaussian_wasserstein_correlation(z, normalise=True),
                   "mutual_info_score": M.mutual_info_score(z)}
    assert out["gaussian_wasserstein_correlation_norm"] == pytest.approx(w / np.trace(np.cov(z, rowvar=False)))
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    assert out["mutual_info_score"] == pytest.approx(np.mean([_mi_latents(z[:, i], z[:, j], 20) for i, j in pairs]),
                                                     abs=1e-12)
    six = M.unsupervised_scores(z, n_bins=6)["mutual_info_score"]
    assert six == pytest.approx(np.mean([_mi_latents(z[:, i], z[:, j], 6) for i, j in pairs]), abs=1e-12)


def test_unsupervised_rows_are_the_seeded_subset_shared_by_every_score():
    """With n_points, each unsupervised score uses the seeded subset (default seed 0) that
    unsupervised_scores and score_codes use for that seed; another seed, other rows."""
    z = _correlated_code()
    v = np.zeros((len(z), 1), dtype=np.int64)
    kw = dict(n_points=50, seed=3)
    sub = M.unsupervised_scores(z, **kw)
    assert sub == M.score_codes(z, v, ["unsupervised"], **kw)["unsupervised"]
    assert sub == {"gaussian_total_correlation": M.gaussian_total_correlation(z, **kw),
                   "gaussian_wasserstein_correlation": M.gaussian_wasserstein_correlation(z, **kw),
                   "gaussian_wasserstein_correlation_norm": M.gaussian_wasserstein_correlation(z, True, **kw),
                   "mutual_info_score": M.mutual_info_score(z, **kw)}
    full = M.unsupervised_scores(z)
    assert all(sub[k] != full[k] for k in full)
    other = M.unsupervised_scores(z, n_points=50, seed=1)
    assert all(sub[k] != other[k] for k in full)
    default = {"gaussian_total_correlation": M.gaussian_total_correlation(z, n_points=50),
               "gaussian_wasserstein_correlation": M.gaussian_wasserstein_correlation(z, n_points=50),
               "gaussian_wasserstein_correlation_norm": M.gaussian_wasserstein_correlation(z, True, n_points=50),
               "mutual_info_score": M.mutual_info_score(z, n_points=50)}
    assert default == M.unsupervised_scores(z, n_points=50) == M.unsupervised_scores(z, n_points=50, seed=0)
    assert all(default[k] != other[k] for k in full)

"""Tests written against mutants of ``isa_lib/metrics/_dci.py`` and ``isa_lib/metrics/_modularity.py`` that
survived the rest of the suite (mutmut 3.8.1; tests/README.md, "Mutation testing").  They concern the
supervised disentanglement scores of the comparison: DCI (Eastwood & Williams 2018, Sec. 3: disentanglement,
completeness and informativeness from an importance matrix; lasso, gradient-boosted-tree and permutation
importances) and modularity / explicitness (Ridgeway & Mozer 2018, Sec. 3).  Known answers come from small
importance matrices, codes equal to (functions of) the factors, and entropies, mutual informations and
AUCs worked out by hand or computed independently here."""
import math
import warnings

import numpy as np
import pytest

from isa_lib import metrics as M
from isa_lib.metrics._dci import _lasso
from isa_lib.metrics._inputs import _split


# ------------------------------------------------------------------ helpers (independent of the library)
def entropy(p, base):
    """Shannon entropy of a probability vector in base ``base`` (0 log 0 = 0)."""
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(base))


def plug_in_mi(a, b):
    """Plug-in mutual information (nats) of two discrete label arrays, from the joint frequencies."""
    n = len(a)
    mi = 0.0
    for x in np.unique(a):
        for y in np.unique(b):
            pxy = np.sum((a == x) & (b == y)) / n
            if pxy > 0:
                mi += pxy * math.log(pxy / (np.mean(a == x) * np.mean(b == y)))
    return mi


def kkt_violation(x, y, b, alpha):
    """How far b is from the optimum of 1/(2n)|y - xb|^2 + alpha |b|_1 (no intercept): the lasso's
    optimality conditions x_j'(y - xb)/n = alpha sign(b_j) (b_j != 0), |x_j'(y - xb)/n| <= alpha (b_j = 0)."""
    grad = x.T @ (y - x @ b) / len(y)
    on = b != 0
    v = np.abs(grad[on] - alpha * np.sign(b[on]))
    off = np.maximum(np.abs(grad[~on]) - alpha, 0.0)
    return float(max(v.max(initial=0.0), off.max(initial=0.0)))


def noisy_codes(n=240, seed=0):
    """Two 3-class factors, each read noisily by one latent, plus a pure-noise latent."""
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, 3, size=(n, 2))
    z = np.column_stack([cl[:, 0] + rng.normal(scale=0.8, size=n), cl[:, 1] + rng.normal(scale=0.8, size=n),
                         rng.normal(size=n)])
    return z, cl


# ------------------------------------------------------------------ dci_scores: known importance matrices
def test_dci_scores_of_a_two_by_three_matrix_with_an_empty_factor():
    """R = [[1, 1, 0], [1, 0, 0]] (D = 2 latents, K = 3 factors, factor 2 without importance):
    D_0 = 1 - H_3(1/2, 1/2), D_1 = 1, weights 2/3 and 1/3; C_0 = 1 - H_2(1/2, 1/2) = 0, C_1 = 1, C_2 = 0
    (no importance), weights 2/3, 1/3, 0."""
    d, c, dj, ck = M.dci_scores(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    d0 = 1 - entropy([0.5, 0.5], 3)
    assert dj == pytest.approx([d0, 1.0], abs=1e-12) and ck == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    assert dj.dtype == np.float64 and ck.dtype == np.float64
    assert d == pytest.approx(2 / 3 * d0 + 1 / 3) and c == pytest.approx(1 / 3)


def test_dci_scores_with_two_factors_or_two_latents_use_base_two_entropies():
    """K = 2 (and D = 2): a latent split evenly over both factors has D_j = 1 - H_2 = 0, a factor split evenly
    over both latents C_k = 0: R = [[1, 1], [1, 0]] gives D = C = 1/3."""
    d, c, dj, ck = M.dci_scores(np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert dj == pytest.approx([0.0, 1.0], abs=1e-12) and ck == pytest.approx([0.0, 1.0], abs=1e-12)
    assert d == pytest.approx(1 / 3) and c == pytest.approx(1 / 3)


def test_dci_scores_with_a_single_factor_or_a_single_latent():
    """K = 1: D_j = 1 for a latent with importance, 0 without; D = 1.  D = 1: C_k = 1 for a factor with
    importance, 0 without.  The total importance here is 3/4 < 1 (importances need not sum to 1)."""
    r = np.array([[0.5], [0.0], [0.25]])
    d, c, dj, ck = M.dci_scores(r)
    assert dj.tolist() == [1.0, 0.0, 1.0]
    assert ck == pytest.approx([1 - entropy([2 / 3, 0, 1 / 3], 3)])
    assert d == pytest.approx(1.0) and c == pytest.approx(ck[0])
    d, c, dj, ck = M.dci_scores(r.T)
    assert ck.tolist() == [1.0, 0.0, 1.0] and np.isfinite(ck).all()
    assert dj == pytest.approx([1 - entropy([2 / 3, 0, 1 / 3], 3)])
    assert c == pytest.approx(1.0) and d == pytest.approx(dj[0])
    # a single latent and factor with importance 0.3: perfectly disentangled and complete
    assert M.dci_scores(np.array([[0.3]]))[:2] == pytest.approx((1.0, 1.0))


def test_dci_scores_of_a_normalised_identity_is_one():
    """A permutation matrix scaled to total importance 1 (each factor's importance a share of one unit)
    is perfectly disentangled and complete, whatever the total."""
    p = np.eye(3)[[2, 0, 1]]
    for scale in (1 / 3, 0.5, 1.0, 7.0):
        assert M.dci_scores(scale * p)[:2] == pytest.approx((1.0, 1.0))


def test_dci_scores_accepts_integer_and_nested_list_importances():
    """Integer counts give the same scores as the equal floats (the matrix is converted to float64)."""
    r = np.array([[2, 1, 0], [0, 3, 0], [1, 0, 4]])
    want = M.dci_scores(r.astype(float))
    for given in (r, r.tolist(), r.astype(np.int32)):
        got = M.dci_scores(given)
        assert got[:2] == pytest.approx(want[:2], abs=1e-15)
        assert np.allclose(got[2], want[2]) and np.allclose(got[3], want[3])


def test_dci_scores_emit_no_warning_for_zero_rows_columns_and_entries():
    """Zero entries, a latent without importance and a factor without importance are handled without any
    RuntimeWarning (no 0/0, no log 0), even when freed memory holds huge numbers (nothing uninitialised is
    read: the empty rows' and columns' probabilities are zeros)."""
    r = np.array([[0.6, 0.0], [0.0, 0.0], [0.2, 0.0]])
    want_dj = [1.0, 0.0, 1.0]
    want_ck = [1 - entropy([0.75, 0.0, 0.25], 3), 0.0]
    for _ in range(3):
        poison = [np.full(r.shape, 1e308) for _ in range(8)]       # freed just before the call
        del poison
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            d, c, dj, ck = M.dci_scores(r)
        assert dj.tolist() == want_dj and ck == pytest.approx(want_ck)
        assert d == pytest.approx(1.0) and c == pytest.approx(want_ck[0])
        for t in (r.T, np.eye(3), np.zeros((2, 3))):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                M.dci_scores(t)


# ------------------------------------------------------------------ the lasso behind importance="lasso"
def test_lasso_has_no_intercept():
    """_lasso solves the lasso without an intercept: on uncentred data its coefficients meet the optimality
    conditions of min 1/(2n)|y - xb|^2 + alpha|b|_1, an intercept being no part of the model."""
    rng = np.random.default_rng(3)
    x = rng.normal(loc=2.0, size=(300, 3))
    y = x @ np.array([0.7, 0.0, -0.4]) + 1.5 + 0.2 * rng.normal(size=300)
    b = _lasso(x, y, 0.05)
    assert kkt_violation(x, y, b, 0.05) < 1e-9
    # an intercept would absorb the offset of 1.5: without one the coefficients must carry it
    assert np.abs(x.mean(0) @ b - y.mean()) < 0.2


def test_lasso_converges_on_nearly_collinear_latents():
    """Two latents with correlation 0.999 make coordinate descent slow (thousands of sweeps); the solver still
    reaches the optimum to 1e-9 (its tolerance and iteration budget are tight enough)."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=200)
    x = np.column_stack([a, 0.999 * a + math.sqrt(1 - 0.999 ** 2) * rng.normal(size=200), rng.normal(size=200)])
    x -= x.mean(0)
    y = x[:, 0] + 0.6 * x[:, 1] + 0.1 * rng.normal(size=200)
    y -= y.mean()
    b = _lasso(x, y, 0.01)
    assert np.count_nonzero(b[:2]) == 2
    assert kkt_violation(x, y, b, 0.01) < 1e-9


# ------------------------------------------------------------------ dci(importance="lasso"): known answers
def test_dci_lasso_of_a_code_equal_to_the_factors():
    """Codes = factor classes, both standardised on the training rows, so latent k equals target k: the
    lasso solution is b = (1 - alpha) e_k exactly (its optimality conditions hold for any correlation of the
    training rows), R = (1 - alpha) I, and the residual is alpha * y: the training NRMSE is alpha, the test
    NRMSE alpha * rms(y_te) / std(y_te) with y_te standardised by the training mean and sd."""
    sizes = (2, 3, 9)                       # a binary factor (sd < 1) and a wide one (sd > 1)
    cl = M.grid_classes(sizes)
    z = cl.astype(float)
    alpha = 0.5
    out = M.dci(z, cl, importance="lasso", alpha=alpha, seed=4)
    assert out["importance"] == pytest.approx((1 - alpha) * np.eye(3), abs=1e-12)
    assert out["disentanglement"] == pytest.approx(1.0) and out["completeness"] == pytest.approx(1.0)
    assert out["informativeness_train"] == pytest.approx(alpha, rel=1e-14, abs=0)
    tr, te = _split(len(z), 0.8, 4)
    want = []
    for k in range(3):
        y = cl[:, k].astype(float)
        y_te = (y[te] - y[tr].mean()) / y[tr].std()
        want.append(alpha * math.sqrt(np.mean(y_te ** 2)) / y_te.std())
    assert min(np.std((cl[te] - cl[tr].mean(0)) / cl[tr].std(0), axis=0)) < 0.99   # a test sd below 1
    assert out["informativeness"] == pytest.approx(np.mean(want), rel=1e-12, abs=0)


def test_dci_lasso_of_a_factor_constant_on_the_training_rows():
    """Five rows, one held out; the factor is 1 on row i and 0 elsewhere, the codes are zero (nothing to
    learn, zero importance).  When row i is held out the training rows hold one class: the target is then
    left unscaled and the test error is 1 class over NRMSE's floor 1e-12.  Otherwise the training target
    (0, 0, 0, 1) standardises to sd 1 and the held-out 0 lies 0.25 / sd = 1/sqrt(3) from the mean."""
    z = np.zeros((5, 2))
    got = []
    for i in range(5):
        cl = np.zeros((5, 1), dtype=int)
        cl[i] = 1
        out = M.dci(z, cl, importance="lasso")
        assert out["importance"].sum() == 0.0 and np.isfinite(out["informativeness_train"])
        assert out["disentanglement"] == 0.0 and out["completeness"] == 0.0
        got.append(out["informativeness"])
    assert sorted(got) == pytest.approx([1e12 / math.sqrt(3)] * 4 + [1e12], rel=1e-9)


def test_dci_default_seed_is_zero_and_the_seed_fixes_the_split():
    z, cl = noisy_codes()
    out = M.dci(z, cl, importance="lasso")
    same = M.dci(z, cl, importance="lasso", seed=0)
    other = M.dci(z, cl, importance="lasso", seed=1)
    assert out["informativeness"] == same["informativeness"]
    assert np.array_equal(out["importance"], same["importance"])
    assert out["informativeness"] != other["informativeness"]


def test_dci_n_points_scores_a_seeded_subset():
    """n_points rows are drawn (seeded) before the factors are resolved: in one row no factor varies; two runs
    with the same seed and n_points agree, other seeds draw other rows."""
    z, cl = noisy_codes()
    one_row = r"^no factor to score: none takes more than one value \(factor sizes \[1, 1\]\)$"
    with pytest.raises(ValueError, match=one_row):
        M.dci(z, cl, importance="lasso", n_points=1)
    a = M.dci(z, cl, importance="lasso", n_points=60, seed=3)
    b = M.dci(z, cl, importance="lasso", n_points=60, seed=3)
    assert a["informativeness"] == b["informativeness"] and np.array_equal(a["importance"], b["importance"])
    c = M.dci(z, cl, importance="lasso", n_points=60, seed=5)
    assert c["informativeness"] != a["informativeness"]


def test_dci_of_the_chosen_factors_by_index_or_name():
    z, cl = noisy_codes()
    cl3 = np.column_stack([cl, cl[:, 0]])
    out = M.dci(z, cl3, factors=["f2", "f1"], factor_names=["f0", "f1", "f2"], importance="lasso")
    assert out["factors"] == [2, 1] and out["importance"].shape == (3, 2)
    by_index = M.dci(z, cl3, factors=[2, 1], importance="lasso")
    assert by_index["factors"] == [2, 1] and np.array_equal(by_index["importance"], out["importance"])
    # factor 2 is a copy of factor 0: latent 0 carries it
    assert np.argmax(out["importance"][:, 0]) == 0 and np.argmax(out["importance"][:, 1]) == 1


# ------------------------------------------------------------------ dci(importance="hist_gbt")
def test_dci_hist_gbt_is_seeded_and_averages_five_permutations_of_the_test_rows():
    """With more than 10,000 training rows the histogram trees stop early on a random validation split, and
    the permutation importances shuffle the test rows: both are seeded, so two runs agree exactly.  Each
    importance is the mean of 5 accuracy drops, each a multiple of 1/n_test: 5 n_test R_jk is an integer."""
    rng = np.random.default_rng(0)
    n = 12600
    cl = rng.integers(0, 4, size=(n, 1))
    z = np.column_stack([cl[:, 0] + rng.normal(size=n), rng.normal(size=n)])
    a = M.dci(z, cl, importance="hist_gbt", seed=2)
    b = M.dci(z, cl, importance="hist_gbt", seed=2)
    assert np.array_equal(a["importance"], b["importance"]) and a["informativeness"] == b["informativeness"]
    n_test = n - round(0.8 * n)
    counts = a["importance"][:, 0] * 5 * n_test
    assert counts[0] > 100 and counts == pytest.approx(np.round(counts), abs=1e-6)
    assert a["factors"] == [0]


# ------------------------------------------------------------------ modularity (Ridgeway & Mozer 2018)
def test_modularity_of_latents_with_unequal_information_about_binary_factors():
    """Three binary factors a, b, c (every combination, 5 times).  Latent 0 = a; latent 1 = a + a*b carries a
    fully (log 2 nats) and b partly (H(l) - H(l|b) = 1.5 - 1 bits); latent 2 = c + 0.5 a carries a and c fully;
    latent 3 is constant (no information, modularity 0, without any warning).  Every MI is below 1 nat.
    Modularity_j = 1 - sum_{k != argmax} m_jk^2 / (theta_j^2 (K - 1)) with m from plug-in MI."""
    cl = np.tile(M.grid_classes((2, 2, 2)), (5, 1))
    a, b, c = cl.T
    z = np.column_stack([a, a + a * b, c + 0.5 * a, np.zeros(len(a))]).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = M.modularity(z, cl)
    mi = np.array([[plug_in_mi(z[:, j], cl[:, k]) for k in range(3)] for j in range(4)])
    assert mi[1, 1] == pytest.approx(0.5 * math.log(2)) and mi.max() < 1
    assert out["mutual_info"] == pytest.approx(mi, abs=1e-12)
    want = []
    for j in range(3):
        m = mi[j]
        top = m.argmax()
        want.append(1 - sum(m[k] ** 2 for k in range(3) if k != top) / (m[top] ** 2 * 2))
    assert want == pytest.approx([1.0, 1 - 0.25 / 2, 0.5])
    assert out["per_latent"] == pytest.approx(want + [0.0], abs=1e-12)
    assert out["modularity"] == pytest.approx(np.mean(want + [0.0]))
    assert out["factors"] == [0, 1, 2]


def test_modularity_needs_two_factors_and_two_suffice():
    cl = M.grid_classes((3, 4))
    out = M.modularity(cl.astype(float), cl)
    assert out["modularity"] == pytest.approx(1.0) and out["factors"] == [0, 1]
    with pytest.raises(ValueError, match="^modularity needs at least two factors$"):
        M.modularity(cl.astype(float), cl, factors=[1])


def test_modularity_defaults_twenty_bins_and_seed_zero():
    z, cl = noisy_codes()
    out = M.modularity(z, cl)
    assert out["modularity"] == M.modularity(z, cl, n_bins=20)["modularity"]
    assert out["modularity"] != M.modularity(z, cl, n_bins=21)["modularity"]
    sub = M.modularity(z, cl, n_points=80)
    assert sub["modularity"] == M.modularity(z, cl, n_points=80, seed=0)["modularity"]
    assert sub["modularity"] != M.modularity(z, cl, n_points=80, seed=1)["modularity"]


def test_modularity_n_points_scores_a_seeded_subset_and_factors_by_name():
    z, cl = noisy_codes()
    with pytest.raises(ValueError, match=r"^no factor to score: none takes more than one value"):  # one row
        M.modularity(z, cl, n_points=1)
    a = M.modularity(z, cl, n_points=80, seed=7)
    b = M.modularity(z, cl, n_points=80, seed=7)
    assert np.array_equal(a["mutual_info"], b["mutual_info"])
    named = M.modularity(z, cl, factors=["y", "x"], factor_names=["x", "y"])
    assert named["factors"] == [1, 0]
    assert np.array_equal(named["mutual_info"], M.modularity(z, cl)["mutual_info"][:, ::-1])


# ------------------------------------------------------------------ explicitness (Ridgeway & Mozer 2018)
def test_explicitness_skips_classes_absent_from_or_filling_the_held_out_rows():
    """Ten rows, five held out (the seeded split of seed 0).  Factor A: classes 1 and 2 share a code value,
    class 0 and class 3 have their own; the held-out rows hold class 0 once, class 1 once, class 2 three
    times, class 3 never.  One-vs-rest AUCs there: class 0 is ranked perfectly (1), class 1 beats class 0 and
    ties class 2 ((1 + 3/2) / 4), class 2 beats class 0 and ties class 1 ((1 + 1/2) / 2); class 3 is skipped,
    a class seen once still counts.  Factor B: every held-out row has class 0, so no class is scored there
    (NaN) and the score is factor A's.  No warning is raised."""
    tr, te = _split(10, 0.5, 0)
    a, b = np.zeros(10, dtype=int), np.zeros(10, dtype=int)
    a[te] = [0, 1, 2, 2, 2]
    a[tr] = [0, 1, 2, 3, 1]
    b[tr] = [1, 0, 1, 0, 1]
    z = np.array([0.0, 1.0, 1.0, 2.0])[a][:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = M.explicitness(z, np.column_stack([a, b]), train_fraction=0.5)
    want = np.mean([1.0, 2.5 / 4, 1.5 / 2])
    assert out["per_factor"][0] == pytest.approx(want) and np.isnan(out["per_factor"][1])
    assert out["explicitness"] == pytest.approx(want)
    assert np.all(np.isfinite(out["per_factor_train"]))


def test_explicitness_refuses_a_factor_with_one_training_class_by_index():
    tr, te = _split(10, 0.5, 0)
    cl = np.zeros((10, 3), dtype=int)
    cl[:, 0] = np.arange(10) % 2
    cl[:, 1] = np.arange(10) % 2
    cl[te[0], 2] = 1                                     # factor 2 varies only among the held-out rows
    z = cl[:, :2].astype(float)
    with pytest.raises(ValueError, match="^factor 2 has a single class among the training rows$"):
        M.explicitness(z, cl, factors=[0, 2], train_fraction=0.5)


def test_explicitness_of_binary_factors_read_by_their_latents_is_one():
    cl = np.tile(M.grid_classes((2, 2)), (6, 1))
    out = M.explicitness(cl.astype(float), cl)
    assert out["explicitness"] == pytest.approx(1.0) and out["explicitness_train"] == pytest.approx(1.0)
    assert out["per_factor"] == pytest.approx([1.0, 1.0]) and out["per_factor_train"] == pytest.approx([1.0, 1.0])
    assert out["factors"] == [0, 1]


def test_explicitness_does_not_change_when_each_latent_is_shifted():
    """Codes are standardised latent by latent on the training rows, so adding a different constant to each
    latent leaves every AUC unchanged."""
    z, cl = noisy_codes()
    base = M.explicitness(z, cl)
    shifted = M.explicitness(z + np.array([0.0, 300.0, -2000.0]), cl)
    assert shifted["per_factor"] == pytest.approx(base["per_factor"], abs=1e-9)
    assert shifted["per_factor_train"] == pytest.approx(base["per_factor_train"], abs=1e-9)


def test_explicitness_seeds_its_split_and_subset_and_selects_factors():
    z, cl = noisy_codes()
    out = M.explicitness(z, cl)
    assert out["explicitness"] == M.explicitness(z, cl, seed=0)["explicitness"]
    assert out["explicitness"] != M.explicitness(z, cl, seed=1)["explicitness"]
    assert np.array_equal(M.explicitness(z, cl, seed=3)["per_factor"], M.explicitness(z, cl, seed=3)["per_factor"])
    with pytest.raises(ValueError, match=r"^no factor to score: none takes more than one value"):  # one row
        M.explicitness(z, cl, n_points=1)
    a = M.explicitness(z, cl, n_points=90, seed=6)
    assert np.array_equal(a["per_factor"], M.explicitness(z, cl, n_points=90, seed=6)["per_factor"])
    named = M.explicitness(z, cl, factors=["v"], factor_names=["u", "v"])
    assert named["factors"] == [1] and named["per_factor"].shape == (1,)
    assert named["per_factor"] == pytest.approx(out["per_factor"][1:]) and named["per_factor_train"].shape == (1,)

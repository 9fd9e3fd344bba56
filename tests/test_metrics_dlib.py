"""Known-answer tests of the disentanglement_lib-comparable metrics (issue 26): DCI with lasso or
gradient-boosted-tree importances, SAP with LinearSVC, BetaVAE score, modularity and explicitness,
MIG-sup and the unsupervised scores.  Codes: a perfect code (latent k = class of factor k), a rotated
one, a collapsed one (all zeros), and one latent shared by two factors."""
import math

import numpy as np
import pytest

from isa_lib import metrics as M

SIZES = (3, 6, 8, 8)            # 1,152 rows: four factors
TINY = (2, 3, 4, 4)             # 96 rows: for the slow gradient-boosted trees


def perfect(sizes=SIZES):
    cl = M.grid_classes(sizes)
    return cl.astype(np.float64), cl


def rotated(sizes=SIZES):
    """Factors 2 and 3 (8 values each, same spread) rotated by 45 degrees: each of the two latents
    carries both factors."""
    z, cl = perfect(sizes)
    a, b = z[:, 2].copy(), z[:, 3].copy()
    z[:, 2], z[:, 3] = (a + b) / math.sqrt(2), (a - b) / math.sqrt(2)
    return z, cl


def shared(sizes=SIZES):
    """Latent 2 = 8 v_2 + v_3 carries factors 2 and 3 (each fully: 64 distinct values); latent 3 is 0."""
    z, cl = perfect(sizes)
    z[:, 2] = sizes[3] * cl[:, 2] + cl[:, 3]
    z[:, 3] = 0.0
    return z, cl


# --------------------------------------------------------------------------- DCI
def test_dci_scores_of_known_importance_matrices():
    d, c, dj, ck = M.dci_scores(np.eye(4))
    assert d == pytest.approx(1.0) and c == pytest.approx(1.0)
    # one latent important for two of four factors: D_j = 1 - log 2 / log 4 = 1/2, half the total weight
    r = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    d, c, dj, ck = M.dci_scores(r)
    assert dj[2] == pytest.approx(0.5) and dj[3] == 0.0
    assert d == pytest.approx(0.25 * 1 + 0.25 * 1 + 0.5 * 0.5)
    assert c == pytest.approx(1.0)                       # every factor still has a single latent
    # a factor spread evenly over all four latents: C_k = 0
    d, c, _, ck = M.dci_scores(np.ones((4, 1)))
    assert ck[0] == pytest.approx(0.0) and d == pytest.approx(1.0)
    assert M.dci_scores(np.zeros((3, 2)))[:2] == (0.0, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        M.dci_scores(-np.eye(2))


def test_dci_lasso_solves_the_lasso():
    """The sklearn Lasso behind importance="lasso" meets the lasso's optimality (KKT) conditions to
    1e-8: x_j'(y - Xb)/n = alpha sign(b_j) where b_j != 0, |x_j'(y - Xb)/n| <= alpha where b_j = 0."""
    from isa_lib.metrics._dci import _lasso
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    x -= x.mean(0)
    y = x @ np.array([1.0, -0.5, 0.0, 0.02, 0.0, 0.3]) + 0.3 * rng.normal(size=400)
    y -= y.mean()
    alpha = 0.05
    b = _lasso(x, y, alpha)
    grad = x.T @ (y - x @ b) / len(y)
    on = b != 0
    assert on.sum() >= 2 and (~on).sum() >= 1
    assert np.abs(grad[on] - alpha * np.sign(b[on])).max() < 1e-8
    assert np.abs(grad[~on]).max() <= alpha + 1e-8


def test_dci_lasso_known_codes():
    """The earlier rule, by name: lasso importances, informativeness as test NRMSE."""
    z, cl = perfect()
    good = M.dci(z, cl, importance="lasso")
    assert good["method"] == "lasso" and good["informativeness_measure"] == "nrmse"
    assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95
    rot = M.dci(*rotated(), importance="lasso")
    assert rot["disentanglement"] < good["disentanglement"] - 0.2
    col = M.dci(np.zeros_like(z), cl, importance="lasso")
    assert col["disentanglement"] == 0.0 and col["completeness"] == 0.0
    assert col["informativeness"] == pytest.approx(1.0, abs=0.02)  # NRMSE of predicting the training mean


def test_dci_default_is_disentanglement_libs_trees():
    """The default: GradientBoostingClassifier importances, informativeness as test accuracy.  Each factor's
    column of impurity importances sums to 1, so the scores follow from how that unit is split."""
    z, cl = perfect(TINY)
    good = M.dci(z, cl, seed=1)
    assert good["method"] == "gbt" and good["informativeness_measure"] == "accuracy"
    assert good["importance"].sum(0) == pytest.approx(np.ones(4))
    explicit = M.dci(z, cl, importance="gbt", seed=1)
    assert all(np.array_equal(good[k], explicit[k]) for k in ("disentanglement", "completeness", "importance"))
    assert good["informativeness"] == 1.0 and good["informativeness_train"] == 1.0
    assert good["disentanglement"] > 0.99 and good["completeness"] > 0.99
    # rotated by 45 degrees: factor 2 = (z_2 + z_3)/sqrt 2 and factor 3 = (z_2 - z_3)/sqrt 2 need both latents,
    # equally (measured: importance split 0.50/0.50 to 0.007 over seeds 0-2), so D_j = C_k = 1 - log 2/log 4
    # = 1/2 for latents and factors 2, 3 and D = C = 1/4 + 1/4 + 1/2 * 1/2 = 3/4; still perfectly predictive
    rot = M.dci(*rotated(TINY), seed=1)
    assert rot["informativeness"] == 1.0
    assert np.allclose(rot["disentanglement_per_latent"], [1, 1, 0.5, 0.5], atol=0.03)
    assert np.allclose(rot["completeness_per_factor"], [1, 1, 0.5, 0.5], atol=0.03)
    assert abs(rot["disentanglement"] - 0.75) < 0.02 and abs(rot["completeness"] - 0.75) < 0.02
    # collapsed: no split is ever made, no importance, accuracy of a constant guess
    col = M.dci(np.zeros_like(z), cl, seed=1)
    assert col["importance"].sum() == 0.0
    assert col["disentanglement"] == 0.0 and col["completeness"] == 0.0
    assert col["informativeness"] < 0.5                   # chance: mean of 1/|V_k| = 1/3
    # latent 2 shared by factors 2 and 3 (the empty latent 3 dropped, so D = 3 latents, K = 4 factors):
    # completeness stays 1 (each factor has one latent); latent 2's importance is split over two of four
    # factors, D_2 = 1 - log 2/log 4 = 1/2 (entropy in base K), with weight 2/4: D = 1/4 + 1/4 + 1/4
    zs, cls = shared(TINY)
    sh = M.dci(zs[:, :3], cls, seed=1)
    assert sh["informativeness"] == 1.0
    assert sh["completeness"] > 0.99 and np.allclose(sh["completeness_per_factor"], 1.0, atol=0.01)
    assert np.allclose(sh["disentanglement_per_latent"], [1, 1, 0.5], atol=0.01)
    assert sh["disentanglement"] == pytest.approx(0.75, abs=0.01)
    with pytest.raises(ValueError, match="importance must be one of"):
        M.dci(z, cl, importance="xgboost")


def test_dci_hist_gbt_known_codes():
    """The faster variant: histogram trees with permutation importances.  Its trees need about 20 rows per
    leaf, so the tiny grid is repeated four times (384 rows)."""
    z, cl = perfect(TINY)
    z, cl = np.tile(z, (4, 1)), np.tile(cl, (4, 1))
    good = M.dci(z, cl, importance="hist_gbt", seed=1)
    assert good["method"] == "hist_gbt" and good["informativeness_measure"] == "accuracy"
    assert good["informativeness"] == 1.0
    assert good["disentanglement"] > 0.99 and good["completeness"] > 0.99
    assert np.all(good["importance"][~np.eye(4, dtype=bool)] == 0.0)      # permuting another latent costs nothing
    col = M.dci(np.zeros_like(z), cl, importance="hist_gbt", seed=1)
    assert col["importance"].sum() == 0.0 and col["disentanglement"] == 0.0


# --------------------------------------------------------------------------- SAP
def test_sap_default_is_disentanglement_libs_linear_svc():
    """The default: held-out accuracy of LinearSVC(C=0.01, balanced) on one latent, gap of the two best."""
    # binary factors: a single latent separates them exactly; the other latents are independent of the
    # factor on a full grid, so about chance (1/2), and the gap is about 1/2
    z, cl = perfect((2, 2, 2, 2, 2, 2, 2))
    res = M.sap(z, cl)
    assert res["mode"] == "classification" and res["classifier"] == "linear_svc"
    assert np.all(np.diag(res["score_matrix"]) == 1.0)
    assert np.all(np.abs(res["per_factor"] - 0.5) < 0.1)
    # factors with 3, 6, 8, 8 values (1,152 rows): the 3-valued factor is classified exactly, but one-vs-rest
    # linear rules on a single input (each class against the rest, one threshold each) rarely predict the
    # middle values of an ordinal factor, so even its perfect latent scores well below 1 (measured 0.48-0.50
    # for 6 values, 0.36-0.44 for 8, seeds 0-1); the other latents stay near chance, so the gaps are positive
    z, cl = perfect()
    good = M.sap(z, cl)
    diag = np.diag(good["score_matrix"])
    assert diag[0] == 1.0 and np.all((diag[1:] > 0.3) & (diag[1:] < 0.6))
    assert np.array_equal(np.argmax(good["score_matrix"], axis=0), np.arange(4))
    assert np.all(good["per_factor"] > 0.2)
    explicit = M.sap(z, cl, mode="classification", classifier="linear_svc")
    assert good["sap"] == explicit["sap"]
    # rotated: factors 2 and 3 are each read equally (badly) from latents 2 and 3, so their gaps are about 0
    # (measured at most 0.06), while factors 0 and 1 keep theirs
    rot = M.sap(*rotated())
    assert np.all(rot["per_factor"][2:] < 0.1)
    assert np.allclose(rot["per_factor"][:2], good["per_factor"][:2], atol=0.05)
    assert rot["sap"] < good["sap"] - 0.1
    # shared: latent 2 = 8 v_2 + v_3 carries factor 3 only in its fine structure, which no threshold on it
    # reads, so factor 3 has no predictive latent (gap about 0, measured at most 0.03)
    sh = M.sap(*shared())
    assert sh["per_factor"][3] < 0.1 and sh["sap"] < good["sap"]
    # collapsed: every latent scores the same constant guess, so every gap is exactly 0
    col = M.sap(np.zeros_like(z), cl)
    assert col["sap"] == 0.0 and np.all(col["per_factor"] == 0.0)
    with pytest.raises(ValueError, match="classifier must be one of"):
        M.sap(z, cl, classifier="svm")


def test_sap_earlier_rules_by_name():
    """The nearest class-mean rule classifies a perfect code of any number of values exactly; the
    regression mode's squared correlation is 1 on a perfect code."""
    z, cl = perfect()
    near = M.sap(z, cl, classifier="nearest_mean")
    assert near["classifier"] == "nearest_mean"
    assert np.all(np.diag(near["score_matrix"]) == 1.0)
    reg = M.sap(z, cl, mode="regression")
    assert reg["classifier"] is None and np.allclose(np.diag(reg["score_matrix"]), 1.0)
    assert reg["sap"] == pytest.approx(1.0)      # other latents are uncorrelated with the factor on a grid
    assert M.sap(*rotated(), mode="regression")["per_factor"][2:].max() < 1e-9   # equal R^2 = 1/2: gap 0


# --------------------------------------------------------------------------- BetaVAE score
def test_betavae_score_known_codes():
    kw = dict(n_train=1500, n_eval=800, seed=3)
    z, cl = perfect()
    assert M.betavae_score(z, cl, **kw)["eval_accuracy"] == 1.0
    chance = 1 / len(SIZES)
    assert M.betavae_score(np.zeros_like(z), cl, **kw)["eval_accuracy"] < chance + 0.06
    # Kim & Mnih (2018)'s objection: a code missing factor 3 entirely still scores 1 (elimination)
    assert M.betavae_score(z[:, :3], cl, **kw)["eval_accuracy"] == 1.0
    # rotated by 45 degrees, fixing factor 2 gives |dz_2| = |dz_3| = |dv_3| / sqrt 2, and fixing factor 3 the
    # same features with v_2: the two are indistinguishable, so the accuracy is 1/2 on them, 3/4 overall
    assert abs(M.betavae_score(*rotated(), **kw)["eval_accuracy"] - 0.75) < 0.05
    a = M.betavae_score(*rotated(), n_train=300, n_eval=200, seed=5)
    assert a == M.betavae_score(*rotated(), n_train=300, n_eval=200, seed=5)      # seeded


# --------------------------------------------------------------------------- modularity, explicitness
def test_modularity_known_codes():
    assert M.modularity(*perfect())["modularity"] == pytest.approx(1.0)
    z, cl = shared()
    res = M.modularity(z, cl, n_bins=64)          # 64 bins: each of latent 2's 64 values its own bin
    # latents 0, 1 carry one factor (1); latent 2 carries two equally (1 - 1/(K-1) = 2/3); latent 3 nothing (0)
    assert np.allclose(res["per_latent"], [1.0, 1.0, 2 / 3, 0.0])
    assert M.modularity(np.zeros_like(z), cl)["modularity"] == 0.0
    assert M.modularity(*rotated())["modularity"] < 0.95
    with pytest.raises(ValueError, match="two factors"):
        M.modularity(z, cl, factors=[1])


def test_explicitness_known_codes():
    z, cl = perfect()
    res = M.explicitness(z, cl)
    assert res["explicitness"] > 0.99 and res["explicitness_train"] > 0.99
    assert M.explicitness(np.zeros_like(z), cl)["explicitness"] == pytest.approx(0.5)
    rand = np.random.default_rng(0).normal(size=z.shape)
    assert abs(M.explicitness(rand, cl)["explicitness"] - 0.5) < 0.06
    assert M.explicitness(*rotated())["explicitness"] > 0.99     # a rotation is still linearly decodable


# --------------------------------------------------------------------------- MIG-sup
def test_mig_sup_known_codes():
    assert M.mig_sup(*perfect())["mig_sup"] == pytest.approx(1.0)
    z, cl = shared()
    res = M.mig_sup(z, cl, n_bins=64)
    # latent 2 holds factors 2 and 3 fully: normalised MI 1 and 1, gap 0; latent 3 holds nothing
    assert np.allclose(res["normalised"][2, 2:], 1.0)
    assert np.allclose(res["per_latent"], [1.0, 1.0, 0.0, 0.0])
    # the MIG does not see the shared latent: factors 2 and 3 each have one informative latent
    assert M.mig_histogram(z, cl, n_bins=64).per_factor[2:].min() > 0.99
    assert M.mig_sup(np.zeros_like(z), cl)["mig_sup"] == 0.0
    rot = M.mig_sup(*rotated())
    assert rot["per_latent"][2:].max() < 0.2
    with pytest.raises(ValueError, match="two factors"):
        M.mig_sup(z, cl, factors=[0])
    with pytest.raises(ValueError, match="n_bins"):
        M.mig_sup(z, cl, n_bins=1)


# --------------------------------------------------------------------------- unsupervised scores
def exact_cov_sample(cov, n=500, seed=0):
    """Rows whose sample covariance (ddof=1) is exactly ``cov``."""
    x = np.random.default_rng(seed).normal(size=(n, len(cov)))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T
    return x @ np.linalg.cholesky(cov).T


def test_gaussian_total_correlation_closed_form():
    for rho in (0.0, 0.3, 0.9):
        cov = np.array([[1.0, rho], [rho, 1.0]])
        z = exact_cov_sample(cov)
        assert M.gaussian_total_correlation(z) == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=1e-10)
        w = 4 - 2 * (math.sqrt(1 + rho) + math.sqrt(1 - rho))          # 2 tr S - 2 tr S^(1/2)
        assert M.gaussian_wasserstein_correlation(z) == pytest.approx(w, abs=1e-10)
        assert M.gaussian_wasserstein_correlation(z, normalise=True) == pytest.approx(w / 2, abs=1e-10)
    # scaling a latent changes neither; a rotated independent pair of unequal variances is correlated
    z = exact_cov_sample(np.diag([4.0, 1.0]))
    assert M.gaussian_total_correlation(z * [3.0, 0.5]) == pytest.approx(0.0, abs=1e-10)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rot = z @ np.array([[c, -s], [s, c]])
    rho = 3 / 5                                   # (4 - 1) / (4 + 1) for a 45-degree rotation
    assert M.gaussian_total_correlation(rot) == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=1e-10)
    # collapsed latent left out; a duplicated latent is infinitely dependent
    assert M.gaussian_total_correlation(np.c_[z, np.zeros(len(z))]) == pytest.approx(0.0, abs=1e-10)
    assert M.gaussian_total_correlation(np.c_[z, z[:, 0]]) == math.inf


def test_mutual_info_score_known_codes():
    # the two latents of a full grid are exactly independent: empirical MI 0
    z, _ = perfect((8, 8))
    assert M.mutual_info_score(z) == pytest.approx(0.0, abs=1e-12)
    # a duplicated 8-valued latent: MI = H = log 8 for the pair
    dup = np.c_[z[:, 0], z[:, 0]]
    assert M.mutual_info_score(dup) == pytest.approx(math.log(8))
    # three latents, one pair duplicated: 2 of the 6 ordered pairs carry log 8
    assert M.mutual_info_score(np.c_[z, z[:, 0]]) == pytest.approx(2 * math.log(8) / 6)
    assert M.mutual_info_score(np.zeros((50, 3))) == 0.0
    out = M.unsupervised_scores(z)
    assert set(out) == {"gaussian_total_correlation", "gaussian_wasserstein_correlation",
                        "gaussian_wasserstein_correlation_norm", "mutual_info_score"}
    with pytest.raises(ValueError, match="two latents"):
        M.mutual_info_score(z[:, :1])
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.gaussian_total_correlation(bad)


# --------------------------------------------------------------------------- by name, and in evaluate_model
def test_score_codes_equals_the_direct_calls():
    z, cl = rotated()
    out = M.score_codes(z, cl, ["dci", "sap_linear_svc", "modularity", "mig_sup", "betavae", "unsupervised"],
                        n_points=None, seed=2)
    assert out["dci"]["disentanglement"] == M.dci(z, cl, importance="lasso", seed=2)["disentanglement"]
    assert out["sap_linear_svc"]["sap"] == M.sap(z, cl, mode="classification", classifier="linear_svc",
                                                 seed=2)["sap"]
    assert out["modularity"]["modularity"] == M.modularity(z, cl)["modularity"]
    assert out["mig_sup"]["mig_sup"] == M.mig_sup(z, cl)["mig_sup"]
    assert out["betavae"]["eval_accuracy"] == M.betavae_score(z, cl, seed=2)["eval_accuracy"]
    assert out["unsupervised"] == M.unsupervised_scores(z)
    assert all(isinstance(v, float) for res in out.values() for v in res.values())
    with pytest.raises(ValueError, match="unknown scores"):
        M.score_codes(z, cl, ["dci", "irs"])


def test_evaluate_model_scores_leave_the_recorded_numbers_alone():
    import torch
    from isa_lib.datasets import load
    from isa_lib.train import build_vae
    data = load("dsprites", subgrid={"posX": [0, 10, 20, 31], "posY": [0, 15, 31], "orientation": [0, 20]})
    model = build_vae("mlp", 6, seed=0).eval()
    kw = dict(n_samples=50, batch_size=200, seed=3)
    with torch.no_grad():
        plain = M.evaluate_model(model.encoder, data, **kw)
        more = M.evaluate_model(model.encoder, data, scores=["mig_histogram", "modularity"], **kw)
        mu, _ = M.encode_dataset(model.encoder, data, batch_size=200)
    assert "scores" not in plain
    assert {k: v for k, v in more.items() if k != "scores"}.keys() == plain.keys()
    assert more["mig"] == plain["mig"] and np.array_equal(more["mig_per_factor"], plain["mig_per_factor"])
    cl = M.grid_classes(data.factor_sizes)
    assert more["scores"]["modularity"]["modularity"] == M.modularity(mu.numpy(), cl,
                                                                      factors=plain["mig_factors"])["modularity"]


# --------------------------------------------------------------------------- bad input: named errors
_Z, _CL = perfect((2, 3, 4))
_NAN = _Z.copy()
_NAN[1, 1] = np.nan
BAD = [
    ("DCI importance unknown", lambda: M.dci(_Z, _CL, importance="forest"), r"importance must be one of"),
    ("DCI lasso alpha 0", lambda: M.dci(_Z, _CL, importance="lasso", alpha=0.0), r"alpha must be a finite number > 0"),
    ("DCI codes with NaN", lambda: M.dci(_NAN, _CL, importance="gbt"), r"NaN"),
    ("SAP classifier unknown", lambda: M.sap(_Z, _CL, mode="classification", classifier="svm"),
     r"classifier must be one of"),
    ("SAP mode unknown", lambda: M.sap(_Z, _CL, mode="ranking"), r"mode must be 'regression' or 'classification'"),
    ("BetaVAE batch_size 0", lambda: M.betavae_score(_Z, _CL, batch_size=0), r"batch_size must be an integer >= 1"),
    ("BetaVAE n_train 1.5", lambda: M.betavae_score(_Z, _CL, n_train=1.5), r"n_train must be an integer >= 2"),
    ("BetaVAE classes of other rows", lambda: M.betavae_score(_Z, _CL[:5]), r"rows"),
    ("BetaVAE negative classes", lambda: M.betavae_score(_Z, -_CL), r"non-negative"),
    ("modularity n_bins 1", lambda: M.modularity(_Z, _CL, n_bins=1), r"n_bins must be an integer >= 2"),
    ("modularity codes with NaN", lambda: M.modularity(_NAN, _CL), r"NaN"),
    ("explicitness 1-D codes", lambda: M.explicitness(_Z[:, 0], _CL), r"2-D"),
    ("explicitness too few rows", lambda: M.explicitness(_Z[:2], _CL[:2]), r"too few rows|single value"),
    ("MIG-sup one factor", lambda: M.mig_sup(_Z, _CL, factors=[0]), r"two factors"),
    ("MIG-sup n_bins 2.5", lambda: M.mig_sup(_Z, _CL, n_bins=2.5), r"n_bins must be an integer"),
    ("Gaussian TC one row", lambda: M.gaussian_total_correlation(_Z[:1]), r"two rows and two latents"),
    ("Wasserstein one latent", lambda: M.gaussian_wasserstein_correlation(_Z[:, :1]), r"two rows and two latents"),
    ("scores a bare string", lambda: M.score_codes(_Z, _CL, "dci"), r"scores must be a list of names"),
    ("scores unknown", lambda: M.score_codes(_Z, _CL, ["dci", "irs"]), r"unknown scores \['irs'\]"),
    ("dci_scores of a 1-D importance", lambda: M.dci_scores(np.ones(3)), r"2-D"),
]


@pytest.mark.parametrize("name,call,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_named_error(name, call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_evaluate_model_checks_score_names_before_encoding():
    calls = []

    def encode(x):
        calls.append(len(x))
        raise AssertionError("encoded before the names were checked")

    data = type("D", (), {"factor_sizes": (2, 2), "images": np.zeros((4, 1, 2, 2))})()
    with pytest.raises(ValueError, match="unknown scores"):
        M.evaluate_model(encode, data, scores=["dci", "irs"])
    assert calls == []

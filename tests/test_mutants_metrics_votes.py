"""Tests written against mutants of isa_lib/metrics/_betavae.py and isa_lib/metrics/_factorvae.py that survived
the rest of the suite (mutmut 3.8.1; tests/README.md, "Mutation testing").  They concern the two vote-based
scores of the wider literature that the paper's evaluation can add (Sec. 4): the BetaVAE score (Higgins et
al. 2017, Sec. 3: a linear classifier on mean |z_a - z_b| over pairs of rows that share one factor) and the
FactorVAE score (Kim & Mnih 2018, Sec. 4: a majority vote latent -> factor on the latent of least variance
in a batch that fixes one factor, after dividing each latent by its global standard deviation and pruning
collapsed latents).  Each test asserts a property a survivor broke: the documented defaults, the sampling of
pairs and batches, the vote table counted by hand on codes whose votes are known, pruning, and the errors."""
import numpy as np
import pytest

from isa_lib import metrics as M


def grid(sizes, reps=1):
    """Factor classes of a full grid in C order, each row repeated ``reps`` times."""
    return np.repeat(M.grid_classes(sizes), reps, axis=0)


def random_code(n, d, seed):
    """A code that carries no factor: standard normal, independent of the classes."""
    return np.random.default_rng(seed).normal(size=(n, d))


# ================================================================== BetaVAE score (Higgins et al. 2017)
def betavae_written_out(codes, classes, factors, batch_size, n_train, n_eval, seed):
    """The BetaVAE score's documented sampler written out pair by pair, on the seed's generator: per example
    a factor index uniform, then ``batch_size`` first rows uniform over all rows and ``batch_size`` uniforms
    u; the partner of row a is the floor(u * m)-th (0-based) of the m rows sharing a's class of the factor,
    taken in row order; feature the mean |z_a - z_b|; LogisticRegression(random_state=seed)."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(seed)
    n, d = codes.shape
    same = {(k, val): np.flatnonzero(classes[:, k] == val) for k in factors for val in np.unique(classes[:, k])}

    def draw(m):
        fac = rng.integers(0, len(factors), m)
        first = rng.integers(0, n, (m, batch_size))
        u = rng.random((m, batch_size))
        x = np.zeros((m, d))
        for e in range(m):
            k = factors[fac[e]]
            for p in range(batch_size):
                a = first[e, p]
                rows = same[(k, classes[a, k])]
                x[e] += np.abs(codes[a] - codes[rows[int(u[e, p] * len(rows))]])
        return x / batch_size, fac

    x_tr, y_tr = draw(n_train)
    x_ev, y_ev = draw(n_eval)
    clf = LogisticRegression(random_state=seed).fit(x_tr, y_tr)
    return clf.score(x_tr, y_tr), clf.score(x_ev, y_ev)


def test_betavae_defaults_are_disentanglement_libs_settings():
    """Called without options, the score is the one of batch_size=64, n_train=10,000, n_eval=5,000 and
    seed=0 (a code carrying no factor, so every draw shows in the accuracies)."""
    cl = grid((3, 4), reps=5)
    z = random_code(len(cl), 2, seed=11)
    assert M.betavae_score(z, cl) == M.betavae_score(z, cl, batch_size=64, n_train=10000, n_eval=5000, seed=0)


@pytest.mark.parametrize("seed", [0, 7])
def test_betavae_pairs_are_drawn_as_written_out(seed):
    """Train and eval accuracies equal those of the sampler written out pair by pair: the partner of row a is
    uniform over the rows sharing a's class of the fixed factor, in row order (a stable order, so the draw
    does not depend on numpy's sort algorithm), the first rows uniform over all rows.  Rows in random order
    with uneven (some single-row) classes; integer codes and batch size 8, so the features agree exactly."""
    rng = np.random.default_rng(100 + seed)
    cl = np.c_[rng.integers(0, 3, 60), rng.integers(0, 7, 60), rng.integers(0, 2, 60)]
    z = rng.integers(0, 5, (60, 3)).astype(np.float64)
    res = M.betavae_score(z, cl, batch_size=8, n_train=300, n_eval=200, seed=seed)
    tr, ev = betavae_written_out(z, cl, [0, 1, 2], 8, 300, 200, seed)
    assert (res["train_accuracy"], res["eval_accuracy"]) == (tr, ev)


def test_betavae_n_eval_is_checked_by_name_and_one_eval_example_is_allowed():
    cl = grid((2, 3), reps=4)
    z = cl.astype(np.float64)
    with pytest.raises(ValueError, match=r"^n_eval must be an integer >= 1, got 0$"):
        M.betavae_score(z, cl, n_eval=0)
    res = M.betavae_score(z, cl, n_train=50, n_eval=1)
    assert res["eval_accuracy"] == 1.0                    # the code is the factors: any one example is right


def test_betavae_scores_only_the_chosen_factors_by_index_or_name():
    """``factors`` (indices, or names with ``factor_names``) selects the labels; a code carrying exactly the
    chosen factors scores 1."""
    cl = grid((2, 3, 4), reps=2)
    z = cl.astype(np.float64)
    res = M.betavae_score(z, cl, factors=[0, 2], n_train=200, n_eval=100)
    assert res["factors"] == [0, 2] and res["eval_accuracy"] == 1.0
    res = M.betavae_score(z, cl, factors=["b", "c"], factor_names=("a", "b", "c"), n_train=200, n_eval=100)
    assert res["factors"] == [1, 2] and res["eval_accuracy"] == 1.0


def test_betavae_two_factors_suffice_and_a_single_factor_is_refused():
    """Two scored factors are enough for the classifier; with one, every training label is the same and the
    score refuses with its message."""
    cl = grid((2, 3), reps=4)
    z = cl.astype(np.float64)
    res = M.betavae_score(z, cl, n_train=100, n_eval=50)
    assert res["factors"] == [0, 1] and res["train_accuracy"] == 1.0 and res["eval_accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"^the beta-VAE score classifies examples by factor: it needs at least "
                                         r"two factors, got \[1\]$"):
        M.betavae_score(z, cl, factors=[1], n_train=100, n_eval=50)
    # two factors, but too few training examples to draw both (seed 0 draws factor 1 twice)
    with pytest.raises(ValueError, match=r"^the training examples cover a single factor; raise n_train$"):
        M.betavae_score(z, cl, n_train=2, n_eval=1, seed=0)


def test_betavae_result_names():
    cl = grid((2, 3), reps=2)
    res = M.betavae_score(cl.astype(float), cl, n_train=60, n_eval=30)
    assert set(res) == {"train_accuracy", "eval_accuracy", "factors"}
    assert res["train_accuracy"] == 1.0 and res["eval_accuracy"] == 1.0 and res["factors"] == [0, 1]


# ================================================================== FactorVAE score (Kim & Mnih 2018)
def test_factorvae_defaults_are_batch_64_10000_train_5000_eval_seed_0():
    """Called without options, the score is the one of batch_size=64, n_train=10,000, n_eval=5,000 and
    seed=0 (a code carrying no factor, so every draw shows in the vote table and the accuracies)."""
    cl = grid((3, 4), reps=5)
    z = random_code(len(cl), 3, seed=12)
    a = M.factorvae_score(z, cl)
    b = M.factorvae_score(z, cl, batch_size=64, n_train=10000, n_eval=5000, prune_threshold=0.05, seed=0)
    assert np.array_equal(a["vote_table"], b["vote_table"]) and a["vote_table"].sum() == 10000
    assert (a["train_accuracy"], a["eval_accuracy"]) == (b["train_accuracy"], b["eval_accuracy"])


def test_factorvae_is_reproducible_for_a_seed():
    cl = grid((3, 4), reps=5)
    z = random_code(len(cl), 3, seed=13)
    a = M.factorvae_score(z, cl, n_train=300, n_eval=200, seed=4)
    b = M.factorvae_score(z, cl, n_train=300, n_eval=200, seed=4)
    assert np.array_equal(a["vote_table"], b["vote_table"])
    assert (a["train_accuracy"], a["eval_accuracy"]) == (b["train_accuracy"], b["eval_accuracy"])


def vote_code(seed=0):
    """Factor 0 has 3 values, factor 1 has 4 (10 rows per grid cell).  Latent 0 is 0 where v_0 = 0 and +-10
    elsewhere, latent 1 the reverse, latent 2 = v_1.  So a batch fixing v_0 = 0 votes latent 0, one fixing
    v_0 = 1 or 2 votes latent 1 (the only constant latent), one fixing v_1 votes latent 2."""
    cl = grid((3, 4), reps=10)
    sign = np.where(np.random.default_rng(seed).random(len(cl)) < 0.5, -10.0, 10.0)
    zero = cl[:, 0] == 0
    z = np.c_[np.where(zero, 0.0, sign), np.where(zero, sign, 0.0), cl[:, 1]]
    return z, cl


def test_factorvae_votes_counted_by_hand():
    """On :func:`vote_code` the vote table is known up to the draw of factors and values: factor 0's votes
    split between latents 0 and 1 as the drawn value is 0 or not (about 1/3 : 2/3, values uniform), factor
    1's all go to latent 2, each factor drawn about half the time; every vote counts once, the table holds
    integer counts, and the majority rule (latents 0, 1 -> factor 0; latent 2 -> factor 1) is always right."""
    z, cl = vote_code()
    res = M.factorvae_score(z, cl, n_train=600, n_eval=300, seed=3)
    t = res["vote_table"]
    assert t.shape == (3, 2) and np.issubdtype(t.dtype, np.integer) and t.sum() == 600
    assert t[2, 0] == 0 and t[0, 1] == 0 and t[1, 1] == 0
    n0 = t[:, 0].sum()
    assert 0.4 < n0 / 600 < 0.6                     # factor 0 drawn with probability 1/2 (sd 0.02)
    assert 0.2 < t[0, 0] / n0 < 0.47                # value 0 drawn with probability 1/3 (sd 0.027)
    assert res["train_accuracy"] == 1.0 and res["eval_accuracy"] == 1.0 and res["n_active"] == 3


def test_factorvae_one_active_latent_votes_for_the_majority_factor():
    """With one active latent every vote goes to it, so the rule labels it with the factor drawn most often in
    training: train accuracy = that factor's share of the votes, eval accuracy about chance (1/2)."""
    cl = grid((2, 5), reps=4)
    z = np.c_[cl[:, 0] + cl[:, 1], np.zeros(len(cl))]
    res = M.factorvae_score(z, cl, n_train=400, n_eval=400, seed=1)
    t = res["vote_table"]
    assert res["n_active"] == 1 and t.shape == (1, 2) and t.sum() == 400
    assert res["train_accuracy"] == t.max() / 400
    assert abs(res["eval_accuracy"] - 0.5) < 0.1


def test_factorvae_all_latents_collapsed_scores_zero():
    cl = grid((2, 3), reps=3)
    z = np.c_[np.full(len(cl), 2.0), 0.01 * (cl[:, 0] - 0.5)]      # variances 0 and 2.5e-5 < 0.05
    res = M.factorvae_score(z, cl, n_train=50, n_eval=50)
    assert res["train_accuracy"] == 0.0 and res["eval_accuracy"] == 0.0
    assert res["n_active"] == 0 and res["factors"] == [0, 1]


def test_factorvae_prunes_latents_below_the_threshold_and_keeps_one_at_it():
    """Latents of variance below ``prune_threshold`` (0.05 by default) are left out, one whose variance equals
    it is kept; ``prune_threshold=0`` leaves out only exactly constant latents, whatever their variance."""
    cl = grid((3, 4), reps=3)
    z = np.c_[cl[:, 0], 0.1 * (cl[:, 1] - 1.5), np.zeros(len(cl)), cl[:, 1]]     # variances 2/3, .0125, 0, 1.25
    kw = dict(n_train=100, n_eval=50)
    assert M.factorvae_score(z, cl, **kw)["n_active"] == 2
    assert M.factorvae_score(z, cl, prune_threshold=0.7, **kw)["n_active"] == 1
    at = np.where(cl[:, 1] < 2, -0.25, 0.25)         # variance exactly 1/16 (mean 0, every square 1/16)
    assert M.factorvae_score(np.c_[z, at], cl, prune_threshold=0.0625, **kw)["n_active"] == 3
    res = M.factorvae_score(z, cl, prune_threshold=0, **kw)
    assert res["n_active"] == 3 and res["vote_table"].shape == (3, 2) and res["eval_accuracy"] == 1.0


def test_factorvae_is_invariant_to_rescaling_each_latent():
    """Latents are divided by their global standard deviation before the within-batch variances are
    compared, so scaling a latent by a power of two (exact in floating point) changes no vote."""
    cl = grid((3, 4, 5), reps=2)
    z = cl + 0.3 * np.random.default_rng(5).normal(size=cl.shape)
    a = M.factorvae_score(z, cl, n_train=300, n_eval=200, seed=2)
    b = M.factorvae_score(z * np.array([0.5, 8.0, 1.0]), cl, n_train=300, n_eval=200, seed=2)
    assert np.array_equal(a["vote_table"], b["vote_table"])
    assert (a["train_accuracy"], a["eval_accuracy"]) == (b["train_accuracy"], b["eval_accuracy"])


def test_factorvae_scores_only_the_chosen_factors_by_index_or_name():
    cl = grid((2, 3, 4), reps=2)
    z = cl.astype(np.float64)
    res = M.factorvae_score(z, cl, factors=[0, 2], n_train=200, n_eval=100)
    assert res["factors"] == [0, 2] and res["vote_table"].shape == (3, 2)
    assert res["vote_table"][1].sum() == 0 and res["eval_accuracy"] == 1.0     # latent 1 is never voted
    res = M.factorvae_score(z, cl, factors=["b", "c"], factor_names=("a", "b", "c"), n_train=200, n_eval=100)
    assert res["factors"] == [1, 2] and res["vote_table"][0].sum() == 0 and res["eval_accuracy"] == 1.0


def test_factorvae_result_names():
    cl = grid((2, 3), reps=2)
    res = M.factorvae_score(cl.astype(float), cl, n_train=60, n_eval=30)
    assert set(res) == {"train_accuracy", "eval_accuracy", "n_active", "vote_table", "factors"}
    assert res["train_accuracy"] == 1.0 and res["eval_accuracy"] == 1.0 and res["n_active"] == 2


@pytest.mark.parametrize("kw, msg", [
    (dict(batch_size=1), r"batch_size must be an integer >= 2, got 1"),
    (dict(batch_size=0), r"batch_size must be an integer >= 2, got 0"),
    (dict(batch_size=8.0), r"batch_size must be an integer >= 2, got 8.0"),
    (dict(n_train=0), r"n_train must be an integer >= 1, got 0"),
    (dict(n_eval=0), r"n_eval must be an integer >= 1, got 0"),
    (dict(prune_threshold=-0.1), r"prune_threshold must be a finite number >= 0, got -0.1"),
    (dict(prune_threshold=float("nan")), r"prune_threshold must be a finite number >= 0, got nan"),
    (dict(prune_threshold=True), r"prune_threshold must be a finite number >= 0, got True"),
    (dict(prune_threshold="0.05"), r"prune_threshold must be a finite number >= 0, got '0.05'"),
])
def test_factorvae_refuses_arguments_that_make_the_votes_meaningless(kw, msg):
    """A batch of one row votes for latent 0 whatever the code (a perfect code scored 0.56), no votes give NaN
    accuracies, a negative threshold was silently 0: each is refused by name before any work."""
    cl = grid((3, 4), reps=1)
    with pytest.raises(ValueError, match="^" + msg + "$"):
        M.factorvae_score(cl.astype(float), cl, **kw)
    assert M.factorvae_score(cl.astype(float), cl, batch_size=2, n_train=1, n_eval=1)["n_active"] == 2


def test_factorvae_reports_an_empty_vote_table_when_every_latent_is_pruned():
    """A fully collapsed code scores 0 and its result has the same keys as any other, the vote table with no
    rows (one column per scored factor)."""
    cl = grid((3, 4), reps=1)
    res = M.factorvae_score(np.full((12, 3), 0.5), cl, n_train=10, n_eval=10)
    assert set(res) == set(M.factorvae_score(cl.astype(float), cl, n_train=10, n_eval=10))
    assert res["vote_table"].shape == (0, 2) and res["vote_table"].dtype == np.int64
    assert res["eval_accuracy"] == 0.0 and res["n_active"] == 0

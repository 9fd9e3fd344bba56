"""Over-complete ICA with (beta-)VI: quadrature, free energy, gradients, monotone optimiser, pruning."""

import autograd.numpy as anp
import numpy as np
import pytest
from scipy import stats as sstats

from isa_lib import ica

NOISE_STD = 0.5


@pytest.fixture(scope="module")
def problem():
    W = ica.true_weights((0.0, 50.0, 110.0))
    x, _ = ica.sample_ica_data(W, 30, NOISE_STD, seed=1)
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((30, 3))
    log_std = -0.7 + 0.3 * rng.standard_normal((30, 3))
    return W, x, mu, log_std


def test_student_t_logpdf_matches_scipy():
    z = np.linspace(-20, 20, 41)
    assert np.allclose(ica.student_t_logpdf(z, 3.5, 1.7), sstats.t.logpdf(z, 3.5, scale=1.7), atol=1e-12)


@pytest.mark.parametrize("mu", [0.0, 1.3, -4.0, 12.0])
@pytest.mark.parametrize("std", [0.02, 0.3, 1.0, 1.5, 2.0])
def test_gauss_hermite_cross_entropy_matches_quad(mu, std):
    gh = ica.cross_entropy_student_t(np.array(mu), np.array(std), 3.5, 1.0)   # default 64 nodes
    ref = ica.cross_entropy_student_t_quad(mu, std, 3.5, 1.0)
    assert abs(gh - ref) < (1e-8 if std <= 1.5 else 1e-6)


def test_gauss_hermite_needs_enough_nodes():
    # the check can fail: 5 nodes are visibly inaccurate for a wide q
    gh = ica.cross_entropy_student_t(np.array(0.0), np.array(2.0), 3.5, 1.0, n_points=5)
    assert abs(gh - ica.cross_entropy_student_t_quad(0.0, 2.0)) > 1e-3


@pytest.mark.parametrize("beta", [1.0, 5.0])
def test_free_energy_matches_monte_carlo(problem, beta):
    W, x, mu, log_std = problem
    fe = ica.free_energy(W, mu, log_std, x, NOISE_STD**2, beta)
    rng = np.random.default_rng(2)
    s = 20000
    eps = rng.standard_normal((s,) + mu.shape)
    z = mu + np.exp(log_std) * eps
    r = x - z @ W.T
    log_lik = -0.5 * (np.sum(r**2, -1) / NOISE_STD**2 + 2 * np.log(2 * np.pi * NOISE_STD**2))
    log_q = -0.5 * np.sum(eps**2 + 2 * log_std + np.log(2 * np.pi), -1)
    log_p = np.sum(sstats.t.logpdf(z, 3.5), -1)
    v = np.sum(log_lik - beta * (log_q - log_p), axis=1)
    se = v.std() / np.sqrt(s)
    assert abs(v.mean() - fe) < 4 * se
    assert se < 0.005 * abs(fe)


def test_autograd_gradient_matches_finite_differences(problem):
    from autograd import grad
    W, x, mu, log_std = problem
    f = ica.objective(x, NOISE_STD**2, beta=2.0)
    theta = ica.pack(W, mu, log_std)
    g = grad(f)(theta)
    rng = np.random.default_rng(3)
    idx = np.concatenate([np.arange(6), rng.choice(np.arange(6, theta.size), 20, replace=False)])
    h = 1e-5
    for i in idx:
        e = np.zeros_like(theta)
        e[i] = h
        fd = (f(theta + e) - f(theta - e)) / (2 * h)
        assert fd == pytest.approx(g[i], rel=1e-5, abs=1e-6)


def test_pack_unpack_round_trip(problem):
    W, x, mu, log_std = problem
    W2, mu2, ls2 = ica.unpack(ica.pack(W, mu, log_std), 2, 3, 30)
    assert np.array_equal(W2, W) and np.array_equal(mu2, mu) and np.array_equal(ls2, log_std)


@pytest.mark.parametrize("memory", [0, 10])
def test_maximise_is_monotone_and_finds_the_optimum(memory):
    def neg_rosenbrock(t):
        return -(100.0 * (t[1] - t[0] ** 2) ** 2 + (1 - t[0]) ** 2)
    theta, hist, _ = ica.maximise(neg_rosenbrock, np.array([-1.2, 1.0]), max_steps=3000 if memory == 0 else 200,
                                  memory=memory, tol=0.0)
    assert np.all(np.diff(hist) > 0)
    if memory:
        assert np.allclose(theta, [1.0, 1.0], atol=1e-4)
    else:
        assert hist[-1] > -1e-2


@pytest.fixture(scope="module")
def budget_fits():
    # the paper's procedure: gradient ascent from the true model, only improving steps, fixed budget
    return ica.run_experiment(n=100, angles_deg=(0.0, 50.0, 110.0), noise_std=NOISE_STD, betas=(1.0, 5.0),
                              max_steps=1000, memory=0, q_steps=150, seed=0)


def test_fit_never_decreases_the_objective(budget_fits):
    for fit in budget_fits["fits"].values():
        assert np.all(np.diff(fit["history"]) > 0)
        assert fit["free_energy"] > fit["free_energy_start"]
        assert len(fit["weights_path"]) == len(fit["history"]) - fit["n_q_steps"]


def test_beta5_prunes_and_beta1_does_not_on_the_same_budget(budget_fits):
    s1 = budget_fits["fits"][1.0]["summary"]
    s5 = budget_fits["fits"][5.0]["summary"]
    assert s5["pruned"] == [1] and s5["min_norm"] < 0.1
    assert s5["angle_two_longest"] > 85.0           # the two kept components are near-orthogonal
    assert s1["pruned"] == [] and s1["min_norm"] > 0.5


def test_component_angles_are_between_lines():
    W = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]])
    A = ica.component_angles(W)
    assert A[0, 1] == pytest.approx(0.0) and A[0, 2] == pytest.approx(90.0)
    s = ica.summarise_components(np.array([[1.0, 0.0, 0.05], [0.0, 1.0, 0.0]]))
    assert s["pruned"] == [2] and s["angle_two_longest"] == pytest.approx(90.0)


def test_bad_inputs_raise(problem):
    W, x, mu, log_std = problem
    with pytest.raises(ValueError, match="beta"):
        ica.free_energy(W, mu, log_std, x, 0.25, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        ica.fit_ica(x, W, 0.25, beta=-1.0)
    with pytest.raises(ValueError, match="rows"):
        ica.free_energy(np.ones((3, 3)), mu, log_std, x, 0.25)
    with pytest.raises(ValueError, match="log-stds"):
        ica.free_energy(W, mu[:5], log_std, x, 0.25)
    with pytest.raises(ValueError, match="noise_var"):
        ica.free_energy(W, mu, log_std, x, anp.ones(3))
    with pytest.raises(ValueError, match="w_init"):
        ica.fit_ica(x, np.ones((3, 3)), 0.25)
    with pytest.raises(ValueError, match="n_points"):
        ica.gauss_hermite(0)

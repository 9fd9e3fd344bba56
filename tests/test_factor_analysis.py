"""Closed-form factor analysis: likelihood, beta-free energy and the experiments of App. B.2-B.5."""

import numpy as np
import pytest
from scipy import stats as sstats

from isa_lib import factor_analysis as fa

NOISE = 0.1


@pytest.fixture(scope="module")
def data():
    x = fa.sample_gaussian_data(40, fa.anisotropic_cov(1.0, 0.6, np.pi / 6), seed=3)
    st = fa.sufficient_statistics(x)
    return x, st, fa.ml_orthogonal_weights(st, NOISE)


def test_log_likelihood_matches_scipy(data):
    x, st, W = data
    W = fa.rotate_latents(W, 0.3) * 1.3
    C = W @ W.T + NOISE * np.eye(2)
    ref = sstats.multivariate_normal(np.zeros(2), C).logpdf(x).sum()
    assert fa.log_likelihood(W, NOISE, st) == pytest.approx(ref, rel=1e-12)


def test_ml_weights_are_orthogonal_and_maximise_likelihood(data):
    x, st, W = data
    G = W.T @ W
    assert abs(G[0, 1]) < 1e-12 * G[0, 0]
    S = st.cov + np.outer(st.mean, st.mean)
    assert np.allclose(W @ W.T + NOISE * np.eye(2), S)
    ll = fa.log_likelihood(W, NOISE, st)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert fa.log_likelihood(W + 0.02 * rng.standard_normal(W.shape), NOISE, st) < ll


def test_free_energy_equals_likelihood_when_posterior_factorises(data):
    _, st, W = data
    # orthogonal columns + isotropic noise: W^T D^-1 W is diagonal, the mean-field q is exact
    assert fa.free_energy(W, NOISE, st, beta=1.0) == pytest.approx(fa.log_likelihood(W, NOISE, st), abs=1e-9)
    # non-isotropic noise: axis-aligned columns make W^T D^-1 W diagonal
    Wa, nv = np.array([[0.9, 0.0], [0.0, 0.4]]), np.array([0.05, 0.2])
    assert fa.free_energy(Wa, nv, st) == pytest.approx(fa.log_likelihood(Wa, nv, st), abs=1e-9)


@pytest.mark.parametrize("theta", [0.2, np.pi / 4, 1.3])
def test_free_energy_below_likelihood_otherwise_by_the_posterior_kl(data, theta):
    _, st, W = data
    Wt = fa.rotate_latents(W, theta)
    ll, fe = fa.log_likelihood(Wt, NOISE, st), fa.free_energy(Wt, NOISE, st)
    assert fe < ll - 1e-3
    # Eq. 4: the gap is exactly N * KL(q || p(z|x)) (the KL does not depend on x here)
    assert ll - fe == pytest.approx(st.n * fa.kl_to_tempered_posterior(Wt, NOISE), rel=1e-9)


@pytest.mark.parametrize("beta", [1.0, 3.0])
@pytest.mark.parametrize("custom_q", [False, True])
def test_closed_form_matches_monte_carlo(data, beta, custom_q):
    x, st, W = data
    Wt = fa.rotate_latents(W, 0.7)
    R, qv = (np.array([[0.5, 0.8], [-0.3, 0.2]]), np.array([0.3, 0.6])) if custom_q else (None, None)
    exact = fa.free_energy(Wt, NOISE, st, beta, R, qv)
    est, se = fa.free_energy_monte_carlo(Wt, NOISE, x, beta, R, qv, n_samples=4000, seed=1)
    assert abs(est - exact) < 4 * se
    assert se < 0.01 * abs(exact)  # the check has teeth


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0])
def test_optimal_mean_field_q_maximises_the_free_energy(data, beta):
    _, st, W = data
    Wt = fa.rotate_latents(W, 0.5)
    R, qv = fa.mean_field_posterior(Wt, NOISE, beta)
    best = fa.free_energy(Wt, NOISE, st, beta, R, qv)
    rng = np.random.default_rng(1)
    for _ in range(30):
        R2 = R + 0.05 * rng.standard_normal(R.shape)
        qv2 = qv * np.exp(0.1 * rng.standard_normal(qv.shape))
        assert fa.free_energy(Wt, NOISE, st, beta, R2, qv2) < best


def test_rotation_sweep_flat_likelihood_and_peaks_at_right_angles(data):
    _, st, W = data
    thetas = np.linspace(0, np.pi, 121)
    sw = fa.rotation_sweep(W, NOISE, st, thetas)
    assert np.ptp(sw["log_likelihood"]) < 1e-8
    assert np.all(sw["free_energy"] <= sw["log_likelihood"] + 1e-9)
    peaks = thetas[np.isclose(sw["free_energy"], sw["free_energy"].max(), atol=1e-8)]
    assert np.allclose(peaks, [0, np.pi / 2, np.pi], atol=1e-9)
    assert np.argmin(sw["free_energy"]) in (30, 90)  # pi/4 or 3 pi/4: most correlated posterior


def test_beta_sweep_same_directions_and_rotation_invariant_partition(data):
    _, st, W = data
    thetas = np.linspace(0, np.pi, 61)
    bs = fa.beta_sweep(W, NOISE, st, thetas, [0.5, 1.0, 2.0, 5.0, 20.0])
    assert np.allclose(bs["argmax_offset_from_pi_over_2"], 0.0)
    assert len(set(np.round(bs["amplitude"], 6))) == 5  # the amplitude does change with beta
    # F_beta = beta log Z_M - beta N KL(q || p_M(z|x)) with log Z_M independent of the rotation
    for beta in (0.5, 5.0):
        vals = [fa.free_energy(fa.rotate_latents(W, t), NOISE, st, beta)
                + beta * st.n * fa.kl_to_tempered_posterior(fa.rotate_latents(W, t), NOISE, beta) for t in thetas]
        assert np.ptp(vals) < 1e-8 * abs(vals[0])


def test_overcomplete_family_prunes(data):
    _, st, W = data
    alphas = np.linspace(0, 1, 21)
    sw = fa.overcomplete_sweep(W, NOISE, st, alphas)
    assert np.ptp(sw["log_likelihood"]) < 1e-8
    assert np.argmax(sw["free_energy"]) == 0
    assert sw["free_energy"][0] == pytest.approx(sw["log_likelihood"][0], abs=1e-9)
    assert np.all(sw["free_energy"][1:-1] < sw["free_energy"][0] - 1e-6)
    assert sw["component_norms"][0, 2] == 0.0


def test_bad_inputs_raise(data):
    _, st, W = data
    with pytest.raises(ValueError, match="beta"):
        fa.free_energy(W, NOISE, st, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        fa.mean_field_posterior(W, NOISE, beta=-1.0)
    with pytest.raises(ValueError, match="noise_var"):
        fa.log_likelihood(W, [0.1, 0.1, 0.1], st)
    with pytest.raises(ValueError, match="noise_var"):
        fa.free_energy(W, -0.1, st)
    with pytest.raises(ValueError, match="weights"):
        fa.log_likelihood(np.ones(2), NOISE, st)
    with pytest.raises(ValueError, match="stats.mean"):
        fa.free_energy(np.ones((3, 2)), NOISE, st)
    with pytest.raises(ValueError, match="recognition"):
        fa.free_energy(W, NOISE, st, 1.0, np.ones((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="alpha"):
        fa.overcomplete_weights(W, 1.5)
    with pytest.raises(ValueError, match="data x"):
        fa.sufficient_statistics(np.ones(5))

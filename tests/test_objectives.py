"""Objectives (isa_lib.objectives): ELBO/beta-VAE (Eq. 1, 2, 12), beta-TCVAE estimators (Eq. 3), FactorVAE."""
import itertools
import math

import pytest
import torch
from torch import distributions as D

from isa_lib import objectives as O


def normal_prior(d, dtype=torch.float64):
    return D.Independent(D.Normal(torch.zeros(d, dtype=dtype), torch.ones(d, dtype=dtype)), 1)


def make_outputs(b=6, d=3, pixels=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=dtype)
    logvar = 0.3 * torch.randn(b, d, generator=g, dtype=dtype) - 1.0
    z = O.reparameterize(mu, logvar, g)
    x = (torch.rand(b, 1, pixels, pixels, generator=g, dtype=dtype) > 0.5).to(dtype)
    logits = torch.randn(b, 1, pixels, pixels, generator=g, dtype=dtype)
    return O.Outputs(x, mu, logvar, z, logits)


def test_bernoulli_log_likelihood_by_hand():
    x = torch.tensor([[1.0, 0.0, 1.0]])
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    p = torch.sigmoid(logits)
    by_hand = (x * p.log() + (1 - x) * (1 - p).log()).sum()
    assert torch.allclose(O.bernoulli_log_likelihood(x, logits), by_hand.reshape(1), atol=1e-6)


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.3, -2.0]], dtype=torch.float64)
    z = O.reparameterize(mu.expand(200_000, 3), logvar.expand(200_000, 3), g)
    mc = (O.gaussian_log_density(z, mu, logvar).sum(-1) - normal_prior(3).log_prob(z)).mean()
    assert abs(mc - O.kl_normal_closed_form(mu, logvar)[0]) < 0.02


def test_elbo_monte_carlo_and_closed_form_agree_in_expectation_and_beta_scales_kl():
    out = make_outputs()
    prior = normal_prior(3)
    loss_cf, t_cf = O.elbo(out, prior, closed_form=True)
    _, t_b = O.elbo(out, prior, beta=4.0, closed_form=True)
    assert torch.isclose(t_cf["kl"], t_b["kl"])
    loss_b, _ = O.elbo(out, prior, beta=4.0, closed_form=True)
    assert torch.isclose(loss_b - loss_cf, 3.0 * t_cf["kl"])
    # Monte Carlo KL over many codes of the same posteriors converges to the closed form.
    big = O.Outputs(out.x.repeat(20000, 1, 1, 1), out.mu.repeat(20000, 1), out.logvar.repeat(20000, 1),
                    O.reparameterize(out.mu.repeat(20000, 1), out.logvar.repeat(20000, 1),
                                     torch.Generator().manual_seed(3)), out.logits.repeat(20000, 1, 1, 1))
    _, t_mc = O.elbo(big, prior)
    assert abs(t_mc["kl"] - t_cf["kl"]) < 0.03


def test_closed_form_refuses_other_priors():
    out = make_outputs()
    laplace = D.Independent(D.Laplace(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)), 1)
    with pytest.raises(ValueError, match="N\\(0, I\\)"):
        O.elbo(out, laplace, closed_form=True)


def exact_log_qz(z, mu, logvar):
    """log q(z_i) = log (1/N) sum_n q(z_i | x_n), by brute force over the whole data set."""
    lq = O.log_q_batch(z, mu, logvar)
    return torch.logsumexp(lq.sum(-1), 1) - math.log(len(mu)), (torch.logsumexp(lq, 1) - math.log(len(mu))).sum(-1)


def test_mss_is_exact_when_the_batch_is_the_data_set_and_mws_is_offset_by_log_n():
    out = make_outputs(b=7)
    joint, marg = exact_log_qz(out.z, out.mu, out.logvar)
    prior = normal_prior(3)
    t = O.decomposed_kl(out, prior, dataset_size=7, estimator="mss")
    log_qzx = O.gaussian_log_density(out.z, out.mu, out.logvar).sum(-1)
    assert torch.allclose(log_qzx - t["mi"], joint, atol=1e-10)
    assert torch.allclose(t["dwkl"] + prior.log_prob(out.z), marg, atol=1e-10)
    t = O.decomposed_kl(out, prior, dataset_size=7, estimator="mws")
    assert torch.allclose(log_qzx - t["mi"], joint - math.log(7), atol=1e-10)


def test_mss_weights_give_an_unbiased_estimate_of_q_z_over_all_minibatches():
    # Data set of N = 6 posteriors; a minibatch holds z_i's own data point and M - 1 = 2 others drawn
    # without replacement. Averaged over every such minibatch the estimate of q(z_i) must be exact.
    # (A weight matrix with 1/N in column 0 instead of the diagonal fails this.)
    n, m = 6, 3
    out = make_outputs(b=n, d=2, seed=5)
    exact = torch.exp(exact_log_qz(out.z, out.mu, out.logvar)[0])
    logw = O.aggregate_log_weights(m, n, "mss", dtype=torch.float64)
    estimates = {i: [] for i in range(n)}
    for batch in itertools.combinations(range(n), m):  # z_i may sit in any row of the batch
        idx = torch.tensor(batch)
        lq = O.log_q_batch(out.z[idx], out.mu[idx], out.logvar[idx]).sum(-1)
        for row, i in enumerate(batch):
            estimates[i].append(torch.exp(torch.logsumexp(lq[row] + logw[row], 0)))
    for i in range(n):
        assert torch.isclose(torch.stack(estimates[i]).mean(), exact[i], rtol=1e-10)


def test_total_correlation_is_zero_for_a_factorised_aggregate_posterior():
    # Posterior means on a full 2-D product grid with equal variances: q(z) = q(z_1) q(z_2) exactly.
    grid = torch.tensor([-2.0, 0.0, 1.5], dtype=torch.float64)
    mu = torch.cartesian_prod(grid, grid)
    logvar = torch.full_like(mu, -1.0)
    z = O.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    out = O.Outputs(torch.zeros(9, 1), mu, logvar, z, torch.zeros(9, 1))
    t = O.decomposed_kl(out, normal_prior(2), dataset_size=9, estimator="mss")
    assert torch.allclose(t["tc"], torch.zeros(9, dtype=torch.float64), atol=1e-10)
    # A correlated aggregate (means on the diagonal) has a clearly positive total correlation.
    mu_c = torch.stack([grid.repeat(3), grid.repeat(3)], 1)
    out_c = O.Outputs(torch.zeros(9, 1), mu_c, logvar, O.reparameterize(mu_c, logvar, torch.Generator().manual_seed(0)),
                      torch.zeros(9, 1))
    assert O.decomposed_kl(out_c, normal_prior(2), dataset_size=9)["tc"].mean() > 0.5


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_tcvae_terms_sum_to_the_kl_estimate_and_beta_one_equals_the_elbo(estimator):
    out = make_outputs(b=8)
    prior = normal_prior(3)
    loss_tc, terms = O.beta_tcvae(out, prior, dataset_size=100, beta=1.0, estimator=estimator)
    loss_elbo, t_elbo = O.elbo(out, prior)
    assert torch.isclose(terms["mi"] + terms["tc"] + terms["dwkl"], t_elbo["kl"])
    assert torch.isclose(loss_tc, loss_elbo)
    loss_b, _ = O.beta_tcvae(out, prior, dataset_size=100, beta=5.0, estimator=estimator)
    assert torch.isclose(loss_b - loss_tc, 4.0 * terms["tc"])


def test_permute_dims_keeps_every_marginal_and_breaks_the_joint():
    z = torch.arange(40.0).reshape(20, 2)  # perfectly correlated columns
    p = O.permute_dims(z, torch.Generator().manual_seed(0))
    assert torch.equal(p.sort(0).values, z.sort(0).values)
    assert not torch.equal(p[:, 1] - p[:, 0], z[:, 1] - z[:, 0])


def test_factor_vae_adds_gamma_times_the_discriminator_tc_and_the_discriminator_learns():
    from isa_lib.nets import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(2, hidden=32, layers=2).double()
    out = make_outputs(b=8, d=2)
    loss, terms = O.factor_vae(out, normal_prior(2), 100, gamma=6.0, discriminator=disc)
    base, _ = O.elbo(out, normal_prior(2), 100)
    assert torch.isclose(loss, base + 6.0 * terms["tc"])
    # Correlated codes against their permutations: the discriminator's loss falls well below log 2.
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(200):
        s = torch.randn(256, 1, generator=g, dtype=torch.float64)
        z = torch.cat([s, s + 0.1 * torch.randn(256, 1, generator=g, dtype=torch.float64)], 1)
        l = O.discriminator_loss(disc, z, z, g)
        opt.zero_grad(); l.backward(); opt.step()
    assert l.item() < 0.4 < math.log(2)


def test_bad_inputs_are_named():
    out = make_outputs()
    with pytest.raises(ValueError, match="estimator"):
        O.decomposed_kl(out, normal_prior(3), 100, estimator="exact")
    with pytest.raises(ValueError, match="dataset_size"):
        O.decomposed_kl(out, normal_prior(3), 2)
    with pytest.raises(ValueError, match="beta"):
        O.elbo(out, normal_prior(3), beta=-1)
    bad = O.Outputs(out.x, out.mu, out.logvar[:, :2], out.z, out.logits)
    with pytest.raises(ValueError, match="shape"):
        O.elbo(bad, normal_prior(3))


def test_factor_vae_total_correlation_is_positive_on_correlated_codes_and_near_zero_on_independent_ones():
    """TC = KL(q(z) || prod_j q(z_j)) >= 0, estimated by the density-ratio trick as E[logit_0 - logit_1]
    (class 0 = q(z)). A discriminator trained to tell correlated codes from their permutations gives a large
    positive TC on the correlated codes and about zero on codes whose coordinates are independent; a sign
    flip (logit_1 - logit_0) would make it negative, and FactorVAE would reward correlation."""
    from isa_lib.nets import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(2, hidden=32, layers=2).double()
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)

    def correlated(b):
        s = torch.randn(b, 1, generator=g, dtype=torch.float64)
        return torch.cat([s, s + 0.1 * torch.randn(b, 1, generator=g, dtype=torch.float64)], 1)

    for _ in range(200):
        z = correlated(256)
        l = O.discriminator_loss(disc, z, correlated(256), g)
        opt.zero_grad(); l.backward(); opt.step()
    z = correlated(512)
    # The true TC of this code is the mutual information of the two coordinates, log(sqrt(1.01) / 0.1) = 2.31 nats.
    true_tc = 0.5 * math.log(1.01 / 0.01)
    out = O.Outputs(torch.zeros(512, 1, 2, 2, dtype=torch.float64), z, torch.full_like(z, -6.0), z,
                    torch.zeros(512, 1, 2, 2, dtype=torch.float64))
    loss, terms = O.factor_vae(out, normal_prior(2), 10_000, gamma=3.0, discriminator=disc)
    assert 1.0 < terms["tc"].item() < 2 * true_tc
    base, _ = O.elbo(out, normal_prior(2), 10_000)
    assert torch.isclose(loss, base + 3.0 * terms["tc"])      # the penalty raises the loss: FactorVAE minimises TC
    indep = O.permute_dims(z, g)
    out_indep = O.Outputs(out.x, indep, out.logvar, indep, out.logits)
    assert O.factor_vae(out_indep, normal_prior(2), 10_000, gamma=3.0, discriminator=disc)[1]["tc"].item() < 0.5


@pytest.mark.parametrize("objective", ["elbo", "beta_tcvae", "factor_vae"])
@pytest.mark.parametrize("prior_name", ["normal", "isa"])
def test_bfloat16_autocast_never_reaches_a_log_density(objective, prior_name):
    """With ``amp`` the networks run in bfloat16 autocast, but the KL terms (Eq. 3, 12) must be float32's: a
    sharp posterior far from 0 (mu = 3, sigma = 0.0098) is where bfloat16 fails, since z and z - mu would be
    rounded at the spacing of |mu| (2^-6), larger than sigma. The network's outputs are exact in bfloat16 here
    (a bias-only last layer: mu = 3, logvar = -9.25), so the two computations must agree to float32 rounding;
    computed in bfloat16, E[log q(z|x)] is off by ~0.1 nats per dimension."""
    from isa_lib.nets import VAE, Discriminator, MLPDecoder, MLPEncoder
    from isa_lib.priors import make_prior

    d, b = 4, 64
    torch.manual_seed(0)
    enc, dec = MLPEncoder(d, image_size=8, hidden=16), MLPDecoder(d, image_size=8, hidden=16)
    with torch.no_grad():
        last = enc.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([3.0] * d + [-9.25] * d))
    model = VAE(enc, dec, make_prior(prior_name, d, sizes=[2, 2]))
    disc = Discriminator(d, hidden=16, layers=2)
    x = (torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()

    def terms(amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x, torch.Generator().manual_seed(2))
            prior = model.prior()
            if objective == "elbo":
                return O.elbo(out, prior, 1000)[1]
            if objective == "beta_tcvae":
                return O.beta_tcvae(out, prior, 1000, beta=6.0)[1]
            return O.factor_vae(out, prior, 1000, gamma=10.0, discriminator=disc)[1]

    ref, amp = terms(False), terms(True)
    assert amp["kl"].dtype == torch.float32
    for name in ("kl", "mi", "tc", "dwkl"):
        if name in ref:
            assert abs(amp[name].item() - ref[name].item()) < 1e-3 * d, (name, amp[name], ref[name])
    # the bfloat16 computation this guards against: the same posterior log-density from bfloat16 z and mu
    mu16 = torch.full((b, d), 3.0, dtype=torch.bfloat16)
    lv16 = torch.full((b, d), -9.25, dtype=torch.bfloat16)
    eps = torch.randn(b, d, generator=torch.Generator().manual_seed(3))
    z32 = O.reparameterize(mu16, lv16, eps=eps)
    exact = O.gaussian_log_density(z32, mu16.float(), lv16.float()).sum(-1).mean()
    bf16 = O.gaussian_log_density(z32.bfloat16(), mu16, lv16).float().sum(-1).mean()
    assert abs(bf16 - exact).item() > 50 * 1e-3 * d


# ------------------------------------------------------------------ written against surviving mutants (mutmut)
def test_reparameterize_is_mu_plus_sigma_times_the_generators_noise():
    """z = mu + exp(logvar / 2) * eps with eps drawn from the generator in mu's dtype (Sec. 2.1): the same
    generator state gives exactly this z (a sign flip of the noise term is the same law but another z, so a
    resume or a fused run would diverge); half-precision mu or logvar alone gives a float32 z."""
    mu = torch.tensor([[0.5, -1.0, 3.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.4, 0.2, -9.0]], dtype=torch.float64)
    eps = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    z = O.reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    assert z.dtype == torch.float64 and torch.equal(z, mu + torch.exp(0.5 * logvar) * eps)
    assert torch.equal(O.reparameterize(mu, logvar, eps=eps), z)
    for m, lv in ((mu.bfloat16(), logvar.float()), (mu.float(), logvar.bfloat16())):
        assert O.reparameterize(m, lv, eps=eps.float()).dtype == torch.float32


def test_elbo_checks_its_inputs_and_names_its_terms():
    out = make_outputs(b=6)
    with pytest.raises(ValueError, match="dataset_size"):
        O.elbo(out, normal_prior(3), dataset_size=5)
    loss0, t0 = O.elbo(out, normal_prior(3), 100, beta=0.0)            # beta = 0 is allowed: reconstruction only
    assert set(t0) == {"recon", "kl"} and torch.isclose(loss0, -t0["recon"])
    loss_half, _ = O.elbo(out, normal_prior(3), 100, beta=0.5)
    assert torch.isclose(loss_half, -(t0["recon"] - 0.5 * t0["kl"]))
    by_hand = O.bernoulli_log_likelihood(out.x, out.logits).mean()
    assert torch.isclose(t0["recon"], by_hand)


def test_beta_tcvae_defaults_are_the_elbo_and_its_terms_are_the_elbos():
    """alpha = beta = gamma = 1 by default (Eq. 3 sums back to Eq. 12); the logged kl is mi + tc + dwkl, the
    same Monte Carlo KL estimate as the ELBO's, and recon is the ELBO's reconstruction term."""
    out = make_outputs(b=8)
    prior = normal_prior(3)
    loss_tc, terms = O.beta_tcvae(out, prior, dataset_size=100)
    loss_elbo, t_elbo = O.elbo(out, prior, 100)
    assert torch.isclose(loss_tc, loss_elbo)
    assert torch.isclose(terms["kl"], t_elbo["kl"]) and torch.isclose(terms["recon"], t_elbo["recon"])
    assert set(terms) == {"mi", "tc", "dwkl", "recon", "kl"}
    # with the terms weighted differently, kl is still their plain sum
    _, t2 = O.beta_tcvae(out, prior, dataset_size=100, alpha=0.0, beta=7.0, gamma=3.0)
    assert torch.isclose(t2["kl"], t_elbo["kl"])


def test_aggregate_weights_at_their_boundaries():
    """Minibatch-stratified weights (Chen et al. 2018): a batch of 2 is enough; with a data set of one point only
    that point's own posterior counts (weight 1, every other weight 0); every row's weights sum to 1."""
    w2 = O.aggregate_log_weights(2, 10, "mss", dtype=torch.float64)
    assert torch.allclose(w2.exp().sum(1), torch.ones(2, dtype=torch.float64))
    w1 = O.aggregate_log_weights(2, 1, "mss", dtype=torch.float64)
    assert torch.equal(w1, torch.tensor([[0.0, -math.inf], [-math.inf, 0.0]], dtype=torch.float64))
    for est in ("mss", "mws"):
        assert O.aggregate_log_weights(4, 10, est, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="at least 2"):
        O.aggregate_log_weights(1, 10, "mss")


def test_check_aggregate_accepts_each_kernel_where_it_runs():
    for kernel in O.AGGREGATE_KERNELS:
        assert O.check_aggregate(kernel) == kernel and O.check_aggregate(kernel, "cpu") == kernel
    for kernel in ("dense", "streamed", "compiled"):
        assert O.check_aggregate(kernel, "cuda") == kernel
    assert O.check_aggregate("native", "cpu:0") == "native"
    with pytest.raises(ValueError, match="aggregate 'native' runs on a CPU, not on 'cuda:1'"):
        O.check_aggregate("native", "cuda:1")
    with pytest.raises(ValueError, match=r"unknown aggregate kernel 'fast'; choose one of \['dense'"):
        O.check_aggregate("fast")


def test_permutations_follow_the_generator_and_factor_vae_checks_its_inputs():
    """permute_dims and the discriminator's loss draw from the generator they are given (a fused or resumed run
    reproduces them); FactorVAE's ELBO part checks the batch against the data-set size like the ELBO's."""
    from isa_lib.nets import Discriminator

    z = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a, b = (O.permute_dims(z, torch.Generator().manual_seed(s)) for s in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, O.permute_dims(z, torch.Generator().manual_seed(2)))
    torch.manual_seed(0)
    disc = Discriminator(3, hidden=8, layers=1).double()
    l1, l2 = (O.discriminator_loss(disc, z, z, torch.Generator().manual_seed(s)) for s in (4, 4))
    assert torch.equal(l1, l2) and not torch.equal(l1, O.discriminator_loss(disc, z, z, torch.Generator().manual_seed(9)))
    out = make_outputs(b=6)
    with pytest.raises(ValueError, match="dataset_size"):
        O.factor_vae(out, normal_prior(3), 5, gamma=1.0, discriminator=Discriminator(3, hidden=8, layers=1).double())


def test_reparameterize_upcasts_before_the_arithmetic():
    """With half-precision logvar, sigma = exp(logvar / 2) is computed in float32, not rounded in bfloat16."""
    mu = torch.tensor([[0.5, -1.0, 3.0]])
    lv = torch.tensor([[-0.4, 0.2, -9.0]]).bfloat16()
    eps = torch.randn(1, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(O.reparameterize(mu, lv, eps=eps), mu + torch.exp(0.5 * lv.float()) * eps)

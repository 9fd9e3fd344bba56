"""Prior modules (isa_lib.priors): the ISA prior at all exponents 2 is N(0, I), learned exponents stay valid."""
import pytest
import torch

from isa_lib import objectives as O
from isa_lib.priors import ISAPrior, NormalPrior, make_prior


def test_isa_with_all_exponents_two_gives_the_normal_loss():
    torch.manual_seed(0)
    z = torch.randn(64, 20, dtype=torch.float64) * 1.5
    isa = make_prior("isa", 20, p0=2.0, sizes=[4] * 5, exponents=2.0).double()
    normal = NormalPrior(20).double()
    assert torch.allclose(isa().log_prob(z), normal().log_prob(z), atol=1e-10)
    out = O.Outputs(torch.rand(64, 1, 4, 4, dtype=torch.float64), z + 0.1, torch.zeros_like(z) - 1.0, z,
                    torch.randn(64, 1, 4, 4, dtype=torch.float64))
    assert torch.isclose(O.elbo(out, isa(), 1000)[0], O.elbo(out, normal(), 1000)[0], atol=1e-10)
    assert torch.isclose(O.beta_tcvae(out, isa(), 1000, beta=3.0)[0], O.beta_tcvae(out, normal(), 1000, beta=3.0)[0],
                         atol=1e-10)


def test_learned_exponents_get_gradients_and_stay_in_bounds():
    prior = make_prior("isa", 6, p0=2.1, sizes=[2, 2, 2], exponents=2.0, learn=True, bounds=(1.0, 3.0))
    assert torch.allclose(prior.exponents, torch.full((3,), 2.0), atol=1e-6)
    z = torch.randn(256, 6) * torch.tensor([0.2, 0.2, 1, 1, 3, 3])
    opt = torch.optim.SGD(prior.parameters(), lr=50.0)  # a huge step must not leave the bounds
    for _ in range(20):
        loss = -prior().log_prob(z).mean()
        opt.zero_grad()
        loss.backward()
        assert prior.raw_exponents.grad is not None and torch.isfinite(prior.raw_exponents.grad).all()
        opt.step()
        assert ((prior.exponents >= 1.0) & (prior.exponents <= 3.0)).all()
    assert not torch.allclose(prior.exponents, torch.full((3,), 2.0), atol=1e-3)


def test_fixed_exponents_are_buffers_not_parameters():
    prior = make_prior("isa", 20, sizes=[4] * 5)
    assert list(prior.parameters()) == []
    assert torch.allclose(prior.exponents, torch.full((5,), 2.2))
    assert prior().event_shape == (20,)


def test_bad_layouts_and_exponents_are_named():
    with pytest.raises(ValueError, match=r"layout \[4, 4\] has 8 dimensions but the latent size is 10"):
        make_prior("isa", 10, sizes=[4, 4])
    with pytest.raises(ValueError, match="exponents"):
        ISAPrior(2.1, [2, 2], [2.0, -1.0])
    with pytest.raises(ValueError, match="inside bounds"):
        ISAPrior(2.1, [2, 2], [2.0, 6.0], learn=True)
    with pytest.raises(ValueError, match="unknown prior 'laplace'"):
        make_prior("laplace", 4)


def test_priors_hand_out_unvalidated_distributions_with_the_same_density():
    """prior() runs once per training step, so it skips argument validation (a host sync per check on a GPU);
    the density is the validated one's."""
    from isa_lib.lpnested import ISA

    z = torch.randn(32, 20)
    for learn in (False, True):
        prior = make_prior("isa", 20, p0=2.1, sizes=[4] * 5, exponents=2.2 if not learn else 2.0, learn=learn)
        d = prior()
        assert d._validate_args is False
        ref = ISA(torch.tensor(2.1), [4] * 5, prior.exponents.detach()).log_prob(z)
        assert torch.allclose(d.log_prob(z), ref, atol=1e-5)
    n = NormalPrior(20)()
    assert n._validate_args is False and n.base_dist._validate_args is False
    assert torch.allclose(n.log_prob(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))


# ------------------------------------------------------------------ written against surviving mutants (mutmut)
def test_prior_defaults_are_the_papers_and_boundaries_hold():
    """make_prior's ISA defaults are the paper's dSprites prior (Sec. 4, App. A.2: p0 = 2.1, p_i = 2.2, fixed);
    a one-dimensional normal prior is allowed; learned exponents must lie strictly inside bounds 0 < low < high."""
    prior = make_prior("isa", 20, sizes=[4] * 5)
    assert prior.p0 == 2.1 and float(prior.outer_exponent) == pytest.approx(2.1) and prior.learn is False
    assert ISAPrior(2.1, [2, 2], 2.2).learn is False
    assert NormalPrior(1)().event_shape == (1,)
    with pytest.raises(ValueError, match="latent_dim"):
        NormalPrior(0)
    with pytest.raises(ValueError, match="0 < low < high"):
        ISAPrior(2.1, [2, 2], 2.0, learn=True, bounds=(0.0, 3.0))
    with pytest.raises(ValueError, match="0 < low < high"):
        ISAPrior(2.1, [2, 2], 2.0, learn=True, bounds=(3.0, 3.0))
    for bad in ([1.0, 2.0], [2.0, 3.0]):     # on a bound is not inside
        with pytest.raises(ValueError, match="inside bounds"):
            ISAPrior(2.1, [2, 2], bad, learn=True, bounds=(1.0, 3.0))
    with pytest.raises(ValueError, match="needs a layout"):
        make_prior("isa", 4)


def test_isa_prior_passes_its_scale_and_keeps_the_default_dtype():
    """The scale s of Eq. 11 reaches the distribution (and is validated at construction); the buffers take
    torch's default dtype, and a model moved with .double() computes in float64 throughout."""
    from isa_lib.lpnested import ISA

    z = torch.randn(16, 4, dtype=torch.float64)
    prior = ISAPrior(2.1, [2, 2], [2.2, 1.7], scale=0.7)
    assert prior.fixed_exponents.dtype == prior.outer_exponent.dtype == torch.get_default_dtype()
    ref = ISA(2.1, [2, 2], [2.2, 1.7], scale=0.7).log_prob(z)
    # (the buffers hold 2.2 and 1.7 rounded to float32: agreement to ~1e-6, where s = 2 instead would be off by ~1)
    assert torch.allclose(prior.double()().log_prob(z), ref, atol=1e-5, rtol=0)
    assert prior().log_prob(z).dtype == torch.float64
    with pytest.raises(ValueError, match="scale"):
        ISAPrior(2.1, [2, 2], 2.2, scale=-1.0)

"""Tests of isa_lib.lpnested (and the quadrature and Fig. 3 helpers of isa_lib.lpnested_analysis): Eq. 5-11 and
Alg. 1 of the paper, checked numerically, not trusted."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from isa_lib.lpnested import (
    ISA,
    LpNested,
    LpTree,
    PGeneralizedNormal,
    eq6_tree,
    isa_tree,
    log_lp_nested_norm,
    log_surface_area,
    parse_tree,
)
from isa_lib.lpnested_analysis import (
    dsprites_positions,
    expected_log_density_vs_angle,
    log_surface_area_monte_carlo,
    marginal_cdf_1d,
    total_mass,
)


# ------------------------------------------------------------------ normalisation (Eq. 7, 8, 11)
@pytest.mark.parametrize("tree", [
    (0.7, [2]),
    (3.5, [2]),
    (0.7, [1, (3.5, [1])]),
    (9.0, [(1.0, [2])]),          # root with a single inner child
    (1.0, [1, 1]),
])
def test_normalisation_2d(tree):
    assert total_mass(LpNested(tree), n_points=250) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("tree", [
    eq6_tree(0.7, 3.5),
    eq6_tree(9.0, 2.0),
    eq6_tree(1.0, 9.0),
    eq6_tree(2.0, 0.7),
    (1.5, [3]),                   # three children under one node: the p^(l-1) factor of Eq. 8
    (2.0, [1, (0.7, [1, (3.0, [1])])]),
])
def test_normalisation_3d(tree):
    assert total_mass(LpNested(tree), n_points=100) == pytest.approx(1.0, abs=1e-3)


def test_normalisation_with_scale():
    assert total_mass(LpNested(eq6_tree(1.3, 2.5), scale=0.3), n_points=100) == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------ special cases
def test_all_twos_is_standard_normal():
    torch.manual_seed(0)
    z = torch.randn(50, 5, dtype=torch.float64) * 3
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    for dist in [LpNested((2.0, [1, (2.0, [2]), (2.0, [1, 1])])), ISA(2.0, [2, 3], [2.0, 2.0]),
                 PGeneralizedNormal(2.0, 5)]:
        assert torch.allclose(dist.log_prob(z), ref, atol=1e-10, rtol=0)
    z32 = z.float()
    assert torch.allclose(ISA(2.0, [2, 3], [2.0, 2.0]).log_prob(z32), ref.float(), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("p", [0.5, 1.0, 1.7, 4.0])
@pytest.mark.parametrize("s", [None, 0.5])
def test_single_node_is_product_of_generalised_normals(p, s):
    sv = 2.0 if s is None else s
    z = torch.linspace(-4, 4, 21, dtype=torch.float64).reshape(7, 3)
    one_d = math.log(p / (2 * sv ** (1 / p) * math.gamma(1 / p))) - z.abs() ** p / sv
    assert torch.allclose(PGeneralizedNormal(p, 3, scale=s).log_prob(z), one_d.sum(-1), atol=1e-10)
    # the same density as an ISA whose subspace exponents equal p0
    assert torch.allclose(ISA(p, [1, 2], [p, p], scale=s).log_prob(z), one_d.sum(-1), atol=1e-10)


def test_norm_matches_direct_formula():
    z = torch.tensor([[0.3, -1.2, 2.0], [1e-3, 5.0, -0.1]], dtype=torch.float64)
    p0, p1 = 1.3, 4.0
    direct = (z[:, 0].abs() ** p0 + (z[:, 1].abs() ** p1 + z[:, 2].abs() ** p1) ** (p0 / p1)) ** (1 / p0)
    assert torch.allclose(log_lp_nested_norm(z, eq6_tree(p0, p1)).exp(), direct, rtol=1e-12)


def test_surface_area_matches_beta_form_and_known_spheres():
    # unit L2 sphere in R^3 has area 4 pi; for L1 in R^2, S_f(1) = n * volume of the unit ball (the
    # measure of Eq. 7, not the Euclidean perimeter 4 sqrt(2)) = 2 * 2 = 4.
    assert float(log_surface_area((2.0, [3]))) == pytest.approx(math.log(4 * math.pi), rel=1e-12)
    assert float(log_surface_area((1.0, [2]))) == pytest.approx(math.log(4.0), rel=1e-12)
    # telescoping Beta form of Eq. 8 (appendix "Equations") for a node with children of sizes 1, 2, 3 and exponent p
    p = 1.7  # children of sizes 1, 2, 3
    tree = (p, [1, (2.0, [2]), (2.0, [3])])
    lb = lambda a, b: math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    root = lb(1 / p, 2 / p) + lb(3 / p, 3 / p) - 2 * math.log(p)
    inner = math.log(4 * math.pi) - 3 * math.log(2) + (math.log(2 * math.pi) - 2 * math.log(2))
    assert float(log_surface_area(tree)) == pytest.approx(6 * math.log(2) + root + inner, rel=1e-12)


@pytest.mark.parametrize("tree", [(2.0, [3]), eq6_tree(0.7, 3.5), (2.1, [(0.6, [2]), (4.0, [2])])])
def test_surface_area_monte_carlo_agrees_with_eq8(tree):
    """S_f(1) = n V_f(1) with the ball's volume counted in the cube: Eq. 8 checked without Eq. 8."""
    est, se = log_surface_area_monte_carlo(tree, n_samples=100_000, seed=1)
    assert 0 < se < 0.01
    assert abs(est - float(log_surface_area(tree))) < 4 * se
    assert log_surface_area_monte_carlo(tree, 1000, seed=2) == log_surface_area_monte_carlo(tree, 1000, seed=2)


def test_surface_area_check_plot_draws_every_family():
    import matplotlib.pyplot as plt
    from isa_lib.plots.lpnested import plot_surface_area_check

    rows = [dict(tree=name, p=p, formula=1.0, monte_carlo=1.01, se=0.01) for name in ("a", "b") for p in (1.0, 2.0)]
    fig = plot_surface_area_check(rows, title="t")
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    plt.close(fig)


# ------------------------------------------------------------------ sampler (Alg. 1)
@pytest.mark.parametrize("tree", [eq6_tree(0.7, 3.5), eq6_tree(3.0, 1.0),
                                  (1.5, [(2.5, [2]), (0.8, [1, (4.0, [2])])]),
                                  # leaves between inner nodes: each child takes its own Dirichlet share
                                  (1.5, [2, (2.5, [2]), 1, (0.7, [2])])])
def test_radial_law_ks(tree):
    torch.manual_seed(1)
    d = LpNested(tree)
    x = d.sample((4000,))
    e = d.radial_energy(x).double().numpy()
    p0 = float(d.exponents[0])
    assert stats.kstest(e, stats.gamma(d.n / p0).cdf).pvalue > 1e-3


def test_marginals_ks_nested_tree():
    torch.manual_seed(2)
    d = LpNested(eq6_tree(1.5, 0.8), scale=1.0)
    x = d.sample((3000,)).double().numpy()
    for dim in (0, 1, 2):
        grid, _, cdf = marginal_cdf_1d(d, dim, half_width=40.0, n_grid=801, n_points=60)
        res = stats.kstest(x[:, dim], lambda v: np.interp(v, grid, cdf))
        assert res.pvalue > 1e-3, (dim, res)
    # power check: the same test rejects samples of the tree with the exponents swapped
    torch.manual_seed(3)
    wrong = LpNested(eq6_tree(0.8, 1.5), scale=1.0).sample((3000,)).double().numpy()
    grid, _, cdf = marginal_cdf_1d(d, 0, half_width=40.0, n_grid=801, n_points=60)
    assert stats.kstest(wrong[:, 0], lambda v: np.interp(v, grid, cdf)).pvalue < 1e-3


def test_sample_reproducible_and_shapes():
    d = ISA(2.1, [4, 3, 3], [2.2, 1.5, 3.0])
    torch.manual_seed(7)
    a = d.sample((5, 2))
    torch.manual_seed(7)
    b = d.sample((5, 2))
    assert a.shape == (5, 2, 10) and torch.equal(a, b)
    assert d.sample().shape == (10,)
    assert d.log_prob(a).shape == (5, 2)


def test_sample_signs_symmetric_and_normal_moments():
    torch.manual_seed(4)
    x = ISA(2.0, [2, 2], [2.0, 2.0]).sample((20000,)).double()
    assert x.mean(0).abs().max() < 0.05
    assert (x.var(0) - 1).abs().max() < 0.05
    assert abs(stats.kurtosis(x[:, 0].numpy())) < 0.15


# ------------------------------------------------------------------ ISA independence structure
def test_isa_subspaces_independent_within_dependent():
    torch.manual_seed(5)
    d = ISA(1.0, [2, 2, 3], [2.0, 2.0, 3.0])
    x = d.sample((20000,))
    r = d.subspace_log_norms(x).exp().double().numpy()
    c = np.corrcoef(r.T)
    assert np.abs(c[np.triu_indices(3, 1)]).max() < 0.05
    a = x.abs().double().numpy()
    # coordinates of one subspace share its radius: |z1|, |z2| clearly correlated when p_i != p0
    assert np.corrcoef(a[:, 0], a[:, 1])[0, 1] > 0.1
    assert np.corrcoef(a[:, 4], a[:, 5])[0, 1] > 0.1
    # control: with p_i == p0 the prior is factorial (Eq. 5) and the same statistic vanishes
    torch.manual_seed(6)
    y = ISA(1.0, [2, 2, 3], [1.0, 1.0, 1.0]).sample((20000,)).abs().double().numpy()
    assert abs(np.corrcoef(y[:, 0], y[:, 1])[0, 1]) < 0.05


# ------------------------------------------------------------------ gradients w.r.t. exponents
def test_gradcheck_isa_exponents():
    torch.manual_seed(0)
    z = torch.randn(6, 5, dtype=torch.float64) * 1.5
    p0 = torch.tensor(2.1, dtype=torch.float64, requires_grad=True)
    ps = torch.tensor([2.2, 1.3], dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: ISA(a, [2, 3], b, scale=c).log_prob(z), (p0, ps, s))
    z4 = z[:, :4]
    assert torch.autograd.gradcheck(lambda a, b: ISA(a, [2, 2], b).log_prob(z4), (p0, ps))
    # exponents as a list of 0-d tensors and a general tree
    q0 = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    q1 = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    z3 = z[:, :3]
    assert torch.autograd.gradcheck(lambda a, b: LpNested(eq6_tree(a, b)).log_prob(z3), (q0, q1))
    assert torch.autograd.gradcheck(lambda a, b: ISA(a, [1, 2], [b, b]).log_prob(z3), (q0, q1))


def test_parameter_updated_in_place_is_used():
    ps = torch.nn.Parameter(torch.tensor([2.0, 2.0], dtype=torch.float64))
    d = ISA(2.1, [2, 2], ps)
    z = torch.ones(1, 4, dtype=torch.float64)
    before = d.log_prob(z).item()
    with torch.no_grad():
        ps.add_(0.5)
    assert d.log_prob(z).item() != before
    d.log_prob(z).sum().backward()
    assert ps.grad is not None and torch.isfinite(ps.grad).all()


# ------------------------------------------------------------------ numerical stability
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p0,p", [(0.2, 0.2), (20.0, 20.0), (0.2, 20.0), (20.0, 0.2)])
def test_extreme_exponents_and_values_finite(dtype, p0, p):
    z = torch.tensor([[0.0] * 4, [1e4] * 4, [-1e4, 0.0, 1e-30, 1e4], [1e-3, 2.0, -3.0, 1e4]], dtype=dtype)
    for d in [ISA(p0, [2, 2], [p, p]), ISA(p0, [1, 3], [p, p]), LpNested((p0, [1, (p, [1, (p0, [2])])]))]:
        lp = d.log_prob(z)
        assert lp.dtype == dtype and torch.isfinite(lp).all(), (d, lp)
        x = d.sample((200,))
        assert torch.isfinite(x).all() and torch.isfinite(d.log_prob(x.to(dtype))).all()
    pt = torch.tensor([p0, p], dtype=torch.float64, requires_grad=True)
    ISA(pt[0], [2, 2], [pt[1], pt[1]]).log_prob(z.double()).sum().backward()
    assert torch.isfinite(pt.grad).all()


def test_dtype_follows_input_and_parameters():
    d = ISA(2.1, [2, 2], [2.2, 2.2])
    assert d.log_prob(torch.zeros(3, 4)).dtype == torch.float32
    assert d.log_prob(torch.zeros(3, 4, dtype=torch.float64)).dtype == torch.float64
    d64 = ISA(torch.tensor(2.1, dtype=torch.float64), [2, 2], torch.tensor([2.2, 2.2], dtype=torch.float64))
    assert d64.sample((2,)).dtype == torch.float64


# ------------------------------------------------------------------ Fig. 3 helper
def test_fig3_orientation_preference():
    pts = dsprites_positions(32)
    th = torch.tensor([0.0, math.pi / 4])
    lap = expected_log_density_vs_angle(PGeneralizedNormal(1.0, 2), pts, th)
    plat = expected_log_density_vs_angle(PGeneralizedNormal(4.0, 2), pts, th)
    gauss = expected_log_density_vs_angle(PGeneralizedNormal(2.0, 2), pts, th)
    assert lap[1] > lap[0] + 0.03          # Laplace prefers the diagonal code
    assert plat[0] > plat[1] + 0.05        # platykurtic prefers the axis-aligned code
    assert abs(float(gauss[1] - gauss[0])) < 1e-9


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("bad,word", [(-1.0, "> 0"), (0.0, "> 0"), (float("nan"), "finite"),
                                      (float("inf"), "finite")])
def test_bad_exponents(bad, word):
    with pytest.raises(ValueError, match="root\\[1\\]") as e:
        LpNested((2.0, [1, (bad, [2])]))
    assert word in str(e.value)
    with pytest.raises(ValueError, match="exponents\\[1\\]"):
        ISA(2.0, [2, 2], [2.0, bad])
    with pytest.raises(ValueError, match="p0"):
        ISA(bad, [2, 2], [2.0, 2.0])
    with pytest.raises(ValueError, match="exponents\\[0\\]"):
        ISA(2.0, [2, 2], torch.tensor([bad, 2.0]))


def test_bad_structure_and_sizes():
    with pytest.raises(ValueError, match="empty"):
        LpNested((2.0, [1, (2.0, [])]))
    with pytest.raises(ValueError, match="leaf count"):
        parse_tree((2.0, [0]))
    with pytest.raises(ValueError, match="subspaces"):
        ISA(2.0, [2, 2, 2], [2.0, 2.0])
    with pytest.raises(ValueError, match="sizes\\[1\\]"):
        ISA(2.0, [2, 0], [2.0, 2.0])
    with pytest.raises(ValueError, match="latent size"):
        ISA(2.0, [2, 2], [2.0, 2.0]).log_prob(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="latent size"):
        LpNested(eq6_tree()).log_prob(torch.zeros(2))
    with pytest.raises(ValueError, match="latent size"):
        log_lp_nested_norm(torch.zeros(4, 2), eq6_tree())
    with pytest.raises(ValueError, match="scale"):
        LpNested(eq6_tree(), scale=-1.0)


def test_validate_args_catches_exponent_pushed_negative():
    ps = torch.nn.Parameter(torch.tensor([2.0, 2.0]))
    d = ISA(2.1, [2, 2], ps, validate_args=True)
    with torch.no_grad():
        ps[1] = -0.5
    with pytest.raises(ValueError, match="exponents\\[1\\]"):
        d.log_prob(torch.zeros(4))


def test_tree_layout_and_spec_roundtrip():
    t = LpTree(eq6_tree(1.0, 9.0))
    assert t.n == 3 and t.n_nodes == 2 and t.spec() == (1.0, [1, (9.0, [2])])
    nodes, edges = t.layout()
    assert sum(n["kind"] == "leaf" for n in nodes) == 3 and len(edges) == len(nodes) - 1


def test_validate_args_false_skips_only_the_value_checks():
    """``validate_args=False`` (as ISAPrior uses once per training step) gives the same density with no
    read of an exponent's value; the default still names a bad exponent, and the structure is always checked."""
    exps = torch.tensor([1.3, 2.7, 0.9], dtype=torch.float64)
    p0 = torch.tensor(2.1, dtype=torch.float64)
    z = torch.randn(50, 7, dtype=torch.float64)
    ref = ISA(p0, [2, 3, 2], exps).log_prob(z)
    reads = []
    orig = torch.Tensor.item
    try:
        torch.Tensor.item = lambda self: reads.append(1) or orig(self)
        fast = ISA(p0, [2, 3, 2], exps, validate_args=False).log_prob(z)
    finally:
        torch.Tensor.item = orig
    assert reads == [] and torch.equal(fast, ref)
    with pytest.raises(ValueError, match=r"exponents\[1\]"):
        ISA(p0, [2, 3, 2], torch.tensor([1.3, -2.0, 0.9]))
    with pytest.raises(ValueError, match="sizes has 3 subspaces"):
        ISA(p0, [2, 3, 2], torch.tensor([1.3, 2.0]), validate_args=False)
    # without checks a bad exponent is the caller's responsibility: it is not silently "fixed"
    assert torch.isnan(ISA(p0, [2, 3, 2], torch.tensor([1.3, -2.0, 0.9], dtype=torch.float64),
                           validate_args=False).log_prob(z)).all()


# ------------------------------------------------------------------ ISA against the general tree at mixed exponents
# The ISA class has its own normaliser (Eq. 8 vectorised over subspaces) and, for equal subspace sizes, its own
# batched evaluation of Eq. 9-10. Both must equal the general Lp-nested tree of Eq. 9 (isa_tree) at exponents
# p_i != p0 and p_i differing between subspaces: with p_i = p0, or every exponent 2, a p_i swapped for p0 (or
# p0 for p_i) gives the same number and goes unnoticed.
MIXED = [
    (2.1, [4, 4, 4, 4, 4], [2.2, 1.3, 3.5, 0.8, 4.0]),   # the paper's dSprites layout (equal sizes: fast path)
    (1.4, [2, 2], [3.0, 0.7]),                            # equal sizes, p0 below and above the p_i
    (0.9, [1, 3, 2], [2.6, 1.7, 4.5]),                     # unequal sizes: the general evaluation
    (3.2, [3], [1.1]),                                    # one subspace
]


@pytest.mark.parametrize("p0,sizes,exps", MIXED)
def test_isa_equals_the_general_tree_at_mixed_exponents(p0, sizes, exps):
    torch.manual_seed(0)
    z = torch.randn(40, sum(sizes), dtype=torch.float64) * 1.7
    isa = ISA(p0, sizes, exps, scale=1.3)
    tree = LpNested(isa_tree(p0, sizes, exps), scale=1.3)
    assert torch.allclose(isa.log_norm(z), tree.log_norm(z), atol=1e-12, rtol=0)
    assert torch.allclose(isa.log_normaliser(torch.float64), tree.log_normaliser(torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(isa.log_prob(z), tree.log_prob(z), atol=1e-10, rtol=0)
    assert torch.allclose(isa.log_prob(z.float()), tree.log_prob(z.float()).float(), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("p0,sizes,exps", MIXED)
def test_isa_gradients_in_the_exponents_equal_the_general_tree(p0, sizes, exps):
    """d log rho / d p_i and d p0 (Sec. 4 "Learning the Exponents") through ISA and through the general tree."""
    torch.manual_seed(1)
    z = torch.randn(30, sum(sizes), dtype=torch.float64)

    def grads(make):
        q0 = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
        qs = torch.tensor(exps, dtype=torch.float64, requires_grad=True)
        make(q0, qs).log_prob(z).sum().backward()
        return q0.grad, qs.grad

    g_isa = grads(lambda q0, qs: ISA(q0, sizes, qs))
    g_tree = grads(lambda q0, qs: LpNested(isa_tree(q0, sizes, [qs[i] for i in range(len(sizes))])))
    for a, b in zip(g_isa, g_tree):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9)
    # every p_i of a subspace of two or more coordinates matters (|z_j| alone does not depend on p_i): the
    # comparison is not vacuous
    assert all(abs(float(g)) > 1e-3 for g, k in zip(g_isa[1], sizes) if k > 1)


@pytest.mark.parametrize("p0,sizes,exps,n_points", [
    (1.5, [1, 2], [2.5, 3.5], 100),    # 3-D: p_i != p0 in a subspace of two coordinates
    (0.8, [2, 1], [3.0, 1.6], 100),
    (2.6, [2, 2], [1.2, 3.4], 36),     # 4-D, equal sizes (the batched evaluation)
])
def test_isa_normalises_to_one_at_mixed_exponents(p0, sizes, exps, n_points):
    """Eq. 7-8 checked by quadrature, without Eq. 8, for ISA's own normaliser with p_i != p0."""
    assert total_mass(ISA(p0, sizes, exps), n_points=n_points) == pytest.approx(1.0, abs=2e-3)


# ------------------------------------------------------------------ written against surviving mutants (mutmut)
def test_batch_axes_and_shared_exponents():
    """A value of shape batch + (n,) gives log densities of shape batch (Eq. 7 over the last axis only, also in
    the batched ISA evaluation); one exponent for every subspace equals the same exponent listed per subspace."""
    torch.manual_seed(3)
    z = torch.randn(2, 3, 6, dtype=torch.float64)
    for d in (ISA(2.1, [3, 3], [2.6, 1.4]), ISA(1.7, [2, 4], [2.6, 1.4]), LpNested(eq6_tree(1.3, 2.5))):
        zz = z[..., :d.n]
        flat = d.log_prob(zz.reshape(-1, d.n)).reshape(2, 3)
        assert d.log_prob(zz).shape == (2, 3) and torch.allclose(d.log_prob(zz), flat, atol=1e-12)
        assert torch.allclose(log_lp_nested_norm(zz, d.tree), d.log_norm(zz), atol=1e-12)
    shared = ISA(2.1, [3, 3], 1.6)
    assert torch.equal(shared.log_prob(z), ISA(2.1, [3, 3], [1.6, 1.6]).log_prob(z))
    assert torch.equal(ISA(2.1, [3, 3], torch.tensor(1.6, dtype=torch.float64)).log_prob(z), shared.log_prob(z))
    assert ISA(2.1, (3, 3), [1.6, 1.6]).sizes == [3, 3]                       # any sequence of sizes
    with pytest.raises(ValueError, match="sizes must be a list"):
        ISA(2.1, "33", [1.6, 1.6])


def test_subspace_norms_and_radial_energy_by_hand():
    """log v_i = log ||z_{V_i}||_{p_i} per subspace (Eq. 9-10) and the radial energy f(z)^p0 / s (Eq. 11),
    computed directly in float64, on a batch of shape (2, 3)."""
    torch.manual_seed(4)
    z = torch.randn(2, 3, 5, dtype=torch.float64)
    p0, sizes, ps, s = 1.8, [2, 3], [2.7, 1.2], 0.6
    d = ISA(p0, sizes, ps, scale=s)
    v = torch.stack([(z[..., :2].abs() ** ps[0]).sum(-1) ** (1 / ps[0]),
                     (z[..., 2:].abs() ** ps[1]).sum(-1) ** (1 / ps[1])], -1)
    assert torch.allclose(d.subspace_log_norms(z), v.log(), atol=1e-12)
    f = (v ** p0).sum(-1) ** (1 / p0)
    assert torch.allclose(d.radial_energy(z), f ** p0 / s, rtol=1e-12)
    assert d.radial_energy(z.float()).dtype == torch.float32 and d.subspace_log_norms(z.float()).dtype == torch.float32


def test_given_exponents_override_the_trees_and_promote_the_dtype():
    """log_lp_nested_norm(z, tree, exponents): the given pre-order exponents replace the tree's, and the result
    is computed in the wider of the two dtypes."""
    z = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float32)
    e = torch.tensor([1.3, 4.0], dtype=torch.float64)
    out = log_lp_nested_norm(z, eq6_tree(2.0, 2.0), exponents=e)
    assert out.dtype == torch.float64
    assert torch.allclose(out, log_lp_nested_norm(z.double(), eq6_tree(1.3, 4.0)), atol=1e-12)
    with pytest.raises(ValueError, match="latent size mismatch"):
        log_lp_nested_norm(torch.zeros(2, 4), eq6_tree())
    with pytest.raises(ValueError, match="latent size mismatch"):
        log_lp_nested_norm(torch.tensor(1.0), eq6_tree())
    assert log_lp_nested_norm(torch.zeros(3), eq6_tree()).shape == ()     # one point without a batch axis


def test_samples_take_the_parameters_dtype():
    """Plain-float parameters sample in torch's default dtype, float64 tensor parameters in float64 (Alg. 1 runs
    in float64 either way)."""
    assert ISA(2.1, [2, 2], [2.2, 1.5]).sample((3,)).dtype == torch.get_default_dtype()
    assert PGeneralizedNormal(1.5, 3).sample((3,)).dtype == torch.get_default_dtype()
    p = torch.tensor([2.2, 1.5], dtype=torch.float64)
    assert LpNested(isa_tree(2.1, [2, 2], [p[0], p[1]])).sample((3,)).dtype == torch.float64


def test_radial_density_is_the_gamma_law_of_eq11():
    """log g0(v) of Eq. 11: v^p0 / s ~ Gamma(n / p0, 1), so g0(v) = p0 v^(p0 - 1) / s * Gamma(n/p0).pdf(v^p0 / s);
    and lp_nested_norm is exp(log_lp_nested_norm)."""
    from isa_lib.lpnested import log_radial_density, lp_nested_norm

    v = torch.tensor([0.05, 0.4, 1.0, 1.7, 3.2], dtype=torch.float64)
    for n, p0, s in ((5, 2.1, 2.0), (3, 0.8, 0.6), (20, 3.5, 1.4)):
        t = v.numpy() ** p0 / s
        ref = np.log(p0) + (p0 - 1) * np.log(v.numpy()) - np.log(s) + stats.gamma(n / p0).logpdf(t)
        assert np.allclose(log_radial_density(v, n, p0, s).numpy(), ref, atol=1e-10, rtol=0)
    assert log_radial_density(v.float(), 5, 2.1).dtype == torch.float32
    z = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    e = torch.tensor([1.3, 4.0], dtype=torch.float64)
    assert torch.allclose(lp_nested_norm(z, eq6_tree(1.3, 4.0)), log_lp_nested_norm(z, eq6_tree(1.3, 4.0)).exp(),
                          rtol=1e-14)
    assert torch.allclose(lp_nested_norm(z, eq6_tree(), exponents=e), lp_nested_norm(z, eq6_tree(1.3, 4.0)), rtol=1e-14)


def test_float64_samples_are_drawn_in_float64():
    """Alg. 1 runs in float64 (Dirichlet weights with small concentrations underflow in float32): samples of a
    float64 prior are not float32 numbers in disguise."""
    torch.manual_seed(5)
    p = torch.tensor([2.1, 2.7, 0.9], dtype=torch.float64)
    for d in (ISA(p[0], [2, 3], p[1:]), LpNested((p[0], [1, (p[1], [2, (p[2], [2])])]))):
        x = d.sample((200,))
        assert x.dtype == torch.float64 and bool((x != x.float().double()).float().mean() > 0.99)


def test_generalised_normal_takes_one_or_more_coordinates():
    assert PGeneralizedNormal(1.5, 1).event_shape == (1,)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            PGeneralizedNormal(1.5, bad)
    assert repr(LpNested(eq6_tree(1.3, 2.5))) == "LpNested(tree=(1.3, [1, (2.5, [2])]), scale=2.0)"


def test_a_tensor_scale_enters_the_density_in_the_working_precision():
    """A float32 scale tensor with float64 values: log s is taken after the scale is cast to float64 (the
    working dtype), so the log-density equals the one with the scale given as a float64 number to 1e-13 (a log
    taken in float32 is off by ~1e-8 here). Eq. 7-8 with s = 1.7."""
    z = torch.randn(6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sizes in ([3, 3], [2, 4]):
        ref = ISA(2.1, sizes, [2.2, 1.5], scale=1.7).log_prob(z)
        got = ISA(2.1, sizes, [2.2, 1.5], scale=torch.tensor(1.7, dtype=torch.float32)).log_prob(z)
        f32 = ISA(2.1, sizes, [2.2, 1.5], scale=float(torch.tensor(1.7, dtype=torch.float32))).log_prob(z)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, f32, rtol=0, atol=1e-13)   # the float32 scale's value, in float64
        assert (got - ref).abs().max() > 1e-9                      # (which is not 1.7: the test can tell)


def test_the_normaliser_follows_tensor_exponents_changed_in_place():
    """Only plain-number parameters are cached: exponents held as a tensor (learned, updated in place by an
    optimiser step) give the normaliser of their current values at each call, and each call's gradient."""
    ps = torch.tensor([2.2, 1.5], dtype=torch.float64, requires_grad=True)
    d = ISA(2.1, [3, 3], ps)
    first = d.log_normaliser(torch.float64)
    first.backward()
    with torch.no_grad():
        ps += 0.3
    second = d.log_normaliser(torch.float64)
    second.backward()                                     # a fresh graph (a cached one could not be reused)
    torch.testing.assert_close(second, ISA(2.1, [3, 3], [2.5, 1.8]).log_normaliser(torch.float64))
    assert (second - first).abs() > 1e-3

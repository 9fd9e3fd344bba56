"""Tests written against mutants that survived the rest of the suite (mutmut 3.8.1; tests/README.md, "Mutation
testing"): each asserts a property a survivor broke. Grouped by module: the trees of Lp-nested functions
(Eq. 6, 9-10; Fig. 4), the MIG (Sec. 4; Chen et al. 2018) and its mixture sums, and the other metrics."""
import math

import numpy as np
import pytest
import torch

from isa_lib.lpnested.trees import LpTree, _depth, _exponent_value, _is_number, eq6_tree, isa_tree, parse_tree


# ------------------------------------------------------------------ trees (Eq. 6, 9-10; Fig. 4)
def test_the_layout_of_eq6_puts_leaves_on_a_line_and_each_node_over_its_children():
    """Fig. 4's drawing of Eq. 6, (p0, [1, (p1, [2])]): leaves at y = 0 spaced by 1, each inner node one level
    above its deepest child at the mean x of its children, nodes in pre-order, edges parent -> child."""
    nodes, edges = LpTree(eq6_tree(2.0, 1.5)).layout()
    assert nodes == [
        dict(x=0.75, y=2.0, kind="inner", index=0, label="root"),
        dict(x=0.0, y=0.0, kind="leaf", index=0, label="z1"),
        dict(x=1.5, y=1.0, kind="inner", index=1, label="root[1]"),
        dict(x=1.0, y=0.0, kind="leaf", index=1, label="z2"),
        dict(x=2.0, y=0.0, kind="leaf", index=2, label="z3"),
    ]
    assert edges == [(0, 1), (2, 3), (2, 4), (0, 2)]


def test_the_layout_of_a_three_level_tree():
    tree = LpTree((2.0, [(1.5, [1, (3.0, [2])]), 2]))
    nodes, edges = tree.layout()
    assert [(n["kind"], n["index"], n["label"], n["y"]) for n in nodes] == [
        ("inner", 0, "root", 3.0), ("inner", 1, "root[0]", 2.0), ("leaf", 0, "z1", 0.0),
        ("inner", 2, "root[0][1]", 1.0), ("leaf", 1, "z2", 0.0), ("leaf", 2, "z3", 0.0),
        ("leaf", 3, "z4", 0.0), ("leaf", 4, "z5", 0.0)]
    assert [n["x"] for n in nodes] == pytest.approx([(0.75 + 3 + 4) / 3, 0.75, 0, 1.5, 1, 2, 3, 4])
    assert edges == [(1, 2), (3, 4), (3, 5), (1, 3), (0, 1), (0, 6), (0, 7)]
    assert _depth(tree.root) == 3 and _depth(LpTree((2.0, [4])).root) == 1
    assert _depth(LpTree(eq6_tree()).root) == 2


def test_with_exponents_keeps_the_structure_and_validates_the_new_exponents():
    tree = LpTree(isa_tree(2.0, [2, 3], [1.5, 2.5]))
    p = torch.tensor(0.7, requires_grad=True)
    new = tree.with_exponents([3.0, p, 1.2])
    assert new.exponents[1] is p and new.spec() == (3.0, [(p, [2]), (1.2, [3])])
    assert new.n == 5 and new.nodes is tree.nodes and new.root is tree.root
    assert tree.exponents == [2.0, 1.5, 2.5]                       # the original is untouched
    with pytest.raises(ValueError, match="tree has 3 inner nodes but 2 exponents were given"):
        tree.with_exponents([2.0, 2.0])
    with pytest.raises(ValueError, match=r"exponent of node root\[1\] must be > 0, got -1.0"):
        tree.with_exponents([2.0, 2.0, -1.0])
    with pytest.raises(ValueError, match=r"exponent of node root must be finite"):
        tree.with_exponents([math.inf, 2.0, 2.0])


def test_validate_checks_every_exponent_in_pre_order():
    tree = LpTree((2.0, [1, (1.5, [2])]))
    tree.validate()
    tree.validate([1.0, 3.0])
    with pytest.raises(ValueError, match=r"exponent of node root\[1\] must be > 0, got 0.0"):
        tree.validate([1.0, 0.0])
    tree.exponents[0] = -2.0
    with pytest.raises(ValueError, match=r"exponent of node root must be > 0, got -2.0"):
        tree.validate()
    unchecked = LpTree((-1.0, [2]), validate=False)            # validate=False: parsed as given
    assert unchecked.exponents == [-1.0] and unchecked.n == 2
    with pytest.raises(ValueError, match="must be > 0"):
        LpTree((-1.0, [2]))


def test_exponent_values_from_every_kind_of_number():
    assert _exponent_value(torch.tensor([2.5]), "p") == 2.5
    assert _exponent_value(np.array([[1.5]]), "p") == 1.5
    assert _exponent_value(np.float32(0.5), "p") == 0.5 and _exponent_value(3, "p") == 3.0
    with pytest.raises(ValueError, match=r"p must be a scalar, got shape \(2,\)"):
        _exponent_value(torch.tensor([1.0, 2.0]), "p")
    with pytest.raises(ValueError, match=r"q must be a scalar, got shape \(1, 2\)"):
        _exponent_value(np.ones((1, 2)), "q")
    with pytest.raises(ValueError, match="p must be a number, got bool"):
        _exponent_value(True, "p")
    with pytest.raises(ValueError, match="p must be a number, got str"):
        _exponent_value("2", "p")
    with pytest.raises(ValueError, match="p must be finite and > 0, got nan"):
        _exponent_value(float("nan"), "p")
    assert _exponent_value(1e-300, "p") == 1e-300
    assert all(_is_number(x) for x in (1, 1.5, np.float64(2), np.ones(1), torch.ones(())))
    assert not any(_is_number(x) for x in (True, "1", None, [1.0]))


def test_the_tree_structure_counts_children_and_leaves():
    tree = parse_tree((2.0, [2, 1, (1.5, [3]), 1]))
    root = tree.root
    assert len(root.children) == 3                      # the two leading leaf counts are merged into one run
    assert (root.children[0].start, root.children[0].stop, root.children[0].n) == (0, 3, 3)
    assert root.n_children == 5 and root.child_sizes() == [1, 1, 1, 3, 1] and root.n == 7
    sub = root.children[1]
    assert (sub.start, sub.stop, sub.n, sub.index, sub.path) == (3, 6, 3, 1, "root[2]")
    assert sub.child_sizes() == [1, 1, 1] and sub.n_children == 3
    assert tree.n == 7 and tree.n_nodes == 2 and tree.spec() == (2.0, [3, (1.5, [3]), 1])
    copy = LpTree(tree)
    assert copy.exponents == tree.exponents and copy.exponents is not tree.exponents and copy.n == 7
    for bad, msg in (((2.0, [0]), "child 0 is a leaf count 0; it must be >= 1"),
                     ((2.0, []), "node root is empty"),
                     ((2.0, [True]), r"node root\[0\] must be a \(p, \[children\]\) pair"),
                     ((2.0, 3), r"node root must be a \(p, \[children\]\) pair"),
                     ((2.0, [1], 3), r"node root must be a \(p, \[children\]\) pair")):
        with pytest.raises(ValueError, match=msg):
            LpTree(bad)
    with pytest.raises(ValueError, match="ISA needs at least one subspace"):
        isa_tree(2.0, [], [])
    with pytest.raises(ValueError, match="sizes has 2 subspaces but exponents has 1 entries"):
        isa_tree(2.0, [1, 2], [1.0])
    with pytest.raises(ValueError, match=r"sizes\[1\] must be an int >= 1, got 0"):
        isa_tree(2.0, [1, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"sizes\[0\] must be an int >= 1, got True"):
        isa_tree(2.0, [True], [1.0])
    assert isa_tree(2.0, [np.int64(2)], [1.0]) == (2.0, [(1.0, [2])])


def test_the_exponent_vector_takes_its_dtype_and_device_from_the_exponents_unless_told():
    """Pre-order exponents as one tensor: dtype from the tensor exponents (promoted), else torch's default;
    device from the first tensor exponent, else the CPU; explicit arguments win; autograd reaches them."""
    floats = LpTree((2.0, [1, (1.5, [2])]))
    v = floats.exponent_vector()
    assert v.dtype == torch.get_default_dtype() and v.device.type == "cpu" and v.tolist() == [2.0, 1.5]
    assert floats.exponent_vector(dtype=torch.float64).dtype == torch.float64
    assert floats.exponent_vector(device="meta").device.type == "meta"
    p = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    mixed = LpTree((2.0, [1, (p, [2])]))
    v = mixed.exponent_vector()
    assert v.dtype == torch.float64 and v.tolist() == [2.0, 1.5]
    v.sum().backward()
    assert p.grad == 1.0
    assert mixed.exponent_vector(dtype=torch.float32).dtype == torch.float32
    on_meta = LpTree((2.0, [(torch.empty((), device="meta"), [2]), (torch.tensor(1.0), [1])]), validate=False)
    v = on_meta.exponent_vector()          # the first tensor exponent is on meta: the float and the CPU one follow
    assert v.device.type == "meta" and v.shape == (3,)
    assert on_meta.exponent_vector(device="meta").device.type == "meta"


def test_dtype_and_device_helpers_promote_and_move():
    """The working dtype of Eq. 5-11 is the promotion of the input's and every tensor exponent's, in any order;
    an integer input takes torch's default; a parameter lands on the device and dtype asked for."""
    from isa_lib.lpnested.trees import _as_tensor, _param_dtype, _work_dtype

    t32, t64 = torch.tensor(1.0), torch.tensor(1.0, dtype=torch.float64)
    assert _param_dtype([t64, t32]) == _param_dtype([t32, 2.0, t64]) == torch.float64
    assert _param_dtype([2.0, torch.tensor(3)]) is None
    assert _work_dtype(torch.zeros(2), [t64]) == torch.float64
    assert _work_dtype(torch.zeros(2, dtype=torch.float64), [t32]) == torch.float64
    assert _work_dtype(torch.zeros(2, dtype=torch.int64), [2.0]) == torch.get_default_dtype()
    assert _work_dtype(torch.zeros(2, dtype=torch.int64), [t64]) == torch.float64
    assert _work_dtype(torch.zeros(2, dtype=torch.bfloat16), []) == torch.bfloat16
    for p in (t32, 2.5, 2):
        assert _as_tensor(p, torch.float64, "meta").device.type == "meta"
        assert _as_tensor(p, torch.float64, "meta").dtype == torch.float64
        assert _as_tensor(p, torch.float64).dtype == torch.float64
    assert _as_tensor(t64, torch.float32).dtype == torch.float32 and _as_tensor(t64, None) is t64
    assert eq6_tree() == (2.0, [1, (2.0, [2])]) and eq6_tree(1.5, 3.0) == (1.5, [1, (3.0, [2])])
    for bad in (1.5, "2", None):
        with pytest.raises(ValueError, match=r"sizes\[0\] must be an int >= 1"):
            isa_tree(2.0, [bad], [1.0])


# ------------------------------------------------------------------ the MIG's mixture sums (Sec. 4; Chen et al. 2018)
def direct_log2_sums(zs, mu, a, c):
    """log2 sum_m 2^(c_m - sum_j ((z_js - mu_jm) a_jm)^2) by torch.logsumexp in float64."""
    x = c[None, :] - (((zs[:, :, None] - mu[:, None, :]) * a[:, None, :]) ** 2).sum(0)
    return torch.logsumexp(x.double() * math.log(2.0), 1) / math.log(2.0)


@pytest.mark.parametrize("row_chunk", [1, 3, 7, 100])
def test_the_running_maximum_recomputation_equals_a_direct_log_sum_exp(row_chunk):
    """_log2_sum_exact (the MIG's fallback for samples far from every posterior): each sample's own maximum,
    carried across row chunks, the first posterior included (it is the one that dominates here), and z - mu
    with its sign (the posteriors are far from 0, so z + mu is a different number)."""
    from isa_lib.metrics._mixture import _log2_sum_exact

    g = torch.Generator().manual_seed(0)
    k, s, m = 2, 5, 7
    mu = 3.0 + torch.randn(k, m, generator=g, dtype=torch.float64)
    a = torch.exp(torch.randn(k, m, generator=g, dtype=torch.float64))
    c = torch.randn(m, generator=g, dtype=torch.float64)
    zs = mu[:, :1] + 0.1 * torch.randn(k, s, generator=g, dtype=torch.float64)     # near posterior 0
    zs[:, 1] = mu[:, 0]                                                               # on it
    zs[:, 2] = 300.0        # far from all: 2^-(tens of thousands), so a shift shared with the others underflows
    c[0] = 5.0
    for dt in (torch.float64, torch.float32):
        got = _log2_sum_exact(zs.to(dt), mu.to(dt), a.to(dt), c.to(dt), row_chunk)
        ref = direct_log2_sums(zs.to(dt).double(), mu.to(dt).double(), a.to(dt).double(), c.to(dt).double())
        assert got.dtype == torch.float64 and got.shape == (s,)
        assert torch.isfinite(got).all() and got[2] < -1e4
        torch.testing.assert_close(got, ref, rtol=1e-12 if dt == torch.float64 else 1e-6, atol=0)


def code_for_two_factors():
    """A (3, 4) grid whose latent 0 codes factor 0 and latent 1 codes factor 1, latent 2 collapsed (the prior):
    a MIG near 1."""
    from isa_lib.metrics import grid_classes
    cl = torch.as_tensor(grid_classes((3, 4)), dtype=torch.float64)
    mu = torch.stack([cl[:, 0], cl[:, 1], torch.zeros(12, dtype=torch.float64)], 1)
    logvar = torch.full((12, 3), -8.0, dtype=torch.float64)
    logvar[:, 2] = 0.0
    return mu, logvar


def test_mig_chen_defaults_names_and_bounds(capsys):
    """Chen et al.'s 10,000 samples by default, quiet by default, factors by name, float(result) is the MIG,
    one sample and chunks of one are allowed, zero is refused by name."""
    from isa_lib.metrics import mig_chen

    mu, logvar = code_for_two_factors()
    res = mig_chen(mu, logvar, (3, 4))
    passes = 1 + 3 + 4                                 # H(z_g), then each value of each factor; 3 groups each
    assert res.info == {"estimator": "chen", "n_samples": 10000, "seed": 0, "backend": "torch",
                        "interpolated": (0, 3 * passes)}
    assert capsys.readouterr().err == ""
    assert float(res) == res.mig > 0.9 and res.factors == [0, 1] and res.groups == [[0], [1], [2]]
    named = mig_chen(mu, logvar, (3, 4), factors=["b"], factor_names=["a", "b"])
    assert named.factors == [1] and named.per_factor[0] == pytest.approx(res.per_factor[1])
    one = mig_chen(mu, logvar, (3, 4), n_samples=1, seed=3)
    assert one.info["n_samples"] == 1 and np.isfinite(one.mig)
    tiny = mig_chen(mu, logvar, (3, 4), sample_chunk=1, row_chunk=1)
    np.testing.assert_allclose(tiny.mutual_info, res.mutual_info, rtol=0, atol=1e-12)
    # the whole message (anchored: a message with text around it is another message)
    for kw, msg in ((dict(n_samples=0), "n_samples must be positive, got 0"),
                    (dict(sample_chunk=0), "chunk sizes must be positive"),
                    (dict(row_chunk=0), "chunk sizes must be positive"),
                    (dict(groups=[[0, 1, 2]]), r"the MIG needs at least two latents \(or groups\)")):
        with pytest.raises(ValueError, match=f"^{msg}$"):
            mig_chen(mu, logvar, (3, 4), **kw)
    with pytest.raises(ValueError, match=r"^the MIG needs at least two latents \(or groups\)$"):
        mig_chen(mu[:, :1], logvar[:, :1], (3, 4))


def test_the_posterior_samples_and_subsets_are_fixed_by_the_seed():
    """Chen et al.'s estimator draws one z ~ q(z|x) per row, z = mu + sigma * eps with eps from the CPU generator
    in float64 (the same numbers on every device and working dtype), and a subset only when fewer samples than
    rows are asked for (all rows otherwise, without touching the generator)."""
    from isa_lib.metrics._mixture import _draw_z, _subset

    mu = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0], [-2.0, 1.0]], dtype=torch.float64)
    eps = torch.randn(2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z = _draw_z(mu, logvar, torch.Generator().manual_seed(7))
    assert torch.equal(z, mu + torch.exp(0.5 * logvar) * eps)
    z32 = _draw_z(mu.float(), logvar.float(), torch.Generator().manual_seed(7))
    assert z32.dtype == torch.float32 and torch.equal(z32, mu.float() + torch.exp(0.5 * logvar.float()) * eps.float())
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    assert _subset(5, 5, g).tolist() == [0, 1, 2, 3, 4] and _subset(5, None, g).tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(g.get_state(), state)
    sub = _subset(5, 3, g)
    assert torch.equal(sub, torch.randperm(5, generator=torch.Generator().manual_seed(1))[:3])


def test_prepare_names_its_inputs_and_casts_both_to_the_working_dtype():
    from isa_lib.metrics._mixture import _prepare, check_dtype

    mu, lv = _prepare(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32), None, torch.float64)
    assert mu.dtype == lv.dtype == torch.float64
    mu, lv = _prepare(np.zeros((3, 2)), np.zeros((3, 2)), "meta", torch.float32)
    assert mu.dtype == lv.dtype == torch.float32 and mu.device.type == lv.device.type == "meta"
    with pytest.raises(ValueError, match=r"^mu must be 2-D"):
        _prepare(np.zeros(3), np.zeros((3, 2)), None, torch.float64)
    with pytest.raises(ValueError, match=r"^logvar must be 2-D"):
        _prepare(np.zeros((3, 2)), np.zeros(3), None, torch.float64)
    with pytest.raises(ValueError, match=r"^dtype must be torch.float32 or torch.float64, got torch.float16$"):
        check_dtype(torch.float16)
    with pytest.raises(ValueError, match=r"^precision must be"):
        check_dtype(torch.int64, "precision")


def test_mixture_entropy_follows_its_seed_generator_subset_and_backend(monkeypatch):
    """H(z_g) of the aggregate posterior (Chen et al.'s estimator): seed 0 by default, a generator instead of the
    seed, 10,000 samples by default (all rows of a smaller grid), a subset when asked, and the kernel that
    resolve_backend names."""
    from isa_lib.metrics import _mixture
    from isa_lib.metrics._mixture import mixture_entropy

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(40, 2, generator=g, dtype=torch.float64)
    logvar = torch.randn(40, 2, generator=g, dtype=torch.float64) - 1.0
    base = mixture_entropy(mu, logvar)
    assert torch.equal(base, mixture_entropy(mu, logvar, seed=0))
    assert not torch.equal(base, mixture_entropy(mu, logvar, seed=1))
    assert torch.equal(mixture_entropy(mu, logvar, seed=3), mixture_entropy(mu, logvar, seed=9,
                                                                           generator=torch.Generator().manual_seed(3)))
    sub = mixture_entropy(mu, logvar, n_samples=5, seed=2)
    gen = torch.Generator().manual_seed(2)
    z = _mixture._draw_z(mu, logvar, gen)
    sel = _mixture._subset(40, 5, gen)
    ref = -_mixture._log_mixture(z[sel], mu, logvar, [[0], [1]], 256, 4096).mean(1)
    assert torch.equal(sub, ref)
    seen = []
    real = _mixture._log_mixture
    monkeypatch.setattr(_mixture, "_log_mixture", lambda *a: (seen.append(a[6]), real(*a))[1])
    mixture_entropy(mu, logvar, backend="torch")
    mixture_entropy(mu.float(), logvar.float(), dtype=torch.float32, backend="auto")
    assert seen == ["torch", _mixture.resolve_backend("auto", torch.device("cpu"), torch.float32)]


def test_mixture_entropy_takes_ten_thousand_samples_by_default():
    from isa_lib.metrics._mixture import mixture_entropy

    mu = torch.linspace(-3, 3, 10_001, dtype=torch.float64)[:, None]
    logvar = torch.full_like(mu, -4.0)
    assert torch.equal(mixture_entropy(mu, logvar, row_chunk=10_001),
                       mixture_entropy(mu, logvar, n_samples=10_000, row_chunk=10_001))


def test_the_resolvable_range_of_log_variances_has_its_stated_bounds():
    """_check_resolvable: a posterior std below sqrt(eps) * max(1, |mu|) is refused, and exp(logvar) must stay
    below sqrt(the largest number); just inside each bound passes, just outside fails."""
    from isa_lib.metrics._mixture import _check_resolvable

    for dtype in (torch.float32, torch.float64):
        info = torch.finfo(dtype)
        high = 0.5 * math.log(info.max)
        for mu_max in (0.5, 10.0):
            low = math.log(info.eps) + 2 * math.log(max(1.0, mu_max))
            mu = torch.tensor([[mu_max, -0.1]], dtype=torch.float64)
            for lv, ok in ((low + 0.01, True), (low - 0.01, False), (high - 0.01, True), (high + 0.01, False)):
                logvar = torch.tensor([[lv, 0.0]], dtype=torch.float64)
                if ok:
                    _check_resolvable(mu, logvar, dtype)
                else:
                    with pytest.raises(ValueError, match="the range in which"):
                        _check_resolvable(mu, logvar, dtype)


def test_the_clamp_floor_and_the_streamed_sums_against_direct_sums():
    """_floor: the smallest normal exponent plus one (-125 in float32, -1021 in float64); _torch_sums adds
    2^max(c_gm - sum_j ((z - mu) a)^2, floor) over every posterior for every sample, whatever the chunks."""
    from isa_lib.metrics._mixture import _floor, _torch_sums

    assert _floor(torch.float32) == -125.0 and _floor(torch.float64) == -1021.0
    g = torch.Generator().manual_seed(0)
    gb, k, s, m = 2, 2, 7, 5
    zb = torch.randn(gb, k, s, generator=g, dtype=torch.float64)
    mb = torch.randn(gb, k, m, generator=g, dtype=torch.float64)
    ab = torch.rand(gb, k, m, generator=g, dtype=torch.float64) + 0.5
    cb = -torch.rand(gb, m, generator=g, dtype=torch.float64)
    zb[0, 0, 0] = 1e3                                     # far from every posterior: every term is clamped
    x = cb[:, None, :] - (((zb[:, :, :, None] - mb[:, :, None, :]) * ab[:, :, None, :]) ** 2).sum(1)
    ref = torch.exp2(x.clamp(min=-1021.0)).sum(-1)
    assert ref[0, 0] == m * 2.0 ** -1021
    for sc, rc in ((1, 1), (2, 3), (3, 2), (100, 100)):
        acc = torch.zeros(gb, s, dtype=torch.float64)
        _torch_sums(zb, mb, ab, cb, -1021.0, acc, sc, rc)
        torch.testing.assert_close(acc, ref, rtol=1e-14, atol=0)


# ------------------------------------------------------------------ the MIG's kernels (second round)
@pytest.mark.skipif(not __import__("isa_lib.native", fromlist=["available"]).available(),
                    reason="the native kernel needs a C compiler")
def test_the_mig_runs_the_kernel_it_names(monkeypatch):
    """backend="native" forms every exact mixture sum in the C kernel and "torch" in torch (a mutant that
    handed the sums another backend name computed the same numbers by the torch path, reporting "native")."""
    from isa_lib.metrics import _mixture, mig_chen

    calls = {"native": 0, "torch": 0}
    native_sums, torch_sums = _mixture._native_sums, _mixture._torch_sums

    def count(name, f):
        def wrapped(*a, **k):
            calls[name] += 1
            return f(*a, **k)
        return wrapped

    monkeypatch.setattr(_mixture, "_native_sums", count("native", native_sums))
    monkeypatch.setattr(_mixture, "_torch_sums", count("torch", torch_sums))
    mu, logvar = code_for_two_factors()
    for backend, dtype in (("native", torch.float32), ("torch", torch.float64)):
        calls.update(native=0, torch=0)
        res = mig_chen(mu, logvar, (3, 4), n_samples=12, backend=backend, dtype=dtype, interpolate=False)
        assert res.info["backend"] == backend
        other = "torch" if backend == "native" else "native"
        assert calls[backend] > 0 and calls[other] == 0, (backend, calls)


def test_the_interpolated_passes_are_counted_over_the_whole_mig(monkeypatch):
    """info["interpolated"] = (group passes through the interpolants, all group passes), summed over the
    marginal pass and every factor value's conditional pass: with every latent collapsed (wide posteriors,
    no factor coded) every pass is interpolated, so the count equals the total."""
    from isa_lib.metrics import _chebyshev, grid_classes, mig_chen

    monkeypatch.setattr(_chebyshev, "CHECKS", 24)      # so that the conditional passes' subsets qualify
    sizes = (3, 6, 8, 8)
    n = int(np.prod(sizes))
    g = torch.Generator().manual_seed(0)
    mu = 0.2 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    logvar = 2 * torch.log(0.75 + 0.2 * torch.rand(n, 3, generator=g, dtype=torch.float64))
    assert grid_classes(sizes).shape == (n, 4)
    res = mig_chen(mu, logvar, sizes, n_samples=300, seed=1, backend="torch", interpolate=True)
    total = 3 * (1 + sum(sizes))                      # 3 groups; H(z_g), then each value of each factor
    assert res.info["interpolated"] == (total, total)


# ------------------------------------------------------------------ the MIG's interpolants (_chebyshev.py)
def test_two_points_make_a_line_and_one_is_refused_by_name():
    from isa_lib.metrics._chebyshev import chebyshev_coefficients, chebyshev_eval

    c = chebyshev_coefficients(np.array([3.0, 1.0]))          # values at t = cos(0) = 1 and cos(pi) = -1
    np.testing.assert_allclose(c, [2.0, 1.0], atol=1e-15)     # 2 + t
    np.testing.assert_allclose(chebyshev_eval(c, np.array([-1.0, 0.0, 0.5])), [1.0, 2.0, 2.5], atol=1e-15)
    with pytest.raises(ValueError, match="^a Chebyshev interpolant needs at least two points$"):
        chebyshev_coefficients(np.array([1.0]))


def _wide_latent(width: float, s: int = 2000, m: int = 4000, sigma: float = 1.0):
    """One collapsed latent: posteriors N(mu_m, sigma^2), mu_m ~ N(0, 0.3^2), and s samples evenly over an
    interval of the given width."""
    g = torch.Generator().manual_seed(0)
    mu = 0.3 * torch.randn(m, generator=g, dtype=torch.float64)
    logvar = torch.full((m,), 2 * math.log(sigma), dtype=torch.float64)
    z = torch.linspace(-width / 2, width / 2, s, dtype=torch.float64)
    return z, mu, logvar


@pytest.mark.parametrize("need", [20.0, 31.5, 32.5, 40.0, 64.5])
def test_the_first_interpolant_has_pi_points_per_narrowest_width(need):
    """n starts at the smallest 16 * 2^j + 1 with n - 1 >= pi (hi - lo) / sigma_min (the node spacing stays
    under half the narrowest posterior's width); on a smooth log q that first n is accepted. The needs 31.5
    and 32.5 sit on either side of 33 - 1."""
    from isa_lib.metrics import _chebyshev as C

    z, mu, logvar = _wide_latent(need / C.NODES_PER_WIDTH)
    c, info = C.fit_log_mixture(z, mu, logvar, "torch")
    got_need = C.NODES_PER_WIDTH * (info["hi"] - info["lo"]) / 1.0
    assert got_need == pytest.approx(need)
    want = 17
    while want - 1 < got_need:
        want = 2 * want - 1
    assert c is not None and info["n"] == want, (need, info)


def test_the_checks_are_as_many_as_asked_and_declines_say_so(monkeypatch):
    """Up to ``checks`` samples (the two extremes among them) are compared with the exact sums, CHECKS by default;
    a latent with fewer than two samples, no posteriors or a single value of z is declined before any sum
    (info {"n": 0}); two samples against one posterior get an interval but cost too much to interpolate."""
    from isa_lib.metrics import _chebyshev as C

    sizes = []
    exact = C._exact
    monkeypatch.setattr(C, "_exact", lambda z, *a: (sizes.append(len(z)), exact(z, *a))[1])
    z, mu, logvar = _wide_latent(8.0, s=1000)
    for checks, most, least in ((5, 5, 3), (None, C.CHECKS, C.CHECKS - 4)):   # the extremes may repeat spread points
        sizes.clear()
        c, info = C.fit_log_mixture(z, mu, logvar, "torch", checks=checks)
        assert c is not None and len(sizes) == 1 and least <= sizes[0] - info["n"] <= most, (checks, sizes)
    monkeypatch.setattr(C, "_exact", exact)
    one = torch.zeros(1, dtype=torch.float64)
    for args in ((one, mu, logvar), (z, mu[:0], logvar[:0]), (torch.full((50,), 0.3, dtype=torch.float64), mu,
                                                               logvar)):
        assert C.fit_log_mixture(*args, "torch") == (None, {"n": 0})
    c, info = C.fit_log_mixture(torch.tensor([0.0, 1.0], dtype=torch.float64), mu[:1], logvar[:1], "torch")
    assert c is None and (info["lo"], info["hi"]) == (0.0, 1.0) and info["n"] == 0


def test_the_mig_result_carries_its_normalised_information_and_factor_entropies():
    """normalised = I(z_g; v_k) / H(v_k) with H(v_k) = log |v_k| (uniform factors), per factor = the gap of
    the normalised row; the gap refuses one latent with its whole message."""
    from isa_lib.metrics import mig_chen
    from isa_lib.metrics._mig import _gap

    mu, logvar = code_for_two_factors()
    res = mig_chen(mu, logvar, (3, 4), n_samples=12)
    np.testing.assert_allclose(res.factor_entropy, np.log([3.0, 4.0]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.normalised, res.mutual_info / np.log([3.0, 4.0])[:, None], rtol=1e-15)
    top2 = np.sort(np.clip(res.normalised, 0, None), axis=1)[:, ::-1][:, :2]
    np.testing.assert_allclose(res.per_factor, top2[:, 0] - top2[:, 1], rtol=1e-12)
    with pytest.raises(ValueError, match=r"^the MIG needs at least two latents \(or groups\)$"):
        _gap(np.ones((2, 1)), np.ones(2))


def test_every_pass_of_the_mig_scores_at_most_n_samples(monkeypatch):
    """Chen et al.'s estimator: H(z_g) from n_samples of the N rows, and each H(z_g | v_k = v) from
    min(n_samples, N / |v_k|) of the rows with v_k = v (a mutant that scored every row of a value survived)."""
    from isa_lib.metrics import _mig, mig_chen

    sizes = (3, 6, 8, 8)                              # 1,152 rows; 384, 192, 144 and 144 per value
    n = int(np.prod(sizes))
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(n, 2, generator=g, dtype=torch.float64)
    logvar = torch.full((n, 2), -1.0, dtype=torch.float64)
    scored = []
    inner = _mig.log_mixture
    monkeypatch.setattr(_mig, "log_mixture", lambda zs, *a: (scored.append(zs.shape[0]), inner(zs, *a))[1])
    mig_chen(mu, logvar, sizes, n_samples=160, backend="torch", interpolate=False)
    want = [160] + [min(160, n // s) for s in sizes for _ in range(s)]
    assert scored == want


def test_an_unresolved_first_interpolant_doubles_its_points_and_drops_negligible_terms():
    """Two clusters of posteriors (sigma 0.5 at -3 and +3): between them log q has a kink about sigma^2 / 6
    wide, narrower than the posteriors, so the first n (pi points per sigma) fails its tail check and n doubles,
    staying of the form 16 * 2^j + 1, until it passes; the trailing coefficients whose sum is below tol / 8 are
    dropped (``terms`` < n), and the interpolant matches the exact sums at every sample within tol."""
    from isa_lib.metrics import _chebyshev as C
    from isa_lib.metrics._mixture import _log_mixture

    m = 4000
    mu = torch.cat([torch.full((m // 2,), -3.0), torch.full((m // 2,), 3.0)]).double()
    logvar = torch.full((m,), 2 * math.log(0.5), dtype=torch.float64)
    z = torch.linspace(-5, 5, 4000, dtype=torch.float64)
    first = 17
    while first - 1 < C.NODES_PER_WIDTH * 10 / 0.5:
        first = 2 * first - 1
    c, info = C.fit_log_mixture(z, mu, logvar, "torch")
    assert c is not None and info["n"] > first
    steps = (info["n"] - 1) // 16
    assert (info["n"] - 1) % 16 == 0 and steps & (steps - 1) == 0, info["n"]
    assert len(c) == info["terms"] < info["n"]
    exact = _log_mixture(z[:, None], mu[:, None], logvar[:, None], [[0]], 256, 4096, "torch")[0].numpy()
    got = C.chebyshev_eval(c, C._unit(z.numpy(), info["lo"], info["hi"]))
    assert np.abs(got - exact).max() <= C.TOLERANCE

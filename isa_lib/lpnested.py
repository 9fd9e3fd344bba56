"""Lp-nested symmetric distributions and the ISA prior (paper Sec. 3, Eq. 5-11, Alg. 1).

A tree is written as nested ``(p, [children])`` tuples: ``p`` is the node's exponent, each child is
either an ``int`` (that many leaves) or another ``(p, [...])`` tuple.  Leaves are assigned to the latent
coordinates left to right.  Eq. 6 is ``(p0, [1, (p1, [2])])``; the ISA layout of Eq. 9 is
``(p0, [(p1, [n1]), (p2, [n2]), ...])``.

Everything is computed in log space.  The scale ``s`` in ``exp(-f(z)**p0 / s)`` defaults to 2, which
makes the all-exponents-2 tree exactly ``N(0, I)`` (see ERRATA.md, Eq. 11).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch.distributions import Distribution, constraints

__all__ = [
    "DEFAULT_SCALE",
    "LpTree",
    "LpNested",
    "ISA",
    "PGeneralizedNormal",
    "parse_tree",
    "eq6_tree",
    "isa_tree",
    "log_lp_nested_norm",
    "lp_nested_norm",
    "log_surface_area",
    "log_radial_density",
    "orthant_quadrature",
    "total_mass",
    "marginal_density",
    "marginal_cdf_1d",
    "dsprites_positions",
    "rotate",
    "expected_log_density_vs_angle",
    "orientation_summary",
    "abs_correlations",
    "subspace_radius_correlations",
    "eq6_unit_sphere",
]

DEFAULT_SCALE = 2.0


# --------------------------------------------------------------------------------------------------
# Tree structure
# --------------------------------------------------------------------------------------------------
@dataclass
class LeafRun:
    """Consecutive leaves ``start:stop`` that are direct children of one node."""

    start: int
    stop: int

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclass
class Node:
    """Inner node: ``index`` is the position of its exponent in the pre-order exponent list."""

    index: int
    path: str
    children: list = field(default_factory=list)
    start: int = 0
    stop: int = 0

    @property
    def n(self) -> int:
        return self.stop - self.start

    @property
    def n_children(self) -> int:
        return sum(c.n if isinstance(c, LeafRun) else 1 for c in self.children)

    def child_sizes(self) -> list[int]:
        """n_{i,k} of Eq. 8: leaves under each child (1 for a leaf child)."""
        out: list[int] = []
        for c in self.children:
            out.extend([1] * c.n if isinstance(c, LeafRun) else [c.n])
        return out


def _is_number(x) -> bool:
    return isinstance(x, (numbers.Real, torch.Tensor, np.ndarray, np.generic)) and not isinstance(x, bool)


def _exponent_value(p, where: str) -> float:
    """Validate one exponent (float or one-element tensor) and return it as a float."""
    if isinstance(p, (torch.Tensor, np.ndarray)):
        numel = p.size if isinstance(p, np.ndarray) else p.numel()
        if numel != 1:
            raise ValueError(f"{where} must be a scalar, got shape {tuple(p.shape)}")
        v = float(p.detach().reshape(()).item()) if isinstance(p, torch.Tensor) else float(p.reshape(()))
    elif _is_number(p):
        v = float(p)
    else:
        raise ValueError(f"{where} must be a number, got {type(p).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite and > 0, got {v}")
    if v <= 0:
        raise ValueError(f"{where} must be > 0, got {v}")
    return v


class LpTree:
    """Static structure of an Lp-nested function (Eq. 6, 9) plus the exponents as given.

    ``exponents`` holds the objects passed in (floats or tensors, pre-order, root first) so that tensors
    that require grad stay in the graph.
    """

    def __init__(self, spec, validate: bool = True):
        if isinstance(spec, LpTree):
            self.root, self.exponents, self.nodes, self.n = spec.root, list(spec.exponents), spec.nodes, spec.n
            return
        self._validate = validate
        self.exponents: list = []
        self.nodes: list[Node] = []
        self._next_leaf = 0
        self.root = self._parse(spec, "root")
        self.n = self._next_leaf
        del self._next_leaf, self._validate

    def _parse(self, spec, path: str) -> Node:
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], (tuple, list))):
            raise ValueError(
                f"node {path} must be a (p, [children]) pair, got {spec!r}")
        p, children = spec
        if self._validate:
            _exponent_value(p, f"exponent of node {path}")
        if len(children) == 0:
            raise ValueError(f"node {path} is empty: it needs at least one child")
        node = Node(index=len(self.exponents), path=path, start=self._next_leaf)
        self.exponents.append(p)
        self.nodes.append(node)
        for k, child in enumerate(children):
            if isinstance(child, numbers.Integral) and not isinstance(child, bool):
                if child < 1:
                    raise ValueError(f"node {path}: child {k} is a leaf count {child}; it must be >= 1")
                run = LeafRun(self._next_leaf, self._next_leaf + int(child))
                self._next_leaf = run.stop
                # merge adjacent leaf runs so evaluation slices once
                if node.children and isinstance(node.children[-1], LeafRun):
                    node.children[-1].stop = run.stop
                else:
                    node.children.append(run)
            else:
                node.children.append(self._parse(child, f"{path}[{k}]"))
        node.stop = self._next_leaf
        return node

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def exponent_vector(self, dtype=None) -> torch.Tensor:
        """Exponents (pre-order) as one tensor, keeping autograd links of tensor entries."""
        dtype = dtype or _param_dtype(self.exponents) or torch.get_default_dtype()
        return torch.stack([_as_tensor(p, dtype).reshape(()) for p in self.exponents])

    def with_exponents(self, exponents: Sequence) -> "LpTree":
        """Same structure, new exponents (pre-order)."""
        if len(exponents) != self.n_nodes:
            raise ValueError(f"tree has {self.n_nodes} inner nodes but {len(exponents)} exponents were given")
        for node, p in zip(self.nodes, exponents):
            _exponent_value(p, f"exponent of node {node.path}")
        t = LpTree(self)
        t.exponents = list(exponents)
        return t

    def validate(self, exponents=None) -> None:
        for node, p in zip(self.nodes, self.exponents if exponents is None else exponents):
            _exponent_value(p, f"exponent of node {node.path}")

    def spec(self):
        """Back to the nested ``(p, [children])`` form."""
        def rec(node):
            ch = [c.n if isinstance(c, LeafRun) else rec(c) for c in node.children]
            return (self.exponents[node.index], ch)
        return rec(self.root)

    def layout(self):
        """Positions for drawing the tree (Fig. 4): leaves at y=0 spaced by 1, inner nodes above.

        Returns ``(nodes, edges)``: ``nodes`` is a list of dicts with keys ``x, y, kind ('inner'|'leaf'),
        label, index`` (exponent index or leaf coordinate); ``edges`` a list of ``(parent_id, child_id)``
        indices into ``nodes``.
        """
        nodes: list[dict] = []
        edges: list[tuple[int, int]] = []
        depth = _depth(self.root)

        def rec(node, level):
            my_id = len(nodes)
            nodes.append(dict(x=0.0, y=float(depth - level), kind="inner", index=node.index,
                              label=node.path))
            xs = []
            for c in node.children:
                if isinstance(c, LeafRun):
                    for j in range(c.start, c.stop):
                        cid = len(nodes)
                        nodes.append(dict(x=float(j), y=0.0, kind="leaf", index=j, label=f"z{j + 1}"))
                        edges.append((my_id, cid))
                        xs.append(float(j))
                else:
                    cid, cx = rec(c, level + 1)
                    edges.append((my_id, cid))
                    xs.append(cx)
            nodes[my_id]["x"] = float(np.mean(xs))
            return my_id, nodes[my_id]["x"]

        rec(self.root, 0)
        return nodes, edges

    def __repr__(self) -> str:
        return f"LpTree({self.spec()!r}, n={self.n})"


def _depth(node) -> int:
    return 1 + max((_depth(c) for c in node.children if isinstance(c, Node)), default=0)


def parse_tree(spec) -> LpTree:
    """Parse ``(p, [children])`` into an :class:`LpTree` (validates exponents and structure)."""
    return LpTree(spec)


def eq6_tree(p0=2.0, p1=2.0):
    """The tree of Eq. 6: f(z) = (|z1|^p0 + (|z2|^p1 + |z3|^p1)^(p0/p1))^(1/p0)."""
    return (p0, [1, (p1, [2])])


def isa_tree(p0, sizes: Sequence[int], exponents: Sequence):
    """The ISA tree of Eq. 9-10: root p0 over subspaces of ``sizes[i]`` leaves with exponent p_i."""
    sizes = list(sizes)
    if len(sizes) == 0:
        raise ValueError("ISA needs at least one subspace (sizes is empty)")
    if len(exponents) != len(sizes):
        raise ValueError(f"sizes has {len(sizes)} subspaces but exponents has {len(exponents)} entries")
    for i, k in enumerate(sizes):
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"sizes[{i}] must be an int >= 1, got {k!r}")
    return (p0, [(exponents[i], [int(k)]) for i, k in enumerate(sizes)])


# --------------------------------------------------------------------------------------------------
# dtype helpers
# --------------------------------------------------------------------------------------------------
def _param_dtype(params) -> torch.dtype | None:
    dt = None
    for p in params:
        if isinstance(p, torch.Tensor) and p.is_floating_point():
            dt = p.dtype if dt is None else torch.promote_types(dt, p.dtype)
    return dt


def _as_tensor(p, dtype) -> torch.Tensor:
    if isinstance(p, torch.Tensor):
        return p.to(dtype)
    return torch.as_tensor(np.asarray(p, dtype=np.float64), dtype=dtype)


def _work_dtype(z: torch.Tensor, params) -> torch.dtype:
    dt = z.dtype if z.is_floating_point() else torch.get_default_dtype()
    pd = _param_dtype(params)
    return dt if pd is None else torch.promote_types(dt, pd)


# --------------------------------------------------------------------------------------------------
# Eq. 6 / 9: the Lp-nested function, in log space
# --------------------------------------------------------------------------------------------------
def _log_abs(z: torch.Tensor) -> torch.Tensor:
    # Clamping at the smallest normal number keeps log|0| finite, so that logsumexp and the gradients
    # w.r.t. the exponents stay finite; the error is tiny**p, far below the dtype's resolution of f.
    return torch.log(z.abs().clamp_min(torch.finfo(z.dtype).tiny))


def _log_f_node(node: Node, logabs: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:
    parts = []
    for c in node.children:
        if isinstance(c, LeafRun):
            parts.append(logabs[..., c.start:c.stop])
        else:
            parts.append(_log_f_node(c, logabs, exps).unsqueeze(-1))
    a = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    p = exps[node.index]
    # log (sum_k v_k^p)^(1/p) = logsumexp(p log v_k) / p: no overflow of v^p for large v or p
    return torch.logsumexp(p * a, dim=-1) / p


def log_lp_nested_norm(z: torch.Tensor, tree, exponents: torch.Tensor | None = None) -> torch.Tensor:
    """log f(z) of the Lp-nested function (Eq. 6, 9) over the last axis of ``z``.

    ``exponents`` (pre-order tensor) overrides the tree's own exponents.
    """
    tree = tree if isinstance(tree, LpTree) else LpTree(tree)
    z = torch.as_tensor(z)
    if z.ndim == 0 or z.shape[-1] != tree.n:
        raise ValueError(f"latent size mismatch: tree has {tree.n} leaves but z has shape {tuple(z.shape)}")
    if exponents is None:
        dtype = _work_dtype(z, tree.exponents)
        exponents = tree.exponent_vector(dtype)
    else:
        dtype = torch.promote_types(z.dtype if z.is_floating_point() else torch.get_default_dtype(),
                                    exponents.dtype)
        exponents = exponents.to(dtype)
    return _log_f_node(tree.root, _log_abs(z.to(dtype)), exponents)


def lp_nested_norm(z: torch.Tensor, tree, exponents: torch.Tensor | None = None) -> torch.Tensor:
    """f(z) of Eq. 6 / 9 (``exp`` of :func:`log_lp_nested_norm`)."""
    return log_lp_nested_norm(z, tree, exponents).exp()


# --------------------------------------------------------------------------------------------------
# Eq. 8: surface area of the unit sphere; Eq. 11: radial density
# --------------------------------------------------------------------------------------------------
def log_surface_area(tree, exponents: torch.Tensor | None = None, dtype=torch.float64) -> torch.Tensor:
    """log S_f(1) of Eq. 8 (clean form in ERRATA.md):

    S_f(1) = 2^n prod_i prod_k Gamma(n_ik / p_i) / (p_i^(l_i - 1) Gamma(n_i / p_i)).

    ``dtype`` applies only when ``exponents`` is not given.
    """
    tree = tree if isinstance(tree, LpTree) else LpTree(tree)
    if exponents is None:
        exponents = tree.exponent_vector(_param_dtype(tree.exponents) or dtype)
    total = exponents.new_tensor(tree.n * math.log(2.0))
    for node in tree.nodes:
        p = exponents[node.index]
        sizes = exponents.new_tensor(node.child_sizes())
        total = total + (torch.lgamma(sizes / p).sum() - (len(sizes) - 1) * torch.log(p)
                         - torch.lgamma(node.n / p))
    return total


def log_radial_density(v: torch.Tensor, n: int, p0, scale=DEFAULT_SCALE) -> torch.Tensor:
    """log g0(v) of Eq. 11 with scale s: v^p0 / s ~ Gamma(n / p0, 1)."""
    v = torch.as_tensor(v)
    dtype = _work_dtype(v, [p0, scale])
    v = v.to(dtype)
    p0 = _as_tensor(p0, dtype)
    s = _as_tensor(scale, dtype)
    logv = torch.log(v.clamp_min(torch.finfo(dtype).tiny))
    return (torch.log(p0) + (n - 1) * logv - torch.exp(p0 * logv - torch.log(s))
            - (n / p0) * torch.log(s) - torch.lgamma(n / p0))


# --------------------------------------------------------------------------------------------------
# The distribution
# --------------------------------------------------------------------------------------------------
class LpNested(Distribution):
    """Lp-nested symmetric distribution (Eq. 7) with the radial law of Eq. 11 and scale s.

    log rho(z) = log p0 - lgamma(n/p0) - (n/p0) log s - f(z)^p0 / s - log S_f(1)   (ERRATA.md).

    ``tree`` is a ``(p, [children])`` spec or :class:`LpTree`; exponents may be floats or tensors (tensors
    that require grad get gradients through :meth:`log_prob`).  ``scale=None`` means s = 2, which makes
    the all-2 tree exactly N(0, I).  Sampling is exact (Alg. 1) and uses torch's global RNG.

    Every exponent is checked (finite, > 0) unless ``validate_args=False``: checking a tensor's value costs a
    host-device synchronisation, so a caller that guarantees valid exponents (e.g.
    :class:`isa_lib.priors.ISAPrior`, which builds one distribution per training step) turns it off, as
    with any ``torch.distributions`` class. The tree's structure is always checked.
    """

    arg_constraints = {"exponents": constraints.positive, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, tree, scale=None, validate_args=None):
        check = validate_args is not False
        self.tree = tree if isinstance(tree, LpTree) else LpTree(tree, validate=check)
        self._scale = DEFAULT_SCALE if scale is None else scale
        if check:
            self.tree.validate()
            _exponent_value(self._scale, "scale")
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([self.tree.n]),
                         validate_args=validate_args)

    # -- parameters ---------------------------------------------------------------------------------
    def _params(self) -> list:
        return list(self.tree.exponents) + [self._scale]

    def _exponents(self, dtype) -> torch.Tensor:
        return self.tree.exponent_vector(dtype)

    def _check_exponents(self) -> None:
        self.tree.validate()

    @property
    def _dtype(self) -> torch.dtype:
        return _param_dtype(self._params()) or torch.get_default_dtype()

    @property
    def _device(self) -> torch.device:
        for p in self._params():
            if isinstance(p, torch.Tensor):
                return p.device
        return torch.device("cpu")

    @property
    def exponents(self) -> torch.Tensor:
        """All inner-node exponents in pre-order (root first)."""
        return self._exponents(self._dtype)

    @property
    def scale(self) -> torch.Tensor:
        return _as_tensor(self._scale, self._dtype)

    @property
    def n(self) -> int:
        return self.tree.n

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self.tree.n, dtype=self._dtype, device=self._device)

    # -- densities ----------------------------------------------------------------------------------
    def _check_value(self, value) -> torch.Tensor:
        value = torch.as_tensor(value)
        if value.ndim == 0 or value.shape[-1] != self.tree.n:
            raise ValueError(f"latent size mismatch: the prior has {self.tree.n} dimensions but the value has "
                             f"shape {tuple(value.shape)} (last axis must be {self.tree.n})")
        return value

    def _log_f(self, logabs: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:
        """log f(z) from log|z| and the exponent vector; subclasses with a faster layout override this."""
        return _log_f_node(self.tree.root, logabs, exps)

    def log_norm(self, value) -> torch.Tensor:
        """log f(z) (Eq. 6 / 9)."""
        value = self._check_value(value)
        dtype = _work_dtype(value, self._params())
        return self._log_f(_log_abs(value.to(dtype)), self._exponents(dtype))

    def radial_energy(self, value) -> torch.Tensor:
        """f(z)^p0 / s, which is Gamma(n/p0, 1)-distributed under this prior (Eq. 11)."""
        value = self._check_value(value)
        dtype = _work_dtype(value, self._params())
        exps = self._exponents(dtype)
        s = _as_tensor(self._scale, dtype)
        return torch.exp(exps[0] * self.log_norm(value) - torch.log(s))

    def _log_surface_area(self, exps: torch.Tensor) -> torch.Tensor:
        return log_surface_area(self.tree, exps)

    def log_normaliser(self, dtype=None) -> torch.Tensor:
        """log p0 - lgamma(n/p0) - (n/p0) log s - log S_f(1): log rho(z) + f(z)^p0/s."""
        dtype = dtype or self._dtype
        # with plain-float parameters the constant never changes, and recomputing its many small ops
        # dominated log_prob for typical batch sizes
        frozen = not any(isinstance(p, torch.Tensor) for p in self._params())
        cache = self.__dict__.setdefault("_normaliser_cache", {})
        if frozen and dtype in cache:
            return cache[dtype]
        exps = self._exponents(dtype)
        s = _as_tensor(self._scale, dtype)
        p0, n = exps[0], self.tree.n
        out = (torch.log(p0) - torch.lgamma(n / p0) - (n / p0) * torch.log(s)
               - self._log_surface_area(exps))
        if frozen:
            cache[dtype] = out
        return out

    def log_prob(self, value) -> torch.Tensor:
        """log rho(z) of Eq. 7 for ``value.shape == batch + (n,)``; returns shape ``batch``."""
        value = self._check_value(value)
        if self._validate_args:
            self._check_exponents()
        dtype = _work_dtype(value, self._params())
        exps = self._exponents(dtype)
        s = _as_tensor(self._scale, dtype)
        log_energy = exps[0] * self._log_f(_log_abs(value.to(dtype)), exps) - torch.log(s)
        # f^p0/s can exceed the dtype's range (e.g. |z|=1e4, p0=20 in float32); saturating it keeps
        # log_prob finite (a huge negative number) instead of -inf.
        log_energy = log_energy.clamp(max=math.log(torch.finfo(dtype).max) - 4.0)
        return self.log_normaliser(dtype) - torch.exp(log_energy)

    # -- sampling (Alg. 1) --------------------------------------------------------------------------
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Exact sample (Alg. 1): radius with f^p0/s ~ Gamma(n/p0, 1), Dirichlet(n_ik/p_i)^(1/p_i) at each
        inner node, random signs.  Steps 1 and 4 of Alg. 1 cancel and are skipped (see ERRATA.md).
        Uses torch's global (CPU) RNG, so ``torch.manual_seed`` makes it reproducible; the result is moved
        to the parameters' device."""
        shape = torch.Size(sample_shape)
        out_dtype = self._dtype
        dt = torch.float64  # Dirichlet weights with small concentrations underflow in float32
        with torch.no_grad():
            exps = self._exponents(dt).detach().cpu()
            s = _as_tensor(self._scale, dt).detach().cpu()
            n = self.tree.n
            p0 = exps[0]
            g = torch.distributions.Gamma(n / p0, torch.ones((), dtype=dt)).sample(shape)
            log_r = (torch.log(g.clamp_min(torch.finfo(dt).tiny)) + torch.log(s)) / p0
            log_abs = torch.empty(shape + (n,), dtype=dt)
            self._descend(self.tree.root, log_r, exps, log_abs, shape)
            signs = torch.randint(0, 2, shape + (n,)).to(dt).mul_(2).sub_(1)
            return (signs * torch.exp(log_abs)).to(device=self._device, dtype=out_dtype)

    def _descend(self, node: Node, log_r, exps, log_abs, shape) -> None:
        dt = exps.dtype
        p = exps[node.index]
        conc = torch.tensor(node.child_sizes(), dtype=dt) / p
        g = torch.distributions.Gamma(conc, torch.ones_like(conc)).sample(shape)
        log_g = torch.log(g.clamp_min(torch.finfo(dt).tiny))
        # Dirichlet via normalised Gammas; u_k = s_k^(1/p) lies on the unit p-sphere of this node
        log_u = (log_g - torch.logsumexp(log_g, dim=-1, keepdim=True)) / p
        log_child = log_r.unsqueeze(-1) + log_u
        k = 0
        for c in node.children:
            if isinstance(c, LeafRun):
                log_abs[..., c.start:c.stop] = log_child[..., k:k + c.n]
                k += c.n
            else:
                self._descend(c, log_child[..., k], exps, log_abs, shape)
                k += 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tree={self.tree.spec()!r}, scale={self._scale!r})"


class ISA(LpNested):
    """ISA prior (Eq. 9-10): root exponent ``p0`` over subspaces of ``sizes[i]`` coordinates, each an
    L_{p_i} ball with ``p_i = exponents[i]``; with the radial law of Eq. 11 the subspaces are independent.

    ``p0`` may be a float or 0-d tensor; ``exponents`` a sequence of floats/0-d tensors or a 1-D tensor.
    Stored by reference, so an ``nn.Parameter`` updated in place by an optimiser is picked up.
    """

    arg_constraints = {"p0": constraints.positive, "exponents": constraints.positive,
                       "scale": constraints.positive}

    def __init__(self, p0, sizes: Sequence[int], exponents, scale=None, validate_args=None):
        sizes = [int(k) if isinstance(k, numbers.Integral) and not isinstance(k, bool) else k for k in sizes]
        if isinstance(exponents, torch.Tensor) and exponents.ndim == 0:
            raise ValueError("exponents must have one entry per subspace, got a scalar tensor")
        if len(exponents) != len(sizes):
            raise ValueError(f"sizes has {len(sizes)} subspaces but exponents has {len(exponents)} entries")
        self.sizes = list(sizes)
        self._p0 = p0
        self._sub_exps = exponents
        if validate_args is not False:
            self._check_isa()
        tree = LpTree(isa_tree(p0, sizes, [exponents[i] for i in range(len(sizes))]),
                      validate=validate_args is not False)
        # equal subspace sizes allow one batched logsumexp instead of a loop over subspaces
        self._equal = len(set(self.sizes)) == 1
        super().__init__(tree, scale=scale, validate_args=validate_args)

    def _check_isa(self) -> None:
        _exponent_value(self._p0, "p0")
        for i in range(len(self.sizes)):
            _exponent_value(self._sub_exps[i], f"exponents[{i}] (subspace {i})")

    def _check_exponents(self) -> None:
        self._check_isa()

    def _params(self) -> list:
        subs = [self._sub_exps] if isinstance(self._sub_exps, torch.Tensor) else list(self._sub_exps)
        return [self._p0] + subs + [self._scale]

    def _sub_vector(self, dtype) -> torch.Tensor:
        if isinstance(self._sub_exps, torch.Tensor):
            return self._sub_exps.to(dtype).reshape(-1)
        return torch.stack([_as_tensor(p, dtype).reshape(()) for p in self._sub_exps])

    def _exponents(self, dtype) -> torch.Tensor:
        return torch.cat([_as_tensor(self._p0, dtype).reshape(1), self._sub_vector(dtype)])

    @property
    def p0(self) -> torch.Tensor:
        return _as_tensor(self._p0, self._dtype)

    @property
    def exponents(self) -> torch.Tensor:
        """Per-subspace exponents p_i (not including p0)."""
        return self._sub_vector(self._dtype)

    def _log_f(self, logabs: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:
        if not self._equal:
            return super()._log_f(logabs, exps)
        # equal subspace sizes: one batched logsumexp over all subspaces instead of a loop
        p0, p = exps[0], exps[1:]
        la = logabs.unflatten(-1, (len(self.sizes), self.sizes[0]))
        log_v = torch.logsumexp(p.unsqueeze(-1) * la, dim=-1) / p
        return torch.logsumexp(p0 * log_v, dim=-1) / p0

    def _log_surface_area(self, exps: torch.Tensor) -> torch.Tensor:
        # Eq. 8 for the depth-two ISA tree, vectorised over subspaces
        p0, p = exps[0], exps[1:]
        k = exps.new_tensor(self.sizes)
        n = self.tree.n
        root = torch.lgamma(k / p0).sum() - (len(self.sizes) - 1) * torch.log(p0) - torch.lgamma(n / p0)
        subs = (k * torch.lgamma(1.0 / p) - (k - 1) * torch.log(p) - torch.lgamma(k / p)).sum()
        return n * math.log(2.0) + root + subs

    def subspace_log_norms(self, value) -> torch.Tensor:
        """log v_i = log ||z_{V_i}||_{p_i} for each subspace (Eq. 9-10); shape ``batch + (l0,)``."""
        value = self._check_value(value)
        dtype = _work_dtype(value, self._params())
        exps = self._exponents(dtype)
        la = _log_abs(value.to(dtype))
        out, a = [], 0
        for i, k in enumerate(self.sizes):
            out.append(torch.logsumexp(exps[1 + i] * la[..., a:a + k], dim=-1) / exps[1 + i])
            a += k
        return torch.stack(out, dim=-1)

    def __repr__(self) -> str:
        return f"ISA(p0={self._p0!r}, sizes={self.sizes!r}, exponents={self._sub_exps!r}, scale={self._scale!r})"


class PGeneralizedNormal(LpNested):
    """Product of n independent p-generalised normals, p(z) ∝ exp(-sum |z_j|^p / s) (Eq. 5, ICA prior):
    the one-node tree ``(p, [n])``."""

    def __init__(self, p, n: int, scale=None, validate_args=None):
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        super().__init__((p, [int(n)]), scale=scale, validate_args=validate_args)

    @property
    def p(self) -> torch.Tensor:
        return self.exponents[0]


# --------------------------------------------------------------------------------------------------
# Numerical integration (checks of Eq. 7-8 and marginals for the sampler comparisons)
# --------------------------------------------------------------------------------------------------
def orthant_quadrature(n_points: int = 200, power: float = 2.0, dtype=torch.float64):
    """Nodes and weights for integrals over [0, inf): z = (u / (1 - u))^power with Gauss-Legendre in u.

    The power smooths the cusp of |z|^p at 0 for p < 1; the map sends the tails to u -> 1.
    """
    u, w = np.polynomial.legendre.leggauss(n_points)
    u = 0.5 * (u + 1.0)
    w = 0.5 * w
    t = u / (1.0 - u)
    z = t ** power
    dz = power * t ** (power - 1.0) / (1.0 - u) ** 2
    return torch.as_tensor(z, dtype=dtype), torch.as_tensor(w * dz, dtype=dtype)


def _grid(nodes: torch.Tensor, weights: torch.Tensor, k: int):
    if k == 0:
        return nodes.new_zeros((1, 0)), weights.new_ones(1)
    zs = torch.cartesian_prod(*([nodes] * k)).reshape(-1, k)
    ws = torch.cartesian_prod(*([weights] * k)).reshape(-1, k).prod(-1)
    return zs, ws


def total_mass(dist: LpNested, n_points: int = 200, power: float = 2.0) -> float:
    """∫ rho(z) dz by tensor-product quadrature over the positive orthant times 2^n (rho is sign
    symmetric).  Intended for n <= 3 (n_points^n evaluations)."""
    n = dist.event_shape[0]
    nodes, weights = orthant_quadrature(n_points, power)
    zs, ws = _grid(nodes, weights, n)
    with torch.no_grad():
        total = 0.0
        for a in range(0, zs.shape[0], 1 << 20):
            total += float((ws[a:a + (1 << 20)] * dist.log_prob(zs[a:a + (1 << 20)]).exp()).sum())
    return (2.0 ** n) * total


def marginal_density(dist: LpNested, dims: Sequence[int], values, n_points: int = 120,
                     power: float = 2.0) -> torch.Tensor:
    """Marginal density of coordinates ``dims`` at ``values`` (shape (m, len(dims))), integrating the other
    coordinates numerically (sign symmetry, orthant quadrature).  Intended for n - len(dims) <= 2."""
    n = dist.event_shape[0]
    dims = list(dims)
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1, len(dims))
    rest = [j for j in range(n) if j not in dims]
    nodes, weights = orthant_quadrature(n_points, power)
    zr, wr = _grid(nodes, weights, len(rest))
    out = torch.empty(values.shape[0], dtype=torch.float64)
    chunk = max(1, (1 << 20) // max(1, zr.shape[0]))
    with torch.no_grad():
        for a in range(0, values.shape[0], chunk):
            v = values[a:a + chunk]
            z = torch.empty(v.shape[0], zr.shape[0], n, dtype=torch.float64)
            z[..., dims] = v[:, None, :]
            z[..., rest] = zr[None]
            out[a:a + chunk] = (dist.log_prob(z).exp() * wr).sum(-1) * 2.0 ** len(rest)
    return out


def marginal_cdf_1d(dist: LpNested, dim: int, half_width: float, n_grid: int = 801, n_points: int = 120):
    """(grid, density, cdf) of the 1-D marginal of coordinate ``dim`` on [-half_width, half_width].

    The cdf integrates the numerical density with the trapezoid rule and adds the (symmetric) tail mass
    outside the grid so that it runs from tail to 1 - tail.
    """
    x = torch.linspace(-half_width, half_width, n_grid, dtype=torch.float64)
    dens = marginal_density(dist, [dim], x[:, None], n_points=n_points)
    inc = 0.5 * (dens[1:] + dens[:-1]) * (x[1:] - x[:-1])
    inside = float(inc.sum())
    tail = max(0.0, (1.0 - inside) / 2.0)
    cdf = torch.cat([x.new_zeros(1), torch.cumsum(inc, 0)]) + tail
    return x.numpy(), dens.numpy(), cdf.numpy()


# --------------------------------------------------------------------------------------------------
# Fig. 3: dSprites (x, y) positions under rotated 2-D codes
# --------------------------------------------------------------------------------------------------
def dsprites_positions(n_grid: int = 32, standardise: bool = True) -> torch.Tensor:
    """The dSprites (x, y) positions: an ``n_grid`` x ``n_grid`` grid over the unit square, shape
    (n_grid^2, 2).  With ``standardise`` centred and scaled to unit variance per axis (the variance of
    the N(0, 1) prior that the all-2 tree with s = 2 gives)."""
    g = torch.linspace(0.0, 1.0, n_grid, dtype=torch.float64)
    xy = torch.cartesian_prod(g, g)
    if standardise:
        xy = (xy - xy.mean(0)) / xy.std(0, unbiased=False)
    return xy


def rotate(points: torch.Tensor, theta) -> torch.Tensor:
    """Rotate 2-D points (..., 2) by angle(s) ``theta`` (radians); theta of shape (k,) gives (k, ..., 2)."""
    points = torch.as_tensor(points)
    th = torch.as_tensor(theta, dtype=points.dtype)
    c, s = torch.cos(th), torch.sin(th)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (..., 2, 2)
    if th.ndim == 0:
        return points @ rot.transpose(-1, -2)
    return torch.einsum("kij,...j->k...i", rot, points)


def expected_log_density_vs_angle(prior: Distribution, points: torch.Tensor, thetas) -> torch.Tensor:
    """Mean log-density of the 2-D codes ``R(theta) @ points`` under ``prior`` for each theta (Fig. 3).

    A higher value means the prior prefers that orientation of the position code.
    """
    thetas = torch.as_tensor(thetas, dtype=torch.float64)
    with torch.no_grad():
        return prior.log_prob(rotate(points, thetas)).mean(-1)


def orientation_summary(priors: dict, points: torch.Tensor, thetas) -> list[dict]:
    """Per prior: mean log-density of the codes at 0° and 45°, the best angle on ``thetas`` and the
    gain of the best angle over 0° (nats per code), for Fig. 3."""
    thetas = torch.as_tensor(thetas, dtype=torch.float64)
    rows = []
    for name, prior in priors.items():
        v = expected_log_density_vs_angle(prior, points, thetas)
        at = expected_log_density_vs_angle(prior, points, torch.tensor([0.0, math.pi / 4]))
        k = int(torch.argmax(v))
        rows.append(dict(prior=name, at_0deg=float(at[0]), at_45deg=float(at[1]),
                         best_deg=float(thetas[k]) * 180.0 / math.pi,
                         best_minus_0deg=float(v[k] - at[0]), diag_minus_axis=float(at[1] - at[0])))
    return rows


# --------------------------------------------------------------------------------------------------
# ISA independence structure (Eq. 9-11)
# --------------------------------------------------------------------------------------------------
def abs_correlations(samples: torch.Tensor) -> np.ndarray:
    """Correlation matrix of |z_j|: zero for independent symmetric coordinates; coordinates that share a
    subspace radius are positively correlated in magnitude even though z_j themselves are uncorrelated."""
    return np.corrcoef(samples.abs().double().numpy().T)


def subspace_radius_correlations(dist: "ISA", samples: torch.Tensor) -> np.ndarray:
    """Correlation matrix of the subspace radii ||z_{V_i}||_{p_i}: ~0 under the radial law of Eq. 11."""
    return np.corrcoef(dist.subspace_log_norms(samples).exp().double().numpy().T)


# --------------------------------------------------------------------------------------------------
# Fig. 2: the unit sphere of Eq. 6
# --------------------------------------------------------------------------------------------------
def _signed_pow(x, e):
    return np.sign(x) * np.abs(x) ** e


def eq6_unit_sphere(p0: float, p1: float, n_a: int = 60, n_t: int = 80):
    """(X, Y, Z) = (z1, z2, z3) on the surface f(z) = 1 of Eq. 6, as (n_a, n_t) arrays.

    Uses |cos|^(2/p) parametrisations: z1 = sgn(cos a)|cos a|^(2/p0), r = |sin a|^(2/p0) with
    |z1|^p0 + r^p0 = 1, and (z2, z3) = r * (sgn(cos t)|cos t|^(2/p1), sgn(sin t)|sin t|^(2/p1)).
    """
    a = np.linspace(0.0, np.pi, n_a)[:, None]
    t = np.linspace(0.0, 2.0 * np.pi, n_t)[None, :]
    z1 = _signed_pow(np.cos(a), 2.0 / p0) * np.ones_like(t)
    r = np.abs(np.sin(a)) ** (2.0 / p0)
    z2 = r * _signed_pow(np.cos(t), 2.0 / p1)
    z3 = r * _signed_pow(np.sin(t), 2.0 / p1)
    return z1, z2, z3

"""Lp-nested symmetric distributions and the ISA prior (paper Sec. 3, Eq. 5-11, Alg. 1).

A tree is written as nested ``(p, [children])`` tuples: ``p`` is the node's exponent, each child is
either an ``int`` (that many leaves) or another ``(p, [...])`` tuple.  Leaves are assigned to the latent
coordinates left to right.  Eq. 6 is ``(p0, [1, (p1, [2])])``; the ISA layout of Eq. 9 is
``(p0, [(p1, [n1]), (p2, [n2]), ...])``.

Everything is computed in log space.  The scale ``s`` in ``exp(-f(z)**p0 / s)`` defaults to 2, which
makes the all-exponents-2 tree exactly ``N(0, I)`` (Eq. 11; derived in the book's appendix "Equations").

``trees`` holds the tree structure, ``functions`` the function f, the surface area (Eq. 8) and the radial
density (Eq. 11), ``distributions`` the ``torch.distributions`` classes; import them from this package.
The chapter's analyses of these priors (quadrature, orientation preference, subspace dependence) are in
:mod:`isa_lib.lpnested_analysis`.
"""
from __future__ import annotations

from .distributions import ISA, LpNested, PGeneralizedNormal
from .functions import DEFAULT_SCALE, log_lp_nested_norm, log_radial_density, log_surface_area, lp_nested_norm
from .trees import LpTree, eq6_tree, isa_tree, parse_tree

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
]

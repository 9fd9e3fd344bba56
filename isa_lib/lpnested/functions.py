"""The Lp-nested function f (Eq. 6, 9) in log space, the surface area of its unit sphere (Eq. 8) and the
radial density g0 (Eq. 11, with a scale s). The derivations are in the book's appendix "Equations"."""
from __future__ import annotations

import math

import torch

from .trees import LeafRun, LpTree, Node, _as_tensor, _param_dtype, _work_dtype

#: The scale s of exp(-f(z)^p0 / s): 2 makes the tree with every exponent 2 exactly N(0, I) (Eq. 11).
DEFAULT_SCALE = 2.0


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
        exponents = tree.exponent_vector(dtype, z.device)
    else:
        dtype = torch.promote_types(z.dtype if z.is_floating_point() else torch.get_default_dtype(),
                                    exponents.dtype)
        exponents = exponents.to(device=z.device, dtype=dtype)
    return _log_f_node(tree.root, _log_abs(z.to(dtype)), exponents)


def lp_nested_norm(z: torch.Tensor, tree, exponents: torch.Tensor | None = None) -> torch.Tensor:
    """f(z) of Eq. 6 / 9 (``exp`` of :func:`log_lp_nested_norm`)."""
    return log_lp_nested_norm(z, tree, exponents).exp()


# --------------------------------------------------------------------------------------------------
# Eq. 8: surface area of the unit sphere; Eq. 11: radial density
# --------------------------------------------------------------------------------------------------
def log_surface_area(tree, exponents: torch.Tensor | None = None, dtype=torch.float64) -> torch.Tensor:
    """log S_f(1) of Eq. 8, in its Gamma form (derived in the book's appendix "Equations"):

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
    p0 = _as_tensor(p0, dtype, v.device)
    s = _as_tensor(scale, dtype, v.device)
    logv = torch.log(v.clamp_min(torch.finfo(dtype).tiny))
    return (torch.log(p0) + (n - 1) * logv - torch.exp(p0 * logv - torch.log(s))
            - (n / p0) * torch.log(s) - torch.lgamma(n / p0))

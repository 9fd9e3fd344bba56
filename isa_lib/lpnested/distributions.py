"""The Lp-nested symmetric distribution (Eq. 7, 11; exact sampler, Alg. 1), the ISA prior (Eq. 9-10) and
the p-generalised normal (Eq. 5), as ``torch.distributions.Distribution`` classes."""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch.distributions import Distribution, constraints

from .functions import DEFAULT_SCALE, _log_abs, _log_f_node, log_surface_area
from .trees import (LeafRun, LpTree, Node, _as_tensor, _exponent_value, _param_device, _param_dtype, _work_dtype,
                    isa_tree)


def sample_size(sample_shape) -> torch.Size:
    """``sample_shape`` of :meth:`LpNested.sample` (Alg. 1) as a ``torch.Size``: a tuple, list or ``torch.Size``
    of whole numbers >= 0 (as ``torch.distributions`` takes it). Anything else is a ValueError naming it,
    where torch failed late with an overflow in ``numel`` (a -1) or a bare TypeError (2.5, a plain int)."""
    hint = "give a tuple of whole numbers >= 0, e.g. (n,) for n samples"
    if isinstance(sample_shape, (str, bytes)) or not isinstance(sample_shape, (tuple, list, torch.Size)):
        raise ValueError(f"sample_shape must be a tuple of sizes, got {type(sample_shape).__name__} "
                         f"{sample_shape!r}; {hint}")
    for i, v in enumerate(sample_shape):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"sample_shape[{i}] must be a whole number >= 0, got {v!r} in {tuple(sample_shape)!r}; "
                             f"{hint}")
    return torch.Size(int(v) for v in sample_shape)


class LpNested(Distribution):
    """Lp-nested symmetric distribution (Eq. 7) with the radial law of Eq. 11 and scale s.

    log rho(z) = log p0 - lgamma(n/p0) - (n/p0) log s - f(z)^p0 / s - log S_f(1)   (Eq. 7, 8, 11;
    derived in the book's appendix "Equations").

    ``tree`` is a ``(p, [children])`` spec or :class:`LpTree`; exponents may be floats or tensors (tensors
    that require grad get gradients through :meth:`log_prob`).  ``scale=None`` means s = 2, which makes
    the all-2 tree exactly N(0, I).  Sampling is exact (Alg. 1) and uses torch's global RNG.

    Devices: every computation runs on the device of the value it is given (``log_prob(z)`` on ``z.device``);
    tensor parameters are moved there and plain floats are made there, never mixed in from the CPU. The
    device of the parameters (:attr:`_device`: the first tensor parameter's, else the CPU) is where
    :meth:`sample` puts its result.

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

    def _exponents(self, dtype, device=None) -> torch.Tensor:
        return self.tree.exponent_vector(dtype, self._device if device is None else device)

    def _check_exponents(self) -> None:
        self.tree.validate()

    @property
    def _dtype(self) -> torch.dtype:
        return _param_dtype(self._params()) or torch.get_default_dtype()

    @property
    def _device(self) -> torch.device:
        return _param_device(self._params())

    @property
    def exponents(self) -> torch.Tensor:
        """All inner-node exponents in pre-order (root first)."""
        return self._exponents(self._dtype)

    @property
    def scale(self) -> torch.Tensor:
        return _as_tensor(self._scale, self._dtype, self._device)

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
        if self._validate_args and torch.isnan(value).any():  # as torch's own distributions do (support: real)
            bad = torch.isnan(value).any(-1).nonzero()[0].tolist()
            raise ValueError(f"value contains NaN (first at batch index {tuple(bad)}); the support is the reals")
        return value

    def _log_f(self, logabs: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:
        """log f(z) from log|z| and the exponent vector; subclasses with a faster layout override this."""
        return _log_f_node(self.tree.root, logabs, exps)

    def log_norm(self, value) -> torch.Tensor:
        """log f(z) (Eq. 6 / 9)."""
        value = self._check_value(value)
        dtype = _work_dtype(value, self._params())
        return self._log_f(_log_abs(value.to(dtype)), self._exponents(dtype, value.device))

    def radial_energy(self, value) -> torch.Tensor:
        """f(z)^p0 / s, which is Gamma(n/p0, 1)-distributed under this prior (Eq. 11)."""
        value = self._check_value(value)
        dtype = _work_dtype(value, self._params())
        exps = self._exponents(dtype, value.device)
        return torch.exp(exps[0] * self.log_norm(value) - self._log_scale(dtype, value.device))

    def _log_surface_area(self, exps: torch.Tensor) -> torch.Tensor:
        return log_surface_area(self.tree, exps)

    def _log_scale(self, dtype, device):
        """log s: a Python float for a plain-number scale (no tensor copied to an accelerator, which would wait
        for its queue at every log_prob), else the log of the tensor on ``device``."""
        if isinstance(self._scale, torch.Tensor):
            return torch.log(_as_tensor(self._scale, dtype, device))
        return math.log(float(self._scale))

    def log_normaliser(self, dtype=None, device=None) -> torch.Tensor:
        """log p0 - lgamma(n/p0) - (n/p0) log s - log S_f(1): log rho(z) + f(z)^p0/s (Eq. 7, 8, 11), on
        ``device`` (default: the parameters')."""
        dtype = dtype or self._dtype
        device = self._device if device is None else torch.device(device)
        # with plain-float parameters the constant never changes, and recomputing its many small ops
        # dominated log_prob for typical batch sizes
        frozen = not any(isinstance(p, torch.Tensor) for p in self._params())
        cache = self.__dict__.setdefault("_normaliser_cache", {})
        if frozen and (dtype, device) in cache:
            return cache[dtype, device]
        exps = self._exponents(dtype, device)
        p0, n = exps[0], self.tree.n
        out = (torch.log(p0) - torch.lgamma(n / p0) - (n / p0) * self._log_scale(dtype, device)
               - self._log_surface_area(exps))
        if frozen:
            cache[dtype, device] = out
        return out

    def log_prob(self, value) -> torch.Tensor:
        """log rho(z) of Eq. 7 for ``value.shape == batch + (n,)``; returns shape ``batch``."""
        value = self._check_value(value)
        if self._validate_args:
            self._check_exponents()
        dtype = _work_dtype(value, self._params())
        exps = self._exponents(dtype, value.device)
        log_energy = exps[0] * self._log_f(_log_abs(value.to(dtype)), exps) - self._log_scale(dtype, value.device)
        # f^p0/s can exceed the dtype's range (e.g. |z|=1e4, p0=20 in float32); saturating it keeps
        # log_prob finite (a huge negative number) instead of -inf.
        log_energy = log_energy.clamp(max=math.log(torch.finfo(dtype).max) - 4.0)
        return self.log_normaliser(dtype, value.device) - torch.exp(log_energy)

    # -- sampling (Alg. 1) --------------------------------------------------------------------------
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Exact sample (Alg. 1): radius with f^p0/s ~ Gamma(n/p0, 1), Dirichlet(n_ik/p_i)^(1/p_i) at each
        inner node, random signs.  Steps 1 and 4 of Alg. 1 cancel and are skipped (appendix
        "Equations" shows why).
        Uses torch's global (CPU) RNG, so ``torch.manual_seed`` makes it reproducible; the result is moved
        to the parameters' device. Parameters on the ``meta`` device (shape inference, and the device tests)
        have no values to draw from: the result is a meta tensor of the right shape and dtype."""
        shape = sample_size(sample_shape)
        out_dtype = self._dtype
        if self._device.type == "meta":
            return torch.empty(shape + (self.tree.n,), dtype=out_dtype, device="meta")
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

    ``p0`` may be a float or 0-d tensor; ``exponents`` a sequence of floats/0-d tensors or a 1-D tensor, or
    one float/0-d tensor shared by every subspace.
    Stored by reference, so an ``nn.Parameter`` updated in place by an optimiser is picked up.
    """

    arg_constraints = {"p0": constraints.positive, "exponents": constraints.positive,
                       "scale": constraints.positive}

    def __init__(self, p0, sizes: Sequence[int], exponents, scale=None, validate_args=None):
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise ValueError(f"sizes must be a list of subspace sizes, e.g. [4, 4, 4], got {sizes!r}")
        sizes = [int(k) if isinstance(k, numbers.Integral) and not isinstance(k, bool) else k for k in sizes]
        if isinstance(exponents, numbers.Real) or (isinstance(exponents, torch.Tensor) and exponents.ndim == 0):
            exponents = [exponents] * len(sizes)  # one exponent shared by every subspace (as ISAPrior takes it)
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

    def _sub_vector(self, dtype, device=None) -> torch.Tensor:
        device = self._device if device is None else device
        if isinstance(self._sub_exps, torch.Tensor):
            return self._sub_exps.to(device=device, dtype=dtype).reshape(-1)
        return torch.stack([_as_tensor(p, dtype, device).reshape(()) for p in self._sub_exps])

    def _exponents(self, dtype, device=None) -> torch.Tensor:
        device = self._device if device is None else device
        return torch.cat([_as_tensor(self._p0, dtype, device).reshape(1), self._sub_vector(dtype, device)])

    @property
    def p0(self) -> torch.Tensor:
        return _as_tensor(self._p0, self._dtype, self._device)

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
        l0, n = len(self.sizes), self.tree.n
        if len(set(self.sizes)) == 1:   # the paper's layouts: k a Python number, no host-to-device copy per call
            k = self.sizes[0]
            root_k = l0 * torch.lgamma(k / p0)
        else:
            k = exps.new_tensor(self.sizes)
            root_k = torch.lgamma(k / p0).sum()
        root = root_k - (l0 - 1) * torch.log(p0) - torch.lgamma(n / p0)
        subs = (k * torch.lgamma(1.0 / p) - (k - 1) * torch.log(p) - torch.lgamma(k / p)).sum()
        return n * math.log(2.0) + root + subs

    def subspace_log_norms(self, value) -> torch.Tensor:
        """log v_i = log ||z_{V_i}||_{p_i} for each subspace (Eq. 9-10); shape ``batch + (l0,)``."""
        value = self._check_value(value)
        dtype = _work_dtype(value, self._params())
        exps = self._exponents(dtype, value.device)
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

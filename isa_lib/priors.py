"""Latent priors of the comparison as modules that hand out ``torch.distributions`` (Sec. 3-4, App. A.2).

A prior module owns whatever is learned (the ISA exponents, Sec. 4 "Learning the Exponents") so that it
is saved, moved between devices and optimised with the rest of the model; ``prior()`` returns the
distribution for the current parameter values, which the objectives use through ``log_prob``.

``prior()`` is called once per training step, so it does no argument validation (``validate_args=False``):
on a GPU every check of a tensor's value is a host-device synchronisation. The modules guarantee valid
parameters instead: fixed exponents are checked once, when the module is built, and learned ones are kept
inside their bounds by construction.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import distributions as D
from torch import nn

from .lpnested import ISA


class NormalPrior(nn.Module):
    """The standard VAE prior N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim
        self.register_buffer("_zero", torch.zeros(()))

    def forward(self) -> D.Distribution:
        zeros = self._zero.expand(self.latent_dim)
        return D.Independent(D.Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)


class ISAPrior(nn.Module):
    """The ISA prior of Eq. 9-11, ``ISA(p0, sizes, exponents)``, with fixed or learned subspace exponents.

    Learned exponents (App. A.2: p0 fixed, each p_i initialised at ``exponents[i]``, e.g. 2.0) are kept in
    ``bounds`` by a logistic map of an unconstrained parameter, so no optimiser step can make the prior
    invalid. Fixed exponents are buffers.
    """

    def __init__(self, p0: float, sizes: Sequence[int], exponents: Sequence[float] | float,
                 learn: bool = False, bounds: tuple[float, float] = (0.5, 5.0), scale: float | None = None):
        super().__init__()
        sizes = [int(k) for k in sizes]
        if isinstance(exponents, (int, float)):
            exponents = [float(exponents)] * len(sizes)
        exps = torch.as_tensor(list(exponents), dtype=torch.get_default_dtype())
        ISA(p0, sizes, exps, scale=scale)  # validates p0, the sizes and every exponent with named errors
        lo, hi = bounds
        if not 0 < lo < hi:
            raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
        if learn and not bool(((exps > lo) & (exps < hi)).all()):
            raise ValueError(f"initial exponents {exps.tolist()} must lie strictly inside bounds {bounds}")
        self.p0, self.sizes, self.bounds, self.scale, self.learn = float(p0), sizes, (lo, hi), scale, learn
        # p0 as a buffer: a tensor made from a float at every step would be a host-to-device copy on a GPU
        self.register_buffer("outer_exponent", torch.tensor(float(p0), dtype=exps.dtype))
        if learn:
            u = (exps - lo) / (hi - lo)
            self.raw_exponents = nn.Parameter(torch.log(u) - torch.log1p(-u))
        else:
            self.register_buffer("fixed_exponents", exps)

    @property
    def latent_dim(self) -> int:
        return sum(self.sizes)

    @property
    def exponents(self) -> torch.Tensor:
        """The current subspace exponents p_1..p_l (differentiable when learned)."""
        if self.learn:
            lo, hi = self.bounds
            return lo + (hi - lo) * torch.sigmoid(self.raw_exponents)
        return self.fixed_exponents

    def forward(self) -> ISA:
        exps = self.exponents
        return ISA(self.outer_exponent.to(exps.dtype), self.sizes, exps, scale=self.scale, validate_args=False)


def make_prior(name: str, latent_dim: int, p0: float = 2.1, sizes: Sequence[int] | None = None,
               exponents: Sequence[float] | float = 2.2, learn: bool = False, **kw) -> nn.Module:
    """A prior by name: ``"normal"`` or ``"isa"`` (layout ``sizes`` must add up to ``latent_dim``).

    The paper's layouts: dSprites l0 = 5 subspaces of 4, p0 = 2.1, p_i = 2.2; 3-D faces p_i = 1.9; learned
    exponents start at 2.0 with p0 = 2.1 fixed (Sec. 4, App. A.2).
    """
    if name == "normal":
        return NormalPrior(latent_dim)
    if name == "isa":
        if sizes is None:
            raise ValueError("the ISA prior needs a layout: sizes=[n_1, ..., n_l]")
        if sum(sizes) != latent_dim:
            raise ValueError(f"ISA layout {list(sizes)} has {sum(sizes)} dimensions but the latent size is "
                             f"{latent_dim}")
        return ISAPrior(p0, sizes, exponents, learn=learn, **kw)
    raise ValueError(f"unknown prior {name!r}; choose 'normal' or 'isa'")


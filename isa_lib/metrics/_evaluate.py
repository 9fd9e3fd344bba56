"""The evaluation driver: the paper's numbers (Sec. 4) for a trained model on a ground-truth dataset."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ._elbo import elbo_decomposition, encode_dataset, reconstruction_log_likelihood
from ._inputs import MIG_FACTORS, _pick_device, grid_classes
from ._mig import mig_chen
from ._mixture import _check_resolvable, check_dtype, native_usable
from ._scores import _check_score_names, score_codes


def evaluate_model(encode: Callable, dataset, decode: Callable | None = None, log_prior_fn=None,
                   factors=None, n_samples: int = 10000, groups=None, batch_size: int = 1024, seed: int = 0,
                   device=None, mig_dtype: torch.dtype = torch.float64, mig_backend: str = "auto",
                   scores: Sequence[str] | None = None, score_points: int | None = 10000) -> dict:
    """The paper's numbers for a trained model on a ground-truth dataset (``images``, ``factor_sizes``,
    optional ``name``/``factor_names``/``max_value``): Chen MIG (factors default: MIG_FACTORS of the
    dataset's name, else every varying factor), reconstruction quality if ``decode`` is given, and the
    Eq. 3 decomposition if ``log_prior_fn`` is given.  ``mig_dtype``: the MIG's working precision; float32
    scores the same samples 2-3x faster than the float64 reference (see :func:`mig_chen`); posteriors
    too narrow for it are scored in float64 instead (through the native kernel's float64 differences where
    ``mig_backend`` is ``auto`` and the kernel is there).  ``out["mig_dtype"]`` names the one used, and
    ``out["mig_backend"]`` the kernel (``mig_backend``: see :func:`mig_chen`; ``auto`` runs float32 on a CPU
    through the fused C kernel), with "+chebyshev" where some log q(z_j) came from checked interpolants
    (:func:`mig_chen`'s ``interpolate``, on by default with the native kernel).  ``scores``: optional names
    of further metrics (:data:`SCORES`, e.g. ``["dci_gbt", "sap_linear_svc", "betavae", "modularity"]``)
    computed on the encoder means of the whole grid with the MIG's factors and ``seed`` by :func:`score_codes` (row-based ones on
    ``score_points`` random rows), returned under ``out["scores"]``; nothing else changes."""
    if scores is not None:
        _check_score_names(scores)       # before the (long) encoding and MIG
    check_dtype(mig_dtype, "mig_dtype")     # before the encoding, which can take minutes
    mu, lv = encode_dataset(encode, dataset, batch_size=batch_size, device=device)
    names = getattr(dataset, "factor_names", None)
    if factors is None and getattr(dataset, "name", None) in MIG_FACTORS:
        factors = dataset.name   # resolved against the dataset's own factor_names
    if mig_dtype != torch.float64:
        try:
            _check_resolvable(mu, lv, mig_dtype)
        except ValueError:
            mig_dtype = torch.float64
            # the native kernel takes float64 differences where a float32 MIG was asked for (the torch
            # float64 path, the reference, is ~20x slower on a budget-scale model); only where the MIG
            # computes on the CPU: the encoder's outputs are always on the CPU, the device asked for may not be
            if mig_backend == "auto" and _pick_device(device).type == "cpu" and native_usable():
                mig_backend = "native"
    res = mig_chen(mu, lv, dataset.factor_sizes, factors=factors, n_samples=n_samples, groups=groups,
                   factor_names=names, seed=seed, device=device, dtype=mig_dtype, backend=mig_backend)
    out = {"mig": res.mig, "mig_per_factor": res.per_factor, "mig_factors": res.factors,
           "mig_dtype": str(mig_dtype).replace("torch.", ""),
           "mig_backend": res.info["backend"] + ("+chebyshev" if res.info["interpolated"][0] else "")}
    if decode is not None:
        out["reconstruction"] = reconstruction_log_likelihood(encode, decode, dataset, batch_size=batch_size,
                                                              seed=seed, device=device, posteriors=(mu, lv))
    if log_prior_fn is not None:
        out.update(elbo_decomposition(mu, lv, log_prior_fn, n_samples=n_samples, seed=seed, device=device))
    if scores:
        out["scores"] = score_codes(mu, grid_classes(dataset.factor_sizes), scores, factors=res.factors,
                                    n_points=score_points, seed=seed)
    return out

"""MIG-sup (Li et al. 2020): the mutual information gap taken per latent, over factors."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._inputs import _scored_codes
from ._binned import _binned_codes, _binned_mi
from ._mig_histogram import _discrete_entropy


def mig_sup(codes, factor_classes, factors=None, n_bins: int = 20, n_points: int | None = None,
            factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """MIG-sup of Li, Murkute, Gyawali & Wang (2020, "Progressive learning and disentanglement of
    hierarchical representations", ICLR), as in Carbonneau et al.'s (2020) metrics review: with the
    histogram MI of :func:`mig_histogram` (codes in ``n_bins`` equal-width bins), normalised by the
    factor entropy, I_jk / H(v_k), for each latent j the gap between its largest and second-largest
    normalised MI over the factors; the score is the mean over all latents.  It penalises a latent that
    carries two factors (MIG penalises a factor spread over two latents); a latent that carries nothing
    scores 0 and lowers the mean.  Needs at least two factors."""
    c, v, ks = _scored_codes(codes, factor_classes, n_points, seed, factors, factor_names)
    if len(ks) < 2:
        raise ValueError("MIG-sup needs at least two factors")
    mi = _binned_mi(_binned_codes(c, n_bins), v[:, ks])                                       # (D, K)
    hv = np.array([_discrete_entropy(v[:, k]) for k in ks])
    norm = mi / hv[None, :]
    srt = np.sort(norm, axis=1)
    per = srt[:, -1] - srt[:, -2]
    return {"mig_sup": float(per.mean()), "per_latent": per, "normalised": norm, "mutual_info": mi,
            "factor_entropy": hv, "factors": ks}

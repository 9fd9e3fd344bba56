"""Histogram mutual information shared by the binned scores (MIG-sup, modularity, the unsupervised
mutual-information score): equal-width bins as in disentanglement_lib (Locatello et al. 2019)."""
from __future__ import annotations

import numpy as np

from ._checks import _int_at_least
from ._mig_histogram import _discrete_mi, _discretise


def _binned_mi(binned: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(D, K) plug-in mutual information (nats) of each binned latent (columns of ``binned``) with each
    label column; exactly 0 where either side is constant (as scikit-learn's ``mutual_info_score``), so
    a collapsed latent carries no information rather than rounding noise."""
    d, k = binned.shape[1], labels.shape[1]
    const_b = np.array([np.all(binned[:, j] == binned[0, j]) for j in range(d)])
    const_l = np.array([np.all(labels[:, i] == labels[0, i]) for i in range(k)])
    out = np.zeros((d, k))
    for j in range(d):
        for i in range(k):
            if not (const_b[j] or const_l[i]):
                out[j, i] = max(_discrete_mi(binned[:, j], labels[:, i]), 0.0)
    return out


def _binned_codes(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Each latent cut into ``n_bins`` equal-width bins over its range (disentanglement_lib's
    histogram discretisation)."""
    return _discretise(codes, _int_at_least("n_bins", n_bins, 2))

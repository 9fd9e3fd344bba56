"""The SAP score of Kumar et al. (2018)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._inputs import _as_classes, _as_codes, _factors_from_classes, _split, _subsample


def _nearest_mean_accuracy(x_tr, y_tr, x_te, y_te) -> float:
    classes = np.unique(y_tr)
    means = np.array([x_tr[y_tr == c].mean() for c in classes])
    pred = classes[np.argmin(np.abs(x_te[:, None] - means[None, :]), axis=1)]
    return float(np.mean(pred == y_te))


def sap(codes, factor_classes, factors=None, mode: str = "regression", train_fraction: float = 0.8,
        n_points: int | None = None, factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """SAP score of Kumar et al. (2018): a (D, F) score matrix of single-latent predictors, then the
    mean over factors of the gap between the two best latents.

    mode "regression": score = R^2 of a 1-D linear regression (squared correlation) of the class index on
    one latent, on all rows.  mode "classification": accuracy on a held-out split of a 1-D nearest
    class-mean classifier (a linear classifier on one input splits the line into intervals; this one is
    closed-form) - chance level is 1/|V_k|, so the gap of a perfect code is below 1.
    """
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    c, v = c[rows], v[rows]
    ks = _factors_from_classes(factors, v, factor_names)
    d = c.shape[1]
    if d < 2:
        raise ValueError("SAP needs at least two latents")
    score = np.zeros((d, len(ks)))
    if mode == "regression":
        cz = c - c.mean(0)
        for i, k in enumerate(ks):
            y = v[:, k] - v[:, k].mean()
            den = np.sqrt((cz ** 2).sum(0) * (y ** 2).sum())
            cov = cz.T @ y
            score[:, i] = np.divide(cov, den, out=np.zeros(d), where=den > 0) ** 2
    elif mode == "classification":
        tr, te = _split(len(rows), train_fraction, seed)
        for i, k in enumerate(ks):
            for j in range(d):
                score[j, i] = _nearest_mean_accuracy(c[tr, j], v[tr, k], c[te, j], v[te, k])
    else:
        raise ValueError(f"mode must be 'regression' or 'classification', got {mode!r}")
    srt = np.sort(score, axis=0)[::-1]
    gaps = srt[0] - srt[1]
    return {"sap": float(gaps.mean()), "per_factor": gaps, "score_matrix": score, "factors": ks}

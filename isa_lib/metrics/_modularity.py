"""Modularity and explicitness of Ridgeway & Mozer (2018), as defined in disentanglement_lib."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._inputs import _scored_codes, _split
from ._binned import _binned_codes, _binned_mi


def modularity(codes, factor_classes, factors=None, n_bins: int = 20, n_points: int | None = None,
               factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """Modularity of Ridgeway & Mozer (2018, "Learning deep disentangled embeddings with the F-statistic
    loss", NeurIPS, Sec. 3): with m_jk the histogram MI (nats) of latent j (``n_bins`` equal-width bins)
    and factor k, theta_j = max_k m_jk and delta_j = sum_{k != argmax} m_jk^2 / (theta_j^2 (K - 1));
    modularity_j = 1 - delta_j (0 for a latent with no information, as in disentanglement_lib); the score
    is the mean over all latents.  1 when every latent carries at most one factor; a latent carrying two
    factors equally scores 1 - 1/(K - 1).  Needs at least two factors."""
    c, v, ks = _scored_codes(codes, factor_classes, n_points, seed, factors, factor_names)
    if len(ks) < 2:
        raise ValueError("modularity needs at least two factors")
    mi = _binned_mi(_binned_codes(c, n_bins), v[:, ks])                                       # (D, K)
    sq = mi ** 2
    top = sq.max(1)
    delta = np.divide(sq.sum(1) - top, top * (len(ks) - 1), out=np.zeros_like(top), where=top > 0)
    per = np.where(top > 0, 1.0 - delta, 0.0)
    return {"modularity": float(per.mean()), "per_latent": per, "mutual_info": mi, "factors": ks}


def explicitness(codes, factor_classes, factors=None, train_fraction: float = 0.8, n_points: int | None = None,
                 factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """Explicitness of Ridgeway & Mozer (2018, Sec. 3) as in disentanglement_lib: codes standardised on
    the training rows, for each factor scikit-learn's ``LogisticRegression()`` (default settings) predicts
    the class from all latents; explicitness_k = the macro-averaged one-vs-rest ROC AUC of its class
    probabilities (classes absent from an evaluation set are skipped); the score is the mean over factors,
    on held-out rows (``explicitness``) and on the training rows (``explicitness_train``).  1 for codes
    from which every factor is linearly decodable, 0.5 for codes that carry nothing."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    c, v, ks = _scored_codes(codes, factor_classes, n_points, seed, factors, factor_names)
    tr, te = _split(len(c), train_fraction, seed)
    mean, sd = c[tr].mean(0), c[tr].std(0)
    sd[sd == 0] = 1.0
    x_tr, x_te = (c[tr] - mean) / sd, (c[te] - mean) / sd

    def auc(clf, x, y):
        p = clf.predict_proba(x)
        scores = [roc_auc_score(y == cls, p[:, i]) for i, cls in enumerate(clf.classes_)
                  if 0 < np.sum(y == cls) < len(y)]
        return float(np.mean(scores)) if scores else float("nan")

    e_tr, e_te = np.zeros(len(ks)), np.zeros(len(ks))
    for i, k in enumerate(ks):
        if np.unique(v[tr, k]).size < 2:
            raise ValueError(f"factor {k} has a single class among the training rows")
        clf = LogisticRegression().fit(x_tr, v[tr, k])
        e_tr[i], e_te[i] = auc(clf, x_tr, v[tr, k]), auc(clf, x_te, v[te, k])
    return {"explicitness": float(np.nanmean(e_te)), "explicitness_train": float(np.nanmean(e_tr)),
            "per_factor": e_te, "per_factor_train": e_tr, "factors": ks}

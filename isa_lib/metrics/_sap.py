"""The SAP score of Kumar et al. (2018, "Variational inference of disentangled latent concepts from
unlabeled observations"), with disentanglement_lib's classifier as an option."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._inputs import _scored_codes, _split


CLASSIFIERS = ("nearest_mean", "linear_svc")


def _nearest_mean_accuracy(x_tr, y_tr, x_te, y_te) -> float:
    """Held-out accuracy of the 1-D nearest class-mean rule (closed form; this library's original SAP
    classifier)."""
    classes = np.unique(y_tr)
    means = np.array([x_tr[y_tr == c].mean() for c in classes])
    pred = classes[np.argmin(np.abs(x_te[:, None] - means[None, :]), axis=1)]
    return float(np.mean(pred == y_te))


def _linear_svc_accuracy(x_tr, y_tr, x_te, y_te) -> float:
    """Held-out accuracy of scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")`` on one latent:
    the classifier of disentanglement_lib's SAP for discrete factors (Locatello et al. 2019), one-vs-rest,
    so on a single input the middle classes of an ordinal factor are rarely predicted (a perfect code of
    an 8-valued factor scores about 0.4, not 1)."""
    from sklearn.svm import LinearSVC
    clf = LinearSVC(C=0.01, class_weight="balanced").fit(x_tr[:, None], y_tr)
    return float(np.mean(clf.predict(x_te[:, None]) == y_te))


def sap(codes, factor_classes, factors=None, mode: str = "regression", classifier: str = "nearest_mean",
        train_fraction: float = 0.8, n_points: int | None = None, factor_names: Sequence[str] | None = None,
        seed: int = 0) -> dict:
    """SAP score of Kumar et al. (2018): a (D, F) score matrix of single-latent predictors, then the
    mean over factors of the gap between the two best latents.

    mode "regression": score = R^2 of a 1-D linear regression (squared correlation) of the class index on
    one latent, on all rows (disentanglement_lib's continuous-factor SAP, there on its training rows).
    mode "classification": accuracy on a held-out split of a classifier of the class from one latent -
    chance level is 1/|V_k|, so the gap of a perfect code is below 1.  ``classifier``:
    "nearest_mean" (default, kept so recorded numbers do not move) a 1-D nearest class-mean rule, closed
    form, which a perfect code classifies exactly; "linear_svc" disentanglement_lib's and disent's
    ``LinearSVC(C=0.01, class_weight="balanced")`` (Locatello et al. 2019), whose numbers it reproduces
    (tests/test_conformance.py) but which under-scores ordinal factors with many values.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    c, v, ks = _scored_codes(codes, factor_classes, n_points, seed, factors, factor_names)
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
        tr, te = _split(len(c), train_fraction, seed)
        rule = _nearest_mean_accuracy if classifier == "nearest_mean" else _linear_svc_accuracy
        for i, k in enumerate(ks):
            for j in range(d):
                score[j, i] = rule(c[tr, j], v[tr, k], c[te, j], v[te, k])
    else:
        raise ValueError(f"mode must be 'regression' or 'classification', got {mode!r}")
    srt = np.sort(score, axis=0)[::-1]
    gaps = srt[0] - srt[1]
    return {"sap": float(gaps.mean()), "per_factor": gaps, "score_matrix": score, "factors": ks,
            "mode": mode, "classifier": classifier if mode == "classification" else None}

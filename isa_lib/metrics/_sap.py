"""The SAP score of Kumar et al. (2018, "Variational inference of disentangled latent concepts from
unlabeled observations"), by default with disentanglement_lib's classifier for discrete factors (Locatello et
al. 2019); this library's earlier rules (squared correlation, nearest class mean) by name."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._inputs import _scored_codes, _split


CLASSIFIERS = ("nearest_mean", "linear_svc")


def _nearest_mean_accuracy(x_tr, y_tr, x_te, y_te) -> float:
    """Held-out accuracy of the 1-D nearest class-mean rule (closed form; this library's original SAP
    classifier, ``classifier="nearest_mean"``; Kumar et al. 2018 leave the classifier open)."""
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


def sap(codes, factor_classes, factors=None, mode: str = "classification", classifier: str = "linear_svc",
        train_fraction: float = 0.8, n_points: int | None = None, factor_names: Sequence[str] | None = None,
        seed: int = 0) -> dict:
    """SAP ("separated attribute predictability") score of Kumar et al. (2018): a (D, F) score matrix of
    single-latent predictors, then the mean over factors of the gap between the two best latents (a latent
    that predicts one factor alone scores high; two latents that predict it equally well score 0).

    Defaults are disentanglement_lib's SAP for discrete factors (Locatello et al. 2019; disent's
    ``metric_sap(continuous_factors=False)``, whose numbers it reproduces: tests/test_conformance.py):
    mode "classification" with classifier "linear_svc", i.e. S_jk = held-out accuracy, on a seeded
    ``train_fraction`` split, of scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")`` predicting
    the class of factor k from latent j alone.  Chance is 1/|V_k|, so the gap of a perfect code is below
    1; and one-vs-rest linear rules on a single input rarely predict the middle classes of an ordinal
    factor, so even the perfect latent of a factor with many values is far from accuracy 1 (measured: 0.36
    to 0.50 for 6 to 8 values, tests/test_metrics_dlib.py).

    Other modes, by name (this library's earlier rules, which committed numbers were computed with):
    ``classifier="nearest_mean"`` (with mode "classification") a 1-D nearest class-mean rule, closed form,
    which classifies a perfect code exactly; ``mode="regression"`` S_jk = R^2 of a 1-D linear regression
    (squared correlation) of the class index on latent j, on all rows (disentanglement_lib's
    continuous-factor SAP, there on its training rows; ``classifier`` is then ignored).
    Returns {"sap", "per_factor" (the gaps), "score_matrix" (D, F), "factors", "mode", "classifier"}.
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

"""DCI (disentanglement, completeness, informativeness) of Eastwood & Williams (2018): by default
disentanglement_lib's gradient-boosted-tree importances (Locatello et al. 2019), lasso or histogram-tree
importances by name (scikit-learn)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._checks import _positive_float
from ._inputs import _scored_codes, _split

IMPORTANCES = ("lasso", "gbt", "hist_gbt")


def _lasso(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """min_b 1/(2n) |y - Xb|^2 + alpha |b|_1 (Tibshirani 1996) by scikit-learn's coordinate descent, no
    intercept (x and y are centred).  Tolerance tight enough that the coefficients match an exact solver's
    to ~1e-10 (the hand-written coordinate descent this replaced: tests/test_metrics_dlib.py)."""
    from sklearn.linear_model import Lasso
    return Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100000).fit(x, y).coef_.copy()


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Shannon entropy of each row of p (rows sum to 1 or are zero) in base ``base``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    return h / math.log(base)


def dci_scores(importance: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Disentanglement and completeness of a (D latents, K factors) importance matrix R >= 0
    (Eastwood & Williams 2018, Sec. 3): D_j = 1 - H_K(R_j. / sum_k R_jk), C_k = 1 - H_D(R_.k / sum_j R_jk);
    disentanglement = sum_j rho_j D_j with rho_j = sum_k R_jk / sum R, completeness likewise over factors.
    A latent (factor) without importance has weight 0.  Returns (D, C, D_j, C_k)."""
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2 or (r < 0).any() or not np.isfinite(r).all():
        raise ValueError(f"importance must be a finite non-negative 2-D (D, K) array, got shape {r.shape}")
    d, f = r.shape
    total = r.sum()
    row, col = r.sum(1), r.sum(0)
    p_rows = np.divide(r, row[:, None], out=np.zeros_like(r), where=row[:, None] > 0)
    p_cols = np.divide(r, col[None, :], out=np.zeros_like(r), where=col[None, :] > 0)
    d_j = np.where(row > 0, 1.0 - _entropy_rows(p_rows, f), 0.0) if f > 1 else (row > 0).astype(float)
    c_k = np.where(col > 0, 1.0 - _entropy_rows(p_cols.T, d), 0.0) if d > 1 else (col > 0).astype(float)
    if total <= 0:
        return 0.0, 0.0, d_j, c_k
    return float(np.sum(row / total * d_j)), float(np.sum(col / total * c_k)), d_j, c_k


def dci(codes, factor_classes, factors=None, importance: str = "gbt", alpha: float = 0.02,
        train_fraction: float = 0.8, n_points: int | None = None, factor_names: Sequence[str] | None = None,
        seed: int = 0) -> dict:
    """DCI of Eastwood & Williams (2018, "A framework for the quantitative evaluation of disentangled
    representations") from codes (N, D) and integer factor classes (N, K), on a seeded train/test split.

    ``importance="gbt"`` (the default: disentanglement_lib's definition, Locatello et al. 2019, and
    disent's, whose numbers it reproduces: tests/test_conformance.py): for each factor scikit-learn's
    ``GradientBoostingClassifier()`` with its default settings (random_state=seed) is fitted on the raw
    training codes; R_jk = its impurity-based feature importance (each column sums to 1 unless no split
    was made); informativeness = mean test accuracy (higher is better; chance is about 1/|V_k|).  Slow:
    seconds per factor on thousands of rows (measured, one thread of a busy 2-core machine: 4.7 s for a
    6-class factor on 1,600 training rows of 10 latents, 23 s on 8,000), so pass ``n_points``.

    ``importance="lasso"`` (this library's earlier default, which committed numbers were computed with;
    Eastwood & Williams' linear variant): for each factor a lasso (scikit-learn's ``Lasso``, strength
    ``alpha``, on codes and class index standardised on the training rows) predicts the class index;
    R_jk = |coefficient|.  informativeness = mean test NRMSE (an error: lower is better, Eastwood &
    Williams' definition); a linear regressor sees only monotone relations (a cyclic orientation code
    scores low).  ``alpha`` is used by this importance only.

    ``importance="hist_gbt"`` (a faster variant of this library, not disentanglement_lib's definition):
    scikit-learn's ``HistGradientBoostingClassifier(random_state=seed)``, which has no impurity importances,
    so R_jk = max(0, the mean drop of test accuracy when latent j is permuted), scikit-learn's
    ``permutation_importance`` with 5 repeats on the test rows; informativeness = mean test accuracy.
    Measured, one thread: 1.7 s fit + 1.9 s importances on 1,600 training rows, 2.4 s + 5.3 s on 8,000 (3x
    faster than "gbt" there).  Its numbers differ from "gbt"'s: permutation importance counts what the
    model needs on held-out rows, impurity importance what its splits used.  It uses OpenMP threads: on a
    machine whose cores are busy, set OMP_NUM_THREADS (on two busy cores its default two threads took
    20-40x longer than one).

    Disentanglement and completeness from R by :func:`dci_scores`.  ``out["informativeness_measure"]``
    names which informativeness was returned ("nrmse" or "accuracy").
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    if importance == "lasso":
        alpha = _positive_float("alpha", alpha)
    c, v, ks = _scored_codes(codes, factor_classes, n_points, seed, factors, factor_names)
    tr, te = _split(len(c), train_fraction, seed)
    d, f = c.shape[1], len(ks)
    r = np.zeros((d, f))
    err_tr, err_te = np.zeros(f), np.zeros(f)
    if importance == "lasso":
        vf = v.astype(np.float64)
        mean, sd = c[tr].mean(0), c[tr].std(0)
        sd[sd == 0] = 1.0
        x_tr, x_te = (c[tr] - mean) / sd, (c[te] - mean) / sd
        for i, k in enumerate(ks):
            y = vf[:, k]
            ym, ys = y[tr].mean(), y[tr].std()
            ys = ys if ys > 0 else 1.0
            y_tr, y_te = (y[tr] - ym) / ys, (y[te] - ym) / ys
            b = _lasso(x_tr, y_tr, alpha)
            r[:, i] = np.abs(b)
            err_tr[i] = np.sqrt(np.mean((x_tr @ b - y_tr) ** 2)) / max(y_tr.std(), 1e-12)
            err_te[i] = np.sqrt(np.mean((x_te @ b - y_te) ** 2)) / max(y_te.std(), 1e-12)
        measure = "nrmse"
    else:
        from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
        from sklearn.inspection import permutation_importance
        for i, k in enumerate(ks):
            if importance == "gbt":
                model = GradientBoostingClassifier(random_state=seed).fit(c[tr], v[tr, k])
                r[:, i] = np.abs(model.feature_importances_)
            else:
                model = HistGradientBoostingClassifier(random_state=seed).fit(c[tr], v[tr, k])
                perm = permutation_importance(model, c[te], v[te, k], n_repeats=5, random_state=seed)
                r[:, i] = np.maximum(perm.importances_mean, 0.0)
            err_tr[i] = np.mean(model.predict(c[tr]) == v[tr, k])
            err_te[i] = np.mean(model.predict(c[te]) == v[te, k])
        measure = "accuracy"
    dis, comp, d_j, c_k = dci_scores(r)
    return {"disentanglement": dis, "completeness": comp, "informativeness": float(err_te.mean()),
            "informativeness_train": float(err_tr.mean()), "informativeness_measure": measure,
            "importance": r, "disentanglement_per_latent": d_j, "completeness_per_factor": c_k,
            "factors": ks, "method": importance}

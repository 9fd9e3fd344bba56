"""DCI (disentanglement, completeness, informativeness) of Eastwood & Williams (2018), lasso variant."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._inputs import _as_classes, _as_codes, _factors_from_classes, _split, _subsample


def _lasso(gram: np.ndarray, xty: np.ndarray, alpha: float, n_iter: int = 1000, tol: float = 1e-8) -> np.ndarray:
    """min_b 1/2 b'Gb - b'c + alpha |b|_1 by coordinate descent (G = X'X/n, c = X'y/n)."""
    b = np.zeros(gram.shape[0])
    for _ in range(n_iter):
        change = 0.0
        for j in range(len(b)):
            if gram[j, j] <= 0:
                continue
            r = xty[j] - gram[j] @ b + gram[j, j] * b[j]
            new = np.sign(r) * max(abs(r) - alpha, 0.0) / gram[j, j]
            change = max(change, abs(new - b[j]))
            b[j] = new
        if change < tol:
            break
    return b


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    return h / math.log(base)


def dci(codes, factor_classes, factors=None, alpha: float = 0.02, train_fraction: float = 0.8,
        n_points: int | None = None, factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """DCI of Eastwood & Williams (2018) with lasso regressors (their linear variant).

    For each factor, a lasso (coordinate descent, here; strength ``alpha`` on standardised codes and
    targets) predicts the standardised class index from the codes; the importance R_jk is |coefficient|.
    disentanglement = sum_j rho_j (1 - H_K(P_j.)), completeness = sum_k rho_k (1 - H_D(P_.k)), with
    P normalised rows/columns of R, entropies in base K (factors) / D (latents), weights rho the share of
    total importance; informativeness = mean test NRMSE (lower is better; Eastwood & Williams' error).
    Limitation: a linear regressor sees only monotone relations (a cyclic orientation code scores low);
    disentanglement_lib uses gradient-boosted trees (scikit-learn), not used here.
    """
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    c, v = c[rows], v[rows].astype(np.float64)
    ks = _factors_from_classes(factors, v.astype(np.int64), factor_names)
    tr, te = _split(len(rows), train_fraction, seed)
    mean, sd = c[tr].mean(0), c[tr].std(0)
    sd[sd == 0] = 1.0
    x_tr, x_te = (c[tr] - mean) / sd, (c[te] - mean) / sd
    gram = x_tr.T @ x_tr / len(tr)
    d, f = c.shape[1], len(ks)
    r = np.zeros((d, f))
    err_tr, err_te = np.zeros(f), np.zeros(f)
    for i, k in enumerate(ks):
        y = v[:, k]
        ym, ys = y[tr].mean(), y[tr].std()
        ys = ys if ys > 0 else 1.0
        y_tr, y_te = (y[tr] - ym) / ys, (y[te] - ym) / ys
        b = _lasso(gram, x_tr.T @ y_tr / len(tr), alpha)
        r[:, i] = np.abs(b)
        err_tr[i] = np.sqrt(np.mean((x_tr @ b - y_tr) ** 2)) / max(y_tr.std(), 1e-12)
        err_te[i] = np.sqrt(np.mean((x_te @ b - y_te) ** 2)) / max(y_te.std(), 1e-12)
    total = r.sum()
    if total <= 0:
        dis = comp = 0.0
    else:
        row, col = r.sum(1), r.sum(0)
        p_rows = np.divide(r, row[:, None], out=np.zeros_like(r), where=row[:, None] > 0)
        p_cols = np.divide(r, col[None, :], out=np.zeros_like(r), where=col[None, :] > 0)
        d_j = 1.0 - _entropy_rows(p_rows, f) if f > 1 else np.ones(d)
        c_k = 1.0 - _entropy_rows(p_cols.T, d) if d > 1 else np.ones(f)
        dis = float(np.sum(row / total * np.where(row > 0, d_j, 0.0)))
        comp = float(np.sum(col / total * np.where(col > 0, c_k, 0.0)))
    return {"disentanglement": dis, "completeness": comp, "informativeness": float(err_te.mean()),
            "informativeness_train": float(err_tr.mean()), "importance": r, "factors": ks}

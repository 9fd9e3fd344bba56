"""The BetaVAE disentanglement score (Higgins et al. 2017), as defined in disentanglement_lib."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._checks import _int_at_least
from ._inputs import _as_classes, _as_codes, _factors_from_classes


def betavae_score(codes, factor_classes, factors=None, batch_size: int = 64, n_train: int = 10000,
                  n_eval: int = 5000, factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """BetaVAE score of Higgins et al. (2017, "beta-VAE: learning basic visual concepts with a constrained
    variational framework", ICLR, Sec. 3) with disentanglement_lib's settings (Locatello et al. 2019):
    one example is a factor k drawn uniformly and ``batch_size`` pairs of rows that share the class of
    factor k (the first row uniform over all rows, the second uniform over the rows with the same v_k: on
    a full factor grid, the other factors independent and uniform); its feature is the mean over the
    pairs of |z_a - z_b| per latent, its label k.  scikit-learn's ``LogisticRegression(random_state=seed)``
    (default settings otherwise, as disentanglement_lib) is fitted on ``n_train`` examples; the score is
    its accuracy on ``n_eval`` fresh ones (train accuracy also returned).  Chance is 1/K.  Known weakness
    (Kim & Mnih 2018): a code that captures all but one factor still scores 1, since the classifier can
    label the missing factor by elimination."""
    from sklearn.linear_model import LogisticRegression

    batch_size = _int_at_least("batch_size", batch_size, 1)
    n_train = _int_at_least("n_train", n_train, 2)
    n_eval = _int_at_least("n_eval", n_eval, 1)
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    ks = _factors_from_classes(factors, v, factor_names)
    if len(ks) < 2:
        raise ValueError(f"the beta-VAE score classifies examples by factor: it needs at least two factors, "
                         f"got {ks}")
    n = c.shape[0]
    rng = np.random.default_rng(seed)
    # rows sorted by each factor's class: the partner of row a is uniform within a's class block
    order = {k: np.argsort(v[:, k], kind="stable") for k in ks}
    start = {k: np.searchsorted(v[order[k], k], v[:, k], side="left") for k in ks}
    count = {k: np.searchsorted(v[order[k], k], v[:, k], side="right") - start[k] for k in ks}

    def examples(m):
        fac = rng.integers(0, len(ks), m)
        a = rng.integers(0, n, (m, batch_size))
        u = rng.random((m, batch_size))
        feats = np.empty((m, c.shape[1]))
        for i, k in enumerate(ks):
            at = np.flatnonzero(fac == i)
            aa = a[at]
            b = order[k][start[k][aa] + np.minimum((u[at] * count[k][aa]).astype(np.int64), count[k][aa] - 1)]
            feats[at] = np.abs(c[aa] - c[b]).mean(1)
        return feats, fac

    x_tr, y_tr = examples(int(n_train))
    x_ev, y_ev = examples(int(n_eval))
    if np.unique(y_tr).size < 2:
        raise ValueError("the training examples cover a single factor; raise n_train")
    clf = LogisticRegression(random_state=seed).fit(x_tr, y_tr)
    return {"train_accuracy": float(clf.score(x_tr, y_tr)), "eval_accuracy": float(clf.score(x_ev, y_ev)),
            "factors": ks}

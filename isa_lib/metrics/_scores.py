"""Scoring a code with several of the literature's metrics by name (for :func:`evaluate_model`'s
``scores=[...]`` and for users): each entry calls one public function of :mod:`isa_lib.metrics` and keeps
its scalar results."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._betavae import betavae_score
from ._dci import dci
from ._factorvae import factorvae_score
from ._inputs import _as_classes, _as_codes, _subsample
from ._mig_histogram import mig_histogram
from ._mig_sup import mig_sup
from ._modularity import explicitness, modularity
from ._sap import sap
from ._unsupervised import unsupervised_scores

# name -> (function, its fixed keyword arguments, whether it takes factor classes).  Each name fixes its mode
# explicitly, so a name's numbers never follow a change of a function's defaults: "dci" and "sap" are this
# library's earlier rules (lasso importances, Eastwood & Williams 2018; squared correlation, Kumar et al.
# 2018), "dci_gbt" and "sap_linear_svc" disentanglement_lib's (Locatello et al. 2019), which are the defaults
# of :func:`dci` and :func:`sap` called directly.
SCORES = {
    "dci": (dci, {"importance": "lasso"}, True),
    "dci_gbt": (dci, {"importance": "gbt"}, True),
    "dci_hist_gbt": (dci, {"importance": "hist_gbt"}, True),
    "sap": (sap, {"mode": "regression"}, True),
    "sap_linear_svc": (sap, {"mode": "classification", "classifier": "linear_svc"}, True),
    "mig_histogram": (mig_histogram, {}, True),
    "mig_sup": (mig_sup, {}, True),
    "modularity": (modularity, {}, True),
    "explicitness": (explicitness, {}, True),
    "factorvae": (factorvae_score, {}, True),
    "betavae": (betavae_score, {}, True),
    "unsupervised": (unsupervised_scores, {}, False),
}
_VOTES = ("factorvae", "betavae")     # sample their own examples from all rows


def _check_score_names(scores) -> None:
    """Refuse anything but a list of names from :data:`SCORES` (a bare string is not a list)."""
    if isinstance(scores, str) or not all(isinstance(s, str) for s in scores):
        raise ValueError(f"scores must be a list of names from {sorted(SCORES)}, got {scores!r}")
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise ValueError(f"unknown scores {unknown}; known: {sorted(SCORES)}")


def _scalars(res) -> dict:
    items = res.items() if isinstance(res, dict) else ((k, getattr(res, k)) for k in ("mig",))
    return {k: float(v) for k, v in items if isinstance(v, (int, float, np.floating, np.integer))
            and not isinstance(v, bool)}


def score_codes(codes, factor_classes, scores: Sequence[str], factors=None,
                factor_names: Sequence[str] | None = None, n_points: int | None = 10000, seed: int = 0) -> dict:
    """Scalar results of the named metrics (:data:`SCORES`) on codes (N, D) and factor classes (N, K).

    The row-based metrics use one seeded random subset of ``n_points`` rows (disentanglement_lib scores
    10,000 training points; gradient-boosted trees on many more are slow); the vote-based ones (FactorVAE,
    BetaVAE) draw their examples from all rows.  ``factors`` as in each metric (default: every factor
    with more than one value).  Returns {name: {result: number}}."""
    _check_score_names(scores)
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    rows = _subsample(c.shape[0], n_points, seed)
    out = {}
    for name in scores:
        fn, kw, supervised = SCORES[name]
        cc, vv = (c, v) if name in _VOTES else (c[rows], v[rows])
        if supervised:
            res = fn(cc, vv, factors=factors, factor_names=factor_names, seed=seed, **kw)
        else:
            res = fn(cc, seed=seed, **kw)
        out[name] = _scalars(res)
    return out

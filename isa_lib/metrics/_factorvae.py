"""The FactorVAE disentanglement score (Kim & Mnih 2018)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._checks import _int_at_least, _nonnegative_float
from ._inputs import _as_classes, _as_codes, _factors_from_classes


def factorvae_score(codes, factor_classes, factors=None, batch_size: int = 64, n_train: int = 10000,
                    n_eval: int = 5000, prune_threshold: float = 0.05,
                    factor_names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """FactorVAE disentanglement score (Kim & Mnih 2018) from codes and factor classes.

    Codes are divided by their empirical standard deviation over all rows; latents whose variance is
    below ``prune_threshold`` (collapsed; absolute, so meant for VAE-scale codes) are left out.  A vote:
    pick a factor k and a value v uniformly, draw ``batch_size`` rows with v_k = v, and take the latent of
    least normalised variance.  A majority-vote classifier latent -> factor is fitted on ``n_train``
    votes; the score is its accuracy on ``n_eval`` fresh votes (also returned: train accuracy).
    """
    # a batch of one row has variance 0 in every latent: its vote would always be latent 0
    batch_size = _int_at_least("batch_size", batch_size, 2)
    n_train = _int_at_least("n_train", n_train, 1)
    n_eval = _int_at_least("n_eval", n_eval, 1)
    prune_threshold = _nonnegative_float("prune_threshold", prune_threshold)
    c = _as_codes(codes)
    v = _as_classes(factor_classes, c.shape[0])
    ks = _factors_from_classes(factors, v, factor_names)
    var = c.var(0)
    active = np.flatnonzero(var >= prune_threshold) if prune_threshold > 0 else np.flatnonzero(var > 0)
    if active.size == 0:
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "n_active": 0,
                "vote_table": np.zeros((0, len(ks)), dtype=np.int64), "factors": ks}
    cn = c[:, active] / np.sqrt(var[active])
    rng = np.random.default_rng(seed)
    members = {k: {val: np.flatnonzero(v[:, k] == val) for val in np.unique(v[:, k])} for k in ks}

    def votes(n):
        fac = rng.integers(0, len(ks), n)
        out = np.empty(n, dtype=np.int64)
        for i, k in enumerate(ks):
            at = np.flatnonzero(fac == i)
            vals = np.array(sorted(members[k]))
            pick = vals[rng.integers(0, len(vals), at.size)]
            for val in np.unique(pick):
                who = at[pick == val]
                idx = rng.choice(members[k][val], size=(who.size, batch_size), replace=True)
                out[who] = np.argmin(cn[idx].var(axis=1), axis=1)
        return out, fac

    d_tr, f_tr = votes(n_train)
    d_ev, f_ev = votes(n_eval)
    table = np.zeros((active.size, len(ks)), dtype=np.int64)
    np.add.at(table, (d_tr, f_tr), 1)
    rule = table.argmax(1)
    return {"train_accuracy": float(table.max(1).sum() / len(d_tr)),
            "eval_accuracy": float(np.mean(rule[d_ev] == f_ev)), "n_active": int(active.size),
            "vote_table": table, "factors": ks}

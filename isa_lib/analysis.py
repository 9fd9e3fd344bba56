"""Summaries of a sweep's result table (Sec. 4, Figs. 5-7, App. A.2 and A.5).

Every function takes the table of :meth:`isa_lib.experiments.Ledger.to_dataframe` (or its CSV export):
one row per run with at least ``model``, ``beta``, ``seed``, ``status``, ``mig`` and ``reconstruction``
(E_q[log p(x|z)] in nats per image), and ``exponents`` (JSON text) for learned-exponent models.
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

#: The paper's names for the models of the comparison (Sec. 4).
MODEL_LABELS = {"beta_vae": "beta-VAE", "beta_tcvae": "beta-TCVAE", "isa_vae": "ISA-VAE",
                "isa_tcvae": "ISA-beta-TCVAE", "isa_vae_learned": "ISA-VAE (learned p)", "factor_vae": "FactorVAE"}


def load_results(path_or_frame) -> pd.DataFrame:
    """The finished runs of a result table (a CSV path or a DataFrame); failed and pending runs are dropped."""
    df = path_or_frame if isinstance(path_or_frame, pd.DataFrame) else pd.read_csv(path_or_frame)
    missing = sorted({"model", "beta", "seed", "mig", "reconstruction"} - set(df.columns))
    if missing:
        raise ValueError(f"result table lacks column(s) {missing}")
    if "status" in df.columns:
        df = df[df["status"] == "done"]
    return df.reset_index(drop=True)


def outcomes_frame(configs: Sequence, outcomes: Sequence[Mapping]) -> pd.DataFrame:
    """One row per run of :func:`isa_lib.experiments.run_group` (in the ledger export's column names:
    model, beta, seed, status, mig, mig_per_factor.*, reconstruction, error), for :func:`summarise`."""
    if len(configs) != len(outcomes):
        raise ValueError(f"{len(configs)} configurations but {len(outcomes)} outcomes")
    rows = []
    for c, o in zip(configs, outcomes):
        row = {"model": c.model, "beta": c.beta, "seed": c.seed, "status": o["status"]}
        m = o.get("metrics") or {}
        row["mig"] = m.get("mig", np.nan)
        row.update({f"mig_per_factor.{k}": v for k, v in (m.get("mig_per_factor") or {}).items()})
        row["reconstruction"] = m.get("reconstruction", np.nan)
        row["error"] = (o.get("error") or "").split("\n")[0] or None
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, by: Sequence[str] = ("model", "beta"),
              metrics: Sequence[str] = ("mig", "reconstruction")) -> pd.DataFrame:
    """Mean, standard error (sd / sqrt(n)), median, quartiles and maximum of each metric per group
    (the error bars of Figs. 5b-c and 6 are standard errors)."""
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n"] = len(g)
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            row[f"{m}_mean"] = v.mean()
            row[f"{m}_sem"] = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
            row[f"{m}_median"] = np.median(v)
            row[f"{m}_q25"], row[f"{m}_q75"] = np.quantile(v, [0.25, 0.75])
            row[f"{m}_max"] = v.max()
        rows.append(row)
    return pd.DataFrame(rows)


def mig_by_factor(df: pd.DataFrame, metrics: Sequence[str] = ("mig", "reconstruction")) -> pd.DataFrame:
    """Per model and beta: mean and standard error of ``metrics``, then the mean MIG of each factor (columns
    ``mig_<factor>``, from the table's ``mig_per_factor.<factor>`` columns), for the tables of chapter 06."""
    factors = [c for c in df.columns if c.startswith("mig_per_factor.")]
    s = summarise(df, metrics=[*metrics, *factors])
    keep = ["model", "beta", "n"] + [f"{m}_{k}" for m in metrics for k in ("mean", "sem")] + [f"{f}_mean" for f in factors]
    return s[keep].rename(columns={f"{f}_mean": "mig_" + f.split(".", 1)[1] for f in factors})


def representative_runs(df: pd.DataFrame, by: Sequence[str] = ("model", "beta")) -> pd.DataFrame:
    """One representative run per group, as in App. A.5: among the runs in the upper 50 % of MIG, the run
    closest in Mahalanobis distance (means and variances of MIG and reconstruction over those runs, taken
    as independent) to their mean. MIG is bimodal (a run disentangles or it does not), so the upper half
    describes what a model reaches when it works."""
    picks = []
    for _, g in df.groupby(list(by), sort=True):
        top = g[g["mig"] >= g["mig"].median()]
        x = top[["mig", "reconstruction"]].to_numpy(dtype=float)
        var = x.var(0, ddof=1) if len(x) > 1 else np.ones(2)
        var = np.where(var > 0, var, 1.0)
        d2 = (((x - x.mean(0)) ** 2) / var).sum(1)
        picks.append(top.iloc[int(np.argmin(d2))])
    return pd.DataFrame(picks).reset_index(drop=True)


def learned_exponents(df: pd.DataFrame, model: str = "isa_vae_learned") -> np.ndarray:
    """The learned subspace exponents of every run of ``model``, each run's sorted p_1 <= p_2 <= ... (Fig. 7,
    App. A.2): shape (runs, subspaces)."""
    rows = df[df["model"] == model]
    if rows.empty:
        return np.zeros((0, 0))
    col = "exponents_sorted" if "exponents_sorted" in rows.columns else "exponents"
    values = [json.loads(v) if isinstance(v, str) else list(v) for v in rows[col]]
    return np.sort(np.asarray(values, dtype=float), axis=1)


def _seed_range(df: pd.DataFrame) -> str:
    n = df.groupby(["model", "beta"]).size()
    return f"{n.min()} seeds per setting" if n.min() == n.max() else f"{n.min()}-{n.max()} seeds per setting"


def describe_study(df: pd.DataFrame) -> str:
    """One line saying what a result table holds, for figure captions: models, betas, seeds, data, budget."""
    parts = [f"{df['model'].nunique()} models", f"beta in {sorted(df['beta'].unique().tolist())}",
             _seed_range(df)]
    for col, fmt in (("image_size", "{}px"), ("epochs", "{} epochs"), ("hidden", "MLP {}"), ("n_images", "{} images")):
        if col in df.columns and df[col].nunique() == 1 and pd.notna(df[col].iloc[0]):
            v = df[col].iloc[0]
            parts.append(fmt.format(int(v) if float(v).is_integer() else v))
    if "dataset" in df.columns and df["dataset"].nunique() == 1:
        # rows written before the data_version field were made with version 1 of the generator
        v = df["data_version"].dropna().unique() if "data_version" in df.columns else [1]
        parts.append(f"{df['dataset'].iloc[0]} generator v{', v'.join(str(int(x)) for x in sorted(v)) or 1}")
    return ", ".join(parts)


_INT_FIELDS = {"seed", "latent_dim", "hidden", "image_size", "batch_size", "mig_samples", "disc_hidden"}


def run_config(row: pd.Series):
    """The :class:`isa_lib.experiments.RunConfig` of a result-table row (JSON text and CSV's NaN/float
    types undone), checked against the row's ``config_hash``, so a run can be repeated exactly."""
    from .experiments import RunConfig

    fields = {}
    for name in RunConfig.__dataclass_fields__:
        if name not in row.index:
            continue
        v = row[name]
        if isinstance(v, str) and v[:1] in "[{":
            v = json.loads(v)
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            v = None
        elif isinstance(v, (float, np.floating)) and name in _INT_FIELDS:
            v = int(v)
        elif isinstance(v, np.generic):
            v = v.item()
        fields[name] = tuple(v) if name == "layout" and v is not None else v
    config = RunConfig.from_dict(fields)
    if "config_hash" in row.index and config.config_hash() != row["config_hash"]:
        raise ValueError(f"row {row['config_hash'][:12]} does not rebuild its configuration exactly")
    return config


def compare(df: pd.DataFrame, model: str, baseline: str, metric: str = "mig") -> pd.DataFrame:
    """Per beta: the difference of the mean ``metric`` of ``model`` and ``baseline``, its standard error
    (independent seeds: sqrt(sem_a^2 + sem_b^2)) and z = difference / standard error. The paper's claims
    (Sec. 4.1-4.2) are of this form; |z| > 2 is a difference that seed noise rarely produces."""
    s = summarise(df, metrics=(metric,))
    a = s[s["model"] == model].set_index("beta")
    b = s[s["model"] == baseline].set_index("beta")
    betas = sorted(set(a.index) & set(b.index))
    if not betas:
        raise ValueError(f"no beta has finished runs of both {model!r} and {baseline!r}")
    diff = a.loc[betas, f"{metric}_mean"] - b.loc[betas, f"{metric}_mean"]
    se = np.sqrt(a.loc[betas, f"{metric}_sem"] ** 2 + b.loc[betas, f"{metric}_sem"] ** 2)
    return pd.DataFrame({"beta": betas, "n_model": a.loc[betas, "n"].to_numpy(), "n_baseline": b.loc[betas, "n"].to_numpy(),
                         "difference": diff.to_numpy(), "se": se.to_numpy(), "z": (diff / se).to_numpy()})


def verdict(z: float, threshold: float = 2.0) -> str:
    """How a z-score reads as evidence for a claim that the first model is higher: 'holds' (z >= 2),
    'reversed' (z <= -2) or 'not shown' (|z| < 2, within seed noise)."""
    if not np.isfinite(z):
        return "not measured"
    return "holds" if z >= threshold else "reversed" if z <= -threshold else "not shown"


def claims(df: pd.DataFrame, pairs: Sequence[tuple[str, str, str]], metric: str = "mig",
           betas: Sequence[float] | None = None) -> pd.DataFrame:
    """The paper's comparative claims (Sec. 4: Fig. 5a, Figs. 5b-c, Table 2) read off a result table: for each
    ``(claim, model, baseline)`` and each beta both have, the :func:`compare` row with its :func:`verdict`
    on "``model`` scores higher than ``baseline`` on ``metric``". Pairs without runs are skipped."""
    rows = []
    for claim, model, baseline in pairs:
        if not {model, baseline} <= set(df["model"]):
            continue
        c = compare(df, model, baseline, metric)
        if betas is not None:
            c = c[np.isin(c["beta"], list(betas))]
        for _, r in c.iterrows():
            rows.append({"claim": claim, "model": model, "baseline": baseline, "metric": metric, **r.to_dict(),
                         "n_model": int(r["n_model"]), "n_baseline": int(r["n_baseline"]),
                         "verdict": verdict(r["z"])})
    return pd.DataFrame(rows)


def exponent_shift(exponents: np.ndarray, p0: float) -> pd.DataFrame:
    """Fig. 7 read as a test: per rank of the sorted learned exponents (p_1 <= p_2 <= ...), the mean over runs,
    its standard error, and z of the mean's distance from the outer exponent p0 (the trivial solution
    p_i = p0 makes the prior factorise, App. A.2). Needs at least two runs."""
    e = np.asarray(exponents, dtype=float)
    if e.ndim != 2 or len(e) < 2:
        raise ValueError(f"need the sorted exponents of at least two runs, got shape {e.shape}")
    mean, sem = e.mean(0), e.std(0, ddof=1) / np.sqrt(len(e))
    z = (mean - p0) / np.where(sem > 0, sem, np.nan)
    return pd.DataFrame({"rank": np.arange(1, e.shape[1] + 1), "n": len(e), "mean": mean, "sem": sem,
                         "minus_p0": mean - p0, "z": z})


def histories(df: pd.DataFrame, columns: Sequence[str] = ("kl", "recon")) -> pd.DataFrame:
    """The logged training curves of a table exported with its histories
    (``Ledger.to_dataframe(history=True)``): one row per (run, logged step) with model, beta, seed, step and
    ``columns`` (e.g. the KL of Eq. 12 in nats, to see that it has levelled off)."""
    if "history" not in df.columns:
        raise ValueError("the table has no 'history' column: export it with Ledger.to_dataframe(history=True)")
    rows = []
    for _, r in df.iterrows():
        hist = json.loads(r["history"]) if isinstance(r["history"], str) else (r["history"] or [])
        for h in hist:
            rows.append({"model": r["model"], "beta": r["beta"], "seed": r["seed"], "step": h["step"],
                         **{c: h.get(c, np.nan) for c in columns}})
    return pd.DataFrame(rows, columns=["model", "beta", "seed", "step", *columns])


def regime(df: pd.DataFrame, factors: Sequence[str] = ("posX", "posY")) -> pd.DataFrame:
    """What a study's models code, per model and beta: the mean final KL (nats, the last logged ``final.kl``),
    the mean MIG, and the part of it that ``factors`` alone explain (MIG is the mean over the K scored
    factors, so those factors contribute sum_k MIG_k / K). When that part is nearly all of the MIG, the
    models code only those factors and a prior cannot help with the others."""
    per = [c for c in df.columns if c.startswith("mig_per_factor.")]
    names = [c.split(".", 1)[1] for c in per]
    missing = sorted(set(factors) - set(names))
    if missing or "final.kl" not in df.columns:
        raise ValueError(f"the table lacks per-factor MIG of {missing} or 'final.kl'")
    d = df.assign(_part=df[[f"mig_per_factor.{f}" for f in factors]].sum(1) / len(per))
    s = summarise(d, metrics=("final.kl", "mig", "_part"))
    out = s[["model", "beta", "n", "final.kl_mean", "mig_mean", "_part_mean"]]
    return out.rename(columns={"final.kl_mean": "kl_final", "_part_mean": "mig_from_" + "_".join(factors)})

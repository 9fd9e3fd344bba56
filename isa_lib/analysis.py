"""Summaries of a sweep's result table (Sec. 4, Figs. 5-7, App. A.2 and A.5).

Every function takes the table of :meth:`isa_lib.experiments.Ledger.to_dataframe` (or its CSV export):
one row per run with at least ``model``, ``beta``, ``seed``, ``status``, ``mig`` and ``reconstruction``
(E_q[log p(x|z)] in nats per image), and ``exponents`` (JSON text) for learned-exponent models.
The tests of the paper's claims (:func:`claims`, :func:`paired_test`, :func:`welch_test`, :func:`holm`,
:func:`dose_response`, :func:`exponent_tests`) hold at the 4-12 seeds of a study: paired by seed, t-based,
Holm-corrected, each with the smallest difference it could detect.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

#: The paper's names for the models of the comparison (Sec. 4).
MODEL_LABELS = {"beta_vae": "beta-VAE", "beta_tcvae": "beta-TCVAE", "isa_vae": "ISA-VAE",
                "isa_tcvae": "ISA-beta-TCVAE", "isa_vae_learned": "ISA-VAE (learned p)", "factor_vae": "FactorVAE",
                "isa_vae_p4": "ISA-VAE (p = 4)"}

#: Table 1's training budget: 20 epochs of all 737,280 dSprites images = 7,200 steps of batch 2048.
PAPER_IMAGES_SEEN = 20 * 737280


def label_arms(df: pd.DataFrame, paper_p: float | None = None) -> pd.DataFrame:
    """The table with each ISA-VAE run whose fixed subspace exponent ``p`` is not the paper's relabelled as
    its own arm, ``isa_vae_p<p>`` (e.g. the prior-strength arm ``isa_vae_p4``), so that :func:`claims` and
    the figures can tell the arms apart by ``model``. The paper's exponent is ``paper_p``, by default that
    of each row's dataset at the paper scale (Sec. 4, Tables 1-2: 2.2 for dSprites, 1.9 for 3D faces)."""
    from .experiments import scale_defaults

    out = df.copy()
    if "p" not in out.columns:
        return out
    if paper_p is None:
        datasets = out["dataset"] if "dataset" in out.columns else pd.Series("dsprites", index=out.index)
        reference = datasets.map(lambda d: scale_defaults("paper", d)["p"]).astype(float)
    else:
        reference = pd.Series(float(paper_p), index=out.index)
    other = (out["model"] == "isa_vae") & out["p"].notna() & ~np.isclose(out["p"].astype(float), reference)
    out.loc[other, "model"] = [f"isa_vae_p{float(v):g}" for v in out.loc[other, "p"]]
    return out


def images_seen(df: pd.DataFrame) -> pd.Series:
    """Training images each run has seen (Table 1 counts 14.7 M): its steps (``train_steps`` for a run
    stopped at a fraction of its budget, else ``steps``) times ``batch_size``."""
    missing = sorted({"steps", "batch_size"} - set(df.columns))
    if missing:
        raise ValueError(f"the table lacks column(s) {missing}")
    steps = df["train_steps"].fillna(df["steps"]) if "train_steps" in df.columns else df["steps"]
    return (steps.astype(float) * df["batch_size"].astype(float)).rename("images_seen")


def budget_share(df: pd.DataFrame) -> pd.Series:
    """Each run's training images as a fraction of the paper's (:data:`PAPER_IMAGES_SEEN`, Table 1)."""
    return (images_seen(df) / PAPER_IMAGES_SEEN).rename("paper_budget_share")


def describe_budget(df: pd.DataFrame) -> str:
    """One line on the training budget of a table's runs against the paper's: images seen, and the share."""
    share, seen = budget_share(df), images_seen(df)
    if share.nunique() == 1:
        s = share.iloc[0]
        return (f"{seen.iloc[0] / 1e6:.2f} M training images per run = {s:.3f} of the paper's "
                f"{PAPER_IMAGES_SEEN / 1e6:.1f} M (1/{1 / s:.0f})" if s < 1 else
                f"{seen.iloc[0] / 1e6:.2f} M training images per run = the paper's budget")
    return (f"{seen.min() / 1e6:.2f}-{seen.max() / 1e6:.2f} M training images per run = "
            f"{share.min():.3f}-{share.max():.3f} of the paper's {PAPER_IMAGES_SEEN / 1e6:.1f} M")


def fraction_label(fraction: float) -> str:
    """A budget fraction as the chapter names it: "1/8", "1/2" (the nearest fraction with a denominator up to
    64, when it is within 1e-9), or "all" for the whole budget (Table 1's 14.7 M images)."""
    f = float(fraction)
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"a budget fraction must be a positive number, got {fraction!r}")
    if np.isclose(f, 1.0, rtol=0, atol=1e-9):
        return "all"
    near = Fraction(f).limit_denominator(64)
    return f"{near.numerator}/{near.denominator}" if abs(float(near) - f) < 1e-9 else f"{f:g}"


def load_results(path_or_frame) -> pd.DataFrame:
    """The finished runs of a result table (a DataFrame, a CSV export, or the sweep's SQLite ledger itself, read
    without writing); failed and pending runs are dropped."""
    if isinstance(path_or_frame, pd.DataFrame):
        df = path_or_frame
    else:
        path = Path(path_or_frame)
        if not path.is_file():
            raise FileNotFoundError(f"no result table at {path}")
        from .experiments.ledger import Ledger, is_sqlite_file

        if is_sqlite_file(path):
            df = Ledger(path, readonly=True).to_dataframe()
        else:
            try:
                df = pd.read_csv(path)
            except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
                raise ValueError(f"{path} is neither a CSV result table nor a sweep ledger: {err}") from err
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
    """The learned subspace exponents of every run of ``model`` (Fig. 7, App. A.2), **unsorted**: shape
    (runs, subspaces), column i is subspace i of the prior's layout (the table's ``exponents`` JSON column,
    never ``exponents_sorted``). Sort a copy only for display (``np.sort(e, axis=1)``); :func:`exponent_tests`
    needs them by subspace identity. Rows without exponents are skipped."""
    rows = df[df["model"] == model]
    if rows.empty or "exponents" not in rows.columns:
        return np.zeros((0, 0))
    values = [json.loads(v) if isinstance(v, str) else list(v) for v in rows["exponents"]
              if isinstance(v, (str, list, tuple, np.ndarray))]
    return np.asarray(values, dtype=float) if values else np.zeros((0, 0))


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


_INT_FIELDS = {"seed", "latent_dim", "hidden", "image_size", "batch_size", "mig_samples", "disc_hidden", "fused"}


def run_config(row: pd.Series, alone: bool = False):
    """The :class:`isa_lib.experiments.RunConfig` of a result-table row (JSON text and CSV's NaN/float
    types undone), checked against the row's ``config_hash``, so a run can be repeated exactly.
    ``alone``: the same run trained alone (``fused=1``), which one process can retrain by itself; a run of
    a fused group (``fused=K``, every study a GPU sweep makes) is repeated exactly only with its whole
    group, and alone its numbers differ by the floating-point order of the fused reductions."""
    import dataclasses

    from .experiments import RunConfig

    fields = {}
    for name in RunConfig.__dataclass_fields__:
        if name not in row.index:
            continue
        v = row[name]
        if isinstance(v, str) and v[:1] in "[{":
            v = json.loads(v)
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            if name == "fused":   # a run trained alone stores no fused field (its hash predates it): 1
                continue
            v = None
        elif isinstance(v, (float, np.floating)) and name in _INT_FIELDS:
            v = int(v)
        elif isinstance(v, np.generic):
            v = v.item()
        fields[name] = tuple(v) if name == "layout" and v is not None else v
    config = RunConfig.from_dict(fields)
    if "config_hash" in row.index and config.config_hash() != row["config_hash"]:
        raise ValueError(f"row {row['config_hash'][:12]} does not rebuild its configuration exactly")
    return dataclasses.replace(config, fused=1) if alone and config.fused != 1 else config


def same_run(results, config, outcome: Mapping | None = None,
             metrics: Sequence[str] = ("mig", "reconstruction")) -> pd.DataFrame | None:
    """The finished rows of a study's result table (a frame or a CSV path) that trained exactly ``config``
    (same ``config_hash``; e.g. a chapter's run that a sweep also ran), with ``metrics``, ``versions.git_commit``
    and, given this run's ``outcome``, its numbers and their difference (``<metric>_this``, ``<metric>_diff``).
    None when the table does not exist or holds no such row. Sweeps train on one thread per CPU they hold
    (``isa_lib.threads``), so a one-thread run of the same configuration with the same code repeats a one-CPU
    sweep's numbers."""
    if isinstance(results, (str, Path)) and not Path(results).exists():
        return None
    df = load_results(results)
    if "config_hash" not in df.columns:
        return None
    rows = df[(df["config_hash"] == config.config_hash()) & (df.get("status", "done") == "done")]
    if rows.empty:
        return None
    keep = [m for m in metrics if m in rows.columns] + [c for c in ("versions.git_commit",) if c in rows.columns]
    out = rows[keep].reset_index(drop=True)
    for m in metrics:
        if outcome is not None and m in out.columns and m in outcome:
            out[f"{m}_this"] = float(outcome[m])
            out[f"{m}_diff"] = float(outcome[m]) - out[m].astype(float)
    return out


# --- Tests of the paper's comparative claims (Sec. 4: Figs. 5a-c, Fig. 7) -------------------
#
# Runs of two models with the same ``seed`` share initial weights and data order, so the natural test of
# "model scores higher than baseline" is paired (Student 1908 paired t on the per-seed differences), with a
# t distribution because a study has 4-12 seeds, and Holm's (1979) step-down correction because a chapter
# tests several claims at once. Each verdict also states the smallest true difference the study had an 80 %
# chance to detect (``mde80``, from the noncentral t; Cohen 1988, ch. 2), so "not shown" reads as
# "not shown at this resolution", not as "no difference".


def _check_sample(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    if np.isnan(v).any():
        raise ValueError(f"{name} contains NaN: drop unfinished runs first")
    if len(v) < 2:
        raise ValueError(f"{name} has {len(v)} value(s): a t test needs at least 2")
    return v


def _t_p(t: float, df: float) -> float:
    """Two-sided p of a t statistic (NaN stays NaN; +-inf gives 0)."""
    return float(2 * stats.t.sf(abs(t), df)) if not np.isnan(t) else np.nan


def _ratio(num: float, den: float) -> float:
    """num / den, with a zero denominator giving +-inf (or NaN for 0 / 0) instead of a warning."""
    if den > 0:
        return num / den
    return np.nan if num == 0 else float(np.sign(num) * np.inf)


def _mde(se: float, df: float, alpha: float, power: float = 0.8) -> float:
    """The smallest true difference delta that a two-sided t test at level ``alpha`` with standard error ``se``
    and ``df`` degrees of freedom rejects with probability ``power``: the root in delta of
    P(|T'| > t_{1-alpha/2, df}) = power with T' ~ noncentral t(df, delta / se) (Cohen 1988, ch. 2)."""
    if not np.isfinite(se) or se < 0:
        return np.nan
    if se == 0:
        return 0.0
    crit = stats.t.ppf(1 - alpha / 2, df)

    def gap(nc):
        # scipy's noncentral t returns NaN for the far lower tail at large nc (seen at df = 1); it is ~0 there
        lower = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc), nan=0.0))
        return stats.nct.sf(crit, df, nc) + lower - power

    hi = crit + 1.0           # solved in units of se (the noncentrality), then scaled
    while gap(hi) < 0:
        hi *= 2
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-10)) * se


def _percentile_ci(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass(frozen=True, kw_only=True)
class TTestResult:
    """What every t test here reports: the difference, its standard error, t with its df and two-sided p,
    the percentile bootstrap CI (``ci_low``, ``ci_high``) and the t interval (``t_ci_low``, ``t_ci_high``:
    difference -+ t_{1-alpha/2, df} se) at level 1 - alpha, and the 80 %-power detectable difference. At a
    handful of seeds the bootstrap interval is too narrow (with 2 pairs it has 3 possible resample means);
    the t interval holds its level there if the differences are roughly normal."""
    difference: float
    se: float
    t: float
    df: float
    p: float
    ci_low: float
    ci_high: float
    mde80: float
    alpha: float
    t_ci_low: float = field(init=False)   # derived from difference, se, df and alpha below
    t_ci_high: float = field(init=False)

    def __post_init__(self):
        half = stats.t.ppf(1 - self.alpha / 2, self.df) * self.se if np.isfinite(self.se) else np.nan
        object.__setattr__(self, "t_ci_low", float(self.difference - half))
        object.__setattr__(self, "t_ci_high", float(self.difference + half))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class PairedTest(TTestResult):
    """Result of :func:`paired_test` (differences are a - b; ``sd`` is theirs)."""
    n: int
    sd: float
    p_wilcoxon: float


@dataclass(frozen=True, kw_only=True)
class WelchTest(TTestResult):
    """Result of :func:`welch_test` (difference is mean(a) - mean(b))."""
    n_a: int
    n_b: int
    sd_a: float
    sd_b: float


def paired_test(a, b, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05) -> PairedTest:
    """Paired comparison of two models run with the same seeds (Sec. 4, Fig. 5a): ``a[i]`` and ``b[i]`` are
    the metric of the two models at seed i. Returns the mean difference a - b, the sd of the differences,
    its standard error, the paired t (Student 1908) with df = n - 1 and its two-sided p, a percentile
    bootstrap CI at level 1 - alpha of the mean difference (``n_boot`` resamples of the seeds, reproducible
    from ``seed``; Efron & Tibshirani 1993), the Wilcoxon (1945) signed-rank p (scipy: exact for small n
    without ties; NaN when every difference is 0), and ``mde80``, the smallest true mean difference this
    test detects with 80 % power at this n and sd (noncentral t, see :func:`_mde`)."""
    a, b = _check_sample(a, "a"), _check_sample(b, "b")
    if len(a) != len(b):
        raise ValueError(f"paired samples must align seed by seed: {len(a)} and {len(b)} values")
    d = a - b
    n, df = len(d), len(d) - 1
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / np.sqrt(n)
    t = _ratio(mean, se)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, n, size=(n_boot, n))].mean(1)
    lo, hi = _percentile_ci(boot, alpha)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p_w = float(stats.wilcoxon(d).pvalue)
    except ValueError:  # every difference is zero
        p_w = np.nan
    return PairedTest(n=n, difference=mean, sd=sd, se=float(se), t=float(t), df=df, p=_t_p(t, df), ci_low=lo,
                      ci_high=hi, p_wilcoxon=p_w, mde80=_mde(se, df, alpha), alpha=alpha)


def welch_test(a, b, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05) -> WelchTest:
    """Comparison of two models run with different seeds (no pairing): Welch's (1947) t of mean(a) - mean(b)
    with the Welch-Satterthwaite df and its two-sided p, a percentile bootstrap CI (each arm resampled on
    its own, reproducible from ``seed``), and ``mde80``: the smallest true difference this test detects with
    80 % power at these sample sizes and sds (noncentral t with the Welch df, the usual approximation)."""
    a, b = _check_sample(a, "a"), _check_sample(b, "b")
    na, nb = len(a), len(b)
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = float(np.sqrt(va + vb))
    diff = float(a.mean() - b.mean())
    df = float((va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))) if se > 0 else float(na + nb - 2)
    t = _ratio(diff, se)
    rng = np.random.default_rng(seed)
    boot = a[rng.integers(0, na, size=(n_boot, na))].mean(1) - b[rng.integers(0, nb, size=(n_boot, nb))].mean(1)
    lo, hi = _percentile_ci(boot, alpha)
    return WelchTest(n_a=na, n_b=nb, difference=diff, sd_a=float(a.std(ddof=1)), sd_b=float(b.std(ddof=1)),
                     se=se, t=float(t), df=df, p=_t_p(t, df), ci_low=lo, ci_high=hi, mde80=_mde(se, df, alpha),
                     alpha=alpha)


def holm(pvalues) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values, in the input order: the i-th smallest of m p-values is
    multiplied by m - i + 1, made non-decreasing along the sorted order and capped at 1. NaN entries pass
    through as NaN and do not count in m. Reject at family-wise level alpha where the adjusted p < alpha."""
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def _select(df: pd.DataFrame, model: str | None, beta, where: Mapping | None) -> pd.DataFrame:
    """Finished rows of ``model`` at ``beta`` matching every column=value of ``where`` (floats by np.isclose)."""
    mask = np.ones(len(df), dtype=bool)
    if model is not None:
        mask &= (df["model"] == model).to_numpy()
    if "status" in df.columns:
        mask &= (df["status"] == "done").to_numpy()
    conditions = dict(where or {})
    if beta is not None:
        conditions["beta"] = beta
    for col, value in conditions.items():
        if col not in df.columns:
            raise ValueError(f"the table has no column {col!r} to filter on")
        v = df[col]
        if isinstance(value, (float, np.floating)) or (isinstance(value, (int, np.integer)) and v.dtype.kind == "f"):
            mask &= np.isclose(pd.to_numeric(v, errors="coerce").to_numpy(dtype=float), float(value))
        else:
            mask &= (v == value).to_numpy()
    return df[mask]


def _arm(df: pd.DataFrame, model: str, metric: str, beta, where: Mapping | None) -> pd.Series:
    """The ``metric`` of each finished seed of one arm, indexed by seed; a seed that occurs twice is an error."""
    if metric not in df.columns:
        raise ValueError(f"the table has no column {metric!r}")
    rows = _select(df, model, beta, where)
    rows = rows[rows[metric].notna()]
    counts = rows["seed"].value_counts()
    if (counts > 1).any():
        s = counts.index[counts > 1][0]
        raise ValueError(f"{model} (beta={beta}, {dict(where or {})}) has {counts[s]} finished runs with seed {s}: "
                         f"select one setting with where= (e.g. budget_fraction=...)")
    return rows.set_index("seed")[metric].astype(float).sort_index()


def paired_frame(df: pd.DataFrame, model: str, baseline: str, metric: str, beta: float | None = None,
                 **where) -> pd.DataFrame:
    """The per-seed pairs of a comparison (Sec. 4, Fig. 5a): one row per seed that both ``model`` and
    ``baseline`` finished at ``beta`` (None: no filter) and at every ``where`` column=value (e.g.
    ``budget_fraction=0.25``; floats compared with np.isclose), with columns seed, a (model), b (baseline)
    and difference = a - b, sorted by seed. Feed ``a`` and ``b`` to :func:`paired_test`."""
    a = _arm(df, model, metric, beta, where)
    b = _arm(df, baseline, metric, beta, where)
    seeds = sorted(set(a.index) & set(b.index))
    out = pd.DataFrame({"seed": seeds, "a": a.loc[seeds].to_numpy(), "b": b.loc[seeds].to_numpy()})
    out["difference"] = out["a"] - out["b"]
    return out


def verdict(p_holm: float, difference: float, alpha: float = 0.05) -> str:
    """How a Holm-adjusted p reads as evidence for "model scores higher than baseline" (Sec. 4): 'holds'
    (p_holm < alpha, difference > 0), 'reversed' (p_holm < alpha, difference < 0), 'not shown' otherwise
    (read it with the row's mde80), 'not measured' when there was no test (p is NaN)."""
    if not np.isfinite(p_holm) or not np.isfinite(difference):
        return "not measured"
    if p_holm < alpha and difference > 0:
        return "holds"
    if p_holm < alpha and difference < 0:
        return "reversed"
    return "not shown"


def _with_holm(frame: pd.DataFrame, holm_over: Sequence[str] | None, alpha: float) -> pd.DataFrame:
    frame = frame.copy()
    if frame.empty:
        frame["p_holm"], frame["verdict"] = pd.Series(dtype=float), pd.Series(dtype=object)
        return frame
    if holm_over:
        frame["p_holm"] = np.nan
        for _, idx in frame.groupby(list(holm_over), sort=False, dropna=False).groups.items():
            frame.loc[idx, "p_holm"] = holm(frame.loc[idx, "p"].to_numpy(dtype=float))
    else:
        frame["p_holm"] = holm(frame["p"].to_numpy(dtype=float))
    frame["verdict"] = [verdict(p, d, alpha) for p, d in zip(frame["p_holm"], frame["difference"])]
    return frame


CLAIM_COLUMNS = ["claim", "model", "baseline", "metric", "beta", "n_model", "n_baseline", "n_pairs", "test",
                 "mean_model", "mean_baseline", "difference", "se", "ci_low", "ci_high", "t_ci_low", "t_ci_high",
                 "t", "df", "p",
                 "p_wilcoxon", "mde80", "p_holm", "verdict"]


def _claim_row(df, model, baseline, metric, beta, where, alpha, n_boot) -> dict:
    a, b = _arm(df, model, metric, beta, where), _arm(df, baseline, metric, beta, where)
    shared = sorted(set(a.index) & set(b.index))
    row = {"n_model": len(a), "n_baseline": len(b), "n_pairs": len(shared)}
    if len(shared) >= 2:
        xa, xb = a.loc[shared].to_numpy(), b.loc[shared].to_numpy()
        r = paired_test(xa, xb, n_boot=n_boot, alpha=alpha)
        row.update(test="paired t", p_wilcoxon=r.p_wilcoxon)
    elif len(a) >= 2 and len(b) >= 2:
        xa, xb = a.to_numpy(), b.to_numpy()
        r = welch_test(xa, xb, n_boot=n_boot, alpha=alpha)
        row.update(test="Welch t", p_wilcoxon=np.nan)
    else:
        return {**row, "test": "none", "mean_model": a.mean(), "mean_baseline": b.mean(),
                **{k: np.nan for k in ("difference", "se", "ci_low", "ci_high", "t_ci_low", "t_ci_high", "t", "df", "p",
                                       "p_wilcoxon", "mde80")}}
    row.update(mean_model=float(xa.mean()), mean_baseline=float(xb.mean()), difference=r.difference, se=r.se,
               ci_low=r.ci_low, ci_high=r.ci_high, t_ci_low=r.t_ci_low, t_ci_high=r.t_ci_high, t=r.t,
               df=float(r.df), p=r.p, mde80=r.mde80)
    return row


def claims(df: pd.DataFrame, pairs: Sequence[tuple[str, str, str]], metric: str = "mig",
           betas: Sequence[float] | None = None, where: Mapping | None = None,
           holm_over: Sequence[str] | None = None, alpha: float = 0.05, n_boot: int = 10000) -> pd.DataFrame:
    """The paper's comparative claims (Sec. 4: Figs. 5a-c, Fig. 7), each read as
    "``model`` scores higher than ``baseline`` on ``metric``": one row per ``(claim, model, baseline)`` and
    beta that both models finished (restricted to ``betas`` if given, and to the ``where`` column=value
    filters, e.g. ``{"budget_fraction": 0.25}``). Where the two arms share >= 2 seeds the test is the paired
    t on those seeds (``test`` = "paired t", :func:`paired_test`); otherwise Welch's t on all runs ("Welch t",
    :func:`welch_test`); "none" if an arm has < 2 runs. ``mean_model``/``mean_baseline`` are over the runs
    tested. ``p_holm`` is Holm's (1979) correction over all rows of this frame (or within groups of the
    ``holm_over`` columns); ``verdict`` reads it (:func:`verdict`). To correct over several claim frames at
    once, pass them to :func:`adjust_claims`. Pairs without runs are skipped."""
    if metric not in df.columns:
        raise ValueError(f"the table has no column {metric!r}")
    rows = []
    for claim, model, baseline in pairs:
        if not {model, baseline} <= set(df["model"]):
            continue
        have = [set(np.round(_select(df, m, None, where).dropna(subset=[metric])["beta"].astype(float), 12))
                for m in (model, baseline)]
        common = sorted(have[0] & have[1])
        if betas is not None:
            common = [b for b in common if np.isclose(b, np.asarray(betas, dtype=float)).any()]
        for beta in common:
            rows.append({"claim": claim, "model": model, "baseline": baseline, "metric": metric, "beta": beta,
                         **_claim_row(df, model, baseline, metric, beta, where, alpha, n_boot)})
    frame = pd.DataFrame(rows, columns=[c for c in CLAIM_COLUMNS if c not in ("p_holm", "verdict")])
    return _with_holm(frame, holm_over, alpha)[CLAIM_COLUMNS]


def adjust_claims(frames_or_frame, holm_over: Sequence[str] | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Several :func:`claims` frames as one family (Sec. 4, the chapter's verdict table): concatenated (None
    and empty frames skipped), with ``p_holm`` and ``verdict`` recomputed by Holm (1979) over all their rows
    (or within groups of the ``holm_over`` columns)."""
    if isinstance(frames_or_frame, pd.DataFrame):
        frames = [frames_or_frame]
    else:
        frames = [f for f in frames_or_frame if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    out = _with_holm(pd.concat(frames, ignore_index=True), holm_over, alpha)
    return out[[c for c in CLAIM_COLUMNS if c in out.columns] + [c for c in out.columns if c not in CLAIM_COLUMNS]]


def dose_response(df: pd.DataFrame, model: str, baseline: str, metric: str = "mig", beta: float = 1.0,
                  column: str = "budget_fraction", n_boot: int = 10000, alpha: float = 0.05) -> pd.DataFrame:
    """A claim along a training budget (Sec. 4, MIG against images seen): one row per value of ``column``
    (sorted) with the number of paired seeds, the mean ``metric`` of each arm over those seeds, the paired
    mean difference (model - baseline) with its percentile bootstrap CI, its t interval and paired-t p
    (:func:`paired_test`).
    Descriptive, for plotting: no Holm correction, so do not read the p column row by row as verdicts."""
    if column not in df.columns:
        raise ValueError(f"the table has no column {column!r}")
    sel = _select(df, None, beta, None)
    sel = sel[sel["model"].isin([model, baseline])]
    values = np.unique(sel[column].dropna().to_numpy())
    rows = []
    for v in values:
        pf = paired_frame(df, model, baseline, metric, beta=beta, **{column: v})
        row = {column: v, "n_pairs": len(pf), "mean_model": pf["a"].mean(), "mean_baseline": pf["b"].mean()}
        if len(pf) >= 2:
            r = paired_test(pf["a"], pf["b"], n_boot=n_boot, alpha=alpha)
            row.update(difference=r.difference, ci_low=r.ci_low, ci_high=r.ci_high, t_ci_low=r.t_ci_low,
                       t_ci_high=r.t_ci_high, p=r.p)
        else:
            row.update(difference=pf["difference"].mean(), ci_low=np.nan, ci_high=np.nan, t_ci_low=np.nan,
                       t_ci_high=np.nan, p=np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=[column, "n_pairs", "mean_model", "mean_baseline", "difference", "ci_low",
                                       "ci_high", "t_ci_low", "t_ci_high", "p"])


def compare(df: pd.DataFrame, model: str, baseline: str, metric: str = "mig") -> pd.DataFrame:
    """Descriptive only, kept for ``benchmarks/fused_vs_separate.py``: per beta, the difference of the mean
    ``metric`` of ``model`` and ``baseline``, sqrt(sem_a^2 + sem_b^2) and their ratio z. It ignores the
    pairing by seed, the small-n t distribution and multiplicity: for the paper's claims use :func:`claims`."""
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


# --- Fig. 7: do the learned exponents leave the trivial solution p_i = p0? (App. A.2) -------------------------


@dataclass(frozen=True)
class OneSampleTest:
    """A one-sample t test of the mean of per-run values against a fixed ``reference`` (Student 1908)."""
    n: int
    estimate: float
    reference: float
    difference: float
    sd: float
    se: float
    t: float
    df: int
    p: float
    alternative: str

    def as_dict(self) -> dict:
        return asdict(self)


def _one_sample(x: np.ndarray, reference: float, alternative: str) -> OneSampleTest:
    n, mean, sd = len(x), float(x.mean()), float(x.std(ddof=1))
    se = sd / np.sqrt(n)
    t = _ratio(mean - reference, se)
    if np.isnan(t):
        p = np.nan
    elif alternative == "greater":
        p = float(stats.t.sf(t, n - 1))
    else:
        p = _t_p(t, n - 1)
    return OneSampleTest(n=n, estimate=mean, reference=float(reference), difference=mean - reference, sd=sd,
                         se=float(se), t=float(t), df=n - 1, p=p, alternative=alternative)


def sorted_rank_summary(exponents: np.ndarray, p0: float) -> pd.DataFrame:
    """Descriptive only (Fig. 7's histograms): each run's exponents sorted p_(1) <= p_(2) <= ..., then per
    rank the mean and sd over runs and mean - p0. No test: sorting makes the lowest rank sit below p0 and
    the highest above it even when every exponent is pure noise around p0 (order statistics of the noise),
    so a rank mean's distance from p0 over its standard error is not evidence; see :func:`exponent_tests`."""
    e = np.sort(np.asarray(exponents, dtype=float), axis=1)
    if e.ndim != 2 or len(e) < 1:
        raise ValueError(f"need exponents of shape (runs, subspaces), got {e.shape}")
    sd = e.std(0, ddof=1) if len(e) > 1 else np.full(e.shape[1], np.nan)
    return pd.DataFrame({"rank": np.arange(1, e.shape[1] + 1), "n": len(e), "mean": e.mean(0), "sd": sd,
                         "minus_p0": e.mean(0) - p0, "kind": "descriptive (sorted ranks, no test)"})


@dataclass(frozen=True)
class ExponentTests:
    """Result of :func:`exponent_tests`: ``location`` and ``spread`` are tests; ``sorted_ranks`` is not."""
    p0: float
    p_init: float
    location: OneSampleTest
    spread: OneSampleTest
    sorted_ranks: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """The two tests as rows (test, hypothesis, then the :class:`OneSampleTest` fields)."""
        return pd.DataFrame([
            {"test": "location", "hypothesis": "mean over runs of each run's mean exponent = p0",
             **self.location.as_dict()},
            {"test": "spread", "hypothesis": "each run's RMS deviation from p0 grew beyond |p_init - p0|",
             **self.spread.as_dict()}])


def exponent_tests(exponents: np.ndarray, p0: float, p_init: float) -> ExponentTests:
    """Fig. 7 as tests (App. A.2: do the learned p_i stay at the trivial solution p_i = p0?). ``exponents`` is
    (runs, subspaces), **unsorted** (by subspace identity, as :func:`learned_exponents` returns them); runs
    are independent, subspaces within a run are not, so each test reduces a run to one number:

    - location: each run's mean exponent against p0, two-sided one-sample t, df = runs - 1;
    - spread: each run's RMS deviation sqrt(mean_i (p_i - p0)^2) against the deviation it started with,
      |p_init - p0| (the exponents start at p_init = 2.0, not at p0 = 2.1), one-sided one-sample t
      (H1: larger than at the start), df = runs - 1;
    - ``sorted_ranks``: :func:`sorted_rank_summary`, descriptive only. Testing each sorted rank's mean
      against p0 (the old ``exponent_shift`` z) is not evidence: the minimum of noise around p0 lies below
      p0 and the maximum above it in every run, so those z-scores grow like sqrt(runs) under pure noise.
    """
    e = np.asarray(exponents, dtype=float)
    if e.ndim != 2 or len(e) < 2 or e.shape[1] < 1:
        raise ValueError(f"need the exponents of at least two runs, shape (runs, subspaces), got {e.shape}")
    if np.isnan(e).any():
        raise ValueError("exponents contain NaN")
    location = _one_sample(e.mean(1), p0, "two-sided")
    rms = np.sqrt(((e - p0) ** 2).mean(1))
    spread = _one_sample(rms, abs(p_init - p0), "greater")
    return ExponentTests(p0=float(p0), p_init=float(p_init), location=location, spread=spread,
                         sorted_ranks=sorted_rank_summary(e, p0))


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


def kl_levels(df: pd.DataFrame, column: str = "final.kl", gap: float = 1.0) -> pd.Series:
    """The level each run's final KL settles in (App. A.5's modes of a run, read from the code's information
    rather than from MIG): the runs sorted by ``column`` split wherever two neighbours differ by more than
    ``gap`` nats, numbered 0, 1, ... from the lowest KL. Returns the level of each row (index of ``df``)."""
    if column not in df.columns:
        raise ValueError(f"the table has no column {column!r}")
    if not np.isfinite(gap) or gap <= 0:
        raise ValueError(f"gap is a positive number of nats, got {gap!r}")
    kl = pd.to_numeric(df[column], errors="coerce")
    if kl.isna().any() or not np.isfinite(kl.to_numpy()).all():
        raise ValueError(f"{int((~np.isfinite(kl.to_numpy(dtype=float))).sum())} run(s) have no finite {column!r}")
    order = kl.sort_values(kind="stable")
    level = np.concatenate([[0], np.cumsum(np.diff(order.to_numpy()) > gap)])
    return pd.Series(level, index=order.index, name="kl_level").reindex(df.index)


def level_summary(df: pd.DataFrame, column: str = "final.kl", gap: float = 1.0,
                  metrics: Sequence[str] = ("mig", "reconstruction")) -> pd.DataFrame:
    """One row per KL level of :func:`kl_levels`: its KL range, how many runs of each model settle there, and the
    mean and median of ``metrics`` over its runs (description: the runs of a level share no seed structure)."""
    levels = kl_levels(df, column, gap)
    rows = []
    for lv, g in df.groupby(levels, sort=True):
        row = {"level": int(lv), "kl_low": float(g[column].min()), "kl_high": float(g[column].max()), "n": len(g)}
        row.update({f"n_{m}": int(n) for m, n in g["model"].value_counts().sort_index().items()})
        for k in metrics:
            row[f"{k}_mean"], row[f"{k}_median"] = float(g[k].mean()), float(g[k].median())
        rows.append(row)
    out = pd.DataFrame(rows)
    counts = sorted(c for c in out.columns if c.startswith("n_"))
    out[counts] = out[counts].fillna(0).astype(int)
    head = ["level", "kl_low", "kl_high", "n", *counts]
    return out[head + [c for c in out.columns if c not in head]]


@dataclass(frozen=True)
class RankAssociation:
    """Spearman's rank correlation of two per-run quantities, its two-sided p (a t with n - 2 df) and n."""

    rho: float
    p: float
    n: int


def rank_association(df: pd.DataFrame, x: str = "final.kl", y: str = "mig") -> RankAssociation:
    """Spearman's rho between ``x`` and ``y`` over the runs of ``df`` (e.g. does a run that keeps less
    information score higher MIG?), with the t approximation's p; needs at least 4 runs with both values."""
    d = df[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(d) < 4:
        raise ValueError(f"a rank association needs at least 4 runs with {x!r} and {y!r}, got {len(d)}")
    res = stats.spearmanr(d[x], d[y])
    return RankAssociation(rho=float(res.statistic), p=float(res.pvalue), n=len(d))

"""Sweep summaries (isa_lib.analysis) and their figures (isa_lib.plots.sweeps), on tables with known answers."""
import json

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from isa_lib import analysis
from isa_lib.plots import sweeps


def table():
    rows = []
    for model, base in (("beta_vae", 0.1), ("isa_vae", 0.3)):
        for beta in (1.0, 2.0):
            for seed in range(4):
                rows.append(dict(model=model, beta=beta, seed=seed, status="done",
                                 mig=base + 0.1 * beta + 0.01 * seed, reconstruction=-20 - 5 * beta - seed,
                                 exponents=json.dumps([2.2, 1.9, 2.0]) if model == "isa_vae" else None))
    rows.append(dict(model="isa_vae", beta=1.0, seed=9, status="failed", mig=np.nan, reconstruction=np.nan))
    return pd.DataFrame(rows)


def test_load_results_keeps_finished_runs_and_names_missing_columns():
    df = analysis.load_results(table())
    assert len(df) == 16 and (df["status"] == "done").all()
    with pytest.raises(ValueError, match=r"\['mig'\]"):
        analysis.load_results(table().drop(columns="mig"))


def test_summary_means_and_standard_errors():
    s = analysis.summarise(analysis.load_results(table()))
    r = s[(s["model"] == "isa_vae") & (s["beta"] == 2.0)].iloc[0]
    seeds = np.arange(4)
    assert r["n"] == 4
    assert r["mig_mean"] == pytest.approx(0.5 + 0.015)
    assert r["mig_sem"] == pytest.approx(0.01 * seeds.std(ddof=1) / 2)
    assert r["reconstruction_median"] == pytest.approx(-31.5)


def test_representative_run_is_the_centre_of_the_upper_half():
    df = pd.DataFrame(dict(model="m", beta=1.0, seed=range(6), mig=[0.0, 0.01, 0.02, 0.5, 0.6, 0.7],
                           reconstruction=[-10, -10, -10, -30, -20, -10]))
    rep = analysis.representative_runs(df)
    assert rep["seed"].tolist() == [4]  # upper half: seeds 3-5; seed 4 sits at their mean


def test_learned_exponents_are_sorted_per_run():
    df = pd.DataFrame(dict(model="isa_vae_learned", exponents=[json.dumps([2.2, 1.9, 2.0]), json.dumps([1.8, 2.5, 2.1])]))
    assert np.allclose(analysis.learned_exponents(df), [[1.9, 2.0, 2.2], [1.8, 2.1, 2.5]])
    assert analysis.learned_exponents(df, model="other").size == 0


def test_figures_draw_from_tables_and_refuse_missing_settings():
    df = analysis.load_results(table())
    fig = sweeps.mig_distribution(df, 1.0, ["beta_vae", "isa_vae"])
    assert len(fig.axes[0].collections) == 4  # dots and means for two models
    fig = sweeps.tradeoff(df, ["beta_vae", "isa_vae"])
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    fig = sweeps.exponent_histograms(np.array([[1.9, 2.0, 2.2], [1.8, 2.1, 2.5]]))
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="beta=3.0"):
        sweeps.mig_distribution(df, 3.0, ["beta_vae"])
    assert "2 models" in analysis.describe_study(df)


def test_a_result_row_rebuilds_its_exact_configuration(tmp_path):
    from isa_lib import experiments

    cfg = experiments.RunConfig(**{**experiments.scale_defaults("small"), "model": "isa_tcvae", "beta": 2.0, "seed": 3})
    other = experiments.RunConfig(**{**experiments.scale_defaults("small"), "model": "beta_vae"})
    rows = []
    for c in (cfg, other):  # mixed models give NaN (CSV floats) in the ISA columns of the beta-VAE row
        d = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in c.to_dict().items()}
        rows.append({**d, "config_hash": c.config_hash()})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv")
    assert analysis.run_config(back.iloc[0]) == cfg
    assert analysis.run_config(back.iloc[1]) == other
    bad = back.iloc[0].copy()
    bad["seed"] = 4
    with pytest.raises(ValueError, match="does not rebuild"):
        analysis.run_config(bad)


def test_compare_gives_differences_with_standard_errors():
    df = analysis.load_results(table())
    c = analysis.compare(df, "isa_vae", "beta_vae")
    assert c["beta"].tolist() == [1.0, 2.0]
    assert np.allclose(c["difference"], 0.2)
    sem = 0.01 * np.arange(4).std(ddof=1) / 2
    assert np.allclose(c["se"], np.sqrt(2) * sem)
    assert np.allclose(c["z"], 0.2 / (np.sqrt(2) * sem))
    with pytest.raises(ValueError, match="no beta"):
        analysis.compare(df, "isa_vae", "factor_vae")


def test_mig_by_factor_lists_each_factor_mean_after_the_summary_metrics():
    df = analysis.load_results(table())
    df["mig_per_factor.posX"] = df["mig"] * 2
    df["mig_per_factor.scale"] = 0.25
    t = analysis.mig_by_factor(df)
    assert list(t.columns) == ["model", "beta", "n", "mig_mean", "mig_sem", "reconstruction_mean",
                               "reconstruction_sem", "mig_posX", "mig_scale"]
    r = t[(t["model"] == "isa_vae") & (t["beta"] == 2.0)].iloc[0]
    assert r["mig_posX"] == pytest.approx(2 * r["mig_mean"]) and r["mig_scale"] == pytest.approx(0.25)
    assert list(analysis.mig_by_factor(df, metrics=()).columns) == ["model", "beta", "n", "mig_posX", "mig_scale"]


def test_claims_read_z_scores_as_verdicts():
    df = analysis.load_results(table())
    # isa_vae is 0.2 above beta_vae at every beta, with a seed spread of 0.01 * sd(0..3): z is large
    c = analysis.claims(df, [("Fig. 5a", "isa_vae", "beta_vae"), ("absent", "isa_tcvae", "beta_tcvae")], betas=[1.0])
    assert c["claim"].tolist() == ["Fig. 5a"] and c["beta"].tolist() == [1.0]
    assert c["difference"].iloc[0] == pytest.approx(0.2) and c["z"].iloc[0] > 2 and c["verdict"].iloc[0] == "holds"
    rev = analysis.claims(df, [("reversed", "beta_vae", "isa_vae")])
    assert rev["verdict"].tolist() == ["reversed", "reversed"]
    assert [analysis.verdict(z) for z in (2.0, 1.99, -1.99, -2.0, np.nan)] == \
        ["holds", "not shown", "not shown", "reversed", "not measured"]


def test_exponent_shift_measures_the_distance_from_p0():
    e = np.array([[1.9, 2.1, 2.5], [1.7, 2.1, 2.7], [1.8, 2.1, 2.6]])
    s = analysis.exponent_shift(e, p0=2.1)
    assert s["mean"].tolist() == pytest.approx([1.8, 2.1, 2.6])
    assert s["sem"].iloc[0] == pytest.approx(0.1 / np.sqrt(3))
    assert s["z"].iloc[0] == pytest.approx(-0.3 / (0.1 / np.sqrt(3)))
    assert np.isnan(s["z"].iloc[1])          # no spread: no z
    with pytest.raises(ValueError, match="at least two runs"):
        analysis.exponent_shift(e[:1], p0=2.1)


def test_training_curves_from_exported_histories():
    hist = [{"step": s, "kl": 10 - 5 / s, "recon": -s} for s in (1, 2, 4)]
    df = pd.DataFrame(dict(model=["beta_vae", "isa_vae"], beta=1.0, seed=[0, 0],
                           history=[json.dumps(hist), json.dumps(hist[:2])]))
    curves = analysis.histories(df)
    assert len(curves) == 5 and curves["kl"].iloc[2] == pytest.approx(10 - 5 / 4)
    fig = sweeps.training_curves(curves, title="t")
    assert len(fig.axes[0].lines) == 4       # one thin line per run and one mean per model
    with pytest.raises(ValueError, match="history"):
        analysis.histories(df.drop(columns="history"))


def test_regime_splits_mig_into_the_named_factors():
    df = pd.DataFrame(dict(model="m", beta=1.0, seed=[0, 1], mig=[0.30, 0.34], reconstruction=-1.0,
                           **{"final.kl": [4.0, 5.0], "mig_per_factor.posX": [0.6, 0.7], "mig_per_factor.posY": [0.6, 0.64],
                              "mig_per_factor.scale": [0.0, 0.02], "mig_per_factor.orientation": [0.0, 0.0]}))
    r = analysis.regime(df).iloc[0]
    assert r["kl_final"] == pytest.approx(4.5) and r["mig_mean"] == pytest.approx(0.32)
    assert r["mig_from_posX_posY"] == pytest.approx((1.2 / 4 + 1.34 / 4) / 2)
    with pytest.raises(ValueError, match="lacks"):
        analysis.regime(df, factors=("shape",))

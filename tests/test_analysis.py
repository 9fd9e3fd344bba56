"""Sweep summaries (isa_lib.analysis) and their figures (isa_lib.plots.sweeps), on tables with known answers."""
import dataclasses
import json

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
from scipy import stats

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


def test_load_results_reads_a_sweep_ledger_as_its_csv_export_and_names_a_file_that_is_neither(tmp_path):
    from isa_lib.experiments import RunConfig
    from isa_lib.experiments.ledger import Ledger

    configs = [RunConfig(model=m, seed=s) for m in ("beta_vae", "isa_vae") for s in (0, 1)]
    ledger = Ledger(tmp_path / "s.db")
    ledger.add(configs)
    for i, c in enumerate(configs[:3]):          # the fourth run stays pending and is dropped
        ledger.record({"config_hash": c.config_hash(), "status": "done", "duration": 1.0,
                       "metrics": {"mig": 0.1 * i, "reconstruction": -30.0 - i}})
    ledger.export_csv(tmp_path / "s.csv")
    from_db, from_csv = analysis.load_results(tmp_path / "s.db"), analysis.load_results(tmp_path / "s.csv")
    assert len(from_db) == 3 and list(from_db["mig"]) == pytest.approx([0.0, 0.1, 0.2])
    pd.testing.assert_frame_equal(from_db[["model", "seed", "mig", "reconstruction"]],
                                  from_csv[["model", "seed", "mig", "reconstruction"]], check_dtype=False)
    (tmp_path / "junk.bin").write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ValueError, match=r"junk\.bin is neither a CSV result table nor a sweep ledger"):
        analysis.load_results(tmp_path / "junk.bin")
    with pytest.raises(FileNotFoundError, match="no result table"):
        analysis.load_results(tmp_path / "missing.csv")


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


def test_learned_exponents_keep_subspace_order():
    df = pd.DataFrame(dict(model="isa_vae_learned", exponents=[json.dumps([2.2, 1.9, 2.0]), json.dumps([1.8, 2.5, 2.1])],
                           exponents_sorted=[json.dumps([1.9, 2.0, 2.2]), json.dumps([1.8, 2.1, 2.5])]))
    assert np.allclose(analysis.learned_exponents(df), [[2.2, 1.9, 2.0], [1.8, 2.5, 2.1]])  # as learned, not sorted
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
    # a study mixing fused and unfused runs (a GPU sweep whose last group is one run): the CSV's fused column
    # is float with NaN where a run was trained alone (its hash predates the field)
    fused = dataclasses.replace(cfg, fused=4)
    d = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in fused.to_dict().items()}
    pd.DataFrame(rows + [{**d, "config_hash": fused.config_hash()}]).to_csv(tmp_path / "f.csv", index=False)
    mixed = pd.read_csv(tmp_path / "f.csv")
    assert mixed["fused"].dtype == float and mixed["fused"].isna().sum() == 2
    assert [analysis.run_config(r) for _, r in mixed.iterrows()] == [cfg, other, fused]
    assert [analysis.run_config(r, alone=True) for _, r in mixed.iterrows()] == [cfg, other, cfg]
    bad = back.iloc[0].copy()
    bad["seed"] = 4
    with pytest.raises(ValueError, match="does not rebuild"):
        analysis.run_config(bad)


def test_same_run_finds_the_rows_that_trained_a_configuration(tmp_path):
    from isa_lib import experiments

    cfg = experiments.RunConfig(**{**experiments.scale_defaults("small"), "model": "isa_vae", "seed": 3})
    twin = experiments.RunConfig(**{**experiments.scale_defaults("small"), "model": "isa_vae", "seed": 4})
    rows = [{"config_hash": cfg.config_hash(), "status": "done", "mig": 0.25, "reconstruction": -50.0,
             "versions.git_commit": "abc"},
            {"config_hash": cfg.config_hash(), "status": "failed", "mig": 0.9, "reconstruction": -1.0},
            {"config_hash": twin.config_hash(), "status": "done", "mig": 0.5, "reconstruction": -40.0}]
    rows = [{"model": "isa_vae", "beta": 1.0, "seed": 3, **r} for r in rows]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    found = analysis.same_run(tmp_path / "t.csv", cfg, {"mig": 0.2, "reconstruction": -49.0})
    assert len(found) == 1 and found.loc[0, "versions.git_commit"] == "abc"
    assert found.loc[0, "mig"] == 0.25 and found.loc[0, "mig_this"] == 0.2
    assert found.loc[0, "mig_diff"] == pytest.approx(-0.05) and found.loc[0, "reconstruction_diff"] == 1.0
    assert analysis.same_run(tmp_path / "t.csv", twin)["mig"].tolist() == [0.5]
    other = experiments.RunConfig(**{**experiments.scale_defaults("small"), "model": "beta_vae", "seed": 3})
    assert analysis.same_run(tmp_path / "t.csv", other) is None
    assert analysis.same_run(tmp_path / "missing.csv", cfg) is None


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


def paired_table(shift=0.05, n=6, seed_sd=0.1, noise=0.01, rng_seed=0, extra_model_seed=True):
    """Two models with shared seed effects (same seed = same initial weights and data order) at two betas."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for beta in (1.0, 2.0):
        effect = rng.normal(0.3, seed_sd, n)
        for seed in range(n):
            rows.append(dict(model="beta_vae", beta=beta, seed=seed, status="done", reconstruction=-20.0,
                             mig=effect[seed] + rng.normal(0, noise)))
            rows.append(dict(model="isa_vae", beta=beta, seed=seed, status="done", reconstruction=-20.0,
                             mig=effect[seed] + shift + rng.normal(0, noise)))
        if extra_model_seed:  # a seed only the model finished, and a failed baseline run
            rows.append(dict(model="isa_vae", beta=beta, seed=n, status="done", mig=0.9, reconstruction=-20.0))
            rows.append(dict(model="beta_vae", beta=beta, seed=n, status="failed", mig=np.nan, reconstruction=np.nan))
    return pd.DataFrame(rows)


def test_paired_test_matches_scipy_and_checks_its_input():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 0.1, 9), rng.normal(0.25, 0.1, 9)
    r = analysis.paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert r.t == pytest.approx(ref.statistic, abs=1e-10) and r.p == pytest.approx(ref.pvalue, abs=1e-10)
    assert r.n == 9 and r.df == 8 and r.difference == pytest.approx((a - b).mean())
    assert r.sd == pytest.approx((a - b).std(ddof=1)) and r.se == pytest.approx(r.sd / 3)
    assert r.p_wilcoxon == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert r.ci_low < r.difference < r.ci_high
    assert analysis.paired_test(a, b, seed=3) == analysis.paired_test(a, b, seed=3)     # seeded bootstrap
    assert analysis.paired_test(a, b, seed=3).ci_low != analysis.paired_test(a, b, seed=4).ci_low
    assert analysis.paired_test(b, a).t == pytest.approx(-r.t)                          # a - b, not b - a
    with pytest.raises(ValueError, match="at least 2"):
        analysis.paired_test([1.0], [2.0])
    with pytest.raises(ValueError, match="align"):
        analysis.paired_test(a, b[:-1])
    with pytest.raises(ValueError, match="NaN"):
        analysis.paired_test(np.r_[a[:-1], np.nan], b)


def test_pairing_by_seed_detects_a_shift_that_welch_misses():
    # seed effects (sd 0.1) shared by both arms dwarf the shift (0.03); the pair noise is 0.01
    df = paired_table(shift=0.03, n=8, seed_sd=0.1, noise=0.01, extra_model_seed=False)
    pf = analysis.paired_frame(df, "isa_vae", "beta_vae", "mig", beta=1.0)
    paired, welch = analysis.paired_test(pf["a"], pf["b"]), analysis.welch_test(pf["a"], pf["b"])
    assert paired.p < 0.001 and welch.p > 0.1
    assert paired.difference == pytest.approx(welch.difference)
    assert paired.mde80 < 0.03 < welch.mde80


def test_bootstrap_ci_covers_the_true_difference():
    rng = np.random.default_rng(2)
    hits = 0
    for rep in range(200):
        d = rng.normal(0.1, 0.05, 12)
        r = analysis.paired_test(d, np.zeros(12), n_boot=2000, seed=rep)
        hits += r.ci_low <= 0.1 <= r.ci_high
    assert 0.85 <= hits / 200 <= 0.99


def test_mde80_is_the_difference_detected_four_times_in_five():
    rng = np.random.default_rng(3)
    n = 6
    r = analysis.paired_test(rng.normal(0, 0.05, n), np.zeros(n))
    d = rng.normal(r.mde80, r.sd, (2000, n))                     # true difference = mde80, true sd = r.sd
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    power = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert 0.75 <= power <= 0.85
    # mde80 * sqrt(n) / sd falls towards z_0.975 + z_0.8 = 2.80 as n grows (roughly 1 / sqrt(n) shrinkage)
    scaled = []
    for n in (4, 8, 16, 64):
        z = rng.normal(size=n)
        z = (z - z.mean()) / z.std(ddof=1)                        # sd exactly 1
        scaled.append(analysis.paired_test(z, np.zeros(n), n_boot=10).mde80 * np.sqrt(n))
    assert all(x > y for x, y in zip(scaled, scaled[1:]))
    assert scaled[-1] == pytest.approx(stats.norm.ppf(0.975) + stats.norm.ppf(0.8), rel=0.03)
    assert scaled[0] > 4                                          # a normal approximation would say 2.80


def test_welch_test_matches_scipy_and_its_mde_holds():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.3, 0.05, 6), rng.normal(0.25, 0.1, 10)
    r = analysis.welch_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert r.t == pytest.approx(ref.statistic, abs=1e-10) and r.p == pytest.approx(ref.pvalue, abs=1e-10)
    assert r.df == pytest.approx(ref.df) and (r.n_a, r.n_b) == (6, 10)
    assert r.ci_low < r.difference < r.ci_high
    x, y = rng.normal(r.mde80, r.sd_a, (2000, 6)), rng.normal(0, r.sd_b, (2000, 10))
    power = np.mean(stats.ttest_ind(x, y, axis=1, equal_var=False).pvalue < 0.05)
    assert 0.75 <= power <= 0.85
    with pytest.raises(ValueError, match="at least 2"):
        analysis.welch_test(a, [1.0])


def test_holm_adjusts_step_down_and_passes_nan():
    assert np.allclose(analysis.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = analysis.holm([0.01, np.nan, 0.04])
    assert np.isnan(out[1]) and np.allclose(out[[0, 2]], [0.02, 0.04])      # m = 2, NaN not counted
    p = np.random.default_rng(5).uniform(0, 0.3, 20)
    adj = analysis.holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p) and np.all(adj <= 1)
    assert analysis.holm([0.6, 0.7])[0] == 1.0                                # capped at 1


def test_paired_frame_takes_seeds_both_arms_finished_and_filters():
    df = paired_table()
    pf = analysis.paired_frame(df, "isa_vae", "beta_vae", "mig", beta=1.0)
    assert pf["seed"].tolist() == list(range(6)) and list(pf.columns) == ["seed", "a", "b", "difference"]
    assert np.allclose(pf["difference"], pf["a"] - pf["b"])
    budget = pd.concat([df.assign(budget_fraction=0.25), df.assign(budget_fraction=1.0, mig=df["mig"] + 0.1)])
    with pytest.raises(ValueError, match="where="):
        analysis.paired_frame(budget, "isa_vae", "beta_vae", "mig", beta=1.0)
    quarter = analysis.paired_frame(budget, "isa_vae", "beta_vae", "mig", beta=1.0, budget_fraction=0.25 + 1e-12)
    assert np.allclose(quarter["a"], pf["a"])


def test_claims_pair_seeds_when_they_can_and_welch_when_they_cannot():
    df = paired_table()
    c = analysis.claims(df, [("Fig. 5a", "isa_vae", "beta_vae"), ("absent", "isa_tcvae", "beta_tcvae")])
    for col in ("claim", "model", "baseline", "metric", "beta", "n_model", "n_baseline", "n_pairs", "test",
                "difference", "ci_low", "ci_high", "t", "df", "p", "p_wilcoxon", "mde80", "p_holm", "verdict"):
        assert col in c.columns
    assert c["claim"].tolist() == ["Fig. 5a"] * 2 and c["beta"].tolist() == [1.0, 2.0]
    r = c.iloc[0]
    assert r["test"] == "paired t" and (r["n_model"], r["n_baseline"], r["n_pairs"]) == (7, 6, 6)
    pf = analysis.paired_frame(df, "isa_vae", "beta_vae", "mig", beta=1.0)
    ref = analysis.paired_test(pf["a"], pf["b"])
    assert r["difference"] == pytest.approx(ref.difference) and r["p"] == pytest.approx(ref.p)
    assert r["df"] == 5 and r["mde80"] == pytest.approx(ref.mde80)
    assert np.allclose(c["p_holm"], analysis.holm(c["p"])) and c["verdict"].tolist() == ["holds", "holds"]
    rev = analysis.claims(df, [("reversed", "beta_vae", "isa_vae")], betas=[2.0])
    assert rev["beta"].tolist() == [2.0] and rev["verdict"].tolist() == ["reversed"]
    # disjoint seeds: nothing to pair, Welch on all runs of each arm
    disjoint = df.assign(seed=np.where(df["model"] == "isa_vae", df["seed"] + 100, df["seed"]))
    w = analysis.claims(disjoint, [("Fig. 5a", "isa_vae", "beta_vae")], betas=[1.0]).iloc[0]
    a = disjoint.query("model == 'isa_vae' and beta == 1.0")["mig"]
    b = disjoint.query("model == 'beta_vae' and beta == 1.0 and status == 'done'")["mig"]
    assert w["test"] == "Welch t" and w["n_pairs"] == 0 and np.isnan(w["p_wilcoxon"])
    assert w["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_holm_over_all_claims_turns_a_marginal_result_into_not_shown():
    # beta = 1: differences with raw p between 0.025 and 0.05; beta = 2: no difference
    d1 = np.array([0.05, 0.15, 0.02, 0.1, 0.2, 0.0])
    d2 = np.array([0.05, -0.05, 0.02, -0.02, 0.01, -0.01])
    rows = []
    for beta, d in ((1.0, d1), (2.0, d2)):
        for seed, x in enumerate(d):
            rows += [dict(model="isa_vae", beta=beta, seed=seed, mig=0.5 + x, reconstruction=0.0),
                     dict(model="beta_vae", beta=beta, seed=seed, mig=0.5, reconstruction=0.0)]
    df = pd.DataFrame(rows)
    one = analysis.claims(df, [("Fig. 5a", "isa_vae", "beta_vae")], betas=[1.0])
    assert 0.025 < one["p"].iloc[0] < 0.05 and one["verdict"].tolist() == ["holds"]   # alone: holds
    both = analysis.claims(df, [("Fig. 5a", "isa_vae", "beta_vae")])
    assert both["p"].iloc[0] == pytest.approx(one["p"].iloc[0])
    assert both["p_holm"].iloc[0] > 0.05 and both["verdict"].tolist() == ["not shown", "not shown"]
    per_beta = analysis.claims(df, [("Fig. 5a", "isa_vae", "beta_vae")], holm_over=["beta"])
    assert per_beta["verdict"].tolist() == ["holds", "not shown"]                    # one family per beta
    other = analysis.claims(df, [("Table 2", "isa_vae", "beta_vae")], betas=[2.0])
    family = analysis.adjust_claims([one, None, other])                            # the chapter's claims together
    assert len(family) == 2 and family["verdict"].tolist() == ["not shown", "not shown"]
    assert np.allclose(family["p_holm"], analysis.holm([one["p"].iloc[0], other["p"].iloc[0]]))
    assert [analysis.verdict(p, d) for p, d in ((0.01, 0.2), (0.01, -0.2), (0.2, 0.2), (np.nan, 0.1))] == \
        ["holds", "reversed", "not shown", "not measured"]


def test_dose_response_pairs_seeds_at_each_budget():
    df = paired_table(extra_model_seed=False)
    budget = pd.concat([df.assign(budget_fraction=f, mig=df["mig"] + f * (df["model"] == "isa_vae"))
                        for f in (1.0, 0.25, 0.5)])                  # the gap grows by f at each budget
    dr = analysis.dose_response(budget, "isa_vae", "beta_vae")
    assert dr["budget_fraction"].tolist() == [0.25, 0.5, 1.0] and (dr["n_pairs"] == 6).all()
    pf = analysis.paired_frame(df, "isa_vae", "beta_vae", "mig", beta=1.0)
    assert np.allclose(dr["difference"], pf["difference"].mean() + np.array([0.25, 0.5, 1.0]))
    assert np.allclose(dr["mean_model"] - dr["mean_baseline"], dr["difference"])
    assert (dr["ci_low"] < dr["difference"]).all() and (dr["p"] < 0.05).all()


def test_sorted_rank_z_is_large_under_pure_noise_but_the_exponent_tests_are_not():
    rng = np.random.default_rng(6)
    p0, p_init = 2.1, 2.0
    noise = rng.normal(p0, 0.03, (8, 5))                 # every exponent at p0 up to noise: nothing learned
    ranks = np.sort(noise, axis=1)                       # the old exponent_shift: z of each sorted rank's mean
    old_z = (ranks.mean(0) - p0) / (ranks.std(0, ddof=1) / np.sqrt(len(ranks)))
    assert np.abs(old_z).max() > 4                       # the order-statistics artefact
    r = analysis.exponent_tests(noise, p0=p0, p_init=p_init)
    assert r.location.p > 0.05 and r.spread.p > 0.05
    assert r.location.df == 7 and r.spread.reference == pytest.approx(0.1)
    ref = stats.ttest_1samp(noise.mean(1), p0)
    assert r.location.t == pytest.approx(ref.statistic) and r.location.p == pytest.approx(ref.pvalue)
    rms = np.sqrt(((noise - p0) ** 2).mean(1))
    assert r.spread.p == pytest.approx(stats.ttest_1samp(rms, 0.1, alternative="greater").pvalue)
    assert r.spread.estimate == pytest.approx(rms.mean()) and r.spread.df == 7
    assert "z" not in r.sorted_ranks.columns and r.sorted_ranks["kind"].str.contains("descriptive").all()
    assert r.sorted_ranks["mean"].tolist() == pytest.approx(ranks.mean(0).tolist())
    assert r.table()["test"].tolist() == ["location", "spread"]
    with pytest.raises(ValueError, match="at least two runs"):
        analysis.exponent_tests(noise[:1], p0=p0, p_init=p_init)


def test_exponent_tests_see_spread_exponents_and_exponents_left_at_the_start():
    rng = np.random.default_rng(7)
    spread = np.array([rng.permutation([1.4, 1.6, 2.1, 2.5, 2.8]) for _ in range(8)]) + rng.normal(0, 0.05, (8, 5))
    r = analysis.exponent_tests(spread, p0=2.1, p_init=2.0)
    assert r.spread.p < 0.01 and r.spread.alternative == "greater"
    # left where they started (2.0, 0.1 from p0): the spread has not grown, but they are not at p0 either
    stuck = rng.normal(2.0, 0.01, (8, 5))
    s = analysis.exponent_tests(stuck, p0=2.1, p_init=2.0)
    assert s.spread.p > 0.05 and s.location.p < 0.001 and s.location.difference == pytest.approx(-0.1, abs=0.01)
    # all moved together away from p0 (2.5): deviation from p0, not from the run's own mean
    moved = analysis.exponent_tests(rng.normal(2.5, 0.02, (8, 5)), p0=2.1, p_init=2.0)
    assert moved.spread.p < 0.001 and moved.spread.estimate == pytest.approx(0.4, abs=0.02)


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


def test_arms_and_the_share_of_the_papers_budget():
    df = pd.DataFrame({"model": ["beta_vae", "isa_vae", "isa_vae", "isa_vae"], "p": [np.nan, 2.2, 4.0, 3.0],
                       "seed": [0, 0, 0, 0], "beta": [1.0] * 4, "steps": [7200, 7200, 7200, 4320],
                       "train_steps": [900, 1800, np.nan, np.nan], "batch_size": [2048, 2048, 2048, 128]})
    out = analysis.label_arms(df)
    assert out["model"].tolist() == ["beta_vae", "isa_vae", "isa_vae_p4", "isa_vae_p3"]
    assert df["model"].tolist() == ["beta_vae", "isa_vae", "isa_vae", "isa_vae"]     # the input is left alone
    faces = df.assign(dataset="faces3d", p=[np.nan, 1.9, 4.0, 2.2])                   # 3D faces: the paper's p is 1.9
    assert analysis.label_arms(faces)["model"].tolist() == ["beta_vae", "isa_vae", "isa_vae_p4", "isa_vae_p2.2"]
    assert analysis.label_arms(df, paper_p=4.0)["model"].tolist() == ["beta_vae", "isa_vae_p2.2", "isa_vae", "isa_vae_p3"]
    seen = analysis.images_seen(df)
    assert seen.tolist() == [900 * 2048, 1800 * 2048, 7200 * 2048, 4320 * 128]
    share = analysis.budget_share(df)
    assert share.iloc[0] == 0.125 and share.iloc[2] == 1.0
    assert abs(1 / share.iloc[3] - 26.67) < 0.01                  # the large study: 1/27 of the paper's images
    assert "1/27" in analysis.describe_budget(df.iloc[[3]])
    assert "the paper's budget" in analysis.describe_budget(df.iloc[[2]])
    with pytest.raises(ValueError, match="lacks"):
        analysis.images_seen(df.drop(columns="steps"))


def test_two_pairs_give_a_finite_detectable_difference():
    # df = 1: scipy's noncentral t has a NaN lower tail at large noncentrality; the root must still be found
    r = analysis.paired_test([0.10, 0.30], [0.05, 0.20])
    assert r.df == 1 and np.isfinite(r.mde80) and r.mde80 > 10 * r.se


def test_dose_response_figure_shows_the_means_and_the_paired_differences():
    import matplotlib.pyplot as plt

    rows = []
    for f in (0.125, 0.25):
        for seed in range(3):
            rows.append({"model": "beta_vae", "seed": seed, "beta": 1.0, "budget_fraction": f, "mig": 0.1 * f + seed / 100,
                         "reconstruction": -50.0, "status": "done"})
            rows.append({"model": "isa_vae", "seed": seed, "beta": 1.0, "budget_fraction": f,
                         "mig": 0.1 * f + seed / 100 + 0.02 * (1 + seed % 2), "reconstruction": -50.0, "status": "done"})
    df = pd.DataFrame(rows).assign(images_seen=lambda d: d["budget_fraction"] * analysis.PAPER_IMAGES_SEEN)
    d = analysis.dose_response(df, "isa_vae", "beta_vae", n_boot=200)
    d["images_seen"] = d["budget_fraction"] * analysis.PAPER_IMAGES_SEEN
    assert np.allclose(d["difference"], 0.02 * 4 / 3)
    fig = sweeps.dose_response(df, ["beta_vae", "isa_vae"], differences={"isa_vae": d},
                               reference=analysis.PAPER_IMAGES_SEEN)
    left, right = fig.axes
    means = [line for line in left.get_lines() if line.get_linewidth() > 2]
    assert len(means) == 2
    assert np.allclose(means[0].get_ydata(), [0.0125 + 0.01, 0.025 + 0.01])          # beta-VAE's mean per budget
    (bars,) = right.containers
    assert np.allclose(bars.lines[0].get_ydata(), d["difference"])
    assert "ISA-VAE minus beta-VAE" in [t.get_text() for t in right.get_legend().get_texts()]
    plt.close(fig)
    with pytest.raises(ValueError, match="no runs"):
        sweeps.dose_response(df.iloc[:0], ["beta_vae"])


def test_the_t_interval_is_scipys_and_wider_than_the_bootstrap_at_two_pairs():
    a, b = np.array([0.20, 0.09, 0.15]), np.array([0.10, 0.08, 0.02])
    r = analysis.paired_test(a, b)
    lo, hi = stats.t.interval(0.95, 2, loc=(a - b).mean(), scale=stats.sem(a - b))
    assert np.isclose(r.t_ci_low, lo) and np.isclose(r.t_ci_high, hi)
    w = analysis.welch_test(a, b)
    assert np.isclose(w.t_ci_high - w.t_ci_low, 2 * stats.t.ppf(0.975, w.df) * w.se)
    two = analysis.paired_test([0.115, 0.09], [0.203, 0.064])
    assert two.t_ci_high - two.t_ci_low > 5 * (two.ci_high - two.ci_low)   # 3 resample means: far too narrow


def test_fraction_label_names_the_budget_fractions():
    """The chapter names the study's fractions 1/8, 1/4, 1/2 and all; other shares keep their decimals."""
    assert [analysis.fraction_label(f) for f in (0.125, 0.25, 0.5, 1.0)] == ["1/8", "1/4", "1/2", "all"]
    assert analysis.fraction_label(3 / 8) == "3/8"
    assert analysis.fraction_label(4320 * 128 / (7200 * 2048)) == "0.0375"    # 3/80: no small denominator
    for bad in (0.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="budget fraction"):
            analysis.fraction_label(bad)


def test_kl_levels_split_at_gaps_number_from_the_lowest_and_keep_the_rows_order():
    kl = [13.0, 10.9, 15.3, 12.6, 11.0, 13.4, 15.1, 10.8]        # three levels, shuffled, gaps of 1.6 and 1.7
    df = pd.DataFrame({"final.kl": kl, "model": ["a", "b"] * 4, "mig": (np.arange(8) / 10) ** 2,
                       "reconstruction": -np.arange(8.0)}, index=[f"r{i}" for i in range(8)])
    levels = analysis.kl_levels(df)
    assert list(levels.index) == list(df.index)
    assert list(levels) == [1, 0, 2, 1, 0, 1, 2, 0]
    assert list(analysis.kl_levels(df, gap=2.0)) == [0] * 8         # no gap wider than 2 nats
    assert analysis.kl_levels(df, gap=0.25).nunique() == 5           # 12.6, 13.0, 13.4 part; 10.8-11.0 stay joined
    s = analysis.level_summary(df)
    assert list(s["n"]) == [3, 3, 2] and list(s["kl_low"]) == [10.8, 12.6, 15.1]
    assert s.loc[0, "mig_mean"] == pytest.approx(np.mean([0.01, 0.16, 0.49]))
    assert s.loc[0, "mig_median"] == pytest.approx(0.16)
    assert s.loc[2, "reconstruction_median"] == pytest.approx(np.median([-2.0, -6.0]))
    assert list(s["n_a"]) == [1, 1, 2] and list(s["n_b"]) == [2, 2, 0]     # a level without b counts 0
    assert list(s.columns[:6]) == ["level", "kl_low", "kl_high", "n", "n_a", "n_b"]
    first_without_a = analysis.level_summary(df.assign(model=["b" if k < 12 else "a" for k in kl]))
    assert list(first_without_a.columns[:6]) == ["level", "kl_low", "kl_high", "n", "n_a", "n_b"]
    assert list(first_without_a["n_a"]) == [0, 3, 2]
    bad = df.assign(**{"final.kl": [np.nan] + kl[1:]})
    with pytest.raises(ValueError, match="1 run.* no finite 'final.kl'"):
        analysis.kl_levels(bad)
    with pytest.raises(ValueError, match="gap"):
        analysis.kl_levels(df, gap=0)


def test_rank_association_is_spearman_with_its_t_p():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y = np.array([0.30, 0.10, 0.20, 0.05, 0.07, 0.02, 0.01])
    r = analysis.rank_association(pd.DataFrame({"final.kl": x, "mig": y}))
    d = stats.rankdata(x) - stats.rankdata(y)
    n = len(x)
    rho = 1 - 6 * np.sum(d ** 2) / (n * (n ** 2 - 1))                # no ties: the closed form
    t = rho * np.sqrt((n - 2) / (1 - rho ** 2))
    assert r.n == n and r.rho == pytest.approx(rho) and rho < -0.8
    assert r.p == pytest.approx(2 * stats.t.sf(abs(t), n - 2))
    assert analysis.rank_association(pd.DataFrame({"final.kl": x, "mig": x ** 3})).rho == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 4 runs"):
        analysis.rank_association(pd.DataFrame({"final.kl": x[:3], "mig": y[:3]}))


def test_run_scatter_draws_one_point_per_run_of_each_model():
    import matplotlib.pyplot as plt

    df = pd.DataFrame({"model": ["beta_vae"] * 3 + ["isa_vae"] * 2, "final.kl": [11, 13, 15, 11, 13],
                       "mig": [0.3, 0.1, 0.02, 0.25, 0.05]})
    fig = sweeps.run_scatter(df, ["beta_vae", "isa_vae"])
    lines = fig.axes[0].get_lines()
    assert [len(l.get_xdata()) for l in lines] == [3, 2]
    assert list(lines[1].get_ydata()) == [0.25, 0.05]
    plt.close(fig)
    with pytest.raises(ValueError, match="none of the models"):
        sweeps.run_scatter(df, ["factor_vae"])

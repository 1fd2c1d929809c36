"""Paired effects of the grid (grid.effects): each estimate against an independent computation on the same records
(numpy, scipy, scikit-learn and statsmodels written out here)."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from radtransfer import protocol, report
from radtransfer.grid import effects
from radtransfer.grid import equivalence as tost_module
from radtransfer.grid.records import RunRecord, load_records

SCENARIOS = [
    protocol.Scenario(backbone, strategy, 1e-3)
    for backbone in ("resnet50", "densenet121")
    for strategy in ("freeze_all", "unfreeze_all")
]
SOURCES = {"radimagenet": 0.35, "imagenet": 0.25}  # how strongly each source's scores follow the label
FOLDS = 3


def _write_run(root, source, scenario, fold, y, patients, scores, val_loss, repeat=0):
    from radtransfer.stats import auc_score

    name = f"fold{fold}" if repeat == 0 else f"fold{fold}-r{repeat}"
    folder = root / "task" / "runs" / source / scenario.id / name
    folder.mkdir(parents=True, exist_ok=True)
    probabilities = np.stack([1 - scores, scores], 1)
    RunRecord(
        run_id=f"{source}/{scenario.id}/{name}",
        task="task",
        source=source,
        **scenario.to_dict(),
        scenario=scenario.id,
        fold=fold,
        repeat=repeat,
        metrics={"auc": auc_score(y, probabilities), "auc_ci": [0.5, 0.9], "accuracy": 0.7},
        best_val_loss=val_loss,
    ).write(folder)
    np.savez(folder / "predictions.npz", y_true=y, probabilities=probabilities, patient_ids=patients)


def _grid(root, seed, images_per_patient=2):
    """4 scenarios × 3 folds × 2 sources; 24 test patients per fold with 2 images each, scores rounded (ties)."""
    rng = np.random.default_rng(seed)
    for fold in range(FOLDS):
        patient_labels = np.repeat([0, 1], 12)
        y = np.repeat(patient_labels, images_per_patient)
        patients = np.repeat([f"f{fold}p{i}" for i in range(24)], images_per_patient)
        for scenario in SCENARIOS:
            for source, strength in SOURCES.items():
                noise = 0.45 + 0.15 * fold  # folds differ in difficulty: a grouping the mixed model can see
                scores = np.round(np.clip(strength * y + rng.uniform(0, noise, len(y)), 0, 1), 2)
                _write_run(root, source, scenario, fold, y, patients, scores, float(rng.uniform(0.3, 0.7)))
    return load_records(root)


@pytest.fixture
def grid(tmp_path):
    return tmp_path, _grid(tmp_path, 0)


@pytest.fixture
def repeated(tmp_path):
    """The same grid twice, as repeats 0 and 1 of one grid (a ``repeat`` column, as the repeats work adds)."""
    first = _grid(tmp_path / "r0", 0).assign(repeat=0)
    second = _grid(tmp_path / "r1", 1).assign(repeat=1)
    return pd.concat([first, second], ignore_index=True).assign(grid="task")


def _auc(y, p):
    return roc_auc_score(y, p[:, 1])


def _load(path):
    data = np.load(path / "predictions.npz")
    return data["y_true"], data["probabilities"], data["patient_ids"]


def test_point_estimates_and_wins_by_hand(grid):
    root, records = grid
    table = effects.paired_effects(records, n=50).set_index("scenario")
    by_hand = {}
    for scenario in SCENARIOS:
        diffs = []
        for fold in range(FOLDS):
            runs = {s: root / "task" / "runs" / s / scenario.id / f"fold{fold}" for s in SOURCES}
            (y, a, _), (_, b, _) = _load(runs["radimagenet"]), _load(runs["imagenet"])
            diffs.append(_auc(y, a) - _auc(y, b))
        diffs = np.array(diffs)
        by_hand[scenario.id] = diffs.mean()
        row = table.loc[scenario.id]
        assert row["diff"] == pytest.approx(diffs.mean(), abs=1e-12)
        assert (row["wins"], row["losses"], row["n_pairs"]) == ((diffs > 0).sum(), (diffs < 0).sum(), FOLDS)
        assert row["unit"] == "patient" and row["n_with_predictions"] == FOLDS
    overall = table.loc["overall"]
    assert overall["diff"] == pytest.approx(np.mean(list(by_hand.values())), abs=1e-12)
    assert overall["n_pairs"] == FOLDS * len(SCENARIOS)
    # The recorded AUCs are the predictions' AUCs here, so the paired runs' table agrees.
    pairs = effects.paired_runs(records)
    assert pairs.groupby("scenario")["diff"].mean().to_dict() == pytest.approx(by_hand)


def _fold_means(root, scenarios=SCENARIOS, folds=range(FOLDS)):
    """(folds, scenarios) paired AUC differences from the predictions, by scikit-learn."""
    out = []
    for fold in folds:
        row = []
        for scenario in scenarios:
            runs = {s: root / "task" / "runs" / s / scenario.id / f"fold{fold}" for s in SOURCES}
            (y, a, _), (_, b, _) = _load(runs["radimagenet"]), _load(runs["imagenet"])
            row.append(_auc(y, a) - _auc(y, b))
        out.append(row)
    return np.array(out)


def test_the_interval_is_the_t_interval_on_the_folds(grid):
    """With every fold holding the same pairs, the interval is scipy's one-sample t interval on the fold means
    (F − 1 degrees of freedom), per scenario (its folds) and overall (the folds' mean over scenarios)."""
    root, records = grid
    table = effects.paired_effects(records, n=50).set_index("scenario")
    d = _fold_means(root)
    for j, scenario in enumerate(SCENARIOS):
        low, high = stats.t.interval(0.95, FOLDS - 1, loc=d[:, j].mean(), scale=stats.sem(d[:, j]))
        row = table.loc[scenario.id]
        assert (row["low"], row["high"]) == pytest.approx((low, high), abs=1e-12)
        assert row["se"] == pytest.approx(stats.sem(d[:, j]), abs=1e-12)
        assert (row["n_folds"], row["df"], row["method"]) == (FOLDS, FOLDS - 1, "t over folds")
    per_fold = d.mean(axis=1)
    low, high = stats.t.interval(0.95, FOLDS - 1, loc=per_fold.mean(), scale=stats.sem(per_fold))
    overall = table.loc["overall"]
    assert (overall["low"], overall["high"]) == pytest.approx((low, high), abs=1e-12)
    assert overall["covers"] == "training sets, seeds and test patients"
    # Seeded and deterministic; the seed moves only the replicates, not the t interval.
    again, draws = effects.paired_effects(records, n=50, return_draws=True)
    pd.testing.assert_frame_equal(table.reset_index()[again.columns], again)
    other = effects.paired_effects(records, n=50, seed=2, return_draws=True)[1]
    assert not np.array_equal(draws[("task", "overall")], other[("task", "overall")])


def test_unbalanced_folds_give_the_cluster_robust_se(grid):
    """A failed run drops its pair: the overall SE is the fold-clustered sandwich SE of the mean of the scenario
    means (statsmodels OLS of the differences on scenario cells, clustered by fold), times sqrt(F / (F − 1))."""
    sm = pytest.importorskip("statsmodels.formula.api")
    root, records = grid
    lost = (records["source"] == "imagenet") & (records["scenario"] == SCENARIOS[0].id) & (records["fold"] == 1)
    records = records.copy()
    records.loc[lost, "status"] = "failed"
    table = effects.paired_effects(records, n=50).set_index("scenario")
    pairs = effects.paired_runs(records)
    fit = sm.ols("diff ~ C(scenario) - 1", pairs).fit(
        cov_type="cluster", cov_kwds={"groups": pairs["fold"], "use_correction": False}
    )
    weights = np.full(len(SCENARIOS), 1 / len(SCENARIOS))
    se = np.sqrt(weights @ fit.cov_params().to_numpy() @ weights * FOLDS / (FOLDS - 1))
    assert table.loc["overall", "diff"] == pytest.approx(fit.params.mean(), abs=1e-12)
    assert table.loc["overall", "se"] == pytest.approx(se, rel=1e-9)
    assert table.loc[SCENARIOS[0].id, "n_pairs"] == FOLDS - 1 and table.loc[SCENARIOS[0].id, "n_folds"] == FOLDS - 1


def _identical_grid(root, folds):
    """Scenarios A and B with two repeats and C with one, every run of a fold with the same predictions: if the
    patients of a drawn fold are drawn once for all its runs, the three scenarios' replicates are identical."""
    rng = np.random.default_rng(5)
    names = {"A": 2, "B": 2, "C": 1}
    for fold in range(folds):
        y = np.repeat([0, 1, 0, 1], [10, 10, 8, 8])
        patients = np.array([f"f{fold}p{i // 2}" for i in range(len(y))])
        scores = {s: np.clip(strength * y + rng.uniform(0, 0.6, len(y)), 0, 1) for s, strength in SOURCES.items()}
        for name, repeats in names.items():
            scenario = protocol.Scenario("resnet50", "freeze_all", {"A": 1e-3, "B": 1e-4, "C": 1e-5}[name])
            for repeat in range(repeats):
                for source, s in scores.items():
                    _write_run(root, source, scenario, fold, y, patients, s, 0.5, repeat=repeat)
    return load_records(root)


@pytest.mark.parametrize("folds", [3, 1])
def test_a_fold_carries_its_scenarios_and_repeats_on_one_draw_of_patients(tmp_path, folds):
    records = _identical_grid(tmp_path, folds)
    table, draws = effects.paired_effects(records, n=300, return_draws=True)
    scenarios = sorted(records["scenario"].unique())
    first = draws[("task", scenarios[0])]
    assert np.isfinite(first).mean() > 0.95 and np.std(first[np.isfinite(first)]) > 0
    for scenario in scenarios[1:]:
        np.testing.assert_array_equal(draws[("task", scenario)], first)
    if folds == 1:  # one fold: the scenarios are rescored on one draw of patients per replicate
        np.testing.assert_allclose(draws[("task", "overall")], first, rtol=1e-12)
        assert set(table["method"]) == {"bootstrap over test patients"} and table["df"].isna().all()
        assert set(table["covers"]) == {
            "test patients only (one fold: the training set's and the seeds' variation not included)"
        }


def _single_split_loop(root, n, seed):
    """The single split's bootstrap written out with loops: per replicate, the fold's patients drawn once with
    replacement within class, every scenario's two runs rescored on them (rank AUC), averaged over scenarios."""
    rng = np.random.default_rng(seed)
    runs = []
    for scenario in SCENARIOS:
        paths = {s: root / "task" / "runs" / s / scenario.id / "fold0" for s in SOURCES}
        y, a, patients = _load(paths["radimagenet"])
        runs.append((a[:, 1], _load(paths["imagenet"])[1][:, 1]))
    ids = np.unique(patients)
    label = {p: y[patients == p][0] for p in ids}
    strata = [[p for p in ids if label[p] == c] for c in (0, 1)]
    images = {p: np.flatnonzero(patients == p) for p in ids}
    out = np.empty(n)
    for r in range(n):
        chosen = [p for stratum in strata for p in rng.choice(stratum, len(stratum))]
        index = np.concatenate([images[p] for p in chosen])
        out[r] = np.mean([_rank_auc(y[index], a[index]) - _rank_auc(y[index], b[index]) for a, b in runs])
    return out


def _rank_auc(y, s):
    ranks = stats.rankdata(s)
    m = y.sum()
    return (ranks[y == 1].sum() - m * (m + 1) / 2) / (m * (len(y) - m))


def test_a_single_split_resamples_its_test_patients_only(grid):
    root, records = grid
    single = records[records["fold"] == 0]
    table, draws = effects.paired_effects(single, n=2000, seed=1, return_draws=True)
    overall = table.set_index("scenario").loc["overall"]
    loop = _single_split_loop(root, 800, seed=2)
    # Monte Carlo agreement (different random streams): the replicates' SD and percentile interval.
    assert overall["se"] == pytest.approx(loop.std(ddof=1), rel=0.1)
    width = overall["high"] - overall["low"]
    assert overall["low"] == pytest.approx(np.quantile(loop, 0.025), abs=0.12 * width)
    assert overall["high"] == pytest.approx(np.quantile(loop, 0.975), abs=0.12 * width)
    expected = np.quantile(draws[("task", "overall")], [0.025, 0.975])
    assert (overall["low"], overall["high"]) == pytest.approx(tuple(expected), abs=1e-12)
    assert overall["n_folds"] == 1 and overall["method"] == "bootstrap over test patients"


def test_without_predictions_the_folds_still_give_the_interval(grid):
    root, records = grid
    d = effects.paired_runs(records).pivot(index="fold", columns="scenario", values="diff").to_numpy()
    for path in root.rglob("predictions.npz"):
        path.unlink()
    table = effects.paired_effects(records, n=200, seed=0).set_index("scenario")
    per_fold = d.mean(axis=1)
    low, high = stats.t.interval(0.95, FOLDS - 1, loc=per_fold.mean(), scale=stats.sem(per_fold))
    assert (table.loc["overall", "low"], table.loc["overall", "high"]) == pytest.approx((low, high), abs=1e-12)
    assert (table["n_with_predictions"] == 0).all() and table["unit"].isna().all()
    # One fold and nothing to resample: no interval, rather than a zero-width one.
    single = effects.paired_effects(records[records["fold"] == 0], n=50)
    assert single["low"].isna().all() and single["high"].isna().all()


def test_a_grids_interval_does_not_depend_on_the_other_grids(grid):
    """Before: the draws came from one generator shared across grids, so adding a grid moved paired_high."""
    root, records = grid
    alone, draws_alone = effects.paired_effects(records, n=300, return_draws=True)
    other = records.assign(grid="another")
    both, draws_both = effects.paired_effects(pd.concat([other, records]), n=300, return_draws=True)
    mine = both[both["grid"] == "task"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, mine)
    np.testing.assert_array_equal(draws_alone[("task", "overall")], draws_both[("task", "overall")])
    assert not np.array_equal(draws_both[("another", "overall")], draws_both[("task", "overall")])


def test_repeats_pair_within_fold_and_repeat(repeated):
    table = effects.paired_effects(repeated, n=50).set_index("scenario")
    pairs = effects.paired_runs(repeated)
    assert len(pairs) == 2 * FOLDS * len(SCENARIOS)
    assert table.loc["overall", "n_pairs"] == len(pairs)
    assert table.loc["overall", "diff"] == pytest.approx(pairs.groupby("scenario")["diff"].mean().mean())
    # Without the column, every run is repeat 0: the two repeats' runs would then pair across repeats.
    single = repeated[repeated["repeat"] == 0].drop(columns="repeat")
    assert len(effects.paired_runs(single)) == FOLDS * len(SCENARIOS)


def test_tost_t_form_equals_two_scipy_one_sided_tests():
    rng = np.random.default_rng(0)
    margin = 0.02
    cases = {
        "equivalent within m": rng.normal(0.002, 0.01, 24),
        "different": rng.normal(0.08, 0.01, 24),
        "inconclusive": rng.normal(0.0, 0.05, 5),
    }
    for verdict, d in cases.items():
        result = tost_module.tost(d, margin, method="t")
        lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
        low, high = stats.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert result["p_lower"] == pytest.approx(lower) and result["p_upper"] == pytest.approx(upper)
        assert result["p"] == pytest.approx(max(lower, upper))
        assert (result["low"], result["high"]) == pytest.approx((low, high))
        assert result["equivalent"] == (-margin < low and high < margin)  # the CI-inclusion form, same decision
        assert result["p_difference"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
        assert result["verdict"] == verdict, verdict
    with pytest.raises(ValueError, match="margin"):
        tost_module.tost([0.1, 0.2], 0)


def test_tost_t_form_from_the_folds_equals_the_one_sample_tests_on_the_fold_means():
    rng = np.random.default_rng(2)
    folds = rng.normal(0.004, 0.006, 5)
    by_values = tost_module.tost(folds, 0.02, method="t")
    by_summary = tost_module.tost(None, 0.02, method="t", estimate=folds.mean(), se=stats.sem(folds), df=4)
    for key in ("p_lower", "p_upper", "p", "low", "high", "p_difference"):
        assert by_summary[key] == pytest.approx(by_values[key], rel=1e-12), key
    assert by_summary["verdict"] == by_values["verdict"] and by_summary["n"] == 5
    none = tost_module.tost(None, 0.02, method="t", estimate=0.001, se=float("nan"), df=float("nan"))
    assert np.isnan(none["p"]) and not none["equivalent"]


def test_tost_bootstrap_form_is_the_90_percent_interval_inside_the_margin():
    rng = np.random.default_rng(1)
    for center, margin, verdict in ((0.001, 0.02, "equivalent within m"), (0.05, 0.02, "different")):
        draws = rng.normal(center, 0.008, 5000)
        result = tost_module.tost(draws, margin, method="bootstrap", estimate=center)
        low, high = np.quantile(draws, [0.05, 0.95])
        assert (result["low"], result["high"]) == (low, high)
        lower, upper = (
            ((draws <= -margin).sum() + 1) / (len(draws) + 1),
            ((draws >= margin).sum() + 1) / (len(draws) + 1),
        )
        assert result["p_lower"] == lower and result["p_upper"] == upper
        assert result["equivalent"] == (-margin < low and high < margin)
        assert result["verdict"] == verdict
    wide = tost_module.tost(rng.normal(0.0, 0.05, 5000), 0.02, method="bootstrap", estimate=0.0)
    assert wide["verdict"] == "inconclusive"


def test_mixed_model_equals_statsmodels_called_directly(repeated):
    """The model of the paired differences: scenario effects (sum-to-zero) and a random intercept per fold; the
    intercept's interval and P value on t(F − 1), F the folds."""
    smf = pytest.importorskip("statsmodels.formula.api")
    fit = effects.mixed_model(repeated)
    runs = repeated[np.isfinite(repeated["auc"])]
    a = runs[runs["source"] == "radimagenet"].set_index(["scenario", "fold", "repeat"])["auc"]
    b = runs[runs["source"] == "imagenet"].set_index(["scenario", "fold", "repeat"])["auc"]
    diffs = (a - b).dropna().rename("d").reset_index()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "MLE on the boundary": a heuristic warning, as mixed_model silences it
        model = smf.mixedlm("d ~ C(scenario, Sum)", diffs, groups=diffs["fold"])
        # statsmodels' default (BFGS, then L-BFGS, CG) stops short here (converged False; L-BFGS alone meets a
        # singular matrix); Powell reaches the REML optimum (a higher log-likelihood).
        default, direct = model.fit(), model.fit(method="powell")
    assert direct.converged and not default.converged and direct.llf > default.llf
    effect, se = direct.params["Intercept"], direct.bse["Intercept"]
    assert fit["converged"] and fit["effect"] == pytest.approx(effect, rel=1e-6)
    assert fit["effect"] == pytest.approx(diffs.groupby("scenario")["d"].mean().mean(), rel=1e-9)  # balanced
    assert fit["se"] == pytest.approx(se, rel=1e-4)
    assert fit["se"] == pytest.approx(stats.sem(diffs.groupby("fold")["d"].mean()), rel=1e-4)  # = the fold t SE
    low, high = stats.t.interval(0.95, FOLDS - 1, loc=effect, scale=se)
    assert (fit["low"], fit["high"]) == pytest.approx((low, high), rel=1e-4)
    assert fit["p"] == pytest.approx(2 * stats.t.sf(abs(effect / se), FOLDS - 1), rel=1e-3)
    assert fit["n_pairs"] == len(diffs) and fit["n_groups"] == FOLDS and fit["df"] == FOLDS - 1
    # One split: the fold's shared error is not separable from the effect, so no interval.
    single = effects.mixed_model(repeated[repeated["fold"] == 0])
    assert np.isnan(single["low"]) and single["n_groups"] == 1


def test_mixed_model_on_a_balanced_grid_is_the_t_interval_on_the_folds(tmp_path):
    """With a clear fold effect (REML's fold variance above zero) and every fold holding the same pairs, the
    intercept's SE is the SD of the fold means over √F: the mixed model and the paired interval agree."""
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(4)
    for fold in range(4):
        y = np.repeat([0, 1], 20)
        patients = np.array([f"f{fold}p{i}" for i in range(40)])
        shift = [0.0, 0.3, -0.2, 0.15][fold]  # the fold's test patients and training set move its pairs together
        for scenario in SCENARIOS:
            for source, strength in SOURCES.items():
                gain = shift if source == "radimagenet" else 0.0
                scores = np.clip((strength + gain) * y + rng.uniform(0, 0.5, 40), 0, 1.5)
                _write_run(tmp_path, source, scenario, fold, y, patients, scores, 0.5)
    records = load_records(tmp_path)
    fit = effects.mixed_model(records)
    d = effects.paired_runs(records).pivot(index="fold", columns="scenario", values="diff").mean(axis=1)
    assert fit["se"] == pytest.approx(stats.sem(d), rel=1e-3)
    low, high = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert (fit["low"], fit["high"]) == pytest.approx((low, high), rel=1e-3)


def test_mixed_model_falls_back_when_the_optimizer_meets_a_singular_matrix(repeated, monkeypatch):
    """statsmodels' gradient optimizers can meet a singular matrix when a variance runs to its boundary (L-BFGS did,
    once in 500 simulated grids of 5 folds × 5 repeats); the fit then falls back to derivative-free optimizers, and
    reports no interval, rather than stopping the report, when every one fails."""
    pytest.importorskip("statsmodels")
    from statsmodels.regression.mixed_linear_model import MixedLM

    reference = effects.mixed_model(repeated)
    fit = MixedLM.fit

    def singular_gradients(self, *args, method=None, **kwargs):
        if method in (None, "bfgs", "lbfgs", "cg"):
            raise np.linalg.LinAlgError("Singular matrix")
        return fit(self, *args, method=method, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", singular_gradients)
    fallback = effects.mixed_model(repeated)
    assert fallback["effect"] == pytest.approx(reference["effect"], rel=1e-6)
    assert fallback["se"] == pytest.approx(reference["se"], rel=1e-2)

    def always_singular(self, *args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(MixedLM, "fit", always_singular)
    failed = effects.mixed_model(repeated)
    assert np.isnan(failed["effect"]) and np.isnan(failed["low"]) and not failed["converged"]


def test_a_missing_statsmodels_names_the_extra(grid, monkeypatch):
    _, records = grid
    monkeypatch.setitem(sys.modules, "statsmodels.formula.api", None)
    with pytest.raises(ImportError, match=r"radtransfer\[stats\]"):
        effects.mixed_model(records)


def test_practitioner_picks_the_lowest_validation_loss_per_fold(grid):
    root, records = grid
    table = effects.practitioner(records).set_index("source")
    for source in SOURCES:
        chosen = []
        for fold in range(FOLDS):
            runs = [
                RunRecord.read(root / "task" / "runs" / source / s.id / f"fold{fold}" / "record.json")
                for s in SCENARIOS
            ]
            best = min(runs, key=lambda record: record.best_val_loss)
            chosen.append(best.metrics["auc"])
        assert table.loc[source, "auc"] == pytest.approx(np.mean(chosen))
        assert table.loc[source, "n_selections"] == FOLDS


def test_summarize_carries_the_effects(tmp_path):
    root = tmp_path
    records = _grid(root, 0, images_per_patient=1)  # one image per patient: the per-run pairs use DeLong (fast)
    table = report.summarize(root, equivalence_margin=0.05, n_boot=300).set_index("source")
    row = table.loc["radimagenet"]
    paired, draws = effects.paired_effects(records, n=300, return_draws=True)
    overall = paired.set_index("scenario").loc["overall"]
    assert (row["paired_diff"], row["paired_low"], row["paired_high"]) == (
        overall["diff"],
        overall["low"],
        overall["high"],
    )
    assert row["paired_wins"] == overall["wins"]
    # Each one-sided test at 2.5%: the replicates' 95% interval must lie within ±m.
    replicates = draws[("task", "overall")]
    boot = tost_module.tost(
        replicates, 0.05, alpha=0.025, alpha_difference=0.05, method="bootstrap", estimate=overall["diff"]
    )
    assert row["tost_p"] == boot["p"] and row["tost_verdict"] == boot["verdict"]
    assert (row["tost_low"], row["tost_high"]) == tuple(
        np.quantile(replicates[np.isfinite(replicates)], [0.025, 0.975])
    )
    # The t form on the folds: one-sample t tests of the fold means (the folds' mean over scenarios), not of the
    # scenario means, which share the folds' patients.
    fold_means = _fold_means(root).mean(axis=1)
    lower = stats.ttest_1samp(fold_means, -0.05, alternative="greater").pvalue
    upper = stats.ttest_1samp(fold_means, 0.05, alternative="less").pvalue
    assert row["tost_t_p"] == pytest.approx(max(lower, upper), rel=1e-9)
    assert row["paired_covers"] == "training sets, seeds and test patients"
    practitioner = effects.practitioner(records).set_index("source")["auc"]
    assert row["practitioner_diff"] == pytest.approx(practitioner["radimagenet"] - practitioner["imagenet"])
    assert table.loc["imagenet", "practitioner_auc"] == pytest.approx(practitioner["imagenet"])
    if importlib.util.find_spec("statsmodels") is not None:
        assert row["mixed_effect"] == pytest.approx(effects.mixed_model(records)["effect"])
    without = report.summarize(root, mixed=False, n_boot=50)
    assert "tost_p" not in without.columns and without["mixed_effect"].isna().all()


# -- coverage on simulated grids with a known truth (benchmarks/effects_coverage.py, small) ---------------------

SIM_REFERENCE, SIM_GAIN = np.array([1.2, 1.6]), 0.4  # each scenario's separation (reference), candidate's gain
SIM_SD = {"patient": 1.0, "patient_source": 0.3, "image": 0.5, "run_image": 0.3}
SIM_TRAINING_SD = {"fold": 0.1, "fold_scenario": 0.1, "seed": 0.1}


def _simulated_records(rng, folds, repeats, per_class=10, images=2):
    """One simulated grid's records (the model of benchmarks/effects_coverage.py, smaller): a run's score is
    δ·y + patient effect (shared by every run) + patient × source effect (shared by the source's runs of the fold) +
    image effect + the run's image noise, δ the separation plus fold-level, fold × scenario and per-repeat (seed)
    training effects. The records hold each run's AUC on its fold's test patients (no predictions: the interval
    over folds is the same with them, test_the_interval_is_the_t_interval_on_the_folds)."""
    import pandas as pd

    patient = np.repeat(np.arange(2 * per_class), images)
    y = np.repeat(np.repeat([0, 1], per_class), images)
    positives = int(y.sum())
    scenarios, columns = len(SIM_REFERENCE), []
    for fold in range(folds):
        shared = rng.normal(0, SIM_SD["patient"], 2 * per_class)[patient] + rng.normal(0, SIM_SD["image"], len(y))
        for source, gain in (("radimagenet", SIM_GAIN), ("imagenet", 0.0)):
            own = rng.normal(0, SIM_SD["patient_source"], 2 * per_class)[patient]
            training = (
                rng.normal(0, SIM_TRAINING_SD["fold"])
                + rng.normal(0, SIM_TRAINING_SD["fold_scenario"], (scenarios, 1))
                + rng.normal(0, SIM_TRAINING_SD["seed"], (scenarios, repeats))
            )
            delta = (SIM_REFERENCE + gain)[:, None] + training  # (scenarios, repeats)
            noise = rng.normal(0, SIM_SD["run_image"], (scenarios, repeats, len(y)))
            score = delta[..., None] * y + shared + own + noise
            ranks = score.argsort(axis=-1).argsort(axis=-1) + 1  # no ties: the Mann-Whitney AUC from ranks
            auc = (ranks[..., y == 1].sum(axis=-1) - positives * (positives + 1) / 2) / (
                positives * (len(y) - positives)
            )
            for s in range(scenarios):
                for repeat in range(repeats):
                    columns.append((source, f"s{s}", fold, repeat, auc[s, repeat]))
    frame = pd.DataFrame(columns, columns=["source", "scenario", "fold", "repeat", "auc"])
    frame["path"] = "/nonexistent/" + frame["source"] + frame["scenario"] + frame["fold"].astype(str)
    fixed = {"grid": "sim", "task": "sim", "status": "finished", "backbone": "resnet50", "strategy": "freeze_all"}
    return frame.assign(**fixed, learning_rate=1e-3)


def test_intervals_cover_a_known_true_difference():
    """200 simulated grids (5 folds × 3 repeats × 2 scenarios): the overall 95% interval covers the true difference
    in population AUC in 186-200 of them (before: a scenario's pairs were resampled as independent units, and 99 of
    200 covered), and TOST's t form with the margin at the truth says "equivalent" at most 5% of the time (plus
    Monte Carlo slack)."""
    scale = np.sqrt(2 * sum(v**2 for v in SIM_SD.values()) + sum(v**2 for v in SIM_TRAINING_SD.values()))
    truth = float(np.mean(stats.norm.cdf((SIM_REFERENCE + SIM_GAIN) / scale) - stats.norm.cdf(SIM_REFERENCE / scale)))
    rng = np.random.default_rng(2026)
    grids = 200  # one folder of 200 grids, as the report reads a folder of grids
    records = pd.concat([_simulated_records(rng, 5, 3).assign(grid=f"sim{i:03d}") for i in range(grids)])
    table, draws = effects.paired_effects(records, n=20, return_draws=True)
    overall = table[table["scenario"] == "overall"]
    assert len(overall) == grids
    covered = int(((overall["low"] <= truth) & (truth <= overall["high"])).sum())
    assert 186 <= covered <= 200, covered
    if hasattr(effects, "equivalence"):
        equivalent = sum(
            tost_module.equivalence(row, draws[(row["grid"], "overall")], truth)["t"]["equivalent"]
            for _, row in overall.iterrows()
        )
        assert equivalent <= 18, equivalent

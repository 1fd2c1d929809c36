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
from radtransfer.grid.records import RunRecord, load_records

SCENARIOS = [
    protocol.Scenario(backbone, strategy, 1e-3)
    for backbone in ("resnet50", "densenet121")
    for strategy in ("freeze_all", "unfreeze_all")
]
SOURCES = {"radimagenet": 0.35, "imagenet": 0.25}  # how strongly each source's scores follow the label
FOLDS = 3


def _write_run(root, source, scenario, fold, y, patients, scores, val_loss):
    from radtransfer.evaluation.stats import auc_score

    folder = root / "task" / "runs" / source / scenario.id / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    probabilities = np.stack([1 - scores, scores], 1)
    RunRecord(
        run_id=f"{source}/{scenario.id}/fold{fold}",
        task="task",
        source=source,
        **scenario.to_dict(),
        scenario=scenario.id,
        fold=fold,
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


def test_weighted_aucs_equal_sklearn_with_sample_weights():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50).astype(bool)
    scores = np.round(rng.uniform(0, 1, 50), 1)  # many ties
    weights = rng.integers(0, 4, (20, 50)).astype(float)
    got = effects.weighted_aucs(y, scores, weights)
    expected = [roc_auc_score(y, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isnan(effects.weighted_aucs(y, scores, (~y)[None].astype(float)))[0]  # no positive weight
    # More classes: the macro one-vs-rest AUC, as stats.auc_score, under unit weights.
    from radtransfer.evaluation.stats import auc_score

    labels = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet(np.ones(3), 60)
    got = effects._weighted_auc_score(labels, probabilities, np.ones((1, 60)))[0]
    assert got == pytest.approx(auc_score(labels, probabilities), rel=1e-12)
    assert got == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"), rel=1e-12)


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


def _independent_bootstrap(root, n, seed):
    """The two-level bootstrap written out with loops: runs with replacement within scenario, then for each drawn
    run its patients with replacement within class, both sources scored on the same images (rank AUC)."""
    rng = np.random.default_rng(seed)
    data = {}
    for scenario in SCENARIOS:
        for fold in range(FOLDS):
            runs = {s: root / "task" / "runs" / s / scenario.id / f"fold{fold}" for s in SOURCES}
            y, a, patients = _load(runs["radimagenet"])
            b = _load(runs["imagenet"])[1]
            ids = np.unique(patients)
            label = {p: y[patients == p][0] for p in ids}
            strata = [[p for p in ids if label[p] == c] for c in (0, 1)]
            images = {p: np.flatnonzero(patients == p) for p in ids}
            data[(scenario.id, fold)] = (y, a[:, 1], b[:, 1], strata, images)
    overall = np.zeros(n)
    for scenario in SCENARIOS:
        for r in range(n):
            folds = rng.integers(0, FOLDS, FOLDS)
            total = 0.0
            for fold in folds:
                y, a, b, strata, images = data[(scenario.id, fold)]
                chosen = [p for stratum in strata for p in rng.choice(stratum, len(stratum))]
                index = np.concatenate([images[p] for p in chosen])
                total += _rank_auc(y[index], a[index]) - _rank_auc(y[index], b[index])
            overall[r] += total / FOLDS / len(SCENARIOS)
    return overall


def _rank_auc(y, s):
    ranks = stats.rankdata(s)
    m = y.sum()
    return (ranks[y == 1].sum() - m * (m + 1) / 2) / (m * (len(y) - m))


def test_two_level_bootstrap_agrees_with_a_loop_written_out(grid):
    root, records = grid
    n = 2000
    table, draws = effects.paired_effects(records, n=n, seed=1, return_draws=True)
    overall = table.set_index("scenario").loc["overall"]
    loop = _independent_bootstrap(root, 600, seed=2)
    # Monte Carlo agreement: the SD and the interval of the replicates (different random streams).
    assert overall["se"] == pytest.approx(loop.std(ddof=1), rel=0.12)
    width = overall["high"] - overall["low"]
    assert overall["low"] == pytest.approx(np.quantile(loop, 0.025), abs=0.15 * width)
    assert overall["high"] == pytest.approx(np.quantile(loop, 0.975), abs=0.15 * width)
    assert draws[("task", "overall")].mean() == pytest.approx(loop.mean(), abs=0.1 * width)
    expected = np.quantile(draws[("task", "overall")], [0.025, 0.975])
    assert (overall["low"], overall["high"]) == pytest.approx(tuple(expected), abs=1e-12)
    # Seeded and deterministic.
    again = effects.paired_effects(records, n=n, seed=1)
    pd.testing.assert_frame_equal(table, again)
    assert effects.paired_effects(records, n=n, seed=2)["low"].iloc[-1] != overall["low"]


def test_without_predictions_only_runs_are_resampled(grid):
    root, records = grid
    for path in root.rglob("predictions.npz"):
        path.unlink()
    n = 4000
    table = effects.paired_effects(records, n=n, seed=0).set_index("scenario")
    pairs = effects.paired_runs(records)
    variances = []
    for scenario, group in pairs.groupby("scenario"):
        d = group["diff"].to_numpy()
        # The bootstrap SD of a mean of k draws with replacement: the population SD / sqrt(k).
        expected = d.std(ddof=0) / np.sqrt(len(d))
        variances.append(expected**2)
        assert table.loc[scenario, "se"] == pytest.approx(expected, rel=0.06)
        assert table.loc[scenario, "n_with_predictions"] == 0
    expected_overall = np.sqrt(np.sum(variances)) / len(variances)  # scenarios fixed and independent
    assert table.loc["overall", "se"] == pytest.approx(expected_overall, rel=0.06)


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
        result = effects.tost(d, margin, method="t")
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
        effects.tost([0.1, 0.2], 0)


def test_tost_bootstrap_form_is_the_90_percent_interval_inside_the_margin():
    rng = np.random.default_rng(1)
    for center, margin, verdict in ((0.001, 0.02, "equivalent within m"), (0.05, 0.02, "different")):
        draws = rng.normal(center, 0.008, 5000)
        result = effects.tost(draws, margin, method="bootstrap", estimate=center)
        low, high = np.quantile(draws, [0.05, 0.95])
        assert (result["low"], result["high"]) == (low, high)
        assert result["p_lower"] == (draws <= -margin).mean() and result["p_upper"] == (draws >= margin).mean()
        assert result["equivalent"] == (-margin < low and high < margin)
        assert result["verdict"] == verdict
    wide = effects.tost(rng.normal(0.0, 0.05, 5000), 0.02, method="bootstrap", estimate=0.0)
    assert wide["verdict"] == "inconclusive"


def test_mixed_model_equals_statsmodels_called_directly(repeated):
    smf = pytest.importorskip("statsmodels.formula.api")
    fit = effects.mixed_model(repeated)
    runs = repeated[np.isfinite(repeated["auc"])].copy()
    runs["radimagenet"] = (runs["source"] == "radimagenet").astype(float)
    groups = runs["fold"].astype(str) + "-" + runs["repeat"].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "MLE on the boundary": a heuristic warning, as mixed_model silences it
        direct = smf.mixedlm("auc ~ radimagenet + C(backbone) + C(strategy)", runs, groups=groups).fit()
    assert fit["effect"] == pytest.approx(direct.params["radimagenet"], rel=1e-6)
    assert fit["se"] == pytest.approx(direct.bse["radimagenet"], rel=1e-4)
    low, high = direct.conf_int().loc["radimagenet"]
    assert (fit["low"], fit["high"]) == pytest.approx((low, high), rel=1e-4)
    assert fit["p"] == pytest.approx(direct.pvalues["radimagenet"], rel=1e-3, abs=1e-12)
    assert fit["n_runs"] == len(runs) and fit["n_groups"] == 2 * FOLDS


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
    boot = effects.tost(draws[("task", "overall")], 0.05, method="bootstrap", estimate=overall["diff"])
    assert row["tost_p"] == boot["p"] and row["tost_verdict"] == boot["verdict"]
    by_t = effects.tost(paired[paired["scenario"] != "overall"]["diff"], 0.05)
    assert row["tost_t_p"] == pytest.approx(by_t["p"]) and row["tost_t_verdict"] == by_t["verdict"]
    practitioner = effects.practitioner(records).set_index("source")["auc"]
    assert row["practitioner_diff"] == pytest.approx(practitioner["radimagenet"] - practitioner["imagenet"])
    assert table.loc["imagenet", "practitioner_auc"] == pytest.approx(practitioner["imagenet"])
    if importlib.util.find_spec("statsmodels") is not None:
        assert row["mixed_effect"] == pytest.approx(effects.mixed_model(records)["effect"])
    without = report.summarize(root, mixed=False, n_boot=50)
    assert "tost_p" not in without.columns and without["mixed_effect"].isna().all()

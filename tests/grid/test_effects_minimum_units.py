"""The one minimum-units rule (``stats.too_few``) in a grid's statistics: the per-run paired tests and the wins
counted from them, the paired effect's interval, TOST and the mixed model give no interval, no P value and no
verdict under 3 units (test patients of a class, or folds), and say why in the tables the report writes; from 3 on,
the interval is the one scipy gives."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from scipy import stats

from radtransfer import protocol, report
from radtransfer.grid import effects
from radtransfer.grid import equivalence as tost_module
from radtransfer.grid.records import RunRecord, load_records

SCENARIOS = [protocol.Scenario("resnet50", strategy, 1e-3) for strategy in ("unfreeze_top10", "unfreeze_all")]
HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None


def _grid(root, folds, per_class, images=2, same_folds=False):
    """A grid of two scenarios: per fold ``per_class`` test patients of each class with ``images`` images each;
    radimagenet's scores separate the classes, imagenet's barely (``same_folds``: every fold the same predictions,
    so the folds' differences agree exactly)."""
    from radtransfer.stats import auc_score

    rng = np.random.default_rng(3)
    for fold in range(folds):
        y = np.repeat(np.repeat([0, 1], per_class), images)
        patients = np.repeat([f"f{fold}p{i}" for i in range(2 * per_class)], images)
        if fold == 0 or not same_folds:
            noise = {s: rng.uniform(0, 0.6, (len(SCENARIOS), len(y))) for s in ("radimagenet", "imagenet")}
        for source, strength in (("radimagenet", 0.5), ("imagenet", 0.1)):
            for k, scenario in enumerate(SCENARIOS):
                scores = np.clip(strength * y + noise[source][k], 0, 1)
                probabilities = np.stack([1 - scores, scores], 1)
                folder = root / "task" / "runs" / source / scenario.id / f"fold{fold}"
                folder.mkdir(parents=True, exist_ok=True)
                RunRecord(
                    run_id=f"{source}/{scenario.id}/fold{fold}",
                    task="task",
                    source=source,
                    **scenario.to_dict(),
                    scenario=scenario.id,
                    fold=fold,
                    metrics={"auc": auc_score(y, probabilities), "auc_ci": [0.5, 0.9], "accuracy": 0.7},
                    best_val_loss=0.5,
                ).write(folder)
                np.savez(folder / "predictions.npz", y_true=y, probabilities=probabilities, patient_ids=patients)
    return load_records(root)


def _overall(table):
    return table.set_index("scenario").loc["overall"]


def test_a_single_split_on_two_test_patients_gives_no_interval_no_verdict_and_no_win(tmp_path):
    """1 + 1 test patients: every resample holds both; the code gave a zero-width interval, TOST "different" and
    each run pair P = 0, counted as RadImageNet better at P < .05."""
    records = _grid(tmp_path, folds=1, per_class=1)
    table, draws = effects.paired_effects(records, n=200, return_draws=True)
    overall = _overall(table)
    reason = "no interval (1 patient in the smallest class: fewer than 3)"
    assert overall["diff"] > 0 and math.isnan(overall["low"]) and math.isnan(overall["high"])
    assert set(table["no_interval"]) == {reason} and np.isnan(draws[("task", "overall")]).all()
    both = tost_module.equivalence(overall, draws[("task", "overall")], margin=0.05)
    for form in both.values():
        assert math.isnan(form["p"]) and not form["equivalent"] and form["verdict"].startswith("no verdict (")

    written = report.write(tmp_path, formats=("md",), equivalence_margin=0.05)
    summary = report.summarize(tmp_path, equivalence_margin=0.05, n_boot=200).set_index("source")
    row = summary.loc["radimagenet"]
    assert row["run_pairs"] == 2 and row["run_pairs_better"] == 0 and row["run_pairs_untested"] == 2
    assert row["paired_no_interval"] == reason and math.isnan(row["paired_low"])
    assert row["tost_verdict"] == "no verdict (1 patient in the smallest class: fewer than 3)"
    assert math.isnan(row["tost_p"]) and math.isnan(row["tost_t_p"])
    if HAS_STATSMODELS:
        assert row["mixed_no_interval"] == "no interval (1 fold: fewer than 3)" and math.isnan(row["mixed_p"])
    pairs = report.paired_comparisons(tmp_path)
    assert pairs["p"].isna().all() and set(pairs["no_interval"]) == {reason}
    pairs_md = open(written["pairs.md"]).read()
    assert pairs_md.count(f"| – | {reason} |") == 2  # p, then why there is none
    assert reason in open(written["summary.md"]).read()


def test_two_folds_give_no_interval_no_tost_and_no_mixed_model(tmp_path):
    records = _grid(tmp_path, folds=2, per_class=4)
    table, draws = effects.paired_effects(records, n=200, return_draws=True)
    overall = _overall(table)
    assert math.isnan(overall["low"]) and overall["no_interval"] == "no interval (2 folds: fewer than 3)"
    both = tost_module.equivalence(overall, draws[("task", "overall")], margin=0.05)
    assert both["t"]["verdict"] == both["bootstrap"]["verdict"] == "no verdict (2 folds: fewer than 3)"
    assert math.isnan(both["t"]["p"]) and math.isnan(both["bootstrap"]["p"])
    by_values = tost_module.tost([0.01, 0.02], 0.05, method="t")
    assert by_values["verdict"] == "no verdict (2 folds: fewer than 3)" and math.isnan(by_values["p"])
    if HAS_STATSMODELS:
        fit = effects.mixed_model(records)
        assert fit["no_interval"] == "no interval (2 folds: fewer than 3)"
        assert all(math.isnan(fit[k]) for k in ("low", "high", "p"))


def test_three_folds_give_the_t_interval_on_the_folds(tmp_path):
    records = _grid(tmp_path, folds=3, per_class=4)
    overall = _overall(effects.paired_effects(records, n=200))
    fold_means = effects.paired_runs(records).groupby("fold")["diff"].mean().to_numpy()
    low, high = stats.t.interval(0.95, 2, loc=fold_means.mean(), scale=stats.sem(fold_means))
    assert overall["no_interval"] is None and (overall["low"], overall["high"]) == pytest.approx((low, high))
    t_form = tost_module.tost(fold_means, 0.05, method="t")
    assert t_form["no_interval"] is None and math.isfinite(t_form["p"])
    if HAS_STATSMODELS:
        fit = effects.mixed_model(records)
        assert fit["no_interval"] is None and fit["low"] < fit["effect"] < fit["high"]


def test_a_single_split_on_three_test_patients_per_class_gives_its_interval(tmp_path):
    records = _grid(tmp_path, folds=1, per_class=3)
    table, draws = effects.paired_effects(records, n=300, return_draws=True)
    overall = _overall(table)
    finite = draws[("task", "overall")]
    assert overall["no_interval"] is None and overall["low"] < overall["high"]
    assert (overall["low"], overall["high"]) == tuple(np.quantile(finite[np.isfinite(finite)], [0.025, 0.975]))
    pairs = report.paired_comparisons(tmp_path)
    assert pairs["no_interval"].isna().all() and pairs["p"].notna().all()


def test_folds_that_agree_exactly_give_no_interval(tmp_path):
    """Three folds with the same predictions: a fold-level SE of 0, which gave a zero-width t interval."""
    records = _grid(tmp_path, folds=3, per_class=4, same_folds=True)
    overall = _overall(effects.paired_effects(records, n=100))
    assert math.isnan(overall["low"]) and overall["se"] == 0
    assert overall["no_interval"] == "no interval (the 3 folds agree exactly: no spread to estimate from)"

"""The one minimum-units rule (``stats.too_few``): under 3 units on a side a statistic rests on, no interval, no P
value and no verdict, and the result says why; from 3 on, the interval is the one an independent computation gives.
The paired bootstrap of two runs, the single-run AUC and an external site's sensitivity and specificity here; the
grid's effects, TOST and mixed model in tests/grid/test_minimum_units.py."""

from __future__ import annotations

import json
import math

import numpy as np
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from radtransfer import stats
from radtransfer.evaluation import metrics_from_predictions
from radtransfer.evaluation.external import operating_point_intervals, side_by_side
from radtransfer.evaluation.metrics import describe_interval
from radtransfer.utils.io import write_json_atomic


def _two_class(scores):
    p = sps.norm.cdf(np.asarray(scores, dtype=float))
    return np.stack([1 - p, p], axis=1)


def _patients(per_class, images=3, seed=0):
    """``per_class`` patients of each class with ``images`` images each; model a separates them better than b."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.repeat([0, 1], per_class), images)
    groups = np.repeat([f"p{i}" for i in range(2 * per_class)], images)
    a = _two_class(2.0 * y + rng.normal(0, 1, len(y)))
    b = _two_class(0.5 * y + rng.normal(0, 1, len(y)))
    return y, a, b, groups


def test_the_rule_is_three_units():
    assert stats.MIN_UNITS == 3
    assert stats.too_few(2, "patient", "positive") == "no interval (2 positive patients: fewer than 3)"
    assert stats.too_few(1, "fold") == "no interval (1 fold: fewer than 3)"
    assert stats.too_few(3, "fold") is None and stats.too_few(None) is None


def test_a_paired_bootstrap_on_two_test_patients_has_no_p_value_and_no_interval():
    """1 + 1 patients: every resample holds both, every resampled difference is the observed one; the code gave a
    zero-width interval and P = 0, counted as a win at P < .05."""
    y, a, b, groups = _patients(1)
    result = stats.compare_aucs(y, a, b, groups=groups, n=200)
    assert result["method"] == "paired_bootstrap" and result["diff"] > 0
    assert math.isnan(result["p"]) and all(math.isnan(v) for v in result["ci"])
    assert result["no_interval"] == "no interval (1 patient in the smallest class: fewer than 3)"
    assert result["n_units"] == 2 and result["resamples"] == 0
    # 2 patients per class, and 2 images without patient ids: below the minimum too.
    y2, a2, b2, groups2 = _patients(2)
    assert math.isnan(stats.compare_aucs(y2, a2, b2, groups=groups2, n=200)["p"])
    two_images = stats.compare_aucs([0, 1], [[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.6], [0.6, 0.4]], n=200)
    assert math.isnan(two_images["p"]) and two_images["no_interval"].startswith("no interval (1 image")


def test_three_patients_per_class_give_the_paired_bootstrap_a_loop_with_scikit_learn_gives():
    y, a, b, groups = _patients(3)
    result = stats.paired_bootstrap_test(y, a, b, groups=groups, n=300, seed=4)
    assert result["no_interval"] is None and result["resamples"] == 300
    # The same draws (the function's documented stratified scheme: within each majority class, with replacement),
    # each resample's AUCs by scikit-learn.
    rng = np.random.default_rng(4)
    patients = np.unique(groups)
    label = {p: y[groups == p][0] for p in patients}
    strata = [np.array([i for i, p in enumerate(patients) if label[p] == c]) for c in (0, 1)]
    diffs = []
    for _ in range(300):
        chosen = np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata])
        index = np.concatenate([np.flatnonzero(groups == patients[u]) for u in chosen])
        diffs.append(roc_auc_score(y[index], a[index, 1]) - roc_auc_score(y[index], b[index, 1]))
    diffs = np.array(diffs)
    p = min(1.0, 2 * (min((diffs <= 0).sum(), (diffs >= 0).sum()) + 1) / (len(diffs) + 1))
    assert result["p"] == p and result["ci"] == list(np.quantile(diffs, [0.025, 0.975]))
    assert result["ci"][0] < result["ci"][1]


def test_delong_needs_three_cases_per_class():
    """compare_aucs' DeLong path (one image per patient) follows the same rule: 2 + 2 images get no test."""
    rng = np.random.default_rng(0)
    for per_class, tested in ((2, False), (3, True)):
        y = np.repeat([0, 1], per_class)
        result = stats.compare_aucs(y, _two_class(y + rng.normal(0, 1, len(y))), _two_class(rng.normal(0, 1, len(y))))
        assert math.isfinite(result["p"]) == tested and (result["no_interval"] is None) == tested


def test_a_single_run_auc_on_two_patients_per_class_has_no_interval_and_says_why():
    y, a, _, groups = _patients(2)
    metrics = metrics_from_predictions(y, a, bootstrap=100, patient_ids=groups)
    assert all(math.isnan(v) for v in metrics["auc_ci"]) and metrics["auc_ci_resamples"] == 0
    assert metrics["auc_ci_note"] == "no interval (2 patients in the smallest class: fewer than 3)"
    assert describe_interval(metrics) == metrics["auc_ci_note"]
    y, a, _, groups = _patients(3)
    metrics = metrics_from_predictions(y, a, bootstrap=100, patient_ids=groups)
    low, high = metrics["auc_ci"]
    assert low < high and metrics["auc_ci_note"].startswith("only 3 patients in the smallest class (under 20)")


def _site(positive, negative, called_positive, images=2):
    """An external site's labels and raw outputs: ``called_positive`` of the positive patients called positive at
    0.5, every negative one called negative; patients of ``images`` images."""
    y = np.repeat([1] * positive + [0] * negative, images)
    groups = np.repeat([f"s{i}" for i in range(positive + negative)], images)
    calls = np.repeat([1] * called_positive + [0] * (positive - called_positive) + [0] * negative, images)
    raw = _two_class(np.where(calls == 1, 1.0, -1.0) + np.linspace(-0.2, 0.2, len(y)))
    return y, raw, groups


def test_an_external_sites_sensitivity_on_two_positive_patients_has_no_interval(tmp_path):
    """2 positive patients, both missed: the code printed "0.000 (0.000–0.000)" beside a footnote."""
    y, raw, groups = _site(2, 6, called_positive=0)
    development = metrics_from_predictions(y, raw, ["neg", "pos"], bootstrap=200, patient_ids=groups)
    operating_point_intervals(development, y, raw, groups, n=200)
    point = development["operating_point"]
    assert point["sensitivity"] == 0.0 and all(math.isnan(v) for v in point["sensitivity_ci"])
    assert point["sensitivity_ci_note"] == "no interval (2 positive patients: fewer than 3)"
    assert point["sensitivity_ci_units"] == 2
    low, high = point["specificity_ci"]  # 6 negative patients: an interval (1–1 here, every one called right)
    assert math.isfinite(low) and math.isfinite(high) and point["specificity_ci_note"].startswith("only 6 negative")

    printed = side_by_side({"site": "B", "development": development})
    assert "sensitivity (95% CI)  0.000, no interval (2 positive patients: fewer than 3)" in printed
    assert "0.000–0.000" not in printed and "note: sensitivity" not in printed
    write_json_atomic(tmp_path / "external-B.json", {"site": "B", "development": development})
    written = json.loads((tmp_path / "external-B.json").read_text())["development"]["operating_point"]
    assert written["sensitivity_ci"] == [None, None] and written["sensitivity_ci_note"] == point["sensitivity_ci_note"]


def test_three_positive_patients_give_the_sensitivity_its_interval():
    y, raw, groups = _site(3, 6, called_positive=2)
    development = metrics_from_predictions(y, raw, ["neg", "pos"], bootstrap=200, patient_ids=groups)
    operating_point_intervals(development, y, raw, groups, n=200)
    point = development["operating_point"]
    low, high = point["sensitivity_ci"]
    assert point["sensitivity"] == 2 / 3 and 0 <= low < 2 / 3 < high <= 1
    assert point["sensitivity_ci_note"].startswith("only 3 positive patients (under 20)")

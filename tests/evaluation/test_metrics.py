"""evaluate's metrics from given labels and probabilities (``metrics_from_predictions``), checked against
scikit-learn and the definitions: the AUC (positive class, or macro one-vs-rest), the confusion matrix, the interval's
unit, the operating point at a threshold chosen on validation data."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from simulated import clustered

import radtransfer as rt
from radtransfer import stats
from radtransfer.evaluation import metrics_from_predictions


def test_evaluate_metrics_say_which_unit_was_resampled():
    labels, probabilities, groups, _ = clustered(np.random.default_rng(2), patients=12, slices=5)
    with_patients = metrics_from_predictions(labels, probabilities, bootstrap=200, patient_ids=groups)
    without = metrics_from_predictions(labels, probabilities, bootstrap=200)
    assert with_patients["auc_ci_unit"] == "patient" and with_patients["n_patients"] == 12
    assert without["auc_ci_unit"] == "image" and without["n_patients"] is None
    assert with_patients["auc_ci_method"] in ("BCa", "percentile")


def test_operating_point_uses_the_given_threshold_not_the_test_set():
    from sklearn.metrics import confusion_matrix, roc_curve

    rng = np.random.default_rng(6)
    y_val, y_test = rng.integers(0, 2, 120), rng.integers(0, 2, 120)
    p_val = np.clip(0.3 * y_val + rng.uniform(0, 0.7, 120), 0, 1)
    p_test = np.clip(0.3 * y_test + rng.uniform(0, 0.7, 120), 0, 1)
    fpr, tpr, thresholds = roc_curve(y_val, p_val)
    threshold = float(thresholds[np.argmax(tpr - fpr)])
    assert stats.youden_threshold(y_val == 1, p_val) == pytest.approx(threshold)
    result = metrics_from_predictions(
        y_test, np.stack([1 - p_test, p_test], 1), bootstrap=0, threshold=threshold, threshold_source="validation"
    )
    tn, fp, fn, tp = confusion_matrix(y_test, p_test >= threshold).ravel()
    point = result["operating_point"]
    assert point["chosen_on"] == "validation" and point["threshold"] == threshold
    assert point["sensitivity"] == pytest.approx(tp / (tp + fn)) and point["specificity"] == pytest.approx(
        tn / (tn + fp)
    )
    assert "youden" not in result  # no threshold is chosen on the test set any more


def test_binary_metrics_match_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.35 * y + rng.uniform(0, 0.65, 200), 0, 1)
    probabilities = np.stack([1 - p1, p1], axis=1)
    result = rt.evaluation.metrics_from_predictions(y, probabilities, ["benign", "malignant"], bootstrap=300)
    assert result["auc"] == pytest.approx(roc_auc_score(y, p1))
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, probabilities.argmax(1)))
    assert result["confusion_matrix"] == confusion_matrix(y, probabilities.argmax(1)).tolist()
    low, high = result["auc_ci"]
    assert low < result["auc"] < high
    matrix = np.array(result["confusion_matrix"])
    assert result["sensitivity"]["malignant"] == pytest.approx(matrix[1, 1] / matrix[1].sum())
    assert result["specificity"]["malignant"] == pytest.approx(matrix[0, 0] / matrix[0].sum())
    assert result["operating_point"]["threshold"] == 0.5 and result["operating_point"]["chosen_on"] == "default"
    # The reference's metric, Keras AUC over the flattened two columns, is a different number.
    flattened = keras.metrics.AUC()
    flattened.update_state(np.eye(2)[y], probabilities)
    assert abs(float(flattened.result()) - result["auc"]) > 1e-3


def test_multiclass_auc_is_macro_one_vs_rest():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 120)
    logits = rng.normal(size=(120, 4)) + 1.5 * np.eye(4)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = rt.evaluation.metrics_from_predictions(y, probabilities, bootstrap=0)
    assert result["auc"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr", average="macro"))
    for c in range(4):
        assert result["per_class_auc"][str(c)] == pytest.approx(roc_auc_score(y == c, probabilities[:, c]))


def test_an_operating_threshold_object_and_the_threshold_keywords_give_the_same_operating_point():
    """``threshold=OperatingThreshold(value, source, threshold_class)`` or the value with ``threshold_source=`` and
    ``threshold_class=`` (the keywords of before): one operating point, the calls of class 0's threshold converted
    for class 1 by hand; any other keyword is refused as Python refuses one."""
    from radtransfer.evaluation import OperatingThreshold

    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 150)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, 150), 0, 1)
    probabilities = np.stack([1 - p1, p1], 1)
    by_keywords = metrics_from_predictions(
        y, probabilities, bootstrap=0, threshold=0.6, threshold_source="validation", threshold_class=0
    )
    by_object = metrics_from_predictions(
        y, probabilities, bootstrap=0, threshold=OperatingThreshold(0.6, "validation", threshold_class=0)
    )
    assert json.dumps(by_object, sort_keys=True) == json.dumps(by_keywords, sort_keys=True)  # NaN bins too
    point = by_object["operating_point"]
    called = ~(probabilities[:, 0] >= 0.6)  # class 1 is called where class 0 is not
    assert point["threshold_class"] == "0" and point["chosen_on"] == "validation"
    assert point["sensitivity"] == pytest.approx(called[y == 1].mean())
    assert point["specificity"] == pytest.approx((~called[y == 0]).mean())
    with pytest.raises(TypeError, match="unexpected keyword argument 'threshold_sourc'"):
        metrics_from_predictions(y, probabilities, bootstrap=0, threshold_sourc="validation")

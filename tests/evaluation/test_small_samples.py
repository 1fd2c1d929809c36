"""The small-sample note of the intervals evaluate reports: on the AUC's and on the external site's sensitivity and
specificity, judged on the patients of the class each interval rests on, and the under-coverage it warns of shown
by a seeded simulation with a known truth (the figures: benchmarks/interval_coverage.py, docs/training.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

import radtransfer as rt
from radtransfer.card import write_model_card
from radtransfer.evaluation import metrics_from_predictions
from radtransfer.evaluation.external import side_by_side
from radtransfer.evaluation.metrics import describe_interval
from radtransfer.utils.io import write_json_atomic


@pytest.fixture(scope="module")
def model():
    """A two-class softmax model on 8 px images whose positive probability grows with the brightness."""
    import keras

    inputs = keras.Input((8, 8, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    head = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inputs, head(features))
    head.set_weights([np.array([[-2.0, 2.0]] * 3, dtype=np.float32) / 3, np.array([1.0, -1.0], dtype=np.float32)])
    return model


def _site(positive_patients, negative_patients, images_per_patient=2, seed=0, gap=40):
    """An in-memory external site: patients of one label each, images ``gap`` grey levels brighter for positive
    patients (the model calls an image positive from 127.5 on: sensitivity about 0.77 at gap 40, 1 at gap 150)."""
    from radtransfer.data import ImageSet

    rng = np.random.default_rng(seed)
    labels = np.repeat([1] * positive_patients + [0] * negative_patients, images_per_patient)
    brightness = np.clip(rng.normal(110 + gap * labels, 30), 0, 255)
    images = [np.full((8, 8, 3), b, dtype=np.uint8) for b in brightness]
    patients = np.repeat([f"P{i}" for i in range(positive_patients + negative_patients)], images_per_patient)
    return ImageSet(None, labels, ("neg", "pos"), patient_ids=patients, images=images)


def test_an_external_site_with_10_positive_patients_carries_the_note_where_it_is_returned_written_and_printed(
    model, tmp_path
):
    result = rt.evaluate(model, _site(10, 30), site="B", bootstrap=100, seed=1)
    development = result["development"]
    point = development["operating_point"]
    assert point["ci_unit"] == "patient" and point["ci_units"] == 40
    assert point["sensitivity_ci_units"] == 10 and point["specificity_ci_units"] == 30
    assert point["sensitivity_ci_note"].startswith("only 10 positive patients (under 20)")
    assert "cover less than 95%" in point["sensitivity_ci_note"]
    assert point["specificity_ci_note"] is None  # 30 negative patients
    assert development["auc_ci_note"].startswith("only 10 patients in the smallest class")
    assert development["auc_ci_note"] in describe_interval(development)

    run = tmp_path / "run"  # a minimal run folder: its config and the file `radtransfer evaluate --site B` writes
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"class_names": ["neg", "pos"], "seed": 1}))
    write_json_atomic(run / "external-B.json", result)
    written = json.loads((run / "external-B.json").read_text())
    assert written["development"]["operating_point"]["sensitivity_ci_note"] == point["sensitivity_ci_note"]
    card = write_model_card(run)[0].read_text()
    assert f"({point['sensitivity_ci_note']})" in card and f"({development['auc_ci_note']})" in card

    printed = side_by_side(result)
    assert f"note: sensitivity interval: {point['sensitivity_ci_note']}" in printed
    assert f"note: AUC interval: {development['auc_ci_note']}" in printed
    assert "specificity interval" not in printed


def test_an_external_site_with_many_patients_of_each_class_carries_no_note(model):
    result = rt.evaluate(model, _site(40, 40), site="B", bootstrap=100, seed=1)
    development = result["development"]
    point = development["operating_point"]
    assert point["sensitivity_ci_units"] == point["specificity_ci_units"] == 40
    assert 40 * (1 - max(point["sensitivity"], point["specificity"])) >= 5  # rarer side: 5+ patients' worth
    assert point["sensitivity_ci_note"] is None and point["specificity_ci_note"] is None
    assert development["auc_ci_note"] is None
    assert "note:" not in side_by_side(result) and "cover less" not in describe_interval(development)


def test_a_sensitivity_of_1_on_many_patients_carries_the_note_its_1_to_1_interval_needs(model):
    """Every positive image called positive: the bootstrap interval is 1–1 and covers no true sensitivity below 1,
    however many patients (with 20 patients at a true 0.95 such intervals cover 82%: docs/training.md)."""
    result = rt.evaluate(model, _site(30, 40, gap=150), site="B", bootstrap=100, seed=1)
    point = result["development"]["operating_point"]
    assert point["sensitivity"] == 1.0 and tuple(point["sensitivity_ci"]) == (1.0, 1.0)
    assert point["sensitivity_ci_note"].startswith("0.0 of 30 positive patients on the rarer side (a share of 0.000")
    assert f"note: sensitivity interval: {point['sensitivity_ci_note']}" in side_by_side(result)


def test_the_auc_note_counts_the_smallest_class_not_all_patients():
    """10 + 10 patients are 20 in all, but each class has 10: the AUC interval covers 89% at AUC 0.87
    (docs/training.md), so it carries the note; without patient ids the same rule counts images."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20) % 2, 3)
    scores = rng.normal(labels * 1.5, 1.0)
    probabilities = np.stack([1 - sps.norm.cdf(scores), sps.norm.cdf(scores)], axis=1)
    groups = np.repeat([f"p{i}" for i in range(20)], 3)
    by_patient = metrics_from_predictions(labels, probabilities, bootstrap=100, patient_ids=groups)
    assert by_patient["auc_ci_units"] == 20 and by_patient["auc_ci_note"].startswith("only 10 patients in the")
    by_image = metrics_from_predictions(labels, probabilities, bootstrap=100)  # 30 images per class
    assert by_image["auc_ci_unit"] == "image" and by_image["auc_ci_note"] is None
    few_images = metrics_from_predictions(labels[::3], probabilities[::3], bootstrap=100)  # 10 images per class
    assert few_images["auc_ci_note"].startswith("only 10 images in the smallest class")
    legacy = {k: v for k, v in by_patient.items() if k != "auc_ci_note"}  # a test_metrics.json from before
    assert "with under 20 patients" not in describe_interval(legacy)  # 20 patients in all: the old rule held

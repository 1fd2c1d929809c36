"""Multi-label models end to end (CPU, 32 px): build_model(num_labels=K) → fine_tune (binary cross-entropy, per-label
Youden thresholds) → evaluate (per-label and macro AUC with patient-level intervals) → predict → Grad-CAM of one
label, checked against scikit-learn and hand computations on the same predictions."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import radtransfer as rt
from radtransfer.stats.multilabel import label_auc_intervals, macro_auc_interval

LABELS = ["effusion", "edema", "nodule"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CSV of 18 patients × 2 random 32 px images with three 0/1 findings (each brightening its own band), split
    by patient, and a tiny multi-label model fine-tuned on it for 2 epochs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("multilabel")
    rng = np.random.default_rng(0)
    rows = []
    for p in range(18):
        for s in range(2):
            findings = rng.integers(0, 2, len(LABELS))
            image = rng.integers(0, 120, (32, 32, 3)).astype(np.uint8)
            for k, on in enumerate(findings):
                image[k * 10 : k * 10 + 10] += np.uint8(120 * on)
            Image.fromarray(image).save(root / f"p{p}_{s}.png")
            rows.append({"file": f"p{p}_{s}.png", "patient": f"P{p}", **dict(zip(LABELS, findings.tolist()))})
    pd.DataFrame(rows).to_csv(root / "findings.csv", index=False)
    image_set = rt.data.from_csv(root / "findings.csv", image_col="file", label_cols=LABELS, patient_col="patient")
    splits = image_set.split(val=0.3, test=0.3, by="patient", seed=3)
    keras.utils.set_random_seed(0)
    model = rt.build_model("test_tiny", weights=None, num_labels=len(LABELS), input_shape=(32, 32, 3))
    result = rt.fine_tune(
        model,
        splits[0],
        splits[1],
        strategy="unfreeze_all",
        learning_rate=1e-3,
        epochs=2,
        seed=0,
        batch_size=8,
        verbose=0,
    )
    return model, result, splits


def _scores(model, image_set):
    """The model's sigmoid outputs on an ImageSet, computed here from its files."""
    from PIL import Image

    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in image_set.paths])
    return np.asarray(model.predict(images, verbose=0), dtype=np.float64)


def _hand_youden(truth, scores) -> float:
    """The highest threshold maximising sensitivity + specificity − 1, trying every score."""
    best, chosen = -np.inf, None
    for t in sorted(set(scores.tolist()), reverse=True):
        called = scores >= t
        j = called[truth == 1].mean() + (~called[truth == 0]).mean() - 1
        if j > best + 1e-12:
            best, chosen = j, t
    return chosen


def test_head_loss_and_validation_thresholds(trained):
    model, result, (_, val, _) = trained
    head = model.get_layer("predictions")
    assert head.activation.__name__ == "sigmoid" and head.dtype_policy.compute_dtype == "float32"
    assert model.output_shape[-1] == len(LABELS) and model.radtransfer_class_names == tuple(LABELS)
    if keras.backend.backend() == "tensorflow":  # elsewhere the device-augmenting wrapper is what was compiled
        assert "binary_crossentropy" in str(model.loss).lower() or "BinaryCrossentropy" in type(model.loss).__name__
    scores = _scores(model, val)
    for k in range(len(LABELS)):
        assert model.radtransfer_thresholds[k] == pytest.approx(_hand_youden(val.labels[:, k], scores[:, k]))
    assert result.threshold is None and set(result.thresholds) == {"0", "1", "2"}


def test_evaluate_per_label_and_macro_auc_match_sklearn(trained):
    from sklearn.metrics import roc_auc_score

    model, _, (_, _, test) = trained
    result = rt.evaluate(model, test, bootstrap=200, seed=1)
    probabilities = np.array(result["predictions"]["probabilities"])
    np.testing.assert_allclose(probabilities, _scores(model, test), rtol=1e-5, atol=1e-6)
    assert result["predictions"]["y_true"] == test.labels.tolist()
    expected = [roc_auc_score(test.labels[:, k], probabilities[:, k]) for k in range(len(LABELS))]
    assert [result["per_label_auc"][name] for name in LABELS] == pytest.approx(expected)
    assert result["auc"] == pytest.approx(np.mean(expected))
    assert result["auc_ci_unit"] == "patient" and result["n_patients"] == len(set(test.patient_ids))
    for name, k in zip(LABELS, range(len(LABELS))):
        point = result["operating_points"][name]
        called = probabilities[:, k] >= model.radtransfer_thresholds[k]
        truth = test.labels[:, k] == 1
        assert point["threshold"] == model.radtransfer_thresholds[k] and point["chosen_on"] == "validation"
        assert point["sensitivity"] == pytest.approx(called[truth].mean())
        assert point["specificity"] == pytest.approx((~called[~truth]).mean())


def test_predict_gives_a_column_per_label_and_calls_at_the_thresholds(trained):
    model, _, (_, _, test) = trained
    frame = rt.predict(model, list(test.paths))
    scores = _scores(model, test)
    for k, name in enumerate(LABELS):
        np.testing.assert_allclose(frame[f"p_{name}"], scores[:, k], rtol=1e-5, atol=1e-6)
        assert frame[name].tolist() == (scores[:, k] >= model.radtransfer_thresholds[k]).astype(int).tolist()
    assert frame["predicted"][0] == "|".join(n for n in LABELS if frame[n][0])


def test_gradcam_of_one_label(trained):
    model, _, (_, _, test) = trained
    images = np.stack([np.asarray(__import__("PIL.Image").Image.open(p).convert("RGB")) for p in test.paths[:2]])
    maps = rt.gradcam.gradcam(model, images, label=1, layer=None)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.max() <= 1
    np.testing.assert_array_equal(maps, rt.gradcam.gradcam(model, images, label="edema"))


def test_refusals_are_one_line(trained):
    model, _, (train, val, test) = trained
    softmax = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(32, 32, 3))
    calls = [
        lambda: rt.build_model("test_tiny", weights=None, num_classes=3, num_labels=3, input_shape=(32, 32, 3)),
        lambda: rt.evaluate(model, test, threshold=0.3),
        lambda: rt.evaluate(model, test, level="patient"),
        lambda: rt.gradcam.gradcam(softmax, np.zeros((1, 32, 32, 3)), label=0),
        lambda: rt.gradcam.gradcam(model, np.zeros((1, 32, 32, 3)), label="edemma"),
        lambda: rt.fine_tune(softmax, train, val, strategy="freeze_all", learning_rate=1e-3, epochs=1, verbose=0),
    ]
    for call in calls:
        with pytest.raises(ValueError) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_minimum_units_rule_per_label_and_for_the_macro_auc():
    rng = np.random.default_rng(0)
    y = np.column_stack([rng.integers(0, 2, 40), np.r_[np.ones(2), np.zeros(38)]]).astype(int)
    p = rng.random((40, 2))
    intervals = label_auc_intervals(y, p, groups=None, n=100, seed=0)
    assert intervals[0]["no_interval"] is None and intervals[1]["no_interval"].startswith("no interval (2")
    macro = macro_auc_interval(y, p, None, 100, 0, refused="label 2: " + intervals[1]["no_interval"])
    assert np.isnan(macro["low"]) and "fewer than 3" in macro["no_interval"]

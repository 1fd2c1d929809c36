"""Calibration on models: evaluate's calibration figures, ``calibrate`` fitting a model's temperature and every scoring
path applying it, the external site's recalibration; against independent computations (scikit-learn, a formula by
hand). The numbers themselves (Brier, ECE, the temperature's fit and threshold mapping): tests/stats/."""

import numpy as np
import pytest
from simulated import overconfident
from sklearn.metrics import brier_score_loss, log_loss

import radtransfer as rt
from radtransfer.stats.calibration import expected_calibration_error
from radtransfer.stats.temperature import fit_temperature


def test_evaluate_reports_brier_and_ece_of_its_own_predictions():
    from radtransfer.evaluation.metrics import metrics_from_predictions

    y, p = overconfident(300, 2, 2.0, 5)
    metrics = metrics_from_predictions(y, p, ["a", "b"], bootstrap=0)
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p[:, 1]), abs=1e-12)
    assert metrics["ece"] == pytest.approx(expected_calibration_error(y, p)[0], abs=1e-12)
    assert sum(b["count"] for b in metrics["calibration_bins"]) == 300


# -- the temperature on a model: fitted, saved with it, applied by every scoring path ---------------------------


def _by_hand(raw, temperature):
    """softmax(log p / T) written out: p^(1/T) / sum p^(1/T)."""
    powered = np.asarray(raw, dtype=np.float64) ** (1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def test_k_classes_keep_the_predicted_class_and_accuracy_but_not_necessarily_the_ovr_auc():
    from radtransfer.evaluation.metrics import metrics_from_predictions

    y, p = overconfident(600, 4, 3.0, 7)
    raw = metrics_from_predictions(y, p, bootstrap=0)
    scaled = metrics_from_predictions(y, p, bootstrap=0, temperature=2.0)
    assert scaled["accuracy"] == raw["accuracy"] and scaled["confusion_matrix"] == raw["confusion_matrix"]
    np.testing.assert_allclose(scaled["predictions"]["probabilities"], _by_hand(p, 2.0), atol=1e-12)
    assert scaled["temperature"] == 2.0 and raw["temperature"] is None
    assert scaled["ece"] != raw["ece"]  # the macro one-vs-rest AUC may move too: see stats/temperature.py


@pytest.fixture(scope="module")
def tiny():
    """A small two-class softmax model (a convolution, pooling and an over-confident head: the code under test takes
    any softmax model; a ResNet50 run is tests/test_cli_calibration.py's), 96 random images whose labels follow its
    own score with noise (so it ranks them better than chance), 48 patients of two images, split into validation
    (32 images), a local set (24) and an external test set (40), as in-memory ImageSets."""
    import keras

    from radtransfer.data import ImageSet
    from radtransfer.models.trained import set_trained_info
    from radtransfer.stats.thresholds import youden_threshold

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions", kernel_initializer="he_normal")(features)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x = (rng.random((96, 1, 1, 1)) * rng.integers(0, 256, (96, 32, 32, 3))).astype(np.uint8)  # brightness varies
    # The head rescaled so that its logit gap has median 0 and SD 6 over these images: over-confident, and far
    # from float32's saturation (a probability that rounds to 1.0 ties images the other column still tells apart).
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    gap = np.diff(np.log(np.asarray(model.predict_on_batch(x), dtype=np.float64)), axis=1)[:, 0]
    scale = 6.0 / gap.std()
    head.set_weights([kernel * scale, bias * scale - np.array([0.0, np.median(gap) * scale], dtype=np.float32)])
    raw = np.asarray(model.predict_on_batch(x), dtype=np.float64)
    score = np.log(raw[:, 1]) - np.log(raw[:, 0])
    y = (score + rng.normal(0, score.std(), len(x)) > np.median(score)).astype(np.int64)
    patients = np.array([f"P{i // 2}" for i in range(len(x))])

    def part(index):
        return ImageSet(None, y[index], ("neg", "pos"), patient_ids=patients[index], images=list(x[index]))

    thresholds = {c: youden_threshold(y[:32] == c, raw[:32, c]) for c in (0, 1)}
    set_trained_info(model, ["neg", "pos"], thresholds[1], positive_class=1, thresholds=thresholds)
    sets = {"val": part(np.arange(32)), "local": part(np.arange(32, 56)), "test": part(np.arange(56, 96))}
    return model, x, y, raw, sets


def test_calibrate_lowers_the_nll_keeps_auc_and_decisions_and_predict_applies_it(tiny, tmp_path):
    """On the caller's model object; the run-folder path (best.keras rewritten, then loaded by evaluate) is
    tests/test_cli_calibration.py's."""
    from PIL import Image

    from radtransfer.models.trained import set_temperature, trained_info
    from radtransfer.stats.temperature import scale_threshold

    model, x, y, raw, sets = tiny
    set_temperature(model, None)
    before = rt.evaluate(model, sets["test"], bootstrap=0)
    fitted = rt.calibrate(model, sets["val"], fitted_on="val.csv")
    assert fitted.temperature > 1  # the sharpened head was over-confident
    assert fitted.nll_after < fitted.nll_before
    by_hand = -np.log(raw[np.arange(32), y[:32]]).mean()  # the model's outputs sum to 1 only up to float32
    assert fitted.nll_before == pytest.approx(by_hand, abs=1e-6)
    assert fitted.nll_after == pytest.approx(log_loss(y[:32], _by_hand(raw[:32], fitted.temperature)), abs=1e-6)
    assert fitted.ece_after == pytest.approx(
        expected_calibration_error(y[:32], _by_hand(raw[:32], fitted.temperature))[0], abs=1e-6
    )
    assert model.radtransfer_temperature == fitted.temperature  # on the caller's own object
    saved = trained_info(model)  # what save_trained writes into the .keras file
    assert saved["temperature"] == fitted.temperature and saved["calibration"] == fitted.to_dict()
    assert saved["calibration"]["n_patients"] == 16 and saved["calibration"]["fitted_on"] == "val.csv"

    after = rt.evaluate(model, sets["test"], bootstrap=0)
    np.testing.assert_allclose(after["predictions"]["probabilities"], _by_hand(raw[56:], fitted.temperature), atol=1e-5)
    assert after["auc"] == before["auc"]  # two classes: the ranking of images is kept exactly
    for key in ("sensitivity", "specificity", "threshold_unscaled"):
        assert after["operating_point"][key] == before["operating_point"][key]
    mapped = scale_threshold(model.radtransfer_threshold, fitted.temperature)
    assert after["operating_point"]["threshold"] == pytest.approx(mapped)
    brier = brier_score_loss(y[56:], _by_hand(raw[56:], fitted.temperature)[:, 1])
    assert after["brier"] == pytest.approx(brier, abs=1e-6) and after["temperature"] == fitted.temperature

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(56, 72):
        Image.fromarray(x[i]).save(folder / f"{i}.png")
    frame = rt.predict(model, folder)
    order = np.array([int(p.rsplit("/", 1)[-1][:-4]) for p in frame["path"]])
    np.testing.assert_allclose(frame["p_pos"], _by_hand(raw[order], fitted.temperature)[:, 1], atol=1e-5)
    decided = np.where(raw[order, 1] >= model.radtransfer_threshold, "pos", "neg")
    assert list(frame["predicted"]) == list(decided)  # the decisions of the uncalibrated model
    assert frame.attrs["temperature"] == fitted.temperature and frame["threshold"].iloc[0] == pytest.approx(mapped)


def test_calibrate_refits_from_the_raw_outputs_and_names_its_methods(tiny):
    from radtransfer.models.trained import set_temperature

    model, *_, sets = tiny
    set_temperature(model, 0.3)  # a stale temperature is replaced, not stacked
    fitted = rt.calibrate(model, sets["val"])
    set_temperature(model, None)
    assert fitted.temperature == pytest.approx(rt.calibrate(model, sets["val"]).temperature)
    with pytest.raises(ValueError, match="Expected method to be one of 'temperature'.*Received: method='platt'"):
        rt.calibrate(model, sets["val"], method="platt")


def test_external_site_reports_both_operating_points_with_patient_intervals(tiny):
    from radtransfer.models.trained import set_temperature
    from radtransfer.stats.thresholds import youden_threshold

    model, x, y, raw, sets = tiny
    set_temperature(model, None)
    plain = rt.evaluate(model, sets["test"], bootstrap=50, seed=3)
    result = rt.evaluate(model, sets["test"], site="B", recalibrate=sets["local"], bootstrap=50, seed=3)
    assert result["site"] == "B" and set(result) == {"site", "development", "recalibrated", "recalibration"}
    development, recalibrated = result["development"], result["recalibrated"]
    assert (
        development["auc_ci"] == plain["auc_ci"]
        and development["operating_point"]["sensitivity"] == plain["operating_point"]["sensitivity"]
    )
    refit = result["recalibration"]
    assert refit["temperature"] == pytest.approx(fit_temperature(y[32:56], raw[32:56]), rel=1e-6)
    assert refit["threshold_unscaled"] == youden_threshold(y[32:56] == 1, raw[32:56, 1])
    assert refit["n"] == 24 and refit["n_patients"] == 12
    called = raw[56:, 1] >= refit["threshold_unscaled"]
    truth = y[56:] == 1
    assert recalibrated["operating_point"]["sensitivity"] == pytest.approx(called[truth].mean())
    assert recalibrated["operating_point"]["specificity"] == pytest.approx((~called[~truth]).mean())
    assert recalibrated["auc"] == development["auc"] and recalibrated["temperature"] == refit["temperature"]
    for arm in (development, recalibrated):
        point = arm["operating_point"]
        assert point["ci_unit"] == "patient" and point["ci_units"] == 20
        for name in ("sensitivity", "specificity"):
            low, high = point[f"{name}_ci"]
            assert low <= point[name] <= high
    assert rt.evaluate(model, sets["test"], site="B", bootstrap=0)["recalibrated"] is None
    with pytest.raises(ValueError, match="shares 4 patient"):
        rt.evaluate(model, sets["test"], site="B", recalibrate=sets["test"].subset(np.arange(8)), bootstrap=0)
    with pytest.raises(ValueError, match="recalibrate= needs site="):
        rt.evaluate(model, sets["test"], recalibrate=sets["local"])

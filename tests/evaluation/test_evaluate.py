"""evaluate and predict on trained models (CPU, 32 px, a handful of synthetic images): the metrics of a run's model
and of a saved one, the classes it carries, the operating point from validation thresholds, patient ids kept with
their images, predict reading new files as training read them. The pure numbers are tests/stats/'s; metrics from
given predictions test_metrics.py's."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import radtransfer as rt

from conftest import tiny_model, train_tiny


def test_evaluate_on_a_model_and_test_set(first_run, splits):
    from sklearn.metrics import roc_auc_score

    model, _, _ = first_run
    test = splits[2]
    result = rt.evaluate(model, test, bootstrap=100)
    probabilities = np.array(result["predictions"]["probabilities"])
    assert result["n"] == len(test) and result["class_names"] == list(test.class_names)
    assert result["predictions"]["y_true"] == test.labels.tolist()
    assert result["auc"] == pytest.approx(roc_auc_score(test.labels, probabilities, multi_class="ovr"))


def test_trained_model_carries_its_classes_and_evaluate_checks_them(first_run, splits):
    model, _, out = first_run
    test = splits[2]
    assert rt.load_trained(out).radtransfer_class_names == test.class_names
    three = rt.data.ImageSet(
        paths=test.paths[test.labels < 3], labels=test.labels[test.labels < 3], class_names=test.class_names[:3]
    )
    with pytest.raises(rt.ClassMismatchError, match=r"Classes only the model knows: \['pituitary'\]"):
        rt.evaluate(model, three, bootstrap=0)
    renamed = rt.data.ImageSet(paths=test.paths, labels=test.labels, class_names=("a", "b", "c", "d"))
    with pytest.raises(rt.ClassMismatchError, match="trained on classes"):
        rt.evaluate(rt.load_trained(out), renamed, bootstrap=0)


def test_two_class_threshold_is_chosen_on_validation(splits):
    from sklearn.metrics import roc_curve

    def binary(part):
        return rt.data.ImageSet(
            paths=part.paths,
            labels=(part.labels != 2).astype(int),
            class_names=("no_tumor", "tumor"),
            patient_ids=part.patient_ids,
        )

    train, val, test = (binary(p) for p in splits)
    model = tiny_model(classes=2)
    val_ds = rt.data.make_dataset(val, image_size=(32, 32), batch_size=8, shuffle=False)
    p_val = model.predict(val_ds, verbose=0)[:, 1]
    fpr, tpr, thresholds = roc_curve(val.labels, p_val)
    expected = float(min(thresholds[np.argmax(tpr - fpr)], 1.0))
    result = rt.evaluate(model, test, val=val, bootstrap=0)
    assert result["operating_point"]["chosen_on"] == "validation"
    assert result["operating_point"]["threshold"] == pytest.approx(expected, rel=1e-5)
    assert result["auc_ci_unit"] is None or result["n_patients"] == len(set(test.patient_ids))


def test_predict_reads_new_images_as_training_did_and_matches_the_model(first_run, splits, tmp_path):
    """best.keras carries the read settings; predict on a folder gives the probabilities of the model on
    images read independently (PIL, then TensorFlow's antialiased bilinear resize to the trained size)."""
    import shutil

    import pandas as pd
    from PIL import Image

    model, _, out = first_run
    test = splits[2]
    loaded = rt.load_trained(out)
    assert loaded.radtransfer_read_settings == {
        "image_size": [32, 32],
        "interpolation": "bilinear",
        "antialias": True,
        "sixteen_bit": "range",
        "dicom_window": None,
        "frame": "middle",
    }
    folder = tmp_path / "new_patients"
    folder.mkdir()
    for k, path in enumerate(test.paths):
        shutil.copy(path, folder / f"{k:03d}.png")
    frame = rt.predict(out, folder)

    def read(path):  # the synthetic set is 16-bit grayscale: its own range → 0..255 ("range"), three channels
        wide = np.asarray(Image.open(path)).astype(np.float64)
        gray = np.round((wide - wide.min()) / (wide.max() - wide.min()) * 255)
        return np.repeat(gray[..., None], 3, axis=-1)

    pixels = np.stack([read(folder / f"{k:03d}.png") for k in range(len(test))])
    resized = tf.cast(tf.round(tf.image.resize(tf.cast(pixels, tf.float32), (32, 32), antialias=True)), tf.uint8)
    expected = np.asarray(model.predict(resized, verbose=0))
    columns = [f"p_{c}" for c in test.class_names]
    np.testing.assert_allclose(frame[columns].to_numpy(), expected, atol=1e-5)
    assert list(frame["predicted"]) == [test.class_names[i] for i in expected.argmax(1)]
    assert list(frame["path"]) == [str(folder / f"{k:03d}.png") for k in range(len(test))]

    from radtransfer.cli import main

    assert (
        main(["predict", str(out), str(folder), "--out", str(tmp_path / "p.csv"), "--gradcam", str(tmp_path / "cams")])
        == 0
    )
    written = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(written[columns].to_numpy(), expected, atol=1e-5)
    assert len(list((tmp_path / "cams").glob("*.png"))) == len(test)


def test_predict_on_a_dicom_series_uses_the_trained_window_and_patient_ids(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from radtransfer.models.trained import save_trained, set_trained_info

    model = tiny_model(classes=2)
    set_trained_info(
        model,
        ["normal", "lesion"],
        threshold=0.3,
        positive_class=1,
        read_settings={
            "image_size": [32, 32],
            "interpolation": "nearest",
            "antialias": True,
            "sixteen_bit": "range",
            "dicom_window": [40, 400],
            "frame": "middle",
        },
    )
    save_trained(model, tmp_path / "m.keras")
    series = tmp_path / "series"
    series.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for instance, name in ((3, "a.dcm"), (1, "b.dcm"), (2, "c.dcm")):
        ds.InstanceNumber, ds.PatientID = instance, "PAT-7"
        ds.save_as(series / name)
    frame = rt.predict(tmp_path / "m.keras", series)
    assert [p.split("/")[-1] for p in frame["path"]] == ["b.dcm", "c.dcm", "a.dcm"]  # instance order
    assert set(frame["patient_id"]) == {"PAT-7"} and frame["threshold"].iloc[0] == pytest.approx(0.3)
    windowed = rt.data.read_dicom(series / "a.dcm", window=(40, 400))
    resized = tf.image.resize(windowed[None].astype(np.float32), (32, 32), method="nearest")
    expected = np.asarray(model.predict(tf.cast(tf.round(resized), tf.uint8), verbose=0))[0]
    np.testing.assert_allclose(frame[["p_normal", "p_lesion"]].to_numpy()[2], expected, atol=1e-5)
    assert frame["predicted"].iloc[2] == ("lesion" if expected[1] >= 0.3 else "normal")


# -- two classes: the shape of every task of the paper --------------------------------------------


@pytest.fixture(scope="module")
def two_class_run(two_class_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_class_run")
    model = tiny_model(classes=2)  # trained until its validation scores rank some positives above negatives
    result = train_tiny(
        model, two_class_splits, out, strategy="unfreeze_all", learning_rate=1e-2, epochs=3, bn_momentum=0.5
    )
    return model, result, out


def _youden(positives, scores):
    """Youden's J threshold by its definition: the highest t maximising P(s ≥ t | pos) − P(s ≥ t | neg), a t above
    every score (nothing called positive, J = 0) included, and given as 1 (probabilities reach no higher)."""
    best, chosen = 0.0, np.inf
    for t in sorted(set(scores), reverse=True):
        j = np.mean(scores[positives] >= t) - np.mean(scores[~positives] >= t)
        if j > best:
            best, chosen = j, t
    return min(chosen, 1.0)


def test_the_operating_point_of_each_class_uses_that_class_s_validation_threshold(two_class_run, two_class_splits):
    """Before: evaluate(positive_class=0) applied class 1's threshold to class 0's probability (sensitivity 1.000,
    specificity 0.000 seen)."""
    model, result, out = two_class_run
    _, val, test = two_class_splits
    val_images = np.concatenate([b[0] for b in rt.data.make_dataset(val, image_size=(32, 32), shuffle=False)])
    test_images = np.concatenate([b[0] for b in rt.data.make_dataset(test, image_size=(32, 32), shuffle=False)])
    inside = 0
    for trained in (model, rt.load_trained(out)):  # in memory, and as saved in best.keras
        p_val = keras.ops.convert_to_numpy(trained(val_images, training=False)).astype(np.float64)
        p_test = keras.ops.convert_to_numpy(trained(test_images, training=False)).astype(np.float64)
        for positive in (0, 1):
            t = _youden(val.labels == positive, p_val[:, positive])
            inside += t < 1.0
            called, truth = p_test[:, positive] >= t, test.labels == positive
            point = rt.evaluate(trained, test, positive_class=positive, bootstrap=0)["operating_point"]
            assert point["chosen_on"] == "validation" and point["threshold"] == pytest.approx(t, rel=1e-5)
            assert point["sensitivity"] == pytest.approx(np.mean(called[truth]))
            assert point["specificity"] == pytest.approx(np.mean(~called[~truth]))
    assert inside >= 2  # with two classes' complementary scores, one class's threshold lies among the scores
    assert set(result.thresholds) == {"0", "1"} and result.threshold == result.thresholds["1"]


def test_a_model_with_one_saved_threshold_converts_it_for_the_other_class(two_class_run, two_class_splits, monkeypatch):
    model, result, _ = two_class_run
    _, _, test = two_class_splits
    legacy = model
    monkeypatch.setattr(legacy, "radtransfer_thresholds", None)  # as radtransfer 0.1 saved it: class 1's only
    p_test = rt.evaluate(legacy, test, bootstrap=0)["predictions"]["probabilities"]
    point = rt.evaluate(legacy, test, positive_class=0, bootstrap=0)["operating_point"]
    called_0 = ~(np.asarray(p_test)[:, 1] >= result.threshold)  # class 0 is called where class 1 is not
    truth = test.labels == 0
    assert point["threshold_class"] == "glioma" and point["sensitivity"] == pytest.approx(np.mean(called_0[truth]))
    assert point["specificity"] == pytest.approx(np.mean(~called_0[~truth]))


def test_evaluate_keeps_patient_ids_with_their_images_on_a_shuffled_augmented_dataset(two_class_run, two_class_splits):
    """Before: ids were attached in set order to images in shuffled order (39 of 40 patients got images of more
    than one class, and the interval changed)."""
    model, _, _ = two_class_run
    _, _, test = two_class_splits
    shuffled = rt.data.make_dataset(
        test, image_size=(32, 32), batch_size=4, shuffle=True, augment="radimagenet", seed=1
    )
    metrics = rt.evaluate(model, shuffled, patient_ids=list(test.patient_ids), bootstrap=200)
    got = metrics["predictions"]
    for patient in set(test.patient_ids):  # each synthetic patient has one class
        assert len({y for y, p in zip(got["y_true"], got["patient_ids"]) if p == patient}) == 1
    images = np.concatenate([b[0] for b in rt.data.make_dataset(test, image_size=(32, 32), shuffle=False)])
    np.testing.assert_allclose(got["probabilities"], model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["y_true"], test.labels)
    assert metrics["auc_ci"] == rt.evaluate(model, test, bootstrap=200)["auc_ci"]

    import tensorflow as tf

    plain = tf.data.Dataset.from_tensor_slices((images, np.eye(2)[test.labels])).shuffle(64).batch(4)
    with pytest.raises(ValueError, match="shuffles"):
        rt.evaluate(model, plain, patient_ids=list(test.patient_ids))


def test_the_dataset_keywords_of_before_give_what_a_dataset_info_gives():
    """``class_names=``, ``patient_ids=`` and ``batch_size=`` (evaluate's parameters before ``DatasetInfo``) give the
    same result as the ``DatasetInfo`` holding them, and that result is the model's own predictions scored by
    scikit-learn; a keyword overrides ``dataset_info``'s field; an unknown keyword is refused by name."""
    from sklearn.metrics import roc_auc_score

    from radtransfer.evaluation import DatasetInfo

    model = tiny_model(classes=2)
    rng = np.random.default_rng(3)
    images, labels = rng.integers(0, 256, (24, 32, 32, 3)).astype("uint8"), np.arange(24) % 2
    patients = [f"p{i // 2}" for i in range(24)]
    expected = np.asarray(model.predict(images, verbose=0), dtype=np.float64)
    for keywords in (
        {"class_names": ["benign", "malignant"]},
        {"patient_ids": patients},
        {"batch_size": 5},
        {"class_names": ["benign", "malignant"], "patient_ids": patients, "batch_size": 7},
    ):
        by_keywords = rt.evaluate(model, (images, labels), bootstrap=50, **keywords)
        by_info = rt.evaluate(model, (images, labels), bootstrap=50, dataset_info=DatasetInfo(**keywords))
        assert json.dumps(by_keywords, sort_keys=True) == json.dumps(by_info, sort_keys=True)
        np.testing.assert_allclose(by_info["predictions"]["probabilities"], expected, rtol=1e-5, atol=1e-6)
        assert by_info["auc"] == pytest.approx(roc_auc_score(labels, expected[:, 1]), abs=1e-6)
        assert by_info["class_names"] == keywords.get("class_names", ["0", "1"])
        assert by_info["n_patients"] == (12 if "patient_ids" in keywords else None)
        assert by_info["auc_ci_unit"] == ("patient" if "patient_ids" in keywords else "image")
    overridden = rt.evaluate(
        model, (images, labels), bootstrap=0, dataset_info=DatasetInfo(class_names=["a", "b"]), class_names=["c", "d"]
    )
    assert overridden["class_names"] == ["c", "d"]
    with pytest.raises(TypeError, match=r"^evaluate\(\) got an unexpected keyword argument 'patient_id'$"):
        rt.evaluate(model, (images, labels), patient_id=patients)
    with pytest.raises(TypeError, match="dataset_info= takes a DatasetInfo, not dict"):
        rt.evaluate(model, (images, labels), dataset_info={"batch_size": 5})

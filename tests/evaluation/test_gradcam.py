"""Grad-CAM: heatmaps, localisation scores, overlays, and localisation after brief training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import radtransfer as rt
from radtransfer import gradcam as gc


@pytest.fixture(scope="module")
def model():
    """The test backbone (each real backbone's last spatial layer and maps: tests/models/test_backbone_contract.py)."""
    keras.utils.set_random_seed(0)
    return rt.build_model("test_tiny", weights=None, num_classes=3, input_shape=(64, 64, 3))


IMAGES = np.random.default_rng(0).uniform(0, 255, size=(3, 64, 64, 3)).astype("float32")


def test_heatmaps_at_input_resolution_in_unit_range(model):
    heatmaps = gc.gradcam(model, IMAGES)
    assert heatmaps.shape == (3, 64, 64) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1 + 1e-6
    assert gc.last_conv_layer(model.get_layer("backbone")) == "block2_out"
    earlier = gc.gradcam(model, IMAGES, layer="block1_out", class_index=[0, 1, 2])
    assert earlier.shape == (3, 64, 64)
    with pytest.raises(ValueError, match="not in the backbone"):
        gc.gradcam(model, IMAGES, layer="nope")


def test_a_confident_model_still_gets_a_map():
    """Grad-CAM differentiates the class score before the softmax: with a saturated softmax (probability
    1.0 in float32) the softmax's gradient is exactly zero, and the first wave's maps were all zeros."""
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    confident = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(32, 32, 3))
    head = confident.get_layer("predictions")
    kernel = np.zeros(head.kernel.shape, dtype="float32")
    kernel[:, 1] = 1e4  # class 1's score is huge for any image with a positive pooled feature
    head.kernel.assign(kernel)
    images = IMAGES[:, :32, :32]
    assert np.all(confident.predict(images, verbose=0)[:, 1] == 1.0)
    # The softmax's own gradient vanishes here (what the old code differentiated):
    backbone, preprocess = confident.get_layer("backbone"), confident.get_layer("preprocess")
    features = keras.Model(backbone.inputs, [backbone.get_layer("block2_out").output, backbone.output])
    with tf.GradientTape() as tape:
        activations, pooled = features(preprocess(tf.constant(images)), training=False)
        tape.watch(activations)
        probability = head(pooled)[:, 1]
    assert not np.any(tape.gradient(probability, activations).numpy())
    heatmaps = gc.gradcam(confident, images, class_index=1)
    assert all(h.max() == pytest.approx(1.0) for h in heatmaps)  # every map has content


def test_works_in_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(32, 32, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    heatmaps = gc.gradcam(mixed, IMAGES[:, :32, :32], class_index=1)
    assert heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all()


def test_localisation_scores():
    heatmaps = np.zeros((3, 8, 8), np.float32)
    heatmaps[0, 2, 2] = 1  # inside
    heatmaps[1, 6, 6] = 1  # outside
    masks = np.zeros((3, 8, 8), bool)
    masks[:2, 1:4, 1:4] = True  # the third mask is empty
    hits = gc.pointing_game(heatmaps, masks)
    assert hits[0] == 1 and hits[1] == 0 and np.isnan(hits[2])
    iou = gc.iou_at_threshold(heatmaps, masks, threshold=0.5)
    assert iou[0] == pytest.approx(1 / 9) and iou[1] == 0
    assert gc.random_point_hit_rate(masks) == pytest.approx(9 / 64)
    # With a tolerance, a peak next to the mask counts (the original pointing game allowed 15 px).
    near = np.zeros((1, 8, 8), np.float32)
    near[0, 5, 2] = 1  # two rows below the mask
    assert gc.pointing_game(near, masks[:1])[0] == 0 and gc.pointing_game(near, masks[:1], tolerance=2)[0] == 1
    assert gc.random_point_hit_rate(masks[:1], tolerance=1) > gc.random_point_hit_rate(masks[:1])


def test_overlays_are_written(model, tmp_path):
    written = gc.save_overlays(IMAGES.astype("uint8"), gc.gradcam(model, IMAGES), tmp_path, names=["a.png", "b", "c"])
    assert [p.split("/")[-1] for p in written] == ["a.png", "b.png", "c.png"]
    assert all((tmp_path / n).stat().st_size > 5000 for n in ("a.png", "b.png", "c.png"))


@pytest.mark.slow
def test_briefly_trained_model_points_at_lesions_more_than_chance(tmp_path):
    """On the synthetic brain MRI: Grad-CAM's peak lands in the lesion mask more often than a random point.

    Slow (about two minutes): DenseNet121 needs some ten epochs from scratch before it predicts anything
    (ResNet50 stays at chance for longer), and a model that predicts nothing has nothing to localise.
    """
    from radtransfer.demo import _masks

    image_set = rt.datasets.load_synthetic_brain_mri(
        tmp_path, n_patients=48, slices_per_patient=4, image_size=128, seed=0
    )
    train, val, test = image_set.split(val=0.10, test=0.15, seed=726)
    keras.utils.set_random_seed(0)
    model = rt.build_model("densenet121", weights=None, num_classes=4, input_shape=(96, 96, 3))
    rt.fine_tune(
        model,
        train,
        val,
        strategy="unfreeze_all",
        learning_rate=1e-3,
        epochs=12,
        batch_size=16,
        seed=726,
        bn_momentum=0.9,
        verbose=0,
    )
    assert rt.evaluate(model, test, bootstrap=0)["auc"] > 0.7  # it learned something
    lesions = test.subset([i for i, label in enumerate(test.labels) if test.class_names[label] != "no_tumor"])
    images = np.concatenate(
        [b[0].numpy() for b in rt.data.make_dataset(lesions, image_size=(96, 96), batch_size=32, shuffle=False)]
    )
    masks = _masks(lesions, 96)
    layer = gc.last_conv_layer(model.get_layer("backbone"), min_size=6)
    tolerance = 6  # Zhang et al.'s 15 px at 224 px, scaled to 96 px
    hits = gc.pointing_game(gc.gradcam(model, images, layer=layer), masks, tolerance)
    assert np.nanmean(hits) > gc.random_point_hit_rate(masks, tolerance)


def test_an_empty_heatmap_is_said_to_be_empty(tmp_path, monkeypatch):
    import matplotlib.axes
    import matplotlib.figure

    from radtransfer.evaluation.gradcam import save_overlays, unique_names

    bars, titles = [], []
    monkeypatch.setattr(matplotlib.figure.Figure, "colorbar", lambda self, *a, **k: bars.append(1))
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_title",
        lambda self, text, *a, **k: titles.append(text) or original(self, text, *a, **k),
    )
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    heatmaps = [np.zeros((8, 8)), np.linspace(0, 1, 64).reshape(8, 8)]
    written = save_overlays(images, heatmaps, tmp_path, names=["empty", "full"])
    assert len(written) == 2 and len(bars) == 1  # a colour bar for the map that holds something only
    assert any("Grad-CAM empty" in t for t in titles)
    assert unique_names(["/x/a/img.png", "/x/b/img.png"]) == ["a__img", "b__img"]


def test_overlay_names_never_collide():
    from radtransfer.evaluation.gradcam import unique_names

    assert unique_names(["/d/a/x/img.png", "/d/b/x/img.png"]) == ["a__x__img", "b__x__img"]
    names = unique_names(["/d/img.png", "/d/img.jpg", "/d/img.png", "/d/other.png"])
    assert len(set(names)) == 4 and names[3] == "other"


def test_performance_title_names_the_interval_and_chance():
    """The Grad-CAM title's line on its model (the command's path: tests/test_cli.py)."""
    good = {"auc": 0.91, "auc_ci": [0.84, 0.97]}
    assert gc.performance_title(good) == ("model test AUC 0.910 (95% CI 0.840–0.970)", None)
    line, warning = gc.performance_title({"auc": 0.62, "auc_ci": [0.41, 0.80]})
    assert "reaches chance" in line and "reaches chance" in warning
    line, warning = gc.performance_title({"auc": 0.5, "auc_ci": [None, None], "n": 6})
    assert line.startswith("model test AUC 0.500 (no interval (6 test images))") and "CHANCE" in line
    assert "unknown" in gc.performance_title(None)[0]

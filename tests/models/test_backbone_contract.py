"""The contract every backbone keeps, as one battery parametrized over the registry (keras-hub's
``run_vision_backbone_test``): a new backbone is tested by adding its registry entry and presets alone.

Each check compares with an independent reference: the same network built by tf-keras (Keras 2, the reference
code's library) for trainable counts and weight files, and the model before saving for the round trip.
"""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

import radtransfer as rt
from radtransfer.models.backbones import get_backbone
from radtransfer.models.presets import WEIGHT_SOURCES, get_preset
from radtransfer.models.weights import model_signature

from conftest import weight_arrays

BACKBONES = rt.list_backbones()
# The two checks that take over 15 s on InceptionResNetV2 (loading its files, its .keras round trip) run for it in
# make test-slow only, which CI runs too; every other check runs for every backbone in make test.
HEAVY = [pytest.param(b, marks=pytest.mark.slow) if b == "inception_resnet_v2" else b for b in BACKBONES]
# DESIGN.md §3 (trainable parameters with a two-class head: freeze all / top 10 / all), for the four the paper used.
DESIGN_COUNTS = {
    "resnet50": (4_098, 3_420_674, 23_538_690),
    "densenet121": (2_050, 170_178, 6_955_906),
    "inception_v3": (4_098, 4_290, 21_772_450),
    "inception_resnet_v2": (3_074, 4_133_666, 54_279_266),
}

# The last layer with a spatial output (Grad-CAM's default), by the published architectures.
LAST_SPATIAL = {
    "resnet50": "conv5_block3_out",
    "densenet121": "relu",
    "inception_v3": "mixed10",
    "inception_resnet_v2": "conv_7b_ac",
}


@pytest.fixture(scope="module")
def built():
    """One model per backbone at its minimum size (random weights, two classes), built once."""
    cache = {}

    def get(backbone):
        if backbone not in cache:
            size = get_backbone(backbone).min_size
            cache[backbone] = rt.build_model(backbone, weights=None, num_classes=2, input_shape=(size, size, 3))
        return cache[backbone]

    return get


def _reference_counts(reference) -> tuple[int, int, int]:
    """Trainable parameters of the reference code's model (tf-keras: pooled base, dropout, softmax head) under its
    three strategies: every base layer frozen, ``base.layers[:-10]`` frozen, nothing frozen. ``reference`` is the
    pooled base, built by tf-keras (its flags are restored afterwards)."""
    import tf_keras

    base = reference
    model = tf_keras.Model(
        base.input, tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Dropout(0.5)(base.output))
    )
    counts = []
    try:
        for frozen in (base.layers, base.layers[:-10], []):
            for layer in base.layers:
                layer.trainable = layer not in frozen
            counts.append(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    finally:
        for layer in base.layers:
            layer.trainable = True
    return tuple(counts)


def _probabilities(model, images) -> np.ndarray:
    """The model's outputs, called eagerly: one call, without predict's graph tracing (seconds per real net)."""
    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_builds_at_its_minimum_size_with_the_named_layers(backbone, built):
    spec = get_backbone(backbone)
    model = built(backbone)
    assert [layer.name for layer in model.layers] == ["image", "preprocess", "backbone", "dropout", "predictions"]
    nested = model.get_layer("backbone")
    assert type(nested.layers[-1]).__name__ == "GlobalAveragePooling2D"
    assert len(model_signature(nested)) == spec.weight_layers
    assert all(end in {layer.name for layer in nested.layers} for end in spec.block_ends)
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    images = np.random.default_rng(0).integers(0, 256, (2, spec.min_size, spec.min_size, 3), dtype=np.uint8)
    np.testing.assert_allclose(_probabilities(model, images).sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=f"at least {spec.min_size}×{spec.min_size}"):
        rt.build_model(backbone, weights=None, input_shape=(spec.min_size - 1, spec.min_size - 1, 3))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_gradcam_explains_its_last_spatial_layer(backbone, built):
    from radtransfer.evaluation.gradcam import gradcam, last_conv_layer

    spec, model = get_backbone(backbone), built(backbone)
    nested = model.get_layer("backbone")
    assert last_conv_layer(nested) == LAST_SPATIAL.get(backbone, nested.layers[-2].name)
    images = np.random.default_rng(1).integers(0, 256, (2, spec.min_size, spec.min_size, 3), dtype=np.uint8)
    heatmaps = gradcam(model, images, class_index=[0, 1])
    assert heatmaps.shape == (2, spec.min_size, spec.min_size) and heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1 + 1e-6


@pytest.mark.parametrize("backbone", BACKBONES)
def test_has_a_preset_for_every_weight_source(backbone):
    for source in WEIGHT_SOURCES:
        preset = get_preset(backbone, source)
        assert preset.backbone == backbone and preset.files and all(f.endswith(".h5") for f in preset.files)
        assert preset.url.startswith("https://") and preset.preprocessing in ("radimagenet", "caffe", "torch", "tf")
        if preset.downloadable:
            assert preset.url.endswith("/" + preset.files[0]) and len(preset.md5) == 32


@pytest.mark.parametrize("backbone", HEAVY)
def test_loads_keras2_files_of_every_source_exactly(backbone, keras2_files, isolated_dirs):
    """A full-model file (as RadImageNet publishes) found by search in ./weights under each published spelling,
    and a weights-only file (as Keras's ImageNet cache holds) under Keras's own name, both assigned layer by
    layer exactly as tf-keras holds them."""
    spec = get_backbone(backbone)
    size = spec.min_size
    reference = keras2_files.reference_arrays(backbone)
    for source in WEIGHT_SOURCES:
        preset = get_preset(backbone, source)
        folder = isolated_dirs / ("keras_home/models" if preset.downloadable else "work/weights")
        for name in preset.files[1:]:  # every other spelling is found too
            shutil.rmtree(folder, ignore_errors=True)
            keras2_files.place(backbone, folder, name, kind="weights" if preset.downloadable else "full")
            assert rt.resolve_weights(backbone, source).path.name == name
        shutil.rmtree(folder, ignore_errors=True)
        name = preset.files[0]
        keras2_files.place(backbone, folder, name, kind="weights" if preset.downloadable else "full")
        model = rt.build_model(backbone, weights=source, input_shape=(size, size, 3))
        info = model.radtransfer_info
        assert info.weights_source == source and info.weights_path.endswith(name)
        assert info.preprocessing == preset.preprocessing
        loaded = weight_arrays(model.get_layer("backbone"))
        assert len(loaded) == len(reference)
        for a, b in zip(loaded, reference):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_strategy_unfreezes_what_the_reference_does(backbone, built, keras2_files):
    model = built(backbone)
    counts = tuple(
        rt.apply_strategy(model, strategy).trainable_params
        for strategy in ("freeze_all", "unfreeze_top10", "unfreeze_all")
    )
    assert counts == _reference_counts(keras2_files.reference(backbone))
    if backbone in DESIGN_COUNTS:
        assert counts == DESIGN_COUNTS[backbone]
    assert rt.apply_strategy(model, "unfreeze_top:0").trainable_params == counts[0]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_unfreeze_blocks_starts_at_each_stage(backbone, built):
    """unfreeze_blocks:K unfreezes the top K stages: K=0 is freeze_all, each stage adds parameters, the stem stays
    frozen, and K beyond the stages is refused naming how many there are."""
    model = built(backbone)
    stages = len(get_backbone(backbone).block_ends)
    counts = [rt.apply_strategy(model, f"unfreeze_blocks:{k}").trainable_params for k in range(stages + 1)]
    assert counts[0] == rt.apply_strategy(model, "freeze_all").trainable_params
    assert all(a < b for a, b in zip(counts, counts[1:]))
    assert counts[-1] < rt.apply_strategy(model, "unfreeze_all").trainable_params
    with pytest.raises(ValueError, match=f"has {stages} stages"):
        rt.apply_strategy(model, f"unfreeze_blocks:{stages + 1}")


@pytest.mark.parametrize("backbone", HEAVY)
def test_keras_file_round_trip_in_safe_mode(backbone, built, tmp_path):
    model = built(backbone)
    size = get_backbone(backbone).min_size
    images = np.random.default_rng(2).uniform(0, 255, size=(2, size, size, 3)).astype("float32")
    expected = _probabilities(model, images)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.get_layer("preprocess").mode == model.get_layer("preprocess").mode
    np.testing.assert_allclose(_probabilities(reloaded, images), expected, atol=1e-5)

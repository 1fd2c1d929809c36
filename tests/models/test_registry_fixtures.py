"""The test fixtures read the backbone registry: a fifth backbone is served by a registry entry alone (its minimum
size and keras.applications name), as docs/architecture.md promises, and the test backbones get Keras 2 weight files
and presets as the real ones do."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import radtransfer as rt
from radtransfer.models import backbones, presets
from radtransfer.models.classifier import get_backbone_model
from radtransfer.models.presets import WEIGHT_SOURCES, WeightPreset, get_preset, presets_of
from radtransfer.models.weights import model_signature, resolve_weights

from conftest import SMALL, TF_KERAS_NAMES, Keras2Files, weight_arrays


def test_the_fixtures_follow_the_registry():
    registry = {**backbones.BACKBONES, "test_tiny": backbones.get_backbone("test_tiny")}
    assert dict(SMALL) == {name: spec.min_size for name, spec in registry.items()}
    assert {name: TF_KERAS_NAMES[name] for name in backbones.BACKBONES} == {
        "resnet50": "ResNet50",
        "densenet121": "DenseNet121",
        "inception_v3": "InceptionV3",
        "inception_resnet_v2": "InceptionResNetV2",
    }
    with pytest.raises(KeyError):
        SMALL["no_such_backbone"]


def test_a_fifth_backbone_in_the_registry_is_served_by_the_fixtures(tmp_path, monkeypatch):
    """A registry entry for MobileNetV2 (not one of radtransfer's) and its presets: SMALL and TF_KERAS_NAMES serve
    it, Keras2Files writes its Keras 2 file with tf-keras, and build_model finds and loads that file through the
    library's search and checks."""
    import keras

    model = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    fifth = dataclasses.replace(
        backbones.get_backbone("resnet50"),
        name="fifth_mobilenet",
        display_name="FifthMobileNet",
        aliases=(),
        constructor="MobileNetV2",
        min_size=32,
        weight_layers=len(model_signature(model)),
        stem_end=None,
        block_ends=("block_16_project_BN",),
    )
    monkeypatch.setitem(backbones.BACKBONES, fifth.name, fifth)
    monkeypatch.setitem(backbones._ALL, fifth.name, fifth)
    monkeypatch.setitem(backbones._LOOKUP, fifth.name, fifth.name)
    for source, label, mode in (("radimagenet", "RadImageNet", "radimagenet"), ("imagenet", "ImageNet", "tf")):
        preset = WeightPreset(fifth.name, source, label, (f"{source}-fifth_notop.h5",), None, "nowhere", mode)
        monkeypatch.setitem(presets.PRESETS, preset.name, preset)  # its weight files, as docs/architecture.md says
    assert "fifth_mobilenet" in rt.list_backbones() and "fifth_mobilenet" in SMALL
    assert SMALL["fifth_mobilenet"] == 32 and TF_KERAS_NAMES["fifth_mobilenet"] == "MobileNetV2"

    files = Keras2Files(tmp_path)
    files.place("fifth_mobilenet", tmp_path / "weights", "radimagenet-fifth_notop.h5")
    loaded = rt.build_model("fifth_mobilenet", weights_dir=tmp_path / "weights", input_shape=(32, 32, 3))
    ours, reference = weight_arrays(get_backbone_model(loaded)), weight_arrays(files.reference("fifth_mobilenet"))
    assert len(ours) == len(reference) and all(np.array_equal(a, b) for a, b in zip(ours, reference))


def test_the_test_backbone_has_presets_found_by_name_and_never_listed():
    from radtransfer.models.presets import PRESETS

    assert [p.source for p in presets_of("test_tiny")] == list(WEIGHT_SOURCES)
    assert get_preset("test_tiny", "imagenet").preprocessing == get_preset("resnet50", "imagenet").preprocessing
    assert get_preset("test_tiny", "radimagenet").files[0] == "RadImageNet-TestTiny_notop.h5"
    assert not [name for name in PRESETS if name.startswith("test_")]


@pytest.mark.parametrize("kind", ["full", "weights"])
def test_a_keras2_file_of_the_test_backbone_loads_through_the_search_and_the_checks(keras2_files, tmp_path, kind):
    """The file a grid test places (written by tf-keras) is found under its preset's name, checked, and loaded
    array for array; a file of another backbone is refused with the usual message."""
    for source in WEIGHT_SOURCES:
        keras2_files.place("test_tiny", tmp_path, get_preset("test_tiny", source).files[0], kind=kind)
        resolved = resolve_weights("test_tiny", source, weights_dir=tmp_path, download=False)
        assert resolved.path.parent == tmp_path and resolved.source == source
        model = rt.build_model("test_tiny", weights=source, weights_dir=tmp_path, input_shape=(16, 16, 3))
        ours, reference = weight_arrays(get_backbone_model(model)), keras2_files.reference_arrays("test_tiny")
        assert len(ours) == 15 and all(np.array_equal(a, b) for a, b in zip(ours, reference))
    import tf_keras

    inputs = tf_keras.Input((4,))
    other = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(tf_keras.layers.Dense(3)(inputs)))
    other.save(tmp_path / "other.h5")
    with pytest.raises(rt.WeightsFileError, match=r"looks like 2 weight layers.*not TestTiny \(6\)"):
        rt.check_weight_file(tmp_path / "other.h5", "test_tiny")

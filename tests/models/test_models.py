"""build_model's contract: layers, dtypes, validation, saving."""

import keras
import numpy as np
import pytest

import radtransfer as rt


@pytest.fixture(scope="module")
def densenet():
    return rt.build_model("DenseNet121", weights=None, num_classes=4, input_shape=(32, 32, 3), dropout=0.3)


def test_named_layers_and_nested_backbone(densenet):
    assert [layer.name for layer in densenet.layers] == ["image", "preprocess", "backbone", "dropout", "predictions"]
    backbone = densenet.get_layer("backbone")
    assert isinstance(backbone, keras.Model)
    assert type(backbone.layers[-1]).__name__ == "GlobalAveragePooling2D"
    head = densenet.get_layer("predictions")
    assert head.units == 4 and head.activation.__name__ == "softmax" and head.dtype_policy.name == "float32"
    assert densenet.get_layer("dropout").rate == 0.3
    assert densenet.radtransfer_info.preprocessing == "radimagenet"
    assert densenet.radtransfer_info.weights_source is None


def test_predicts_probabilities_from_uint8_and_one_channel():
    model = rt.build_model("test_tiny", weights=None, input_shape=(32, 32, 1), num_classes=3)  # backbones: 3 channels
    assert model.get_layer("backbone").input.shape[-1] == 3
    images = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 1), dtype=np.uint8)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_mixed_precision_keeps_predictions_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = rt.build_model("resnet50", weights=None, input_shape=(32, 32, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("backbone").layers[2].compute_dtype == "float16"
    assert model.get_layer("preprocess").compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert keras.backend.standardize_dtype(model.output.dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (16, 16, 3)}, "at least 32×32"),
        ({"backbone": "inception_v3", "input_shape": (64, 64, 3)}, "at least 75×75"),
        ({"input_shape": (32, 32, 4)}, "1 or 3 channels"),
        ({"input_shape": (32, 32)}, "1 or 3 channels"),
        ({"num_classes": 1}, "at least 2"),
        ({"dropout": 1.5}, r"dropout in \[0, 1\)"),
        ({"preprocessing": "imagenet"}, "Unknown preprocessing mode"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs, message):
    arguments = {"backbone": "resnet50", "weights": None, "input_shape": (32, 32, 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        rt.build_model(**arguments)

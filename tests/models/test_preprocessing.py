"""The preprocess layer against the reference pipeline and Keras's own preprocess_input."""

import keras
import numpy as np
import pytest

from radtransfer import Preprocess, build_model
from radtransfer.models import resolve_preprocessing
from radtransfer.models.backbones import get_backbone

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, size=(4, 8, 8, 3)).astype("float32")


def test_radimagenet_mode_equals_reference_image_data_generator():
    from tf_keras.applications import imagenet_utils
    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1 / 255, preprocessing_function=imagenet_utils.preprocess_input)
    batches = generator.flow(IMAGES.copy(), batch_size=len(IMAGES), shuffle=False)
    expected = next(batches)
    actual = keras.ops.convert_to_numpy(Preprocess("radimagenet")(IMAGES))
    np.testing.assert_allclose(actual, expected, atol=1e-4)


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_keras_modes_equal_preprocess_input(mode):
    from keras.applications import imagenet_utils

    expected = imagenet_utils.preprocess_input(IMAGES.copy(), mode=mode)
    actual = keras.ops.convert_to_numpy(Preprocess(mode)(IMAGES))
    np.testing.assert_allclose(actual, expected, atol=1e-4)


@pytest.mark.parametrize("mode", ["radimagenet", "caffe", "torch", "tf"])
def test_grayscale_is_three_identical_channels(mode):
    gray = IMAGES[..., :1]
    layer = Preprocess(mode)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(gray)),
        keras.ops.convert_to_numpy(layer(np.repeat(gray, 3, axis=-1))),
        atol=1e-6,
    )


def test_uint8_input_is_accepted():
    out = Preprocess("tf")(IMAGES.astype("uint8"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), IMAGES.astype("uint8") / 127.5 - 1, atol=1e-5)


def test_config_round_trip_and_bad_mode():
    layer = Preprocess.from_config(Preprocess("torch", name="preprocess").get_config())
    assert layer.mode == "torch" and layer.name == "preprocess"
    with pytest.raises(ValueError, match='Did you mean "torch"'):
        Preprocess("trch")


@pytest.mark.parametrize(
    "backbone, source, mode",
    [
        ("resnet50", "imagenet", "caffe"),
        ("densenet121", "imagenet", "torch"),
        ("inception_v3", "imagenet", "tf"),
        ("irv2", "imagenet", "tf"),
        ("resnet50", "radimagenet", "radimagenet"),
        ("irv2", "radimagenet", "radimagenet"),
        ("densenet121", None, "radimagenet"),
    ],
)
def test_auto_follows_the_weight_source(backbone, source, mode):
    assert resolve_preprocessing("auto", get_backbone(backbone), source) == mode


def test_explicit_mode_overrides_auto():
    model = build_model("test_tiny", weights=None, input_shape=(32, 32, 3), preprocessing="tf")
    assert model.get_layer("preprocess").mode == "tf"

"""The on-device augmentation (keras.ops) against the tf.data one (augment.py), given the same transforms.

On float input the two agree to 1e-4 when both are compiled (the tf.data path compiles its bilinear gather
with XLA; a step that runs ``warp`` is compiled too) and when both run uncompiled (the other modes use
TensorFlow's ``ImageProjectiveTransformV3`` kernel). Compiled against uncompiled they differ by the float32
rounding of the sampling coordinate (XLA fuses multiply-adds): at most |image gradient| × ulp(coordinate).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from radtransfer.data import augment
from radtransfer.data.py_dataset.device_augment import (
    DeviceAugment,
    random_transforms_np,
    transform_matrices_np,
    warp,
    with_device_augment,
)
from radtransfer.data.tf_data.augment import apply_transforms, transform_matrices

SHAPES = [(2, 32, 32, 3), (2, 75, 75, 1)]
# Strong enough that constant fill, edges and both flips occur in every batch.
STRONG = augment.Augment(
    rotation=30, width_shift=0.3, height_shift=0.3, shear=10, zoom=(0.7, 1.3), horizontal_flip=True, vertical_flip=True
)


def _case(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, shape)
    images = images.round().astype(np.uint8) if dtype == np.uint8 else images.astype(dtype)
    transforms = random_transforms_np(shape[0], shape[1], shape[2], STRONG, rng)
    return images, transforms


def _compiled_tf(params):
    return tf.function(lambda x, t: warp(x, t, params), jit_compile=True, reduce_retracing=True)


def _uses_xla(params):
    """Whether augment.apply_transforms takes its XLA-compiled gather for these parameters."""
    return params.interpolation == "bilinear" and params.fill_mode in ("nearest", "constant")


def test_transform_matrices_np_equals_the_tensorflow_formula():
    rng = np.random.default_rng(1)
    n = 16
    draws = [
        rng.uniform(-0.5, 0.5, n),  # theta
        rng.uniform(-8, 8, n),  # tx
        rng.uniform(-8, 8, n),  # ty
        rng.uniform(-0.2, 0.2, n),  # shear
        rng.uniform(0.8, 1.2, n),  # zx
        rng.uniform(0.8, 1.2, n),  # zy
        rng.random(n) < 0.5,  # flip_h
        rng.random(n) < 0.5,  # flip_v
    ]
    for height, width in ((32, 32), (75, 60)):
        tensors = [tf.constant(d) if d.dtype == bool else tf.constant(d, tf.float32) for d in draws]
        expected = transform_matrices(*tensors, height, width).numpy()
        got = transform_matrices_np(*draws, height, width)
        assert got.shape == (n, 8) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=["32x32x3", "75x75x1"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", augment.FILL_MODES)
def test_warp_equals_the_tf_data_augmentation_on_float_images(shape, interpolation, fill_mode):
    images, transforms = _case(shape)
    params = augment.Augment(fill_mode=fill_mode, interpolation=interpolation, fill_value=7.0)
    expected = apply_transforms(tf.constant(images), tf.constant(transforms), params).numpy()
    got = (
        _compiled_tf(params)(images, transforms).numpy()
        if _uses_xla(params)
        else np.asarray(warp(images, transforms, params))
    )
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    if fill_mode == "constant":
        assert (got == 7.0).any()  # the transforms do reach outside the image


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["nearest", "constant"])
def test_warp_equals_the_tf_data_augmentation_on_uint8_images_after_rounding(interpolation, fill_mode):
    images, transforms = _case((2, 32, 32, 3), seed=2, dtype=np.uint8)
    params = augment.Augment(fill_mode=fill_mode, interpolation=interpolation)
    expected = apply_transforms(tf.constant(images), tf.constant(transforms), params).numpy()
    got = (
        _compiled_tf(params)(images, transforms).numpy()
        if _uses_xla(params)
        else np.asarray(warp(images, transforms, params))
    )
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def coordinate_rounding_bound(size: int) -> float:
    """The most a [0, 255] image can change when each sampling coordinate (below 2·size) moves by one ulp."""
    return 2 * 255 * float(np.spacing(np.float32(2 * size)))


def test_uncompiled_warp_differs_from_the_compiled_tf_data_path_by_coordinate_rounding_only():
    images, transforms = _case((2, 32, 32, 3), seed=8)
    params = augment.Augment(fill_mode="constant")
    expected = apply_transforms(tf.constant(images), tf.constant(transforms), params).numpy()
    difference = np.abs(np.asarray(warp(images, transforms, params)) - expected)
    assert 0 < difference.max() <= coordinate_rounding_bound(32)
    uint8 = images.round().astype(np.uint8)
    expected = apply_transforms(tf.constant(uint8), tf.constant(transforms), params).numpy().astype(int)
    off = np.abs(np.asarray(warp(uint8, transforms, params)).astype(int) - expected)
    assert off.max() <= 1 and (off > 0).mean() < 1e-3


def test_warp_handles_an_unknown_batch_size_in_a_compiled_graph():
    images, transforms = _case((3, 32, 32, 3))
    params = augment.get_augment("radimagenet")
    step = tf.function(
        lambda x, t: warp(x, t, params),
        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32), tf.TensorSpec([None, 8], tf.float32)],
        jit_compile=True,
    )
    expected = apply_transforms(tf.constant(images), tf.constant(transforms), params).numpy()
    np.testing.assert_allclose(step(images, transforms).numpy(), expected, rtol=0, atol=1e-4)


IDENTITY = np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_identity_gives_the_image_back_and_an_integer_shift_shifts_it(interpolation):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 12, 10, 3)).astype(np.uint8)
    for fill_mode in augment.FILL_MODES:
        params = augment.Augment(fill_mode=fill_mode, interpolation=interpolation, fill_value=9.0)
        same = np.asarray(warp(images, np.stack([IDENTITY] * 2), params))
        np.testing.assert_array_equal(same, images)
    # out(x, y) = in(x - 3, y + 2): columns move right by 3, rows up by 2.
    shift = IDENTITY.copy()
    shift[2], shift[5] = -3.0, 2.0
    shifts = np.stack([shift] * 2)
    constant = np.asarray(
        warp(images, shifts, augment.Augment(fill_mode="constant", interpolation=interpolation, fill_value=9.0))
    )
    expected = np.full_like(images, 9)
    expected[:, :-2, 3:] = images[:, 2:, :-3]
    np.testing.assert_array_equal(constant, expected)
    nearest = np.asarray(warp(images, shifts, augment.Augment(fill_mode="nearest", interpolation=interpolation)))
    rows = np.minimum(np.arange(12) + 2, 11)
    cols = np.maximum(np.arange(10) - 3, 0)
    np.testing.assert_array_equal(nearest, images[:, rows][:, :, cols])


def test_flips_mirror_the_image():
    images = np.arange(2 * 6 * 5 * 1, dtype=np.float32).reshape(2, 6, 5, 1)
    zeros = np.zeros(2)
    for flip_h, flip_v, expected in (
        (True, False, images[:, :, ::-1]),
        (False, True, images[:, ::-1]),
        (True, True, images[:, ::-1, ::-1]),
    ):
        t = transform_matrices_np(zeros, zeros, zeros, zeros, 1.0, 1.0, flip_h, flip_v, 6, 5)
        np.testing.assert_array_equal(np.asarray(warp(images, t, "radimagenet")), expected)


def _linear_parts(transforms):
    return transforms[:, [0, 1, 3, 4]].reshape(-1, 2, 2)


def test_random_transforms_np_respects_the_parameter_ranges():
    n = 4000
    rotation = random_transforms_np(
        n,
        32,
        32,
        augment.Augment(rotation=10, width_shift=0, height_shift=0, shear=0, zoom=(1, 1), horizontal_flip=False),
        0,
    )
    angles = np.degrees(np.arctan2(rotation[:, 3], rotation[:, 0]))
    assert -10 <= angles.min() < -9.9 and 9.9 < angles.max() <= 10
    shifts = random_transforms_np(
        n,
        40,
        50,
        augment.Augment(rotation=0, width_shift=0.1, height_shift=0.2, shear=0, zoom=(1, 1), horizontal_flip=False),
        1,
    )
    np.testing.assert_allclose(_linear_parts(shifts), np.broadcast_to(np.eye(2), (n, 2, 2)), atol=1e-6)
    assert -5 <= shifts[:, 2].min() < -4.9 and 4.9 < shifts[:, 2].max() <= 5  # ±0.1 · width 50
    assert -8 <= shifts[:, 5].min() < -7.9 and 7.9 < shifts[:, 5].max() <= 8  # ±0.2 · height 40
    zooms = random_transforms_np(
        n,
        32,
        32,
        augment.Augment(rotation=0, width_shift=0, height_shift=0, shear=0, zoom=(0.9, 1.1), horizontal_flip=False),
        2,
    )
    for column in (0, 4):
        assert 0.9 <= zooms[:, column].min() < 0.91 and 1.09 < zooms[:, column].max() <= 1.1
    assert abs(np.corrcoef(zooms[:, 0], zooms[:, 4])[0, 1]) < 0.1  # x and y zoom drawn independently
    # A flip is the only part with a negative determinant (shear's is cos(shear) > 0).
    flipped = np.linalg.det(_linear_parts(random_transforms_np(n, 32, 32, "radimagenet", 3))) < 0
    assert 0.46 < flipped.mean() < 0.54
    assert not (np.linalg.det(_linear_parts(random_transforms_np(n, 32, 32, "radimagenet_ct", 3))) < 0).any()
    # With rotation and shear under 45°, a0 < 0 exactly when flipped horizontally, b1 < 0 when vertically.
    strong = random_transforms_np(n, 32, 32, STRONG, 4)
    flip_h, flip_v = strong[:, 0] < 0, strong[:, 4] < 0
    assert 0.46 < flip_h.mean() < 0.54 and 0.46 < flip_v.mean() < 0.54 and 0.22 < (flip_h & flip_v).mean() < 0.28
    assert random_transforms_np(3, 32, 32, "radimagenet", 5).dtype == np.float32
    np.testing.assert_array_equal(
        random_transforms_np(3, 8, 8, "radimagenet", 6), random_transforms_np(3, 8, 8, "radimagenet", 6)
    )


def _tiny_model(shape=(16, 16, 3)):
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def test_wrapper_warps_in_training_only_and_trains_the_callers_model():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    wrapper = with_device_augment(model, "radimagenet")
    assert any(layer is model for layer in wrapper.layers)
    images, transforms = _case((4, 16, 16, 3), seed=5, dtype=np.uint8)
    inputs = {"images": images, "transforms": transforms}
    warped = np.asarray(warp(images, transforms, "radimagenet")).astype(np.float32)
    np.testing.assert_allclose(wrapper(inputs, training=True), model(warped), atol=1e-6)
    np.testing.assert_allclose(wrapper(inputs, training=False), model(images.astype(np.float32)), atol=1e-6)
    assert not np.allclose(warped, images)
    before = model.get_layer("predictions").get_weights()[0].copy()
    # jit_compile=True: the warp inside the XLA-compiled train step (as on a GPU; "auto" means off on CPU).
    wrapper.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy", jit_compile=True)
    wrapper.train_on_batch(inputs, np.eye(2, dtype="float32")[[0, 1, 0, 1]])
    assert not np.allclose(model.get_layer("predictions").get_weights()[0], before)


def test_wrapper_repeats_grayscale_batches_to_the_models_three_channels():
    model = _tiny_model()
    wrapper = with_device_augment(model, "radimagenet", channels=1)
    images, transforms = _case((2, 16, 16, 1), seed=6, dtype=np.uint8)
    warped = np.asarray(warp(images, transforms, "radimagenet")).astype(np.float32)
    got = wrapper({"images": images, "transforms": transforms}, training=True)
    np.testing.assert_allclose(got, model(np.repeat(warped, 3, axis=-1)), atol=1e-6)


def test_layer_serializes_and_the_saved_wrapper_reloads(tmp_path):
    layer = DeviceAugment(STRONG, name="aug")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, DeviceAugment) and clone.params == STRONG and clone.name == "aug"
    model = _tiny_model()
    wrapper = with_device_augment(model, STRONG)
    wrapper.save(tmp_path / "wrapper.keras")
    loaded = keras.saving.load_model(tmp_path / "wrapper.keras")
    images, transforms = _case((2, 16, 16, 3), seed=7, dtype=np.uint8)
    inputs = {"images": images, "transforms": transforms}
    np.testing.assert_allclose(loaded(inputs, training=True), wrapper(inputs, training=True), atol=1e-6)


def test_mistakes_get_one_line_errors():
    images, transforms = _case((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"transforms of shape \(batch, 8\)"):
        warp(images, transforms[:, :6], "radimagenet")
    with pytest.raises(ValueError, match=r"images of shape \(batch, height, width, channels\)"):
        warp(images[0], transforms, "radimagenet")
    with pytest.raises(ValueError, match="augmentation parameters"):
        warp(images, transforms, None)
    with pytest.raises(ValueError, match="augment"):
        random_transforms_np(2, 8, 8, "radimagenett")
    with pytest.raises(ValueError, match="positive integer width"):
        random_transforms_np(2, 8, 0, "radimagenet")
    with pytest.raises(ValueError, match="batch_size"):
        random_transforms_np(-1, 8, 8, "radimagenet")
    with pytest.raises(ValueError, match=r"channels=3 \(the model's\) or 1"):
        with_device_augment(_tiny_model(), channels=2)
    with pytest.raises(TypeError, match="keras.Model"):
        with_device_augment(lambda x: x)
    assert math.isfinite(float(np.asarray(warp(images, transforms, "radimagenet")).sum()))

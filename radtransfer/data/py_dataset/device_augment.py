"""The RadImageNet augmentation applied on the accelerator, inside the compiled training step.

The tf.data path (``tf_data/augment.py``) warps every batch on the CPU. Here the CPU delivers the cached uint8
batch and one (8,) transform per image, drawn with NumPy (``random_transforms_np``: 8 floats per image),
and ``warp`` applies them with ``keras.ops`` (an XLA gather on TensorFlow and JAX, torch ops on torch's
device). Given the same transforms, ``warp`` computes ``tf_data.augment.apply_transforms``'s formula term for term:

- compiled the way the tf.data path compiles its gather (XLA on TensorFlow) the results are bitwise equal;
  uncompiled (eager, as on PyTorch) they equal TensorFlow's ``ImageProjectiveTransformV3`` kernel to 5e-5;
- across compilers (XLA against eager, JAX's XLA against TensorFlow's) they differ by the float32 rounding of
  the sampling coordinate (fused multiply-adds): at most |image gradient| × ulp(coordinate), up to 9e-3 on
  [0, 255] noise at 256 px, which moves about 2 in 10,000 uint8 pixels by one grey level. The tf.data
  path's XLA gather and TensorFlow's own kernel differ by the same amount.

Design: ``with_device_augment(model, params)`` returns a new ``keras.Model`` taking ``(images, transforms)``
that calls ``model`` as a layer, so it shares every weight with it: training the wrapper trains the caller's
model, while the caller's model keeps its own one-input signature for ``predict``, ``evaluate``, saving and
Grad-CAM. Putting the augmentation layer inside the caller's model instead would give every inference call
a transforms input it does not need. The warp itself is a serializable layer, ``DeviceAugment`` (identity
outside training), which the wrapper uses and which can be placed in any functional model.

Why not ``keras.ops.image.affine_transform``: it reads the same (batch, 8) transforms with TensorFlow's
coordinate convention and fill modes (it equals TensorFlow's kernel to 5e-5 on every backend), but on
TensorFlow it is that kernel, ``ImageProjectiveTransformV3``, which XLA cannot compile (a ``jit_compile=True``
step fails), and elsewhere it is slow: jitted on JAX it interpolates over the channel axis too
(``map_coordinates`` in three dimensions), 30 times slower than ``warp`` on CPU (0.88 s against 0.029 s for
32 images of 256×256×3), and 4 times slower eager on PyTorch (0.50 s against 0.12 s).

No TensorFlow import here: the module works under KERAS_BACKEND=jax or torch without TensorFlow loaded.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ..augment import Augment, get_augment

__all__ = ["DeviceAugment", "random_transforms_np", "transform_matrices_np", "warp", "with_device_augment"]


def _params(params) -> Augment:
    augment = get_augment(params)
    if augment is None:
        raise ValueError(
            f"Expected augmentation parameters (a preset name such as 'radimagenet', a dict or an Augment). "
            f"Received: params={params!r}"
        )
    return augment


def transform_matrices_np(theta, tx, ty, shear, zx, zy, flip_h, flip_v, height, width) -> np.ndarray:
    """NumPy twin of ``tf_data.augment.transform_matrices``: (batch, 8) float32 transforms, output pixel → input pixel.

    The matrix is built in (x=column, y=row) coordinates about the image centre as
    rotation · shift · shear · zoom, then the output flips, as Keras's ``ImageDataGenerator``. It is computed
    in float64 and rounded once to float32 (TensorFlow's version computes in float32; they agree to ~1e-5).

    Args:
        theta, shear: angles in radians; tx, ty: shifts in pixels along x (columns) and y (rows);
            zx, zy: zoom factors along x and y; flip_h, flip_v: booleans; each shaped (batch,) or scalar.
        height, width: the image size in pixels.

    Returns:
        A (batch, 8) float32 array [a0, a1, a2, b0, b1, b2, 0, 0] with x_in = a0·x + a1·y + a2 and
        y_in = b0·x + b1·y + b2, as ``ImageProjectiveTransformV3`` reads it.
    """
    theta, tx, ty, shear, zx, zy = np.broadcast_arrays(
        *(np.asarray(v, np.float64) for v in (theta, tx, ty, shear, zx, zy))
    )
    flip_h = np.broadcast_to(np.asarray(flip_h, bool), theta.shape)
    flip_v = np.broadcast_to(np.asarray(flip_v, bool), theta.shape)
    h, w = float(height), float(width)
    batch = theta.shape
    zeros, ones = np.zeros(batch), np.ones(batch)

    def matrix(rows):
        return np.stack([np.stack([np.broadcast_to(e, batch) for e in r], axis=-1) for r in rows], axis=-2)

    cos, sin = np.cos(theta), np.sin(theta)
    rotation = matrix([[cos, -sin, zeros], [sin, cos, zeros], [zeros, zeros, ones]])
    shift = matrix([[ones, zeros, tx], [zeros, ones, ty], [zeros, zeros, ones]])
    shear_m = matrix([[ones, -np.sin(shear), zeros], [zeros, np.cos(shear), zeros], [zeros, zeros, ones]])
    zoom = matrix([[zx, zeros, zeros], [zeros, zy, zeros], [zeros, zeros, ones]])
    o_x, o_y = w / 2.0 - 0.5, h / 2.0 - 0.5
    offset = matrix([[ones, zeros, o_x], [zeros, ones, o_y], [zeros, zeros, ones]])
    reset = matrix([[ones, zeros, -o_x], [zeros, ones, -o_y], [zeros, zeros, ones]])
    flip = matrix(
        [
            [np.where(flip_h, -1.0, 1.0), zeros, np.where(flip_h, w - 1.0, 0.0)],
            [zeros, np.where(flip_v, -1.0, 1.0), np.where(flip_v, h - 1.0, 0.0)],
            [zeros, zeros, ones],
        ]
    )
    m = offset @ rotation @ shift @ shear_m @ zoom @ reset @ flip
    out = np.stack([m[..., 0, 0], m[..., 0, 1], m[..., 0, 2], m[..., 1, 0], m[..., 1, 1], m[..., 1, 2], zeros, zeros])
    return np.moveaxis(out, 0, -1).astype(np.float32)


def random_transforms_np(batch_size: int, height: int, width: int, params, rng=None) -> np.ndarray:
    """Draws (batch_size, 8) float32 transforms on the host, from the same distributions as
    ``augment.random_transforms``.

    The distributions are the same (rotation uniform in ±rotation degrees, shifts uniform in ±fraction of the
    size, shear in ±shear degrees, independent x and y zoom uniform in ``zoom``, each flip with probability
    1/2 when enabled), but not the random numbers: TensorFlow's stateless generator cannot be reproduced in
    NumPy, so a seed here does not give the tf.data path's transforms.

    Args:
        batch_size, height, width: how many transforms, and the image size in pixels.
        params: an ``Augment``, a preset name ("radimagenet", "radimagenet_ct") or a dict of its fields.
        rng: a ``numpy.random.Generator``, or a seed for one, such as (seed, epoch) (None: fresh entropy).

    Returns:
        A (batch_size, 8) float32 array, as ``warp`` and ``DeviceAugment`` take.
    """
    params = _params(params)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
        raise ValueError(f"Expected a non-negative integer batch_size. Received: batch_size={batch_size!r}")
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Expected a positive integer {name} (pixels). Received: {name}={value!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n = int(batch_size)

    def uniform(low, high, active):
        return rng.uniform(low, high, n) if active else np.zeros(n)

    theta = uniform(-params.rotation, params.rotation, params.rotation) * (math.pi / 180.0)
    tx = uniform(-params.width_shift, params.width_shift, params.width_shift) * width
    ty = uniform(-params.height_shift, params.height_shift, params.height_shift) * height
    shear = uniform(-params.shear, params.shear, params.shear) * (math.pi / 180.0)
    zoomed = params.zoom != (1.0, 1.0)
    zx = rng.uniform(params.zoom[0], params.zoom[1], n) if zoomed else np.ones(n)
    zy = rng.uniform(params.zoom[0], params.zoom[1], n) if zoomed else np.ones(n)
    flips = rng.random((n, 2)) < 0.5
    flip_h = flips[:, 0] & bool(params.horizontal_flip)
    flip_v = flips[:, 1] & bool(params.vertical_flip)
    return transform_matrices_np(theta, tx, ty, shear, zx, zy, flip_h, flip_v, height, width)


def _trunc(v):
    ops = keras.ops
    return ops.sign(v) * ops.floor(ops.abs(v))


def _map_coordinate(c, size: int, fill_mode: str):
    """TensorFlow's ``MapCoordinate`` for "reflect" and "wrap" (image_ops.h), formula for formula."""
    ops = keras.ops
    if size <= 1:
        return ops.zeros_like(c)
    top = float(size - 1)
    if fill_mode == "reflect":
        sz2 = 2.0 * size
        low = sz2 * _trunc(-c / sz2) + c
        low = ops.where(low < -size, low + sz2, -low - 1.0)
        high = c - sz2 * _trunc(c / sz2)
        high = ops.where(high >= size, sz2 - high - 1.0, high)
    else:  # wrap
        low = c + size * (_trunc(-c / top) + 1.0)
        high = c - size * _trunc(c / top)
    c = ops.where(c < 0, low, ops.where(c > top, high, c))
    return ops.clip(c, 0.0, top)


def _take_rows(flat, index):
    """flat[index] along axis 0, for indices known to be in range."""
    if keras.backend.backend() == "jax":
        import jax.numpy as jnp

        # jnp.take's default "fill" mode masks out-of-range indices: three times slower on CPU.
        return jnp.take(flat, index, axis=0, mode="clip")
    if keras.backend.backend() == "torch":
        import torch

        # keras.ops.take first casts the indices to int64 and wraps negative ones: two more passes over them.
        return torch.index_select(flat, 0, index.reshape(-1)).reshape(*index.shape, flat.shape[-1])
    return keras.ops.take(flat, index, axis=0)


def warp(images, transforms, params):
    """Applies (batch, 8) transforms to a (batch, H, W, C) batch with ``keras.ops``, as
    ``tf_data.augment.apply_transforms`` does with TensorFlow.

    Each output pixel (x, y) reads the input at (a0·x + a1·y + a2, b0·x + b1·y + b2) (the transforms are
    affine: their last two entries are ignored; ``transform_matrices_np`` and ``random_transforms_np`` make
    them 0), with ``params.interpolation`` ("bilinear" or "nearest") and ``params.fill_mode`` ("nearest",
    "constant", "reflect" or "wrap", each as TensorFlow's ``ImageProjectiveTransformV3`` maps coordinates).
    It runs inside a jitted function on every backend.

    Args:
        images: (batch, H, W, C) with static H, W and C; uint8 or float.
        transforms: (batch, 8) float transforms, output pixel → input pixel.
        params: an ``Augment``, a preset name or a dict of its fields.

    Returns:
        The warped batch in the input's dtype; integer results are rounded (half to even) and clipped to the
        dtype's range, floating results are not rounded.
    """
    params = _params(params)
    ops = keras.ops
    images = ops.convert_to_tensor(images)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if len(images.shape) != 4 or any(d is None for d in images.shape[1:]):
        raise ValueError(
            f"Expected images of shape (batch, height, width, channels) with known height, width and channels. "
            f"Received: images.shape={tuple(images.shape)}"
        )
    height, width, channels = (int(d) for d in images.shape[1:])
    t = ops.cast(ops.convert_to_tensor(transforms), "float32")
    if len(t.shape) != 2 or t.shape[-1] != 8:
        raise ValueError(
            f"Expected transforms of shape (batch, 8), one per image (see random_transforms_np). "
            f"Received: transforms.shape={tuple(t.shape)}"
        )
    ys, xs = ops.meshgrid(ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij")
    xs, ys = ops.reshape(xs, (1, -1)), ops.reshape(ys, (1, -1))
    x_in = t[:, 0:1] * xs + t[:, 1:2] * ys + t[:, 2:3]  # (batch, H·W)
    y_in = t[:, 3:4] * xs + t[:, 4:5] * ys + t[:, 5:6]
    fill_mode = params.fill_mode
    if fill_mode in ("reflect", "wrap"):
        x_in, y_in = _map_coordinate(x_in, width, fill_mode), _map_coordinate(y_in, height, fill_mode)
    flat = ops.reshape(ops.cast(images, "float32"), (-1, channels))
    base = ops.reshape(ops.arange(ops.shape(t)[0], dtype="int32") * (height * width), (-1, 1))
    fill_value = ops.cast(params.fill_value, "float32")
    w_max, h_max = float(width - 1), float(height - 1)

    def columns(xx):
        """Clamped column indices of integer-valued float x, and where x lies inside the image."""
        inside = None if fill_mode == "nearest" else (xx >= 0) & (xx <= w_max)
        return ops.cast(ops.clip(xx, 0.0, w_max), "int32"), inside

    def rows(yy):
        """Flat offsets of the rows at integer-valued float y (clamped), and where y lies inside the image."""
        inside = None if fill_mode == "nearest" else (yy >= 0) & (yy <= h_max)
        return base + ops.cast(ops.clip(yy, 0.0, h_max), "int32") * width, inside

    def read(column, row):
        """The input pixels; fill_value outside the image, except for "nearest" fill (the edge pixel)."""
        (xi, x_inside), (yi, y_inside) = column, row
        value = _take_rows(flat, yi + xi)  # (batch, H·W, C)
        if fill_mode == "nearest":
            return value
        return ops.where((x_inside & y_inside)[..., None], value, fill_value)

    if params.interpolation == "nearest":
        if fill_mode == "nearest":
            x_in, y_in = ops.clip(x_in, 0.0, w_max), ops.clip(y_in, 0.0, h_max)
        # std::round, as TensorFlow: half away from zero.
        x_near, y_near = (ops.sign(c) * ops.floor(ops.abs(c) + 0.5) for c in (x_in, y_in))
        out = read(columns(x_near), rows(y_near))
    else:
        # The terms and their order as augment._bilinear, so that the two agree to float rounding.
        x0, y0 = ops.floor(x_in), ops.floor(y_in)
        fx, fy = x_in - x0, y_in - y0
        cols, rws = (columns(x0), columns(x0 + 1)), (rows(y0), rows(y0 + 1))
        out = 0.0
        for dy, dx, weight in (
            (0, 0, (1 - fx) * (1 - fy)),
            (0, 1, fx * (1 - fy)),
            (1, 0, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            out = out + read(cols[dx], rws[dy]) * weight[..., None]
    out = ops.reshape(out, (-1, height, width, channels))
    if "int" in dtype:
        info = np.iinfo(dtype)
        out = ops.round(ops.clip(out, float(info.min), float(info.max)))
    return ops.cast(out, dtype)


@keras.saving.register_keras_serializable(package="radtransfer")
class DeviceAugment(keras.layers.Layer):
    """Warps ``[images, transforms]`` with ``warp`` in training; returns the images unchanged otherwise.

    The output is float32 in both modes (uint8 input is rounded after the warp, as the tf.data path's
    uint8 batches are). The transforms come with each batch, drawn on the host by ``random_transforms_np``.

    Args:
        params: an ``Augment``, a preset name ("radimagenet", "radimagenet_ct") or a dict of its fields.
        **kwargs: ``keras.layers.Layer`` arguments (name, ...); the dtype defaults to float32, so that the warp
            is exact under a mixed-precision policy too.
    """

    def __init__(self, params="radimagenet", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.params = _params(params)

    def call(self, inputs, training=None):
        images, transforms = inputs
        if training:
            images = warp(images, transforms, self.params)
        return keras.ops.cast(images, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def compute_output_spec(self, inputs, training=None):
        images = inputs[0]
        return keras.KerasTensor(images.shape, dtype=self.compute_dtype)

    def get_config(self):
        params = self.params.to_dict()
        params["zoom"] = list(params["zoom"])
        return {**super().get_config(), "params": params}


def with_device_augment(model, params="radimagenet", *, channels: int | None = None, image_dtype: str = "uint8"):
    """Wraps ``model`` so that it takes ``(images, transforms)`` and augments the images on the device.

    The wrapper calls ``model`` as a layer after a ``DeviceAugment``: it shares every layer and weight with
    ``model``, so fitting the wrapper trains ``model`` itself; keep using ``model`` for prediction and
    saving. Outside training the wrapper ignores the transforms and is ``model``.

    Args:
        model: a built ``keras.Model`` taking (batch, H, W, C) images.
        params: an ``Augment``, a preset name ("radimagenet", "radimagenet_ct") or a dict of its fields.
        channels: the channels the batches carry, if not the model's: 1 for grayscale batches fed to a
            3-channel model (warped once, then repeated to three channels on the device).
        image_dtype: the dtype of the images fed in ("uint8" for cached batches: rounded after the warp,
            exactly as the tf.data path's uint8 batches).

    Returns:
        A ``keras.Model`` with inputs ``{"images": (batch, H, W, channels), "transforms": (batch, 8)}`` (a
        dict, or a tuple in that order) and ``model``'s outputs.

    Example:
        Fresh transforms for every batch (a fixed array would repeat the same warp in every epoch)::

            wrapper = with_device_augment(model, "radimagenet")
            wrapper.compile(optimizer="adam", loss="binary_crossentropy")
            rng = np.random.default_rng(726)

            def batches():  # images: cached uint8 (n, 256, 256, 3); labels: one-hot
                for i in range(0, len(images), 32):
                    x = images[i : i + 32]
                    t = random_transforms_np(len(x), 256, 256, "radimagenet", rng)
                    yield {"images": x, "transforms": t}, labels[i : i + 32]

            wrapper.fit(batches(), epochs=1)  # a keras.utils.PyDataset would serve every epoch
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model to wrap. Received: model={type(model).__name__}")
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Expected a built model with one image input; build or call it first. Received: {error}"
        ) from None
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ValueError(
            f"Expected a model taking (batch, height, width, channels) images of a fixed size. "
            f"Received: model.input_shape={shape}"
        )
    model_channels = shape[-1]
    channels = model_channels if channels is None else channels
    if channels not in (model_channels, 1):
        raise ValueError(
            f"Expected channels={model_channels} (the model's) or 1 (grayscale, repeated on the device). "
            f"Received: channels={channels!r}"
        )
    images = keras.Input(shape=(*shape[1:3], channels), dtype=image_dtype, name="images")
    transforms = keras.Input(shape=(8,), dtype="float32", name="transforms")
    x = DeviceAugment(params, name="device_augment")([images, transforms])
    if channels != model_channels:
        x = keras.layers.Concatenate(axis=-1, name="repeat_channels")([x] * model_channels)
    return keras.Model({"images": images, "transforms": transforms}, model(x), name=f"{model.name}_device_augment")

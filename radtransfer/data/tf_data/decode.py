"""The TensorFlow half of reading images: PNG, JPEG and BMP bytes decoded in the graph (TIFF through Pillow),
resized, and grey batches made RGB. What is read, and how (``ReadSettings``), is decided in ``data/decode.py``; the
TensorFlow-free twin is ``py_dataset/numpy_read.py``."""

from __future__ import annotations

import numpy as np

from ..decode import JPEG_MAGIC, PNG_MAGIC, TIFF_MAGICS, ReadSettings
from ..failures import _MARK, _remember_failure


def decode_image_tf(contents, sixteen_bit: str = "range", channels: int = 3, path=None):
    """Decodes PNG/JPEG/BMP/TIFF bytes (a scalar string tensor) into a uint8 HxWxC tensor.

    TIFF, which TensorFlow does not decode, goes through Pillow in a ``numpy_function`` (``numpy_read``'s decoder,
    so both paths give the same pixels): 16-bit, 32-bit and float grey map as 16-bit PNGs do; first page only.

    Args:
        contents: the file's bytes.
        sixteen_bit: how 16-bit PNGs and TIFFs map to 0–255: "range" (the image's own min..max) or "full"
            (0..65535).
        channels: 3 (RGB; grayscale is repeated) or 1 (the first channel, for grayscale sets).
        path: the file's path (a string tensor), named when a TIFF fails to decode.
    """
    import tensorflow as tf

    name = tf.constant("a TIFF") if path is None else path

    def tiff():
        def decode(data, where):
            from ...errors import ImageReadError
            from ..py_dataset.numpy_read import _decode_bytes

            where = where.decode()
            try:
                return _decode_bytes(data, sixteen_bit, where)
            except Exception as exc:  # an empty image and the reason kept here: see readable_pipeline_errors
                text = str(exc).splitlines()[0] if str(exc) else ""
                reason = (
                    text.split("': ", 1)[-1] if isinstance(exc, ImageReadError) else f"{type(exc).__name__}: {text}"
                )
                _remember_failure(where, reason)
                return np.zeros((0, 0, 1), dtype=np.uint8)

        image = tf.numpy_function(decode, [contents, name], tf.uint8, stateful=False)
        image.set_shape([None, None, None])
        # With its path, a failed TIFF stops the pipeline naming the file (as a DICOM does); without, the words
        # "does not decode" let readable_pipeline_errors find it by decoding the set's files.
        words = [_MARK, name, _MARK] if path is not None else [name, " does not decode"]
        check = tf.debugging.Assert(tf.size(image) > 0, [tf.strings.join(words)])
        with tf.control_dependencies([check]):
            return tf.identity(image)

    def png():
        depth = tf.io.decode_raw(tf.strings.substr(contents, 24, 1), tf.uint8)[0]  # IHDR's bit depth

        def sixteen():
            wide = tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16), tf.float32)
            if sixteen_bit == "full":
                narrow = wide / 257.0
            else:
                low, high = tf.reduce_min(wide), tf.reduce_max(wide)
                narrow = tf.math.divide_no_nan(wide - low, high - low) * 255.0
            return tf.cast(tf.round(tf.clip_by_value(narrow, 0.0, 255.0)), tf.uint8)

        # 8 bits or fewer (and palettes) decode straight to uint8: the same pixels as decoding to uint16 (which
        # scales them by 257) and dividing back, a fifth to a quarter of the decoding time less.
        return tf.cond(depth == 16, sixteen, lambda: tf.io.decode_png(contents, channels=0, dtype=tf.uint8))

    def jpeg():
        # The accurate integer IDCT (libjpeg's JDCT_ISLOW, as Pillow decodes): TensorFlow's default, INTEGER_FAST,
        # is up to 4 grey levels off it, and the backend-free path (numpy_read) reads JPEGs with Pillow.
        return tf.io.decode_jpeg(contents, channels=0, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(contents, channels=0, expand_animations=False, dtype=tf.uint8)

    head = tf.strings.substr(contents, 0, 4)
    is_png = tf.equal(head, PNG_MAGIC)
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), JPEG_MAGIC)
    is_tiff = tf.reduce_any(tf.equal(head, list(TIFF_MAGICS)))
    image = tf.cond(is_png, png, lambda: tf.cond(is_jpeg, jpeg, lambda: tf.cond(is_tiff, tiff, other)))
    if channels == 1:
        image = image[..., :1]
        image.set_shape([None, None, 1])
        return image
    return to_rgb(image)


def to_rgb(image):
    """Grayscale (1 or 2 channels) to three identical channels; drops alpha."""
    import tensorflow as tf

    channels = tf.shape(image)[-1]
    image = tf.cond(
        channels < 3,
        lambda: tf.tile(image[..., :1], [1, 1, 3]),
        lambda: image[..., :3],
    )
    image.set_shape([None, None, 3])
    return image


def resize_image(image, settings: ReadSettings):
    """A uint8 HxWxC tensor resized to ``settings.image_size`` (antialiased when shrinking, if asked)."""
    import tensorflow as tf

    antialias = settings.antialias and settings.interpolation != "nearest"
    # uint8 goes in as it is: the resize kernels read it as float32 themselves, giving the same floats as an explicit
    # cast (checked bitwise for every method, antialiased or not), without writing that float copy first.
    resized = tf.image.resize(image, settings.image_size, method=settings.interpolation, antialias=antialias)
    if resized.dtype == tf.uint8:  # "nearest" keeps the input's type (and its values)
        return resized
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def to_rgb_batch(images):
    """A batch of 1-channel images as 3 identical channels (others unchanged)."""
    if images.shape[-1] == 1:
        return _tile_channels(images)
    return images


_tile_channels_fn = None


def _tile_channels(images):
    """``tf.repeat(images, 3, axis=-1)`` for one channel, compiled by XLA: the same bytes, about a fifth of the CPU
    time of TensorFlow's own tile or repeat (0.04 against 0.2 ms per 256×256 image)."""
    global _tile_channels_fn
    if _tile_channels_fn is None:
        import tensorflow as tf

        _tile_channels_fn = tf.function(
            lambda x: tf.tile(x, tf.concat([tf.ones([tf.rank(x) - 1], tf.int32), [3]], 0)),
            jit_compile=True,
            reduce_retracing=True,
        )
    return _tile_channels_fn(images)

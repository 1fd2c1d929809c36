"""The serializable input-normalization layer and its modes."""

from __future__ import annotations

import keras
from keras import ops

from ..utils.choices import did_you_mean

MODES = ("radimagenet", "caffe", "torch", "tf")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

MODE_DESCRIPTIONS = {
    "radimagenet": "RGB→BGR, minus the caffe means, ÷255 (what the RadImageNet scripts fed the network)",
    "caffe": "RGB→BGR, minus the caffe means (Keras's ResNet50 ImageNet weights)",
    "torch": "÷255, minus the ImageNet mean, ÷ its std (Keras's DenseNet ImageNet weights)",
    "tf": "scaled to [-1, 1] (Keras's Inception ImageNet weights)",
}


def check_mode(mode: str) -> str:
    """Validates a concrete preprocessing mode name and returns it in lower case."""
    key = str(mode).lower()
    if key not in MODES:
        raise ValueError(
            f"Unknown preprocessing mode {mode!r}. Expected one of {', '.join(MODES)} or 'auto'."
            f"{did_you_mean(mode, MODES + ('auto',))} Received: preprocessing={mode!r}"
        )
    return key


@keras.saving.register_keras_serializable(package="radtransfer")
class Preprocess(keras.layers.Layer):
    """Normalizes images with values in [0, 255] the way a weight source expects.

    Takes RGB images (or 1-channel images, which are repeated to three identical channels, as the
    reference loader did with grayscale files) of any numeric dtype; computes in float32 and returns
    the layer's compute dtype (float16 under a mixed-precision policy).

    Args:
        mode: "radimagenet", "caffe", "torch" or "tf" (see ``MODE_DESCRIPTIONS``).
    """

    def __init__(self, mode: str = "radimagenet", **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.mode = check_mode(mode)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        if self.mode in ("radimagenet", "caffe"):
            x = ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype="float32")
            if self.mode == "radimagenet":
                x = x / 255.0
        elif self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN_RGB, dtype="float32")
            std = ops.convert_to_tensor(TORCH_STD_RGB, dtype="float32")
            x = (x / 255.0 - mean) / std
        else:
            x = x / 127.5 - 1.0
        return ops.cast(x, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config

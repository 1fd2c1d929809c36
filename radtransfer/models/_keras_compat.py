"""Registers Keras classes that keras.applications uses but does not register for deserialization.

InceptionResNetV2 scales its residual branches with ``CustomScaleLayer``, which Keras does not
register, so a saved InceptionResNetV2 model does not reload in safe mode without this. Keras keeps
that class in a private module (``keras.src``), so radtransfer defines the same layer (same name,
config and computation) rather than importing it.
"""

import keras


class CustomScaleLayer(keras.layers.Layer):
    """``inputs[0] + inputs[1] * scale``: InceptionResNetV2's scaled residual sum."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config

    def call(self, inputs):
        return inputs[0] + inputs[1] * self.scale


keras.saving.get_custom_objects().setdefault("CustomScaleLayer", CustomScaleLayer)

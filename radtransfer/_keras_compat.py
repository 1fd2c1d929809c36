"""Registers Keras classes that keras.applications uses but does not register for deserialization.

InceptionResNetV2 scales its residual branches with ``CustomScaleLayer``, which Keras does not
register, so a saved InceptionResNetV2 model does not reload in safe mode without this.
"""

import keras
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

_custom = keras.saving.get_custom_objects()
_custom.setdefault("CustomScaleLayer", CustomScaleLayer)

"""The one registry of backbones: names, aliases, constructors, sizes, weight-layer counts, stages and cost.

Architecture facts only: everything that differs between the four architectures lives here, so the rest of the
library asks the registry instead of branching on names. Their weights (files, checksums, sources,
preprocessing) are data in ``presets.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..utils.choices import did_you_mean


@dataclass(frozen=True)
class BackboneSpec:
    """What radtransfer knows about one backbone.

    Attributes:
        name: canonical name (``"densenet121"``).
        display_name: the Keras / paper spelling (``"DenseNet121"``).
        aliases: other accepted names (matched case-insensitively).
        constructor: attribute of ``keras.applications`` that builds it.
        min_size: smallest input height/width keras.applications accepts.
        weight_layers: weight-bearing layers of the notop network (the file signature).
        stem_end: name of the stem's last layer, or None for "the last MaxPooling2D before the
            first block" (used where Keras auto-numbers the stem's layer names).
        block_ends: names of the last layer of each stage, bottom to top (for "unfreeze_blocks:K").
        block_unit: what one stage is, in words.
        relative_cost: the time of one fully fine-tuned run relative to ResNet50's: a prior the grid uses to
            balance shards, start long runs first and estimate its end before any run of the backbone has
            finished. Measured: training steps at 256 px, batch 256, bf16, on an H100 (docs/performance.md).
        builder: ``(input_shape, name, keras_module=None) -> keras.Model`` for a network that is not in
            keras.applications (the test backbones; ``keras_module=tf_keras`` builds the same network in Keras 2);
            None builds ``keras.applications.<constructor>``.
        foundation: a foundation-model encoder through keras-hub (``models/foundation.py``): its weights are a
            folder or a named preset (``presets.FOUNDATION_PRESETS``), not a Keras 2 ``.h5`` file.
    """

    name: str
    display_name: str
    aliases: tuple[str, ...]
    constructor: str
    min_size: int
    weight_layers: int
    stem_end: str | None
    block_ends: tuple[str, ...]
    block_unit: str
    relative_cost: float = 1.0
    builder: Callable | None = None
    foundation: bool = False

    def build(self, input_shape=(256, 256, 3), name: str = "backbone"):
        """Builds the network, notop and average-pooled, with random weights (a foundation encoder is built by
        ``models.foundation``, which build_model calls: keras-hub is an optional extra, imported there)."""
        if self.foundation:
            raise ValueError(
                f"{self.display_name} is built through keras-hub: use build_model({self.name!r}, ...) "
                "(pip install 'radtransfer[foundation]')."
            )
        if self.builder is not None:
            return self.builder(tuple(input_shape), name)
        from keras import applications

        constructor = getattr(applications, self.constructor)
        return constructor(include_top=False, weights=None, input_shape=tuple(input_shape), pooling="avg", name=name)


def _resnet50_block_ends() -> tuple[str, ...]:
    stages = {2: 3, 3: 4, 4: 6, 5: 3}
    return tuple(f"conv{s}_block{b}_out" for s, n in stages.items() for b in range(1, n + 1))


_BACKBONES = (
    BackboneSpec(
        name="resnet50",
        display_name="ResNet50",
        aliases=("resnet-50", "resnet_50"),
        constructor="ResNet50",
        min_size=32,
        weight_layers=106,
        stem_end="pool1_pool",
        block_ends=_resnet50_block_ends(),
        block_unit="residual block",
    ),
    BackboneSpec(
        name="densenet121",
        display_name="DenseNet121",
        aliases=("densenet-121", "densenet_121"),
        constructor="DenseNet121",
        min_size=32,
        weight_layers=241,
        stem_end="pool1",
        block_ends=(
            "conv2_block6_concat",
            "pool2_pool",
            "conv3_block12_concat",
            "pool3_pool",
            "conv4_block24_concat",
            "pool4_pool",
            "conv5_block16_concat",
        ),
        block_unit="dense block or transition",
        relative_cost=1.15,
    ),
    BackboneSpec(
        name="inception_v3",
        display_name="InceptionV3",
        aliases=("inceptionv3", "inception-v3", "inception3"),
        constructor="InceptionV3",
        min_size=75,
        weight_layers=188,
        stem_end=None,
        block_ends=tuple(f"mixed{i}" for i in range(11)),
        block_unit="mixed module",
    ),
    BackboneSpec(
        name="inception_resnet_v2",
        display_name="InceptionResNetV2",
        aliases=("inceptionresnetv2", "irv2", "inception-resnet-v2", "inception_resnetv2"),
        constructor="InceptionResNetV2",
        min_size=75,
        weight_layers=448,
        stem_end="mixed_5b",
        block_ends=("block35_10_ac", "mixed_6a", "block17_20_ac", "mixed_7a", "conv_7b_ac"),
        block_unit="block group or reduction (block35 ×10, mixed_6a, block17 ×20, mixed_7a, block8 ×10)",
        relative_cost=2.0,
    ),
)


def _build_test_tiny(input_shape, name: str, keras_module=None):
    """A notop, average-pooled network of 12 layers (6 with weights) in the shape of the real ones (a stem ending in
    ``pool1``, two stages, ``avg_pool``): it builds and trains in well under a second, for tests of loops, grids,
    commands and input kinds, where the architecture is not what is tested.

    Args:
        input_shape: (height, width, channels).
        name: the model's name.
        keras_module: the Keras that builds it: Keras 3 (None), or ``tf_keras``, which writes the same network's
            weights as a Keras 2 ``.h5`` file, the format of the published weight files.
    """
    if keras_module is None:
        import keras as keras_module
    layers = keras_module.layers

    inputs = keras_module.Input(shape=input_shape)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    for block in (1, 2):
        x = layers.Conv2D(16, 3, padding="same", use_bias=False, name=f"block{block}_conv")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = layers.Activation("relu", name=f"block{block}_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras_module.Model(inputs, x, name=name)


# Test backbones (timm's ``test_*`` models): found by name, never listed; their weight presets (presets.py) are
# found by name too, so a test writes a Keras 2 file of random weights and a grid runs on it as on a real backbone.
_TEST_BACKBONES = (
    BackboneSpec(
        name="test_tiny",
        display_name="TestTiny",
        aliases=(),
        constructor="",
        min_size=8,
        weight_layers=6,
        stem_end="pool1",
        block_ends=("block1_out", "block2_out"),
        block_unit="conv block",
        relative_cost=0.001,
        builder=_build_test_tiny,
    ),
)


# Foundation-model encoders (the ``foundation`` extra): found by name, not listed among the four CNNs the grid and
# `radtransfer weights` know. A ViT has no stages here: the nested model is [resize →] encoder → pooled vector, so
# "unfreeze_top:N" counts those few layers and "unfreeze_blocks:K" is refused.
FOUNDATION_BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="dinov2",
            display_name="DINOv2",
            aliases=("dino_v2", "dinov2_vit"),
            constructor="",
            min_size=8,
            weight_layers=0,
            stem_end=None,
            block_ends=(),
            block_unit="transformer block",
            foundation=True,
        ),
        BackboneSpec(
            name="siglip",
            display_name="SigLIP",
            aliases=("siglip_vision",),
            constructor="",
            min_size=8,
            weight_layers=0,
            stem_end=None,
            block_ends=(),
            block_unit="transformer block",
            foundation=True,
        ),
    )
}

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in _BACKBONES}
_ALL: dict[str, BackboneSpec] = {spec.name: spec for spec in (*_BACKBONES, *_TEST_BACKBONES)}


def _lookup_table() -> dict[str, str]:
    table = {}
    for spec in (*_BACKBONES, *_TEST_BACKBONES, *FOUNDATION_BACKBONES.values()):
        for key in (spec.name, spec.display_name, *spec.aliases):
            table[key.lower()] = spec.name
    return table


_LOOKUP = _lookup_table()


def get_backbone(name) -> BackboneSpec:
    """Returns the registry entry for a backbone name or alias (case-insensitive).

    Raises:
        ValueError: the name is unknown; the message suggests the closest names.
    """
    if isinstance(name, BackboneSpec):
        return name
    key = str(name).strip().lower()
    if key in _LOOKUP:
        return _ALL.get(_LOOKUP[key]) or FOUNDATION_BACKBONES[_LOOKUP[key]]
    key2 = key.replace("-", "_").replace(" ", "_")
    if key2 in _LOOKUP:
        return _ALL.get(_LOOKUP[key2]) or FOUNDATION_BACKBONES[_LOOKUP[key2]]
    names = [s.name for s in _BACKBONES] + [s.display_name for s in _BACKBONES] + ["IRV2", *FOUNDATION_BACKBONES]
    raise ValueError(
        f"Unknown backbone {name!r}. Expected one of {', '.join(BACKBONES)} (foundation encoders, with the "
        f"'foundation' extra: {', '.join(FOUNDATION_BACKBONES)}) "
        f"(aliases: {', '.join(s.display_name for s in _BACKBONES)}, IRV2).{did_you_mean(name, names)} "
        f"Received: backbone={name!r}"
    )


def list_backbones() -> list[str]:
    """Returns the canonical names of the supported backbones."""
    return list(BACKBONES)


def identify_by_weight_layers(count: int) -> list[tuple[BackboneSpec, bool]]:
    """Backbones whose notop network (False) or with-top network (True) has `count` weight layers."""
    found = []
    for spec in _BACKBONES:
        if count == spec.weight_layers:
            found.append((spec, False))
        elif count == spec.weight_layers + 1:
            found.append((spec, True))
    return found

"""The one registry of backbones: names, aliases, constructors, sizes, weight files, preprocessing.

Everything that differs between the four architectures lives here, so the rest of the library asks
the registry instead of branching on names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.choices import did_you_mean

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
RADIMAGENET_URL = "https://github.com/BMEII-AI/RadImageNet"
WEIGHT_SOURCES = ("radimagenet", "imagenet")


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
        imagenet_file: file name of Keras's ImageNet notop weights.
        imagenet_subdir: folder of that file under Keras's download address.
        imagenet_md5: Keras's md5 for that file.
        imagenet_preprocessing: the Keras ``preprocess_input`` mode the ImageNet weights expect.
        radimagenet_archs: the ``<Arch>`` spellings used in RadImageNet file names.
        stem_end: name of the stem's last layer, or None for "the last MaxPooling2D before the
            first block" (used where Keras auto-numbers the stem's layer names).
        block_ends: names of the last layer of each stage, bottom to top (for "unfreeze_blocks:K").
        block_unit: what one stage is, in words.
        relative_cost: the time of one fully fine-tuned run relative to ResNet50's: a prior the grid uses to
            balance shards, start long runs first and estimate its end before any run of the backbone has
            finished. Measured: training steps at 256 px, batch 256, bf16, on an H100 (docs/performance.md).
    """

    name: str
    display_name: str
    aliases: tuple[str, ...]
    constructor: str
    min_size: int
    weight_layers: int
    imagenet_subdir: str
    imagenet_file: str
    imagenet_md5: str
    imagenet_preprocessing: str
    radimagenet_archs: tuple[str, ...]
    stem_end: str | None
    block_ends: tuple[str, ...]
    block_unit: str
    relative_cost: float = 1.0

    @property
    def imagenet_url(self) -> str:
        """Where Keras downloads the ImageNet notop file from."""
        return f"{KERAS_WEIGHTS_URL}{self.imagenet_subdir}/{self.imagenet_file}"

    @property
    def radimagenet_files(self) -> tuple[str, ...]:
        """Accepted RadImageNet file names, published spelling first."""
        names = []
        for arch in self.radimagenet_archs:
            names += [f"RadImageNet-{arch}_notop.h5", f"RadImageNet-{arch}-notop.h5"]
        return tuple(names)

    def weight_files(self, source: str) -> tuple[str, ...]:
        """Accepted file names for a weight source ("radimagenet" or "imagenet")."""
        return self.radimagenet_files if source == "radimagenet" else (self.imagenet_file,)

    def preprocessing_for(self, source: str | None) -> str:
        """The preprocessing mode that matches a weight source (None: random initialisation)."""
        if source == "imagenet":
            return self.imagenet_preprocessing
        return "radimagenet"

    def build(self, input_shape=(256, 256, 3), name: str = "backbone"):
        """Builds the keras.applications network, notop and average-pooled, with random weights."""
        from keras import applications

        constructor = getattr(applications, self.constructor)
        return constructor(
            include_top=False, weights=None, input_shape=tuple(input_shape), pooling="avg", name=name
        )


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
        imagenet_subdir="resnet",
        imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="4d473c1dd8becc155b73f8504c6f6626",
        imagenet_preprocessing="caffe",
        radimagenet_archs=("ResNet50",),
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
        imagenet_subdir="densenet",
        imagenet_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="30ee3e1110167f948a6b9946edeeb738",
        imagenet_preprocessing="torch",
        radimagenet_archs=("DenseNet121",),
        stem_end="pool1",
        block_ends=(
            "conv2_block6_concat", "pool2_pool",
            "conv3_block12_concat", "pool3_pool",
            "conv4_block24_concat", "pool4_pool",
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
        imagenet_subdir="inception_v3",
        imagenet_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="bcbd6486424b2319ff4ef7d526e38f63",
        imagenet_preprocessing="tf",
        radimagenet_archs=("InceptionV3",),
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
        imagenet_subdir="inception_resnet_v2",
        imagenet_file="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="d19885ff4a710c122648d3b5c3b684e4",
        imagenet_preprocessing="tf",
        radimagenet_archs=("IRV2", "InceptionResNetV2"),
        stem_end="mixed_5b",
        block_ends=("block35_10_ac", "mixed_6a", "block17_20_ac", "mixed_7a", "conv_7b_ac"),
        block_unit="block group or reduction (block35 ×10, mixed_6a, block17 ×20, mixed_7a, block8 ×10)",
        relative_cost=2.0,
    ),
)

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in _BACKBONES}


def _lookup_table() -> dict[str, str]:
    table = {}
    for spec in _BACKBONES:
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
        return BACKBONES[_LOOKUP[key]]
    key2 = key.replace("-", "_").replace(" ", "_")
    if key2 in _LOOKUP:
        return BACKBONES[_LOOKUP[key2]]
    names = [s.name for s in _BACKBONES] + [s.display_name for s in _BACKBONES] + ["IRV2"]
    raise ValueError(
        f"Unknown backbone {name!r}. Expected one of {', '.join(BACKBONES)} "
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

"""Weights as data: one preset per (backbone, weight source), timm's ``arch.tag`` ("densenet121.radimagenet"),
carrying the files it may be found under, its published checksum, where it comes from and the preprocessing it
expects. The backbones (``backbones.py``) know nothing of weights; a new weight source is one more entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.choices import check_choice
from .backbones import _TEST_BACKBONES, BACKBONES, get_backbone

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
RADIMAGENET_URL = "https://github.com/BMEII-AI/RadImageNet"


@dataclass(frozen=True)
class WeightPreset:
    """One backbone's weights from one source.

    Attributes:
        backbone: the backbone's canonical name ("densenet121").
        source: the weight source ("radimagenet", "imagenet").
        label: the source as people write it ("RadImageNet", "ImageNet").
        files: the file names it is found under, the published spelling first.
        md5: the published md5 (Keras publishes one for its ImageNet files; RadImageNet publishes none).
        url: where the file comes from: a download address, or the page to get it from.
        preprocessing: the ``Preprocess`` mode the weights expect.
        downloadable: Keras downloads it by itself (into ``$KERAS_HOME/models``).
    """

    backbone: str
    source: str
    label: str
    files: tuple[str, ...]
    md5: str | None
    url: str
    preprocessing: str
    downloadable: bool = False

    @property
    def name(self) -> str:
        return f"{self.backbone}.{self.source}"

    def matches(self, filename: str) -> bool:
        """Whether a file name is one of this preset's (case-insensitive)."""
        return filename.lower() in {f.lower() for f in self.files}


# Keras's ImageNet notop files: (folder under KERAS_WEIGHTS_URL, file, md5, preprocess_input mode).
_KERAS_IMAGENET = {
    "resnet50": (
        "resnet",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
        "caffe",
    ),
    "densenet121": (
        "densenet",
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "30ee3e1110167f948a6b9946edeeb738",
        "torch",
    ),
    "inception_v3": (
        "inception_v3",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bcbd6486424b2319ff4ef7d526e38f63",
        "tf",
    ),
    "inception_resnet_v2": (
        "inception_resnet_v2",
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "d19885ff4a710c122648d3b5c3b684e4",
        "tf",
    ),
}
# The <Arch> spellings of RadImageNet's files, RadImageNet-<Arch>_notop.h5 (the scripts spell it -notop).
_RADIMAGENET_ARCHS = {
    "resnet50": ("ResNet50",),
    "densenet121": ("DenseNet121",),
    "inception_v3": ("InceptionV3",),
    "inception_resnet_v2": ("IRV2", "InceptionResNetV2"),
}


def _radimagenet(backbone: str) -> WeightPreset:
    files = tuple(f"RadImageNet-{arch}{sep}notop.h5" for arch in _RADIMAGENET_ARCHS[backbone] for sep in ("_", "-"))
    return WeightPreset(backbone, "radimagenet", "RadImageNet", files, None, RADIMAGENET_URL, "radimagenet")


def _imagenet(backbone: str) -> WeightPreset:
    folder, file, md5, mode = _KERAS_IMAGENET[backbone]
    return WeightPreset(
        backbone, "imagenet", "ImageNet", (file,), md5, f"{KERAS_WEIGHTS_URL}{folder}/{file}", mode, downloadable=True
    )


PRESETS: dict[str, WeightPreset] = {p.name: p for b in BACKBONES for p in (_radimagenet(b), _imagenet(b))}
WEIGHT_SOURCES = tuple(dict.fromkeys(p.source for p in PRESETS.values()))  # in order of preference


def _test_presets(backbone: str, display_name: str) -> tuple[WeightPreset, ...]:
    """A test backbone's presets: the two sources, under file names of the published pattern, with the
    preprocessing of ResNet50's (caffe for ImageNet, so a grid's ImageNet arms differ from RadImageNet's). Nothing
    to download: a test writes the files (Keras 2 ``.h5``, random weights)."""
    return (
        WeightPreset(
            backbone,
            "radimagenet",
            "RadImageNet",
            tuple(f"RadImageNet-{display_name}{sep}notop.h5" for sep in ("_", "-")),
            None,
            RADIMAGENET_URL,
            "radimagenet",
        ),
        WeightPreset(
            backbone, "imagenet", "ImageNet", (f"{backbone}_imagenet_notop.h5",), None, "written by the tests", "caffe"
        ),
    )


# Found by name (get_preset, presets_of), never listed: PRESETS, WEIGHT_SOURCES and `radtransfer weights` hold
# the real backbones' only.
_TEST_PRESETS: dict[str, WeightPreset] = {
    p.name: p for spec in _TEST_BACKBONES for p in _test_presets(spec.name, spec.display_name)
}


def _preset(backbone: str, source: str) -> WeightPreset:
    key = f"{backbone}.{source}"
    return PRESETS[key] if key in PRESETS else _TEST_PRESETS[key]


def get_preset(backbone, source: str) -> WeightPreset:
    """The preset of a backbone (name, alias or registry entry) and a weight source.

    Raises:
        ValueError: the source is unknown (the message lists the sources).
    """
    spec = get_backbone(backbone)
    source = check_choice("weights", source, WEIGHT_SOURCES, fold_case=True)
    return _preset(spec.name, source)


def presets_of(backbone) -> list[WeightPreset]:
    """A backbone's presets, in order of preference (RadImageNet first)."""
    spec = get_backbone(backbone)
    return [_preset(spec.name, source) for source in WEIGHT_SOURCES]


def preset_of_file(filename: str, backbone=None) -> WeightPreset | None:
    """The preset whose file name this is (of ``backbone`` when given), or None."""
    candidates = presets_of(backbone) if backbone is not None else PRESETS.values()
    return next((p for p in candidates if p.matches(filename)), None)


def preprocessing_for(backbone, source: str | None) -> str:
    """The preprocessing mode the weights of a source expect ("radimagenet" for random initialisation and for
    a file of unknown source)."""
    if source not in WEIGHT_SOURCES:
        return "radimagenet"
    return get_preset(backbone, source).preprocessing


# Foundation-model image encoders (the ``foundation`` extra, through keras-hub). Each named preset is found as a
# folder of that name in the weight folders, in keras-hub's format (config.json + model.weights.h5, as
# ``Backbone.save_to_preset`` writes) or Hugging Face's (config.json + model.safetensors, as ``save_pretrained``
# writes); otherwise keras-hub downloads its own copy (Kaggle) when the machine is online.
KERAS_HUB_FILES = ("config.json", "model.weights.h5")
HF_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class FoundationPreset:
    """One foundation encoder's published weights.

    Attributes:
        name: what ``weights=`` takes ("dinov2_small"); also the folder it is looked for under.
        backbone: the registry name ("dinov2", "siglip").
        label: as people write it.
        keras_hub: keras-hub's preset name (downloaded from Kaggle by keras-hub).
        hf_repo: the Hugging Face repository of the same weights.
        input_size: the side of the square image the encoder runs at (the published preprocessing's crop); the
            model resizes its input to it.
        preprocessing: the ``Preprocess`` mode of the published normalization ("torch": ImageNet mean and std, as
            DINOv2's image processor; "tf": mean 0.5, std 0.5, as SigLIP's).
        sha256: file name → sha256 of the published weight files, where known (none could be fetched to check yet).
    """

    name: str
    backbone: str
    label: str
    keras_hub: str
    hf_repo: str
    input_size: int
    preprocessing: str
    sha256: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.hf_repo}"


FOUNDATION_PRESETS: dict[str, FoundationPreset] = {
    p.name: p
    for p in (
        FoundationPreset(
            "dinov2_small", "dinov2", "DINOv2 ViT-S/14", "dinov2_small", "facebook/dinov2-small", 224, "torch"
        ),
        FoundationPreset(
            "dinov2_base", "dinov2", "DINOv2 ViT-B/14", "dinov2_base", "facebook/dinov2-base", 224, "torch"
        ),
        FoundationPreset(
            "dinov2_large", "dinov2", "DINOv2 ViT-L/14", "dinov2_large", "facebook/dinov2-large", 224, "torch"
        ),
        FoundationPreset(
            "siglip_base_patch16_224",
            "siglip",
            "SigLIP B/16 224",
            "siglip_base_patch16_224",
            "google/siglip-base-patch16-224",
            224,
            "tf",
        ),
        FoundationPreset(
            "medsiglip_448", "siglip", "MedSigLIP 448", "medsiglip_900m_448", "google/medsiglip-448", 448, "tf"
        ),
    )
}
# The normalization of a foundation backbone's own family, for folders that do not say (keras-hub presets of the
# encoder alone carry no image converter).
FOUNDATION_PREPROCESSING = {"dinov2": "torch", "siglip": "tf"}


def foundation_presets_of(backbone) -> list[FoundationPreset]:
    """The named presets of a foundation backbone."""
    spec = get_backbone(backbone)
    return [p for p in FOUNDATION_PRESETS.values() if p.backbone == spec.name]

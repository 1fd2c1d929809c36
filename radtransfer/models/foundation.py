"""Foundation-model image encoders (DINOv2, SigLIP's vision tower) as build_model backbones, through keras-hub.

The nested "backbone" model is ``input → [resize to the encoder's size] → encoder → one vector per image``, so the
classifier's head (Dropout → Dense softmax) follows it as it follows a CNN's global average pooling:

- DINOv2: the final class token concatenated with the mean of the final patch tokens (register tokens left out),
  2 × hidden values: the input of DINOv2's own linear classifiers (Oquab et al. 2023, linear evaluation; the
  ``dinov2_*_lc`` heads of facebookresearch/dinov2 and transformers' ``Dinov2ForImageClassification``).
- SigLIP: the vision tower's pooled output, its multi-head attention pooling ("MAP") head.

Weights are folders (``weights.resolve_foundation_weights``): keras-hub's format or Hugging Face's, loaded by
keras-hub's ``Backbone.from_preset``.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
from keras import ops

from ..errors import WeightsFileError, WeightsNotFoundError
from ..utils.optional import require
from .preprocessing import TORCH_MEAN_RGB, TORCH_STD_RGB
from .presets import FOUNDATION_PREPROCESSING, FOUNDATION_PRESETS
from .weights import (
    LoadedWeights,
    check_foundation_checksum,
    check_sha256,
    foundation_folder_format,
    foundation_not_found_message,
    foundation_weights_file,
    resolve_foundation_weights,
)

KERAS_HUB_MIN_VERSION = (0, 32)
# The architectures of a randomly initialised encoder (weights=None): DINOv2 ViT-S/14, SigLIP B/16.
_RANDOM_CONFIGS = {
    "dinov2": {
        "patch_size": 14,
        "num_layers": 12,
        "hidden_dim": 384,
        "num_heads": 6,
        "intermediate_dim": 1536,
        "position_embedding_shape": (518, 518),
    },
    "siglip": {"patch_size": 16, "num_layers": 12, "hidden_dim": 768, "num_heads": 12, "intermediate_dim": 3072},
}
_RANDOM_SIZE = 224
# The keras-hub classes a folder of each family may hold (SigLIPBackbone: the image-text model, whose vision
# tower is taken).
_CLASSES = {"dinov2": ("DINOV2Backbone",), "siglip": ("SigLIPVisionEncoder", "SigLIPBackbone")}
_HF_TYPES = {"dinov2": ("dinov2", "dinov2_with_registers"), "siglip": ("siglip", "siglip_vision_model")}
# Normalizations of Hugging Face image processors (image_mean, image_std) → Preprocess mode.
_HF_NORMALIZATIONS = {
    (TORCH_MEAN_RGB, TORCH_STD_RGB): "torch",
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): "tf",
}


def keras_hub_module():
    """keras-hub, or a one-line ImportError saying which extra installs it."""
    return require(
        "keras_hub", "foundation", "A foundation backbone (DINOv2, SigLIP)", KERAS_HUB_MIN_VERSION, "keras-hub"
    )


@keras.saving.register_keras_serializable(package="radtransfer")
class ClassTokenPatchMean(keras.layers.Layer):
    """DINOv2's linear-probe features: the class token concatenated with the mean of the patch tokens.

    Args:
        num_register_tokens: register tokens between the class token and the patch tokens (left out of the mean).
    """

    def __init__(self, num_register_tokens: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_register_tokens = int(num_register_tokens)

    def call(self, tokens):
        patches = tokens[:, 1 + self.num_register_tokens :, :]
        return ops.concatenate([tokens[:, 0, :], ops.mean(patches, axis=1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_register_tokens": self.num_register_tokens})
        return config


def encoder_backbone(encoder, family: str, input_shape, name: str = "backbone") -> keras.Model:
    """The nested "backbone" model around a keras-hub encoder: one pooled vector per image.

    Args:
        encoder: a keras-hub ``DINOV2Backbone`` or ``SigLIPVisionEncoder``.
        family: "dinov2" or "siglip".
        input_shape: (height, width, channels) of the (preprocessed) images; resized to the encoder's size.
        name: the model's name.
    """
    size = int(encoder.image_shape[0])
    inputs = keras.Input(shape=(input_shape[0], input_shape[1], 3), name="encoder_input")
    x = inputs
    if tuple(input_shape[:2]) != (size, size):
        x = keras.layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    x = encoder({"images": x})
    if family == "dinov2":
        x = ClassTokenPatchMean(encoder.num_register_tokens, name="pool")(x)
    return keras.Model(inputs, x, name=name)


def build_random(family: str, input_shape, name: str = "backbone") -> keras.Model:
    """A randomly initialised encoder of the family's default size (DINOv2 ViT-S/14, SigLIP B/16), wrapped."""
    hub = keras_hub_module()
    cls = hub.models.DINOV2Backbone if family == "dinov2" else hub.models.SigLIPVisionEncoder
    encoder = cls(**_RANDOM_CONFIGS[family], image_shape=(_RANDOM_SIZE, _RANDOM_SIZE, 3))
    return encoder_backbone(encoder, family, input_shape, name)


def build_foundation_backbone(spec, weights, weights_dir, input_shape, weights_sha256=None, preprocessing="auto"):
    """The nested backbone of a foundation model and where its weights came from.

    Args:
        spec: the registry entry ("dinov2" or "siglip").
        weights: None, a named preset or a folder (see ``resolve_foundation_weights``).
        weights_dir: a folder searched first for a named preset's folder.
        input_shape: (height, width, channels) of the model's input.
        weights_sha256: if given, the weight file's sha256 must equal it (checked before the encoder is loaded).
        preprocessing: "auto" reads the normalization from the folder; any other value is build_model's to resolve,
            and the folder's is not read (so a folder whose normalization radtransfer does not know still loads).

    Returns:
        (backbone model, LoadedWeights).
    """
    hub = keras_hub_module()
    family = spec.name
    resolved = resolve_foundation_weights(spec, weights, weights_dir)
    if weights is None:
        return build_random(family, input_shape), LoadedWeights(None, None, None, FOUNDATION_PREPROCESSING[family])
    preset = FOUNDATION_PRESETS.get(resolved.source)
    if resolved.path is None:
        if weights_sha256:
            raise WeightsFileError(
                f"weights_sha256 was pinned, but {spec.display_name} preset {resolved.source!r} is not in a local "
                "folder and keras-hub would download it unchecked: put its folder in one of "
                f"{', '.join(resolved.searched) or 'the weight folders'}."
            )
        encoder = _download(hub, preset, resolved.searched)
        mode = preset.preprocessing
        digest = None
    else:
        weights_file = foundation_weights_file(resolved.path)
        digest = check_sha256(weights_file, weights_sha256) if weights_sha256 else None  # before loading
        digest = check_foundation_checksum(preset, weights_file) if digest is None else digest
        fmt = foundation_folder_format(resolved.path)
        size = preset.input_size if preset is not None else _folder_input_size(resolved.path, fmt)
        encoder = _load_folder(hub, family, resolved.path, fmt, size)
        mode = _folder_preprocessing(resolved.path, family) if str(preprocessing).lower() == "auto" else None
    base = encoder_backbone(encoder, family, input_shape)
    return base, LoadedWeights(resolved.source, resolved.path, digest, mode)


def _download(hub, preset, searched):
    try:
        encoder = hub.models.Backbone.from_preset(preset.keras_hub)
    except Exception as exc:  # keras-hub raises whatever its download client raises (ConnectionError, OSError...)
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsNotFoundError(foundation_not_found_message(preset, searched, reason)) from None
    return getattr(encoder, "vision_encoder", encoder)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsFileError(f"'{path}' is not readable JSON ({exc}). Download the file again.") from None


def _folder_input_size(folder: Path, fmt: str) -> int | None:
    """The crop the folder's image processor uses (Hugging Face's preprocessor_config.json), if it says."""
    processor = folder / "preprocessor_config.json"
    if fmt != "transformers" or not processor.is_file():
        return None
    crop = _read_json(processor).get("crop_size") or {}
    return int(crop["height"]) if isinstance(crop, dict) and "height" in crop else None


def _folder_preprocessing(folder: Path, family: str) -> str:
    """The Preprocess mode of the folder's image processor, or the family's own when the folder does not say."""
    processor = folder / "preprocessor_config.json"
    if not processor.is_file():
        return FOUNDATION_PREPROCESSING[family]
    config = _read_json(processor)
    key = (
        tuple(round(float(v), 3) for v in config.get("image_mean", ())),
        tuple(round(float(v), 3) for v in config.get("image_std", ())),
    )
    for (mean, std), mode in _HF_NORMALIZATIONS.items():
        if key == (tuple(round(v, 3) for v in mean), tuple(round(v, 3) for v in std)):
            return mode
    raise WeightsFileError(
        f"'{processor}' normalizes with image_mean={list(key[0])}, image_std={list(key[1])}, which radtransfer's "
        "Preprocess modes do not cover (ImageNet's mean and std, or 0.5 and 0.5). Pass preprocessing= explicitly."
    )


def _load_folder(hub, family: str, folder: Path, fmt: str, size: int | None):
    config = _read_json(folder / "config.json")
    found = config.get("class_name") if fmt == "keras_hub" else config.get("model_type")
    expected = _CLASSES[family] if fmt == "keras_hub" else _HF_TYPES[family]
    if found not in expected:
        what = "class_name" if fmt == "keras_hub" else "model_type"
        raise WeightsFileError(
            f"'{folder}' holds a {what} {found!r} model, not {family} ({', '.join(expected)}). Pass the folder "
            f"that matches backbone='{family}'."
        )
    kwargs = {"image_shape": (size, size, 3)} if family == "dinov2" and size else {}
    try:
        encoder = hub.models.Backbone.from_preset(str(folder), **kwargs)
    except (ValueError, OSError, KeyError, TypeError) as exc:  # OSError: h5py on a damaged weights file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "no converter" in reason:
            reason += (
                f" (keras-hub {hub.__version__} converts Hugging Face DINOv2 folders, not SigLIP's); pass a keras-hub "
                "preset folder instead (config.json + model.weights.h5, e.g. of 'siglip_base_patch16_224' or "
                "'medsiglip_900m_448')"
            )
        raise WeightsFileError(f"keras-hub could not load '{folder}': {reason}") from None
    return getattr(encoder, "vision_encoder", encoder)

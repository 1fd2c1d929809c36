"""What a model is: backbones (architecture facts), weight presets and files, preprocessing, the classifier
``build_model`` makes, and a trained model's saved metadata."""

from .classifier import BuildInfo, build_model, get_backbone_model, init_head, resolve_preprocessing

__all__ = ["BuildInfo", "build_model", "get_backbone_model", "init_head", "resolve_preprocessing"]

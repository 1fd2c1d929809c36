"""What a model is: backbones (architecture facts), weight presets and files, preprocessing, the classifier
``build_model`` makes, and a trained model's saved metadata."""

from ..utils.lazy import lazy_exports

__all__ = ["BuildInfo", "build_model", "get_backbone_model", "init_head", "resolve_preprocessing"]
__getattr__, __dir__ = lazy_exports(__name__, {name: ".classifier" for name in __all__})

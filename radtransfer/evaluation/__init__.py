"""Using a trained model: metrics with patient-level intervals (``metrics``), the statistics behind them
(``stats``), prediction on new images (``prediction``) and Grad-CAM (``gradcam``)."""

from ..utils.lazy import lazy_exports

__all__ = ["check_classes", "evaluate", "metrics_from_predictions", "model_read_kwargs", "predict_with_labels"]
__getattr__, __dir__ = lazy_exports(__name__, {name: ".metrics" for name in __all__})

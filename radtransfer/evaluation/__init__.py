"""Using a trained model: metrics with patient-level intervals (``metrics``), the statistics behind them
(``stats``), prediction on new images (``prediction``), Grad-CAM (``gradcam``), calibration figures
(``calibration``), fitting and saving a model's temperature (``temperature_scaling``: ``calibrate``) and external
validation's pieces (``external``)."""

from ..utils.lazy import lazy_exports

_METRICS = ["check_classes", "evaluate", "metrics_from_predictions", "model_read_kwargs", "predict_with_labels"]
__all__ = [*_METRICS, "calibrate", "Calibration"]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{name: ".metrics" for name in _METRICS},
        "calibrate": ".temperature_scaling",
        "Calibration": ".temperature_scaling",
    },
)

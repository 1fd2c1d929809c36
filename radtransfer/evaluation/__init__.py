"""Using a trained model: metrics with patient-level intervals (``metrics``; the numbers behind them are
``radtransfer.stats``), at image, patient or exam level (``levels``), prediction on new images (``prediction``),
Grad-CAM (``gradcam``), fitting and saving a model's temperature (``temperature_scaling``: ``calibrate``) and
external validation's pieces (``external``)."""

from ..utils.lazy import lazy_exports

_METRICS = [
    "DatasetInfo",
    "OperatingThreshold",
    "check_classes",
    "evaluate",
    "metrics_at_level",
    "metrics_from_predictions",
    "model_read_kwargs",
]
_LEVELS = ["Aggregation", "Predictions", "unit_rows"]
__all__ = [*_METRICS, *_LEVELS, "calibrate", "Calibration"]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{name: ".metrics" for name in _METRICS},
        **{name: ".levels" for name in _LEVELS},
        "calibrate": ".temperature_scaling",
        "Calibration": ".temperature_scaling",
    },
)

"""radtransfer: transfer learning on medical images with ImageNet and RadImageNet weights.

Public API::

    from radtransfer import build_model, apply_strategy, fine_tune, evaluate, predict, list_backbones
    from radtransfer import data, datasets, protocol, report, plots, gradcam

The package, folder by folder (docs/architecture.md): ``models`` (backbones, weight presets and files, the
classifier), ``data`` (images to batches), ``training`` (fine-tuning one model), ``evaluation`` (metrics,
statistics, prediction, Grad-CAM), ``grid`` (the comparison's machinery), ``utils`` (domain-free helpers); the
faces users touch (``cli``, ``protocol``, ``report``, ``plots``, ``errors``, ``backend``) at the top.
"""

from .utils.lazy import lazy_exports
from .version import __version__  # noqa: F401

# Every public name, by the module that defines it; imported on first use, so importing radtransfer (and the
# command's --help) does not start TensorFlow.
_EXPORTS = {
    "BACKBONES": ".models.backbones",
    "get_backbone": ".models.backbones",
    "list_backbones": ".models.backbones",
    "ClassMismatchError": ".errors",
    "RadtransferError": ".errors",
    "WeightsFileError": ".errors",
    "WeightsNotFoundError": ".errors",
    "RunMismatchError": ".errors",
    "TrainingDivergedError": ".errors",
    "DataAuditError": ".errors",
    "evaluate": ".evaluation.metrics",
    "calibrate": ".evaluation.temperature_scaling",
    "Calibration": ".evaluation.temperature_scaling",
    "predict": ".evaluation.prediction",
    "RayExecutor": ".grid.executors",
    "layerwise_search": ".grid.layerwise",
    "build_model": ".models.classifier",
    "Preprocess": ".models.preprocessing",
    "check_weight_file": ".models.weights",
    "find_weight_files": ".models.weights",
    "resolve_weights": ".models.weights",
    "TrainConfig": ".training.config",
    "FineTuneResult": ".training.run_folder",
    "RunFolder": ".training.run_folder",
    "load_trained": ".training.run_folder",
    "fine_tune": ".training.fine_tuning",
    "StrategySummary": ".training.strategies",
    "apply_strategy": ".training.strategies",
    "model_card": ".card",
    "write_model_card": ".card",
    # modules, reached as attributes (radtransfer.report.summarize), the module names of radtransfer ≤ 0.1 too
    "data": ".data:",
    "models": ".models:",
    "training": ".training:",
    "evaluation": ".evaluation:",
    "grid": ".grid:",
    "utils": ".utils:",
    "protocol": ".protocol:",
    "report": ".report:",
    "plots": ".plots:",
    "demo": ".demo:",
    "cli": ".cli:",
    "backend": ".backend:",
    "errors": ".errors:",
    "gradcam": ".evaluation.gradcam:",
    "stats": ".stats:",
    "records": ".grid.records:",
    "datasets": ".data.synthetic:",
    "weights": ".models.weights:",
    "backbones": ".models.backbones:",
}

__all__ = [
    "BACKBONES",
    "ClassMismatchError",
    "DataAuditError",
    "RayExecutor",
    "RunFolder",
    "RunMismatchError",
    "TrainConfig",
    "load_trained",
    "FineTuneResult",
    "TrainingDivergedError",
    "Preprocess",
    "RadtransferError",
    "StrategySummary",
    "WeightsFileError",
    "WeightsNotFoundError",
    "apply_strategy",
    "build_model",
    "model_card",
    "write_model_card",
    "calibrate",
    "Calibration",
    "check_weight_file",
    "data",
    "datasets",
    "evaluate",
    "fine_tune",
    "layerwise_search",
    "predict",
    "find_weight_files",
    "get_backbone",
    "list_backbones",
    "resolve_weights",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

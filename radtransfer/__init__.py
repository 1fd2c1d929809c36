"""radtransfer: transfer learning on medical images with ImageNet and RadImageNet weights.

Public API::

    from radtransfer import build_model, apply_strategy, fine_tune, evaluate, predict, list_backbones
    from radtransfer import data, datasets, protocol, report, plots, gradcam

The package, folder by folder (docs/architecture.md): ``models`` (backbones, weight presets and files, the
classifier), ``data`` (images to batches), ``training`` (fine-tuning one model), ``evaluation`` (metrics,
statistics, prediction, Grad-CAM), ``grid`` (the comparison's machinery), ``utils`` (domain-free helpers); the
faces users touch (``cli``, ``protocol``, ``report``, ``plots``, ``errors``, ``backend``) at the top.
"""

from . import data
from .errors import ClassMismatchError, RadtransferError, WeightsFileError, WeightsNotFoundError
from .evaluation.metrics import evaluate
from .evaluation.prediction import predict
from .grid.executors import RayExecutor
from .grid.layerwise import layerwise_search
from .models import _keras_compat  # noqa: F401  (registers classes .keras files need)
from .models.backbones import BACKBONES, get_backbone, list_backbones
from .models.classifier import build_model
from .models.preprocessing import Preprocess
from .models.weights import check_weight_file, find_weight_files, resolve_weights
from .training.config import TrainConfig
from .training.fine_tuning import FineTuneResult, TrainingDivergedError, fine_tune
from .training.run_folder import RunFolder, RunMismatchError, load_trained
from .training.strategies import StrategySummary, apply_strategy
from .version import __version__  # noqa: F401

__all__ = [
    "BACKBONES",
    "ClassMismatchError",
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

# Modules reached as attributes (``radtransfer.report.summarize``), imported on first use: the faces that pull in
# pandas and matplotlib, and the module names of radtransfer ≤ 0.1, now inside the folders.
_LAZY_MODULES = {
    "protocol": ".protocol",
    "report": ".report",
    "plots": ".plots",
    "demo": ".demo",
    "cli": ".cli",
    "gradcam": ".evaluation.gradcam",
    "stats": ".evaluation.stats",
    "records": ".grid.records",
    "datasets": ".data.synthetic",
    "weights": ".models.weights",
    "backbones": ".models.backbones",
}


def __getattr__(name):
    """Imports the modules of ``_LAZY_MODULES`` on first use."""
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(_LAZY_MODULES[name], __name__)
    raise AttributeError(f"module 'radtransfer' has no attribute {name!r}")

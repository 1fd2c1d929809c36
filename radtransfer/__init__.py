"""radtransfer: transfer learning on medical images with ImageNet and RadImageNet weights.

Public API::

    from radtransfer import build_model, apply_strategy, fine_tune, evaluate, list_backbones
    from radtransfer import data, datasets, protocol, report, plots, gradcam
"""

__version__ = "0.1.0"

from . import _keras_compat  # noqa: F401  (registers classes .keras files need)
from . import data, datasets
from .backbones import BACKBONES, get_backbone, list_backbones
from .errors import ClassMismatchError, RadtransferError, WeightsFileError, WeightsNotFoundError
from .evaluation import evaluate
from .layerwise import layerwise_search
from .models import build_model
from .prediction import predict
from .ray_executor import RayExecutor
from .preprocessing import Preprocess
from .run_folder import RunFolder, RunMismatchError
from .strategies import StrategySummary, apply_strategy
from .train_config import TrainConfig
from .trained import load_trained
from .training import FineTuneResult, TrainingDivergedError, fine_tune
from .weights import check_weight_file, find_weight_files, resolve_weights

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

_LAZY_MODULES = ("protocol", "report", "plots", "gradcam", "demo", "cli", "records", "stats")


def __getattr__(name):
    """Imports protocol, report, plots and gradcam on first use (they pull in pandas and matplotlib)."""
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'radtransfer' has no attribute {name!r}")

"""Fine-tuning one model: its settings (``config``), its folder (``run_folder``), the runtime (precision, XLA,
distribution), the strategies, the epoch loop, the validation thresholds and ``fine_tune`` itself."""

from ..utils.lazy import lazy_exports

__all__ = [
    "FineTuneResult",
    "TrainingDivergedError",
    "compile_model",
    "fine_tune",
    "make_metrics",
    "resolve_jit_compile",
    "resolve_precision",
    "write_json_atomic",
]
__getattr__, __dir__ = lazy_exports(__name__, {name: ".fine_tuning" for name in __all__})

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
# Each name from the module that defines it (not through fine_tuning's own imports).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FineTuneResult": ".run_folder",
        "TrainingDivergedError": "..errors",
        "compile_model": ".epoch_loop",
        "fine_tune": ".fine_tuning",
        "make_metrics": ".epoch_loop",
        "resolve_jit_compile": ".runtime",
        "resolve_precision": ".runtime",
        "write_json_atomic": "..utils.io",
    },
)

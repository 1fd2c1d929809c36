"""Fine-tuning one model: its settings (``config``), its folder (``run_folder``), the runtime (precision, XLA,
distribution), the strategies, the epoch loop, the validation thresholds and ``fine_tune`` itself."""

from .fine_tuning import (
    FineTuneResult,
    TrainingDivergedError,
    compile_model,
    fine_tune,
    make_metrics,
    resolve_jit_compile,
    resolve_precision,
    write_json_atomic,
)

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

"""The numbers on the ground floor: pure functions of labels, scores and patient ids (NumPy, SciPy, scikit-learn), no
model and no Keras, as keras ``metrics/`` and MONAI ``metrics/`` are leaves.

- ``aggregation``: from slices to units (patients, exams): the mean, max or noisy-or of their probabilities.
- ``auc``: the AUC (rank form), its patient-level interval, DeLong's test and paired comparisons of two models.
- ``bootstrap``: the stratified bootstrap of patients (BCa or percentile intervals of any statistic, of a fixed
  decision's sensitivity and specificity), the small-sample notes on what a sample can carry, and the one
  minimum-units rule of every interval and test (``too_few``, ``MIN_UNITS``).
- ``calibration``: Brier score, expected calibration error and its reliability bins, negative log-likelihood.
- ``temperature``: softmax(log p / T), where a threshold goes under T, and fitting T.
- ``thresholds``: Youden's J threshold.

Every name is importable from here (``radtransfer.stats.auc_score``): the names the module ``radtransfer.stats``
offered before, and those of calibration, temperature scaling and thresholds.
"""

from .aggregation import AGGREGATES, aggregate_probabilities, unit_index, unit_labels
from .auc import (
    auc_score,
    bootstrap_auc_ci,
    compare_aucs,
    delong_test,
    paired_bootstrap_test,
    resampled_auc_differences,
)
from .bootstrap import (
    BCA_MAX_UNITS,
    MIN_UNITS,
    SMALL_SAMPLE_RARER,
    SMALL_SAMPLE_UNITS,
    bootstrap_operating_point_ci,
    bootstrap_p,
    no_spread,
    resampling_units,
    small_sample_note,
    stratified_bootstrap_ci,
    too_few,
    units_by_stratum,
    units_per_class,
)
from .calibration import (
    BINS,
    CalibrationBin,
    brier_score,
    checked_probabilities,
    expected_calibration_error,
    log_probabilities,
    negative_log_likelihood,
)
from .temperature import TEMPERATURE_BOUNDS, apply_temperature, check_temperature, fit_temperature, scale_threshold
from .thresholds import youden_threshold

__all__ = [
    "AGGREGATES",
    "BCA_MAX_UNITS",
    "BINS",
    "CalibrationBin",
    "MIN_UNITS",
    "SMALL_SAMPLE_RARER",
    "SMALL_SAMPLE_UNITS",
    "TEMPERATURE_BOUNDS",
    "aggregate_probabilities",
    "apply_temperature",
    "auc_score",
    "bootstrap_auc_ci",
    "bootstrap_operating_point_ci",
    "bootstrap_p",
    "brier_score",
    "check_temperature",
    "checked_probabilities",
    "compare_aucs",
    "delong_test",
    "expected_calibration_error",
    "fit_temperature",
    "log_probabilities",
    "negative_log_likelihood",
    "no_spread",
    "paired_bootstrap_test",
    "resampled_auc_differences",
    "resampling_units",
    "scale_threshold",
    "small_sample_note",
    "stratified_bootstrap_ci",
    "too_few",
    "unit_index",
    "unit_labels",
    "units_by_stratum",
    "units_per_class",
    "youden_threshold",
]

"""calibrate: fit a trained model's temperature on validation data and save it with the model, so that
``predict`` and ``evaluate`` report calibrated probabilities (Guo et al. 2017).

The temperature is fit on the model's own softmax outputs (a temperature fitted before is replaced, never
stacked); thresholds stay where fine_tune chose them, on those outputs, so no decision changes. With two classes the
AUC is unchanged too; with more, the predicted class and accuracy are, while one-vs-rest AUCs may move a little
(stats/temperature.py says why).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ..models.trained import set_temperature, update_trained_info
from ..stats.calibration import expected_calibration_error, negative_log_likelihood
from ..stats.temperature import TEMPERATURE_BOUNDS, apply_temperature, fit_temperature
from ..utils.choices import check_choice
from .metrics import raw_predictions

METHODS = ("temperature",)


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration, as saved with the model (``radtransfer.json``'s ``calibration``).

    Attributes:
        method: "temperature".
        temperature: T; the model reports softmax(log p / T) (> 1: it was over-confident).
        nll_before, nll_after: the validation data's negative log-likelihood (mean per image) before and after.
        ece_before, ece_after: its expected calibration error (top-label, 15 bins) before and after.
        n: validation images; n_patients: their patients (None when unknown).
        fitted_on: what the temperature was fitted on (e.g. the data's path).
        train_images, test_images: how many of those images the run's train and test splits list (its
            split_*.csv; 0 when none, or when there is no run folder or the data are not files). Test images
            are fitted on only when asked for (``allow_test``), and the model card says so.
    """

    method: str
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    n: int
    n_patients: int | None
    fitted_on: str | None = None
    train_images: int = 0
    test_images: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(
    model_or_run_dir,
    val,
    method: str = "temperature",
    *,
    batch_size: int = 32,
    fitted_on: str | None = None,
    allow_test: bool = False,
) -> Calibration:
    """Fits a temperature on validation data by minimising its negative log-likelihood, and attaches it to the model.

    Args:
        model_or_run_dir: a model from ``fine_tune`` / ``load_trained`` (the temperature is attached to this
            object), or a run folder of ``fine_tune`` / ``radtransfer train`` or a ``.keras`` file (the file's
            ``radtransfer.json`` is rewritten atomically, so ``load_trained``, ``predict`` and ``evaluate`` apply
            it).
        val: labelled validation data, as ``evaluate`` takes it (an ImageSet brings its patient ids); not the
            test set.
        method: "temperature" (the only one).
        batch_size: batch size for an ImageSet.
        fitted_on: what ``val`` is, recorded with the calibration (default: its kind and size).
        allow_test: fit on images of the run's test split too (refused otherwise; recorded, and the model card
            flags it). Checked when ``model_or_run_dir`` is a run folder and ``val`` lists files.

    Returns:
        The Calibration (also in ``model.radtransfer_calibration`` and the saved file).

    Raises:
        ValueError: an unknown ``method``, or validation data with one class.
        ClassMismatchError: the data's classes differ from the model's.
        HeldOutDataError: ``val`` holds images of the run's test split, and ``allow_test`` is False.
        RadtransferError: no trained model at the path given.
    """
    check_choice("method", method, METHODS)
    file, shared = None, {}
    if isinstance(model_or_run_dir, (str, Path)):
        from ..training.run_folder import BEST_MODEL, load_trained

        path = Path(model_or_run_dir)
        file = path / BEST_MODEL if path.is_dir() else path
        shared = _held_out_check(file.parent, val, allow_test)
        model = load_trained(path)
    else:
        model = model_or_run_dir
    y_true, raw, _, patient_ids, _ = raw_predictions(model, val, batch_size)
    if len(set(y_true.tolist())) < 2:
        raise ValueError(
            f"calibrate needs validation data with at least two classes; val has {len(y_true)} images of one class."
        )
    temperature = fit_temperature(y_true, raw)
    low, high = TEMPERATURE_BOUNDS
    if not low * 1.01 < temperature < high * 0.99:
        warnings.warn(
            f"The fitted temperature {temperature:.3g} is at the edge of the search range [{low}, {high}]: on this "
            "data the model's probabilities carry little information (near chance) or are far too sharp. Check the "
            "model and the validation data before relying on the calibrated probabilities.",
            stacklevel=2,
        )
    scaled = apply_temperature(raw, temperature)
    fitted = Calibration(
        method=method,
        temperature=temperature,
        nll_before=negative_log_likelihood(y_true, raw),
        nll_after=negative_log_likelihood(y_true, scaled),
        ece_before=expected_calibration_error(y_true, raw)[0],
        ece_after=expected_calibration_error(y_true, scaled)[0],
        n=int(len(y_true)),
        n_patients=None if patient_ids is None else len(set(map(str, patient_ids))),
        fitted_on=fitted_on if fitted_on is not None else f"{type(val).__name__} of {len(y_true)} images",
        train_images=shared.get("train", 0),
        test_images=shared.get("test", 0),
    )
    set_temperature(model, temperature, fitted.to_dict())
    if file is not None:
        update_trained_info(file, {"temperature": temperature, "calibration": fitted.to_dict()})
    return fitted


def _held_out_check(folder: Path, val, allow_test: bool) -> dict:
    """How many of ``val``'s image files the run folder's train and test splits list; refuses test images unless
    ``allow_test``, and warns about what it lets through (a temperature fitted on training images is too sharp, one
    fitted on test images flatters the test's calibration)."""
    from ..errors import HeldOutDataError
    from ..training.run_folder import SPLIT_FILES, split_paths

    paths = getattr(val, "paths", None)
    if paths is None:
        return {}
    given = {Path(p).expanduser().resolve() for p in paths}
    shared = {}
    for part in ("train", "test"):
        listed = split_paths(folder, part)
        shared[part] = len(given & {p.resolve() for p in listed}) if listed else 0
    split = {part: folder / SPLIT_FILES[part] for part in ("train", "val", "test")}
    if shared["test"] and not allow_test:
        raise HeldOutDataError(
            f"{shared['test']} of the {len(given)} images given are in the run's test split ({split['test']}): a "
            "temperature fitted on them flatters the test's calibration. Fit it on held-out data, e.g. "
            f"{split['val']}, or pass allow_test=True (command line: --allow-test), and the model card says so."
        )
    for part, why in (
        ("train", "the temperature comes out too sharp"),
        ("test", "the test's calibration is flattered"),
    ):
        if shared[part]:
            warnings.warn(
                f"{shared[part]} of the {len(given)} images given are in the run's {part} split ({split[part].name}): "
                f"{why}. Fit on held-out data, e.g. the run's validation split ({split['val']}).",
                stacklevel=3,
            )
    return shared

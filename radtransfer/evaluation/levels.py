"""Patient- and exam-level evaluation's units: the slices of one patient (or one exam) made one prediction.

The RadImageNet paper's MRNet tasks (ACL tear, meniscus tear) are decided per exam, while a classifier scores
slices. Here the slices' probabilities of one unit are aggregated (``stats.aggregation``: mean, max or noisy-or of
the positive class's probability for two classes, the mean vector for more), the unit takes its slices' label, and
``evaluate(..., level="exam")`` scores the units; the interval resamples patients, each with all their exams.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from ..stats.aggregation import AGGREGATES, aggregate_probabilities, unit_index, unit_labels
from ..utils.choices import check_choice

LEVELS = ("image", "patient", "exam")


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """The level a classifier is scored at, and how a unit's slices are made one prediction.

    Attributes:
        level: "image" (each image on its own: the default, as before), "patient" (a patient's images make one
            prediction) or "exam" (an exam's images do; exam ids from ``data.from_csv(..., exam_col=)``).
        aggregate: how a unit's probabilities are made one: "mean" (default), "max" or "noisy_or" (1 − ∏(1 − p));
            for two classes on the positive class's probability, the other class's being 1 minus it; "max" and
            "noisy_or" are refused for more than two classes (``stats.aggregation``).
    """

    level: str = "image"
    aggregate: str = "mean"

    def __post_init__(self):
        check_choice("level", self.level, LEVELS)
        check_choice("aggregate", self.aggregate, AGGREGATES)


def aggregation_of(keywords: dict) -> Aggregation:
    """The ``Aggregation`` of ``evaluate``'s keywords, taken out of ``keywords``: ``aggregation=`` (an Aggregation),
    and ``level=`` and ``aggregate=`` over its fields."""
    given = keywords.pop("aggregation", None) or Aggregation()
    if not isinstance(given, Aggregation):
        raise TypeError(f"aggregation= takes an Aggregation, not {type(given).__name__}.")
    fields = {name: keywords.pop(name) for name in ("level", "aggregate") if name in keywords}
    return dataclasses.replace(given, **fields)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """One set's labels and predicted probabilities per image, with the ids that group them (e.g. validation's,
    to choose a threshold on at the same level).

    Attributes:
        y_true: integer labels per image.
        probabilities: (images, classes) probabilities.
        patient_ids: one patient id per image, or None.
        exam_ids: one exam id per image, or None.
    """

    y_true: object
    probabilities: object
    patient_ids: object = None
    exam_ids: object = None


@dataclasses.dataclass(frozen=True)
class Units:
    """Predictions per unit (patient or exam), in the order the units first appear.

    Attributes:
        y_true: each unit's label. probabilities: (units, classes) aggregated probabilities.
        patient_ids: each unit's patient (None: unknown, exam level only). exam_ids: each unit's exam (exam level).
        n_slices: each unit's number of images.
    """

    y_true: np.ndarray
    probabilities: np.ndarray
    patient_ids: np.ndarray | None
    exam_ids: np.ndarray | None
    n_slices: np.ndarray


def to_units(predictions: Predictions, aggregation: Aggregation, positive_class: int = 1, class_names=None) -> Units:
    """The units of ``predictions`` at ``aggregation.level`` ("patient" or "exam"), their probabilities aggregated.

    An exam id is taken within its patient (exam "1" of two patients is two exams) when patient ids are known.

    Args:
        predictions: per image labels, probabilities and ids.
        aggregation: the level and the aggregate.
        positive_class: two classes: the class whose probability is aggregated.
        class_names: the classes' names, to name labels in an error.

    Raises:
        ValueError: no ids for the level, ids that do not match the images, a unit whose images disagree on the
            label, or "max"/"noisy_or" with more than two classes.
    """
    y_true = np.asarray(predictions.y_true, dtype=np.int64)
    level, patients, exams = aggregation.level, predictions.patient_ids, predictions.exam_ids
    keys = _unit_keys(level, patients, exams, len(y_true))
    _, index, first = unit_index(keys)
    labels, disagree = unit_labels(y_true, index)
    patients = None if patients is None else np.asarray([str(p) for p in patients], dtype=object)[first]
    exams = None if level != "exam" else np.asarray([str(e) for e in exams], dtype=object)[first]
    if disagree:
        unit = disagree[0]
        named = [str(class_names[c]) if class_names else str(c) for c in np.unique(y_true[index == unit])]
        where = f"patient {patients[unit]!r}" if level == "patient" else f"exam {exams[unit]!r}"
        if level == "exam" and patients is not None:
            where += f" of patient {patients[unit]!r}"
        raise ValueError(
            f"The images of {where} are labelled {named} ({len(disagree)} {level}(s) disagree): a {level}'s images "
            f"must share one label at level={level!r}; correct the labels or the {level} ids, or use level='image'."
        )
    probabilities = aggregate_probabilities(predictions.probabilities, index, aggregation.aggregate, positive_class)
    return Units(labels, probabilities, patients, exams, np.bincount(index, minlength=len(first)))


def _unit_keys(level: str, patients, exams, n: int) -> list:
    """Each image's unit key: its patient, or its (patient, exam) (its exam without patient ids)."""
    if level == "patient" and patients is None:
        raise ValueError(
            "level='patient' needs patient ids: read the data with its patient column (data.from_csv(..., "
            "patient_col=); command line: --patient-col) or give patient_ids=."
        )
    if level == "exam" and exams is None:
        raise ValueError(
            "level='exam' needs exam ids: read the CSV manifest with data.from_csv(..., exam_col=) (command line: "
            "--exam-col), or give exam_ids=."
        )
    for name, ids in (("patient_ids", patients), ("exam_ids", exams if level == "exam" else None)):
        if ids is not None and len(ids) != n:
            raise ValueError(f"{name} has {len(ids)} entries for {n} images.")
    if level == "patient":
        return [str(p) for p in patients]
    if patients is None:
        return [str(e) for e in exams]
    return [json.dumps([str(p), str(e)]) for p, e in zip(patients, exams)]


def unit_rows(predictions, level: str = "patient", aggregate: str = "mean", exam_ids=None):
    """``predict``'s table per patient or per exam: one row per unit, its images' probabilities aggregated.

    Args:
        predictions: the DataFrame ``predict`` returns (its ``patient_id`` column and ``p_<class>`` columns; images
            that could not be read, with empty probabilities, are left out).
        level: "patient" or "exam".
        aggregate: "mean", "max" or "noisy_or" (``Aggregation``), the positive class being the second class.
        exam_ids: one exam id per row of ``predictions`` (exam level).

    Returns:
        A DataFrame with ``patient_id`` (when known), ``exam_id`` (exam level), ``n_slices``, one ``p_<class>``
        column per class and ``predicted`` (the class of the largest aggregated probability: the model's threshold
        was chosen on images, not on units).

    Raises:
        ValueError: a level without its ids, "max"/"noisy_or" with more than two classes, or a multi-label table.
    """
    import pandas as pd

    aggregation = Aggregation(level, aggregate)
    if aggregation.level == "image":
        raise ValueError("unit_rows takes level='patient' or 'exam'; predict's own table is the image level.")
    if "thresholds" in predictions.attrs:  # predict's table of a multi-label model: a probability per label
        raise ValueError("unit_rows is for a model of one class per image; this model is multi-label.")
    if exam_ids is not None and len(exam_ids) != len(predictions):
        raise ValueError(f"exam_ids has {len(exam_ids)} entries for {len(predictions)} predictions.")
    columns = [c for c in predictions.columns if str(c).startswith("p_")]
    read = predictions[columns].notna().all(axis=1).to_numpy()
    patients = predictions["patient_id"].to_numpy()[read] if "patient_id" in predictions else None
    exams = None if exam_ids is None else np.asarray(list(exam_ids), dtype=object)[read]
    probabilities = predictions[columns].to_numpy(dtype=np.float64)[read]
    same_label = np.zeros(int(read.sum()), dtype=np.int64)
    units = to_units(
        Predictions(same_label, probabilities, patients, exams), aggregation, 1 if len(columns) == 2 else 0
    )
    frame = pd.DataFrame({} if units.patient_ids is None else {"patient_id": units.patient_ids})
    if units.exam_ids is not None:
        frame["exam_id"] = units.exam_ids
    frame["n_slices"] = units.n_slices
    for index, column in enumerate(columns):
        frame[column] = units.probabilities[:, index]
    frame["predicted"] = [columns[i][2:] for i in units.probabilities.argmax(axis=1)]
    return frame

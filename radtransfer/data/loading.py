"""A data spec read in one call: a class-folder directory, a CSV manifest or ``tfds:NAME[:SPLIT]`` to an ImageSet
(``load``), or to its (train, val, test) parts (``load_parts``: a split folder's own parts, else a split by
patient), as timm's ``create_dataset`` reads its spec inside the library."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DataSourceError
from .imageset import ImageSet
from .sources import from_csv, from_directory, from_split_directory, from_tfds, is_split_directory

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh", ".mnc")

LOG = logging.getLogger("radtransfer.data")


class DataSpecError(DataSourceError):
    """A data spec that is not a class-folder directory, a CSV manifest of 2D images or tfds:NAME[:SPLIT]
    (the command answers it as a usage mistake)."""


def load(
    spec: str,
    *,
    image_col: str = "path",
    label_col: str = "label",
    patient_col: str | None = "auto",
    missing_labels: str = "raise",
    tfds_split: str | None = None,
    exam_col: str | None = None,
    label_cols=None,
) -> ImageSet:
    """Reads a data spec into one ImageSet.

    Args:
        spec: a class-folder directory (a ``manifest.csv`` inside it is read instead, as in the demo data), a CSV
            manifest, or ``tfds:NAME[:SPLIT]``.
        image_col: the CSV column of image paths.
        label_col: the CSV column of labels.
        patient_col: the CSV column of patient ids; "auto": a column named like PatientID (or, for a folder,
            the DICOM PatientID tag); None or "none": no patient ids.
        missing_labels: rows of a CSV with an empty label: "raise" or "drop".
        tfds_split: the tfds split when the spec names none (default "train").
        exam_col: the CSV column of exam ids (``from_csv``'s ``exam_col``); only a CSV manifest has one.
        label_cols: a multi-label set's 0/1 columns, one per label (``from_csv``'s ``label_cols``; ``label_col``
            is then unused); only a CSV manifest has them.

    Returns:
        The ImageSet.

    Raises:
        DataSpecError: the spec is a split folder (read it with ``load_parts``), a CSV of 3D volumes, missing,
            or neither a folder nor a CSV file.
    """
    patients = None if patient_col in (None, "none") else patient_col
    csv = Path(spec).expanduser()
    if exam_col is not None and not (csv.suffix.lower() == ".csv" or (csv / "manifest.csv").is_file()):
        raise DataSpecError(
            f"exam_col={exam_col!r} needs a CSV manifest with that column, but DATA '{spec}' is not one."
        )
    if label_cols is not None and not (csv.suffix.lower() == ".csv" or (csv / "manifest.csv").is_file()):
        raise DataSpecError(
            f"label_cols= needs a CSV manifest with one 0/1 column per label, but DATA '{spec}' is not one."
        )
    if spec.startswith("tfds:"):
        parts = spec.split(":")
        return from_tfds(parts[1], split=parts[2] if len(parts) > 2 else (tfds_split or "train"))
    path = Path(spec).expanduser()
    if path.is_dir() and is_split_directory(path):
        parts = sorted(p.name for p in path.iterdir() if p.is_dir())
        example = next((p for p in parts if p.lower() in ("test", "testing")), parts[-1])
        raise DataSpecError(
            f"DATA '{spec}' is split already ({', '.join(f'{p}/' for p in parts)}), and this command reads one set "
            f"of images: give one part (e.g. '{path / example}') or a CSV manifest listing every part's files "
            "(train takes a split folder whole)."
        )
    csv_options = {"image_col": image_col, "label_col": label_col, "patient_col": patients, "exam_col": exam_col}
    if label_cols is not None:
        csv_options["label_cols"] = label_cols
    if path.is_dir():
        manifest = path / "manifest.csv"
        if manifest.exists():  # e.g. the demo data: images/, masks/ and manifest.csv
            return from_csv(manifest, **csv_options, missing_labels=missing_labels)
        return from_directory(path, patient_ids="auto" if patients else None)
    if path.suffix.lower() == ".csv":
        _refuse_volume_manifest(path)
        return from_csv(path, **csv_options, missing_labels=missing_labels)
    if not path.exists():
        raise DataSpecError(
            f"DATA not found: '{spec}'. Expected a class-folder directory, a CSV manifest, or tfds:NAME[:SPLIT]."
        )
    raise DataSpecError(f"DATA '{spec}' is neither a folder nor a .csv file (nor tfds:NAME).")


def load_parts(
    spec: str,
    val: float = 0.10,
    test: float = 0.15,
    seed: int = 726,
    *,
    image_col: str = "path",
    label_col: str = "label",
    patient_col: str | None = "auto",
    missing_labels: str = "raise",
    note=None,
    label_cols=None,
) -> tuple[ImageSet, ImageSet, ImageSet]:
    """Reads a data spec into its (train, val, test) parts.

    A folder split already (Training/ and Testing/, train/val/test) gives its own parts: ``test`` is then
    ignored, and val is drawn from train (``val`` of its patients, ``seed``) when the folder has no val part.
    Any other spec is read by ``load`` and split by patient (by image when it has no patient ids).

    Args:
        spec: as in ``load``.
        val: the share of patients kept for validation.
        test: the share of patients kept for the test.
        seed: the split's seed.
        image_col: as in ``load``.
        label_col: as in ``load``.
        patient_col: as in ``load``.
        missing_labels: as in ``load``.
        note: called with one line on what the split goes by (by patient, by image, a split folder's parts);
            default: logged to the ``radtransfer.data`` logger at INFO.
        label_cols: as in ``load`` (a split folder has none).

    Returns:
        (train, val, test) ImageSets.

    Raises:
        DataSpecError: as in ``load``, or a split folder without a test part.
    """
    note = note or LOG.info
    path = Path(spec).expanduser()
    if not spec.startswith("tfds:") and is_split_directory(path):
        if label_cols is not None:
            raise DataSpecError(
                f"label_cols= needs a CSV manifest with one 0/1 column per label, but DATA '{spec}' is a split folder."
            )
        parts = from_split_directory(path)
        if "test" not in parts:
            raise DataSpecError(f"'{path}' is split already but has no test part (test/ or Testing/).")
        if "val" in parts:
            return parts["train"], parts["val"], parts["test"]
        train, val_part, _ = parts["train"].split(val=val, test=0.0, seed=seed)
        note(
            f"DATA is split already: training on {path}/…train part, validation from it ({len(val_part)} images), "
            f"test on its test part ({len(parts['test'])} images)."
        )
        return train, val_part, parts["test"]
    image_set = load(
        spec,
        image_col=image_col,
        label_col=label_col,
        patient_col=patient_col,
        missing_labels=missing_labels,
        label_cols=label_cols,
    )
    note(split_note(image_set, patient_col))
    by = "patient" if image_set.patient_ids is not None else "image"
    return image_set.split(val=val, test=test, seed=seed, by=by)


def split_note(image_set: ImageSet, patient_col: str | None = "auto") -> str:
    """One line on what a split of ``image_set`` goes by, so a split by image is never silent."""
    if image_set.patient_ids is not None:
        patients = len(set(image_set.patient_ids))
        return f"DATA: {len(image_set)} images of {patients} patients; parts are split by patient."
    if patient_col in (None, "none"):
        return (
            f"DATA: {len(image_set)} images; patient_col=None (command line: --patient-col none): parts are split "
            "by image."
        )
    return (
        f"DATA: {len(image_set)} images and no patient ids found (no column named like PatientID, no DICOM "
        "PatientID): parts are split by image, so one patient's images may fall in two parts. Name the "
        "column with patient_col=NAME (command line: --patient-col)."
    )


def _refuse_volume_manifest(path: Path) -> None:
    """A CSV listing 3D volumes is refused in one line: the command reads 2D images, the library reads volumes."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, nrows=50)
    except Exception:  # from_csv says what is wrong with the file
        return
    for column in frame.columns:
        values = frame[column].dropna().str.strip().str.lower()
        if len(values) and values.str.endswith(VOLUME_SUFFIXES).all():
            raise DataSpecError(
                f"DATA '{path}' lists NIfTI volumes (column '{column}'), and the command reads 2D images: read their "
                "slices in Python with radtransfer.data.from_volumes and pass that ImageSet to fine_tune, run_grid or "
                "predict (docs/data.md, 'Volumes')."
            )

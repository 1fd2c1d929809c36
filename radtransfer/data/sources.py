"""Sources of image sets: class folders, CSV manifests, tensorflow-datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backbones import did_you_mean
from ..errors import RadtransferError
from .imageset import ImageSet

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom")


class DataSourceError(RadtransferError, ValueError):
    """A folder, CSV or dataset cannot be turned into an image set."""


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}
PART_ORDER = ("train", "val", "test")


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_images(folder: Path) -> bool:
    return any(_is_image(p) for p in folder.rglob("*"))


def _split_parts(root: Path) -> dict | None:
    """{part: folder name} when ``root``'s sub-folders are split parts (train/val/test, Training/Testing)
    that each hold class folders; None otherwise."""
    folders = _subfolders(root)
    parts = {SPLIT_NAMES[f.lower()]: f for f in folders if f.lower() in SPLIT_NAMES}
    if len(parts) < 2 or len(parts) != len(folders):
        return None
    if not all(_subfolders(root / f) for f in parts.values()):
        return None
    return parts


def _check_layout(root: Path, folders: list[str]) -> None:
    """Refuses layouts that would silently read as the wrong classes."""
    parts = _split_parts(root)
    if parts:
        names = ", ".join(f"{f}/" for f in parts.values())
        classes = _subfolders(root / next(iter(parts.values())))
        raise DataSourceError(
            f"'{root}' is split already: {names} each hold class folders ({', '.join(classes[:6])}"
            f"{', ...' if len(classes) > 6 else ''}), so reading it as one set would make the parts the classes. "
            f"Read the parts with data.from_split_directory('{root}') (one class order for all parts), or one "
            f"part with data.from_directory('{root / next(iter(parts.values()))}').")
    if len(folders) == 1:
        inner = root / folders[0]
        deeper = _subfolders(inner)
        if deeper and any(_has_images(inner / d) for d in deeper):
            hint = "it is split already, so use data.from_split_directory" if _split_parts(inner) else \
                "use data.from_directory"
            raise DataSourceError(
                f"'{root}' holds one folder, '{folders[0]}', whose sub-folders ({', '.join(deeper[:6])}) look like "
                f"the classes: the class folders are one level deeper than expected; {hint}('{inner}').")
        raise DataSourceError(f"'{root}' has one class folder ('{folders[0]}'); a classifier needs at least two.")


def from_directory(root, class_names=None) -> ImageSet:
    """Reads one sub-folder per class (e.g. ``root/glioma/*.png``); files are sorted by path.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the classes to read, in label order (default: all sub-folders, sorted).

    Raises:
        DataSourceError: the folder does not exist, has no class folders, a class has no images, or the
            layout is not one of class folders (a split layout such as Training/ and Testing/, or class
            folders nested one level deeper).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataSourceError(f"Image folder not found: '{root}'. Expected one sub-folder per class.")
    folders = _subfolders(root)
    if not folders:
        raise DataSourceError(
            f"'{root}' has no class sub-folders. Expected a layout such as {root}/<class name>/<image>.png."
        )
    if class_names is None:
        _check_layout(root, folders)
        class_names = folders
    missing = [c for c in class_names if c not in folders]
    if missing:
        raise DataSourceError(
            f"Class folder(s) {missing} not found in '{root}' (found {folders}).{did_you_mean(missing[0], folders)}"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted(p for p in (root / name).rglob("*") if _is_image(p))
        if not files:
            raise DataSourceError(
                f"Class '{name}' has no images in '{root / name}' (looked for {', '.join(IMAGE_EXTENSIONS)})."
            )
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return ImageSet(paths=np.array(paths, dtype=object), labels=np.array(labels), class_names=tuple(class_names))


def is_split_directory(root) -> bool:
    """Whether ``root`` holds split parts (train/val/test, Training/Testing, ...) over class folders."""
    root = Path(root).expanduser()
    return root.is_dir() and _split_parts(root) is not None


def from_split_directory(root, class_names=None) -> dict:
    """Reads a layout split already, e.g. ``root/Training/<class>/...`` and ``root/Testing/<class>/...``.

    Part folders are recognised case-insensitively: train/training, val/valid/validation/dev, test/testing.

    Args:
        root: the folder holding the part folders.
        class_names: the class order (default: the training part's class folders, sorted).

    Returns:
        {"train": ImageSet, "test": ImageSet, and "val" when there is one}, all with the same class order.

    Raises:
        DataSourceError: ``root`` is not a split layout, or a part's classes differ from the training part's
            (the message names the classes each side lacks).
    """
    root = Path(root).expanduser()
    parts = _split_parts(root) if root.is_dir() else None
    if not parts:
        raise DataSourceError(f"'{root}' is not a split layout: expected part folders such as train/ and test/ "
                              f"(or Training/ and Testing/), each holding one folder per class.")
    reference = "train" if "train" in parts else next(p for p in PART_ORDER if p in parts)
    if class_names is None:
        class_names = _subfolders(root / parts[reference])
    class_names = [str(c) for c in class_names]
    for part, folder in parts.items():
        found = _subfolders(root / folder)
        only_here = sorted(set(found) - set(class_names))
        missing = sorted(set(class_names) - set(found))
        if only_here or missing:
            detail = (f" classes only in {folder}/: {only_here}." if only_here else "") + \
                     (f" classes missing from {folder}/: {missing}." if missing else "")
            raise DataSourceError(f"The parts of '{root}' have different classes:{detail} Every part needs the "
                                  f"training classes {class_names} (a class never trained cannot be predicted).")
    return {part: from_directory(root / parts[part], class_names=class_names) for part in PART_ORDER if part in parts}


def from_csv(path_or_dataframe, image_col: str = "filename", label_col: str = "label", patient_col: str | None = None,
             root=None, class_names=None, extra_cols=()) -> ImageSet:
    """Reads a CSV manifest (or a pandas DataFrame) with one row per image.

    Image paths are taken relative to the CSV's folder unless ``root`` is given (absolute paths are kept).
    The reference's layouts load by naming their columns, e.g. ``image_col="img_dir", label_col="label"``.

    Args:
        path_or_dataframe: a CSV path or a DataFrame.
        image_col: column of image paths.
        label_col: column of labels (strings or numbers).
        patient_col: column of patient ids, for splits by patient.
        root: folder the image paths are relative to.
        class_names: fixes the class order (e.g. the training set's, for a validation CSV); a label not
            in it is an error. Default: the sorted label values.
        extra_cols: more columns to carry along (e.g. a mask path column).

    Raises:
        DataSourceError: the file is missing, a named column is missing, a label is unknown, or a class
            has no images.
    """
    import pandas as pd

    if isinstance(path_or_dataframe, pd.DataFrame):
        frame, where = path_or_dataframe, "the DataFrame"
        base = Path(root) if root is not None else Path.cwd()
    else:
        csv_path = Path(path_or_dataframe).expanduser()
        if not csv_path.is_file():
            raise DataSourceError(f"CSV manifest not found: '{csv_path}'.")
        frame, where = pd.read_csv(csv_path), f"'{csv_path}'"
        base = Path(root) if root is not None else csv_path.parent
    for argument, column in (("image_col", image_col), ("label_col", label_col), ("patient_col", patient_col),
                             *(("extra_cols", c) for c in extra_cols)):
        if column is not None and column not in frame.columns:
            raise DataSourceError(
                f"Column {column!r} ({argument}) not found in {where}; its columns are {list(frame.columns)}."
                f"{did_you_mean(column, list(frame.columns))}"
            )
    if frame.empty:
        raise DataSourceError(f"{where} has no rows.")
    values = frame[label_col].astype(str).str.strip().tolist()
    if class_names is None:
        class_names = sorted(set(values), key=_natural_key)
    else:
        class_names = [str(c) for c in class_names]
        unknown = sorted(set(values) - set(class_names))
        if unknown:
            raise DataSourceError(
                f"Label(s) {unknown} in {where} (column {label_col!r}) are not among the training classes "
                f"{class_names}. A class never seen in training cannot be predicted."
            )
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[v] for v in values])
    empty = [c for c, n in zip(class_names, np.bincount(labels, minlength=len(class_names))) if n == 0]
    if empty and class_names is not None and len(empty) == len(class_names):
        raise DataSourceError(f"{where} has no images for any class.")
    paths = [p if Path(p).is_absolute() else str(base / p) for p in frame[image_col].astype(str)]
    patients = frame[patient_col].astype(str).to_numpy() if patient_col else None
    extras = {c: frame[c].to_numpy(dtype=object) for c in extra_cols} or None
    return ImageSet(paths=np.array(paths, dtype=object), labels=labels, class_names=tuple(class_names),
                    patient_ids=patients, extras=extras)


def _natural_key(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def from_tfds(name: str, split: str = "train", image_key: str = "image", label_key: str = "label",
              data_dir=None, patient_key: str | None = None, download: bool = False) -> ImageSet:
    """Reads a tensorflow-datasets dataset into memory (images as uint8 arrays).

    Args:
        name: the tfds name, e.g. "beans" or "patch_camelyon".
        split: the tfds split.
        image_key, label_key: feature names of the image and the class label.
        data_dir: tfds data folder.
        patient_key: feature holding a patient id, if the dataset has one.
        download: let tfds download the data if it is not prepared.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if download:
            builder.download_and_prepare()
        dataset = builder.as_dataset(split=split)
    except Exception as exc:  # tfds raises many types for a missing or unprepared dataset
        raise DataSourceError(
            f"tensorflow-datasets could not load {name!r} (split {split!r}): {str(exc).splitlines()[0]}"
        ) from None
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise DataSourceError(
                f"tfds {name!r} has no feature {key!r}; its features are {list(features.keys())}."
                f"{did_you_mean(key, list(features.keys()))}"
            )
    label_feature = features[label_key]
    class_names = tuple(getattr(label_feature, "names", None) or range(label_feature.num_classes))
    images, labels, patients = [], [], []
    for example in tfds.as_numpy(dataset):
        images.append(np.asarray(example[image_key]))
        labels.append(int(example[label_key]))
        if patient_key:
            patients.append(_decode(example[patient_key]))
    if not images:
        raise DataSourceError(f"tfds {name!r} split {split!r} has no examples.")
    return ImageSet(paths=None, images=images, labels=np.array(labels), class_names=class_names,
                    patient_ids=np.array(patients, dtype=object) if patient_key else None)


def _decode(value):
    return value.decode() if isinstance(value, bytes) else str(value)

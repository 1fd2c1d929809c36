"""Sources of image sets: class folders, CSV manifests, tensorflow-datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataSourceError
from ..utils.choices import check_choice, did_you_mean
from ..utils.optional import require
from ..utils.progress import progress
from .cache import LOG
from .decode import is_dicom
from .dicom import import_pydicom
from .imageset import EXAM_ID, ImageSet
from .label_columns import check_label_cols, multi_hot_rows

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")


def _is_image(path: Path) -> bool:
    """The one rule by which folders are searched (``from_directory``, ``predict``): a visible file with an image
    extension, or any other visible file that is DICOM by its content (the 'DICM' marker at byte 128: files
    without an extension, ``.IMA``, numeric names such as ``1.2.840.113619.2.1``). A DICOMDIR (the index of a
    DICOM medium, PS3.10) is not an image."""
    name = path.name
    if name.startswith(".") or name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return path.is_file()
    return path.is_file() and is_dicom(path)  # reads 132 bytes (a regular file only: never blocks on a pipe)


def _scan(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the image files under ``folder`` by ``_is_image``, sorted by path; the visible files it does not read).
    Hidden files, files in hidden folders and DICOMDIR are neither."""
    images, unread = [], []
    for path in folder.rglob("*"):
        if _is_image(path):
            images.append(path)
        elif (
            path.name.upper() != "DICOMDIR"
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            and path.is_file()
        ):
            unread.append(path)
    return sorted(images), unread


def _warn_unread(folder: Path, unread: list[Path]) -> None:
    """One warning that counts, by extension, the files a folder search did not read (none: no warning)."""
    import warnings

    if unread:
        warnings.warn(
            f"{_count_unread(unread)} in '{folder}' not read as images; read are {', '.join(IMAGE_EXTENSIONS)} and "
            f"DICOM files by their content.{_gif_hint(unread)}",
            stacklevel=3,
        )


def _count_unread(unread: list[Path]) -> str:
    """'3 files (2 .gif, 1 .txt)': the files counted by extension, most common first."""
    kinds: dict = {}
    for path in unread:
        kind = path.suffix.lower() or "without extension"
        kinds[kind] = kinds.get(kind, 0) + 1
    ranked = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{n} {kind}" for kind, n in ranked[:8]) + (", ..." if len(ranked) > 8 else "")
    return f"{len(unread)} file{'s' if len(unread) != 1 else ''} ({shown})"


def _gif_hint(unread: list[Path]) -> str:
    if any(path.suffix.lower() == ".gif" for path in unread):
        return " GIFs (palette images, often cine loops) are not read: save their frames as PNG."
    return ""


SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
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
            f"part with data.from_directory('{root / next(iter(parts.values()))}')."
        )
    if len(folders) == 1:
        inner = root / folders[0]
        deeper = _subfolders(inner)
        if deeper and any(_has_images(inner / d) for d in deeper):
            hint = (
                "it is split already, so use data.from_split_directory"
                if _split_parts(inner)
                else "use data.from_directory"
            )
            raise DataSourceError(
                f"'{root}' holds one folder, '{folders[0]}', whose sub-folders ({', '.join(deeper[:6])}) look like "
                f"the classes: the class folders are one level deeper than expected; {hint}('{inner}')."
            )
        raise DataSourceError(f"'{root}' has one class folder ('{folders[0]}'); a classifier needs at least two.")


def from_directory(root, class_names=None, patient_ids="auto") -> ImageSet:
    """Reads one sub-folder per class (e.g. ``root/glioma/*.png``); files are sorted by path.

    Image files are found by extension (PNG, JPEG, BMP, TIFF, ``.dcm``, ``.dicom``) and DICOM files also by their
    content, whatever their name (no extension, ``.IMA``, numeric names); hidden files and DICOMDIR are skipped. Other
    files (GIF, palette images that are often cine loops, among them) are not read, and one warning counts them by
    extension.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the classes to read, in label order (default: all sub-folders in natural order, as
            ``sort_classes``: numbers by value, then names).
        patient_ids: "auto" (default): when every file is DICOM and has a PatientID, those are the patient ids
            (logged), so splits go by patient; None: no patient ids.

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
        class_names = sort_classes(folders)
    missing = [c for c in class_names if c not in folders]
    if missing:
        raise DataSourceError(
            f"Class folder(s) {missing} not found in '{root}' (found {folders}).{did_you_mean(missing[0], folders)}"
        )
    paths, labels, unread = [], [], []
    for label, name in enumerate(class_names):
        files, others = _scan(root / name)
        unread += others
        if not files:
            raise DataSourceError(
                f"Class '{name}' has no images in '{root / name}' (looked for {', '.join(IMAGE_EXTENSIONS)} and "
                f"DICOM files by their content{'; found ' + _count_unread(others) if others else ''})."
                f"{_gif_hint(others)}"
            )
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    _warn_unread(root, unread)
    check_choice("patient_ids", patient_ids, ("auto", None))
    patients = dicom_patient_ids(paths, str(root)) if patient_ids == "auto" else None
    return ImageSet(
        paths=np.array(paths, dtype=object),
        labels=np.array(labels),
        class_names=tuple(class_names),
        patient_ids=patients,
    )


def dicom_patient_ids(paths, where: str, workers: int = 8):
    """The DICOM PatientID of every file, when all are DICOM files that have one; else None (with a warning
    when some DICOM files lack it, since the split then cannot go by patient)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    if not paths or not all(is_dicom(p) for p in paths):
        return None
    pydicom = import_pydicom()

    def patient(path):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"], force=True)
        except Exception:  # an unreadable file is reported by the pre-check before training
            return ""
        return str(header.get("PatientID", "") or "").strip()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ids = list(progress(pool.map(patient, paths), total=len(paths), desc="reading PatientID tags", unit="file"))
    lacking = sum(1 for i in ids if not i)
    if lacking:
        warnings.warn(
            f"{lacking} of {len(ids)} DICOM files in '{where}' have no PatientID, so the images carry no "
            "patient ids and splits go by image. Use a CSV manifest with a patient column.",
            stacklevel=3,
        )
        return None
    LOG.info("'%s': patient ids from the DICOM PatientID tag (%d patients)", where, len(set(ids)))
    return np.array(ids, dtype=object)


def is_split_directory(root) -> bool:
    """Whether ``root`` holds split parts (train/val/test, Training/Testing, ...) over class folders."""
    root = Path(root).expanduser()
    return root.is_dir() and _split_parts(root) is not None


def from_split_directory(root, class_names=None) -> dict:
    """Reads a layout split already, e.g. ``root/Training/<class>/...`` and ``root/Testing/<class>/...``.

    Part folders are recognised case-insensitively: train/training, val/valid/validation/dev, test/testing.

    Args:
        root: the folder holding the part folders.
        class_names: the class order (default: the training part's class folders, in natural order).

    Returns:
        {"train": ImageSet, "test": ImageSet, and "val" when there is one}, all with the same class order.

    Raises:
        DataSourceError: ``root`` is not a split layout, or a part's classes differ from the training part's
            (the message names the classes each side lacks).
    """
    root = Path(root).expanduser()
    parts = _split_parts(root) if root.is_dir() else None
    if not parts:
        raise DataSourceError(
            f"'{root}' is not a split layout: expected part folders such as train/ and test/ "
            f"(or Training/ and Testing/), each holding one folder per class."
        )
    reference = "train" if "train" in parts else next(p for p in PART_ORDER if p in parts)
    if class_names is None:
        class_names = sort_classes(_subfolders(root / parts[reference]))
    class_names = [str(c) for c in class_names]
    for part, folder in parts.items():
        found = _subfolders(root / folder)
        only_here = sorted(set(found) - set(class_names))
        missing = sorted(set(class_names) - set(found))
        if only_here or missing:
            detail = (f" classes only in {folder}/: {only_here}." if only_here else "") + (
                f" classes missing from {folder}/: {missing}." if missing else ""
            )
            raise DataSourceError(
                f"The parts of '{root}' have different classes:{detail} Every part needs the "
                f"training classes {class_names} (a class never trained cannot be predicted)."
            )
    return {part: from_directory(root / parts[part], class_names=class_names) for part in PART_ORDER if part in parts}


# Column names that hold patient ids, compared lower-case without punctuation, in order of preference.
PATIENT_COLUMNS = (
    "patientid",
    "patient",
    "patientnumber",
    "patientno",
    "subjectid",
    "subject",
    "participantid",
    "participant",
    "caseid",
    "mrn",
)
MISSING_LABELS = ("raise", "drop")


def guess_patient_col(columns) -> str | None:
    """The column of ``columns`` whose name says it holds patient ids (PatientID, patient_id, subject, ...)."""
    normalised = {"".join(ch for ch in str(c).lower() if ch.isalnum()): c for c in reversed(list(columns))}
    return next((normalised[name] for name in PATIENT_COLUMNS if name in normalised), None)


def _rows(frame, mask, from_file: bool) -> str:
    """The rows where ``mask`` holds, as CSV line numbers (header = line 1) or DataFrame index labels."""
    # A CSV is read with a RangeIndex, so a row's label is its position in the file even after rows are dropped.
    where = [str(label + 2) if from_file else repr(label) for label, keep in zip(frame.index, mask) if keep]
    shown = ", ".join(where[:10]) + (f", … ({len(where) - 10} more)" if len(where) > 10 else "")
    return ("line " if len(where) == 1 else "lines ") + shown if from_file else "rows " + shown


def _label_strings(column) -> tuple[list, np.ndarray]:
    """Labels as strings, and which are missing. Numbers stay as written: integers that pandas made floats
    (a column of integers with an empty cell) become integers again, so 0 and 1 are "0" and "1", not "0.0"."""
    import pandas as pd

    missing = column.isna().to_numpy() | (column.astype(str).str.strip() == "").to_numpy()
    present = column[~missing]
    if pd.api.types.is_float_dtype(present) and len(present) and np.all(np.mod(present.to_numpy(), 1) == 0):
        present = present.astype(np.int64)
    values = np.empty(len(column), dtype=object)
    values[~missing] = present.astype(str).str.strip().to_numpy()
    return values.tolist(), missing


def from_csv(
    path_or_dataframe,
    image_col: str = "filename",
    label_col: str = "label",
    patient_col="auto",
    root=None,
    class_names=None,
    extra_cols=(),
    missing_labels: str = "raise",
    exam_col=None,
    label_cols=None,
) -> ImageSet:
    """Reads a CSV manifest (or a pandas DataFrame) with one row per image.

    Image paths are taken relative to the CSV's folder unless ``root`` is given (absolute paths are kept).
    The reference's layouts load by naming their columns, e.g. ``image_col="img_dir", label_col="label"``.
    Cells are read as written (a label or patient id ``007`` stays ``007``).

    Args:
        path_or_dataframe: a CSV path or a DataFrame.
        image_col: column of image paths.
        label_col: column of labels (strings or numbers).
        patient_col: column of patient ids, for splits by patient; "auto" (default): the column whose name
            says it holds them (PatientID, patient_id, patient, subject, subject_id, participant_id, case_id,
            MRN, …; logged when found), else, when every image is a DICOM file, its PatientID tag; None: no
            patient ids (splits then go by image).
        root: folder the image paths are relative to.
        class_names: fixes the class order (e.g. the training set's, for a validation CSV); a label not
            in it is an error. Default: the label values in natural order (numbers by value, then names).
        extra_cols: more columns to carry along (e.g. a mask path column).
        missing_labels: "raise" (default: rows with an empty label cell are an error naming them) or "drop"
            (leave those rows out, with a warning that counts them).
        exam_col: column of exam ids (e.g. one MRI series per exam), for exam-level evaluation
            (``evaluate(..., level="exam")``); kept as the extras column ``exam_id`` (``ImageSet.exam_ids``).
        label_cols: for a multi-label set (findings that co-occur), its 0/1 columns, one per label (``label_col``
            is then unused, ``class_names`` refused): ``labels`` is then an (images, labels) 0/1 array and
            ``class_names`` these column names, in this order (``ImageSet.multi_label``).

    Raises:
        DataSourceError: the file is missing, a named column is missing, a label, image path, patient id or
            exam id is empty, an image is listed on two rows, a label is unknown, or a class has no images.
    """
    check_choice("missing_labels", missing_labels, MISSING_LABELS)
    label_cols = None if label_cols is None else check_label_cols(label_cols, class_names)
    frame, where, base, from_file = _read_manifest(path_or_dataframe, root)
    auto_patients = patient_col == "auto"
    if auto_patients:
        patient_col = guess_patient_col(frame.columns)
        if patient_col is not None:
            LOG.info("%s: patient ids from column %r (found by its name)", where, patient_col)
    for argument, column in (
        ("image_col", image_col),
        *((("label_col", label_col),) if label_cols is None else (("label_cols", c) for c in label_cols)),
        ("patient_col", patient_col),
        ("exam_col", exam_col),
        *(("extra_cols", c) for c in extra_cols),
    ):
        if column is not None and column not in frame.columns:
            hint = _file_columns_hint(frame, base) if argument == "image_col" else None
            raise DataSourceError(
                f"Column {column!r} ({argument}) not found in {where}; its columns are {list(frame.columns)}."
                f"{did_you_mean(column, list(frame.columns)) if hint is None else hint}"
            )
    if frame.empty:
        raise DataSourceError(f"{where} has no rows.")
    if label_cols is not None:
        frame, labels = multi_hot_rows(frame, label_cols, missing_labels, where, lambda f, m: _rows(f, m, from_file))
        class_names = label_cols
        _refuse_empty_cells(frame, image_col, patient_col, where, from_file, exam_col)
    else:
        frame, values = _labelled_rows(frame, label_col, missing_labels, where, from_file)
        _refuse_empty_cells(frame, image_col, patient_col, where, from_file, exam_col)
        class_names, labels = _class_labels(values, class_names, where, label_col)
    paths = [p if Path(p).is_absolute() else str(base / p) for p in frame[image_col].astype(str).str.strip()]
    _refuse_repeated_paths(frame, paths, image_col, where, from_file)
    patients = frame[patient_col].astype(str).str.strip().to_numpy() if patient_col else None
    if patient_col is None and auto_patients:  # DICOM files bring their PatientID
        patients = dicom_patient_ids(paths, where)
    extras = {c: frame[c].to_numpy(dtype=object) for c in extra_cols}
    if exam_col is not None:
        extras[EXAM_ID] = frame[exam_col].astype(str).str.strip().to_numpy(dtype=object)
    return ImageSet(
        paths=np.array(paths, dtype=object),
        labels=labels,
        class_names=tuple(class_names),
        patient_ids=patients,
        extras=extras or None,
    )


def _class_labels(values, class_names, where, label_col):
    """(the class names, each row's class index) of a single-label manifest's label strings."""
    if class_names is None:
        class_names = sort_classes(set(values))
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
    return class_names, labels


def _file_columns_hint(frame, base: Path, sample: int = 20) -> str:
    """For a missing image column: the columns whose values are files here (resolved against ``base`` as the
    reader resolves them: most of their first ``sample`` non-empty cells exist), or, when none is, that no column
    is. A column whose name is close but whose values are not files here (``source_path`` for ``path``) is never
    suggested: it would send the user to a column that cannot be read."""
    found = []
    for column in frame.columns:
        cells = [str(v).strip() for v in frame[column].head(sample * 5) if str(v).strip()][:sample]
        exist = sum(_is_file_here(c, base) for c in cells)
        if cells and exist * 2 > len(cells):
            found.append(column)
    if found:
        return f" Its column(s) {found} hold paths of files here: pass image_col={found[0]!r}."
    return (
        f" None of its columns holds paths of files here (relative to '{base}', or absolute): pass the column of "
        "image paths as image_col=, with paths relative to the CSV's folder or absolute."
    )


def _is_file_here(cell: str, base: Path) -> bool:
    try:
        return (Path(cell) if Path(cell).is_absolute() else base / cell).is_file()
    except (OSError, ValueError):  # a cell too long for a file name, or with a NUL byte
        return False


def _read_manifest(path_or_dataframe, root):
    """(frame, how to name it, the folder paths are relative to, whether it came from a file). A CSV's cells are
    read as written: strings, empty cells as ""."""
    import pandas as pd

    if isinstance(path_or_dataframe, pd.DataFrame):
        return path_or_dataframe, "the DataFrame", Path(root) if root is not None else Path.cwd(), False
    csv_path = Path(path_or_dataframe).expanduser()
    if not csv_path.is_file():
        raise DataSourceError(f"CSV manifest not found: '{csv_path}'.")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    return frame, f"'{csv_path}'", Path(root) if root is not None else csv_path.parent, True


def _labelled_rows(frame, label_col, missing_labels, where, from_file):
    """(the rows with a label, their labels as strings): rows with an empty label are refused, naming them, or
    (missing_labels="drop") left out with a warning that counts them."""
    import warnings

    values, missing = _label_strings(frame[label_col])
    if not missing.any():
        return frame, values
    rows = f"{int(missing.sum())} row(s) of {where}"
    if missing_labels == "raise":
        raise DataSourceError(
            f"{rows} have no label (column {label_col!r}), {_rows(frame, missing, from_file)}. Fill them in, or "
            "leave those rows out with missing_labels='drop' (command line: --missing-labels drop)."
        )
    warnings.warn(
        f"Leaving out {rows} with no label (column {label_col!r}), {_rows(frame, missing, from_file)}.", stacklevel=3
    )
    if missing.all():
        raise DataSourceError(f"{where} has no rows with a label (column {label_col!r}).")
    return frame[~missing], [v for v, m in zip(values, missing) if not m]


def _refuse_empty_cells(frame, image_col, patient_col, where, from_file, exam_col=None) -> None:
    """An empty image path, patient id or exam id is an error naming its rows (never a path "" or a patient
    "nan")."""
    for argument, column in (("image_col", image_col), ("patient_col", patient_col), ("exam_col", exam_col)):
        if column is None:
            continue
        empty = (frame[column].isna() | (frame[column].astype(str).str.strip() == "")).to_numpy()
        if empty.any():
            fix = {"image_col": "", "patient_col": " or pass patient_col=None to split by image"}.get(argument, "")
            raise DataSourceError(
                f"{int(empty.sum())} row(s) of {where} have an empty {column!r} ({argument}), "
                f"{_rows(frame, empty, from_file)}. Fill them in{fix}."
            )


def _refuse_repeated_paths(frame, paths, image_col, where, from_file) -> None:
    """An image listed on two rows is an error naming the rows: split by image, its rows can land in two parts."""
    import os

    rows_of: dict = {}
    for k, path in enumerate(paths):
        rows_of.setdefault(os.path.normpath(path), []).append(k)
    repeated = [rows for rows in rows_of.values() if len(rows) > 1]
    if not repeated:
        return
    named = []
    for rows in repeated[:3]:
        mask = np.zeros(len(frame), dtype=bool)
        mask[rows] = True
        named.append(f"{str(frame[image_col].iloc[rows[0]]).strip()!r} on {_rows(frame, mask, from_file)}")
    more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
    raise DataSourceError(
        f"{len(repeated)} image(s) are listed more than once in {where} (column {image_col!r}): "
        f"{'; '.join(named)}{more}. One image on two rows can land in two parts (train and test): remove the "
        "repeated rows."
    )


def sort_classes(names) -> list[str]:
    """Class names in natural order: numbers by value ("2" before "10"), then names alphabetically. Folders and
    CSV labels are ordered the same way, so one data set read either way gives the same label indices."""
    return sorted((str(n) for n in names), key=_natural_key)


def _natural_key(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def from_tfds(
    name: str,
    split: str = "train",
    image_key: str = "image",
    label_key: str = "label",
    data_dir=None,
    patient_key: str | None = None,
    download: bool = False,
) -> ImageSet:
    """Reads a tensorflow-datasets dataset into memory (images as uint8 arrays).

    Args:
        name: the tfds name, e.g. "beans" or "patch_camelyon".
        split: the tfds split.
        image_key, label_key: feature names of the image and the class label.
        data_dir: tfds data folder.
        patient_key: feature holding a patient id, if the dataset has one.
        download: let tfds download the data if it is not prepared.

    Returns:
        An ImageSet of in-memory images; each is named ``<name>/<split>#<index>`` (the extras column ``name``,
        which the audit's findings show).
    """
    tfds = require("tensorflow_datasets", "tfds", "data.from_tfds", package="tensorflow-datasets")
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
    return ImageSet(
        paths=None,
        images=images,
        labels=np.array(labels),
        class_names=class_names,
        patient_ids=np.array(patients, dtype=object) if patient_key else None,
        extras={"name": np.array([f"{name}/{split}#{i}" for i in range(len(images))], dtype=object)},
    )


def _decode(value):
    return value.decode() if isinstance(value, bytes) else str(value)


# -- unlabelled images, for prediction --------------------------------------------------------------------


def collect_images(images, image_col: str = "path", patient_col: str | None = None):
    """Image paths (and patient ids, when known) from files, folders, CSV manifests or an ImageSet.

    A folder is searched recursively for image files (sorted by path). DICOM files take their patient id
    from the PatientID header and come in series order (SeriesInstanceUID, then InstanceNumber); a CSV
    lists paths in ``image_col`` (relative to the CSV's folder) and patient ids in ``patient_col``.

    Returns:
        (paths, patient ids or None).
    """
    items = [images] if isinstance(images, (str, Path)) else list(images)
    paths, patients = [], []
    for item in items:
        path = Path(item).expanduser()
        if path.suffix.lower() == ".csv" and path.is_file():
            csv_paths, csv_patients = _from_csv(path, image_col, patient_col)
            paths += csv_paths
            patients += csv_patients
        elif path.is_dir():
            found, unread = _scan(path)
            if not found:
                raise DataSourceError(
                    f"No image files in '{path}' (looked for {', '.join(IMAGE_EXTENSIONS)} and DICOM files"
                    f"{'; found ' + _count_unread(unread) if unread else ''}).{_gif_hint(unread)}"
                )
            _warn_unread(path, unread)
            found, ids = _series_order(found)
            paths += [str(p) for p in found]
            patients += ids
        else:
            paths.append(str(path))
            patients.append(_dicom_patient(path))
    if not paths:
        raise DataSourceError("No images given: pass image files, folders, CSV manifests or a DICOM series folder.")
    return paths, patients if any(p is not None for p in patients) else None


def _from_csv(path: Path, image_col: str, patient_col):
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in (image_col, patient_col):
        if column is not None and column not in frame.columns:
            raise DataSourceError(
                f"Column {column!r} not found in '{path}'; its columns are {list(frame.columns)}."
                f"{did_you_mean(column, list(frame.columns))}"
            )
    paths = [p if Path(p).is_absolute() else str(path.parent / p) for p in frame[image_col].astype(str)]
    patients = frame[patient_col].astype(str).tolist() if patient_col else [None] * len(paths)
    return paths, patients


def _dicom_header(path: Path):
    if not is_dicom(path):
        return None
    try:
        return import_pydicom().dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:  # the pre-check reports unreadable files with a reason
        return None


def _dicom_patient(path: Path):
    header = _dicom_header(path)
    return None if header is None or "PatientID" not in header else str(header.PatientID)


def _series_order(files):
    """DICOM files of a folder in series order; other files keep their path order."""
    keyed = []
    for position, path in enumerate(files):
        header = _dicom_header(path)
        if header is None:
            keyed.append(((1, "", 0, position), path, None))
            continue
        try:
            instance = int(header.get("InstanceNumber") or 0)
        except (TypeError, ValueError):
            instance = 0
        keyed.append(
            (
                (0, str(header.get("SeriesInstanceUID", "")), instance, position),
                path,
                str(header.PatientID) if "PatientID" in header else None,
            )
        )
    keyed.sort(key=lambda entry: entry[0])
    return [entry[1] for entry in keyed], [entry[2] for entry in keyed]

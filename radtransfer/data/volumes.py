"""2D slices from 3D volumes (NIfTI and anything else nibabel reads), for the same pipeline as image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .imageset import ImageSet
from .intensity import to_uint8
from .sources import DataSourceError, from_csv

AXES = {"axial": 2, "coronal": 1, "sagittal": 0}


def _import_nibabel():
    try:
        import nibabel
    except ImportError:
        raise ImportError("Reading NIfTI volumes needs nibabel: pip install 'radtransfer[volumes]'.") from None
    return nibabel


def from_volumes(manifest, image_col: str = "volume", label_col: str = "label", patient_col: str | None = None,
                 mask_col: str | None = None, slices="all", window=None, plane: str = "axial", root=None,
                 class_names=None, percentiles=(0.5, 99.5)) -> ImageSet:
    """Reads 2D slices from 3D volumes listed in a CSV manifest (or DataFrame), one row per volume.

    Volumes are reoriented to the closest canonical (RAS) orientation, so ``plane="axial"`` gives axial
    slices whatever the scanner's storage order, shown with anterior at the top. Voxel values are in the
    file's own units after its scaling (Hounsfield units for CT).

    Args:
        manifest: a CSV path or a DataFrame with a volume path, a label and optionally a patient id and a
            mask path per row.
        image_col, label_col, patient_col, mask_col: the manifest's columns. Without ``patient_col`` each
            volume is its own patient, so a split never puts slices of one volume in two parts.
        slices: "all"; ("middle", k) for the k central slices; or "mask" for the slices the mask touches
            (needs ``mask_col``).
        window: (center, width) in the volume's units, e.g. (40, 400) for a CT soft-tissue window or
            (-600, 1500) for lung; default: each volume's own ``percentiles`` range (suits MRI).
        plane: "axial", "coronal" or "sagittal".
        root: folder the manifest's paths are relative to (default: the CSV's folder).
        class_names: the class order (default: the sorted labels).
        percentiles: the low and high percentile mapped to 0 and 255 when no window is given.

    Returns:
        An ImageSet of uint8 slices (in memory) with the volume's patient id for every slice and the extras
        ``volume`` (its path) and ``slice`` (the slice index in the canonical orientation).

    Raises:
        DataSourceError: a missing column or file, a volume that is not 3D, a mask of another shape, or a
            selection that leaves a volume with no slices.
    """
    nibabel = _import_nibabel()
    if plane not in AXES:
        raise ValueError(f"Expected plane one of {tuple(AXES)}. Received: plane={plane!r}")
    _check_slices(slices, mask_col)
    extra = (mask_col,) if mask_col else ()
    listing = from_csv(manifest, image_col=image_col, label_col=label_col, patient_col=patient_col, root=root,
                       class_names=class_names, extra_cols=extra)
    if root is not None:
        base = Path(root)
    elif isinstance(manifest, (str, Path)):
        base = Path(manifest).expanduser().parent
    else:
        base = Path.cwd()
    images, labels, patients, volumes, indices = [], [], [], [], []
    for row, path in enumerate(listing.paths):
        data = _load(nibabel, path)
        mask = None
        if mask_col:
            mask_path = str(listing.extras[mask_col][row])
            mask_path = mask_path if Path(mask_path).is_absolute() else str(base / mask_path)
            mask = _load(nibabel, mask_path) > 0
            if mask.shape != data.shape:
                raise DataSourceError(f"Mask '{mask_path}' has shape {mask.shape} but its volume '{path}' has "
                                      f"{data.shape}.")
        axis = AXES[plane]
        chosen = _select(slices, data.shape[axis], mask, axis, path)
        low, high = _value_range(data, window, percentiles)
        for index in chosen:
            plane_image = np.rot90(np.take(data, index, axis=axis))  # first in-plane axis left→right
            images.append(to_uint8(plane_image, (low, high)))
            labels.append(listing.labels[row])
            patients.append(listing.patient_ids[row] if listing.patient_ids is not None else str(path))
            volumes.append(str(path))
            indices.append(int(index))
    return ImageSet(paths=None, images=images, labels=np.array(labels), class_names=listing.class_names,
                    patient_ids=np.array(patients, dtype=object),
                    extras={"volume": np.array(volumes, dtype=object), "slice": np.array(indices, dtype=object)})


def _check_slices(slices, mask_col) -> None:
    if slices == "all":
        return
    if slices == "mask":
        if not mask_col:
            raise ValueError("slices='mask' needs mask_col: the manifest column of mask volume paths.")
        return
    if (isinstance(slices, (tuple, list)) and len(slices) == 2 and slices[0] == "middle"
            and isinstance(slices[1], int) and slices[1] >= 1):
        return
    raise ValueError(f"Expected slices='all', 'mask' or ('middle', k) with k ≥ 1. Received: slices={slices!r}")


def _load(nibabel, path) -> np.ndarray:
    if not Path(str(path)).is_file():
        raise DataSourceError(f"Volume not found: '{path}'.")
    try:
        image = nibabel.as_closest_canonical(nibabel.load(str(path)))
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for a broken file
        raise DataSourceError(f"'{path}' does not read as a volume ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}).") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataSourceError(f"'{path}' has shape {data.shape}; expected a 3D volume.")
    return data


def _select(slices, count: int, mask, axis: int, path) -> np.ndarray:
    if slices == "all":
        return np.arange(count)
    if slices == "mask":
        touched = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
        if len(touched) == 0:
            raise DataSourceError(f"The mask of '{path}' is empty: no slice to take with slices='mask'.")
        return touched
    k = min(slices[1], count)
    start = (count - k) // 2
    return np.arange(start, start + k)


def _value_range(data: np.ndarray, window, percentiles) -> tuple[float, float]:
    if window is not None:
        center, width = (float(v) for v in window)
        return center - width / 2.0, center + width / 2.0
    low, high = np.percentile(data, percentiles)
    return float(low), float(high)

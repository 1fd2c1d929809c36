"""ImageSet: images (paths or in-memory records), integer labels (or multi-hot label rows), class names and patient
ids, with patient-level splits and k-fold cross-validation."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import LeakageError
from ..utils.choices import check_choice

EXAM_ID = "exam_id"  # the extras column of exam ids


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A labelled set of images.

    Attributes:
        paths: image file paths (None for in-memory records, e.g. from tensorflow-datasets).
        labels: integer labels, indices into ``class_names``; or, for a multi-label set (``multi_label``), an
            (images, labels) 0/1 array, one column per name in ``class_names`` (e.g. ``from_csv(...,
            label_cols=[...])``), an image having any number of labels.
        class_names: the class names, in label order (multi-label: the label names, in column order).
        patient_ids: one id per image, or None.
        images: in-memory uint8 images (a list of HxWxC arrays) when there are no paths.
        extras: per-image columns carried along (e.g. lesion mask paths), as a dict of arrays. The column
            ``exam_id`` (``from_csv(..., exam_col=)``) holds each image's exam (``exam_ids``).
    """

    paths: np.ndarray | None
    labels: np.ndarray
    class_names: tuple
    patient_ids: np.ndarray | None = None
    images: list | None = None
    extras: dict | None = None

    def __post_init__(self):
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        if self.labels.ndim == 2:
            _check_multi_hot(self.labels, self.class_names)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.paths is not None:
            object.__setattr__(self, "paths", np.asarray([str(p) for p in self.paths], dtype=object))
        if self.patient_ids is not None:
            object.__setattr__(self, "patient_ids", np.asarray([str(p) for p in self.patient_ids], dtype=object))
        n = len(self.labels)
        for name in ("paths", "patient_ids", "images"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"ImageSet: {name} has {len(value)} entries but there are {n} labels.")
        if self.paths is None and self.images is None:
            raise ValueError("ImageSet needs either paths or in-memory images.")
        if n and self.labels.ndim == 1 and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"ImageSet: labels must be in [0, {len(self.class_names)}); "
                f"found {self.labels.min()}..{self.labels.max()}."
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}: {n}" for c, n in zip(self.class_names, self.class_counts()))
        patients = f", {len(set(self.patient_ids))} patients" if self.patient_ids is not None else ""
        return f"ImageSet({len(self)} images{patients}; {counts})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        """Whether each image has a 0/1 row of labels (``labels`` of shape (images, labels)) rather than one class."""
        return self.labels.ndim == 2

    def targets(self) -> np.ndarray:
        """The labels as a model is trained on them: (images, classes) float32 one-hot rows, or a multi-label set's
        multi-hot rows."""
        if self.multi_label:
            return self.labels.astype(np.float32)
        return np.eye(self.num_classes, dtype=np.float32)[self.labels]

    def label_strings(self) -> list[str]:
        """Each image's label as text: its class name, or a multi-label image's positive labels joined by "|"."""
        if self.multi_label:
            return ["|".join(c for c, on in zip(self.class_names, row) if on) for row in self.labels]
        return [self.class_names[i] for i in self.labels]

    def strata(self) -> np.ndarray:
        """The integer each image is stratified by in ``split``, ``kfold`` and ``nested_subset``: its class; for a
        multi-label set, its rarest positive label (by images in the set), or ``num_classes`` for an image with no
        positive label, so that every label's few positives are spread over the parts as a class's would be."""
        if not self.multi_label:
            return self.labels
        counts = self.labels.sum(axis=0)
        rarity = np.where(self.labels > 0, counts[None, :], np.iinfo(np.int64).max)
        return np.where(self.labels.any(axis=1), rarity.argmin(axis=1), self.num_classes)

    @property
    def exam_ids(self) -> np.ndarray | None:
        """One exam id per image (the extras column ``exam_id``, kept by ``split``, ``kfold`` and ``subset``), or
        None. An exam id is taken within its patient: exam "1" of two patients is two exams."""
        extras = self.extras or {}
        return None if EXAM_ID not in extras else np.asarray([str(e) for e in extras[EXAM_ID]], dtype=object)

    def class_counts(self) -> list[int]:
        """Images per class, in class order (multi-label: images positive for each label)."""
        if self.multi_label:
            return self.labels.sum(axis=0).astype(int).tolist()
        return np.bincount(self.labels, minlength=self.num_classes).tolist()

    def image_names(self) -> list[str]:
        """One display name per image, in order: the path for files; for in-memory images the extras column
        ``name`` when there is one (``from_tfds``: ``<name>/<split>#<index>``), else ``<volume>#<slice>`` from
        ``from_volumes``' extras, else ``#<index>`` in this set. Parts made by ``split``, ``kfold`` and ``subset``
        keep their images' names in the set they came from."""
        if self.paths is not None:
            return [str(p) for p in self.paths]
        extras = self.extras or {}
        if "name" in extras:
            return [str(n) for n in extras["name"]]
        if "volume" in extras and "slice" in extras:
            return [f"{volume}#{index}" for volume, index in zip(extras["volume"], extras["slice"])]
        return [f"#{i}" for i in range(len(self))]

    def subset(self, indices) -> "ImageSet":
        """The images at `indices`, in that order (in-memory images keep their names, see ``image_names``)."""
        indices = np.asarray(indices, dtype=np.int64)
        extras = (
            {} if self.extras is None else {k: np.asarray(v, dtype=object)[indices] for k, v in self.extras.items()}
        )
        if self.paths is None and "name" not in extras:
            extras["name"] = np.asarray(self.image_names(), dtype=object)[indices]
        return ImageSet(
            paths=None if self.paths is None else self.paths[indices],
            labels=self.labels[indices],
            class_names=self.class_names,
            patient_ids=None if self.patient_ids is None else self.patient_ids[indices],
            images=None if self.images is None else [self.images[i] for i in indices],
            extras=extras or None,
        )

    # -- splitting -----------------------------------------------------------------------------

    def _groups(self, by: str) -> np.ndarray:
        check_choice("by", by, ("patient", "image"))
        if by == "patient" and self.patient_ids is None:
            warnings.warn(
                "This image set has no patient ids, so it is split by image: slices of one patient may "
                "leak across parts. Give patient ids (patient_col=...) to split by patient.",
                stacklevel=3,
            )
            by = "image"
        if by == "image":
            return np.arange(len(self)).astype(str).astype(object)
        return self.patient_ids

    def _group_labels(self, groups):
        """Unique groups (in first-seen order) and each group's majority stratum (``strata``: its class)."""
        unique, first, inverse = np.unique(groups.astype(str), return_index=True, return_inverse=True)
        order = np.argsort(first)
        unique = unique[order]
        remap = np.empty_like(order)
        remap[order] = np.arange(len(order))
        inverse = remap[inverse]
        counts = np.zeros((len(unique), self.num_classes + 1), dtype=np.int64)
        np.add.at(counts, (inverse, self.strata()), 1)
        return unique, inverse, counts.argmax(axis=1)

    def split(self, val: float = 0.10, test: float = 0.15, by: str = "patient", stratify: bool = True, seed: int = 726):
        """Splits into (train, val, test), each patient's images in one part.

        Fractions are of patients (of images with ``by="image"``), per class when ``stratify`` (a
        patient's class is the majority label of their images; multi-label, the majority of their images'
        ``strata``, i.e. rarest positive label). A class with two patients puts one in test; with three, one in val
        too; train always keeps at least one.

        Returns:
            (train, val, test) image sets.
        """
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise ValueError(f"Expected 0 ≤ val, test and val + test < 1. Received: val={val}, test={test}")
        groups = self._groups(by)
        unique, inverse, group_labels = self._group_labels(groups)
        rng = np.random.default_rng(seed)
        part = np.zeros(len(unique), dtype=np.int64)  # 0 train, 1 val, 2 test
        strata = (
            [np.flatnonzero(group_labels == c) for c in range(self.num_classes + 1)]
            if stratify
            else [np.arange(len(unique))]
        )
        for members in strata:
            members = rng.permutation(members)
            n = len(members)
            n_test, n_val = int(round(test * n)), int(round(val * n))
            if n >= 2 and test > 0:
                n_test = max(n_test, 1)
            n_test = min(n_test, max(n - 1, 0))  # train keeps at least one
            if n - n_test >= 2 and val > 0:
                n_val = max(n_val, 1)
            n_val = min(n_val, max(n - n_test - 1, 0))
            part[members[:n_test]] = 2
            part[members[n_test : n_test + n_val]] = 1
        image_part = part[inverse]
        parts = tuple(self.subset(np.flatnonzero(image_part == p)) for p in (0, 1, 2))
        if len(self) and len(parts[0]) == 0:
            raise ValueError(
                f"split(val={val}, test={test}) leaves no images for training ({len(unique)} "
                f"{'patients' if by == 'patient' else 'images'}). Use smaller fractions or more data."
            )
        for name, fraction, piece in (("val", val, parts[1]), ("test", test, parts[2])):
            if fraction > 0 and len(piece) == 0:
                warnings.warn(
                    f"The {name} part is empty: {len(unique)} {'patients' if by == 'patient' else 'images'} "
                    f"are too few for {name}={fraction} (per class, train keeps one first). Use more data "
                    f"or a larger {name} fraction.",
                    stacklevel=2,
                )
        if by == "patient" and self.patient_ids is not None:
            check_no_leakage(*parts)
        return parts

    def nested_subset(self, fraction: float, by: str = "patient", stratify: bool = True, seed: int = 726) -> "ImageSet":
        """A share of the patients (of the images with ``by="image"``), nested across fractions.

        The patients are put in one seeded random order (per class when ``stratify``: a patient's class is the
        majority label of their images), and a fraction f keeps the first ``ceil(f × n)`` of them (per class, at
        least one), so with the same seed every fraction's patients contain those of any smaller fraction.

        Args:
            fraction: the share to keep, in (0, 1]; 1 keeps everything.
            by: "patient" or "image".
            stratify: draw per class.
            seed: the order's seed.

        Returns:
            The image set of the kept patients, their images in this set's order.
        """
        if isinstance(fraction, bool) or not 0 < fraction <= 1:
            raise ValueError(f"Expected 0 < fraction ≤ 1. Received: fraction={fraction!r}")
        groups = self._groups(by)
        unique, inverse, group_labels = self._group_labels(groups)
        rng = np.random.default_rng(seed)
        strata = (
            [np.flatnonzero(group_labels == c) for c in range(self.num_classes + 1)]
            if stratify
            else [np.arange(len(unique))]
        )
        keep = np.zeros(len(unique), dtype=bool)
        for members in strata:
            if len(members):
                order = rng.permutation(members)
                keep[order[: max(1, math.ceil(fraction * len(members) - 1e-9))]] = True
        return self.subset(np.flatnonzero(keep[inverse]))

    def kfold(self, k: int = 5, by: str = "patient", stratify: bool = True, seed: int = 726, val: float = 0.10):
        """Yields (train, val, test) for each of k folds; every patient is in exactly one test fold.

        With ``stratify``, folds are drawn by scikit-learn's ``StratifiedGroupKFold`` (shuffled, seeded): each
        patient's images stay together while the folds' class proportions, counted in images, are kept as
        close to the whole set's as the patients allow. Without, patients are dealt round-robin in a seeded
        random order. The patients outside a fold's test part are split into train and val (``val`` is the
        fraction of them, per class) with the same seed.
        """
        if not isinstance(k, int) or k < 2:
            raise ValueError(f"Expected k ≥ 2 folds. Received: k={k!r}")
        groups = self._groups(by)
        unique, inverse, group_labels = self._group_labels(groups)
        if len(unique) < k:
            raise ValueError(f"Cannot make {k} folds from {len(unique)} {'patients' if by == 'patient' else 'images'}.")
        if stratify:
            from sklearn.model_selection import StratifiedGroupKFold

            image_fold = np.zeros(len(self), dtype=np.int64)
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
            with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits"
                warnings.simplefilter("ignore", UserWarning)
                for f, (_, test_index) in enumerate(splitter.split(np.zeros(len(self)), self.strata(), inverse)):
                    image_fold[test_index] = f
        else:
            fold = (np.arange(len(unique)) % k)[np.argsort(np.random.default_rng(seed).permutation(len(unique)))]
            image_fold = fold[inverse]
        for f in range(k):
            test_set = self.subset(np.flatnonzero(image_fold == f))
            rest = self.subset(np.flatnonzero(image_fold != f))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                train_set, val_set, _ = rest.split(val=val, test=0.0, by=by, stratify=stratify, seed=seed + f)
            if by == "patient" and self.patient_ids is not None:
                check_no_leakage(train_set, val_set, test_set)
            yield train_set, val_set, test_set


def _check_multi_hot(labels, class_names) -> None:
    if labels.shape[1] != len(class_names):
        raise ValueError(f"ImageSet: {labels.shape[1]} label columns but {len(class_names)} label names.")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("ImageSet: multi-label rows must hold only 0 and 1.")


def check_no_leakage(*parts: ImageSet) -> None:
    """Raises LeakageError if any patient has images in more than one of the parts."""
    seen: dict = {}
    for index, part in enumerate(parts):
        if part.patient_ids is None:
            raise ValueError("check_no_leakage needs patient ids on every part.")
        for patient in set(part.patient_ids):
            if patient in seen and seen[patient] != index:
                raise LeakageError(
                    f"Patient {patient!r} has images in parts {seen[patient]} and {index}: the split leaks."
                )
            seen[patient] = index

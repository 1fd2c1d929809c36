"""Planting a confounder: a visible marker drawn on a chosen share of one class's images, so a shortcut test can ask
whether a model learned the marker instead of the anatomy (Juodelyte et al. 2024, "Source Matters").

``plant_marker`` returns a new ImageSet of in-memory uint8 images: files are decoded by the NumPy path's own reader
(``py_dataset.numpy_read.decode_file``, at their stored size), in-memory images are taken as ``intensity.as_uint8``
takes them, and the marker, a square of one grey level in a fixed corner, is drawn at that size, so it scales with
the image when the pipeline resizes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..utils.choices import check_choice
from .decode import ReadSettings
from .imageset import ImageSet
from .intensity import as_uint8
from .py_dataset.numpy_read import decode_file

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


@dataclass(frozen=True)
class Marker:
    """A square patch of one grey level in a corner of the image.

    Attributes:
        size: the square's side as a fraction of the image's shorter side, in (0, 1] (at least one pixel).
        corner: "top_left", "top_right", "bottom_left" or "bottom_right"; the square touches both edges.
        value: its grey level, 0..255 on every channel.
    """

    size: float = 0.15
    corner: str = "top_left"
    value: int = 255

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, (int, float)) or not 0 < self.size <= 1:
            raise ValueError(f"Marker: size is a fraction of the shorter side in (0, 1]. Received: size={self.size!r}")
        check_choice("corner", self.corner, CORNERS)
        if isinstance(self.value, bool) or not isinstance(self.value, (int, np.integer)) or not 0 <= self.value <= 255:
            raise ValueError(f"Marker: value is a grey level 0..255. Received: value={self.value!r}")

    def side(self, height: int, width: int) -> int:
        """The square's side in pixels on an image of this size."""
        return max(1, int(round(self.size * min(height, width))))

    def draw(self, image: np.ndarray) -> np.ndarray:
        """A copy of a uint8 (H, W, C) image with the marker drawn on it."""
        out = np.array(image, dtype=np.uint8, copy=True)
        height, width = out.shape[:2]
        side = self.side(height, width)
        rows = slice(0, side) if self.corner.startswith("top") else slice(height - side, height)
        cols = slice(0, side) if self.corner.endswith("left") else slice(width - side, width)
        out[rows, cols, ...] = self.value
        return out


def marked_indices(labels, share: float = 1.0, reverse: bool = False, seed: int = 0) -> np.ndarray:
    """The images ``plant_marker`` marks: ``round(share × n)`` of the n images of class 1 (of class 0 with
    ``reverse``), drawn by a permutation seeded by ``seed``; sorted."""
    labels = np.asarray(labels)
    candidates = np.flatnonzero(labels == (0 if reverse else 1))
    count = int(round(share * len(candidates)))
    return np.sort(np.random.default_rng(seed).permutation(candidates)[:count])


def plant_marker(
    image_set: ImageSet,
    share: float = 1.0,
    reverse: bool = False,
    seed: int = 0,
    marker: Marker | None = None,
    settings: ReadSettings | None = None,
) -> ImageSet:
    """A copy of a two-class image set with a marker drawn on a share of the positive (class 1) images.

    Args:
        image_set: the images (files or in-memory); two classes.
        share: the share of the class's images that get the marker, in [0, 1] (``marked_indices`` says which).
        reverse: draw it on the negative (class 0) images instead.
        seed: the seed of which images are chosen when ``share`` < 1.
        marker: the ``Marker`` (default: a white square, 15% of the shorter side, top left).
        settings: how files are decoded (``ReadSettings``: 16-bit mapping, DICOM window and frame; its size and
            interpolation are unused: images keep their stored size).

    Returns:
        An ImageSet of in-memory uint8 (H, W, 3 or 1) images with the same labels, class names, patient ids, extras
        and image names (files are named by their paths).

    Raises:
        ValueError: more than two classes, or ``share`` outside [0, 1].
    """
    if image_set.multi_label:
        raise ValueError(
            "plant_marker needs a two-class image set of one class per image; this one is multi-label (label_cols)."
        )
    if image_set.num_classes != 2:
        raise ValueError(
            f"plant_marker needs a two-class image set; this one has {image_set.num_classes} classes "
            f"({', '.join(image_set.class_names)}). Keep two classes (e.g. with ImageSet.subset)."
        )
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(
            f"plant_marker: share is the share of the class's images to mark, in [0, 1]. Received: {share!r}"
        )
    marker = marker or Marker()
    settings = settings or ReadSettings()
    chosen = set(marked_indices(image_set.labels, share, reverse, seed).tolist())
    images = []
    for index in range(len(image_set)):
        if image_set.paths is not None:
            image = decode_file(image_set.paths[index], settings)
        else:
            image = as_uint8(np.asarray(image_set.images[index]))
        images.append(marker.draw(image) if index in chosen else image)
    extras = dict(image_set.extras or {})
    if image_set.paths is not None:
        extras["name"] = np.asarray(image_set.image_names(), dtype=object)
    return ImageSet(
        paths=None,
        labels=image_set.labels,
        class_names=image_set.class_names,
        patient_ids=image_set.patient_ids,
        images=images,
        extras=extras or None,
    )

"""Mapping any intensity range to 8 bits: the one place a value range becomes 0..255."""

from __future__ import annotations

import numpy as np


def to_uint8(values: np.ndarray, value_range=None) -> np.ndarray:
    """Values in ``value_range`` = (low, high) (default: their own min..max), clipped, to uint8 0..255."""
    values = np.asarray(values)
    low, high = value_range if value_range is not None else (float(values.min()), float(values.max()))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values.astype(np.float64), low, high) - low) / (high - low) * 255.0
    return np.round(scaled).astype(np.uint8)


def as_uint8(image: np.ndarray) -> np.ndarray:
    """An in-memory image as uint8 HxWxC (wider types scaled from their own range, as 16-bit PNGs are)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        wide = image.dtype == np.uint16 or image.max() > 255 or image.min() < 0
        image = to_uint8(image, None if wide else (0, 255))
    return image

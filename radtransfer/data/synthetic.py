"""Built-in demo data: a small, learnable, MRI-like four-class brain-tumour set made on the fly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..utils.choices import check_choice

BRAIN_MRI_CLASSES = ("glioma", "meningioma", "no_tumor", "pituitary")
MANIFEST = "manifest.csv"


def _smooth_noise(rng, size, scale=8):
    """Low-frequency noise in [-1, 1] (bilinear upsampling of a coarse grid)."""
    coarse = rng.uniform(-1, 1, size=(scale + 1, scale + 1))
    t = np.linspace(0, scale, size)
    i0 = np.clip(t.astype(int), 0, scale - 1)
    f = t - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _ellipse(x, y, cx, cy, a, b, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    xr, yr = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (xr / a) ** 2 + (yr / b) ** 2


def _patient(rng, label: str, size: int, slices: int):
    """Images (float, ~[0, 1]) and lesion masks (bool) for one patient's slices."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    head_a, head_b = rng.uniform(0.72, 0.82), rng.uniform(0.82, 0.92)
    tilt = rng.uniform(-0.15, 0.15)
    cx, cy = rng.uniform(-0.04, 0.04, 2)
    texture = _smooth_noise(rng, size, 10)
    bias = _smooth_noise(rng, size, 2)
    brain_level = rng.uniform(0.42, 0.52)
    # The lesion: where, how big and how bright depends on the class.
    if label == "meningioma":  # extra-axial, against the inner skull table
        theta = rng.uniform(-np.pi * 0.95, -np.pi * 0.05)  # upper convexity
        radius = rng.uniform(0.12, 0.17)
        edge = 0.88 - radius * 0.55
        lx, ly = cx + edge * head_a * np.cos(theta), cy + edge * head_b * np.sin(theta)
        level, core = rng.uniform(0.85, 0.95), None
    elif label == "pituitary":  # skull base, midline
        radius = rng.uniform(0.07, 0.1)
        lx, ly = cx + rng.uniform(-0.03, 0.03), cy + head_b * rng.uniform(0.42, 0.5)
        level, core = rng.uniform(0.8, 0.9), None
    elif label == "glioma":  # intra-axial, heterogeneous with a darker necrotic core
        radius = rng.uniform(0.13, 0.2)
        r, theta = rng.uniform(0.2, 0.4), rng.uniform(0, 2 * np.pi)
        lx, ly = cx + r * head_a * np.cos(theta), cy + r * head_b * np.sin(theta) - 0.1
        level, core = rng.uniform(0.72, 0.82), rng.uniform(0.2, 0.3)
    else:
        radius = 0.0
        lx = ly = level = core = None
    wobble = rng.uniform(0.8, 1.25, 2)
    images, masks = [], []
    for k in range(slices):
        position = (k - (slices - 1) / 2) / max(slices, 2)  # -0.5 .. 0.5 through the head
        shrink = np.sqrt(max(1 - (1.4 * position) ** 2, 0.3))
        head = _ellipse(x, y, cx, cy, head_a * shrink, head_b * shrink, tilt)
        inner = _ellipse(x, y, cx, cy, head_a * shrink * 0.9, head_b * shrink * 0.9, tilt)
        image = np.zeros((size, size))
        image[head <= 1] = 0.9  # skull and scalp
        brain = inner <= 1
        image[brain] = brain_level + 0.06 * texture[brain]
        for side in (-1, 1):  # lateral ventricles
            vent = _ellipse(x, y, cx + side * 0.09, cy - 0.05, 0.06 * (1 + position), 0.18 * shrink, side * 0.3)
            image[(vent <= 1) & brain] = 0.15
        mask = np.zeros((size, size), dtype=bool)
        if label != "no_tumor":
            scale = radius * np.sqrt(max(1 - (1.6 * position) ** 2, 0.35))
            lesion = _ellipse(x, y, lx, ly, scale * wobble[0], scale * wobble[1], tilt)
            if label == "glioma":  # irregular margin
                lesion = lesion + 0.35 * texture
            mask = (lesion <= 1) & (head <= 1)
            image[mask] = level
            if core is not None:
                image[(lesion <= 0.35) & mask] = core
        image = image * (1 + 0.18 * bias)
        image = image + rng.normal(0, 0.025, size=image.shape)
        images.append(np.clip(image, 0, 1))
        masks.append(mask)
    return images, masks


def synthetic_brain_mri(
    out_dir,
    n_patients: int = 40,
    slices_per_patient: int = 4,
    image_size: int = 128,
    seed: int = 0,
    max_value: int = 4095,
    bit_depth: int = 16,
) -> Path:
    """Writes a synthetic four-class brain-tumour MRI set and returns its manifest CSV.

    Each patient is a head phantom (skull ring, brain with texture, lateral ventricles) that varies by
    patient, with a lesion whose position, shape and contrast depend on the class: meningioma against
    the skull, pituitary at the skull base midline, glioma inside the parenchyma with a necrotic core,
    or none. Slices through the head change its size and the lesion's; noise and a smooth bias field
    are added. Images are 16-bit PNGs with values up to ``max_value`` (12-bit, as many MRI exports).

    Layout::

        out_dir/images/<class>/<patient>_s<k>.png   (class folders: data.from_directory works too)
        out_dir/masks/<class>/<patient>_s<k>.png    (8-bit lesion masks, 255 inside the lesion)
        out_dir/manifest.csv                         (path, label, patient_id, slice, mask_path)

    Args:
        out_dir: folder to write into (created).
        n_patients: patients, spread evenly over the four classes.
        slices_per_patient: slices per patient.
        image_size: image height and width in pixels.
        seed: random seed; the same seed gives the same files.
        max_value: the brightest 16-bit value.
        bit_depth: 16 (default) or 8 (then values are scaled to 0..255).

    Returns:
        The path of manifest.csv; read it with
        ``data.from_csv(path, image_col="path", label_col="label", patient_col="patient_id")``.
    """
    from PIL import Image

    if n_patients < len(BRAIN_MRI_CLASSES):
        raise ValueError(f"Expected n_patients ≥ {len(BRAIN_MRI_CLASSES)} (one per class). Received: {n_patients}")
    check_choice("bit_depth", bit_depth, (8, 16))
    if slices_per_patient < 1 or image_size < 16:
        raise ValueError("Expected slices_per_patient ≥ 1 and image_size ≥ 16.")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(n_patients):
        label = BRAIN_MRI_CLASSES[index % len(BRAIN_MRI_CLASSES)]
        patient = f"P{index:04d}"
        images, masks = _patient(rng, label, image_size, slices_per_patient)
        for k, (image, mask) in enumerate(zip(images, masks)):
            name = f"{patient}_s{k}.png"
            image_path = out / "images" / label / name
            mask_path = out / "masks" / label / name
            image_path.parent.mkdir(parents=True, exist_ok=True)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            if bit_depth == 8:
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(image_path)
            else:
                Image.fromarray(np.round(image * max_value).astype(np.uint16)).save(image_path)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
            rows.append(
                {
                    "path": f"images/{label}/{name}",
                    "label": label,
                    "patient_id": patient,
                    "slice": k,
                    "mask_path": f"masks/{label}/{name}",
                }
            )
    manifest = out / MANIFEST
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def load_synthetic_brain_mri(out_dir, **kwargs):
    """Writes the synthetic set if ``out_dir`` has no manifest yet, and returns it as an ImageSet
    (patient ids and lesion mask paths included)."""
    from .sources import from_csv

    manifest = Path(out_dir) / MANIFEST
    if not manifest.exists():
        synthetic_brain_mri(out_dir, **kwargs)
    return from_csv(manifest, image_col="path", label_col="label", patient_col="patient_id", extra_cols=("mask_path",))

"""What a data set is, image by image: its manifest (path, class, patient, content hash, in order) and a digest
of it, so a grid can tell the data it was run on from any other, and say what changed."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..utils.progress import progress
from .imageset import ImageSet

COLUMNS = ("image", "label", "patient", "sha256")
MAX_SHOWN = 5


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return digest.hexdigest()


def _array_sha256(image) -> str:
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def data_manifest(image_set: ImageSet, workers: int = 8) -> list[tuple]:
    """One row per image, in the set's order: (path or "#index" for in-memory images, class name, patient id or
    "", sha256 of the file's bytes or of the in-memory pixels)."""
    if image_set.paths is not None:
        names = [str(p) for p in image_set.paths]
        with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib releases the GIL on large reads
            hashes = list(
                progress(pool.map(_file_sha256, names), total=len(names), desc="hashing the data", unit="file")
            )
    else:
        names = [f"#{i}" for i in range(len(image_set))]
        hashes = [_array_sha256(image) for image in image_set.images]
    labels = image_set.label_strings()
    patients = [""] * len(image_set) if image_set.patient_ids is None else [str(p) for p in image_set.patient_ids]
    return list(zip(names, labels, patients, hashes))


def manifest_digest(rows) -> str:
    """A sha256 of a manifest's rows, in order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(("\t".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()


def manifest_differences(old_rows, new_rows) -> list[str]:
    """What changed from one manifest to another, a line per kind of change (images added or removed, classes,
    patients or contents changed, order changed), each with a count and the first few images."""

    def listed(items):
        shown = ", ".join(items[:MAX_SHOWN])
        return shown + (f", … ({len(items) - MAX_SHOWN} more)" if len(items) > MAX_SHOWN else "")

    old = {row[0]: row for row in old_rows}
    new = {row[0]: row for row in new_rows}
    lines = []
    removed = [name for name in old if name not in new]
    added = [name for name in new if name not in old]
    if removed:
        lines.append(f"{len(removed)} image(s) no longer in the data: {listed(removed)}")
    if added:
        lines.append(f"{len(added)} image(s) new in the data: {listed(added)}")
    both = [name for name in new if name in old]
    for column, what in ((1, "class"), (2, "patient"), (3, "contents")):
        changed = [name for name in both if old[name][column] != new[name][column]]
        if changed:
            detail = (
                [f"{name} ({old[name][column]} → {new[name][column]})" for name in changed] if column < 3 else changed
            )
            lines.append(f"{len(changed)} image(s) with another {what}: {listed(detail)}")
    if not lines and [row[0] for row in old_rows] != [row[0] for row in new_rows]:
        lines.append("the images are the same but in another order (the splits depend on it)")
    if not lines and len(old_rows) != len(new_rows):
        lines.append(f"{len(old_rows)} rows before, {len(new_rows)} now (an image listed twice)")
    return lines

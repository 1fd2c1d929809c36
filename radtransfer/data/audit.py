"""The data audit: what in a data set would make its test figures wrong, found before any training.

Each image is decoded once (Pillow, or the DICOM renderer the pipeline uses) into three facts: a hash of its
decoded pixels (so the same picture saved as PNG and as BMP, or re-saved with other file bytes, is one image),
a 64-bit perceptual hash (pHash: the signs of the 8×8 lowest frequencies of the DCT of a 32×32 grey thumbnail
against their median, the algorithm of ImageHash's ``phash``, computed here with scipy over a batch so no
further dependency is needed), and the spread of its grey levels. NOT READY: on same-anatomy images different
patients' hashes fall within a few bits (see the branch's commits and benchmarks/audit_*_wip.py).
Near duplicates are pairs whose perceptual
hashes differ in at most ``near_distance`` bits: re-encoding, resizing and a brightness shift leave the hash
almost unchanged, while two different pictures differ in about half of the 64 bits. Every pair is compared
(XOR and a bit count in blocks), so nothing is missed by bucketing.

Findings (``Finding.kind``): ``duplicate``, ``near_duplicate``, ``label_conflict``, ``patient_leak``,
``empty_image`` and ``unreadable``. Duplicates and near duplicates across parts, label conflicts and patient
leaks are errors; the rest warnings. Near duplicates within one part and one class are not findings: a
patient's neighbouring slices look alike, and a split by patient keeps them together.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..utils.progress import progress
from .decode import check_files, is_dicom
from .imageset import ImageSet

KINDS = ("duplicate", "near_duplicate", "label_conflict", "patient_leak", "empty_image", "unreadable")
ERROR, WARNING = "error", "warning"
EMPTY_STD = 1.0  # grey levels (0-255 scale): below this an image is constant or nearly so
NEAR_DISTANCE = 6  # bits of 64


@dataclass(frozen=True)
class Finding:
    """One thing the audit found, naming its files, their parts and classes."""

    kind: str
    severity: str
    paths: tuple
    parts: tuple
    classes: tuple
    detail: str

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class AuditReport:
    """The audit's findings and the class and patient counts of each part."""

    findings: list
    counts: dict  # part -> {"images": n, "patients": n or None, "classes": {class: n}}
    seconds: float = 0.0
    near_distance: int = NEAR_DISTANCE
    images: int = field(default=0)

    @property
    def errors(self) -> list:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list:
        return [f for f in self.findings if f.severity == WARNING]

    def of_kind(self, kind: str) -> list:
        return [f for f in self.findings if f.kind == kind]

    def to_json(self) -> list:
        """The findings as a list of ``{"kind", "severity", "paths", "parts", "classes", "detail"}``."""
        return [f.to_dict() for f in self.findings]

    def write_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        return path

    def table(self, max_rows: int = 50) -> str:
        """The counts per part and one line per finding, errors first, as plain text."""
        lines = ["part     images  patients  classes"]
        for name, count in self.counts.items():
            patients = "-" if count["patients"] is None else str(count["patients"])
            classes = ", ".join(f"{c} {n}" for c, n in count["classes"].items())
            lines.append(f"{name:<8} {count['images']:>6}  {patients:>8}  {classes}")
        ordered = self.errors + self.warnings
        lines.append(
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s) in {self.images} images "
            f"({self.seconds:.1f} s)"
        )
        for finding in ordered[:max_rows]:
            shown = ", ".join(finding.paths[:3]) + (
                f" and {len(finding.paths) - 3} more" if len(finding.paths) > 3 else ""
            )
            lines.append(
                f"{finding.severity:<7} {finding.kind:<14} parts {'/'.join(finding.parts)}, classes "
                f"{'/'.join(finding.classes)}: {finding.detail} [{shown}]"
            )
        if len(ordered) > max_rows:
            lines.append(f"… and {len(ordered) - max_rows} more (all of them in the JSON)")
        return "\n".join(lines)


# -- reading: one decode per image -------------------------------------------------------------------------------


def _pixels(path: str, frame) -> np.ndarray:
    """The decoded pixels as stored (8 or 16 bit; channels kept unless all equal)."""
    if is_dicom(path):
        from .dicom import read_dicom

        array = read_dicom(path, frame=frame)
    else:
        from PIL import Image

        with Image.open(path) as image:
            if image.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                image = image.convert("RGB")
            array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if (
        array.ndim == 3
        and np.array_equal(array[..., 0], array[..., 1])
        and np.array_equal(array[..., 0], array[..., 2])
    ):
        array = array[..., 0]  # a grey picture saved as RGB is the same picture
    return array


def _grey(array: np.ndarray) -> np.ndarray:
    """A float grey image on the 0-255 scale (16-bit values divided by 257)."""
    grey = array.mean(axis=2) if array.ndim == 3 else array
    grey = grey.astype(np.float32)
    if array.dtype.itemsize > 1 or array.max(initial=0) > 255:
        grey = grey / 257.0
    return grey


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(grey, mode="F").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)


def _read(path: str, frame) -> tuple:
    """(pixel hash, 32x32 thumbnail, grey-level SD) of one image."""
    array = np.ascontiguousarray(_pixels(path, frame))
    digest = hashlib.sha256(f"{array.shape}{array.dtype.str}".encode() + array.tobytes()).hexdigest()
    grey = _grey(array)
    return digest, _thumbnail(grey), float(grey.std())


def perceptual_hashes(thumbnails: np.ndarray) -> np.ndarray:
    """64-bit pHashes (uint64) of a batch of 32x32 thumbnails: the 8x8 lowest DCT frequencies above their median."""
    from scipy.fft import dct

    coefficients = dct(dct(thumbnails, axis=-1, type=2), axis=-2, type=2)[:, :8, :8].reshape(len(thumbnails), 64)
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel()


def near_pairs(hashes: np.ndarray, distance: int, keep=None, block: int = 256) -> np.ndarray:
    """Every pair (i, j), i < j, whose hashes differ in at most ``distance`` bits and for which ``keep(i, j)``
    (vectorised: arrays of i and j) is true, as an (n, 2) array."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block, None]
        later = hashes[start + 1 :]
        close = np.bitwise_count(rows ^ later[None, :]) <= distance
        i, j = np.nonzero(close)
        i, j = i + start, j + start + 1
        ok = j > i
        i, j = i[ok], j[ok]
        if keep is not None and len(i):
            ok = keep(i, j)
            i, j = i[ok], j[ok]
        if len(i):
            found.append(np.stack([i, j], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


# -- the audit ---------------------------------------------------------------------------------------------------


def _as_parts(images_or_parts) -> dict:
    if isinstance(images_or_parts, ImageSet):
        return {"all": images_or_parts}
    if isinstance(images_or_parts, dict):
        parts = dict(images_or_parts)
    elif isinstance(images_or_parts, (list, tuple)) and len(images_or_parts) in (2, 3):
        parts = dict(zip(("train", "val", "test"), images_or_parts))
    else:
        raise TypeError(
            "audit() takes an ImageSet, a dict of named ImageSets, or (train, val[, test]). "
            f"Received: {type(images_or_parts).__name__}"
        )
    for name, part in parts.items():
        if not isinstance(part, ImageSet):
            raise TypeError(f"audit(): part {name!r} is a {type(part).__name__}, not an ImageSet.")
        if part.paths is None:
            raise ValueError(f"audit(): part {name!r} holds in-memory images; the audit reads image files.")
    return parts


def _union_find(n: int, pairs) -> np.ndarray:
    parent = np.arange(n)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])


def audit(images_or_parts, near_distance: int = NEAR_DISTANCE, frame="middle", workers: int = 4) -> AuditReport:
    """Audits a data set before training: duplicates, near duplicates, label conflicts, patient leaks, empty and
    unreadable images.

    Args:
        images_or_parts: an ImageSet, a dict of named parts (e.g. ``{"train": ..., "val": ..., "test": ...}``),
            or ``(train, val, test)``.
        near_distance: the most bits (of 64) two perceptual hashes may differ in for a near duplicate.
        frame: the frame of multi-frame DICOM files, as the pipeline reads them.
        workers: decoding threads.

    Returns:
        An AuditReport: ``findings`` (``report.to_json()`` is the list of
        ``{"kind", "severity", "paths", "parts", "classes", "detail"}``), ``errors``, ``warnings`` and the
        class and patient counts per part (``counts``; ``report.table()`` prints them).
    """
    start = time.perf_counter()
    parts = _as_parts(images_or_parts)
    paths, part_of, class_of, patient_of = [], [], [], []
    counts = {}
    for name, part in parts.items():
        paths += [str(p) for p in part.paths]
        part_of += [name] * len(part)
        class_of += [part.class_names[label] for label in part.labels]
        patient_of += list(part.patient_ids) if part.patient_ids is not None else [None] * len(part)
        counts[name] = {
            "images": len(part),
            "patients": None if part.patient_ids is None else len(set(part.patient_ids)),
            "classes": {
                c: int(n) for c, n in zip(part.class_names, np.bincount(part.labels, minlength=part.num_classes))
            },
        }
    part_of, class_of = np.array(part_of, dtype=object), np.array(class_of, dtype=object)
    findings = []

    bad, _, _ = check_files(paths, frame=frame)
    bad_reason = dict(bad)
    for path, reason in bad:
        where = [i for i, p in enumerate(paths) if p == path]
        findings.append(
            Finding("unreadable", WARNING, (path,), _unique(part_of[where]), _unique(class_of[where]), reason)
        )
    good = [i for i, p in enumerate(paths) if p not in bad_reason]

    digests, thumbnails, spreads = {}, np.zeros((len(paths), 32, 32)), np.zeros(len(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        read = pool.map(lambda i: (i, _read(paths[i], frame)), good, chunksize=16)
        for i, (digest, thumbnail, spread) in progress(read, total=len(good), desc="auditing", unit="image"):
            digests.setdefault(digest, []).append(i)
            thumbnails[i], spreads[i] = thumbnail, spread
    good = np.array(sorted(good), dtype=np.int64)

    same_picture = np.arange(len(paths))
    for members in digests.values():
        same_picture[members] = members[0]
        if len(set(paths[i] for i in members)) < 2:
            continue  # one file listed twice is the same file, found by the patient and path checks
        findings += _duplicate_findings(members, paths, part_of, class_of)

    for i in good:
        if spreads[i] < EMPTY_STD:
            findings.append(
                Finding(
                    "empty_image",
                    WARNING,
                    (paths[i],),
                    (part_of[i],),
                    (class_of[i],),
                    f"the pixels' standard deviation is {spreads[i]:.2f} grey levels (below {EMPTY_STD:g})",
                )
            )

    if len(good):
        hashes = perceptual_hashes(thumbnails[good])
        gp, gc, gs = part_of[good], class_of[good], same_picture[good]
        pairs = near_pairs(
            hashes, near_distance, keep=lambda i, j: ((gp[i] != gp[j]) | (gc[i] != gc[j])) & (gs[i] != gs[j])
        )
        if len(pairs):
            findings += _near_findings(good[pairs], hashes, good, paths, part_of, class_of)

    findings += _patient_leaks(paths, part_of, class_of, patient_of)
    order = {kind: k for k, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.severity != ERROR, order[f.kind], f.paths))
    return AuditReport(findings, counts, time.perf_counter() - start, near_distance, len(paths))


def _unique(values) -> tuple:
    return tuple(sorted({str(v) for v in values}))


def _duplicate_findings(members, paths, part_of, class_of) -> list:
    parts, classes = _unique(part_of[members]), _unique(class_of[members])
    files = tuple(paths[i] for i in members)
    found = [
        Finding(
            "duplicate",
            ERROR if len(parts) > 1 else WARNING,
            files,
            parts,
            classes,
            f"{len(files)} files with the same decoded pixels"
            + (f", in parts {' and '.join(parts)}" if len(parts) > 1 else ""),
        )
    ]
    if len(classes) > 1:
        found.append(
            Finding(
                "label_conflict",
                ERROR,
                files,
                parts,
                classes,
                f"the same image filed under {' and '.join(classes)}",
            )
        )
    return found


def _near_findings(pairs, hashes, good, paths, part_of, class_of) -> list:
    """One finding per group of near duplicates joined by pairs across parts or classes."""
    involved = np.unique(pairs)
    index = {int(i): k for k, i in enumerate(involved)}
    roots = _union_find(len(involved), [(index[int(a)], index[int(b)]) for a, b in pairs])
    position = {int(g): k for k, g in enumerate(good)}
    found = []
    for root in np.unique(roots):
        members = [int(i) for i in involved[roots == root]]
        distances = [
            int(np.bitwise_count(hashes[position[int(a)]] ^ hashes[position[int(b)]]))
            for a, b in pairs
            if int(a) in members
        ]
        files = tuple(paths[i] for i in members)
        parts, classes = _unique(part_of[members]), _unique(class_of[members])
        how = f"perceptual hashes {min(distances)}–{max(distances)} of 64 bits apart" if distances else ""
        if len(parts) > 1:
            found.append(
                Finding(
                    "near_duplicate",
                    ERROR,
                    files,
                    parts,
                    classes,
                    f"the same picture, altered, in parts {' and '.join(parts)} ({how})",
                )
            )
        if len(classes) > 1:
            found.append(
                Finding(
                    "label_conflict",
                    ERROR,
                    files,
                    parts,
                    classes,
                    f"near duplicates filed under {' and '.join(classes)} ({how})",
                )
            )
    return found


def _patient_leaks(paths, part_of, class_of, patient_of) -> list:
    where: dict = {}
    for i, patient in enumerate(patient_of):
        if patient is not None:
            where.setdefault(patient, []).append(i)
    found = []
    for patient, members in sorted(where.items()):
        parts = _unique(part_of[members])
        if len(parts) > 1:
            found.append(
                Finding(
                    "patient_leak",
                    ERROR,
                    tuple(paths[i] for i in members),
                    parts,
                    _unique(class_of[members]),
                    f"patient {patient} has images in parts {' and '.join(parts)}",
                )
            )
    return found

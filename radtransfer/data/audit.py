"""The data audit: what in a data set would make its test figures wrong, found before any training.

Each image is decoded once (Pillow, or the DICOM renderer the pipeline uses) into four facts: a hash of its
decoded pixels (so the same picture saved as PNG and as BMP, or re-saved with other file bytes, is one image),
a 64-bit perceptual hash (pHash: the signs of the 8×8 lowest frequencies of the DCT of a 32×32 grey thumbnail
against their median, the algorithm of ImageHash's ``phash``, computed here with scipy over a batch so no
further dependency is needed), a 48×48 grey thumbnail (blurred by one pixel, standardized), and the spread
of its grey levels.

Near duplicates are found in three stages. Candidates are the pairs whose perceptual hashes differ in at most
``near_distance`` bits (every pair is compared, XOR and a bit count in blocks, so nothing is missed by
bucketing). The hash alone cannot tell same-anatomy images apart: on the synthetic brain MRI set, slices of
different patients fall within 6 bits of each other in about 0.3-0.6% of pairs. A candidate whose blurred 48×48
thumbnails correlate at ``near_correlation`` or more is then read again and compared at full size (the smaller
image's, halved, at most 128 pixels a side; blurred by 0.75 pixels only below 96, where resampling kernels differ
most); from ``confirm_correlation`` it is a near duplicate. The thumbnails clear almost every pair of different
patients (they correlate up to 0.994 among 240 slices, while the same slice re-encoded as JPEG q50, resized
0.5-2×, brightness- and contrast-shifted or gamma-changed correlates 0.997-1.000); the full-size comparison
clears the patients the synthetic generator made alike, which a set of 100,000 slices holds by the hundred
(up to 0.991 at 128 pixels, against 0.996-1.000 for the altered copies), by the fine detail (here, the noise) a
copy keeps and a different patient does not (benchmarks/audit_near_duplicates.py, figures in
docs/performance.md). Not found: crops. A 2-7% crop moves the hash 8-22 bits, and even aligned (scale and
shift fitted) a crop correlates with its source no better than two different patients' slices do; finding
crops needs local features (keypoints matched under a geometric model), which this module does not do.

Findings (``Finding.kind``): ``duplicate``, ``near_duplicate``, ``label_conflict``, ``patient_leak``,
``empty_image`` and ``unreadable``. Duplicates and near duplicates across parts, label conflicts and patient
leaks are errors; the rest warnings. Near duplicates within one part and one class are not findings: a
patient's neighbouring slices look alike, and a split by patient keeps them together.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataAuditError
from ..utils.io import write_json_atomic
from ..utils.progress import progress
from .decode import check_files, is_dicom
from .imageset import ImageSet

AUDIT_FILE = "audit.json"  # the audit's findings, in a run or grid folder
KINDS = ("duplicate", "near_duplicate", "label_conflict", "patient_leak", "empty_image", "unreadable")
ERROR, WARNING = "error", "warning"
EMPTY_STD = 1.0  # grey levels (0-255 scale): below this an image is constant or nearly so
NEAR_DISTANCE = 6  # bits of 64: perceptual hashes this close make a candidate pair
NEAR_CORRELATION = 0.995  # thumbnail correlation from which a candidate is checked at full size
CONFIRM_CORRELATION = 0.994  # correlation at up to CONFIRM_SIDE pixels from which it is a near duplicate
CONFIRM_SIDE = 128  # compared at half the smaller image's side, at most this
CONFIRM_BLUR = 0.75  # pixels of blur below SHARP_SIDE (where resampling kernels differ most), none from it
SHARP_SIDE = 96
THUMB = 48  # the side of the thumbnail a candidate is verified on (blurred by THUMB_BLUR pixels)
THUMB_BLUR = 1.0


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
    near_correlation: float = NEAR_CORRELATION
    candidates: int = 0  # pairs whose perceptual hashes were close enough to compare their thumbnails
    compared_full_size: int = 0  # candidates whose thumbnails were close enough to compare at full size

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
        """Writes ``to_json()`` to ``path`` (atomically), e.g. a run folder's ``AUDIT_FILE``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())
        return path

    def raise_if_errors(self, where: str, written=None) -> None:
        """Raises DataAuditError when the audit found errors; ``where`` names the data, ``written`` its JSON."""
        if self.errors:
            listed = f"listed in {written}" if written else "listed by report.table()"
            raise DataAuditError(
                f"The data audit found {self.summary()} in {where} ({listed}): fix the data, or train without "
                "audit='strict' (command line: --strict).",
                self,
            )

    def summary(self) -> str:
        """One line: errors and warnings by kind."""

        def kinds(findings):
            tally = Counter(f.kind for f in findings)
            return ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()))

        text = f"{len(self.errors)} error(s)" + (f" ({kinds(self.errors)})" if self.errors else "")
        text += f", {len(self.warnings)} warning(s)" + (f" ({kinds(self.warnings)})" if self.warnings else "")
        return text + f" in {self.images} images"

    def table(self, max_rows: int = 50) -> str:
        """The counts per part, the summary and one line per finding, errors first, as plain text."""
        lines = ["part     images  patients  classes"]
        width = max([8, *(len(name) for name in self.counts)])
        for name, count in self.counts.items():
            patients = "-" if count["patients"] is None else str(count["patients"])
            classes = ", ".join(f"{c} {n}" for c, n in count["classes"].items())
            lines.append(f"{name:<{width}} {count['images']:>6}  {patients:>8}  {classes}")
        lines.append(f"{self.summary()} ({self.seconds:.1f} s)")
        return "\n".join(lines + self.finding_lines(max_rows))

    def finding_lines(self, max_rows: int = 50) -> list:
        """One line per finding, errors first, at most ``max_rows`` (then how many more)."""
        ordered = self.errors + self.warnings
        lines = []
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
        return lines


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


def _thumbnails(grey: np.ndarray) -> tuple:
    """(32x32 thumbnail for the perceptual hash, blurred and standardized THUMB x THUMB thumbnail, flattened,
    float16)."""
    from PIL import Image

    image = Image.fromarray(grey, mode="F")
    small = np.asarray(image.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    from scipy.ndimage import gaussian_filter

    large = np.asarray(image.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float64)
    large = gaussian_filter(large, THUMB_BLUR).ravel()
    large = large - large.mean()
    norm = np.linalg.norm(large)
    return small, (large / norm if norm > 0 else large).astype(np.float16)


def _read(path: str, frame) -> tuple:
    """(pixel hash, perceptual hash, standardized 48x48 thumbnail, grey-level SD) of one image."""
    array = np.ascontiguousarray(_pixels(path, frame))
    digest = hashlib.sha256(f"{array.shape}{array.dtype.str}".encode() + array.tobytes()).hexdigest()
    grey = _grey(array)
    small, large = _thumbnails(grey)
    return digest, perceptual_hashes(small[None])[0], large, float(grey.std())


def full_size_correlation(path_a: str, path_b: str, frame) -> float:
    """The correlation of two images at half the smaller one's size (at most CONFIRM_SIDE pixels a side; below
    SHARP_SIDE pixels each blurred by CONFIRM_BLUR pixels): a re-encoded or resized copy keeps the fine detail
    that tells two patients of the same anatomy apart."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    greys = [_grey(np.ascontiguousarray(_pixels(p, frame))) for p in (path_a, path_b)]
    side = max(8, min(CONFIRM_SIDE, *(min(g.shape) // 2 for g in greys)))
    vectors = []
    for grey in greys:
        small = np.asarray(Image.fromarray(grey, mode="F").resize((side, side), Image.Resampling.BOX), np.float64)
        small = (gaussian_filter(small, CONFIRM_BLUR) if side < SHARP_SIDE else small).ravel()
        small -= small.mean()
        norm = np.linalg.norm(small)
        vectors.append(small / norm if norm > 0 else small)
    return float(vectors[0] @ vectors[1])


def thumbnail_correlations(vectors: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The correlation of the standardized thumbnails of each pair (rows of ``pairs``), in chunks."""
    out = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), chunk):
        i, j = pairs[start : start + chunk, 0], pairs[start : start + chunk, 1]
        a = vectors[i].astype(np.float32)
        a *= vectors[j]
        out[start : start + chunk] = a.sum(axis=1)
    return out


def perceptual_hashes(thumbnails: np.ndarray) -> np.ndarray:
    """64-bit pHashes (uint64) of a batch of 32x32 thumbnails: the 8x8 lowest DCT frequencies above their median."""
    from scipy.fft import dct

    coefficients = dct(dct(thumbnails, axis=-1, type=2), axis=-2, type=2)[:, :8, :8].reshape(len(thumbnails), 64)
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel()


_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _popcount(words) -> np.ndarray:
    """Set bits of each uint64 (``np.bitwise_count`` on NumPy 2, a byte table on NumPy 1)."""
    words = np.asarray(words, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_BITS[words[..., None].view(np.uint8)].sum(axis=-1, dtype=np.uint8)


def near_pairs(hashes: np.ndarray, distance: int, keep=None, block: int = 256) -> np.ndarray:
    """Every pair (i, j), i < j, whose hashes differ in at most ``distance`` bits and for which ``keep(i, j)``
    (vectorised: arrays of i and j) is true, as an (n, 2) array."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block, None]
        later = hashes[start + 1 :]
        close = _popcount(rows ^ later[None, :]) <= distance
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


@dataclass
class ImageFacts:
    """What the audit reads of each file, once: pixel hash, perceptual hash, thumbnail, grey-level spread."""

    row: dict  # path -> row of the arrays
    digests: list
    hashes: np.ndarray
    vectors: np.ndarray
    spreads: np.ndarray
    bad: dict  # path -> why it cannot be read

    @classmethod
    def read(cls, paths, frame="middle", workers: int = 4) -> "ImageFacts":
        unique = list(dict.fromkeys(str(p) for p in paths))
        bad, _, _ = check_files(unique, frame=frame)
        bad = dict(bad)
        good = [p for p in unique if p not in bad]
        digests = [""] * len(good)
        hashes = np.zeros(len(good), dtype=np.uint64)
        vectors = np.zeros((len(good), THUMB * THUMB), dtype=np.float16)
        spreads = np.zeros(len(good))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            read = pool.map(lambda k: (k, _read(good[k], frame)), range(len(good)), chunksize=16)
            for k, (digest, phash, vector, spread) in progress(read, total=len(good), desc="auditing", unit="image"):
                digests[k], hashes[k], vectors[k], spreads[k] = digest, phash, vector, spread
        return cls({p: k for k, p in enumerate(good)}, digests, hashes, vectors, spreads, bad)


def audit_splits(splits, **kwargs) -> AuditReport:
    """One audit of several (train, val, test) splits of the same images (a k-fold plan), reading every image
    once. With more than one split, each finding's parts and each count are named ``fold<k>:<part>``.

    Args:
        splits: a list of (train, val, test) ImageSets, e.g. ``list(image_set.kfold(5))``.
        **kwargs: ``audit``'s thresholds, ``frame`` and ``workers``.
    """
    start = time.perf_counter()
    splits = [dict(zip(("train", "val", "test"), split)) if not isinstance(split, dict) else split for split in splits]
    paths = [str(p) for split in splits for part in split.values() for p in part.paths]
    facts = ImageFacts.read(paths, kwargs.get("frame", "middle"), kwargs.get("workers", 4))
    reports = [audit(split, _facts=facts, **kwargs) for split in splits]
    if len(reports) == 1:
        reports[0].seconds = time.perf_counter() - start
        return reports[0]
    findings, counts = [], {}
    for k, report in enumerate(reports, 1):
        findings += [replace(f, parts=tuple(f"fold{k}:{p}" for p in f.parts)) for f in report.findings]
        counts.update({f"fold{k}:{name}": count for name, count in report.counts.items()})
    first = reports[0]
    return AuditReport(
        findings,
        counts,
        time.perf_counter() - start,
        first.near_distance,
        len(facts.row) + len(facts.bad),
        first.near_correlation,
        sum(r.candidates for r in reports),
        sum(r.compared_full_size for r in reports),
    )


def audit_folds(image_set: ImageSet, k: int = 5, *, seed: int = 726, val: float = 0.10, by: str = "patient", **kwargs):
    """The audit of each of ``image_set.kfold(k, ...)``'s folds (train, val, test), reading every image once.

    Args:
        image_set: the images the folds are drawn from.
        k, seed, val, by: as ``ImageSet.kfold``; give the values the grid uses to audit its folds.
        **kwargs: ``audit``'s thresholds, ``frame`` and ``workers``.

    Returns:
        One AuditReport per fold, in fold order.
    """
    facts = ImageFacts.read(image_set.paths, kwargs.get("frame", "middle"), kwargs.get("workers", 4))
    return [
        audit({"train": train, "val": fold_val, "test": test}, _facts=facts, **kwargs)
        for train, fold_val, test in image_set.kfold(k, by=by, seed=seed, val=val)
    ]


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


def audit(
    images_or_parts,
    near_distance: int = NEAR_DISTANCE,
    near_correlation: float = NEAR_CORRELATION,
    confirm_correlation: float = CONFIRM_CORRELATION,
    frame="middle",
    workers: int = 4,
    _facts=None,
) -> AuditReport:
    """Audits a data set before training: duplicates, near duplicates, label conflicts, patient leaks, empty and
    unreadable images.

    Args:
        images_or_parts: an ImageSet, a dict of named parts (e.g. ``{"train": ..., "val": ..., "test": ...}``),
            or ``(train, val, test)``.
        near_distance: the most bits (of 64) two perceptual hashes may differ in for a candidate pair.
        near_correlation: the correlation of two 48x48 grey thumbnails from which a candidate is compared at
            full size.
        confirm_correlation: the correlation at full size (half the smaller image's side, at most 128 pixels)
            from which a candidate is a near duplicate.
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
    facts = _facts if _facts is not None else ImageFacts.read(paths, frame, workers)
    row = np.array([facts.row.get(p, -1) for p in paths], dtype=np.int64)
    findings = []

    for path, reason in facts.bad.items():
        where = [i for i, p in enumerate(paths) if p == path]
        if where:
            findings.append(
                Finding("unreadable", WARNING, (path,), _unique(part_of[where]), _unique(class_of[where]), reason)
            )
    good = np.flatnonzero(row >= 0)
    digests: dict = {}
    for i in good:
        digests.setdefault(facts.digests[row[i]], []).append(int(i))
    hashes, vectors, spreads = facts.hashes, facts.vectors, facts.spreads

    same_picture = np.arange(len(paths))
    for members in digests.values():
        same_picture[members] = members[0]
        if len(set(paths[i] for i in members)) < 2:
            continue  # one file listed twice is the same file, found by the patient and path checks
        findings += _duplicate_findings(members, paths, part_of, class_of)

    for i in good:
        if spreads[row[i]] < EMPTY_STD:
            findings.append(
                Finding(
                    "empty_image",
                    WARNING,
                    (paths[i],),
                    (part_of[i],),
                    (class_of[i],),
                    f"the pixels' standard deviation is {spreads[row[i]]:.2f} grey levels (below {EMPTY_STD:g})",
                )
            )

    candidates = compared = 0
    # Near duplicates are searched among one image per set of same pixels; a pair is a finding when it joins
    # parts (or classes) that neither side's exact duplicates already span (those are duplicate findings).
    representatives = np.array(sorted({int(same_picture[i]) for i in good}), dtype=np.int64)
    spans_part, spans_class = {}, {}
    for i in good:
        spans_part.setdefault(int(same_picture[i]), set()).add(part_of[i])
        spans_class.setdefault(int(same_picture[i]), set()).add(class_of[i])
    if len(representatives):
        hashes = hashes[row[representatives]]
        keys = [frozenset(spans_part[int(r)]) for r in representatives]
        class_keys = [frozenset(spans_class[int(r)]) for r in representatives]
        part_code = np.array([hash(k) for k in keys])
        class_code = np.array([hash(k) for k in class_keys])
        pairs = near_pairs(
            hashes,
            near_distance,
            keep=lambda i, j: (part_code[i] != part_code[j]) | (class_code[i] != class_code[j]),
        )
        # Most images span one part and one class, where differing codes already mean a join.
        spread = np.array([len(k) > 1 or len(c) > 1 for k, c in zip(keys, class_keys)])
        check = spread[pairs[:, 0]] | spread[pairs[:, 1]] if len(pairs) else np.zeros(0, dtype=bool)
        keep = ~check
        for k in np.flatnonzero(check):
            i, j = pairs[k]
            keep[k] = _joins(keys[i], keys[j]) or _joins(class_keys[i], class_keys[j])
        pairs = pairs[keep]
        candidates = len(pairs)
        if len(pairs):
            pairs = representatives[pairs]
            correlations = thumbnail_correlations(vectors, row[pairs])
            close = correlations >= near_correlation
            pairs = pairs[close]
            compared = len(pairs)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                confirmed = np.array(
                    list(pool.map(lambda pair: full_size_correlation(paths[pair[0]], paths[pair[1]], frame), pairs)),
                    dtype=np.float32,
                ).reshape(-1)
            close = confirmed >= confirm_correlation
            pairs, correlations = pairs[close], confirmed[close]
        if len(pairs):
            findings += _near_findings(pairs, correlations, hashes, representatives, paths, part_of, class_of)

    findings += _patient_leaks(paths, part_of, class_of, patient_of)
    order = {kind: k for k, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.severity != ERROR, order[f.kind], f.paths))
    return AuditReport(
        findings, counts, time.perf_counter() - start, near_distance, len(paths), near_correlation, candidates, compared
    )


def _joins(a: frozenset, b: frozenset) -> bool:
    """Whether a pair of images spanning ``a`` and ``b`` spans more than either alone."""
    union = a | b
    return union != a and union != b


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
        found.append(_label_conflict(files, parts, classes, "the same image"))
    return found


def _label_conflict(files, parts, classes, what: str) -> Finding:
    return Finding("label_conflict", ERROR, files, parts, classes, f"{what} filed under {' and '.join(classes)}")


def _near_findings(pairs, correlations, hashes, good, paths, part_of, class_of) -> list:
    """One finding per group of near duplicates joined by pairs across parts or classes."""
    involved = np.unique(pairs)
    index = {int(i): k for k, i in enumerate(involved)}
    roots = _union_find(len(involved), [(index[int(a)], index[int(b)]) for a, b in pairs])
    position = {int(g): k for k, g in enumerate(good)}
    pair_root = roots[[index[int(a)] for a in pairs[:, 0]]]  # each pair's group, found once
    found = []
    for root in np.unique(roots):
        members = [int(i) for i in involved[roots == root]]
        inside = np.flatnonzero(pair_root == root)
        distances = [int(_popcount(hashes[position[int(a)]] ^ hashes[position[int(b)]])) for a, b in pairs[inside]]
        low = float(correlations[inside].min()) if len(inside) else float("nan")
        files = tuple(paths[i] for i in members)
        parts, classes = _unique(part_of[members]), _unique(class_of[members])
        how = (
            f"perceptual hashes {min(distances)}-{max(distances)} of 64 bits apart, correlated "
            f"{low:.3f} or more at full size"
            if distances
            else ""
        )
        if len(parts) > 1:
            found.append(
                Finding(
                    "near_duplicate",
                    ERROR,
                    files,
                    parts,
                    classes,
                    f"near-identical pictures in parts {' and '.join(parts)} (the same picture re-encoded, resized or "
                    f"with its grey levels changed, or neighbouring slices of one patient): {how}",
                )
            )
        if len(classes) > 1:
            found.append(_label_conflict(files, parts, classes, f"near duplicates ({how})"))
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

"""The data audit: what in a data set would make its test figures wrong, found before any training.

Each image, a file (decoded once, by Pillow or the DICOM renderer the pipeline uses) or an image held in memory
(``from_tfds``, ``from_volumes``, ``ImageSet(images=...)``), gives four facts: a hash of its decoded pixels (so
the same picture saved as PNG and as BMP, or re-saved with other file bytes, is one image), the 64-bit perceptual
hashes of its 8 orientations (pHash: the signs of the 8×8 lowest frequencies of the DCT of a 32×32 grey thumbnail
against their median, the algorithm of ImageHash's ``phash``, computed here with scipy so no further dependency is
needed; a flip or a rotation by a multiple of 90° is a sign and transposition pattern of the same coefficients, so
one DCT gives all 8), a 48×48 grey thumbnail (blurred by one pixel, standardized, stored as int16), and the spread
of its grey levels on the 0-255 scale the pipeline gives it (a 16-bit PNG stretched from its own range by
default).

An entry is a file path, or an in-memory image (one array, or one region of a stacked array, as the parts of a
split share them): one entry listed twice is a duplicate whatever its pixels, an error across parts.

Near duplicates are found in three stages. Candidates are the pairs whose perceptual hashes differ in at most
``near_distance`` bits, the second image in any of its 8 orientations (``near_pairs``: multi-index hashing, exact,
so nothing is missed by bucketing). The hash alone cannot tell same-anatomy images apart: on the synthetic brain
MRI set, slices of different patients fall within 6 bits of each other in 0.1-0.3% of pairs as stored and
0.7% in some orientation (a head is nearly symmetric). A candidate whose blurred 48×48 thumbnails correlate at
``near_correlation`` or more (the second turned to match) is then read again and compared at full size, in the
same orientation (the smaller image's size, halved, at most 128 pixels a side; blurred by 0.75 pixels only below
96, where resampling kernels differ most); from ``confirm_correlation`` it is a near duplicate, and a turned pair
is named as such (``b.png is a horizontally flipped copy of a.png``). The thumbnails clear almost every pair of
different patients (they correlate up to 0.995 among 240 slices in any orientation, while the same slice
re-encoded as JPEG q50, resized 0.5-2×, brightness- and contrast-shifted, gamma-changed, flipped or rotated
correlates 0.997-1.000); the full-size comparison clears the patients the synthetic generator made alike, which a
set of 100,000 slices holds by the hundred (up to 0.991 at 128 pixels, against 0.996-1.000 for the altered
copies), by the fine detail (here, the noise) a copy keeps and a different patient does not
(benchmarks/audit_near_duplicates.py, figures in docs/performance.md). Not found: crops, and rotations by other
angles. A 2-7% crop moves the hash 8-22 bits, and even aligned (scale and shift fitted) a crop correlates with its
source no better than two different patients' slices do; finding crops needs local features (keypoints matched
under a geometric model), which this module does not do.

Findings (``Finding.kind``): ``duplicate``, ``near_duplicate``, ``label_conflict``, ``patient_leak``,
``empty_image`` and ``unreadable`` (files only). Duplicates and near duplicates across parts, label conflicts,
patient leaks and unreadable (or missing) files are errors; the rest warnings. An audit is a gate: one whose files
cannot be read has audited nothing, so it must not pass (``radtransfer audit`` exits 1). Near duplicates within one
part and one class are not findings: a patient's neighbouring slices look alike, and a split by patient keeps them
together. Findings name files by path and in-memory images by ``ImageSet.image_names``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataAuditError
from ..utils.choices import check_choice
from ..utils.progress import progress
from .adapters import KINDS as INPUT_KINDS
from .adapters import kind_of
from .audit_findings import (
    AUDIT_FILE,
    ERROR,
    KINDS,
    WARNING,
    AuditReport,
    Finding,
    _duplicate_findings,
    _joins,
    _near_findings,
    _patient_leaks,
    _unique,
)
from .audit_images import (
    CONFIRM_BLUR,
    CONFIRM_CORRELATION,
    CONFIRM_SIDE,
    NEAR_CORRELATION,
    NEAR_DISTANCE,
    ORIENTATIONS,
    SHARP_SIDE,
    THUMB,
    THUMB_BLUR,
    _popcount,
    _read,
    _Reading,
    full_size_correlation,
    near_pairs,
    oriented,
    oriented_hashes,
    perceptual_hashes,
    thumbnail_correlations,
)
from .decode import check_files
from .imageset import ImageSet

__all__ = [  # what this module offered before its reading and findings moved out (audit_images, audit_findings)
    "AUDIT_FILE",
    "CONFIRM_BLUR",
    "CONFIRM_CORRELATION",
    "CONFIRM_SIDE",
    "DataAuditError",
    "EMPTY_STD",
    "ERROR",
    "KINDS",
    "NEAR_CORRELATION",
    "NEAR_DISTANCE",
    "ORIENTATIONS",
    "SHARP_SIDE",
    "THUMB",
    "THUMB_BLUR",
    "WARNING",
    "AuditReport",
    "Finding",
    "ImageFacts",
    "audit",
    "audit_folds",
    "audit_splits",
    "full_size_correlation",
    "near_pairs",
    "oriented",
    "oriented_hashes",
    "perceptual_hashes",
    "thumbnail_correlations",
]

EMPTY_STD = 1.0  # grey levels (0-255 scale): below this an image is constant or nearly so
_AS_PIPELINE = _Reading()  # the pipeline's defaults


# -- the audit ---------------------------------------------------------------------------------------------------


def _memory_key(image):
    """What makes two in-memory entries one image listed twice: the same pixels in memory (one array, or views of
    one region, as a set's parts share them), not merely equal pixels."""
    if isinstance(image, np.ndarray):
        return ("in memory", image.__array_interface__["data"][0], image.shape, image.strides, image.dtype.str)
    return ("object", id(image))


def _entries(part: ImageSet) -> tuple:
    """(keys, names, sources) of a part's images: a file's key, name and source are its path; an in-memory image's
    key is ``_memory_key``, its name ``ImageSet.image_names``' and its source the array."""
    if part.paths is not None:
        paths = [str(p) for p in part.paths]
        return paths, paths, paths
    images = list(part.images)
    return [_memory_key(image) for image in images], part.image_names(), images


@dataclass
class ImageFacts:
    """What the audit reads of each image, once: pixel hash, perceptual hashes, thumbnail, grey-level spread."""

    row: dict  # key (a path, or an in-memory image's _memory_key) -> row of the arrays
    digests: list
    hashes: np.ndarray  # (n, 8): the perceptual hash of each orientation
    vectors: np.ndarray  # int16 thumbnails (``_quantized``)
    scales: np.ndarray
    spreads: np.ndarray
    bad: dict  # path -> why it cannot be read

    @classmethod
    def read(cls, sources: dict, reading: _Reading = _AS_PIPELINE, workers: int = 4) -> "ImageFacts":
        """Reads ``sources`` ({key: path or in-memory image}); files that cannot be decoded go to ``bad``."""
        files = [key for key, source in sources.items() if isinstance(source, str)]
        bad = dict(check_files(files, frame=reading.frame)[0]) if files else {}
        good = [key for key in sources if key not in bad]
        digests = [""] * len(good)
        hashes = np.zeros((len(good), len(ORIENTATIONS)), dtype=np.uint64)
        vectors = np.zeros((len(good), THUMB * THUMB), dtype=np.int16)
        scales = np.ones(len(good))
        spreads = np.zeros(len(good))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            read = pool.map(lambda k: (k, _read(sources[good[k]], reading)), range(len(good)), chunksize=16)
            for k, (digest, phash, vector, spread) in progress(read, total=len(good), desc="auditing", unit="image"):
                digests[k], hashes[k], (vectors[k], scales[k]), spreads[k] = digest, phash, vector, spread
        return cls({key: k for k, key in enumerate(good)}, digests, hashes, vectors, scales, spreads, bad)


def _reading(kwargs) -> _Reading:
    return _Reading(kwargs.get("frame", "middle"), kwargs.get("sixteen_bit", "range"), kwargs.get("dicom_window"))


def audit_splits(splits, **kwargs) -> AuditReport:
    """One audit of several (train, val, test) splits of the same images (a k-fold plan), reading every image
    once. With more than one split, each finding's parts and each count are named ``fold<k>:<part>``.

    Args:
        splits: a list of (train, val, test) ImageSets, e.g. ``list(image_set.kfold(5))``; files or in-memory
            images.
        **kwargs: ``audit``'s thresholds, read settings (``frame``, ``sixteen_bit``, ``dicom_window``) and
            ``workers``.
    """
    start = time.perf_counter()
    splits = [dict(zip(("train", "val", "test"), split)) if not isinstance(split, dict) else split for split in splits]
    sources = {}
    for split in splits:
        for name, part in _as_parts(split).items():
            keys, _, images = _entries(part)
            sources.update(zip(keys, images))
    facts = ImageFacts.read(sources, _reading(kwargs), kwargs.get("workers", 4))
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
        image_set: the images the folds are drawn from (files or in-memory images; an in-memory image is named
            by its index in this set, ``#17``, unless it has a name, see ``ImageSet.image_names``).
        k, seed, val, by: as ``ImageSet.kfold``; give the values the grid uses to audit its folds.
        **kwargs: ``audit``'s thresholds, read settings (``frame``, ``sixteen_bit``, ``dicom_window``) and
            ``workers``.

    Returns:
        One AuditReport per fold, in fold order.
    """
    keys, _, images = _entries(_as_parts(image_set)["all"])
    facts = ImageFacts.read(dict(zip(keys, images)), _reading(kwargs), kwargs.get("workers", 4))
    return [
        audit({"train": train, "val": fold_val, "test": test}, _facts=facts, **kwargs)
        for train, fold_val, test in image_set.kfold(k, by=by, seed=seed, val=val)
    ]


def _as_parts(images_or_parts) -> dict:
    if isinstance(images_or_parts, ImageSet):
        return {"all": images_or_parts}
    if isinstance(images_or_parts, dict):
        parts = dict(images_or_parts)
    elif (
        isinstance(images_or_parts, (list, tuple))
        and len(images_or_parts) in (2, 3)
        and kind_of(images_or_parts) != "arrays"
    ):
        parts = dict(zip(("train", "val", "test"), images_or_parts))
    else:
        parts = {"": images_or_parts}
    for name, part in parts.items():
        if not isinstance(part, ImageSet):
            what = INPUT_KINDS.get(kind_of(part), f"a {type(part).__name__}")
            raise TypeError(
                f"audit() reads ImageSets (one, a dict of named parts, or (train, val[, test])); "
                f"{f'part {name!r} is' if name else 'received'} {what}, whose images cannot be traced to their "
                "files or patients. Pass the ImageSet it was read from, or data.ImageSet(images=..., labels=..., "
                "patient_ids=...) for arrays."
            )
    return parts


def audit(
    images_or_parts,
    near_distance: int = NEAR_DISTANCE,
    near_correlation: float = NEAR_CORRELATION,
    confirm_correlation: float = CONFIRM_CORRELATION,
    frame="middle",
    workers: int = 4,
    sixteen_bit: str = "range",
    dicom_window=None,
    _facts=None,
) -> AuditReport:
    """Audits a data set before training: duplicates (an image listed twice, or the same pixels twice), near
    duplicates (also flipped or rotated by 90°, 180° or 270°), label conflicts, patient leaks, empty and
    unreadable images.

    Files and in-memory images (``from_tfds``, ``from_volumes``, ``ImageSet(images=...)``) are audited alike,
    but for ``unreadable``, which only files can be; findings name in-memory images by ``ImageSet.image_names``.

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
        sixteen_bit: how the pipeline maps 16-bit PNGs to 0-255 ("range", its default, or "full", as
            ``make_dataset``'s): an image is empty when it is nearly constant on that scale.
        dicom_window: the (center, width) the pipeline reads DICOM files with (default: the file's own).

    Returns:
        An AuditReport: ``findings`` (``report.to_json()`` is the list of
        ``{"kind", "severity", "paths", "parts", "classes", "detail"}``), ``errors``, ``warnings`` and the
        class and patient counts per part (``counts``; ``report.table()`` prints them).
    """
    start = time.perf_counter()
    check_choice("sixteen_bit", sixteen_bit, ("range", "full"))
    reading = _Reading(frame, sixteen_bit, None if dicom_window is None else tuple(dicom_window))
    entries = _Entries.of(_as_parts(images_or_parts))
    facts = _facts if _facts is not None else ImageFacts.read(entries.sources, reading, workers)
    row = np.array([facts.row.get(key, -1) for key in entries.keys], dtype=np.int64)
    good = np.flatnonzero(row >= 0)
    findings = _unreadable(entries, facts)
    same_picture, duplicates = _same_pixels(entries, facts, row, good)
    findings += duplicates + _empty_images(entries, facts, row, good)
    search = _NearSearch(near_distance, near_correlation, confirm_correlation, reading, workers)
    near, candidates, compared = _near_duplicates(entries, facts, row, good, same_picture, search)
    findings += near + _patient_leaks(entries.names, entries.part_of, entries.class_of, entries.patient_of)
    order = {kind: k for k, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.severity != ERROR, order[f.kind], f.paths))
    return AuditReport(
        findings,
        entries.counts,
        time.perf_counter() - start,
        near_distance,
        len(entries.keys),
        near_correlation,
        candidates,
        compared,
    )


# -- the audit's steps -------------------------------------------------------------------------------------------


def _class_names_of(part) -> list:
    """Each image's class; a multi-label image's labels joined by "|" ("" for none), so one image listed with two
    sets of labels is a label conflict."""
    if not part.multi_label:
        return [part.class_names[label] for label in part.labels]
    names = np.asarray(part.class_names, dtype=object)
    return ["|".join(names[np.asarray(row) == 1]) for row in part.labels]


@dataclass
class _Entries:
    """Every entry of the parts, in order: its key (a path, or ``_memory_key``), name, part, class and patient;
    the sources by key, where each key's entries are, and each part's counts."""

    keys: list
    names: list
    sources: dict  # key -> path or in-memory image
    part_of: np.ndarray
    class_of: np.ndarray
    patient_of: list
    counts: dict  # part -> {"images": n, "patients": n or None, "classes": {class: n}}
    listed: dict  # key -> its entries

    @classmethod
    def of(cls, parts: dict) -> "_Entries":
        keys, names, sources, part_of, class_of, patient_of = [], [], {}, [], [], []
        counts = {}
        for name, part in parts.items():
            part_keys, part_names, part_sources = _entries(part)
            keys += part_keys
            names += part_names
            sources.update(zip(part_keys, part_sources))
            part_of += [name] * len(part)
            class_of += _class_names_of(part)
            patient_of += list(part.patient_ids) if part.patient_ids is not None else [None] * len(part)
            per_class = (
                np.asarray(part.labels).sum(axis=0)
                if part.multi_label
                else np.bincount(part.labels, minlength=part.num_classes)
            )
            counts[name] = {
                "images": len(part),
                "patients": None if part.patient_ids is None else len(set(part.patient_ids)),
                "classes": {c: int(n) for c, n in zip(part.class_names, per_class)},
            }
        listed: dict = {}
        for i, key in enumerate(keys):
            listed.setdefault(key, []).append(i)
        part_of, class_of = np.array(part_of, dtype=object), np.array(class_of, dtype=object)
        return cls(keys, names, sources, part_of, class_of, patient_of, counts, listed)


def _unreadable(entries: _Entries, facts: ImageFacts) -> list:
    """An error per file that cannot be read (or is missing), and a duplicate finding when it is listed more than
    once."""
    findings = []
    for key, reason in facts.bad.items():
        where = entries.listed.get(key, [])
        if where:
            parts, classes = _unique(entries.part_of[where]), _unique(entries.class_of[where])
            findings.append(Finding("unreadable", ERROR, (entries.names[where[0]],), parts, classes, reason))
            if len(where) > 1:  # listed twice, whatever its pixels
                findings += _duplicate_findings(where, entries.keys, entries.names, entries.part_of, entries.class_of)
    return findings


def _same_pixels(entries: _Entries, facts: ImageFacts, row: np.ndarray, good: np.ndarray) -> tuple:
    """(the first entry with the same pixels as each entry, the findings of entries with the same pixels)."""
    digests: dict = {}
    for i in good:
        digests.setdefault(facts.digests[row[i]], []).append(int(i))
    same_picture = np.arange(len(entries.keys))
    findings = []
    for members in digests.values():
        same_picture[members] = members[0]
        if len(members) > 1:  # the same pixels in two images, or one image listed twice
            findings += _duplicate_findings(members, entries.keys, entries.names, entries.part_of, entries.class_of)
    return same_picture, findings


def _empty_images(entries: _Entries, facts: ImageFacts, row: np.ndarray, good: np.ndarray) -> list:
    """A warning per image whose grey levels spread less than EMPTY_STD (once however often it is listed)."""
    findings = []
    for i in good:
        spread = facts.spreads[row[i]]
        where = entries.listed[entries.keys[i]]
        if spread < EMPTY_STD and where[0] == i:
            findings.append(
                Finding(
                    "empty_image",
                    WARNING,
                    (entries.names[i],),
                    _unique(entries.part_of[where]),
                    _unique(entries.class_of[where]),
                    f"the pixels' standard deviation is {spread:.2f} grey levels on the 0-255 scale the "
                    f"pipeline gives them (below {EMPTY_STD:g})",
                )
            )
    return findings


@dataclass(frozen=True)
class _NearSearch:
    """The near-duplicate search's thresholds (``audit``'s), how it reads images again, and its threads."""

    distance: int
    correlation: float
    confirm: float
    reading: _Reading
    workers: int


def _near_duplicates(entries, facts, row, good, same_picture, search: _NearSearch) -> tuple:
    """(findings, candidates, compared at full size) of the near-duplicate search.

    Near duplicates are searched among one image per set of same pixels; a pair is a finding when it joins parts
    (or classes) that neither side's exact duplicates already span (those are duplicate findings).
    """
    representatives = np.array(sorted({int(same_picture[i]) for i in good}), dtype=np.int64)
    if not len(representatives):
        return [], 0, 0
    hashes = facts.hashes[row[representatives]]
    keep = _JoiningPairs(entries, facts, row, good, same_picture, representatives, search.correlation)
    triples = near_pairs(hashes, search.distance, keep)
    if not len(triples):
        return [], keep.tally, 0
    # each pair in the orientation its thumbnails agree best in
    pairs, turns = representatives[triples[:, :2]], triples[:, 2]
    correlations = thumbnail_correlations(facts.vectors, facts.scales, row[pairs], turns)
    best = np.lexsort((-correlations, triples[:, 1], triples[:, 0]))
    first = np.ones(len(best), dtype=bool)
    first[1:] = np.any(np.diff(triples[best, :2], axis=0) != 0, axis=1)
    best = best[first]
    pairs, turns, triples = pairs[best], turns[best], triples[best]
    confirmed = _full_size_correlations(entries, pairs, turns, search)
    close = confirmed >= search.confirm
    findings = []
    if close.any():
        distances = _popcount(hashes[triples[close, 0], 0] ^ hashes[triples[close, 1], turns[close]])
        findings = _near_findings(
            pairs[close], confirmed[close], distances, turns[close], entries.names, entries.part_of, entries.class_of
        )
    return findings, keep.tally, len(pairs)


class _JoiningPairs:
    """``near_pairs``' ``keep``: the pairs of representatives that join parts or classes and whose thumbnails (in
    the hashes' orientation) correlate at ``correlation`` or more; ``tally`` counts the pairs that join."""

    def __init__(self, entries, facts, row, good, same_picture, representatives, correlation: float):
        spans_part, spans_class = {}, {}
        for i in good:
            spans_part.setdefault(int(same_picture[i]), set()).add(entries.part_of[i])
            spans_class.setdefault(int(same_picture[i]), set()).add(entries.class_of[i])
        self.part_keys = [frozenset(spans_part[int(r)]) for r in representatives]
        self.class_keys = [frozenset(spans_class[int(r)]) for r in representatives]
        self.part_code = np.array([hash(k) for k in self.part_keys])
        self.class_code = np.array([hash(k) for k in self.class_keys])
        self.spread = np.array([len(k) > 1 or len(c) > 1 for k, c in zip(self.part_keys, self.class_keys)])
        self.facts, self.rows, self.correlation = facts, row[representatives], correlation
        self.tally = 0

    def __call__(self, i, j, t) -> np.ndarray:
        ok = (self.part_code[i] != self.part_code[j]) | (self.class_code[i] != self.class_code[j])
        for k in np.flatnonzero(ok & (self.spread[i] | self.spread[j])):  # most span one part and class
            ok[k] = _joins(self.part_keys[i[k]], self.part_keys[j[k]]) or _joins(
                self.class_keys[i[k]], self.class_keys[j[k]]
            )
        self.tally += int(ok.sum())
        close = np.zeros(len(ok), dtype=bool)
        if ok.any():
            pairs = self.rows[np.stack([i[ok], j[ok]], axis=1)]
            correlations = thumbnail_correlations(self.facts.vectors, self.facts.scales, pairs, t[ok])
            close[ok] = correlations >= self.correlation
        return close


def _full_size_correlations(entries: _Entries, pairs, turns, search: _NearSearch) -> np.ndarray:
    """Each pair's ``full_size_correlation``, the second image in ``ORIENTATIONS[turns[k]]``."""
    sources, keys, reading = entries.sources, entries.keys, search.reading

    def correlation(k):
        first, second = sources[keys[pairs[k, 0]]], sources[keys[pairs[k, 1]]]
        return full_size_correlation(first, second, reading.frame, int(turns[k]), reading.dicom_window)

    with ThreadPoolExecutor(max_workers=search.workers) as pool:
        return np.array(list(pool.map(correlation, range(len(pairs)))), dtype=np.float32).reshape(-1)

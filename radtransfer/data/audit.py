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
``empty_image`` and ``unreadable`` (files only). Duplicates and near duplicates across parts, label conflicts and
patient leaks are errors; the rest warnings. Near duplicates within one part and one class are not findings: a
patient's neighbouring slices look alike, and a split by patient keeps them together. Findings name files by path
and in-memory images by ``ImageSet.image_names``.
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
from ..utils.choices import check_choice
from ..utils.io import write_json_atomic
from ..utils.progress import progress
from .adapters import KINDS as INPUT_KINDS
from .adapters import kind_of
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
    candidates: int = 0  # (pair, orientation)s whose perceptual hashes were close enough to compare thumbnails
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

# The eight orientations of an image (the dihedral group of the square): a copy saved flipped or rotated is
# compared with its source in the orientation that undoes it. _FLIPS: the axes flipped after an optional transpose
# (orientations 4-7).
ORIENTATIONS = (
    "identity",
    "horizontally flipped",
    "vertically flipped",
    "rotated 180°",
    "transposed",
    "rotated 90° counterclockwise",
    "rotated 90° clockwise",
    "anti-transposed",
)
_FLIPS = ((), (-1,), (-2,), (-2, -1), (), (-2,), (-1,), (-2, -1))


def oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (an image in its last two axes, rows then columns) in ``ORIENTATIONS[orientation]``."""
    if orientation >= 4:
        array = np.swapaxes(array, -1, -2)
    flips = _FLIPS[orientation]
    return np.flip(array, flips) if flips else array


@dataclass(frozen=True)
class _Reading:
    """How the audit reads images, as the pipeline will: the DICOM frame and window, and how 16-bit PNGs map to
    0-255 (which decides whether an image is empty)."""

    frame: object = "middle"
    sixteen_bit: str = "range"
    dicom_window: tuple | None = None


def _pixels(source, reading: _Reading) -> np.ndarray:
    """The pixels as stored (8 or 16 bit; channels kept unless all equal) of a file, or of an in-memory image."""
    if not isinstance(source, str):
        array = np.asarray(source)
        if array.ndim == 3 and array.shape[2] in (2, 4):  # alpha dropped, as the pipeline drops it
            array = array[..., : array.shape[2] - 1]
    elif is_dicom(source):
        from .dicom import read_dicom

        array = read_dicom(source, window=reading.dicom_window, frame=reading.frame)
    else:
        from PIL import Image

        with Image.open(source) as image:
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
    """A float grey image in the pixels' own units (what the thumbnails and correlations need)."""
    grey = array.mean(axis=2) if array.ndim == 3 else array
    return grey.astype(np.float32)


def _spread(array: np.ndarray, grey: np.ndarray, in_memory: bool, sixteen_bit: str) -> float:
    """The SD of the grey levels on the 0-255 scale the pipeline gives the image: 8-bit as stored; a 16-bit file
    stretched from its own min..max (``sixteen_bit="range"``) or divided by 257 ("full"); an in-memory image of a
    wider type stretched from its own range, else clipped to 0..255 (data/pipeline.py's ``_as_uint8``)."""
    from .intensity import to_uint8

    if array.dtype == np.uint8:
        return float(grey.std())
    if in_memory:
        wide = array.dtype == np.uint16 or array.max() > 255 or array.min() < 0
        narrow = to_uint8(array, None if wide else (0, 255))
    elif sixteen_bit == "full":
        narrow = np.round(np.clip(array / 257.0, 0, 255))
    else:
        narrow = to_uint8(array)
    return float(_grey(narrow).std())


def _thumbnails(grey: np.ndarray) -> tuple:
    """(32x32 thumbnail for the perceptual hash, blurred and standardized THUMB x THUMB thumbnail, flattened, as
    int16 and its scale: ``_quantized``)."""
    from PIL import Image

    image = Image.fromarray(grey, mode="F")
    small = np.asarray(image.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    from scipy.ndimage import gaussian_filter

    large = np.asarray(image.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float64)
    large = gaussian_filter(large, THUMB_BLUR).ravel()
    large = large - large.mean()
    norm = np.linalg.norm(large)
    return small, _quantized(large / norm if norm > 0 else large)


def _quantized(vector: np.ndarray) -> tuple:
    """(int16 values, float scale) of a vector: its largest value is 32767. Thumbnails are compared by integer
    dot products, several times faster than float16 (which NumPy converts element by element) and within 1e-5 of
    the float64 correlation."""
    top = float(np.abs(vector).max(initial=0.0))
    scale = top / 32767 if top > 0 else 1.0
    return np.round(vector / scale).astype(np.int16), scale


def _read(source, reading: _Reading = _Reading()) -> tuple:
    """(pixel hash, the perceptual hashes of its 8 orientations, standardized 48x48 thumbnail as (int16, scale),
    grey-level SD on the pipeline's scale) of one image: a file path, or an in-memory image."""
    array = np.ascontiguousarray(_pixels(source, reading))
    digest = hashlib.sha256(f"{array.shape}{array.dtype.str}".encode() + array.tobytes()).hexdigest()
    grey = _grey(array)
    small, large = _thumbnails(grey)
    spread = _spread(array, grey, not isinstance(source, str), reading.sixteen_bit)
    return digest, oriented_hashes(small[None])[0], large, spread


def full_size_correlation(source_a, source_b, frame="middle", orientation: int = 0, dicom_window=None) -> float:
    """The correlation of two images (file paths or in-memory images), the second in ``ORIENTATIONS[orientation]``,
    at half the smaller one's size (at most CONFIRM_SIDE pixels a side; below SHARP_SIDE pixels each blurred by
    CONFIRM_BLUR pixels): a re-encoded or resized copy keeps the fine detail that tells two patients of the same
    anatomy apart."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    reading = _Reading(frame, dicom_window=dicom_window)
    greys = [
        _grey(_pixels(source_a, reading)),
        np.ascontiguousarray(oriented(_grey(_pixels(source_b, reading)), orientation)),
    ]
    side = max(8, min(CONFIRM_SIDE, *(min(g.shape) // 2 for g in greys)))
    vectors = []
    for grey in greys:
        small = np.asarray(Image.fromarray(grey, mode="F").resize((side, side), Image.Resampling.BOX), np.float64)
        small = (gaussian_filter(small, CONFIRM_BLUR) if side < SHARP_SIDE else small).ravel()
        small -= small.mean()
        norm = np.linalg.norm(small)
        vectors.append(small / norm if norm > 0 else small)
    return float(vectors[0] @ vectors[1])


def thumbnail_correlations(vectors, scales, pairs, orientations=None, chunk: int = 4096) -> np.ndarray:
    """The correlation of the standardized thumbnails (``_quantized``: int16 rows of ``vectors``, ``scales``) of
    each pair (rows of ``pairs``), the second of each in ``ORIENTATIONS[orientations[k]]`` (default: as stored)."""
    out = np.empty(len(pairs), dtype=np.float64)
    turns = np.zeros(len(pairs), dtype=np.int64) if orientations is None else np.asarray(orientations)
    for start in range(0, len(pairs), chunk):
        i, j, t = pairs[start : start + chunk, 0], pairs[start : start + chunk, 1], turns[start : start + chunk]
        second = vectors[j].reshape(len(j), THUMB, THUMB)  # a copy: fancy indexing
        for orientation in np.unique(t[t > 0]):
            second[t == orientation] = oriented(second[t == orientation], int(orientation))
        dots = np.einsum("ij,ij->i", vectors[i], second.reshape(len(j), -1), dtype=np.int64)
        out[start : start + chunk] = dots * scales[i] * scales[j]
    return out


def _low_frequencies(thumbnails: np.ndarray) -> np.ndarray:
    """The 8x8 lowest frequencies of the 2D DCT-II of each 32x32 thumbnail (rows: vertical frequency u)."""
    from scipy.fft import dct

    return dct(dct(thumbnails, axis=-1, type=2), axis=-2, type=2)[:, :8, :8]


def _hash_bits(coefficients: np.ndarray) -> np.ndarray:
    flat = coefficients.reshape(len(coefficients), 64)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel()


def perceptual_hashes(thumbnails: np.ndarray) -> np.ndarray:
    """64-bit pHashes (uint64) of a batch of 32x32 thumbnails: the 8x8 lowest DCT frequencies above their median."""
    return _hash_bits(_low_frequencies(thumbnails))


def _orientation_signs() -> np.ndarray:
    """(8, 8, 8): the signs each orientation gives the (possibly transposed) 8x8 coefficients."""
    alternate = (-1.0) ** np.arange(8)
    signs = np.ones((len(ORIENTATIONS), 8, 8))
    for orientation, flips in enumerate(_FLIPS):
        if -2 in flips:
            signs[orientation] *= alternate[:, None]
        if -1 in flips:
            signs[orientation] *= alternate[None, :]
    return signs


_SIGNS = _orientation_signs()
_TRANSPOSED = np.arange(len(ORIENTATIONS)) >= 4


def oriented_hashes(thumbnails: np.ndarray) -> np.ndarray:
    """The pHashes of a batch of 32x32 thumbnails in each of the 8 ``ORIENTATIONS`` ((n, 8) uint64; column 0 is
    ``perceptual_hashes``), from one DCT: flipping an image's columns multiplies the coefficient of horizontal
    frequency v by (-1)^v, flipping its rows that of vertical frequency u by (-1)^u, and transposing the image
    transposes the coefficients."""
    coefficients = _low_frequencies(thumbnails)[:, None]
    turned = np.where(_TRANSPOSED[None, :, None, None], np.swapaxes(coefficients, -1, -2), coefficients) * _SIGNS
    return _hash_bits(turned.reshape(-1, 8, 8)).reshape(len(thumbnails), len(ORIENTATIONS))


_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _popcount(words) -> np.ndarray:
    """Set bits of each uint64 (``np.bitwise_count`` on NumPy 2, a byte table on NumPy 1)."""
    words = np.asarray(words, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_BITS[words[..., None].view(np.uint8)].sum(axis=-1, dtype=np.uint8)


_PIECE = 16  # bits: a hash is searched as four 16-bit pieces


def near_pairs(hashes: np.ndarray, distance: int, keep=None, batch: int = 1 << 21) -> np.ndarray:
    """Every (i, j, t), i < j, for which ``hashes[i, 0]`` and ``hashes[j, t]`` differ in at most ``distance`` bits
    and ``keep(i, j, t)`` (vectorised: arrays of i, j and t) is true, as an (n, 3) array sorted by i, j, t.

    ``hashes`` is (n,) (one orientation: t is 0) or (n, T), as ``oriented_hashes``. Nothing is missed (multi-index
    hashing): two 64-bit words within ``distance`` bits differ in at most ``distance // 4`` bits on one of their
    four 16-bit pieces (pigeonhole), so for each piece the candidates are the hashes whose piece is within that many
    bits of the query's (looked up in the piece's sorted values, one probe per bit pattern), checked on all 64 bits
    and kept once, for the first piece they are found on. ``batch`` bounds the candidates held at once.
    """
    from itertools import combinations

    hashes = np.asarray(hashes, dtype=np.uint64)
    if hashes.ndim == 1:
        hashes = hashes[:, None]
    n, turns = hashes.shape
    if distance < 0 or not n:
        return np.empty((0, 3), dtype=np.int64)
    radius = distance // (64 // _PIECE)
    patterns = np.array(
        [sum(1 << b for b in bits) for k in range(min(radius, _PIECE) + 1) for bits in combinations(range(_PIECE), k)],
        dtype=np.int64,
    )
    queries, stored = hashes[:, 0], hashes.ravel()  # stored[j * turns + t] is image j in orientation t
    mask = np.uint64((1 << _PIECE) - 1)
    found = []
    for piece in range(64 // _PIECE):
        low = np.uint64(piece * _PIECE)
        stored_keys = ((stored >> low) & mask).astype(np.int64)
        order = np.argsort(stored_keys, kind="stable")
        bucket = np.searchsorted(stored_keys[order], np.arange((1 << _PIECE) + 1))  # where each key's run starts
        probes = (((queries >> low) & mask).astype(np.int64)[:, None] ^ patterns[None, :]).ravel()
        first, counts = bucket[probes], bucket[probes + 1] - bucket[probes]
        ends = np.cumsum(counts)
        start = 0
        while start < len(probes):
            stop = max(int(np.searchsorted(ends, (ends[start - 1] if start else 0) + batch, "right")), start + 1)
            rows = np.arange(start, stop)
            start = stop
            sizes = counts[rows]
            total = int(sizes.sum())
            if not total:
                continue
            i = np.repeat(rows // len(patterns), sizes)
            offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            s = order[np.repeat(first[rows], sizes) + offsets]
            j = s // turns
            ok = j > i
            i, j, s = i[ok], j[ok], s[ok]
            differ = queries[i] ^ stored[s]
            ok = _popcount(differ) <= distance
            for earlier in range(piece):  # found already, on an earlier piece
                ok &= _popcount((differ >> np.uint64(earlier * _PIECE)) & mask) > radius
            i, j, t = i[ok], j[ok], s[ok] % turns
            if keep is not None and len(i):
                ok = keep(i, j, t)
                i, j, t = i[ok], j[ok], t[ok]
            if len(i):
                found.append(np.stack([i, j, t], axis=1))
    if not found:
        return np.empty((0, 3), dtype=np.int64)
    triples = np.concatenate(found)
    return triples[np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))]


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
    def read(cls, sources: dict, reading: _Reading = _Reading(), workers: int = 4) -> "ImageFacts":
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
    parts = _as_parts(images_or_parts)
    keys, names, sources, part_of, class_of, patient_of = [], [], {}, [], [], []
    counts = {}
    for name, part in parts.items():
        part_keys, part_names, part_sources = _entries(part)
        keys += part_keys
        names += part_names
        sources.update(zip(part_keys, part_sources))
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
    facts = _facts if _facts is not None else ImageFacts.read(sources, reading, workers)
    row = np.array([facts.row.get(key, -1) for key in keys], dtype=np.int64)
    findings = []

    listed: dict = {}  # key -> its entries
    for i, key in enumerate(keys):
        listed.setdefault(key, []).append(i)
    for key, reason in facts.bad.items():
        where = listed.get(key, [])
        if where:
            findings.append(
                Finding(
                    "unreadable", WARNING, (names[where[0]],), _unique(part_of[where]), _unique(class_of[where]), reason
                )
            )
            if len(where) > 1:  # listed twice, whatever its pixels
                findings += _duplicate_findings(where, keys, names, part_of, class_of)
    good = np.flatnonzero(row >= 0)
    digests: dict = {}
    for i in good:
        digests.setdefault(facts.digests[row[i]], []).append(int(i))
    vectors, scales, spreads = facts.vectors, facts.scales, facts.spreads

    same_picture = np.arange(len(keys))
    for members in digests.values():
        same_picture[members] = members[0]
        if len(members) > 1:  # the same pixels in two images, or one image listed twice
            findings += _duplicate_findings(members, keys, names, part_of, class_of)

    for i in good:
        if spreads[row[i]] < EMPTY_STD and listed[keys[i]][0] == i:
            where = listed[keys[i]]
            findings.append(
                Finding(
                    "empty_image",
                    WARNING,
                    (names[i],),
                    _unique(part_of[where]),
                    _unique(class_of[where]),
                    f"the pixels' standard deviation is {spreads[row[i]]:.2f} grey levels on the 0-255 scale the "
                    f"pipeline gives them (below {EMPTY_STD:g})",
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
        hashes = facts.hashes[row[representatives]]
        part_keys = [frozenset(spans_part[int(r)]) for r in representatives]
        class_keys = [frozenset(spans_class[int(r)]) for r in representatives]
        part_code = np.array([hash(k) for k in part_keys])
        class_code = np.array([hash(k) for k in class_keys])
        spread = np.array([len(k) > 1 or len(c) > 1 for k, c in zip(part_keys, class_keys)])
        tally = [0]

        def keep(i, j, t):
            """Pairs that join parts or classes and whose thumbnails (in the hashes' orientation) agree."""
            ok = (part_code[i] != part_code[j]) | (class_code[i] != class_code[j])
            for k in np.flatnonzero(ok & (spread[i] | spread[j])):  # most span one part and class: codes suffice
                ok[k] = _joins(part_keys[i[k]], part_keys[j[k]]) or _joins(class_keys[i[k]], class_keys[j[k]])
            tally[0] += int(ok.sum())
            close = np.zeros(len(ok), dtype=bool)
            if ok.any():
                pairs = row[representatives[np.stack([i[ok], j[ok]], axis=1)]]
                close[ok] = thumbnail_correlations(vectors, scales, pairs, t[ok]) >= near_correlation
            return close

        triples = near_pairs(hashes, near_distance, keep)
        candidates = tally[0]
        if len(triples):
            # each pair in the orientation its thumbnails agree best in
            pairs, turns = representatives[triples[:, :2]], triples[:, 2]
            correlations = thumbnail_correlations(vectors, scales, row[pairs], turns)
            best = np.lexsort((-correlations, triples[:, 1], triples[:, 0]))
            first = np.ones(len(best), dtype=bool)
            first[1:] = np.any(np.diff(triples[best, :2], axis=0) != 0, axis=1)
            best = best[first]
            pairs, turns, triples = pairs[best], turns[best], triples[best]
            compared = len(pairs)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                confirmed = np.array(
                    list(
                        pool.map(
                            lambda k: full_size_correlation(
                                sources[keys[pairs[k, 0]]],
                                sources[keys[pairs[k, 1]]],
                                frame,
                                int(turns[k]),
                                reading.dicom_window,
                            ),
                            range(len(pairs)),
                        )
                    ),
                    dtype=np.float32,
                ).reshape(-1)
            close = confirmed >= confirm_correlation
            distances = _popcount(hashes[triples[close, 0], 0] ^ hashes[triples[close, 1], turns[close]])
            if close.any():
                findings += _near_findings(
                    pairs[close], confirmed[close], distances, turns[close], names, part_of, class_of
                )

    findings += _patient_leaks(names, part_of, class_of, patient_of)
    order = {kind: k for k, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.severity != ERROR, order[f.kind], f.paths))
    return AuditReport(
        findings, counts, time.perf_counter() - start, near_distance, len(keys), near_correlation, candidates, compared
    )


def _joins(a: frozenset, b: frozenset) -> bool:
    """Whether a pair of images spanning ``a`` and ``b`` spans more than either alone."""
    union = a | b
    return union != a and union != b


def _unique(values) -> tuple:
    return tuple(sorted({str(v) for v in values}))


def _duplicate_findings(members, keys, names, part_of, class_of) -> list:
    """One finding for entries with the same pixels (or one image listed more than once), and a label conflict
    when they are filed under two classes."""
    parts, classes = _unique(part_of[members]), _unique(class_of[members])
    files = tuple(names[i] for i in members)
    listings = Counter(keys[i] for i in members)
    noun = "file" if all(isinstance(keys[i], str) for i in members) else "image"
    if len(listings) == 1:
        what = f"one {noun if noun == 'file' else 'in-memory image'} listed {len(members)} times"
    else:
        repeated = sum(n > 1 for n in listings.values())
        what = f"{len(listings)} {noun}s with the same decoded pixels" + (
            f", {repeated} of them listed more than once" if repeated else ""
        )
    found = [
        Finding(
            "duplicate",
            ERROR if len(parts) > 1 else WARNING,
            files,
            parts,
            classes,
            what + (f", in parts {' and '.join(parts)}" if len(parts) > 1 else ""),
        )
    ]
    if len(classes) > 1:
        found.append(_label_conflict(files, parts, classes, "the same image"))
    return found


def _label_conflict(files, parts, classes, what: str) -> Finding:
    return Finding("label_conflict", ERROR, files, parts, classes, f"{what} filed under {' and '.join(classes)}")


def _near_findings(pairs, correlations, distances, turns, names, part_of, class_of) -> list:
    """One finding per group of near duplicates joined by pairs across parts or classes; ``pairs[k, 0]`` matches
    ``pairs[k, 1]`` in ``ORIENTATIONS[turns[k]]``, its hashes ``distances[k]`` bits apart."""
    involved = np.unique(pairs)
    index = {int(i): k for k, i in enumerate(involved)}
    roots = _union_find(len(involved), [(index[int(a)], index[int(b)]) for a, b in pairs])
    pair_root = roots[[index[int(a)] for a in pairs[:, 0]]]  # each pair's group, found once
    found = []
    for root in np.unique(roots):
        members = [int(i) for i in involved[roots == root]]
        inside = np.flatnonzero(pair_root == root)
        files = tuple(names[i] for i in members)
        parts, classes = _unique(part_of[members]), _unique(class_of[members])
        how = (
            f"perceptual hashes {int(distances[inside].min())}-{int(distances[inside].max())} of 64 bits apart, "
            f"correlated {float(correlations[inside].min()):.3f} or more at full size"
        )
        turned = [k for k in inside if turns[k]]
        how += "".join(
            f"; {names[pairs[k, 0]]} is a {ORIENTATIONS[turns[k]]} copy of {names[pairs[k, 1]]}" for k in turned[:3]
        ) + (f"; and {len(turned) - 3} more turned pairs" if len(turned) > 3 else "")
        if len(parts) > 1:
            found.append(
                Finding(
                    "near_duplicate",
                    ERROR,
                    files,
                    parts,
                    classes,
                    f"near-identical pictures in parts {' and '.join(parts)} (the same picture re-encoded, resized, "
                    f"flipped, rotated or with its grey levels changed, or neighbouring slices of one patient): {how}",
                )
            )
        if len(classes) > 1:
            found.append(_label_conflict(files, parts, classes, f"near duplicates ({how})"))
    return found


def _patient_leaks(names, part_of, class_of, patient_of) -> list:
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
                    tuple(names[i] for i in members),
                    parts,
                    _unique(class_of[members]),
                    f"patient {patient} has images in parts {' and '.join(parts)}",
                )
            )
    return found

"""What the data audit reads of each image, and how it finds candidate near duplicates.

One decode per image gives a hash of its decoded pixels, the 64-bit perceptual hashes of its 8 ``ORIENTATIONS``
(one DCT gives all 8), a blurred, standardized 48×48 grey thumbnail (int16) and the spread of its grey levels on
the 0-255 scale the pipeline gives it (``_read``). ``near_pairs`` finds every pair of hashes within a distance
(multi-index hashing, exact), ``thumbnail_correlations`` and ``full_size_correlation`` compare a candidate's
thumbnails and its full-size pictures. ``radtransfer.data.audit`` explains the stages and their thresholds and
turns them into findings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .decode import is_dicom

NEAR_DISTANCE = 6  # bits of 64: perceptual hashes this close make a candidate pair
NEAR_CORRELATION = 0.995  # thumbnail correlation from which a candidate is checked at full size
CONFIRM_CORRELATION = 0.994  # correlation at up to CONFIRM_SIDE pixels from which it is a near duplicate
CONFIRM_SIDE = 128  # compared at half the smaller image's side, at most this
CONFIRM_BLUR = 0.75  # pixels of blur below SHARP_SIDE (where resampling kernels differ most), none from it
SHARP_SIDE = 96
THUMB = 48  # the side of the thumbnail a candidate is verified on (blurred by THUMB_BLUR pixels)
THUMB_BLUR = 1.0


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
    if not array.dtype.isnative:  # a big-endian TIFF holds the same picture as a PNG of the same values
        array = array.astype(array.dtype.newbyteorder("="))
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
    wider type stretched from its own range, else clipped to 0..255 (data/intensity.py's ``as_uint8``)."""
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

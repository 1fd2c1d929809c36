"""Reading one image file into a resized uint8 array without TensorFlow: the pixels the tf.data path gives.

Files decode with Pillow (PNG, JPEG, BMP, TIFF) and pydicom (DICOM, through ``dicom.read_dicom``) under the same
``ReadSettings`` as ``make_dataset``: 16-bit PNGs are scaled from their own value range ("range") or from
0..65535 ("full"), grayscale becomes three identical channels, alpha is dropped. 16-bit colour and grey+alpha
PNGs, which Pillow reads as 8 bits, are inflated and unfiltered here. TIFFs of 16-bit, 32-bit integer or
floating-point grey map to 0..255 as 16-bit PNGs do ("full": from 0..65535), 8-bit TIFFs as 8-bit PNGs; a
multi-page TIFF gives its first page. JPEGs decode with libjpeg's accurate integer
IDCT in both paths (``tf_data.decode.decode_image_tf`` asks TensorFlow for it). Resizing replicates
``tf.image.resize`` as ``tf_data.decode.resize_image`` calls it, in float32 NumPy:

- "nearest": ``ResizeNearestNeighbor`` with half-pixel centres (``floor((x + 0.5) * in / out)``);
- "bilinear", "bicubic", "lanczos3" with ``antialias=True``: the ``ScaleAndTranslate`` op, a separable filter
  (triangle, Keys cubic a=-0.5, Lanczos-3) placed at half-pixel centres and, when shrinking, widened by the
  downscale factor so that it low-pass filters; weights falling outside the image are dropped and the rest
  renormalised;
- "bilinear" without antialiasing: ``ResizeBilinear`` with half-pixel centres (edge pixels clamped);
- "bicubic" and "lanczos3" without antialiasing: ``ScaleAndTranslate`` with an unscaled kernel (TensorFlow's
  ``ResizeBicubic`` uses a 1024-entry table of the same Keys kernel; the two agree within a grey level);
- "area": ``ResizeArea`` (each output pixel the mean of the input area it covers, partial pixels weighted).

The result is rounded half to even and clipped to 0..255, as ``tf_data.decode.resize_image`` does. Nothing on this
path imports TensorFlow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import DicomDecodeError, ImageReadError
from ..decode import PNG_MAGIC, ReadSettings, is_dicom
from ..dicom import read_dicom

__all__ = ["decode_file", "read_image_uint8", "resize_uint8"]

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image_uint8(path, settings: ReadSettings, image_size=None, interpolation=None, channels: int = 3):
    """Reads one image file as the tf.data path reads it: decoded, resized, uint8.

    Args:
        path: a PNG, JPEG, BMP, TIFF or DICOM file.
        settings: how files are read (``ReadSettings``: size, interpolation, antialias, 16-bit mapping, DICOM
            window and frame).
        image_size: (height, width) to resize to (default: ``settings.image_size``).
        interpolation: resize method (default: ``settings.interpolation``); one of ``decode.INTERPOLATIONS``.
        channels: 3 (RGB; grayscale repeated) or 1 (the first channel, for grayscale sets).

    Returns:
        A uint8 array (height, width, channels).

    Raises:
        ImageReadError: the file cannot be read or decoded (the message names it).
        DicomDecodeError: a DICOM file's pixels cannot be decoded or rendered.
    """
    size = tuple(settings.image_size if image_size is None else image_size)
    method = settings.interpolation if interpolation is None else interpolation
    image = decode_file(path, settings, channels)
    return resize_uint8(image, size, method, settings.antialias)


def decode_file(path, settings: ReadSettings, channels: int = 3) -> np.ndarray:
    """A file's pixels as uint8 (H, W, channels), not resized (see ``read_image_uint8`` for the arguments)."""
    if channels not in (1, 3):
        raise ValueError(f"Expected channels=1 or 3. Received: channels={channels!r}")
    path = Path(path)
    if is_dicom(path):
        return read_dicom(path, window=settings.dicom_window, frame=settings.frame)[..., :channels]
    try:
        with open(path, "rb") as handle:
            contents = handle.read()
    except OSError as exc:
        raise ImageReadError(f"Cannot read '{path}': {exc.strerror or exc}. Check that the file exists.") from None
    try:
        image = _decode_bytes(contents, settings.sixteen_bit, path)
    except (ImageReadError, DicomDecodeError):
        raise
    except Exception as exc:  # Pillow raises many types for broken data
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"Cannot read '{path}': {type(exc).__name__}: {detail}") from None
    if channels == 1:
        return np.ascontiguousarray(image[..., :1])
    if image.shape[-1] < 3:
        return np.repeat(image[..., :1], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _decode_bytes(contents: bytes, sixteen_bit: str, path) -> np.ndarray:
    """PNG/JPEG/BMP/TIFF bytes → uint8 (H, W, C) with the file's own channels (as ``decode_image_tf`` before
    to_rgb). TIFFs with samples wider than 8 bits (16- and 32-bit integers, floats) map to 0..255 as 16-bit PNGs
    do; a multi-page TIFF gives its first page."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(contents)) as image:
        image.load()
        mode = image.mode
        if contents[:4] == PNG_MAGIC and contents[24:25] == b"\x10":
            if mode in _SIXTEEN_BIT_MODES:
                wide = np.asarray(image, dtype=np.float32)[..., None]
            else:  # Pillow keeps only the high byte of 16-bit colour and grey+alpha
                wide = _png16_samples(contents, path).astype(np.float32)
            return _sixteen_to_uint8(wide, sixteen_bit)
        if image.format == "TIFF" and (mode in ("I", "F") or mode.startswith("I;")):
            wide = np.asarray(image, dtype=np.float32)[..., None]  # first page of a multi-page file
            if not np.all(np.isfinite(wide)):
                raise ImageReadError(
                    f"Cannot read '{path}': a floating-point TIFF with NaN or infinite values. Replace them "
                    "(e.g. by the image's minimum) and save it again."
                )
            return _sixteen_to_uint8(wide, sixteen_bit)
        if mode in ("L", "RGB"):
            array = np.asarray(image)
        elif mode in ("LA", "RGBA"):
            array = np.asarray(image)
        elif mode == "P":
            array = np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
        elif mode == "1":
            array = np.asarray(image.convert("L"))
        elif mode in ("I", "F") or mode.startswith("I;"):
            array = np.asarray(image, dtype=np.float64)
            array = np.round(np.clip(array, 0, 255)).astype(np.uint8)
        else:  # CMYK, YCbCr, ...
            array = np.asarray(image.convert("RGB"))
    array = np.asarray(array, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _png16_samples(contents: bytes, path) -> np.ndarray:
    """A non-interlaced 16-bit PNG's samples as uint16 (H, W, samples), every channel kept (alpha too).

    Pillow reads 16-bit colour and grey+alpha PNGs as 8 bits, so these few are inflated and unfiltered here:
    None, Sub and Up rows in NumPy, Average and Paeth rows byte by byte (about a second per megapixel).
    """
    import struct
    import zlib

    position, chunks, header = 8, [], None
    while position + 8 <= len(contents):
        length, kind = struct.unpack(">I4s", contents[position : position + 8])
        body = contents[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None:
        raise ImageReadError(f"Cannot read '{path}': a PNG without an IHDR chunk. Check the file.")
    width, height, _, colour, _, _, interlace = header
    samples = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if samples is None or interlace:
        raise ImageReadError(
            f"Cannot read '{path}': an interlaced or palette 16-bit PNG is not read without TensorFlow. "
            "Save it without interlacing, or read it with the TensorFlow backend."
        )
    bpp, stride = 2 * samples, 2 * samples * width
    raw = zlib.decompress(b"".join(chunks))
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1)
        if kind == 0:
            row = line.copy()
        elif kind == 1:
            row = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            row = line + prior
        elif kind in (3, 4):
            row = _unfilter_slow(bytearray(line.tobytes()), prior.tolist(), bpp, kind)
        else:
            raise ImageReadError(f"Cannot read '{path}': PNG row {y} has the unknown filter type {kind}.")
        out[y] = row
        prior = out[y]
    return out.view(">u2").reshape(height, width, samples).astype(np.uint16)


def _unfilter_slow(line: bytearray, prior: list, bpp: int, kind: int) -> np.ndarray:
    """A PNG row's Average (3) or Paeth (4) filter undone (each byte depends on the one before it)."""
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = prior[i]
        if kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            continue
        corner = prior[i - bpp] if i >= bpp else 0
        estimate = left + up - corner
        to_left, to_up, to_corner = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
        if to_left <= to_up and to_left <= to_corner:
            best = left
        elif to_up <= to_corner:
            best = up
        else:
            best = corner
        line[i] = (line[i] + best) & 0xFF
    return np.frombuffer(bytes(line), np.uint8)


def _sixteen_to_uint8(wide: np.ndarray, sixteen_bit: str) -> np.ndarray:
    """16-bit values (float32) → uint8, in float32 as ``decode_image_tf`` computes it."""
    if sixteen_bit == "full":
        narrow = wide / np.float32(257.0)
    else:
        low, high = wide.min(), wide.max()
        span = high - low
        narrow = (wide - low) / span * np.float32(255.0) if span > 0 else np.zeros_like(wide)
    return np.round(np.clip(narrow, 0.0, 255.0)).astype(np.uint8)


# -- resizing, as tf.image.resize --------------------------------------------------------------------------------


def _triangle(x):
    return np.maximum(np.float32(0.0), np.float32(1.0) - x)


def _keys_cubic(x):
    near = ((np.float32(1.5) * x - np.float32(2.5)) * x) * x + np.float32(1.0)
    far = ((np.float32(-0.5) * x + np.float32(2.5)) * x - np.float32(4.0)) * x + np.float32(2.0)
    return np.where(x >= 2.0, np.float32(0.0), np.where(x >= 1.0, far, near)).astype(np.float32)


def _lanczos3(x):
    radius = np.float32(3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius) / (np.pi * np.pi * x * x)
    return np.where(x > radius, 0.0, np.where(x <= 1e-3, 1.0, value)).astype(np.float32)


_KERNELS = {"bilinear": (_triangle, 1.0), "bicubic": (_keys_cubic, 2.0), "lanczos3": (_lanczos3, 3.0)}


def _filter_spans(kernel, radius: float, out_size: int, in_size: int, antialias: bool):
    """(starts, weights (out, span)) of ScaleAndTranslate along one axis (zero translation), in float32."""
    f32 = np.float32
    scale = f32(out_size) / f32(in_size)
    inv_scale = f32(1.0 / float(scale))
    kernel_scale = max(inv_scale, f32(1.0)) if antialias else f32(1.0)
    span = min(2 * math.ceil(radius * kernel_scale) + 1, in_size)
    sample = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale
    reach = f32(radius) * kernel_scale
    starts = np.clip(np.ceil(sample - reach - f32(0.5)).astype(np.int64), 0, in_size - 1)
    ends = np.clip(np.floor(sample + reach - f32(0.5)).astype(np.int64), 0, in_size - 1) + 1
    source = starts[:, None] + np.arange(span)[None, :]
    inside = source < ends[:, None]
    position = (source.astype(f32) + f32(0.5) - sample[:, None]) / kernel_scale
    weights = np.where(inside, kernel(np.abs(position).astype(f32)), f32(0.0)).astype(f32)
    total = weights.sum(axis=1, dtype=f32)
    ok = np.abs(total) >= 1000.0 * np.finfo(np.float32).tiny
    weights = np.where(ok[:, None], weights * (f32(1.0) / np.where(ok, total, f32(1.0)))[:, None], f32(0.0))
    return starts, weights.astype(f32)


def _area_spans(out_size: int, in_size: int):
    """(starts, weights) of ResizeArea along one axis: each output pixel averages the input interval it covers."""
    scale = np.float32(in_size) / np.float32(out_size)
    low = np.arange(out_size, dtype=np.float32) * scale
    high = (np.arange(out_size, dtype=np.float32) + np.float32(1.0)) * scale
    starts = np.floor(low).astype(np.int64)
    span = int(np.max(np.ceil(high).astype(np.int64) - starts))
    source = starts[:, None] + np.arange(span)[None, :]
    cell = source.astype(np.float32)
    overlap = np.minimum(cell + 1, high[:, None]) - np.maximum(cell, low[:, None])
    weights = np.clip(overlap, 0.0, None).astype(np.float32) / scale
    return starts, weights  # indices past the edge are clamped, as TensorFlow's are


def _apply_spans(image: np.ndarray, starts, weights, axis: int) -> np.ndarray:
    """Each output line along ``axis`` is the weighted sum of ``weights.shape[1]`` input lines from ``starts``."""
    moved = np.moveaxis(image, axis, 0)
    limit = moved.shape[0] - 1
    out = np.zeros((len(starts),) + moved.shape[1:], dtype=np.float32)
    shape = (-1,) + (1,) * (moved.ndim - 1)
    for k in range(weights.shape[1]):
        out += weights[:, k].reshape(shape) * moved[np.minimum(starts + k, limit)]
    return np.moveaxis(out, 0, axis)


def _bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """ResizeBilinear with half-pixel centres (no antialiasing), as TensorFlow computes it."""

    def axis_weights(out_size, in_size):
        scale = np.float32(in_size) / np.float32(out_size)
        position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        floor = np.floor(position)
        lower = np.maximum(floor.astype(np.int64), 0)
        upper = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
        return lower, upper, (position - floor).astype(np.float32)

    top_i, bottom_i, y_lerp = axis_weights(height, image.shape[0])
    left_i, right_i, x_lerp = axis_weights(width, image.shape[1])
    x_lerp = x_lerp[None, :, None]
    top = image[top_i]
    bottom = image[bottom_i]
    top = top[:, left_i] + (top[:, right_i] - top[:, left_i]) * x_lerp
    bottom = bottom[:, left_i] + (bottom[:, right_i] - bottom[:, left_i]) * x_lerp
    return top + (bottom - top) * y_lerp[:, None, None]


def _nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    def indices(out_size, in_size):
        scale = np.float32(in_size) / np.float32(out_size)
        position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
        return np.clip(np.floor(position).astype(np.int64), 0, in_size - 1)

    return image[indices(height, image.shape[0])][:, indices(width, image.shape[1])]


def resize_uint8(image: np.ndarray, image_size, interpolation: str = "bilinear", antialias: bool = True) -> np.ndarray:
    """A uint8 (H, W, C) image resized as ``tf_data.decode.resize_image`` resizes it with TensorFlow.

    Args:
        image: uint8 (H, W, C).
        image_size: (height, width).
        interpolation: "bilinear", "nearest", "bicubic", "area" or "lanczos3".
        antialias: low-pass filter when shrinking (no effect with "nearest" or "area", or when enlarging).

    Returns:
        uint8 (height, width, C).
    """
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"Expected a positive image_size=(height, width). Received: image_size={image_size!r}")
    if image.ndim != 3:
        raise ValueError(f"Expected an image of shape (height, width, channels). Received: shape {image.shape}")
    if interpolation == "nearest":
        return np.ascontiguousarray(_nearest(image, height, width))
    values = image.astype(np.float32)
    if interpolation == "area":
        for axis, size in ((0, height), (1, width)):
            values = _apply_spans(values, *_area_spans(size, values.shape[axis]), axis=axis)
    elif interpolation == "bilinear" and not antialias:
        values = _bilinear(values, height, width)
    elif interpolation in _KERNELS:
        kernel, radius = _KERNELS[interpolation]
        for axis, size in ((0, height), (1, width)):  # rows first: closest to TensorFlow's float32 sums
            values = _apply_spans(values, *_filter_spans(kernel, radius, size, values.shape[axis], antialias), axis)
    else:
        raise ValueError(
            "Expected interpolation= one of 'bilinear', 'nearest', 'bicubic', 'area', 'lanczos3'. "
            f"Received: interpolation={interpolation!r}"
        )
    return np.round(np.clip(values, 0.0, 255.0)).astype(np.uint8)

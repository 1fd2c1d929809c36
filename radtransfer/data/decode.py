"""Reading image files into uint8 RGB tensors, and checking files cheaply before training.

PNG (8- and 16-bit), JPEG and BMP decode inside the TensorFlow graph; DICOM goes through pydicom (the
``dicom`` extra). Grayscale becomes three identical channels, alpha is dropped, and 16-bit images are
scaled from their own value range to 0–255 instead of being truncated.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PNG_MAGIC = b"\x89PNG"
DICOM_EXTENSIONS = (".dcm", ".dicom")


def is_dicom(path) -> bool:
    """True for DICOM files (by the 'DICM' preamble marker, or a .dcm extension)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _import_pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError(
            "Reading DICOM files needs pydicom: pip install 'radtransfer[dicom]'."
        ) from None
    return pydicom


def read_dicom(path, window=None) -> np.ndarray:
    """Reads a DICOM file into a uint8 RGB array.

    Applies the rescale slope and intercept, the window (``window=(center, width)``, else the file's
    own Window Center/Width, else the image's value range), and inverts MONOCHROME1 so that high
    values are bright.
    """
    pydicom = _import_pydicom()
    dataset = pydicom.dcmread(str(path))
    pixels = dataset.pixel_array.astype(np.float32)
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") or pixels.ndim == 3 and pixels.shape[-1] == 3:
        if pixels.ndim == 4:  # multi-frame colour: first frame
            pixels = pixels[0]
        return _to_uint8_range(pixels, (0, 255) if pixels.max() <= 255 else None)
    if pixels.ndim == 3:  # multi-frame grayscale: the middle frame
        pixels = pixels[pixels.shape[0] // 2]
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    pixels = pixels * slope + intercept
    if window is None and "WindowCenter" in dataset and "WindowWidth" in dataset:
        center, width = dataset.WindowCenter, dataset.WindowWidth
        center = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        window = (center, width)
    if window is not None:
        center, width = window
        value_range = (center - width / 2.0, center + width / 2.0)
    else:
        value_range = None
    gray = _to_uint8_range(pixels, value_range)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[..., None], 3, axis=-1)


def _to_uint8_range(pixels: np.ndarray, value_range) -> np.ndarray:
    low, high = value_range if value_range is not None else (float(pixels.min()), float(pixels.max()))
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    scaled = (np.clip(pixels, low, high) - low) / (high - low) * 255.0
    return np.round(scaled).astype(np.uint8)


def decode_image_tf(contents, sixteen_bit: str = "range"):
    """Decodes PNG/JPEG/BMP bytes (a scalar string tensor) into a uint8 HxWx3 tensor.

    Args:
        contents: the file's bytes.
        sixteen_bit: how 16-bit PNGs map to 0–255: "range" (the image's own min..max) or "full"
            (0..65535).
    """
    import tensorflow as tf

    def png():
        depth = tf.io.decode_raw(tf.strings.substr(contents, 24, 1), tf.uint8)[0]
        wide = tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16), tf.float32)

        def sixteen():
            if sixteen_bit == "full":
                return wide / 257.0
            low, high = tf.reduce_min(wide), tf.reduce_max(wide)
            return tf.math.divide_no_nan(wide - low, high - low) * 255.0

        # decode_png(dtype=uint16) scales 8-bit data by 257; undo that exactly.
        narrow = tf.cond(depth == 16, sixteen, lambda: wide / 257.0)
        return tf.cast(tf.round(tf.clip_by_value(narrow, 0.0, 255.0)), tf.uint8)

    def other():
        return tf.io.decode_image(contents, channels=0, expand_animations=False, dtype=tf.uint8)

    is_png = tf.equal(tf.strings.substr(contents, 0, 4), PNG_MAGIC)
    image = tf.cond(is_png, png, other)
    return to_rgb(image)


def to_rgb(image):
    """Grayscale (1 or 2 channels) to three identical channels; drops alpha."""
    import tensorflow as tf

    channels = tf.shape(image)[-1]
    image = tf.cond(
        channels < 3,
        lambda: tf.tile(image[..., :1], [1, 1, 3]),
        lambda: image[..., :3],
    )
    image.set_shape([None, None, 3])
    return image


# -- cheap checks before the first epoch -------------------------------------------------------


def check_file(path) -> str | None:
    """Returns None if the file looks like a readable image, else the reason it does not."""
    path = Path(path)
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a file"
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        if is_dicom(path):
            pydicom = _import_pydicom()
            dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
            if "Rows" not in dataset or "Columns" not in dataset:
                return "DICOM file without image data (no Rows/Columns)"
            return None
        from PIL import Image

        with Image.open(path) as image:
            image.size  # the header parsed
            if image.format not in ("PNG", "JPEG", "BMP", "MPO"):
                return f"unsupported image format {image.format}"
            if image.format == "PNG":
                # A truncated PNG has a valid header; its end marker is missing.
                with open(path, "rb") as handle:
                    handle.seek(max(size - 12, 0))
                    if b"IEND" not in handle.read(12):
                        return "truncated PNG (no IEND marker)"
            elif image.format in ("JPEG", "MPO"):
                with open(path, "rb") as handle:
                    handle.seek(max(size - 2, 0))
                    if handle.read(2) != b"\xff\xd9":
                        return "truncated JPEG (no end-of-image marker)"
    except PermissionError:
        return "permission denied"
    except ImportError as exc:
        return str(exc)
    except Exception as exc:  # PIL and pydicom raise many types for a broken header
        return f"header does not decode ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def check_files(paths, workers: int = 8) -> list[tuple[str, str]]:
    """Checks every file; returns (path, reason) for the bad ones, in input order."""
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(check_file, paths, chunksize=64))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]

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


def decode_image_tf(contents, sixteen_bit: str = "range", channels: int = 3):
    """Decodes PNG/JPEG/BMP bytes (a scalar string tensor) into a uint8 HxWxC tensor.

    Args:
        contents: the file's bytes.
        sixteen_bit: how 16-bit PNGs map to 0–255: "range" (the image's own min..max) or "full"
            (0..65535).
        channels: 3 (RGB; grayscale is repeated) or 1 (the first channel, for grayscale sets).
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
    if channels == 1:
        image = image[..., :1]
        image.set_shape([None, None, 1])
        return image
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


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def check_file(path) -> tuple[str | None, bool, bool]:
    """Checks a file cheaply (exists, readable, header decodes) without decoding its pixels.

    Returns:
        (None, is_grayscale, is_dicom) for a readable image, or (reason, False, False) for a bad one.
    """
    reason, gray, dicom = _inspect(Path(path))
    return reason, gray and reason is None, dicom and reason is None


def _inspect(path: Path) -> tuple[str | None, bool, bool]:
    if not path.exists():
        return "file not found", False, False
    if not path.is_file():
        return "not a file", False, False
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file", False, False
        if is_dicom(path):
            pydicom = _import_pydicom()
            dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
            if "Rows" not in dataset or "Columns" not in dataset:
                return "DICOM file without image data (no Rows/Columns)", False, True
            return None, str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).startswith("MONOCHROME"), True
        from PIL import Image

        with Image.open(path) as image:
            image_format, mode = image.format, image.mode
        if image_format not in ("PNG", "JPEG", "BMP", "MPO"):
            return f"unsupported image format {image_format}", False, False
        with open(path, "rb") as handle:
            handle.seek(max(size - 12, 0))
            tail = handle.read(12)
        if image_format == "PNG" and b"IEND" not in tail:
            return "truncated PNG (no IEND marker)", False, False
        if image_format in ("JPEG", "MPO") and not tail.endswith(b"\xff\xd9"):
            return "truncated JPEG (no end-of-image marker)", False, False
        return None, mode in GRAY_MODES, False
    except PermissionError:
        return "permission denied", False, False
    except ImportError as exc:
        return str(exc), False, False
    except Exception as exc:  # PIL and pydicom raise many types for a broken header
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return f"header does not decode ({type(exc).__name__}: {detail})", False, False


def check_files(paths, workers: int = 8) -> tuple[list[tuple[str, str]], bool, np.ndarray]:
    """Checks every file, opening each once.

    Returns:
        ((path, reason) for the bad files in input order, whether every good file is grayscale,
        a boolean array marking the DICOM files).
    """
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check_file, paths, chunksize=64))
    bad = [(p, reason) for p, (reason, _, _) in zip(paths, results) if reason is not None]
    all_gray = all(gray for reason, gray, _ in results if reason is None)
    dicom = np.array([d for _, _, d in results], dtype=bool)
    return bad, all_gray, dicom

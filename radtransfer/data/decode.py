"""How image files are read (``ReadSettings``), and checking files cheaply before training: shared by both image
paths, and free of TensorFlow.

PNG (8- and 16-bit), JPEG and BMP decode inside the TensorFlow graph (``tf_data/decode.py``) or with Pillow
(``py_dataset/numpy_read.py``); TIFF decodes with Pillow in both paths (the first page; 16-bit, 32-bit and float
grey mapped as 16-bit PNGs are; 16-bit colour refused, since Pillow keeps only its high bytes); DICOM goes through
pydicom (the ``dicom`` extra, rendered by ``dicom.py``): every file whose ``pydicom.dcmread(path).pixel_array``
decodes is read. Grayscale becomes three identical channels, alpha is dropped, and 16-bit images are scaled from
their own value range to 0–255 instead of being truncated.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.backbones import get_backbone
from ..utils.choices import check_choice
from ..utils.progress import progress
from .dicom import (
    DicomDecodeError,
    check_frame,
    check_window,
    decode_failure_reason,
    decoder_problem,
    header_key,
    import_pydicom,
    read_dicom,
)
from .options import take_options

PNG_MAGIC = b"\x89PNG"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little/big endian, classic/BigTIFF
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_EXTENSIONS = (".dcm", ".dicom")


def is_dicom(path) -> bool:
    """True for DICOM files (by the 'DICM' preamble marker, or a .dcm extension)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    # Folders are searched by this test for every file without an image extension: a bare descriptor reads the
    # 4 bytes in about half the CPU time of a buffered file object (8 against 17 microseconds a file).
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return False
    try:
        os.lseek(descriptor, 128, os.SEEK_SET)
        return os.read(descriptor, 4) == b"DICM"
    except OSError:
        return False
    finally:
        os.close(descriptor)


# -- cheap checks before the first epoch -------------------------------------------------------


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class FileCheck:
    """What the cheap check learnt about one file."""

    reason: str | None = None  # why the file cannot be used (None: it can)
    gray: bool = False
    dicom: bool = False
    key: tuple = ()  # a DICOM file's decoder path (see dicom.header_key)
    frames: int = 1  # a DICOM file's number of frames


def check_file(path) -> tuple[str | None, bool, bool]:
    """Checks a file cheaply (exists, readable, header decodes) without decoding its pixels.

    Returns:
        (None, is_grayscale, is_dicom) for a readable image, or (reason, False, False) for a bad one.
    """
    result = _inspect(Path(path))
    ok = result.reason is None
    return result.reason, result.gray and ok, result.dicom and ok


def _inspect(path: Path) -> FileCheck:
    if not path.exists():
        return FileCheck("file not found")
    if not path.is_file():
        return FileCheck("not a file")
    try:
        size = path.stat().st_size
        if size == 0:
            return FileCheck("empty file")
        if is_dicom(path):
            pydicom = import_pydicom()
            header = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
            if "Rows" not in header or "Columns" not in header:
                return FileCheck("DICOM file without image data (no Rows/Columns)", dicom=True)
            problem = decoder_problem(header)
            if problem:
                return FileCheck(problem, dicom=True)
            photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
            return FileCheck(
                None,
                photometric.startswith("MONOCHROME"),
                True,
                header_key(header),
                int(header.get("NumberOfFrames", 1) or 1),
            )
        from PIL import Image

        with Image.open(path) as image:
            image_format, mode = image.format, image.mode
            wide = mode in ("I", "F") or mode.startswith("I;")  # read in full (grey)
            truncated = image_format == "TIFF" and not wide and _tiff_bits(image) > 8
        if image_format not in ("PNG", "JPEG", "BMP", "MPO", "TIFF"):
            return FileCheck(f"unsupported image format {image_format}")
        if truncated:
            return FileCheck(
                "TIFF with 16-bit colour or alpha samples (Pillow keeps only their high byte); save it as a 16-bit PNG"
            )
        if image_format == "PNG":
            with open(path, "rb") as handle:
                handle.seek(max(size - 12, 0))
                if b"IEND" not in handle.read(12):
                    return FileCheck("truncated PNG (no IEND marker)")
        if image_format in ("JPEG", "MPO") and not _jpeg_complete(path):
            return FileCheck("truncated JPEG (no end-of-image marker after the last scan)")
        return FileCheck(None, mode in GRAY_MODES)
    except PermissionError:
        return FileCheck("permission denied")
    except ImportError as exc:
        return FileCheck(str(exc))
    except Exception as exc:  # PIL and pydicom raise many types for a broken header
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return FileCheck(f"header does not decode ({type(exc).__name__}: {detail})")


def _tiff_bits(image) -> int:
    """The widest sample of a TIFF (its BitsPerSample tag), 8 when the tag is absent."""
    bits = image.tag_v2.get(258, 8)
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _jpeg_complete(path: Path) -> bool:
    """An end-of-image marker follows the last start-of-scan; bytes after it (phones, PACS) are fine."""
    data = path.read_bytes()
    last_scan = data.rfind(b"\xff\xda")
    return last_scan >= 0 and data.find(b"\xff\xd9", last_scan) >= 0


_checked: dict = {}  # path -> ((mtime_ns, size), FileCheck) of files found good, so a second check reads nothing
_checked_lock = threading.Lock()


def _known_good(path: str) -> FileCheck | None:
    """This file's earlier good check, if the file is unchanged since (same modification time and size)."""
    with _checked_lock:
        seen = _checked.get(path)
    if seen is None:
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return dataclasses.replace(seen[1]) if seen[0] == (stat.st_mtime_ns, stat.st_size) else None


def _inspect_and_remember(path: str) -> FileCheck:
    try:
        stat = Path(path).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None
    result = _inspect(Path(path))
    if result.reason is None and stamp is not None:
        with _checked_lock:
            _checked[path] = (stamp, dataclasses.replace(result))
    return result


def check_files(paths, workers: int = 8, frame="middle") -> tuple[list[tuple[str, str]], bool, np.ndarray]:
    """Checks every file, opening each once, and decodes one DICOM of each kind.

    DICOM files are grouped by what decides how their pixels decode (transfer syntax, photometric
    interpretation, bit depth, samples, frames); the first file of each group is decoded and rendered,
    and if it fails, every file of the group is reported with the decoder's error, the transfer syntax and
    the decoder packages that are not installed.

    Returns:
        ((path, reason) for the bad files in input order, whether every good file is grayscale,
        a boolean array marking the DICOM files).
    """
    paths = [str(p) for p in paths]
    results = [_known_good(p) for p in paths]  # the command checks before training, the pipeline again: once
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            inspected = pool.map(lambda i: _inspect_and_remember(paths[i]), todo, chunksize=64)
            for i, result in zip(todo, progress(inspected, total=len(todo), desc="checking image files", unit="file")):
                results[i] = result
    groups: dict = {}
    for i, result in enumerate(results):
        if result.reason is None and result.dicom:
            groups.setdefault(result.key, []).append(i)
    for members in groups.values():
        first = members[0]
        try:
            read_dicom(paths[first], frame=frame)
        except DicomDecodeError as exc:
            reason = exc.reason
        except Exception as exc:
            header = import_pydicom().dcmread(paths[first], stop_before_pixels=True, force=True)
            reason = decode_failure_reason(header, exc)
        else:
            continue
        for i in members:
            results[i].reason = reason
    if not isinstance(frame, str):
        for result in results:
            if result.reason is None and result.dicom and result.frames > 1 and frame >= result.frames:
                result.reason = f"the file has {result.frames} frames; frame={frame} does not exist"
    bad = [(p, r.reason) for p, r in zip(paths, results) if r.reason is not None]
    all_gray = all(r.gray for r in results if r.reason is None)
    dicom = np.array([r.dicom for r in results], dtype=bool)
    return bad, all_gray, dicom


INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3")
DEFAULT_IMAGE_SIZE = (256, 256)


def check_image_size(image_size, backbone: str | None = None) -> tuple[int, int]:
    """``image_size`` as (height, width) ints (an int is a square), positive, and at least ``backbone``'s minimum.

    Raises:
        ValueError: not a size, not positive, or below the backbone's minimum input size (one line naming it).
    """
    try:
        height, width = (int(image_size), int(image_size)) if np.isscalar(image_size) else map(int, image_size)
    except (TypeError, ValueError):
        raise ValueError(f"Expected image_size=(height, width). Received: image_size={image_size!r}") from None
    if backbone is not None:
        spec = get_backbone(backbone)
        if min(height, width) < spec.min_size:
            raise ValueError(
                f"image_size {(height, width)} is below {spec.display_name}'s minimum of "
                f"{spec.min_size}×{spec.min_size}. Received: image_size={image_size!r}"
            )
    elif min(height, width) < 1:
        raise ValueError(f"Expected a positive image_size. Received: image_size={image_size!r}")
    return height, width


@dataclass(frozen=True)
class ReadSettings:
    """How image files become model inputs: what a trained model must be given to see images as in training.

    The one object that crosses every seam: ``make_dataset`` and ``ImageSequence`` read with it (their read
    keywords build one), ``fine_tune`` saves it with the model (``to_dict``), and ``evaluate`` and ``predict``
    read a trained model's images with ``ReadSettings.of_model(model)``. Checked once, when made.

    Attributes:
        image_size: (height, width) the images are resized to (an int is a square).
        interpolation: resize method: "bilinear", "nearest" (the reference loader's), "bicubic", "area" or
            "lanczos3".
        antialias: low-pass filter when shrinking (bilinear, bicubic, lanczos3, area); no effect when enlarging or
            with "nearest".
        sixteen_bit: "range" (a 16-bit image's own min..max → 0..255) or "full" (0..65535 → 0..255).
        dicom_window: (center, width) for DICOM files, overriding the files' own VOI LUT and window; None: theirs.
        frame: the frame of multi-frame DICOM files: "middle", "first", "last" or an index.
    """

    image_size: tuple = DEFAULT_IMAGE_SIZE
    interpolation: str = "bilinear"
    antialias: bool = True
    sixteen_bit: str = "range"
    dicom_window: tuple | None = None
    frame: object = "middle"

    def __post_init__(self):
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        object.__setattr__(self, "antialias", bool(self.antialias))
        check_choice("sixteen_bit", self.sixteen_bit, ("range", "full"))
        object.__setattr__(self, "dicom_window", check_window(self.dicom_window, "dicom_window"))
        object.__setattr__(self, "frame", check_frame(self.frame))

    def to_dict(self) -> dict:
        """The settings as JSON values (saved with a trained model, and part of a run's fingerprint)."""
        return {
            "image_size": list(self.image_size),
            "interpolation": self.interpolation,
            "antialias": self.antialias,
            "sixteen_bit": self.sixteen_bit,
            "dicom_window": None if self.dicom_window is None else list(self.dicom_window),
            "frame": self.frame,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "ReadSettings":
        """The settings ``to_dict`` wrote (other keys, such as a run signature's, are ignored)."""
        return cls(**{k: v for k, v in dict(values).items() if k in READ_SETTING_FIELDS})

    @classmethod
    def of_model(cls, model) -> "ReadSettings":
        """How a trained model's images are read (timm's ``resolve_data_config(model=)``): decided here only.

        The settings its training images were read with, which ``fine_tune`` saves with it (``.keras``'s
        ``radtransfer.json``, attached by ``load_trained``); a model that carries none (built, not trained here, or
        saved by other means) is read at its input size with the defaults.
        """
        stored = getattr(model, "radtransfer_read_settings", None)
        if stored:
            return cls.from_dict(stored)
        return cls(tuple(int(v) for v in model.input_shape[1:3]))

    @classmethod
    def resolve(cls, settings=None, **fields) -> "ReadSettings":
        """One ReadSettings from ``settings`` (a ReadSettings, its ``to_dict()``, or None for the defaults) with
        ``fields`` laid over it (an ``image_size`` of None keeps the settings' size).

        Raises:
            TypeError: ``settings`` is none of those, or a field is not a ReadSettings field.
        """
        if settings is None:
            settings = cls()
        elif isinstance(settings, dict):
            settings = cls.from_dict(settings)
        elif not isinstance(settings, cls):
            raise TypeError(
                f"Expected settings= a data.ReadSettings (or its to_dict()). Received: a {type(settings).__name__}"
            )
        if fields.get("image_size", 0) is None:
            del fields["image_size"]
        return dataclasses.replace(settings, **fields) if fields else settings

    def dataset_kwargs(self) -> dict:
        """The settings as ``make_dataset`` keywords (``make_dataset(..., settings=self)`` reads the same)."""
        return {name: getattr(self, name) for name in READ_SETTING_FIELDS}


# The fields of ReadSettings: how image files become model inputs (what a model's saved ``read_settings`` hold).
READ_SETTING_FIELDS = tuple(field.name for field in dataclasses.fields(ReadSettings))

# The read keywords of make_dataset and ImageSequence (ReadSettings' fields but the size) and their defaults.
READ_OPTIONS = {field.name: field.default for field in dataclasses.fields(ReadSettings) if field.name != "image_size"}


def read_options(where: str, settings, image_size, options: dict, defaults: dict, declared=()):
    """One ReadSettings, checked once, and a reader's other keyword options: ``settings`` (None: the defaults) with
    ``image_size`` (None: the settings') and the read keywords given in ``options`` laid over it.

    Args:
        where: the reader's name, for messages (``"make_dataset"``).
        settings: a ReadSettings, its ``to_dict()``, or None.
        image_size: (height, width), or None.
        options: the keywords given beyond the declared parameters.
        defaults: every keyword the reader takes in ``options`` (``READ_OPTIONS`` among them), with its default.
        declared: the reader's declared parameters (listed when a keyword is refused).

    Returns:
        (the ReadSettings, the other options with their defaults filled in); a ``backbone`` option checks the
        settings' size against that backbone's minimum input size.

    Raises:
        TypeError: an unknown keyword (one line naming it and listing the valid ones).
        ValueError: a setting out of its range (one line naming it).
    """
    rest = take_options(where, options, defaults, declared)
    given = {name: rest.pop(name) for name in READ_OPTIONS if name in rest}
    given = {name: value for name, value in given.items() if name in options}
    settings = ReadSettings.resolve(settings, image_size=image_size, **given)
    if rest.get("backbone") is not None:
        check_image_size(settings.image_size, rest["backbone"])
    return settings, rest

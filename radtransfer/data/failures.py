"""Bad images, named before and while the pipeline runs: the cheap check of every file before anything is
trained (``check_images``), and a TensorFlow error raised while reading turned into one line naming the file
(``readable_pipeline_errors``)."""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

import numpy as np

from ..errors import BadImagesError, ImageReadError
from ..utils.choices import check_choice
from .decode import check_files
from .imageset import ImageSet

MAX_LISTED = 20


def _bad_list(bad) -> str:
    lines = [f"  {path}: {reason}" for path, reason in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"  ... and {len(bad) - MAX_LISTED} more")
    return "\n".join(lines)


ON_BAD = ("raise", "skip")


def check_images(image_set: ImageSet, on_bad: str = "raise", frame="middle", part: str | None = None):
    """Checks every file cheaply (exists, readable, header decodes), before anything is trained.

    Args:
        on_bad: "raise" (one error listing the bad files) or "skip" (leave them out, with a warning).
        frame: the frame policy of multi-frame DICOM files (as ``make_dataset``'s).
        part: the part's name ("train", "test", ...) for messages.

    Returns:
        (the image set without the skipped files, [(path, reason)] of the skipped files).

    Raises:
        BadImagesError: a file is bad and on_bad="raise", or no file is left.
    """
    kept, bad, _, _ = _check(image_set, on_bad, frame, part)
    return kept, bad


def _check(image_set: ImageSet, on_bad: str, frame, part=None):
    check_choice("on_bad", on_bad, ON_BAD)
    if image_set.paths is None:
        gray = all(np.ndim(im) == 2 or np.shape(im)[-1] in (1, 2) for im in image_set.images)
        return image_set, [], gray, None
    bad, all_gray, dicom = check_files(image_set.paths, frame=frame)
    if not bad:
        return image_set, [], all_gray, dicom
    where = f" of the {part} part" if part else ""
    if on_bad == "raise":
        raise BadImagesError(
            f"{len(bad)} of {len(image_set)} image files{where} cannot be read:\n{_bad_list(bad)}\n"
            "Fix or remove them, or skip them with on_bad='skip' (command line: --on-bad skip).",
            bad,
        )
    bad_paths = {p for p, _ in bad}
    keep = [i for i, p in enumerate(image_set.paths) if p not in bad_paths]
    warnings.warn(f"Skipping {len(bad)} unreadable image file(s){where}:\n{_bad_list(bad)}", stacklevel=4)
    if not keep:
        raise BadImagesError(f"No readable images are left{where} after skipping the bad files.", bad)
    return image_set.subset(keep), bad, all_gray, dicom[keep]


def validate_images(
    image_set: ImageSet, on_bad: str = "raise", frame="middle"
) -> tuple[ImageSet, bool, np.ndarray | None]:
    """Checks every file cheaply (exists, readable, header decodes) before any training.

    Args:
        on_bad: "raise" (one error listing the bad files) or "skip" (drop them with a warning).

    Returns:
        (the image set, without the bad files when skipping; whether every image is grayscale;
        which of its files are DICOM, or None for in-memory images).
    """
    kept, _, gray, dicom = _check(image_set, on_bad, frame)
    return kept, gray, dicom


_MARK = "<<radtransfer-unreadable>>"


_failures: dict = {}  # path -> why its pixels could not be read, filled from inside the pipeline
_failures_lock = threading.Lock()


def _remember_failure(path: str, reason: str) -> None:
    with _failures_lock:
        _failures[path] = reason


def _unmark(message: str):
    """The path and reason of a read that failed inside the pipeline, from TensorFlow's error message."""
    start = message.find(_MARK)
    if start < 0:
        return None
    end = message.find(_MARK, start + len(_MARK))
    path = message[start + len(_MARK) : end]
    with _failures_lock:
        reason = _failures.get(path, "its pixels could not be read")
    return {"path": path, "reason": reason}


@contextmanager
def readable_pipeline_errors(*datasets):
    """Turns a TensorFlow error raised while reading images into one line that names the file.

    DICOM failures carry their file and reason out of the pipeline. A PNG/JPEG/BMP that fails inside
    TensorFlow's decoder is found by decoding the datasets' files with Pillow (only after a failure).
    Without TensorFlow imported (JAX or PyTorch on in-memory data) there is no pipeline to fail.
    """
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None:
        yield
        return
    try:
        yield
    except tf.errors.OpError as exc:
        message = str(getattr(exc, "message", exc))
        marked = _unmark(message)
        if marked is not None:
            raise ImageReadError(f"Cannot read '{marked['path']}': {marked['reason']}") from None
        if not _is_decode_failure(tf, exc, message):
            raise
        detail = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        paths = []
        for dataset in datasets:
            stream = getattr(dataset, "radtransfer_stream", dataset)  # a make_dataset dataset, or its stream
            if getattr(stream, "paths", None) is not None:
                paths += list(stream.paths)
        culprit = find_undecodable(paths)
        if culprit is not None:
            raise ImageReadError(f"Cannot read '{culprit[0]}': {culprit[1]} (TensorFlow: {detail})") from None
        raise ImageReadError(f"An image failed to decode inside the input pipeline (TensorFlow: {detail}).") from None


_DECODE_WORDS = (
    "decode",
    "jpeg",
    "png",
    "bmp",
    "no such file",
    "permission denied",
    "corrupt",
    "premature end",
    "truncated",
)


def _is_decode_failure(tf, exc, message: str) -> bool:
    """Whether a TensorFlow error (``tf``: the loaded module; this file imports no TensorFlow) is a file failing to
    read or decode."""

    kinds = (
        tf.errors.InvalidArgumentError,
        tf.errors.NotFoundError,
        tf.errors.DataLossError,
        tf.errors.UnknownError,
        tf.errors.PermissionDeniedError,
    )
    lower = message.lower()
    return isinstance(exc, kinds) and any(word in lower for word in _DECODE_WORDS)


def find_undecodable(paths, workers: int = 8):
    """(path, reason) of the first file (in the given order) that Pillow cannot fully decode, or None."""
    from concurrent.futures import ThreadPoolExecutor

    from .decode import is_dicom

    def full_decode(path):
        if is_dicom(path):
            return None
        try:
            from PIL import Image

            with Image.open(path) as image:
                image.load()
        except Exception as exc:  # PIL raises many types for broken data
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'does not decode'}"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, reason in zip(paths, pool.map(full_decode, list(paths))):
            if reason is not None:
                return str(path), reason
    return None


def check_parts(parts: dict, on_bad: str = "raise") -> tuple[dict, list]:
    """Checks every part's files before anything is trained (``check_images`` on each non-empty part).

    With ``on_bad="skip"`` the bad files are left out of their part, and the split of the others is unchanged,
    so a rerun is the same run.

    Args:
        parts: ImageSets by part name, e.g. ``{"train": train, "val": val, "test": test}``.
        on_bad: "raise" (a ``BadImagesError`` listing the bad files of the first part that has any) or "skip".

    Returns:
        (checked, skipped): the parts by name, without their bad files, and a list of (part, path, reason) of
        the files left out (empty with ``on_bad="raise"``).
    """
    checked, skipped = {}, []
    for name, part in parts.items():
        if len(part) == 0:
            checked[name] = part
            continue
        with warnings.catch_warnings():  # returned in ``skipped``, for the caller to say once
            warnings.simplefilter("ignore", UserWarning)
            checked[name], bad = check_images(part, on_bad, part=name)
        skipped += [(name, path, reason) for path, reason in bad]
    return checked, skipped

"""DICOM files rendered the way a viewer shows them, through pydicom's own functions.

Grayscale: modality LUT (rescale slope/intercept or a Modality LUT Sequence) → VOI LUT (the file's VOI LUT
Sequence, else its window with its VOI LUT Function, else the image's own value range) → 0–255, with
MONOCHROME1 inverted so that high values are bright. A window the standard does not define (width below 1, or 0
and below for LINEAR_EXACT and SIGMOID, as GE scanners write 0/0; an empty or NaN center or width) and an empty or
malformed VOI LUT Sequence are treated as absent, as viewers treat them. PALETTE COLOR goes through the file's
colour LUT; YBR images are converted to RGB. Enhanced multi-frame files take their rescale and window from the
functional groups of the chosen frame.

Files are read as ``pydicom.dcmread(path).pixel_array`` reads them (whatever it decodes with the installed
plugins is read: deflated, big endian, compressed), and errors name pydicom's reason and the decoders missing.

Multi-frame files give one image per file, chosen by ``frame``: "middle" (default), "first", "last" or a
frame index. Only that frame is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DicomDecodeError
from ..utils.optional import require
from .intensity import to_uint8

FRAME_POLICIES = ("middle", "first", "last")
MIN_PYDICOM = (3, 0)
INSTALL_HINT = "pip install 'radtransfer[dicom]'"

_EXTRA_MODULES = ("pylibjpeg", "libjpeg", "openjpeg", "rle")  # the decoders the ``dicom`` extra installs


def import_pydicom():
    """pydicom ≥ 3 (radtransfer renders DICOM with its pixel functions), or an ImportError saying how to install it."""
    return require("pydicom", "dicom", "Reading DICOM files", min_version=MIN_PYDICOM)


def check_frame(frame):
    """Validates a ``frame=`` policy (a name or a non-negative frame index)."""
    if isinstance(frame, (int, np.integer)) and not isinstance(frame, bool) and frame >= 0:
        return int(frame)
    if frame in FRAME_POLICIES:
        return frame
    raise ValueError(f"Expected frame= one of {FRAME_POLICIES} or a frame index ≥ 0. Received: frame={frame!r}")


def check_window(window, argument: str = "window"):
    """Validates a user's VOI window: None, or (center, width) as two finite numbers with width ≥ 1.

    PS3.3 C.11.2.1.2 defines no window narrower than 1 for the default (LINEAR) function; a window in the file
    that breaks the rule is treated as absent (see ``_usable_window``), but one given explicitly is a mistake.
    """
    if window is None:
        return None
    try:
        if isinstance(window, (str, bytes)):  # "44" would unpack into two numbers
            raise TypeError
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected {argument}=(center, width), two numbers in modality units. Received: {argument}={window!r}"
        ) from None
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise ValueError(
            f"Expected {argument}=(center, width) with a finite center and a width ≥ 1 (DICOM PS3.3 C.11.2.1.2); "
            f"pass None to use each file's own window. Received: {argument}={window!r}"
        )
    return center, width


def frame_index(frame, n_frames: int, path="") -> int:
    """The index a ``frame`` policy picks among ``n_frames`` frames."""
    if frame == "middle":
        return n_frames // 2
    if frame == "first":
        return 0
    if frame == "last":
        return n_frames - 1
    if frame >= n_frames:
        raise DicomDecodeError(path, f"the file has {n_frames} frame(s); frame={frame} does not exist")
    return frame


def transfer_syntax_text(uid) -> str:
    name = getattr(uid, "name", "") or ""
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def _transfer_syntax(header):
    meta = getattr(header, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _missing_decoders(uid) -> str:
    """What pydicom's decoder plugins for ``uid`` that cannot run here require, in pydicom's words, e.g.
    "gdcm>=3.0.10 | pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1" ('' when none is missing)."""
    from pydicom.pixels import get_decoder

    try:
        missing = get_decoder(uid).missing_dependencies  # "pylibjpeg - requires pylibjpeg>=2.0 and ..."
    except NotImplementedError:
        return ""
    return " | ".join(text.split(" - requires ", 1)[-1] for text in missing)


def _extra_hint() -> str:
    """The ``dicom`` extra's install command, only while some of its decoders are missing."""
    import importlib.util

    missing = [name for name in _EXTRA_MODULES if importlib.util.find_spec(name) is None]
    return f" ({INSTALL_HINT})" if missing else ""


def decoder_problem(header) -> str | None:
    """Why this machine has no decoder for a file's transfer syntax (None when it has one, as pydicom decides)."""
    from pydicom.pixels import get_decoder

    uid = _transfer_syntax(header)
    if uid is None:
        return None  # pydicom's own error names the missing Transfer Syntax UID when the pixels are read
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"pydicom cannot decode transfer syntax {transfer_syntax_text(uid)}"
    if decoder.is_available:
        return None
    return (
        f"no decoder installed for transfer syntax {transfer_syntax_text(uid)}: install one of "
        f"{_missing_decoders(uid)}{_extra_hint()}"
    )


def decode_failure_reason(header, exc: Exception) -> str:
    """One line for a file whose pixels failed to decode: the error, the transfer syntax, the decoders not installed."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    detail = "; ".join(lines).replace(":; ", ": ") or type(exc).__name__
    text = f"pixels do not decode ({detail})"
    uid = _transfer_syntax(header)
    if uid is not None:
        text += f"; transfer syntax {transfer_syntax_text(uid)}"
        missing = _missing_decoders(uid)
        if missing:
            text += f"; decoders not installed here: {missing}{_extra_hint()}"
    return text


def read_dicom(path, window=None, frame="middle") -> np.ndarray:
    """Reads one frame of a DICOM file into a uint8 RGB array, rendered as a viewer would.

    Args:
        path: the DICOM file.
        window: (center, width) in modality units (e.g. Hounsfield units), replacing the file's VOI LUT
            and window (width ≥ 1); the file's VOI LUT Function (linear, linear exact, sigmoid) still applies.
        frame: which frame of a multi-frame file: "middle", "first", "last" or an index.

    Raises:
        DicomDecodeError: the pixels cannot be decoded or rendered (names the file and the reason).
    """
    import_pydicom()
    frame = check_frame(frame)
    window = check_window(window, "window")
    try:
        return _render(Path(path), window, frame)
    except DicomDecodeError:
        raise
    except Exception as exc:  # decoders and LUT code raise many types
        try:
            import pydicom

            header = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        except Exception:
            header = None
        raise DicomDecodeError(path, decode_failure_reason(header, exc)) from None


def _render(path: Path, window, frame) -> np.ndarray:
    import pydicom

    # The whole file through dcmread, as ``dcmread(path).pixel_array`` reads it: deflated datasets are inflated
    # and a dataset encoded otherwise than its transfer syntax says is still parsed.
    ds = pydicom.dcmread(str(path), force=True)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = frame_index(frame, n_frames, path) if n_frames > 1 else None
    ds.pixel_array_options(index=index)  # decode only the chosen frame
    pixels = ds.pixel_array  # YBR comes back as RGB
    if n_frames > 1 and pixels.ndim >= 3 and pixels.shape[0] == n_frames:
        pixels = pixels[index]  # some decoders ignore index for single-fragment data
    _lift_functional_groups(ds, index or 0)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        return _palette(pixels, ds)
    if pixels.ndim == 3:  # RGB, and YBR already converted by pydicom
        bits = int(ds.get("BitsStored", 8) or 8)
        return to_uint8(pixels.astype(np.float64), (0.0, float(2**bits - 1)))
    gray = _grayscale(pixels, ds, window)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[..., None], 3, axis=-1)


def _grayscale(pixels: np.ndarray, ds, window) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

    _drop_unusable_rescale(ds)
    values = apply_modality_lut(pixels, ds)
    if window is not None:
        if "VOILUTSequence" in ds:
            del ds["VOILUTSequence"]
        ds.WindowCenter, ds.WindowWidth = window
    lut = _voi_lut(ds)
    if lut is not None:
        out, value_range = _apply_voi_lut_sequence(values, *lut)
    elif _usable_window(ds):
        with np.errstate(over="ignore"):  # a sigmoid's exp saturates far from the center: 0 or 1, as it should
            out = apply_voi_lut(values, ds, index=0, prefer_lut=False)
            # The window's output range, as pydicom defines it for this file (from the extremes it maps to).
            ends = apply_windowing(np.array([-1e300, 1e300]), ds, index=0)
        value_range = (float(ends[0]), float(ends[1]))
    else:
        out, value_range = values, None
    return to_uint8(np.asarray(out, dtype=np.float64), value_range)


def _first_value(ds, keyword) -> float | None:
    """The first value of a numeric attribute as a finite float; None when absent, empty, NaN or not a number."""
    value = ds.get(keyword)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # a multi-valued window: its first
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _drop_unusable_rescale(ds) -> None:
    """An empty or non-numeric Rescale Slope or Intercept is treated as absent (identity), as the pair is used
    only when both are present."""
    slope, intercept = _first_value(ds, "RescaleSlope"), _first_value(ds, "RescaleIntercept")
    present = [keyword for keyword in ("RescaleSlope", "RescaleIntercept") if keyword in ds]
    if present and (slope is None or intercept is None):
        for keyword in present:
            del ds[keyword]


def _usable_window(ds) -> bool:
    """Whether the file's first window can be applied; if so it is left in ``ds`` as one (center, width) pair.

    PS3.3 C.11.2.1.2 requires Window Width ≥ 1 for the default LINEAR function and > 0 for LINEAR_EXACT and
    SIGMOID (C.11.2.1.3), and pydicom's ``apply_windowing`` raises on anything else. Scanners do write 0/0 (GE),
    so a window that breaks these rules, or whose first center or width is empty, NaN or not a number, is treated
    as absent, as viewers do: the image's own range is shown instead. An empty VOI LUT Function is LINEAR (the
    attribute is optional; empty means absent).
    """
    if "VOILUTFunction" in ds and not str(ds.VOILUTFunction or "").strip():
        del ds["VOILUTFunction"]
    center, width = _first_value(ds, "WindowCenter"), _first_value(ds, "WindowWidth")
    if center is None or width is None:
        return False
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
    if (width < 1) if function == "LINEAR" else (width <= 0):
        return False
    ds.WindowCenter, ds.WindowWidth = center, width
    return True


def _voi_lut(ds):
    """The file's first VOI LUT as (table, first mapped value, bits per entry), or None when the VOI LUT Sequence
    is absent, empty or malformed (a LUT Descriptor that is not three integers, bits outside 1..16, no LUT Data):
    the window, then the image's range, are used instead."""
    import struct

    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    if "LUTDescriptor" not in item or "LUTData" not in item:
        return None
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
    except (TypeError, ValueError):
        return None
    entries = entries or 65536
    element = item["LUTData"]
    try:
        if element.VR == "OW" and isinstance(element.value, (bytes, bytearray)):
            little = getattr(getattr(ds, "file_meta", None), "_tsyntax_encoding", (None, True))[1] is not False
            count = min(entries, len(element.value) // 2)
            lut = np.asarray(struct.unpack(f"{'<' if little else '>'}{count}H", element.value[: 2 * count]))
        else:
            value = element.value
            lut = np.asarray(value if hasattr(value, "__len__") else [value], dtype=np.float64)[:entries]
    except (TypeError, ValueError, struct.error):
        return None
    if lut.ndim != 1 or lut.size == 0 or not 1 <= bits <= 16 or not np.all(np.isfinite(lut)):
        return None
    return lut.astype(np.float64), first, bits


def _apply_voi_lut_sequence(values: np.ndarray, lut: np.ndarray, first: int, bits: int):
    """A VOI LUT applied as PS3.3 C.11.2.1.1 defines it: values below the first mapped value take the first entry,
    values past the last entry the last one.

    Done here rather than by ``pydicom.pixels.apply_voi``, which (pydicom 3.0) computes the LUT index in
    the LUT's own 8- or 16-bit type, so inputs further than 255 (or 65535) from the first mapped value wrap
    around instead of clipping to the last entry.
    """
    index = np.clip(np.round(values).astype(np.int64) - first, 0, len(lut) - 1)
    return lut[index], (0.0, float(2**bits - 1))


def _palette(pixels: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(pixels, ds)
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    bits = int(descriptor[2]) if descriptor is not None else (16 if rgb.dtype == np.uint16 else 8)
    return to_uint8(rgb[..., :3].astype(np.float64), (0.0, float(2**bits - 1)))


def _lift_functional_groups(ds, index: int) -> None:
    """Enhanced multi-frame files: copies the frame's rescale and window up to where the LUT functions look."""
    groups = []
    if ds.get("SharedFunctionalGroupsSequence"):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    for group in groups:  # per-frame values come last and win
        for sequence, keywords in (
            ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
            ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
        ):
            if group.get(sequence):
                item = group[sequence][0]
                for keyword in keywords:
                    if keyword in item:
                        setattr(ds, keyword, item[keyword].value)


def header_key(header) -> tuple:
    """Files with equal keys decode through the same decoder path (one test decode covers them all)."""
    meta = getattr(header, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return (
        uid,
        str(header.get("PhotometricInterpretation", "")),
        header.get("BitsAllocated"),
        header.get("BitsStored"),
        header.get("SamplesPerPixel"),
        header.get("PixelRepresentation"),
        int(header.get("NumberOfFrames", 1) or 1) > 1,
    )

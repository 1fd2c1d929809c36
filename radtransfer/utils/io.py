"""Writes that survive a crash: to a temporary file beside the target, then renamed into place."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

import numpy as np


def json_default(value):
    """JSON for what ``json`` cannot write itself: NumPy scalars and arrays, paths, objects with ``to_dict``."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def replace_atomic(path, write) -> None:
    """Calls ``write(tmp)`` on a temporary path beside ``path`` (same suffix, so Keras accepts it), then
    renames it into place: a crash leaves the old file, never a half-written one. The temporary name is
    unique to this write, so processes on several machines (where pids repeat: a container's is often 1)
    writing the same file on a shared filesystem never write into one temporary file."""
    path = Path(path)
    tmp = path.with_name(f".tmp{os.getpid()}.{uuid.uuid4().hex[:8]}_{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (flushed to disk before the rename)."""

    def write(tmp):
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    replace_atomic(path, write)


def strict(value):
    """``value`` with every non-finite number (NaN, ±Infinity: undefined intervals, empty calibration bins, a loss
    not yet seen) as None and NumPy values, paths and ``to_dict`` objects as plain JSON types, so the JSON written
    from it is strict (``JSON.parse`` and other strict parsers refuse ``NaN`` and ``Infinity``)."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(json_default(k))): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return strict(json_default(value))


def dumps_strict(payload, **kwargs) -> str:
    """``json.dumps`` of ``strict(payload)``: null where a number is not finite; never ``NaN`` or ``Infinity``."""
    return json.dumps(strict(payload), allow_nan=False, **kwargs)


def write_json_atomic(path, payload) -> None:
    """Writes strict JSON (``dumps_strict``: null for NaN and ±Infinity) to a temporary file and renames it into
    place (a crash leaves the old file)."""
    write_text_atomic(path, dumps_strict(payload, indent=2))

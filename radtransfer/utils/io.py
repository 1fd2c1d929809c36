"""Writes that survive a crash: to a temporary file beside the target, then renamed into place."""

from __future__ import annotations

import json
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


def write_json_atomic(path, payload) -> None:
    """Writes JSON to a temporary file and renames it into place (a crash leaves the old file)."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=json_default))

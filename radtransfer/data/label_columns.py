"""Multi-label manifests: one 0/1 column per label (e.g. chest X-ray findings that co-occur) read into the
(images, labels) multi-hot rows of a multi-label ``ImageSet``."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataSourceError

ONES = ("1", "1.0", "true", "yes")
ZEROS = ("0", "0.0", "false", "no")


def check_label_cols(label_cols, class_names) -> list[str]:
    """``label_cols`` as a list of distinct column names (at least one), refusing ``class_names`` beside it."""
    if isinstance(label_cols, str) or not all(isinstance(c, str) for c in label_cols) or not len(label_cols):
        raise ValueError(
            f"Expected label_cols as a list of column names, e.g. ['effusion', 'edema']. Received: {label_cols!r}"
        )
    if len(set(label_cols)) != len(label_cols):
        raise ValueError(f"label_cols names a column twice. Received: label_cols={list(label_cols)!r}")
    if class_names is not None:
        raise ValueError(
            "Pass label_cols= or class_names=, not both: with label_cols the labels are the columns, in that order."
        )
    return list(label_cols)


def multi_hot_rows(frame, label_cols, missing_labels: str, where: str, rows_of):
    """(the rows kept, their (rows, labels) int64 0/1 array): cells 0/1 (also 0.0/1.0, true/false, yes/no, any
    case); an empty cell is refused naming its rows, or (``missing_labels="drop"``) its row left out with a warning;
    any other value is refused naming its column and rows. ``rows_of(frame, mask)`` names the rows of a mask."""
    cells = np.stack([frame[c].astype(str).str.strip().str.lower().to_numpy() for c in label_cols], axis=1)
    cells = np.where(frame[label_cols].isna().to_numpy(), "", cells)
    empty = (cells == "").any(axis=1)
    if empty.any():
        if missing_labels == "raise":
            raise DataSourceError(
                f"{int(empty.sum())} row(s) of {where} have an empty label cell (label_cols), {rows_of(frame, empty)}. "
                "Fill them with 0 or 1, or leave those rows out with missing_labels='drop'."
            )
        warnings.warn(f"Leaving out {int(empty.sum())} row(s) of {where} with an empty label cell.", stacklevel=3)
        if empty.all():
            raise DataSourceError(f"{where} has no rows with every label filled in (label_cols={label_cols}).")
        frame, cells = frame[~empty], cells[~empty]
    for k, column in enumerate(label_cols):
        bad = ~np.isin(cells[:, k], ONES + ZEROS)
        if bad.any():
            raise DataSourceError(
                f"Column {column!r} (label_cols) of {where} holds {cells[bad, k][0]!r} where 0 or 1 is expected, "
                f"{rows_of(frame, bad)}. Write each label as 0 (absent) or 1 (present)."
            )
    return frame, np.isin(cells, ONES).astype(np.int64)

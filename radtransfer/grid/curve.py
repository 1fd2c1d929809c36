"""Learning curves (Tajbakhsh et al. 2016): one grid per share of the training patients, and the table of test
AUC against training-set size per weight source.

``protocol.learning_curve`` runs the grids (``out_dir/fraction<f>/``, each an ordinary grid: resumable, shardable,
Ray-able, bound to its data); this module names their folders, checks the shares, and reads them back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..utils.io import write_json_atomic, write_text_atomic
from .records import load_records

CURVE_FILE = "curve.json"  # the curve's shares and their training-set sizes
TABLE = "learning_curve"  # learning_curve.csv and .md
FIGURE = "learning_curve"  # learning_curve.png and .pdf
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def check_fractions(fractions) -> tuple[float, ...]:
    """The shares as floats, or a ValueError: each in (0, 1], strictly increasing, at least one."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"Expected fractions to be numbers in (0, 1]. Received: fractions={fractions!r}") from None
    if not values or any(not (0 < f <= 1) or math.isnan(f) for f in values):
        raise ValueError(f"Expected fractions in (0, 1], e.g. 0.1 0.25 0.5 1. Received: {list(fractions)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"Expected increasing fractions, e.g. 0.1 0.25 0.5 1. Received: {list(fractions)}")
    return values


def fraction_dir(out_dir, fraction: float) -> Path:
    """The grid folder of one share: ``out_dir/fraction<f>`` (``fraction0.25``, ``fraction1``)."""
    return Path(out_dir) / f"fraction{fraction:g}"


def write_curve(out_dir, sizes: dict) -> None:
    """Writes ``curve.json``: per share, the mean training images and patients over the splits."""
    write_json_atomic(Path(out_dir) / CURVE_FILE, {"fractions": {f"{f:g}": v for f, v in sizes.items()}})


def _interval(group, level: float = 0.95):
    """Mean AUC and its interval. The independent unit is the fold (its repeats share its test patients and training
    set): with two or more folds, a t interval over the fold means (repeats averaged first; F − 1 degrees of
    freedom); with one fold (the single split), the mean over its repeats with the mean of their bootstrap intervals
    over the shared test patients."""
    from scipy import stats

    group = group[np.isfinite(group["auc"].astype(float))]
    if group.empty:
        return np.nan, np.nan, np.nan, ""
    mean = float(group["auc"].astype(float).mean())
    folds = group.groupby("fold")["auc"].apply(lambda a: a.astype(float).mean()).to_numpy()
    if len(folds) >= 2:
        half = stats.t.ppf(0.5 + level / 2, len(folds) - 1) * folds.std(ddof=1) / math.sqrt(len(folds))
        return float(folds.mean()), float(folds.mean() - half), float(folds.mean() + half), "t over folds"
    lows, highs = group["auc_low"].astype(float), group["auc_high"].astype(float)
    return mean, float(lows.mean()), float(highs.mean()), "bootstrap over test patients"


def curve_table(out_dir):
    """The learning curve's table: one row per (source, strategy, fraction).

    Columns: source, backbone, strategy, fraction, n_train_images and n_train_patients (mean over the
    splits), runs, auc (mean test AUC over folds and repeats), auc_low and auc_high (its 95% interval: a
    t interval over the folds, each fold's repeats averaged first, or with one fold the mean of its runs' bootstrap
    intervals over the test patients) and interval (which).
    """
    import pandas as pd

    out = Path(out_dir)
    sizes = json.loads((out / CURVE_FILE).read_text())["fractions"]
    rows = []
    for key, size in sizes.items():
        records = load_records(fraction_dir(out, float(key)))
        if records.empty:
            continue
        records = records[records["status"] != "failed"]
        for (source, backbone, strategy), group in records.groupby(["source", "backbone", "strategy"], sort=False):
            auc, low, high, how = _interval(group)
            rows.append(
                {
                    "source": source,
                    "backbone": backbone,
                    "strategy": strategy,
                    "fraction": float(key),
                    "n_train_images": size["n_train_images"],
                    "n_train_patients": size["n_train_patients"],
                    "runs": len(group),
                    "auc": auc,
                    "auc_low": low,
                    "auc_high": high,
                    "interval": how,
                }
            )
    columns = [
        "source",
        "backbone",
        "strategy",
        "fraction",
        "n_train_images",
        "n_train_patients",
        "runs",
        "auc",
        "auc_low",
        "auc_high",
        "interval",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["source", "strategy", "fraction"], kind="stable").reset_index(drop=True)


def table_text(table) -> str:
    """The learning-curve table as ``radtransfer curve`` prints it: AUCs to 3 decimals, fractions and the mean
    training images and patients in their shortest form (12, 12.5; never 12.000), runs as integers."""
    shown = table.copy()
    for column in ("fraction", "n_train_images", "n_train_patients"):
        shown[column] = [f"{float(v):g}" for v in shown[column]]
    shown["runs"] = [str(int(v)) for v in shown["runs"]]
    for column in ("auc", "auc_low", "auc_high"):
        shown[column] = ["–" if not np.isfinite(float(v)) else f"{float(v):.3f}" for v in shown[column]]
    return shown.to_string(index=False)


def write_table(table, out_dir) -> list[str]:
    """Writes the table as ``learning_curve.csv`` and ``learning_curve.md``; returns their paths."""
    out = Path(out_dir)
    csv_path, md_path = out / f"{TABLE}.csv", out / f"{TABLE}.md"
    write_text_atomic(csv_path, table.to_csv(index=False))
    lines = [
        "| source | strategy | fraction | train images | train patients | runs | test AUC (95% interval) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in table.itertuples():
        interval = f" ({row.auc_low:.3f}–{row.auc_high:.3f})" if np.isfinite(row.auc_low) else ""
        lines.append(
            f"| {row.source} | {row.strategy} | {row.fraction:g} | {row.n_train_images:g} | "
            f"{row.n_train_patients:g} | {row.runs} | {row.auc:.3f}{interval} |"
        )
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return [str(csv_path), str(md_path)]

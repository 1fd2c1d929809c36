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
EFFECTS = "learning_curve_effects"  # learning_curve_effects.csv and .md: fine-tuning minus training from scratch
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


EFFECT_COLUMNS = [
    "source",
    "reference",
    "strategy",
    "fraction",
    "n_train_images",
    "n_train_patients",
    "n_pairs",
    "diff",
    "low",
    "high",
    "n_folds",
    "method",
    "covers",
    "no_interval",
    "wins",
    "losses",
    "ties",
]


def curve_effects(out_dir, n: int = 1000, seed: int = 0, level: float = 0.95):
    """Fine-tuning against training from scratch (the question of Tajbakhsh et al. 2016), per training-set share:
    the paired difference in test AUC, each pretrained source minus random initialisation, with its interval.

    Each share's grid is read and paired as ``grid.effects.paired_effects`` pairs a grid's runs: the two sources'
    runs of the same scenario, fold and repeat, scored on the same test images. Random initialisation runs only
    ``unfreeze_all``, so the pairs are the ``unfreeze_all`` runs. The interval is the grid's: the t interval on
    the folds (two or more), or with one split a bootstrap over its test patients (the training set's and the
    seeds' variation not included: ``covers``); below the minimum-units rule (``stats.too_few``: fewer than 3
    folds, or 3 test patients in a class) there is none, and ``no_interval`` says why.

    Returns:
        A DataFrame with one row per (pretrained source, share): source, reference ("random"), strategy,
        fraction, n_train_images, n_train_patients, n_pairs, diff (mean of source − random), low, high,
        n_folds, method, covers, no_interval, wins, losses, ties; empty without random-initialisation runs.
    """
    import pandas as pd

    from .arms import RANDOM
    from .effects import paired_effects

    out = Path(out_dir)
    sizes = json.loads((out / CURVE_FILE).read_text())["fractions"]
    rows = []
    for key, size in sizes.items():
        records = load_records(fraction_dir(out, float(key)))
        if records.empty or not (records["source"] == RANDOM).any():
            continue
        for source in dict.fromkeys(records["source"]):
            if source == RANDOM:
                continue
            effects = paired_effects(records, source, RANDOM, n=n, seed=seed, level=level)
            for row in effects[effects["scenario"] != "overall"].itertuples():
                rows.append(
                    {
                        "source": source,
                        "reference": RANDOM,
                        "strategy": row.strategy,
                        "fraction": float(key),
                        "n_train_images": size["n_train_images"],
                        "n_train_patients": size["n_train_patients"],
                        **{name: getattr(row, name) for name in EFFECT_COLUMNS[6:]},
                    }
                )
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    return table.sort_values(["source", "strategy", "fraction"], kind="stable").reset_index(drop=True)


def _effect_cell(row) -> str:
    """``+0.031 (−0.012 to +0.074), t over folds``, or the difference with why it has no interval."""
    if isinstance(row.no_interval, str) and row.no_interval:
        return f"{row.diff:+.3f}, {row.no_interval}"
    if not np.isfinite(row.low):
        return f"{row.diff:+.3f}, no interval"
    return f"{row.diff:+.3f} ({row.low:+.3f} to {row.high:+.3f}), {row.method}"


def effect_lines(effects) -> list[str]:
    """The effects as a markdown table, with what the interval covers."""
    lines = [
        "| fine-tuned − scratch | strategy | fraction | train images | pairs | test AUC difference (95% interval) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in effects.itertuples():
        lines.append(
            f"| {row.source} − {row.reference} | {row.strategy} | {row.fraction:g} | {row.n_train_images:g} | "
            f"{row.n_pairs} | {_effect_cell(row)} |"
        )
    covers = sorted({c for c in effects["covers"] if isinstance(c, str)})
    if covers:
        lines += ["", "The interval covers: " + "; ".join(covers) + "."]
    return lines


def effects_summary(effects) -> str:
    """A few lines for the terminal: per source and share, the paired difference with its interval."""
    return "\n".join(
        f"{row.source} − {row.reference} at fraction {row.fraction:g}: {_effect_cell(row)}"
        for row in effects.itertuples()
    )


def write_table(table, out_dir, effects=None) -> list[str]:
    """Writes the table as ``learning_curve.csv`` and ``learning_curve.md``, and with ``effects``
    (``curve_effects``) ``learning_curve_effects.csv`` and ``.md``, shown in ``learning_curve.md`` too; returns the
    paths written."""
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
    written = [str(csv_path), str(md_path)]
    if effects is not None:
        paired = [
            "Fine-tuning against training from scratch: the paired difference in test AUC (pretrained source − "
            "random initialisation; the same splits, repeats and test images), per share of the training patients.",
            "",
            *effect_lines(effects),
        ]
        if effects.empty:
            paired = ["No pairs of a pretrained source with random initialisation (add none to --sources)."]
        effects_csv, effects_md = out / f"{EFFECTS}.csv", out / f"{EFFECTS}.md"
        write_text_atomic(effects_csv, effects.to_csv(index=False))
        write_text_atomic(effects_md, "\n".join(paired) + "\n")
        lines += ["", "## Fine-tuning against training from scratch", "", *paired]
        written += [str(effects_csv), str(effects_md)]
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return written
